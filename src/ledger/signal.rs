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
//! The mapping is read-only and only read. The file cannot shrink under it while this process
//! keeps a connection to the ledger open (SQLite truncates the `-shm` file only when it opens
//! it with no other connection on the machine), so [`CommitSignal`] must be dropped before
//! the connection it was opened beside. Where there is no `-shm` file (an in-memory ledger) or
//! no mapping (not Unix), every look says "maybe changed".

use std::path::Path;

/// Bytes of the two copies of the wal-index header.
const HEADER: usize = 96;

/// A watcher of the ledger's wal-index header.
pub struct CommitSignal {
    #[cfg(unix)]
    map: Option<Mapping>,
    last: Option<[u32; HEADER / 4]>,
}

impl std::fmt::Debug for CommitSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitSignal").finish_non_exhaustive()
    }
}

impl CommitSignal {
    /// Watches the wal-index of the database at `db` (its `-shm` file). Call it once the
    /// caller's own connection has read the database, so that the file exists.
    pub fn open(db: &Path) -> Self {
        let mut shm = db.as_os_str().to_owned();
        shm.push("-shm");
        Self {
            #[cfg(unix)]
            map: Mapping::open(Path::new(&shm)),
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
        let Some(now) = self.header() else {
            return true;
        };
        if self.last == Some(now) {
            return false;
        }
        self.last = Some(now);
        true
    }

    /// Forgets the last look (the next call says "maybe changed"), for a caller whose check
    /// after a "maybe" failed.
    pub fn forget(&mut self) {
        self.last = None;
    }

    #[cfg(unix)]
    fn header(&self) -> Option<[u32; HEADER / 4]> {
        self.map.as_ref().map(Mapping::header)
    }

    #[cfg(not(unix))]
    fn header(&self) -> Option<[u32; HEADER / 4]> {
        None
    }
}

#[cfg(unix)]
struct Mapping {
    ptr: std::ptr::NonNull<u32>,
    len: usize,
}

// The mapping is read-only shared memory, read with volatile loads.
#[cfg(unix)]
unsafe impl Send for Mapping {}

#[cfg(unix)]
impl Mapping {
    fn open(path: &Path) -> Option<Self> {
        use std::os::fd::AsRawFd as _;
        let file = std::fs::File::open(path).ok()?;
        if file.metadata().ok()?.len() < HEADER as u64 {
            return None;
        }
        let len = HEADER;
        // SAFETY: a fresh read-only shared mapping of a file at least `len` bytes long; the
        // descriptor may close afterwards (the mapping keeps the file).
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return None;
        }
        Some(Self {
            ptr: std::ptr::NonNull::new(ptr.cast())?,
            len,
        })
    }

    fn header(&self) -> [u32; HEADER / 4] {
        let mut out = [0u32; HEADER / 4];
        for (i, word) in out.iter_mut().enumerate() {
            // SAFETY: `i < HEADER / 4` words lie inside the mapping; other processes write
            // them concurrently, hence volatile loads (a torn read only makes a "maybe").
            *word = unsafe { self.ptr.as_ptr().add(i).read_volatile() };
        }
        std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        out
    }
}

#[cfg(unix)]
impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `open`.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
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
        let mut signal = CommitSignal::open(&path);
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

    #[test]
    fn without_a_shm_file_every_look_is_a_maybe() {
        let dir = tempfile::tempdir().unwrap();
        let mut signal = CommitSignal::open(&dir.path().join("missing.sqlite3"));
        assert!(signal.maybe_changed());
        assert!(signal.maybe_changed());
        let mut none = CommitSignal::none();
        assert!(none.maybe_changed());
    }
}
