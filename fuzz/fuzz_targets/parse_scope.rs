//! `cargo +nightly fuzz run parse_scope`
//!
//! Feeds arbitrary text to every scope parser and, split on whitespace, to
//! `ScopeSpec::from_args`. Nothing may panic, and any spec that turns into caveats must
//! print and parse back to the same caveats.

#![no_main]

use libfuzzer_sys::fuzz_target;
use till::scope::{
    ScopeSpec, parse_budget, parse_endpoints, parse_expires, parse_pattern, parse_ttl,
};

const KNOWN: [&str; 3] = ["anthropic", "gemini", "openai"];
const NOW: u64 = 1_795_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_pattern(text, &KNOWN);
    let _ = parse_pattern(text, &[]);
    let _ = parse_budget(text);
    let _ = parse_endpoints(text);
    let _ = parse_ttl(text);
    let _ = parse_expires(text);

    let args: Vec<&str> = text.split_whitespace().collect();
    let Ok(spec) = ScopeSpec::from_args(&args) else {
        return;
    };
    let _ = spec.to_string();
    let Ok(caveats) = spec.to_caveats(NOW, &KNOWN) else {
        return;
    };
    if let Ok(printed) = ScopeSpec::from_caveats(&caveats) {
        let again = ScopeSpec::from_args(&printed.to_args()).expect("printed flags parse");
        assert_eq!(
            again
                .to_caveats(NOW, &KNOWN)
                .expect("printed flags are valid"),
            caveats
        );
    }
});
