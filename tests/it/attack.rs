//! The proxy as an attacker meets it: every known way around a key's scope and budget, sent
//! byte for byte through `till serve` to the mock provider. Each test asserts on what the mock
//! received (nothing, or exactly the in-scope request), not only on what the client saw.

use serde_json::Value;

use crate::support::{ProxyEnv, ROOT_KEY, raw_http};

const JSON: (&str, &str) = ("content-type", "application/json");

fn chat(model: &str) -> String {
    format!("{{\"model\":\"{model}\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}")
}

/// A proxy, a key for `args`, and a sender that speaks with that key.
pub(crate) struct Attack {
    pub(crate) p: ProxyEnv,
    pub(crate) serve: crate::support::Serve,
    pub(crate) key: String,
}

impl Attack {
    pub(crate) fn new(config: &str, args: &[&str]) -> Self {
        Self::with_mock(till_mock::MockOptions::default(), config, args)
    }

    /// As [`Attack::new`], with the mock's `slow` models pacing their chunks `chunk_delay`
    /// apart.
    fn paced(chunk_delay: std::time::Duration, config: &str, args: &[&str]) -> Self {
        let opts = till_mock::MockOptions {
            chunk_delay,
            ..Default::default()
        };
        Self::with_mock(opts, config, args)
    }

    fn with_mock(opts: till_mock::MockOptions, config: &str, args: &[&str]) -> Self {
        let p = ProxyEnv::with_options(opts, config);
        let key = p.create_key(args);
        let serve = p.serve();
        // `till add` checked each root key with the mock; only what the proxy sends counts.
        p.mock.clear_requests();
        Self { p, serve, key }
    }

    fn send(&self, method: &str, path: &str, extra: &[(&str, &str)], body: &[u8]) -> (u16, String) {
        let auth = format!("Bearer {}", self.key);
        let mut headers = vec![("authorization", auth.as_str())];
        headers.extend_from_slice(extra);
        raw_http(&self.serve.url, method, path, &headers, body)
    }

    /// A request head for `path` with this key and `framing` (its body-length header lines),
    /// for sending by hand.
    fn head(&self, path: &str, framing: &str) -> String {
        format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nConnection: close\r\n{framing}\r\n",
            self.serve.url.trim_start_matches("http://"),
            self.key
        )
    }

    fn post(&self, path: &str, body: &str) -> (u16, String) {
        self.send("POST", path, &[JSON], body.as_bytes())
    }

    /// `body` posted to chat completions `n` times, each on a thread of its own started
    /// `stagger` after the one before: the answers, in that order.
    fn posts_staggered(
        &self,
        body: &str,
        n: usize,
        stagger: std::time::Duration,
    ) -> Vec<(u16, String)> {
        let threads: Vec<_> = (0..n)
            .map(|i| {
                if i > 0 {
                    std::thread::sleep(stagger);
                }
                let auth = format!("Bearer {}", self.key);
                let (url, body) = (self.serve.url.clone(), body.to_string());
                std::thread::spawn(move || {
                    raw_http(
                        &url,
                        "POST",
                        "/openai/v1/chat/completions",
                        &[("authorization", &auth), JSON],
                        body.as_bytes(),
                    )
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    }

    /// The bodies the mock received, parsed, in order.
    fn upstream_bodies(&self) -> Vec<Value> {
        self.p
            .mock
            .requests()
            .iter()
            .map(|r| r.json().unwrap_or(Value::Null))
            .collect()
    }

    /// The ledger's rows (`till log --json`) once it has at least `n`: a request's row is
    /// written once its answer has gone out. Waits up to 5 s, then gives what there is.
    fn logged(&self, n: usize) -> Vec<Value> {
        let mut rows = Vec::new();
        for _ in 0..100 {
            rows = self.p.log_json();
            if rows.len() >= n {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        rows
    }

    /// Asserts that the first request's ledger row (waited for: it is written once the
    /// answer has gone out) was charged its reservation: `body`'s bytes and `ceiling` output
    /// tokens, all at `usd_per_token`.
    fn assert_charged_its_reservation(&self, body: &str, ceiling: u64, usd_per_token: f64) {
        let rows = self.logged(1);
        let cost = rows[0]["cost_usd"].as_f64().unwrap();
        let reserved = (body.len() as u64 + ceiling) as f64 * usd_per_token;
        assert!(
            (cost - reserved).abs() < 1e-6,
            "charged {cost}, reserved {reserved}: {rows:?}"
        );
    }

    pub(crate) fn assert_upstream_saw_nothing(&self, what: &str) {
        let seen = self.p.mock.requests();
        assert!(seen.is_empty(), "{what}: the upstream received {seen:?}");
    }
}

#[test]
fn a_body_the_proxy_cannot_parse_never_reaches_the_upstream() {
    let a = Attack::new("", &["--scope", "openai/gpt-4o-mini"]);
    let bodies = [
        // Leading whitespace used to skip the parse and with it every check.
        format!(" {}", chat("gpt-4o")),
        format!("\n\t{}", chat("gpt-4o")),
        // A model that is not a string, a body that is not an object, trailing junk.
        "{\"model\":[\"gpt-4o\"],\"messages\":[]}".to_string(),
        format!("[{}]", chat("gpt-4o")),
        format!("{} x", chat("gpt-4o-mini")),
        "{\"messages\":[]}".to_string(),
        // Non-integer ceilings that a laxer parser might read as large numbers.
        "{\"model\":\"gpt-4o-mini\",\"max_tokens\":\"99999\"}".to_string(),
        "{\"model\":\"gpt-4o-mini\",\"max_tokens\":1e9}".to_string(),
    ];
    for body in &bodies {
        let (status, text) = a.post("/openai/v1/chat/completions", body);
        assert!((400..500).contains(&status), "{body:?} → {status} {text}");
    }
    a.assert_upstream_saw_nothing("unparseable bodies");

    // Leading whitespace on an in-scope body is fine: it is parsed like any other.
    let (status, text) = a.post(
        "/openai/v1/chat/completions",
        &format!("  {}", chat("gpt-4o-mini")),
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(a.upstream_bodies()[0]["model"], "gpt-4o-mini");
}

#[test]
fn duplicate_keys_are_decided_and_forwarded_as_one_parse() {
    let a = Attack::new("", &["--scope", "openai/gpt-4o-mini"]);
    let (status, _) = a.post(
        "/openai/v1/chat/completions",
        "{\"model\":\"gpt-4o-mini\",\"model\":\"gpt-4o\",\"messages\":[]}",
    );
    assert_eq!(status, 403);
    a.assert_upstream_saw_nothing("duplicate model, last out of scope");
    let (status, text) = a.post(
        "/openai/v1/chat/completions",
        "{\"model\":\"gpt-4o\",\"model\":\"gpt-4o-mini\",\"messages\":[]}",
    );
    assert_eq!(status, 200, "{text}");
    let seen = a.p.mock.requests();
    let body = seen[0].body.as_deref().unwrap();
    assert_eq!(body.matches("\"model\"").count(), 1, "{body}");
    assert!(body.contains("\"gpt-4o-mini\""), "{body}");
}

#[test]
fn compressed_and_multipart_bodies_are_refused_to_a_scoped_key() {
    let a = Attack::new("", &["--scope", "openai/gpt-4o-mini"]);
    let (status, text) = a.send(
        "POST",
        "/openai/v1/chat/completions",
        &[JSON, ("content-encoding", "gzip")],
        b"\x1f\x8b\x08\x00garbage",
    );
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("till_encoding"), "{text}");
    let multipart =
        "--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--b--\r\n";
    let (status, text) = a.send(
        "POST",
        "/openai/v1/audio/transcriptions",
        &[("content-type", "multipart/form-data; boundary=b")],
        multipart.as_bytes(),
    );
    assert_eq!(status, 403, "{text}");
    a.assert_upstream_saw_nothing("gzip and multipart");
}

#[test]
fn path_tricks_reach_nothing_outside_the_scope() {
    let a = Attack::new(
        "",
        &[
            "--scope",
            "openai/gpt-4o-mini",
            "--scope",
            "gemini/gemini-2.0-flash",
        ],
    );
    let body = chat("gpt-4o-mini");
    for path in [
        "/openai/v1/chat/../files",
        "/openai/v1/chat/%2e%2e/files",
        "/openai/v1/chat/%2E%2E/organization/users",
        "/openai/v1/chat/.%2e/fine_tuning/jobs",
        "/openai/v1/./files",
        "/openai/v1/%2e/files",
        "/openai/v1/chat%2f..%2ffiles",
        "/openai/v1/chat%5c..%5cfiles",
        "/openai//v1/files",
        "/openai/v1/chat/completions/../../files",
        "/openai/v1/chat/%252e%252e/files",
        "/openai/files/v1/chat/completions",
        "/openai/v1/files/v1/chat/completions",
        "/openai/../anthropic/v1/messages",
    ] {
        let (status, text) = a.post(path, &body);
        assert!((400..500).contains(&status), "{path} → {status} {text}");
    }
    for path in [
        "/gemini/v1beta/models/gemini-2.0-flash/../gemini-2.5-pro:generateContent",
        "/gemini/v1beta/models/gemini-2.0-flash/%2e%2e/gemini-2.5-pro:generateContent",
        "/gemini/v1beta/models/gemini-2.0-flash%2f..%2fgemini-2.5-pro:generateContent",
        "/gemini/v1beta/models/gemini-2.5-pro:generateContent",
    ] {
        let (status, text) = a.send(
            "POST",
            path,
            &[JSON, ("x-goog-api-key", a.key.as_str())],
            b"{\"contents\":[{\"parts\":[{\"text\":\"hi\"}]}]}",
        );
        assert!((400..500).contains(&status), "{path} → {status} {text}");
    }
    a.assert_upstream_saw_nothing("path tricks");

    // The plain path still works, and reaches the upstream as exactly that path.
    let (status, text) = a.post("/openai/v1/%63hat/completions", &body);
    assert_eq!(status, 200, "{text}");
    assert_eq!(a.p.mock.requests()[0].path, "/v1/chat/completions");
}

#[test]
fn a_body_cannot_name_another_model_than_the_path_runs() {
    // Gemini runs the model its path names. A body that names the key's model beside a path
    // that names another must not pass as the key's model (nor be priced as it).
    let a = Attack::new(
        "",
        &["--scope", "gemini/gemini-2.0-flash", "--budget", "1usd"],
    );
    let gemini = |path: &str, body: &str| {
        a.send(
            "POST",
            path,
            &[JSON, ("x-goog-api-key", a.key.as_str())],
            body.as_bytes(),
        )
    };
    let contents = r#""contents":[{"parts":[{"text":"hi"}]}]"#;
    for op in [
        "generateContent",
        "streamGenerateContent?alt=sse",
        "countTokens",
    ] {
        for named in ["gemini-2.0-flash", "models/gemini-2.0-flash"] {
            let (status, text) = gemini(
                &format!("/gemini/v1beta/models/gemini-2.5-pro:{op}"),
                &format!(r#"{{"model":"{named}",{contents}}}"#),
            );
            assert!(
                (400..500).contains(&status),
                "{op} {named} → {status} {text}"
            );
        }
    }
    a.assert_upstream_saw_nothing("a body's model beside another in the path");

    // The key's own model named in both places, in either spelling, goes through as that one.
    for named in ["gemini-2.0-flash", "models/gemini-2.0-flash"] {
        let (status, text) = gemini(
            "/gemini/v1beta/models/gemini-2.0-flash:generateContent",
            &format!(r#"{{"model":"{named}",{contents}}}"#),
        );
        assert_eq!(status, 200, "{named}: {text}");
    }
    let seen = a.p.mock.requests();
    assert_eq!(seen.len(), 2);
    for r in &seen {
        assert_eq!(r.path, "/v1beta/models/gemini-2.0-flash:generateContent");
    }
    let rows = a.p.log_json();
    assert!(
        rows.iter()
            .filter(|r| r["status"] == 200)
            .all(|r| r["model"] == "gemini-2.0-flash"),
        "{rows:?}"
    );
}

#[test]
fn calls_that_run_or_bill_more_than_they_name_are_refused_to_a_narrow_key() {
    let a = Attack::new(
        "",
        &[
            "--scope",
            "openai/gpt-4o-mini",
            "--scope",
            "gemini/gemini-2.0-flash",
            "--endpoints",
            "inference,files",
            "--budget",
            "1usd",
        ],
    );
    let gemini = [JSON, ("x-goog-api-key", a.key.as_str())];
    let input = r#""input":[{"role":"user","content":"hi"}]"#;
    let refused: Vec<(&str, &str, String)> = vec![
        // Stored-object paths that run a model: an Assistants run (the assistant's model, or
        // one the body names), a Responses compaction, a code container (billed by the session).
        (
            "POST",
            "/openai/v1/threads/runs",
            r#"{"assistant_id":"asst_1","model":"o1-pro"}"#.into(),
        ),
        (
            "POST",
            "/openai/v1/threads/thread_1/runs",
            r#"{"assistant_id":"asst_1"}"#.into(),
        ),
        (
            "POST",
            "/openai/v1/threads/thread_1/runs/run_1/submit_tool_outputs",
            r#"{"tool_outputs":[]}"#.into(),
        ),
        (
            "POST",
            "/openai/v1/responses/compact",
            format!(r#"{{"model":"o1-pro",{input}}}"#),
        ),
        ("POST", "/openai/v1/containers", r#"{"name":"c"}"#.into()),
        ("POST", "/openai/v1/chat/other", chat("gpt-4o-mini")),
        // A gateway's run under a stored completion's path, and Groq's compound system with
        // models of the client's choosing.
        (
            "POST",
            "/openai/v1/chat/completions/stream",
            chat("gpt-4o-mini"),
        ),
        (
            "POST",
            "/openai/v1/chat/completions",
            r#"{"model":"gpt-4o-mini","compound_custom":{"models":{"answering_model":"o1-pro"}},"messages":[]}"#.into(),
        ),
        // Fallback models the provider may run instead, and what is billed beside the tokens.
        (
            "POST",
            "/openai/v1/chat/completions",
            r#"{"model":"gpt-4o-mini","models":["o1-pro"],"messages":[]}"#.into(),
        ),
        (
            "POST",
            "/openai/v1/chat/completions",
            r#"{"model":"gpt-4o-mini","plugins":[{"id":"web"}],"messages":[]}"#.into(),
        ),
        (
            "POST",
            "/openai/v1/chat/completions",
            r#"{"model":"gpt-4o-mini","web_search_options":{},"messages":[]}"#.into(),
        ),
        // A Responses input item standing for a stored one.
        (
            "POST",
            "/openai/v1/responses",
            r#"{"model":"gpt-4o-mini","input":[{"type":"item_reference","id":"msg_1"}]}"#.into(),
        ),
        // A tool call passed back by its id alone: its stored image or results are read.
        (
            "POST",
            "/openai/v1/responses",
            r#"{"model":"gpt-4o-mini","input":[{"role":"user","content":"edit it"},{"type":"image_generation_call","id":"ig_1"}]}"#.into(),
        ),
        (
            "POST",
            "/openai/v1/responses",
            r#"{"model":"gpt-4o-mini","input":[{"type":"file_search_call","id":"fs_1","status":"completed","queries":["q"]}]}"#.into(),
        ),
        // The same in another letter case, as a case-folding parser reads it; and content
        // given in one spelling and null in another (which one a parser keeps is its own).
        (
            "POST",
            "/openai/v1/responses",
            r#"{"model":"gpt-4o-mini","input":[{"type":"reasoning","ID":"rs_1","summary":[]}]}"#.into(),
        ),
        (
            "POST",
            "/openai/v1/responses",
            r#"{"model":"gpt-4o-mini","input":[{"type":"reasoning","id":"rs_1","summary":[],"encrypted_content":"x","Encrypted_Content":null}]}"#.into(),
        ),
        (
            "POST",
            "/openai/v1/responses",
            r#"{"model":"gpt-4o-mini","input":[{"type":"image_generation_call","Id":"ig_1","result":"AAAA","Result":null}]}"#.into(),
        ),
        (
            "POST",
            "/openai/v1/chat/completions",
            r#"{"model":"gpt-4o-mini","messages":[{"role":"assistant","audio":{"ID":"audio_1"}}]}"#.into(),
        ),
        // Methods are case-sensitive: `post` is not POST, whatever an upstream makes of it.
        ("post", "/openai/v1/chat/completions", chat("gpt-4o-mini")),
        ("Post", "/openai/v1/chat/completions", chat("gpt-4o-mini")),
        ("PROPFIND", "/openai/v1/files", String::new()),
    ];
    for (method, path, body) in &refused {
        let (status, text) = a.send(method, path, &[JSON], body.as_bytes());
        assert!(
            (400..500).contains(&status),
            "{method} {path} {body} → {status} {text}"
        );
    }
    // A Gemini cache is billed as input when it is made, and a file search store's import as
    // embedding.
    for path in [
        "/gemini/v1beta/cachedContents",
        "/gemini/v1beta/fileSearchStores/store_1:importFile",
    ] {
        let (status, text) = a.send(
            "POST",
            path,
            &gemini,
            br#"{"model":"models/gemini-2.0-flash","contents":[]}"#,
        );
        assert!((400..500).contains(&status), "{path} → {status} {text}");
    }
    a.assert_upstream_saw_nothing("calls that run or bill more than they name");

    // Reading what is stored is still the files class the key grants: it reaches the upstream
    // (whose answer, the mock having no such path, is its 404).
    let (status, text) = a.send("GET", "/openai/v1/threads/thread_1/runs", &[], b"");
    assert_eq!(status, 404, "{text}");
    let (status, text) = a.send(
        "POST",
        "/openai/v1/responses/input_tokens",
        &[JSON],
        format!(r#"{{"model":"gpt-4o-mini",{input}}}"#).as_bytes(),
    );
    assert_eq!(status, 404, "{text}");
    let paths: Vec<String> = a.p.mock.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        ["/v1/threads/thread_1/runs", "/v1/responses/input_tokens"]
    );

    // A key for every model and without a budget may run them: they are forwarded.
    let wide = Attack::new("", &["--scope", "openai", "--endpoints", "inference,files"]);
    for (path, body) in [
        (
            "/openai/v1/threads/runs",
            r#"{"assistant_id":"asst_1"}"#.to_string(),
        ),
        (
            "/openai/v1/chat/completions",
            r#"{"model":"gpt-4o-mini","models":["gpt-4o"],"messages":[]}"#.into(),
        ),
    ] {
        let (status, text) = wide.send("POST", path, &[JSON], body.as_bytes());
        assert!(status == 200 || status == 404, "{path} → {status} {text}");
    }
    assert_eq!(wide.p.mock.requests().len(), 2);
}

/// A write that runs a stored object (an Assistants run, a code container, a conversation)
/// runs the object's model, not one its body names: a `model` in its body (which a server
/// that ignores unknown fields would let through) does not make it a request of a scoped key's
/// model. Only a key for every model sends it.
#[test]
fn a_model_named_beside_a_stored_run_does_not_open_it_to_a_scoped_key() {
    let a = Attack::new(
        "",
        &[
            "--scope",
            "openai/gpt-4o-mini",
            "--endpoints",
            "inference,files",
        ],
    );
    let paths = [
        (
            "/openai/v1/containers",
            r#"{"name":"c","model":"gpt-4o-mini"}"#,
        ),
        (
            "/openai/v1/threads/thread_1/runs/run_1/submit_tool_outputs",
            r#"{"tool_outputs":[],"model":"gpt-4o-mini"}"#,
        ),
        (
            "/openai/v1/threads/thread_1/runs",
            r#"{"assistant_id":"asst_1","model":"gpt-4o-mini"}"#,
        ),
        (
            "/openai/v1/responses/resp_1/compact",
            r#"{"model":"gpt-4o-mini"}"#,
        ),
        (
            "/openai/v1/conversations/conv_1",
            r#"{"model":"gpt-4o-mini"}"#,
        ),
    ];
    for (path, body) in paths {
        let (status, text) = a.post(path, body);
        assert_eq!(status, 403, "{path} {body} → {text}");
        assert!(text.contains("only a key for every openai model"), "{text}");
    }
    a.assert_upstream_saw_nothing("a stored run with a model in its body");
    // A compaction and a Mistral conversation's start run the model their body names: that
    // model is checked, and one in scope goes.
    for path in ["/openai/v1/responses/compact", "/openai/v1/conversations"] {
        for (body, allowed) in [
            (r#"{"model":"gpt-4o-mini","input":"hi"}"#, true),
            (r#"{"model":"o1-pro","input":"hi"}"#, false),
            (r#"{"input":"hi"}"#, false),
        ] {
            let (status, text) = a.post(path, body);
            if allowed {
                assert!(
                    status == 200 || status == 404,
                    "{path} {body} → {status} {text}"
                );
            } else {
                assert_eq!(status, 403, "{path} {body} → {text}");
            }
        }
    }
    let seen: Vec<String> = a.p.mock.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(seen, ["/v1/responses/compact", "/v1/conversations"]);

    // Gemini's path names the model a request runs; a cache's creation and a file search
    // store's import name none, and a `model` beside them (in either spelling) is no decoy.
    let g = Attack::new("", &["--scope", "gemini/gemini-2.0-flash"]);
    let headers = [JSON, ("x-goog-api-key", g.key.as_str())];
    for path in [
        "/gemini/v1beta/cachedContents",
        "/gemini/v1beta/fileSearchStores/store1:importFile",
    ] {
        for model in ["gemini-2.0-flash", "models/gemini-2.0-flash"] {
            let body = format!(r#"{{"model":"{model}","fileName":"files/abc","ttl":"31536000s"}}"#);
            let (status, text) = g.send("POST", path, &headers, body.as_bytes());
            assert_eq!(status, 403, "{path} {body} → {text}");
            assert!(text.contains("only a key for every gemini model"), "{text}");
        }
    }
    g.assert_upstream_saw_nothing("a Gemini cache or store import with a model in its body");

    let wide = Attack::new("", &["--scope", "openai", "--endpoints", "inference,files"]);
    for (path, body) in paths {
        let (status, text) = wide.post(path, body);
        assert!(status == 200 || status == 404, "{path} → {status} {text}");
    }
    assert_eq!(wide.p.mock.requests().len(), paths.len());
}

#[test]
fn a_batch_is_made_only_by_a_key_that_could_make_every_request_in_it() {
    // till reads none of a batch's requests one by one, and the batch is billed after it runs.
    let narrow = Attack::new(
        "",
        &[
            "--scope",
            "openai/gpt-4o-mini",
            "--scope",
            "anthropic/claude-haiku-4-5",
            "--scope",
            "gemini/gemini-2.0-flash",
            "--endpoints",
            "inference,batches",
        ],
    );
    let budget = Attack::new(
        "",
        &[
            "--scope",
            "openai",
            "--scope",
            "anthropic",
            "--scope",
            "gemini",
            "--endpoints",
            "inference,batches",
            "--budget",
            "1usd",
        ],
    );
    let made = [
        (
            "/openai/v1/batches",
            r#"{"input_file_id":"file_1","endpoint":"/v1/chat/completions","completion_window":"24h"}"#,
        ),
        (
            "/anthropic/v1/messages/batches",
            r#"{"requests":[{"custom_id":"a","params":{"model":"claude-opus-4-1","max_tokens":64000,"messages":[]}}]}"#,
        ),
        (
            "/gemini/v1beta/models/gemini-2.0-flash:batchGenerateContent",
            r#"{"batch":{"input_config":{"requests":{"requests":[{"request":{"model":"models/gemini-2.5-pro","contents":[]}}]}}}}"#,
        ),
    ];
    for a in [&narrow, &budget] {
        for (path, body) in made {
            let (status, text) = a.send("POST", path, &[JSON], body.as_bytes());
            assert_eq!(status, 403, "{path}: {text}");
        }
        a.assert_upstream_saw_nothing("batches made by a narrow or budgeted key");
        // Reading what batches there are is still the class the key grants.
        let (status, text) = a.send("GET", "/openai/v1/batches", &[], b"");
        assert_eq!(status, 404, "{text}");
        assert_eq!(a.p.mock.requests().len(), 1);
    }
    let wide = Attack::new(
        "",
        &["--scope", "openai", "--endpoints", "inference,batches"],
    );
    let (status, text) = wide.send("POST", made[0].0, &[JSON], made[0].1.as_bytes());
    assert_eq!(status, 404, "{text}");
    assert_eq!(wide.p.mock.requests().len(), 1);
}

/// A request ceiling or a request rate counts requests: what makes many requests of one (a
/// batch, a fine-tuning job or other write till does not know, subagents, a gateway's
/// retries) would pass it as one, so a key that counts requests may not send it, however wide
/// its scope. What one request does at the provider (an Assistants run's steps, a server
/// tool's uses) is one request, as it would be without till.
#[test]
fn a_request_ceiling_holds_against_requests_that_make_many() {
    let a = Attack::new(
        "",
        &[
            "--scope",
            "openai",
            "--scope",
            "anthropic",
            "--scope",
            "gemini",
            "--endpoints",
            "all",
            "--max-requests",
            "50",
            "--rpm",
            "50",
        ],
    );
    let many = [
        (
            "/anthropic/v1/messages/batches",
            r#"{"requests":[{"custom_id":"a","params":{"model":"claude-haiku-4-5","max_tokens":8192,"messages":[]}},{"custom_id":"b","params":{"model":"claude-haiku-4-5","max_tokens":8192,"messages":[]}}]}"#,
        ),
        (
            "/openai/v1/batches",
            r#"{"input_file_id":"file_1","endpoint":"/v1/chat/completions","completion_window":"24h"}"#,
        ),
        // Not a cancel: no batch named.
        ("/openai/v1/batches/cancel", r#"{"input_file_id":"file_1"}"#),
        (
            "/openai/v1/fine_tuning/jobs",
            r#"{"model":"gpt-4o-mini","training_file":"file_1"}"#,
        ),
        (
            "/openai/v1/responses",
            r#"{"model":"gpt-4o-mini","input":"hi","multi_agent":{"enabled":true}}"#,
        ),
        (
            "/openai/v1/responses",
            r#"{"model":"gpt-4o-mini","input":"hi","MULTI_AGENT":{"max_agents":8}}"#,
        ),
        (
            "/openai/v1/chat/completions",
            r#"{"model":"gpt-4o-mini","messages":[],"num_retries":20}"#,
        ),
    ];
    for (path, body) in many {
        let (status, text) = a.post(path, body);
        assert_eq!(status, 403, "{path} {body} → {text}");
        assert!(text.contains("request ceiling"), "{path} {body} → {text}");
    }
    a.assert_upstream_saw_nothing("requests that make many, from a key that counts requests");
    // One request each: the key's own work, reading and cancelling batches (which only stops
    // what they cost), an Assistants run, a compaction.
    let one = [
        (
            "/openai/v1/chat/completions",
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#,
        ),
        ("/openai/v1/batches/batch_1/cancel", ""),
        ("/anthropic/v1/messages/batches/msgbatch_1/cancel", ""),
        ("/gemini/v1beta/batches/b1:cancel", ""),
        (
            "/openai/v1/threads/thread_1/runs",
            r#"{"assistant_id":"asst_1"}"#,
        ),
        (
            "/openai/v1/responses/compact",
            r#"{"model":"gpt-4o-mini","input":"hi"}"#,
        ),
    ];
    for (path, body) in one {
        let (status, text) = a.post(path, body);
        assert!(
            status == 200 || status == 404,
            "{path} {body} → {status} {text}"
        );
    }
    let (status, text) = a.send("GET", "/openai/v1/batches", &[], b"");
    assert_eq!(status, 404, "{text}");
    assert_eq!(a.p.mock.requests().len(), one.len() + 1);

    // The same key without a ceiling or rate makes them (the mock answers 404 to what it
    // does not serve).
    let free = Attack::new(
        "",
        &[
            "--scope",
            "openai",
            "--scope",
            "anthropic",
            "--endpoints",
            "all",
        ],
    );
    for (path, body) in many {
        let (status, text) = free.post(path, body);
        assert!(
            status == 200 || status == 404,
            "{path} {body} → {status} {text}"
        );
    }
    assert_eq!(free.p.mock.requests().len(), many.len());
}

#[test]
fn method_overrides_and_system_parameters_are_refused() {
    let a = Attack::new(
        "",
        &["--scope", "gemini", "--endpoints", "inference,models"],
    );
    for name in [
        "x-http-method-override",
        "X-HTTP-Method",
        "X-Method-Override",
    ] {
        let (status, _) = a.send(
            "GET",
            "/gemini/v1beta/models/gemini-2.0-flash",
            &[("user-agent", "x"), (name, "DELETE"), ("accept", "*/*")],
            b"",
        );
        assert_eq!(status, 400, "{name}");
    }
    for query in [
        "$httpMethod=DELETE",
        "%24httpMethod=DELETE",
        // Google's partial-response mask can leave the answer's usage counts out of it.
        "fields=candidates",
        "$fields=candidates",
        "%66ields=candidates",
        "alt=sse&Fields=candidates",
        // A name the provider may read with its whitespace trimmed or `+` as a space, and
        // parameters joined by `;`, which some servers split at as they split at `&`.
        "fields%20=candidates",
        "fields+=candidates",
        "alt=sse;$alt=json",
        "alt=sse;key=AIzaSomeoneElse",
        // A raw non-ASCII byte, which the request line upstream cannot carry: refused as the
        // client's error, not sent to fail as the upstream's.
        "alt=\u{e9}",
    ] {
        let (status, text) = a.send(
            "POST",
            &format!("/gemini/v1beta/models/gemini-2.0-flash:generateContent?{query}"),
            &[JSON],
            br#"{"contents":[{"parts":[{"text":"hi"}]}]}"#,
        );
        assert_eq!(status, 400, "{query}: {text}");
    }
    let (status, text) = a.send(
        "POST",
        "/gemini/v1beta/models/gemini-2.0-flash:generateContent",
        &[JSON, ("X-Goog-FieldMask", "candidates")],
        br#"{"contents":[{"parts":[{"text":"hi"}]}]}"#,
    );
    assert_eq!(status, 400, "{text}");
    a.assert_upstream_saw_nothing("method overrides and response masks");
    // A key in the query, however it is spelled, is not the provider's to see.
    let (status, text) = a.send(
        "POST",
        "/gemini/v1beta/models/gemini-2.0-flash:generateContent?%6Bey=AIzaSomeoneElse&alt=sse",
        &[JSON],
        br#"{"contents":[{"parts":[{"text":"hi"}]}]}"#,
    );
    assert_eq!(status, 200, "{text}");
    let seen = a.p.mock.requests();
    assert_eq!(seen.len(), 1);
    let text = serde_json::to_string(&seen[0]).unwrap();
    assert!(!text.contains("AIzaSomeoneElse"), "{text}");
}

#[test]
fn max_output_tokens_holds_in_every_family_and_spelling() {
    let a = Attack::new(
        "",
        &[
            "--scope",
            "openai",
            "--scope",
            "anthropic",
            "--scope",
            "gemini",
            "--max-output-tokens",
            "50",
        ],
    );
    // Ceilings above the cap, in any field or spelling, are refused.
    let over: &[(&str, &str)] = &[
        (
            "/openai/v1/chat/completions",
            "{\"model\":\"gpt-4o-mini\",\"max_tokens\":10,\"max_completion_tokens\":1000}",
        ),
        (
            "/openai/v1/completions",
            "{\"model\":\"gpt-3.5-turbo-instruct\",\"prompt\":\"x\",\"max_tokens\":1000}",
        ),
        (
            "/openai/v1/responses",
            "{\"model\":\"gpt-4o-mini\",\"input\":\"x\",\"max_output_tokens\":1000}",
        ),
        (
            "/anthropic/v1/messages",
            "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":1000,\"messages\":[]}",
        ),
        (
            "/gemini/v1beta/models/gemini-2.0-flash:generateContent",
            "{\"generation_config\":{\"max_output_tokens\":1000}}",
        ),
        (
            "/gemini/v1beta/models/gemini-2.0-flash:generateContent",
            "{\"generation_config\":{\"maxOutputTokens\":1000}}",
        ),
    ];
    for (path, body) in over {
        let (status, text) = a.post(path, body);
        assert_eq!(status, 403, "{path} {body} → {text}");
    }
    // Both spellings at once are refused to every key (400): the provider keeps one of them.
    let (status, text) = a.post(
        "/gemini/v1beta/models/gemini-2.0-flash:generateContent",
        "{\"generationConfig\":{\"maxOutputTokens\":10},\"generation_config\":{\"max_output_tokens\":1000}}",
    );
    assert_eq!(status, 400, "{text}");
    a.assert_upstream_saw_nothing("ceilings over the cap");

    // Requests that name no ceiling get the cap inserted where each API reads it.
    let under: &[(&str, &str, &str)] = &[
        (
            "/openai/v1/chat/completions",
            "{\"model\":\"gpt-4o-mini\",\"messages\":[]}",
            "/max_completion_tokens",
        ),
        (
            "/openai/v1/completions",
            "{\"model\":\"gpt-3.5-turbo-instruct\",\"prompt\":\"x\"}",
            "/max_tokens",
        ),
        (
            "/openai/v1/responses",
            "{\"model\":\"gpt-4o-mini\",\"input\":\"x\"}",
            "/max_output_tokens",
        ),
        (
            "/anthropic/v1/messages",
            "{\"model\":\"claude-haiku-4-5\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
            "/max_tokens",
        ),
        (
            "/gemini/v1beta/models/gemini-2.0-flash:generateContent",
            "{\"contents\":[{\"parts\":[{\"text\":\"x\"}]}]}",
            "/generationConfig/maxOutputTokens",
        ),
        (
            "/gemini/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
            "{\"contents\":[],\"generation_config\":{\"temperature\":1}}",
            "/generation_config/maxOutputTokens",
        ),
    ];
    for (path, body, _) in under {
        a.post(path, body);
    }
    let seen = a.p.mock.requests();
    assert_eq!(seen.len(), under.len(), "{seen:?}");
    for (r, (path, _, field)) in seen.iter().zip(under) {
        let v = r.json().unwrap();
        assert_eq!(v.pointer(field), Some(&Value::from(50)), "{path}: {v}");
    }
}

#[test]
fn choices_multiply_the_reservation() {
    let a = Attack::new(
        "[prices.\"openai/greedy-model\"]\ninput = 0.001\noutput = 1000.0\n",
        &["--scope", "openai/greedy-model", "--budget", "0.01usd"],
    );
    // 10 output tokens × 128 choices at $0.001 a token is $1.28: far past a $0.01 budget.
    let (status, text) = a.post(
        "/openai/v1/chat/completions",
        "{\"model\":\"greedy-model\",\"max_tokens\":5,\"n\":128,\"messages\":[]}",
    );
    assert_eq!(status, 429, "{text}");
    let (status, _) = a.post(
        "/openai/v1/chat/completions",
        "{\"model\":\"greedy-model\",\"max_tokens\":2,\"n\":999,\"messages\":[]}",
    );
    assert_eq!(status, 400);
    a.assert_upstream_saw_nothing("n past the budget");
    // Legacy completions: each prompt of a list gets its own completions. 5 tokens × 20
    // prompts is $0.10; a list of 3,000 is more than the API takes.
    let prompts = |n: usize| format!("[{}]", vec!["\"go on\""; n].join(","));
    for (prompt, want) in [(prompts(20), 429), (prompts(3000), 400)] {
        let (status, text) = a.post(
            "/openai/v1/completions",
            &format!("{{\"model\":\"greedy-model\",\"max_tokens\":5,\"prompt\":{prompt}}}"),
        );
        assert_eq!(status, want, "{text}");
    }
    a.assert_upstream_saw_nothing("prompts past the budget");
    let (status, text) = a.post(
        "/openai/v1/chat/completions",
        "{\"model\":\"greedy-model\",\"max_tokens\":2,\"n\":3,\"messages\":[]}",
    );
    assert_eq!(status, 200, "{text}");
    // One list of token ids is one prompt: admitted, and forwarded.
    let (status, text) = a.post(
        "/openai/v1/completions",
        "{\"model\":\"greedy-model\",\"max_tokens\":2,\"prompt\":[1,2,3,4,5,6,7,8]}",
    );
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"completion_tokens\":2"), "{text}");
    assert!(
        a.p.mock
            .requests()
            .iter()
            .any(|r| r.path == "/v1/completions"),
        "the token-id prompt did not reach the upstream"
    );
}

/// DeepSeek reads `max_tokens` and ignores `max_completion_tokens` (it then writes up to its
/// own default, thousands of tokens): a key with an output cap or a budget sent only the
/// latter, was reserved and capped at it, and got 4,096 tokens. For a compatible provider
/// till writes the ceiling into `max_tokens` too; OpenAI itself gets the body as it was.
#[test]
fn a_ceiling_named_only_in_max_completion_tokens_reaches_a_compatible_server_as_max_tokens() {
    let p = ProxyEnv::new();
    let config = std::fs::read_to_string(p.env.path("config.toml")).unwrap();
    // Azure OpenAI reads requests as OpenAI does (its reasoning models refuse `max_tokens`).
    p.env.config(&format!(
        "{config}\n[providers.deepseek]\nbase_url = \"{url}/v1\"\n[providers.azure]\nbase_url = \"{url}/v1\"\nopenai_itself = true\n",
        url = p.mock.url()
    ));
    for provider in ["deepseek", "azure"] {
        let (code, _, stderr) = crate::support::output_with_stdin(
            p.env.till().args(["add", provider, "--no-verify"]),
            ROOT_KEY,
        );
        assert_eq!(code, 0, "{stderr}");
    }
    let capped = p.create_key(&[
        "--scope",
        "deepseek",
        "--scope",
        "openai",
        "--scope",
        "azure",
        "--max-output-tokens",
        "100",
    ]);
    let plain = p.create_key(&["--scope", "deepseek"]);
    let serve = p.serve();
    p.mock.clear_requests();
    let body = "{\"model\":\"deepseek-chat\",\"max_completion_tokens\":50,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    for (key, path) in [
        (&capped, "/deepseek/chat/completions"),
        (&plain, "/deepseek/chat/completions"),
        (&capped, "/openai/v1/chat/completions"),
        (&capped, "/azure/chat/completions"),
    ] {
        let auth = format!("Bearer {key}");
        let (status, text) = raw_http(
            &serve.url,
            "POST",
            path,
            &[("authorization", auth.as_str()), JSON],
            body.as_bytes(),
        );
        assert_eq!(status, 200, "{path}: {text}");
    }
    let sent: Vec<Value> = p
        .mock
        .requests()
        .iter()
        .map(|r| r.json().unwrap())
        .collect();
    assert_eq!(sent.len(), 4, "{sent:?}");
    assert_eq!(
        sent[0]["max_tokens"], 50,
        "the capped key to DeepSeek: {}",
        sent[0]
    );
    assert_eq!(sent[0]["max_completion_tokens"], 50, "{}", sent[0]);
    assert!(
        sent[1].get("max_tokens").is_none(),
        "a key without bounds: as sent: {}",
        sent[1]
    );
    assert!(
        sent[2].get("max_tokens").is_none(),
        "OpenAI reads max_completion_tokens: {}",
        sent[2]
    );
    assert!(
        sent[3].get("max_tokens").is_none(),
        "so does Azure: {}",
        sent[3]
    );
    // A ceiling till writes in goes where the provider reads it.
    let auth = format!("Bearer {capped}");
    for (path, field) in [
        ("/azure/chat/completions", "max_completion_tokens"),
        ("/deepseek/chat/completions", "max_tokens"),
    ] {
        let (status, text) = raw_http(
            &serve.url,
            "POST",
            path,
            &[("authorization", auth.as_str()), JSON],
            b"{\"model\":\"deepseek-chat\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
        );
        assert_eq!(status, 200, "{path}: {text}");
        let last = p.mock.requests().last().unwrap().json().unwrap();
        assert_eq!(last[field], 100, "{path}: {last}");
        assert_eq!(
            last.as_object().unwrap().len(),
            3,
            "{path}: only the one ceiling: {last}"
        );
    }
}

#[test]
fn tools_the_provider_defines_are_reserved_for_the_tokens_they_add() {
    // $0.001 a token: the $1 budget pays for 1,000 tokens in all.
    let a = Attack::new(
        "[prices.\"anthropic/tool-model\"]\ninput = 1000.0\noutput = 1000.0\n",
        &["--scope", "anthropic/tool-model", "--budget", "1usd"],
    );
    let body = |tools: &str| {
        format!(
            "{{\"model\":\"tool-model\",\"max_tokens\":10,\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}],\"tools\":[{tools}]}}"
        )
    };
    // `bash_20250124`'s definition (its description and schema) is Anthropic's: the body shows
    // 40 bytes of it, the provider bills a few hundred tokens, and more for the tool-use
    // system prompt. Reserved as 2,000 tokens on top of the body's bytes, past the budget.
    let (status, text) = a.post(
        "/anthropic/v1/messages",
        &body("{\"type\":\"bash_20250124\",\"name\":\"bash\"}"),
    );
    assert_eq!(status, 429, "{text}");
    let (status, text) = a.post(
        "/anthropic/v1/messages",
        &body("{\"type\":\"computer_20250124\",\"name\":\"computer\",\"display_width_px\":1024,\"display_height_px\":768}"),
    );
    assert_eq!(status, 429, "{text}");
    a.assert_upstream_saw_nothing("provider-defined tools past the budget");
    // A tool of the body's own brings only the tool-use system prompt (500 reserved): within
    // the budget, and forwarded.
    let (status, text) = a.post(
        "/anthropic/v1/messages",
        &body("{\"name\":\"f\",\"input_schema\":{\"type\":\"object\"}}"),
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(a.upstream_bodies().len(), 1);
}

#[test]
fn images_are_reserved_for_what_they_cost_not_for_their_bytes() {
    // $1 a million tokens: the $0.05 budget pays for 50,000 tokens.
    let a = Attack::new(
        "[prices.\"openai/pic-model\"]\ninput = 1.0\noutput = 1.0\n\
         [prices.\"anthropic/pic-model\"]\ninput = 1.0\noutput = 1.0\n\
         [prices.\"gemini/pic-model\"]\ninput = 1.0\noutput = 1.0\n",
        &[
            "--scope",
            "openai/pic-model",
            "--scope",
            "anthropic/pic-model",
            "--scope",
            "gemini/pic-model",
            "--budget",
            "0.05usd",
        ],
    );
    let times = |part: &str, n: usize| vec![part; n].join(",");
    // A URL is 40 bytes; the provider fetches the image and bills it as thousands of tokens.
    let url = "{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://example.com/a.png\"}}";
    let openai = |n| {
        format!(
            "{{\"model\":\"pic-model\",\"max_tokens\":10,\"messages\":[{{\"role\":\"user\",\"content\":[{}]}}]}}",
            times(url, n)
        )
    };
    // A PNG of one colour is a few hundred bytes of base64 and an image all the same.
    let png = "{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/png\",\"data\":\"iVBORw0KGgo=\"}}";
    let anthropic = |n| {
        format!(
            "{{\"model\":\"pic-model\",\"max_tokens\":10,\"messages\":[{{\"role\":\"user\",\"content\":[{{\"type\":\"tool_result\",\"tool_use_id\":\"t\",\"content\":[{}]}}]}}]}}",
            times(png, n)
        )
    };
    let inline = "{\"inlineData\":{\"mimeType\":\"image/png\",\"data\":\"iVBORw0KGgo=\"}}";
    let gemini = |n| {
        format!(
            "{{\"contents\":[{{\"role\":\"user\",\"parts\":[{}]}}],\"generationConfig\":{{\"maxOutputTokens\":10}}}}",
            times(inline, n)
        )
    };
    let paths = [
        "/openai/v1/chat/completions",
        "/anthropic/v1/messages",
        "/gemini/v1beta/models/pic-model:generateContent",
    ];
    // Each family's images past the budget: refused before the upstream sees them.
    for (path, body) in paths.iter().zip([openai(6), anthropic(11), gemini(11)]) {
        let (status, text) = a.post(path, &body);
        assert_eq!(status, 429, "{path}: {text}");
    }
    a.assert_upstream_saw_nothing("images past the budget");
    // Fewer images are within it, and go.
    for (path, body) in paths.iter().zip([openai(1), anthropic(2), gemini(2)]) {
        let (status, text) = a.post(path, &body);
        assert_eq!(status, 200, "{path}: {text}");
    }
    assert_eq!(a.upstream_bodies().len(), 3);
}

#[test]
fn pdfs_are_reserved_for_the_context_they_may_fill_and_audio_is_refused() {
    // $1 a million tokens: the $1.50 budget pays for 1,500,000 tokens, a Claude model's
    // context (1,000,000) but not a Gemini one's (2,097,152).
    let a = Attack::new(
        "[prices.\"openai/doc-model\"]\ninput = 1.0\noutput = 1.0\n\
         [prices.\"anthropic/doc-model\"]\ninput = 1.0\noutput = 1.0\n\
         [prices.\"gemini/doc-model\"]\ninput = 1.0\noutput = 1.0\n",
        &[
            "--scope",
            "openai/doc-model",
            "--scope",
            "anthropic/doc-model",
            "--scope",
            "gemini/doc-model",
            "--budget",
            "1.5usd",
        ],
    );
    // A PDF of a hundred empty pages is a few KB; each page is billed as an image and its
    // text, and compressed text fills a page with as many characters as it likes.
    let pdf = "JVBERi0xLjcKJeLjz9MK";
    let anthropic = format!(
        "{{\"model\":\"doc-model\",\"max_tokens\":10,\"messages\":[{{\"role\":\"user\",\"content\":[{{\"type\":\"document\",\"source\":{{\"type\":\"base64\",\"media_type\":\"application/pdf\",\"data\":\"{pdf}\"}}}}]}}]}}"
    );
    let gemini = |mime: &str| {
        format!(
            "{{\"contents\":[{{\"role\":\"user\",\"parts\":[{{\"inlineData\":{{\"mimeType\":\"{mime}\",\"data\":\"{pdf}\"}}}}]}}],\"generationConfig\":{{\"maxOutputTokens\":10}}}}"
        )
    };
    let gemini_path = "/gemini/v1beta/models/doc-model:generateContent";
    // Past the budget: Gemini's context is more than it pays for.
    let (status, text) = a.post(gemini_path, &gemini("application/pdf"));
    assert_eq!(status, 429, "{text}");
    // Billed at audio rates the price table does not hold, for its length, not its bytes.
    let audio = "{\"model\":\"doc-model\",\"max_tokens\":10,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\",\"input_audio\":{\"data\":\"UklGRg==\",\"format\":\"wav\"}}]}]}";
    let (status, text) = a.post("/openai/v1/chat/completions", audio);
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("audio"), "{text}");
    for mime in ["audio/mp3", "video/mp4"] {
        let (status, text) = a.post(gemini_path, &gemini(mime));
        assert_eq!(status, 403, "{mime}: {text}");
    }
    // The long-context beta bills a prompt above 200,000 tokens at a premium: a PDF may be one.
    let (status, text) = a.send(
        "POST",
        "/anthropic/v1/messages",
        &[JSON, ("anthropic-beta", "context-1m-2025-08-07")],
        anthropic.as_bytes(),
    );
    assert_eq!(status, 403, "{text}");
    a.assert_upstream_saw_nothing("PDFs past the budget, audio and video");
    // A Claude model's context fits the budget: the PDF goes, and so does a text document.
    let (status, text) = a.post("/anthropic/v1/messages", &anthropic);
    assert_eq!(status, 200, "{text}");
    let (status, text) = a.post(gemini_path, &gemini("text/plain"));
    assert_eq!(status, 200, "{text}");
    assert_eq!(a.upstream_bodies().len(), 2);
}

#[test]
fn a_predicted_output_is_reserved_at_the_output_rate() {
    // Output at ten times input; the $0.10 budget pays for 10,000 output tokens.
    let a = Attack::new(
        "[prices.\"openai/edit-model\"]\ninput = 1.0\noutput = 10.0\n",
        &["--scope", "openai/edit-model", "--budget", "0.1usd"],
    );
    // The prediction's tokens the answer does not use are billed as output, past
    // `max_tokens`: 20,000 bytes of it are up to $0.20, reserved before as $0.02 of input.
    let file = "fn main() {}\\n".repeat(1_400);
    let ask = |field: &str| {
        format!(
            "{{\"model\":\"edit-model\",\"max_tokens\":10,\"messages\":[{{\"role\":\"user\",\"content\":\"edit it\"}}],\"{field}\":{{\"type\":\"content\",\"content\":\"{file}\"}}}}"
        )
    };
    for field in ["prediction", "Prediction"] {
        let (status, text) = a.post("/openai/v1/chat/completions", &ask(field));
        assert_eq!(status, 429, "{field}: {text}");
    }
    a.assert_upstream_saw_nothing("a prediction past the budget");
    // The same bytes in the prompt, billed as input, go.
    let prompt = format!(
        "{{\"model\":\"edit-model\",\"max_tokens\":10,\"messages\":[{{\"role\":\"user\",\"content\":\"edit it\"}},{{\"role\":\"user\",\"content\":\"{file}\"}}]}}"
    );
    let (status, text) = a.post("/openai/v1/chat/completions", &prompt);
    assert_eq!(status, 200, "{text}");
    assert_eq!(a.upstream_bodies().len(), 1);
}

#[test]
fn paths_till_does_not_know_are_written_only_by_keys_for_every_model_without_bounds() {
    // Unrecognised paths are the `admin` class and name no model till sees, so the model
    // scope and the budget passed them by: a tuned model's generateContent, a legacy method,
    // a fine-tuning job, a video.
    let writes = [
        (
            "/gemini/v1beta/tunedModels/my-tune:generateContent",
            "{\"contents\":[{\"parts\":[{\"text\":\"hi\"}]}]}",
        ),
        (
            "/gemini/v1beta/models/gemini-2.5-pro:generateAnswer",
            "{\"contents\":[{\"parts\":[{\"text\":\"hi\"}]}]}",
        ),
        (
            "/openai/v1/fine_tuning/jobs",
            "{\"model\":\"gpt-4o\",\"training_file\":\"file-1\"}",
        ),
        (
            "/openai/v1/videos",
            "{\"model\":\"sora-2\",\"prompt\":\"x\"}",
        ),
    ];
    for args in [
        &[
            "--scope",
            "gemini/gemini-2.0-flash",
            "--scope",
            "openai/gpt-4o-mini",
            "--endpoints",
            "all",
        ][..],
        &[
            "--scope",
            "gemini",
            "--scope",
            "openai",
            "--budget",
            "1usd",
            "--endpoints",
            "all",
        ][..],
        &[
            "--scope",
            "gemini",
            "--scope",
            "openai",
            "--max-output-tokens",
            "100",
            "--endpoints",
            "all",
        ][..],
    ] {
        let a = Attack::new("", args);
        for (path, body) in writes {
            let (status, text) = a.post(path, body);
            assert_eq!(status, 403, "{args:?} {path}: {text}");
            assert!(text.contains("only a key for every"), "{text}");
        }
        a.assert_upstream_saw_nothing(&format!("{args:?}"));
        // Reading stays open to it.
        let (status, text) = a.send("GET", "/openai/v1/fine_tuning/jobs", &[], b"");
        assert_ne!(status, 403, "{text}");
        assert_eq!(a.p.mock.requests().len(), 1, "{args:?}");
    }
    // A key for every model without bounds writes there as before.
    let a = Attack::new(
        "",
        &[
            "--scope",
            "gemini",
            "--scope",
            "openai",
            "--endpoints",
            "all",
        ],
    );
    for (path, body) in writes {
        let (status, text) = a.post(path, body);
        assert_ne!(status, 403, "{path}: {text}");
    }
    assert_eq!(a.p.mock.requests().len(), writes.len());
}

#[test]
fn a_key_narrowed_to_no_output_sends_no_request_and_till_makes_none() {
    // Anyone holding a key can narrow it offline; one capped at 0 output tokens had 0 written
    // into its requests, which Gemini reads as no ceiling at all, reserved as nothing.
    let mut a = Attack::new(
        "",
        &[
            "--scope",
            "gemini",
            "--scope",
            "openai",
            "--max-output-tokens",
            "100",
            "--budget",
            "1usd",
        ],
    );
    let parent = till::childkey::Token::decode(&a.key).unwrap();
    a.key = parent
        .attenuate(vec![till::childkey::Caveat::MaxOutputTokens(0)])
        .unwrap()
        .encode();
    let (status, text) = a.post(
        "/gemini/v1beta/models/gemini-2.0-flash:generateContent",
        "{\"contents\":[{\"parts\":[{\"text\":\"hi\"}]}]}",
    );
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("allows no output tokens"), "{text}");
    let (status, text) = a.post("/openai/v1/chat/completions", &chat("gpt-4o-mini"));
    assert_eq!(status, 403, "{text}");
    a.assert_upstream_saw_nothing("a key capped at 0 output tokens");
    // What makes no output still goes.
    let (status, text) = a.post(
        "/openai/v1/embeddings",
        "{\"model\":\"text-embedding-3-small\",\"input\":\"hi\"}",
    );
    assert_eq!(status, 200, "{text}");
    // till itself makes no such key.
    for args in [
        &[
            "key",
            "create",
            "--scope",
            "gemini",
            "--max-output-tokens",
            "0",
        ][..],
        &[
            "key",
            "attenuate",
            &a.key.clone(),
            "--max-output-tokens",
            "0",
        ][..],
    ] {
        let (code, _, stderr) = crate::support::output(a.p.env.till().args(args));
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains("--max-output-tokens"), "{stderr}");
    }
}

#[test]
fn the_agent_does_not_choose_the_account_the_root_key_bills() {
    // A user key may belong to several organizations and projects; these headers choose which
    // one a request is for and billed to. They went upstream as the agent sent them.
    let account = [
        ("OpenAI-Organization", "org-employer"),
        ("openai-project", "proj_other"),
        ("X-Goog-User-Project", "other-project"),
    ];
    let a = Attack::new("", &["--scope", "openai", "--scope", "gemini"]);
    let mut extra = vec![JSON];
    extra.extend(account);
    let (status, text) = a.send(
        "POST",
        "/openai/v1/chat/completions",
        &extra,
        chat("gpt-4o-mini").as_bytes(),
    );
    assert_eq!(status, 200, "{text}");
    let (status, text) = a.send(
        "POST",
        "/gemini/v1beta/models/gemini-2.0-flash:generateContent",
        &extra,
        b"{\"contents\":[{\"parts\":[{\"text\":\"hi\"}]}]}",
    );
    assert_eq!(status, 200, "{text}");
    let seen = a.p.mock.requests();
    assert_eq!(seen.len(), 2);
    for r in &seen {
        for (name, _) in account {
            assert_eq!(r.header(name), None, "{name} went upstream: {r:?}");
        }
    }
    // The account the config names goes instead.
    let url = a.p.mock.url();
    a.p.env.config(&format!(
        "[providers.openai]\nbase_url = \"{url}\"\norganization = \"org-mine\"\nproject = \"proj_mine\"\n"
    ));
    let serve = a.p.serve();
    let (status, text) = raw_http(
        &serve.url,
        "POST",
        "/openai/v1/chat/completions",
        &[
            ("authorization", &format!("Bearer {}", a.key)),
            JSON,
            account[0],
            account[1],
        ],
        chat("gpt-4o-mini").as_bytes(),
    );
    assert_eq!(status, 200, "{text}");
    let last = a.p.mock.requests().pop().unwrap();
    assert_eq!(last.header("openai-organization"), Some("org-mine"));
    assert_eq!(last.header("openai-project"), Some("proj_mine"));
}

/// A base URL's path may hold what a gateway takes as a credential: the errors an agent reads
/// name the provider's host, not its path.
#[test]
fn errors_the_agent_reads_do_not_show_the_base_urls_path() {
    let a = Attack::new("", &["--scope", "openai"]);
    // Nothing listens on port 9 (discard) on loopback.
    a.p.env.config(
        "[providers.openai]\nbase_url = \"http://127.0.0.1:9/gw/GATEWAYPATHSECRET-0123456789\"\n",
    );
    let serve = a.p.serve();
    let (status, text) = raw_http(
        &serve.url,
        "POST",
        "/openai/v1/chat/completions",
        &[("authorization", &format!("Bearer {}", a.key)), JSON],
        chat("gpt-4o-mini").as_bytes(),
    );
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("http://127.0.0.1:9"), "{text}");
    assert!(!text.contains("GATEWAYPATHSECRET"), "{text}");
}

/// A part of the answer the client chooses (`Range`) could cut an echoed root key into pieces
/// too short for the scrub to know: the request goes without it, and the answer comes whole.
#[test]
fn a_client_cannot_ask_for_the_answer_in_parts() {
    let a = Attack::new("", &["--scope", "openai", "--endpoints", "inference,files"]);
    let parts = [("Range", "bytes=71-81"), ("If-Range", "\"etag\"")];
    let mut extra = vec![JSON];
    extra.extend(parts);
    let (status, text) = a.send(
        "POST",
        "/openai/v1/chat/completions",
        &extra,
        chat("gpt-4o-mini").as_bytes(),
    );
    assert_eq!(status, 200, "{text}");
    let (status, text) = a.send("GET", "/openai/v1/files/file_1/content", &parts, b"");
    assert_ne!(status, 206, "{text}");
    let seen = a.p.mock.requests();
    assert_eq!(seen.len(), 2);
    for r in &seen {
        for (name, _) in parts {
            assert_eq!(r.header(name), None, "{name} went upstream: {r:?}");
        }
    }
}

/// Headers by which middleware in front of a compatible server may route a request elsewhere
/// than the path till classified, and one the client's `Connection` names as its hop's alone,
/// do not go upstream; the rest do.
pub(crate) const ROUTING: [(&str, &str); 16] = [
    ("X-Original-URL", "/v1/files"),
    ("X-Original-URI", "/v1/files"),
    ("X-Original-Method", "DELETE"),
    ("X-Original-Host", "evil.example"),
    ("X-Rewrite-URL", "/v1/fine_tuning/jobs"),
    ("X-Forwarded-Host", "evil.example"),
    ("X-Forwarded-Proto", "gopher"),
    ("X-Forwarded-For", "10.0.0.1"),
    ("X-Forwarded-Prefix", "/v1/files"),
    ("X-Forwarded-Method", "DELETE"),
    ("X-Envoy-Original-Path", "/v1/files"),
    ("X-Envoy-Retry-On", "5xx"),
    ("X-Host", "evil.example"),
    ("X-Real-IP", "10.0.0.1"),
    ("Forwarded", "host=evil.example;proto=https"),
    ("Via", "1.1 evil.example"),
];

#[test]
fn routing_headers_and_those_connection_names_stay_behind() {
    let a = Attack::new("", &["--scope", "openai"]);
    let mut extra = vec![
        JSON,
        ("Connection", "x-hop"),
        ("X-Hop", "1"),
        ("X-Kept", "1"),
    ];
    extra.extend(ROUTING);
    let (status, text) = a.send(
        "POST",
        "/openai/v1/chat/completions",
        &extra,
        chat("gpt-4o-mini").as_bytes(),
    );
    assert_eq!(status, 200, "{text}");
    let seen = a.p.mock.requests();
    assert_eq!(seen.len(), 1);
    for (name, _) in ROUTING.iter().chain(&[("X-Hop", "")]) {
        let name = name.to_ascii_lowercase();
        assert_eq!(
            seen[0].header(&name),
            None,
            "{name} went upstream: {:?}",
            seen[0]
        );
    }
    assert_eq!(seen[0].header("x-kept"), Some("1"));
}

#[test]
fn a_ceiling_near_the_end_of_a_u64_is_refused_not_wrapped() {
    let a = Attack::new(
        "[prices.\"openai/greedy-model\"]\ninput = 1000.0\noutput = 1000.0\n",
        &[
            "--scope",
            "openai/greedy-model",
            "--budget",
            "1usd",
            "--tpm",
            "300",
        ],
    );
    let ask = |ceiling: &str, n: u64| {
        format!(
            "{{\"model\":\"greedy-model\",\"max_tokens\":{ceiling},\"n\":{n},\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}"
        )
    };
    let (status, text) = a.post("/openai/v1/chat/completions", &ask("10", 1));
    assert_eq!(status, 200, "{text}");
    // Summed with the prompt, these wrapped to a few tokens and were forwarded as they were.
    for (ceiling, n) in [
        ("18446744073709551566", 1),
        ("18446744073709551615", 1),
        ("9223372036854775808", 2),
        ("1073741825", 1),
    ] {
        let (status, text) = a.post("/openai/v1/chat/completions", &ask(ceiling, n));
        assert_eq!(status, 400, "{ceiling} × {n}: {text}");
        assert!(text.contains("1073741824"), "{text}");
    }
    assert_eq!(a.upstream_bodies().len(), 1, "only the first request went");
}

#[test]
fn an_upstream_that_echoes_the_root_key_does_not_hand_it_to_the_agent() {
    use std::io::{Read as _, Write as _};
    let a = Attack::new("", &["--scope", "openai/echo-model"]);
    let body = "{\"model\":\"echo-model\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    let mut stream =
        std::net::TcpStream::connect(a.serve.url.trim_start_matches("http://")).unwrap();
    stream
        .write_all(
            format!(
                "{}{body}",
                a.head(
                    "/openai/v1/chat/completions",
                    &format!("Content-Length: {}\r\n", body.len())
                )
            )
            .as_bytes(),
        )
        .unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw);
    // The upstream got the root key and quoted it in its body and a header.
    let seen = a.p.mock.requests();
    assert_eq!(seen.len(), 1);
    assert!(raw.starts_with("HTTP/1.1 401"), "{raw}");
    assert!(
        !raw.contains(ROOT_KEY),
        "the root key reached the agent: {raw}"
    );
    assert!(
        !raw.to_ascii_lowercase().contains("www-authenticate"),
        "{raw}"
    );
    // The rest of the answer is as the upstream sent it, the key overwritten in place.
    assert!(
        raw.contains("Incorrect API key provided: Bearer ************\""),
        "{raw}"
    );
}

#[test]
fn a_compressed_answer_is_refused_and_charged_its_reservation() {
    let a = Attack::new(
        "[prices.\"openai/gzip-model\"]\ninput = 1000.0\noutput = 1000.0\n",
        &["--scope", "openai/gzip-model", "--budget", "1usd"],
    );
    let body = "{\"model\":\"gzip-model\",\"max_tokens\":10,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    // till asks for no coding; an answer in one is neither metered nor searched for the root
    // key, so it does not go to the agent.
    let (status, text) = a.post("/openai/v1/chat/completions", body);
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("Content-Encoding: gzip"), "{text}");
    assert!(!text.contains("Hello from the mock"), "{text}");
    let seen = a.p.mock.requests();
    assert_eq!(seen.len(), 1);
    let accept = seen[0]
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("accept-encoding"))
        .map(|(_, v)| v.as_str());
    assert_eq!(accept, Some("identity"));
    // The provider ran it: the reservation (the body's bytes and 10 output tokens at $0.001
    // a token) is charged.
    a.assert_charged_its_reservation(body, 10, 0.001);
    // A coding on a second line, after one that says `identity`, is a coding all the same.
    let lines = Attack::new("", &["--scope", "openai/gzip-lines-model"]);
    let (status, text) = lines.post(
        "/openai/v1/chat/completions",
        "{\"model\":\"gzip-lines-model\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
    );
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("Content-Encoding: gzip"), "{text}");
    assert_eq!(lines.p.mock.requests().len(), 1);
}

/// An upstream that quotes the root key in the answer's coding or charset: till refuses the
/// answer (it cannot read it), and its refusal names the coding without quoting the upstream,
/// so the key reaches neither the agent nor the alert line nor the ledger.
#[test]
fn a_refused_coding_that_quotes_the_root_key_is_not_repeated() {
    for (model, header) in [
        (
            "coding-mirror-model",
            "Content-Encoding: a value till does not know",
        ),
        (
            "charset-mirror-model",
            "Content-Type charset: a value till does not know",
        ),
    ] {
        let a = Attack::new("", &["--scope", &format!("openai/{model}")]);
        let stderr_file = a.p.env.path("serve.err");
        let serve =
            a.p.serve_with_stderr(std::fs::File::create(&stderr_file).unwrap());
        let body = format!(
            "{{\"model\":\"{model}\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}"
        );
        let (status, text) = raw_http(
            &serve.url,
            "POST",
            "/openai/v1/chat/completions",
            &[("authorization", &format!("Bearer {}", a.key))],
            body.as_bytes(),
        );
        // The upstream got the root key, and quoted it back.
        let seen = a.p.mock.requests();
        assert_eq!(seen.len(), 1);
        assert_eq!(status, 502, "{model}: {text}");
        assert!(text.contains(header), "{model}: {text}");
        assert!(
            !text.contains(ROOT_KEY),
            "{model}: the agent got the key: {text}"
        );
        // SIGTERM, so the ledger writer settles what it holds.
        let mut serve = serve;
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(
            unsafe { libc::kill(serve.child.id() as i32, libc::SIGTERM) },
            0
        );
        assert!(serve.child.wait().unwrap().success());
        let stderr = std::fs::read_to_string(&stderr_file).unwrap();
        assert!(stderr.contains("upstream_encoding"), "{model}: {stderr}");
        assert!(!stderr.contains(ROOT_KEY), "{model}: {stderr}");
        let (_, alerts, _) = crate::support::output(a.p.env.till().args(["log", "--alerts"]));
        let (_, log, _) = crate::support::output(a.p.env.till().args(["log", "--json"]));
        assert!(alerts.contains("upstream_encoding"), "{model}: {alerts}");
        for out in [&alerts, &log] {
            assert!(!out.contains(ROOT_KEY), "{model}: {out}");
        }
    }
}

/// Requests the provider may have run though no answer came back are charged their
/// reservation: one whose answer did not begin within the timeout (a long answer that is not
/// streamed can take longer than that to begin), and one whose connection broke after the
/// upstream had read it whole. The provider bills either all the same.
#[test]
fn a_request_the_provider_may_have_run_without_answering_is_charged_its_reservation() {
    for (model, extra, status, kind) in [
        (
            "hang-model",
            "[proxy]\nupstream_timeout = \"1s\"\n",
            504,
            "upstream_timeout",
        ),
        ("cut-model", "", 502, "upstream_lost"),
    ] {
        let a = Attack::new(
            &format!("[prices.\"openai/{model}\"]\ninput = 1000.0\noutput = 1000.0\n{extra}"),
            &["--scope", &format!("openai/{model}"), "--budget", "1usd"],
        );
        let body = format!(
            "{{\"model\":\"{model}\",\"max_tokens\":10,\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}"
        );
        let (got, text) = a.post("/openai/v1/chat/completions", &body);
        assert_eq!(got, status, "{model}: {text}");
        assert!(text.contains(kind), "{model}: {text}");
        assert_eq!(a.p.mock.requests().len(), 1);
        a.assert_charged_its_reservation(&body, 10, 0.001);
    }
}

/// A streamed legacy completion reports usage only when asked (`stream_options.include_usage`),
/// as a chat stream does; till asked only on chat, so a key without a budget recorded real
/// work as 0 tokens and $0, "complete". Now the upstream is asked, the ledger row has the
/// tokens, and the agent that did not ask sees no usage chunk.
#[test]
fn a_streamed_legacy_completion_is_asked_for_its_usage_and_metered() {
    let a = Attack::new("", &["--scope", "openai/gpt-4o-mini"]);
    let body = "{\"model\":\"gpt-4o-mini\",\"prompt\":\"Say hi\",\"stream\":true}";
    let (status, text) = a.post("/openai/v1/completions", body);
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("text_completion") && text.ends_with("data: [DONE]\n\n"),
        "{text}"
    );
    assert!(
        !text.contains("usage"),
        "the agent did not ask for usage: {text}"
    );
    let sent = a.upstream_bodies();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0]["stream_options"]["include_usage"], true,
        "{}",
        sent[0]
    );
    let rows = a.logged(1);
    assert_eq!(rows[0]["output_tokens"], 5, "{rows:?}");
    assert!(rows[0]["input_tokens"].as_u64().unwrap() > 0, "{rows:?}");
    assert!(rows[0]["cost_usd"].as_f64().unwrap() > 0.0, "{rows:?}");
}

/// An answer that ends well but reports no usage (a compatible server that keeps no count)
/// was recorded "complete" with 0 tokens and $0, as if it had cost nothing; its row now says
/// that no usage was reported, in `till log` too.
#[test]
fn an_answer_without_usage_is_not_recorded_as_a_count_of_zero() {
    let a = Attack::new("", &["--scope", "openai", "--scope", "anthropic"]);
    // Counting tokens answers no usage by design: that is a complete answer.
    let (status, text) = a.post(
        "/anthropic/v1/messages/count_tokens",
        "{\"model\":\"claude-haiku-4-5\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
    );
    assert_eq!(status, 200, "{text}");
    let (status, text) = a.post(
        "/openai/v1/chat/completions",
        "{\"model\":\"gpt-4o-mini-no-usage\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
    );
    assert_eq!(status, 200, "{text}");
    assert!(
        !text.contains("\"usage\""),
        "the upstream reported none: {text}"
    );
    let (status, text) = a.post(
        "/openai/v1/chat/completions",
        "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
    );
    assert_eq!(status, 200, "{text}");
    let rows = a.logged(3);
    let outcome = |model: &str| {
        rows.iter()
            .find(|r| r["model"] == model)
            .map(|r| r["outcome"].clone())
    };
    assert_eq!(
        outcome("gpt-4o-mini-no-usage"),
        Some("no_usage".into()),
        "{rows:?}"
    );
    assert_eq!(outcome("gpt-4o-mini"), Some("complete".into()), "{rows:?}");
    assert_eq!(
        outcome("claude-haiku-4-5"),
        Some("complete".into()),
        "{rows:?}"
    );
    let (code, table, stderr) = crate::support::output(a.p.env.till().args(["log"]));
    assert_eq!(code, 0, "{stderr}");
    let line = table.lines().find(|l| l.contains("no-usage")).unwrap();
    assert!(line.ends_with("no usage reported"), "{table}");
}

/// Retrieving a stored response (`GET /v1/responses/ID`) answers with the usage of the run that
/// made it: till counted it again on every retrieval, so a poller's token totals grew with
/// each poll (at $0, no model being named). Only inference answers' usage is counted.
#[test]
fn retrieving_a_stored_response_does_not_count_its_usage_again() {
    let a = Attack::new("", &["--scope", "openai", "--endpoints", "inference,files"]);
    let (status, text) = a.post(
        "/openai/v1/responses",
        "{\"model\":\"gpt-4o-mini\",\"input\":\"hello there\"}",
    );
    assert_eq!(status, 200, "{text}");
    let id = serde_json::from_str::<Value>(&text).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..3 {
        let (status, text) = a.send("GET", &format!("/openai/v1/responses/{id}"), &[], b"");
        assert_eq!(status, 200, "{text}");
        assert!(
            text.contains("\"output_tokens\":5"),
            "the upstream's answer: {text}"
        );
    }
    let rows = a.logged(4);
    assert_eq!(rows.len(), 4, "{rows:?}");
    let tokens = |row: &Value| {
        row["input_tokens"].as_u64().unwrap() + row["output_tokens"].as_u64().unwrap()
    };
    let run = rows.iter().find(|r| r["endpoint"] == "inference").unwrap();
    assert_eq!(run["output_tokens"], 5, "{rows:?}");
    let total: u64 = rows.iter().map(tokens).sum();
    assert_eq!(total, tokens(run), "only the run's usage counts: {rows:?}");
}

/// Fees by the call come in through the model's name too, and a stream of several Gemini
/// candidates ends for till at the first: both refused to a key that counts tokens, whatever
/// else the body holds; a key without a budget still sends them.
#[test]
fn models_billed_by_the_call_and_streams_of_several_candidates_are_refused_to_a_budget_key() {
    let a = Attack::new(
        "",
        &["--scope", "openai", "--scope", "gemini", "--budget", "1usd"],
    );
    for model in [
        "gpt-4o-mini-search-preview",
        "gpt-4o-search-preview-2025-03-11",
        "gpt-5-search-api",
        "o4-mini-deep-research",
        "sonar-pro",
        "compound-beta",
        "gpt-4o:online",
        "openai/gpt-4o:online:free",
        "openai/gpt-4o:online@x",
    ] {
        let (status, text) = a.post("/openai/v1/chat/completions", &chat(model));
        assert_eq!(status, 403, "{model} → {text}");
        assert!(text.contains("prices tokens only"), "{text}");
    }
    let several = "{\"contents\":[{\"parts\":[{\"text\":\"hi\"}]}],\"generationConfig\":{\"candidateCount\":2}}";
    for path in [
        "/gemini/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
        "/gemini/v1beta/models/gemini-2.0-flash:streamGenerateContent",
    ] {
        let (status, text) = a.post(path, several);
        assert_eq!(status, 403, "{path} → {text}");
        assert!(text.contains("several candidates"), "{text}");
    }
    a.assert_upstream_saw_nothing("models billed by the call, streams of several candidates");
    // Several candidates without streaming end with the answer: forwarded.
    let (status, text) = a.post(
        "/gemini/v1beta/models/gemini-2.0-flash:generateContent",
        several,
    );
    assert_eq!(status, 200, "{text}");
    // Without a budget, a key for every model sends them.
    let open = format!("Bearer {}", a.p.create_key(&["--scope", "openai"]));
    let (status, text) = raw_http(
        &a.serve.url,
        "POST",
        "/openai/v1/chat/completions",
        &[("authorization", open.as_str()), JSON],
        chat("gpt-4o-mini-search-preview").as_bytes(),
    );
    assert_eq!(status, 200, "{text}");
}

/// Gemini reads both spellings of its generation config; which one it keeps when a body has
/// both is not till's to know, and till writes its output ceiling into one of them.
#[test]
fn a_gemini_body_with_both_spellings_of_its_generation_config_is_refused() {
    let a = Attack::new("", &["--scope", "gemini", "--budget", "1usd"]);
    let (status, text) = a.post(
        "/gemini/v1beta/models/gemini-2.0-flash:generateContent",
        "{\"contents\":[],\"generationConfig\":{},\"generation_config\":{\"maxOutputTokens\":65536}}",
    );
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("generation_config"), "{text}");
    a.assert_upstream_saw_nothing("both generation configs");
}

#[test]
fn a_budget_key_gets_a_ceiling_its_budget_can_pay_for() {
    let a = Attack::new(
        "[prices.\"openai/greedy-model\"]\ninput = 0.001\noutput = 1000.0\n",
        &["--scope", "openai/greedy-model", "--budget", "0.01usd"],
    );
    // No ceiling named: $0.01 at $0.001 a token pays for under 10 output tokens.
    let (status, text) = a.post("/openai/v1/chat/completions", &chat("greedy-model"));
    assert_eq!(status, 200, "{text}");
    let v = &a.upstream_bodies()[0];
    let ceiling = v["max_completion_tokens"]
        .as_u64()
        .expect("a ceiling was inserted");
    assert!((1..10).contains(&ceiling), "{v}");
}

#[test]
fn input_the_reservation_cannot_count_is_refused_to_a_budget_key() {
    let a = Attack::new(
        "",
        &[
            "--scope",
            "openai",
            "--scope",
            "anthropic",
            "--scope",
            "gemini",
            "--budget",
            "1usd",
        ],
    );
    let cases: &[(&str, &str)] = &[
        (
            "/openai/v1/responses",
            "{\"model\":\"gpt-4o-mini\",\"input\":\"x\",\"previous_response_id\":\"resp_1\"}",
        ),
        (
            "/openai/v1/responses",
            "{\"model\":\"gpt-4o-mini\",\"input\":\"x\",\"tools\":[{\"type\":\"web_search\"}]}",
        ),
        (
            "/openai/v1/chat/completions",
            "{\"model\":\"gpt-4o-mini\",\"service_tier\":\"priority\",\"messages\":[]}",
        ),
        (
            "/openai/v1/chat/completions",
            "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"file\",\"file\":{\"file_id\":\"file-1\"}}]}]}",
        ),
        (
            "/anthropic/v1/messages",
            "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"document\",\"source\":{\"type\":\"url\",\"url\":\"https://example.com/a.pdf\"}}]}]}",
        ),
        (
            "/gemini/v1beta/models/gemini-2.0-flash:generateContent",
            "{\"cachedContent\":\"cachedContents/1\",\"contents\":[]}",
        ),
        (
            "/gemini/v1beta/models/gemini-2.0-flash:generateContent",
            "{\"contents\":[],\"tools\":[{\"googleSearch\":{}}]}",
        ),
        // Billed above the tokens: compaction's second pass, fast mode, audio output.
        (
            "/anthropic/v1/messages",
            "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":5,\"messages\":[],\"context_management\":{\"edits\":[{\"type\":\"compact_20260112\"}]}}",
        ),
        (
            "/anthropic/v1/messages",
            "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":5,\"messages\":[],\"speed\":\"fast\"}",
        ),
        (
            "/openai/v1/chat/completions",
            "{\"model\":\"gpt-4o-mini\",\"modalities\":[\"text\",\"audio\"],\"messages\":[]}",
        ),
        // Tiers, residency and output kinds billed above the table's price, in every spelling.
        (
            "/gemini/v1beta/models/gemini-2.0-flash:generateContent",
            "{\"contents\":[],\"serviceTier\":\"priority\"}",
        ),
        (
            "/gemini/v1beta/models/gemini-2.0-flash:generateContent",
            "{\"contents\":[],\"service_tier\":\"SERVICE_TIER_PRIORITY\"}",
        ),
        (
            "/openai/v1/chat/completions",
            "{\"model\":\"gpt-4o-mini\",\"service_tier\":{\"priority\":true},\"messages\":[]}",
        ),
        (
            "/anthropic/v1/messages",
            "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":5,\"messages\":[],\"inference_geo\":\"us\"}",
        ),
        (
            "/gemini/v1beta/models/gemini-2.0-flash:generateContent",
            "{\"contents\":[],\"generationConfig\":{\"responseModalities\":[\"IMAGE\"]}}",
        ),
        (
            "/gemini/v1beta/models/gemini-2.0-flash:generateContent",
            "{\"contents\":[],\"generation_config\":{\"speech_config\":{\"voice_config\":{}}}}",
        ),
        (
            "/openai/v1/chat/completions",
            "{\"model\":\"gpt-4o-mini\",\"modalities\":\"audio\",\"messages\":[]}",
        ),
        // Stored input named by its id: a reasoning item without its content, an audio answer.
        (
            "/openai/v1/responses",
            "{\"model\":\"gpt-4o-mini\",\"input\":[{\"id\":\"rs_1\",\"type\":\"reasoning\",\"summary\":[]},{\"role\":\"user\",\"content\":\"go on\"}]}",
        ),
        (
            "/openai/v1/chat/completions",
            "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"assistant\",\"audio\":{\"id\":\"audio_1\"}}]}",
        ),
        // A look-alike of a name the check reads, where a case-folding parser reads it as that.
        (
            "/openai/v1/responses",
            "{\"model\":\"gpt-4o-mini\",\"input\":\"x\",\"tools\":[{\"Type\":\"web_search\"}]}",
        ),
        (
            "/openai/v1/chat/completions",
            "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"file\",\"file\":{\"File_Id\":\"file-1\"}}]}]}",
        ),
        (
            "/anthropic/v1/messages",
            "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"document\",\"Source\":{\"Type\":\"url\",\"url\":\"https://example.com/a.pdf\"}}]}]}",
        ),
        // Gemini's parser reads one object where a list is expected: a `tools` that is one
        // tool is that tool (and a tool that is not an object is not one till can read).
        (
            "/gemini/v1beta/models/gemini-2.0-flash:generateContent",
            "{\"contents\":[],\"tools\":{\"googleSearch\":{}}}",
        ),
        (
            "/gemini/v1beta/models/gemini-2.0-flash:generateContent",
            "{\"contents\":[],\"tools\":{\"google_search\":{},\"urlContext\":{}}}",
        ),
        (
            "/gemini/v1beta/models/gemini-2.0-flash:generateContent",
            "{\"contents\":[],\"tools\":[[{\"googleSearch\":{}}]]}",
        ),
        // Parts compatible servers fetch by URL and bill by what they find: Mistral's
        // documents, vLLM's and Together's video and audio.
        (
            "/openai/v1/chat/completions",
            "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"document_url\",\"document_url\":\"https://example.com/a.pdf\"}]}]}",
        ),
        (
            "/openai/v1/chat/completions",
            "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"Video_URL\",\"video_url\":{\"url\":\"https://example.com/v.mp4\"}}]}]}",
        ),
        (
            "/openai/v1/chat/completions",
            "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"audio_url\",\"audio_url\":{\"url\":\"https://example.com/a.wav\"}}]}]}",
        ),
        // The same parts without a `type`, or beside a `uuid`: vLLM reads their kind from
        // their keys.
        (
            "/openai/v1/chat/completions",
            "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":[{\"video_url\":{\"url\":\"https://example.com/v.mp4\"}}]}]}",
        ),
        (
            "/openai/v1/chat/completions",
            "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"x\",\"uuid\":\"u1\",\"Audio_Url\":{\"url\":\"https://example.com/a.wav\"}}]}]}",
        ),
        (
            "/openai/v1/chat/completions",
            "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":[{\"input_audio\":{\"data\":\"UklGRg==\",\"format\":\"wav\"}}]}]}",
        ),
        // Search billed by the call or the source beside an ordinary model: Perplexity's
        // presets, xAI's Live Search.
        (
            "/openai/v1/responses",
            "{\"model\":\"gpt-4o-mini\",\"input\":\"x\",\"preset\":\"pro-search\"}",
        ),
        (
            "/openai/v1/chat/completions",
            "{\"model\":\"gpt-4o-mini\",\"messages\":[],\"search_parameters\":{\"mode\":\"on\"}}",
        ),
    ];
    for (path, body) in cases {
        let (status, text) = a.post(path, body);
        assert_eq!(status, 403, "{path} {body} → {text}");
        // A preset or plugin also chooses models: refused for that first.
        let why = if body.contains("\"preset\"") || body.contains("\"plugins\"") {
            "runs a model other than the request's"
        } else {
            "read or bill more"
        };
        assert!(text.contains(why), "{text}");
    }
    // Look-alikes of the top-level fields are refused to every key (400), as other look-alikes.
    for body in [
        "{\"model\":\"gpt-4o-mini\",\"Service_Tier\":\"priority\",\"messages\":[]}",
        "{\"model\":\"gpt-4o-mini\",\"\\u017fervice_tier\":\"priority\",\"messages\":[]}",
        "{\"model\":\"gpt-4o-mini\",\"Tools\":[{\"type\":\"web_search\"}],\"messages\":[]}",
        "{\"model\":\"gpt-4o-mini\",\"Previous_Response_Id\":\"r\",\"messages\":[]}",
        "{\"model\":\"gpt-4o-mini\",\"Web_Search_Options\":{},\"messages\":[]}",
    ] {
        let (status, text) = a.post("/openai/v1/chat/completions", body);
        assert_eq!(status, 400, "{body} → {text}");
    }
    // A model name longer than any provider's is refused before it is recorded or shown.
    let long = format!("{{\"model\":\"{}\",\"messages\":[]}}", "m".repeat(100_000));
    let (status, text) = a.post("/openai/v1/chat/completions", &long);
    assert_eq!(status, 400, "{text}");
    a.assert_upstream_saw_nothing("uncounted input");
    // Clearing old tool results or thinking only shortens the input (Claude Code asks for it
    // on every call): forwarded.
    let (status, text) = a.post(
        "/anthropic/v1/messages",
        "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"context_management\":{\"edits\":[{\"type\":\"clear_tool_uses_20250919\"},{\"type\":\"clear_thinking_20251015\",\"keep\":\"all\"}]}}",
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(a.p.mock.requests().len(), 1);
    // So do a standard tier and text output named outright, and a reasoning item that carries
    // its own encrypted content.
    for (path, body) in [
        (
            "/gemini/v1beta/models/gemini-2.0-flash:generateContent",
            "{\"contents\":[{\"parts\":[{\"text\":\"hi\"}]}],\"serviceTier\":\"standard\",\"generationConfig\":{\"responseModalities\":[\"TEXT\"]}}",
        ),
        (
            "/openai/v1/responses",
            "{\"model\":\"gpt-4o-mini\",\"input\":[{\"id\":\"rs_1\",\"type\":\"reasoning\",\"summary\":[],\"encrypted_content\":\"gAAA\"},{\"role\":\"user\",\"content\":\"go on\"}]}",
        ),
        // A tool whose schema names a property as a part's key would be named.
        (
            "/openai/v1/chat/completions",
            "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\",\"properties\":{\"video_url\":{\"type\":\"string\"}}}}}]}",
        ),
    ] {
        let (status, text) = a.post(path, body);
        assert_eq!(status, 200, "{path} {body} → {text}");
    }
    assert_eq!(a.p.mock.requests().len(), 4);
}

/// What the `greedy` mock bills for one forwarded request, in micro-dollars: every output
/// token it allows at the output price, and its body's bytes at the input price (more than the
/// mock's own count of input tokens).
fn upstream_bill_micros(r: &till_mock::RecordedRequest, input: f64, output: f64) -> f64 {
    let body = r.json().unwrap_or(Value::Null);
    let out = till_mock::greedy_output(&body);
    assert!(
        out < till_mock::GREEDY_UNBOUNDED,
        "a request with no output ceiling reached the upstream: {body}"
    );
    r.body_len as f64 * input + out as f64 * output
}

/// Another family's output ceiling or count of answers, or a compatible server's own
/// (vLLM's chat reads `best_of`, llama.cpp's `n_predict`), would let such a server produce
/// more than the ceiling till reserved for: refused to keys with a budget, a token rate or an
/// output cap, forwarded for others.
#[test]
fn a_ceiling_in_another_apis_spelling_is_refused_to_a_bounded_key() {
    let foreign: &[(&str, &str)] = &[
        (
            "/openai/v1/chat/completions",
            "{\"model\":\"gpt-4o-mini\",\"max_completion_tokens\":5,\"best_of\":100,\"messages\":[]}",
        ),
        (
            "/openai/v1/chat/completions",
            "{\"model\":\"gpt-4o-mini\",\"max_tokens\":5,\"max_output_tokens\":100000,\"messages\":[]}",
        ),
        (
            "/openai/v1/chat/completions",
            "{\"model\":\"gpt-4o-mini\",\"max_tokens\":5,\"n_predict\":100000,\"messages\":[]}",
        ),
        (
            "/openai/v1/chat/completions",
            "{\"model\":\"gpt-4o-mini\",\"max_tokens\":5,\"generationConfig\":{\"maxOutputTokens\":100000},\"messages\":[]}",
        ),
        (
            "/openai/v1/responses",
            "{\"model\":\"gpt-4o-mini\",\"max_output_tokens\":5,\"max_tokens\":100000,\"input\":\"x\"}",
        ),
        (
            "/openai/v1/responses",
            "{\"model\":\"gpt-4o-mini\",\"max_output_tokens\":5,\"n\":100,\"input\":\"x\"}",
        ),
        (
            "/anthropic/v1/messages",
            "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":5,\"n\":100,\"messages\":[]}",
        ),
        (
            "/gemini/v1beta/models/gemini-2.0-flash:generateContent",
            "{\"contents\":[],\"generationConfig\":{\"maxOutputTokens\":5},\"max_tokens\":100000}",
        ),
        // llama.cpp's count of completions; the objects compatible servers read ceilings from
        // (Ollama's options, TGI's parameters; LiteLLM's extra_body is refused sooner, below).
        (
            "/openai/v1/chat/completions",
            "{\"model\":\"gpt-4o-mini\",\"max_tokens\":5,\"n_cmpl\":64,\"messages\":[]}",
        ),
        (
            "/openai/v1/chat/completions",
            "{\"model\":\"gpt-4o-mini\",\"max_tokens\":5,\"options\":{\"num_predict\":100000},\"messages\":[]}",
        ),
        (
            "/openai/v1/chat/completions",
            "{\"model\":\"gpt-4o-mini\",\"max_tokens\":5,\"parameters\":{\"max_new_tokens\":100000},\"messages\":[]}",
        ),
        // vLLM's image processor settings: an image of more pixels is more tokens.
        (
            "/openai/v1/chat/completions",
            "{\"model\":\"gpt-4o-mini\",\"max_tokens\":5,\"mm_processor_kwargs\":{\"max_pixels\":100000000},\"messages\":[]}",
        ),
    ];
    let every = [
        "--scope",
        "openai",
        "--scope",
        "anthropic",
        "--scope",
        "gemini",
    ];
    for bound in [
        &["--budget", "1usd"][..],
        &["--max-output-tokens", "10"][..],
    ] {
        let a = Attack::new("", &[&every[..], bound].concat());
        for (path, body) in foreign {
            let (status, text) = a.post(path, body);
            assert_eq!(status, 403, "{bound:?} {path} {body} → {text}");
            assert!(text.contains("does not read"), "{text}");
        }
        a.assert_upstream_saw_nothing("a ceiling in another spelling");
        // The endpoint's own fields pass.
        let (status, text) = a.post(
            "/openai/v1/chat/completions",
            "{\"model\":\"gpt-4o-mini\",\"max_tokens\":5,\"max_completion_tokens\":5,\"n\":2,\"messages\":[]}",
        );
        assert_eq!(status, 200, "{bound:?}: {text}");
    }
    // A key without bounds has no ceiling to get past: the body goes as it came. Names that
    // differ from a read one by a `-`, a space or an invisible character are refused to every
    // key, as other look-alikes are.
    let a = Attack::new("", &every);
    for body in [
        "{\"model\":\"gpt-4o-mini\",\"max-tokens\":100000,\"messages\":[]}",
        "{\"model\":\"gpt-4o-mini\",\"max_tokens \":100000,\"messages\":[]}",
        "{\"model\":\"gpt-4o-mini\",\"n\\u200b\":50,\"messages\":[]}",
    ] {
        let (status, text) = a.post("/openai/v1/chat/completions", body);
        assert_eq!(status, 400, "{body} → {text}");
    }
    a.assert_upstream_saw_nothing("look-alikes of a ceiling");
    let (status, text) = a.post(foreign[0].0, foreign[0].1);
    assert_eq!(status, 200, "{text}");
    assert_eq!(a.upstream_bodies()[0]["best_of"], 100);
}

/// An image part without its `type` (or beside a `uuid`) is one to vLLM, which reads a part's
/// kind from its keys: the reservation counts it as an image, so a budget that cannot pay for
/// the images refuses the request before the upstream sees it.
#[test]
fn an_image_without_its_type_is_reserved_as_one() {
    let a = Attack::new("", &["--scope", "openai/gpt-4o", "--budget", "0.1usd"]);
    let body = |part: &str| {
        let parts = vec![part; 20].join(",");
        format!(
            "{{\"model\":\"gpt-4o\",\"max_tokens\":5,\"messages\":[{{\"role\":\"user\",\"content\":[{parts}]}}]}}"
        )
    };
    let url = "{\"url\":\"https://example.com/a.png\"}";
    for part in [
        format!("{{\"type\":\"image_url\",\"image_url\":{url}}}"),
        format!("{{\"image_url\":{url}}}"),
        format!("{{\"type\":null,\"image_url\":{url}}}"),
        format!("{{\"type\":\"text\",\"text\":\"\",\"uuid\":\"u1\",\"Image_Url\":{url}}}"),
    ] {
        let (status, text) = a.post("/openai/v1/chat/completions", &body(&part));
        assert_eq!(status, 429, "{part} → {text}");
    }
    a.assert_upstream_saw_nothing("images past the budget");
    // A tool's parameter named `image_url` is no image.
    let (status, text) = a.post(
        "/openai/v1/chat/completions",
        "{\"model\":\"gpt-4o\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"look\",\"parameters\":{\"type\":\"object\",\"properties\":{\"image_url\":{\"type\":\"string\"}}}}}]}",
    );
    assert_eq!(status, 200, "{text}");
}

#[test]
fn a_one_cent_key_spends_at_most_one_cent_from_two_proxies_at_once() {
    let prices = "[prices.\"openai/greedy-model\"]\ninput = 0.001\noutput = 1000.0\n\
        [prices.\"anthropic/greedy-claude\"]\ninput = 0.001\noutput = 1000.0\n\
        [prices.\"gemini/greedy-gemini\"]\ninput = 0.001\noutput = 1000.0\n";
    let p = ProxyEnv::with_options(till_mock::MockOptions::default(), prices);
    let key = p.create_key(&[
        "--name",
        "cent",
        "--scope",
        "openai/greedy-model",
        "--scope",
        "anthropic/greedy-claude",
        "--scope",
        "gemini/greedy-gemini",
        "--budget",
        "0.01usd",
    ]);
    let serves = [p.serve(), p.serve()];
    p.mock.clear_requests();
    // Every request shape that names its ceiling another way, or none, or many choices.
    let shapes: Vec<(&str, String)> = vec![
        ("/openai/v1/chat/completions", chat("greedy-model")),
        ("/openai/v1/chat/completions", format!(" {}", chat("greedy-model"))),
        ("/openai/v1/chat/completions", "{\"model\":\"greedy-model\",\"max_tokens\":1,\"max_completion_tokens\":3,\"messages\":[]}".into()),
        ("/openai/v1/chat/completions", "{\"model\":\"greedy-model\",\"max_tokens\":1,\"n\":4,\"messages\":[]}".into()),
        ("/openai/v1/chat/completions", "{\"model\":\"greedy-model\",\"stream\":true,\"messages\":[]}".into()),
        ("/openai/v1/responses", "{\"model\":\"greedy-model\",\"input\":\"hi\"}".into()),
        ("/anthropic/v1/messages", "{\"model\":\"greedy-claude\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}".into()),
        ("/anthropic/v1/messages", "{\"model\":\"greedy-claude\",\"max_tokens\":2,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}".into()),
        ("/gemini/v1beta/models/greedy-gemini:generateContent", "{\"contents\":[{\"parts\":[{\"text\":\"hi\"}]}]}".into()),
        ("/gemini/v1beta/models/greedy-gemini:generateContent", "{\"contents\":[],\"generation_config\":{\"candidate_count\":2,\"max_output_tokens\":2}}".into()),
        ("/gemini/v1beta/models/greedy-gemini:streamGenerateContent?alt=sse", "{\"contents\":[],\"generationConfig\":{\"maxOutputTokens\":1}}".into()),
    ];
    let ok = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..8 {
            let (serves, shapes, key, ok) = (&serves, &shapes, &key, &ok);
            s.spawn(move || {
                for round in 0..6 {
                    let (path, body) = &shapes[(t + round) % shapes.len()];
                    let auth = format!("Bearer {key}");
                    let (status, text) = raw_http(
                        &serves[t % 2].url,
                        "POST",
                        path,
                        &[
                            JSON,
                            ("authorization", &auth),
                            ("x-goog-api-key", key),
                            ("x-api-key", key),
                        ],
                        body.as_bytes(),
                    );
                    assert!(
                        matches!(status, 200 | 429),
                        "{path} {body} → {status} {text}"
                    );
                    if status == 200 {
                        ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let seen = p.mock.requests();
    let billed: f64 = seen
        .iter()
        .map(|r| upstream_bill_micros(r, 0.001, 1000.0))
        .sum();
    assert!(
        billed <= 10_000.0 + 1.0,
        "the upstream billed ${:.6} for a $0.01 key ({} requests got through)",
        billed / 1e6,
        seen.len()
    );
    assert!(
        ok.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "nothing got through"
    );
    assert!(
        billed > 1_000.0,
        "the budget refused nearly everything (${:.6})",
        billed / 1e6
    );
}

fn cached_system_prompt(model: &str, ttl: Option<&str>) -> String {
    let cc = match ttl {
        Some(t) => format!(",\"cache_control\":{{\"type\":\"ephemeral\",\"ttl\":\"{t}\"}}"),
        None => ",\"cache_control\":{\"type\":\"ephemeral\"}".into(),
    };
    let text = "x".repeat(300);
    format!(
        "{{\"model\":\"{model}\",\"max_tokens\":10,\"system\":[{{\"type\":\"text\",\"text\":\"{text}\"{cc}}}],\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}"
    )
}

/// A prompt-cache write reported by the provider is charged at its own rate (five minutes or
/// one hour), not at the input price.
#[test]
fn cache_writes_are_billed_at_their_rates() {
    let a = Attack::new(
        "[prices.\"anthropic/cachey\"]\ninput = 1.0\ncache_write = 3.0\ncache_write_1h = 7.0\noutput = 2.0\n",
        &["--scope", "anthropic/cachey", "--budget", "1usd"],
    );
    for (i, ttl) in [Some("1h"), Some("5m")].into_iter().enumerate() {
        let (status, answer) = a.post(
            "/anthropic/v1/messages",
            &cached_system_prompt("cachey", ttl),
        );
        assert_eq!(status, 200, "{answer}");
        let u = serde_json::from_str::<Value>(&answer).unwrap()["usage"].clone();
        let n = |v: &Value| v.as_f64().unwrap();
        let (w5, w1h) = (
            n(&u["cache_creation"]["ephemeral_5m_input_tokens"]),
            n(&u["cache_creation"]["ephemeral_1h_input_tokens"]),
        );
        assert!(w5 + w1h > 0.0, "{u}");
        let expect = n(&u["input_tokens"]) + w5 * 3.0 + w1h * 7.0 + n(&u["output_tokens"]) * 2.0;
        // The row is written once the answer has gone out: wait for it.
        let rows = a.logged(i + 1);
        let cost = rows[i]["cost_usd"].as_f64().unwrap() * 1e6;
        assert!(
            (cost - expect).abs() < 0.5,
            "{ttl:?}: charged {cost} µ$, expected {expect} µ$"
        );
    }
}

/// Cache writes cost more than input (Anthropic: 1.25× for five minutes, 2× for an hour; here
/// 500× and 5000× to make a miss visible): eight clients at once, on a model that writes its
/// whole prompt to the cache and bills every output token allowed, are held to the key's
/// budget by what the provider itself reports, whatever the requests mark.
#[test]
fn cache_writes_cannot_overspend_a_budget() {
    let a = Attack::new(
        "[prices.\"anthropic/greedy-cache\"]\ninput = 0.001\ncache_write = 0.5\ncache_write_1h = 5.0\noutput = 0.001\n",
        &["--scope", "anthropic/greedy-cache", "--budget", "0.0005usd"],
    );
    let answers = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|sc| {
        for t in 0..8 {
            let (a, answers) = (&a, &answers);
            sc.spawn(move || {
                for round in 0..5 {
                    let ttl = [Some("1h"), Some("5m"), None, Some("5m")][(t + round) % 4];
                    let got = a.post(
                        "/anthropic/v1/messages",
                        &cached_system_prompt("greedy-cache", ttl),
                    );
                    answers.lock().unwrap().push(got);
                }
            });
        }
    });
    let mut billed = 0.0;
    let mut ok = 0;
    for (status, answer) in answers.into_inner().unwrap() {
        assert!(matches!(status, 200 | 429), "{status} {answer}");
        if status == 200 {
            ok += 1;
            let u = &serde_json::from_str::<Value>(&answer).unwrap()["usage"];
            let n = |v: &Value| v.as_f64().unwrap_or(0.0);
            billed += n(&u["input_tokens"]) * 0.001
                + n(&u["cache_creation"]["ephemeral_5m_input_tokens"]) * 0.5
                + n(&u["cache_creation"]["ephemeral_1h_input_tokens"]) * 5.0
                + n(&u["output_tokens"]) * 0.001;
        }
    }
    assert!(
        ok > 1,
        "the budget refused nearly everything ({ok} answered)"
    );
    assert!(
        billed <= 500.0 + 1.0,
        "the upstream billed {billed} µ$ for a 500 µ$ key ({ok} answered)"
    );
    // The ledger says the same, once the last answer's row is written (each request's cost
    // is rounded to a whole micro-dollar).
    let close = |spent: f64| (spent - billed).abs() <= 0.5 * ok as f64 + 1.0;
    let mut spent = 0.0;
    for _ in 0..100 {
        let (_, shown, _) = crate::support::output(a.p.env.till().args(["key", "list", "--json"]));
        let keys: Value = serde_json::from_str(&shown).unwrap();
        spent = keys[0]["spent_usd"].as_f64().unwrap() * 1e6;
        if close(spent) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(close(spent), "ledger {spent} µ$, upstream {billed} µ$");

    // A one-hour write whose bound the budget cannot pay is refused, though a five-minute
    // write of the same prompt would fit: nothing reaches the upstream.
    let small =
        a.p.create_key(&["--scope", "anthropic/greedy-cache", "--budget", "0.0003usd"]);
    a.p.mock.clear_requests();
    let auth = format!("Bearer {small}");
    let (status, answer) = raw_http(
        &a.serve.url,
        "POST",
        "/anthropic/v1/messages",
        &[JSON, ("authorization", &auth)],
        cached_system_prompt("greedy-cache", Some("1h")).as_bytes(),
    );
    assert_eq!(status, 429, "{answer}");
    a.assert_upstream_saw_nothing("a one-hour cache write beyond the budget");
}

/// One way to bend a request that is in scope.
#[derive(Debug, Clone)]
enum Mutation {
    /// Put a path piece before segment `at`.
    Insert(usize, &'static str),
    /// Replace segment `at`.
    Replace(usize, &'static str),
    /// Put text before the body.
    Prefix(&'static str),
    /// Put text at the end of the body.
    Suffix(&'static str),
    /// Add a field to the body (text spliced in after the opening brace).
    Field(&'static str),
    /// Use another method.
    Method(&'static str),
}

fn mutation() -> impl proptest::strategy::Strategy<Value = Mutation> {
    use proptest::prelude::*;
    let piece = prop::sample::select(vec![
        "..",
        ".",
        "%2e%2e",
        "%2E.",
        ".%2e",
        "%2e",
        "%2f",
        "%2F..%2F",
        "%5c",
        "\\",
        "",
        "%252e%252e",
        "files",
        "organization",
        "fine_tuning",
        "v1",
        "models",
        "chat",
        "completions",
        "responses",
        "batches",
        "%00",
        "%3f",
        ";",
        "gpt-4o",
        "..;",
        "%c0%ae",
        "%u002e",
    ]);
    let text = prop::sample::select(vec![
        " ",
        "\n",
        "\u{feff}",
        "\t\r\n",
        "x",
        "}",
        "{",
        ",\"model\":\"gpt-4o\"}",
        "//",
        "\0",
    ]);
    let field = prop::sample::select(vec![
        "\"model\":\"gpt-4o\",",
        "\"max_tokens\":\"1000\",",
        "\"max_tokens\":1e6,",
        "\"n\":0,",
        "\"n\":10,",
        "\"stream\":1,",
        "\"model\":null,",
        "\"Model\":\"gpt-4o\",",
        "\"model\\u0000\":\"gpt-4o\",",
        "\"mod\\u0065l\":\"gpt-4o\",",
        "\"max_completion_tokens\":null,",
    ]);
    let method = prop::sample::select(vec!["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]);
    prop_oneof![
        (0..5usize, piece.clone()).prop_map(|(a, p)| Mutation::Insert(a, p)),
        (0..5usize, piece).prop_map(|(a, p)| Mutation::Replace(a, p)),
        text.clone().prop_map(Mutation::Prefix),
        text.prop_map(Mutation::Suffix),
        field.prop_map(Mutation::Field),
        method.prop_map(Mutation::Method),
    ]
}

/// Applies mutations to the in-scope request `POST /openai/v1/chat/completions`.
fn mutate(mutations: &[Mutation]) -> (String, String, String) {
    let mut segments: Vec<String> = ["openai", "v1", "chat", "completions"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut body = chat("gpt-4o-mini");
    let mut method = "POST".to_string();
    for m in mutations {
        match m {
            Mutation::Insert(at, p) => {
                let at = (*at).clamp(1, segments.len());
                segments.insert(at, p.to_string());
            }
            Mutation::Replace(at, p) => {
                let at = (*at).clamp(1, segments.len() - 1);
                segments[at] = p.to_string();
            }
            Mutation::Prefix(t) => body.insert_str(0, t),
            Mutation::Suffix(t) => body.push_str(t),
            Mutation::Field(f) => {
                if let Some(i) = body.find('{') {
                    body.insert_str(i + 1, f);
                }
            }
            Mutation::Method(m) => method = m.to_string(),
        }
    }
    (method, format!("/{}", segments.join("/")), body)
}

/// Whatever an agent does to an in-scope request, it is refused, or the upstream receives an
/// inference call to the one model the key allows, on a path the proxy classified as that, with
/// one `model` field and an output ceiling.
#[test]
fn mutated_requests_are_refused_or_reach_the_upstream_in_scope() {
    // Each case is a real HTTP exchange through `till serve`: 256 of them, whatever
    // PROPTEST_CASES asks of the pure property tests (the `proptest!` macro would take it).
    let mut runner = proptest::test_runner::TestRunner::new(proptest::prelude::ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    });
    let strategy = proptest::collection::vec(mutation(), 1..4);
    let a = Attack::new(
        "",
        &["--scope", "openai/gpt-4o-mini", "--max-output-tokens", "64"],
    );
    let outcome = runner.run(&strategy, |mutations| {
        let (method, path, body) = mutate(&mutations);
        a.p.mock.clear_requests();
        let (status, text) = a.send(&method, &path, &[JSON], body.as_bytes());
        let seen = a.p.mock.requests();
        if status == 200 {
            assert_eq!(seen.len(), 1, "{method} {path} {body:?} → 200 {text}");
        }
        for r in &seen {
            let what = format!("{method} {path} {body:?} reached the upstream as {r:?}");
            assert_eq!(r.method, "POST", "{what}");
            assert!(
                [
                    "/v1/chat/completions",
                    "/v1/completions",
                    "/v1/responses",
                    "/v1/embeddings",
                    "/v1/moderations"
                ]
                .contains(&r.path.as_str()),
                "{what}"
            );
            let text = r.body.as_deref().unwrap_or("");
            // One field another parser could take for the model: no `Model`, no `model\u0000`.
            assert_eq!(
                text.to_ascii_lowercase().matches("\"model").count(),
                1,
                "{what}"
            );
            let v = r.json().expect("the upstream got JSON");
            assert_eq!(v["model"], "gpt-4o-mini", "{what}");
            let ceiling = v["max_completion_tokens"]
                .as_u64()
                .or(v["max_tokens"].as_u64());
            assert!(ceiling.is_some_and(|c| c <= 64), "{what}");
            assert!(!text.contains("till_"), "{what}");
        }
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
}

#[test]
fn a_tpm_key_gets_a_ceiling_within_its_rate() {
    let a = Attack::new("", &["--scope", "openai/gpt-4o-mini", "--tpm", "1000"]);
    let body = chat("gpt-4o-mini");
    let (status, text) = a.post("/openai/v1/chat/completions", &body);
    assert_eq!(status, 200, "{text}");
    let v = &a.upstream_bodies()[0];
    let ceiling = v["max_completion_tokens"]
        .as_u64()
        .expect("a ceiling was inserted");
    assert!(ceiling + body.len() as u64 <= 1000, "{v}");
}

/// The Vercel AI SDK's Anthropic provider calls `…/anthropic/messages`: the version goes back in
/// front upstream, and the request is classified, checked and forwarded as that one path.
#[test]
fn anthropic_paths_without_their_version_reach_v1() {
    let a = Attack::new("", &["--scope", "anthropic/claude-haiku-*"]);
    let body = "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    let (status, text) = a.post("/anthropic/messages", body);
    assert_eq!(status, 200, "{text}");
    let (status, text) = a.post("/anthropic/messages/count_tokens", body);
    assert_eq!(status, 200, "{text}");
    let paths: Vec<String> = a.p.mock.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/v1/messages", "/v1/messages/count_tokens"]);
    // Out of scope without the version as with it, and no way around the canonical path.
    a.p.mock.clear_requests();
    let (status, _) = a.post(
        "/anthropic/messages",
        "{\"model\":\"claude-opus-4-1\",\"max_tokens\":5,\"messages\":[]}",
    );
    assert_eq!(status, 403);
    let (status, _) = a.post("/anthropic/messages/../organizations/api_keys", body);
    assert_eq!(status, 400);
    a.assert_upstream_saw_nothing("unversioned tricks");
}

/// Long free text is left out of the parse till decides on, never out of what it forwards:
/// a body till edits (a budget key's ceiling) reaches the provider with every message whole,
/// one it does not edit arrives byte for byte, and a long value in a field the checks read
/// (a tool's `type`) is still read.
#[test]
fn long_message_text_reaches_the_upstream_whole_and_long_checked_fields_are_still_read() {
    // 9 KB messages full of escapes, a non-ASCII character and a surrogate pair: skimmed.
    let text: String = (0..200)
        .map(|i| format!("line {i}: \\\"quoted\\\" \\u00e9 \\ud83d\\ude00\\n"))
        .collect();
    let messages: Vec<String> = (0..4)
        .map(|i| format!("{{\"role\":\"user\",\"content\":\"{i} {text}\"}}"))
        .collect();
    let body = format!(
        "{{\"model\":\"gpt-4o-mini\",\"messages\":[{}]}}",
        messages.join(",")
    );
    assert!(body.len() > 20_000 && body.len() < 64_000, "{}", body.len());
    let sent: Value = serde_json::from_str(&body).unwrap();

    // A plain key: nothing to change, so the bytes go as they came.
    let plain = Attack::new("", &["--scope", "openai/gpt-4o-mini"]);
    let (status, out) = plain.post("/openai/v1/chat/completions", &body);
    assert_eq!(status, 200, "{out}");
    let seen = plain.p.mock.requests();
    assert_eq!(seen[0].body.as_deref(), Some(body.as_str()));

    // A budget key: till writes its ceiling in, so the body is written out again, from the
    // whole parse: every message arrives as sent.
    let budget = Attack::new("", &["--scope", "openai/gpt-4o-mini", "--budget", "1usd"]);
    let (status, out) = budget.post("/openai/v1/chat/completions", &body);
    assert_eq!(status, 200, "{out}");
    let got = &budget.upstream_bodies()[0];
    assert_eq!(got["messages"], sent["messages"]);
    assert!(
        got["max_completion_tokens"].as_u64().is_some(),
        "{}",
        got["max_completion_tokens"]
    );
    // The same with a repeated key, which is always written out again.
    let repeated = body.replacen("{\"model\"", "{\"model\":\"gpt-4o-mini\",\"model\"", 1);
    let (status, out) = plain.post("/openai/v1/chat/completions", &repeated);
    assert_eq!(status, 200, "{out}");
    let got = plain.p.mock.requests()[1].json().unwrap();
    assert_eq!(got["messages"], sent["messages"]);

    // A server-side tool whose `type` is long is still a server-side tool to a budget key.
    let tool = format!("web_search_preview{}", "_x".repeat(200));
    let (status, out) = budget.post(
        "/openai/v1/responses",
        &format!(
            "{{\"model\":\"gpt-4o-mini\",\"input\":\"{text}\",\"tools\":[{{\"type\":\"{tool}\"}}]}}"
        ),
    );
    assert_eq!(status, 403, "{out}");
    assert!(out.contains("web_search_preview"), "{out}");
    assert_eq!(
        budget.p.mock.requests().len(),
        1,
        "the tool request reached the upstream"
    );
}

/// Sends `head` (without a body length), then `parts` one write at a time with a pause between
/// them, as `Transfer-Encoding: chunked` when `chunked` (each part a chunk, then the last
/// chunk) or else raw; `close` shuts the sending side after the parts, with the body
/// unfinished. Returns the answer as text ("" when none came).
fn trickle(url: &str, head: &str, parts: &[&[u8]], chunked: bool, close: bool) -> String {
    use std::io::{Read as _, Write as _};
    let addr = url.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    s.write_all(head.as_bytes()).unwrap();
    for part in parts {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let sent = if chunked {
            s.write_all(format!("{:x}\r\n", part.len()).as_bytes())
                .and_then(|()| s.write_all(part))
                .and_then(|()| s.write_all(b"\r\n"))
        } else {
            s.write_all(part)
        };
        // A proxy that refused early may have closed the connection already.
        if sent.is_err() {
            break;
        }
    }
    if close {
        let _ = s.shutdown(std::net::Shutdown::Write);
    } else if chunked {
        let _ = s.write_all(b"0\r\n\r\n");
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw).into_owned()
}

#[test]
fn the_body_limit_holds_however_the_body_is_framed_and_a_cut_body_is_never_forwarded() {
    let a = Attack::new("[proxy]\nmax_body_bytes = 4096\n", &["--scope", "openai"]);
    let path = "/openai/v1/chat/completions";
    let head = |framing: &str| a.head(path, framing);
    let long = |n: usize| {
        format!(
            "{{\"model\":\"gpt-4o-mini\",\"messages\":[{{\"role\":\"user\",\"content\":\"{}\"}}]}}",
            "a\\n\\\"é ".repeat(n / 8)
        )
    };

    // One byte over, sent whole.
    let over = long(5000);
    assert!(over.len() > 4096);
    let (status, answer) = a.post(path, &over);
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("max_body_bytes"), "{answer}");
    // A length over the limit is refused from the head alone: no body follows, and the answer
    // comes at once instead of after the body timeout.
    let t = std::time::Instant::now();
    let answer = trickle(
        &a.serve.url,
        &head("Content-Length: 50000000\r\n"),
        &[],
        false,
        false,
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    // Chunked, with no length to refuse early: counted as it arrives.
    let parts: Vec<&[u8]> = over.as_bytes().chunks(1000).collect();
    let answer = trickle(
        &a.serve.url,
        &head("Transfer-Encoding: chunked\r\n"),
        &parts,
        true,
        false,
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    a.assert_upstream_saw_nothing("bodies over max_body_bytes");

    // Cut off mid-body, with a length or chunked: the part that came is never forwarded.
    let under = long(3000);
    let bytes = under.as_bytes();
    let half: &[&[u8]] = &[&bytes[..1000], &bytes[1000..2000]];
    let length = format!("Content-Length: {}\r\n", bytes.len());
    let answer = trickle(&a.serve.url, &head(&length), half, false, true);
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = trickle(
        &a.serve.url,
        &head("Transfer-Encoding: chunked\r\n"),
        half,
        true,
        true,
    );
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    a.assert_upstream_saw_nothing("bodies cut off mid-way");

    // Within the limit, in pieces that split an `é` and an escape: joined byte for byte.
    let splits: Vec<&[u8]> = vec![
        &bytes[..7],
        &bytes[7..995],
        &bytes[995..1001],
        &bytes[1001..],
    ];
    assert!(std::str::from_utf8(splits[1]).is_err(), "ends inside an é");
    assert_eq!(splits[2].last(), Some(&b'\\'), "ends inside an escape");
    for (framing, chunked) in [
        (length.as_str(), false),
        ("Transfer-Encoding: chunked\r\n", true),
    ] {
        a.p.mock.clear_requests();
        let answer = trickle(&a.serve.url, &head(framing), &splits, chunked, false);
        assert!(answer.starts_with("HTTP/1.1 200"), "{framing}: {answer}");
        let seen = a.p.mock.requests();
        assert_eq!(seen.len(), 1, "{framing}");
        assert_eq!(seen[0].body.as_deref(), Some(under.as_str()), "{framing}");
    }
}

/// A large body that arrives in pieces is joined and checked as it comes, and its long messages
/// are skimmed by 64-byte blocks. Where a run of backslashes before a quote is cut between
/// pieces and between blocks, the quote still ends the string exactly when the run is even: a
/// field written after it is read (and refused) when it is outside the string, and is text when
/// it is inside. An invalid escape or a raw control character deep in a long message, arriving
/// in pieces, is still refused.
#[test]
fn a_body_in_pieces_is_read_as_it_would_be_whole() {
    let a = Attack::new("", &["--scope", "openai/gpt-4o-mini"]);
    let path = "/openai/v1/chat/completions";
    let head = |n: usize| a.head(path, &format!("Content-Length: {n}\r\n"));
    let prefix = "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"";
    // ≈ 60 KB: within what the mock records of a body, to compare it byte for byte.
    let filler = "line \\\"quoted\\\" \u{e9} \\ud83d\\ude00\\n".repeat(1800);
    // Sends `body` cut just before and after the byte at `at`, and 70 bytes on.
    let send = |body: &str, at: usize| {
        let b = body.as_bytes();
        let on = (at + 70).min(b.len());
        let parts: &[&[u8]] = &[&b[..at], &b[at..at + 1], &b[at + 1..on], &b[on..]];
        trickle(&a.serve.url, &head(b.len()), parts, false, false)
    };
    for run in 1..=4 {
        // The run of backslashes ends on a block's last byte: its quote starts the next block.
        let mut text = filler.clone();
        while !(prefix.len() + text.len() + run).is_multiple_of(64) {
            text.push('y');
        }
        let backslashes = "\\".repeat(run);
        let body = if run % 2 == 0 {
            // The quote ends the message; the repeated `model` after it is the one read.
            format!("{prefix}{text}{backslashes}\"}}],\"model\":\"gpt-4o\"}}")
        } else {
            // The quote is escaped: the would-be field is message text.
            format!("{prefix}{text}{backslashes}\"}}],\\\"model\\\":\\\"gpt-4o\\\"\"}}]}}")
        };
        let parsed: Value = serde_json::from_str(&body).expect("valid JSON");
        let at = prefix.len() + text.len();
        a.p.mock.clear_requests();
        let answer = send(&body, at);
        if run % 2 == 0 {
            assert_eq!(parsed["model"], "gpt-4o");
            assert!(answer.starts_with("HTTP/1.1 403"), "run {run}: {answer}");
            a.assert_upstream_saw_nothing("a model after a message's end");
        } else {
            assert_eq!(parsed["model"], "gpt-4o-mini");
            assert!(answer.starts_with("HTTP/1.1 200"), "run {run}: {answer}");
            let seen = a.p.mock.requests();
            assert_eq!(seen.len(), 1, "run {run}");
            // Not `assert_eq!`: a failure would print 60 KB twice.
            assert!(
                seen[0].body.as_deref() == Some(body.as_str()),
                "run {run}: the body changed on the way"
            );
        }
    }
    a.p.mock.clear_requests();
    for bad in ["\\ud800 lone", "\\q", "\t raw tab", "\\u00g0"] {
        let body = format!("{prefix}{filler}{bad}{filler}\"}}]}}");
        assert!(serde_json::from_str::<Value>(&body).is_err(), "{bad}");
        let at = prefix.len() + filler.len() + 1;
        let answer = send(&body, at);
        assert!(answer.starts_with("HTTP/1.1 400"), "{bad:?}: {answer}");
    }
    a.assert_upstream_saw_nothing("invalid message text sent in pieces");
}

/// `key` with its decoded body changed by `edit` and its checksum made right again, so that
/// what refuses it is the signature chain, not the checksum.
fn reforged(key: &str, edit: impl FnOnce(&mut Vec<u8>)) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut body = URL_SAFE_NO_PAD
        .decode(key.strip_prefix("till_").unwrap())
        .unwrap();
    body.truncate(body.len() - 4);
    edit(&mut body);
    let crc = crc32fast::hash(&body);
    body.extend_from_slice(&crc.to_be_bytes());
    format!("till_{}", URL_SAFE_NO_PAD.encode(&body))
}

/// The proxy keeps the keys it has verified, so that a key's next request skips the HMAC
/// chain. What it keeps vouches for that exact key and nothing else: not for the same key with
/// its tag or a caveat byte changed (checksum repaired), not for a prefix or an extension of
/// it, and not for the key itself once it has expired or been revoked.
#[test]
fn a_key_the_proxy_has_verified_vouches_for_no_other_key_and_not_past_its_end() {
    const PATH: &str = "/openai/v1/chat/completions";
    let a = Attack::new("", &["--name", "short", "--scope", "openai", "--ttl", "3s"]);
    let body = chat("gpt-4o-mini");
    let started = std::time::Instant::now();
    for _ in 0..3 {
        let (status, text) = a.post(PATH, &body);
        assert_eq!(status, 200, "{text}");
    }
    assert_eq!(a.p.mock.requests().len(), 3);

    let forged = [
        ("tag", reforged(&a.key, |b| *b.last_mut().unwrap() ^= 1)),
        // The byte after the 21-byte header is the level count's; one after it, a caveat's.
        ("caveat", reforged(&a.key, |b| b[23] ^= 1)),
        ("extended", format!("{}A", a.key)),
        ("prefix", a.key[..a.key.len() - 1].to_string()),
    ];
    for (what, key) in &forged {
        assert_ne!(key, &a.key);
        let auth = format!("Bearer {key}");
        let (status, text) = raw_http(
            &a.serve.url,
            "POST",
            PATH,
            &[("authorization", &auth), JSON],
            body.as_bytes(),
        );
        assert_eq!(status, 401, "{what}: {text}");
    }
    let (status, text) = {
        let auth = format!("Bearer {}", forged[0].1);
        raw_http(
            &a.serve.url,
            "POST",
            PATH,
            &[("authorization", &auth), JSON],
            body.as_bytes(),
        )
    };
    assert!(
        text.contains("signature"),
        "the tag forgery is refused by the chain: {status} {text}"
    );
    assert_eq!(
        a.p.mock.requests().len(),
        3,
        "a forged key reached the upstream"
    );
    // The key itself is still good: it was not dropped or replaced by the forgeries.
    assert_eq!(a.post(PATH, &body).0, 200);

    // Past its expiry the key is refused, though the proxy verified it a moment ago.
    std::thread::sleep(std::time::Duration::from_secs(4).saturating_sub(started.elapsed()));
    let (status, text) = a.post(PATH, &body);
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("expired"), "{text}");
    assert_eq!(a.p.mock.requests().len(), 4);
}

#[test]
fn a_key_revoked_after_the_proxy_verified_it_is_refused_at_its_next_request() {
    const PATH: &str = "/openai/v1/chat/completions";
    let a = Attack::new("", &["--name", "agent", "--scope", "openai", "--ttl", "1h"]);
    let body = chat("gpt-4o-mini");
    for _ in 0..3 {
        assert_eq!(a.post(PATH, &body).0, 200);
    }
    let (code, _, stderr) = crate::support::output(a.p.env.till().args(["key", "revoke", "agent"]));
    assert_eq!(code, 0, "{stderr}");
    let (status, text) = a.post(PATH, &body);
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("revoked"), "{text}");
    assert_eq!(a.p.mock.requests().len(), 3);
}

/// A revocation lands while eight clients keep sending through two proxies. Once `till key
/// revoke` has returned, every request sent is refused, at both proxies; what reaches the
/// upstream after that moment is at most what was already past the check (one request per
/// client).
#[test]
fn a_revocation_under_load_stops_both_proxies_at_once() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    const PATH: &str = "/openai/v1/chat/completions";
    const CLIENTS: usize = 8;
    let p = ProxyEnv::with_options(till_mock::MockOptions::default(), "");
    let key = p.create_key(&["--name", "busy", "--scope", "openai", "--ttl", "1h"]);
    let serves = [p.serve(), p.serve()];
    p.mock.clear_requests();
    let body = chat("gpt-4o-mini");
    let revoked = AtomicBool::new(false);
    let (before, after) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let upstream_at_revoke = std::thread::scope(|s| {
        for t in 0..CLIENTS {
            let (serves, key, body, revoked) = (&serves, &key, &body, &revoked);
            let (before, after) = (&before, &after);
            s.spawn(move || {
                let auth = format!("Bearer {key}");
                let mut refused_in_a_row = 0;
                while refused_in_a_row < 20 {
                    // Read before sending: a request sent once this says true left after the
                    // revocation had returned.
                    let late = revoked.load(Ordering::SeqCst);
                    let (status, text) = raw_http(
                        &serves[t % 2].url,
                        "POST",
                        PATH,
                        &[JSON, ("authorization", &auth)],
                        body.as_bytes(),
                    );
                    if late {
                        assert_eq!(status, 401, "sent after the revocation: {text}");
                        assert!(text.contains("revoked"), "{text}");
                        after.fetch_add(1, Ordering::Relaxed);
                        refused_in_a_row += 1;
                    } else {
                        assert!(matches!(status, 200 | 401), "{status} {text}");
                        before.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        // Let the load run, then revoke beside it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while before.load(Ordering::Relaxed) < 200 {
            assert!(
                std::time::Instant::now() < deadline,
                "the load never got going"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let (code, _, stderr) =
            crate::support::output(p.env.till().args(["key", "revoke", "busy"]));
        assert_eq!(code, 0, "{stderr}");
        let upstream = p.mock.requests().len();
        revoked.store(true, Ordering::SeqCst);
        upstream
    });
    let upstream = p.mock.requests().len();
    eprintln!(
        "{} requests before the revocation returned, {} after; upstream saw {upstream_at_revoke} then {upstream}",
        before.into_inner(),
        after.into_inner(),
    );
    assert!(
        upstream <= upstream_at_revoke + CLIENTS,
        "{} requests reached the upstream after the revocation had returned",
        upstream - upstream_at_revoke
    );
}

#[test]
fn a_client_that_stops_reading_its_answer_is_given_up_on() {
    use std::io::Write as _;
    use std::time::{Duration, Instant};
    // One connection at a time: a client that holds its slot by not reading would shut every
    // other one out.
    let a = Attack::new(
        "[proxy]\nbody_timeout = \"1s\"\nmax_connections = 1\n",
        &["--scope", "openai", "--budget", "1usd"],
    );
    let addr = a.serve.url.strip_prefix("http://").unwrap();
    let body = r#"{"model":"gpt-endless","stream":true,"max_tokens":100,"messages":[]}"#;
    let mut stalled = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stalled,
        "POST /openai/v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        a.key,
        body.len()
    )
    .unwrap();
    // It reads nothing of its endless answer. Once the socket's buffers are full and a second
    // has passed without the client taking anything, the proxy ends the request: it is
    // recorded, and charged its reservation.
    let deadline = Instant::now() + Duration::from_secs(30);
    let row = loop {
        let rows = a.p.log_json();
        if let Some(row) = rows.into_iter().find(|r| r["model"] == "gpt-endless") {
            break row;
        }
        assert!(
            Instant::now() < deadline,
            "the request of a client that reads nothing was never ended"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(row["outcome"], "abandoned", "{row}");
    assert!(row["cost_usd"].as_f64().unwrap() > 0.0, "{row}");
    // Its slot is free again.
    let (status, text) = a.post("/openai/v1/chat/completions", &chat("gpt-4o-mini"));
    assert_eq!(status, 200, "{text}");
    drop(stalled);
}

#[test]
fn a_key_that_may_not_ask_holds_no_room_for_bodies() {
    use std::io::{Read as _, Write as _};
    let a = Attack::new(
        "[proxy]\nmax_body_bytes = 1000\nbody_timeout = \"30s\"\n",
        &["--scope", "openai"],
    );
    let addr = a.serve.url.strip_prefix("http://").unwrap().to_string();
    // Keys the proxy refuses whatever their body says: one for another provider, one without
    // the endpoint class. Their bodies' room was taken before the key was checked, so eight
    // of them announcing the largest body and sending none turned every other client away.
    let other = a.p.create_key(&["--scope", "anthropic"]);
    let inference = a.p.create_key(&["--scope", "openai"]);
    for (key, path, refusal) in [
        (&other, "/openai/v1/chat/completions", "403 Forbidden"),
        (&inference, "/openai/v1/files", "403 Forbidden"),
    ] {
        let held: Vec<std::net::TcpStream> = (0..8)
            .map(|_| {
                let mut s = std::net::TcpStream::connect(&addr).unwrap();
                s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                    .unwrap();
                write!(
                    s,
                    "POST {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\n\
                     content-type: application/json\r\ncontent-length: 1000\r\n\r\n"
                )
                .unwrap();
                s
            })
            .collect();
        // Each is answered without a byte of its body sent.
        for mut s in held {
            let mut head = [0u8; 64];
            let n = s
                .read(&mut head)
                .unwrap_or_else(|e| panic!("no answer while the body was not sent: {e}"));
            let head = String::from_utf8_lossy(&head[..n]);
            assert!(head.starts_with(&format!("HTTP/1.1 {refusal}")), "{head}");
        }
        let (status, text) = a.post("/openai/v1/chat/completions", &chat("gpt-4o-mini"));
        assert_eq!(status, 200, "{text}");
    }
    assert_eq!(
        a.p.mock.requests().len(),
        2,
        "only the good key's requests went"
    );
}

#[test]
fn bodies_held_at_once_are_bounded_however_many_clients_send() {
    use std::io::{Read as _, Write as _};
    // Bodies of at most 1,000 bytes: the proxy reads at most 8,000 bytes of bodies at once,
    // at most half of them for one key's lineage.
    let a = Attack::new(
        "[proxy]\nmax_body_bytes = 1000\nbody_timeout = \"30s\"\n",
        &["--scope", "openai"],
    );
    let second = a.p.create_key(&["--scope", "openai"]);
    let addr = a.serve.url.strip_prefix("http://").unwrap().to_string();
    let head = |key: &str, len: usize| {
        format!(
            "POST /openai/v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\n\
             content-type: application/json\r\ncontent-length: {len}\r\n\r\n"
        )
    };
    // Eight clients, four with each of two keys, each announce the largest body and send all
    // of it but the last byte.
    let mut stalled: Vec<std::net::TcpStream> = (0..8)
        .map(|i| {
            let key = if i % 2 == 0 { &a.key } else { &second };
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.write_all(head(key, 1000).as_bytes()).unwrap();
            s.write_all(&[b' '; 999]).unwrap();
            s
        })
        .collect();
    // The proxy has read what they sent once a ninth, of a third key, is turned away; it is,
    // while they hold.
    let third = format!("Bearer {}", a.p.create_key(&["--scope", "openai"]));
    let post = |body: &str| {
        raw_http(
            &a.serve.url,
            "POST",
            "/openai/v1/chat/completions",
            &[("authorization", &third), JSON],
            body.as_bytes(),
        )
    };
    let body = chat("gpt-4o-mini");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (status, text) = loop {
        let (status, text) = post(&body);
        if status != 200 || std::time::Instant::now() > deadline {
            break (status, text);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("max_body_bytes"), "{text}");
    assert!(text.contains("8000 bytes in all"), "{text}");
    let through = a.p.mock.requests().len();

    // One of them finishes its body (an invalid one, refused) and goes: room for the next.
    let mut done = stalled.pop().unwrap();
    done.write_all(b" ").unwrap();
    let mut answer = String::new();
    let _ = done.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let (status, text) = post(&body);
    assert_eq!(status, 200, "{text}");
    assert_eq!(a.p.mock.requests().len(), through + 1);
    drop(stalled);
}

/// One key, with the keys narrowed from it, may hold only half of the bodies' shared room:
/// eight clients of one key that each sent all but the last byte of the largest body held all
/// of it until their `body_timeout`, and every other key's requests were refused (503)
/// meanwhile. The key's bodies past its half are refused instead, and another key's requests
/// go through while the first key's bodies hold what they may.
#[test]
fn one_key_and_its_narrowed_keys_cannot_take_the_bodies_room_from_another_key() {
    use std::io::{Read as _, Write as _};
    // Bodies of at most 1,000 bytes: 8,000 bytes of them at once, 4,000 for one key's lineage.
    let a = Attack::new(
        "[proxy]\nmax_body_bytes = 1000\nbody_timeout = \"30s\"\n",
        &["--scope", "openai"],
    );
    let addr = a.serve.url.strip_prefix("http://").unwrap().to_string();
    let (code, narrowed, stderr) = crate::support::output(a.p.env.till().args([
        "key",
        "attenuate",
        &a.key,
        "--scope",
        "openai/gpt-4o-mini",
    ]));
    assert_eq!(code, 0, "{stderr}");
    let narrowed = narrowed.trim().to_string();
    let other = a.p.create_key(&["--scope", "openai"]);
    let other_auth = format!("Bearer {other}");
    let from_other = || {
        raw_http(
            &a.serve.url,
            "POST",
            "/openai/v1/chat/completions",
            &[("authorization", &other_auth), JSON],
            chat("gpt-4o").as_bytes(),
        )
    };
    // The key and its narrowed key each open four connections, announce the largest body and
    // send all of it but the last byte (head and body in one write).
    let mut stalled: Vec<std::net::TcpStream> = (0..8)
        .map(|i| {
            let key = if i % 2 == 0 { &a.key } else { &narrowed };
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            let mut sent = format!(
                "POST /openai/v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\n\
                 content-type: application/json\r\nconnection: close\r\ncontent-length: 1000\r\n\r\n"
            )
            .into_bytes();
            sent.extend_from_slice(&[b' '; 999]);
            s.write_all(&sent).unwrap();
            s
        })
        .collect();
    // Let the proxy read them.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (status, text) = from_other();
    assert_eq!(status, 200, "another key is not starved: {text}");

    // Four of them are read and held (3,996 bytes); the other four are answered at once, 503
    // with `Retry-After`, as a body past the shared room is.
    let mut refused = 0;
    let mut held = Vec::new();
    for mut s in stalled.drain(..) {
        s.set_read_timeout(Some(std::time::Duration::from_millis(300)))
            .unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
        if answer.is_empty() {
            held.push(s);
            continue;
        }
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("retry-after: 1"),
            "{answer}"
        );
        assert!(answer.contains("till_busy"), "{answer}");
        assert!(
            answer.contains("narrowed from it") && answer.contains("max_body_bytes"),
            "{answer}"
        );
        refused += 1;
    }
    assert_eq!(
        (refused, held.len()),
        (4, 4),
        "half the room for one lineage"
    );
    // While those four hold, the key's next body is refused too, and another key's goes.
    let (status, text) = a.post("/openai/v1/chat/completions", &chat("gpt-4o-mini"));
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("narrowed from it"), "{text}");
    let (status, text) = from_other();
    assert_eq!(status, 200, "{text}");
    let models: Vec<Value> = a
        .upstream_bodies()
        .iter()
        .map(|b| b["model"].clone())
        .collect();
    assert_eq!(
        models,
        ["gpt-4o", "gpt-4o"],
        "the other key's requests went upstream, none of the first key's"
    );

    // Three of the held bodies are finished (invalid ones, refused): they were read, and their
    // room is the key's again (a body's parsed tree counts with it, and a chat request's takes
    // some 2 KB, so one or two finished bodies of a thousand bytes would not make room).
    for _ in 0..3 {
        let mut done = held.pop().unwrap();
        done.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        done.write_all(b" ").unwrap();
        let mut answer = String::new();
        let _ = done.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    }
    let (status, text) = a.post("/openai/v1/chat/completions", &chat("gpt-4o-mini"));
    assert_eq!(status, 200, "{text}");
    drop(held);
}

/// A client that announces a large body and sends a byte of it holds a byte of the bodies'
/// shared bound, not the length it announced: eight of them, with any key that may ask (one
/// whose requests are spent, which only the body's admission refuses), turned every other
/// key's bodies away with 503 until their `body_timeout`, and could start again at once.
#[test]
fn bodies_announced_and_not_sent_hold_no_room_for_another_key() {
    use std::io::Write as _;
    let a = Attack::new(
        "[proxy]\nmax_body_bytes = 1000\nbody_timeout = \"30s\"\n",
        &["--scope", "openai"],
    );
    let addr = a.serve.url.strip_prefix("http://").unwrap().to_string();
    let spent =
        a.p.create_key(&["--scope", "openai", "--max-requests", "1"]);
    let auth = format!("Bearer {spent}");
    let (status, text) = raw_http(
        &a.serve.url,
        "POST",
        "/openai/v1/chat/completions",
        &[("authorization", &auth), JSON],
        chat("gpt-4o").as_bytes(),
    );
    assert_eq!(status, 200, "{text}");
    let held: Vec<std::net::TcpStream> = (0..8)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            write!(
                s,
                "POST /openai/v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\nauthorization: {auth}\r\n\
                 content-type: application/json\r\ncontent-length: 1000\r\n\r\n{{"
            )
            .unwrap();
            s
        })
        .collect();
    // While they hold, another key's small requests go through, every one.
    for _ in 0..5 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let (status, text) = a.post("/openai/v1/chat/completions", &chat("gpt-4o-mini"));
        assert_eq!(status, 200, "{text}");
    }
    let models: Vec<Value> = a
        .upstream_bodies()
        .iter()
        .map(|b| b["model"].clone())
        .collect();
    assert_eq!(
        models,
        [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4o-mini",
            "gpt-4o-mini",
            "gpt-4o-mini",
            "gpt-4o-mini"
        ],
        "the spent key's one request, then each of the other key's"
    );
    drop(held);
}

/// A request whose head came while its key stood and whose body comes after a revocation, the
/// key's expiry or its mint key's retirement is refused: the key is checked again once the
/// body has come, as a request sent at that moment would be (an agent could otherwise keep
/// requests staged and finish them after you revoke it).
#[test]
fn a_request_staged_before_a_revocation_or_expiry_is_refused_when_its_body_comes() {
    use std::io::{Read as _, Write as _};
    let a = Attack::new(
        "[proxy]\nbody_timeout = \"30s\"\n",
        &["--scope", "openai", "--name", "staged"],
    );
    let addr = a.serve.url.strip_prefix("http://").unwrap().to_string();
    let body = chat("gpt-4o-mini");
    let (first, last) = body.split_at(body.len() - 1);
    let stage = |key: &str| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        write!(
            s,
            "POST /openai/v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\n\
             content-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{first}",
            body.len()
        )
        .unwrap();
        s
    };
    let finish = |mut s: std::net::TcpStream| {
        s.write_all(last.as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer
    };
    // Revoked while its body was on the way, all within one second (staged as a second
    // begins): a body that comes more than a few milliseconds after its head is looked at
    // again even then.
    while std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_millis()
        > 20
    {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let staged = stage(&a.key);
    std::thread::sleep(std::time::Duration::from_millis(30));
    let (code, _, stderr) =
        crate::support::output(a.p.env.till().args(["key", "revoke", "staged"]));
    assert_eq!(code, 0, "{stderr}");
    let answer = finish(staged);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("revoked"), "{answer}");
    // Expired while its body was on the way.
    let short = a.p.create_key(&["--scope", "openai", "--ttl", "2s"]);
    let staged = stage(&short);
    std::thread::sleep(std::time::Duration::from_millis(2600));
    let answer = finish(staged);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("expired"), "{answer}");
    a.assert_upstream_saw_nothing("requests staged before a revocation or expiry");
}

/// A tool that runs a model of its own has the provider run and bill that model beside the
/// request's: Anthropic's advisor, the Responses API's image generation, a router's tool that
/// names a model in its `parameters`. The scope holds for the tool's model as for the
/// request's, for a key without a budget too.
#[test]
fn a_tool_that_runs_a_model_is_held_to_the_scope() {
    let a = Attack::new(
        "",
        &[
            "--scope",
            "anthropic/claude-haiku-*",
            "--scope",
            "openai/gpt-4o-mini",
        ],
    );
    let advisor = |model: &str| {
        format!(
            "{{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"tools\":[{{\"type\":\"advisor_20260301\",\"name\":\"advisor\",\"model\":\"{model}\",\"max_uses\":20}}],\"messages\":[{{\"role\":\"user\",\"content\":\"x\"}}]}}"
        )
    };
    let responses =
        |tool: &str| format!("{{\"model\":\"gpt-4o-mini\",\"input\":\"draw\",\"tools\":[{tool}]}}");
    let (status, text) = a.post("/anthropic/v1/messages", &advisor("claude-opus-4-6"));
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("claude-opus-4-6"), "{text}");
    for tool in [
        "{\"type\":\"image_generation\",\"model\":\"gpt-image-1\",\"quality\":\"high\"}",
        // The provider's own choice of model: not one the key names.
        "{\"type\":\"image_generation\"}",
        "{\"type\":\"router:advisor\",\"parameters\":{\"model\":\"openai/gpt-5\"}}",
    ] {
        let (status, text) = a.post("/openai/v1/responses", &responses(tool));
        assert_eq!(status, 403, "{tool} → {text}");
    }
    // A model in another letter case, or not a name.
    for tool in [
        "{\"type\":\"image_generation\",\"Model\":\"gpt-image-1\"}",
        "{\"type\":\"image_generation\",\"model\":[\"gpt-image-1\"]}",
    ] {
        let (status, text) = a.post("/openai/v1/responses", &responses(tool));
        assert_eq!(status, 400, "{tool} → {text}");
    }
    a.assert_upstream_saw_nothing("a tool's model outside the scope");
    // A tool's model within the scope goes, and so does a function with a `model` parameter.
    let (status, text) = a.post("/anthropic/v1/messages", &advisor("claude-haiku-4-5"));
    assert_eq!(status, 200, "{text}");
    let function = "{\"type\":\"function\",\"name\":\"pick\",\"parameters\":{\"type\":\"object\",\"model\":\"x\",\"properties\":{\"model\":{\"type\":\"string\"}}}}";
    let (status, text) = a.post("/openai/v1/responses", &responses(function));
    assert_eq!(status, 200, "{text}");
    assert_eq!(a.upstream_bodies().len(), 2);
    // A key for every OpenAI model may leave the image model to the provider.
    let every = Attack::new("", &["--scope", "openai"]);
    let (status, text) = every.post(
        "/openai/v1/responses",
        &responses("{\"type\":\"image_generation\"}"),
    );
    assert_eq!(status, 200, "{text}");
}

/// OpenRouter's server tools run models of their own: the advisor's profiles name theirs
/// (`advisors[].model`) or let the calling model pick any on each call, the fusion tool runs a
/// panel (`analysis_models`) or a default one, image generation a default model; its `plugins`
/// (fusion) and presets (a field, or `@preset/…` in the model's name) choose models too. A key
/// for some models only went past all of them: each model they name is held to the scope, and
/// one they leave to the provider is for a key for every model.
#[test]
fn a_routers_server_tools_plugins_and_presets_run_only_models_the_key_allows() {
    let a = Attack::new("", &["--scope", "openai/gpt-4o-mini*"]);
    let chat = |extra: &str| {
        format!(
            "{{\"model\":\"gpt-4o-mini\",{extra}\"messages\":[{{\"role\":\"user\",\"content\":\"x\"}}]}}"
        )
    };
    let tool = |t: &str| chat(&format!("\"tools\":[{t}],"));
    for body in [
        tool("{\"type\":\"openrouter:advisor\",\"parameters\":{\"advisors\":[{\"name\":\"big\",\"model\":\"claude-opus-4\"}]}}"),
        tool("{\"type\":\"openrouter:advisor\"}"),
        tool("{\"type\":\"openrouter:fusion\",\"parameters\":{\"model\":\"gpt-4o-mini\",\"analysis_models\":[\"gpt-4o-mini\",\"o1-pro\"]}}"),
        tool("{\"type\":\"openrouter:fusion\"}"),
        tool("{\"Type\":\"openrouter:fusion\"}"),
        tool("{\"type\":\"OpenRouter:Image_Generation\"}"),
        tool("{\"type\":\"openrouter:subagent\",\"parameters\":{\"model\":\"gpt-4o-mini\",\"fallback\":{\"judge_model\":\"o1-pro\"}}}"),
        tool("{\"type\":\"openrouter:fusion\",\"model\":\"gpt-4o-mini\",\"analysis_models\":[\"o1-pro\"]}"),
        // Only the judge named: the default panel runs.
        tool("{\"type\":\"openrouter:fusion\",\"parameters\":{\"model\":\"gpt-4o-mini\"}}"),
        // A `model` beside `parameters`, which OpenRouter does not read: the advisor still picks.
        tool("{\"type\":\"openrouter:advisor\",\"model\":\"gpt-4o-mini\"}"),
        tool("{\"type\":\"openrouter:advisor\",\"parameters\":{\"model\":\"gpt-4o-mini\",\"judge_model\":[\"o1-pro\"]}}"),
        tool("{\"type\":\"openrouter:fusion\",\"parameters\":{\"model\":\"gpt-4o-mini\",\"analysisModels\":[\"o1-pro\"]}}"),
        tool("{\"type\":\"openrouter:fusion\",\"parameters\":{\"model\":\"gpt-4o-mini\",\"analysis_models\":\"o1-pro\"}}"),
        tool("{\"type\":\"openrouter:advisor\",\"parameters\":{\"model\":\"gpt-4o-mini\",\"advisors\":[{\"name\":\"a\",\"model_id\":\"o1-pro\"}]}}"),
        // A model given by something that is not its name: not compared, so the provider's.
        tool("{\"type\":\"openrouter:advisor\",\"parameters\":{\"model\":\"gpt-4o-mini\",\"advisors\":[{\"name\":\"a\",\"model\":7}]}}"),
        tool("{\"type\":\"openrouter:advisor\",\"parameters\":{\"model\":\"gpt-4o-mini\",\"advisors\":[{\"name\":\"a\",\"model\":{\"id\":\"o1-pro\"}}]}}"),
        tool("{\"type\":\"openrouter:fusion\",\"parameters\":{\"model\":\"gpt-4o-mini\",\"analysis_models\":[\"gpt-4o-mini\",true]}}"),
        // A panel entry as an object that names no model, and a profile whose model is null.
        tool("{\"type\":\"openrouter:fusion\",\"parameters\":{\"model\":\"gpt-4o-mini\",\"analysis_models\":[{\"id\":\"o1-pro\"}]}}"),
        tool("{\"type\":\"openrouter:advisor\",\"parameters\":{\"model\":\"gpt-4o-mini\",\"advisors\":[{\"name\":\"a\",\"model\":null}]}}"),
        chat("\"plugins\":[{\"id\":\"fusion\"}],"),
        chat("\"plugins\":[{\"id\":\"web\"},{\"id\":\"file-parser\",\"pdf\":{\"engine\":\"mistral-ocr\"}}],"),
        chat("\"plugins\":[{\"id\":\"something-new\"}],"),
        chat("\"preset\":\"research\","),
        "{\"model\":\"gpt-4o-mini@preset/research\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}".to_string(),
        "{\"model\":\"gpt-4o-mini@PRESET/research\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}".to_string(),
    ] {
        let (status, text) = a.post("/openai/v1/chat/completions", &body);
        assert_eq!(status, 403, "{body} → {text}");
    }
    a.assert_upstream_saw_nothing("a router's tools, plugins and presets");
    // Tools and plugins that run no model, or only models in the scope, and empty settings go.
    for body in [
        tool("{\"type\":\"openrouter:web_search\"}"),
        chat(
            "\"plugins\":[{\"id\":\"web\"},{\"id\":\"response-healing\"},{\"id\":\"file-parser\",\"pdf\":{\"engine\":\"pdf-text\"}}],",
        ),
        chat("\"plugins\":[],\"lora\":[],\"tags\":[],"),
        chat("\"plugins\":{},"),
        chat("\"plugins\":[{}],"),
        tool(
            "{\"type\":\"openrouter:advisor\",\"parameters\":{\"model\":\"gpt-4o-mini\",\"advisors\":[{\"name\":\"a\",\"model\":\"gpt-4o-mini-2024-07-18\"}]}}",
        ),
        tool(
            "{\"type\":\"openrouter:fusion\",\"parameters\":{\"model\":\"gpt-4o-mini\",\"analysis_models\":[\"gpt-4o-mini\"]}}",
        ),
        // A panel entry as an object that names its model.
        tool(
            "{\"type\":\"openrouter:fusion\",\"parameters\":{\"model\":\"gpt-4o-mini\",\"analysis_models\":[{\"model\":\"gpt-4o-mini\",\"weight\":1}]}}",
        ),
    ] {
        let (status, text) = a.post("/openai/v1/chat/completions", &body);
        assert_eq!(status, 200, "{body} → {text}");
    }
    assert_eq!(a.upstream_bodies().len(), 8);
    // A key for every model without a budget may leave the choice to the router.
    let every = Attack::new("", &["--scope", "openai"]);
    for body in [
        tool("{\"type\":\"openrouter:fusion\"}"),
        chat("\"preset\":\"research\","),
    ] {
        let (status, text) = every.post("/openai/v1/chat/completions", &body);
        assert_eq!(status, 200, "{body} → {text}");
    }
}

/// What compatible servers and gateways read beyond OpenAI's API to run another model: Azure's
/// "On Your Data" (`data_sources`, `dataSources`: an index read into the prompt, its query
/// embedded by another deployment), LiteLLM's `litellm_metadata`/`metadata.tags` (tag routing
/// to deployments of other models), `litellm_params`, `model_list`, a LoRA adapter (SGLang's
/// `lora_path`, llama.cpp's `lora`), a Mistral `agent_id`; and LiteLLM's `stream_timeout`, which
/// has its router send the request again. All went to keys for some models, or with a budget.
#[test]
fn compatible_servers_fields_that_run_other_models_or_resend_are_held_back() {
    let a = Attack::new(
        "",
        &[
            "--scope",
            "openai/gpt-4o-mini*",
            "--scope",
            "anthropic/claude-haiku-*",
        ],
    );
    let chat = |extra: &str| {
        format!(
            "{{\"model\":\"gpt-4o-mini\",{extra},\"messages\":[{{\"role\":\"user\",\"content\":\"x\"}}]}}"
        )
    };
    for extra in [
        "\"data_sources\":[{\"type\":\"azure_search\",\"parameters\":{\"index_name\":\"hr\",\"embedding_dependency\":{\"type\":\"deployment_name\",\"deployment_name\":\"text-embedding-3-large\"}}}]",
        "\"dataSources\":[{\"type\":\"AzureCognitiveSearch\",\"parameters\":{\"indexName\":\"i\"}}]",
        "\"litellm_metadata\":{\"tags\":[\"premium\"]}",
        "\"litellm_params\":{\"model\":\"openai/o1-pro\"}",
        "\"model_list\":[{\"model_name\":\"gpt-4o-mini\",\"litellm_params\":{\"model\":\"o1-pro\"}}]",
        "\"lora_path\":\"sql-lora\"",
        "\"lora\":[{\"id\":0,\"scale\":1.0}]",
        "\"agent_id\":\"ag_123\"",
    ] {
        let (status, text) = a.post("/openai/v1/chat/completions", &chat(extra));
        assert_eq!(status, 403, "{extra} → {text}");
    }
    // A gateway's `metadata.tags` in front of a provider that is not OpenAI, in any spelling a
    // lenient gateway reads, or as a JSON string it decodes.
    for metadata in [
        "\"metadata\":{\"tags\":[\"premium\"]}",
        "\"Metadata\":{\"Tags\":[\"premium\"]}",
        "\"metadata\":{\"tags \":[\"premium\"]}",
        "\"metadata\":\"{\\\"tags\\\": [\\\"premium\\\"]}\"",
    ] {
        let (status, text) = a.post(
            "/anthropic/v1/messages",
            &format!("{{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,{metadata},\"messages\":[{{\"role\":\"user\",\"content\":\"x\"}}]}}"),
        );
        assert!(status == 403 || status == 400, "{metadata} → {text}");
    }
    a.assert_upstream_saw_nothing("fields that run other models");
    // A metadata string that only mentions tags, or names none, goes; so do the client's own
    // tools whose schemas and examples hold a `model` (Anthropic's, Gemini's).
    for body in [
        "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"metadata\":\"hashtags\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
        "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"metadata\":\"{\\\"tags\\\":[]}\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
        "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"tools\":[{\"name\":\"delegate\",\"input_schema\":{\"type\":\"object\",\"properties\":{\"model\":{\"type\":\"string\"}},\"default\":{\"model\":\"opus\"}},\"input_examples\":[{\"model\":\"opus\"}]}],\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
    ] {
        let (status, text) = a.post("/anthropic/v1/messages", body);
        assert_eq!(status, 200, "{body} → {text}");
    }
    // Anthropic's own `metadata.user_id` (Claude Code sends it) goes.
    let (status, text) = a.post(
        "/anthropic/v1/messages",
        "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"metadata\":{\"user_id\":\"u\"},\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
    );
    assert_eq!(status, 200, "{text}");
    // OpenAI's own `metadata` is labels for stored completions: it goes.
    let (status, text) = a.post(
        "/openai/v1/chat/completions",
        &chat("\"store\":true,\"metadata\":{\"tags\":\"nightly\"}"),
    );
    assert_eq!(status, 200, "{text}");
    // A gateway's stream timeout, with which its router resends: not to a key with a budget.
    let budget = Attack::new("", &["--scope", "openai", "--budget", "1usd"]);
    let (status, text) = budget.post(
        "/openai/v1/chat/completions",
        &chat("\"stream_timeout\":0.5"),
    );
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("stream_timeout"), "{text}");
    budget.assert_upstream_saw_nothing("stream_timeout");
}

/// Anthropic's tools run on its side, and may be billed beside the tokens, unless they are the
/// client's own: a key with a budget may send only those, whatever new server tool comes.
#[test]
fn an_anthropic_server_tool_of_any_name_is_refused_to_a_key_with_a_budget() {
    let a = Attack::new("", &["--scope", "anthropic/claude-*", "--budget", "1usd"]);
    let body = |tool: &str| {
        format!(
            "{{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"tools\":[{tool}],\"messages\":[{{\"role\":\"user\",\"content\":\"x\"}}]}}"
        )
    };
    for tool in [
        "{\"type\":\"advisor_20260301\",\"name\":\"advisor\",\"model\":\"claude-haiku-4-5\"}",
        "{\"type\":\"tool_search_tool_regex_20251119\",\"name\":\"search\"}",
        "{\"type\":\"web_search_20250305\",\"name\":\"web_search\"}",
    ] {
        let (status, text) = a.post("/anthropic/v1/messages", &body(tool));
        assert_eq!(status, 403, "{tool} → {text}");
    }
    a.assert_upstream_saw_nothing("server tools");
    for tool in [
        "{\"name\":\"read\",\"input_schema\":{\"type\":\"object\"}}",
        "{\"type\":\"bash_20250124\",\"name\":\"bash\"}",
        "{\"type\":\"text_editor_20250728\",\"name\":\"str_replace_based_edit_tool\"}",
    ] {
        let (status, text) = a.post("/anthropic/v1/messages", &body(tool));
        assert_eq!(status, 200, "{tool} → {text}");
    }
}

/// Stored objects that bill by the day or the hour, not in tokens: a vector store (its storage
/// and each search) and a longer life for a Gemini context cache. A key with a budget may read
/// and delete them, not add to them.
#[test]
fn stored_objects_that_bill_by_time_are_refused_to_a_key_with_a_budget() {
    let a = Attack::new(
        "",
        &[
            "--scope",
            "openai/gpt-4o-mini",
            "--scope",
            "gemini/gemini-2.5-flash",
            "--endpoints",
            "inference,files",
            "--budget",
            "0.1usd",
        ],
    );
    for (method, path, body) in [
        ("POST", "/openai/v1/vector_stores", "{\"name\":\"v\"}"),
        (
            "POST",
            "/openai/v1/vector_stores/vs_1/files",
            "{\"file_id\":\"f\"}",
        ),
        (
            "POST",
            "/openai/v1/vector_stores/vs_1/search",
            "{\"query\":\"q\"}",
        ),
        (
            "PATCH",
            "/gemini/v1beta/cachedContents/abc?updateMask=ttl",
            "{\"ttl\":\"31536000s\"}",
        ),
    ] {
        let (status, text) = a.send(method, path, &[JSON], body.as_bytes());
        assert_eq!(status, 403, "{method} {path} → {text}");
        assert!(text.contains("cannot bound"), "{text}");
    }
    a.assert_upstream_saw_nothing("billed stored objects");
    for (method, path) in [
        ("GET", "/openai/v1/vector_stores/vs_1"),
        ("DELETE", "/gemini/v1beta/cachedContents/abc"),
    ] {
        a.send(method, path, &[], b"");
    }
    let seen: Vec<_> =
        a.p.mock
            .requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
    assert_eq!(
        seen,
        [
            "GET /v1/vector_stores/vs_1",
            "DELETE /v1beta/cachedContents/abc"
        ]
    );
}

/// A router runs a model other than the request's when the body names fallbacks (OpenRouter's
/// `models`, LiteLLM's `fallbacks` and their kin, even a flag that falls back untried) or
/// merges another body over it (`extra_body` with a `model`): the scope and the price would be
/// the checked model's, the answer another's. Only a key for every model of the provider that
/// counts no tokens may send them.
#[test]
fn fallback_models_and_merged_bodies_are_refused_to_a_key_for_some_models() {
    let bodies = [
        "{\"model\":\"gpt-4o-mini\",\"max_tokens\":5,\"messages\":[],\"fallbacks\":[\"o1-pro\"],\"mock_testing_fallbacks\":true}",
        "{\"model\":\"gpt-4o-mini\",\"max_tokens\":5,\"messages\":[],\"mock_testing_fallbacks\":true}",
        "{\"model\":\"gpt-4o-mini\",\"max_tokens\":5,\"messages\":[],\"context_window_fallback_dict\":{\"gpt-4o-mini\":\"o1-pro\"}}",
        "{\"model\":\"gpt-4o-mini\",\"max_tokens\":5,\"messages\":[],\"content_policy_fallbacks\":[{\"gpt-4o-mini\":[\"o1-pro\"]}]}",
        "{\"model\":\"gpt-4o-mini\",\"max_tokens\":5,\"messages\":[],\"extra_body\":{\"model\":\"o1-pro\"}}",
        "{\"model\":\"gpt-4o-mini\",\"max_tokens\":5,\"messages\":[],\"models\":[\"o1-pro\"]}",
    ];
    for args in [
        &["--scope", "openai/gpt-4o-mini"][..],
        &["--scope", "openai", "--budget", "1usd"][..],
    ] {
        let a = Attack::new("", args);
        for body in bodies {
            let (status, text) = a.post("/openai/v1/chat/completions", body);
            assert_eq!(status, 403, "{args:?} {body} → {text}");
        }
        // In another letter case, to every key.
        let (status, text) = a.post(
            "/openai/v1/chat/completions",
            "{\"model\":\"gpt-4o-mini\",\"max_tokens\":5,\"messages\":[],\"Fallbacks\":[\"o1-pro\"]}",
        );
        assert_eq!(status, 400, "{args:?} → {text}");
        a.assert_upstream_saw_nothing("fallback models");
    }
    // A key for every model that counts no tokens may leave the choice to the router.
    let every = Attack::new("", &["--scope", "openai"]);
    let (status, text) = every.post("/openai/v1/chat/completions", bodies[0]);
    assert_eq!(status, 200, "{text}");
    assert_eq!(every.upstream_bodies()[0]["fallbacks"][0], "o1-pro");
}

/// A page in the user's browser that learnt a child key (from a prompt injection, say) could
/// spend it: a cross-site POST with a plain-text body needs no preflight. A request with an
/// `Origin` that is not a loopback page is refused before anything else.
#[test]
fn a_web_page_of_another_site_cannot_use_the_proxy() {
    let a = Attack::new("", &["--scope", "openai/gpt-4o-mini"]);
    let body = chat("gpt-4o-mini");
    for origin in [
        "https://evil.example",
        "null",
        "http://127.0.0.1.evil.example",
        "http://localhost@evil.example",
    ] {
        let (status, text) = a.send(
            "POST",
            "/openai/v1/chat/completions",
            &[("origin", origin), ("content-type", "text/plain")],
            body.as_bytes(),
        );
        assert_eq!(status, 403, "{origin} → {text}");
    }
    let (status, text) = a.send(
        "POST",
        "/openai/v1/chat/completions",
        &[
            ("origin", "http://localhost:3000"),
            ("origin", "https://evil.example"),
            JSON,
        ],
        body.as_bytes(),
    );
    assert_eq!(status, 403, "two origins → {text}");
    a.assert_upstream_saw_nothing("a page of another site");
    // A page of this machine, and every client that sends no Origin, go on.
    for extra in [
        &[("origin", "http://localhost:3000"), JSON][..],
        &[JSON][..],
    ] {
        let (status, text) = a.send(
            "POST",
            "/openai/v1/chat/completions",
            extra,
            body.as_bytes(),
        );
        assert_eq!(status, 200, "{extra:?} → {text}");
    }
}

/// Servers that read what follows a `;` as a segment's parameters (Tomcat, Jetty, gateways
/// built on them) take `..;` for `..`: behind one, a path till forwards under one prefix
/// climbs to another, for a key that may reach every endpoint. Such segments are refused.
#[test]
fn a_segment_that_is_a_dot_segment_before_its_parameters_is_refused() {
    let a = Attack::new("", &["--scope", "openai", "--endpoints", "all"]);
    for path in [
        "/openai/v1/..;/other/v1/chat/completions",
        "/openai/v1/.;x/chat/completions",
        "/openai/v1/%2E%2E;x/files",
        "/openai/v1/;x/chat/completions",
    ] {
        let (status, text) = a.post(path, &chat("gpt-4o-mini"));
        assert_eq!(status, 400, "{path} → {text}");
    }
    a.assert_upstream_saw_nothing("segments with parameters");
}

/// LiteLLM's proxy runs each model of a comma-separated `model`, each to the ceiling, where
/// till checked one name against a glob and reserved for one answer. A model name with a `,`,
/// whitespace or a control character is refused, in the body and in a tool.
#[test]
fn a_model_name_that_lists_models_is_refused() {
    let a = Attack::new("", &["--scope", "openai/gpt-4o-mini*", "--budget", "1usd"]);
    for model in [
        "gpt-4o-mini,o1-pro",
        "gpt-4o-mini, o1-pro",
        "gpt-4o-mini o1-pro",
        "gpt-4o-mini\\to1-pro",
    ] {
        let body = format!(
            "{{\"model\":\"{model}\",\"max_tokens\":5,\"messages\":[{{\"role\":\"user\",\"content\":\"x\"}}]}}"
        );
        let (status, text) = a.post("/openai/v1/chat/completions", &body);
        assert_eq!(status, 400, "{model} → {text}");
    }
    let (status, text) = a.post(
        "/openai/v1/responses",
        "{\"model\":\"gpt-4o-mini\",\"input\":\"x\",\"max_output_tokens\":5,\"response\":{\"model\":\"gpt-4o-mini,o1-pro\"}}",
    );
    assert_eq!(status, 400, "{text}");
    a.assert_upstream_saw_nothing("model lists");
}

/// Look-alikes of a nested `model` (in another letter case, with a space or an invisible
/// character, or under a `Response`) are refused as they are at the top.
#[test]
fn a_nested_model_in_another_spelling_is_refused() {
    let a = Attack::new("", &["--scope", "openai/gpt-4o-mini"]);
    for extra in [
        "\"Response\":{\"model\":\"o1-pro\"}",
        "\"response\":{\"model \":\"o1-pro\"}",
        "\"tools\":[{\"type\":\"router:advisor\",\"parameters\":{\"model\\u200b\":\"o1-pro\"}}]",
        "\"tools\":[{\"type\":\"advisor\",\"model\\t\":\"o1-pro\"}]",
    ] {
        let body = format!("{{\"model\":\"gpt-4o-mini\",\"input\":\"x\",{extra}}}");
        let (status, text) = a.post("/openai/v1/responses", &body);
        assert_eq!(status, 400, "{extra} → {text}");
    }
    a.assert_upstream_saw_nothing("nested look-alikes");
}

/// Gateways that route by request headers (Portkey's `x-portkey-config` with its
/// `override_params.model` and fallback targets, LiteLLM's tags) do not get them from the
/// agent: they stay behind, as the routing headers do.
#[test]
fn gateway_routing_headers_stay_behind() {
    let a = Attack::new("", &["--scope", "openai/gpt-4o-mini"]);
    let (status, text) = a.send(
        "POST",
        "/openai/v1/chat/completions",
        &[
            JSON,
            (
                "x-portkey-config",
                "{\"override_params\":{\"model\":\"o1-pro\"}}",
            ),
            ("x-portkey-provider", "openai"),
            ("x-litellm-tags", "premium"),
            // Helicone sends the request, root key and all, to the host this names.
            ("helicone-target-url", "http://127.0.0.1:9"),
            ("helicone-fallbacks", "[{\"target-url\":\"https://x\"}]"),
            ("helicone-retry-enabled", "true"),
            ("helicone-model-override", "o1-pro"),
            ("cf-aig-max-attempts", "5"),
            ("cf-aig-retry-delay", "1"),
            ("x-ai-eg-model", "o1-pro"),
            ("x-bt-endpoint-name", "dear"),
            ("x-ms-deployment", "dear"),
            ("x-engine", "dear"),
            ("x-provider-order", "dear"),
            ("cf-aig-byok-alias", "other-account"),
            ("x-bt-org-name", "other-org"),
            ("x-request-tag", "kept"),
            ("helicone-auth", "Bearer sk-helicone-kept"),
            ("helicone-property-session", "kept"),
            ("cf-aig-authorization", "Bearer kept"),
            // A CGI or WSGI server reads `_` as `-`: these would be the headers above.
            ("x_forwarded_host", "evil.example"),
            ("anthropic_beta", "context-1m-2025-08-07"),
            ("x_portkey_config", "{}"),
            // PHP reads `.` as `_`.
            ("anthropic.beta", "context-1m-2025-08-07"),
            ("x.forwarded.host", "evil.example"),
            ("x-forwarded-host~", "evil.example"),
        ],
        chat("gpt-4o-mini").as_bytes(),
    );
    assert_eq!(status, 200, "{text}");
    let seen = a.p.mock.requests();
    let names: Vec<String> = seen[0]
        .headers
        .keys()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("x-portkey-") || n.starts_with("x-litellm-")),
        "{names:?}"
    );
    for gone in [
        "helicone-target-url",
        "helicone-fallbacks",
        "helicone-retry-enabled",
        "helicone-model-override",
        "cf-aig-max-attempts",
        "cf-aig-retry-delay",
        "x-ai-eg-model",
        "x-bt-endpoint-name",
        "x-ms-deployment",
        "x-engine",
        "x-provider-order",
        "cf-aig-byok-alias",
        "x-bt-org-name",
    ] {
        assert!(!names.iter().any(|n| n == gone), "{gone}: {names:?}");
    }
    assert!(
        names
            .iter()
            .all(|n| n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')),
        "{names:?}"
    );
    for kept in [
        "x-request-tag",
        "helicone-auth",
        "helicone-property-session",
        "cf-aig-authorization",
    ] {
        assert!(names.iter().any(|n| n == kept), "{kept}: {names:?}");
    }
}

/// An assistant or a thread makes a vector store from its `tool_resources` (billed by the
/// day): writes there are refused to a key with a budget, as writes to vector stores are.
#[test]
fn assistants_and_threads_that_make_vector_stores_are_refused_to_a_key_with_a_budget() {
    let a = Attack::new(
        "",
        &[
            "--scope",
            "openai/gpt-4o-mini",
            "--endpoints",
            "inference,files",
            "--budget",
            "0.1usd",
        ],
    );
    let stores =
        "{\"tool_resources\":{\"file_search\":{\"vector_stores\":[{\"file_ids\":[\"f\"]}]}}}";
    for path in [
        "/openai/v1/assistants",
        "/openai/v1/threads",
        "/openai/v1/threads/t1/messages",
    ] {
        let (status, text) = a.post(path, stores);
        assert_eq!(status, 403, "{path} → {text}");
    }
    a.assert_upstream_saw_nothing("vector stores by another name");
}

/// A model named in the query runs on servers that read it over the body's (LiteLLM's proxy
/// takes `?model=` first); till checks the body's. A request that runs a model takes only the
/// parameters its APIs need, and no other request names a model in its query.
#[test]
fn a_model_in_the_query_does_not_reach_the_upstream() {
    let a = Attack::new(
        "",
        &[
            "--scope",
            "openai/gpt-4o-mini",
            "--scope",
            "gemini/gemini-2.5-flash",
            "--endpoints",
            "inference,files",
            "--budget",
            "1usd",
        ],
    );
    let chat = "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    let gemini = "{\"contents\":[{\"parts\":[{\"text\":\"hi\"}]}]}";
    for (path, body) in [
        ("/openai/v1/chat/completions?model=gpt-4o", chat),
        (
            "/openai/v1/chat/completions?stream=false&MODEL=gpt-4o",
            chat,
        ),
        ("/openai/v1/chat/completions?beta=true;model=gpt-4o", chat),
        ("/openai/v1/chat/completions?deployment_id=gpt-4o", chat),
        (
            "/gemini/v1beta/models/gemini-2.5-flash:generateContent?generationConfig.candidateCount=8",
            gemini,
        ),
        (
            "/gemini/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=proto",
            gemini,
        ),
        ("/openai/v1/files?model=gpt-4o", "{}"),
    ] {
        let (status, text) = a.send("POST", path, &[JSON], body.as_bytes());
        assert_eq!(status, 400, "{path} → {text}");
        assert!(text.contains("query parameter"), "{text}");
    }
    a.assert_upstream_saw_nothing("a model in the query");
    // What the clients send still goes: Gemini's `alt=sse`, Anthropic's `beta=true`.
    let (status, text) = a.send(
        "POST",
        "/gemini/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        &[JSON],
        gemini.as_bytes(),
    );
    assert_eq!(status, 200, "{text}");
    let (status, text) = a.send(
        "POST",
        "/openai/v1/chat/completions?beta=true",
        &[JSON],
        chat.as_bytes(),
    );
    assert_eq!(status, 200, "{text}");
    let seen: Vec<String> = a.p.mock.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(seen.len(), 2, "{seen:?}");
}

/// Mistral's Conversations (`POST /v1/conversations`, `…/{id}`, `…/{id}/restart`) run a model
/// and its server tools on `inputs`: inference till cannot bound, not a stored object. Adding
/// items to an OpenAI conversation stays a stored object.
#[test]
fn conversations_that_run_a_model_are_refused_to_a_key_with_a_budget() {
    // A key for every model, so that the budget is what refuses them (a key for one model is
    // refused them first: their body's `model` is not the one they run).
    let a = Attack::new(
        "",
        &[
            "--scope",
            "openai",
            "--endpoints",
            "inference,files",
            "--budget",
            "0.1usd",
        ],
    );
    let run = "{\"model\":\"gpt-4o-mini\",\"inputs\":\"hi\",\"tools\":[{\"type\":\"web_search\"}],\"completion_args\":{\"max_tokens\":100000}}";
    for path in [
        "/openai/v1/conversations",
        "/openai/v1/conversations/conv_1",
        "/openai/v1/conversations/conv_1/restart",
    ] {
        let (status, text) = a.send("POST", path, &[JSON], run.as_bytes());
        assert_eq!(status, 403, "{path} → {text}");
        assert!(text.contains("cannot bound"), "{text}");
    }
    a.assert_upstream_saw_nothing("conversations that run a model");
    a.send(
        "POST",
        "/openai/v1/conversations/conv_1/items",
        &[JSON],
        b"{\"items\":[]}",
    );
    let seen: Vec<String> = a.p.mock.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(seen, ["/v1/conversations/conv_1/items"]);
}

/// A gateway behind till (LiteLLM spreads the client's body over its deployment's settings)
/// reads fields no provider's API has: the account or host of its call, headers to add,
/// retries that bill each attempt, a moderation model or stored prompt that runs another
/// model. None reaches the upstream for a key they would get around.
#[test]
fn gateway_settings_in_the_body_do_not_reach_the_upstream() {
    let a = Attack::new("", &["--scope", "openai/gpt-4o-mini", "--budget", "1usd"]);
    for (field, value, status) in [
        ("organization", "\"org-other\"", 400),
        (
            "extra_headers",
            "{\"OpenAI-Organization\":\"org-other\"}",
            400,
        ),
        (
            "headers",
            "{\"anthropic-beta\":\"context-1m-2025-08-07\"}",
            400,
        ),
        ("api_base", "\"http://127.0.0.1:9\"", 400),
        ("user_config", "{\"model_list\":[]}", 400),
        ("num_retries", "20", 403),
        ("timeout", "1", 403),
        ("safety_model", "\"meta-llama/Llama-Guard-4-12B\"", 403),
        ("prompt_id", "\"stored-1\"", 403),
        ("tags", "[\"premium\"]", 403),
        // A look-alike spelling is refused as malformed.
        ("Num_Retries", "20", 400),
    ] {
        let body = format!(
            "{{\"model\":\"gpt-4o-mini\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}],\"{field}\":{value}}}"
        );
        let (got, text) = a.post("/openai/v1/chat/completions", &body);
        assert_eq!(got, status, "{field}: {text}");
    }
    a.assert_upstream_saw_nothing("gateway settings");
    // A key without bounds may ask a gateway for retries; the account fields stay refused.
    let free = Attack::new("", &["--scope", "openai/gpt-4o-mini"]);
    let (got, text) = free.post(
        "/openai/v1/chat/completions",
        "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"timeout\":30}",
    );
    assert_eq!(got, 200, "{text}");
    let (got, text) = free.post(
        "/openai/v1/chat/completions",
        "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"organization\":\"org-other\"}",
    );
    assert_eq!(got, 400, "{text}");
    assert_eq!(free.p.mock.requests().len(), 1);
}

/// A nested `response` (Realtime's shape, which a compatible server may read from a Responses
/// body) has a ceiling, tools and stored input of its own that till does not bound: with a
/// model in scope or none, it reaches no upstream for a key with bounds or for some models.
#[test]
fn a_nested_response_is_held_as_a_router_field() {
    let a = Attack::new(
        "",
        &[
            "--scope",
            "openai/gpt-4o-mini",
            "--budget",
            "1usd",
            "--max-output-tokens",
            "200",
        ],
    );
    for nested in [
        "{\"max_output_tokens\":100000}",
        "{\"model\":\"gpt-4o-mini\",\"tools\":[{\"type\":\"web_search\"}]}",
        "{\"previous_response_id\":\"resp_1\"}",
        "{\"modalities\":[\"audio\"]}",
    ] {
        let body = format!(
            "{{\"model\":\"gpt-4o-mini\",\"input\":\"x\",\"max_output_tokens\":5,\"response\":{nested}}}"
        );
        let (status, text) = a.post("/openai/v1/responses", &body);
        assert_eq!(status, 403, "{nested} → {text}");
        assert!(text.contains("`response`"), "{text}");
    }
    a.assert_upstream_saw_nothing("nested responses");
}

/// A key with an output cap (and no budget) that allows every model: fallback models with
/// ceilings of their own, and a tool that runs a model under its own `max_tokens`, produce
/// output the cap does not bound. And the long-context beta is read in any letter case.
#[test]
fn an_output_cap_holds_against_fallbacks_and_model_running_tools() {
    let a = Attack::new("", &["--scope", "anthropic", "--max-output-tokens", "100"]);
    for extra in [
        "\"fallbacks\":[{\"model\":\"claude-opus-4-8\",\"max_tokens\":100000}]",
        "\"tools\":[{\"type\":\"advisor_20260301\",\"name\":\"advisor\",\"model\":\"claude-opus-4-8\",\"max_tokens\":100000}]",
    ] {
        let body = format!(
            "{{\"model\":\"claude-haiku-4-5\",\"max_tokens\":100,\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}],{extra}}}"
        );
        let (status, text) = a.send(
            "POST",
            "/anthropic/v1/messages",
            &[JSON, ("anthropic-version", "2023-06-01")],
            body.as_bytes(),
        );
        assert_eq!(status, 403, "{extra} → {text}");
    }
    a.assert_upstream_saw_nothing("output beyond the cap");

    let b = Attack::new("", &["--scope", "anthropic", "--budget", "5usd"]);
    let long = "x".repeat(210_000);
    let body = format!(
        "{{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":100,\"messages\":[{{\"role\":\"user\",\"content\":\"{long}\"}}]}}"
    );
    let (status, text) = b.send(
        "POST",
        "/anthropic/v1/messages",
        &[
            JSON,
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "Context-1M-2025-08-07"),
        ],
        body.as_bytes(),
    );
    assert_eq!(status, 403, "{text}");
    b.assert_upstream_saw_nothing("the long-context beta in capitals");

    // A reasoning mode of several passes, each under the ceiling: refused to an output cap
    // and to a budget; the standard mode goes on.
    for args in [
        &["--scope", "openai", "--max-output-tokens", "100"][..],
        &["--scope", "openai", "--budget", "5usd"][..],
    ] {
        let c = Attack::new("", args);
        for reasoning in [
            "{\"mode\":\"pro\"}",
            "{\"Mode\":\"pro\",\"effort\":\"high\"}",
        ] {
            let body = format!(
                "{{\"model\":\"gpt-5.6\",\"max_output_tokens\":100,\"input\":\"hi\",\"reasoning\":{reasoning}}}"
            );
            let (status, text) = c.post("/openai/v1/responses", &body);
            assert_eq!(status, 403, "{args:?} {reasoning} → {text}");
        }
        c.assert_upstream_saw_nothing("a reasoning mode of several passes");
        let (status, text) = c.post(
            "/openai/v1/responses",
            "{\"model\":\"gpt-5.6\",\"max_output_tokens\":100,\"input\":\"hi\",\"reasoning\":{\"mode\":\"standard\"}}",
        );
        assert_eq!(status, 200, "{args:?} → {text}");
    }

    // Subagents (the Responses API's `multi_agent` beta): each agent produces its own output
    // under the ceiling, so a key with an output cap or a budget is refused them, in any
    // letter case and shape but the one that turns them off.
    for args in [
        &["--scope", "openai", "--max-output-tokens", "1000"][..],
        &["--scope", "openai", "--budget", "0.10usd"][..],
    ] {
        let c = Attack::new("", args);
        for multi in [
            "\"multi_agent\":{\"enabled\":true,\"max_concurrent_subagents\":1000}",
            "\"Multi_Agent\":{\"enabled\":true}",
            "\"multi_agent\":{}",
            "\"multi_agent\":true",
            "\"multi_agent\":{\"enabled\":false,\"max_concurrent_subagents\":8}",
        ] {
            let body = format!(
                "{{\"model\":\"gpt-5.6\",\"max_output_tokens\":1000,\"input\":\"hi\",{multi}}}"
            );
            let (status, text) = c.send(
                "POST",
                "/openai/v1/responses?beta=true",
                &[JSON, ("openai-beta", "responses_multi_agent=v1")],
                body.as_bytes(),
            );
            assert_eq!(status, 403, "{args:?} {multi} → {text}");
        }
        c.assert_upstream_saw_nothing("subagents under an output cap or a budget");
        let (status, text) = c.post(
            "/openai/v1/responses",
            "{\"model\":\"gpt-5.6\",\"max_output_tokens\":100,\"input\":\"hi\",\"multi_agent\":{\"enabled\":false}}",
        );
        assert_eq!(status, 200, "{args:?} → {text}");
    }
    // A key without either may send them.
    let d = Attack::new("", &["--scope", "openai"]);
    let (status, text) = d.post(
        "/openai/v1/responses",
        "{\"model\":\"gpt-5.6\",\"max_output_tokens\":100,\"input\":\"hi\",\"multi_agent\":{\"enabled\":true}}",
    );
    assert_eq!(status, 200, "{text}");
}

/// Gemini for a key with a budget: a Lyria model (billed by the clip or song, not in tokens),
/// a generation resumed from a stored checkpoint, and inline data of a type till does not count
/// (audio however spelled, `application/ogg`) reach no upstream; an image still does.
#[test]
fn gemini_work_till_cannot_count_is_refused_to_a_key_with_a_budget() {
    let a = Attack::new("", &["--scope", "gemini", "--budget", "1usd"]);
    let text = "{\"contents\":[{\"parts\":[{\"text\":\"hi\"}]}]";
    let inline = |t: &str| {
        format!(
            "{{\"contents\":[{{\"parts\":[{{\"text\":\"hi\"}},{{\"inlineData\":{{\"mimeType\":\"{t}\",\"data\":\"AAAA\"}}}}]}}]}}"
        )
    };
    for (model, body) in [
        ("lyria-3-clip-preview", format!("{text}}}")),
        (
            "gemini-2.5-flash",
            format!("{text},\"continuationToken\":\"ckpt-1\"}}"),
        ),
        (
            "gemini-2.5-flash",
            format!("{text},\"continuation_token\":\"ckpt-1\"}}"),
        ),
        ("gemini-2.5-flash", inline(" audio/wav")),
        ("gemini-2.5-flash", inline("Audio/Wav")),
        ("gemini-2.5-flash", inline("application/ogg")),
    ] {
        let (status, answer) = a.send(
            "POST",
            &format!("/gemini/v1beta/models/{model}:generateContent"),
            &[JSON],
            body.as_bytes(),
        );
        assert_eq!(status, 403, "{model} {body} → {answer}");
    }
    a.assert_upstream_saw_nothing("uncounted Gemini work");
    let (status, answer) = a.send(
        "POST",
        "/gemini/v1beta/models/gemini-2.5-flash:generateContent",
        &[JSON],
        inline("image/png").as_bytes(),
    );
    assert_eq!(status, 200, "{answer}");
}

/// A compatible server or gateway that routes by path alone takes a PUT or PATCH as the POST
/// there: a write by another method to a path that runs a model, starts a batch or bills a
/// store is held to what the POST is held to (refused to a key with a budget), and reading and
/// deleting stay open.
#[test]
fn a_put_or_patch_is_held_to_what_the_post_is() {
    let a = Attack::new(
        "",
        &[
            "--scope",
            "openai/gpt-4o-mini",
            "--scope",
            "gemini/gemini-2.5-flash",
            "--endpoints",
            "inference,files,batches",
            "--budget",
            "1usd",
        ],
    );
    let chat = chat("gpt-4o-mini");
    for method in ["PUT", "PATCH"] {
        for (path, body) in [
            ("/openai/v1/chat/completions", chat.as_str()),
            (
                "/openai/v1/responses",
                "{\"model\":\"gpt-4o-mini\",\"input\":\"hi\"}",
            ),
            ("/openai/v1/threads/t1/runs", "{\"assistant_id\":\"a\"}"),
            ("/openai/v1/vector_stores/vs1/search", "{\"query\":\"q\"}"),
            ("/openai/v1/batches", "{\"input_file_id\":\"f\"}"),
            (
                "/gemini/v1beta/cachedContents",
                "{\"model\":\"models/gemini-2.5-flash\"}",
            ),
        ] {
            let (status, text) = a.send(method, path, &[JSON], body.as_bytes());
            assert_eq!(status, 403, "{method} {path} → {text}");
        }
    }
    a.assert_upstream_saw_nothing("a POST by another method");
    // Reading and deleting stored objects stay open to the key.
    for (method, path) in [
        ("GET", "/openai/v1/files/file-1"),
        ("DELETE", "/openai/v1/responses/resp_1"),
    ] {
        let (status, text) = a.send(method, path, &[], b"");
        assert!(status != 403, "{method} {path} → {status} {text}");
    }
    assert_eq!(a.p.mock.requests().len(), 2);
}

/// OpenAI bills prompt-cache writes above plain input and reports them apart
/// (`cache_write_tokens`, in chat's `prompt_tokens_details` and the Responses API's
/// `input_tokens_details`): a budget is charged them at the write rate, not the input rate, so
/// an agent that makes every prompt a fresh cache write does not spend past it.
#[test]
fn openai_cache_writes_are_charged_at_their_own_rate() {
    let a = Attack::new(
        "[prices.\"openai/cache-writer\"]\ninput = 1.0\ncache_write = 10.0\noutput = 2.0\n",
        &["--scope", "openai/cache-writer", "--budget", "1usd"],
    );
    let (status, text) = a.post(
        "/openai/v1/chat/completions",
        "{\"model\":\"cache-writer\",\"messages\":[{\"role\":\"user\",\"content\":\"a long shared prefix\"}]}",
    );
    assert_eq!(status, 200, "{text}");
    let (status, text) = a.post(
        "/openai/v1/responses",
        "{\"model\":\"cache-writer\",\"input\":\"a long shared prefix\"}",
    );
    assert_eq!(status, 200, "{text}");
    let rows = a.logged(2);
    assert_eq!(rows.len(), 2, "{rows:?}");
    for row in &rows {
        let input = row["input_tokens"].as_u64().unwrap();
        let output = row["output_tokens"].as_u64().unwrap();
        assert!(input > 0, "{row}");
        // Every input token was a cache write, at $10 a million.
        let want = (input as f64 * 10.0 + output as f64 * 2.0) / 1e6;
        let cost = row["cost_usd"].as_f64().unwrap();
        assert!(
            (cost - want).abs() < 1e-9,
            "charged {cost}, billed {want}: {row}"
        );
    }
}

/// A key that counts tokens reserves the prompt at a token a byte of the body as sent. A body
/// till writes out again (to put a ceiling in) grows where it holds numbers in exponent form,
/// which serde_json writes in full (`1e15` is `1000000000000000.0`): one that would reach the
/// provider much longer than it was reserved for is refused, and nothing goes upstream.
#[test]
fn a_body_that_grows_when_written_out_again_is_refused_to_a_key_that_counts_tokens() {
    let a = Attack::new(
        "",
        &[
            "--scope",
            "openai/gpt-4o-mini",
            "--tpm",
            "200000",
            "--budget",
            "1usd",
        ],
    );
    let with_numbers = |n: usize| {
        let nums = vec!["1e15"; n].join(",");
        format!(
            "{{\"model\":\"gpt-4o-mini\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}],\"tools\":[{{\"type\":\"function\",\"function\":{{\"name\":\"f\",\"parameters\":{{\"type\":\"object\",\"properties\":{{\"a\":{{\"type\":\"number\",\"enum\":[{nums}]}}}}}}}}}}]}}"
        )
    };
    let (status, text) = a.post("/openai/v1/chat/completions", &with_numbers(2000));
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("exponent form"), "{text}");
    a.assert_upstream_saw_nothing("a body that grows past its prompt bound");
    // A few such numbers grow the body by less than what till writes in: it goes on.
    let (status, text) = a.post("/openai/v1/chat/completions", &with_numbers(5));
    assert_eq!(status, 200, "{text}");
    let seen = a.p.mock.requests();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0]
            .body
            .as_deref()
            .unwrap_or("")
            .contains("1000000000000000.0"),
        "{seen:?}"
    );
}

/// One key's requests in flight hold at most a quarter of `max_connections` (here 8, so 2):
/// requests whose bodies trickle in, and streams whose client left, which the proxy drains
/// to meter them, each keep their connection's slot. Past its share a key is answered 429 at
/// once, and another key's requests go on being served.
#[test]
fn one_keys_requests_in_flight_hold_at_most_a_quarter_of_the_connections() {
    use std::io::{Read as _, Write as _};
    use std::time::Duration;
    let a = Attack::paced(
        Duration::from_millis(1500),
        "[proxy]\nmax_connections = 8\nbody_timeout = \"60s\"\n",
        &["--scope", "openai"],
    );
    let other = a.p.create_key(&["--scope", "openai"]);
    let addr = a.serve.url.strip_prefix("http://").unwrap().to_string();
    let head = |key: &str, len: usize| {
        format!(
            "POST /openai/v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\n\
             content-type: application/json\r\ncontent-length: {len}\r\n\r\n"
        )
    };
    let other_is_served = || {
        let (status, text) = raw_http(
            &a.serve.url,
            "POST",
            "/openai/v1/chat/completions",
            &[("authorization", &format!("Bearer {other}")), JSON],
            chat("gpt-4o-mini").as_bytes(),
        );
        assert_eq!(status, 200, "{text}");
    };
    let answer_of = |c: &mut std::net::TcpStream| {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = vec![0u8; 4096];
        let n = c.read(&mut got).unwrap_or(0);
        String::from_utf8_lossy(&got[..n]).into_owned()
    };

    // Bodies trickled: two requests hold the key's share, the third is refused at once.
    let trickling: Vec<std::net::TcpStream> = (0..2)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(&addr).unwrap();
            write!(c, "{}{{\"model\":", head(&a.key, 100)).unwrap();
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut third = std::net::TcpStream::connect(&addr).unwrap();
    write!(third, "{}{{\"model\":", head(&a.key, 100)).unwrap();
    let refused = answer_of(&mut third);
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    assert!(refused.contains("requests in flight"), "{refused}");
    for _ in 0..3 {
        other_is_served();
    }
    drop(trickling);
    drop(third);
    std::thread::sleep(Duration::from_millis(300));

    // Streams left by their client are drained, and hold their places while they are.
    let body = r#"{"model":"gpt-slow","stream":true,"max_tokens":100,"messages":[]}"#;
    for _ in 0..2 {
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        write!(c, "{}{body}", head(&a.key, body.len())).unwrap();
        let started = answer_of(&mut c);
        assert!(started.starts_with("HTTP/1.1 200"), "{started}");
        drop(c);
    }
    // The proxy finds a client gone when a write to it fails: the second chunk after the
    // close, 1.5 s apart. Its stream goes on for some seconds more, drained.
    std::thread::sleep(Duration::from_secs(4));
    let mut next = std::net::TcpStream::connect(&addr).unwrap();
    write!(next, "{}{body}", head(&a.key, body.len())).unwrap();
    let refused = answer_of(&mut next);
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    other_is_served();

    // What reached the upstream: the other key's four requests and the two streams, nothing
    // of the refused ones.
    let seen: Vec<String> = a
        .upstream_bodies()
        .iter()
        .map(|b| b["model"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        seen.iter().filter(|m| *m == "gpt-4o-mini").count(),
        4,
        "{seen:?}"
    );
    assert_eq!(
        seen.iter().filter(|m| *m == "gpt-slow").count(),
        2,
        "{seen:?}"
    );
    assert_eq!(seen.len(), 6, "{seen:?}");
}

/// A body of many small values: a megabyte of `{"role":"user","content":""}` messages became
/// a tree of some 25 times its size, and a few such requests at once took gigabytes. The tree
/// may take what one key's bodies may hold at once (4 × `max_body_bytes`, here 4 MB); past
/// that the parse is given up and the request refused (413), and nothing reaches the upstream.
/// A body of the same length in a few long messages goes through.
#[test]
fn a_body_of_many_small_values_is_refused_before_its_tree_is_built() {
    let a = Attack::new(
        "[proxy]\nmax_body_bytes = 1000000\n",
        &["--scope", "openai/gpt-4o-mini"],
    );
    let small = r#"{"role":"user","content":""},"#.repeat(30_000);
    let body = format!(
        r#"{{"model":"gpt-4o-mini","max_tokens":5,"messages":[{small}{{"role":"user","content":"hi"}}]}}"#
    );
    assert!(body.len() < 1_000_000);
    let (status, text) = a.post("/openai/v1/chat/completions", &body);
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("so many JSON values"), "{text}");
    a.assert_upstream_saw_nothing("a body of many small values");
    // The same values before a byte that is not UTF-8: refused as they come, not parsed up to
    // that byte.
    let mut bad = body.clone().into_bytes();
    let at = bad.len() - 5;
    bad[at] = 0xff;
    let (status, text) = a.send("POST", "/openai/v1/chat/completions", &[JSON], &bad);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains(&format!("not UTF-8 at byte {at}")), "{text}");
    a.assert_upstream_saw_nothing("a body that is not UTF-8");

    let long = format!(r#"{{"role":"user","content":"{}"}},"#, "x".repeat(4000));
    let body = format!(
        r#"{{"model":"gpt-4o-mini","max_tokens":5,"messages":[{}{{"role":"user","content":"hi"}}]}}"#,
        long.repeat(200)
    );
    let (status, text) = a.post("/openai/v1/chat/completions", &body);
    assert_eq!(status, 200, "{text}");
    assert_eq!(a.p.mock.requests().len(), 1);
}

/// While an answer streams, its request keeps only the trees parsed from its body, not the
/// body, which has gone upstream: streams of large conversations (a screenshot each) held
/// twice their size until they ended, and an ordinary agent's third got 503.
#[test]
fn a_streaming_answer_keeps_its_trees_not_its_body() {
    use std::time::Duration;
    let a = Attack::paced(
        Duration::from_millis(800),
        "[proxy]\nmax_body_bytes = 1000000\n",
        &["--scope", "openai"],
    );
    // 900 KB each, in one long string: a small tree, and a whole parse (the streamed chat
    // request is written out again, with its usage asked for) of about the body's size.
    let body = format!(
        r#"{{"model":"gpt-slow","stream":true,"max_tokens":20,"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(900_000)
    );
    // One after another, each while the ones before it stream: each streaming answer keeps
    // its whole parse (0.9 MB), where it kept its body too (1.8 MB), and the third found the
    // key's room (4 MB) taken.
    for (status, text) in a.posts_staggered(&body, 3, Duration::from_millis(1500)) {
        assert_eq!(status, 200, "{}", &text[..text.len().min(400)]);
    }
    assert_eq!(a.p.mock.requests().len(), 3);
}

/// Ordinary work of one agent at the default settings: streaming requests of conversations
/// made of many small content parts (about 32 MB of parsed trees each, with the whole parse
/// for writing the body out again twice that), each started while the ones before stream.
/// Their trees counted against the key's room (128 MiB) for as long as their answers
/// streamed, and the second got 503; they count now until the request has gone upstream.
#[test]
fn streaming_requests_with_large_trees_do_not_hold_the_room_while_they_stream() {
    use std::time::Duration;
    let a = Attack::paced(Duration::from_millis(800), "", &["--scope", "openai"]);
    let parts: Vec<Value> = (0..33_000)
        .map(|_| serde_json::json!({"type": "text", "text": "hi"}))
        .collect();
    let body = serde_json::json!({"model": "gpt-slow", "stream": true, "max_tokens": 50,
        "messages": [{"role": "user", "content": parts}]})
    .to_string();
    for (status, text) in a.posts_staggered(&body, 4, Duration::from_millis(1200)) {
        assert_eq!(status, 200, "{}", &text[..text.len().min(400)]);
    }
    assert_eq!(a.p.mock.requests().len(), 4);
}
