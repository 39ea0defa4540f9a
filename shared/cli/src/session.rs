//! Judging real Claude Code sessions (`orch-verify session`) from the agent
//! calls that `orch-hook` (and `orch-run`) recorded in `agent_calls`: find each
//! group of calls that were meant to run together, and judge it with
//! [`orch_core::intervals`].
//!
//! Groups. The question is whether tasks that could run together did, so a
//! group is what was *asked* to run together, not what happened to:
//! - calls tied to orch tasks (the prompt's `orch-task:` line) are grouped by
//!   the tasks' batch, within one session: a batch launched as one message
//!   overlaps (PARALLEL); the same batch launched one call per message does not
//!   (SEQUENTIAL);
//! - other calls of a session are chained in start order: a call joins the
//!   current group when it starts no later than `--gap` (30 s) after the
//!   group's last start or end, so agents started one after another in one
//!   turn form one group, and a pause (the user typing) starts the next.
//!
//! `PostToolBatch` is deliberately not a boundary: it closes one assistant
//! message, and grouping by message would call every one-call-per-message
//! session PARALLEL. Sub-agent rows (`SubagentStart`/`SubagentStop`) are judged
//! only in sessions that have no Agent tool rows, so no agent counts twice.
//! `orch-run` records its runs with `session_id = "orch-run:BATCH"`; they are
//! judged the same way.
//!
//! Exit status: 0 when the latest group (by first start) is PARALLEL, 1
//! otherwise, and 1 when nothing was recorded.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use crate::{DbArg, Out};
use orch_core::db::Db;
use orch_core::error::{Error, Exit, Result};
use orch_core::intervals::{self, Analysis, Interval, Verdict};
use orch_core::time::{parse_since, parse_span, rfc3339};

/// `orch-verify session` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct SessionArgs {
    /// Only this Claude Code session id.
    #[arg(long)]
    pub session: Option<String>,
    /// Only calls started since this time (RFC 3339) or this long ago (10m, 2h).
    #[arg(long)]
    pub since: Option<String>,
    /// Calls without an orch task join a group when they start at most this long after it.
    #[arg(long, default_value = "30s")]
    pub gap: String,
    /// One JSON object per group.
    #[arg(long)]
    pub json: bool,
    /// Also write the page of these calls to FILE: one self-contained HTML
    /// file (a verdict per group, timeline, table, the events of their tasks).
    #[arg(long, value_name = "FILE")]
    pub html: Option<std::path::PathBuf>,
}

pub use orch_core::calls::Call;

/// A group of calls and its verdict: the `--json` record.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub session: String,
    pub source: String,
    pub batch: Option<i64>,
    #[serde(serialize_with = "orch_core::time::ser_rfc3339_opt")]
    pub first_start: Option<i64>,
    #[serde(flatten)]
    pub analysis: Analysis,
    pub calls: Vec<Call>,
}

/// The recorded calls, oldest first, filtered by session and start time.
pub fn load(db: &Db, session: Option<&str>, since: Option<i64>) -> Result<Vec<Call>> {
    db.read(|tx| orch_core::calls::load(tx, session, since))
}

/// Splits calls into groups (see the module doc), ordered by first start.
pub fn groups(calls: Vec<Call>, gap_ms: i64) -> Vec<Group> {
    let tool_sessions: HashSet<String> = calls
        .iter()
        .filter(|c| c.source != orch_core::hook::SOURCE_SUBAGENT)
        .map(|c| c.session_id.clone())
        .collect();
    // (session, source family, batch) → calls; unbatched calls chained per (session, family).
    let mut batched: BTreeMap<(String, String, i64), Vec<Call>> = BTreeMap::new();
    let mut loose: BTreeMap<(String, String), Vec<Call>> = BTreeMap::new();
    for c in calls {
        if c.source == orch_core::hook::SOURCE_SUBAGENT && tool_sessions.contains(&c.session_id) {
            continue;
        }
        match c.batch {
            Some(b) => batched
                .entry((c.session_id.clone(), c.source.clone(), b))
                .or_default()
                .push(c),
            None => loose
                .entry((c.session_id.clone(), c.source.clone()))
                .or_default()
                .push(c),
        }
    }
    let mut out: Vec<Group> = Vec::new();
    for ((session, source, b), calls) in batched {
        out.push(judge(session, source, Some(b), calls));
    }
    for ((session, source), calls) in loose {
        let mut current: Vec<Call> = Vec::new();
        let mut reach = i64::MIN;
        for c in calls {
            let start = c.started_at.or(c.finished_at).unwrap_or(i64::MAX);
            if !current.is_empty() && start > reach.saturating_add(gap_ms) {
                out.push(judge(
                    session.clone(),
                    source.clone(),
                    None,
                    std::mem::take(&mut current),
                ));
                reach = i64::MIN;
            }
            reach = reach.max(c.finished_at.max(c.started_at).unwrap_or(reach));
            current.push(c);
        }
        if !current.is_empty() {
            out.push(judge(session.clone(), source.clone(), None, current));
        }
    }
    out.sort_by_key(|g| g.first_start.unwrap_or(i64::MAX));
    out
}

fn judge(session: String, source: String, batch: Option<i64>, mut calls: Vec<Call>) -> Group {
    calls.sort_by_key(|c| c.started_at.unwrap_or(i64::MAX));
    let intervals: Vec<Interval> = calls.iter().map(Call::interval).collect();
    Group {
        first_start: calls.iter().filter_map(|c| c.started_at).min(),
        analysis: intervals::analyse(&intervals),
        session,
        source,
        batch,
        calls,
    }
}

/// The human report of one group: a header, then the verdict, figures and
/// timeline as `orch-verify report` shows them.
pub fn render(g: &Group, color: bool) -> String {
    let a = &g.analysis;
    let batch = g.batch.map(|b| format!(" · batch {b}")).unwrap_or_default();
    let when = g
        .first_start
        .map(rfc3339)
        .unwrap_or_else(|| "never started".into());
    let mut s = format!(
        "session {}{batch} · {} agent call{} ({}) · {when}\n\n",
        orch_core::text::escape(&g.session, false),
        a.n,
        if a.n == 1 { "" } else { "s" },
        orch_core::text::escape(&g.source, false)
    );
    let intervals: Vec<Interval> = g.calls.iter().map(Call::interval).collect();
    let labels: Vec<String> = g.calls.iter().map(Call::label).collect();
    s.push_str(&crate::timeline::render(a, &intervals, &labels, color, 80));
    s
}

/// Runs `orch-verify session`.
pub fn command(db: &DbArg, args: SessionArgs, out: &mut Out) -> anyhow::Result<Exit> {
    let since = args
        .since
        .as_deref()
        .map(parse_since)
        .transpose()
        .map_err(Error::Invalid)?;
    let gap = parse_span(&args.gap).map_err(Error::Invalid)?;
    let db = db.open_existing()?;
    let calls = load(&db, args.session.as_deref(), since)?;
    let groups = groups(calls, orch_core::time::ms(gap));
    let Some(latest) = groups.last() else {
        eprintln!("orch-verify: no agent calls recorded{}; install the hooks with `orch-hook install` and let Claude Code launch agents", match (&args.session, &args.since) {
            (Some(s), _) => format!(" for session {}", orch_core::text::escape(s, false)),
            (None, Some(t)) => format!(" since {}", orch_core::text::escape(t, false)),
            _ => String::new(),
        });
        return Ok(Exit::No);
    };
    let verdict = latest.analysis.verdict;
    if let Some(path) = &args.html {
        write_page(&db, path, &groups, &args)?;
    }
    let color = crate::color_ok(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    for (i, g) in groups.iter().enumerate() {
        if args.json {
            out.json(g)?;
        } else {
            if i > 0 {
                out.line("")?;
            }
            out.text(&render(g, color))?;
        }
    }
    Ok(if verdict == Verdict::Parallel {
        Exit::Ok
    } else {
        Exit::No
    })
}

/// The page of the groups: the events shown are those of their orch tasks.
fn write_page(
    db: &Db,
    path: &std::path::Path,
    groups: &[Group],
    args: &SessionArgs,
) -> anyhow::Result<()> {
    let tasks: std::collections::BTreeSet<i64> = groups
        .iter()
        .flat_map(|g| g.calls.iter().filter_map(|c| c.task))
        .collect();
    let mut events = Vec::new();
    for t in tasks {
        events.extend(crate::page::events(
            db,
            orch_core::event::Filter {
                task: Some(t),
                ..Default::default()
            },
        )?);
    }
    events.sort_by_key(|e| e.id);
    let labelled: Vec<(String, Analysis, &[Call])> = groups
        .iter()
        .map(|g| {
            let batch = g.batch.map(|b| format!(", batch {b}")).unwrap_or_default();
            (
                format!(
                    "{} agent call{} of session {}{batch}",
                    g.analysis.n,
                    if g.analysis.n == 1 { "" } else { "s" },
                    g.session
                ),
                g.analysis.clone(),
                g.calls.as_slice(),
            )
        })
        .collect();
    let title = match (&args.session, &args.since) {
        (Some(s), _) => format!("orch: session {s}"),
        (None, Some(t)) => format!("orch: agent calls since {t}"),
        _ => "orch: agent calls".to_string(),
    };
    crate::page::write(
        db,
        path,
        &crate::page::calls(title, &labelled, events),
        "orch-verify",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(session: &str, id: &str, batch: Option<i64>, s: i64, e: i64) -> Call {
        Call {
            call_id: id.into(),
            session_id: session.into(),
            source: "hook".into(),
            task: batch.map(|_| 1),
            batch,
            agent_type: None,
            description: None,
            started_at: Some(s),
            finished_at: Some(e),
            status: Some("done".into()),
        }
    }

    #[test]
    fn batches_group_and_are_judged() {
        let par = vec![
            call("s", "a", Some(1), 0, 100),
            call("s", "b", Some(1), 5, 90),
            call("s", "c", Some(1), 9, 120),
        ];
        let g = groups(par, 30_000);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].analysis.verdict, Verdict::Parallel);
        let seq = vec![
            call("s", "a", Some(2), 0, 100),
            call("s", "b", Some(2), 150, 250),
            call("s", "c", Some(2), 300, 400),
        ];
        let g = groups(seq, 30_000);
        assert_eq!((g.len(), g[0].analysis.verdict), (1, Verdict::Sequential));
    }

    #[test]
    fn loose_calls_chain_until_a_gap() {
        let calls = vec![
            call("s", "a", None, 0, 100),
            call("s", "b", None, 120, 200),
            call("s", "c", None, 100_000, 100_050),
        ];
        let g = groups(calls, 1_000);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].calls.len(), 2);
        assert_eq!(g[0].analysis.verdict, Verdict::Sequential);
    }

    #[test]
    fn subagent_rows_do_not_double_count() {
        let mut sub = call("s", "agent-1", None, 0, 100);
        sub.source = orch_core::hook::SOURCE_SUBAGENT.into();
        let mut other = sub.clone();
        other.session_id = "t".into();
        let g = groups(vec![call("s", "toolu_1", None, 0, 100), sub, other], 1_000);
        assert_eq!(g.len(), 2);
        assert!(g.iter().all(|g| g.calls.len() == 1));
    }
}
