//! `cargo +nightly fuzz run json_usage`
//!
//! Feeds arbitrary bytes, as a complete JSON answer, through `Meter` for each API family, and
//! compares what it reads without building the answer (the usage at the family's paths, and
//! whether the answer was complete JSON) with the family's reading of serde_json's full
//! parse. Billing rests on the two agreeing. Bodies that the full parse refuses only for a
//! number beyond `f64`'s range are left out: skipping such a number is the one difference
//! `Counts::read` states (its first run found it).

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use till::providers::ApiFamily;
use till::proxy::meter::Meter;

fuzz_target!(|data: &[u8]| {
    let parsed = serde_json::from_slice::<serde_json::Value>(data);
    if parsed
        .as_ref()
        .is_err_and(|e| e.to_string().starts_with("number out of range"))
    {
        return;
    }
    let parsed = parsed.ok();
    for api in ApiFamily::ALL {
        let mut m = Meter::new(api, false, false);
        let passed = m.feed(Bytes::copy_from_slice(data));
        assert_eq!(&passed[..], data);
        let (tail, usage) = m.finish();
        assert!(tail.is_empty());
        match &parsed {
            Some(v) => {
                assert!(m.completed, "{api:?}");
                assert_eq!(usage, api.wire().json_usage(v), "{api:?}");
            }
            None => {
                assert!(!m.completed, "{api:?}");
                assert_eq!(usage, None, "{api:?}");
            }
        }
    }
});
