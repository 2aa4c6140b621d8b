//! The coding agents people run under `till run`: the keyless probes they send, how their
//! launch is adapted (Claude Code's key variable, Codex's provider overrides, Gemini CLI's
//! one key variable), `till setup gemini`, and the limits Claude Code's requests meet under a
//! budget. The real clients are driven by `scripts/agents.sh`; these tests pin what till does
//! for them with stand-ins.

use serde_json::Value;

use crate::support::{ProxyEnv, Serve, TestEnv, output, raw_http};

/// Stops `till serve` with SIGTERM so its ledger writer settles, then returns `till log`.
fn stop_and_log(p: &ProxyEnv, mut serve: Serve) -> Vec<Value> {
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(
        unsafe { libc::kill(serve.child.id() as i32, libc::SIGTERM) },
        0
    );
    assert!(serve.child.wait().unwrap().success());
    let (code, stdout, stderr) = output(p.env.till().args(["log", "--json", "-n", "100"]));
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

/// Regression: Claude Code's `HEAD $ANTHROPIC_BASE_URL` (2.1.197) or
/// `HEAD $ANTHROPIC_BASE_URL/api/hello` (2.1.332) at start was refused as `no_key`, recorded as
/// a denial and raised an alert on every run.
#[test]
fn keyless_probes_of_a_provider_root_are_answered_locally() {
    let p = ProxyEnv::new();
    let key = p.create_key(&["--scope", "anthropic"]);
    let serve = p.serve();
    p.mock.clear_requests();
    for (method, path) in [
        ("HEAD", "/anthropic"),
        ("GET", "/anthropic"),
        ("HEAD", "/anthropic/api/hello"),
        ("HEAD", "/openai"),
        ("GET", "/gemini"),
    ] {
        let (status, body) = raw_http(&serve.url, method, path, &[], b"");
        assert_eq!(status, 200, "{method} {path}: {body}");
        assert_eq!(body, "", "{method} {path}");
    }
    assert!(p.mock.requests().is_empty(), "{:?}", p.mock.requests());

    // Keyless API calls, a root probe with a body or a query, and other methods stay denials.
    for (method, path, body) in [
        ("POST", "/anthropic/v1/messages", &b"{}"[..]),
        ("GET", "/anthropic/v1/models", b""),
        ("HEAD", "/anthropic/v1/messages", b""),
        ("POST", "/anthropic/api/hello", b""),
        ("HEAD", "/anthropic/api/hello/x", b""),
        ("POST", "/anthropic", b""),
        ("GET", "/anthropic?x=1", b""),
        ("GET", "/anthropic", b"x"),
    ] {
        let (status, text) = raw_http(&serve.url, method, path, &[], body);
        assert_eq!(status, 401, "{method} {path}: {text}");
    }
    // A keyed request, so the log has one row the probes must not join.
    let auth = format!("Bearer {key}");
    let (status, text) = raw_http(
        &serve.url,
        "POST",
        "/anthropic/v1/messages",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        br#"{"model":"claude-haiku-4-5","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(p.mock.requests().len(), 1);
    let rows = stop_and_log(&p, serve);
    let denials: Vec<&Value> = rows.iter().filter(|r| r["status"] != 200).collect();
    assert_eq!(denials.len(), 8, "{rows:?}");
    assert!(
        denials.iter().all(|r| r["denial"] == "no_key"),
        "{denials:?}"
    );
    assert_eq!(rows.len(), 9, "the probes were recorded: {rows:?}");
}

/// A stand-in agent called `name` that prints its arguments and environment as JSON.
fn stand_in(env: &TestEnv, name: &str) -> String {
    let dir = env.path("bin");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(
        &path,
        "#!/usr/bin/env python3\nimport json, os, sys\nprint(json.dumps({'args': sys.argv[1:], 'env': dict(os.environ)}))\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

fn run_stand_in(p: &ProxyEnv, name: &str, args: &[&str]) -> (Vec<String>, Value) {
    let program = stand_in(&p.env, name);
    let mut all = vec!["--", program.as_str()];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = p.run(&all);
    assert_eq!(code, 0, "{stderr}");
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    let args = v["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    (args, v["env"].clone())
}

#[test]
fn claude_code_gets_its_key_as_a_bearer_token_and_others_as_an_api_key() {
    let p = ProxyEnv::new();
    let (args, env) = run_stand_in(&p, "claude", &["-p", "hi"]);
    assert_eq!(args, ["-p", "hi"]);
    let token = env["ANTHROPIC_AUTH_TOKEN"].as_str().unwrap();
    assert!(token.starts_with("till_"), "{env}");
    assert_eq!(env["TILL_KEY"], token);
    assert!(env.get("ANTHROPIC_API_KEY").is_none(), "{env}");
    assert!(
        env["ANTHROPIC_BASE_URL"]
            .as_str()
            .unwrap()
            .ends_with("/anthropic")
    );
    // Any other program keeps the variable every SDK reads.
    let (_, env) = run_stand_in(&p, "my-agent", &[]);
    assert!(
        env["ANTHROPIC_API_KEY"]
            .as_str()
            .unwrap()
            .starts_with("till_")
    );
    assert!(env.get("ANTHROPIC_AUTH_TOKEN").is_none(), "{env}");
}

#[test]
fn codex_gets_a_till_provider_for_the_run_and_gemini_one_key_variable() {
    let p = ProxyEnv::new();
    let (args, env) = run_stand_in(&p, "codex", &["exec", "hi"]);
    let base = env["OPENAI_BASE_URL"].as_str().unwrap();
    assert_eq!(args[..2], ["-c", "model_provider=\"till\""]);
    assert_eq!(args[2], "-c");
    assert_eq!(
        args[3],
        format!(
            "model_providers.till={{name=\"till\",base_url=\"{base}\",env_key=\"OPENAI_API_KEY\",wire_api=\"responses\",supports_websockets=false}}"
        )
    );
    assert_eq!(args[4..], ["exec", "hi"]);
    // The user's own provider choice wins; without OpenAI in scope nothing is added.
    let (args, _) = run_stand_in(&p, "codex", &["--profile", "work", "exec", "hi"]);
    assert_eq!(args, ["--profile", "work", "exec", "hi"]);
    let program = stand_in(&p.env, "codex");
    let (code, stdout, stderr) = p.run(&["--scope", "anthropic", "--", &program, "exec"]);
    assert_eq!(code, 0, "{stderr}");
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["args"], serde_json::json!(["exec"]));

    let (_, env) = run_stand_in(&p, "gemini", &["-p", "hi"]);
    assert!(env["GEMINI_API_KEY"].as_str().unwrap().starts_with("till_"));
    assert!(env.get("GOOGLE_API_KEY").is_none(), "{env}");
}

#[test]
fn setup_gemini_pins_the_api_key_auth_type_once() {
    let env = TestEnv::new();
    let home = env.path("gemini-home");
    let settings = home.join(".gemini/settings.json");
    let setup = |extra: &[&str]| {
        output(
            env.till()
                .env("GEMINI_CLI_HOME", &home)
                .args(["setup", "gemini"])
                .args(extra),
        )
    };
    let (code, _, stderr) = setup(&["--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("would create"), "{stderr}");
    assert!(!settings.exists());

    std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
    std::fs::write(
        &settings,
        "{\n  // mine\n  \"ui\": {\"theme\": \"Dracula\"}\n}\n",
    )
    .unwrap();
    let (code, _, stderr) = setup(&[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("added security.auth.selectedType"),
        "{stderr}"
    );
    let text = std::fs::read_to_string(&settings).unwrap();
    assert!(
        text.contains("// mine") && text.contains("Dracula"),
        "{text}"
    );
    assert!(
        text.contains("\"selectedType\": \"gemini-api-key\""),
        "{text}"
    );
    let (code, _, stderr) = setup(&[]);
    assert_eq!(code, 0);
    assert!(stderr.contains("nothing to do"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&settings).unwrap(), text);

    // Another chosen login is the user's; till says what to change and leaves it.
    std::fs::write(
        &settings,
        r#"{"security":{"auth":{"selectedType":"oauth-personal"}}}"#,
    )
    .unwrap();
    let (code, _, stderr) = setup(&[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");
    let (code, _, stderr) = output(env.till().args(["setup", "codex"]));
    assert_eq!(code, 0);
    assert!(stderr.contains("needs no setup"), "{stderr}");
}

/// A settings.json kept elsewhere and linked (dotfiles) stays a link and its target changes;
/// one that is no regular file (a FIFO) is refused at once instead of hanging the read.
#[test]
fn setup_gemini_follows_a_link_and_refuses_what_is_no_file() {
    let env = TestEnv::new();
    let home = env.path("gemini-home");
    let settings = home.join(".gemini/settings.json");
    std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
    let setup = || {
        output(
            env.till()
                .env("GEMINI_CLI_HOME", &home)
                .args(["setup", "gemini"])
                .stdin(std::process::Stdio::null()),
        )
    };
    let dotfiles = env.path("dotfiles-gemini.json");
    std::fs::write(&dotfiles, "{\"ui\": {\"theme\": \"Dracula\"}}\n").unwrap();
    std::os::unix::fs::symlink(&dotfiles, &settings).unwrap();
    let (code, _, stderr) = setup();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        std::fs::symlink_metadata(&settings)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let text = std::fs::read_to_string(&dotfiles).unwrap();
    assert!(
        text.contains("gemini-api-key") && text.contains("Dracula"),
        "{text}"
    );

    std::fs::remove_file(&settings).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&settings)
        .status()
        .unwrap();
    assert!(made.success());
    // Waited for with a deadline: a read of the FIFO would wait for a writer for ever.
    let mut child = env
        .till()
        .env("GEMINI_CLI_HOME", &home)
        .args(["setup", "gemini"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("till setup gemini hung on a FIFO");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("not a regular file") && stderr.contains("hint:"),
        "{stderr}"
    );
}

/// Claude Code asks for the 1M-token context beta and 64,000 output tokens on every call; a
/// key with a budget takes both as long as they cannot cost more than it holds.
#[test]
fn claude_code_requests_fit_a_budget() {
    let p = ProxyEnv::with_options(
        till_mock::MockOptions::default(),
        "[prices.\"anthropic/claude-opus-4-8\"]\ninput = 5.0\noutput = 25.0\n",
    );
    let key = p.create_key(&["--scope", "anthropic", "--budget", "1usd"]);
    let serve = p.serve();
    p.mock.clear_requests();
    let auth = format!("Bearer {key}");
    let beta = (
        "anthropic-beta",
        "claude-code-20250219,context-1m-2025-08-07",
    );
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
        beta,
    ];
    let body = |pad: usize| {
        format!(
            r#"{{"model":"claude-opus-4-8","max_tokens":64000,"thinking":{{"type":"adaptive"}},"system":"{}","messages":[{{"role":"user","content":"hi"}}]}}"#,
            "x".repeat(pad)
        )
    };
    let (status, text) = raw_http(
        &serve.url,
        "POST",
        "/anthropic/v1/messages",
        &headers,
        body(50_000).as_bytes(),
    );
    assert_eq!(status, 200, "{text}");
    let seen = p.mock.requests();
    let sent = seen[0].json().unwrap();
    let ceiling = sent["max_tokens"].as_u64().unwrap();
    // $1 less the prompt's ~50 kB at $5/M, at $25/M of output.
    assert!((4096..40_000).contains(&ceiling), "{ceiling}");
    assert_eq!(seen[0].headers["anthropic-beta"], beta.1);

    // A body long enough to reach the long-context premium is refused under a budget.
    let (status, text) = raw_http(
        &serve.url,
        "POST",
        "/anthropic/v1/messages",
        &headers,
        body(200_001).as_bytes(),
    );
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("long-context"), "{text}");
    assert_eq!(p.mock.requests().len(), 1);
}
