//! A client's WebSocket message while it arrives: its bytes are held in the WebSocket's
//! buffers (up to `[proxy] max_body_bytes` a message), so they are counted against the proxy's
//! shared allowance for bodies being read ([`State::bodies`](super::super::state::State)), and
//! against the share of it the key's lineage may hold, as an HTTP body's are, and the message
//! must be whole within `body_timeout` of its first byte.
//! Without both, sockets that each sent most of a large message and then only pings held the
//! proxy's memory (32 MiB a socket by default) for as long as they liked.
//!
//! A message read whole leaves the room it took in the socket's buffers (the WebSocket library
//! keeps a read buffer as large as the largest frame, and a write buffer as large as the
//! largest message written): twice the largest message each way stays counted until the
//! socket closes ([`Arriving::largest`]), or one refused message a socket would hold 32 MiB
//! for as long as it stayed open.
//!
//! [`Counted`] wraps the client's connection and counts what is read from it; the relay says
//! when a message is whole ([`Arriving::whole`]) or a control frame was read
//! ([`Arriving::control`]), which gives those bytes back. What is read of the next message
//! together with the end of one is given back with it: at most the WebSocket's read buffer
//! ([`READ_BUFFER`]) goes uncounted.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Duration, Instant, Sleep};

use crate::childkey::Binding;
use crate::proxy::state::{NoRoom, State};

/// The client WebSocket's read buffer: what may go uncounted of a message's start.
pub(super) const READ_BUFFER: usize = 16 * 1024;

/// The bytes of the message arriving now, and since when it has been arriving; and the room
/// the socket keeps for its largest messages, all counted for the lineage of the socket's key.
#[derive(Debug)]
pub(super) struct Arriving {
    /// The binding of the first level of the key the socket opened with.
    lineage: Binding,
    bytes: AtomicU64,
    /// Milliseconds from `base` to the message's first byte, plus one (0: none arriving).
    since: AtomicU64,
    /// The largest message each way so far (client's, provider's), counted for the socket's
    /// life: the WebSocket library keeps a buffer as large as the largest frame it read, and
    /// the other side's write buffer grows as large as the largest message written to it.
    largest: [AtomicU64; 2],
}

/// Which way a message went, for [`Arriving::largest`].
#[derive(Debug, Clone, Copy)]
pub(super) enum Way {
    FromClient = 0,
    FromProvider = 1,
}

impl Arriving {
    /// Nothing arriving yet on a socket opened with a key of `lineage` (its
    /// [`root_binding`](crate::childkey::Verified::root_binding)).
    pub(super) fn new(lineage: Binding) -> Self {
        Self {
            lineage,
            bytes: AtomicU64::new(0),
            since: AtomicU64::new(0),
            largest: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    /// The binding of the first level of the socket's key.
    pub(super) fn lineage(&self) -> Binding {
        self.lineage
    }

    /// Gives `n` bytes back to the bodies' room.
    fn give(&self, state: &State, n: u64) {
        state.bodies.give(self.lineage, n);
    }

    /// A message (or a close) was read whole: its bytes are given back.
    pub(super) fn whole(&self, state: &State) {
        let n = self.bytes.swap(0, Ordering::AcqRel);
        self.since.store(0, Ordering::Release);
        self.give(state, n);
    }

    /// A message of `len` bytes went `way`: the socket's buffers now hold room for it (read
    /// on one side, written on the other), which stays counted until the socket closes. An
    /// error when the bodies' shared room, or the key's share of it, cannot hold it: the socket
    /// is to be closed.
    pub(super) fn largest(&self, state: &State, way: Way, len: usize) -> Result<(), NoRoom> {
        let room = 2 * len as u64;
        let slot = &self.largest[way as usize];
        let kept = slot.load(Ordering::Acquire);
        if room <= kept {
            return Ok(());
        }
        state.bodies.take(self.lineage, room - kept)?;
        slot.store(room, Ordering::Release);
        Ok(())
    }

    /// A control frame with `payload` bytes was read (a client's frames are masked): its bytes
    /// are given back; the message it came in the middle of, if any, goes on arriving.
    pub(super) fn control(&self, state: &State, payload: usize) {
        let frame = 2 + 4 + payload as u64 + if payload > 125 { 2 } else { 0 };
        let before = self
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                Some(b.saturating_sub(frame))
            })
            .unwrap_or(0);
        let given = before.min(frame);
        if before == given {
            self.since.store(0, Ordering::Release);
        }
        self.give(state, given);
    }
}

/// The client's connection, counting what is read from it into an [`Arriving`].
pub(super) struct Counted<T> {
    io: T,
    state: Arc<State>,
    arriving: Arc<Arriving>,
    /// The times in `Arriving::since` count from here.
    base: Instant,
    /// The end of `body_timeout` for the message arriving, once it has begun.
    deadline: Option<(u64, Pin<Box<Sleep>>)>,
}

impl<T> Counted<T> {
    pub(super) fn new(io: T, state: Arc<State>, arriving: Arc<Arriving>) -> Self {
        Self {
            io,
            state,
            arriving,
            base: Instant::now(),
            deadline: None,
        }
    }

    fn limit(&self) -> Duration {
        self.state.options.body_timeout
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = read {
            let n = (buf.filled().len() - before) as u64;
            if n > 0 {
                if let Err(why) = this.state.bodies.take(this.arriving.lineage, n) {
                    return Poll::Ready(Err(io::Error::other(match why {
                        NoRoom::All => "the bodies being read at once hold all till allows",
                        NoRoom::Lineage => {
                            "the bodies this key's lineage is sending hold all till allows one key"
                        }
                    })));
                }
                let was = this.arriving.bytes.fetch_add(n, Ordering::AcqRel);
                if was == 0 {
                    let at = this.base.elapsed().as_millis() as u64 + 1;
                    this.arriving.since.store(at, Ordering::Release);
                }
            }
        }
        // The message arriving must be whole within `body_timeout` of its first byte; the
        // timer wakes this task when it is not, whether or not more bytes come.
        let since = this.arriving.since.load(Ordering::Acquire);
        if since == 0 {
            this.deadline = None;
        } else {
            if this.deadline.as_ref().is_none_or(|(at, _)| *at != since) {
                let start = this.base + Duration::from_millis(since - 1);
                let sleep = tokio::time::sleep_until(start + this.limit());
                this.deadline = Some((since, Box::pin(sleep)));
            }
            if let Some((_, sleep)) = this.deadline.as_mut()
                && sleep.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "a WebSocket message did not arrive whole within body_timeout",
                )));
            }
        }
        ready!(read)?;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl<T> Drop for Counted<T> {
    /// What the socket still held is given back when it closes.
    fn drop(&mut self) {
        self.arriving.whole(&self.state);
        for slot in &self.arriving.largest {
            self.arriving
                .give(&self.state, slot.swap(0, Ordering::AcqRel));
        }
    }
}
