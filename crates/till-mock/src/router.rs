//! Turns one HTTP request into one outcome: picks the provider family by path, records the
//! request, and hands it to the family's module. Also the shared pieces every family uses:
//! the request context, fault switches, token counting and response builders.
//!
//! Routes are exact paths; anything else is a 404 in the family's error shape.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{BufMut as _, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use serde_json::Value;

use super::body::{Cut, MockBody, Pacing};
use super::state::{RECORDED_BODY_LIMIT, RecordedRequest, lock};
use super::{OUTPUT_TOKENS, REPLY_PIECES, Shared, anthropic, control, gemini, openai};

/// Request bodies larger than this are refused by closing the connection.
const MAX_BODY: usize = 32 * 1024 * 1024;

/// A complete mock response.
pub(crate) type Resp = Response<MockBody>;

/// What to do with a request.
pub(crate) enum Outcome {
    Respond(Resp),
    /// Close the connection without a response.
    Cut,
    /// Never answer.
    Hang,
}

impl From<Resp> for Outcome {
    fn from(resp: Resp) -> Self {
        Outcome::Respond(resp)
    }
}

/// Serves one request.
pub(crate) async fn handle(state: Arc<Shared>, req: Request<Incoming>) -> Result<Resp, Cut> {
    if super::ws::is_upgrade(req.headers()) {
        return Ok(super::ws::upgrade(state, req));
    }
    let (parts, body) = req.into_parts();
    let body = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        // The client went away mid-body or sent too much: nothing sensible to answer.
        Err(_) => return Err(Cut),
    };
    let ctx = Ctx {
        state: &state,
        method: &parts.method,
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &parts.headers,
        body: &body,
    };
    if let Some(rest) = ctx.path.strip_prefix("/_mock/") {
        return Ok(control::route(&ctx, rest));
    }
    if state.record {
        ctx.record();
    }
    match route(&ctx) {
        Outcome::Respond(resp) => Ok(resp),
        Outcome::Cut => Err(Cut),
        Outcome::Hang => std::future::pending().await,
    }
}

fn route(ctx: &Ctx<'_>) -> Outcome {
    let path = ctx.path;
    if path == "/v1beta" || path.starts_with("/v1beta/") {
        return gemini::route(ctx);
    }
    let is_models = path == "/v1/models" || path.starts_with("/v1/models/");
    let anthropic = path == "/v1/messages"
        || path.starts_with("/v1/messages/")
        || path == "/v1/organizations"
        || path.starts_with("/v1/organizations/")
        || (is_models && ctx.headers.contains_key("anthropic-version"));
    if anthropic {
        anthropic::route(ctx)
    } else {
        openai::route(ctx)
    }
}

/// One request, borrowed.
pub(crate) struct Ctx<'a> {
    pub state: &'a Shared,
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

impl Ctx<'_> {
    /// A header as text, when it is present and valid.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// The token of `Authorization: Bearer TOKEN`.
    pub fn bearer(&self) -> Option<&str> {
        let value = self.header("authorization")?.trim();
        let (scheme, token) = value.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim())
            .filter(|t| !t.is_empty())
    }

    /// A query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<Cow<'_, str>> {
        self.query?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then(|| percent_decode(v))
        })
    }

    /// The body as a JSON object.
    pub fn json_body(&self) -> Option<Value> {
        serde_json::from_slice::<Value>(self.body)
            .ok()
            .filter(Value::is_object)
    }

    /// How a stream for `faults` is paced.
    pub fn pacing(&self, faults: &Faults) -> Pacing {
        Pacing {
            delay: if faults.slow {
                self.state.slow_delay
            } else {
                std::time::Duration::ZERO
            },
            cut_after: faults.cut.then_some(CUT_AFTER_FRAMES),
            events: self.state.events.clone(),
        }
    }

    /// Counts an answer's usage for `GET /_mock/usage`.
    pub fn bill(&self, usage: Usage) {
        let mut billed = lock(&self.state.billed);
        billed.0 += 1;
        billed.1 += usage.input;
        billed.2 += usage.output;
    }

    /// Keeps a stored response for `GET /v1/responses/{id}` (the newest [`STORED`] only).
    pub fn store_response(&self, id: &str, response: &Value) {
        let mut stored = lock(&self.state.stored);
        if stored.len() == STORED {
            stored.pop_front();
        }
        stored.push_back((id.to_owned(), response.clone()));
    }

    /// A stored response, by its id.
    pub fn stored_response(&self, id: &str) -> Option<Value> {
        lock(&self.state.stored)
            .iter()
            .find(|(stored, _)| stored == id)
            .map(|(_, response)| response.clone())
    }

    /// A fresh id with `prefix`.
    pub fn id(&self, prefix: &str) -> String {
        self.state.ids.next(prefix)
    }

    fn record(&self) {
        let entry = self.recorded();
        lock(&self.state.requests).push(entry);
    }

    /// This request as the log keeps it.
    pub(crate) fn recorded(&self) -> RecordedRequest {
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in self.headers {
            let value = String::from_utf8_lossy(value.as_bytes());
            headers
                .entry(name.as_str().to_owned())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert_with(|| value.into_owned());
        }
        RecordedRequest {
            method: self.method.as_str().to_owned(),
            path: self.path.to_owned(),
            query: self.query.map(str::to_owned),
            headers,
            body: (self.body.len() <= RECORDED_BODY_LIMIT)
                .then(|| String::from_utf8_lossy(self.body).into_owned()),
            body_len: self.body.len(),
        }
    }
}

/// `%XX` escapes and `+` decoded; text without either is borrowed as is.
pub(crate) fn percent_decode(text: &str) -> Cow<'_, str> {
    if !text.contains(['%', '+']) {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// A `cut` stream breaks after this many frames.
pub(crate) const CUT_AFTER_FRAMES: usize = 2;

/// The fault switches a model name turns on.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Faults {
    pub slow: bool,
    pub cut: bool,
    pub error500: bool,
    pub overloaded: bool,
    pub hang: bool,
    pub endless: bool,
}

impl Faults {
    pub fn of(model: &str) -> Self {
        Self {
            slow: model.contains("slow"),
            cut: model.contains("cut"),
            error500: model.contains("error500"),
            overloaded: model.contains("overloaded"),
            hang: model.contains("hang"),
            endless: model.contains("endless"),
        }
    }

    /// The outcome when a fault replaces the normal answer: `hang`, then `cut` (for JSON; a
    /// stream is cut later, by its body), then `error500`, then `overloaded`, then `endless`
    /// (streams only).
    pub fn outcome(
        &self,
        stream: bool,
        server_error: impl FnOnce() -> Resp,
        overloaded: impl FnOnce() -> Resp,
    ) -> Option<Outcome> {
        if self.hang {
            Some(Outcome::Hang)
        } else if self.cut && !stream {
            Some(Outcome::Cut)
        } else if self.error500 {
            Some(Outcome::Respond(server_error()))
        } else if self.overloaded {
            Some(Outcome::Respond(overloaded()))
        } else if self.endless && stream {
            Some(Outcome::Respond(endless()))
        } else {
            None
        }
    }
}

/// Characters of message text in a request value: strings count their characters; arrays add
/// up; objects count their `text`, `content` and `parts`; numbers (token ids) count 4.
pub(crate) fn text_chars(value: &Value) -> usize {
    match value {
        Value::String(s) => s.chars().count(),
        Value::Array(items) => items.iter().map(text_chars).sum(),
        Value::Object(map) => ["text", "content", "parts"]
            .iter()
            .filter_map(|k| map.get(*k))
            .map(text_chars)
            .sum(),
        Value::Number(_) => 4,
        Value::Null | Value::Bool(_) => 0,
    }
}

/// How many stored responses the mock keeps (a load test must not grow it without end).
pub(crate) const STORED: usize = 256;

/// The usage of one answer: the same numbers in the JSON and the streamed form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    pub input: u64,
    pub output: u64,
    /// Of `input`, the tokens written to the prompt cache (OpenAI reports them apart and bills
    /// them above plain input): all of it for a `cache-writer` model, none otherwise.
    pub cache_write: u64,
}

impl Usage {
    /// Usage for a request whose message text has `chars` characters.
    pub fn for_chars(chars: usize) -> Self {
        Self {
            input: super::input_tokens(chars),
            output: OUTPUT_TOKENS,
            cache_write: 0,
        }
    }

    /// The usage a `greedy` model bills: every output token the request allows (its largest
    /// ceiling in any family's spelling, times its largest choice count), or
    /// [`GREEDY_UNBOUNDED`] when it names no ceiling. Other models bill as they are.
    pub fn billed(self, model: &str, body: &Value) -> Self {
        if model.contains("cache-writer") {
            return Self {
                cache_write: self.input,
                ..self
            };
        }
        if !model.contains("greedy") {
            return self;
        }
        Self {
            output: greedy_output(body),
            ..self
        }
    }

    pub fn total(self) -> u64 {
        self.input + self.output
    }
}

/// What a `greedy` model bills for a request that names no output ceiling: a runaway answer.
pub const GREEDY_UNBOUNDED: u64 = 1_000_000;

/// Every output token a request allows, as an upstream that always writes to the limit bills.
pub fn greedy_output(body: &Value) -> u64 {
    let num = |v: Option<&Value>| v.and_then(Value::as_u64);
    let configs: Vec<&Value> = ["generationConfig", "generation_config"]
        .iter()
        .filter_map(|k| body.get(*k))
        .collect();
    let mut ceiling: Option<u64> = None;
    let mut choices = 1u64;
    for f in [
        "max_tokens",
        "max_completion_tokens",
        "max_output_tokens",
        "max_tokens_to_sample",
    ] {
        ceiling = ceiling.max(num(body.get(f)));
    }
    for f in ["n", "best_of"] {
        choices = choices.max(num(body.get(f)).unwrap_or(1));
    }
    for c in configs {
        for f in ["maxOutputTokens", "max_output_tokens"] {
            ceiling = ceiling.max(num(c.get(f)));
        }
        for f in ["candidateCount", "candidate_count"] {
            choices = choices.max(num(c.get(f)).unwrap_or(1));
        }
    }
    ceiling.map_or(GREEDY_UNBOUNDED, |c| c.saturating_mul(choices))
}

/// The reply, piece by piece (one streamed chunk and one output token each).
pub(crate) fn pieces() -> &'static [&'static str] {
    &REPLY_PIECES
}

/// The reply when a request asks for JSON that follows `schema` (a JSON Schema, or Gemini's
/// `responseSchema` with upper-case type names): the smallest value of that shape, strings
/// being [`super::REPLY_TEXT`], so clients that parse structured output (Gemini CLI's model
/// router) get what they expect. Without a schema, an empty object.
pub(crate) fn structured_reply(schema: Option<&Value>) -> String {
    fn value(schema: &Value, depth: usize) -> Value {
        if let Some(first) = schema
            .get("enum")
            .and_then(Value::as_array)
            .and_then(|e| e.first())
        {
            return first.clone();
        }
        let kind = schema
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("object")
            .to_ascii_lowercase();
        match kind.as_str() {
            "string" => Value::from(super::REPLY_TEXT),
            "integer" | "number" => Value::from(1),
            "boolean" => Value::from(true),
            "array" => Value::Array(Vec::new()),
            "null" => Value::Null,
            _ => {
                let mut out = serde_json::Map::new();
                if depth < 8
                    && let Some(props) = schema.get("properties").and_then(Value::as_object)
                {
                    for (name, sub) in props {
                        out.insert(name.clone(), value(sub, depth + 1));
                    }
                }
                Value::Object(out)
            }
        }
    }
    value(schema.unwrap_or(&Value::Null), 0).to_string()
}

/// `text` cut into `n` streamed pieces (the last ones empty when it is short).
pub(crate) fn split_pieces(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let size = chars.len().div_ceil(n.max(1)).max(1);
    let mut out: Vec<String> = chars.chunks(size).map(|c| c.iter().collect()).collect();
    out.resize(n, String::new());
    out
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, value: &Value) -> Resp {
    let body = serde_json::to_vec(value).expect("a JSON value serialises");
    let mut resp = Response::new(MockBody::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// An SSE (or other streamed) response made of `frames`.
pub(crate) fn stream(content_type: &'static str, frames: Vec<Bytes>, pacing: Pacing) -> Resp {
    let mut resp = Response::new(MockBody::stream(frames, pacing));
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// An event stream of one `data:` line that never ends: [`super::ENDLESS_BYTES`] bytes, then
/// the body closes without a blank line.
pub(crate) fn endless() -> Resp {
    let mut resp = Response::new(MockBody::endless(super::ENDLESS_BYTES));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// Adds a header to a response (for request ids).
pub(crate) fn with_header(mut resp: Resp, name: &'static str, value: &str) -> Resp {
    if let Ok(value) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, value);
    }
    resp
}

/// `data: JSON\n\n` (OpenAI chat completions).
pub(crate) fn sse_data(value: &Value) -> Bytes {
    sse_frame(None, value, "\n\n")
}

/// `event: NAME\ndata: JSON\n\n` (OpenAI responses, Anthropic).
pub(crate) fn sse_event(name: &str, value: &Value) -> Bytes {
    sse_frame(Some(name), value, "\n\n")
}

/// `data: JSON\r\n\r\n` (Gemini).
pub(crate) fn sse_data_crlf(value: &Value) -> Bytes {
    sse_frame(None, value, "\r\n\r\n")
}

fn sse_frame(event: Option<&str>, value: &Value, end: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(256).writer();
    if let Some(name) = event {
        let inner = buf.get_mut();
        inner.put_slice(b"event: ");
        inner.put_slice(name.as_bytes());
        inner.put_slice(b"\n");
    }
    buf.get_mut().put_slice(b"data: ");
    serde_json::to_writer(&mut buf, value).expect("a JSON value serialises");
    buf.get_mut().put_slice(end.as_bytes());
    buf.into_inner().freeze()
}

/// Masks a key for an error message, the way OpenAI does: long keys keep their first 8 and last
/// 4 characters with one `*` per hidden character; short ones keep less, behind `***`. Never the
/// whole key.
pub(crate) fn mask_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    let len = chars.len();
    if len >= 20 {
        let head: String = chars[..8].iter().collect();
        let tail: String = chars[len - 4..].iter().collect();
        format!("{head}{}{tail}", "*".repeat(len - 12))
    } else if len >= 7 {
        let head: String = chars[..len * 5 / 12].iter().collect();
        let tail: String = chars[len - len / 4..].iter().collect();
        format!("{head}***{tail}")
    } else {
        "***".to_owned()
    }
}

/// A hint that names a key without revealing it (`sk-ant-api03-R2D...igAA`), as the admin
/// listings show.
pub(crate) fn key_hint(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    let len = chars.len();
    let (head, tail) = if len >= 40 {
        (16, 4)
    } else {
        (len / 3, (len / 4).min(4))
    };
    let head: String = chars[..head].iter().collect();
    let tail: String = chars[len - tail..].iter().collect();
    format!("{head}...{tail}")
}
