//! How a proxy ends and how it holds up: SIGTERM lets requests in flight finish within the
//! shutdown grace and records the rest, SIGKILL leaves nothing held once another till runs, and
//! idle or silent connections neither starve keyed requests nor stay open for ever.

use std::io::{BufRead as _, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{ProxyEnv, client_script, output};

/// $1 per million input tokens, $100 per million output tokens: a request asking for at most
/// 100 output tokens reserves $0.01 plus its prompt estimate.
const PRICES: &str = "[prices.\"openai/gpt-slow\"]\ninput = 1.0\noutput = 100.0\n\
                      [prices.\"openai/gpt-hang\"]\ninput = 1.0\noutput = 100.0\n";

/// What a 100-output-token request reserves, in micro-dollars (the prompt estimate adds a few).
const RESERVED: std::ops::RangeInclusive<i64> = 10_000..=10_200;

/// A mock pausing `chunk_delay` between chunks of `slow` models, `[proxy]` settings, and a key
/// `k` with a $1 budget (returned).
fn env_with(chunk_delay: Duration, proxy: &str) -> (ProxyEnv, String) {
    let opts = till_mock::MockOptions {
        chunk_delay,
        ..Default::default()
    };
    let p = ProxyEnv::with_options(opts, &format!("{PRICES}[proxy]\n{proxy}\n"));
    let key = p.create_key(&["--name", "k", "--scope", "openai", "--budget", "1usd"]);
    // `till add` checked the root keys with the mock; only the tests' own requests count.
    p.mock.clear_requests();
    (p, key)
}

/// Waits until the mock has seen a request for `model`.
fn wait_for_upstream(p: &ProxyEnv, model: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !p
        .mock
        .requests()
        .iter()
        .any(|r| r.body.as_deref().is_some_and(|b| b.contains(model)))
    {
        assert!(
            Instant::now() < deadline,
            "no request for {model} reached the mock"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A `till serve` whose stderr goes to a file.
struct Proxy {
    child: Child,
    addr: String,
    stderr: std::path::PathBuf,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    fn start(p: &ProxyEnv) -> Self {
        let stderr = p.env.path("serve.stderr");
        let mut child = p
            .env
            .till()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn till serve");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("till serve printed {line:?}"))
            .to_string();
        Self {
            child,
            addr,
            stderr,
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill takes plain integers.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "no exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends a chat request with `key` for `model` (streamed when `stream`) over a fresh
/// connection on a thread; the receiver gets `()` once response bytes have arrived, the join
/// handle everything the connection carried.
fn request(
    addr: &str,
    key: &str,
    model: &str,
    stream: bool,
) -> (mpsc::Receiver<()>, std::thread::JoinHandle<String>) {
    let body = serde_json::json!({
        "model": model,
        "stream": stream,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Say hello to the test."}],
    })
    .to_string();
    let head = format!(
        "POST /openai/v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut conn = TcpStream::connect(addr).unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        conn.write_all(head.as_bytes()).unwrap();
        conn.write_all(body.as_bytes()).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let mut told = false;
        loop {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            let text = String::from_utf8_lossy(&got);
            if !told && (!stream || text.contains("data:")) {
                let _ = tx.send(());
                told = true;
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    });
    (rx, reader)
}

/// (reserved µ$, spent µ$) summed over every counter, and the reservations still open.
fn counters(home: &Path) -> (i64, i64, i64) {
    let db = rusqlite::Connection::open(home.join("data/ledger.sqlite3")).unwrap();
    let (reserved, spent) = db
        .query_row(
            "SELECT coalesce(sum(reserved_micros), 0), coalesce(sum(spent_micros), 0) FROM counters",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let open = db
        .query_row("SELECT count(*) FROM reservations", [], |r| r.get(0))
        .unwrap();
    (reserved, spent, open)
}

/// Every request row, oldest first, as `till log --json` prints them (which also settles what
/// dead proxies left), with that command's stderr.
fn log(p: &ProxyEnv) -> (Vec<Value>, String) {
    let (code, stdout, stderr) = output(p.env.till().args(["log", "--json", "-n", "100"]));
    assert_eq!(code, 0, "{stderr}");
    let mut rows: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    rows.reverse();
    (rows, stderr)
}

fn micros(row: &Value) -> i64 {
    (row["cost_usd"].as_f64().unwrap() * 1e6).round() as i64
}

#[test]
fn sigterm_lets_a_stream_finish_within_the_grace() {
    let (p, key) = env_with(Duration::from_millis(200), "shutdown_grace = \"10s\"");
    let proxy = Proxy::start(&p);
    let (started, reader) = request(&proxy.addr, &key, "gpt-slow", true);
    started.recv_timeout(Duration::from_secs(10)).unwrap();
    let t = Instant::now();
    proxy.signal(libc::SIGTERM);
    let mut proxy = proxy;
    let status = wait_exit(&mut proxy.child, Duration::from_secs(15));
    let took = t.elapsed();
    eprintln!("sigterm with a 1 s stream in flight: exit after {took:?}");
    assert_eq!(status.code(), Some(0), "{}", proxy.stderr());
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let got = reader.join().unwrap();
    assert!(got.contains("[DONE]"), "the stream did not finish: {got}");

    let (rows, _) = log(&p);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["outcome"], "complete", "{}", rows[0]);
    let (reserved, spent, open) = counters(p.env.home());
    assert_eq!((reserved, open), (0, 0));
    // The stream finished: charged what it metered.
    assert!(micros(&rows[0]) > 0, "{}", rows[0]);
    assert_eq!(spent, micros(&rows[0]));
}

/// A response's record (its usage, its row, its budget settlement) is made after the response
/// has been sent. A proxy stopped the moment its answers are out still records every one of
/// them, with the usage the provider reported.
#[test]
fn sigterm_right_after_answers_leaves_none_of_them_unrecorded() {
    let (p, key) = env_with(Duration::ZERO, "shutdown_grace = \"10s\"");
    let proxy = Proxy::start(&p);
    const N: usize = 12;
    for _ in 0..N {
        let (_, reader) = request(&proxy.addr, &key, "gpt-4o-mini", false);
        let got = reader.join().unwrap();
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    }
    proxy.signal(libc::SIGTERM);
    let mut proxy = proxy;
    let status = wait_exit(&mut proxy.child, Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "{}", proxy.stderr());

    let (rows, _) = log(&p);
    assert_eq!(rows.len(), N, "{rows:?}");
    for row in &rows {
        assert_eq!(row["outcome"], "complete", "{row}");
        assert!(row["input_tokens"].as_u64().unwrap() > 0, "{row}");
        assert!(micros(row) > 0, "{row}");
    }
    let (reserved, spent, open) = counters(p.env.home());
    assert_eq!((reserved, open), (0, 0));
    assert_eq!(spent, rows.iter().map(micros).sum::<i64>());
}

#[test]
fn sigterm_cuts_off_what_outlasts_a_short_grace() {
    let (p, key) = env_with(Duration::from_millis(500), "shutdown_grace = \"200ms\"");
    let proxy = Proxy::start(&p);
    // A stream that would need 2.5 s, and a request the upstream never answers.
    let (started, streaming) = request(&proxy.addr, &key, "gpt-slow", true);
    started.recv_timeout(Duration::from_secs(10)).unwrap();
    let (_, hanging) = request(&proxy.addr, &key, "gpt-hang", false);
    wait_for_upstream(&p, "gpt-hang");
    let t = Instant::now();
    proxy.signal(libc::SIGTERM);
    let mut proxy = proxy;
    let status = wait_exit(&mut proxy.child, Duration::from_secs(10));
    let took = t.elapsed();
    eprintln!("sigterm with a 200 ms grace: exit after {took:?}");
    assert_eq!(status.code(), Some(0), "{}", proxy.stderr());
    // The grace, the moment cut-off responses get to reach their clients, and start-up slack.
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let streamed = streaming.join().unwrap();
    assert!(
        streamed.contains("shutting down") && !streamed.contains("[DONE]"),
        "the stream should end with an error event: {streamed}"
    );
    let hung = hanging.join().unwrap();
    assert!(
        hung.starts_with("HTTP/1.1 503") && hung.contains("till_shutting_down"),
        "{hung}"
    );

    let (rows, _) = log(&p);
    assert_eq!(rows.len(), 2, "{rows:?}");
    for row in &rows {
        assert_eq!(row["outcome"], "interrupted", "{row}");
    }
    let (reserved, spent, open) = counters(p.env.home());
    assert_eq!((reserved, open), (0, 0));
    // Neither reported usage: each is charged its reservation, and its row says so (what
    // `till usage` adds up is what the budget was charged).
    assert!(
        (2 * RESERVED.start()..=2 * RESERVED.end()).contains(&spent),
        "spent {spent}"
    );
    for row in &rows {
        assert!(RESERVED.contains(&micros(row)), "{row}");
    }
    assert_eq!(spent, rows.iter().map(micros).sum::<i64>());
}

/// The same stop through a key without a budget: the cut-off stream and the unanswered
/// request are each recorded (`interrupted`), with no reservation to write their rows for them.
#[test]
fn a_short_grace_records_what_it_cuts_off_without_a_budget() {
    let opts = till_mock::MockOptions {
        chunk_delay: Duration::from_millis(500),
        ..Default::default()
    };
    let p = ProxyEnv::with_options(
        opts,
        &format!("{PRICES}[proxy]\nshutdown_grace = \"200ms\"\n"),
    );
    let key = p.create_key(&["--name", "plain", "--scope", "openai"]);
    p.mock.clear_requests();
    let proxy = Proxy::start(&p);
    let (started, streaming) = request(&proxy.addr, &key, "gpt-slow", true);
    started.recv_timeout(Duration::from_secs(10)).unwrap();
    let (_, hanging) = request(&proxy.addr, &key, "gpt-hang", false);
    wait_for_upstream(&p, "gpt-hang");
    proxy.signal(libc::SIGTERM);
    let mut proxy = proxy;
    let status = wait_exit(&mut proxy.child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", proxy.stderr());
    streaming.join().unwrap();
    hanging.join().unwrap();
    let (rows, _) = log(&p);
    assert_eq!(rows.len(), 2, "{rows:?}");
    for row in &rows {
        assert_eq!(row["outcome"], "interrupted", "{row}");
    }
}

/// A stop with a request the upstream never answers waited the whole grace (10 s) without a
/// word, and a second Ctrl-C changed nothing. The stop says what it waits for, and a second
/// signal cuts it off at once.
#[test]
fn a_second_signal_cuts_the_grace_short_and_the_wait_is_said() {
    let (p, key) = env_with(Duration::ZERO, "shutdown_grace = \"10s\"");
    let proxy = Proxy::start(&p);
    let (_, hanging) = request(&proxy.addr, &key, "gpt-hang", false);
    wait_for_upstream(&p, "gpt-hang");
    proxy.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(800));
    let t = Instant::now();
    proxy.signal(libc::SIGINT);
    let mut proxy = proxy;
    let status = wait_exit(&mut proxy.child, Duration::from_secs(15));
    let took = t.elapsed();
    assert_eq!(status.code(), Some(0), "{}", proxy.stderr());
    assert!(
        took < Duration::from_secs(3),
        "took {took:?} after the second signal"
    );
    let stderr = proxy.stderr();
    assert!(
        stderr.contains("till: stopping: waiting up to 10s for requests still in flight"),
        "{stderr}"
    );
    let hung = hanging.join().unwrap();
    assert!(hung.starts_with("HTTP/1.1 503"), "{hung}");
    let (rows, _) = log(&p);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["outcome"], "interrupted", "{}", rows[0]);
}

#[test]
fn sigterm_to_till_run_records_the_agents_stream() {
    for (model, grace, outcome) in [
        // The agent dies with its stream; the proxy drains it within the grace to meter it.
        ("gpt-slow", "10s", "abandoned"),
        // The upstream never answers: the request is recorded when the proxy stops.
        ("gpt-hang", "200ms", "interrupted"),
    ] {
        let (p, _) = env_with(
            Duration::from_millis(200),
            &format!("shutdown_grace = \"{grace}\""),
        );
        let events = p.env.path("agent.events");
        let script = format!(
            "exec python3 {} openai chat --stream --model {model} --max-tokens 100 --events {}",
            client_script(),
            events.display()
        );
        let mut child = p
            .env
            .till()
            .args(["run", "--key", "k", "--", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_upstream(&p, model);
        if model == "gpt-slow" {
            // The agent is reading its stream (which runs for 1 s).
            let deadline = Instant::now() + Duration::from_secs(20);
            while !std::fs::read_to_string(&events)
                .unwrap_or_default()
                .contains("agent got chunk")
            {
                assert!(Instant::now() < deadline, "the agent got no chunk");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let t = Instant::now();
        // SAFETY: kill takes plain integers.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = wait_exit(&mut child, Duration::from_secs(15));
        let took = t.elapsed();
        eprintln!("till run, {model}, grace {grace}: exit after {took:?}");
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert_eq!(status.code(), Some(143), "{model}: {status:?} {stderr}");
        assert!(took < Duration::from_secs(10), "{model}: took {took:?}");

        let (rows, _) = log(&p);
        assert_eq!(rows.len(), 1, "{model}: {rows:?}\n{stderr}");
        assert_eq!(rows[0]["outcome"], outcome, "{}", rows[0]);
        let (reserved, spent, open) = counters(p.env.home());
        assert_eq!((reserved, open), (0, 0), "{model}");
        if outcome == "abandoned" {
            assert!(micros(&rows[0]) > 0, "{}", rows[0]);
            assert_eq!(spent, micros(&rows[0]), "{model}");
        } else {
            assert!(RESERVED.contains(&spent), "{model}: spent {spent}");
            // The summary counts the request settled at the stop and its charge (it said 0
            // requests and $0 under a line that said it was charged).
            let summary = stderr
                .lines()
                .find(|l| l.starts_with("till: 1 request,"))
                .unwrap_or_else(|| panic!("{model}: no summary of 1 request in {stderr}"));
            assert!(!summary.ends_with(" $0"), "{summary}");
            assert!(
                stderr.contains(
                    "till: a request to openai was still waiting for its answer when the proxy stopped; recorded as `interrupted` and charged $0.01"
                ),
                "{stderr}"
            );
        }
    }
}

#[test]
fn sigkill_mid_stream_is_settled_by_the_next_till() {
    let (p, key) = env_with(Duration::from_millis(500), "");
    let proxy = Proxy::start(&p);
    let (started, reader) = request(&proxy.addr, &key, "gpt-slow", true);
    started.recv_timeout(Duration::from_secs(10)).unwrap();
    let mut proxy = proxy;
    proxy.child.kill().unwrap();
    proxy.child.wait().unwrap();
    let _ = reader.join();
    // Killed: its reservation is still held, with nobody to settle it.
    let (reserved, _, open) = counters(p.env.home());
    assert_eq!(open, 1);
    assert!(reserved > 0);
    assert_eq!(
        std::fs::read_dir(p.env.path("data/owners"))
            .unwrap()
            .count(),
        1,
        "the dead proxy's lock file"
    );

    let (rows, stderr) = log(&p);
    assert!(stderr.contains("recorded as `lost`"), "{stderr}");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["outcome"], "lost", "{}", rows[0]);
    assert_eq!(rows[0]["model"], "gpt-slow", "{}", rows[0]);
    let (reserved, spent, open) = counters(p.env.home());
    assert_eq!((reserved, open), (0, 0));
    assert!(
        RESERVED.contains(&spent),
        "charged {spent}, expected the reservation"
    );
    // The row carries what was charged, so `till usage` adds up to the budget's spending.
    assert_eq!(micros(&rows[0]), spent, "{}", rows[0]);
    assert_eq!(
        std::fs::read_dir(p.env.path("data/owners"))
            .unwrap()
            .count(),
        0
    );
    // Settled once: the next command finds nothing more.
    let (rows, stderr) = log(&p);
    assert_eq!(rows.len(), 1);
    assert!(!stderr.contains("lost"), "{stderr}");
}

/// Lifts the soft limit on open files to the hard one (this test holds 1,000 sockets).
fn raise_nofile() {
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Waits until the server closes `conn` (EOF or reset); false if it is still open at `until`.
fn closed_by_server(conn: &mut TcpStream, until: Instant) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        conn.set_read_timeout(Some(left)).unwrap();
        match conn.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

fn status_of(response: &str) -> &str {
    response.split(' ').nth(1).unwrap_or("")
}

#[test]
fn a_thousand_idle_connections_do_not_starve_a_keyed_request() {
    raise_nofile();
    let (p, key) = env_with(Duration::from_millis(200), "header_timeout = \"3s\"");
    let proxy = Proxy::start(&p);
    let opened = Instant::now();
    let mut idle: Vec<TcpStream> = (0..1000)
        .map(|i| {
            let mut c = TcpStream::connect(&proxy.addr).unwrap();
            if i % 2 == 1 {
                // Half of them start a request head and never finish it.
                c.write_all(b"POST /openai/v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
                    .unwrap();
            }
            c
        })
        .collect();
    // And one keep-alive connection that made a request and then went quiet.
    let mut kept = TcpStream::connect(&proxy.addr).unwrap();
    kept.write_all(
        format!("GET /_till/health HTTP/1.1\r\nHost: {}\r\n\r\n", proxy.addr).as_bytes(),
    )
    .unwrap();
    let mut buf = [0u8; 256];
    let n = kept.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));

    let t = Instant::now();
    let (_, reader) = request(&proxy.addr, &key, "gpt-4o-mini", false);
    let answer = reader.join().unwrap();
    let took = t.elapsed();
    eprintln!("keyed request with 1,000 idle connections open: {took:?}");
    assert_eq!(status_of(&answer), "200", "{answer}");
    assert!(took < Duration::from_secs(5), "took {took:?}");

    // The server closes every silent connection once the header timeout has passed.
    let until = opened + Duration::from_secs(20);
    for (i, c) in idle.iter_mut().enumerate() {
        assert!(
            closed_by_server(c, until),
            "idle connection {i} is still open"
        );
    }
    assert!(closed_by_server(&mut kept, until), "the kept-alive one too");
    let all_closed = opened.elapsed();
    eprintln!("all 1,001 idle connections closed {all_closed:?} after they were opened");
    assert!(
        all_closed >= Duration::from_secs(3),
        "closed before the timeout"
    );
}

/// At `max_connections`, a client that connects takes the place of the connection that has
/// waited longest for a request: connections held open without a request (a slow-head attack
/// by any local process, no key needed) cannot keep others waiting until `header_timeout`
/// frees their slots, only to take them again. One warning is given, not one a connection; a
/// connection with a request in flight is not closed so.
#[test]
fn at_max_connections_a_new_one_takes_the_place_of_the_longest_waiting() {
    let (p, key) = env_with(
        Duration::from_millis(300),
        "max_connections = 4\nheader_timeout = \"60s\"",
    );
    // A key of its own for the stream: at four connections, one key's requests in flight may
    // hold one.
    let streamer = p.create_key(&["--scope", "openai", "--budget", "1usd"]);
    let proxy = Proxy::start(&p);
    // One slot busy with a slow stream, three held by clients that sent half a request line.
    let (_started, streaming) = request(&proxy.addr, &streamer, "gpt-slow", true);
    wait_for_upstream(&p, "gpt-slow");
    let mut silent: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut c = TcpStream::connect(&proxy.addr).unwrap();
            c.write_all(b"POST /openai/v1/chat/comp").unwrap();
            std::thread::sleep(Duration::from_millis(50));
            c
        })
        .collect();
    let t = Instant::now();
    let (_, reader) = request(&proxy.addr, &key, "gpt-4o-mini", false);
    let answer = reader.join().unwrap();
    let took = t.elapsed();
    assert_eq!(status_of(&answer), "200", "{answer}");
    assert!(
        took < Duration::from_secs(10),
        "waited {took:?}, behind connections that sent no request"
    );
    // The oldest of the silent ones made room; the others wait on.
    let soon = Instant::now() + Duration::from_secs(2);
    assert!(
        closed_by_server(&mut silent[0], soon),
        "the oldest is closed"
    );
    for (i, c) in silent.iter_mut().enumerate().skip(1) {
        let brief = Instant::now() + Duration::from_millis(200);
        assert!(
            !closed_by_server(c, brief),
            "silent connection {i} was closed too"
        );
    }
    // The stream in flight was not the one closed.
    let streamed = streaming.join().unwrap();
    assert_eq!(status_of(&streamed), "200", "{streamed}");
    assert!(streamed.contains("[DONE]"), "{streamed}");
    let stderr = proxy.stderr();
    assert_eq!(
        stderr.matches("max_connections").count(),
        1,
        "one warning, not one per connection: {stderr}"
    );
}

#[test]
fn a_body_that_never_ends_is_answered_408() {
    let (p, key) = env_with(Duration::from_millis(200), "body_timeout = \"1s\"");
    let proxy = Proxy::start(&p);
    let mut c = TcpStream::connect(&proxy.addr).unwrap();
    c.write_all(
        format!(
            "POST /openai/v1/chat/completions HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"model\":",
            proxy.addr
        )
        .as_bytes(),
    )
    .unwrap();
    let t = Instant::now();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = vec![0u8; 4096];
    let n = c.read(&mut got).unwrap();
    let answer = String::from_utf8_lossy(&got[..n]).into_owned();
    assert_eq!(status_of(&answer), "408", "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert!(t.elapsed() < Duration::from_secs(5));
}

/// An upstream that stops sending mid-stream: once `upstream_timeout` passes with nothing new,
/// the client gets an error event in the provider's format and the end of the stream (not a
/// hang), and the request is recorded as cut off, charged its reservation. One that keeps
/// sending, each piece within the timeout, streams to its end however long it takes in all.
#[test]
fn a_stream_whose_upstream_goes_silent_ends_after_the_upstream_timeout() {
    for (pause, silent) in [
        (Duration::from_secs(4), true),
        (Duration::from_millis(600), false),
    ] {
        let (p, key) = env_with(pause, "upstream_timeout = \"1s\"");
        let mut proxy = Proxy::start(&p);
        let t = Instant::now();
        let (_started, reader) = request(&proxy.addr, &key, "gpt-slow", true);
        let streamed = reader.join().unwrap();
        let took = t.elapsed();
        eprintln!("stream with pieces {pause:?} apart ended after {took:?}");
        assert!(streamed.starts_with("HTTP/1.1 200"), "{streamed}");
        if silent {
            assert!(
                streamed.contains("the upstream sent nothing for 1 s")
                    && !streamed.contains("[DONE]"),
                "the stream should end with an error event: {streamed}"
            );
            // The first chunk, one second of silence, and slack; not the mock's 4 s pause.
            assert!(took < Duration::from_secs(4), "took {took:?}");
        } else {
            // The silence is counted from the last piece, not from the first.
            assert!(
                streamed.contains("[DONE]") && !streamed.contains("sent nothing"),
                "{streamed}"
            );
            assert!(took > Duration::from_secs(1), "the stream took {took:?}");
        }
        // Stopped, so its writer has written the row and settled the reservation.
        proxy.signal(libc::SIGTERM);
        let status = wait_exit(&mut proxy.child, Duration::from_secs(10));
        assert_eq!(status.code(), Some(0), "{}", proxy.stderr());
        let (rows, _) = log(&p);
        assert_eq!(rows.len(), 1, "{rows:?}");
        let outcome = if silent { "cut" } else { "complete" };
        assert_eq!(rows[0]["outcome"], outcome, "{}", rows[0]);
        let (reserved, spent, open) = counters(p.env.home());
        assert_eq!((reserved, open), (0, 0));
        if silent {
            // No usage reported: charged its reservation, which its row shows.
            assert!(RESERVED.contains(&spent), "spent {spent}");
            assert_eq!(micros(&rows[0]), spent, "{}", rows[0]);
        }
    }
}

/// Every till command settles what a dead proxy left open (`lost`). A proxy that is alive must
/// never be taken for dead: `till log` run again and again while streams are open, while their
/// rows wait in the writer's queue and while they are written, leaves every request to the
/// proxy that serves it.
#[test]
fn till_log_during_open_streams_never_takes_a_live_proxy_for_dead() {
    let (p, key) = env_with(Duration::from_millis(30), "");
    let mut proxy = Proxy::start(&p);
    let mut readers = Vec::new();
    let mut logs = 0;
    let mut notes = String::new();
    for round in 0..6 {
        for _ in 0..3 {
            readers.push(request(&proxy.addr, &key, "gpt-slow", true).1);
        }
        // Streams open, then ending, then their rows queued or being written.
        let until = Instant::now() + Duration::from_millis(if round % 2 == 0 { 700 } else { 200 });
        while Instant::now() < until {
            let (rows, stderr) = log(&p);
            logs += 1;
            notes.push_str(&stderr);
            if rows.iter().any(|r| r["outcome"] == "lost") {
                let alive = proxy.child.try_wait().unwrap();
                panic!(
                    "a request was recorded as lost (proxy exit: {alive:?}): {rows:?}\n{stderr}\n{}",
                    proxy.stderr()
                );
            }
        }
    }
    for r in readers {
        assert!(r.join().unwrap().contains("[DONE]"));
    }
    proxy.signal(libc::SIGTERM);
    let status = wait_exit(&mut proxy.child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", proxy.stderr());
    let (rows, stderr) = log(&p);
    notes.push_str(&stderr);
    eprintln!("{logs} runs of till log beside 18 streams");
    assert!(logs >= 6, "till log ran only {logs} times");
    assert!(!notes.contains("left open"), "{notes}");
    assert_eq!(rows.len(), 18, "{rows:?}");
    assert!(rows.iter().all(|r| r["outcome"] == "complete"), "{rows:?}");
    let (reserved, _, open) = counters(p.env.home());
    assert_eq!((reserved, open), (0, 0));
}

/// The names in the data directory's `owners`, sorted.
fn owner_files(p: &ProxyEnv) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(p.env.path("data/owners"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// A proxy killed with nothing open leaves its lock file; the next till removes it, and never a
/// running proxy's.
#[test]
fn a_killed_proxys_lock_file_is_removed_by_the_next_till() {
    let (p, key) = env_with(Duration::ZERO, "");
    let live = Proxy::start(&p);
    let mut killed = Proxy::start(&p);
    let answer = request(&killed.addr, &key, "gpt-4o-mini", false)
        .1
        .join()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(owner_files(&p).len(), 2, "{:?}", owner_files(&p));
    // Killed once its row is written (the writer groups rows), so it holds nothing open.
    let deadline = Instant::now() + Duration::from_secs(10);
    while log(&p).0.is_empty() {
        assert!(Instant::now() < deadline, "the row was never written");
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = owner_files(&p);
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    assert_eq!(owner_files(&p), before, "a killed proxy removes nothing");

    let (rows, stderr) = log(&p);
    assert!(!stderr.contains("lost"), "{stderr}");
    assert_eq!(rows.len(), 1, "{rows:?}");
    let left = owner_files(&p);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(before.contains(&left[0]));
    // The one left is the running proxy's: it still serves, and still holds its lock.
    let answer = request(&live.addr, &key, "gpt-4o-mini", false)
        .1
        .join()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let _ = log(&p);
    assert_eq!(owner_files(&p), left);
    drop(live);
    let _ = log(&p);
    assert!(owner_files(&p).is_empty(), "{:?}", owner_files(&p));
}

/// The pid holding a POSIX read lock on the byte of the ledger's `-shm` file by which SQLite
/// tells whether any other process has the shared memory open (its "DMS" byte, 128 in the unix
/// VFS), as another process sees it; `None` when nobody does or the file is gone.
///
/// While one does, a till opening the ledger keeps the shared memory as it is. When nobody does
/// it truncates and rebuilds it, and a running proxy reading it (SQLite's connections and till's
/// commit signal map it) dies of SIGBUS or reads a half-built index.
fn shm_holder(home: &Path) -> Option<i32> {
    use std::os::fd::AsRawFd as _;
    // The last connection to close removes the file.
    let shm = match std::fs::File::open(home.join("data/ledger.sqlite3-shm")) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("{e}"),
    };
    // SAFETY: a zeroed flock is a valid argument; F_GETLK only writes into it.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as _;
    lock.l_whence = libc::SEEK_SET as _;
    lock.l_start = 128;
    lock.l_len = 1;
    // SAFETY: F_GETLK on an open descriptor with a valid flock.
    let rc = unsafe { libc::fcntl(shm.as_raw_fd(), libc::F_GETLK, &mut lock) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    (i32::from(lock.l_type) != libc::F_UNLCK).then_some(lock.l_pid)
}

/// A running proxy keeps its share of the ledger's shared memory from start to stop: other
/// tills (`till log`) opening the ledger beside it must find it held, and leave it alone.
#[test]
fn a_running_proxy_keeps_its_hold_on_the_ledgers_shared_memory() {
    let (p, key) = env_with(Duration::ZERO, "");
    let mut proxy = Proxy::start(&p);
    let pid = proxy.child.id() as i32;
    assert_eq!(shm_holder(p.env.home()), Some(pid), "right after the start");
    for i in 0..3 {
        let answer = request(&proxy.addr, &key, "gpt-4o-mini", false)
            .1
            .join()
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let (rows, _) = log(&p);
        assert_eq!(shm_holder(p.env.home()), Some(pid), "after request {i}");
        assert!(rows.iter().all(|r| r["outcome"] != "lost"), "{rows:?}");
    }
    assert_eq!(proxy.child.try_wait().unwrap(), None, "{}", proxy.stderr());
    proxy.signal(libc::SIGTERM);
    let status = wait_exit(&mut proxy.child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", proxy.stderr());
    assert_eq!(shm_holder(p.env.home()), None, "after the stop");
}
