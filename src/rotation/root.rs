//! One root-key rotation: the automatic plan (OpenAI: find, create, verify, store, delete)
//! and the guided one (verify a person's key, find, store, and with Anthropic deactivate),
//! with the commit to store and ledger and everything that undoes it.
//!
//! Every step after `create` that fails puts the store and the ledger back and deletes what
//! the rotation made at the provider; nothing here prints or prompts (see [`super`]).

use std::cell::RefCell;

use secrecy::{ExposeSecret as _, SecretString};

use super::admin::{self, AdminApi, CreatedKey};
use super::{Failure, Interrupt, Notice, Rotator, Step, Success, UNFINISHED_AFTER, admin_hint};
use crate::ledger::{RecordedKeyIds, RootKeyIds, RootKeyMeta, fingerprint};
use crate::providers::Provider;
use crate::secrets::{SecretStore, root_secret_name};
use crate::time::{now_unix, rfc3339};
use crate::upstream::Verdict;

/// How a provider's key gets rotated here.
pub(super) enum Plan {
    /// OpenAI with an admin key and a project: create, verify, store, delete.
    Admin { key: SecretString, project: String },
    /// A person makes the key; with an Anthropic admin key the old one is then set inactive.
    Guided {
        deactivate_with: Option<SecretString>,
    },
}

/// What one root-key rotation works with.
pub(super) struct Rotation<'r, 'a> {
    pub(super) rotator: &'r Rotator<'a>,
    pub(super) store: &'r dyn SecretStore,
    pub(super) provider: &'r Provider,
    pub(super) old_meta: RootKeyMeta,
    pub(super) old_key: SecretString,
    /// What to tell once the rotation is over.
    pub(super) notices: RefCell<Vec<Notice>>,
}

impl Rotation<'_, '_> {
    fn name(&self) -> &str {
        &self.provider.name
    }

    /// Checks a new key with the provider; `fresh` keys (just created by till) get a few more
    /// tries, since a provider may need a moment to accept them.
    async fn verify_new(&self, key: &SecretString, fresh: bool) -> Result<(), Failure> {
        self.rotator.injected(Step::Verify)?;
        let delays: &[_] = if fresh {
            &self.rotator.retry_delays
        } else {
            &[]
        };
        let mut tries = delays.iter();
        loop {
            let verdict = tokio::select! {
                verdict = crate::upstream::verify_key(&self.rotator.client, self.provider, key) => verdict,
                () = self.rotator.interrupt.raised() => return Err(Interrupt::failure(Step::Verify)),
            };
            let failure = match verdict {
                Ok(Verdict::Accepted) => return Ok(()),
                Ok(Verdict::Rejected(status)) => Failure::new(
                    Step::Verify,
                    format!("{} rejected the new key (HTTP {status})", self.name()),
                ),
                Ok(Verdict::Unexpected(status)) => Failure::new(
                    Step::Verify,
                    format!(
                        "could not check the new key: {} answered HTTP {status}",
                        self.name()
                    ),
                ),
                Err(e) => Failure::new(
                    Step::Verify,
                    format!(
                        "could not reach {} to check the new key ({})",
                        self.name(),
                        e
                    ),
                ),
            };
            match tries.next() {
                Some(delay) if !self.rotator.interrupt.seen() => {
                    tokio::select! {
                        () = tokio::time::sleep(*delay) => {}
                        () = self.rotator.interrupt.raised() => return Err(Interrupt::failure(Step::Verify)),
                    }
                }
                _ => return Err(failure),
            }
        }
    }

    /// Puts the new key in the store and the ledger. On failure everything is put back, unless
    /// the old key cannot be restored: then the new key stays and `Err((failure, false))`
    /// says it must not be deleted.
    fn commit(&self, new_key: &SecretString) -> Result<String, (Failure, bool)> {
        self.rotator.injected(Step::Store).map_err(|f| (f, true))?;
        let name = root_secret_name(self.name());
        // Only over the key this rotation replaces: another till process may have replaced or
        // removed it meanwhile (`till add --replace`, `till remove`, a second rotation), and
        // that change must not be lost under this one.
        match self
            .store
            .set_if_unchanged(&name, Some(&self.old_key), new_key)
        {
            Ok(true) => {}
            Ok(false) => {
                let f = Failure::new(
                    Step::Store,
                    format!(
                        "another till process changed the stored {} key while this rotation ran, so the new key was not stored",
                        self.name()
                    ),
                )
                .hint(format!(
                    "see `till list`; run `till rotate {}` again if it still needs one",
                    self.name()
                ));
                return Err((f, true));
            }
            Err(e) => {
                let mut f = Failure::new(Step::Store, format!("cannot store the new key: {e}"));
                f.hint = e.hint();
                return Err((f, true));
            }
        }
        let new_fp = fingerprint(new_key.expose_secret());
        let now = now_unix();
        if let Err(e) = self
            .rotator
            .ledger
            .record_root_key(self.name(), &new_fp, now)
        {
            let message = format!("cannot record the new key in the ledger: {e:#}");
            // A ledger that refused the row (locked, full) still holds the old one, and may
            // refuse to be written back to as well: then only the store is put back.
            let unchanged = self
                .rotator
                .ledger
                .root_key(self.name())
                .is_ok_and(|row| row.as_ref() == Some(&self.old_meta));
            return Err(match self.undo_commit(unchanged) {
                Ok(()) => (Failure::new(Step::Store, message), true),
                Err(undo) => (self.stuck(Step::Store, &message, &undo), false),
            });
        }
        Ok(new_fp)
    }

    /// Puts the old key back in the store and, unless the ledger still has it
    /// (`ledger_unchanged`), its row back in the ledger. The new key's ids stay recorded until
    /// the key is deleted at the provider ([`Self::abandon`]).
    fn undo_commit(&self, ledger_unchanged: bool) -> Result<(), String> {
        self.store
            .set(&root_secret_name(self.name()), &self.old_key)
            .map_err(|e| format!("cannot put the old key back in the store: {e}"))?;
        if !ledger_unchanged {
            self.rotator
                .ledger
                .restore_root_key(&self.old_meta)
                .map_err(|e| format!("cannot put the old key back in the ledger: {e:#}"))?;
        }
        Ok(())
    }

    /// The failure when the old key could not be put back: the new key stays in use.
    fn stuck(&self, step: Step, message: &str, undo: &str) -> Failure {
        Failure::new(
            step,
            format!("{message}, and {undo}; the new key stays in use"),
        )
        .hint(format!(
            "check the store with `till doctor`; the old key (fingerprint {}) still exists at {}",
            self.old_meta.fingerprint,
            self.name()
        ))
    }

    /// OpenAI with an admin key: find the old key's id, create a service-account key, verify
    /// it, store it, delete the old key.
    pub(super) async fn automatic(
        &self,
        admin_key: &SecretString,
        project: &str,
    ) -> Result<Success, Failure> {
        let api = AdminApi::new(&self.rotator.client, self.provider, admin_key);
        let console = self.provider.console().to_string();
        self.delete_leftovers(&api, project).await;

        self.rotator.injected(Step::Find)?;
        let old_ids = match self
            .rotator
            .ledger
            .root_key_ids(self.name(), &self.old_meta.fingerprint)
            .map_err(|e| Failure::new(Step::Find, format!("{e:#}")))?
        {
            Some(ids) => ids,
            None => {
                let listed = api.openai_list_keys(project).await.map_err(|e| {
                    Failure::new(
                        Step::Find,
                        format!("cannot list the keys of project {project}: {e}"),
                    )
                    .hint(admin_hint(&e, self.name()))
                })?;
                let found = admin::find_key(&listed, self.old_key.expose_secret()).map_err(|why| {
                    Failure::new(
                        Step::Find,
                        format!("cannot tell which key of project {project} to delete: {why}"),
                    )
                    .hint(format!(
                        "is the stored key from project {project} ([providers.{}] admin_project)? Nothing was changed",
                        self.name()
                    ))
                })?;
                self.record_old_key_id(&found.id, "the old key still works; nothing was changed")?
            }
        };
        self.rotator.interrupt.check(Step::Find)?;

        self.rotator.injected(Step::Create)?;
        let account_name = format!("till-{}", rfc3339(now_unix()).replace(':', ""));
        let created = api
            .openai_create_key(project, &account_name)
            .await
            .map_err(|e| {
                Failure::new(
                    Step::Create,
                    format!("cannot create a new key in project {project}: {e}"),
                )
                .hint(admin_hint(&e, self.name()))
            })?;

        // From here on a failure must not leave the new key behind at the provider, and a
        // rotation killed before its end must leave the new key's ids for the next one.
        let new_ids = RootKeyIds {
            key_id: created.key_id.clone(),
            service_account_id: Some(created.service_account_id.clone()),
        };
        let new_fp = fingerprint(created.value.expose_secret());
        if let Err(e) =
            self.rotator
                .ledger
                .record_root_key_ids(self.name(), &new_fp, &new_ids, now_unix())
        {
            let f = Failure::new(
                Step::Create,
                format!("cannot record the new key's id in the ledger: {e:#}"),
            )
            .hint("the old key still works; try again later");
            return Err(self.abandon(&api, project, &created, f).await);
        }
        if let Err(f) = self.verify_new(&created.value, true).await {
            return Err(self.abandon(&api, project, &created, f).await);
        }
        if let Err(f) = self.rotator.interrupt.check(Step::Verify) {
            return Err(self.abandon(&api, project, &created, f).await);
        }

        match self.commit(&created.value) {
            Ok(_) => {}
            Err((f, true)) => return Err(self.abandon(&api, project, &created, f).await),
            Err((f, false)) => return Err(f),
        }

        let deleted = match self.rotator.injected(Step::Delete) {
            Err(f) => Err(f.message),
            Ok(()) => match api.openai_delete_key(project, &old_ids.key_id).await {
                // Deleted by hand already: the goal is reached.
                Err(admin::AdminError::Status { status: 404, .. }) => {
                    self.notices
                        .borrow_mut()
                        .push(Notice::OldKeyAlreadyDeleted {
                            key_id: old_ids.key_id.clone(),
                            provider: self.name().to_string(),
                        });
                    Ok(())
                }
                other => other.map_err(|e| e.to_string()),
            },
        };
        if let Err(why) = deleted {
            let message = format!("cannot delete the old key {}: {why}", old_ids.key_id);
            return Err(match self.undo_commit(false) {
                Ok(()) => {
                    let f =
                        Failure::new(Step::Delete, format!("{message}; the old key was put back"))
                            .hint("the old key still works; try again later");
                    self.abandon(&api, project, &created, f).await
                }
                Err(undo) => self.stuck(Step::Delete, &message, &undo).hint(format!(
                    "delete the old key {} at {console}",
                    old_ids.key_id
                )),
            });
        }
        if let Some(account) = &old_ids.service_account_id {
            // till made this service account for the old key; with the key gone it is empty.
            if let Err(e) = api.openai_delete_service_account(project, account).await {
                self.notices.borrow_mut().push(Notice::ServiceAccountLeft {
                    account: account.clone(),
                    error: e.to_string(),
                });
            }
        }
        self.forget_old_ids();
        Ok(Success {
            message: format!(
                "rotated the {} key: {} -> {new_fp} (created key {} in project {project}, deleted key {})",
                self.name(),
                self.old_meta.fingerprint,
                created.key_id,
                old_ids.key_id
            ),
            new_fingerprint: new_fp,
            todo: None,
        })
    }

    /// Forgets the recorded ids of the key this rotation replaced: deleted or set inactive by
    /// it, or left to the person, it is no key a later rotation should delete.
    fn forget_old_ids(&self) {
        self.forget_ids(&self.old_meta.fingerprint);
    }

    /// Forgets the recorded ids of the key with `fingerprint`: deleted at the provider, or no
    /// longer till's to delete.
    fn forget_ids(&self, fingerprint: &str) {
        let _ = self
            .rotator
            .ledger
            .forget_root_key_ids(self.name(), fingerprint);
    }

    /// The keys whose ids the ledger holds for this provider that an earlier rotation left
    /// and this one may act on: not those `keep` names, and not one recorded in the last
    /// [`UNFINISHED_AFTER`], which may be another rotation's, still running (said in a notice).
    fn leftovers(&self, keep: impl Fn(&RecordedKeyIds) -> bool) -> Vec<RecordedKeyIds> {
        let Ok(recorded) = self.rotator.ledger.recorded_key_ids(self.name()) else {
            return Vec::new();
        };
        let now = now_unix();
        let mut left = Vec::new();
        for row in recorded.into_iter().filter(|r| !keep(r)) {
            if row.recorded_at.saturating_add(UNFINISHED_AFTER.as_secs()) > now {
                self.notices.borrow_mut().push(Notice::LeftoverRecent {
                    key_id: row.ids.key_id,
                    provider: self.name().to_string(),
                });
            } else {
                left.push(row);
            }
        }
        left
    }

    /// Records the id of the key this rotation replaces, under the ledger's fingerprint for
    /// it, before anything changes: a rotation killed after the swap leaves it for `till
    /// doctor` to name and the next rotation to delete or set inactive. `hint` says what a
    /// failure here left.
    fn record_old_key_id(&self, key_id: &str, hint: &str) -> Result<RootKeyIds, Failure> {
        let ids = RootKeyIds {
            key_id: key_id.to_string(),
            service_account_id: None,
        };
        self.rotator
            .ledger
            .record_root_key_ids(self.name(), &self.old_meta.fingerprint, &ids, now_unix())
            .map_err(|e| {
                Failure::new(
                    Step::Find,
                    format!("cannot record the old key's id in the ledger: {e:#}"),
                )
                .hint(hint.to_string())
            })?;
        Ok(ids)
    }

    /// Deletes the keys an earlier rotation left at the provider when it was killed before its
    /// end: the key it made (not stored, or stored and put back) or the old key it had swapped
    /// out and not yet deleted. Those are the keys whose ids the ledger holds and whose
    /// fingerprint is not the stored key's. One recorded in the last [`UNFINISHED_AFTER`] may
    /// be another rotation's, still running, and is left alone. What this finds is told in
    /// notices; it never stops the rotation.
    async fn delete_leftovers(&self, api: &AdminApi<'_>, project: &str) {
        for left in self.leftovers(|left| left.fingerprint == self.old_meta.fingerprint) {
            let key_id = left.ids.key_id.clone();
            let provider = self.name().to_string();
            // Its service account (till's own) takes the key along; the key alone otherwise.
            let by_account = match &left.ids.service_account_id {
                Some(account) => api
                    .openai_delete_service_account(project, account)
                    .await
                    .is_ok(),
                None => false,
            };
            let deleted = if by_account {
                Ok(())
            } else {
                match api.openai_delete_key(project, &left.ids.key_id).await {
                    // Deleted by hand, or taken along by its service account before.
                    Err(admin::AdminError::Status { status: 404, .. }) => Ok(()),
                    other => other,
                }
            };
            match deleted {
                Ok(()) => {
                    self.forget_ids(&left.fingerprint);
                    self.notices
                        .borrow_mut()
                        .push(Notice::LeftoverDeleted { key_id, provider });
                }
                Err(e) => self.notices.borrow_mut().push(Notice::LeftoverNotDeleted {
                    key_id,
                    provider,
                    error: e.to_string(),
                }),
            }
        }
    }

    /// Sets inactive the old keys an earlier guided rotation swapped out and was killed before
    /// setting inactive (Anthropic): the keys whose ids the ledger holds, but for those of
    /// `keep_ids` and `keep_fingerprints` (the key stored now, by the ledger and in the store,
    /// and the key this rotation stores). As [`Self::delete_leftovers`], one recorded in the last
    /// [`UNFINISHED_AFTER`] is left alone, and what this finds is told in notices.
    async fn deactivate_leftovers(
        &self,
        api: &AdminApi<'_>,
        keep_ids: &[&str],
        keep_fingerprints: &[String],
    ) {
        let keep = |left: &RecordedKeyIds| {
            keep_fingerprints.contains(&left.fingerprint)
                || keep_ids.contains(&left.ids.key_id.as_str())
        };
        for left in self.leftovers(keep) {
            let key_id = left.ids.key_id.clone();
            let provider = self.name().to_string();
            match api.anthropic_deactivate(&left.ids.key_id).await {
                // Deleted by hand: nothing is left to set inactive.
                Ok(()) | Err(admin::AdminError::Status { status: 404, .. }) => {
                    self.forget_ids(&left.fingerprint);
                    self.notices
                        .borrow_mut()
                        .push(Notice::LeftoverDeactivated { key_id, provider });
                }
                Err(e) => self
                    .notices
                    .borrow_mut()
                    .push(Notice::LeftoverNotDeactivated {
                        key_id,
                        provider,
                        error: e.to_string(),
                    }),
            }
        }
    }

    /// Deletes a key this rotation created (its service account, which takes the key along;
    /// else the key alone) and adds to `failure` what happened.
    async fn abandon(
        &self,
        api: &AdminApi<'_>,
        project: &str,
        created: &CreatedKey,
        mut failure: Failure,
    ) -> Failure {
        let by_account = api
            .openai_delete_service_account(project, &created.service_account_id)
            .await;
        let Err(account_err) = by_account else {
            self.forget_ids(&fingerprint(created.value.expose_secret()));
            failure.message.push_str("; the new key was deleted again");
            return failure;
        };
        match api.openai_delete_key(project, &created.key_id).await {
            Ok(()) => {
                self.forget_ids(&fingerprint(created.value.expose_secret()));
                failure.message.push_str(&format!(
                    "; the new key was deleted again (its empty service account {} was not: {account_err})",
                    created.service_account_id
                ));
            }
            Err(key_err) => {
                failure.message.push_str(&format!(
                    "; the new key {} (service account {}) could not be deleted: {key_err}",
                    created.key_id, created.service_account_id
                ));
                failure.hint = Some(format!(
                    "delete key {} in project {project} at {}; the old key still works",
                    created.key_id,
                    self.provider.console()
                ));
                failure.leftover = Some(created.key_id.clone());
            }
        }
        failure
    }

    /// A key a person made: verify it, swap it in, and with an Anthropic admin key set the old
    /// one inactive.
    pub(super) async fn guided(
        &self,
        new_key: SecretString,
        deactivate_with: Option<&SecretString>,
    ) -> Result<Success, Failure> {
        let not_stored = format!(
            "the new key was not stored; check it, or delete it at {}",
            self.provider.console()
        );
        self.verify_new(&new_key, false)
            .await
            .map_err(|f| f.hint(not_stored.clone()))?;
        self.rotator.interrupt.check(Step::Verify)?;

        let api =
            deactivate_with.map(|key| AdminApi::new(&self.rotator.client, self.provider, key));
        let old_id = match &api {
            Some(api) => {
                self.rotator
                    .injected(Step::Find)
                    .map_err(|f| f.hint(not_stored.clone()))?;
                let listed = api.anthropic_list_keys().await.map_err(|e| {
                    Failure::new(
                        Step::Find,
                        format!("cannot list the organization's keys to find the old one: {e}"),
                    )
                    .hint(admin_hint(&e, self.name()))
                })?;
                let found =
                    admin::find_key(&listed, self.old_key.expose_secret()).map_err(|why| {
                        Failure::new(
                            Step::Find,
                            format!("cannot tell which key to set inactive: {why}"),
                        )
                        .hint(not_stored.clone())
                    })?;
                // Keys an earlier rotation left active, but never the key stored now, nor the
                // one about to be (a person may give back the key a killed rotation swapped
                // out, or a key the ledger does not name may be in the store).
                let keep_ids: Vec<&str> = std::iter::once(found.id.as_str())
                    .chain(
                        admin::find_key(&listed, new_key.expose_secret())
                            .ok()
                            .map(|k| k.id.as_str()),
                    )
                    .collect();
                let keep_fingerprints = [
                    self.old_meta.fingerprint.clone(),
                    fingerprint(self.old_key.expose_secret()),
                    fingerprint(new_key.expose_secret()),
                ];
                self.deactivate_leftovers(api, &keep_ids, &keep_fingerprints)
                    .await;
                self.record_old_key_id(&found.id, &not_stored)?;
                Some(found.id.clone())
            }
            None => None,
        };
        self.rotator.interrupt.check(Step::Find)?;

        // A commit stuck with the new key in use has its own hint (the new key is stored).
        let new_fp = self.commit(&new_key).map_err(|(f, undone)| {
            if undone {
                f.hint(not_stored.clone())
            } else {
                f
            }
        })?;

        let (Some(api), Some(old_id)) = (&api, &old_id) else {
            self.forget_old_ids();
            return Ok(Success {
                message: format!(
                    "rotated the {} key: {} -> {new_fp}",
                    self.name(),
                    self.old_meta.fingerprint
                ),
                new_fingerprint: new_fp,
                todo: Some(format!(
                    "delete the old key (fingerprint {}) at {}",
                    self.old_meta.fingerprint,
                    self.provider.console()
                )),
            });
        };
        let deactivated = match self.rotator.injected(Step::Deactivate) {
            Err(f) => Err(f.message),
            Ok(()) => api
                .anthropic_deactivate(old_id)
                .await
                .map_err(|e| e.to_string()),
        };
        if let Err(why) = deactivated {
            let message = format!("cannot set the old key {old_id} inactive: {why}");
            return Err(match self.undo_commit(false) {
                Ok(()) => Failure::new(
                    Step::Deactivate,
                    format!("{message}; the old key was put back"),
                )
                .hint(not_stored),
                Err(undo) => self.stuck(Step::Deactivate, &message, &undo).hint(format!(
                    "set the old key {old_id} inactive at {}",
                    self.provider.console()
                )),
            });
        }
        self.forget_old_ids();
        Ok(Success {
            message: format!(
                "rotated the {} key: {} -> {new_fp} (set the old key {old_id} inactive)",
                self.name(),
                self.old_meta.fingerprint
            ),
            new_fingerprint: new_fp,
            todo: None,
        })
    }
}
