//! The OS keychain backend: macOS Keychain, Windows Credential Manager, or a Secret Service
//! (gnome-keyring, KeePassXC, …) on Linux, all through keyring-core.
//!
//! One entry per name, filed under service `till` with the name as the user, so
//! `secret-tool search service till` lists them. Every call, connecting included, runs on a
//! worker thread and is waited for at most `timeout`: a locked keyring that shows a prompt
//! nobody answers, or a bus that accepts the connection and then never speaks, becomes a
//! [`StoreError::Timeout`] instead of a hang. This module must never read or write anything but
//! till's own entries, and never hands a secret to anything but the keychain itself.

use std::collections::HashMap;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use keyring_core::{CredentialStore, Entry, Error as KeyringError};
use secrecy::{ExposeSecret as _, SecretString};
use zeroize::{Zeroize as _, Zeroizing};

use super::{KEYCHAIN_SERVICE, SecretStore, StoreError, StoreKind};
use crate::env::EnvVars;

/// A connected keychain. Cheap to share; each call opens its own worker thread.
pub struct KeychainStore {
    store: Arc<CredentialStore>,
    timeout: Duration,
    /// The service attribute of till's entries: `till`, or `TILL_KEYCHAIN_SERVICE`.
    service: Arc<str>,
    /// A file whose lock makes [`SecretStore::set_if_unchanged`] one step between till
    /// processes, as the file store's own lock makes it there.
    lock: Option<std::path::PathBuf>,
}

/// The keychain service till files its entries under. `TILL_KEYCHAIN_SERVICE` changes it,
/// so tests (and people running two separate tills) never touch the real `till` entries.
pub fn service_name() -> String {
    std::env::var(crate::env::EnvVars::TILL_KEYCHAIN_SERVICE)
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| KEYCHAIN_SERVICE.to_string())
}

impl std::fmt::Debug for KeychainStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeychainStore")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl KeychainStore {
    /// Connects to the platform keychain and checks that it answers, all within `timeout`.
    ///
    /// The check lists till's entries (or, where the store cannot list, reads one that never
    /// exists), which is where a locked Secret Service asks to be unlocked; so a keychain that
    /// would hang on the first real read hangs here instead and is reported as a timeout.
    pub fn connect(timeout: Duration) -> Result<Self, StoreError> {
        let service: Arc<str> = service_name().into();
        let probe_service = Arc::clone(&service);
        let store = bounded(timeout, move || {
            let store = platform_store()?;
            probe(&store, &probe_service)?;
            Ok(store)
        })?;
        Ok(Self {
            store,
            timeout,
            service,
            lock: None,
        })
    }

    /// Takes the lock of the file at `path` (made if missing) around each
    /// [`SecretStore::set_if_unchanged`].
    pub fn locked_by(mut self, path: std::path::PathBuf) -> Self {
        self.lock = Some(path);
        self
    }

    /// Runs `op` against the entry for `name` on a worker thread, for at most the timeout.
    fn with_entry<T: Send + 'static>(
        &self,
        name: &str,
        op: impl FnOnce(&Entry) -> Result<T, KeyringError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = Arc::clone(&self.store);
        let service = Arc::clone(&self.service);
        let owned = name.to_owned();
        bounded(self.timeout, move || {
            let entry = Entry::new_in_store(&store, &service, &owned)
                .map_err(|e| operation_error(e, &owned, &service))?;
            op(&entry).map_err(|e| operation_error(e, &owned, &service))
        })
    }
}

impl SecretStore for KeychainStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Keychain
    }

    fn get(&self, name: &str) -> Result<Option<SecretString>, StoreError> {
        let bytes = self.with_entry(name, |entry| match entry.get_secret() {
            Ok(bytes) => Ok(Some(Zeroizing::new(bytes))),
            Err(KeyringError::NoEntry) => Ok(None),
            Err(e) => Err(e),
        })?;
        match bytes {
            None => Ok(None),
            Some(bytes) => match std::str::from_utf8(&bytes) {
                Ok(text) => Ok(Some(SecretString::from(text))),
                Err(_) => Err(StoreError::BadEntry {
                    reason: format!(
                        "the keychain entry {name} (service {}) is not UTF-8 text",
                        self.service
                    ),
                    hint: entry_fix(name, &self.service, false),
                }),
            },
        }
    }

    /// The look and the write under the lock file's lock, so that two till processes that
    /// each saw the same key cannot both replace it (`till add` of two keys at once, a
    /// rotation beside a `till add --replace`): the second sees the first's. Without a lock
    /// file (its directory missing, or unwritable) a look just before the write, as before.
    fn set_if_unchanged(
        &self,
        name: &str,
        seen: Option<&SecretString>,
        value: &SecretString,
    ) -> Result<bool, StoreError> {
        let held = self.lock.as_ref().and_then(|path| {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path)
                .ok()?;
            file.lock().ok()?;
            Some(file)
        });
        let set = super::look_then_set(self, name, seen, value);
        drop(held);
        set
    }

    fn set(&self, name: &str, value: &SecretString) -> Result<(), StoreError> {
        // The worker thread may outlive this call (after a timeout), so it gets its own copy,
        // which zeroizes itself when dropped.
        let value = value.clone();
        self.with_entry(name, move |entry| {
            entry.set_secret(value.expose_secret().as_bytes())
        })
    }

    fn delete(&self, name: &str) -> Result<bool, StoreError> {
        self.with_entry(name, |entry| match entry.delete_credential() {
            Ok(()) => Ok(true),
            Err(KeyringError::NoEntry) => Ok(false),
            Err(e) => Err(e),
        })
    }
}

/// Runs `f` on a new thread and waits for it at most `timeout`.
///
/// A keychain call cannot be cancelled, so on timeout the thread is abandoned: it finishes (or
/// not) on its own and its result is dropped; it does not keep the process alive at exit. A
/// write that timed out may therefore still land later, which is why the error says the
/// keychain did not answer rather than that nothing was written.
pub(crate) fn bounded<T: Send + 'static>(
    timeout: Duration,
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    // Capacity 1, so a late answer never blocks the abandoned thread.
    let (tx, rx) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("till-keychain".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| StoreError::io("cannot start a thread for the keychain call", e))?;
    match rx.recv_timeout(timeout) {
        Ok(result) => result,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(StoreError::Timeout {
            secs: timeout.as_secs_f64(),
        }),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(StoreError::Other(
            "the keychain call failed unexpectedly (its thread panicked)".into(),
        )),
    }
}

/// Asks the keychain something harmless that still needs it to be up and unlocked.
fn probe(store: &Arc<CredentialStore>, service: &str) -> Result<(), StoreError> {
    let spec = HashMap::from([("service", service)]);
    match Entry::search_in_store(store, &spec) {
        Ok(_) => Ok(()),
        Err(KeyringError::NotSupportedByStore(_)) => {
            // No search on this platform: read an entry that is never written (till's names
            // all contain a `/`).
            let entry =
                Entry::new_in_store(store, service, "till-probe").map_err(unreachable_error)?;
            match entry.get_secret() {
                Ok(mut bytes) => {
                    bytes.zeroize();
                    Ok(())
                }
                Err(KeyringError::NoEntry) => Ok(()),
                Err(e) => Err(unreachable_error(e)),
            }
        }
        Err(e) => Err(unreachable_error(e)),
    }
}

#[cfg(target_os = "linux")]
fn platform_store() -> Result<Arc<CredentialStore>, StoreError> {
    let store: Arc<CredentialStore> =
        zbus_secret_service_keyring_store::Store::new().map_err(unreachable_error)?;
    Ok(store)
}

#[cfg(target_os = "macos")]
fn platform_store() -> Result<Arc<CredentialStore>, StoreError> {
    let store: Arc<CredentialStore> =
        apple_native_keyring_store::keychain::Store::new().map_err(unreachable_error)?;
    Ok(store)
}

#[cfg(target_os = "windows")]
fn platform_store() -> Result<Arc<CredentialStore>, StoreError> {
    let store: Arc<CredentialStore> =
        windows_native_keyring_store::Store::new().map_err(unreachable_error)?;
    Ok(store)
}

#[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "windows")))]
fn platform_store() -> Result<Arc<CredentialStore>, StoreError> {
    Err(StoreError::Unavailable {
        reason: "till has no keychain support on this system".into(),
        hint: file_store_hint(),
    })
}

/// What the keychain is called where the user would go looking for it.
const KEYCHAIN_NAME: &str = if cfg!(target_os = "linux") {
    "Secret Service"
} else if cfg!(target_os = "macos") {
    "login keychain"
} else if cfg!(target_os = "windows") {
    "Windows Credential Manager"
} else {
    "keychain"
};

fn file_store_hint() -> String {
    format!(
        "use the encrypted file store: set {}=file and {} (or store = \"file\" in config.toml)",
        EnvVars::TILL_STORE,
        EnvVars::TILL_PASSPHRASE
    )
}

/// The error for a keychain that could not be reached or did not let us in while connecting.
fn unreachable_error(err: KeyringError) -> StoreError {
    let (reason, hint) = match &err {
        KeyringError::NoStorageAccess(e) => (
            format!("the {KEYCHAIN_NAME} refused access (is it locked?): {e}"),
            format!("unlock it and try again, or {}", file_store_hint()),
        ),
        KeyringError::PlatformFailure(e) if cfg!(target_os = "linux") => (
            format!("no Secret Service is reachable on the D-Bus session bus: {e}"),
            format!(
                "start and unlock one (gnome-keyring, KeePassXC), or {}",
                file_store_hint()
            ),
        ),
        KeyringError::PlatformFailure(e) => (
            format!("the {KEYCHAIN_NAME} is not reachable: {e}"),
            format!("unlock it and try again, or {}", file_store_hint()),
        ),
        other => (
            format!("the {KEYCHAIN_NAME} is not usable: {other}"),
            file_store_hint(),
        ),
    };
    scrub(err);
    StoreError::Unavailable { reason, hint }
}

/// The error for a failed call on the entry for `name`.
fn operation_error(err: KeyringError, name: &str, service: &str) -> StoreError {
    let store_err = match &err {
        KeyringError::NoStorageAccess(e) => StoreError::Unavailable {
            reason: format!("the {KEYCHAIN_NAME} refused access to {name} (is it locked?): {e}"),
            hint: format!("unlock it and try again, or {}", file_store_hint()),
        },
        KeyringError::BadEncoding(_) | KeyringError::BadDataFormat(..) => StoreError::BadEntry {
            reason: format!("the keychain entry {name} (service {service}) is not readable text"),
            hint: entry_fix(name, service, false),
        },
        KeyringError::Ambiguous(entries) => StoreError::BadEntry {
            reason: format!(
                "the keychain has {} entries for {name} (service {service}); till expects one",
                entries.len()
            ),
            hint: entry_fix(name, service, true),
        },
        other => StoreError::Other(format!("the keychain failed on {name}: {other}")),
    };
    scrub(err);
    store_err
}

/// How to put right the keychain entries for `name` when till cannot use them: remove them
/// with the keychain's own tool, then store the key again the way its name says.
fn entry_fix(name: &str, service: &str, many: bool) -> String {
    let them = if many { "them" } else { "it" };
    let remove = if cfg!(target_os = "linux") {
        use crate::output::shell_quote as q;
        format!(
            "remove {them} (`secret-tool clear service {} username {}` removes every entry with that service and name)",
            q(service),
            q(name)
        )
    } else if cfg!(target_os = "macos") {
        format!("remove {them} in Keychain Access (service {service}, account {name})")
    } else {
        format!("remove {them} in Credential Manager ({name}.{service})")
    };
    let again = if let Some(provider) = name.strip_prefix("root/") {
        format!("store the key again: till add {provider} --replace")
    } else if let Some(provider) = name.strip_prefix("admin/") {
        format!("store the admin key again: till add {provider} --admin --replace")
    } else if name.starts_with("mint/") {
        "make a new mint key: till rotate --mint (child keys the old one signed stop working)"
            .to_string()
    } else {
        "run the command that stored it again".to_string()
    };
    format!("{remove}, then {again}")
}

/// Zeroizes the secret bytes some keyring errors carry before they are dropped.
fn scrub(err: KeyringError) {
    match err {
        KeyringError::BadEncoding(mut bytes) | KeyringError::BadDataFormat(mut bytes, _) => {
            bytes.zeroize();
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_returns_the_answer() {
        let got = bounded(Duration::from_secs(5), || Ok(7)).unwrap();
        assert_eq!(got, 7);
    }

    #[test]
    fn bounded_gives_up_on_a_call_that_never_answers() {
        // The worker blocks until the test lets it go, i.e. after the timeout has fired.
        let (release, blocked) = mpsc::channel::<()>();
        let err = bounded(Duration::from_millis(50), move || {
            let _ = blocked.recv();
            Ok(())
        })
        .unwrap_err();
        drop(release);
        assert!(matches!(err, StoreError::Timeout { .. }), "{err:?}");
        assert_eq!(err.to_string(), "the keychain did not answer within 0.05s");
        assert!(err.hint().unwrap().contains("TILL_STORE=file"));
    }

    #[test]
    fn bounded_reports_a_panicking_call() {
        let err = bounded::<()>(Duration::from_secs(5), || panic!("boom")).unwrap_err();
        assert!(matches!(err, StoreError::Other(_)), "{err:?}");
    }

    #[test]
    fn errors_never_show_secret_bytes() {
        let err = operation_error(
            KeyringError::BadEncoding(b"sk-secret-value".to_vec()),
            "root/x",
            "till-test",
        );
        assert!(err.to_string().contains("(service till-test)"), "{err}");
        assert!(!format!("{err} {err:?}").contains("sk-secret"));
    }

    // The tests below need a real, unlocked Secret Service (macOS and Windows: the user's
    // keychain). They fail rather than skip without one: run them through
    // `scripts/with-keyring.sh cargo test`, which provides a throwaway gnome-keyring.

    /// A name no real till entry has, so a developer's own keys are never touched.
    fn test_name(what: &str) -> String {
        format!(
            "test/{}-{:08x}/{what}",
            std::process::id(),
            getrandom::u32().unwrap()
        )
    }

    fn connect() -> KeychainStore {
        KeychainStore::connect(Duration::from_secs(20)).unwrap_or_else(|e| {
            panic!(
                "these tests need a reachable, unlocked keychain \
                 (run them through scripts/with-keyring.sh): {e}"
            )
        })
    }

    #[test]
    fn keychain_round_trip() {
        let store = connect();
        let name = test_name("root/openai");
        assert_eq!(store.kind(), StoreKind::Keychain);
        assert!(store.get(&name).unwrap().is_none());

        store.set(&name, &SecretString::from("sk-first")).unwrap();
        let got = store.get(&name).unwrap().unwrap();
        assert_eq!(got.expose_secret(), "sk-first");
        store
            .set(&name, &SecretString::from("sk-second \u{e9}"))
            .unwrap();
        let got = store.get(&name).unwrap().unwrap();
        assert_eq!(got.expose_secret(), "sk-second \u{e9}");

        assert!(store.delete(&name).unwrap());
        assert!(store.get(&name).unwrap().is_none());
        assert!(!store.delete(&name).unwrap());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn entries_are_filed_under_service_till_and_the_name() {
        let store = connect();
        let name = test_name("mint/k1");
        store.set(&name, &SecretString::from("mint-value")).unwrap();
        let lookup = std::process::Command::new("secret-tool")
            .args(["lookup", "service", KEYCHAIN_SERVICE, "username", &name])
            .output();
        store.delete(&name).unwrap();
        let lookup = lookup.expect("secret-tool (libsecret-tools) is installed");
        assert!(lookup.status.success(), "{lookup:?}");
        assert_eq!(String::from_utf8_lossy(&lookup.stdout), "mint-value");
    }

    #[test]
    fn keychain_store_debug_shows_no_secret() {
        let store = connect();
        let debug = format!("{store:?}");
        assert!(debug.starts_with("KeychainStore"), "{debug}");
    }
}
