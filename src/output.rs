//! The one place that writes to the terminal: data to stdout, messages to stderr.
//!
//! Colour only when stderr is a terminal and `NO_COLOR` is unset. A closed stdout (`till list |
//! head -0`) is not an error: [`data`] reports it and `main` exits 0, as ripgrep does.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{self, IsTerminal, Write};

use crate::env::EnvVars;

/// Whether messages on stderr may use ANSI colour.
pub fn color_enabled() -> bool {
    std::env::var_os(EnvVars::NO_COLOR).is_none_or(|v| v.is_empty()) && io::stderr().is_terminal()
}

/// Whether stdout is a terminal (tables get bars and padding there).
pub fn stdout_is_terminal() -> bool {
    io::stdout().is_terminal()
}

/// Writes data to stdout. A broken pipe is returned as the error kind `BrokenPipe` and `main`
/// turns it into exit 0.
pub fn data(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Writes a JSON value to stdout, pretty-printed.
pub fn json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    data(&text)?;
    Ok(())
}

fn paint(code: &str, text: &str) -> String {
    if color_enabled() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// A message for the person at the terminal (stderr).
pub fn note(text: &str) {
    eprintln!("{text}");
}

/// `till: warning: …` on stderr.
pub fn warn(text: &str) {
    eprintln!("{}: {} {text}", paint("1", "till"), paint("33", "warning:"));
}

/// `till: error` and an optional `hint:` line, on stderr.
pub fn error(text: &str, hint: Option<&str>) {
    eprintln!("{}: {} {text}", paint("1", "till"), paint("31", "error:"));
    if let Some(hint) = hint {
        eprintln!("{} {hint}", paint("36", "hint:"));
    }
}

/// A green `ok` or red `fail` line, as `till doctor` prints them.
pub fn check_line(ok: bool, what: &str, detail: &str) {
    let paint = |code: &str, text: &str| {
        if stdout_is_terminal() && std::env::var_os(EnvVars::NO_COLOR).is_none() {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    };
    let mark = if ok {
        paint("32", "ok  ")
    } else {
        paint("31", "FAIL")
    };
    if detail.is_empty() {
        println!("{mark} {what}");
    } else {
        println!("{mark} {what}: {detail}");
    }
}
