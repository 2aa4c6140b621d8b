//! The loopback proxy: authenticate the child key, check its caveats, swap in the root key,
//! forward, stream the answer back, meter it on the side.
//!
//! One port, routed by provider prefix (`/openai/…`, `/anthropic/…`, `/gemini/…`, and every
//! configured provider). Authentication applies to every route; the only unauthenticated answers
//! are `GET /_till/health` and an empty 200 to a keyless `HEAD`/`GET` of a provider's root
//! (a client checking that its base URL answers), which nothing upstream ever sees. The upstream is fixed by configuration: absolute-form URIs, CONNECT
//! and foreign `Host` headers are refused, so this is never an open proxy. Root keys are put on
//! the wire only by [`crate::upstream::auth_header`], and never appear in a response.
//! WebSocket upgrades take their own path ([`ws`]) through the same checks.

pub mod alerts;
pub mod body;
pub mod crew;
pub mod errors;
pub mod inspect;
pub mod lifecycle;
pub mod limits;
pub mod meter;
mod phases;
mod record;
pub mod route;
pub(crate) mod scrub;
mod server;
mod state;
mod ws;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use tokio::net::TcpListener;

pub use body::{Finished, ProxyBody};
pub use errors::ProxyError;
pub use state::{MintEntry, ProxyOptions, RequestRecord, State, Stats, StatsSnapshot};

use crate::providers::{ApiFamily, Provider};

/// How long, once the grace is over, cut-off responses get to reach their clients before
/// their connections are dropped.
const CUT_WAIT: Duration = Duration::from_secs(1);

/// How often the "all connections in use" and "cannot accept" warnings may repeat.
const NOTICE_EVERY: Duration = Duration::from_secs(60);

/// Serves until `shutdown` resolves, then stops: no new connections, requests in flight get
/// `shutdown_grace` to finish, then what still runs is cut off and recorded as interrupted.
/// Returns once every connection, and every response body still reading its upstream, is done.
///
/// Connections are bounded: at most `max_connections` at once (a new one takes the place of
/// the one that has waited longest for a request, [`Idle`]; when all have one in flight, it
/// waits in the listen backlog: an agent's burst is served late rather than refused),
/// `header_timeout` to send a request's headers or to
/// sit idle between keep-alive requests, `body_timeout` to send its body (and, for a client that
/// stops reading, to take any of its answer).
///
/// Connection tasks live in a `JoinSet` rather than hyper-util's `GracefulShutdown`: both can
/// tell connections to close after their current response, but a stop must also be able to
/// drop the connections still open when the grace ends, which needs their task handles, and
/// to wait for response bodies that outlive their connection (a stream drained after its
/// client left, an upgraded WebSocket), which [`lifecycle::Stop`] tracks. An upgraded
/// connection keeps its connection slot until its WebSocket ends.
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let slots = Slots::new(state.options.max_connections);
    serve_with(listener, state, slots, None, shutdown).await;
}

/// The connection slots of one proxy, and its warnings about them: shared by every serve loop
/// of that proxy.
#[derive(Clone)]
pub struct Slots {
    sem: Arc<tokio::sync::Semaphore>,
    full: Arc<std::sync::Mutex<lifecycle::Notice>>,
    failing: Arc<std::sync::Mutex<lifecycle::Notice>>,
    idle: Arc<Idle>,
}

impl Slots {
    /// `max` connections at once.
    pub fn new(max: usize) -> Self {
        Self {
            sem: Arc::new(tokio::sync::Semaphore::new(max)),
            full: Arc::new(std::sync::Mutex::new(lifecycle::Notice::every(
                NOTICE_EVERY,
            ))),
            failing: Arc::new(std::sync::Mutex::new(lifecycle::Notice::every(
                NOTICE_EVERY,
            ))),
            idle: Arc::default(),
        }
    }
}

/// The connections waiting for a request's head (a new one, or one idle between keep-alive
/// requests), oldest first. When every slot is taken and another client connects, the one
/// that has waited longest is closed to make room: a client that holds connections open and
/// sends their heads slowly (or never) cannot keep every other client waiting in the backlog
/// until `header_timeout` frees a slot, only to take it again. A connection with a request in
/// flight is never closed so.
#[derive(Default)]
pub(crate) struct Idle {
    next: std::sync::atomic::AtomicU64,
    waiting: std::sync::Mutex<std::collections::BTreeMap<u64, Arc<tokio::sync::Notify>>>,
}

/// A connection's place among the [`Idle`] ones, given up when dropped.
pub(crate) struct IdleWait<'a> {
    idle: &'a Idle,
    at: u64,
    pub(crate) evicted: Arc<tokio::sync::Notify>,
}

impl Idle {
    /// The caller now waits for a head.
    pub(crate) fn wait(&self) -> IdleWait<'_> {
        let at = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let evicted = Arc::new(tokio::sync::Notify::new());
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(at, Arc::clone(&evicted));
        IdleWait {
            idle: self,
            at,
            evicted,
        }
    }

    /// Closes the connection that has waited for a head the longest, if there is one.
    fn evict_oldest(&self) {
        let oldest = self
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_first();
        if let Some((_, evicted)) = oldest {
            // A permit is kept if the connection is between its check and its wait.
            evicted.notify_one();
        }
    }
}

impl Drop for IdleWait<'_> {
    fn drop(&mut self) {
        self.idle
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.at);
    }
}

fn due(notice: &std::sync::Mutex<lifecycle::Notice>) -> bool {
    notice
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .due(tokio::time::Instant::now())
}

/// Like [`serve`], with the connection slots given: several serve loops, each on its own
/// single-threaded runtime and accepting from the same socket, share one `max_connections`,
/// and with their [`crew::Seat`]s share out the connections they accept. Each connection then
/// lives on one thread from accept to close, together with the upstream connections it uses,
/// as in a server with one worker process per core.
pub async fn serve_with(
    listener: TcpListener,
    state: Arc<State>,
    slots: Slots,
    mut seat: Option<crew::Seat>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let opts = &state.options;
    let mut stopper = lifecycle::Stopper::default();
    let mut conns = tokio::task::JoinSet::new();
    let mut backoff = lifecycle::Backoff::default();
    let mut waiting: Option<(tokio::net::TcpStream, std::net::SocketAddr)> = None;
    let waiting = &mut waiting;
    tokio::pin!(shutdown);
    'accept: loop {
        while conns.try_join_next().is_some() {}
        // A connection, then its slot; or a connection another loop handed over with its slot.
        // A loop holds no slot while it waits for a client (with several loops, one waiting so
        // would hold the slot another's client needs). A connection accepted when every slot
        // is taken waits in `waiting` (one a loop; the others wait in the backlog), kept across
        // the loop's turns, so that a connection handed over meanwhile does not drop it.
        let accept = async {
            if waiting.is_some() {
                let slot = Arc::clone(&slots.sem)
                    .acquire_owned()
                    .await
                    .expect("the connection semaphore is never closed");
                let (stream, peer) = waiting.take().expect("a connection waits");
                return Ok(Some((stream, peer, slot)));
            }
            let (stream, peer) = listener.accept().await?;
            if let Ok(slot) = Arc::clone(&slots.sem).try_acquire_owned() {
                return Ok(Some((stream, peer, slot)));
            }
            if due(&slots.full) {
                crate::output::warn(&format!(
                    "{} connections are open, the most [proxy] max_connections allows; a new one takes the place of the one that has waited longest for a request, or waits until one closes",
                    opts.max_connections
                ));
            }
            slots.idle.evict_oldest();
            *waiting = Some((stream, peer));
            Ok::<_, std::io::Error>(None)
        };
        let handed = async {
            match seat.as_mut() {
                Some(seat) => seat.handed().await,
                None => std::future::pending().await,
            }
        };
        let (stream, peer, slot, was_handed) = tokio::select! {
            biased;
            () = &mut shutdown => break 'accept,
            Some(h) = handed => match tokio::net::TcpStream::from_std(h.stream) {
                Ok(stream) => (stream, h.peer, h.slot, true),
                Err(_) => continue,
            },
            accepted = accept => match accepted {
                Ok(Some((stream, peer, slot))) => {
                    backoff.reset();
                    (stream, peer, slot, false)
                }
                // Accepted, and waiting for its slot.
                Ok(None) => continue,
                Err(e) => {
                    let pause = backoff.after(&e);
                    if !pause.is_zero() && due(&slots.failing) {
                        crate::output::warn(&format!(
                            "cannot accept connections ({e}); trying again, at most once a second"
                        ));
                    }
                    tokio::select! {
                        () = tokio::time::sleep(pause) => continue,
                        () = &mut shutdown => break,
                    }
                }
            },
        };
        // One this loop accepted goes to a loop that serves fewer, if there is one.
        let (stream, peer, slot) = match seat.as_ref().filter(|_| !was_handed) {
            Some(seat) => match seat.pick() {
                None => (stream, peer, slot),
                Some(to) => match seat.hand(to, stream, peer, slot) {
                    None => continue,
                    Some(back) => back,
                },
            },
            None => (stream, peer, slot),
        };
        let counted = seat.as_ref().map(|seat| seat.count(was_handed));
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            stop: stopper.stop(),
            // Shared with a WebSocket this connection upgrades to, which outlives it.
            slot: Arc::new(slot),
            idle: Arc::clone(&slots.idle),
        };
        let state = state.clone();
        conns.spawn(async move {
            let _counted = counted;
            server::serve(stream, state, peer, conn).await;
        });
    }
    drop(listener);
    stopper.close();
    let grace_over = tokio::time::Instant::now() + opts.shutdown_grace;
    // A moment for what is nearly done; past it, the person is told what the stop waits for
    // and how to end it now, instead of a silent wait of up to the whole grace.
    let moment = (tokio::time::Instant::now() + Duration::from_millis(300)).min(grace_over);
    let mut done = stopper.wait(moment).await;
    if !done {
        if lifecycle::first_to_say_waiting() {
            crate::output::note(&format!(
                "till: stopping: waiting up to {} for requests still in flight; Ctrl-C again (or another SIGTERM) cuts them off now",
                crate::time::duration_text(opts.shutdown_grace)
            ));
        }
        done = tokio::select! {
            all = stopper.wait(grace_over) => all,
            () = lifecycle::cut_asked() => false,
        };
    }
    if !done {
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

/// What a connection's requests hold of it: the stop, and its slot among
/// `max_connections` (a WebSocket it upgrades to keeps both).
#[derive(Clone)]
struct Conn {
    stop: lifecycle::Stop,
    slot: Arc<tokio::sync::OwnedSemaphorePermit>,
    /// Where it waits for its requests' heads, to be closed for a new client when every slot
    /// is taken.
    idle: Arc<Idle>,
}

/// Serves a connection with hyper's HTTP/1.1 server, which the proxy's own server side hands
/// every connection that asks for a WebSocket upgrade (only hyper can upgrade one): that
/// request and every one after it on the connection.
///
/// hyper starts its header timer when it waits for a request head, including on a kept-alive
/// connection after a response, so it is the idle timeout too. `busy` counts this connection's
/// requests whose response is not done yet (the service call and its body hold a clone): a
/// connection without any can be dropped at a stop.
async fn serve_hyper(
    io: server::Rewind,
    state: Arc<State>,
    peer: SocketAddr,
    conn: Conn,
    busy: Arc<()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(state.options.header_timeout);
    let svc = {
        let (conn, busy) = (conn.clone(), busy.clone());
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let (state, conn, busy) = (state.clone(), conn.clone(), busy.clone());
            async move {
                let mut resp = respond(state, peer, req, conn, busy).await;
                // One request: the upgrade. Answered without one (refused), the connection
                // closes rather than go on under hyper's framing rules, which are not the own
                // server side's (hyper reads a body with both `Content-Length` and
                // `Transfer-Encoding`).
                if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
                    resp.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                }
                Ok::<_, Infallible>(resp)
            }
        })
    };
    let http_conn = http
        .serve_connection(hyper_util::rt::TokioIo::new(io), svc)
        .with_upgrades();
    let closing = conn.stop.closing();
    let _conn = conn;
    tokio::pin!(http_conn);
    tokio::select! {
        _ = http_conn.as_mut() => return,
        () = closing => {}
    }
    if Arc::strong_count(&busy) == 1 {
        // Idle, or still sending a request head: nothing of ours to finish.
        return;
    }
    http_conn.as_mut().graceful_shutdown();
    let _ = http_conn.await;
}

/// A request's body as the phases read it: from the proxy's own server side, or from hyper's
/// (on a connection that asked for a WebSocket, which only hyper can upgrade).
pub(crate) trait RequestBody:
    hyper::body::Body<Data = Bytes, Error: std::fmt::Display> + Send + Unpin + Sized
{
    /// The request as hyper's, which a WebSocket upgrade needs; `None` if it came another way.
    fn hyper(req: Request<Self>) -> Option<Request<Incoming>>;

    /// Bytes of the body read and held but not handed over as a frame yet; they count against
    /// the bodies' shared bound as they arrive.
    fn held(&self) -> u64;
}

impl RequestBody for Incoming {
    fn hyper(req: Request<Self>) -> Option<Request<Incoming>> {
        Some(req)
    }

    /// hyper hands each piece over as it comes.
    fn held(&self) -> u64 {
        0
    }
}

impl RequestBody for server::Body<'_> {
    fn hyper(_: Request<Self>) -> Option<Request<Incoming>> {
        None
    }

    fn held(&self) -> u64 {
        server::Body::held(self)
    }
}

/// One request: [`handle`], answered with a 503 instead if the grace ends before it has a
/// response, and its response body bound to the stop.
async fn respond<B: RequestBody>(
    state: Arc<State>,
    peer: SocketAddr,
    req: Request<B>,
    conn: Conn,
    busy: Arc<()>,
) -> Response<ProxyBody> {
    let stop = conn.stop.clone();
    let slot = Arc::clone(&conn.slot);
    let api = route::split_prefix(req.uri().path())
        .and_then(|(name, _)| state.providers.get(name))
        .map_or(ApiFamily::Openai, |p| p.api);
    let mut resp = tokio::select! {
        biased;
        resp = handle(state, peer, req, conn) => resp,
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
        s.keep_slot(slot);
    }
    resp
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

pub use phases::DEFAULT_OUTPUT_RESERVE;

pub use crate::ledger::query::is_failure;

/// One request: refused outright when it is not for a configured provider on this proxy,
/// else taken through the phases (or, for a WebSocket upgrade, [`ws::handle`]), each refusal
/// recorded and answered in the provider's shape.
async fn handle<B: RequestBody>(
    state: Arc<State>,
    _peer: SocketAddr,
    req: Request<B>,
    conn: Conn,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let (provider, rest) = match route_to_provider(&state, &req, started) {
        Routed::Provider(provider, rest) => (provider, rest),
        Routed::Answered(resp) => return resp,
    };
    if phases::keyless_probe(&req, &rest) {
        return Response::new(ProxyBody::from(Bytes::new()));
    }
    let mut ctx = phases::Ctx::new(
        &state,
        provider,
        &rest,
        RequestRecord::new(&provider.name, started),
    );
    if ws::is_upgrade(req.headers()) {
        // Boxed: a WebSocket's state is ≈ 13 KB, and every HTTP request's future would be as
        // large (and copied as often) if it were inline.
        return match B::hyper(req) {
            Some(req) => Box::pin(ws::handle(ctx, req, conn)).await,
            // The own server side hands every WebSocket upgrade to hyper's: not reached.
            None => ProxyError::new(400, "upgrade", "this connection cannot be upgraded")
                .response(provider.api),
        };
    }
    match run_phases(&mut ctx, req, &conn.stop).await {
        Ok(resp) => resp,
        Err(err) => {
            ctx.record.refused(&state, &err);
            err.response(provider.api)
        }
    }
}

/// The phases of a request to a provider, in order; the first refusal ends it.
async fn run_phases<B: RequestBody>(
    ctx: &mut phases::Ctx<'_>,
    req: Request<B>,
    stop: &lifecycle::Stop,
) -> Result<Response<ProxyBody>, ProxyError> {
    let caller = phases::caller(ctx, &req).await?;
    let verified = phases::authenticate(ctx, &caller)?;
    let place = ctx.state.hold_request(verified.root_binding())?;
    let mut asked = phases::inspect(ctx, &verified, req).await?;
    let admission = phases::admit(ctx, &verified, &asked).await?;
    let mut outgoing = phases::rewrite(ctx, &mut asked, &admission)?;
    // While the request is with the provider, its record is the guard's: should this future
    // be dropped before the answer's head (the stop's grace ended, the client went away), the
    // request is recorded all the same.
    let unanswered = Unanswered {
        state: ctx.state,
        record: Some(ctx.record.take()),
        stop,
    };
    let answered =
        phases::forward(ctx, &asked, &mut outgoing)
            .await
            .and_then(|(upstream, root)| match phases::compressed(&upstream) {
                Some(err) => Err(err),
                None => Ok((upstream, root)),
            });
    ctx.record = unanswered.answered();
    match answered {
        Ok((upstream, root)) => {
            let mut resp = phases::respond(ctx, &mut asked, &mut outgoing, upstream, root);
            if let ProxyBody::Stream(s) = resp.body_mut() {
                s.keep_place(place);
            }
            Ok(resp)
        }
        // The provider ran these and may bill them: an answer that did not begin within the
        // timeout (a long answer that is not streamed can take that long), one whose
        // connection broke after the request went out whole, one that came compressed and so
        // unread. The reservation is charged, or an agent could spend without end in such
        // requests.
        Err(err)
            if matches!(
                err.kind,
                "upstream_timeout" | "upstream_lost" | "upstream_encoding"
            ) =>
        {
            ctx.record.take().unread(ctx.state, &err);
            Ok(err.response(ctx.provider.api))
        }
        Err(err) => Err(err),
    }
}

/// A request sent to its provider and not answered yet: recorded when dropped before
/// [`Unanswered::answered`] gives its record back, as `interrupted` when the proxy's stop cut
/// it off (else `abandoned`: a client that hangs up does not drop it, since the answer is
/// still read to meter it). The provider may run it: a budget's reservation is charged (the
/// stop's sweep of the reservations would charge it too; the ledger settles it once), and
/// without a budget it is at least in the log.
struct Unanswered<'a> {
    state: &'a State,
    record: Option<RequestRecord>,
    stop: &'a lifecycle::Stop,
}

impl Unanswered<'_> {
    fn answered(mut self) -> RequestRecord {
        self.record
            .take()
            .unwrap_or_else(|| unreachable!("an unanswered request's record is taken once"))
    }
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        let Some(mut record) = self.record.take() else {
            return;
        };
        let interrupted = self.stop.is_cut();
        if interrupted {
            let charged = record.reservation.as_ref().map_or(String::new(), |r| {
                format!(
                    " and charged {}, what it had reserved",
                    crate::format::usd_micros(r.micros)
                )
            });
            crate::output::note(&format!(
                "till: a request to {} was still waiting for its answer when the proxy stopped; recorded as `interrupted`{charged}",
                record.provider
            ));
        }
        record.status = 503;
        record.finish(
            self.state,
            Some(body::Finished {
                error: Some(if interrupted {
                    "till stopped before the provider answered".into()
                } else {
                    "the client went away before the provider answered".into()
                }),
                interrupted,
                client_gone: !interrupted,
                ..body::Finished::default()
            }),
        );
    }
}

/// Where [`route_to_provider`] sends a request.
enum Routed<'s> {
    /// To this provider, with the canonical path after its prefix.
    Provider(&'s Provider, String),
    /// Nowhere: this is the answer.
    Answered(Response<ProxyBody>),
}

/// Which provider a request is for, and the canonical path after its prefix. Answers itself
/// what never reaches a provider: proxy-style requests, foreign hosts, the health check,
/// refused paths and unknown prefixes.
fn route_to_provider<'s, B>(state: &'s State, req: &Request<B>, started: Instant) -> Routed<'s> {
    if req.method() == Method::CONNECT || req.uri().authority().is_some() {
        return Routed::Answered(
            ProxyError::new(
                400,
                "not_a_proxy",
                "till forwards only to configured providers; absolute URLs and CONNECT are refused",
            )
            .response(ApiFamily::Openai),
        );
    }
    // Methods are case-sensitive, and an upstream may still read `post` as POST (or route an
    // extension method somewhere of its own): only the standard methods are classified and
    // forwarded.
    if !matches!(
        *req.method(),
        Method::GET
            | Method::POST
            | Method::PUT
            | Method::PATCH
            | Method::DELETE
            | Method::HEAD
            | Method::OPTIONS
    ) {
        return Routed::Answered(
            ProxyError::new(
                405,
                "method",
                format!(
                    "till forwards only the standard HTTP methods (GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS), in capitals; `{}` is refused",
                    req.method()
                ),
            )
            .response(ApiFamily::Openai),
        );
    }
    if !state.host_allowed(req.headers()) {
        return Routed::Answered(
            ProxyError::new(
                421,
                "host",
                "this till proxy only answers requests addressed to its loopback address",
            )
            .response(ApiFamily::Openai),
        );
    }
    if !state.origin_allowed(req.headers()) {
        return Routed::Answered(
            ProxyError::new(
                403,
                "origin",
                "this till proxy does not answer web pages of other sites: the request's Origin is not a loopback address",
            )
            .response(ApiFamily::Openai),
        );
    }
    let raw = req.uri().path();
    if raw == "/_till/health" && req.method() == Method::GET {
        return Routed::Answered(Response::new(ProxyBody::from(Bytes::from_static(b"ok\n"))));
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
                RequestRecord::new(&provider.name, started).refused(state, &err);
            }
            return Routed::Answered(err.response(shape));
        }
    };
    let Some((name, rest)) = route::split_prefix(&path) else {
        return Routed::Answered(not_found(state, &path));
    };
    let Some(provider) = state.providers.get(name) else {
        return Routed::Answered(not_found(state, &path));
    };
    // `/NAME`, then the rest in the canonical path's own buffer (`/` for `/NAME` alone).
    let prefix = 1 + name.len();
    let rest = if path.len() > prefix {
        let mut path = path;
        path.drain(..prefix);
        path
    } else {
        rest.to_string()
    };
    Routed::Provider(provider, rest)
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
