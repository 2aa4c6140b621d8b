//! `till doctor`: checks, one line each, that till can work here, and names the fix for each
//! failure. Exit 1 when any check fails.

use std::process::ExitCode;

use serde::Serialize;

use crate::cli::DoctorArgs;
use crate::commands::{Ctx, root_secret_name};
use crate::config::{Config, Paths};
use crate::output::check_line;
use crate::providers::Providers;

pub fn run(args: &DoctorArgs) -> anyhow::Result<ExitCode> {
    let mut checks: Vec<Check> = Vec::new();
    let code = checks_run(args.json, &mut checks)?;
    if args.json {
        crate::output::json(&checks)?;
    }
    Ok(code)
}

/// One check's outcome, as `--json` prints it.
#[derive(Serialize)]
struct Check {
    check: String,
    ok: bool,
    detail: String,
}

/// Runs the checks; each is written as a line as it is known, or, with `json`, kept in
/// `checks`.
fn checks_run(json: bool, checks: &mut Vec<Check>) -> anyhow::Result<ExitCode> {
    let paths = Paths::resolve()?;
    let mut failed = false;
    // Each line is written as it is known; a closed stdout ends the command (exit 0).
    let mut check = |ok: bool, what: &str, detail: String| {
        failed |= !ok;
        if json {
            checks.push(Check {
                check: what.to_string(),
                ok,
                detail,
            });
            Ok(())
        } else {
            check_line(ok, what, &detail)
        }
    };

    let config = match Config::load(&paths.config_file) {
        Ok(c) => {
            let detail = if paths.config_file.exists() {
                paths.config_file.display().to_string()
            } else {
                format!(
                    "none at {}; the defaults apply",
                    paths.config_file.display()
                )
            };
            check(true, "config", detail)?;
            c
        }
        Err(e) => {
            // The other checks need the config, so this is the last line. Its general hint
            // (`till doctor` checks it) would point here; the message says what to fix.
            let detail = if super::hint(&e).as_deref() == Some(crate::config::CONFIG_HINT) {
                format!("{e:#}")
            } else {
                with_hint(&e)
            };
            check(false, "config", detail)?;
            return Ok(ExitCode::from(1));
        }
    };
    let ctx = Ctx {
        providers: Providers::from_config(&config),
        paths,
        config,
    };

    // A data directory that is not there yet is not made (a mistyped TILL_HOME would be filled
    // and then look fine): doctor says it will be, if it can be.
    if matches!(ctx.paths.data_dir.try_exists(), Ok(false)) {
        match creatable(&ctx.paths.data_dir) {
            Ok(()) => check(
                true,
                "data directory",
                format!(
                    "none yet at {}; made when a key is first added or created",
                    ctx.paths.data_dir.display()
                ),
            )?,
            Err(e) => check(
                false,
                "data directory",
                format!(
                    "{} cannot be made: {e}; fix its permissions or set TILL_HOME",
                    ctx.paths.data_dir.display()
                ),
            )?,
        }
    } else {
        let probe = ctx.paths.data_dir.join(".doctor-probe");
        let writable = ctx.paths.ensure_data_dir().and_then(|()| {
            // Made and removed whatever the write does: a full disk makes the file and
            // refuses its bytes.
            let wrote = std::fs::write(&probe, b"ok");
            let removed = std::fs::remove_file(&probe);
            wrote?;
            removed?;
            Ok(())
        });
        match writable {
            Ok(()) => check(
                true,
                "data directory",
                ctx.paths.data_dir.display().to_string(),
            )?,
            Err(e) => {
                let full = e
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::StorageFull);
                let fix = if full {
                    "its disk is full: free some space, or set TILL_HOME to a directory on another disk"
                } else {
                    "fix its permissions or set TILL_HOME"
                };
                check(
                    false,
                    "data directory",
                    format!("{}: {e:#}; {fix}", ctx.paths.data_dir.display()),
                )?
            }
        }
    }

    let ledger = if matches!(ctx.paths.ledger_file().try_exists(), Ok(false)) {
        check(
            true,
            "ledger",
            format!(
                "none yet at {}; nothing has been recorded there",
                ctx.paths.ledger_file().display()
            ),
        )?;
        crate::ledger::Ledger::open_in_memory()
    } else {
        let ledger = ctx.ledger();
        match &ledger {
            Ok(_) => check(
                true,
                "ledger",
                ctx.paths.ledger_file().display().to_string(),
            )?,
            Err(e) => check(false, "ledger", format!("{e:#}"))?,
        }
        ledger
    };
    let keys = match &ledger {
        Ok(l) => l.root_keys().unwrap_or_default(),
        Err(_) => Vec::new(),
    };

    let leftovers = crate::secrets::file::stale_temps(&ctx.paths.store_file());
    if !leftovers.is_empty() {
        let names: Vec<String> = leftovers.iter().map(|p| p.display().to_string()).collect();
        // Each name escaped (a line break in it would forge a line of this report) and, for
        // the command, quoted as a shell reads it (`*` or `;` in a name stays a name); a name
        // that needed escaping cannot be pasted, so it gets no command.
        let shown: Vec<String> = names
            .iter()
            .map(|n| crate::output::printable(n).into_owned())
            .collect();
        let command = if shown == names {
            let quoted: Vec<String> = names
                .iter()
                .map(|n| format!("'{}'", n.replace('\'', "'\\''")))
                .collect();
            format!(": rm -- {}", quoted.join(" "))
        } else {
            String::new()
        };
        check(
            false,
            "store leftovers",
            format!(
                "{} left by a write that did not finish (an encrypted copy of the keys of then); the next store write removes it, or delete it{command}",
                shown.join(", "),
            ),
        )?;
    }

    match ctx.store() {
        Ok(store) => {
            check(
                true,
                "secrets store",
                format!("{} store answers", store.kind()),
            )?;
            // A key in the store that the ledger does not list (the ledger was lost or
            // replaced) is not used; the same key given to `till add` lists it again.
            // For each provider the ledger does not list: the fingerprint of a key the store
            // holds for it anyway, or why the store could not be asked.
            let unlisted: Vec<(&str, Result<String, String>)> = if ledger.is_ok() {
                ctx.providers
                    .names()
                    .into_iter()
                    .filter(|name| !keys.iter().any(|meta| meta.provider == *name))
                    .filter_map(|name| match store.get(&root_secret_name(name)) {
                        Ok(Some(key)) => {
                            use secrecy::ExposeSecret as _;
                            Some((name, Ok(crate::ledger::fingerprint(key.expose_secret()))))
                        }
                        Ok(None) => None,
                        Err(e) => Some((name, Err(format!("{e:#}")))),
                    })
                    .collect()
            } else {
                Vec::new()
            };
            for (provider, found) in &unlisted {
                let said = match found {
                    Ok(fp) => format!(
                        "{fp} is in the store but not in the ledger, so nothing uses it; `till add {provider}` with that key lists it again, `till remove {provider}` deletes it"
                    ),
                    Err(e) => format!(
                        "a key in the store that the ledger does not list could not be looked for: {e}"
                    ),
                };
                check(false, &format!("{provider} key"), said)?;
            }
            if keys.is_empty() && unlisted.is_empty() && ledger.is_ok() {
                check(
                    true,
                    "root keys",
                    "none stored yet; add one with `till add PROVIDER`".into(),
                )?;
            }
            // The fingerprint of the key each provider has in the store, which no leftover is.
            let mut in_store: std::collections::HashMap<String, String> = Default::default();
            for meta in &keys {
                // A name from the ledger may predate the check config.toml's names now get.
                let provider = crate::output::printable(&meta.provider);
                let what = format!("{provider} key");
                match store.get(&root_secret_name(&meta.provider)) {
                    Ok(Some(key)) => {
                        use secrecy::ExposeSecret as _;
                        let fp = crate::ledger::fingerprint(key.expose_secret());
                        in_store.insert(meta.provider.clone(), fp.clone());
                        if fp == meta.fingerprint {
                            check(true, &what, format!("present ({fp})"))?;
                        } else {
                            check(
                                false,
                                &what,
                                format!(
                                    "store has {fp}, ledger expects {}; run `till add {} --replace` with the key to keep",
                                    meta.fingerprint, provider
                                ),
                            )?;
                        }
                    }
                    Ok(None) => check(
                        false,
                        &what,
                        format!("missing from the store; run `till add {provider}`"),
                    )?,
                    Err(e) => check(false, &what, format!("{e:#}"))?,
                }
            }
            if let Ok(ledger) = &ledger {
                for meta in &keys {
                    let stored = in_store.get(&meta.provider).map(String::as_str);
                    check_leftovers(&mut check, ledger, &ctx.providers, meta, stored)?;
                }
            }
            match &ledger {
                Ok(ledger) => check_mint(&mut check, ledger, store.as_ref())?,
                // Which keys there should be is the ledger's to say.
                Err(_) => check(
                    false,
                    "root keys",
                    "not checked: the ledger above cannot be read".into(),
                )?,
            }
        }
        Err(e) => check(false, "secrets store", with_hint(&e))?,
    }

    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Keys a rotation made or meant to delete and did not get to (it was killed): recorded with
/// their ids, and not the stored key.
fn check_leftovers(
    check: &mut impl FnMut(bool, &str, String) -> std::io::Result<()>,
    ledger: &crate::ledger::Ledger,
    providers: &Providers,
    meta: &crate::ledger::RootKeyMeta,
    stored: Option<&str>,
) -> anyhow::Result<()> {
    let recorded = ledger.recorded_key_ids(&meta.provider).unwrap_or_default();
    let provider = crate::output::printable(&meta.provider);
    let found = providers.get(&meta.provider);
    let console = found
        .map(|p| p.console().to_string())
        .unwrap_or_else(|| "the provider's console".into());
    // Anthropic's admin API sets a key inactive; OpenAI's deletes it.
    let (done, by_hand) = match found.and_then(crate::rotation::admin::admin_kind) {
        Some(crate::rotation::admin::AdminKind::AnthropicOrg) => {
            ("with the admin key sets it inactive", "set it inactive")
        }
        _ => ("deletes it", "delete it"),
    };
    for left in recorded
        .iter()
        .filter(|r| r.fingerprint != meta.fingerprint && Some(r.fingerprint.as_str()) != stored)
    {
        check(
            false,
            &format!("{provider} leftover key"),
            format!(
                "key {} (recorded {}) was made or replaced by a rotation that did not finish, or is still running, and is not the stored key; the next `till rotate {provider}` {done}, or {by_hand} at {console}",
                crate::output::printable(&left.ids.key_id),
                crate::time::rfc3339(left.recorded_at),
            ),
        )?;
    }
    Ok(())
}

/// The current mint key, which every new child key is signed with, must be in the store.
fn check_mint(
    check: &mut impl FnMut(bool, &str, String) -> std::io::Result<()>,
    ledger: &crate::ledger::Ledger,
    store: &dyn crate::secrets::SecretStore,
) -> anyhow::Result<()> {
    let mints = match ledger.mint_keys() {
        Ok(m) => m,
        Err(e) => return Ok(check(false, "mint key", format!("{e:#}"))?),
    };
    let Some(current) = mints.iter().rev().find(|m| m.retired_at.is_none()) else {
        return Ok(check(
            true,
            "mint key",
            "none yet; the first `till run` or `till key create` makes it".into(),
        )?);
    };
    match store.get(&crate::secrets::mint_secret_name(&current.kid)) {
        Ok(Some(_)) => check(true, "mint key", format!("present ({})", current.kid))?,
        Ok(None) => check(
            false,
            "mint key",
            format!(
                "{} is recorded in the ledger but missing from the store; {}",
                current.kid,
                crate::mint::MISSING_HINT
            ),
        )?,
        Err(e) => check(false, "mint key", format!("{e:#}"))?,
    }
    // A `till rotate --mint` killed between making the new key and retiring the old one
    // leaves both current: keys signed by the old one go on working with no end.
    let unretired: Vec<&str> = mints
        .iter()
        .filter(|m| m.retired_at.is_none() && m.kid != current.kid)
        .map(|m| m.kid.as_str())
        .collect();
    if !unretired.is_empty() {
        check(
            false,
            "mint key",
            format!(
                "{} not retired beside the current {}: a mint key rotation did not finish, and keys signed by {} keep working; run `till rotate --mint` again",
                unretired.join(", "),
                current.kid,
                if unretired.len() == 1 { "it" } else { "them" }
            ),
        )?;
    }
    Ok(())
}

/// An error and, where it has one, the fix another command would print under it:
/// `… (hint: …)`.
fn with_hint(e: &anyhow::Error) -> String {
    match super::hint(e) {
        Some(h) => format!("{e:#} (hint: {h})"),
        None => format!("{e:#}"),
    }
}

/// Whether `dir`, which is not there, could be made: its nearest existing ancestor is a
/// directory this process may write in.
fn creatable(dir: &std::path::Path) -> std::io::Result<()> {
    let mut at = dir;
    while let Some(parent) = at.parent() {
        at = parent;
        if at.as_os_str().is_empty() || at.try_exists()? {
            break;
        }
    }
    if at.as_os_str().is_empty() {
        at = std::path::Path::new(".");
    }
    if !at.is_dir() {
        return Err(std::io::Error::other(format!(
            "{} is not a directory",
            at.display()
        )));
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt as _;
        let path =
            std::ffi::CString::new(at.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
        // SAFETY: access reads a NUL-terminated path.
        if unsafe { libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", at.display()),
            ));
        }
    }
    Ok(())
}
