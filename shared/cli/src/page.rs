//! The page of a run: one self-contained HTML file — no script, no network,
//! no external font — with the verdict and speed-up on top, a timeline (one
//! row per task or probe, a bar per attempt coloured by its outcome), a table
//! below it and the events of the run. One renderer ([`Page::render`]) fed by
//! three sources: a batch (`orch-batch report N --html`), a verification run
//! (`orch-verify report RUN --html`) and the agent calls of Claude Code
//! sessions (`orch-verify session --html`). Every piece of text from the store
//! is escaped: prompts and descriptions are attacker-controlled.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Context;
use orch_core::attempt::Attempt;
use orch_core::batch::Batch;
use orch_core::calls::Call;
use orch_core::event::Event;
use orch_core::intervals::{self, Analysis, Interval};
use orch_core::time::rfc3339;
use orch_core::verify::{Probe, Run};

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

/// What a page shows, whatever it was made from.
pub struct Page {
    pub title: String,
    /// One verdict line per judged group (a batch and a run have one; the
    /// calls of a session may have several). The last one carries the ids
    /// `verdict` and `speedup`: it is the one the exit status follows.
    pub verdicts: Vec<(String, Analysis)>,
    pub rows: Vec<Row>,
    /// The table under the timeline: its heading and its name (the `id`).
    pub table_name: &'static str,
    pub columns: &'static [&'static str],
    pub table: Vec<Vec<Cell>>,
    pub events: Vec<Event>,
}

/// One timeline row (a task, a probe, an agent).
pub struct Row {
    /// The `data-row` id (a task id, a probe index, a call's number).
    pub key: i64,
    pub label: String,
    pub bars: Vec<Bar>,
}

/// One bar: an attempt, a probe, an agent call. `end: None` runs to the end
/// of the timeline (still running).
pub struct Bar {
    pub start: i64,
    pub end: Option<i64>,
    /// Its outcome: `done`, `failed`, `running`, `cancelled` (its class and colour).
    pub outcome: String,
    pub attempt: Option<i64>,
    pub tip: String,
}

/// One table cell; `class` colours an outcome.
pub struct Cell {
    pub text: String,
    pub class: Option<String>,
}

impl From<String> for Cell {
    fn from(text: String) -> Cell {
        Cell { text, class: None }
    }
}

fn outcome_cell(s: &str) -> Cell {
    Cell {
        text: s.to_string(),
        class: Some(s.to_string()),
    }
}

fn colour(outcome: &str) -> &'static str {
    match outcome {
        "done" => "#2e7d32",
        "failed" => "#c62828",
        "running" => "#1565c0",
        "cancelled" => "#757575",
        "landed" => "#6a1b9a",
        _ => "#9e9e9e",
    }
}

fn secs(ms: i64) -> String {
    orch_core::time::secs1(ms)
}

fn when(ms: Option<i64>) -> String {
    ms.map(rfc3339).unwrap_or_else(|| "-".into())
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

/// The page of a batch: `attempts` are the attempts of its tasks (one bar
/// each; a task without any gets one bar from its own times).
pub fn batch(b: &Batch, attempts: &[Attempt], events: Vec<Event>) -> Page {
    let ivs: Vec<Interval> = b
        .tasks
        .iter()
        .map(|t| Interval {
            start: t.started_at,
            end: t.finished_at,
        })
        .collect();
    let t0 = b.tasks.iter().filter_map(|t| t.started_at).min();
    let mut rows = Vec::new();
    let mut table = Vec::new();
    for t in &b.tasks {
        let (cost, tokens) = usage(t.claude.as_ref());
        let mut bars: Vec<Bar> = attempts
            .iter()
            .filter(|a| a.task == t.id)
            .map(|a| {
                let outcome = a.outcome.as_deref().unwrap_or("running");
                let (cost, tokens) = attempt_usage(a);
                Bar {
                    start: a.start_ms,
                    end: a.end_ms,
                    outcome: outcome.to_string(),
                    attempt: Some(a.attempt),
                    tip: format!(
                        "task {}: {}\nattempt {} ({}) {} → {}\n{outcome}{}{}\ncost {cost}, tokens {tokens}",
                        t.id,
                        t.description,
                        a.attempt,
                        a.runner,
                        a.started_at,
                        a.ended_at.as_deref().unwrap_or("-"),
                        a.error_class
                            .as_ref()
                            .map(|c| format!(" ({c})"))
                            .unwrap_or_default(),
                        a.error
                            .as_ref()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    ),
                }
            })
            .collect();
        if bars.is_empty() {
            if let Some(start) = t.started_at {
                bars.push(Bar {
                    start,
                    end: t.finished_at,
                    outcome: t.status.as_str().to_string(),
                    attempt: None,
                    tip: format!(
                        "task {}: {}\n{} → {}\nstatus {}{}\ncost {cost}, tokens {tokens}",
                        t.id,
                        t.description,
                        when(t.started_at),
                        when(t.finished_at),
                        t.status,
                        t.error
                            .as_ref()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    ),
                });
            }
        }
        rows.push(Row {
            key: t.id,
            label: format!("{} {}", t.id, t.description),
            bars,
        });
        let took = t
            .started_at
            .zip(t.finished_at)
            .map(|(s, e)| secs(e - s))
            .unwrap_or_else(|| "-".into());
        let tries = attempts.iter().filter(|a| a.task == t.id).count();
        table.push(vec![
            t.id.to_string().into(),
            t.role.clone().into(),
            t.description.clone().into(),
            outcome_cell(t.status.as_str()),
            t.started_at
                .zip(t0)
                .map(|(s, t0)| secs(s - t0))
                .unwrap_or_else(|| "-".into())
                .into(),
            took.into(),
            tries.to_string().into(),
            cost.into(),
            tokens.into(),
            t.error.clone().unwrap_or_default().into(),
        ]);
    }
    Page {
        title: format!("orch: batch {}", b.id),
        verdicts: vec![(format!("{} tasks", b.tasks.len()), intervals::analyse(&ivs))],
        rows,
        table_name: "tasks",
        columns: &[
            "id",
            "role",
            "description",
            "status",
            "start",
            "took",
            "attempts",
            "cost",
            "tokens",
            "error",
        ],
        table,
        events,
    }
}

/// The page of a verification run: a row per probe.
pub fn run(r: &Run, probes: &[Probe], events: Vec<Event>) -> Page {
    let ivs: Vec<Interval> = probes.iter().map(Probe::interval).collect();
    let t0 = probes.iter().filter_map(|p| p.started_at).min();
    let label = r.label.clone().unwrap_or_default();
    let mut rows = Vec::new();
    let mut table = Vec::new();
    for p in probes {
        let outcome = match (p.started_at, p.finished_at) {
            (_, Some(_)) => "done",
            (Some(_), None) => "running",
            (None, None) => "missing",
        };
        rows.push(Row {
            key: p.index,
            label: format!("probe {}", p.index),
            bars: p
                .started_at
                .map(|start| Bar {
                    start,
                    end: p.finished_at,
                    outcome: outcome.to_string(),
                    attempt: None,
                    tip: format!(
                        "probe {} of run {}{}\n{} → {}\npid {}",
                        p.index,
                        r.id,
                        if label.is_empty() {
                            String::new()
                        } else {
                            format!(": {label}")
                        },
                        when(p.started_at),
                        when(p.finished_at),
                        p.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into())
                    ),
                })
                .into_iter()
                .collect(),
        });
        table.push(vec![
            p.index.to_string().into(),
            outcome_cell(outcome),
            p.started_at
                .zip(t0)
                .map(|(s, t0)| secs(s - t0))
                .unwrap_or_else(|| "-".into())
                .into(),
            p.started_at
                .zip(p.finished_at)
                .map(|(s, e)| secs(e - s))
                .unwrap_or_else(|| "-".into())
                .into(),
            p.pid.map(|p| p.to_string()).unwrap_or_default().into(),
        ]);
    }
    Page {
        title: match label.is_empty() {
            true => format!("orch: verification run {}", r.id),
            false => format!("orch: verification run {} ({label})", r.id),
        },
        verdicts: vec![(
            format!("{} probes of {}", r.n, secs(r.sleep_ms)),
            intervals::analyse(&ivs),
        )],
        rows,
        table_name: "probes",
        columns: &["probe", "status", "start", "took", "pid"],
        table,
        events,
    }
}

/// The page of recorded agent calls (`orch-verify session`): `groups` are the
/// judged groups, oldest first, each a label, its verdict and its calls. A row
/// per orch task (a task run again shows each call on its row), else per call.
pub fn calls(title: String, groups: &[(String, Analysis, &[Call])], events: Vec<Event>) -> Page {
    let mut rows: Vec<Row> = Vec::new();
    let mut by_task: BTreeMap<i64, usize> = BTreeMap::new();
    let mut table = Vec::new();
    let t0 = groups
        .iter()
        .flat_map(|g| g.2.iter())
        .filter_map(|c| c.started_at)
        .min();
    for (gi, (_, _, calls)) in groups.iter().enumerate() {
        for c in calls.iter() {
            let outcome = match (c.finished_at, c.status.as_deref()) {
                (None, _) => "running",
                (Some(_), Some(s)) if s.contains("fail") || s.contains("error") => "failed",
                _ => "done",
            };
            let what = c.description.clone().unwrap_or_else(|| c.call_id.clone());
            let bar = c.started_at.map(|start| Bar {
                start,
                end: c.finished_at,
                outcome: outcome.to_string(),
                attempt: None,
                tip: format!(
                    "{}: {what}\n{} → {}\nagent {}, call {}, status {}",
                    c.label(),
                    when(c.started_at),
                    when(c.finished_at),
                    c.agent_type.as_deref().unwrap_or("-"),
                    c.call_id,
                    c.status.as_deref().unwrap_or("-")
                ),
            });
            let at = match c.task.and_then(|t| by_task.get(&t)) {
                Some(&i) => i,
                None => {
                    rows.push(Row {
                        key: c.task.unwrap_or(rows.len() as i64 + 1),
                        label: match c.task {
                            Some(t) => format!("task {t} {what}"),
                            None => what.clone(),
                        },
                        bars: Vec::new(),
                    });
                    if let Some(t) = c.task {
                        by_task.insert(t, rows.len() - 1);
                    }
                    rows.len() - 1
                }
            };
            rows[at].bars.extend(bar);
            table.push(vec![
                (gi + 1).to_string().into(),
                c.task.map(|t| t.to_string()).unwrap_or_default().into(),
                c.agent_type.clone().unwrap_or_default().into(),
                what.into(),
                outcome_cell(outcome),
                c.started_at
                    .zip(t0)
                    .map(|(s, t0)| secs(s - t0))
                    .unwrap_or_else(|| "-".into())
                    .into(),
                c.started_at
                    .zip(c.finished_at)
                    .map(|(s, e)| secs(e - s))
                    .unwrap_or_else(|| "-".into())
                    .into(),
            ]);
        }
    }
    Page {
        title,
        verdicts: groups
            .iter()
            .map(|(label, a, _)| (label.clone(), a.clone()))
            .collect(),
        rows,
        table_name: "calls",
        columns: &[
            "group",
            "task",
            "agent",
            "description",
            "status",
            "start",
            "took",
        ],
        table,
        events,
    }
}

impl Page {
    /// The whole HTML file.
    pub fn render(&self) -> String {
        let bars = || self.rows.iter().flat_map(|r| r.bars.iter());
        let t0 = bars().map(|b| b.start).min().unwrap_or(0);
        let t1 = bars()
            .map(|b| b.end.unwrap_or(b.start))
            .max()
            .unwrap_or(t0)
            .max(t0);
        // A running bar reaches the newest time the page knows of.
        let t1 = self
            .events
            .iter()
            .map(|e| e.at_ms)
            .filter(|_| bars().any(|b| b.end.is_none()))
            .fold(t1, i64::max);
        let span = (t1 - t0).max(1) as f64;
        let mut o = String::new();
        let _ = write!(
            o,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n\
<title>{}</title>\n<link rel=\"icon\" href=\"data:,\">\n<style>\n{CSS}</style></head><body>\n",
            esc(&self.title)
        );
        let _ = writeln!(o, "<h1>{}</h1>", esc(&self.title));
        for (i, (what, a)) in self.verdicts.iter().enumerate() {
            let (v, s) = match i + 1 == self.verdicts.len() {
                true => (" id=\"verdict\"", " id=\"speedup\""),
                false => ("", ""),
            };
            let _ = writeln!(
                o,
                "<p class=\"verdict\"><b{v}>{}</b> · speed-up <b{s}>{:.1}x</b> · {} · peak {} at once · wall {} · serial {}</p>",
                a.verdict,
                a.speedup,
                esc(what),
                a.peak,
                secs(a.wall_ms),
                secs(a.serial_ms)
            );
        }
        o.push_str("<div id=\"timeline\">\n");
        for r in &self.rows {
            let _ = write!(
                o,
                "<div class=\"row\" data-row=\"{}\"><span class=\"label\">{}</span><span class=\"track\">",
                r.key,
                esc(&r.label),
            );
            for b in &r.bars {
                let end = b.end.unwrap_or(t1);
                let left = (b.start - t0) as f64 / span * 100.0;
                let width = ((end - b.start).max(0) as f64 / span * 100.0).max(0.5);
                let attempt = b
                    .attempt
                    .map(|n| format!(" data-attempt=\"{n}\""))
                    .unwrap_or_default();
                let _ = write!(
                    o,
                    "<span class=\"bar {}\"{attempt} style=\"left:{left:.3}%;width:{width:.3}%;background:{}\" title=\"{}\"></span>",
                    esc(&b.outcome),
                    colour(&b.outcome),
                    esc(&b.tip)
                );
            }
            o.push_str("</span></div>\n");
        }
        let _ = write!(
            o,
            "</div>\n<h2>{}{}</h2>\n<table id=\"{}\"><tr>",
            self.table_name[..1].to_uppercase(),
            &self.table_name[1..],
            self.table_name
        );
        for c in self.columns {
            let _ = write!(o, "<th>{c}</th>");
        }
        o.push_str("</tr>\n");
        for row in &self.table {
            o.push_str("<tr>");
            for c in row {
                match &c.class {
                    Some(k) => {
                        let _ = write!(o, "<td class=\"{}\">{}</td>", esc(k), esc(&c.text));
                    }
                    None => {
                        let _ = write!(o, "<td>{}</td>", esc(&c.text));
                    }
                }
            }
            o.push_str("</tr>\n");
        }
        o.push_str("</table>\n<h2 class=\"events\">Events</h2>\n<table id=\"events\"><tr><th>#</th><th>time</th><th>kind</th><th>task</th><th>change</th><th>detail</th></tr>\n");
        for e in &self.events {
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
}

const CSS: &str = "\
body{font:13px/1.4 system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:18px;margin:0 0 4px}h2{font-size:15px;margin:16px 0 4px}
.verdict{margin:0 0 4px}
#timeline{border:1px solid #ccc;padding:4px;margin-top:8px}
.row{display:flex;align-items:center;height:18px}
.label{width:30%;overflow:hidden;white-space:nowrap;text-overflow:ellipsis;padding-right:6px}
.track{position:relative;flex:1;height:12px;background:#f3f3f3}
.bar{position:absolute;top:0;height:12px;border-radius:2px;box-shadow:inset -1px 0 #fff;-webkit-print-color-adjust:exact;print-color-adjust:exact}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:1px 4px;text-align:left;vertical-align:top}
td.failed{color:#c62828}td.done{color:#2e7d32}
@media print{body{margin:0;font-size:10px}.row{height:14px}h2.events{break-before:page}}
";

/// Every event `f` matches, in commit order.
pub fn events(
    db: &orch_core::db::Db,
    mut f: orch_core::event::Filter,
) -> orch_core::error::Result<Vec<Event>> {
    let mut events = Vec::new();
    loop {
        let (page, last) = orch_core::event::page(db, &f, 10_000)?;
        let done = last == f.after_id;
        events.extend(page);
        if done {
            return Ok(events);
        }
        f.after_id = last;
    }
}

/// Writes the page to `path` (atomically: a reader sees the old page or the
/// new one) and says so on stderr as `tool`. The database `db` and its
/// `-wal`/`-shm` files are refused as targets.
pub fn write(
    db: &orch_core::db::Db,
    path: &std::path::Path,
    page: &Page,
    tool: &str,
) -> anyhow::Result<()> {
    orch_core::db::refuse_overwrite(&db.path, path)?;
    orch_core::atomic::write(
        path,
        page.render().as_bytes(),
        orch_core::atomic::Access::Keep,
    )
    .with_context(|| format!("writing {}", orch_core::text::path(path)))?;
    eprintln!("{tool}: wrote {}", orch_core::text::path(path));
    Ok(())
}
