//! The secrets store as the user meets it: through the real binary, with its errors and hints.
//!
//! Each test runs `till` in a fresh `TILL_HOME` with the store-related environment set
//! explicitly, so nothing here reads or writes the developer's own keychain or files. Tests
//! that point `DBUS_SESSION_BUS_ADDRESS` somewhere do it for the child process only.

use std::path::Path;
#[cfg(target_os = "linux")]
use std::sync::mpsc;
use std::time::Duration;

use till::env::EnvVars;

/// Upper bound for one `till` run. Well above every timeout the tests set, so hitting it means
/// a hang, and the test fails on the output it then checks.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// `till` in `home`, with none of the caller's store settings leaking in.
fn till(home: &Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_till"));
    cmd.env(EnvVars::TILL_HOME, home)
        .env(EnvVars::NO_COLOR, "1")
        .env_remove(EnvVars::TILL_STORE)
        .env_remove(EnvVars::TILL_PASSPHRASE)
        .env_remove(EnvVars::TILL_KEYCHAIN_TIMEOUT)
        .timeout(HANG_GUARD);
    cmd
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A Unix socket that accepts connections and never says a word, like a wedged D-Bus daemon.
/// Sends one message per accepted connection and keeps the connections open.
#[cfg(target_os = "linux")]
fn silent_socket(path: &Path) -> mpsc::Receiver<()> {
    let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            let Ok(conn) = conn else { break };
            held.push(conn);
            if tx.send(()).is_err() {
                break;
            }
        }
    });
    rx
}

// The Secret Service is reached over D-Bus on Linux only.
#[cfg(target_os = "linux")]
#[test]
fn auto_without_a_session_bus_names_the_file_store() {
    let home = tempfile::tempdir().unwrap();
    let no_bus = format!("unix:path={}", home.path().join("no-bus").display());
    // A timeout far beyond the hang guard: the error must come from the missing bus, at once.
    let output = till(home.path())
        .env("DBUS_SESSION_BUS_ADDRESS", &no_bus)
        .env(EnvVars::TILL_STORE, "auto")
        .env(EnvVars::TILL_KEYCHAIN_TIMEOUT, "600s")
        .args(["remove", "openai"])
        .output()
        .unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(
        err.contains("till: error: no Secret Service is reachable on the D-Bus session bus"),
        "{err}"
    );
    assert!(
        err.contains("store = auto does not fall back to another store on its own"),
        "{err}"
    );
    assert!(err.contains("\nhint: "), "{err}");
    assert!(err.contains("TILL_STORE=file"), "{err}");
    assert!(!home.path().join("data/secrets.age").exists());
}

// The Secret Service is reached over D-Bus on Linux only.
#[cfg(target_os = "linux")]
#[test]
fn keychain_without_a_session_bus_names_the_file_store() {
    let home = tempfile::tempdir().unwrap();
    let no_bus = format!("unix:path={}", home.path().join("no-bus").display());
    let output = till(home.path())
        .env("DBUS_SESSION_BUS_ADDRESS", &no_bus)
        .env(EnvVars::TILL_STORE, "keychain")
        .env(EnvVars::TILL_KEYCHAIN_TIMEOUT, "600s")
        .args(["remove", "openai"])
        .output()
        .unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(err.contains("no Secret Service is reachable"), "{err}");
    assert!(
        err.contains("hint: ") && err.contains("TILL_STORE=file"),
        "{err}"
    );
}

// The Secret Service is reached over D-Bus on Linux only.
#[cfg(target_os = "linux")]
#[test]
fn keychain_that_never_answers_times_out() {
    let home = tempfile::tempdir().unwrap();
    let socket = home.path().join("silent.sock");
    let accepted = silent_socket(&socket);
    for store in ["keychain", "auto"] {
        let output = till(home.path())
            .env(
                "DBUS_SESSION_BUS_ADDRESS",
                format!("unix:path={}", socket.display()),
            )
            .env(EnvVars::TILL_STORE, store)
            .env(EnvVars::TILL_KEYCHAIN_TIMEOUT, "1s")
            .args(["remove", "openai"])
            .output()
            .unwrap();
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{store}: {err}");
        assert!(
            err.contains("till: error: the keychain did not answer within 1s"),
            "{store}: {err}"
        );
        assert!(err.contains("hint: unlock the keychain"), "{store}: {err}");
        assert!(err.contains("TILL_STORE=file"), "{store}: {err}");
        assert!(err.contains("TILL_PASSPHRASE"), "{store}: {err}");
        // till really reached the socket and waited on it.
        accepted
            .recv_timeout(HANG_GUARD)
            .expect("till connected to the silent socket");
    }
}

#[test]
fn file_store_through_the_binary() {
    let home = tempfile::tempdir().unwrap();
    let store_file = home.path().join("data").join("secrets.age");
    let key = "sk-proj-integration0123456789abcdefghijklmnop";

    let output = till(home.path())
        .env(EnvVars::TILL_STORE, "file")
        .env(EnvVars::TILL_PASSPHRASE, "correct horse battery")
        .args(["add", "openai", "--no-verify"])
        .write_stdin(format!("{key}\n"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("in the file store"),
        "{}",
        stderr(&output)
    );

    let bytes = std::fs::read(&store_file).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
    assert!(!bytes.windows(key.len()).any(|w| w == key.as_bytes()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&store_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    // A wrong passphrase is an error with a hint, and leaves the file as it was.
    let output = till(home.path())
        .env(EnvVars::TILL_STORE, "file")
        .env(EnvVars::TILL_PASSPHRASE, "wrong")
        .args(["remove", "openai"])
        .output()
        .unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "till: error: wrong passphrase for {}",
            store_file.display()
        )),
        "{err}"
    );
    assert!(err.contains("hint: check TILL_PASSPHRASE"), "{err}");
    assert_eq!(std::fs::read(&store_file).unwrap(), bytes);

    // No passphrase and no terminal (stdin is a pipe here): locked, not a prompt.
    let output = till(home.path())
        .env(EnvVars::TILL_STORE, "file")
        .args(["remove", "openai"])
        .output()
        .unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "till: error: the file store is locked: set TILL_PASSPHRASE or run in a terminal"
        ),
        "{err}"
    );
    assert_eq!(std::fs::read(&store_file).unwrap(), bytes);

    let output = till(home.path())
        .env(EnvVars::TILL_STORE, "file")
        .env(EnvVars::TILL_PASSPHRASE, "correct horse battery")
        .args(["remove", "openai"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("removed the openai key from the file store"),
        "{}",
        stderr(&output)
    );
}

/// `till remove` whose ledger refuses the change after the store let the key go: it says the
/// key is gone from the store and how to finish, and running it again finishes.
#[test]
fn a_remove_the_ledger_refuses_says_what_was_done_and_finishes_when_run_again() {
    let p = crate::support::ProxyEnv::new();
    let ledger = || rusqlite::Connection::open(p.env.path("data/ledger.sqlite3")).unwrap();
    ledger()
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE DELETE ON root_keys BEGIN SELECT RAISE(ABORT, 'refused'); END;",
        )
        .unwrap();
    let (code, _, stderr) = crate::support::output(p.env.till().args(["remove", "openai"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "removed the openai key from the file store, but could not take it out of the ledger"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: run `till remove openai` again"),
        "{stderr}"
    );
    ledger().execute_batch("DROP TRIGGER refuse;").unwrap();
    let (code, _, stderr) = crate::support::output(p.env.till().args(["remove", "openai"]));
    assert_eq!(code, 0, "{stderr}");
    let (_, list, _) = crate::support::output(p.env.till().args(["list", "--json"]));
    assert!(!list.contains("openai"), "{list}");
}
