//! Root keys in the real OS keychain (Secret Service under `scripts/with-keyring.sh`), and
//! key verification against the mock provider. These tests need a reachable Secret Service;
//! they fail, never skip, without one.

use crate::support::{TestEnv, output, output_with_stdin};

/// A keychain service name of this test's own, so the developer's real `till` entries are
/// never touched.
fn service() -> String {
    format!("till-test-{}", std::process::id())
}

fn keychain_till(env: &TestEnv, service: &str) -> std::process::Command {
    let mut cmd = env.bare();
    cmd.env("TILL_STORE", "keychain")
        .env("TILL_KEYCHAIN_SERVICE", service);
    cmd
}

fn secret_tool_search(service: &str) -> String {
    let out = std::process::Command::new("secret-tool")
        .args(["search", "--all", "service", service])
        .output()
        .expect("secret-tool is installed (libsecret-tools)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn add_list_remove_in_the_real_keychain() {
    let env = TestEnv::new();
    let service = service();
    let (code, _, stderr) = output_with_stdin(
        keychain_till(&env, &service).args(["add", "openai", "--no-verify"]),
        "sk-test-123\n",
    );
    assert_eq!(
        code, 0,
        "a Secret Service must be reachable (run under scripts/with-keyring.sh): {stderr}"
    );
    assert!(stderr.contains("keychain store"), "{stderr}");

    let found = secret_tool_search(&service);
    assert!(
        found.contains("root/openai"),
        "secret-tool does not see the entry:\n{found}"
    );

    let (code, stdout, _) = output(keychain_till(&env, &service).args(["list", "--json"]));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v[0]["provider"], "openai");
    assert_eq!(
        v[0]["fingerprint"],
        till::ledger::fingerprint("sk-test-123")
    );
    assert!(!stdout.contains("sk-test-123"), "{stdout}");

    let (code, stdout, stderr) = output(keychain_till(&env, &service).arg("doctor"));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("ok   openai key"), "{stdout}");

    let (code, _, stderr) = output(keychain_till(&env, &service).args(["remove", "openai"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(!secret_tool_search(&service).contains("root/openai"));
    let (code, stdout, _) = output(keychain_till(&env, &service).args(["list", "--json"]));
    assert_eq!((code, stdout.trim()), (0, "[]"));
    // Removing it again names nothing stored: a usage error (2), as `till key show` of no key
    // and `till rotate` of no stored key are.
    let (code, _, stderr) = output(keychain_till(&env, &service).args(["remove", "openai"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("no openai key is stored") && stderr.contains("hint: `till list`"),
        "{stderr}"
    );
}

#[test]
fn verification_stores_only_what_the_provider_accepts() {
    let mock = till_mock::spawn(till_mock::MockOptions::default());
    let env = TestEnv::new();
    env.config(&format!(
        "[providers.openai]\nbase_url = \"{}\"\n",
        mock.url()
    ));
    let (code, _, stderr) = output_with_stdin(env.till().args(["add", "openai"]), "sk-wrong-key\n");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("openai rejected the key (HTTP 401); nothing was stored"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: check the key at https://platform.openai.com/api-keys"),
        "{stderr}"
    );
    // A provider of config.toml's has no console to name (the hint ended `at `).
    env.config(&format!(
        "[providers.openai]\nbase_url = \"{url}\"\n[providers.acme]\napi = \"openai\"\nbase_url = \"{url}\"\n",
        url = mock.url()
    ));
    let (code, _, stderr) = output_with_stdin(env.till().args(["add", "acme"]), "sk-wrong-key\n");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("hint: check the key at the provider's console"),
        "{stderr}"
    );
    let (_, stdout, _) = output(env.till().args(["list", "--json"]));
    assert_eq!(stdout.trim(), "[]");
    assert!(
        !env.path("data/secrets.age").exists(),
        "a rejected key must not create the store"
    );

    let (code, _, stderr) = output_with_stdin(env.till().args(["add", "openai"]), "sk-mock-root\n");
    assert_eq!(code, 0, "{stderr}");
    let (_, stdout, _) = output(env.till().args(["list", "--json"]));
    assert!(stdout.contains("\"openai\""), "{stdout}");
    // The verification call carried the key the provider's way.
    let req = mock.requests().into_iter().last().unwrap();
    assert_eq!(req.path, "/v1/models");
    assert_eq!(
        req.headers.get("authorization").map(String::as_str),
        Some("Bearer sk-mock-root")
    );
}

#[test]
fn unreachable_provider_stores_nothing_and_hints_no_verify() {
    let env = TestEnv::new();
    env.config("[providers.openai]\nbase_url = \"http://127.0.0.1:9\"\n");
    let (code, _, stderr) = output_with_stdin(env.till().args(["add", "openai"]), "sk-x\n");
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("--no-verify"), "{stderr}");
}

#[test]
fn from_env_and_empty_input() {
    let env = TestEnv::new();
    let (code, _, stderr) =
        output_with_stdin(env.till().args(["add", "openai", "--no-verify"]), "  \n");
    assert_eq!(code, 2, "{stderr}");
    let (code, _, stderr) =
        output(
            env.till()
                .args(["add", "openai", "--no-verify", "--from-env", "NOPE_UNSET"]),
        );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("NOPE_UNSET is not set"), "{stderr}");
    let (code, _, stderr) = output(env.till().env("MY_KEY", "sk-from-env").args([
        "add",
        "openai",
        "--no-verify",
        "--from-env",
        "MY_KEY",
    ]));
    assert_eq!(code, 0, "{stderr}");
}

/// With no Secret Service and `store = auto`, `till add` fails at once (well within 5 s, with
/// the default keychain timeout in force) and names the file store.
#[cfg(target_os = "linux")]
#[test]
fn add_without_a_secret_service_fails_fast_and_names_the_file_store() {
    let env = TestEnv::new();
    env.config("store = \"auto\"\n");
    let started = std::time::Instant::now();
    let (code, _, stderr) = output_with_stdin(
        env.bare()
            .env(
                "DBUS_SESSION_BUS_ADDRESS",
                format!("unix:path={}", env.path("no-bus").display()),
            )
            .args(["add", "openai", "--no-verify"]),
        "sk-test-123\n",
    );
    let took = started.elapsed();
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("TILL_STORE=file"), "{stderr}");
    assert!(took < std::time::Duration::from_secs(5), "took {took:?}");
    let (_, stdout, _) = output(env.bare().args(["list", "--json"]));
    assert_eq!(stdout.trim(), "[]", "nothing may be recorded");
}

/// Five `till add` of five keys at once: one is stored and the others are told another till
/// stored one (1, or 2 when it was there before they looked), as with the file store; each
/// saw nothing stored, and all five said they stored theirs while one was kept.
#[test]
fn keys_added_at_once_to_the_keychain_keep_one_and_say_so() {
    use std::io::Write as _;
    let env = TestEnv::new();
    let service = format!("{}-race", service());
    // The ledger and data directory first, as any till before would have made them.
    let (code, _, stderr) = output(keychain_till(&env, &service).args(["list"]));
    assert_eq!(code, 0, "{stderr}");
    let children: Vec<_> = (0..5)
        .map(|i| {
            let mut child = keychain_till(&env, &service)
                .args(["add", "openai", "--no-verify"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            stdin
                .write_all(format!("sk-test-race-{i}-000000\n").as_bytes())
                .unwrap();
            drop(stdin);
            (i, child)
        })
        .collect();
    let mut stored = Vec::new();
    for (i, child) in children {
        let out = child.wait_with_output().unwrap();
        match out.status.code() {
            Some(0) => stored.push(i),
            // Another till stored one while this one looked, or before it started.
            Some(1) if String::from_utf8_lossy(&out.stderr).contains("another till stored") => {}
            Some(2) if String::from_utf8_lossy(&out.stderr).contains("is already stored") => {}
            _ => panic!("{i}: {out:?}"),
        }
    }
    assert_eq!(stored.len(), 1, "{stored:?}");
    let (code, stdout, _) = output(keychain_till(&env, &service).args(["list", "--json"]));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        v[0]["fingerprint"],
        till::ledger::fingerprint(&format!("sk-test-race-{}-000000", stored[0]))
    );
    let (code, _, stderr) = output(keychain_till(&env, &service).args(["remove", "openai"]));
    assert_eq!(code, 0, "{stderr}");
}

/// Two keychain entries for one name (one made by hand beside till's): the error says how to
/// remove them with the keychain's tool and store the key again, and following it works.
#[test]
fn two_entries_for_one_key_are_named_with_the_way_to_put_them_right() {
    let env = TestEnv::new();
    // A service name with a space (TILL_KEYCHAIN_SERVICE is yours to set): the hint's command
    // quotes it, or it would clear another service's entries.
    let service = format!("{} dup", service());
    let (code, _, stderr) = output_with_stdin(
        keychain_till(&env, &service).args(["add", "openai", "--no-verify"]),
        "sk-test-dup-000001\n",
    );
    assert_eq!(code, 0, "{stderr}");
    let mut store = std::process::Command::new("secret-tool")
        .args([
            "store",
            "--label=by hand",
            "service",
            &service,
            "username",
            "root/openai",
            "target",
            "elsewhere",
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        store
            .stdin
            .take()
            .unwrap()
            .write_all(b"sk-test-dup-000002")
            .unwrap();
    }
    assert!(store.wait().unwrap().success());
    let (code, _, stderr) = output(keychain_till(&env, &service).args(["run", "--", "true"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("2 entries for root/openai"), "{stderr}");
    let hint = stderr
        .lines()
        .find_map(|l| l.strip_prefix("hint: "))
        .unwrap_or_else(|| panic!("no hint: {stderr}"));
    let clear = format!("secret-tool clear service '{service}' username root/openai");
    assert!(hint.contains(&clear), "{hint}");
    assert!(hint.contains("till add openai --replace"), "{hint}");
    // Following the hint works.
    let status = std::process::Command::new("sh")
        .args(["-c", &clear])
        .status()
        .unwrap();
    assert!(status.success());
    let (code, _, stderr) = output_with_stdin(
        keychain_till(&env, &service).args(["add", "openai", "--replace", "--no-verify"]),
        "sk-test-dup-000001\n",
    );
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = output(keychain_till(&env, &service).args(["run", "--", "true"]));
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = output(keychain_till(&env, &service).args(["remove", "openai"]));
    assert_eq!(code, 0, "{stderr}");
}
