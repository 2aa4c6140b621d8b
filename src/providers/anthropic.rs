//! The Anthropic Messages wire format: `x-api-key` plus `anthropic-version`, the
//! `/v1/messages` paths, `max_tokens`/`max_tokens_to_sample`, server tools by `type` prefix,
//! the long-context beta header, `message_start`/`message_delta` usage with cache reads and
//! writes counted apart, and `{"type": "error", …}` bodies and `event: error` events.
//!
//! Pure knowledge of the format: no I/O, nothing about keys, caveats or the proxy.

use http::{HeaderMap, Method};
use serde_json::{Map, Value};

use super::ApiFamily;
use super::endpoint::{Endpoint, Op, valid_model_id};
use super::family::{AuthScheme, EventUsage, Family};
use super::fields::{count_kinds, largest, named};
use super::usage::{Tree, Usage, reports};
use crate::childkey::EndpointClass::{self, *};

/// The `anthropic-version` sent when the client did not send one.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Prompt tokens above which the long-context beta bills a premium.
pub const LONG_CONTEXT_FROM: u64 = 200_000;

/// Input tokens a request with tools may be billed for the tool-use system prompt Anthropic
/// adds (346 by its pricing page for the Claude 4 models, rounded up).
const TOOL_PROMPT: u64 = 500;

/// Input tokens one image may cost: about width × height / 750, for images up to 1.15
/// megapixels (≈ 1,600 tokens), and more for the models that read larger ones; rounded up.
const IMAGE_TOKENS: u64 = 5_000;

/// Input tokens one Anthropic-defined tool (`bash_…`, `text_editor_…`, `computer_…`,
/// `memory_…`: a `type` other than `custom`) may add: its definition is the provider's, not
/// the body's. The dearest documented is computer use, 735 tokens a tool plus a system prompt
/// of up to 499, rounded up.
const DEFINED_TOOL: u64 = 1_500;

/// The most input tokens a Claude model takes (its context window with the long-context
/// beta, or the window of the models that have it without): what a PDF may be billed for.
/// A PDF's pages are billed as text and an image each, and its bytes bound neither: a page of
/// compressed text can be 100,000 characters in a few hundred bytes, and a hundred empty pages
/// fit in 10 KB.
pub const MAX_PROMPT: u64 = 1_000_000;

#[allow(non_upper_case_globals)]
impl Op {
    /// `POST /v1/messages`
    pub const AnthropicMessages: Op = Op::of(ApiFamily::Anthropic, "messages");
    /// `POST /v1/messages/count_tokens`
    pub const AnthropicCountTokens: Op = Op::of(ApiFamily::Anthropic, "count_tokens");
    /// `POST /v1/complete` (legacy)
    pub const AnthropicComplete: Op = Op::of(ApiFamily::Anthropic, "complete");
}

pub struct Anthropic;

impl Family for Anthropic {
    fn auth_scheme(&self) -> AuthScheme {
        AuthScheme::XApiKey
    }

    fn default_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[("anthropic-version", ANTHROPIC_VERSION)]
    }

    fn classify(&self, method: &Method, tail: &[&str], prefix: Option<&str>) -> Endpoint {
        if prefix.is_some() {
            return Endpoint::admin();
        }
        let post = method == Method::POST;
        let get = method == Method::GET;
        let class = |c: EndpointClass| Endpoint::new(c, Op::Other);
        match (post, get, tail) {
            (true, _, ["messages"]) => Endpoint::new(Inference, Op::AnthropicMessages),
            (true, _, ["messages", "count_tokens"]) => {
                Endpoint::new(Inference, Op::AnthropicCountTokens)
            }
            (true, _, ["complete"]) => Endpoint::new(Inference, Op::AnthropicComplete),
            (_, _, ["messages", "batches", ..]) => class(Batches),
            (_, true, ["models"]) => class(Models),
            (_, true, ["models", m]) if valid_model_id(m, false) => class(Models).with_model(m),
            (_, _, ["files", ..]) => class(Files),
            _ => Endpoint::admin(),
        }
    }

    fn missing_version(&self) -> Option<&'static str> {
        Some("v1")
    }

    fn model_in_body(&self, _op: Op) -> bool {
        true
    }

    fn read_fields(&self) -> &'static [&'static str] {
        &["max_tokens", "max_tokens_to_sample"]
    }

    fn limit_fields(&self, op: Op) -> Option<&'static [&'static str]> {
        match op {
            Op::AnthropicMessages => Some(&["max_tokens"]),
            Op::AnthropicComplete => Some(&["max_tokens_to_sample"]),
            _ => None,
        }
    }

    fn limits(&self, op: Op, map: &Map<String, Value>) -> Result<(Option<u64>, u64), String> {
        Ok(match op {
            Op::AnthropicMessages => (largest(map, &["max_tokens"])?, 1),
            Op::AnthropicComplete => (largest(map, &["max_tokens_to_sample"])?, 1),
            // Token counting produces no output.
            _ => (Some(0), 1),
        })
    }

    fn insert_ceiling(
        &self,
        op: Op,
        _openai_proper: bool,
        map: &mut Map<String, Value>,
        ceiling: u64,
    ) {
        let field = match op {
            Op::AnthropicMessages => "max_tokens",
            Op::AnthropicComplete => "max_tokens_to_sample",
            _ => return,
        };
        map.insert(field.into(), ceiling.into());
    }

    fn hidden_input(&self, op: Op, _model: Option<&str>, map: &Map<String, Value>) -> u64 {
        if op != Op::AnthropicMessages {
            return 0;
        }
        // Images; and documents whose source is not plain text or content blocks (a base64
        // PDF; URL and file sources are refused before this), which may fill the context.
        let [images, documents] = count_kinds(
            map,
            &[
                |part| named(part, "type").any(|t| t.as_str() == Some("image")),
                |part| {
                    named(part, "type").any(|t| t.as_str() == Some("document"))
                        && !named(part, "source").any(|source| {
                            source.as_object().is_some_and(|s| {
                                let mut kinds = named(s, "type").peekable();
                                kinds.peek().is_some()
                                    && kinds.all(|k| matches!(k.as_str(), Some("text" | "content")))
                            })
                        })
                },
            ],
        );
        let media = images * IMAGE_TOKENS + if documents > 0 { MAX_PROMPT } else { 0 };
        let tools = match map.get("tools") {
            Some(Value::Array(tools)) if !tools.is_empty() => tools,
            _ => return media,
        };
        let defined = tools
            .iter()
            .filter(|t| {
                t.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|kind| kind != "custom")
            })
            .count() as u64;
        media + TOOL_PROMPT + defined * DEFINED_TOOL
    }

    fn server_tool(&self, tool: &Map<String, Value>) -> Option<String> {
        // The tools the client runs are named: a tool of its own (no `type`, or `custom`) and
        // Anthropic's client tools. Every other type runs on Anthropic's side (web search and
        // fetch, code execution, MCP, the advisor, those still to come) and may be billed
        // beside the tokens.
        let kind = match tool.get("type") {
            None | Some(Value::Null) => return None,
            Some(Value::String(kind)) => kind,
            // Named by its JSON kind, not its text: a long string inside it is left out of a
            // skimmed body, and the reason must read the same either way.
            Some(other) => {
                let what = match other {
                    Value::Object(_) => "an object",
                    Value::Array(_) => "a list",
                    Value::Bool(_) => "true or false",
                    _ => "a number",
                };
                return Some(format!("a tool whose `type` is {what}, not a name"));
            }
        };
        let client = kind == "custom"
            || ["bash_", "text_editor_", "computer_", "memory_"]
                .iter()
                .any(|p| kind.starts_with(p));
        (!client).then(|| format!("the `{kind}` tool"))
    }

    fn uncounted_header(&self, headers: &HeaderMap, prompt_bound: u64) -> Option<&'static str> {
        // The premium applies to prompts above LONG_CONTEXT_FROM tokens; a prompt whose bound
        // (the reservation's: its bytes, and what images, tools and PDFs add) is not above that
        // cannot hold more tokens.
        let long_context = headers.get_all("anthropic-beta").iter().any(|v| {
            // In any letter case: a server that reads beta names without regard to it.
            v.to_str()
                .map_or(true, |v| v.to_ascii_lowercase().contains("context-1m"))
        });
        (long_context && prompt_bound > LONG_CONTEXT_FROM).then_some(
            "this request asks for the long-context beta and may be long enough (over 200,000 bytes, or with a PDF) to be billed above the model's price; a key with a budget or a token rate may not send it (Claude Code stops asking for it with CLAUDE_CODE_DISABLE_1M_CONTEXT=1)",
        )
    }

    fn sse_event(&self, event_name: &str, v: &Value, prev: Option<Usage>) -> EventUsage {
        let mut out = EventUsage::default();
        let kind = v.get("type").and_then(Value::as_str).unwrap_or(event_name);
        let prev = prev.unwrap_or_default();
        match kind {
            "message_start" => {
                out.usage = v
                    .pointer("/message/usage")
                    .filter(|u| reports(*u, self.usage_paths()))
                    .map(|u| usage(u, prev));
                out.provisional = true;
            }
            "message_delta" => {
                out.usage = v
                    .get("usage")
                    .filter(|u| reports(*u, self.usage_paths()))
                    .map(|u| usage(u, prev));
            }
            "message_stop" => out.completed = true,
            _ => {}
        }
        out
    }

    fn sse_markers(&self) -> &'static [&'static str] {
        &["usage", "message_stop"]
    }

    fn usage_member(&self) -> &'static str {
        "usage"
    }

    fn usage_paths(&self) -> &'static [&'static [&'static str]] {
        &[
            &["input_tokens"],
            &["output_tokens"],
            &["cache_read_input_tokens"],
            &["cache_creation_input_tokens"],
            &["cache_creation", "ephemeral_1h_input_tokens"],
        ]
    }

    fn usage_of(&self, u: Option<&dyn Tree>) -> Option<Usage> {
        u.filter(|u| reports(*u, self.usage_paths()))
            .map(|u| usage(u, Usage::default()))
    }

    fn error_body(&self, status: u16, _kind: &str, message: &str) -> Value {
        serde_json::json!({
            "type": "error",
            "error": { "type": error_type(status), "message": message },
        })
    }

    fn stream_error_event(&self, message: &str) -> String {
        format!(
            "event: error\ndata: {}\n\n",
            serde_json::json!({"type": "error", "error": {"type": "api_error", "message": message}})
        )
    }
}

/// Anthropic counts cache reads and writes apart from `input_tokens`; till folds them into
/// input (cache reads also as `cached_tokens`, writes as `cache_write_tokens`, with the
/// one-hour writes of `cache_creation.ephemeral_1h_input_tokens` apart). `message_delta`
/// counts are cumulative.
fn usage(u: &dyn Tree, prev: Usage) -> Usage {
    let cache_read = u.num(&["cache_read_input_tokens"]);
    let cache_write = u.num(&["cache_creation_input_tokens"]);
    let input = u.num(&["input_tokens"]);
    let input_total = match (input, cache_read, cache_write) {
        (None, None, None) => prev.input_tokens,
        _ => input
            .unwrap_or(0)
            .saturating_add(cache_read.unwrap_or(0))
            .saturating_add(cache_write.unwrap_or(0)),
    };
    Usage {
        input_tokens: input_total.max(prev.input_tokens),
        output_tokens: u.num(&["output_tokens"]).unwrap_or(prev.output_tokens),
        cached_tokens: cache_read.unwrap_or(prev.cached_tokens),
        cache_write_tokens: cache_write.unwrap_or(prev.cache_write_tokens),
        cache_write_1h_tokens: u
            .num(&["cache_creation", "ephemeral_1h_input_tokens"])
            .unwrap_or(prev.cache_write_1h_tokens),
        reasoning_tokens: 0,
    }
}

fn error_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    }
}
