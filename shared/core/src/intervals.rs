//! Judging whether intervals overlapped: wall, serial sum, speedup, peak
//! concurrency, start skew and a verdict, as data. Used by `orch-verify` for
//! probes and for agent calls recorded by hooks; drawing them for people is
//! orch-cli's `timeline`.

use serde::Serialize;

/// One interval in milliseconds; `end: None` when it never reported its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Interval {
    pub start: Option<i64>,
    pub end: Option<i64>,
}

/// The verdict on a group of intervals (SPEC §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// Every interval was open at one instant.
    Parallel,
    /// Some overlap, but never all at once.
    Partial,
    /// One at a time.
    Sequential,
    /// Some interval never started or never ended.
    Incomplete,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Parallel => "PARALLEL",
            Verdict::Partial => "PARTIAL",
            Verdict::Sequential => "SEQUENTIAL",
            Verdict::Incomplete => "INCOMPLETE",
        })
    }
}

/// The figures SPEC §6 defines, over the intervals that completed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    pub n: usize,
    pub completed: usize,
    pub wall_ms: i64,
    pub serial_ms: i64,
    pub speedup: f64,
    pub peak: usize,
    pub skew_ms: i64,
    pub verdict: Verdict,
}

/// Analyses `intervals`. Intervals that touch (one ends the millisecond the
/// next starts) do not count as overlapping.
pub fn analyse(intervals: &[Interval]) -> Analysis {
    let done: Vec<(i64, i64)> = intervals
        .iter()
        .filter_map(|i| match (i.start, i.end) {
            (Some(s), Some(e)) => Some((s, e.max(s))),
            _ => None,
        })
        .collect();
    let n = intervals.len();
    let first_start = done.iter().map(|d| d.0).min().unwrap_or(0);
    let last_start = done.iter().map(|d| d.0).max().unwrap_or(0);
    let last_end = done.iter().map(|d| d.1).max().unwrap_or(0);
    let wall_ms = last_end - first_start;
    let serial_ms: i64 = done.iter().map(|d| d.1 - d.0).sum();
    let speedup = if wall_ms > 0 {
        serial_ms as f64 / wall_ms as f64
    } else {
        0.0
    };
    // Sweep: ends sort before starts at the same instant.
    let mut events: Vec<(i64, i32)> = Vec::with_capacity(done.len() * 2);
    for &(s, e) in &done {
        events.push((s, 1));
        events.push((e, -1));
    }
    events.sort();
    let (mut open, mut peak) = (0i32, 0i32);
    for (_, d) in events {
        open += d;
        peak = peak.max(open);
    }
    let peak = peak as usize;
    let verdict = if done.len() < n || n == 0 {
        Verdict::Incomplete
    } else if peak == n {
        Verdict::Parallel
    } else if peak > 1 {
        Verdict::Partial
    } else {
        Verdict::Sequential
    };
    Analysis {
        n,
        completed: done.len(),
        wall_ms,
        serial_ms,
        speedup: (speedup * 100.0).round() / 100.0,
        peak,
        skew_ms: last_start - first_start,
        verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(s: i64, e: i64) -> Interval {
        Interval {
            start: Some(s),
            end: Some(e),
        }
    }

    #[test]
    fn verdicts() {
        assert_eq!(
            analyse(&[iv(0, 10), iv(1, 11), iv(2, 12)]).verdict,
            Verdict::Parallel
        );
        assert_eq!(
            analyse(&[iv(0, 10), iv(10, 20), iv(20, 30)]).verdict,
            Verdict::Sequential
        );
        let a = analyse(&[iv(0, 10), iv(5, 15), iv(10, 20), iv(15, 25)]);
        assert_eq!((a.verdict, a.peak), (Verdict::Partial, 2));
        let missing = Interval {
            start: Some(0),
            end: None,
        };
        assert_eq!(analyse(&[iv(0, 10), missing]).verdict, Verdict::Incomplete);
    }

    #[test]
    fn figures() {
        let a = analyse(&[iv(0, 1000), iv(100, 1100)]);
        assert_eq!(
            (a.wall_ms, a.serial_ms, a.skew_ms, a.peak),
            (1100, 2000, 100, 2)
        );
        assert!((a.speedup - 1.82).abs() < 0.01);
    }
}
