//! Time as orch stores it (UTC milliseconds) and shows it (RFC 3339).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The last moment orch stores or shows: 9999-12-31T23:59:59.999Z (RFC 3339
/// has four-digit years). Times past it in input are refused.
pub const MAX_MS: i64 = 253_402_300_799_999;

/// The longest span any flag takes: 100 years (of 365.25 days, as `100y` reads). Longer ones are refused with
/// [`parse_span`]'s message rather than overflowing a time.
pub const MAX_SPAN: Duration = Duration::from_secs(3_155_760_000);

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(ms)
        .unwrap_or(0)
}

/// A duration in milliseconds, saturating at `i64::MAX` (never wraps negative).
pub fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `at` plus `d`, saturating: a deadline that can only be later than `at`.
pub fn after(at: i64, d: Duration) -> i64 {
    at.saturating_add(ms(d))
}

/// `at` less `d`, saturating: a moment that can only be earlier than `at`.
pub fn before(at: i64, d: Duration) -> i64 {
    at.saturating_sub(ms(d))
}

/// Whether `ms` is a time orch can store and show (the epoch to [`MAX_MS`]).
pub fn in_range(ms: i64) -> bool {
    (0..=MAX_MS).contains(&ms)
}

/// RFC 3339 with milliseconds, UTC: `2026-11-28T08:36:44.123Z`. Total: times
/// before the epoch show as the epoch, times after [`MAX_MS`] as `MAX_MS`.
pub fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.clamp(0, MAX_MS) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Parses a point in time: RFC 3339, or a span ([`parse_span`]) meaning
/// "that long ago" (`10m`, `2h`, `600`).
pub fn parse_since(s: &str) -> Result<i64, String> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t.duration_since(UNIX_EPOCH).map(ms).unwrap_or(0));
    }
    match span(s) {
        Some(d) => Ok(before(now_ms(), d?)),
        None => Err(format!(
            "'{s}' is neither a time (2026-01-31T12:00:00Z) nor a duration (10m, 2h)"
        )),
    }
}

/// Parses a point in time ahead: a span from now ([`parse_span`]: `90s`,
/// `2h`, `60`) or an RFC 3339 time.
pub fn parse_until(s: &str) -> Result<i64, String> {
    if let Some(d) = span(s) {
        return Ok(after(now_ms(), d?));
    }
    match humantime::parse_rfc3339_weak(s) {
        Ok(t) => Ok(t.duration_since(UNIX_EPOCH).map(ms).unwrap_or(0)),
        Err(_) => Err(format!(
            "'{s}' is neither a duration (90s, 30m, 2h) nor an RFC 3339 time"
        )),
    }
}

/// `s` read as a span when it looks like one (a number, or a duration
/// humantime reads), checked by [`parse_span`]; `None` when it is not one.
fn span(s: &str) -> Option<Result<Duration, String>> {
    let t = s.trim();
    (t.parse::<f64>().is_ok() || humantime::parse_duration(t).is_ok()).then(|| parse_span(s))
}

/// `d` when it is at most [`MAX_SPAN`]; else the message saying so.
fn bounded(s: &str, d: Duration) -> Result<Duration, String> {
    if d <= MAX_SPAN {
        Ok(d)
    } else {
        Err(format!(
            "'{s}' is longer than 100 years, the longest span orch takes"
        ))
    }
}

/// The one span parser every flag uses (`--timeout`, `--wait`,
/// `--stale-after`, `--stalled-after`, `--gap`, `--sleep`, and under
/// [`parse_since`]/[`parse_until`]): seconds (`30`, `0.5`) or a duration
/// (`90s`, `5m`, `2h`, `7d`, `1y`). Negative, infinite or absurd numbers, and
/// spans over 100 years, are refused; callers add their own bounds.
pub fn parse_span(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    match t.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => bounded(s, Duration::from_secs_f64(x.min(1e12))),
        Ok(_) => Err(format!(
            "'{s}' is not a number of seconds from 0 (e.g. 30, 0.5, 5m)"
        )),
        Err(_) => humantime::parse_duration(t)
            .map_err(|e| format!("'{s}' is not a duration ({e}); try 30s, 10m, 7d"))
            .and_then(|d| bounded(s, d)),
    }
}

/// Seconds for people with `decimals` places: `1.5 s` (1), `1.50 s` (2).
/// Every figure in seconds that orch shows goes through this function or the
/// ones below.
pub fn secs_f(secs: f64, decimals: usize) -> String {
    format!("{secs:.decimals$} s")
}

/// Milliseconds as seconds for people, two places: `1.50 s`, `0.05 s`.
pub fn secs(ms: i64) -> String {
    secs_f(ms as f64 / 1000.0, 2)
}

/// Milliseconds as seconds for people, one place: `1.5 s`, `0.0 s`.
pub fn secs1(ms: i64) -> String {
    secs_f(ms as f64 / 1000.0, 1)
}

/// Milliseconds as seconds for people where space is short (a timeline's
/// axis, a one-line summary), one place and no space: `1.5s`.
pub fn secs1_tight(ms: i64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

/// Milliseconds as whole seconds for people, rounded down: `600 s`.
pub fn whole_secs(ms: i64) -> String {
    format!("{} s", ms / 1000)
}

/// Milliseconds as a short age for people: `42 s` below two minutes, else
/// whole minutes, `12 min`.
pub fn age(ms: i64) -> String {
    match ms / 1000 {
        s if s < 120 => format!("{s} s"),
        s => format!("{} min", s / 60),
    }
}

/// Milliseconds as seconds for people, without trailing zeros: `8 s`, `0.5 s`, `1.25 s`.
pub fn secs_short(ms: i64) -> String {
    let s = format!("{:.2}", ms as f64 / 1000.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s} s")
}

/// Serializes milliseconds since the epoch as [`rfc3339`] (`serialize_with`).
pub fn ser_rfc3339<S: serde::Serializer>(t: &i64, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

/// [`ser_rfc3339`] for an optional time: `null` when there is none.
pub fn ser_rfc3339_opt<S: serde::Serializer>(
    t: &Option<i64>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match t {
        Some(ms) => ser_rfc3339(ms, s),
        None => s.serialize_none(),
    }
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
        assert_eq!(super::secs1(1250), "1.2 s");
        assert_eq!(super::whole_secs(600_999), "600 s");
        assert_eq!(super::secs1_tight(1500), "1.5s");
        assert_eq!(super::age(119_999), "119 s");
        assert_eq!(super::age(720_000), "12 min");
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
    fn rfc3339_is_total_out_of_range_times_are_clamped() {
        use super::rfc3339;
        assert_eq!(rfc3339(i64::MIN), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(super::MAX_MS), "9999-12-31T23:59:59.999Z");
        for ms in [253_402_300_800_000, i64::MAX] {
            assert_eq!(rfc3339(ms), "9999-12-31T23:59:59.999Z");
        }
    }

    #[test]
    fn spans_over_a_hundred_years_are_refused_not_wrapped() {
        use super::*;
        for s in [
            "9223372036854775s",
            "18446744073709551s",
            "8000y",
            "101y",
            "1e300",
        ] {
            let e = parse_span(s).unwrap_err();
            assert!(e.contains("100 years"), "{s}: {e}");
            assert!(parse_until(s).is_err() || s == "1e300", "{s}");
        }
        for s in ["9223372036854776s", "8000y"] {
            assert!(parse_since(s).unwrap_err().contains("100 years"));
            assert!(parse_until(s).unwrap_err().contains("100 years"));
        }
        assert!(parse_span("100y").is_ok());
        assert_eq!(ms(Duration::MAX), i64::MAX);
        assert_eq!(after(i64::MAX - 1, Duration::from_secs(1)), i64::MAX);
        assert_eq!(before(i64::MIN + 1, Duration::from_secs(1)), i64::MIN);
    }

    #[test]
    fn since_accepts_times_and_durations() {
        assert_eq!(super::parse_since("1970-01-01T00:00:02Z").unwrap(), 2000);
        let ago = super::parse_since("10m").unwrap();
        assert!((super::now_ms() - ago - 600_000).abs() < 5_000);
        assert!(super::parse_since("yesterday-ish").is_err());
        let ago = super::parse_since("60").unwrap();
        assert!((super::now_ms() - ago - 60_000).abs() < 5_000);
    }

    #[test]
    fn until_takes_bare_seconds_like_every_span() {
        let at = super::parse_until("60").unwrap();
        assert!((at - super::now_ms() - 60_000).abs() < 5_000);
        assert!(super::parse_until("-5").is_err());
        assert_eq!(super::parse_until("1970-01-01T00:00:02Z").unwrap(), 2000);
    }
}
