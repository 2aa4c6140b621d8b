//! An HTTP/1.1 client connection of till's own, for plain `http://` providers (a model server on
//! the same machine or network, the bundled mock).
//!
//! The task that sends a request writes it to the socket itself, and the body of the answer
//! reads the socket from inside the task that forwards it to the agent: there is no connection
//! task and no channel between a request and its socket, which is most of what hyper's client
//! connection costs a request. HTTPS providers keep hyper's client (HTTP/2 by ALPN, or
//! HTTP/1.1 over TLS).
//!
//! The answer is read as RFC 9112 says (section 6.3): no body for `HEAD` and for 1xx, 204 and
//! 304; a chunked body when `Transfer-Encoding` ends in `chunked`, one read to the close when
//! it names anything else; a body of `Content-Length` bytes (every value the same, or the answer
//! is refused); otherwise a body read to the close. Interim 1xx answers are skipped. A
//! connection is kept for the next request only when its answer was HTTP/1.1, did not ask to
//! close, had a length or chunked framing (not both), and was read to its end with nothing
//! after it.

use std::io::{self, IoSlice};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::{Buf as _, Bytes, BytesMut};
use http::uri::Authority;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Version};
use hyper::body::{Frame, SizeHint};
use tokio::net::TcpStream;

/// The largest answer head (status line and headers) read before the answer is refused.
const MAX_HEAD: usize = 64 * 1024;
/// The most headers an answer may have (hyper's limit too).
const MAX_HEADERS: usize = 100;
/// The longest chunk-size line, extensions included.
const MAX_CHUNK_LINE: usize = 4 * 1024;
/// The most bytes of trailers after a chunked body (they are read and dropped).
const MAX_TRAILERS: usize = 64 * 1024;
/// What a read asks the kernel for at least.
const READ_SIZE: usize = 16 * 1024;

/// An open connection to a provider, with what was read from it and not used yet.
pub struct Conn {
    io: TcpStream,
    buf: BytesMut,
    /// The provider's `host[:port]`, which says where it goes back.
    pub authority: Authority,
    /// When it last finished an answer.
    pub used: Instant,
}

impl Conn {
    pub fn new(io: TcpStream, authority: Authority) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
            authority,
            used: Instant::now(),
        }
    }

    /// Whether a kept connection can take a request: the provider has not closed it and has
    /// sent nothing unasked. (A close that is still on its way is caught by the retry rule in
    /// [`exchange`].)
    pub fn is_open(&mut self) -> bool {
        let mut probe = [0u8; 1];
        match self.io.try_read(&mut probe) {
            Err(e) => e.kind() == io::ErrorKind::WouldBlock && self.buf.is_empty(),
            Ok(_) => false,
        }
    }

    /// Reads what the socket has into the buffer; `Ok(0)` is the provider's close.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < READ_SIZE / 4 {
            self.buf.reserve(READ_SIZE);
        }
        // Through `AsyncRead`, which takes a short read as the socket drained (so the next read
        // waits for the reactor rather than asking the kernel for nothing).
        tokio_util::io::poll_read_buf(std::pin::Pin::new(&mut self.io), cx, &mut self.buf)
    }

    async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }
}

/// Why an exchange got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// Nothing of the request reached the provider: it may go on another connection.
    NotSent,
    /// The request may have reached the provider; it must not be sent again.
    Lost,
    /// The request was cut off while it was written, and no answer came: the provider did
    /// not get all of it, so it cannot have run it (a body's length is in its head).
    CutShort,
}

/// The request head: `method path HTTP/1.1`, `host`, the headers (less any `host`,
/// `content-length` and `transfer-encoding` of their own) and the body's length.
pub fn head<'h, I>(
    method: &Method,
    path: &str,
    host: &HeaderValue,
    headers: impl Fn() -> I,
    body_len: usize,
) -> Vec<u8>
where
    I: Iterator<Item = (&'h HeaderName, &'h HeaderValue)>,
{
    let size = headers()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum::<usize>();
    let mut out = Vec::with_capacity(method.as_str().len() + path.len() + host.len() + size + 64);
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers() {
        if name == http::header::HOST
            || name == http::header::CONTENT_LENGTH
            || name == http::header::TRANSFER_ENCODING
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // Methods without a body say nothing of one when they have none.
    let bodiless = matches!(
        *method,
        Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS | Method::TRACE
    );
    if body_len > 0 || !bodiless {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(digits(body_len as u64, 10, &mut [0; 20]));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Sends `head` and `body` on `conn` and reads the answer's head; the answer's body reads
/// the rest and, once it has all of it, hands the connection to `put_back` when it can take
/// another request. `reused` says whether the connection carried an answer before: only then
/// is a failure before anything was written [`Failed::NotSent`].
pub async fn exchange(
    mut conn: Conn,
    head: &[u8],
    body: &[u8],
    head_only: bool,
    reused: bool,
    put_back: fn(Conn),
) -> Result<Response<Body>, Failed> {
    let written = write_all(&mut conn.io, head, body).await;
    let cut_short = match written {
        Ok(()) => false,
        Err(0) if reused => return Err(Failed::NotSent),
        Err(_) => {
            // A provider may answer before it has read the whole body (a 413 for a body too
            // large, say) and close, which resets the connection under the write; that
            // answer, if it came whole, is still in the socket and is the answer. Our side is
            // shut so that a provider still waiting for the rest sees the request end.
            use tokio::io::AsyncWriteExt as _;
            let _ = conn.io.shutdown().await;
            true
        }
    };
    let mut head = loop {
        match take_head(&mut conn.buf, head_only)? {
            Some(head) => break head,
            None => match conn.fill().await {
                Ok(n) if n > 0 => {}
                _ if cut_short => return Err(Failed::CutShort),
                _ => return Err(Failed::Lost),
            },
        }
    };
    // After a request cut short the connection is never used again.
    head.keep &= !cut_short;
    let mut body = Body {
        conn: Some(conn),
        framing: head.framing,
        keep: head.keep,
        put_back,
    };
    if matches!(body.framing, Framing::Length(0)) {
        body.end();
    }
    let mut resp = Response::new(body);
    *resp.status_mut() = head.status;
    *resp.version_mut() = head.version;
    *resp.headers_mut() = head.headers;
    Ok(resp)
}

/// An answer's head, read.
struct Head {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    framing: Framing,
    /// The connection may take another request once the body is read to its end.
    keep: bool,
}

/// Takes the answer's head from the start of `buf`, interim (1xx) answers skipped: `None`
/// while it has not all arrived.
fn take_head(buf: &mut BytesMut, head_only: bool) -> Result<Option<Head>, Failed> {
    loop {
        let parsed = match parse_head(buf)? {
            Some(parsed) => parsed,
            None if buf.len() >= MAX_HEAD => return Err(Failed::Lost),
            None => return Ok(None),
        };
        if parsed.status.is_informational() {
            if parsed.status == StatusCode::SWITCHING_PROTOCOLS {
                // Nothing here asks for an upgrade.
                return Err(Failed::Lost);
            }
            continue;
        }
        let mut head = parsed;
        if head_only
            || head.status == StatusCode::NO_CONTENT
            || head.status == StatusCode::NOT_MODIFIED
        {
            head.framing = Framing::Length(0);
        }
        head.keep &= !matches!(head.framing, Framing::Close);
        return Ok(Some(head));
    }
}

/// Writes `head` then `body`; on failure, how many bytes went out.
async fn write_all(io: &mut TcpStream, head: &[u8], body: &[u8]) -> Result<(), usize> {
    use tokio::io::AsyncWriteExt as _;
    let total = head.len() + body.len();
    let mut done = 0;
    while done < total {
        let n = if done < head.len() {
            io.write_vectored(&[IoSlice::new(&head[done..]), IoSlice::new(body)])
                .await
        } else {
            io.write(&body[done - head.len()..]).await
        };
        match n {
            Ok(0) | Err(_) => return Err(done),
            Ok(n) => done += n,
        }
    }
    Ok(())
}

/// Takes the answer head at the start of `buf` out of it, its header values sharing the
/// buffer's memory: `Ok(None)` while it is incomplete.
fn parse_head(buf: &mut BytesMut) -> Result<Option<Head>, Failed> {
    if buf.is_empty() {
        return Ok(None);
    }
    // Where each header lies in the head: (name start, name end, value start, value end).
    let mut at = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
    let (len, status, version, count) = {
        let mut headers = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        let parsing = httparse::ParserConfig::default();
        let len = match parsing.parse_response_with_uninit_headers(&mut resp, buf, &mut headers) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(Failed::Lost),
        };
        let version = match resp.version {
            Some(1) => Version::HTTP_11,
            Some(0) => Version::HTTP_10,
            _ => return Err(Failed::Lost),
        };
        let base = buf.as_ptr() as usize;
        let offset = |s: &[u8]| (s.as_ptr() as usize - base) as u32;
        for (slot, h) in at.iter_mut().zip(resp.headers.iter()) {
            let name = h.name.as_bytes();
            let (ns, vs) = (offset(name), offset(h.value));
            *slot = (ns, ns + name.len() as u32, vs, vs + h.value.len() as u32);
        }
        let status = resp.code.ok_or(Failed::Lost)?;
        let status = StatusCode::from_u16(status).map_err(|_| Failed::Lost)?;
        (len, status, version, resp.headers.len())
    };
    let raw = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(count);
    let mut keep = version == Version::HTTP_11;
    let mut length: Option<u64> = None;
    let mut chunked: Option<bool> = None;
    for &(ns, ne, vs, ve) in &at[..count] {
        let name =
            HeaderName::from_bytes(&raw[ns as usize..ne as usize]).map_err(|_| Failed::Lost)?;
        let value = if vs == ve {
            HeaderValue::from_static("")
        } else {
            HeaderValue::from_maybe_shared(raw.slice(vs as usize..ve as usize))
                .map_err(|_| Failed::Lost)?
        };
        if name == http::header::CONTENT_LENGTH {
            for part in value.as_bytes().split(|&b| b == b',') {
                let n = decimal(part.trim_ascii()).ok_or(Failed::Lost)?;
                if length.is_some_and(|l| l != n) {
                    return Err(Failed::Lost);
                }
                length = Some(n);
            }
        } else if name == http::header::TRANSFER_ENCODING {
            // The final coding is the last one named.
            if let Some(last) = value
                .as_bytes()
                .split(|&b| b == b',')
                .map(<[u8]>::trim_ascii)
                .rfind(|t| !t.is_empty())
            {
                chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
            }
        } else if name == http::header::CONNECTION && has_token(value.as_bytes(), b"close") {
            keep = false;
        }
        headers.append(name, value);
    }
    let framing = match (chunked, length) {
        (Some(true), _) => Framing::Chunked(Chunked::default()),
        (Some(false), _) => Framing::Close,
        (None, Some(n)) => Framing::Length(n),
        (None, None) => Framing::Close,
    };
    Ok(Some(Head {
        status,
        version,
        headers,
        framing,
        // Not both a length and a transfer coding, which RFC 9112 lets a client read but
        // not trust for the next answer.
        keep: keep && (chunked.is_none() || length.is_none()),
    }))
}

/// Whether a comma-separated header value lists `token` (case-insensitive).
pub(crate) fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// A `Content-Length` value: digits only, no sign, no overflow.
pub(crate) fn decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

/// How the rest of a message's body is delimited (an answer's here, a request's in the
/// proxy's server side, which never reads one to the close).
pub(crate) enum Framing {
    /// This many bytes are still to come.
    Length(u64),
    Chunked(Chunked),
    /// Everything up to the provider's close.
    Close,
}

/// What a body has next.
pub(crate) enum Next {
    /// Data, and whether it was the body's last.
    Data(Bytes, bool),
    /// More bytes are needed (or, for [`Framing::Close`], the close).
    More,
    /// The body is complete.
    End,
}

impl Framing {
    /// The body's next data from the start of `buf`.
    pub(crate) fn next(&mut self, buf: &mut BytesMut) -> Result<Next, &'static str> {
        match self {
            Framing::Length(0) => Ok(Next::End),
            Framing::Length(rest) => {
                if buf.is_empty() {
                    return Ok(Next::More);
                }
                let n = buf.len().min(usize::try_from(*rest).unwrap_or(usize::MAX));
                *rest -= n as u64;
                Ok(Next::Data(buf.split_to(n).freeze(), *rest == 0))
            }
            Framing::Chunked(chunked) => match chunked.advance(buf)? {
                Step::Data => {
                    let data = chunked.take(buf);
                    // The end may already be here: then the connection can go back now.
                    let last = matches!(chunked.advance(buf), Ok(Step::End));
                    Ok(Next::Data(data, last))
                }
                Step::More => Ok(Next::More),
                Step::End => Ok(Next::End),
            },
            Framing::Close if buf.is_empty() => Ok(Next::More),
            Framing::Close => Ok(Next::Data(buf.split().freeze(), false)),
        }
    }
}

/// An answer as [`exchange`] reads it, from bytes that arrive in `pieces` (and then the
/// close), without a socket: status, headers, body, and whether the connection would be kept.
/// For the fuzzer and tests.
pub fn read_answer<'a>(
    pieces: impl IntoIterator<Item = &'a [u8]>,
    head_only: bool,
) -> Result<(StatusCode, HeaderMap, Vec<u8>, bool), Failed> {
    let mut pieces = pieces.into_iter();
    let mut buf = BytesMut::new();
    let head = loop {
        if let Some(head) = take_head(&mut buf, head_only)? {
            break head;
        }
        buf.extend_from_slice(pieces.next().ok_or(Failed::Lost)?);
    };
    let (mut framing, mut keep) = (head.framing, head.keep);
    let mut body = Vec::new();
    loop {
        match framing.next(&mut buf).map_err(|_| Failed::Lost)? {
            Next::Data(data, last) => {
                body.extend_from_slice(&data);
                if last {
                    break;
                }
            }
            Next::End => break,
            Next::More => match pieces.next() {
                Some(piece) => buf.extend_from_slice(piece),
                None if matches!(framing, Framing::Close) => break,
                None => return Err(Failed::Lost),
            },
        }
    }
    keep &= buf.is_empty();
    Ok((head.status, head.headers, body, keep))
}

/// The body of an answer read over a [`Conn`], polled by whoever forwards it.
pub struct Body {
    /// `None` once the body has ended (or failed).
    conn: Option<Conn>,
    framing: Framing,
    /// The connection may take another request once this body is read to its end.
    keep: bool,
    put_back: fn(Conn),
}

impl Body {
    /// The body is complete: the connection goes back when it can take another request.
    fn end(&mut self) {
        if let Some(mut conn) = self.conn.take()
            && self.keep
            && conn.buf.is_empty()
        {
            conn.used = Instant::now();
            (self.put_back)(conn);
        }
    }

    fn fail(&mut self, e: io::Error) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.conn = None;
        Poll::Ready(Some(Err(e)))
    }
}

fn cut_short() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the provider closed the connection before the end of the body",
    )
}

/// `n` in base 10 or 16 (lowercase), written at the end of `buf`, for a head or a chunk size.
pub(crate) fn digits(mut n: u64, base: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b"0123456789abcdef"[(n % base) as usize];
        n /= base;
        if n == 0 {
            break;
        }
    }
    &buf[at..]
}

pub(crate) fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match this.framing.next(&mut conn.buf) {
                Ok(Next::Data(data, last)) => {
                    if last {
                        // Back before anyone polls for the end.
                        this.end();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Next::End) => {
                    this.end();
                    return Poll::Ready(None);
                }
                Ok(Next::More) => {}
                Err(what) => return this.fail(invalid(what)),
            }
            match ready!(conn.poll_fill(cx)) {
                Ok(0) if matches!(this.framing, Framing::Close) => {
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail(cut_short()),
                Ok(_) => {}
                Err(e) => return this.fail(e),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.conn, &self.framing) {
            (None, _) => SizeHint::with_exact(0),
            (Some(_), Framing::Length(n)) => SizeHint::with_exact(*n),
            _ => SizeHint::default(),
        }
    }
}

/// Where a chunked body's decoder stands.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// A chunk-size line is next.
    #[default]
    Size,
    /// This many bytes of chunk data are still to come.
    Data(u64),
    /// The CRLF after a chunk's data is next.
    DataEnd,
    /// Trailer lines (this many bytes of them so far), up to an empty line.
    Trailers(usize),
    End,
}

/// A decoder of `Transfer-Encoding: chunked` over a buffer that grows as bytes arrive.
#[derive(Debug, Default)]
pub struct Chunked {
    state: ChunkState,
}

/// What a chunked body has next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Chunk data is in the buffer: [`Chunked::take`] it.
    Data,
    /// More bytes are needed.
    More,
    /// The body is complete; nothing of it is left in the buffer.
    End,
}

impl Chunked {
    /// Consumes the framing at the start of `buf` (size lines, the CRLF after data, trailers)
    /// up to chunk data, the end, or the end of what has arrived. A malformed body is an error,
    /// and stays one if asked again.
    pub fn advance(&mut self, buf: &mut BytesMut) -> Result<Step, &'static str> {
        loop {
            match self.state {
                ChunkState::Data(0) => self.state = ChunkState::DataEnd,
                ChunkState::Data(_) => {
                    return Ok(if buf.is_empty() {
                        Step::More
                    } else {
                        Step::Data
                    });
                }
                ChunkState::DataEnd => {
                    if buf.len() < 2 {
                        return if buf.first().is_some_and(|&b| b != b'\r') {
                            Err("a chunk's data is not followed by CRLF")
                        } else {
                            Ok(Step::More)
                        };
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err("a chunk's data is not followed by CRLF");
                    }
                    buf.advance(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Size => {
                    let Some(line) = line(buf, MAX_CHUNK_LINE)? else {
                        return Ok(Step::More);
                    };
                    let size = chunk_size(&buf[..line])?;
                    buf.advance(line + 2);
                    self.state = if size == 0 {
                        ChunkState::Trailers(0)
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Trailers(seen) => {
                    let Some(line) = line(buf, MAX_TRAILERS.saturating_sub(seen))? else {
                        return Ok(Step::More);
                    };
                    buf.advance(line + 2);
                    self.state = if line == 0 {
                        ChunkState::End
                    } else {
                        ChunkState::Trailers(seen + line + 2)
                    };
                }
                ChunkState::End => return Ok(Step::End),
            }
        }
    }

    /// The chunk data at the start of `buf` (after [`Step::Data`]).
    pub fn take(&mut self, buf: &mut BytesMut) -> Bytes {
        let ChunkState::Data(rest) = &mut self.state else {
            return Bytes::new();
        };
        let n = buf.len().min(usize::try_from(*rest).unwrap_or(usize::MAX));
        *rest -= n as u64;
        buf.split_to(n).freeze()
    }
}

/// The length of the CRLF-ended line at the start of `buf` (without its CRLF), `None` while
/// it has not all arrived; a bare LF, or a line longer than `max`, is an error.
fn line(buf: &[u8], max: usize) -> Result<Option<usize>, &'static str> {
    let window = &buf[..buf.len().min(max.saturating_add(2))];
    match window.iter().position(|&b| b == b'\n') {
        Some(0) => Err("a line of a chunked body ends in a bare LF"),
        Some(lf) if window[lf - 1] != b'\r' => Err("a line of a chunked body ends in a bare LF"),
        Some(lf) => Ok(Some(lf - 1)),
        None if window.len() >= max.saturating_add(2) => {
            Err("a line of a chunked body is too long")
        }
        None => Ok(None),
    }
}

/// What the whole chunks at the start of `buf` (a chunked body, perhaps cut short) hold,
/// joined: a body read no further than one read of the socket went (a refused WebSocket
/// upgrade's). A chunk cut short, or framing that is not chunked, ends it.
pub fn dechunk_start(buf: &[u8]) -> Vec<u8> {
    const MAX_LINE: usize = 4096;
    let mut out = Vec::new();
    let mut at = 0;
    while let Ok(Some(end)) = line(&buf[at..], MAX_LINE) {
        let Ok(size) = chunk_size(&buf[at..at + end]) else {
            break;
        };
        let data = at + end + 2;
        let Some(after) = usize::try_from(size)
            .ok()
            .and_then(|n| data.checked_add(n))
            .filter(|&a| size > 0 && buf.get(a..a.saturating_add(2)) == Some(b"\r\n"))
        else {
            break;
        };
        out.extend_from_slice(&buf[data..after]);
        at = after + 2;
    }
    out
}

/// A chunk-size line: hex digits, optional spaces or tabs, an optional `;` extension (no CR).
fn chunk_size(line: &[u8]) -> Result<u64, &'static str> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err("a chunk size is not 1 to 16 hex digits");
    }
    let rest = &line[digits..];
    let rest = &rest[rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count()..];
    if !(rest.is_empty() || rest[0] == b';') || rest.contains(&b'\r') {
        return Err("a chunk-size line has bytes after its size");
    }
    let mut size = 0u64;
    for &b in &line[..digits] {
        let d = (b as char).to_digit(16).unwrap_or(0);
        size = size << 4 | u64::from(d);
    }
    Ok(size)
}

#[cfg(test)]
mod tests;
