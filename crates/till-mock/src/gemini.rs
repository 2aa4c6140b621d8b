//! The Gemini family under `/v1beta/`: `models`, `models/{model}`,
//! `models/{model}:generateContent`, `models/{model}:streamGenerateContent` (SSE with
//! `?alt=sse`, else a streamed JSON array) and `models/{model}:countTokens`, with
//! `x-goog-api-key` or `?key=` and Google's error shape.

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::REPLY_TEXT;
use super::router::{
    Ctx, Faults, Outcome, Resp, Usage, json, percent_decode, pieces, split_pieces, sse_data_crlf,
    stream, structured_reply, text_chars,
};

/// Models listed by `GET /v1beta/models`: (id, display name, methods).
const MODELS: &[(&str, &str, &[&str])] = &[
    (
        "gemini-2.5-pro",
        "Gemini 2.5 Pro",
        &["generateContent", "countTokens", "streamGenerateContent"],
    ),
    (
        "gemini-2.5-flash",
        "Gemini 2.5 Flash",
        &["generateContent", "countTokens", "streamGenerateContent"],
    ),
    (
        "gemini-2.0-flash",
        "Gemini 2.0 Flash",
        &["generateContent", "countTokens", "streamGenerateContent"],
    ),
    (
        "text-embedding-004",
        "Text Embedding 004",
        &["embedContent"],
    ),
];

/// Routes a Gemini-family request.
pub(crate) fn route(ctx: &Ctx<'_>) -> Outcome {
    enum Endpoint<'a> {
        Models,
        Model(&'a str),
        Generate(&'a str),
        Stream(&'a str),
        CountTokens,
    }
    // Some clients escape the `:` before the method (`%3AgenerateContent`).
    let path = percent_decode(ctx.path);
    let rest = path.strip_prefix("/v1beta/").unwrap_or("");
    let endpoint = match (ctx.method, rest) {
        (&Method::GET, "models") => Endpoint::Models,
        (method, rest) => {
            let Some(name) = rest.strip_prefix("models/").filter(|n| !n.contains('/')) else {
                return not_found(ctx).into();
            };
            match (method, name.rsplit_once(':')) {
                (&Method::GET, None) if !name.is_empty() => Endpoint::Model(name),
                (&Method::POST, Some((model, "generateContent"))) => Endpoint::Generate(model),
                (&Method::POST, Some((model, "streamGenerateContent"))) => Endpoint::Stream(model),
                (&Method::POST, Some((_, "countTokens"))) => Endpoint::CountTokens,
                _ => return not_found(ctx).into(),
            }
        }
    };
    if let Some(resp) = rejection(ctx) {
        return resp.into();
    }
    match endpoint {
        Endpoint::Models => models().into(),
        Endpoint::Model(name) => model(name).into(),
        Endpoint::Generate(model) => generate(ctx, model, false),
        Endpoint::Stream(model) => generate(ctx, model, true),
        Endpoint::CountTokens => match ctx.json_body() {
            Some(body) => {
                let tokens = input_usage(&body).input;
                json(
                    StatusCode::OK,
                    &json!({
                        "totalTokens": tokens,
                        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": tokens}]
                    }),
                )
                .into()
            }
            None => invalid_json().into(),
        },
    }
}

/// The error for a request whose `x-goog-api-key` (else `?key=`) is missing or not accepted.
fn rejection(ctx: &Ctx<'_>) -> Option<Resp> {
    let key = match ctx.header("x-goog-api-key") {
        Some(key) => Some(std::borrow::Cow::Borrowed(key.trim())),
        None => ctx.query_param("key"),
    };
    match key {
        Some(key) if ctx.state.keys.is_active(&key) => None,
        Some(_) => Some(json(
            StatusCode::BAD_REQUEST,
            &json!({"error": {
                "code": 400,
                "message": "API key not valid. Please pass a valid API key.",
                "status": "INVALID_ARGUMENT",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"}
                    },
                    {
                        "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                        "locale": "en-US",
                        "message": "API key not valid. Please pass a valid API key."
                    }
                ]
            }}),
        )),
        None => Some(error(
            StatusCode::FORBIDDEN,
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
            "PERMISSION_DENIED",
        )),
    }
}

/// Google's error shape: `{"error":{"code","message","status"}}`.
pub(crate) fn error(status: StatusCode, message: &str, kind: &str) -> Resp {
    json(
        status,
        &json!({"error": {"code": status.as_u16(), "message": message, "status": kind}}),
    )
}

fn not_found(ctx: &Ctx<'_>) -> Resp {
    error(
        StatusCode::NOT_FOUND,
        &format!(
            "The requested URL {} was not found on this server.",
            ctx.path
        ),
        "NOT_FOUND",
    )
}

fn invalid_json() -> Resp {
    error(
        StatusCode::BAD_REQUEST,
        "Invalid JSON payload received.",
        "INVALID_ARGUMENT",
    )
}

fn input_usage(body: &Value) -> Usage {
    Usage::for_chars(
        body.get("systemInstruction").map_or(0, text_chars)
            + body.get("contents").map_or(0, text_chars),
    )
}

fn usage_metadata(prompt: u64, candidates: u64) -> Value {
    json!({
        "promptTokenCount": prompt,
        "candidatesTokenCount": candidates,
        "totalTokenCount": prompt + candidates,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]
    })
}

fn generate(ctx: &Ctx<'_>, model: &str, streaming: bool) -> Outcome {
    let Some(body) = ctx.json_body() else {
        return invalid_json().into();
    };
    let faults = Faults::of(model);
    let fault = faults.outcome(
        streaming,
        || {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
                "INTERNAL",
            )
        },
        || {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "The model is overloaded. Please try again later.",
                "UNAVAILABLE",
            )
        },
    );
    if let Some(outcome) = fault {
        return outcome;
    }
    let usage = input_usage(&body).billed(model, &body);
    ctx.bill(usage);
    let response_id = ctx.id("");
    let response = |text: &str, done: bool, candidates: u64| {
        let mut candidate =
            json!({"content": {"parts": [{"text": text}], "role": "model"}, "index": 0});
        if done {
            candidate["finishReason"] = json!("STOP");
        }
        json!({
            "candidates": [candidate],
            "usageMetadata": usage_metadata(usage.input, candidates),
            "modelVersion": model,
            "responseId": response_id
        })
    };
    // Structured output (`responseMimeType: application/json`) gets JSON of the asked shape.
    let config = body
        .get("generationConfig")
        .or_else(|| body.get("generation_config"));
    let field = |names: &[&str]| names.iter().find_map(|n| config.and_then(|c| c.get(*n)));
    let wants_json = field(&["responseMimeType", "response_mime_type"])
        .and_then(Value::as_str)
        .is_some_and(|m| m == "application/json");
    let text = if wants_json {
        structured_reply(field(&[
            "responseJsonSchema",
            "responseSchema",
            "response_json_schema",
            "response_schema",
        ]))
    } else {
        REPLY_TEXT.to_owned()
    };
    if !streaming {
        return json(StatusCode::OK, &response(&text, true, usage.output)).into();
    }
    let sse = ctx.query_param("alt").as_deref() == Some("sse");
    let count = pieces().len();
    let frames: Vec<Bytes> = split_pieces(&text, count)
        .iter()
        .enumerate()
        .map(|(i, piece)| {
            let chunk = response(piece, i + 1 == count, i as u64 + 1);
            if sse {
                sse_data_crlf(&chunk)
            } else {
                // Without `alt=sse` the stream is one JSON array, written element by element.
                let mut text = String::from(if i == 0 { "[" } else { ",\r\n" });
                text.push_str(&chunk.to_string());
                if i + 1 == count {
                    text.push(']');
                }
                Bytes::from(text)
            }
        })
        .collect();
    let content_type = if sse {
        "text/event-stream"
    } else {
        "application/json; charset=UTF-8"
    };
    stream(content_type, frames, ctx.pacing(&faults)).into()
}

fn model_object(id: &str, name: &str, methods: &[&str]) -> Value {
    json!({
        "name": format!("models/{id}"),
        "version": "001",
        "displayName": name,
        "inputTokenLimit": 1_048_576,
        "outputTokenLimit": 65_536,
        "supportedGenerationMethods": methods
    })
}

fn models() -> Resp {
    let models: Vec<Value> = MODELS
        .iter()
        .map(|(id, name, methods)| model_object(id, name, methods))
        .collect();
    json(StatusCode::OK, &json!({"models": models}))
}

fn model(name: &str) -> Resp {
    match MODELS.iter().find(|(id, _, _)| *id == name) {
        Some((id, display, methods)) => json(StatusCode::OK, &model_object(id, display, methods)),
        None => error(
            StatusCode::NOT_FOUND,
            &format!(
                "models/{name} is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods."
            ),
            "NOT_FOUND",
        ),
    }
}
