//! Which process holds a budget reservation, and whether that process is still alive.
//!
//! Every proxy holds an exclusive lock on its own file, `DATA/owners/<id>.lock`, for as long as
//! it runs, and writes `<id>` into each reservation it makes. The OS releases the lock when the
//! process ends, however it ends (SIGKILL, a crash, power loss), so a lock another till can take
//! belongs to a process that is gone, and its reservations will never be settled by it.
//!
//! A lock rather than a pid and start time: pids are reused, are only meaningful inside one pid
//! namespace (a container sharing the data directory sees other pids), and reading a start time
//! is different on every OS; a file lock is released by the kernel and needs no interpretation.
//! The locks are `flock` on unix and `LockFileEx` on Windows (through `std::fs::File::try_lock`).
//! Where the platform has no file locks, no owner is ever taken for dead: reservations of a
//! crashed proxy then stay held rather than being settled while their holder might still run.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

/// The lock this process holds while it may have reservations open. Dropping it releases the
/// lock and removes the file.
#[derive(Debug)]
pub struct Owner {
    id: String,
    path: PathBuf,
    file: Option<File>,
}

/// Errors while claiming or probing owner locks.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error("cannot create the owner lock {}: {source}", path.display())]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot lock {}: {source}", path.display())]
    Lock { path: PathBuf, source: io::Error },
}

impl Owner {
    /// Creates a fresh owner id and locks its file in `dir` (created if needed).
    pub fn claim(dir: &Path) -> Result<Self, OwnerError> {
        crate::config::create_private_dir(dir).map_err(|e| OwnerError::Create {
            path: dir.to_path_buf(),
            source: io::Error::other(format!("{e:#}")),
        })?;
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).expect("the OS random number generator works");
        let id = hex::encode(bytes);
        let path = lock_path(dir, &id).expect("a hex id is a valid owner id");
        // Made under a name no till reads, locked, and only then given its own name: a file
        // named `<id>.lock` is always locked by a live owner or left by a dead one, so a till
        // that takes its lock (to sweep it, or to settle its reservations) never takes a
        // live owner's in the moment between its creation and its lock.
        let new = dir.join(format!("{id}.new"));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&new)
            .map_err(|source| OwnerError::Create {
                path: new.clone(),
                source,
            })?;
        let locked = match file.try_lock() {
            Ok(()) => std::fs::rename(&new, &path).map_err(|source| OwnerError::Create {
                path: path.clone(),
                source,
            }),
            // Nobody else looks at `.new` files.
            Err(TryLockError::WouldBlock) => unreachable!("a new file is unlocked"),
            Err(TryLockError::Error(source)) => Err(OwnerError::Lock {
                path: new.clone(),
                source,
            }),
        };
        if let Err(e) = locked {
            let _ = std::fs::remove_file(&new);
            return Err(e);
        }
        Ok(Self {
            id,
            path,
            file: Some(file),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        // Removed while still locked, so nobody takes the lock of a file about to disappear.
        let _ = std::fs::remove_file(&self.path);
        drop(self.file.take());
    }
}

/// A dead owner's lock, held by the caller while it settles that owner's reservations.
#[derive(Debug)]
pub struct DeadOwner {
    path: Option<PathBuf>,
    _file: Option<File>,
}

impl Drop for DeadOwner {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// `Some` when the process that owns `id` is gone: its lock could be taken (and is held until
/// the returned value is dropped, which removes the file), or its file no longer exists.
/// `None` while that process runs, or when nothing can tell (no file locks on this platform,
/// or an id that names no lock file).
pub fn claim_dead(dir: &Path, id: &str) -> Result<Option<DeadOwner>, OwnerError> {
    let Some(path) = lock_path(dir, id) else {
        // Not an id of an owner lock (an in-process proxy that never claimed one): there is
        // nothing to tell whether its holder lives, so it is left alone.
        return Ok(None);
    };
    let file = match OpenOptions::new().write(true).open(&path) {
        Ok(f) => f,
        // A live owner's file exists from before its first reservation until after its last
        // settlement; a missing one means its owner is gone (or the directory was cleared).
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Some(DeadOwner {
                path: None,
                _file: None,
            }));
        }
        Err(source) => return Err(OwnerError::Lock { path, source }),
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(DeadOwner {
            path: Some(path),
            _file: Some(file),
        })),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) if e.kind() == io::ErrorKind::Unsupported => Ok(None),
        Err(TryLockError::Error(source)) => Err(OwnerError::Lock { path, source }),
    }
}

/// Removes the lock files in `dir` of owners that are gone (their lock can be taken), other
/// than those holding `keep`'s reservations: what a proxy killed with nothing open leaves
/// behind (SIGKILL, a crash, a power cut). Returns how many went. Files that cannot be read or
/// locked are left as they are.
pub fn sweep(dir: &Path, keep: &[String]) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut swept = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".lock")) else {
            continue;
        };
        if keep.iter().any(|k| k == id) {
            continue;
        }
        // Dropping a dead owner's lock removes its file.
        if let Ok(Some(dead)) = claim_dead(dir, id)
            && dead.path.is_some()
        {
            drop(dead);
            swept += 1;
        }
    }
    swept
}

/// `DIR/<id>.lock` for an id made of hex digits only (ids come from the ledger, and must never
/// name a path outside `dir`).
fn lock_path(dir: &Path, id: &str) -> Option<PathBuf> {
    (!id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| dir.join(format!("{id}.lock")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_alive_and_a_released_one_is_dead() {
        let dir = tempfile::tempdir().unwrap();
        let owner = Owner::claim(dir.path()).unwrap();
        let id = owner.id().to_string();
        assert!(dir.path().join(format!("{id}.lock")).exists());
        // Another open of the same file, even in this process, cannot take the lock.
        assert!(claim_dead(dir.path(), &id).unwrap().is_none());
        drop(owner);
        assert!(!dir.path().join(format!("{id}.lock")).exists());
        assert!(claim_dead(dir.path(), &id).unwrap().is_some());
    }

    #[test]
    fn a_lock_file_left_by_a_dead_process_can_be_claimed_once_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let id = "00ff00ff00ff00ff";
        // What a killed proxy leaves: its file, with no lock on it.
        std::fs::write(dir.path().join(format!("{id}.lock")), b"").unwrap();
        let first = claim_dead(dir.path(), id).unwrap().expect("dead");
        // While one till settles it, another does not take it too.
        assert!(claim_dead(dir.path(), id).unwrap().is_none());
        drop(first);
        assert!(!dir.path().join(format!("{id}.lock")).exists());
    }

    #[test]
    fn a_sweep_removes_dead_owners_files_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let live = Owner::claim(dir.path()).unwrap();
        // A killed proxy's file (nobody holds its lock), one whose reservations are still to
        // be settled, and files that are not owner locks.
        let dead = "00ff00ff00ff00ff";
        let held = "0a0a0a0a0a0a0a0a";
        for name in [
            format!("{dead}.lock"),
            format!("{held}.lock"),
            "notes.txt".into(),
            "x.lock".into(),
            "1234.new".into(),
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        assert_eq!(sweep(dir.path(), &[held.to_string()]), 1);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut expected = vec![
            format!("{held}.lock"),
            format!("{}.lock", live.id()),
            "1234.new".to_string(),
            "notes.txt".to_string(),
            "x.lock".to_string(),
        ];
        expected.sort();
        assert_eq!(left, expected);
        // The live owner is still alive to everyone else.
        assert!(claim_dead(dir.path(), live.id()).unwrap().is_none());
        assert_eq!(
            sweep(dir.path(), &[]),
            1,
            "the held one, once nobody keeps it"
        );
    }

    #[test]
    fn a_claimed_owner_leaves_no_file_under_its_making_name() {
        let dir = tempfile::tempdir().unwrap();
        let owner = Owner::claim(dir.path()).unwrap();
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [format!("{}.lock", owner.id())]);
    }

    #[test]
    fn ids_that_are_not_hex_never_name_a_path() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(lock_path(dir.path(), "../x"), None);
        assert_eq!(lock_path(dir.path(), ""), None);
        assert!(lock_path(dir.path(), "abc123").is_some());
        // Reservations without an owner lock are never taken for a dead owner's.
        assert!(claim_dead(dir.path(), "").unwrap().is_none());
    }
}
