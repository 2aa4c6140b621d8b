//! `cargo +nightly fuzz run sse_meter`
//!
//! Feeds arbitrary bytes, split into chunks at fuzzer-chosen points, through `Meter` for each
//! API family, with and without removing the usage chunk, and as a JSON body. Nothing may
//! panic; the meter may never hold more than its event cap between chunks; without removal
//! the client gets the upstream's bytes exactly; with removal only OpenAI streams can lose
//! anything (the usage-only chunk), and nothing is ever added.
//!
//! Input layout: byte 0 picks the event cap (high bit: the real cap, else 1 + 4 × the low
//! bits), byte 1 the number of chunk boundaries N, the next N bytes the chunk lengths, and the
//! rest is the body.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use till::providers::ApiFamily;
use till::proxy::meter::{MAX_EVENT, Meter};

fn chunks(body: &[u8], lengths: &[u8]) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut at = 0;
    for &len in lengths {
        let end = (at + usize::from(len)).min(body.len());
        out.push(Bytes::copy_from_slice(&body[at..end]));
        at = end;
    }
    out.push(Bytes::copy_from_slice(&body[at..]));
    out
}

fn run(meter: &mut Meter, pieces: &[Bytes], cap: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in pieces {
        out.extend_from_slice(&meter.feed(piece.clone()));
        assert!(meter.pending_len() <= cap, "{} bytes held", meter.pending_len());
    }
    let (tail, _) = meter.finish();
    out.extend_from_slice(&tail);
    out
}

fuzz_target!(|data: &[u8]| {
    let [mode, n, rest @ ..] = data else {
        return;
    };
    let cap = if mode & 0x80 != 0 {
        MAX_EVENT
    } else {
        1 + 4 * usize::from(mode & 0x7f)
    };
    let n = usize::from(*n % 32).min(rest.len());
    let (lengths, body) = rest.split_at(n);
    let pieces = chunks(body, lengths);

    for api in [ApiFamily::Openai, ApiFamily::Anthropic, ApiFamily::Gemini] {
        let mut m = Meter::new(api, true, false).with_max_event(cap);
        assert_eq!(run(&mut m, &pieces, cap), body, "{api:?} changed the stream");

        let mut m = Meter::new(api, true, true).with_max_event(cap);
        let out = run(&mut m, &pieces, cap);
        if api == ApiFamily::Openai {
            assert!(out.len() <= body.len(), "removal added bytes");
        } else {
            assert_eq!(out, body, "{api:?} removed bytes it never should");
        }

        let mut m = Meter::new(api, false, false);
        let mut out = Vec::new();
        for piece in &pieces {
            out.extend_from_slice(&m.feed(piece.clone()));
        }
        let (tail, _) = m.finish();
        assert!(tail.is_empty());
        assert_eq!(out, body, "{api:?} changed a JSON body");
    }
});
