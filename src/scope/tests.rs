use super::narrow::glob_covers;
use super::*;
use crate::childkey::{EndpointClass, Kid, MintKey};
use proptest::prelude::*;

const KNOWN: [&str; 4] = ["anthropic", "gemini", "openai", "open-router_2"];
const NOW: u64 = 1_795_000_000;

#[test]
fn budgets_parse_to_micro_dollars_and_tokens() {
    let cases = [
        ("5usd", Budget::Usd(5_000_000)),
        ("0.50usd", Budget::Usd(500_000)),
        ("0.5USD", Budget::Usd(500_000)),
        ("$5", Budget::Usd(5_000_000)),
        ("$0.50", Budget::Usd(500_000)),
        (".25usd", Budget::Usd(250_000)),
        ("0.000001usd", Budget::Usd(1)),
        ("12.3400usd", Budget::Usd(12_340_000)),
        ("200ktok", Budget::Tokens(200_000)),
        ("1mtok", Budget::Tokens(1_000_000)),
        ("1.5mtok", Budget::Tokens(1_500_000)),
        ("5000tok", Budget::Tokens(5_000)),
        ("5000 tokens", Budget::Tokens(5_000)),
        ("0tok", Budget::Tokens(0)),
    ];
    for (text, want) in cases {
        assert_eq!(parse_budget(text), Ok(want), "{text}");
    }
    for bad in [
        "5",
        "5eur",
        "0.0000001usd",
        "1.5tok",
        "1.2.3usd",
        "usd",
        "$",
        "",
        "-5usd",
        "5 kusd",
        "99999999999999999999usd",
        "18446744073709551616tok",
        "1e3tok",
    ] {
        let err = parse_budget(bad).unwrap_err();
        assert!(
            matches!(
                err,
                ScopeError::Invalid {
                    flag: "--budget",
                    ..
                }
            ),
            "{bad}: {err:?}"
        );
        assert!(err.hint().unwrap().contains("200ktok"));
    }
}

#[test]
fn budgets_print_back_in_flag_syntax() {
    assert_eq!(Budget::Usd(500_000).to_string(), "0.5usd");
    assert_eq!(Budget::Usd(5_000_000).to_string(), "5usd");
    assert_eq!(Budget::Usd(1).to_string(), "0.000001usd");
    assert_eq!(Budget::Tokens(200_000).to_string(), "200ktok");
    assert_eq!(Budget::Tokens(3_000_000).to_string(), "3mtok");
    assert_eq!(Budget::Tokens(1_234).to_string(), "1234tok");
    assert_eq!(Budget::Tokens(0).to_string(), "0tok");
}

#[test]
fn pattern_errors_point_at_the_bad_part() {
    let err = parse_pattern("openai/gpt-4o[", &KNOWN).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`openai/gpt-4o[`: unexpected `[` at position 14 — model globs may use only * and ?"
    );
    assert!(err.hint().is_some());
    let err = parse_pattern("OpenAI/gpt-4o", &KNOWN).unwrap_err();
    assert!(
        err.to_string().contains("unexpected `O` at position 1"),
        "{err}"
    );
    assert!(err.to_string().contains("lowercase"), "{err}");
    // A control character is shown as its escape: the message stays on one line.
    let err = parse_pattern("openai/gpt\nstatus: active", &KNOWN).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`openai/gpt\\nstatus: active`: unexpected `\\n` at position 11 — \
         model names use letters, digits and . _ - / : @ +, globs add * and ?"
    );
    let err = parse_pattern("mistral/large", &KNOWN).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown provider `mistral` in `mistral/large` (known: anthropic, gemini, open-router_2, openai)"
    );
    assert!(
        err.hint()
            .unwrap()
            .contains("[providers.mistral] in config.toml"),
        "{:?}",
        err.hint()
    );
    let err = parse_pattern("mistral", &KNOWN).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown provider `mistral` (known: anthropic, gemini, open-router_2, openai)"
    );
    let err = parse_pattern("openai/", &KNOWN).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    assert!(parse_pattern("/gpt", &KNOWN).is_err());
    assert!(parse_pattern("_x", &[]).is_err());
    assert!(parse_pattern("openai/gpt 4", &KNOWN).is_err());
    assert_eq!(parse_pattern("openai", &KNOWN).unwrap().model(), None);
    assert_eq!(
        parse_pattern("anthropic/claude-haiku-*", &KNOWN)
            .unwrap()
            .model(),
        Some("claude-haiku-*")
    );
    assert_eq!(
        parse_pattern("open-router_2/meta-llama/llama-3:free", &KNOWN)
            .unwrap()
            .to_string(),
        "open-router_2/meta-llama/llama-3:free"
    );
    // An empty list of known providers accepts any well-formed name.
    assert!(parse_pattern("anything/x", &[]).is_ok());
}

#[test]
fn endpoints_parse() {
    assert_eq!(parse_endpoints("all").unwrap(), EndpointSet::all());
    let set = parse_endpoints("inference, Models").unwrap();
    assert!(set.contains(EndpointClass::Models) && !set.contains(EndpointClass::Files));
    assert_eq!(set.to_string(), "inference,models");
    let err = parse_endpoints("inference,flies").unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown endpoint class `flies` at position 11"),
        "{err}"
    );
    assert!(parse_endpoints("all,models").is_err());
    assert!(parse_endpoints("").is_err());
    assert!(parse_endpoints("inference,,models").is_err());
}

#[test]
fn ttl_and_expires_parse() {
    assert_eq!(parse_ttl("30m"), Ok(1_800));
    assert_eq!(parse_ttl("2h"), Ok(7_200));
    assert!(parse_ttl("0s").is_err());
    assert!(parse_ttl("soon").is_err());
    assert_eq!(parse_expires("1970-01-01T00:01:00Z"), Ok(60));
    assert_eq!(parse_expires("12345"), Ok(12_345));
    // An offset counts (the time before it was read as UTC: a key made to end at 13:00+01:00
    // lived until 13:00 UTC, an hour longer).
    assert_eq!(parse_expires("1970-01-01T01:01:00+01:00"), Ok(60));
    assert_eq!(parse_expires("1970-01-01T00:00:00-00:01"), Ok(60));
    assert!(parse_expires("tomorrow").is_err());
    assert_eq!(format_expires(60), "1970-01-01T00:01:00Z");
    assert_eq!(format_expires(u64::MAX), u64::MAX.to_string());
}

#[test]
fn spec_to_caveats() {
    let spec = ScopeSpec {
        scopes: vec!["openai/gpt-4o*".into(), "anthropic".into()],
        endpoints: Some("inference,models".into()),
        budget: vec!["5usd".into(), "200ktok".into()],
        ttl: Some("30m".into()),
        rpm: Some(60),
        max_output_tokens: Some(4096),
        ..ScopeSpec::default()
    };
    let caveats = spec.to_caveats(NOW, &KNOWN).unwrap();
    assert!(caveats.contains(&Caveat::Expires(NOW + 1_800)));
    assert!(caveats.contains(&Caveat::BudgetUsd(5_000_000)));
    assert!(caveats.contains(&Caveat::BudgetTokens(200_000)));
    assert!(caveats.contains(&Caveat::Rpm(60)));
    assert_eq!(caveats.len(), 7);
    assert_eq!(caveats, canonicalize(caveats.clone()));
    // No ttl: no expiry; the caller adds its default.
    let bare = ScopeSpec::default().to_caveats(NOW, &KNOWN).unwrap();
    assert!(bare.is_empty());
    let both = ScopeSpec {
        ttl: Some("1h".into()),
        expires: Some(NOW),
        ..ScopeSpec::default()
    };
    assert!(matches!(
        both.to_caveats(NOW, &KNOWN),
        Err(ScopeError::Conflict(_))
    ));
    let two = ScopeSpec {
        budget: vec!["1usd".into(), "$2".into()],
        ..ScopeSpec::default()
    };
    assert!(matches!(
        two.to_caveats(NOW, &KNOWN),
        Err(ScopeError::Conflict(_))
    ));
}

#[test]
fn spec_prints_as_flags() {
    let spec = ScopeSpec {
        scopes: vec!["anthropic/claude-haiku-*".into()],
        budget: vec!["0.5usd".into()],
        expires: Some(60),
        max_requests: Some(10),
        ..ScopeSpec::default()
    };
    assert_eq!(
        spec.to_string(),
        "--scope 'anthropic/claude-haiku-*' --budget 0.5usd --expires 1970-01-01T00:01:00Z --max-requests 10"
    );
    let back = ScopeSpec::from_args(&spec.to_args()).unwrap();
    assert_eq!(back, spec);
    let eq = ScopeSpec::from_args(&["--rpm=5", "--scope", "openai"]).unwrap();
    assert_eq!(eq.rpm, Some(5));
    assert_eq!(eq.scopes, vec!["openai".to_string()]);
    assert_eq!(
        ScopeSpec::from_args(&["--color"]).unwrap_err(),
        ScopeError::UnknownFlag("--color".into())
    );
    assert_eq!(
        ScopeSpec::from_args(&["--rpm"]).unwrap_err(),
        ScopeError::MissingValue("--rpm".into())
    );
    assert!(ScopeSpec::from_args(&["--rpm", "-1"]).is_err());
    assert!(ScopeSpec::from_args(&["--ttl", "1h", "--ttl", "2h"]).is_err());
}

#[test]
fn from_caveats_folds_ceilings_and_refuses_the_unspellable() {
    let spec = ScopeSpec::from_caveats(&[
        Caveat::Rpm(10),
        Caveat::Rpm(5),
        Caveat::Expires(100),
        Caveat::Expires(50),
        Caveat::Endpoints(EndpointSet::all()),
        Caveat::Endpoints(parse_endpoints("models,files").unwrap()),
    ])
    .unwrap();
    assert_eq!(spec.rpm, Some(5));
    assert_eq!(spec.expires, Some(50));
    assert_eq!(spec.endpoints.as_deref(), Some("models,files"));
    let a = Caveat::Allow(vec![parse_pattern("openai", &[]).unwrap()]);
    let b = Caveat::Allow(vec![parse_pattern("gemini", &[]).unwrap()]);
    assert!(ScopeSpec::from_caveats(&[a.clone(), a.clone()]).is_ok());
    assert!(matches!(
        ScopeSpec::from_caveats(&[a, b]),
        Err(ScopeError::Unrepresentable(_))
    ));
    assert!(
        ScopeSpec::from_caveats(&[Caveat::Unknown {
            tag: 0x70,
            bytes: vec![]
        }])
        .is_err()
    );
}

#[test]
fn scope_errors_become_usage_errors_with_hints() {
    let err: UserError = parse_budget("5eur").unwrap_err().into();
    assert_eq!(err.kind.code(), 2);
    assert_eq!(
        err.message,
        "invalid --budget `5eur`: give a unit: `usd` (or a leading `$`) for dollars, `tok` for tokens"
    );
    assert!(err.hint.unwrap().contains("0.50usd"));
}

#[test]
fn glob_cover_is_sound() {
    assert!(glob_covers("claude-*", "claude-haiku-*"));
    assert!(glob_covers("*", "anything*"));
    assert!(glob_covers("gpt-?o", "gpt-4o"));
    assert!(glob_covers("gpt-*", "gpt-?o"));
    assert!(glob_covers("gpt-4o", "gpt-4o"));
    assert!(!glob_covers("a?", "a*"));
    assert!(!glob_covers("gpt-4o", "gpt-4o*"));
    assert!(!glob_covers("claude-haiku-*", "claude-*"));
    assert!(!glob_covers("gpt-?o", "gpt-*o"));
}

fn parent_token(caveats: Vec<Caveat>) -> Token {
    let mint = MintKey::from_parts(Kid([1, 2, 3, 4]), [7; 32]);
    let mut caveats = caveats;
    caveats.push(Caveat::Expires(NOW + 3_600));
    Token::mint(&mint, caveats).unwrap()
}

fn spec(args: &[&str]) -> ScopeSpec {
    ScopeSpec::from_args(args).unwrap()
}

#[test]
fn check_narrower_accepts_narrower_requests() {
    let parent = parent_token(vec![
        Caveat::Allow(vec![
            parse_pattern("openai/gpt-4o*", &[]).unwrap(),
            parse_pattern("anthropic", &[]).unwrap(),
        ]),
        Caveat::BudgetUsd(5_000_000),
        Caveat::Rpm(60),
    ]);
    for args in [
        &["--scope", "openai/gpt-4o-mini"][..],
        &["--scope", "openai/gpt-4o*", "--scope", "anthropic/claude-*"],
        &["--budget", "5usd", "--ttl", "1h", "--rpm", "60"],
        &["--budget", "200ktok", "--tpm", "1000"],
        &["--endpoints", "inference"],
        &[],
    ] {
        assert_eq!(
            spec(args).check_narrower(&parent, NOW, &KNOWN),
            Ok(()),
            "{args:?}"
        );
    }
}

#[test]
fn check_narrower_refuses_wider_requests() {
    let parent = parent_token(vec![
        Caveat::Allow(vec![parse_pattern("openai/gpt-4o*", &[]).unwrap()]),
        Caveat::BudgetUsd(5_000_000),
        Caveat::Rpm(60),
    ]);
    let cases: [(&[&str], &str); 7] = [
        (
            &["--scope", "anthropic"],
            "--scope anthropic is wider than the parent key allows (allowed: openai/gpt-4o*)",
        ),
        (&["--scope", "openai"], "--scope openai"),
        (&["--scope", "openai/gpt-4*"], "--scope openai/gpt-4*"),
        (
            &["--budget", "$6"],
            "--budget 6usd is wider than the parent key allows (budget 5usd)",
        ),
        (
            &["--ttl", "2h"],
            "--ttl 2h is wider than the parent key allows (expiring 2026-",
        ),
        (&["--rpm", "61"], "--rpm 61"),
        (
            &["--endpoints", "models"],
            "--endpoints models is wider than the parent key allows (endpoints: inference)",
        ),
    ];
    for (args, want) in cases {
        let err = spec(args).check_narrower(&parent, NOW, &KNOWN).unwrap_err();
        assert!(err.to_string().starts_with(want), "{args:?}: {err}");
        let user: UserError = err.into();
        assert!(user.hint.unwrap().contains("narrow"));
    }
    // An attenuation naming `all` endpoints still only has what the first level allowed.
    let child = parent
        .attenuate(vec![Caveat::Endpoints(EndpointSet::all())])
        .unwrap();
    assert!(
        spec(&["--endpoints", "files"])
            .check_narrower(&child, NOW, &KNOWN)
            .is_err()
    );
}

// ---- property tests ---------------------------------------------------------------

fn arb_glob() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9*?._:@+/-]{1,12}"
}

fn arb_spec_caveats() -> impl Strategy<Value = Vec<Caveat>> {
    let pattern = (
        proptest::sample::select(&KNOWN[..]),
        proptest::option::of(arb_glob()),
    )
        .prop_map(|(p, g)| ModelPattern::new(p, g.as_deref()).unwrap());
    let endpoints = prop_oneof![
        Just(EndpointSet::all()),
        proptest::collection::vec(proptest::sample::select(&EndpointClass::ALL[..]), 1..5)
            .prop_map(|v| EndpointSet::of(&v).unwrap()),
    ];
    (
        proptest::option::of(proptest::collection::vec(pattern, 1..5)),
        proptest::option::of(endpoints),
        // Limits of 0 are refused (a key that can make no request), so none is generated.
        proptest::option::of(1..=u64::MAX),
        proptest::option::of(prop_oneof![
            1..=u64::MAX,
            (1u64..1000).prop_map(|v| v * 1000),
            (1u64..100).prop_map(|v| v * 1_000_000)
        ]),
        proptest::option::of(prop_oneof![0..=MAX_RFC3339, any::<u64>()]),
        (
            proptest::option::of(1..=u32::MAX),
            proptest::option::of(1..=u64::MAX),
            proptest::option::of(1..=u64::MAX),
            proptest::option::of(1..=u64::MAX),
            proptest::option::of("[A-Za-z0-9._-]{1,64}"),
        ),
    )
        .prop_map(
            |(allow, endpoints, usd, tokens, expires, (rpm, tpm, maxr, maxo, session))| {
                let mut out = Vec::new();
                out.extend(allow.map(Caveat::Allow));
                out.extend(endpoints.map(Caveat::Endpoints));
                out.extend(usd.map(Caveat::BudgetUsd));
                out.extend(tokens.map(Caveat::BudgetTokens));
                out.extend(expires.map(Caveat::Expires));
                out.extend(rpm.map(Caveat::Rpm));
                out.extend(tpm.map(Caveat::Tpm));
                out.extend(maxr.map(Caveat::MaxRequests));
                out.extend(maxo.map(Caveat::MaxOutputTokens));
                out.extend(session.map(Caveat::Session));
                canonicalize(out)
            },
        )
}

proptest! {
    /// 4. Printing caveats as flags and parsing the flags back gives the same caveats.
    #[test]
    fn scope_print_parse_round_trips(caveats in arb_spec_caveats(), now in any::<u64>()) {
        let spec = ScopeSpec::from_caveats(&caveats).unwrap();
        let args = spec.to_args();
        let parsed = ScopeSpec::from_args(&args).unwrap();
        prop_assert_eq!(&parsed, &spec);
        prop_assert_eq!(parsed.to_caveats(now, &KNOWN).unwrap(), caveats);
    }

    /// Covering is sound: a model the child glob matches is matched by the parent glob.
    #[test]
    fn glob_cover_implies_containment(
        parent in "[ab*?]{0,5}",
        child in "[ab*?]{0,5}",
        models in proptest::collection::vec("[abc]{0,6}", 1..20),
    ) {
        if glob_covers(&parent, &child) {
            for m in &models {
                if crate::childkey::glob_match(&child, m) {
                    prop_assert!(crate::childkey::glob_match(&parent, m), "{} covers {} but not {}", parent, child, m);
                }
            }
        }
    }

    /// 5. The scope parsers never panic on arbitrary text.
    #[test]
    fn scope_parsers_never_panic(text in "\\PC{0,40}", args in proptest::collection::vec("(--[a-z-]{2,18}(=\\PC{0,10})?|\\PC{0,12})", 0..6)) {
        let _ = parse_pattern(&text, &KNOWN);
        let _ = parse_pattern(&text, &[]);
        let _ = parse_budget(&text);
        let _ = parse_endpoints(&text);
        let _ = parse_ttl(&text);
        let _ = parse_expires(&text);
        if let Ok(spec) = ScopeSpec::from_args(&args) {
            let _ = spec.to_caveats(NOW, &KNOWN);
            let _ = spec.to_string();
        }
    }
}
