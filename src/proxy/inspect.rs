//! What a request body asks for: its model, its output ceiling, how many choices it wants,
//! whether it streams, and whether it pulls in input that till cannot count. Pure functions,
//! no I/O.
//!
//! The proxy parses the body of every operation it limits ([`Op`]) exactly once, decides on
//! that parse, and forwards what reads as that parse: the bytes as sent when no object in them
//! repeats a key and till edits nothing (any conforming parser then reads what till read; see
//! the [`json`] module), else the parse re-serialised, whatever a different JSON parser would
//! make of the duplicate keys. A body it cannot parse, a model that is not a string, a ceiling
//! that is not a whole number: each is refused with a 400 that says so, never forwarded
//! unchecked.
//!
//! The parse and the checks every body gets (look-alike field names, `model`, `stream`,
//! references to stored input) are here; where each operation keeps its ceiling and choices,
//! and which tools a provider runs itself, is the operation's family's to say. This module
//! must never match on a family or name one family's fields.

use serde_json::{Map, Value};

use super::errors::ProxyError;
use super::route::Op;
use crate::providers::ApiFamily;

use crate::json;
pub mod received;

pub use received::{Received, Receiving};

/// What the proxy learned from a request body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inspection {
    /// The parsed object, for operations whose body till reads; `None` for bodies it passes
    /// through unread (`Op::Other`, multipart uploads).
    pub json: Option<Map<String, Value>>,
    /// The model named in the body.
    pub model: Option<String>,
    /// The largest output ceiling the body names, per choice. `Some(0)` for operations that
    /// produce no output tokens (embeddings, token counting).
    pub ceiling: Option<u64>,
    /// How many completions the request asks for (the largest of every field that sets it).
    pub choices: u64,
    pub stream: bool,
    /// OpenAI chat and completions: whether the client asked for `stream_options.include_usage`.
    pub include_usage: bool,
    /// The body as sent reads as `json` to any JSON parser (no object in it repeats a key),
    /// so when till changes nothing it can forward the bytes it was sent.
    pub verbatim: bool,
    /// `json` leaves out long [`FREE_TEXT`] strings: it is for deciding on; a body till must
    /// write out again is parsed whole first ([`parse_whole`]).
    pub skimmed: bool,
    /// The memory `json` takes (`json::size_of`), which the proxy counts against the room it
    /// gives request bodies for as long as it keeps it.
    pub size: usize,
    /// What the long strings left out of `json` would add to a whole parse of the body.
    pub left_out: usize,
}

/// Fields whose string values no check reads: the free text of prompts, messages, tool
/// calls and inline data, which is nearly all of a large body. The parse the checks run on
/// validates these strings like any other but leaves out the long ones (see `json::skim`),
/// so a megabyte of conversation is not copied into memory to be looked past. No decision
/// may read the string value of a field named here.
pub const FREE_TEXT: &[&str] = &[
    "text",
    "content",
    "thinking",
    "data",
    "arguments",
    "input",
    "instructions",
    "system",
    "prompt",
    "description",
    "output",
    "partial_json",
    "signature",
];

/// The whole parse of a body [`inspect`] accepted, for writing it out again with edits.
pub fn parse_whole(body: &[u8]) -> Result<Map<String, Value>, ProxyError> {
    match json::parse(body) {
        Ok((Value::Object(map), _)) => Ok(map),
        _ => Err(ProxyError::new(
            500,
            "internal",
            "till could not read again a request body it had read",
        )),
    }
}

impl Inspection {
    /// A body passed through unread.
    fn opaque() -> Self {
        Self {
            choices: 1,
            ..Self::default()
        }
    }
}

fn bad(message: impl Into<String>) -> ProxyError {
    ProxyError::new(400, "bad_request", message)
}

/// Reads `body` for `op`. `content_type` is the request's `Content-Type`, if any.
pub fn inspect(
    op: Op,
    path_model: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Inspection, ProxyError> {
    inspect_within(op, path_model, content_type, body, usize::MAX)
}

/// [`inspect`], whose parse may take at most `most` bytes of memory (a 413 past it).
pub fn inspect_within(
    op: Op,
    path_model: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
    most: usize,
) -> Result<Inspection, ProxyError> {
    let body = std::str::from_utf8(body).map_err(|_| body);
    inspect_with(op, path_model, content_type, body, FREE_TEXT, most)
}

/// [`inspect`] of a body as received: its text when it was UTF-8 (checked as it arrived),
/// else its bytes.
pub fn inspect_received(
    op: Op,
    path_model: Option<&str>,
    content_type: Option<&str>,
    body: &Received,
    most: usize,
) -> Result<Inspection, ProxyError> {
    let body = body.text().ok_or(body.bytes().as_ref());
    inspect_with(op, path_model, content_type, body, FREE_TEXT, most)
}

/// [`inspect`], leaving out the long strings of the fields in `free_text`.
fn inspect_with(
    op: Op,
    path_model: Option<&str>,
    content_type: Option<&str>,
    body: Result<&str, &[u8]>,
    free_text: &[&str],
    most: usize,
) -> Result<Inspection, ProxyError> {
    let Some(family) = op.family() else {
        return Ok(Inspection::opaque());
    };
    let wire = family.wire();
    let is_multipart = content_type.is_some_and(|ct| {
        ct.trim_start()
            .to_ascii_lowercase()
            .starts_with("multipart/form-data")
    });
    if op.unmetered() && is_multipart {
        // Uploads (transcription, image edits): till does not read multipart bodies, so it
        // knows no model; the proxy allows them only to keys that could name any model.
        return Ok(Inspection::opaque());
    }
    // JSON is UTF-8: a body that is not is refused as it is, not parsed up to its first bad
    // byte (a tree of everything before it, built without a bound).
    let text = body.map_err(|bytes| {
        let at = std::str::from_utf8(bytes)
            .err()
            .map_or(0, |e| e.valid_up_to());
        bad(format!(
            "till could not read this request body as JSON (it is not UTF-8 at byte {at}); the proxy forwards only bodies it can check"
        ))
    })?;
    let skimmed = json::skim_text_within(text, free_text, most).map_err(|e| {
        bad(format!(
            "till could not read this request body as JSON ({e}); the proxy forwards only bodies it can check"
        ))
    })?;
    let Some(json::Skimmed {
        value,
        repeated,
        skimmed,
        size,
        left_out,
    }) = skimmed
    else {
        return Err(ProxyError::new(
            413,
            "too_many_values",
            format!(
                "this request body holds so many JSON values that till would need more than {} MiB to check it; send it in fewer, larger values, or raise [proxy] max_body_bytes (one body's values may take what one key's bodies may hold at once, {} × max_body_bytes)",
                most >> 20,
                crate::proxy::state::BODIES_PER_LINEAGE
            ),
        ));
    };
    let Value::Object(map) = value else {
        return Err(bad("the request body must be a JSON object"));
    };
    // Every family's spelling, whichever family the request is for: a field one API reads
    // must not be smuggled past till in a look-alike spelling to a provider that reads it.
    static READ: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
        let mut read = vec![
            "model",
            "stream",
            "models",
            "response",
            "service_tier",
            "speed",
            "modalities",
            "tools",
            "prompt",
            "context_management",
            "serviceTier",
            "inference_geo",
        ];
        read.extend_from_slice(UNCOUNTED);
        read.extend_from_slice(LIMITS_ANYWHERE);
        read.extend_from_slice(OTHER_MODELS);
        read.extend_from_slice(GATEWAY_SETTINGS);
        read.extend_from_slice(RESENDS);
        for f in ApiFamily::ALL {
            read.extend_from_slice(f.wire().read_fields());
        }
        // Each name once: every field of every body is compared with the list.
        read.sort_unstable();
        read.dedup();
        read
    });
    check_field_names(&map, &READ).map_err(bad)?;
    for f in ApiFamily::ALL {
        f.wire()
            .check_nested_fields(&map, &check_field_names)
            .map_err(bad)?;
    }
    let model = match map.get("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() => {
            if let Some(why) = model_name_refusal(s) {
                return Err(bad(why));
            }
            Some(s.clone())
        }
        Some(_) => return Err(bad("`model` must be a non-empty string")),
    };
    // Where the path names the model (Gemini's `models/M:generateContent`), the upstream runs
    // the path's: a body that names another would be checked as one model and run as another.
    if let (Some(path), Some(body)) = (path_model, model.as_deref())
        && body.strip_prefix("models/").unwrap_or(body) != path
    {
        return Err(bad(format!(
            "the body names model `{body}`, the path `{path}`; till checks the one the path names and refuses a body that names another"
        )));
    }
    if op.model_in_body() && model.is_none() {
        return Err(bad(
            "the request names no `model`; till checks every inference request's model against the key's scope",
        ));
    }
    let stream = match map.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("`stream` must be true or false")),
    };
    let include_usage = match map.get("stream_options").map(|o| o.get("include_usage")) {
        None | Some(None | Some(Value::Null)) => false,
        Some(Some(Value::Bool(b))) => *b,
        Some(Some(_)) => return Err(bad("`stream_options.include_usage` must be true or false")),
    };
    let (ceiling, choices) = wire.limits(op, &map).map_err(bad)?;
    wire.check_body(op, &map, path_model).map_err(bad)?;
    Ok(Inspection {
        json: Some(map),
        model,
        ceiling,
        choices,
        stream,
        include_usage,
        verbatim: !repeated,
        skimmed,
        size,
        left_out,
    })
}

/// Refuses field names that another parser could read as one till reads although till does
/// not: the same name in other letter case (Go's `encoding/json` matches names
/// case-insensitively, with Unicode's simple case folding, so the Kelvin sign `K` reads as `k`
/// and the long `ſ` as `s`) or with control characters (a C parser stops at NUL).
fn check_field_names(map: &Map<String, Value>, read: &[&str]) -> Result<(), String> {
    for k in map.keys() {
        // Nearly every name is letters, digits and `_`: one pass over its bytes says so, and
        // the checks for what else a name may hold are for the rest.
        let plain_ascii = k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !plain_ascii && k.chars().any(char::is_control) {
            return Err(format!(
                "the field name {k:?} has a control character; till refuses names other parsers could read differently"
            ));
        }
        // A name with a `-`, a space or an invisible character in it may be read by a lenient
        // parser (or a framework that maps names) as the name without them: `max-tokens`,
        // `"max_tokens "`, `n` with a zero-width space after it.
        if !plain_ascii
            && k.chars()
                .any(|c| c == '-' || c.is_whitespace() || invisible(c))
        {
            let plain: String = k
                .chars()
                .filter(|&c| !(c.is_whitespace() || invisible(c)))
                .map(|c| if c == '-' { '_' } else { c })
                .collect();
            if let Some(f) = read.iter().find(|f| same_name(&plain, f)) {
                return Err(format!(
                    "the field {k:?} differs from `{f}` only by a `-`, a space or an invisible character; till refuses names other parsers could read differently"
                ));
            }
        }
        // Nearly every name is ASCII: compared by length first, then byte by byte.
        let ascii = k.is_ascii();
        if let Some(f) = read.iter().find(|f| {
            if ascii {
                f.eq_ignore_ascii_case(k)
            } else {
                folds_to(k, f)
            }
        }) && *f != k
        {
            return Err(format!(
                "the field `{k}` differs from `{f}` only in letter case; till refuses names other parsers could read differently"
            ));
        }
    }
    Ok(())
}

/// Characters that show nothing: the soft hyphen, joiners and zero-width spaces, direction
/// marks and the byte-order mark.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{034f}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{feff}'
    )
}

/// The longest `model` till takes: a name is kept in the ledger's row and shown in alerts, and
/// no provider's model ids come near it.
const MAX_MODEL_BYTES: usize = 256;

/// Top-level fields that make the provider read or bill more than the body shows, in every
/// family's spelling, whichever family the request is for: [`uncounted_input`] refuses them to
/// keys that count tokens, and the field-name check refuses their look-alikes.
const UNCOUNTED: &[&str] = &[
    "previous_response_id",
    "conversation",
    "cachedContent",
    "cached_content",
    "mcp_servers",
    "container",
    // Billed beside the tokens: OpenRouter's plugins (web search by the result, PDF parsing
    // by the page), chat's web search (by the call), Perplexity's presets (a model with search
    // tools billed by the call, whatever `model` says) and xAI's Live Search (by the source).
    "plugins",
    "web_search_options",
    "preset",
    "search_parameters",
    // Anthropic's compaction: a second sampling pass, reported apart from the usage till reads
    // (`context_management` is read apart: its clearing edits only shorten the input).
    "compaction",
    // Audio output, billed at audio rates.
    "audio",
    // Gemini's resumption of a generation from a checkpoint the provider stored.
    "continuationToken",
    "continuation_token",
];

/// Top-level output ceilings and counts of answers in every spelling till knows: each
/// family's own, and those of OpenAI-compatible servers (llama.cpp's `n_predict`, `n_cmpl` and
/// `t_max_predict_ms`, the `max_new_tokens` of TGI and others, Ollama's `num_predict`, beam
/// search's and Hugging Face's counts), and the objects such servers read them from (Ollama's
/// `options`, TGI's `parameters`, vLLM's `sampling_params` and `vllm_xargs`, and `extra_body`,
/// which a LiteLLM proxy merges over the request), and vLLM's `mm_processor_kwargs`, which
/// sets how many tokens an image becomes. Such a server may read a field that the endpoint's
/// own API does not (vLLM's chat reads `best_of`), and then produce or bill more than till
/// reserved for: [`foreign_limit`] refuses them to bounded keys.
const LIMITS_ANYWHERE: &[&str] = &[
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "max_tokens_to_sample",
    "maxOutputTokens",
    "n",
    "best_of",
    "candidateCount",
    "candidate_count",
    "generationConfig",
    "generation_config",
    "n_predict",
    "n_cmpl",
    "t_max_predict_ms",
    "max_new_tokens",
    "num_predict",
    "maxTokens",
    "maxCompletionTokens",
    "max_length",
    "num_return_sequences",
    "num_beams",
    "beam_width",
    "use_beam_search",
    "options",
    "parameters",
    "sampling_params",
    "vllm_xargs",
    "extra_body",
    "mm_processor_kwargs",
];

/// Fields with which a router runs a model other than the request's `model`: OpenRouter's
/// list of fallback `models`, LiteLLM's `fallbacks` (and the two it tries on particular
/// errors, and the flag that makes it fall back untried), and `extra_body`, which LiteLLM
/// merges over the request (a `model` or `tools` in it replaces the request's). A key may
/// send them only if it allows every model of the provider and counts no tokens.
pub const OTHER_MODELS: &[&str] = &[
    "models",
    "fallbacks",
    "context_window_fallback_dict",
    "content_policy_fallbacks",
    "mock_testing_fallbacks",
    "extra_body",
    // Together's moderation model, run beside the request's and billed too.
    "safety_model",
    // A stored prompt (LiteLLM's, Helicone's), which can set the model and the messages.
    "prompt_id",
    // LiteLLM's routing to the deployments a tag or an id names, whatever their model.
    "tags",
    "deployment_id",
    // Groq's compound systems with models of the client's choosing
    // (`compound_custom.models.answering_model`, `reasoning_model`).
    "compound_custom",
    // OpenRouter's presets (stored settings that choose models, fallbacks and server tools);
    // its plugins are read one by one ([`plugin_running_models`]).
    "preset",
    // Azure's "On Your Data" (both spellings): a search index read into the prompt, its query
    // embedded by another deployment (`embedding_dependency`), the search billed apart.
    "data_sources",
    "dataSources",
    // LiteLLM's metadata (its `tags` route to deployments of other models), its deployment
    // settings (a `model` of their own) and the deployment it is told to use.
    "litellm_metadata",
    "litellm_params",
    "model_list",
    "custom_llm_provider",
    "specific_deployment",
    // A LoRA adapter, a fine-tuned model beside the base `model` (SGLang's `lora_path`,
    // llama.cpp's `lora`), and a Mistral agent (its own model and tools).
    "lora_path",
    "lora",
    "agent_id",
    // Realtime's nested `response` (a model, a ceiling, tools and stored input of its own),
    // which a compatible server may read from a Responses body: till checks the top level.
    "response",
];

/// Fields a gateway in front of the provider reads to choose the account, host or headers of
/// the call it makes (LiteLLM spreads the client's body over its deployment's settings):
/// `organization` picks who pays, `extra_headers`/`headers` add headers till keeps behind,
/// `api_base`/`base_url` send the call (and the key) elsewhere, `user_config` is a whole
/// router of the client's. No provider's own API has them: refused to every key.
pub const GATEWAY_SETTINGS: &[&str] = &[
    "organization",
    "extra_headers",
    "headers",
    "api_base",
    "base_url",
    "api_key",
    "user_config",
];

/// Fields with which a gateway sends a request to the provider again, each attempt billed and
/// one metered (LiteLLM's `num_retries` with a short `timeout`): refused to keys with bounds.
pub const RESENDS: &[&str] = &[
    "num_retries",
    "max_retries",
    "timeout",
    "request_timeout",
    "stream_timeout",
];

/// An OpenRouter plugin that runs a model of its own, or one till does not know (which may):
/// `fusion` (a panel of models and a judge), the PDF parser with an OCR or the model's own
/// engine. Those known to run none pass: `web` (search results, billed by the result: refused
/// to keys that count tokens as uncounted input), `response-healing`, the PDF parser's
/// `pdf-text`.
pub fn plugin_running_models(map: &Map<String, Value>) -> Option<String> {
    let plugins = match map.get("plugins")? {
        Value::Array(items) => items.as_slice(),
        empty if is_empty_value(empty) => return None,
        other => std::slice::from_ref(other),
    };
    plugins
        .iter()
        .filter(|p| !is_empty_value(p))
        .find_map(|plugin| {
            let id = plugin.get("id").and_then(Value::as_str).unwrap_or("");
            let runs_none = match id {
                "web" | "response-healing" => true,
                "file-parser" => plugin
                    .pointer("/pdf/engine")
                    .and_then(Value::as_str)
                    .is_some_and(|engine| engine == "pdf-text"),
                _ => false,
            };
            (!runs_none).then(|| format!("the `{}` plugin", crate::output::printable(id)))
        })
}

/// Whether a field's value asks for nothing: null, or an empty list, object or string (an
/// empty `tags` or `lora` routes nowhere).
pub fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// The first of [`OTHER_MODELS`] the body sets to something (an empty value asks for nothing).
pub fn other_models_field(map: &Map<String, Value>) -> Option<&'static str> {
    first_where(OTHER_MODELS, map, |v| !is_empty_value(v))
}

/// `name` as a lenient server compares names: its ASCII letters and digits, lower-cased.
fn folded(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Whether `name` is `target` (lower-case letters and digits) as [`folded`] reads it, without
/// making the folded copy: this runs on each member of every request's body.
fn loosely(name: &str, target: &str) -> bool {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .eq(target.chars())
}

/// Members of a compatible gateway's `metadata` that choose where the request goes: LiteLLM's
/// tag routing reads `metadata.tags`, its router `metadata.model_group`. (OpenAI's own
/// `metadata` is labels for stored completions: read only for other providers.) Names are
/// compared as a lenient gateway may read them (any letter case, without spaces, `-` or `_`),
/// and a `metadata` sent as a JSON string (which LiteLLM decodes) is read for them too.
pub fn gateway_metadata(map: &Map<String, Value>) -> Option<&'static str> {
    fn routing(members: &Map<String, Value>) -> Option<&'static str> {
        const ROUTING: [(&str, &str); 2] = [
            ("tags", "metadata.tags"),
            ("modelgroup", "metadata.model_group"),
        ];
        members
            .iter()
            .filter(|(_, v)| !is_empty_value(v))
            .find_map(|(name, _)| {
                ROUTING
                    .iter()
                    .find(|(r, _)| loosely(name, r))
                    .map(|(_, f)| *f)
            })
    }
    map.iter()
        .filter(|(name, _)| loosely(name, "metadata"))
        .find_map(|(_, metadata)| match metadata {
            Value::Object(members) => routing(members),
            Value::String(text) => serde_json::from_str::<Map<String, Value>>(text)
                .ok()
                .and_then(|members| routing(&members)),
            _ => None,
        })
}

/// The first of `fields` that the body sets (not null).
pub fn first_set(
    fields: &'static [&'static str],
    map: &Map<String, Value>,
) -> Option<&'static str> {
    first_where(fields, map, |v| !v.is_null())
}

/// The first of `fields` (in the list's order) whose value in the body is `given`.
fn first_where(
    fields: &'static [&'static str],
    map: &Map<String, Value>,
    given: fn(&Value) -> bool,
) -> Option<&'static str> {
    if map.len() < fields.len() {
        // A body has a few members and the lists dozens: each member is compared with the
        // list (a comparison of lengths, mostly), not each name looked up in the map (a
        // string comparison at every step of the tree's search).
        return map
            .iter()
            .filter(|(_, v)| given(v))
            .filter_map(|(k, _)| fields.iter().position(|f| f == k))
            .min()
            .map(|i| fields[i]);
    }
    fields
        .iter()
        .copied()
        .find(|f| map.get(*f).is_some_and(given))
}

/// The first of [`LIMITS_ANYWHERE`] that the body sets (not null) and `op`, an operation that
/// produces output, does not read: till bounds the output by the fields the endpoint reads,
/// so a key with a budget, a token rate or an output cap may not send another.
pub fn foreign_limit(api: ApiFamily, op: Op, map: &Map<String, Value>) -> Option<&'static str> {
    let own = api.wire().limit_fields(op)?;
    LIMITS_ANYWHERE
        .iter()
        .copied()
        .find(|f| !own.contains(f) && map.get(*f).is_some_and(|v| !v.is_null()))
}

/// `name` as a case-folding parser reads it is `field`: ASCII names compared by length and
/// bytes, others folded ([`folds_to`]).
fn same_name(name: &str, field: &str) -> bool {
    if name.is_ascii() {
        name.eq_ignore_ascii_case(field)
    } else {
        folds_to(name, field)
    }
}

/// Whether `name` folds to `field` (ASCII) as Unicode's simple case folding does: ASCII letters
/// in either case, and the only two other characters whose folding is an ASCII letter, the
/// Kelvin sign (U+212A, `k`) and the long s (U+017F, `s`).
fn folds_to(name: &str, field: &str) -> bool {
    let fold = |c: char| match c {
        '\u{212A}' => 'k',
        '\u{17F}' => 's',
        c => c.to_ascii_lowercase(),
    };
    let mut name = name.chars().map(fold);
    let mut field = field.chars().map(|c| c.to_ascii_lowercase());
    loop {
        match (name.next(), field.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// Writes `ceiling` into the body where `op`'s API reads its output ceiling. `openai_proper`
/// says whether the provider is OpenAI itself (which wants `max_completion_tokens`; the
/// OpenAI-compatible providers read `max_tokens`).
pub fn insert_ceiling(op: Op, openai_proper: bool, map: &mut Map<String, Value>, ceiling: u64) {
    if let Some(family) = op.family() {
        family
            .wire()
            .insert_ceiling(op, openai_proper, map, ceiling);
    }
}

/// Whether the body asks for a prompt-cache write that lives longer than the default five
/// minutes (Anthropic's `"cache_control": {"type": "ephemeral", "ttl": "1h"}`, on a system
/// block, a message's content block or a tool), which is billed above a five-minute write.
/// Any `ttl` other than `"5m"` counts, so a spelling the provider reads and till does not
/// can only make the reservation larger.
pub fn asks_long_cache_writes(map: &Map<String, Value>) -> bool {
    fn within(v: &Value) -> bool {
        match v {
            Value::Object(o) => asks_long_cache_writes(o),
            Value::Array(a) => a.iter().any(within),
            _ => false,
        }
    }
    map.iter().any(|(k, v)| {
        (k == "cache_control" && v.get("ttl").is_some_and(|t| t.as_str() != Some("5m")))
            || within(v)
    })
}

/// Whether the body carries a predicted output (chat's `prediction`, in any letter case): the
/// prediction's tokens that the answer does not use are billed as output, beyond the request's
/// output ceiling, so the reservation counts the body's bytes again at the output rate.
pub fn predicts_output(map: &Map<String, Value>) -> bool {
    map.iter()
        .any(|(k, v)| same_name(k, "prediction") && !v.is_null())
}

/// Subagents (the Responses API's `multi_agent`, in any letter case, unless it is exactly
/// `{"enabled": false}`): one request that runs several agents, each its own model calls.
pub fn subagents(map: &Map<String, Value>) -> Option<String> {
    let disabled = |v: &Value| {
        v.as_object()
            .is_some_and(|o| o.len() == 1 && o.get("enabled") == Some(&Value::Bool(false)))
    };
    map.iter()
        .find(|(k, v)| same_name(k, "multi_agent") && !v.is_null() && !disabled(v))
        .map(|(k, _)| format!("`{k}`"))
}

/// A reasoning mode other than the standard one (OpenAI's `reasoning.mode: "pro"`), or
/// subagents (the Responses API's `multi_agent`, unless it is exactly `{"enabled": false}`):
/// the work runs over several passes or agents, each billed, where the request's ceiling
/// bounds one. Names are read in any letter case, as a case-folding parser reads them.
pub fn multi_pass_reasoning(map: &Map<String, Value>) -> Option<String> {
    if let Some(what) = subagents(map) {
        return Some(what);
    }
    let reasoning = map
        .iter()
        .filter(|(k, _)| same_name(k, "reasoning"))
        .filter_map(|(_, v)| v.as_object());
    for r in reasoning {
        for (k, mode) in r {
            if same_name(k, "mode") && !mode.is_null() && mode.as_str() != Some("standard") {
                return Some(format!("`reasoning.mode: {mode}`"));
            }
        }
    }
    None
}

/// The first thing in the body that makes the provider read or produce more than the body
/// shows: input loaded by reference (stored conversations, cached contents, files, URLs it
/// fetches) and server-side tools billed on top of tokens. None of these is counted by till's
/// reservation, so a key with a budget or a token rate is refused such requests.
pub fn uncounted_input(api: ApiFamily, op: Op, map: &Map<String, Value>) -> Option<String> {
    for f in UNCOUNTED {
        if map.get(*f).is_some_and(|v| !v.is_null()) {
            return Some(format!("`{f}`"));
        }
    }
    let wire = api.wire();
    if let Some(what) = wire.stored_input(op, map) {
        return Some(what);
    }
    // A tier above the standard one is billed above the table's price (OpenAI's and
    // Gemini's, whose proto-JSON reads `serviceTier` too); a tier that is not a string is
    // not one till can tell.
    for name in ["service_tier", "serviceTier"] {
        if let Some(tier) = map.get(name).filter(|v| !v.is_null()) {
            let plain = tier.as_str().is_some_and(|t| {
                let t = t.to_ascii_lowercase();
                let t = t.strip_prefix("service_tier_").unwrap_or(&t);
                matches!(t, "auto" | "default" | "flex" | "standard")
            });
            if !plain {
                return Some(format!("`{name}: {tier}`"));
            }
        }
    }
    // Anthropic's data residency (`inference_geo` other than global) is billed at a multiple.
    if let Some(geo) = map.get("inference_geo").filter(|v| !v.is_null())
        && geo.as_str() != Some("global")
    {
        return Some(format!("`inference_geo: {geo}`"));
    }
    // Anthropic's context edits: clearing old tool results or thinking only shortens the
    // input (Claude Code asks for it on every call); any other edit (compaction, a second
    // sampling pass reported apart from the usage till reads) or member is refused.
    if let Some(cm) = map.get("context_management").filter(|v| !v.is_null()) {
        let edits = cm.as_object().and_then(|o| {
            o.keys()
                .all(|k| k == "edits")
                .then(|| o.get("edits").and_then(Value::as_array))
                .flatten()
        });
        let Some(edits) = edits else {
            return Some("`context_management` other than clearing edits".into());
        };
        for e in edits {
            match e.get("type").and_then(Value::as_str) {
                Some(kind) if kind.starts_with("clear_") => {}
                kind => {
                    return Some(format!(
                        "the context edit `{}`",
                        kind.unwrap_or("(no type)")
                    ));
                }
            }
        }
    }
    if let Some(what) = multi_pass_reasoning(map) {
        return Some(what);
    }
    // Anthropic's fast mode is billed at a multiple of the model's price.
    if let Some(speed) = map.get("speed")
        && speed.as_str() != Some("standard")
    {
        return Some(format!("`speed: {speed}`"));
    }
    // Audio and image output is billed at their own rates, which the price table does not
    // hold: OpenAI's `modalities`, Gemini's `responseModalities` and `speechConfig`.
    let only_text = |v: &Value| {
        v.is_null()
            || v.as_array().is_some_and(|a| {
                a.iter()
                    .all(|m| m.as_str().is_some_and(|m| m.eq_ignore_ascii_case("text")))
            })
    };
    if map.get("modalities").is_some_and(|m| !only_text(m)) {
        return Some("output `modalities` other than text".into());
    }
    for config in ["generationConfig", "generation_config"]
        .iter()
        .filter_map(|c| map.get(*c).and_then(Value::as_object))
    {
        for (k, v) in config {
            let modes = same_name(k, "responseModalities") || same_name(k, "response_modalities");
            let speech = same_name(k, "speechConfig") || same_name(k, "speech_config");
            if (modes && !only_text(v)) || (speech && !v.is_null()) {
                return Some(format!("`{k}` (output other than text)"));
            }
        }
    }
    // Gemini's parser takes one object where a list is expected, so a `tools` that is one
    // tool is read as that tool; what is neither is not a list of tools till can read.
    let tools = match map.get("tools") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(tools)) => tools.as_slice(),
        Some(one @ Value::Object(_)) => std::slice::from_ref(one),
        Some(_) => return Some("`tools` that are not a list of tools".into()),
    };
    for t in tools {
        let Some(t) = t.as_object() else {
            return Some("a tool that is not an object".into());
        };
        // A tool's kind is read from its `type`; a look-alike a case-folding parser reads as
        // `type` would pass a server tool as an unnamed one.
        if let Some(k) = t.keys().find(|k| *k != "type" && same_name(k, "type")) {
            return Some(format!("a tool's `{k}`"));
        }
        if let Some(what) = wire.server_tool(t) {
            return Some(what);
        }
    }
    find_reference_in(map, Place::Top)
}

/// Why a model name is refused: a `,` (LiteLLM's proxy runs each of a comma-separated list,
/// every one of them to the ceiling, where till checked and reserved for one), whitespace or a
/// control character (no model has one; a server may trim or split at it), or any character
/// outside ASCII (no provider names a model with one, and an invisible one, a bidirectional
/// mark or a right-to-left letter would reorder the ledger's rows where `till log` and
/// `till usage` print them).
pub fn odd_model_name(name: &str) -> Option<&'static str> {
    if !name.is_ascii() {
        return Some(
            "a model name outside ASCII is refused: no provider names a model so, and such a name can hide or reorder what till prints",
        );
    }
    if name
        .bytes()
        .any(|b| b == b',' || b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Some(
            "a model name with a `,`, whitespace or a control character is refused: a router may read it as several models",
        );
    }
    // A name a gateway puts into a URL (Azure's `deployments/{model}`, a router's route to
    // another cloud) must not climb out of its segment or start a query: a glob in a key's
    // scope (`claude-haiku-*`) would match `claude-haiku-x/../../claude-opus-4-1`, and a
    // server that takes `;` for a segment's parameters reads `..;` as `..`.
    (name
        .bytes()
        .any(|b| matches!(b, b'?' | b'#' | b'%' | b'\\' | b';'))
        || name.split('/').any(|seg| seg.is_empty() || seg == "." || seg == ".."))
    .then_some(
        "a model name with `?`, `#`, `%`, `;`, `\\`, or an empty, `.` or `..` segment between `/`s is refused: a gateway that puts it into a URL would read another path or a query (`..;` is `..` to some servers)",
    )
}

/// Why `model` is no name till takes for a request's model (or a WebSocket event's): longer
/// than [`MAX_MODEL_BYTES`], or [`odd_model_name`].
pub fn model_name_refusal(model: &str) -> Option<String> {
    if model.len() > MAX_MODEL_BYTES {
        return Some(format!(
            "`model` is {} bytes long; till takes model names of at most {MAX_MODEL_BYTES}",
            model.len()
        ));
    }
    odd_model_name(model).map(str::to_string)
}

/// A model that a tool of the request runs beside the request's own.
#[derive(Debug, PartialEq)]
pub enum ToolModel<'a> {
    /// The tool names it.
    Named(&'a str),
    /// The tool runs a model of the provider's choosing: the tool's description.
    Unnamed(String),
}

/// The models the request's tools run beside its own model, which the provider runs and bills
/// as well: Anthropic's advisor names one, the Responses API's `image_generation` names one or
/// runs the provider's default, and a compatible router's tools name one in their
/// `parameters`. A function's `parameters` is its schema, where `model` is a property like any
/// other. A tool's `model` that is not a string, or a name a case-folding parser reads as
/// `model`, is refused (the reason, as `Err`). So is one in a nested `response` object, where a
/// server that reads a Realtime-style `response.create` over the Responses socket finds it.
pub fn tool_models(api: ApiFamily, map: &Map<String, Value>) -> Result<Vec<ToolModel<'_>>, String> {
    // The model named in `place`: a look-alike of `model` (other letter case, a `-`, a space
    // or an invisible character) or a `model` that is not a string is refused.
    fn named_in<'a>(place: &'a Map<String, Value>, what: &str) -> Result<Option<&'a str>, String> {
        check_field_names(place, &["model"]).map_err(|e| format!("{what} with {e}"))?;
        match place.get("model") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(m)) if odd_model_name(m).is_none() => Ok(Some(m)),
            Some(_) => Err(format!("{what} whose `model` is not a model's name")),
        }
    }
    let mut out = Vec::new();
    if let Some(Value::Object(response)) = map.get("response")
        && let Some(m) = named_in(response, "a nested `response`")?
    {
        out.push(ToolModel::Named(m));
    }
    let tools = match map.get("tools") {
        Some(Value::Array(tools)) => tools.as_slice(),
        Some(one @ Value::Object(_)) => std::slice::from_ref(one),
        _ => return Ok(out),
    };
    for tool in tools.iter().filter_map(Value::as_object) {
        // Its `type` as a case-folding parser reads it (a `Type` a server reads as `type`);
        // of two spellings, the one that is not a function's (whose `parameters` is a schema).
        let kinds: Vec<&str> = named(tool, "type").filter_map(Value::as_str).collect();
        let kind = kinds
            .iter()
            .copied()
            .find(|k| *k != "function")
            .or(kinds.first().copied())
            .unwrap_or("");
        let params = (kind != "function")
            .then(|| tool.get("parameters").and_then(Value::as_object))
            .flatten();
        let openrouter = kind
            .get(..11)
            .is_some_and(|p| p.eq_ignore_ascii_case("openrouter:"));
        let mut named = false;
        for place in std::iter::once(tool).chain(params) {
            if let Some(m) = named_in(place, "a tool")? {
                out.push(ToolModel::Named(m));
                // OpenRouter reads a server tool's model from its `parameters` only.
                named |= !openrouter || !std::ptr::eq(place, tool);
            }
        }
        // Anywhere else in a server tool (one of the provider's, with a `type` that is not a
        // function's or a custom tool's: their schemas and examples are the client's): its
        // advisor profiles (`advisors[].model`), its fusion panel (`analysis_models`), any
        // `…_model`.
        let server_tool = !matches!(kind, "" | "function" | "custom");
        if server_tool {
            models_within(tool, &mut out);
        }
        // OpenRouter's fusion runs a default panel of models unless `analysis_models` names
        // them; its `model` is only the judge.
        if openrouter
            && kind.eq_ignore_ascii_case("openrouter:fusion")
            && !params.is_some_and(|p| {
                p.iter()
                    .any(|(k, v)| loosely(k, "analysismodels") && !is_empty_value(v))
            })
        {
            named = false;
        }
        if !named && runs_a_model_of_its_choosing(api, kind) {
            out.push(ToolModel::Unnamed(format!(
                "the `{}` tool",
                crate::output::printable(kind)
            )));
        }
    }
    Ok(out)
}

/// Server tools that run a model the request leaves to the provider unless the tool's own
/// `model` fixes it: the Responses API's image generation, and every OpenRouter server tool
/// but those that run none (its advisor lets the calling model pick any model on each call,
/// its fusion runs a default panel and judge, its image generation a default model).
fn runs_a_model_of_its_choosing(api: ApiFamily, kind: &str) -> bool {
    const OPENROUTER_WITHOUT_MODELS: &[&str] = &[
        "openrouter:web_search",
        "openrouter:web_fetch",
        "openrouter:datetime",
    ];
    (api == ApiFamily::Openai && kind == "image_generation")
        || (kind
            .get(..11)
            .is_some_and(|p| p.eq_ignore_ascii_case("openrouter:"))
            && !OPENROUTER_WITHOUT_MODELS
                .iter()
                .any(|k| k.eq_ignore_ascii_case(kind)))
}

/// The models a server tool names, at any depth: a string under a name that ends in `model`,
/// `model_id` or `model_name`, and the strings (or the one string) under a name that ends in
/// `models` or `model_ids`, compared as a lenient server reads names (any letter case,
/// without `_` or `-`: `analysisModels`, `judge-model`). OpenRouter's advisor profiles
/// (`advisors[].model`) and fusion panel (`analysis_models`) are such names. A function's
/// schema is never read here: its `model` would be a property's schema, an object. Under
/// such a name, a value that is not a name (a number, `true`, an object under a `…model`) is
/// a model the tool does not name.
fn models_within<'a>(settings: &'a Map<String, Value>, out: &mut Vec<ToolModel<'a>>) {
    // A model given by something other than its name (a number, a flag, null, an object
    // under a `…model` name, an object in a `…models` list that names none) is one till
    // cannot compare with the scope: the provider's choice.
    let unnamed = |name: &str| {
        ToolModel::Unnamed(format!(
            "a tool whose `{}` is not a model's name",
            crate::output::printable(name)
        ))
    };
    for (name, value) in settings {
        let folded = folded(name);
        let one = ["model", "modelid", "modelname"]
            .iter()
            .any(|end| folded.ends_with(end));
        let many = ["models", "modelids"]
            .iter()
            .any(|end| folded.ends_with(end));
        match value {
            Value::String(m) if one || many => out.push(ToolModel::Named(m)),
            Value::Array(items) => {
                for item in items {
                    match item {
                        Value::String(m) if one || many => out.push(ToolModel::Named(m)),
                        // A panel's entry as an object (`{"id": …}`) names its model only by
                        // a `…model` member of its own.
                        Value::Object(o) if one || many => {
                            let before = out.len();
                            models_within(o, out);
                            if out.len() == before {
                                out.push(unnamed(name));
                            }
                        }
                        Value::Object(o) => models_within(o, out),
                        _ if one || many => out.push(unnamed(name)),
                        _ => {}
                    }
                }
            }
            Value::Object(_) if one => out.push(unnamed(name)),
            Value::Object(o) => models_within(o, out),
            _ if one || many => out.push(unnamed(name)),
            _ => {}
        }
    }
}

/// Where in the body an object is: the top, inside the conversation (`messages`, `input`), or
/// elsewhere (tools, schemas, settings).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Top,
    Conversation,
    Elsewhere,
}

/// Fetched, audio or video content named by a part's key, whatever its `type`: the keys vLLM
/// reads a part's kind from when `type` is missing (or beside a `uuid`), and Mistral's
/// `document_url`. Looked for in the conversation only, where parts are: a tool's schema may
/// name a property so. None of the names holds a letter whose look-alike folds to it, so an
/// ASCII comparison is the case-folding one.
const PART_KEYS: &[&str] = &[
    "video_url",
    "audio_url",
    "document_url",
    "input_audio",
    "input_video",
    "video",
];

/// Whether `model` names an OpenRouter preset (`@preset/slug`, or `model@preset/slug`): stored
/// settings that choose the models, fallbacks and server tools the request runs, whatever the
/// name before them says.
pub fn names_a_preset(model: &str) -> bool {
    const AT: &[u8] = b"@preset/";
    model.contains('@')
        && model
            .as_bytes()
            .windows(AT.len())
            .any(|w| w.eq_ignore_ascii_case(AT))
}

/// Models that bill each call beside its tokens, by their names: OpenAI's search models (a web
/// search on every request: `gpt-4o-search-preview`, `gpt-5-search-api`) and deep research
/// ones, Perplexity's `sonar` models (a fee a request), Groq's `compound` systems (their tools
/// by the use) and OpenRouter's `:online` variants (web results by the result). till's prices
/// are per token, so a key with a budget or a token rate may not call them.
pub fn billed_per_call(model: &str) -> Option<&'static str> {
    let m = model.to_ascii_lowercase();
    let named = |part: &str| m.contains(part);
    if named("search-preview") || named("search-api") {
        Some("a search model (a web search billed on every call)")
    } else if named("deep-research") {
        Some("a deep research model (its searches billed by the call)")
    } else if named("sonar") {
        Some("a Perplexity `sonar` model (a fee on every request)")
    } else if named("compound") {
        Some("a compound model (its built-in tools billed by the use)")
    } else if named("lyria") {
        Some("a Lyria music model (billed by the clip or song, not in tokens)")
    } else if m
        .split(':')
        .skip(1)
        .any(|variant| variant.split('@').next() == Some("online"))
    {
        Some("an `:online` model (web results billed by the result)")
    } else {
        None
    }
}

/// Whether inline data of MIME type `t` is content till counts: images, text, PDF and JSON,
/// read as a lenient server reads the type (surrounding whitespace, any letter case). Anything
/// else (audio, video, `application/ogg`, a type till does not know) may be billed at another
/// rate.
fn counted_inline(t: &str) -> bool {
    let t = t.trim().to_ascii_lowercase();
    t.starts_with("image/")
        || t.starts_with("text/")
        || t == "application/pdf"
        || t == "application/json"
}

/// The values of `o`'s members named `field` as a case-folding parser reads names.
fn named<'a>(o: &'a Map<String, Value>, field: &'a str) -> impl Iterator<Item = &'a Value> {
    o.iter()
        .filter(move |(k, _)| same_name(k, field))
        .map(|(_, v)| v)
}

/// Whether `o` sets `field` in every spelling it has of it (a parser may read any one of
/// them): one that is null, or missing, leaves what it holds to the provider's storage.
fn all_set(o: &Map<String, Value>, field: &str) -> bool {
    let mut values = named(o, field).peekable();
    values.peek().is_some() && values.all(|v| !v.is_null())
}

/// Keys that name content the provider loads by reference, anywhere in an object. Names are
/// matched as a case-folding parser matches them (`File_Id` is `file_id` to Go's
/// `encoding/json`); refusing a look-alike of one only refuses more.
fn find_reference_in(o: &Map<String, Value>, place: Place) -> Option<String> {
    const KEYS: &[&str] = &[
        "file_id",
        "fileData",
        "file_data",
        "file_url",
        "fileUri",
        "file_uri",
    ];
    for (k, child) in o {
        if KEYS.iter().any(|r| same_name(k, r)) && !child.is_null() {
            return Some(format!("`{k}`"));
        }
        if place == Place::Conversation
            && PART_KEYS.iter().any(|n| k.eq_ignore_ascii_case(n))
            && !child.is_null()
        {
            return Some(format!(
                "a part's `{k}` (content fetched or billed by the provider)"
            ));
        }
        // Anthropic document and image sources fetched by URL or stored as files.
        if same_name(k, "source")
            && let Some(kind) = child.as_object().and_then(|s| {
                s.iter()
                    .find(|(n, _)| same_name(n, "type"))
                    .and_then(|(_, v)| v.as_str())
            })
            && matches!(kind, "url" | "file")
        {
            return Some(format!("a `{kind}` source"));
        }
        // A Responses input item that stands for a stored one by its id: an `item_reference`,
        // or a reasoning item without its encrypted content (the stored reasoning is read).
        if same_name(k, "type") && child.as_str() == Some("item_reference") {
            return Some("an `item_reference`".into());
        }
        if same_name(k, "type")
            && child.as_str() == Some("reasoning")
            && named(o, "id").next().is_some()
            && !all_set(o, "encrypted_content")
        {
            return Some("a stored `reasoning` item".into());
        }
        // A tool call passed back by its id without what it made: the provider reads the
        // stored image (thousands of input tokens, for multi-turn image edits) or search
        // results as input the body does not hold.
        if same_name(k, "type")
            && let Some((kind, made)) = match child.as_str() {
                Some("image_generation_call") => Some(("image_generation_call", "result")),
                Some("file_search_call") => Some(("file_search_call", "results")),
                _ => None,
            }
            && named(o, "id").next().is_some()
            && !all_set(o, made)
        {
            return Some(format!("a stored `{kind}` (read by its id)"));
        }
        // Audio input is billed at audio rates, which the price table does not hold (a
        // `gpt-4o-audio` model's is 16 times its text rate, Gemini's 3 times), and its tokens
        // follow its length, not its bytes (video too: an hour of one still frame is a few KB):
        // chat's `input_audio` parts, and Gemini's inline data of an audio or video type.
        if same_name(k, "type")
            && child
                .as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case("input_audio"))
        {
            return Some("audio input (an `input_audio` part)".into());
        }
        // Parts OpenAI-compatible servers fetch by URL and bill by what they find there:
        // Mistral's `document_url` (the document read and billed as its text, up to the
        // context), the `video_url` and `audio_url` of vLLM and Together (frames and seconds
        // billed as tokens). Any `…_url` part but `image_url`, whose tokens are bounded by
        // the image, and video parts.
        if same_name(k, "type")
            && let Some(kind) = child.as_str()
        {
            let t = kind.to_ascii_lowercase();
            if (t.ends_with("_url") && t != "image_url") || t == "video" || t == "input_video" {
                return Some(format!(
                    "a `{kind}` part (content fetched and billed by the provider)"
                ));
            }
        }
        if (same_name(k, "inlineData") || same_name(k, "inline_data"))
            && let Some(data) = child.as_object()
            && let Some(kind) = data
                .iter()
                .filter(|(n, _)| same_name(n, "mimeType") || same_name(n, "mime_type"))
                .map(|(_, t)| t.as_str().unwrap_or(""))
                .find(|t| !counted_inline(t))
        {
            return Some(format!(
                "inline `{}` data (only images, text, PDF and JSON are counted; audio and video are billed at other rates)",
                crate::output::printable(kind)
            ));
        }
        // An earlier audio answer named by its id (chat's `audio: {"id": …}`).
        if same_name(k, "audio")
            && child
                .as_object()
                .is_some_and(|audio| named(audio, "id").any(|id| !id.is_null()))
        {
            return Some("a stored `audio` answer".into());
        }
        let inner = match place {
            Place::Top if k == "messages" || k == "input" => Place::Conversation,
            Place::Top => Place::Elsewhere,
            other => other,
        };
        if let Some(found) = find_reference(child, inner) {
            return Some(found);
        }
    }
    None
}

fn find_reference(v: &Value, place: Place) -> Option<String> {
    // serde_json refuses input nested deeper than 128 levels, so this recursion is bounded.
    match v {
        Value::Object(o) => find_reference_in(o, place),
        Value::Array(a) => a.iter().find_map(|v| find_reference(v, place)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_a_lenient_parser_reads_as_a_read_one_are_refused() {
        let check = |name: &str| {
            let mut map = Map::new();
            map.insert(name.to_string(), Value::from(1));
            check_field_names(&map, &["max_tokens", "n"])
        };
        for odd in [
            "max-tokens",
            "max_tokens ",
            " n",
            "n\u{200b}",
            "\u{feff}n",
            "MAX-TOKENS",
        ] {
            assert!(check(odd).is_err(), "{odd:?}");
        }
        for fine in ["max_tokens", "n", "max-output", "messages"] {
            assert!(check(fine).is_ok(), "{fine:?}");
        }
    }

    #[test]
    fn one_hour_cache_writes_are_found_wherever_anthropic_reads_them() {
        let asks = |v: serde_json::Value| asks_long_cache_writes(v.as_object().unwrap());
        let cc = |ttl: serde_json::Value| serde_json::json!({"type": "ephemeral", "ttl": ttl});
        assert!(!asks(
            serde_json::json!({"model": "m", "system": [{"type": "text", "text": "s",
            "cache_control": {"type": "ephemeral"}}]})
        ));
        assert!(!asks(
            serde_json::json!({"system": [{"cache_control": cc("5m".into())}]})
        ));
        assert!(asks(
            serde_json::json!({"system": [{"cache_control": cc("1h".into())}]})
        ));
        assert!(asks(
            serde_json::json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "x", "cache_control": cc("1h".into())}]}]})
        ));
        assert!(asks(
            serde_json::json!({"tools": [{"name": "t", "cache_control": cc(3600.into())}]})
        ));
        assert!(asks(serde_json::json!({"cache_control": cc("60m".into())})));
        // A `ttl` that is not in a cache_control is just data.
        assert!(!asks(
            serde_json::json!({"messages": [{"content": "ttl 1h", "ttl": "1h"}]})
        ));
    }

    /// `body` inspected for `op`; Gemini's paths name the model `m`, the others none.
    fn i(api: ApiFamily, op: Op, body: &str) -> Result<Inspection, ProxyError> {
        let path_model = (api == ApiFamily::Gemini).then_some("m");
        inspect(op, path_model, Some("application/json"), body.as_bytes())
    }

    #[test]
    fn leading_whitespace_and_duplicate_keys_are_one_parse() {
        let x = i(
            ApiFamily::Openai,
            Op::OpenaiChat,
            " \n{\"model\":\"gpt-4o-mini\",\"model\":\"gpt-4o\"}",
        )
        .unwrap();
        // serde_json keeps the last; the forwarded body is this parse, so the upstream sees
        // the same model.
        assert_eq!(x.model.as_deref(), Some("gpt-4o"));
        assert_eq!(
            serde_json::to_string(&x.json.unwrap()).unwrap(),
            "{\"model\":\"gpt-4o\"}"
        );
    }

    /// Found by the `request` fuzz target: without exact float parsing, a large number came
    /// back one unit in the last place off, so the forwarded body said something else.
    #[test]
    fn numbers_are_forwarded_as_sent() {
        let body =
            "{\"model\":\"x\",\"t\":955555555555555555555555555555555555,\"temperature\":0.7}";
        let x = i(ApiFamily::Openai, Op::OpenaiResponses, body).unwrap();
        let forwarded = serde_json::to_vec(x.json.as_ref().unwrap()).unwrap();
        let again = inspect(Op::OpenaiResponses, None, None, &forwarded).unwrap();
        assert_eq!(again, x);
        assert!(
            String::from_utf8(forwarded)
                .unwrap()
                .contains("\"temperature\":0.7")
        );
    }

    use proptest::prelude::{Just, Strategy as _, any};

    proptest::proptest! {
        /// Any body: no panic, and a body till accepts reads back, re-serialised, as the same
        /// decision.
        #[test]
        fn forwarded_bodies_read_back_the_same(
            body in proptest::prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..64),
                proptest::string::string_regex("[ {}\\[\\]\":,0-9a-z_]{0,80}").unwrap().prop_map(String::into_bytes),
                Just(b"{\"model\":\"m\",\"max_tokens\":3,\"n\":2}".to_vec()),
            ],
            op in proptest::sample::select(vec![Op::OpenaiChat, Op::OpenaiCompletions, Op::OpenaiResponses, Op::AnthropicMessages, Op::GeminiGenerate]),
        ) {
            if let Ok(first) = inspect(op, Some("m"), None, &body) {
                let forwarded = serde_json::to_vec(first.json.as_ref().unwrap()).unwrap();
                proptest::prop_assert_eq!(inspect(op, Some("m"), None, &forwarded).unwrap(), first);
            }
        }
    }

    fn arb_body() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let long = "[a\"\\\\\n\u{e9}]{250,300}";
        let name = prop_oneof![
            proptest::sample::select(FREE_TEXT.to_vec()).prop_map(String::from),
            proptest::sample::select(vec![
                "type",
                "ttl",
                "cache_control",
                "source",
                "tools",
                "messages",
                "file_id",
                "fileData",
                "conversation",
            ])
            .prop_map(String::from),
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (0u64..100_000).prop_map(Value::from),
            proptest::sample::select(vec![
                "m",
                "url",
                "file",
                "5m",
                "1h",
                "auto",
                "function",
                "web_search",
                "priority"
            ])
            .prop_map(Value::from),
            long.prop_map(Value::String),
        ];
        let tree = leaf.prop_recursive(4, 40, 5, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec((name.clone(), inner), 0..5)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        });
        // Fields whose values the checks refuse when malformed are left out, so that most
        // bodies are accepted and their decisions compared.
        tree.prop_map(|v| {
            let mut map = match v {
                Value::Object(map) => map,
                other => [("messages".to_string(), other)].into_iter().collect(),
            };
            map.insert("model".into(), "m".into());
            Value::Object(map)
        })
    }

    static ACCEPTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

    #[test]
    fn skimming_changes_no_decision_on_mostly_accepted_bodies() {
        let long = "web_search".repeat(30);
        let cases = [
            serde_json::json!({"model": "m", "tools": [{"type": long}]}),
            serde_json::json!({"model": "m", "tools": [{"type": "function", "description": long}],
                "messages": [{"content": [{"type": "text", "text": long,
                "cache_control": {"type": "ephemeral", "ttl": long}}]}]}),
            serde_json::json!({"model": "m", "messages": [{"content": [{"type": "document",
                "source": {"type": "url", "data": long}}]}], "input": long}),
        ];
        for body in cases {
            let bytes = serde_json::to_vec(&body).unwrap();
            let skim = inspect(Op::OpenaiResponses, None, None, &bytes).unwrap();
            let mut whole = inspect_with(
                Op::OpenaiResponses,
                None,
                None,
                Ok(std::str::from_utf8(&bytes).unwrap()),
                &[],
                usize::MAX,
            )
            .unwrap();
            let (wj, sj) = (whole.json.take().unwrap(), skim.json.unwrap());
            assert_eq!(asks_long_cache_writes(&sj), asks_long_cache_writes(&wj));
            for api in ApiFamily::ALL {
                assert_eq!(
                    uncounted_input(api, Op::OpenaiResponses, &sj),
                    uncounted_input(api, Op::OpenaiResponses, &wj),
                    "{body}"
                );
            }
        }
        skimming_changes_no_decision();
        // The generator makes bodies the checks accept, or the comparison above says little.
        assert!(ACCEPTED.load(std::sync::atomic::Ordering::Relaxed) > 500);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

        /// Leaving long free text out of the parse changes no decision: the same inspection,
        /// the same uncounted input, the same long cache writes, for every family.
        #[test]
        fn skimming_changes_no_decision(
            body in arb_body(),
            op in proptest::sample::select(vec![Op::OpenaiChat, Op::OpenaiCompletions,
                Op::OpenaiResponses, Op::OpenaiEmbeddings, Op::AnthropicMessages,
                Op::GeminiGenerate]),
        ) {
            let bytes = serde_json::to_vec(&body).unwrap();
            let whole = inspect_with(
                op,
                Some("m"),
                None,
                Ok(std::str::from_utf8(&bytes).unwrap()),
                &[],
                usize::MAX,
            );
            let skim = inspect(op, Some("m"), None, &bytes);
            match (whole, skim) {
                (Ok(mut whole), Ok(skim)) => {
                    ACCEPTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let (wj, sj) = (whole.json.take().unwrap(), skim.json.clone().unwrap());
                    // The skim's tree is smaller by the strings it left out.
                    proptest::prop_assert!(skim.size <= whole.size);
                    proptest::prop_assert_eq!(&Inspection { json: None, skimmed: whole.skimmed, size: whole.size, left_out: whole.left_out, ..skim.clone() }, &whole);
                    proptest::prop_assert!(!whole.skimmed);
                    proptest::prop_assert_eq!(asks_long_cache_writes(&sj), asks_long_cache_writes(&wj));
                    for api in ApiFamily::ALL {
                        proptest::prop_assert_eq!(uncounted_input(api, op, &sj), uncounted_input(api, op, &wj));
                    }
                    proptest::prop_assert_eq!(parse_whole(&bytes).unwrap(), wj);
                }
                (Err(w), Err(s)) => proptest::prop_assert_eq!(format!("{w:?}"), format!("{s:?}")),
                (w, s) => proptest::prop_assert!(false, "whole {:?} but skim {:?}", w.is_ok(), s.is_ok()),
            }
        }
    }

    #[test]
    fn bodies_till_cannot_check_are_refused() {
        for body in [
            "",
            "not json",
            "[{\"model\":\"gpt-4o\"}]",
            "{\"model\":1}",
            "{\"model\":\"\"}",
            "{}",
            "{\"messages\":[]}",
            "{\"model\":\"m\",\"max_tokens\":-1}",
            // A ceiling of 0 is unset to Gemini's API: its default ceiling, not none.
            "{\"model\":\"m\",\"max_tokens\":0}",
            "{\"model\":\"m\",\"max_completion_tokens\":0}",
            "{\"model\":\"m\",\"max_tokens\":1.5}",
            "{\"model\":\"m\",\"max_tokens\":\"100\"}",
            "{\"model\":\"m\",\"n\":0}",
            "{\"model\":\"m\",\"n\":1000}",
            "{\"model\":\"m\",\"stream\":\"yes\"}",
            "{\"model\":\"m\"} trailing",
            "{\"model\":\"\\ud800\"}",
            "{\"Model\":\"gpt-4o\",\"model\":\"m\"}",
            "{\"model\\u0000\":\"gpt-4o\",\"model\":\"m\"}",
            "{\"MAX_TOKENS\":9999,\"model\":\"m\"}",
            // Go's encoding/json folds the Kelvin sign to `k` and the long s to `s`.
            "{\"max_tokens\":5,\"max_to\\u212aens\":9999,\"model\":\"m\"}",
            "{\"max_tokens\":5,\"max_to\u{212a}ens\":9999,\"model\":\"m\"}",
            "{\"model\":\"m\",\"\\u017ftream\":true}",
            "{\"model\":\"m\",\"\u{17f}tream\":true}",
        ] {
            assert!(
                i(ApiFamily::Openai, Op::OpenaiChat, body).is_err(),
                "{body:?} was accepted"
            );
        }
    }

    #[test]
    fn ceilings_take_the_largest_field_and_choices_multiply() {
        let x = i(
            ApiFamily::Openai,
            Op::OpenaiChat,
            "{\"model\":\"m\",\"max_tokens\":10,\"max_completion_tokens\":500,\"n\":3}",
        )
        .unwrap();
        assert_eq!((x.ceiling, x.choices), (Some(500), 3));
        let x = i(
            ApiFamily::Openai,
            Op::OpenaiCompletions,
            "{\"model\":\"m\",\"max_tokens\":10,\"n\":2,\"best_of\":5}",
        )
        .unwrap();
        assert_eq!((x.ceiling, x.choices), (Some(10), 5));
        // Each prompt of a list gets its own completions; one list of token ids is one prompt.
        for (prompt, choices) in [
            ("[\"a\",\"b\",\"c\"]", 6),
            ("[[1,2],[3]]", 4),
            ("[1,2,3]", 2),
            ("\"a\"", 2),
        ] {
            let x = i(
                ApiFamily::Openai,
                Op::OpenaiCompletions,
                &format!("{{\"model\":\"m\",\"max_tokens\":10,\"n\":2,\"prompt\":{prompt}}}"),
            )
            .unwrap();
            assert_eq!(x.choices, choices, "{prompt}");
        }
        let x = i(
            ApiFamily::Gemini,
            Op::GeminiGenerate,
            "{\"generationConfig\":{\"maxOutputTokens\":5,\"max_output_tokens\":900,\"candidate_count\":4}}",
        )
        .unwrap();
        assert_eq!((x.ceiling, x.choices), (Some(900), 4));
        // Both spellings of the config at once: the provider keeps one, till cannot tell which.
        assert!(
            i(
                ApiFamily::Gemini,
                Op::GeminiGenerate,
                "{\"generationConfig\":{\"maxOutputTokens\":5},\"generation_config\":{\"maxOutputTokens\":70}}",
            )
            .is_err()
        );
        assert!(
            i(
                ApiFamily::Gemini,
                Op::GeminiGenerate,
                "{\"generationConfig\":{\"maxOutputTokens\":0}}",
            )
            .is_err()
        );
        let x = i(ApiFamily::Openai, Op::OpenaiEmbeddings, "{\"model\":\"e\"}").unwrap();
        // No output tokens: nothing for a ceiling to bound.
        assert_eq!(x.ceiling, Some(0));
    }

    #[test]
    fn inserted_ceilings_land_where_each_api_reads_them() {
        let cases: &[(Op, bool, &str, &str)] = &[
            (Op::OpenaiChat, true, "{}", "{\"max_completion_tokens\":7}"),
            (Op::OpenaiChat, false, "{}", "{\"max_tokens\":7}"),
            // A ceiling named already is written over where it is, with none added beside it
            // for OpenAI itself (which refuses both); a compatible server gets `max_tokens`.
            (
                Op::OpenaiChat,
                true,
                "{\"max_tokens\":64000}",
                "{\"max_tokens\":7}",
            ),
            (
                Op::OpenaiChat,
                false,
                "{\"max_completion_tokens\":64000}",
                "{\"max_completion_tokens\":7,\"max_tokens\":7}",
            ),
            (
                Op::OpenaiChat,
                true,
                "{\"max_completion_tokens\":64000,\"max_tokens\":null}",
                "{\"max_completion_tokens\":7,\"max_tokens\":null}",
            ),
            (Op::OpenaiCompletions, true, "{}", "{\"max_tokens\":7}"),
            (Op::OpenaiResponses, true, "{}", "{\"max_output_tokens\":7}"),
            (Op::AnthropicMessages, true, "{}", "{\"max_tokens\":7}"),
            (
                Op::GeminiGenerate,
                true,
                "{}",
                "{\"generationConfig\":{\"maxOutputTokens\":7}}",
            ),
            (
                Op::GeminiGenerate,
                true,
                "{\"generation_config\":{\"temperature\":1}}",
                "{\"generation_config\":{\"maxOutputTokens\":7,\"temperature\":1}}",
            ),
        ];
        for (op, proper, body, want) in cases {
            let mut map: Map<String, Value> = serde_json::from_str(body).unwrap();
            insert_ceiling(*op, *proper, &mut map, 7);
            assert_eq!(&serde_json::to_string(&map).unwrap(), want, "{op:?}");
        }
    }

    #[test]
    fn model_names_that_could_list_models_are_odd() {
        for odd in [
            "a,b",
            "a b",
            "a\tb",
            "a\u{7f}",
            "a\u{a0}b",
            "a\u{3000}b",
            "a\u{85}",
            "mod\u{e8}le",
            "gpt-4o\u{200f}",
            "\u{5d0}\u{5d1}",
            "claude-haiku-4-5/../../claude-opus-4-1",
            "claude-haiku-x?model=claude-opus-4-1",
            "claude-haiku-%2e%2e",
            "claude-haiku-x#",
            "gpt-4o-mini/..;/..;/gpt-4o",
            "a/.;/b",
            "claude-haiku-\\..\\opus",
            "a//b",
            "/a",
            "a/",
            "..",
            "./a",
        ] {
            assert!(odd_model_name(odd).is_some(), "{odd:?}");
        }
        for fine in [
            "gpt-4o-mini",
            "models/gemini-2.5-flash",
            "llama3:8b",
            "meta-llama/Llama-3.1-8B-Instruct",
            "claude-3-5-sonnet@20240620",
            "gpt-3.5-turbo",
            "arn:aws:bedrock:us-east-1:1:inference-profile/us.anthropic.claude-3-haiku",
        ] {
            assert!(odd_model_name(fine).is_none(), "{fine:?}");
        }
    }

    /// Both ways of looking (members against the list, the list in the map) find the same
    /// field: the first of the list's order that is set and not null.
    #[test]
    fn first_set_is_the_lists_first_either_way() {
        let lists: [&'static [&'static str]; 3] = [OTHER_MODELS, RESENDS, &["b", "a"]];
        for body in [
            "{}",
            "{\"model\":\"m\"}",
            "{\"a\":1,\"b\":2}",
            "{\"a\":null,\"b\":2}",
            "{\"timeout\":1,\"num_retries\":2,\"stream_timeout\":null}",
            "{\"lora\":[],\"models\":[\"x\"],\"preset\":\"p\",\"model\":\"m\"}",
        ] {
            let map: Map<String, Value> = serde_json::from_str(body).unwrap();
            for fields in lists {
                let slow = fields
                    .iter()
                    .copied()
                    .find(|f| map.get(*f).is_some_and(|v| !v.is_null()));
                assert_eq!(first_set(fields, &map), slow, "{body} in {fields:?}");
            }
        }
        assert_eq!(
            first_set(
                &["b", "a"],
                &serde_json::from_str("{\"a\":1,\"b\":2}").unwrap()
            ),
            Some("b")
        );
    }

    #[test]
    fn references_and_server_tools_are_found() {
        let found = |api, op, body: &str| {
            let map: Map<String, Value> = serde_json::from_str(body).unwrap();
            uncounted_input(api, op, &map)
        };
        assert!(
            found(
                ApiFamily::Openai,
                Op::OpenaiResponses,
                "{\"previous_response_id\":\"r\"}"
            )
            .is_some()
        );
        assert!(
            found(
                ApiFamily::Openai,
                Op::OpenaiResponses,
                "{\"prompt\":{\"id\":\"p\"}}"
            )
            .is_some()
        );
        assert!(
            found(
                ApiFamily::Openai,
                Op::OpenaiResponses,
                "{\"input\":[{\"role\":\"user\",\"content\":\"hi\"},{\"type\":\"item_reference\",\"id\":\"msg_1\"}]}"
            )
            .is_some()
        );
        assert!(
            found(
                ApiFamily::Openai,
                Op::OpenaiCompletions,
                "{\"prompt\":\"text\"}"
            )
            .is_none()
        );
        assert!(
            found(
                ApiFamily::Openai,
                Op::OpenaiChat,
                "{\"messages\":[{\"content\":[{\"type\":\"file\",\"file\":{\"file_id\":\"f\"}}]}]}"
            )
            .is_some()
        );
        assert!(
            found(
                ApiFamily::Openai,
                Op::OpenaiResponses,
                "{\"tools\":[{\"type\":\"web_search\"}]}"
            )
            .is_some()
        );
        assert!(
            found(
                ApiFamily::Openai,
                Op::OpenaiResponses,
                "{\"tools\":[{\"type\":\"function\",\"name\":\"f\"}]}"
            )
            .is_none()
        );
        assert!(
            found(
                ApiFamily::Openai,
                Op::OpenaiChat,
                "{\"service_tier\":\"priority\"}"
            )
            .is_some()
        );
        assert!(found(ApiFamily::Anthropic, Op::AnthropicMessages, "{\"messages\":[{\"content\":[{\"type\":\"document\",\"source\":{\"type\":\"url\",\"url\":\"u\"}}]}]}").is_some());
        assert!(
            found(
                ApiFamily::Anthropic,
                Op::AnthropicMessages,
                "{\"tools\":[{\"type\":\"web_search_20250305\"}]}"
            )
            .is_some()
        );
        assert!(
            found(
                ApiFamily::Anthropic,
                Op::AnthropicMessages,
                "{\"tools\":[{\"name\":\"t\",\"input_schema\":{}}]}"
            )
            .is_none()
        );
        // Anthropic's tools run on its side unless they are the client's own.
        for (tool, server) in [
            (
                "{\"type\":\"custom\",\"name\":\"t\",\"input_schema\":{}}",
                false,
            ),
            ("{\"type\":\"bash_20250124\",\"name\":\"bash\"}", false),
            ("{\"type\":\"text_editor_20250728\",\"name\":\"e\"}", false),
            ("{\"type\":\"memory_20250818\",\"name\":\"memory\"}", false),
            (
                "{\"type\":\"advisor_20260301\",\"name\":\"advisor\",\"model\":\"m\"}",
                true,
            ),
            (
                "{\"type\":\"tool_search_tool_regex_20251119\",\"name\":\"s\"}",
                true,
            ),
            ("{\"type\":7,\"name\":\"t\"}", true),
        ] {
            let body = format!("{{\"tools\":[{tool}]}}");
            assert_eq!(
                found(ApiFamily::Anthropic, Op::AnthropicMessages, &body).is_some(),
                server,
                "{tool}"
            );
        }
        assert!(
            found(
                ApiFamily::Gemini,
                Op::GeminiGenerate,
                "{\"cachedContent\":\"c\"}"
            )
            .is_some()
        );
        assert!(
            found(
                ApiFamily::Gemini,
                Op::GeminiGenerate,
                "{\"tools\":[{\"googleSearch\":{}}]}"
            )
            .is_some()
        );
        assert!(
            found(
                ApiFamily::Gemini,
                Op::GeminiGenerate,
                "{\"contents\":[{\"parts\":[{\"fileData\":{\"fileUri\":\"u\"}}]}]}"
            )
            .is_some()
        );
        assert!(
            found(
                ApiFamily::Gemini,
                Op::GeminiGenerate,
                "{\"contents\":[{\"parts\":[{\"text\":\"hi\"}]}]}"
            )
            .is_none()
        );
    }

    #[test]
    fn audio_and_video_input_is_refused_to_keys_that_count() {
        let refused = |api, op, body: &str| {
            let map: Map<String, Value> = serde_json::from_str(body).unwrap();
            uncounted_input(api, op, &map)
        };
        for body in [
            r#"{"messages":[{"content":[{"type":"input_audio","input_audio":{"data":"AA","format":"wav"}}]}]}"#,
            r#"{"messages":[{"content":[{"Type":"INPUT_AUDIO","input_audio":{"data":"AA"}}]}]}"#,
        ] {
            assert!(
                refused(ApiFamily::Openai, Op::OpenaiChat, body)
                    .is_some_and(|w| w.contains("audio")),
                "{body}"
            );
        }
        for body in [
            r#"{"contents":[{"parts":[{"inlineData":{"mimeType":"audio/mp3","data":"AA"}}]}]}"#,
            r#"{"contents":[{"parts":[{"inline_data":{"mime_type":"Video/MP4","data":"AA"}}]}]}"#,
            r#"{"contents":[{"parts":[{"InlineData":{"MimeType":"image/png","mimetype":"audio/wav"}}]}]}"#,
        ] {
            assert!(
                refused(ApiFamily::Gemini, Op::GeminiGenerate, body).is_some(),
                "{body}"
            );
        }
        // Images, PDFs and a tool whose schema names a string `type` are not audio.
        for body in [
            r#"{"contents":[{"parts":[{"inlineData":{"mimeType":"image/png","data":"AA"}}]}]}"#,
            r#"{"contents":[{"parts":[{"inlineData":{"mimeType":"application/pdf","data":"AA"}}]}]}"#,
            r#"{"tools":[{"functionDeclarations":[{"name":"f","parameters":{"type":"object","properties":{"input_audio":{"type":"string"}}}}]}]}"#,
        ] {
            assert!(
                refused(ApiFamily::Gemini, Op::GeminiGenerate, body).is_none(),
                "{body}"
            );
        }
    }
}
