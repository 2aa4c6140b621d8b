//! The root key taken out of what the upstream answers: the agent never receives it, even from
//! an upstream that echoes the credential it was sent (a debugging gateway, a compatible server
//! that quotes the header in its errors, a redirect that carries it).
//!
//! Headers that hold the key are dropped. In the body each occurrence is overwritten with `*`
//! of the same length, so a `Content-Length` stays true; a chunk's last bytes that could begin
//! the key wait for the next chunk. A key holds no line break, so the end of an event (`\n\n`)
//! is never held back: a stream stays unbuffered.

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
pub fn looked_for(key: &[u8]) -> bool {
    key.len() >= SHORTEST
}

/// Overwrites the root key in a body that arrives in pieces.
pub struct Scrub {
    key: Arc<SecretString>,
    /// The end of the last piece, which may be the start of the key.
    carry: BytesMut,
}

impl std::fmt::Debug for Scrub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrub")
            .field("carry", &self.carry.len())
            .finish_non_exhaustive()
    }
}

impl Scrub {
    /// `None` for a key shorter than [`SHORTEST`].
    pub fn new(key: Arc<SecretString>) -> Option<Self> {
        looked_for(key.expose_secret().as_bytes()).then(|| Scrub {
            key,
            carry: BytesMut::new(),
        })
    }

    /// `piece` with every whole occurrence of the key overwritten, less the end that could
    /// begin one (kept for the next piece or [`Self::finish`]).
    pub fn pass(&mut self, piece: Bytes) -> Bytes {
        let key = self.key.expose_secret().as_bytes();
        if self.carry.is_empty() && find(&piece, key).is_none() && held(&piece, key) == 0 {
            return piece;
        }
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(&piece);
        mask(&mut buf, key);
        let keep = buf.len() - held(&buf, key);
        self.carry = buf.split_off(keep);
        buf.freeze()
    }

    /// What was held back, followed by `last` (a piece that ends the body), scrubbed whole.
    pub fn finish(&mut self, last: Option<Bytes>) -> Bytes {
        let mut buf = std::mem::take(&mut self.carry);
        if let Some(last) = last {
            buf.extend_from_slice(&last);
        }
        mask(&mut buf, self.key.expose_secret().as_bytes());
        buf.freeze()
    }
}

/// Overwrites every occurrence of the root key in `buf` (a message that comes whole: a
/// WebSocket message, a refused upgrade's body).
pub fn whole(buf: &mut [u8], key: &SecretString) {
    let key = key.expose_secret().as_bytes();
    if looked_for(key) {
        mask(buf, key);
    }
}

/// Overwrites every occurrence of `key` in `buf`.
fn mask(buf: &mut [u8], key: &[u8]) {
    let mut from = 0;
    while let Some(i) = find(&buf[from..], key) {
        buf[from + i..from + i + key.len()].fill(b'*');
        from += i + key.len();
    }
}

/// Where `key` first occurs in `hay`. A large piece is searched with `memmem` (whose searcher
/// costs about a thousand instructions to build, and then runs at memory speed); a small one,
/// which nearly every answer is, by the places of the key's last byte (a random character of
/// the key, rare in any text), each compared whole.
pub(crate) fn find(hay: &[u8], key: &[u8]) -> Option<usize> {
    if hay.len() < key.len() {
        return None;
    }
    if hay.len() >= 4096 {
        return memmem::find(hay, key);
    }
    let last = key.len() - 1;
    memchr::memchr_iter(key[last], &hay[last..]).find(|&start| hay[start..].starts_with(key))
}

/// How many of `buf`'s last bytes are the start of `key` (and not all of it).
fn held(buf: &[u8], key: &[u8]) -> usize {
    let window = buf.len().min(key.len() - 1);
    let tail = &buf[buf.len() - window..];
    memchr::memchr_iter(key[0], tail)
        .find(|&i| key.starts_with(&tail[i..]))
        .map_or(0, |i| window - i)
}

/// Drops every header whose value holds the key (a `Location`, a `WWW-Authenticate`, an echo).
pub fn headers(map: &mut HeaderMap, key: &SecretString) {
    let key = key.expose_secret().as_bytes();
    let holds = |v: &http::HeaderValue| find(v.as_bytes(), key).is_some();
    if !looked_for(key) || !map.values().any(holds) {
        return;
    }
    let names: Vec<_> = map
        .iter()
        .filter(|(_, v)| holds(v))
        .map(|(n, _)| n.clone())
        .collect();
    for name in names {
        map.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrub() -> Scrub {
        Scrub::new(Arc::new(SecretString::from("sk-root-123456"))).unwrap()
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

    #[test]
    fn the_key_is_overwritten_wherever_the_pieces_cut_it() {
        let body = "{\"echo\":\"Bearer sk-root-123456\",\"again\":\"sk-root-123456sk-root-123456\"} sk-root-12345";
        let want = "{\"echo\":\"Bearer **************\",\"again\":\"****************************\"} sk-root-12345";
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
        assert!(Scrub::new(Arc::new(SecretString::from("ollama"))).is_none());
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
        headers(&mut map, &SecretString::from("sk-root-123456"));
        assert_eq!(map.len(), 1);
        assert!(map.contains_key("x-request-id"));
        assert!(!format!("{:?}", scrub()).contains("sk-root"));
    }
}
