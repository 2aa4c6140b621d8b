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
use super::family::{AuthScheme, EventUsage, Family};
use super::fields::{choices, largest};
use super::usage::{Usage, n};
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
}

pub struct Openai;

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
        let class = |c: EndpointClass| Endpoint::new(c, Op::Other);
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
        op != Op::OpenaiUnmetered
    }

    fn unmetered(&self, op: Op) -> bool {
        op == Op::OpenaiUnmetered
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

    fn limits(&self, op: Op, map: &Map<String, Value>) -> Result<(Option<u64>, u64), String> {
        Ok(match op {
            Op::OpenaiChat => (
                largest(map, &["max_tokens", "max_completion_tokens"])?,
                choices(map, &["n"])?,
            ),
            Op::OpenaiCompletions => (
                largest(map, &["max_tokens"])?,
                choices(map, &["n", "best_of"])?,
            ),
            Op::OpenaiResponses => (largest(map, &["max_output_tokens"])?, 1),
            Op::OpenaiUnmetered => (None, choices(map, &["n"])?),
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
        // providers read `max_tokens`.
        let field = match op {
            Op::OpenaiChat if openai_proper => "max_completion_tokens",
            Op::OpenaiChat | Op::OpenaiCompletions => "max_tokens",
            Op::OpenaiResponses => "max_output_tokens",
            _ => return,
        };
        map.insert(field.into(), ceiling.into());
    }

    fn stored_input(&self, op: Op, map: &Map<String, Value>) -> Option<String> {
        (op == Op::OpenaiResponses && map.get("prompt").is_some_and(Value::is_object))
            .then(|| "a stored `prompt`".into())
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
        if op != Op::OpenaiChat || !stream || include_usage {
            return false;
        }
        ask_for_usage(map);
        true
    }

    fn sse_event(&self, event_name: &str, v: &Value, _prev: Option<Usage>) -> EventUsage {
        let mut out = EventUsage::default();
        let kind = v.get("type").and_then(Value::as_str).unwrap_or(event_name);
        if kind == "response.completed" || kind == "response.incomplete" {
            out.completed = true;
            out.usage = v.pointer("/response/usage").map(openai_usage);
        } else if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            out.usage = Some(openai_usage(u));
            out.usage_only = v
                .get("choices")
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty);
        }
        out
    }

    fn json_usage(&self, v: &Value) -> Option<Usage> {
        v.get("usage").filter(|u| !u.is_null()).map(openai_usage)
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
fn openai_usage(u: &Value) -> Usage {
    if u.get("input_tokens").is_some() {
        Usage {
            input_tokens: n(u, "/input_tokens"),
            output_tokens: n(u, "/output_tokens"),
            cached_tokens: n(u, "/input_tokens_details/cached_tokens"),
            reasoning_tokens: n(u, "/output_tokens_details/reasoning_tokens"),
            ..Usage::default()
        }
    } else {
        Usage {
            input_tokens: n(u, "/prompt_tokens"),
            output_tokens: n(u, "/completion_tokens"),
            cached_tokens: n(u, "/prompt_tokens_details/cached_tokens"),
            reasoning_tokens: n(u, "/completion_tokens_details/reasoning_tokens"),
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
