//! The human scope syntax (`--scope openai/gpt-4o* --budget 5usd --ttl 30m …`) ⇄ caveats.
//!
//! This module turns command-line flags into canonical caveats and back, and explains bad
//! input by pointing at the offending part. It owns no policy (defaults such as the standard
//! TTL are the caller's) and never mints or verifies anything.

use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

use crate::childkey::{Caveat, EndpointClass, EndpointSet, ModelPattern, Token, canonicalize};
use crate::error::UserError;

/// The last second humantime (and RFC 3339 with four-digit years) can print.
const MAX_RFC3339: u64 = 253_402_300_799;

/// A key's scope as the command line spells it. Every field is optional; an empty spec
/// describes no restriction at all (the caller adds its defaults, at least an expiry).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSpec {
    /// `--scope provider[/model-glob]`, repeatable.
    pub scopes: Vec<String>,
    /// `--endpoints inference,models,…` or `all`.
    pub endpoints: Option<String>,
    /// `--budget 5usd|0.50usd|$5|200ktok|1mtok|5000tok`; repeatable so a key can have a
    /// dollar budget and a token budget.
    pub budget: Vec<String>,
    /// `--ttl 30m`: expires that long after `now`.
    pub ttl: Option<String>,
    /// `--expires 2026-11-27T21:00:00Z` (or unix seconds): an absolute expiry.
    pub expires: Option<u64>,
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    pub max_requests: Option<u64>,
    pub max_output_tokens: Option<u64>,
    /// `--session ID`: only that `till run`'s proxy accepts the key.
    pub session: Option<String>,
}

/// A bad scope, pointing at the part that is wrong. Becomes a usage error (exit 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// A character that does not belong where it is (positions count characters from 1).
    #[error("`{input}`: unexpected `{found}` at position {position} — {advice}")]
    Unexpected {
        flag: &'static str,
        input: String,
        found: char,
        position: usize,
        advice: String,
    },
    /// A value that cannot be read.
    #[error("invalid {flag} `{input}`: {problem}")]
    Invalid {
        flag: &'static str,
        input: String,
        problem: String,
    },
    #[error("unknown provider `{provider}` in `{input}` (known: {})", known.join(", "))]
    UnknownProvider {
        input: String,
        provider: String,
        known: Vec<String>,
    },
    /// Two flags that contradict each other.
    #[error("{0}")]
    Conflict(String),
    /// A nested key asking for more than its parent has.
    #[error("{flag} {requested} is wider than the parent key allows ({parent})")]
    Wider {
        flag: &'static str,
        requested: String,
        parent: String,
    },
    /// Caveats that have no single flag spelling.
    #[error("this key's caveats cannot be written as one set of flags: {0}")]
    Unrepresentable(String),
    #[error("unknown option `{0}`")]
    UnknownFlag(String),
    #[error("option `{0}` needs a value")]
    MissingValue(String),
}

impl ScopeError {
    /// A `hint:` line for the error, where a fix exists.
    pub fn hint(&self) -> Option<String> {
        match self {
            ScopeError::Unexpected { flag: "--scope", .. } => Some(
                "a scope is `provider` or `provider/model-glob`, e.g. --scope 'anthropic/claude-haiku-*'"
                    .into(),
            ),
            ScopeError::Unexpected { flag, .. } | ScopeError::Invalid { flag, .. } => {
                let example = match *flag {
                    "--scope" => "a scope is `provider` or `provider/model-glob`, e.g. --scope openai/gpt-4o-mini",
                    "--budget" => "budgets look like 5usd, 0.50usd, $5, 200ktok, 1mtok or 5000tok",
                    "--endpoints" => {
                        "endpoints are a comma list of inference, models, files, batches, admin, or `all`"
                    }
                    "--ttl" => "durations look like 30m, 2h or 7d",
                    "--expires" => "give a time as 2026-11-27T21:00:00Z or unix seconds",
                    "--session" => "a session id uses ASCII letters, digits, `-`, `_` and `.`",
                    _ => return None,
                };
                Some(example.into())
            }
            ScopeError::UnknownProvider { provider, .. } => Some(format!(
                "add it with `till add {provider}`, or describe it under [providers.{provider}] in config.toml"
            )),
            ScopeError::Wider { .. } => Some(
                "a nested `till run` can only narrow the key it runs under; ask for no more than the parent has"
                    .into(),
            ),
            ScopeError::UnknownFlag(_) => Some(
                "scope options are --scope, --endpoints, --budget, --ttl, --expires, --rpm, --tpm, --max-requests, --max-output-tokens, --session"
                    .into(),
            ),
            _ => None,
        }
    }
}

impl From<ScopeError> for UserError {
    fn from(e: ScopeError) -> UserError {
        let hint = e.hint();
        let err = UserError::usage(e.to_string());
        match hint {
            Some(h) => err.hint(h),
            None => err,
        }
    }
}

/// A parsed `--budget`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Micro-dollars.
    Usd(u64),
    Tokens(u64),
}

impl Budget {
    pub fn to_caveat(self) -> Caveat {
        match self {
            Budget::Usd(v) => Caveat::BudgetUsd(v),
            Budget::Tokens(v) => Caveat::BudgetTokens(v),
        }
    }
}

impl fmt::Display for Budget {
    /// The `--budget` spelling: `5usd`, `0.5usd`, `200ktok`, `1mtok`, `1234tok`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Budget::Usd(micro) => write!(f, "{}usd", format_usd(micro)),
            Budget::Tokens(n) if n != 0 && n % 1_000_000 == 0 => write!(f, "{}mtok", n / 1_000_000),
            Budget::Tokens(n) if n != 0 && n % 1_000 == 0 => write!(f, "{}ktok", n / 1_000),
            Budget::Tokens(n) => write!(f, "{n}tok"),
        }
    }
}

/// Micro-dollars as a plain decimal without trailing zeros (`5`, `0.5`, `0.000001`).
pub fn format_usd(micro: u64) -> String {
    let whole = micro / 1_000_000;
    let frac = micro % 1_000_000;
    if frac == 0 {
        whole.to_string()
    } else {
        let frac = format!("{frac:06}");
        format!("{whole}.{}", frac.trim_end_matches('0'))
    }
}

/// An expiry as `--expires` prints it: RFC 3339 where it fits, unix seconds beyond year 9999.
pub fn format_expires(unix: u64) -> String {
    if unix <= MAX_RFC3339 {
        crate::time::rfc3339(unix)
    } else {
        unix.to_string()
    }
}

/// Parses `provider` or `provider/model-glob`. Provider names are `[a-z0-9][a-z0-9_-]*` and
/// must be in `known_providers` (an empty list accepts any well-formed name); the glob is
/// non-empty and may use `*` and `?` as wildcards.
pub fn parse_pattern(text: &str, known_providers: &[&str]) -> Result<ModelPattern, ScopeError> {
    const FLAG: &str = "--scope";
    let invalid = |problem: String| ScopeError::Invalid {
        flag: FLAG,
        input: text.to_string(),
        problem,
    };
    let (provider, glob) = match text.split_once('/') {
        Some((p, g)) => (p, Some(g)),
        None => (text, None),
    };
    if provider.is_empty() {
        return Err(invalid("the provider name is empty".into()));
    }
    if let Some((i, c)) = crate::childkey::invalid_provider_char(provider) {
        return Err(ScopeError::Unexpected {
            flag: FLAG,
            input: text.to_string(),
            found: c,
            position: i + 1,
            advice: if c.is_ascii_uppercase() {
                "provider names are lowercase".into()
            } else {
                "provider names use a-z, 0-9, `_` and `-` (and start with a letter or digit)".into()
            },
        });
    }
    if !known_providers.is_empty() && !known_providers.contains(&provider) {
        let mut known: Vec<String> = known_providers.iter().map(|s| s.to_string()).collect();
        known.sort();
        return Err(ScopeError::UnknownProvider {
            input: text.to_string(),
            provider: provider.to_string(),
            known,
        });
    }
    if let Some(glob) = glob {
        if glob.is_empty() {
            return Err(invalid(format!(
                "the model glob after `{provider}/` is empty; use `{provider}` or `{provider}/*` for every model"
            )));
        }
        if let Some((i, c)) = crate::childkey::invalid_glob_char(glob) {
            return Err(ScopeError::Unexpected {
                flag: FLAG,
                input: text.to_string(),
                found: c,
                position: provider.chars().count() + 1 + i + 1,
                advice: crate::childkey::glob_char_advice(c).to_string(),
            });
        }
    }
    ModelPattern::new(provider, glob).map_err(invalid)
}

/// Parses a budget: `5usd`, `0.50usd`, `$5`, `$0.50` (micro-dollar precision) or `200ktok`,
/// `1mtok`, `1.5mtok`, `5000tok` (`tokens` works too). Case does not matter.
pub fn parse_budget(text: &str) -> Result<Budget, ScopeError> {
    const FLAG: &str = "--budget";
    let invalid = |problem: String| ScopeError::Invalid {
        flag: FLAG,
        input: text.to_string(),
        problem,
    };
    let lower = text.trim().to_ascii_lowercase();
    if let Some(amount) = lower
        .strip_prefix('$')
        .or_else(|| lower.strip_suffix("usd"))
    {
        let micro = parse_decimal(amount.trim(), 1_000_000).map_err(invalid)?;
        return Ok(Budget::Usd(micro));
    }
    let amount = lower
        .strip_suffix("tokens")
        .or_else(|| lower.strip_suffix("tok"))
        .ok_or_else(|| {
            invalid("give a unit: `usd` (or a leading `$`) for dollars, `tok` for tokens".into())
        })?;
    let amount = amount.trim_end();
    let (number, scale) = if let Some(n) = amount.strip_suffix('k') {
        (n, 1_000)
    } else if let Some(n) = amount.strip_suffix('m') {
        (n, 1_000_000)
    } else {
        (amount, 1)
    };
    parse_decimal(number.trim(), scale)
        .map(Budget::Tokens)
        .map_err(invalid)
}

/// `digits[.digits]` × `scale` (1, 1 000 or 1 000 000), which must come out a whole number
/// that fits in u64.
fn parse_decimal(text: &str, scale: u64) -> Result<u64, String> {
    if let Some((i, c)) = text
        .chars()
        .enumerate()
        .find(|&(_, c)| !c.is_ascii_digit() && c != '.')
    {
        return Err(format!(
            "unexpected `{c}` at position {} of the amount `{text}`",
            i + 1
        ));
    }
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && frac.is_empty() {
        return Err("the amount is missing".into());
    }
    if frac.contains('.') {
        return Err("more than one decimal point".into());
    }
    let places = scale.ilog10() as usize;
    let frac = frac.trim_end_matches('0');
    if frac.len() > places {
        return Err(if scale == 1_000_000 {
            "more precision than a millionth of a dollar".into()
        } else {
            "not a whole number of tokens".into()
        });
    }
    let overflow = || "the amount is too large".to_string();
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| overflow())?
    };
    let frac_value: u64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<places$}")
            .parse()
            .map_err(|_| overflow())?
    };
    whole
        .checked_mul(scale)
        .and_then(|v| v.checked_add(frac_value))
        .ok_or_else(overflow)
}

/// Parses `inference,models,…` or `all`.
pub fn parse_endpoints(text: &str) -> Result<EndpointSet, ScopeError> {
    const FLAG: &str = "--endpoints";
    let invalid = |problem: String| ScopeError::Invalid {
        flag: FLAG,
        input: text.to_string(),
        problem,
    };
    let mut classes = Vec::new();
    let mut all = false;
    let mut position = 1;
    for item in text.split(',') {
        let name = item.trim().to_ascii_lowercase();
        match name.as_str() {
            "" => {
                return Err(invalid(format!(
                    "empty endpoint class at position {position}"
                )));
            }
            "all" => all = true,
            _ => match name.parse::<EndpointClass>() {
                Ok(c) => classes.push(c),
                Err(_) => {
                    return Err(invalid(format!(
                        "unknown endpoint class `{}` at position {position} (known: inference, models, files, batches, admin, all)",
                        item.trim()
                    )));
                }
            },
        }
        position += item.chars().count() + 1;
    }
    if all {
        if !classes.is_empty() {
            return Err(invalid(
                "`all` already includes every class; give it alone".into(),
            ));
        }
        return Ok(EndpointSet::all());
    }
    EndpointSet::of(&classes).ok_or_else(|| invalid("no endpoint class given".into()))
}

/// Parses a TTL (`30m`, `2h`, `7d`) into seconds; it must be at least one second.
pub fn parse_ttl(text: &str) -> Result<u64, ScopeError> {
    let invalid = |problem: String| ScopeError::Invalid {
        flag: "--ttl",
        input: text.to_string(),
        problem,
    };
    let d = crate::time::parse_duration(text).map_err(|e| {
        invalid(
            e.trim_start_matches(&format!("invalid duration `{text}`: "))
                .to_string(),
        )
    })?;
    if d < Duration::from_secs(1) {
        return Err(invalid("a key must live at least one second".into()));
    }
    Ok(d.as_secs())
}

/// Parses `--expires`: RFC 3339 (`2026-11-27T21:00:00Z`) or unix seconds.
pub fn parse_expires(text: &str) -> Result<u64, ScopeError> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().map_err(|_| ScopeError::Invalid {
            flag: "--expires",
            input: text.to_string(),
            problem: "too large".into(),
        });
    }
    let at = humantime::parse_rfc3339_weak(t).map_err(|e| ScopeError::Invalid {
        flag: "--expires",
        input: text.to_string(),
        problem: e.to_string(),
    })?;
    Ok(at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

fn parse_number<T: std::str::FromStr>(flag: &'static str, text: &str) -> Result<T, ScopeError> {
    text.trim().parse().map_err(|_| ScopeError::Invalid {
        flag,
        input: text.to_string(),
        problem: "not a whole number in range".into(),
    })
}

/// What the parent allows, folded over all its levels (for [`ScopeSpec::check_narrower`]).
struct Effective {
    allow: Vec<Vec<ModelPattern>>,
    /// `None` when the parent's endpoint sets leave nothing.
    endpoints: Option<EndpointSet>,
    expires: Option<u64>,
    usd: Option<u64>,
    tokens: Option<u64>,
    rpm: Option<u64>,
    tpm: Option<u64>,
    max_requests: Option<u64>,
    max_output_tokens: Option<u64>,
    sessions: Vec<String>,
}

fn min_opt(slot: &mut Option<u64>, v: u64) {
    *slot = Some(slot.map_or(v, |cur| cur.min(v)));
}

impl Effective {
    fn of(token: &Token) -> Effective {
        let levels = token.levels();
        let level0 = levels.first().map_or(0..0, |l| l.caveats.clone());
        let caveats = token.caveats();
        // The first level's default, as verification applies it.
        let mut endpoints = Some(
            if caveats[level0]
                .iter()
                .any(|c| matches!(c, Caveat::Endpoints(_)))
            {
                EndpointSet::all()
            } else {
                EndpointSet::inference_only()
            },
        );
        let mut e = Effective {
            allow: Vec::new(),
            endpoints,
            expires: None,
            usd: None,
            tokens: None,
            rpm: None,
            tpm: None,
            max_requests: None,
            max_output_tokens: None,
            sessions: Vec::new(),
        };
        for c in caveats {
            match c {
                Caveat::Allow(p) => e.allow.push(p.clone()),
                Caveat::Endpoints(s) => endpoints = endpoints.and_then(|cur| cur.intersect(*s)),
                Caveat::Expires(v) => min_opt(&mut e.expires, *v),
                Caveat::BudgetUsd(v) => min_opt(&mut e.usd, *v),
                Caveat::BudgetTokens(v) => min_opt(&mut e.tokens, *v),
                Caveat::Rpm(v) => min_opt(&mut e.rpm, u64::from(*v)),
                Caveat::Tpm(v) => min_opt(&mut e.tpm, *v),
                Caveat::MaxRequests(v) => min_opt(&mut e.max_requests, *v),
                Caveat::MaxOutputTokens(v) => min_opt(&mut e.max_output_tokens, *v),
                Caveat::Session(s) => e.sessions.push(s.clone()),
                Caveat::Unknown { .. } => {}
            }
        }
        e.endpoints = endpoints;
        e
    }
}

/// Whether every model the child glob matches is matched by the parent glob.
///
/// Sound, not complete: the child's `*` can only be absorbed by a parent `*`, the child's
/// `?` by a parent `?` or `*`, literals by the same literal, `?` or `*`.
fn glob_covers(parent: &str, child: &str) -> bool {
    let p = parent.as_bytes();
    let c = child.as_bytes();
    // reach[j]: the first i parent bytes can produce the first j child bytes.
    let mut reach = vec![false; c.len() + 1];
    reach[0] = true;
    for &pb in p {
        let mut next = vec![false; c.len() + 1];
        for j in 0..=c.len() {
            if pb == b'*' {
                // `*` consumes any run of child tokens: carry reach forward.
                next[j] = reach[j] || (j > 0 && next[j - 1]);
            } else if j > 0 && reach[j - 1] {
                let cb = c[j - 1];
                next[j] = match pb {
                    b'?' => cb != b'*',
                    lit => cb == lit,
                };
            }
        }
        reach = next;
    }
    reach[c.len()]
}

fn pattern_covered(parent: &[ModelPattern], child: &ModelPattern) -> bool {
    parent.iter().any(|q| {
        q.provider() == child.provider()
            && (q.is_provider_wide()
                || match (q.model(), child.model()) {
                    (Some(pg), Some(cg)) => pg == cg || glob_covers(pg, cg),
                    _ => false,
                })
    })
}

impl ScopeSpec {
    /// The canonical caveats this spec describes. `--ttl` becomes `Expires(now + ttl)`;
    /// without `--ttl` or `--expires` there is no expiry (the caller adds its default).
    pub fn to_caveats(
        &self,
        now: u64,
        known_providers: &[&str],
    ) -> Result<Vec<Caveat>, ScopeError> {
        let mut out = Vec::new();
        if !self.scopes.is_empty() {
            let patterns = self
                .scopes
                .iter()
                .map(|s| parse_pattern(s, known_providers))
                .collect::<Result<Vec<_>, _>>()?;
            if patterns.len() > crate::childkey::MAX_PATTERNS {
                return Err(ScopeError::Conflict(format!(
                    "at most {} --scope patterns",
                    crate::childkey::MAX_PATTERNS
                )));
            }
            out.push(Caveat::Allow(patterns));
        }
        if let Some(e) = &self.endpoints {
            out.push(Caveat::Endpoints(parse_endpoints(e)?));
        }
        let (mut usd, mut tokens) = (false, false);
        for b in &self.budget {
            let budget = parse_budget(b)?;
            let seen = match budget {
                Budget::Usd(_) => &mut usd,
                Budget::Tokens(_) => &mut tokens,
            };
            if std::mem::replace(seen, true) {
                return Err(ScopeError::Conflict(format!(
                    "--budget {b}: a key takes one dollar budget and one token budget at most"
                )));
            }
            out.push(budget.to_caveat());
        }
        match (&self.ttl, self.expires) {
            (Some(_), Some(_)) => {
                return Err(ScopeError::Conflict(
                    "give --ttl or --expires, not both".into(),
                ));
            }
            (Some(ttl), None) => {
                let secs = parse_ttl(ttl)?;
                let at = now.checked_add(secs).ok_or_else(|| ScopeError::Invalid {
                    flag: "--ttl",
                    input: ttl.clone(),
                    problem: "too long".into(),
                })?;
                out.push(Caveat::Expires(at));
            }
            (None, Some(at)) => out.push(Caveat::Expires(at)),
            (None, None) => {}
        }
        if let Some(v) = self.rpm {
            out.push(Caveat::Rpm(v));
        }
        if let Some(v) = self.tpm {
            out.push(Caveat::Tpm(v));
        }
        if let Some(v) = self.max_requests {
            out.push(Caveat::MaxRequests(v));
        }
        if let Some(v) = self.max_output_tokens {
            out.push(Caveat::MaxOutputTokens(v));
        }
        if let Some(s) = &self.session {
            let c = Caveat::Session(s.clone());
            c.validate().map_err(|problem| ScopeError::Invalid {
                flag: "--session",
                input: s.clone(),
                problem,
            })?;
            out.push(c);
        }
        Ok(canonicalize(out))
    }

    /// The flags that describe `caveats` (one key's, or one level's). Repeated ceilings fold
    /// to the smallest and endpoint sets intersect; differing allow lists or sessions, and
    /// unknown caveats, have no single spelling and are refused.
    pub fn from_caveats(caveats: &[Caveat]) -> Result<ScopeSpec, ScopeError> {
        let mut spec = ScopeSpec::default();
        let mut allow: Option<&Vec<ModelPattern>> = None;
        let mut endpoints: Option<EndpointSet> = None;
        let (mut usd, mut tokens, mut rpm) = (None, None, None);
        let (mut expires, mut tpm, mut max_requests, mut max_output) = (None, None, None, None);
        for c in caveats {
            match c {
                Caveat::Allow(p) => {
                    if allow.is_some_and(|a| a != p) {
                        return Err(ScopeError::Unrepresentable(
                            "it has several different allow lists; show it level by level".into(),
                        ));
                    }
                    allow = Some(p);
                }
                Caveat::Endpoints(s) => {
                    endpoints = Some(match endpoints {
                        None => *s,
                        Some(cur) => cur.intersect(*s).ok_or_else(|| {
                            ScopeError::Unrepresentable(
                                "its endpoint sets have nothing in common".into(),
                            )
                        })?,
                    });
                }
                Caveat::Expires(v) => min_opt(&mut expires, *v),
                Caveat::BudgetUsd(v) => min_opt(&mut usd, *v),
                Caveat::BudgetTokens(v) => min_opt(&mut tokens, *v),
                Caveat::Rpm(v) => min_opt(&mut rpm, u64::from(*v)),
                Caveat::Tpm(v) => min_opt(&mut tpm, *v),
                Caveat::MaxRequests(v) => min_opt(&mut max_requests, *v),
                Caveat::MaxOutputTokens(v) => min_opt(&mut max_output, *v),
                Caveat::Session(s) => {
                    if spec.session.as_ref().is_some_and(|cur| cur != s) {
                        return Err(ScopeError::Unrepresentable(
                            "it is bound to two different sessions".into(),
                        ));
                    }
                    spec.session = Some(s.clone());
                }
                Caveat::Unknown { tag, .. } => {
                    return Err(ScopeError::Unrepresentable(format!(
                        "it has a caveat (tag {tag:#04x}) this version of till does not understand"
                    )));
                }
            }
        }
        spec.scopes = allow.map_or_else(Vec::new, |p| p.iter().map(ToString::to_string).collect());
        spec.endpoints = endpoints.map(|e| e.to_string());
        spec.budget = usd
            .map(Budget::Usd)
            .into_iter()
            .chain(tokens.map(Budget::Tokens))
            .map(|b| b.to_string())
            .collect();
        spec.expires = expires;
        spec.rpm = rpm.map(|v| v as u32);
        spec.tpm = tpm;
        spec.max_requests = max_requests;
        spec.max_output_tokens = max_output;
        Ok(spec)
    }

    /// The spec as command-line arguments, in a fixed order.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let mut push = |flag: &str, value: String| {
            args.push(flag.to_string());
            args.push(value);
        };
        for s in &self.scopes {
            push("--scope", s.clone());
        }
        if let Some(e) = &self.endpoints {
            push("--endpoints", e.clone());
        }
        for b in &self.budget {
            push("--budget", b.clone());
        }
        if let Some(t) = &self.ttl {
            push("--ttl", t.clone());
        }
        if let Some(at) = self.expires {
            push("--expires", format_expires(at));
        }
        if let Some(v) = self.rpm {
            push("--rpm", v.to_string());
        }
        if let Some(v) = self.tpm {
            push("--tpm", v.to_string());
        }
        if let Some(v) = self.max_requests {
            push("--max-requests", v.to_string());
        }
        if let Some(v) = self.max_output_tokens {
            push("--max-output-tokens", v.to_string());
        }
        if let Some(s) = &self.session {
            push("--session", s.clone());
        }
        args
    }

    /// Reads the flags [`ScopeSpec::to_args`] writes (`--flag value` or `--flag=value`).
    /// Values are kept as text where [`ScopeSpec::to_caveats`] parses them later.
    pub fn from_args<S: AsRef<str>>(args: &[S]) -> Result<ScopeSpec, ScopeError> {
        let mut spec = ScopeSpec::default();
        let mut it = args.iter().map(AsRef::as_ref);
        while let Some(arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f, Some(v)),
                _ => (arg, None),
            };
            let known = [
                "--scope",
                "--endpoints",
                "--budget",
                "--ttl",
                "--expires",
                "--rpm",
                "--tpm",
                "--max-requests",
                "--max-output-tokens",
                "--session",
            ];
            let Some(&flag) = known.iter().find(|k| **k == flag) else {
                return Err(ScopeError::UnknownFlag(flag.to_string()));
            };
            let value = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .ok_or_else(|| ScopeError::MissingValue(flag.to_string()))?,
            };
            let once = |slot: bool| {
                if slot {
                    Err(ScopeError::Conflict(format!("{flag} given twice")))
                } else {
                    Ok(())
                }
            };
            match flag {
                "--scope" => spec.scopes.push(value.to_string()),
                "--budget" => spec.budget.push(value.to_string()),
                "--endpoints" => {
                    once(spec.endpoints.is_some())?;
                    spec.endpoints = Some(value.to_string());
                }
                "--ttl" => {
                    once(spec.ttl.is_some())?;
                    spec.ttl = Some(value.to_string());
                }
                "--expires" => {
                    once(spec.expires.is_some())?;
                    spec.expires = Some(parse_expires(value)?);
                }
                "--rpm" => {
                    once(spec.rpm.is_some())?;
                    spec.rpm = Some(parse_number(flag, value)?);
                }
                "--tpm" => {
                    once(spec.tpm.is_some())?;
                    spec.tpm = Some(parse_number(flag, value)?);
                }
                "--max-requests" => {
                    once(spec.max_requests.is_some())?;
                    spec.max_requests = Some(parse_number(flag, value)?);
                }
                "--max-output-tokens" => {
                    once(spec.max_output_tokens.is_some())?;
                    spec.max_output_tokens = Some(parse_number(flag, value)?);
                }
                _ => {
                    once(spec.session.is_some())?;
                    spec.session = Some(value.to_string());
                }
            }
        }
        Ok(spec)
    }

    /// Refuses a spec that asks for more than `parent` can give: a provider or model its
    /// allow lists do not all cover, endpoints it does not allow, or a later expiry, bigger
    /// budget or higher rate. Attenuation could never widen the key anyway; this turns a
    /// silently useless child key into a clear error.
    pub fn check_narrower(
        &self,
        parent: &Token,
        now: u64,
        known_providers: &[&str],
    ) -> Result<(), ScopeError> {
        let requested = self.to_caveats(now, known_providers)?;
        let eff = Effective::of(parent);
        for c in &requested {
            match c {
                Caveat::Allow(patterns) => {
                    for p in patterns {
                        if let Some(list) = eff.allow.iter().find(|list| !pattern_covered(list, p))
                        {
                            return Err(ScopeError::Wider {
                                flag: "--scope",
                                requested: p.to_string(),
                                parent: format!("allowed: {}", join_or_nothing(list)),
                            });
                        }
                    }
                }
                Caveat::Endpoints(set) => {
                    if !eff.endpoints.is_some_and(|parent| set.is_subset(parent)) {
                        return Err(ScopeError::Wider {
                            flag: "--endpoints",
                            requested: set.to_string(),
                            parent: format!(
                                "endpoints: {}",
                                eff.endpoints.map_or("none".to_string(), |e| e.to_string())
                            ),
                        });
                    }
                }
                Caveat::Expires(at) => wider_than(
                    if self.ttl.is_some() {
                        "--ttl"
                    } else {
                        "--expires"
                    },
                    *at,
                    eff.expires,
                    |v| format!("expiring {}", format_expires(v)),
                    &self.ttl.clone().unwrap_or_else(|| format_expires(*at)),
                )?,
                Caveat::BudgetUsd(v) => wider_than(
                    "--budget",
                    *v,
                    eff.usd,
                    |v| format!("budget {}", Budget::Usd(v)),
                    &Budget::Usd(*v).to_string(),
                )?,
                Caveat::BudgetTokens(v) => wider_than(
                    "--budget",
                    *v,
                    eff.tokens,
                    |v| format!("budget {}", Budget::Tokens(v)),
                    &Budget::Tokens(*v).to_string(),
                )?,
                Caveat::Rpm(v) => {
                    let v = u64::from(*v);
                    wider_than("--rpm", v, eff.rpm, |p| format!("rpm {p}"), &v.to_string())?
                }
                Caveat::Tpm(v) => {
                    wider_than("--tpm", *v, eff.tpm, |p| format!("tpm {p}"), &v.to_string())?
                }
                Caveat::MaxRequests(v) => wider_than(
                    "--max-requests",
                    *v,
                    eff.max_requests,
                    |p| format!("max requests {p}"),
                    &v.to_string(),
                )?,
                Caveat::MaxOutputTokens(v) => wider_than(
                    "--max-output-tokens",
                    *v,
                    eff.max_output_tokens,
                    |p| format!("max output tokens {p}"),
                    &v.to_string(),
                )?,
                Caveat::Session(s) => {
                    if let Some(other) = eff.sessions.iter().find(|p| *p != s) {
                        return Err(ScopeError::Wider {
                            flag: "--session",
                            requested: s.clone(),
                            parent: format!("bound to session {other}"),
                        });
                    }
                }
                Caveat::Unknown { .. } => {}
            }
        }
        Ok(())
    }
}

fn join_or_nothing(patterns: &[ModelPattern]) -> String {
    if patterns.is_empty() {
        "nothing".into()
    } else {
        patterns
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn wider_than(
    flag: &'static str,
    requested: u64,
    parent: Option<u64>,
    describe: impl Fn(u64) -> String,
    shown: &str,
) -> Result<(), ScopeError> {
    match parent {
        Some(p) if requested > p => Err(ScopeError::Wider {
            flag,
            requested: shown.to_string(),
            parent: describe(p),
        }),
        _ => Ok(()),
    }
}

/// Quotes an argument for a POSIX shell when it needs it.
fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:@+,=%".contains(&b));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

impl fmt::Display for ScopeSpec {
    /// The flags, shell-quoted: `--scope 'openai/gpt-4o*' --budget 5usd --expires …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let args = self.to_args();
        for (i, a) in args.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(&shell_quote(a))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
