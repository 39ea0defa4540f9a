//! Verification runs (SPEC §6): the `verify_runs` and `verify_probes` tables,
//! recording probes, waiting for them, the report, the probe message, and the
//! Claude Code permission rule that lets probes run without a prompt each.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{params, OptionalExtension, Transaction};
use serde::Serialize;

use crate::db::Db;
use crate::emit::{self, AgentCall};
use crate::error::{Error, Result};
use crate::event::{self, About, Kind};
use crate::intervals::{self, Analysis, Interval, Verdict};
use crate::time::{now_ms, rfc3339};

/// Probes in a run unless `-n` says otherwise.
pub const DEFAULT_N: i64 = 4;
/// The most probes one run may have.
pub const MAX_N: i64 = 64;
/// How long a probe sleeps unless `--sleep` says otherwise (SPEC §6).
pub const DEFAULT_SLEEP_MS: i64 = 8_000;
/// The shortest sleep accepted: shorter ones measure process start-up, not overlap.
pub const MIN_SLEEP_MS: i64 = 10;
/// The longest sleep accepted (Claude Code's Bash tool stops commands after 10 minutes).
pub const MAX_SLEEP_MS: i64 = 600_000;
/// Past this, the probe prompt asks the agent to raise the Bash tool's 2-minute timeout.
const BASH_DEFAULT_TIMEOUT_MS: i64 = 110_000;
/// The Claude Code permission rule that lets every probe run without asking.
pub const PERMISSION_RULE: &str = "Bash(orch-verify probe:*)";

/// One run: N probes of `sleep_ms` each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    pub id: i64,
    pub n: i64,
    pub sleep_ms: i64,
    pub created_at: i64,
    pub label: Option<String>,
}

/// One probe's record; times in UTC milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probe {
    pub index: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub pid: Option<i64>,
}

impl Probe {
    pub fn interval(&self) -> Interval {
        Interval {
            start: self.started_at,
            end: self.finished_at,
        }
    }
}

/// Checks `-n`.
pub fn validate_n(n: i64) -> Result<()> {
    if (2..=MAX_N).contains(&n) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "-n {n}: a run has 2 to {MAX_N} probes (one probe proves nothing about parallelism)"
        )))
    }
}

/// Parses `--sleep`: a span ([`crate::time::parse_span`]: seconds, fractions
/// allowed, `8`, `0.5`, or a duration, `500ms`, `2m`), within a probe's bounds.
pub fn parse_sleep(s: &str) -> Result<i64> {
    let d = crate::time::parse_span(s).map_err(Error::invalid)?;
    let ms = (d.as_secs_f64() * 1000.0).round();
    if ms < MIN_SLEEP_MS as f64 || ms > MAX_SLEEP_MS as f64 {
        return Err(Error::invalid(format!(
            "a probe sleeps between {} and {} seconds",
            MIN_SLEEP_MS as f64 / 1000.0,
            MAX_SLEEP_MS / 1000
        )));
    }
    Ok(ms as i64)
}

/// Creates a run of `n` probes, each sleeping `sleep_ms`.
pub fn create(db: &Db, n: i64, sleep_ms: i64, label: Option<&str>) -> Result<Run> {
    validate_n(n)?;
    if !(MIN_SLEEP_MS..=MAX_SLEEP_MS).contains(&sleep_ms) {
        return Err(Error::invalid(format!(
            "sleep of {sleep_ms} ms is out of range"
        )));
    }
    db.write(|tx| {
        let created_at = now_ms();
        let id: i64 = tx.query_row(
            "INSERT INTO verify_runs (n, sleep_ms, created_at, label) VALUES (?1, ?2, ?3, ?4) RETURNING id",
            params![n, sleep_ms, created_at, label],
            |r| r.get(0),
        )?;
        let mut ins = tx.prepare("INSERT INTO verify_probes (run_id, idx) VALUES (?1, ?2)")?;
        for i in 1..=n {
            ins.execute(params![id, i])?;
        }
        event::record(tx, Kind::VerifyStarted, About::run(id), None, None, Some(&format!("{n} probes")))?;
        Ok(Run {
            id,
            n,
            sleep_ms,
            created_at,
            label: label.map(str::to_string),
        })
    })
}

fn get_in(tx: &Transaction, id: i64) -> Result<Run> {
    tx.query_row(
        "SELECT id, n, sleep_ms, created_at, label FROM verify_runs WHERE id = ?1",
        [id],
        |r| {
            Ok(Run {
                id: r.get(0)?,
                n: r.get(1)?,
                sleep_ms: r.get(2)?,
                created_at: r.get(3)?,
                label: r.get(4)?,
            })
        },
    )
    .optional()?
    .ok_or(Error::NotFound { what: "run", id })
}

/// The run `id`.
pub fn get(db: &Db, id: i64) -> Result<Run> {
    db.read(|tx| get_in(tx, id))
}

fn probes_in(tx: &Transaction, run: i64) -> Result<Vec<Probe>> {
    let mut st = tx.prepare_cached(
        "SELECT idx, started_at, finished_at, pid FROM verify_probes WHERE run_id = ?1 ORDER BY idx",
    )?;
    let rows = st.query_map([run], |r| {
        Ok(Probe {
            index: r.get(0)?,
            started_at: r.get(1)?,
            finished_at: r.get(2)?,
            pid: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

/// The last `limit` runs with their probes, oldest first, inside a transaction
/// the caller holds (for `orch status`).
pub fn recent_in(tx: &Transaction, limit: usize) -> Result<Vec<(Run, Vec<Probe>)>> {
    let ids: Vec<i64> = {
        let mut st = tx.prepare_cached("SELECT id FROM verify_runs ORDER BY id DESC LIMIT ?1")?;
        let rows = st.query_map([limit as i64], |r| r.get(0))?;
        rows.collect::<std::result::Result<_, _>>()?
    };
    ids.into_iter()
        .rev()
        .map(|id| Ok((get_in(tx, id)?, probes_in(tx, id)?)))
        .collect()
}

/// The run `id` and its probes, in index order, from one snapshot.
pub fn load(db: &Db, id: i64) -> Result<(Run, Vec<Probe>)> {
    db.read(|tx| Ok((get_in(tx, id)?, probes_in(tx, id)?)))
}

/// Records the start of probe `idx` of `run` (one IMMEDIATE transaction). Refuses an
/// unknown run, an index outside the run, and a probe that already started.
pub fn probe_start(db: &Db, run: i64, idx: i64, pid: u32) -> Result<(Run, i64)> {
    db.write(|tx| {
        let r = get_in(tx, run)?;
        if idx < 1 || idx > r.n {
            return Err(Error::invalid(format!(
                "run {run} has probes 1 to {}; there is no probe {idx}",
                r.n
            )));
        }
        let at = now_ms();
        let changed = tx.execute(
            "UPDATE verify_probes SET started_at = ?1, pid = ?2
             WHERE run_id = ?3 AND idx = ?4 AND started_at IS NULL",
            params![at, pid, run, idx],
        )?;
        if changed == 0 {
            let started: Option<i64> = tx
                .query_row(
                    "SELECT started_at FROM verify_probes WHERE run_id = ?1 AND idx = ?2",
                    params![run, idx],
                    |r| r.get(0),
                )
                .optional()?
                .flatten();
            let when = started.map(rfc3339).unwrap_or_else(|| "earlier".into());
            return Err(Error::invalid(format!(
                "probe {idx} of run {run} already ran (started {when}); each probe runs once: make a new run with `orch-verify new`"
            )));
        }
        Ok((r, at))
    })
}

/// Records the end of probe `idx` of `run`; returns the time recorded.
pub fn probe_end(db: &Db, run: i64, idx: i64) -> Result<i64> {
    db.write(|tx| {
        let at = now_ms();
        let changed = tx.execute(
            "UPDATE verify_probes SET finished_at = ?1
             WHERE run_id = ?2 AND idx = ?3 AND started_at IS NOT NULL AND finished_at IS NULL",
            params![at, run, idx],
        )?;
        if changed == 0 {
            return Err(Error::invalid(format!(
                "probe {idx} of run {run} has no open start to finish"
            )));
        }
        let probes = probes_in(tx, run)?;
        if probes.iter().all(|p| p.finished_at.is_some()) {
            let a = intervals::analyse(&probes.iter().map(Probe::interval).collect::<Vec<_>>());
            let detail = format!("{} (speed-up {:.1}x)", a.verdict, a.speedup);
            event::record(
                tx,
                Kind::VerifyJudged,
                About::run(run),
                None,
                Some(&a.verdict.to_string()),
                Some(&detail),
            )?;
        }
        Ok(at)
    })
}

/// Something that happened to a probe while waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeEvent {
    Started { index: i64, at: i64 },
    Finished { index: i64, at: i64, took_ms: i64 },
}

/// Compares two snapshots of a run's probes and lists what changed, in time order.
pub fn events(before: &[Probe], after: &[Probe]) -> Vec<ProbeEvent> {
    let mut ev = Vec::new();
    for p in after {
        let old = before.iter().find(|b| b.index == p.index);
        if let (Some(at), None) = (p.started_at, old.and_then(|o| o.started_at)) {
            ev.push(ProbeEvent::Started { index: p.index, at });
        }
        if let (Some(at), None) = (p.finished_at, old.and_then(|o| o.finished_at)) {
            let took_ms = at - p.started_at.unwrap_or(at);
            ev.push(ProbeEvent::Finished {
                index: p.index,
                at,
                took_ms,
            });
        }
    }
    ev.sort_by_key(|e| match *e {
        ProbeEvent::Started { at, .. } => (at, 0),
        ProbeEvent::Finished { at, .. } => (at, 1),
    });
    ev
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// Every probe reported its end.
    AllDone,
    /// The timeout passed first.
    TimedOut,
    /// `keep_going` said stop.
    Stopped,
}

/// How often a wait looks at the database.
pub const POLL: Duration = Duration::from_millis(150);

/// Waits until every probe of `run` finished, `timeout` passed, or `step`
/// returns false. `step` runs after every poll (one small read every [`POLL`])
/// with the probes as they are and what changed since the last poll.
pub fn wait(
    db: &Db,
    run: i64,
    timeout: Option<Duration>,
    mut step: impl FnMut(&Run, &[Probe], &[ProbeEvent]) -> bool,
) -> Result<Waited> {
    let t0 = Instant::now();
    let (r, mut seen) = load(db, run)?;
    let blank: Vec<Probe> = seen
        .iter()
        .map(|p| Probe {
            started_at: None,
            finished_at: None,
            ..p.clone()
        })
        .collect();
    let mut new = events(&blank, &seen);
    loop {
        let go_on = step(&r, &seen, &new);
        if seen.iter().all(|p| p.finished_at.is_some()) {
            return Ok(Waited::AllDone);
        }
        if !go_on {
            return Ok(Waited::Stopped);
        }
        if timeout.is_some_and(|t| t0.elapsed() >= t) {
            return Ok(Waited::TimedOut);
        }
        let nap = match timeout {
            Some(t) => POLL.min(t.saturating_sub(t0.elapsed())),
            None => POLL,
        };
        std::thread::sleep(nap);
        let now = db.read(|tx| probes_in(tx, run))?;
        new = events(&seen, &now);
        seen = now;
    }
}

/// One probe in a report.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub index: i64,
    /// RFC 3339, or null when it never started.
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Milliseconds from the run's first start.
    pub start_offset_ms: Option<i64>,
    pub end_offset_ms: Option<i64>,
    pub duration_ms: Option<i64>,
}

/// `orch-verify report --json`.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run: i64,
    pub label: Option<String>,
    pub created_at: String,
    pub sleep_ms: i64,
    #[serde(flatten)]
    pub analysis: Analysis,
    /// Indexes of the probes that never reported their end.
    pub missing: Vec<i64>,
    pub probes: Vec<ProbeReport>,
}

/// Builds the report of a run from its probes.
pub fn report(r: &Run, probes: &[Probe]) -> RunReport {
    let intervals: Vec<Interval> = probes.iter().map(Probe::interval).collect();
    let analysis = intervals::analyse(&intervals);
    let t0 = probes.iter().filter_map(|p| p.started_at).min();
    let off = |t: Option<i64>| t.zip(t0).map(|(t, z)| t - z);
    RunReport {
        run: r.id,
        label: r.label.clone(),
        created_at: rfc3339(r.created_at),
        sleep_ms: r.sleep_ms,
        analysis,
        missing: probes
            .iter()
            .filter(|p| p.finished_at.is_none())
            .map(|p| p.index)
            .collect(),
        probes: probes
            .iter()
            .map(|p| ProbeReport {
                index: p.index,
                started_at: p.started_at.map(rfc3339),
                finished_at: p.finished_at.map(rfc3339),
                start_offset_ms: off(p.started_at),
                end_offset_ms: off(p.finished_at),
                duration_ms: p.started_at.zip(p.finished_at).map(|(s, e)| e - s),
            })
            .collect(),
    }
}

/// The labels of a run's timeline rows.
pub fn labels(probes: &[Probe]) -> Vec<String> {
    probes
        .iter()
        .map(|p| format!("probe {}", p.index))
        .collect()
}

/// What to do about a verdict other than PARALLEL.
pub fn advice(v: Verdict) -> Option<&'static str> {
    match v {
        Verdict::Parallel => None,
        Verdict::Sequential => Some(
            "What to do: the agents ran one after another. Send the whole message as ONE
message, unchanged: Claude Code starts Agent calls together only when they
arrive in the same assistant turn. If Claude asked you to allow each probe,
they queued behind your answers: add the permission rule (`orch-verify` alone
shows it) and try again. If the model split the calls anyway, run it again.",
        ),
        Verdict::Partial => Some(
            "What to do: some agents overlapped, but never all at once. Typical causes: a
permission prompt that held some probes until you answered (add the rule that
`orch-verify` alone shows), calls split over two messages, or a cap on
concurrent agents. Try again, or with fewer probes (-n).",
        ),
        Verdict::Incomplete => Some(
            "What to do: some probes never reported. An agent may not have run its
command, been refused permission, or used another database (keep the --db of
the command as given). Wait longer (`orch-verify wait RUN`) or make a new run.",
        ),
    }
}

/// The command that runs probe `idx` of `run`: `PROGRAM probe RUN I [--db PATH]`.
/// `--db` comes last so the command still starts with `orch-verify probe`, the
/// prefix the permission rule allows.
pub fn probe_command(program: &str, run: i64, idx: i64, db: Option<&Path>) -> String {
    let mut c = format!("{} probe {run} {idx}", emit::sh_word(program));
    if let Some(p) = db {
        c.push_str(" --db ");
        c.push_str(&emit::sh_word(&p.to_string_lossy()));
    }
    c
}

/// The Agent calls of a run: probe I's prompt tells the agent to run its command.
fn agent_calls(r: &Run, db: Option<&Path>) -> Vec<AgentCall> {
    (1..=r.n)
        .map(|i| {
            let cmd = probe_command("orch-verify", r.id, i, db);
            let mut prompt = format!(
                "You are probe {i} of {n} in a check that agents run in parallel.\n\n\
                 Use the Bash tool to run exactly this command, once, in the foreground, and nothing else:\n\n\
                 {cmd}\n\n\
                 It sleeps about {s} and prints one line. Do not change the command, do not run it in the background, and do not run anything else. When it finishes, reply with the line it printed (or its error), and nothing more.",
                n = r.n,
                s = crate::time::secs_short(r.sleep_ms),
            );
            if r.sleep_ms > BASH_DEFAULT_TIMEOUT_MS {
                let _ = write!(
                    prompt,
                    " Set the Bash tool's timeout to {} ms so the command is not stopped early.",
                    (r.sleep_ms + 60_000).min(600_000)
                );
            }
            AgentCall {
                description: format!("Parallel probe {i} of {}", r.n),
                prompt,
                subagent_type: None,                ..Default::default()
            }
        })
        .collect()
}

/// A run on its way to Claude Code: its probes' Agent calls and the one
/// message that launches them all at once (`orch-verify new`, the walkthrough).
#[derive(Debug, Clone)]
pub struct ProbeCalls {
    pub calls: Vec<AgentCall>,
    pub message: String,
}

/// The calls and message of run `r`; `db` is the file probes must name, if any.
pub fn probe_calls(r: &Run, db: Option<&Path>) -> ProbeCalls {
    let calls = agent_calls(r, db);
    let message = emit::render_claude(&calls);
    ProbeCalls { calls, message }
}

/// The settings snippet that allows every probe.
pub fn permission_snippet() -> String {
    let v = serde_json::json!({ "permissions": { "allow": [PERMISSION_RULE] } });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

/// Rules that already let the probe command run.
const COVERING_RULES: &[&str] = &[
    PERMISSION_RULE,
    "Bash(orch-verify probe *)",
    "Bash(orch-verify:*)",
    "Bash(orch-verify *)",
    "Bash(*)",
    "Bash",
];

/// The first settings file among `files` whose rules already allow the probe command.
pub fn find_permission(files: &[PathBuf]) -> Option<PathBuf> {
    crate::claude::settings::find_allowed(files, COVERING_RULES)
}

/// What [`add_permission`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    Added,
    AlreadyThere,
}

/// Adds [`PERMISSION_RULE`] to `permissions.allow` in the settings file `path`,
/// creating it when missing and keeping every other key. A file that is not a
/// JSON object (or whose `permissions`/`allow` have the wrong shape) is refused
/// and left untouched. The new file replaces the old one atomically.
pub fn add_permission(path: &Path) -> Result<Added> {
    Ok(
        if crate::claude::settings::allow(path, PERMISSION_RULE, COVERING_RULES)? {
            Added::Added
        } else {
            Added::AlreadyThere
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_parsing() {
        assert_eq!(parse_sleep("8").unwrap(), 8000);
        assert_eq!(parse_sleep("0.5").unwrap(), 500);
        assert_eq!(parse_sleep("250ms").unwrap(), 250);
        assert_eq!(parse_sleep("2m").unwrap(), 120_000);
        for bad in ["0", "-1", "0.001", "601", "1e9", "nan", "inf", "soon"] {
            assert!(parse_sleep(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn probes_record_once_and_in_range() {
        let db = Db::open_in_memory().unwrap();
        let r = create(&db, 2, 100, None).unwrap();
        assert!(matches!(
            probe_start(&db, r.id + 1, 1, 1),
            Err(Error::NotFound { .. })
        ));
        assert!(probe_start(&db, r.id, 0, 1).is_err());
        assert!(probe_start(&db, r.id, 3, 1).is_err());
        let (_, s) = probe_start(&db, r.id, 1, 1).unwrap();
        assert!(probe_start(&db, r.id, 1, 1).is_err());
        let e = probe_end(&db, r.id, 1).unwrap();
        assert!(e >= s);
        assert!(probe_end(&db, r.id, 1).is_err());
        assert!(probe_end(&db, r.id, 2).is_err());
        let (_, probes) = load(&db, r.id).unwrap();
        let rep = report(&r, &probes);
        assert_eq!(rep.analysis.verdict, Verdict::Incomplete);
        assert_eq!(rep.missing, vec![2]);
    }

    #[test]
    fn probe_command_keeps_the_allowed_prefix() {
        let c = probe_command("orch-verify", 7, 2, Some(Path::new("/tmp/my dir/o.db")));
        assert_eq!(c, "orch-verify probe 7 2 --db '/tmp/my dir/o.db'");
        assert!(c.starts_with("orch-verify probe "));
        assert_eq!(
            probe_command("/usr/bin/orch-verify", 1, 1, None),
            "/usr/bin/orch-verify probe 1 1"
        );
    }

    #[test]
    fn permission_merges_and_refuses_bad_json() {
        let dir = tempfile::tempdir().unwrap();
        let p = crate::claude::settings::local_path(dir.path());
        assert_eq!(add_permission(&p).unwrap(), Added::Added);
        assert_eq!(add_permission(&p).unwrap(), Added::AlreadyThere);
        std::fs::write(
            &p,
            r#"{"model":"opus","permissions":{"allow":["Bash(ls:*)"],"deny":["Read(.env)"]}}"#,
        )
        .unwrap();
        assert_eq!(add_permission(&p).unwrap(), Added::Added);
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(v["model"], "opus");
        assert_eq!(v["permissions"]["deny"][0], "Read(.env)");
        assert_eq!(
            v["permissions"]["allow"],
            serde_json::json!(["Bash(ls:*)", PERMISSION_RULE])
        );
        assert_eq!(
            find_permission(&[dir.path().join("nope"), p.clone()]),
            Some(p.clone())
        );
        std::fs::write(&p, "{ not json").unwrap();
        assert!(add_permission(&p).is_err());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{ not json");
        std::fs::write(&p, r#"{"permissions":[]}"#).unwrap();
        assert!(add_permission(&p).is_err());
    }

    #[test]
    fn message_uses_agent_calls() {
        let r = Run {
            id: 3,
            n: 2,
            sleep_ms: 8000,
            created_at: 0,
            label: None,
        };
        let ProbeCalls { calls, message: m } = probe_calls(&r, None);
        assert!(m.starts_with("Launch 2 agents in parallel"));
        assert!(m.contains("orch-verify probe 3 2"));
        assert!(calls.iter().all(|c| c.description.split(' ').count() <= 5));
    }
}
