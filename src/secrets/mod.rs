//! The secrets store: root provider keys, admin keys and mint keys, and nothing else.
//!
//! Two backends sit behind [`SecretStore`]: the OS keychain ([`keychain`], through keyring-core's
//! native stores) and an age-encrypted file ([`file`]) for machines without one. [`open`] picks
//! one from [`StoreChoice`]; `auto` never falls back silently and never to plaintext. Every call
//! is bounded by a timeout, so a keychain that never answers becomes an error, not a hang.
//! Values cross this module only as [`SecretString`], whose `Debug` prints `[REDACTED]`.

use std::path::PathBuf;
use std::time::Duration;

pub use secrecy::{ExposeSecret, SecretString};

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
}

/// Why a store call failed. Messages name the fix; none contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Other(String),
}

/// Opens the store `opts` asks for. `auto` uses the keychain when it answers within the
/// timeout and otherwise fails with an error naming `TILL_STORE=file`.
pub fn open(opts: &StoreOptions) -> Result<Box<dyn SecretStore>, StoreError> {
    let _ = opts;
    Err(StoreError::Other("the secrets store is being built".into()))
}
