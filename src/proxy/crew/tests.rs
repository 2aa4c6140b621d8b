use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use super::*;
use crate::proxy::{ProxyOptions, Slots, State};

/// Waits up to five seconds for `tally` to say `want`.
fn wait_for(tally: &impl Fn() -> Vec<usize>, want: &[usize]) {
    let until = Instant::now() + Duration::from_secs(5);
    while tally() != want && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(tally(), want);
}

/// Two serve loops as `till serve` runs them, each on its own thread and runtime, sharing a
/// crew; only the first is reachable, so every connection is accepted by it.
#[test]
fn a_loop_that_accepts_every_connection_shares_them_out_and_each_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = crate::ledger::Ledger::open(&dir.path().join("ledger.sqlite3")).unwrap();
    let state = Arc::new(
        State::new(
            crate::providers::Providers::from_config(&crate::config::Config::default()),
            ProxyOptions::default(),
            ledger,
            None,
            Vec::new(),
            Vec::new(),
        )
        .unwrap(),
    );
    let reached = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = reached.local_addr().unwrap();
    let unreached = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let slots = Slots::new(64);
    let seats = seats(2);
    let tally = seats[0].tally();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let loops: Vec<_> = [reached, unreached]
        .into_iter()
        .zip(seats)
        .map(|(listener, seat)| {
            let (state, slots, mut stopped) = (state.clone(), slots.clone(), stopped.clone());
            std::thread::spawn(move || {
                listener.set_nonblocking(true).unwrap();
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    let shutdown = async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    };
                    crate::proxy::serve_with(listener, state, slots, Some(seat), shutdown).await;
                });
            })
        })
        .collect();

    let mut clients: Vec<_> = (0..16)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    wait_for(&tally, &[8, 8]);
    // Each is served, those handed over as well as those kept.
    for c in &mut clients {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"GET /_till/health HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
            .unwrap();
        let mut got = [0u8; 12];
        c.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"HTTP/1.1 200");
    }
    // A closed connection is no longer counted, and the next ones fill the gap.
    clients.truncate(4);
    wait_for(&tally, &[2, 2]);
    clients.extend((0..4).map(|_| std::net::TcpStream::connect(addr).unwrap()));
    wait_for(&tally, &[4, 4]);
    drop(clients);
    wait_for(&tally, &[0, 0]);
    stop.send_replace(true);
    for l in loops {
        l.join().unwrap();
    }
}

#[test]
fn a_connection_stays_with_the_loop_that_accepted_it_unless_another_serves_fewer() {
    let seats = seats(3);
    let tally = seats[0].tally();
    let _kept: Vec<_> = (0..2).map(|_| seats[1].count(false)).collect();
    // Loop 0 serves none: it keeps what it accepts.
    assert_eq!(seats[0].pick(), None);
    let _mine = seats[0].count(false);
    // Now it serves one and loop 2 none: loop 2 gets the next, counted at once.
    assert_eq!(seats[0].pick(), Some(2));
    assert_eq!(tally(), vec![1, 2, 1]);
    // Ties stay where they are.
    assert_eq!(seats[0].pick(), None);
    assert_eq!(seats[2].pick(), None);
    // Loop 1 serves the most: it gives to the first with the fewest.
    assert_eq!(seats[1].pick(), Some(0));
    assert_eq!(tally(), vec![2, 2, 1]);
}
