//! The proxy's HTTP/1.1 server side: one task per connection that reads a request head,
//! runs the request through the phases with a body that reads the same socket, and writes
//! the answer, then the next request, as nginx's worker does.
//!
//! hyper's server did the same through a dispatcher, with channels between the request's body
//! and its socket, a boxed timer and a fresh read buffer for most requests: a small request
//! took 87,800 instructions with it and takes 82,000 with this (BENCHMARKS.md). This side is
//! as narrow as the proxy's client side
//! ([`crate::upstream::h1`], whose body framing it shares), and as strict as RFC 9112 asks of a
//! server in front of others, stricter than hyper where a request could be read two ways:
//!
//! - A head is at most 64 KiB and 100 headers (431), its request line and headers parsed by
//!   `httparse`, as hyper parses them; names and values checked again by `http`.
//! - A body has a `Content-Length` (every value the same, digits only) or is chunked; a
//!   request with both, with a transfer coding other than `chunked` alone, or with one on
//!   HTTP/1.0, is refused (400) and its connection closed. Nothing else has a body.
//! - `Expect: 100-continue` is answered with `100 Continue` when the body is first waited for;
//!   a request refused before its body is read gets its answer and the connection is closed,
//!   so an unread body is never read as a request.
//! - Requests are read one at a time, the next only once the answer to this one is written:
//!   pipelined requests are each read, checked and answered in order.
//! - `header_timeout` bounds the wait for a head, the idle time between requests included;
//!   `body_timeout` the wait for a client that reads nothing of its answer.
//! - A WebSocket upgrade (`Upgrade: websocket`) with no body hands the connection, with the
//!   bytes already read, to hyper's server, which alone can upgrade it; it serves that request
//!   only, and a connection whose upgrade was refused is closed after the answer. One with a
//!   body is refused (400).
//!
//! Answers carry a `Content-Length` when their length is known (a buffered answer, or the
//! provider's own length), else are chunked (HTTP/1.1) or end at the close (HTTP/1.0). A
//! streamed answer is written as its pieces arrive: pieces that are ready together go out in
//! one write, and none waits for another.

use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::ops::Range;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf as _, Bytes, BytesMut};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version, header};
use hyper::body::{Body as _, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;

use super::{Conn, ProxyBody, ProxyError, State};
use crate::providers::ApiFamily;
use crate::upstream::h1::{Framing, Next, decimal, digits, has_token, invalid};

/// The largest request head (request line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// The most headers a request may have (hyper's limit too).
const MAX_HEADERS: usize = 100;
/// What a read asks the kernel for at least.
const READ_SIZE: usize = 16 * 1024;
/// What a read of a chunked body asks for at least.
const BODY_READ: usize = 64 * 1024;
/// A body read whole is given room for this much of its announced length at once: a body
/// up to it lands in one buffer without a copy. An allocation this size that is not written
/// to takes address space, not memory, so clients that announce bodies and send none make the
/// proxy hold nothing; larger bodies grow from it as their bytes come.
const WHOLE_AT_ONCE: usize = 1024 * 1024;
/// A body with a length up to this is read into one buffer and handed over whole
/// ([`Inbound::poll_whole`]); larger ones (past any sensible `max_body_bytes`) go piece by
/// piece.
const WHOLE_UP_TO: usize = 64 * 1024 * 1024;
/// Answer pieces that are ready together are written together, up to this many bytes.
const BATCH: usize = 64 * 1024;
/// Answer data up to this long is copied beside the framing; longer data is written from
/// where it lies.
const COPY_UP_TO: usize = 4 * 1024;
/// How long a connection closed with a request body unread is read on (and the bytes
/// dropped), so that the close does not reset the connection before the client has read its
/// answer.
const LINGER: Duration = Duration::from_secs(2);
/// The most bytes read and dropped while lingering.
const LINGER_BYTES: usize = 1024 * 1024;

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

const CUT_OFF: &str = "the client closed the connection before the body's end";

/// A connection's socket, what was read from it and not used yet, and where the request
/// whose body is being read stands.
pub(super) struct Inbound {
    io: TcpStream,
    buf: BytesMut,
    /// The rest of the request body; `None` once it has been read to its end (a body cut off
    /// or broken in its framing never is).
    body: Option<Framing>,
    /// Bytes of a `100 Continue` still owed before the body is waited for (0: none).
    owed: usize,
    /// A body being read whole (see [`Inbound::poll_whole`]).
    whole: Option<BytesMut>,
}

impl Inbound {
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < READ_SIZE / 4 {
            let want = if self.body.is_some() {
                BODY_READ
            } else {
                READ_SIZE
            };
            self.buf.reserve(want);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }

    /// The rest of a body of `n` bytes read into a buffer of its own, which is handed over
    /// whole: the reads land where the checks read it, and nothing joins its pieces (a copy
    /// of a megabyte for a megabyte). Its own buffer, not the connection's: what the
    /// connection's buffer holds of the next request never shares the body's memory.
    ///
    /// The buffer is given room for up to [`WHOLE_AT_ONCE`] of the announced length, and past
    /// that grows with what has come (to twice it), never to the length the head announced
    /// before its bytes arrive: a client that announces a large body
    /// and sends none makes the proxy set nothing aside for it ([`Body::held`] is what counts
    /// against the bodies' shared bound).
    fn poll_whole(&mut self, cx: &mut Context<'_>, n: usize) -> Poll<Option<io::Result<Bytes>>> {
        if self.whole.is_none() {
            // With what came with the head.
            let mut whole = BytesMut::with_capacity(n.min(self.buf.len().max(WHOLE_AT_ONCE)));
            whole.extend_from_slice(&self.buf);
            self.buf.clear();
            self.whole = Some(whole);
        }
        while self.whole.as_ref().is_some_and(|w| w.len() < n) {
            ready!(self.poll_continue(cx))?;
            let whole = self.whole.as_mut().expect("checked above");
            let left = n - whole.len();
            if whole.capacity() == whole.len() {
                whole.reserve(left.min(whole.len().max(BODY_READ)));
            }
            // No read past the body's end, whatever the buffer's capacity: the bytes after it
            // are the next request's.
            if ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut self.io),
                cx,
                &mut bytes::BufMut::limit(&mut *whole, left)
            ))? == 0
            {
                return Poll::Ready(Some(Err(invalid(CUT_OFF))));
            }
        }
        self.body = None;
        Poll::Ready(self.whole.take().map(|w| Ok(w.freeze())))
    }

    /// Writes what is owed of a `100 Continue`.
    fn poll_continue(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.owed > 0 {
            let from = CONTINUE.len() - self.owed;
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &CONTINUE[from..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.owed -= n;
        }
        Poll::Ready(Ok(()))
    }
}

/// A request body read from its connection as the phases ask for it.
pub struct Body<'c> {
    inb: &'c mut Inbound,
}

impl Body<'_> {
    /// Bytes of the body read from the socket and not handed over yet: those of a body read
    /// whole ([`Inbound::poll_whole`]), which is handed over only once its last byte has come.
    pub(super) fn held(&self) -> u64 {
        self.inb.whole.as_ref().map_or(0, |w| w.len() as u64)
    }
}

impl hyper::body::Body for Body<'_> {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let inb = &mut *self.get_mut().inb;
        loop {
            let framing = match inb.body.as_mut() {
                None => return Poll::Ready(None),
                Some(Framing::Length(n))
                    if *n <= WHOLE_UP_TO as u64 && (inb.buf.len() as u64) < *n =>
                {
                    let n = *n as usize;
                    return inb.poll_whole(cx, n).map(|r| r.map(|r| r.map(Frame::data)));
                }
                Some(framing) => framing,
            };
            match framing.next(&mut inb.buf) {
                Ok(Next::Data(data, last)) => {
                    if last {
                        inb.body = None;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Next::End) => {
                    inb.body = None;
                    return Poll::Ready(None);
                }
                Ok(Next::More) => {}
                Err(what) => return Poll::Ready(Some(Err(invalid(what)))),
            }
            ready!(inb.poll_continue(cx))?;
            if ready!(inb.poll_fill(cx))? == 0 {
                return Poll::Ready(Some(Err(invalid(CUT_OFF))));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inb.body.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inb.body {
            None => SizeHint::with_exact(0),
            Some(Framing::Length(n)) => SizeHint::with_exact(*n),
            Some(_) => SizeHint::default(),
        }
    }
}

/// A request head, read.
struct Head {
    parts: http::request::Parts,
    /// How its body is delimited; `None`: it has none.
    body: Option<Framing>,
    /// The connection may take another request after this one.
    keep: bool,
    expect_continue: bool,
    /// A WebSocket upgrade, for hyper.
    websocket: bool,
    /// The head as it came, for hyper when it takes the connection over.
    raw: Bytes,
}

/// Why a head is refused: the status and what to tell the client.
type Refusal = (StatusCode, &'static str);

const TOO_LARGE: Refusal = (
    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    "the request head is larger than 64 KiB",
);

/// Takes the request head at the start of `buf` out of it, its header values sharing the
/// buffer's memory: `Ok(None)` while it is incomplete.
fn parse_head(buf: &mut BytesMut) -> Result<Option<Head>, Refusal> {
    const BAD: StatusCode = StatusCode::BAD_REQUEST;
    // Where each header lies in the head: (name start, name end, value start, value end).
    let mut at = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
    let (len, method, path, version, count) = {
        let mut headers = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let parsing = httparse::ParserConfig::default();
        let len = match parsing.parse_request_with_uninit_headers(&mut req, buf, &mut headers) {
            Ok(httparse::Status::Complete(len)) if len > MAX_HEAD => return Err(TOO_LARGE),
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Err(TOO_LARGE),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err((
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "the request has more than 100 headers",
                ));
            }
            Err(_) => return Err((BAD, "the request head is not valid HTTP/1.1")),
        };
        let version = match req.version {
            Some(1) => Version::HTTP_11,
            Some(0) => Version::HTTP_10,
            _ => return Err((BAD, "the request's HTTP version is not 1.0 or 1.1")),
        };
        let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes())
            .map_err(|_| (BAD, "the request's method is not valid"))?;
        let base = buf.as_ptr() as usize;
        let offset = |s: &[u8]| (s.as_ptr() as usize - base) as u32;
        let path = req.path.unwrap_or_default().as_bytes();
        let path = (offset(path) as usize, offset(path) as usize + path.len());
        for (slot, h) in at.iter_mut().zip(req.headers.iter()) {
            let name = h.name.as_bytes();
            let (ns, vs) = (offset(name), offset(h.value));
            *slot = (ns, ns + name.len() as u32, vs, vs + h.value.len() as u32);
        }
        (len, method, path, version, req.headers.len())
    };
    let raw = buf.split_to(len).freeze();
    let uri = http::Uri::from_maybe_shared(raw.slice(path.0..path.1))
        .map_err(|_| (BAD, "the request's target is not a valid URI"))?;
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    parts.headers.reserve(count);
    let http11 = version == Version::HTTP_11;
    let mut keep = http11;
    let mut closes = false;
    let mut length: Option<u64> = None;
    let mut chunked: Option<bool> = None;
    let (mut expect_continue, mut upgrade) = (false, false);
    for &(ns, ne, vs, ve) in &at[..count] {
        let name = HeaderName::from_bytes(&raw[ns as usize..ne as usize])
            .map_err(|_| (BAD, "a request header's name is not valid"))?;
        let value = if vs == ve {
            HeaderValue::from_static("")
        } else {
            HeaderValue::from_maybe_shared(raw.slice(vs as usize..ve as usize))
                .map_err(|_| (BAD, "a request header's value is not valid"))?
        };
        match name {
            header::CONTENT_LENGTH => {
                let n = decimal(value.as_bytes())
                    .ok_or((BAD, "the request's Content-Length is not a number"))?;
                if length.is_some_and(|l| l != n) {
                    return Err((BAD, "the request has two different Content-Lengths"));
                }
                length = Some(n);
            }
            header::TRANSFER_ENCODING => {
                if !http11 {
                    return Err((BAD, "an HTTP/1.0 request cannot have a Transfer-Encoding"));
                }
                // `chunked`, once: any other coding (or chunked twice) is refused, so the
                // body till reads is the body the client meant.
                let only_chunked = value
                    .as_bytes()
                    .trim_ascii()
                    .eq_ignore_ascii_case(b"chunked");
                if chunked.is_some() || !only_chunked {
                    return Err((
                        BAD,
                        "till reads request bodies with no transfer coding but `chunked`",
                    ));
                }
                chunked = Some(true);
            }
            header::CONNECTION => {
                if has_token(value.as_bytes(), b"close") {
                    closes = true;
                } else if has_token(value.as_bytes(), b"keep-alive") {
                    keep = true;
                }
            }
            header::EXPECT => {
                expect_continue = http11 && value.as_bytes().eq_ignore_ascii_case(b"100-continue");
            }
            header::UPGRADE => upgrade = http11,
            _ => {}
        }
        parts.headers.append(name, value);
    }
    let body = match (chunked, length) {
        (Some(_), Some(_)) => {
            return Err((
                BAD,
                "the request has both a Content-Length and a Transfer-Encoding",
            ));
        }
        (Some(_), None) => Some(Framing::Chunked(Default::default())),
        (None, Some(0) | None) => None,
        (None, Some(n)) => Some(Framing::Length(n)),
    };
    let websocket = upgrade && super::ws::is_upgrade(&parts.headers);
    // An upgrade is a GET, which has no body here (as `GET`s that stay HTTP are refused one
    // in the request's phases): what follows its head is the socket's frames or nothing.
    if websocket && body.is_some() {
        return Err((BAD, "a WebSocket upgrade cannot have a body"));
    }
    Ok(Some(Head {
        keep: keep && !closes && parts.method != Method::CONNECT,
        expect_continue: expect_continue && body.is_some(),
        parts,
        body,
        websocket,
        raw,
    }))
}

/// Whether bytes of `buf` after its first `searched` may end a head: a line feed followed by a
/// blank line (CRLF or, as `httparse` also reads it, a bare LF).
fn may_end_head(buf: &[u8], searched: usize) -> bool {
    let from = searched.saturating_sub(2);
    buf.get(from..).is_some_and(|new| {
        (0..new.len())
            .any(|i| new[i] == b'\n' && matches!(&new[i + 1..], [b'\n', ..] | [b'\r', b'\n', ..]))
    })
}

/// Whether to parse the head again after bytes past `searched` came: on its first bytes (so
/// what is not HTTP at all is refused at once), at each new line within its first 8 KiB (so a
/// broken line is refused when it ends), and past that only once a blank line may have ended
/// it.
fn worth_parsing(buf: &[u8], searched: usize) -> bool {
    const EVERY_LINE_UP_TO: usize = 8 * 1024;
    if buf.is_empty() {
        return false;
    }
    searched == 0
        || (buf.len() <= EVERY_LINE_UP_TO && buf[searched.saturating_sub(1)..].contains(&b'\n'))
        || may_end_head(buf, searched)
}

/// What waiting for a request head came to.
enum Waited {
    Head(Box<Head>),
    /// The client closed, went silent past `header_timeout`, or the proxy is stopping.
    Over,
    Refused(Refusal),
}

/// The next request head, within `timer`, unless `closing` comes first.
async fn next_head(
    inb: &mut Inbound,
    mut timer: Pin<&mut tokio::time::Sleep>,
    mut closing: Pin<&mut impl Future<Output = ()>>,
    mut evicted: Pin<&mut impl Future<Output = ()>>,
) -> Waited {
    // How much of the buffer has been looked at: a head sent a byte at a time is not parsed
    // again at every byte over everything before it (see `worth_parsing`).
    let mut searched = 0;
    loop {
        if worth_parsing(&inb.buf, searched) {
            match parse_head(&mut inb.buf) {
                Ok(Some(head)) => return Waited::Head(Box::new(head)),
                Ok(None) => {}
                Err(refusal) => return Waited::Refused(refusal),
            }
        } else if inb.buf.len() > MAX_HEAD {
            return Waited::Refused(TOO_LARGE);
        }
        searched = inb.buf.len();
        let read = std::future::poll_fn(|cx| inb.poll_fill(cx));
        tokio::select! {
            biased;
            read = read => match read {
                Ok(n) if n > 0 => {}
                _ => return Waited::Over,
            },
            () = timer.as_mut() => return Waited::Over,
            () = closing.as_mut() => return Waited::Over,
            () = evicted.as_mut() => return Waited::Over,
        }
    }
}

/// Serves one connection to its end.
pub(super) async fn serve(io: TcpStream, state: Arc<State>, peer: SocketAddr, conn: Conn) {
    let header_timeout = state.options.header_timeout;
    // A client that reads nothing of its answer for `body_timeout` is given up on, so that it
    // holds neither its connection's slot nor the request's reservation for ever.
    let stall = state.options.body_timeout;
    let mut inb = Inbound {
        io,
        buf: BytesMut::with_capacity(READ_SIZE),
        body: None,
        owed: 0,
        whole: None,
    };
    let mut closing = pin!(conn.stop.closing());
    let mut timer = pin!(tokio::time::sleep(header_timeout));
    let busy = Arc::new(());
    let mut out = Batch::default();
    loop {
        timer
            .as_mut()
            .reset(tokio::time::Instant::now() + header_timeout);
        // Closed when every slot is taken and this connection has waited longest for a head;
        // no longer once its head has come.
        let waited = {
            let waiting = conn.idle.wait();
            let evicted = pin!(waiting.evicted.notified());
            next_head(&mut inb, timer.as_mut(), closing.as_mut(), evicted).await
        };
        let head = match waited {
            Waited::Head(head) => head,
            Waited::Over => return,
            Waited::Refused((status, why)) => {
                let answer = ProxyError::new(status.as_u16(), "bad_request", why)
                    .response(ApiFamily::Openai);
                let _ = answer_with(
                    &mut inb.io,
                    &mut out,
                    answer,
                    Version::HTTP_11,
                    false,
                    false,
                    stall,
                )
                .await;
                linger(inb).await;
                return;
            }
        };
        let Head {
            parts,
            body,
            keep,
            expect_continue,
            websocket,
            raw,
        } = *head;
        if websocket {
            let mut pre = BytesMut::with_capacity(raw.len() + inb.buf.len());
            pre.extend_from_slice(&raw);
            pre.extend_from_slice(&inb.buf);
            let io = Rewind {
                pre: pre.freeze(),
                io: inb.io,
            };
            return super::serve_hyper(io, state, peer, conn, busy).await;
        }
        drop(raw);
        let (version, head_only) = (parts.version, parts.method == Method::HEAD);
        inb.body = body;
        inb.whole = None;
        inb.owed = if expect_continue { CONTINUE.len() } else { 0 };
        let req = Request::from_parts(parts, Body { inb: &mut inb });
        let answer = super::respond(state.clone(), peer, req, conn.clone(), busy.clone()).await;
        // A body not read to its end leaves the connection where no request starts.
        let unread = inb.body.is_some();
        let keep = keep && !unread && !conn.stop.is_closing();
        match answer_with(
            &mut inb.io,
            &mut out,
            answer,
            version,
            head_only,
            keep,
            stall,
        )
        .await
        {
            Ok(true) if keep => {}
            Ok(_) if unread => return linger(inb).await,
            _ => return,
        }
    }
}

/// Closes a connection whose client may still be sending: our side is shut, and what comes is
/// read and dropped for a while, so the close does not reset the connection under an answer
/// the client has not read yet.
async fn linger(mut inb: Inbound) {
    let _ = inb.io.shutdown().await;
    let drain = async {
        let mut dropped = 0;
        let mut sink = [0u8; 8192];
        while dropped < LINGER_BYTES {
            match inb.io.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => dropped += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// How an answer's body is delimited on the wire.
enum Out {
    /// No body (an answer to `HEAD`, a 1xx, 204 or 304).
    None,
    /// This many bytes are still to be written.
    Length(u64),
    Chunked,
    /// To the close.
    Close,
}

/// Writes `answer` (its body as it arrives); whether the connection can take another request,
/// which it can only if `keep` and the body was written to its end as framed.
/// Writes `answer`; `stall` is how long the client may go without taking any of it.
async fn answer_with(
    io: &mut TcpStream,
    out: &mut Batch,
    answer: Response<ProxyBody>,
    version: Version,
    head_only: bool,
    keep: bool,
    stall: Duration,
) -> io::Result<bool> {
    let (parts, mut body) = answer.into_parts();
    let status = parts.status;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| decimal(v.as_bytes()));
    let exact = body.size_hint().exact();
    let bodiless = head_only
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let mut framing = if bodiless {
        Out::None
    } else if let Some(n) = exact.or(declared) {
        Out::Length(n)
    } else if version == Version::HTTP_11 {
        Out::Chunked
    } else {
        Out::Close
    };
    let keep = keep && !matches!(framing, Out::Close);
    out.clear();
    out.small(if version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.small(status.as_str().as_bytes());
    out.small(b" ");
    out.small(status.canonical_reason().unwrap_or("").as_bytes());
    out.small(b"\r\n");
    for (name, value) in &parts.headers {
        let framing_header = name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
            || (name == header::CONTENT_LENGTH && (!bodiless || status == StatusCode::NO_CONTENT));
        if !framing_header {
            out.small(name.as_str().as_bytes());
            out.small(b": ");
            out.small(value.as_bytes());
            out.small(b"\r\n");
        }
    }
    match framing {
        Out::Length(n) => out.length(n),
        Out::Chunked => out.small(b"transfer-encoding: chunked\r\n"),
        Out::None if head_only && declared.is_none() => {
            if let Some(n) = exact {
                out.length(n);
            }
        }
        Out::None | Out::Close => {}
    }
    if !keep {
        out.small(b"connection: close\r\n");
    } else if version == Version::HTTP_10 {
        out.small(b"connection: keep-alive\r\n");
    }
    if !parts.headers.contains_key(header::DATE) {
        out.small(b"date: ");
        date(out);
        out.small(b"\r\n");
    }
    out.small(b"\r\n");
    if matches!(framing, Out::None) {
        // The body is dropped unread: a metered stream is finished by its drop.
        drop(body);
        out.write(io, stall).await?;
        return Ok(keep);
    }
    loop {
        let ended = std::future::poll_fn(|cx| {
            loop {
                match Pin::new(&mut body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data()
                            && !out.data(&mut framing, data)
                        {
                            // More than the length it was given: the answer is cut there.
                            return Poll::Ready(Err(()));
                        }
                        if out.len() >= BATCH {
                            return Poll::Ready(Ok(false));
                        }
                    }
                    Poll::Ready(Some(Err(_))) => return Poll::Ready(Err(())),
                    Poll::Ready(None) => return Poll::Ready(Ok(true)),
                    Poll::Pending if out.is_empty() => return Poll::Pending,
                    Poll::Pending => return Poll::Ready(Ok(false)),
                }
            }
        })
        .await;
        match ended {
            Ok(false) => out.write(io, stall).await?,
            Ok(true) => {
                let whole = match framing {
                    Out::Length(left) => left == 0,
                    Out::Chunked => {
                        out.small(b"0\r\n\r\n");
                        true
                    }
                    Out::None | Out::Close => true,
                };
                drop(body);
                out.write(io, stall).await?;
                return Ok(keep && whole);
            }
            // A body that failed (or overran its length) ends the connection without the
            // chunked end, so the client sees the answer cut off rather than complete.
            Err(()) => {
                drop(body);
                out.write(io, stall).await?;
                return Ok(false);
            }
        }
    }
}

/// What is to be written next: the answer's head and framing, copied together, and its
/// larger pieces of data, written from where they lie.
#[derive(Default)]
struct Batch {
    small: Vec<u8>,
    parts: Vec<Part>,
    len: usize,
}

enum Part {
    Small(Range<usize>),
    Data(Bytes),
}

impl Batch {
    fn clear(&mut self) {
        self.small.clear();
        self.parts.clear();
        self.len = 0;
    }

    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn small(&mut self, bytes: &[u8]) {
        let from = self.small.len();
        self.small.extend_from_slice(bytes);
        let to = self.small.len();
        match self.parts.last_mut() {
            Some(Part::Small(r)) if r.end == from => r.end = to,
            _ => self.parts.push(Part::Small(from..to)),
        }
        self.len += bytes.len();
    }

    fn length(&mut self, n: u64) {
        self.small(b"content-length: ");
        self.number(n, 10);
        self.small(b"\r\n");
    }

    /// `n` in base 10 or 16 (lowercase).
    fn number(&mut self, n: u64, base: u64) {
        self.small(digits(n, base, &mut [0; 20]));
    }

    /// One piece of the body, framed; false if it overruns the answer's length.
    fn data(&mut self, framing: &mut Out, mut data: Bytes) -> bool {
        if data.is_empty() {
            return true;
        }
        let mut fits = true;
        match framing {
            Out::Length(left) => {
                if data.len() as u64 > *left {
                    data.truncate(*left as usize);
                    fits = false;
                }
                *left -= data.len() as u64;
            }
            Out::Chunked => {
                self.number(data.len() as u64, 16);
                self.small(b"\r\n");
            }
            Out::None | Out::Close => {}
        }
        let n = data.len();
        if n <= COPY_UP_TO {
            self.small(&data);
        } else {
            self.parts.push(Part::Data(data));
            self.len += n;
        }
        if matches!(framing, Out::Chunked) {
            self.small(b"\r\n");
        }
        fits
    }

    /// Writes everything, then empties the batch.
    /// Writes the batch. A client that takes none of it for `stall` (its socket's buffer full
    /// all that time) is given up on: a timer is made only once a write would wait.
    async fn write(&mut self, io: &mut TcpStream, stall: Duration) -> io::Result<()> {
        let mut slices: Vec<IoSlice<'_>> = self
            .parts
            .iter()
            .map(|p| match p {
                Part::Small(r) => IoSlice::new(&self.small[r.clone()]),
                Part::Data(d) => IoSlice::new(d),
            })
            .collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            match io.try_write_vectored(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    tokio::time::timeout(stall, io.writable())
                        .await
                        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
                }
                Err(e) => return Err(e),
            }
        }
        drop(slices);
        self.clear();
        Ok(())
    }
}

/// The `Date` of an answer, made once a second per thread.
fn date(out: &mut Batch) {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static NOW: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    NOW.with_borrow_mut(|(at, text)| {
        if *at != secs || text.is_empty() {
            *text = httpdate::fmt_http_date(now);
            *at = secs;
        }
        out.small(text.as_bytes());
    });
}

/// A connection handed to hyper with the bytes already read from it: they are read again
/// first.
pub(super) struct Rewind {
    pre: Bytes,
    io: TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.pre.is_empty() {
            let n = self.pre.len().min(buf.remaining());
            buf.put_slice(&self.pre[..n]);
            self.pre.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
