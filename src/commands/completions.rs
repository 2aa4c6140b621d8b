//! `till completions SHELL` and the hidden `till manpage`: generated from the clap definitions,
//! so they never drift from the real command line (a test compares them with `completions/`).

use std::process::ExitCode;

use clap::CommandFactory as _;
use clap_complete::Shell as CShell;

use crate::cli::{Cli, CompletionsArgs, Shell};

pub fn run(args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let shell = match args.shell {
        Shell::Bash => CShell::Bash,
        Shell::Zsh => CShell::Zsh,
        Shell::Fish => CShell::Fish,
        Shell::Powershell => CShell::PowerShell,
        Shell::Elvish => CShell::Elvish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "till", &mut out);
    crate::output::data(&String::from_utf8(out)?)?;
    Ok(ExitCode::SUCCESS)
}

pub fn manpage() -> anyhow::Result<ExitCode> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut out)?;
    crate::output::data(&String::from_utf8(out)?)?;
    Ok(ExitCode::SUCCESS)
}
