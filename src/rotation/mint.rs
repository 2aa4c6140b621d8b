//! Mint-key rotation: a new mint key becomes current and the old ones are retired with a
//! grace period; a failure to retire removes the new key again. Nothing here prints.

use std::time::Duration;

use super::{Failure, Method, Outcome, Prompter, RotateError, Rotator, Step, Success};
use crate::time::{now_unix, rfc3339};

impl Rotator<'_> {
    /// A new mint key (`till rotate --mint`); the keys the old ones signed work until `grace`
    /// ends.
    pub fn rotate_mint(
        &self,
        grace: Duration,
        prompter: &mut dyn Prompter,
    ) -> Result<Outcome, RotateError> {
        let store = self.store()?;
        let ledger = self.ledger;
        // Every mint key whose keys still work: the current one, and any still in an earlier
        // rotation's grace (this rotation ends that no later than its own).
        let before = now_unix();
        let old: Vec<String> = ledger
            .mint_keys()
            .map(|m| {
                m.into_iter()
                    .filter(|m| m.signs_keys_at(before))
                    .map(|m| m.kid)
                    .collect()
            })
            .unwrap_or_default();
        let old_ids = (!old.is_empty()).then(|| old.join(","));
        let result = (|| {
            self.injected(Step::Create)?;
            let new = crate::mint::create(ledger, store).map_err(|e| {
                Failure::new(Step::Create, format!("cannot create a new mint key: {e:#}"))
                    .hint("nothing was changed; child keys keep working")
            })?;
            let kid = new.kid().to_string();
            let now = now_unix();
            let until = now.saturating_add(grace.as_secs());
            if let Err(e) = self
                .injected(Step::Retire)
                .map_err(|f| f.message)
                .and_then(|()| {
                    ledger
                        .retire_mints(&kid, now, until)
                        .map_err(|e| format!("{e:#}"))
                })
            {
                let _ = store.delete(&crate::secrets::mint_secret_name(&kid));
                let _ = ledger.delete_mint(&kid);
                return Err(Failure::new(
                    Step::Retire,
                    format!("cannot retire the old mint key: {e}; the new one was removed again"),
                )
                .hint("nothing was changed; child keys keep working"));
            }
            let message = match (&old_ids, grace.is_zero()) {
                (None, _) => format!("created the mint key {kid}"),
                (Some(old), true) => {
                    format!("new mint key {kid}; keys signed by {old} stopped working")
                }
                (Some(old), false) => {
                    // An earlier rotation's grace that ends sooner keeps its end: each old
                    // mint key's is said as the ledger now has it.
                    let ends: Vec<(String, u64)> = ledger
                        .mint_keys()
                        .map(|m| {
                            m.into_iter()
                                .filter(|m| old_ids_list(old).any(|k| k == m.kid))
                                .map(|m| (m.kid, m.valid_until.unwrap_or(until)))
                                .collect()
                        })
                        .unwrap_or_default();
                    if ends.iter().all(|(_, end)| *end == until) {
                        format!(
                            "new mint key {kid}; keys signed by {old} work until {}",
                            rfc3339(until)
                        )
                    } else {
                        let each: Vec<String> = ends
                            .iter()
                            .map(|(k, end)| format!("by {k} until {}", rfc3339(*end)))
                            .collect();
                        format!("new mint key {kid}; keys signed {}", each.join(", "))
                    }
                }
            };
            Ok(Success {
            message,
            new_fingerprint: kid,
            todo: old_ids
                .as_ref()
                .map(|_| {
                    let when = if grace.is_zero() { "now" } else { "before then" };
                    format!("hand out new keys: start running `till run` agents again {when} (each run mints its own), and `till key create` for the others")
                }),
        })
        })();
        let mut notices = Vec::new();
        let outcome = self.finish("mint", Method::Mint, old_ids.clone(), result, &mut notices);
        notices.iter().for_each(|n| prompter.notice(n));
        Ok(outcome)
    }
}

/// The mint key ids of a rotation's `old` list (`a,b`).
fn old_ids_list(old: &str) -> impl Iterator<Item = &str> {
    old.split(',')
}
