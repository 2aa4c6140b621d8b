//! Command-line definitions, and nothing else: doc comments are the help text.

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    Remove(RemoveArgs),
    /// List stored root keys (provider, fingerprint, age); never key material.
    List(ListArgs),
    /// Check that till can work here: config, secrets store, keys, data directory.
    Doctor,
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
    pub provider: String,
    /// Read the key from this environment variable instead of a prompt or stdin.
    #[arg(long, value_name = "VAR")]
    pub from_env: Option<String>,
    /// Store the key without checking it against the provider.
    #[arg(long)]
    pub no_verify: bool,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// Provider whose root key to delete.
    pub provider: String,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
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
