//! `till add PROVIDER`: read a root key, check it with the provider, store it.
//!
//! Nothing is stored unless every step before the store succeeded; if recording the metadata
//! fails after the store, the stored key is removed again.

use std::io::{IsTerminal as _, Read as _};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use secrecy::{ExposeSecret as _, SecretString};

use crate::cli::AddArgs;
use crate::commands::{Ctx, root_secret_name};
use crate::error::UserError;
use crate::providers::Provider;
use crate::upstream::Verdict;

pub fn run(ctx: &Ctx, args: &AddArgs) -> anyhow::Result<ExitCode> {
    let provider = ctx.providers.require(&args.provider)?.clone();
    if provider.base_url.is_empty() {
        return Err(
            UserError::usage(format!("provider `{}` has no base_url", provider.name)).into(),
        );
    }
    let key = read_key(&provider, args.from_env.as_deref())?;
    check_shape(ctx, &provider, &key)?;

    // Open both stores before asking the provider, so a broken store fails fast and cheaply.
    let ledger = ctx.ledger()?;
    let store = ctx.store()?;

    if args.no_verify {
        crate::output::note(&format!(
            "not verifying the {} key (--no-verify)",
            provider.name
        ));
    } else {
        verify(&provider, &key)?;
    }

    let name = root_secret_name(&provider.name);
    store.set(&name, &key).context("cannot store the key")?;
    let fingerprint = crate::ledger::fingerprint(key.expose_secret());
    if let Err(err) = ledger.record_root_key(&provider.name, &fingerprint, crate::time::now_unix())
    {
        let _ = store.delete(&name);
        return Err(err.context("cannot record the key in the ledger; the key was not stored"));
    }
    crate::output::note(&format!(
        "stored the {} key {fingerprint} in the {} store",
        provider.name,
        store.kind()
    ));
    Ok(ExitCode::SUCCESS)
}

/// The key from `--from-env`, a hidden prompt, or stdin (in that order of preference).
fn read_key(provider: &Provider, from_env: Option<&str>) -> anyhow::Result<SecretString> {
    let raw = if let Some(var) = from_env {
        std::env::var(var).map_err(|_| {
            UserError::usage(format!("environment variable {var} is not set")).hint(format!(
                "export {var}=… or leave out --from-env to be prompted"
            ))
        })?
    } else if std::io::stdin().is_terminal() {
        if !provider.console_url.is_empty() {
            crate::output::note(&format!("create a key at {}", provider.console_url));
        }
        dialoguer::Password::new()
            .with_prompt(format!("{} API key", provider.name))
            .interact()
            .context("cannot read the key from the terminal")?
    } else {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the key from stdin")?;
        text
    };
    let key = raw.trim().to_string();
    drop(zeroize::Zeroizing::new(raw));
    if key.is_empty() {
        return Err(UserError::usage("the key is empty")
            .hint("paste the key, or pipe it: `echo $KEY | till add …`")
            .into());
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(
            UserError::usage("the key contains whitespace; a provider key is one word").into(),
        );
    }
    Ok(SecretString::from(key))
}

/// Refuses till's own keys and warns when the key looks like another provider's.
fn check_shape(ctx: &Ctx, provider: &Provider, key: &SecretString) -> anyhow::Result<()> {
    let key = key.expose_secret();
    if key.starts_with("till_") {
        return Err(
            UserError::usage("that is a till child key, not a provider key")
                .hint(format!("use the key from {}", provider.console_url))
                .into(),
        );
    }
    if let Some(other) = ctx.providers.guess_from_key(key) {
        let matches_own = provider
            .key_prefix
            .as_deref()
            .is_some_and(|p| key.starts_with(p));
        if other.name != provider.name && !matches_own {
            crate::output::warn(&format!(
                "this key looks like one for {}, not {}",
                other.name, provider.name
            ));
        }
    }
    Ok(())
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
        .hint(format!("check the key at {}", provider.console_url))
        .into()),
        Ok(Verdict::Unexpected(status)) => Err(UserError::runtime(format!(
            "could not verify the key: {} answered HTTP {status}; nothing was stored",
            provider.name
        ))
        .hint("try again later, or store it unchecked with --no-verify")
        .into()),
        Err(err) => Err(UserError::runtime(format!(
            "could not reach {} to verify the key ({}); nothing was stored",
            provider.name,
            without_url(&err)
        ))
        .hint("check the network or [providers] base_url, or store it unchecked with --no-verify")
        .into()),
    }
}

fn without_url(err: &reqwest::Error) -> String {
    let mut msg = err.to_string();
    if let Some(url) = err.url() {
        msg = msg.replace(url.as_str(), "").trim().to_string();
    }
    if err.is_timeout() {
        "timed out".into()
    } else if err.is_connect() {
        "connection failed".into()
    } else {
        msg
    }
}
