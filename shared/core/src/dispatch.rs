//! Batches sent out as bundles and the result records that come back: every
//! SQL statement on `dispatches` (the lease a bundle holds on its batch) and
//! `job_results` (one ingested record per task).

use std::collections::HashSet;
use std::time::Duration;

use rusqlite::{params, OptionalExtension, Transaction};
use serde::Serialize;

use crate::batch;
use crate::db::Db;
use crate::errclass::Class;
use crate::error::{Error, Result};
use crate::job::{Bundle, BundleHeader, BundleTask, ResultRecord, BUNDLE_FORMAT};
use crate::task::{self, Outcome, Status};
use crate::time::{now_ms, rfc3339};

/// How long a dispatch holds its batch unless told otherwise.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Marks batch `id` dispatched (or renews its lease) and returns its bundle:
/// every task still waiting to launch, and whether this export made the
/// dispatch (false when it renewed one). Exporting again gives the same
/// `dispatch` name, so records of either export are accepted.
pub fn export(
    db: &Db,
    id: i64,
    lease: Duration,
    base: Option<String>,
    subagent_type: &dyn Fn(&str) -> Option<String>,
) -> Result<(Bundle, bool)> {
    db.write(|tx| {
        let b = batch::get_in(tx, id)?;
        if let (Some(_), runner, holder, _) = batch::lease_in(tx, id)? {
            let pid = holder
                .as_deref()
                .and_then(crate::lease::pid_of)
                .or(runner)
                .unwrap_or(0);
            return Err(Error::invalid(format!(
                "batch {id} was claimed by orch-run (pid {pid}); it runs here, not as jobs"
            )));
        }
        let tasks: Vec<_> = b
            .tasks
            .into_iter()
            .filter(|t| t.status == Status::Batched)
            .collect();
        if tasks.is_empty() {
            return Err(Error::invalid(format!(
                "batch {id} has no task waiting to launch (its tasks already started, finished or were cancelled)"
            )));
        }
        let now = now_ms();
        let expires = crate::time::after(now, lease);
        let old: Option<String> = tx
            .query_row(
                "SELECT token FROM dispatches WHERE batch_id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?;
        let fresh = old.is_none();
        let token = match old {
            Some(t) => {
                tx.execute(
                    "UPDATE dispatches SET expires_at = ?2, base = coalesce(?3, base) WHERE batch_id = ?1",
                    params![id, expires, base],
                )?;
                t
            }
            None => {
                let t = format!("b{id}-{now:x}-{:x}", std::process::id());
                tx.execute(
                    "INSERT INTO dispatches (batch_id, token, base, dispatched_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id, t, base, now, expires],
                )?;
                t
            }
        };
        batch::mark_emitted_in(tx, id)?;
        let bundle = Bundle {
            header: BundleHeader {
                format: BUNDLE_FORMAT.into(),
                batch: id,
                dispatch: token,
                base,
                tasks: tasks.len(),
            },
            tasks: tasks
                .into_iter()
                .enumerate()
                .map(|(index, t)| BundleTask {
                    index,
                    subagent_type: subagent_type(&t.role),
                    id: t.id,
                    role: t.role,
                    description: t.description,
                    prompt: t.prompt,
                    after: t.after,
                })
                .collect(),
        };
        Ok((bundle, fresh))
    })
}

/// Takes back a dispatch whose bundle could not be written.
pub fn undo(db: &Db, id: i64) -> Result<()> {
    db.write(|tx| clear_in(tx, id))
}

/// Refuses to run batch `id` here while it is out as a bundle.
pub fn refuse_if_dispatched_in(tx: &Transaction, id: i64) -> Result<()> {
    let at: Option<i64> = tx
        .query_row(
            "SELECT dispatched_at FROM dispatches WHERE batch_id = ?1",
            [id],
            |r| r.get(0),
        )
        .optional()?;
    match at {
        Some(at) => Err(Error::invalid(format!(
            "batch {id} was dispatched as a bundle at {}; its tasks run as jobs (`orch-run ingest` their records, or `orch-batch release {id}` first)",
            rfc3339(at)
        ))),
        None => Ok(()),
    }
}

/// Forgets batch `id`'s dispatch.
fn clear_in(tx: &Transaction, id: i64) -> Result<()> {
    tx.execute("DELETE FROM dispatches WHERE batch_id = ?1", [id])?;
    Ok(())
}

/// Returns a batch that never ran to the queue (`orch-batch release`): its
/// dispatch, if it was sent out as a bundle, forgotten, its tasks queued
/// again and the batch deleted ([`batch::release_in`]). Refused once any of
/// its tasks started. The ids of the tasks queued again.
pub fn release(db: &Db, id: i64) -> Result<Vec<i64>> {
    db.write(|tx| {
        clear_in(tx, id)?;
        batch::release_in(tx, id)
    })
}

/// A batch out as a bundle, as `orch status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Dispatched {
    pub batch: i64,
    pub dispatched_at: String,
    pub expires_at: String,
    pub age_ms: i64,
    pub expired: bool,
    /// Its tasks no record has come back for yet.
    pub waiting: i64,
}

/// Every dispatched batch with a task still waiting for its record.
pub fn list(db: &Db) -> Result<Vec<Dispatched>> {
    db.read(list_in)
}

/// [`list`] inside a transaction the caller holds.
pub fn list_in(tx: &Transaction) -> Result<Vec<Dispatched>> {
    {
        let mut stmt = tx.prepare(
            "SELECT d.batch_id, d.dispatched_at, d.expires_at,
                    (SELECT count(*) FROM job_results r WHERE r.batch_id = d.batch_id)
             FROM dispatches d ORDER BY d.batch_id",
        )?;
        let now = now_ms();
        let rows: Vec<(i64, i64, i64, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut out = Vec::new();
        for (b, at, exp, _) in rows {
            let waiting = batch::get_in(tx, b)?
                .tasks
                .iter()
                .filter(|t| t.status == Status::Batched)
                .count() as i64;
            if waiting > 0 {
                out.push(Dispatched {
                    batch: b,
                    dispatched_at: rfc3339(at),
                    expires_at: rfc3339(exp),
                    age_ms: now - at,
                    expired: now >= exp,
                    waiting,
                });
            }
        }
        Ok(out)
    }
}

/// One record of an ingest's input: where it came from (`file:line`) and its text.
#[derive(Debug, Clone)]
pub struct Input {
    pub label: String,
    pub text: String,
}

/// What an ingest did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Ingested {
    pub recorded: Vec<i64>,
    /// Records already ingested: (label, task).
    pub skipped: Vec<(String, i64)>,
}

/// Records every result record in one transaction, or none: a record that
/// is invalid, of another batch or dispatch, or for a task not dispatched
/// refuses the whole input, naming its label. A record for a task that
/// already has one is skipped.
pub fn ingest(db: &Db, inputs: &[Input]) -> Result<Ingested> {
    // Parsed and checked before the write lock is taken.
    let mut records = Vec::with_capacity(inputs.len());
    for i in inputs {
        let r: ResultRecord = serde_json::from_str(&i.text).map_err(|e| {
            Error::invalid(format!(
                "{}: not a result record ({e}); nothing ingested",
                i.label
            ))
        })?;
        r.check()
            .map_err(|e| Error::invalid(format!("{}: {e}; nothing ingested", i.label)))?;
        records.push((i, r));
    }
    db.write(|tx| {
        let mut done = Ingested::default();
        let mut seen = HashSet::new();
        for (i, r) in &records {
            let refuse = |why: String| {
                Error::invalid(format!("{}: task {}: {why}; nothing ingested", i.label, r.task))
            };
            let token: Option<String> = tx
                .query_row(
                    "SELECT token FROM dispatches WHERE batch_id = ?1",
                    [r.batch],
                    |x| x.get(0),
                )
                .optional()?;
            match token {
                None => return Err(refuse(format!("batch {} was never dispatched here", r.batch))),
                Some(t) if t != r.dispatch => {
                    return Err(refuse(format!(
                        "dispatch {:?} is not batch {}'s ({t:?}): a record of another export or database",
                        r.dispatch, r.batch
                    )))
                }
                Some(_) => {}
            }
            let t = match task::get_in(tx, r.task) {
                Ok(t) => t,
                Err(Error::NotFound { .. }) => return Err(refuse("no such task".into())),
                Err(e) => return Err(e),
            };
            if t.batch != Some(r.batch) {
                return Err(refuse(format!("it is not in batch {}", r.batch)));
            }
            let had: Option<i64> = tx
                .query_row(
                    "SELECT task_id FROM job_results WHERE task_id = ?1",
                    [r.task],
                    |x| x.get(0),
                )
                .optional()?;
            if had.is_some() || !seen.insert(r.task) {
                done.skipped.push((i.label.clone(), r.task));
                continue;
            }
            if t.status != Status::Batched {
                return Err(refuse(format!(
                    "it is {} here, not waiting for its record",
                    t.status
                )));
            }
            task::start_in(tx, r.task, Some(r.start_ms))?;
            task::finish_in(
                tx,
                r.task,
                Outcome {
                    ok: r.outcome == Status::Done,
                    result: r.result.clone(),
                    error: r.error.clone(),
                    exit_code: r.exit_code.map(i64::from),
                    log: None,
                    claude: r.claude.clone(),
                    at: Some(r.end_ms),
                },
            )?;
            let mut metrics = r
                .claude
                .as_ref()
                .map(crate::attempt::Metrics::from_claude)
                .unwrap_or_default();
            metrics.cost_usd = metrics.cost_usd.or(r.cost_usd);
            metrics.session_id = metrics.session_id.or_else(|| r.session_id.clone());
            if let Some(t) = &r.tokens {
                metrics.input_tokens = metrics.input_tokens.or(Some(t.input));
                metrics.output_tokens = metrics.output_tokens.or(Some(t.output));
            }
            metrics.duration_ms = metrics.duration_ms.or(Some(r.end_ms - r.start_ms));
            crate::attempt::begin_in(tx, r.task, crate::attempt::JOB, r.start_ms)?;
            crate::attempt::end_in(
                tx,
                r.task,
                crate::attempt::JOB,
                &crate::attempt::End {
                    ok: r.outcome == Status::Done,
                    class: r.error_class.as_deref().and_then(Class::parse),
                    error: r.error.clone(),
                    exit_code: r.exit_code.map(i64::from),
                    retry_at: None,
                    metrics,
                    at: r.end_ms,
                },
            )?;
            tx.execute(
                "INSERT INTO job_results (task_id, batch_id, record, branch, ingested_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![r.task, r.batch, i.text.trim(), r.branch, now_ms()],
            )?;
            done.recorded.push(r.task);
        }
        Ok(done)
    })
}
