//! Parsing and printing the pieces of the scope syntax: model patterns, budgets, endpoint
//! lists, durations and expiries, and the exact decimal form budgets print in. Each parser
//! explains bad input by pointing at the offending part; none of them knows a policy.

use std::time::Duration;

use super::{Budget, MAX_RFC3339, ScopeError};
use crate::childkey::{EndpointClass, EndpointSet, ModelPattern};

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
        // A key pasted where a model belongs would be kept in the ledger and shown by `till
        // key list` and every key's scope.
        if glob.len() >= 20
            && crate::output::PROVIDER_KEY_PREFIXES
                .iter()
                .any(|p| glob.starts_with(p))
        {
            return Err(invalid(
                "this looks like a provider's key, not a model; a key's scope is shown by `till key list` to anyone at your screen".into(),
            ));
        }
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
                        "unknown endpoint class `{}` at position {position} (known: inference, models, files, batches, admin, realtime, all)",
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
    crate::time::parse_time(t).ok_or_else(|| ScopeError::Invalid {
        flag: "--expires",
        input: text.to_string(),
        problem: "not a time such as 2026-11-27T21:00:00Z or 2026-11-27T22:00:00+01:00".into(),
    })
}

pub(super) fn parse_number<T: std::str::FromStr>(
    flag: &'static str,
    text: &str,
) -> Result<T, ScopeError> {
    text.trim().parse().map_err(|_| ScopeError::Invalid {
        flag,
        input: text.to_string(),
        problem: "not a whole number in range".into(),
    })
}
