//! `till setup AGENT`: the one-time change an agent needs before `till run` works with it.
//! Only Gemini CLI needs one ([`crate::agents::gemini`]); for the others this says so.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::agents::gemini::{self, Pin};
use crate::cli::{SetupAgent, SetupArgs};
use crate::env::EnvVars;
use crate::error::UserError;

pub fn run(args: &SetupArgs) -> anyhow::Result<ExitCode> {
    match args.agent {
        SetupAgent::Claude => crate::output::note(
            "Claude Code needs no setup: `till run -- claude` gives it the child key as ANTHROPIC_AUTH_TOKEN, so it asks no API-key question and stores nothing",
        ),
        SetupAgent::Codex => crate::output::note(
            "Codex CLI needs no setup: `till run -- codex …` passes it a `till` provider for that run with -c overrides, and ~/.codex stays as it is",
        ),
        SetupAgent::Gemini => setup_gemini(args.dry_run)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn gemini_settings() -> anyhow::Result<PathBuf> {
    let home = match std::env::var_os(EnvVars::GEMINI_CLI_HOME).filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home),
        None => directories::BaseDirs::new()
            .map(|d| d.home_dir().to_path_buf())
            .ok_or_else(|| {
                UserError::runtime("cannot find your home directory")
                    .hint("set GEMINI_CLI_HOME to the directory that holds .gemini")
            })?,
    };
    Ok(home.join(".gemini").join("settings.json"))
}

/// The file the settings are in: `path` itself, or what a symbolic link there leads to (a
/// settings.json kept with your dotfiles stays a link, and its target is what changes).
/// Refused when it is not a regular file: a FIFO there would hang the read.
fn settings_file(path: PathBuf) -> anyhow::Result<PathBuf> {
    let is_link = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
    let file = if is_link {
        std::fs::canonicalize(&path).map_err(|e| {
            UserError::runtime(format!(
                "{} is a symbolic link that leads nowhere till can read ({e})",
                path.display()
            ))
            .hint("point it at the settings file, or remove it and run this again")
        })?
    } else {
        path
    };
    match std::fs::metadata(&file) {
        Ok(m) if !m.is_file() => Err(UserError::runtime(format!(
            "{} is not a regular file; till reads and writes only a regular settings file",
            file.display()
        ))
        .hint("move it aside and run this again, or set the auth type there yourself")
        .into()),
        _ => Ok(file),
    }
}

fn setup_gemini(dry_run: bool) -> anyhow::Result<()> {
    let path = settings_file(gemini_settings()?)?;
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let line = format!("{} = \"{}\"", gemini::SETTING, gemini::AUTH_TYPE);
    let pin = gemini::pin_auth_type(text.as_deref()).map_err(|why| {
        UserError::runtime(format!("cannot read {}: {why}", path.display())).hint(format!(
            "set {line} there yourself (\"security\": {{\"auth\": {{\"selectedType\": \"{}\"}}}})",
            gemini::AUTH_TYPE
        ))
    })?;
    let new = match pin {
        Pin::Unchanged => {
            crate::output::note(&format!(
                "nothing to do: {} already has {line}",
                path.display()
            ));
            return Ok(());
        }
        Pin::Other(current) => {
            return Err(UserError::runtime(format!(
                "{} chooses the auth type `{current}`; under till, Gemini CLI must use `{}`",
                path.display(),
                gemini::AUTH_TYPE
            ))
            .hint(format!(
                "change it there to \"{}\" if Gemini CLI should use API keys (a till child key in runs, GEMINI_API_KEY otherwise)",
                gemini::AUTH_TYPE
            ))
            .into());
        }
        Pin::Changed(new) => new,
    };
    let verb = if text.is_some() {
        "add"
    } else {
        "create it with"
    };
    if dry_run {
        crate::output::note(&format!(
            "would {verb} {line} in {} (nothing written: --dry-run)",
            path.display()
        ));
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // A crash leaves the old file whole; the file keeps its permissions.
    crate::config::write_atomically(&path, new.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    let done = if text.is_some() {
        "added"
    } else {
        "created it with"
    };
    crate::output::note(&format!(
        "{done} {line} in {}; Gemini CLI now sends GEMINI_API_KEY to GOOGLE_GEMINI_BASE_URL, which `till run` sets (remove the line to undo)",
        path.display()
    ));
    Ok(())
}
