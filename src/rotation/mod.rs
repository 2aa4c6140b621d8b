//! Rotation as a library: the state machine that replaces a provider's root key (through its
//! admin API, or with a key a person made) or the mint key, the per-provider plans, the admin
//! API clients, rollback, and which keys are due under `[rotation] max_age`.
//!
//! A rotation is all or nothing. The old key stays in the store until the new one is verified;
//! a failure at any later step puts the store and the ledger back as they were and deletes a
//! key the rotation created at the provider (or reports its id when that fails too). Every
//! attempt is recorded in the ledger's `rotations` table and returned as an [`Outcome`].
//! Running proxies notice the new key through the ledger's fingerprint on their next request.
//!
//! This module never prints, prompts or reads the environment, and never uses `commands`,
//! `cli` or `output`: where a person must act (paste a key, confirm `--due`) it asks a
//! [`Prompter`], and what is worth telling on the way goes to [`Prompter::notice`]. Nothing here
//! logs or records key material: keys are named by fingerprint, provider key id or hint.

pub mod admin;
mod due;
mod mint;
mod root;
#[cfg(test)]
mod tests;

use std::cell::OnceCell;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;

pub use self::due::{
    DueKeys, DueReport, KeyKind, KeyState, Mode, NeedsPerson, is_automatic, key_states,
};
use self::root::{Plan, Rotation};
use crate::config::Config;
use crate::ledger::{Ledger, RotationRow, fingerprint};
use crate::providers::{Provider, Providers};
use crate::secrets::{SecretStore, StoreKind, admin_secret_name, root_secret_name};
use crate::time::now_unix;

/// Waits before checking a freshly created key again: a provider may take a moment to accept
/// a key it has just issued.
const NEW_KEY_RETRY_DELAYS: &[Duration] = &[Duration::from_secs(1), Duration::from_secs(2)];

/// How long a key a rotation recorded (made, or meant to delete) is taken for a running
/// rotation's before the next rotation deletes it as one a killed rotation left.
const UNFINISHED_AFTER: Duration = Duration::from_secs(600);

/// The step a rotation reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// Reading what is stored, before anything is tried.
    Prepare,
    /// Finding the old key's id at the provider.
    Find,
    /// Creating the new key (OpenAI admin API, or a new mint key).
    Create,
    /// Checking the new key with the provider.
    Verify,
    /// Putting the new key in the store and the ledger.
    Store,
    /// Deleting the old key (OpenAI admin API).
    Delete,
    /// Setting the old key inactive (Anthropic admin API).
    Deactivate,
    /// Retiring the old mint key.
    Retire,
    /// Finished.
    Done,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Prepare => "prepare",
            Step::Find => "find",
            Step::Create => "create",
            Step::Verify => "verify",
            Step::Store => "store",
            Step::Delete => "delete",
            Step::Deactivate => "deactivate",
            Step::Retire => "retire",
            Step::Done => "done",
        }
    }

    /// The step named `name` (as [`Step::as_str`] writes it).
    pub fn parse(name: &str) -> Option<Self> {
        [
            Step::Prepare,
            Step::Find,
            Step::Create,
            Step::Verify,
            Step::Store,
            Step::Delete,
            Step::Deactivate,
            Step::Retire,
            Step::Done,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

/// How a key was rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Created and deleted through the provider's admin API.
    Admin,
    /// A person made the new key and pasted it.
    Guided,
    /// The mint key.
    Mint,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Admin => "admin",
            Method::Guided => "guided",
            Method::Mint => "mint",
        }
    }
}

/// The result of one rotation attempt, as printed (`--json`) and recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// A provider name, or `mint`.
    pub target: String,
    pub method: Method,
    pub ok: bool,
    /// The step that failed, or `done`.
    pub step: Step,
    pub message: String,
    /// What to do next (a failure's fix, or a person's remaining task after a guided swap).
    pub hint: Option<String>,
    pub old_fingerprint: Option<String>,
    pub new_fingerprint: Option<String>,
    /// A key this rotation created at the provider and could not delete.
    pub leftover_key_id: Option<String>,
}

/// Something worth telling a person while a rotation runs; it changes nothing about the
/// outcome. [`Notice::is_warning`] says which ones are warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The ledger lists an admin key the store lacks: the rotation falls back to a person.
    AdminKeyNotInStore { provider: String, store: StoreKind },
    /// An OpenAI admin key without `admin_project`: the rotation falls back to a person.
    NoAdminProject { provider: String },
    /// The old key was gone at the provider already; the rotation counts that as deleted.
    OldKeyAlreadyDeleted { key_id: String, provider: String },
    /// The old key is deleted but the service account till made for it is not.
    ServiceAccountLeft { account: String, error: String },
    /// The attempt could not be written to the ledger's `rotations` table.
    NotRecorded { error: String },
    /// A key an earlier rotation left at the provider when it was killed, now deleted.
    LeftoverDeleted { key_id: String, provider: String },
    /// A key an earlier rotation left at the provider, which could not be deleted now.
    LeftoverNotDeleted {
        key_id: String,
        provider: String,
        error: String,
    },
    /// An old key an earlier rotation swapped out and was killed before setting inactive, now
    /// set inactive.
    LeftoverDeactivated { key_id: String, provider: String },
    /// An old key an earlier rotation left active, which could not be set inactive now.
    LeftoverNotDeactivated {
        key_id: String,
        provider: String,
        error: String,
    },
    /// A key recorded by a rotation that may still be running, left alone.
    LeftoverRecent { key_id: String, provider: String },
}

impl Notice {
    pub fn is_warning(&self) -> bool {
        matches!(
            self,
            Notice::AdminKeyNotInStore { .. }
                | Notice::ServiceAccountLeft { .. }
                | Notice::NotRecorded { .. }
                | Notice::LeftoverNotDeleted { .. }
                | Notice::LeftoverNotDeactivated { .. }
                | Notice::LeftoverRecent { .. }
        )
    }
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::AdminKeyNotInStore { provider, store } => write!(
                f,
                "the {provider} admin key is in the ledger but not in the {store} store; rotating by hand"
            ),
            Notice::NoAdminProject { provider } => write!(
                f,
                "no admin_project under [providers.{provider}] in config.toml, so the admin key cannot make the new key; rotating by hand"
            ),
            Notice::OldKeyAlreadyDeleted { key_id, provider } => {
                write!(f, "the old key {key_id} was already deleted at {provider}")
            }
            Notice::ServiceAccountLeft { account, error } => write!(
                f,
                "the old key is deleted, but its service account {account} is not ({error})"
            ),
            Notice::NotRecorded { error } => {
                write!(f, "cannot record the rotation in the ledger: {error}")
            }
            Notice::LeftoverDeleted { key_id, provider } => write!(
                f,
                "deleted the key {key_id} at {provider}, left by a rotation that did not finish"
            ),
            Notice::LeftoverNotDeleted {
                key_id,
                provider,
                error,
            } => write!(
                f,
                "the key {key_id} at {provider}, left by a rotation that did not finish, could not be deleted ({error}); the next rotation tries again"
            ),
            Notice::LeftoverDeactivated { key_id, provider } => write!(
                f,
                "set the key {key_id} at {provider} inactive, left active by a rotation that did not finish"
            ),
            Notice::LeftoverNotDeactivated {
                key_id,
                provider,
                error,
            } => write!(
                f,
                "the key {key_id} at {provider}, left active by a rotation that did not finish, could not be set inactive ({error}); the next rotation with the admin key tries again"
            ),
            Notice::LeftoverRecent { key_id, provider } => write!(
                f,
                "the key {key_id} at {provider} was recorded by a rotation that may still be running, so it was left alone; if none is, the next rotation deletes it (or sets it inactive)"
            ),
        }
    }
}

/// Where a rotation meets a person. The command implements it with prompts; tests with canned
/// answers.
pub trait Prompter {
    /// The new key for a guided rotation of `provider`, made by a person. Asked before anything
    /// changes; an `Err` ends the rotation with nothing changed and nothing recorded.
    fn new_key(&mut self, provider: &Provider) -> anyhow::Result<SecretString>;
    /// Whether `--due` may rotate the keys named (not asked with `--yes`).
    fn confirm_due(&mut self, names: &[&str]) -> anyhow::Result<bool>;
    /// Something worth telling, as it happens.
    fn notice(&mut self, notice: &Notice);
    /// One rotation of `--due` finished; the next has not begun.
    fn finished(&mut self, _outcome: &Outcome) {}
}

/// Why a rotation was not even tried. None of these changed anything or was recorded.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("no {provider} key is stored, so there is nothing to rotate")]
    NothingStored { provider: String },
    #[error("the {provider} key is in the ledger but not in the {store} store")]
    NotInStore { provider: String, store: StoreKind },
    /// A guided rotation where nobody can be asked (`--due`).
    #[error("rotating the {provider} key needs a person")]
    NeedsPerson { provider: String },
    #[error("that is the {provider} key already stored ({fingerprint})")]
    SameKey {
        provider: String,
        fingerprint: String,
        console_url: String,
    },
    /// The [`Prompter`] gave no answer; its error as it gave it.
    #[error("{0:#}")]
    Input(anyhow::Error),
    /// The ledger, the store or the provider table could not be read.
    #[error("{0:#}")]
    Unavailable(anyhow::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

impl RotateError {
    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            RotateError::NothingStored { provider } => {
                Some(format!("add one: till add {provider}"))
            }
            RotateError::NotInStore { provider, .. } => {
                Some(format!("store it again: till add {provider}"))
            }
            RotateError::NeedsPerson { provider } => Some(format!("run `till rotate {provider}`")),
            RotateError::SameKey { console_url, .. } => {
                Some(format!("create a new key at {console_url}"))
            }
            RotateError::Input(e) | RotateError::Unavailable(e) => crate::secrets::hint(e),
            RotateError::Runtime(_) => None,
        }
    }
}

/// Why a rotation stopped. By the time one exists, everything has been put back.
#[derive(Debug)]
struct Failure {
    step: Step,
    message: String,
    hint: Option<String>,
    leftover: Option<String>,
}

impl Failure {
    fn new(step: Step, message: impl Into<String>) -> Self {
        Self {
            step,
            message: message.into(),
            hint: None,
            leftover: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// A finished rotation.
struct Success {
    message: String,
    new_fingerprint: String,
    /// What a person still has to do.
    todo: Option<String>,
}

/// Ctrl-C between steps: a rotation checks it after each step, so an interrupt before the swap
/// undoes what was done, and one after it lets the rotation finish. Cloning shares the flag.
#[derive(Clone, Default)]
pub struct Interrupt {
    /// Whether to catch SIGINT at all (a command does; tests set the flag with [`Self::raise`]).
    catch: bool,
    listening: Arc<AtomicBool>,
    seen: Arc<AtomicBool>,
}

impl Interrupt {
    /// Marks an interrupt, as Ctrl-C would.
    pub fn raise(&self) {
        self.seen.store(true, Ordering::SeqCst);
    }

    pub fn seen(&self) -> bool {
        self.seen.load(Ordering::SeqCst)
    }

    /// Starts catching Ctrl-C and SIGTERM (once, and only when `catch`); from then on they no
    /// longer end the process. Called after any prompt, so an interrupt at a prompt ends till at once.
    fn listen(&self, runtime: &tokio::runtime::Runtime) {
        if !self.catch || self.listening.swap(true, Ordering::SeqCst) {
            return;
        }
        let seen = self.seen.clone();
        // Registered here, not at the task's first poll, so no Ctrl-C slips past.
        let _entered = runtime.enter();
        // SIGTERM (what `timeout`, cron and systemd send) as Ctrl-C: the rotation winds down
        // and puts back or deletes what it made, rather than leaving a key live unknown.
        #[cfg(unix)]
        for kind in [
            tokio::signal::unix::SignalKind::interrupt(),
            tokio::signal::unix::SignalKind::terminate(),
        ] {
            if let Ok(mut signal) = tokio::signal::unix::signal(kind) {
                let seen = seen.clone();
                runtime.spawn(async move {
                    if signal.recv().await.is_some() {
                        seen.store(true, Ordering::SeqCst);
                    }
                });
            }
        }
        #[cfg(not(unix))]
        runtime.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                seen.store(true, Ordering::SeqCst);
            }
        });
    }

    /// Resolves once an interrupt is seen (looked at every 50 ms): what a wait on the
    /// provider races, so Ctrl-C does not wait out its timeout.
    async fn raised(&self) {
        while !self.seen() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn check(&self, step: Step) -> Result<(), Failure> {
        if self.seen() {
            return Err(Self::failure(step));
        }
        Ok(())
    }

    /// How an interrupt at `step` ends a rotation.
    fn failure(step: Step) -> Failure {
        Failure::new(step, "interrupted").hint("nothing was changed")
    }
}

/// Opens the secrets store when a rotation first needs it (`--due` with nothing due, or a
/// provider with no key, never touches it).
pub type OpenStore<'a> = Box<dyn Fn() -> anyhow::Result<Box<dyn SecretStore>> + 'a>;

/// Runs rotations against one ledger, store and configuration.
pub struct Rotator<'a> {
    ledger: &'a Ledger,
    providers: &'a Providers,
    config: &'a Config,
    open_store: OpenStore<'a>,
    store: OnceCell<Box<dyn SecretStore>>,
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    interrupt: Interrupt,
    retry_delays: Vec<Duration>,
    fail_at: Option<Step>,
    hang_at: Option<Step>,
}

impl<'a> Rotator<'a> {
    pub fn new(
        ledger: &'a Ledger,
        providers: &'a Providers,
        config: &'a Config,
        open_store: OpenStore<'a>,
    ) -> Result<Self, RotateError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(RotateError::Runtime)?;
        Ok(Self {
            ledger,
            providers,
            config,
            open_store,
            store: OnceCell::new(),
            runtime,
            client: crate::upstream::client(Duration::from_secs(10)),
            interrupt: Interrupt::default(),
            retry_delays: NEW_KEY_RETRY_DELAYS.to_vec(),
            fail_at: None,
            hang_at: None,
        })
    }

    /// Catch Ctrl-C once a rotation is under way (see [`Interrupt`]).
    pub fn catch_interrupts(mut self) -> Self {
        self.interrupt.catch = true;
        self
    }

    /// The seam for failures no real fault gives cheaply: `step` fails as if the provider or
    /// the store had refused, after everything before it succeeded.
    pub fn fail_at(mut self, step: Option<Step>) -> Self {
        self.fail_at = step;
        self
    }

    /// The seam for a kill at a given point (`kill -9`, a power cut): `step` never begins, and
    /// the rotation waits there for whoever is testing it to kill the process.
    pub fn hang_at(mut self, step: Option<Step>) -> Self {
        self.hang_at = step;
        self
    }

    /// How long to wait before checking a key till just created again, once per retry.
    pub fn retry_delays(mut self, delays: Vec<Duration>) -> Self {
        self.retry_delays = delays;
        self
    }

    pub fn interrupt(&self) -> &Interrupt {
        &self.interrupt
    }

    fn store(&self) -> Result<&dyn SecretStore, RotateError> {
        if let Some(store) = self.store.get() {
            return Ok(store.as_ref());
        }
        let store = (self.open_store)().map_err(RotateError::Unavailable)?;
        Ok(self.store.get_or_init(|| store).as_ref())
    }

    /// Fails `step` when the seam says so.
    fn injected(&self, step: Step) -> Result<(), Failure> {
        if self.hang_at == Some(step) {
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        if self.fail_at == Some(step) {
            return Err(Failure::new(
                step,
                format!("failed on purpose (injected at `{}`)", step.as_str()),
            ));
        }
        Ok(())
    }

    /// Rotates `provider`'s root key, asking `prompter` for the new key when a person must make
    /// it. `Err` is for problems found before anything was tried (no key stored, the person
    /// gave no key): those change nothing and are not recorded.
    pub fn rotate_provider(
        &self,
        provider: &Provider,
        prompter: &mut dyn Prompter,
    ) -> Result<Outcome, RotateError> {
        self.rotate_root(provider, prompter, true)
    }

    /// The shared body of a provider rotation; unless a `person` can be asked for a key, only
    /// automatic plans run.
    fn rotate_root(
        &self,
        provider: &Provider,
        prompter: &mut dyn Prompter,
        person: bool,
    ) -> Result<Outcome, RotateError> {
        let Some(old_meta) = self
            .ledger
            .root_key(&provider.name)
            .map_err(RotateError::Unavailable)?
        else {
            return Err(RotateError::NothingStored {
                provider: provider.name.clone(),
            });
        };
        let store = self.store()?;
        let old_key = store
            .get(&root_secret_name(&provider.name))
            .map_err(|e| RotateError::Unavailable(e.into()))?
            .ok_or_else(|| RotateError::NotInStore {
                provider: provider.name.clone(),
                store: store.kind(),
            })?;
        let mut notices = Vec::new();
        let plan = self.plan(store, provider, &mut notices)?;
        notices.drain(..).for_each(|n| prompter.notice(&n));
        let (method, new_key) = match (&plan, person) {
            (Plan::Admin { .. }, _) => (Method::Admin, None),
            (Plan::Guided { .. }, false) => {
                return Err(RotateError::NeedsPerson {
                    provider: provider.name.clone(),
                });
            }
            (Plan::Guided { .. }, true) => {
                // Asked before listening for Ctrl-C: an interrupt at the prompt ends till at
                // once, and nothing has changed yet.
                let key = prompter.new_key(provider).map_err(RotateError::Input)?;
                if fingerprint(key.expose_secret()) == old_meta.fingerprint {
                    return Err(RotateError::SameKey {
                        provider: provider.name.clone(),
                        fingerprint: old_meta.fingerprint,
                        console_url: provider.console().to_string(),
                    });
                }
                (Method::Guided, Some(key))
            }
        };
        let old_fp = old_meta.fingerprint.clone();
        let rotation = Rotation {
            rotator: self,
            store,
            provider,
            old_meta,
            old_key,
            notices: Default::default(),
        };
        self.interrupt.listen(&self.runtime);
        let result = self.runtime.block_on(async {
            match plan {
                Plan::Admin { key, project } => rotation.automatic(&key, &project).await,
                Plan::Guided { deactivate_with } => {
                    let new_key = new_key.expect("a guided rotation was given a key");
                    rotation.guided(new_key, deactivate_with.as_ref()).await
                }
            }
        });
        notices.extend(rotation.notices.take());
        let outcome = self.finish(&provider.name, method, Some(old_fp), result, &mut notices);
        notices.iter().for_each(|n| prompter.notice(n));
        Ok(outcome)
    }

    /// How `provider`'s key gets rotated here.
    fn plan(
        &self,
        store: &dyn SecretStore,
        provider: &Provider,
        notices: &mut Vec<Notice>,
    ) -> Result<Plan, RotateError> {
        use self::admin::AdminKind;
        let kind = admin::admin_kind(provider);
        let recorded = match kind {
            Some(_) => self
                .ledger
                .admin_key(&provider.name)
                .map_err(RotateError::Unavailable)?
                .is_some(),
            None => false,
        };
        let admin_key = if recorded {
            let key = store
                .get(&admin_secret_name(&provider.name))
                .map_err(|e| RotateError::Unavailable(e.into()))?;
            if key.is_none() {
                notices.push(Notice::AdminKeyNotInStore {
                    provider: provider.name.clone(),
                    store: store.kind(),
                });
            }
            key
        } else {
            None
        };
        let guided = |deactivate_with| Plan::Guided { deactivate_with };
        Ok(match (kind, admin_key) {
            (Some(AdminKind::OpenaiProject), Some(key)) => {
                match admin::admin_project(self.config, &provider.name) {
                    Some(project) => Plan::Admin { key, project },
                    None => {
                        notices.push(Notice::NoAdminProject {
                            provider: provider.name.clone(),
                        });
                        guided(None)
                    }
                }
            }
            (Some(AdminKind::AnthropicOrg), Some(key)) => guided(Some(key)),
            _ => guided(None),
        })
    }

    /// Records an attempt and turns it into an [`Outcome`].
    fn finish(
        &self,
        target: &str,
        method: Method,
        old_fingerprint: Option<String>,
        result: Result<Success, Failure>,
        notices: &mut Vec<Notice>,
    ) -> Outcome {
        let outcome = match result {
            Ok(s) => Outcome {
                target: target.to_string(),
                method,
                ok: true,
                step: Step::Done,
                message: s.message,
                hint: s.todo,
                old_fingerprint,
                new_fingerprint: Some(s.new_fingerprint),
                leftover_key_id: None,
            },
            Err(f) => Outcome {
                target: target.to_string(),
                method,
                ok: false,
                step: f.step,
                message: format!(
                    "rotating {target} failed at `{}`: {}",
                    f.step.as_str(),
                    f.message
                ),
                hint: f.hint,
                old_fingerprint,
                new_fingerprint: None,
                leftover_key_id: f.leftover,
            },
        };
        let row = RotationRow {
            at: now_unix(),
            target: outcome.target.clone(),
            method: method.as_str().to_string(),
            ok: outcome.ok,
            step: outcome.step.as_str().to_string(),
            message: outcome.message.clone(),
            old_fingerprint: outcome.old_fingerprint.clone(),
            new_fingerprint: outcome.new_fingerprint.clone(),
            leftover_key_id: outcome.leftover_key_id.clone(),
        };
        if let Err(e) = self.ledger.record_rotation(&row) {
            notices.push(Notice::NotRecorded {
                error: format!("{e:#}"),
            });
        }
        outcome
    }
}

/// The hint for an admin API failure.
fn admin_hint(e: &admin::AdminError, provider: &str) -> String {
    if e.is_auth() {
        format!(
            "check the admin key, or store a new one: till add {provider} --admin; nothing was changed"
        )
    } else {
        "the old key still works; try again later".to_string()
    }
}
