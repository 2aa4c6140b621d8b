//! `till rotate`: replace a provider's root key (through its admin API, or guided by a person)
//! or the mint key; `--due` does it for every key older than `[rotation] max_age`.
//!
//! The state machine, the rollback and the admin API calls live in [`crate::rotation`]; this
//! command only parses the arguments, asks the person (the [`Prompter`] below), and prints the
//! outcomes. It must never print key material: outcomes name keys by fingerprint or id.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use secrecy::SecretString;

use crate::cli::RotateArgs;
use crate::commands::Ctx;
use crate::error::UserError;
use crate::ledger::Ledger;
use crate::providers::Provider;
use crate::rotation::{Notice, Outcome, Prompter, RotateError, Rotator, Step};
use crate::time::now_unix;

pub fn run(ctx: &Ctx, args: &RotateArgs) -> anyhow::Result<ExitCode> {
    flags_that_go_together(args)?;
    let ledger = ctx.ledger()?;
    let rotator = rotator(ctx, &ledger)?;
    let mut prompter = Person {
        ctx,
        from_env: args.from_env.as_deref(),
    };
    if args.due {
        return due(ctx, args, &rotator, &mut prompter);
    }
    let result = if args.mint {
        rotator
            .rotate_mint(args.grace.unwrap_or_default(), &mut prompter)
            .map_err(command_error)
    } else {
        let name = args
            .provider
            .as_deref()
            .expect("clap requires a provider, --mint or --due");
        ctx.providers
            .require(name)
            .map_err(Into::into)
            .and_then(|p| {
                let provider = p.clone();
                rotator
                    .rotate_provider(&provider, &mut prompter)
                    .map_err(command_error)
            })
    };
    let outcome = match result {
        Ok(outcome) => outcome,
        // A script that asked for JSON gets an answer to parse when nothing was rotated too.
        Err(e) if args.json => {
            let hint = e.downcast_ref::<UserError>().and_then(|u| u.hint.clone());
            crate::output::json(&serde_json::json!({
                "target": if args.mint { "mint" } else { args.provider.as_deref().unwrap_or("") },
                "ok": false,
                "message": format!("{e:#}"),
                "hint": hint,
            }))?;
            return Err(e);
        }
        Err(e) => return Err(e),
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

/// `--grace` is about keys signed by the old mint key and `--yes` about a question only
/// `--due` asks: with a provider's rotation they would do nothing, so they are refused. (clap's
/// `requires` cannot say this: it counts the flags' `false` defaults as given.)
fn flags_that_go_together(args: &RotateArgs) -> Result<(), UserError> {
    if args.mint || args.due {
        return Ok(());
    }
    let provider = args.provider.as_deref().unwrap_or("PROVIDER");
    if args.grace.is_some() {
        return Err(UserError::usage(
            "--grace is for the mint key: it says how long keys signed by the old one keep working",
        )
        .hint(format!(
            "a provider's old root key stops when the new one is checked; rotate it with `till rotate {}`, or the mint key with `till rotate --mint --grace …`",
            crate::output::printable(provider)
        )));
    }
    if args.yes {
        return Err(UserError::usage(
            "--yes goes with --due: a provider's rotation asks for the new key, which --yes cannot give",
        )
        .hint("give the new key on stdin or with --from-env VAR"));
    }
    Ok(())
}

/// A rotator over the configured store, catching Ctrl-C once a rotation is under way.
fn rotator<'a>(ctx: &'a Ctx, ledger: &'a Ledger) -> anyhow::Result<Rotator<'a>> {
    let rotator = Rotator::new(
        ledger,
        &ctx.providers,
        &ctx.config,
        Box::new(move || ctx.store()),
    )
    .map_err(command_error)?
    .catch_interrupts();
    let (fail, hang) = injected();
    Ok(rotator.fail_at(fail).hang_at(hang))
}

/// Test hook: with `TILL_TEST_FAIL_STEP=STEP` (debug builds only) that step fails as if the
/// provider or the store had refused, for the integration tests that drive the binary and have
/// no other way to make a delete at the provider fail; with `hang:STEP` the rotation stops
/// before the step, for a test to kill it there. Release builds never read the variable.
/// The step to fail, and the step to hang at.
fn injected() -> (Option<Step>, Option<Step>) {
    #[cfg(debug_assertions)]
    if let Ok(name) = std::env::var(crate::env::EnvVars::TILL_TEST_FAIL_STEP) {
        return match name.strip_prefix("hang:") {
            Some(step) => (None, Step::parse(step)),
            None => (Step::parse(&name), None),
        };
    }
    (None, None)
}

/// A problem found before a rotation was tried, as the command reports it.
fn command_error(e: RotateError) -> anyhow::Error {
    let hint = e.hint();
    let with_hint = |mut user: UserError| {
        if let Some(hint) = hint {
            user = user.hint(hint);
        }
        anyhow::Error::from(user)
    };
    match e {
        RotateError::NothingStored { .. } | RotateError::SameKey { .. } => {
            with_hint(UserError::usage(e.to_string()))
        }
        RotateError::NotInStore { .. } | RotateError::NeedsPerson { .. } => {
            with_hint(UserError::runtime(e.to_string()))
        }
        RotateError::Input(e) | RotateError::Unavailable(e) => e,
        RotateError::Runtime(_) => anyhow::Error::from(e),
    }
}

/// The person at the terminal (or whoever feeds stdin or `--from-env`).
struct Person<'a> {
    ctx: &'a Ctx,
    from_env: Option<&'a str>,
}

impl Prompter for Person<'_> {
    /// Where to make the key, then a hidden prompt, stdin or `--from-env`.
    fn new_key(&mut self, provider: &Provider) -> anyhow::Result<SecretString> {
        if self.from_env.is_none() {
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
        let key = super::input::read_key(&format!("new {} API key", provider.name), self.from_env)
            .map_err(|e| match crate::error::find_user_error(&e) {
                Some(user) => {
                    let mut unchanged =
                        UserError::usage(format!("{}; nothing was changed", user.message));
                    unchanged.kind = user.kind;
                    unchanged.hint = user.hint.clone();
                    anyhow::Error::from(unchanged)
                }
                None => e.context("nothing was changed"),
            })?;
        super::input::check_shape(self.ctx, provider, &key)?;
        Ok(key)
    }

    fn confirm_due(&mut self, names: &[&str]) -> anyhow::Result<bool> {
        if !std::io::stdin().is_terminal() {
            return Err(UserError::usage(format!(
                "{} due for rotation ({}); --due rotates without a person only with --yes",
                crate::format::plural(names.len() as u64, "key is", "keys are"),
                names.join(", ")
            ))
            .hint("till rotate --due --yes")
            .into());
        }
        dialoguer::Confirm::new()
            .with_prompt(format!("rotate {}?", names.join(", ")))
            .default(false)
            .interact()
            .map_err(|e| anyhow::anyhow!("cannot ask for confirmation: {e}"))
    }

    fn notice(&mut self, notice: &Notice) {
        if notice.is_warning() {
            crate::output::warn(&notice.to_string());
        } else {
            crate::output::note(&format!("till: {notice}"));
        }
    }

    fn finished(&mut self, outcome: &Outcome) {
        report(outcome);
    }
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

/// `till rotate --due`: rotate what can be rotated without a person, list the rest.
fn due(
    ctx: &Ctx,
    args: &RotateArgs,
    rotator: &Rotator<'_>,
    prompter: &mut Person<'_>,
) -> anyhow::Result<ExitCode> {
    if ctx.config.rotation.max_age.is_none() {
        crate::output::note("till: no [rotation] max_age in config.toml, so no key is ever due");
    }
    let due = rotator.due_keys(now_unix()).map_err(command_error)?;
    // A cron line without --grace ends every created key at the mint key's turn.
    if args.grace.is_none()
        && due
            .automatic
            .iter()
            .any(|k| k.kind == crate::rotation::KeyKind::Mint)
    {
        crate::output::warn(
            "the mint key is due and no --grace is given: every key it signed (created keys, running agents' keys) stops working at once; `--grace 1h` keeps them an hour",
        );
    }
    let run = rotator
        .rotate_due(&due, args.grace.unwrap_or_default(), args.yes, prompter)
        .map_err(command_error)?;
    if run.declined {
        crate::output::note("till: nothing was rotated");
        return Ok(ExitCode::FAILURE);
    }
    if run.interrupted {
        crate::output::note("till: interrupted; the remaining keys were not rotated");
    }

    if args.json {
        crate::output::json(&serde_json::json!({
            "rotated": run.outcomes,
            "needs_person": due.needs_person,
        }))?;
    } else {
        let mut out = String::new();
        for o in &run.outcomes {
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
        for n in &due.needs_person {
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
    let clean = run.outcomes.iter().all(|o| o.ok) && due.needs_person.is_empty();
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
