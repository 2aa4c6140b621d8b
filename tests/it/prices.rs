//! `till prices`: the table in force, `update` from a LiteLLM-format file or URL (checked in
//! full before anything is written), `reset`, and a fetched copy's prices reaching the meter.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;

use serde_json::Value;

use crate::support::{ProxyEnv, TestEnv, output};

/// A table in LiteLLM's format with one price for the mock's default OpenAI model, chosen so
/// its cost is easy to recognise (USD 1000 and 2000 per million tokens).
const LITELLM: &str = r#"{
  "sample_spec": {"litellm_provider": "one of https://docs.litellm.ai/docs/providers", "input_cost_per_token": 0.0},
  "gpt-4o-mini": {"litellm_provider": "openai", "mode": "chat",
                  "input_cost_per_token": 0.001, "output_cost_per_token": 0.002,
                  "cache_read_input_token_cost": 0.0005},
  "claude-sonnet-5": {"litellm_provider": "anthropic", "mode": "chat",
                      "input_cost_per_token": 2e-06, "output_cost_per_token": 1e-05,
                      "cache_read_input_token_cost": 2e-07,
                      "cache_creation_input_token_cost": 2.5e-06,
                      "cache_creation_input_token_cost_above_1hr": 4e-06},
  "bedrock/anthropic.claude": {"litellm_provider": "bedrock", "input_cost_per_token": 1.0, "output_cost_per_token": 1.0}
}"#;

fn shown(env: &TestEnv, extra: &[&str]) -> Value {
    let (code, stdout, stderr) = output(env.till().arg("prices").arg("--json").args(extra));
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

fn price_of<'a>(v: &'a Value, model: &str) -> Option<&'a Value> {
    v["prices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == model)
}

#[test]
fn the_builtin_table_prices_the_agents_default_models() {
    let env = TestEnv::new();
    let v = shown(&env, &[]);
    assert_eq!(v["table"], "builtin");
    assert!(v["source"].as_str().unwrap().contains("LiteLLM"), "{v}");
    for model in [
        "anthropic/claude-opus-4-8",
        "anthropic/claude-sonnet-5",
        "openai/gpt-5.6-sol",
        "openai/gpt-5.5",
        "gemini/gemini-2.5-pro",
    ] {
        let p = price_of(&v, model).unwrap_or_else(|| panic!("{model} has no price"));
        assert!(p["input"].as_f64().unwrap() > 0.0, "{p}");
        assert!(p["output"].as_f64().unwrap() > 0.0, "{p}");
    }
    // Anthropic's cache writes and Gemini's long-prompt tier come with the table.
    let sonnet = price_of(&v, "anthropic/claude-sonnet-5").unwrap();
    assert!(sonnet["cache_write"].as_f64().unwrap() > sonnet["input"].as_f64().unwrap());
    let pro = price_of(&v, "gemini/gemini-2.5-pro").unwrap();
    assert_eq!(pro["tier"]["above"], 200_000, "{pro}");

    // The table view and its filter.
    let (code, stdout, stderr) = output(env.till().args(["prices", "claude-sonnet-5"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("MODEL"), "{stdout}");
    assert!(stdout.contains("anthropic/claude-sonnet-5 "), "{stdout}");
    assert!(!stdout.contains("openai/"), "{stdout}");
    assert!(stderr.contains("built into till"), "{stderr}");
    let (code, stdout, stderr) = output(env.till().args(["prices", "no-such-model-anywhere"]));
    assert_eq!(code, 0);
    assert!(
        stdout.is_empty() && stderr.contains("no model matches"),
        "{stderr}"
    );
}

/// How many prices `till prices update --from` writes from [`LITELLM`]: its two, and every
/// model of till's supplement (which that file does not list).
fn from_litellm_file() -> usize {
    2 + include_str!("../../data/prices-supplement.toml")
        .lines()
        .filter(|l| l.starts_with('"'))
        .count()
}

#[test]
fn update_from_a_file_replaces_the_table_and_reset_restores_the_builtin() {
    let env = TestEnv::new();
    let file = env.path("litellm.json");
    std::fs::write(&file, LITELLM).unwrap();
    // A table that lacks most of the models the one in use prices (another file, a cut
    // download) is refused without --force: it replaced the 400-odd built-in prices and
    // left six providers unpriced, with exit 0.
    let (code, _, stderr) = output(env.till().args(["prices", "update", "--from"]).arg(&file));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("nothing was changed"), "{stderr}");
    assert!(stderr.contains("--force keeps it anyway"), "{stderr}");
    assert!(!env.path("data/prices.toml").exists());
    assert_eq!(shown(&env, &[])["table"], "builtin");
    let (code, _, stderr) = output(
        env.till()
            .args(["prices", "update", "--force", "--from"])
            .arg(&file),
    );
    assert_eq!(code, 0, "{stderr}");
    // The file's two, and the supplement's models it does not list.
    let n = from_litellm_file();
    assert!(stderr.contains(&format!("{n} prices written")), "{stderr}");
    let v = shown(&env, &[]);
    assert_eq!(v["prices"].as_array().unwrap().len(), n, "{v}");
    assert!(price_of(&v, "openai/gpt-6.2-sol").is_some(), "{v}");
    assert!(v["source"].as_str().unwrap().contains("supplement"), "{v}");
    assert!(v["table"].as_str().unwrap().ends_with("prices.toml"), "{v}");
    let sonnet = price_of(&v, "anthropic/claude-sonnet-5").unwrap();
    assert_eq!(sonnet["cache_write_1h"], 4.0, "{sonnet}");
    assert!(price_of(&v, "bedrock/anthropic.claude").is_none());

    // config.toml still has the last word.
    env.config("[prices.\"openai/gpt-4o-mini\"]\ninput = 7\noutput = 8\n");
    let v = shown(&env, &["gpt-4o-mini"]);
    assert_eq!(v["prices"][0]["input"], 7.0, "{v}");
    assert_eq!(v["prices"][0]["config"], true, "{v}");
    // In the table the mark is in the model's column, and the columns stay in line.
    let (code, stdout, stderr) = output(env.till().args(["prices", "gpt-4o-mini"]));
    assert_eq!(code, 0, "{stderr}");
    let input_at = |line: &str| line.find(" INPUT").map(|i| i + " INPUT".len());
    let header = stdout.lines().next().unwrap();
    let marked = stdout
        .lines()
        .find(|l| l.contains("openai/gpt-4o-mini (config)"))
        .unwrap_or_else(|| panic!("{stdout}"));
    let end = input_at(header).unwrap();
    assert_eq!(&marked[end - 1..end], "7", "{stdout}");
    env.config("");

    let (code, _, stderr) = output(env.till().args(["prices", "reset"]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(shown(&env, &[])["table"], "builtin");
    let (code, _, stderr) = output(env.till().args(["prices", "reset"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("no fetched price table"), "{stderr}");
}

#[test]
fn a_bad_table_is_refused_and_leaves_the_current_one() {
    let env = TestEnv::new();
    let good = env.path("good.json");
    std::fs::write(&good, LITELLM).unwrap();
    let (code, _, _) = output(
        env.till()
            .args(["prices", "update", "--force", "--from"])
            .arg(&good),
    );
    assert_eq!(code, 0);
    let before = std::fs::read(env.path("data/prices.toml")).unwrap();
    for (name, text) in [
        ("html.json", "<html>rate limited</html>"),
        ("array.json", "[1, 2, 3]"),
        (
            "others.json",
            r#"{"x": {"litellm_provider": "bedrock", "input_cost_per_token": 1, "output_cost_per_token": 1}}"#,
        ),
        ("truncated.json", &LITELLM[..LITELLM.len() / 2]),
    ] {
        let path = env.path(name);
        std::fs::write(&path, text).unwrap();
        let (code, _, stderr) = output(
            env.till()
                .args(["prices", "update", "--force", "--from"])
                .arg(&path),
        );
        assert_eq!(code, 1, "{name}: {stderr}");
        assert!(stderr.contains("hint:"), "{name}: {stderr}");
        assert_eq!(
            std::fs::read(env.path("data/prices.toml")).unwrap(),
            before,
            "{name}"
        );
    }
    let (code, _, stderr) = output(env.till().args([
        "prices",
        "update",
        "--force",
        "--from",
        "/no/such/file.json",
    ]));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("cannot read /no/such/file.json"),
        "{stderr}"
    );
    // A directory opens, and its read fails: named the same way.
    let dir = env.path("data");
    let (code, _, stderr) = output(
        env.till()
            .args(["prices", "update", "--force", "--from"])
            .arg(&dir),
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot read {}", dir.display())) && stderr.contains("hint:"),
        "{stderr}"
    );
    // A table that no longer parses is an error with a way out, not a silent fallback.
    std::fs::write(env.path("data/prices.toml"), "as_of = 3\n").unwrap();
    let (code, _, stderr) = output(env.till().arg("prices"));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("till prices reset"), "{stderr}");
}

/// Serves `body` once over HTTP on loopback; returns the URL.
fn serve_once(body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/model_prices.json",
        listener.local_addr().unwrap()
    );
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
    });
    url
}

#[test]
fn a_fetched_table_prices_what_the_proxy_meters() {
    let p = ProxyEnv::new();
    let url = serve_once(LITELLM);
    let (code, _, stderr) = output(
        p.env
            .till()
            .args(["prices", "update", "--force", "--from", &url]),
    );
    assert_eq!(code, 0, "{stderr}");
    let (v, _) = p.client(&["--scope", "openai/gpt-4o-mini"], &["openai", "chat"]);
    let usage = &v["body"]["usage"];
    let (input, output_tokens) = (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
    );
    let (code, stdout, stderr) = output(p.env.till().args(["log", "--json"]));
    assert_eq!(code, 0, "{stderr}");
    let rows: Value = serde_json::from_str(&stdout).unwrap();
    let cost = rows[0]["cost_usd"].as_f64().unwrap();
    let expect = (input * 1000 + output_tokens * 2000) as f64 / 1e6;
    assert!((cost - expect).abs() < 1e-9, "{cost} vs {expect}");
}

/// A price that is not a number, infinite, negative or absurd would let budgets pass for free
/// or charge unknown models without bound: config.toml's is refused at load (exit 2, naming
/// the entry and the file), a fetched table's refuses the whole table (nothing replaced).
#[test]
fn prices_that_are_not_usable_are_refused() {
    let env = TestEnv::new();
    for (value, says) in [
        ("nan", "input is not a number"),
        ("-1.0", "input = -1 is negative"),
        ("inf", "input = inf is above 1,000,000"),
        ("-inf", "is negative"),
        ("1e308", "above 1,000,000 USD per million tokens"),
    ] {
        env.config(&format!(
            "[prices.\"openai/gpt-x\"]\ninput = {value}\noutput = 1\n"
        ));
        for args in [&["prices"][..], &["doctor"][..]] {
            let (code, stdout, stderr) = output(env.till().args(args));
            let text = format!("{stdout}{stderr}");
            assert_eq!(
                code,
                if args == ["doctor"] { 1 } else { 2 },
                "{value}: {text}"
            );
            assert!(
                text.contains("config.toml: [prices.\"openai/gpt-x\"]"),
                "{value}: {text}"
            );
            assert!(text.contains(says), "{value}: {text}");
        }
    }
    env.config("");

    let good = env.path("good.json");
    std::fs::write(&good, LITELLM).unwrap();
    let (code, _, stderr) = output(
        env.till()
            .args(["prices", "update", "--force", "--from"])
            .arg(&good),
    );
    assert_eq!(code, 0, "{stderr}");
    let before = std::fs::read(env.path("data/prices.toml")).unwrap();
    for (rate, says) in [("-1e-06", "is negative"), ("1e300", "above 1,000,000")] {
        let bad = LITELLM.replace(
            "\"input_cost_per_token\": 0.001",
            &format!("\"input_cost_per_token\": {rate}"),
        );
        let path = env.path("bad.json");
        std::fs::write(&path, bad).unwrap();
        let (code, _, stderr) = output(
            env.till()
                .args(["prices", "update", "--force", "--from"])
                .arg(&path),
        );
        assert_eq!(code, 1, "{rate}: {stderr}");
        assert!(stderr.contains("gpt-4o-mini: input = "), "{rate}: {stderr}");
        assert!(stderr.contains(says), "{rate}: {stderr}");
        assert_eq!(std::fs::read(env.path("data/prices.toml")).unwrap(), before);
    }
}

/// `till prices update` replaces the whole table: it says how many entries the new one has
/// against the one in use, and warns of the models it no longer prices.
#[test]
fn update_says_what_the_new_table_drops() {
    let env = TestEnv::new();
    let builtin = shown(&env, &[])["prices"].as_array().unwrap().len();
    let file = env.path("litellm.json");
    std::fs::write(&file, LITELLM).unwrap();
    let (code, _, stderr) = output(
        env.till()
            .args(["prices", "update", "--force", "--from"])
            .arg(&file),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("{} prices written to ", from_litellm_file()))
            && stderr.contains(&format!("in place of the {builtin} of the table in use")),
        "{stderr}"
    );
    assert!(stderr.contains("warning: "), "{stderr}");
    assert!(
        stderr.contains("models priced before are not in the new table"),
        "{stderr}"
    );
    assert!(stderr.contains("gemini"), "{stderr}");
    assert!(stderr.contains("till prices reset"), "{stderr}");
    // The same table again drops nothing.
    let (code, _, stderr) = output(
        env.till()
            .args(["prices", "update", "--force", "--from"])
            .arg(&file),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "in place of the {} of the table in use (0 new or changed, 0 gone)",
            from_litellm_file()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("warning"), "{stderr}");
}
