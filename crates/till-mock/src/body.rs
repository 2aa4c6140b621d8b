//! Response bodies: a whole JSON body, or a stream of pre-rendered SSE events handed to hyper
//! one frame at a time, with an optional delay between frames, an optional abrupt cut, and a
//! line in the events file per frame; or an `endless` event made up as it is sent.
//!
//! hyper's HTTP/1 writer takes a frame, buffers it, and asks the body for the next one at once;
//! when the body is not ready it writes its buffer to the socket. So when hyper polls for frame
//! I+1, frame I has been taken and is about to hit the socket: that is where the events line for
//! frame I is written, which puts it in the events file before any reader can have received the
//! chunk, and (with a delay) well before chunk I+1 is sent.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use super::state::EventLog;

/// How long a cut stream waits after its last frame before it breaks the connection, so that
/// hyper writes what it has buffered first.
const CUT_GRACE: Duration = Duration::from_millis(20);

/// The error a cut stream ends with; hyper closes the connection when it sees it.
#[derive(Debug, thiserror::Error)]
#[error("the mock cut this response off on purpose")]
pub struct Cut;

/// How a stream is paced and broken.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pacing {
    /// Time between frames (the first frame goes out at once).
    pub delay: Duration,
    /// Break the connection after this many frames.
    pub cut_after: Option<usize>,
    /// Where to log each frame.
    pub events: Option<Arc<EventLog>>,
}

/// The body of every mock response.
pub struct MockBody {
    kind: Kind,
}

enum Kind {
    Full(Option<Bytes>),
    Stream(Box<FrameStream>),
    /// `data: ` and then this many more bytes of filler, made as they are sent.
    Endless {
        started: bool,
        left: usize,
    },
}

/// What an endless body is made of, one frame at a time.
static FILLER: [u8; 64 * 1024] = [b'x'; 64 * 1024];

struct FrameStream {
    frames: Vec<Bytes>,
    next: usize,
    logged: usize,
    pacing: Pacing,
    sleep: Option<Pin<Box<Sleep>>>,
    cutting: bool,
}

impl MockBody {
    /// A complete body.
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        Self {
            kind: Kind::Full(Some(bytes.into())),
        }
    }

    /// `data: ` and `len` bytes of filler, never a line end.
    pub(crate) fn endless(len: usize) -> Self {
        Self {
            kind: Kind::Endless {
                started: false,
                left: len,
            },
        }
    }

    /// A body sent as `frames`, one HTTP chunk each.
    pub(crate) fn stream(frames: Vec<Bytes>, pacing: Pacing) -> Self {
        Self {
            kind: Kind::Stream(Box::new(FrameStream {
                frames,
                next: 0,
                logged: 0,
                pacing,
                sleep: None,
                cutting: false,
            })),
        }
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = Cut;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Cut>>> {
        match &mut self.get_mut().kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream(stream) => stream.poll_next(cx),
            Kind::Endless { started, left } => {
                if !*started {
                    *started = true;
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"data: ")))));
                }
                if *left == 0 {
                    return Poll::Ready(None);
                }
                let n = (*left).min(FILLER.len());
                *left -= n;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&FILLER[..n])))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.kind, Kind::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Stream(_) | Kind::Endless { .. } => SizeHint::default(),
        }
    }
}

impl FrameStream {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Cut>>> {
        // Being polled again means hyper has taken every frame handed out so far.
        self.log_taken();
        loop {
            if let Some(sleep) = &mut self.sleep {
                ready!(sleep.as_mut().poll(cx));
                self.sleep = None;
                if self.cutting {
                    return Poll::Ready(Some(Err(Cut)));
                }
            }
            if self.next >= self.frames.len() {
                return Poll::Ready(None);
            }
            if self.pacing.cut_after == Some(self.next) {
                // Let hyper flush the frames it holds (it does so while we are pending), then
                // fail the body, which makes hyper drop the connection mid-response.
                self.cutting = true;
                self.sleep = Some(Box::pin(tokio::time::sleep(CUT_GRACE)));
                continue;
            }
            let frame = std::mem::take(&mut self.frames[self.next]);
            self.next += 1;
            if !self.pacing.delay.is_zero() && self.next < self.frames.len() {
                self.sleep = Some(Box::pin(tokio::time::sleep(self.pacing.delay)));
            }
            return Poll::Ready(Some(Ok(Frame::data(frame))));
        }
    }

    fn log_taken(&mut self) {
        if let Some(events) = &self.pacing.events {
            let total = self.frames.len();
            for index in self.logged + 1..=self.next {
                events.chunk_sent(index, total);
            }
        }
        self.logged = self.next;
    }
}
