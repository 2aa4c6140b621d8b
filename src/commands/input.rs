//! Reading a provider key from a person (`till add`, `till rotate`): `--from-env`, a hidden
//! prompt or stdin, and the shape checks that catch a pasted child key or another provider's
//! key. Shared by commands; it never stores or verifies anything.

use std::io::{IsTerminal as _, Read as _};

use anyhow::Context as _;
use secrecy::{ExposeSecret as _, SecretString};

use crate::commands::Ctx;
use crate::error::UserError;
use crate::providers::Provider;

/// The key from `--from-env`, a hidden prompt labelled `label`, or stdin (in that order of
/// preference). An empty answer (EOF on stdin) is a usage error and nothing else happens.
/// The most of stdin read as a key: provider keys are tens to hundreds of characters, and
/// `cat /dev/zero | till add` must end, not fill the memory.
const MAX_STDIN_KEY: u64 = 64 * 1024;

pub fn read_key(label: &str, from_env: Option<&str>) -> anyhow::Result<SecretString> {
    let raw = if let Some(var) = from_env {
        // A key given where its variable's name goes (`--from-env sk-…`) is not repeated
        // back, not even in a hint.
        if var.is_empty() || !var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(UserError::usage(
                "--from-env takes the name of an environment variable that holds the key, not the key",
            )
            .hint("export NAME=… first, then give --from-env NAME")
            .into());
        }
        std::env::var(var).map_err(|e| match e {
            std::env::VarError::NotPresent => {
                UserError::usage(format!("environment variable {var} is not set")).hint(format!(
                    "export {var}=… or leave out --from-env to be prompted"
                ))
            }
            std::env::VarError::NotUnicode(_) => {
                UserError::usage(format!("environment variable {var} is not text (UTF-8)"))
                    .hint("a provider's key is text: set the variable to the key itself")
            }
        })?
    } else if std::io::stdin().is_terminal() {
        // End of input (Ctrl-D) or an empty line ends the command as an empty key does.
        crate::prompt::hidden_line(label)
            .context("cannot read the key from the terminal")?
            .map(|mut line| std::mem::take(&mut *line))
            .unwrap_or_default()
    } else {
        let mut bytes = zeroize::Zeroizing::new(Vec::new());
        if !stdin_at_most(&mut bytes, MAX_STDIN_KEY)? {
            return Err(UserError::usage(format!(
                "stdin holds more than a key: more than {} KiB",
                MAX_STDIN_KEY / 1024
            ))
            .hint("pipe the key itself, e.g. printf %s \"$KEY\" | till add openai")
            .into());
        }
        // Bad input, not a failure to read: the bytes are wiped either way.
        String::from_utf8(std::mem::take(&mut *bytes)).map_err(|e| {
            drop(zeroize::Zeroizing::new(e.into_bytes()));
            UserError::usage("the key on stdin is not text (UTF-8)")
                .hint("pipe the key itself, e.g. printf %s \"$KEY\" | till add openai")
        })?
    };
    let key = raw.trim().to_string();
    drop(zeroize::Zeroizing::new(raw));
    if key.is_empty() {
        return Err(UserError::usage("the key is empty")
            .hint("paste the key, or pipe it to till's stdin: `echo \"$KEY\" | till …`")
            .into());
    }
    if key.chars().any(char::is_whitespace) {
        return Err(
            UserError::usage("the key contains whitespace; a provider key is one word").into(),
        );
    }
    if key.chars().any(char::is_control) {
        return Err(UserError::usage(
            "the key contains a control character; a provider key is printable text",
        )
        .into());
    }
    Ok(SecretString::from(key))
}

/// Reads stdin into `bytes`, no further than `most` bytes and one past (so endless input
/// ends): `false` when there was more than `most`.
pub fn stdin_at_most(bytes: &mut Vec<u8>, most: u64) -> anyhow::Result<bool> {
    std::io::stdin()
        .take(most + 1)
        .read_to_end(bytes)
        .context("cannot read the key from stdin")?;
    Ok(bytes.len() as u64 <= most)
}

/// Refuses till's own keys and warns when the key looks like another provider's.
pub fn check_shape(ctx: &Ctx, provider: &Provider, key: &SecretString) -> anyhow::Result<()> {
    let key = key.expose_secret();
    if key.starts_with("till_") {
        return Err(
            UserError::usage("that is a till child key, not a provider key")
                .hint(format!("use the key from {}", provider.console()))
                .into(),
        );
    }
    // A key goes in a header, which a letter outside ASCII cannot: such a key reached the
    // provider as no key at all. (Whitespace and control characters are refused on reading.)
    if !crate::secrets::header_safe(key) {
        return Err(UserError::usage(
            "that key has a character no HTTP header can carry (a letter outside ASCII)",
        )
        .hint(format!(
            "copy the key again from {}, without what came with it",
            provider.console()
        ))
        .into());
    }
    if let Some(other) = ctx.providers.guess_from_key(key) {
        // Another provider's longer prefix outweighs the target's own: OpenAI's `sk-` also
        // begins Anthropic's `sk-ant-` and OpenRouter's `sk-or-` keys. A prefix as long as the
        // target's (OpenAI's and DeepSeek's `sk-`) tells nothing, so it is no warning.
        let prefix_len = |p: &Provider| {
            p.key_prefix
                .as_deref()
                .filter(|pre| key.starts_with(pre))
                .map_or(0, str::len)
        };
        // A provider without a key shape of its own (a compatible server, which often takes
        // any key) is warned only of a distinctive one (`sk-ant-`, `AIza`), not of OpenAI's
        // generic `sk-`.
        let distinctive = provider.key_prefix.is_some() || prefix_len(other) > "sk-".len();
        if other.name != provider.name && prefix_len(other) > prefix_len(provider) && distinctive {
            crate::output::warn(&format!(
                "this key looks like one for {}, not {}",
                other.name, provider.name
            ));
        }
    }
    Ok(())
}
