//! The hidden prompt of `till add` (and `till rotate`, and the file store's passphrase) on a
//! real pseudo-terminal: however it ends, the terminal is left as it was found.

#![cfg(target_os = "linux")]

use std::io::Write as _;
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::os::unix::process::ExitStatusExt as _;
use std::process::Child;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use crate::support::{AtPrompt, TestEnv, at_prompt, pty};

/// `till add openai --no-verify` on its own terminal, started once its prompt is up. Returns
/// the child, the master end (to type into), a slave descriptor (to read the terminal's
/// settings after the child is gone) and what the terminal printed so far.
fn at_the_prompt(env: &TestEnv) -> (Child, std::fs::File, OwnedFd, Receiver<Vec<u8>>) {
    let terminal = pty();
    assert!(echo_on(&terminal.slave), "a fresh pty echoes");
    let mut cmd = env.till();
    cmd.args(["add", "openai", "--no-verify"]);
    let AtPrompt {
        child,
        master,
        slave,
        output,
    } = at_prompt(&mut cmd, terminal, "openai API key: ");
    // The prompt is written just before echo goes off; give it a moment to be read.
    std::thread::sleep(Duration::from_millis(200));
    (child, master, slave, output)
}

fn echo_on(fd: &OwnedFd) -> bool {
    // SAFETY: tcgetattr fills the zeroed termios.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(fd.as_raw_fd(), &mut t), 0);
        t.c_lflag & libc::ECHO != 0
    }
}

fn drain(rx: &Receiver<Vec<u8>>) -> String {
    let mut out = Vec::new();
    while let Ok(bytes) = rx.recv_timeout(Duration::from_millis(300)) {
        out.extend(bytes);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Ctrl-C, SIGTERM, SIGHUP or Ctrl-\\ (SIGQUIT) at the prompt end till by that signal (a shell reports 130 for
/// Ctrl-C) with echo back on and nothing stored.
#[test]
fn a_signal_at_the_prompt_gives_the_terminal_back() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        let env = TestEnv::new();
        let (mut child, master, slave, _rx) = at_the_prompt(&env);
        // SAFETY: signalling the child this test started.
        unsafe {
            libc::kill(child.id() as libc::pid_t, sig);
        }
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(sig), "{status:?}");
        assert!(
            echo_on(&slave),
            "signal {sig} left the terminal without echo"
        );
        drop(master);
        assert!(!env.path("data/secrets.age").exists());
    }
}

/// A Ctrl-C ignored before till started (`nohup`, a shell's background job) stays ignored at
/// the prompt; SIGTERM still ends it, with echo back on and nothing stored.
#[test]
fn a_signal_ignored_before_stays_ignored_at_the_prompt() {
    let env = TestEnv::new();
    let till = env.till();
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", "trap '' INT; exec \"$0\" add openai --no-verify"])
        .arg(till.get_program());
    cmd.env_clear();
    for (var, value) in till.get_envs() {
        if let Some(value) = value {
            cmd.env(var, value);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    // The shell starts with SIGINT at its default (the terminal's session is made for it) and
    // ignores it before it becomes till.
    let AtPrompt {
        mut child,
        master,
        slave,
        output: _output,
    } = at_prompt(&mut cmd, pty(), "openai API key: ");
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: signalling the child this test started.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "an ignored SIGINT ended the prompt"
    );
    // SAFETY: as above.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
    assert!(echo_on(&slave), "SIGTERM left the terminal without echo");
    drop(master);
    assert!(!env.path("data/secrets.age").exists());
}

/// Ctrl-D or an empty Enter at the prompt ends the command: usage error, nothing stored.
#[test]
fn eof_or_an_empty_line_at_the_prompt_ends_the_command() {
    for typed in ["\x04", "\n"] {
        let env = TestEnv::new();
        let (mut child, mut master, slave, rx) = at_the_prompt(&env);
        master.write_all(typed.as_bytes()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "{typed:?} at the prompt did not end the command: {}",
                    drain(&rx)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let text = drain(&rx);
        assert_eq!(status.code(), Some(2), "{typed:?}: {text}");
        assert!(text.contains("the key is empty"), "{typed:?}: {text}");
        assert!(text.contains("hint:"), "{typed:?}: {text}");
        assert!(echo_on(&slave));
        assert!(!env.path("data/secrets.age").exists());
    }
}

/// Ctrl-Z at the prompt: while till is stopped the terminal echoes again (the shell's), and
/// once it continues (`fg`) what is typed stays hidden and is the key.
#[test]
fn a_suspended_prompt_gives_the_terminal_back_and_hides_again_when_continued() {
    let env = TestEnv::new();
    let (mut child, mut master, slave, rx) = at_the_prompt(&env);
    let pid = child.id() as libc::pid_t;
    // SAFETY: signalling and waiting for the child this test started.
    unsafe {
        libc::kill(pid, libc::SIGTSTP);
    }
    // (Its process group has no shell to stop it for: the kernel drops a plain SIGTSTP, so a
    // prompt that did nothing about it would not stop at all.)
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut status = 0;
        // SAFETY: as above.
        let got = unsafe { libc::waitpid(pid, &mut status, libc::WUNTRACED | libc::WNOHANG) };
        if got == pid && libc::WIFSTOPPED(status) {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("till did not stop at Ctrl-Z");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let stopped_echo = echo_on(&slave);
    if !stopped_echo {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(stopped_echo, "a stopped prompt left echo off");
    // SAFETY: as above.
    unsafe {
        libc::kill(pid, libc::SIGCONT);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while echo_on(&slave) {
        assert!(
            Instant::now() < deadline,
            "echo stayed on after the prompt went on"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    master
        .write_all(b"sk-test-typed-after-fg-0123456789\n")
        .unwrap();
    let status = child.wait().unwrap();
    let text = drain(&rx);
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(
        !text.contains("sk-test-typed"),
        "the key was echoed: {text}"
    );
    assert!(echo_on(&slave));
    assert!(env.path("data/secrets.age").exists());
}
