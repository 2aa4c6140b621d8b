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

/// A devpts instance of the sandbox's own on `/dev/pts`: the ptys the agent makes are there,
/// and your other terminals (the host's `/dev/pts/N`, which the agent could open to read what
/// you type in them) are not. `/dev/ptmx` opens the instance beside it, so new ptys work; the
/// agent keeps its own terminal through the descriptors it inherited and `/dev/tty`.
pub(super) fn own_ptys() -> Result<(), StepError> {
    if !Path::new("/dev/pts").is_dir() {
        return Ok(());
    }
    let flags = MountFlags::NOSUID | MountFlags::NOEXEC;
    rustix::mount::mount(
        "devpts",
        "/dev/pts",
        "devpts",
        flags,
        c"mode=620,ptmxmode=666",
    )
    .map_err(mount_err("cannot mount a /dev/pts of the sandbox's own"))
}

/// Terminals that are not ptys (the consoles, serial lines) and the consoles' screen memory
/// (`/dev/vcs*`), where the user may open them (root may; a user logged in on a text console
/// owns its `/dev/ttyN`): covered with `/dev/null`, so that the agent cannot read what is
/// typed or shown there. The agent's own terminal, if it is one of them, stays open to it
/// through its descriptors and `/dev/tty`.
pub(super) fn cover_consoles() -> Result<(), StepError> {
    let Ok(dir) = std::fs::read_dir("/dev") else {
        return Ok(());
    };
    for entry in dir.flatten() {
        if !entry.file_name().to_str().is_some_and(is_console)
            || !entry
                .file_type()
                .is_ok_and(|t| std::os::unix::fs::FileTypeExt::is_char_device(&t))
        {
            continue;
        }
        let path = entry.path();
        let may = |how| rustix::fs::access(&path, how).is_ok();
        if may(rustix::fs::Access::READ_OK) || may(rustix::fs::Access::WRITE_OK) {
            rustix::mount::mount_bind("/dev/null", &path)
                .map_err(mount_err(format!("cannot cover {}", path.display())))?;
        }
    }
    Ok(())
}

/// The agent's own terminal, found by name (the first of its standard descriptors that is a
/// terminal, at the path the descriptor's link in `/proc` gives, checked to be the same
/// device), held open by path before [`own_ptys`] covers the host's `/dev/pts`.
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

/// The agent's terminal (from [`own_terminal`]) bound on `/dev/console`, so that programs that
/// look their terminal up by name (`tty`, `ttyname`, `GPG_TTY=$(tty)` for gpg's pinentry) find
/// it: its own name is under the host's `/dev/pts`, which the sandbox's devpts covers. This
/// reaches nothing new (the agent holds the terminal through its descriptors and `/dev/tty`);
/// bubblewrap's `--dev` does the same. Comes after [`cover_consoles`], over its cover.
pub(super) fn name_terminal(terminal: &OwnedFd) -> Result<(), StepError> {
    let console = Path::new("/dev/console");
    if std::fs::symlink_metadata(console).is_err() {
        return Ok(());
    }
    let source = format!("/proc/self/fd/{}", terminal.as_raw_fd());
    rustix::mount::mount_bind(source.as_str(), console).map_err(mount_err(
        "cannot bind the agent's terminal on /dev/console",
    ))
}

/// `console`, `vcs…`, and `tty`, `ttyS`, `ttyUSB`, `ttyACM`, `ttyAMA` or `hvc` with a number
/// (not `tty` itself, the controlling terminal, nor the ptys under `/dev/pts`).
fn is_console(name: &str) -> bool {
    let numbered = |prefix: &str| {
        name.strip_prefix(prefix)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    name == "console"
        || name.starts_with("vcs")
        || ["tty", "ttyS", "ttyUSB", "ttyACM", "ttyAMA", "hvc"]
            .iter()
            .any(|p| numbered(p))
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

/// Hides `p`: an empty read-only tmpfs over a directory, `/dev/null` over anything else.
pub(super) fn hide(p: &Path) -> Result<(), StepError> {
    let Ok(meta) = std::fs::symlink_metadata(p) else {
        // Under a private mount now, or gone: nothing to hide.
        return Ok(());
    };
    if meta.is_dir() {
        tmpfs(p, "mode=555,size=4k", true)
    } else {
        bind_read_only(Path::new("/dev/null"), p)
    }
}

/// Makes the working directory's `.git` a mount point (so it cannot be renamed away and
/// replaced) and what decides what git runs read-only: `hooks`, `config`, `config.worktree`,
/// `info` (its `exclude` hides files from review), and the git directories of submodules
/// (`modules`) and worktrees (`worktrees`). A `commondir` the agent creates, and a `HEAD` it
/// breaks, are seen to after the run ([`super::super::Sandbox`]).
pub(super) fn protect_git(cwd: &Path, writable: bool) -> Result<(), StepError> {
    let git = cwd.join(".git");
    let Ok(meta) = std::fs::symlink_metadata(&git) else {
        return Ok(());
    };
    if writable {
        return Ok(());
    }
    if !meta.is_dir() {
        // A worktree's `.git` file names the real git directory, which is outside the
        // working directory and so read-only already; keep the file itself in place.
        return if meta.is_file() {
            bind_read_only(&git, &git)
        } else {
            Ok(())
        };
    }
    rustix::mount::mount_bind_recursive(&git, &git)
        .map_err(mount_err(format!("cannot bind {}", git.display())))?;
    // Without `objects` or `refs`, `.git` is no repository to git, which then reads the
    // working directory as a bare one of the agent's making (config, pager and all): as mount
    // points they can be written in but neither renamed nor removed.
    for dir in ["objects", "refs"] {
        let dir = git.join(dir);
        if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
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
        if !dir.exists() {
            std::fs::create_dir(&dir).map_err(step(format!("cannot create {}", dir.display())))?;
        }
        bind_read_only(&dir, &dir)?;
    }
    for file in ["config", "config.worktree"] {
        let file = git.join(file);
        if file.exists() {
            bind_read_only(&file, &file)?;
        }
    }
    Ok(())
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

/// seccomp: refuses `TIOCSTI` and `TIOCLINUX`, which push keystrokes into the terminal's
/// input (to run commands in the user's shell once the agent exits), and the terminal
/// controls that outlast the agent: a line discipline (`TIOCSETD`), output stopped (`TCXONC`:
/// till then hangs writing its last lines, and ^Q does not start it again) and exclusive mode
/// (`TIOCEXCL`: nothing can open your terminal after the run). Landlock has no rule for ioctl
/// commands on a terminal the agent inherited.
pub(super) fn seccomp() -> Result<(), StepError> {
    use seccompiler::{
        SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    };
    let arch = match seccompiler::TargetArch::try_from(std::env::consts::ARCH) {
        Ok(arch) => arch,
        // Without legacy TIOCSTI the kernel refuses it to the agent anyway.
        Err(_) if tiocsti_disabled() => return Ok(()),
        Err(e) => {
            return Err(StepError::new(format!(
                "--sandbox needs a seccomp filter against TIOCSTI on this architecture: {e}"
            ))
            .hint("set the sysctl dev.tty.legacy_tiocsti=0, or run without --sandbox"));
        }
    };
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
            let numbers = [(libc::SYS_ioctl, rules.clone()), (X32_IOCTL, rules)];
            #[cfg(not(target_arch = "x86_64"))]
            let numbers = [(libc::SYS_ioctl, rules)];
            SeccompFilter::new(
                numbers.into_iter().collect(),
                SeccompAction::Allow,
                SeccompAction::Errno(libc::EPERM as u32),
                arch,
            )
        })
        .map_err(step("seccomp filter"))?;
    let program: seccompiler::BpfProgram = filter.try_into().map_err(step("seccomp filter"))?;
    seccompiler::apply_filter(&program).map_err(step("seccomp filter"))
}

/// The ioctl numbers on every architecture seccompiler supports (x86_64, aarch64, riscv64
/// share the generic tty ioctls).
pub(super) const TIOCSTI: u64 = 0x5412;
/// x32's `ioctl`: its table's 514 with the x32 bit.
#[cfg(target_arch = "x86_64")]
const X32_IOCTL: i64 = 0x4000_0000 | 514;
pub(super) const TIOCLINUX: u64 = 0x541C;
/// Sets a terminal's line discipline: `N_NULL` leaves your terminal dead after the run.
pub(super) const TIOCSETD: u64 = 0x5423;
/// `tcflow`: `TCOOFF` stops the terminal's output until `TCOON`.
pub(super) const TCXONC: u64 = 0x540A;
/// Exclusive mode: further opens of the terminal fail (`EBUSY`) but root's.
pub(super) const TIOCEXCL: u64 = 0x540C;

pub(super) fn tiocsti_disabled() -> bool {
    std::fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti").is_ok_and(|v| v.trim() == "0")
}

#[cfg(test)]
mod tests {
    use super::is_console;

    #[test]
    fn consoles_are_told_from_the_terminals_an_agent_keeps() {
        for name in [
            "console", "tty0", "tty63", "ttyS0", "ttyUSB1", "ttyACM0", "ttyAMA0", "hvc0", "vcs",
            "vcs1", "vcsa2", "vcsu",
        ] {
            assert!(is_console(name), "{name}");
        }
        for name in ["tty", "ptmx", "pts", "ttyS", "ttyx1", "null", "tty1a"] {
            assert!(!is_console(name), "{name}");
        }
    }
}
