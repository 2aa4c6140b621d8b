//! What the mock remembers between requests: the keys it accepts (and their ids and states),
//! the requests it has seen, and the events file.
//!
//! Everything here sits behind short, synchronous locks that are never held across an `.await`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};

use serde::{Deserialize, Serialize};

/// Bodies up to this size are kept as text in the request log.
pub const RECORDED_BODY_LIMIT: usize = 64 * 1024;

/// Where a key stands. Only `active` keys authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// Accepted.
    Active,
    /// Turned off through the Anthropic admin API; can be turned on again.
    Inactive,
    /// Archived through the Anthropic admin API; final.
    Archived,
    /// Deleted through the OpenAI admin API; gone from every listing but `/_mock/keys`.
    Deleted,
}

impl KeyStatus {
    /// The spelling the Anthropic admin API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Inactive => "inactive",
            KeyStatus::Archived => "archived",
            KeyStatus::Deleted => "deleted",
        }
    }
}

/// A service account made through the OpenAI admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccount {
    /// `svc_acct_…`
    pub id: String,
    /// The name given at creation.
    pub name: String,
    /// The project named in the creating request.
    pub project_id: String,
    /// Unix seconds.
    pub created_at: u64,
}

/// One key the mock knows, as listed by `GET /_mock/keys` (value included: the control API is
/// for tests).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// `key_initial_N` for the keys given at start (N counts from 1), `key_…` for keys made
    /// through the admin API or `/_mock/keys`.
    pub id: String,
    /// The secret itself.
    pub value: String,
    /// A display name.
    pub name: String,
    /// Whether it authenticates.
    pub status: KeyStatus,
    /// Unix seconds.
    pub created_at: u64,
    /// Set for keys made with a service account.
    pub service_account_id: Option<String>,
}

/// A request as the mock received it (`GET /_mock/requests`), or one message on a WebSocket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …; `WS` for a client message on an upgraded WebSocket, which has its
    /// upgrade's path, query and headers and the message as its body.
    pub method: String,
    /// The path without the query.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: Option<String>,
    /// Header names lowercased; repeated headers joined with `, `. Values verbatim, secrets
    /// included.
    pub headers: BTreeMap<String, String>,
    /// The body as text (lossy UTF-8) when it is at most 64 KiB, else `None`.
    pub body: Option<String>,
    /// The body's length in bytes.
    pub body_len: usize,
}

impl RecordedRequest {
    /// A header's value by name, in any letter case (the log keeps names lowercase, as HTTP
    /// reads them: a lookup by `OpenAI-Organization` must not miss `openai-organization`).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .or_else(|| self.headers.get(&name.to_ascii_lowercase()))
            .map(String::as_str)
    }

    /// The body parsed as JSON, when it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(self.body.as_deref()?).ok()
    }
}

/// Locks a mutex, carrying on after a panic elsewhere (the data stays usable for a mock).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The accepted keys. A handful of entries, so lookups are linear scans.
#[derive(Debug, Default)]
pub(crate) struct Keys {
    keys: RwLock<Vec<KeyInfo>>,
    accounts: RwLock<Vec<ServiceAccount>>,
    admin: Vec<String>,
}

impl Keys {
    pub(crate) fn new(initial: &[String], admin: Vec<String>, now: u64) -> Self {
        let keys = initial
            .iter()
            .enumerate()
            .map(|(i, value)| KeyInfo {
                id: format!("key_initial_{}", i + 1),
                value: value.clone(),
                name: format!("Initial key {}", i + 1),
                status: KeyStatus::Active,
                created_at: now,
                service_account_id: None,
            })
            .collect();
        Self {
            keys: RwLock::new(keys),
            accounts: RwLock::new(Vec::new()),
            admin,
        }
    }

    /// Whether `value` is an active key. The hot path: one read lock, no allocation.
    pub(crate) fn is_active(&self, value: &str) -> bool {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|k| k.status == KeyStatus::Active && k.value == value)
    }

    /// Whether `value` is known in any state (to tell "not an admin key" from "no such key").
    pub(crate) fn is_known(&self, value: &str) -> bool {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|k| k.status != KeyStatus::Deleted && k.value == value)
    }

    pub(crate) fn is_admin(&self, value: &str) -> bool {
        self.admin.iter().any(|k| k == value)
    }

    pub(crate) fn list(&self) -> Vec<KeyInfo> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn get(&self, id: &str) -> Option<KeyInfo> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|k| k.id == id && k.status != KeyStatus::Deleted)
            .cloned()
    }

    /// Adds a key (or returns the active one with the same value).
    pub(crate) fn add(&self, key: KeyInfo) -> KeyInfo {
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = keys
            .iter()
            .find(|k| k.status == KeyStatus::Active && k.value == key.value)
        {
            return existing.clone();
        }
        keys.push(key.clone());
        key
    }

    /// Changes a key's status; `None` when no such (undeleted) key exists.
    pub(crate) fn set_status(&self, id: &str, status: KeyStatus) -> Option<KeyInfo> {
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        let key = keys
            .iter_mut()
            .find(|k| k.id == id && k.status != KeyStatus::Deleted)?;
        key.status = status;
        Some(key.clone())
    }

    pub(crate) fn rename(&self, id: &str, name: &str) -> Option<KeyInfo> {
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        let key = keys
            .iter_mut()
            .find(|k| k.id == id && k.status != KeyStatus::Deleted)?;
        name.clone_into(&mut key.name);
        Some(key.clone())
    }

    pub(crate) fn add_account(&self, account: ServiceAccount) {
        self.accounts
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(account);
    }

    pub(crate) fn accounts(&self) -> Vec<ServiceAccount> {
        self.accounts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn account(&self, id: &str) -> Option<ServiceAccount> {
        self.accounts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|a| a.id == id)
            .cloned()
    }

    /// Removes a service account and deletes its keys.
    pub(crate) fn remove_account(&self, id: &str) -> bool {
        let mut accounts = self
            .accounts
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let before = accounts.len();
        accounts.retain(|a| a.id != id);
        if accounts.len() == before {
            return false;
        }
        drop(accounts);
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        for key in keys
            .iter_mut()
            .filter(|k| k.service_account_id.as_deref() == Some(id))
        {
            key.status = KeyStatus::Deleted;
        }
        true
    }
}

/// The `--events` file: one line per streamed chunk, appended with `O_APPEND` so that other
/// writers (a test, an agent) can share the file and the lines interleave in real order.
#[derive(Debug)]
pub(crate) struct EventLog {
    file: Mutex<File>,
}

impl EventLog {
    pub(crate) fn open(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self {
            file: Mutex::new(file),
        })
    }

    /// Writes `mock sent chunk I of N` in one `write` call. Errors are ignored: the events
    /// file is a diagnostic and must never break a response.
    pub(crate) fn chunk_sent(&self, index: usize, total: usize) {
        let line = format!("mock sent chunk {index} of {total}\n");
        let mut file = lock(&self.file);
        let _ = file.write_all(line.as_bytes());
        let _ = file.flush();
    }
}

/// Short unique ids (`chatcmpl-…`, `msg_…`): a per-process random seed and a counter, mixed so
/// that they look like the real ones and never repeat within a run.
#[derive(Debug)]
pub(crate) struct Ids {
    seed: u64,
    counter: AtomicU64,
}

impl Ids {
    pub(crate) fn new() -> Self {
        let mut seed = [0u8; 8];
        // A fixed seed is fine too: the ids only need to be unique within a run.
        let _ = getrandom::fill(&mut seed);
        Self {
            seed: u64::from_le_bytes(seed),
            counter: AtomicU64::new(1),
        }
    }

    /// `prefix` followed by 24 base-62 characters.
    pub(crate) fn next(&self, prefix: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut out = String::with_capacity(prefix.len() + 24);
        out.push_str(prefix);
        let a = splitmix(self.seed ^ n);
        let b = splitmix(a ^ n.rotate_left(32));
        let mut words = [a, b, splitmix(b)];
        // Eight base-62 digits per 64-bit word, so no digit is starved of entropy.
        for i in 0..24 {
            let word = &mut words[i / 8];
            out.push(BASE62[(*word % 62) as usize] as char);
            *word /= 62;
        }
        out
    }
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// `len` random URL-safe characters, for key values.
pub(crate) fn random_token(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).expect("the OS random source answers");
    bytes
        .iter()
        .map(|b| BASE62[(*b as usize) % 62] as char)
        .collect()
}
