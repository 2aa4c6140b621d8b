//! The Linux sandbox: user, mount and pid namespaces (and a network namespace for
//! `--net proxy`) set up by a helper process, then Landlock and one seccomp filter, then the
//! agent.
//!
//! till spawns its own binary as a helper (`/proc/self/exe __till-sandbox-exec -- CMD…`) with
//! a control socket on fd 3. The helper is a fresh single-threaded process, so it may unshare
//! namespaces and allocate freely, which a `fork`ed copy of till's multi-threaded process may
//! not. It reads the [`Policy`] and enters the namespaces; its child, pid 1 of the new pid
//! namespace, builds the mounts; that init's child binds itself with Landlock and seccomp,
//! answers `ready` (passing the proxy's listening socket from inside the network namespace
//! with `SCM_RIGHTS`) or an error, and `exec`s the agent. Signals till forwards to the helper
//! go on to the agent, and the helper exits with the agent's code, so till's forwarding,
//! `PR_SET_PDEATHSIG` and exit status work as without the sandbox ([`helper`] has the
//! details). No process execs the agent after a step failed; it reports the error and exits.

use std::ffi::{OsStr, OsString};
use std::io::{IoSlice, IoSliceMut, Read as _, Write as _};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::Arc;

use landlock::{ABI, Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr, Scope};
use rustix::mount::MountPropagationFlags;
use serde::{Deserialize, Serialize};

use super::{HELPER_ARG, Net, Policy, SandboxError};
use crate::terminal::Terminal;

mod privileges;
mod steps;

pub use privileges::strip as strip_rewritten;

use steps::{
    drop_file_privileges, hide, json_cover, landlock, loopback_up, make_mount_point, mount_err,
    own_dev, own_proc, own_terminal, protect_git, protect_submodules, read_only_elsewhere, seccomp,
    tmpfs,
};

/// The helper's end of the control socket.
const CONTROL_FD: RawFd = 3;

/// Device files an agent may open for writing (and truncate: `> /dev/null`).
const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/pts",
];

/// Checks the mechanisms that can be checked without starting anything: Landlock with
/// scopes (ABI 6). User namespaces are checked by the helper, which reports what is missing.
pub fn check_supported(simulate_missing: Option<&str>) -> Result<(), SandboxError> {
    let created = if simulate_missing == Some("landlock") {
        Err("simulated for a test".to_string())
    } else {
        // Creating a ruleset restricts nothing; it only asks the kernel whether it could.
        Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_write(ABI::V3))
            .and_then(|r| r.scope(Scope::from_all(ABI::V6)))
            .and_then(|r| r.create())
            .map(drop)
            .map_err(|e| e.to_string())
    };
    created.map_err(|detail| SandboxError::Missing {
        what: "Landlock ABI 6 (Linux 6.12 or later, with signal and abstract-socket scoping)",
        detail,
        hint: "use a newer kernel with `landlock` in its lsm= boot parameter, or run without --sandbox".into(),
    })
}

/// The policy as it crosses the control socket: paths as bytes, since they need not be UTF-8.
#[derive(Serialize, Deserialize)]
struct Wire {
    net: Net,
    proxy_port: u16,
    cwd: Vec<u8>,
    writable: Vec<Vec<u8>>,
    hidden: Vec<Vec<u8>>,
    writable_git_hooks: bool,
    submodules: Vec<Vec<u8>>,
    simulate_missing: Option<String>,
}

impl Wire {
    fn from_policy(p: &Policy) -> Self {
        let bytes = |p: &PathBuf| p.as_os_str().as_bytes().to_vec();
        Self {
            net: p.net,
            proxy_port: p.proxy_port,
            cwd: bytes(&p.cwd),
            writable: p.writable.iter().map(bytes).collect(),
            hidden: p.hidden.iter().map(bytes).collect(),
            writable_git_hooks: p.writable_git_hooks,
            submodules: p.submodules.iter().map(bytes).collect(),
            simulate_missing: p.simulate_missing.clone(),
        }
    }
}

fn path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsString::from_vec(bytes.to_vec()))
}

/// The helper's answer: one JSON line, with the proxy's listener attached for `--net proxy`.
#[derive(Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
enum Reply {
    Ready,
    Error {
        message: String,
        hint: Option<String>,
    },
}

/// till's side of one sandboxed launch.
pub struct Launch {
    control: Option<UnixStream>,
    helper_end: Option<OwnedFd>,
    net: Net,
    /// The sandbox's init, by its pid out here (known once the helper has answered).
    init: Option<libc::pid_t>,
    /// The terminal as it was when the run began, put back at its end.
    terminal: Option<Terminal>,
    /// The proxy serving inside the sandbox: its stop signal (dropping it stops it too) and
    /// its task, which ends when the requests in flight have had their grace.
    proxy: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
}

impl Launch {
    /// A control socket with the policy already written into it, ready for [`Launch::command`].
    pub fn new(policy: &Policy) -> Result<Self, SandboxError> {
        let setup = |what: &str, e: std::io::Error| SandboxError::Setup {
            message: format!("{what}: {e}"),
            hint: None,
        };
        let (mut control, helper_end) =
            UnixStream::pair().map_err(|e| setup("cannot create the control socket", e))?;
        let text = serde_json::to_vec(&Wire::from_policy(policy)).expect("the policy serialises");
        control
            .write_all(&text)
            .and_then(|()| control.shutdown(std::net::Shutdown::Write))
            .map_err(|e| setup("cannot send the policy to the sandbox helper", e))?;
        Ok(Self {
            control: Some(control),
            helper_end: Some(helper_end.into()),
            net: policy.net,
            init: None,
            terminal: None,
            proxy: None,
        })
    }

    /// `/proc/self/exe __till-sandbox-exec -- PROGRAM REST…`, with the control socket on fd 3.
    ///
    /// Makes till the subreaper of what it starts: a process the agent leaves running (a
    /// `setsid` or `nohup` child) is reparented to till when its parent exits, not to init,
    /// so [`Launch::end_leftovers`] can find it.
    pub fn command(&mut self, program: &std::ffi::OsStr, rest: &[OsString]) -> Command {
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes plain integers and touches no memory.
        unsafe {
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        }
        // The agent may take the terminal's foreground and set `tostop`; till, in the
        // background then, would be stopped (SIGTTOU) at its next line on the terminal, before
        // it ends what the agent left running, which would go on reading the terminal at your
        // next prompt. till ignores the terminal's stop signals (the agent gets them back).
        // SAFETY: signal with SIG_IGN installs no handler code.
        unsafe {
            libc::signal(libc::SIGTTOU, libc::SIG_IGN);
            libc::signal(libc::SIGTTIN, libc::SIG_IGN);
        }
        self.terminal = Terminal::save();
        let mut cmd = Command::new("/proc/self/exe");
        cmd.arg0("till")
            .arg(HELPER_ARG)
            .arg("--")
            .arg(program)
            .args(rest);
        let fd = self
            .helper_end
            .as_ref()
            .expect("Launch::command runs once")
            .as_raw_fd();
        // SAFETY: dup2 and fcntl are async-signal-safe and touch no memory of the parent. std
        // runs this after it has set up fds 0-2, so fd 3 is free to take.
        unsafe {
            cmd.pre_exec(move || {
                if fd == CONTROL_FD {
                    let flags = libc::fcntl(fd, libc::F_GETFD);
                    if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(fd, CONTROL_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }

    /// Waits for the helper's answer; with `--net proxy`, serves `proxy` on the listener it
    /// passed. Needs a tokio runtime context.
    pub fn started(
        &mut self,
        proxy: Option<Arc<crate::proxy::State>>,
        helper: u32,
    ) -> Result<(), SandboxError> {
        drop(self.helper_end.take());
        // Kept open until the leftovers are ended: the sandbox's init ends when it closes.
        let control = self.control.as_ref().expect("Launch::started runs once");
        let (reply, fd) = receive(control).map_err(|e| SandboxError::Setup {
            message: format!("no answer from the sandbox helper: {e}"),
            hint: None,
        })?;
        match reply {
            Reply::Error { message, hint } => return Err(SandboxError::Setup { message, hint }),
            Reply::Ready => {}
        }
        // The helper's one child, which forked the agent that answered; or, when an agent that
        // ends at once has been reaped and the helper has exited with its code already, the
        // process that came to till in the helper's place (till starts no other).
        self.init = libc::pid_t::try_from(helper).ok().and_then(|helper| {
            children_of(helper).first().copied().or_else(|| {
                children_of(std::process::id() as libc::pid_t)
                    .into_iter()
                    .find(|&child| child != helper)
            })
        });
        if self.net == Net::Proxy {
            let (Some(fd), Some(state)) = (fd, proxy) else {
                return Err(SandboxError::Setup {
                    message: "the sandbox helper passed no proxy listener".into(),
                    hint: None,
                });
            };
            let listener = std::net::TcpListener::from(fd);
            let listener = listener
                .set_nonblocking(true)
                .and_then(|()| tokio::net::TcpListener::from_std(listener))
                .map_err(|e| SandboxError::Setup {
                    message: format!("cannot serve the proxy inside the sandbox: {e}"),
                    hint: None,
                })?;
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(crate::proxy::serve(listener, state, async move {
                let _ = rx.await;
            }));
            self.proxy = Some((tx, task));
        }
        Ok(())
    }

    /// Kills every process the agent left running, once it has exited, and reaps them. Left
    /// alone, such a process would go on inside the sandbox with the agent's rights after
    /// `till run` returned: reading the terminal (what you type next, a key at `till add`'s
    /// prompt), writing the working directory after you reviewed it. They were reparented to
    /// till ([`Launch::command`]); each round kills all of till's descendants at once, until
    /// none is left. Returns how many were ended.
    pub fn end_leftovers(&mut self) -> usize {
        let me = std::process::id() as libc::pid_t;
        let mut ended = std::collections::HashSet::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            // Every descendant at once, not a generation a round: a process that forks again
            // as fast as its parents die (a chain regrowing from its bottom) dies with them.
            let tree = descendants_of(me);
            for &pid in &tree {
                // SAFETY: kill takes plain integers.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            // Reap what has come to till; the agent itself was reaped already, and till has no
            // other children.
            // SAFETY: waitpid with WNOHANG and a null status takes plain integers.
            while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
            if tree.is_empty() {
                break;
            }
            // The sandbox's init (which stays while these do) is not one the agent left.
            ended.extend(tree.iter().copied().filter(|&pid| Some(pid) != self.init));
            if std::time::Instant::now() > deadline {
                crate::output::error(
                    &format!(
                        "{} process(es) the agent left running in the sandbox could not be ended",
                        tree.len()
                    ),
                    Some("end them yourself: they still hold the sandbox's rights"),
                );
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // The sandbox's init ends with this, and the kernel with it whatever is in its pid
        // namespace (nothing, by now).
        drop(self.control.take());
        if let Some(terminal) = &self.terminal {
            terminal.restore();
        }
        ended.len()
    }

    /// Stops the proxy inside the sandbox as till stops its own: the returned task ends when
    /// the requests in flight have finished or had their grace.
    pub fn stop(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        let (tx, task) = self.proxy.take()?;
        let _ = tx.send(());
        Some(task)
    }
}

/// Every process's parent, from one reading of `/proc/PID/stat`: the parent is the field after
/// the name, which may hold any bytes (not UTF-8, spaces, parentheses), so it is read after the
/// last `)`.
fn parents() -> Vec<(libc::pid_t, libc::pid_t)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let pid: libc::pid_t = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
        let after = &stat[stat.iter().rposition(|&b| b == b')')? + 1..];
        let ppid = std::str::from_utf8(after).ok()?.split_whitespace().nth(1)?;
        Some((pid, ppid.parse().ok()?))
    })
    .collect()
}

/// The children of `parent`.
fn children_of(parent: libc::pid_t) -> Vec<libc::pid_t> {
    parents()
        .into_iter()
        .filter(|&(_, ppid)| ppid == parent)
        .map(|(pid, _)| pid)
        .collect()
}

/// Every descendant of `root`, from one reading of `/proc`.
fn descendants_of(root: libc::pid_t) -> Vec<libc::pid_t> {
    let parents = parents();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|&&(pid, ppid)| ppid == parent && pid != root)
                .map(|&(pid, _)| pid),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// Reads the helper's one-line answer and any descriptor that came with it.
fn receive(control: &UnixStream) -> std::io::Result<(Reply, Option<OwnedFd>)> {
    let mut text = Vec::new();
    let mut fd = None;
    loop {
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut ancillary = rustix::net::RecvAncillaryBuffer::new(&mut space);
        let mut buf = [0u8; 4096];
        let got = match rustix::net::recvmsg(
            control,
            &mut [IoSliceMut::new(&mut buf)],
            &mut ancillary,
            rustix::net::RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(got) => got,
            // A signal for the agent arrived while till waited; it has been forwarded.
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        for msg in ancillary.drain() {
            if let rustix::net::RecvAncillaryMessage::ScmRights(fds) = msg {
                for received in fds {
                    fd.get_or_insert(received);
                }
            }
        }
        text.extend_from_slice(&buf[..got.bytes]);
        if got.bytes == 0 || text.contains(&b'\n') {
            break;
        }
    }
    let line = text.split(|b| *b == b'\n').next().unwrap_or_default();
    if line.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "it exited before the agent started",
        ));
    }
    let reply = serde_json::from_slice(line).map_err(std::io::Error::other)?;
    Ok((reply, fd))
}

/// A failed step in the helper: what failed, and what to do about it.
struct StepError {
    message: String,
    hint: Option<String>,
}

impl StepError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// `(step, error)` → a [`StepError`] naming the step.
fn step<E: std::fmt::Display>(what: impl Into<String>) -> impl FnOnce(E) -> StepError {
    let what = what.into();
    move |e| StepError::new(format!("{what}: {e}"))
}

pub fn helper_main() -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(OsStr::new(HELPER_ARG)) {
        return None;
    }
    let argv: Vec<OsString> = args.skip_while(|a| a != "--").skip(1).collect();
    // SAFETY: fd 3 is only borrowed here, to ask whether it is open.
    let open = rustix::io::fcntl_getfd(unsafe { BorrowedFd::borrow_raw(CONTROL_FD) }).is_ok();
    if !open || argv.is_empty() {
        crate::output::error(
            &format!("{HELPER_ARG} is till run --sandbox's own helper"),
            Some("use till run --sandbox -- CMD"),
        );
        return Some(ExitCode::from(2));
    }
    // SAFETY: fd 3 is open (checked above) and nothing else in this process owns it.
    let control = UnixStream::from(unsafe { OwnedFd::from_raw_fd(CONTROL_FD) });
    Some(helper(control, &argv))
}

/// Sets the sandbox up, answers till, and runs the agent in a pid namespace of its own.
///
/// Three processes: this helper (till's child, outside the namespace), the namespace's init
/// (its child, pid 1 inside) and the agent (init's child). The signals till forwards go from
/// the helper to init to the agent; when the agent exits, init sends its code to the helper,
/// which exits with it, so till sees the agent's exit as without the sandbox. init stays while
/// anything the agent left runs in the namespace, until till ends it after the proxy's grace;
/// when init ends (or till does: init watches the control socket), the kernel kills whatever
/// is left in the namespace. init stays outside the agent's Landlock domain, which keeps the
/// agent's signals and `ptrace` from it as from till.
fn helper(control: UnixStream, argv: &[OsString]) -> ExitCode {
    // Not inherited by the agent.
    let _ = rustix::io::fcntl_setfd(&control, rustix::io::FdFlags::CLOEXEC);
    let mut text = Vec::new();
    let wire = (&control)
        .read_to_end(&mut text)
        .map_err(step("cannot read the policy"))
        .and_then(|_| serde_json::from_slice::<Wire>(&text).map_err(step("bad policy")))
        .and_then(|w| {
            let uid = rustix::process::getuid().as_raw();
            let gid = rustix::process::getgid().as_raw();
            enter_namespaces(w.net, uid, gid, w.simulate_missing.as_deref()).map(|()| w)
        });
    let wire = match wire {
        Ok(w) => w,
        Err(e) => {
            let _ = answer_error(&control, &e);
            return ExitCode::from(1);
        }
    };
    // Blocked before the fork, so none arrives unseen: the helper and init read them from a
    // signalfd; the agent unblocks them before its exec.
    let signals = block_relayed_signals();
    // init tells the helper the agent's exit code through this pipe, one byte.
    let code = pipe();
    let forked = match &code {
        // SAFETY: the helper is single-threaded (it starts no threads), so the child may go on
        // running Rust after the fork.
        Ok(_) => unsafe { libc::fork() },
        Err(_) => -1,
    };
    match (forked, code) {
        (0, Ok((helper_reads, code))) => {
            drop(helper_reads);
            std::process::exit(init(control, code, &wire, argv, &signals))
        }
        (init_pid, Ok((code, init_writes))) if init_pid > 0 => {
            drop((control, init_writes));
            ExitCode::from(relay(init_pid, code, &signals))
        }
        _ => {
            let e = StepError::new(format!(
                "cannot start the sandbox's init: {}",
                std::io::Error::last_os_error()
            ));
            let _ = answer_error(&control, &e);
            ExitCode::from(1)
        }
    }
}

/// A pipe's read and write ends, closed on exec.
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut ends = [-1; 2];
    // SAFETY: pipe2 writes two ints into `ends`, which outlives the call.
    if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 made these two descriptors, and nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) })
}

/// Blocks the signals till forwards, and SIGCHLD; returns them as a set.
fn block_relayed_signals() -> libc::sigset_t {
    // SAFETY: the set is initialised by sigemptyset before any other use; sigprocmask reads it.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        for sig in [
            libc::SIGCHLD,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGINT,
        ] {
            libc::sigaddset(&mut set, sig);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// What woke a [`Waiter`].
enum Woke {
    /// A child changed state (SIGCHLD).
    Child,
    /// A signal to pass on: sent by a process (till, or the helper), not by the terminal,
    /// whose Ctrl-C reaches the agent by its process group and must not reach it twice.
    Relay(i32),
    /// The descriptor watched beside the signals.
    Other,
}

/// Waits for blocked signals (through a signalfd: a process that unshared a pid namespace may
/// not start threads) and one descriptor at a time.
struct Waiter(OwnedFd);

impl Waiter {
    fn new(set: &libc::sigset_t) -> std::io::Result<Self> {
        // SAFETY: signalfd reads one initialised set and returns a new descriptor or -1.
        let fd = unsafe { libc::signalfd(-1, set, libc::SFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: signalfd made this descriptor, and nothing else owns it.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// The next signal, or `other` reporting `events` (or a hang-up, always reported). `None`
    /// for a signal not to act on, or an interrupted wait.
    fn next(&self, other: Option<BorrowedFd<'_>>, events: libc::c_short) -> Option<Woke> {
        let mut fds = [
            libc::pollfd {
                fd: self.0.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                // A negative descriptor is skipped.
                fd: other.map_or(-1, |o| o.as_raw_fd()),
                events,
                revents: 0,
            },
        ];
        // SAFETY: poll reads and writes the two pollfds, which outlive the call.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
            return None;
        }
        if fds[1].revents != 0 {
            return Some(Woke::Other);
        }
        // SAFETY: signalfd_siginfo is plain integers.
        let mut info = unsafe { std::mem::zeroed::<libc::signalfd_siginfo>() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: the buffer is `size` bytes of `info`, which outlives the call.
        let got = unsafe {
            libc::read(
                self.0.as_raw_fd(),
                std::ptr::addr_of_mut!(info).cast(),
                size,
            )
        };
        if usize::try_from(got).ok() != Some(size) {
            return None;
        }
        let sig = i32::try_from(info.ssi_signo).ok()?;
        if sig == libc::SIGCHLD {
            Some(Woke::Child)
        } else {
            // SI_USER (kill), SI_QUEUE and SI_TKILL are at most 0; the kernel's own are above.
            (info.ssi_code <= 0).then_some(Woke::Relay(sig))
        }
    }
}

/// The exit code that stands for a wait status: the code, or 128 + the signal that ended it.
fn code_of(status: i32) -> u8 {
    if libc::WIFSIGNALED(status) {
        u8::try_from(128 + libc::WTERMSIG(status)).unwrap_or(255)
    } else {
        u8::try_from(libc::WEXITSTATUS(status)).unwrap_or(1)
    }
}

/// The helper's part once init runs: passes signals on, and exits with the agent's code as
/// soon as init sends it, or with init's own if init ends without sending one.
fn relay(init: libc::pid_t, code: OwnedFd, set: &libc::sigset_t) -> u8 {
    let Ok(waiter) = Waiter::new(set) else {
        // SAFETY: kill takes plain integers; an init left alone would run on unwatched.
        unsafe { libc::kill(init, libc::SIGKILL) };
        return 1;
    };
    let mut code = Some(code);
    let read_code = |code: &Option<OwnedFd>| {
        let mut byte = [0u8; 1];
        code.as_ref()
            .map(|c| rustix::io::read(c, &mut byte).map(|n| (n == 1).then_some(byte[0])))
    };
    loop {
        match waiter.next(code.as_ref().map(|c| c.as_fd()), libc::POLLIN) {
            Some(Woke::Other) => match read_code(&code) {
                Some(Ok(Some(c))) => return c,
                Some(Err(rustix::io::Errno::INTR)) => {}
                // init ended without a code: its status comes with SIGCHLD.
                _ => code = None,
            },
            Some(Woke::Relay(sig)) => {
                // SAFETY: kill takes plain integers.
                unsafe { libc::kill(init, sig) };
            }
            Some(Woke::Child) => {
                let mut status = 0;
                // SAFETY: waitpid writes one int, which outlives the call.
                if unsafe { libc::waitpid(init, &mut status, libc::WNOHANG) } == init {
                    // A code sent just before init ended is the agent's.
                    return match read_code(&code) {
                        Some(Ok(Some(c))) => c,
                        _ => code_of(status),
                    };
                }
            }
            None => {}
        }
    }
}

/// The namespace's init: the rest of the sandbox, then the agent as its child. When the agent
/// exits, sends its code to the helper, and goes on reaping until nothing else is left in the
/// namespace, or till closes its end of `control` (till ends what is left after the proxy's
/// grace, or has died). Returns the agent's exit code.
fn init(
    control: UnixStream,
    code: OwnedFd,
    w: &Wire,
    argv: &[OsString],
    set: &libc::sigset_t,
) -> i32 {
    let waiter = match Waiter::new(set) {
        Ok(waiter) => waiter,
        Err(e) => {
            let e = StepError::new(format!("cannot watch the sandbox's signals: {e}"));
            let _ = answer_error(&control, &e);
            return 1;
        }
    };
    let ready = match setup(w) {
        Ok(ready) => ready,
        Err(e) => {
            let _ = answer_error(&control, &e);
            return 1;
        }
    };
    // SAFETY: init is single-threaded, as the helper it was forked from.
    let agent = match unsafe { libc::fork() } {
        -1 => {
            let e = StepError::new(format!(
                "cannot start the agent: {}",
                std::io::Error::last_os_error()
            ));
            let _ = answer_error(&control, &e);
            return 1;
        }
        0 => exec_agent(&control, ready, argv),
        pid => pid,
    };
    drop(ready);
    let mut exited: Option<u8> = None;
    loop {
        // Only a hang-up is asked for: till shut its writing side long ago, so the socket is
        // always readable.
        match waiter.next(Some(control.as_fd()), 0) {
            Some(Woke::Other) => return i32::from(exited.unwrap_or(1)),
            // Not after the agent has exited: its pid may have gone to another process.
            Some(Woke::Relay(sig)) if exited.is_none() => {
                // SAFETY: kill takes plain integers.
                unsafe { libc::kill(agent, sig) };
            }
            Some(Woke::Child) => {}
            _ => continue,
        }
        // Orphans in the namespace come to init: reap them all, and learn of the agent.
        loop {
            let mut status = 0;
            // SAFETY: waitpid writes one int, which outlives the call.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid == agent {
                let c = code_of(status);
                exited = Some(c);
                let _ = rustix::io::write(&code, &[c]);
            } else if let (true, Some(c)) = (pid < 0, exited) {
                // Nothing is left in the namespace.
                return i32::from(c);
            } else if pid <= 0 {
                break;
            }
        }
    }
}

/// The agent's process: its own steps of the sandbox, the answer to till, and the exec.
fn exec_agent(control: &UnixStream, ready: Ready, argv: &[OsString]) -> ! {
    // The steps that bind the agent alone: init stays outside its Landlock domain.
    let confined = confine(&ready.writable);
    let sent = match &confined {
        Ok(()) => answer(
            control,
            &Reply::Ready,
            ready.listener.as_ref().map(|l| l.as_fd()),
        ),
        Err(e) => answer_error(control, e),
    };
    if confined.is_err() || sent.is_err() {
        std::process::exit(1);
    }
    drop(ready);
    // The agent starts with no signal blocked, and the terminal's stop signals (which till
    // ignores) as their default, as without the sandbox.
    // SAFETY: sigprocmask reads one initialised set; signal with SIG_DFL installs no code.
    unsafe {
        let mut none = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::signal(libc::SIGTTOU, libc::SIG_DFL);
        libc::signal(libc::SIGTTIN, libc::SIG_DFL);
    }
    let program = argv[0].to_string_lossy().into_owned();
    let err = Command::new(&argv[0]).args(&argv[1..]).exec();
    std::process::exit(i32::from(crate::process::cannot_run(&program, &err)))
}

fn answer_error(control: &UnixStream, e: &StepError) -> std::io::Result<()> {
    answer(
        control,
        &Reply::Error {
            message: e.message.clone(),
            hint: e.hint.clone(),
        },
        None,
    )
}

fn answer(control: &UnixStream, reply: &Reply, fd: Option<BorrowedFd<'_>>) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut ancillary = rustix::net::SendAncillaryBuffer::new(&mut space);
    let fds: Vec<BorrowedFd<'_>> = fd.into_iter().collect();
    if !fds.is_empty() {
        ancillary.push(rustix::net::SendAncillaryMessage::ScmRights(&fds));
    }
    rustix::net::sendmsg(
        control,
        &[IoSlice::new(&line)],
        &mut ancillary,
        rustix::net::SendFlags::empty(),
    )?;
    Ok(())
}

/// What init's steps leave for the agent's: the proxy's listener for `--net proxy`, and the
/// paths Landlock lets it write.
struct Ready {
    listener: Option<std::net::TcpListener>,
    writable: Vec<PathBuf>,
}

/// init's steps of the sandbox, in order, inside the namespaces the helper entered.
fn setup(w: &Wire) -> Result<Ready, StepError> {
    let cwd = path(&w.cwd);
    let writable: Vec<PathBuf> = w.writable.iter().map(|p| path(p)).collect();
    let hidden: Vec<PathBuf> = w.hidden.iter().map(|p| path(p)).collect();
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();

    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(mount_err("cannot make the mounts private"))?;
    own_proc()?;
    let terminal = own_terminal();
    own_dev(terminal.as_ref())?;

    // Handles on what must stay reachable, taken before the new mounts cover their paths (and
    // after entering the mount namespace: the kernel binds only from mounts of the caller's).
    let mut keep = Vec::new();
    for p in std::iter::once(&cwd).chain(&writable) {
        let fd = rustix::fs::open(
            p,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(step(format!("cannot open {}", p.display())))?;
        keep.push((p.clone(), fd));
    }

    // Private, writable, empty: /tmp (which also hides sockets of buses and agents that live
    // there), /dev/shm, and the runtime directory (the session bus, the keyring's control
    // socket, the systemd user manager). With --net proxy all of /run is replaced, which hides
    // the system daemons' sockets too.
    // Paths are resolved first (`/dev/shm` may be a link into /run) and /run goes before what
    // may lie under it.
    let existing = |p: &str| std::fs::canonicalize(p).ok().filter(|d| d.is_dir());
    let runtime = runtime_dirs(uid);
    let shm = existing("/dev/shm");
    let mut private: Vec<(PathBuf, &str)> = vec![("/tmp".into(), "mode=1777")];
    if w.net == Net::Proxy
        && let Some(run) = existing("/run")
    {
        private.push((run, "mode=755"));
    }
    if let Some(shm) = shm {
        private.push((shm, "mode=1777"));
    }
    for dir in &runtime {
        private.push((dir.clone(), "mode=700"));
    }
    for (dir, mode) in &private {
        if !dir.is_dir() {
            std::fs::create_dir_all(dir)
                .map_err(step(format!("cannot create {}", dir.display())))?;
        }
        tmpfs(dir, mode, false)?;
    }
    let private: Vec<PathBuf> = private.into_iter().map(|(d, _)| d).collect();

    // Put back what the private mounts covered: the working directory or a writable path
    // under /tmp.
    for (p, fd) in &keep {
        if super::under_any(p, &private) && !private.contains(p) {
            make_mount_point(p, fd)?;
            let source = format!("/proc/self/fd/{}", fd.as_raw_fd());
            rustix::mount::mount_bind_recursive(source.as_str(), p)
                .map_err(mount_err(format!("cannot keep {} reachable", p.display())))?;
        }
    }

    // Every other mount read-only: the agent can change no file's mode, owner or times outside
    // what it may write.
    let roots: Vec<PathBuf> = std::iter::once(cwd.clone())
        .chain(writable.iter().cloned())
        .collect();
    let keep_writable: Vec<PathBuf> = roots
        .iter()
        .chain(&private)
        .cloned()
        .chain([PathBuf::from("/proc"), PathBuf::from("/dev")])
        .collect();
    read_only_elsewhere(&roots, &keep_writable)?;

    protect_git(&cwd, w.writable_git_hooks, &roots)?;
    let submodules: Vec<PathBuf> = w.submodules.iter().map(|p| path(p)).collect();
    protect_submodules(&submodules, &roots)?;

    // The directories between the writable paths and what is hidden below them become mount
    // points before the covers go on (a bind of a directory that a cover sits under would not
    // carry it), so that none can be renamed away with a cover inside.
    for dir in super::between_writable_and_hidden(&hidden, &roots) {
        if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            rustix::mount::mount_bind_recursive(&dir, &dir)
                .map_err(mount_err(format!("cannot pin {}", dir.display())))?;
        }
    }

    let json = hidden
        .iter()
        .any(|h| h.extension().is_some_and(|e| e == "json"))
        .then(json_cover)
        .transpose()?;
    for h in &hidden {
        hide(h, json.as_deref())?;
    }
    if let Some(cover) = &json {
        let _ = std::fs::remove_file(cover);
    }

    std::env::set_current_dir(&cwd).map_err(step(format!("cannot enter {}", cwd.display())))?;

    let listener = match w.net {
        Net::Proxy => {
            loopback_up().map_err(step("cannot bring up the loopback interface"))?;
            let l = std::net::TcpListener::bind(("127.0.0.1", w.proxy_port)).map_err(step(
                format!("cannot listen on 127.0.0.1:{} in the sandbox", w.proxy_port),
            ))?;
            Some(l)
        }
        Net::Open => None,
    };
    // Last of the namespace steps: the network namespace belongs to the first user namespace,
    // whose capabilities bringing `lo` up needs.
    lock_mounts(uid, gid)?;

    let mut writable_dirs = vec![cwd.clone()];
    writable_dirs.extend(private);
    writable_dirs.extend(writable);
    Ok(Ready {
        listener,
        writable: writable_dirs,
    })
}

/// The agent's own steps, in the agent's process before its exec: what init must not be bound
/// by itself.
fn confine(writable: &[PathBuf]) -> Result<(), StepError> {
    // A session keyring of its own: the one inherited is the user's (Kerberos caches, secrets
    // kept with `keyctl`), readable by any process that shares it.
    // SAFETY: keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL) takes an integer and a null name.
    if unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            libc::KEYCTL_JOIN_SESSION_KEYRING,
            std::ptr::null::<libc::c_char>(),
        )
    } < 0
    {
        return Err(StepError::new(format!(
            "cannot give the agent a session keyring of its own: {}",
            std::io::Error::last_os_error()
        )));
    }

    drop_file_privileges()?;
    landlock(writable)?;
    seccomp()
}

/// Enters new user and mount namespaces, a pid namespace for the helper's children and an IPC
/// namespace (System V shared memory, semaphores and message queues of the user's other
/// processes are out of the agent's sight, and reach), and a network namespace for
/// `--net proxy`, mapping the user to itself so files keep their owners.
fn enter_namespaces(net: Net, uid: u32, gid: u32, simulate: Option<&str>) -> Result<(), StepError> {
    let hint = "user namespaces may be switched off: check the sysctls \
                kernel.unprivileged_userns_clone, user.max_user_namespaces and \
                kernel.apparmor_restrict_unprivileged_userns";
    if simulate == Some("userns") {
        return Err(StepError::new(
            "--sandbox needs unprivileged user namespaces, which this system does not offer: simulated for a test",
        )
        .hint(hint));
    }
    let mut flags = rustix::thread::UnshareFlags::NEWUSER
        | rustix::thread::UnshareFlags::NEWNS
        | rustix::thread::UnshareFlags::NEWPID
        | rustix::thread::UnshareFlags::NEWIPC;
    if net == Net::Proxy {
        flags |= rustix::thread::UnshareFlags::NEWNET;
    }
    // SAFETY: this process is single-threaded (the helper starts no threads), and FILES, the
    // flag the safety comment is about, is not among these.
    unsafe { rustix::thread::unshare_unsafe(flags) }.map_err(|e| {
        StepError::new(format!(
            "--sandbox needs unprivileged user namespaces, which this system does not offer: {e}"
        ))
        .hint(hint)
    })?;
    map_self(uid, gid)
}

/// Enters a user namespace inside the first, with a copy of the mount namespace: the kernel
/// locks every mount the copy inherits from a more privileged namespace together with its
/// flags. The agent keeps capabilities in its own user namespace (and all of them when till
/// runs as root), and with them it could otherwise clone a mount from under a cover
/// (`open_tree`) and read what the cover hides, or clear a bind's read-only flag
/// (`mount_setattr`) and write `.git/hooks`: Landlock refuses `mount` and `umount`, not these.
fn lock_mounts(uid: u32, gid: u32) -> Result<(), StepError> {
    let flags = rustix::thread::UnshareFlags::NEWUSER | rustix::thread::UnshareFlags::NEWNS;
    // SAFETY: as in `enter_namespaces`: single-threaded, and FILES is not among the flags.
    unsafe { rustix::thread::unshare_unsafe(flags) }
        .map_err(|e| StepError::new(format!("cannot lock the sandbox's mounts: {e}")))?;
    map_self(uid, gid)
}

/// Maps the user and group to themselves in the user namespace just entered (files keep their
/// owners), with `setgroups` denied, as an unprivileged mapping must.
fn map_self(uid: u32, gid: u32) -> Result<(), StepError> {
    let write = |file: &str, text: String| {
        std::fs::write(file, text).map_err(step(format!("cannot write {file}")))
    };
    write("/proc/self/setgroups", "deny".into())?;
    write("/proc/self/uid_map", format!("{uid} {uid} 1"))?;
    write("/proc/self/gid_map", format!("{gid} {gid} 1"))
}

/// `/run/user/UID` and `$XDG_RUNTIME_DIR`, those that exist.
fn runtime_dirs(uid: u32) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let candidates = [
        Some(PathBuf::from(format!("/run/user/{uid}"))),
        std::env::var_os("XDG_RUNTIME_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
    ];
    for dir in candidates.into_iter().flatten() {
        if let Ok(real) = std::fs::canonicalize(&dir)
            && real.is_dir()
            && !dirs.contains(&real)
        {
            dirs.push(real);
        }
    }
    dirs
}
