//! How the proxy's connections live and end: the stop signal with its grace, the pause after
//! a failed accept, and warnings that must not repeat once per connection.
//!
//! A stop runs in two steps. First every connection is told to finish what it is doing and
//! close (the stop is *closing*); everything that holds a [`Stop`] (connection tasks, response
//! bodies, bodies drained after their client left, upgraded WebSockets) is waited for until
//! the grace ends. Then the stop is *cut*: bodies still streaming end at once and are recorded
//! as interrupted, and what is left is dropped.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Held by everything a stopping proxy waits for; tells its holder when the grace is over.
#[derive(Debug, Clone)]
pub struct Stop {
    closing: watch::Receiver<bool>,
    cut: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
}

impl Stop {
    /// Resolves when the proxy begins to stop: finish what is under way, start nothing new.
    pub fn closing(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.closing.clone();
        async move {
            let _ = rx.wait_for(|closing| *closing).await;
        }
    }

    /// Whether the proxy has begun to stop.
    pub fn is_closing(&self) -> bool {
        *self.closing.borrow()
    }

    /// Whether the grace is over.
    pub fn is_cut(&self) -> bool {
        *self.cut.borrow()
    }

    /// Resolves when the grace is over (at once if it is already).
    pub fn cut(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.cut.clone();
        async move {
            // An error means the proxy is gone, which is a cut too.
            let _ = rx.wait_for(|cut| *cut).await;
        }
    }
}

/// The proxy's side of [`Stop`]: hands them out, cuts them, and waits for them to be dropped.
#[derive(Debug)]
pub struct Stopper {
    closing: watch::Sender<bool>,
    cut: watch::Sender<bool>,
    alive: Option<mpsc::Sender<()>>,
    gone: mpsc::Receiver<()>,
}

impl Default for Stopper {
    fn default() -> Self {
        let (alive, gone) = mpsc::channel(1);
        Self {
            closing: watch::Sender::new(false),
            cut: watch::Sender::new(false),
            alive: Some(alive),
            gone,
        }
    }
}

impl Stopper {
    /// A new holder. Once [`Stopper::wait`] has begun, new holders are not waited for.
    pub fn stop(&self) -> Stop {
        let alive = match &self.alive {
            Some(a) => a.clone(),
            None => mpsc::channel(1).0,
        };
        Stop {
            closing: self.closing.subscribe(),
            cut: self.cut.subscribe(),
            _alive: alive,
        }
    }

    /// Begins the stop: every holder is told to finish what it is doing and start nothing new.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Ends the grace: every holder is told to end now.
    pub fn cut(&self) {
        self.closing.send_replace(true);
        self.cut.send_replace(true);
    }

    /// Waits until every `Stop` handed out has been dropped, or `until`; whether all were.
    pub async fn wait(&mut self, until: Instant) -> bool {
        self.alive = None;
        // `recv` gives `None` once every sender is gone; nothing is ever sent.
        tokio::time::timeout_at(until, self.gone.recv())
            .await
            .is_ok()
    }
}

/// A person's second Ctrl-C (or SIGTERM) during the grace: what is still running is cut off
/// at once instead of after `shutdown_grace`. Process-wide: every proxy runtime of a
/// `till serve` waits on it.
static CUT_ASKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static CUT_NOTIFY: tokio::sync::Notify = tokio::sync::Notify::const_new();
/// Whether a stopping proxy has said what it waits for (once per process).
static SAID_WAITING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Ends the grace of every stopping proxy of this process now.
pub fn ask_cut() {
    CUT_ASKED.store(true, std::sync::atomic::Ordering::SeqCst);
    CUT_NOTIFY.notify_waiters();
}

/// Resolves once [`ask_cut`] was called (at once if it was).
pub async fn cut_asked() {
    loop {
        let notified = CUT_NOTIFY.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if CUT_ASKED.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        notified.await;
    }
}

/// Whether this is the first stopping proxy of the process to say what it waits for.
pub fn first_to_say_waiting() -> bool {
    !SAID_WAITING.swap(true, std::sync::atomic::Ordering::SeqCst)
}

/// Calls [`ask_cut`] at the next SIGINT or SIGTERM this process gets, from a thread of its
/// own (the commands' runtimes are busy waiting for the proxy). For `till run` and
/// `till serve` once their stop has begun.
pub fn cut_at_next_signal() {
    #[cfg(unix)]
    let _ = std::thread::Builder::new()
        .name("till-cut".into())
        .spawn(|| {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                use tokio::signal::unix::{SignalKind, signal};
                let (Ok(mut term), Ok(mut int)) = (
                    signal(SignalKind::terminate()),
                    signal(SignalKind::interrupt()),
                ) else {
                    return;
                };
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                ask_cut();
            });
        });
}

/// The pause after a failed `accept`, doubling from 10 ms to 1 s while failures go on, so a
/// proxy out of file descriptors waits for some to be freed instead of spinning on the error.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(10);
    pub const MAX: Duration = Duration::from_secs(1);

    /// The pause after `err`: none for errors that concern one connection only (the client
    /// reset it before it was accepted), else the next step of the back-off.
    pub fn after(&mut self, err: &std::io::Error) -> Duration {
        use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted};
        if matches!(
            err.kind(),
            ConnectionAborted | ConnectionReset | Interrupted
        ) {
            return Duration::ZERO;
        }
        let pause = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        pause
    }

    /// After a successful accept.
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

/// A warning given at most once per `every`, however often its cause happens.
#[derive(Debug, Clone)]
pub struct Notice {
    every: Duration,
    last: Option<Instant>,
}

impl Notice {
    pub fn every(every: Duration) -> Self {
        Self { every, last: None }
    }

    /// Whether to give the warning now (and if so, from now on not before `every` has passed).
    pub fn due(&mut self, now: Instant) -> bool {
        if self.last.is_some_and(|last| now < last + self.every) {
            return false;
        }
        self.last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_backoff_doubles_to_a_second_and_resets() {
        let mut b = Backoff::default();
        let emfile = std::io::Error::from_raw_os_error(24);
        let steps: Vec<u64> = (0..9)
            .map(|_| b.after(&emfile).as_millis() as u64)
            .collect();
        assert_eq!(steps, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionAborted);
        assert_eq!(b.after(&reset), Duration::ZERO);
        b.reset();
        assert_eq!(b.after(&emfile), Backoff::FIRST);
    }

    #[test]
    fn a_notice_is_given_once_per_period() {
        let mut n = Notice::every(Duration::from_secs(60));
        let t = Instant::now();
        assert!(n.due(t));
        assert!(!n.due(t + Duration::from_secs(1)));
        assert!(!n.due(t + Duration::from_secs(59)));
        assert!(n.due(t + Duration::from_secs(60)));
        assert!(!n.due(t + Duration::from_secs(61)));
    }

    #[tokio::test]
    async fn wait_ends_when_every_stop_is_dropped_or_at_the_deadline() {
        let mut s = Stopper::default();
        let a = s.stop();
        let b = a.clone();
        assert!(!a.is_cut());
        let soon = Instant::now() + Duration::from_millis(50);
        assert!(!s.wait(soon).await, "two holders are alive");
        drop(a);
        let waiter = tokio::spawn(async move {
            let cut = b.cut();
            cut.await;
            assert!(b.is_cut());
            drop(b);
        });
        s.cut();
        assert!(s.wait(Instant::now() + Duration::from_secs(10)).await);
        waiter.await.unwrap();
        // Handed out after the wait began: already cut, and not waited for.
        assert!(s.stop().is_cut());
    }

    #[tokio::test]
    async fn closing_comes_before_the_cut_and_with_it() {
        let s = Stopper::default();
        let a = s.stop();
        let closing = tokio::spawn(a.closing());
        s.close();
        closing.await.unwrap();
        assert!(!a.is_cut(), "closing is not the cut");
        let t = Stopper::default();
        let b = t.stop();
        t.cut();
        // A cut without a close before it closes too.
        b.closing().await;
        assert!(b.is_cut());
    }
}
