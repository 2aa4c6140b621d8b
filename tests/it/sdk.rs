//! The official `openai` and `anthropic` Python SDKs, unconfigured, under `till run`: they find
//! the child key and the proxy in their usual environment variables, every call shape they
//! make (JSON, SSE, the streaming helpers) comes back intact, and a denial surfaces as the
//! SDK's own `PermissionDeniedError` with till's message.
//!
//! The SDKs must be installed (`python3 -m pip install -r tests/python/requirements.txt`;
//! `scripts/test.sh` does it). Without them these tests fail; they never skip.

use std::process::Command;

use serde_json::Value;
use till_mock::REPLY_TEXT;

use crate::support::{ProxyEnv, output, python_script};

/// Proxy variables an HTTP client would honour; a developer's proxy must not see loopback
/// traffic meant for till.
const PROXY_VARS: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

/// Fails with the fix when the SDKs are missing, so a missing SDK reads as such and not as a
/// broken proxy.
fn require_sdks() {
    let (code, _, stderr) =
        output(Command::new("python3").args(["-c", "import openai, anthropic, pydantic"]));
    assert_eq!(
        code, 0,
        "the official Python SDKs are not installed: {stderr}\n\
         install them with: python3 -m pip install -r tests/python/requirements.txt \
         (scripts/test.sh does this)"
    );
}

/// Runs `sdk_agent.py` under `till run SCOPE… --` and returns its JSON and till's stderr.
fn run_agent(p: &ProxyEnv, scope: &[&str]) -> (Value, String) {
    require_sdks();
    let script = python_script("sdk_agent.py");
    let mut cmd = p.env.till();
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    cmd.arg("run").args(scope).args(["--", "python3", &script]);
    let (code, stdout, stderr) = output(&mut cmd);
    assert_eq!(code, 0, "the SDK agent failed:\n{stdout}\n{stderr}");
    let v: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("the SDK agent printed no JSON ({e}):\n{stdout}\n{stderr}"));
    (v, stderr)
}

/// A case that returned normally (no exception) with the mock's reply.
fn assert_reply(v: &Value, case: &str, field: &str) {
    let r = &v[case];
    assert!(r.get("error").is_none(), "{case} raised: {r}");
    assert_eq!(r[field], REPLY_TEXT, "{case}: {r}");
}

#[test]
fn official_sdks_work_unconfigured_under_till_run() {
    let p = ProxyEnv::new();
    // `till add` checked each root key against the mock; only the agent's calls count here.
    p.mock.clear_requests();
    let (v, stderr) = run_agent(
        &p,
        &[
            "--scope",
            "openai/gpt-4o-mini",
            "--scope",
            "anthropic/claude-haiku-*",
        ],
    );

    // The SDKs picked up till's variables on their own.
    let env = &v["env"];
    assert_eq!(env["openai_key_prefix"], "till_", "{env}");
    assert_eq!(env["anthropic_key_prefix"], "till_", "{env}");
    let openai_base = env["openai_base_url"].as_str().unwrap();
    assert!(
        openai_base.starts_with("http://127.0.0.1:") && openai_base.ends_with("/openai/v1/"),
        "{openai_base}"
    );
    let anthropic_base = env["anthropic_base_url"].as_str().unwrap();
    assert!(
        anthropic_base.starts_with("http://127.0.0.1:") && anthropic_base.ends_with("/anthropic/"),
        "{anthropic_base}"
    );

    // Every response validates against the SDKs' own models.
    assert_eq!(v["schema_errors"], serde_json::json!([]), "{v}");

    // OpenAI chat completions.
    assert_reply(&v, "chat", "text");
    assert_eq!(v["chat"]["finish_reason"], "stop");
    assert_eq!(v["chat"]["usage"]["total_tokens"], 10, "{}", v["chat"]);

    assert_reply(&v, "chat_stream", "text");
    assert_eq!(v["chat_stream"]["finish_reason"], "stop");
    // till asked upstream for usage, and took the extra chunk out again.
    assert_eq!(v["chat_stream"]["usage_chunks"], 0, "{}", v["chat_stream"]);
    assert_eq!(v["chat_stream"]["usage"], Value::Null);

    // With include_usage the SDK sees exactly one usage chunk, with the numbers.
    let s = &v["chat_stream_usage"];
    assert_reply(&v, "chat_stream_usage", "text");
    assert_eq!(s["usage_chunks"], 1, "{s}");
    assert_eq!(s["usage"]["prompt_tokens"], 5, "{s}");
    assert_eq!(
        s["usage"]["completion_tokens"],
        till_mock::OUTPUT_TOKENS,
        "{s}"
    );
    assert_eq!(
        s["chunks"],
        v["chat_stream"]["chunks"].as_u64().unwrap() + 1
    );

    // OpenAI Responses API.
    assert_reply(&v, "responses", "text");
    assert_eq!(v["responses"]["status"], "completed");
    assert_eq!(v["responses"]["usage"]["total_tokens"], 10);
    let rs = &v["responses_stream"];
    assert_reply(&v, "responses_stream", "text");
    assert_eq!(rs["final_text"], REPLY_TEXT, "{rs}");
    let events: Vec<&str> = rs["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(events.first(), Some(&"response.created"), "{rs}");
    assert_eq!(events.last(), Some(&"response.completed"), "{rs}");
    assert_eq!(rs["usage"]["output_tokens"], till_mock::OUTPUT_TOKENS);

    // Anthropic messages: JSON, the `messages.stream()` helper and raw `stream=True`.
    assert_reply(&v, "messages", "text");
    assert_eq!(v["messages"]["stop_reason"], "end_turn");
    assert_eq!(
        v["messages"]["usage"]["output_tokens"],
        till_mock::OUTPUT_TOKENS
    );
    let ms = &v["messages_stream"];
    assert_reply(&v, "messages_stream", "text");
    assert_eq!(ms["final_text"], REPLY_TEXT, "{ms}");
    assert_eq!(
        ms["usage"]["output_tokens"],
        till_mock::OUTPUT_TOKENS,
        "{ms}"
    );
    let raw = &v["messages_stream_raw"];
    assert_reply(&v, "messages_stream_raw", "text");
    assert_eq!(raw["output_tokens"], till_mock::OUTPUT_TOKENS, "{raw}");
    let events: Vec<&str> = raw["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(events.first(), Some(&"message_start"), "{raw}");
    assert_eq!(events.last(), Some(&"message_stop"), "{raw}");

    // A model outside the scope: the SDK's own exception type, carrying till's explanation.
    for (case, module) in [
        ("openai_denied", "openai"),
        ("anthropic_denied", "anthropic"),
    ] {
        let d = &v[case];
        assert_eq!(d["error"], "PermissionDeniedError", "{case}: {d}");
        assert_eq!(d["module"], module, "{case}: {d}");
        assert_eq!(d["status"], 403, "{case}: {d}");
        let message = d["message"].as_str().unwrap();
        assert!(
            message.contains("not in this key's scope"),
            "{case}: {message}"
        );
        assert!(message.contains("--scope"), "{case}: {message}");
    }
    assert_eq!(v["openai_denied"]["body"]["code"], "till_model");
    assert_eq!(
        v["anthropic_denied"]["body"]["error"]["type"],
        "permission_error"
    );

    // Upstream saw the eight allowed calls, each with the root key and nothing of till's, and
    // neither denied model.
    p.assert_upstream_saw_only_root_keys();
    let requests = p.mock.requests();
    let mut paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "/v1/chat/completions",
            "/v1/chat/completions",
            "/v1/chat/completions",
            "/v1/messages",
            "/v1/messages",
            "/v1/messages",
            "/v1/responses",
            "/v1/responses",
        ]
    );
    for r in &requests {
        let body = r.body.as_deref().unwrap_or("");
        assert!(
            !body.contains("\"gpt-4o\"") && !body.contains("claude-opus"),
            "a denied request reached the upstream: {body}"
        );
    }

    // The summary prices what was metered (it used to print $0 whatever was spent): five
    // gpt-4o-mini calls of 5+5 tokens (4 micro-dollars each) and three claude-haiku-4-5 calls
    // (30 each) make $0.00011.
    assert!(
        stderr.contains("till: 10 requests (2 denied: model 2), 40 tokens in, 40 out, $0.0001"),
        "{stderr}"
    );
}

/// A spent request ceiling (or budget) never refills, but its 429 was retried twice by each
/// SDK with backoff: three identical denials in the log for one refusal. The proxy tells the
/// SDKs not to retry (`x-should-retry: false`), and they do not.
#[test]
fn the_sdks_do_not_retry_a_spent_limit() {
    require_sdks();
    let p = ProxyEnv::new();
    let script = r#"
import anthropic, openai
oa = openai.OpenAI()
oa.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
try:
    oa.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
except openai.RateLimitError as e:
    print("openai", e.status_code)
an = anthropic.Anthropic()
try:
    an.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
except anthropic.RateLimitError as e:
    print("anthropic", e.status_code)
"#;
    let mut cmd = p.env.till();
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    cmd.args(["run", "--max-requests", "1", "--", "python3", "-c", script]);
    let (code, stdout, stderr) = output(&mut cmd);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("openai 429") && stdout.contains("anthropic 429"),
        "{stdout}\n{stderr}"
    );
    // One row for each call: the SDKs did not try again.
    assert!(
        stderr.contains("till: 3 requests (2 denied: max_requests 2)"),
        "{stderr}"
    );
}
