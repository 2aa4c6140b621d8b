//! The root key taken out of what the upstream answers: the agent never receives it, even from
//! an upstream that echoes the credential it was sent (a debugging gateway, a compatible server
//! that quotes the header in its errors, a redirect that carries it).
//!
//! Headers that hold the key are dropped. In the body each run of [`SHORTEST`] bytes or more
//! that begins the key (the key, or a key cut short) is overwritten with `*` of the same
//! length, so a `Content-Length` stays true; a chunk's last bytes that could begin such a run
//! wait for the next chunk. A key holds no line break, so the end of an event (`\n\n`) is never
//! held back: a stream stays unbuffered.
//!
//! An answer of text (JSON, events, `text/…`) in another encoding than UTF-8 is refused by its
//! declared `charset`; one that declares none but is UTF-16 or UTF-32 all the same (which
//! JSON readers take from its first bytes: Python's `json.loads`) would carry the key in
//! bytes the search does not see. Such text has a NUL byte in every ASCII character, where
//! UTF-8 JSON and events have none, so text is cut at its first NUL (see [`Scrub::stopped`]).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use memchr::memmem;
use secrecy::{ExposeSecret, SecretString};

/// Keys shorter than this are not looked for. They are the placeholders local servers take
/// (`ollama`, `EMPTY`, `lm-studio`), no secret, and overwriting them would change every answer
/// that names them; a provider's key is tens of characters.
pub const SHORTEST: usize = 12;

/// Whether `key` is one the scrub looks for.
fn looked_for(key: &[u8]) -> bool {
    key.len() >= SHORTEST
}

/// Whether `buf` holds a run that begins the root key (never, for a key not looked for).
pub fn holds(buf: &[u8], key: &SecretString) -> bool {
    let key = key.expose_secret().as_bytes();
    looked_for(key) && find(buf, key).is_some()
}

/// Overwrites the root key in a body that arrives in pieces.
pub struct Scrub {
    key: Arc<SecretString>,
    /// The end of the last piece, which may be the start of the key.
    carry: BytesMut,
    /// How many bytes of the key the last piece ended in, inside a run already overwritten
    /// (the rest of the key, where the next piece goes on with it, is overwritten too).
    run: usize,
    /// The answer is text, cut at its first NUL byte.
    text: bool,
    /// A NUL byte came: nothing more passes.
    stopped: bool,
}

impl std::fmt::Debug for Scrub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrub")
            .field("carry", &self.carry.len())
            .finish_non_exhaustive()
    }
}

impl Scrub {
    /// `None` for a key shorter than [`SHORTEST`]. `text`: the answer is text (JSON, events,
    /// `text/…`), cut at its first NUL byte.
    pub fn new(key: Arc<SecretString>, text: bool) -> Option<Self> {
        looked_for(key.expose_secret().as_bytes()).then(|| Scrub {
            key,
            carry: BytesMut::new(),
            run: 0,
            text,
            stopped: false,
        })
    }

    /// Whether a text answer had a NUL byte: it is no UTF-8 text, and what came from that
    /// byte on (and all after) was left out, as was what was held back before it. The
    /// answer is to end as one the upstream broke off.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// `piece` with every run that begins the key overwritten, less the end that could begin
    /// one (kept for the next piece or [`Self::finish`]); nothing once [`Self::stopped`].
    pub fn pass(&mut self, piece: Bytes) -> Bytes {
        if self.stopped {
            return Bytes::new();
        }
        if self.text
            && let Some(nul) = memchr::memchr(0, &piece)
        {
            let before = self.pass(piece.slice(..nul));
            self.stopped = true;
            self.carry.clear();
            self.run = 0;
            return before;
        }
        let key = self.key.expose_secret().as_bytes();
        if self.carry.is_empty()
            && self.run == 0
            && find(&piece, key).is_none()
            && held(&piece, key) == 0
        {
            return piece;
        }
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(&piece);
        // A run the last piece ended in goes on as far as this one follows the key.
        let mut from = 0;
        if self.run > 0 {
            from = common(&buf, &key[self.run..]);
            buf[..from].fill(b'*');
            let reached = self.run + from;
            self.run = if from == buf.len() && reached < key.len() {
                reached
            } else {
                0
            };
        }
        if self.run == 0 {
            self.run = mask(&mut buf[from..], key);
        }
        let keep = if self.run == 0 {
            buf.len() - held(&buf, key)
        } else {
            buf.len()
        };
        self.carry = buf.split_off(keep);
        buf.freeze()
    }

    /// `last` (a piece that ends the body, if any) as [`Self::pass`] gives it, then what is
    /// still held back: fewer than [`SHORTEST`] bytes that begin the key, no run.
    pub fn finish(&mut self, last: Option<Bytes>) -> Bytes {
        let out = last.map(|l| self.pass(l)).unwrap_or_default();
        self.run = 0;
        if self.carry.is_empty() || self.stopped {
            return out;
        }
        let mut all = BytesMut::from(&out[..]);
        all.extend_from_slice(&std::mem::take(&mut self.carry));
        all.freeze()
    }
}

/// Overwrites every run that begins the root key in `buf` (a message that comes whole: a
/// WebSocket message or its close reason, a refused upgrade's body).
pub fn whole(buf: &mut [u8], key: &SecretString) {
    let key = key.expose_secret().as_bytes();
    if looked_for(key) {
        mask(buf, key);
    }
}

/// Overwrites every run in `buf` that begins the key and is at least [`SHORTEST`] bytes long:
/// the whole key, and also a key cut short (an upstream that quotes part of it, an answer cut
/// off in the middle of it). Returns how many bytes of the key the last run had when it
/// reached the end of `buf` without the key's end (0 otherwise).
fn mask(buf: &mut [u8], key: &[u8]) -> usize {
    let mut from = 0;
    let mut ended_in = 0;
    while let Some(i) = find(&buf[from..], key) {
        let start = from + i;
        let len = common(&buf[start..], key);
        buf[start..start + len].fill(b'*');
        from = start + len;
        ended_in = if from == buf.len() && len < key.len() {
            len
        } else {
            0
        };
    }
    ended_in
}

/// How many bytes `hay` and `key` have in common from their starts.
fn common(hay: &[u8], key: &[u8]) -> usize {
    hay.iter().zip(key).take_while(|(a, b)| a == b).count()
}

/// Where the first run that begins the key (its first [`SHORTEST`] bytes) starts in `hay`. A
/// large piece is searched with `memmem` (whose searcher costs about a thousand instructions
/// to build, and then runs at memory speed); a small one, which nearly every answer is, by the
/// places of the run's last byte, each compared whole.
fn find(hay: &[u8], key: &[u8]) -> Option<usize> {
    let start = &key[..SHORTEST.min(key.len())];
    if hay.len() < start.len() {
        return None;
    }
    if hay.len() >= 4096 {
        return memmem::find(hay, start);
    }
    let last = start.len() - 1;
    memchr::memchr_iter(start[last], &hay[last..]).find(|&at| hay[at..].starts_with(start))
}

/// How many of `buf`'s last bytes could begin a run (fewer than [`SHORTEST`] bytes that begin
/// the key): they wait for the next piece.
fn held(buf: &[u8], key: &[u8]) -> usize {
    let window = buf.len().min(SHORTEST - 1);
    let tail = &buf[buf.len() - window..];
    memchr::memchr_iter(key[0], tail)
        .find(|&i| key.starts_with(&tail[i..]))
        .map_or(0, |i| window - i)
}

/// Drops every header whose value holds the key (a `Location`, a `WWW-Authenticate`, an echo),
/// or whose name holds its start in any letter case (names arrive lower-cased: an echo of the
/// key as a name keeps all of a lower-case key).
pub fn headers(map: &mut HeaderMap, key: &SecretString) {
    let bytes = key.expose_secret().as_bytes();
    // A name holds a run of the key's first SHORTEST bytes or more, as a value is looked at.
    // Names are lower-case: only where the key's first byte, lower-cased, stands is compared.
    let named = |n: &http::HeaderName| {
        let n = n.as_str().as_bytes();
        looked_for(bytes)
            && memchr::memchr_iter(bytes[0].to_ascii_lowercase(), n).any(|i| {
                n.get(i..i + SHORTEST)
                    .is_some_and(|w| w.eq_ignore_ascii_case(&bytes[..SHORTEST]))
            })
    };
    // The key in base64 (a `WWW-Authenticate: Basic …` echo of `user:key`): looked for only
    // in a value long enough to hold it, which no usual answer header is.
    let encoded = std::cell::OnceCell::new();
    let in_base64 = |v: &[u8]| {
        let forms = encoded.get_or_init(|| base64_forms(bytes));
        forms.iter().any(|f| memmem::find(v, f).is_some())
    };
    let shortest_form = (bytes.len() * 8).div_ceil(6).saturating_sub(2);
    let hit = |(n, v): (&http::HeaderName, &http::HeaderValue)| {
        holds(v.as_bytes(), key)
            || named(n)
            || (looked_for(bytes) && v.len() >= shortest_form && in_base64(v.as_bytes()))
    };
    if !map.iter().any(hit) {
        return;
    }
    let names: Vec<_> = map
        .iter()
        .filter(|&e| hit(e))
        .map(|(n, _)| n.clone())
        .collect();
    for name in names {
        map.remove(name);
    }
}

/// The text `key` is in wherever it stands in base64 (standard and URL-safe): for each of the
/// three places it can start within a group of three bytes, the characters that depend on the
/// key's bytes alone.
fn base64_forms(key: &[u8]) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    let mut forms = Vec::with_capacity(6);
    for before in 0..3 {
        let mut bytes = vec![0u8; before];
        bytes.extend_from_slice(key);
        let text = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&bytes);
        let from = (before * 8).div_ceil(6);
        let to = ((before + key.len()) * 8 / 6).min(text.len());
        let form = text.as_bytes()[from..to].to_vec();
        let url: Vec<u8> = form
            .iter()
            .map(|&c| match c {
                b'+' => b'-',
                b'/' => b'_',
                c => c,
            })
            .collect();
        if url != form {
            forms.push(url);
        }
        forms.push(form);
    }
    forms
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrub() -> Scrub {
        Scrub::new(Arc::new(SecretString::from("sk-root-123456")), true).unwrap()
    }

    /// The body the client gets when `body` arrives cut at every place in `cuts`.
    fn through(body: &str, cuts: &[usize]) -> String {
        let mut s = scrub();
        let mut out = Vec::new();
        let mut at = 0;
        for &c in cuts {
            out.extend_from_slice(&s.pass(Bytes::copy_from_slice(&body.as_bytes()[at..c])));
            at = c;
        }
        out.extend_from_slice(&s.pass(Bytes::copy_from_slice(&body.as_bytes()[at..])));
        out.extend_from_slice(&s.finish(None));
        String::from_utf8(out).unwrap()
    }

    /// A run of the key's first 12 bytes or more is overwritten however it ends (an answer cut
    /// in the key's middle, an upstream quoting part of it); a shorter one is text.
    #[test]
    fn the_key_is_overwritten_wherever_the_pieces_cut_it() {
        let body = "{\"echo\":\"Bearer sk-root-123456\",\"again\":\"sk-root-123456sk-root-123456\"} sk-root-12345 sk-root";
        let want = "{\"echo\":\"Bearer **************\",\"again\":\"****************************\"} ************* sk-root";
        assert_eq!(through(body, &[]), want);
        for a in 0..body.len() {
            for b in a..body.len() {
                assert_eq!(through(body, &[a, b]), want, "cut at {a} and {b}");
            }
        }
    }

    #[test]
    fn small_and_large_pieces_are_searched_alike() {
        let key = b"sk-root-123456";
        for size in [0usize, 10, 11, 12, 100, 4095, 4096, 5000] {
            for at in [0, size / 2, size.saturating_sub(key.len())] {
                let mut hay = vec![b'3'; size];
                if at + key.len() <= size {
                    hay[at..at + key.len()].copy_from_slice(key);
                }
                assert_eq!(find(&hay, key), memmem::find(&hay, key), "{size} {at}");
            }
        }
    }

    /// Text in UTF-16 or UTF-32 carries the key with a NUL byte beside each character, where
    /// the search does not see it: a text answer stops at its first NUL, wherever the pieces
    /// are cut, and nothing after it (nor what was still held back there) passes. An answer that
    /// is not text (audio, an image) passes its NULs.
    #[test]
    fn text_stops_at_its_first_nul_and_other_answers_pass_theirs() {
        let key = "sk-root-123456";
        let wide: Vec<u8> = format!("{{\"echo\":\"Bearer {key}\"}}")
            .bytes()
            .flat_map(|b| [b, 0])
            .collect();
        let mut body = b"{\"a\":\"sk-ro".to_vec();
        body.extend_from_slice(&wide);
        for cut in 0..body.len() {
            let mut s = scrub();
            let mut out = s.pass(Bytes::copy_from_slice(&body[..cut])).to_vec();
            out.extend_from_slice(&s.pass(Bytes::copy_from_slice(&body[cut..])));
            out.extend_from_slice(&s.finish(Some(Bytes::from_static(b"after"))));
            assert!(s.stopped(), "cut at {cut}");
            assert!(
                !out.contains(&0) && !out.ends_with(b"after"),
                "cut at {cut}: {out:?}"
            );
            assert!(
                b"{\"a\":\"sk-ro{".starts_with(&out),
                "cut at {cut}: {out:?}"
            );
        }
        let mut s = Scrub::new(Arc::new(SecretString::from(key)), false).unwrap();
        let audio = Bytes::from_static(b"RIFF\0\0\0\0WAVE");
        assert_eq!(s.pass(audio.clone()), audio);
        assert!(!s.stopped());
    }

    #[test]
    fn an_event_end_is_never_held_back() {
        let mut s = scrub();
        let event = Bytes::from_static(b"data: {\"text\":\"sk\"}\n\n");
        assert_eq!(s.pass(event.clone()), event);
        // A piece that ends in what could start the key waits for the next one.
        assert_eq!(s.pass(Bytes::from_static(b"data: sk-ro")), "data: ");
        assert_eq!(s.pass(Bytes::from_static(b"ot\n\n")), "sk-root\n\n");
    }

    #[test]
    fn a_placeholder_key_is_not_looked_for() {
        assert!(Scrub::new(Arc::new(SecretString::from("ollama")), true).is_none());
        let mut text = b"ask ollama".to_vec();
        whole(&mut text, &SecretString::from("ollama"));
        assert_eq!(text, b"ask ollama");
    }

    #[test]
    fn headers_that_hold_the_key_are_dropped() {
        let mut map = HeaderMap::new();
        map.insert("x-echo", "Bearer sk-root-123456".parse().unwrap());
        map.insert("location", "https://x/?key=sk-root-123456".parse().unwrap());
        map.insert("x-request-id", "req_1".parse().unwrap());
        map.insert("x-sk-root-123456", "1".parse().unwrap());
        headers(&mut map, &SecretString::from("sk-root-123456"));
        assert_eq!(map.len(), 1);
        assert!(map.contains_key("x-request-id"));
        assert!(!format!("{:?}", scrub()).contains("sk-root"));
        // A name holds a key of capitals too, lower-cased, and the start of one.
        let mut map = HeaderMap::new();
        map.insert("x-sk-root-abcdef", "1".parse().unwrap());
        map.insert("x-sk-root-abcd", "ef".parse().unwrap());
        headers(&mut map, &SecretString::from("sk-ROOT-abcdef"));
        assert!(map.is_empty());
    }

    /// The key in base64, however it is placed in the encoded text (`user:key`, `:key`, the
    /// key alone) and in either alphabet, is dropped; base64 of other text is not.
    #[test]
    fn headers_that_hold_the_key_in_base64_are_dropped() {
        use base64::Engine as _;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE};
        let key = "sk-root-123456?>?>~~~";
        for prefix in ["", ":", "u:", "user:"] {
            for engine in [&STANDARD, &URL_SAFE] {
                let value = format!("Basic {}", engine.encode(format!("{prefix}{key}")));
                let mut map = HeaderMap::new();
                map.insert("www-authenticate", value.parse().unwrap());
                map.insert(
                    "x-other",
                    STANDARD
                        .encode(format!("{prefix}sk-root-12345?>?>~~"))
                        .parse()
                        .unwrap(),
                );
                headers(&mut map, &SecretString::from(key));
                assert!(!map.contains_key("www-authenticate"), "{value}");
                assert!(map.contains_key("x-other"), "{prefix}");
            }
        }
    }
}
