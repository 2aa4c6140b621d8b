//! What a request is: which provider, which endpoint class, which model, how many output tokens
//! it may produce, and whether it streams. Pure functions over the path and body, no I/O.

use crate::childkey::EndpointClass;
use crate::providers::ApiFamily;

/// The provider prefix and the rest of the path: `/openai/v1/chat/completions` →
/// `("openai", "/v1/chat/completions")`.
pub fn split_prefix(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('/')?;
    let (name, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    (!name.is_empty()).then_some((name, tail))
}

/// The path after the API version segment (`/v1/`, `/v1beta/`, `/openai/v1/`, `/api/v1/`), or
/// the path itself without its leading slash when there is no such segment (DeepSeek serves
/// `/chat/completions` too).
fn after_version(path: &str) -> &str {
    for marker in ["/v1beta/", "/v1alpha/", "/v1/"] {
        if let Some(i) = path.find(marker) {
            return &path[i + marker.len()..];
        }
    }
    path.trim_start_matches('/')
}

/// The endpoint class of `method path` for an API family. Anything unrecognised is `Admin`,
/// so a key without `--endpoints all` cannot reach it.
pub fn classify(api: ApiFamily, method: &http::Method, path: &str) -> EndpointClass {
    let tail = after_version(path);
    let first = tail.split(['/', ':', '?']).next().unwrap_or("");
    match api {
        ApiFamily::Openai => match first {
            "chat" | "completions" | "responses" | "embeddings" | "moderations" | "audio"
            | "images" | "rerank" => EndpointClass::Inference,
            "models" if method == http::Method::GET => EndpointClass::Models,
            "files" | "uploads" | "vector_stores" | "assistants" | "threads" | "containers" => {
                EndpointClass::Files
            }
            "batches" => EndpointClass::Batches,
            _ => EndpointClass::Admin,
        },
        ApiFamily::Anthropic => match first {
            "messages" if tail.starts_with("messages/batches") => EndpointClass::Batches,
            "messages" | "complete" => EndpointClass::Inference,
            "models" if method == http::Method::GET => EndpointClass::Models,
            "files" => EndpointClass::Files,
            _ => EndpointClass::Admin,
        },
        ApiFamily::Gemini => {
            if path.starts_with("/upload/") {
                return EndpointClass::Files;
            }
            match first {
                "models" => match tail.rsplit_once(':').map(|(_, m)| m) {
                    Some(
                        "generateContent"
                        | "streamGenerateContent"
                        | "countTokens"
                        | "embedContent"
                        | "batchEmbedContents"
                        | "predict",
                    ) => EndpointClass::Inference,
                    Some("batchGenerateContent") => EndpointClass::Batches,
                    None if method == http::Method::GET => EndpointClass::Models,
                    _ => EndpointClass::Admin,
                },
                "files" | "cachedContents" => EndpointClass::Files,
                "batches" => EndpointClass::Batches,
                _ => EndpointClass::Admin,
            }
        }
    }
}

/// The model a Gemini request names in its path (`/v1beta/models/gemini-2.0-flash:generateContent`).
pub fn gemini_model(path: &str) -> Option<&str> {
    let tail = after_version(path);
    let rest = tail.strip_prefix("models/")?;
    let model = rest.split([':', '/']).next()?;
    (!model.is_empty()).then_some(model)
}

/// The model named by an OpenAI- or Anthropic-style path such as `/v1/models/gpt-4o`.
pub fn path_model(path: &str) -> Option<&str> {
    let tail = after_version(path);
    let rest = tail.strip_prefix("models/")?;
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

/// What the proxy learns from a JSON request body.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BodyFacts {
    pub model: Option<String>,
    /// The output ceiling the request asks for, in whichever field its API uses.
    pub max_output_tokens: Option<u64>,
    pub stream: bool,
    /// OpenAI chat: whether the client asked for `stream_options.include_usage`.
    pub include_usage: bool,
    /// A rough count of prompt tokens (characters / 4), for rate and budget estimates.
    pub prompt_tokens_estimate: u64,
}

/// Reads the facts from a parsed JSON body.
pub fn body_facts(api: ApiFamily, body: &serde_json::Value, body_len: usize) -> BodyFacts {
    let get_u64 = |v: Option<&serde_json::Value>| v.and_then(serde_json::Value::as_u64);
    let max_output_tokens = match api {
        ApiFamily::Openai => get_u64(body.get("max_completion_tokens"))
            .or_else(|| get_u64(body.get("max_output_tokens")))
            .or_else(|| get_u64(body.get("max_tokens"))),
        ApiFamily::Anthropic => get_u64(body.get("max_tokens")),
        ApiFamily::Gemini => get_u64(body.pointer("/generationConfig/maxOutputTokens")),
    };
    BodyFacts {
        model: body
            .get("model")
            .and_then(|m| m.as_str())
            .map(str::to_string),
        max_output_tokens,
        stream: body
            .get("stream")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false),
        include_usage: body
            .pointer("/stream_options/include_usage")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false),
        prompt_tokens_estimate: (body_len as u64).div_ceil(4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn splits_provider_prefix() {
        assert_eq!(
            split_prefix("/openai/v1/chat/completions"),
            Some(("openai", "/v1/chat/completions"))
        );
        assert_eq!(split_prefix("/anthropic"), Some(("anthropic", "/")));
        assert_eq!(split_prefix("/"), None);
        assert_eq!(split_prefix("http://evil/x"), None);
    }

    #[test]
    fn classifies_openai() {
        let c = |m: Method, p: &str| classify(ApiFamily::Openai, &m, p);
        assert_eq!(
            c(Method::POST, "/v1/chat/completions"),
            EndpointClass::Inference
        );
        assert_eq!(c(Method::POST, "/v1/responses"), EndpointClass::Inference);
        assert_eq!(c(Method::POST, "/v1/embeddings"), EndpointClass::Inference);
        assert_eq!(c(Method::GET, "/v1/models"), EndpointClass::Models);
        assert_eq!(c(Method::DELETE, "/v1/models/ft:gpt"), EndpointClass::Admin);
        assert_eq!(c(Method::POST, "/v1/files"), EndpointClass::Files);
        assert_eq!(c(Method::POST, "/v1/batches"), EndpointClass::Batches);
        assert_eq!(
            c(Method::GET, "/v1/organization/users"),
            EndpointClass::Admin
        );
        assert_eq!(
            c(Method::POST, "/v1/fine_tuning/jobs"),
            EndpointClass::Admin
        );
        assert_eq!(
            c(Method::POST, "/openai/v1/chat/completions"),
            EndpointClass::Inference
        );
        assert_eq!(
            c(Method::POST, "/chat/completions"),
            EndpointClass::Inference
        );
    }

    #[test]
    fn classifies_anthropic_and_gemini() {
        let a = |m: Method, p: &str| classify(ApiFamily::Anthropic, &m, p);
        assert_eq!(a(Method::POST, "/v1/messages"), EndpointClass::Inference);
        assert_eq!(
            a(Method::POST, "/v1/messages/count_tokens"),
            EndpointClass::Inference
        );
        assert_eq!(
            a(Method::POST, "/v1/messages/batches"),
            EndpointClass::Batches
        );
        assert_eq!(a(Method::GET, "/v1/models"), EndpointClass::Models);
        assert_eq!(
            a(Method::POST, "/v1/organizations/api_keys/x"),
            EndpointClass::Admin
        );
        let g = |m: Method, p: &str| classify(ApiFamily::Gemini, &m, p);
        assert_eq!(
            g(
                Method::POST,
                "/v1beta/models/gemini-2.0-flash:generateContent"
            ),
            EndpointClass::Inference
        );
        assert_eq!(
            g(
                Method::POST,
                "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
            ),
            EndpointClass::Inference
        );
        assert_eq!(g(Method::GET, "/v1beta/models"), EndpointClass::Models);
        assert_eq!(
            g(Method::GET, "/v1beta/models/gemini-2.0-flash"),
            EndpointClass::Models
        );
        assert_eq!(
            g(Method::POST, "/upload/v1beta/files"),
            EndpointClass::Files
        );
        assert_eq!(g(Method::POST, "/v1beta/tunedModels"), EndpointClass::Admin);
    }

    #[test]
    fn finds_models() {
        assert_eq!(
            gemini_model("/v1beta/models/gemini-2.0-flash:generateContent"),
            Some("gemini-2.0-flash")
        );
        assert_eq!(gemini_model("/v1beta/models"), None);
        assert_eq!(path_model("/v1/models/gpt-4o"), Some("gpt-4o"));
        let body = serde_json::json!({"model":"gpt-4o","max_tokens":50,"stream":true,"stream_options":{"include_usage":true}});
        let f = body_facts(ApiFamily::Openai, &body, 100);
        assert_eq!(
            (
                f.model.as_deref(),
                f.max_output_tokens,
                f.stream,
                f.include_usage
            ),
            (Some("gpt-4o"), Some(50), true, true)
        );
        let g = serde_json::json!({"generationConfig":{"maxOutputTokens":7}});
        assert_eq!(
            body_facts(ApiFamily::Gemini, &g, 10).max_output_tokens,
            Some(7)
        );
    }
}
