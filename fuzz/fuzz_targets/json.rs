//! `cargo +nightly fuzz run json`
//!
//! Holds till's request-body parse to serde_json's: for any bytes, the fast parse accepts
//! exactly what serde_json accepts and builds the same value with the same repeated-key flag;
//! a skim (long free-text strings left out) accepts the same bodies, and leaves out only
//! strings of the free-text fields (and says so whenever it left one out, even one a repeated
//! key then replaced).

#![no_main]

use libfuzzer_sys::fuzz_target;
use till::proxy::inspect::FREE_TEXT;
use till::json::{SKIM_FROM, differs_only_by_skim, parse, parse_reference, skim};

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
            assert!(differs_only_by_skim(&s.value, &value, FREE_TEXT, &mut left_out));
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
