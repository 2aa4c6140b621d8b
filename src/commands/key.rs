//! `till key create|list|show|revoke|attenuate|inspect`.
//!
//! A created key is printed once and never stored. The ledger keeps its metadata: binding
//! (SHA-256 of its tag), name, scope, times, and the nonce and scope needed to re-derive it
//! with the mint key (`till run --key NAME`). `attenuate` and `inspect` need no secret at all.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use serde::Serialize;

use crate::childkey::{Caveat, MintKey, Token};
use crate::cli::{
    KeyAttenuateArgs, KeyCommand, KeyCreateArgs, KeyInspectArgs, KeyListArgs, KeyRevokeArgs,
    KeyShowArgs,
};
use crate::commands::{Ctx, scope_err};
use crate::error::UserError;
use crate::ledger::{KeyMeta, Ledger};
use crate::scope::ScopeSpec;
use crate::time::{now_unix, rfc3339};

pub fn run(ctx: &Ctx, cmd: KeyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        KeyCommand::Create(a) => create(ctx, &a),
        KeyCommand::List(a) => list(ctx, &a),
        KeyCommand::Show(a) => show(ctx, &a),
        KeyCommand::Revoke(a) => revoke(ctx, &a),
        KeyCommand::Attenuate(a) => attenuate(ctx, &a),
        KeyCommand::Inspect(a) => inspect(ctx, &a),
    }
}

/// What the ledger stores to re-derive a created key.
#[derive(Serialize, serde::Deserialize)]
struct Recipe {
    nonce: String,
    args: Vec<String>,
}

fn create(ctx: &Ctx, args: &KeyCreateArgs) -> anyhow::Result<ExitCode> {
    // The key is shown once, on stdout; one made where nobody can read it is one to revoke.
    if crate::output::stdout_discards() {
        return Err(UserError::usage(
            "stdout is /dev/null (or was closed), so the new key would never be seen; none was made",
        )
        .hint("keep it in a variable or a file: KEY=$(till key create …), or till key create … > key.txt")
        .into());
    }
    let spec = super::scope_spec(ctx, &args.scope, None)?;
    let now = now_unix();
    let known = ctx.providers.names();
    let mut caveats = spec.to_caveats(now, &known).map_err(scope_err)?;
    let expires = match caveats.iter().find_map(|c| {
        if let Caveat::Expires(t) = c {
            Some(*t)
        } else {
            None
        }
    }) {
        Some(t) => t,
        None => {
            let t = now + ctx.config.keys.default_ttl.0.as_secs();
            caveats.push(Caveat::Expires(t));
            t
        }
    };
    super::check_max_ttl(ctx, &spec, expires, now)?;
    if let Some(name) = &args.name {
        check_name(name)?;
    }
    // The store first: one that cannot be opened (no keychain, a mistyped TILL_STORE) makes
    // nothing, not a ledger in a new home.
    let store = ctx.store()?;
    let ledger = ctx.ledger()?;
    // A name is the live key's: one held by an expired, revoked or invalid key is moved aside
    // (to `NAME@ID`, where no name typed can be) just before the new key takes it, so a daily
    // `--name ci` works again the next day.
    let mut set_aside = None;
    if let Some(name) = &args.name {
        let found = ledger.find_key(name)?;
        if let Some(old) = found
            .iter()
            .find(|k| k.name.as_deref() == Some(name.as_str()))
        {
            let state = status(old, &ledger.mint_keys()?, now);
            if state == "active" {
                return Err(name_taken(name).into());
            }
            set_aside = Some((
                old.binding.clone(),
                format!("{name}@{}", crate::format::head(&old.binding, 8)),
                state,
            ));
        } else if !found.is_empty() {
            return Err(UserError::usage(format!(
                "`{name}` is the start of an existing key's id; a name must not be one"
            ))
            .hint("pick another name")
            .into());
        }
    }
    if !caveats.iter().any(|c| matches!(c, Caveat::Allow(_))) {
        let stored: Vec<String> = ledger
            .root_keys()?
            .into_iter()
            .map(|m| m.provider)
            .collect();
        if stored.is_empty() {
            return Err(UserError::usage("no --scope given and no root keys stored")
                .hint("name the providers: --scope openai, or add a key first: till add openai")
                .into());
        }
        caveats.push(super::allow_providers(&stored)?);
    } else if let Some(named) = super::token_providers(&caveats) {
        // A key for a provider whose root key is not stored works once one is: said, not
        // refused (the key may be made for later).
        let stored = ledger.root_keys()?;
        for p in named
            .iter()
            .filter(|p| !stored.iter().any(|m| &m.provider == *p))
        {
            crate::output::warn(&format!(
                "no {p} key is stored: this key's requests to {p} are refused until `till add {p}`"
            ));
        }
    }
    let mint = crate::mint::current(&ledger, store.as_ref())?;
    let token = Token::mint(&mint, caveats).map_err(super::mint_err)?;
    let level0 = token.caveats().to_vec();
    let scope_args = ScopeSpec::from_caveats(&level0)
        .map_err(scope_err)?
        .to_args();
    let recipe = Recipe {
        nonce: hex::encode(token.nonce),
        args: scope_args.clone(),
    };
    let meta = KeyMeta {
        binding: token.binding().to_string(),
        name: args.name.clone(),
        kid: token.kid().to_string(),
        scope: shell_words(&scope_args),
        body: serde_json::to_string(&recipe)?,
        created_at: now,
        expires_at: expires,
        revoked_at: None,
    };
    if let Some((binding, aside, state)) = &set_aside {
        ledger.rename_key(binding, aside)?;
        crate::output::note(&format!(
            "the {state} key that was named `{}` is now `{aside}`",
            args.name.as_deref().unwrap_or_default()
        ));
    }
    match ledger.insert_key(&meta) {
        Ok(true) => {}
        Ok(false) => {
            return Err(UserError::runtime(
                "the mint key was rotated (till rotate --mint) while this key was made, so it would not work; none was made",
            )
            .hint("run the command again: it signs with the new mint key")
            .into());
        }
        Err(e) => {
            // Another `till key create` took the name between the look above and this write.
            let taken = e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<rusqlite::Error>(),
                    Some(rusqlite::Error::SqliteFailure(f, _))
                        if f.code == rusqlite::ErrorCode::ConstraintViolation
                )
            });
            return Err(match (&args.name, taken) {
                (Some(name), true) => name_taken(name).into(),
                _ => e,
            });
        }
    }
    let key = token.encode();
    if let Err(e) = show_created(args, &token, &meta, &key, expires) {
        // Never seen, so never used: the key goes, and its name with it. The error is a new
        // one (a closed pipe would otherwise end the command as if it had succeeded).
        let forgotten = ledger.forget_unshown_key(&meta.binding);
        return Err(anyhow::anyhow!(
            "the key could not be written out ({e:#}), so it was {}",
            if forgotten.is_ok() {
                "not kept"
            } else {
                "kept but never shown: revoke it with `till key revoke` and its id from `till key list`"
            }
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes a key `till key create` made: its text (the only time it is shown) and what it is.
fn show_created(
    args: &KeyCreateArgs,
    token: &Token,
    meta: &KeyMeta,
    key: &str,
    expires: u64,
) -> anyhow::Result<()> {
    if args.json {
        crate::output::json(&serde_json::json!({
            "key": key,
            "id": token.binding().short(),
            "binding": meta.binding,
            "name": meta.name,
            "scope": meta.scope,
            "expires_at": rfc3339(expires),
        }))?;
    } else {
        crate::output::data(key)?;
        // The scope names the expiry (`--expires …`); said again only when it does not.
        let expiry = if meta.scope.contains("--expires") {
            String::new()
        } else {
            format!(", expires {}", rfc3339(expires))
        };
        crate::output::note(&format!(
            "created key {}{} ({}){expiry}; it is shown only this once",
            token.binding().short(),
            args.name
                .as_deref()
                .map(|n| format!(" `{n}`"))
                .unwrap_or_default(),
            meta.scope,
        ));
    }
    Ok(())
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !name.starts_with("till_");
    if ok && looks_like_a_provider_key(name) {
        return Err(UserError::usage(
            "this key name looks like a provider's key, which `till key list` would show to anyone at your screen",
        )
        .hint("name the key for its use, such as `ci` or `my-agent`")
        .into());
    }
    if ok {
        Ok(())
    } else {
        Err(
            UserError::usage(format!("`{name}` is not a usable key name"))
                .hint("use up to 64 letters, digits, `-`, `_` or `.`")
                .into(),
        )
    }
}

/// Quotes arguments for display the way a shell would read them back.
fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=,$".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A key from its text, its name or its id. Named keys are re-derived with the mint key that
/// signed them: the current one, or a retired one while its grace lasts (said, with its end).
pub fn resolve_key(
    ledger: &Ledger,
    store: &dyn crate::secrets::SecretStore,
    current: &MintKey,
    key: &str,
) -> anyhow::Result<Token> {
    if key.starts_with("till_") {
        return Token::decode(key).map_err(|e| UserError::usage(format!("--key: {e}")).into());
    }
    let meta = one_key(ledger, key)?;
    if meta.revoked_at.is_some() {
        return Err(UserError::runtime(format!("key `{key}` has been revoked")).into());
    }
    if meta.expires_at <= crate::time::now_unix() {
        return Err(UserError::runtime(format!(
            "key `{key}` expired at {}",
            crate::time::rfc3339(meta.expires_at)
        ))
        .hint(format!(
            "create a new one: till key create --name {key} … (the name moves the old key aside)"
        ))
        .into());
    }
    let retired;
    let mint = if meta.kid == current.kid().to_string() {
        current
    } else {
        let now = crate::time::now_unix();
        let entry = crate::mint::load(ledger, store, &meta.kid)?;
        match entry {
            Some(e) if e.valid_until.is_none_or(|until| until > now) => {
                if let Some(until) = e.valid_until {
                    crate::output::warn(&format!(
                        "key `{key}` was signed by mint key {}, retired by `till rotate --mint`: it works until {} (the rotation's grace), and this run's key with it; create a new key before then (till key create)",
                        meta.kid,
                        crate::time::rfc3339(until)
                    ));
                }
                retired = e.key;
                &retired
            }
            _ => {
                return Err(UserError::runtime(format!(
                    "key `{key}` was signed by a retired mint key whose grace has ended"
                ))
                .hint(format!(
                    "create a new one: till key create --name {key} … (the name moves the old key aside)"
                ))
                .into());
            }
        }
    };
    let recipe: Recipe = serde_json::from_str(&meta.body)?;
    let mut nonce = [0u8; 16];
    hex::decode_to_slice(&recipe.nonce, &mut nonce)?;
    let spec = ScopeSpec::from_args(&recipe.args).map_err(scope_err)?;
    let caveats = spec.to_caveats(0, &[]).map_err(scope_err)?;
    let token = Token::mint_with_nonce(mint, caveats, nonce);
    if token.binding().to_string() != meta.binding {
        anyhow::bail!("key `{key}` could not be re-derived (its ledger entry does not match)");
    }
    Ok(token)
}

/// Exactly one ledger key for a name or id prefix.
pub(crate) fn no_such_key(id_or_name: &str) -> UserError {
    // A provider's key pasted where a till key's name belongs is not repeated to the
    // terminal (its scrollback, a shared screen).
    let given = if looks_like_a_provider_key(id_or_name) {
        "like the text given (not repeated: it looks like a provider's key)".to_string()
    } else {
        format!("`{id_or_name}`")
    };
    UserError::usage(format!("no key named or with id {given}"))
        .hint("`till key list --all` shows every key")
}

/// Whether `text`, given for a till key's name or id, looks like a provider's key: longer than
/// any key name, or in the form of one (OpenAI's and Anthropic's `sk-`, Google's `AIza`, and
/// the `_`/`-` prefixes of the OpenAI-compatible providers').
pub(crate) fn looks_like_a_provider_key(text: &str) -> bool {
    text.len() > 64
        || crate::output::PROVIDER_KEY_PREFIXES
            .iter()
            .any(|p| text.starts_with(p))
}

/// The refusal of a name another key has.
fn name_taken(name: &str) -> UserError {
    UserError::usage(format!("a key named `{name}` already exists")).hint(format!(
        "pick another name, or revoke the old one: till key revoke {name}"
    ))
}

fn one_key(ledger: &Ledger, id_or_name: &str) -> anyhow::Result<KeyMeta> {
    let mut found = ledger.find_key(id_or_name)?;
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(no_such_key(id_or_name).into()),
        n => Err(UserError::usage(format!("`{id_or_name}` matches {n} keys"))
            .hint("give more characters of the id")
            .into()),
    }
}

#[derive(Serialize)]
struct KeyView {
    id: String,
    binding: String,
    name: Option<String>,
    scope: String,
    created_at: String,
    expires_at: String,
    status: &'static str,
    /// Why an `invalid` key is: its mint key's retirement, or another till's mint key.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    revoked_at: Option<String>,
    requests: u64,
    spent_usd: f64,
    spent_tokens: u64,
    /// The key's own dollar budget, if it has one.
    budget_usd: Option<f64>,
    /// The key's own token budget, if it has one.
    budget_tokens: Option<u64>,
}

/// A key's standing as the proxy sees it: `revoked`, `expired`, `invalid` when its mint key
/// was replaced (and its grace is over) or is not this till's, else `active`.
fn status(meta: &KeyMeta, mints: &[crate::ledger::MintMeta], now: u64) -> &'static str {
    let minted = mints.iter().find(|m| m.kid == meta.kid);
    if meta.revoked_at.is_some() {
        "revoked"
    } else if meta.expires_at <= now {
        "expired"
    } else if !minted.is_some_and(|m| m.signs_keys_at(now)) {
        "invalid"
    } else {
        "active"
    }
}

fn view(ledger: &Ledger, meta: &KeyMeta, mints: &[crate::ledger::MintMeta], now: u64) -> KeyView {
    // Keys with a budget or request ceiling have exact counters; others are summed from the
    // request log (within its retention).
    let counter = ledger
        .counter(&meta.binding)
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            let filter = crate::ledger::query::LogFilter {
                lineage: Some(crate::childkey::Binding::short_hex(&meta.binding)),
                ..Default::default()
            };
            let rows = ledger
                .usage(&filter, crate::ledger::query::GroupBy::Provider)
                .unwrap_or_default();
            crate::ledger::counters::Counter {
                spent_micros: rows.iter().map(|r| (r.cost_usd * 1e6).round() as u64).sum(),
                spent_tokens: rows.iter().map(|r| r.input_tokens + r.output_tokens).sum(),
                // Requests till let through, as a budget's counter counts them: its refusals
                // are rows of the log too.
                requests: rows.iter().map(|r| r.requests - r.denied).sum(),
                ..Default::default()
            }
        });
    let (mut budget_usd, mut budget_tokens) = (None, None);
    if let Ok(recipe) = serde_json::from_str::<Recipe>(&meta.body)
        && let Ok(spec) = ScopeSpec::from_args(&recipe.args)
    {
        for b in &spec.budget {
            match crate::scope::parse_budget(b) {
                Ok(crate::scope::Budget::Usd(m)) => budget_usd = Some(m as f64 / 1e6),
                Ok(crate::scope::Budget::Tokens(t)) => budget_tokens = Some(t),
                Err(_) => {}
            }
        }
    }
    let status = status(meta, mints, now);
    KeyView {
        requests: counter.requests,
        spent_usd: counter.spent_micros as f64 / 1e6,
        spent_tokens: counter.spent_tokens,
        budget_usd,
        budget_tokens,
        id: crate::childkey::Binding::short_hex(&meta.binding),
        binding: meta.binding.clone(),
        name: meta.name.clone(),
        scope: meta.scope.clone(),
        created_at: rfc3339(meta.created_at),
        expires_at: rfc3339(meta.expires_at),
        status,
        reason: (status == "invalid").then(|| match mints.iter().find(|m| m.kid == meta.kid) {
            None => "it was not made by this till's mint key".to_string(),
            Some(m) => format!(
                "its mint key was retired{}, and the keys it signed stopped working{}",
                m.retired_at
                    .map(|t| format!(" at {}", rfc3339(t)))
                    .unwrap_or_default(),
                m.valid_until
                    .map(|t| format!(" at {}", rfc3339(t)))
                    .unwrap_or_default()
            ),
        }),
        revoked_at: meta.revoked_at.map(rfc3339),
    }
}

/// Each active key's name, or its id when it has none, one a line (`TILL_COMPLETE=keys`).
/// Names are letters, digits, `-`, `_` and `.`, so a shell reads them as they are. A ledger
/// that is not there is not made.
pub fn active_names(ctx: &Ctx) -> anyhow::Result<String> {
    let now = now_unix();
    let Some(ledger) = ctx.ledger_if_there()? else {
        return Ok(String::new());
    };
    let mints = ledger.mint_keys()?;
    let mut out = String::new();
    for k in ledger.keys()?.iter() {
        if status(k, &mints, now) == "active" {
            match &k.name {
                Some(name) => out.push_str(name),
                None => out.push_str(&crate::childkey::Binding::short_hex(&k.binding)),
            }
            out.push('\n');
        }
    }
    Ok(out)
}

fn list(ctx: &Ctx, args: &KeyListArgs) -> anyhow::Result<ExitCode> {
    let now = now_unix();
    let ledger = ctx.ledger_to_read()?;
    let mints = ledger.mint_keys()?;
    let keys: Vec<KeyView> = ledger
        .keys()?
        .iter()
        .filter(|k| args.all || status(k, &mints, now) == "active")
        .map(|k| view(&ledger, k, &mints, now))
        .collect();
    if args.json {
        crate::output::json(&keys)?;
        return Ok(ExitCode::SUCCESS);
    }
    if keys.is_empty() {
        crate::output::note(if args.all {
            "no keys; create one with `till key create`"
        } else {
            "no active keys (`--all` includes expired, revoked and invalid ones)"
        });
        return Ok(ExitCode::SUCCESS);
    }
    // The name column is 16 wide, wider for a longer name up to 40, and a name longer than
    // that is cut (`till key show` and `--json` have it whole).
    let names: Vec<_> = keys
        .iter()
        .map(|k| crate::output::printable(k.name.as_deref().unwrap_or("-")))
        .collect();
    let width = crate::format::column_width(names.iter().map(|n| n.as_ref()), 16, 40);
    let spends: Vec<String> = keys.iter().map(spend).collect();
    let spend_width =
        crate::format::column_width(spends.iter().map(String::as_str), 18, usize::MAX);
    let mut out = format!(
        "{:<12}  {:<width$}  {:<8}  {:<20}  {:<spend_width$}  {}\n",
        "ID", "NAME", "STATUS", "EXPIRES", "SPEND", "SCOPE"
    );
    // Every text here is the ledger's, which a program of yours could have written.
    let p = crate::output::printable;
    for ((k, name), spent) in keys.iter().zip(&names).zip(&spends) {
        out.push_str(&format!(
            "{:<12}  {}  {:<8}  {:<20}  {:<spend_width$}  {}\n",
            p(&k.id),
            crate::format::cell(name, width),
            k.status,
            p(&k.expires_at),
            spent,
            p(&k.scope)
        ));
    }
    crate::output::data(&out)?;
    Ok(ExitCode::SUCCESS)
}

fn show(ctx: &Ctx, args: &KeyShowArgs) -> anyhow::Result<ExitCode> {
    let ledger = ctx.ledger_to_read()?;
    let now = now_unix();
    let meta = if args.key.starts_with("till_") {
        let token = Token::decode(&args.key).map_err(|e| UserError::usage(e.to_string()))?;
        let b = token.binding().to_string();
        match ledger.find_key(&b)?.pop() {
            Some(m) => m,
            None => return inspect_token(Some(&ledger), &token, args.json),
        }
    } else {
        match one_key(&ledger, &args.key) {
            Ok(meta) => meta,
            // The id `till log` shows of a key narrowed from a created one (a run's, a
            // sub-agent's), which `till key revoke` takes too.
            Err(e) => match narrowed_key(&ledger, &args.key) {
                Ok(Some(binding)) => return show_narrowed(&ledger, &binding, args.json),
                _ => return Err(e),
            },
        }
    };
    let v = view(&ledger, &meta, &ledger.mint_keys()?, now);
    if args.json {
        crate::output::json(&v)?;
    } else {
        // Every text here is the ledger's, which a program of yours could have written.
        let p = crate::output::printable;
        let mut out = String::new();
        out.push_str(&format!("id:       {}\n", p(&v.id)));
        out.push_str(&format!(
            "name:     {}\n",
            p(v.name.as_deref().unwrap_or("-"))
        ));
        match &v.reason {
            Some(why) => out.push_str(&format!("status:   {}: {}\n", v.status, p(why))),
            None => out.push_str(&format!("status:   {}\n", v.status)),
        }
        out.push_str(&format!("scope:    {}\n", p(&v.scope)));
        out.push_str(&format!("created:  {}\n", p(&v.created_at)));
        out.push_str(&format!("expires:  {}\n", p(&v.expires_at)));
        if let Some(r) = &v.revoked_at {
            out.push_str(&format!("revoked:  {}\n", p(r)));
        }
        out.push_str(&format!(
            "spend:    {} in {}\n",
            spend(&v),
            crate::format::plural(v.requests, "request", "requests")
        ));
        out.push_str(&format!("binding:  {}\n", p(&v.binding)));
        crate::output::data(&out)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `till key show` of a key that made requests but was never created: what the ledger knows
/// (its requests and their cost, its lineage, its revocation or an ancestor's). Its scope and
/// expiry are in its text alone (`till key inspect KEY`).
fn show_narrowed(ledger: &Ledger, binding: &str, json: bool) -> anyhow::Result<ExitCode> {
    let u = ledger.narrowed_use(binding)?;
    let short = crate::childkey::Binding::short_hex(binding).to_string();
    // The first level, when it is another key's (the created one it came from).
    let from = u.levels.first().filter(|first| **first != short);
    let parent = from.map(|first| {
        ledger
            .find_key(first)
            .ok()
            .and_then(|mut found| (found.len() == 1).then(|| found.remove(0)))
            .and_then(|m| m.name)
            .map_or_else(|| first.clone(), |name| format!("{first} ({name})"))
    });
    let status = if u.revoked.is_some() {
        "revoked"
    } else {
        "not_revoked"
    };
    if json {
        crate::output::json(&serde_json::json!({
            "id": short,
            "binding": binding,
            "narrowed_from": from,
            "status": status,
            "revoked_at": u.revoked.as_ref().map(|(_, at)| rfc3339(*at)),
            "revoked_by": u.revoked.as_ref().map(|(b, _)| crate::childkey::Binding::short_hex(b).to_string()),
            "requests": u.requests,
            "spent_usd": u.cost_micros as f64 / 1e6,
            "tokens": u.tokens,
            "first_request_at": rfc3339(u.first_at),
            "last_request_at": rfc3339(u.last_at),
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    out.push_str(&format!("id:       {short}\n"));
    out.push_str(&format!(
        "kind:     narrowed{} (a run's or a sub-agent's; its scope and expiry are in its text: `till key inspect KEY`)\n",
        parent
            .map(|p| format!(" from {}", crate::output::printable(&p)))
            .unwrap_or_default()
    ));
    match &u.revoked {
        Some((b, at)) if b == binding => {
            out.push_str(&format!("status:   revoked at {}\n", rfc3339(*at)));
        }
        Some((b, at)) => out.push_str(&format!(
            "status:   revoked at {} with {}, a key it was narrowed from\n",
            rfc3339(*at),
            crate::childkey::Binding::short_hex(b)
        )),
        None => out.push_str("status:   not revoked (whether it has expired is in its text)\n"),
    }
    out.push_str(&format!(
        "spend:    {} and {} tokens in {}, {} to {}\n",
        crate::format::usd_micros(u.cost_micros),
        u.tokens,
        crate::format::plural(u.requests, "request", "requests"),
        rfc3339(u.first_at),
        rfc3339(u.last_at)
    ));
    out.push_str(&format!("binding:  {binding}\n"));
    crate::output::data(&out)?;
    Ok(ExitCode::SUCCESS)
}

fn revoke(ctx: &Ctx, args: &KeyRevokeArgs) -> anyhow::Result<ExitCode> {
    let now = now_unix();
    // Resolve everything first, so a typo in the third name revokes nothing; and read the keys
    // before the ledger is opened (and made), so arguments that name nothing leave no trace.
    // Each argument's key, or `None` for a name or id.
    let decoded = args
        .keys
        .iter()
        .map(|k| {
            k.starts_with("till_")
                .then(|| {
                    // Only the head of the argument: it may be a key.
                    Token::decode(k).map_err(|e| {
                        UserError::usage(format!("`{}…`: {e}", crate::format::head(k, 12)))
                    })
                })
                .transpose()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let existed = ctx.paths.ledger_file().exists();
    if let Some((name, _)) = args.keys.iter().zip(&decoded).find(|(_, t)| t.is_none())
        && !existed
    {
        return Err(no_such_key(name).into());
    }
    let ledger = ctx.ledger()?;
    if !existed {
        crate::output::warn(&format!(
            "there was no ledger at {}; till made one to record this revocation. A till proxy started before the old one was deleted no longer takes requests (it answers 503 ledger_gone) until it is restarted",
            ctx.paths.ledger_file().display()
        ));
    }
    // A key's text is revoked only once its signature checks: an altered copy (the real key's
    // scope and lineage, another tag) would revoke nothing that exists, while `till key show`
    // of the real key, which reads revocations by lineage, said it was revoked.
    if decoded.iter().any(Option::is_some) {
        let store = ctx.store()?;
        for (k, token) in args.keys.iter().zip(&decoded) {
            if let Some(token) = token {
                signed_by_this_till(store.as_ref(), k, token)?;
            }
        }
    }
    let mut targets = Vec::new();
    let n = args.keys.len();
    for (k, token) in args.keys.iter().zip(&decoded) {
        if let Some(token) = token {
            let lineage = token.lineage(token.level_count() - 1);
            targets.push((
                token.binding().to_string(),
                token.binding().short(),
                lineage,
            ));
        } else if ledger.find_key(k)?.is_empty()
            && let Some(binding) = narrowed_key(&ledger, k).map_err(|e| none_revoked(e, n))?
        {
            let label = crate::childkey::Binding::short_hex(&binding);
            targets.push((binding, label, None));
        } else {
            let meta = one_key(&ledger, k).map_err(|e| none_revoked(e, n))?;
            let label = meta
                .name
                .clone()
                .unwrap_or_else(|| crate::childkey::Binding::short_hex(&meta.binding));
            targets.push((meta.binding, label, None));
        }
    }
    for (binding, label, lineage) in targets {
        if ledger.revoke(&binding, lineage.as_deref(), now)? {
            crate::output::note(&format!("revoked {label} and every key narrowed from it"));
        } else {
            crate::output::note(&format!("{label} was already revoked"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// An argument of several that names no key: the message says the others were left alone
/// too (all or nothing), not only what was wrong with this one.
fn none_revoked(e: anyhow::Error, n: usize) -> anyhow::Error {
    if n < 2 {
        return e;
    }
    match e.downcast::<UserError>() {
        Ok(mut u) => {
            u.message = format!("{}; none of the {n} keys given was revoked", u.message);
            u.into()
        }
        Err(e) => e,
    }
}

/// A key narrowed from a created one (a run's, a sub-agent's, one made offline), by the id
/// `till log` shows: no table but the requests lists it. `None` when `k` is not an id (a name
/// or a mistyped id: `one_key` says so); an error for an id that names none, or several.
fn narrowed_key(ledger: &Ledger, k: &str) -> anyhow::Result<Option<String>> {
    if k.len() < 6 || !k.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(None);
    }
    match ledger.requesting_bindings(k)?.as_slice() {
        [binding] => Ok(Some(binding.clone())),
        [] => Err(UserError::usage(format!(
            "no created key has the id `{k}`, and no key with it has made a request"
        ))
        .hint("a key narrowed from a created one (a run's, a sub-agent's, one made offline) that has made no request is revoked by its text: till key revoke KEY")
        .into()),
        _ => Err(UserError::usage(format!(
            "`{k}` is the start of the ids of several keys that made requests"
        ))
        .hint("give more characters of the id")
        .into()),
    }
}

/// Refuses a key text whose HMAC chain does not check against the mint key it names (an
/// altered or made-up text). One whose mint key the store does not hold (no till proxy takes
/// it) is revoked all the same, with a warning that it could not be checked.
fn signed_by_this_till(
    store: &dyn crate::secrets::SecretStore,
    text: &str,
    token: &Token,
) -> anyhow::Result<()> {
    use secrecy::ExposeSecret as _;
    let shown = crate::format::head(text, 12);
    let kid = token.kid().to_string();
    let Some(stored) = store.get(&crate::secrets::mint_secret_name(&kid))? else {
        crate::output::warn(&format!(
            "`{shown}…` names a mint key ({kid}) the {} store does not hold, so its signature cannot be checked (and no till proxy takes it)",
            store.kind()
        ));
        return Ok(());
    };
    let mint = MintKey::from_stored(stored.expose_secret())?;
    match crate::childkey::verify(token, &mint) {
        // Signed by this till's mint key, with a caveat a newer till added: a real key.
        Ok(_) | Err(crate::childkey::Denial::UnknownCaveat { .. }) => Ok(()),
        Err(denial) => Err(UserError::usage(format!("`{shown}…`: {denial}; nothing was revoked"))
        .hint("revoke the key you gave out by its name or id (`till key list --all`), or by its text as till printed it")
        .into()),
    }
}

/// The key from the argument, or from stdin when it is not a terminal.
fn key_arg(arg: Option<&str>) -> anyhow::Result<Token> {
    let text = match arg {
        Some(k) => k.to_string(),
        None if !std::io::stdin().is_terminal() => {
            // A key is at most MAX_ENCODED_LEN characters: stdin is read no further than
            // what could still be one with space around it (`cat /dev/zero` ends here too).
            let most = crate::childkey::MAX_ENCODED_LEN as u64 + 4096;
            let mut bytes = Vec::new();
            if !super::input::stdin_at_most(&mut bytes, most)? {
                return Err(UserError::usage(format!(
                    "stdin holds more than a till key: a key is at most {} characters",
                    crate::childkey::MAX_ENCODED_LEN
                ))
                .hint("pipe the key itself, e.g. printf %s \"$TILL_KEY\" | till key inspect")
                .into());
            }
            let s = String::from_utf8(bytes).map_err(|_| {
                UserError::usage("the key on stdin is not text (UTF-8)")
                    .hint("pipe the key itself, e.g. printf %s \"$TILL_KEY\" | till key inspect")
            })?;
            s.trim().to_string()
        }
        None => String::new(),
    };
    if text.is_empty() {
        return Err(UserError::usage("no key given")
            .hint("pass the key as an argument or on stdin")
            .into());
    }
    Token::decode(&text).map_err(|e| UserError::usage(e.to_string()).into())
}

fn attenuate(ctx: &Ctx, args: &KeyAttenuateArgs) -> anyhow::Result<ExitCode> {
    let parent = key_arg(args.key.as_deref())?;
    let spec = super::scope_spec(ctx, &args.scope, None)?;
    let now = now_unix();
    let known = ctx.providers.names();
    spec.check_narrower(&parent, now, &known).map_err(|e| {
        UserError::usage(format!("cannot widen a key: {e}"))
            .hint("ask for the same scope or less; `till key inspect KEY` shows it")
    })?;
    let caveats = spec.to_caveats(now, &known).map_err(scope_err)?;
    if caveats.is_empty() {
        return Err(
            UserError::usage("nothing to narrow: give at least one scope flag")
                .hint("for example --ttl 10m or --scope openai/gpt-4o-mini")
                .into(),
        );
    }
    let child = parent.attenuate(caveats).map_err(super::mint_err)?;
    crate::output::data(&child.encode())?;
    crate::output::note(&format!("narrowed key {}", child.binding().short()));
    Ok(ExitCode::SUCCESS)
}

fn inspect(ctx: &Ctx, args: &KeyInspectArgs) -> anyhow::Result<ExitCode> {
    let token = key_arg(args.key.as_deref())?;
    // The ledger is read when there is one (not inside a sandbox, which hides it); a key is
    // never verified here, so no keychain is touched.
    let ledger = if ctx.paths.ledger_file().exists() {
        Some(ctx.ledger()?)
    } else {
        None
    };
    inspect_token(ledger.as_ref(), &token, args.json)
}

/// What the ledger can tell of any key without its mint key: revoked (itself, or an ancestor
/// by lineage or by being narrowed from a revoked created key), expired, made by a mint key
/// that is gone, or none of these.
#[derive(Debug)]
struct Standing {
    /// `active`, `expired`, `revoked`, `invalid`, or `unknown` when there is no ledger.
    status: &'static str,
    revoked_at: Option<String>,
    /// The ancestor whose revocation reaches this key (name or id); `None` when the key
    /// itself was revoked.
    revoked_by: Option<String>,
    /// Why a key is `invalid`.
    reason: Option<String>,
}

fn standing(
    ledger: Option<&Ledger>,
    token: &Token,
    expires: Option<u64>,
    now: u64,
) -> anyhow::Result<Standing> {
    let mut st = Standing {
        status: "active",
        revoked_at: None,
        revoked_by: None,
        reason: None,
    };
    let Some(ledger) = ledger else {
        st.status = if expires.is_some_and(|e| e <= now) {
            "expired"
        } else {
            "unknown"
        };
        return Ok(st);
    };
    let kid = token.kid().to_string();
    match ledger.mint_keys()?.into_iter().find(|m| m.kid == kid) {
        None => {
            st.status = "invalid";
            st.reason = Some("it was not made by this till's mint key".into());
            return Ok(st);
        }
        Some(m) if !m.signs_keys_at(now) => {
            st.status = "invalid";
            st.reason = Some(format!(
                "its mint key was replaced{}",
                m.retired_at
                    .map(|t| format!(" at {}", rfc3339(t)))
                    .unwrap_or_default()
            ));
            return Ok(st);
        }
        Some(_) => {}
    }
    let name_of = |binding: &str| -> anyhow::Result<String> {
        Ok(ledger
            .find_key(binding)?
            .pop()
            .and_then(|k| k.name)
            .unwrap_or_else(|| crate::childkey::Binding::short_hex(binding)))
    };
    let levels = token.level_count();
    let lineages: Vec<String> = (0..levels).filter_map(|l| token.lineage(l)).collect();
    let own = token.binding().to_string();
    if let Some((binding, at, level)) = ledger.revocation_of(&own, &lineages)? {
        st.status = "revoked";
        st.revoked_at = Some(rfc3339(at));
        if level.is_some_and(|l| l + 1 < levels) {
            st.revoked_by = Some(name_of(&binding)?);
        }
        return Ok(st);
    }
    if let Some(created) = ledger.created_key_by_nonce(&kid, &token.nonce_hex())?
        && let Some(at) = created.revoked_at
    {
        st.status = "revoked";
        st.revoked_at = Some(rfc3339(at));
        if created.binding != own {
            st.revoked_by = Some(
                created
                    .name
                    .clone()
                    .unwrap_or_else(|| crate::childkey::Binding::short_hex(&created.binding)),
            );
        }
        return Ok(st);
    }
    if expires.is_some_and(|e| e <= now) {
        st.status = "expired";
    }
    Ok(st)
}

fn inspect_token(ledger: Option<&Ledger>, token: &Token, json: bool) -> anyhow::Result<ExitCode> {
    let now = now_unix();
    let caveats = token.caveats();
    let expires = caveats
        .iter()
        .filter_map(|c| {
            if let Caveat::Expires(t) = c {
                Some(*t)
            } else {
                None
            }
        })
        .min();
    let levels: Vec<(usize, Vec<String>)> = token
        .levels()
        .into_iter()
        .map(|l| {
            let level = &caveats[l.caveats.clone()];
            let text = match ScopeSpec::from_caveats(level) {
                Ok(spec) => spec.to_args(),
                Err(_) => level.iter().map(|c| format!("{c:?}")).collect(),
            };
            (l.index, text)
        })
        .collect();
    let st = standing(ledger, token, expires, now)?;
    if json {
        crate::output::json(&serde_json::json!({
            "id": token.binding().short(),
            "kid": token.kid().to_string(),
            "status": st.status,
            "revoked_at": st.revoked_at,
            "revoked_by": st.revoked_by,
            "reason": st.reason,
            "expires_at": expires.map(rfc3339),
            "expired": expires.is_some_and(|e| e <= now),
            "levels": levels.iter().map(|(i, a)| serde_json::json!({"level": i, "scope": a})).collect::<Vec<_>>(),
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = format!(
        "id:      {}\nkid:     {}\n",
        token.binding().short(),
        token.kid()
    );
    if let Some(e) = expires {
        out.push_str(&format!(
            "expires: {}{}\n",
            rfc3339(e),
            if e <= now { " (expired)" } else { "" }
        ));
    }
    for (i, a) in &levels {
        out.push_str(&format!("level {i}: {}\n", shell_words(a)));
    }
    let status = match (&st.revoked_by, &st.revoked_at, &st.reason) {
        (Some(by), Some(at), _) => format!("revoked: `{by}`, a key it was narrowed from, was revoked at {at}"),
        (None, Some(at), _) => format!("revoked at {at}"),
        (_, _, Some(reason)) => format!("invalid: {reason}"),
        _ if st.status == "unknown" => "unknown: no ledger here to tell revocations (inside a sandbox, till's files are hidden)".into(),
        _ => st.status.to_string(),
    };
    // A name or reason here is the ledger's.
    out.push_str(&format!("status:  {}\n", crate::output::printable(&status)));
    out.push_str(
        "(the signature is checked by the proxy, with the mint key; this reads only the ledger)\n",
    );
    crate::output::data(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// `$0.12 of $5` (or tokens), counting the key and everything narrowed from it.
fn spend(k: &KeyView) -> String {
    use crate::format::usd;
    match (k.budget_usd, k.budget_tokens) {
        // Both: both, since either may be the one that refuses.
        (Some(b), Some(t)) => format!(
            "{} of {}, {} of {t} tok",
            usd(k.spent_usd),
            usd(b),
            k.spent_tokens
        ),
        (Some(b), None) => format!("{} of {}", usd(k.spent_usd), usd(b)),
        (None, Some(t)) => format!("{} of {t} tok", k.spent_tokens),
        (None, None) => usd(k.spent_usd),
    }
}
