//! The till binary: parse arguments, run one command, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser as _;

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
    let cli = till::cli::Cli::parse();
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
