//! `cargo +nightly fuzz run answer`
//!
//! Feeds arbitrary bytes, as a provider's answer, to the HTTP/1.1 client's reader (the same
//! head parse, framing and chunked decoder the proxy runs on its sockets), cut into pieces at
//! points taken from the input. Nothing may panic; the body is never longer than what came in;
//! and how the bytes were cut changes nothing: the answer read in pieces is the answer read
//! in one (only whether the connection is kept may differ, one way: bytes after the answer
//! that had not arrived when it ended).

#![no_main]

use libfuzzer_sys::fuzz_target;
use till::upstream::h1::read_answer;

fuzz_target!(|data: &[u8]| {
    let Some((&cuts, rest)) = data.split_first() else {
        return;
    };
    let head_only = cuts & 0x80 != 0;
    // Up to 7 cut points, spread by the selector's low bits.
    let n = usize::from(cuts & 7);
    let step = rest.len() / (n + 1);
    let mut pieces = Vec::new();
    let mut at = 0;
    for i in 1..=n {
        let to = (step * i + usize::from(cuts >> 3 & 7)).min(rest.len());
        if to > at {
            pieces.push(&rest[at..to]);
            at = to;
        }
    }
    pieces.push(&rest[at..]);
    let whole = read_answer([rest], head_only);
    let cut = read_answer(pieces.iter().copied(), head_only);
    if let Ok((_, _, body, _)) = &whole {
        assert!(body.len() <= rest.len());
    }
    assert_eq!(
        whole.as_ref().map(|(s, h, b, _)| (*s, h.clone(), b.clone())),
        cut.as_ref().map(|(s, h, b, _)| (*s, h.clone(), b.clone())),
        "{:?}",
        String::from_utf8_lossy(rest)
    );
    // Whether the connection is kept may depend on the cut only one way: bytes after an
    // answer that have not arrived when it ends cannot be seen (the next request's read
    // refuses them then); bytes that have arrived always stop the connection being kept.
    if let (Ok(w), Ok(c)) = (&whole, &cut) {
        assert!(!w.3 || c.3, "{:?}", String::from_utf8_lossy(rest));
    }
});
