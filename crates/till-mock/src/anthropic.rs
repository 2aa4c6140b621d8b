//! The Anthropic family: `/v1/messages` (JSON and SSE), `/v1/messages/count_tokens`,
//! `/v1/models` when the request carries `anthropic-version`, with `x-api-key` or
//! `Authorization: Bearer`, the required `anthropic-version` header and Anthropic's error shape.
//! The admin routes under `/v1/organizations/` live in [`super::admin`].

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::REPLY_TEXT;
use super::admin;
use super::router::{
    Ctx, Faults, Outcome, Resp, Usage, json, pieces, sse_event, stream, text_chars, with_header,
};

/// Models listed by `GET /v1/models`: (id, display name, created).
const MODELS: &[(&str, &str, &str)] = &[
    (
        "claude-opus-4-1-20250805",
        "Claude Opus 4.1",
        "2025-08-05T00:00:00Z",
    ),
    (
        "claude-sonnet-4-20250514",
        "Claude Sonnet 4",
        "2025-05-22T00:00:00Z",
    ),
    (
        "claude-3-7-sonnet-20250219",
        "Claude Sonnet 3.7",
        "2025-02-24T00:00:00Z",
    ),
    (
        "claude-3-5-haiku-20241022",
        "Claude Haiku 3.5",
        "2024-10-22T00:00:00Z",
    ),
];

/// Routes an Anthropic-family request.
pub(crate) fn route(ctx: &Ctx<'_>) -> Outcome {
    let request_id = ctx.id("req_");
    let outcome = route_inner(ctx, &request_id);
    match outcome {
        Outcome::Respond(resp) => with_header(resp, "request-id", &request_id).into(),
        other => other,
    }
}

fn route_inner(ctx: &Ctx<'_>, request_id: &str) -> Outcome {
    enum Endpoint<'a> {
        Messages,
        CountTokens,
        Models,
        Model(&'a str),
        Admin(&'a str),
    }
    let endpoint = match (ctx.method, ctx.path) {
        (&Method::POST, "/v1/messages") => Endpoint::Messages,
        (&Method::POST, "/v1/messages/count_tokens") => Endpoint::CountTokens,
        (&Method::GET, "/v1/models") => Endpoint::Models,
        (_, path) => match (
            path.strip_prefix("/v1/models/"),
            path.strip_prefix("/v1/organizations/"),
        ) {
            (Some(id), _) if *ctx.method == Method::GET && is_segment(id) => Endpoint::Model(id),
            (_, Some(rest)) => Endpoint::Admin(rest),
            _ => return not_found(request_id).into(),
        },
    };
    if let Endpoint::Admin(rest) = endpoint {
        return admin::anthropic(ctx, rest, request_id);
    }
    if let Some(resp) = rejection(ctx, request_id, |key| ctx.state.keys.is_active(key)) {
        return resp.into();
    }
    match endpoint {
        Endpoint::Models => models().into(),
        Endpoint::Model(id) => model(id, request_id).into(),
        Endpoint::Messages => messages(ctx, request_id),
        Endpoint::CountTokens => match parse(ctx, request_id) {
            Ok((body, _)) => json(
                StatusCode::OK,
                &json!({"input_tokens": input_usage(&body).input}),
            )
            .into(),
            Err(resp) => (*resp).into(),
        },
        Endpoint::Admin(_) => unreachable!("handled above"),
    }
}

fn is_segment(text: &str) -> bool {
    !text.is_empty() && !text.contains('/')
}

/// The key a request carries: `x-api-key`, else `Authorization: Bearer`.
pub(crate) fn request_key<'a>(ctx: &'a Ctx<'_>) -> Option<&'a str> {
    ctx.header("x-api-key")
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .or_else(|| ctx.bearer())
}

/// The error for a request whose key (`x-api-key`, else `Authorization: Bearer`) is missing or
/// not accepted by `accept`, or that lacks the `anthropic-version` header.
pub(crate) fn rejection(
    ctx: &Ctx<'_>,
    request_id: &str,
    accept: impl FnOnce(&str) -> bool,
) -> Option<Resp> {
    match request_key(ctx) {
        None => {
            return Some(error(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "x-api-key header is required",
                request_id,
            ));
        }
        Some(key) if !accept(key) => {
            return Some(error(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "invalid x-api-key",
                request_id,
            ));
        }
        Some(_) => {}
    }
    if ctx.header("anthropic-version").is_none() {
        return Some(error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "anthropic-version: header is required",
            request_id,
        ));
    }
    None
}

/// Anthropic's error shape: `{"type":"error","error":{"type","message"},"request_id"}`.
pub(crate) fn error(status: StatusCode, kind: &str, message: &str, request_id: &str) -> Resp {
    json(
        status,
        &json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}),
    )
}

pub(crate) fn not_found(request_id: &str) -> Resp {
    error(
        StatusCode::NOT_FOUND,
        "not_found_error",
        "Not Found",
        request_id,
    )
}

fn parse(ctx: &Ctx<'_>, request_id: &str) -> Result<(Value, String), Box<Resp>> {
    let Some(body) = ctx.json_body() else {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "The request body is not valid JSON.",
            request_id,
        )));
    };
    let Some(model) = body.get("model").and_then(Value::as_str).map(str::to_owned) else {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "model: Field required",
            request_id,
        )));
    };
    Ok((body, model))
}

/// Prompt-cache writes as Anthropic reports them on a first call: a request with any
/// `cache_control` marker has its whole prompt written to the cache (one-hour writes when any
/// marker asks for `"ttl": "1h"`), reported apart from `input_tokens`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct CacheWrites {
    five_minutes: u64,
    one_hour: u64,
}

fn cache_markers(v: &Value, found: &mut Vec<Option<String>>) {
    match v {
        Value::Object(o) => {
            for (k, v) in o {
                if k == "cache_control" {
                    found.push(v.get("ttl").and_then(Value::as_str).map(str::to_owned));
                }
                cache_markers(v, found);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| cache_markers(v, found)),
        _ => {}
    }
}

fn cache_writes(body: &Value, input: u64) -> CacheWrites {
    let mut found = Vec::new();
    cache_markers(body, &mut found);
    if found.is_empty() {
        CacheWrites::default()
    } else if found.iter().any(|t| t.as_deref() == Some("1h")) {
        CacheWrites {
            five_minutes: 0,
            one_hour: input,
        }
    } else {
        CacheWrites {
            five_minutes: input,
            one_hour: 0,
        }
    }
}

/// The usage object of `message_start` and of a whole message.
fn usage_json(usage: Usage, writes: CacheWrites, output: u64) -> Value {
    let written = writes.five_minutes + writes.one_hour;
    json!({
        "input_tokens": usage.input - written,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": 0,
        "cache_creation": {
            "ephemeral_5m_input_tokens": writes.five_minutes,
            "ephemeral_1h_input_tokens": writes.one_hour
        },
        "output_tokens": output
    })
}

fn input_usage(body: &Value) -> Usage {
    Usage::for_chars(
        body.get("system").map_or(0, text_chars) + body.get("messages").map_or(0, text_chars),
    )
}

fn messages(ctx: &Ctx<'_>, request_id: &str) -> Outcome {
    let (body, model) = match parse(ctx, request_id) {
        Ok(parsed) => parsed,
        Err(resp) => return (*resp).into(),
    };
    let streaming = body.get("stream").and_then(Value::as_bool) == Some(true);
    let faults = Faults::of(&model);
    let fault = faults.outcome(
        streaming,
        || {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                "Internal server error",
                request_id,
            )
        },
        || {
            error(
                StatusCode::from_u16(529).expect("529 is a valid status"),
                "overloaded_error",
                "Overloaded",
                request_id,
            )
        },
    );
    if let Some(outcome) = fault {
        return outcome;
    }
    let usage = input_usage(&body).billed(&model, &body);
    let writes = cache_writes(&body, usage.input);
    ctx.bill(usage);
    let id = ctx.id("msg_");
    if !streaming {
        return json(
            StatusCode::OK,
            &json!({
                "id": id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": REPLY_TEXT}],
                "stop_reason": "end_turn",
                "stop_sequence": null,
                "usage": usage_json(usage, writes, usage.output)
            }),
        )
        .into();
    }
    let mut frames = Vec::with_capacity(pieces().len() + 6);
    frames.push(sse_event(
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": usage_json(usage, writes, 1)
        }}),
    ));
    frames.push(sse_event(
        "content_block_start",
        &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ));
    frames.push(sse_event("ping", &json!({"type": "ping"})));
    for piece in pieces() {
        frames.push(sse_event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
        ));
    }
    frames.push(sse_event(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    ));
    frames.push(sse_event(
        "message_delta",
        &json!({
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": usage.output}
        }),
    ));
    frames.push(sse_event("message_stop", &json!({"type": "message_stop"})));
    stream(
        "text/event-stream; charset=utf-8",
        frames,
        ctx.pacing(&faults),
    )
    .into()
}

fn model_object(id: &str, name: &str, created: &str) -> Value {
    json!({"type": "model", "id": id, "display_name": name, "created_at": created})
}

fn models() -> Resp {
    let data: Vec<Value> = MODELS
        .iter()
        .map(|(id, name, created)| model_object(id, name, created))
        .collect();
    json(
        StatusCode::OK,
        &json!({
            "data": data,
            "has_more": false,
            "first_id": MODELS.first().map(|m| m.0),
            "last_id": MODELS.last().map(|m| m.0)
        }),
    )
}

fn model(id: &str, request_id: &str) -> Resp {
    match MODELS.iter().find(|(m, _, _)| *m == id) {
        Some((id, name, created)) => json(StatusCode::OK, &model_object(id, name, created)),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found_error",
            &format!("model: {id}"),
            request_id,
        ),
    }
}
