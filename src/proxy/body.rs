//! The response body the agent reads: upstream frames passed through as they arrive, a
//! [`Meter`] watching them, and a callback with the outcome once the body ends.
//!
//! If the agent goes away before the end, the rest of the upstream body is drained in the
//! background for up to [`DRAIN_LIMIT`] so the usage the provider reports is still recorded.
//!
//! A stopping proxy hands each body its [`Stop`]: once the shutdown grace is over, a stream
//! still running (or still being drained) ends at once and is recorded as interrupted, with
//! whatever usage it had reported by then.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use super::lifecycle::Stop;
use super::meter::{Meter, Usage};
use super::scrub::Scrub;
use crate::providers::ApiFamily;

/// How long an abandoned stream is read on to learn its usage.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// The upstream's response body.
pub type Upstream = crate::upstream::conns::Answer;

/// How a response body ended.
#[derive(Debug, Clone, Default)]
pub struct Finished {
    pub usage: Option<Usage>,
    /// The provider sent its terminal event (or a complete JSON body).
    pub completed: bool,
    /// The upstream failed mid-body (reset, timeout).
    pub error: Option<String>,
    /// The agent stopped reading before the end.
    pub client_gone: bool,
    /// The proxy stopped, after its shutdown grace, before the body ended.
    pub interrupted: bool,
    /// The body was one JSON answer, not events, and any usage in it was read: the shape of
    /// a provider's refusal before it runs the model, which only such an answer is taken for
    /// (an error status with events, or with a count that does not read, may have run it).
    pub one_answer: bool,
}

type Done = Box<dyn FnOnce(Finished) + Send>;

/// The body of a response: either a fixed buffer or a metered upstream stream.
pub enum ProxyBody {
    Full(Option<Bytes>),
    Stream(Box<MeteredStream>),
}

impl From<Bytes> for ProxyBody {
    fn from(b: Bytes) -> Self {
        ProxyBody::Full(Some(b))
    }
}

pub struct MeteredStream {
    upstream: Option<Upstream>,
    meter: Meter,
    api: ApiFamily,
    sse: bool,
    idle: Duration,
    /// How long the upstream may stay silent ([`Self::idle`] from its last piece): armed the
    /// first time it has nothing ready, so an answer that comes whole with its head never
    /// needs one.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    tail: Option<Bytes>,
    done: Option<Done>,
    /// Set by the server: tells when the proxy's shutdown grace is over.
    stop: Option<Stop>,
    cut: Option<Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
    /// Kept alive as long as this body (the server counts a connection's open responses).
    held: Option<std::sync::Arc<()>>,
    /// The connection's slot and the request's place in its lineage's share: kept as long
    /// as this body, and by its drain when the client leaves before the end, so that the
    /// streams clients abandon count against `max_connections` and the key's share.
    kept: Option<Kept>,
    /// Takes the root key out of what goes to the client.
    scrub: Option<Scrub>,
    /// The outcome is recorded before the body's last bytes go out, not after
    /// ([`Self::settle_before_end`]).
    record_first: bool,
}

impl MeteredStream {
    pub fn new(
        upstream: Upstream,
        meter: Meter,
        api: ApiFamily,
        sse: bool,
        idle: Duration,
        done: impl FnOnce(Finished) + Send + 'static,
    ) -> Self {
        Self {
            upstream: Some(upstream),
            meter,
            api,
            sse,
            idle,
            sleep: None,
            tail: None,
            done: Some(Box::new(done)),
            stop: None,
            cut: None,
            held: None,
            kept: None,
            scrub: None,
            record_first: false,
        }
    }

    /// Records the outcome before the client has the body's end: for a request that holds a
    /// budget's reservation, whose settlement must be on its way to the ledger before the
    /// agent can send its next request (which waits for it: `WriterHandle::wait_settled`).
    /// The record's work (a JSON body's usage parse, the row) then comes before the last
    /// bytes, a few microseconds.
    pub fn settle_before_end(mut self) -> Self {
        self.record_first = true;
        self
    }

    /// Passes what goes to the client through `scrub`.
    pub fn scrubbed(mut self, scrub: Scrub) -> Self {
        self.scrub = Some(scrub);
        self
    }

    /// Keeps `token` alive until this body is dropped.
    pub fn hold(&mut self, token: std::sync::Arc<()>) {
        self.held = Some(token);
    }

    /// Keeps the request's place in its lineage's share until this body and its drain end.
    pub fn keep_place(&mut self, place: super::state::Place) {
        self.kept.get_or_insert_with(Kept::default).place = Some(place);
    }

    /// Keeps the connection's slot until this body and its drain end.
    pub fn keep_slot(&mut self, slot: std::sync::Arc<tokio::sync::OwnedSemaphorePermit>) {
        self.kept.get_or_insert_with(Kept::default).slot = Some(slot);
    }

    /// Ends this body when `stop` is cut (and keeps the stopping proxy waiting while it runs).
    pub fn stop_on(&mut self, stop: Stop) {
        self.cut = Some(Box::pin(stop.cut()));
        self.stop = Some(stop);
    }

    fn finish(&mut self, error: Option<String>) {
        self.finish_as(error, false);
    }

    /// Ends the body. What only the record needs (a JSON body's usage parse, the request's
    /// row, its settlement and alerts) runs after the last bytes have gone to the client, not
    /// before: see [`after_response`].
    fn finish_as(&mut self, error: Option<String>, interrupted: bool) {
        self.upstream = None;
        let stop = self.stop.take();
        let Some(done) = self.done.take() else {
            return;
        };
        let mut outcome = Finished {
            error,
            interrupted,
            ..Finished::default()
        };
        if self.sse {
            // An unterminated last event is still to be sent (or held back): parsed now.
            let (tail, usage) = self.meter.finish();
            if !tail.is_empty() {
                self.tail = Some(tail);
            }
            self.scrub_tail();
            if self.scrub.as_ref().is_some_and(Scrub::stopped) && outcome.error.is_none() {
                // The held-back last event was where the text stopped being UTF-8.
                self.tail = Some(super::errors::stream_error_event(self.api, NOT_UTF8));
                outcome.error = Some(NOT_UTF8.into());
            }
            outcome.usage = usage;
            outcome.completed = self.meter.completed;
            record(self.record_first, stop, move || done(outcome));
        } else {
            self.scrub_tail();
            if self.scrub.as_ref().is_some_and(Scrub::stopped) && outcome.error.is_none() {
                outcome.error = Some(NOT_UTF8.into());
            }
            let mut meter = std::mem::replace(&mut self.meter, Meter::new(self.api, false, false));
            record(self.record_first, stop, move || {
                let (_, usage) = meter.finish();
                outcome.usage = usage;
                outcome.completed = meter.completed;
                outcome.one_answer = !meter.usage_unreadable();
                done(outcome);
            });
        }
    }

    /// Puts what the scrub held back before the body's last piece, and scrubs that piece.
    fn scrub_tail(&mut self) {
        if let Some(scrub) = self.scrub.as_mut() {
            let rest = scrub.finish(self.tail.take());
            if !rest.is_empty() {
                self.tail = Some(rest);
            }
        }
    }

    /// Fails the body after the upstream broke: SSE gets an error event in the provider's
    /// format and a clean end; other bodies end with an error (the connection is cut).
    fn fail(&mut self, message: String) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.fail_as(message, false)
    }

    fn fail_as(
        &mut self,
        message: String,
        interrupted: bool,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let event = super::errors::stream_error_event(self.api, &message);
        self.finish_as(Some(message.clone()), interrupted);
        if self.sse {
            Poll::Ready(Some(Ok(Frame::data(event))))
        } else {
            Poll::Ready(Some(Err(std::io::Error::other(message))))
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            ProxyBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Stream(s) => s.poll_next_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full(b) => b.is_none(),
            ProxyBody::Stream(s) => s.upstream.is_none() && s.tail.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ProxyBody::Full(None) => SizeHint::with_exact(0),
            ProxyBody::Stream(_) => SizeHint::default(),
        }
    }
}

/// Why an answer of text was cut off at a NUL byte ([`Scrub::stopped`]).
const NOT_UTF8: &str = "the upstream's text answer is not UTF-8 (it holds a NUL byte, as UTF-16 and UTF-32 do), so till cannot check it for the root key; it was cut off there";

impl MeteredStream {
    fn poll_next_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        loop {
            let Some(upstream) = self.upstream.as_mut() else {
                return Poll::Ready(self.tail.take().map(|t| Ok(Frame::data(t))));
            };
            match Pin::new(&mut *upstream).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(chunk) = frame.into_data() else {
                        // Trailers: nothing to forward or meter.
                        continue;
                    };
                    // The upstream's body knows when it has all of a body with a length: finish
                    // now rather than after the server has dropped this body (which would leave
                    // the rest to a drain task).
                    let ended = upstream.is_end_stream();
                    if let Some(sleep) = self.sleep.as_mut() {
                        sleep
                            .as_mut()
                            .reset(tokio::time::Instant::now() + self.idle);
                    }
                    let mut out = self.meter.feed(chunk);
                    if let Some(scrub) = self.scrub.as_mut() {
                        out = scrub.pass(out);
                        if scrub.stopped() {
                            // This piece is left out whole (what came before its NUL is no
                            // UTF-8 text either); the break is said instead.
                            return self.fail(NOT_UTF8.into());
                        }
                    }
                    if ended {
                        self.finish(None);
                        if out.is_empty() {
                            return Poll::Ready(self.tail.take().map(|t| Ok(Frame::data(t))));
                        }
                    } else if out.is_empty() {
                        continue;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
                Poll::Ready(Some(Err(e))) => {
                    return self.fail(format!(
                        "the upstream connection failed mid-response ({})",
                        short(&e)
                    ));
                }
                Poll::Ready(None) => {
                    self.finish(None);
                    return Poll::Ready(self.tail.take().map(|t| Ok(Frame::data(t))));
                }
                Poll::Pending => {
                    if self
                        .cut
                        .as_mut()
                        .is_some_and(|c| c.as_mut().poll(cx).is_ready())
                    {
                        return self.fail_as(
                            "till is shutting down and cut this response off".to_string(),
                            true,
                        );
                    }
                    // Armed at the first wait: the upstream's last piece (or its head) was
                    // taken just now, so the silence is counted from here.
                    let idle = self.idle;
                    let sleep = self
                        .sleep
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                    if sleep.as_mut().poll(cx).is_ready() {
                        let secs = self.idle.as_secs();
                        return self.fail(format!("the upstream sent nothing for {secs} s"));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

use std::future::Future as _;

/// Runs `work` at once when `first` ([`MeteredStream::settle_before_end`]), else after the
/// response ([`after_response`]).
fn record(first: bool, stop: Option<Stop>, work: impl FnOnce() + Send + 'static) {
    if first {
        work();
    } else {
        after_response(stop, work);
    }
}

/// Runs `record` as a task of its own on this runtime, holding `stop` until it has run (so a
/// stopping proxy waits for it as it waits for a body); without a runtime, at once.
///
/// A body ends inside the server's write loop, which polls it again for its end before it
/// writes what it has gathered: work done there (about 17,000 instructions to parse a JSON body's usage, build
/// the ledger row and watch for alerts) would come before the client's last bytes are sent.
/// As a task it runs after this connection's poll, once the bytes are in the socket.
fn after_response(stop: Option<Stop>, record: impl FnOnce() + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn(async move {
                record();
                drop(stop);
            });
        }
        Err(_) => record(),
    }
}

/// The upstream error and its causes, at most 120 bytes (they carry no URL).
fn short(e: &std::io::Error) -> String {
    use std::error::Error as _;
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(c) = cur {
        parts.push(c.to_string());
        cur = c.source();
    }
    let mut msg = parts.join(": ");
    let cut = crate::format::head(&msg, 120).len();
    msg.truncate(cut);
    msg
}

/// What a body keeps of its connection and its lineage's share ([`MeteredStream::keep_slot`]).
#[derive(Default)]
struct Kept {
    slot: Option<std::sync::Arc<tokio::sync::OwnedSemaphorePermit>>,
    place: Option<super::state::Place>,
}

impl Drop for MeteredStream {
    fn drop(&mut self) {
        let (Some(done), Some(mut upstream)) = (self.done.take(), self.upstream.take()) else {
            return;
        };
        let kept = self.kept.take();
        let mut meter = std::mem::replace(&mut self.meter, Meter::new(self.api, false, false));
        let stop = self.stop.take();
        if stop.as_ref().is_some_and(Stop::is_cut) {
            // Dropped by a proxy whose grace is over: there is no time left to drain.
            let (_, usage) = meter.finish();
            done(Finished {
                usage,
                completed: meter.completed,
                interrupted: true,
                ..Finished::default()
            });
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            let (_, usage) = meter.finish();
            done(Finished {
                usage,
                completed: false,
                error: None,
                client_gone: true,
                interrupted: false,
                one_answer: false,
            });
            return;
        };
        handle.spawn(async move {
            use http_body_util::BodyExt as _;
            // The server drops a body with a known length once it has sent that many bytes, so
            // a drop is not always a departed client: it is one only if more bytes were coming.
            let mut extra = 0usize;
            let drain = async {
                while let Some(Ok(frame)) = upstream.frame().await {
                    if let Ok(chunk) = frame.into_data() {
                        extra += chunk.len();
                        meter.feed(chunk);
                    }
                }
            };
            // The drain holds `stop`, so a stopping proxy waits for it within its grace.
            let cut = async {
                match &stop {
                    Some(s) => s.cut().await,
                    None => std::future::pending().await,
                }
            };
            // A stream still going when the drain gives up is not complete, whatever it said
            // before: a Gemini answer of several candidates says `finishReason` for the first
            // while the others go on.
            let (drained, interrupted) = tokio::select! {
                ended = tokio::time::timeout(DRAIN_LIMIT, drain) => (ended.is_ok(), false),
                () = cut => (false, true),
            };
            let (_, usage) = meter.finish();
            done(Finished {
                usage,
                completed: meter.completed && drained,
                error: None,
                client_gone: extra > 0 && !interrupted,
                interrupted,
                one_answer: false,
            });
            drop(stop);
            drop(kept);
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// A stream whose agent hung up is drained for [`DRAIN_LIMIT`]; one still going then is not
    /// complete, whatever end it announced before (a Gemini answer of several candidates says
    /// `finishReason` for the first while the others go on), so it is charged at least its
    /// reservation. One that ends within the limit is complete.
    #[tokio::test(start_paused = true)]
    async fn a_stream_still_going_when_the_drain_gives_up_is_not_complete() {
        for ends in [false, true] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            tokio::spawn(async move {
                let (mut tcp, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let _ = tcp.read(&mut buf).await;
                let event = "data: {\"candidates\":[{\"index\":0,\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":4,\"candidatesTokenCount\":6}}\r\n\r\n";
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                let chunk = format!("{:x}\r\n{event}\r\n", event.len());
                tcp.write_all(format!("{head}{chunk}").as_bytes())
                    .await
                    .unwrap();
                if ends {
                    tcp.write_all(b"0\r\n\r\n").await.unwrap();
                }
                // The other candidates go on (or the connection just stays open).
                let _ = tcp.read(&mut buf).await;
            });
            let none = std::iter::empty::<(&http::HeaderName, &http::HeaderValue)>;
            let answer = crate::upstream::conns::send(
                http::Method::POST,
                &format!("http://127.0.0.1:{port}"),
                "/v1beta/models/m:streamGenerateContent?alt=sse",
                none,
                Bytes::from_static(b"{}"),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
            let outcome: Arc<Mutex<Option<Finished>>> = Arc::default();
            let seen = Arc::clone(&outcome);
            let mut body = MeteredStream::new(
                answer.into_body(),
                Meter::new(ApiFamily::Gemini, true, false),
                ApiFamily::Gemini,
                true,
                Duration::from_secs(600),
                move |f| *seen.lock().unwrap() = Some(f),
            );
            // The agent reads the first event and hangs up.
            let first = std::future::poll_fn(|cx| body.poll_next_frame(cx)).await;
            assert!(first.is_some_and(|f| f.is_ok()));
            drop(body);
            tokio::time::sleep(DRAIN_LIMIT + Duration::from_secs(1)).await;
            let finished = outcome.lock().unwrap().take().expect("the drain finished");
            assert_eq!(finished.completed, ends, "{finished:?}");
            assert_eq!(finished.usage.map(|u| u.output_tokens), Some(6));
        }
    }
}
