//! One request's round trip straight to the mock provider and through till's proxy, with the
//! ledger writing request rows and without: what the proxy adds, and what the ledger adds to
//! that. Closed loop, one keep-alive connection, everything in this process on loopback.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use secrecy::SecretString;
use till::childkey::{Caveat, MintKey, ModelPattern, Token};
use till::config::Config;
use till::ledger::Ledger;
use till::ledger::writer::Writer;
use till::proxy::{MintEntry, ProxyOptions, State};

const BODY: &str =
    r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello there"}]}"#;

struct Setup {
    _dir: tempfile::TempDir,
    _mock: till::mock::MockHandle,
    _writer: Option<Writer>,
    url: String,
    key: String,
}

fn setup(rt: &tokio::runtime::Runtime, ledger_on: bool) -> Setup {
    let mock = till::mock::spawn(till::mock::MockOptions {
        record: false,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite3");
    let config = Config::parse(
        &format!("[providers.openai]\nbase_url = \"{}\"\n", mock.url()),
        std::path::Path::new("bench.toml"),
    )
    .unwrap();
    let providers = till::providers::Providers::from_config(&config);
    let mint = MintKey::generate().unwrap();
    let token = Token::mint(
        &mint,
        vec![
            Caveat::Allow(vec![ModelPattern::new("openai", None).unwrap()]),
            Caveat::Expires(till::time::now_unix() + 3_600),
        ],
    )
    .unwrap();
    let options = ProxyOptions {
        session: None,
        max_body_bytes: 1 << 20,
        upstream_timeout: Duration::from_secs(30),
        loopback: true,
    };
    let roots = vec![(
        "openai".to_string(),
        SecretString::from(till::mock::DEFAULT_KEY),
    )];
    let mints = vec![MintEntry {
        key: mint,
        valid_until: None,
    }];
    let mut state = State::new(
        providers,
        options,
        Ledger::open(&path).unwrap(),
        None,
        roots,
        mints,
    )
    .unwrap();
    let mut writer = None;
    if ledger_on {
        let w = Writer::start(&path).unwrap();
        state = state.with_ledger(w.handle(), Ledger::open(&path).unwrap());
        writer = Some(w);
    }
    let addr = rt
        .block_on(till::proxy::spawn(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(state),
            std::future::pending(),
        ))
        .unwrap();
    Setup {
        _dir: dir,
        url: format!("http://{addr}/openai"),
        key: token.encode(),
        _writer: writer,
        _mock: mock,
    }
}

fn round_trip(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let direct = till::mock::spawn(till::mock::MockOptions {
        record: false,
        ..Default::default()
    });
    let direct_url = format!("{}/v1/chat/completions", direct.url());
    let off = setup(&rt, false);
    let on = setup(&rt, true);

    let mut g = c.benchmark_group("chat_round_trip");
    let send = |url: String, key: String| {
        let client = client.clone();
        async move {
            let r = client
                .post(url)
                .bearer_auth(key)
                .header("content-type", "application/json")
                .body(BODY)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap()
        }
    };
    g.bench_function("direct", |b| {
        b.to_async(&rt)
            .iter(|| send(direct_url.clone(), till::mock::DEFAULT_KEY.to_string()));
    });
    g.bench_function("proxy_ledger_off", |b| {
        b.to_async(&rt)
            .iter(|| send(format!("{}/v1/chat/completions", off.url), off.key.clone()));
    });
    g.bench_function("proxy_ledger_on", |b| {
        b.to_async(&rt)
            .iter(|| send(format!("{}/v1/chat/completions", on.url), on.key.clone()));
    });
    g.finish();
}

criterion_group!(benches, round_trip);
criterion_main!(benches);
