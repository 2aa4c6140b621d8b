use super::*;
use base64::Engine as _;

const SECRET: &str = "sk-test-0123456789abcdefghijklmnopqrstuvwxyz";

fn pass(p: &str) -> Unlock {
    Unlock::Passphrase(SecretString::from(p))
}

fn temp_store_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data").join("secrets.age");
    (dir, path)
}

fn get(store: &FileStore, name: &str) -> Option<String> {
    store
        .get(name)
        .unwrap()
        .map(|s| s.expose_secret().to_owned())
}

#[test]
fn round_trip() {
    let (_dir, path) = temp_store_path();
    let store = FileStore::open(&path, pass("correct horse")).unwrap();
    assert_eq!(get(&store, "root/openai"), None);
    assert!(!store.delete("root/openai").unwrap());
    assert!(
        !path.exists(),
        "opening and deleting nothing create nothing"
    );

    store
        .set("root/openai", &SecretString::from(SECRET))
        .unwrap();
    store
        .set("mint/k1", &SecretString::from("m\u{e9}\"\\\n\u{1}"))
        .unwrap();
    assert_eq!(get(&store, "root/openai").as_deref(), Some(SECRET));

    let again = FileStore::open(&path, pass("correct horse")).unwrap();
    assert_eq!(get(&again, "root/openai").as_deref(), Some(SECRET));
    assert_eq!(
        get(&again, "mint/k1").as_deref(),
        Some("m\u{e9}\"\\\n\u{1}")
    );

    assert!(again.delete("root/openai").unwrap());
    assert!(!again.delete("root/openai").unwrap());
    let third = FileStore::open(&path, pass("correct horse")).unwrap();
    assert_eq!(get(&third, "root/openai"), None);
    assert!(get(&third, "mint/k1").is_some());
}

#[test]
fn set_replaces() {
    let (_dir, path) = temp_store_path();
    let store = FileStore::open(&path, pass("p")).unwrap();
    store.set("root/a", &SecretString::from("one")).unwrap();
    store.set("root/a", &SecretString::from("two")).unwrap();
    let again = FileStore::open(&path, pass("p")).unwrap();
    assert_eq!(get(&again, "root/a").as_deref(), Some("two"));
}

#[cfg(unix)]
#[test]
fn file_is_private_and_holds_no_plaintext() {
    use std::os::unix::fs::PermissionsExt as _;
    let (_dir, path) = temp_store_path();
    let store = FileStore::open(&path, pass("correct horse")).unwrap();
    store
        .set("root/openai", &SecretString::from(SECRET))
        .unwrap();

    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);

    let bytes = std::fs::read(&path).unwrap();
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
    assert!(!contains(SECRET.as_bytes()));
    for engine in [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        assert!(!contains(engine.encode(SECRET).as_bytes()));
    }
    assert!(!contains(b"root/openai"), "names are encrypted too");
    // No temp files are left behind; only the store and its lock file.
    let mut names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["secrets.age", "secrets.age.lock"]);
}

#[cfg(unix)]
#[test]
fn open_narrows_a_widened_mode() {
    use std::os::unix::fs::PermissionsExt as _;
    let (_dir, path) = temp_store_path();
    FileStore::open(&path, pass("p"))
        .unwrap()
        .set("root/a", &SecretString::from("v"))
        .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    FileStore::open(&path, pass("p")).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn wrong_passphrase_is_an_error_and_changes_nothing() {
    let (_dir, path) = temp_store_path();
    FileStore::open(&path, pass("right"))
        .unwrap()
        .set("root/openai", &SecretString::from(SECRET))
        .unwrap();
    let before = std::fs::read(&path).unwrap();

    let err = FileStore::open(&path, pass("wrong")).unwrap_err();
    assert!(
        matches!(&err, StoreError::WrongPassphrase { path: p } if *p == path),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("wrong passphrase for {}", path.display())
    );
    assert!(err.hint().unwrap().contains("nothing was changed"));
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // The right one still opens it.
    let store = FileStore::open(&path, pass("right")).unwrap();
    assert_eq!(get(&store, "root/openai").as_deref(), Some(SECRET));
}

#[test]
fn no_passphrase_means_locked() {
    let (_dir, path) = temp_store_path();
    let err = FileStore::open(&path, Unlock::Unavailable).unwrap_err();
    assert!(matches!(err, StoreError::Locked), "{err:?}");
    FileStore::open(&path, pass("p"))
        .unwrap()
        .set("root/a", &SecretString::from("v"))
        .unwrap();
    let err = FileStore::open(&path, Unlock::Unavailable).unwrap_err();
    assert!(matches!(err, StoreError::Locked), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the file store is locked: set TILL_PASSPHRASE or run in a terminal"
    );
}

#[test]
fn writers_do_not_lose_each_others_changes() {
    // Two handles opened before either writes, as two till processes would be.
    let (_dir, path) = temp_store_path();
    let first = FileStore::open(&path, pass("p")).unwrap();
    let second = FileStore::open(&path, pass("p")).unwrap();
    first.set("mint/a", &SecretString::from("a")).unwrap();
    second.set("mint/b", &SecretString::from("b")).unwrap();
    assert!(first.delete("mint/a").unwrap());
    let last = FileStore::open(&path, pass("p")).unwrap();
    assert_eq!(get(&last, "mint/a"), None);
    assert_eq!(get(&last, "mint/b").as_deref(), Some("b"));
}

/// A symbolic link planted at the lock's name is not followed: nothing is created where it
/// points, and the store says what is wrong.
#[cfg(unix)]
#[test]
fn a_link_at_the_locks_name_is_not_followed() {
    let (dir, path) = temp_store_path();
    let target = dir.path().join("elsewhere");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&target, lock_path(&path)).unwrap();
    let store = FileStore::open(&path, pass("p")).unwrap();
    assert!(
        store
            .set("root/openai", &SecretString::from("sk-a"))
            .is_err()
    );
    assert!(!target.exists());
}

/// Two `till add`s of one provider at once: each saw no key; the second to store finds the
/// first's there and stores nothing, rather than replacing it unseen.
#[test]
fn a_key_stored_meanwhile_is_not_replaced_unseen() {
    let (_dir, path) = temp_store_path();
    let first = FileStore::open(&path, pass("p")).unwrap();
    let second = FileStore::open(&path, pass("p")).unwrap();
    assert_eq!(get(&first, "root/openai"), None);
    assert_eq!(get(&second, "root/openai"), None);
    let a = SecretString::from("sk-a");
    let b = SecretString::from("sk-b");
    assert!(first.set_if_unchanged("root/openai", None, &a).unwrap());
    assert!(!second.set_if_unchanged("root/openai", None, &b).unwrap());
    let last = FileStore::open(&path, pass("p")).unwrap();
    assert_eq!(get(&last, "root/openai").as_deref(), Some("sk-a"));
    // What was seen is what is there: the write goes ahead.
    assert!(
        second
            .set_if_unchanged("root/openai", Some(&a), &b)
            .unwrap()
    );
    assert_eq!(get(&last, "root/openai").as_deref(), Some("sk-b"));
}

/// A running proxy holds its store open for hours; `till rotate` in another process
/// replaces the root key meanwhile.
#[test]
fn a_long_lived_reader_sees_another_writers_change() {
    let (_dir, path) = temp_store_path();
    let writer = FileStore::open(&path, pass("p")).unwrap();
    writer
        .set("root/openai", &SecretString::from("old"))
        .unwrap();
    let reader = FileStore::open(&path, pass("p")).unwrap();
    assert_eq!(get(&reader, "root/openai").as_deref(), Some("old"));
    writer
        .set("root/openai", &SecretString::from("new"))
        .unwrap();
    assert_eq!(get(&reader, "root/openai").as_deref(), Some("new"));
}

#[test]
fn a_file_that_is_not_ours_is_corrupt_not_wrong_passphrase() {
    let (_dir, path) = temp_store_path();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, format!("{{\"root/openai\": \"{SECRET}\"}}")).unwrap();
    let err = FileStore::open(&path, pass("p")).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert!(!err.to_string().contains(SECRET));
}

#[test]
fn encrypted_non_map_is_corrupt_without_quoting_it() {
    let (_dir, path) = temp_store_path();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let body = format!("\"{SECRET}\"");
    let ciphertext = encrypt(body.as_bytes(), &SecretString::from("p")).unwrap();
    std::fs::write(&path, ciphertext).unwrap();
    let err = FileStore::open(&path, pass("p")).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert!(!err.to_string().contains(SECRET), "{err}");
}

#[test]
fn excessive_work_factor_is_refused() {
    let (_dir, path) = temp_store_path();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // A header that claims 2^30 scrypt work: refused before doing any of it.
    let ciphertext = encrypt(b"{}", &SecretString::from("p")).unwrap();
    let header_end = ciphertext.windows(4).position(|w| w == b"\n---").unwrap();
    let header = std::str::from_utf8(&ciphertext[..header_end]).unwrap();
    let tampered = header.replacen(&format!(" {WORK_FACTOR}\n"), " 30\n", 1);
    assert_ne!(header, tampered);
    let mut bytes = tampered.into_bytes();
    bytes.extend_from_slice(&ciphertext[header_end..]);
    std::fs::write(&path, bytes).unwrap();
    let err = FileStore::open(&path, pass("p")).unwrap_err();
    assert!(err.to_string().contains("2^30"), "{err}");
}

#[test]
fn debug_shows_no_secret() {
    let (_dir, path) = temp_store_path();
    let store = FileStore::open(&path, pass("hunter2-passphrase")).unwrap();
    store.set("root/a", &SecretString::from(SECRET)).unwrap();
    let debug = format!("{store:?} {:?}", pass("hunter2-passphrase"));
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(!debug.contains("hunter2"), "{debug}");
}

#[test]
fn work_factor_is_the_one_we_chose() {
    let ciphertext = encrypt(b"{}", &SecretString::from("p")).unwrap();
    let header_end = ciphertext.windows(4).position(|w| w == b"\n---").unwrap();
    let header = std::str::from_utf8(&ciphertext[..header_end]).unwrap();
    let stanza = header.lines().nth(1).unwrap();
    assert!(stanza.starts_with("-> scrypt "), "{header}");
    assert!(stanza.ends_with(&format!(" {WORK_FACTOR}")), "{header}");
}

/// A FIFO where the store should be blocked every command that opens the store; it is an
/// error, as a directory is.
#[cfg(unix)]
#[test]
fn a_store_that_is_no_regular_file_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("secrets.age");
    let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
    let err = read_file(&fifo).unwrap_err().to_string();
    assert!(err.contains("not a regular file"), "{err}");
    let err = read_file(dir.path()).unwrap_err().to_string();
    assert!(err.contains("not a regular file"), "{err}");
    assert!(read_file(&dir.path().join("none")).unwrap().is_none());
}
