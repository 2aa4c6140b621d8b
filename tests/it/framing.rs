//! HTTP/1.1 request framing as an attacker writes it: pipelined requests, conflicting and
//! malformed lengths, odd transfer codings and chunk syntax, header syntax, oversized heads,
//! `Expect`, connection reuse, timeouts and garbage, sent byte for byte to `till serve`. Each
//! test asserts on what the mock provider received: nothing, or exactly the requests and bodies
//! the client's framing meant, each one checked against the key.
//!
//! Where a refusal's status is one a correct server could choose differently (400, 501, or
//! closing without an answer), the tests assert "no success, nothing upstream, connection
//! closed" instead of the exact status.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::attack::Attack;

const PATH: &str = "/openai/v1/chat/completions";

/// How long a read waits for the proxy before the test gives up on it.
const WAIT: Duration = Duration::from_secs(10);

fn proxy() -> Attack {
    Attack::new("", &["--scope", "openai"])
}

/// A chat request body whose message is `text`, to tell requests apart upstream.
fn say(text: &str) -> String {
    format!(
        "{{\"model\":\"gpt-4o-mini\",\"messages\":[{{\"role\":\"user\",\"content\":\"{text}\"}}]}}"
    )
}

/// A chat request's head up to its last header line (no body length, no empty line), with
/// `a`'s key when `keyed` and then the header lines `lines` (each ending in CRLF).
fn head(a: &Attack, keyed: bool, lines: &str) -> String {
    let auth = if keyed {
        format!("Authorization: Bearer {}\r\n", a.key)
    } else {
        String::new()
    };
    format!(
        "POST {PATH} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/json\r\n{lines}",
        a.serve.url.trim_start_matches("http://")
    )
}

/// [`head`], then `body` with its `Content-Length`.
fn request(a: &Attack, keyed: bool, lines: &str, body: &str) -> String {
    format!(
        "{}Content-Length: {}\r\n\r\n{body}",
        head(a, keyed, lines),
        body.len()
    )
}

/// `body` as one chunk, then the last chunk.
fn chunked(body: &str) -> String {
    format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len())
}

/// The bodies the mock received, in order.
fn upstream(a: &Attack) -> Vec<String> {
    a.p.mock
        .requests()
        .into_iter()
        .map(|r| r.body.unwrap_or_default())
        .collect()
}

/// One answer the proxy wrote.
#[derive(Debug)]
struct Answer {
    version: String,
    status: u16,
    /// Names lowercased, values trimmed, in order.
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The first complete answer in `buf` and the bytes it took, or `None` when `buf` does not hold
/// one (yet). With `eof`, an answer without a length ends at the end of `buf`; `to_head` is for
/// the answer to a HEAD request, which has no body whatever its length says.
fn parse_answer(buf: &[u8], eof: bool, to_head: bool) -> Option<(Answer, usize)> {
    let end = find(buf, b"\r\n\r\n")? + 4;
    let text = std::str::from_utf8(&buf[..end - 4]).ok()?;
    let mut lines = text.split("\r\n");
    let mut status_line = lines.next()?.splitn(3, ' ');
    let version = status_line.next()?.to_string();
    let status = status_line.next()?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut answer = Answer {
        version,
        status,
        headers,
        body: String::new(),
    };
    if to_head || (100..200).contains(&status) || status == 204 || status == 304 {
        return Some((answer, end));
    }
    let mut body = Vec::new();
    let taken = if let Some(n) = answer.header("content-length") {
        let n: usize = n.parse().ok()?;
        body.extend_from_slice(buf.get(end..end + n)?);
        end + n
    } else if answer
        .header("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
    {
        let mut at = end;
        loop {
            let line = at + find(&buf[at..], b"\r\n")?;
            let size = std::str::from_utf8(&buf[at..line]).ok()?;
            let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
            at = line + 2;
            if size == 0 {
                // Trailers, if any, up to the empty line.
                let rest = &buf[at..];
                break at
                    + if rest.starts_with(b"\r\n") {
                        2
                    } else {
                        find(rest, b"\r\n\r\n")? + 4
                    };
            }
            body.extend_from_slice(buf.get(at..at + size)?);
            at += size + 2;
        }
    } else if eof {
        body.extend_from_slice(&buf[end..]);
        buf.len()
    } else {
        return None;
    };
    answer.body = String::from_utf8_lossy(&body).into_owned();
    Some((answer, taken))
}

/// A connection to the proxy, read answer by answer.
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
    /// The proxy closed (or reset) the connection.
    eof: bool,
}

impl Conn {
    fn open(a: &Attack) -> Self {
        let s = TcpStream::connect(a.serve.url.trim_start_matches("http://")).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        Self {
            s,
            buf: Vec::new(),
            eof: false,
        }
    }

    /// Writes `bytes` at once; a proxy that refused early may have closed already, which the
    /// reads then show.
    fn send(&mut self, bytes: &[u8]) {
        let _ = self.s.write_all(bytes);
    }

    /// Reads more; false when nothing more came: closed, reset, or the read timed out.
    fn fill(&mut self) -> bool {
        if self.eof {
            return false;
        }
        let mut chunk = [0u8; 16 * 1024];
        match self.s.read(&mut chunk) {
            Ok(0) => self.eof = true,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                return true;
            }
            Err(e) if is_timeout(&e) => {}
            Err(_) => self.eof = true,
        }
        false
    }

    /// The next answer, or `None` when the connection ends or stays quiet for [`WAIT`].
    fn answer(&mut self) -> Option<Answer> {
        self.next(false)
    }

    /// The next answer, to a HEAD request.
    fn answer_to_head(&mut self) -> Option<Answer> {
        self.next(true)
    }

    fn next(&mut self, to_head: bool) -> Option<Answer> {
        loop {
            let more = match parse_answer(&self.buf, self.eof, to_head) {
                Some((answer, n)) => {
                    self.buf.drain(..n);
                    return Some(answer);
                }
                None => self.fill(),
            };
            if !more && parse_answer(&self.buf, self.eof, to_head).is_none() {
                return None;
            }
        }
    }

    /// Every answer until the proxy closes the connection (or stays quiet for [`WAIT`]).
    fn answers(&mut self) -> Vec<Answer> {
        std::iter::from_fn(|| self.answer()).collect()
    }

    /// Whether the proxy closes the connection within [`WAIT`] (reading what else it sends).
    fn closes(&mut self) -> bool {
        while self.fill() {}
        self.eof
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// What came back on one connection.
#[derive(Debug)]
struct Exchange {
    answers: Vec<Answer>,
    /// The proxy closed the connection after them.
    closed: bool,
    /// Bytes after the last answer that are not an answer.
    rest: String,
}

impl Exchange {
    fn statuses(&self) -> Vec<u16> {
        self.answers.iter().map(|a| a.status).collect()
    }
}

/// Sends `bytes` in one write on a new connection and reads every answer until the proxy
/// closes it.
fn exchange(a: &Attack, bytes: &[u8]) -> Exchange {
    let mut c = Conn::open(a);
    c.send(bytes);
    let answers = c.answers();
    let closed = c.closes();
    Exchange {
        answers,
        closed,
        rest: String::from_utf8_lossy(&c.buf).into_owned(),
    }
}

/// Sends `bytes` on a new connection and asserts that nothing of it succeeded: no answer but
/// an error (4xx or 5xx; none at all is fine), the connection closed (the proxy cannot know
/// where a next request would start), and nothing reached the mock. Returns the statuses.
fn refused(a: &Attack, what: &str, bytes: &[u8]) -> Vec<u16> {
    let x = exchange(a, bytes);
    let statuses = x.statuses();
    assert!(
        statuses.iter().all(|s| (400..600).contains(s)),
        "{what}: {x:?}"
    );
    assert!(x.closed, "{what}: the connection stayed open: {x:?}");
    a.assert_upstream_saw_nothing(what);
    statuses
}

/// Sends `bytes` and asserts one 200 whose request reached the mock with exactly `body`.
fn forwarded(a: &Attack, what: &str, bytes: &[u8], body: &str) -> Exchange {
    a.p.mock.clear_requests();
    let x = exchange(a, bytes);
    assert_eq!(x.statuses(), [200], "{what}: {x:?}");
    assert_eq!(upstream(a), [body], "{what}");
    x
}

#[test]
fn pipelined_requests_are_each_checked_and_a_body_is_never_read_as_a_request() {
    let a = proxy();
    let (one, two) = (say("one"), say("two"));

    // Both with the key, in one write: two answers in order, both forwarded in order.
    let x = exchange(
        &a,
        format!(
            "{}{}",
            request(&a, true, "", &one),
            request(&a, true, "Connection: close\r\n", &two)
        )
        .as_bytes(),
    );
    assert_eq!(x.statuses(), [200, 200], "{x:?}");
    assert!(x.answers[0].body.contains("Hello from the mock"), "{x:?}");
    assert_eq!(x.answers[0].header("connection"), None, "{x:?}");
    assert_eq!(x.answers[1].header("connection"), Some("close"), "{x:?}");
    assert!(x.closed && x.rest.is_empty(), "{x:?}");
    assert_eq!(upstream(&a), [one.as_str(), two.as_str()]);

    // The second without a key: refused on its own, the first still forwarded.
    a.p.mock.clear_requests();
    let x = exchange(
        &a,
        format!(
            "{}{}",
            request(&a, true, "", &one),
            request(&a, false, "Connection: close\r\n", &two)
        )
        .as_bytes(),
    );
    assert_eq!(x.statuses(), [200, 401], "{x:?}");
    assert!(x.closed, "{x:?}");
    assert_eq!(upstream(&a), [one.as_str()]);

    // The first without a key, its body a whole keyed request: 401, and the body stays a body.
    // The proxy may keep the connection (after reading the body) or close it (it answers
    // without reading the body, so it closes); either way a keyed request sent next is the
    // only thing that may reach the mock.
    a.p.mock.clear_requests();
    let smuggled = request(&a, true, "", &say("smuggled"));
    let mut c = Conn::open(&a);
    c.send(request(&a, false, "", &smuggled).as_bytes());
    let first = c.answer().expect("an answer to the keyless request");
    assert_eq!(first.status, 401, "{first:?}");
    c.send(request(&a, true, "Connection: close\r\n", &two).as_bytes());
    let after = c.answers();
    assert!(c.closes());
    assert!(
        after.iter().all(|x| x.status == 200),
        "the body was answered as a request: {after:?}"
    );
    // A proxy that kept the connection serves the next request; one that closed it, nothing.
    let expected: &[&str] = if after.is_empty() {
        &[]
    } else {
        &[two.as_str()]
    };
    assert_eq!(upstream(&a), expected, "{after:?}");
}

#[test]
fn conflicting_or_malformed_content_lengths_are_refused() {
    let a = proxy();
    let body = say("length");
    let n = body.len();
    for (what, lines) in [
        (
            "two different lines",
            format!("Content-Length: {n}\r\nContent-Length: {}\r\n", n + 1),
        ),
        (
            "two different lines, shorter first",
            format!("Content-Length: {}\r\nContent-Length: {n}\r\n", n - 1),
        ),
        (
            "a list of two values",
            format!("Content-Length: {n}, {}\r\n", n + 1),
        ),
        // The same value twice in one line is refused too (two equal lines are not, below).
        (
            "a list of one value twice",
            format!("Content-Length: {n}, {n}\r\n"),
        ),
        ("a plus sign", format!("Content-Length: +{n}\r\n")),
        ("a negative value", "Content-Length: -1\r\n".to_string()),
        ("hex", format!("Content-Length: 0x{n:x}\r\n")),
        ("two numbers", format!("Content-Length: {n} {n}\r\n")),
        ("an empty value", "Content-Length: \r\n".to_string()),
        (
            "30 digits",
            format!("Content-Length: {}\r\n", "9".repeat(30)),
        ),
        (
            "a letter after the digits",
            format!("Content-Length: {n}a\r\n"),
        ),
    ] {
        // 400 (with `connection: close`) from the head alone, then closed.
        refused(
            &a,
            what,
            format!("{}{lines}\r\n{body}", head(&a, true, "")).as_bytes(),
        );
    }

    // Two equal lines are one length: forwarded once, with exactly that body.
    forwarded(
        &a,
        "two equal lines",
        format!(
            "{}Content-Length: {n}\r\nContent-Length: {n}\r\n\r\n{body}",
            head(&a, true, "Connection: close\r\n")
        )
        .as_bytes(),
        &body,
    );
}

/// A request with both a length and a transfer coding can be read two ways (RFC 9112 lets a
/// server refuse it, or read it as chunked and close): the proxy refuses it, so neither the
/// chunked body nor the request after it is read.
#[test]
fn content_length_with_transfer_encoding_is_refused_and_ends_the_connection() {
    let a = proxy();
    let body = say("chunked");
    // After the chunked body's end, a whole keyless request: read as a request only if the
    // proxy trusted the length, or kept the connection after such a request.
    let next = request(&a, false, "", &say("next"));
    for (what, lines) in [
        (
            "length first",
            format!(
                "Content-Length: {}\r\nTransfer-Encoding: chunked\r\n",
                body.len()
            ),
        ),
        (
            "chunked first",
            format!(
                "Transfer-Encoding: chunked\r\nContent-Length: {}\r\n",
                body.len()
            ),
        ),
        (
            "a length that covers the next request",
            format!(
                "Content-Length: {}\r\nTransfer-Encoding: chunked\r\n",
                chunked(&body).len() + next.len()
            ),
        ),
    ] {
        let bytes = format!("{}{lines}\r\n{}{next}", head(&a, true, ""), chunked(&body));
        assert_eq!(refused(&a, what, bytes.as_bytes()), [400], "{what}");
        // The same after a WebSocket upgrade that was refused: such a connection is handed to
        // hyper's server, which would read both headers and serve on.
        let upgrade = format!(
            "GET /openai/v1/models HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            a.serve.url.trim_start_matches("http://")
        );
        let x = exchange(&a, format!("{upgrade}{bytes}").as_bytes());
        assert_eq!(x.statuses().len(), 1, "after an upgrade, {what}: {x:?}");
        assert!(x.closed, "after an upgrade, {what}: {x:?}");
        a.assert_upstream_saw_nothing(&format!("after an upgrade, {what}"));
    }
}

#[test]
fn transfer_codings_and_chunk_syntax_forward_only_the_decoded_body() {
    let a = proxy();
    let body = say("coded");
    let host = a.serve.url.trim_start_matches("http://").to_string();

    // Any coding but `chunked` alone, even with `chunked` last: the proxy would forward the
    // other coding's bytes as if they were the body. Refused from the head alone, then closed.
    for coding in [
        "gzip",
        "chunked, gzip",
        "identity",
        "deflate",
        "chunked, chunked, gzip",
        "gzip, chunked",
        "chunked, chunked",
    ] {
        let bytes = format!(
            "{}Transfer-Encoding: {coding}\r\n\r\n{}",
            head(&a, true, ""),
            chunked(&body)
        );
        assert_eq!(refused(&a, coding, bytes.as_bytes()), [400], "{coding}");
    }
    let bytes = format!(
        "{}Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n{}",
        head(&a, true, ""),
        chunked(&body)
    );
    refused(
        &a,
        "gzip, then chunked on a line of its own",
        bytes.as_bytes(),
    );
    // Transfer-Encoding on HTTP/1.0, which has none.
    let bytes = format!(
        "POST {PATH} HTTP/1.0\r\nHost: {host}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{}",
        a.key,
        chunked(&body)
    );
    // 400, then closed.
    refused(&a, "chunked on HTTP/1.0", bytes.as_bytes());

    // `chunked` padded with spaces or in another case is `chunked`: the decoded bytes are
    // forwarded, with a length and no Transfer-Encoding.
    for lines in [
        "Transfer-Encoding:    chunked   \r\n",
        "Transfer-Encoding: Chunked\r\n",
        "Transfer-Encoding: CHUNKED\r\n",
    ] {
        let bytes = format!(
            "{}{lines}\r\n{}",
            head(&a, true, "Connection: close\r\n"),
            chunked(&body)
        );
        forwarded(&a, lines, bytes.as_bytes(), &body);
        let seen = a.p.mock.requests();
        assert_eq!(seen[0].header("transfer-encoding"), None, "{lines}");
        assert_eq!(
            seen[0].header("content-length"),
            Some(body.len().to_string().as_str()),
            "{lines}"
        );
    }

    // Chunk extensions and trailers: the body is the chunks' data, and no trailer is forwarded.
    let (start, end) = body.split_at(5);
    let bytes = format!(
        "{}Transfer-Encoding: chunked\r\n\r\n5;name=value\r\n{start}\r\n{:x} ; a=\"b;c\"\r\n{end}\r\n0;last\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n",
        head(&a, true, "Connection: close\r\n"),
        end.len()
    );
    forwarded(&a, "extensions and trailers", bytes.as_bytes(), &body);
    let seen = a.p.mock.requests();
    assert_eq!(seen[0].header("x-trailer"), None, "{seen:?}");
    assert_eq!(seen[0].header("x-other"), None, "{seen:?}");
    // Chunks of one byte each, and a size with leading zeros.
    let ones: String = body.chars().map(|c| format!("1\r\n{c}\r\n")).collect();
    let bytes = format!(
        "{}Transfer-Encoding: chunked\r\n\r\n{ones}0000\r\n\r\n",
        head(&a, true, "Connection: close\r\n"),
    );
    forwarded(&a, "one-byte chunks", bytes.as_bytes(), &body);
    a.p.mock.clear_requests();

    // Invalid chunk syntax: nothing forwarded, the connection closed.
    let n = body.len();
    for (what, chunks) in [
        (
            "a size that is not hex",
            format!("zz\r\n{body}\r\n0\r\n\r\n"),
        ),
        (
            "a size with a sign",
            format!("+{n:x}\r\n{body}\r\n0\r\n\r\n"),
        ),
        ("a size with 0x", format!("0x{n:x}\r\n{body}\r\n0\r\n\r\n")),
        ("an empty size", format!("\r\n{body}\r\n0\r\n\r\n")),
        (
            "a size that overflows",
            format!("ffffffffffffffffffff\r\n{body}\r\n0\r\n\r\n"),
        ),
        (
            "a size that wraps around to the body's",
            format!("1{n:016x}\r\n{body}\r\n0\r\n\r\n"),
        ),
        (
            "no CRLF after the data",
            format!("{n:x}\r\n{body}0\r\n\r\n"),
        ),
        (
            "data longer than its size",
            format!("{n:x}\r\n{body}xx\r\n0\r\n\r\n"),
        ),
        (
            "data shorter than its size",
            format!("{:x}\r\n{body}\r\n0\r\n\r\n", n + 2),
        ),
        (
            "a bare LF after the data",
            format!("{n:x}\r\n{body}\n0\r\n\r\n"),
        ),
    ] {
        let bytes = format!(
            "{}Transfer-Encoding: chunked\r\n\r\n{chunks}",
            head(&a, true, "")
        );
        // 400 `till_bad_body` with `connection: close`, then closed.
        refused(&a, what, bytes.as_bytes());
    }
}

#[test]
fn malformed_header_lines_are_refused() {
    let a = proxy();
    let body = say("headers");
    let n = body.len();
    let host = a.serve.url.trim_start_matches("http://").to_string();
    let key = a.key.clone();
    let with = |lines: &str| {
        format!(
            "{}{lines}Content-Length: {n}\r\n\r\n{body}",
            head(&a, true, "")
        )
    };
    for (what, bytes) in [
        ("an obs-fold continuation line", with("X-A: a\r\n b\r\n")),
        ("a tab-folded line", with("X-A: a\r\n\tb\r\n")),
        (
            "a space before the colon",
            format!(
                "POST {PATH} HTTP/1.1\r\nHost: {host}\r\nAuthorization : Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {n}\r\n\r\n{body}"
            ),
        ),
        ("a NUL in a value", with("X-A: a\0b\r\n")),
        ("a bare CR in a value", with("X-A: a\rb\r\n")),
        ("a non-token character in a name", with("X(A): a\r\n")),
        ("a space inside a name", with("X A: a\r\n")),
        ("a line without a colon", with("X-A\r\n")),
        ("an empty name", with(": a\r\n")),
        ("a line starting with a space", format!(" {}", with(""))),
    ] {
        // 400 from the head alone, then closed.
        refused(&a, what, bytes.as_bytes());
    }

    // Pinned: bare LF line endings are accepted, and the request is read as CRLF would be.
    forwarded(
        &a,
        "bare LF",
        format!(
            "POST {PATH} HTTP/1.1\nHost: {host}\nAuthorization: Bearer {key}\nContent-Type: application/json\nConnection: close\nContent-Length: {n}\n\n{body}"
        )
        .as_bytes(),
        &body,
    );
}

#[test]
fn oversized_heads_are_refused_and_the_proxy_serves_on() {
    let a = proxy();
    let body = say("big");
    let with = |lines: &str| request(&a, true, lines, &body);

    // More than 100 header lines.
    let many: String = (0..120).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert_eq!(refused(&a, "120 headers", with(&many).as_bytes()), [431]);
    // A head of 1 MiB in one header. The proxy stops reading and may close with the rest
    // unread, which can reset the connection before its answer is read: no answer is fine.
    let huge = format!("X-Pad: {}\r\n", "a".repeat(1 << 20));
    let statuses = refused(&a, "a 1 MiB header", with(&huge).as_bytes());
    assert!(statuses.is_empty() || statuses == [431], "{statuses:?}");
    // A 1 MiB request target.
    let bytes = format!(
        "POST {PATH}?{} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\r\n{body}",
        "a".repeat(1 << 20),
        a.key,
        body.len()
    );
    let statuses = refused(&a, "a 1 MiB target", bytes.as_bytes());
    assert!(
        statuses.iter().all(|s| (400..500).contains(s)),
        "{statuses:?}"
    );

    // And a plain request on a new connection is served as before.
    forwarded(
        &a,
        "after the big heads",
        request(&a, true, "Connection: close\r\n", &body).as_bytes(),
        &body,
    );
}

#[test]
fn expect_100_continue_is_answered_only_for_a_request_that_passed_the_checks() {
    let a = proxy();
    let body = say("expect");
    let n = body.len();

    // With the key: 100 Continue, then the body, then the final answer.
    let mut c = Conn::open(&a);
    c.send(
        format!(
            "{}Content-Length: {n}\r\n\r\n",
            head(&a, true, "Expect: 100-continue\r\nConnection: close\r\n")
        )
        .as_bytes(),
    );
    let interim = c.answer().expect("an answer before the body");
    assert_eq!(
        (interim.version.as_str(), interim.status),
        ("HTTP/1.1", 100),
        "{interim:?}"
    );
    assert!(interim.headers.is_empty(), "{interim:?}");
    a.assert_upstream_saw_nothing("before the body");
    c.send(body.as_bytes());
    let last = c.answers();
    assert_eq!(
        last.iter().map(|x| x.status).collect::<Vec<_>>(),
        [200],
        "{last:?}"
    );
    assert!(c.closes());
    assert_eq!(upstream(&a), [body.as_str()]);

    // Without a key: the 401 comes at once, with no 100 before it; and today the proxy then
    // closes the connection, as the body it did not ask for may or may not follow.
    a.p.mock.clear_requests();
    let t = Instant::now();
    let mut c = Conn::open(&a);
    c.send(
        format!(
            "{}Content-Length: {n}\r\n\r\n",
            head(&a, false, "Expect: 100-continue\r\n")
        )
        .as_bytes(),
    );
    let first = c.answer().expect("an answer without the body");
    assert_eq!(first.status, 401, "{first:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(c.closes(), "the connection stayed open after the 401");
    a.assert_upstream_saw_nothing("keyless with Expect");

    // Without a key, then the body anyway, which is itself a keyed request, then a keyed
    // request: the body is never read as a request.
    let mut c = Conn::open(&a);
    let smuggled = request(&a, true, "", &say("smuggled"));
    c.send(
        format!(
            "{}Content-Length: {}\r\n\r\n",
            head(&a, false, "Expect: 100-continue\r\n"),
            smuggled.len()
        )
        .as_bytes(),
    );
    let first = c.answer().expect("an answer without the body");
    assert_eq!(first.status, 401, "{first:?}");
    c.send(smuggled.as_bytes());
    c.send(request(&a, true, "Connection: close\r\n", &body).as_bytes());
    let after = c.answers();
    assert!(c.closes());
    let expected: &[&str] = if after.is_empty() {
        &[]
    } else {
        &[body.as_str()]
    };
    assert_eq!(upstream(&a), expected, "{after:?}");
    assert!(after.iter().all(|x| x.status == 200), "{after:?}");

    // Pinned: another expectation is ignored, and the request is served.
    forwarded(
        &a,
        "Expect: something-else",
        request(
            &a,
            true,
            "Expect: something-else\r\nConnection: close\r\n",
            &body,
        )
        .as_bytes(),
        &body,
    );
    // With an empty body there is nothing to continue: no 100, only the final answer (till's
    // 400 for a body that is not JSON).
    a.p.mock.clear_requests();
    let x = exchange(
        &a,
        request(
            &a,
            true,
            "Expect: 100-continue\r\nConnection: close\r\n",
            "",
        )
        .as_bytes(),
    );
    assert_eq!(x.statuses(), [400], "{x:?}");
    a.assert_upstream_saw_nothing("an empty body");
}

#[test]
fn connection_close_http_1_0_and_head_are_honoured() {
    let a = proxy();
    let host = a.serve.url.trim_start_matches("http://").to_string();
    let (one, two) = (say("one"), say("two"));

    // `Connection: close`, then a second request in the same write: only the first is read.
    let x = exchange(
        &a,
        format!(
            "{}{}",
            request(&a, true, "Connection: close\r\n", &one),
            request(&a, true, "", &two)
        )
        .as_bytes(),
    );
    assert_eq!(x.statuses(), [200], "{x:?}");
    assert_eq!(x.answers[0].header("connection"), Some("close"), "{x:?}");
    assert!(x.closed && x.rest.is_empty(), "{x:?}");
    assert_eq!(upstream(&a), [one.as_str()]);

    // HTTP/1.0: answered (the answer says HTTP/1.0), then closed.
    let v10 = |lines: &str, body: &str| {
        format!(
            "POST {PATH} HTTP/1.0\r\nHost: {host}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n{lines}Content-Length: {}\r\n\r\n{body}",
            a.key,
            body.len()
        )
    };
    let x = forwarded(&a, "HTTP/1.0", v10("", &one).as_bytes(), &one);
    assert!(x.closed, "{x:?}");
    assert!(x.answers[0].version.starts_with("HTTP/1."), "{x:?}");
    // HTTP/1.0 with `Connection: keep-alive`: answered with `connection: keep-alive` and kept
    // open for the next request.
    a.p.mock.clear_requests();
    let mut c = Conn::open(&a);
    c.send(v10("Connection: keep-alive\r\n", &one).as_bytes());
    let first = c.answer().expect("an answer");
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.header("connection"), Some("keep-alive"), "{first:?}");
    c.send(v10("", &two).as_bytes());
    let second = c
        .answer()
        .expect("the kept-alive connection served a second request");
    assert_eq!(second.status, 200, "{second:?}");
    assert!(c.closes(), "a plain HTTP/1.0 request ends the connection");
    assert_eq!(upstream(&a), [one.as_str(), two.as_str()]);

    // A HEAD answer has no body: the next answer on the connection starts right after its head.
    a.p.mock.clear_requests();
    let mut c = Conn::open(&a);
    c.send(
        format!(
            "HEAD {PATH} HTTP/1.1\r\nHost: {host}\r\n\r\n{}",
            request(&a, true, "Connection: close\r\n", &one)
        )
        .as_bytes(),
    );
    let to_head = c.answer_to_head().expect("an answer to HEAD");
    assert_eq!(to_head.status, 401, "{to_head:?}");
    let next = c.answer().expect("an answer after HEAD's");
    assert_eq!(next.status, 200, "{next:?}");
    assert!(next.body.contains("Hello from the mock"), "{next:?}");
    assert!(c.closes() && c.buf.is_empty());
    assert_eq!(upstream(&a), [one]);
}

/// Waits until the proxy closes `c`, and returns how long that took from `since`.
fn closed_after(c: &mut Conn, since: Instant) -> Duration {
    let closed = c.closes();
    let took = since.elapsed();
    assert!(closed, "still open after {took:?}");
    took
}

#[test]
fn a_stalled_trickling_or_idle_connection_is_closed_after_the_header_timeout() {
    let a = Attack::new("[proxy]\nheader_timeout = \"1s\"\n", &["--scope", "openai"]);
    let body = say("timeout");
    let within = |took: Duration, what: &str| {
        assert!(
            took >= Duration::from_millis(500) && took < WAIT,
            "{what}: closed after {took:?}"
        );
    };

    // Half a head, then nothing: closed without an answer (today), none upstream.
    let t = Instant::now();
    let mut c = Conn::open(&a);
    c.send(head(&a, true, "").as_bytes());
    within(closed_after(&mut c, t), "half a head");
    assert!(c.buf.is_empty(), "{:?}", String::from_utf8_lossy(&c.buf));
    // Nothing at all.
    let t = Instant::now();
    let mut c = Conn::open(&a);
    within(closed_after(&mut c, t), "a silent connection");

    // A head that keeps coming, a byte at a time: the timeout counts from its start.
    let t = Instant::now();
    let mut c = Conn::open(&a);
    c.send(format!("{}X-Pad: ", head(&a, true, "")).as_bytes());
    c.s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 1024];
    let took = loop {
        assert!(t.elapsed() < WAIT, "a trickling head kept the connection");
        if c.s.write_all(b"a").is_err() {
            break t.elapsed();
        }
        match c.s.read(&mut buf) {
            Ok(0) => break t.elapsed(),
            Ok(n) => panic!("an answer: {:?}", String::from_utf8_lossy(&buf[..n])),
            Err(e) if is_timeout(&e) => {}
            Err(_) => break t.elapsed(),
        }
    };
    within(took, "a trickling head");
    a.assert_upstream_saw_nothing("heads that never ended");

    // After a whole exchange, an idle kept-alive connection is closed too.
    let mut c = Conn::open(&a);
    c.send(request(&a, true, "", &body).as_bytes());
    let answer = c.answer().expect("an answer");
    assert_eq!(answer.status, 200, "{answer:?}");
    let t = Instant::now();
    within(closed_after(&mut c, t), "an idle connection");
    assert_eq!(upstream(&a), [body]);
}

#[test]
fn garbage_request_lines_are_refused() {
    let a = proxy();
    let body = say("garbage");
    let n = body.len();
    let host = a.serve.url.trim_start_matches("http://").to_string();
    let key = a.key.clone();
    let line = |first: &str| {
        format!(
            "{first}\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {n}\r\n\r\n{body}"
        )
    };
    // Every one is answered 400 (till's `not_a_proxy` for the absolute form) and closed, but
    // for the lowercase method.
    for (what, bytes) in [
        // Not HTTP/1.x: refused like any broken request line.
        (
            "an HTTP/2 preface",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_string(),
        ),
        // A method of its own, refused by till's endpoint check (403).
        ("a lowercase method", line(&format!("post {PATH} HTTP/1.1"))),
        (
            "a non-token method character",
            line(&format!("PO(ST {PATH} HTTP/1.1")),
        ),
        ("a double space", line(&format!("POST  {PATH} HTTP/1.1"))),
        ("a tab separator", line(&format!("POST\t{PATH} HTTP/1.1"))),
        (
            "an absolute-form target",
            line(&format!("POST http://evil.example{PATH} HTTP/1.1")),
        ),
        ("HTTP/1.2", line(&format!("POST {PATH} HTTP/1.2"))),
        ("HTTP/2.0", line(&format!("POST {PATH} HTTP/2.0"))),
        ("no version", line(&format!("POST {PATH}"))),
        (
            "a lowercase version",
            line(&format!("POST {PATH} http/1.1")),
        ),
        (
            "a space in the target",
            line(&format!("POST {PATH} x HTTP/1.1")),
        ),
        (
            "a TLS hello",
            "\x16\x03\x01\x02\x00\x01\x00\x01\x7c\x03\x03".to_string(),
        ),
    ] {
        refused(&a, what, bytes.as_bytes());
    }
}

/// A streamed answer has no length: an HTTP/1.1 client gets it chunked, on a connection that
/// stays open for the next request; an HTTP/1.0 client, which cannot read chunks, gets it
/// unframed up to the close. Both get every event, and the mock saw each request once.
#[test]
fn a_streamed_answer_is_chunked_for_http_1_1_and_ends_at_the_close_for_http_1_0() {
    let a = proxy();
    let streamed = "{\"model\":\"gpt-4o-mini\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    let plain = say("after the stream");
    let x = exchange(
        &a,
        format!(
            "{}{}",
            request(&a, true, "", streamed),
            request(&a, true, "Connection: close\r\n", &plain)
        )
        .as_bytes(),
    );
    assert_eq!(x.statuses(), [200, 200], "{x:?}");
    let sse = &x.answers[0];
    assert_eq!(sse.header("transfer-encoding"), Some("chunked"), "{sse:?}");
    assert_eq!(sse.header("content-length"), None, "{sse:?}");
    assert_eq!(
        sse.header("connection"),
        None,
        "kept for the next request: {sse:?}"
    );
    assert!(sse.body.contains("data: [DONE]"), "{sse:?}");
    // The streamed request goes up as till edits it (it asks for the usage chunk).
    let seen = upstream(&a);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[0].contains("\"stream\":true"), "{seen:?}");
    assert_eq!(seen[1], plain);

    a.p.mock.clear_requests();
    let host = a.serve.url.trim_start_matches("http://");
    let x = exchange(
        &a,
        format!(
            "POST {PATH} HTTP/1.0\r\nHost: {host}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nConnection: keep-alive\r\nContent-Length: {}\r\n\r\n{streamed}",
            a.key,
            streamed.len()
        )
        .as_bytes(),
    );
    assert_eq!(x.statuses(), [200], "{x:?}");
    let sse = &x.answers[0];
    assert_eq!(sse.version, "HTTP/1.0", "{sse:?}");
    assert_eq!(sse.header("transfer-encoding"), None, "{sse:?}");
    assert_eq!(sse.header("content-length"), None, "{sse:?}");
    assert_eq!(sse.header("connection"), Some("close"), "{sse:?}");
    assert!(x.closed, "{x:?}");
    assert!(sse.body.starts_with("data: "), "unframed: {sse:?}");
    assert!(sse.body.trim_end().ends_with("data: [DONE]"), "{sse:?}");
    assert_eq!(upstream(&a).len(), 1);
}

/// A body on GET, HEAD, DELETE or OPTIONS is refused before it is read: a server that does not
/// read one there (cpp-httplib before 0.18.6 skipped a GET's body whatever its length) would
/// take it for the next request on till's connection, a request no key was checked against.
/// So is one on a WebSocket upgrade. A GET without one goes on.
#[test]
fn a_body_on_a_method_without_one_is_refused_and_never_forwarded() {
    let a = Attack::new("", &["--scope", "openai/gpt-4o-mini", "--endpoints", "all"]);
    let host = a.serve.url.trim_start_matches("http://").to_string();
    let inner = say("smuggled").replace("gpt-4o-mini", "gpt-4o");
    let smuggled = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{inner}",
        inner.len()
    );
    let outer = |method: &str, path: &str, framing: String| {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\n{framing}",
            a.key
        )
    };
    for (method, path) in [
        ("GET", "/openai/v1/models"),
        ("GET", "/openai/v1/models/gpt-4o-mini"),
        ("HEAD", "/openai/v1/models"),
        ("DELETE", "/openai/v1/files/file-1"),
        ("OPTIONS", "/openai/v1/models"),
    ] {
        let by_length = outer(
            method,
            path,
            format!("Content-Length: {}\r\n\r\n{smuggled}", smuggled.len()),
        );
        let statuses = refused(
            &a,
            &format!("{method} {path} with a body"),
            by_length.as_bytes(),
        );
        assert!(statuses.iter().all(|&s| s == 400), "{statuses:?}");
        let by_chunks = outer(
            method,
            path,
            format!("Transfer-Encoding: chunked\r\n\r\n{}", chunked(&smuggled)),
        );
        refused(
            &a,
            &format!("{method} {path} with a chunked body"),
            by_chunks.as_bytes(),
        );
    }
    // Nor on a WebSocket upgrade (a GET), which goes to another server side: 101 and the
    // bytes after the head read as the socket's frames.
    let upgrade = |framing: String| {
        outer(
            "GET",
            "/openai/v1/responses",
            format!(
                "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{framing}"
            ),
        )
    };
    for framing in [
        format!("Content-Length: {}\r\n\r\n{smuggled}", smuggled.len()),
        format!("Transfer-Encoding: chunked\r\n\r\n{}", chunked(&smuggled)),
    ] {
        let statuses = refused(&a, "an upgrade with a body", upgrade(framing).as_bytes());
        assert_eq!(statuses, [400]);
    }
    // Without a body (or with an empty one), a GET is forwarded, with no body of its own.
    for framing in ["\r\n", "Content-Length: 0\r\n\r\n"] {
        a.p.mock.clear_requests();
        let get = outer(
            "GET",
            "/openai/v1/models",
            format!("Connection: close\r\n{framing}"),
        );
        let x = exchange(&a, get.as_bytes());
        assert_eq!(x.statuses(), [200], "{x:?}");
        let seen = a.p.mock.requests();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].path, "/v1/models");
        assert!(seen[0].body.as_deref().unwrap_or("").is_empty(), "{seen:?}");
    }
}
