//! `till run` as a process: exit codes, signals, and a parent that dies.

use std::io::BufRead as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{ProxyEnv, output};

#[test]
fn exit_code_is_the_agents() {
    let p = ProxyEnv::new();
    let (code, _, stderr) = p.run(&["--", "sh", "-c", "exit 7"]);
    assert_eq!(code, 7, "{stderr}");
    assert!(stderr.contains("till: 0 requests"), "{stderr}");
    let (code, _, stderr) = p.run(&["--quiet", "--", "sh", "-c", "kill -INT $$"]);
    assert_eq!(code, 130, "{stderr}");
    assert!(
        !stderr.contains("requests"),
        "--quiet prints no summary: {stderr}"
    );
}

/// An argument that is not UTF-8 (a Latin-1 file name) reaches the agent byte for byte.
#[test]
fn arguments_that_are_not_utf8_reach_the_agent_unchanged() {
    use std::os::unix::ffi::OsStrExt as _;
    let p = ProxyEnv::new();
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
    let (code, _, stderr) = output(p.env.till().arg("run").arg("--").args([
        std::ffi::OsStr::new("sh"),
        std::ffi::OsStr::new("-c"),
        std::ffi::OsStr::new(r#"test "$1" = "$(printf 'caf\351.txt')""#),
        std::ffi::OsStr::new("sh"),
        name,
    ]));
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn missing_command_and_missing_separator() {
    let p = ProxyEnv::new();
    let (code, _, stderr) = p.run(&["--", "no-such-agent-xyz"]);
    assert_eq!(code, 127, "{stderr}");
    assert!(stderr.contains("command not found"), "{stderr}");
    // The error is the last word: no summary of the requests an agent that never started
    // did not make.
    assert!(!stderr.contains("till: 0 requests"), "{stderr}");
    let (code, _, stderr) = output(p.env.till().args(["run", "echo"]));
    assert_eq!(code, 2, "{stderr}");
}

fn spawn_run(p: &ProxyEnv, script: &str) -> (std::process::Child, String) {
    let mut child = p
        .env
        .till()
        .args(["run", "--", "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim().to_string())
}

fn wait_with_deadline(
    child: &mut std::process::Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn sigterm_reaches_the_agent_and_till_exits_143() {
    let p = ProxyEnv::new();
    let (mut child, line) = spawn_run(&p, "echo ready; exec sleep 60");
    assert_eq!(line, "ready");
    // SAFETY: kill takes plain integers.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_with_deadline(&mut child, Duration::from_secs(20))
        .expect("till did not exit after SIGTERM");
    assert_eq!(status.code(), Some(143));
}

#[test]
fn sigterm_handled_by_the_agent_gives_its_exit_code() {
    let p = ProxyEnv::new();
    let (mut child, line) = spawn_run(
        &p,
        "trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done",
    );
    assert_eq!(line, "ready");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status =
        wait_with_deadline(&mut child, Duration::from_secs(20)).expect("till did not exit");
    assert_eq!(status.code(), Some(42));
}

#[cfg(target_os = "linux")]
#[test]
fn sigkill_to_till_ends_the_agent() {
    let p = ProxyEnv::new();
    let (mut child, line) = spawn_run(&p, "echo $$; exec sleep 60");
    let agent: i32 = line.parse().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = std::fs::read_to_string(format!("/proc/{agent}/stat")).ok();
        let alive = state.as_deref().is_some_and(|s| {
            let after = s.rsplit_once(')').map_or("", |(_, r)| r).trim_start();
            !after.starts_with('Z') && !after.starts_with('X')
        });
        if !alive {
            break;
        }
        assert!(Instant::now() < deadline, "the agent {agent} outlived till");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `[keys] max_ttl` is the longest TTL any key may get: `till run --ttl` past it is refused
/// like `till key create --ttl`, with the same words and exit 2, and the agent never starts (a
/// profile's `ttl` past it is a config error: `cli::profiles_are_checked_with_the_config`).
#[test]
fn run_refuses_a_ttl_past_max_ttl_as_key_create_does() {
    let p = ProxyEnv::with_options(
        till_mock::MockOptions::default(),
        "[keys]\nmax_ttl = \"1h\"\n",
    );
    let marker = p.env.path("agent-ran");
    let agent = format!("touch {}", marker.display());
    let (code, _, created) = output(p.env.till().args(["key", "create", "--ttl", "2h"]));
    assert_eq!(code, 2, "{created}");
    for args in [
        &["--ttl", "2h"][..],
        &["--ttl", "2h", "--budget", "1usd"][..],
    ] {
        let (code, _, stderr) = p.run(&[args, &["--", "sh", "-c", &agent]].concat());
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(stderr, created, "{args:?}");
        assert!(!marker.exists(), "{args:?}: the agent ran");
    }
    assert!(
        created.contains("--ttl 2h is longer than the ceiling, [keys] max_ttl = \"1h\""),
        "{created}"
    );
    assert!(
        created.contains("hint: ask for less, or raise [keys] max_ttl in config.toml"),
        "{created}"
    );
    let (code, _, stderr) = p.run(&["--ttl", "1h", "--", "sh", "-c", &agent]);
    assert_eq!(code, 0, "{stderr}");
    assert!(marker.exists());
}

/// An agent that leaves the terminal's output stopped (`TCOOFF`) and its text concealed would
/// hang till at its summary, or hide it (and show a line of its own in its place), or garble
/// it (reverse video, line drawing): till starts the output again and ends what the agent left
/// on before it writes.
#[test]
fn an_agent_that_stops_or_hides_the_terminal_does_not_hang_or_hide_till() {
    let p = ProxyEnv::new();
    let mut cmd = p.env.till();
    cmd.args([
        "run",
        "--",
        &crate::sandbox::python(),
        "-c",
        "import sys, termios\n\
         sys.stdout.write('till: 0 requests, $0\\n\\x1b[8m\\x1b[?5h\\x1b(0')\n\
         sys.stdout.flush()\n\
         termios.tcflow(1, termios.TCOOFF)\n",
    ]);
    let (status, screen) = crate::sandbox::on_a_terminal(cmd);
    assert_eq!(status.code(), Some(0), "{screen:?}");
    let hidden = screen.find("\u{1b}(0").expect("the agent's sequences");
    let reset = String::from_utf8(till::terminal::RESET.to_vec()).unwrap();
    for undo in ["\u{1b}[?5l", "\u{1b}(B", "\u{1b}[0m"] {
        assert!(reset.contains(undo), "{reset:?} lacks {undo:?}");
    }
    let at = screen.rfind(&reset);
    assert!(at.is_some_and(|r| r > hidden), "{screen:?}");
    // The summary comes after it.
    assert!(screen[at.unwrap()..].contains("till: "), "{screen:?}");
}

/// With `--key`, the agent gets the variables of the providers that key allows, not of every
/// stored provider: a key for one OpenAI model set `ANTHROPIC_API_KEY` and
/// `ANTHROPIC_BASE_URL` too, and the agent met refusals for a provider its key never had.
#[test]
fn a_given_key_sets_only_its_providers_variables() {
    let p = ProxyEnv::new();
    p.create_key(&[
        "--name",
        "ci2",
        "--scope",
        "openai/gpt-4o-mini",
        "--budget",
        "1usd",
    ]);
    let (code, stdout, stderr) = p.run(&["--key", "ci2", "--", "env"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("OPENAI_API_KEY=till_"), "{stdout}");
    for other in ["ANTHROPIC_", "GEMINI_API_KEY=", "GOOGLE_GEMINI_BASE_URL="] {
        assert!(
            !stdout.contains(other),
            "{other} set for an openai key:\n{stdout}"
        );
    }
    // The run's level of the key adds its session alone: no providers or later end beside
    // the given key's, which read as a widening.
    let path = crate::support::path_with_till();
    let (code, stdout, stderr) = output(p.env.till().env("PATH", &path).args([
        "run",
        "--key",
        "ci2",
        "--",
        "sh",
        "-c",
        "till key inspect \"$TILL_KEY\"",
    ]));
    assert_eq!(code, 0, "{stderr}");
    let levels: Vec<&str> = stdout.lines().filter(|l| l.contains("level")).collect();
    assert_eq!(levels.len(), 2, "{stdout}");
    assert!(levels[1].contains("--session"), "{stdout}");
    assert!(
        !levels[1].contains("--scope") && !levels[1].contains("--expires"),
        "{stdout}"
    );
    // A key for two providers gets both; narrowed in a nested run to one, that one.
    p.create_key(&["--name", "two", "--scope", "openai", "--scope", "anthropic"]);
    let (code, stdout, stderr) = p.run(&["--key", "two", "--", "env"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("ANTHROPIC_BASE_URL=http://"), "{stdout}");
    assert!(!stdout.contains("GEMINI_API_KEY="), "{stdout}");
    let (code, stdout, stderr) = output(p.env.till().env("PATH", path).args([
        "run", "--key", "two", "--", "till", "run", "--scope", "openai", "--", "env",
    ]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("OPENAI_BASE_URL=http://"), "{stdout}");
    // Nor the outer run's ANTHROPIC_BASE_URL, which points at its proxy.
    assert!(!stdout.contains("ANTHROPIC_"), "{stdout}");
    // A key whose providers have no stored key runs nothing.
    p.create_key(&["--name", "groq-only", "--scope", "groq"]);
    let (code, _, stderr) = p.run(&["--key", "groq-only", "--", "true"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("allows no provider whose key is stored"),
        "{stderr}"
    );
}

/// A bad scope flag is the usage error (2) it is before anything else is looked at: on a home
/// with no root keys, `till run --ttl 0s` said there were none (1).
#[test]
fn a_bad_flag_is_a_usage_error_on_a_home_without_keys() {
    let env = crate::support::TestEnv::new();
    for args in [&["--ttl", "0s"][..], &["--budget", "0usd"], &["--rpm", "0"]] {
        let (code, _, stderr) = output(env.till().arg("run").args(args).args(["--", "true"]));
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(!stderr.contains("no root keys"), "{args:?}: {stderr}");
    }
}

/// An agent that leaves its standard streams non-blocking (Node does, and leaves it so when it
/// is killed) changes the open file your shell shares with it: the shell's next read or a
/// program after it gets `EAGAIN`. till puts the flag back as it was when the agent ends, with
/// and without the sandbox.
#[test]
fn a_non_blocking_flag_the_agent_leaves_on_its_streams_is_put_back() {
    use std::os::fd::AsRawFd as _;
    let p = ProxyEnv::new();
    let nonblock = "import fcntl, os\nfor fd in (0, 1, 2):\n    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)\n";
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for (sandbox, restored) in [("--no-sandbox", true), ("--sandbox", true)] {
        let path = dir.path().join(format!("out{sandbox}"));
        let file = std::fs::File::create(&path).unwrap();
        let input = std::fs::File::open("/dev/null").unwrap();
        let flags = |f: &std::fs::File| unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) };
        assert_eq!(flags(&file) & libc::O_NONBLOCK, 0);
        let status = p
            .env
            .till()
            .args(["run", sandbox, "--", "python3", "-c", nonblock])
            .current_dir(dir.path())
            .stdin(input.try_clone().unwrap())
            .stdout(file.try_clone().unwrap())
            .stderr(file.try_clone().unwrap())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "{}",
            std::fs::read_to_string(&path).unwrap()
        );
        for f in [&file, &input] {
            assert_eq!(
                flags(f) & libc::O_NONBLOCK == 0,
                restored,
                "{sandbox}: {}",
                std::fs::read_to_string(&path).unwrap()
            );
        }
    }
}
