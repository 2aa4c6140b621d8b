//! The Gemini (Generative Language API) wire format: `x-goog-api-key`, the
//! `models/M:generateContent`-style paths (streaming said in the path), the
//! `generationConfig`/`generation_config` objects with `maxOutputTokens` and `candidateCount`
//! in both spellings, nested requests in batch and count bodies, tools named by key,
//! `usageMetadata`, and `{"error": {"code", "status"}}` bodies.
//!
//! Pure knowledge of the format: no I/O, nothing about keys, caveats or the proxy.

use http::Method;
use serde_json::{Map, Value};

use super::ApiFamily;
use super::endpoint::{Endpoint, Op, valid_model_id};
use super::family::{AuthScheme, EventUsage, Family, FieldCheck};
use super::fields::{choices, count_kinds, largest, max_opt, named};
use super::usage::{Tree, Usage, n, reports};
use crate::childkey::EndpointClass::{self, *};

#[allow(non_upper_case_globals)]
impl Op {
    /// `POST …/models/M:generateContent` and `:streamGenerateContent`
    pub const GeminiGenerate: Op = Op::of(ApiFamily::Gemini, "generate");
    /// `POST …/models/M:countTokens`
    pub const GeminiCountTokens: Op = Op::of(ApiFamily::Gemini, "count_tokens");
    /// `POST …/models/M:embedContent`
    pub const GeminiEmbed: Op = Op::of(ApiFamily::Gemini, "embed");
    /// `POST …/models/M:batchEmbedContents`
    pub const GeminiBatchEmbed: Op = Op::of(ApiFamily::Gemini, "batch_embed");
    /// `POST …/models/M:predict` and the like (Imagen, Veo): not counted in tokens.
    pub const GeminiUnmetered: Op = Op::of(ApiFamily::Gemini, "unmetered");
}

const CEILING: &[&str] = &["maxOutputTokens", "max_output_tokens"];
const CHOICES: &[&str] = &["candidateCount", "candidate_count"];
const CONFIG: &[&str] = &["generationConfig", "generation_config"];

pub struct Gemini;

impl Family for Gemini {
    fn auth_scheme(&self) -> AuthScheme {
        AuthScheme::GoogApiKey
    }

    fn classify(&self, method: &Method, tail: &[&str], prefix: Option<&str>) -> Endpoint {
        let class = |c: EndpointClass| Endpoint::new(c, Op::Other);
        if prefix == Some("upload") {
            return match tail {
                ["files", ..] => class(Files),
                _ => Endpoint::admin(),
            };
        }
        if prefix.is_some() {
            return Endpoint::admin();
        }
        let post = method == Method::POST;
        let get = method == Method::GET;
        // A write by another method than the API's own (a PUT where it takes a POST) is held
        // to what that write is held to: a server or gateway routing by path alone takes it.
        let write = !matches!(
            *method,
            Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS
        );
        match tail {
            ["models"] if get => class(Models),
            ["models", m] => {
                if let Some((model, method)) = m.split_once(':') {
                    if !post || !valid_model_id(model, false) {
                        return Endpoint::admin();
                    }
                    let (class, op) = match method {
                        "generateContent" | "streamGenerateContent" => {
                            (Inference, Op::GeminiGenerate)
                        }
                        "countTokens" => (Inference, Op::GeminiCountTokens),
                        "embedContent" => (Inference, Op::GeminiEmbed),
                        "batchEmbedContents" => (Inference, Op::GeminiBatchEmbed),
                        "predict" | "predictLongRunning" => (Inference, Op::GeminiUnmetered),
                        "batchGenerateContent" | "asyncBatchEmbedContent" => (Batches, Op::Other),
                        _ => return Endpoint::admin(),
                    };
                    Endpoint::new(class, op).with_model(model)
                } else if get && valid_model_id(m, false) {
                    class(Models).with_model(m)
                } else {
                    Endpoint::admin()
                }
            }
            // Creating a cache bills its content as input (at the cache's rates), and importing
            // into a file search store bills its embedding: inference till cannot bound.
            ["cachedContents"] if write => Endpoint::new(Inference, Op::GeminiUnmetered),
            // A cache bills its storage by the hour until it expires: a change to one (a longer
            // `ttl` or `expireTime`) is a stored object's, but one a key with bounds may not
            // make. Reading and deleting stay open.
            ["cachedContents", _, ..] if write => Endpoint::new(Files, Op::GeminiUnmetered),
            ["fileSearchStores", .., last] if write && last.contains(':') => {
                Endpoint::new(Inference, Op::GeminiUnmetered)
            }
            _ => match tail.first().copied().unwrap_or("") {
                "files" | "cachedContents" | "fileSearchStores" => class(Files),
                "batches" => class(Batches),
                _ => Endpoint::admin(),
            },
        }
    }

    fn model_in_body(&self, _op: Op) -> bool {
        // The path names the model.
        false
    }

    fn body_model_runs(&self, _op: Op) -> bool {
        // The path names the model a request runs; where it names none (a cache's creation,
        // a file search store's import), what runs is the stored object's or Google's own
        // choice, whatever a `model` in the body says.
        false
    }

    fn unmetered(&self, op: Op) -> bool {
        op == Op::GeminiUnmetered
    }

    fn path_streams(&self, op: Op, path: &str) -> bool {
        op == Op::GeminiGenerate && path.ends_with(":streamGenerateContent")
    }

    fn read_fields(&self) -> &'static [&'static str] {
        CONFIG
    }

    fn check_nested_fields(
        &self,
        map: &Map<String, Value>,
        check: FieldCheck<'_>,
    ) -> Result<(), String> {
        for config in configs(map)? {
            check(config, &[CEILING, CHOICES].concat())?;
        }
        Ok(())
    }

    fn limit_fields(&self, op: Op) -> Option<&'static [&'static str]> {
        (op == Op::GeminiGenerate).then_some(CONFIG)
    }

    fn limits(&self, op: Op, map: &Map<String, Value>) -> Result<(Option<u64>, u64), String> {
        Ok(match op {
            Op::GeminiGenerate => {
                let mut ceiling = None;
                let mut n = 1;
                for config in configs(map)? {
                    ceiling = max_opt(ceiling, largest(config, CEILING)?);
                    n = n.max(choices(config, CHOICES)?);
                }
                (ceiling, n)
            }
            Op::GeminiUnmetered => (None, choices(map, &["n"])?),
            // Counting and embedding produce no output.
            _ => (Some(0), 1),
        })
    }

    fn check_body(
        &self,
        op: Op,
        map: &Map<String, Value>,
        path_model: Option<&str>,
    ) -> Result<(), String> {
        if matches!(op, Op::GeminiBatchEmbed | Op::GeminiCountTokens) {
            check_nested_models(map, path_model.unwrap_or(""))?;
        }
        Ok(())
    }

    fn insert_ceiling(
        &self,
        op: Op,
        _openai_proper: bool,
        map: &mut Map<String, Value>,
        ceiling: u64,
    ) {
        if op != Op::GeminiGenerate {
            return;
        }
        let name = if map.contains_key("generationConfig") || !map.contains_key("generation_config")
        {
            "generationConfig"
        } else {
            "generation_config"
        };
        let config = map.entry(name).or_insert_with(|| Value::Object(Map::new()));
        if !config.is_object() {
            *config = Value::Object(Map::new());
        }
        if let Some(o) = config.as_object_mut() {
            o.insert("maxOutputTokens".into(), ceiling.into());
        }
    }

    fn hidden_input(&self, _op: Op, _model: Option<&str>, map: &Map<String, Value>) -> u64 {
        // An inline image is 258 tokens a 768-pixel tile (Gemini 2) or up to 2,240 at the
        // highest media resolution (Gemini 3); 5,000 covers a 3,000-pixel square in tiles.
        // Data of no stated type counts as an image too.
        // Inline data of any other type but text (a PDF: up to 1,000 pages of 258 or more
        // tokens, which its bytes do not bound) may fill the model's context. Audio and video
        // are refused before this.
        let [images, unbounded] = count_kinds(
            map,
            &[
                |part| {
                    inline_types(part).any(|t| t.is_none_or(|t| has_prefix(t, "image/")))
                        || inline_data(part).any(|d| mime_types(d).next().is_none())
                },
                |part| {
                    inline_types(part).any(|t| {
                        t.is_some_and(|t| !has_prefix(t, "image/") && !has_prefix(t, "text/"))
                    })
                },
            ],
        );
        images * 5_000 + if unbounded > 0 { MAX_PROMPT } else { 0 }
    }

    fn server_tool(&self, tool: &Map<String, Value>) -> Option<String> {
        tool.keys()
            .find(|k| !matches!(k.as_str(), "functionDeclarations" | "function_declarations"))
            .map(|k| format!("the `{k}` tool"))
    }

    fn sse_event(&self, _event_name: &str, v: &Value, _prev: Option<Usage>) -> EventUsage {
        EventUsage {
            usage: v
                .get("usageMetadata")
                .filter(|u| reports(*u, self.usage_paths()))
                .map(|u| usage(u)),
            completed: v.pointer("/candidates/0/finishReason").is_some(),
            ..EventUsage::default()
        }
    }

    fn sse_markers(&self) -> &'static [&'static str] {
        &["usageMetadata", "finishReason"]
    }

    fn usage_member(&self) -> &'static str {
        "usageMetadata"
    }

    fn usage_paths(&self) -> &'static [&'static [&'static str]] {
        &[
            &["promptTokenCount"],
            &["candidatesTokenCount"],
            &["cachedContentTokenCount"],
            &["thoughtsTokenCount"],
            &["toolUsePromptTokenCount"],
        ]
    }

    fn usage_of(&self, u: Option<&dyn Tree>) -> Option<Usage> {
        u.filter(|u| reports(*u, self.usage_paths())).map(usage)
    }

    fn error_body(&self, status: u16, _kind: &str, message: &str) -> Value {
        serde_json::json!({
            "error": { "code": status, "message": message, "status": error_status(status) }
        })
    }

    fn stream_error_event(&self, message: &str) -> String {
        format!(
            "data: {}\n\n",
            serde_json::json!({"error": {"code": 502, "message": message, "status": "UNAVAILABLE"}})
        )
    }
}

/// The generation config object of a Gemini body, in either of the spellings the API reads;
/// a body with both is refused, since which one the provider keeps is not till's to know (and
/// till writes its output ceiling into one).
fn configs(map: &Map<String, Value>) -> Result<Vec<&Map<String, Value>>, String> {
    let mut out = Vec::new();
    for name in CONFIG {
        match map.get(*name) {
            None | Some(Value::Null) => {}
            Some(Value::Object(o)) => out.push(o),
            Some(_) => return Err(format!("`{name}` must be an object")),
        }
    }
    if out.len() > 1 {
        return Err(
            "the body has both `generationConfig` and `generation_config`; till reads and forwards one generation config"
                .into(),
        );
    }
    Ok(out)
}

/// Gemini's batch and count requests carry whole requests with a `model` each; the upstream
/// could run those, so each must be the model the path names (which is what till checks).
/// Member names are matched in any case and with or without underscores (`requests`,
/// `Requests`, `generateContentRequest`, `generate_content_request`): Google's parser takes
/// two spellings, and a gateway in front of it may take more.
fn check_nested_models(map: &Map<String, Value>, path_model: &str) -> Result<(), String> {
    fn loosely(name: &str, like: &str) -> bool {
        let mut bytes = name.bytes().filter(|b| *b != b'_');
        like.bytes()
            .all(|l| bytes.next().is_some_and(|b| b.eq_ignore_ascii_case(&l)))
            && bytes.next().is_none()
    }
    fn models(request: &Value) -> impl Iterator<Item = &Value> {
        request.as_object().into_iter().flat_map(|o| {
            o.iter()
                .filter(|(k, _)| loosely(k, "model"))
                .map(|(_, v)| v)
        })
    }
    let mut nested: Vec<&Value> = Vec::new();
    for (name, value) in map {
        if loosely(name, "requests") {
            // One object where a list is expected is read as a list of it, as Gemini's
            // parser does.
            match value {
                Value::Array(reqs) => nested.extend(reqs.iter().flat_map(models)),
                one @ Value::Object(_) => nested.extend(models(one)),
                _ => {}
            }
        } else if loosely(name, "generatecontentrequest") {
            nested.extend(models(value));
        }
    }
    for m in nested {
        let ok = match m {
            Value::Null => true,
            Value::String(s) => s.strip_prefix("models/").unwrap_or(s) == path_model,
            _ => false,
        };
        if !ok {
            return Err(format!(
                "a request inside this body names model {m}, not the path's `{path_model}`; till checks one model per request"
            ));
        }
    }
    Ok(())
}

/// Thoughts are billed as output; till counts them there and as reasoning.
fn usage(u: &dyn Tree) -> Usage {
    let thoughts = n(u, &["thoughtsTokenCount"]);
    Usage {
        // What grounding and URL context fetched is billed as input beside the prompt.
        input_tokens: n(u, &["promptTokenCount"])
            .saturating_add(n(u, &["toolUsePromptTokenCount"])),
        output_tokens: n(u, &["candidatesTokenCount"]).saturating_add(thoughts),
        cached_tokens: n(u, &["cachedContentTokenCount"]),
        reasoning_tokens: thoughts,
        ..Usage::default()
    }
}

fn error_status(status: u16) -> &'static str {
    match status {
        400 | 413 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}
/// The most input tokens a Gemini model takes (Gemini 1.5 Pro's context window; later models
/// take 1,048,576): what inline data its bytes do not bound may be billed for.
pub const MAX_PROMPT: u64 = 2_097_152;

/// A part's inline data objects (`inlineData` in any letter case, or `inline_data`).
fn inline_data(part: &Map<String, Value>) -> impl Iterator<Item = &Map<String, Value>> {
    named(part, "inlineData")
        .chain(named(part, "inline_data"))
        .filter_map(Value::as_object)
}

/// The MIME types an inline data object states, as a case-folding server reads them.
fn mime_types(data: &Map<String, Value>) -> impl Iterator<Item = &Value> {
    named(data, "mimeType").chain(named(data, "mime_type"))
}

/// A part's inline data types: `None` for a type that is not a string.
fn inline_types(part: &Map<String, Value>) -> impl Iterator<Item = Option<&str>> {
    inline_data(part).flat_map(mime_types).map(Value::as_str)
}

fn has_prefix(mime: &str, prefix: &str) -> bool {
    mime.get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

#[cfg(test)]
mod tests {
    use super::check_nested_models;

    fn check(body: &str) -> Result<(), String> {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        check_nested_models(v.as_object().unwrap(), "gemini-2.0-flash")
    }

    #[test]
    fn a_nested_model_is_found_in_any_spelling_of_its_member() {
        for body in [
            r#"{"requests":[{"model":"models/gemini-2.5-pro"}]}"#,
            r#"{"requests":{"model":"models/gemini-2.5-pro"}}"#,
            r#"{"Requests":[{"model":"models/gemini-2.5-pro"}]}"#,
            r#"{"requests":[{"Model":"models/gemini-2.5-pro"}]}"#,
            r#"{"generateContentRequest":{"model":"models/gemini-2.5-pro"}}"#,
            r#"{"generate_content_request":{"model":"models/gemini-2.5-pro"}}"#,
            r#"{"GenerateContentRequest":{"model":"models/gemini-2.5-pro"}}"#,
            r#"{"GENERATE_CONTENT_REQUEST":{"MODEL":"gemini-2.5-pro"}}"#,
        ] {
            assert!(check(body).is_err(), "{body}");
        }
        for body in [
            r#"{"requests":[{"model":"models/gemini-2.0-flash"},{"model":null}]}"#,
            r#"{"generateContentRequest":{"model":"gemini-2.0-flash"}}"#,
            r#"{"requestsx":[{"model":"models/gemini-2.5-pro"}]}"#,
            r#"{"contents":[]}"#,
        ] {
            assert_eq!(check(body), Ok(()), "{body}");
        }
    }
}
