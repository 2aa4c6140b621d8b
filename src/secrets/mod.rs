//! The secrets store: root provider keys, admin keys and mint keys, and nothing else.
//!
//! Two backends sit behind [`SecretStore`]: the OS keychain ([`keychain`], through keyring-core's
//! native stores) and an age-encrypted file ([`file`]) for machines without one. [`open`] picks
//! one from [`StoreChoice`]; `auto` never falls back silently and never to plaintext. Every
//! keychain call is bounded by a timeout, so a keychain that never answers becomes an error, not
//! a hang. Values cross this module only as [`SecretString`], whose `Debug` prints
//! `[REDACTED]`; nothing here logs, prints or formats a secret, and no error message holds one.
//!
//! Errors: backends fail with a [`StoreError`], whose variants say what went wrong and whose
//! [`StoreError::hint`] says how to fix it. [`open`] hands its errors out as a
//! [`UserError`] (message plus `hint:` line) because callers `?` them straight into `anyhow`,
//! and `main` only prints a hint it finds as a `UserError` in the chain. The trait methods keep
//! returning `StoreError` so callers can match on the kind; wrap one with
//! `UserError::from` where its hint should reach the terminal.

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use secrecy::{ExposeSecret, SecretString};

use crate::env::EnvVars;
use crate::error::UserError;

pub mod file;
pub mod keychain;

/// The `hint:` for an error chain: the first [`UserError`](crate::error::UserError)'s or store
/// error's.
pub fn hint(err: &anyhow::Error) -> Option<String> {
    crate::error::hint_with(err, |e| {
        e.downcast_ref::<StoreError>().map(StoreError::hint)
    })
}

/// Whether `key` can go in an HTTP header as it is: visible ASCII only. A key with a line
/// break, a space or a letter outside ASCII cannot (stored by hand past `till add`'s checks).
pub fn header_safe(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(|b| b.is_ascii_graphic())
}

/// The store name of a provider's root key.
pub fn root_secret_name(provider: &str) -> String {
    format!("root/{provider}")
}

/// The store name of a provider's admin key (used by `till rotate`, never by agents).
pub fn admin_secret_name(provider: &str) -> String {
    format!("admin/{provider}")
}

/// Whether `value` (an environment variable's, say) holds `secret` anywhere in it. Secrets
/// shorter than 8 bytes are never looked for: no real key is that short, and such a string
/// would turn up in unrelated values by chance.
pub fn holds_secret(value: &str, secret: &SecretString) -> bool {
    let secret = secret.expose_secret();
    secret.len() >= 8 && value.contains(secret)
}

/// The store name of the mint key `kid`.
pub fn mint_secret_name(kid: &str) -> String {
    format!("mint/{kid}")
}

/// The keychain service every till entry is filed under (`secret-tool search service till`).
pub const KEYCHAIN_SERVICE: &str = "till";

/// Which store the user asked for (`store = …` in config.toml or `TILL_STORE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreChoice {
    Auto,
    Keychain,
    File,
}

/// The backend actually in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Keychain,
    File,
}

impl std::fmt::Display for StoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreKind::Keychain => "keychain",
            StoreKind::File => "file",
        })
    }
}

/// Everything [`open`] needs to pick and unlock a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub choice: StoreChoice,
    /// Where the file store keeps its age-encrypted file (0600, in a 0700 directory).
    pub file_path: PathBuf,
    /// Upper bound for one keychain call.
    pub keychain_timeout: Duration,
}

/// A place that holds secrets under short names such as `root/openai`, `admin/openai`,
/// `mint/<kid>`.
pub trait SecretStore: Send + Sync {
    fn kind(&self) -> StoreKind;
    /// The secret stored under `name`, if any.
    fn get(&self, name: &str) -> Result<Option<SecretString>, StoreError>;
    /// Stores `value` under `name`, replacing what was there.
    fn set(&self, name: &str, value: &SecretString) -> Result<(), StoreError>;
    /// Removes `name`; `Ok(false)` when there was nothing to remove.
    fn delete(&self, name: &str) -> Result<bool, StoreError>;
    /// Stores `value` under `name` if what is stored there is still `seen` (`None`: nothing);
    /// `Ok(false)`, and nothing changed, when another process stored something else since.
    /// One step where the store can make it one (the file store, under its lock); a look just
    /// before the write elsewhere.
    fn set_if_unchanged(
        &self,
        name: &str,
        seen: Option<&SecretString>,
        value: &SecretString,
    ) -> Result<bool, StoreError> {
        look_then_set(self, name, seen, value)
    }
}

/// [`SecretStore::set_if_unchanged`] as a look just before the write: one step only where the
/// caller holds a lock around it.
pub(crate) fn look_then_set<S: SecretStore + ?Sized>(
    store: &S,
    name: &str,
    seen: Option<&SecretString>,
    value: &SecretString,
) -> Result<bool, StoreError> {
    if !same_secret(store.get(name)?.as_ref(), seen) {
        return Ok(false);
    }
    store.set(name, value).map(|()| true)
}

/// Whether two stored values are the same (both absent, or equal).
pub(crate) fn same_secret(a: Option<&SecretString>, b: Option<&SecretString>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.expose_secret() == b.expose_secret(),
        _ => false,
    }
}

/// Why a store call failed. Messages name what failed; [`StoreError::hint`] names the fix.
/// None contains a secret.
/// Why the file store is locked: no passphrase and no terminal, or (inside a `till run`,
/// which keeps the passphrase from its agent) no access by design.
fn locked_text() -> String {
    if std::env::var_os(EnvVars::TILL_KEY).is_some() {
        "the file store is locked: this is inside a till run, which keeps the store from its agent"
            .into()
    } else {
        format!(
            "the file store is locked: set {} or run in a terminal",
            EnvVars::TILL_PASSPHRASE
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached at all (no Secret Service, no D-Bus session bus, …).
    #[error("{reason}")]
    Unavailable { reason: String, hint: String },
    /// The keychain did not answer one call within the timeout.
    #[error("the keychain did not answer within {secs}s")]
    Timeout { secs: f64 },
    /// The file store needs a passphrase and there is no way to get one.
    #[error("{}", locked_text())]
    Locked,
    /// The passphrase does not open the file store.
    #[error("wrong passphrase for {}", path.display())]
    WrongPassphrase { path: PathBuf },
    /// Reading or writing a file failed.
    #[error("{context}: {err}")]
    Io {
        context: String,
        err: std::io::Error,
    },
    /// The stored data is not what till wrote.
    #[error("{0}")]
    Corrupt(String),
    /// A keychain entry till cannot use (two for one name, text that is not UTF-8), with how
    /// to put it right.
    #[error("{reason}")]
    BadEntry { reason: String, hint: String },
    #[error("{0}")]
    Other(String),
}

impl StoreError {
    /// How to fix it, when there is something the user can do.
    pub fn hint(&self) -> Option<String> {
        match self {
            StoreError::Unavailable { hint, .. } => Some(hint.clone()),
            StoreError::Timeout { .. } => Some(format!(
                "unlock the keychain (or answer its prompt) and try again, or use the encrypted \
                 file store: {}=file with {} set ({} raises the limit)",
                EnvVars::TILL_STORE,
                EnvVars::TILL_PASSPHRASE,
                EnvVars::TILL_KEYCHAIN_TIMEOUT,
            )),
            // Inside a `till run`, which keeps the passphrase from its agent on purpose.
            StoreError::Locked if std::env::var_os(EnvVars::TILL_KEY).is_some() => Some(
                "TILL_KEY is set; `till key attenuate` narrows $TILL_KEY without the store, and a nested `till run` runs a sub-agent under a narrower key"
                    .into(),
            ),
            StoreError::Locked => Some(format!(
                "{} unlocks it without a prompt; or use the keychain with {}=keychain",
                EnvVars::TILL_PASSPHRASE,
                EnvVars::TILL_STORE,
            )),
            StoreError::WrongPassphrase { .. } => Some(format!(
                "check {} (or what you typed); nothing was changed",
                EnvVars::TILL_PASSPHRASE
            )),
            StoreError::Corrupt(_) => Some(
                "restore the file from a backup, or move it aside and add the keys again with \
                 `till add`"
                    .into(),
            ),
            StoreError::BadEntry { hint, .. } => Some(hint.clone()),
            StoreError::Io { .. } | StoreError::Other(_) => None,
        }
    }

    pub(crate) fn io(context: impl Into<String>, err: std::io::Error) -> Self {
        StoreError::Io {
            context: context.into(),
            err,
        }
    }
}

impl From<StoreError> for UserError {
    /// A runtime error with the store error's message and hint.
    fn from(err: StoreError) -> Self {
        let user = UserError::runtime(err.to_string());
        match err.hint() {
            Some(hint) => user.hint(hint),
            None => user,
        }
    }
}

/// Opens the store `opts` asks for. `auto` uses the keychain when it answers within the
/// timeout and otherwise fails with an error naming `TILL_STORE=file`.
///
/// Errors come as a [`UserError`] so that `?` into `anyhow` keeps the hint for `main` to print;
/// [`open_store`] gives the [`StoreError`] itself.
pub fn open(opts: &StoreOptions) -> Result<Box<dyn SecretStore>, UserError> {
    open_store(opts).map_err(UserError::from)
}

/// [`open`], with the error kind left for the caller to match on.
pub fn open_store(opts: &StoreOptions) -> Result<Box<dyn SecretStore>, StoreError> {
    match opts.choice {
        StoreChoice::File => Ok(Box::new(file::FileStore::open(
            &opts.file_path,
            file::Unlock::from_env_or_terminal(),
        )?)),
        StoreChoice::Keychain => Ok(Box::new(
            keychain::KeychainStore::connect(opts.keychain_timeout)?
                .locked_by(keychain_lock(&opts.file_path)),
        )),
        StoreChoice::Auto => match keychain::KeychainStore::connect(opts.keychain_timeout) {
            Ok(store) => Ok(Box::new(store.locked_by(keychain_lock(&opts.file_path)))),
            Err(err) => Err(auto_error(err, &opts.file_path)),
        },
    }
}

/// The lock file of the keychain's writes: beside the file store's file, in till's data
/// directory.
fn keychain_lock(file_path: &Path) -> PathBuf {
    file_path.with_file_name("keychain.lock")
}

/// What `auto` says when the keychain does not answer: the keychain's own reason, that there is
/// deliberately no fallback, and how to choose the file store.
fn auto_error(err: StoreError, file_path: &Path) -> StoreError {
    let file_hint = if file_path.exists() {
        format!(
            "your file store is at {}: set {}=file (with {}) to use it",
            file_path.display(),
            EnvVars::TILL_STORE,
            EnvVars::TILL_PASSPHRASE
        )
    } else {
        format!(
            "set {}=file (with {}) to keep keys in an encrypted file instead",
            EnvVars::TILL_STORE,
            EnvVars::TILL_PASSPHRASE
        )
    };
    let reason = format!("{err}; store = auto does not fall back to another store on its own");
    let hint = match &err {
        StoreError::Timeout { .. } => {
            format!("unlock the keychain (or answer its prompt) and try again, or {file_hint}")
        }
        _ => format!("start or unlock the keychain, or {file_hint}"),
    };
    StoreError::Unavailable { reason, hint }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_names_a_fix_or_says_enough() {
        let timeout = StoreError::Timeout { secs: 1.5 };
        assert_eq!(
            timeout.to_string(),
            "the keychain did not answer within 1.5s"
        );
        assert!(timeout.hint().unwrap().contains("TILL_STORE=file"));
        assert_eq!(
            StoreError::Timeout { secs: 10.0 }.to_string(),
            "the keychain did not answer within 10s"
        );
        assert_eq!(
            StoreError::Locked.to_string(),
            "the file store is locked: set TILL_PASSPHRASE or run in a terminal"
        );
        let wrong = StoreError::WrongPassphrase {
            path: PathBuf::from("/x/secrets.age"),
        };
        assert_eq!(wrong.to_string(), "wrong passphrase for /x/secrets.age");
    }

    #[test]
    fn user_error_carries_the_hint() {
        let user = UserError::from(StoreError::Timeout { secs: 2.0 });
        assert_eq!(user.message, "the keychain did not answer within 2s");
        assert_eq!(user.kind, crate::error::ExitKind::Runtime);
        assert!(user.hint.unwrap().contains("TILL_STORE=file"));
    }

    #[test]
    fn open_errors_keep_their_hint_through_anyhow() {
        // `Ctx::store` does `Ok(crate::secrets::open(&opts)?)` into anyhow; main prints the hint
        // of the first UserError in the chain.
        let err: anyhow::Error = UserError::from(StoreError::Locked).into();
        let err = err.context("cannot open the store");
        let user = crate::error::find_user_error(&err).expect("a UserError in the chain");
        assert!(user.hint.is_some());
    }

    #[test]
    fn auto_names_the_file_store() {
        let err = auto_error(
            StoreError::Unavailable {
                reason: "no Secret Service".into(),
                hint: String::new(),
            },
            Path::new("/nonexistent/secrets.age"),
        );
        assert!(err.to_string().contains("does not fall back"), "{err}");
        assert!(err.hint().unwrap().contains("TILL_STORE=file"));
    }
}
