//! `till run [scope flags] -- CMD ARGS…`: mint a session key, start the proxy, run the agent
//! with the child key and base URLs in its environment, and return its exit code.
//!
//! Inside a till run (`TILL_KEY` and `TILL_PROXY_URL` set), `till run` narrows the current key
//! instead and reuses the outer proxy: no keychain access, no root key anywhere near the
//! sub-agent, and a scope wider than the parent's is refused.

use std::ffi::{OsStr, OsString};
use std::process::{Command, ExitCode};

use anyhow::Context as _;

use crate::agents::Agent;
use crate::childkey::{Caveat, Token};
use crate::cli::RunArgs;
use crate::commands::Ctx;
use crate::env::EnvVars;
use crate::error::UserError;
use crate::ledger::Ledger;
use crate::process::{AgentProvider, agent_env};
use crate::sandbox::Net;
use crate::secrets::{SecretStore, SecretString, admin_secret_name, holds_secret};

pub fn run(ctx: &Ctx, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let program = args.command.first().ok_or_else(|| {
        UserError::usage("no command to run")
            .hint("put the agent's command after `--`: till run -- python agent.py")
    })?;
    let nested = std::env::var(EnvVars::TILL_KEY)
        .ok()
        .filter(|k| !k.is_empty());
    let outer_proxy = std::env::var(EnvVars::TILL_PROXY_URL)
        .ok()
        .filter(|u| !u.is_empty());
    if let (Some(key), Some(proxy)) = (nested, outer_proxy) {
        return nested_run(ctx, args, program, &key, &proxy);
    }
    crate::process::tune_allocator();
    let mut sandbox =
        crate::sandbox::Sandbox::for_run(&ctx.config, &ctx.paths, sandbox_requested(ctx, args)?)?;

    let spec = super::scope_spec(ctx, &args.scope, args.profile.as_deref())?;
    let now = crate::time::now_unix();
    // The flags first: a bad one is the usage error (2) it is, whatever is stored.
    let mut caveats = spec
        .to_caveats(now, &ctx.providers.names())
        .map_err(super::scope_err)?;
    let stored = ctx.ledger()?.root_keys()?;
    if stored.is_empty() {
        return Err(UserError::runtime(
            "no root keys are stored, so an agent could reach no provider",
        )
        .hint("add one first: till add openai")
        .into());
    }
    let scoped_names = super::scoped_providers(ctx, &spec, &stored)?;

    // The session key: the chosen base (a created key, or a fresh mint), narrowed to this run;
    // without a --ttl it lasts as long as any key may. A key given with --key already has its
    // providers and its end: only the flags given are added (`key inspect` showed every stored
    // provider and a later end beside them, which looked like a widening).
    let given = args.key.is_some();
    if !given && !caveats.iter().any(|c| matches!(c, Caveat::Allow(_))) {
        caveats.push(super::allow_providers(&scoped_names)?);
    }
    match caveats.iter().find_map(|c| match c {
        Caveat::Expires(t) => Some(*t),
        _ => None,
    }) {
        Some(expires) => super::check_max_ttl(ctx, &spec, expires, now)?,
        None if given => {}
        None => caveats.push(Caveat::Expires(now + ctx.config.keys.max_ttl.0.as_secs())),
    }

    let session = super::new_session_id();
    let super::ProxyParts {
        state,
        writer,
        mint,
        ledger,
        owner,
        store,
    } = super::proxy_state(ctx, Some(session.clone()), true)?;
    let mut kept_out = stored_admin_keys(&ledger, store.as_ref())?;
    // The file store's passphrase opens every key in it: kept out under any name too, not
    // only as `TILL_PASSPHRASE`.
    if let Some(pass) = std::env::var_os(EnvVars::TILL_PASSPHRASE) {
        kept_out.push(SecretString::from(pass.to_string_lossy().into_owned()));
    }
    caveats.push(Caveat::Session(session));
    let token = match &args.key {
        Some(k) => {
            if k.starts_with("till_") {
                crate::output::warn(
                    "a whole key on the command line is visible to every user of this machine (`ps`, /proc/PID/cmdline) for as long as the run lasts; give its name instead (`till key create --name NAME`, then `--key NAME`)",
                );
            }
            let base = super::key::resolve_key(&ledger, store.as_ref(), &mint, k)?;
            // The flags narrow the key; one that asks for more than it has would be taken
            // for a widening, and the agent met with refusals whose hint is that flag.
            spec.check_narrower(&base, now, &ctx.providers.names())
                .map_err(|e| {
                    UserError::usage(format!("cannot widen the key given to --key: {e}"))
                        .hint("ask for the same scope or less, or leave the flag out; `till key show NAME` shows the key's scope and limits")
                })?;
            base.attenuate(caveats).map_err(super::mint_err)?
        }
        None => Token::mint(&mint, caveats).map_err(super::mint_err)?,
    };
    let child_key = token.encode();
    // The agent gets the variables of the providers its key allows: with `--key`, those of
    // the given key (a key for openai alone set ANTHROPIC_API_KEY too, every stored provider's).
    let scoped_names: Vec<String> = match super::token_providers(token.caveats()) {
        Some(allowed) => scoped_names
            .into_iter()
            .filter(|n| allowed.contains(n))
            .collect(),
        None => scoped_names,
    };
    if scoped_names.is_empty() {
        return Err(UserError::runtime(
            "the key given to --key allows no provider whose key is stored",
        )
        .hint("`till key show NAME` shows its scope; `till add PROVIDER` stores a provider's key")
        .into());
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the proxy runtime")?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (addr, proxy) = runtime.block_on(crate::proxy::start(
        "127.0.0.1:0".parse().expect("loopback address"),
        state.clone(),
        async move {
            let _ = stop_rx.await;
        },
    ))?;
    let proxy_url = format!("http://{addr}");

    let agents: Vec<AgentProvider<'_>> = scoped_names
        .iter()
        .filter_map(|n| ctx.providers.get(n))
        .map(|p| AgentProvider {
            provider: p,
            proxy_base: format!("{proxy_url}/{}", p.name),
        })
        .collect();
    // A variable's name is the agent's to read as much as its value.
    let holds = |text: &std::ffi::OsStr| {
        let text = text.to_string_lossy();
        state.holds_root_value(&text) || kept_out.iter().any(|k| holds_secret(&text, k))
    };
    let inherited: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, v)| !holds(k) && !holds(v))
        .collect();
    // Only needed to filter the environment: not held while the agent runs.
    drop(kept_out);
    let mut env = agent_env(inherited, &ctx.providers, &agents, &child_key, &proxy_url);
    let rest = adapt_for_agent(program, &args.command[1..], &mut env, &child_key);
    if let Some(sb) = &mut sandbox {
        sb.serve_proxy(state.clone(), addr.port());
        crate::sandbox::agent_env(&mut env, Some(sb.net()));
    }

    let status = {
        let _guard = runtime.enter();
        spawn_and_wait(program, &rest, env, sandbox.as_mut())?
    };

    // Requests the agent (or something it left running) still has in flight get the
    // shutdown grace to finish, or until a Ctrl-C; then they are cut off and recorded.
    crate::proxy::lifecycle::cut_at_next_signal();
    let _ = stop_tx.send(());
    let inside = sandbox.as_mut().and_then(|sb| sb.stop_proxy());
    let _ = runtime.block_on(proxy);
    if let Some(inside) = inside {
        let _ = runtime.block_on(inside);
    }
    end_sandboxed(sandbox.as_mut());
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    writer.finish();
    let swept = super::settle_leftovers(ctx, owner);
    // An agent that never started made no request: its error is the last word.
    let stats = state.stats.snapshot();
    let silent = matches!(status, AgentExit::Code(_)) && stats.requests == 0;
    if !args.quiet && !silent {
        crate::output::note(&summary(&super::with_settled(stats, &swept)));
    }
    Ok(ExitCode::from(status.code()))
}

/// The admin keys stored for `till rotate`, one store read for each provider the ledger
/// records one for, so that no variable holding one reaches the agent under any name. They are
/// stronger than root keys (they make and delete provider keys); an agent never needs one.
///
/// A key that cannot be read stops the run: the environment could not be checked for it.
fn stored_admin_keys(
    ledger: &Ledger,
    store: &dyn SecretStore,
) -> anyhow::Result<Vec<SecretString>> {
    let mut keys = Vec::new();
    for meta in ledger.admin_keys()? {
        match store.get(&admin_secret_name(&meta.provider)) {
            Ok(Some(key)) => keys.push(key),
            Ok(None) => {}
            Err(e) => {
                let mut err = UserError::runtime(format!(
                    "cannot read the {} admin key to keep it from the agent: {e}",
                    meta.provider
                ));
                if let Some(hint) = e.hint() {
                    err = err.hint(hint);
                }
                return Err(err.into());
            }
        }
    }
    Ok(keys)
}

/// `till run` inside a till run: narrow the current key and reuse the outer proxy.
fn nested_run(
    ctx: &Ctx,
    args: &RunArgs,
    program: &OsStr,
    key: &str,
    proxy_url: &str,
) -> anyhow::Result<ExitCode> {
    if args.key.is_some() {
        return Err(UserError::usage(
            "--key cannot be used inside a till run; the current key is narrowed instead",
        )
        .into());
    }
    let parent = Token::decode(key).map_err(|e| {
        UserError::runtime(format!("TILL_KEY is not a valid till key: {e}")).hint(
            "TILL_KEY and TILL_PROXY_URL are set, which makes this a run nested in another; if that run has ended, unset both (`unset TILL_KEY TILL_PROXY_URL`) and run again",
        )
    })?;
    outer_proxy_answers(proxy_url)?;
    crate::output::note(&format!(
        "till: a nested run: the agent gets a key narrowed from TILL_KEY, through the proxy at {proxy_url}"
    ));
    let spec = super::scope_spec(ctx, &args.scope, args.profile.as_deref())?;
    let now = crate::time::now_unix();
    let known = ctx.providers.names();
    spec.check_narrower(&parent, now, &known).map_err(|e| {
        UserError::usage(format!("a nested till run cannot widen its key: {e}")).hint(
            "ask for the same scope or less; `till key inspect $TILL_KEY` shows the current one",
        )
    })?;
    let caveats = spec.to_caveats(now, &known).map_err(super::scope_err)?;
    let child = if caveats.is_empty() {
        parent.clone()
    } else {
        parent.attenuate(caveats).map_err(super::mint_err)?
    };
    let names = super::token_providers(child.caveats());
    let agents: Vec<AgentProvider<'_>> = ctx
        .providers
        .iter()
        .filter(|p| names.as_ref().is_none_or(|n| n.contains(&p.name)))
        .map(|p| AgentProvider {
            provider: p,
            proxy_base: format!("{proxy_url}/{}", p.name),
        })
        .collect();
    let encoded = child.encode();
    // The outer run kept the passphrase out; one set since (a shell's, a `.envrc`'s) is kept
    // out here, under any name.
    let passphrase = std::env::var_os(EnvVars::TILL_PASSPHRASE)
        .map(|p| SecretString::from(p.to_string_lossy().into_owned()));
    let inherited: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, v)| {
            k != EnvVars::TILL_PASSPHRASE
                && !passphrase.as_ref().is_some_and(|p| {
                    holds_secret(&k.to_string_lossy(), p) || holds_secret(&v.to_string_lossy(), p)
                })
        })
        .collect();
    drop(passphrase);
    let mut env = agent_env(inherited, &ctx.providers, &agents, &encoded, proxy_url);
    let rest = adapt_for_agent(program, &args.command[1..], &mut env, &encoded);
    let mut sandbox = crate::sandbox::Sandbox::for_nested(
        &ctx.config,
        &ctx.paths,
        sandbox_requested(ctx, args)?,
    )?;
    let net = sandbox.as_ref().map(|s| s.net());
    crate::sandbox::agent_env(&mut env, net.or_else(crate::sandbox::inherited));
    let status = spawn_and_wait(program, &rest, env, sandbox.as_mut())?;
    end_sandboxed(sandbox.as_mut());
    Ok(ExitCode::from(status.code()))
}

/// Whether `url` (TILL_PROXY_URL) is a till proxy on this machine that answers: a loopback
/// `http://HOST:PORT` whose health check says `ok`. A TILL_KEY and TILL_PROXY_URL left in an
/// environment after their run ended (a terminal multiplexer's, a planted `.envrc`) would
/// otherwise make every `till run` a nested one, through whatever the URL names.
fn outer_proxy_answers(url: &str) -> Result<(), UserError> {
    use std::io::{Read as _, Write as _};
    let hint = "TILL_KEY and TILL_PROXY_URL are set, which makes this a run nested in another; if that run has ended, unset both (`unset TILL_KEY TILL_PROXY_URL`) and run again";
    let addr = url
        .strip_prefix("http://")
        .map(|a| a.trim_end_matches('/'))
        .map(|a| a.replacen("localhost:", "127.0.0.1:", 1))
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        .filter(|a| a.ip().is_loopback())
        .ok_or_else(|| {
            UserError::runtime(format!(
                "TILL_PROXY_URL is not the address of a till proxy on this machine: {}",
                crate::output::printable(url)
            ))
            .hint(hint)
        })?;
    let timeout = std::time::Duration::from_secs(2);
    let answered = (|| -> std::io::Result<Vec<u8>> {
        let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        s.write_all(b"GET /_till/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
        let mut answer = Vec::new();
        s.take(4096).read_to_end(&mut answer)?;
        Ok(answer)
    })();
    match answered {
        Ok(a) if a.starts_with(b"HTTP/1.1 200") && a.ends_with(b"\r\n\r\nok\n") => Ok(()),
        _ => Err(
            UserError::runtime(format!("no till proxy answers at TILL_PROXY_URL ({url})"))
                .hint(hint),
        ),
    }
}

/// The agent's arguments, and its environment adapted, when `program` is an agent till knows
/// (Claude Code, Codex CLI: see [`crate::agents`]).
fn adapt_for_agent(
    program: &OsStr,
    args: &[OsString],
    env: &mut Vec<(OsString, OsString)>,
    child_key: &str,
) -> Vec<OsString> {
    let Some(agent) = Agent::recognise(&program.to_string_lossy()) else {
        return args.to_vec();
    };
    agent.adapt_env(env, child_key);
    // What an agent's arguments say is read as text; they go to it as they came.
    let text: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut all: Vec<OsString> = agent
        .prefix_args(&text, env)
        .into_iter()
        .map(OsString::from)
        .collect();
    all.extend_from_slice(args);
    all
}

/// How the agent ended: its status, or till's own code when it could not start.
pub enum AgentExit {
    Status(std::process::ExitStatus),
    Code(u8),
}

impl AgentExit {
    pub fn code(&self) -> u8 {
        match self {
            AgentExit::Status(s) => crate::process::exit_code(*s),
            AgentExit::Code(c) => *c,
        }
    }
}

/// Spawns the agent (inside `sandbox` when there is one), forwards signals to it while it
/// runs, and waits for it.
fn spawn_and_wait(
    program: &OsStr,
    rest: &[OsString],
    env: Vec<(OsString, OsString)>,
    mut sandbox: Option<&mut crate::sandbox::Sandbox>,
) -> anyhow::Result<AgentExit> {
    let mut cmd = match sandbox.as_deref_mut() {
        Some(sb) => sb.command(program, rest)?,
        None => {
            let mut cmd = Command::new(program);
            cmd.args(rest);
            cmd
        }
    };
    cmd.env_clear().envs(env);
    crate::process::die_with_parent(&mut cmd);
    // Signal handlers go in before the agent exists, so no signal meant for it is lost.
    #[cfg(unix)]
    let signals = register_signals();
    #[cfg(unix)]
    let streams = crate::terminal::StreamFlags::save();
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        // In the sandbox it is till's own helper that could not start; the agent's command
        // is checked when the helper execs it.
        Err(e) if sandbox.is_some() => {
            return Err(anyhow::Error::new(e).context("cannot start the sandbox helper"));
        }
        Err(e) => {
            let program = program.to_string_lossy();
            return Ok(AgentExit::Code(crate::process::cannot_run(&program, &e)));
        }
    };
    #[cfg(unix)]
    let forwarder = signals.map(|s| forward_signals(s, child.id()));
    // The sandbox puts the terminal right itself, foreground and settings too (it ignores
    // the terminal's stop signals, which an agent outside it would inherit).
    #[cfg(unix)]
    let terminal = if sandbox.is_none() {
        crate::terminal::Terminal::save()
    } else {
        None
    };
    if let Some(sb) = sandbox
        && let Err(e) = sb.started(child.id())
    {
        // The helper never execs the agent after a failed step; make sure it is gone.
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    let status = child.wait().context("waiting for the agent failed")?;
    #[cfg(unix)]
    drop(forwarder);
    #[cfg(unix)]
    streams.restore();
    // An agent outside the sandbox may have stopped the terminal's output or left it hiding
    // text: till's summary and alerts come next. Only from the foreground (from the
    // background, touching the terminal would stop till).
    #[cfg(unix)]
    if let Some(terminal) = terminal
        && terminal.is_foreground()
    {
        terminal.reset_output();
    }
    Ok(AgentExit::Status(status))
}

/// After the agent and the proxy's grace: ends what the agent left running in the sandbox
/// (till returns only when nothing of the run goes on), takes the privileges off programs it
/// rewrote, and puts right what it left in `.git`.
fn end_sandboxed(sandbox: Option<&mut crate::sandbox::Sandbox>) {
    let Some(sb) = sandbox else {
        return;
    };
    let ended = sb.end_leftovers();
    if ended > 0 {
        crate::output::warn(&format!(
            "ended {ended} process{} the agent left running in the sandbox",
            if ended == 1 { "" } else { "es" }
        ));
    }
    sb.move_aside_new_repository();
    sb.move_aside_submodule_repositories();
    sb.restore_git_modes();
    sb.strip_rewritten_privileges();
    sb.remove_planted_commondir();
    sb.remove_worktree_config_stand_in();
    sb.restore_broken_head();
    sb.warn_rebase_commands();
    sb.warn_index_marks();
    sb.warn_replace_refs();
    sb.warn_replaced_covers();
}

/// Forwards SIGTERM, SIGHUP, SIGQUIT, SIGUSR1/2 to the agent, and SIGINT too unless a
/// terminal is attached (Ctrl-C already reaches the agent through the process group). Till
/// itself keeps running until the agent exits, so it can report its status.
#[cfg(unix)]
type Signals = Vec<(tokio::signal::unix::Signal, i32)>;

/// Installs till's handlers for the signals it forwards (needs a runtime context).
#[cfg(unix)]
fn register_signals() -> Option<Signals> {
    use tokio::signal::unix::{SignalKind, signal};
    tokio::runtime::Handle::try_current().ok()?;
    let kinds = [
        (SignalKind::terminate(), libc::SIGTERM),
        (SignalKind::hangup(), libc::SIGHUP),
        (SignalKind::quit(), libc::SIGQUIT),
        (SignalKind::user_defined1(), libc::SIGUSR1),
        (SignalKind::user_defined2(), libc::SIGUSR2),
        (SignalKind::interrupt(), libc::SIGINT),
    ];
    Some(
        kinds
            .into_iter()
            .filter_map(|(kind, num)| signal(kind).ok().map(|s| (s, num)))
            .collect(),
    )
}

/// The task forwarding signals to the agent; it stops when dropped, so that no signal goes to
/// the agent's pid once the agent has been reaped (the pid may be another process's by then).
#[cfg(unix)]
struct Forwarder(tokio::task::JoinHandle<()>);

#[cfg(unix)]
impl Drop for Forwarder {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(unix)]
fn forward_signals(streams: Signals, pid: u32) -> Forwarder {
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    Forwarder(tokio::spawn(async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<i32>();
        for (mut s, num) in streams {
            let tx = tx.clone();
            tokio::spawn(async move {
                while s.recv().await.is_some() {
                    if tx.send(num).is_err() {
                        break;
                    }
                }
            });
        }
        while let Some(num) = rx.recv().await {
            if num == libc::SIGINT && interactive {
                continue;
            }
            crate::process::send_signal(pid, num);
        }
    }))
}

/// `till: 12 requests (2 denied: model 1, rpm 1), 1234 tokens, $0.0123`
pub fn summary(s: &crate::proxy::StatsSnapshot) -> String {
    let mut out = format!(
        "till: {} request{}",
        s.requests,
        if s.requests == 1 { "" } else { "s" }
    );
    // Refusals of till's, and answers the upstream could not give (till refused nothing
    // there), are counted apart.
    let mut parts = Vec::new();
    for (word, failures) in [("denied", false), ("failed", true)] {
        let (mut n, mut kinds) = (0u64, Vec::new());
        for (kind, count) in s
            .denials
            .iter()
            .filter(|(k, _)| crate::proxy::is_failure(k) == failures)
        {
            n += count;
            kinds.push(format!("{kind} {count}"));
        }
        if n > 0 {
            parts.push(format!("{n} {word}: {}", kinds.join(", ")));
        }
    }
    if !parts.is_empty() {
        out.push_str(&format!(" ({})", parts.join("; ")));
    }
    out.push_str(&format!(
        ", {} in, {} out, {}",
        crate::format::plural(s.input_tokens, "token", "tokens"),
        s.output_tokens,
        crate::format::usd(s.cost_usd)
    ));
    out
}

/// Whether this run is sandboxed, and with which network: `--no-sandbox`, `--sandbox`, the
/// profile's `sandbox`, then `[run] sandbox`; the network from `--net`, the profile's `net`,
/// then `[sandbox] net`.
fn sandbox_requested(ctx: &Ctx, args: &RunArgs) -> Result<Option<Net>, UserError> {
    let profile = args
        .profile
        .as_deref()
        .and_then(|name| ctx.config.profiles.get(name));
    let on = if args.no_sandbox {
        false
    } else if args.sandbox {
        true
    } else {
        profile
            .and_then(|p| p.sandbox)
            .unwrap_or(ctx.config.run.sandbox)
    };
    if !on {
        if args.net.is_some() {
            return Err(UserError::usage(
                "--net sets the sandbox's network, and this run has no sandbox",
            )
            .hint("add --sandbox"));
        }
        return Ok(None);
    }
    Ok(Some(
        args.net
            .or(profile.and_then(|p| p.net))
            .unwrap_or(ctx.config.sandbox.net),
    ))
}
