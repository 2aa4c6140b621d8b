//! What people read: help, errors with their hints, and empty states, under snapshot so that a
//! change of wording is reviewed (`cargo insta review`), never accidental.

use crate::support::{TestEnv, output};

/// Exit code, stdout and stderr of `till ARGS…` in a fresh home, with the home's path made
/// stable.
fn transcript(env: &TestEnv, args: &[&str]) -> String {
    let (code, stdout, stderr) = output(env.till().args(args).env("COLUMNS", "100"));
    let home = env.home().display().to_string();
    format!("exit: {code}\n--- stdout\n{stdout}--- stderr\n{stderr}").replace(&home, "[HOME]")
}

#[test]
fn help_texts() {
    let env = TestEnv::new();
    insta::assert_snapshot!("help", transcript(&env, &["--help"]));
    insta::assert_snapshot!("run_help", transcript(&env, &["run", "--help"]));
    insta::assert_snapshot!(
        "key_create_help",
        transcript(&env, &["key", "create", "--help"])
    );
    insta::assert_snapshot!("serve_help", transcript(&env, &["serve", "--help"]));
}

#[test]
fn errors_say_what_to_do() {
    let env = TestEnv::new();
    insta::assert_snapshot!(
        "net_without_sandbox",
        transcript(&env, &["run", "--net", "proxy", "--", "true"])
    );
    insta::assert_snapshot!(
        "unknown_key",
        transcript(&env, &["key", "show", "nosuchkey"])
    );
    insta::assert_snapshot!(
        "bad_scope",
        transcript(&env, &["key", "create", "--scope", "openai/gpt 4"])
    );
    insta::assert_snapshot!("run_without_command", transcript(&env, &["run"]));
}

#[test]
fn a_taken_port_names_the_fix() {
    let env = TestEnv::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let listen = format!("127.0.0.1:{port}");
    insta::assert_snapshot!(
        "serve_port_in_use",
        transcript(&env, &["serve", "--listen", &listen]).replace(&port, "[PORT]")
    );
}

#[test]
fn empty_states() {
    let env = TestEnv::new();
    insta::assert_snapshot!("status_empty", transcript(&env, &["status"]));
    insta::assert_snapshot!("key_list_empty", transcript(&env, &["key", "list"]));
    insta::assert_snapshot!("usage_empty", transcript(&env, &["usage"]));
}
