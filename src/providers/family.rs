//! What till knows about one API family's wire format, as one trait: how a key is presented,
//! which paths are which operation, where an operation's model, output ceiling and choice count
//! sit in its body, what it runs server-side, how it reports usage and how its errors look.
//!
//! Each family implements [`Family`] in its own module ([`super::openai`],
//! [`super::anthropic`], [`super::gemini`]); [`super::ApiFamily::wire`] is the one place that
//! picks the implementation. Implementations are pure functions over paths, JSON values and
//! headers: they never do I/O and never reach into the proxy, so the proxy, meter, error and
//! upstream code can call them without knowing which family they talk to.

use http::{HeaderMap, Method};
use serde_json::{Map, Value};

use super::endpoint::{Endpoint, Op};
use super::usage::{Tree, Usage};

/// An endpoint served over a WebSocket upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsRoute {
    pub endpoint: Endpoint,
    /// The query parameter that names the session's model (Realtime's `?model=`); `None`
    /// when the upgrade takes no query and each message names its own model.
    pub model_param: Option<&'static str>,
}

/// What one client message on a WebSocket asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsClientEvent {
    /// It starts a response: its fields are a request body of this operation, read, checked
    /// and admitted as one.
    Create(Op),
    /// It goes upstream after the checks every message gets (each model it names within the
    /// key's scope).
    Pass,
    /// It is refused with this message.
    Refuse(String),
}

/// What one server message on a WebSocket says about the responses on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WsServerEvent {
    /// A response began (the Realtime server starts responses of its own accord too).
    pub started: bool,
    /// The response in flight ended, with `usage` when the event reports it.
    pub ended: bool,
    pub usage: Option<Usage>,
    /// The event is an error that ends the response in flight, if any, without usage.
    pub error: bool,
    /// The model the session runs, as the server reports it.
    pub model: Option<String>,
}

/// How the root key is presented upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScheme {
    /// `Authorization: Bearer KEY`
    Bearer,
    /// `x-api-key: KEY` (Anthropic; also sends `anthropic-version`)
    XApiKey,
    /// `x-goog-api-key: KEY` (Gemini)
    GoogApiKey,
}

/// What one server-sent event said about usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventUsage {
    /// The usage so far, when the event reports it.
    pub usage: Option<Usage>,
    /// The event is the stream's terminal one.
    pub completed: bool,
    /// The event carries only usage (OpenAI's `include_usage` chunk), so it may be removed
    /// when till asked for it and the client did not.
    pub usage_only: bool,
    /// The usage is a placeholder a later event replaces (Anthropic's `message_start` says
    /// one output token): a stream that ends with no later report has reported no usage.
    pub provisional: bool,
}

/// The generic look-alike check on the field names of one object: `Err` with a message when a
/// name could be read as one of `read` by another parser.
pub type FieldCheck<'a> = &'a dyn Fn(&Map<String, Value>, &[&str]) -> Result<(), String>;

/// Everything family-specific the proxy needs. Bodies are the one parse the proxy checked;
/// `Err` values are messages for a 400 the proxy sends as they are.
pub trait Family: Sync {
    /// How the root key goes upstream.
    fn auth_scheme(&self) -> AuthScheme;

    /// Headers the API requires on every call, sent when the client did not send its own.
    fn default_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    /// The endpoint of `method` and the path `tail` after the version segment (`prefix` is
    /// the segment before the version, if any). Anything unrecognised is `Admin`.
    fn classify(&self, method: &Method, tail: &[&str], prefix: Option<&str>) -> Endpoint;

    /// The version segment to put in front of a path that came without one, for an API whose
    /// clients sometimes leave it out (the Vercel AI SDK's Anthropic provider calls
    /// `…/anthropic/messages`). `None`: paths go upstream as they came.
    fn missing_version(&self) -> Option<&'static str> {
        None
    }

    /// Whether `op` names its model in the JSON body (else in the path, or nowhere).
    fn model_in_body(&self, op: Op) -> bool;

    /// Whether a `model` in `op`'s body is the model the provider runs. Not for a run of a
    /// stored object, which runs the object's model whatever the body says (a server that
    /// ignores unknown fields would take a dummy `model` there for a scoped request).
    fn body_model_runs(&self, _op: Op) -> bool {
        true
    }

    /// Whether `op`'s cost is not counted in tokens till can bound.
    fn unmetered(&self, _op: Op) -> bool {
        false
    }

    /// Whether the upstream path of `op` streams (Gemini says so in the path).
    fn path_streams(&self, _op: Op, _path: &str) -> bool {
        false
    }

    /// Top-level body fields this family reads (checked, in every family's spelling, against
    /// look-alike names in every body).
    fn read_fields(&self) -> &'static [&'static str];

    /// Checks the names of fields in nested objects this family reads, in every body.
    /// `check` is the generic look-alike check.
    fn check_nested_fields(
        &self,
        _map: &Map<String, Value>,
        _check: FieldCheck<'_>,
    ) -> Result<(), String> {
        Ok(())
    }

    /// The top-level fields [`Self::limits`] reads for `op`, an operation that produces
    /// output tokens; `None` for one that produces none.
    fn limit_fields(&self, op: Op) -> Option<&'static [&'static str]>;

    /// The largest output ceiling `op`'s body names (per choice; `Some(0)` for operations
    /// without output tokens) and how many choices it asks for.
    fn limits(&self, op: Op, map: &Map<String, Value>) -> Result<(Option<u64>, u64), String>;

    /// Checks beyond the limits that `op`'s body must pass (Gemini's nested requests).
    fn check_body(
        &self,
        _op: Op,
        _map: &Map<String, Value>,
        _path_model: Option<&str>,
    ) -> Result<(), String> {
        Ok(())
    }

    /// Writes `ceiling` where `op` reads its output ceiling. `openai_proper` says whether the
    /// provider is OpenAI itself (not an OpenAI-compatible one).
    fn insert_ceiling(
        &self,
        op: Op,
        openai_proper: bool,
        map: &mut Map<String, Value>,
        ceiling: u64,
    );

    /// Input loaded from the provider's storage that only this family names (checked after
    /// the references every family shares).
    fn stored_input(&self, _op: Op, _map: &Map<String, Value>) -> Option<String> {
        None
    }

    /// Input tokens a request of `op` to `model` may be billed for beyond one a byte of its
    /// body: an image costs the same tokens whatever its bytes (a URL of 40 bytes, or a PNG of
    /// one colour under 1 KB, can be thousands), and a provider may add a system prompt of
    /// its own for tools. The reservation adds these to the body's bytes.
    fn hidden_input(&self, op: Op, model: Option<&str>, map: &Map<String, Value>) -> u64;

    /// A tool the provider runs itself (search, fetch, code execution), billed beyond tokens.
    fn server_tool(&self, tool: &Map<String, Value>) -> Option<String>;

    /// A request header that makes the provider bill a request whose prompt is bounded by
    /// `prompt_bound` tokens (the reservation's bound) beyond the model's token price.
    fn uncounted_header(&self, _headers: &HeaderMap, _prompt_bound: u64) -> Option<&'static str> {
        None
    }

    /// Asks the upstream to report usage the request would not otherwise get; returns
    /// whether it did (then the usage event is the proxy's, not the client's). `map` is
    /// changed exactly when it returns true.
    fn request_usage(
        &self,
        _op: Op,
        _stream: bool,
        _include_usage: bool,
        _map: &mut Map<String, Value>,
    ) -> bool {
        false
    }

    /// What one SSE event's JSON payload says about usage. `event_name` is the event's
    /// `event:` line (empty without one); `prev` is the usage seen so far.
    fn sse_event(&self, event_name: &str, data: &Value, prev: Option<Usage>) -> EventUsage;

    /// The top-level member of a JSON answer that holds its usage.
    fn usage_member(&self) -> &'static str;

    /// The paths inside the usage member that [`Family::usage_of`] reads (at most 8); the
    /// meter reads only these from a JSON answer and skips the rest unbuilt.
    fn usage_paths(&self) -> &'static [&'static [&'static str]];

    /// Usage from a JSON answer's usage member, `None` when the answer has none.
    fn usage_of(&self, usage: Option<&dyn Tree>) -> Option<Usage>;

    /// Usage from a complete JSON answer, parsed. An array is a stream of answers (Gemini's
    /// without `alt=sse`): the last of them with a usage member counts.
    fn json_usage(&self, body: &Value) -> Option<Usage> {
        let member = self.usage_member();
        let usage = match body {
            Value::Array(answers) => answers.iter().rev().find_map(|a| a.get(member)),
            _ => body.get(member),
        };
        self.usage_of(usage.map(|u| u as &dyn Tree))
    }

    /// Text at least one of which an SSE event's name or data holds whenever
    /// [`Family::sse_event`] can find usage or an end in it; the meter parses no other event
    /// (most events of a stream are text deltas). The upstream writes these events, not the
    /// agent.
    fn sse_markers(&self) -> &'static [&'static str];

    /// An error body in this family's shape for HTTP `status`; `kind` is till's slug.
    fn error_body(&self, status: u16, kind: &str, message: &str) -> Value;

    /// An in-stream error event in this family's streaming format (a whole SSE event).
    fn stream_error_event(&self, message: &str) -> String;

    /// The endpoint a WebSocket upgrade of the path `tail` (after the version segment) opens;
    /// `None` for paths this family does not serve over WebSockets.
    fn websocket(&self, _tail: &[&str], _prefix: Option<&str>) -> Option<WsRoute> {
        None
    }

    /// The `Sec-WebSocket-Protocol` entry prefix that carries a key in this family's browser
    /// clients (which cannot set headers on a WebSocket), if any.
    fn ws_key_protocol(&self) -> Option<&'static str> {
        None
    }

    /// What a client message of type `kind` on a WebSocket of `op` asks for.
    fn ws_client_event(&self, _op: Op, kind: &str) -> WsClientEvent {
        WsClientEvent::Refuse(format!("till does not forward `{kind}` events"))
    }

    /// What a server message on a WebSocket of `op` says about its responses.
    fn ws_server_event(&self, _op: Op, _v: &Value) -> WsServerEvent {
        WsServerEvent::default()
    }

    /// An error event (one WebSocket text message) in this family's format for a WebSocket of
    /// `op`; `status` is the HTTP status the same refusal would have, `kind` till's slug.
    fn ws_error_event(&self, _op: Op, status: u16, kind: &str, message: &str) -> String {
        self.error_body(status, kind, message).to_string()
    }
}
