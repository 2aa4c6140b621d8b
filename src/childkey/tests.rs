//! Unit and property tests for child keys: the chain, the format, verification.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;

use super::token::sign_unchecked;
use super::*;

const NOW: u64 = 1_795_000_000;

fn mint_key(seed: u8) -> MintKey {
    MintKey::from_parts(Kid([0xa1, 0xb2, 0xc3, seed]), [seed; 32])
}

fn pattern(text: &str) -> ModelPattern {
    match text.split_once('/') {
        Some((p, m)) => ModelPattern::new(p, Some(m)).unwrap(),
        None => ModelPattern::new(text, None).unwrap(),
    }
}

fn allow(patterns: &[&str]) -> Caveat {
    Caveat::Allow(patterns.iter().map(|p| pattern(p)).collect()).canonical()
}

fn facts<'a>(provider: &'a str, model: Option<&'a str>) -> RequestFacts<'a> {
    RequestFacts {
        provider,
        model,
        endpoint: EndpointClass::Inference,
        session: None,
        requested_output_tokens: None,
    }
}

fn three_caveat_token(mint: &MintKey) -> Token {
    Token::mint(
        mint,
        vec![
            allow(&["openai/gpt-4o-mini"]),
            Caveat::Expires(NOW + 3600),
            Caveat::BudgetUsd(1_000_000),
        ],
    )
    .unwrap()
}

/// Decodes and verifies; `Err` carries whichever step refused.
fn accept(text: &str, mint: &MintKey) -> Result<(), String> {
    let token = Token::decode(text).map_err(|e| e.to_string())?;
    verify(&token, mint).map(|_| ()).map_err(|e| e.to_string())
}

/// Re-encodes a (possibly altered) body with a correct checksum.
fn encode_body(body: &[u8]) -> String {
    let mut b = body.to_vec();
    b.extend_from_slice(&crc32fast::hash(body).to_be_bytes());
    format!("till_{}", URL_SAFE_NO_PAD.encode(b))
}

fn body_of(text: &str) -> Vec<u8> {
    let mut b = URL_SAFE_NO_PAD.decode(&text[5..]).unwrap();
    b.truncate(b.len() - 4);
    b
}

#[test]
fn minted_key_verifies_and_grants() {
    let mint = mint_key(1);
    let token = three_caveat_token(&mint);
    let text = token.encode();
    assert!(text.starts_with("till_"));
    let decoded = Token::decode(&text).unwrap();
    assert_eq!(decoded, token);
    let v = verify(&decoded, &mint).unwrap();
    let grant = v.check(&facts("openai", Some("gpt-4o-mini")), NOW).unwrap();
    assert_eq!(grant.expires_at, NOW + 3600);
    assert_eq!(
        grant.limits,
        vec![LevelLimit {
            level: 0,
            binding: token.binding(),
            limit: Limit::BudgetUsd(1_000_000)
        }]
    );
    assert_eq!(grant.max_output_tokens, None);
    assert_eq!(grant.cap_output_tokens, None);
}

#[test]
fn expiry_denial_names_the_time() {
    let mint = mint_key(1);
    let at = crate::scope::parse_expires("2026-11-27T21:00:00Z").unwrap();
    let token = Token::mint(&mint, vec![Caveat::Expires(at)]).unwrap();
    let v = verify(&token, &mint).unwrap();
    assert!(v.check(&facts("openai", None), at - 1).is_ok());
    let denial = v.check(&facts("openai", None), at).unwrap_err();
    assert_eq!(denial, Denial::Expired { at });
    assert_eq!(denial.status(), 401);
    assert_eq!(denial.kind(), "expired");
    let text = denial.to_string();
    assert!(
        text.contains("this key expired at 2026-11-27T21:00:00Z"),
        "{text}"
    );
}

#[test]
fn unknown_caveat_decodes_but_fails_closed() {
    let mint = mint_key(1);
    let unknown = Caveat::Unknown {
        tag: 0x42,
        bytes: vec![9, 9],
    };
    let token = sign_unchecked(
        &mint,
        vec![vec![Caveat::Expires(NOW + 60), unknown.clone()]],
        [3; 16],
    );
    let decoded = Token::decode(&token.encode()).unwrap();
    assert_eq!(decoded.caveats()[1], unknown);
    let denial = verify(&decoded, &mint).unwrap_err();
    assert_eq!(denial, Denial::UnknownCaveat { tag: 0x42 });
    assert_eq!(denial.status(), 403);
    assert!(denial.to_string().contains("upgrade till"));
    // Nobody can add one either.
    assert_eq!(
        Token::mint(&mint, vec![Caveat::Expires(NOW), unknown.clone()]).unwrap_err(),
        MintError::UnknownCaveat(0x42)
    );
    let good = three_caveat_token(&mint);
    assert_eq!(
        good.attenuate(vec![unknown]).unwrap_err(),
        MintError::UnknownCaveat(0x42)
    );
}

#[test]
fn no_caveat_token_is_refused_at_mint_and_verify() {
    let mint = mint_key(1);
    assert_eq!(
        Token::mint(&mint, vec![]).unwrap_err(),
        MintError::NoCaveats
    );
    let good = three_caveat_token(&mint);
    assert_eq!(good.attenuate(vec![]).unwrap_err(), MintError::NoCaveats);
    let empty = sign_unchecked(&mint, vec![], [4; 16]);
    let decoded = Token::decode(&empty.encode()).unwrap();
    assert_eq!(verify(&decoded, &mint).unwrap_err(), Denial::NoCaveats);
}

#[test]
fn mint_requires_an_expiry_and_valid_caveats() {
    let mint = mint_key(1);
    assert_eq!(
        Token::mint(&mint, vec![Caveat::Rpm(5)]).unwrap_err(),
        MintError::NoExpiry
    );
    assert!(matches!(
        Token::mint(&mint, vec![Caveat::Expires(NOW), Caveat::Allow(vec![])]),
        Err(MintError::Invalid(_))
    ));
    assert!(matches!(
        Token::mint(
            &mint,
            vec![Caveat::Expires(NOW), Caveat::Session("a b".into())]
        ),
        Err(MintError::Invalid(_))
    ));
    // Attenuation needs no expiry of its own.
    let child = three_caveat_token(&mint)
        .attenuate(vec![Caveat::Rpm(5)])
        .unwrap();
    assert!(verify(&child, &mint).is_ok());
}

#[test]
fn wrong_mint_key_is_bad_signature() {
    let mint = mint_key(1);
    let token = three_caveat_token(&mint);
    let impostor = MintKey::from_parts(mint.kid(), [0x77; 32]);
    let denial = verify(&token, &impostor).unwrap_err();
    assert_eq!(denial, Denial::BadSignature);
    assert_eq!(denial.status(), 401);
    assert_eq!(denial.kind(), "signature");
}

#[test]
fn kid_mismatch_is_unknown_kid() {
    let token = three_caveat_token(&mint_key(1));
    let denial = verify(&token, &mint_key(2)).unwrap_err();
    assert_eq!(
        denial,
        Denial::UnknownKid {
            kid: "a1b2c301".into()
        }
    );
    assert_eq!(denial.status(), 401);
    assert!(denial.to_string().contains("a1b2c301"));
}

#[test]
fn session_bound_key_works_only_on_its_session() {
    let mint = mint_key(1);
    let token = Token::mint(
        &mint,
        vec![Caveat::Expires(NOW + 60), Caveat::Session("run-1".into())],
    )
    .unwrap();
    let v = verify(&token, &mint).unwrap();
    let mut f = facts("openai", Some("gpt-4o"));
    f.session = Some("run-1");
    assert!(v.check(&f, NOW).is_ok());
    f.session = Some("run-2");
    assert_eq!(v.check(&f, NOW).unwrap_err(), Denial::WrongSession);
    f.session = None;
    let denial = v.check(&f, NOW).unwrap_err();
    assert_eq!(denial, Denial::WrongSession);
    assert_eq!(denial.status(), 401);
    assert_eq!(denial.kind(), "session");
}

#[test]
fn allow_checks_provider_and_model_glob() {
    let mint = mint_key(1);
    let token = Token::mint(
        &mint,
        vec![
            Caveat::Expires(NOW + 60),
            allow(&["openai/gpt-4o-mini", "anthropic/claude-haiku-*"]),
            Caveat::Endpoints(
                EndpointSet::of(&[EndpointClass::Inference, EndpointClass::Models]).unwrap(),
            ),
        ],
    )
    .unwrap();
    let v = verify(&token, &mint).unwrap();
    assert!(v.check(&facts("openai", Some("gpt-4o-mini")), NOW).is_ok());
    assert!(
        v.check(&facts("anthropic", Some("claude-haiku-4-5")), NOW)
            .is_ok()
    );
    // A request without a model is allowed where the provider is named.
    let mut list = facts("openai", None);
    list.endpoint = EndpointClass::Models;
    assert!(v.check(&list, NOW).is_ok());
    let denial = v.check(&facts("openai", Some("gpt-4o")), NOW).unwrap_err();
    assert_eq!(denial.kind(), "model");
    assert_eq!(denial.status(), 403);
    assert_eq!(
        denial.to_string(),
        "model gpt-4o is not in this key's scope (allowed: anthropic/claude-haiku-*, openai/gpt-4o-mini); \
         widen it with `--scope openai/gpt-4o` (on `till run`, or a new key from `till key create`)"
    );
    let denial = v.check(&facts("gemini", None), NOW).unwrap_err();
    assert_eq!(denial.kind(), "provider");
    assert!(
        denial
            .to_string()
            .contains("provider gemini is not in this key's scope")
    );
    assert!(denial.to_string().contains("--scope gemini"));
}

#[test]
fn a_denial_suggests_a_scope_only_for_a_model_a_scope_can_name() {
    let mint = mint_key(1);
    let token = Token::mint(
        &mint,
        vec![Caveat::Expires(NOW + 60), allow(&["openai/gpt-4o-mini"])],
    )
    .unwrap();
    let v = verify(&token, &mint).unwrap();
    for model in [
        "gpt-4o\u{1b}[2J",
        "gpt-4o; rm -rf ~",
        "gpt-*",
        "",
        &"m".repeat(200),
    ] {
        let denial = v.check(&facts("openai", Some(model)), NOW).unwrap_err();
        assert_eq!(
            denial.to_string(),
            format!("model {model} is not in this key's scope (allowed: openai/gpt-4o-mini)")
        );
    }
    for model in [
        "gpt-4o",
        "llama3:8b",
        "meta-llama/Llama-3.3-70B",
        "claude@2024+x",
    ] {
        assert!(is_model_name(model), "{model}");
    }
}

#[test]
fn provider_wide_pattern_allows_every_model() {
    let mint = mint_key(1);
    let token = Token::mint(&mint, vec![Caveat::Expires(NOW + 60), allow(&["openai"])]).unwrap();
    let v = verify(&token, &mint).unwrap();
    assert!(v.check(&facts("openai", Some("o3")), NOW).is_ok());
    assert!(v.check(&facts("openai", None), NOW).is_ok());
    assert!(v.check(&facts("anthropic", Some("o3")), NOW).is_err());
}

#[test]
fn endpoints_default_to_inference_at_the_first_level() {
    let mint = mint_key(1);
    let parent = Token::mint(&mint, vec![Caveat::Expires(NOW + 60)]).unwrap();
    let mut f = facts("openai", None);
    f.endpoint = EndpointClass::Files;
    let v = verify(&parent, &mint).unwrap();
    let denial = v.check(&f, NOW).unwrap_err();
    assert_eq!(denial.kind(), "endpoint");
    assert_eq!(
        denial.to_string(),
        "the files endpoints are not in this key's scope (allowed: inference); \
         widen it with `--endpoints inference,files` (on `till run`, or a new key from `till key create`)"
    );
    // A child naming `all` does not widen a parent that relied on the default.
    let child = parent
        .attenuate(vec![Caveat::Endpoints(EndpointSet::all())])
        .unwrap();
    let v = verify(&child, &mint).unwrap();
    assert_eq!(v.check(&f, NOW).unwrap_err().kind(), "endpoint");
    // A first level that names endpoints replaces the default.
    let wide = Token::mint(
        &mint,
        vec![
            Caveat::Expires(NOW + 60),
            Caveat::Endpoints(EndpointSet::all()),
        ],
    )
    .unwrap();
    assert!(verify(&wide, &mint).unwrap().check(&f, NOW).is_ok());
}

#[test]
fn max_output_tokens_denies_or_caps() {
    let mint = mint_key(1);
    let parent = Token::mint(
        &mint,
        vec![Caveat::Expires(NOW + 60), Caveat::MaxOutputTokens(4096)],
    )
    .unwrap();
    let token = parent
        .attenuate(vec![Caveat::MaxOutputTokens(1000)])
        .unwrap();
    let v = verify(&token, &mint).unwrap();
    let mut f = facts("openai", Some("gpt-4o"));
    let g = v.check(&f, NOW).unwrap();
    assert_eq!(g.max_output_tokens, Some(1000));
    assert_eq!(g.cap_output_tokens, Some(1000));
    f.requested_output_tokens = Some(800);
    let g = v.check(&f, NOW).unwrap();
    assert_eq!(g.cap_output_tokens, None);
    f.requested_output_tokens = Some(2000);
    let denial = v.check(&f, NOW).unwrap_err();
    assert_eq!(
        denial,
        Denial::MaxOutputTokens {
            requested: 2000,
            max: 1000
        }
    );
    assert_eq!(denial.status(), 403);
    assert!(denial.to_string().contains("--max-output-tokens 2000"));
}

#[test]
fn limits_carry_the_binding_of_their_level() {
    let mint = mint_key(1);
    let parent = Token::mint(
        &mint,
        vec![
            Caveat::Expires(NOW + 600),
            Caveat::BudgetUsd(5_000_000),
            Caveat::Rpm(60),
        ],
    )
    .unwrap();
    let child = parent
        .attenuate(vec![
            Caveat::BudgetUsd(1_000_000),
            Caveat::Expires(NOW + 60),
        ])
        .unwrap();
    let v = verify(&child, &mint).unwrap();
    let levels = child.levels();
    assert_eq!(
        levels,
        vec![
            Level {
                index: 0,
                caveats: 0..3
            },
            Level {
                index: 1,
                caveats: 3..5
            }
        ]
    );
    assert_eq!(v.level_bindings(), vec![parent.binding(), child.binding()]);
    assert_eq!(v.level_binding(0), Some(parent.binding()));
    assert_eq!(v.level_binding(2), None);
    let g = v.check(&facts("openai", Some("x")), NOW).unwrap();
    assert_eq!(g.expires_at, NOW + 60);
    let by_level: Vec<(usize, Binding, Limit)> = g
        .limits
        .iter()
        .map(|l| (l.level, l.binding, l.limit))
        .collect();
    assert_eq!(
        by_level,
        vec![
            (0, parent.binding(), Limit::BudgetUsd(5_000_000)),
            (0, parent.binding(), Limit::Rpm(60)),
            (1, child.binding(), Limit::BudgetUsd(1_000_000)),
        ]
    );
}

#[test]
fn bindings_known_to_minter_attenuator_and_verifier() {
    let mint = mint_key(1);
    let parent = three_caveat_token(&mint);
    let v = verify(&parent, &mint).unwrap();
    let minted: Vec<Binding> = parent.bindings().into_iter().map(Option::unwrap).collect();
    assert_eq!(minted, v.bindings());
    assert_eq!(v.level_bindings(), &[parent.binding()]);

    // The attenuator works from the final tag only: it knows its parent's binding and the
    // new level's, not the earlier ones.
    let held = Token::decode(&parent.encode()).unwrap();
    assert_eq!(held.bindings(), vec![None, None, Some(parent.binding())]);
    let child = held
        .attenuate(vec![Caveat::Rpm(1), Caveat::Tpm(2)])
        .unwrap();
    let known = child.bindings();
    let v = verify(&child, &mint).unwrap();
    let all = v.bindings();
    assert_eq!(all.len(), 5);
    assert_eq!(known[..2], [None, None]);
    for i in 2..5 {
        assert_eq!(known[i], Some(all[i]), "binding {i}");
    }
    assert_eq!(v.level_bindings(), &[all[2], all[4]]);
    assert_eq!(child.binding(), v.binding());
    assert_eq!(child.level_of(4), Some(1));
    assert_eq!(child.level_of(5), None);
}

#[test]
fn levels_cannot_be_resplit() {
    // Merging the child's level into the parent's would move the parent's budget to a fresh
    // counter; the level-end flag in the chain makes that a bad signature.
    let mint = mint_key(1);
    let parent = three_caveat_token(&mint);
    let child = parent.attenuate(vec![Caveat::Rpm(10)]).unwrap();
    let body = body_of(&child.encode());
    // Header (21 bytes), then level count 2, then the first level's count 3.
    assert_eq!(body[21..23], [2, 3]);
    let first: usize = parent.caveats().iter().map(|c| c.encode().len()).sum();
    assert_eq!(body[23 + first], 1, "the second level's count");
    let mut merged = body[..21].to_vec();
    merged.extend_from_slice(&[1, 4]);
    merged.extend_from_slice(&body[23..23 + first]);
    merged.extend_from_slice(&body[23 + first + 1..]);
    let forged = Token::decode(&encode_body(&merged)).unwrap();
    assert_eq!(forged.levels().len(), 1);
    assert_eq!(verify(&forged, &mint).unwrap_err(), Denial::BadSignature);
}

#[test]
fn debug_output_hides_the_tag() {
    let mint = mint_key(1);
    let token = three_caveat_token(&mint);
    let shown = format!("{token:?}");
    let encoded = token.encode();
    assert!(!shown.contains(&hex::encode(token.tag)), "{shown}");
    assert!(!shown.contains(&encoded[5..20]), "{shown}");
    assert!(shown.contains("BudgetUsd(1000000)"), "{shown}");
}

#[test]
fn decode_errors_are_typed() {
    let mint = mint_key(1);
    let text = three_caveat_token(&mint).encode();
    assert_eq!(
        Token::decode("sk-proj-abc").unwrap_err(),
        DecodeError::NotATillKey
    );
    assert_eq!(Token::decode("").unwrap_err(), DecodeError::NotATillKey);
    assert_eq!(Token::decode("till_").unwrap_err(), DecodeError::Truncated);
    assert_eq!(
        Token::decode(&text[..40]).unwrap_err(),
        DecodeError::Truncated
    );
    // Change one character in the middle.
    let mut chars: Vec<char> = text.chars().collect();
    chars[30] = if chars[30] == 'A' { 'B' } else { 'A' };
    let changed: String = chars.into_iter().collect();
    assert_eq!(
        Token::decode(&changed).unwrap_err(),
        DecodeError::BadChecksum
    );
    assert!(matches!(
        Token::decode(&format!("{text}!")).unwrap_err(),
        DecodeError::Malformed(_) | DecodeError::Truncated
    ));
    let mut body = body_of(&text);
    body[0] = 2;
    assert_eq!(
        Token::decode(&encode_body(&body)).unwrap_err(),
        DecodeError::BadVersion(2)
    );
    assert!(check_checksum(&text).is_ok());
    assert_eq!(
        check_checksum(&changed).unwrap_err(),
        DecodeError::BadChecksum
    );
    assert!(
        Denial::from(DecodeError::BadChecksum)
            .to_string()
            .contains("checksum")
    );
}

/// Regression (found by the `decode_token` fuzz target): a second level claiming u64::MAX
/// caveats overflowed the caveat-count check, a panic where overflow checks are on.
#[test]
fn a_huge_caveat_count_is_malformed_not_an_overflow() {
    let mint = mint_key(1);
    let mut body = body_of(&three_caveat_token(&mint).encode());
    // One level of three caveats becomes two levels, the second claiming u64::MAX caveats.
    assert_eq!(body[21], 1, "the level count follows the 21-byte header");
    body[21] = 2;
    let at = body.len() - 32;
    let mut count = Vec::new();
    super::caveat::put_varint(&mut count, u64::MAX);
    body.splice(at..at, count);
    assert_eq!(
        Token::decode(&encode_body(&body)).unwrap_err(),
        DecodeError::Malformed(format!("more than {MAX_CAVEATS} caveats"))
    );
}

#[test]
fn binding_prints_and_parses() {
    let b = Binding([0xab; 32]);
    assert_eq!(b.to_string().len(), 64);
    assert_eq!(format!("{b:#}"), "abababababab");
    assert_eq!(b.short(), "abababababab");
    assert_eq!(b.to_string().parse::<Binding>().unwrap(), b);
    assert!("abab".parse::<Binding>().is_err());
    assert_eq!(format!("{b:?}"), "Binding(abababababab)");
    let mixed = Binding(std::array::from_fn(|i| (i * 37 + 5) as u8));
    assert_eq!(mixed.hex(), mixed.to_string());
    assert_eq!(mixed.hex(), hex::encode(mixed.0));
}

#[test]
fn denial_statuses_and_kinds() {
    let all = [
        (Denial::Malformed("x".into()), 401, "malformed"),
        (Denial::BadSignature, 401, "signature"),
        (Denial::UnknownKid { kid: "k".into() }, 401, "kid"),
        (Denial::Expired { at: 0 }, 401, "expired"),
        (Denial::WrongSession, 401, "session"),
        (Denial::NoCaveats, 401, "no_caveats"),
        (
            Denial::ProviderNotAllowed {
                provider: "p".into(),
                allowed: vec![],
            },
            403,
            "provider",
        ),
        (
            Denial::ModelNotAllowed {
                provider: "p".into(),
                model: "m".into(),
                allowed: vec![],
            },
            403,
            "model",
        ),
        (
            Denial::EndpointNotAllowed {
                endpoint: EndpointClass::Admin,
                allowed: EndpointSet::inference_only(),
            },
            403,
            "endpoint",
        ),
        (
            Denial::MaxOutputTokens {
                requested: 2,
                max: 1,
            },
            403,
            "max_output_tokens",
        ),
        (Denial::UnknownCaveat { tag: 0x40 }, 403, "unknown_caveat"),
    ];
    for (d, status, kind) in all {
        assert_eq!(d.status(), status, "{d:?}");
        assert_eq!(d.kind(), kind, "{d:?}");
        assert!(!d.to_string().is_empty());
    }
    // Far-future expiries still print.
    assert!(
        Denial::Expired { at: u64::MAX }
            .to_string()
            .contains(&u64::MAX.to_string())
    );
}

#[test]
fn the_most_fundamental_denial_wins() {
    let mint = mint_key(1);
    let token = Token::mint(
        &mint,
        vec![
            Caveat::Expires(NOW),
            allow(&["openai"]),
            Caveat::Session("s".into()),
        ],
    )
    .unwrap();
    let v = verify(&token, &mint).unwrap();
    let denial = v.check(&facts("anthropic", None), NOW).unwrap_err();
    assert_eq!(denial.kind(), "expired");
    let denial = v.check(&facts("anthropic", None), NOW - 1).unwrap_err();
    assert_eq!(denial.kind(), "session");
}

#[test]
fn every_bit_flip_and_truncation_is_rejected() {
    let mint = mint_key(9);
    let child = Token::mint_with_nonce(
        &mint,
        canonicalize(vec![
            allow(&["openai/gpt-4o*", "anthropic"]),
            Caveat::Expires(NOW),
            Caveat::Endpoints(EndpointSet::all()),
            Caveat::Session("abc".into()),
        ]),
        [5; 16],
    )
    .attenuate(vec![
        Caveat::BudgetTokens(200_000),
        Caveat::MaxOutputTokens(99),
    ])
    .unwrap();
    for token in [three_caveat_token(&mint), child] {
        let text = token.encode();
        assert!(accept(&text, &mint).is_ok());
        assert_every_flip_rejected(&text, &mint);
        for cut in 0..text.len() {
            assert!(accept(&text[..cut], &mint).is_err(), "truncated at {cut}");
        }
        // A key cut short is said to be cut, wherever the cut falls (one whose last character
        // had unused bits set was said to hold invalid characters).
        for cut in "till_".len() + 1..text.len() {
            let e = Token::decode(&text[..cut]).unwrap_err();
            assert!(
                matches!(e, DecodeError::Truncated | DecodeError::BadChecksum),
                "cut at {cut}: {e}"
            );
        }
    }
}

fn assert_every_flip_rejected(text: &str, mint: &MintKey) {
    let bytes = text.as_bytes();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.to_vec();
            b[i] ^= 1 << bit;
            if let Ok(s) = String::from_utf8(b) {
                assert!(
                    accept(&s, mint).is_err(),
                    "flip of bit {bit} in char {i} accepted"
                );
            }
        }
    }
    let body = body_of(text);
    for i in 0..body.len() {
        for bit in 0..8 {
            let mut b = body.clone();
            b[i] ^= 1 << bit;
            assert!(
                accept(&encode_body(&b), mint).is_err(),
                "flip of bit {bit} in body byte {i} accepted"
            );
        }
    }
}

// A corpus of made-up keys shaped like other providers'. Split with `concat!` so secret
// scanners do not flag this file.
const FOREIGN_KEYS: [&str; 21] = [
    concat!(
        "sk-",
        "proj-PtYgjmUhBel31iEl2hpChYgCfrL1spNxnyVmihA-2O76UMFxFkM-R5Kjp1vRt_1fjORS-6ilI8ihN5KXSc7Tvo-hBKqFYY-kv5ZJr3J1TWDtkwtDDb_xHKas1VOqg6YYZYn9ZhyiA4uoRgnatmUdjAWtGSU8"
    ),
    concat!(
        "sk-",
        "proj-po_799NksnRH9ucAUsdMlHUvTCQCyEZDz-TddJ8HyS5SUkCnD8zRA9a9SkpXz9w3QlY7ZkuvqdT3Blbk",
        "FJt7s8Stqcbnr3yBdGBLEPH1qhT61qtc4xatws8phP9nhFyJfm5di4PzJ59FHz5r1pY4OjE2jBMp"
    ),
    concat!("sk-", "5Xj8TPQxjq4i9DoV8gz4FkQ1okTBGzvAmwufUxbvJDCTbyvH"),
    concat!(
        "sk-",
        "NsG9eh6Yo4gfqrc5XlrWT3Blbk",
        "FJi0B26R08qzjI6GKFSufr"
    ),
    concat!(
        "sk-",
        "svcacct-hx2jIclHkCiHp6bR1IqfEouHgxzNNAL5wIScGebcy8F5n3-YNBDRzrZSgqbjG3uhkWKFLf6xuI5aHUQPFeNBTxaQWk8JzFalHlsZfYcMMDktXP-tKsf2rcDkdfrUnW5gcF_Ha6ili8GjHEAD6-Wj9KfzjsQG"
    ),
    concat!(
        "sk-",
        "admin-Mrb9h_ImB_LK777pzNk8cL6j5IXAAjlsHUqJoUD-_Ydua_5ZMs1SWOpQaPRYpzbLGViYXjU2JgJngKtFI3OyV2dZAkg05rK_gqv81RKMGHZEM9YpvujA-C5Q52ryFlwRlOEVHzc0X0AWIRh-JUqBlIFXZ53N"
    ),
    concat!(
        "sk-",
        "None-cqe28_ajY75FnCttn6kfaqDeMqG3omjMyXHCabM6JOF8EFd0"
    ),
    concat!(
        "sk-",
        "ant-api03-Nhcy-1kGD2VD-eR1UYzaLiA-zNyD7CHLn-xC_1hsYgBds1ghxY5OokvQyx7eNWVQ4vnakJkS1pAWTN3lg8zV5yPU8d0FZAA"
    ),
    concat!(
        "sk-",
        "ant-api03-fWe7ihGyiRUIQfHOJMaidDn87XG3-q-xbMtEPO6UkzYuF0ie9Pu2njHkAm1-5wDr16EpLLJIVGHz4FxFEtKyPiYGFDm7eAA"
    ),
    concat!(
        "sk-",
        "ant-admin01-na8D5VfLDpgyyjVw5HanSBeVRsfAGeAbP0VxNjAe-9i0mYtluYI0KN1gNT11cUzYZAa3u2olZU6uqbgsYlVvsSKuvinX_AA"
    ),
    concat!(
        "sk-",
        "ant-oat01-zMqf9OgXluCZz8xBfZuXTptFyfePpX6N1NF2XV54wca_7E56w8ZniqT3Ul4ffqkOkgWrdioyq_KvCiSGuPJ6sG9AHEOVeAA"
    ),
    concat!("AI", "zazxZuJPWvHogU5nGYVHWVsUQk4DwgLGNOaeC"),
    concat!("AI", "zatL31Ugq_DfcgaTMnTC0MrAU8urbFt5misIZ"),
    concat!("gh", "p_Zq9adP0J5wMPLCM7HUFpk5acdIbzlpkd6Xga"),
    concat!("gh", "o_NJQ8mjAmHMPGPPA0NlGtetOd4UYETIay2BV6"),
    concat!("gh", "u_DfVPClogqoPchv5V7S82qTdrOJRBRY6HqsP7"),
    concat!("gh", "s_95nf4Gakq5p1Vm8kV6um4yvMpy62O6SQ1IEE"),
    concat!("gh", "r_1HSa2bB9UoK4tYnzNLeK6kjcbhgN7kwjSbbc"),
    concat!(
        "github",
        "_pat_iSPOcSeVce2LWxm090I5Qe_43W6T8ygpnnhcc826ZWOf0WOOsEgigYWPnsuvBqbwq7sdTWx6uX9MGE2sNV"
    ),
    concat!(
        "xai",
        "-bYAbBHXgwETdIKnT30fK0skBaHmsWWdawFgFSY0l9FLw91GqK8ks0n8SoFkh8OXfFYSJYgOuwgz7z54V"
    ),
    concat!(
        "gsk",
        "_fB4PbxntqB5IGky4Oo8DiIMWSWMPcwLuHj31CQJVukDCSXqLoivD"
    ),
];

// The crate has no `regex` dependency of its own; insta's snapshot filters run the `regex`
// crate, so the published regex is exercised by a real engine.
#[test]
fn token_regex_matches_minted_keys() {
    let mint = mint_key(1);
    let smallest = sign_unchecked(&mint, vec![], [0; 16]).encode();
    assert_eq!(smallest.len(), 5 + 78);
    let big = three_caveat_token(&mint)
        .attenuate(vec![allow(&["openai/gpt-4o-mini"]), Caveat::Rpm(3)])
        .unwrap()
        .encode();
    let text = format!(
        "OPENAI_API_KEY={}\nexport ANTHROPIC_API_KEY=\"{}\"\n{{\"key\": \"{smallest}\"}}\nAuthorization: Bearer {big}\n",
        three_caveat_token(&mint).encode(),
        Token::mint(&mint, vec![Caveat::Expires(1)])
            .unwrap()
            .encode(),
    );
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(TOKEN_REGEX, "[TILL_KEY]");
    settings.bind(|| {
        insta::assert_snapshot!(text, @r#"
        OPENAI_API_KEY=[TILL_KEY]
        export ANTHROPIC_API_KEY="[TILL_KEY]"
        {"key": "[TILL_KEY]"}
        Authorization: Bearer [TILL_KEY]
        "#);
    });
}

#[test]
fn token_regex_ignores_other_providers_keys() {
    let text = FOREIGN_KEYS.join("\n");
    let mut settings = insta::Settings::clone_current();
    // Matches become `#`; then every line without a `#` collapses to `-`. Any line the till
    // regex touched would survive and break the snapshot.
    settings.add_filter(TOKEN_REGEX, "#");
    settings.add_filter(r"(?m)^[^#\n]+$", "-");
    settings.bind(|| {
        insta::assert_snapshot!(text, @r"
        -
        -
        -
        -
        -
        -
        -
        -
        -
        -
        -
        -
        -
        -
        -
        -
        -
        -
        -
        -
        -
        ");
    });
}

#[test]
fn gitleaks_rule_uses_the_published_regex() {
    let config = include_str!("../../gitleaks.toml");
    assert!(config.contains("id = \"till-child-key\""));
    assert!(
        config.contains(&format!("regex = '''{TOKEN_REGEX}'''")),
        "gitleaks.toml and TOKEN_REGEX disagree"
    );
}

// ---- property tests -------------------------------------------------------------------

const PROVIDERS: [&str; 3] = ["openai", "anthropic", "gemini"];
const MODELS: [&str; 6] = [
    "gpt-4o",
    "gpt-4o-mini",
    "claude-haiku-4-5",
    "claude-sonnet-4",
    "gemini-2.5-flash",
    "o3",
];
const GLOBS: [&str; 8] = [
    "*",
    "gpt-4o*",
    "gpt-?o",
    "claude-*",
    "*-mini",
    "o3",
    "gemini-*",
    "claude-haiku-?-?",
];

fn arb_pattern() -> impl Strategy<Value = ModelPattern> {
    (
        proptest::sample::select(&PROVIDERS[..]),
        proptest::option::of(proptest::sample::select(&GLOBS[..])),
    )
        .prop_map(|(p, g)| ModelPattern::new(p, g).unwrap())
}

fn arb_endpoint() -> impl Strategy<Value = EndpointClass> {
    proptest::sample::select(&EndpointClass::ALL[..])
}

fn arb_endpoint_set() -> impl Strategy<Value = EndpointSet> {
    prop_oneof![
        1 => Just(EndpointSet::all()),
        4 => proptest::collection::vec(arb_endpoint(), 1..4)
            .prop_map(|v| EndpointSet::of(&v).unwrap()),
    ]
}

/// Known caveats, with values near the facts and times the tests use.
fn arb_caveat() -> impl Strategy<Value = Caveat> {
    prop_oneof![
        proptest::collection::vec(arb_pattern(), 1..4).prop_map(|v| Caveat::Allow(v).canonical()),
        arb_endpoint_set().prop_map(Caveat::Endpoints),
        (NOW - 10..NOW + 10).prop_map(Caveat::Expires),
        any::<u64>().prop_map(Caveat::BudgetUsd),
        any::<u64>().prop_map(Caveat::BudgetTokens),
        any::<u32>().prop_map(Caveat::Rpm),
        any::<u64>().prop_map(Caveat::Tpm),
        any::<u64>().prop_map(Caveat::MaxRequests),
        (0u64..2000).prop_map(Caveat::MaxOutputTokens),
        proptest::sample::select(&["s1", "s2"][..]).prop_map(|s| Caveat::Session(s.into())),
    ]
}

fn arb_unknown() -> impl Strategy<Value = Caveat> {
    (
        any::<u8>().prop_filter("unknown tags only", |t| !(0x01..=0x0a).contains(t)),
        proptest::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(tag, bytes)| Caveat::Unknown { tag, bytes })
}

fn arb_facts() -> impl Strategy<
    Value = (
        usize,
        Option<usize>,
        EndpointClass,
        Option<&'static str>,
        Option<u64>,
    ),
> {
    (
        0..PROVIDERS.len(),
        proptest::option::of(0..MODELS.len()),
        arb_endpoint(),
        proptest::option::of(proptest::sample::select(&["s1", "s2"][..])),
        proptest::option::of(0u64..3000),
    )
}

proptest! {
    /// 1. Attenuation never widens: whatever the child allows, the parent allows.
    #[test]
    fn attenuation_never_widens(
        parent in proptest::collection::vec(arb_caveat(), 0..5),
        parent_expiry in NOW - 5..NOW + 5,
        extra in proptest::collection::vec(arb_caveat(), 1..5),
        more in proptest::collection::vec(arb_caveat(), 0..3),
        (p, m, endpoint, session, requested) in arb_facts(),
        now in NOW - 10..NOW + 10,
    ) {
        let mint = mint_key(3);
        let mut parent_caveats = parent;
        parent_caveats.push(Caveat::Expires(parent_expiry));
        let parent = Token::mint(&mint, parent_caveats).unwrap();
        let mut child = parent.attenuate(extra).unwrap();
        if !more.is_empty() {
            child = Token::decode(&child.encode()).unwrap().attenuate(more).unwrap();
        }
        let facts = RequestFacts {
            provider: PROVIDERS[p],
            model: m.map(|i| MODELS[i]),
            endpoint,
            session,
            requested_output_tokens: requested,
        };
        let pv = verify(&parent, &mint).unwrap();
        let cv = verify(&child, &mint).unwrap();
        prop_assert_eq!(&cv.level_bindings()[..1], pv.level_bindings());
        if let Ok(child_grant) = cv.check(&facts, now) {
            let parent_grant = pv.check(&facts, now);
            prop_assert!(parent_grant.is_ok(), "child allowed, parent denied: {:?}", parent_grant);
            let parent_grant = parent_grant.unwrap();
            // And the child is held to every limit of the parent, on the parent's counters.
            for l in &parent_grant.limits {
                prop_assert!(child_grant.limits.contains(l));
            }
            prop_assert!(child_grant.expires_at <= parent_grant.expires_at);
            if let Some(pmax) = parent_grant.max_output_tokens {
                prop_assert!(child_grant.max_output_tokens.is_some_and(|c| c <= pmax));
            }
        }
    }

    /// 2. Encode/decode round-trips, unknown caveats included, and the text is canonical.
    #[test]
    fn encode_decode_round_trips(
        levels in proptest::collection::vec(
            proptest::collection::vec(prop_oneof![4 => arb_caveat(), 1 => arb_unknown()], 1..5),
            0..4,
        ),
        nonce in any::<[u8; 16]>(),
        seed in any::<u8>(),
    ) {
        let mint = mint_key(seed);
        // Each level as an encoder writes it: sorted and without duplicates.
        let levels: Vec<Vec<Caveat>> = levels
            .into_iter()
            .map(crate::childkey::caveat::canonicalize)
            .collect();
        let token = sign_unchecked(&mint, levels.clone(), nonce);
        let text = token.encode();
        let back = Token::decode(&text).unwrap();
        prop_assert_eq!(&back, &token);
        prop_assert_eq!(back.encode(), text);
        prop_assert_eq!(back.binding(), token.binding());
        // The same level out of order, or with a caveat twice, is no key an encoder writes.
        if let Some(i) = levels.iter().position(|l| l.len() > 1) {
            let mut swapped = levels.clone();
            swapped[i].swap(0, 1);
            let text = sign_unchecked(&mint, swapped, nonce).encode();
            prop_assert!(Token::decode(&text).is_err());
        }
        if let Some(i) = levels.iter().position(|l| !l.is_empty()) {
            let mut doubled = levels.clone();
            let first = doubled[i][0].clone();
            doubled[i].insert(0, first);
            let text = sign_unchecked(&mint, doubled, nonce).encode();
            prop_assert!(Token::decode(&text).is_err());
        }
    }

    /// 3. A random single-bit flip (in the text or in the body) or truncation is refused.
    #[test]
    fn random_flips_and_truncations_are_rejected(
        caveats in proptest::collection::vec(arb_caveat(), 0..5),
        extra in proptest::option::of(proptest::collection::vec(arb_caveat(), 1..3)),
        pos in any::<proptest::sample::Index>(),
        bit in 0u8..8,
        cut in any::<proptest::sample::Index>(),
    ) {
        let mint = mint_key(4);
        let mut caveats = caveats;
        caveats.push(Caveat::Expires(NOW));
        let mut token = Token::mint(&mint, caveats).unwrap();
        if let Some(extra) = extra {
            token = token.attenuate(extra).unwrap();
        }
        let text = token.encode();
        prop_assert!(accept(&text, &mint).is_ok());

        let mut bytes = text.clone().into_bytes();
        let i = pos.index(bytes.len());
        bytes[i] ^= 1 << bit;
        if let Ok(s) = String::from_utf8(bytes) {
            prop_assert!(accept(&s, &mint).is_err(), "flip of bit {} in char {}", bit, i);
        }

        let mut body = body_of(&text);
        let j = pos.index(body.len());
        body[j] ^= 1 << bit;
        prop_assert!(accept(&encode_body(&body), &mint).is_err(), "flip of bit {} in body byte {}", bit, j);

        let k = cut.index(text.len());
        prop_assert!(accept(&text[..k], &mint).is_err(), "truncation at {}", k);
    }

    /// 5. Arbitrary text never panics the decoder, and whatever decodes re-encodes to itself.
    #[test]
    fn decode_never_panics(text in ".{0,200}") {
        if let Ok(t) = Token::decode(&text) {
            prop_assert_eq!(t.encode(), text.as_str());
        }
        let _ = check_checksum(&text);
    }

    #[test]
    fn decode_never_panics_on_till_prefixed_base64(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        // With a valid checksum the parser itself sees the bytes.
        let text = encode_body(&body);
        if let Ok(t) = Token::decode(&text) {
            prop_assert_eq!(t.encode(), text);
            let _ = verify(&t, &mint_key(1));
        }
        let raw = format!("till_{}", URL_SAFE_NO_PAD.encode(&body));
        let _ = Token::decode(&raw);
    }
}

/// Keys printed by `till key create` before the realtime endpoint class existed: their scope
/// reads back unchanged, and only `all` takes in the class added since.
#[test]
fn keys_minted_before_the_realtime_class_keep_their_scope() {
    let cases = [
        (
            "till_ARm-5WaAkXZW1CN8CxTWYrQAKJGoAQMBCQEGb3BlbmFpAAIBHwMFqPTR2QYZ59QFSOONqoEZE6Qbn8cCvpp0g4GCC-K-w05WxBx2I1E4BjI",
            Some("inference,models,files,batches,admin"),
        ),
        (
            "till_ARm-5WY1LoVbZe7M_5EWWRGWostjAQMBCQEGb3BlbmFpAAIBgAMFqPTR2QatxXmCRAnNHuSxiXfM8QiJ9jxuLK-yt401BNoI1wcqjT7xh4s",
            Some("all"),
        ),
        (
            "till_ARm-5Wb1hu4gD8pXU6DhQ6nuONM4AQIBCQEGb3BlbmFpAAMFqfTR2QY2BWWKh1dXUCjHfMsrewi-KARB7eoWV8z_QSfneebxsy3Dqy8",
            None,
        ),
    ];
    for (text, endpoints) in cases {
        let token = Token::decode(text).unwrap();
        let sets: Vec<EndpointSet> = token
            .caveats()
            .iter()
            .filter_map(|c| match c {
                Caveat::Endpoints(set) => Some(*set),
                _ => None,
            })
            .collect();
        assert_eq!(
            sets.iter().map(ToString::to_string).collect::<Vec<_>>(),
            endpoints
                .into_iter()
                .map(str::to_string)
                .collect::<Vec<_>>(),
            "{text}"
        );
        let realtime = sets.iter().any(|s| s.contains(EndpointClass::Realtime));
        assert_eq!(realtime, endpoints == Some("all"), "{text}");
        // Re-encoding gives back the very same key.
        assert_eq!(token.encode(), text);
    }
}
