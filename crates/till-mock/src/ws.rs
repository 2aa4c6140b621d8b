//! The OpenAI family's WebSockets: Responses WebSocket mode (`GET /v1/responses` upgraded,
//! answered per `response.create` with the same events the SSE stream has) and Realtime
//! (`GET /v1/realtime?model=M` upgraded: `session.created`, then per `response.create`
//! `response.created`, `response.output_text.delta` ×5, `response.output_text.done` and
//! `response.done` with usage).
//!
//! The upgrade is recorded like any request, and so is every client message after it (method
//! `WS`, the upgrade's path, query and headers, the message as its body), so tests can see
//! exactly what reached the provider. The key is `Authorization: Bearer KEY`, or the
//! `openai-insecure-api-key.KEY` subprotocol browsers use; a missing or unknown key is a 401
//! without an upgrade. The fault switches work by model name (the message's for Responses,
//! the query's for Realtime): `error500` and `overloaded` answer with an `error` event, `cut`
//! drops the connection after two events, `hang` never answers, `slow` paces the events.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::body::MockBody;
use super::openai::{self, WsAnswer};
use super::router::{CUT_AFTER_FRAMES, Ctx, Faults, Resp, pieces, text_chars};
use super::state::{RecordedRequest, lock};
use super::{OUTPUT_TOKENS, REPLY_TEXT, Shared, input_tokens};

/// The subprotocol entry that carries a key from a browser.
const KEY_PROTOCOL: &str = "openai-insecure-api-key.";

type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Whether a request asks to be upgraded to a WebSocket.
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

#[derive(Clone, Copy)]
enum Kind {
    Responses,
    Realtime,
}

/// Answers an upgrade: `101` and the session in the background, or an error without one.
pub(crate) fn upgrade(state: Arc<Shared>, mut req: Request<Incoming>) -> Resp {
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (parts, _) = req.into_parts();
    let ctx = Ctx {
        state: &state,
        method: &parts.method,
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &parts.headers,
        body: &[],
    };
    let upgrade = ctx.recorded();
    if state.record {
        lock(&state.requests).push(upgrade.clone());
    }
    let kind = match (&parts.method, ctx.path) {
        (&Method::GET, "/v1/responses") => Kind::Responses,
        (&Method::GET, "/v1/realtime") => Kind::Realtime,
        _ => return openai::not_found(&ctx),
    };
    let protocols: Vec<&str> = parts
        .headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let key = ctx
        .bearer()
        .or_else(|| protocols.iter().find_map(|p| p.strip_prefix(KEY_PROTOCOL)));
    match key {
        Some(key) if state.keys.is_active(key) => {}
        Some(key) => return openai::invalid_key(key),
        None => return openai::missing_key(),
    }
    let model = ctx.query_param("model").map(|m| m.into_owned());
    if matches!(kind, Kind::Realtime) && model.is_none() {
        return openai::error(
            StatusCode::BAD_REQUEST,
            "Missing required parameter: 'model'.",
            "invalid_request_error",
            Some("missing_required_parameter"),
        );
    }
    let Some(accept) = parts
        .headers
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| tokio_tungstenite::tungstenite::handshake::derive_accept_key(k.as_bytes()))
    else {
        return openai::error(
            StatusCode::BAD_REQUEST,
            "Missing Sec-WebSocket-Key.",
            "invalid_request_error",
            None,
        );
    };
    let echoed = protocols.contains(&"realtime").then_some("realtime");
    let mut resp = Response::new(MockBody::full(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(p) = echoed {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
    }
    headers.insert(
        "x-request-id",
        HeaderValue::from_str(&ctx.id("req_")).unwrap(),
    );
    let session = Session {
        state: Arc::clone(&state),
        method: parts.method.clone(),
        headers: parts.headers.clone(),
        upgrade,
        model,
        conversation_chars: 0,
    };
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        session.run(kind, socket).await;
    });
    resp
}

/// One open WebSocket.
struct Session {
    state: Arc<Shared>,
    method: Method,
    headers: HeaderMap,
    /// The upgrade as recorded: each message is recorded with its path, query and headers.
    upgrade: RecordedRequest,
    /// The Realtime session's model.
    model: Option<String>,
    /// Characters of text the Realtime conversation holds (its input for every response).
    conversation_chars: usize,
}

/// What to do after answering a message.
enum Next {
    Go,
    /// Drop the connection without a close frame (`cut`).
    Drop,
}

impl Session {
    async fn run(mut self, kind: Kind, mut socket: Socket) {
        if let Kind::Realtime = kind {
            let created = self.session_event("session.created");
            if socket
                .send(Message::text(created.to_string()))
                .await
                .is_err()
            {
                return;
            }
        }
        while let Some(msg) = socket.next().await {
            let text = match msg {
                Ok(Message::Text(text)) => text,
                // tungstenite answers pings itself; the client's close ends the session.
                Ok(Message::Close(_)) | Err(_) => return,
                Ok(_) => continue,
            };
            self.record(&text);
            let answer = match kind {
                Kind::Responses => self.responses(&text),
                Kind::Realtime => self.realtime(&text),
            };
            let (events, next) = match answer {
                Some(a) => a,
                None => continue,
            };
            for (i, event) in events.iter().enumerate() {
                if i > 0 && self.slow() {
                    tokio::time::sleep(self.state.slow_delay).await;
                }
                if socket.send(Message::text(event.to_string())).await.is_err() {
                    return;
                }
            }
            if let Next::Drop = next {
                // Dropping the stream closes the TCP connection without a close frame.
                return;
            }
        }
    }

    fn slow(&self) -> bool {
        self.model.as_deref().is_some_and(|m| Faults::of(m).slow)
    }

    fn record(&self, text: &str) {
        if !self.state.record {
            return;
        }
        let mut entry = self.upgrade.clone();
        entry.method = "WS".to_owned();
        entry.body = (text.len() <= super::state::RECORDED_BODY_LIMIT).then(|| text.to_owned());
        entry.body_len = text.len();
        lock(&self.state.requests).push(entry);
    }

    fn ctx<'a>(&'a self, body: &'a [u8]) -> Ctx<'a> {
        Ctx {
            state: &self.state,
            method: &self.method,
            path: &self.upgrade.path,
            query: self.upgrade.query.as_deref(),
            headers: &self.headers,
            body,
        }
    }

    /// A Responses WebSocket message: `response.create` gets the response's events.
    fn responses(&mut self, text: &str) -> Option<(Vec<Value>, Next)> {
        let mut body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        if body.get("type").and_then(Value::as_str) != Some("response.create") {
            let error = json!({"type": "error", "status": 400, "error": {"type": "invalid_request_error", "code": "unknown_event", "message": "Unsupported event type.", "param": "type"}});
            return Some((vec![error], Next::Go));
        }
        if let Some(map) = body.as_object_mut() {
            map.remove("type");
        }
        self.model = body.get("model").and_then(Value::as_str).map(str::to_owned);
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        match openai::ws_response(&self.ctx(&bytes)) {
            WsAnswer::Events(events) => Some((events, Next::Go)),
            WsAnswer::Error(error) => Some((vec![error], Next::Go)),
            WsAnswer::Cut(events) => Some((events, Next::Drop)),
            WsAnswer::Hang => None,
        }
    }

    /// A Realtime client event.
    fn realtime(&mut self, text: &str) -> Option<(Vec<Value>, Next)> {
        let event: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
        let faults = Faults::of(self.model.as_deref().unwrap_or(""));
        match kind {
            "session.update" => {
                if let Some(m) = event.pointer("/session/model").and_then(Value::as_str) {
                    self.model = Some(m.to_owned());
                }
                Some((vec![self.session_event("session.updated")], Next::Go))
            }
            "conversation.item.create" => {
                let item = event.get("item").cloned().unwrap_or(Value::Null);
                self.conversation_chars += text_chars(&item);
                let created = json!({"type": "conversation.item.created", "event_id": self.id("event_"), "previous_item_id": null, "item": item});
                Some((vec![created], Next::Go))
            }
            "response.create" if faults.hang => None,
            "response.create" if faults.error500 || faults.overloaded => {
                let error = json!({"type": "error", "event_id": self.id("event_"), "error": {"type": "server_error", "code": null, "message": "The server had an error while processing your request. Sorry about that!", "param": null, "event_id": event.get("event_id")}});
                Some((vec![error], Next::Go))
            }
            "response.create" => {
                let instructions = event
                    .pointer("/response/instructions")
                    .map_or(0, text_chars);
                let events = self.realtime_response(self.conversation_chars + instructions);
                if faults.cut {
                    let first = events.into_iter().take(CUT_AFTER_FRAMES).collect();
                    return Some((first, Next::Drop));
                }
                Some((events, Next::Go))
            }
            // Audio buffers, cancellations, item edits: accepted without an answer.
            _ => None,
        }
    }

    fn id(&self, prefix: &str) -> String {
        self.state.ids.next(prefix)
    }

    fn session_event(&self, kind: &str) -> Value {
        json!({
            "type": kind,
            "event_id": self.id("event_"),
            "session": {
                "type": "realtime",
                "object": "realtime.session",
                "id": self.id("sess_"),
                "model": self.model,
                "output_modalities": ["text"],
                "instructions": "",
                "tools": [],
                "tool_choice": "auto",
                "max_output_tokens": "inf"
            }
        })
    }

    /// The events of one Realtime response to a conversation of `chars` characters.
    fn realtime_response(&self, chars: usize) -> Vec<Value> {
        let id = self.id("resp_");
        let item = self.id("item_");
        let input = input_tokens(chars);
        let response = |status: &str, output: Value, usage: Value| json!({"object": "realtime.response", "id": id, "status": status, "status_details": null, "output": output, "usage": usage, "metadata": null});
        let mut events = vec![json!({
            "type": "response.created",
            "event_id": self.id("event_"),
            "response": response("in_progress", json!([]), Value::Null)
        })];
        for piece in pieces() {
            events.push(json!({"type": "response.output_text.delta", "event_id": self.id("event_"), "response_id": id, "item_id": item, "output_index": 0, "content_index": 0, "delta": piece}));
        }
        events.push(json!({"type": "response.output_text.done", "event_id": self.id("event_"), "response_id": id, "item_id": item, "output_index": 0, "content_index": 0, "text": REPLY_TEXT}));
        let output = json!([{"id": item, "object": "realtime.item", "type": "message", "status": "completed", "role": "assistant", "content": [{"type": "output_text", "text": REPLY_TEXT}]}]);
        let usage = json!({
            "total_tokens": input + OUTPUT_TOKENS,
            "input_tokens": input,
            "output_tokens": OUTPUT_TOKENS,
            "input_token_details": {"text_tokens": input, "audio_tokens": 0, "cached_tokens": 0},
            "output_token_details": {"text_tokens": OUTPUT_TOKENS, "audio_tokens": 0}
        });
        events.push(json!({
            "type": "response.done",
            "event_id": self.id("event_"),
            "response": response("completed", output, usage)
        }));
        events
    }
}
