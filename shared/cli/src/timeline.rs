//! Intervals drawn for people at a terminal: the verdict with what it means,
//! the figures of SPEC §6, and the timeline, in ANSI colour when asked. The
//! judging itself is `orch_core::intervals`.

use orch_core::intervals::{Analysis, Interval, Verdict};

/// Draws each interval as a bar on a common time axis, `width` columns in all,
/// with a `running` row under the bars counting the intervals open at each
/// column's midpoint. `labels[i]` names row i. Colour (ANSI) only when `color`.
pub fn timeline(intervals: &[Interval], labels: &[String], width: usize, color: bool) -> String {
    const RUNNING: &str = "running";
    let show_running = intervals.len() > 1;
    let label_w = labels
        .iter()
        .map(|l| l.chars().count())
        .chain(show_running.then_some(RUNNING.len()))
        .max()
        .unwrap_or(0)
        .min(16);
    let bar_w = width.saturating_sub(label_w + 3).max(10);
    let t0 = intervals.iter().filter_map(|i| i.start).min().unwrap_or(0);
    let t1 = intervals
        .iter()
        .filter_map(|i| i.end.or(i.start))
        .max()
        .unwrap_or(t0)
        .max(t0 + 1);
    let span = (t1 - t0) as f64;
    // Column c covers [t0 + c*span/bar_w, t0 + (c+1)*span/bar_w).
    let first_col =
        |t: i64| ((((t - t0) as f64 / span) * bar_w as f64).floor() as usize).min(bar_w - 1);
    let last_col = |t: i64| {
        let c = (((t - t0) as f64 / span) * bar_w as f64).ceil() as usize;
        c.clamp(1, bar_w) - 1
    };
    let paint = |on: &str, text: &str| {
        if color && !text.trim().is_empty() {
            format!("\x1b[{on}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    };
    let mut s = String::new();
    for (i, iv) in intervals.iter().enumerate() {
        let label = labels.get(i).map(String::as_str).unwrap_or("");
        let label = orch_core::text::cell(label, label_w);
        let bar = match (iv.start, iv.end) {
            (Some(a), Some(b)) => {
                let (x, y) = (first_col(a), last_col(b.max(a)).max(first_col(a)));
                paint("36", &format!("{}{}", " ".repeat(x), "█".repeat(y - x + 1)))
            }
            (Some(a), None) => {
                let x = first_col(a);
                let open = format!("{}{}", "░".repeat(bar_w - x - 1), "?");
                format!("{}{}", " ".repeat(x), paint("33", &open))
            }
            _ => paint("2", "(never started)"),
        };
        s.push_str(&format!("{label:>label_w$} │{bar}\n"));
    }
    if show_running {
        let row: String = (0..bar_w)
            .map(|c| {
                let mid = t0 as f64 + (c as f64 + 0.5) * span / bar_w as f64;
                let open = intervals
                    .iter()
                    .filter(|iv| match (iv.start, iv.end) {
                        (Some(a), Some(b)) => (a as f64) <= mid && mid < b as f64,
                        (Some(a), None) => (a as f64) <= mid,
                        _ => false,
                    })
                    .count();
                match open {
                    0 => ' ',
                    1..=9 => char::from(b'0' + open as u8),
                    _ => '+',
                }
            })
            .collect();
        s.push_str(&format!(
            "{RUNNING:>label_w$} │{}\n",
            paint("2", row.trim_end())
        ));
    }
    let total = orch_core::time::secs1_tight(t1 - t0);
    let axis = format!("0s{:>w$}", total, w = bar_w.saturating_sub(2));
    s.push_str(&format!("{:>label_w$} └{}\n", "", "─".repeat(bar_w)));
    s.push_str(&format!("{:>label_w$}  {axis}\n", ""));
    s
}

/// The human report of a group of intervals: the verdict with what it means,
/// the figures of SPEC §6, and the timeline (`width` columns). Shared by
/// `orch-verify report` and `orch-verify session`.
pub fn render(
    a: &Analysis,
    intervals: &[Interval],
    labels: &[String],
    color: bool,
    width: usize,
) -> String {
    let n = a.n;
    let (meaning, code) = match a.verdict {
        Verdict::Parallel if n == 1 => (
            "only one ran: a single run proves nothing about overlap".to_string(),
            "32",
        ),
        Verdict::Parallel => (format!("all {n} were running at the same time"), "32"),
        Verdict::Partial => (
            format!("at most {} of {n} were running at the same time", a.peak),
            "33",
        ),
        Verdict::Sequential => ("one at a time: they never overlapped".to_string(), "31"),
        Verdict::Incomplete => {
            let missing: Vec<String> = intervals
                .iter()
                .enumerate()
                .filter(|(_, iv)| iv.start.is_none() || iv.end.is_none())
                .map(|(i, _)| {
                    labels
                        .get(i)
                        .cloned()
                        .unwrap_or_else(|| format!("#{}", i + 1))
                })
                .collect();
            (
                format!(
                    "{} of {n} never reported: {}",
                    n - a.completed,
                    orch_core::text::cell(&missing.join(", "), 50)
                ),
                "33",
            )
        }
    };
    let verdict = if color {
        format!("\x1b[1;{code}m{}\x1b[0m", a.verdict)
    } else {
        a.verdict.to_string()
    };
    let done = a.completed;
    let rows = [
        (
            "wall",
            orch_core::time::secs(a.wall_ms),
            "first start to last end".to_string(),
        ),
        (
            "serial",
            orch_core::time::secs(a.serial_ms),
            format!("sum of the {done} durations"),
        ),
        (
            "speedup",
            format!("{:.2}x", a.speedup),
            format!("serial / wall; {done} would be perfect, 1 is one at a time"),
        ),
        (
            "peak",
            format!("{} of {n}", a.peak),
            "most running at one instant".to_string(),
        ),
        (
            "skew",
            orch_core::time::secs(a.skew_ms),
            "first start to last start".to_string(),
        ),
    ];
    let pad = " ".repeat(10usize.saturating_sub(a.verdict.to_string().len()));
    let mut s = format!("verdict  {verdict}{pad} {meaning}\n");
    if done == 0 {
        return s;
    }
    for (name, value, what) in rows {
        s.push_str(&format!("{name:<8} {value:<10} {what}\n"));
    }
    s.push('\n');
    s.push_str(&timeline(intervals, labels, width, color));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use orch_core::intervals::analyse;

    fn iv(s: i64, e: i64) -> Interval {
        Interval {
            start: Some(s),
            end: Some(e),
        }
    }

    #[test]
    fn timeline_fits_80_columns() {
        let t = timeline(
            &[iv(0, 500), iv(500, 1000)],
            &["probe 1".into(), "probe 2".into()],
            80,
            false,
        );
        assert!(t.lines().all(|l| l.chars().count() <= 80), "{t}");
        assert_eq!(t.lines().count(), 5);
        let running = t.lines().find(|l| l.contains("running")).unwrap();
        assert!(running.contains('1') && !running.contains('2'), "{t}");
    }

    #[test]
    fn timeline_counts_overlap_and_open_intervals() {
        let open = Interval {
            start: Some(500),
            end: None,
        };
        let never = Interval {
            start: None,
            end: None,
        };
        let labels: Vec<String> = (1..=4).map(|i| format!("probe {i}")).collect();
        let t = timeline(&[iv(0, 1000), iv(0, 1000), open, never], &labels, 80, false);
        assert!(t.lines().all(|l| l.chars().count() <= 80), "{t}");
        let running = t.lines().find(|l| l.contains("running")).unwrap();
        assert!(running.contains('3') && running.contains('2'), "{t}");
        assert!(t.contains("(never started)") && t.contains('?'), "{t}");
        assert!(!t.contains('\x1b'));
        assert!(timeline(&[iv(0, 10)], &labels, 80, true).contains('\x1b'));
    }

    #[test]
    fn render_shows_figures() {
        let ivs = [iv(0, 1000), iv(100, 1100)];
        let r = render(&analyse(&ivs), &ivs, &["a".into(), "b".into()], false, 80);
        assert!(r.starts_with("verdict  PARALLEL   all 2"), "{r}");
        assert!(r.contains("speedup  1.82x"), "{r}");
        assert!(r.lines().all(|l| l.chars().count() <= 80), "{r}");
    }
}
