//! Command-line definitions, and nothing else: doc comments are the help text.

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

/// Scoped, short-lived API keys for AI agents.
///
/// till keeps your provider keys (OpenAI, Anthropic, Gemini, and any OpenAI-compatible API) in
/// the OS keychain and hands agents child keys that are scoped, budgeted and expiring instead.
/// A loopback proxy inside till checks each request, swaps in the real key and records usage.
///
/// Start with `till add openai`, then `till run -- your-agent`.
#[derive(Debug, Parser)]
#[command(name = "till", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Store a provider's root key in the secrets store.
    ///
    /// The key is read from a hidden prompt, from stdin when stdin is not a terminal, or from an
    /// environment variable with --from-env. It is checked against the provider with a cheap
    /// authenticated call first and nothing is stored if the provider rejects it.
    Add(AddArgs),
    /// Delete a provider's root key from the secrets store.
    ///
    /// The key goes from the secrets store and from the ledger's list of keys. A running
    /// `till run` or `till serve` forwards nothing more for that provider (its requests are
    /// answered 503) until `till add` stores a key again. The key itself still works at the
    /// provider: revoke it in the provider's console if it should stop.
    Remove(RemoveArgs),
    /// List stored root keys (provider, fingerprint, age); never key material.
    List(ListArgs),
    /// Check that till can work here: config, secrets store, keys, data directory.
    Doctor(DoctorArgs),
    /// Replace a provider's root key, or the mint key, with a new one.
    ///
    /// With an admin key for OpenAI (`till add openai --admin`) and `[providers.openai]
    /// admin_project = "proj_…"` in config.toml, till creates a new service-account key in that
    /// project, checks it, stores it, and deletes the old key. Otherwise it is guided: till says
    /// where to create the new key, reads it from a hidden prompt (or stdin, or --from-env),
    /// checks it against the provider and swaps it in; with an Anthropic admin key it then sets
    /// the old key inactive. The old key keeps working until the new one is checked, and a
    /// failure at any step leaves the old key in place and the store unchanged. Running `till
    /// run` and `till serve` proxies switch to the new key on their next request.
    ///
    /// --mint makes a new mint key; keys signed by the old one stop working at once, or when
    /// --grace ends. --due rotates every key older than `[rotation] max_age` that needs no
    /// person, and lists the ones that do (cron-friendly with --yes).
    ///
    /// Exit status: 0 when the rotation succeeded (with --due: when no key is left due); 1 when
    /// a step failed (the old key still works) or, with --due, when some keys need a person or
    /// failed; 2 on a usage error.
    #[command(
        after_help = "Examples:\n  till rotate openai\n  till rotate anthropic --from-env NEW_KEY\n  till rotate --mint --grace 1h\n  till rotate --due --yes"
    )]
    Rotate(RotateArgs),
    /// Show stored keys, their ages, and which are due for rotation.
    ///
    /// Lists root keys, admin keys and the mint key. A key is due when it is older than
    /// `[rotation] max_age` in config.toml (admin keys are shown but never due).
    Status(StatusArgs),
    /// Run an agent with a scoped child key instead of your root keys.
    ///
    /// till mints a key bound to this run, starts a loopback proxy, and runs CMD with the
    /// providers' API-key variables set to the child key and their base-URL variables pointing
    /// at the proxy (OPENAI_API_KEY=till_…, OPENAI_BASE_URL=http://127.0.0.1:PORT/openai/v1, …).
    /// Root keys never reach the agent. With no scope flags the agent may use every stored
    /// provider's inference endpoints until the run ends. till exits with the agent's exit code
    /// (128+N when signal N killed it; 127 when CMD is not found, 126 when it cannot be run).
    ///
    /// Inside a till run, `till run` narrows the current key for a sub-agent and reuses the
    /// outer proxy; it cannot widen the key.
    #[command(
        after_help = "Examples:\n  till run -- python agent.py\n  till run --scope openai/gpt-4o-mini --budget 1usd --ttl 30m -- aider\n  till run -p cheap -- ./loop.sh\n  till run --sandbox --net proxy -- python agent.py"
    )]
    Run(RunArgs),
    /// Serve keys made by `till key create` on a fixed port, until interrupted.
    ///
    /// Binds 127.0.0.1:8417 unless --listen says otherwise. Keys minted for a `till run`
    /// session are refused here.
    Serve(ServeArgs),
    /// Create, list, inspect, narrow and revoke child keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Show the requests agents made through till, newest last.
    ///
    /// One line per request: time, key, provider/model, status, tokens, cost, latency and,
    /// for refused requests, why. `--alerts` shows the alert events instead.
    Log(LogArgs),
    /// Totals of requests, tokens and spend, grouped by key, model, provider or day.
    Usage(UsageArgs),
    /// Show the model prices till charges budgets at, or refresh them.
    ///
    /// Prices are USD per million tokens: input, cache reads, cache writes (five-minute and
    /// one-hour), output, and the long-prompt tier where a provider has one. The table in force
    /// is this machine's copy from `till prices update` when there is one, else the one built
    /// into till (generated from LiteLLM's model price table), with `[prices."provider/model"]`
    /// entries of config.toml on top. A model not listed is charged its provider's highest
    /// prices when the table lists the provider; otherwise it has no price (a key with a dollar
    /// budget may not use it until config.toml gives one).
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "Examples:\n  till prices\n  till prices claude-sonnet\n  till prices --json openai/\n  till prices update\n  till prices update --from ./model_prices_and_context_window.json\n  till prices reset"
    )]
    Prices(PricesArgs),
    /// Do the one-time setup an agent needs to work under `till run`.
    ///
    /// Only Gemini CLI needs one: it refuses GOOGLE_GEMINI_BASE_URL unless its auth type is
    /// chosen, so this sets `security.auth.selectedType = "gemini-api-key"` in
    /// ~/.gemini/settings.json (under GEMINI_CLI_HOME when set), keeping everything else in
    /// the file as it is. Claude Code and Codex CLI need nothing: `till run` adapts their
    /// launch each run and changes none of their files.
    #[command(after_help = "Examples:\n  till setup gemini --dry-run\n  till setup gemini")]
    Setup(SetupArgs),
    /// Print a shell completion script.
    ///
    /// bash: `till completions bash > ~/.local/share/bash-completion/completions/till`;
    /// zsh: put `_till` in a directory on $fpath; fish: `~/.config/fish/completions/till.fish`.
    Completions(CompletionsArgs),
    /// Print till's man page (roff) to stdout.
    #[command(hide = true)]
    Manpage,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// Provider name: openai, anthropic, gemini, mistral, groq, openrouter, deepseek, xai,
    /// together, or one from [providers.NAME] in config.toml.
    #[arg(value_hint = clap::ValueHint::Other, value_parser = ProviderName, hide_possible_values = true)]
    pub provider: String,
    /// Read the key from this environment variable instead of a prompt or stdin.
    #[arg(long, value_name = "VAR")]
    pub from_env: Option<String>,
    /// Store the key without checking it against the provider.
    #[arg(long)]
    pub no_verify: bool,
    /// Store an admin key (OpenAI or Anthropic) that `till rotate` uses to create, delete or
    /// deactivate keys. It is never given to agents.
    #[arg(long)]
    pub admin: bool,
    /// Replace a different key already stored for the provider (without it, that is refused;
    /// `till rotate PROVIDER` replaces a key and retires the old one).
    #[arg(long)]
    pub replace: bool,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).args(["provider", "mint", "due"])))]
#[command(group(ArgGroup::new("mint_keys").args(["mint", "due"])))]
pub struct RotateArgs {
    /// Provider whose root key to replace.
    #[arg(value_hint = clap::ValueHint::Other, value_parser = ProviderName, hide_possible_values = true)]
    pub provider: Option<String>,
    /// Replace the mint key that signs child keys.
    #[arg(long)]
    pub mint: bool,
    /// Rotate every key older than `[rotation] max_age` that needs no person; list the rest.
    #[arg(long)]
    pub due: bool,
    /// How long keys signed by the old mint key keep working: 30m, 1h, 7d (default: they stop
    /// at once). With --mint or --due only.
    #[arg(long, value_name = "DURATION", value_parser = crate::time::parse_duration)]
    pub grace: Option<std::time::Duration>,
    /// With --due: rotate without asking (needed when stdin is not a terminal). --mint asks
    /// nothing and takes it too; a provider's rotation, which asks for the new key, does not.
    #[arg(long)]
    pub yes: bool,
    /// Read the new key from this environment variable instead of a prompt or stdin.
    #[arg(long, value_name = "VAR", conflicts_with_all = ["mint", "due"])]
    pub from_env: Option<String>,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// Provider whose root key to delete.
    #[arg(value_hint = clap::ValueHint::Other, value_parser = ProviderName, hide_possible_values = true)]
    pub provider: String,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the checks as JSON (a list of `{"check", "ok", "detail"}`) instead of lines; the
    /// exit code is the same (1 when any check fails).
    #[arg(long)]
    pub json: bool,
}

/// The flags that describe a key's scope. Each maps to one caveat.
#[derive(Debug, Args, Clone, Default)]
pub struct ScopeArgs {
    /// Provider, or provider/model-glob, the key may use; repeatable
    /// (openai, openai/gpt-4o-mini, 'anthropic/claude-haiku-*').
    #[arg(value_hint = clap::ValueHint::Other, long = "scope", short = 's', value_name = "PROVIDER[/MODEL]")]
    pub scope: Vec<String>,
    /// Endpoint classes the key may call, comma-separated: inference (the default), models,
    /// files, batches, admin, realtime, or all.
    #[arg(value_hint = clap::ValueHint::Other, long, value_name = "CLASSES", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// Spending ceiling for the key and every key derived from it: 5usd, $5, 0.50usd, 200ktok.
    /// Give it twice for a dollar and a token budget.
    // A value that starts with `-` (`-1usd`) is taken as the value, so that till's own
    // message says what is wrong with it, not clap's "unexpected argument".
    #[arg(long, value_name = "AMOUNT", allow_hyphen_values = true)]
    pub budget: Vec<String>,
    /// How long the key lives: 30m, 1h, 7d.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub ttl: Option<String>,
    /// Requests per minute.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub rpm: Option<u32>,
    /// Tokens per minute (counted from each request's own token ceiling).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub tpm: Option<u64>,
    /// Total number of requests the key may make.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub max_requests: Option<u64>,
    /// Largest `max_tokens` a request may ask for; requests that ask for none are capped.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub max_output_tokens: Option<u64>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Start from a profile in config.toml ([profiles.NAME]); flags override it.
    #[arg(short = 'p', long, value_name = "NAME")]
    pub profile: Option<String>,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Narrow an existing key (made by `till key create`; its name, id or the key itself)
    /// instead of minting a fresh one.
    #[arg(value_hint = clap::ValueHint::Other, long, value_name = "KEY|NAME")]
    pub key: Option<String>,
    /// Print no summary when the agent exits.
    #[arg(short, long)]
    pub quiet: bool,
    /// Run the agent in a sandbox (Linux): till's files and credential paths hidden, writes
    /// only to the working directory, a private /tmp and `[sandbox] writable`, no keychain, no
    /// signals, tracing or memory reads of till.
    #[arg(long, overrides_with = "no_sandbox")]
    pub sandbox: bool,
    /// Run without the sandbox even when config.toml or the profile turns it on.
    #[arg(long, overrides_with = "sandbox")]
    pub no_sandbox: bool,
    /// The sandbox's network: `open` leaves it as it is (the default), `proxy` lets the agent
    /// reach this run's proxy and nothing else.
    #[arg(long, value_name = "proxy|open")]
    pub net: Option<crate::sandbox::Net>,
    /// The agent's command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<std::ffi::OsString>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on. Anything but loopback exposes the proxy to the network.
    /// `localhost:PORT` means 127.0.0.1:PORT.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8417", value_parser = listen_addr)]
    pub listen: std::net::SocketAddr,
}

/// An address to listen on: an IP address and port, or `localhost:PORT` for 127.0.0.1 (a name
/// is not looked up: `localhost` may resolve to an address that is not loopback).
fn listen_addr(text: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let host = "localhost:";
    if let Some(port) = text
        .get(..host.len())
        .filter(|start| start.eq_ignore_ascii_case(host))
        .map(|_| &text[host.len()..])
    {
        let port: u16 = port.parse().map_err(|_| {
            format!(
                "`{}` is not a port number (0 to 65535)",
                crate::output::printable(port)
            )
        })?;
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    Err(
        "give an IP address and port, such as 127.0.0.1:8417 or [::1]:8417 (or localhost:PORT)"
            .into(),
    )
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Mint a child key and print it once.
    ///
    /// The key works through `till serve` (or `till run --key`). It is never stored; its
    /// metadata is, so it can be listed, shown and revoked.
    #[command(
        after_help = "Example:\n  till key create --name ci --scope 'anthropic/claude-haiku-*' --budget 5usd --ttl 24h"
    )]
    Create(KeyCreateArgs),
    /// List keys made by `till key create`.
    List(KeyListArgs),
    /// Show one key's scope, expiry, spend and status.
    Show(KeyShowArgs),
    /// Revoke keys; every key narrowed from them stops working too.
    Revoke(KeyRevokeArgs),
    /// Narrow a key offline (no keychain needed) and print the narrower key.
    ///
    /// The key comes from the argument, or from stdin when none is given.
    Attenuate(KeyAttenuateArgs),
    /// Decode a key without verifying it: its scope, limits and expiry.
    ///
    /// Needs no secret, so an agent can see its own limits: `till key inspect $TILL_KEY`.
    Inspect(KeyInspectArgs),
}

#[derive(Debug, Args)]
pub struct KeyCreateArgs {
    /// A name to refer to the key by.
    #[arg(value_hint = clap::ValueHint::Other, long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Print JSON (key, id, scope, expiry) instead of the bare key.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct KeyListArgs {
    /// Include expired and revoked keys.
    #[arg(long)]
    pub all: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct KeyShowArgs {
    /// The key's name, id (binding prefix) or the key itself.
    #[arg(value_hint = clap::ValueHint::Other)]
    pub key: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct KeyRevokeArgs {
    /// Names, ids or keys to revoke.
    #[arg(value_hint = clap::ValueHint::Other, required = true)]
    pub keys: Vec<String>,
}

#[derive(Debug, Args)]
pub struct KeyAttenuateArgs {
    /// The key to narrow; read from stdin when left out.
    #[arg(value_hint = clap::ValueHint::Other)]
    pub key: Option<String>,
    #[command(flatten)]
    pub scope: ScopeArgs,
}

#[derive(Debug, Args)]
pub struct KeyInspectArgs {
    /// The key to decode; read from stdin when left out.
    #[arg(value_hint = clap::ValueHint::Other)]
    pub key: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Keep printing new requests as they arrive (Ctrl-C stops).
    #[arg(short, long)]
    pub follow: bool,
    /// Only this key (name, id or the key itself) and the keys narrowed from it.
    #[arg(value_hint = clap::ValueHint::Other, long, value_name = "KEY|NAME")]
    pub key: Option<String>,
    /// Only requests since then: a duration back from now (30m, 7d), a day (2026-11-01, from its
    /// start in UTC) or a time (2026-11-01T09:00:00Z, 2026-11-01T10:00:00+01:00).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only refused requests.
    #[arg(long)]
    pub denied: bool,
    /// Show alert events (first denials, budget marks, rate jumps, dead keys) instead.
    #[arg(long, conflicts_with = "denied")]
    pub alerts: bool,
    /// How many of the newest requests to show.
    #[arg(short = 'n', long, default_value_t = 50, allow_negative_numbers = true,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=i64::MAX as u64))]
    pub limit: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PricesArgs {
    #[command(subcommand)]
    pub action: Option<PricesAction>,
    /// Only models whose `provider/model` contains this text.
    pub filter: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum PricesAction {
    /// Fetch LiteLLM's model price table and keep it as this machine's copy.
    ///
    /// The table is read in full and checked before anything is written; the copy replaces the
    /// previous one in one step. Running proxies pick it up when they next start.
    Update(PricesUpdateArgs),
    /// Delete this machine's copy and use the table built into till again.
    Reset,
}

#[derive(Debug, Args)]
pub struct PricesUpdateArgs {
    /// A file or an http(s) URL of a table in LiteLLM's format
    /// (model_prices_and_context_window.json); LiteLLM's repository when left out.
    #[arg(long, value_name = "FILE|URL")]
    pub from: Option<String>,
    /// Keep the new table even when it lacks most of the models the table in use prices
    /// (a partial download or another file would otherwise leave them unpriced).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct UsageArgs {
    /// Only requests since then: a duration back from now (7d), a day (2026-11-01, from its
    /// start in UTC) or a time (2026-11-01T09:00:00Z, 2026-11-01T10:00:00+01:00).
    #[arg(long, value_name = "WHEN", default_value = "30d")]
    pub since: String,
    /// How to group the totals.
    #[arg(long, value_enum, default_value_t = GroupArg::Model)]
    pub by: GroupArg,
    /// Only this key (name, id or the key itself) and the keys narrowed from it.
    #[arg(value_hint = clap::ValueHint::Other, long, value_name = "KEY|NAME")]
    pub key: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Groupings for `till usage --by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GroupArg {
    Key,
    Model,
    Provider,
    Day,
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// The agent to set up.
    pub agent: SetupAgent,
    /// Say what would change without writing anything.
    #[arg(long)]
    pub dry_run: bool,
}

/// Agents `till setup` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SetupAgent {
    /// Gemini CLI (@google/gemini-cli)
    Gemini,
    /// Claude Code (nothing to do)
    Claude,
    /// Codex CLI (nothing to do)
    Codex,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to generate completions for.
    pub shell: Shell,
}

/// Shells with completion scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
    Powershell,
    Elvish,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn listen_takes_an_address_or_localhost_and_a_port() {
        let at = |text: &str| listen_addr(text).map(|a| a.to_string());
        assert_eq!(at("127.0.0.1:8417").as_deref(), Ok("127.0.0.1:8417"));
        assert_eq!(at("[::1]:9").as_deref(), Ok("[::1]:9"));
        assert_eq!(at("localhost:8417").as_deref(), Ok("127.0.0.1:8417"));
        assert_eq!(at("LocalHost:0").as_deref(), Ok("127.0.0.1:0"));
        assert!(at("localhost:65536").unwrap_err().contains("not a port"));
        let escaped = at("localhost:\u{1b}[2J").unwrap_err();
        assert!(!escaped.contains('\u{1b}'), "{escaped}");
        assert!(at("localhost").unwrap_err().contains("IP address and port"));
        assert!(at("example.com:80").is_err());
    }

    /// `--rpm -5` was "unexpected argument '-5' found", with a tip to pass it after `--`.
    #[test]
    fn a_negative_number_is_a_bad_value_not_an_unknown_argument() {
        for args in [
            &["till", "key", "create", "--rpm", "-5"][..],
            &["till", "log", "-n", "-1"],
        ] {
            let err = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{err}");
        }
    }

    #[test]
    fn log_shows_refusals_or_alerts_not_both() {
        let err = Cli::try_parse_from(["till", "log", "--denied", "--alerts"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }
}

/// A provider's name as given (one from config.toml's `[providers.NAME]` is checked when the
/// config is read), with the built-in names offered to shell completions.
#[derive(Debug, Clone, Copy)]
pub struct ProviderName;

impl clap::builder::TypedValueParser for ProviderName {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        clap::builder::StringValueParser::new().parse_ref(cmd, arg, value)
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(
            crate::providers::builtin_names()
                .into_iter()
                .map(clap::builder::PossibleValue::new),
        ))
    }
}
