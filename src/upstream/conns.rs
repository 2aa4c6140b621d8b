//! The proxy's connections to providers: a few per provider on each thread, over hyper's
//! connection API, reused while they stay open.
//!
//! A thread keeps its own connections, so a request and the upstream connection it uses are
//! driven by the same thread. An HTTPS provider gets HTTP/2 when it offers it by ALPN (one
//! connection, many streams) and HTTP/1.1 otherwise; a plain `http://` one gets HTTP/1.1.
//!
//! An HTTP/1.1 connection stays in its thread's list while it carries a request: it is taken
//! again only once hyper says it is ready for the next one (the previous answer was read to
//! its end), so there is no task per request to hand it back. A request that a reused
//! connection closed before it was written goes again on another one; once any of it may have
//! been written it is never sent twice.

use std::cell::RefCell;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

/// What a forwarded request's body is.
pub type Body = Full<Bytes>;

/// How long a connection may sit unused and still be taken for a request; an older one is
/// closed instead (providers close theirs after about a minute).
const IDLE: Duration = Duration::from_secs(90);

/// HTTP/1.1 connections a thread keeps per provider. More may be open at once; those beyond
/// it close after their answer.
const KEEP: usize = 32;

/// Why a request did not get an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// No connection could be made (refused, unreachable, TLS failed, timed out, or a URL
    /// that is not `http` or `https`).
    Connect,
    /// The connection failed after the request went out, or before its answer's head arrived.
    Lost,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

/// Sends `req` (an absolute `http://` or `https://` URI) on one of this thread's connections
/// to its origin, or on a new one made within `connect_timeout`, and hands back the answer
/// with hyper's own body.
pub async fn send(
    mut req: Request<Body>,
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
    H1(http1::SendRequest<Body>, HeaderValue),
    H2(http2::SendRequest<Body>),
}

/// A connection just made.
enum Fresh {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
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
    h2: Option<http2::SendRequest<Body>>,
    h1: Vec<Kept>,
}

struct Kept {
    send: http1::SendRequest<Body>,
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

    /// Puts back an HTTP/1.1 connection that was just given a request.
    fn checkin(&mut self, uri: &Uri, send: http1::SendRequest<Body>, now: Instant) {
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
                });
                self.origins.len() - 1
            }
        };
        self.origins.get_mut(i)
    }
}

/// Makes `req` an HTTP/1.1 request: the path and query alone on the request line, the origin
/// in `Host`.
fn origin_form(req: &mut Request<Body>, host: &HeaderValue) {
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

/// A new connection to `uri`'s origin, its task spawned on the current runtime.
async fn open(uri: &Uri) -> Result<Fresh, SendError> {
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(SendError::Connect),
    };
    let host = uri.host().ok_or(SendError::Connect)?;
    // An IPv6 literal is bracketed in a URI and bare everywhere else.
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|_| SendError::Connect)?;
    let _ = tcp.set_nodelay(true);
    if !https {
        return h1(tcp).await;
    }
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
        h1(tls).await
    }
}

async fn h1<T>(io: T) -> Result<Fresh, SendError>
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
