//! `till run` and the proxy against the mock provider: every wire format, JSON and streaming,
//! denials in each provider's shape, and that root keys never reach the agent.

use serde_json::Value;

use crate::support::{ProxyEnv, ROOT_KEY, output, output_with_stdin};

fn text_of(v: &Value) -> String {
    v.to_string()
}

#[test]
fn every_wire_format_works_through_till_run() {
    let p = ProxyEnv::new();
    let cases: &[(&[&str], &[&str], &str)] = &[
        (&[], &["openai", "chat"], "Hello from the mock"),
        (&[], &["openai", "chat", "--stream"], "[DONE]"),
        (&[], &["openai", "responses"], "response"),
        (
            &[],
            &["openai", "responses", "--stream"],
            "response.completed",
        ),
        (&[], &["openai", "embeddings"], "embedding"),
        (
            &["--endpoints", "inference,models"],
            &["openai", "models"],
            "gpt-4o-mini",
        ),
        (&[], &["anthropic", "messages"], "Hello from the mock"),
        (
            &[],
            &["anthropic", "messages", "--auth", "bearer"],
            "Hello from the mock",
        ),
        (&[], &["anthropic", "messages", "--stream"], "message_stop"),
        (&[], &["gemini", "generate"], "Hello from the mock"),
        (
            &[],
            &["gemini", "generate", "--stream", "--auth", "query"],
            "usageMetadata",
        ),
    ];
    for (scope, args, expect) in cases {
        let (v, stderr) = p.client(scope, args);
        assert_eq!(v["status"], 200, "{args:?}: {v}\n{stderr}");
        assert!(
            text_of(&v).contains(expect),
            "{args:?}: expected {expect} in {v}"
        );
    }
    p.assert_upstream_saw_only_root_keys();
}

#[test]
fn openai_stream_gets_no_usage_chunk_it_did_not_ask_for() {
    let p = ProxyEnv::new();
    let (v, _) = p.client(&[], &["openai", "chat", "--stream"]);
    let events = v["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .all(|e| !e.as_str().unwrap().contains("\"choices\":[]")),
        "{v}"
    );
    // till asked upstream for usage all the same.
    let req = p
        .mock
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/chat/completions"))
        .unwrap();
    assert!(req.body.unwrap().contains("include_usage"));
}

#[test]
fn denials_use_each_providers_error_shape() {
    let p = ProxyEnv::new();
    let (v, _) = p.client(
        &["--scope", "openai/gpt-4o-mini"],
        &["openai", "chat", "--model", "gpt-4o"],
    );
    assert_eq!(v["status"], 403, "{v}");
    assert_eq!(v["body"]["error"]["code"], "till_model");
    assert!(
        v["body"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--scope openai/gpt-4o")
    );

    let (v, _) = p.client(
        &["--scope", "anthropic/claude-haiku-*"],
        &["anthropic", "messages", "--model", "claude-opus-4-1"],
    );
    assert_eq!(v["status"], 403, "{v}");
    assert_eq!(v["body"]["type"], "error");
    assert_eq!(v["body"]["error"]["type"], "permission_error");

    let (v, _) = p.client(
        &["--scope", "gemini/gemini-2.0-*"],
        &["gemini", "generate", "--model", "gemini-2.5-pro"],
    );
    assert_eq!(v["status"], 403, "{v}");
    assert_eq!(v["body"]["error"]["status"], "PERMISSION_DENIED");

    // Endpoint classes: files are not inference.
    let (v, _) = p.client(&[], &["openai", "files"]);
    assert_eq!(v["status"], 403, "{v}");
    assert_eq!(v["body"]["error"]["code"], "till_endpoint");

    // A provider outside the scope: the agent gets no variables for it at all...
    let (code, stdout, stderr) = p.run(&[
        "--scope",
        "openai",
        "--",
        "sh",
        "-c",
        "echo ${ANTHROPIC_API_KEY:-unset}",
    ]);
    assert_eq!((code, stdout.trim()), (0, "unset"), "{stderr}");
    // ...and its key is refused by the proxy for that provider.
    let script = "curl -s -o /dev/null -w '%{http_code}' -H \"x-api-key: $OPENAI_API_KEY\" -H 'anthropic-version: 2023-06-01' -d '{\"model\":\"claude-haiku-4-5\",\"max_tokens\":5,\"messages\":[]}' $TILL_PROXY_URL/anthropic/v1/messages";
    let (code, stdout, stderr) = p.run(&["--scope", "openai", "--", "sh", "-c", script]);
    assert_eq!((code, stdout.trim()), (0, "403"), "{stderr}");
}

#[test]
fn rpm_limit_answers_429_with_retry_after() {
    let p = ProxyEnv::new();
    let script = format!(
        "python3 {c} openai chat && python3 {c} openai chat",
        c = crate::support::client_script()
    );
    let (code, stdout, stderr) = p.run(&["--rpm", "1", "--", "sh", "-c", &script]);
    assert_eq!(code, 0, "{stderr}");
    let results: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        results
            .iter()
            .map(|r| r["status"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [200, 429]
    );
    assert_eq!(results[1]["body"]["error"]["code"], "till_rpm");
    let message = results[1]["body"]["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("this key allows 1 request per minute; wait"),
        "{message}"
    );
    let retry: u64 = results[1]["retry_after"].as_str().unwrap().parse().unwrap();
    // The ledger's window counts a second for 60 to 61 seconds, so the wait can be 61.
    assert!((1..=61).contains(&retry), "{retry}");
    assert!(stderr.contains("2 requests (1 denied: rpm 1)"), "{stderr}");
}

#[test]
fn max_output_tokens_is_enforced_and_capped() {
    let p = ProxyEnv::new();
    let (v, _) = p.client(
        &["--max-output-tokens", "50"],
        &["openai", "chat", "--max-tokens", "500"],
    );
    assert_eq!(v["status"], 403, "{v}");
    assert_eq!(v["body"]["error"]["code"], "till_max_output_tokens");
    p.mock.clear_requests();
    let (v, _) = p.client(&["--max-output-tokens", "50"], &["openai", "chat"]);
    assert_eq!(v["status"], 200, "{v}");
    let body = p.mock.requests()[0].body.clone().unwrap();
    assert!(body.contains("\"max_completion_tokens\":50"), "{body}");
}

#[test]
fn root_key_never_reaches_the_agent() {
    let p = ProxyEnv::new();
    let mut cmd = p.env.till();
    cmd.env("OPENAI_API_KEY", ROOT_KEY)
        .env("SOME_COPY", format!("Bearer {ROOT_KEY}"))
        .env("OPENAI_ADMIN_KEY", "sk-admin-xyz")
        .env("ANTHROPIC_AUTH_TOKEN", "tok")
        .args([
            "run",
            "--",
            "sh",
            "-c",
            "env; cat /proc/self/cmdline | tr '\\0' ' '; echo \"$@\"",
            "agent",
            "arg1",
        ]);
    let (code, stdout, stderr) = output(&mut cmd);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !stdout.contains(ROOT_KEY),
        "root key in the agent's environment or argv:\n{stdout}"
    );
    assert!(
        !stderr.contains(ROOT_KEY),
        "root key in till's stderr:\n{stderr}"
    );
    for gone in [
        "OPENAI_ADMIN_KEY=",
        "ANTHROPIC_AUTH_TOKEN=",
        "TILL_PASSPHRASE=",
        "SOME_COPY=",
    ] {
        assert!(
            !stdout.contains(gone),
            "{gone} reached the agent:\n{stdout}"
        );
    }
    assert!(stdout.contains("OPENAI_API_KEY=till_"), "{stdout}");
    assert!(
        stdout.contains("ANTHROPIC_BASE_URL=http://127.0.0.1:"),
        "{stdout}"
    );
    // Nor anywhere in till's files.
    for entry in walk(p.env.home()) {
        let bytes = std::fs::read(&entry).unwrap();
        let hay = String::from_utf8_lossy(&bytes);
        assert!(!hay.contains(ROOT_KEY), "root key in {}", entry.display());
    }
}

/// An admin key (stronger than a root key: it makes and deletes provider keys) reaches the
/// agent under no variable name: every variable whose value holds a stored admin key is
/// dropped, as for root keys, and unrelated ones stay.
#[test]
fn stored_admin_keys_never_reach_the_agent_under_any_name() {
    const OPENAI_ADMIN: &str = "sk-admin-0penai0000000000000000000000000000001";
    const ANTHROPIC_ADMIN: &str = "sk-ant-admin01-anthropic000000000000000000000002";
    let p = ProxyEnv::new();
    for (provider, key) in [("openai", OPENAI_ADMIN), ("anthropic", ANTHROPIC_ADMIN)] {
        let (code, _, stderr) = crate::support::output_with_stdin(
            p.env
                .till()
                .args(["add", provider, "--admin", "--no-verify"]),
            key,
        );
        assert_eq!(code, 0, "till add {provider} --admin: {stderr}");
    }
    let mut cmd = p.env.till();
    cmd.env("MY_ADMIN", OPENAI_ADMIN)
        .env("X", format!("prefix-{OPENAI_ADMIN}-suffix"))
        .env("CLAUDE_ADMIN_COPY", format!("Bearer {ANTHROPIC_ADMIN}"))
        .env("UNRELATED", "stays")
        .env("MY_PASS", crate::support::PASSPHRASE)
        .env(format!("K_{OPENAI_ADMIN}"), "1")
        .env(format!("K_{}", crate::support::ROOT_KEY), "1")
        .args(["run", "--", "env"]);
    let (code, stdout, stderr) = output(&mut cmd);
    assert_eq!(code, 0, "{stderr}");
    let names: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_once('=').map(|(name, _)| name))
        .collect();
    for key in [OPENAI_ADMIN, ANTHROPIC_ADMIN] {
        assert!(
            !stdout.contains(key),
            "an admin key reached the agent:\n{stdout}"
        );
        assert!(!stderr.contains(key), "an admin key in till's stderr");
    }
    assert!(
        !stdout.contains(crate::support::ROOT_KEY),
        "a root key reached the agent in a variable's name:\n{stdout}"
    );
    assert!(
        !stdout.contains(crate::support::PASSPHRASE),
        "the file store's passphrase reached the agent:\n{stdout}"
    );
    for gone in ["MY_ADMIN", "X", "CLAUDE_ADMIN_COPY", "MY_PASS"] {
        assert!(
            !names.contains(&gone),
            "{gone} reached the agent:\n{stdout}"
        );
    }
    assert!(stdout.lines().any(|l| l == "UNRELATED=stays"), "{stdout}");
    assert!(stdout.contains("OPENAI_API_KEY=till_"), "{stdout}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// With the mock pausing 200 ms between chunks, the agent reads the first chunk before the
/// mock has sent the last: both write to one file, so the order of lines is the order of
/// events.
#[test]
fn streaming_is_not_buffered() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.log");
    let opts = till_mock::MockOptions {
        events: Some(events.clone()),
        chunk_delay: std::time::Duration::from_millis(200),
        ..Default::default()
    };
    let p = ProxyEnv::with_options(opts, "");
    let ev = events.to_string_lossy().into_owned();
    for args in [
        vec![
            "openai",
            "chat",
            "--stream",
            "--model",
            "gpt-4o-mini-slow",
            "--events",
            &ev,
        ],
        vec![
            "anthropic",
            "messages",
            "--stream",
            "--model",
            "claude-slow",
            "--events",
            &ev,
        ],
        vec![
            "gemini",
            "generate",
            "--stream",
            "--model",
            "gemini-slow",
            "--events",
            &ev,
        ],
    ] {
        std::fs::write(&events, "").unwrap();
        let (v, _) = p.client(&[], &args);
        assert_eq!(v["status"], 200, "{v}");
        let log = std::fs::read_to_string(&events).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        let first_received = lines
            .iter()
            .position(|l| *l == "agent got chunk 0")
            .expect(&log);
        let last_sent = lines
            .iter()
            .rposition(|l| l.starts_with("mock sent chunk"))
            .expect(&log);
        let (i, n) = parse_sent(lines[last_sent]);
        assert_eq!(i, n, "{log}");
        assert!(
            first_received < last_sent,
            "{args:?}: the agent got nothing before the last chunk was sent:\n{log}"
        );
    }
}

fn parse_sent(line: &str) -> (u32, u32) {
    let rest = line.trim_start_matches("mock sent chunk ");
    let (i, n) = rest.split_once(" of ").unwrap();
    (i.parse().unwrap(), n.parse().unwrap())
}

#[test]
fn upstream_cut_mid_stream_ends_cleanly() {
    let p = ProxyEnv::new();
    let (v, _) = p.client(
        &[],
        &["openai", "chat", "--stream", "--model", "gpt-4o-cut"],
    );
    assert_eq!(v["status"], 200, "{v}");
    let last = v["events"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        last.contains("till_upstream"),
        "the stream should end with an error event: {v}"
    );
    let (v, _) = p.client(
        &[],
        &["anthropic", "messages", "--stream", "--model", "claude-cut"],
    );
    let last = v["events"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    assert!(last.contains("\"type\":\"error\""), "{v}");
}

#[test]
fn upstream_errors_pass_through_in_shape() {
    let p = ProxyEnv::new();
    let (v, _) = p.client(&[], &["openai", "chat", "--model", "gpt-error500"]);
    assert_eq!(v["status"], 500, "{v}");
    assert!(v["body"]["error"].is_object(), "{v}");
}

/// Sends one chat completion to `till serve` at `url` with `host` as the `Host` header, and
/// returns the status code.
fn post_with_host(url: &str, host: &str, key: &str) -> u16 {
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    crate::support::raw_post(url, host, "/openai/v1/chat/completions", key, body).0
}

/// Regression: `Host: 127.evil.com` (and other names that merely start like a loopback
/// address) was answered, which let a DNS-rebinding page drive the proxy.
#[test]
fn foreign_host_names_never_reach_the_upstream() {
    let p = ProxyEnv::new();
    let key = p.create_key(&["--scope", "openai"]);
    let serve = p.serve();
    // `till add` checked each root key with the mock; only what follows counts.
    p.mock.clear_requests();
    for host in [
        "127.evil.com",
        "127.0.0.1.evil.com",
        "localhost.evil.com",
        "[::1]evil",
        "127.0.0.1:80@evil",
    ] {
        assert_eq!(post_with_host(&serve.url, host, &key), 421, "{host}");
    }
    assert!(p.mock.requests().is_empty(), "{:?}", p.mock.requests());
    // The same request addressed to the proxy's own name goes through.
    let own = serve.url.trim_start_matches("http://").to_string();
    assert_eq!(post_with_host(&serve.url, &own, &key), 200);
    assert_eq!(p.mock.requests().len(), 1);
}

/// Resident memory of process `pid` in KiB.
#[cfg(target_os = "linux")]
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in {status}"))
}

/// Regression: the meter held an SSE event until its blank line, however long, so an upstream
/// that never ended one grew the proxy's memory with every byte. The mock's `endless` model
/// sends one 64 MiB `data:` line; the client must get all of it, the proxy must not keep it,
/// and with usage unknown the key is charged its reservation.
#[cfg(target_os = "linux")]
#[test]
fn an_endless_event_streams_through_in_bounded_memory() {
    use std::io::{Read as _, Write as _};
    let p = ProxyEnv::with_options(
        till_mock::MockOptions::default(),
        "[prices.\"openai/gpt-endless\"]\ninput = 1.0\noutput = 100.0\n",
    );
    let key = p.create_key(&["--name", "endless", "--scope", "openai", "--budget", "1usd"]);
    let mut serve = p.serve();
    let pid = serve.child.id();
    let addr = serve.url.trim_start_matches("http://").to_string();
    // One ordinary request first, so the proxy's threads and pools exist before the baseline.
    assert_eq!(post_with_host(&serve.url, &addr, &key), 200);
    let baseline = rss_kib(pid);

    let body = r#"{"model":"gpt-endless","stream":true,"max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#;
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "POST /openai/v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut head = Vec::new();
    let mut filler = 0usize;
    let mut peak = baseline;
    let mut buf = vec![0u8; 64 * 1024];
    let mut since_sample = 0usize;
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        if head.len() < 4096 {
            head.extend_from_slice(&buf[..n.min(4096)]);
        }
        // Chunk sizes are hex digits and the headers come first: every `x` is filler.
        filler += buf[..n].iter().filter(|b| **b == b'x').count();
        since_sample += n;
        if since_sample >= 1 << 20 {
            since_sample = 0;
            peak = peak.max(rss_kib(pid));
        }
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("data: xxxx"), "{head}");
    let header_x = head[..head.find("\r\n\r\n").unwrap()].matches('x').count();
    assert_eq!(filler - header_x, till_mock::ENDLESS_BYTES);
    let grown_mib = (peak - baseline) as f64 / 1024.0;
    eprintln!("till serve RSS: {baseline} KiB before, {peak} KiB at most while streaming");
    assert!(
        grown_mib < 32.0,
        "the proxy grew by {grown_mib:.1} MiB while passing on a 64 MiB event"
    );

    // Stop the proxy cleanly so its ledger writer settles the request, then read the key.
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    assert!(serve.child.wait().unwrap().success());
    let (_, stdout, _) = output(p.env.till().args(["key", "show", "endless", "--json"]));
    let v: Value = serde_json::from_str(&stdout).unwrap();
    let spent = v["spent_usd"].as_f64().unwrap();
    // The ordinary request cost a few micro-dollars; the endless one its reservation: 100
    // output tokens at $100/M plus the prompt estimate.
    assert!(
        (0.010..0.0102).contains(&spent),
        "charged {spent}, expected the ~$0.01 reservation: {v}"
    );
}

/// Regression: `--rpm` was counted in each proxy's memory, so two proxies serving one key
/// each allowed the key's whole rate. Now the window is in the ledger they share.
#[test]
fn rpm_holds_across_two_proxies_sharing_a_key() {
    let p = ProxyEnv::new();
    let key = p.create_key(&["--name", "shared", "--scope", "openai", "--rpm", "3"]);
    let a = p.serve();
    let b = p.serve();
    p.mock.clear_requests();
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    let mut statuses = Vec::new();
    for i in 0..8 {
        let serve = if i % 2 == 0 { &a } else { &b };
        let host = serve.url.trim_start_matches("http://");
        let (status, answer) =
            crate::support::raw_post(&serve.url, host, "/openai/v1/chat/completions", &key, body);
        if status == 429 {
            assert!(answer.contains("till_rpm"), "{answer}");
            let retry = answer
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("retry-after")
                        .then(|| value.trim().parse::<u64>().ok())?
                })
                .unwrap_or_else(|| panic!("no Retry-After: {answer}"));
            assert!((1..=61).contains(&retry), "{retry}");
        }
        statuses.push(status);
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429, 429, 429]);
    assert_eq!(p.mock.requests().len(), 3);
}

/// A plain-HTTP upstream written by hand: it answers the first request of each connection
/// with a length and hop-by-hop headers, the next with a chunked body and a trailer, and
/// keeps what it read. Returns its port, the requests, and the connections it accepted.
fn hand_written_upstream() -> (
    u16,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (s, a) = (seen.clone(), accepted.clone());
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(mut tcp) = tcp else { return };
            a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let s = s.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let mut buf = [0u8; 65536];
                for n in 0.. {
                    // One whole request: its head, then content-length bytes.
                    let request = loop {
                        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&got[..end]).to_string();
                            let len = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length: "))
                                .map_or(0, |v| v.parse::<usize>().unwrap());
                            if got.len() >= end + 4 + len {
                                let all: Vec<u8> = got.drain(..end + 4 + len).collect();
                                break String::from_utf8_lossy(&all).to_string();
                            }
                        }
                        match tcp.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(k) => got.extend_from_slice(&buf[..k]),
                        }
                    };
                    s.lock().unwrap().push(request);
                    let body = r#"{"id":"c","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"hand"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
                    let answer = if n % 2 == 0 {
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                             connection: keep-alive, X-Upstream-Hop\r\nkeep-alive: timeout=5\r\n\
                             x-upstream-hop: 1\r\n\
                             proxy-authenticate: Basic\r\nx-request-id: req-{n}\r\n\
                             content-length: {}\r\n\r\n{body}",
                            body.len()
                        )
                    } else {
                        let (a, b) = body.split_at(40);
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                             transfer-encoding: chunked\r\ntrailer: x-t\r\nx-request-id: req-{n}\r\n\r\n\
                             {:x};ext=1\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\nx-t: 1\r\n\r\n",
                            a.len(),
                            b.len()
                        )
                    };
                    if tcp.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, seen, accepted)
}

/// Configures `name` as an OpenAI-compatible provider at `http://127.0.0.1:port`, stores its
/// root key, and returns a till key scoped to it.
fn plain_http_provider(p: &ProxyEnv, name: &str, port: u16) -> String {
    plain_http_provider_of(p, name, "openai", &format!("http://127.0.0.1:{port}"))
}

/// One answer of a [`canned_upstream`]: given the request's head and body as text, its
/// status, `Content-Type` and body.
type Canned = Box<dyn FnOnce(&str) -> (u16, String, Vec<u8>) + Send>;

/// An upstream on loopback (its port) that reads one whole request per connection and gives
/// it the next of `answers`, with a `Content-Length`, then closes.
fn canned_upstream(answers: Vec<Canned>) -> u16 {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for (tcp, answer) in listener.incoming().zip(answers) {
            let Ok(mut tcp) = tcp else { return };
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            let whole = loop {
                match tcp.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
                let text = String::from_utf8_lossy(&got).to_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    break end + 4 + len;
                }
            };
            while got.len() < whole {
                match tcp.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let (status, ctype, body) = answer(&String::from_utf8_lossy(&got));
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = tcp.write_all(head.as_bytes());
            let _ = tcp.write_all(&body);
        }
    });
    port
}

/// [`plain_http_provider`] of the API family `api` at `base_url`.
fn plain_http_provider_of(p: &ProxyEnv, name: &str, api: &str, base_url: &str) -> String {
    let config = std::fs::read_to_string(p.env.path("config.toml")).unwrap();
    p.env.config(&format!(
        "{config}\n[providers.{name}]\napi = \"{api}\"\nbase_url = \"{base_url}\"\n"
    ));
    let (code, _, stderr) = crate::support::output_with_stdin(
        p.env.till().args(["add", name, "--no-verify"]),
        ROOT_KEY,
    );
    assert_eq!(code, 0, "{stderr}");
    p.create_key(&["--scope", name])
}

/// Plain-HTTP providers are spoken to by till's own HTTP/1.1 client: what reaches the
/// upstream is the canonical request with the root key and nothing of the child key, the
/// answers (by length and chunked) come back whole without their hop-by-hop headers (also
/// those a `Connection` header names, either way), and one upstream connection carries them
/// all.
#[test]
fn a_plain_http_provider_gets_exact_requests_and_its_answers_come_back_without_hop_headers() {
    let p = ProxyEnv::new();
    let (port, seen, accepted) = hand_written_upstream();
    let key = plain_http_provider(&p, "hand", port);
    let serve = p.serve();
    let auth = format!("Bearer {key}");
    let body = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    // One client connection, so one proxy thread and its one upstream connection.
    let answers = keep_alive_posts(
        &serve.url,
        "/hand/v1/chat/completions",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("x-client", "kept"),
            // A header for this hop alone, by the Connection header's word.
            ("connection", "keep-alive, X-Hop-Only"),
            ("x-hop-only", "1"),
        ],
        body,
        4,
    );
    for (n, (status, head, answer)) in answers.into_iter().enumerate() {
        assert_eq!(status, 200, "{head}\n{answer}");
        let head = head.to_ascii_lowercase();
        assert!(head.contains(&format!("x-request-id: req-{n}")), "{head}");
        for hop in [
            "keep-alive:",
            "proxy-authenticate",
            "trailer:",
            "connection: keep-alive",
            "x-upstream-hop",
        ] {
            assert!(!head.contains(hop), "{hop} reached the client: {head}");
        }
        let v: Value = serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer}"));
        assert_eq!(v["choices"][0]["message"]["content"], "hand", "{answer}");
    }
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 4, "{requests:?}");
    for r in &requests {
        let expected = format!("POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n");
        assert!(r.starts_with(&expected), "{r}");
        assert!(
            r.contains(&format!("authorization: Bearer {ROOT_KEY}\r\n")),
            "{r}"
        );
        assert!(r.contains("x-client: kept\r\n"), "{r}");
        assert!(
            !r.contains("x-hop-only") && !r.contains("connection:"),
            "{r}"
        );
        assert!(!r.contains("till_") && !r.contains(&key), "{r}");
        assert!(r.ends_with(std::str::from_utf8(body).unwrap()), "{r}");
        assert_eq!(r.matches("content-length:").count(), 1, "{r}");
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    // And the ledger has all four (the writer batches them), metered from both kinds of body.
    let rows = crate::support::poll_rows(&p, 4);
    assert_eq!(rows.len(), 4, "{rows:?}");
    for row in &rows {
        assert_eq!(row["input_tokens"], 3, "{row}");
    }
}

/// What till sets in a forwarded request reaches the upstream once each, whatever the client
/// sent of the same: the family's credential header with the root key (the child key, sent in
/// it, nowhere), `accept-encoding: identity`, the JSON content type, and the family's default
/// `anthropic-version` only when the client sent none (the client's own when it did).
#[test]
fn the_headers_till_sets_reach_a_plain_http_provider_once_each() {
    let p = ProxyEnv::new();
    let (port, seen, _) = hand_written_upstream();
    let key = plain_http_provider_of(
        &p,
        "local",
        "anthropic",
        &format!("http://127.0.0.1:{port}"),
    );
    let serve = p.serve();
    let body = br#"{"model":"claude-haiku-4-5","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;
    for version in [None, Some("2024-10-22")] {
        let mut headers = vec![
            ("x-api-key", key.as_str()),
            ("content-type", "application/json; charset=utf-8"),
            ("accept-encoding", "gzip, br"),
            ("x-client", "kept"),
        ];
        headers.extend(version.map(|v| ("anthropic-version", v)));
        let answers = keep_alive_posts(&serve.url, "/local/v1/messages", &headers, body, 1);
        assert_eq!(answers[0].0, 200, "{answers:?}");
    }
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "{requests:?}");
    for (r, version) in requests.iter().zip(["2023-06-01", "2024-10-22"]) {
        for (name, value) in [
            ("anthropic-version", version),
            ("x-api-key", ROOT_KEY),
            ("accept-encoding", "identity"),
            ("content-type", "application/json"),
            ("x-client", "kept"),
            ("host", &format!("127.0.0.1:{port}")),
        ] {
            assert_eq!(r.matches(&format!("\r\n{name}:")).count(), 1, "{name}: {r}");
            assert!(
                r.contains(&format!("\r\n{name}: {value}\r\n")),
                "{name}: {r}"
            );
        }
        assert!(!r.contains(&key) && !r.contains("till_"), "{r}");
        assert!(!r.contains("authorization"), "{r}");
    }
}

/// A base URL with a path of its own (a gateway that serves a provider under a prefix): the
/// request line upstream is that path, then the request's canonical path and its query.
#[test]
fn a_plain_http_base_url_with_a_path_keeps_it_in_front_of_the_request_path() {
    let p = ProxyEnv::new();
    let (port, seen, _) = hand_written_upstream();
    let base = format!("http://127.0.0.1:{port}/gateway/openai");
    let key = plain_http_provider_of(&p, "gw", "openai", &base);
    let serve = p.serve();
    let auth = format!("Bearer {key}");
    let body = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    let answers = keep_alive_posts(
        &serve.url,
        "/gw/v1/chat/completions?api-version=2024-10-21",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body,
        1,
    );
    assert_eq!(answers[0].0, 200, "{answers:?}");
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let expected = format!(
        "POST /gateway/openai/v1/chat/completions?api-version=2024-10-21 HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
    );
    assert!(requests[0].starts_with(&expected), "{}", requests[0]);
}

/// A local model server that refuses a body too large as soon as it has read the head, and
/// closes without reading the rest (the close resets the connection while till is still
/// writing): its own answer reaches the client and the ledger, not a 502.
#[test]
fn a_provider_that_answers_before_reading_a_large_body_is_heard() {
    use std::io::{Read as _, Write as _};
    let p = ProxyEnv::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(mut tcp) = tcp else { return };
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match tcp.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let body = r#"{"error":{"message":"context too long","type":"too_large"}}"#;
            let answer = format!(
                "HTTP/1.1 413 Payload Too Large\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = tcp.write_all(answer.as_bytes());
            // Dropped with the body unread: a reset.
        }
    });
    let key = plain_http_provider(&p, "local", port);
    let serve = p.serve();
    // More than the loopback's socket buffers hold, so till is still writing at the reset.
    let content = "x".repeat(16 << 20);
    let body = format!(
        r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"{content}"}}]}}"#
    );
    let (status, head, answer) = crate::support::raw_exchange(
        &serve.url,
        "POST",
        "/local/v1/chat/completions",
        &[
            ("authorization", &format!("Bearer {key}")),
            ("content-type", "application/json"),
        ],
        body.as_bytes(),
    );
    assert_eq!(status, 413, "{head}\n{answer}");
    assert!(answer.contains("context too long"), "{answer}");
    let rows = crate::support::poll_rows(&p, 1);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], 413, "{rows:?}");
}

/// Sends `count` POSTs over one keep-alive connection to the proxy at `base`; each answer's
/// status, head and body (de-chunked).
fn keep_alive_posts(
    base: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    count: usize,
) -> Vec<(u16, String, String)> {
    use std::io::{BufRead as _, Read as _, Write as _};
    let addr = base.strip_prefix("http://").unwrap();
    let stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut out = Vec::new();
    for _ in 0..count {
        let mut req = format!("POST {path} HTTP/1.1\r\nhost: {addr}\r\n");
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
        writer.write_all(req.as_bytes()).unwrap();
        writer.write_all(body).unwrap();
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line);
        }
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let lower = head.to_ascii_lowercase();
        let mut text = Vec::new();
        if let Some(len) = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
        {
            text.resize(len.trim().parse().unwrap(), 0);
            reader.read_exact(&mut text).unwrap();
        } else {
            assert!(lower.contains("transfer-encoding: chunked"), "{head}");
            loop {
                let mut size = String::new();
                reader.read_line(&mut size).unwrap();
                let n = usize::from_str_radix(size.trim(), 16).unwrap();
                let mut chunk = vec![0; n + 2];
                reader.read_exact(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                text.extend_from_slice(&chunk[..n]);
            }
        }
        out.push((status, head, String::from_utf8(text).unwrap()));
    }
    out
}

/// `till serve` printed only its address: a program's base URL (`…/openai/v1`) was left to
/// guess, and the obvious guesses were 404s. It says each stored provider's, in the variable
/// its SDK reads, and they work.
#[test]
fn serve_says_each_providers_base_url_and_it_works() {
    let p = ProxyEnv::new();
    let key = p.create_key(&["--scope", "openai"]);
    let log = p.env.path("serve.err");
    let serve = p.serve_with_stderr(std::fs::File::create(&log).unwrap());
    let url = |var: &str| -> String {
        for _ in 0..100 {
            let text = std::fs::read_to_string(&log).unwrap();
            if let Some(line) = text.lines().find(|l| l.trim_start().starts_with(var)) {
                return line.trim().trim_start_matches(var).to_string();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("no {var} in {}", std::fs::read_to_string(&log).unwrap());
    };
    let openai = url("OPENAI_BASE_URL=");
    assert_eq!(openai, format!("{}/openai/v1", serve.url));
    assert_eq!(
        url("ANTHROPIC_BASE_URL="),
        format!("{}/anthropic", serve.url)
    );
    let host = serve.url.trim_start_matches("http://").to_string();
    let path = format!("{}/chat/completions", openai.trim_start_matches(&serve.url));
    let (status, answer) = crate::support::raw_post(
        &serve.url,
        &host,
        &path,
        &key,
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_eq!(status, 200, "{answer}");
}

/// Listening on a wildcard address, the URLs `till serve` prints are ones a program on this
/// machine can connect to (`http://0.0.0.0:PORT/…` is not, on every system), and they work.
#[test]
fn serve_on_a_wildcard_address_prints_urls_at_loopback() {
    let p = ProxyEnv::new();
    let key = p.create_key(&["--scope", "openai"]);
    let log = p.env.path("serve.err");
    let serve = p.serve_on("0.0.0.0:0", std::fs::File::create(&log).unwrap());
    let url = serve.url.clone();
    let host = url.trim_start_matches("http://").to_string();
    let (status, answer) = crate::support::raw_post(
        &url,
        &host,
        "/openai/v1/chat/completions",
        &key,
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_eq!(status, 200, "{answer}");
    drop(serve);
    let stderr = std::fs::read_to_string(&log).unwrap();
    let port = host.rsplit(':').next().unwrap();
    assert!(
        stderr.contains(&format!(
            "serving on http://0.0.0.0:{port}, which is NOT loopback"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "OPENAI_BASE_URL=http://127.0.0.1:{port}/openai/v1"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("BASE_URL=http://0.0.0.0"), "{stderr}");
}

/// An upstream that cannot be reached is a failure, not a refusal: the run's summary counts it
/// apart from what till denied, and `till log` says `failed:` (both said "denied", though
/// till refused nothing).
#[test]
fn an_unreachable_upstream_is_a_failure_not_a_denial() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let p = ProxyEnv::with_options(
        till_mock::MockOptions::default(),
        &format!("[providers.local]\napi = \"openai\"\nbase_url = \"http://127.0.0.1:{port}\"\n"),
    );
    let (code, _, stderr) = output_with_stdin(
        p.env.till().args(["add", "local", "--no-verify"]),
        "sk-local-0000000000000000",
    );
    assert_eq!(code, 0, "{stderr}");
    let agent = "import json, os, urllib.request, urllib.error\n\
        def post(url, key, model):\n\
        \x20   req = urllib.request.Request(url + '/chat/completions', data=json.dumps({'model': model, 'messages': []}).encode(), headers={'Authorization': 'Bearer ' + key, 'Content-Type': 'application/json'})\n\
        \x20   try:\n\
        \x20       return urllib.request.urlopen(req).status\n\
        \x20   except urllib.error.HTTPError as e:\n\
        \x20       return e.code\n\
        print(post(os.environ['LOCAL_BASE_URL'], os.environ['LOCAL_API_KEY'], 'm'))\n\
        print(post(os.environ['OPENAI_BASE_URL'], os.environ['OPENAI_API_KEY'], 'gpt-4o'))\n";
    let (code, stdout, stderr) = p.run(&[
        "--scope",
        "local",
        "--scope",
        "openai/gpt-4o-mini",
        "--",
        "python3",
        "-c",
        agent,
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        stdout.split_whitespace().collect::<Vec<_>>(),
        ["502", "403"],
        "{stderr}"
    );
    assert!(
        stderr.contains("2 requests (1 denied: model 1; 1 failed: upstream 1)"),
        "{stderr}"
    );
    let (_, log, _) = output(p.env.till().args(["log"]));
    assert!(log.contains("failed: upstream"), "{log}");
    assert!(log.contains("denied: model"), "{log}");
    // And so do `till log --json` and `till usage` (both counted it with the refusals).
    let rows = p.log_json();
    let outcomes: Vec<&str> = rows
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["failed", "denied"], "{rows:?}");
    let (_, usage, _) = output(p.env.till().args(["usage", "--by", "provider", "--json"]));
    let usage: Vec<Value> = serde_json::from_str(&usage).unwrap();
    let of = |provider: &str| {
        let g = usage.iter().find(|g| g["group"] == provider).unwrap();
        (
            g["requests"].as_u64(),
            g["denied"].as_u64(),
            g["failed"].as_u64(),
        )
    };
    assert_eq!(of("local"), (Some(1), Some(0), Some(1)), "{usage:?}");
    assert_eq!(of("openai"), (Some(1), Some(1), Some(0)), "{usage:?}");
}

/// A refusal is free only in a refusal's shape: one JSON answer whose usage, if any, reads.
/// An error status with a stream of events (the model may have run), or with a count that
/// does not read, is charged its reservation, as an answer without usage is; a provider that
/// says so cannot make a budget pay nothing for what it ran.
#[test]
fn an_error_status_is_free_only_as_one_readable_json_answer() {
    let answers: Vec<(&str, &str)> = vec![
        (
            "text/event-stream",
            "data: {\"choices\":[{\"delta\":{\"content\":\"ran anyway\"}}]}\n\ndata: [DONE]\n\n",
        ),
        (
            "application/json",
            r#"{"error":{"message":"overloaded"},"usage":{"prompt_tokens":2199023255552,"completion_tokens":5}}"#,
        ),
        ("application/json", r#"{"error":{"message":"overloaded"}}"#),
    ];
    let p = ProxyEnv::new();
    let port = canned_upstream(
        answers
            .iter()
            .map(|(ctype, body)| {
                let (ctype, body) = (ctype.to_string(), body.as_bytes().to_vec());
                Box::new(move |_: &str| (503u16, ctype, body)) as Canned
            })
            .collect(),
    );
    plain_http_provider(&p, "evil", port);
    let config = std::fs::read_to_string(p.env.path("config.toml")).unwrap();
    p.env.config(&format!(
        "{config}\n[prices.\"evil/m\"]\ninput = 1.0\noutput = 4.0\n"
    ));
    let key = p.create_key(&["--scope", "evil", "--budget", "1usd"]);
    let serve = p.serve();
    let host = serve.url.trim_start_matches("http://").to_string();
    for stream in [true, false, false] {
        let (status, answer) = crate::support::raw_post(
            &serve.url,
            &host,
            "/evil/v1/chat/completions",
            &key,
            &format!(
                r#"{{"model":"m","stream":{stream},"max_tokens":1000,"messages":[{{"role":"user","content":"hi"}}]}}"#
            ),
        );
        assert_eq!(status, 503, "{answer}");
    }
    let rows = crate::support::poll_rows(&p, 3);
    let costs: Vec<f64> = rows
        .iter()
        .map(|r| r["cost_usd"].as_f64().unwrap())
        .collect();
    assert_eq!(costs.len(), 3, "{rows:?}");
    assert!(costs[0] >= 0.004, "events under an error status: {rows:?}");
    assert!(costs[1] >= 0.004, "an unreadable count: {rows:?}");
    assert_eq!(costs[2], 0.0, "a plain refusal: {rows:?}");
    // What was charged says why.
    let outcomes: Vec<&str> = rows
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["no_usage", "no_usage", "complete"], "{rows:?}");
}

/// A usage that reports no count (`{}`, a total alone, a string) is no usage reported, as a
/// missing one is: a key with a budget is charged its reservation. Such answers read as zero
/// tokens, a complete and free answer, so a compatible server that reports only `total_tokens`
/// (as some embedding services do) gave a budget key every request for nothing.
#[test]
fn a_usage_that_reports_no_count_is_no_usage_reported() {
    const CHAT: &str =
        r#"{"model":"m","max_tokens":1000,"messages":[{"role":"user","content":"hi"}]}"#;
    const REPLY: &str = r#""choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]"#;
    let json =
        |usage: &str| format!(r#"{{"id":"x","object":"chat.completion",{REPLY},"usage":{usage}}}"#);
    let cases: Vec<(&str, &str, String, &str, String)> = vec![
        ("empty", "/evil/v1/chat/completions", CHAT.into(), "application/json", json("{}")),
        ("total", "/evil/v1/chat/completions", CHAT.into(), "application/json", json(r#"{"total_tokens":4010}"#)),
        ("string", "/evil/v1/chat/completions", CHAT.into(), "application/json", json(r#""4010""#)),
        (
            "embeddings",
            "/evil/v1/embeddings",
            r#"{"model":"m","input":"hi"}"#.into(),
            "application/json",
            r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1]}],"usage":{"total_tokens":4010}}"#.into(),
        ),
        (
            "stream",
            "/evil/v1/chat/completions",
            CHAT.replace("\"model\"", "\"stream\":true,\"model\""),
            "text/event-stream",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok\"}}]}\n\n\
             data: {\"choices\":[],\"usage\":{\"total_tokens\":4010}}\n\ndata: [DONE]\n\n"
                .into(),
        ),
        (
            "anthropic",
            "/evila/v1/messages",
            CHAT.into(),
            "application/json",
            r#"{"id":"msg","type":"message","role":"assistant","content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn","usage":{}}"#.into(),
        ),
        (
            "gemini",
            "/evilg/v1beta/models/m:generateContent",
            r#"{"contents":[{"parts":[{"text":"hi"}]}],"generationConfig":{"maxOutputTokens":1000}}"#.into(),
            "application/json",
            r#"{"candidates":[{"content":{"parts":[{"text":"ok"}]},"finishReason":"STOP"}],"usageMetadata":{"totalTokenCount":4010}}"#.into(),
        ),
        // A usage that counts: what it says, and nothing more.
        (
            "counted",
            "/evil/v1/chat/completions",
            CHAT.into(),
            "application/json",
            json(r#"{"prompt_tokens":1000,"completion_tokens":500,"total_tokens":1500}"#),
        ),
    ];
    let port = canned_upstream(
        cases
            .iter()
            .map(|c| {
                let (ctype, body) = (c.3.to_string(), c.4.clone().into_bytes());
                Box::new(move |_: &str| (200u16, ctype, body)) as Canned
            })
            .collect(),
    );
    let p = ProxyEnv::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut prices = String::new();
    for (name, api) in [
        ("evil", "openai"),
        ("evila", "anthropic"),
        ("evilg", "gemini"),
    ] {
        plain_http_provider_of(&p, name, api, &base);
        prices.push_str(&format!(
            "[prices.\"{name}/m\"]\ninput = 1.0\noutput = 4.0\n"
        ));
    }
    let config = std::fs::read_to_string(p.env.path("config.toml")).unwrap();
    p.env.config(&format!("{config}\n{prices}"));
    let key = p.create_key(&[
        "--scope", "evil", "--scope", "evila", "--scope", "evilg", "--budget", "5usd",
    ]);
    let serve = p.serve();
    let host = serve.url.trim_start_matches("http://").to_string();
    for (what, path, body, _, _) in &cases {
        let (status, answer) = crate::support::raw_post(&serve.url, &host, path, &key, body);
        assert_eq!(status, 200, "{what}: {answer}");
    }
    let rows = crate::support::poll_rows(&p, cases.len());
    assert_eq!(rows.len(), cases.len(), "{rows:?}");
    for ((what, ..), row) in cases.iter().zip(&rows) {
        let cost = row["cost_usd"].as_f64().unwrap();
        if *what == "counted" {
            assert_eq!(row["outcome"], "complete", "{what}: {row}");
            assert_eq!(row["input_tokens"], 1000, "{what}: {row}");
            assert!((cost - 0.003).abs() < 1e-9, "{what}: {row}");
        } else {
            assert_eq!(row["outcome"], "no_usage", "{what}: {row}");
            // At least the output ceiling's 1,000 tokens at $4 a million (embeddings have
            // none: their input, the body's bytes).
            assert!(cost > 0.0, "{what}: {row}");
            if *what != "embeddings" {
                assert!(cost >= 0.004, "{what}: {row}");
            }
        }
    }
}

/// A compatible server that quotes the key it was sent in UTF-16, with no `charset` said (JSON
/// readers take the encoding from the first bytes): the scrub's search does not see the key
/// there, so a text answer is cut at its first NUL byte, which UTF-8 JSON and events never
/// hold. Nothing of the key reaches the client, NUL bytes taken out or not.
#[test]
fn a_text_answer_in_utf16_without_a_charset_never_carries_the_key() {
    fn wide(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }
    fn sent_key(request: &str) -> String {
        request
            .lines()
            .find_map(|l| l.strip_prefix("authorization: Bearer "))
            .or_else(|| {
                request
                    .lines()
                    .find_map(|l| l.strip_prefix("Authorization: Bearer "))
            })
            .expect("the key was sent")
            .trim()
            .to_string()
    }
    let json = |req: &str| {
        let quoted = format!(
            r#"{{"error":{{"message":"key Bearer {} is bad"}}}}"#,
            sent_key(req)
        );
        (200u16, "application/json".to_string(), wide(&quoted))
    };
    let events = |req: &str| {
        let mut body =
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n".to_vec();
        body.extend(wide(&format!(
            "data: {{\"echo\":\"{}\"}}\n\n",
            sent_key(req)
        )));
        (200u16, "text/event-stream".to_string(), body)
    };
    let port = canned_upstream(vec![Box::new(json) as Canned, Box::new(events)]);
    let p = ProxyEnv::new();
    let key = plain_http_provider(&p, "evil", port);
    let serve = p.serve();
    let host = serve.url.trim_start_matches("http://").to_string();
    let chat = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let streamed = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    for body in [chat, streamed] {
        let (_, answer) =
            crate::support::raw_post(&serve.url, &host, "/evil/v1/chat/completions", &key, body);
        let narrow = answer.replace('\0', "");
        assert!(!narrow.contains(ROOT_KEY), "{narrow}");
        assert!(!narrow.contains("sk-mock"), "{narrow}");
        if body == streamed {
            assert!(
                narrow.contains("\"hi\""),
                "the UTF-8 event before: {narrow}"
            );
            assert!(narrow.contains("not UTF-8"), "{narrow}");
        }
    }
}

/// A root key edited into the store by hand with a character no header can carry (a line
/// break after it, a letter outside ASCII): the proxy sends nothing upstream, neither the key
/// cut short nor a placeholder, and says which key to store again. `till serve` warns at start.
#[test]
fn a_stored_root_key_no_header_can_carry_is_named_and_never_sent() {
    use till::secrets::{SecretStore as _, SecretString};
    let p = ProxyEnv::new();
    let key = p.create_key(&["--scope", "openai"]);
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    for bad in [
        format!("{ROOT_KEY}\r\nX-Extra: 1"),
        format!("{ROOT_KEY}\n"),
        "sk-test-caf\u{e9}-0123456789".to_string(),
    ] {
        let store = till::secrets::file::FileStore::open(
            &p.env.path("data/secrets.age"),
            till::secrets::file::Unlock::Passphrase(SecretString::from(crate::support::PASSPHRASE)),
        )
        .unwrap();
        store
            .set("root/openai", &SecretString::from(bad.clone()))
            .unwrap();
        drop(store);
        let (stderr_r, stderr_w) = std::io::pipe().unwrap();
        let serve = p.serve_with_stderr(stderr_w);
        p.mock.clear_requests();
        let host = serve.url.trim_start_matches("http://").to_string();
        let (status, answer) =
            crate::support::raw_post(&serve.url, &host, "/openai/v1/chat/completions", &key, body);
        drop(serve);
        let stderr = std::io::read_to_string(stderr_r).unwrap();
        assert_eq!(status, 503, "{bad:?}: {answer}");
        assert!(answer.contains("till add openai --replace"), "{answer}");
        assert!(
            p.mock.requests().is_empty(),
            "{bad:?}: {:?}",
            p.mock.requests()
        );
        assert!(
            stderr.contains("the stored openai key has a character no HTTP header can carry"),
            "{stderr}"
        );
    }
    // The fix the answer gives, made while a proxy runs, takes effect at its next request.
    let serve = p.serve();
    let host = serve.url.trim_start_matches("http://").to_string();
    let post =
        || crate::support::raw_post(&serve.url, &host, "/openai/v1/chat/completions", &key, body);
    assert_eq!(post().0, 503);
    let (code, _, stderr) = output_with_stdin(
        p.env
            .till()
            .args(["add", "openai", "--replace", "--no-verify"]),
        ROOT_KEY,
    );
    assert_eq!(code, 0, "{stderr}");
    let (status, answer) = post();
    assert_eq!(status, 200, "{answer}");
}
