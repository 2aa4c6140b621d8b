//! Mint keys: the secrets child keys are derived from. The current one is created on first
//! use; retired ones keep verifying until their grace period ends (`till rotate --mint`).
//!
//! The secret lives in the secrets store under `mint/<kid>`; the ledger holds only the kid
//! and its times.

use secrecy::ExposeSecret as _;

use crate::childkey::MintKey;
use crate::ledger::Ledger;
use crate::secrets::SecretStore;

use crate::secrets::mint_secret_name as secret_name;

/// The fix for a current mint key the store lost: a new one (keys signed by the lost one
/// cannot be verified any more either way).
pub const MISSING_HINT: &str =
    "make a new one with `till rotate --mint` (keys signed by the missing one stay unusable)";

/// The current mint key, created (in the store, then the ledger) when there is none. Two
/// processes that both find none (the first keys made at once) record one between them: the
/// ledger takes the first, and the other's goes from the store again and it uses the first.
pub fn current(ledger: &Ledger, store: &dyn SecretStore) -> anyhow::Result<MintKey> {
    loop {
        let mints = ledger.mint_keys()?;
        if let Some(meta) = mints.iter().rev().find(|m| m.retired_at.is_none()) {
            if let Some(entry) = load(ledger, store, &meta.kid)? {
                return Ok(entry.key);
            }
            return Err(crate::error::UserError::runtime(format!(
                "the mint key {} is recorded in the ledger but missing from the {} store",
                meta.kid,
                store.kind()
            ))
            .hint(MISSING_HINT)
            .into());
        }
        if let Some(key) = make(store, |kid, now| ledger.insert_first_mint(kid, now))? {
            return Ok(key);
        }
    }
}

/// Makes a new mint key and records it as current.
pub fn create(ledger: &Ledger, store: &dyn SecretStore) -> anyhow::Result<MintKey> {
    make(store, |kid, now| {
        ledger.insert_mint(kid, now).map(|()| true)
    })?
    .ok_or_else(|| anyhow::anyhow!("the ledger did not record the new mint key"))
}

/// A new mint key, put in the store and then recorded by `record`, which says whether the
/// ledger took it: one it did not take (or could not) goes from the store again.
fn make(
    store: &dyn SecretStore,
    record: impl FnOnce(&str, u64) -> anyhow::Result<bool>,
) -> anyhow::Result<Option<MintKey>> {
    let key = MintKey::generate()?;
    let kid = key.kid().to_string();
    store.set(&secret_name(&kid), &key.to_stored())?;
    match record(&kid, crate::time::now_unix()) {
        Ok(true) => Ok(Some(key)),
        Ok(false) => {
            store.delete(&secret_name(&kid))?;
            Ok(None)
        }
        Err(e) => {
            let _ = store.delete(&secret_name(&kid));
            Err(e)
        }
    }
}

/// A mint key and, once retired, the end of its grace period.
pub struct MintEntry {
    pub key: MintKey,
    pub valid_until: Option<u64>,
}

/// The mint key `kid` with its grace period, if the ledger and store both know it.
pub fn load(
    ledger: &Ledger,
    store: &dyn SecretStore,
    kid: &str,
) -> anyhow::Result<Option<MintEntry>> {
    let Some(meta) = ledger.mint_keys()?.into_iter().find(|m| m.kid == kid) else {
        return Ok(None);
    };
    let Some(stored) = store.get(&secret_name(kid))? else {
        return Ok(None);
    };
    let key = MintKey::from_stored(stored.expose_secret())?;
    Ok(Some(MintEntry {
        key,
        valid_until: meta.valid_until,
    }))
}

/// Every mint key that still verifies at `now`: the current one and retired ones in grace.
pub fn all_valid(
    ledger: &Ledger,
    store: &dyn SecretStore,
    now: u64,
) -> anyhow::Result<Vec<MintEntry>> {
    let mut out = Vec::new();
    for meta in ledger.mint_keys()? {
        if meta.valid_until.is_some_and(|until| until <= now) {
            continue;
        }
        if let Some(entry) = load(ledger, store, &meta.kid)? {
            out.push(entry);
        }
    }
    Ok(out)
}
