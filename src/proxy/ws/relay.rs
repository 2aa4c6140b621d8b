//! One upgraded WebSocket, relayed message by message between the client and the provider.
//!
//! Every client message is read whole (at most `[proxy] max_body_bytes`), checked, and what
//! goes upstream is the parse till checked, re-serialised; server messages go to the client
//! as they came, one at a time, each looked at for what it says about the response in flight.
//! Nothing is buffered beyond the message being relayed: a side that stops reading stops the
//! relay of the other side's messages (bounded by `upstream_timeout`).
//!
//! - A message that starts a response (Responses' `response.create`) is a request: the key is
//!   authenticated again (a key revoked or expired since the upgrade stops here), its body is
//!   inspected, admitted and rewritten by the HTTP path's phases, and it gets its own ledger
//!   row once its terminal event arrives, settled like an HTTP response. One response is in
//!   flight at a time: till attributes every event to it.
//! - Other messages (Realtime's events) pass after the key is checked again and every `model`
//!   they name is found within the key's scope. Responses the Realtime server starts, by
//!   voice activity or on request, get one ledger row each from their `response.done`.
//! - A refused message is answered with an error event in the provider's format and not
//!   forwarded; the socket stays usable. A refusal of the key itself (revoked, expired, signed
//!   by a retired mint key) closes the socket with code 1008 after its error event.
//! - Pings and pongs pass through both ways (a client's only while its key stands); a close
//!   from either side closes the other with the same frame. A client message arriving holds
//!   the bodies' shared room and must be whole within `body_timeout` ([`super::arriving`]). A client that leaves with a response in flight is not waited on, but the
//!   provider is read for up to [`DRAIN_LIMIT`] more to learn the response's usage.
//! - No message from the provider during a response, or none either way between responses,
//!   for `upstream_timeout` closes the socket (pings and pongs are no messages here). When the proxy stops, no new response starts,
//!   a socket with none in flight closes at once (1001), and one still running when the grace
//!   ends is cut off with an error event and recorded as interrupted.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http::HeaderMap;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::time::Duration;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Utf8Bytes;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::childkey::{RequestFacts, Verified};
use crate::providers::{Provider, WsClientEvent, WsRoute, WsServerEvent};
use crate::proxy::body::{DRAIN_LIMIT, Finished};
use crate::proxy::errors::ProxyError;
use crate::proxy::inspect as body_inspect;
use crate::proxy::lifecycle::Stop;
use crate::proxy::phases::{self, Asked, Ctx};
use crate::proxy::state::{NoRoom, RequestRecord, State};
use crate::upstream::Socket;

use super::arriving::Way;

/// The client's side of an upgraded connection.
pub(super) type ClientSocket =
    WebSocketStream<super::arriving::Counted<TokioIo<hyper::upgrade::Upgraded>>>;

/// What an open WebSocket keeps of its upgrade.
pub(in crate::proxy) struct Session {
    pub state: Arc<State>,
    pub provider: Provider,
    /// The canonical path after the provider prefix.
    pub rest: String,
    pub route: WsRoute,
    /// The till key the socket opened with; every message is checked with it again.
    pub key: String,
    /// The upgrade's headers as forwarded (for the checks that read headers).
    pub headers: HeaderMap,
    /// The session's model when the upgrade named one (Realtime).
    pub model: Option<String>,
    /// The root key the socket opened with: taken out of every message to the client.
    pub root: Arc<secrecy::SecretString>,
    /// The upgrade's record: which key, which endpoint; each response's record starts from it.
    pub template: RequestRecord,
    pub stop: Stop,
    /// This connection's place among `[proxy] max_connections`, held until the socket ends.
    pub _slot: Arc<tokio::sync::OwnedSemaphorePermit>,
    /// The socket's place in its key lineage's share of the connections.
    pub _hold: crate::proxy::state::Place,
    /// The client's message arriving now ([`super::arriving`]).
    pub arriving: Arc<super::arriving::Arriving>,
}

impl Session {
    /// A record for a new response on this socket.
    fn fresh(&self, model: Option<String>) -> RequestRecord {
        let mut r = RequestRecord::new(&self.provider.name, Instant::now());
        r.binding = self.template.binding;
        r.lineage = self.template.lineage.clone();
        r.endpoint = self.template.endpoint;
        r.model = model.or_else(|| self.template.model.clone());
        r
    }

    fn error_event(&self, err: &ProxyError) -> Message {
        let text = self.provider.api.wire().ws_error_event(
            self.route.endpoint.op,
            err.status.as_u16(),
            err.kind,
            &err.message,
        );
        Message::text(text)
    }

    fn limit(&self) -> Duration {
        self.state.options.upstream_timeout
    }
}

/// Both sockets and what is under way between them.
struct Link {
    client: ClientSocket,
    upstream: Socket,
    /// The response in flight, recorded when its terminal event arrives.
    flight: Option<RequestRecord>,
    /// The client has not closed (or gone away).
    client_open: bool,
    /// The proxy is stopping: no new response starts.
    draining: bool,
    /// The session's model as the provider last reported it.
    model: Option<String>,
}

enum Flow {
    Go,
    End,
}

/// Relays until either side closes, the socket idles out or the proxy's stop cuts it off.
pub(super) async fn run(s: Session, client: ClientSocket, upstream: Socket) {
    let closing = s.stop.closing();
    let cut = s.stop.cut();
    tokio::pin!(closing, cut);
    let mut link = Link {
        client,
        upstream,
        flight: None,
        client_open: true,
        draining: false,
        model: s.model.clone(),
    };
    let mut deadline = tokio::time::Instant::now() + s.limit();
    loop {
        let flow = tokio::select! {
            biased;
            () = &mut cut => interrupted(&s, &mut link).await,
            () = &mut closing, if !link.draining => {
                link.draining = true;
                if link.flight.is_none() {
                    close_both(&s, &mut link, CloseCode::Away, "till is shutting down").await;
                    Flow::End
                } else {
                    Flow::Go
                }
            }
            () = tokio::time::sleep_until(deadline) => idle(&s, &mut link).await,
            msg = link.upstream.next() => {
                // Only messages count as activity: pings and pongs, which either side may send
                // as often as it likes, keep no socket open.
                if link.client_open && is_data(&msg) {
                    deadline = tokio::time::Instant::now() + s.limit();
                }
                match s.arriving.largest(&s.state, Way::FromProvider, data_len(&msg)) {
                    Err(why) => too_large(&s, &mut link, why).await,
                    Ok(()) => from_upstream(&s, &mut link, msg).await,
                }
            }
            msg = link.client.next(), if link.client_open => {
                // What the client's buffers held of this message, or of this control frame,
                // is given back to the bodies' allowance.
                match &msg {
                    Some(Ok(Message::Ping(p) | Message::Pong(p))) => {
                        s.arriving.control(&s.state, p.len());
                    }
                    Some(Ok(Message::Frame(_))) => {}
                    _ => s.arriving.whole(&s.state),
                }
                if link.flight.is_none() && is_data(&msg) {
                    deadline = tokio::time::Instant::now() + s.limit();
                }
                match s.arriving.largest(&s.state, Way::FromClient, data_len(&msg)) {
                    Ok(()) => {
                        let flow = from_client(&s, &mut link, msg).await;
                        if !link.client_open {
                            // Gone with a response in flight: read the provider a little longer.
                            deadline = tokio::time::Instant::now() + DRAIN_LIMIT.min(s.limit());
                        }
                        flow
                    }
                    Err(why) => too_large(&s, &mut link, why).await,
                }
            }
        };
        if let Flow::End = flow {
            break;
        }
    }
}

/// A text or binary message (not a control frame, a close or an error).
fn is_data(msg: &Option<Result<Message, tungstenite::Error>>) -> bool {
    matches!(msg, Some(Ok(Message::Text(_) | Message::Binary(_))))
}

/// The length of a text or binary message (0 for anything else).
fn data_len(msg: &Option<Result<Message, tungstenite::Error>>) -> usize {
    match msg {
        Some(Ok(Message::Text(t))) => t.len(),
        Some(Ok(Message::Binary(b))) => b.len(),
        _ => 0,
    }
}

/// The bodies' shared room, or the share of it the key's lineage may hold (`why`), cannot hold
/// the room this socket's buffers now take: it is closed (1013, try again later), as an HTTP
/// body past the room is refused with 503.
async fn too_large(s: &Session, link: &mut Link, why: NoRoom) -> Flow {
    let message = match why {
        NoRoom::All => {
            "the bodies and messages till reads at once hold all the room it allows; open a new WebSocket later"
        }
        NoRoom::Lineage => {
            "the bodies and messages of this key and the keys narrowed from it hold all the room till allows one key; open a new WebSocket once some of them are done"
        }
    };
    let err = ProxyError::new(503, "busy", message);
    if link.client_open {
        let _ = send(&mut link.client, s.error_event(&err), s.limit()).await;
    }
    end_flight(
        s,
        link,
        503,
        "the socket's messages took more room than till allows",
    );
    close_both(
        s,
        link,
        CloseCode::Again,
        "till holds all the room it allows",
    )
    .await;
    Flow::End
}

async fn from_client(
    s: &Session,
    link: &mut Link,
    msg: Option<Result<Message, tungstenite::Error>>,
) -> Flow {
    match msg {
        Some(Ok(Message::Text(text))) => client_text(s, link, text).await,
        Some(Ok(Message::Binary(_))) => {
            let err = ProxyError::new(
                400,
                "websocket",
                "till forwards only JSON text messages on this WebSocket",
            );
            refuse(s, link, s.fresh(None), err).await
        }
        // A control frame passes only while the key stands, as a message would: a client
        // that only pings keeps no socket once its key is revoked or expired.
        Some(Ok(control @ (Message::Ping(_) | Message::Pong(_)))) => {
            let mut ctx = Ctx::new(&s.state, &s.provider, &s.rest, s.fresh(link.model.clone()));
            match key_stands(s, link.model.as_deref(), &mut ctx).await {
                Ok(()) => to_upstream(s, link, control).await,
                Err(err) => refuse(s, link, ctx.record, err).await,
            }
        }
        Some(Ok(Message::Frame(_))) => Flow::Go,
        Some(Ok(Message::Close(frame))) => client_left(s, link, frame).await,
        Some(Err(_)) | None => client_left(s, link, None).await,
    }
}

/// One client text message: the key again, then what the family says the event is.
async fn client_text(s: &Session, link: &mut Link, text: Utf8Bytes) -> Flow {
    if link.draining {
        let err = ProxyError::new(
            503,
            "shutting_down",
            "till is shutting down and starts nothing new; open a new WebSocket once a till proxy runs",
        );
        return send_client(s, link, s.error_event(&err)).await;
    }
    // The message's tree, and the room it held, are gone before the client hears of a
    // refusal: a client that sends its next message (or opens its next socket) at once does
    // not meet this one's room still counted.
    match checked_text(s, link, text).await {
        Ok(flow) => flow,
        Err((record, err)) => refuse(s, link, record, err).await,
    }
}

/// A client's text message checked, and sent on when it passes; the refusal, with the
/// request's record, when it does not.
async fn checked_text(
    s: &Session,
    link: &mut Link,
    text: Utf8Bytes,
) -> Result<Flow, (RequestRecord, ProxyError)> {
    let mut ctx = Ctx::new(&s.state, &s.provider, &s.rest, s.fresh(link.model.clone()));
    // Bounded as a request body's parse is: a message of many small values must not be built
    // into a tree of twenty and more times its length first.
    let (map, size) = match crate::json::skim_text_within(&text, &[], s.state.tree_room()) {
        Ok(Some(crate::json::Skimmed {
            value: Value::Object(map),
            size,
            ..
        })) => (map, size),
        Ok(None) => {
            let err = ProxyError::new(
                413,
                "too_many_values",
                "this WebSocket message holds so many JSON values that till would need more memory than one key's bodies may hold to check it; send it in fewer, larger values",
            );
            return Err((ctx.record, err));
        }
        _ => {
            let err = ProxyError::new(
                400,
                "bad_request",
                "till could not read this WebSocket message as a JSON object; it forwards only messages it can check",
            );
            return Err((ctx.record, err));
        }
    };
    // Its tree counts against the room for bodies while this message is handled, as a request
    // body's does until the request has gone upstream.
    let mut tree = s.state.bodies.hold(s.arriving.lineage());
    if tree.grow_to(size as u64).is_err() {
        let err = ProxyError::new(
            503,
            "busy",
            "the bodies and messages of this key and the keys narrowed from it, or of all keys, hold all the room till allows at once; send this message again in a moment",
        )
        .retry_after(1);
        return Err((ctx.record, err));
    }
    let Some(kind) = map.get("type").and_then(Value::as_str).map(str::to_string) else {
        let err = ProxyError::new(400, "bad_request", "the event has no string `type`");
        return Err((ctx.record, err));
    };
    let caller = match phases::caller_with(&mut ctx, Some(&s.key)).await {
        Ok(c) => c,
        Err(err) => return Err((ctx.record, err)),
    };
    let verified = match phases::authenticate(&mut ctx, &caller) {
        Ok(v) => v,
        Err(err) => return Err((ctx.record, err)),
    };
    // A root key that `till remove` took since the socket opened carries no further message
    // (a rotated one does: the socket keeps the key it opened with until the provider ends it).
    if let Err(err) = s.state.root_key(&s.provider.name).await {
        return Err((ctx.record, err));
    }
    let wire = s.provider.api.wire();
    match wire.ws_client_event(s.route.endpoint.op, &kind) {
        WsClientEvent::Refuse(why) => Err((ctx.record, ProxyError::new(400, "websocket", why))),
        WsClientEvent::Create(op) => {
            let body = Bytes::from(text);
            match create(s, link, &mut ctx, &verified, op, body).await {
                Ok(flow) => Ok(flow),
                Err(err) => Err((ctx.record, err)),
            }
        }
        WsClientEvent::Pass => {
            let value = Value::Object(map);
            if let Err(err) = check_models(s, link, &ctx, &verified, &value) {
                return Err((ctx.record, err));
            }
            Ok(to_upstream(s, link, Message::text(value.to_string())).await)
        }
    }
}

/// The key the socket opened with, checked again: its signature's mint key, revocation,
/// expiry and session, and the session's model.
async fn key_stands(s: &Session, model: Option<&str>, ctx: &mut Ctx<'_>) -> Result<(), ProxyError> {
    let caller = phases::caller_with(ctx, Some(&s.key)).await?;
    let verified = phases::authenticate(ctx, &caller)?;
    verified
        .check(
            &RequestFacts {
                provider: &s.provider.name,
                model: model.or(s.template.model.as_deref()),
                endpoint: s.route.endpoint.class,
                session: s.state.options.session.as_deref(),
                requested_output_tokens: None,
            },
            ctx.now,
        )
        .map(drop)
        .map_err(|d| phases::denial_error(&d))
}

/// A message that starts a response: the HTTP path's inspect, admit and rewrite phases on its
/// body, then the rewritten body upstream and the response in flight.
async fn create(
    s: &Session,
    link: &mut Link,
    ctx: &mut Ctx<'_>,
    verified: &Verified<'_>,
    op: crate::providers::Op,
    body: Bytes,
) -> Result<Flow, ProxyError> {
    if link.flight.is_some() {
        return Err(ProxyError::new(
            409,
            "in_flight",
            "till relays one response at a time on a WebSocket; send the next response.create after this one's final event",
        ));
    }
    let mut endpoint = s.route.endpoint.clone();
    endpoint.op = op;
    let inspected = body_inspect::inspect_within(
        op,
        None,
        Some("application/json"),
        &body,
        s.state.tree_room(),
    )?;
    let model = inspected.model.clone();
    ctx.record.model = model.clone();
    ctx.record.endpoint = Some(endpoint.class);
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.headers = s.headers.clone();
    let mut asked = Asked {
        parts,
        query: String::new(),
        body,
        endpoint,
        inspected,
        model,
        sse: true,
        held: None,
    };
    let admission = phases::admit(ctx, verified, &asked).await?;
    let outgoing = phases::rewrite(ctx, &mut asked, &admission)?;
    let text = Utf8Bytes::try_from(outgoing.body)
        .map_err(|_| ProxyError::new(500, "internal", "till wrote a request that is not UTF-8"))?;
    ctx.record.status = 200;
    link.flight = Some(ctx.record.take());
    if !send(&mut link.upstream, Message::Text(text), s.limit()).await {
        upstream_lost(s, link).await;
        return Ok(Flow::End);
    }
    Ok(Flow::Go)
}

/// Every `model` a passing event names, and the session's own, must be within the key's
/// scope; checking the session's model also re-checks the key's expiry and session.
fn check_models(
    s: &Session,
    link: &Link,
    ctx: &Ctx<'_>,
    verified: &Verified<'_>,
    event: &Value,
) -> Result<(), ProxyError> {
    let mut models = Vec::new();
    models_in(event, &mut models).map_err(|why| ProxyError::new(400, "bad_request", why))?;
    let session = link.model.as_deref().or(s.template.model.as_deref());
    let check = |model: Option<&str>| {
        verified
            .check(
                &RequestFacts {
                    provider: &s.provider.name,
                    model,
                    endpoint: s.route.endpoint.class,
                    session: s.state.options.session.as_deref(),
                    requested_output_tokens: None,
                },
                ctx.now,
            )
            .map(|_| ())
            .map_err(|d| phases::denial_error(&d))
    };
    check(session)?;
    models.into_iter().try_for_each(|m| check(Some(m)))
}

/// Every string under a `model` key, anywhere in `v` but a tool's `parameters` (its schema,
/// where `model` is an ordinary property). Refused: a `model` in other letter case (a parser
/// that matches names case-insensitively reads `Model` as `model`), a `model` that is not a
/// string (a list of models, an object a server may read an id from, `null` for the
/// provider's choice), and a name a router may read as several models or that no model has
/// (a `,`, whitespace, a control character, more than 256 bytes), as in a request's body.
fn models_in<'v>(v: &'v Value, out: &mut Vec<&'v str>) -> Result<(), String> {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                if k != "model" && k.eq_ignore_ascii_case("model") {
                    return Err(format!(
                        "the field `{k}` differs from `model` only in letter case; till refuses names other parsers could read differently"
                    ));
                }
                match (k.as_str(), v) {
                    ("model", Value::String(m)) => {
                        if let Some(why) = crate::proxy::inspect::model_name_refusal(m) {
                            return Err(why);
                        }
                        out.push(m);
                    }
                    ("model", _) => return Err("`model` must be a string".into()),
                    ("parameters", _) => {}
                    _ => models_in(v, out)?,
                }
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(|v| models_in(v, out)),
        _ => Ok(()),
    }
}

async fn from_upstream(
    s: &Session,
    link: &mut Link,
    msg: Option<Result<Message, tungstenite::Error>>,
) -> Flow {
    let msg = match msg.map(|m| m.map(|m| scrubbed(m, &s.root))) {
        Some(Ok(Message::Frame(_))) => return Flow::Go,
        Some(Ok(Message::Close(frame))) => {
            end_flight(s, link, 502, "the provider closed the WebSocket");
            if link.client_open {
                let _ = tokio::time::timeout(s.limit(), link.client.close(frame)).await;
            }
            return Flow::End;
        }
        Some(Err(_)) | None => {
            upstream_lost(s, link).await;
            return Flow::End;
        }
        Some(Ok(msg)) => msg,
    };
    let seen = match &msg {
        Message::Text(text) => serde_json::from_str::<Value>(text).ok().map(|v| {
            (
                s.provider
                    .api
                    .wire()
                    .ws_server_event(s.route.endpoint.op, &v),
                v,
            )
        }),
        _ => None,
    };
    if link.client_open && !send(&mut link.client, msg, s.limit()).await {
        link.client_open = false;
    }
    if let Some((event, v)) = seen {
        observe(s, link, &event, &v);
    }
    if link.flight.is_none() && (link.draining || !link.client_open) {
        let (code, why) = if link.draining {
            (CloseCode::Away, "till is shutting down")
        } else {
            (CloseCode::Normal, "")
        };
        close_both(s, link, code, why).await;
        return Flow::End;
    }
    Flow::Go
}

/// `msg` without the root key in it (an upstream that echoes what it was sent). As text
/// answers over HTTP are, a message is cut at its first NUL byte: the key in UTF-16 or UTF-32
/// (every other byte a NUL) is not the bytes the key's search looks for, and no JSON event
/// holds a raw NUL.
fn scrubbed(msg: Message, root: &secrecy::SecretString) -> Message {
    use crate::proxy::scrub::{holds, whole};
    let msg = cut_at_nul(msg);
    let masked = |b: &[u8]| {
        let mut bytes = b.to_vec();
        whole(&mut bytes, root);
        bytes
    };
    match msg {
        // Only ASCII `*` replaced the key's bytes, which were whole characters: still text.
        Message::Text(text) if holds(text.as_bytes(), root) => Message::Text(
            String::from_utf8(masked(text.as_bytes()))
                .unwrap_or_default()
                .into(),
        ),
        Message::Binary(data) if holds(&data, root) => Message::Binary(masked(&data).into()),
        Message::Ping(data) if holds(&data, root) => Message::Ping(masked(&data).into()),
        Message::Pong(data) if holds(&data, root) => Message::Pong(masked(&data).into()),
        // A close reason that holds the key is dropped; the code stays.
        Message::Close(Some(frame)) if holds(frame.reason.as_bytes(), root) => {
            Message::Close(Some(tungstenite::protocol::CloseFrame {
                code: frame.code,
                reason: "".into(),
            }))
        }
        msg => msg,
    }
}

/// `msg` up to its first NUL byte (a text, binary, ping or pong message, a close frame's
/// reason; the others whole).
fn cut_at_nul(msg: Message) -> Message {
    let nul = |b: &[u8]| memchr::memchr(0, b);
    match msg {
        Message::Text(text) => match nul(text.as_bytes()) {
            // A NUL is a character of its own in UTF-8: the text before it is whole.
            Some(at) => Message::Text(text.as_str()[..at].into()),
            None => Message::Text(text),
        },
        Message::Binary(b) => match nul(&b) {
            Some(at) => Message::Binary(b.slice(..at)),
            None => Message::Binary(b),
        },
        Message::Ping(b) => match nul(&b) {
            Some(at) => Message::Ping(b.slice(..at)),
            None => Message::Ping(b),
        },
        Message::Pong(b) => match nul(&b) {
            Some(at) => Message::Pong(b.slice(..at)),
            None => Message::Pong(b),
        },
        Message::Close(Some(frame)) => match nul(frame.reason.as_bytes()) {
            Some(at) => Message::Close(Some(tungstenite::protocol::CloseFrame {
                code: frame.code,
                reason: frame.reason.as_str()[..at].into(),
            })),
            None => Message::Close(Some(frame)),
        },
        msg => msg,
    }
}

/// What a server event says about the response in flight; a finished response is recorded.
fn observe(s: &Session, link: &mut Link, event: &WsServerEvent, v: &Value) {
    if let Some(m) = &event.model {
        link.model = Some(m.clone());
    }
    if link.flight.is_none() && (event.started || event.ended) {
        // A response the server started itself (Realtime); it has no reservation to settle.
        let mut record = s.fresh(link.model.clone());
        record.status = 200;
        link.flight = Some(record);
    }
    if let Some(record) = &mut link.flight
        && record.ttfb.is_none()
    {
        record.ttfb = Some(record.started.elapsed());
    }
    if event.ended {
        // A count that is not one makes the usage unknown: the reservation is charged, as
        // over HTTP.
        let unreadable = crate::proxy::meter::unreadable_usage(s.provider.api, v);
        finish(
            s,
            link,
            Finished {
                usage: event.usage.filter(|_| !unreadable),
                completed: true,
                ..Finished::default()
            },
        );
    } else if event.error && link.flight.is_some() {
        let status = v.get("status").and_then(Value::as_u64).unwrap_or(500);
        if let Some(record) = &mut link.flight {
            record.status = u16::try_from(status).unwrap_or(500);
        }
        finish(
            s,
            link,
            Finished {
                error: Some("the provider answered with an error event".into()),
                ..Finished::default()
            },
        );
    }
}

/// Records the response in flight, if any.
fn finish(s: &Session, link: &mut Link, finished: Finished) {
    if let Some(record) = link.flight.take() {
        let client_gone = finished.client_gone || !link.client_open;
        record.finish(
            &s.state,
            Some(Finished {
                client_gone,
                ..finished
            }),
        );
    }
}

/// Records the response in flight as cut off (status `status`, with `why`).
fn end_flight(s: &Session, link: &mut Link, status: u16, why: &str) {
    if let Some(record) = &mut link.flight {
        record.status = status;
    }
    finish(
        s,
        link,
        Finished {
            error: Some(why.to_string()),
            ..Finished::default()
        },
    );
}

/// The provider's side failed: the client hears of it, and the response in flight is cut.
async fn upstream_lost(s: &Session, link: &mut Link) {
    let had_flight = link.flight.is_some();
    end_flight(s, link, 502, "the connection to the provider was lost");
    if link.client_open {
        if had_flight {
            let err = ProxyError::new(
                502,
                "upstream",
                format!("till lost the connection to {}", s.provider.name),
            );
            let _ = send(&mut link.client, s.error_event(&err), s.limit()).await;
        }
        let frame = close_frame(CloseCode::Error, "the connection to the provider was lost");
        let _ = tokio::time::timeout(s.limit(), link.client.close(Some(frame))).await;
    }
}

/// The client closed or went away: the provider is closed too, unless a response is still in
/// flight, whose usage is then read for up to [`DRAIN_LIMIT`] before it is.
async fn client_left(s: &Session, link: &mut Link, frame: Option<CloseFrame>) -> Flow {
    link.client_open = false;
    // Sends the close reply tungstenite queued, if the client is still there to take it.
    let _ = tokio::time::timeout(Duration::from_secs(1), link.client.flush()).await;
    if link.flight.is_some() {
        return Flow::Go;
    }
    let _ = tokio::time::timeout(s.limit(), link.upstream.close(frame)).await;
    Flow::End
}

/// Nothing arrived for too long: the response in flight (if any) is cut, both sides closed.
async fn idle(s: &Session, link: &mut Link) -> Flow {
    if link.flight.is_some() && link.client_open {
        let err = ProxyError::new(
            504,
            "upstream_timeout",
            format!(
                "{} sent nothing for {} s",
                s.provider.name,
                s.limit().as_secs()
            ),
        );
        let _ = send(&mut link.client, s.error_event(&err), s.limit()).await;
    }
    end_flight(s, link, 504, "the provider sent nothing for too long");
    close_both(s, link, CloseCode::Away, "idle for too long").await;
    Flow::End
}

/// The stop's grace is over: what is in flight is interrupted, both sides closed.
async fn interrupted(s: &Session, link: &mut Link) -> Flow {
    if link.flight.is_some() && link.client_open {
        let err = ProxyError::new(
            503,
            "shutting_down",
            "till is shutting down and could not finish this response; send it again once a till proxy runs",
        );
        let _ = send(
            &mut link.client,
            s.error_event(&err),
            Duration::from_secs(1),
        )
        .await;
    }
    finish(
        s,
        link,
        Finished {
            interrupted: true,
            ..Finished::default()
        },
    );
    close_both(s, link, CloseCode::Away, "till is shutting down").await;
    Flow::End
}

/// Refuses one client message: recorded, answered with an error event; a refused key, or a
/// root key gone from till, also closes the socket (1008), cutting off any response in flight.
async fn refuse(s: &Session, link: &mut Link, record: RequestRecord, err: ProxyError) -> Flow {
    record.refused(&s.state, &err);
    if let Flow::End = send_client(s, link, s.error_event(&err)).await {
        return Flow::End;
    }
    if err.status.as_u16() == 401 || err.kind == "no_root_key" {
        end_flight(s, link, 401, "the key was refused");
        close_both(s, link, CloseCode::Policy, "till refused this key").await;
        return Flow::End;
    }
    Flow::Go
}

async fn send_client(s: &Session, link: &mut Link, msg: Message) -> Flow {
    if send(&mut link.client, msg, s.limit()).await {
        Flow::Go
    } else {
        client_left(s, link, None).await
    }
}

async fn to_upstream(s: &Session, link: &mut Link, msg: Message) -> Flow {
    if send(&mut link.upstream, msg, s.limit()).await {
        Flow::Go
    } else {
        upstream_lost(s, link).await;
        Flow::End
    }
}

/// Sends one message within `limit`; whether it went.
async fn send<S>(sock: &mut S, msg: Message, limit: Duration) -> bool
where
    S: futures_util::Sink<Message, Error = tungstenite::Error> + Unpin,
{
    matches!(
        tokio::time::timeout(limit, sock.send(msg)).await,
        Ok(Ok(()))
    )
}

async fn close_both(s: &Session, link: &mut Link, code: CloseCode, why: &str) {
    let limit = Duration::from_secs(1).min(s.limit());
    if link.client_open {
        let frame = close_frame(code, why);
        let _ = tokio::time::timeout(limit, link.client.close(Some(frame))).await;
    }
    let frame = close_frame(code, why);
    let _ = tokio::time::timeout(limit, link.upstream.close(Some(frame))).await;
}

fn close_frame(code: CloseCode, why: &str) -> CloseFrame {
    CloseFrame {
        code,
        reason: Utf8Bytes::from(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_upstream_message_loses_the_root_key() {
        let root = secrecy::SecretString::from("sk-evil-root-0123456789");
        let key = "sk-evil-root-0123456789";
        let shown = |m: &Message| match m {
            Message::Text(t) => t.as_bytes().to_vec(),
            Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b.to_vec(),
            Message::Close(f) => f
                .as_ref()
                .map(|f| f.reason.as_bytes().to_vec())
                .unwrap_or_default(),
            Message::Frame(_) => Vec::new(),
        };
        let messages = [
            Message::Text(format!("{{\"k\":\"{key}\"}}").into()),
            Message::Binary(key.as_bytes().to_vec().into()),
            Message::Ping(format!("ping {key}").into_bytes().into()),
            Message::Pong(format!("pong {key}").into_bytes().into()),
            Message::Close(Some(tungstenite::protocol::CloseFrame {
                code: tungstenite::protocol::frame::coding::CloseCode::Policy,
                reason: format!("bad {key}").into(),
            })),
        ];
        for m in messages {
            let out = scrubbed(m.clone(), &root);
            let text = String::from_utf8_lossy(&shown(&out)).into_owned();
            assert!(!text.contains("sk-evil-root"), "{m:?} became {text}");
        }
        let plain = Message::Text("no key here".into());
        assert_eq!(scrubbed(plain.clone(), &root), plain);
        // The key in UTF-16 or UTF-32 (every other byte a NUL), in every kind of message.
        let utf16: Vec<u8> = key.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let utf32: Vec<u8> = key.chars().flat_map(|c| (c as u32).to_be_bytes()).collect();
        for wide in [utf16, utf32] {
            let text = format!("x {}", String::from_utf8(wide.clone()).unwrap());
            for m in [
                Message::Text(text.into()),
                Message::Binary(wide.clone().into()),
                Message::Ping(wide.clone().into()),
                Message::Pong(wide.clone().into()),
            ] {
                let out = shown(&scrubbed(m.clone(), &root));
                let seen: String = out
                    .iter()
                    .filter(|b| **b != 0)
                    .map(|b| *b as char)
                    .collect();
                assert!(!seen.contains("sk-evil-root"), "{m:?} became {out:?}");
            }
        }
    }

    #[test]
    fn models_are_found_at_any_depth_and_only_as_strings() {
        let v: Value = serde_json::json!({
            "type": "session.update",
            "session": {
                "model": "gpt-realtime",
                "audio": {"input": {"transcription": {"model": "whisper-1"}}},
                "tools": [{"parameters": {"properties": {"model": {"type": "string"}}}}]
            }
        });
        let mut found = Vec::new();
        models_in(&v, &mut found).unwrap();
        found.sort_unstable();
        assert_eq!(found, ["gpt-realtime", "whisper-1"]);
        for bad in [
            serde_json::json!({"session": {"model": "gpt-realtime-mini,gpt-4o"}}),
            serde_json::json!({"session": {"model": "gpt-realtime-mini gpt-4o"}}),
            serde_json::json!({"session": {"model": "gpt-realtime-mini\u{0}"}}),
            serde_json::json!({"session": {"model": "gpt-realtime-".to_string() + &"x".repeat(300)}}),
            serde_json::json!({"session": {"model": {"id": "gpt-4o"}}}),
            serde_json::json!({"session": {"model": null}}),
            serde_json::json!({"session": {"model": ["gpt-4o"]}}),
        ] {
            assert!(models_in(&bad, &mut Vec::new()).is_err(), "{bad}");
        }
    }
}
