//! Streaming latency probe for `scripts/bench-nginx.sh`: what a proxy adds to the first event
//! of a stream and to every event after it.
//!
//!     stream_probe --listen ADDR [--rounds N] [--requests N] [--chunks N] [--gap-us US] NAME=URL [--key KEY]…
//!
//! One process is both ends, so one clock times both: it serves an OpenAI-style SSE stream on
//! `ADDR` (N events `gap-us` apart, the first as soon as the request has arrived, then the
//! usage event and `[DONE]`), and sends streaming chat completions to each `NAME=URL` in turn
//! (one request per target per turn, so a change in the machine's load falls on all alike),
//! each on its own keep-alive connection. The targets are that same server directly and
//! proxies in front of it. For each round and target it prints, as one JSON object per line:
//! first-event time (request written → first event read) and per-event delay (event written by
//! the server → read by the client), each as p50/p99/max in microseconds.
//!
//! With no targets it only serves, until it is killed.
//!
//! Standard library only, blocking sockets, loopback only.

use std::io::{BufRead as _, BufReader, Read, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Write times of the events of the request being served (one request at a time).
type Sent = Arc<Mutex<Vec<Instant>>>;

struct Target {
    name: String,
    host: String,
    path: String,
    key: String,
    conn: Option<TcpStream>,
    first: Vec<u64>,
    events: Vec<u64>,
}

fn main() {
    let mut listen = String::from("127.0.0.1:0");
    let (mut requests, mut chunks, mut gap_us, mut rounds) = (200usize, 20usize, 2000u64, 1usize);
    let mut targets: Vec<Target> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().expect("a value after each option");
        match a.as_str() {
            "--listen" => listen = val(),
            "--requests" => requests = val().parse().expect("--requests N"),
            "--chunks" => chunks = val().parse().expect("--chunks N"),
            "--gap-us" => gap_us = val().parse().expect("--gap-us US"),
            "--rounds" => rounds = val().parse().expect("--rounds N"),
            "--key" => targets.last_mut().expect("--key after a target").key = val(),
            t => {
                let (name, url) = t.split_once('=').expect("targets are NAME=URL");
                let rest = url.strip_prefix("http://").expect("http:// URLs only");
                let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                targets.push(Target {
                    name: name.into(),
                    host: host.into(),
                    path: path.into(),
                    key: "none".into(),
                    conn: None,
                    first: Vec::new(),
                    events: Vec::new(),
                });
            }
        }
    }
    let listener = TcpListener::bind(&listen).expect("bind --listen");
    let sent: Sent = Arc::default();
    {
        let sent = sent.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let sent = sent.clone();
                std::thread::spawn(move || serve(conn, &sent, chunks, gap_us));
            }
        });
    }
    if targets.is_empty() {
        // Only the upstream (scripts/callgrind_proxy.py): serve until killed.
        loop {
            std::thread::park();
        }
    }
    let body = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"stream please"}]}"#;
    let markers: Vec<String> = (0..chunks)
        .map(|i| format!("\"content\":\"c{i}\""))
        .collect();
    for round in 0..rounds {
        for turn in 0..requests + 5 {
            let n = targets.len();
            for k in 0..n {
                // Rotate the order from turn to turn.
                let t = &mut targets[(turn + k) % n];
                let (first, delays) = exchange(t, body, &markers, &sent);
                if turn >= 5 {
                    t.first.push(first);
                    t.events.extend(delays);
                }
            }
        }
        for t in &mut targets {
            println!(
                "{{\"round\":{round},\"target\":\"{}\",\"first_p50_us\":{},\"first_p99_us\":{},\"event_p50_us\":{},\"event_p99_us\":{},\"event_max_us\":{},\"requests\":{requests}}}",
                t.name,
                pct(&mut t.first, 50.0),
                pct(&mut t.first, 99.0),
                pct(&mut t.events, 50.0),
                pct(&mut t.events, 99.0),
                pct(&mut t.events, 100.0),
            );
            t.first.clear();
            t.events.clear();
        }
    }
}

fn pct(v: &mut [u64], p: f64) -> u64 {
    v.sort_unstable();
    if v.is_empty() {
        return 0;
    }
    let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[i]
}

/// One streamed request: (first-event time, each event's delay), in microseconds.
fn exchange(t: &mut Target, body: &str, markers: &[String], sent: &Sent) -> (u64, Vec<u64>) {
    let req = format!(
        "POST {} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\naccept: text/event-stream\r\ncontent-length: {}\r\n\r\n{}",
        t.path,
        t.host,
        t.key,
        body.len(),
        body
    );
    for attempt in 0..2 {
        if t.conn.is_none() {
            let s = TcpStream::connect(&t.host).expect("connect to a target");
            s.set_nodelay(true).ok();
            s.set_read_timeout(Some(Duration::from_secs(10))).ok();
            t.conn = Some(s);
        }
        let conn = t.conn.as_mut().expect("connected");
        let start = Instant::now();
        if conn.write_all(req.as_bytes()).is_err() {
            t.conn = None;
            continue;
        }
        let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
        let mut arrived: Vec<Instant> = Vec::with_capacity(markers.len());
        let mut chunk = [0u8; 16 * 1024];
        let mut ok = false;
        let mut pos = 0usize;
        loop {
            let n = match conn.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let now = Instant::now();
            buf.extend_from_slice(&chunk[..n]);
            while let Some(m) = markers.get(arrived.len())
                && let Some(i) = find(&buf[pos..], m.as_bytes())
            {
                pos += i + m.len();
                arrived.push(now);
            }
            if buf.ends_with(b"0\r\n\r\n") && find(&buf, b"[DONE]").is_some() {
                ok = true;
                break;
            }
        }
        if !ok || arrived.len() != markers.len() {
            assert!(
                attempt == 0 && buf.is_empty(),
                "{}: incomplete stream ({} of {} events): {}",
                t.name,
                arrived.len(),
                markers.len(),
                String::from_utf8_lossy(&buf[..buf.len().min(400)])
            );
            t.conn = None;
            continue;
        }
        let written = sent.lock().expect("sent lock").clone();
        let first = arrived[0].duration_since(start).as_micros() as u64;
        let delays = arrived
            .iter()
            .zip(&written)
            .map(|(a, w)| a.saturating_duration_since(*w).as_micros() as u64)
            .collect();
        return (first, delays);
    }
    panic!("{}: no answer", t.name);
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Serves streamed completions on one connection until the peer closes it.
fn serve(conn: TcpStream, sent: &Sent, chunks: usize, gap_us: u64) {
    conn.set_nodelay(true).ok();
    let mut out = conn.try_clone().expect("clone the socket");
    let mut reader = BufReader::new(conn);
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        sent.lock().expect("sent lock").clear();
        let mut head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        for i in 0..chunks {
            let event = format!(
                "data: {{\"id\":\"chatcmpl-probe\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"c{i}\"}},\"finish_reason\":null}}]}}\n\n"
            );
            let mut frame = std::mem::take(&mut head);
            frame.extend_from_slice(format!("{:x}\r\n{event}\r\n", event.len()).as_bytes());
            sent.lock().expect("sent lock").push(Instant::now());
            if out.write_all(&frame).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_micros(gap_us));
        }
        let tail = "data: {\"id\":\"chatcmpl-probe\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":20,\"total_tokens\":23}}\n\ndata: [DONE]\n\n";
        let frame = format!("{:x}\r\n{tail}\r\n0\r\n\r\n", tail.len());
        if out.write_all(frame.as_bytes()).is_err() {
            return;
        }
    }
}
