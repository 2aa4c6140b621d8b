//! till: scoped, short-lived API keys for AI agents.
//!
//! The library holds everything; `main.rs` only parses arguments, runs a command and maps the
//! outcome to an exit code. Root keys live in a [`secrets`] store and never leave till's process
//! except towards the provider they belong to.

// Output goes through `output` only (it alone allows these), so stdout stays data and
// stderr messages, and `NO_COLOR` and broken pipes are handled in one place.
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod agents;
pub mod childkey;
pub mod cli;
pub mod commands;
pub mod config;
pub mod env;
pub mod error;
pub mod format;
pub mod json;
pub mod ledger;
pub mod mint;
pub mod output;
pub mod pricing;
pub mod process;
pub mod prompt;
pub mod providers;
pub mod proxy;
pub mod rotation;
pub mod sandbox;
pub mod scope;
pub mod secrets;
#[cfg(unix)]
pub mod terminal;
pub mod time;
pub mod upstream;
