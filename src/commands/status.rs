//! `till status`: stored root keys, admin keys and mint keys with their ages, and which are due
//! for rotation under `[rotation] max_age`; and the once-a-day reminder `till run` gives.
//!
//! Everything here comes from the ledger: it reads no secret and needs no keychain access. The
//! states themselves are computed in [`crate::rotation`], which `till rotate --due` shares.

use std::process::ExitCode;

use crate::cli::StatusArgs;
use crate::commands::Ctx;
use crate::env::EnvVars;
use crate::ledger::Ledger;
use crate::rotation::{KeyKind, KeyState, Mode};
use crate::time::{now_unix, rfc3339, short_duration};

/// The ledger notice that remembers the last reminder about keys past their age.
const DUE_NOTICE: &str = "rotation_due";

/// How often `till run` reminds about keys past their age.
const DUE_NOTICE_EVERY: u64 = 86_400;

/// Every stored key's state at `now`. Mint keys whose grace has ended are left out.
fn collect(ctx: &Ctx, ledger: &Ledger, now: u64) -> anyhow::Result<Vec<KeyState>> {
    crate::rotation::key_states(&ctx.config, &ctx.providers, ledger, now)
}

pub fn run(ctx: &Ctx, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let ledger = ctx.ledger_to_read()?;
    let now = now_unix();
    let keys = collect(ctx, &ledger, now)?;
    let max_age = ctx.config.rotation.max_age.map(|d| d.0.as_secs());
    if args.json {
        crate::output::json(&serde_json::json!({
            "max_age_secs": max_age,
            "keys": keys,
            "due": keys.iter().filter(|k| k.due).count(),
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if keys.is_empty() {
        crate::output::note(if crate::commands::in_sandbox() {
            "till: no keys can be seen inside the sandbox; run `till status` outside it"
        } else {
            "till: no keys stored; add one with `till add PROVIDER`"
        });
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = format!(
        "{:<6} {:<12} {:<10} {:>5}  {:<4} {}\n",
        "KIND", "NAME", "ID", "AGE", "DUE", "ROTATION"
    );
    for k in &keys {
        // A provider's name from the ledger may predate the check config.toml's names now get.
        let name = crate::output::printable(&k.name);
        let due = if k.rotation == Mode::None {
            "-"
        } else if k.due {
            "yes"
        } else {
            "no"
        };
        let rotation = match (k.kind, k.valid_until) {
            (KeyKind::Mint, Some(until)) => {
                format!("retired; its keys work until {}", rfc3339(until))
            }
            (KeyKind::Admin, _) => format!("till add {name} --admin"),
            _ => k.rotation.as_str().to_string(),
        };
        out.push_str(&format!(
            "{:<6} {:<12} {:<10} {:>5}  {:<4} {}\n",
            k.kind.as_str(),
            name,
            crate::output::printable(&k.id),
            short_duration(k.age_secs),
            due,
            rotation
        ));
    }
    crate::output::data(&out)?;
    match max_age {
        None => {
            crate::output::note("till: no [rotation] max_age in config.toml, so no key is ever due")
        }
        Some(max) => {
            let due = keys.iter().filter(|k| k.due).count();
            if due > 0 {
                // What rotates each: `--due` the automatic ones, a person the guided ones
                // (after `--due`, only the guided are left, and pointing at it again helped
                // nobody).
                let automatic = keys
                    .iter()
                    .filter(|k| k.due && k.rotation == Mode::Automatic)
                    .count();
                let guided: Vec<String> = keys
                    .iter()
                    .filter(|k| k.due && k.rotation == Mode::Guided)
                    .map(|k| format!("`till rotate {}`", crate::output::printable(&k.name)))
                    .collect();
                let mut how = Vec::new();
                if automatic > 0 {
                    how.push(format!(
                        "`till rotate --due` rotates the {}",
                        if automatic == 1 {
                            "automatic one".to_string()
                        } else {
                            format!("{automatic} automatic ones")
                        }
                    ));
                }
                if !guided.is_empty() {
                    how.push(format!(
                        "{} {} a person to make the new key",
                        guided.join(", "),
                        if guided.len() == 1 { "needs" } else { "need" }
                    ));
                }
                crate::output::note(&format!(
                    "till: {due} due (older than {}); {}",
                    short_duration(max),
                    how.join("; ")
                ));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Before `till run`: warns, at most once a day, about keys older than `[rotation] max_age`.
/// Never fails the run; a nested `till run` stays quiet.
pub fn warn_when_due(ctx: &Ctx) {
    if std::env::var_os(EnvVars::TILL_KEY).is_some_and(|v| !v.is_empty())
        || ctx.config.rotation.max_age.is_none()
    {
        return;
    }
    let Ok(ledger) = ctx.ledger() else { return };
    let now = now_unix();
    if let Ok(Some(last)) = ledger.notice_at(DUE_NOTICE)
        && now.saturating_sub(last) < DUE_NOTICE_EVERY
    {
        return;
    }
    let Ok(keys) = collect(ctx, &ledger, now) else {
        return;
    };
    let due: Vec<String> = keys
        .iter()
        .filter(|k| k.due)
        .map(|k| {
            let what = match k.kind {
                KeyKind::Mint => "the mint key".to_string(),
                _ => k.name.clone(),
            };
            format!("{what} ({})", short_duration(k.age_secs))
        })
        .collect();
    if due.is_empty() {
        return;
    }
    let max = ctx.config.rotation.max_age.map_or(0, |d| d.0.as_secs());
    crate::output::warn(&format!(
        "{} older than [rotation] max_age ({}): {}; `till rotate --due` rotates the ones it can, `till status` shows all",
        if due.len() == 1 {
            "1 key is"
        } else {
            "some keys are"
        },
        short_duration(max),
        due.join(", ")
    ));
    let _ = ledger.set_notice(DUE_NOTICE, now);
}
