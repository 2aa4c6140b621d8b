//! Whether any connection may have committed to the ledger since the last look, without a
//! SQLite transaction: for the proxy's per-request "did a revocation, root key or mint key
//! change" check, which must see another process's commit on its very next request.
//!
//! The ledger runs in WAL mode, whose wal-index (the `-shm` file next to the database, shared
//! memory between every connection on the machine) starts with a header that SQLite rewrites
//! before any write transaction's commit returns: a change counter, the last valid frame, the
//! salts and checksums, kept twice (<https://www.sqlite.org/walformat.html>, "The WAL-Index
//! Header"). If those 96 bytes are what they were at the last look, nothing has been committed
//! since; if they differ (a commit, or a checkpoint restarting the WAL), the caller asks SQLite
//! properly. Reading mapped memory costs no system call, where `PRAGMA data_version` takes and
//! drops POSIX locks on the database and the `-shm` file every time.
//!
//! The header is read through SQLite's own mapping of the wal-index (the VFS's `xShmMap` for
//! region 0, which returns the region the connection has mapped already), never through a
//! descriptor of till's own. Opening the `-shm` file and closing it again would drop every
//! POSIX lock this process holds on it, SQLite's included (closing any descriptor of a file
//! does that). Among them is the lock by which SQLite tells that a process has the shared
//! memory open: without it, the next till opening the ledger takes itself for the only user,
//! truncates the `-shm` file and rebuilds it, and this process, still reading it, dies of
//! SIGBUS. The mapping lives as long as the connection, so a [`CommitSignal`] must be dropped
//! before the connection it was opened from. Where there is no wal-index (an in-memory
//! ledger, a connection not in WAL mode) every look says "maybe changed".

use std::collections::VecDeque;
use std::sync::Mutex;

/// Bytes of the two copies of the wal-index header.
const HEADER: usize = 96;

/// The wal-index header (both copies), as the native-endian words SQLite writes.
pub type Header = [u32; HEADER / 4];

/// The word of each header copy that counts write transactions (`iChange`).
const CHANGE_COUNTER: usize = 2;

/// How many of the writer's commits are remembered; a watcher looks after every request, so a
/// few are ever needed.
const OWN_COMMITS: usize = 64;

/// The commits this process's ledger writer made, each as the wal-index header just before it
/// and just after it, so that a watcher whose last look was one of these "before"s can tell
/// that the header moved through the writer's commits alone. The writer only adds request
/// rows, alert events and settlements, never a revocation, root key or mint key: nothing a
/// watcher reloads for.
///
/// A pair is exact: "before" is read inside the writer's `BEGIN IMMEDIATE` transaction, while
/// it holds SQLite's write lock, so no other commit can land between it and the writer's own;
/// "after" is read once the commit has returned, and kept only when the transaction counter
/// moved by exactly one (any other commit in between would have moved it again). A torn read
/// (both copies unequal) is never kept.
#[derive(Debug, Default)]
pub struct OwnCommits {
    pairs: Mutex<VecDeque<(Header, Header)>>,
}

impl OwnCommits {
    /// Remembers one commit of this process's writer (see the type's rules for which count).
    pub fn record(&self, before: Header, after: Header) {
        let whole = |h: &Header| h[..HEADER / 8] == h[HEADER / 8..];
        if !whole(&before)
            || !whole(&after)
            || after[CHANGE_COUNTER] != before[CHANGE_COUNTER].wrapping_add(1)
        {
            return;
        }
        let Ok(mut pairs) = self.pairs.lock() else {
            return;
        };
        if pairs.len() == OWN_COMMITS {
            pairs.pop_front();
        }
        pairs.push_back((before, after));
    }

    /// Whether the header went from `from` to `to` through remembered commits only.
    fn explain(&self, from: &Header, to: &Header) -> bool {
        let Ok(pairs) = self.pairs.lock() else {
            return false;
        };
        let mut at = *from;
        for _ in 0..pairs.len() {
            match pairs.iter().find(|(before, _)| *before == at) {
                Some((_, after)) => at = *after,
                None => return false,
            }
            if at == *to {
                return true;
            }
        }
        false
    }
}

/// A watcher of the ledger's wal-index header.
pub struct CommitSignal {
    #[cfg(unix)]
    map: Option<Mapping>,
    last: Option<Header>,
}

impl std::fmt::Debug for CommitSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitSignal").finish_non_exhaustive()
    }
}

impl CommitSignal {
    /// Watches the wal-index of `conn`'s database through `conn`'s own mapping of it. Call it
    /// once `conn` has read the database in WAL mode, so that the wal-index is mapped, and drop
    /// the signal before `conn`.
    pub fn open(conn: &rusqlite::Connection) -> Self {
        #[cfg(not(unix))]
        let _ = conn;
        Self {
            #[cfg(unix)]
            map: Mapping::of(conn),
            last: None,
        }
    }

    /// A signal that always says "maybe changed".
    pub fn none() -> Self {
        Self {
            #[cfg(unix)]
            map: None,
            last: None,
        }
    }

    /// Whether a commit may have happened since the previous call. Read the header *before*
    /// asking SQLite what changed: a commit that lands in between is then seen by SQLite now
    /// and makes the next call say "maybe" again, never the reverse.
    pub fn maybe_changed(&mut self) -> bool {
        self.maybe_changed_besides(None)
    }

    /// [`CommitSignal::maybe_changed`], but a header that moved only through `own` commits
    /// (this process's ledger writer's) says "nothing changed" too.
    pub fn maybe_changed_besides(&mut self, own: Option<&OwnCommits>) -> bool {
        let Some(now) = self.current() else {
            return true;
        };
        match self.last.replace(now) {
            Some(last) if last == now => false,
            Some(last) => !own.is_some_and(|own| own.explain(&last, &now)),
            None => true,
        }
    }

    /// Forgets the last look (the next call says "maybe changed"), for a caller whose check
    /// after a "maybe" failed.
    pub fn forget(&mut self) {
        self.last = None;
    }

    /// The header as it is now, `None` without a mapping.
    #[cfg(unix)]
    pub fn current(&self) -> Option<Header> {
        self.map.as_ref().map(Mapping::header)
    }

    /// The header as it is now, `None` without a mapping.
    #[cfg(not(unix))]
    pub fn current(&self) -> Option<Header> {
        None
    }
}

/// The start of a connection's mapping of the wal-index, which SQLite keeps until the
/// connection closes.
#[cfg(unix)]
struct Mapping {
    ptr: std::ptr::NonNull<u32>,
}

// Shared memory that is only read, with volatile loads.
#[cfg(unix)]
unsafe impl Send for Mapping {}

#[cfg(unix)]
impl Mapping {
    /// Region 0 of `conn`'s wal-index as SQLite's VFS has mapped it, `None` when it has none.
    fn of(conn: &rusqlite::Connection) -> Option<Self> {
        use rusqlite::ffi;
        // Only a WAL database has a wal-index; asked of another, `xShmMap` would make one.
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .ok()?;
        if !mode.eq_ignore_ascii_case("wal") {
            return None;
        }
        /// The size of a wal-index region (`WALINDEX_PGSZ` in SQLite's wal.c).
        const REGION: std::ffi::c_int = 32_768;
        let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
        // SAFETY: `conn` is open for the whole call. SQLITE_FCNTL_FILE_POINTER writes the main
        // database's `sqlite3_file` into `file`; its methods are SQLite's own. With `bExtend`
        // 0, `xShmMap` only returns a region already mapped (or NULL), adding nothing and
        // taking no lock, the same call SQLite's WAL code makes before reading the header.
        unsafe {
            let rc = ffi::sqlite3_file_control(
                conn.handle(),
                c"main".as_ptr(),
                ffi::SQLITE_FCNTL_FILE_POINTER,
                (&raw mut file).cast(),
            );
            if rc != ffi::SQLITE_OK || file.is_null() {
                return None;
            }
            let methods = (*file).pMethods;
            if methods.is_null() || (*methods).iVersion < 2 {
                return None;
            }
            let map = (*methods).xShmMap?;
            let mut region: *mut std::ffi::c_void = std::ptr::null_mut();
            if map(file, 0, REGION, 0, &mut region) != ffi::SQLITE_OK {
                return None;
            }
            Some(Self {
                ptr: std::ptr::NonNull::new(region.cast())?,
            })
        }
    }

    fn header(&self) -> Header {
        let mut out = [0u32; HEADER / 4];
        for (i, word) in out.iter_mut().enumerate() {
            // SAFETY: `i < HEADER / 4` words lie inside the 32 KB region, mapped while the
            // connection is open (the signal is dropped first); other processes write them
            // concurrently, hence volatile loads (a torn read only makes a "maybe").
            *word = unsafe { self.ptr.as_ptr().add(i).read_volatile() };
        }
        std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_by_another_connection_is_seen_and_quiet_is_quiet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite3");
        let mine = crate::ledger::Ledger::open(&path).unwrap();
        mine.watch_generation().unwrap();
        let mut signal = CommitSignal::open(mine.conn());
        assert!(signal.maybe_changed(), "the first look always says maybe");
        assert!(!signal.maybe_changed(), "nothing was committed");
        let other = crate::ledger::Ledger::open(&path).unwrap();
        signal.maybe_changed();
        assert!(!signal.maybe_changed());
        other.revoke(&"ab".repeat(32), None, 1).unwrap();
        assert!(signal.maybe_changed(), "a revocation by another connection");
        assert!(!signal.maybe_changed());
        // Reads change nothing.
        other.watch_generation().unwrap();
        assert!(!signal.maybe_changed());
    }

    /// The proxy's own ledger writer's commits need no look at SQLite; any other commit
    /// between two looks (a revocation) still does, also when it lands between two of the
    /// writer's commits or right after one.
    #[test]
    fn only_the_writers_own_commits_go_unchecked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite3");
        let mine = crate::ledger::Ledger::open(&path).unwrap();
        mine.watch_generation().unwrap();
        let other = crate::ledger::Ledger::open(&path).unwrap();
        let writer = crate::ledger::writer::Writer::start(&path).unwrap();
        let handle = writer.handle();
        let own = handle.own_commits();
        let mut signal = CommitSignal::open(mine.conn());
        assert!(
            signal.maybe_changed_besides(Some(&own)),
            "the first look always says maybe"
        );
        let event = |n: u64| handle.event(n, None, None, "test", format!("event {n}"));
        let probe = CommitSignal::open(other.conn());
        let flush = || {
            // The writer commits within its linger time; wait until it has recorded that.
            let start = probe.current();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            let recorded = || {
                let last = own.pairs.lock().unwrap().back().map(|p| p.1);
                probe.current() != start && last == probe.current()
            };
            while !recorded() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            assert!(recorded(), "the writer committed and recorded it");
        };

        event(1);
        flush();
        assert!(
            !signal.maybe_changed_besides(Some(&own)),
            "the writer's own commit"
        );
        event(2);
        flush();
        event(3);
        flush();
        assert!(
            !signal.maybe_changed_besides(Some(&own)),
            "two commits of the writer's"
        );

        other.revoke(&"ab".repeat(32), None, 1).unwrap();
        assert!(signal.maybe_changed_besides(Some(&own)), "a revocation");
        assert!(!signal.maybe_changed_besides(Some(&own)));
        event(4);
        flush();
        other.revoke(&"cd".repeat(32), None, 1).unwrap();
        assert!(
            signal.maybe_changed_besides(Some(&own)),
            "a revocation right after the writer's commit"
        );
        other.revoke(&"ef".repeat(32), None, 1).unwrap();
        event(5);
        flush();
        assert!(
            signal.maybe_changed_besides(Some(&own)),
            "a revocation right before the writer's commit"
        );
        writer.finish();
    }

    /// A commit that slips in between the writer's commit and its look at the header after
    /// it moves the transaction counter twice: the pair is not kept.
    #[test]
    fn a_pair_with_another_commit_inside_it_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite3");
        let mut mine = crate::ledger::Ledger::open(&path).unwrap();
        mine.watch_generation().unwrap();
        let other = crate::ledger::Ledger::open(&path).unwrap();
        let mut signal = CommitSignal::open(other.conn());
        let probe = CommitSignal::open(other.conn());
        let own = OwnCommits::default();
        assert!(signal.maybe_changed_besides(Some(&own)));

        let commit = |ledger: &mut crate::ledger::Ledger| {
            let tx = ledger
                .conn_mut()
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .unwrap();
            let before = probe.current().unwrap();
            tx.execute(
                "INSERT INTO events (at, kind, message) VALUES (1, 'test', 'x')",
                [],
            )
            .unwrap();
            tx.commit().unwrap();
            before
        };
        let before = commit(&mut mine);
        other.revoke(&"ab".repeat(32), None, 1).unwrap();
        own.record(before, probe.current().unwrap());
        assert!(own.pairs.lock().unwrap().is_empty());
        assert!(signal.maybe_changed_besides(Some(&own)));

        let before = commit(&mut mine);
        own.record(before, probe.current().unwrap());
        assert_eq!(own.pairs.lock().unwrap().len(), 1);
        assert!(!signal.maybe_changed_besides(Some(&own)));
    }

    #[test]
    fn without_a_wal_index_every_look_is_a_maybe() {
        let memory = rusqlite::Connection::open_in_memory().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let rollback = rusqlite::Connection::open(dir.path().join("rollback.sqlite3")).unwrap();
        rollback.execute_batch("CREATE TABLE t (x)").unwrap();
        for conn in [&memory, &rollback] {
            let mut signal = CommitSignal::open(conn);
            assert!(signal.current().is_none());
            assert!(signal.maybe_changed());
            assert!(signal.maybe_changed());
        }
        // Nothing was made for the rollback-journal database.
        assert!(!dir.path().join("rollback.sqlite3-shm").exists());
        let mut none = CommitSignal::none();
        assert!(none.maybe_changed());
    }
}
