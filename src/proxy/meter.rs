//! Reads token usage from responses as they stream past, without holding them up.
//!
//! JSON bodies are parsed once complete (they are forwarded as they arrive all the same);
//! server-sent events are split into events and each `data:` payload is inspected: OpenAI's
//! final usage chunk (`stream_options.include_usage`), Responses' `response.completed`,
//! Anthropic's `message_start` plus cumulative `message_delta`, Gemini's `usageMetadata`.
//! When till itself asked OpenAI for the usage chunk, that chunk is removed from the stream.
//! What a payload means is the family's to say ([`crate::providers::Family::sse_event`]); this
//! module owns the framing and the cap, and must never parse one family's usage itself.
//!
//! An SSE event is held only until its blank line, and never past [`MAX_EVENT`]: an event that
//! grows beyond it is not parsed (its bytes still go to the client as they arrive) and the
//! request's usage becomes unknown, so its settlement charges the whole reservation. An
//! upstream that never ends an event cannot make the proxy's memory grow with it.

use std::borrow::Cow;
use std::sync::LazyLock;

use bytes::{Bytes, BytesMut};
use memchr::memmem::Finder;
use serde_json::Value;

use crate::providers::ApiFamily;
use crate::providers::usage::{Counts, Tree};

pub use crate::providers::Usage;

/// JSON bodies larger than this are forwarded but not parsed for usage.
const MAX_JSON: usize = 8 << 20;

/// The most of one SSE event held for parsing. The same as [`MAX_JSON`]: the largest events
/// are ones that repeat a whole response (Responses' `response.completed`, with base64 images
/// from the image tool), which arrive as JSON bodies of the same size when not streamed.
pub const MAX_EVENT: usize = MAX_JSON;

/// Observes one response body.
#[derive(Debug)]
pub struct Meter {
    api: ApiFamily,
    sse: bool,
    /// Remove OpenAI's usage-only chunk (till added `include_usage`, the client did not).
    strip_usage_chunk: bool,
    pending: BytesMut,
    /// How far into `pending` the search for an event's end has already looked (so a large
    /// event arriving in small chunks is scanned once, not once per chunk).
    scanned: usize,
    /// The cap on `pending` for an SSE event ([`MAX_EVENT`] unless set for tests).
    max_event: usize,
    /// Inside an event that outgrew `max_event`: its bytes are passed on, not kept, until
    /// its blank line.
    skipping: bool,
    /// The last bytes seen while skipping (at most 2), so a blank line split across chunks
    /// is still found.
    carry: Vec<u8>,
    usage: Option<Usage>,
    /// The body outgrew what the meter keeps (a JSON body past [`MAX_JSON`], an event past
    /// the event cap), or a count in its usage could not be read (a string, a negative, a
    /// fraction): usage is unknown even if some was seen, so the request is charged its
    /// reservation rather than what could be read.
    overflow: bool,
    /// Whether a terminal event (`[DONE]`, `message_stop`, `response.completed`) was seen.
    pub completed: bool,
    /// The usage seen is a placeholder no later event replaced ([`EventUsage::provisional`]):
    /// it is not the answer's, which is then unknown.
    provisional: bool,
}

impl Meter {
    pub fn new(api: ApiFamily, sse: bool, strip_usage_chunk: bool) -> Self {
        Self {
            api,
            sse,
            strip_usage_chunk,
            pending: BytesMut::new(),
            scanned: 0,
            max_event: MAX_EVENT,
            skipping: false,
            carry: Vec::new(),
            usage: None,
            overflow: false,
            completed: false,
            provisional: false,
        }
    }

    /// The same meter with a smaller event cap (tests and fuzzing reach it with small inputs).
    #[must_use]
    pub fn with_max_event(mut self, bytes: usize) -> Self {
        self.max_event = bytes;
        self
    }

    /// Bytes held for parsing right now (never more than the event cap between calls).
    pub fn pending_len(&self) -> usize {
        self.pending.len()
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
        let mut out = BytesMut::new();
        let mut rest: &[u8] = &chunk;
        if self.skipping {
            let end = self.skip(rest);
            if self.strip_usage_chunk {
                out.extend_from_slice(&rest[..end]);
            }
            rest = &rest[end..];
        }
        if !rest.is_empty() {
            self.pending.extend_from_slice(rest);
            while let Some(end) = event_end(&self.pending, self.scanned) {
                let event = self.pending.split_to(end);
                self.scanned = 0;
                if self.observe_event(&event) && self.strip_usage_chunk {
                    out.extend_from_slice(&event);
                }
            }
            // A blank line may start in the last two bytes and end in the next chunk.
            self.scanned = self.pending.len().saturating_sub(2);
            if self.pending.len() > self.max_event {
                self.overflow = true;
                self.skipping = true;
                self.scanned = 0;
                let held = std::mem::take(&mut self.pending);
                self.carry = held[held.len().saturating_sub(2)..].to_vec();
                // Stripping removes only a usage chunk, which is small and parsed whole; an
                // event too large to parse is not one, so it goes to the client unchanged.
                if self.strip_usage_chunk {
                    out.extend_from_slice(&held);
                }
            }
        }
        if self.strip_usage_chunk {
            out.freeze()
        } else {
            // Pass bytes through untouched; only the parser needed the split.
            chunk
        }
    }

    /// While skipping an oversized event: how many bytes of `input` belong to it. Stops
    /// skipping when its blank line is in `input`.
    fn skip(&mut self, input: &[u8]) -> usize {
        // A blank line that began in the previous chunk needs at most 2 more bytes.
        let mut joint = std::mem::take(&mut self.carry);
        let carried = joint.len();
        joint.extend_from_slice(&input[..input.len().min(2)]);
        let end = match event_end(&joint, 0) {
            Some(end) if end > carried => Some(end - carried),
            _ => event_end(input, 0),
        };
        match end {
            Some(end) => {
                self.skipping = false;
                end
            }
            None => {
                let seen: &[u8] = if input.len() >= 2 { input } else { &joint };
                self.carry = seen[seen.len().saturating_sub(2)..].to_vec();
                input.len()
            }
        }
    }

    /// Ends the body: parses a JSON body, flushes any incomplete event, and returns what is
    /// left to send (an unterminated final event) and the usage seen.
    pub fn finish(&mut self) -> (Bytes, Option<Usage>) {
        if !self.sse {
            let wire = self.api.wire();
            if !self.overflow
                && !self.pending.is_empty()
                && let Some(counts) =
                    Counts::read(&self.pending, wire.usage_member(), wire.usage_paths())
            {
                self.usage = wire.usage_of(counts.as_ref().map(|c| c as &dyn Tree));
                self.completed = true;
                if counts.as_ref().is_some_and(Counts::unreadable) {
                    self.overflow = true;
                }
            }
            self.pending.clear();
            return (Bytes::new(), self.usage());
        }
        let rest = std::mem::take(&mut self.pending);
        let keep = !rest.is_empty() && self.observe_event(&rest);
        let tail = if self.strip_usage_chunk && keep {
            rest.freeze()
        } else {
            Bytes::new()
        };
        (tail, self.usage())
    }

    /// Whether a count in the body could not be read (not a whole number, too large, or in
    /// a part of the body too large to parse).
    pub fn usage_unreadable(&self) -> bool {
        self.overflow
    }

    /// The usage seen so far; `None` once part of the body went unparsed, or when all a
    /// stream that reached its end reported is a placeholder (it reported no usage). A stream
    /// that broke off keeps its placeholder: the prompt's tokens in Anthropic's first event are
    /// billed, and a key with a budget is charged at least its reservation for it anyway.
    pub fn usage(&self) -> Option<Usage> {
        if self.overflow || (self.provisional && self.completed) {
            None
        } else {
            self.usage
        }
    }

    /// Looks at one SSE event; returns whether to forward it.
    fn observe_event(&mut self, event: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(event) else {
            return true;
        };
        let mut event_name = "";
        // Borrowed from the event when it has one `data:` line, as nearly every event has.
        let mut data = Cow::Borrowed("");
        for line in lines(text) {
            if let Some(v) = line.strip_prefix("event:") {
                event_name = v.trim();
            } else if let Some(v) = line.strip_prefix("data:") {
                let v = v.strip_prefix(' ').unwrap_or(v);
                if data.is_empty() {
                    data = Cow::Borrowed(v);
                } else {
                    let joined = data.to_mut();
                    joined.push('\n');
                    joined.push_str(v);
                }
            }
        }
        if data.is_empty() {
            return true;
        }
        if data == "[DONE]" {
            self.completed = true;
            return true;
        }
        if !markers(self.api)
            .iter()
            .any(|m| m.find(data.as_bytes()).is_some() || m.find(event_name.as_bytes()).is_some())
        {
            return true;
        }
        let wire = self.api.wire();
        let Ok(v) = serde_json::from_str::<Value>(&data) else {
            return true;
        };
        if unreadable_usage(self.api, &v) {
            self.overflow = true;
        }
        let seen = wire.sse_event(event_name, &v, self.usage);
        if let Some(u) = seen.usage {
            self.usage = Some(u);
            self.provisional = seen.provisional;
        }
        if seen.completed {
            self.completed = true;
        }
        if self.strip_usage_chunk && seen.usage_only {
            return false;
        }
        true
    }
}

/// Whether an event's usage holds a count that is not one (a string, a negative, a fraction,
/// past [`crate::providers::usage::MAX_COUNT`]): its usage is unknown, and the request is
/// charged its reservation.
pub(crate) fn unreadable_usage(api: ApiFamily, v: &Value) -> bool {
    let wire = api.wire();
    usage_objects(v, wire.usage_member())
        .any(|u| crate::providers::usage::unreadable(u, wire.usage_paths()))
}

/// The usage objects of an event: its family's usage member, or `usage`, at the top or one
/// object down (Anthropic's `message.usage`, Responses' `response.usage`).
fn usage_objects<'v>(v: &'v Value, member: &'static str) -> impl Iterator<Item = &'v Value> {
    let names = [member, "usage"];
    let top = v.as_object().into_iter().flat_map(|o| o.iter());
    top.flat_map(move |(k, child)| {
        let here = names.contains(&k.as_str()).then_some(child);
        let below = child
            .as_object()
            .into_iter()
            .flat_map(|o| o.iter())
            .filter(move |(k, _)| names.contains(&k.as_str()))
            .map(|(_, u)| u);
        here.into_iter().chain(below)
    })
    .filter(|u| u.is_object())
}

/// `text.lines()`, with the line ends found by `memchr` (`str::lines` looks for each one a
/// byte at a time): lines end at `\n` or `\r\n`, and a last `\n` ends the last line.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        // `\n` is ASCII, so both sides of it are character boundaries.
        let (line, next) = match memchr::memchr(b'\n', rest.as_bytes()) {
            Some(i) => (
                rest[..i].strip_suffix('\r').unwrap_or(&rest[..i]),
                &rest[i + 1..],
            ),
            None => (rest, ""),
        };
        rest = next;
        Some(line)
    })
}

/// The family's [`crate::providers::Family::sse_markers`], each a searcher built once: an
/// event that names none of them holds no usage and no end, and is not parsed.
fn markers(api: ApiFamily) -> &'static [Finder<'static>] {
    static MARKERS: LazyLock<[Vec<Finder<'static>>; 3]> = LazyLock::new(|| {
        ApiFamily::ALL.map(|api| {
            api.wire()
                .sse_markers()
                .iter()
                .map(|m| Finder::new(m.as_bytes()))
                .collect()
        })
    });
    let i = ApiFamily::ALL.iter().position(|a| *a == api).unwrap_or(0);
    &MARKERS[i]
}

/// The end (exclusive) of the first complete SSE event in `buf`: after a blank line. The
/// search starts at `from` (everything before it is known to hold no blank line).
fn event_end(buf: &[u8], from: usize) -> Option<usize> {
    let tail = buf.get(from..)?;
    for at in memchr::memchr_iter(b'\n', tail) {
        let i = from + at;
        match buf.get(i + 1) {
            Some(b'\n') => return Some(i + 2),
            Some(b'\r') if buf.get(i + 2) == Some(&b'\n') => return Some(i + 3),
            _ => {}
        }
    }
    None
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
    fn a_count_that_is_not_a_whole_number_leaves_the_usage_unknown() {
        // Read as 0, a count sent as a string, a negative or a fraction would charge nothing;
        // unknown, the request is charged its reservation.
        // Past 2^40 a count is not believed either (summed, 2^63 and more broke the ledger).
        for count in [
            "\"500\"",
            "-5",
            "5.5",
            "{}",
            "true",
            "1099511627777",
            "18446744073709551615",
        ] {
            let body = format!(
                "{{\"choices\":[],\"usage\":{{\"prompt_tokens\":7,\"completion_tokens\":{count}}}}}"
            );
            let (_, usage, _) = run(ApiFamily::Openai, false, false, &[&body]);
            assert_eq!(usage, None, "JSON, {count}");
            let events = [format!("data: {body}\n\n"), "data: [DONE]\n\n".to_string()];
            let events: Vec<&str> = events.iter().map(String::as_str).collect();
            let (_, usage, _) = run(ApiFamily::Openai, true, false, &events);
            assert_eq!(usage, None, "stream, {count}");
            let event = format!(
                "event: message_delta\ndata: {{\"type\":\"message_delta\",\"usage\":{{\"output_tokens\":{count}}}}}\n\n"
            );
            let (_, usage, _) = run(ApiFamily::Anthropic, true, false, &[&event]);
            assert_eq!(usage, None, "anthropic, {count}");
            let event = format!(
                "data: {{\"candidates\":[],\"usageMetadata\":{{\"promptTokenCount\":3,\"candidatesTokenCount\":{count}}}}}\n\n"
            );
            let (_, usage, _) = run(ApiFamily::Gemini, true, false, &[&event]);
            assert_eq!(usage, None, "gemini, {count}");
            // The WebSocket relay's terminal events: Responses' and Realtime's.
            for event in [
                format!(
                    "{{\"type\":\"response.completed\",\"response\":{{\"usage\":{{\"input_tokens\":7,\"output_tokens\":{count}}}}}}}"
                ),
                format!(
                    "{{\"type\":\"response.done\",\"response\":{{\"usage\":{{\"input_tokens\":7,\"output_tokens\":{count}}}}}}}"
                ),
            ] {
                let v: Value = serde_json::from_str(&event).unwrap();
                assert!(unreadable_usage(ApiFamily::Openai, &v), "{event}");
                let fine = event.replace(count, "3");
                let v: Value = serde_json::from_str(&fine).unwrap();
                assert!(!unreadable_usage(ApiFamily::Openai, &v), "{fine}");
            }
        }
        // `null` is a count left out, as before.
        let (_, usage, _) = run(
            ApiFamily::Openai,
            false,
            false,
            &[
                "{\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"prompt_tokens_details\":null}}",
            ],
        );
        assert_eq!(usage.map(|u| u.output_tokens), Some(3));
    }

    #[test]
    fn anthropic_cache_reads_and_writes_are_counted_apart() {
        let chunks = [
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":10,\"cache_read_input_tokens\":100,\"cache_creation_input_tokens\":50,\"cache_creation\":{\"ephemeral_5m_input_tokens\":20,\"ephemeral_1h_input_tokens\":30},\"output_tokens\":1}}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":7}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        ];
        let (_, usage, _) = run(ApiFamily::Anthropic, true, false, &chunks);
        assert_eq!(
            usage,
            Some(Usage {
                input_tokens: 160,
                output_tokens: 7,
                cached_tokens: 100,
                cache_write_tokens: 50,
                cache_write_1h_tokens: 30,
                reasoning_tokens: 0,
            })
        );
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
                ..Usage::default()
            })
        );
        assert!(done);
        assert!(!out.contains("prompt_tokens"), "{out}");
        assert!(out.contains("[DONE]") && out.contains("Hi"));
        let (out, _, _) = run(ApiFamily::Openai, true, false, &chunks);
        assert_eq!(out, chunks.concat());
    }

    #[test]
    fn an_event_whose_data_spans_lines_is_read_joined() {
        for event in [
            "data: {\"choices\":[],\"usage\":\ndata: {\"prompt_tokens\":3,\"completion_tokens\":4}}\n\n",
            // An empty first line adds nothing, as before.
            "data:\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\n",
            "event: x\r\ndata: {\"choices\":[],\r\ndata: \"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\r\n\r\n",
        ] {
            let (_, usage, _) = run(ApiFamily::Openai, true, false, &[event]);
            let usage = usage.unwrap_or_else(|| panic!("no usage read from {event:?}"));
            assert_eq!(
                (usage.input_tokens, usage.output_tokens),
                (3, 4),
                "{event:?}"
            );
        }
    }

    /// The search for an event's end, byte by byte, as it was before it used `memchr`: the
    /// reference the search is held to.
    fn event_end_reference(buf: &[u8], from: usize) -> Option<usize> {
        let mut i = from;
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

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]

        #[test]
        fn lines_are_the_lines_str_lines_gives(
            text in proptest::collection::vec(proptest::sample::select(vec!["\n", "\r", "\r\n", "a", "é", ""]), 0..24),
        ) {
            let text = text.concat();
            proptest::prop_assert_eq!(lines(&text).collect::<Vec<_>>(), text.lines().collect::<Vec<_>>());
        }

        #[test]
        fn an_events_end_is_found_where_a_byte_by_byte_search_finds_it(
            buf in proptest::collection::vec(proptest::sample::select(b"\n\n\r\rab".to_vec()), 0..80),
            from in 0usize..90,
        ) {
            proptest::prop_assert_eq!(event_end(&buf, from), event_end_reference(&buf, from));
        }
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
        // What grounding or URL context fetched is billed as input, streamed or whole.
        let fetched = "{\"candidates\":[{\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":12,\"toolUsePromptTokenCount\":250000,\"candidatesTokenCount\":6}}";
        for (sse, body) in [
            (true, format!("data: {fetched}\r\n\r\n")),
            (false, fetched.into()),
        ] {
            let (_, usage, _) = run(ApiFamily::Gemini, sse, false, &[&body]);
            assert_eq!(
                usage.map(|u| (u.input_tokens, u.output_tokens)),
                Some((250_012, 6)),
                "{body}"
            );
        }
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

    /// Regression: an event without a blank line was buffered whole, so an upstream that
    /// never ended one grew the proxy's memory without bound.
    #[test]
    fn an_endless_event_is_passed_on_but_not_kept() {
        let usage =
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\n\n";
        let mut m = Meter::new(ApiFamily::Openai, true, false);
        let mut sent = 0usize;
        let mut passed = 0usize;
        let mut feed = |m: &mut Meter, bytes: &[u8]| {
            sent += bytes.len();
            let out = m.feed(Bytes::copy_from_slice(bytes));
            assert_eq!(&out[..], bytes);
            passed += out.len();
            assert!(m.pending_len() <= MAX_EVENT, "{} held", m.pending_len());
        };
        feed(&mut m, usage.as_bytes());
        feed(&mut m, b"data: \"");
        let piece = vec![b'x'; 4096];
        for _ in 0..(3 * MAX_EVENT / piece.len()) {
            feed(&mut m, &piece);
        }
        feed(&mut m, b"\"\n\n");
        feed(&mut m, usage.as_bytes());
        feed(&mut m, b"data: [DONE]\n\n");
        assert_eq!(sent, passed);
        let (tail, usage) = m.finish();
        assert!(tail.is_empty());
        // Part of the stream went unread, so the usage is unknown even though some was seen;
        // the events after the long one were parsed again.
        assert_eq!(usage, None);
        assert!(m.completed);
    }

    /// Anthropic's `message_start` says one output token; only `message_delta` says the
    /// answer's. A stream that ends without one reported no usage (charged its reservation),
    /// not one token; one cut off before its end keeps what it reported (the prompt is billed).
    #[test]
    fn an_anthropic_stream_without_its_delta_reported_no_usage() {
        let start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n";
        let text = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"a long answer\"}}\n\n";
        let delta = "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":250}}\n\n";
        let stop = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        let run = |events: &[&str]| {
            let mut m = Meter::new(ApiFamily::Anthropic, true, false);
            for e in events {
                m.feed(Bytes::copy_from_slice(e.as_bytes()));
            }
            let (_, usage) = m.finish();
            (
                usage.map(|u| (u.input_tokens, u.output_tokens)),
                m.completed,
            )
        };
        assert_eq!(run(&[start, text, delta, stop]), (Some((10, 250)), true));
        assert_eq!(run(&[start, text, stop]), (None, true));
        assert_eq!(run(&[start, text]), (Some((10, 1)), false));
    }

    #[test]
    fn an_oversized_event_is_forwarded_whole_when_stripping() {
        let big = format!("data: {}\n\n", "y".repeat(100));
        let usage =
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\n\n";
        let chunks = [
            "data: {\"choices\":[{}]}\n\n",
            &big[..50],
            &big[50..],
            usage,
            "data: [DONE]\n\n",
        ];
        let mut m = Meter::new(ApiFamily::Openai, true, true).with_max_event(40);
        let mut out = Vec::new();
        for c in chunks {
            out.extend_from_slice(&m.feed(Bytes::copy_from_slice(c.as_bytes())));
            assert!(m.pending_len() <= 40);
        }
        let (tail, usage) = m.finish();
        out.extend_from_slice(&tail);
        // The long event reached the client; the usage chunk till asked for did not.
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("data: {{\"choices\":[{{}}]}}\n\n{big}data: [DONE]\n\n")
        );
        assert_eq!((usage, m.completed), (None, true));
    }

    #[test]
    fn a_skipped_event_ends_at_a_blank_line_split_across_chunks() {
        for end in ["\n\n", "\r\n\r\n", "\n\r\n"] {
            let text = format!("data: {}{end}data: [DONE]{end}", "z".repeat(64));
            // One byte at a time: every split point of the blank line is crossed.
            let mut m = Meter::new(ApiFamily::Openai, true, false).with_max_event(20);
            for b in text.as_bytes() {
                m.feed(Bytes::copy_from_slice(&[*b]));
                assert!(m.pending_len() <= 20);
            }
            m.finish();
            assert!(m.completed, "{end:?}");
        }
    }

    proptest::proptest! {
        /// Whatever the bytes and however they are split, without stripping the client gets
        /// exactly what the upstream sent, and the meter holds no more than its cap.
        #[test]
        fn passes_bytes_through_and_stays_under_its_cap(
            body in proptest::collection::vec(proptest::sample::select(b"data: {}[DONE]\r\n\"x".to_vec()), 0..600),
            cuts in proptest::collection::vec(0usize..600, 0..20),
            cap in 1usize..64,
        ) {
            for api in [ApiFamily::Openai, ApiFamily::Anthropic, ApiFamily::Gemini] {
                let mut m = Meter::new(api, true, false).with_max_event(cap);
                let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(body.len())).collect();
                cuts.sort_unstable();
                let mut out = Vec::new();
                let mut at = 0;
                for c in cuts.into_iter().chain([body.len()]) {
                    out.extend_from_slice(&m.feed(Bytes::copy_from_slice(&body[at..c])));
                    proptest::prop_assert!(m.pending_len() <= cap);
                    at = c;
                }
                let (tail, _) = m.finish();
                proptest::prop_assert!(tail.is_empty());
                proptest::prop_assert_eq!(&out, &body);
            }
        }
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
