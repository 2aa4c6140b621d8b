//! The proxy's connections to providers: a few per provider on each thread, over hyper's
//! connection API, reused while they stay open.
//!
//! A thread keeps its own connections, so a request and the upstream connection it uses are
//! driven by the same thread. An HTTPS provider gets HTTP/2 when it offers it by ALPN (one
//! connection, many streams) and HTTP/1.1 otherwise, both over hyper; a plain `http://` one
//! gets HTTP/1.1 over till's own client connection ([`super::h1`]).
//!
//! A hyper HTTP/1.1 connection stays in its thread's list while it carries a request: it is
//! taken again only once hyper says it is ready for the next one (the previous answer was read
//! to its end), so there is no task per request to hand it back. One of till's own is out of
//! the list while it carries a request, and its answer's body puts it back once read to the
//! end. A request that a reused connection closed before it was written goes again on another
//! one; once any of it may have been written it is never sent twice.

use std::cell::RefCell;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Uri};
use http_body_util::Full;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::h1;

/// What a forwarded request's body is: all of it, read before it is sent.
pub type Body = Bytes;

/// What hyper's connections carry.
type HyperBody = Full<Bytes>;

/// An answer's body, read from the provider as the agent's side asks for it.
pub enum Answer {
    /// From a connection of till's own (plain HTTP/1.1).
    Own(h1::Body),
    /// From one of hyper's (HTTPS).
    Hyper(Incoming),
}

impl hyper::body::Body for Answer {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            Answer::Own(b) => Pin::new(b).poll_frame(cx),
            Answer::Hyper(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(std::io::Error::other))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Answer::Own(b) => b.is_end_stream(),
            Answer::Hyper(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Answer::Own(b) => b.size_hint(),
            Answer::Hyper(b) => b.size_hint(),
        }
    }
}

/// How long a connection may sit unused and still be taken for a request; an older one is
/// closed instead (providers close theirs after about a minute).
const IDLE: Duration = Duration::from_secs(90);

/// HTTP/1.1 connections a thread keeps per provider. More may be open at once; those beyond
/// it close after their answer.
const KEEP: usize = 32;

/// Why a request did not get an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The base URL and the path after it do not make a URL.
    Url,
    /// No connection could be made (refused, unreachable, TLS failed, timed out, or a URL
    /// that is not `http` or `https`).
    Connect,
    /// The connection failed after the request went out, before its answer's head arrived:
    /// the provider may have run it.
    Lost,
    /// The connection failed while the request was written, and no answer came: the
    /// provider did not get all of it (till's own HTTP/1.1 connections tell this from
    /// [`SendError::Lost`]; hyper's do not, and say `Lost`).
    CutShort,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

/// Sends `method` to `base` (a provider's base URL, `http://` or `https://`, perhaps with a
/// path of its own) followed by `tail` (the path and query after it), with `headers` and
/// `body`, on one of this thread's connections to its origin or on a new one made within
/// `connect_timeout`, and hands back the answer.
///
/// `headers` gives an iterator over the headers each time it is called (the caller's filter
/// over another request's map, say): a plain-HTTP request's head is written straight from
/// them, and only hyper's connections get a map of them.
pub async fn send<'h, I>(
    method: Method,
    base: &str,
    tail: &str,
    headers: impl Fn() -> I,
    body: Body,
    connect_timeout: Duration,
) -> Result<Response<Answer>, SendError>
where
    I: Iterator<Item = (&'h HeaderName, &'h HeaderValue)>,
{
    let (origin, base_path) = origin_of(base).ok_or(SendError::Url)?;
    if !is_request_target(tail) {
        return Err(SendError::Url);
    }
    if origin.scheme() == Some(&Scheme::HTTP) {
        let target: std::borrow::Cow<str> = if base_path.is_empty() {
            tail.into()
        } else {
            format!("{base_path}{tail}").into()
        };
        let resp = send_own(&method, &origin, &target, headers, body, connect_timeout).await?;
        return Ok(resp.map(Answer::Own));
    }
    let uri = Uri::try_from(format!("{base}{tail}")).map_err(|_| SendError::Url)?;
    let headers = headers();
    let mut map = HeaderMap::with_capacity(headers.size_hint().0);
    for (name, value) in headers {
        map.append(name.clone(), value.clone());
    }
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.headers_mut() = map;
    let resp = send_hyper(req, connect_timeout).await?;
    Ok(resp.map(Answer::Hyper))
}

/// A base URL as read: the origin (`scheme://authority/`) and the length of the path
/// written after it, or `None` for one that is not an absolute URL.
type Read = Option<(Uri, usize)>;

thread_local! {
    /// Base URLs already read on this thread.
    static BASES: RefCell<Vec<(Box<str>, Read)>> = const { RefCell::new(Vec::new()) };
}

/// The origin of the base URL `base` as a URI (its scheme and authority; the pool and the
/// connections need no more), and the path `base` has after them, written as it is. Read
/// once per thread and base URL: a request looks it up instead of parsing a whole URL.
fn origin_of(base: &str) -> Option<(Uri, &str)> {
    let read = BASES.with(|b| {
        let b = b.borrow();
        b.iter().find(|(k, _)| **k == *base).map(|(_, v)| v.clone())
    });
    let (origin, path_len) = match read {
        Some(read) => read?,
        None => {
            let read = read_base(base);
            BASES.with(|b| b.borrow_mut().push((base.into(), read.clone())));
            read?
        }
    };
    Some((origin, &base[base.len() - path_len..]))
}

/// [`origin_of`], the first time.
fn read_base(base: &str) -> Read {
    let uri = Uri::try_from(base).ok()?;
    let (scheme, authority) = (uri.scheme()?.clone(), uri.authority()?.clone());
    let prefix = format!("{scheme}://{authority}");
    // What follows the authority, as written (a path prefix such as `/openai`, or nothing).
    let path = base.strip_prefix(prefix.as_str())?;
    let origin = Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query("/")
        .build()
        .ok()?;
    Some((origin, path.len()))
}

/// Whether `tail` can follow a base URL's path on a request line as it is: visible ASCII only
/// (no space, CR, LF or other control character could end the request line early) and no
/// `#`. The proxy builds it from the canonical path and the query of a request `http` parsed,
/// so this never refuses one (the query's bytes were held to the same by `forward_query`); it
/// is the check a parse of the whole URL made before.
fn is_request_target(tail: &str) -> bool {
    tail.starts_with('/') && tail.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'#')
}

/// [`send`] over one of till's own HTTP/1.1 connections: `uri` is the origin's, `target` the
/// request line's path and query.
async fn send_own<'h, I>(
    method: &Method,
    uri: &Uri,
    target: &str,
    headers: impl Fn() -> I,
    body: Body,
    connect_timeout: Duration,
) -> Result<Response<h1::Body>, SendError>
where
    I: Iterator<Item = (&'h HeaderName, &'h HeaderValue)>,
{
    let given = headers().find(|(name, _)| *name == http::header::HOST);
    let host = match given {
        Some((_, h)) => h.clone(),
        None => POOL
            .with(|p| p.borrow_mut().origin_or_add(uri).map(|o| o.host.clone()))
            .ok_or(SendError::Connect)?,
    };
    let head = h1::head(method, target, &host, &headers, body.len());
    let head_only = method == http::Method::HEAD;
    // Each failed reuse drops the connection it tried, so this ends.
    loop {
        let Some(conn) = POOL.with(|p| p.borrow_mut().checkout_own(uri, Instant::now())) else {
            break;
        };
        match h1::exchange(conn, &head, &body, head_only, true, put_back).await {
            Ok(resp) => return Ok(resp),
            Err(h1::Failed::NotSent) => {}
            Err(h1::Failed::Lost) => return Err(SendError::Lost),
            Err(h1::Failed::CutShort) => return Err(SendError::CutShort),
        }
    }
    let authority = uri.authority().ok_or(SendError::Connect)?.clone();
    let tcp = tokio::time::timeout(connect_timeout, Box::pin(connect(uri)))
        .await
        .map_err(|_| SendError::Connect)??;
    let conn = h1::Conn::new(tcp, authority);
    h1::exchange(conn, &head, &body, head_only, false, put_back)
        .await
        .map_err(|e| match e {
            h1::Failed::CutShort => SendError::CutShort,
            h1::Failed::NotSent | h1::Failed::Lost => SendError::Lost,
        })
}

/// Takes back one of till's own connections whose answer was read to its end.
fn put_back(conn: h1::Conn) {
    // During a thread's teardown the pool may be gone: the connection just closes.
    let _ = POOL.try_with(|p| {
        let Ok(mut p) = p.try_borrow_mut() else {
            return;
        };
        let found = p
            .origins
            .iter()
            .position(|o| o.scheme == Scheme::HTTP && o.authority == conn.authority);
        let origin = match found {
            Some(i) => p.origins.get_mut(i),
            // A body read to its end on another thread than the one that sent its request
            // (`till run`'s runtime moves tasks between its threads).
            None => {
                let uri = Uri::builder()
                    .scheme(Scheme::HTTP)
                    .authority(conn.authority.clone())
                    .path_and_query("/")
                    .build();
                match uri {
                    Ok(uri) => p.origin_or_add(&uri),
                    Err(_) => None,
                }
            }
        };
        if let Some(o) = origin
            && o.own.len() < KEEP
        {
            o.own.push(conn);
        }
    });
}

/// [`send`] over hyper's connections.
async fn send_hyper(
    mut req: Request<HyperBody>,
    connect_timeout: Duration,
) -> Result<Response<Incoming>, SendError> {
    let uri = req.uri().clone();
    // Each failed reuse drops the connection it tried, so this ends.
    for _ in 0..=KEEP {
        let Some(conn) = POOL.with(|p| p.borrow_mut().checkout(&uri, Instant::now())) else {
            break;
        };
        let sent = match conn {
            Reused::H1(mut send, host) => {
                origin_form(&mut req, &host);
                let answer = send.try_send_request(req);
                POOL.with(|p| p.borrow_mut().checkin(&uri, send, Instant::now()));
                answer.await
            }
            Reused::H2(mut send) => send.try_send_request(req).await,
        };
        match sent {
            Ok(resp) => return Ok(resp),
            Err(mut e) => match e.take_message() {
                // Not written: the connection was closing. Try the next one.
                Some(back) => {
                    req = back;
                    *req.uri_mut() = uri.clone();
                    req.headers_mut().remove(http::header::HOST);
                }
                None => return Err(SendError::Lost),
            },
        }
    }
    // Boxed: making a connection (TLS, the HTTP/2 handshake) is a large future that a request
    // on a kept connection should not carry.
    let fresh = tokio::time::timeout(connect_timeout, Box::pin(open(&uri)))
        .await
        .map_err(|_| SendError::Connect)??;
    let answer = match fresh {
        Fresh::H1(mut send) => {
            let host = POOL
                .with(|p| p.borrow_mut().origin_or_add(&uri).map(|o| o.host.clone()))
                .ok_or(SendError::Connect)?;
            origin_form(&mut req, &host);
            let answer = send.try_send_request(req);
            POOL.with(|p| p.borrow_mut().checkin(&uri, send, Instant::now()));
            answer.await
        }
        Fresh::H2(mut send) => {
            POOL.with(|p| {
                if let Some(o) = p.borrow_mut().origin_or_add(&uri) {
                    o.h2 = Some(send.clone());
                }
            });
            send.try_send_request(req).await
        }
    };
    answer.map_err(|_| SendError::Lost)
}

/// A connection taken from the pool for one request.
enum Reused {
    /// Ready for a request, with the `Host` value of its origin.
    H1(http1::SendRequest<HyperBody>, HeaderValue),
    H2(http2::SendRequest<HyperBody>),
}

/// A connection just made.
enum Fresh {
    H1(http1::SendRequest<HyperBody>),
    H2(http2::SendRequest<HyperBody>),
}

/// One thread's connections, by origin (a handful of providers: a list, not a map).
#[derive(Default)]
struct Pool {
    origins: Vec<Origin>,
}

struct Origin {
    scheme: Scheme,
    authority: Authority,
    /// The `Host` header HTTP/1.1 requests to it carry.
    host: HeaderValue,
    h2: Option<http2::SendRequest<HyperBody>>,
    h1: Vec<Kept>,
    /// Idle connections of till's own (plain HTTP), the one used last at the end.
    own: Vec<h1::Conn>,
}

struct Kept {
    send: http1::SendRequest<HyperBody>,
    /// When it was last given a request.
    used: Instant,
}

impl Origin {
    fn is(&self, uri: &Uri) -> bool {
        uri.scheme() == Some(&self.scheme) && uri.authority() == Some(&self.authority)
    }
}

impl Pool {
    fn origin(&mut self, uri: &Uri) -> Option<&mut Origin> {
        self.origins.iter_mut().find(|o| o.is(uri))
    }

    /// An open connection to `uri`'s origin that can take a request now: its HTTP/2 one, or
    /// the HTTP/1.1 one used last among those ready. Closed ones, and ready ones unused
    /// for longer than [`IDLE`], are dropped on the way.
    fn checkout(&mut self, uri: &Uri, now: Instant) -> Option<Reused> {
        let o = self.origin(uri)?;
        if let Some(h2) = &o.h2 {
            if !h2.is_closed() {
                return Some(Reused::H2(h2.clone()));
            }
            o.h2 = None;
        }
        let mut i = o.h1.len();
        while i > 0 {
            i -= 1;
            let kept = &o.h1[i];
            if kept.send.is_closed() {
                o.h1.swap_remove(i);
            } else if kept.send.is_ready() {
                let kept = o.h1.swap_remove(i);
                if now.saturating_duration_since(kept.used) <= IDLE {
                    return Some(Reused::H1(kept.send, o.host.clone()));
                }
            }
        }
        None
    }

    /// An idle connection of till's own to `uri`'s origin, the one used last first; those
    /// idle for longer than [`IDLE`], closed by the provider, or with bytes it sent unasked
    /// are dropped on the way.
    fn checkout_own(&mut self, uri: &Uri, now: Instant) -> Option<h1::Conn> {
        let o = self.origin(uri)?;
        while let Some(mut conn) = o.own.pop() {
            if now.saturating_duration_since(conn.used) <= IDLE && conn.is_open() {
                return Some(conn);
            }
        }
        None
    }

    /// Puts back an HTTP/1.1 connection that was just given a request.
    fn checkin(&mut self, uri: &Uri, send: http1::SendRequest<HyperBody>, now: Instant) {
        if let Some(o) = self.origin(uri) {
            if o.h1.len() >= KEEP {
                o.h1.retain(|k| !k.send.is_closed());
            }
            if o.h1.len() < KEEP {
                o.h1.push(Kept { send, used: now });
            }
        }
    }

    /// `uri`'s origin, added when this thread has none yet.
    fn origin_or_add(&mut self, uri: &Uri) -> Option<&mut Origin> {
        let i = match self.origins.iter().position(|o| o.is(uri)) {
            Some(i) => i,
            None => {
                let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
                    return None;
                };
                self.origins.push(Origin {
                    scheme: scheme.clone(),
                    authority: authority.clone(),
                    host: host_header(uri)?,
                    h2: None,
                    h1: Vec::new(),
                    own: Vec::new(),
                });
                self.origins.len() - 1
            }
        };
        self.origins.get_mut(i)
    }
}

/// Makes `req` an HTTP/1.1 request: the path and query alone on the request line, the origin
/// in `Host`.
fn origin_form(req: &mut Request<HyperBody>, host: &HeaderValue) {
    let path = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *req.uri_mut() = Uri::from(path);
    req.headers_mut()
        .entry(http::header::HOST)
        .or_insert_with(|| host.clone());
}

/// `host[:port]` of `uri`, the port left out when it is the scheme's own.
fn host_header(uri: &Uri) -> Option<HeaderValue> {
    let host = uri.host()?;
    let value = match (uri.port_u16(), is_https(uri)) {
        (None, _) | (Some(443), true) | (Some(80), false) => host.to_owned(),
        (Some(port), _) => format!("{host}:{port}"),
    };
    HeaderValue::try_from(value).ok()
}

fn is_https(uri: &Uri) -> bool {
    uri.scheme() == Some(&Scheme::HTTPS)
}

/// TLS for providers: the webpki roots (the same as every other call till makes), TLS 1.2
/// and 1.3, and ALPN offering HTTP/2 before HTTP/1.1.
static TLS: LazyLock<Arc<rustls::ClientConfig>> = LazyLock::new(|| {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    #[cfg_attr(not(test), allow(unused_mut))]
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    #[cfg(test)]
    tests::trust_test_authority(&mut roots);
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(tls)
});

/// A TCP connection to `uri`'s host and port (the scheme's own when it names none).
async fn connect(uri: &Uri) -> Result<tokio::net::TcpStream, SendError> {
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(SendError::Connect),
    };
    let host = bare_host(uri)?;
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|_| SendError::Connect)?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// `uri`'s host, an IPv6 literal without the brackets a URI puts around it.
fn bare_host(uri: &Uri) -> Result<&str, SendError> {
    let host = uri.host().ok_or(SendError::Connect)?;
    Ok(host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host))
}

/// A new hyper connection to `uri`'s origin over TLS, its task spawned on the current runtime.
async fn open(uri: &Uri) -> Result<Fresh, SendError> {
    let tcp = connect(uri).await?;
    let host = bare_host(uri)?;
    let name =
        rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|_| SendError::Connect)?;
    let tls = tokio_rustls::TlsConnector::from(Arc::clone(&TLS))
        .connect(name, tcp)
        .await
        .map_err(|_| SendError::Connect)?;
    if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
        let (send, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|_| SendError::Connect)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Fresh::H2(send))
    } else {
        hyper_h1(tls).await
    }
}

async fn hyper_h1<T>(io: T) -> Result<Fresh, SendError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (send, conn) = http1::handshake(TokioIo::new(io))
        .await
        .map_err(|_| SendError::Connect)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Fresh::H1(send))
}

#[cfg(test)]
mod tests;
