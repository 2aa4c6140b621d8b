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
pub mod inspect;
pub mod lifecycle;
pub mod limits;
pub mod meter;
pub mod route;
mod state;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use tokio::net::TcpListener;

pub use body::{Finished, ProxyBody};
pub use errors::ProxyError;
pub use state::{MintEntry, ProxyOptions, RequestRecord, State, Stats, StatsSnapshot};

use crate::childkey::{Denial, EndpointClass, RequestFacts, Token};
use crate::providers::{ApiFamily, Provider};
use meter::Meter;

/// How long, once the grace is over, cut-off responses get to reach their clients before
/// their connections are dropped.
const CUT_WAIT: Duration = Duration::from_secs(1);

/// How often the "all connections in use" and "cannot accept" warnings may repeat.
const NOTICE_EVERY: Duration = Duration::from_secs(60);

/// Serves until `shutdown` resolves, then stops: no new connections, requests in flight get
/// `shutdown_grace` to finish, then what still runs is cut off and recorded as interrupted.
/// Returns once every connection, and every response body still reading its upstream, is done.
///
/// Connections are bounded: at most `max_connections` at once (more wait in the listen
/// backlog: an agent's burst is served late rather than refused, and the header timeout frees
/// the slots of clients that send nothing), `header_timeout` to send a request's headers or to
/// sit idle between keep-alive requests, `body_timeout` to send its body.
///
/// Connection tasks live in a `JoinSet` rather than hyper-util's `GracefulShutdown`: both can
/// tell connections to close after their current response, but a stop must also be able to
/// drop the connections still open when the grace ends, which needs their task handles, and
/// to wait for response bodies that outlive their connection (a stream drained after its
/// client left), which [`lifecycle::Stop`] tracks.
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let opts = &state.options;
    let mut http = hyper::server::conn::http1::Builder::new();
    // hyper starts the header timer when it waits for a request head, including on a kept-alive
    // connection after a response, so it is the idle timeout too.
    http.timer(hyper_util::rt::TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(opts.header_timeout);
    let slots = Arc::new(tokio::sync::Semaphore::new(opts.max_connections));
    let mut stopper = lifecycle::Stopper::default();
    let (closing, _) = tokio::sync::watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    let mut backoff = lifecycle::Backoff::default();
    let mut full = lifecycle::Notice::every(NOTICE_EVERY);
    let mut failing = lifecycle::Notice::every(NOTICE_EVERY);
    tokio::pin!(shutdown);
    'accept: loop {
        while conns.try_join_next().is_some() {}
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if full.due(tokio::time::Instant::now()) {
                    crate::output::warn(&format!(
                        "{} connections are open, the most [proxy] max_connections allows; new connections wait until one closes",
                        opts.max_connections
                    ));
                }
                tokio::select! {
                    slot = Arc::clone(&slots).acquire_owned() => {
                        slot.expect("the connection semaphore is never closed")
                    }
                    () = &mut shutdown => break 'accept,
                }
            }
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff.reset();
                a
            }
            Err(e) => {
                drop(slot);
                let pause = backoff.after(&e);
                if !pause.is_zero() && failing.due(tokio::time::Instant::now()) {
                    crate::output::warn(&format!(
                        "cannot accept connections ({e}); trying again, at most once a second"
                    ));
                }
                tokio::select! {
                    () = tokio::time::sleep(pause) => continue,
                    () = &mut shutdown => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let stop = stopper.stop();
        // Counts this connection's requests whose response is not done yet (the service call
        // and its body hold a clone): a connection without any can be dropped at a stop.
        let busy = Arc::new(());
        let svc = {
            let (state, stop, busy) = (state.clone(), stop.clone(), busy.clone());
            hyper::service::service_fn(move |req| {
                let (state, stop, busy) = (state.clone(), stop.clone(), busy.clone());
                async move { Ok::<_, Infallible>(respond(state, peer, req, stop, busy).await) }
            })
        };
        let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
        let mut closing = closing.subscribe();
        conns.spawn(async move {
            let _slot = slot;
            let _stop = stop;
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = closing.wait_for(|c| *c) => {}
            }
            if Arc::strong_count(&busy) == 1 {
                // Idle, or still sending a request head: nothing of ours to finish.
                return;
            }
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        });
    }
    drop(listener);
    closing.send_replace(true);
    let grace_over = tokio::time::Instant::now() + opts.shutdown_grace;
    if !stopper.wait(grace_over).await {
        stopper.cut();
        if !stopper.wait(tokio::time::Instant::now() + CUT_WAIT).await {
            // Clients that stopped reading, requests still waiting for upstream headers.
            conns.abort_all();
        }
    }
    while conns.join_next().await.is_some() {}
    // Dropped bodies end at once when cut; drains cut a moment ago finish now.
    stopper.wait(tokio::time::Instant::now() + CUT_WAIT).await;
}

/// One request: [`handle`], answered with a 503 instead if the grace ends before it has a
/// response, and its response body bound to the stop.
async fn respond(
    state: Arc<State>,
    peer: SocketAddr,
    req: Request<Incoming>,
    stop: lifecycle::Stop,
    busy: Arc<()>,
) -> Response<ProxyBody> {
    let api = route::split_prefix(req.uri().path())
        .and_then(|(name, _)| state.providers.get(name))
        .map_or(ApiFamily::Openai, |p| p.api);
    let mut resp = tokio::select! {
        biased;
        resp = handle(state, peer, req) => resp,
        () = stop.cut() => {
            return ProxyError::new(
                503,
                "shutting_down",
                "till is shutting down and could not finish this request; send it again once a till proxy runs",
            )
            .response(api);
        }
    };
    if let ProxyBody::Stream(s) = resp.body_mut() {
        s.stop_on(stop);
        s.hold(busy);
    }
    resp
}

/// Reads a request body of at most `max` bytes within `limit` (a client that trickles its body
/// must not hold a connection and its slot for as long as it likes).
async fn read_body(body: Incoming, max: u64, limit: Duration) -> Result<Bytes, ProxyError> {
    let read = http_body_util::Limited::new(body, max as usize).collect();
    match tokio::time::timeout(limit, read).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(_)) => Err(ProxyError::new(
            413,
            "too_large",
            format!(
                "the request body is larger than the proxy's limit of {max} bytes ([proxy] max_body_bytes in config.toml)"
            ),
        )),
        Err(_) => Err(ProxyError::new(
            408,
            "body_timeout",
            format!(
                "the request body did not arrive within {} ([proxy] body_timeout in config.toml)",
                humantime::format_duration(limit)
            ),
        )),
    }
}

/// Binds `addr` and serves in the background on the current runtime; returns the bound address.
pub async fn spawn(
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<SocketAddr> {
    Ok(start(addr, state, shutdown).await?.0)
}

/// Like [`spawn`], with the task that ends when the proxy has stopped.
pub async fn start(
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((local, tokio::spawn(serve(listener, state, shutdown))))
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
    let raw = req.uri().path();
    if raw == "/_till/health" && req.method() == Method::GET {
        return Response::new(ProxyBody::from(Bytes::from_static(b"ok\n")));
    }
    // Errors before the provider is known use the shape of the provider the path names, if any.
    let named = route::split_prefix(raw).and_then(|(n, _)| state.providers.get(n));
    let shape = named.map_or(ApiFamily::Openai, |p| p.api);
    let path = match route::canonical_path(raw) {
        Ok(p) => p,
        Err(e) => {
            let err = ProxyError::new(
                400,
                "path",
                format!(
                    "till refuses this request path: {e}; send the path your SDK builds, unaltered"
                ),
            );
            if let Some(provider) = named {
                let mut record = RequestRecord::new(&provider.name, started);
                record.status = 400;
                record.denial = Some(err.kind);
                record.message = Some(err.message.clone());
                record.finish(&state, None);
            }
            return err.response(shape);
        }
    };
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

/// The query string to forward: without `key=` parameters, and refused when a parameter could
/// change what the upstream does with the request beyond what till checked (method overrides,
/// Google's `$`-prefixed system parameters).
fn forward_query(query: Option<&str>) -> Result<String, ProxyError> {
    let Some(q) = query else {
        return Ok(String::new());
    };
    let mut kept: Vec<&str> = Vec::new();
    for kv in q.split('&').filter(|kv| !kv.is_empty()) {
        let name = kv.split('=').next().unwrap_or("").to_ascii_lowercase();
        if name == "key" {
            continue;
        }
        if name.starts_with('$') || name.starts_with("%24") || name.contains("method") {
            return Err(ProxyError::new(
                400,
                "query",
                format!(
                    "till refuses the query parameter `{name}`: it could change what the provider does with a request till has checked"
                ),
            ));
        }
        kept.push(kv);
    }
    Ok(if kept.is_empty() {
        String::new()
    } else {
        format!("?{}", kept.join("&"))
    })
}

/// Headers that make some servers treat a request as another method.
const METHOD_OVERRIDES: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

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

    // 2. What is being asked: one canonical request, read once.
    let (parts, body) = req.into_parts();
    if let Some(h) = METHOD_OVERRIDES
        .iter()
        .find(|h| parts.headers.contains_key(**h))
    {
        return Err(ProxyError::new(
            400,
            "method_override",
            format!("till refuses `{h}`: the request's method is what till checks"),
        ));
    }
    if let Some(enc) = parts.headers.get(http::header::CONTENT_ENCODING)
        && !enc.as_bytes().eq_ignore_ascii_case(b"identity")
    {
        return Err(ProxyError::new(
            400,
            "encoding",
            "till refuses compressed request bodies (Content-Encoding); send the body uncompressed so till can check it",
        ));
    }
    let query = forward_query(parts.uri.query())?;
    let body = read_body(
        body,
        state.options.max_body_bytes,
        state.options.body_timeout,
    )
    .await?;
    let endpoint = route::classify(api, &parts.method, rest);
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let inspected = inspect::inspect(
        endpoint.op,
        endpoint.path_model.as_deref(),
        content_type,
        &body,
    )?;
    let model: Option<String> = inspected.model.clone().or(endpoint.path_model.clone());
    record.model = model.clone();
    record.endpoint = Some(endpoint.class);
    let sse = inspected.stream || endpoint.op.path_streams(rest);

    let grant = verified
        .check(
            &RequestFacts {
                provider: &provider.name,
                model: model.as_deref(),
                endpoint: endpoint.class,
                session: state.options.session.as_deref(),
                requested_output_tokens: inspected.ceiling,
            },
            now,
        )
        .map_err(|d| denial_error(&d))?;

    // 3. Only what till can bound goes to a key with bounds.
    if model.is_none()
        && endpoint.class == EndpointClass::Inference
        && !verified.allows_every_model(&provider.name)
    {
        return Err(ProxyError::new(
            403,
            "model",
            format!(
                "till cannot see which model this request uses, so only a key for every {p} model may send it; widen it with `till run --scope {p} …`",
                p = provider.name
            ),
        ));
    }
    let bounded = grant.counts_tokens() || grant.max_output_tokens.is_some();
    if endpoint.op.unmetered() && bounded {
        return Err(ProxyError::new(
            403,
            "unmetered",
            "till cannot bound what this endpoint costs (it is not billed in tokens), so a key with a budget, a token rate or an output cap may not call it",
        ));
    }
    if grant.counts_tokens()
        && let Some(json) = &inspected.json
        && let Some(what) = inspect::uncounted_input(api, endpoint.op, json)
    {
        return Err(ProxyError::new(
            403,
            "uncounted",
            format!(
                "this request uses {what}, which makes the provider read or bill more than the request shows; till cannot bound its cost, so a key with a budget or a token rate may not send it"
            ),
        ));
    }
    if grant.counts_tokens()
        && let Some(why) = api.wire().uncounted_header(&parts.headers)
    {
        return Err(ProxyError::new(403, "uncounted", why));
    }

    // 4. The output ceiling: the request's own, else the key's cap, else (for keys that count
    //    tokens) what the budget can pay for, up to DEFAULT_OUTPUT_RESERVE.
    let prompt_tokens = body.len() as u64;
    let choices = inspected.choices;
    let mut insert: Option<u64> = None;
    let ceiling = match inspected.ceiling {
        Some(c) => c,
        None if endpoint.op == route::Op::Other => 0,
        None => {
            let mut c = grant.cap_output_tokens.unwrap_or(DEFAULT_OUTPUT_RESERVE);
            if grant.has_budget() {
                c = c.min(
                    affordable_output(
                        state,
                        &grant,
                        provider,
                        model.as_deref(),
                        prompt_tokens,
                        choices,
                    )
                    .await?,
                );
            }
            // Within the key's tokens per minute, so the request can ever be admitted.
            if let Some(tpm) = grant.tpm() {
                c = c.min((tpm.saturating_sub(prompt_tokens) / choices).max(1));
            }
            if grant.counts_tokens() || grant.cap_output_tokens.is_some() {
                insert = Some(c);
            }
            c
        }
    };
    let output_total = ceiling.saturating_mul(choices);
    state.admit(&grant, prompt_tokens + output_total).await?;

    // Budgets and request ceilings, reserved across every till process sharing the key.
    record.reservation = state
        .reserve(
            &grant,
            &provider.name,
            model.as_deref(),
            prompt_tokens,
            output_total,
            record,
        )
        .await?;

    // 5. The body that goes upstream: the parse till checked, with its edits.
    let mut strip_usage = false;
    let json_body = inspected.json.is_some();
    let body = match inspected.json {
        Some(mut map) => {
            if let Some(c) = insert {
                inspect::insert_ceiling(endpoint.op, provider.name == "openai", &mut map, c);
            }
            strip_usage = api.wire().request_usage(
                endpoint.op,
                inspected.stream,
                inspected.include_usage,
                &mut map,
            );
            Bytes::from(serde_json::to_vec(&map).map_err(|e| {
                ProxyError::new(
                    500,
                    "internal",
                    format!("till could not write the request body: {e}"),
                )
            })?)
        }
        None => body,
    };

    // 6. Forward with the root key.
    let root = state.root_key(&provider.name).await?;
    let url = format!("{}{}{}", provider.base_url, rest, query);
    let mut up = state.client.request(parts.method.clone(), url);
    for (name, value) in &parts.headers {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n)
            || AUTH_HEADERS.contains(&n)
            || n == "host"
            || n == "content-length"
            || n == "accept-encoding"
            || n == "content-encoding"
            || (json_body && n == "content-type")
        {
            continue;
        }
        up = up.header(name, value);
    }
    if json_body {
        up = up.header(http::header::CONTENT_TYPE, "application/json");
    }
    let (auth_name, auth_value) = crate::upstream::auth_header(provider, &root);
    up = up
        .header(auth_name, auth_value)
        .header(http::header::ACCEPT_ENCODING, "identity");
    for (name, value) in api.wire().default_headers() {
        if !parts.headers.contains_key(*name) {
            up = up.header(*name, *value);
        }
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

    // 7. Stream the answer back.
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

/// The most output tokens per choice that the key's remaining budget can pay for after the
/// prompt; refuses the request when that is none.
async fn affordable_output(
    state: &Arc<State>,
    grant: &crate::childkey::Grant,
    provider: &Provider,
    model: Option<&str>,
    prompt_tokens: u64,
    choices: u64,
) -> Result<u64, ProxyError> {
    let (usd_left, tokens_left) = state.budget_left(grant).await?;
    let mut afford = u64::MAX;
    if let Some(left) = tokens_left {
        afford = afford.min(left.saturating_sub(prompt_tokens) / choices.max(1));
    }
    if let Some(left) = usd_left
        && let Some(price) = model.and_then(|m| state.price(&provider.name, m))
    {
        let prompt = price.reserve_micros(prompt_tokens, 0);
        let per_token = price.output * choices.max(1) as f64;
        if per_token > 0.0 {
            afford = afford.min((left.saturating_sub(prompt) as f64 / per_token).floor() as u64);
        }
    }
    if afford == 0 {
        return Err(ProxyError::new(
            429,
            "budget",
            "this key's remaining budget cannot pay for this prompt and any output; widen it with `till key create --budget …` or `till run --budget …`",
        ));
    }
    Ok(afford)
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
        assert_eq!(
            forward_query(Some("alt=sse&key=till_q")).unwrap(),
            "?alt=sse"
        );
        assert_eq!(forward_query(Some("key=till_q")).unwrap(), "");
        assert_eq!(forward_query(None).unwrap(), "");
    }

    #[test]
    fn method_override_parameters_are_refused() {
        for q in [
            "$httpMethod=DELETE",
            "alt=sse&%24method=x",
            "_method=DELETE",
            "X-HTTP-Method-Override=PUT",
        ] {
            assert!(forward_query(Some(q)).is_err(), "{q}");
        }
    }
}
