//! The serve loops of one proxy (one per thread, see `till serve`) sharing out its
//! connections.
//!
//! Every loop accepts from the same listening socket, and the kernel wakes whichever loop it
//! likes: a client that opens many connections at once found them all taken by the loop that
//! was awake, which then served them on one core while the other threads idled (measured:
//! 32 connections on one thread of two in half the closed-loop runs, 36,000 requests a second
//! against 47,000 when they were split). So each loop counts the connections it serves, and
//! one that accepts a connection while another serves fewer hands it to that one.
//! A connection moves once, before its first byte is read; its requests then stay on the
//! thread that serves it, with that thread's upstream connections.
//!
//! The kernel's own sharing (`SO_REUSEPORT`, one socket per thread) is not used: it would let
//! any other process of the same user bind the proxy's port too and take a share of the
//! agents' connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// A connection accepted by one loop and handed to another, with its `max_connections` slot.
pub(super) struct Handed {
    pub stream: std::net::TcpStream,
    pub peer: SocketAddr,
    pub slot: OwnedSemaphorePermit,
}

/// What every loop of a proxy shares: how many connections each serves, and where to hand
/// each one a connection.
struct Crew {
    open: Vec<AtomicUsize>,
    inboxes: Vec<UnboundedSender<Handed>>,
}

/// One serve loop's place in its [`Crew`].
pub struct Seat {
    index: usize,
    crew: Arc<Crew>,
    inbox: UnboundedReceiver<Handed>,
}

/// Places for `n` serve loops that share out their connections.
pub fn seats(n: usize) -> Vec<Seat> {
    let (inboxes, receivers): (Vec<_>, Vec<_>) = (0..n).map(|_| unbounded_channel()).unzip();
    let crew = Arc::new(Crew {
        open: (0..n).map(|_| AtomicUsize::new(0)).collect(),
        inboxes,
    });
    receivers
        .into_iter()
        .enumerate()
        .map(|(index, inbox)| Seat {
            index,
            crew: crew.clone(),
            inbox,
        })
        .collect()
}

/// Counts one connection of a loop for as long as it is held.
pub(super) struct Counted {
    crew: Arc<Crew>,
    index: usize,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.crew.open[self.index].fetch_sub(1, Ordering::Relaxed);
    }
}

impl Seat {
    /// The next connection another loop handed to this one.
    pub(super) async fn handed(&mut self) -> Option<Handed> {
        self.inbox.recv().await
    }

    /// The loop that should serve a connection this one has just accepted: `None` for this
    /// one, else another that serves fewer connections, already counted for it.
    pub(super) fn pick(&self) -> Option<usize> {
        let open = &self.crew.open;
        let mine = open[self.index].load(Ordering::Relaxed);
        let (fewest, count) = open
            .iter()
            .enumerate()
            .map(|(i, n)| (i, n.load(Ordering::Relaxed)))
            .min_by_key(|&(_, n)| n)?;
        if count >= mine {
            return None;
        }
        open[fewest].fetch_add(1, Ordering::Relaxed);
        Some(fewest)
    }

    /// Hands a connection to the loop [`Self::pick`] chose for it. Gives it back when that
    /// loop has stopped; one that cannot leave this loop's reactor is closed (and not counted).
    pub(super) fn hand(
        &self,
        to: usize,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        slot: OwnedSemaphorePermit,
    ) -> Option<(tokio::net::TcpStream, SocketAddr, OwnedSemaphorePermit)> {
        let uncount = || self.crew.open[to].fetch_sub(1, Ordering::Relaxed);
        let Ok(stream) = stream.into_std() else {
            uncount();
            return None;
        };
        let back = self.crew.inboxes[to]
            .send(Handed { stream, peer, slot })
            .err()?
            .0;
        uncount();
        let stream = tokio::net::TcpStream::from_std(back.stream).ok()?;
        Some((stream, back.peer, back.slot))
    }

    /// Counts a connection this loop serves: one it kept (`handed` false) is counted here;
    /// one handed to it was counted by the loop that handed it over.
    pub(super) fn count(&self, handed: bool) -> Counted {
        if !handed {
            self.crew.open[self.index].fetch_add(1, Ordering::Relaxed);
        }
        Counted {
            crew: self.crew.clone(),
            index: self.index,
        }
    }

    /// How many connections each loop serves, asked at any time.
    #[cfg(test)]
    fn tally(&self) -> impl Fn() -> Vec<usize> + use<> {
        let crew = self.crew.clone();
        move || {
            crew.open
                .iter()
                .map(|n| n.load(Ordering::Relaxed))
                .collect()
        }
    }
}

#[cfg(test)]
mod tests;
