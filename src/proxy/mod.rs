//! The loopback proxy: authenticate the child key, check its caveats, swap in the root key,
//! forward, stream the answer back, meter it on the side.
//!
//! One port, routed by provider prefix (`/openai/…`, `/anthropic/…`, `/gemini/…`, and every
//! configured provider). Authentication applies to every route; the only unauthenticated route
//! is `GET /_till/health`. The upstream is fixed by configuration: absolute-form URIs, CONNECT
//! and foreign `Host` headers are refused, so this is never an open proxy. Root keys are put on
//! the wire only by [`crate::upstream::auth_header`], and never appear in a response.

pub mod alerts;
pub mod body;
pub mod errors;
pub mod limits;
pub mod meter;
pub mod route;
mod state;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use tokio::net::TcpListener;

pub use body::{Finished, ProxyBody};
pub use errors::ProxyError;
pub use state::{MintEntry, ProxyOptions, RequestRecord, State, Stats, StatsSnapshot};

use crate::childkey::{Denial, RequestFacts, Token};
use crate::providers::{ApiFamily, Provider};
use meter::Meter;

/// Serves until `shutdown` resolves. Connections in flight finish on their own tasks.
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => continue,
            },
            () = &mut shutdown => return,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(state, peer, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Binds `addr` and serves in the background on the current runtime; returns the bound address.
pub async fn spawn(
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(serve(listener, state, shutdown));
    Ok(local)
}

/// Output tokens reserved against a budget when a request names no ceiling of its own.
pub const DEFAULT_OUTPUT_RESERVE: u64 = 4096;

/// Headers that describe one hop and are never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Request headers that carry credentials; all are stripped before forwarding.
const AUTH_HEADERS: &[&str] = &["authorization", "x-api-key", "x-goog-api-key", "api-key"];

async fn handle(
    state: Arc<State>,
    _peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let started = Instant::now();
    if req.method() == Method::CONNECT || req.uri().authority().is_some() {
        return ProxyError::new(
            400,
            "not_a_proxy",
            "till forwards only to configured providers; absolute URLs and CONNECT are refused",
        )
        .response(ApiFamily::Openai);
    }
    if !state.host_allowed(req.headers()) {
        return ProxyError::new(
            421,
            "host",
            "this till proxy only answers requests addressed to its loopback address",
        )
        .response(ApiFamily::Openai);
    }
    let path = req.uri().path().to_string();
    if path == "/_till/health" && req.method() == Method::GET {
        return Response::new(ProxyBody::from(Bytes::from_static(b"ok\n")));
    }
    let Some((name, rest)) = route::split_prefix(&path) else {
        return not_found(&state, &path);
    };
    let Some(provider) = state.providers.get(name).cloned() else {
        return not_found(&state, &path);
    };
    let rest = rest.to_string();
    let api = provider.api;
    let mut record = RequestRecord::new(&provider.name, started);

    match authorize_and_forward(&state, &provider, &rest, req, &mut record).await {
        Ok(resp) => resp,
        Err(err) => {
            record.status = err.status.as_u16();
            record.denial = Some(err.kind);
            record.message = Some(err.message.clone());
            record.finish(&state, None);
            err.response(api)
        }
    }
}

fn not_found(state: &State, path: &str) -> Response<ProxyBody> {
    let prefix = path.split('/').nth(1).unwrap_or("");
    ProxyError::new(
        404,
        "route",
        format!(
            "no provider `{prefix}` on this till proxy; paths start with one of: /{}",
            state.providers.names().join(", /")
        ),
    )
    .response(ApiFamily::Openai)
}

/// The child key from whichever header (or `?key=`) the provider's clients use.
fn extract_key<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<&'a str> {
    if let Some(v) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if let Some(token) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
        {
            return Some(token.trim());
        }
    }
    for name in ["x-api-key", "x-goog-api-key", "api-key"] {
        if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
            return Some(v.trim());
        }
    }
    query?.split('&').find_map(|kv| kv.strip_prefix("key="))
}

/// The query string without a `key=` parameter.
fn strip_key_param(query: Option<&str>) -> String {
    let Some(q) = query else { return String::new() };
    let kept: Vec<&str> = q
        .split('&')
        .filter(|kv| !kv.starts_with("key=") && !kv.is_empty())
        .collect();
    if kept.is_empty() {
        String::new()
    } else {
        format!("?{}", kept.join("&"))
    }
}

fn denial_error(d: &Denial) -> ProxyError {
    ProxyError::new(d.status(), d.kind(), d.to_string())
}

async fn authorize_and_forward(
    state: &Arc<State>,
    provider: &Provider,
    rest: &str,
    req: Request<Incoming>,
    record: &mut RequestRecord,
) -> Result<Response<ProxyBody>, ProxyError> {
    let api = provider.api;
    let now = crate::time::now_unix();

    // 1. Who is asking.
    let key = extract_key(req.headers(), req.uri().query()).ok_or_else(|| {
        ProxyError::new(
            401,
            "no_key",
            "no till key in the request; till run puts one in the provider's API-key variable",
        )
    })?;
    if !key.starts_with("till_") {
        return Err(ProxyError::new(
            401,
            "not_till_key",
            "this proxy accepts only till keys (till_…); never send a provider key to it",
        ));
    }
    let token = Token::decode(key).map_err(|e| {
        ProxyError::new(401, "malformed", format!("this till key is not valid: {e}"))
    })?;
    let mint = state.mint_for(&token, now).await?;
    let verified = crate::childkey::verify(&token, &mint.key).map_err(|d| denial_error(&d))?;
    record.binding = Some(verified.binding());
    record.lineage = verified
        .level_bindings()
        .iter()
        .map(|b| b.short())
        .collect();
    if state.is_revoked(&verified) {
        return Err(ProxyError::new(
            401,
            "revoked",
            "this till key has been revoked; ask for a new one (till key create, or restart till run)",
        ));
    }

    // 2. What is being asked.
    let (parts, body) = req.into_parts();
    let max = state.options.max_body_bytes;
    let body = http_body_util::Limited::new(body, max as usize)
        .collect()
        .await
        .map_err(|_| ProxyError::new(413, "too_large", format!("the request body is larger than the proxy's limit of {max} bytes ([proxy] max_body_bytes in config.toml)")))?
        .to_bytes();
    let endpoint = route::classify(api, &parts.method, rest);
    let mut json: Option<serde_json::Value> = None;
    if !body.is_empty() && body.first().is_some_and(|b| *b == b'{') {
        json = serde_json::from_slice(&body).ok();
    }
    let facts = json
        .as_ref()
        .map(|v| route::body_facts(api, v, body.len()))
        .unwrap_or_default();
    let model: Option<String> = match api {
        ApiFamily::Gemini => route::gemini_model(rest).map(str::to_string),
        _ => facts
            .model
            .clone()
            .or_else(|| route::path_model(rest).map(str::to_string)),
    };
    record.model = model.clone();
    record.endpoint = Some(endpoint);
    let sse = facts.stream || rest.contains(":streamGenerateContent");

    let grant = verified
        .check(
            &RequestFacts {
                provider: &provider.name,
                model: model.as_deref(),
                endpoint,
                session: state.options.session.as_deref(),
                requested_output_tokens: facts.max_output_tokens,
            },
            now,
        )
        .map_err(|d| denial_error(&d))?;

    // 3. Stateful limits.
    let output_ceiling = facts
        .max_output_tokens
        .or(grant.cap_output_tokens)
        .unwrap_or(0);
    state
        .admit(&grant, facts.prompt_tokens_estimate + output_ceiling)
        .await?;

    // Budgets and request ceilings, reserved across every till process sharing the key.
    let budget_output = facts
        .max_output_tokens
        .or(grant.cap_output_tokens)
        .unwrap_or(DEFAULT_OUTPUT_RESERVE);
    record.reservation = state
        .reserve(
            &grant,
            &provider.name,
            model.as_deref(),
            facts.prompt_tokens_estimate,
            budget_output,
        )
        .await?;

    // 4. Rewrite the body where the key requires it.
    let mut strip_usage = false;
    let mut body = body;
    if let Some(mut v) = json {
        let mut changed = false;
        if let Some(cap) = grant.cap_output_tokens
            && facts.max_output_tokens.is_none()
        {
            let field = match api {
                ApiFamily::Openai if rest.ends_with("/responses") => Some("max_output_tokens"),
                ApiFamily::Openai if rest.ends_with("/chat/completions") => {
                    Some("max_completion_tokens")
                }
                ApiFamily::Anthropic => Some("max_tokens"),
                _ => None,
            };
            if let (Some(field), Some(obj)) = (field, v.as_object_mut()) {
                obj.insert(field.to_string(), cap.into());
                changed = true;
            }
        }
        if api == ApiFamily::Openai
            && facts.stream
            && rest.ends_with("/chat/completions")
            && !facts.include_usage
            && let Some(obj) = v.as_object_mut()
        {
            let opts = obj
                .entry("stream_options")
                .or_insert_with(|| serde_json::json!({}));
            if let Some(o) = opts.as_object_mut() {
                o.insert("include_usage".into(), true.into());
                strip_usage = true;
                changed = true;
            }
        }
        if changed {
            body = Bytes::from(serde_json::to_vec(&v).unwrap_or_else(|_| body.to_vec()));
        }
    }

    // 5. Forward with the root key.
    let root = state.root_key(&provider.name).await?;
    let url = format!(
        "{}{}{}",
        provider.base_url,
        rest,
        strip_key_param(parts.uri.query())
    );
    let mut up = state.client.request(parts.method.clone(), url);
    for (name, value) in &parts.headers {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n)
            || AUTH_HEADERS.contains(&n)
            || n == "host"
            || n == "content-length"
            || n == "accept-encoding"
        {
            continue;
        }
        up = up.header(name, value);
    }
    let (auth_name, auth_value) = crate::upstream::auth_header(provider, &root);
    up = up
        .header(auth_name, auth_value)
        .header(http::header::ACCEPT_ENCODING, "identity");
    if api == ApiFamily::Anthropic && !parts.headers.contains_key("anthropic-version") {
        up = up.header("anthropic-version", crate::upstream::ANTHROPIC_VERSION);
    }
    let up = up.body(body);
    let resp = match tokio::time::timeout(state.options.upstream_timeout, up.send()).await {
        Err(_) => {
            return Err(ProxyError::new(
                504,
                "upstream_timeout",
                format!(
                    "{} did not answer within {} s",
                    provider.name,
                    state.options.upstream_timeout.as_secs()
                ),
            ));
        }
        Ok(Err(e)) => {
            let what = if e.is_connect() {
                "could not connect to"
            } else {
                "lost the connection to"
            };
            return Err(ProxyError::new(
                502,
                "upstream",
                format!("till {what} {} ({})", provider.name, provider.base_url),
            ));
        }
        Ok(Ok(r)) => r,
    };

    // 6. Stream the answer back.
    let status = resp.status();
    record.status = status.as_u16();
    record.ttfb = Some(record.started.elapsed());
    let is_sse = sse
        || resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
    let mut builder = Response::builder().status(status);
    for (name, value) in resp.headers() {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) || (strip_usage && n == "content-length") {
            continue;
        }
        builder = builder.header(name, value);
    }
    let meter = Meter::new(api, is_sse, strip_usage && is_sse);
    let state2 = state.clone();
    let rec = record.take();
    let stream = body::MeteredStream::new(
        Box::pin(resp.bytes_stream()),
        meter,
        api,
        is_sse,
        state.options.upstream_timeout,
        move |finished| rec.finish(&state2, Some(finished)),
    );
    Ok(builder
        .body(ProxyBody::Stream(Box::new(stream)))
        .unwrap_or_else(|_| {
            let mut r = Response::new(ProxyBody::from(Bytes::new()));
            *r.status_mut() = StatusCode::BAD_GATEWAY;
            r
        }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn key_comes_from_every_header_clients_use() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer till_abc"));
        assert_eq!(extract_key(&h, None), Some("till_abc"));
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("till_x"));
        assert_eq!(extract_key(&h, None), Some("till_x"));
        let mut h = HeaderMap::new();
        h.insert("x-goog-api-key", HeaderValue::from_static("till_g"));
        assert_eq!(extract_key(&h, None), Some("till_g"));
        assert_eq!(
            extract_key(&HeaderMap::new(), Some("alt=sse&key=till_q")),
            Some("till_q")
        );
        assert_eq!(extract_key(&HeaderMap::new(), Some("alt=sse")), None);
    }

    #[test]
    fn key_param_is_stripped_from_query() {
        assert_eq!(strip_key_param(Some("alt=sse&key=till_q")), "?alt=sse");
        assert_eq!(strip_key_param(Some("key=till_q")), "");
        assert_eq!(strip_key_param(None), "");
    }
}
