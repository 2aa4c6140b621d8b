//! A mock of the OpenAI, Anthropic and Gemini HTTP APIs on one port, for till's integration
//! tests, its load benchmark and its offline demo (the `till-mock` binary). It must never talk
//! to a real provider, and it never echoes a rejected key whole in an error.
//!
//! What it speaks, by exact path (anything else is a 404 in the family's error shape):
//!
//! | family | routes | key |
//! |---|---|---|
//! | OpenAI | `POST /v1/chat/completions`, `POST /v1/completions` (legacy), `POST /v1/responses`, `GET /v1/responses/{id}` (the newest stored ones), `POST /v1/embeddings`, `GET /v1/models`, `GET /v1/models/{id}` | `Authorization: Bearer KEY` |
//! | OpenAI WebSockets | `GET /v1/responses` and `GET /v1/realtime?model=M` upgraded (see `ws.rs`); every client message is recorded with method `WS` | `Authorization: Bearer KEY` or the `openai-insecure-api-key.KEY` subprotocol |
//! | Anthropic | `POST /v1/messages`, `POST /v1/messages/count_tokens`, `GET /v1/models[/{id}]` with `anthropic-version` | `x-api-key: KEY` or `Authorization: Bearer KEY`, plus `anthropic-version` |
//! | Gemini | `GET /v1beta/models[/{model}]`, `POST /v1beta/models/{model}:generateContent`, `…:streamGenerateContent[?alt=sse]`, `…:countTokens` | `x-goog-api-key: KEY` or `?key=KEY` |
//! | OpenAI admin | `POST/GET /v1/organization/projects/{p}/service_accounts`, `GET/DELETE …/service_accounts/{id}`, `GET /v1/organization/projects/{p}/api_keys`, `GET/DELETE …/api_keys/{id}` | `Authorization: Bearer ADMIN_KEY` |
//! | Anthropic admin | `GET /v1/organizations/api_keys`, `GET/POST /v1/organizations/api_keys/{id}` | `x-api-key: ADMIN_KEY` |
//! | control | `GET/DELETE /_mock/requests`, `GET/POST /_mock/keys` | none |
//!
//! Every answer is deterministic: the reply is [`REPLY_TEXT`], streamed as the five
//! [`REPLY_PIECES`] (one chunk and one output token each, so `output_tokens` is
//! [`OUTPUT_TOKENS`]), and `input_tokens` is [`input_tokens`] of the request's message text.
//! The JSON and streamed forms report the same numbers, each in its API's own way.
//!
//! Fault switches are picked by the model name (the proxy passes it through untouched):
//! `slow` paces streamed chunks [`MockOptions::chunk_delay`] apart; `cut` breaks a stream after
//! two chunks (a JSON request gets its connection closed without an answer); `error500` answers
//! 500 and `overloaded` 529 (Anthropic) or 503 (OpenAI, Gemini) in the family's error shape;
//! `hang` never answers; `cache-writer` (OpenAI) reports all its input as written to the prompt
//! cache (`cache_write_tokens`); `greedy` bills every output token the request allows
//! ([`greedy_output`]: its largest ceiling times its choices, a million when it names none),
//! as an upstream that always writes to the limit would; `endless` answers a streaming
//! request with one `data:` line that never ends, [`ENDLESS_BYTES`] long (a JSON request is
//! answered normally); `echo` (OpenAI) answers 401 quoting the `Authorization` it was sent in
//! its message and its `WWW-Authenticate`, as a careless compatible server would; `gzip`
//! (OpenAI) labels its answer `Content-Encoding: gzip` whatever the request accepted
//! (`gzip-lines`: on a second `Content-Encoding` line, after `identity`); `no-usage` (OpenAI
//! chat) answers without usage, as a compatible server that keeps no count does.

mod admin;
mod anthropic;
mod body;
mod control;
mod gemini;
mod openai;
mod router;
mod state;
#[cfg(test)]
mod tests;
mod ws;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

pub use router::{GREEDY_UNBOUNDED, greedy_output};
pub use state::{KeyInfo, KeyStatus, RecordedRequest, ServiceAccount};

use state::{EventLog, Ids, Keys, lock};

/// The key every provider route accepts when no key is configured.
pub const DEFAULT_KEY: &str = "sk-mock-root";

/// The admin key the admin routes accept when none is configured.
pub const DEFAULT_ADMIN_KEY: &str = "sk-admin-mock";

/// The pause between streamed chunks for `slow` models unless configured.
pub const DEFAULT_CHUNK_DELAY: Duration = Duration::from_millis(200);

/// The reply to every inference request.
pub const REPLY_TEXT: &str = "Hello from the mock.";

/// [`REPLY_TEXT`] as streamed: one chunk per piece.
pub const REPLY_PIECES: [&str; 5] = ["Hello", " from", " the", " mock", "."];

/// How much an `endless` stream sends before it closes (it never sends a blank line).
pub const ENDLESS_BYTES: usize = 64 << 20;

/// Output tokens of every answer: one per piece.
pub const OUTPUT_TOKENS: u64 = REPLY_PIECES.len() as u64;

/// Input tokens for a request whose message text has `chars` characters: `max(1, chars / 4)`.
///
/// Message text is the `messages` content (OpenAI chat, Anthropic, plus Anthropic's `system`),
/// `instructions` and `input` (OpenAI responses and embeddings), `systemInstruction` and
/// `contents` (Gemini): every string under `content`, `parts` and `text`.
pub fn input_tokens(chars: usize) -> u64 {
    (chars as u64 / 4).max(1)
}

/// How the mock behaves.
#[derive(Debug, Clone)]
pub struct MockOptions {
    /// Keys accepted by every provider route; empty means [`DEFAULT_KEY`]. They get the ids
    /// `key_initial_1`, `key_initial_2`, … in order.
    pub keys: Vec<String>,
    /// Keys accepted by the admin routes; empty means [`DEFAULT_ADMIN_KEY`].
    pub admin_keys: Vec<String>,
    /// Pause between streamed chunks for models whose name contains `slow` (other models
    /// stream without pauses).
    pub chunk_delay: Duration,
    /// Append `mock sent chunk I of N` to this file for every streamed chunk.
    pub events: Option<PathBuf>,
    /// Keep every request for `GET /_mock/requests` (off for load tests).
    pub record: bool,
}

impl Default for MockOptions {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            admin_keys: Vec::new(),
            chunk_delay: DEFAULT_CHUNK_DELAY,
            events: None,
            record: true,
        }
    }
}

/// State shared by every connection.
#[derive(Debug)]
pub(crate) struct Shared {
    keys: Keys,
    requests: Mutex<Vec<RecordedRequest>>,
    /// What the answers so far reported as usage: (answers, input tokens, output tokens).
    billed: Mutex<(u64, u64, u64)>,
    record: bool,
    slow_delay: Duration,
    events: Option<Arc<EventLog>>,
    ids: Ids,
    /// The newest stored Responses (`store` not false), for `GET /v1/responses/{id}`.
    stored: Mutex<std::collections::VecDeque<(String, serde_json::Value)>>,
}

/// A mock server's state; [`Mock::serve`] runs it on a listener. Cloning shares the state.
#[derive(Debug, Clone)]
pub struct Mock {
    shared: Arc<Shared>,
}

impl Mock {
    /// Sets up the state; fails only when the events file cannot be opened.
    pub fn new(opts: MockOptions) -> io::Result<Self> {
        let events = match &opts.events {
            Some(path) => Some(Arc::new(EventLog::open(path)?)),
            None => None,
        };
        let keys = if opts.keys.is_empty() {
            vec![DEFAULT_KEY.to_owned()]
        } else {
            opts.keys
        };
        let admin_keys = if opts.admin_keys.is_empty() {
            vec![DEFAULT_ADMIN_KEY.to_owned()]
        } else {
            opts.admin_keys
        };
        Ok(Self {
            shared: Arc::new(Shared {
                keys: Keys::new(&keys, admin_keys, time_now()),
                requests: Mutex::new(Vec::new()),
                billed: Mutex::new((0, 0, 0)),
                record: opts.record,
                slow_delay: opts.chunk_delay,
                events,
                ids: Ids::new(),
                stored: Mutex::new(std::collections::VecDeque::new()),
            }),
        })
    }

    /// Serves connections from `listener` until the future is dropped. Accept errors (such as
    /// running out of file descriptors under load) are waited out, not returned.
    pub async fn serve(&self, listener: TcpListener) -> io::Result<()> {
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new()).keep_alive(true);
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            // Small SSE frames must leave at once, not wait for Nagle.
            let _ = stream.set_nodelay(true);
            let shared = Arc::clone(&self.shared);
            let conn = http
                .serve_connection(
                    TokioIo::new(stream),
                    service_fn(move |req| router::handle(Arc::clone(&shared), req)),
                )
                .with_upgrades();
            tokio::spawn(async move {
                // A failed connection (client gone, a deliberate cut) concerns nobody else.
                let _ = conn.await;
            });
        }
    }

    /// Every request seen so far (control requests excluded), oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Every key the mock knows, in every state.
    pub fn keys(&self) -> Vec<KeyInfo> {
        self.shared.keys.list()
    }

    /// The id of the (undeleted) key with this value.
    pub fn key_id(&self, value: &str) -> Option<String> {
        self.keys()
            .into_iter()
            .find(|k| k.value == value && k.status != KeyStatus::Deleted)
            .map(|k| k.id)
    }

    /// Accepts one more key from now on.
    pub fn add_key(&self, value: &str) -> KeyInfo {
        self.shared.keys.add(KeyInfo {
            id: format!("key_{}", state::random_token(16)),
            value: value.to_owned(),
            name: "Added key".to_owned(),
            status: KeyStatus::Active,
            created_at: time_now(),
            service_account_id: None,
        })
    }
}

/// Serves the mock on `listener` with `opts` until the future is dropped.
pub async fn serve(listener: TcpListener, opts: MockOptions) -> io::Result<()> {
    Mock::new(opts)?.serve(listener).await
}

/// A mock running on its own thread and runtime, on `127.0.0.1` and a free port; dropping the
/// handle stops it. It dereferences to its [`Mock`] for the recorded requests and keys.
#[derive(Debug)]
pub struct MockHandle {
    /// Where it listens.
    pub addr: SocketAddr,
    mock: Mock,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl MockHandle {
    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl std::ops::Deref for MockHandle {
    type Target = Mock;

    fn deref(&self) -> &Mock {
        &self.mock
    }
}

impl Drop for MockHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts a mock on `127.0.0.1:0` on a background thread (for tests).
///
/// # Panics
///
/// When the events file cannot be opened or no port can be bound: a test cannot go on then.
pub fn spawn(opts: MockOptions) -> MockHandle {
    let mock = Mock::new(opts).expect("the mock's events file opens");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("the mock binds 127.0.0.1:0");
    listener
        .set_nonblocking(true)
        .expect("the mock's listener goes non-blocking");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = mock.clone();
    let thread = std::thread::Builder::new()
        .name("till-mock".to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("till-mock-worker")
                .enable_all()
                .build()
                .expect("the mock's runtime starts");
            runtime.block_on(async move {
                let listener =
                    TcpListener::from_std(listener).expect("tokio adopts the mock's listener");
                tokio::select! {
                    _ = server.serve(listener) => {}
                    _ = stopped => {}
                }
            });
            // Hung and streaming connections are dropped with the runtime.
            runtime.shutdown_background();
        })
        .expect("the mock's thread starts");
    MockHandle {
        addr,
        mock,
        stop: Some(stop),
        thread: Some(thread),
    }
}

fn time_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// RFC 3339 in UTC with second precision, as the admin APIs print times.
fn rfc3339(unix: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}
