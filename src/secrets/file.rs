//! The file backend: one age-encrypted file holding a JSON object `{name: value}`, for machines
//! without a keychain (like aws-vault's file backend).
//!
//! The file is encrypted to a passphrase (age's scrypt recipient) from `TILL_PASSPHRASE` or a
//! hidden prompt. It is written atomically (temp file in the same directory, fsync, rename) with
//! mode 0600 in a 0700 directory, under an advisory lock so two till processes do not lose each
//! other's writes. The file is decrypted once per [`FileStore::open`] and the map kept in
//! memory; a read decrypts it again only when another process has replaced the file since. This module must never write the plaintext anywhere but `Zeroizing` buffers, never
//! write the file unencrypted, and never change the file when the passphrase is wrong.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use secrecy::{ExposeSecret as _, SecretString};
use serde::ser::SerializeMap as _;
use zeroize::{Zeroize as _, Zeroizing};

use super::{SecretStore, StoreError, StoreKind};
use crate::env::EnvVars;

/// scrypt work factor (log2 N) for the passphrase. age's default targets about a second per
/// encryption *and* per decryption, and till decrypts on every command and re-encrypts on every
/// write; 2^15 (32 MiB, roughly 0.1 s) keeps that unnoticeable. The passphrase is chosen by a
/// person who can choose a long one, which is worth more than extra scrypt rounds.
pub const WORK_FACTOR: u8 = 15;

/// The largest work factor till accepts when decrypting. age's default ceiling (about 16 s of
/// work) would let a tampered header make every till command spend seconds and GiBs before
/// failing; 2^18 (256 MiB, about a second) still opens files written with a future, higher
/// [`WORK_FACTOR`] or re-encrypted by the `age` CLI at its default on a typical machine.
pub const MAX_WORK_FACTOR: u8 = 18;

/// How long a write waits for another till process to finish its own write.
#[cfg(unix)]
const LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How many times a person at a terminal may mistype the passphrase.
const PROMPT_ATTEMPTS: usize = 3;

/// Where the passphrase comes from.
#[derive(Debug)]
pub enum Unlock {
    /// Given up front (from `TILL_PASSPHRASE`, or by a test).
    Passphrase(SecretString),
    /// Ask on the terminal (stdin and stderr are both terminals).
    Prompt,
    /// Neither: opening fails with [`StoreError::Locked`].
    Unavailable,
}

impl Unlock {
    /// `TILL_PASSPHRASE` when set and not empty, else a prompt when stdin and stderr are
    /// terminals, else nothing.
    pub fn from_env_or_terminal() -> Self {
        if let Ok(pass) = std::env::var(EnvVars::TILL_PASSPHRASE)
            && !pass.is_empty()
        {
            return Unlock::Passphrase(SecretString::from(pass));
        }
        if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
            Unlock::Prompt
        } else {
            Unlock::Unavailable
        }
    }
}

/// An open file store.
pub struct FileStore {
    path: PathBuf,
    state: Mutex<State>,
}

struct State {
    entries: BTreeMap<String, SecretString>,
    /// `None` only for a file that does not exist yet and a passphrase still to be prompted
    /// for (with confirmation) at the first write.
    passphrase: Option<SecretString>,
    /// The ciphertext as last read or written, to notice another process's write.
    on_disk: Option<Vec<u8>>,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("FileStore")
            .field("path", &self.path)
            .field("entries", &state.entries.len())
            .finish_non_exhaustive()
    }
}

impl FileStore {
    /// Opens (decrypts) the store at `path`. A missing file is an empty store, created by the
    /// first write. Fails with [`StoreError::Locked`] when a passphrase is needed and `unlock`
    /// cannot give one, and [`StoreError::WrongPassphrase`] when it does not open the file.
    pub fn open(path: &Path, unlock: Unlock) -> Result<Self, StoreError> {
        let state = match read_file(path)? {
            Some(ciphertext) => {
                let (passphrase, entries) = match unlock {
                    Unlock::Passphrase(pass) => {
                        let entries = decrypt(&ciphertext, &pass, path)?;
                        (pass, entries)
                    }
                    Unlock::Prompt => unlock_by_prompt(&ciphertext, path)?,
                    Unlock::Unavailable => return Err(StoreError::Locked),
                };
                make_private(path)?;
                State {
                    entries,
                    passphrase: Some(passphrase),
                    on_disk: Some(ciphertext),
                }
            }
            None => State {
                entries: BTreeMap::new(),
                passphrase: match unlock {
                    Unlock::Passphrase(pass) => Some(pass),
                    Unlock::Prompt => None,
                    Unlock::Unavailable => return Err(StoreError::Locked),
                },
                on_disk: None,
            },
        };
        Ok(Self {
            path: path.to_path_buf(),
            state: Mutex::new(state),
        })
    }

    /// The encrypted file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies `change` to the stored map and writes the result, or changes nothing.
    ///
    /// Under the lock, a file that another process wrote since we read it is read again first,
    /// so `change` applies to the newest map.
    fn update<R>(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, SecretString>) -> R,
    ) -> Result<R, StoreError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        // Ask before taking the lock: a person typing must not hold up other till processes.
        let passphrase = match &state.passphrase {
            Some(pass) => pass.clone(),
            None => prompt_new(&self.path)?,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        crate::config::create_private_dir(dir).map_err(|e| StoreError::Other(format!("{e:#}")))?;
        let _lock = FileLock::acquire(&lock_path(&self.path))?;
        // Every writer writes its temp file under this lock, so one left now is from a
        // writer that died (it holds an encrypted copy of keys that may since be removed).
        remove_stale_temps(&self.path);

        let current = read_file(&self.path)?;
        let mut entries = if current == state.on_disk {
            state.entries.clone()
        } else {
            match &current {
                Some(ciphertext) => decrypt(ciphertext, &passphrase, &self.path)?,
                // Removed by someone else: start again from an empty store.
                None => BTreeMap::new(),
            }
        };
        let result = change(&mut entries);
        let plaintext = to_json(&entries);
        let ciphertext = encrypt(&plaintext, &passphrase)?;
        write_atomically(&self.path, &ciphertext)?;
        *state = State {
            entries,
            passphrase: Some(passphrase),
            on_disk: Some(ciphertext),
        };
        Ok(result)
    }
}

impl SecretStore for FileStore {
    fn kind(&self) -> StoreKind {
        StoreKind::File
    }

    fn get(&self, name: &str) -> Result<Option<SecretString>, StoreError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        // A long-running reader (the proxy of `till serve`) must see a key that another till
        // process rotated since this store was opened.
        let current = read_file(&self.path)?;
        if current != state.on_disk
            && let Some(passphrase) = state.passphrase.clone()
        {
            state.entries = match &current {
                Some(ciphertext) => decrypt(ciphertext, &passphrase, &self.path)?,
                None => BTreeMap::new(),
            };
            state.on_disk = current;
        }
        Ok(state.entries.get(name).cloned())
    }

    fn set(&self, name: &str, value: &SecretString) -> Result<(), StoreError> {
        self.update(|entries| {
            entries.insert(name.to_owned(), value.clone());
        })
    }

    fn set_if_unchanged(
        &self,
        name: &str,
        seen: Option<&SecretString>,
        value: &SecretString,
    ) -> Result<bool, StoreError> {
        self.update(|entries| {
            if !super::same_secret(entries.get(name), seen) {
                return false;
            }
            entries.insert(name.to_owned(), value.clone());
            true
        })
    }

    fn delete(&self, name: &str) -> Result<bool, StoreError> {
        if !self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .contains_key(name)
        {
            // Nothing of ours to remove; no need to re-encrypt (or to create the file).
            return Ok(false);
        }
        self.update(|entries| entries.remove(name).is_some())
    }
}

/// Reads the whole file; `None` when it does not exist.
/// The store's bytes; `None` when there is no store. Something other than a regular file
/// there (a FIFO would block the read for good, a device would never end) is an error.
fn read_file(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    use std::io::Read as _;
    let cannot = |e| StoreError::io(format!("cannot read {}", path.display()), e);
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let mut file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(cannot(e)),
    };
    if !file.metadata().map_err(cannot)?.is_file() {
        return Err(cannot(std::io::Error::other("it is not a regular file")));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(cannot)?;
    Ok(Some(bytes))
}

fn unlock_by_prompt(
    ciphertext: &[u8],
    path: &Path,
) -> Result<(SecretString, BTreeMap<String, SecretString>), StoreError> {
    let mut attempt = 1;
    loop {
        let pass = ask_passphrase(&format!(
            "Passphrase for the till file store {}",
            path.display()
        ))?;
        match decrypt(ciphertext, &pass, path) {
            Ok(entries) => return Ok((pass, entries)),
            Err(StoreError::WrongPassphrase { .. }) if attempt < PROMPT_ATTEMPTS => {
                crate::output::note("wrong passphrase; try again");
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

fn prompt_new(path: &Path) -> Result<SecretString, StoreError> {
    crate::output::note(&format!(
        "creating the till file store {}; its passphrase cannot be recovered",
        path.display()
    ));
    loop {
        let pass = ask_passphrase("New passphrase for the file store")?;
        let again = ask_passphrase("Repeat the passphrase")?;
        if pass.expose_secret() == again.expose_secret() {
            return Ok(pass);
        }
        crate::output::note("the passphrases do not match; try again");
    }
}

/// One hidden answer; end of input or an empty line gives up (nothing is written).
fn ask_passphrase(label: &str) -> Result<SecretString, StoreError> {
    match crate::prompt::hidden_line(label) {
        Ok(Some(mut line)) if !line.is_empty() => {
            Ok(SecretString::from(std::mem::take(&mut *line)))
        }
        Ok(_) => Err(StoreError::Other(
            "no passphrase given; nothing was changed".into(),
        )),
        Err(e) => Err(StoreError::io(
            "cannot read the passphrase from the terminal",
            e,
        )),
    }
}

fn decrypt(
    ciphertext: &[u8],
    passphrase: &SecretString,
    path: &Path,
) -> Result<BTreeMap<String, SecretString>, StoreError> {
    let not_ours = |why: &str| {
        StoreError::Corrupt(format!(
            "{} is not a till secrets file: {why}",
            path.display()
        ))
    };
    let decryptor = age::Decryptor::new_buffered(ciphertext)
        .map_err(|_| not_ours("it is not an age-encrypted file"))?;
    if !decryptor.is_scrypt() {
        return Err(not_ours("it is not encrypted with a passphrase"));
    }
    let mut identity = age::scrypt::Identity::new(passphrase.clone());
    identity.set_max_work_factor(MAX_WORK_FACTOR);
    let mut reader = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::DecryptionFailed
            | age::DecryptError::KeyDecryptionFailed
            | age::DecryptError::NoMatchingKeys => StoreError::WrongPassphrase {
                path: path.to_path_buf(),
            },
            age::DecryptError::ExcessiveWork { required, .. } => not_ours(&format!(
                "its scrypt work factor 2^{required} is above the 2^{MAX_WORK_FACTOR} till accepts"
            )),
            _ => not_ours("its header is damaged"),
        })?;
    // Sized up front so the buffer never reallocates and leaves unzeroized copies behind: the
    // plaintext is shorter than the ciphertext.
    let mut plaintext = Zeroizing::new(Vec::with_capacity(ciphertext.len()));
    reader.read_to_end(&mut plaintext).map_err(|_| {
        StoreError::Corrupt(format!(
            "{} is damaged (it does not decrypt to the end)",
            path.display()
        ))
    })?;
    from_json(&plaintext, path)
}

/// Encrypts `plaintext` to `passphrase` at [`WORK_FACTOR`].
///
/// age's `StreamWriter` copies the plaintext into its own chunk buffer, which it does not
/// zeroize (its reader does); that buffer is the one copy of the plaintext outside our
/// `Zeroizing` buffers, and it is freed when this function returns.
fn encrypt(plaintext: &[u8], passphrase: &SecretString) -> Result<Vec<u8>, StoreError> {
    let mut recipient = age::scrypt::Recipient::new(passphrase.clone());
    recipient.set_work_factor(WORK_FACTOR);
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
            .map_err(|e| StoreError::Other(format!("cannot encrypt the file store: {e}")))?;
    let mut ciphertext = Vec::with_capacity(plaintext.len() + 512);
    let encrypt_err = |e| StoreError::io("cannot encrypt the file store", e);
    let mut writer = encryptor
        .wrap_output(&mut ciphertext)
        .map_err(encrypt_err)?;
    writer.write_all(plaintext).map_err(encrypt_err)?;
    writer.finish().map_err(encrypt_err)?;
    Ok(ciphertext)
}

/// The map as JSON, in a buffer that is zeroized when dropped.
fn to_json(entries: &BTreeMap<String, SecretString>) -> Zeroizing<Vec<u8>> {
    struct Exposed<'a>(&'a BTreeMap<String, SecretString>);
    impl serde::Serialize for Exposed<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut map = s.serialize_map(Some(self.0.len()))?;
            for (name, value) in self.0 {
                map.serialize_entry(name, value.expose_secret())?;
            }
            map.end()
        }
    }
    // Worst case for JSON is 6 bytes per input byte (`\u00XX`), plus quotes, colon and comma.
    // Reserving that means the buffer never reallocates and leaves no copy behind.
    let capacity = 2 + entries
        .iter()
        .map(|(name, value)| 6 * (name.len() + value.expose_secret().len()) + 6)
        .sum::<usize>();
    let mut buf = Zeroizing::new(Vec::with_capacity(capacity));
    serde_json::to_writer(&mut *buf, &Exposed(entries))
        .expect("JSON of strings always serializes into memory");
    buf
}

fn from_json(plaintext: &[u8], path: &Path) -> Result<BTreeMap<String, SecretString>, StoreError> {
    /// A JSON string read straight into a `SecretString`.
    struct Value(SecretString);
    impl<'de> serde::Deserialize<'de> for Value {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visitor;
            impl serde::de::Visitor<'_> for Visitor {
                type Value = Value;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a string")
                }
                fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Value, E> {
                    Ok(Value(SecretString::from(s)))
                }
                fn visit_string<E: serde::de::Error>(self, mut s: String) -> Result<Value, E> {
                    let value = SecretString::from(s.as_str());
                    s.zeroize();
                    Ok(Value(value))
                }
            }
            d.deserialize_str(Visitor)
        }
    }
    let map: BTreeMap<String, Value> = serde_json::from_slice(plaintext).map_err(|e| {
        // serde's message can quote the offending value, which may be a secret: give only
        // the position.
        StoreError::Corrupt(format!(
            "{} does not hold till's secrets (unexpected content at line {}, column {})",
            path.display(),
            e.line(),
            e.column()
        ))
    })?;
    Ok(map.into_iter().map(|(name, Value(v))| (name, v)).collect())
}

/// Makes an existing store file 0600 if something widened it.
fn make_private(path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)
            .map_err(|e| StoreError::io(format!("cannot read {}", path.display()), e))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
                |e| StoreError::io(format!("cannot make {} private", path.display()), e),
            )?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Replaces `path` with `bytes` ([`crate::config::write_atomically`]: a crash leaves the old
/// file or the new one; a new file is mode 0600).
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    crate::config::write_atomically(path, bytes)
        .map_err(|e| StoreError::io(format!("cannot write {}", path.display()), e))
}

/// Temp files of [`write_atomically`] for `path` (`.NAME.tmp-…`) left beside it by a till
/// process killed while writing.
pub fn stale_temps(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let prefix = format!(".{}.tmp-", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// Removes [`stale_temps`] while the store's lock is held. Without an advisory lock (not
/// unix), only those older than ten minutes go: a write takes well under a second.
fn remove_stale_temps(path: &Path) {
    for tmp in stale_temps(path) {
        if cfg!(not(unix)) {
            let old = std::fs::metadata(&tmp)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > std::time::Duration::from_secs(600));
            if !old {
                continue;
            }
        }
        let _ = std::fs::remove_file(&tmp);
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    path.with_file_name(name)
}

/// An exclusive advisory lock on `NAME.lock` next to the store, held until dropped. The store
/// itself is replaced by rename, so the lock lives in a file that stays put.
struct FileLock {
    /// Closing the descriptor releases the lock.
    _file: std::fs::File,
}

impl FileLock {
    fn acquire(lock_path: &Path) -> Result<Self, StoreError> {
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        // Not through a symbolic link: one planted at the lock's name would have till create
        // (or lock) a file of the link's choosing.
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
        }
        let file = options
            .open(lock_path)
            .map_err(|e| StoreError::io(format!("cannot open {}", lock_path.display()), e))?;
        lock_exclusive(&file, lock_path)?;
        Ok(Self { _file: file })
    }
}

/// `flock(LOCK_EX)`, retried for at most [`LOCK_TIMEOUT`] so that a stuck till process makes
/// this one fail instead of hang.
#[cfg(unix)]
fn lock_exclusive(file: &std::fs::File, lock_path: &Path) -> Result<(), StoreError> {
    use std::os::fd::AsRawFd as _;
    let deadline = std::time::Instant::now() + LOCK_TIMEOUT;
    loop {
        // SAFETY: flock only reads the descriptor, which `file` keeps open for the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::WouldBlock {
            return Err(StoreError::io(
                format!("cannot lock {}", lock_path.display()),
                err,
            ));
        }
        if std::time::Instant::now() >= deadline {
            return Err(StoreError::Other(format!(
                "another till process has held {} for {}s; try again when it is done",
                lock_path.display(),
                LOCK_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// No advisory lock outside unix: there, two till processes writing at the same moment may
/// lose one of the two changes (each still writes a complete, valid file).
#[cfg(not(unix))]
fn lock_exclusive(_file: &std::fs::File, _lock_path: &Path) -> Result<(), StoreError> {
    Ok(())
}

#[cfg(test)]
mod tests;
