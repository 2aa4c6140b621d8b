//! The command line itself: help, completions drift, config errors, exit codes.

use crate::support::{TestEnv, output, output_with_stdin, till_bin};

const SHELLS: &[(&str, &str)] = &[
    ("bash", "till.bash"),
    ("zsh", "_till"),
    ("fish", "till.fish"),
    ("powershell", "_till.ps1"),
    ("elvish", "till.elv"),
];

/// The committed scripts under `completions/` must be exactly what the binary prints.
/// Regenerate with `scripts/gen-completions.sh`.
#[test]
fn completions_do_not_drift() {
    let env = TestEnv::new();
    for (shell, file) in SHELLS {
        let (code, stdout, stderr) = output(env.bare().args(["completions", shell]));
        assert_eq!(code, 0, "{stderr}");
        let committed = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("completions")
                .join(file),
        )
        .unwrap_or_default();
        assert!(
            committed == stdout,
            "completions/{file} is out of date; run scripts/gen-completions.sh"
        );
    }
}

#[test]
fn zsh_completion_is_loadable() {
    // The test command installs zsh; without it this test fails rather than passing unchecked.
    assert!(
        std::process::Command::new("zsh")
            .arg("--version")
            .output()
            .is_ok(),
        "zsh is needed for this test (apt-get install zsh)"
    );
    let env = TestEnv::new();
    let (_, script, _) = output(env.bare().args(["completions", "zsh"]));
    let file = env.path("_till");
    std::fs::write(&file, script).unwrap();
    let (code, _, stderr) = output(std::process::Command::new("zsh").args([
        "-c",
        &format!(
            "autoload -U compinit && compinit -u && source {} && echo ok",
            file.display()
        ),
    ]));
    assert_eq!(code, 0, "{stderr}");
}

/// Bash completes a provider's name from the built-in ones (the generated script offered
/// nothing there, zsh every command on PATH before that).
#[test]
fn bash_completes_a_providers_name() {
    let env = TestEnv::new();
    let (_, script, _) = output(env.bare().args(["completions", "bash"]));
    let file = env.path("till.bash");
    std::fs::write(&file, script).unwrap();
    for (words, want) in [
        ("till remove an", "anthropic"),
        ("till add gr", "groq"),
        ("till rotate open", "openai\nopenrouter"),
    ] {
        let cword = words.split(' ').count() - 1;
        let (code, stdout, stderr) = output(std::process::Command::new("bash").args([
            "-c",
            &format!(
                "source {file}; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{words}'; \
                 COMP_POINT=${{#COMP_LINE}}; _till till \"${{COMP_WORDS[COMP_CWORD]}}\" \
                 \"${{COMP_WORDS[COMP_CWORD-1]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                file = file.display()
            ),
        ]));
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(stdout.trim(), want, "{words}");
    }
}

/// A home with active keys `ci` and `nightly`, one without a name, and a revoked `old`:
/// what the completion scripts should offer where a key is asked for (the unnamed key by its
/// id), sorted.
fn keys_to_complete() -> (crate::support::ProxyEnv, Vec<String>) {
    // A provider of config.toml's own, with no key stored.
    let p = crate::support::ProxyEnv::with_options(
        till_mock::MockOptions::default(),
        "[providers.myllm]\napi = \"openai\"\nbase_url = \"http://127.0.0.1:9\"\n\
         [profiles.review]\nscope = [\"openai\"]\n[profiles.nightly]\nscope = [\"gemini\"]\n",
    );
    for name in ["ci", "nightly", "old"] {
        p.create_key(&["--scope", "openai", "--name", name]);
    }
    let unnamed = p.create_key(&["--scope", "openai"]);
    let (code, _, stderr) = output(p.env.till().args(["key", "revoke", "old"]));
    assert_eq!(code, 0, "{stderr}");
    let (_, shown, _) = output(p.env.till().args(["key", "show", &unnamed, "--json"]));
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    let id = shown["id"].as_str().unwrap().to_string();
    let mut want = vec!["ci".to_string(), "nightly".to_string(), id];
    want.sort();
    (p, want)
}

/// The completion of `words` (the last one being completed) by `shell`'s script in `script`,
/// sorted; till is found on PATH with the test's home.
fn complete(p: &crate::support::ProxyEnv, shell: &str, words: &str) -> Vec<String> {
    let (_, script, _) = output(p.env.bare().args(["completions", shell]));
    let file = p.env.path(&format!("completion.{shell}"));
    std::fs::write(&file, script).unwrap();
    let file = file.display();
    let cword = words.split(' ').count() - 1;
    let (program, code) = match shell {
        "bash" => (
            "bash",
            format!(
                "source {file}; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{words}'; \
                 COMP_POINT=${{#COMP_LINE}}; _till_complete till \"${{COMP_WORDS[COMP_CWORD]}}\" \
                 \"${{COMP_WORDS[COMP_CWORD-1]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\""
            ),
        ),
        // compadd and the generated function stand in for zsh's completion system, which
        // runs only under a line editor: what the wrapper hands each of them is printed
        // (compadd's, as zsh would show it, only what starts as the word does).
        "zsh" => (
            "zsh",
            format!(
                "autoload -U compinit && compinit -u; source {file}; \
                 compadd() {{ local w; for w in ${{(P)2}}; do [[ $w == ${{words[CURRENT]}}* ]] && print -- $w; done; true }}; _till_generated() {{ print generated }}; \
                 words=({words}); CURRENT={}; _till",
                cword + 1
            ),
        ),
        _ => ("fish", format!("source {file}; complete -C '{words}'")),
    };
    let (status, stdout, stderr) = output(
        std::process::Command::new(program)
            .args(["-c", &code])
            .current_dir(p.env.home())
            .env("PATH", crate::support::path_with_till())
            .env("TILL_HOME", p.env.home()),
    );
    assert_eq!(status, 0, "{shell}: {stderr}");
    // fish prints a description after a tab.
    let mut got: Vec<String> = stdout
        .lines()
        .map(|l| l.split('\t').next().unwrap().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    got.sort();
    got
}

/// bash, zsh and fish offer what till knows where clap's generated scripts offer fixed values
/// or nothing: the active keys' names (and ids of unnamed ones) after `--key` and for `till key
/// show` and `till key revoke`, never a revoked key's; providers and the price table's models
/// after `--scope`; config.toml's profiles after `--profile`; the built-in and config.toml
/// providers for `till add`; the providers with a stored key for `till remove` and `till rotate`. All
/// read with `TILL_COMPLETE=WHAT till`, and never after `--`, where the agent's command line
/// begins.
#[test]
fn the_shells_complete_key_and_provider_names() {
    // The test command installs fish and zsh; without them this test fails, not skips.
    let (p, want) = keys_to_complete();
    let want_n: Vec<String> = want
        .iter()
        .filter(|k| k.starts_with('n'))
        .cloned()
        .collect();
    let stored = ["anthropic", "gemini", "openai"].map(String::from).to_vec();
    for shell in ["bash", "zsh", "fish"] {
        assert_eq!(complete(&p, shell, "till key revoke "), want, "{shell}");
        assert_eq!(complete(&p, shell, "till key revoke ci "), want, "{shell}");
        assert_eq!(complete(&p, shell, "till key show "), want, "{shell}");
        assert_eq!(complete(&p, shell, "till run --key "), want, "{shell}");
        assert_eq!(complete(&p, shell, "till log --key n"), want_n, "{shell}");
        assert_eq!(complete(&p, shell, "till add my"), ["myllm"], "{shell}");
        let add = complete(&p, shell, "till add ");
        for name in ["myllm", "openai", "groq", "openrouter"] {
            assert!(add.contains(&name.to_string()), "{shell}: {add:?}");
        }
        // --scope: providers, then the price table's models of each.
        let scopes = complete(&p, shell, "till run --scope openai/gpt-4o-m");
        assert!(
            scopes.contains(&"openai/gpt-4o-mini".to_string())
                && scopes.iter().all(|s| s.starts_with("openai/gpt-4o-m")),
            "{shell}: {scopes:?}"
        );
        assert_eq!(
            complete(&p, shell, "till key create -s myl"),
            ["myllm"],
            "{shell}"
        );
        let anthropic = complete(&p, shell, "till key attenuate --scope anth");
        assert!(
            anthropic.contains(&"anthropic".to_string())
                && anthropic.iter().any(|s| s.starts_with("anthropic/claude-"))
                && anthropic.iter().all(|s| s.starts_with("anthropic")),
            "{shell}: {anthropic:?}"
        );
        assert_eq!(
            complete(&p, shell, "till run -p "),
            ["nightly", "review"],
            "{shell}"
        );
        assert_eq!(
            complete(&p, shell, "till run --profile r"),
            ["review"],
            "{shell}"
        );
        assert_eq!(complete(&p, shell, "till remove "), stored, "{shell}");
        assert_eq!(complete(&p, shell, "till rotate "), stored, "{shell}");
        // Not such a place: the generated script decides (zsh's stand-in says so).
        for words in [
            "till run -- agent --key ",
            "till run -- agent --scope my",
            "till run -- agent -p ",
            "till key show ci ",
            "till add openai ",
        ] {
            let got = complete(&p, shell, words);
            assert!(
                !got.contains(&"ci".to_string())
                    && !got.contains(&"myllm".to_string())
                    && !got.contains(&"review".to_string()),
                "{shell} {words}: {got:?}"
            );
        }
    }
    assert_eq!(
        complete(&p, "zsh", "till run -- agent --key "),
        ["generated"]
    );
}

/// A name with shell syntax in it (a price table's model, config.toml's profile) was run by
/// bash when TAB offered it: `compgen -W` expands its word list. The script reads each value
/// as data, and till offers only names a shell takes as one plain word.
#[test]
fn names_with_shell_syntax_are_never_run_or_offered_by_completion() {
    let p = crate::support::ProxyEnv::with_options(
        till_mock::MockOptions::default(),
        "[prices.\"openai/gpt-x$(touch${IFS}pwned-a)\"]\ninput = 1.0\noutput = 1.0\n\
         [prices.\"openai/gpt-y`touch pwned-b`\"]\ninput = 1.0\noutput = 1.0\n\
         [prices.\"openai/gpt-z;touch pwned-c\"]\ninput = 1.0\noutput = 1.0\n\
         [profiles.\"p$(touch pwned-d)\"]\nscope = [\"openai\"]\n\
         [profiles.plain]\nscope = [\"openai\"]\n",
    );
    let (code, stdout, stderr) = output(p.env.till().env("TILL_COMPLETE", "scopes"));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("openai/gpt-4o-mini\n"), "{stdout}");
    for shell in ["bash", "zsh", "fish"] {
        let scopes = complete(&p, shell, "till run --scope openai/gpt-");
        assert!(
            scopes.contains(&"openai/gpt-4o-mini".to_string())
                && scopes.iter().all(|s| !s.contains(['$', '`', ';'])),
            "{shell}: {scopes:?}"
        );
        assert_eq!(complete(&p, shell, "till run -p "), ["plain"], "{shell}");
    }
    let home = p.env.home();
    let planted: Vec<_> = std::fs::read_dir(home)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("pwned"))
        .map(|e| e.path())
        .collect();
    assert!(planted.is_empty(), "a completion ran a name: {planted:?}");
}

#[test]
fn help_lists_commands() {
    let (code, stdout, _) = output(std::process::Command::new(till_bin()).arg("--help"));
    assert_eq!(code, 0);
    for cmd in ["add", "remove", "list", "doctor", "completions"] {
        assert!(
            stdout.contains(&format!("  {cmd}")),
            "{cmd} missing from:\n{stdout}"
        );
    }
}

#[test]
fn unknown_flag_is_usage_error() {
    let (code, _, stderr) = output(std::process::Command::new(till_bin()).args(["list", "--jsn"]));
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn an_agent_command_without_dashes_gets_a_hint() {
    let env = TestEnv::new();
    let (code, _, stderr) = output(env.till().args(["run", "python3", "agent.py"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("unexpected argument 'python3'"), "{stderr}");
    assert!(
        stderr.contains("hint: put the agent's command after `--`"),
        "{stderr}"
    );
    // A misspelt flag is not a command: no such hint for it, nor for other commands.
    for args in [
        &["run", "--sandbx", "--", "true"][..],
        &["list", "extra"][..],
    ] {
        let (code, _, stderr) = output(env.till().args(args));
        assert_eq!(code, 2, "{stderr}");
        assert!(!stderr.contains("hint: put"), "{args:?}: {stderr}");
    }
    // --help and --version still print to stdout and succeed.
    let (code, stdout, _) = output(env.till().args(["run", "--help"]));
    assert_eq!(code, 0);
    assert!(stdout.contains("after `--`"), "{stdout}");
    let (code, stdout, _) = output(env.till().arg("--version"));
    assert_eq!(code, 0);
    assert!(stdout.starts_with("till "), "{stdout}");
}

#[test]
fn a_key_that_is_not_text_is_bad_input() {
    use std::io::Write as _;
    let env = TestEnv::new();
    let mut child = env
        .till()
        .args(["add", "openai", "--no-verify"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"sk-\xff\xfe\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("not text") && stderr.contains("hint:"),
        "{stderr}"
    );
    let (_, listed, _) = output(env.till().args(["list", "--json"]));
    assert_eq!(listed.trim(), "[]", "nothing was stored");
}

#[test]
fn a_keychain_timeout_of_zero_from_the_environment_is_refused() {
    let env = TestEnv::new();
    let (code, _, stderr) = crate::support::output_with_stdin(
        env.till()
            .env("TILL_KEYCHAIN_TIMEOUT", "0s")
            .args(["add", "openai", "--no-verify"]),
        "sk-test",
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("longer than 0s") && stderr.contains("hint:"),
        "{stderr}"
    );
}

#[test]
fn malformed_config_names_file_line_and_column() {
    let env = TestEnv::new();
    env.config("store = \"file\"\n[keys]\ndefault_ttl = 5\n");
    let (code, _, stderr) = output(env.till().args(["list"]));
    assert_eq!(code, 2, "{stderr}");
    let path = env.path("config.toml");
    assert!(
        stderr.contains(&format!("{}:3:15:", path.display())),
        "{stderr}"
    );
}

#[test]
fn broken_toml_names_line_and_column() {
    let env = TestEnv::new();
    env.config("[providers.openai\nbase_url = 1\n");
    let (code, _, stderr) = output(env.till().args(["doctor"]));
    assert_eq!(code, 1, "{stderr}");
    let (code, _, stderr) = output(env.till().args(["list"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("config.toml:1:"), "{stderr}");
}

#[test]
fn unknown_provider_suggests_the_near_one_or_lists_known_ones() {
    let env = TestEnv::new();
    let (code, _, stderr) = output(env.till().args(["add", "opnai", "--no-verify"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("unknown provider `opnai`"), "{stderr}");
    assert!(stderr.contains("did you mean `openai`?"), "{stderr}");
    let (code, _, stderr) = output(env.till().args(["add", "OpenAI", "--no-verify"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("hint: provider names are lowercase: `openai`"),
        "{stderr}"
    );
    let (code, _, stderr) = output(env.till().args(["add", "nosuch", "--no-verify"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("openai, openrouter"), "{stderr}");
    // A scope's unknown provider is not one `till add` takes: its hint says to describe it
    // first (it said `till add nosuch`, which fails).
    let (code, _, stderr) = output(env.till().args(["key", "create", "--scope", "nosuch"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("unknown provider `nosuch` (known:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("under [providers.nosuch] in config.toml"),
        "{stderr}"
    );
    // A known provider without a stored key: the key is made, and the warning says what it
    // waits for.
    let (code, _, stderr) = output(env.till().args(["key", "create", "--scope", "groq"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("no groq key is stored") && stderr.contains("`till add groq`"),
        "{stderr}"
    );
}

#[test]
fn list_on_empty_home_is_empty_json() {
    let env = TestEnv::new();
    let (code, stdout, stderr) = output(env.till().args(["list", "--json"]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), "[]");
}

/// `openai_itself` says how an OpenAI-compatible upstream reads requests: on a provider that
/// speaks another API it would only switch a check off, so config refuses it there.
#[test]
fn openai_itself_is_for_providers_of_openais_api() {
    let env = TestEnv::new();
    env.config("[providers.anthropic]\nopenai_itself = true\n");
    let (code, _, stderr) = output(env.till().args(["list"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("[providers.anthropic] openai_itself"),
        "{stderr}"
    );
    env.config("[providers.azure]\nbase_url = \"https://example.openai.azure.com/openai/v1\"\nopenai_itself = true\n");
    let (code, _, stderr) = output(env.till().args(["list"]));
    assert_eq!(code, 0, "{stderr}");
}

/// Commands that only read made the data directory and an empty ledger wherever `TILL_HOME`
/// pointed, a mistyped one too, and then showed nothing as if all were well. They now read an
/// empty ledger in memory, say where they looked, and leave no file behind.
#[test]
fn reading_commands_make_nothing_in_a_new_home() {
    let env = TestEnv::new();
    let data = env.path("data");
    for args in [
        &["list", "--json"][..],
        &["log"],
        &["log", "--alerts", "--json"],
        &["usage", "--json"],
        &["status"],
        &["key", "list", "--json"],
    ] {
        let (code, stdout, stderr) = output(env.till().args(args));
        assert_eq!(code, 0, "{args:?}: {stderr}");
        assert!(
            stderr.contains("no ledger at") && stderr.contains("ledger.sqlite3 yet"),
            "{args:?}: {stderr}"
        );
        if args.contains(&"--json") {
            assert!(stdout.trim().starts_with('['), "{args:?}: {stdout}");
        }
        assert!(!data.exists(), "{args:?} made {}", data.display());
    }
    // Doctor says what is not there yet (a mistyped TILL_HOME got a data directory and an
    // all-ok).
    let (code, stdout, stderr) = output(env.till().args(["doctor"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("ok   data directory: none yet at")
            && stdout.contains("ok   ledger: none yet at"),
        "{stdout}"
    );
    assert!(!data.exists(), "doctor made {}", data.display());
    // Nor do commands that fail before they change anything: a store that cannot be opened,
    // a key that is not there to remove.
    let (code, _, stderr) = output(
        env.till()
            .env("TILL_STORE", "bogus")
            .args(["key", "create", "--scope", "openai"]),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        !data.exists(),
        "a failed key create made {}",
        data.display()
    );
    let (code, _, stderr) = output(env.till().args(["remove", "openai"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(!data.exists(), "a failed remove made {}", data.display());
    // A store named wrong is an error for a command that does not open it too, as a wrong
    // `store` in config.toml is.
    let (code, _, stderr) = output(env.till().env("TILL_STORE", "bogus").args(["list"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("is not a store"), "{stderr}");
    // What writes makes it as before.
    let (code, _, stderr) = output_with_stdin(
        env.till().args(["add", "openai", "--no-verify"]),
        "sk-test-new-home-0001",
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(env.path("data/ledger.sqlite3").exists());
    let (code, stdout, stderr) = output(env.till().args(["list", "--json"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("no ledger"), "{stderr}");
    assert!(stdout.contains("openai"), "{stdout}");
}

/// `till doctor | head -1`: a reader that has gone away ends the command quietly, exit 0, as
/// for every other command (it used to panic, exit 101).
#[test]
fn doctor_into_a_closed_pipe_exits_0_without_a_panic() {
    use std::os::fd::{FromRawFd as _, OwnedFd};
    let env = TestEnv::new();
    for args in [&["doctor"][..], &["list", "--json"][..]] {
        let mut fds = [0; 2];
        // SAFETY: pipe fills in two new descriptors; each is wrapped once, and owned from then.
        let (read, write) = unsafe {
            assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
            (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
        };
        // The reader is gone before till writes its first line.
        drop(read);
        let out = env
            .till()
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(write)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "till {args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "till {args:?}: {stderr}");
    }
}

/// `till add` names the provider a key looks like it belongs to, also when the target's own
/// shorter prefix matches too: OpenAI's and DeepSeek's `sk-` begins Anthropic's `sk-ant-` and
/// OpenRouter's `sk-or-` keys.
#[test]
fn add_warns_of_a_longer_prefix_even_when_the_targets_own_prefix_matches() {
    let env = TestEnv::new();
    // A compatible server of the user's, with no key shape of its own.
    env.config("[providers.localai]\nbase_url = \"http://127.0.0.1:9\"\napi = \"openai\"\n");
    let add = |provider: &str, key: &str| {
        // Each key in place of the one before.
        let (code, _, stderr) = output_with_stdin(
            env.till()
                .args(["add", provider, "--no-verify", "--replace"]),
            key,
        );
        assert_eq!(code, 0, "{stderr}");
        stderr
    };
    for (provider, key, other) in [
        ("openai", "sk-ant-api03-abc", "anthropic"),
        ("deepseek", "sk-ant-api03-abc", "anthropic"),
        ("openai", "sk-or-v1-abc", "openrouter"),
        ("deepseek", "sk-or-v1-abc", "openrouter"),
        ("anthropic", "AIzaSyabc", "gemini"),
        ("localai", "sk-ant-api03-abc", "anthropic"),
    ] {
        let stderr = add(provider, key);
        assert!(
            stderr.contains(&format!(
                "this key looks like one for {other}, not {provider}"
            )),
            "{provider} <- {key}: {stderr}"
        );
    }
    for (provider, key) in [
        ("openai", "sk-proj-abc"),
        ("deepseek", "sk-abc"),
        ("anthropic", "sk-ant-api03-abc"),
        ("openrouter", "sk-or-v1-abc"),
        // OpenAI's `sk-` is what any server may take: no warning for one without a shape.
        ("localai", "sk-abc123"),
    ] {
        let stderr = add(provider, key);
        assert!(
            !stderr.contains("looks like"),
            "{provider} <- {key}: {stderr}"
        );
    }
}

/// A password in a provider's `base_url` would be sent nowhere on purpose and shown in error
/// messages (a 502 names the URL); the config is refused, exit 2, without repeating it.
#[test]
fn a_base_url_with_a_password_is_refused_without_printing_it() {
    let env = TestEnv::new();
    env.config("[providers.creds]\nbase_url = \"http://admin:S3CRET@127.0.0.1:9\"\n");
    let (code, stdout, stderr) = output(env.till().args(["list"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("[providers.creds] base_url carries a user name or password"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: "), "{stderr}");
    assert!(stderr.contains("till add creds"), "{stderr}");
    assert!(!format!("{stdout}{stderr}").contains("S3CRET"), "{stderr}");
}

/// An account id that would not make a header value (or could add a header line) is refused.
#[test]
fn an_organization_or_project_that_is_not_an_id_is_refused() {
    let env = TestEnv::new();
    for (field, value) in [
        ("organization", "org-1\\r\\nX-Evil: 1"),
        ("project", "proj 1"),
        ("organization", ""),
    ] {
        env.config(&format!("[providers.openai]\n{field} = \"{value}\"\n"));
        let (code, _, stderr) = output(env.till().args(["list"]));
        assert_eq!(code, 2, "{field} {value:?}: {stderr}");
        assert!(
            stderr.contains(&format!("[providers.openai] {field} `")),
            "{stderr}"
        );
        assert!(stderr.contains("hint: "), "{stderr}");
    }
}

/// A config that does not load is doctor's one line (every later check needs it), and it
/// carries the fix the other commands print as their `hint:`.
#[test]
fn doctor_names_the_fix_for_a_config_it_cannot_load() {
    let env = TestEnv::new();
    env.config("[providers.creds]\nbase_url = \"http://admin:S3CRET@127.0.0.1:9\"\n");
    let (code, stdout, stderr) = output(env.till().args(["doctor"]));
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.starts_with("FAIL config: "), "{stdout}");
    assert!(
        stdout.contains("(hint: leave them out of base_url; the provider's key belongs in the keychain: till add creds)"),
        "{stdout}"
    );
}

/// A damaged ledger: `till doctor` said "ok root keys: none stored yet" beside a store that
/// held one. A `TILL_HOME` that is a file: every command said "Not a directory" without a fix.
#[test]
fn doctor_does_not_vouch_for_keys_it_cannot_check_and_a_file_home_has_a_hint() {
    let env = TestEnv::new();
    let (code, _, stderr) = output_with_stdin(
        env.till().args(["add", "openai", "--no-verify"]),
        "sk-test-damaged-ledger-01",
    );
    assert_eq!(code, 0, "{stderr}");
    std::fs::write(env.path("data/ledger.sqlite3"), vec![0x5a; 4096]).unwrap();
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(env.path(&format!("data/ledger.sqlite3{suffix}")));
    }
    let (code, stdout, _) = output(env.till().args(["doctor"]));
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("FAIL ledger: "), "{stdout}");
    assert!(!stdout.contains("none stored"), "{stdout}");
    assert!(
        stdout.contains("FAIL root keys: not checked: the ledger above cannot be read"),
        "{stdout}"
    );

    let file = env.path("a-file");
    std::fs::write(&file, "").unwrap();
    for args in [&["list"][..], &["doctor"]] {
        let (code, stdout, stderr) = output(env.till().env("TILL_HOME", &file).args(args));
        assert_eq!(code, 1, "{args:?}: {stderr}");
        let said = format!("{stdout}{stderr}");
        assert!(said.contains("is a file, not a directory"), "{said}");
        assert!(said.contains("point TILL_HOME at a directory"), "{said}");
    }
}

/// A ledger lost (or replaced) while the store keeps its keys: `till doctor` said "no root
/// keys stored" and passed. It now names the key the ledger does not list and both ways back,
/// and the first of them works.
#[test]
fn doctor_names_a_stored_key_the_ledger_does_not_list() {
    let env = TestEnv::new();
    let (code, _, stderr) = output_with_stdin(
        env.till().args(["add", "openai", "--no-verify"]),
        "sk-test-lost-ledger-0001",
    );
    assert_eq!(code, 0, "{stderr}");
    for entry in std::fs::read_dir(env.path("data")).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("ledger")
        {
            std::fs::remove_file(path).unwrap();
        }
    }
    let (code, stdout, _) = output(env.till().args(["doctor"]));
    assert_eq!(code, 1, "{stdout}");
    assert!(!stdout.contains("none stored"), "{stdout}");
    assert!(
        stdout.contains("FAIL openai key: ")
            && stdout.contains("is in the store but not in the ledger"),
        "{stdout}"
    );
    assert!(
        stdout.contains("`till add openai` with that key"),
        "{stdout}"
    );
    assert!(!stdout.contains("sk-test-lost"), "{stdout}");
    let (code, _, stderr) = output_with_stdin(
        env.till().args(["add", "openai", "--no-verify"]),
        "sk-test-lost-ledger-0001",
    );
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, _) = output(env.till().args(["doctor"]));
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("ok   openai key: present"), "{stdout}");
}

/// `till add` never replaces a different stored key by accident (not even with
/// `--no-verify`): exit 2, the store untouched, and a hint naming `till rotate` and
/// `--replace`. The same key again is fine; `--replace` replaces.
#[test]
fn add_refuses_to_replace_a_different_key_without_replace() {
    let env = TestEnv::new();
    let add = |args: &[&str], key: &str| output_with_stdin(env.till().args(args), key);
    let (code, _, stderr) = add(&["add", "openai", "--no-verify"], "sk-test-first");
    assert_eq!(code, 0, "{stderr}");
    let store = std::fs::read(env.path("data/secrets.age")).unwrap();
    let (_, listed, _) = output(env.till().args(["list", "--json"]));

    let (code, _, stderr) = add(&["add", "openai", "--no-verify"], "sk-test-second");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("is already stored"), "{stderr}");
    assert!(stderr.contains("nothing was changed"), "{stderr}");
    assert!(stderr.contains("hint: `till rotate openai`"), "{stderr}");
    assert!(stderr.contains("till add openai --replace"), "{stderr}");
    assert_eq!(std::fs::read(env.path("data/secrets.age")).unwrap(), store);
    assert_eq!(output(env.till().args(["list", "--json"])).1, listed);

    let (code, _, stderr) = add(&["add", "openai", "--no-verify"], "sk-test-first");
    assert_eq!(code, 0, "the same key again: {stderr}");
    assert!(
        stderr.contains("was already in the file store; nothing changed"),
        "{stderr}"
    );

    // The first key was stored long ago; the one that replaces it is stored now, and
    // `till list` says when the key it holds was stored (it kept the first key's time beside
    // an age that restarted).
    rusqlite::Connection::open(env.path("data/ledger.sqlite3"))
        .unwrap()
        .execute("UPDATE root_keys SET added_at = 1000000000", [])
        .unwrap();
    let (code, _, stderr) = add(
        &["add", "openai", "--no-verify", "--replace"],
        "sk-test-second",
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("replacing the openai key"), "{stderr}");
    assert_ne!(output(env.till().args(["list", "--json"])).1, listed);
    let (_, table, _) = output(env.till().args(["list"]));
    assert!(
        table.starts_with("PROVIDER     KEY        STORED"),
        "{table}"
    );
    assert!(!table.contains("2001-09-09"), "{table}");

    let (code, _, stderr) = add(&["add", "openai", "--admin", "--no-verify"], "sk-admin-1");
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = add(&["add", "openai", "--admin", "--no-verify"], "sk-admin-2");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--admin --replace"), "{stderr}");
}

/// `[keys] default_ttl` longer than `max_ttl` is a config error (doctor finds it), named with
/// both values; a `--ttl` past the ceiling names the flag and the setting.
#[test]
fn a_default_ttl_past_max_ttl_is_a_config_error() {
    let env = TestEnv::new();
    env.config("[keys]\ndefault_ttl = \"2h\"\nmax_ttl = \"1h\"\n");
    let says = "config.toml: [keys] default_ttl = \"2h\" is longer than max_ttl = \"1h\"";
    let (code, stdout, _) = output(env.till().args(["doctor"]));
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains(says), "{stdout}");
    let (code, _, stderr) = output(env.till().args(["key", "create", "--scope", "openai"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(says), "{stderr}");
    assert!(!stderr.contains('?'), "{stderr}");

    env.config("[keys]\nmax_ttl = \"1h\"\n");
    let (code, _, stderr) = output(
        env.till()
            .args(["key", "create", "--scope", "openai", "--ttl", "2h"]),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--ttl 2h is longer than the ceiling, [keys] max_ttl = \"1h\""),
        "{stderr}"
    );
}

/// Profiles are checked with the config (doctor finds a bad one), and the error names the
/// profile and its setting, not a flag nobody gave.
#[test]
fn profiles_are_checked_with_the_config() {
    let env = TestEnv::new();
    for (profile, says) in [
        (
            "budget = \"abc\"",
            "[profiles.p] budget: `abc`: give a unit",
        ),
        (
            "scope = [\"nosuch/m\"]",
            "[profiles.p] scope: unknown provider `nosuch`",
        ),
        (
            "rpm = 0",
            "[profiles.p] rpm: `0`: a key allowed 0 can make no request",
        ),
        (
            "budget = \"0usd\"",
            "[profiles.p] budget: `0usd`: a key with a budget of 0",
        ),
        ("ttl = \"soon\"", "[profiles.p] ttl: `soon`"),
        (
            "ttl = \"40d\"",
            "[profiles.p] ttl = \"40d\" is longer than [keys] max_ttl = \"30d\"",
        ),
        ("endpoints = [\"nope\"]", "[profiles.p] endpoints: "),
    ] {
        env.config(&format!("[profiles.p]\n{profile}\n"));
        let (code, stdout, _) = output(env.till().args(["doctor"]));
        assert_eq!(code, 1, "{profile}: {stdout}");
        assert!(stdout.contains(says), "{profile}: {stdout}");
        let (code, _, stderr) = output(env.till().args(["run", "-p", "p", "--", "true"]));
        assert_eq!(code, 2, "{profile}: {stderr}");
        assert!(stderr.contains(says), "{profile}: {stderr}");
        assert!(
            !stderr.contains("--budget") && !stderr.contains("--rpm"),
            "{profile}: {stderr}"
        );
    }
}

/// Limits of 0 make keys that can never be used; they are refused like
/// `--max-output-tokens 0`, by every command that makes a key.
#[test]
fn zero_limits_are_refused() {
    let env = TestEnv::new();
    let (code, _, stderr) = output_with_stdin(
        env.till().args(["add", "openai", "--no-verify"]),
        "sk-test-1",
    );
    assert_eq!(code, 0, "{stderr}");
    let (code, parent, stderr) = output(env.till().args(["key", "create"]));
    assert_eq!(code, 0, "{stderr}");
    for flag in [
        &["--rpm", "0"][..],
        &["--tpm", "0"][..],
        &["--max-requests", "0"][..],
        &["--budget", "0usd"][..],
        &["--budget", "0tok"][..],
        &["--budget", "$0.00"][..],
        &["--max-output-tokens", "0"][..],
    ] {
        for cmd in [
            &["key", "create"][..],
            &["run"][..],
            &["key", "attenuate"][..],
        ] {
            let mut c = env.till();
            c.args(cmd).args(flag);
            if cmd == ["run"] {
                c.args(["--", "true"]);
            }
            // Only attenuate reads the parent key from stdin.
            let (code, stdout, stderr) = if cmd == ["key", "attenuate"] {
                output_with_stdin(&mut c, parent.trim())
            } else {
                output(&mut c)
            };
            assert_eq!(code, 2, "{cmd:?} {flag:?}: {stderr}");
            assert!(stdout.is_empty(), "{cmd:?} {flag:?}: {stdout}");
            assert!(stderr.contains("hint: "), "{cmd:?} {flag:?}: {stderr}");
        }
    }
}

/// `till log -n` past what the ledger can take is a usage error from the parser (exit 2),
/// not a database error.
#[test]
fn log_limit_past_the_ledgers_range_is_a_usage_error() {
    let env = TestEnv::new();
    let (code, _, stderr) = output(env.till().args(["log", "-n", "9223372036854775808"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--limit"), "{stderr}");
    assert!(!stderr.contains("datatype mismatch"), "{stderr}");
    let (code, _, stderr) = output(env.till().args(["log", "-n", "9223372036854775807"]));
    assert_eq!(code, 0, "{stderr}");
}

/// A temp file of the file store left by a till killed mid-write holds an encrypted copy of
/// the keys of then: doctor names it, and the next store write removes it.
#[test]
fn stale_store_temp_files_are_reported_and_removed() {
    let env = TestEnv::new();
    let add = |provider: &str| {
        let (code, _, stderr) = output_with_stdin(
            env.till().args(["add", provider, "--no-verify"]),
            "sk-test-1",
        );
        assert_eq!(code, 0, "{stderr}");
    };
    add("openai");
    let stale = env.path("data/.secrets.age.tmp-0123456789abcdef");
    std::fs::copy(env.path("data/secrets.age"), &stale).unwrap();
    let (code, stdout, _) = output(env.till().args(["doctor"]));
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("FAIL store leftovers: "), "{stdout}");
    assert!(
        stdout.contains(".secrets.age.tmp-0123456789abcdef"),
        "{stdout}"
    );
    assert!(stdout.contains(": rm -- '"), "{stdout}");
    // Names made to read as a report line or to glob in a pasted command: escaped, quoted.
    let forged = env.path("data/.secrets.age.tmp-x\nok   FAKE: all good");
    let globbed = env.path("data/.secrets.age.tmp- *");
    std::fs::copy(&stale, &forged).unwrap();
    let (_, stdout, _) = output(env.till().args(["doctor"]));
    assert!(!stdout.contains("\nok   FAKE"), "{stdout}");
    assert!(
        !stdout.contains("rm --"),
        "a name that needed escaping gets no command: {stdout}"
    );
    std::fs::remove_file(&forged).unwrap();
    std::fs::copy(&stale, &globbed).unwrap();
    let (_, stdout, _) = output(env.till().args(["doctor"]));
    assert!(
        stdout.contains("tmp- *'"),
        "the name is quoted whole: {stdout}"
    );
    assert!(!stdout.contains("tmp- * "), "{stdout}");
    add("anthropic");
    assert!(!stale.exists() && !globbed.exists());
    let (code, stdout, _) = output(env.till().args(["doctor"]));
    assert_eq!(code, 0, "{stdout}");
}

/// Names the user typed come back in errors with their control characters escaped: a name
/// pasted from elsewhere cannot recolour, retitle or clear the terminal.
#[test]
fn escapes_in_typed_names_are_not_echoed_raw() {
    let env = TestEnv::new();
    for args in [
        &["add", "op\x1b[31mred", "--no-verify"][..],
        &["key", "create", "--name", "evil\x1b]0;pwned\x07\x1b[2J"][..],
        &["key", "create", "--scope", "openai/gpt\x1b[31m"][..],
        &["run", "-p", "x\x1b[2J", "--", "true"][..],
    ] {
        let (code, _, stderr) = output(env.till().args(args));
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            !stderr.contains('\x1b') && !stderr.contains('\x07'),
            "{args:?}: {stderr:?}"
        );
        assert!(stderr.contains("\\u{1b}"), "{args:?}: {stderr:?}");
    }
}

/// doctor's config line: a missing file is said to be missing (the defaults apply), a
/// failing one carries no hint that points back at doctor, and a table given twice is called
/// a table.
#[test]
fn doctor_words_the_config_line() {
    let env = TestEnv::new();
    let (code, stdout, _) = output(env.till().args(["doctor"]));
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("ok   config: none at "), "{stdout}");
    assert!(stdout.contains("the defaults apply"), "{stdout}");

    env.config("[keys]\nmax_ttl = \"1h\"\n[keys]\n");
    let (code, stdout, _) = output(env.till().args(["doctor"]));
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("duplicate table `[keys]`"), "{stdout}");
    assert!(!stdout.contains("till doctor"), "{stdout}");
    let (code, _, stderr) = output(env.till().args(["list"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("duplicate table `[keys]`"), "{stderr}");
    assert!(stderr.contains("hint: fix the config file"), "{stderr}");

    env.config("[keys]\nmax_ttl = \"1h\"\nmax_ttl = \"2h\"\n");
    let (_, _, stderr) = output(env.till().args(["list"]));
    assert!(stderr.contains("duplicate key"), "{stderr}");
}

/// Messages call things what they are: a key id given as a name, a key with characters
/// added, a control character in a pasted key.
#[test]
fn messages_name_what_is_wrong() {
    let env = TestEnv::new();
    let (code, _, stderr) = output_with_stdin(
        env.till().args(["add", "openai", "--no-verify"]),
        "sk-ctrl\x01abc",
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("control character"), "{stderr}");
    assert!(!stderr.contains("whitespace"), "{stderr}");
    let (code, _, stderr) = output_with_stdin(
        env.till().args(["add", "openai", "--no-verify"]),
        "sk-test-1",
    );
    assert_eq!(code, 0, "{stderr}");
    let (code, key, stderr) = output(env.till().args(["key", "create", "--json"]));
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&key).unwrap();
    let id = v["id"].as_str().unwrap_or_else(|| panic!("{v}"));
    let (code, _, stderr) = output(env.till().args(["key", "create", "--name", &id[..12]]));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("is the start of an existing key's id"),
        "{stderr}"
    );
    let text = v["key"].as_str().unwrap();
    let (code, _, stderr) = output(env.till().args(["key", "inspect", &format!("{text}x")]));
    assert_eq!(code, 2, "{stderr}");
    assert!(!stderr.contains("truncated"), "{stderr}");
}

/// A provider name with a terminal escape in it was accepted from config.toml, stored keys
/// under, and printed raw by `till list`, `till status` and `till doctor`: the config now
/// refuses it (exit 2, naming the table), and a name already in the ledger is shown escaped.
#[test]
fn a_provider_name_with_escapes_is_refused_and_never_printed_raw() {
    let env = TestEnv::new();
    env.config("[providers.\"x\\u001b]0;pwned\\u0007\"]\nbase_url = \"http://127.0.0.1:9\"\n");
    let (code, stdout, stderr) = output(env.till().args(["list"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("[providers.\"x\\u{1b}]0;pwned\\u{7}\"] is not a provider name"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: "), "{stderr}");
    assert!(!format!("{stdout}{stderr}").contains('\u{1b}'), "{stderr}");
    let (code, stdout, _) = output(env.till().args(["doctor"]));
    assert_eq!(code, 1, "{stdout}");

    env.config("");
    let (code, _, stderr) = output_with_stdin(
        env.till().args(["add", "openai", "--no-verify"]),
        "sk-test-escapes",
    );
    assert_eq!(code, 0, "{stderr}");
    let db = rusqlite::Connection::open(env.path("data/ledger.sqlite3")).unwrap();
    db.execute(
        "UPDATE root_keys SET provider = 'x' || char(27) || ']0;pwned' || char(7)",
        [],
    )
    .unwrap();
    for args in [&["list"][..], &["status"][..], &["doctor"][..]] {
        let (_, stdout, stderr) = output(env.till().args(args));
        assert!(
            stdout.contains("x\\u{1b}]0;pwned\\u{7}"),
            "{args:?}: {stdout}"
        );
        assert!(
            !format!("{stdout}{stderr}").contains(['\u{1b}', '\u{7}']),
            "{args:?}: {stdout}{stderr}"
        );
    }
}

/// A key's name and scope written into the ledger by another program (the ledger is a file of
/// yours) came out of `till key show` and `till key list` raw: a title set, a clipboard
/// written. Every text the ledger holds is shown escaped.
#[test]
fn a_keys_texts_in_the_ledger_are_never_printed_raw() {
    let env = TestEnv::new();
    let (code, _, stderr) = output_with_stdin(
        env.till().args(["add", "openai", "--no-verify"]),
        "sk-test-escapes",
    );
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = output(env.till().args([
        "key", "create", "--name", "plain", "--scope", "openai", "--ttl", "1h",
    ]));
    assert_eq!(code, 0, "{stderr}");
    let db = rusqlite::Connection::open(env.path("data/ledger.sqlite3")).unwrap();
    db.execute(
        "UPDATE keys SET name = 'n' || char(27) || ']0;title' || char(7), \
         scope = 's' || char(27) || ']52;c;Zm9v' || char(7) || char(10) || 'forged row'",
        [],
    )
    .unwrap();
    let id: String = db
        .query_row("SELECT substr(binding, 1, 12) FROM keys", [], |r| r.get(0))
        .unwrap();
    for args in [&["key", "list"][..], &["key", "show", &id][..]] {
        let (code, stdout, stderr) = output(env.till().args(args));
        assert_eq!(code, 0, "{args:?}: {stderr}");
        assert!(
            stdout.contains("]52;c;Zm9v\\u{7}\\u{a}forged row"),
            "{args:?}: {stdout}"
        );
        assert!(
            !format!("{stdout}{stderr}").contains(['\u{1b}', '\u{7}']),
            "{args:?}: {stdout}{stderr}"
        );
    }
    // A root key's fingerprint, in `till list` and `till status`.
    db.execute(
        "UPDATE root_keys SET fingerprint = 'f' || char(27) || ']0;title' || char(7)",
        [],
    )
    .unwrap();
    for args in [&["list"][..], &["status"][..]] {
        let (_, stdout, stderr) = output(env.till().args(args));
        assert!(
            stdout.contains("f\\u{1b}]0;title\\u{7}"),
            "{args:?}: {stdout}"
        );
        assert!(
            !format!("{stdout}{stderr}").contains(['\u{1b}', '\u{7}']),
            "{args:?}: {stdout}{stderr}"
        );
    }
}

/// A key with a letter outside ASCII, which no header can carry, was stored and went upstream
/// as no key at all: it is refused, nothing stored (whitespace and control characters were
/// refused already).
#[test]
fn a_key_no_header_can_carry_is_refused() {
    let env = TestEnv::new();
    for key in [
        "sk-test-caf\u{e9}-0123456789",
        "sk-test-\u{65e5}\u{672c}-0123456789",
    ] {
        let (code, _, stderr) =
            output_with_stdin(env.till().args(["add", "openai", "--no-verify"]), key);
        assert_eq!(code, 2, "{key:?}: {stderr}");
        assert!(stderr.contains("no HTTP header can carry"), "{stderr}");
        assert!(stderr.contains("hint: "), "{stderr}");
    }
    let (_, stdout, _) = output(env.till().args(["list", "--json"]));
    assert_eq!(stdout.trim(), "[]", "{stdout}");
}

/// A ledger that refuses the key's row leaves the store as it was: `till add --replace` put
/// the replaced key back no more (it deleted the new one and left nothing), and a key already
/// in the store, which doctor says to add again when the ledger lost its row, was deleted.
#[test]
fn add_puts_the_store_back_when_the_ledger_refuses_the_key() {
    let env = TestEnv::new();
    let add = |args: &[&str], key: &str| output_with_stdin(env.till().args(args), key);
    let (code, _, stderr) = add(&["add", "openai", "--no-verify"], "sk-test-first-key-0001");
    assert_eq!(code, 0, "{stderr}");
    let (_, listed, _) = output(env.till().args(["list", "--json"]));
    let first: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let first_fp = first[0]["fingerprint"].as_str().unwrap().to_string();
    let ledger = rusqlite::Connection::open(env.path("data/ledger.sqlite3")).unwrap();
    let refuse = |on: bool| {
        let sql = if on {
            "CREATE TRIGGER refuse_ins BEFORE INSERT ON root_keys BEGIN SELECT RAISE(FAIL, 'refused'); END;
             CREATE TRIGGER refuse_upd BEFORE UPDATE ON root_keys BEGIN SELECT RAISE(FAIL, 'refused'); END;"
        } else {
            "DROP TRIGGER refuse_ins; DROP TRIGGER refuse_upd;"
        };
        ledger.execute_batch(sql).unwrap();
    };

    refuse(true);
    let (code, _, stderr) = add(
        &["add", "openai", "--no-verify", "--replace"],
        "sk-test-second-key-0002",
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("the store was left as it was"), "{stderr}");
    refuse(false);
    let (code, stdout, _) = output(env.till().args(["doctor"]));
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains(&format!("ok   openai key: present ({first_fp})")),
        "{stdout}"
    );

    // The ledger lost the key's row; adding the same key again while the ledger refuses it
    // keeps the key in the store.
    ledger.execute("DELETE FROM root_keys", []).unwrap();
    refuse(true);
    let (code, _, stderr) = add(&["add", "openai", "--no-verify"], "sk-test-first-key-0001");
    assert_eq!(code, 1, "{stderr}");
    refuse(false);
    let (_, stdout, _) = output(env.till().args(["doctor"]));
    assert!(
        stdout.contains("is in the store but not in the ledger"),
        "{stdout}"
    );
    let (code, _, stderr) = add(&["add", "openai", "--no-verify"], "sk-test-first-key-0001");
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("the ledger lists it again"), "{stderr}");
}

/// A mistyped command or argument reads as till's other errors do (`till: error: …`, exit 2),
/// clap's tip and usage after it; `till` alone shows its help, unprefixed.
#[test]
fn argument_errors_read_as_tills_own() {
    let env = TestEnv::new();
    let (code, _, stderr) = output(env.till().arg("bogus"));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.starts_with("till: error: unrecognized subcommand 'bogus'"),
        "{stderr}"
    );
    let (code, _, stderr) = output(env.till().args(["remove", "--yes"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.starts_with("till: error: unexpected argument '--yes' found"),
        "{stderr}"
    );
    let (code, _, stderr) = output(&mut env.till());
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.starts_with("Scoped, short-lived API keys"),
        "{stderr}"
    );
}

/// `till doctor --json`: the same checks as a list a script can read, with the same exit code
/// (1 when one fails), and no key material in it.
#[test]
fn doctor_json_lists_the_checks_with_the_same_exit_code() {
    let env = TestEnv::new();
    let (code, _, stderr) = output_with_stdin(
        env.till().args(["add", "openai", "--no-verify"]),
        "sk-test-doctor-json-0001",
    );
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = output(env.till().args(["doctor", "--json"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let checks = v.as_array().unwrap();
    let names: Vec<&str> = checks
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "config",
            "data directory",
            "ledger",
            "secrets store",
            "openai key",
            "mint key"
        ],
        "{stdout}"
    );
    assert!(checks.iter().all(|c| c["ok"] == true), "{stdout}");
    assert!(!stdout.contains("sk-test-doctor"), "{stdout}");
    // A config that does not read fails its check, and the command, as without --json.
    env.config("[proxy\n");
    let (code, stdout, stderr) = output(env.till().args(["doctor", "--json"]));
    assert_eq!(code, 1, "{stdout}{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v[0]["check"], "config", "{stdout}");
    assert_eq!(v[0]["ok"], false, "{stdout}");
    assert!(!v[0]["detail"].as_str().unwrap().is_empty(), "{stdout}");
}

/// An error that holds something pasted at length (a 100 KB provider name) is cut in the
/// middle, not written back whole to the terminal.
#[test]
fn a_long_input_is_not_written_back_whole() {
    let env = TestEnv::new();
    let name = "a".repeat(100_000);
    let (code, _, stderr) = output(env.till().args(["add", &name]));
    assert_eq!(code, 2, "{}", &stderr[..200.min(stderr.len())]);
    assert!(stderr.len() < 8_192, "{} bytes", stderr.len());
    assert!(stderr.contains("bytes left out"), "{stderr}");
}
