//! Shared test support: a temporary `TILL_HOME` and commands for the real binaries.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The passphrase of the file store in tests.
pub const PASSPHRASE: &str = "correct horse battery staple";

/// Environment variables from the developer's shell that must not leak into tests.
const SCRUB: &[&str] = &[
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "TILL_KEY",
    "TILL_PROXY_URL",
    "TILL_STORE",
    "TILL_PASSPHRASE",
    "TILL_KEYCHAIN_TIMEOUT",
];

/// A throwaway till home with its own config, ledger and file store.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
}

impl TestEnv {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn home(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes `config.toml`.
    pub fn config(&self, text: &str) {
        std::fs::write(self.path("config.toml"), text).expect("write config");
    }

    /// `till ARGS…` with this home and the file store unlocked by `TILL_PASSPHRASE`.
    pub fn till(&self) -> Command {
        let mut cmd = self.bare();
        cmd.env("TILL_STORE", "file")
            .env("TILL_PASSPHRASE", PASSPHRASE);
        cmd
    }

    /// `till` with this home and no store selection.
    pub fn bare(&self) -> Command {
        let mut cmd = Command::new(till_bin());
        for var in SCRUB {
            cmd.env_remove(var);
        }
        cmd.env("TILL_HOME", self.home()).env("NO_COLOR", "1");
        cmd
    }
}

pub fn till_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_till"))
}

/// Runs a command to completion and returns (exit code, stdout, stderr).
pub fn output(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run command");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a command with `input` on stdin.
pub fn output_with_stdin(cmd: &mut Command, input: &str) -> (i32, String, String) {
    use std::io::Write as _;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
