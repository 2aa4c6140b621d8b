//! Shared test support: a temporary `TILL_HOME` and commands for the real binaries.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The passphrase of the file store in tests.
pub const PASSPHRASE: &str = "correct horse battery staple";

/// Environment variables from the developer's shell that must not leak into tests.
const SCRUB: &[&str] = &[
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "TILL_KEY",
    "TILL_PROXY_URL",
    "TILL_STORE",
    "TILL_PASSPHRASE",
    "TILL_KEYCHAIN_TIMEOUT",
];

/// A throwaway till home with its own config, ledger and file store.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
}

impl TestEnv {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn home(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes `config.toml`.
    pub fn config(&self, text: &str) {
        std::fs::write(self.path("config.toml"), text).expect("write config");
    }

    /// `till ARGS…` with this home and the file store unlocked by `TILL_PASSPHRASE`.
    pub fn till(&self) -> Command {
        let mut cmd = self.bare();
        cmd.env("TILL_STORE", "file")
            .env("TILL_PASSPHRASE", PASSPHRASE);
        cmd
    }

    /// `till` with this home and no store selection.
    pub fn bare(&self) -> Command {
        let mut cmd = Command::new(till_bin());
        for var in SCRUB {
            cmd.env_remove(var);
        }
        cmd.env("TILL_HOME", self.home()).env("NO_COLOR", "1");
        cmd
    }
}

pub fn till_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_till"))
}

/// `PATH` with the directory of the till under test first, for scripts that run `till`.
pub fn path_with_till() -> String {
    format!(
        "{}:{}",
        till_bin().parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Runs a command to completion and returns (exit code, stdout, stderr).
pub fn output(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run command");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a command with `input` on stdin.
pub fn output_with_stdin(cmd: &mut Command, input: &str) -> (i32, String, String) {
    use std::io::Write as _;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // A command that ends before it reads its input (a usage error found first) closes the
    // pipe: the write may then fail with a broken pipe, which is no failure of the test.
    if let Err(e) = child.stdin.take().unwrap().write_all(input.as_bytes()) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The root key the mock provider accepts for every family.
pub const ROOT_KEY: &str = "sk-mock-root";

/// A till home wired to an in-process mock provider, with root keys for openai, anthropic and
/// gemini already stored in the file store.
pub struct ProxyEnv {
    pub env: TestEnv,
    pub mock: till_mock::MockHandle,
}

impl ProxyEnv {
    pub fn new() -> Self {
        Self::with_options(till_mock::MockOptions::default(), "")
    }

    /// A mock with `opts`, and `extra` appended to config.toml.
    pub fn with_options(opts: till_mock::MockOptions, extra: &str) -> Self {
        let mock = till_mock::spawn(opts);
        let env = TestEnv::new();
        let url = mock.url();
        env.config(&format!(
            "[providers.openai]\nbase_url = \"{url}\"\n[providers.anthropic]\nbase_url = \"{url}\"\n[providers.gemini]\nbase_url = \"{url}\"\n{extra}"
        ));
        for provider in ["openai", "anthropic", "gemini"] {
            let (code, _, stderr) = output_with_stdin(env.till().args(["add", provider]), ROOT_KEY);
            assert_eq!(code, 0, "till add {provider}: {stderr}");
        }
        Self { env, mock }
    }

    /// `till run ARGS…` (ARGS include `--` and the command).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        output(self.env.till().arg("run").args(args))
    }

    /// Runs the Python wire-format client as the agent under `till run SCOPE… --`.
    pub fn client(&self, scope: &[&str], client_args: &[&str]) -> (serde_json::Value, String) {
        let mut args: Vec<&str> = scope.to_vec();
        args.push("--");
        args.push("python3");
        let script = client_script();
        args.push(&script);
        args.extend_from_slice(client_args);
        let (code, stdout, stderr) = self.run(&args);
        assert_eq!(code, 0, "client failed: {stdout}\n{stderr}");
        let v: serde_json::Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("client printed no JSON ({e}): {stdout}\n{stderr}"));
        (v, stderr)
    }

    /// Like [`Self::assert_upstream_saw_only_root_keys`], but an empty record is fine.
    pub fn assert_upstream_saw_only_root_keys_or_nothing(&self) {
        if !self.mock.requests().is_empty() {
            self.assert_upstream_saw_only_root_keys();
        }
    }

    /// Every request the mock saw carried the root key and no till key anywhere.
    pub fn assert_upstream_saw_only_root_keys(&self) {
        let requests = self.mock.requests();
        assert!(!requests.is_empty(), "the mock saw no requests");
        for r in requests {
            let text = serde_json::to_string(&r).unwrap();
            assert!(
                !text.contains("till_"),
                "a till key reached the upstream: {text}"
            );
            let auth = ["authorization", "x-api-key", "x-goog-api-key"]
                .iter()
                .filter_map(|h| r.headers.get(*h))
                .collect::<Vec<_>>();
            assert!(
                auth.iter().any(|v| v.contains(ROOT_KEY)),
                "request without the root key: {text}"
            );
        }
    }
}

pub fn client_script() -> String {
    format!("{}/tests/python/client.py", env!("CARGO_MANIFEST_DIR"))
}

pub fn python_script(name: &str) -> String {
    format!("{}/tests/python/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A running `till serve` on a free loopback port; killed on drop.
pub struct Serve {
    pub url: String,
    pub child: std::process::Child,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ProxyEnv {
    /// The request rows `till log --json -n 1000` prints, oldest first.
    pub fn log_json(&self) -> Vec<serde_json::Value> {
        let (code, stdout, stderr) = output(self.env.till().args(["log", "--json", "-n", "1000"]));
        assert_eq!(code, 0, "{stderr}");
        serde_json::from_str(&stdout).unwrap()
    }

    /// Starts `till serve --listen 127.0.0.1:0` and waits for the URL it prints.
    pub fn serve(&self) -> Serve {
        self.serve_with_stderr(std::process::Stdio::null())
    }

    /// [`Self::serve`] with the proxy's stderr (its alerts) going to `stderr`.
    pub fn serve_with_stderr(&self, stderr: impl Into<std::process::Stdio>) -> Serve {
        self.serve_on("127.0.0.1:0", stderr)
    }

    /// `till serve --listen LISTEN`, its stderr going to `stderr`, once it has printed its URL
    /// (which is at loopback whatever it listens on).
    pub fn serve_on(&self, listen: &str, stderr: impl Into<std::process::Stdio>) -> Serve {
        use std::io::BufRead as _;
        let mut child = self
            .env
            .till()
            .args(["serve", "--listen", listen])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn till serve");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.starts_with("http://127.0.0.1:"),
            "till serve printed {line:?}"
        );
        Serve {
            url: line.trim().to_string(),
            child,
        }
    }

    /// `till key create ARGS…` → the key.
    pub fn create_key(&self, args: &[&str]) -> String {
        let (code, stdout, stderr) = output(self.env.till().args(["key", "create"]).args(args));
        assert_eq!(code, 0, "{stderr}");
        stdout.trim().to_string()
    }
}

/// `till log --json`'s rows once there are at least `at_least` (the writer batches them), or
/// what there is after five seconds.
pub fn poll_rows(p: &ProxyEnv, at_least: usize) -> Vec<serde_json::Value> {
    let mut rows = Vec::new();
    for _ in 0..100 {
        rows = p.log_json();
        if rows.len() >= at_least {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    rows
}

/// Runs the wire-format client directly (not under `till run`) with `key` against a proxy URL.
pub fn client_with_key(proxy: &str, key: &str, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new("python3")
        .arg(client_script())
        .args(args)
        .env("OPENAI_API_KEY", key)
        .env("OPENAI_BASE_URL", format!("{proxy}/openai/v1"))
        .env("ANTHROPIC_API_KEY", key)
        .env("ANTHROPIC_BASE_URL", format!("{proxy}/anthropic"))
        .env("GEMINI_API_KEY", key)
        .env("GOOGLE_GEMINI_BASE_URL", format!("{proxy}/gemini"))
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "client printed no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Sends one HTTP/1.1 request exactly as given (no client normalises the path or the body)
/// and returns the status and the body as text. `base` is `http://HOST:PORT`; a `host`
/// header in `headers` replaces the default one.
pub fn raw_http(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let (status, _, body) = raw_exchange(base, method, path, headers, body);
    (status, body)
}

/// [`raw_http`], returning the status, the response head and the (de-chunked) body.
pub fn raw_exchange(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    use std::io::{Read as _, Write as _};
    let addr = base.strip_prefix("http://").expect("http base URL");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the proxy");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    req.push_str("Connection: close\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(req.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (status, head.to_string(), body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// POSTs `body` (JSON) to `path` on the proxy at `url` over a raw socket, with `host` as the
/// `Host` header and `key` as a bearer token; returns the status code and the whole answer
/// (head and body).
pub fn raw_post(url: &str, host: &str, path: &str, key: &str, body: &str) -> (u16, String) {
    let auth = format!("Bearer {key}");
    let headers = [
        ("Host", host),
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let (status, head, body) = raw_exchange(url, "POST", path, &headers, body.as_bytes());
    (status, format!("{head}\r\n\r\n{body}"))
}

/// A pseudo-terminal: its master, and its slave's path (`/dev/pts/N`) and an open slave end.
pub struct Pty {
    pub master: std::os::fd::OwnedFd,
    pub path: String,
    pub slave: std::os::fd::OwnedFd,
}

pub fn pty() -> Pty {
    use std::os::fd::FromRawFd as _;
    // SAFETY: plain libc calls on descriptors this function owns; ptsname_r writes into the
    // buffer it is given, and open reads the name it wrote.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(
            master >= 0,
            "posix_openpt: {}",
            std::io::Error::last_os_error()
        );
        assert_eq!(libc::grantpt(master), 0);
        assert_eq!(libc::unlockpt(master), 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(master, name.as_mut_ptr(), name.len()), 0);
        let slave = libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
        assert!(slave >= 0, "{}", std::io::Error::last_os_error());
        Pty {
            master: std::os::fd::OwnedFd::from_raw_fd(master),
            path: std::ffi::CStr::from_ptr(name.as_ptr())
                .to_string_lossy()
                .into_owned(),
            slave: std::os::fd::OwnedFd::from_raw_fd(slave),
        }
    }
}

/// A command started on a pty of its own, waited for until it printed a prompt.
pub struct AtPrompt {
    pub child: std::process::Child,
    /// The master end, to type into.
    pub master: std::fs::File,
    /// A slave descriptor, to read the terminal's settings after the child is gone.
    pub slave: std::os::fd::OwnedFd,
    /// What the terminal printed after the prompt.
    pub output: std::sync::mpsc::Receiver<Vec<u8>>,
}

/// Starts `cmd` on `pty` as its controlling terminal and waits (20 s at most) until it has
/// printed `prompt`.
pub fn at_prompt(cmd: &mut Command, pty: Pty, prompt: &str) -> AtPrompt {
    use std::io::Read as _;
    use std::process::Stdio;
    let Pty { master, slave, .. } = pty;
    cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave.try_clone().unwrap()));
    on_its_terminal(cmd);
    let mut child = cmd.spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut reader = std::fs::File::from(master.try_clone().unwrap());
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !String::from_utf8_lossy(&seen).contains(prompt) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(bytes) => seen.extend(bytes),
            Err(_) => {
                let _ = child.kill();
                panic!("no prompt: {}", String::from_utf8_lossy(&seen));
            }
        }
    }
    AtPrompt {
        child,
        master: std::fs::File::from(master),
        slave,
        output: rx,
    }
}

/// Makes `cmd` start a session whose controlling terminal is its stdin (a pty's slave end),
/// with the signal dispositions a shell gives a job it starts in the foreground: a test run
/// in the background of a shell without job control has SIGINT and SIGQUIT ignored, and till
/// keeps an ignored signal ignored (as `nohup` asks), so Ctrl-C would never end it.
pub fn on_its_terminal(cmd: &mut Command) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: setsid, ioctl and signal are async-signal-safe; they make the pty the child's
    // terminal and put the default action back.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            for sig in [libc::SIGINT, libc::SIGQUIT] {
                libc::signal(sig, libc::SIG_DFL);
            }
            Ok(())
        });
    }
}
