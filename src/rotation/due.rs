//! Key ages and `[rotation] max_age`: every stored key's state (what `till status` shows),
//! which keys are due, and `--due`, which rotates the due keys that need no person and lists
//! the rest. The states come from the ledger alone: no secret is read to compute them.

use std::time::Duration;

use serde::Serialize;

use super::{Failure, Method, Outcome, Prompter, RotateError, Rotator, Step, admin};
use crate::config::Config;
use crate::ledger::Ledger;
use crate::providers::{Provider, Providers};

/// What kind of key a state describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    Root,
    Admin,
    Mint,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Root => "root",
            KeyKind::Admin => "admin",
            KeyKind::Mint => "mint",
        }
    }
}

/// How a key gets rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `till rotate` needs no person (OpenAI with an admin key and project; the mint key).
    Automatic,
    /// A person makes the new key (`till rotate PROVIDER`).
    Guided,
    /// Not rotated by `till rotate` (admin keys: store a new one with `till add … --admin`;
    /// retired mint keys).
    None,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Automatic => "automatic",
            Mode::Guided => "guided",
            Mode::None => "-",
        }
    }
}

/// One key's age and rotation state.
#[derive(Debug, Clone, Serialize)]
pub struct KeyState {
    pub kind: KeyKind,
    /// The provider, or `mint`.
    pub name: String,
    /// The fingerprint, or the mint key's kid.
    pub id: String,
    #[serde(serialize_with = "crate::time::json::serialize")]
    pub added_at: u64,
    #[serde(serialize_with = "crate::time::json::option::serialize")]
    pub rotated_at: Option<u64>,
    /// Seconds since the key was stored (its rotation time, else when it was added).
    pub age_secs: u64,
    /// Older than `[rotation] max_age` (never for admin keys and retired mint keys).
    pub due: bool,
    pub rotation: Mode,
    /// A retired mint key: when the keys it signed stop working.
    #[serde(serialize_with = "crate::time::json::option::serialize")]
    pub valid_until: Option<u64>,
}

/// Whether rotating `provider` runs without a person: an OpenAI admin key is recorded and
/// `admin_project` names the project. Reads the ledger only (no secrets store).
pub fn is_automatic(config: &Config, ledger: &Ledger, provider: &Provider) -> anyhow::Result<bool> {
    Ok(
        admin::admin_kind(provider) == Some(admin::AdminKind::OpenaiProject)
            && admin::admin_project(config, &provider.name).is_some()
            && ledger.admin_key(&provider.name)?.is_some(),
    )
}

/// Every stored key's state at `now`. Mint keys whose grace has ended are left out.
pub fn key_states(
    config: &Config,
    providers: &Providers,
    ledger: &Ledger,
    now: u64,
) -> anyhow::Result<Vec<KeyState>> {
    let max_age = config.rotation.max_age.map(|d| d.0.as_secs());
    let is_due = |age: u64| max_age.is_some_and(|max| age >= max);
    let mut out = Vec::new();
    for meta in ledger.root_keys()? {
        let age = now.saturating_sub(meta.rotated_at.unwrap_or(meta.added_at));
        let automatic = match providers.get(&meta.provider) {
            Some(p) => is_automatic(config, ledger, p)?,
            None => false,
        };
        out.push(KeyState {
            kind: KeyKind::Root,
            name: meta.provider,
            id: meta.fingerprint,
            added_at: meta.added_at,
            rotated_at: meta.rotated_at,
            age_secs: age,
            due: is_due(age),
            rotation: if automatic {
                Mode::Automatic
            } else {
                Mode::Guided
            },
            valid_until: None,
        });
    }
    for meta in ledger.admin_keys()? {
        let age = now.saturating_sub(meta.rotated_at.unwrap_or(meta.added_at));
        out.push(KeyState {
            kind: KeyKind::Admin,
            name: meta.provider,
            id: meta.fingerprint,
            added_at: meta.added_at,
            rotated_at: meta.rotated_at,
            age_secs: age,
            due: false,
            rotation: Mode::None,
            valid_until: None,
        });
    }
    for meta in ledger.mint_keys()? {
        if meta.valid_until.is_some_and(|until| until <= now) {
            continue;
        }
        let age = now.saturating_sub(meta.created_at);
        let current = meta.retired_at.is_none();
        out.push(KeyState {
            kind: KeyKind::Mint,
            name: "mint".to_string(),
            id: meta.kid,
            added_at: meta.created_at,
            rotated_at: None,
            age_secs: age,
            due: current && is_due(age),
            rotation: if current { Mode::Automatic } else { Mode::None },
            valid_until: meta.valid_until,
        });
    }
    Ok(out)
}

/// A due key only a person can rotate, as `--due` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct NeedsPerson {
    pub target: String,
    pub age_secs: u64,
    pub command: String,
}

/// The keys past `[rotation] max_age`, split by who can rotate them.
#[derive(Debug, Clone)]
pub struct DueKeys {
    /// Rotated by `--due` without a person, in `till status` order.
    pub automatic: Vec<KeyState>,
    pub needs_person: Vec<NeedsPerson>,
}

/// What `--due` did.
#[derive(Debug)]
pub struct DueReport {
    /// The person said no: nothing was tried.
    pub declined: bool,
    /// One per key tried, in order.
    pub outcomes: Vec<Outcome>,
    /// Ctrl-C stopped the run; the keys after the last outcome were not tried.
    pub interrupted: bool,
}

impl Rotator<'_> {
    /// The keys due at `now`.
    pub fn due_keys(&self, now: u64) -> Result<DueKeys, RotateError> {
        let states = key_states(self.config, self.providers, self.ledger, now)
            .map_err(RotateError::Unavailable)?;
        let (automatic, manual): (Vec<_>, Vec<_>) = states
            .into_iter()
            .filter(|s| s.due)
            .partition(|s| s.rotation == Mode::Automatic);
        let needs_person = manual
            .into_iter()
            .map(|s| NeedsPerson {
                command: format!("till rotate {}", s.name),
                target: s.name,
                age_secs: s.age_secs,
            })
            .collect();
        Ok(DueKeys {
            automatic,
            needs_person,
        })
    }

    /// Rotates `due.automatic`, one after the other, after asking `prompter` unless `yes`.
    /// A key that cannot even be tried is recorded as failed at `prepare`; Ctrl-C stops the
    /// run after the rotation under way.
    pub fn rotate_due(
        &self,
        due: &DueKeys,
        grace: Duration,
        yes: bool,
        prompter: &mut dyn Prompter,
    ) -> Result<DueReport, RotateError> {
        let mut report = DueReport {
            declined: false,
            outcomes: Vec::new(),
            interrupted: false,
        };
        if !due.automatic.is_empty() && !yes {
            let names: Vec<&str> = due.automatic.iter().map(|s| s.name.as_str()).collect();
            if !prompter.confirm_due(&names).map_err(RotateError::Input)? {
                report.declined = true;
                return Ok(report);
            }
        }
        self.interrupt.listen(&self.runtime);
        if due.automatic.is_empty() {
            return Ok(report);
        }
        // Opened up front, so a store that cannot open fails the run before any attempt.
        self.store()?;
        for state in &due.automatic {
            let outcome = if state.kind == KeyKind::Mint {
                self.rotate_mint(grace, prompter)?
            } else {
                let provider = self
                    .providers
                    .require(&state.name)
                    .map_err(|e| RotateError::Unavailable(e.into()))?;
                match self.rotate_root(provider, prompter, false) {
                    Ok(outcome) => outcome,
                    // Nothing was tried (the admin key went missing from the store, …); still
                    // an attempt the ledger should show.
                    Err(e) => {
                        let mut failure = Failure::new(Step::Prepare, e.to_string());
                        failure.hint = e.hint();
                        let mut notices = Vec::new();
                        let outcome = self.finish(
                            &provider.name,
                            Method::Admin,
                            Some(state.id.clone()),
                            Err(failure),
                            &mut notices,
                        );
                        notices.iter().for_each(|n| prompter.notice(n));
                        outcome
                    }
                }
            };
            prompter.finished(&outcome);
            report.outcomes.push(outcome);
            if self.interrupt.seen() {
                report.interrupted = true;
                break;
            }
        }
        Ok(report)
    }
}
