//! `till run --sandbox`: what the agent may see, write and reach, decided here and enforced by
//! the platform module (`linux.rs`; `other.rs` refuses).
//!
//! This module owns the policy: which paths are hidden (till's config and data directories, the
//! built-in credential paths and `[sandbox] deny`), which are writable (the working directory,
//! a private /tmp, `[sandbox] writable`), and which network the agent gets. It must never run
//! the agent with less than it announced: when a mechanism is missing the run is refused, never
//! quietly started unsandboxed.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

pub use crate::config::Net;
use crate::config::{Config, Paths};
use crate::env::EnvVars;
use crate::error::UserError;

mod gitconfig;
mod gitindex;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as imp;

#[cfg(not(target_os = "linux"))]
mod other;
#[cfg(not(target_os = "linux"))]
use other as imp;

/// The first argument that makes the till binary the sandbox helper instead of the CLI.
pub const HELPER_ARG: &str = "__till-sandbox-exec";

/// Credential files and directories hidden from every sandboxed agent unless
/// `[sandbox] default_deny = false`.
pub const DEFAULT_DENY: &[&str] = &[
    "~/.ssh",
    "~/.gnupg",
    "~/.aws",
    "~/.azure",
    "~/.config/gcloud",
    "~/.kube",
    "~/.docker",
    "~/.netrc",
    "~/.git-credentials",
    "~/.config/git/credentials",
    "~/.config/gh",
    "~/.config/hub",
    "~/.npmrc",
    "~/.pypirc",
    "~/.cargo/credentials",
    "~/.cargo/credentials.toml",
    "~/.gem/credentials",
    "~/.config/op",
    "~/.password-store",
    "~/.local/share/keyrings",
    // D-Bus's cookies (DBUS_COOKIE_SHA1): with them a bus on a TCP port takes the agent.
    "~/.dbus-keyrings",
    "~/.local/share/kwalletd",
    "~/.vault-token",
    "~/.terraform.d/credentials.tfrc.json",
    "~/.pgpass",
    "~/.my.cnf",
    "~/.config/rclone",
    "~/.oci",
    "~/.mozilla",
    "~/.config/google-chrome",
    "~/.config/chromium",
    "/run/docker.sock",
    "/var/run/docker.sock",
    "/run/podman",
    // The system bus and systemd's own socket: for an agent of uid 0 (till run as root),
    // `systemd-run` through either runs a command as root outside every namespace; for
    // others, polkit grants an active session's user power-off, disk mounts and the network's
    // settings through the system bus.
    "/run/dbus/system_bus_socket",
    "/var/run/dbus/system_bus_socket",
    "/run/systemd/private",
    // Container and VM daemons, which run what they are asked as root, and the clients'
    // certificates and sockets for them (LXD and Incus, snapd, colima and lima's VMs, whose
    // docker socket and ssh keys live in the home directory).
    "/run/containerd",
    "/run/libvirt",
    "/var/run/libvirt",
    "/run/k3s",
    "/run/crio",
    "/var/run/crio",
    "/run/buildkit",
    "/var/snap/lxd/common/lxd/unix.socket",
    "/var/lib/lxd/unix.socket",
    "/var/lib/incus/unix.socket",
    "/run/incus",
    "/run/snapd.socket",
    "/run/snapd-snap.socket",
    "~/.config/lxc",
    "~/.config/incus",
    "~/snap/lxd/common/config",
    "~/.colima",
    "~/.lima",
    // The agent CLIs' own logins and key files: a provider key kept by OpenCode or `llm`
    // (which also wins over the key till gives them), OAuth tokens of Claude, Codex, Gemini,
    // Qwen and GitHub Copilot. A JSON file reads as `{}` under its cover.
    "~/.codex/auth.json",
    "~/.claude/.credentials.json",
    "~/.gemini/oauth_creds.json",
    "~/.qwen/oauth_creds.json",
    "~/.local/share/opencode/auth.json",
    "~/.config/io.datasette.llm/keys.json",
    "~/.config/github-copilot",
    // Other tokens a shell finds in the home directory: Hugging Face's, GitLab's CLI's.
    "~/.cache/huggingface/token",
    "~/.huggingface/token",
    "~/.config/glab-cli",
    // GNU screen's sessions: `screen -X stuff` types into your shell outside the sandbox.
    "/run/screen",
    "/var/run/screen",
    "~/.screen",
];

/// Variables the agent does not get inside the sandbox: addresses of the buses and agents it
/// can no longer reach, so clients fail at once instead of trying.
const DROPPED_ENV: &[&str] = &[
    "DBUS_SESSION_BUS_ADDRESS",
    "DBUS_SYSTEM_BUS_ADDRESS",
    "SSH_AUTH_SOCK",
    "GPG_AGENT_INFO",
    "GNOME_KEYRING_CONTROL",
    "TMPDIR",
];

/// Why a sandbox cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The platform has no sandbox yet.
    #[error("--sandbox is not available on {0} yet")]
    Unsupported(&'static str),
    /// A kernel mechanism the sandbox needs is missing or switched off.
    #[error("--sandbox needs {what}, which this system does not offer: {detail}")]
    Missing {
        what: &'static str,
        detail: String,
        hint: String,
    },
    /// The request itself cannot be met (exit 2).
    #[error("{message}")]
    Usage { message: String, hint: String },
    /// Setting the sandbox up failed; the agent was not started.
    #[error("the sandbox could not be set up: {message}")]
    Setup {
        message: String,
        hint: Option<String>,
    },
}

impl From<SandboxError> for UserError {
    fn from(e: SandboxError) -> UserError {
        let message = e.to_string();
        match e {
            SandboxError::Unsupported(_) => UserError::usage(message)
                .hint("run without --sandbox; the README says what the sandbox covers where"),
            SandboxError::Usage { hint, .. } => UserError::usage(message).hint(hint),
            SandboxError::Missing { hint, .. } => UserError::runtime(message).hint(hint),
            SandboxError::Setup { hint, .. } => {
                let err = UserError::runtime(message);
                match hint {
                    Some(h) => err.hint(h),
                    None => err,
                }
            }
        }
    }
}

/// Everything the enforcing side needs, resolved in till's own view of the filesystem.
#[derive(Debug, Clone)]
pub struct Policy {
    pub net: Net,
    /// The port the agent reaches the proxy on (`127.0.0.1:PORT` inside the sandbox).
    pub proxy_port: u16,
    /// The working directory (canonical), writable.
    pub cwd: PathBuf,
    /// Further writable paths (canonical, existing).
    pub writable: Vec<PathBuf>,
    /// Paths to hide (canonical, existing): till's directories first, then the deny list.
    pub hidden: Vec<PathBuf>,
    /// How many of `hidden` are till's own directories.
    pub till_dirs: usize,
    /// How many of `hidden`, after till's directories, are the sockets of buses and agents
    /// ([`agent_sockets`]).
    pub sockets: usize,
    /// Whether the working directory's `.git/hooks` and `.git/config` stay writable.
    pub writable_git_hooks: bool,
    /// The `.git` of each submodule's working tree (a file naming its git directory, or an
    /// older submodule's own directory), eight levels of submodules down: made read-only
    /// ([`submodule_gits`]).
    pub submodules: Vec<PathBuf>,
    /// Debug builds only: act as if this mechanism were missing (`landlock`, `userns`).
    pub simulate_missing: Option<String>,
}

/// A sandbox for one agent: its policy, and the platform's launcher.
pub struct Sandbox {
    /// The working directory's git directory (canonical): `.git`, where it leads as a link,
    /// or what a `.git` file names; `None` without one.
    git: Option<PathBuf>,
    /// The working directory had no repository before the run: no `.git` that is one (an
    /// empty directory is none), and no shape of a bare one.
    dot_git_absent: bool,
    /// A linked worktree's main git directory where the agent may write, and its state.
    common: Option<CommonState>,
    /// Each submodule's `.git` ([`submodule_gits`]) with its device and inode before the run,
    /// `None` where there was none.
    submodules_before: Vec<(PathBuf, Option<(u64, u64)>)>,
    policy: Policy,
    proxy: Option<Arc<crate::proxy::State>>,
    launch: Option<imp::Launch>,
    /// The working directory has a `.git` directory without a `commondir` (before the run).
    commondir_absent: bool,
    /// The same without a `config.worktree`, which the sandbox makes empty for the run.
    worktree_config_absent: bool,
    /// `.git/HEAD` before the run, when it named a branch or a commit.
    head: Option<Vec<u8>>,
    /// Which of [`OPERATIONS`] the working directory's `.git` had none of before the run.
    operations_absent: [bool; OPERATIONS.len()],
    /// For those it had: a fingerprint of their state ([`state_fingerprint`]).
    operations_state: [Option<u64>; OPERATIONS.len()],
    /// What the working directory's index hid from `git status` before the run, and which
    /// entries were other repositories; `None` when there is no `.git` directory or its index
    /// could not be read.
    index_before: Option<gitindex::Marks>,
    /// The most till reads of the index and its shared index after the run: twice what they
    /// held before it, at least [`INDEX_AFTER_LEAST`] and at most [`INDEX_FILE`], so an agent
    /// that grows them (a sparse file of gigabytes) makes till warn instead of hold it all.
    index_limit: u64,
    /// The replacement refs (`refs/replace/…`) before the run.
    replace_before: Option<BTreeSet<String>>,
    /// A little before the run began: a file whose change time is not older changed in it.
    since: std::time::SystemTime,
    /// The files (not directories) under a cover of their own, with their device and inode
    /// before the run: a file replaced from outside during the run took its cover with it.
    covered_files: Vec<(PathBuf, (u64, u64))>,
}

/// A file's device and inode, not following a last link.
fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path)
        .ok()
        .and_then(|m| identity_of(&m))
}

/// [`identity`] from metadata already read.
#[cfg(unix)]
fn identity_of(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn identity_of(_meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

/// How far before the run a file's change time still counts as the run's: the kernel stamps
/// times from a clock that lags the one till reads by up to a tick, and some filesystems keep
/// whole seconds.
const CHANGE_TIME_SLACK: std::time::Duration = std::time::Duration::from_secs(2);

/// What [`Sandbox::strip_rewritten_privileges`] found.
#[derive(Debug, Default, Clone)]
pub struct Stripped {
    /// Files changed in the run that lost a privilege.
    pub stripped: Vec<(PathBuf, Privileged)>,
    /// Files changed in the run whose privilege could not be taken off, and why.
    pub failed: Vec<(PathBuf, String)>,
    /// What could not be looked at, and why.
    pub unchecked: Vec<(PathBuf, String)>,
    /// Entries named `.git` made or changed during the run: repositories whose config and
    /// hooks may be the agent's.
    pub repositories: Vec<PathBuf>,
}

/// A privilege a program file carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privileged {
    SetUid,
    SetGid,
    Capabilities,
}

impl Privileged {
    fn as_str(self) -> &'static str {
        match self {
            Privileged::SetUid => "set-user-ID bit",
            Privileged::SetGid => "set-group-ID bit",
            Privileged::Capabilities => "file capabilities",
        }
    }
}

impl Sandbox {
    /// The sandbox a top-level `till run` asked for (flags, profile, `[run]`), checked against
    /// the system before anything else happens; `None` when the run is not sandboxed.
    pub fn for_run(
        config: &Config,
        paths: &Paths,
        net: Option<Net>,
    ) -> anyhow::Result<Option<Self>> {
        let Some(net) = net else {
            return Ok(None);
        };
        Ok(Some(Self::new(config, paths, net)?))
    }

    /// The sandbox for a `till run` inside a till run. Inside a till sandbox the sub-agent
    /// stays in it (a sandbox cannot be loosened from within); outside one, the filesystem
    /// sandbox is set up with the network open, since a nested run has no proxy of its own.
    pub fn for_nested(
        config: &Config,
        paths: &Paths,
        net: Option<Net>,
    ) -> anyhow::Result<Option<Self>> {
        let Some(net) = net else {
            return Ok(None);
        };
        match inherited() {
            Some(outer) => {
                if net == Net::Proxy && outer == Net::Open {
                    return Err(UserError::from(SandboxError::Usage {
                        message: "this till run is inside a sandbox with an open network, and a nested run cannot close it".into(),
                        hint: "start the outer run with --sandbox --net proxy".into(),
                    })
                    .into());
                }
                crate::output::note(&format!(
                    "till: already inside till's sandbox (network: {}); the sub-agent stays in it",
                    outer.as_str()
                ));
                Ok(None)
            }
            None if net == Net::Proxy => Err(UserError::from(SandboxError::Usage {
                message: "a nested till run has no proxy of its own to limit the network to".into(),
                hint: "start the outer run with --sandbox --net proxy".into(),
            })
            .into()),
            None => Ok(Some(Self::new(config, paths, net)?)),
        }
    }

    fn new(config: &Config, paths: &Paths, net: Net) -> anyhow::Result<Self> {
        let simulate_missing = if cfg!(debug_assertions) {
            std::env::var(EnvVars::TILL_TEST_SANDBOX_MISSING)
                .ok()
                .filter(|v| !v.is_empty())
        } else {
            None
        };
        imp::check_supported(simulate_missing.as_deref()).map_err(UserError::from)?;
        let mut policy = resolve(config, paths, net, simulate_missing).map_err(UserError::from)?;
        let git_dir = repository_git_dir(&policy.cwd);
        let dot_git_absent =
            !is_repository(&policy.cwd.join(".git")) && !shaped_like_git_dir(&policy.cwd);
        let has_git = git_dir.is_some();
        let git = git_dir.clone().unwrap_or_else(|| policy.cwd.join(".git"));
        let absent = |name: &str| has_git && std::fs::symlink_metadata(git.join(name)).is_err();
        let (commondir_absent, worktree_config_absent) =
            (absent("commondir"), absent("config.worktree"));
        let head = has_git
            .then(|| read_agent_file(&git.join("HEAD"), SMALL_FILE).ok())
            .flatten()
            .flatten()
            .filter(|h| valid_head(h));
        let operations_absent =
            OPERATIONS.map(|op| has_git && std::fs::symlink_metadata(git.join(op.dir)).is_err());
        let operations_state = OPERATIONS.map(|op| state_fingerprint(&git.join(op.dir)));
        let index_before = has_git
            .then(|| index_marks(&git, INDEX_FILE).ok())
            .flatten();
        let index_limit = index_limit_after(&git);
        let mut submodules_before = Vec::new();
        if !policy.writable_git_hooks
            && let Some(marks) = &index_before
        {
            submodules_before = submodule_gits(&policy.cwd, marks)
                .into_iter()
                .map(|g| {
                    let id = identity(&g);
                    (g, id)
                })
                .collect();
            policy.submodules = submodules_before
                .iter()
                .filter(|(_, id)| id.is_some())
                .map(|(g, _)| g.clone())
                .collect();
        }
        let replace_before = has_git.then(|| replace_refs(&git).names);
        // Files the sandbox covers one by one: hidden files and sockets, and `.git/config`,
        // made read-only (`.git/config.worktree` is made when missing, and removed after).
        let mut covered_files: Vec<(PathBuf, (u64, u64))> = policy
            .hidden
            .iter()
            .filter_map(|h| {
                let meta = std::fs::symlink_metadata(h).ok().filter(|m| !m.is_dir())?;
                Some((h.clone(), identity_of(&meta)?))
            })
            .collect();
        if !policy.writable_git_hooks
            && has_git
            && let Some(id) = identity(&git.join("config"))
        {
            covered_files.push((git.join("config"), id));
        }
        let roots: Vec<&Path> = std::iter::once(policy.cwd.as_path())
            .chain(policy.writable.iter().map(PathBuf::as_path))
            .collect();
        let common = (!policy.writable_git_hooks)
            .then(|| CommonState::of(&policy.cwd, &roots))
            .flatten();
        Ok(Self {
            git: git_dir,
            dot_git_absent,
            common,
            submodules_before,
            policy,
            proxy: None,
            launch: None,
            commondir_absent,
            worktree_config_absent,
            head,
            operations_absent,
            operations_state,
            index_before,
            index_limit,
            replace_before,
            since: std::time::SystemTime::now()
                .checked_sub(CHANGE_TIME_SLACK)
                .unwrap_or(std::time::UNIX_EPOCH),
            covered_files,
        })
    }

    /// Once nothing of the agent runs: names each file under a cover of its own that was
    /// replaced during the run (a new file renamed over it, as git writes `.git/config` and
    /// editors save, or a socket made again). The kernel takes a mount away with the file it
    /// covered, so from then on the agent could read and write the new one. Returns them.
    pub fn warn_replaced_covers(&self) -> Vec<PathBuf> {
        let mut replaced = Vec::new();
        for (path, before) in &self.covered_files {
            if identity(path).is_some_and(|now| now != *before) {
                crate::output::warn(&format!(
                    "{} was replaced during the run, from outside the sandbox, which took away the sandbox's cover over it: from then on the agent could read and write it; look at it before till or git reads it again",
                    path.display()
                ));
                replaced.push(path.clone());
            }
        }
        replaced
    }

    /// The git directory the run's checks look at: [`Self::git`], or `.git` when there is
    /// none (every check then finds nothing to do).
    fn git_dir(&self) -> PathBuf {
        self.git
            .clone()
            .unwrap_or_else(|| self.policy.cwd.join(".git"))
    }

    pub fn net(&self) -> Net {
        self.policy.net
    }

    /// With `--net proxy`, the proxy the agent reaches from inside: its state, and the port
    /// its URLs name.
    pub fn serve_proxy(&mut self, state: Arc<crate::proxy::State>, port: u16) {
        self.policy.proxy_port = port;
        self.proxy = Some(state);
    }

    /// The command that starts the agent inside the sandbox (the caller adds the environment
    /// and spawns it, then calls [`Sandbox::started`]).
    pub fn command(&mut self, program: &OsStr, rest: &[OsString]) -> anyhow::Result<Command> {
        let mut launch = imp::Launch::new(&self.policy).map_err(UserError::from)?;
        let cmd = launch.command(program, rest);
        self.launch = Some(launch);
        Ok(cmd)
    }

    /// Waits until the spawned helper (pid `helper`) has set the sandbox up (or failed to),
    /// starts serving the proxy inside it, and says what is in force. The caller must end the
    /// child on error.
    pub fn started(&mut self, helper: u32) -> anyhow::Result<()> {
        let launch = self
            .launch
            .as_mut()
            .expect("Sandbox::command runs before Sandbox::started");
        let proxy = match self.policy.net {
            Net::Proxy => self.proxy.clone(),
            Net::Open => None,
        };
        launch.started(proxy, helper).map_err(UserError::from)?;
        for line in banner(&self.policy) {
            crate::output::note(&line);
        }
        Ok(())
    }

    /// Stops the proxy serving inside the sandbox (`--net proxy`); await the task for the
    /// requests in flight to finish, as for till's own listener.
    pub fn stop_proxy(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        self.launch.as_mut()?.stop()
    }

    /// Once the agent has exited: ends what it left running in the sandbox; how many.
    pub fn end_leftovers(&mut self) -> usize {
        self.launch.as_mut().map_or(0, imp::Launch::end_leftovers)
    }

    /// Once nothing of the agent runs: takes the set-ID bits and file capabilities off every
    /// program in the working directory and the writable paths that changed during the run,
    /// and says so. A write through a shared memory mapping keeps them (the kernel clears them
    /// on the other ways of writing), so a set-ID program already there could be given any
    /// contents and still run as its owner after the run (see `linux/privileges.rs`).
    pub fn strip_rewritten_privileges(&self) -> Stripped {
        let roots: Vec<PathBuf> = std::iter::once(self.policy.cwd.clone())
            .chain(self.policy.writable.iter().cloned())
            .collect();
        let mut found = imp::strip_rewritten(&roots, &self.policy.hidden, self.since);
        // The working directory's own is checked on its own terms (and moved aside when the
        // agent made it); a submodule's is read-only.
        let top = self.policy.cwd.join(".git");
        let common = self.common.as_ref().map(|c| c.dir.as_path());
        found.repositories.retain(|r| {
            *r != top && !self.policy.submodules.contains(r) && Some(r.as_path()) != common
        });
        if !found.repositories.is_empty() {
            let names: BTreeSet<Vec<u8>> = found
                .repositories
                .iter()
                .map(|r| r.as_os_str().as_encoded_bytes().to_vec())
                .collect();
            crate::output::warn(&format!(
                "the agent made or changed {} ({}): their config and hooks may be its own, and git runs what they name at your next git command there (a shell prompt that shows git's status runs one as you enter); read its config and hooks before you run git there",
                count(
                    found.repositories.len(),
                    "git repository",
                    "git repositories"
                ),
                shown(&names),
            ));
        }
        for (path, what) in &found.stripped {
            crate::output::warn(&format!(
                "took the {} off {}: it changed during the run, and a program the agent rewrote through a memory mapping keeps it",
                what.as_str(),
                agent_path(path)
            ));
        }
        for (path, e) in &found.failed {
            crate::output::error(
                &format!(
                    "{} changed during the run and keeps a set-ID bit or file capabilities, which till could not take off: {e}",
                    agent_path(path)
                ),
                Some(
                    "do not run it; remove it, or run chmod u-s,g-s on it (setcap -r for capabilities)",
                ),
            );
        }
        if let Some((path, e)) = found.unchecked.first() {
            let more = found.unchecked.len() - 1;
            crate::output::warn(&format!(
                "could not look for set-ID programs the agent rewrote in {}{}: {e}; look yourself with find {} -perm /6000",
                agent_path(path),
                if more > 0 {
                    format!(" (and {more} more places)")
                } else {
                    String::new()
                },
                self.policy.cwd.display()
            ));
        }
        found
    }

    /// Once nothing of the agent runs: puts back a `.git/HEAD` the agent broke. With a HEAD
    /// that names nothing, git no longer takes `.git` for a repository and reads the working
    /// directory itself as a bare one: config, hooks and all, written by the agent. Returns
    /// whether it had to.
    pub fn restore_broken_head(&self) -> bool {
        if self.policy.writable_git_hooks {
            return false;
        }
        let mut any = false;
        if let Some(before) = &self.head {
            any |= restore_broken_head_in(&self.git_dir(), before);
        }
        if let Some(common) = &self.common
            && let Some(before) = &common.head
        {
            any |= restore_broken_head_in(&common.dir, before);
        }
        any
    }

    /// Once nothing of the agent runs: gives you back the use of `.git`, `.git/objects` and
    /// `.git/refs` where the agent took it away (`chmod 000`): git that cannot enter one of
    /// them takes the working directory for a bare repository of the agent's making. (The
    /// sandbox keeps the agent from renaming or removing them.) Returns the paths put right.
    pub fn restore_git_modes(&self) -> Vec<PathBuf> {
        if self.head.is_none() || self.policy.writable_git_hooks {
            return Vec::new();
        }
        let git = self.git_dir();
        let mut fixed = Vec::new();
        for dir in [git.clone(), git.join("objects"), git.join("refs")] {
            let Some(restored) = owner_access_restored(&dir) else {
                continue;
            };
            match std::fs::set_permissions(&dir, restored) {
                Ok(()) => crate::output::warn(&format!(
                    "gave {} back its owner's access, which the agent took away: git that cannot enter it reads the working directory as a repository of the agent's making",
                    dir.display()
                )),
                Err(e) => crate::output::error(
                    &format!(
                        "the agent took away the access to {} and till could not give it back: {e}",
                        dir.display()
                    ),
                    Some("do not run git in this directory before you have run chmod u+rwx on it"),
                ),
            }
            fixed.push(dir);
        }
        fixed
    }

    /// Once nothing of the agent runs: moves aside a `.git` the agent made in a working
    /// directory that had none (a new project, or a directory inside another repository), to
    /// `.git-from-agent` (or `.git-from-agent-N`), and says how to take it back. Its config
    /// and hooks are the agent's, and git would run what they name at your next command there
    /// (a shell prompt that shows git's status runs one at once). Returns where it went.
    pub fn move_aside_new_repository(&self) -> Option<PathBuf> {
        if self.policy.writable_git_hooks || !self.dot_git_absent {
            return None;
        }
        // git takes the directory itself for a bare repository when it has the shape of one
        // (`git init --bare .`) and no `.git` that is a repository (one that is not, as an
        // empty directory, is passed over): it needs a `HEAD`, which is moved aside.
        let mut aside_head = None;
        if shaped_like_git_dir(&self.policy.cwd) {
            let head = self.policy.cwd.join("HEAD");
            let aside = self.policy.cwd.join("HEAD-from-agent");
            let moved = if std::fs::symlink_metadata(&aside).is_err() {
                std::fs::rename(&head, &aside)
            } else {
                std::fs::remove_file(&head)
            };
            match moved {
                Ok(()) => crate::output::warn(&format!(
                    "the agent made {} a bare git repository of its own (HEAD, objects, refs, config): git would take it for the repository here and run what its config names at your next git command (a shell prompt that shows git's status runs one at once); till moved its HEAD to HEAD-from-agent, so git no longer does; read config before you put it back",
                    self.policy.cwd.display()
                )),
                Err(e) => crate::output::error(
                    &format!(
                        "the agent made {} a bare git repository of its own, whose config can name commands, and till could not move its HEAD aside: {e}",
                        self.policy.cwd.display()
                    ),
                    Some("remove HEAD (or the repository) before you run git in this directory"),
                ),
            }
            aside_head = Some(aside);
        }
        let made = self.policy.cwd.join(".git");
        if !is_repository(&made) {
            return aside_head;
        }
        move_git_aside(&made, "here").or(aside_head)
    }

    /// Once nothing of the agent runs: moves aside each submodule's `.git` the agent made where
    /// there was none (a submodule not checked out) or put in place of the one there (by moving
    /// the submodule's directory away and making it again): a plain `git status` in the parent
    /// goes into the submodule with the config that `.git` leads to. Returns where they went.
    pub fn move_aside_submodule_repositories(&self) -> Vec<PathBuf> {
        let mut moved = Vec::new();
        for (git, before) in &self.submodules_before {
            let now = identity(git);
            if now.is_none() || now == *before {
                continue;
            }
            // Through the submodule's directory as it was, never a link the agent put in its
            // place (to a repository of yours: git does not go into a link).
            let dir = git.parent().unwrap_or(git);
            if std::fs::canonicalize(dir).ok().as_deref() != Some(dir) {
                continue;
            }
            let place = format!(
                "in the submodule at {}",
                agent_path(git.parent().unwrap_or(git))
            );
            moved.extend(move_git_aside(git, &place));
        }
        moved
    }

    /// Once nothing of the agent runs: removes a `.git/commondir` it created in the working
    /// directory, and says so. git reads config and hooks from the directory that file names,
    /// so one pointing at a copy the agent wrote would run its commands at your next
    /// `git status`. The mounts cannot stop it: it is a new file in `.git`, where git must
    /// create files. Returns whether there was one.
    pub fn remove_planted_commondir(&self) -> bool {
        if self.policy.writable_git_hooks {
            return false;
        }
        let mut any = false;
        if self.commondir_absent {
            any |= remove_planted_commondir_in(&self.git_dir());
        }
        if let Some(common) = &self.common
            && common.commondir_absent
        {
            any |= remove_planted_commondir_in(&common.dir);
        }
        any
    }

    /// Once nothing of the agent runs: removes the empty `.git/config.worktree` the sandbox
    /// made where there was none (read-only to the agent, so that it could not write one, which
    /// git reads as config, commands and all, in a repository with `extensions.worktreeConfig`).
    /// One that is not empty is removed too, and said.
    pub fn remove_worktree_config_stand_in(&self) {
        if self.policy.writable_git_hooks {
            return;
        }
        if self.worktree_config_absent {
            remove_worktree_config_stand_in_in(&self.git_dir());
        }
        if let Some(common) = &self.common
            && common.worktree_config_absent
        {
            remove_worktree_config_stand_in_in(&common.dir);
        }
    }

    /// Once nothing of the agent runs: warns of a rebase, `git am`, cherry-pick or revert the
    /// agent left stopped in the middle ([`OPERATIONS`]). Its `--continue` does what the files
    /// the agent wrote there say, and some of them are commands: a rebase's todo list runs its
    /// `exec` lines, and a merge strategy that is not one of git's own makes git run
    /// `git merge-STRATEGY`, a program of the agent's (`x/../evil` is a path). So one is always
    /// named, with what till found in it, and what till could not read is said, never taken
    /// for nothing. It may be the agent's honest work, so it is named, not ended. Returns the
    /// directories named.
    pub fn warn_rebase_commands(&self) -> Vec<PathBuf> {
        let git = self.git_dir();
        let mut named = Vec::new();
        for ((op, absent), before) in OPERATIONS
            .iter()
            .zip(self.operations_absent)
            .zip(self.operations_state)
        {
            let dir = git.join(op.dir);
            // One there before the run is named when the agent changed what it holds (an
            // `exec` line added to the todo list of a rebase it was started in).
            let changed = before.is_some_and(|b| state_fingerprint(&dir) != Some(b));
            let Some(meta) = (absent || changed)
                .then(|| std::fs::symlink_metadata(&dir).ok())
                .flatten()
            else {
                continue;
            };
            let found = if meta.is_symlink() {
                vec![
                    "it is a symbolic link, which git follows, so till did not read what it holds"
                        .to_string(),
                ]
            } else if meta.is_dir() {
                operation_commands(op, &dir)
            } else {
                // Not a directory: git sees nothing in progress.
                continue;
            };
            let found: String = found.iter().map(|f| format!(", and {f}")).collect();
            crate::output::warn(&format!(
                "the agent {} {} in progress in {}: {} does what the files there say{found}; read them first, or end it with {}",
                if absent { "left" } else { "changed" },
                op.what,
                dir.display(),
                op.resume,
                op.abort,
            ));
            named.push(dir);
        }
        named
    }

    /// Once nothing of the agent runs: warns of what the agent marked in the index so that
    /// `git status` and `git diff` do not show it (`assume-unchanged`, `skip-worktree`), and of
    /// repositories of its own it recorded in the index (gitlinks), which a plain `git status`
    /// at the top enters and runs git in, with the config the agent wrote there
    /// (`core.fsmonitor` is a command). Either may be honest work (a sparse checkout, a
    /// submodule), so they are named, not undone. Returns what was added.
    pub fn warn_index_marks(&self) -> gitindex::Marks {
        let Some(before) = &self.index_before else {
            return gitindex::Marks::default();
        };
        let git = self.git_dir();
        let after = match index_marks(&git, self.index_limit) {
            Ok(after) => after,
            Err(e) => {
                crate::output::warn(&format!(
                    "till could not read {} after the run ({e}), so what the agent may have marked there to hide from `git status` was not checked; `git ls-files -v | grep '^[a-zS]'` lists the files marked so, `git ls-files -s | grep ^160000` the repositories recorded",
                    git.join("index").display()
                ));
                return gitindex::Marks::default();
            }
        };
        let added = before.added_in(&after);
        if !added.hidden.is_empty() {
            crate::output::warn(&format!(
                "the agent marked {} in git's index so that `git status` and `git diff` do not show {} changes (assume-unchanged or skip-worktree): {}; `git ls-files -v | grep '^[a-zS]'` lists such files, `git update-index --no-assume-unchanged --no-skip-worktree -- PATH` shows a file's changes again",
                count(added.hidden.len(), "file", "files"),
                if added.hidden.len() == 1 {
                    "its"
                } else {
                    "their"
                },
                shown(&added.hidden),
            ));
        }
        if !added.gitlinks.is_empty() {
            let one = added.gitlinks.len() == 1;
            crate::output::warn(&format!(
                "the agent recorded {} in git's index ({}): `git status` here runs git inside {}, with the config the agent wrote there, which can name commands to run (core.fsmonitor); read {} first, or take {} out of the index with `git update-index --force-remove -- PATH`",
                count(
                    added.gitlinks.len(),
                    "repository of its own",
                    "repositories of its own",
                ),
                shown(&added.gitlinks),
                if one { "it" } else { "each" },
                if one {
                    "its .git/config"
                } else {
                    "their .git/config"
                },
                if one { "it" } else { "them" },
            ));
        }
        added
    }

    /// Once nothing of the agent runs: warns of replacement refs the agent added
    /// (`refs/replace/…`, `git replace`): with one, `git log`, `git show` and `git diff` show
    /// another object in place of the one a commit really holds, and a push sends the real one.
    /// Where till could not look for them (`packed-refs` it cannot read, `refs/replace` behind
    /// a link, more entries than it looks at) it says so. Returns the names of those added.
    pub fn warn_replace_refs(&self) -> Vec<String> {
        let Some(before) = &self.replace_before else {
            return Vec::new();
        };
        let after = replace_refs(&self.git_dir());
        for (place, fix) in &after.unchecked {
            crate::output::warn(&format!(
                "{place}: replacement refs the agent may have added there were not checked (with one, git log, show and diff show another object in place of the one a commit holds); {fix}"
            ));
        }
        let added: BTreeSet<String> = after.names.difference(before).cloned().collect();
        if !added.is_empty() {
            let names: BTreeSet<Vec<u8>> = added.iter().map(|r| r.as_bytes().to_vec()).collect();
            crate::output::warn(&format!(
                "the agent added {} ({}): git log, show and diff now show other objects in place of the ones your commits hold; `git --no-replace-objects log -p` shows the real ones, `git replace -d` removes a replacement",
                count(added.len(), "replacement ref", "replacement refs"),
                shown(&names),
            ));
        }
        added.into_iter().collect()
    }
}

/// A path the agent chose, to show: its control characters escaped (a name may hold a newline or
/// an escape sequence), and one longer than a line cut in the middle (the agent may nest
/// directories without end).
fn agent_path(path: &Path) -> String {
    const HEAD: usize = 80;
    const TAIL: usize = 160;
    let text = crate::output::printable(&path.to_string_lossy()).into_owned();
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= HEAD + TAIL + 1 {
        return text;
    }
    let head: String = chars[..HEAD].iter().collect();
    let tail: String = chars[chars.len() - TAIL..].iter().collect();
    format!("{head}…{tail}")
}

/// A fingerprint of what the directory `dir` holds, two levels down: each entry's name, inode,
/// size and change time, and the directory's own. The agent can set modification times back,
/// not change times, so a state it rewrote reads different. `None` for no directory.
fn state_fingerprint(dir: &Path) -> Option<u64> {
    use std::hash::{Hash as _, Hasher as _};
    let meta = std::fs::symlink_metadata(dir).ok()?;
    if !meta.is_dir() {
        return None;
    }
    fn stamp(m: &std::fs::Metadata, hash: &mut impl std::hash::Hasher) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt as _;
            (m.ino(), m.ctime(), m.ctime_nsec(), m.size()).hash(hash);
        }
        #[cfg(not(unix))]
        (m.len(), m.modified().ok()).hash(hash);
    }
    let mut hash = std::collections::hash_map::DefaultHasher::new();
    stamp(&meta, &mut hash);
    let mut dirs = vec![(dir.to_path_buf(), 0)];
    let mut seen = 0;
    while let Some((d, depth)) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for e in entries {
            seen += 1;
            if seen > WALK_ENTRIES {
                return Some(hash.finish());
            }
            e.file_name().hash(&mut hash);
            // Not followed through a link.
            if let Ok(m) = e.metadata() {
                stamp(&m, &mut hash);
                if m.is_dir() && depth < 2 {
                    dirs.push((e.path(), depth + 1));
                }
            }
        }
    }
    Some(hash.finish())
}

/// An operation git stops in the middle of and carries on at `--continue`, from the files it
/// keeps in `.git/DIR`.
struct Operation {
    dir: &'static str,
    what: &'static str,
    resume: &'static str,
    abort: &'static str,
}

const OPERATIONS: [Operation; 3] = [
    Operation {
        dir: "rebase-merge",
        what: "a rebase",
        resume: "`git rebase --continue`",
        abort: "`git rebase --abort`",
    },
    Operation {
        dir: "rebase-apply",
        what: "a rebase or `git am`",
        resume: "`git rebase --continue` (or `git am --continue`)",
        abort: "`git rebase --abort` (or `git am --abort`)",
    },
    Operation {
        dir: "sequencer",
        what: "a cherry-pick or revert",
        resume: "`git cherry-pick --continue` (or `git revert --continue`)",
        abort: "`git cherry-pick --abort` (or `git revert --abort`)",
    },
];

/// The merge strategies git carries out itself (or with a program of its own); any other name
/// makes git run `git merge-NAME`.
const GIT_STRATEGIES: &[&str] = &["ort", "recursive", "resolve", "octopus", "ours", "subtree"];

/// What the stopped operation `op` in `dir` runs at `--continue`, as far as till can read it,
/// and what it could not read: a rebase's `exec` lines and merge strategy, a cherry-pick's or
/// revert's merge strategy (`options.strategy` in `opts`).
fn operation_commands(op: &Operation, dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let cannot = |file: &Path, e: &dyn std::fmt::Display, what: &str| {
        format!("till could not read {} ({e}), {what}", file.display())
    };
    let strategy = |name: &[u8]| -> Option<String> {
        let name = String::from_utf8_lossy(name);
        (!GIT_STRATEGIES.contains(&name.as_ref())).then(|| {
            let name = crate::output::printable(&name);
            format!("its merge strategy is `{name}`, not one of git's own: git runs it as the program `git-merge-{name}`")
        })
    };
    const STRATEGY_UNREAD: &str =
        "whose merge strategy git runs as a program when it is not one of its own";
    if op.dir == "rebase-merge" {
        let todo = dir.join("git-rebase-todo");
        match read_agent_text(&todo, LARGE_FILE) {
            Ok(None) => {}
            Ok(Some(text)) => {
                let commands = exec_commands(&text);
                if !commands.is_empty() {
                    // The agent wrote them: shown as the terminal may show them.
                    let shown: Vec<std::borrow::Cow<'_, str>> = commands
                        .iter()
                        .take(3)
                        .map(|c| crate::output::printable(c))
                        .collect();
                    found.push(format!(
                        "its todo list runs {} ({}{})",
                        count(commands.len(), "command", "commands"),
                        shown.join("; "),
                        if commands.len() > 3 { "; …" } else { "" },
                    ));
                }
            }
            Err(e) => found.push(cannot(&todo, &e, "a todo list whose `exec` lines git runs")),
        }
        let file = dir.join("strategy");
        match read_agent_text(&file, LARGE_FILE) {
            Ok(None) => {}
            Ok(Some(line)) => {
                // Git reads it as one line: without the newline (or CRLF) at its end.
                let line = match line.strip_suffix(b"\n") {
                    Some(line) => line.strip_suffix(b"\r").unwrap_or(line),
                    None => &line,
                };
                found.extend(strategy(line));
            }
            Err(e) => found.push(cannot(&file, &e, STRATEGY_UNREAD)),
        }
    } else if op.dir == "sequencer" {
        let file = dir.join("opts");
        match read_agent_file(&file, LARGE_FILE) {
            Ok(None) => {}
            Ok(Some(data)) => match gitconfig::last_value(&data, "options", "strategy") {
                Ok(name) => found.extend(name.as_deref().and_then(strategy)),
                Err(()) => found.push(cannot(
                    &file,
                    &"it is not in the config format git reads",
                    STRATEGY_UNREAD,
                )),
            },
            Err(e) => found.push(cannot(&file, &e, STRATEGY_UNREAD)),
        }
    }
    found
}

/// The commands of a rebase's todo list's `exec` lines (`exec CMD` or `x CMD`).
fn exec_commands(todo: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(todo)
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let (word, rest) = l.split_once(char::is_whitespace)?;
            matches!(word, "exec" | "x").then(|| rest.trim().to_string())
        })
        .collect()
}

/// The permissions that give the directory `dir` its owner's read, write and search access
/// back, when it lacks any of them; `None` for one that has them, or is no directory (not
/// followed through a link). Modes are unix's; elsewhere there is no sandbox to run.
fn owner_access_restored(dir: &Path) -> Option<std::fs::Permissions> {
    let meta = std::fs::symlink_metadata(dir).ok()?;
    if !meta.is_dir() {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode();
        (mode & 0o700 != 0o700).then(|| std::fs::Permissions::from_mode(mode | 0o700))
    }
    #[cfg(not(unix))]
    None
}

/// The most till reads of `.git/HEAD`, and of the other files of `.git` it reads (a rebase's
/// todo list and merge strategy up to their first NUL, a cherry-pick's options,
/// `packed-refs`); an index may be larger.
const SMALL_FILE: u64 = 64 * 1024;
/// How much of a git config file till reads for what it names.
const CONFIG_FILE: u64 = 1024 * 1024;
const LARGE_FILE: u64 = 256 * 1024 * 1024;
const INDEX_FILE: u64 = 2 * 1024 * 1024 * 1024;
/// The least [`Sandbox::index_limit`] allows after a run, however small the index was.
const INDEX_AFTER_LEAST: u64 = 64 * 1024 * 1024;

/// The most till reads of each index file after the run (see [`Sandbox::index_limit`]): twice
/// the largest of `index` and the shared indexes (`sharedindex.*`) before it, within bounds.
fn index_limit_after(git: &Path) -> u64 {
    let size = |p: &Path| {
        std::fs::symlink_metadata(p)
            .ok()
            .filter(std::fs::Metadata::is_file)
            .map_or(0, |m| m.len())
    };
    let shared = std::fs::read_dir(git)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .as_encoded_bytes()
                .starts_with(b"sharedindex.")
        })
        .map(|e| size(&e.path()));
    let largest = shared.chain([size(&git.join("index"))]).max().unwrap_or(0);
    largest
        .saturating_mul(2)
        .clamp(INDEX_AFTER_LEAST, INDEX_FILE)
}

/// A file in the working directory's `.git`, which the agent may have replaced, read by till
/// outside the sandbox: not through a symbolic link at its end (which could name any file of
/// yours), only when it is a regular file (a FIFO would keep till waiting for ever), and only up
/// to `limit` bytes. `Ok(None)` when there is none.
fn read_agent_file(path: &Path, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    match open_agent_file(path)? {
        Some((file, len)) => read_at_most(file, len, limit).map(Some),
        None => Ok(None),
    }
}

/// What `file` (of length `len` when opened) holds, when it is no more than `limit` bytes.
fn read_at_most(file: std::fs::File, len: u64, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    if len > limit {
        return Err(too_large(limit));
    }
    let mut data = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(limit + 1).read_to_end(&mut data)?;
    if data.len() as u64 > limit {
        return Err(too_large(limit));
    }
    Ok(data)
}

/// Like [`read_agent_file`], for a file git reads as a C string: up to its first NUL, where
/// git stops. The limit is on what comes before it, so a file padded with NULs past the limit
/// reads as git reads it instead of not at all.
fn read_agent_text(path: &Path, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read as _;
    let Some((mut file, _)) = open_agent_file(path)? else {
        return Ok(None);
    };
    let mut data = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match file.read(&mut chunk) {
            Ok(0) => return Ok(Some(data)),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if let Some(nul) = chunk[..n].iter().position(|&b| b == 0) {
            data.extend_from_slice(&chunk[..nul]);
            return Ok(Some(data));
        }
        data.extend_from_slice(&chunk[..n]);
        if data.len() as u64 > limit {
            return Err(too_large(limit));
        }
    }
}

/// Opens a file of the agent's `.git` as [`read_agent_file`] reads it: its length with it.
fn open_agent_file(path: &Path) -> std::io::Result<Option<(std::fs::File, u64)>> {
    open_regular_file(path, false)
}

/// Opens `path` when it is a regular file (not waiting on a FIFO), through a link at its end
/// only when `follow`: the file and its length, `None` when there is none.
fn open_regular_file(path: &Path, follow: bool) -> std::io::Result<Option<(std::fs::File, u64)>> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        &mut options,
        if follow { 0 } else { libc::O_NOFOLLOW } | libc::O_NONBLOCK,
    );
    #[cfg(not(unix))]
    let _ = follow;
    let file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        #[cfg(unix)]
        Err(e)
            if e.raw_os_error() == Some(libc::ELOOP)
                && std::fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink()) =>
        {
            return Err(std::io::Error::other("it is a symbolic link"));
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("it is not a regular file"));
    }
    Ok(Some((file, meta.len())))
}

fn too_large(limit: u64) -> std::io::Error {
    std::io::Error::other(format!("it is larger than {limit} bytes"))
}

/// Puts `contents` in a file of the agent's `.git` as a new regular file: whatever is there
/// (a symbolic link to a file of yours included) is removed first, not written through.
fn replace_agent_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW);
    options.open(path)?.write_all(contents)
}

/// The marks of the repository's index at `git` (none when it has no index). A split index
/// (`git update-index --split-index`) keeps most entries, marks and all, in the shared index
/// `sharedindex.HEX` its `link` extension names, and only what changed since in `index`, so
/// both are read and merged as git merges them.
fn index_marks(git: &Path, limit: u64) -> Result<gitindex::Marks, String> {
    let index = match read_agent_file(&git.join("index"), limit) {
        Ok(None) => return Ok(gitindex::Marks::default()),
        Ok(Some(data)) => gitindex::parse(&data).ok_or("it is not an index git reads")?,
        Err(e) => return Err(e.to_string()),
    };
    let Some(name) = index.shared_index() else {
        return Ok(index.marks());
    };
    let shared = git.join(name);
    let unread = |why: &dyn std::fmt::Display| {
        format!(
            "the shared index it is split from, {}: {why}",
            shared.display()
        )
    };
    match read_agent_file(&shared, limit) {
        Ok(Some(data)) => index
            .merged(&data)
            .ok_or_else(|| unread(&"it is not one git reads with it")),
        Ok(None) => Err(unread(&"there is none")),
        Err(e) => Err(unread(&e)),
    }
}

/// `n` and the noun: `one` when `n` is one, `many` otherwise.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Up to three of `names` as the terminal may show them (an agent chose them), then `…`.
fn shown(names: &BTreeSet<Vec<u8>>) -> String {
    let mut out: Vec<String> = names
        .iter()
        .take(3)
        .map(|n| crate::output::printable(&String::from_utf8_lossy(n)).into_owned())
        .collect();
    if names.len() > 3 {
        out.push("…".to_string());
    }
    out.join(", ")
}

/// The replacement refs of a repository, as far as till could look for them.
struct ReplaceRefs {
    /// Their names (`refs/replace/…`).
    names: BTreeSet<String>,
    /// Where till could not look, and what to do instead.
    unchecked: Vec<(String, &'static str)>,
}

/// The most directory entries till looks at in a walk of the agent's `.git` (`refs/replace`, a
/// rebase's state): a repository has a handful, and the agent can make millions.
const WALK_ENTRIES: usize = 4096;

/// The replacement refs of the repository at `git`: loose ones under `refs/replace` and packed
/// ones in `packed-refs`. git follows a `refs` or `refs/replace` that is a symbolic link, which
/// could lead anywhere (`/`, a network mount), so till does not, and says so; nor does it
/// follow links below, or look at more than [`WALK_ENTRIES`] entries.
fn replace_refs(git: &Path) -> ReplaceRefs {
    const LIST: &str = "`git replace -l` lists them";
    let mut refs = ReplaceRefs {
        names: BTreeSet::new(),
        unchecked: Vec::new(),
    };
    let root = git.join("refs").join("replace");
    let linked = [git.join("refs"), root.clone()]
        .into_iter()
        .find(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_symlink()));
    if let Some(link) = linked {
        refs.unchecked.push((
            format!(
                "{} is a symbolic link, which git follows and till does not",
                link.display()
            ),
            "remove the link if you did not make it, and until then add --no-replace-objects to git log, show and diff",
        ));
    } else {
        let mut dirs = vec![root.clone()];
        let mut seen = 0;
        'walk: while let Some(dir) = dirs.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                    ) =>
                {
                    continue;
                }
                Err(e) => {
                    refs.unchecked
                        .push((format!("till could not read {} ({e})", dir.display()), LIST));
                    continue;
                }
            };
            for e in entries {
                let e = match e {
                    Ok(e) => e,
                    Err(e) => {
                        refs.unchecked
                            .push((format!("till could not read {} ({e})", dir.display()), LIST));
                        continue 'walk;
                    }
                };
                seen += 1;
                if seen > WALK_ENTRIES {
                    refs.unchecked.push((
                        format!(
                            "{} holds more than {WALK_ENTRIES} entries, and till looked at no more",
                            root.display()
                        ),
                        LIST,
                    ));
                    break 'walk;
                }
                let path = e.path();
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    dirs.push(path);
                } else if let Ok(rel) = path.strip_prefix(git) {
                    refs.names.insert(rel.to_string_lossy().into_owned());
                }
            }
        }
    }
    let packed = git.join("packed-refs");
    match read_agent_file(&packed, LARGE_FILE) {
        Ok(None) => {}
        Ok(Some(packed)) => {
            for line in packed.split(|&b| b == b'\n') {
                let name = line
                    .iter()
                    .position(|&b| b == b' ')
                    .map_or(&[][..], |at| &line[at + 1..]);
                if name.starts_with(b"refs/replace/") {
                    refs.names
                        .insert(String::from_utf8_lossy(name).into_owned());
                }
            }
        }
        Err(e) => refs.unchecked.push((
            format!("till could not read {} ({e})", packed.display()),
            LIST,
        )),
    }
    refs
}

/// Whether `head` (a `.git/HEAD`) is one git accepts: a symbolic ref under `refs/`, or a
/// commit id.
fn valid_head(head: &[u8]) -> bool {
    let head = head.strip_suffix(b"\n").unwrap_or(head);
    head.starts_with(b"ref: refs/")
        || (matches!(head.len(), 40 | 64) && head.iter().all(u8::is_ascii_hexdigit))
}

/// The network of the till sandbox this process runs in, if it runs in one.
pub fn inherited() -> Option<Net> {
    match std::env::var(EnvVars::TILL_SANDBOX).ok()?.as_str() {
        "proxy" => Some(Net::Proxy),
        "open" => Some(Net::Open),
        _ => None,
    }
}

/// Adjusts the agent's environment for a sandbox with network `net`: marks it sandboxed, points
/// temp files at the private /tmp, and drops the addresses of buses and agents it cannot reach.
pub fn agent_env(env: &mut Vec<(OsString, OsString)>, net: Option<Net>) {
    let Some(net) = net else {
        return;
    };
    env.retain(|(k, _)| {
        let name = k.to_string_lossy();
        !DROPPED_ENV.iter().any(|d| name == *d) && name != EnvVars::TILL_SANDBOX
    });
    env.push((EnvVars::TILL_SANDBOX.into(), net.as_str().into()));
    env.push(("TMPDIR".into(), "/tmp".into()));
}

/// The files of the buses and agents whose addresses [`DROPPED_ENV`] takes from the agent, as
/// `var` (the environment) and `home` tell them: the session bus's `unix:path=` socket and a
/// `nonce-tcp:` bus's nonce file, the SSH agent's socket, gnome-keyring's control directory,
/// and the `keyring-XXXXXX` directories gnome-keyring makes in `$XDG_CACHE_HOME` (`~/.cache`)
/// when it runs without a runtime directory. Dropping a variable does not hide what it names:
/// an agent lists `~/.cache` or `/proc/net/unix`, and a keyring's control socket starts a
/// PKCS#11 store on request that hands every secret to any process of the user. Paths that do
/// not exist are left to the caller to drop.
fn agent_sockets(home: Option<&Path>, var: impl Fn(&str) -> Option<OsString>) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let set = |name: &str| var(name).filter(|v| !v.is_empty());
    if let Some(address) = set("DBUS_SESSION_BUS_ADDRESS") {
        found.extend(bus_files(&address.to_string_lossy()));
    }
    for name in ["SSH_AUTH_SOCK", "GNOME_KEYRING_CONTROL"] {
        found.extend(set(name).map(PathBuf::from));
    }
    // `PATH:PID:PROTOCOL`, from gpg-agents before 2.1.
    if let Some(info) = set("GPG_AGENT_INFO") {
        let info = info.to_string_lossy();
        if let Some(socket) = info.split(':').next().filter(|s| !s.is_empty()) {
            found.push(PathBuf::from(socket));
        }
    }
    let cache = set("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|c| c.is_absolute())
        .or_else(|| home.map(|h| h.join(".cache")));
    if let Some(cache) = cache
        && let Ok(entries) = std::fs::read_dir(&cache)
    {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with("keyring-")
                && entry.file_type().is_ok_and(|t| t.is_dir())
            {
                found.push(entry.path());
            }
        }
    }
    found
}

/// The files a D-Bus address names (`unix:path=…`, `nonce-tcp:…,noncefile=…`), its values
/// unescaped. The address is a list separated by `;`, tried in turn, so every entry counts.
fn bus_files(address: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in address.split(';') {
        let Some((transport, pairs)) = entry.split_once(':') else {
            continue;
        };
        for pair in pairs.split(',') {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            let file = match (transport, key) {
                ("unix", "path") | ("nonce-tcp", "noncefile") => unescape_bus_value(value),
                _ => None,
            };
            files.extend(file);
        }
    }
    files
}

/// A D-Bus address value with its `%XX` escapes decoded; `None` for a malformed escape.
fn unescape_bus_value(value: &str) -> Option<PathBuf> {
    let mut bytes = Vec::with_capacity(value.len());
    let mut rest = value.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt as _;
        Some(PathBuf::from(OsString::from_vec(bytes)))
    }
    #[cfg(not(unix))]
    {
        String::from_utf8(bytes).ok().map(PathBuf::from)
    }
}

/// Resolves the policy in till's view: expands `~`, follows symlinks, drops paths that do not
/// exist, and refuses working directories that would leave the protections empty.
fn resolve(
    config: &Config,
    paths: &Paths,
    net: Net,
    simulate_missing: Option<String>,
) -> Result<Policy, SandboxError> {
    let usage = |message: String, hint: &str| SandboxError::Usage {
        message,
        hint: hint.to_string(),
    };
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf()));
    let expand = |p: &str| -> Option<PathBuf> {
        match p.strip_prefix('~') {
            Some(rest) => Some(home.as_ref()?.join(rest.trim_start_matches('/'))),
            None => Some(PathBuf::from(p)),
        }
    };
    let cwd = std::env::current_dir()
        .and_then(std::fs::canonicalize)
        .map_err(|e| SandboxError::Setup {
            message: format!("cannot find the working directory: {e}"),
            hint: None,
        })?;
    if let Some(home) = home.as_ref().and_then(|h| std::fs::canonicalize(h).ok())
        && home.starts_with(&cwd)
    {
        return Err(usage(
            format!(
                "the working directory {} holds your home directory, and the sandbox lets the agent write the working directory",
                cwd.display()
            ),
            "cd into the project the agent works on, and list anything else it must write under [sandbox] writable",
        ));
    }

    // till's directories are hidden even when they do not exist yet: an agent whose working
    // directory holds one of them could otherwise create it, and plant a config.toml that
    // sends root keys elsewhere on till's next run.
    for dir in paths
        .config_file
        .parent()
        .into_iter()
        .chain([paths.data_dir.as_path()])
    {
        crate::config::create_private_dir(dir).map_err(|e| SandboxError::Setup {
            message: format!("{e:#}"),
            hint: None,
        })?;
    }
    let mut hidden: Vec<PathBuf> = Vec::new();
    let add = |p: PathBuf, hidden: &mut Vec<PathBuf>| {
        if let Ok(real) = std::fs::canonicalize(&p)
            && !hidden.contains(&real)
        {
            hidden.push(real);
        }
    };
    if let Some(config_dir) = paths.config_file.parent() {
        add(config_dir.to_path_buf(), &mut hidden);
    }
    add(paths.data_dir.clone(), &mut hidden);
    // What till's directories hold under other names: hidden where it is, or the run refused.
    // The names till reads its files by, and the links in its directories, are walked below
    // for links the agent could turn elsewhere.
    let mut named: Vec<PathBuf> = paths
        .config_file
        .parent()
        .into_iter()
        .chain([paths.config_file.as_path(), paths.data_dir.as_path()])
        .map(Path::to_path_buf)
        .collect();
    let dirs = hidden.clone();
    for dir in &dirs {
        for target in
            elsewhere(dir, &hidden, &mut named).map_err(|(message, hint)| usage(message, &hint))?
        {
            add(target, &mut hidden);
        }
    }
    let till_dirs = hidden.len();
    // The buses and agents whose addresses the agent's environment loses, where they are
    // files outside /tmp and the runtime directory (which the sandbox replaces whole),
    // whatever `default_deny` says: the banner promises the session bus and keyring hidden.
    for socket in agent_sockets(home.as_deref(), |name| std::env::var_os(name)) {
        add(socket, &mut hidden);
    }
    let sockets = hidden.len() - till_dirs;
    let sandbox = &config.sandbox;
    let defaults = if sandbox.default_deny {
        DEFAULT_DENY
    } else {
        &[]
    };
    for p in defaults
        .iter()
        .copied()
        .chain(sandbox.deny.iter().map(String::as_str))
    {
        if let Some(path) = expand(p) {
            add(path.clone(), &mut hidden);
            named.push(path);
        }
    }
    if let Some(h) = hidden.iter().find(|h| cwd.starts_with(h)) {
        return Err(usage(
            format!(
                "the working directory {} is inside {}, which the sandbox hides",
                cwd.display(),
                h.display()
            ),
            "run the agent from its project directory",
        ));
    }

    let mut writable = Vec::new();
    for p in &sandbox.writable {
        let Some(path) = expand(p) else { continue };
        match std::fs::canonicalize(&path) {
            Ok(real) if !writable.contains(&real) && real != cwd => writable.push(real),
            Ok(_) => {}
            Err(_) => crate::output::warn(&format!(
                "[sandbox] writable: {} does not exist; the agent cannot create it",
                path.display()
            )),
        }
    }

    if !sandbox.writable_git_hooks {
        for (file, setting, path) in git_config_in_reach(&cwd, home.as_deref(), &writable) {
            if setting != "core.hooksPath" && !setting.ends_with(".path") {
                crate::output::warn(&format!(
                    "{}: {setting} runs {}, where the agent may write: git runs it outside the sandbox when it needs it (a filter or textconv at your next `git status` or `git diff`); review it with the agent's other changes",
                    file.display(),
                    path.display()
                ));
                continue;
            }
            crate::output::warn(&format!(
                "{}: {setting} is {}, where the agent may write: git runs what is there (hooks, or commands the config it includes names) at your next git command, outside the sandbox; review it with the agent's other changes",
                file.display(),
                path.display()
            ));
        }
        for hook in hooks_with_other_names(&cwd) {
            crate::output::warn(&format!(
                "{} has another name (a hard link), which till cannot find to protect: the agent could change the hook through it, and git runs it at your next commit; make it a copy or a symbolic link",
                hook.display()
            ));
        }
        if let Some((link, text)) = git_link_to_nothing(&cwd) {
            return Err(usage(
                format!(
                    "{} leads to {}, which does not exist: the agent could create it, and git would take what it put there (hooks, config) at your next git command",
                    link.display(),
                    text.display()
                ),
                "create what it leads to first, or remove it",
            ));
        }
    }
    // A link on the way to what is hidden, where the agent may write (a `TILL_HOME` that is a
    // link in the project, a dotfiles directory linked from it): the agent could point it at
    // files of its own, which till (or the tool whose secrets are hidden) would read by that
    // name on its next run. The hidden target is no help then.
    // (Strictly below the working directory or a writable path: those are mounts of their
    // own, which the agent cannot rename or remove.)
    let agent_may_write = |p: &Path| {
        let below = |root: &PathBuf| p.starts_with(root) && p != root.as_path();
        (below(&cwd) || writable.iter().any(below)) && !hidden.iter().any(|h| p.starts_with(h))
    };
    for name in &named {
        if let Some(link) = links_on_the_way(name)
            .into_iter()
            .find(|l| agent_may_write(l))
        {
            return Err(usage(
                format!(
                    "{} is a symbolic link on the way to {} (or a directory the way leaves by `..`), in a directory the agent may write: it could point the link at files of its own, which would be read by that name after the run",
                    link.display(),
                    name.display()
                ),
                "use the path the link leads to instead (for till's own files, set TILL_HOME to the real directory), or move the link out of the working directory and [sandbox] writable",
            ));
        }
    }

    Ok(Policy {
        net,
        proxy_port: 0,
        cwd,
        writable,
        hidden,
        till_dirs,
        sockets,
        writable_git_hooks: sandbox.writable_git_hooks,
        submodules: Vec::new(),
        simulate_missing,
    })
}

/// The entries of a git directory the sandbox pins or makes read-only (`protect_git` in
/// `linux/steps.rs`).
const GIT_ENTRIES: [&str; 8] = [
    "objects",
    "refs",
    "hooks",
    "modules",
    "worktrees",
    "info",
    "config",
    "config.worktree",
];

/// A symbolic link that leads to nothing among what the sandbox keeps from the agent in the
/// working directory's repository: `.git` itself, one of [`GIT_ENTRIES`], or a hook. The agent
/// could create what it leads to, and git would take what it put there. The link, and its
/// text.
fn git_link_to_nothing(cwd: &Path) -> Option<(PathBuf, PathBuf)> {
    let dangling = |p: PathBuf| {
        let link = std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_symlink());
        (link && std::fs::metadata(&p).is_err()).then(|| {
            let text = std::fs::read_link(&p).unwrap_or_default();
            (p, text)
        })
    };
    let dot_git = cwd.join(".git");
    if let Some(found) = dangling(dot_git.clone()) {
        return Some(found);
    }
    // A `.git` file names the git directory, and a linked worktree's that of the main one.
    let dirs = if std::fs::symlink_metadata(&dot_git).is_ok_and(|m| m.is_file()) {
        let (dir, common) = git_dirs(cwd)?;
        if let Some(missing) = [&dir, &common].into_iter().find(|d| !d.is_dir()) {
            return Some((dot_git, missing.clone()));
        }
        vec![dir, common]
    } else if dot_git.is_dir() {
        vec![dot_git]
    } else {
        return None;
    };
    dirs.iter().find_map(|dir| {
        let hooks = std::fs::read_dir(dir.join("hooks"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path());
        GIT_ENTRIES
            .iter()
            .map(|name| dir.join(name))
            .chain(hooks)
            .find_map(dangling)
    })
}

/// Where the `.git` of each submodule's working tree that `marks` (the working directory's
/// index) records is, or would be (a submodule not checked out has none), and of theirs in
/// turn, eight levels down: a file naming the git directory under `.git/modules` (read-only in
/// the sandbox), or an older submodule's own directory. A plain `git status` in the parent
/// goes into every submodule with the config its `.git` leads to: those there are made
/// read-only in the sandbox, and one made or put in place of another during the run is moved
/// aside after it ([`Sandbox::move_aside_new_repository`]).
fn submodule_gits(cwd: &Path, marks: &gitindex::Marks) -> Vec<PathBuf> {
    use std::path::Component;
    const DEPTH: usize = 8;
    let mut found = Vec::new();
    let mut todo: Vec<(PathBuf, gitindex::Marks, usize)> =
        vec![(cwd.to_path_buf(), marks.clone(), 0)];
    while let Some((top, marks, depth)) = todo.pop() {
        for link in &marks.gitlinks {
            let rel = PathBuf::from(String::from_utf8_lossy(link).into_owned());
            if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
                continue;
            }
            let tree = top.join(rel);
            let dot_git = tree.join(".git");
            let exists = std::fs::symlink_metadata(&dot_git).is_ok();
            found.push(dot_git);
            if exists
                && depth + 1 < DEPTH
                && let Some(git) = repository_git_dir(&tree)
                && let Ok(inner) = index_marks(&git, INDEX_FILE)
            {
                todo.push((tree, inner, depth + 1));
            }
        }
    }
    found
}

/// The hooks of the working directory's repository that are files with a second hard link:
/// their other name may lie where the agent writes, and no cover reaches it there.
fn hooks_with_other_names(cwd: &Path) -> Vec<PathBuf> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let Some(git) = repository_git_dir(cwd) else {
            return Vec::new();
        };
        std::fs::read_dir(git.join("hooks"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file() && m.nlink() > 1))
            .collect()
    }
    #[cfg(not(unix))]
    {
        let _ = cwd;
        Vec::new()
    }
}

/// [`Sandbox::restore_broken_head`] in the git directory `dir`, whose HEAD was `before`.
fn restore_broken_head_in(dir: &Path, before: &[u8]) -> bool {
    let file = dir.join("HEAD");
    if read_agent_file(&file, SMALL_FILE).is_ok_and(|now| now.is_some_and(|h| valid_head(&h))) {
        return false;
    }
    match replace_agent_file(&file, before) {
        Ok(()) => crate::output::warn(&format!(
            "put back {} as it was before the run: the agent left it naming no branch or commit, which makes git read the working directory as a repository of the agent's making",
            file.display()
        )),
        Err(e) => crate::output::error(
            &format!(
                "the agent broke {} and till could not put it back: {e}",
                file.display()
            ),
            Some("do not run git in this directory before you have fixed .git/HEAD"),
        ),
    }
    true
}

/// [`Sandbox::remove_planted_commondir`] in the git directory `dir`.
fn remove_planted_commondir_in(dir: &Path) -> bool {
    let file = dir.join("commondir");
    if std::fs::symlink_metadata(&file).is_err() {
        return false;
    }
    match std::fs::remove_file(&file) {
        Ok(()) => crate::output::warn(&format!(
            "removed {}, which the agent created: it would make git read its config and hooks from another directory",
            file.display()
        )),
        Err(e) => crate::output::error(
            &format!(
                "the agent created {}, which makes git read its config and hooks from another directory, and till could not remove it: {e}",
                file.display()
            ),
            Some("remove it before you run git in this directory"),
        ),
    }
    true
}

/// [`Sandbox::remove_worktree_config_stand_in`] in the git directory `dir`.
fn remove_worktree_config_stand_in_in(dir: &Path) {
    let file = dir.join("config.worktree");
    let Ok(meta) = std::fs::symlink_metadata(&file) else {
        return;
    };
    let removed = std::fs::remove_file(&file);
    if meta.is_file() && meta.len() == 0 {
        return;
    }
    match removed {
        Ok(()) => crate::output::warn(&format!(
            "removed {}, which the agent wrote: git reads it as config, commands included",
            file.display()
        )),
        Err(e) => crate::output::error(
            &format!(
                "the agent wrote {}, which git reads as config, commands included, and till could not remove it: {e}",
                file.display()
            ),
            Some("remove it before you run git in this directory"),
        ),
    }
}

/// The main repository's git directory of a linked worktree, where the agent may write (it is
/// a writable path, so that commits from the worktree go): what [`Sandbox`] checks there after
/// the run, as in the worktree's own.
struct CommonState {
    dir: PathBuf,
    commondir_absent: bool,
    worktree_config_absent: bool,
    head: Option<Vec<u8>>,
}

impl CommonState {
    /// For a working directory whose `.git` is a file naming a linked worktree's git directory,
    /// when the main one lies under one of `roots`.
    fn of(cwd: &Path, roots: &[&Path]) -> Option<Self> {
        if !std::fs::symlink_metadata(cwd.join(".git")).is_ok_and(|m| m.is_file()) {
            return None;
        }
        let (dir, common) = git_dirs(cwd)?;
        let (dir, common) = (
            std::fs::canonicalize(dir).ok()?,
            std::fs::canonicalize(common).ok()?,
        );
        if dir == common || !roots.iter().any(|r| common.starts_with(r)) {
            return None;
        }
        let absent = |name: &str| std::fs::symlink_metadata(common.join(name)).is_err();
        Some(Self {
            commondir_absent: absent("commondir"),
            worktree_config_absent: absent("config.worktree"),
            head: read_agent_file(&common.join("HEAD"), SMALL_FILE)
                .ok()
                .flatten()
                .filter(|h| valid_head(h)),
            dir: common,
        })
    }
}

/// Moves the `.git` at `made` (the agent's) aside in its directory, to `.git-from-agent` (or
/// `.git-from-agent-N`, or past those a name the agent could not foresee), and says so, with
/// `place` saying where it was ("here", "in the submodule at …"). Where it went.
fn move_git_aside(made: &Path, place: &str) -> Option<PathBuf> {
    let dir = made.parent()?;
    let aside = (0..100)
        .map(|n| {
            dir.join(if n == 0 {
                ".git-from-agent".to_string()
            } else {
                format!(".git-from-agent-{n}")
            })
        })
        .chain(std::iter::once_with(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            dir.join(format!(".git-from-agent-{}-{nanos}", std::process::id()))
        }))
        .find(|p| std::fs::symlink_metadata(p).is_err());
    let fix = "remove it, or read its config and hooks, before you run git in that directory";
    let Some(aside) = aside else {
        crate::output::error(
            &format!(
                "the agent made a git repository at {}, whose config and hooks are its own, and took every name till would move it to (.git-from-agent…)",
                agent_path(made)
            ),
            Some(fix),
        );
        return None;
    };
    let name = aside.file_name().unwrap_or_default().to_string_lossy();
    match std::fs::rename(made, &aside) {
        Ok(()) => {
            crate::output::warn(&format!(
                "moved the git repository the agent made {place} to {}: its config and hooks are the agent's, and git runs what they name at your next git command in that directory (a shell prompt that shows git's status runs one at once; a `git status` above a submodule goes into it); read {name}/config and {name}/hooks, then `mv {name} .git` to keep it",
                agent_path(&aside)
            ));
            Some(aside)
        }
        Err(e) => {
            crate::output::error(
                &format!(
                    "the agent made a git repository at {}, whose config and hooks are its own, and till could not move it aside: {e}",
                    agent_path(made)
                ),
                Some(fix),
            );
            None
        }
    }
}

/// Whether git would take `dir` itself for a git directory: a `HEAD`, with `objects` and
/// `refs` or a `commondir` that names where they are.
fn shaped_like_git_dir(dir: &Path) -> bool {
    // git looks for `objects` and `refs` by `access(X_OK)`, whatever their kind: an executable
    // file passes too.
    let there = |name: &str| std::fs::symlink_metadata(dir.join(name)).is_ok();
    there("HEAD") && ((there("objects") && there("refs")) || there("commondir"))
}

/// Whether `dot_git` (a working directory's `.git`) is a repository, or leads to one: a file
/// (`gitdir: …`), a link, or a directory with the shape of one. An empty `.git` directory is
/// none: git passes over it, and the agent could fill it in.
fn is_repository(dot_git: &Path) -> bool {
    match std::fs::symlink_metadata(dot_git) {
        Ok(m) if m.is_dir() => shaped_like_git_dir(dot_git),
        Ok(_) => true,
        Err(_) => false,
    }
}

/// The working directory's git directory, canonical: `.git`, where it leads as a link, or the
/// one a `.git` file names (`gitdir: …`: a linked worktree's, a submodule's, or one made with
/// `--separate-git-dir`). `None` without one.
fn repository_git_dir(cwd: &Path) -> Option<PathBuf> {
    let dot_git = cwd.join(".git");
    let meta = std::fs::symlink_metadata(&dot_git).ok()?;
    let dir = if meta.is_file() {
        git_dirs(cwd)?.0
    } else {
        dot_git
    };
    std::fs::canonicalize(dir).ok().filter(|d| d.is_dir())
}

/// What the working directory's repository's config names that lies where the agent may write
/// (the working directory or one of `writable`): the directory git runs hooks from
/// (`core.hooksPath`, as husky and lefthook set it), and a file it reads as more config
/// (`include.path`, `includeIf.….path`, where `core.fsmonitor` or an alias would run a
/// command). The config is your global one (`GIT_CONFIG_GLOBAL`, or
/// `$XDG_CONFIG_HOME/git/config` and `~/.gitconfig`), the repository's `config` (the main
/// repository's, for a linked worktree) and a worktree's `config.worktree`. `.git/hooks` and
/// `.git/config` are made read-only for the run; these are the project's files, which the
/// agent writes as it writes any. Each with the config file and the setting that name it.
fn git_config_in_reach(
    cwd: &Path,
    home: Option<&Path>,
    writable: &[PathBuf],
) -> Vec<(PathBuf, String, PathBuf)> {
    /// How deep till follows includes (git's own limit is 10).
    const INCLUDE_DEPTH: usize = 5;
    let in_reach = |p: &Path| p.starts_with(cwd) || under_any(p, writable);
    let mut files = global_git_configs(home);
    // The hooks directory is read-only to the agent (`core.fsmonitor` names a hook there in
    // git's own example).
    let mut hooks = None;
    if let Some((git_dir, common_dir)) = git_dirs(cwd) {
        files.extend([common_dir.join("config"), git_dir.join("config.worktree")]);
        hooks = std::fs::canonicalize(common_dir.join("hooks")).ok();
    }
    let read_only = |p: &Path| hooks.as_ref().is_some_and(|h| p.starts_with(h));
    // Each file with how many includes led to it; read before the agent runs, so through a
    // link too (a dotfiles manager's `~/.gitconfig`).
    let mut todo: Vec<(PathBuf, usize)> = files.into_iter().rev().map(|f| (f, 0)).collect();
    let mut read: Vec<PathBuf> = Vec::new();
    let mut found = Vec::new();
    while let Some((file, depth)) = todo.pop() {
        let real = std::fs::canonicalize(&file).unwrap_or_else(|_| file.clone());
        if read.contains(&real) {
            continue;
        }
        read.push(real);
        let Ok(Some(data)) = read_config_file(&file) else {
            continue;
        };
        let Ok(values) = gitconfig::values(&data) else {
            continue;
        };
        for (var, value) in values {
            let programs = value
                .as_deref()
                .map(|v| command_paths(&var, v))
                .unwrap_or_default();
            if !programs.is_empty() {
                for program in programs {
                    let path = match program.strip_prefix("~/") {
                        Some(rest) => home.map(|h| h.join(rest)),
                        // git runs these from the worktree's top.
                        None => Some(cwd.join(&program)),
                    };
                    if let Some(real) = path
                        .and_then(|p| nearest_real(&p))
                        .filter(|r| in_reach(r) && !read_only(r))
                        && !found.iter().any(|(_, _, p)| *p == real)
                    {
                        found.push((file.clone(), var.clone(), real));
                    }
                }
                continue;
            }
            let include =
                var == "include.path" || (var.starts_with("includeif.") && var.ends_with(".path"));
            // A hooks path is taken from the worktree's top; an include, from its file's
            // directory.
            let base = if var == "core.hookspath" {
                cwd
            } else if include {
                file.parent().unwrap_or(cwd)
            } else {
                continue;
            };
            let Some(value) = value else { continue };
            let value = String::from_utf8_lossy(&value).into_owned();
            let path = match value.strip_prefix("~/") {
                Some(rest) => match home {
                    Some(home) => home.join(rest),
                    None => continue,
                },
                None => base.join(&value),
            };
            if include && depth < INCLUDE_DEPTH {
                todo.push((path.clone(), depth + 1));
            }
            if let Some(real) = nearest_real(&path).filter(|r| in_reach(r))
                && !found.iter().any(|(_, _, p)| *p == real)
            {
                let setting = if var == "core.hookspath" {
                    "core.hooksPath".to_string()
                } else {
                    var
                };
                found.push((file.clone(), setting, real));
            }
        }
    }
    found
}

/// The paths a setting that git runs as a command names (its words with a `/`: a program
/// found on `PATH` is no file of the project's, but `sh scripts/clean.sh` runs one): a filter,
/// a textconv or diff command, a merge driver, an alias, credential helper or submodule update
/// with `!`, an editor, pager or ssh command, `core.fsmonitor`, a remote's upload or receive
/// pack. Empty for any other setting, or a command that names no path.
fn command_paths(var: &str, value: &[u8]) -> Vec<String> {
    let Some((section, rest)) = var.split_once('.') else {
        return Vec::new();
    };
    let key = rest.rsplit('.').next().unwrap_or(rest);
    let sub = rest.contains('.');
    let command = match (section, sub, key) {
        ("filter", true, "clean" | "smudge" | "process")
        | ("diff", true, "textconv" | "command")
        | ("merge", true, "driver")
        | ("difftool" | "mergetool", true, "cmd" | "path")
        | ("trailer", true, "command" | "cmd")
        | ("remote", true, "uploadpack" | "receivepack")
        | ("submodule", true, "update")
        | ("gpg", _, "program" | "defaultkeycommand")
        | ("credential", _, "helper")
        | ("alias", _, _)
        | ("pager", _, _)
        | ("diff", false, "external")
        | ("sequence", false, "editor")
        | ("interactive", false, "difffilter")
        | ("uploadpack", false, "packobjectshook") => true,
        ("core", false, k) => matches!(
            k,
            "fsmonitor" | "sshcommand" | "pager" | "editor" | "askpass" | "gitproxy"
        ),
        _ => false,
    };
    if !command {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(value);
    let text = text.trim();
    // An alias or a submodule's update runs a shell command only with `!` (else it is git's
    // own), a credential helper a program with `!` or a path.
    let text = match (section, text.strip_prefix('!')) {
        ("alias" | "submodule", None) => return Vec::new(),
        (_, Some(rest)) => rest,
        (_, None) => text,
    };
    // The program, and a word that is a path by its look (`./x`, `/x`, `~/x`) or as what an
    // interpreter runs (`sh scripts/x.sh`); not every word with a `/` (`origin/main..HEAD`).
    const INTERPRETERS: &[&str] = &[
        "sh", "bash", "zsh", "dash", "ksh", "fish", "python", "python3", "node", "perl", "ruby",
        "env", "exec", "source", ".", "xargs", "nohup", "timeout", "command",
    ];
    let words = shell_words(text);
    let mut paths = Vec::new();
    for (i, word) in words.iter().enumerate() {
        // The word before, past the interpreter's options (`sh -e x.sh`, `python3 -u x.py`).
        let before = words[..i].iter().rev().find(|w| !w.starts_with('-'));
        let after_interpreter = before
            .is_some_and(|b| INTERPRETERS.contains(&b.rsplit('/').next().unwrap_or_default()));
        let looks_like_path = ["./", "../", "~/", "/"].iter().any(|p| word.starts_with(p));
        if word.contains('/')
            && !word.starts_with('-')
            && !word.contains("://")
            && (i == 0 || after_interpreter || looks_like_path)
        {
            paths.push(word.clone());
        }
    }
    paths
}

/// `text` split into words as a shell splits a simple command: at spaces, with `'…'` and
/// `"…"` quoting (a backslash keeps the next character). Enough to find the paths it names.
fn shell_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"') | None, '\\') => {
                word.extend(chars.next());
                in_word = true;
            }
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() || matches!(c, ';' | '&' | '|') => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// A git config file of yours read before the run: through a link, only when it is a regular
/// file (not a FIFO, which would keep till waiting), and up to [`CONFIG_FILE`] bytes.
fn read_config_file(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match open_regular_file(path, true)? {
        Some((file, len)) => read_at_most(file, len, CONFIG_FILE).map(Some),
        None => Ok(None),
    }
}

/// The global config files git reads, as git finds them: `GIT_CONFIG_GLOBAL` alone when it is
/// set, else `$XDG_CONFIG_HOME/git/config` (`~/.config/git/config`) and `~/.gitconfig`.
fn global_git_configs(home: Option<&Path>) -> Vec<PathBuf> {
    if let Some(file) = std::env::var_os("GIT_CONFIG_GLOBAL") {
        return vec![PathBuf::from(file)];
    }
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| home.map(|h| h.join(".config")));
    xdg.map(|d| d.join("git").join("config"))
        .into_iter()
        .chain(home.map(|h| h.join(".gitconfig")))
        .collect()
}

/// The working directory's git directory and the common one (the main repository's, for a
/// linked worktree, whose `.git` is a file saying `gitdir: …`); `None` without a repository.
fn git_dirs(cwd: &Path) -> Option<(PathBuf, PathBuf)> {
    let dot_git = cwd.join(".git");
    let meta = std::fs::metadata(&dot_git).ok()?;
    if meta.is_dir() {
        return Some((dot_git.clone(), dot_git));
    }
    let text = String::from_utf8(read_agent_file(&dot_git, SMALL_FILE).ok()??).ok()?;
    let git_dir = cwd.join(text.strip_prefix("gitdir:")?.trim());
    let common = match read_agent_file(&git_dir.join("commondir"), SMALL_FILE) {
        Ok(Some(c)) => git_dir.join(String::from_utf8(c).ok()?.trim()),
        _ => git_dir.clone(),
    };
    Some((git_dir, common))
}

/// `path` with its links followed: the nearest part that exists resolved, and the names
/// below it as they are (a hooks directory husky has not made yet).
fn nearest_real(path: &Path) -> Option<PathBuf> {
    let mut at = path;
    let mut rest = Vec::new();
    let mut real = loop {
        match std::fs::canonicalize(at) {
            Ok(r) => break r,
            Err(_) => {
                rest.push(at.file_name()?.to_os_string());
                at = at.parent()?;
            }
        }
    };
    real.extend(rest.iter().rev());
    Some(real)
}

/// Every symbolic link met on the way from `path` to what it names, as the kernel walks it:
/// each link by its own path (its directory resolved), and the links in links' targets, up
/// to 40 links; and every directory the walk leaves by `..` (one the agent could replace with
/// a link: the walk does not end below it, so no cover pins it). A name that does not exist
/// ends the walk.
fn links_on_the_way(path: &Path) -> Vec<PathBuf> {
    use std::path::Component;
    const MAX_LINKS: usize = 40;
    let mut links = Vec::new();
    let mut at = if path.is_absolute() {
        PathBuf::from("/")
    } else {
        match std::env::current_dir() {
            Ok(d) => d,
            Err(_) => return links,
        }
    };
    // The components left to walk, the next one last.
    let mut left: Vec<std::ffi::OsString> = Vec::new();
    let push = |left: &mut Vec<std::ffi::OsString>, p: &Path| {
        for c in p.components().rev() {
            match c {
                Component::Normal(n) => left.push(n.to_os_string()),
                Component::ParentDir => left.push("..".into()),
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
    };
    push(&mut left, path);
    while let Some(name) = left.pop() {
        if name == ".." {
            if at.parent().is_some() {
                links.push(at.clone());
            }
            at.pop();
            continue;
        }
        let next = at.join(&name);
        let Ok(meta) = std::fs::symlink_metadata(&next) else {
            break;
        };
        if !meta.is_symlink() {
            at = next;
            continue;
        }
        links.push(next.clone());
        if links.len() > MAX_LINKS {
            break;
        }
        let Ok(target) = std::fs::read_link(&next) else {
            break;
        };
        if target.is_absolute() {
            at = PathBuf::from("/");
        }
        push(&mut left, &target);
    }
    links
}

/// What till's directory `dir` (hidden) holds that is also reachable by another name, where
/// the agent could read or rewrite it: a symbolic link's target (a `config.toml` linked from a
/// dotfiles repository the agent works in would be written there, and till would send its
/// next run's root keys where the agent said), which is hidden too, unless it is already
/// inside one of `hidden`. A link to nothing (the agent could create what till would then read)
/// and a file with a second hard link (whose other name cannot be found to hide) refuse the
/// run: the message and its hint.
fn elsewhere(
    dir: &Path,
    hidden: &[PathBuf],
    links: &mut Vec<PathBuf>,
) -> Result<Vec<PathBuf>, (String, String)> {
    /// How deep till's own directories go, with room to spare.
    const DEPTH: usize = 4;
    let mut out = Vec::new();
    let mut todo = vec![(dir.to_path_buf(), 0)];
    while let Some((dir, depth)) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_symlink() {
                links.push(path.clone());
                let Ok(real) = std::fs::canonicalize(&path) else {
                    return Err((
                        format!(
                            "{} is a link to a path that does not exist, which the agent could create for till to read",
                            path.display()
                        ),
                        format!(
                            "remove the link, or create what it points to ({}) first",
                            path.read_link()
                                .map(|t| t.display().to_string())
                                .unwrap_or_default()
                        ),
                    ));
                };
                if !hidden.iter().any(|h| real.starts_with(h)) && !out.contains(&real) {
                    out.push(real);
                }
            } else if meta.is_dir() {
                if depth < DEPTH {
                    todo.push((path, depth + 1));
                }
            } else if hard_linked(&meta) {
                return Err((
                    format!(
                        "{} has another name (a hard link), through which the agent could rewrite it",
                        path.display()
                    ),
                    "give it a name of its own (copy it, remove the original, move the copy into place), or use a symbolic link, which the sandbox hides where it points".into(),
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(unix)]
fn hard_linked(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    meta.is_file() && meta.nlink() > 1
}

#[cfg(not(unix))]
fn hard_linked(_meta: &std::fs::Metadata) -> bool {
    false
}

/// What the run prints when the sandbox is in force: the network first, then what is
/// writable and what is hidden.
pub fn banner(p: &Policy) -> Vec<String> {
    let net = match p.net {
        Net::Proxy => {
            "till: sandbox on; network: proxy only (the agent can reach this run's proxy and nothing else)".to_string()
        }
        Net::Open => {
            "till: sandbox on; network: open (as outside the sandbox; --net proxy limits it to till's proxy)".to_string()
        }
    };
    let mut writable = vec![p.cwd.display().to_string(), "a private /tmp".to_string()];
    writable.extend(p.writable.iter().map(|w| w.display().to_string()));
    let others = p.hidden.len() - p.till_dirs - p.sockets;
    let mut hidden = vec!["till's config and data".to_string()];
    if others > 0 {
        hidden.push(format!(
            "{others} credential path{}",
            if others == 1 { "" } else { "s" }
        ));
    }
    hidden.push("the session bus and keyring".to_string());
    let git = if p.writable_git_hooks {
        ""
    } else {
        "; .git/hooks and .git/config read-only"
    };
    vec![
        net,
        format!(
            "till: sandbox: writes to {}{git} (elsewhere they fail as on a read-only file system; [sandbox] writable adds paths); hidden: {}",
            writable.join(", "),
            hidden.join(", ")
        ),
    ]
}

/// Runs the sandbox helper when this process was started as one (`till __till-sandbox-exec`):
/// sets the sandbox up and replaces itself with the agent. `None` for every other invocation.
pub fn helper_main() -> Option<std::process::ExitCode> {
    imp::helper_main()
}

/// Whether `path` lies at or under one of `roots`.
pub fn under_any(path: &Path, roots: &[PathBuf]) -> bool {
    roots.iter().any(|r| path.starts_with(r))
}

/// The directories strictly between a writable root and a hidden path below it, top down and
/// each once. A hidden path is a mount and cannot be renamed, but a directory above it could
/// be, on the real disk, carrying the cover with it and leaving the hidden path free to be made
/// again by the agent (a `config.toml` of its own for till's next run): the sandbox makes each
/// of these a mount point of itself first, so none can be renamed or removed.
pub fn between_writable_and_hidden(hidden: &[PathBuf], writable: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for h in hidden {
        for root in writable.iter().filter(|r| h.starts_with(r) && h != *r) {
            let mut dir = h.parent();
            while let Some(d) = dir.filter(|d| d.starts_with(root) && d != root) {
                if !dirs.iter().any(|x| x == d) {
                    dirs.push(d.to_path_buf());
                }
                dir = d.parent();
            }
        }
    }
    dirs.sort_by_key(|d| d.components().count());
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn every_link_on_the_way_to_a_name_is_found_through_links_in_targets() {
        use std::os::unix::fs::symlink;
        let t = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(t.path()).unwrap();
        let real = root.join("real");
        std::fs::create_dir_all(real.join("till")).unwrap();
        std::fs::write(real.join("till/config.toml"), "").unwrap();
        std::fs::create_dir(root.join("proj")).unwrap();
        // proj/dots → ../real (relative); home → proj/dots/till; home/config.toml is a file.
        symlink("../real", root.join("proj/dots")).unwrap();
        symlink(root.join("proj/dots/till"), root.join("home")).unwrap();
        let found = links_on_the_way(&root.join("home/config.toml"));
        assert_eq!(
            found,
            [root.join("home"), root.join("proj/dots"), root.join("proj")]
        );
        // A `..` after a link is taken from where the link led, as the kernel takes it; the
        // directories it leaves are named too.
        let found = links_on_the_way(&root.join("home/../till/config.toml"));
        assert_eq!(
            found,
            [
                root.join("home"),
                root.join("proj/dots"),
                root.join("proj"),
                root.join("real/till"),
            ]
        );
        assert!(links_on_the_way(&real.join("till/config.toml")).is_empty());
        // A name that does not exist ends the walk; a loop ends at the kernel's limit.
        assert!(links_on_the_way(&root.join("nothing/here")).is_empty());
        symlink(root.join("loop"), root.join("loop")).unwrap();
        assert_eq!(links_on_the_way(&root.join("loop")).len(), 41);
    }

    #[test]
    fn the_directories_between_a_writable_root_and_a_hidden_path_are_listed_top_down() {
        let p = |s: &str| PathBuf::from(s);
        let hidden = [
            p("/w/a/b/till"),
            p("/w/a/c"),
            p("/w/x"),
            p("/elsewhere/till"),
            p("/w"),
        ];
        let writable = [p("/w"), p("/w/a/b")];
        assert_eq!(
            between_writable_and_hidden(&hidden, &writable),
            [p("/w/a"), p("/w/a/b")]
        );
        assert!(between_writable_and_hidden(&[p("/w/x")], &[p("/w")]).is_empty());
    }

    #[test]
    fn agent_env_drops_bus_addresses_and_marks_the_sandbox() {
        let mut env: Vec<(OsString, OsString)> = vec![
            ("PATH".into(), "/bin".into()),
            (
                "DBUS_SESSION_BUS_ADDRESS".into(),
                "unix:path=/run/user/1/bus".into(),
            ),
            ("SSH_AUTH_SOCK".into(), "/tmp/ssh-x/agent.1".into()),
            ("TMPDIR".into(), "/var/tmp/me".into()),
            ("TILL_SANDBOX".into(), "open".into()),
        ];
        agent_env(&mut env, Some(Net::Proxy));
        let get = |k: &str| {
            env.iter()
                .filter(|(n, _)| n == k)
                .map(|(_, v)| v.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("PATH"), ["/bin"]);
        assert!(get("DBUS_SESSION_BUS_ADDRESS").is_empty());
        assert!(get("SSH_AUTH_SOCK").is_empty());
        assert_eq!(get("TMPDIR"), ["/tmp"]);
        assert_eq!(get("TILL_SANDBOX"), ["proxy"]);

        let mut untouched: Vec<(OsString, OsString)> = vec![("TMPDIR".into(), "/x".into())];
        agent_env(&mut untouched, None);
        assert_eq!(untouched.len(), 1);
    }

    #[test]
    fn the_files_of_buses_and_agents_are_found_for_hiding() {
        assert_eq!(
            bus_files("unix:path=/h/.cache/my%2dbus,guid=0a;unix:abstract=/tmp/x"),
            [PathBuf::from("/h/.cache/my-bus")]
        );
        assert_eq!(
            bus_files(
                "tcp:host=127.0.0.1,port=1;nonce-tcp:host=::1,port=2,noncefile=/n%25o;unix:path=/b"
            ),
            [PathBuf::from("/n%o"), PathBuf::from("/b")]
        );
        // What names no file, or cannot be read, gives none.
        assert!(bus_files("unix:runtime=yes").is_empty());
        assert!(bus_files("unix:path=/a%2").is_empty());
        assert!(bus_files("garbage").is_empty());

        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        std::fs::create_dir_all(h.join(".cache/keyring-Q1W2E3")).unwrap();
        std::fs::create_dir_all(h.join(".cache/other")).unwrap();
        std::fs::write(h.join(".cache/keyring-file"), "").unwrap();
        let vars = |name: &str| -> Option<OsString> {
            match name {
                "DBUS_SESSION_BUS_ADDRESS" => Some("unix:path=/b".into()),
                "SSH_AUTH_SOCK" => Some("/s".into()),
                "GNOME_KEYRING_CONTROL" => Some("/k".into()),
                "GPG_AGENT_INFO" => Some("/g:12:1".into()),
                _ => None,
            }
        };
        let found = agent_sockets(Some(h), vars);
        assert_eq!(
            found,
            [
                PathBuf::from("/b"),
                "/s".into(),
                "/k".into(),
                "/g".into(),
                h.join(".cache/keyring-Q1W2E3")
            ]
        );
        // $XDG_CACHE_HOME, when set, is where gnome-keyring looks instead.
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(elsewhere.path().join("keyring-ABCDEF")).unwrap();
        let cache = elsewhere.path().as_os_str().to_owned();
        let found = agent_sockets(Some(h), |name| {
            (name == "XDG_CACHE_HOME").then(|| cache.clone())
        });
        assert_eq!(found, [elsewhere.path().join("keyring-ABCDEF")]);
    }

    #[test]
    fn an_agents_path_is_shown_escaped_and_cut_to_a_line() {
        let odd = Path::new("/p/a\nfake line\u{1b}[2J/b");
        assert_eq!(agent_path(odd), "/p/a\\u{a}fake line\\u{1b}[2J/b");
        let deep = PathBuf::from(format!("/p/{}x", "d/".repeat(500)));
        let shown = agent_path(&deep);
        assert_eq!(shown.chars().count(), 80 + 1 + 160);
        assert!(
            shown.starts_with("/p/d/d/") && shown.ends_with("d/d/x"),
            "{shown}"
        );
        assert!(shown.contains('…'));
    }

    #[test]
    fn a_command_setting_names_its_paths_only() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("core.fsmonitor", "true", &[]),
            (
                "core.fsmonitor",
                ".git/hooks/fsmonitor-watchman",
                &[".git/hooks/fsmonitor-watchman"],
            ),
            ("alias.co", "checkout", &[]),
            ("alias.x", "! ./x.sh a", &["./x.sh"]),
            (
                "alias.lint",
                "!bash ./scripts/clean.sh --fix",
                &["./scripts/clean.sh"],
            ),
            ("credential.helper", "store", &[]),
            (
                "credential.helper",
                "/usr/bin/helper get",
                &["/usr/bin/helper"],
            ),
            ("filter.lfs.clean", "git-lfs clean -- %f", &[]),
            (
                "filter.x.clean",
                "sh scripts/clean.sh",
                &["scripts/clean.sh"],
            ),
            ("filter.a.smudge", "'t/my tool' %f", &["t/my tool"]),
            ("submodule.lib.update", "checkout", &[]),
            ("submodule.lib.update", "!tools/up.sh", &["tools/up.sh"]),
            ("remote.origin.uploadpack", "tools/up", &["tools/up"]),
            ("user.name", "a/b", &[]),
            ("diff.external", "", &[]),
            ("pager.log", "false", &[]),
            ("core.sshcommand", "ssh -i keys/id --opt=a/b", &[]),
            (
                "core.sshcommand",
                "./tools/ssh -i keys/id",
                &["./tools/ssh"],
            ),
            ("core.editor", "code --wait https://x/y", &[]),
            ("alias.outgoing", "!git log origin/main..HEAD", &[]),
            ("core.pager", "sh -e tools/pager.sh", &["tools/pager.sh"]),
            ("core.pager", "python3 -u tools/p.py", &["tools/p.py"]),
            ("core.pager", "xargs -0 tools/pager.sh", &["tools/pager.sh"]),
            ("alias.pr", "!git fetch origin pull/$1/head:pr-$1", &[]),
            ("difftool.vimdiff.path", "tools/diff.sh", &["tools/diff.sh"]),
            (
                "trailer.sign.command",
                "scripts/sign.sh",
                &["scripts/sign.sh"],
            ),
        ];
        for (var, value, want) in cases {
            assert_eq!(
                command_paths(var, value.as_bytes()),
                *want,
                "{var} = {value}"
            );
        }
    }

    #[test]
    fn banner_names_the_network_first() {
        let p = Policy {
            net: Net::Proxy,
            proxy_port: 1,
            cwd: "/work/p".into(),
            writable: vec!["/work/cache".into()],
            hidden: vec![
                "/h/.config/till".into(),
                "/h/.cache/keyring-Q1W2E3".into(),
                "/h/.ssh".into(),
            ],
            till_dirs: 1,
            sockets: 1,
            writable_git_hooks: false,
            submodules: Vec::new(),
            simulate_missing: None,
        };
        let lines = banner(&p);
        assert!(lines[0].contains("network: proxy only"), "{lines:?}");
        assert!(
            lines[1].contains("writes to /work/p, a private /tmp, /work/cache"),
            "{lines:?}"
        );
        assert!(lines[1].contains("1 credential path,"), "{lines:?}");
        assert!(lines[1].contains(".git/hooks and .git/config read-only"));
        let open = banner(&Policy {
            net: Net::Open,
            ..p
        });
        assert!(open[0].contains("network: open"), "{open:?}");
    }
}
