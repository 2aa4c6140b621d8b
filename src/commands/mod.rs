//! One module per command. Each returns `anyhow::Result<ExitCode>`; errors carry a
//! [`UserError`](crate::error::UserError) where the exit code or a hint matters.

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::config::{Config, Paths};
use crate::ledger::Ledger;
use crate::providers::Providers;
use crate::secrets::SecretStore;

mod add;
mod completions;
mod doctor;
mod list;
mod remove;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Add(args) => add::run(&Ctx::load()?, &args),
        Command::Remove(args) => remove::run(&Ctx::load()?, &args),
        Command::List(args) => list::run(&Ctx::load()?, &args),
        Command::Doctor => doctor::run(),
        Command::Completions(args) => completions::run(&args),
        Command::Manpage => completions::manpage(),
    }
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

    /// Opens the ledger in the data directory.
    pub fn ledger(&self) -> anyhow::Result<Ledger> {
        self.paths.ensure_data_dir()?;
        Ledger::open(&self.paths.ledger_file())
    }
}

/// The secrets-store name of a provider's root key.
pub fn root_secret_name(provider: &str) -> String {
    format!("root/{provider}")
}
