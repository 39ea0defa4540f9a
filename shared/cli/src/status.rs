//! `orch status`: one screen of what is happening — tasks by status, batches
//! in flight, the last verification verdicts, recent agent calls seen by
//! hooks — once, or redrawn on every change with `--watch`. Never creates a database.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Transaction;
use serde::Serialize;

use crate::{DbArg, Out};
use orch_core::db::{self, Db, Source};
use orch_core::error::{Exit, Result};
use orch_core::intervals::{self, Analysis, Interval};
use orch_core::task::{self, Stats, Status};
use orch_core::text;
use orch_core::time::rfc3339;

/// `orch status [--watch] [--json]`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub db: DbArg,
    /// Redraw whenever the database changes, until Ctrl-C (on a terminal).
    #[arg(long)]
    pub watch: bool,
    /// One JSON object per snapshot (JSON Lines; with --watch, one per change).
    #[arg(long)]
    pub json: bool,
    /// Mark a running task stalled when its agent printed nothing for this long (orch-run's logs).
    #[arg(long, value_name = "DURATION", env = "ORCH_STALLED_AFTER", default_value = "10m", value_parser = orch_core::time::parse_span)]
    pub stalled_after: std::time::Duration,
}

pub const EXAMPLES: &str = "\
Examples:
  orch status
  orch status --watch                 # in a second terminal while agents run
  orch status --json | jq .tasks";

/// How many batches, verification runs and agent calls a snapshot shows.
const BATCHES: usize = 8;
const RUNS: usize = 3;
const CALLS: usize = 10;

/// A task as one status line.
#[derive(Debug, Clone, Serialize)]
pub struct TaskLine {
    pub id: i64,
    pub status: Status,
    pub role: String,
    pub description: String,
    /// When its next attempt is due, while it waits for a retry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_due: Option<String>,
    /// For a running task with a log: milliseconds since its agent last printed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub silent_ms: Option<i64>,
    /// Silent for longer than `--stalled-after`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stalled: bool,
}

/// A batch with at least one task still to run or running.
#[derive(Debug, Clone, Serialize)]
pub struct InFlight {
    pub id: i64,
    pub created_at: String,
    pub emitted_at: Option<String>,
    /// The lease of the runner that holds it (orch-run), if one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseLine>,
    pub tasks: Vec<TaskLine>,
}

/// Who holds a batch, until when, and whether that lease expired: the next
/// batching takes it over.
#[derive(Debug, Clone, Serialize)]
pub struct LeaseLine {
    pub holder: String,
    pub until: String,
    pub expired: bool,
}

/// A verification run and its verdict so far.
#[derive(Debug, Clone, Serialize)]
pub struct RunVerdict {
    pub id: i64,
    pub created_at: String,
    pub label: Option<String>,
    pub n: i64,
    /// Probes that reported both start and end.
    pub reported: usize,
    pub analysis: Analysis,
}

/// An agent call recorded by `orch-hook`.
#[derive(Debug, Clone, Serialize)]
pub struct RecentCall {
    pub session_id: String,
    pub call_id: String,
    pub source: String,
    pub task_id: Option<i64>,
    pub agent_type: Option<String>,
    pub description: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub status: Option<String>,
}

/// Everything `orch status` shows; the `--json` record.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub database: PathBuf,
    pub source: Source,
    /// False when the database does not exist yet (then everything is empty).
    pub exists: bool,
    pub tasks: Stats,
    pub batches: Vec<InFlight>,
    /// Batches out as bundles whose records have not all come back.
    pub dispatched: Vec<orch_core::dispatch::Dispatched>,
    pub verify_runs: Vec<RunVerdict>,
    pub agent_calls: Vec<RecentCall>,
    /// The pause in force (no runner starts anything), if any.
    pub paused: Option<orch_core::limits::Pause>,
    /// Spend and tokens the agents reported, per batch and in total.
    pub spend: orch_core::attempt::Ledger,
}

/// Reads one consistent snapshot.
pub fn snapshot_in(
    tx: &Transaction,
    path: &Path,
    source: Source,
    stalled_ms: i64,
) -> Result<Snapshot> {
    let tasks = task::stats_in(tx)?;
    let now = orch_core::time::now_ms();
    let ids = task::in_flight_batches_in(tx, BATCHES)?;
    let mut batches = Vec::new();
    for id in ids.into_iter().rev() {
        let b = orch_core::batch::get_in(tx, id)?;
        let running: Vec<i64> = b
            .tasks
            .iter()
            .filter(|t| t.status == Status::Running)
            .map(|t| t.id)
            .collect();
        let last = orch_core::tasklog::last_output_in(tx, &running)?;
        let (_, _, holder, until) = orch_core::batch::lease_in(tx, id)?;
        let lease = holder.zip(until).map(|(h, u)| LeaseLine {
            expired: u <= now,
            holder: h,
            until: rfc3339(u),
        });
        batches.push(InFlight {
            id: b.id,
            created_at: b.created_at,
            emitted_at: b.emitted_at,
            lease,
            tasks: b
                .tasks
                .into_iter()
                .map(|t| {
                    // Silent since its last line, or since it started when it printed none.
                    let silent_ms = (t.status == Status::Running)
                        .then(|| last.get(&t.id).copied().or(t.started_at))
                        .flatten()
                        .map(|at| (now - at).max(0));
                    TaskLine {
                        id: t.id,
                        retry_due: t
                            .not_before
                            .filter(|&n| {
                                t.status == Status::Batched && n > orch_core::time::now_ms()
                            })
                            .map(orch_core::time::rfc3339),
                        status: t.status,
                        role: t.role,
                        description: t.description,
                        silent_ms,
                        stalled: silent_ms.is_some_and(|s| s > stalled_ms),
                    }
                })
                .collect(),
        });
    }
    let verify_runs = orch_core::verify::recent_in(tx, RUNS)?
        .into_iter()
        .map(|(run, probes)| {
            let ivs: Vec<Interval> = probes.iter().map(|p| p.interval()).collect();
            RunVerdict {
                id: run.id,
                created_at: rfc3339(run.created_at),
                label: run.label,
                n: run.n,
                reported: ivs
                    .iter()
                    .filter(|i| i.start.is_some() && i.end.is_some())
                    .count(),
                analysis: intervals::analyse(&ivs),
            }
        })
        .collect();
    let agent_calls = orch_core::calls::recent(tx, CALLS)?
        .into_iter()
        .map(|c| RecentCall {
            session_id: c.session_id,
            call_id: c.call_id,
            source: c.source,
            task_id: c.task,
            agent_type: c.agent_type,
            description: c.description,
            started_at: c.started_at.map(rfc3339),
            finished_at: c.finished_at.map(rfc3339),
            status: c.status,
        })
        .collect();
    Ok(Snapshot {
        database: path.to_path_buf(),
        source,
        exists: true,
        tasks,
        batches,
        dispatched: orch_core::dispatch::list_in(tx)?,
        verify_runs,
        agent_calls,
        paused: orch_core::limits::paused_in(tx, orch_core::time::now_ms())?,
        spend: orch_core::attempt::ledger_in(tx)?,
    })
}

fn empty(path: &Path, source: Source) -> Snapshot {
    Snapshot {
        database: path.to_path_buf(),
        source,
        exists: false,
        tasks: Stats::default(),
        batches: vec![],
        dispatched: vec![],
        verify_runs: vec![],
        agent_calls: vec![],
        paused: None,
        spend: Default::default(),
    }
}

/// An existing, non-empty database file (an empty one counts as not made yet);
/// a path that can never be a database (a dangling symlink, `/dev/null`, a
/// hard-linked file) is an error.
fn exists(path: &Path) -> Result<bool> {
    Ok(db::check_file(path)? == db::Found::Data)
}

/// The screen for a snapshot.
pub fn render(s: &Snapshot) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "database  {} ({})",
        text::escape(&s.database.display().to_string(), false),
        s.source.explain()
    );
    if !s.exists {
        let how = match s.source {
            Source::Flag | Source::Env => "`orch queue add` makes it",
            Source::Project | Source::User => "`orch queue add` or `orch queue init` makes it",
        };
        let _ = writeln!(o, "          not made yet: {how}");
        return o;
    }
    let t = &s.tasks;
    let _ = writeln!(o, "tasks     {}", t.summary());
    if let Some(p) = &s.paused {
        let _ = writeln!(o, "runners   {}", orch_core::limits::describe(p));
    }
    for l in crate::queue::ledger_lines("spend     ", &s.spend) {
        let _ = writeln!(o, "{l}");
    }
    if s.batches.is_empty() {
        let _ = writeln!(o, "batches   none in flight");
    } else {
        let _ = writeln!(o, "batches   {} in flight", s.batches.len());
        for b in &s.batches {
            let emitted = match &b.emitted_at {
                Some(e) => format!("emitted {e}"),
                None => "not emitted".to_string(),
            };
            let lease = match &b.lease {
                Some(l) if l.expired => format!(
                    "  LEASE EXPIRED: its runner {} stopped renewing it at {}; the next orch-batch create takes it over",
                    text::escape(&l.holder, false),
                    l.until
                ),
                Some(l) => format!(
                    "  run by {}, lease to {}",
                    text::escape(&l.holder, false),
                    l.until
                ),
                None => String::new(),
            };
            let _ = writeln!(
                o,
                "  batch {}  created {}  {emitted}{lease}",
                b.id, b.created_at
            );
            for t in &b.tasks {
                let quiet = match (t.silent_ms, t.stalled) {
                    (Some(ms), true) => format!("  STALLED: silent {}", secs(ms)),
                    (Some(ms), false) => format!("  last output {} ago", secs(ms)),
                    _ => String::new(),
                };
                let _ = writeln!(
                    o,
                    "    {:>5}  {:<9}  {:<16}  {}{}{quiet}",
                    t.id,
                    t.status.as_str(),
                    text::escape(&t.role, false),
                    text::escape(&t.description, false),
                    t.retry_due
                        .as_deref()
                        .map(|d| format!(" (retry due {d})"))
                        .unwrap_or_default()
                );
            }
        }
    }
    for d in &s.dispatched {
        let _ = writeln!(
            o,
            "dispatched  batch {}  {} task{} without a record  out for {}{}  (orch-batch release {} frees it)",
            d.batch,
            d.waiting,
            if d.waiting == 1 { "" } else { "s" },
            humantime::format_duration(std::time::Duration::from_secs((d.age_ms.max(0) / 1000) as u64)),
            if d.expired { ", lease expired" } else { "" },
            d.batch
        );
    }
    if s.verify_runs.is_empty() {
        let _ = writeln!(o, "verify    no runs yet (orch verify)");
    } else {
        let _ = writeln!(
            o,
            "verify    last {} run{}",
            s.verify_runs.len(),
            if s.verify_runs.len() == 1 { "" } else { "s" }
        );
        for r in &s.verify_runs {
            let a = &r.analysis;
            let _ = writeln!(
                o,
                "  run {}  {}  {}/{} probes reported  {}  peak {}  speedup {:.1}x  wall {}{}",
                r.id,
                r.created_at,
                r.reported,
                r.n,
                a.verdict,
                a.peak,
                a.speedup,
                orch_core::time::secs1_tight(a.wall_ms),
                r.label
                    .as_ref()
                    .map(|l| format!("  ({})", text::escape(l, false)))
                    .unwrap_or_default()
            );
        }
    }
    if s.agent_calls.is_empty() {
        let _ = writeln!(
            o,
            "agents    no agent calls recorded (orch hook install tracks them)"
        );
    } else {
        let _ = writeln!(
            o,
            "agents    last {} agent call{} recorded",
            s.agent_calls.len(),
            if s.agent_calls.len() == 1 { "" } else { "s" }
        );
        for c in &s.agent_calls {
            let what = text::escape(c.description.as_deref().unwrap_or(""), false);
            let task = c.task_id.map(|t| format!("  task {t}")).unwrap_or_default();
            let when = match (&c.started_at, &c.finished_at) {
                (Some(s), Some(f)) => format!("{s} → {f}"),
                (Some(s), None) => format!("{s} → running"),
                (None, Some(f)) => format!("? → {f}"),
                (None, None) => "?".into(),
            };
            let _ = writeln!(
                o,
                "  {}  {:<16}  {:<8}  {what}{task}",
                when,
                text::escape(c.agent_type.as_deref().unwrap_or("-"), false),
                text::escape(c.status.as_deref().unwrap_or("-"), false),
            );
        }
    }
    o
}

/// `orch status`.
pub fn run(args: Args) -> anyhow::Result<Exit> {
    let stalled_ms = orch_core::time::ms(args.stalled_after);
    let loc = db::resolve(args.db.path())?;
    let watch = args.watch && std::io::stdout().is_terminal();
    if !watch {
        let s = if exists(&loc.path)? {
            let db = Db::open(&loc.path)?;
            db.read(|tx| snapshot_in(tx, &loc.path, loc.source, stalled_ms))?
        } else {
            empty(&loc.path, loc.source)
        };
        let mut out = Out::new();
        if args.json {
            out.json(&s)?;
        } else {
            out.text(&render(&s))?;
        }
        out.flush()?;
        return Ok(Exit::Ok);
    }
    watch_loop(&loc.path, loc.source, args.json, stalled_ms)
}

/// Redraws on every change of the database (`PRAGMA data_version`) until Ctrl-C.
fn watch_loop(path: &Path, source: Source, json: bool, stalled_ms: i64) -> anyhow::Result<Exit> {
    let mut db: Option<Db> = None;
    let mut last: Option<i64> = None;
    let mut first = true;
    let mut out = std::io::stdout();
    loop {
        if db.is_none() && exists(path)? {
            db = Some(Db::open(path)?);
            last = None;
        }
        let version = match &db {
            Some(d) => Some(d.data_version()?),
            None => Some(-1),
        };
        if version != last {
            last = version;
            let s = match &db {
                Some(d) => d.read(|tx| snapshot_in(tx, path, source, stalled_ms))?,
                None => empty(path, source),
            };
            if json {
                serde_json::to_writer(&mut out, &s)?;
                out.write_all(b"\n")?;
            } else {
                let mut frame = String::new();
                if first {
                    frame.push_str("\x1b[2J");
                    first = false;
                }
                frame.push_str("\x1b[H");
                let rows = terminal_rows().saturating_sub(2).max(3);
                let text = render(&s);
                let mut lines: Vec<&str> = text.lines().collect();
                let cut = lines.len() > rows;
                lines.truncate(rows);
                for l in lines {
                    frame.push_str(l);
                    frame.push_str("\x1b[K\n");
                }
                if cut {
                    frame.push_str("  ... (more than fits; make the terminal taller)\x1b[K\n");
                }
                let _ = write!(
                    frame,
                    "watching for changes, Ctrl-C to stop; last change {}\x1b[K\n\x1b[J",
                    rfc3339(orch_core::time::now_ms())
                );
                out.write_all(frame.as_bytes())?;
            }
            out.flush()?;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn terminal_rows() -> usize {
    match terminal_size::terminal_size_of(std::io::stdout()) {
        Some((_, terminal_size::Height(rows))) if rows > 0 => rows as usize,
        _ => 24,
    }
}

/// `42 s`, `12 min`.
fn secs(ms: i64) -> String {
    orch_core::time::age(ms)
}
