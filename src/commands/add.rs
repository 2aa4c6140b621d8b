//! `till add PROVIDER`: read a root key, check it with the provider, store it.
//!
//! Nothing is stored unless every step before the store succeeded; if recording the metadata
//! fails after the store, the stored key is removed again.

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use secrecy::{ExposeSecret as _, SecretString};

use crate::cli::AddArgs;
use crate::commands::{Ctx, root_secret_name};
use crate::error::UserError;
use crate::providers::Provider;
use crate::rotation::admin::{self, AdminKind, CheckError};
use crate::upstream::Verdict;

pub fn run(ctx: &Ctx, args: &AddArgs) -> anyhow::Result<ExitCode> {
    let provider = ctx.providers.require(&args.provider)?.clone();
    if provider.base_url.is_empty() {
        return Err(
            UserError::usage(format!("provider `{}` has no base_url", provider.name)).into(),
        );
    }
    if args.admin {
        return add_admin(ctx, args, &provider);
    }
    if args.from_env.is_none() && std::io::stdin().is_terminal() && !provider.console_url.is_empty()
    {
        crate::output::note(&format!("create a key at {}", provider.console_url));
    }
    let key = super::input::read_key(
        &format!("{} API key", provider.name),
        args.from_env.as_deref(),
    )?;
    super::input::check_shape(ctx, &provider, &key)?;
    if looks_like_admin_key(key.expose_secret()) {
        crate::output::warn(&format!(
            "this looks like an admin key; store admin keys with `till add {} --admin`",
            provider.name
        ));
    }

    // Open both stores before asking the provider, so a broken store fails fast and cheaply.
    let ledger = ctx.ledger()?;
    let store = ctx.store()?;
    let name = root_secret_name(&provider.name);
    let seen = refuse_to_replace(
        store.as_ref(),
        &name,
        &key,
        args.replace,
        &format!("the {} key", provider.name),
        &format!(
            "`till rotate {p}` replaces it and retires the old one; `till add {p} --replace` only replaces it",
            p = provider.name
        ),
    )?;

    if args.no_verify {
        crate::output::note(&format!(
            "not verifying the {} key (--no-verify)",
            provider.name
        ));
    } else {
        verify(&provider, &key)?;
    }

    store_unless_changed(
        store.as_ref(),
        &name,
        seen.as_ref(),
        &key,
        &format!("the {} key", provider.name),
    )
    .context("cannot store the key")?;
    let fingerprint = crate::ledger::fingerprint(key.expose_secret());
    let same = seen
        .as_ref()
        .is_some_and(|s| s.expose_secret() == key.expose_secret());
    let previous = ledger.root_key(&provider.name)?;
    let listed = previous
        .as_ref()
        .is_some_and(|m| m.fingerprint == fingerprint);
    if let Err(err) = ledger.record_root_key(&provider.name, &fingerprint, crate::time::now_unix())
    {
        return Err(
            err.context(match put_back(store.as_ref(), &name, seen.as_ref(), &key) {
                Ok(_) if same => {
                    "cannot record the key in the ledger; the store keeps it as it was"
                }
                Ok(_) => "cannot record the key in the ledger; the store was left as it was",
                Err(_) => {
                    "cannot record the key in the ledger, nor put the store back: run `till doctor`"
                }
            }),
        );
    }
    // The replaced key's life at the provider is the person's now: a rotation must not take
    // it for one an unfinished rotation left and delete it.
    if let Some(previous) = previous.filter(|m| m.fingerprint != fingerprint) {
        let _ = ledger.forget_root_key_ids(&provider.name, &previous.fingerprint);
    }
    let (p, kind) = (&provider.name, store.kind());
    crate::output::note(&match (same, listed) {
        (false, _) => format!("stored the {p} key {fingerprint} in the {kind} store"),
        (true, true) => {
            format!("the {p} key {fingerprint} was already in the {kind} store; nothing changed")
        }
        (true, false) => format!(
            "the {p} key {fingerprint} was already in the {kind} store; the ledger lists it again"
        ),
    });
    Ok(ExitCode::SUCCESS)
}

/// `till add PROVIDER --admin`: an admin key for `till rotate`, stored as `admin/PROVIDER`
/// and recorded in the ledger's `admin_keys`; agents never see it.
fn add_admin(ctx: &Ctx, args: &AddArgs, provider: &Provider) -> anyhow::Result<ExitCode> {
    let project = admin::admin_project(&ctx.config, &provider.name);
    let kind = admin::admin_kind(provider).ok_or_else(|| {
        UserError::usage(format!(
            "till uses no admin API for {}; admin keys are for openai and anthropic",
            provider.name
        ))
    })?;
    if args.from_env.is_none() && std::io::stdin().is_terminal() {
        crate::output::note(&format!(
            "create an admin key at {}",
            admin::admin_console_url(kind)
        ));
    }
    let key = super::input::read_key(
        &format!("{} admin key", provider.name),
        args.from_env.as_deref(),
    )?;
    super::input::check_shape(ctx, provider, &key)?;
    if !looks_like_admin_key(key.expose_secret()) {
        crate::output::warn(&format!(
            "this does not look like a {} admin key",
            provider.name
        ));
    }
    let ledger = ctx.ledger()?;
    let store = ctx.store()?;
    let name = super::admin_secret_name(&provider.name);
    let seen = refuse_to_replace(
        store.as_ref(),
        &name,
        &key,
        args.replace,
        &format!("the {} admin key", provider.name),
        &format!("`till add {} --admin --replace` replaces it", provider.name),
    )?;
    if args.no_verify {
        crate::output::note(&format!(
            "not verifying the {} admin key (--no-verify)",
            provider.name
        ));
    } else {
        verify_admin_key(provider, kind, project.as_deref(), &key)?;
    }
    store_unless_changed(
        store.as_ref(),
        &name,
        seen.as_ref(),
        &key,
        &format!("the {} admin key", provider.name),
    )
    .context("cannot store the admin key")?;
    let fingerprint = crate::ledger::fingerprint(key.expose_secret());
    if let Err(err) = ledger.record_admin_key(&provider.name, &fingerprint, crate::time::now_unix())
    {
        return Err(err.context(
            match put_back(store.as_ref(), &name, seen.as_ref(), &key) {
                Ok(()) => "cannot record the admin key in the ledger; the store was left as it was",
                Err(_) => {
                    "cannot record the admin key in the ledger, nor put the store back: run `till doctor`"
                }
            },
        ));
    }
    crate::output::note(&format!(
        "stored the {} admin key {fingerprint} in the {} store; `till rotate {}` will use it",
        provider.name,
        store.kind(),
        provider.name
    ));
    if kind == AdminKind::OpenaiProject && project.is_none() {
        crate::output::warn(&format!(
            "set admin_project = \"proj_…\" under [providers.{}] in config.toml so till knows which project's keys to manage",
            provider.name
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// After the ledger refused a key just stored under `name`, the store goes back to what it
/// held: the key `--replace` replaced, or nothing; a key that was there already stays
/// (deleting it lost a key the ledger merely did not list).
fn put_back(
    store: &dyn crate::secrets::SecretStore,
    name: &str,
    seen: Option<&SecretString>,
    key: &SecretString,
) -> Result<(), crate::secrets::StoreError> {
    match seen {
        Some(old) if old.expose_secret() == key.expose_secret() => Ok(()),
        Some(old) => store.set_if_unchanged(name, Some(key), old).map(|_| ()),
        None => store.delete(name).map(|_| ()),
    }
}

/// A different key already stored under `name` is replaced only with `--replace`: `till add`
/// must not lose a working key by accident. The same key again is fine.
fn refuse_to_replace(
    store: &dyn crate::secrets::SecretStore,
    name: &str,
    key: &SecretString,
    replace: bool,
    what: &str,
    hint: &str,
) -> anyhow::Result<Option<SecretString>> {
    let Some(stored) = store.get(name)? else {
        return Ok(None);
    };
    if stored.expose_secret() == key.expose_secret() {
        return Ok(Some(stored));
    }
    let old = crate::ledger::fingerprint(stored.expose_secret());
    let new = crate::ledger::fingerprint(key.expose_secret());
    if replace {
        crate::output::note(&format!("replacing {what} {old} with {new}"));
        return Ok(Some(stored));
    }
    Err(UserError::usage(format!(
        "{what} {old} is already stored, and this one ({new}) is different; nothing was changed"
    ))
    .hint(hint)
    .into())
}

/// Stores `key` under `name` unless another till stored something there since
/// [`refuse_to_replace`] saw `seen`: two `till add`s of one provider at once must not both say
/// they stored their key while only the last one is kept.
fn store_unless_changed(
    store: &dyn crate::secrets::SecretStore,
    name: &str,
    seen: Option<&SecretString>,
    key: &SecretString,
    what: &str,
) -> anyhow::Result<()> {
    if store.set_if_unchanged(name, seen, key)? {
        return Ok(());
    }
    Err(UserError::runtime(format!(
        "another till stored {what} while this one was being checked; nothing was changed"
    ))
    .hint(
        "`till list` shows which key is stored; add this one again with --replace if it should be",
    )
    .into())
}

/// Checks an admin key with a harmless listing call; nothing is stored when it fails.
fn verify_admin_key(
    provider: &Provider,
    kind: AdminKind,
    project: Option<&str>,
    key: &SecretString,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = crate::upstream::client(Duration::from_secs(10));
    let result = runtime.block_on(admin::check_admin_key(
        &client, provider, kind, project, key,
    ));
    match result {
        Ok(()) => Ok(()),
        Err(CheckError::NoProject) => Err(UserError::usage(CheckError::NoProject.to_string())
            .hint(format!(
                "set admin_project = \"proj_…\" under [providers.{}] in config.toml, or store it unchecked with --no-verify",
                provider.name
            ))
            .into()),
        Err(CheckError::Api(e)) if e.is_auth() => Err(UserError::runtime(format!(
            "{} did not accept the admin key ({e}); nothing was stored",
            provider.name
        ))
        .hint(format!("use an admin key from {}", admin::admin_console_url(kind)))
        .into()),
        Err(CheckError::Api(e)) => Err(UserError::runtime(format!(
            "could not check the admin key: {e}; nothing was stored"
        ))
        .hint(
            "check [providers] base_url and admin_project, or store it unchecked with --no-verify",
        )
        .into()),
    }
}

/// Admin keys: OpenAI's start `sk-admin-`, Anthropic's `sk-ant-admin`.
fn looks_like_admin_key(key: &str) -> bool {
    key.starts_with("sk-admin-") || key.starts_with("sk-ant-admin")
}

fn verify(provider: &Provider, key: &SecretString) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = crate::upstream::client(Duration::from_secs(10));
    let verdict = rt.block_on(crate::upstream::verify_key(&client, provider, key));
    match verdict {
        Ok(Verdict::Accepted) => Ok(()),
        Ok(Verdict::Rejected(status)) => Err(UserError::runtime(format!(
            "{} rejected the key (HTTP {status}); nothing was stored",
            provider.name
        ))
        .hint(format!("check the key at {}", provider.console()))
        .into()),
        Ok(Verdict::Unexpected(status)) => Err(UserError::runtime(format!(
            "could not verify the key: {} answered HTTP {status}; nothing was stored",
            provider.name
        ))
        .hint("try again later, or store it unchecked with --no-verify")
        .into()),
        Err(err) => Err(UserError::runtime(format!(
            "could not reach {} to verify the key ({}); nothing was stored",
            provider.name, err
        ))
        .hint("check the network or [providers] base_url, or store it unchecked with --no-verify")
        .into()),
    }
}
