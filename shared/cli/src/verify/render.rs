//! A verification run for people: its title, verdict, figures and timeline
//! (`crate::timeline`), and advice when the verdict is not PARALLEL.

use std::fmt::Write;

use orch_core::intervals::{self, Interval};
use orch_core::verify::{self, Probe, Run};

/// The human report of a run: a title, the figures, the timeline, and advice
/// when the verdict is not PARALLEL.
pub fn render_human(r: &Run, probes: &[Probe], color: bool) -> String {
    let mut s = render_figures(r, probes, color);
    let intervals: Vec<Interval> = probes.iter().map(Probe::interval).collect();
    if let Some(adv) = verify::advice(intervals::analyse(&intervals).verdict) {
        s.push('\n');
        s.push_str(adv);
        s.push('\n');
    }
    s
}

/// The verdict, figures and timeline of a run, without advice on what to do
/// (for `selftest`, where SEQUENTIAL is the answer it wants).
pub fn render_figures(r: &Run, probes: &[Probe], color: bool) -> String {
    let intervals: Vec<Interval> = probes.iter().map(Probe::interval).collect();
    let a = intervals::analyse(&intervals);
    let mut s = String::new();
    let what = r
        .label
        .as_deref()
        .map(|l| format!(" ({})", orch_core::text::escape(l, false)))
        .unwrap_or_default();
    let _ = writeln!(
        s,
        "run {}{what}: {} probe{} of {} each\n",
        r.id,
        r.n,
        if r.n == 1 { "" } else { "s" },
        orch_core::time::secs_short(r.sleep_ms)
    );
    s.push_str(&crate::timeline::render(
        &a,
        &intervals,
        &verify::labels(probes),
        color,
        80,
    ));
    s
}
