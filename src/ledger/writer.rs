//! The ledger writer: a thread that takes request rows from a queue and writes them in
//! batches, one transaction per batch, so the proxy never waits on disk.

use std::path::Path;
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::params;
use serde::Serialize;

use super::Ledger;
use super::counters::int;
use super::signal::{CommitSignal, OwnCommits};

/// Rows written per transaction at most.
const BATCH: usize = 512;

/// How long a request row or event waits for company before its batch is written. A steady
/// trickle of requests then costs one transaction (and one wake-up of the thread) per
/// `LINGER` instead of one per row. A settlement or `Stop` is written at once: budgets must not
/// hold a finished request's reservation any longer than before.
const LINGER: Duration = Duration::from_millis(50);

/// One proxied request, as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RequestRow {
    pub at: u64,
    pub binding: Option<String>,
    pub key_name: Option<String>,
    pub session: Option<String>,
    pub provider: String,
    pub model: Option<String>,
    pub endpoint: Option<&'static str>,
    pub status: u16,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
    pub cost_micros: u64,
    pub latency_ms: f64,
    pub ttfb_ms: Option<f64>,
    pub denial: Option<&'static str>,
    /// `complete`, `cut` (the upstream broke off), `abandoned` (the client left), `denied`,
    /// `interrupted` (the proxy stopped after its shutdown grace), `lost` (the proxy died; the
    /// row was written by the till that settled its reservation).
    pub outcome: Option<&'static str>,
    /// Short bindings of every level of the key, space-separated.
    pub lineage: Option<String>,
}

enum Msg {
    Row(Box<RequestRow>),
    Event {
        at: u64,
        binding: Option<String>,
        session: Option<String>,
        kind: String,
        message: String,
    },
    /// Settle a budget reservation to what the request really used, and write its row. The
    /// row is skipped when the reservation was settled already (by the sweep of a stopped or
    /// dead proxy, which wrote a row of its own).
    Settle {
        reservation: super::counters::Reservation,
        micros: u64,
        tokens: u64,
        row: Option<Box<RequestRow>>,
    },
    /// Write everything queued before this, then stop.
    Stop,
}

impl Msg {
    /// Whether this message may wait up to [`LINGER`] to share a transaction.
    fn may_wait(&self) -> bool {
        matches!(self, Msg::Row(_) | Msg::Event { .. })
    }
}

/// The writer thread and the queue into it.
pub struct Writer {
    shared: Arc<Shared>,
    own: Arc<OwnCommits>,
    thread: Option<JoinHandle<()>>,
}

thread_local! {
    /// On a thread that called [`defer_wakes`]: the writer to wake when the thread is next idle.
    static DEFERRED: std::cell::RefCell<Option<Option<Arc<Shared>>>> =
        const { std::cell::RefCell::new(None) };
}

/// Lets rows pushed from this thread wake the writer only when [`wake_deferred`] is called,
/// which a proxy thread does when it has nothing left to do (its runtime's park hook): the
/// wake-up (a system call, and on a virtual machine an interrupt to another CPU) then comes
/// after the response is written instead of before. Rows that must not wait (settlements,
/// stop) and the one that fills a batch still wake the writer at once.
pub fn defer_wakes() {
    DEFERRED.with(|d| *d.borrow_mut() = Some(None));
}

/// Wakes the writer if a row pushed from this thread is waiting for it.
pub fn wake_deferred() {
    let pending = DEFERRED.with(|d| d.borrow_mut().as_mut().and_then(Option::take));
    if let Some(shared) = pending {
        shared.ready.notify_one();
    }
}

/// Leaves the wake-up to [`wake_deferred`] when this thread defers them.
fn defer_wake(shared: &Arc<Shared>) -> bool {
    DEFERRED.with(|d| match d.borrow_mut().as_mut() {
        Some(slot) => {
            if let Some(other) = slot.replace(Arc::clone(shared))
                && !Arc::ptr_eq(&other, shared)
            {
                other.ready.notify_one();
            }
            true
        }
        None => false,
    })
}

/// The queue between the proxy and the writer thread. Senders push under a mutex and wake the
/// thread only when it has something new to do: the first message into an empty queue, one
/// that must not wait ([`Msg::may_wait`]), or the one that fills a batch. A busy proxy therefore costs the
/// writer one wake-up per batch instead of one per request.
struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    /// How many settlements are written (counted as [`Queue::settles`] counts them): a
    /// request that reads a budget waits for those queued before it ([`WriterHandle::wait_settled`]).
    settled: Mutex<u64>,
    written: Condvar,
}

#[derive(Default)]
struct Queue {
    msgs: Vec<Msg>,
    /// A message in `msgs` must be written now.
    urgent: bool,
    /// Settlements ever pushed.
    settles: u64,
}

impl Shared {
    fn push(self: &Arc<Self>, msg: Msg) {
        let (first, now) = {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            let first = q.msgs.is_empty();
            let urgent = !msg.may_wait();
            q.urgent |= urgent;
            q.settles += u64::from(matches!(msg, Msg::Settle { .. }));
            q.msgs.push(msg);
            (first, urgent || q.msgs.len() == BATCH)
        };
        if now || (first && !defer_wake(self)) {
            self.ready.notify_one();
        }
    }

    /// Waits for messages (up to `at_most`, when given), lets them linger for company, and
    /// takes them, with the count of settlements pushed up to the last of them.
    fn take(&self, at_most: Option<Duration>) -> (Vec<Msg>, u64) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let until = at_most.map(|d| Instant::now() + d);
        while q.msgs.is_empty() {
            q = match until {
                None => self.ready.wait(q).unwrap_or_else(|e| e.into_inner()),
                Some(until) => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return (Vec::new(), q.settles);
                    }
                    self.ready
                        .wait_timeout(q, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
        let deadline = Instant::now() + LINGER;
        while !q.urgent && q.msgs.len() < BATCH {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            q = self
                .ready
                .wait_timeout(q, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        q.urgent = false;
        (std::mem::take(&mut q.msgs), q.settles)
    }

    /// Every settlement counted up to `through` is written.
    fn mark_settled(&self, through: u64) {
        let mut settled = self.settled.lock().unwrap_or_else(|e| e.into_inner());
        if *settled < through {
            *settled = through;
            self.written.notify_all();
        }
    }
}

/// A cheap, cloneable handle for sending rows to a [`Writer`].
#[derive(Clone)]
pub struct WriterHandle {
    shared: Arc<Shared>,
    own: Arc<OwnCommits>,
}

impl WriterHandle {
    /// The writer's commits, for telling them from other processes' ([`OwnCommits`]).
    pub fn own_commits(&self) -> Arc<OwnCommits> {
        Arc::clone(&self.own)
    }

    /// Waits (up to `at_most`) until every settlement queued before this call is written, so
    /// that a budget read next sees what requests that have ended were charged instead of what
    /// they held (a ledger that refuses writes keeps them held, and the read then counts their
    /// reservations: more than they cost, never less).
    pub fn wait_settled(&self, at_most: Duration) {
        let through = self
            .shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .settles;
        let settled = self
            .shared
            .settled
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if *settled < through {
            let _ = self
                .shared
                .written
                .wait_timeout_while(settled, at_most, |s| *s < through);
        }
    }

    pub fn row(&self, row: RequestRow) {
        self.shared.push(Msg::Row(Box::new(row)));
    }

    pub fn settle(&self, reservation: super::counters::Reservation, micros: u64, tokens: u64) {
        self.shared.push(Msg::Settle {
            reservation,
            micros,
            tokens,
            row: None,
        });
    }

    /// Settles a reservation and records its request in the same transaction.
    pub fn settle_with_row(
        &self,
        reservation: super::counters::Reservation,
        micros: u64,
        tokens: u64,
        row: RequestRow,
    ) {
        self.shared.push(Msg::Settle {
            reservation,
            micros,
            tokens,
            row: Some(Box::new(row)),
        });
    }

    pub fn event(
        &self,
        at: u64,
        binding: Option<String>,
        session: Option<String>,
        kind: &str,
        message: String,
    ) {
        self.shared.push(Msg::Event {
            at,
            binding,
            session,
            kind: kind.to_string(),
            message,
        });
    }
}

impl Writer {
    /// Opens its own connection to the ledger at `path` and starts the thread.
    pub fn start(path: &Path) -> anyhow::Result<Self> {
        let ledger = Ledger::open(path)?;
        Ok(Self::with_ledger(ledger))
    }

    pub fn with_ledger(mut ledger: Ledger) -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            settled: Mutex::new(0),
            written: Condvar::new(),
        });
        let queue = Arc::clone(&shared);
        let own = Arc::new(OwnCommits::default());
        let recorded = Arc::clone(&own);
        let thread = std::thread::Builder::new()
            .name("till-ledger".into())
            .spawn(move || {
                // The caller's connection has read the ledger, so its wal-index is mapped.
                let signal = CommitSignal::open(ledger.conn());
                let mut held = Held::default();
                let mut stop = false;
                while !stop {
                    let (mut batch, settles) = queue.take((!held.msgs.is_empty()).then_some(RETRY));
                    if let Some(i) = batch.iter().position(|m| matches!(m, Msg::Stop)) {
                        batch.truncate(i);
                        stop = true;
                    }
                    let mut batch = held.before(batch);
                    // Large bursts are written in transactions of at most BATCH messages.
                    while !batch.is_empty() {
                        let rest = batch.split_off(batch.len().min(BATCH));
                        match write_batch(&mut ledger, &batch, Some((&signal, &recorded))) {
                            Ok(()) => batch = rest,
                            Err(e) => {
                                batch.extend(rest);
                                held.keep(batch, &e);
                                break;
                            }
                        }
                    }
                    if held.msgs.is_empty() {
                        queue.mark_settled(settles);
                        held.written(&mut ledger);
                    }
                }
                if !held.msgs.is_empty() {
                    crate::output::warn(&format!(
                        "could not record {} request(s) in the ledger before stopping",
                        held.msgs.len()
                    ));
                }
            })
            .expect("spawn the ledger thread");
        Self {
            shared,
            own,
            thread: Some(thread),
        }
    }

    pub fn handle(&self) -> WriterHandle {
        WriterHandle {
            shared: Arc::clone(&self.shared),
            own: Arc::clone(&self.own),
        }
    }

    /// Writes what is queued and stops the thread.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.shared.push(Msg::Stop);
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    /// A writer dropped without [`Writer::finish`] still writes what was queued before it.
    fn drop(&mut self) {
        self.stop();
    }
}

/// How long the writer waits before it tries again to write what the ledger refused (a lock
/// held past SQLite's busy timeout by another process, a full disk).
const RETRY: Duration = Duration::from_secs(1);

/// Messages the writer holds at most while the ledger refuses them; past it the oldest rows
/// and events are dropped (settlements never: each frees a budget's reservation), counted,
/// and reported once the ledger takes writes again.
const MAX_HELD: usize = 100_000;

/// What the ledger refused, held to be written when it takes writes again.
#[derive(Default)]
struct Held {
    msgs: Vec<Msg>,
    /// Rows and events dropped past [`MAX_HELD`] since the ledger last took a write.
    dropped: usize,
    /// The ledger has refused a write since it last took one: how many messages were held
    /// at the last refusal.
    refused: Option<usize>,
}

impl Held {
    /// The held messages, then `batch`.
    fn before(&mut self, batch: Vec<Msg>) -> Vec<Msg> {
        if self.msgs.is_empty() {
            return batch;
        }
        let mut all = std::mem::take(&mut self.msgs);
        all.extend(batch);
        all
    }

    /// Holds `msgs` (oldest first), which the ledger refused with `err`.
    fn keep(&mut self, mut msgs: Vec<Msg>, err: &anyhow::Error) {
        if self.refused.is_none() {
            crate::output::warn(&format!(
                "could not record {} request(s) in the ledger: {err:#}; till keeps them and tries again every {} s",
                msgs.len(),
                RETRY.as_secs()
            ));
        }
        let over = msgs.len().saturating_sub(MAX_HELD);
        if over > 0 {
            let mut dropped = 0;
            msgs.retain(|m| {
                let drop = dropped < over && !matches!(m, Msg::Settle { .. });
                dropped += usize::from(drop);
                !drop
            });
            self.dropped += dropped;
        }
        self.refused = Some(msgs.len());
        self.msgs = msgs;
    }

    /// After everything held was written: says so, and records that rows were dropped.
    fn written(&mut self, ledger: &mut Ledger) {
        let Some(held) = self.refused.take() else {
            return;
        };
        crate::output::note(&format!(
            "till: the ledger takes writes again; the {held} request(s) held meanwhile are recorded"
        ));
        if self.dropped > 0 {
            let message = format!(
                "{} request row(s) were not recorded: the ledger refused writes for longer than till holds them ({MAX_HELD} messages)",
                self.dropped
            );
            crate::output::warn(&message);
            let event = Msg::Event {
                at: crate::time::now_unix(),
                binding: None,
                session: None,
                kind: "rows_lost".into(),
                message,
            };
            let _ = write_batch(ledger, &[event], None);
            self.dropped = 0;
        }
    }
}

/// Writes `batch` in one transaction; with `own`, remembers the commit's wal-index headers
/// (before it, read under the write lock `BEGIN IMMEDIATE` takes, and after it).
fn write_batch(
    ledger: &mut Ledger,
    batch: &[Msg],
    own: Option<(&CommitSignal, &OwnCommits)>,
) -> anyhow::Result<()> {
    let tx = ledger
        .conn_mut()
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let before = own.and_then(|(signal, _)| signal.current());
    {
        let mut events = tx.prepare_cached(
            "INSERT INTO events (at, binding, session, kind, message) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        // The batch's request rows, in order, inserted together after the rest.
        let mut rows: Vec<&RequestRow> = Vec::with_capacity(batch.len());
        for msg in batch {
            match msg {
                Msg::Row(r) => rows.push(r),
                Msg::Event {
                    at,
                    binding,
                    session,
                    kind,
                    message,
                } => {
                    events.execute(params![*at as i64, binding, session, kind, message])?;
                }
                Msg::Settle {
                    reservation,
                    micros,
                    tokens,
                    row,
                } => {
                    let settled = super::counters::settle(&tx, reservation, *micros, *tokens)?;
                    if let (true, Some(r)) = (settled, row) {
                        rows.push(r);
                    }
                }
                Msg::Stop => {}
            }
        }
        insert_rows(&tx, &rows)?;
    }
    tx.commit()?;
    if let (Some((signal, commits)), Some(before)) = (own, before)
        && let Some(after) = signal.current()
    {
        commits.record(before, after);
    }
    Ok(())
}

/// Request rows one statement inserts at most: a statement's fixed cost (its start and end,
/// its cursors, the table's last rowid) is paid once for them (`benches/ledger.rs`).
const ROWS_PER_INSERT: usize = 8;

/// The columns of a request row, in the order [`bind_row`] binds them.
const ROW_COLUMNS: usize = 18;

/// Inserts `rows` in order: by [`ROWS_PER_INSERT`] while there are that many, then one by one.
fn insert_rows(tx: &rusqlite::Transaction<'_>, rows: &[&RequestRow]) -> rusqlite::Result<()> {
    let mut chunks = rows.chunks_exact(ROWS_PER_INSERT);
    if chunks.len() > 0 {
        static MANY: LazyLock<String> = LazyLock::new(|| insert_sql(ROWS_PER_INSERT));
        let mut many = tx.prepare_cached(&MANY)?;
        for chunk in &mut chunks {
            for (i, r) in chunk.iter().enumerate() {
                bind_row(&mut many, i * ROW_COLUMNS, r)?;
            }
            many.raw_execute()?;
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        static ONE: LazyLock<String> = LazyLock::new(|| insert_sql(1));
        let mut one = tx.prepare_cached(&ONE)?;
        for r in rest {
            bind_row(&mut one, 0, r)?;
            one.raw_execute()?;
        }
    }
    Ok(())
}

/// `INSERT INTO requests … VALUES` with `rows` groups of [`ROW_COLUMNS`] parameters (made
/// once: the statement cache is looked up by this text on every batch).
fn insert_sql(rows: usize) -> String {
    let group = format!("({})", vec!["?"; ROW_COLUMNS].join(", "));
    format!(
        "INSERT INTO requests (at, binding, key_name, session, provider, model, endpoint, status,
            input_tokens, output_tokens, cached_tokens, reasoning_tokens, cost_micros, latency_ms,
            ttfb_ms, denial, outcome, lineage)
         VALUES {}",
        vec![group; rows].join(", ")
    )
}

/// Binds `r` to the parameters after `base` (the [`ROW_COLUMNS`] of one row).
fn bind_row(
    stmt: &mut rusqlite::CachedStatement<'_>,
    base: usize,
    r: &RequestRow,
) -> rusqlite::Result<()> {
    let values: [&dyn rusqlite::ToSql; ROW_COLUMNS] = [
        &(r.at as i64),
        &r.binding,
        &r.key_name,
        &r.session,
        &r.provider,
        &r.model,
        &r.endpoint,
        &i64::from(r.status),
        &int(r.input_tokens),
        &int(r.output_tokens),
        &int(r.cached_tokens),
        &int(r.reasoning_tokens),
        &int(r.cost_micros),
        &r.latency_ms,
        &r.ttfb_ms,
        &r.denial,
        &r.outcome,
        &r.lineage,
    ];
    for (i, v) in values.into_iter().enumerate() {
        stmt.raw_bind_parameter(base + i + 1, v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_arrive_in_the_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite3");
        let w = Writer::start(&path).unwrap();
        let h = w.handle();
        for i in 0..1000 {
            h.row(RequestRow {
                at: i,
                provider: "openai".into(),
                status: 200,
                input_tokens: 2,
                ..Default::default()
            });
        }
        h.event(5, None, None, "rpm", "too fast".into());
        w.finish();
        let l = Ledger::open(&path).unwrap();
        let (n, sum): (i64, i64) = l
            .conn()
            .query_row(
                "SELECT count(*), sum(input_tokens) FROM requests",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((n, sum), (1000, 2000));
        let e: i64 = l
            .conn()
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(e, 1);
    }

    /// Rows the ledger refuses (another process holds its write lock past the busy timeout)
    /// are held and written once it takes writes again, not lost.
    #[test]
    fn rows_refused_by_a_locked_ledger_are_written_once_it_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite3");
        let ledger = Ledger::open(&path).unwrap();
        ledger
            .conn()
            .busy_timeout(Duration::from_millis(50))
            .unwrap();
        let w = Writer::with_ledger(ledger);
        let h = w.handle();
        let other = rusqlite::Connection::open(&path).unwrap();
        other.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let count = |c: &rusqlite::Connection| -> i64 {
            c.query_row("SELECT count(*) FROM requests", [], |r| r.get(0))
                .unwrap()
        };
        for i in 0..10 {
            h.row(RequestRow {
                at: i,
                provider: "openai".into(),
                status: 200,
                ..Default::default()
            });
        }
        // Refused (the writer waits 50 ms for the lock): nothing is written meanwhile.
        std::thread::sleep(LINGER * 6);
        assert_eq!(count(&other), 0);
        other.execute_batch("COMMIT").unwrap();
        let deadline = Instant::now() + RETRY * 5;
        while count(&other) < 10 {
            assert!(Instant::now() < deadline, "the held rows were not written");
            std::thread::sleep(LINGER);
        }
        w.finish();
        assert_eq!(count(&other), 10);
    }

    /// Rows go in by eight per statement and then one by one: every column of every row
    /// arrives, in order, whichever statement wrote it.
    #[test]
    fn a_batch_of_rows_arrives_whole_and_in_order() {
        let mut l = Ledger::open_in_memory().unwrap();
        let rows: Vec<RequestRow> = (0..19u64)
            .map(|i| {
                let some = |s: &str| (i % 3 != 0).then(|| format!("{s}{i}"));
                RequestRow {
                    at: 1_000 + i,
                    binding: some("b"),
                    key_name: some("k"),
                    session: (i % 2 == 0).then(|| format!("s{i}")),
                    provider: format!("p{i}"),
                    model: some("m"),
                    endpoint: (i % 3 != 0).then_some(["e0", "e1"][i as usize % 2]),
                    status: 200 + i as u16,
                    input_tokens: i,
                    output_tokens: 2 * i,
                    cached_tokens: 3 * i,
                    reasoning_tokens: 4 * i,
                    cost_micros: if i == 18 { u64::MAX } else { 5 * i },
                    latency_ms: i as f64 / 4.0,
                    ttfb_ms: (i % 4 != 0).then_some(i as f64 / 8.0),
                    denial: (i % 5 == 0).then_some("scope"),
                    outcome: (i % 3 != 0).then_some(["o0", "o1"][i as usize % 2]),
                    lineage: some("l"),
                }
            })
            .collect();
        let batch: Vec<Msg> = rows
            .iter()
            .cloned()
            .map(|r| Msg::Row(Box::new(r)))
            .collect();
        write_batch(&mut l, &batch, None).unwrap();
        let mut stmt = l
            .conn()
            .prepare(
                "SELECT at, binding, key_name, session, provider, model, endpoint, status,
                    input_tokens, output_tokens, cached_tokens, reasoning_tokens, cost_micros,
                    latency_ms, ttfb_ms, denial, outcome, lineage FROM requests ORDER BY id",
            )
            .unwrap();
        // The row's fixed words are `&'static str`s: those read back are leaked (a test's few).
        let word = |s: Option<String>| s.map(|s| &*s.leak());
        let back: Vec<RequestRow> = stmt
            .query_map([], |r| {
                Ok(RequestRow {
                    at: r.get::<_, i64>(0)? as u64,
                    binding: r.get(1)?,
                    key_name: r.get(2)?,
                    session: r.get(3)?,
                    provider: r.get(4)?,
                    model: r.get(5)?,
                    endpoint: word(r.get(6)?),
                    status: r.get(7)?,
                    input_tokens: r.get::<_, i64>(8)? as u64,
                    output_tokens: r.get::<_, i64>(9)? as u64,
                    cached_tokens: r.get::<_, i64>(10)? as u64,
                    reasoning_tokens: r.get::<_, i64>(11)? as u64,
                    cost_micros: r.get::<_, i64>(12)? as u64,
                    latency_ms: r.get(13)?,
                    ttfb_ms: r.get(14)?,
                    denial: word(r.get(15)?),
                    outcome: word(r.get(16)?),
                    lineage: r.get(17)?,
                })
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut expected = rows;
        expected[18].cost_micros = i64::MAX as u64;
        assert_eq!(back, expected);
    }

    #[test]
    fn a_deferring_thread_wakes_the_writer_when_it_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite3");
        let w = Writer::start(&path).unwrap();
        let h = w.handle();
        let count = || -> i64 {
            Ledger::open(&path)
                .unwrap()
                .conn()
                .query_row("SELECT count(*) FROM requests", [], |r| r.get(0))
                .unwrap()
        };
        let wait_for = |rows: i64| {
            let t = Instant::now();
            while count() < rows {
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "the row was not written"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        // A thread that does not defer wakes the writer itself. (This also waits until the
        // writer is up and asleep on an empty queue: a row pushed while it is still opening the
        // ledger is found without a wake-up.)
        h.row(RequestRow {
            provider: "openai".into(),
            ..Default::default()
        });
        wait_for(1);
        std::thread::sleep(LINGER);
        std::thread::scope(|s| {
            s.spawn(|| {
                defer_wakes();
                h.row(RequestRow {
                    provider: "openai".into(),
                    ..Default::default()
                });
                // Without the wake-up the writer sleeps on: the row waits in the queue.
                std::thread::sleep(LINGER * 4);
                assert_eq!(count(), 1);
                wake_deferred();
                wait_for(2);
            });
        });
        w.finish();
    }
}
