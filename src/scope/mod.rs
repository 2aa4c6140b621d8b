//! The human scope syntax (`--scope openai/gpt-4o* --budget 5usd --ttl 30m …`) ⇄ caveats.
//!
//! This module turns command-line flags into canonical caveats and back, and explains bad
//! input by pointing at the offending part. It owns no policy (defaults such as the standard
//! TTL are the caller's) and never mints or verifies anything.

use std::fmt;

use crate::childkey::{Caveat, EndpointSet, ModelPattern, Token, canonicalize};
use crate::error::UserError;

mod narrow;
mod parse;

use narrow::{Effective, join_or_nothing, min_opt, pattern_covered, wider_than};
use parse::parse_number;
pub use parse::{
    format_expires, format_usd, parse_budget, parse_endpoints, parse_expires, parse_pattern,
    parse_ttl,
};

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

/// `text` with its control characters written as escapes (`\n`, `\u{1b}`), so that an error
/// quoting a scope with a newline in it stays on its line.
fn visible(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A bad scope, pointing at the part that is wrong. Becomes a usage error (exit 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// A character that does not belong where it is (positions count characters from 1).
    #[error(
        "`{}`: unexpected `{}` at position {position} — {advice}",
        visible(input),
        visible(&found.to_string())
    )]
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
    #[error("unknown provider `{provider}`{} (known: {})",
            if input == provider { String::new() } else { format!(" in `{input}`") },
            known.join(", "))]
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
                        "endpoints are a comma list of inference, models, files, batches, admin, realtime, or `all`"
                    }
                    "--ttl" => "durations look like 30m, 2h or 7d",
                    "--rpm" | "--tpm" | "--max-requests" | "--max-output-tokens" => {
                        "a limit is a whole number of at least 1; leave it out for no limit"
                    }
                    "--expires" => "give a time as 2026-11-27T21:00:00Z or unix seconds",
                    "--session" => "a session id uses ASCII letters, digits, `-`, `_` and `.`",
                    _ => return None,
                };
                Some(example.into())
            }
            ScopeError::UnknownProvider {
                provider, known, ..
            } => Some(match closest(provider, known) {
                Some(near) => format!("did you mean `{near}`?"),
                None => format!(
                    "describe it under [providers.{provider}] in config.toml (its `api` and `base_url`), then store its key with `till add {provider}`"
                ),
            }),
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
            if matches!(budget, Budget::Usd(0) | Budget::Tokens(0)) {
                return Err(ScopeError::Invalid {
                    flag: "--budget",
                    input: b.clone(),
                    problem:
                        "a key with a budget of 0 can make no request; leave it out for no budget"
                            .into(),
                });
            }
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
        // A limit of 0 makes a key that can never be used: refused like a budget of 0.
        for (flag, value) in [
            ("--rpm", self.rpm.map(u64::from)),
            ("--tpm", self.tpm),
            ("--max-requests", self.max_requests),
        ] {
            if value == Some(0) {
                return Err(ScopeError::Invalid {
                    flag,
                    input: "0".into(),
                    problem: "a key allowed 0 can make no request; give at least 1, or leave it out for no limit".into(),
                });
            }
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
            // Gemini reads a ceiling of 0 as none at all: a key capped at 0 would have its
            // requests sent with no cap.
            if v == 0 {
                return Err(ScopeError::Invalid {
                    flag: "--max-output-tokens",
                    input: v.to_string(),
                    problem: "a key that allows no output tokens can make no request that answers (and a ceiling of 0 means none to Gemini); leave the flag out for no cap".into(),
                });
            }
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

impl fmt::Display for ScopeSpec {
    /// The flags, shell-quoted: `--scope 'openai/gpt-4o*' --budget 5usd --expires …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let args = self.to_args();
        for (i, a) in args.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(&crate::output::shell_quote(a))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

/// The name in `known` nearest to `name` within two edits (a typo: a letter missing, added,
/// changed or two swapped), if no other is as near.
pub(crate) fn closest<'k>(name: &str, known: &'k [String]) -> Option<&'k str> {
    let mut best: Option<(usize, &str)> = None;
    let mut tied = false;
    for k in known {
        let d = strsim::damerau_levenshtein(name, k);
        if d > 2 {
            continue;
        }
        match best {
            Some((b, _)) if d > b => {}
            Some((b, _)) if d == b => tied = true,
            _ => {
                best = Some((d, k));
                tied = false;
            }
        }
    }
    best.filter(|_| !tied).map(|(_, k)| k)
}
