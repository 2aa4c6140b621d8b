//! `till serve`: a long-running proxy for keys made by `till key create`.

use std::process::ExitCode;

use anyhow::Context as _;

use crate::cli::ServeArgs;
use crate::commands::Ctx;
use crate::error::UserError;

pub fn run(ctx: &Ctx, args: &ServeArgs) -> anyhow::Result<ExitCode> {
    crate::process::tune_allocator();
    let loopback = args.listen.ip().is_loopback();
    // One thread waits for signals; each worker thread runs its own single-threaded runtime
    // that accepts from the shared socket and serves its connections to the end, like one
    // worker process per core. A work-stealing runtime handed each request between threads
    // (server connection, upstream connection, timers), each hand-over a wake-up.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the proxy runtime")?;
    let super::ProxyParts {
        state,
        writer,
        owner,
        ledger,
        ..
    } = super::proxy_state(ctx, None, loopback)?;
    // A backlog of at least `max_connections` (std's bind asks for 128): a burst of
    // connections the kernel's queue cannot take leaves a client in the kernel's retries for
    // seconds, where the proxy's eviction of idle connections never sees it.
    let backlog = u32::try_from(state.options.max_connections.max(1024)).unwrap_or(u32::MAX);
    let listener = listen(&runtime, args.listen, backlog).map_err(|err| {
        let message = format!("cannot listen on {}: {err}", args.listen);
        let hint = match err.kind() {
            std::io::ErrorKind::AddrInUse => Some(format!(
                "another program (perhaps another `till serve`) has port {}; stop it or pick another with --listen 127.0.0.1:PORT",
                args.listen.port()
            )),
            std::io::ErrorKind::AddrNotAvailable => {
                Some("--listen takes an address of this machine, e.g. 127.0.0.1:8417".into())
            }
            std::io::ErrorKind::PermissionDenied if args.listen.port() < 1024 => {
                Some("ports below 1024 need privileges; pick one above, e.g. --listen 127.0.0.1:8417".into())
            }
            _ => None,
        };
        let err = UserError::runtime(message);
        match hint {
            Some(hint) => err.hint(hint),
            None => err,
        }
    })?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    if loopback {
        crate::output::note(&format!(
            "till: serving on http://{addr} (loopback only); Ctrl-C stops"
        ));
    } else {
        crate::output::warn(&format!(
            "serving on http://{addr}, which is NOT loopback: anyone who can reach this address and holds a till key can use it"
        ));
    }
    // How a program reaches it: each stored provider's base URL in the variable its SDK reads.
    // A wildcard address (0.0.0.0, ::) is where till listens, not where a client connects:
    // one on this machine reaches it at loopback.
    let mut reach = addr;
    if reach.ip().is_unspecified() {
        reach.set_ip(match reach.ip() {
            std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let stored = ledger.root_keys()?;
    let urls: Vec<String> = stored
        .iter()
        .filter_map(|m| ctx.providers.get(&m.provider))
        .filter_map(|p| {
            p.base_url_env
                .first()
                .map(|(var, suffix)| format!("  {var}=http://{reach}/{}{suffix}", p.name))
        })
        .collect();
    if !urls.is_empty() {
        crate::output::note(&format!(
            "till: a program sends a key from `till key create` as its provider key, to these base URLs:\n{}",
            urls.join("\n")
        ));
    }
    // SIGTERM and SIGINT are taken from here on: one that comes while the workers already
    // answer but before the main thread waits for it stops the proxy as asked (its ledger
    // settled), rather than ending it by the signal's default action.
    let stop_signal = shutdown_signal(&runtime);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let slots = crate::proxy::Slots::new(state.options.max_connections);
    let mut workers = Vec::new();
    for (i, seat) in crate::proxy::crew::seats(workers_count())
        .into_iter()
        .enumerate()
    {
        let (listener, state, slots) = (listener.try_clone()?, state.clone(), slots.clone());
        let mut stopped = stopped.clone();
        let worker = std::thread::Builder::new()
            .name(format!("till-proxy-{i}"))
            .spawn(move || -> anyhow::Result<()> {
                // Ledger rows wake the writer thread when this one goes idle, after the
                // response is written.
                crate::ledger::writer::defer_wakes();
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .on_thread_park(crate::ledger::writer::wake_deferred)
                    .build()
                    .context("cannot start the proxy runtime")?;
                rt.block_on(async {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    let shutdown = async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    };
                    crate::proxy::serve_with(listener, state, slots, Some(seat), shutdown).await;
                    anyhow::Ok(())
                })?;
                rt.shutdown_timeout(std::time::Duration::from_millis(500));
                Ok(())
            })
            .context("cannot start a proxy thread")?;
        workers.push(worker);
    }
    drop(listener);
    // The line scripts wait for: the proxy's URL on stdout (at loopback for a wildcard
    // address, as the base URLs above).
    let printed = crate::output::data(&format!("http://{reach}"));
    if printed.is_ok() {
        runtime.block_on(stop_signal);
    }
    // A second signal during the grace cuts off what still runs.
    crate::proxy::lifecycle::cut_at_next_signal();
    stop.send_replace(true);
    // Each worker has waited for its requests (up to [proxy] shutdown_grace); what they queued
    // is written before the reservations still open are settled as interrupted.
    let mut result = printed.map_err(anyhow::Error::from);
    for w in workers {
        let joined = w
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("a proxy thread panicked")));
        if result.is_ok() {
            result = joined;
        }
    }
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    writer.finish();
    let swept = super::settle_leftovers(ctx, owner);
    result?;
    crate::output::note(&super::run::summary(&super::with_settled(
        state.stats.snapshot(),
        &swept,
    )));
    Ok(ExitCode::SUCCESS)
}

/// Proxy threads: one per core, at most 8 (a loopback proxy for agents needs no more).
fn workers_count() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8))
}

/// SIGTERM or SIGINT: the proxy stops accepting and finishes what is in flight.
fn shutdown_signal(
    runtime: &tokio::runtime::Runtime,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
    // Registered now, in the runtime's context, not when the future is first polled.
    let _context = runtime.enter();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let streams = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        );
        Box::pin(async move {
            let (Ok(mut term), Ok(mut int)) = streams else {
                return std::future::pending().await;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Box::pin(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

/// A listening socket on `addr` with room for `backlog` connections not yet accepted.
fn listen(
    runtime: &tokio::runtime::Runtime,
    addr: std::net::SocketAddr,
    backlog: u32,
) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As std's bind does: a port a stopped proxy's connections still linger on is free.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let _runtime = runtime.enter();
    socket.listen(backlog)?.into_std()
}
