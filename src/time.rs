//! Wall-clock helpers: unix seconds, RFC 3339 printing, human durations and ages.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the unix epoch, now.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// RFC 3339 in UTC with second precision (`2026-11-27T21:20:18Z`). A time past the year 9999,
/// which RFC 3339 cannot write (a key decoded without being verified may say anything), is
/// written as that year's last second.
pub fn rfc3339(unix: u64) -> String {
    /// 9999-12-31T23:59:59Z.
    const LAST: u64 = 253_402_300_799;
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix.min(LAST))).to_string()
}

/// A Unix time written as [`rfc3339`] where a struct is printed as JSON (`#[serde(serialize_with
/// = "crate::time::json::serialize")]`): every `--json` time reads the same.
pub mod json {
    use serde::Serializer;

    pub fn serialize<S: Serializer>(unix: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::rfc3339(*unix))
    }

    /// The same for an optional time (`null` when there is none).
    pub mod option {
        use serde::Serializer;

        pub fn serialize<S: Serializer>(unix: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
            match unix {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }
    }
}

/// Longest duration text accepted, and the most digits in one number of it.
const MAX_DURATION_TEXT: usize = 64;
const MAX_DURATION_DIGITS: usize = 10;

/// The longest duration accepted: 100 years (humantime's years of 365.25 days). Every duration
/// becomes a time (an expiry, a grace's end, a day back), and no key needs to outlive it.
pub const LONGEST: Duration = Duration::from_secs(100 * 31_557_600);

/// Parses a human duration (`30m`, `1h`, `7d`, `90d`).
///
/// humantime panics instead of failing when the seconds are near `u64::MAX` and fractions
/// carry into them (`18446744073709551615s 0.5s 0.5s`). Texts of at most 64 characters
/// whose numbers have at most 10 digits stay far below that (under 10^19 ns even in years),
/// and no real duration needs more.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let longest_number = t
        .split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    if t.len() > MAX_DURATION_TEXT || longest_number > MAX_DURATION_DIGITS {
        return Err(format!("invalid duration `{text}`: too long"));
    }
    let d = humantime::parse_duration(t).map_err(|e| {
        use humantime::DurationError as E;
        // humantime's own words name units till's examples do not use (`5sec or 5ms` for a
        // TTL) and count positions from 0.
        let why = match e {
            E::UnknownUnit { unit, .. } if unit.is_empty() => {
                "a number needs a unit: s, m, h or d (30m, 2h, 7d)".to_string()
            }
            E::UnknownUnit { unit, .. } => format!(
                "unknown unit `{}`; use s, m, h or d (30m, 2h, 7d)",
                crate::output::printable(&unit)
            ),
            E::NumberExpected(at) | E::InvalidCharacter(at) => {
                format!(
                    "unexpected text at character {}",
                    t[..at].chars().count() + 1
                )
            }
            E::NumberOverflow => "too long".to_string(),
            E::Empty => "empty".to_string(),
        };
        format!(
            "invalid duration `{}`: {why}",
            crate::output::printable(text)
        )
    })?;
    if d > LONGEST {
        return Err(format!(
            "invalid duration `{}`: longer than 100 years",
            crate::output::printable(text)
        ));
    }
    Ok(d)
}

/// A short human rendering of a duration, to the largest whole unit (`3d`, `5h`, `12m`, `40s`).
pub fn short_duration(secs: u64) -> String {
    match secs {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3_600 => format!("{}h", s / 3_600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// A duration written out whole in days, hours, minutes and seconds (`60d`, `1d12h`,
/// `1h30m`, `45s`, `1s500ms`), as `--ttl` and config.toml take it: humantime's own form counts months of
/// 30.44 days (`60d` is `1month 29days 13h 30m 36s`).
pub fn duration_text(d: Duration) -> String {
    let secs = d.as_secs();
    if d.as_millis() == 0 {
        return "0s".into();
    }
    [
        (secs / 86_400, "d"),
        (secs % 86_400 / 3_600, "h"),
        (secs % 3_600 / 60, "m"),
        (secs % 60, "s"),
        (u64::from(d.subsec_millis()), "ms"),
    ]
    .into_iter()
    .filter(|&(n, _)| n > 0)
    .map(|(n, unit)| format!("{n}{unit}"))
    .collect()
}

/// A time in RFC 3339 (`2026-11-01T09:00:00Z`, `2026-11-01T10:00:00+01:00`, a fraction of a
/// second allowed), or without a zone (read as UTC; a space for the `T` too), as Unix seconds.
/// humantime's weak parse alone read the time before an offset as UTC, ignoring the offset.
pub fn parse_time(text: &str) -> Option<u64> {
    let unix = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    if let Some((time, sign, hours, minutes)) = split_offset(text) {
        let at = unix(humantime::parse_rfc3339_weak(time).ok()?);
        let offset = hours * 3600 + minutes * 60;
        return Some(if sign == b'+' {
            at.saturating_sub(offset)
        } else {
            at.saturating_add(offset)
        });
    }
    humantime::parse_rfc3339_weak(text).ok().map(unix)
}

/// `TIME±HH:MM` as the time, the sign and the offset's hours and minutes.
fn split_offset(text: &str) -> Option<(&str, u8, u64, u64)> {
    let at = text.len().checked_sub(6).filter(|at| *at >= 19)?;
    let (time, offset) = (text.get(..at)?, text.get(at..)?.as_bytes());
    let digits = |b: &[u8]| {
        b.iter()
            .all(u8::is_ascii_digit)
            .then(|| b.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
    };
    match offset {
        [sign @ (b'+' | b'-'), h @ .., b':', m1, m2] if h.len() == 2 => {
            let (hours, minutes) = (digits(h)?, digits(&[*m1, *m2])?);
            (hours < 24 && minutes < 60).then_some((time, *sign, hours, minutes))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_text_is_whole_units_without_months() {
        let text = |s| duration_text(Duration::from_secs(s));
        assert_eq!(text(0), "0s");
        assert_eq!(text(45), "45s");
        assert_eq!(text(5_400), "1h30m");
        assert_eq!(text(36 * 3_600), "1d12h");
        assert_eq!(text(60 * 86_400), "60d");
        assert_eq!(text(86_400 + 61), "1d1m1s");
        assert_eq!(duration_text(Duration::from_millis(1_500)), "1s500ms");
        for s in [1, 59, 3_601, 90_061, 5_184_000] {
            assert_eq!(parse_duration(&text(s)), Ok(Duration::from_secs(s)), "{s}");
        }
    }

    /// humantime's own words suggested `5sec or 5ms` beside a hint of `30m, 2h or 7d`.
    #[test]
    fn a_bad_duration_says_what_is_wrong_in_tills_units() {
        let err = |t: &str| parse_duration(t).unwrap_err();
        assert_eq!(
            err("5"),
            "invalid duration `5`: a number needs a unit: s, m, h or d (30m, 2h, 7d)"
        );
        assert!(err("5x").contains("unknown unit `x`"), "{}", err("5x"));
        assert!(err("ten").ends_with("unexpected text at character 1"));
        assert!(err("").ends_with("empty"));
        // What the user typed is shown escaped: an ESC in it does not reach the terminal.
        assert!(!err("5m\u{1b}").contains('\u{1b}'));
    }

    #[test]
    fn short_duration_picks_largest_unit() {
        assert_eq!(short_duration(59), "59s");
        assert_eq!(short_duration(60), "1m");
        assert_eq!(short_duration(7_200), "2h");
        assert_eq!(short_duration(90 * 86_400), "90d");
    }

    /// Regression (found by the `parse_scope` fuzz target): humantime panicked with
    /// "overflow in Duration::new" on a huge number of seconds plus carrying fractions.
    #[test]
    fn huge_durations_are_refused_not_a_panic() {
        let fuzzed = format!(
            "{}18446744073709551615s0.5s000.50s00.5secs00.5second0s0.50s00.5s00040619065430",
            "0".repeat(150)
        );
        for text in [
            fuzzed.as_str(),
            "18446744073709551615s 0.5s 0.5s",
            "584542046090y 0.6s 0.6s",
            "99999999999s",
        ] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
        assert_eq!(parse_duration("100y"), Ok(LONGEST));
        assert_eq!(parse_duration(" 1h 30m "), Ok(Duration::from_secs(5_400)));
    }

    /// Every duration becomes a time: past 100 years one could reach beyond what RFC 3339
    /// writes (a `--grace 99999y` made `till status` panic for good).
    #[test]
    fn durations_past_a_hundred_years_are_refused() {
        for text in ["101y", "99999y", "9999999999s", "36525d 1d"] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains("longer than 100 years"), "{text}: {err}");
        }
    }

    #[test]
    fn rfc3339_is_utc_seconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        // Past the year 9999 (a key decoded without being verified may say so): its last
        // second, not a panic.
        assert_eq!(rfc3339(u64::MAX), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(253_402_300_800), "9999-12-31T23:59:59Z");
    }
}
