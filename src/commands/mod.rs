//! One module per command. Each returns `anyhow::Result<ExitCode>`; errors carry a
//! [`UserError`](crate::error::UserError) where the exit code or a hint matters.

use std::process::ExitCode;

use std::sync::Arc;

use crate::cli::{Cli, Command, ScopeArgs};
use crate::config::{Config, Paths};
use crate::error::UserError;
use crate::ledger::Ledger;
use crate::ledger::RootKeyMeta;
use crate::ledger::owner::Owner;
use crate::ledger::writer::Writer;
use crate::providers::Providers;
use crate::proxy::{ProxyOptions, State};
use crate::scope::ScopeSpec;
use crate::secrets::SecretStore;

mod add;
mod completions;
mod doctor;
mod input;
pub mod key;
mod list;
mod log;
mod prices;
mod remove;
mod rotate;
pub mod run;
mod serve;
mod setup;
mod status;
mod usage;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Add(args) => add::run(&Ctx::load()?, &args),
        Command::Remove(args) => remove::run(&Ctx::load()?, &args),
        Command::List(args) => list::run(&Ctx::load()?, &args),
        Command::Doctor(args) => doctor::run(&args),
        Command::Rotate(args) => rotate::run(&Ctx::load()?, &args),
        Command::Status(args) => status::run(&Ctx::load()?, &args),
        Command::Run(args) => {
            let ctx = Ctx::load()?;
            status::warn_when_due(&ctx);
            run::run(&ctx, &args)
        }
        Command::Serve(args) => serve::run(&Ctx::load()?, &args),
        Command::Key(cmd) => key::run(&Ctx::load()?, cmd),
        Command::Log(args) => log::run(&Ctx::load()?, &args),
        Command::Usage(args) => usage::run(&Ctx::load()?, &args),
        Command::Prices(args) => prices::run(&Ctx::load()?, &args),
        Command::Setup(args) => setup::run(&args),
        Command::Completions(args) => completions::run(&args),
        Command::Manpage => completions::manpage(),
    }
}

/// `TILL_COMPLETE=WHAT till`, with no arguments: values for the completion scripts
/// ([`EnvVars::TILL_COMPLETE`]), one a line: `keys` (the active keys' names), `providers` (the
/// built-in and config.toml providers) or `stored` (the providers with a stored root key, from
/// the ledger; the keychain is never asked). `None` for every other command line.
pub fn complete_from_env() -> Option<ExitCode> {
    let asked = std::env::var_os(crate::env::EnvVars::TILL_COMPLETE)?;
    if std::env::args_os().len() != 1 {
        return None;
    }
    let values = |ctx: &Ctx| -> anyhow::Result<String> {
        Ok(match asked.to_str() {
            Some("keys") => key::active_names(ctx)?,
            Some("providers") => ctx
                .providers
                .names()
                .iter()
                .map(|n| format!("{n}\n"))
                .collect(),
            Some("scopes") => scope_values(ctx)?,
            Some("profiles") => ctx
                .config
                .profiles
                .keys()
                .map(|n| format!("{n}\n"))
                .collect(),
            Some("stored") => match ctx.ledger_if_there()? {
                Some(ledger) => ledger
                    .root_keys()?
                    .iter()
                    .map(|m| format!("{}\n", m.provider))
                    .collect(),
                None => String::new(),
            },
            _ => String::new(),
        })
    };
    // Nothing on stderr, nothing but success: a completion that cannot read what it needs
    // offers nothing. Only values a shell takes as one plain word: the completion inserts
    // them as they are, and a price table or config.toml (or a ledger) could hold a name
    // with `$(…)`, a `;` or a glob in it.
    if let Ok(text) = Ctx::load().and_then(|ctx| values(&ctx)) {
        let plain: String = text
            .lines()
            .filter(|v| is_plain_word(v))
            .flat_map(|v| [v, "\n"])
            .collect();
        if !plain.is_empty() {
            let _ = crate::output::data(&plain);
        }
    }
    Some(ExitCode::SUCCESS)
}

/// Whether `value` is a word no shell reads anything into: letters, digits and
/// `. _ - / : @ + = , %`, not starting with `-` or `=`.
fn is_plain_word(value: &str) -> bool {
    !value.is_empty()
        && !value.starts_with(['-', '='])
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/:@+=,%".contains(&b))
}

/// What `--scope` takes, for completion: each provider till knows (built in and config.toml),
/// then each `provider/model` of the price table in force for those providers.
fn scope_values(ctx: &Ctx) -> anyhow::Result<String> {
    let names = ctx.providers.names();
    let mut out: String = names.iter().map(|n| format!("{n}\n")).collect();
    let prices = crate::pricing::Prices::load(&ctx.paths, &ctx.config)?;
    for (entry, _) in prices.iter() {
        if entry
            .split_once('/')
            .is_some_and(|(provider, _)| names.contains(&provider))
        {
            out.push_str(entry);
            out.push('\n');
        }
    }
    Ok(out)
}

/// A key that cannot be made as asked (too long, too many caveats or levels): a usage error,
/// since other flags make it; anything else (no randomness) a runtime one.
pub fn mint_err(e: crate::childkey::MintError) -> anyhow::Error {
    use crate::childkey::MintError as M;
    let hint = match e {
        M::TooLong(_) => {
            "give fewer or shorter --scope patterns: a glob covers many models (openai/gpt-4o*)"
        }
        M::TooManyCaveats | M::TooManyLevels | M::Invalid(_) => {
            "`till key inspect KEY` shows what a key already holds"
        }
        _ => return e.into(),
    };
    UserError::usage(e.to_string()).hint(hint).into()
}

/// The `hint:` for an error chain: the first [`UserError`]'s or secrets-store error's, else
/// what to do about a ledger SQLite could not write or read.
pub fn hint(err: &anyhow::Error) -> Option<String> {
    crate::secrets::hint(err).or_else(|| ledger_hint(err))
}

/// What to do about a ledger that is read-only, held by another process, or not a database.
fn ledger_hint(err: &anyhow::Error) -> Option<String> {
    use rusqlite::ErrorCode;
    let code = err
        .chain()
        .find_map(|e| match e.downcast_ref::<rusqlite::Error>() {
            Some(rusqlite::Error::SqliteFailure(f, _)) => Some(f.code),
            _ => None,
        })?;
    let file = Paths::resolve().map_or_else(
        |_| "the ledger".to_string(),
        |p| p.ledger_file().display().to_string(),
    );
    Some(match code {
        ErrorCode::ReadOnly | ErrorCode::CannotOpen | ErrorCode::PermissionDenied => format!(
            "till could not write {file}: check that you own it and its directory and that they are writable, or point TILL_HOME elsewhere"
        ),
        ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => format!(
            "another process holds {file} (a sqlite3 shell in a transaction, a backup): end it and try again"
        ),
        ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt => format!(
            "{file} is damaged: restore it from a backup, or move it aside to start a new one (without its records of keys, revocations and usage)"
        ),
        // A full disk fails SQLite's writes as full, or as an I/O error where its shared
        // memory file cannot grow.
        ErrorCode::DiskFull | ErrorCode::SystemIoFailure => format!(
            "SQLite could not write {file} or the files beside it: check that its disk has space (`df`) and is not failing"
        ),
        _ => return None,
    })
}

/// Whether this till runs inside `till run --sandbox` (its `TILL_SANDBOX`), where till's data
/// directory and the keychain are hidden: for messages only, never for a decision.
pub fn in_sandbox() -> bool {
    std::env::var_os(crate::env::EnvVars::TILL_SANDBOX).is_some_and(|v| !v.is_empty())
}

/// What most commands need: where files are, the config, and the provider table.
pub struct Ctx {
    pub paths: Paths,
    pub config: Config,
    pub providers: Providers,
}

impl Ctx {
    /// Resolves paths and reads config.toml (a missing file is the default config).
    pub fn load() -> anyhow::Result<Self> {
        let paths = Paths::resolve()?;
        let config = Config::load(&paths.config_file)?;
        // `TILL_STORE` and `TILL_KEYCHAIN_TIMEOUT` are checked by every command, as config.toml's
        // `store` is, not only by those that open the store (`TILL_STORE=bogus till list` was
        // quietly fine).
        config.store_options(&paths)?;
        let providers = Providers::from_config(&config);
        Ok(Self {
            paths,
            config,
            providers,
        })
    }

    /// Opens the secrets store the config and environment select.
    pub fn store(&self) -> anyhow::Result<Box<dyn SecretStore>> {
        let opts = self.config.store_options(&self.paths)?;
        Ok(crate::secrets::open(&opts)?)
    }

    /// The ledger when there is one, quietly: `None` rather than an empty one made.
    pub fn ledger_if_there(&self) -> anyhow::Result<Option<Ledger>> {
        if self.paths.ledger_file().is_file() {
            self.ledger().map(Some)
        } else {
            Ok(None)
        }
    }

    /// The ledger for a command that only reads it. When there is none yet (a new or a
    /// mistyped `TILL_HOME`), an empty one in memory: reading makes no directory and no file,
    /// and a note says where till looked.
    pub fn ledger_to_read(&self) -> anyhow::Result<Ledger> {
        let path = self.paths.ledger_file();
        // Only a ledger that is certainly not there (a directory that cannot be read is an
        // error `ledger` reports).
        if matches!(path.try_exists(), Ok(false)) {
            crate::output::note(&if in_sandbox() {
                format!(
                    "till: no ledger at {}: inside `till run --sandbox`, till's files are hidden",
                    path.display()
                )
            } else {
                format!(
                    "till: no ledger at {} yet: nothing has been recorded there",
                    path.display()
                )
            });
            return Ledger::open_in_memory();
        }
        self.ledger()
    }

    /// Opens the ledger in the data directory, first settling the budget reservations of any
    /// till proxy that died with requests open.
    ///
    /// Every command does this, not only a starting proxy: `till key show`, `till log` and
    /// `till usage` then report a crashed proxy's requests and budgets at once, and a budget is
    /// not held hostage until the next proxy starts. When nothing is open it costs one read.
    pub fn ledger(&self) -> anyhow::Result<Ledger> {
        self.paths.ensure_data_dir()?;
        let mut ledger = Ledger::open(&self.paths.ledger_file())?;
        match ledger.recover(&self.paths.owners_dir()) {
            Ok(swept) if swept.requests > 0 => crate::output::note(&format!(
                "till: {} request(s) were left open by a till proxy that stopped without closing them; recorded as `lost` and charged what they had reserved ({})",
                swept.requests,
                crate::format::usd_micros(swept.micros)
            )),
            Ok(_) => {}
            Err(e) => crate::output::warn(&format!(
                "could not settle the reservations of a till proxy that died: {e:#}"
            )),
        }
        Ok(ledger)
    }
}

/// After a proxy has stopped and its writer has written everything: settles the reservations
/// its requests still hold (requests cut off after the grace, before their response began) at
/// what they reserved, records them as interrupted, and releases the owner lock.
pub fn settle_leftovers(ctx: &Ctx, owner: Owner) -> crate::ledger::counters::Swept {
    let settled = Ledger::open(&ctx.paths.ledger_file()).and_then(|mut l| {
        l.settle_owner(
            owner.id(),
            crate::ledger::counters::INTERRUPTED,
            crate::time::now_unix(),
        )
    });
    let swept = match settled {
        Ok(swept) => {
            if swept.requests > 0 {
                crate::output::note(&format!(
                    "till: {} still open when the proxy stopped; recorded as `interrupted` and charged {}, what {} reserved",
                    crate::format::plural(swept.requests, "request was", "requests were"),
                    crate::format::usd_micros(swept.micros),
                    if swept.requests == 1 {
                        "it had"
                    } else {
                        "they had"
                    }
                ));
            }
            swept
        }
        Err(e) => {
            crate::output::warn(&format!(
                "could not settle the requests still open at the stop (the next till will): {e:#}"
            ));
            crate::ledger::counters::Swept::default()
        }
    };
    drop(owner);
    swept
}

/// The run's or the proxy's totals with the requests settled at the stop counted in (they
/// were never answered, so the proxy's own count has not seen them).
pub fn with_settled(
    mut s: crate::proxy::StatsSnapshot,
    swept: &crate::ledger::counters::Swept,
) -> crate::proxy::StatsSnapshot {
    s.requests += swept.requests;
    s.cost_usd += swept.micros as f64 / 1e6;
    s
}

pub use crate::secrets::{admin_secret_name, root_secret_name};

/// The scope the user asked for: a profile from config.toml (with `-p`), then the flags on top.
pub fn scope_spec(ctx: &Ctx, args: &ScopeArgs, profile: Option<&str>) -> anyhow::Result<ScopeSpec> {
    let mut merged = args.clone();
    if let Some(name) = profile {
        let p = ctx.config.profiles.get(name).ok_or_else(|| {
            let known: Vec<&str> = ctx.config.profiles.keys().map(String::as_str).collect();
            UserError::usage(format!(
                "no profile `{name}` in {}",
                ctx.paths.config_file.display()
            ))
            .hint(if known.is_empty() {
                "define one under [profiles.NAME] in config.toml".to_string()
            } else {
                format!("known profiles: {}", known.join(", "))
            })
        })?;
        if merged.scope.is_empty() {
            merged.scope.clone_from(&p.scope);
        }
        if merged.endpoints.is_empty() {
            merged.endpoints = p.endpoints.clone().unwrap_or_default();
        }
        if merged.budget.is_empty() {
            merged.budget = p.budget.clone().into_iter().collect();
        }
        merged.ttl = merged.ttl.or_else(|| p.ttl.clone());
        merged.rpm = merged.rpm.or(p.rpm);
        merged.tpm = merged.tpm.or(p.tpm);
        merged.max_requests = merged.max_requests.or(p.max_requests);
        merged.max_output_tokens = merged.max_output_tokens.or(p.max_output_tokens);
    }
    warn_unpriced_models(ctx, &merged.scope);
    Ok(ScopeSpec {
        scopes: merged.scope,
        endpoints: (!merged.endpoints.is_empty()).then(|| merged.endpoints.join(",")),
        budget: merged.budget,
        ttl: merged.ttl,
        expires: None,
        rpm: merged.rpm,
        tpm: merged.tpm,
        max_requests: merged.max_requests,
        max_output_tokens: merged.max_output_tokens,
        session: None,
    })
}

/// Warns of a `--scope PROVIDER/MODEL` that matches none of that provider's models in the
/// price table, when the table lists the provider: most likely a typo (`gpt4o-mini`), which
/// would show first as a refusal inside the agent. A model the table does not list yet is
/// allowed all the same, so this is a warning, with the model it is a typo of when one is near.
fn warn_unpriced_models(ctx: &Ctx, scopes: &[String]) {
    /// Warnings written out in full; the rest are counted in one line.
    const SHOWN: usize = 5;
    // More patterns than a key holds are refused next, and that is all there is to say.
    if !scopes.iter().any(|s| s.contains('/')) || scopes.len() > crate::childkey::MAX_PATTERNS {
        return;
    }
    let mut warned = 0usize;
    let Ok(prices) = crate::pricing::Prices::load(&ctx.paths, &ctx.config) else {
        return;
    };
    for scope in scopes {
        let Some((provider, glob)) = scope.split_once('/') else {
            continue;
        };
        let Ok(pattern) = crate::childkey::ModelPattern::new(provider, Some(glob)) else {
            continue;
        };
        if pattern.is_provider_wide() {
            continue;
        }
        let prefix = format!("{provider}/");
        let models: Vec<String> = prices
            .iter()
            .filter_map(|(name, _)| name.strip_prefix(&prefix).map(str::to_string))
            .collect();
        let priced = |m: &str| {
            prices
                .lookup(provider, m)
                .is_some_and(|p| p.source != crate::pricing::PriceSource::ProviderMax)
        };
        if models.is_empty() || models.iter().any(|m| pattern.matches(provider, m)) || priced(glob)
        {
            continue;
        }
        warned += 1;
        if warned > SHOWN {
            continue;
        }
        let near = crate::scope::closest(glob, &models)
            .map(|m| format!("; did you mean `{provider}/{m}`?"))
            .unwrap_or_default();
        crate::output::warn(&format!(
            "--scope {scope} matches no {provider} model in till's price table{near} (a model the table does not list yet is allowed all the same)"
        ));
    }
    if warned > SHOWN {
        crate::output::warn(&format!(
            "{} more --scope patterns match no model in till's price table",
            warned - SHOWN
        ));
    }
}

/// Provider names a spec's `--scope` patterns mention, in order, without repeats.
pub fn spec_providers(spec: &ScopeSpec) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in &spec.scopes {
        let name = s.split('/').next().unwrap_or(s).to_string();
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// The providers a key's allow lists leave it (`None` when it has no allow list: every one).
pub fn token_providers(caveats: &[crate::childkey::Caveat]) -> Option<Vec<String>> {
    // Every allow caveat must pass, so a provider is the key's when each names it: a key for
    // openai and anthropic narrowed to openai is a key for openai alone.
    let mut out: Option<Vec<String>> = None;
    for c in caveats {
        if let crate::childkey::Caveat::Allow(patterns) = c {
            let mut names: Vec<String> = Vec::new();
            for p in patterns {
                if !names.iter().any(|n| n == p.provider()) {
                    names.push(p.provider().to_string());
                }
            }
            out = Some(match out {
                None => names,
                Some(before) => before.into_iter().filter(|n| names.contains(n)).collect(),
            });
        }
    }
    out
}

/// An allow caveat for whole providers.
pub fn allow_providers(names: &[String]) -> anyhow::Result<crate::childkey::Caveat> {
    let patterns = names
        .iter()
        .map(|n| crate::childkey::ModelPattern::new(n, None).map_err(|e| anyhow::anyhow!(e)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(crate::childkey::Caveat::Allow(patterns))
}

/// A random session id for one `till run` (16 hex characters).
pub fn new_session_id() -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the OS random number generator works");
    hex::encode(b)
}

/// Turns a scope error into a usage error with its hint.
pub fn scope_err(e: crate::scope::ScopeError) -> anyhow::Error {
    UserError::from(e).into()
}

/// Refuses a key that would expire after `[keys] max_ttl`, the longest TTL any key may get:
/// `expires` is the expiry the key's `--ttl` (or its profile's `ttl`) gives it.
pub fn check_max_ttl(ctx: &Ctx, spec: &ScopeSpec, expires: u64, now: u64) -> anyhow::Result<()> {
    let max_ttl = ctx.config.keys.max_ttl.0.as_secs();
    if expires > now + max_ttl {
        let asked = match &spec.ttl {
            Some(ttl) => format!("--ttl {ttl}"),
            None => format!(
                "[keys] default_ttl = \"{}\"",
                crate::time::duration_text(ctx.config.keys.default_ttl.0)
            ),
        };
        return Err(UserError::usage(format!(
            "{asked} is longer than the ceiling, [keys] max_ttl = \"{}\"",
            crate::time::duration_text(std::time::Duration::from_secs(max_ttl))
        ))
        .hint("ask for less, or raise [keys] max_ttl in config.toml")
        .into());
    }
    Ok(())
}

/// The providers an agent gets variables for: those its scope names, or every stored one.
/// Each must have a stored root key.
pub fn scoped_providers(
    ctx: &Ctx,
    spec: &ScopeSpec,
    stored: &[RootKeyMeta],
) -> anyhow::Result<Vec<String>> {
    let named = spec_providers(spec);
    if named.is_empty() {
        return Ok(stored.iter().map(|m| m.provider.clone()).collect());
    }
    for name in &named {
        ctx.providers.require(name)?;
        if !stored.iter().any(|m| &m.provider == name) {
            return Err(UserError::runtime(format!(
                "the scope names {name}, but no {name} key is stored"
            ))
            .hint(format!("add it: till add {name}"))
            .into());
        }
    }
    Ok(named)
}

/// Everything a proxy needs: root keys and mint keys from the store, a ledger connection to
/// watch, and a ledger writer for its request rows.
pub struct ProxyParts {
    pub state: Arc<State>,
    pub writer: Writer,
    /// The current mint key (for minting a session key).
    pub mint: crate::childkey::MintKey,
    pub ledger: crate::ledger::Ledger,
    /// Held while the proxy runs; give it to [`settle_leftovers`] after the stop.
    pub owner: Owner,
    /// The store the root and mint keys were read from, open for anything else the command
    /// needs from it (`till run` reads the admin keys to keep them from the agent).
    pub store: Arc<dyn SecretStore>,
}

pub fn proxy_state(
    ctx: &Ctx,
    session: Option<String>,
    loopback: bool,
) -> anyhow::Result<ProxyParts> {
    let ledger = ctx.ledger()?;
    let store: Arc<dyn SecretStore> = Arc::from(ctx.store()?);
    let mut roots = Vec::new();
    for meta in ledger.root_keys()? {
        let key = store
            .get(&root_secret_name(&meta.provider))?
            .ok_or_else(|| {
                UserError::runtime(format!(
                    "the {} key is in the ledger but not in the {} store",
                    meta.provider,
                    store.kind()
                ))
                .hint(format!(
                    "store it again: till add {p}; or, if you no longer use {p}, forget it: till remove {p}",
                    p = meta.provider
                ))
            })?;
        if !crate::secrets::header_safe(secrecy::ExposeSecret::expose_secret(&key)) {
            crate::output::warn(&format!(
                "the stored {p} key has a character no HTTP header can carry (a line break, a space, a letter outside ASCII); requests to {p} get 503 until you store it again: till add {p} --replace",
                p = crate::output::printable(&meta.provider)
            ));
        }
        roots.push((meta.provider.clone(), key));
    }
    let retention = ctx.config.ledger.retention.0.as_secs();
    ledger.prune(crate::time::now_unix().saturating_sub(retention))?;
    let mint = crate::mint::current(&ledger, store.as_ref())?;
    let mints = crate::mint::all_valid(&ledger, store.as_ref(), crate::time::now_unix())?;
    let proxy = &ctx.config.proxy;
    let options = ProxyOptions {
        session: session.clone(),
        max_body_bytes: proxy.max_body_bytes,
        upstream_timeout: proxy.upstream_timeout.0,
        loopback,
        shutdown_grace: proxy.shutdown_grace.0,
        max_connections: proxy.max_connections,
        header_timeout: proxy.header_timeout.0,
        body_timeout: proxy.body_timeout.0,
    };
    let owner = Owner::claim(&ctx.paths.owners_dir())?;
    let writer = Writer::start(&ctx.paths.ledger_file())?;
    // What dead proxies left was settled when `ledger` was opened above: the proxy's other
    // connections need not look again.
    let open = || Ledger::open(&ctx.paths.ledger_file());
    let prices = crate::pricing::Prices::load(&ctx.paths, &ctx.config)?;
    let state = State::new(
        ctx.providers.clone(),
        options,
        open()?,
        Some(store.clone()),
        roots,
        mints,
    )?
    .with_live_prices(crate::pricing::live::LivePrices::watching(
        prices,
        ctx.paths.clone(),
    ))
    .with_ledger(writer.handle(), open()?)
    .with_owner(owner.id())
    .print_alerts(true);
    Ok(ProxyParts {
        state: Arc::new(state),
        writer,
        mint,
        ledger,
        owner,
        store,
    })
}

/// A `--since` value: a duration back from now (`7d`) or an RFC 3339 time.
pub fn parse_since(text: &str) -> anyhow::Result<u64> {
    if let Ok(d) = crate::time::parse_duration(text) {
        return Ok(crate::time::now_unix().saturating_sub(d.as_secs()));
    }
    // A day as `till usage --by day` prints it: its start, in UTC.
    let day = text.len() == 10 && text.as_bytes()[4] == b'-' && text.as_bytes()[7] == b'-';
    let whole = if day {
        format!("{text}T00:00:00Z")
    } else {
        text.to_string()
    };
    if let Some(at) = crate::time::parse_time(&whole) {
        return Ok(at);
    }
    Err(
        UserError::usage(format!("--since `{text}` is neither a duration nor a time"))
            .hint("use a duration such as 30m or 7d, a day such as 2026-11-01 (from its start, UTC), or a time such as 2026-11-01T09:00:00Z or 2026-11-01T10:00:00+01:00")
            .into(),
    )
}

/// The short binding a `--key` filter matches in request lineages: a name, an id prefix, or
/// the key itself.
pub fn key_lineage(ledger: &crate::ledger::Ledger, key: &str) -> anyhow::Result<String> {
    if key.starts_with("till_") {
        let token = crate::childkey::Token::decode(key)
            .map_err(|e| UserError::usage(format!("--key: {e}")))?;
        return Ok(token.binding().short());
    }
    let found = ledger.find_key(key)?;
    match found.as_slice() {
        [one] => Ok(crate::childkey::Binding::short_hex(&one.binding)),
        [] if key.len() >= 6 && key.chars().all(|c| c.is_ascii_hexdigit()) => Ok(
            crate::childkey::Binding::short_hex(&key.to_ascii_lowercase()),
        ),
        [] => Err(key::no_such_key(key).into()),
        _ => Err(UserError::usage(format!("`{key}` matches several keys"))
            .hint("give more of the id")
            .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_since;

    #[test]
    fn a_full_disk_under_the_ledger_gets_a_hint_about_space() {
        // SQLITE_FULL, and SQLITE_IOERR_SHMSIZE (a `-shm` file that cannot grow on a full disk).
        for code in [13, 4874] {
            let e = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
            let e = anyhow::Error::from(e).context("cannot prepare the ledger");
            let hint = super::hint(&e).unwrap_or_default();
            assert!(
                hint.contains("check that its disk has space"),
                "{code}: {hint}"
            );
        }
    }

    #[test]
    fn since_takes_days_offsets_and_times_without_a_zone_as_utc() {
        let at = |t: &str| parse_since(t).unwrap();
        let noon = at("2026-12-03T12:00:00Z");
        assert_eq!(at("2026-12-03T12:00:00"), noon);
        assert_eq!(at("2026-12-03T13:00:00+01:00"), noon);
        assert_eq!(at("2026-12-03T06:30:00-05:30"), noon);
        assert_eq!(at("2026-12-03T13:00:00.5+01:00"), noon);
        assert_eq!(at("2026-12-03"), noon - 12 * 3600);
        for bad in [
            "2026-12-03T13:00:00+1:00",
            "2026-12-03T13:00:00+25:00",
            "2026-13-03",
            "yesterday",
            "+01:00",
        ] {
            let e = parse_since(bad).unwrap_err().to_string();
            assert!(e.contains("is neither a duration nor a time"), "{bad}: {e}");
        }
    }
}
