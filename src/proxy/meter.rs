//! Reads token usage from responses as they stream past, without holding them up.
//!
//! JSON bodies are parsed once complete (they are forwarded as they arrive all the same);
//! server-sent events are split into events and each `data:` payload is inspected: OpenAI's
//! final usage chunk (`stream_options.include_usage`), Responses' `response.completed`,
//! Anthropic's `message_start` plus cumulative `message_delta`, Gemini's `usageMetadata`.
//! When till itself asked OpenAI for the usage chunk, that chunk is removed from the stream.

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use serde_json::Value;

use crate::providers::ApiFamily;

/// Token counts of one request as the provider reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Input tokens served from the provider's prompt cache (a subset of `input_tokens`).
    pub cached_tokens: u64,
    /// Output tokens spent on reasoning (a subset of `output_tokens`).
    pub reasoning_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

/// JSON bodies larger than this are forwarded but not parsed for usage.
const MAX_JSON: usize = 8 << 20;

/// Observes one response body.
#[derive(Debug)]
pub struct Meter {
    api: ApiFamily,
    sse: bool,
    /// Remove OpenAI's usage-only chunk (till added `include_usage`, the client did not).
    strip_usage_chunk: bool,
    pending: BytesMut,
    usage: Option<Usage>,
    overflow: bool,
    /// Whether a terminal event (`[DONE]`, `message_stop`, `response.completed`) was seen.
    pub completed: bool,
}

impl Meter {
    pub fn new(api: ApiFamily, sse: bool, strip_usage_chunk: bool) -> Self {
        Self {
            api,
            sse,
            strip_usage_chunk,
            pending: BytesMut::new(),
            usage: None,
            overflow: false,
            completed: false,
        }
    }

    /// Takes a chunk from upstream and returns what to send on to the client. Only a stream
    /// that strips the usage chunk ever holds bytes back, and only an incomplete event's.
    pub fn feed(&mut self, chunk: Bytes) -> Bytes {
        if !self.sse {
            if !self.overflow {
                if self.pending.len() + chunk.len() > MAX_JSON {
                    self.overflow = true;
                    self.pending = BytesMut::new();
                } else {
                    self.pending.extend_from_slice(&chunk);
                }
            }
            return chunk;
        }
        self.pending.extend_from_slice(&chunk);
        let mut out = BytesMut::new();
        while let Some(end) = event_end(&self.pending) {
            let event = self.pending.split_to(end);
            if self.observe_event(&event) {
                out.extend_from_slice(&event);
            }
        }
        if self.strip_usage_chunk {
            out.freeze()
        } else {
            // Pass bytes through untouched; only the parser needed the split.
            chunk
        }
    }

    /// Ends the body: parses a JSON body, flushes any incomplete event, and returns what is
    /// left to send (an unterminated final event) and the usage seen.
    pub fn finish(&mut self) -> (Bytes, Option<Usage>) {
        if !self.sse {
            if !self.overflow
                && !self.pending.is_empty()
                && let Ok(v) = serde_json::from_slice::<Value>(&self.pending)
            {
                self.usage = usage_from_json(self.api, &v);
                self.completed = true;
            }
            self.pending.clear();
            return (Bytes::new(), self.usage);
        }
        let rest = std::mem::take(&mut self.pending);
        let keep = !rest.is_empty() && self.observe_event(&rest);
        let tail = if self.strip_usage_chunk && keep {
            rest.freeze()
        } else {
            Bytes::new()
        };
        (tail, self.usage)
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Looks at one SSE event; returns whether to forward it.
    fn observe_event(&mut self, event: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(event) else {
            return true;
        };
        let mut event_name = "";
        let mut data = String::new();
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                event_name = v.trim();
            } else if let Some(v) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        if data.is_empty() {
            return true;
        }
        if data == "[DONE]" {
            self.completed = true;
            return true;
        }
        let Ok(v) = serde_json::from_str::<Value>(&data) else {
            return true;
        };
        match self.api {
            ApiFamily::Openai => {
                let kind = v.get("type").and_then(Value::as_str).unwrap_or(event_name);
                if kind == "response.completed" || kind == "response.incomplete" {
                    self.completed = true;
                    if let Some(u) = v.pointer("/response/usage") {
                        self.usage = Some(openai_usage(u));
                    }
                } else if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
                    self.usage = Some(openai_usage(u));
                    let usage_only = v
                        .get("choices")
                        .and_then(Value::as_array)
                        .is_some_and(Vec::is_empty);
                    if self.strip_usage_chunk && usage_only {
                        return false;
                    }
                }
            }
            ApiFamily::Anthropic => {
                let kind = v.get("type").and_then(Value::as_str).unwrap_or(event_name);
                match kind {
                    "message_start" => {
                        if let Some(u) = v.pointer("/message/usage") {
                            self.usage = Some(anthropic_usage(u, self.usage.unwrap_or_default()));
                        }
                    }
                    "message_delta" => {
                        if let Some(u) = v.get("usage") {
                            self.usage = Some(anthropic_usage(u, self.usage.unwrap_or_default()));
                        }
                    }
                    "message_stop" => self.completed = true,
                    _ => {}
                }
            }
            ApiFamily::Gemini => {
                if let Some(u) = v.get("usageMetadata") {
                    self.usage = Some(gemini_usage(u));
                }
                if v.pointer("/candidates/0/finishReason").is_some() {
                    self.completed = true;
                }
            }
        }
        true
    }
}

/// The end (exclusive) of the first complete SSE event in `buf`: after a blank line.
fn event_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 1 < buf.len() {
        if buf[i] == b'\n' {
            if buf[i + 1] == b'\n' {
                return Some(i + 2);
            }
            if buf[i + 1] == b'\r' && buf.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

fn n(v: &Value, ptr: &str) -> u64 {
    v.pointer(ptr).and_then(Value::as_u64).unwrap_or(0)
}

/// Usage from a complete JSON response body.
pub fn usage_from_json(api: ApiFamily, v: &Value) -> Option<Usage> {
    match api {
        ApiFamily::Openai => v.get("usage").filter(|u| !u.is_null()).map(openai_usage),
        ApiFamily::Anthropic => v.get("usage").map(|u| anthropic_usage(u, Usage::default())),
        ApiFamily::Gemini => v.get("usageMetadata").map(gemini_usage),
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
        }
    } else {
        Usage {
            input_tokens: n(u, "/prompt_tokens"),
            output_tokens: n(u, "/completion_tokens"),
            cached_tokens: n(u, "/prompt_tokens_details/cached_tokens"),
            reasoning_tokens: n(u, "/completion_tokens_details/reasoning_tokens"),
        }
    }
}

/// Anthropic counts cache reads and writes apart from `input_tokens`; till folds them into
/// input (cache reads also as `cached_tokens`). `message_delta` counts are cumulative.
fn anthropic_usage(u: &Value, prev: Usage) -> Usage {
    let cache_read = u.get("cache_read_input_tokens").and_then(Value::as_u64);
    let cache_write = u.get("cache_creation_input_tokens").and_then(Value::as_u64);
    let input = u.get("input_tokens").and_then(Value::as_u64);
    let input_total = match (input, cache_read, cache_write) {
        (None, None, None) => prev.input_tokens,
        _ => input.unwrap_or(0) + cache_read.unwrap_or(0) + cache_write.unwrap_or(0),
    };
    Usage {
        input_tokens: input_total.max(prev.input_tokens),
        output_tokens: u
            .get("output_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(prev.output_tokens),
        cached_tokens: cache_read.unwrap_or(prev.cached_tokens),
        reasoning_tokens: 0,
    }
}

fn gemini_usage(u: &Value) -> Usage {
    let thoughts = n(u, "/thoughtsTokenCount");
    Usage {
        input_tokens: n(u, "/promptTokenCount"),
        output_tokens: n(u, "/candidatesTokenCount") + thoughts,
        cached_tokens: n(u, "/cachedContentTokenCount"),
        reasoning_tokens: thoughts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        api: ApiFamily,
        sse: bool,
        strip: bool,
        chunks: &[&str],
    ) -> (String, Option<Usage>, bool) {
        let mut m = Meter::new(api, sse, strip);
        let mut out = String::new();
        for c in chunks {
            out.push_str(
                std::str::from_utf8(&m.feed(Bytes::copy_from_slice(c.as_bytes()))).unwrap(),
            );
        }
        let (tail, usage) = m.finish();
        out.push_str(std::str::from_utf8(&tail).unwrap());
        (out, usage, m.completed)
    }

    #[test]
    fn openai_stream_usage_is_read_and_stripped_when_till_asked() {
        let chunks = [
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"prompt_tokens_details\":{\"cached_tokens\":2}}}\n\ndata: [DONE]\n\n",
        ];
        let (out, usage, done) = run(ApiFamily::Openai, true, true, &chunks);
        assert_eq!(
            usage,
            Some(Usage {
                input_tokens: 7,
                output_tokens: 3,
                cached_tokens: 2,
                reasoning_tokens: 0
            })
        );
        assert!(done);
        assert!(!out.contains("prompt_tokens"), "{out}");
        assert!(out.contains("[DONE]") && out.contains("Hi"));
        let (out, _, _) = run(ApiFamily::Openai, true, false, &chunks);
        assert_eq!(out, chunks.concat());
    }

    #[test]
    fn events_split_across_chunks() {
        let whole =
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n";
        let (a, b) = whole.split_at(20);
        let (_, usage, _) = run(ApiFamily::Openai, true, true, &[a, b]);
        assert_eq!(usage.unwrap().output_tokens, 2);
    }

    #[test]
    fn anthropic_stream_sums_start_and_cumulative_delta() {
        let chunks = [
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":10}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        ];
        let (_, usage, done) = run(ApiFamily::Anthropic, true, false, &chunks);
        assert_eq!(
            usage.map(|u| (u.input_tokens, u.output_tokens)),
            Some((25, 15))
        );
        assert!(done);
    }

    #[test]
    fn gemini_and_json_bodies() {
        let chunks = [
            "data: {\"usageMetadata\":{\"promptTokenCount\":4,\"candidatesTokenCount\":1}}\r\n\r\n",
            "data: {\"candidates\":[{\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":4,\"candidatesTokenCount\":6}}\r\n\r\n",
        ];
        let (_, usage, done) = run(ApiFamily::Gemini, true, false, &chunks);
        assert_eq!(usage.map(|u| u.output_tokens), Some(6));
        assert!(done);
        let (_, usage, _) = run(
            ApiFamily::Openai,
            false,
            false,
            &["{\"usage\":{\"input_tokens\":3,", "\"output_tokens\":4}}"],
        );
        assert_eq!(
            usage.map(|u| (u.input_tokens, u.output_tokens)),
            Some((3, 4))
        );
    }

    #[test]
    fn cut_stream_reports_no_usage() {
        let (_, usage, done) = run(
            ApiFamily::Anthropic,
            true,
            false,
            &["event: content_block_delta\ndata: {\"type\":\"content_block_delta\"}\n\n"],
        );
        assert_eq!((usage, done), (None, false));
    }
}
