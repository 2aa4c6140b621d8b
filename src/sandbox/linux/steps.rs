//! The kernel-facing steps of the Linux sandbox's helper: mounts that cover and protect paths,
//! the loopback interface of a fresh network namespace, the Landlock ruleset and the seccomp
//! filter. Each step reports a [`StepError`]; none of them decides policy.

use std::os::fd::{AsRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope,
};
use rustix::mount::MountFlags;

use super::super::GIT_ENTRIES;
use super::{DEVICES, StepError, step};

pub(super) fn mount_err(what: impl Into<String>) -> impl FnOnce(rustix::io::Errno) -> StepError {
    let what = what.into();
    move |e| {
        let err = StepError::new(format!("{what}: {e}"));
        if e == rustix::io::Errno::PERM || e == rustix::io::Errno::ACCESS {
            err.hint(
                "the user namespace grants no mount rights here (AppArmor's \
                 restrict_unprivileged_userns does this); allow till a user namespace \
                 profile, or run without --sandbox",
            )
        } else {
            err
        }
    }
}

/// A fresh tmpfs on `dir`; read-only and empty when `read_only` (to hide what is beneath).
pub(super) fn tmpfs(dir: &Path, options: &str, read_only: bool) -> Result<(), StepError> {
    let mut flags = MountFlags::NOSUID | MountFlags::NODEV;
    if read_only {
        flags |= MountFlags::RDONLY | MountFlags::NOEXEC;
    }
    let data = std::ffi::CString::new(options).expect("mount options have no NUL");
    rustix::mount::mount("tmpfs", dir, "tmpfs", flags, data.as_c_str()).map_err(mount_err(format!(
        "cannot mount a tmpfs on {}",
        dir.display()
    )))
}

/// A `/proc` of the sandbox's own pid namespace over the host's, so the agent sees its own
/// processes only (not the command lines of yours). A proc mount shows the pid namespace of
/// the process that mounts it: the namespace's init mounts it.
pub(super) fn own_proc() -> Result<(), StepError> {
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    rustix::mount::mount("proc", "/proc", "proc", flags, c"")
        .map_err(mount_err("cannot mount a /proc of the sandbox's own"))
}

/// Device files of the host the agent's `/dev` holds (bound from the host's own nodes, since a
/// user namespace may not make device files): what bubblewrap's `--dev` gives.
const DEV_NODES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// A `/dev` of the sandbox's own, over the host's: a tmpfs with [`DEV_NODES`], the usual links
/// (`fd`, `stdin`, `stdout`, `stderr`, `ptmx`), an empty `shm`, a devpts instance of its own on
/// `pts`, and the agent's terminal (from [`own_terminal`]) on `console`.
///
/// Nothing else of the host's `/dev` is there: not its disks (root, or a member of `disk`,
/// reads a filesystem raw past every cover with them: `debugfs` copies `secrets.age` out of
/// a hidden directory), memory (`/dev/mem`, `/dev/kmsg`), input devices (the keyboard),
/// consoles and their screens (`/dev/ttyN`, `/dev/vcs*`: what is typed and shown there),
/// nor your other terminals (`/dev/pts/N`, where you may type a root key at `till add`'s
/// prompt). The agent keeps its own terminal through the descriptors it inherited and
/// `/dev/tty`; programs that look it up by name (`tty`, `GPG_TTY=$(tty)`) find it on
/// `/dev/console`, as under bubblewrap.
pub(super) fn own_dev(terminal: Option<&OwnedFd>) -> Result<(), StepError> {
    use rustix::fs::{Mode, OFlags};
    // Handles on the host's nodes, taken before the tmpfs covers them.
    let nodes: Vec<(&str, OwnedFd)> = DEV_NODES
        .iter()
        .filter_map(|name| {
            let fd = rustix::fs::open(
                Path::new("/dev").join(name),
                OFlags::PATH | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .ok()?;
            Some((*name, fd))
        })
        .collect();
    let dev = Path::new("/dev");
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    rustix::mount::mount("tmpfs", dev, "tmpfs", flags, c"mode=755")
        .map_err(mount_err("cannot mount a /dev of the sandbox's own"))?;
    // Read-only binds: a device node is read and written as on a writable mount (a read-only
    // mount does not stop writes to a device), but its mode, owner and times cannot be changed
    // through it, which on a writable bind reached the host's node (`chmod 000 /dev/null`
    // from a root till's agent broke every other program on the machine; `chmod 0666` on the
    // terminal left it open to every user).
    let bind = |fd: &OwnedFd, name: &str| {
        let target = dev.join(name);
        std::fs::File::create(&target)
            .map_err(step(format!("cannot create {}", target.display())))?;
        let source = format!("/proc/self/fd/{}", fd.as_raw_fd());
        bind_read_only(Path::new(&source), &target)
    };
    for (name, fd) in &nodes {
        bind(fd, name)?;
    }
    for (name, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        std::os::unix::fs::symlink(to, dev.join(name))
            .map_err(step(format!("cannot link /dev/{name}")))?;
    }
    for dir in ["pts", "shm"] {
        std::fs::create_dir(dev.join(dir)).map_err(step(format!("cannot create /dev/{dir}")))?;
    }
    // The ptys the agent makes are in this instance; `/dev/ptmx` opens it.
    rustix::mount::mount(
        "devpts",
        "/dev/pts",
        "devpts",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        c"mode=620,ptmxmode=666",
    )
    .map_err(mount_err("cannot mount a /dev/pts of the sandbox's own"))?;
    if let Some(terminal) = terminal {
        bind(terminal, "console")?;
    }
    Ok(())
}

/// The agent's own terminal, found by name (the first of its standard descriptors that is a
/// terminal, at the path the descriptor's link in `/proc` gives, checked to be the same
/// device), held open by path before [`own_dev`] covers the host's `/dev`.
pub(super) fn own_terminal() -> Option<OwnedFd> {
    use std::io::IsTerminal as _;
    use std::os::fd::AsFd as _;
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let stdio = [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()];
    stdio.into_iter().enumerate().find_map(|(n, fd)| {
        if !fd.is_terminal() {
            return None;
        }
        let name = std::fs::read_link(format!("/proc/self/fd/{n}")).ok()?;
        let held = rustix::fs::open(
            &name,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .ok()?;
        let (a, b) = (rustix::fs::fstat(fd).ok()?, rustix::fs::fstat(&held).ok()?);
        (a.st_rdev == b.st_rdev && a.st_ino == b.st_ino && a.st_dev == b.st_dev).then_some(held)
    })
}

/// Creates an empty directory or file at `p` (inside a fresh tmpfs) to bind `fd` onto.
pub(super) fn make_mount_point(p: &Path, fd: &OwnedFd) -> Result<(), StepError> {
    let is_dir = rustix::fs::fstat(fd)
        .map(|st| {
            rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory
        })
        .unwrap_or(true);
    let made = if is_dir {
        std::fs::create_dir_all(p)
    } else {
        p.parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::File::create(p).map(drop))
    };
    made.map_err(step(format!("cannot recreate {}", p.display())))
}

/// Binds `source` onto `target` read-only. The remount repeats the flags the kernel locked on
/// the original mount (nosuid, nodev, noexec, atime), which a user namespace may not clear.
pub(super) fn bind_read_only(source: &Path, target: &Path) -> Result<(), StepError> {
    rustix::mount::mount_bind(source, target)
        .map_err(mount_err(format!("cannot bind {}", target.display())))?;
    let st =
        rustix::fs::statvfs(target).map_err(step(format!("cannot stat {}", target.display())))?;
    let mut flags = MountFlags::BIND | MountFlags::RDONLY;
    for (have, keep) in [
        (rustix::fs::StatVfsMountFlags::NOSUID, MountFlags::NOSUID),
        (rustix::fs::StatVfsMountFlags::NODEV, MountFlags::NODEV),
        (rustix::fs::StatVfsMountFlags::NOEXEC, MountFlags::NOEXEC),
        (rustix::fs::StatVfsMountFlags::NOATIME, MountFlags::NOATIME),
        (
            rustix::fs::StatVfsMountFlags::NODIRATIME,
            MountFlags::NODIRATIME,
        ),
        (
            rustix::fs::StatVfsMountFlags::RELATIME,
            MountFlags::RELATIME,
        ),
    ] {
        if st.f_flag.contains(have) {
            flags |= keep;
        }
    }
    rustix::mount::mount_remount(target, flags, "").map_err(mount_err(format!(
        "cannot make {} read-only",
        target.display()
    )))
}

/// Makes every mount of the host read-only in the agent's namespace but those at or under
/// `keep` (the working directory, the writable paths, the private mounts, `/proc` and `/dev`),
/// after making each of `roots` (the working directory and the writable paths) a mount of its
/// own, so the flag set on the mount it lies in does not reach it. Landlock decides who may
/// write a file's contents, not who may change its mode, owner, times or extended attributes:
/// without this an agent could `chmod 000` a directory above till's home (the next run fails)
/// or `chmod 0666` a file of yours, neither of which it may write. The mounts are locked with
/// these flags when the agent's own user namespace is made ([`super::lock_mounts`]).
pub(super) fn read_only_elsewhere(roots: &[PathBuf], keep: &[PathBuf]) -> Result<(), StepError> {
    for r in roots {
        rustix::mount::mount_bind_recursive(r, r)
            .map_err(mount_err(format!("cannot keep {} writable", r.display())))?;
    }
    let table = std::fs::read("/proc/self/mountinfo").map_err(step("cannot read the mounts"))?;
    for point in mount_points(&table) {
        if super::super::under_any(&point, keep) {
            continue;
        }
        match set_read_only(&point) {
            // A mount point the agent cannot reach (covered, or no longer there): nothing to do.
            Ok(())
            | Err(
                rustix::io::Errno::NOENT
                | rustix::io::Errno::NOTDIR
                | rustix::io::Errno::ACCESS
                | rustix::io::Errno::LOOP,
            ) => {}
            Err(e) => {
                return Err(mount_err(format!(
                    "cannot make {} read-only",
                    point.display()
                ))(e));
            }
        }
    }
    Ok(())
}

/// The mount points `/proc/self/mountinfo` lists (its fifth field, with the kernel's octal
/// escapes for space, tab, newline and backslash read back).
pub(super) fn mount_points(table: &[u8]) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStringExt as _;
    let mut out = Vec::new();
    for line in table.split(|&b| b == b'\n') {
        let Some(field) = line.split(|&b| b == b' ').nth(4) else {
            continue;
        };
        let mut bytes = Vec::with_capacity(field.len());
        let mut i = 0;
        while i < field.len() {
            if field[i] == b'\\'
                && let Some(code) = field.get(i + 1..i + 4)
                && code.iter().all(|d| (b'0'..=b'7').contains(d))
            {
                bytes.push(code.iter().fold(0u8, |n, d| n.wrapping_mul(8) + (d - b'0')));
                i += 4;
            } else {
                bytes.push(field[i]);
                i += 1;
            }
        }
        out.push(PathBuf::from(std::ffi::OsString::from_vec(bytes)));
    }
    out
}

/// `mount_setattr(2)`'s attributes (`struct mount_attr`).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `mount_setattr` (Linux 5.12), 442 on every architecture.
const MOUNT_SETATTR: libc::c_long = 442;
const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// Sets the read-only flag of the one mount at `point` (not those below it), leaving its other
/// flags as they are (a user namespace may not clear the ones the kernel locked).
fn set_read_only(point: &Path) -> Result<(), rustix::io::Errno> {
    use std::os::unix::ffi::OsStrExt as _;
    let path = std::ffi::CString::new(point.as_os_str().as_bytes())
        .map_err(|_| rustix::io::Errno::INVAL)?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: a NUL-terminated path and a `struct mount_attr` of the size given, both alive for
    // the call; AT_SYMLINK_NOFOLLOW is not asked for, so a link is followed as the agent would.
    let done = unsafe {
        libc::syscall(
            MOUNT_SETATTR,
            libc::AT_FDCWD,
            path.as_ptr(),
            0,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if done == 0 {
        Ok(())
    } else {
        Err(rustix::io::Errno::from_raw_os_error(
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        ))
    }
}

/// Hides `p`: an empty read-only tmpfs over a directory, `json` (a file holding `{}`) over a
/// `.json` file when given, `/dev/null` over anything else.
pub(super) fn hide(p: &Path, json: Option<&Path>) -> Result<(), StepError> {
    let Ok(meta) = std::fs::symlink_metadata(p) else {
        // Under a private mount now, or gone: nothing to hide.
        return Ok(());
    };
    if meta.is_dir() {
        return tmpfs(p, "mode=555,size=4k", true);
    }
    match json {
        Some(cover) if meta.is_file() && p.extension().is_some_and(|e| e == "json") => {
            bind_read_only(cover, p)
        }
        _ => bind_read_only(Path::new("/dev/null"), p),
    }
}

/// A read-only file holding `{}` in the private `/tmp`, for [`hide`] to put over hidden JSON
/// files (a program that parses one then finds no key, where an empty file is an error to
/// it). Its name is removed once the covers are on; they keep the file.
pub(super) fn json_cover() -> Result<PathBuf, StepError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = PathBuf::from(format!("/tmp/.till-json-cover-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(&path)
        .map_err(step(format!("cannot create {}", path.display())))?;
    file.write_all(b"{}\n")
        .map_err(step(format!("cannot write {}", path.display())))?;
    Ok(path)
}

/// Makes the working directory's `.git` a mount point (so it cannot be renamed away and
/// replaced) and what decides what git runs read-only: `hooks`, `config`, `config.worktree`
/// (made empty where there is none), `info` (its `exclude` hides files from review), and the git
/// directories of submodules (`modules`) and worktrees (`worktrees`). A `commondir` the agent
/// creates, and a `HEAD` it breaks, are seen to after the run ([`super::super::Sandbox`]).
///
/// Where one of them, or `.git` itself, or a hook, is a symbolic link (`.git/hooks` →
/// `../.githooks`, a `git-new-workdir` checkout's `config` and `refs`), the read-only bind
/// lands on what it leads to, and the way there is pinned ([`pin_way`]): the link itself, and
/// every directory on the way below a writable root, become mount points, which cannot be
/// removed or renamed. (A link to nothing refuses the run before this, in `resolve`.)
/// `roots` are the working directory and the other writable paths.
pub(super) fn protect_git(cwd: &Path, writable: bool, roots: &[PathBuf]) -> Result<(), StepError> {
    let dot_git = cwd.join(".git");
    let Ok(meta) = std::fs::symlink_metadata(&dot_git) else {
        return Ok(());
    };
    if writable {
        return Ok(());
    }
    let unreachable = |dir: &Path| {
        StepError::new(format!(
            "{} leads to {}, which the sandbox cannot reach (under its private /tmp?): the agent could put a repository of its own in its place",
            dot_git.display(),
            dir.display()
        ))
        .hint("move the git directory out of /tmp, or run without --sandbox")
    };
    if meta.is_symlink() {
        let Ok(real) = std::fs::canonicalize(&dot_git) else {
            return Err(unreachable(
                &std::fs::read_link(&dot_git).unwrap_or_default(),
            ));
        };
        pin_way(&dot_git, roots, &real)?;
        return protect_git_dir(&real, roots);
    }
    if meta.is_file() {
        // A `.git` file names the git directory: a linked worktree's or a submodule's, outside
        // the working directory and so read-only already, or one made with
        // `--separate-git-dir`, or a worktree's whose main repository is a writable path:
        // those (and the main repository's) are protected as `.git` is, with the way to them
        // pinned. The file itself stays in place.
        bind_read_only(&dot_git, &dot_git)?;
        let Some((dir, common)) = super::super::git_dirs(cwd) else {
            return Ok(());
        };
        // A git directory that is itself a writable path is one the agent may write too.
        let under_a_root = |p: &Path| roots.iter().any(|r| p.starts_with(r));
        let real = |named: &Path| std::fs::canonicalize(named).map_err(|_| unreachable(named));
        let (dir_real, common_real) = (real(&dir)?, real(&common)?);
        if !under_a_root(&common_real) {
            return Ok(());
        }
        pin_way(&common, roots, &common_real)?;
        return if dir_real == common_real {
            protect_git_dir(&common_real, roots)
        } else {
            protect_worktree(&dir_real, &common_real, roots)
        };
    }
    protect_git_dir(&dot_git, roots)
}

/// Makes each submodule working tree's `.git` in `gits` read-only (a file naming the git
/// directory under `.git/modules`) or protected as the working directory's is (an older
/// submodule's own directory; one that is a link is pinned). The directories above stay free
/// to rename (pinning them would make every move of a file out of them fail with `EXDEV`):
/// a `.git` put in place of one of these, with its directory moved away and made again, is
/// moved aside after the run.
pub(super) fn protect_submodules(gits: &[PathBuf], roots: &[PathBuf]) -> Result<(), StepError> {
    for git in gits {
        let Ok(meta) = std::fs::symlink_metadata(git) else {
            continue;
        };
        if meta.is_symlink() {
            pin_link(git)?;
            if let Ok(real) = std::fs::canonicalize(git)
                && real.is_dir()
                && roots.iter().any(|r| real.starts_with(r))
            {
                protect_git_dir(&real, roots)?;
            }
        } else if meta.is_dir() {
            protect_git_dir(git, roots)?;
        } else {
            bind_read_only(git, git)?;
        }
    }
    Ok(())
}

/// A linked worktree's git directory `dir` and the main repository's `common`, where the agent
/// may write (the main repository is a writable path, so that commits from the worktree go):
/// the main one is protected as the working directory's `.git` is ([`protect_git_dir`]: its
/// config, hooks, info, modules and the other worktrees read-only, objects and refs mount
/// points), and the worktree's own, under `common/worktrees`, is put back writable on top, for
/// its `HEAD` and index, with its `commondir`, `gitdir`, `config.worktree` (made empty where
/// there is none) and `modules` read-only.
fn protect_worktree(dir: &Path, common: &Path, roots: &[PathBuf]) -> Result<(), StepError> {
    use rustix::mount::OpenTreeFlags;
    // The worktree's directory as it is now, writable, to put back over the read-only
    // `worktrees` the main one's protection binds.
    let err = || mount_err(format!("cannot bind {}", dir.display()));
    let writable = clone_tree(dir, OpenTreeFlags::AT_RECURSIVE).map_err(err())?;
    protect_git_dir(common, roots)?;
    attach_tree(&writable, dir).map_err(err())?;
    let worktree = dir.join("config.worktree");
    stand_in(&worktree)?;
    for entry in [
        dir.join("commondir"),
        dir.join("gitdir"),
        worktree,
        dir.join("modules"),
    ] {
        if entry.exists() {
            bind_read_only(&entry, &entry)?;
        }
    }
    Ok(())
}

/// [`protect_git`]'s work on the git directory `git` (canonical).
fn protect_git_dir(git: &Path, roots: &[PathBuf]) -> Result<(), StepError> {
    let git = git.to_path_buf();
    if !git.is_dir() {
        return Ok(());
    }
    // The links among the entries, with the way to each pinned before the binds (a bind of a
    // directory on the way would not carry a mount made below it first).
    for name in GIT_ENTRIES {
        let entry = git.join(name);
        if std::fs::symlink_metadata(&entry).is_ok_and(|m| m.is_symlink()) {
            pin_way(&entry, roots, &git)?;
        }
    }
    rustix::mount::mount_bind_recursive(&git, &git)
        .map_err(mount_err(format!("cannot bind {}", git.display())))?;
    // Without `objects` or `refs`, `.git` is no repository to git, which then reads the
    // working directory as a bare one of the agent's making (config, pager and all): as mount
    // points they can be written in but neither renamed nor removed.
    for dir in ["objects", "refs"] {
        let dir = git.join(dir);
        if dir.is_dir() {
            rustix::mount::mount_bind(&dir, &dir)
                .map_err(mount_err(format!("cannot bind {}", dir.display())))?;
        }
    }
    // Where git finds commands to run: the hooks; the submodules' own git directories (their
    // config and hooks run at a plain `git status` in the parent); linked worktrees' (their
    // `commondir` names where config and hooks come from). An empty one is made where there is
    // none, so the agent cannot create it later; git reads an empty one as none.
    for dir in ["hooks", "modules", "worktrees", "info"] {
        let dir = git.join(dir);
        if std::fs::symlink_metadata(&dir).is_err() {
            std::fs::create_dir(&dir).map_err(step(format!("cannot create {}", dir.display())))?;
        }
        bind_read_only(&dir, &dir)?;
    }
    // A hook that is a link to a script elsewhere (in the project, or in `.git` itself): git
    // runs the script. The submodules' hooks too, under `modules`.
    for hooks in hooks_dirs(&git) {
        protect_hook_links(&hooks, &git, roots)?;
    }
    let config = git.join("config");
    if config.exists() {
        bind_read_only(&config, &config)?;
    }
    // Read as config wherever `extensions.worktreeConfig` is on: an empty one is made where
    // there is none (and taken away after the run), so the agent cannot create it with a
    // command for git to run.
    let worktree = git.join("config.worktree");
    stand_in(&worktree)?;
    bind_read_only(&worktree, &worktree)?;
    Ok(())
}

/// The hooks directories of the git directory `git` and of its submodules' (under
/// `modules`, three levels of submodules down, where git keeps them).
fn hooks_dirs(git: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![(git.to_path_buf(), 0)];
    while let Some((dir, depth)) = todo.pop() {
        let hooks = dir.join("hooks");
        if hooks.is_dir() {
            found.push(hooks);
        }
        if depth < 3 {
            // A submodule's name may hold `/`: its directory is a git directory once it
            // holds `HEAD`; otherwise go one level further in.
            let mut under = vec![(dir.join("modules"), 0)];
            while let Some((at, level)) = under.pop() {
                for entry in std::fs::read_dir(&at).into_iter().flatten().flatten() {
                    let path = entry.path();
                    if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                        continue;
                    }
                    if path.join("HEAD").exists() {
                        todo.push((path, depth + 1));
                    } else if level < 4 {
                        under.push((path, level + 1));
                    }
                }
            }
        }
    }
    found
}

/// Makes what each hook in `hooks` that is a symbolic link leads to read-only, with the way to
/// it pinned: in the project ([`pin_way`]), or inside the git directory `git` itself, whose
/// directories are not mounts of their own (`git/hooks` and `git/modules` are read-only
/// already).
fn protect_hook_links(hooks: &Path, git: &Path, roots: &[PathBuf]) -> Result<(), StepError> {
    let entries =
        std::fs::read_dir(hooks).map_err(step(format!("cannot read {}", hooks.display())))?;
    for entry in entries.flatten() {
        let hook = entry.path();
        if !std::fs::symlink_metadata(&hook).is_ok_and(|m| m.is_symlink()) {
            continue;
        }
        let Ok(real) = std::fs::canonicalize(&hook) else {
            continue;
        };
        if [git.join("hooks"), git.join("modules")]
            .iter()
            .any(|ro| real.starts_with(ro))
        {
            continue;
        }
        if real.starts_with(git) {
            for dir in super::super::between_writable_and_hidden(
                std::slice::from_ref(&real),
                &[git.to_path_buf()],
            ) {
                rustix::mount::mount_bind_recursive(&dir, &dir)
                    .map_err(mount_err(format!("cannot pin {}", dir.display())))?;
            }
        } else {
            pin_way(&hook, roots, git)?;
        }
        bind_read_only(&real, &real)?;
    }
    Ok(())
}

/// Pins the way from the symbolic link `link` to what it leads to, where the agent could turn
/// it: every link met on the way (the kernel follows links in links' targets too) becomes a
/// mount point of itself, which cannot be removed or renamed, and so does every directory on
/// the way that lies below one of `roots` (the writable paths): those the walk leaves by `..`,
/// those above each link, and those above what it leads to. Nothing inside `git` (a mount of
/// its own, with its entries handled by [`protect_git`]) is pinned again.
fn pin_way(link: &Path, roots: &[PathBuf], git: &Path) -> Result<(), StepError> {
    let way = super::super::links_on_the_way(link);
    let below_a_root = |p: &Path| {
        roots.iter().any(|r| p.starts_with(r) && p != r.as_path()) && !p.starts_with(git)
    };
    let ends: Vec<PathBuf> = way
        .iter()
        .cloned()
        .chain(std::fs::canonicalize(link).ok())
        .collect();
    for dir in super::super::between_writable_and_hidden(&ends, roots) {
        if below_a_root(&dir) && std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            rustix::mount::mount_bind_recursive(&dir, &dir)
                .map_err(mount_err(format!("cannot pin {}", dir.display())))?;
        }
    }
    for p in way
        .iter()
        .filter(|p| below_a_root(p) || p.as_path() == link)
    {
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.is_symlink() => pin_link(p)?,
            Ok(m) if m.is_dir() => rustix::mount::mount_bind_recursive(p, p)
                .map_err(mount_err(format!("cannot pin {}", p.display())))?,
            _ => {}
        }
    }
    Ok(())
}

/// Makes the symbolic link `link` a mount point of itself (a clone of the link, not of what it
/// leads to, mounted on the link): it then can be neither removed nor renamed, and resolves as
/// before. `mount(2)` follows a link; `open_tree` and `move_mount` can be told not to.
fn pin_link(link: &Path) -> Result<(), StepError> {
    let err = || mount_err(format!("cannot pin the link {}", link.display()));
    let tree = clone_tree(link, rustix::mount::OpenTreeFlags::AT_SYMLINK_NOFOLLOW).map_err(err())?;
    attach_tree(&tree, link).map_err(err())
}

/// A detached copy of the mount tree at `path` (`open_tree` with `OPEN_TREE_CLONE` and
/// `flags`), to put somewhere with [`attach_tree`].
fn clone_tree(path: &Path, flags: rustix::mount::OpenTreeFlags) -> rustix::io::Result<OwnedFd> {
    use rustix::mount::OpenTreeFlags;
    rustix::mount::open_tree(
        rustix::fs::CWD,
        path,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC | flags,
    )
}

/// Mounts the detached `tree` on `at`, not following a link there (`move_mount` does not
/// unless told to).
fn attach_tree(tree: &OwnedFd, at: &Path) -> rustix::io::Result<()> {
    rustix::mount::move_mount(
        tree,
        "",
        rustix::fs::CWD,
        at,
        rustix::mount::MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
}

/// Makes an empty file at `path` where there is none, for a read-only bind to cover (git would
/// read one the agent wrote there), leaving one that is there as it is.
fn stand_in(path: &Path) -> Result<(), StepError> {
    match std::fs::File::create_new(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(step(format!("cannot create {}", path.display()))(e)),
    }
}

/// Brings `lo` up in the new network namespace (it starts down, without 127.0.0.1). No
/// maintained crate offers this short of a netlink stack, so it is the classic ioctl pair.
pub(super) fn loopback_up() -> std::io::Result<()> {
    let sock = rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        None,
    )?;
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: both ioctls read (and SIOCGIFFLAGS writes) one ifreq that outlives the call.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Landlock: writes only beneath `writable` (and to a few device files); no signals to, and
/// no `ptrace` of, processes outside the sandbox (till); no abstract unix sockets made outside
/// it (a session bus on an abstract address). Reads stay allowed: the mounts hide what must
/// not be read, since Landlock cannot carve a hidden directory out of a readable tree.
pub(super) fn landlock(writable: &[PathBuf]) -> Result<(), StepError> {
    let write = AccessFs::from_write(ABI::V3);
    let device = AccessFs::WriteFile | AccessFs::Truncate;
    let landlock_err = step("Landlock");
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(write)
        .and_then(|r| r.scope(Scope::from_all(ABI::V6)))
        .and_then(|r| r.create())
        .map_err(landlock_err)?;
    for p in writable {
        let fd = PathFd::new(p).map_err(step(format!("cannot open {}", p.display())))?;
        let access = if p.is_dir() {
            write
        } else {
            write & AccessFs::from_file(ABI::V3)
        };
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, access))
            .map_err(step(format!("Landlock rule for {}", p.display())))?;
    }
    for d in DEVICES {
        if let Ok(fd) = PathFd::new(d) {
            ruleset = ruleset
                .add_rule(PathBeneath::new(fd, device))
                .map_err(step(format!("Landlock rule for {d}")))?;
        }
    }
    let status = ruleset.restrict_self().map_err(step("Landlock"))?;
    if status.ruleset != RulesetStatus::FullyEnforced {
        return Err(StepError::new(format!(
            "Landlock is only partly enforced ({:?})",
            status.ruleset
        )));
    }
    Ok(())
}

/// seccomp: refuses the kernel's key management (`keyctl`, `add_key`, `request_key`: see
/// [`KEY_CALLS`]), and of the ioctls `TIOCSTI` and `TIOCLINUX`, which push keystrokes into
/// the terminal's input (to run commands in the user's shell once the agent exits), and the terminal
/// controls that outlast the agent: a line discipline (`TIOCSETD`), output stopped (`TCXONC`:
/// till then hangs writing its last lines, and ^Q does not start it again) and exclusive mode
/// (`TIOCEXCL`: nothing can open your terminal after the run). Landlock has no rule for ioctl
/// commands on a terminal the agent inherited.
pub(super) fn seccomp() -> Result<(), StepError> {
    use seccompiler::{
        SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    };
    let arch = seccompiler::TargetArch::try_from(std::env::consts::ARCH).map_err(|e| {
        StepError::new(format!(
            "--sandbox needs a seccomp filter, which till cannot make on this architecture: {e}"
        ))
        .hint("run without --sandbox")
    })?;
    let rule = |cmd: u64| {
        SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, cmd)
            .and_then(|c| SeccompRule::new(vec![c]))
    };
    let filter = rule(TIOCSTI)
        .and_then(|a| {
            Ok(vec![
                a,
                rule(TIOCLINUX)?,
                rule(TIOCSETD)?,
                rule(TCXONC)?,
                rule(TIOCEXCL)?,
            ])
        })
        .and_then(|rules| {
            // On x86_64 the x32 ABI's ioctl has a number of its own (with the x32 bit), under
            // the same architecture tag: refused alike, or it would pass where x32 is on.
            #[cfg(target_arch = "x86_64")]
            let mut numbers = vec![(libc::SYS_ioctl, rules.clone()), (X32_IOCTL, rules)];
            #[cfg(not(target_arch = "x86_64"))]
            let mut numbers = vec![(libc::SYS_ioctl, rules)];
            // The kernel's key management, whole (no rules: every call): the user's own
            // keyrings (`_uid.N`, `_uid_ses.N`) are listed in `/proc/keys` and let their owner
            // link them into a keyring of the agent's, which makes every key in them readable.
            for call in KEY_CALLS {
                numbers.push((call, Vec::new()));
                #[cfg(target_arch = "x86_64")]
                numbers.push((X32 | call, Vec::new()));
            }
            // A mode with the set-user-ID or set-group-ID bit, given to any file the agent may
            // name: Landlock has no right for a file's mode, so an agent could make a program
            // of the host set-user-ID (set-user-root when till runs as root) and leave it so.
            for (call, mode_arg) in MODE_CALLS {
                let bits = [SET_UID, SET_GID]
                    .into_iter()
                    .map(|bit| {
                        SeccompCondition::new(
                            mode_arg,
                            SeccompCmpArgLen::Dword,
                            SeccompCmpOp::MaskedEq(bit),
                            bit,
                        )
                        .and_then(|c| SeccompRule::new(vec![c]))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                #[cfg(target_arch = "x86_64")]
                numbers.push((X32 | call, bits.clone()));
                numbers.push((call, bits));
            }
            SeccompFilter::new(
                numbers.into_iter().collect(),
                SeccompAction::Allow,
                SeccompAction::Errno(libc::EPERM as u32),
                arch,
            )
        })
        .map_err(step("seccomp filter"))?;
    let program: seccompiler::BpfProgram = filter.try_into().map_err(step("seccomp filter"))?;
    seccompiler::apply_filter(&program).map_err(step("seccomp filter"))?;
    // A second filter for the calls that answer as if the kernel had none of them.
    let mut absent = Vec::new();
    for call in ABSENT_CALLS {
        absent.push((call, Vec::new()));
        #[cfg(target_arch = "x86_64")]
        absent.push((X32 | call, Vec::new()));
    }
    let absent: seccompiler::BpfProgram = SeccompFilter::new(
        absent.into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .and_then(TryInto::try_into)
    .map_err(step("seccomp filter"))?;
    seccompiler::apply_filter(&absent).map_err(step("seccomp filter"))
}

/// The capabilities that let a file the agent leaves behind give privilege to whoever runs it
/// later: setting a file's capabilities (`setcap cap_setuid+ep`, honoured outside when the
/// agent's root is the host's, as it is when till runs as root) and keeping a set-ID bit
/// through a write (`CAP_FSETID`). Dropped from the bounding set, so no program the agent runs
/// gets them back, and from the agent's own sets; the ambient set is cleared.
pub(super) fn drop_file_privileges() -> Result<(), StepError> {
    use rustix::thread::{
        CapabilitySet, capabilities, clear_ambient_capability_set,
        remove_capability_from_bounding_set, set_capabilities,
    };
    for (cap, name) in [
        (CapabilitySet::SETFCAP, "CAP_SETFCAP"),
        (CapabilitySet::FSETID, "CAP_FSETID"),
    ] {
        remove_capability_from_bounding_set(cap).map_err(|e| {
            StepError::new(format!(
                "cannot drop {name} from the agent's capability bounding set: {e}"
            ))
        })?;
    }
    clear_ambient_capability_set().map_err(|e| {
        StepError::new(format!(
            "cannot clear the agent's ambient capabilities: {e}"
        ))
    })?;
    let mut sets = capabilities(None)
        .map_err(|e| StepError::new(format!("cannot read the agent's capabilities: {e}")))?;
    let gone = CapabilitySet::SETFCAP | CapabilitySet::FSETID;
    sets.effective.remove(gone);
    sets.permitted.remove(gone);
    sets.inheritable.remove(gone);
    set_capabilities(None, sets)
        .map_err(|e| StepError::new(format!("cannot drop the agent's capabilities: {e}")))
}

/// The ioctl numbers on every architecture seccompiler supports (x86_64, aarch64, riscv64
/// share the generic tty ioctls).
pub(super) const TIOCSTI: u64 = 0x5412;
/// The bit of x32's system call numbers.
#[cfg(target_arch = "x86_64")]
const X32: i64 = 0x4000_0000;
/// x32's `ioctl`: its table's 514 with the x32 bit.
#[cfg(target_arch = "x86_64")]
const X32_IOCTL: i64 = X32 | 514;
/// The calls that set a file's mode, with the index of their mode argument (x32 shares
/// x86_64's numbers for them). `openat2` carries its mode in a structure no filter can read:
/// it can only make a file where Landlock lets the agent write.
#[cfg(target_arch = "x86_64")]
const MODE_CALLS: [(i64, u8); 9] = [
    (libc::SYS_chmod, 1),
    (libc::SYS_fchmod, 1),
    (libc::SYS_fchmodat, 2),
    (FCHMODAT2, 2),
    (libc::SYS_open, 2),
    (libc::SYS_openat, 3),
    (libc::SYS_creat, 1),
    // A regular file made with any mode.
    (libc::SYS_mknod, 1),
    (libc::SYS_mknodat, 2),
];
#[cfg(not(target_arch = "x86_64"))]
const MODE_CALLS: [(i64, u8); 5] = [
    (libc::SYS_fchmod, 1),
    (libc::SYS_fchmodat, 2),
    (FCHMODAT2, 2),
    (libc::SYS_openat, 3),
    (libc::SYS_mknodat, 2),
];
/// `fchmodat2` (Linux 6.6), 452 on every architecture; the libc crate names it on x86_64
/// only.
const FCHMODAT2: i64 = 452;
/// `openat2` (Linux 5.6), 437 on every architecture: its mode is in a structure no filter can
/// read, so it answers `ENOSYS`, as on a kernel without it (libcs and runtimes then use
/// `openat`, whose mode the filter reads).
const OPENAT2: i64 = 437;
/// `io_uring_setup` (Linux 5.1), 425 on every architecture: a ring's operations (an open with
/// a set-ID mode among them) never pass the filter, so rings answer `ENOSYS`, as on a kernel
/// built without them (programs then make the system calls themselves).
const IO_URING_SETUP: i64 = 425;
/// The calls answered `ENOSYS` (x32 shares x86_64's numbers for them).
const ABSENT_CALLS: [i64; 2] = [OPENAT2, IO_URING_SETUP];
const SET_UID: u64 = libc::S_ISUID as u64;
const SET_GID: u64 = libc::S_ISGID as u64;
/// `keyctl`, `add_key` and `request_key` (x32 shares x86_64's numbers for them).
const KEY_CALLS: [i64; 3] = [libc::SYS_keyctl, libc::SYS_add_key, libc::SYS_request_key];
pub(super) const TIOCLINUX: u64 = 0x541C;
/// Sets a terminal's line discipline: `N_NULL` leaves your terminal dead after the run.
pub(super) const TIOCSETD: u64 = 0x5423;
/// `tcflow`: `TCOOFF` stops the terminal's output until `TCOON`.
pub(super) const TCXONC: u64 = 0x540A;
/// Exclusive mode: further opens of the terminal fail (`EBUSY`) but root's.
pub(super) const TIOCEXCL: u64 = 0x540C;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_read_with_the_kernels_escapes() {
        let table = b"22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
36 22 0:31 / /home/a\\040b rw - tmpfs tmpfs rw\n\
37 22 0:32 / /x\\134y\\011z rw - tmpfs tmpfs rw\n\
short line\n";
        assert_eq!(
            mount_points(table),
            [
                PathBuf::from("/"),
                PathBuf::from("/home/a b"),
                PathBuf::from("/x\\y\tz")
            ]
        );
    }
}
