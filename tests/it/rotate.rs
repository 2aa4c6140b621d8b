//! `till rotate` and `till status` against the in-process mock provider: automated OpenAI
//! rotation through its admin API, failures at every step, guided rotation with Anthropic's
//! admin API, mint-key rotation with and without grace, `--due` with mixed ages,
//! interruptions that must change nothing, and a root key removed under a running proxy.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use till_mock::{KeyStatus, MockHandle, MockOptions};

use crate::support::{TestEnv, output, output_with_stdin};

/// Long enough that the mock shows a 16-character head in its hints, as real keys do.
const OLD_OPENAI: &str = "sk-proj-old0000000000000000000000000000000000000001";
const OLD_ANTHROPIC: &str = "sk-ant-api03-old000000000000000000000000000000000002";
const GEMINI: &str = "AIzaSy-gemini-0000000000000000000000000000003";
const NEW_ANTHROPIC: &str = "sk-ant-api03-new000000000000000000000000000000000004";
const ADMIN: &str = till_mock::DEFAULT_ADMIN_KEY;
const PROJECT: &str = "proj_till";

/// A till home wired to a mock that accepts the three keys above and the default admin key.
struct Rot {
    env: TestEnv,
    mock: MockHandle,
}

impl Rot {
    fn new() -> Self {
        let mock = till_mock::spawn(MockOptions {
            keys: vec![OLD_OPENAI.into(), OLD_ANTHROPIC.into(), GEMINI.into()],
            ..Default::default()
        });
        let rot = Self {
            env: TestEnv::new(),
            mock,
        };
        rot.config("", "");
        rot
    }

    /// Writes config.toml: every provider at the mock, `openai_extra` under
    /// `[providers.openai]`, then `extra`.
    fn config(&self, openai_extra: &str, extra: &str) {
        let url = self.mock.url();
        self.env.config(&format!(
            "[providers.openai]\nbase_url = \"{url}\"\nadmin_project = \"{PROJECT}\"\n{openai_extra}\n\
             [providers.anthropic]\nbase_url = \"{url}\"\n\
             [providers.gemini]\nbase_url = \"{url}\"\n{extra}"
        ));
    }

    fn till(&self) -> Command {
        self.env.till()
    }

    fn add(&self, provider: &str, key: &str) {
        let (code, _, stderr) = output_with_stdin(self.till().args(["add", provider]), key);
        assert_eq!(code, 0, "till add {provider}: {stderr}");
    }

    /// Stores `key` as the admin key, in place of any stored before (`--replace`).
    fn add_admin(&self, provider: &str, key: &str, verify: bool) {
        let mut cmd = self.till();
        cmd.args(["add", provider, "--admin", "--replace"]);
        if !verify {
            cmd.arg("--no-verify");
        }
        let (code, _, stderr) = output_with_stdin(&mut cmd, key);
        assert_eq!(code, 0, "till add {provider} --admin: {stderr}");
    }

    /// Makes the recorded ids of `key_id` an hour old: no rotation that recorded them can
    /// still be running.
    fn age_recorded(&self, key_id: &str) {
        self.ledger()
            .execute(
                "UPDATE root_key_ids SET created_at = created_at - 3600 WHERE key_id = ?1",
                [key_id],
            )
            .unwrap();
    }

    fn ledger(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.env.path("data/ledger.sqlite3")).unwrap()
    }

    /// The root key stored for `provider`, read from the file store itself.
    fn stored(&self, provider: &str) -> Option<String> {
        use till::secrets::{ExposeSecret as _, SecretStore as _, SecretString};
        let store = till::secrets::file::FileStore::open(
            &self.env.path("data/secrets.age"),
            till::secrets::file::Unlock::Passphrase(SecretString::from(crate::support::PASSPHRASE)),
        )
        .unwrap();
        store
            .get(&format!("root/{provider}"))
            .unwrap()
            .map(|s| s.expose_secret().to_string())
    }

    /// `(fingerprint, added_at, rotated_at)` of every root key, by provider.
    fn root_rows(&self) -> Vec<(String, String, i64, Option<i64>)> {
        let conn = self.ledger();
        let mut stmt = conn
            .prepare("SELECT provider, fingerprint, added_at, rotated_at FROM root_keys ORDER BY provider")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Every recorded rotation attempt: `(target, ok, step, message)`, oldest first.
    fn rotations(&self) -> Vec<(String, bool, String, String)> {
        let conn = self.ledger();
        let mut stmt = conn
            .prepare("SELECT target, ok, step, message FROM rotations ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn key_status(&self, value: &str) -> Option<KeyStatus> {
        self.mock
            .keys()
            .into_iter()
            .find(|k| k.value == value)
            .map(|k| k.status)
    }

    /// Keys made through the admin API (service accounts), in every state.
    fn created_keys(&self) -> Vec<till_mock::KeyInfo> {
        self.mock
            .keys()
            .into_iter()
            .filter(|k| k.service_account_id.is_some())
            .collect()
    }

    /// The OpenAI key the upstream saw on the last chat request.
    fn last_upstream_openai_key(&self) -> String {
        let req = self
            .mock
            .requests()
            .into_iter()
            .rev()
            .find(|r| r.path == "/v1/chat/completions")
            .expect("a chat request reached the mock");
        req.header("authorization")
            .unwrap()
            .trim_start_matches("Bearer ")
            .to_string()
    }

    /// One chat request through `till run` with the current stored key; the HTTP status.
    fn chat_through_till_run(&self) -> u64 {
        let (code, stdout, stderr) = output(self.till().args([
            "run",
            "--scope",
            "openai",
            "--",
            "python3",
            &crate::support::client_script(),
            "openai",
            "chat",
        ]));
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        let v: Value = serde_json::from_str(stdout.trim()).unwrap();
        v["status"].as_u64().unwrap()
    }

    /// `till key create --scope SCOPE --json`; the key.
    fn create_key(&self, scope: &str) -> String {
        let (code, stdout, stderr) = output(
            self.till()
                .args(["key", "create", "--scope", scope, "--ttl", "1h", "--json"]),
        );
        assert_eq!(code, 0, "{stderr}");
        let v: Value = serde_json::from_str(&stdout).unwrap();
        v["key"].as_str().unwrap().to_string()
    }

    fn serve(&self) -> Serve {
        let mut child = self
            .till()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.starts_with("http://127.0.0.1:"),
            "till serve said {line:?}"
        );
        Serve {
            child,
            url: line.trim().to_string(),
        }
    }

    fn store_bytes(&self) -> Vec<u8> {
        std::fs::read(self.env.path("data/secrets.age")).unwrap()
    }
}

/// A running `till serve`, stopped when dropped.
struct Serve {
    child: Child,
    url: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    /// A chat completion through the proxy with `key`: (status, body).
    fn chat(&self, key: &str) -> (u16, String) {
        let url = format!("{}/openai/v1/chat/completions", self.url);
        let key = key.to_string();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let resp = reqwest::Client::new()
                .post(url)
                .bearer_auth(key)
                .header("content-type", "application/json")
                .body(r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#)
                .timeout(Duration::from_secs(20))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap())
        })
    }
}

fn fingerprint(key: &str) -> String {
    till::ledger::fingerprint(key)
}

/// Rot with openai (plus its admin key) and the other two providers stored.
fn stocked() -> Rot {
    let rot = Rot::new();
    rot.add("openai", OLD_OPENAI);
    rot.add("anthropic", OLD_ANTHROPIC);
    rot.add("gemini", GEMINI);
    rot.add_admin("openai", ADMIN, true);
    rot
}

/// Asserts a failed rotation of openai left everything as it was.
fn assert_openai_untouched(rot: &Rot, before: &[(String, String, i64, Option<i64>)]) {
    assert_eq!(rot.stored("openai").as_deref(), Some(OLD_OPENAI));
    assert_eq!(rot.root_rows(), before);
    assert_eq!(rot.key_status(OLD_OPENAI), Some(KeyStatus::Active));
    for k in rot.created_keys() {
        assert_eq!(
            k.status,
            KeyStatus::Deleted,
            "a created key was left: {k:?}"
        );
    }
    rot.mock.clear_requests();
    assert_eq!(rot.chat_through_till_run(), 200);
    assert_eq!(rot.last_upstream_openai_key(), OLD_OPENAI);
}

#[test]
fn openai_admin_rotation_creates_verifies_stores_deletes_and_serve_follows() {
    let rot = stocked();
    let child = rot.create_key("openai");
    let serve = rot.serve();
    let (status, body) = serve.chat(&child);
    assert_eq!(status, 200, "{body}");
    assert_eq!(rot.last_upstream_openai_key(), OLD_OPENAI);

    let (code, stdout, stderr) = output(rot.till().args(["rotate", "openai", "--json"]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let outcome: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(outcome["ok"], true);
    assert_eq!(outcome["method"], "admin");
    assert_eq!(outcome["old_fingerprint"], fingerprint(OLD_OPENAI));

    // Created, verified (the mock saw the new key on /v1/models), stored, old one deleted.
    let created = rot.created_keys();
    assert_eq!(created.len(), 1, "{created:?}");
    let new = &created[0];
    assert_eq!(new.status, KeyStatus::Active);
    assert!(rot.mock.requests().iter().any(|r| r.path == "/v1/models"
        && r.header("authorization") == Some(&format!("Bearer {}", new.value))));
    assert_eq!(rot.stored("openai").as_deref(), Some(new.value.as_str()));
    assert_eq!(rot.key_status(OLD_OPENAI), Some(KeyStatus::Deleted));
    let rows = rot.root_rows();
    let openai = rows.iter().find(|r| r.0 == "openai").unwrap();
    assert_eq!(openai.1, fingerprint(&new.value));
    assert!(openai.3.is_some(), "rotated_at is set");
    assert_eq!(outcome["new_fingerprint"], fingerprint(&new.value));
    assert!(!stdout.contains(&new.value) && !stderr.contains(&new.value));
    let attempts = rot.rotations();
    assert_eq!(attempts.len(), 1);
    assert_eq!((attempts[0].1, attempts[0].2.as_str()), (true, "done"));

    // The already running proxy uses the new key on its next request.
    let (status, body) = serve.chat(&child);
    assert_eq!(status, 200, "{body}");
    assert_eq!(rot.last_upstream_openai_key(), new.value);

    // A second rotation deletes the key (and the service account) till made the first time.
    let (code, _, stderr) = output(rot.till().args(["rotate", "openai"]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(rot.key_status(&new.value), Some(KeyStatus::Deleted));
    let (status, _) = serve.chat(&child);
    assert_eq!(status, 200);
    assert_eq!(
        rot.last_upstream_openai_key(),
        rot.stored("openai").unwrap()
    );
}

#[test]
fn failed_create_keeps_the_old_key() {
    let rot = stocked();
    // A first rotation teaches till the key's id, so the next one needs no listing and the
    // wrong admin key is first used to create.
    let (code, _, stderr) = output(rot.till().args(["rotate", "openai"]));
    assert_eq!(code, 0, "{stderr}");
    let current = rot.stored("openai").unwrap();
    rot.add_admin("openai", "sk-admin-not-accepted", false);
    let before = rot.root_rows();
    let store = rot.store_bytes();

    let (code, _, stderr) = output(rot.till().args(["rotate", "openai"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("failed at `create`"), "{stderr}");
    assert!(stderr.contains("HTTP 401"), "{stderr}");
    assert!(stderr.contains("hint: check the admin key"), "{stderr}");
    assert_eq!(rot.store_bytes(), store, "the store file was rewritten");
    assert_eq!(rot.root_rows(), before);
    assert_eq!(rot.stored("openai"), Some(current.clone()));
    assert_eq!(rot.key_status(&current), Some(KeyStatus::Active));
    assert_eq!(rot.created_keys().len(), 1, "no second key was made");
    let last = rot.rotations().pop().unwrap();
    assert_eq!((last.1, last.2.as_str()), (false, "create"));
    assert_eq!(rot.chat_through_till_run(), 200);
    assert_eq!(rot.last_upstream_openai_key(), current);
}

/// A key till made and someone then deleted at the provider (so the stored key is dead) must
/// not make every later rotation fail at `delete`.
#[test]
fn a_key_deleted_by_hand_does_not_block_rotation() {
    let rot = stocked();
    let (code, _, stderr) = output(rot.till().args(["rotate", "openai"]));
    assert_eq!(code, 0, "{stderr}");
    let dead = rot.created_keys().pop().unwrap();
    let url = format!(
        "{}/v1/organization/projects/{PROJECT}/api_keys/{}",
        rot.mock.url(),
        dead.id
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = runtime.block_on(async {
        reqwest::Client::new()
            .delete(url)
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert!(status.is_success(), "{status}");

    let (code, _, stderr) = output(rot.till().args(["rotate", "openai"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("was already deleted"), "{stderr}");
    assert_eq!(rot.chat_through_till_run(), 200);
}

#[test]
fn failed_verify_deletes_the_new_key_and_keeps_the_old() {
    let rot = stocked();
    // Check new keys against an admin route: an ordinary key gets 403 there.
    rot.config(
        &format!("verify_path = \"/v1/organization/projects/{PROJECT}/api_keys\""),
        "",
    );
    let before = rot.root_rows();
    let store = rot.store_bytes();
    let (code, _, stderr) = output(rot.till().args(["rotate", "openai"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("failed at `verify`"), "{stderr}");
    assert!(
        stderr.contains("rejected the new key (HTTP 403)"),
        "{stderr}"
    );
    assert!(stderr.contains("the new key was deleted again"), "{stderr}");
    assert_eq!(rot.store_bytes(), store);
    assert_eq!(rot.created_keys().len(), 1);
    rot.config("", "");
    assert_openai_untouched(&rot, &before);
    let last = rot.rotations().pop().unwrap();
    assert_eq!((last.1, last.2.as_str()), (false, "verify"));
}

#[test]
fn failed_store_deletes_the_new_key_and_keeps_the_old() {
    let rot = stocked();
    // The file store takes a lock file next to itself before writing; a directory in its
    // place makes every write fail while reads still work.
    let lock = rot.env.path("data/secrets.age.lock");
    let _ = std::fs::remove_file(&lock);
    std::fs::create_dir(&lock).unwrap();
    let before = rot.root_rows();
    let store = rot.store_bytes();
    let (code, _, stderr) = output(rot.till().args(["rotate", "openai"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("failed at `store`"), "{stderr}");
    assert!(stderr.contains("cannot store the new key"), "{stderr}");
    assert!(stderr.contains("the new key was deleted again"), "{stderr}");
    assert_eq!(rot.store_bytes(), store);
    assert_eq!(rot.created_keys().len(), 1);
    std::fs::remove_dir(&lock).unwrap();
    assert_openai_untouched(&rot, &before);
    let last = rot.rotations().pop().unwrap();
    assert_eq!((last.1, last.2.as_str()), (false, "store"));
}

#[test]
fn failed_delete_puts_the_old_key_back() {
    let rot = stocked();
    let before = rot.root_rows();
    let (code, _, stderr) = output(
        rot.till()
            .env("TILL_TEST_FAIL_STEP", "delete")
            .args(["rotate", "openai"]),
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("failed at `delete`"), "{stderr}");
    assert!(stderr.contains("the old key was put back"), "{stderr}");
    assert!(stderr.contains("the new key was deleted again"), "{stderr}");
    assert_eq!(rot.created_keys().len(), 1);
    assert_openai_untouched(&rot, &before);
    let last = rot.rotations().pop().unwrap();
    assert_eq!((last.1, last.2.as_str()), (false, "delete"));
}

/// `kill -9` in the middle of a rotation, while it checks the key it made: that key is alive
/// at the provider and in no store. It was recorded before the check, so `till doctor` names
/// it and the next rotation deletes it.
#[test]
fn a_key_made_by_a_killed_rotation_is_named_by_doctor_and_deleted_by_the_next() {
    let rot = stocked();
    // New keys are checked against an admin route (403 for them): the check is retried after
    // a second, and the rotation is killed while it waits.
    rot.config(
        &format!("verify_path = \"/v1/organization/projects/{PROJECT}/api_keys\""),
        "",
    );
    let mut rotation = rot
        .till()
        .args(["rotate", "openai"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let made = |conn: &rusqlite::Connection| -> Option<String> {
        conn.query_row(
            "SELECT key_id FROM root_key_ids WHERE service_account_id IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .ok()
    };
    let recorded = poll(Duration::from_secs(20), || made(&rot.ledger()));
    rotation.kill().unwrap();
    rotation.wait().unwrap();
    let key_id = recorded.expect("the made key's id is recorded before it is checked");
    let created = rot.created_keys();
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0].id, key_id);
    assert_eq!(created[0].status, KeyStatus::Active);
    assert_eq!(rot.stored("openai").as_deref(), Some(OLD_OPENAI));

    rot.config("", "");
    let (code, stdout, stderr) = output(rot.till().args(["doctor"]));
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("openai leftover key") && stdout.contains(&key_id),
        "{stdout}"
    );

    // Right after, it may be a rotation still running: left alone, and said so.
    let (code, _, stderr) = output(rot.till().args(["rotate", "openai"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("may still be running"), "{stderr}");
    assert_eq!(rot.key_status(&created[0].value), Some(KeyStatus::Active));

    // Recorded long enough ago, it is deleted by the next rotation.
    rot.age_recorded(&key_id);
    let (code, _, stderr) = output(rot.till().args(["rotate", "openai"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("deleted the key {key_id} at openai")),
        "{stderr}"
    );
    assert_eq!(rot.key_status(&created[0].value), Some(KeyStatus::Deleted));
    let (code, stdout, _) = output(rot.till().args(["doctor"]));
    assert_eq!(code, 0, "{stdout}");
    assert!(!stdout.contains("leftover"), "{stdout}");
}

#[test]
fn unreachable_admin_api_changes_nothing() {
    let rot = stocked();
    let before = rot.root_rows();
    let store = rot.store_bytes();
    // Nothing listens on the port of a dropped listener.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = rot.mock.url();
    rot.env.config(&format!(
        "[providers.openai]\nbase_url = \"http://127.0.0.1:{closed}\"\nadmin_project = \"{PROJECT}\"\n\
         [providers.anthropic]\nbase_url = \"{url}\"\n[providers.gemini]\nbase_url = \"{url}\"\n"
    ));
    let (code, _, stderr) = output(rot.till().args(["rotate", "openai"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("failed at `find`"), "{stderr}");
    assert!(stderr.contains("connection failed"), "{stderr}");
    assert_eq!(rot.store_bytes(), store);
    rot.config("", "");
    assert_openai_untouched(&rot, &before);
    assert!(rot.created_keys().is_empty());
}

/// Starts a guided Anthropic rotation to `new_key`, kills it (`kill -9`) once the new key is
/// stored and before the old one is set inactive, and returns the old key's recorded id.
fn kill_after_the_swap(rot: &Rot, new_key: &str) -> String {
    let mut rotation = rot
        .till()
        .args(["rotate", "anthropic"])
        .env("TILL_TEST_FAIL_STEP", "hang:deactivate")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = rotation.stdin.take().unwrap();
        writeln!(stdin, "{new_key}").unwrap();
    }
    let swapped = poll(Duration::from_secs(20), || {
        (rot.stored("anthropic").as_deref() == Some(new_key)).then_some(())
    });
    // The swap is done and the deactivation not begun: a kill here is a power cut there.
    std::thread::sleep(Duration::from_millis(200));
    rotation.kill().unwrap();
    rotation.wait().unwrap();
    assert!(swapped.is_some(), "the rotation never stored the new key");
    assert_eq!(rot.key_status(OLD_ANTHROPIC), Some(KeyStatus::Active));
    let old_id: String = rot
        .ledger()
        .query_row(
            "SELECT key_id FROM root_key_ids WHERE provider = 'anthropic' AND fingerprint = ?1",
            [fingerprint(OLD_ANTHROPIC)],
            |r| r.get(0),
        )
        .expect("the old key's id is recorded before the swap");
    old_id
}

/// `kill -9` of a guided Anthropic rotation after it stored the new key and before it set the
/// old one inactive (the old key is usually rotated because it leaked): the old key's id was
/// recorded before the swap, so `till doctor` names it and the next rotation with the admin
/// key sets it inactive.
#[test]
fn an_old_key_a_killed_guided_rotation_left_active_is_set_inactive_by_the_next() {
    const NEWER_ANTHROPIC: &str = "sk-ant-api03-nwr000000000000000000000000000000000005";
    let rot = stocked();
    rot.add_admin("anthropic", ADMIN, true);
    rot.mock.add_key(NEW_ANTHROPIC);
    rot.mock.add_key(NEWER_ANTHROPIC);
    let old_id = kill_after_the_swap(&rot, NEW_ANTHROPIC);

    let (code, stdout, _) = output(rot.till().args(["doctor"]));
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("anthropic leftover key") && stdout.contains(&old_id),
        "{stdout}"
    );
    assert!(stdout.contains("sets it inactive"), "{stdout}");

    // Recorded long enough ago (no rotation can still be running), the next rotation sets it
    // inactive before its own work.
    rot.age_recorded(&old_id);
    let (code, _, stderr) =
        output_with_stdin(rot.till().args(["rotate", "anthropic"]), NEWER_ANTHROPIC);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("set the key {old_id} at anthropic inactive")),
        "{stderr}"
    );
    assert_eq!(rot.key_status(OLD_ANTHROPIC), Some(KeyStatus::Inactive));
    assert_eq!(rot.key_status(NEW_ANTHROPIC), Some(KeyStatus::Inactive));
    assert_eq!(rot.key_status(NEWER_ANTHROPIC), Some(KeyStatus::Active));
    let (code, stdout, _) = output(rot.till().args(["doctor"]));
    assert_eq!(code, 0, "{stdout}");
    assert!(!stdout.contains("leftover"), "{stdout}");
}

/// After such a kill, a person who gives the old key back to the next rotation keeps it: the
/// recorded leftover is the key being stored, and is never set inactive.
#[test]
fn a_key_given_back_after_a_killed_rotation_is_not_set_inactive() {
    let rot = stocked();
    rot.add_admin("anthropic", ADMIN, true);
    rot.mock.add_key(NEW_ANTHROPIC);
    let old_id = kill_after_the_swap(&rot, NEW_ANTHROPIC);
    rot.age_recorded(&old_id);
    let (code, _, stderr) =
        output_with_stdin(rot.till().args(["rotate", "anthropic"]), OLD_ANTHROPIC);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !stderr.contains(&format!("set the key {old_id}")),
        "{stderr}"
    );
    assert_eq!(rot.stored("anthropic").as_deref(), Some(OLD_ANTHROPIC));
    assert_eq!(rot.key_status(OLD_ANTHROPIC), Some(KeyStatus::Active));
    assert_eq!(rot.key_status(NEW_ANTHROPIC), Some(KeyStatus::Inactive));
    let (code, stdout, _) = output(rot.till().args(["doctor"]));
    assert_eq!(code, 0, "{stdout}");
}

#[test]
fn anthropic_guided_rotation_sets_the_old_key_inactive() {
    let rot = stocked();
    rot.add_admin("anthropic", ADMIN, true);
    rot.mock.add_key(NEW_ANTHROPIC);
    let (code, stdout, stderr) = output_with_stdin(
        rot.till().args(["rotate", "anthropic", "--json"]),
        NEW_ANTHROPIC,
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let outcome: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(outcome["method"], "guided");
    assert!(stderr.contains("console.anthropic.com"), "{stderr}");
    assert_eq!(rot.stored("anthropic").as_deref(), Some(NEW_ANTHROPIC));
    assert_eq!(rot.key_status(OLD_ANTHROPIC), Some(KeyStatus::Inactive));
    assert_eq!(rot.key_status(NEW_ANTHROPIC), Some(KeyStatus::Active));
}

#[test]
fn guided_rotation_refuses_a_key_the_provider_rejects() {
    let rot = stocked();
    let before = rot.root_rows();
    let (code, _, stderr) = output_with_stdin(
        rot.till().args(["rotate", "anthropic"]),
        "sk-ant-api03-unknown-000000000000000000000000000000",
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("failed at `verify`"), "{stderr}");
    assert!(stderr.contains("the new key was not stored"), "{stderr}");
    assert_eq!(rot.stored("anthropic").as_deref(), Some(OLD_ANTHROPIC));
    assert_eq!(rot.root_rows(), before);
    // With --json the failure is JSON on stdout too (stdout was empty).
    let (code, stdout, stderr) = output_with_stdin(
        rot.till().args(["rotate", "anthropic", "--json"]),
        "sk-ant-api03-unknown-000000000000000000000000000000",
    );
    assert_eq!(code, 1, "{stderr}");
    let v: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["target"], "anthropic", "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("failed at `verify`"),
        "{v}"
    );
    assert!(!stdout.contains("sk-ant-api03-unknown"), "{stdout}");
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `limit`.
fn poll<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn now() -> u64 {
    till::time::now_unix()
}

#[test]
fn mint_rotation_with_grace_keeps_old_keys_working_until_it_ends() {
    let rot = Rot::new();
    rot.add("openai", OLD_OPENAI);
    let old_child = rot.create_key("openai");
    let serve = rot.serve();
    assert_eq!(serve.chat(&old_child).0, 200);

    let (code, _, stderr) = output(rot.till().args(["rotate", "--mint", "--grace", "5s"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("work until"), "{stderr}");
    let valid_until: i64 = rot
        .ledger()
        .query_row(
            "SELECT valid_until FROM mint_keys WHERE retired_at IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();

    // In the grace period the old key works, and keys from the new mint key work too.
    let (status, body) = serve.chat(&old_child);
    assert_eq!(status, 200, "{body}");
    assert!(
        now() < valid_until as u64,
        "the grace period ended before the check"
    );
    let new_child = rot.create_key("openai");
    assert_eq!(serve.chat(&new_child).0, 200);

    // After it, the running proxy refuses the old key.
    let refused = poll(Duration::from_secs(20), || {
        let (status, body) = serve.chat(&old_child);
        (status != 200).then_some((status, body))
    })
    .expect("the old key kept working after its grace period");
    assert!(now() >= valid_until as u64);
    assert_eq!(refused.0, 401, "{}", refused.1);
    assert!(
        refused.1.contains("signed by a retired mint key"),
        "{}",
        refused.1
    );
    assert_eq!(serve.chat(&new_child).0, 200);
}

/// `till run --key NAME` re-derives a named key with the mint key that signed it: during a
/// rotation's grace that is the retired one, and the run works as the key does through
/// `till serve`, saying when it stops; after the grace it is refused with what to do.
#[test]
fn run_with_a_named_key_works_through_its_mint_keys_grace() {
    let rot = Rot::new();
    rot.add("openai", OLD_OPENAI);
    let (code, _, stderr) = output(rot.till().args([
        "key", "create", "--name", "ci", "--scope", "openai", "--ttl", "1h",
    ]));
    assert_eq!(code, 0, "{stderr}");
    let run = || {
        output(rot.till().args([
            "run",
            "--key",
            "ci",
            "--",
            "python3",
            &crate::support::client_script(),
            "openai",
            "chat",
        ]))
    };
    let (code, _, stderr) = output(rot.till().args(["rotate", "--mint", "--grace", "1h"]));
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = run();
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["status"], 200, "{v}");
    assert!(
        stderr.contains("retired by `till rotate --mint`: it works until "),
        "{stderr}"
    );

    let (code, _, stderr) = output(rot.till().args(["rotate", "--mint"]));
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = run();
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("signed by a retired mint key whose grace has ended")
            && stderr.contains("hint: create a new one"),
        "{stderr}"
    );
}

#[test]
fn mint_rotation_without_grace_stops_old_keys_at_once() {
    let rot = Rot::new();
    rot.add("openai", OLD_OPENAI);
    let old_child = rot.create_key("openai");
    let serve = rot.serve();
    assert_eq!(serve.chat(&old_child).0, 200);

    let (code, stdout, stderr) = output(rot.till().args(["rotate", "--mint"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("stopped working"), "{stderr}");
    // Running agents hold keys of the old mint key: they are told to start their runs again
    // (a run mints its key once), and no grace period is spoken of, there being none.
    let said = format!("{stdout}{stderr}");
    assert!(
        said.contains("start running `till run` agents again now"),
        "{said}"
    );
    let (status, body) = serve.chat(&old_child);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("signed by a retired mint key"), "{body}");
    assert!(
        body.contains("start the `till run` again") && !body.contains("grace"),
        "{body}"
    );
    // The refusal names the key it refused (its signature checked with the retired mint
    // key): `till log --key` lists it beside the key's earlier 200.
    let rows = poll(Duration::from_secs(10), || {
        let (code, stdout, _) = output(rot.till().args(["log", "--key", &old_child, "--json"]));
        assert_eq!(code, 0);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
        (rows.len() >= 2).then_some(rows)
    })
    .expect("the refusal is logged under the key");
    let statuses: Vec<_> = rows.iter().map(|r| r["status"].as_u64()).collect();
    assert_eq!(statuses, [Some(200), Some(401)], "{rows:?}");
    assert_eq!(rows[1]["denial"], "retired_mint", "{rows:?}");
    assert_eq!(serve.chat(&rot.create_key("openai")).0, 200);
    let last = rot.rotations().pop().unwrap();
    assert_eq!((last.0.as_str(), last.1), ("mint", true));
}

/// A rotation without grace (after a leak) ends the grace an earlier rotation gave: keys of
/// every older mint key stop at once, not only those of the last one, and the rotation names
/// them all.
#[test]
fn a_rotation_without_grace_ends_an_earlier_rotations_grace() {
    let rot = Rot::new();
    rot.add("openai", OLD_OPENAI);
    let first = rot.create_key("openai");
    let serve = rot.serve();
    let (code, _, stderr) = output(rot.till().args(["rotate", "--mint", "--grace", "24h"]));
    assert_eq!(code, 0, "{stderr}");
    let second = rot.create_key("openai");
    assert_eq!(serve.chat(&first).0, 200);
    assert_eq!(serve.chat(&second).0, 200);
    let kids: Vec<String> = {
        let ledger = rot.ledger();
        let mut stmt = ledger
            .prepare("SELECT kid FROM mint_keys ORDER BY created_at")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(kids.len(), 2);

    let (code, _, stderr) = output(rot.till().args(["rotate", "--mint"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "keys signed by {},{} stopped working",
            kids[0], kids[1]
        )),
        "{stderr}"
    );
    for key in [&first, &second] {
        let (status, body) = serve.chat(key);
        assert_eq!(status, 401, "{body}");
        assert!(body.contains("signed by a retired mint key"), "{body}");
        // And `till key show` says so, as the proxy does.
        let (code, stdout, stderr) = output(rot.till().args(["key", "show", key, "--json"]));
        assert_eq!(code, 0, "{stderr}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(v["status"], "invalid", "{v}");
        // And why (it said `invalid` alone).
        let (_, stdout, _) = output(rot.till().args(["key", "show", key]));
        assert!(
            stdout.contains("status:   invalid: its mint key was retired at ")
                && stdout.contains("and the keys it signed stopped working at "),
            "{stdout}"
        );
    }
    assert_eq!(serve.chat(&rot.create_key("openai")).0, 200);
    // A later rotation with grace does not lengthen an ended one.
    let (code, _, stderr) = output(rot.till().args(["rotate", "--mint", "--grace", "1h"]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(serve.chat(&first).0, 401);
}

/// `till remove` reaches a running proxy the way a rotation does: from its next request on it
/// forwards nothing with the removed key (the answer is the error of a proxy with no key
/// stored), and a key added afterwards is the one it forwards with.
#[test]
fn a_running_proxy_stops_using_a_removed_key_and_takes_up_a_new_one() {
    const NEW_OPENAI: &str = "sk-proj-new0000000000000000000000000000000000000005";
    let rot = Rot::new();
    rot.add("openai", OLD_OPENAI);
    let child = rot.create_key("openai");
    let serve = rot.serve();
    let (status, body) = serve.chat(&child);
    assert_eq!(status, 200, "{body}");
    assert_eq!(rot.last_upstream_openai_key(), OLD_OPENAI);

    let (code, _, stderr) = output(rot.till().args(["remove", "openai"]));
    assert_eq!(code, 0, "{stderr}");
    rot.mock.clear_requests();
    let (status, body) = serve.chat(&child);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no_root_key"), "{body}");
    assert!(
        body.contains("till has no openai key to forward with"),
        "{body}"
    );
    let reached = rot.mock.requests();
    assert!(
        reached.is_empty(),
        "a request went upstream after the key was removed: {reached:?}"
    );

    rot.mock.add_key(NEW_OPENAI);
    rot.add("openai", NEW_OPENAI);
    let (status, body) = serve.chat(&child);
    assert_eq!(status, 200, "{body}");
    assert_eq!(rot.last_upstream_openai_key(), NEW_OPENAI);
}

#[test]
fn due_rotates_exactly_the_keys_past_their_age() {
    let rot = stocked();
    rot.config("", "[rotation]\nmax_age = \"30d\"\n");
    let _ = rot.create_key("openai"); // makes the mint key
    let old = now() as i64 - 40 * 86_400;
    let fresh = now() as i64 - 86_400;
    {
        let conn = rot.ledger();
        conn.execute(
            "UPDATE root_keys SET added_at = ?1 WHERE provider IN ('openai', 'anthropic')",
            [old],
        )
        .unwrap();
        conn.execute(
            "UPDATE root_keys SET added_at = ?1 WHERE provider = 'gemini'",
            [fresh],
        )
        .unwrap();
        conn.execute("UPDATE mint_keys SET created_at = ?1", [old])
            .unwrap();
    }
    let before = rot.root_rows();
    let old_kid: String = rot
        .ledger()
        .query_row("SELECT kid FROM mint_keys", [], |r| r.get(0))
        .unwrap();

    // status shows what is due and how.
    let (code, stdout, _) = output(rot.till().args(["status", "--json"]));
    assert_eq!(code, 0);
    let status: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status["due"], 3, "{status}");
    let row = |name: &str| {
        status["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["name"] == name && k["kind"] != "admin")
            .unwrap()
            .clone()
    };
    assert_eq!(row("openai")["rotation"], "automatic");
    assert_eq!(row("anthropic")["rotation"], "guided");
    assert_eq!(row("gemini")["due"], false);
    assert_eq!(row("mint")["due"], true);
    let (code, _, stderr) = output(rot.till().args(["status"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("3 due (older than 30d); `till rotate --due` rotates the 2 automatic ones; `till rotate anthropic` needs a person to make the new key"),
        "{stderr}"
    );

    // Without --yes and without a terminal, nothing happens.
    let (code, _, stderr) = output(rot.till().args(["rotate", "--due"]));
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(rot.root_rows(), before);

    let (code, stdout, stderr) = output(rot.till().args(["rotate", "--due", "--yes"]));
    assert_eq!(
        code, 1,
        "anthropic still needs a person: {stdout}\n{stderr}"
    );
    assert!(stdout.contains("rotated       openai"), "{stdout}");
    assert!(stdout.contains("rotated       mint"), "{stdout}");
    assert!(stdout.contains("needs person  anthropic"), "{stdout}");
    assert!(stdout.contains("till rotate anthropic"), "{stdout}");
    assert!(!stdout.contains("gemini"), "{stdout}");
    // The mint key went without --grace: its keys stopped at once, and it said so first.
    assert!(
        stderr.contains("the mint key is due and no --grace is given"),
        "{stderr}"
    );

    let after = rot.root_rows();
    let find = |rows: &[(String, String, i64, Option<i64>)], p: &str| {
        rows.iter().find(|r| r.0 == p).unwrap().clone()
    };
    assert_ne!(find(&after, "openai").1, find(&before, "openai").1);
    assert_eq!(find(&after, "anthropic"), find(&before, "anthropic"));
    assert_eq!(find(&after, "gemini"), find(&before, "gemini"));
    let retired: Option<i64> = rot
        .ledger()
        .query_row(
            "SELECT retired_at FROM mint_keys WHERE kid = ?1",
            [&old_kid],
            |r| r.get(0),
        )
        .unwrap();
    assert!(retired.is_some(), "the old mint key was retired");
    let targets: Vec<String> = rot.rotations().into_iter().map(|r| r.0).collect();
    assert_eq!(targets, ["openai", "mint"]);
    // What is left needs a person, and status no longer points at --due.
    let (code, _, stderr) = output(rot.till().args(["status"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("1 due (older than 30d); `till rotate anthropic` needs a person"),
        "{stderr}"
    );
    assert!(!stderr.contains("--due"), "{stderr}");

    // Once the person has rotated anthropic, nothing is due and --due exits 0.
    rot.mock.add_key(NEW_ANTHROPIC);
    let (code, _, stderr) =
        output_with_stdin(rot.till().args(["rotate", "anthropic"]), NEW_ANTHROPIC);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("delete the old key"), "{stderr}");
    let (code, stdout, stderr) = output(rot.till().args(["rotate", "--due", "--yes"]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stderr.contains("no key is due"), "{stderr}");
}

#[test]
fn till_run_warns_once_a_day_about_old_keys() {
    let rot = Rot::new();
    rot.add("openai", OLD_OPENAI);
    rot.config("", "[rotation]\nmax_age = \"30d\"\n");
    rot.ledger()
        .execute(
            "UPDATE root_keys SET added_at = ?1",
            [now() as i64 - 31 * 86_400],
        )
        .unwrap();
    let run = || output(rot.till().args(["run", "-q", "--", "true"]));
    let (code, _, stderr) = run();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("older than [rotation] max_age (30d): openai (31d)"),
        "{stderr}"
    );
    let (_, _, stderr) = run();
    assert!(
        !stderr.contains("max_age"),
        "warned twice in a day: {stderr}"
    );
    rot.ledger()
        .execute(
            "UPDATE notices SET at = ?1 WHERE name = 'rotation_due'",
            [now() as i64 - 86_401],
        )
        .unwrap();
    let (_, _, stderr) = run();
    assert!(
        stderr.contains("max_age"),
        "no warning a day later: {stderr}"
    );
}

/// EOF instead of a key: nothing is stored, recorded or sent anywhere.
#[test]
fn eof_at_the_prompt_changes_nothing() {
    let rot = stocked();
    let before = rot.root_rows();
    let store = rot.store_bytes();
    rot.mock.clear_requests();
    let (code, _, stderr) = output_with_stdin(rot.till().args(["rotate", "anthropic"]), "");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("the key is empty"), "{stderr}");
    assert!(stderr.contains("nothing was changed"), "{stderr}");
    assert_eq!(rot.store_bytes(), store);
    assert_eq!(rot.root_rows(), before);
    assert!(rot.rotations().is_empty());
    assert!(rot.mock.requests().is_empty());
}

/// Ctrl-C at the hidden prompt (SIGINT to till on a pseudo-terminal) ends till before it has
/// done anything.
#[cfg(target_os = "linux")]
#[test]
fn sigint_at_the_prompt_changes_nothing() {
    use std::os::unix::process::ExitStatusExt as _;

    let rot = stocked();
    let before = rot.root_rows();
    let store = rot.store_bytes();
    rot.mock.clear_requests();

    let mut cmd = rot.till();
    cmd.args(["rotate", "anthropic"]);
    let crate::support::AtPrompt {
        mut child,
        master,
        slave,
        ..
    } = crate::support::at_prompt(&mut cmd, crate::support::pty(), "new anthropic API key");
    drop(slave);
    // SAFETY: signalling the child this test started.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGINT), "{status:?}");
    drop(master);

    assert_eq!(rot.store_bytes(), store);
    assert_eq!(rot.root_rows(), before);
    assert!(rot.rotations().is_empty());
    assert!(rot.mock.requests().is_empty());
}

#[test]
fn rotate_needs_something_to_rotate() {
    let rot = Rot::new();
    let (code, _, stderr) = output(rot.till().args(["rotate"]));
    assert_eq!(code, 2, "{stderr}");
    let (code, _, stderr) = output(rot.till().args(["rotate", "openai"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("till add openai"), "{stderr}");
    let (code, _, stderr) = output(rot.till().args(["rotate", "openai", "--grace", "1h"]));
    assert_eq!(code, 2, "--grace without --mint: {stderr}");
    assert!(stderr.contains("--grace is for the mint key"), "{stderr}");
    assert!(stderr.contains("till rotate --mint --grace"), "{stderr}");
    let (code, _, stderr) = output(rot.till().args(["rotate", "openai", "--yes"]));
    assert_eq!(code, 2, "--yes with a provider: {stderr}");
    assert!(stderr.contains("--yes goes with --due"), "{stderr}");
    let (code, _, stderr) = output(rot.till().args(["add", "gemini", "--admin"]));
    assert_eq!(code, 2, "{stderr}");
}

/// Two `till add`s of one provider at once, with different keys: one stores its key and says
/// so, the other changes nothing and says why. Never both "stored" with one of them lost.
#[test]
fn two_adds_of_one_provider_at_once_never_both_say_stored() {
    const A: &str = "sk-proj-aaaa000000000000000000000000000000000000000a";
    const B: &str = "sk-proj-bbbb000000000000000000000000000000000000000b";
    let mock = till_mock::spawn(MockOptions {
        keys: vec![A.into(), B.into()],
        ..Default::default()
    });
    for round in 0..4 {
        let env = TestEnv::new();
        env.config(&format!(
            "[providers.openai]\nbase_url = \"{}\"\n",
            mock.url()
        ));
        let start = |key: &str| {
            let mut child = env
                .till()
                .args(["add", "openai"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write as _;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(key.as_bytes()).unwrap();
            drop(stdin);
            child
        };
        let (a, b) = (start(A), start(B));
        let outcomes = [
            (A, a.wait_with_output().unwrap()),
            (B, b.wait_with_output().unwrap()),
        ];
        let stored: Vec<&str> = outcomes
            .iter()
            .filter(|(_, out)| out.status.success())
            .map(|(key, _)| *key)
            .collect();
        let said = |out: &std::process::Output| String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            stored.len(),
            1,
            "round {round}: {:?} / {:?}",
            said(&outcomes[0].1),
            said(&outcomes[1].1)
        );
        let (_, listed, _) = output(env.till().args(["list", "--json"]));
        let listed: Value = serde_json::from_str(&listed).unwrap();
        assert_eq!(
            listed[0]["fingerprint"].as_str(),
            Some(till::ledger::fingerprint(stored[0]).as_str()),
            "round {round}: the key kept is the one whose add said so"
        );
    }
}

/// SIGTERM (what `timeout`, cron and systemd send) during a rotation is taken as Ctrl-C is:
/// the rotation winds down and says so (exit 1), rather than dying where it stood with a new
/// key made and not recorded. Here the provider never answers the new key's check.
#[cfg(unix)]
#[test]
fn sigterm_during_a_rotation_winds_it_down() {
    use std::os::unix::process::ExitStatusExt as _;

    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let env = TestEnv::new();
    env.config(&format!(
        "[providers.silent]\napi = \"openai\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\n"
    ));
    let (code, _, stderr) = output_with_stdin(
        env.till().args(["add", "silent", "--no-verify"]),
        "sk-old-0123456789abcdef",
    );
    assert_eq!(code, 0, "{stderr}");
    let child = env
        .till()
        .args(["rotate", "silent", "--from-env", "NEWK"])
        .env("NEWK", "sk-new-0123456789abcdef")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), None, "{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10), "{stderr}");
    drop(silent);
}
