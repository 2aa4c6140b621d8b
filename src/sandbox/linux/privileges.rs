//! The end of a run's look for programs the agent rewrote without losing their privileges.
//!
//! Without `CAP_FSETID` a `write`, `truncate` or `fallocate` clears a file's set-user-ID and
//! set-group-ID bits and its file capabilities (`security.capability`), but a store through a
//! shared, writable memory mapping does not: the kernel strips them on the write paths, not when
//! a mapped page is first written. So a set-ID program in the working directory or a `writable`
//! path (a build's `make install DESTDIR=.`, a copy kept with `cp -p`) could be given any contents
//! by the agent and keep running as its owner (root, for a root till) after the run. Nothing can
//! refuse the mapping (Landlock has no right for it, and a filter cannot see which file a
//! descriptor is), but the change leaves a mark the agent cannot undo: the file's change time
//! (`ctime`) moves forward on the first write through the mapping, on every filesystem, and only
//! the kernel sets it. The agent cannot make a set-ID file either (the filter refuses those
//! modes) nor bring one in from a read-only mount (a link or rename across mounts fails), so
//! every set-ID file it could have changed was under these paths when the run began.
//!
//! Once nothing of the agent runs, [`strip`] walks the paths and takes the bits and the
//! capabilities off every regular file whose change time is not older than the run. The walk
//! goes by directory descriptors, not paths, and holds at most [`HELD`] directories open, so no
//! depth the agent makes is too long for it or takes more descriptors than it may have; what it
//! cannot read is said, never taken for clean.

use std::ffi::{CStr, OsStr};
use std::os::fd::{AsFd, AsRawFd as _};
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::sandbox::{Privileged, Stripped};

const CAPABILITY: &CStr = c"security.capability";

/// Walks `roots` (and the mounts below them), skipping `skip`, and takes the set-ID bits and
/// file capabilities off every regular file changed at or after `since`.
pub fn strip(roots: &[PathBuf], skip: &[PathBuf], since: SystemTime) -> Stripped {
    let since = since.duration_since(UNIX_EPOCH).map_or((0, 0), |d| {
        (d.as_secs() as i64, i64::from(d.subsec_nanos()))
    });
    let mut out = Stripped::default();
    for (i, root) in roots.iter().enumerate() {
        // A root under another is walked with it.
        let nested = roots
            .iter()
            .enumerate()
            .any(|(j, other)| j != i && root.starts_with(other) && (root != other || j < i));
        if !nested {
            walk(root, skip, since, &mut out);
        }
    }
    out
}

/// Walks the tree under `root` holding at most [`HELD`] directories open (fewer when the
/// descriptors run out): below that a directory is closed when the walk enters a child (its
/// place, the cookie after the child's entry, kept), and opened again from the child (`..`)
/// when the child is done. Holding every level open would run out of descriptors in a tree
/// deeper than the limit on them, which the agent can make; reopening every level would read a
/// directory's rest again for each child.
fn walk(root: &Path, skip: &[PathBuf], since: (i64, i64), out: &mut Stripped) {
    let opened = rustix::fs::open(root, DIR_FLAGS, Mode::empty()).and_then(Dir::new);
    let mut dir = match opened {
        Ok(dir) => dir,
        Err(e) => return out.unchecked.push((root.to_path_buf(), e.to_string())),
    };
    let mut path = root.to_path_buf();
    // The directories above the one being read: their paths, each one while it is still open,
    // and where to go on in each.
    let mut above: Vec<(PathBuf, Option<Dir>, i64)> = Vec::new();
    loop {
        let entry = match dir.read() {
            Some(Ok(entry)) => entry,
            end => {
                if let Some(Err(e)) = end {
                    out.unchecked.push((path.clone(), e.to_string()));
                }
                let Some((parent, held, resume)) = above.pop() else {
                    return;
                };
                match held.map_or_else(|| back_up(&dir, resume), Ok) {
                    Ok(up) => {
                        dir = up;
                        path = parent;
                    }
                    Err(e) => {
                        // The rest of every directory above goes unread: said.
                        out.unchecked.push((parent, e.to_string()));
                        out.unchecked
                            .extend(above.into_iter().map(|(p, ..)| (p, e.to_string())));
                        return;
                    }
                }
                continue;
            }
        };
        let name = entry.file_name();
        if matches!(name.to_bytes(), b"." | b"..") {
            continue;
        }
        let child = path.join(OsStr::from_bytes(name.to_bytes()));
        let Ok(fd) = dir.fd() else {
            out.unchecked
                .push((path.clone(), "its directory cannot be read".into()));
            continue;
        };
        let kind = match entry.file_type() {
            FileType::Unknown => match rustix::fs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => FileType::from_raw_mode(st.st_mode),
                Err(e) => {
                    out.unchecked.push((child, e.to_string()));
                    continue;
                }
            },
            kind => kind,
        };
        if name.to_bytes() == b".git" && changed_since(fd, name, since) {
            note_repository(out, child.clone());
        }
        match kind {
            FileType::Directory => {
                if skip.contains(&child) {
                    continue;
                }
                let open = || rustix::fs::openat(fd, name, DIR_FLAGS, Mode::empty());
                let opened = match open() {
                    // Out of descriptors: the directories held above are let go (each is
                    // opened again on the way back), and the child tried once more.
                    Err(Errno::MFILE | Errno::NFILE) => {
                        above.iter_mut().for_each(|(_, held, _)| *held = None);
                        open()
                    }
                    other => other,
                };
                match opened.and_then(Dir::new) {
                    Ok(sub) => {
                        let parent = std::mem::replace(&mut dir, sub);
                        let held = (above.len() < HELD).then_some(parent);
                        above.push((std::mem::replace(&mut path, child), held, entry.offset()));
                    }
                    Err(e) => out.unchecked.push((child, e.to_string())),
                }
            }
            FileType::RegularFile => {
                let changed = check_file(fd, name, child.clone(), since, out);
                if changed {
                    note_changed_repository_file(root, &child, out);
                }
            }
            // Links are not followed (what they point at is under a root or read-only), and
            // no other kind of file runs.
            _ => {}
        }
    }
}

/// How many directories above the one being read stay open: deeper trees are rare, and each
/// level below this costs a reopening and a second read of the rest of its directory.
const HELD: usize = 32;

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// The directory above `dir` (its `..`, which crosses back out of a mount as the walk crossed
/// in), read on from `resume`. Nothing of the agent runs, so it is the one the walk came from.
fn back_up(dir: &Dir, resume: i64) -> rustix::io::Result<Dir> {
    let up = rustix::fs::openat(dir.fd()?, c"..", DIR_FLAGS, Mode::empty())?;
    // A cookie, not a position: passed back bit for bit.
    rustix::fs::seek(&up, rustix::fs::SeekFrom::Start(resume as u64))?;
    Dir::new(up)
}

/// Notes the repository a file changed during the run belongs to: the first `.git` on its way
/// below `root` (a nested repository's config or hook written in place), or the directory it
/// is in when that has the shape of a bare repository (its `HEAD` or `config`).
fn note_changed_repository_file(root: &Path, file: &Path, out: &mut Stripped) {
    let Ok(rel) = file.strip_prefix(root) else {
        return;
    };
    let mut at = root.to_path_buf();
    for part in rel.components() {
        at.push(part);
        if part.as_os_str() == ".git" && at.as_path() != file {
            return note_repository(out, at);
        }
    }
    if matches!(
        file.file_name().and_then(|n| n.to_str()),
        Some("HEAD" | "config")
    ) && let Some(dir) = file.parent()
        && super::super::shaped_like_git_dir(dir)
    {
        note_repository(out, dir.to_path_buf());
    }
}

/// Adds `repo` to what [`Stripped::repositories`] names, once.
fn note_repository(out: &mut Stripped, repo: PathBuf) {
    if !out.repositories.contains(&repo) {
        out.repositories.push(repo);
    }
}

/// Whether the entry `name` in the directory `dir` changed (its change time) at or after
/// `since`; a directory's changes when an entry is made, renamed or removed in it.
fn changed_since(dir: impl AsFd, name: &CStr, since: (i64, i64)) -> bool {
    rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|st| {
        #[allow(clippy::unnecessary_cast)] // the fields' types differ between architectures
        let ctime = (st.st_ctime as i64, st.st_ctime_nsec as i64);
        ctime >= since
    })
}

/// Looks at one regular file in the directory `dir`, and strips it if it changed since the run
/// began and carries a set-ID bit or file capabilities. Whether it changed.
fn check_file(
    dir: impl AsFd,
    name: &CStr,
    path: PathBuf,
    since: (i64, i64),
    out: &mut Stripped,
) -> bool {
    let st = match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(e) => {
            out.unchecked.push((path, e.to_string()));
            return false;
        }
    };
    #[allow(clippy::unnecessary_cast)] // the fields' types differ between architectures
    let changed = (st.st_ctime as i64, st.st_ctime_nsec as i64) >= since;
    if !changed {
        return false;
    }
    let mode = st.st_mode & 0o7777;
    let mut bits = libc::S_ISUID & mode;
    // A set-group-ID bit without group execute marks mandatory locking, not a privilege.
    if mode & libc::S_IXGRP != 0 {
        bits |= libc::S_ISGID & mode;
    }
    if bits != 0 {
        // No link is followed: the file was a regular one, and nothing of the agent runs.
        match rustix::fs::chmodat(
            &dir,
            name,
            Mode::from_raw_mode(mode & !bits),
            AtFlags::empty(),
        ) {
            Ok(()) => {
                if bits & libc::S_ISUID != 0 {
                    out.stripped.push((path.clone(), Privileged::SetUid));
                }
                if bits & libc::S_ISGID != 0 {
                    out.stripped.push((path.clone(), Privileged::SetGid));
                }
            }
            Err(e) => out.failed.push((path.clone(), e.to_string())),
        }
    }
    // The capabilities by the directory's descriptor in /proc and the name, which needs no
    // right to read the file (the agent may have taken it away) and no path of the walk's,
    // which may be longer than the kernel takes.
    let at = {
        let mut p = format!("/proc/self/fd/{}/", dir.as_fd().as_raw_fd()).into_bytes();
        p.extend_from_slice(name.to_bytes());
        std::ffi::OsString::from_vec(p)
    };
    match rustix::fs::lgetxattr_query(&at, CAPABILITY) {
        Ok(_) => match rustix::fs::lremovexattr(&at, CAPABILITY) {
            Ok(()) => out.stripped.push((path, Privileged::Capabilities)),
            Err(e) => out.failed.push((path, e.to_string())),
        },
        Err(Errno::NODATA | Errno::NOTSUP) => {}
        Err(e) => out.unchecked.push((path, e.to_string())),
    }
    true
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    fn program(path: &Path, mode: u32) {
        std::fs::write(path, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn only_what_changed_since_loses_its_bits_and_the_rest_of_its_mode_stays() {
        let root = tempfile::tempdir().unwrap();
        let old = root.path().join("old");
        program(&old, 0o4750);
        let since = SystemTime::now() + std::time::Duration::from_millis(20);
        std::thread::sleep(std::time::Duration::from_millis(40));
        let sub = root.path().join("a/b");
        std::fs::create_dir_all(&sub).unwrap();
        let (u, g, locking) = (sub.join("u"), sub.join("g"), sub.join("locking"));
        program(&u, 0o4711);
        program(&g, 0o2775);
        // Set-group-ID without group execute marks mandatory locking: not a privilege.
        program(&locking, 0o2664);
        let found = strip(&[root.path().to_path_buf()], &[], since);
        assert!(
            found.failed.is_empty() && found.unchecked.is_empty(),
            "{found:?}"
        );
        let mut stripped = found.stripped.clone();
        stripped.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            stripped,
            vec![
                (g.clone(), Privileged::SetGid),
                (u.clone(), Privileged::SetUid)
            ]
        );
        assert_eq!((mode(&u), mode(&g), mode(&locking)), (0o711, 0o775, 0o2664));
        assert_eq!(mode(&old), 0o4750);
    }

    #[test]
    fn a_tree_deeper_than_a_path_may_be_is_walked_to_its_end() {
        let root = tempfile::tempdir().unwrap();
        let since = SystemTime::now() - std::time::Duration::from_secs(2);
        // 600 levels of 10 bytes: 6,600 bytes of path, past the kernel's 4,096.
        let mut dir = rustix::fs::open(
            root.path(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        for _ in 0..600 {
            rustix::fs::mkdirat(&dir, "123456789", Mode::from_raw_mode(0o755)).unwrap();
            dir = rustix::fs::openat(
                &dir,
                "123456789",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .unwrap();
        }
        let file = rustix::fs::openat(
            &dir,
            "deep",
            OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o755),
        )
        .unwrap();
        rustix::fs::fchmod(&file, Mode::from_raw_mode(0o4755)).unwrap();
        let found = strip(&[root.path().to_path_buf()], &[], since);
        assert!(
            found.failed.is_empty() && found.unchecked.is_empty(),
            "{found:?}"
        );
        assert_eq!(found.stripped.len(), 1);
        assert!(found.stripped[0].0.as_os_str().len() > 6_000);
        let st = rustix::fs::fstat(&file).unwrap();
        assert_eq!(st.st_mode & 0o7777, 0o755);
    }

    #[test]
    fn the_walk_goes_on_after_each_directory_it_left() {
        // The walk leaves a directory for each child and comes back through `..` to where it
        // was: every entry after a subdirectory must still be read, in a directory large
        // enough to take several reads of its entries.
        let root = tempfile::tempdir().unwrap();
        let since = SystemTime::now() - std::time::Duration::from_secs(2);
        for i in 0..300 {
            let sub = root.path().join(format!("sub-{i}"));
            std::fs::create_dir(&sub).unwrap();
            program(&sub.join("p"), 0o4755);
            program(
                &root.path().join(format!("file-with-a-long-name-{i:04}")),
                0o4755,
            );
        }
        let found = strip(&[root.path().to_path_buf()], &[], since);
        assert!(
            found.failed.is_empty() && found.unchecked.is_empty(),
            "{found:?}"
        );
        assert_eq!(found.stripped.len(), 600);
        let mut paths: Vec<_> = found.stripped.iter().map(|(p, _)| p.clone()).collect();
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), 600);
    }

    #[test]
    fn links_are_not_followed_and_skipped_paths_are_not_entered() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let since = SystemTime::now() - std::time::Duration::from_secs(2);
        let target = outside.path().join("target");
        program(&target, 0o4755);
        std::os::unix::fs::symlink(&target, root.path().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("dirlink")).unwrap();
        let hidden = root.path().join("hidden");
        std::fs::create_dir(&hidden).unwrap();
        program(&hidden.join("kept"), 0o4755);
        let found = strip(
            &[root.path().to_path_buf()],
            std::slice::from_ref(&hidden),
            since,
        );
        assert!(
            found.stripped.is_empty() && found.unchecked.is_empty(),
            "{found:?}"
        );
        assert_eq!(
            (mode(&target), mode(&hidden.join("kept"))),
            (0o4755, 0o4755)
        );
    }

    #[test]
    fn a_root_inside_another_is_walked_once() {
        let root = tempfile::tempdir().unwrap();
        let since = SystemTime::now() - std::time::Duration::from_secs(2);
        let inner = root.path().join("inner");
        std::fs::create_dir(&inner).unwrap();
        program(&inner.join("p"), 0o4755);
        let roots = [inner.clone(), root.path().to_path_buf(), inner.clone()];
        let found = strip(&roots, &[], since);
        assert_eq!(found.stripped, vec![(inner.join("p"), Privileged::SetUid)]);
    }
}
