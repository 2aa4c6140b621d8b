//! The rotation library against the in-process mock provider, an in-memory ledger and a file
//! store in a temp dir: the automated flow, a failure at every step (injected through
//! [`Rotator::fail_at`] or a store that refuses writes) leaving the old key in place, the
//! guided flow with canned answers, `--due`, and mint rotation with and without grace.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};

use super::*;
use crate::ledger::{RootKeyIds, RootKeyMeta};
use crate::secrets::StoreError;
use crate::secrets::file::{FileStore, Unlock};
use till_mock::{KeyStatus, MockHandle, MockOptions};

const OLD_OPENAI: &str = "sk-proj-old0000000000000000000000000000000000000001";
const OLD_ANTHROPIC: &str = "sk-ant-api03-old000000000000000000000000000000000002";
const NEW_ANTHROPIC: &str = "sk-ant-api03-new000000000000000000000000000000000004";
const GEMINI: &str = "AIzaSy-gemini-0000000000000000000000000000000003";
const ADMIN: &str = till_mock::DEFAULT_ADMIN_KEY;
const PASSPHRASE: &str = "correct horse battery staple";
const DAY: u64 = 86_400;

/// A mock provider, a ledger and a store with openai (plus its admin key), anthropic and
/// gemini keys, added `age` seconds ago.
struct Fixture {
    mock: MockHandle,
    ledger: Ledger,
    config: Config,
    providers: Providers,
    store_path: PathBuf,
    _dir: tempfile::TempDir,
}

fn open_store(path: &Path) -> FileStore {
    FileStore::open(path, Unlock::Passphrase(SecretString::from(PASSPHRASE))).unwrap()
}

impl Fixture {
    fn new(extra_config: &str) -> Self {
        let mock = till_mock::spawn(MockOptions {
            keys: vec![OLD_OPENAI.into(), OLD_ANTHROPIC.into(), GEMINI.into()],
            ..Default::default()
        });
        let dir = tempfile::tempdir().unwrap();
        let url = mock.url();
        let config = Config::parse(
            &format!(
                "[providers.openai]\nbase_url = \"{url}\"\nadmin_project = \"proj_till\"\n\
                 [providers.anthropic]\nbase_url = \"{url}\"\n\
                 [providers.gemini]\nbase_url = \"{url}\"\n{extra_config}"
            ),
            &dir.path().join("config.toml"),
        )
        .unwrap();
        let providers = Providers::from_config(&config);
        let fixture = Self {
            mock,
            ledger: Ledger::open_in_memory().unwrap(),
            config,
            providers,
            store_path: dir.path().join("secrets.age"),
            _dir: dir,
        };
        let added = now_unix() - 40 * DAY;
        for (provider, key) in [
            ("openai", OLD_OPENAI),
            ("anthropic", OLD_ANTHROPIC),
            ("gemini", GEMINI),
        ] {
            fixture.put(&root_secret_name(provider), key);
            fixture
                .ledger
                .record_root_key(provider, &fingerprint(key), added)
                .unwrap();
        }
        fixture.add_admin("openai");
        fixture
    }

    fn put(&self, name: &str, value: &str) {
        open_store(&self.store_path)
            .set(name, &SecretString::from(value.to_string()))
            .unwrap();
    }

    fn add_admin(&self, provider: &str) {
        self.put(&admin_secret_name(provider), ADMIN);
        self.ledger
            .record_admin_key(provider, &fingerprint(ADMIN), now_unix())
            .unwrap();
    }

    fn rotator(&self) -> Rotator<'_> {
        let path = self.store_path.clone();
        Rotator::new(
            &self.ledger,
            &self.providers,
            &self.config,
            Box::new(move || Ok(Box::new(open_store(&path)) as Box<dyn SecretStore>)),
        )
        .unwrap()
        .retry_delays(Vec::new())
    }

    /// A rotator whose store reads but refuses every write.
    fn rotator_with_read_only_store(&self) -> Rotator<'_> {
        let path = self.store_path.clone();
        Rotator::new(
            &self.ledger,
            &self.providers,
            &self.config,
            Box::new(move || Ok(Box::new(ReadOnly(open_store(&path))) as Box<dyn SecretStore>)),
        )
        .unwrap()
        .retry_delays(Vec::new())
    }

    fn provider(&self, name: &str) -> Provider {
        self.providers.get(name).unwrap().clone()
    }

    fn stored(&self, name: &str) -> Option<String> {
        open_store(&self.store_path)
            .get(name)
            .unwrap()
            .map(|s| s.expose_secret().to_string())
    }

    fn root_row(&self, provider: &str) -> RootKeyMeta {
        self.ledger.root_key(provider).unwrap().unwrap()
    }

    fn status(&self, value: &str) -> Option<KeyStatus> {
        self.mock
            .keys()
            .into_iter()
            .find(|k| k.value == value)
            .map(|k| k.status)
    }

    /// Keys made through the admin API, in every state.
    fn created(&self) -> Vec<till_mock::KeyInfo> {
        self.mock
            .keys()
            .into_iter()
            .filter(|k| k.service_account_id.is_some())
            .collect()
    }

    /// `(target, ok, step)` of every recorded attempt, oldest first.
    fn attempts(&self) -> Vec<(String, bool, String)> {
        let mut rows: Vec<_> = self
            .ledger
            .rotations(100)
            .unwrap()
            .into_iter()
            .map(|r| (r.target, r.ok, r.step))
            .collect();
        rows.reverse();
        rows
    }

    /// Asserts that a failed rotation of `provider` left `old` working and in place.
    fn assert_untouched(&self, provider: &str, old: &str, before: &RootKeyMeta) {
        assert_eq!(
            self.stored(&root_secret_name(provider)).as_deref(),
            Some(old)
        );
        let row = self.root_row(provider);
        assert_eq!(
            (&row.fingerprint, row.added_at, row.rotated_at),
            (&before.fingerprint, before.added_at, before.rotated_at)
        );
        assert_eq!(self.status(old), Some(KeyStatus::Active));
        for k in self.created() {
            assert_eq!(
                k.status,
                KeyStatus::Deleted,
                "a created key was left: {k:?}"
            );
        }
    }
}

/// A store that reads but cannot write, as a full disk or a locked keychain would.
struct ReadOnly(FileStore);

impl SecretStore for ReadOnly {
    fn kind(&self) -> StoreKind {
        self.0.kind()
    }
    fn get(&self, name: &str) -> Result<Option<SecretString>, StoreError> {
        self.0.get(name)
    }
    fn set(&self, _: &str, _: &SecretString) -> Result<(), StoreError> {
        Err(StoreError::Other("the store refuses writes".into()))
    }
    fn delete(&self, _: &str) -> Result<bool, StoreError> {
        Err(StoreError::Other("the store refuses writes".into()))
    }
}

/// A store in which another process replaces `name` just before this one writes it.
struct ChangedUnderneath {
    store: FileStore,
    path: PathBuf,
    name: String,
}

impl SecretStore for ChangedUnderneath {
    fn kind(&self) -> StoreKind {
        self.store.kind()
    }
    fn get(&self, name: &str) -> Result<Option<SecretString>, StoreError> {
        self.store.get(name)
    }
    fn set(&self, name: &str, value: &SecretString) -> Result<(), StoreError> {
        self.other(name);
        self.store.set(name, value)
    }
    fn delete(&self, name: &str) -> Result<bool, StoreError> {
        self.store.delete(name)
    }
    fn set_if_unchanged(
        &self,
        name: &str,
        seen: Option<&SecretString>,
        value: &SecretString,
    ) -> Result<bool, StoreError> {
        self.other(name);
        self.store.set_if_unchanged(name, seen, value)
    }
}

impl ChangedUnderneath {
    fn other(&self, name: &str) {
        if name == self.name {
            open_store(&self.path)
                .set(name, &SecretString::from(OTHER_OPENAI))
                .unwrap();
        }
    }
}

const OTHER_OPENAI: &str = "sk-proj-other000000000000000000000000000000000000009";

/// Another till process replaces the key while a rotation runs (`till add --replace`): the
/// rotation stores nothing over it and deletes the key it made, and the ledger keeps its row.
#[test]
fn a_key_another_process_replaced_meanwhile_is_not_written_over() {
    let f = Fixture::new("");
    let before = f.root_row("openai");
    let path = f.store_path.clone();
    let rotator = Rotator::new(
        &f.ledger,
        &f.providers,
        &f.config,
        Box::new(move || {
            Ok(Box::new(ChangedUnderneath {
                store: open_store(&path),
                path: path.clone(),
                name: crate::secrets::root_secret_name("openai"),
            }) as Box<dyn SecretStore>)
        }),
    )
    .unwrap()
    .retry_delays(Vec::new());
    let outcome = rotator
        .rotate_provider(&f.provider("openai"), &mut Canned::default())
        .unwrap();
    assert_eq!(
        (outcome.ok, outcome.step),
        (false, Step::Store),
        "{outcome:?}"
    );
    assert!(
        outcome.message.contains("another till process"),
        "{outcome:?}"
    );
    assert_eq!(
        f.stored(&crate::secrets::root_secret_name("openai"))
            .as_deref(),
        Some(OTHER_OPENAI)
    );
    let created = f.created();
    assert_eq!(created.len(), 1);
    assert_eq!(f.status(&created[0].value), Some(KeyStatus::Deleted));
    assert_eq!(f.root_row("openai"), before);
}

/// A ledger that refuses every change of `root_keys` (locked past the busy wait, a full
/// disk) when the new key is recorded: the store gets the old key back and the key till made
/// is deleted. The ledger, which refuses the old row's rewrite too, never lost it: this was
/// reported as stuck, "the new key stays in use", with the new key left alive at the provider.
#[test]
fn a_ledger_that_refuses_the_new_row_leaves_the_old_key_and_deletes_the_new() {
    let f = Fixture::new("");
    let before = f.root_row("openai");
    f.ledger
        .conn()
        .execute_batch(
            "CREATE TRIGGER refuse_update BEFORE UPDATE ON root_keys BEGIN SELECT RAISE(ABORT, 'refused'); END;
             CREATE TRIGGER refuse_insert BEFORE INSERT ON root_keys BEGIN SELECT RAISE(ABORT, 'refused'); END;",
        )
        .unwrap();
    let outcome = f
        .rotator()
        .rotate_provider(&f.provider("openai"), &mut Canned::default())
        .unwrap();
    assert_eq!(
        (outcome.ok, outcome.step),
        (false, Step::Store),
        "{outcome:?}"
    );
    assert!(
        outcome
            .message
            .contains("cannot record the new key in the ledger"),
        "{outcome:?}"
    );
    assert!(!outcome.message.contains("stays in use"), "{outcome:?}");
    f.ledger
        .conn()
        .execute_batch("DROP TRIGGER refuse_update; DROP TRIGGER refuse_insert;")
        .unwrap();
    f.assert_untouched("openai", OLD_OPENAI, &before);
    let created = f.created();
    assert_eq!(created.len(), 1);
    assert_eq!(f.status(&created[0].value), Some(KeyStatus::Deleted));
}

/// Canned answers: keys handed out in order, one answer to `--due`'s question.
#[derive(Default)]
struct Canned {
    keys: Vec<&'static str>,
    confirm: Option<bool>,
    asked_for_keys: usize,
    asked_to_confirm: usize,
    notices: Vec<Notice>,
    finished: Vec<String>,
}

impl Prompter for Canned {
    fn new_key(&mut self, _provider: &Provider) -> anyhow::Result<SecretString> {
        self.asked_for_keys += 1;
        if self.keys.is_empty() {
            anyhow::bail!("nobody answered");
        }
        Ok(SecretString::from(self.keys.remove(0).to_string()))
    }

    fn confirm_due(&mut self, _names: &[&str]) -> anyhow::Result<bool> {
        self.asked_to_confirm += 1;
        self.confirm.ok_or_else(|| anyhow::anyhow!("nobody to ask"))
    }

    fn notice(&mut self, notice: &Notice) {
        self.notices.push(notice.clone());
    }

    fn finished(&mut self, outcome: &Outcome) {
        self.finished.push(outcome.target.clone());
    }
}

#[test]
fn automated_rotation_creates_verifies_stores_and_deletes() {
    let f = Fixture::new("");
    let mut canned = Canned::default();
    let outcome = f
        .rotator()
        .rotate_provider(&f.provider("openai"), &mut canned)
        .unwrap();
    assert!(outcome.ok, "{outcome:?}");
    assert_eq!((outcome.method, outcome.step), (Method::Admin, Step::Done));
    assert_eq!(
        canned.asked_for_keys, 0,
        "an automated rotation asks nobody"
    );

    let created = f.created();
    assert_eq!(created.len(), 1, "{created:?}");
    let new = &created[0];
    assert_eq!(new.status, KeyStatus::Active);
    assert_eq!(
        f.stored(&root_secret_name("openai")).as_deref(),
        Some(new.value.as_str())
    );
    assert_eq!(f.status(OLD_OPENAI), Some(KeyStatus::Deleted));
    let row = f.root_row("openai");
    assert_eq!(row.fingerprint, fingerprint(&new.value));
    assert!(row.rotated_at.is_some());
    assert_eq!(outcome.old_fingerprint, Some(fingerprint(OLD_OPENAI)));
    assert_eq!(outcome.new_fingerprint, Some(fingerprint(&new.value)));
    assert!(!outcome.message.contains(&new.value));
    assert_eq!(f.attempts(), [("openai".into(), true, "done".into())]);
}

#[test]
fn a_failure_at_any_admin_step_leaves_the_old_key_working() {
    for step in [Step::Find, Step::Create, Step::Verify, Step::Delete] {
        let f = Fixture::new("");
        let before = f.root_row("openai");
        let outcome = f
            .rotator()
            .fail_at(Some(step))
            .rotate_provider(&f.provider("openai"), &mut Canned::default())
            .unwrap();
        assert!(!outcome.ok, "{step:?}: {outcome:?}");
        assert_eq!(outcome.step, step);
        assert!(
            outcome
                .message
                .contains(&format!("failed at `{}`", step.as_str())),
            "{}",
            outcome.message
        );
        assert_eq!(outcome.leftover_key_id, None);
        f.assert_untouched("openai", OLD_OPENAI, &before);
        // Steps after `create` made a key; it must be gone again.
        let made = matches!(step, Step::Verify | Step::Delete);
        assert_eq!(f.created().len(), usize::from(made), "{step:?}");
        if made {
            assert!(
                outcome.message.contains("the new key was deleted again"),
                "{}",
                outcome.message
            );
        }
        if step == Step::Delete {
            assert!(outcome.message.contains("the old key was put back"));
        }
        assert_eq!(
            f.attempts(),
            [("openai".into(), false, step.as_str().into())]
        );
    }
}

#[test]
fn a_store_that_refuses_the_new_key_deletes_it_again() {
    let f = Fixture::new("");
    let before = f.root_row("openai");
    let outcome = f
        .rotator_with_read_only_store()
        .rotate_provider(&f.provider("openai"), &mut Canned::default())
        .unwrap();
    assert_eq!((outcome.ok, outcome.step), (false, Step::Store));
    assert!(outcome.message.contains("cannot store the new key"));
    assert!(outcome.message.contains("the new key was deleted again"));
    assert_eq!(f.created().len(), 1);
    f.assert_untouched("openai", OLD_OPENAI, &before);
    assert_eq!(f.attempts(), [("openai".into(), false, "store".into())]);
}

#[test]
fn an_interrupt_before_the_swap_changes_nothing() {
    let f = Fixture::new("");
    let before = f.root_row("openai");
    let rotator = f.rotator();
    rotator.interrupt().raise();
    let outcome = rotator
        .rotate_provider(&f.provider("openai"), &mut Canned::default())
        .unwrap();
    assert_eq!((outcome.ok, outcome.step), (false, Step::Find));
    assert!(outcome.message.contains("interrupted"));
    f.assert_untouched("openai", OLD_OPENAI, &before);
    assert!(f.created().is_empty());
}

/// Ctrl-C while the provider is checking the new key (one that never answers) ends the
/// rotation at once, not after the check's timeout, with nothing changed.
#[test]
fn an_interrupt_while_the_new_key_is_checked_ends_the_wait() {
    // Connections are queued by the kernel and never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let f = Fixture::new(&format!(
        "[providers.silent]\napi = \"openai\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\n"
    ));
    f.put(&root_secret_name("silent"), OLD_OPENAI);
    f.ledger
        .record_root_key("silent", &fingerprint(OLD_OPENAI), now_unix() - 40 * DAY)
        .unwrap();
    let before = f.root_row("silent");
    let rotator = f.rotator();
    let interrupt = rotator.interrupt().clone();
    let raiser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        interrupt.raise();
    });
    let started = std::time::Instant::now();
    let outcome = rotator
        .rotate_provider(
            &f.provider("silent"),
            &mut Canned {
                keys: vec![NEW_ANTHROPIC],
                ..Default::default()
            },
        )
        .unwrap();
    raiser.join().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        (outcome.ok, outcome.step),
        (false, Step::Verify),
        "{outcome:?}"
    );
    assert!(outcome.message.contains("interrupted"), "{outcome:?}");
    f.assert_untouched("silent", OLD_OPENAI, &before);
    drop(silent);
}

#[test]
fn guided_rotation_takes_the_persons_key_and_sets_the_old_one_inactive() {
    let f = Fixture::new("");
    f.add_admin("anthropic");
    f.mock.add_key(NEW_ANTHROPIC);
    let mut canned = Canned {
        keys: vec![NEW_ANTHROPIC],
        ..Default::default()
    };
    let outcome = f
        .rotator()
        .rotate_provider(&f.provider("anthropic"), &mut canned)
        .unwrap();
    assert!(outcome.ok, "{outcome:?}");
    assert_eq!(outcome.method, Method::Guided);
    assert_eq!(outcome.hint, None, "nothing is left for the person to do");
    assert_eq!(canned.asked_for_keys, 1);
    assert_eq!(
        f.stored(&root_secret_name("anthropic")).as_deref(),
        Some(NEW_ANTHROPIC)
    );
    assert_eq!(
        f.root_row("anthropic").fingerprint,
        fingerprint(NEW_ANTHROPIC)
    );
    assert_eq!(f.status(OLD_ANTHROPIC), Some(KeyStatus::Inactive));
    assert_eq!(f.status(NEW_ANTHROPIC), Some(KeyStatus::Active));
}

#[test]
fn guided_rotation_without_an_admin_key_leaves_the_old_key_to_the_person() {
    let f = Fixture::new("");
    f.mock.add_key(NEW_ANTHROPIC);
    let mut canned = Canned {
        keys: vec![NEW_ANTHROPIC],
        ..Default::default()
    };
    let outcome = f
        .rotator()
        .rotate_provider(&f.provider("anthropic"), &mut canned)
        .unwrap();
    assert!(outcome.ok, "{outcome:?}");
    let todo = outcome.hint.unwrap();
    assert!(todo.contains("delete the old key"), "{todo}");
    assert_eq!(f.status(OLD_ANTHROPIC), Some(KeyStatus::Active));
}

#[test]
fn a_failed_deactivation_puts_the_old_key_back() {
    let f = Fixture::new("");
    f.add_admin("anthropic");
    f.mock.add_key(NEW_ANTHROPIC);
    let before = f.root_row("anthropic");
    let outcome = f
        .rotator()
        .fail_at(Some(Step::Deactivate))
        .rotate_provider(
            &f.provider("anthropic"),
            &mut Canned {
                keys: vec![NEW_ANTHROPIC],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!((outcome.ok, outcome.step), (false, Step::Deactivate));
    assert!(outcome.message.contains("the old key was put back"));
    f.assert_untouched("anthropic", OLD_ANTHROPIC, &before);
    assert_eq!(
        f.attempts(),
        [("anthropic".into(), false, "deactivate".into())]
    );
}

#[test]
fn guided_rotation_refuses_a_rejected_key_and_the_same_key() {
    let f = Fixture::new("");
    let before = f.root_row("anthropic");
    let outcome = f
        .rotator()
        .rotate_provider(
            &f.provider("anthropic"),
            &mut Canned {
                keys: vec!["sk-ant-api03-unknown-000000000000000000000000000000"],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!((outcome.ok, outcome.step), (false, Step::Verify));
    assert!(outcome.hint.unwrap().contains("the new key was not stored"));
    f.assert_untouched("anthropic", OLD_ANTHROPIC, &before);

    let same = f.rotator().rotate_provider(
        &f.provider("anthropic"),
        &mut Canned {
            keys: vec![OLD_ANTHROPIC],
            ..Default::default()
        },
    );
    assert!(matches!(same, Err(RotateError::SameKey { .. })), "{same:?}");
    // A person who gives no key changes nothing, and neither is recorded.
    let none = f
        .rotator()
        .rotate_provider(&f.provider("anthropic"), &mut Canned::default());
    assert!(matches!(none, Err(RotateError::Input(_))), "{none:?}");
    assert_eq!(f.attempts().len(), 1);
    f.assert_untouched("anthropic", OLD_ANTHROPIC, &before);
}

#[test]
fn an_admin_key_missing_from_the_store_falls_back_to_a_person() {
    let f = Fixture::new("");
    open_store(&f.store_path)
        .delete(&admin_secret_name("openai"))
        .unwrap();
    let mut canned = Canned::default();
    let err = f
        .rotator()
        .rotate_provider(&f.provider("openai"), &mut canned)
        .unwrap_err();
    assert!(matches!(err, RotateError::Input(_)), "{err:?}");
    assert_eq!(canned.asked_for_keys, 1);
    assert!(matches!(
        canned.notices.as_slice(),
        [Notice::AdminKeyNotInStore { .. }]
    ));
}

/// Adds a mint key created `age` seconds ago; its kid.
fn old_mint(f: &Fixture, age: u64) -> String {
    let key = crate::childkey::MintKey::generate().unwrap();
    let kid = key.kid().to_string();
    open_store(&f.store_path)
        .set(&crate::secrets::mint_secret_name(&kid), &key.to_stored())
        .unwrap();
    f.ledger.insert_mint(&kid, now_unix() - age).unwrap();
    kid
}

#[test]
fn due_rotates_exactly_the_automatic_keys_past_their_age() {
    let f = Fixture::new("[rotation]\nmax_age = \"30d\"\n");
    // gemini is young; openai (automatic), anthropic (a person's) and the mint key are old.
    f.ledger.remove_root_key("gemini").unwrap();
    f.ledger
        .record_root_key("gemini", &fingerprint(GEMINI), now_unix() - DAY)
        .unwrap();
    let old_kid = old_mint(&f, 40 * DAY);

    let rotator = f.rotator();
    let due = rotator.due_keys(now_unix()).unwrap();
    let automatic: Vec<_> = due.automatic.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(automatic, ["openai", "mint"]);
    let people: Vec<_> = due.needs_person.iter().map(|n| n.target.as_str()).collect();
    assert_eq!(people, ["anthropic"]);
    assert_eq!(due.needs_person[0].command, "till rotate anthropic");

    // Declined: nothing tried.
    let mut no = Canned {
        confirm: Some(false),
        ..Default::default()
    };
    let report = rotator
        .rotate_due(&due, Duration::ZERO, false, &mut no)
        .unwrap();
    assert!(report.declined && report.outcomes.is_empty());
    assert_eq!(no.asked_to_confirm, 1);
    assert!(f.attempts().is_empty());

    // With --yes nobody is asked.
    let mut canned = Canned::default();
    let report = rotator
        .rotate_due(&due, Duration::ZERO, true, &mut canned)
        .unwrap();
    assert_eq!(canned.asked_to_confirm + canned.asked_for_keys, 0);
    assert!(!report.declined && !report.interrupted);
    let done: Vec<_> = report
        .outcomes
        .iter()
        .map(|o| (o.target.as_str(), o.ok))
        .collect();
    assert_eq!(done, [("openai", true), ("mint", true)]);
    assert_eq!(canned.finished, ["openai", "mint"]);
    assert_eq!(f.status(OLD_OPENAI), Some(KeyStatus::Deleted));
    assert_eq!(f.status(OLD_ANTHROPIC), Some(KeyStatus::Active));
    assert_eq!(
        f.stored(&root_secret_name("anthropic")).as_deref(),
        Some(OLD_ANTHROPIC)
    );
    assert_eq!(
        f.stored(&root_secret_name("gemini")).as_deref(),
        Some(GEMINI)
    );
    let mints = f.ledger.mint_keys().unwrap();
    let old = mints.iter().find(|m| m.kid == old_kid).unwrap();
    assert!(old.retired_at.is_some());
    assert_eq!(mints.iter().filter(|m| m.retired_at.is_none()).count(), 1);

    // Rotated keys are young again: nothing is left that needs no person.
    let again = rotator.due_keys(now_unix()).unwrap();
    assert!(again.automatic.is_empty(), "{:?}", again.automatic);
}

#[test]
fn due_records_a_key_that_cannot_even_be_tried() {
    let f = Fixture::new("[rotation]\nmax_age = \"30d\"\n");
    open_store(&f.store_path)
        .delete(&root_secret_name("openai"))
        .unwrap();
    let rotator = f.rotator();
    let due = rotator.due_keys(now_unix()).unwrap();
    let report = rotator
        .rotate_due(&due, Duration::ZERO, true, &mut Canned::default())
        .unwrap();
    let [outcome] = report.outcomes.as_slice() else {
        panic!("{:?}", report.outcomes);
    };
    assert_eq!((outcome.ok, outcome.step), (false, Step::Prepare));
    assert!(outcome.hint.as_deref().unwrap().contains("till add openai"));
    assert_eq!(f.attempts(), [("openai".into(), false, "prepare".into())]);
}

/// A second rotation with a longer grace does not lengthen the first one's, and says so: each
/// old mint key with its own end (it said both worked until the second's).
#[test]
fn a_second_mint_rotation_names_each_old_keys_end() {
    let f = Fixture::new("");
    let first_kid = old_mint(&f, DAY);
    let first = f
        .rotator()
        .rotate_mint(Duration::from_secs(3600), &mut Canned::default())
        .unwrap();
    assert!(first.ok, "{first:?}");
    let second = f
        .rotator()
        .rotate_mint(Duration::from_secs(7200), &mut Canned::default())
        .unwrap();
    assert!(second.ok, "{second:?}");
    let mints = f.ledger.mint_keys().unwrap();
    let end = |kid: &str| {
        crate::time::rfc3339(
            mints
                .iter()
                .find(|m| m.kid == kid)
                .unwrap()
                .valid_until
                .unwrap(),
        )
    };
    let middle_kid = first.new_fingerprint.unwrap();
    assert_ne!(end(&first_kid), end(&middle_kid));
    assert!(
        second
            .message
            .contains(&format!("by {first_kid} until {}", end(&first_kid)))
            && second
                .message
                .contains(&format!("by {middle_kid} until {}", end(&middle_kid))),
        "{}",
        second.message
    );
}

#[test]
fn mint_rotation_with_grace_keeps_the_old_key_until_it_ends() {
    let f = Fixture::new("");
    let old_kid = old_mint(&f, DAY);
    let outcome = f
        .rotator()
        .rotate_mint(Duration::from_secs(3600), &mut Canned::default())
        .unwrap();
    assert!(outcome.ok, "{outcome:?}");
    assert_eq!(outcome.old_fingerprint.as_deref(), Some(old_kid.as_str()));
    assert!(
        outcome.message.contains("work until"),
        "{}",
        outcome.message
    );
    let mints = f.ledger.mint_keys().unwrap();
    let old = mints.iter().find(|m| m.kid == old_kid).unwrap();
    let (retired, until) = (old.retired_at.unwrap(), old.valid_until.unwrap());
    assert_eq!(until - retired, 3600);
    let store = open_store(&f.store_path);
    let entry = crate::mint::load(&f.ledger, &store, &old_kid)
        .unwrap()
        .unwrap();
    assert_eq!(entry.valid_until, Some(until));
    let new_kid = outcome.new_fingerprint.unwrap();
    assert!(
        crate::mint::load(&f.ledger, &store, &new_kid)
            .unwrap()
            .is_some()
    );
    assert_eq!(f.attempts(), [("mint".into(), true, "done".into())]);
}

#[test]
fn mint_rotation_without_grace_ends_the_old_key_at_once() {
    let f = Fixture::new("");
    let old_kid = old_mint(&f, DAY);
    let outcome = f
        .rotator()
        .rotate_mint(Duration::ZERO, &mut Canned::default())
        .unwrap();
    assert!(outcome.ok, "{outcome:?}");
    assert!(
        outcome.message.contains("stopped working"),
        "{}",
        outcome.message
    );
    let mints = f.ledger.mint_keys().unwrap();
    let old = mints.iter().find(|m| m.kid == old_kid).unwrap();
    assert_eq!(old.valid_until, old.retired_at);
}

#[test]
fn a_failed_mint_retirement_removes_the_new_key() {
    for step in [Step::Create, Step::Retire] {
        let f = Fixture::new("");
        let old_kid = old_mint(&f, DAY);
        let outcome = f
            .rotator()
            .fail_at(Some(step))
            .rotate_mint(Duration::ZERO, &mut Canned::default())
            .unwrap();
        assert_eq!((outcome.ok, outcome.step), (false, step));
        let mints = f.ledger.mint_keys().unwrap();
        assert_eq!(mints.len(), 1, "{step:?}: {mints:?}");
        assert_eq!(mints[0].kid, old_kid);
        assert_eq!(mints[0].retired_at, None);
        let store = open_store(&f.store_path);
        assert_eq!(
            crate::mint::current(&f.ledger, &store)
                .unwrap()
                .kid()
                .to_string(),
            old_kid
        );
        assert_eq!(f.attempts(), [("mint".into(), false, step.as_str().into())]);
    }
}

/// Makes a key through the mock's admin API, as a rotation does, outside any rotation.
fn make_key_at_mock(f: &Fixture) -> admin::CreatedKey {
    let client = crate::upstream::client(Duration::from_secs(10));
    let provider = f.provider("openai");
    let admin_key = SecretString::from(ADMIN.to_string());
    let api = admin::AdminApi::new(&client, &provider, &admin_key);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(api.openai_create_key("proj_till", "till-killed"))
        .unwrap()
}

/// A rotation killed (`kill -9`, a power cut) after making its key, or after swapping the old
/// one out but before deleting it, leaves a live key at the provider that nothing uses. Its
/// ids are recorded before that can happen; the next rotation deletes it (by its service
/// account, or by its key id when till did not make it), and leaves alone one recorded so
/// recently that its rotation may still be running.
#[test]
fn keys_a_killed_rotation_left_are_deleted_by_the_next_one() {
    let f = Fixture::new("");
    let made = make_key_at_mock(&f);
    let found = make_key_at_mock(&f);
    let recent = make_key_at_mock(&f);
    let long_ago = now_unix() - 3600;
    let record = |key: &admin::CreatedKey, account: bool, at: u64| {
        let ids = RootKeyIds {
            key_id: key.key_id.clone(),
            service_account_id: account.then(|| key.service_account_id.clone()),
        };
        f.ledger
            .record_root_key_ids("openai", &fingerprint(key.value.expose_secret()), &ids, at)
            .unwrap();
    };
    record(&made, true, long_ago);
    record(&found, false, long_ago);
    record(&recent, true, now_unix());
    let value = |k: &admin::CreatedKey| k.value.expose_secret().to_string();

    let mut canned = Canned::default();
    let outcome = f
        .rotator()
        .rotate_provider(&f.provider("openai"), &mut canned)
        .unwrap();
    assert!(outcome.ok, "{outcome:?}");
    assert_eq!(f.status(&value(&made)), Some(KeyStatus::Deleted));
    assert_eq!(f.status(&value(&found)), Some(KeyStatus::Deleted));
    assert_eq!(f.status(&value(&recent)), Some(KeyStatus::Active));
    assert!(
        canned.notices.contains(&Notice::LeftoverDeleted {
            key_id: made.key_id.clone(),
            provider: "openai".into()
        }),
        "{:?}",
        canned.notices
    );
    assert!(canned.notices.contains(&Notice::LeftoverDeleted {
        key_id: found.key_id.clone(),
        provider: "openai".into()
    }));
    assert!(canned.notices.contains(&Notice::LeftoverRecent {
        key_id: recent.key_id.clone(),
        provider: "openai".into()
    }));
    // Left recorded: the recent one, and the key now stored (the next rotation's old key).
    let left: Vec<String> = f
        .ledger
        .recorded_key_ids("openai")
        .unwrap()
        .into_iter()
        .map(|r| r.ids.key_id)
        .collect();
    let stored = f.stored(&root_secret_name("openai")).unwrap();
    let new = f.created().into_iter().find(|k| k.value == stored).unwrap();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&recent.key_id), "{left:?}");
    assert!(left.contains(&new.id), "{left:?}");
}

/// A rotation that ends, by success or by failure, leaves no key recorded but the stored one's.
#[test]
fn a_finished_rotation_leaves_only_the_stored_keys_ids() {
    for fail in [
        None,
        Some(Step::Verify),
        Some(Step::Store),
        Some(Step::Delete),
    ] {
        let f = Fixture::new("");
        let outcome = f
            .rotator()
            .fail_at(fail)
            .rotate_provider(&f.provider("openai"), &mut Canned::default())
            .unwrap();
        assert_eq!(outcome.ok, fail.is_none(), "{outcome:?}");
        let stored = fingerprint(&f.stored(&root_secret_name("openai")).unwrap());
        for left in f.ledger.recorded_key_ids("openai").unwrap() {
            assert_eq!(left.fingerprint, stored, "{fail:?}: {left:?}");
        }
    }
}

/// A guided rotation leaves the old key to the person (or sets it inactive): its recorded
/// ids are forgotten, or `till doctor` would call it a leftover and the next automatic
/// rotation would delete it.
#[test]
fn a_guided_rotation_forgets_the_replaced_keys_ids() {
    let f = Fixture::new("");
    f.mock.add_key(NEW_ANTHROPIC);
    let ids = RootKeyIds {
        key_id: "key_old".into(),
        service_account_id: None,
    };
    f.ledger
        .record_root_key_ids(
            "anthropic",
            &fingerprint(OLD_ANTHROPIC),
            &ids,
            now_unix() - 3600,
        )
        .unwrap();
    let mut canned = Canned {
        keys: vec![NEW_ANTHROPIC],
        ..Default::default()
    };
    let outcome = f
        .rotator()
        .rotate_provider(&f.provider("anthropic"), &mut canned)
        .unwrap();
    assert!(outcome.ok, "{outcome:?}");
    assert_eq!(f.ledger.recorded_key_ids("anthropic").unwrap(), []);
}
