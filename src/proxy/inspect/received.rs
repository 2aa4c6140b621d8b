//! A request body gathered as it arrives, its UTF-8 checked piece by piece on the way, so a
//! large body's copy and check overlap its transfer instead of following it.
//!
//! JSON must be UTF-8, and the parse reads string content as `&str`: checking the bytes as
//! they come (each piece right after it is read, the few bytes of a character cut between
//! two pieces carried to the next) leaves the parse nothing to check once the last piece is in.

use bytes::Bytes;

/// A whole request body, and whether all of it is UTF-8.
pub struct Received {
    bytes: Bytes,
    utf8: bool,
}

impl Received {
    /// The body as it came.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// The body as text, when all of it is UTF-8.
    pub fn text(&self) -> Option<&str> {
        if !self.utf8 {
            return None;
        }
        debug_assert!(std::str::from_utf8(&self.bytes).is_ok());
        // SAFETY: `utf8` is true only when [`Receiving::finish`] built this from the pieces
        // [`Receiving::push`] was given, all of which its `Utf8` checked in order, ending on
        // a whole character; `bytes` is those pieces, in that order, and nothing else.
        Some(unsafe { std::str::from_utf8_unchecked(&self.bytes) })
    }
}

/// A body being received: its pieces so far, checked.
pub struct Receiving {
    /// The only piece so far, kept as it came (a small body is one piece: no copy).
    first: Option<Bytes>,
    /// Every piece so far, once there is more than one.
    joined: Vec<u8>,
    /// The body's announced length: the most `joined` is given at once.
    expected: usize,
    utf8: Utf8,
}

impl Receiving {
    /// A body announced as `expected` bytes long (0 when unknown).
    pub fn new(expected: usize) -> Self {
        Self {
            first: None,
            joined: Vec::new(),
            expected,
            utf8: Utf8::default(),
        }
    }

    /// Bytes received so far.
    pub fn received(&self) -> usize {
        self.first.as_ref().map_or(self.joined.len(), Bytes::len)
    }

    /// Adds the next piece.
    pub fn push(&mut self, piece: Bytes) {
        self.utf8.feed(&piece);
        if self.joined.is_empty() {
            match self.first.take() {
                None => {
                    self.first = Some(piece);
                    return;
                }
                Some(first) => {
                    // Room for twice what has come, not for the whole announced length: an
                    // announced length holds no memory before its bytes arrive.
                    let at_least = first.len() + piece.len();
                    let room = self.expected.min(at_least.saturating_mul(2));
                    self.joined.reserve_exact(room.max(at_least));
                    self.joined.extend_from_slice(&first);
                }
            }
        }
        self.joined.extend_from_slice(&piece);
    }

    pub fn finish(self) -> Received {
        let bytes = match self.first {
            Some(first) => first,
            None => Bytes::from(self.joined),
        };
        Received {
            bytes,
            utf8: self.utf8.whole(),
        }
    }
}

/// UTF-8 checked over pieces: `simdutf8`'s check (std's rules, and where it stopped) on
/// each, with a character cut between two pieces put together and checked on its own.
#[derive(Default)]
struct Utf8 {
    /// The start of a character the last piece ended in.
    cut: [u8; 4],
    cut_len: usize,
    broken: bool,
}

impl Utf8 {
    fn feed(&mut self, mut piece: &[u8]) {
        if self.broken {
            return;
        }
        if self.cut_len > 0 {
            let width = match self.cut[0] {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                _ => 4,
            };
            let take = (width - self.cut_len).min(piece.len());
            self.cut[self.cut_len..self.cut_len + take].copy_from_slice(&piece[..take]);
            self.cut_len += take;
            piece = &piece[take..];
            if self.cut_len < width {
                return;
            }
            if simdutf8::basic::from_utf8(&self.cut[..width]).is_err() {
                self.broken = true;
                return;
            }
            self.cut_len = 0;
        }
        if let Err(e) = simdutf8::compat::from_utf8(piece) {
            // `error_len` is `None` only for the start of a valid character cut off by the
            // end of the piece: at most three bytes.
            if e.error_len().is_some() {
                self.broken = true;
                return;
            }
            let rest = &piece[e.valid_up_to()..];
            self.cut[..rest.len()].copy_from_slice(rest);
            self.cut_len = rest.len();
        }
    }

    /// Whether everything fed was UTF-8, ending on a whole character.
    fn whole(&self) -> bool {
        !self.broken && self.cut_len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn received(pieces: &[&[u8]], expected: usize) -> Received {
        let mut r = Receiving::new(expected);
        for p in pieces {
            r.push(Bytes::copy_from_slice(p));
        }
        r.finish()
    }

    #[test]
    fn a_character_cut_anywhere_between_pieces_is_still_one_character() {
        let text = "a\u{e9}\u{20ac}\u{1f600}z".as_bytes();
        for i in 0..=text.len() {
            for j in i..=text.len() {
                let r = received(&[&text[..i], &text[i..j], &text[j..]], 0);
                assert_eq!(r.bytes().as_ref(), text);
                assert_eq!(r.text(), std::str::from_utf8(text).ok(), "{i} {j}");
            }
        }
        // Bytes that are not UTF-8, each cut into single bytes.
        for bad in [
            &b"\xe2\x82"[..],
            b"\xe2\x82A",
            b"\xed\xa0\x80",
            b"\xc0\xaf",
            b"\xf4\x90\x80\x80",
            b"\x80",
            b"ok\xff",
        ] {
            let pieces: Vec<&[u8]> = bad.chunks(1).collect();
            assert!(received(&pieces, 0).text().is_none(), "{bad:?}");
            assert!(received(&[bad], 0).text().is_none(), "{bad:?}");
        }
    }

    #[test]
    fn one_piece_is_kept_as_it_came_and_many_are_joined_in_order() {
        let piece = Bytes::from_static(b"{\"model\":\"m\"}");
        let mut r = Receiving::new(piece.len());
        r.push(piece.clone());
        assert_eq!(r.received(), piece.len());
        let got = r.finish();
        assert_eq!(got.bytes().as_ptr(), piece.as_ptr(), "no copy of one piece");
        let r = received(&[b"ab", b"", b"cd", b"e"], 3);
        assert_eq!(r.bytes().as_ref(), b"abcde");
        assert_eq!(r.text(), Some("abcde"));
        assert_eq!(received(&[], 0).text(), Some(""));
    }

    proptest! {
        /// Whatever the bytes and however they are cut, the body is them in order and is
        /// text exactly when `std::str::from_utf8` says they are.
        #[test]
        fn pieces_read_as_the_whole_would(
            chars in proptest::collection::vec(any::<char>(), 0..40),
            noise in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..3),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let mut bytes = chars.iter().collect::<String>().into_bytes();
            for (at, b) in noise {
                if !bytes.is_empty() {
                    let at = at % bytes.len();
                    bytes[at] = b;
                }
            }
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut pieces = Vec::new();
            let mut from = 0;
            for c in cuts {
                pieces.push(&bytes[from..c]);
                from = c;
            }
            pieces.push(&bytes[from..]);
            let r = received(&pieces, bytes.len());
            prop_assert_eq!(r.bytes().as_ref(), &bytes[..]);
            prop_assert_eq!(r.text(), std::str::from_utf8(&bytes).ok());
        }
    }
}
