//! The connections against real servers on loopback: hyper's HTTP/1.1 and HTTP/2 servers,
//! TLS with ALPN through rustls, with a test authority (`tests/fixtures/tls`: an authority and
//! a server certificate for `IP:127.0.0.1` that it signed, valid to 2126; test use only) that
//! only this module's test build trusts.

use std::convert::Infallible;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use http_body_util::BodyExt as _;
use hyper::service::service_fn;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;

use super::*;

const AUTHORITY: &[u8] = include_bytes!("../../../tests/fixtures/tls/authority.der");
const SERVER_CERT: &[u8] = include_bytes!("../../../tests/fixtures/tls/server.der");
const SERVER_KEY: &[u8] = include_bytes!("../../../tests/fixtures/tls/server.key.der");

pub(super) fn trust_test_authority(roots: &mut rustls::RootCertStore) {
    roots
        .add(CertificateDer::from(AUTHORITY))
        .expect("the test authority parses");
}

/// What a test server saw: its accepted connections and each request's line and `Host`.
#[derive(Default)]
struct Seen {
    accepted: AtomicUsize,
    requests: Mutex<Vec<String>>,
}

impl Seen {
    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Tls {
    None,
    /// TLS offering these ALPN protocols.
    Alpn(&'static [&'static [u8]]),
}

/// A server on 127.0.0.1 that answers every request with its version and path, after
/// `delay`; with `close_after_one`, each connection closes once its first answer is out.
async fn server(tls: Tls, delay: Duration, close_after_one: bool) -> (u16, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Seen::default());
    let acceptor = match tls {
        Tls::None => None,
        Tls::Alpn(protocols) => {
            let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(SERVER_CERT)],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(SERVER_KEY)),
            )
            .unwrap();
            config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
        }
    };
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            s.accepted.fetch_add(1, Ordering::SeqCst);
            let (s, acceptor) = (s.clone(), acceptor.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let s = s.clone();
                    async move {
                        let host = req
                            .headers()
                            .get(http::header::HOST)
                            .map(|h| h.to_str().unwrap().to_owned())
                            .unwrap_or_default();
                        let line = format!("{:?} {} host={host}", req.version(), req.uri());
                        s.requests.lock().unwrap().push(line.clone());
                        let _ = req.into_body().collect().await;
                        tokio::time::sleep(delay).await;
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(line))))
                    }
                });
                let Some(acceptor) = acceptor else {
                    let mut http = hyper::server::conn::http1::Builder::new();
                    http.keep_alive(!close_after_one);
                    let _ = http.serve_connection(TokioIo::new(tcp), svc).await;
                    return;
                };
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                }
            });
        }
    });
    (port, seen)
}

/// A GET of `url` (its origin the base URL, its path the rest) with no headers and a body of
/// `{}`.
async fn get(url: &str) -> Result<http::Response<Answer>, SendError> {
    let after_scheme = url.find("://").unwrap() + 3;
    let at = after_scheme + url[after_scheme..].find('/').unwrap();
    let none = std::iter::empty::<(&http::HeaderName, &http::HeaderValue)>;
    let body = Bytes::from_static(b"{}");
    let (base, tail) = url.split_at(at);
    send(
        http::Method::GET,
        base,
        tail,
        none,
        body,
        Duration::from_secs(5),
    )
    .await
}

#[test]
fn a_base_url_is_read_once_into_its_origin_and_the_path_written_after_it() {
    for (base, origin, path) in [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/", ""),
        ("https://api.example.com", "https://api.example.com/", ""),
        (
            "http://localhost:11434/ollama",
            "http://localhost:11434/",
            "/ollama",
        ),
        (
            "https://gw.example.com/a/b/",
            "https://gw.example.com/",
            "/a/b/",
        ),
    ] {
        for _ in 0..2 {
            let (uri, p) = origin_of(base).unwrap();
            assert_eq!((uri.to_string().as_str(), p), (origin, path), "{base}");
        }
    }
    for bad in [
        "",
        "127.0.0.1:80",
        "/v1",
        "http://",
        "ftp ://x",
        "http://a b",
    ] {
        assert!(origin_of(bad).is_none(), "{bad:?}");
        assert!(origin_of(bad).is_none(), "{bad:?} read again");
    }
}

#[test]
fn only_a_path_that_cannot_end_the_request_line_follows_a_base_url() {
    for ok in [
        "/",
        "/v1/chat/completions",
        "/v1/models/gpt-4o:generate?alt=sse&x=%20",
    ] {
        assert!(is_request_target(ok), "{ok:?}");
    }
    for bad in [
        "",
        "v1/x",
        "/v1/x y",
        "/v1/x\r\nx-injected: 1",
        "/v1/x\n",
        "/v1/x\t",
        "/v1/x#frag",
        "/v1/\u{e9}",
        "/v1/\u{7f}",
    ] {
        assert!(!is_request_target(bad), "{bad:?}");
    }
}

#[tokio::test]
async fn a_base_url_or_path_that_makes_no_url_is_refused_before_any_connection() {
    let none = std::iter::empty::<(&http::HeaderName, &http::HeaderValue)>;
    for (base, tail) in [
        ("not a url", "/v1/x"),
        ("http://127.0.0.1:9", "/v1/x y"),
        ("https://127.0.0.1:9", "/v1/x\r\nhost: evil"),
    ] {
        let sent = send(
            http::Method::GET,
            base,
            tail,
            none,
            Bytes::new(),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(sent.err(), Some(SendError::Url), "{base} {tail:?}");
    }
}

/// Sends a request and reads its whole answer.
async fn fetch(url: &str) -> Result<(http::Version, String), SendError> {
    let resp = get(url).await?;
    let version = resp.version();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Ok((version, String::from_utf8(body.to_vec()).unwrap()))
}

#[tokio::test]
async fn plain_http_reuses_one_connection_with_the_path_on_the_request_line_and_the_origin_in_host()
{
    let (port, seen) = server(Tls::None, Duration::ZERO, false).await;
    for i in 0..5 {
        let (version, body) = fetch(&format!("http://127.0.0.1:{port}/v1/x?n={i}"))
            .await
            .unwrap();
        assert_eq!(version, http::Version::HTTP_11);
        assert_eq!(body, format!("HTTP/1.1 /v1/x?n={i} host=127.0.0.1:{port}"));
    }
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn requests_at_once_get_a_connection_each_and_those_are_reused_afterwards() {
    let (port, seen) = server(Tls::None, Duration::from_millis(100), false).await;
    let url = format!("http://127.0.0.1:{port}/v1/at-once");
    let all = futures_util::future::join_all((0..3).map(|_| fetch(&url))).await;
    assert!(all.iter().all(Result::is_ok), "{all:?}");
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 3);
    for _ in 0..3 {
        fetch(&url).await.unwrap();
    }
    let all = futures_util::future::join_all((0..3).map(|_| fetch(&url))).await;
    assert!(all.iter().all(Result::is_ok), "{all:?}");
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 3);
    assert_eq!(seen.requests().len(), 9);
}

#[tokio::test]
async fn a_connection_the_upstream_closed_is_replaced_and_no_request_goes_twice() {
    let (port, seen) = server(Tls::None, Duration::ZERO, true).await;
    for i in 0..4 {
        let url = format!("http://127.0.0.1:{port}/v1/once/{i}");
        fetch(&url).await.unwrap();
        // Give the closed connection's task time to see the close.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let paths: Vec<String> = seen.requests();
    assert_eq!(paths.len(), 4, "{paths:?}");
    for (i, line) in paths.iter().enumerate() {
        assert!(line.contains(&format!("/v1/once/{i} ")), "{paths:?}");
    }
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn an_answer_dropped_before_its_end_leaves_the_next_request_an_answer() {
    let (port, seen) = server(Tls::None, Duration::ZERO, false).await;
    let url = format!("http://127.0.0.1:{port}/v1/dropped");
    let resp = get(&url).await.unwrap();
    drop(resp);
    let (_, body) = fetch(&url).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 /v1/dropped"), "{body}");
    assert_eq!(seen.requests().len(), 2);
}

/// An upstream that reads a request and closes without answering, counting what it read.
/// An upstream that reads a request's head and resets the connection while its body is still
/// being written never got the whole request: that is told apart from one read whole and
/// dropped, which the provider may have run.
#[tokio::test]
async fn a_request_cut_off_while_it_was_written_is_cut_short_not_lost() {
    use tokio::io::AsyncReadExt as _;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            let _ = tcp.read(&mut buf).await;
            // Closed with data unread: the kernel answers with a reset.
            let _ = tcp.set_zero_linger();
            drop(tcp);
        }
    });
    let none = std::iter::empty::<(&http::HeaderName, &http::HeaderValue)>;
    let body = Bytes::from(vec![b' '; 64 << 20]);
    let sent = send(
        http::Method::POST,
        &format!("http://127.0.0.1:{port}"),
        "/v1/big",
        none,
        body,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(sent.err(), Some(SendError::CutShort));
}

#[tokio::test]
async fn a_request_the_upstream_read_and_dropped_is_lost_and_not_sent_again() {
    use tokio::io::AsyncReadExt as _;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(AtomicUsize::new(0));
    let h = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            let n = tcp.read(&mut buf).await.unwrap_or(0);
            if buf[..n].starts_with(b"POST") || buf[..n].starts_with(b"GET") {
                h.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let url = format!("http://127.0.0.1:{port}/v1/dropped");
    assert_eq!(fetch(&url).await.unwrap_err(), SendError::Lost);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(heads.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn https_with_h2_offered_speaks_http2_on_one_connection_for_requests_at_once() {
    let (port, seen) = server(
        Tls::Alpn(&[b"h2", b"http/1.1"]),
        Duration::from_millis(50),
        false,
    )
    .await;
    let url = format!("https://127.0.0.1:{port}/v1/two");
    let (version, body) = fetch(&url).await.unwrap();
    assert_eq!(version, http::Version::HTTP_2);
    assert!(body.starts_with("HTTP/2.0 https://127.0.0.1:"), "{body}");
    let all = futures_util::future::join_all((0..4).map(|_| fetch(&url))).await;
    assert!(all.iter().all(Result::is_ok), "{all:?}");
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(seen.requests().len(), 5);
}

#[tokio::test]
async fn https_without_h2_speaks_http1_with_the_origin_in_host() {
    let (port, seen) = server(Tls::Alpn(&[b"http/1.1"]), Duration::ZERO, false).await;
    let url = format!("https://127.0.0.1:{port}/v1/one");
    for _ in 0..3 {
        let (version, body) = fetch(&url).await.unwrap();
        assert_eq!(version, http::Version::HTTP_11);
        assert_eq!(body, format!("HTTP/1.1 /v1/one host=127.0.0.1:{port}"));
    }
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_certificate_for_another_name_or_no_server_is_a_connect_error() {
    let (port, seen) = server(Tls::Alpn(&[b"h2"]), Duration::ZERO, false).await;
    // The certificate names 127.0.0.1, not localhost.
    let err = fetch(&format!("https://localhost:{port}/v1/x")).await;
    assert_eq!(err.unwrap_err(), SendError::Connect);
    assert!(seen.requests().is_empty());
    // TLS to a server that speaks plain HTTP.
    let (plain, seen) = server(Tls::None, Duration::ZERO, false).await;
    let err = fetch(&format!("https://127.0.0.1:{plain}/v1/x")).await;
    assert_eq!(err.unwrap_err(), SendError::Connect);
    assert!(seen.requests().is_empty());
    // Nobody listening.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let err = fetch(&format!("http://127.0.0.1:{port}/v1/x")).await;
    assert_eq!(err.unwrap_err(), SendError::Connect);
    assert_eq!(
        fetch("ftp://127.0.0.1/v1/x").await.unwrap_err(),
        SendError::Connect
    );
}

#[tokio::test]
async fn a_connection_idle_past_its_time_is_closed_rather_than_reused() {
    let (port, seen) = server(Tls::None, Duration::ZERO, false).await;
    let url = format!("http://127.0.0.1:{port}/v1/idle");
    fetch(&url).await.unwrap();
    let uri: Uri = url.parse().unwrap();
    let later = Instant::now() + IDLE + Duration::from_secs(1);
    assert!(
        POOL.with(|p| p.borrow_mut().checkout_own(&uri, later))
            .is_none()
    );
    fetch(&url).await.unwrap();
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_https_connection_idle_past_its_time_is_closed_rather_than_reused() {
    let (port, seen) = server(Tls::Alpn(&[b"http/1.1"]), Duration::ZERO, false).await;
    let url = format!("https://127.0.0.1:{port}/v1/idle");
    fetch(&url).await.unwrap();
    let uri: Uri = url.parse().unwrap();
    let later = Instant::now() + IDLE + Duration::from_secs(1);
    assert!(
        POOL.with(|p| p.borrow_mut().checkout(&uri, later))
            .is_none()
    );
    fetch(&url).await.unwrap();
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 2);
}

#[test]
fn host_leaves_out_the_schemes_own_port() {
    let host = |u: &str| host_header(&u.parse().unwrap()).unwrap();
    assert_eq!(host("https://api.openai.com/v1"), "api.openai.com");
    assert_eq!(host("https://api.openai.com:443/v1"), "api.openai.com");
    assert_eq!(host("http://localhost:80/v1"), "localhost");
    assert_eq!(host("http://localhost:11434/v1"), "localhost:11434");
    assert_eq!(host("https://[::1]:8443/v1"), "[::1]:8443");
}

#[tokio::test]
async fn a_connection_put_back_on_a_thread_without_its_origin_is_kept_there() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let uri: Uri = format!("http://127.0.0.1:{port}/v1/x").parse().unwrap();
    assert!(POOL.with(|p| p.borrow().origins.is_empty()));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (_accepted, _) = listener.accept().await.unwrap();
    put_back(h1::Conn::new(tcp, uri.authority().unwrap().clone()));
    let host = POOL.with(|p| p.borrow_mut().origin_or_add(&uri).map(|o| o.host.clone()));
    assert_eq!(host.unwrap(), format!("127.0.0.1:{port}").as_str());
    assert!(
        POOL.with(|p| p.borrow_mut().checkout_own(&uri, Instant::now()))
            .is_some()
    );
}
