//! The page of a batch (`orch-batch report N --html FILE`): one self-contained
//! HTML file — no script, no network, no external font — with the verdict
//! and speed-up on top, a timeline (one row per task, bars coloured by
//! outcome), the table of tasks and the events of the run. Every piece of
//! text from the store is escaped: prompts and descriptions are attacker-controlled.

use std::fmt::Write as _;

use orch_core::attempt::Attempt;
use orch_core::batch::Batch;
use orch_core::event::Event;
use orch_core::intervals::{self, Interval};
use orch_core::task::Status;
use orch_core::time::rfc3339;

/// `s` safe inside HTML text and double-quoted attributes.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

fn colour(s: Status) -> &'static str {
    match s {
        Status::Done => "#2e7d32",
        Status::Failed => "#c62828",
        Status::Running => "#1565c0",
        Status::Cancelled => "#757575",
        _ => "#9e9e9e",
    }
}

fn secs(ms: i64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// Cost and tokens as claude reported them, when it did.
fn usage(c: Option<&serde_json::Map<String, serde_json::Value>>) -> (String, String) {
    let Some(c) = c else {
        return ("-".into(), "-".into());
    };
    let cost = c
        .get("total_cost_usd")
        .and_then(|v| v.as_f64())
        .map(|v| format!("${v:.4}"))
        .unwrap_or_else(|| "-".into());
    let tokens = c
        .get("usage")
        .and_then(|u| u.as_object())
        .map(|u| {
            u.iter()
                .filter(|(k, _)| k.ends_with("tokens"))
                .filter_map(|(_, v)| v.as_i64())
                .sum::<i64>()
                .to_string()
        })
        .unwrap_or_else(|| "-".into());
    (cost, tokens)
}

/// An attempt's colour by its outcome (none yet: running).
fn attempt_colour(outcome: Option<&str>) -> &'static str {
    match outcome {
        Some("done") => "#2e7d32",
        Some("failed") => "#c62828",
        _ => "#1565c0",
    }
}

/// Cost and tokens of one attempt, as recorded.
fn attempt_usage(a: &Attempt) -> (String, String) {
    let m = &a.metrics;
    let cost = m
        .cost_usd
        .map(|v| format!("${v:.4}"))
        .unwrap_or_else(|| "-".into());
    let parts = [
        m.input_tokens,
        m.output_tokens,
        m.cache_read_tokens,
        m.cache_creation_tokens,
    ];
    let tokens = match parts.iter().any(Option::is_some) {
        true => parts.iter().flatten().sum::<i64>().to_string(),
        false => "-".into(),
    };
    (cost, tokens)
}

/// The whole page: `attempts` are the attempts of the batch's tasks (one bar
/// each; a task without any gets one bar from its own times).
pub fn render(b: &Batch, attempts: &[Attempt], events: &[Event]) -> String {
    let ivs: Vec<Interval> = b
        .tasks
        .iter()
        .map(|t| Interval {
            start: t.started_at,
            end: t.finished_at,
        })
        .collect();
    let a = intervals::analyse(&ivs);
    let t0 = b
        .tasks
        .iter()
        .filter_map(|t| t.started_at)
        .chain(attempts.iter().map(|a| a.start_ms))
        .min()
        .unwrap_or(0);
    let t1 = b
        .tasks
        .iter()
        .filter_map(|t| t.finished_at.or(t.started_at))
        .chain(attempts.iter().map(|a| a.end_ms.unwrap_or(a.start_ms)))
        .max()
        .unwrap_or(t0);
    let span = (t1 - t0).max(1) as f64;
    let mut o = String::new();
    let title = format!("orch: batch {}", b.id);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n\
<title>{}</title>\n<link rel=\"icon\" href=\"data:,\">\n<style>\n{CSS}</style></head><body>\n",
        esc(&title)
    );
    let _ = writeln!(
        o,
        "<h1>{}</h1>\n<p class=\"verdict\"><b id=\"verdict\">{}</b> · speed-up <b id=\"speedup\">{:.1}x</b> · {} tasks · peak {} at once · wall {} · serial {}</p>",
        esc(&title),
        a.verdict,
        a.speedup,
        b.tasks.len(),
        a.peak,
        secs(a.wall_ms),
        secs(a.serial_ms)
    );
    o.push_str("<div id=\"timeline\">\n");
    for t in &b.tasks {
        let (cost, tokens) = usage(t.claude.as_ref());
        let (left, width) = match (t.started_at, t.finished_at.or(Some(t1))) {
            (Some(s), Some(e)) => (
                (s - t0) as f64 / span * 100.0,
                ((e - s).max(0) as f64 / span * 100.0).max(0.5),
            ),
            _ => (0.0, 0.0),
        };
        let tip = format!(
            "task {}: {}\n{} → {}\nstatus {}{}\ncost {cost}, tokens {tokens}",
            t.id,
            t.description,
            t.started_at.map(rfc3339).unwrap_or_else(|| "-".into()),
            t.finished_at.map(rfc3339).unwrap_or_else(|| "-".into()),
            t.status,
            t.error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
        let mine: Vec<&Attempt> = attempts.iter().filter(|a| a.task == t.id).collect();
        let _ = write!(
            o,
            "<div class=\"row\" data-task=\"{}\"><span class=\"label\">{} {}</span><span class=\"track\">",
            t.id,
            t.id,
            esc(&t.description),
        );
        if mine.is_empty() {
            let _ = write!(
                o,
                "<span class=\"bar {}\" style=\"left:{left:.3}%;width:{width:.3}%;background:{}\" title=\"{}\"></span>",
                t.status.as_str(),
                colour(t.status),
                esc(&tip)
            );
        }
        for a in mine {
            let end = a.end_ms.unwrap_or(t1);
            let left = (a.start_ms - t0) as f64 / span * 100.0;
            let width = ((end - a.start_ms).max(0) as f64 / span * 100.0).max(0.5);
            let outcome = a.outcome.as_deref();
            let (cost, tokens) = attempt_usage(a);
            let tip = format!(
                "task {}: {}\nattempt {} ({}) {} → {}\n{}{}{}\ncost {cost}, tokens {tokens}",
                t.id,
                t.description,
                a.attempt,
                a.runner,
                a.started_at,
                a.ended_at.as_deref().unwrap_or("-"),
                outcome.unwrap_or("running"),
                a.error_class
                    .as_ref()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default(),
                a.error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
            let _ = write!(
                o,
                "<span class=\"bar {}\" data-attempt=\"{}\" style=\"left:{left:.3}%;width:{width:.3}%;background:{}\" title=\"{}\"></span>",
                outcome.unwrap_or("running"),
                a.attempt,
                attempt_colour(outcome),
                esc(&tip)
            );
        }
        o.push_str("</span></div>\n");
    }
    o.push_str("</div>\n<h2>Tasks</h2>\n<table id=\"tasks\"><tr><th>id</th><th>role</th><th>description</th><th>status</th><th>start</th><th>took</th><th>cost</th><th>tokens</th><th>error</th></tr>\n");
    for t in &b.tasks {
        let (cost, tokens) = usage(t.claude.as_ref());
        let took = t
            .started_at
            .zip(t.finished_at)
            .map(|(s, e)| secs(e - s))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{took}</td><td>{cost}</td><td>{tokens}</td><td>{}</td></tr>",
            t.id,
            esc(&t.role),
            esc(&t.description),
            t.status.as_str(),
            t.status.as_str(),
            t.started_at.map(|s| secs(s - t0)).unwrap_or_else(|| "-".into()),
            esc(t.error.as_deref().unwrap_or(""))
        );
    }
    o.push_str("</table>\n<h2>Events</h2>\n<table id=\"events\"><tr><th>#</th><th>time</th><th>kind</th><th>task</th><th>change</th><th>detail</th></tr>\n");
    for e in events {
        let change = match (&e.from, &e.to) {
            (Some(a), Some(b)) => format!("{a} → {b}"),
            (None, Some(b)) => format!("→ {b}"),
            _ => String::new(),
        };
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e.id,
            esc(&e.at),
            esc(&e.kind),
            e.task.map(|t| t.to_string()).unwrap_or_default(),
            esc(&change),
            esc(e.detail.as_deref().unwrap_or(""))
        );
    }
    o.push_str("</table>\n</body></html>\n");
    o
}

const CSS: &str = "\
body{font:13px/1.4 system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:18px;margin:0 0 4px}h2{font-size:15px;margin:16px 0 4px}
.verdict{margin:0 0 12px}
#timeline{border:1px solid #ccc;padding:4px}
.row{display:flex;align-items:center;height:18px}
.label{width:30%;overflow:hidden;white-space:nowrap;text-overflow:ellipsis;padding-right:6px}
.track{position:relative;flex:1;height:12px;background:#f3f3f3}
.bar{position:absolute;top:0;height:12px;border-radius:2px;-webkit-print-color-adjust:exact;print-color-adjust:exact}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:1px 4px;text-align:left;vertical-align:top}
td.failed{color:#c62828}td.done{color:#2e7d32}
@media print{body{margin:0;font-size:10px}.row{height:14px}}
";
