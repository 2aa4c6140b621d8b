//! Every environment variable till reads or sets, in one place (clap's `env = …` refers here).

/// Names of environment variables. Grouped as associated constants so a grep finds every use.
pub struct EnvVars;

impl EnvVars {
    /// Puts config, data and the file store under one directory (tests use a temp dir).
    pub const TILL_HOME: &'static str = "TILL_HOME";
    /// Selects the secrets store: `keychain` or `file` (overrides `store` in config.toml).
    pub const TILL_STORE: &'static str = "TILL_STORE";
    /// Unlocks the file store without a prompt. A secret: scrubbed from agents' environments.
    pub const TILL_PASSPHRASE: &'static str = "TILL_PASSPHRASE";
    /// Upper bound for a single keychain call, as a duration (`10s`, `500ms`).
    pub const TILL_KEYCHAIN_TIMEOUT: &'static str = "TILL_KEYCHAIN_TIMEOUT";
    /// The keychain service name till's entries are filed under (default `till`).
    pub const TILL_KEYCHAIN_SERVICE: &'static str = "TILL_KEYCHAIN_SERVICE";
    /// Set by `till run` for the agent: the proxy's base URL (`http://127.0.0.1:PORT`).
    pub const TILL_PROXY_URL: &'static str = "TILL_PROXY_URL";
    /// Set by `till run` for the agent: the child key the agent holds.
    pub const TILL_KEY: &'static str = "TILL_KEY";
    /// Set by `till run --sandbox` for the agent: the sandbox's network (`proxy` or `open`), so
    /// a nested `till run` knows it is already inside one.
    pub const TILL_SANDBOX: &'static str = "TILL_SANDBOX";
    /// `TILL_COMPLETE=keys|providers|stored till` (no arguments) prints the active keys' names,
    /// the providers, or those with a stored key, one a line: what the completion scripts
    /// offer. A variable rather than a command, which clap's generators would list among the
    /// commands.
    pub const TILL_COMPLETE: &'static str = "TILL_COMPLETE";
    /// Test hook, read by debug builds only: makes `till run --sandbox` act as if the kernel
    /// lacked a mechanism (`landlock`, `userns`), to check that it refuses to start.
    pub const TILL_TEST_SANDBOX_MISSING: &'static str = "TILL_TEST_SANDBOX_MISSING";
    /// Test hook, read by debug builds only: makes one step of `till rotate` fail (`find`,
    /// `create`, `verify`, `store`, `delete`, `deactivate`, `retire`). The command turns it into
    /// [`crate::rotation::Rotator::fail_at`]; the library's own tests use that seam directly.
    /// Kept for the integration test that drives the binary, since the mock provider has no
    /// way to refuse deleting a key.
    pub const TILL_TEST_FAIL_STEP: &'static str = "TILL_TEST_FAIL_STEP";
    /// Gemini CLI's home directory (where `.gemini/settings.json` lives), read by
    /// `till setup gemini`.
    pub const GEMINI_CLI_HOME: &'static str = "GEMINI_CLI_HOME";
    /// Disables colour (<https://no-color.org>).
    pub const NO_COLOR: &'static str = "NO_COLOR";
}
