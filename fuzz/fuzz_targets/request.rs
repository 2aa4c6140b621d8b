//! `cargo +nightly fuzz run request`
//!
//! Feeds arbitrary requests (a selector byte, a path line, a body) to the proxy's request
//! checks: the canonical path, the endpoint classifier and the body inspector. Nothing may
//! panic; a canonical path is a fixed point with no dot segments or encoded separators; and
//! the body till forwards (as sent, or re-serialised), read again, says exactly what till
//! decided on, including a ceiling it inserted.

#![no_main]

use libfuzzer_sys::fuzz_target;
use till::childkey::EndpointClass;
use till::providers::ApiFamily;
use till::proxy::inspect::{insert_ceiling, inspect};
use till::proxy::route::{Op, canonical_path, classify};

const FAMILIES: [ApiFamily; 3] = [ApiFamily::Openai, ApiFamily::Anthropic, ApiFamily::Gemini];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let api = FAMILIES[usize::from(selector % 3)];
    let method = if selector & 0x80 == 0 { http::Method::POST } else { http::Method::GET };
    let (path, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(path) = std::str::from_utf8(path) else {
        return;
    };
    let Ok(canonical) = canonical_path(path) else {
        return;
    };
    assert_eq!(canonical_path(&canonical).as_deref(), Ok(canonical.as_str()));
    for segment in canonical.split('/').skip(1) {
        assert!(!segment.is_empty() && segment != "." && segment != "..", "{canonical}");
        assert!(!segment.contains('\\'), "{canonical}");
        let upper = segment.to_ascii_uppercase();
        for bad in ["%2F", "%5C", "%2E", "%25", "%3F", "%23"] {
            assert!(!upper.contains(bad), "{canonical}");
        }
    }
    let endpoint = classify(api, &method, &canonical);
    if endpoint.class == EndpointClass::Inference {
        assert_ne!(endpoint.op, Op::Other, "{canonical}");
    }
    let content_type = (selector & 0x40 != 0).then_some("multipart/form-data; boundary=x");
    let Ok(first) = inspect(endpoint.op, endpoint.path_model.as_deref(), content_type, body) else {
        return;
    };
    let Some(mut map) = first.json.clone() else {
        return;
    };
    if first.skimmed {
        // The decisions were made on a parse without long free text; what till writes out
        // is the whole parse.
        map = till::proxy::inspect::parse_whole(body).expect("an accepted body parses whole");
    }
    // What till forwards, read again, is what till decided on: the body as sent when it
    // repeats no key (read by a plain parse here), else the parse re-serialised.
    if first.verbatim {
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(body).ok(),
            Some(serde_json::Value::Object(map.clone()))
        );
    }
    let forwarded = serde_json::to_vec(&map).expect("a parsed body serialises");
    let again = inspect(endpoint.op, endpoint.path_model.as_deref(), None, &forwarded)
        .expect("a forwarded body passes the same checks");
    assert!(again.verbatim, "a re-serialised body repeats no key");
    assert_eq!(
        till::proxy::inspect::Inspection {
            verbatim: first.verbatim,
            skimmed: first.skimmed,
            json: first.json.clone(),
            ..again
        },
        first
    );
    if first.ceiling.is_none() && !endpoint.op.unmetered() {
        insert_ceiling(endpoint.op, selector & 0x20 != 0, &mut map, 7);
        let forwarded = serde_json::to_vec(&map).expect("serialises");
        let capped = inspect(endpoint.op, endpoint.path_model.as_deref(), None, &forwarded)
            .expect("a capped body passes the same checks");
        assert_eq!(capped.ceiling, Some(7), "{}", String::from_utf8_lossy(&forwarded));
        assert_eq!(capped.model, first.model);
        assert_eq!(capped.choices, first.choices);
    }
});
