//! The OpenAI wire format, spoken by OpenAI and every OpenAI-compatible provider (Mistral,
//! Groq, OpenRouter, DeepSeek, xAI, Together and configured ones): bearer keys, the
//! `/v1/chat/completions`-style paths, `max_tokens`/`max_completion_tokens`/`n`/`best_of`,
//! `stream_options.include_usage`, `usage` objects in both the chat and Responses spellings,
//! and `{"error": {…}}` bodies.
//!
//! Pure knowledge of the format: no I/O, nothing about keys, caveats or the proxy.

use http::Method;
use serde_json::{Map, Value};

use super::ApiFamily;
use super::endpoint::{Endpoint, Op, valid_model_id};
use super::family::{AuthScheme, EventUsage, Family, WsClientEvent, WsRoute, WsServerEvent};
use super::fields::{choices, count_parts, largest, named};
use super::usage::{Tree, Usage, n, reports};
use crate::childkey::EndpointClass::{self, *};

#[allow(non_upper_case_globals)]
impl Op {
    /// `POST …/chat/completions`
    pub const OpenaiChat: Op = Op::of(ApiFamily::Openai, "chat");
    /// `POST …/completions` (legacy)
    pub const OpenaiCompletions: Op = Op::of(ApiFamily::Openai, "completions");
    /// `POST …/responses`
    pub const OpenaiResponses: Op = Op::of(ApiFamily::Openai, "responses");
    /// `POST …/embeddings`
    pub const OpenaiEmbeddings: Op = Op::of(ApiFamily::Openai, "embeddings");
    /// `POST …/moderations`
    pub const OpenaiModerations: Op = Op::of(ApiFamily::Openai, "moderations");
    /// Images, speech, transcription, translation: inference whose cost is not counted in
    /// tokens till can bound.
    pub const OpenaiUnmetered: Op = Op::of(ApiFamily::Openai, "unmetered");
    /// A write to a stored object that runs a model (an Assistants run, a Responses
    /// compaction, a code container, a Mistral conversation): unmetered, and the model it runs
    /// is the stored object's, so a `model` in its body is never taken for it.
    pub const OpenaiStoredRun: Op = Op::of(ApiFamily::Openai, "stored_run");
    /// `GET …/realtime?model=M` upgraded to a WebSocket: a Realtime session.
    pub const OpenaiRealtime: Op = Op::of(ApiFamily::Openai, "realtime");
}

/// The client events of the Realtime API (GA and beta spellings) that till forwards; any other
/// type is refused rather than passed on unread.
const REALTIME_CLIENT_EVENTS: &[&str] = &[
    "session.update",
    "transcription_session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "output_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.retrieve",
    "conversation.item.truncate",
    "conversation.item.delete",
    "response.create",
    "response.cancel",
];

pub struct Openai;

/// The most prompts a legacy completions request may list (OpenAI's own limit).
const MAX_PROMPTS: u64 = 2048;

/// How many prompts a legacy completions request sends: a string or one list of token ids is
/// one; a list of strings or of token-id lists is as many as it has.
fn prompts(map: &Map<String, Value>) -> Result<u64, String> {
    let n = match map.get("prompt") {
        Some(Value::Array(items)) if !items.iter().all(Value::is_number) => items.len() as u64,
        _ => 1,
    };
    if n > MAX_PROMPTS {
        return Err(format!(
            "`prompt` lists {n} prompts; till reads at most {MAX_PROMPTS}"
        ));
    }
    Ok(n.max(1))
}

/// A part whose `type` says it is an image (chat's `image_url`, Responses' `input_image`).
fn typed_image(part: &Map<String, Value>) -> bool {
    named(part, "type").any(|t| matches!(t.as_str(), Some("image_url" | "input_image")))
}

/// A part that holds an `image_url` but is not [`typed_image`].
fn untyped_image(part: &Map<String, Value>) -> bool {
    !typed_image(part) && named(part, "image_url").any(|v| !v.is_null())
}

impl Family for Openai {
    fn auth_scheme(&self) -> AuthScheme {
        AuthScheme::Bearer
    }

    fn classify(&self, method: &Method, tail: &[&str], prefix: Option<&str>) -> Endpoint {
        if prefix == Some("upload") {
            return Endpoint::admin();
        }
        let post = method == Method::POST;
        let get = method == Method::GET;
        // OpenAI writes with POST only; a compatible server or gateway that routes by path
        // alone would take a PUT or PATCH as the POST. Such a write to a path that runs a
        // model is for a key that could send anything (the `admin` class, here and under
        // `chat` below), and elsewhere it is held to what a POST there is held to.
        let write = post || matches!(*method, Method::PUT | Method::PATCH);
        let op = match (post, tail) {
            (true, ["chat", "completions"]) => Some(Op::OpenaiChat),
            (true, ["completions"]) => Some(Op::OpenaiCompletions),
            (true, ["responses"]) => Some(Op::OpenaiResponses),
            (true, ["embeddings"]) => Some(Op::OpenaiEmbeddings),
            (true, ["moderations"]) => Some(Op::OpenaiModerations),
            (
                true,
                ["images", "generations" | "edits" | "variations"]
                | ["audio", "speech" | "transcriptions" | "translations"],
            ) => Some(Op::OpenaiUnmetered),
            _ => None,
        };
        if let Some(op) = op {
            return Endpoint::new(Inference, op);
        }
        if write
            && !post
            && matches!(
                tail,
                ["completions" | "responses" | "embeddings" | "moderations"]
                    | ["images" | "audio", ..]
            )
        {
            return Endpoint::admin();
        }
        let class = |c: EndpointClass| Endpoint::new(c, Op::Other);
        // Among the stored objects, the calls that run a model or start something billed:
        // inference till cannot bound, so only a key for every model and without a budget may
        // make them (an Assistants run, a Responses compaction, a code container). A `POST`
        // under `responses` or `chat` is one of these unless it is known to store or count only.
        if write {
            // A compaction and a Mistral conversation's start run the model their body names
            // (`model` is a parameter of both): unmetered, with that model checked.
            if matches!(tail, ["responses", "compact"] | ["conversations"]) {
                return Endpoint::new(Inference, Op::OpenaiUnmetered);
            }
            let runs = match tail {
                ["threads", rest @ ..] => rest.contains(&"runs"),
                ["responses", "input_tokens"] | ["responses", _, "cancel"] => false,
                ["responses", _, ..] => true,
                ["containers"] => true,
                // Mistral's Conversations run a model (and its server tools) on `inputs` when
                // one starts, goes on or restarts; OpenAI's only store, but adding items is
                // the one write there that is not also a Mistral run.
                ["conversations", _, "items"] => false,
                ["conversations", ..] => true,
                // OpenAI updates a stored completion's `metadata` there; a compatible gateway
                // may run a model there (`…/chat/completions/stream`, `…/{deployment}`).
                ["chat", ..] => return Endpoint::admin(),
                _ => false,
            };
            if runs {
                return Endpoint::new(Inference, Op::OpenaiStoredRun);
            }
            // A vector store bills its storage by the day and each search by the call, neither
            // in tokens: a stored object, but one a key with bounds may not add to or search.
            // An assistant or a thread makes one from its `tool_resources` (and a message from
            // its `attachments`), so writes there are the same.
            if matches!(
                tail.first(),
                Some(&"vector_stores" | &"assistants" | &"threads")
            ) {
                return Endpoint::new(Files, Op::OpenaiUnmetered);
            }
        }
        match (get, tail) {
            (true, ["models"]) => class(Models),
            (true, ["models", m]) if valid_model_id(m, true) => class(Models).with_model(m),
            _ => match tail.first().copied().unwrap_or("") {
                // Stored objects: uploaded files and what the API keeps of past requests
                // (`GET /v1/responses/{id}`, `GET /v1/chat/completions`).
                "files" | "uploads" | "vector_stores" | "assistants" | "threads" | "containers"
                | "responses" | "chat" | "conversations" => class(Files),
                "batches" => class(Batches),
                _ => Endpoint::admin(),
            },
        }
    }

    fn model_in_body(&self, op: Op) -> bool {
        op != Op::OpenaiUnmetered && op != Op::OpenaiStoredRun
    }

    fn body_model_runs(&self, op: Op) -> bool {
        op != Op::OpenaiStoredRun
    }

    fn unmetered(&self, op: Op) -> bool {
        op == Op::OpenaiUnmetered || op == Op::OpenaiStoredRun
    }

    fn read_fields(&self) -> &'static [&'static str] {
        &[
            "stream_options",
            "max_tokens",
            "max_completion_tokens",
            "max_output_tokens",
            "n",
            "best_of",
        ]
    }

    fn limit_fields(&self, op: Op) -> Option<&'static [&'static str]> {
        match op {
            Op::OpenaiChat => Some(&["max_tokens", "max_completion_tokens", "n"]),
            Op::OpenaiCompletions => Some(&["max_tokens", "n", "best_of"]),
            Op::OpenaiResponses => Some(&["max_output_tokens"]),
            _ => None,
        }
    }

    fn limits(&self, op: Op, map: &Map<String, Value>) -> Result<(Option<u64>, u64), String> {
        Ok(match op {
            Op::OpenaiChat => (
                largest(map, &["max_tokens", "max_completion_tokens"])?,
                choices(map, &["n"])?,
            ),
            // Each prompt of a list gets its own `n` (or `best_of`) completions.
            Op::OpenaiCompletions => (
                largest(map, &["max_tokens"])?,
                choices(map, &["n", "best_of"])? * prompts(map)?,
            ),
            Op::OpenaiResponses => (largest(map, &["max_output_tokens"])?, 1),
            Op::OpenaiUnmetered | Op::OpenaiStoredRun => (None, choices(map, &["n"])?),
            // Embeddings and moderations produce no output tokens.
            _ => (Some(0), 1),
        })
    }

    fn insert_ceiling(
        &self,
        op: Op,
        openai_proper: bool,
        map: &mut Map<String, Value>,
        ceiling: u64,
    ) {
        // OpenAI itself wants `max_completion_tokens` for chat; the OpenAI-compatible
        // providers read `max_tokens`. A chat ceiling the body names already is written over
        // where it is (a ceiling lowered to what a budget can pay for must be the body's
        // largest), and none is added beside it for OpenAI, which refuses a body with both.
        let field = match op {
            Op::OpenaiChat => {
                const CHAT: [&str; 2] = ["max_tokens", "max_completion_tokens"];
                let named: Vec<&str> = CHAT
                    .into_iter()
                    .filter(|f| map.get(*f).is_some_and(|v| !v.is_null()))
                    .collect();
                for f in &named {
                    map.insert((*f).into(), ceiling.into());
                }
                match (openai_proper, named.is_empty()) {
                    (true, false) => return,
                    (true, true) => "max_completion_tokens",
                    (false, _) => "max_tokens",
                }
            }
            Op::OpenaiCompletions => "max_tokens",
            Op::OpenaiResponses => "max_output_tokens",
            _ => return,
        };
        map.insert(field.into(), ceiling.into());
    }

    fn stored_input(&self, op: Op, map: &Map<String, Value>) -> Option<String> {
        (op == Op::OpenaiResponses && map.get("prompt").is_some_and(Value::is_object))
            .then(|| "a stored `prompt`".into())
    }

    fn hidden_input(&self, _op: Op, model: Option<&str>, map: &Map<String, Value>) -> u64 {
        let mut images = count_parts(map, typed_image);
        // What a message or input item holds in an `image_url` under another `type`, or none:
        // vLLM reads a part's kind from its keys when its `type` is missing or null, or when it
        // carries a `uuid`. Only there: a tool's schema may well name a parameter `image_url`.
        for items in ["messages", "input"].iter().flat_map(|f| named(map, f)) {
            for item in items.as_array().into_iter().flatten() {
                if let Value::Object(item) = item {
                    images += count_parts(item, untyped_image);
                }
            }
        }
        if images == 0 {
            return 0;
        }
        // gpt-4o-mini bills an image as 2,833 tokens and 5,667 a tile, up to 8 tiles (an image
        // scaled to 768 × 2048): 48,169. Every other OpenAI model's image is priced to cost
        // fewer (tiles of 170 or 140 tokens, or at most 1,536 patches times a model's factor
        // under 2.5, and the larger detail levels of newer models); 16,384 also covers the
        // vision models OpenAI-compatible servers run, whose processors cap an image there.
        let per_image = if model.is_some_and(|m| m.contains("gpt-4o-mini")) {
            48_169
        } else {
            16_384
        };
        images * per_image
    }

    fn server_tool(&self, tool: &Map<String, Value>) -> Option<String> {
        let kind = tool.get("type").and_then(Value::as_str)?;
        (!matches!(kind, "function" | "custom")).then(|| format!("the `{kind}` tool"))
    }

    fn request_usage(
        &self,
        op: Op,
        stream: bool,
        include_usage: bool,
        map: &mut Map<String, Value>,
    ) -> bool {
        if !matches!(op, Op::OpenaiChat | Op::OpenaiCompletions) || !stream || include_usage {
            return false;
        }
        ask_for_usage(map);
        true
    }

    fn sse_event(&self, event_name: &str, v: &Value, _prev: Option<Usage>) -> EventUsage {
        let mut out = EventUsage::default();
        let kind = v.get("type").and_then(Value::as_str).unwrap_or(event_name);
        if RESPONSE_ENDS.contains(&kind) {
            out.completed = true;
            out.usage = response_usage(v);
        } else if let Some(u) = v.get("usage").filter(|u| reports(*u, self.usage_paths())) {
            out.usage = Some(openai_usage(u));
            out.usage_only = v
                .get("choices")
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty);
        }
        out
    }

    fn sse_markers(&self) -> &'static [&'static str] {
        &[
            "usage",
            "response.completed",
            "response.incomplete",
            "response.failed",
        ]
    }

    fn usage_member(&self) -> &'static str {
        "usage"
    }

    fn usage_paths(&self) -> &'static [&'static [&'static str]] {
        &[
            &["input_tokens"],
            &["output_tokens"],
            &["input_tokens_details", "cached_tokens"],
            &["input_tokens_details", "cache_write_tokens"],
            &["output_tokens_details", "reasoning_tokens"],
            &["prompt_tokens"],
            &["completion_tokens"],
            &["prompt_tokens_details", "cached_tokens"],
            &["prompt_tokens_details", "cache_write_tokens"],
            &["completion_tokens_details", "reasoning_tokens"],
        ]
    }

    fn usage_of(&self, u: Option<&dyn Tree>) -> Option<Usage> {
        u.filter(|u| reports(*u, self.usage_paths()))
            .map(openai_usage)
    }

    fn error_body(&self, status: u16, kind: &str, message: &str) -> Value {
        serde_json::json!({
            "error": {
                "message": message,
                "type": error_type(status),
                "param": null,
                "code": format!("till_{kind}"),
            }
        })
    }

    fn stream_error_event(&self, message: &str) -> String {
        format!(
            "data: {}\n\n",
            serde_json::json!({"error": {"message": message, "type": "server_error", "param": null, "code": "till_upstream"}})
        )
    }

    fn websocket(&self, tail: &[&str], prefix: Option<&str>) -> Option<WsRoute> {
        if prefix == Some("upload") {
            return None;
        }
        match tail {
            // Responses WebSocket mode: each `response.create` message is a Responses body.
            ["responses"] => Some(WsRoute {
                endpoint: Endpoint::new(Inference, Op::OpenaiResponses),
                model_param: None,
            }),
            ["realtime"] => Some(WsRoute {
                endpoint: Endpoint::new(Realtime, Op::OpenaiRealtime),
                model_param: Some("model"),
            }),
            _ => None,
        }
    }

    fn ws_key_protocol(&self) -> Option<&'static str> {
        // What the official SDKs send from a browser: `realtime, openai-insecure-api-key.KEY`.
        Some("openai-insecure-api-key.")
    }

    fn ws_client_event(&self, op: Op, kind: &str) -> WsClientEvent {
        match op {
            Op::OpenaiResponses if kind == "response.create" => {
                WsClientEvent::Create(Op::OpenaiResponses)
            }
            Op::OpenaiResponses => WsClientEvent::Refuse(format!(
                "till forwards only `response.create` events on a Responses WebSocket, not `{kind}`"
            )),
            Op::OpenaiRealtime if REALTIME_CLIENT_EVENTS.contains(&kind) => WsClientEvent::Pass,
            _ => WsClientEvent::Refuse(format!(
                "till does not forward `{kind}` events; it forwards only the Realtime client events it knows"
            )),
        }
    }

    fn ws_server_event(&self, op: Op, v: &Value) -> WsServerEvent {
        let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
        let mut out = WsServerEvent::default();
        match (op, kind) {
            (_, "response.created") => out.started = true,
            (Op::OpenaiResponses, k) if RESPONSE_ENDS.contains(&k) => {
                out.ended = true;
                out.usage = response_usage(v);
            }
            // A Responses error ends the response it answers; a Realtime error answers one
            // client event and the session goes on.
            (Op::OpenaiResponses, "error") => out.error = true,
            (Op::OpenaiRealtime, "response.done") => {
                out.ended = true;
                out.usage = v
                    .pointer("/response/usage")
                    .filter(|u| reports(*u, Openai.usage_paths()))
                    .map(realtime_usage);
            }
            (Op::OpenaiRealtime, "session.created" | "session.updated") => {
                out.model = v
                    .pointer("/session/model")
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
            _ => {}
        }
        out
    }

    fn ws_error_event(&self, op: Op, status: u16, kind: &str, message: &str) -> String {
        let error = serde_json::json!({
            "type": error_type(status),
            "code": format!("till_{kind}"),
            "message": message,
            "param": null,
        });
        if op == Op::OpenaiRealtime {
            serde_json::json!({"type": "error", "event_id": "event_till", "error": error})
        } else {
            // The Responses WebSocket wraps the HTTP status in its error events.
            serde_json::json!({"type": "error", "status": status, "error": error})
        }
        .to_string()
    }
}

/// The Responses events that end a response, each carrying its `usage`.
const RESPONSE_ENDS: &[&str] = &[
    "response.completed",
    "response.incomplete",
    "response.failed",
];

fn response_usage(v: &Value) -> Option<Usage> {
    v.pointer("/response/usage")
        .filter(|u| reports(*u, Openai.usage_paths()))
        .map(|u| openai_usage(u))
}

/// A Realtime `response.done` usage: `input_token_details`, singular, unlike Responses.
fn realtime_usage(u: &Value) -> Usage {
    Usage {
        input_tokens: n(u, &["input_tokens"]),
        output_tokens: n(u, &["output_tokens"]),
        cached_tokens: n(u, &["input_token_details", "cached_tokens"]),
        ..Usage::default()
    }
}

/// Asks OpenAI chat for the usage chunk at the end of a stream.
pub fn ask_for_usage(map: &mut Map<String, Value>) {
    let opts = map
        .entry("stream_options")
        .or_insert_with(|| Value::Object(Map::new()));
    if !opts.is_object() {
        *opts = Value::Object(Map::new());
    }
    if let Some(o) = opts.as_object_mut() {
        o.insert("include_usage".into(), true.into());
    }
}

/// Chat completions (`prompt_tokens`…) and Responses/embeddings (`input_tokens`…) alike.
fn openai_usage(u: &dyn Tree) -> Usage {
    if u.has("input_tokens") {
        Usage {
            input_tokens: n(u, &["input_tokens"]),
            output_tokens: n(u, &["output_tokens"]),
            cached_tokens: n(u, &["input_tokens_details", "cached_tokens"]),
            cache_write_tokens: n(u, &["input_tokens_details", "cache_write_tokens"]),
            reasoning_tokens: n(u, &["output_tokens_details", "reasoning_tokens"]),
            ..Usage::default()
        }
    } else {
        Usage {
            input_tokens: n(u, &["prompt_tokens"]),
            output_tokens: n(u, &["completion_tokens"]),
            cached_tokens: n(u, &["prompt_tokens_details", "cached_tokens"]),
            // Prompt-cache writes, billed above plain input (from GPT-5.6 on).
            cache_write_tokens: n(u, &["prompt_tokens_details", "cache_write_tokens"]),
            reasoning_tokens: n(u, &["completion_tokens_details", "reasoning_tokens"]),
            ..Usage::default()
        }
    }
}

fn error_type(status: u16) -> &'static str {
    match status {
        401 | 403 => "invalid_request_error",
        429 => "rate_limit_exceeded",
        413 => "invalid_request_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The meter parses only events with a marker: every event that ends a response has one.
    #[test]
    fn every_response_end_is_an_sse_marker() {
        for end in RESPONSE_ENDS {
            assert!(Openai.sse_markers().contains(end), "{end}");
        }
    }
}
