//! `config.toml`: where it lives, its schema, defaults and environment overrides.
//!
//! Unknown keys and bad values are errors that name the file, line and column; nothing in this
//! file is a secret (root keys live only in the secrets store).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

use crate::env::EnvVars;
use crate::error::UserError;
use crate::secrets::{StoreChoice, StoreOptions};

/// The sandbox's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Net {
    /// The network as it is outside the sandbox.
    Open,
    /// Only this run's proxy.
    Proxy,
}

impl Net {
    pub fn as_str(self) -> &'static str {
        match self {
            Net::Open => "open",
            Net::Proxy => "proxy",
        }
    }
}

/// Where till keeps its files. Everything sits under `TILL_HOME` when it is set.
#[derive(Debug, Clone)]
pub struct Paths {
    pub config_file: PathBuf,
    pub data_dir: PathBuf,
}

impl Paths {
    /// `TILL_HOME` when set, otherwise the platform's config and data directories.
    pub fn resolve() -> anyhow::Result<Self> {
        if let Some(home) = std::env::var_os(EnvVars::TILL_HOME).filter(|v| !v.is_empty()) {
            let home = PathBuf::from(home);
            return Ok(Self {
                config_file: home.join("config.toml"),
                data_dir: home.join("data"),
            });
        }
        let dirs = directories::ProjectDirs::from("", "", "till").ok_or_else(|| {
            UserError::runtime("cannot find a home directory for till's files")
                .hint(format!("set {}=DIR to choose one", EnvVars::TILL_HOME))
        })?;
        Ok(Self {
            config_file: dirs.config_dir().join("config.toml"),
            data_dir: dirs.data_dir().to_path_buf(),
        })
    }

    /// The age-encrypted file of the `file` secrets store.
    pub fn store_file(&self) -> PathBuf {
        self.data_dir.join("secrets.age")
    }

    /// The SQLite ledger.
    pub fn ledger_file(&self) -> PathBuf {
        self.data_dir.join("ledger.sqlite3")
    }

    /// Where running proxies keep their owner locks ([`crate::ledger::owner`]).
    pub fn owners_dir(&self) -> PathBuf {
        self.data_dir.join("owners")
    }

    /// Creates the data directory with mode 0700 (on unix) if it does not exist.
    pub fn ensure_data_dir(&self) -> anyhow::Result<()> {
        create_private_dir(&self.data_dir)
    }
}

/// Replaces `path` with `bytes` so that a crash leaves the old file or the new one, never part
/// of either: a new temp file beside it (`.NAME.tmp-RANDOM`, with the old file's permissions,
/// or mode 0600 for a new file), written and fsynced, renamed over `path`, then the directory
/// fsynced. The temp file is removed when a step fails.
///
/// Once the rename is done the new file is what every reader finds: a directory that then
/// fails to sync is warned of (the change may not outlive a crash), not an error, since a
/// caller told "not written" would act on a file that was (a rotation would delete at the
/// provider the key the store now holds).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically_with(path, bytes, |dir| {
        #[cfg(unix)]
        std::fs::File::open(dir)?.sync_all()?;
        #[cfg(not(unix))]
        let _ = dir;
        Ok(())
    })
}

/// [`write_atomically`] with `sync_dir` for the directory's sync.
fn write_atomically_with(
    path: &Path,
    bytes: &[u8],
    sync_dir: impl FnOnce(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let (tmp_path, mut tmp) = loop {
        let suffix =
            getrandom::u64().map_err(|e| std::io::Error::other(format!("no randomness: {e}")))?;
        let tmp_path = dir.join(format!(".{name}.tmp-{suffix:016x}"));
        match options.open(&tmp_path) {
            Ok(file) => break (tmp_path, file),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    };
    let written = (|| {
        if let Ok(meta) = std::fs::metadata(path) {
            tmp.set_permissions(meta.permissions())?;
        }
        tmp.write_all(bytes)?;
        tmp.sync_all()?;
        std::fs::rename(&tmp_path, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp_path);
        return Err(e);
    }
    if let Err(e) = sync_dir(dir) {
        crate::output::warn(&format!(
            "wrote {}, but could not flush its directory to disk ({e}): the change may not survive a crash of the machine",
            path.display()
        ));
    }
    Ok(())
}

/// Creates `dir` and its parents; the last component gets mode 0700 on unix.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("cannot make {} private", dir.display()))?;
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(())
}

/// A duration written as text in config (`"30m"`, `"90d"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        crate::time::parse_duration(&text)
            .map(HumanDuration)
            .map_err(serde::de::Error::custom)
    }
}

/// The fix for a config file that does not parse.
pub const CONFIG_HINT: &str = "fix the config file; `till doctor` checks it";

/// The most `[proxy] max_connections` may be. Each connection holds a socket and the
/// process's file descriptors run out long before (the usual hard limit is 1,048,576, the
/// soft one 1,024), and the semaphore that counts the slots panics past 2^61 permits: a larger
/// value is a typo, refused at load rather than killing the proxy while the agent runs on.
pub const MAX_CONNECTIONS: usize = 65_536;

/// The whole of `config.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `auto` (keychain, or an error naming the fix), `keychain` or `file`.
    #[serde(default = "default_store")]
    pub store: StoreChoice,
    /// Upper bound for one keychain call.
    #[serde(default = "default_keychain_timeout")]
    pub keychain_timeout: HumanDuration,
    #[serde(default)]
    pub keys: KeysConfig,
    #[serde(default)]
    pub proxy: ProxyConfig,
    #[serde(default)]
    pub ledger: LedgerConfig,
    #[serde(default)]
    pub rotation: RotationConfig,
    /// Extra providers, or overrides of built-in ones (`base_url` most often).
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderOverride>,
    /// Per-model prices in USD per million tokens, keyed `"provider/model"`.
    #[serde(default)]
    pub prices: BTreeMap<String, crate::pricing::Price>,
    /// Named sets of scope flags for `till run -p NAME`.
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
    #[serde(default)]
    pub run: RunConfig,
    #[serde(default)]
    pub sandbox: SandboxConfig,
}

fn default_store() -> StoreChoice {
    StoreChoice::Auto
}

fn default_keychain_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

impl Default for Config {
    fn default() -> Self {
        toml::from_str("").expect("the empty config is valid")
    }
}

/// `[keys]`: defaults and ceilings for child keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// TTL of `till key create` when `--ttl` is not given.
    pub default_ttl: HumanDuration,
    /// The longest TTL any key may be given.
    pub max_ttl: HumanDuration,
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            default_ttl: HumanDuration(Duration::from_secs(3_600)),
            max_ttl: HumanDuration(Duration::from_secs(30 * 86_400)),
        }
    }
}

/// `[proxy]`: limits of the loopback proxy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Largest request body the proxy reads, in bytes (413 beyond).
    pub max_body_bytes: u64,
    /// How long to wait for an upstream's response headers.
    pub upstream_timeout: HumanDuration,
    /// How long requests in flight may go on after SIGTERM or Ctrl-C before they are cut off.
    pub shutdown_grace: HumanDuration,
    /// Connections served at once; more wait until one closes.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, and may keep an idle
    /// keep-alive connection open between requests.
    pub header_timeout: HumanDuration,
    /// How long a client may take to send a request body, and may go without reading any of
    /// its answer.
    pub body_timeout: HumanDuration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 32 * 1024 * 1024,
            upstream_timeout: HumanDuration(Duration::from_secs(600)),
            shutdown_grace: HumanDuration(Duration::from_secs(10)),
            max_connections: 1024,
            header_timeout: HumanDuration(Duration::from_secs(30)),
            body_timeout: HumanDuration(Duration::from_secs(60)),
        }
    }
}

/// `[ledger]`: how long request rows are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    pub retention: HumanDuration,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            retention: HumanDuration(Duration::from_secs(90 * 86_400)),
        }
    }
}

/// `[rotation]`: the age after which root keys are due for rotation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RotationConfig {
    pub max_age: Option<HumanDuration>,
}

/// `[providers.NAME]`: every field optional for a built-in provider; a new provider needs
/// `base_url` (it is then treated as OpenAI-compatible unless `api` says otherwise).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderOverride {
    pub base_url: Option<String>,
    pub api: Option<crate::providers::ApiFamily>,
    pub key_env: Option<Vec<String>>,
    pub base_url_env: Option<Vec<String>>,
    pub key_prefix: Option<String>,
    pub verify_path: Option<String>,
    /// The project whose keys `till rotate` manages with the admin key (OpenAI: `proj_…`).
    pub admin_project: Option<String>,
    /// The organization and project the root key acts for (`OpenAI-Organization`,
    /// `OpenAI-Project` on every request); an agent's own are removed.
    pub organization: Option<String>,
    pub project: Option<String>,
    /// The upstream reads requests as OpenAI's own API does (Azure OpenAI, or another name for
    /// OpenAI): chat ceilings in `max_completion_tokens`, `metadata` as labels. Default: true
    /// for `openai`, false for every other provider.
    pub openai_itself: Option<bool>,
}

/// `[run]`: defaults of `till run`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Run every agent in the sandbox (`--no-sandbox` turns it off for one run).
    pub sandbox: bool,
}

/// `[sandbox]`: what `till run --sandbox` hides and lets the agent write.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// The network when `--net` is not given.
    pub net: Net,
    /// Paths hidden from the agent (absolute or `~/…`), on top of the built-in list.
    pub deny: Vec<String>,
    /// Whether the built-in list of credential paths is hidden too.
    pub default_deny: bool,
    /// Paths the agent may write besides the working directory and its private /tmp.
    pub writable: Vec<String>,
    /// Lets the agent write the working directory's `.git/hooks` and `.git/config`.
    pub writable_git_hooks: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            net: Net::Open,
            deny: Vec::new(),
            default_deny: true,
            writable: Vec::new(),
            writable_git_hooks: false,
        }
    }
}

/// `[profiles.NAME]`: what `till run -p NAME` uses unless flags say otherwise.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    #[serde(default)]
    pub scope: Vec<String>,
    pub endpoints: Option<Vec<String>>,
    pub budget: Option<String>,
    pub ttl: Option<String>,
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    pub max_requests: Option<u64>,
    pub max_output_tokens: Option<u64>,
    /// Run the agent in the sandbox (`till run --sandbox`).
    pub sandbox: Option<bool>,
    /// The sandbox's network (`till run --net`).
    pub net: Option<Net>,
}

impl Config {
    /// Reads `path`; a missing file is the default config.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            // A config directory that is a file (`TILL_HOME` pointing at one) makes every
            // command fail here first.
            Err(e)
                if path
                    .parent()
                    .is_some_and(|dir| dir.exists() && !dir.is_dir()) =>
            {
                let dir = path.parent().unwrap_or(path);
                return Err(UserError::runtime(format!(
                    "cannot read {}: {} is a file, not a directory ({e})",
                    path.display(),
                    dir.display()
                ))
                .hint("point TILL_HOME at a directory (till makes it), or unset it")
                .into());
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Self::parse(&text, path)
    }

    /// Parses config text; errors name `path`, line and column.
    pub fn parse(text: &str, path: &Path) -> anyhow::Result<Self> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let (line, col) = e.span().map_or((1, 1), |span| line_col(text, span.start));
            let mut message = e.message().trim_end().to_string();
            // toml calls a table header given twice a duplicate key: name the table.
            if message == "duplicate key"
                && let Some(header) = text.lines().nth(line - 1).map(str::trim)
                && header.starts_with('[')
            {
                message = format!("duplicate table `{header}`");
            }
            UserError::usage(format!("{}:{line}:{col}: {message}", path.display()))
                .hint(CONFIG_HINT)
        })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> anyhow::Result<()> {
        for (key, list) in [
            ("deny", &self.sandbox.deny),
            ("writable", &self.sandbox.writable),
        ] {
            if let Some(bad) = list
                .iter()
                .find(|p| !(Path::new(p).is_absolute() || *p == "~" || p.starts_with("~/")))
            {
                return Err(UserError::usage(format!(
                    "{}: [sandbox] {key}: `{bad}` is neither an absolute path nor under ~/",
                    path.display()
                ))
                .hint("write it as /an/absolute/path or ~/a/path")
                .into());
            }
        }
        let proxy = &self.proxy;
        if !(1..=MAX_CONNECTIONS).contains(&proxy.max_connections) {
            return Err(UserError::usage(format!(
                "{}: [proxy] max_connections = {} is not between 1 and {MAX_CONNECTIONS}",
                path.display(),
                proxy.max_connections
            ))
            .hint(format!(
                "set [proxy] max_connections between 1 and {MAX_CONNECTIONS} (the default is 1024)"
            ))
            .into());
        }
        // No body at all would refuse every request with a body (413).
        if proxy.max_body_bytes == 0 {
            return Err(UserError::usage(format!(
                "{}: [proxy] max_body_bytes = 0 would refuse every request with a body",
                path.display()
            ))
            .hint("leave it out for the default 33554432 (32 MiB), or give a size in bytes")
            .into());
        }
        let defaults = ProxyConfig::default();
        for (name, value, default) in [
            (
                "header_timeout",
                proxy.header_timeout,
                defaults.header_timeout,
            ),
            ("body_timeout", proxy.body_timeout, defaults.body_timeout),
            (
                "upstream_timeout",
                proxy.upstream_timeout,
                defaults.upstream_timeout,
            ),
        ] {
            if value.0.is_zero() {
                return Err(UserError::usage(format!(
                    "{}: [proxy] {name} must be longer than 0s",
                    path.display()
                ))
                .hint(format!(
                    "leave it out for the default {}, or give a duration such as {name} = \"{}\"",
                    crate::time::duration_text(default.0),
                    crate::time::duration_text(default.0)
                ))
                .into());
            }
        }
        // No time at all would delete every request and alert at the next run.
        if self.ledger.retention.0.is_zero() {
            return Err(UserError::usage(format!(
                "{}: [ledger] retention must be longer than 0s (it would delete the whole history)",
                path.display()
            ))
            .hint("keep the default 90d, or give a duration such as retention = \"30d\"")
            .into());
        }
        // A keychain call given no time at all fails before it starts: every command that
        // needs a key would fail with a timeout.
        if self.keychain_timeout.0.is_zero() {
            return Err(UserError::usage(format!(
                "{}: keychain_timeout must be longer than 0s",
                path.display()
            ))
            .hint("give keychain_timeout a few seconds, e.g. keychain_timeout = \"10s\"")
            .into());
        }
        let (default_ttl, max_ttl) = (self.keys.default_ttl.0, self.keys.max_ttl.0);
        // A key must live at least a second, as `--ttl` says: a default below it made keys
        // that had expired when they were printed.
        if default_ttl < Duration::from_secs(1) {
            return Err(UserError::usage(format!(
                "{}: [keys] default_ttl = \"{}\" is shorter than the one second a key must live",
                path.display(),
                crate::time::duration_text(default_ttl)
            ))
            .hint(
                "leave it out for the default 1h, or give a duration such as default_ttl = \"8h\"",
            )
            .into());
        }
        if default_ttl > max_ttl {
            return Err(UserError::usage(format!(
                "{}: [keys] default_ttl = \"{}\" is longer than max_ttl = \"{}\"",
                path.display(),
                crate::time::duration_text(default_ttl),
                crate::time::duration_text(max_ttl)
            ))
            .hint("lower default_ttl or raise max_ttl under [keys]")
            .into());
        }
        self.validate_profiles(path)?;
        for (name, price) in &self.prices {
            price.check().map_err(|e| {
                UserError::usage(format!(
                    "{}: [prices.\"{}\"] {e}",
                    path.display(),
                    crate::output::printable(name)
                ))
                .hint("write prices in USD per million tokens, e.g. input = 2.5, output = 10")
            })?;
        }
        for (name, over) in &self.providers {
            // First: every later message names the table bare, as only a valid name can be.
            check_provider_name(name, path)?;
            if let Some(url) = &over.base_url {
                // Checked first, so no later message repeats the URL and its password.
                if has_userinfo(url) {
                    return Err(UserError::usage(format!(
                        "{}: [providers.{name}] base_url carries a user name or password (`…@host`); till does not send credentials from a URL",
                        path.display()
                    ))
                    .hint(format!(
                        "leave them out of base_url; the provider's key belongs in the keychain: till add {name}"
                    ))
                    .into());
                }
                crate::providers::validate_base_url(url).map_err(|e| {
                    UserError::usage(format!(
                        "{}: [providers.{name}] base_url: {e}",
                        path.display()
                    ))
                })?;
            }
            for (field, id, example) in [
                ("admin_project", &over.admin_project, "proj_abc123"),
                ("project", &over.project, "proj_abc123"),
                ("organization", &over.organization, "org-abc123"),
            ] {
                if let Some(id) = id
                    && (id.is_empty()
                        || !id
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                {
                    return Err(UserError::usage(format!(
                        "{}: [providers.{name}] {field} `{id}` is not an id",
                        path.display()
                    ))
                    .hint(format!(
                        "use the id from the provider's console, such as {example}"
                    ))
                    .into());
                }
            }
            let api = over
                .api
                .or_else(|| crate::providers::builtin(name).map(|b| b.api))
                .unwrap_or(crate::providers::ApiFamily::Openai);
            if over.openai_itself.is_some() && api != crate::providers::ApiFamily::Openai {
                return Err(UserError::usage(format!(
                    "{}: [providers.{name}] openai_itself is for a provider that speaks OpenAI's API; this one speaks another",
                    path.display()
                ))
                .hint("remove openai_itself from this table")
                .into());
            }
            if let Some(verify) = &over.verify_path
                && (!verify.starts_with('/') || verify.starts_with("//"))
            {
                return Err(UserError::usage(format!(
                    "{}: [providers.{name}] verify_path `{}` is not a path on base_url's host: it must begin with a single /",
                    path.display(),
                    crate::output::printable(verify)
                ))
                .hint("write the path of the provider's cheapest authenticated GET, such as verify_path = \"/v1/models\"")
                .into());
            }
            for (field, vars) in [
                ("key_env", &over.key_env),
                ("base_url_env", &over.base_url_env),
            ] {
                for var in vars.iter().flatten() {
                    if let Some(problem) = agent_var_problem(var) {
                        let upper = crate::providers::env_stem(name);
                        return Err(UserError::usage(format!(
                            "{}: [providers.{name}] {field}: `{}` {problem}",
                            path.display(),
                            crate::output::printable(var)
                        ))
                        .hint(format!(
                            "name the variables the agent's SDK reads, such as {upper}_API_KEY and {upper}_BASE_URL"
                        ))
                        .into());
                    }
                }
            }
            // A provider of the config's own gets `NAME_API_KEY` and `NAME_BASE_URL` with `-`
            // read as `_`: two names that differ only there would both set the same variables
            // in the agent's environment, and the agent would reach one of them under both.
            let defaults = |o: &ProviderOverride| o.key_env.is_none() || o.base_url_env.is_none();
            if crate::providers::builtin(name).is_none()
                && defaults(over)
                && let Some(other) = self.providers.iter().find_map(|(other, o)| {
                    (other < name
                        && crate::providers::builtin(other).is_none()
                        && defaults(o)
                        && crate::providers::env_stem(other) == crate::providers::env_stem(name))
                    .then_some(other)
                })
            {
                let stem = crate::providers::env_stem(name);
                return Err(UserError::usage(format!(
                    "{}: [providers.{other}] and [providers.{name}] would give the agent the same variables ({stem}_API_KEY, {stem}_BASE_URL)",
                    path.display(),
                ))
                .hint("rename one of them, or give each its own key_env and base_url_env")
                .into());
            }
            if crate::providers::builtin(name).is_none() && over.base_url.is_none() {
                return Err(UserError::usage(format!(
                    "{}: [providers.{name}] is not a built-in provider and has no base_url",
                    path.display()
                ))
                .hint(format!(
                    "add base_url = \"https://…\" under [providers.{name}], or use one of: {}",
                    crate::providers::builtin_names().join(", ")
                ))
                .into());
            }
        }
        Ok(())
    }

    /// Every profile's values are what its flag would accept (`till run -p` would fail on them
    /// later, naming a flag nobody gave); the error names the profile and the setting.
    fn validate_profiles(&self, path: &Path) -> anyhow::Result<()> {
        use crate::scope::{ScopeError, ScopeSpec};
        // Every command loads the config: without profiles, nothing to build.
        if self.profiles.is_empty() {
            return Ok(());
        }
        let providers = crate::providers::Providers::from_config(self);
        let known = providers.names();
        let max_ttl = self.keys.max_ttl.0;
        for (name, p) in &self.profiles {
            let fail = |setting: &str, e: ScopeError| {
                let hint = e.hint();
                let problem = match e {
                    ScopeError::Invalid { input, problem, .. } => format!("`{input}`: {problem}"),
                    other => other.to_string(),
                };
                let err = UserError::usage(format!(
                    "{}: [profiles.{}] {setting}: {problem}",
                    path.display(),
                    crate::output::printable(name)
                ));
                anyhow::Error::from(match hint {
                    Some(h) => err.hint(h),
                    None => err,
                })
            };
            let checks: [(&str, ScopeSpec); 8] = [
                (
                    "scope",
                    ScopeSpec {
                        scopes: p.scope.clone(),
                        ..ScopeSpec::default()
                    },
                ),
                (
                    "endpoints",
                    ScopeSpec {
                        endpoints: p.endpoints.as_ref().map(|e| e.join(",")),
                        ..ScopeSpec::default()
                    },
                ),
                (
                    "budget",
                    ScopeSpec {
                        budget: p.budget.clone().into_iter().collect(),
                        ..ScopeSpec::default()
                    },
                ),
                (
                    "ttl",
                    ScopeSpec {
                        ttl: p.ttl.clone(),
                        ..ScopeSpec::default()
                    },
                ),
                (
                    "rpm",
                    ScopeSpec {
                        rpm: p.rpm,
                        ..ScopeSpec::default()
                    },
                ),
                (
                    "tpm",
                    ScopeSpec {
                        tpm: p.tpm,
                        ..ScopeSpec::default()
                    },
                ),
                (
                    "max_requests",
                    ScopeSpec {
                        max_requests: p.max_requests,
                        ..ScopeSpec::default()
                    },
                ),
                (
                    "max_output_tokens",
                    ScopeSpec {
                        max_output_tokens: p.max_output_tokens,
                        ..ScopeSpec::default()
                    },
                ),
            ];
            for (setting, spec) in checks {
                spec.to_caveats(0, &known).map_err(|e| fail(setting, e))?;
            }
            if let Some(ttl) = &p.ttl {
                let secs = crate::scope::parse_ttl(ttl).map_err(|e| fail("ttl", e))?;
                if secs > max_ttl.as_secs() {
                    return Err(UserError::usage(format!(
                        "{}: [profiles.{}] ttl = \"{ttl}\" is longer than [keys] max_ttl = \"{}\"",
                        path.display(),
                        crate::output::printable(name),
                        crate::time::duration_text(max_ttl)
                    ))
                    .hint("lower the profile's ttl or raise [keys] max_ttl")
                    .into());
                }
            }
        }
        Ok(())
    }

    /// The store choice after `TILL_STORE`.
    pub fn store_options(&self, paths: &Paths) -> anyhow::Result<StoreOptions> {
        let choice = match std::env::var(EnvVars::TILL_STORE)
            .ok()
            .filter(|v| !v.is_empty())
        {
            None => self.store,
            Some(v) => match v.as_str() {
                "auto" => StoreChoice::Auto,
                "keychain" => StoreChoice::Keychain,
                "file" => StoreChoice::File,
                other => {
                    return Err(UserError::usage(format!(
                        "{}={other} is not a store",
                        EnvVars::TILL_STORE
                    ))
                    .hint("use auto, keychain or file")
                    .into());
                }
            },
        };
        let keychain_timeout = match std::env::var(EnvVars::TILL_KEYCHAIN_TIMEOUT) {
            Ok(v) if !v.is_empty() => match crate::time::parse_duration(&v) {
                Ok(d) if d.is_zero() => {
                    return Err(UserError::usage(format!(
                        "{}: must be longer than 0s",
                        EnvVars::TILL_KEYCHAIN_TIMEOUT
                    ))
                    .hint("give it a few seconds, e.g. TILL_KEYCHAIN_TIMEOUT=10s")
                    .into());
                }
                Ok(d) => d,
                Err(e) => {
                    return Err(UserError::usage(format!(
                        "{}: {e}",
                        EnvVars::TILL_KEYCHAIN_TIMEOUT
                    ))
                    .into());
                }
            },
            _ => self.keychain_timeout.0,
        };
        Ok(StoreOptions {
            choice,
            file_path: paths.store_file(),
            keychain_timeout,
        })
    }
}

/// A `[providers.NAME]` name must be one `--scope` takes (`till run` and `till key create`
/// refuse any other in a scope, so keys stored under it could never be used); the error
/// names the table as it was written.
fn check_provider_name(name: &str, path: &Path) -> anyhow::Result<()> {
    let Err(problem) = crate::childkey::ModelPattern::new(name, None) else {
        return Ok(());
    };
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let table = if bare {
        format!("[providers.{name}]")
    } else {
        format!("[providers.{:?}]", name)
    };
    Err(UserError::usage(format!(
        "{}: {} is not a provider name: {}",
        path.display(),
        crate::output::printable(&table),
        crate::output::printable(&problem)
    ))
    .hint(format!(
        "name it with a-z, 0-9, `_` and `-`, beginning with a letter or digit, at most {} characters, e.g. [providers.ollama]",
        crate::childkey::MAX_PROVIDER_LEN
    ))
    .into())
}

/// Why `var` cannot be one of a provider's agent variables (`key_env`, `base_url_env`), if it
/// cannot. till sets each for the agent and drops what the agent inherited under the name, so
/// `PATH` or `HOME` would take the agent's own away, an `LD_`/`DYLD_` variable would tell the
/// loader to load a file named like the child key, and a name that is empty or holds `=` or
/// NUL cannot be set at all (the agent would not start).
fn agent_var_problem(var: &str) -> Option<&'static str> {
    let upper = var.to_ascii_uppercase();
    if var.is_empty() {
        Some("is empty")
    } else if var.contains(['=', '\0']) {
        Some("holds `=` or NUL, which a variable's name cannot")
    } else if upper == "PATH" || upper == "HOME" {
        Some("is a variable the agent needs for itself")
    } else if upper.starts_with("LD_") || upper.starts_with("DYLD_") {
        Some("is read by the dynamic loader")
    } else {
        None
    }
}

/// Whether `url`'s authority has a user name or password (`http://user:pass@host`): an `@`
/// before the path, query or fragment begins.
fn has_userinfo(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split(['/', '?', '#'])
        .next()
        .is_some_and(|authority| authority.contains('@'))
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = crate::format::head(text, offset);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    /// A directory that fails to sync after the rename: the file was written, and says so.
    #[test]
    fn a_directory_that_fails_to_sync_after_the_rename_is_no_failed_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "old").unwrap();
        let synced =
            super::write_atomically_with(&path, b"new", |_| Err(std::io::Error::other("EIO")));
        assert!(synced.is_ok(), "{synced:?}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }

    use super::*;

    #[test]
    fn empty_config_has_defaults() {
        let c = Config::default();
        assert_eq!(c.store, StoreChoice::Auto);
        assert_eq!(c.keys.default_ttl.0, Duration::from_secs(3600));
        assert_eq!(c.proxy.max_body_bytes, 32 << 20);
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let err = Config::parse(
            "store = \"file\"\n\n[proxy]\nmax_bodyy = 3\n",
            Path::new("c.toml"),
        )
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.starts_with("c.toml:4:1: unknown field `max_bodyy`"),
            "{msg}"
        );
    }

    #[test]
    fn bad_value_names_line_and_column() {
        let err =
            Config::parse("[keys]\ndefault_ttl = \"soon\"\n", Path::new("c.toml")).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.starts_with("c.toml:2:15:"), "{msg}");
        assert!(msg.contains("soon"), "{msg}");
    }

    #[test]
    fn proxy_lifecycle_settings_parse_and_are_checked() {
        let c = Config::default();
        assert_eq!(c.proxy.shutdown_grace.0, Duration::from_secs(10));
        assert_eq!(c.proxy.max_connections, 1024);
        let c = Config::parse(
            "[proxy]\nshutdown_grace = \"250ms\"\nmax_connections = 8\nheader_timeout = \"2s\"\nbody_timeout = \"1m\"\n",
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(c.proxy.shutdown_grace.0, Duration::from_millis(250));
        assert_eq!(c.proxy.max_connections, 8);
        assert_eq!(c.proxy.header_timeout.0, Duration::from_secs(2));
        assert_eq!(c.proxy.body_timeout.0, Duration::from_secs(60));
        let err = Config::parse("[proxy]\nmax_connections = 0\n", Path::new("c.toml")).unwrap_err();
        assert!(format!("{err:#}").contains("max_connections"), "{err:#}");
        let c = Config::parse("[proxy]\nmax_connections = 65536\n", Path::new("c.toml")).unwrap();
        assert_eq!(c.proxy.max_connections, MAX_CONNECTIONS);
        // Past tokio's semaphore limit the proxy panicked at start and the agent ran without it.
        for too_many in ["65537", "18446744073709551615"] {
            let text = format!("[proxy]\nmax_connections = {too_many}\n");
            let err = Config::parse(&text, Path::new("c.toml")).unwrap_err();
            assert_eq!(
                format!("{err:#}"),
                format!("c.toml: [proxy] max_connections = {too_many} is not between 1 and 65536")
            );
            let user = crate::error::find_user_error(&err).unwrap();
            assert_eq!(user.kind, crate::error::ExitKind::Usage);
            assert!(
                user.hint
                    .as_deref()
                    .unwrap()
                    .contains("[proxy] max_connections"),
                "{:?}",
                user.hint
            );
        }
        let err =
            Config::parse("[proxy]\nheader_timeout = \"0s\"\n", Path::new("c.toml")).unwrap_err();
        assert!(format!("{err:#}").contains("header_timeout"), "{err:#}");
        // Values that load but leave till useless: every body refused, every upstream call
        // timed out at once, every key expired when printed.
        for (text, says) in [
            ("[proxy]\nmax_body_bytes = 0\n", "max_body_bytes = 0"),
            ("[proxy]\nupstream_timeout = \"0s\"\n", "upstream_timeout"),
            ("[keys]\ndefault_ttl = \"0s\"\n", "default_ttl = \"0s\""),
            ("[keys]\ndefault_ttl = \"500ms\"\n", "one second"),
        ] {
            let err = Config::parse(text, Path::new("c.toml")).unwrap_err();
            let ue = err.downcast_ref::<UserError>().expect("a usage error");
            assert!(format!("{err:#}").contains(says), "{text}: {err:#}");
            assert!(ue.hint.is_some(), "{text}: no hint");
        }
        let err = Config::parse("[ledger]\nretention = \"0s\"\n", Path::new("c.toml")).unwrap_err();
        assert!(format!("{err:#}").contains("whole history"), "{err:#}");
        let err =
            Config::parse("[proxy]\nshutdown_grace = \"soon\"\n", Path::new("c.toml")).unwrap_err();
        assert!(format!("{err:#}").starts_with("c.toml:2:18:"), "{err:#}");
    }

    #[test]
    fn a_base_url_with_credentials_is_refused_without_repeating_them() {
        for url in [
            "http://admin:S3CRET@127.0.0.1:9",
            "https://S3CRET@api.example.com/v1",
            "HTTP://admin:S3CRET@host",
        ] {
            let text = format!("[providers.creds]\nbase_url = \"{url}\"\n");
            let err = Config::parse(&text, Path::new("c.toml")).unwrap_err();
            let msg = format!("{err:#}");
            assert!(
                msg.starts_with(
                    "c.toml: [providers.creds] base_url carries a user name or password"
                ),
                "{msg}"
            );
            assert!(!msg.contains("S3CRET"), "{msg}");
            let user = crate::error::find_user_error(&err).unwrap();
            assert_eq!(user.kind, crate::error::ExitKind::Usage);
            assert_eq!(
                user.hint.as_deref(),
                Some(
                    "leave them out of base_url; the provider's key belongs in the keychain: till add creds"
                )
            );
        }
        // An `@` after the host is part of the path, not credentials.
        let c = Config::parse(
            "[providers.local]\nbase_url = \"http://127.0.0.1:9/v1/@models\"\n",
            Path::new("c.toml"),
        )
        .unwrap();
        assert!(c.providers.contains_key("local"));
    }

    /// The usage error `text` gets, with its hint.
    fn refusal(text: &str) -> (String, Option<String>) {
        let err = Config::parse(text, Path::new("c.toml")).unwrap_err();
        let user = crate::error::find_user_error(&err).unwrap();
        assert_eq!(user.kind, crate::error::ExitKind::Usage, "{err:#}");
        (format!("{err:#}"), user.hint.clone())
    }

    /// A name `till run` would refuse in a scope was stored keys under and broke every run.
    #[test]
    fn provider_names_follow_the_scope_rule() {
        for (name, table) in [
            ("Ollama", "[providers.Ollama]"),
            ("", "[providers.\"\"]"),
            ("a/b", "[providers.\"a/b\"]"),
            ("x y", "[providers.\"x y\"]"),
            ("-x", "[providers.-x]"),
            (
                "x\\u001b]0;pwned\\u0007",
                "[providers.\"x\\u{1b}]0;pwned\\u{7}\"]",
            ),
        ] {
            let text = format!("[providers.\"{name}\"]\nbase_url = \"http://127.0.0.1:9\"\n");
            let (msg, hint) = refusal(&text);
            assert!(
                msg.starts_with(&format!("c.toml: {table} is not a provider name: ")),
                "{msg}"
            );
            assert!(!msg.contains('\u{1b}'), "{msg}");
            assert!(hint.unwrap().contains("a-z, 0-9"), "{name}");
        }
        let long = "a".repeat(crate::childkey::MAX_PROVIDER_LEN + 1);
        let (msg, _) = refusal(&format!(
            "[providers.{long}]\nbase_url = \"http://127.0.0.1:9\"\n"
        ));
        assert!(msg.contains("1 to 64 characters"), "{msg}");
        let c = Config::parse(
            "[providers.my-llm_2]\nbase_url = \"http://127.0.0.1:9\"\n",
            Path::new("c.toml"),
        )
        .unwrap();
        assert!(c.providers.contains_key("my-llm_2"));
    }

    #[test]
    fn verify_path_must_be_a_path() {
        for bad in ["@evil.example/x", "v1/models", "", "//evil.example/x"] {
            let text = format!(
                "[providers.local]\nbase_url = \"http://127.0.0.1:9\"\nverify_path = \"{bad}\"\n"
            );
            let (msg, hint) = refusal(&text);
            assert!(
                msg.starts_with("c.toml: [providers.local] verify_path"),
                "{msg}"
            );
            assert!(hint.unwrap().contains("/v1/models"));
        }
        let c = Config::parse(
            "[providers.local]\nbase_url = \"http://127.0.0.1:9\"\nverify_path = \"/v1/models?x=1\"\n",
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(
            c.providers["local"].verify_path.as_deref(),
            Some("/v1/models?x=1")
        );
    }

    #[test]
    fn a_base_url_that_is_no_url_is_refused_at_load() {
        for bad in ["http://[::1", "http://exa%mple.com", "https://host:99999"] {
            let (msg, _) = refusal(&format!("[providers.local]\nbase_url = \"{bad}\"\n"));
            assert!(
                msg.starts_with("c.toml: [providers.local] base_url:"),
                "{msg}"
            );
        }
        Config::parse(
            "[providers.local]\nbase_url = \"http://[::1]:8080/v1\"\n",
            Path::new("c.toml"),
        )
        .unwrap();
    }

    #[test]
    fn agent_variable_names_that_would_break_the_agent_are_refused() {
        for (field, bad) in [
            ("key_env", "PATH"),
            ("key_env", "home"),
            ("key_env", ""),
            ("key_env", "A=B"),
            ("key_env", "A\\u0000B"),
            ("key_env", "LD_PRELOAD"),
            ("base_url_env", "DYLD_INSERT_LIBRARIES"),
            ("base_url_env", "ld_library_path"),
        ] {
            let text = format!(
                "[providers.local]\nbase_url = \"http://127.0.0.1:9\"\n{field} = [\"{bad}\"]\n"
            );
            let (msg, hint) = refusal(&text);
            assert!(
                msg.starts_with(&format!("c.toml: [providers.local] {field}: ")),
                "{msg}"
            );
            assert!(!msg.contains('\0'), "{msg}");
            assert!(hint.unwrap().contains("LOCAL_API_KEY"), "{msg}");
        }
        let c = Config::parse(
            "[providers.local]\nbase_url = \"http://127.0.0.1:9\"\nkey_env = [\"MY_KEY\"]\nbase_url_env = [\"MY_URL\"]\n",
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(
            c.providers["local"].key_env,
            Some(vec!["MY_KEY".to_string()])
        );
    }

    #[test]
    fn providers_whose_variables_would_be_the_same_are_refused() {
        let (msg, hint) = refusal(
            "[providers.my-llm]\nbase_url = \"http://127.0.0.1:9\"\n[providers.my_llm]\nbase_url = \"http://127.0.0.1:8\"\n",
        );
        assert_eq!(
            msg,
            "c.toml: [providers.my-llm] and [providers.my_llm] would give the agent the same variables (MY_LLM_API_KEY, MY_LLM_BASE_URL)"
        );
        assert!(hint.unwrap().contains("key_env"));
        // Each with variables of its own, they are two providers.
        Config::parse(
            "[providers.my-llm]\nbase_url = \"http://127.0.0.1:9\"\n[providers.my_llm]\nbase_url = \"http://127.0.0.1:8\"\nkey_env = [\"B_KEY\"]\nbase_url_env = [\"B_URL\"]\n",
            Path::new("c.toml"),
        )
        .unwrap();
    }

    #[test]
    fn a_keychain_timeout_of_zero_is_refused() {
        let (msg, hint) = refusal("keychain_timeout = \"0s\"\n");
        assert_eq!(msg, "c.toml: keychain_timeout must be longer than 0s");
        assert!(hint.unwrap().contains("keychain_timeout"));
    }

    #[test]
    fn prices_and_providers_parse() {
        let c = Config::parse(
            "[providers.openai]\nbase_url = \"http://127.0.0.1:9\"\n[prices.\"openai/gpt-x\"]\ninput = 1.5\noutput = 6\n",
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(
            c.providers["openai"].base_url.as_deref(),
            Some("http://127.0.0.1:9")
        );
        assert_eq!(c.prices["openai/gpt-x"].output, 6.0);
    }
}
