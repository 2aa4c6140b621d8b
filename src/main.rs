//! The till binary: parse arguments, run one command, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser as _;
use clap::error::{ContextKind, ContextValue, ErrorKind};

fn main() -> ExitCode {
    // `till run --sandbox` starts this binary again as its helper, which becomes the agent.
    if let Some(code) = till::sandbox::helper_main() {
        return code;
    }
    // Everything till creates (ledger, store, temp files) is private to the user.
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file mode mask.
    unsafe {
        libc::umask(0o077);
    }
    // Every command but `--help` holds a secret at some point (a root or admin key read at
    // `till add`'s prompt or from the store, the mint key, the file store's passphrase): none
    // leaves a core dump, and no process of the user's without CAP_SYS_PTRACE attaches to till
    // or reads its memory. (The sandbox's helper, above, is a new program, dumpable again.)
    till::process::harden_self();
    if let Some(code) = till::commands::complete_from_env() {
        return code;
    }
    let cli = match till::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err),
    };
    match till::commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            if err.chain().any(|e| {
                e.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            let hint = till::commands::hint(&err);
            till::output::error(&format!("{err:#}"), hint.as_deref());
            ExitCode::from(till::error::exit_code(&err))
        }
    }
}

/// Prints clap's message for bad arguments, `--help` or `--version`, with a hint where till
/// knows the fix clap cannot: an agent's command given to `till run` without the `--` before it.
fn usage_error(err: &clap::Error) -> ExitCode {
    let command_without_dashes = err.kind() == ErrorKind::UnknownArgument
        && std::env::args_os()
            .nth(1)
            .is_some_and(|first| first == "run")
        && matches!(
            err.get(ContextKind::InvalidArg),
            Some(ContextValue::String(arg)) if !arg.starts_with('-')
        );
    // A closed stderr leaves nothing to tell. A value clap quotes (`--budget sk-…`, a provider
    // key pasted as an argument) is cut to its prefix, as till's own errors are.
    if err.use_stderr() {
        let rendered = err.render();
        let text = if till::output::color_enabled() {
            rendered.ansi().to_string()
        } else {
            rendered.to_string()
        };
        // An error reads as till's own do (`till: error: …`); help shown for a missing
        // command is help, not an error.
        let prefix = if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ""
        } else {
            "till: "
        };
        eprint!("{prefix}{}", till::output::redact_keys(&text));
    } else {
        let _ = err.print();
    }
    if command_without_dashes {
        till::output::hint(
            "put the agent's command after `--`, as in `till run -- python agent.py`",
        );
    }
    ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(2))
}
