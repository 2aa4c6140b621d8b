//! What the proxy benchmarks share: a mock provider and an in-process proxy in front of it,
//! with or without the ledger writer, set up the way `till serve` sets them up.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use till::childkey::{Caveat, MintKey, ModelPattern, Token};
use till::config::Config;
use till::ledger::Ledger;
use till::ledger::writer::Writer;
use till::proxy::{MintEntry, ProxyOptions, State};

/// A small non-streaming chat completion.
pub const BODY: &str =
    r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello there"}]}"#;

/// A running mock provider (its own thread and runtime).
pub fn mock() -> till_mock::MockHandle {
    till_mock::spawn(till_mock::MockOptions {
        record: false,
        ..Default::default()
    })
}

/// A proxy in front of `mock`, serving on `rt`.
pub struct Proxy {
    _dir: tempfile::TempDir,
    _writer: Option<Writer>,
    /// The proxy's chat completions URL.
    pub chat_url: String,
    /// A child key for it (openai, one hour).
    pub key: String,
}

/// Starts a proxy on `rt` in front of `mock`. With `ledger_on` it records a row per request
/// through the writer thread, as `till run` and `till serve` always do.
pub fn proxy(rt: &tokio::runtime::Runtime, mock: &till_mock::MockHandle, ledger_on: bool) -> Proxy {
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
        ..ProxyOptions::default()
    };
    let roots = vec![(
        "openai".to_string(),
        SecretString::from(till_mock::DEFAULT_KEY),
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
    .unwrap()
    .with_prices(till::pricing::Prices::from_config(&config));
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
    Proxy {
        _dir: dir,
        chat_url: format!("http://{addr}/openai/v1/chat/completions"),
        key: token.encode(),
        _writer: writer,
    }
}
