//! The OpenAI family: `/v1/chat/completions`, `/v1/responses`, `/v1/embeddings`, `/v1/models`
//! (and `/v1/models/{id}`), with `Authorization: Bearer KEY` and OpenAI's error shapes. The
//! admin routes under `/v1/organization/` live in [`super::admin`].

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};
use serde_json::{Value, json};

use super::admin;
use super::router::{
    CUT_AFTER_FRAMES, Ctx, Faults, Outcome, Resp, Usage, json, mask_key, pieces, sse_data,
    sse_event, stream, text_chars, with_header,
};
use super::{REPLY_TEXT, time_now};

/// The `system_fingerprint` on every completion.
const FINGERPRINT: &str = "fp_mock0000";

/// Models listed by `GET /v1/models`: (id, created, owned_by).
const MODELS: &[(&str, u64, &str)] = &[
    ("gpt-4o", 1_715_367_049, "system"),
    ("gpt-4o-mini", 1_721_172_741, "system"),
    ("gpt-4.1-mini", 1_744_318_173, "system"),
    ("o4-mini", 1_744_225_351, "system"),
    ("text-embedding-3-small", 1_705_948_997, "system"),
];

/// Routes an OpenAI-family request.
pub(crate) fn route(ctx: &Ctx<'_>) -> Outcome {
    if let Some(rest) = ctx.path.strip_prefix("/v1/organization/") {
        return admin::openai(ctx, rest);
    }
    enum Endpoint<'a> {
        Chat,
        Completions,
        Responses,
        Embeddings,
        Models,
        Model(&'a str),
        StoredResponse(&'a str),
    }
    let endpoint = match (ctx.method, ctx.path) {
        (&Method::POST, "/v1/chat/completions") => Endpoint::Chat,
        (&Method::POST, "/v1/completions") => Endpoint::Completions,
        (&Method::POST, "/v1/responses") => Endpoint::Responses,
        (&Method::POST, "/v1/embeddings") => Endpoint::Embeddings,
        (&Method::GET, "/v1/models") => Endpoint::Models,
        (&Method::GET, path) => match path.strip_prefix("/v1/models/") {
            Some(id) if !id.is_empty() && !id.contains('/') => Endpoint::Model(id),
            _ => match path.strip_prefix("/v1/responses/") {
                Some(id) if !id.is_empty() && !id.contains('/') => Endpoint::StoredResponse(id),
                _ => return not_found(ctx).into(),
            },
        },
        _ => return not_found(ctx).into(),
    };
    if let Some(resp) = rejection(ctx) {
        return resp.into();
    }
    match endpoint {
        Endpoint::Models => models().into(),
        Endpoint::Model(id) => model(id).into(),
        Endpoint::StoredResponse(id) => match ctx.stored_response(id) {
            Some(response) => json(StatusCode::OK, &response).into(),
            None => error(
                StatusCode::NOT_FOUND,
                &format!("Response with id '{id}' not found."),
                "invalid_request_error",
                None,
            )
            .into(),
        },
        Endpoint::Chat => with_request(ctx, chat),
        Endpoint::Completions => with_request(ctx, completions),
        Endpoint::Responses => with_request(ctx, responses),
        Endpoint::Embeddings => with_request(ctx, embeddings),
    }
}

/// The 401 for a request whose `Authorization: Bearer KEY` is missing or not accepted.
fn rejection(ctx: &Ctx<'_>) -> Option<Resp> {
    match ctx.bearer() {
        Some(key) if ctx.state.keys.is_active(key) => None,
        Some(key) => Some(invalid_key(key)),
        None => Some(missing_key()),
    }
}

/// 401 for a key OpenAI does not know.
pub(crate) fn invalid_key(key: &str) -> Resp {
    error(
        StatusCode::UNAUTHORIZED,
        &format!(
            "Incorrect API key provided: {}. You can find your API key at https://platform.openai.com/account/api-keys.",
            mask_key(key)
        ),
        "invalid_request_error",
        Some("invalid_api_key"),
    )
}

/// 401 for a request without a key.
pub(crate) fn missing_key() -> Resp {
    error(
        StatusCode::UNAUTHORIZED,
        "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        None,
    )
}

/// OpenAI's error shape: `{"error":{"message","type","param","code"}}`.
pub(crate) fn error(status: StatusCode, message: &str, kind: &str, code: Option<&str>) -> Resp {
    json(
        status,
        &json!({"error": {"message": message, "type": kind, "param": null, "code": code}}),
    )
}

pub(crate) fn not_found(ctx: &Ctx<'_>) -> Resp {
    error(
        StatusCode::NOT_FOUND,
        &format!("Invalid URL ({} {})", ctx.method, ctx.path),
        "invalid_request_error",
        None,
    )
}

fn server_error() -> Resp {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    )
}

fn overloaded() -> Resp {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "The engine is currently overloaded, please try again later.",
        "server_error",
        None,
    )
}

/// What every inference endpoint needs from the request.
struct Call<'a, 'c> {
    ctx: &'a Ctx<'c>,
    body: Value,
    model: String,
    faults: Faults,
}

impl Call<'_, '_> {
    fn stream(&self) -> bool {
        self.body.get("stream").and_then(Value::as_bool) == Some(true)
    }
}

/// Parses the body, finds the model and applies the fault switches before `handler` answers.
fn with_request(ctx: &Ctx<'_>, handler: fn(&Call<'_, '_>) -> Resp) -> Outcome {
    let Some(body) = ctx.json_body() else {
        return error(
            StatusCode::BAD_REQUEST,
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
            "invalid_request_error",
            None,
        )
        .into();
    };
    let Some(model) = body.get("model").and_then(Value::as_str).map(str::to_owned) else {
        return error(
            StatusCode::BAD_REQUEST,
            "you must provide a model parameter",
            "invalid_request_error",
            None,
        )
        .into();
    };
    let call = Call {
        ctx,
        faults: Faults::of(&model),
        model,
        body,
    };
    if let Some(outcome) = call.faults.outcome(call.stream(), server_error, overloaded) {
        return outcome;
    }
    if call.model.contains("echo") {
        // A careless compatible server: its 401 quotes the credential it was sent, in the body
        // and in a header.
        let sent = ctx.header("authorization").unwrap_or_default();
        let resp = error(
            StatusCode::UNAUTHORIZED,
            &format!("Incorrect API key provided: {sent}"),
            "invalid_request_error",
            Some("invalid_api_key"),
        );
        return with_header(
            resp,
            "www-authenticate",
            &format!("Bearer error=\"{sent}\""),
        )
        .into();
    }
    let request_id = ctx.id("req_");
    let resp = with_header(handler(&call), "x-request-id", &request_id);
    if call.model.contains("coding-mirror") || call.model.contains("charset-mirror") {
        // A careless upstream that quotes the credential it was sent in the answer's coding
        // or charset (a debugging gateway reflecting request headers).
        let sent = ctx.header("authorization").unwrap_or_default();
        let token = sent.strip_prefix("Bearer ").unwrap_or(sent).to_string();
        let mut resp = resp;
        let (name, value) = if call.model.contains("coding-mirror") {
            ("content-encoding", token)
        } else {
            (
                "content-type",
                format!("application/json; charset=x-{token}"),
            )
        };
        if let Ok(value) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(name, value);
        }
        return resp.into();
    }
    if call.model.contains("gzip") {
        // An upstream that compresses though asked not to (the body itself is left plain);
        // `gzip-lines` says so on a second line, after one that says `identity`.
        let mut resp = resp;
        let headers = resp.headers_mut();
        if call.model.contains("gzip-lines") {
            headers.insert("content-encoding", HeaderValue::from_static("identity"));
        }
        headers.append("content-encoding", HeaderValue::from_static("gzip"));
        return resp.into();
    }
    resp.into()
}

fn chat_usage(usage: Usage) -> Value {
    json!({
        "prompt_tokens": usage.input,
        "completion_tokens": usage.output,
        "total_tokens": usage.total(),
        "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": usage.cache_write, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0
        }
    })
}

fn chat(call: &Call<'_, '_>) -> Resp {
    let usage = Usage::for_chars(call.body.get("messages").map_or(0, text_chars))
        .billed(&call.model, &call.body);
    call.ctx.bill(usage);
    let id = call.ctx.id("chatcmpl-");
    let created = time_now();
    let model = call.model.as_str();
    let no_usage = model.contains("no-usage");
    if !call.stream() {
        let mut answer = json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": REPLY_TEXT, "refusal": null, "annotations": []},
                "logprobs": null,
                "finish_reason": "stop"
            }],
            "usage": chat_usage(usage),
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT
        });
        if no_usage && let Some(answer) = answer.as_object_mut() {
            answer.remove("usage");
        }
        return json(StatusCode::OK, &answer);
    }
    let include_usage = !no_usage
        && call
            .body
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true);
    let chunk = |delta: Value, finish: Value| {
        let mut chunk = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
        });
        if include_usage {
            chunk["usage"] = Value::Null;
        }
        sse_data(&chunk)
    };
    let mut frames = Vec::with_capacity(pieces().len() + 4);
    frames.push(chunk(
        json!({"role": "assistant", "content": "", "refusal": null}),
        Value::Null,
    ));
    for piece in pieces() {
        frames.push(chunk(json!({"content": piece}), Value::Null));
    }
    frames.push(chunk(json!({}), json!("stop")));
    if include_usage {
        frames.push(sse_data(&json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT,
            "choices": [],
            "usage": chat_usage(usage)
        })));
    }
    frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    stream(
        "text/event-stream; charset=utf-8",
        frames,
        call.ctx.pacing(&call.faults),
    )
}

/// The legacy completions API: `text_completion` objects, streamed as chunks of the same
/// object with `choices[].text`; usage in the answer, or when streamed only with
/// `stream_options.include_usage` (a last chunk with no choices).
fn completions(call: &Call<'_, '_>) -> Resp {
    let usage = Usage::for_chars(call.body.get("prompt").map_or(0, text_chars))
        .billed(&call.model, &call.body);
    call.ctx.bill(usage);
    let id = call.ctx.id("cmpl-");
    let created = time_now();
    let model = call.model.as_str();
    let usage = json!({
        "prompt_tokens": usage.input,
        "completion_tokens": usage.output,
        "total_tokens": usage.total()
    });
    let object = |choices: Value| {
        json!({
            "id": id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "system_fingerprint": FINGERPRINT,
            "choices": choices
        })
    };
    if !call.stream() {
        let mut answer = object(json!([{
            "text": REPLY_TEXT, "index": 0, "logprobs": null, "finish_reason": "stop"
        }]));
        answer["usage"] = usage;
        return json(StatusCode::OK, &answer);
    }
    let include_usage = call
        .body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let mut frames: Vec<Bytes> = pieces()
        .iter()
        .enumerate()
        .map(|(i, piece)| {
            let last = i + 1 == pieces().len();
            sse_data(&object(json!([{
                "text": piece, "index": 0, "logprobs": null,
                "finish_reason": if last { json!("stop") } else { Value::Null }
            }])))
        })
        .collect();
    if include_usage {
        let mut last = object(json!([]));
        last["usage"] = usage;
        frames.push(sse_data(&last));
    }
    frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    stream(
        "text/event-stream; charset=utf-8",
        frames,
        call.ctx.pacing(&call.faults),
    )
}

fn responses_usage(usage: Usage) -> Value {
    json!({
        "input_tokens": usage.input,
        // Current SDKs (openai-python 3.x) require `cache_write_tokens` in this object.
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": usage.cache_write},
        "output_tokens": usage.output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total()
    })
}

fn responses(call: &Call<'_, '_>) -> Resp {
    let (completed, events) = response_events(call);
    if !call.stream() {
        return json(StatusCode::OK, &completed);
    }
    let frames = events
        .iter()
        .map(|e| sse_event(e["type"].as_str().unwrap_or(""), e))
        .collect();
    stream(
        "text/event-stream; charset=utf-8",
        frames,
        call.ctx.pacing(&call.faults),
    )
}

/// One response to a Responses body: the completed response object, and the events that
/// stream it (`response.created` … `response.completed`), the same over SSE and WebSocket.
fn response_events(call: &Call<'_, '_>) -> (Value, Vec<Value>) {
    let body = &call.body;
    let chars =
        body.get("instructions").map_or(0, text_chars) + body.get("input").map_or(0, text_chars);
    let usage = Usage::for_chars(chars).billed(&call.model, body);
    call.ctx.bill(usage);
    let id = call.ctx.id("resp_");
    let msg_id = call.ctx.id("msg_");
    let created = time_now();
    let text_part = |text: &str| json!({"type": "output_text", "annotations": [], "logprobs": [], "text": text});
    let message = |status: &str, content: Value| json!({"id": msg_id, "type": "message", "status": status, "content": content, "role": "assistant"});
    let response = |status: &str, output: Value, usage: Value| {
        json!({
            "id": id,
            "object": "response",
            "created_at": created,
            "status": status,
            "background": false,
            "error": null,
            "incomplete_details": null,
            "instructions": body.get("instructions").cloned().unwrap_or(Value::Null),
            "max_output_tokens": body.get("max_output_tokens").cloned().unwrap_or(Value::Null),
            "model": call.model,
            "output": output,
            "parallel_tool_calls": true,
            "previous_response_id": body.get("previous_response_id").cloned().unwrap_or(Value::Null),
            "reasoning": {"effort": null, "summary": null},
            "service_tier": "default",
            "store": body.get("store").cloned().unwrap_or(Value::Bool(true)),
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": usage,
            "user": null,
            "metadata": {}
        })
    };
    let done_message = message("completed", json!([text_part(REPLY_TEXT)]));
    let completed = response("completed", json!([done_message]), responses_usage(usage));
    if body.get("store") != Some(&Value::Bool(false)) {
        call.ctx.store_response(&id, &completed);
    }

    let mut events = Vec::with_capacity(pieces().len() + 8);
    let mut seq = 0u64;
    let mut push = |name: &str, mut event: Value| {
        event["type"] = json!(name);
        event["sequence_number"] = json!(seq);
        seq += 1;
        events.push(event);
    };
    let in_progress = response("in_progress", json!([]), Value::Null);
    push("response.created", json!({"response": in_progress}));
    push("response.in_progress", json!({"response": in_progress}));
    push(
        "response.output_item.added",
        json!({"output_index": 0, "item": message("in_progress", json!([]))}),
    );
    push(
        "response.content_part.added",
        json!({"item_id": msg_id, "output_index": 0, "content_index": 0, "part": text_part("")}),
    );
    for piece in pieces() {
        push(
            "response.output_text.delta",
            json!({"item_id": msg_id, "output_index": 0, "content_index": 0, "delta": piece, "logprobs": []}),
        );
    }
    push(
        "response.output_text.done",
        json!({"item_id": msg_id, "output_index": 0, "content_index": 0, "text": REPLY_TEXT, "logprobs": []}),
    );
    push(
        "response.content_part.done",
        json!({"item_id": msg_id, "output_index": 0, "content_index": 0, "part": text_part(REPLY_TEXT)}),
    );
    push(
        "response.output_item.done",
        json!({"output_index": 0, "item": done_message}),
    );
    push("response.completed", json!({"response": completed}));
    (completed, events)
}

/// What a Responses WebSocket answers one `response.create` with (its other fields are a
/// Responses body): the events, or the fault its model asks for.
pub(crate) enum WsAnswer {
    /// These events, paced when the model is `slow`.
    Events(Vec<Value>),
    /// An `error` event (`error500`, `overloaded`, a body without a model).
    Error(Value),
    /// The first events, then the connection dropped (`cut`).
    Cut(Vec<Value>),
    /// Nothing (`hang`).
    Hang,
}

/// The answer to one Responses WebSocket `response.create` whose fields are `ctx`'s body.
pub(crate) fn ws_response(ctx: &Ctx<'_>) -> WsAnswer {
    let ws_error = |status: u16, message: &str, kind: &str| json!({"type": "error", "status": status, "error": {"type": kind, "code": null, "message": message, "param": null}});
    let Some(body) = ctx.json_body() else {
        return WsAnswer::Error(ws_error(
            400,
            "We could not parse the JSON body of your request.",
            "invalid_request_error",
        ));
    };
    let Some(model) = body.get("model").and_then(Value::as_str).map(str::to_owned) else {
        return WsAnswer::Error(ws_error(
            400,
            "you must provide a model parameter",
            "invalid_request_error",
        ));
    };
    let call = Call {
        ctx,
        faults: Faults::of(&model),
        model,
        body,
    };
    if call.faults.hang {
        return WsAnswer::Hang;
    }
    if call.faults.error500 {
        return WsAnswer::Error(ws_error(
            500,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
        ));
    }
    if call.faults.overloaded {
        return WsAnswer::Error(ws_error(
            503,
            "The engine is currently overloaded, please try again later.",
            "server_error",
        ));
    }
    let (_, events) = response_events(&call);
    if call.faults.cut {
        return WsAnswer::Cut(events.into_iter().take(CUT_AFTER_FRAMES).collect());
    }
    WsAnswer::Events(events)
}

/// Eight deterministic floats for `text`, unit length.
fn embedding_of(text: &str) -> [f32; 8] {
    // FNV-1a, then one step of a xorshift per dimension.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut v = [0f32; 8];
    for x in &mut v {
        h ^= h << 13;
        h ^= h >> 7;
        h ^= h << 17;
        *x = ((h >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
    }
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    v.map(|x| x / norm)
}

fn embeddings(call: &Call<'_, '_>) -> Resp {
    let input = call.body.get("input").cloned().unwrap_or(Value::Null);
    let items: Vec<Value> = match &input {
        Value::Array(items) if items.iter().all(|i| !i.is_number()) => items.clone(),
        _ => vec![input.clone()],
    };
    let base64 = call.body.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let data: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let vector = embedding_of(&item.to_string());
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let tokens = Usage::for_chars(text_chars(&input)).input;
    call.ctx.bill(Usage {
        input: tokens,
        output: 0,
        cache_write: 0,
    });
    json(
        StatusCode::OK,
        &json!({
            "object": "list",
            "data": data,
            "model": call.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
        }),
    )
}

fn model_object(id: &str, created: u64, owned_by: &str) -> Value {
    json!({"id": id, "object": "model", "created": created, "owned_by": owned_by})
}

fn models() -> Resp {
    let data: Vec<Value> = MODELS
        .iter()
        .map(|(id, created, owner)| model_object(id, *created, owner))
        .collect();
    json(StatusCode::OK, &json!({"object": "list", "data": data}))
}

fn model(id: &str) -> Resp {
    match MODELS.iter().find(|(m, _, _)| *m == id) {
        Some((id, created, owner)) => json(StatusCode::OK, &model_object(id, *created, owner)),
        None => json(
            StatusCode::NOT_FOUND,
            &json!({"error": {
                "message": format!("The model '{id}' does not exist"),
                "type": "invalid_request_error",
                "param": "model",
                "code": "model_not_found"
            }}),
        ),
    }
}
