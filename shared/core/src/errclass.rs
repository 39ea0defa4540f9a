//! Why an attempt failed, as a class that says what to do next: retry after a
//! backoff, pause every runner until a usage limit resets, or give up.
//!
//! Claude Code's `--output-format json` result on an API error carries
//! `is_error: true`, `api_error_status` (the HTTP status), `api_error_type`,
//! `terminal_reason` and the text in `result`; its `subtype` stays
//! `"success"`. Older versions wrote a usage limit as
//! `Claude AI usage limit reached|EPOCH`; current ones as
//! `You've hit your 5-hour limit · resets 2:34am (UTC)`.

use std::time::Duration;

use serde::Serialize;

/// The class of a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    RateLimited,
    Overloaded,
    UsageLimit,
    Auth,
    Timeout,
    Killed,
    AgentError,
    SpawnError,
    Lost,
}

impl Class {
    pub const ALL: [Class; 9] = [
        Class::RateLimited,
        Class::Overloaded,
        Class::UsageLimit,
        Class::Auth,
        Class::Timeout,
        Class::Killed,
        Class::AgentError,
        Class::SpawnError,
        Class::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::RateLimited => "rate_limited",
            Class::Overloaded => "overloaded",
            Class::UsageLimit => "usage_limit",
            Class::Auth => "auth",
            Class::Timeout => "timeout",
            Class::Killed => "killed",
            Class::AgentError => "agent_error",
            Class::SpawnError => "spawn_error",
            Class::Lost => "lost",
        }
    }

    pub fn parse(s: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether another attempt may succeed: the transient API answers and a
    /// runner lost mid-task. A usage limit is retried after its reset (see
    /// [`crate::limits`]). A timeout is not (the same task would most likely
    /// overrun again); auth, agent errors and spawn errors fail at once.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Class::RateLimited | Class::Overloaded | Class::UsageLimit | Class::Lost
        )
    }
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A class, and what the failure said about when to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub class: Class,
    /// When a usage limit resets (ms since the epoch), when the text says.
    pub reset_at: Option<i64>,
    /// A `Retry-After`-style hint.
    pub retry_after: Option<Duration>,
}

/// How an agent process ended.
#[derive(Debug, Clone, Default)]
pub struct Ending<'a> {
    pub stdout: &'a str,
    pub stderr: &'a str,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub interrupted: bool,
    pub spawn_failed: bool,
}

/// The result object of `claude -p --output-format json`, if stdout holds one.
pub fn result_object(stdout: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let object = |s: &str| serde_json::from_str::<serde_json::Map<_, _>>(s.trim()).ok();
    object(stdout)
        .or_else(|| {
            stdout
                .lines()
                .rev()
                .filter(|l| !l.trim().is_empty())
                .find_map(object)
        })
        .filter(|o| {
            o.get("type").and_then(|t| t.as_str()) == Some("result")
                || o.get("is_error").is_some_and(|e| e.is_boolean())
        })
}

/// Classifies a failed attempt; `now` (ms) anchors reset times without a date.
pub fn classify(e: &Ending, now: i64) -> Classified {
    let plain = |class| Classified {
        class,
        reset_at: None,
        retry_after: None,
    };
    if e.spawn_failed {
        return plain(Class::SpawnError);
    }
    if e.timed_out {
        return plain(Class::Timeout);
    }
    if e.interrupted || e.signal.is_some() {
        return plain(Class::Killed);
    }
    let obj = result_object(e.stdout);
    let status = obj
        .as_ref()
        .and_then(|o| o.get("api_error_status"))
        .and_then(|v| v.as_i64());
    let kind = obj
        .as_ref()
        .and_then(|o| o.get("api_error_type"))
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let mut text = String::new();
    if let Some(o) = &obj {
        if let Some(r) = o.get("result").and_then(|v| v.as_str()) {
            text.push_str(r);
            text.push('\n');
        }
        if let Some(a) = o.get("errors").and_then(|v| v.as_array()) {
            for x in a {
                text.push_str(x.as_str().unwrap_or_default());
                text.push('\n');
            }
        }
    } else {
        text.push_str(e.stdout);
        text.push('\n');
    }
    text.push_str(e.stderr);
    classify_text(&text, status, kind, now)
}

/// Classifies an error from its text, with the HTTP status and error type when known.
pub fn classify_text(text: &str, status: Option<i64>, kind: &str, now: i64) -> Classified {
    let lower = text.to_lowercase();
    let retry_after = retry_hint(&lower);
    let mk = |class, reset_at| Classified {
        class,
        reset_at,
        retry_after,
    };
    if let Some(reset) = usage_limit(text, now) {
        return mk(
            Class::UsageLimit,
            reset.filter(|&at| plausible_reset(at, now)),
        );
    }
    const AUTH: [&str; 9] = [
        "invalid api key",
        "not logged in",
        "please run /login",
        "authentication failed",
        "oauth token has expired",
        "oauth token expired",
        "oauth token revoked",
        "401 unauthorized",
        "403 forbidden",
    ];
    if matches!(status, Some(401) | Some(403))
        || kind == "authentication_error"
        || kind == "permission_error"
        || AUTH.iter().any(|a| lower.contains(a))
    {
        return mk(Class::Auth, None);
    }
    if lower.contains("credit balance is too low") || kind == "billing_error" {
        return mk(Class::UsageLimit, None);
    }
    if status == Some(529)
        || kind == "overloaded_error"
        || lower.contains("overloaded")
        || lower.contains("at capacity")
    {
        return mk(Class::Overloaded, None);
    }
    if status == Some(429)
        || kind == "rate_limit_error"
        || lower.contains("(429)")
        || lower.contains("rate limit")
        || lower.contains("temporarily limiting requests")
    {
        return mk(Class::RateLimited, None);
    }
    mk(Class::AgentError, None)
}

/// `retry-after: N` or `retry after N seconds` in a message.
fn retry_hint(lower: &str) -> Option<Duration> {
    for key in ["retry-after:", "retry-after", "retry after", "try again in"] {
        if let Some(i) = lower.find(key) {
            let rest = lower[i + key.len()..].trim_start();
            let n: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            if let Ok(s) = n.parse::<u64>() {
                if s > 0 && s < 7 * 86_400 {
                    return Some(Duration::from_secs(s));
                }
            }
        }
    }
    None
}

/// Whether a reset time an agent's text gave is one to wait for: ahead of
/// `now`, by at most a week (no usage limit lasts longer). Anything else is
/// treated as no reset time at all, so a message cannot pause every runner
/// until the year 9999.
fn plausible_reset(at: i64, now: i64) -> bool {
    at > now && at - now <= MAX_RESET_MS
}

/// The furthest ahead a usage limit's reset time is believed: 7 days.
const MAX_RESET_MS: i64 = 7 * 86_400_000;

/// `Some(reset)` when `text` reports a usage limit (the reset time in ms when it gives one).
fn usage_limit(text: &str, now: i64) -> Option<Option<i64>> {
    for line in text.lines() {
        let l = line.trim();
        // Claude Code 1.0.x: `Claude AI usage limit reached|1762952400`.
        if let Some(i) = l.find("usage limit reached|") {
            let n: String = l[i + "usage limit reached|".len()..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            // A reset orch cannot store or show is no reset time.
            return Some(
                n.parse::<i64>()
                    .ok()
                    .and_then(|s| s.checked_mul(1000))
                    .filter(|&ms| crate::time::in_range(ms)),
            );
        }
        // 1.0.x prose: `Claude usage limit reached. Your limit will reset at 5pm (Europe/Warsaw).`
        if let Some(i) = l.find("will reset at ") {
            if l.to_lowercase().contains("limit") {
                return Some(human_time(&l[i + "will reset at ".len()..], now));
            }
        }
        // 2.x: `You've hit your 5-hour limit · resets 2:34am (UTC)`.
        const PREFIXES: [&str; 4] = [
            "You've hit your",
            "You’ve hit your",
            "You've reached your",
            "You’ve reached your",
        ];
        if PREFIXES.iter().any(|p| l.starts_with(p)) {
            let reset = l
                .find("resets ")
                .map(|i| &l[i + "resets ".len()..])
                .map(|r| r.strip_prefix("at ").unwrap_or(r))
                .and_then(|r| human_time(r.split(" · ").next().unwrap_or(r), now));
            return Some(reset);
        }
        let lower = l.to_lowercase();
        if lower.contains("usage limit reached")
            || lower.starts_with("you're out of usage credits")
            || lower.starts_with("you're out of extra usage")
            || lower.starts_with("your org is out of usage")
        {
            let reset = find_ascii_nocase(l, "resets ")
                .and_then(|i| human_time(&l[i + "resets ".len()..], now));
            return Some(reset);
        }
    }
    None
}

/// The byte offset in `hay` of ASCII `needle`, ignoring ASCII case. The
/// offset is one of `hay` itself (lowercasing can change lengths: `İ` is 2
/// bytes, its lowercase 3), so it always slices `hay` on a char boundary.
fn find_ascii_nocase(hay: &str, needle: &str) -> Option<usize> {
    let n = needle.as_bytes();
    hay.as_bytes()
        .windows(n.len())
        .position(|w| w.eq_ignore_ascii_case(n))
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// Parses `2:34am (UTC)`, `3pm (Europe/Warsaw)`, `11:00 (America/New_York)`,
/// `Dec 3, 2:34am (UTC)`, `Oct 6, 6pm.` as the next such moment after `now`,
/// in the zone named in parentheses (looked up in the system's time zone
/// database). Without a zone, or with one the database does not know, the
/// time is read in this machine's local zone.
pub fn human_time(s: &str, now: i64) -> Option<i64> {
    let s = s.trim().trim_end_matches('.');
    let (body, zone) = match s.find('(') {
        Some(i) => (
            s[..i].trim(),
            s[i + 1..].split(')').next().unwrap_or("").trim(),
        ),
        None => (s, ""),
    };
    let tz = zone_named(zone);
    let body = body.trim().trim_end_matches('.').to_lowercase();
    let body = body.strip_prefix("at ").unwrap_or(&body).to_string();
    // An optional `Mon D[, YYYY],` date before the clock time.
    let mut date: Option<(Option<i32>, u32, u32)> = None;
    let mut clock = body.as_str();
    if let Some(m) = MONTHS.iter().position(|m| body.starts_with(m)) {
        let rest = body.split_once(' ')?.1;
        let (day, rest) = rest.split_once(',')?;
        let day: u32 = day.trim().parse().ok()?;
        let rest = rest.trim();
        let (year, rest) = match rest.split_once(',') {
            Some((y, r)) if y.trim().len() == 4 => (y.trim().parse().ok(), r.trim()),
            _ => (None, rest),
        };
        date = Some((year, m as u32 + 1, day));
        clock = rest;
    }
    let clock = clock.trim();
    let (digits, pm) = if let Some(c) = clock.strip_suffix("pm") {
        (c.trim(), Some(true))
    } else if let Some(c) = clock.strip_suffix("am") {
        (c.trim(), Some(false))
    } else {
        (clock, None)
    };
    let (h, m) = match digits.split_once(':') {
        Some((h, m)) => (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?),
        None => (digits.parse::<u32>().ok()?, 0),
    };
    let h = match pm {
        Some(true) if h < 12 => h + 12,
        Some(false) if h == 12 => 0,
        Some(_) if h > 12 => return None,
        _ => h,
    };
    if h > 23 || m > 59 {
        return None;
    }
    let now_s = now / 1000;
    let today = civil(now_s, &tz);
    let candidate = |y: i32, mo: u32, d: u32| to_epoch(y, mo, d, h, m, &tz);
    let at = match date {
        Some((year, mo, d)) => {
            let y = year.unwrap_or(today.0);
            let t = candidate(y, mo, d)?;
            if year.is_none() && t < now_s - 86_400 {
                candidate(y + 1, mo, d)?
            } else {
                t
            }
        }
        None => {
            let t = candidate(today.0, today.1, today.2)?;
            if t <= now_s {
                t + 86_400
            } else {
                t
            }
        }
    };
    Some(at * 1000)
}

/// The zone a reset time names: UTC, an IANA name the system's time zone
/// database knows (`Europe/Warsaw`), else this machine's local zone.
fn zone_named(name: &str) -> jiff::tz::TimeZone {
    if matches!(name, "UTC" | "GMT" | "Etc/UTC" | "Z") {
        return jiff::tz::TimeZone::UTC;
    }
    // Only names shaped like the database's (`Area/City`, `EST5EDT`) are looked up.
    let shaped = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('/')
        && !name
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+'));
    if shaped {
        if let Ok(tz) = jiff::tz::TimeZone::get(name) {
            return tz;
        }
    }
    jiff::tz::TimeZone::system()
}

/// (year, month, day) of epoch second `s` in zone `tz`.
fn civil(s: i64, tz: &jiff::tz::TimeZone) -> (i32, u32, u32) {
    let Ok(t) = jiff::Timestamp::from_second(s) else {
        return (1970, 1, 1);
    };
    let d = t.to_zoned(tz.clone()).date();
    (i32::from(d.year()), d.month() as u32, d.day() as u32)
}

/// Epoch seconds of a civil time in zone `tz`.
fn to_epoch(y: i32, mo: u32, d: u32, h: u32, m: u32, tz: &jiff::tz::TimeZone) -> Option<i64> {
    let date = jiff::civil::Date::new(
        i16::try_from(y).ok()?,
        i8::try_from(mo).ok()?,
        i8::try_from(d).ok()?,
    )
    .ok()?;
    let dt = date.at(i8::try_from(h).ok()?, i8::try_from(m).ok()?, 0, 0);
    let z = dt.to_zoned(tz.clone()).ok()?;
    Some(z.timestamp().as_second())
}

/// The delay before retry number `n` (1-based) with full jitter: uniform in
/// `[0, min(cap, base * 2^(n-1))]`, but never less than a hint the error gave.
pub fn backoff(n: u32, base: Duration, cap: Duration, hint: Option<Duration>) -> Duration {
    let ceiling = base
        .saturating_mul(1u32 << (n.saturating_sub(1)).min(20))
        .min(cap);
    let jittered = ceiling.mul_f64(random_unit());
    match hint {
        Some(h) => jittered.max(h),
        None => jittered,
    }
}

/// A number in [0, 1) from the clock and the pid (jitter needs spread, not secrecy).
fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-29T23:00:00Z
    const NOW: i64 = 1_795_993_200_000;

    #[test]
    fn human_reset_times_are_the_next_such_moment() {
        let at = |s| human_time(s, NOW);
        assert_eq!(at("2:34am (UTC)"), Some(NOW + (3 * 3600 + 34 * 60) * 1000));
        assert_eq!(at("11pm (UTC)"), Some(NOW + 86_400_000));
        assert_eq!(at("11:30pm (UTC)"), Some(NOW + 1_800_000));
        assert_eq!(
            at("Dec 3, 2:34am (UTC)"),
            Some(NOW + (3 * 86_400 + 3 * 3600 + 34 * 60) * 1000)
        );
        assert_eq!(at("nonsense"), None);
        assert_eq!(at("13pm (UTC)"), None);
    }

    #[test]
    fn a_named_zone_is_read_in_that_zone() {
        let at = |s| human_time(s, NOW);
        // November: Warsaw is UTC+1, New York UTC-5.
        assert_eq!(at("3pm (Europe/Warsaw)"), Some(NOW + 15 * 3_600_000));
        assert_eq!(
            at("at 11:00 (America/New_York)"),
            Some(NOW + 17 * 3_600_000)
        );
        assert_eq!(
            at("Dec 3, 2:34am (America/New_York)"),
            Some(NOW + (3 * 86_400 + 8 * 3600 + 34 * 60) * 1000)
        );
        // July: summer time, Warsaw UTC+2. 2026-07-01T10:00:00Z.
        let july = 1_782_900_000_000;
        assert_eq!(
            human_time("3pm (Europe/Warsaw)", july),
            Some(july + 3 * 3_600_000)
        );
        // The whole messages, as Claude Code prints them.
        let c = classify_text(
            "You've hit your 5-hour limit · resets 3pm (Europe/Warsaw)",
            None,
            "",
            NOW,
        );
        assert_eq!(c.reset_at, Some(NOW + 15 * 3_600_000));
        let c = classify_text(
            "Claude usage limit reached. Your limit will reset at 11:00 (America/New_York).",
            None,
            "",
            NOW,
        );
        assert_eq!(c.reset_at, Some(NOW + 17 * 3_600_000));
    }

    #[test]
    fn no_zone_or_an_unknown_one_is_the_local_zone() {
        // The next 3pm of this machine's zone, whatever it is.
        let local = jiff::Timestamp::from_millisecond(NOW)
            .unwrap()
            .to_zoned(jiff::tz::TimeZone::system());
        let mut want = local
            .date()
            .at(15, 0, 0, 0)
            .to_zoned(local.time_zone().clone())
            .unwrap();
        if want.timestamp().as_millisecond() <= NOW {
            want = want.tomorrow().unwrap();
        }
        let want = Some(want.timestamp().as_millisecond());
        assert_eq!(human_time("3pm", NOW), want);
        assert_eq!(human_time("3pm (Mars/Olympus_Mons)", NOW), want);
        assert_eq!(human_time("3pm (../../etc/passwd)", NOW), want);
        let c = classify_text("You've hit your 5-hour limit · resets 3pm", None, "", NOW);
        assert_eq!(c.reset_at, want);
    }

    #[test]
    fn a_reset_time_over_a_week_ahead_or_past_is_unknown() {
        let c = |t: &str| classify_text(t, None, "", NOW);
        let epoch = |ms: i64| format!("Claude AI usage limit reached|{}", ms / 1000);
        for text in [
            "Claude AI usage limit reached|253402000000".to_string(),
            epoch(NOW + 7 * 86_400_000 + 1000),
            epoch(NOW - 60_000),
            "You've hit your limit · resets Dec 3, 2030, 2:34am (UTC)".into(),
            "You've hit your limit · resets Nov 1, 2026, 2:34am (UTC)".into(),
        ] {
            let got = c(&text);
            assert_eq!(got.class, Class::UsageLimit, "{text}");
            assert_eq!(got.reset_at, None, "{text}");
        }
        assert_eq!(
            c(&epoch(NOW + 7 * 86_400_000)).reset_at,
            Some(NOW + 7 * 86_400_000)
        );
        assert_eq!(
            c("You've hit your limit · resets Dec 3, 2:34am (UTC)").reset_at,
            Some(NOW + (3 * 86_400 + 3 * 3600 + 34 * 60) * 1000)
        );
    }

    #[test]
    fn agent_text_never_panics_the_classifier() {
        for text in [
            "İİİİİİİİ usage limit reached, resets 5pm",
            "ẞİİ USAGE LIMIT REACHED, RESETS 2:34am (UTC)",
            "Claude AI usage limit reached|9999999999999999",
            "Claude AI usage limit reached|253402300800",
            "Claude AI usage limit reached|99999999999999999999999",
        ] {
            let c = classify_text(text, None, "", NOW);
            assert_eq!(c.class, Class::UsageLimit, "{text}");
            if let Some(r) = c.reset_at {
                assert!(crate::time::in_range(r), "{text}: {r}");
            }
        }
        let c = classify_text(
            "İİİİİİİİ usage limit reached, resets 11:30pm (UTC)",
            None,
            "",
            NOW,
        );
        assert_eq!(c.reset_at, Some(NOW + 1_800_000));
    }

    #[test]
    fn backoff_stays_under_its_ceiling_and_over_a_hint() {
        for n in 1..6 {
            let d = backoff(n, Duration::from_secs(1), Duration::from_secs(8), None);
            assert!(d <= Duration::from_secs(1 << (n - 1)).min(Duration::from_secs(8)));
        }
        let d = backoff(
            1,
            Duration::from_millis(1),
            Duration::from_secs(1),
            Some(Duration::from_secs(5)),
        );
        assert_eq!(d, Duration::from_secs(5));
    }
}
