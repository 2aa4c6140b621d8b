//! The coding agents `till run` recognises by their command, and what each needs beyond the
//! provider variables every SDK reads.
//!
//! Most agents need nothing: they read `OPENAI_API_KEY`/`OPENAI_BASE_URL` and the like. Two
//! do not work with those alone, and this module says what changes for them:
//!
//! - **Claude Code** asks "Detected a custom API key … use this API key?" at every interactive
//!   start when `ANTHROPIC_API_KEY` holds a key it has not seen (a child key is new every run)
//!   and remembers the answer in `~/.claude.json`. A key in `ANTHROPIC_AUTH_TOKEN` (sent as
//!   `Authorization: Bearer`, which the proxy accepts) is used without that question, so for
//!   Claude Code the child key moves there.
//! - **Codex CLI** no longer reads `OPENAI_BASE_URL` and never sends `OPENAI_API_KEY` for its
//!   built-in provider; a custom provider in its config is the supported way to a proxy. The
//!   proxy's port changes every run, so instead of a config file till passes the provider as
//!   `-c` overrides in front of the agent's own arguments: provider `till` with this run's base
//!   URL, the key from `OPENAI_API_KEY`, the Responses API over HTTP (no WebSocket). Nothing is
//!   written to `~/.codex`; arguments that pick a provider themselves are left alone.
//!
//! - **Gemini CLI** needs its auth type chosen once ([`gemini`], `till setup gemini`).
//!
//! Recognition is by the command's file name only (`claude`, `codex`), so a wrapper (`npx …`,
//! a shell script) runs as any other program. Pure functions: no I/O, no secrets beyond the
//! child key already in the environment being built.

pub mod gemini;

use std::ffi::{OsStr, OsString};
use std::path::Path;

/// An agent `till run` adapts its launch for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agent {
    ClaudeCode,
    Codex,
    GeminiCli,
}

/// Claude Code's variable for a bearer token (no approval question, unlike `ANTHROPIC_API_KEY`).
pub const ANTHROPIC_AUTH_TOKEN: &str = "ANTHROPIC_AUTH_TOKEN";
const ANTHROPIC_API_KEY: &str = "ANTHROPIC_API_KEY";
const OPENAI_API_KEY: &str = "OPENAI_API_KEY";
const GEMINI_API_KEY: &str = "GEMINI_API_KEY";
const GOOGLE_API_KEY: &str = "GOOGLE_API_KEY";
const OPENAI_BASE_URL: &str = "OPENAI_BASE_URL";

/// The provider id till's Codex overrides define.
pub const CODEX_PROVIDER: &str = "till";

impl Agent {
    /// The agent `program` starts, by its file name (`/usr/local/bin/claude`, `codex.exe`).
    pub fn recognise(program: &str) -> Option<Agent> {
        let name = Path::new(program).file_name()?.to_str()?;
        let name = name.strip_suffix(".exe").unwrap_or(name);
        match name {
            "claude" => Some(Agent::ClaudeCode),
            "codex" => Some(Agent::Codex),
            "gemini" => Some(Agent::GeminiCli),
            _ => None,
        }
    }

    /// The agent's name as people know it.
    pub fn name(self) -> &'static str {
        match self {
            Agent::ClaudeCode => "Claude Code",
            Agent::Codex => "Codex CLI",
            Agent::GeminiCli => "Gemini CLI",
        }
    }

    /// Adapts the environment `till run` built: for Claude Code, the child key moves from
    /// `ANTHROPIC_API_KEY` to `ANTHROPIC_AUTH_TOKEN`; for Gemini CLI it stays in
    /// `GEMINI_API_KEY` only (with `GOOGLE_API_KEY` too, it warns twice at every start that
    /// both are set). `child_key` is the key the environment holds; a variable holding
    /// anything else is left as it is.
    pub fn adapt_env(self, env: &mut Vec<(OsString, OsString)>, child_key: &str) {
        let holds_child = |env: &[(OsString, OsString)], name: &str| {
            env.iter()
                .any(|(k, v)| k == name && v == OsStr::new(child_key))
        };
        match self {
            Agent::ClaudeCode if holds_child(env, ANTHROPIC_API_KEY) => {
                env.retain(|(k, _)| k != ANTHROPIC_API_KEY && k != ANTHROPIC_AUTH_TOKEN);
                env.push((ANTHROPIC_AUTH_TOKEN.into(), child_key.into()));
            }
            Agent::GeminiCli
                if holds_child(env, GOOGLE_API_KEY) && holds_child(env, GEMINI_API_KEY) =>
            {
                env.retain(|(k, _)| k != GOOGLE_API_KEY);
            }
            _ => {}
        }
    }

    /// Arguments to put in front of the agent's own `args`, given its environment: for Codex,
    /// the `till` provider with the base URL in `OPENAI_BASE_URL`, unless OpenAI is not in
    /// scope or `args` pick a provider (`-c model_provider…`, `--profile`, `--oss`).
    pub fn prefix_args(self, args: &[String], env: &[(OsString, OsString)]) -> Vec<String> {
        if self != Agent::Codex || codex_picks_provider(args) {
            return Vec::new();
        }
        let get = |name: &str| {
            env.iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.to_str())
        };
        let (Some(base), Some(_)) = (get(OPENAI_BASE_URL), get(OPENAI_API_KEY)) else {
            return Vec::new();
        };
        vec![
            "-c".into(),
            format!("model_provider=\"{CODEX_PROVIDER}\""),
            "-c".into(),
            format!(
                "model_providers.{CODEX_PROVIDER}={{name=\"till\",base_url=\"{}\",env_key=\"{OPENAI_API_KEY}\",wire_api=\"responses\",supports_websockets=false}}",
                toml_escape(base)
            ),
        ]
    }
}

/// Whether Codex arguments choose a provider or profile themselves.
fn codex_picks_provider(args: &[String]) -> bool {
    let mut it = args.iter().map(String::as_str);
    while let Some(arg) = it.next() {
        if arg == "--" {
            break;
        }
        if matches!(arg, "--oss" | "--profile" | "-p") || arg.starts_with("--profile=") {
            return true;
        }
        let value = match arg {
            "-c" | "--config" => it.next(),
            _ => arg
                .strip_prefix("--config=")
                .or_else(|| arg.strip_prefix("-c").filter(|v| !v.is_empty())),
        };
        if value.is_some_and(|v| v.trim_start().starts_with("model_provider")) {
            return true;
        }
    }
    false
}

/// `text` as the inside of a TOML basic string.
fn toml_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[test]
    fn recognises_by_file_name_only() {
        assert_eq!(Agent::recognise("claude"), Some(Agent::ClaudeCode));
        assert_eq!(
            Agent::recognise("/opt/node_modules/.bin/claude"),
            Some(Agent::ClaudeCode)
        );
        assert_eq!(Agent::recognise("codex.exe"), Some(Agent::Codex));
        assert_eq!(Agent::recognise("gemini"), Some(Agent::GeminiCli));
        assert_eq!(Agent::recognise("npx"), None);
        assert_eq!(Agent::recognise("claude-code"), None);
        assert_eq!(Agent::recognise("python3"), None);
    }

    #[test]
    fn claude_code_gets_the_child_key_as_a_bearer_token() {
        let mut e = env(&[
            ("ANTHROPIC_API_KEY", "till_child"),
            ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/anthropic"),
        ]);
        Agent::ClaudeCode.adapt_env(&mut e, "till_child");
        assert!(!e.iter().any(|(k, _)| k == "ANTHROPIC_API_KEY"));
        assert!(
            e.iter()
                .any(|(k, v)| k == "ANTHROPIC_AUTH_TOKEN" && v == "till_child")
        );
        // Anthropic out of scope: nothing to move.
        let mut e = env(&[("OPENAI_API_KEY", "till_child")]);
        Agent::ClaudeCode.adapt_env(&mut e, "till_child");
        assert_eq!(e, env(&[("OPENAI_API_KEY", "till_child")]));
        // Gemini CLI keeps one of its two key variables.
        let mut e = env(&[
            ("GEMINI_API_KEY", "till_child"),
            ("GOOGLE_API_KEY", "till_child"),
        ]);
        Agent::GeminiCli.adapt_env(&mut e, "till_child");
        assert_eq!(e, env(&[("GEMINI_API_KEY", "till_child")]));
        // Other agents keep ANTHROPIC_API_KEY.
        let mut e = env(&[("ANTHROPIC_API_KEY", "till_child")]);
        Agent::Codex.adapt_env(&mut e, "till_child");
        assert_eq!(e, env(&[("ANTHROPIC_API_KEY", "till_child")]));
    }

    #[test]
    fn codex_gets_a_provider_for_this_run() {
        let e = env(&[
            ("OPENAI_API_KEY", "till_child"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:9/openai/v1"),
        ]);
        let args = Agent::Codex.prefix_args(&["exec".into(), "hi".into()], &e);
        assert_eq!(args[1], "model_provider=\"till\"");
        assert!(args[3].contains("base_url=\"http://127.0.0.1:9/openai/v1\""));
        assert!(args[3].contains("env_key=\"OPENAI_API_KEY\""));
        assert!(args[3].contains("supports_websockets=false"));
        assert!(!args.concat().contains("till_child"));
        // OpenAI out of scope, or a provider picked by the user: nothing added.
        assert!(Agent::Codex.prefix_args(&[], &env(&[])).is_empty());
        for picked in [
            &["-c", "model_provider=ollama"][..],
            &["--config", "model_providers.x.base_url=\"u\""],
            &["-cmodel_provider=x"],
            &["--config=model_provider=x"],
            &["--oss", "exec"],
            &["-p", "work"],
            &["--profile=work"],
        ] {
            let picked: Vec<String> = picked.iter().map(|s| s.to_string()).collect();
            assert!(
                Agent::Codex.prefix_args(&picked, &e).is_empty(),
                "{picked:?}"
            );
        }
        // A prompt that merely mentions a provider does not count.
        let prompt = vec!["exec".into(), "--".into(), "--oss".into()];
        assert!(!Agent::Codex.prefix_args(&prompt, &e).is_empty());
        assert!(Agent::ClaudeCode.prefix_args(&[], &e).is_empty());
    }
}
