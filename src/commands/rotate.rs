//! `till rotate`: replace a provider's root key (through its admin API, or guided by a person)
//! or the mint key; `--due` does it for every key older than `[rotation] max_age`.
//!
//! A rotation is all or nothing. The old key stays in the store until the new one is verified;
//! a failure at any later step puts the store and the ledger back as they were and deletes a
//! key the rotation created at the provider (or reports its id when that fails too). Every
//! attempt is recorded in the ledger's `rotations` table. Running proxies notice the new key
//! through the ledger's fingerprint on their next request. Nothing here prints, logs or
//! records key material: keys are named by fingerprint, provider key id or hint.

mod admin;

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;

use self::admin::{AdminApi, CreatedKey};
use crate::cli::RotateArgs;
use crate::commands::{Ctx, admin_secret_name, root_secret_name};
use crate::error::UserError;
use crate::ledger::{Ledger, RootKeyIds, RootKeyMeta, RotationRow, fingerprint};
use crate::providers::{ApiFamily, Provider};
use crate::secrets::SecretStore;
use crate::time::{now_unix, rfc3339};
use crate::upstream::Verdict;

/// Waits before checking a freshly created key again: a provider may take a moment to accept
/// a key it has just issued.
const NEW_KEY_RETRY_DELAYS: &[Duration] = &[Duration::from_secs(1), Duration::from_secs(2)];

/// Which admin API an admin key drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminKind {
    /// OpenAI: service accounts and API keys of one project (`admin_project`).
    OpenaiProject,
    /// Anthropic: the organization's API keys (list, set inactive).
    AnthropicOrg,
}

/// The admin API till uses for `provider`, if any.
pub fn admin_kind(provider: &Provider) -> Option<AdminKind> {
    match (provider.name.as_str(), provider.api) {
        ("openai", ApiFamily::Openai) => Some(AdminKind::OpenaiProject),
        ("anthropic", ApiFamily::Anthropic) => Some(AdminKind::AnthropicOrg),
        _ => None,
    }
}

/// Where a person makes an admin key.
pub fn admin_console_url(kind: AdminKind) -> &'static str {
    match kind {
        AdminKind::OpenaiProject => "https://platform.openai.com/settings/organization/admin-keys",
        AdminKind::AnthropicOrg => "https://console.anthropic.com/settings/admin-keys",
    }
}

/// `[providers.NAME] admin_project` from config.toml.
pub fn admin_project(ctx: &Ctx, provider: &str) -> Option<String> {
    ctx.config
        .providers
        .get(provider)
        .and_then(|o| o.admin_project.clone())
}

/// Whether `till rotate PROVIDER` runs without a person: an OpenAI admin key is recorded and
/// `admin_project` names the project. Reads the ledger only (no secrets store).
pub fn is_automatic(ctx: &Ctx, ledger: &Ledger, provider: &Provider) -> anyhow::Result<bool> {
    Ok(admin_kind(provider) == Some(AdminKind::OpenaiProject)
        && admin_project(ctx, &provider.name).is_some()
        && ledger.admin_key(&provider.name)?.is_some())
}

/// Checks an admin key with a harmless listing call (for `till add PROVIDER --admin`).
pub fn verify_admin_key(
    provider: &Provider,
    kind: AdminKind,
    project: Option<&str>,
    key: &SecretString,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = crate::upstream::client(Duration::from_secs(10));
    let api = AdminApi::new(&client, provider, key);
    let result = runtime.block_on(async {
        match kind {
            AdminKind::OpenaiProject => {
                let Some(project) = project else {
                    return Ok(Err(UserError::usage(
                        "an OpenAI admin key can only be checked against a project",
                    )
                    .hint(format!(
                        "set admin_project = \"proj_…\" under [providers.{}] in config.toml, or store it unchecked with --no-verify",
                        provider.name
                    ))));
                };
                api.openai_list_keys(project).await.map(|_| Ok(()))
            }
            AdminKind::AnthropicOrg => api.anthropic_list_keys().await.map(|_| Ok(())),
        }
    });
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(usage)) => Err(usage.into()),
        Err(e) if e.is_auth() => Err(UserError::runtime(format!(
            "{} did not accept the admin key ({e}); nothing was stored",
            provider.name
        ))
        .hint(format!("use an admin key from {}", admin_console_url(kind)))
        .into()),
        Err(e) => Err(UserError::runtime(format!(
            "could not check the admin key: {e}; nothing was stored"
        ))
        .hint(
            "check [providers] base_url and admin_project, or store it unchecked with --no-verify",
        )
        .into()),
    }
}

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
    fn as_str(self) -> &'static str {
        match self {
            Method::Admin => "admin",
            Method::Guided => "guided",
            Method::Mint => "mint",
        }
    }
}

/// The result of one rotation, as printed (`--json`) and recorded.
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

/// Test hook: with `TILL_TEST_FAIL_STEP=STEP` (debug builds only) that step fails as if the
/// provider or the store had refused, so tests can reach failures that no real fault gives
/// cheaply. Release builds never read the variable.
fn injected(step: Step) -> Result<(), Failure> {
    #[cfg(debug_assertions)]
    if std::env::var(crate::env::EnvVars::TILL_TEST_FAIL_STEP).is_ok_and(|v| v == step.as_str()) {
        return Err(Failure::new(
            step,
            format!(
                "failed on purpose ({}={})",
                crate::env::EnvVars::TILL_TEST_FAIL_STEP,
                step.as_str()
            ),
        ));
    }
    let _ = step;
    Ok(())
}

pub fn run(ctx: &Ctx, args: &RotateArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if args.due {
        return due(ctx, args, &runtime);
    }
    let ledger = ctx.ledger()?;
    let outcome = if args.mint {
        let store = ctx.store()?;
        rotate_mint(&ledger, store.as_ref(), args.grace.unwrap_or_default())
    } else {
        let name = args
            .provider
            .as_deref()
            .expect("clap requires a provider, --mint or --due");
        let provider = ctx.providers.require(name)?.clone();
        rotate_provider(
            ctx,
            &ledger,
            &provider,
            Input::Person(args.from_env.as_deref()),
            &runtime,
            &Interrupt::default(),
        )?
    };
    if args.json {
        crate::output::json(&outcome)?;
    }
    report(&outcome);
    Ok(if outcome.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Where the new key of a guided rotation comes from.
enum Input<'a> {
    /// A prompt, stdin, or the named environment variable.
    Person(Option<&'a str>),
    /// Nobody: only automatic rotations may run (`--due`).
    Nobody,
}

/// Prints an outcome's message and hint on stderr.
fn report(outcome: &Outcome) {
    if outcome.ok {
        crate::output::note(&format!("till: {}", outcome.message));
        if let Some(todo) = &outcome.hint {
            crate::output::note(&format!("next: {todo}"));
        }
    } else {
        crate::output::error(&outcome.message, outcome.hint.as_deref());
    }
}

/// Records an attempt and turns it into an [`Outcome`].
fn finish(
    ledger: &Ledger,
    target: &str,
    method: Method,
    old_fingerprint: Option<String>,
    result: Result<Success, Failure>,
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
    if let Err(e) = ledger.record_rotation(&row) {
        crate::output::warn(&format!("cannot record the rotation in the ledger: {e:#}"));
    }
    outcome
}

/// Watches for Ctrl-C once any prompt is over: a rotation checks it between steps, so an
/// interrupt before the swap undoes what was done, and one after it lets the rotation finish.
#[derive(Clone, Default)]
struct Interrupt {
    listening: Arc<AtomicBool>,
    seen: Arc<AtomicBool>,
}

impl Interrupt {
    /// Starts listening (once); from then on Ctrl-C no longer ends the process.
    fn listen(&self, runtime: &tokio::runtime::Runtime) {
        if self.listening.swap(true, Ordering::SeqCst) {
            return;
        }
        let seen = self.seen.clone();
        // Registered here, not at the task's first poll, so no Ctrl-C slips past.
        let _entered = runtime.enter();
        #[cfg(unix)]
        if let Ok(mut sigint) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        {
            runtime.spawn(async move {
                if sigint.recv().await.is_some() {
                    seen.store(true, Ordering::SeqCst);
                }
            });
        }
        #[cfg(not(unix))]
        runtime.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                seen.store(true, Ordering::SeqCst);
            }
        });
    }

    fn seen(&self) -> bool {
        self.seen.load(Ordering::SeqCst)
    }

    fn check(&self, step: Step) -> Result<(), Failure> {
        if self.seen() {
            return Err(Failure::new(step, "interrupted").hint("nothing was changed"));
        }
        Ok(())
    }
}

/// What one root-key rotation works with.
struct Rotation<'a> {
    ledger: &'a Ledger,
    store: &'a dyn SecretStore,
    provider: &'a Provider,
    client: reqwest::Client,
    old_meta: RootKeyMeta,
    old_key: SecretString,
    interrupt: &'a Interrupt,
}

/// How a provider's key gets rotated here.
enum Plan {
    /// OpenAI with an admin key and a project: create, verify, store, delete.
    Admin { key: SecretString, project: String },
    /// A person makes the key; with an Anthropic admin key the old one is then set inactive.
    Guided {
        deactivate_with: Option<SecretString>,
    },
}

fn plan(
    ctx: &Ctx,
    ledger: &Ledger,
    store: &dyn SecretStore,
    provider: &Provider,
) -> anyhow::Result<Plan> {
    let kind = admin_kind(provider);
    let admin_key = match kind {
        Some(_) if ledger.admin_key(&provider.name)?.is_some() => {
            let key = store.get(&admin_secret_name(&provider.name))?;
            if key.is_none() {
                crate::output::warn(&format!(
                    "the {} admin key is in the ledger but not in the {} store; rotating by hand",
                    provider.name,
                    store.kind()
                ));
            }
            key
        }
        _ => None,
    };
    Ok(match (kind, admin_key) {
        (Some(AdminKind::OpenaiProject), Some(key)) => match admin_project(ctx, &provider.name) {
            Some(project) => Plan::Admin { key, project },
            None => {
                crate::output::note(&format!(
                    "till: no admin_project under [providers.{}] in config.toml, so the admin key cannot make the new key; rotating by hand",
                    provider.name
                ));
                Plan::Guided {
                    deactivate_with: None,
                }
            }
        },
        (Some(AdminKind::AnthropicOrg), Some(key)) => Plan::Guided {
            deactivate_with: Some(key),
        },
        _ => Plan::Guided {
            deactivate_with: None,
        },
    })
}

/// Rotates one provider's root key. `Err` is for problems found before anything was tried
/// (no key stored, the person gave no key): those change nothing and are not recorded.
fn rotate_provider(
    ctx: &Ctx,
    ledger: &Ledger,
    provider: &Provider,
    input: Input<'_>,
    runtime: &tokio::runtime::Runtime,
    interrupt: &Interrupt,
) -> anyhow::Result<Outcome> {
    let Some(old_meta) = ledger.root_key(&provider.name)? else {
        return Err(UserError::usage(format!(
            "no {} key is stored, so there is nothing to rotate",
            provider.name
        ))
        .hint(format!("add one: till add {}", provider.name))
        .into());
    };
    let store = ctx.store()?;
    let old_key = store
        .get(&root_secret_name(&provider.name))?
        .ok_or_else(|| {
            UserError::runtime(format!(
                "the {} key is in the ledger but not in the {} store",
                provider.name,
                store.kind()
            ))
            .hint(format!("store it again: till add {}", provider.name))
        })?;
    let plan = plan(ctx, ledger, store.as_ref(), provider)?;
    let (method, new_key) = match (&plan, input) {
        (Plan::Admin { .. }, _) => (Method::Admin, None),
        (Plan::Guided { .. }, Input::Nobody) => {
            return Err(UserError::runtime(format!(
                "rotating the {} key needs a person",
                provider.name
            ))
            .hint(format!("run `till rotate {}`", provider.name))
            .into());
        }
        (Plan::Guided { .. }, Input::Person(from_env)) => {
            // Read before listening for Ctrl-C: an interrupt at the prompt ends till at once,
            // and nothing has changed yet.
            let key = read_new_key(ctx, provider, from_env)?;
            if fingerprint(key.expose_secret()) == old_meta.fingerprint {
                return Err(UserError::usage(format!(
                    "that is the {} key already stored ({})",
                    provider.name, old_meta.fingerprint
                ))
                .hint(format!("create a new key at {}", provider.console_url))
                .into());
            }
            (Method::Guided, Some(key))
        }
    };
    let rotation = Rotation {
        ledger,
        store: store.as_ref(),
        provider,
        client: crate::upstream::client(Duration::from_secs(10)),
        old_meta,
        old_key,
        interrupt,
    };
    interrupt.listen(runtime);
    let old_fp = rotation.old_meta.fingerprint.clone();
    let result = runtime.block_on(async {
        match plan {
            Plan::Admin { key, project } => rotation.automatic(&key, &project).await,
            Plan::Guided { deactivate_with } => {
                let new_key = new_key.expect("a guided rotation read a key");
                rotation.guided(new_key, deactivate_with.as_ref()).await
            }
        }
    });
    Ok(finish(ledger, &provider.name, method, Some(old_fp), result))
}

/// The new key from a person: where to make it, then a hidden prompt, stdin or `--from-env`.
fn read_new_key(
    ctx: &Ctx,
    provider: &Provider,
    from_env: Option<&str>,
) -> anyhow::Result<SecretString> {
    if from_env.is_none() {
        if provider.console_url.is_empty() {
            crate::output::note(&format!(
                "till: create a new {} key, then paste it here",
                provider.name
            ));
        } else {
            crate::output::note(&format!(
                "till: create a new {} key at {}, then paste it here",
                provider.name, provider.console_url
            ));
        }
        crate::output::note("till: the old key keeps working until the new one is checked");
    }
    let key =
        super::add::read_key(&format!("new {} API key", provider.name), from_env).map_err(|e| {
            match crate::error::find_user_error(&e) {
                Some(user) => {
                    let mut unchanged =
                        UserError::usage(format!("{}; nothing was changed", user.message));
                    unchanged.kind = user.kind;
                    unchanged.hint = user.hint.clone();
                    anyhow::Error::from(unchanged)
                }
                None => e.context("nothing was changed"),
            }
        })?;
    super::add::check_shape(ctx, provider, &key)?;
    Ok(key)
}

impl Rotation<'_> {
    fn name(&self) -> &str {
        &self.provider.name
    }

    /// Checks a new key with the provider; `fresh` keys (just created by till) get a few more
    /// tries, since a provider may need a moment to accept them.
    async fn verify_new(&self, key: &SecretString, fresh: bool) -> Result<(), Failure> {
        injected(Step::Verify)?;
        let delays = if fresh { NEW_KEY_RETRY_DELAYS } else { &[] };
        let mut tries = delays.iter();
        loop {
            let verdict = crate::upstream::verify_key(&self.client, self.provider, key).await;
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
                        super::add::without_url(&e)
                    ),
                ),
            };
            match tries.next() {
                Some(delay) if !self.interrupt.seen() => {
                    tokio::time::sleep(*delay).await;
                }
                _ => return Err(failure),
            }
        }
    }

    /// Puts the new key in the store and the ledger. On failure everything is put back, unless
    /// the old key cannot be restored: then the new key stays and `Err((failure, false))`
    /// says it must not be deleted.
    fn commit(
        &self,
        new_key: &SecretString,
        ids: Option<&RootKeyIds>,
    ) -> Result<String, (Failure, bool)> {
        injected(Step::Store).map_err(|f| (f, true))?;
        let name = root_secret_name(self.name());
        if let Err(e) = self.store.set(&name, new_key) {
            let mut f = Failure::new(Step::Store, format!("cannot store the new key: {e}"));
            f.hint = e.hint();
            return Err((f, true));
        }
        let new_fp = fingerprint(new_key.expose_secret());
        let now = now_unix();
        let recorded = self
            .ledger
            .record_root_key(self.name(), &new_fp, now)
            .and_then(|()| match ids {
                Some(ids) => self
                    .ledger
                    .record_root_key_ids(self.name(), &new_fp, ids, now),
                None => Ok(()),
            });
        if let Err(e) = recorded {
            let message = format!("cannot record the new key in the ledger: {e:#}");
            return Err(match self.undo_commit(&new_fp) {
                Ok(()) => (Failure::new(Step::Store, message), true),
                Err(undo) => (self.stuck(Step::Store, &message, &undo), false),
            });
        }
        Ok(new_fp)
    }

    /// Puts the old key back in the store and its row back in the ledger.
    fn undo_commit(&self, new_fp: &str) -> Result<(), String> {
        self.store
            .set(&root_secret_name(self.name()), &self.old_key)
            .map_err(|e| format!("cannot put the old key back in the store: {e}"))?;
        self.ledger
            .restore_root_key(&self.old_meta)
            .map_err(|e| format!("cannot put the old key back in the ledger: {e:#}"))?;
        let _ = self.ledger.forget_root_key_ids(self.name(), new_fp);
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
    async fn automatic(&self, admin_key: &SecretString, project: &str) -> Result<Success, Failure> {
        let api = AdminApi::new(&self.client, self.provider, admin_key);
        let console = self.provider.console_url.clone();

        injected(Step::Find)?;
        let old_ids = match self
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
                RootKeyIds {
                    key_id: found.id.clone(),
                    service_account_id: None,
                }
            }
        };
        self.interrupt.check(Step::Find)?;

        injected(Step::Create)?;
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

        // From here on a failure must not leave the new key behind at the provider.
        if let Err(f) = self.verify_new(&created.value, true).await {
            return Err(self.abandon(&api, project, &created, f).await);
        }
        if let Err(f) = self.interrupt.check(Step::Verify) {
            return Err(self.abandon(&api, project, &created, f).await);
        }

        let new_ids = RootKeyIds {
            key_id: created.key_id.clone(),
            service_account_id: Some(created.service_account_id.clone()),
        };
        let new_fp = match self.commit(&created.value, Some(&new_ids)) {
            Ok(fp) => fp,
            Err((f, true)) => return Err(self.abandon(&api, project, &created, f).await),
            Err((f, false)) => return Err(f),
        };

        let deleted = match injected(Step::Delete) {
            Err(f) => Err(f.message),
            Ok(()) => match api.openai_delete_key(project, &old_ids.key_id).await {
                // Deleted by hand already: the goal is reached.
                Err(admin::AdminError::Status { status: 404, .. }) => {
                    crate::output::note(&format!(
                        "till: the old key {} was already deleted at {}",
                        old_ids.key_id,
                        self.name()
                    ));
                    Ok(())
                }
                other => other.map_err(|e| e.to_string()),
            },
        };
        if let Err(why) = deleted {
            let message = format!("cannot delete the old key {}: {why}", old_ids.key_id);
            return Err(match self.undo_commit(&new_fp) {
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
                crate::output::warn(&format!(
                    "the old key is deleted, but its service account {account} is not ({e})"
                ));
            }
        }
        let _ = self
            .ledger
            .forget_root_key_ids(self.name(), &self.old_meta.fingerprint);
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
            failure.message.push_str("; the new key was deleted again");
            return failure;
        };
        match api.openai_delete_key(project, &created.key_id).await {
            Ok(()) => {
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
                    created.key_id, self.provider.console_url
                ));
                failure.leftover = Some(created.key_id.clone());
            }
        }
        failure
    }

    /// A key a person made: verify it, swap it in, and with an Anthropic admin key set the old
    /// one inactive.
    async fn guided(
        &self,
        new_key: SecretString,
        deactivate_with: Option<&SecretString>,
    ) -> Result<Success, Failure> {
        let not_stored = format!(
            "the new key was not stored; check it, or delete it at {}",
            self.provider.console_url
        );
        self.verify_new(&new_key, false)
            .await
            .map_err(|f| f.hint(not_stored.clone()))?;
        self.interrupt.check(Step::Verify)?;

        let api = deactivate_with.map(|key| AdminApi::new(&self.client, self.provider, key));
        let old_id = match &api {
            Some(api) => {
                injected(Step::Find).map_err(|f| f.hint(not_stored.clone()))?;
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
                Some(found.id.clone())
            }
            None => None,
        };
        self.interrupt.check(Step::Find)?;

        let new_fp = self
            .commit(&new_key, None)
            .map_err(|(f, _)| f.hint(not_stored.clone()))?;

        let (Some(api), Some(old_id)) = (&api, &old_id) else {
            return Ok(Success {
                message: format!(
                    "rotated the {} key: {} -> {new_fp}",
                    self.name(),
                    self.old_meta.fingerprint
                ),
                new_fingerprint: new_fp,
                todo: Some(format!(
                    "delete the old key (fingerprint {}) at {}",
                    self.old_meta.fingerprint, self.provider.console_url
                )),
            });
        };
        let deactivated = match injected(Step::Deactivate) {
            Err(f) => Err(f.message),
            Ok(()) => api
                .anthropic_deactivate(old_id)
                .await
                .map_err(|e| e.to_string()),
        };
        if let Err(why) = deactivated {
            let message = format!("cannot set the old key {old_id} inactive: {why}");
            return Err(match self.undo_commit(&new_fp) {
                Ok(()) => Failure::new(
                    Step::Deactivate,
                    format!("{message}; the old key was put back"),
                )
                .hint(not_stored),
                Err(undo) => self.stuck(Step::Deactivate, &message, &undo).hint(format!(
                    "set the old key {old_id} inactive at {}",
                    self.provider.console_url
                )),
            });
        }
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

/// `till rotate --mint`: a new mint key; the old ones' keys work until `grace` ends.
fn rotate_mint(ledger: &Ledger, store: &dyn SecretStore, grace: Duration) -> Outcome {
    let old: Vec<String> = ledger
        .mint_keys()
        .map(|m| {
            m.into_iter()
                .filter(|m| m.retired_at.is_none())
                .map(|m| m.kid)
                .collect()
        })
        .unwrap_or_default();
    let old_ids = (!old.is_empty()).then(|| old.join(","));
    let result = (|| {
        injected(Step::Create)?;
        let new = crate::mint::create(ledger, store).map_err(|e| {
            Failure::new(Step::Create, format!("cannot create a new mint key: {e:#}"))
                .hint("nothing was changed; child keys keep working")
        })?;
        let kid = new.kid().to_string();
        let now = now_unix();
        let until = now.saturating_add(grace.as_secs());
        if let Err(e) = injected(Step::Retire)
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
            (Some(old), false) => format!(
                "new mint key {kid}; keys signed by {old} work until {}",
                rfc3339(until)
            ),
        };
        Ok(Success {
            message,
            new_fingerprint: kid,
            todo: old_ids
                .as_ref()
                .map(|_| "hand out new keys: `till run` mints them itself; `till key create` for the others".to_string()),
        })
    })();
    finish(ledger, "mint", Method::Mint, old_ids.clone(), result)
}

/// One line of `till rotate --due`'s report.
#[derive(Debug, Serialize)]
struct NeedsPerson {
    target: String,
    age_secs: u64,
    command: String,
}

/// `till rotate --due`: rotate what can be rotated without a person, list the rest.
fn due(
    ctx: &Ctx,
    args: &RotateArgs,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<ExitCode> {
    let ledger = ctx.ledger()?;
    let now = now_unix();
    if ctx.config.rotation.max_age.is_none() {
        crate::output::note("till: no [rotation] max_age in config.toml, so no key is ever due");
    }
    let states = super::status::collect(ctx, &ledger, now)?;
    let due: Vec<_> = states.into_iter().filter(|s| s.due).collect();
    let (auto, manual): (Vec<_>, Vec<_>) = due
        .into_iter()
        .partition(|s| s.rotation == super::status::Rotation::Automatic);
    let needs_person: Vec<NeedsPerson> = manual
        .iter()
        .map(|s| NeedsPerson {
            target: s.name.clone(),
            age_secs: s.age_secs,
            command: format!("till rotate {}", s.name),
        })
        .collect();

    if !auto.is_empty() && !args.yes {
        let names: Vec<&str> = auto.iter().map(|s| s.name.as_str()).collect();
        if !std::io::stdin().is_terminal() {
            return Err(UserError::usage(format!(
                "{} due for rotation ({}); --due rotates without a person only with --yes",
                plural(auto.len(), "key is", "keys are"),
                names.join(", ")
            ))
            .hint("till rotate --due --yes")
            .into());
        }
        let go = dialoguer::Confirm::new()
            .with_prompt(format!("rotate {}?", names.join(", ")))
            .default(false)
            .interact()
            .map_err(|e| anyhow::anyhow!("cannot ask for confirmation: {e}"))?;
        if !go {
            crate::output::note("till: nothing was rotated");
            return Ok(ExitCode::FAILURE);
        }
    }

    let mut outcomes = Vec::new();
    let interrupt = Interrupt::default();
    interrupt.listen(runtime);
    if !auto.is_empty() {
        let store = ctx.store()?;
        for state in &auto {
            let outcome = if state.kind == super::status::KeyKind::Mint {
                rotate_mint(&ledger, store.as_ref(), args.grace.unwrap_or_default())
            } else {
                let provider = ctx.providers.require(&state.name)?.clone();
                match rotate_provider(ctx, &ledger, &provider, Input::Nobody, runtime, &interrupt) {
                    Ok(outcome) => outcome,
                    // Nothing was tried (the admin key went missing from the store, …); still
                    // an attempt the ledger should show.
                    Err(e) => {
                        let mut failure = Failure::new(Step::Prepare, format!("{e:#}"));
                        failure.hint = super::hint(&e);
                        finish(
                            &ledger,
                            &provider.name,
                            Method::Admin,
                            Some(state.id.clone()),
                            Err(failure),
                        )
                    }
                }
            };
            report(&outcome);
            outcomes.push(outcome);
            if interrupt.seen() {
                crate::output::note("till: interrupted; the remaining keys were not rotated");
                break;
            }
        }
    }

    if args.json {
        crate::output::json(&serde_json::json!({
            "rotated": outcomes,
            "needs_person": needs_person,
        }))?;
    } else {
        let mut out = String::new();
        for o in &outcomes {
            if o.ok {
                out.push_str(&format!(
                    "rotated       {:<12} {} -> {}\n",
                    o.target,
                    o.old_fingerprint.as_deref().unwrap_or("-"),
                    o.new_fingerprint.as_deref().unwrap_or("-")
                ));
            } else {
                out.push_str(&format!(
                    "failed        {:<12} at {}\n",
                    o.target,
                    o.step.as_str()
                ));
            }
        }
        for n in &needs_person {
            out.push_str(&format!(
                "needs person  {:<12} {} old: {}\n",
                n.target,
                crate::time::short_duration(n.age_secs),
                n.command
            ));
        }
        if out.is_empty() {
            crate::output::note("till: no key is due for rotation");
        } else {
            crate::output::data(&out)?;
        }
    }
    let clean = outcomes.iter().all(|o| o.ok) && needs_person.is_empty();
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}
