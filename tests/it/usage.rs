//! Metering and budgets: token counts in the ledger equal what the upstream reported, costs
//! come from the price table, budgets hold under concurrency from several processes, and
//! `till log` / `till usage` print what the ledger holds.

use serde_json::Value;

use crate::support::{ProxyEnv, TestEnv, output, output_with_stdin, python_script, raw_post};

/// The (input, output) tokens the client saw in the provider's own response.
fn reported(family: &str, v: &Value) -> (u64, u64) {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    if let Some(events) = v["events"].as_array().filter(|e| !e.is_empty()) {
        let mut io = (0, 0);
        for e in events {
            let Ok(e) = serde_json::from_str::<Value>(e.as_str().unwrap()) else {
                continue;
            };
            match family {
                "openai" => {
                    if let Some(u) = e.get("usage").filter(|u| !u.is_null()) {
                        io = (n(&u["prompt_tokens"]), n(&u["completion_tokens"]));
                    }
                    if e["type"] == "response.completed" {
                        let u = &e["response"]["usage"];
                        io = (n(&u["input_tokens"]), n(&u["output_tokens"]));
                    }
                }
                "anthropic" => {
                    if e["type"] == "message_start" {
                        io.0 = n(&e["message"]["usage"]["input_tokens"]);
                    }
                    if e["type"] == "message_delta" {
                        io.1 = n(&e["usage"]["output_tokens"]);
                    }
                }
                _ => {
                    if let Some(u) = e.get("usageMetadata") {
                        io = (n(&u["promptTokenCount"]), n(&u["candidatesTokenCount"]));
                    }
                }
            }
        }
        return io;
    }
    let b = &v["body"];
    match family {
        "openai" if b["usage"].get("prompt_tokens").is_some() => (
            n(&b["usage"]["prompt_tokens"]),
            n(&b["usage"]["completion_tokens"]),
        ),
        "openai" | "anthropic" => (
            n(&b["usage"]["input_tokens"]),
            n(&b["usage"]["output_tokens"]),
        ),
        _ => {
            // A stream as one array: its last answer with usage has the totals.
            let u = match b.as_array() {
                Some(answers) => answers
                    .iter()
                    .rev()
                    .find_map(|a| a.get("usageMetadata"))
                    .unwrap_or(&Value::Null),
                None => &b["usageMetadata"],
            };
            (n(&u["promptTokenCount"]), n(&u["candidatesTokenCount"]))
        }
    }
}

#[test]
fn ledger_tokens_equal_what_the_upstream_reported() {
    let p = ProxyEnv::new();
    let cases: &[&[&str]] = &[
        &["openai", "chat", "--model", "gpt-4o-mini"],
        &["openai", "chat", "--stream", "--model", "gpt-4o-mini"],
        &["openai", "responses", "--model", "gpt-4.1-mini"],
        &["openai", "responses", "--stream", "--model", "gpt-4.1-mini"],
        &["anthropic", "messages", "--model", "claude-haiku-4-5"],
        &[
            "anthropic",
            "messages",
            "--stream",
            "--model",
            "claude-haiku-4-5",
        ],
        &["gemini", "generate", "--model", "gemini-2.5-flash"],
        &[
            "gemini",
            "generate",
            "--stream",
            "--model",
            "gemini-2.5-flash",
        ],
        // Without `alt=sse`: the stream is one JSON array, metered as JSON (it was read as
        // events, found none, and was charged its whole reservation).
        &[
            "gemini",
            "generate",
            "--stream",
            "--json-array",
            "--model",
            "gemini-2.5-flash",
        ],
    ];
    let prices = till::pricing::Prices::builtin();
    let mut previous = (0, 0);
    for (i, args) in cases.iter().enumerate() {
        let (v, _) = p.client(&[], args);
        assert_eq!(v["status"], 200, "{args:?}: {v}");
        let (mut input, mut out) = reported(args[0], &v);
        if args[..2] == ["openai", "chat"] && args[2] == "--stream" {
            // till removed the usage chunk this client did not ask for; the mock reports the
            // same usage for the same prompt in both forms, so the JSON case is the reference.
            assert_eq!(
                (input, out),
                (0, 0),
                "the client should not see the usage chunk: {v}"
            );
            (input, out) = previous;
        }
        previous = (input, out);
        assert!(
            input > 0 && out > 0,
            "{args:?}: no usage in the response {v}"
        );
        let rows = p.log_json();
        let row = &rows[i];
        assert_eq!(
            (
                row["input_tokens"].as_u64().unwrap(),
                row["output_tokens"].as_u64().unwrap()
            ),
            (input, out),
            "{args:?}: {row}"
        );
        let model = args[args.iter().position(|a| *a == "--model").unwrap() + 1];
        let priced = prices.lookup(args[0], model).unwrap();
        assert_ne!(
            priced.source,
            till::pricing::PriceSource::ProviderMax,
            "{model}"
        );
        let price = priced.price;
        let usage = till::proxy::meter::Usage {
            input_tokens: input,
            output_tokens: out,
            ..Default::default()
        };
        let expect = price.cost_micros(&usage) as f64 / 1e6;
        assert!(
            (row["cost_usd"].as_f64().unwrap() - expect).abs() < 1e-9,
            "{args:?}: {row} vs {expect}"
        );
        assert_eq!(row["outcome"], "complete", "{row}");
    }
    let (code, stdout, _) = output(p.env.till().args(["usage", "--json", "--by", "provider"]));
    assert_eq!(code, 0);
    let groups: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    let total_requests: u64 = groups.iter().map(|g| g["requests"].as_u64().unwrap()).sum();
    assert_eq!(total_requests, cases.len() as u64);
}

const BUDGET_CONFIG: &str = "[prices.\"openai/budget-model\"]\ninput = 1.0\noutput = 2000.0\n";

#[test]
fn budget_holds_under_concurrency_from_four_processes() {
    let p = ProxyEnv::with_options(till_mock::MockOptions::default(), BUDGET_CONFIG);
    p.create_key(&[
        "--name", "shared", "--scope", "openai", "--budget", "0.50usd",
    ]);
    // Each request reserves 5 output tokens at $2000/M = $0.01 plus a few input tokens, and the
    // mock answers with 5 output tokens, so each settles at about $0.01.
    let burst = python_script("burst.py");
    let mut children = Vec::new();
    for _ in 0..4 {
        let child = p
            .env
            .till()
            .args([
                "run",
                "--quiet",
                "--key",
                "shared",
                "--",
                "python3",
                &burst,
                "50",
                "budget-model",
                "5",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        children.push(child);
    }
    let mut ok = 0;
    let mut refused = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        for r in results {
            match r["status"]
                .as_u64()
                .unwrap_or_else(|| panic!("no status: {r}"))
            {
                200 => ok += 1,
                429 => {
                    refused += 1;
                    assert_eq!(r["code"], "till_budget", "{r}");
                    assert!(
                        r["message"].as_str().unwrap().contains("budget of $0.50"),
                        "{r}"
                    );
                }
                other => panic!("unexpected status {other}: {r}"),
            }
        }
    }
    assert_eq!(ok + refused, 200);
    assert!(
        refused > 0,
        "a $0.50 budget cannot pay for 200 requests at $0.01"
    );
    let (_, stdout, _) = output(p.env.till().args(["key", "show", "shared", "--json"]));
    let v: Value = serde_json::from_str(&stdout).unwrap();
    let spent = v["spent_usd"].as_f64().unwrap();
    let one_reservation = 0.0101 + 0.0001;
    assert!(
        spent <= 0.50 + one_reservation,
        "spent {spent} over the budget"
    );
    assert!(
        spent >= 0.40,
        "spent only {spent}: the budget refused too early ({ok} ok)"
    );
    assert_eq!(v["requests"].as_u64().unwrap(), ok as u64);
}

#[test]
fn a_stream_cut_mid_way_is_charged_its_reservation() {
    // The mock breaks a `cut` model's stream after two events. Anthropic's first event,
    // and each of Gemini's, already carries usage (one output token, a few): what a stream
    // reported before it broke is not what the provider bills, so every family's cut stream
    // is charged its reservation, never only what it reported.
    let p = ProxyEnv::with_options(
        till_mock::MockOptions::default(),
        "[prices.\"openai/gpt-cut\"]\ninput = 1.0\noutput = 100.0\n\
         [prices.\"anthropic/claude-cut\"]\ninput = 1.0\noutput = 100.0\n\
         [prices.\"gemini/gemini-cut\"]\ninput = 1.0\noutput = 100.0\n",
    );
    for (family, op, model) in [
        ("openai", "chat", "gpt-cut"),
        ("anthropic", "messages", "claude-cut"),
        ("gemini", "generate", "gemini-cut"),
    ] {
        let name = format!("cutter-{family}");
        p.create_key(&["--name", &name, "--scope", family, "--budget", "1usd"]);
        let (v, stderr) = p.client(
            &["--key", &name],
            &[
                family,
                op,
                "--stream",
                "--model",
                model,
                "--max-tokens",
                "100",
            ],
        );
        assert_eq!(v["status"], 200, "{family}: {v}\n{stderr}");
        let rows = p.log_json();
        let row = rows.last().unwrap();
        assert_eq!(row["model"], model, "{row}");
        assert_eq!(row["outcome"], "cut", "{row}");
        assert_eq!(row["status"], 200, "{row}");
        // The reservation: 100 output tokens at $100/M = $0.01, plus the prompt estimate.
        let (_, stdout, _) = output(p.env.till().args(["key", "show", &name, "--json"]));
        let v: Value = serde_json::from_str(&stdout).unwrap();
        let spent = v["spent_usd"].as_f64().unwrap();
        assert!(
            (0.010..0.0102).contains(&spent),
            "{family}: charged {spent}, expected the ~$0.01 reservation: {v}\n{row}"
        );
        // The row says what was charged.
        let cost = row["cost_usd"].as_f64().unwrap();
        assert!(
            (cost - spent).abs() < 1e-9,
            "{family}: row {cost}, charged {spent}"
        );
    }
}

#[test]
fn a_sub_agent_is_refused_at_its_own_budget_not_the_parents() {
    let p = ProxyEnv::with_options(till_mock::MockOptions::default(), BUDGET_CONFIG);
    p.create_key(&["--name", "parent", "--scope", "openai", "--budget", "1usd"]);
    let burst = python_script("burst.py");
    let path = crate::support::path_with_till();
    let script = format!(
        "till run --budget 0.02usd -- sh -c 'python3 {burst} 1 budget-model 5; python3 {burst} 1 budget-model 5; python3 {burst} 1 budget-model 5'; \
         python3 {burst} 1 budget-model 5"
    );
    let (code, stdout, stderr) = output(
        p.env
            .till()
            .env("PATH", path)
            .args(["run", "--key", "parent", "--", "sh", "-c", &script]),
    );
    assert_eq!(code, 0, "{stderr}");
    let statuses: Vec<u64> = stdout
        .lines()
        .flat_map(|l| serde_json::from_str::<Vec<Value>>(l).unwrap())
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 429, 429, 200], "{stderr}");
    assert!(stderr.contains("alert: first `budget` denial"), "{stderr}");
    // The parent's counters include what the sub-agent spent.
    let (_, stdout, _) = output(p.env.till().args(["key", "show", "parent", "--json"]));
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["requests"].as_u64().unwrap(), 2, "{v}");
    let spent = v["spent_usd"].as_f64().unwrap();
    assert!((spent - 2.0 * 0.010_002).abs() < 0.0005, "{v}");
}

#[test]
fn usd_budget_on_a_provider_without_prices_says_how_to_add_one() {
    let p = ProxyEnv::new();
    // A provider of the user's own has no built-in prices: nothing to fall back on.
    let config = std::fs::read_to_string(p.env.path("config.toml")).unwrap();
    p.env.config(&format!(
        "{config}\n[providers.acme]\napi = \"openai\"\nbase_url = \"{}\"\n",
        p.mock.url()
    ));
    let (code, _, stderr) = output_with_stdin(
        p.env.till().args(["add", "acme", "--no-verify"]),
        crate::support::ROOT_KEY,
    );
    assert_eq!(code, 0, "{stderr}");
    let key = p.create_key(&["--scope", "acme", "--budget", "1usd"]);
    let serve = p.serve();
    p.mock.clear_requests();
    let host = serve.url.trim_start_matches("http://").to_string();
    let (status, answer) = raw_post(
        &serve.url,
        &host,
        "/acme/v1/chat/completions",
        &key,
        r#"{"model":"llama-3.3-70b","messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("till_no_price"), "{answer}");
    assert!(
        answer.contains(r#"[prices.\"acme/llama-3.3-70b\"]"#),
        "{answer}"
    );
    assert!(p.mock.requests().is_empty());

    // One price set in config.toml says nothing of the provider's other models: charging them
    // at it (o1-pro at a small model's rate, behind a router) let a $1 budget run far more.
    let config = std::fs::read_to_string(p.env.path("config.toml")).unwrap();
    p.env.config(&format!(
        "{config}\n[prices.\"acme/small\"]\ninput = 0.1\noutput = 0.4\n"
    ));
    let key = p.create_key(&["--scope", "acme", "--budget", "1usd"]);
    let serve = p.serve();
    let host = serve.url.trim_start_matches("http://").to_string();
    let chat = |model: &str| {
        raw_post(
            &serve.url,
            &host,
            "/acme/v1/chat/completions",
            &key,
            &format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#),
        )
    };
    let (status, answer) = chat("o1-pro");
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("till_no_price"), "{answer}");
    assert!(p.mock.requests().is_empty());
    let (status, answer) = chat("small");
    assert_eq!(status, 200, "{answer}");
}

/// A model missing from the table is charged its provider's highest price (a key with a
/// dollar budget may use it), and till says so once per model, not once per request.
#[test]
fn an_unlisted_model_costs_the_providers_highest_price_said_once() {
    let p = ProxyEnv::new();
    let script = format!(
        "python3 {c} openai chat --model gpt-unlisted-1 && python3 {c} openai chat --model gpt-unlisted-1",
        c = crate::support::client_script()
    );
    let (code, stdout, stderr) = p.run(&["--budget", "1usd", "--", "sh", "-c", &script]);
    assert_eq!(code, 0, "{stderr}");
    let results: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 2);
    assert_eq!(
        stderr.matches("no price for openai/gpt-unlisted-1").count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains("[prices.\"openai/gpt-unlisted-1\"]"),
        "{stderr}"
    );
    let priced = till::pricing::Prices::builtin()
        .lookup("openai", "gpt-unlisted-1")
        .unwrap();
    assert_eq!(priced.source, till::pricing::PriceSource::ProviderMax);
    let rows = p.log_json();
    assert_eq!(rows.len(), 2);
    for (r, row) in results.iter().zip(&rows) {
        assert_eq!(r["status"], 200, "{r}");
        let (input, out) = reported("openai", r);
        let usage = till::proxy::meter::Usage {
            input_tokens: input,
            output_tokens: out,
            ..Default::default()
        };
        let expect = priced.price.cost_micros(&usage) as f64 / 1e6;
        assert!(expect > 0.0);
        assert!(
            (row["cost_usd"].as_f64().unwrap() - expect).abs() < 1e-9,
            "{row} vs {expect}"
        );
    }
    // The notice is kept with the alerts.
    let (_, alerts, _) = output(p.env.till().args(["log", "--alerts"]));
    assert_eq!(
        alerts.matches("no price for openai/gpt-unlisted-1").count(),
        1,
        "{alerts}"
    );
}

/// A running `till serve` takes up a price added to config.toml without a restart (the
/// unlisted-model alert says to add one), and a config.toml that no longer reads leaves the
/// prices in force as they were, with an alert, instead of failing requests or dropping them.
#[test]
fn a_running_proxy_charges_a_price_added_to_config_from_the_next_second() {
    let p = ProxyEnv::new();
    let key = p.create_key(&["--scope", "openai", "--budget", "5usd"]);
    let serve = p.serve();
    let chat = || {
        let r = crate::support::client_with_key(
            &serve.url,
            &key,
            &["openai", "chat", "--model", "gpt-unlisted-2"],
        );
        assert_eq!(r["status"], 200, "{r}");
        reported("openai", &r)
    };
    let cost_of_last = |rows: usize| {
        let rows = crate::support::poll_rows(&p, rows);
        rows.last().unwrap()["cost_usd"].as_f64().unwrap()
    };
    let cost = |(input, output): (u64, u64), price_in: f64, price_out: f64| {
        (input as f64 * price_in + output as f64 * price_out) / 1e6
    };
    let highest = till::pricing::Prices::builtin()
        .lookup("openai", "gpt-unlisted-2")
        .unwrap()
        .price;
    let tokens = chat();
    let first = cost_of_last(1);
    assert!(
        (first - cost(tokens, highest.input, highest.output)).abs() < 2e-6,
        "charged at the provider's highest price: {first}"
    );

    let config = std::fs::read_to_string(p.env.path("config.toml")).unwrap();
    std::fs::write(
        p.env.path("config.toml"),
        format!("{config}\n[prices.\"openai/gpt-unlisted-2\"]\ninput = 0.5\noutput = 1.0\n"),
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let tokens = chat();
    let second = cost_of_last(2);
    assert!(
        (second - cost(tokens, 0.5, 1.0)).abs() < 2e-6,
        "charged at the price config.toml sets now: {second}"
    );

    // A typo: requests still go through at the prices in force, and the alert says why.
    std::fs::write(
        p.env.path("config.toml"),
        format!("{config}\n[prices.\"openai/"),
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let tokens = chat();
    // (till's commands refuse to start with the config broken: mend it to read the log.)
    std::fs::write(
        p.env.path("config.toml"),
        format!("{config}\n[prices.\"openai/gpt-unlisted-2\"]\ninput = 0.5\noutput = 1.0\n"),
    )
    .unwrap();
    let third = cost_of_last(3);
    assert!(
        (third - cost(tokens, 0.5, 1.0)).abs() < 2e-6,
        "the prices in force stay: {third}"
    );
    let (_, alerts, _) = output(p.env.till().args(["log", "--alerts"]));
    assert!(
        alerts.contains("could not be read, so this proxy keeps charging at the ones it had")
            && alerts.contains("config.toml"),
        "{alerts}"
    );
}

/// A ledger with fixed rows, for the snapshot tests.
fn seeded() -> TestEnv {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.path("data")).unwrap();
    let w = till::ledger::writer::Writer::start(&env.path("data/ledger.sqlite3")).unwrap();
    let h = w.handle();
    let base = 1_767_225_600; // 2026-01-01T00:00:00Z
    let rows = [
        (
            0,
            "openai",
            "gpt-4o-mini",
            200,
            120,
            40,
            42,
            None,
            "complete",
            "aaaaaaaaaaaa",
        ),
        (
            60,
            "openai",
            "gpt-4o",
            403,
            0,
            0,
            0,
            Some("model"),
            "denied",
            "aaaaaaaaaaaa",
        ),
        (
            3_600,
            "anthropic",
            "claude-haiku-4-5",
            200,
            900,
            300,
            2_400,
            None,
            "complete",
            "bbbbbbbbbbbb",
        ),
        (
            86_400,
            "gemini",
            "gemini-2.5-flash",
            200,
            50,
            5,
            28,
            None,
            "cut",
            "bbbbbbbbbbbb",
        ),
        (
            90_000,
            "openai",
            "gpt-4o-mini",
            429,
            0,
            0,
            0,
            Some("rpm"),
            "denied",
            "aaaaaaaaaaaa",
        ),
    ];
    for (dt, provider, model, status, input, out, cost, denial, outcome, key) in rows {
        h.row(till::ledger::writer::RequestRow {
            at: base + dt,
            binding: Some(format!("{key}{}", "0".repeat(52))),
            provider: provider.into(),
            model: Some(model.into()),
            endpoint: Some("inference"),
            status,
            input_tokens: input,
            output_tokens: out,
            cost_micros: cost,
            latency_ms: 12.5,
            ttfb_ms: Some(3.0),
            denial,
            outcome: Some(outcome),
            lineage: Some(key.into()),
            ..Default::default()
        });
    }
    h.event(
        base + 60,
        None,
        None,
        "denial",
        "first `model` denial: model gpt-4o is not in this key's scope".into(),
    );
    h.event(
        base + 86_400,
        Some(format!("bbbbbbbbbbbb{}", "0".repeat(52))),
        None,
        "budget",
        "a budget is at 80 %".into(),
    );
    h.event(
        base + 90_000,
        Some(format!("aaaaaaaaaaaa{}", "0".repeat(52))),
        None,
        "denial",
        "first `rpm` denial: 3 requests a minute".into(),
    );
    // A key narrowed from bbbb… (a run's) that made a request and raised an alert: `--key`
    // of its parent finds both through the request's lineage.
    h.row(till::ledger::writer::RequestRow {
        at: base + 95_000,
        binding: Some(format!("cccccccccccc{}", "0".repeat(52))),
        provider: "anthropic".into(),
        model: Some("claude-haiku-4-5".into()),
        endpoint: Some("inference"),
        status: 429,
        latency_ms: 1.5,
        denial: Some("rpm"),
        outcome: Some("denied"),
        lineage: Some("bbbbbbbbbbbb cccccccccccc".into()),
        ..Default::default()
    });
    h.event(
        base + 95_000,
        Some(format!("cccccccccccc{}", "0".repeat(52))),
        None,
        "denial",
        "first `rpm` denial (key cccccccccccc): 1 request a minute".into(),
    );
    w.finish();
    env
}

#[test]
fn log_and_usage_snapshots() {
    let env = seeded();
    let since = ["--since", "2026-01-01T00:00:00Z"];
    let run = |args: &[&str]| {
        let (code, stdout, stderr) = output(env.till().args(args));
        assert_eq!(code, 0, "{stderr}");
        stdout
    };
    insta::assert_snapshot!("log_table", run(&["log"]));
    insta::assert_snapshot!("log_json", run(&["log", "--json"]));
    insta::assert_snapshot!("log_denied", run(&["log", "--denied"]));
    insta::assert_snapshot!("log_key", run(&["log", "--key", "bbbbbbbbbbbb"]));
    insta::assert_snapshot!("log_alerts", run(&["log", "--alerts"]));
    // A key's alerts, and the newest N: `--key` and `-n` were ignored with `--alerts`.
    insta::assert_snapshot!(
        "log_alerts_key",
        run(&["log", "--alerts", "--key", "bbbbbbbbbbbb"])
    );
    insta::assert_snapshot!("log_alerts_newest", run(&["log", "--alerts", "-n", "1"]));
    // None in the period: said, where it printed nothing at all.
    let (code, stdout, stderr) = output(env.till().args(["log", "--alerts", "--since", "1m"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.is_empty() && stderr.contains("no alerts in that period"),
        "{stderr}"
    );
    insta::assert_snapshot!(
        "usage_by_model",
        run(&["usage", "--by", "model", since[0], since[1]])
    );
    insta::assert_snapshot!(
        "usage_by_day",
        run(&["usage", "--by", "day", since[0], since[1]])
    );
    insta::assert_snapshot!(
        "usage_by_key_json",
        run(&["usage", "--by", "key", "--json", since[0], since[1]])
    );
}

/// A request's model is whatever the agent sends, and a refused request still records it: an
/// ESC, BEL, CR or LF in it must not reach a person's terminal, where it could clear the
/// screen, set the window's title or forge a row of the table.
const HOSTILE_MODEL: &str =
    "gpt-4o\u{1b}[2J\u{1b}[31mPWNED\u{1b}]0;title\u{7}\r\nFAKE LINE\u{9b}2J\u{202e}desrever";

/// A name that would turn a terminal line around (the proxy refuses it, as every name outside
/// ASCII; a ledger written before it did may hold one).
const BIDI_MODEL: &str = "gpt-4o\u{202e}desrever";

/// A name made of ASCII, as the proxy takes it; the ledger's rows and alerts for it are then
/// rewritten to [`BIDI_MODEL`].
const STAND_IN: &str = "gpt-4o-standin";

/// The characters that steer a terminal; none may appear raw in human output.
fn assert_no_raw_controls(what: &str, text: &str) {
    for c in ['\u{1b}', '\u{7}', '\r', '\u{9b}', '\u{202e}'] {
        assert!(
            !text.contains(c),
            "{what} printed {:?} raw: {text:?}",
            c.escape_unicode().to_string()
        );
    }
    assert!(
        !text.lines().any(|l| l.starts_with("FAKE LINE")),
        "{what} let the model start a line: {text:?}"
    );
}

#[test]
fn a_model_name_with_control_characters_is_escaped_in_every_human_output() {
    let p = ProxyEnv::new();
    // A name with control characters, line breaks or any character outside ASCII is no
    // model's: refused (400) before it is checked, priced or recorded, whatever the key. What
    // steers a terminal and may still be in a ledger (a bidirectional override, recorded by a
    // till that took it) is what the outputs below escape.
    let model = BIDI_MODEL;
    // One key refuses the model; the other lets it through, priced at openai's highest.
    let narrow = p.create_key(&["--scope", "openai/gpt-4o-mini"]);
    let wide = p.create_key(&["--scope", "openai", "--budget", "1usd"]);
    let stderr_file = p.env.path("serve.stderr");
    let serve = p.serve_with_stderr(std::fs::File::create(&stderr_file).unwrap());
    let body_for = |model: &str| {
        serde_json::json!({
            "model": model,
            "messages": [{ "role": "user", "content": "hi" }],
        })
        .to_string()
    };
    let (hostile, bidi, body) = (
        body_for(HOSTILE_MODEL),
        body_for(BIDI_MODEL),
        body_for(STAND_IN),
    );
    for (key, body, want) in [
        (&narrow, &hostile, 400),
        (&wide, &hostile, 400),
        (&narrow, &bidi, 400),
        (&wide, &bidi, 400),
        (&narrow, &body, 403),
        (&wide, &body, 200),
    ] {
        let auth = format!("Bearer {key}");
        let (status, answer) = crate::support::raw_http(
            &serve.url,
            "POST",
            "/openai/v1/chat/completions",
            &[
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ],
            body.as_bytes(),
        );
        assert_eq!(status, want, "{answer}");
    }
    // The rows are written within the writer's 50 ms; the alert lines as the requests end.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let all = p.log_json();
        // The refused names are recorded as no model at all.
        assert!(
            all.iter()
                .all(|r| r["model"] != HOSTILE_MODEL && r["model"] != BIDI_MODEL),
            "{all:?}"
        );
        let rows: Vec<_> = all.into_iter().filter(|r| r["model"] == STAND_IN).collect();
        let stderr = std::fs::read_to_string(&stderr_file).unwrap();
        if rows.len() == 2 && stderr.contains("denial") && stderr.contains("no price for") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no rows or alerts");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(serve);
    let serve_stderr = std::fs::read_to_string(&stderr_file).unwrap();
    assert_no_raw_controls("till serve's stderr", &serve_stderr);
    // The ledger as a till that took the name would have written it.
    let db = rusqlite::Connection::open(p.env.path("data/ledger.sqlite3")).unwrap();
    db.execute(
        "UPDATE requests SET model = ?1 WHERE model = ?2",
        [model, STAND_IN],
    )
    .unwrap();
    db.execute(
        "UPDATE events SET message = replace(message, ?2, ?1)",
        [model, STAND_IN],
    )
    .unwrap();
    drop(db);
    let rows: Vec<_> = p
        .log_json()
        .into_iter()
        .filter(|r| r["model"] == model)
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");

    // `--json` gives the exact text back, with nothing raw in it either.
    for row in &rows {
        assert_eq!(row["model"], model, "{rows:?}");
    }
    let json = |args: &[&str]| {
        let (code, stdout, stderr) = output(p.env.till().args(args));
        assert_eq!(code, 0, "{stderr}");
        assert_no_raw_controls(&args.join(" "), &stdout);
        serde_json::from_str::<Value>(&stdout).unwrap()
    };
    let groups = json(&["usage", "--by", "model", "--json"]);
    assert_eq!(groups[0]["group"], format!("openai/{model}"));
    let alerts = json(&["log", "--alerts", "--json"]);
    for kind in ["denial", "price"] {
        let named =
            alerts.as_array().unwrap().iter().any(|e| {
                e["kind"] == kind && e["message"].as_str().is_some_and(|m| m.contains(model))
            });
        assert!(named, "{kind}: {alerts}");
    }
    json(&["log", "--json"]);

    // Each human output shows the escapes instead.
    let human = |args: &[&str]| {
        let (code, stdout, stderr) = output(p.env.till().args(args));
        assert_eq!(code, 0, "{stderr}");
        stdout
    };
    for (what, text) in [
        ("till log", human(&["log"])),
        ("till log --alerts", human(&["log", "--alerts"])),
        ("till usage --by model", human(&["usage", "--by", "model"])),
    ] {
        assert_no_raw_controls(what, &text);
        assert!(text.contains("gpt-4o\\u{202e}desrever"), "{what}: {text}");
    }
}

/// A key made with `till key create --name` is found by its name in `till log` and
/// `till usage --by key`: the proxy records the key's binding, and every row showed its id.
#[test]
fn a_named_key_is_shown_by_its_name_in_the_log_and_usage() {
    let p = ProxyEnv::new();
    let key = p.create_key(&["--name", "ci-bot", "--scope", "openai"]);
    let unnamed = p.create_key(&["--scope", "openai"]);
    let serve = p.serve();
    let host = serve.url.trim_start_matches("http://").to_string();
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    for k in [&key, &unnamed] {
        let (status, answer) = raw_post(&serve.url, &host, "/openai/v1/chat/completions", k, body);
        assert_eq!(status, 200, "{answer}");
    }
    // A row is written once its answer has gone out.
    let mut rows = Vec::new();
    for _ in 0..100 {
        rows = p.log_json();
        if rows.len() >= 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let names: Vec<&Value> = rows.iter().map(|r| &r["key_name"]).collect();
    assert_eq!(names.len(), 2, "{rows:?}");
    assert!(names.contains(&&Value::from("ci-bot")), "{rows:?}");
    assert!(names.iter().any(|n| n.is_null()), "{rows:?}");
    let (_, log, _) = output(p.env.till().arg("log"));
    assert!(log.lines().any(|l| l.contains("  ci-bot  ")), "{log}");
    // A run under the key (`till run --key ci-bot`) counts in the key's row of
    // `usage --by key`: one agent's spending is one row.
    let (v, stderr) = p.client(&["--key", "ci-bot"], &["openai", "chat"]);
    assert_eq!(v["status"], 200, "{v}\n{stderr}");
    let (_, usage, _) = output(p.env.till().args(["usage", "--by", "key", "--json"]));
    let groups: Vec<Value> = serde_json::from_str(&usage).unwrap();
    let names: Vec<&str> = groups
        .iter()
        .map(|g| g["group"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"ci-bot"), "{usage}");
    let ci = groups.iter().find(|g| g["group"] == "ci-bot").unwrap();
    assert_eq!(ci["requests"], 2, "{usage}");
    assert!(
        names
            .iter()
            .any(|n| n.len() == 12 && n.chars().all(|c| c.is_ascii_hexdigit())),
        "{usage}"
    );
    // And `--key NAME` finds its rows, the run's among them.
    let (code, log, stderr) = output(p.env.till().args(["log", "--key", "ci-bot", "--json"]));
    assert_eq!(code, 0, "{stderr}");
    let rows: Vec<Value> = serde_json::from_str(&log).unwrap();
    assert_eq!(rows.len(), 2, "{log}");
}

/// A provider's error answer of a kind it gives before running the model (529 Overloaded,
/// 503) cost a budget key its whole reservation, every SDK retry again: three 529s took $1.44
/// of a $5 budget with no token used. Those are charged nothing now; a 500, which a gateway in
/// front of a provider can give after the model ran, is still charged its reservation, and its
/// row says that no usage was reported.
#[test]
fn an_overloaded_answer_costs_a_budget_nothing_and_a_500_says_why_it_costs() {
    let p = ProxyEnv::with_options(
        till_mock::MockOptions::default(),
        "[prices.\"anthropic/claude-overloaded\"]\ninput = 3.0\noutput = 15.0\n\
         [prices.\"openai/gpt-overloaded\"]\ninput = 3.0\noutput = 15.0\n\
         [prices.\"openai/gpt-error500\"]\ninput = 3.0\noutput = 15.0\n\
         [prices.\"anthropic/claude-overloaded-streamed\"]\ninput = 3.0\noutput = 15.0\n\
         [prices.\"openai/gpt-overloaded-streamed\"]\ninput = 3.0\noutput = 15.0\n",
    );
    p.create_key(&[
        "--name",
        "b",
        "--scope",
        "openai",
        "--scope",
        "anthropic",
        "--budget",
        "5usd",
    ]);
    for (family, op, model, status, stream) in [
        ("anthropic", "messages", "claude-overloaded", 529, false),
        ("openai", "chat", "gpt-overloaded", 503, false),
        ("openai", "chat", "gpt-error500", 500, false),
        // Asked to stream, answered with the error's JSON (as providers do): the same.
        (
            "anthropic",
            "messages",
            "claude-overloaded-streamed",
            529,
            true,
        ),
        ("openai", "chat", "gpt-overloaded-streamed", 503, true),
    ] {
        let mut args = vec![family, op, "--model", model, "--max-tokens", "1000"];
        if stream {
            args.push("--stream");
        }
        let (v, stderr) = p.client(&["--key", "b"], &args);
        assert_eq!(v["status"], status, "{model}: {v}\n{stderr}");
    }
    // The mock saw each once (the client does not retry).
    let rows = p.log_json();
    let cost = |model: &str| {
        let row = rows
            .iter()
            .find(|r| r["model"] == model)
            .unwrap_or_else(|| panic!("{model}: {rows:?}"));
        (
            row["cost_usd"].as_f64().unwrap(),
            row["outcome"].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(
        cost("claude-overloaded"),
        (0.0, "complete".into()),
        "{rows:?}"
    );
    assert_eq!(cost("gpt-overloaded"), (0.0, "complete".into()), "{rows:?}");
    assert_eq!(
        cost("claude-overloaded-streamed"),
        (0.0, "complete".into()),
        "{rows:?}"
    );
    assert_eq!(
        cost("gpt-overloaded-streamed"),
        (0.0, "complete".into()),
        "{rows:?}"
    );
    let (charged, outcome) = cost("gpt-error500");
    assert!(charged > 0.01, "{rows:?}");
    assert_eq!(outcome, "no_usage", "{rows:?}");
    let (_, shown, _) = output(p.env.till().args(["key", "show", "b", "--json"]));
    let v: Value = serde_json::from_str(&shown).unwrap();
    assert!(
        (v["spent_usd"].as_f64().unwrap() - charged).abs() < 1e-9,
        "{v}"
    );
    // The tokens it held show in the row as output tokens, so a token budget's spend is what
    // `till usage` adds up (the row said 0 tokens beside a budget 80 % gone).
    p.create_key(&["--name", "t", "--scope", "openai", "--budget", "20ktok"]);
    let (v, stderr) = p.client(
        &["--key", "t"],
        &[
            "openai",
            "chat",
            "--model",
            "gpt-error500",
            "--max-tokens",
            "1000",
        ],
    );
    assert_eq!(v["status"], 500, "{v}\n{stderr}");
    let rows = p.log_json();
    let row = rows.last().unwrap();
    assert_eq!(row["model"], "gpt-error500", "{rows:?}");
    let tokens = row["input_tokens"].as_u64().unwrap() + row["output_tokens"].as_u64().unwrap();
    assert!(tokens >= 1000, "{row}");
    let (_, shown, _) = output(p.env.till().args(["key", "show", "t", "--json"]));
    let v: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(v["spent_tokens"].as_u64().unwrap(), tokens, "{v}\n{row}");
    let (_, usage, _) = output(p.env.till().args(["usage", "--key", "t", "--json"]));
    assert!(
        usage.contains(&format!("\"output_tokens\": {}", row["output_tokens"])),
        "{usage}"
    );
}

/// `till log -f --json` and `till log -f --alerts --json` print one JSON object a line for each
/// request and alert as it is recorded (the alerts printed a whole array per poll).
#[test]
fn log_follow_prints_a_json_line_per_request_and_per_alert() {
    use std::io::BufRead as _;
    let p = ProxyEnv::new();
    let key = p.create_key(&["--scope", "openai/gpt-4o-mini"]);
    let serve = p.serve();
    let follow = |args: &[&str]| {
        let mut child = p
            .env
            .till()
            .args(["log", "-f", "--json"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        (child, rx)
    };
    let (mut requests, request_lines) = follow(&[]);
    let (mut alerts, alert_lines) = follow(&["--alerts"]);
    // Both have read the (empty) ledger once before anything is recorded.
    std::thread::sleep(std::time::Duration::from_millis(700));
    let host = serve.url.trim_start_matches("http://").to_string();
    let (status, answer) = raw_post(
        &serve.url,
        &host,
        "/openai/v1/chat/completions",
        &key,
        r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_eq!(status, 403, "{answer}");
    let next = |rx: &std::sync::mpsc::Receiver<String>| -> Value {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("a line within 10 s");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    };
    let row = next(&request_lines);
    assert!(row.is_object(), "{row}");
    assert_eq!(row["model"], "gpt-4o", "{row}");
    let alert = next(&alert_lines);
    assert!(alert.is_object(), "{alert}");
    assert_eq!(alert["kind"], "denial", "{alert}");

    // `-n 0` shows none of what is there and follows what comes (it printed it all).
    let (mut later, later_lines) = follow(&["-n", "0"]);
    let (mut later_alerts, later_alert_lines) = follow(&["--alerts", "-n", "0"]);
    std::thread::sleep(std::time::Duration::from_millis(700));
    let (status, answer) = raw_post(
        &serve.url,
        &host,
        "/openai/v1/chat/completions",
        "sk-not-a-till-key",
        r#"{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_eq!(status, 401, "{answer}");
    let row = next(&later_lines);
    assert_eq!(row["denial"], "not_till_key", "{row}");
    let new_alert = next(&later_alert_lines);
    assert!(
        new_alert["id"].as_i64() > alert["id"].as_i64(),
        "{new_alert}"
    );
    for child in [&mut requests, &mut alerts, &mut later, &mut later_alerts] {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A budget left smaller than the prompt alone is refused with the amounts: what is left and
/// what the prompt may take (the message named neither, so "spent" and "held by a request in
/// flight" and "too small for this prompt" read alike).
#[test]
fn a_prompt_the_budget_left_cannot_pay_for_is_refused_with_the_amounts() {
    let p = ProxyEnv::new();
    let serve = p.serve();
    let host = serve.url.trim_start_matches("http://").to_string();
    let prompt = "word ".repeat(2000);
    let body =
        format!(r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"{prompt}"}}]}}"#);
    for (budget, says) in [
        ("500tok", "500 tokens left, and the prompt alone may take "),
        (
            "0.0001usd",
            "$0.0001 left, and the prompt alone may cost $0.0",
        ),
    ] {
        let key = p.create_key(&["--scope", "openai", "--budget", budget]);
        p.mock.clear_requests();
        let (status, answer) = raw_post(
            &serve.url,
            &host,
            "/openai/v1/chat/completions",
            &key,
            &body,
        );
        assert_eq!(status, 429, "{answer}");
        assert!(
            answer.contains("this key's budget cannot pay for this prompt and any output: ")
                && answer.contains(says),
            "{budget}: {answer}"
        );
        assert!(p.mock.requests().is_empty(), "{budget}");
    }
}

/// A Gemini request refused for the model its path names is logged with that model (the row
/// said `-`, where an OpenAI refusal names the body's).
#[test]
fn a_path_models_refusal_is_logged_with_its_model() {
    let p = ProxyEnv::new();
    let serve = p.serve();
    let host = serve.url.trim_start_matches("http://").to_string();
    let key = p.create_key(&["--scope", "gemini/gemini-2.5-flash"]);
    let (status, answer) = raw_post(
        &serve.url,
        &host,
        "/gemini/v1beta/models/gemini-2.5-pro:generateContent",
        &key,
        r#"{"contents":[{"parts":[{"text":"hi"}]}]}"#,
    );
    assert_eq!(status, 403, "{answer}");
    // The proxy's writer records rows a moment after the answer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let rows = loop {
        let rows = p.log_json();
        if !rows.is_empty() || std::time::Instant::now() > deadline {
            break rows;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let row = rows.last().expect("a row");
    assert_eq!(row["model"], "gemini-2.5-pro", "{row}");
    assert_eq!(row["denial"], "model", "{row}");
}

/// A request that spends most of a budget raises the budget's mark when it is charged, not
/// when the next request reserves (one that spent 99 % raised nothing until another came).
#[test]
fn a_budget_mark_is_raised_when_the_request_that_passed_it_is_charged() {
    let p = ProxyEnv::new();
    let serve = p.serve();
    let host = serve.url.trim_start_matches("http://").to_string();
    let key = p.create_key(&["--scope", "openai", "--budget", "1200tok"]);
    // The mock bills a `greedy` model every output token the request allows.
    let (status, answer) = raw_post(
        &serve.url,
        &host,
        "/openai/v1/chat/completions",
        &key,
        r#"{"model":"gpt-greedy","max_tokens":1000,"messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_eq!(status, 200, "{answer}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let alerts = loop {
        let (_, text, _) = output(p.env.till().args(["log", "--alerts", "--json"]));
        let alerts: Vec<Value> = serde_json::from_str(&text).unwrap();
        if alerts.iter().any(|a| a["kind"] == "budget") || std::time::Instant::now() > deadline {
            break alerts;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let budget: Vec<&Value> = alerts.iter().filter(|a| a["kind"] == "budget").collect();
    assert_eq!(budget.len(), 1, "{alerts:?}");
    assert!(
        budget[0]["message"]
            .as_str()
            .unwrap()
            .contains("has 80 % of its budget spent"),
        "{alerts:?}"
    );
}

/// `till key show` counts the requests a key made the same way with a budget and without one:
/// those till let through (a key without a budget counted its refusals too, from the log).
#[test]
fn a_keys_request_count_leaves_out_its_refusals_with_or_without_a_budget() {
    let p = ProxyEnv::new();
    let plain = p.create_key(&["--name", "nb", "--scope", "openai/gpt-4o-mini"]);
    let budgeted = p.create_key(&[
        "--name",
        "wb",
        "--scope",
        "openai/gpt-4o-mini",
        "--budget",
        "1usd",
    ]);
    let serve = p.serve();
    let host = serve.url.trim_start_matches("http://").to_string();
    for key in [&plain, &budgeted] {
        for (model, want) in [("gpt-4o-mini", 200), ("gpt-4o", 403), ("gpt-4o", 403)] {
            let (status, answer) = raw_post(
                &serve.url,
                &host,
                "/openai/v1/chat/completions",
                key,
                &format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#),
            );
            assert_eq!(status, want, "{answer}");
        }
    }
    crate::support::poll_rows(&p, 6);
    for name in ["nb", "wb"] {
        let (_, shown, _) = output(p.env.till().args(["key", "show", name, "--json"]));
        let v: Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(v["requests"], 1, "{name}: {v}");
    }
}

/// A chat ceiling above what the budget can pay for is lowered where the body names it: on
/// OpenAI itself in `max_tokens`, the field its SDK sends (the lower value went into
/// `max_completion_tokens` beside it, the larger one stayed the ceiling, and the request was
/// refused), with no second field beside it (OpenAI refuses both); on a compatible provider
/// in `max_completion_tokens` and `max_tokens` alike.
#[test]
fn a_chat_ceiling_is_lowered_in_the_field_the_body_names() {
    let p = ProxyEnv::with_options(
        till_mock::MockOptions::default(),
        "[prices.\"openai/gpt-cheap-x\"]\ninput = 1.0\noutput = 1.0\n\
         [prices.\"compat/gpt-cheap-x\"]\ninput = 1.0\noutput = 1.0\n",
    );
    let config = std::fs::read_to_string(p.env.path("config.toml")).unwrap();
    p.env.config(&format!(
        "{config}\n[providers.compat]\nbase_url = \"{}\"\napi = \"openai\"\n",
        p.mock.url()
    ));
    let (code, _, stderr) = output_with_stdin(
        p.env.till().args(["add", "compat", "--no-verify"]),
        crate::support::ROOT_KEY,
    );
    assert_eq!(code, 0, "{stderr}");
    let key = p.create_key(&[
        "--scope", "openai", "--scope", "compat", "--budget", "0.01usd",
    ]);
    let serve = p.serve();
    let host = serve.url.trim_start_matches("http://").to_string();
    p.mock.clear_requests();
    for (provider, field) in [
        ("openai", "max_tokens"),
        ("compat", "max_completion_tokens"),
    ] {
        let (status, answer) = raw_post(
            &serve.url,
            &host,
            &format!("/{provider}/v1/chat/completions"),
            &key,
            &format!(
                r#"{{"model":"gpt-cheap-x","{field}":64000,"messages":[{{"role":"user","content":"hi"}}]}}"#
            ),
        );
        assert_eq!(status, 200, "{provider}: {answer}");
    }
    let sent: Vec<Value> = p.mock.requests().iter().filter_map(|r| r.json()).collect();
    assert_eq!(sent.len(), 2, "{sent:?}");
    let lowered = |v: &Value| v.as_u64().is_some_and(|n| (4096..10_000).contains(&n));
    assert!(lowered(&sent[0]["max_tokens"]), "{}", sent[0]);
    assert!(
        sent[0].get("max_completion_tokens").is_none(),
        "{}",
        sent[0]
    );
    assert!(lowered(&sent[1]["max_completion_tokens"]), "{}", sent[1]);
    assert_eq!(
        sent[1]["max_tokens"], sent[1]["max_completion_tokens"],
        "{}",
        sent[1]
    );
}

/// A request that has ended frees what its reservation held before its answer ends: an agent
/// sends its next request the moment it has read an answer, and must find the budget charged
/// what the last one cost, not still holding what it might have cost. Each request asks for
/// 64,000 output tokens, lowered to what the budget can pay for, so its reservation holds
/// nearly all of it; the settlement was written by a task that ran after the answer, and the
/// next request found the budget held and was refused (429) on a loaded machine.
#[test]
fn an_answer_frees_its_reservation_before_it_ends() {
    let p = ProxyEnv::with_options(
        till_mock::MockOptions::default(),
        "[prices.\"openai/gpt-cheap-x\"]\ninput = 1.0\noutput = 1.0\n",
    );
    let key = p.create_key(&["--scope", "openai", "--budget", "0.01usd"]);
    let serve = p.serve();
    let host = serve.url.trim_start_matches("http://").to_string();
    p.mock.clear_requests();
    let rounds = 16;
    for i in 0..rounds {
        let stream = if i % 2 == 0 { "false" } else { "true" };
        let (status, answer) = raw_post(
            &serve.url,
            &host,
            "/openai/v1/chat/completions",
            &key,
            &format!(
                r#"{{"model":"gpt-cheap-x","max_tokens":64000,"stream":{stream},"messages":[{{"role":"user","content":"hi"}}]}}"#
            ),
        );
        assert_eq!(status, 200, "request {i}: {answer}");
    }
    assert_eq!(p.mock.requests().len(), rounds);
}

/// A stream cut mid-way through a key without a budget records the usage it reported before
/// it broke: Anthropic's first event carries the prompt's tokens (and a placeholder output
/// token), which the provider bills whether or not the answer is whole. It was recorded as
/// no tokens at all, so `till usage` showed a cut request as free.
#[test]
fn a_cut_stream_without_a_budget_records_what_it_reported() {
    let p = ProxyEnv::with_options(
        till_mock::MockOptions::default(),
        "[prices.\"anthropic/claude-cut\"]\ninput = 1.0\noutput = 100.0\n\
         [prices.\"gemini/gemini-cut\"]\ninput = 1.0\noutput = 100.0\n",
    );
    for (family, op, model) in [
        ("anthropic", "messages", "claude-cut"),
        ("gemini", "generate", "gemini-cut"),
    ] {
        let name = format!("plain-{family}");
        p.create_key(&["--name", &name, "--scope", family]);
        let (v, stderr) = p.client(
            &["--key", &name],
            &[
                family,
                op,
                "--stream",
                "--model",
                model,
                "--max-tokens",
                "100",
            ],
        );
        assert_eq!(v["status"], 200, "{family}: {v}\n{stderr}");
        let rows = p.log_json();
        let row = rows.last().unwrap();
        assert_eq!(row["outcome"], "cut", "{row}");
        let input = row["input_tokens"].as_u64().unwrap();
        assert!(input > 0, "{family}: {row}");
        assert!(row["cost_usd"].as_f64().unwrap() > 0.0, "{family}: {row}");
    }
}

/// Every time a `--json` listing prints is RFC 3339 text (or null), whichever command prints it:
/// `list` and `status` and `log` printed Unix seconds where the `key` commands printed RFC 3339.
#[test]
fn every_json_time_is_rfc3339() {
    let p = ProxyEnv::new();
    p.create_key(&["--scope", "openai", "--name", "ci"]);
    let (v, _) = p.client(
        &["--scope", "openai/gpt-4o-mini"],
        &["openai", "chat", "--model", "gpt-4o"],
    );
    assert_eq!(v["status"], 403, "{v}");
    // A request row and its denial's alert.
    crate::support::poll_rows(&p, 1);
    fn times(v: &Value, field: Option<&str>, out: &mut Vec<(String, Value)>) {
        match v {
            Value::Object(map) => map.iter().for_each(|(k, v)| times(v, Some(k), out)),
            Value::Array(items) => items.iter().for_each(|v| times(v, field, out)),
            _ => {
                if let Some(f) = field
                    && (f == "at" || f.ends_with("_at") || f == "valid_until")
                {
                    out.push((f.to_string(), v.clone()));
                }
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for args in [
        &["list", "--json"][..],
        &["status", "--json"],
        &["key", "list", "--all", "--json"],
        &["key", "show", "ci", "--json"],
        &["log", "--json"],
        &["log", "--alerts", "--json"],
    ] {
        let (code, stdout, stderr) = output(p.env.till().args(args));
        assert_eq!(code, 0, "{args:?}: {stderr}");
        let v: Value = serde_json::from_str(&stdout).unwrap();
        let mut found = Vec::new();
        times(&v, None, &mut found);
        assert!(!found.is_empty(), "{args:?} printed no time: {stdout}");
        for (field, t) in found {
            match &t {
                Value::Null => {}
                Value::String(s) if humantime::parse_rfc3339(s).is_ok() => {}
                _ => panic!("{args:?}: `{field}` is {t}, not RFC 3339"),
            }
            seen.insert(format!("{} {field}", args[0]));
        }
    }
    for want in [
        "list added_at",
        "status added_at",
        "log at",
        "key expires_at",
    ] {
        assert!(seen.contains(want), "{want} not among {seen:?}");
    }
}
