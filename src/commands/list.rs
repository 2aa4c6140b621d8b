//! `till list`: stored root keys from the ledger (provider, fingerprint, times). It reads no
//! secret and needs no keychain access.

use std::process::ExitCode;

use crate::cli::ListArgs;
use crate::commands::Ctx;
use crate::time::{now_unix, rfc3339, short_duration};

pub fn run(ctx: &Ctx, args: &ListArgs) -> anyhow::Result<ExitCode> {
    let keys = ctx.ledger_to_read()?.root_keys()?;
    if args.json {
        crate::output::json(&keys)?;
        return Ok(ExitCode::SUCCESS);
    }
    if keys.is_empty() {
        crate::output::note(if crate::commands::in_sandbox() {
            "no root keys can be seen inside the sandbox; run `till list` outside it"
        } else {
            "no root keys stored; add one with `till add PROVIDER`"
        });
        return Ok(ExitCode::SUCCESS);
    }
    let now = now_unix();
    // STORED and AGE are the key's now in the store: a rotation or `till add --replace`
    // restarts both (ADDED kept the first key's time while AGE restarted). `--json` has both
    // times.
    let mut out = format!(
        "{:<12} {:<10} {:<22} {:>5}\n",
        "PROVIDER", "KEY", "STORED", "AGE"
    );
    for k in &keys {
        let since = k.rotated_at.unwrap_or(k.added_at);
        out.push_str(&format!(
            "{:<12} {:<10} {:<22} {:>5}\n",
            // A name from the ledger may predate the check config.toml's names now get.
            crate::output::printable(&k.provider),
            crate::output::printable(&k.fingerprint),
            rfc3339(since),
            short_duration(now.saturating_sub(since))
        ));
    }
    crate::output::data(&out)?;
    Ok(ExitCode::SUCCESS)
}
