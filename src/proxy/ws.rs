//! WebSocket upgrades: OpenAI's Responses WebSocket mode (`GET …/v1/responses` upgraded; each
//! `response.create` message is a Responses body) and the Realtime API
//! (`GET …/v1/realtime?model=M` upgraded). Which paths open which WebSocket, which client
//! events exist and what the server's events say is each family's to tell
//! ([`crate::providers::Family::websocket`] and the `ws_*` methods); this module never names a
//! family's events itself.
//!
//! The upgrade goes through the same checks as an HTTP request, before anything reaches the
//! provider and before the client gets its `101`: the till key (from the headers the HTTP
//! path reads, or from the family's key subprotocol, `openai-insecure-api-key.KEY`, which
//! browsers must use), its signature, revocation and expiry, the endpoint class, and for a
//! session that fixes its model in the query (Realtime) that model. Only then does till open
//! its own WebSocket to the provider with the root key, and only once the provider accepted it
//! is the client upgraded; a refusal on either side is an HTTP error in the provider's shape.
//!
//! Headers honoured on the upgrade: `Authorization: Bearer`, `x-api-key`, `api-key` and
//! `?key=` as for HTTP; `Sec-WebSocket-Protocol`, whose key entry is removed and whose other
//! entries (`realtime`, `openai-beta.realtime-v1`) go upstream, the one the provider picks
//! echoed back; everything else the HTTP path forwards (`OpenAI-Beta:
//! responses_websockets=…`, `OpenAI-Beta: realtime=v1`, …) goes upstream as sent, and what
//! the HTTP path refuses (method overrides, Google's field mask) or keeps behind (headers
//! the client's `Connection` names, the account it would pick, routing headers) is refused
//! or kept behind here too. `Sec-WebSocket-Key`/`-Version`/`-Extensions` and `Origin` belong to the
//! client's hop and are not forwarded: each side negotiates its own handshake, without
//! compression. What happens after the upgrade is [`relay`]'s.

mod arriving;
mod relay;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::Conn;
use super::body::ProxyBody;
use super::errors::ProxyError;
use super::phases::{self, Ctx};
use crate::childkey::{EndpointClass, Grant, RequestFacts};
use crate::providers::WsRoute;

/// Handshake headers of the client's own hop, never forwarded (the HTTP path's hop-by-hop and
/// credential headers are dropped too).
const HANDSHAKE: &[&str] = &[
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-protocol",
    "sec-websocket-accept",
    "origin",
    "host",
    "content-length",
    "accept-encoding",
    "content-encoding",
];

/// Whether a request asks to be upgraded to a WebSocket.
pub(super) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.get_all(header::UPGRADE).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("websocket"))
        })
    })
}

/// An upgrade request: checked, and either refused (recorded, answered in the provider's
/// shape) or answered `101` with the relay started in the background.
pub(super) async fn handle(
    mut ctx: Ctx<'_>,
    mut req: Request<Incoming>,
    conn: Conn,
) -> Response<ProxyBody> {
    let (state, provider) = (ctx.state, ctx.provider);
    let on_upgrade = hyper::upgrade::on(&mut req);
    match open(&mut ctx, &req).await {
        Ok(opened) => {
            let session = relay::Session {
                state: state.clone(),
                provider: provider.clone(),
                rest: ctx.rest.to_string(),
                route: opened.route,
                key: opened.key,
                headers: opened.headers,
                model: opened.model,
                root: opened.root,
                template: ctx.record.take(),
                stop: conn.stop,
                _slot: conn.slot,
                _hold: opened.hold,
                arriving: std::sync::Arc::new(arriving::Arriving::new(opened.lineage)),
            };
            let client_config = client_config(state.options.max_body_bytes);
            let upstream = opened.upstream;
            tokio::spawn(async move {
                // The client may be gone before its upgrade completes: nothing to relay then.
                let Ok(upgraded) = on_upgrade.await else {
                    return;
                };
                let io = arriving::Counted::new(
                    hyper_util::rt::TokioIo::new(upgraded),
                    session.state.clone(),
                    session.arriving.clone(),
                );
                let client = tokio_tungstenite::WebSocketStream::from_raw_socket(
                    io,
                    Role::Server,
                    Some(client_config),
                )
                .await;
                relay::run(session, client, upstream).await;
            });
            opened.answer
        }
        Err(Refused::Till(err)) => {
            ctx.record.refused(state, &err);
            err.response(provider.api)
        }
        Err(Refused::Upstream(answer)) => {
            let mut record = ctx.record;
            record.status = answer.status().as_u16();
            record.finish(state, None);
            answer
        }
    }
}

/// Why an upgrade was not made.
enum Refused {
    /// Till refused it.
    Till(ProxyError),
    /// The provider refused it: its answer, passed on.
    Upstream(Response<ProxyBody>),
}

impl From<ProxyError> for Refused {
    fn from(e: ProxyError) -> Self {
        Refused::Till(e)
    }
}

/// A WebSocket the provider accepted, and the `101` for the client.
struct Opened {
    route: WsRoute,
    key: String,
    headers: HeaderMap,
    model: Option<String>,
    upstream: crate::upstream::Socket,
    answer: Response<ProxyBody>,
    root: std::sync::Arc<secrecy::SecretString>,
    /// The key's lineage ([`Verified::root_binding`](crate::childkey::Verified::root_binding)):
    /// the socket's messages count against its share of the bodies' room.
    lineage: crate::childkey::Binding,
    /// The socket's place in its lineage's share of the connections.
    hold: super::state::Place,
}

/// The upgrade's checks, then the provider's WebSocket.
async fn open(ctx: &mut Ctx<'_>, req: &Request<Incoming>) -> Result<Opened, Refused> {
    let (state, provider) = (ctx.state, ctx.provider);
    let wire = provider.api.wire();
    let headers = req.headers();
    let client_key = handshake(req)?;
    let protocols = offered_protocols(headers);
    let key_protocol = wire.ws_key_protocol();
    let in_protocol = key_protocol.and_then(|prefix| {
        protocols
            .iter()
            .find_map(|p| key_in_protocol(p, prefix))
            .map(str::to_string)
    });
    let key = phases::extract_key(headers, req.uri().query())
        .map(str::to_string)
        .or(in_protocol);
    let caller = phases::caller_with(ctx, key.as_deref()).await?;
    let verified = phases::authenticate(ctx, &caller)?;
    let lineage = verified.root_binding();

    let route = crate::providers::endpoint::classify_websocket(provider.api, ctx.rest)
        .ok_or_else(|| {
            ProxyError::new(
                400,
                "websocket",
                format!(
                    "till does not proxy WebSocket upgrades of {}; only the provider's WebSocket endpoints (OpenAI's …/v1/responses and …/v1/realtime)",
                    ctx.rest
                ),
            )
        })?;
    let (query, model) = upgrade_query(&route, req.uri().query())?;
    ctx.record.endpoint = Some(route.endpoint.class);
    // Each response of a Responses or Realtime socket reports its usage.
    ctx.record.usage_expected = true;
    ctx.record.model = model.clone();
    let grant = verified
        .check(
            &RequestFacts {
                provider: &provider.name,
                model: model.as_deref(),
                endpoint: route.endpoint.class,
                session: state.options.session.as_deref(),
                requested_output_tokens: None,
            },
            ctx.now,
        )
        .map_err(|d| phases::denial_error(&d))?;
    // As on the HTTP path: the upgrade's method, and the whole answer, are what till checks.
    phases::no_method_override(headers)?;
    if route.endpoint.class == EndpointClass::Realtime {
        admit_session(ctx, &grant).await?;
    }

    let hold = state.hold_socket(lineage)?;
    let root = state.root_key(&provider.name).await?;
    let path = crate::providers::endpoint::upstream_path(provider.api, ctx.rest);
    let url = crate::upstream::websocket_url(&provider.base_url, &format!("{path}{query}"))
        .ok_or_else(|| {
            ProxyError::new(
                502,
                "upstream",
                format!(
                    "till cannot open a WebSocket to {} ({}): its base_url is neither http nor https",
                    provider.name, provider.shown_origin()
                ),
            )
        })?;
    let mut forwarded = forwarded_headers(headers);
    for (name, value) in &provider.account_headers {
        forwarded.insert(name, value.clone());
    }
    let upstream_protocols: Vec<&str> = protocols
        .iter()
        .copied()
        .filter(|p| key_protocol.is_none_or(|prefix| key_in_protocol(p, prefix).is_none()))
        .filter(|p| key.as_deref().is_none_or(|k| !p.contains(k)))
        .filter(|p| !names_an_account(p))
        .collect();
    let offered = (!upstream_protocols.is_empty())
        .then(|| HeaderValue::from_str(&upstream_protocols.join(", ")).ok())
        .flatten();
    let connect = crate::upstream::websocket(
        provider,
        &root,
        &url,
        &forwarded,
        offered,
        WebSocketConfig::default(),
    );
    let limit = state.options.upstream_timeout;
    let (upstream, accepted) = match tokio::time::timeout(limit, connect).await {
        Err(_) => {
            return Err(ProxyError::new(
                504,
                "upstream_timeout",
                format!(
                    "{} did not accept the WebSocket within {} s",
                    provider.name,
                    limit.as_secs()
                ),
            )
            .into());
        }
        Ok(Err(tungstenite::Error::Http(answer))) => {
            return Err(Refused::Upstream(upstream_refusal(&answer, &root)));
        }
        Ok(Err(_)) => {
            return Err(ProxyError::new(
                502,
                "upstream",
                format!(
                    "till could not open a WebSocket to {} ({})",
                    provider.name,
                    provider.shown_origin()
                ),
            )
            .into());
        }
        Ok(Ok(opened)) => opened,
    };
    let chosen = accepted
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .filter(|p| upstream_protocols.contains(p))
        .map(str::to_string);
    let answer = switching(&client_key, chosen.as_deref(), accepted.headers(), &root);
    let key = key.unwrap_or_default();
    Ok(Opened {
        route,
        key,
        headers: forwarded,
        model,
        upstream,
        answer,
        root,
        lineage,
        hold,
    })
}

/// Refuses what is not a WebSocket handshake till can complete; returns the client's
/// `Sec-WebSocket-Key`.
fn handshake(req: &Request<Incoming>) -> Result<String, ProxyError> {
    let bad = |why: &str| ProxyError::new(400, "websocket", why.to_string());
    if req.method() != http::Method::GET {
        return Err(bad("a WebSocket upgrade is a GET request"));
    }
    if req.version() != http::Version::HTTP_11 {
        return Err(bad("a WebSocket upgrade is an HTTP/1.1 request"));
    }
    let version = req.headers().get(header::SEC_WEBSOCKET_VERSION);
    if version.is_none_or(|v| v.as_bytes() != b"13") {
        return Err(bad(
            "till speaks WebSocket version 13 (Sec-WebSocket-Version: 13)",
        ));
    }
    req.headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .ok_or_else(|| bad("the WebSocket upgrade has no Sec-WebSocket-Key"))
}

/// The subprotocols the client offers, in order.
fn offered_protocols(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

/// The query that goes upstream and the session's model: for a route that names its model
/// in the query, exactly that parameter with a model id; for others, none at all (`key=` is
/// taken out either way).
fn upgrade_query(
    route: &WsRoute,
    query: Option<&str>,
) -> Result<(String, Option<String>), ProxyError> {
    let kept = phases::forward_query(query)?;
    let params: Vec<&str> = kept
        .strip_prefix('?')
        .map(|q| q.split('&').collect())
        .unwrap_or_default();
    match route.model_param {
        None if params.is_empty() => Ok((String::new(), None)),
        None => Err(ProxyError::new(
            400,
            "query",
            "this WebSocket takes no query parameters; till forwards only what it checks",
        )),
        Some(name) => {
            let model = match params.as_slice() {
                [one] => one
                    .strip_prefix(name)
                    .and_then(|r| r.strip_prefix('='))
                    .filter(|m| crate::providers::endpoint::valid_model_id(m, true)),
                _ => None,
            };
            let model = model.ok_or_else(|| {
                ProxyError::new(
                    400,
                    "query",
                    format!(
                        "this WebSocket takes exactly one query parameter, `?{name}=MODEL`, with a model id; till checks that model against the key's scope"
                    ),
                )
            })?;
            Ok((format!("?{name}={model}"), Some(model.to_string())))
        }
    }
}

/// What a session whose messages are not each a request till can admit (Realtime) must pass:
/// no bound till cannot hold. Its responses are not requests till sees one by one (the server
/// starts them itself when it hears speech), so a request ceiling or a request rate cannot
/// hold either: opening the session once would be the only request counted.
async fn admit_session(ctx: &Ctx<'_>, grant: &Grant) -> Result<(), ProxyError> {
    if grant.counts_tokens() || grant.max_output_tokens.is_some() || grant.counts_requests() {
        return Err(ProxyError::new(
            403,
            "realtime",
            "till cannot bound what a Realtime session costs (streamed audio, responses the server starts by itself), so a key with a budget, a token or request rate, an output cap or a request ceiling may not open one; use a key without them, e.g. `till key create --endpoints realtime --scope openai/MODEL`",
        ));
    }
    ctx.state.admit(grant, 0).await
}

/// The client's headers that go upstream: those the HTTP path forwards (less what stays
/// behind on every path, [`phases::stays_behind`]: the client's `Connection: Upgrade, x-hop`
/// keeps `x-hop` behind), less the handshake's own.
fn forwarded_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    let connection = phases::connection_names_others(headers);
    for (name, value) in headers {
        if phases::stays_behind(headers, name, connection) || HANDSHAKE.contains(&name.as_str()) {
            continue;
        }
        out.append(name, value.clone());
    }
    out
}

/// The `101` for the client: its own accept key, the subprotocol the provider chose (one the
/// client offered, never the key entry), and the provider's other answer headers.
fn switching(
    client_key: &str,
    protocol: Option<&str>,
    upstream: &HeaderMap,
    root: &secrecy::SecretString,
) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::from(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    for (name, value) in upstream {
        let n = name.as_str();
        if phases::HOP_BY_HOP.contains(name) || HANDSHAKE.contains(&n) || n == "set-cookie" {
            continue;
        }
        headers.append(name, value.clone());
    }
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    let accept = tungstenite::handshake::derive_accept_key(client_key.as_bytes());
    if let Ok(v) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(v) = protocol.and_then(|p| HeaderValue::from_str(p).ok()) {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
    }
    super::scrub::headers(headers, root);
    resp
}

/// The provider's refusal of the upgrade, passed on: its status and body.
fn upstream_refusal(
    answer: &http::Response<Option<Vec<u8>>>,
    root: &secrecy::SecretString,
) -> Response<ProxyBody> {
    // A body in a coding or charset till cannot read could quote the root key unseen: the
    // status alone.
    let unread = super::phases::odd_coding(answer.headers()).is_some()
        || super::phases::odd_charset(answer.headers()).is_some();
    // What came of the body with the head, in the upstream's framing: the chunks' data, or no
    // more than its length says; text stops at a NUL byte, as an HTTP answer's does.
    let tail = answer.body().as_deref().unwrap_or_default();
    let body = if unread {
        Bytes::new()
    } else if answer.headers().contains_key(header::TRANSFER_ENCODING) {
        Bytes::from(crate::upstream::h1::dechunk_start(tail))
    } else {
        let length = answer
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        Bytes::copy_from_slice(&tail[..length.unwrap_or(usize::MAX).min(tail.len())])
    };
    let text = super::phases::is_text(answer.headers());
    let body = match super::scrub::Scrub::new(std::sync::Arc::new(root.clone()), text) {
        Some(mut scrub) => scrub.finish(Some(body)),
        None => body,
    };
    let mut resp = Response::new(ProxyBody::from(body));
    *resp.status_mut() = answer.status();
    // The body's type, unless there is no body or the type quotes the root key.
    if let Some(ct) = answer.headers().get(header::CONTENT_TYPE)
        && !unread
        && !super::scrub::holds(ct.as_bytes(), root)
    {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
    }
    resp
}

/// The key a subprotocol carries after the family's `prefix`, in any letter case (a server
/// that reads `OPENAI-INSECURE-API-KEY.…` as the prefix would get the child key otherwise).
fn key_in_protocol<'p>(protocol: &'p str, prefix: &str) -> Option<&'p str> {
    protocol
        .as_bytes()
        .get(..prefix.len())
        .is_some_and(|b| b.eq_ignore_ascii_case(prefix.as_bytes()))
        .then(|| protocol.get(prefix.len()..))
        .flatten()
}

/// The subprotocol forms of the account headers ([`phases::ACCOUNT_HEADERS`]), which a
/// browser's WebSocket, unable to set headers, sends instead (`openai-organization.ORG`,
/// `openai-project.PROJ`), in any letter case: the agent's would pick which of the root key's
/// accounts pays, so they stay behind as the headers do.
fn names_an_account(protocol: &str) -> bool {
    phases::ACCOUNT_HEADERS
        .iter()
        .any(|h| key_in_protocol(protocol, &format!("{}.", h.as_str())).is_some())
}

/// The client side's limits: a message is at most as large as an HTTP body may be, and the
/// read buffer small, since what it holds of a message's start goes uncounted
/// ([`arriving`]).
fn client_config(max_body_bytes: u64) -> WebSocketConfig {
    let max = usize::try_from(max_body_bytes).unwrap_or(usize::MAX);
    WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
        .read_buffer_size(arriving::READ_BUFFER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_subprotocols_are_recognised_in_any_case() {
        for p in [
            "openai-organization.org-1",
            "OpenAI-Project.proj_1",
            "x-goog-user-project.p",
            "openai-organization.",
        ] {
            assert!(names_an_account(p), "{p}");
        }
        for p in ["realtime", "openai-beta.realtime-v1", "openai-organization"] {
            assert!(!names_an_account(p), "{p}");
        }
    }

    #[test]
    fn an_upgrade_answer_loses_headers_that_hold_the_root_key() {
        let root = secrecy::SecretString::from("sk-evil-root-0123456789");
        let mut upstream = HeaderMap::new();
        upstream.insert(
            "x-echo",
            HeaderValue::from_static("Bearer sk-evil-root-0123456789"),
        );
        upstream.insert("x-request-id", HeaderValue::from_static("req_1"));
        let resp = switching("dGhlIHNhbXBsZSBub25jZQ==", None, &upstream, &root);
        assert!(resp.headers().get("x-echo").is_none());
        assert!(resp.headers().get("x-request-id").is_some());
    }

    #[test]
    fn upgrade_is_recognised_in_any_case_and_list() {
        let mut h = HeaderMap::new();
        assert!(!is_upgrade(&h));
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        assert!(!is_upgrade(&h));
        h.insert(header::UPGRADE, HeaderValue::from_static("foo, WebSocket"));
        assert!(is_upgrade(&h));
    }

    #[test]
    fn the_realtime_query_is_exactly_one_model() {
        let realtime = WsRoute {
            endpoint: crate::providers::Endpoint::new(
                EndpointClass::Realtime,
                crate::providers::Op::OpenaiRealtime,
            ),
            model_param: Some("model"),
        };
        assert_eq!(
            upgrade_query(&realtime, Some("model=gpt-realtime&key=till_x")).unwrap(),
            (
                "?model=gpt-realtime".to_string(),
                Some("gpt-realtime".to_string())
            )
        );
        for bad in [
            None,
            Some(""),
            Some("model="),
            Some("model=a&model=b"),
            Some("model=gpt%2Drealtime"),
            Some("model=x&intent=transcription"),
            Some("call_id=rtc_1"),
            Some("Model=gpt-realtime"),
        ] {
            assert!(upgrade_query(&realtime, bad).is_err(), "{bad:?}");
        }
        let responses = WsRoute {
            endpoint: crate::providers::Endpoint::new(
                EndpointClass::Inference,
                crate::providers::Op::OpenaiResponses,
            ),
            model_param: None,
        };
        assert_eq!(
            upgrade_query(&responses, Some("key=till_x")).unwrap(),
            (String::new(), None)
        );
        assert!(upgrade_query(&responses, Some("model=gpt-4o")).is_err());
    }

    #[test]
    fn the_key_protocol_and_the_client_hop_stay_behind() {
        let mut h = HeaderMap::new();
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("realtime, openai-insecure-api-key.till_abc"),
        );
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer till_abc"),
        );
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        h.insert("openai-beta", HeaderValue::from_static("realtime=v1"));
        h.insert("OpenAI-Organization", HeaderValue::from_static("org-other"));
        h.insert("openai-project", HeaderValue::from_static("proj_other"));
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("Upgrade, x-hop"),
        );
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert("x-forwarded-host", HeaderValue::from_static("evil.example"));
        h.insert("x-original-url", HeaderValue::from_static("/v1/files"));
        assert_eq!(
            offered_protocols(&h),
            ["realtime", "openai-insecure-api-key.till_abc"]
        );
        let prefix = "openai-insecure-api-key.";
        assert_eq!(
            key_in_protocol("OPENAI-Insecure-API-Key.till_abc", prefix),
            Some("till_abc")
        );
        assert_eq!(key_in_protocol("realtime", prefix), None);
        assert_eq!(key_in_protocol("openai-insecure-api-ke", prefix), None);
        let fwd = forwarded_headers(&h);
        assert_eq!(fwd.len(), 1, "{fwd:?}");
        assert_eq!(fwd["openai-beta"], "realtime=v1");
    }
}
