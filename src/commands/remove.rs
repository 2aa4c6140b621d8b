//! `till remove PROVIDER`: deletes the root key from the store and its metadata from the ledger.

use std::process::ExitCode;

use crate::cli::RemoveArgs;
use crate::commands::{Ctx, root_secret_name};
use crate::error::UserError;

pub fn run(ctx: &Ctx, args: &RemoveArgs) -> anyhow::Result<ExitCode> {
    let provider = ctx.providers.require(&args.provider)?;
    let ledger = ctx.ledger()?;
    let store = ctx.store()?;
    let in_store = store.delete(&root_secret_name(&provider.name))?;
    let in_ledger = ledger.remove_root_key(&provider.name)?;
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
