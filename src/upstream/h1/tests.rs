//! till's HTTP/1.1 client against raw sockets on loopback: the exact bytes it writes, every
//! framing rule of the answers it reads, when it keeps a connection, and the same answers read
//! by hyper's client for comparison.

use std::cell::RefCell;
use std::time::Duration;

use http_body_util::BodyExt as _;
use hyper::body::Body as _;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use super::*;

thread_local! {
    /// Connections handed back by the answers of the test on this thread.
    static BACK: RefCell<Vec<Conn>> = const { RefCell::new(Vec::new()) };
}

fn keep(conn: Conn) {
    BACK.with(|b| b.borrow_mut().push(conn));
}

fn kept() -> usize {
    BACK.with(|b| b.borrow_mut().drain(..).count())
}

/// Reads one request (head, and a body of its `content-length`) from `tcp`.
async fn read_request(tcp: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
            if got.len() >= end + 4 + len {
                return got;
            }
        }
        let n = tcp.read(&mut buf).await.unwrap();
        if n == 0 {
            return got;
        }
        got.extend_from_slice(&buf[..n]);
    }
}

/// A server that reads one request per answer in `answers`, writes each answer in the pieces
/// given (a pause between them so they arrive apart), and closes after the last; the requests
/// it read come back from the handle.
async fn server(answers: Vec<Vec<Vec<u8>>>) -> (u16, tokio::task::JoinHandle<Vec<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        for pieces in answers {
            seen.push(read_request(&mut tcp).await);
            for (i, piece) in pieces.iter().enumerate() {
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                if tcp.write_all(piece).await.is_err() {
                    return seen;
                }
            }
        }
        seen
    });
    (port, task)
}

async fn conn(port: u16) -> Conn {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    Conn::new(tcp, format!("127.0.0.1:{port}").parse().unwrap())
}

fn post_head(body: &[u8]) -> Vec<u8> {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    head(
        &Method::POST,
        "/v1/chat/completions",
        &HeaderValue::from_static("up.test"),
        || headers.iter(),
        body.len(),
    )
}

/// A small POST on a new connection to `port`.
async fn post(port: u16) -> Result<Response<Body>, Failed> {
    exchange(
        conn(port).await,
        &post_head(b"{}"),
        b"{}",
        false,
        false,
        keep,
    )
    .await
}

/// A POST of `body` on a new connection to `port`.
async fn post_body(port: u16, body: &[u8]) -> Result<Response<Body>, Failed> {
    exchange(conn(port).await, &post_head(body), body, false, false, keep).await
}

/// One exchange with an answer sent whole.
async fn one(answer: &[u8]) -> Result<Response<Body>, Failed> {
    let (port, _server) = server(vec![vec![answer.to_vec()]]).await;
    post(port).await
}

async fn body_of(resp: Response<Body>) -> Result<Vec<u8>, io::Error> {
    Ok(resp.into_body().collect().await?.to_bytes().to_vec())
}

#[test]
fn the_request_head_has_the_path_the_origin_the_headers_and_the_length() {
    let mut headers = HeaderMap::new();
    headers.insert("x-a", HeaderValue::from_static("1"));
    headers.append("x-a", HeaderValue::from_static("2"));
    headers.insert("host", HeaderValue::from_static("ignored.test"));
    headers.insert("content-length", HeaderValue::from_static("999"));
    headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
    let got = head(
        &Method::POST,
        "/v1/x?q=1",
        &HeaderValue::from_static("up.test:8080"),
        || headers.iter(),
        1234,
    );
    assert_eq!(
        String::from_utf8(got).unwrap(),
        "POST /v1/x?q=1 HTTP/1.1\r\nhost: up.test:8080\r\nx-a: 1\r\nx-a: 2\r\n\
         content-length: 1234\r\n\r\n"
    );
    let host = HeaderValue::from_static("h");
    let empty = HeaderMap::new();
    let get = head(&Method::GET, "/", &host, || empty.iter(), 0);
    assert_eq!(get, b"GET / HTTP/1.1\r\nhost: h\r\n\r\n");
    let post = head(&Method::POST, "/", &host, || empty.iter(), 0);
    assert_eq!(
        post,
        b"POST / HTTP/1.1\r\nhost: h\r\ncontent-length: 0\r\n\r\n"
    );
    let big = head(&Method::PUT, "/", &host, || empty.iter(), 10_000_000);
    assert!(big.ends_with(b"content-length: 10000000\r\n\r\n"));
}

#[tokio::test]
async fn a_large_body_reaches_the_provider_whole_after_the_head() {
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let (port, server) = server(vec![vec![
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
    ]])
    .await;
    let h = post_head(&body);
    let resp = exchange(conn(port).await, &h, &body, false, false, keep)
        .await
        .unwrap();
    assert_eq!(body_of(resp).await.unwrap(), b"ok");
    let seen = server.await.unwrap();
    let mut expected = h.clone();
    expected.extend_from_slice(&body);
    assert_eq!(seen[0].len(), expected.len());
    assert!(seen[0] == expected);
    assert_eq!(kept(), 1);
}

#[tokio::test]
async fn a_length_body_is_read_to_its_length_and_the_connection_goes_back_at_its_last_byte() {
    let (port, _server) = server(vec![vec![
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\nhello"
            .to_vec(),
        b" world".to_vec(),
    ]])
    .await;
    let resp = post(port).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"hello");
    assert!(!body.is_end_stream());
    assert_eq!(kept(), 0);
    let second = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&second[..], b" world");
    // Back before anyone polls for the end.
    assert!(body.is_end_stream());
    assert_eq!(kept(), 1);
    assert!(body.frame().await.is_none());
}

#[tokio::test]
async fn a_chunked_body_in_pieces_with_extensions_and_trailers_is_read_whole() {
    let (port, _server) = server(vec![vec![
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhel".to_vec(),
        b"lo\r\n6 \t\r\n wor".to_vec(),
        b"ld\r\n0\r\nx-trailer: y\r\n".to_vec(),
        b"\r\n".to_vec(),
    ]])
    .await;
    let resp = post(port).await.unwrap();
    assert_eq!(body_of(resp).await.unwrap(), b"hello world");
    assert_eq!(kept(), 1);
}

#[tokio::test]
async fn a_body_without_framing_is_read_to_the_close_and_the_connection_is_not_kept() {
    let (port, _server) = server(vec![vec![
        b"HTTP/1.1 200 OK\r\n\r\nuntil".to_vec(),
        b" the close".to_vec(),
    ]])
    .await;
    let resp = post(port).await.unwrap();
    assert_eq!(body_of(resp).await.unwrap(), b"until the close");
    assert_eq!(kept(), 0);
}

#[tokio::test]
async fn answers_that_ask_to_close_or_frame_twice_or_carry_extra_bytes_are_not_kept() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\nconnection: keep-alive, Close\r\ncontent-length: 2\r\n\r\nok"[..],
        b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nok",
    ] {
        let resp = one(answer).await;
        assert_eq!(body_of(resp.unwrap()).await.unwrap(), b"ok");
        assert_eq!(kept(), 0, "{}", String::from_utf8_lossy(answer));
    }
}

#[tokio::test]
async fn interim_answers_are_skipped_and_bodiless_statuses_read_nothing() {
    let resp =
        one(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early\r\nlink: x\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok").await;
    let resp = resp.unwrap();
    assert_eq!(resp.status(), 201);
    assert!(!resp.headers().contains_key("link"));
    assert_eq!(body_of(resp).await.unwrap(), b"ok");
    assert_eq!(kept(), 1);
    for status in ["204 No Content", "304 Not Modified"] {
        let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 5\r\n\r\n");
        let resp = one(answer.as_bytes()).await;
        let resp = resp.unwrap();
        assert!(resp.body().is_end_stream());
        assert_eq!(body_of(resp).await.unwrap(), b"");
        assert_eq!(kept(), 1);
    }
    // HEAD: the length describes a body that is not sent.
    let (port, _server) = server(vec![vec![
        b"HTTP/1.1 200 OK\r\ncontent-length: 500\r\n\r\n".to_vec(),
    ]])
    .await;
    let h = head(
        &Method::HEAD,
        "/",
        &HeaderValue::from_static("h"),
        std::iter::empty,
        0,
    );
    let resp = exchange(conn(port).await, &h, b"", true, false, keep)
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-length"], "500");
    assert_eq!(body_of(resp).await.unwrap(), b"");
    assert_eq!(kept(), 1);
}

#[tokio::test]
async fn malformed_answers_are_refused_as_lost() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok"[..],
        b"HTTP/1.1 200 OK\r\ncontent-length: 2, 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\nok",
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n",
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"",
    ] {
        let resp = one(answer).await;
        assert_eq!(
            resp.err(),
            Some(Failed::Lost),
            "{}",
            String::from_utf8_lossy(answer)
        );
    }
    // A head that never ends is refused once it passes the limit.
    let mut endless = b"HTTP/1.1 200 OK\r\n".to_vec();
    while endless.len() < MAX_HEAD + 1024 {
        endless.extend_from_slice(b"x-filler: 0123456789\r\n");
    }
    let resp = one(&endless).await;
    assert_eq!(resp.err(), Some(Failed::Lost));
}

#[tokio::test]
async fn bodies_cut_short_or_malformed_fail_and_the_connection_is_dropped() {
    for (answer, kind) in [
        (
            &b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort"[..],
            io::ErrorKind::UnexpectedEof,
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
            io::ErrorKind::UnexpectedEof,
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
            io::ErrorKind::InvalidData,
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
            io::ErrorKind::InvalidData,
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            io::ErrorKind::InvalidData,
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n10000000000000000\r\n",
            io::ErrorKind::InvalidData,
        ),
    ] {
        let resp = one(answer).await;
        let err = body_of(resp.unwrap()).await.unwrap_err();
        assert_eq!(err.kind(), kind, "{}", String::from_utf8_lossy(answer));
        assert_eq!(kept(), 0);
    }
}

#[tokio::test]
async fn a_kept_connection_is_open_until_the_provider_closes_it_or_speaks_unasked() {
    let (port, server) = server(vec![
        vec![b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()],
        vec![b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()],
    ])
    .await;
    let resp = post(port).await.unwrap();
    body_of(resp).await.unwrap();
    let mut c = BACK.with(|b| b.borrow_mut().pop()).unwrap();
    assert!(c.is_open());
    let resp = exchange(c, &post_head(b"{}"), b"{}", false, true, keep)
        .await
        .unwrap();
    body_of(resp).await.unwrap();
    let mut c = BACK.with(|b| b.borrow_mut().pop()).unwrap();
    // The server closes after its last answer.
    server.await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!c.is_open());
}

#[tokio::test]
async fn a_reused_connection_that_fails_before_any_byte_is_written_is_not_sent() {
    let (port, _server) = server(vec![vec![
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
    ]])
    .await;
    let resp = post(port).await.unwrap();
    body_of(resp).await.unwrap();
    let c = BACK.with(|b| b.borrow_mut().pop()).unwrap();
    // The server is gone: the first write may still succeed (the kernel takes it), and then
    // nothing comes back, which is Lost; or it fails at once, which is NotSent.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let got = exchange(c, &post_head(b"{}"), b"{}", false, true, keep).await;
    assert!(got.is_err());
}

/// A provider that answers as soon as it has read the request head, then closes without
/// reading the body (a 413 for a body too large, say): the kernel resets the connection while
/// till is still writing.
async fn answer_early_and_close(answer: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tcp.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        tcp.write_all(answer).await.unwrap();
        // Unread bytes in its buffer: the close is a reset.
        drop(tcp);
    });
    port
}

#[tokio::test]
async fn an_answer_sent_before_the_body_was_read_is_the_answer_and_the_connection_is_dropped() {
    let body = vec![b'x'; 16 << 20];
    let port = answer_early_and_close(
        b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 9\r\n\r\ntoo large",
    )
    .await;
    let resp = post_body(port, &body).await.expect("the early answer");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body_of(resp).await.unwrap(), b"too large");
    // It said nothing of closing, but the request was cut short: the connection is not kept.
    assert_eq!(kept(), 0);
    // Without a whole answer it fails, and says so at once: cut short, since the provider
    // never had the whole request.
    let port = answer_early_and_close(b"HTTP/1.1 413 Payload").await;
    let got = tokio::time::timeout(Duration::from_secs(5), post_body(port, &body))
        .await
        .expect("no wait for an answer that cannot come");
    assert_eq!(got.err(), Some(Failed::CutShort));
}

// ---- the chunked decoder on its own, fed in arbitrary pieces ----

/// `body` cut into chunks at `cuts`, with an extension on some size lines and trailers.
fn encode(body: &[u8], cuts: &[usize], ext: bool, trailers: bool, upper: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
    points.sort_unstable();
    points.push(body.len());
    for p in points {
        if p <= at {
            continue;
        }
        let size = if upper {
            format!("{:X}", p - at)
        } else {
            format!("{:x}", p - at)
        };
        out.extend_from_slice(size.as_bytes());
        if ext {
            out.extend_from_slice(b" ;name=\"v;x\"");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&body[at..p]);
        out.extend_from_slice(b"\r\n");
        at = p;
    }
    out.extend_from_slice(b"0\r\n");
    if trailers {
        out.extend_from_slice(b"x-usage: 1\r\nx-more: two\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Feeds `wire` to a decoder in pieces cut at `splits`; the data, and whether it ended with
/// nothing left over.
fn decode(wire: &[u8], splits: &[usize]) -> Result<(Vec<u8>, bool), &'static str> {
    let mut points: Vec<usize> = splits.iter().map(|s| s % (wire.len() + 1)).collect();
    points.sort_unstable();
    points.push(wire.len());
    let mut chunked = Chunked::default();
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    let mut at = 0;
    for p in points {
        buf.extend_from_slice(&wire[at..p]);
        at = p;
        loop {
            match chunked.advance(&mut buf)? {
                Step::Data => data.extend_from_slice(&chunked.take(&mut buf)),
                Step::More => break,
                Step::End => return Ok((data, buf.is_empty() && at == wire.len())),
            }
        }
    }
    Ok((data, false))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_chunked_encoding_in_any_pieces_decodes_to_its_body(
        body in proptest::collection::vec(any::<u8>(), 0..3000),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
        splits in proptest::collection::vec(any::<usize>(), 0..12),
        ext in any::<bool>(),
        trailers in any::<bool>(),
        upper in any::<bool>(),
    ) {
        let wire = encode(&body, &cuts, ext, trailers, upper);
        let (data, clean) = decode(&wire, &splits).unwrap();
        prop_assert_eq!(data, body);
        prop_assert!(clean);
    }

    #[test]
    fn a_chunked_body_with_one_byte_changed_never_yields_more_than_it_says(
        body in proptest::collection::vec(any::<u8>(), 1..500),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
        at in any::<usize>(),
        byte in any::<u8>(),
        splits in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let mut wire = encode(&body, &cuts, false, false, false);
        let i = at % wire.len();
        wire[i] = byte;
        // Whatever the damage, the decoder errs, waits, or ends; what it yields is never
        // more than the bytes it was given.
        if let Ok((data, _)) = decode(&wire, &splits) {
            prop_assert!(data.len() <= wire.len());
        }
    }
}

// ---- the same answers read by hyper's client ----

#[derive(Debug, Clone)]
enum Frames {
    Length,
    Chunked {
        cuts: Vec<usize>,
        ext: bool,
        trailers: bool,
    },
    Close,
}

fn answer_strategy() -> impl Strategy<Value = (u16, Vec<(String, String)>, Vec<u8>, Frames, bool)> {
    let status = prop_oneof![
        Just(200u16),
        Just(201),
        Just(204),
        Just(400),
        Just(404),
        Just(429),
        Just(500),
        Just(503)
    ];
    let header = (
        "x-[a-z]{1,12}",
        "[ -~]{0,40}".prop_map(|v| v.trim().to_string()),
    );
    let frames = prop_oneof![
        Just(Frames::Length),
        (
            proptest::collection::vec(any::<usize>(), 0..6),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(cuts, ext, trailers)| Frames::Chunked {
                cuts,
                ext,
                trailers
            }),
        Just(Frames::Close),
    ];
    (
        status,
        proptest::collection::vec(header, 0..8),
        proptest::collection::vec(any::<u8>(), 0..4000),
        frames,
        any::<bool>(),
    )
}

/// What a client made of an answer: status, headers in order, body; or that it failed.
type Read = Option<(u16, Vec<(String, Vec<u8>)>, Vec<u8>)>;

async fn read_with_till(port: u16) -> Read {
    let resp = post(port).await.ok()?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
        .collect();
    let body = body_of(resp).await.ok()?;
    Some((status, headers, body))
}

async fn read_with_hyper(port: u16) -> Read {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .ok()?;
    tokio::spawn(conn);
    let mut req = http::Request::new(http_body_util::Full::new(Bytes::from_static(b"{}")));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = "/v1/chat/completions".parse().unwrap();
    req.headers_mut()
        .insert("host", HeaderValue::from_static("up.test"));
    let resp = send.send_request(req).await.ok()?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
        .collect();
    let body = resp.into_body().collect().await.ok()?.to_bytes().to_vec();
    Some((status, headers, body))
}

/// Any well-formed answer, sent in any pieces, reads the same through till's client as through
/// hyper's: status, every header in order, and the body.
#[test]
fn till_reads_what_hyper_reads() {
    // Each case is two real exchanges over loopback: 1,000 of them (7 s), whatever
    // PROPTEST_CASES asks of the pure property tests (the `proptest!` macro would take it).
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 1000,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let outcome = runner.run(
        &(answer_strategy(), any::<usize>()),
        |((status, extra, body, frames, split), cut)| {
            let bodiless = status == 204;
            let body = if bodiless { Vec::new() } else { body };
            let mut wire = format!("HTTP/1.1 {status} X\r\n").into_bytes();
            for (n, v) in &extra {
                wire.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
            }
            match &frames {
                Frames::Length => {
                    wire.extend_from_slice(
                        format!("content-length: {}\r\n\r\n", body.len()).as_bytes(),
                    );
                    wire.extend_from_slice(&body);
                }
                Frames::Chunked {
                    cuts,
                    ext,
                    trailers,
                } => {
                    wire.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
                    if !bodiless {
                        wire.extend_from_slice(&encode(&body, cuts, *ext, *trailers, false));
                    }
                }
                Frames::Close => {
                    wire.extend_from_slice(b"\r\n");
                    wire.extend_from_slice(&body);
                }
            }
            let pieces = if split {
                let at = cut % (wire.len() + 1);
                vec![wire[..at].to_vec(), wire[at..].to_vec()]
            } else {
                vec![wire.clone()]
            };
            let pieces_again = pieces.clone();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let (ours, theirs) = rt.block_on(async {
                let (p1, _s1) = server(vec![pieces.clone()]).await;
                let ours = read_with_till(p1).await;
                let (p2, _s2) = server(vec![pieces]).await;
                let theirs = read_with_hyper(p2).await;
                (ours, theirs)
            });
            kept();
            prop_assert!(
                theirs.is_some(),
                "hyper failed on {:?}",
                String::from_utf8_lossy(&wire)
            );
            // The reader without a socket (the fuzzer's) makes the same of the same bytes.
            let offline = read_answer(pieces_again.iter().map(Vec::as_slice), false)
                .ok()
                .map(|(status, headers, body, _)| {
                    let headers = headers
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                        .collect();
                    (status.as_u16(), headers, body)
                });
            prop_assert_eq!(&offline, &ours);
            prop_assert_eq!(ours, theirs);
            Ok(())
        },
    );
    if let Err(e) = outcome {
        panic!("{e}");
    }
}

#[test]
fn the_start_of_a_chunked_body_gives_its_whole_chunks_only() {
    assert_eq!(
        dechunk_start(b"3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n"),
        b"abcde"
    );
    // A chunk cut short, framing that is not chunked, and a bare LF end it.
    assert_eq!(dechunk_start(b"3\r\nabc\r\n5\r\nde"), b"abc");
    assert_eq!(dechunk_start(b"{\"error\":1}"), b"");
    assert_eq!(dechunk_start(b"3\r\nabc\r\n2\nde\r\n"), b"abc");
    assert_eq!(dechunk_start(b"3\r\nabcd\r\n"), b"");
    assert_eq!(dechunk_start(b"ffffffffffffffff\r\nab\r\n"), b"");
    assert_eq!(dechunk_start(b"fffffffffffffff0\r\nab\r\n"), b"");
}
