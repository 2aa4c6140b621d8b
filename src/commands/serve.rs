//! `till serve`: a long-running proxy for keys made by `till key create`.

use std::process::ExitCode;

use anyhow::Context as _;

use crate::cli::ServeArgs;
use crate::commands::Ctx;

pub fn run(ctx: &Ctx, args: &ServeArgs) -> anyhow::Result<ExitCode> {
    crate::process::harden_self();
    let loopback = args.listen.ip().is_loopback();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the proxy runtime")?;
    let super::ProxyParts {
        state,
        writer,
        owner,
        ..
    } = super::proxy_state(ctx, None, loopback)?;
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        if loopback {
            crate::output::note(&format!("till: serving on http://{addr} (loopback only); Ctrl-C stops"));
        } else {
            crate::output::warn(&format!(
                "serving on http://{addr}, which is NOT loopback: anyone who can reach this address and holds a till key can use it"
            ));
        }
        // The line scripts wait for: the proxy's URL on stdout.
        crate::output::data(&format!("http://{addr}"))?;
        crate::proxy::serve(listener, state.clone(), shutdown_signal()).await;
        anyhow::Ok(())
    });
    // The proxy has waited for its requests (up to [proxy] shutdown_grace); what they queued
    // is written before the reservations still open are settled as interrupted.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    writer.finish();
    super::settle_leftovers(ctx, owner);
    result?;
    crate::output::note(&super::run::summary(&state.stats.snapshot()));
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM or SIGINT: the proxy stops accepting and finishes what is in flight.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
