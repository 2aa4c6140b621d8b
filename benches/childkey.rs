//! Child-key hot paths: what the proxy does per request (decode + verify + check), and what
//! `till run` / `till key attenuate` do once (mint, attenuate).
//!
//! `cargo bench --bench childkey -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use till::childkey::{
    Caveat, EndpointClass, EndpointSet, Kid, MintKey, ModelPattern, RequestFacts, Token, verify,
};

const NOW: u64 = 1_795_000_000;

fn mint_key() -> MintKey {
    MintKey::from_parts(Kid([0x1a, 0x2b, 0x3c, 0x4d]), [0x42; 32])
}

fn allow(provider: &str, glob: &str) -> Caveat {
    Caveat::Allow(vec![ModelPattern::new(provider, Some(glob)).unwrap()])
}

fn three() -> Vec<Caveat> {
    vec![
        allow("openai", "gpt-4o-mini"),
        Caveat::Expires(NOW + 3_600),
        Caveat::BudgetUsd(1_000_000),
    ]
}

fn facts() -> RequestFacts<'static> {
    RequestFacts {
        provider: "openai",
        model: Some("gpt-4o-mini"),
        endpoint: EndpointClass::Inference,
        session: Some("run-7f3a"),
        requested_output_tokens: Some(1_000),
    }
}

/// Ten caveats over two levels, as a `till run` nested in another would produce.
fn ten(mint: &MintKey) -> String {
    Token::mint(
        mint,
        vec![
            Caveat::Allow(vec![
                ModelPattern::new("anthropic", Some("claude-*")).unwrap(),
                ModelPattern::new("openai", Some("gpt-4o*")).unwrap(),
            ]),
            Caveat::Endpoints(
                EndpointSet::of(&[EndpointClass::Inference, EndpointClass::Models]).unwrap(),
            ),
            Caveat::Expires(NOW + 86_400),
            Caveat::BudgetUsd(5_000_000),
            Caveat::Rpm(600),
            Caveat::MaxOutputTokens(8_192),
        ],
    )
    .unwrap()
    .attenuate(vec![
        allow("openai", "gpt-4o-mini"),
        Caveat::Expires(NOW + 1_800),
        Caveat::BudgetUsd(1_000_000),
        Caveat::Session("run-7f3a".into()),
    ])
    .unwrap()
    .encode()
}

fn decode_verify_check(text: &str, mint: &MintKey, facts: &RequestFacts<'_>) {
    let token = Token::decode(text).unwrap();
    let verified = verify(&token, mint).unwrap();
    let grant = verified.check(facts, NOW).unwrap();
    black_box(grant);
}

fn benches(c: &mut Criterion) {
    let mint = mint_key();
    let three_text = Token::mint(&mint, three()).unwrap().encode();
    let ten_text = ten(&mint);
    let f = facts();
    assert_eq!(Token::decode(&ten_text).unwrap().caveats().len(), 10);

    c.bench_function("verify_3_caveats", |b| {
        b.iter(|| decode_verify_check(black_box(&three_text), &mint, &f))
    });
    c.bench_function("verify_10_caveats", |b| {
        b.iter(|| decode_verify_check(black_box(&ten_text), &mint, &f))
    });
    c.bench_function("mint", |b| {
        b.iter(|| black_box(Token::mint(&mint, black_box(three())).unwrap().encode()))
    });
    c.bench_function("attenuate", |b| {
        b.iter(|| {
            let parent = Token::decode(black_box(&three_text)).unwrap();
            let child = parent
                .attenuate(vec![Caveat::Rpm(30), Caveat::Expires(NOW + 600)])
                .unwrap();
            black_box(child.encode())
        })
    });
}

criterion_group!(childkey, benches);
criterion_main!(childkey);
