//! `cargo +nightly fuzz run json`
//!
//! Holds till's request-body parse to serde_json's: for any bytes, the fast parse accepts
//! exactly what serde_json accepts and builds the same value with the same repeated-key flag;
//! a skim (long free-text strings left out) accepts the same bodies, and leaves out only
//! strings of the free-text fields (and says so whenever it left one out, even one a repeated
//! key then replaced).

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use till::proxy::inspect::FREE_TEXT;
use till::proxy::inspect::json::{SKIM_FROM, parse, parse_reference, skim};

fuzz_target!(|data: &[u8]| {
    let reference = parse_reference(data).ok();
    let fast = parse(data).ok();
    assert_eq!(fast, reference);
    // Long strings, so that skims happen: the input repeated into a free-text field.
    for body in [data.to_vec(), widen(data)] {
        let reference = parse_reference(&body).ok();
        let skimmed = skim(&body, FREE_TEXT).ok();
        assert_eq!(skimmed.is_some(), reference.is_some());
        if let (Some(s), Some((value, repeated))) = (skimmed, reference) {
            assert_eq!(s.repeated, repeated);
            let mut left_out = false;
            assert!(same_but_left_out(&s.value, &value, false, &mut left_out));
            // A left-out string a repeated key replaced later still counts as skimmed.
            assert!(s.skimmed == left_out || (s.skimmed && repeated));
        }
    }
});

/// `{"content":"<data, repeated past SKIM_FROM bytes>"}` when `data` is string content.
fn widen(data: &[u8]) -> Vec<u8> {
    let mut body = b"{\"content\":\"".to_vec();
    while body.len() < SKIM_FROM + 16 && !data.is_empty() {
        body.extend_from_slice(data);
    }
    body.extend_from_slice(b"\"}");
    body
}

fn same_but_left_out(skim: &Value, full: &Value, free: bool, left_out: &mut bool) -> bool {
    match (skim, full) {
        (Value::String(s), Value::String(f)) if free && s.is_empty() && !f.is_empty() => {
            *left_out = true;
            true
        }
        (Value::Object(s), Value::Object(f)) => {
            s.len() == f.len()
                && s.iter().zip(f).all(|((ks, vs), (kf, vf))| {
                    ks == kf && same_but_left_out(vs, vf, FREE_TEXT.contains(&ks.as_str()), left_out)
                })
        }
        (Value::Array(s), Value::Array(f)) => {
            s.len() == f.len()
                && s.iter().zip(f).all(|(vs, vf)| same_but_left_out(vs, vf, false, left_out))
        }
        _ => skim == full,
    }
}
