//! Wall-clock helpers: unix seconds, RFC 3339 printing, human durations and ages.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the unix epoch, now.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// RFC 3339 in UTC with second precision (`2026-11-27T21:20:18Z`).
pub fn rfc3339(unix: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

/// Parses a human duration (`30m`, `1h`, `7d`, `90d`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("invalid duration `{text}`: {e}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_duration_picks_largest_unit() {
        assert_eq!(short_duration(59), "59s");
        assert_eq!(short_duration(60), "1m");
        assert_eq!(short_duration(7_200), "2h");
        assert_eq!(short_duration(90 * 86_400), "90d");
    }

    #[test]
    fn rfc3339_is_utc_seconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
