//! Time as orch stores it (UTC milliseconds) and shows it (RFC 3339).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// RFC 3339 with milliseconds, UTC: `2026-11-28T08:36:44.123Z`.
pub fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Parses a point in time: RFC 3339, or a duration meaning "that long ago" (`10m`, `2h`).
pub fn parse_since(s: &str) -> Result<i64, String> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0));
    }
    match humantime::parse_duration(s) {
        Ok(d) => Ok(now_ms() - d.as_millis() as i64),
        Err(_) => Err(format!(
            "'{s}' is neither a time (2026-01-31T12:00:00Z) nor a duration (10m, 2h)"
        )),
    }
}

/// Parses a duration such as `30s`, `10m`, `7d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("'{s}' is not a duration ({e}); try 30s, 10m, 7d"))
}

/// A span given as seconds (`30`, `0.5`) or as a duration (`90s`, `5m`,
/// `2h`): the one reading every `--wait`/`--timeout` flag shares. Negative,
/// infinite or absurd numbers are refused; callers add their own bounds.
pub fn parse_span(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    match t.parse::<f64>() {
        Ok(x) if x.is_finite() && (0.0..1e9).contains(&x) => Ok(Duration::from_secs_f64(x)),
        Ok(_) => Err(format!(
            "'{s}' is not a number of seconds from 0 (e.g. 30, 0.5, 5m)"
        )),
        Err(_) => parse_duration(t),
    }
}

/// Seconds for people with `decimals` places: `1.5 s` (1), `1.50 s` (2).
/// Every figure in seconds that orch shows goes through this function or the
/// two below.
pub fn secs_f(secs: f64, decimals: usize) -> String {
    format!("{secs:.decimals$} s")
}

/// Milliseconds as seconds for people, two places: `1.50 s`, `0.05 s`.
pub fn secs(ms: i64) -> String {
    secs_f(ms as f64 / 1000.0, 2)
}

/// Milliseconds as seconds for people, without trailing zeros: `8 s`, `0.5 s`, `1.25 s`.
pub fn secs_short(ms: i64) -> String {
    let s = format!("{:.2}", ms as f64 / 1000.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s} s")
}

#[cfg(test)]
mod tests {
    #[test]
    fn seconds_are_shown_one_way() {
        use super::{secs, secs_f, secs_short};
        assert_eq!(secs(1500), "1.50 s");
        assert_eq!(secs(50), "0.05 s");
        assert_eq!(secs_short(8000), "8 s");
        assert_eq!(secs_short(500), "0.5 s");
        assert_eq!(secs_short(1250), "1.25 s");
        assert_eq!(secs_f(2.25, 1), "2.2 s");
    }

    #[test]
    fn spans_are_seconds_or_durations() {
        use std::time::Duration;
        assert_eq!(super::parse_span("30").unwrap(), Duration::from_secs(30));
        assert_eq!(
            super::parse_span("0.5").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(super::parse_span("5m").unwrap(), Duration::from_secs(300));
        assert!(super::parse_span("-1").is_err());
        assert!(super::parse_span("soon").is_err());
    }

    #[test]
    fn formats_utc_millis() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::rfc3339(1_500), "1970-01-01T00:00:01.500Z");
    }

    #[test]
    fn since_accepts_times_and_durations() {
        assert_eq!(super::parse_since("1970-01-01T00:00:02Z").unwrap(), 2000);
        let ago = super::parse_since("10m").unwrap();
        assert!((super::now_ms() - ago - 600_000).abs() < 5_000);
        assert!(super::parse_since("yesterday-ish").is_err());
    }
}
