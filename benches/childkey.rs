//! Child-key hot paths: what the proxy does per request (decode + verify + check), and what
//! `till run` / `till key attenuate` do once (mint, attenuate).
//!
//! `cargo bench --bench childkey -- --warm-up-time 1 --measurement-time 3`
//!
//! Wall-clock time by default. On a shared machine whose other work inflates wall time, set
//! `TILL_BENCH_CPU_TIME=1` (unix) to measure this thread's CPU time instead.

use std::hint::black_box;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{Criterion, criterion_group};
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

fn benches<M: Measurement + 'static>(c: &mut Criterion<M>) {
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

/// CPU time consumed by the calling thread, in nanoseconds.
#[cfg(unix)]
struct ThreadCpuTime;

#[cfg(unix)]
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the OS knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(unix)]
impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns() - start
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Values are nanoseconds, as wall time's are.
        WallTime.formatter()
    }
}

criterion_group!(wall, benches);

#[cfg(unix)]
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = benches
}

fn main() {
    #[cfg(unix)]
    if std::env::var_os("TILL_BENCH_CPU_TIME").is_some() {
        cpu();
        Criterion::default().configure_from_args().final_summary();
        return;
    }
    wall();
    Criterion::default().configure_from_args().final_summary();
}
