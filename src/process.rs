//! Running the agent: its environment, signals, and exit status.
//!
//! The agent's environment is built here and nowhere else: every inherited variable that holds
//! a root key value, every provider key or admin-key variable, and till's own secrets are
//! removed before the child key and base URLs are added. On Linux the agent dies with till
//! (`PR_SET_PDEATHSIG`) and till makes itself non-dumpable, so its memory (root keys) cannot
//! be read through core dumps or `ptrace` by the agent.

use std::ffi::OsString;
use std::process::{Command, ExitStatus};

use crate::env::EnvVars;
use crate::providers::{Provider, Providers};

/// What the agent's environment should say about one provider.
#[derive(Debug, Clone)]
pub struct AgentProvider<'a> {
    pub provider: &'a Provider,
    /// `http://127.0.0.1:PORT/NAME`
    pub proxy_base: String,
}

/// Model providers' credentials that are not a provider's key variable (those go with the
/// providers' own lists), which agents and SDKs read: a Claude subscription's token, Azure
/// OpenAI's key and Entra token, Bedrock's API key, and the older or other names SDKs accept.
/// Through till's proxy they would be refused; read by the agent they reach the provider
/// without till.
const OTHER_CREDENTIALS: &[&str] = &[
    "CLAUDE_CODE_OAUTH_TOKEN",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_AD_TOKEN",
    "AZURE_API_KEY",
    "AWS_BEARER_TOKEN_BEDROCK",
    "OPENAI_KEY",
    "CODEX_API_KEY",
    "GOOGLE_GENAI_API_KEY",
];

/// Builds the agent's environment from `inherited` (from which the caller has already dropped
/// every variable holding a root key value, whatever its name).
pub fn agent_env(
    inherited: impl IntoIterator<Item = (OsString, OsString)>,
    all: &Providers,
    scoped: &[AgentProvider<'_>],
    child_key: &str,
    proxy_url: &str,
) -> Vec<(OsString, OsString)> {
    let mut banned: Vec<&str> = vec![
        EnvVars::TILL_PASSPHRASE,
        EnvVars::TILL_KEY,
        EnvVars::TILL_PROXY_URL,
        EnvVars::TILL_SANDBOX,
    ];
    banned.extend(OTHER_CREDENTIALS);
    for p in all.iter() {
        banned.extend(p.key_env.iter().map(String::as_str));
        banned.extend(p.admin_env.iter().map(String::as_str));
    }
    let inherited: Vec<(OsString, OsString)> = inherited.into_iter().collect();
    // In a nested run, the outer run's base URLs point at its proxy: those of a provider this
    // key does not allow go (this run sets its own for the rest), so no SDK is sent there.
    let outer = inherited
        .iter()
        .find(|(k, _)| k == EnvVars::TILL_PROXY_URL)
        .map(|(_, v)| v.to_string_lossy().into_owned())
        .filter(|u| !u.is_empty());
    let base_urls: Vec<&str> = all
        .iter()
        .flat_map(|p| p.base_url_env.iter().map(|(var, _)| var.as_str()))
        .collect();
    let mut env: Vec<(OsString, OsString)> = inherited
        .into_iter()
        .filter(|(k, v)| {
            let name = k.to_string_lossy();
            let to_outer_proxy = outer.as_deref().is_some_and(|u| {
                v.to_string_lossy().starts_with(u)
                    && base_urls.iter().any(|b| name.eq_ignore_ascii_case(b))
            });
            !to_outer_proxy && !banned.iter().any(|b| name.eq_ignore_ascii_case(b))
        })
        .collect();
    let mut set = |k: &str, v: &str| {
        env.retain(|(name, _)| name != k);
        env.push((k.into(), v.into()));
    };
    for ap in scoped {
        for var in &ap.provider.key_env {
            set(var, child_key);
        }
        for (var, suffix) in &ap.provider.base_url_env {
            set(var, &format!("{}{suffix}", ap.proxy_base));
        }
    }
    set(EnvVars::TILL_PROXY_URL, proxy_url);
    set(EnvVars::TILL_KEY, child_key);
    env
}

/// Makes this process non-dumpable (Linux): no core dumps, no `ptrace` attach by same-user
/// processes that lack CAP_SYS_PTRACE, `/proc/PID/mem` closed.
pub fn harden_self() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_DUMPABLE takes plain integer arguments and touches no memory.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

/// Turns off glibc's fast bins for this process (Linux with glibc; elsewhere nothing). The
/// proxy frees many small blocks per request and takes an 8 KB read buffer for most of them;
/// with fast bins each of those larger requests first sweeps the freed small blocks into the
/// main lists (`malloc_consolidate`). Without them a small request under callgrind runs 2 %
/// fewer instructions, and the closed loop 2 % less CPU per request (BENCHMARKS.md); small
/// blocks are still served from glibc's per-thread cache.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes two integers and touches no memory of ours; it runs before the
    // proxy's threads start.
    unsafe {
        libc::mallopt(libc::M_MXFAST, 0);
    }
}

/// Asks the kernel to SIGKILL the child when till dies (Linux), and closes the race where
/// till died before the request took effect.
pub fn die_with_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt as _;
        // SAFETY: getpid/getppid/prctl/kill are async-signal-safe; no allocation happens here.
        let parent = unsafe { libc::getpid() };
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// Reports that the agent's command could not be started and returns the exit code for it:
/// like `env` and `nice`, 127 when the command is missing and 126 when it cannot run.
pub fn cannot_run(program: &str, e: &std::io::Error) -> u8 {
    let (msg, hint, code) = match e.kind() {
        std::io::ErrorKind::NotFound => (
            format!("cannot run `{program}`: command not found"),
            "check the command and your PATH",
            127,
        ),
        std::io::ErrorKind::PermissionDenied => (
            format!("cannot run `{program}`: permission denied"),
            "is it executable?",
            126,
        ),
        _ => (
            format!("cannot run `{program}`: {e}"),
            "check the command",
            126,
        ),
    };
    crate::output::error(&msg, Some(hint));
    code
}

/// The exit code till returns for the agent's status: its code, or 128+N when signal N
/// killed it.
pub fn exit_code(status: ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        return u8::try_from(code & 0xff).unwrap_or(1);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        if let Some(sig) = status.signal() {
            return u8::try_from(128 + sig).unwrap_or(255);
        }
    }
    1
}

/// Sends `signal` to `pid` (unix).
#[cfg(unix)]
pub fn send_signal(pid: u32, signal: i32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill takes plain integers.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn env_drops_key_vars_and_sets_child_key() {
        let providers = Providers::from_config(&Config::default());
        let openai = providers.get("openai").unwrap();
        let inherited = vec![
            ("PATH".into(), "/bin".into()),
            ("OPENAI_API_KEY".into(), "sk-real".into()),
            ("ANTHROPIC_API_KEY".into(), "sk-ant-real".into()),
            ("OPENAI_ADMIN_KEY".into(), "sk-admin".into()),
            ("ANTHROPIC_AUTH_TOKEN".into(), "x".into()),
            ("TILL_PASSPHRASE".into(), "pw".into()),
            ("CLAUDE_CODE_OAUTH_TOKEN".into(), "sk-ant-oat01-x".into()),
            ("azure_openai_api_key".into(), "az".into()),
            ("OPENAI_KEY".into(), "sk-other".into()),
        ];
        let scoped = [AgentProvider {
            provider: openai,
            proxy_base: "http://127.0.0.1:9/openai".into(),
        }];
        let env = agent_env(
            inherited,
            &providers,
            &scoped,
            "till_child",
            "http://127.0.0.1:9",
        );
        let get = |k: &str| {
            env.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.to_string_lossy().into_owned())
        };
        assert_eq!(get("PATH").as_deref(), Some("/bin"));
        assert_eq!(get("OPENAI_API_KEY").as_deref(), Some("till_child"));
        assert_eq!(
            get("OPENAI_BASE_URL").as_deref(),
            Some("http://127.0.0.1:9/openai/v1")
        );
        assert_eq!(get("TILL_PROXY_URL").as_deref(), Some("http://127.0.0.1:9"));
        for gone in [
            "ANTHROPIC_API_KEY",
            "OPENAI_ADMIN_KEY",
            "ANTHROPIC_AUTH_TOKEN",
            "TILL_PASSPHRASE",
            "CLAUDE_CODE_OAUTH_TOKEN",
            "azure_openai_api_key",
            "OPENAI_KEY",
        ] {
            assert_eq!(get(gone), None, "{gone} should be gone");
        }
    }

    #[cfg(unix)]
    #[test]
    fn exit_code_maps_signals_to_128_plus_n() {
        let status = Command::new("sh")
            .args(["-c", "kill -TERM $$"])
            .status()
            .unwrap();
        assert_eq!(exit_code(status), 143);
        let status = Command::new("sh").args(["-c", "exit 7"]).status().unwrap();
        assert_eq!(exit_code(status), 7);
    }
}
