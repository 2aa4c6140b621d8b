//! `till remove PROVIDER`: deletes the root key from the store and its metadata from the ledger.

use std::process::ExitCode;

use crate::cli::RemoveArgs;
use crate::commands::{Ctx, root_secret_name};
use crate::error::UserError;

pub fn run(ctx: &Ctx, args: &RemoveArgs) -> anyhow::Result<ExitCode> {
    let provider = ctx.providers.require(&args.provider)?;
    // Where there is no ledger yet (a new or a mistyped TILL_HOME) none is made for this.
    let ledger = ctx.ledger_if_there()?;
    let store = ctx.store()?;
    let in_store = store.delete(&root_secret_name(&provider.name))?;
    let removed = match &ledger {
        Some(ledger) => ledger.remove_root_key(&provider.name),
        None => Ok(false),
    };
    let in_ledger = removed.map_err(|e| {
        if !in_store {
            return e;
        }
        // The key is gone from the store already: said, with how to finish.
        anyhow::Error::from(
            UserError::runtime(format!(
                "removed the {} key from the {} store, but could not take it out of the ledger: {e:#}",
                provider.name,
                store.kind()
            ))
            .hint(format!(
                "run `till remove {}` again to finish (proxies already stop forwarding with it)",
                provider.name
            )),
        )
    })?;
    if !in_store && !in_ledger {
        return Err(
            UserError::usage(format!("no {} key is stored", provider.name))
                .hint("`till list` shows the stored keys")
                .into(),
        );
    }
    crate::output::note(&format!(
        "removed the {} key from the {} store",
        provider.name,
        store.kind()
    ));
    Ok(ExitCode::SUCCESS)
}
