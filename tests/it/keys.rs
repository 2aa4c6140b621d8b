//! Child keys through the CLI and `till serve`: create, revoke, expiry, tampering, sessions,
//! nesting, and the errors for bad scope input.

use crate::support::{PASSPHRASE, ProxyEnv, TestEnv, client_with_key, output, output_with_stdin};

fn status(v: &serde_json::Value) -> u64 {
    v["status"].as_u64().unwrap()
}

#[test]
fn created_key_works_through_serve_and_revocation_reaches_descendants() {
    let p = ProxyEnv::new();
    let serve = p.serve();
    let parent = p.create_key(&["--name", "ci", "--scope", "openai/gpt-4o*", "--ttl", "1h"]);
    assert!(parent.starts_with("till_"));
    let ok = client_with_key(
        &serve.url,
        &parent,
        &["openai", "chat", "--model", "gpt-4o-mini"],
    );
    assert_eq!(status(&ok), 200, "{ok}");

    // Attenuate offline (no store at all) and use the child.
    let (code, child, stderr) = output_with_stdin(
        TestEnv::new()
            .bare()
            .args(["key", "attenuate", "--scope", "openai/gpt-4o-mini"]),
        &parent,
    );
    assert_eq!(code, 0, "{stderr}");
    let child = child.trim().to_string();
    let denied = client_with_key(&serve.url, &child, &["openai", "chat", "--model", "gpt-4o"]);
    assert_eq!(status(&denied), 403, "{denied}");
    assert_eq!(
        status(&client_with_key(&serve.url, &child, &["openai", "chat"])),
        200
    );

    // Revoking the child leaves the parent working.
    let (code, _, stderr) = output(p.env.till().args(["key", "revoke", &child]));
    assert_eq!(code, 0, "{stderr}");
    let v = client_with_key(&serve.url, &child, &["openai", "chat"]);
    assert_eq!(status(&v), 401, "{v}");
    assert_eq!(v["body"]["error"]["code"], "till_revoked");
    assert_eq!(
        status(&client_with_key(&serve.url, &parent, &["openai", "chat"])),
        200
    );

    // Revoking the parent by name revokes a fresh child of it too.
    let (_, child2, _) = output_with_stdin(
        TestEnv::new()
            .bare()
            .args(["key", "attenuate", "--rpm", "5"]),
        &parent,
    );
    let (code, _, stderr) = output(p.env.till().args(["key", "revoke", "ci"]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        status(&client_with_key(&serve.url, &parent, &["openai", "chat"])),
        401
    );
    assert_eq!(
        status(&client_with_key(
            &serve.url,
            child2.trim(),
            &["openai", "chat"]
        )),
        401
    );

    let (_, list, _) = output(p.env.till().args(["key", "list", "--all", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(v[0]["name"], "ci");
    assert_eq!(v[0]["status"], "revoked");
    assert!(
        !list.contains(&parent),
        "key list must not contain key material"
    );
}

#[test]
fn expired_and_tampered_keys_get_401_in_shape() {
    let p = ProxyEnv::new();
    let serve = p.serve();
    let key = p.create_key(&["--scope", "anthropic", "--ttl", "1s"]);
    // Wait for the expiry to pass (a clock condition, bounded).
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let v = client_with_key(&serve.url, &key, &["anthropic", "messages"]);
    assert_eq!(status(&v), 401, "{v}");
    assert_eq!(v["body"]["error"]["type"], "authentication_error");
    let msg = v["body"]["error"]["message"].as_str().unwrap();
    assert!(msg.contains("expired at 20"), "{msg}");

    let good = p.create_key(&["--scope", "gemini"]);
    let mut bytes = good.into_bytes();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    let v = client_with_key(&serve.url, &tampered, &["gemini", "generate"]);
    assert_eq!(status(&v), 401, "{v}");
    assert_eq!(v["body"]["error"]["status"], "UNAUTHENTICATED");
    p.assert_upstream_saw_only_root_keys_or_nothing();
}

#[test]
fn a_session_key_works_only_on_its_own_run() {
    let p = ProxyEnv::new();
    let (code, key, stderr) = p.run(&["--", "sh", "-c", "echo $OPENAI_API_KEY"]);
    assert_eq!(code, 0, "{stderr}");
    let key = key.trim().to_string();
    // Another run's proxy refuses it.
    let script = format!(
        "OPENAI_API_KEY={key} python3 {}",
        crate::support::client_script()
    ) + " openai chat";
    let (code, stdout, stderr) = p.run(&["--", "sh", "-c", &script]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(status(&v), 401, "{v}");
    assert_eq!(v["body"]["error"]["code"], "till_session");
    // So does till serve.
    let serve = p.serve();
    assert_eq!(
        status(&client_with_key(&serve.url, &key, &["openai", "chat"])),
        401
    );
}

#[test]
fn nested_runs_narrow_and_cannot_widen() {
    let p = ProxyEnv::new();
    let client = crate::support::client_script();
    let inner = format!(
        "till run --scope openai/gpt-4o-mini -- python3 {client} openai chat --model gpt-4o; \
         till run --scope openai/gpt-4o-mini -- python3 {client} openai chat --model gpt-4o-mini; \
         till run --scope anthropic -- true; echo widen=$?; \
         till run --rpm 1 -- sh -c 'test -z \"$TILL_PASSPHRASE\" && echo no-passphrase'"
    );
    let path = crate::support::path_with_till();
    let (code, stdout, stderr) = output(
        p.env
            .till()
            .env("PATH", path)
            .args(["run", "--scope", "openai", "--", "sh", "-c", &inner]),
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(status(&first), 403, "{stdout}");
    let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(status(&second), 200, "{stdout}");
    assert!(stdout.contains("widen=2"), "{stdout}\n{stderr}");
    assert!(stderr.contains("cannot widen"), "{stderr}");
    assert!(stdout.contains("no-passphrase"), "{stdout}");
    // All of it went through the one outer proxy, whose summary counts every request.
    assert!(
        stderr.contains("2 requests (1 denied: model 1)"),
        "{stderr}"
    );
}

/// A TILL_KEY and TILL_PROXY_URL left behind after their run (a terminal multiplexer started
/// inside one, a planted `.envrc`) do not make a later run nested through whatever the URL
/// names; a nested run keeps a passphrase set since its outer run out of the agent's reach.
#[test]
fn a_stale_or_foreign_outer_run_is_refused_and_a_nested_run_keeps_the_passphrase_out() {
    let p = ProxyEnv::new();
    let key = p.create_key(&["--scope", "openai"]);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    for url in [
        dead.as_str(),
        "https://attacker.example",
        "http://10.1.2.3:8417",
    ] {
        let (code, stdout, stderr) = output(
            p.env
                .till()
                .env("TILL_KEY", &key)
                .env("TILL_PROXY_URL", url)
                .args(["run", "--", "sh", "-c", "echo ran"]),
        );
        assert_eq!(code, 1, "{url}: {stdout}\n{stderr}");
        assert!(!stdout.contains("ran"), "{url}: {stdout}");
        assert!(
            stderr.contains("unset TILL_KEY TILL_PROXY_URL"),
            "{url}: {stderr}"
        );
    }
    // A TILL_KEY that is not a key at all gets the same way out.
    let (code, _, stderr) = output(
        p.env
            .till()
            .env("TILL_KEY", "till_garbage")
            .env("TILL_PROXY_URL", &dead)
            .args(["run", "--", "true"]),
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("unset TILL_KEY TILL_PROXY_URL"), "{stderr}");
    // A store command inside a run says why it cannot open the store.
    let (code, _, stderr) = output(
        p.env
            .till()
            .env("TILL_KEY", &key)
            .env_remove("TILL_PASSPHRASE")
            .args(["key", "create", "--scope", "openai"]),
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("this is inside a till run"), "{stderr}");
    assert!(!stderr.contains("set TILL_PASSPHRASE"), "{stderr}");
    // Inside a real run, a passphrase set again (under its name or another) stays out.
    let path = crate::support::path_with_till();
    let inner =
        format!("TILL_PASSPHRASE='{PASSPHRASE}' MY_COPY='x{PASSPHRASE}' till run -- sh -c 'env'");
    let (code, stdout, stderr) = output(
        p.env
            .till()
            .env("PATH", path)
            .args(["run", "--scope", "openai", "--", "sh", "-c", &inner]),
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stderr.contains("a nested run"), "{stderr}");
    assert!(stdout.contains("TILL_KEY="), "{stdout}");
    assert!(!stdout.contains(PASSPHRASE), "{stdout}");
}

/// A whole key given to `till run --key` is in the command line every local user can read:
/// till says so, and names the way that keeps it out (a key's name).
#[test]
fn a_whole_key_on_the_command_line_is_warned_of() {
    let p = ProxyEnv::new();
    let key = p.create_key(&["--scope", "openai", "--name", "named"]);
    let (code, _, stderr) = output(p.env.till().args(["run", "--key", &key, "--", "true"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("visible to every user"), "{stderr}");
    let (code, _, stderr) = output(p.env.till().args(["run", "--key", "named", "--", "true"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("visible to every user"), "{stderr}");
}

/// A provider's key pasted where a till key's name belongs is refused without being repeated
/// to the terminal; a name that is no key's is named.
#[test]
fn a_provider_key_given_for_a_till_key_is_not_repeated() {
    let p = ProxyEnv::new();
    let pasted = "sk-proj-PASTEDROOTKEY0123456789abcdef";
    for args in [
        vec!["key", "show", pasted],
        vec!["key", "revoke", pasted],
        vec!["log", "--key", pasted],
        vec!["usage", "--key", pasted],
        vec!["run", "--key", pasted, "--", "true"],
    ] {
        let (code, stdout, stderr) = output(p.env.till().args(&args));
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            stderr.contains("looks like a provider's key"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("PASTEDROOTKEY") && !stdout.contains("PASTEDROOTKEY"));
    }
    let (code, _, stderr) = output(p.env.till().args(["key", "show", "no-such-name"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("`no-such-name`"), "{stderr}");
    // Pasted where a name, a provider, a variable or a value belongs: refused, and cut to its
    // prefix in the message; no key is stored under it.
    for args in [
        vec!["key", "create", "--scope", "openai", "--name", pasted],
        vec!["key", "create", "--scope", pasted],
        vec!["key", "create", "--scope", "openai", "--budget", pasted],
        vec!["add", pasted],
        vec!["add", "openai", "--from-env", pasted],
    ] {
        let (code, stdout, stderr) = output(p.env.till().args(&args));
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            !stderr.contains("PASTEDROOTKEY") && !stdout.contains("PASTEDROOTKEY"),
            "{args:?}: {stderr}"
        );
    }
    let (_, list, _) = output(p.env.till().args(["key", "list", "--all"]));
    assert!(!list.contains("PASTEDROOTKEY"), "{list}");
    // The variable's hint does not repeat the key as a name (it said `export sk-…=…`).
    let (_, _, stderr) = output(p.env.till().args(["add", "openai", "--from-env", pasted]));
    assert!(
        stderr.contains(
            "--from-env takes the name of an environment variable that holds the key, not the key"
        ) && stderr.contains("hint: export NAME=… first, then give --from-env NAME"),
        "{stderr}"
    );
}

#[test]
fn bad_scope_input_is_explained_with_exit_2() {
    let p = ProxyEnv::new();
    let (code, _, stderr) =
        output(
            p.env
                .till()
                .args(["key", "create", "--scope", "openai/gpt-4o["]),
        );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("position"), "{stderr}");
    let (code, _, stderr) = output(p.env.till().args(["key", "create", "--scope", "opnai"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("hint: did you mean `openai`?"), "{stderr}");
    // No key on an empty stdin.
    for sub in ["attenuate", "inspect"] {
        let (code, _, stderr) = output(p.env.till().args(["key", sub]));
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains("no key given"), "{sub}: {stderr}");
    }
    // A value that starts with `-` is read as the value, and till says what is wrong with it.
    for (flag, value) in [("--budget", "-1usd"), ("--ttl", "-1h")] {
        let (code, _, stderr) = output(
            p.env
                .till()
                .args(["key", "create", "--scope", "openai", flag, value]),
        );
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.contains(&format!("invalid {flag} `{value}`")),
            "{stderr}"
        );
    }
    let (code, _, stderr) = output(
        p.env
            .till()
            .args(["key", "create", "--scope", "openai", "--ttl", "400d"]),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("hint:") && stderr.contains("max_ttl"),
        "{stderr}"
    );
    let (code, _, stderr) = output(
        p.env
            .till()
            .args(["key", "create", "--budget", "5 dollars"]),
    );
    assert_eq!(code, 2, "{stderr}");
    let (code, _, stderr) = output(
        p.env
            .till()
            .args(["key", "create", "--endpoints", "inferenc"]),
    );
    assert_eq!(code, 2, "{stderr}");
}

/// A `till_` argument with a multi-byte character where the error message cuts its head
/// off is a usage error, not a panic: the message shows only that head (never the whole
/// argument, which may be a key), and no key is revoked, not even a valid one given with it.
#[test]
fn revoking_a_non_ascii_key_is_a_usage_error_that_revokes_nothing() {
    let p = ProxyEnv::new();
    let good = p.create_key(&["--scope", "openai"]);
    let long = format!("till_aaaaaa\u{e9}{}", "s3cret".repeat(12));
    for bad in ["till_aaaaaa\u{e9}\u{e9}", long.as_str()] {
        let (code, stdout, stderr) = output(p.env.till().args(["key", "revoke", &good, bad]));
        assert_eq!(code, 2, "{bad}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            !stderr.contains(bad),
            "the whole argument in stderr: {stderr}"
        );
        assert!(!stdout.contains(bad), "{stdout}");
        assert!(stderr.contains("`till_aaaaaa…`"), "{stderr}");
    }
    // A name that names nothing beside a real one: the message says the real one was left
    // alone too.
    p.create_key(&["--name", "ci", "--scope", "openai"]);
    let (code, _, stderr) = output(p.env.till().args(["key", "revoke", "ci", "nosuch"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("no key named or with id `nosuch`; none of the 2 keys given was revoked"),
        "{stderr}"
    );
    let (code, stdout, stderr) = output(p.env.till().args(["key", "list", "--all", "--json"]));
    assert_eq!(code, 0, "{stderr}");
    let keys: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 2, "{keys}");
    assert!(
        keys.as_array()
            .unwrap()
            .iter()
            .all(|k| k["status"] == "active"),
        "{keys}"
    );
    let revocations: i64 = rusqlite::Connection::open(p.env.path("data/ledger.sqlite3"))
        .unwrap()
        .query_row("SELECT count(*) FROM revocations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(revocations, 0);
}

/// Arguments that name no key leave nothing behind, not even an empty ledger in a home that
/// had none; a name is looked up only once every key given beside it has been read.
#[test]
fn revoking_nothing_in_an_empty_home_makes_no_ledger() {
    let env = TestEnv::new();
    for args in [
        &["key", "revoke", "till_aaaaaaaaaaaa"][..],
        &["key", "revoke", "nobody"],
        &["key", "revoke", "nobody", "till_aaaaaaaaaaaa"],
    ] {
        let (code, _, stderr) = output(env.till().args(args));
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            !env.path("data").exists(),
            "{args:?} made {:?}",
            env.path("data")
        );
    }
    let (_, _, stderr) = output(env.till().args(["key", "revoke", "nobody"]));
    assert!(
        stderr.contains("no key named or with id `nobody`"),
        "{stderr}"
    );
    assert!(stderr.contains("hint:"), "{stderr}");
}

#[test]
fn inspect_needs_no_secret_and_shows_limits() {
    let p = ProxyEnv::new();
    let key = p.create_key(&[
        "--scope",
        "openai/gpt-4o-mini",
        "--budget",
        "5usd",
        "--rpm",
        "30",
    ]);
    let (code, stdout, stderr) = output(TestEnv::new().bare().args(["key", "inspect", &key]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("--scope openai/gpt-4o-mini"), "{stdout}");
    assert!(stdout.contains("--budget 5usd"), "{stdout}");
    assert!(stdout.contains("--rpm 30"), "{stdout}");
}

#[test]
fn gitleaks_rule_matches_created_keys() {
    let p = ProxyEnv::new();
    let key = p.create_key(&["--scope", "openai"]);
    let rules =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/gitleaks.toml")).unwrap();
    assert!(
        rules.contains(till::childkey::TOKEN_REGEX)
            || rules.contains(&till::childkey::TOKEN_REGEX.replace('\\', "\\\\")),
        "gitleaks.toml must use TOKEN_REGEX"
    );
    // The regex, applied by hand (it is `till_` then 78+ base64url characters).
    let body = key.strip_prefix("till_").unwrap();
    assert!(
        body.len() >= 78
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
}

/// `key show` and `key inspect` tell a key's standing from the ledger alone (no store, no
/// mint key): a grandchild of a revoked created key, and a grandchild of a revoked narrowed
/// key, are revoked by that ancestor, just as the proxy refuses them.
#[test]
fn show_and_inspect_tell_revoked_ancestors_without_the_keychain() {
    let p = ProxyEnv::new();
    let serve = p.serve();
    let narrow = |key: &str, flags: &[&str]| -> String {
        let (code, out, stderr) = output_with_stdin(
            TestEnv::new().bare().args(["key", "attenuate"]).args(flags),
            key,
        );
        assert_eq!(code, 0, "{stderr}");
        out.trim().to_string()
    };
    // `bare()`: no store selected and no passphrase, so any secret access would fail.
    let standing = |key: &str, verb: &str| -> serde_json::Value {
        let (code, out, stderr) = output(p.env.bare().args(["key", verb, key, "--json"]));
        assert_eq!(code, 0, "{verb}: {stderr}");
        serde_json::from_str(&out).unwrap()
    };
    let ci = p.create_key(&["--name", "ci", "--scope", "openai", "--ttl", "1h"]);
    let child = narrow(&ci, &["--scope", "openai/gpt-4o*"]);
    let grandchild = narrow(&child, &["--rpm", "10"]);
    for verb in ["show", "inspect"] {
        let v = standing(&grandchild, verb);
        assert_eq!(v["status"], "active", "{verb}: {v}");
        assert!(v["revoked_by"].is_null(), "{v}");
    }
    assert_eq!(
        status(&client_with_key(
            &serve.url,
            &grandchild,
            &["openai", "chat"]
        )),
        200
    );

    // A narrowed key revoked by its text: its descendants name it.
    let other = narrow(&ci, &["--scope", "openai/gpt-4o-mini"]);
    let other_child = narrow(&other, &["--ttl", "30m"]);
    let other_grandchild = narrow(&other_child, &["--rpm", "5"]);
    let (code, _, stderr) = output(p.env.till().args(["key", "revoke", &other_child]));
    assert_eq!(code, 0, "{stderr}");
    let v = standing(&other_grandchild, "show");
    assert_eq!(v["status"], "revoked", "{v}");
    let by = v["revoked_by"].as_str().unwrap().to_string();
    assert!(!by.is_empty() && by != "ci", "{v}");
    assert_eq!(standing(&other_child, "inspect")["status"], "revoked");
    assert!(standing(&other_child, "inspect")["revoked_by"].is_null());
    // Its parent and siblings are untouched.
    assert_eq!(standing(&other, "show")["status"], "active");
    assert_eq!(standing(&grandchild, "show")["status"], "active");
    let refused = client_with_key(&serve.url, &other_grandchild, &["openai", "chat"]);
    assert_eq!(status(&refused), 401, "{refused}");

    // The created key revoked by name: every descendant is revoked by `ci`.
    let (code, _, stderr) = output(p.env.till().args(["key", "revoke", "ci"]));
    assert_eq!(code, 0, "{stderr}");
    for verb in ["show", "inspect"] {
        let v = standing(&grandchild, verb);
        assert_eq!(v["status"], "revoked", "{verb}: {v}");
        assert_eq!(v["revoked_by"], "ci", "{verb}: {v}");
    }
    let (code, text, _) = output(p.env.bare().args(["key", "show", &grandchild]));
    assert_eq!(code, 0);
    assert!(
        text.contains("status:  revoked: `ci`, a key it was narrowed from, was revoked at"),
        "{text}"
    );
    assert_eq!(
        status(&client_with_key(
            &serve.url,
            &grandchild,
            &["openai", "chat"]
        )),
        401
    );

    // An expired narrowed key, and a key from another till's mint key.
    let short = narrow(&p.create_key(&["--ttl", "1h"]), &["--ttl", "1s"]);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(standing(&short, "inspect")["status"], "expired");
    let stranger = ProxyEnv::new().create_key(&["--ttl", "1h"]);
    let v = standing(&stranger, "inspect");
    assert_eq!(v["status"], "invalid", "{v}");
    // Without a ledger (inside a sandbox) only the expiry can be told.
    let (code, out, _) = output(TestEnv::new().bare().args(["key", "inspect", &grandchild]));
    assert_eq!(code, 0);
    assert!(out.contains("status:  unknown"), "{out}");
}

/// A copy of a key with its scope and lineage but another signature (a "leaked key" an agent
/// plants as a decoy) was revoked by its text with "revoked … and every key narrowed from it",
/// and `till key show` of the real key said revoked, while the proxy went on serving it: the
/// decoy's revocation named nothing that exists. Now a text whose signature does not check
/// revokes nothing and says so; the real key's text revokes it.
#[test]
fn an_altered_key_text_revokes_nothing_and_says_so() {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let p = ProxyEnv::new();
    let serve = p.serve();
    let created = p.create_key(&["--name", "victim", "--scope", "openai", "--ttl", "1h"]);
    let (code, child, stderr) = output_with_stdin(
        p.env
            .till()
            .args(["key", "attenuate", "--max-requests", "1000"]),
        &created,
    );
    assert_eq!(code, 0, "{stderr}");
    let child = child.trim().to_string();
    // The same text with its tag's bytes flipped and the checksum made right again.
    let mut body = URL_SAFE_NO_PAD
        .decode(child.strip_prefix("till_").unwrap())
        .unwrap();
    let payload = body.len() - 4;
    for b in &mut body[payload - 32..payload] {
        *b ^= 0x5a;
    }
    let crc = crc32fast::hash(&body[..payload]).to_be_bytes();
    body[payload..].copy_from_slice(&crc);
    let decoy = format!("till_{}", URL_SAFE_NO_PAD.encode(&body));
    let (code, _, stderr) = output(p.env.till().args(["key", "inspect", &decoy]));
    assert_eq!(code, 0, "the decoy decodes: {stderr}");

    let (code, _, stderr) = output(p.env.till().args(["key", "revoke", &decoy]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("signature does not verify"), "{stderr}");
    assert!(stderr.contains("nothing was revoked"), "{stderr}");
    assert!(!stderr.contains(&decoy), "{stderr}");
    let (_, shown, _) = output(p.env.till().args(["key", "show", &child, "--json"]));
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["status"], "active", "{shown}");
    let ok = client_with_key(&serve.url, &child, &["openai", "chat"]);
    assert_eq!(status(&ok), 200, "{ok}");

    let (code, _, stderr) = output(p.env.till().args(["key", "revoke", &child]));
    assert_eq!(code, 0, "{stderr}");
    let gone = client_with_key(&serve.url, &child, &["openai", "chat"]);
    assert_eq!(status(&gone), 401, "{gone}");
}

/// A key narrowed from a created one (a run's, a sub-agent's, one made offline) is listed
/// nowhere but in `till log`, by its id: `till key revoke ID` answered "no key named or with
/// id", so stopping one misbehaving sub-agent took its key's text or its parent's revocation.
#[test]
fn a_narrowed_key_is_revoked_by_the_id_till_log_shows() {
    let p = ProxyEnv::new();
    let serve = p.serve();
    let parent = p.create_key(&["--name", "team", "--scope", "openai", "--ttl", "1h"]);
    let narrow = |flags: &[&str]| {
        let (code, out, stderr) =
            output_with_stdin(p.env.till().args(["key", "attenuate"]).args(flags), &parent);
        assert_eq!(code, 0, "{stderr}");
        out.trim().to_string()
    };
    let (one, other) = (narrow(&["--rpm", "50"]), narrow(&["--rpm", "60"]));
    for key in [&one, &other] {
        assert_eq!(
            status(&client_with_key(&serve.url, key, &["openai", "chat"])),
            200
        );
    }
    // The ledger's writer batches its rows: wait for both.
    let mut rows = p.log_json();
    for _ in 0..100 {
        if rows.len() >= 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        rows = p.log_json();
    }
    let ids: Vec<String> = rows
        .iter()
        .map(|r| r["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2, "{rows:?}");
    assert_ne!(ids[0], ids[1]);
    let (code, inspected, stderr) = output(p.env.till().args(["key", "inspect", &other, "--json"]));
    assert_eq!(code, 0, "{stderr}");
    let inspected: serde_json::Value = serde_json::from_str(&inspected).unwrap();
    let id = inspected["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{inspected}"));
    assert!(ids.iter().any(|i| i == id), "{id} in {ids:?}");
    // `till key show` finds it by that id too (it said "no key named or with id").
    let (code, shown, stderr) = output(p.env.till().args(["key", "show", id]));
    assert_eq!(code, 0, "{stderr}");
    assert!(shown.contains(&format!("id:       {id}")), "{shown}");
    assert!(
        shown.contains("(team)"),
        "the created key it came from: {shown}"
    );
    assert!(shown.contains("not revoked"), "{shown}");
    assert!(shown.contains("in 1 request,"), "{shown}");
    let (code, _, stderr) = output(p.env.till().args(["key", "revoke", id]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains(&format!("revoked {id}")), "{stderr}");
    let (code, shown, stderr) = output(p.env.till().args(["key", "show", id, "--json"]));
    assert_eq!(code, 0, "{stderr}");
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["status"], "revoked", "{shown}");
    assert_eq!(
        status(&client_with_key(&serve.url, &other, &["openai", "chat"])),
        401
    );
    assert_eq!(
        status(&client_with_key(&serve.url, &one, &["openai", "chat"])),
        200
    );
    // Its parent's revocation shows on the other one.
    let one_id = ids.iter().find(|i| *i != id).unwrap();
    let (code, _, stderr) = output(p.env.till().args(["key", "revoke", "team"]));
    assert_eq!(code, 0, "{stderr}");
    let (code, shown, stderr) = output(p.env.till().args(["key", "show", one_id]));
    assert_eq!(code, 0, "{stderr}");
    assert!(shown.contains("a key it was narrowed from"), "{shown}");
    assert_eq!(
        status(&client_with_key(&serve.url, &one, &["openai", "chat"])),
        401
    );
    // An id that names nothing: a narrowed key that made no request is revoked by its text.
    let (code, _, stderr) = output(p.env.till().args(["key", "revoke", "abcdef012345"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("no key with it has made a request"),
        "{stderr}"
    );
    assert!(stderr.contains("is revoked by its text"), "{stderr}");
}

/// A ledger deleted under a running proxy would hide from it every revocation made after (a
/// revoke then makes a new ledger the proxy does not read): the proxy stops taking requests,
/// and the revoke says what happened.
#[test]
fn a_proxy_whose_ledger_is_deleted_stops_taking_requests() {
    // The whole ledger, or only its write-ahead log and shared memory (the proxy would go on
    // in files no other till reads).
    for deleted in [&["", "-wal", "-shm"][..], &["-wal", "-shm"]] {
        let p = ProxyEnv::new();
        let serve = p.serve();
        let key = p.create_key(&["--scope", "openai", "--name", "gone"]);
        let ok = client_with_key(&serve.url, &key, &["openai", "chat"]);
        assert_eq!(status(&ok), 200, "{ok}");
        for suffix in deleted {
            std::fs::remove_file(p.env.path(&format!("data/ledger.sqlite3{suffix}"))).unwrap();
        }
        let (code, _, stderr) = output(p.env.till().args(["key", "revoke", &key]));
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(
            stderr.contains("there was no ledger"),
            deleted.contains(&""),
            "{stderr}"
        );
        // The proxy looks at its ledger's files once a second.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let gone = client_with_key(&serve.url, &key, &["openai", "chat"]);
        assert_eq!(status(&gone), 503, "{deleted:?}: {gone}");
        assert!(gone.to_string().contains("ledger_gone"), "{gone}");
        let chats = p
            .mock
            .requests()
            .into_iter()
            .filter(|r| r.path == "/v1/chat/completions")
            .count();
        assert_eq!(chats, 1, "only the request before the ledger went");
    }
}

/// A store restored from a backup taken before the mint key was made: doctor says so (exit 1)
/// and `till key create` names the fix, `till rotate --mint`, which makes things work again.
#[test]
fn a_mint_key_missing_from_the_store_is_found_and_named() {
    let env = TestEnv::new();
    let (code, _, stderr) = output_with_stdin(
        env.till().args(["add", "openai", "--no-verify"]),
        "sk-test-1",
    );
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = output(env.till().args(["doctor"]));
    assert_eq!(code, 0, "{stderr}");
    let backup = std::fs::read(env.path("data/secrets.age")).unwrap();
    let (code, _, stderr) = output(env.till().args(["key", "create"]));
    assert_eq!(code, 0, "{stderr}");
    std::fs::write(env.path("data/secrets.age"), backup).unwrap();

    let (code, stdout, _) = output(env.till().args(["doctor"]));
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("FAIL mint key: "), "{stdout}");
    assert!(stdout.contains("till rotate --mint"), "{stdout}");
    for args in [&["key", "create"][..], &["run", "--", "true"][..]] {
        let (code, _, stderr) = output(env.till().args(args));
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(stderr.contains("missing from the file store"), "{stderr}");
        assert!(
            stderr.contains("hint: make a new one with `till rotate --mint`"),
            "{stderr}"
        );
    }

    let (code, _, stderr) = output(env.till().args(["rotate", "--mint", "--yes"]));
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, _) = output(env.till().args(["doctor"]));
    assert_eq!(code, 0, "{stdout}");
    let (code, _, stderr) = output(env.till().args(["key", "create"]));
    assert_eq!(code, 0, "{stderr}");
}

/// A key whose text could not be written out (a full disk, a closed pipe) was never seen, so
/// it is not kept: the command fails (1) and its name stays free.
#[cfg(target_os = "linux")]
#[test]
fn a_key_that_could_not_be_shown_is_not_kept() {
    let p = ProxyEnv::new();
    for json in [false, true] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let mut cmd = p.env.till();
        cmd.args(["key", "create", "--scope", "openai", "--name", "ci"]);
        if json {
            cmd.arg("--json");
        }
        let out = cmd
            .stdin(std::process::Stdio::null())
            .stdout(full)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("not kept"), "{stderr}");
    }
    let (_, list, _) = output(p.env.till().args(["key", "list", "--all", "--json"]));
    let keys: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(keys.as_array().map(Vec::len), Some(0), "{keys}");
    p.create_key(&["--scope", "openai", "--name", "ci"]);
}

/// A key sent to /dev/null, or to a stdout closed before till started (which the runtime
/// fills with /dev/null, so every write "succeeds"), would be a live key nobody ever saw: it is
/// refused (2) before anything is made.
#[cfg(unix)]
#[test]
fn a_key_nobody_could_see_is_not_made() {
    let p = ProxyEnv::new();
    use std::os::unix::process::CommandExt as _;
    for closed in [false, true] {
        let mut cmd = p.env.till();
        cmd.args(["key", "create", "--scope", "openai", "--name", "gone"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null());
        if closed {
            // SAFETY: close(2) is async-signal-safe, and descriptor 1 is the child's own.
            unsafe {
                cmd.pre_exec(|| {
                    libc::close(1);
                    Ok(())
                });
            }
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "closed {closed}: {stderr}");
        assert!(stderr.contains("would never be seen"), "{stderr}");
        assert!(stderr.contains("hint: keep it in a variable"), "{stderr}");
    }
    let (_, list, _) = output(p.env.till().args(["key", "list", "--all", "--json"]));
    let keys: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(keys.as_array().map(Vec::len), Some(0), "{keys}");
}

/// `till run --key K` with a flag wider than K (another provider, a larger budget, a longer
/// ttl) is refused (2), as `till key attenuate` refuses it, rather than run with K's scope and
/// met with refusals whose hint is that flag; flags within K narrow it.
#[test]
fn run_with_a_key_refuses_flags_wider_than_the_key() {
    let p = ProxyEnv::new();
    p.create_key(&[
        "--scope", "openai", "--budget", "1usd", "--ttl", "1h", "--name", "base",
    ]);
    for wider in [
        &["--scope", "anthropic"][..],
        &["--budget", "5usd"][..],
        &["--ttl", "2h"][..],
    ] {
        let (code, _, stderr) = output(
            p.env
                .till()
                .args(["run", "--key", "base"])
                .args(wider)
                .args(["--", "true"]),
        );
        assert_eq!(code, 2, "{wider:?}: {stderr}");
        assert!(stderr.contains("cannot widen"), "{wider:?}: {stderr}");
    }
    let (code, _, stderr) = output(p.env.till().args([
        "run", "--key", "base", "--budget", "0.5usd", "--ttl", "10m", "--", "true",
    ]));
    assert_eq!(code, 0, "{stderr}");
}

/// Several `till key create --name same` at once: one makes the key, every other is told the
/// name is taken (2), as one run after it is, never a raw SQLite error.
#[test]
fn racing_creates_of_one_name_make_one_key_and_clear_errors() {
    let p = ProxyEnv::new();
    let children: Vec<_> = (0..6)
        .map(|_| {
            p.env
                .till()
                .args(["key", "create", "--scope", "openai", "--name", "same"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut made = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) => made += 1,
            Some(2) => assert!(stderr.contains("already exists"), "{stderr}"),
            other => panic!("{other:?}: {stderr}"),
        }
    }
    assert_eq!(made, 1);
}

/// A ledger that is not a database is named in the error's hint, with what to do about it.
#[test]
fn a_damaged_ledger_gets_a_hint() {
    let p = ProxyEnv::new();
    std::fs::write(
        p.env.path("data/ledger.sqlite3"),
        b"this is not a database, but it is long enough to be read as one's header. ".repeat(64),
    )
    .unwrap();
    let (code, _, stderr) = output(p.env.till().args(["key", "list"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("hint:") && stderr.contains("ledger.sqlite3 is damaged"),
        "{stderr}"
    );
}

/// A key with a dollar and a token budget showed only the dollars in `till key list`, though
/// either may be the one that refuses; and the wider column keeps the scopes in line.
#[test]
fn key_list_shows_both_budgets_of_a_key_and_keeps_its_columns() {
    let p = ProxyEnv::new();
    p.create_key(&[
        "--name", "both", "--scope", "openai", "--budget", "1usd", "--budget", "100ktok",
    ]);
    p.create_key(&["--name", "one", "--scope", "openai", "--budget", "1usd"]);
    let (code, list, stderr) = output(p.env.till().args(["key", "list"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(list.contains("$0 of $1.00, 0 of 100000 tok"), "{list}");
    let scope_at: Vec<usize> = list
        .lines()
        .map(|l| l.find("SCOPE").or_else(|| l.find("--scope")).unwrap())
        .collect();
    assert!(scope_at.windows(2).all(|w| w[0] == w[1]), "{list}");
}

/// A name could never be used again: a daily `till key create --name ci --ttl 24h` failed
/// the second day, and the hint (revoke the old key) did not free it. The name is the live
/// key's: one held by a revoked or expired key is moved aside to `NAME@ID`.
#[test]
fn a_dead_keys_name_can_be_used_again() {
    let p = ProxyEnv::new();
    let first = p.create_key(&["--name", "ci", "--scope", "openai"]);
    let (code, _, stderr) = output(p.env.till().args(["key", "create", "--name", "ci"]));
    assert_eq!(code, 2, "an active key keeps its name: {stderr}");
    assert!(stderr.contains("till key revoke ci"), "{stderr}");
    let (code, _, stderr) = output(p.env.till().args(["key", "revoke", "ci"]));
    assert_eq!(code, 0, "{stderr}");
    let (code, second, stderr) = output(
        p.env
            .till()
            .args(["key", "create", "--name", "ci", "--scope", "openai"]),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("the revoked key that was named `ci` is now `ci@"),
        "{stderr}"
    );
    assert_ne!(second.trim(), first);
    let (_, shown, _) = output(p.env.till().args(["key", "show", "ci", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(v["status"], "active", "{v}");
    let (_, listed, _) = output(p.env.till().args(["key", "list", "--all", "--json"]));
    let keys: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let names: Vec<&str> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"ci"), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("ci@")), "{names:?}");
    // The old key stays revoked, and is found by its new name.
    let aside = names.iter().find(|n| n.starts_with("ci@")).unwrap();
    let (_, shown, _) = output(p.env.till().args(["key", "show", aside, "--json"]));
    let v: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(v["status"], "revoked", "{v}");
}

/// A `--scope` model that matches nothing the price table lists for its provider is most
/// likely a typo (it showed first as a refusal inside the agent): a warning names the model it
/// is near. Globs, dated snapshots and provider-wide scopes that match are quiet, and the key
/// is made either way.
#[test]
fn a_scope_model_the_table_does_not_know_is_warned_of() {
    let p = ProxyEnv::new();
    let create = |scope: &str| {
        let (code, stdout, stderr) = output(
            p.env
                .till()
                .args(["key", "create", "--scope", scope, "--ttl", "1m"]),
        );
        assert_eq!(code, 0, "{scope}: {stderr}");
        assert!(stdout.starts_with("till_"), "{scope}: {stdout}");
        stderr
    };
    let stderr = create("openai/gpt4o-mini");
    assert!(
        stderr.contains(
            "warning: --scope openai/gpt4o-mini matches no openai model in till's price table; did you mean `openai/gpt-4o-mini`?"
        ),
        "{stderr}"
    );
    let stderr = create("openai/a-model-from-next-year");
    assert!(
        stderr.contains("matches no openai model") && !stderr.contains("did you mean"),
        "{stderr}"
    );
    for quiet in [
        "openai/gpt-4o*",
        "openai/gpt-4o-mini-2031-01-01",
        "anthropic/claude-haiku-*",
        "openai",
    ] {
        let stderr = create(quiet);
        assert!(!stderr.contains("warning"), "{quiet}: {stderr}");
    }
}

/// Many unknown models give a few warnings and a count, not one line each; more patterns than
/// a key holds give the refusal alone.
#[test]
fn many_unknown_scope_models_are_warned_of_in_a_few_lines() {
    let p = ProxyEnv::new();
    let scopes = |n: usize| -> Vec<String> {
        (0..n)
            .flat_map(|i| ["--scope".to_string(), format!("openai/no-such-model-{i}")])
            .collect()
    };
    let (code, _, stderr) = output(
        p.env
            .till()
            .args(["key", "create", "--ttl", "1m"])
            .args(scopes(40)),
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stderr.matches("warning: --scope").count(), 5, "{stderr}");
    assert!(
        stderr.contains("warning: 35 more --scope patterns match no model in till's price table"),
        "{stderr}"
    );
    let (code, _, stderr) = output(
        p.env
            .till()
            .args(["key", "create", "--ttl", "1m"])
            .args(scopes(400)),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    assert!(stderr.contains("at most 64 --scope patterns"), "{stderr}");
    assert!(stderr.lines().count() <= 3, "{stderr}");
}

/// The first keys made at once, on a home with no mint key yet: one mint key between them
/// (each process found none and made its own, and the ledger held ten current ones), and every
/// key they printed works.
#[test]
fn keys_made_at_once_on_a_new_home_share_one_mint_key() {
    let p = ProxyEnv::new();
    let children: Vec<_> = (0..10)
        .map(|_| {
            p.env
                .till()
                .args(["key", "create", "--scope", "openai"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let keys: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        })
        .collect();
    let (code, stdout, stderr) = output(p.env.till().args(["status", "--json"]));
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let mints: Vec<_> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["kind"] == "mint")
        .collect();
    assert_eq!(mints.len(), 1, "{stdout}");
    let serve = p.serve();
    for key in &keys {
        let v = client_with_key(&serve.url, key, &["openai", "chat"]);
        assert_eq!(status(&v), 200, "{v}");
    }
}

/// Input that could only make a useless or leaky key is refused (2), and nothing is made: a key
/// longer than till reads back (each of its 64 patterns allowed), a provider key pasted as a
/// model, stdin that is not a key's text or is endless; and an expired key is not handed to an
/// agent (1), as a revoked one is not.
#[test]
fn input_that_makes_a_useless_or_leaky_key_is_refused() {
    let p = ProxyEnv::new();
    let keys_before = |p: &ProxyEnv| {
        let (_, out, _) = output(p.env.till().args(["key", "list", "--all", "--json"]));
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["keys"]
            .as_array()
            .map_or(0, Vec::len)
    };
    let long: Vec<String> = (0..64)
        .flat_map(|i| {
            [
                "--scope".to_string(),
                format!("openai/m{i}-{}", "x".repeat(100)),
            ]
        })
        .collect();
    let mut args = vec![
        "key".to_string(),
        "create".into(),
        "--name".into(),
        "long".into(),
    ];
    args.extend(long);
    let (code, _, stderr) = output(p.env.till().args(&args));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("more than the 8192 till reads"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");
    let pasted = "openai/sk-proj-abcdefghijklmnopqrstuvwxyz0123456789";
    let (code, _, stderr) = output(p.env.till().args(["key", "create", "--scope", pasted]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("looks like a provider's key"), "{stderr}");
    assert!(
        !stderr.contains("abcdefghij"),
        "the key was repeated: {stderr}"
    );
    assert_eq!(keys_before(&p), 0, "a key was made");

    let (code, _, stderr) =
        output_with_stdin(p.env.till().args(["key", "inspect"]), "\u{0}\u{fffd}");
    assert_eq!(code, 2, "{stderr}");
    let mut child = p
        .env
        .till()
        .args(["key", "inspect"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Endless input: till stops reading past what could be a key.
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write as _;
        let zeros = [0u8; 65536];
        while stdin.write_all(&zeros).is_ok() {}
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("more than a till key"),
        "{out:?}"
    );

    p.create_key(&["--scope", "openai", "--name", "brief", "--ttl", "1s"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (code, stdout, stderr) = p.run(&["--key", "brief", "--", "echo", "ran"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(!stdout.contains("ran"), "{stdout}");
    assert!(stderr.contains("expired"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");
}

/// A `till rotate --mint` killed between making the new mint key and retiring the old one
/// left both current, keys signed by the old one working with no end, and doctor said all
/// was well: it names the old one and the fix.
#[test]
fn doctor_names_a_mint_key_a_rotation_left_unretired() {
    let env = TestEnv::new();
    let (code, _, stderr) = output(
        env.till()
            .args(["key", "create", "--scope", "openai", "--ttl", "1h"]),
    );
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, _) = output(env.till().args(["doctor"]));
    assert!(!stdout.contains("not retired"), "{code} {stdout}");
    let db = rusqlite::Connection::open(env.path("data/ledger.sqlite3")).unwrap();
    db.execute(
        "INSERT INTO mint_keys (kid, created_at) VALUES ('k0ldk1d00000', 1)",
        [],
    )
    .unwrap();
    let (code, stdout, _) = output(env.till().args(["doctor"]));
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("k0ldk1d00000 not retired beside the current")
            && stdout.contains("run `till rotate --mint` again"),
        "{stdout}"
    );
}
