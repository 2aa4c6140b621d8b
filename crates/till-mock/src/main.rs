//! `till-mock`: the mock provider (OpenAI, Anthropic and Gemini wire formats on one port) as a
//! process, for tests that run the real binaries, the load benchmark and the offline demo.
//! The logic lives in the `till_mock` library; this file only parses arguments and runs it.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use till_mock::{Mock, MockOptions};

/// A mock of the OpenAI, Anthropic and Gemini APIs (JSON, SSE and admin key APIs) on one port.
///
/// Prints `listening on http://ADDR` on stdout once it accepts connections, then serves until
/// SIGTERM or SIGINT (exit 0). Models whose name contains `slow`, `cut`, `error500`,
/// `overloaded` or `hang` switch on faults; `/_mock/requests` and `/_mock/keys` show what it saw
/// and which keys it accepts.
#[derive(Debug, Parser)]
#[command(name = "till-mock", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: String,

    /// A key every provider route accepts (repeatable) [default: sk-mock-root].
    #[arg(long = "key", value_name = "KEY")]
    keys: Vec<String>,

    /// A key the admin routes accept (repeatable) [default: sk-admin-mock].
    #[arg(long = "admin-key", value_name = "KEY")]
    admin_keys: Vec<String>,

    /// Milliseconds between streamed chunks for models whose name contains `slow`.
    #[arg(long, value_name = "MS", default_value_t = 200)]
    chunk_delay_ms: u64,

    /// Append `mock sent chunk I of N` to FILE as each streamed chunk goes out.
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,

    /// Do not keep requests for `/_mock/requests` (for load tests).
    #[arg(long)]
    no_record: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(&anyhow::Error::new(err).context("starting the runtime")),
    };
    let outcome = runtime.block_on(run(args));
    runtime.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

fn fail(err: &anyhow::Error) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "till-mock: {err:#}");
    ExitCode::FAILURE
}

async fn run(args: Args) -> anyhow::Result<()> {
    let events = args.events.clone();
    let mock = Mock::new(MockOptions {
        keys: args.keys,
        admin_keys: args.admin_keys,
        chunk_delay: Duration::from_millis(args.chunk_delay_ms),
        events: args.events,
        record: !args.no_record,
    })
    .with_context(|| match &events {
        Some(path) => format!("opening the events file {}", path.display()),
        None => "setting up the mock".to_owned(),
    })?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}").context("writing to stdout")?;
        out.flush().context("writing to stdout")?;
    }
    tokio::select! {
        served = mock.serve(listener) => served.context("serving")?,
        () = shutdown_signal() => {}
    }
    Ok(())
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C elsewhere).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
