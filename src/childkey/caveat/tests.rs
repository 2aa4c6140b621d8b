use super::*;

fn round_trip(c: &Caveat) -> Caveat {
    let enc = c.encode();
    let mut r = Reader::new(&enc);
    let t = r.byte().unwrap();
    let len = r.varint().unwrap() as usize;
    let payload = r.take(len).unwrap();
    assert!(r.is_empty());
    Caveat::decode_payload(t, payload).unwrap()
}

#[test]
fn every_kind_round_trips() {
    let caveats = vec![
        Caveat::Allow(vec![
            ModelPattern::new("anthropic", Some("claude-haiku-*")).unwrap(),
            ModelPattern::new("openai", None).unwrap(),
        ]),
        Caveat::Endpoints(EndpointSet::all()),
        Caveat::Endpoints(EndpointSet::of(&[EndpointClass::Models, EndpointClass::Admin]).unwrap()),
        Caveat::Expires(1_795_000_000),
        Caveat::BudgetUsd(u64::MAX),
        Caveat::BudgetTokens(0),
        Caveat::Rpm(u32::MAX),
        Caveat::Tpm(127),
        Caveat::MaxRequests(128),
        Caveat::MaxOutputTokens(4096),
        Caveat::Session("run-1a2b.x_y".into()),
        Caveat::Unknown {
            tag: 0x42,
            bytes: vec![1, 2, 3],
        },
        Caveat::Unknown {
            tag: 0x00,
            bytes: vec![7; 300],
        },
    ];
    for c in &caveats {
        assert!(c.validate().is_ok(), "{c:?}");
        assert_eq!(&round_trip(c), c);
    }
}

#[test]
fn decoder_refuses_non_canonical_bytes() {
    // Padded varint for Expires(1).
    assert!(Caveat::decode_payload(tag::EXPIRES, &[0x81, 0x00]).is_err());
    // Trailing byte.
    assert!(Caveat::decode_payload(tag::EXPIRES, &[0x01, 0x00]).is_err());
    // Endpoint bits outside the known classes, or `all` mixed with classes, or empty.
    assert!(Caveat::decode_payload(tag::ENDPOINTS, &[0x40]).is_err());
    assert!(Caveat::decode_payload(tag::ENDPOINTS, &[0x81]).is_err());
    assert!(Caveat::decode_payload(tag::ENDPOINTS, &[0x00]).is_err());
    // Unsorted allow patterns: "openai" before "anthropic".
    let mut bad = vec![2];
    for p in ["openai", "anthropic"] {
        bad.push(p.len() as u8);
        bad.extend_from_slice(p.as_bytes());
        bad.push(0);
    }
    assert!(Caveat::decode_payload(tag::ALLOW, &bad).is_err());
    // Rpm beyond u32.
    let mut rpm = Vec::new();
    put_varint(&mut rpm, u64::from(u32::MAX) + 1);
    assert!(Caveat::decode_payload(tag::RPM, &rpm).is_err());
    // Varint longer than u64.
    assert!(Caveat::decode_payload(tag::TPM, &[0xff; 10]).is_err());
}

#[test]
fn canonicalize_sorts_and_dedupes() {
    let a = Caveat::Expires(10);
    let b = Caveat::Allow(vec![
        ModelPattern::new("openai", None).unwrap(),
        ModelPattern::new("anthropic", None).unwrap(),
        ModelPattern::new("openai", None).unwrap(),
    ]);
    let out = canonicalize(vec![a.clone(), b, a.clone()]);
    assert_eq!(out.len(), 2);
    assert_eq!(
        out[0],
        Caveat::Allow(vec![
            ModelPattern::new("anthropic", None).unwrap(),
            ModelPattern::new("openai", None).unwrap(),
        ])
    );
    assert_eq!(out[1], a);
}

#[test]
fn patterns_check_their_syntax() {
    assert!(ModelPattern::new("openai", Some("gpt-4o[")).is_err());
    assert!(ModelPattern::new("OpenAI", None).is_err());
    assert!(ModelPattern::new("-x", None).is_err());
    assert!(ModelPattern::new("x-1_y", None).is_ok());
    assert!(ModelPattern::new("openai", Some("")).is_err());
    assert!(ModelPattern::new("openrouter", Some("meta-llama/llama-3-8b:free")).is_ok());
    assert!(
        ModelPattern::new("openai", Some("*"))
            .unwrap()
            .is_provider_wide()
    );
    assert!(
        !ModelPattern::new("openai", Some("gpt*"))
            .unwrap()
            .is_provider_wide()
    );
}

#[test]
fn endpoint_bytes_from_before_realtime_read_as_they_always_did() {
    // Keys minted before the realtime class set only bits 0-4 (or `all`); each such byte must
    // still name exactly the classes it named then, and never realtime.
    let old = [
        EndpointClass::Inference,
        EndpointClass::Models,
        EndpointClass::Files,
        EndpointClass::Batches,
        EndpointClass::Admin,
    ];
    for bits in 1u8..=0x1f {
        let Caveat::Endpoints(set) = Caveat::decode_payload(tag::ENDPOINTS, &[bits]).unwrap()
        else {
            panic!("{bits:#x} is not an endpoints caveat");
        };
        let named: Vec<EndpointClass> = set.classes().collect();
        let expected: Vec<EndpointClass> = old
            .iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, c)| *c)
            .collect();
        assert_eq!(named, expected, "{bits:#x}");
        assert!(!set.contains(EndpointClass::Realtime), "{bits:#x}");
    }
    let realtime = Caveat::Endpoints(EndpointSet::of(&[EndpointClass::Realtime]).unwrap());
    assert_eq!(realtime.encode().last(), Some(&0x20));
    assert_eq!(round_trip(&realtime), realtime);
}
