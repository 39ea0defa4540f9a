//! Batches: claiming ready tasks atomically, planning waves from
//! dependencies, and every SQL statement on the `batches` table.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use rusqlite::{params, OptionalExtension, Transaction};
use serde::Serialize;

use crate::db::Db;
use crate::error::{Error, Result};
use crate::event::{self, About, Kind};
use crate::task::{self, Status, Task};
use crate::time::{now_ms, rfc3339};

/// How many tasks a batch takes unless told otherwise: a size that is easy to
/// review, not a Claude Code limit (the Agent calls of one message start
/// together in its main loop; it refuses a sub-agent beyond
/// `CLAUDE_CODE_MAX_CONCURRENT_SUBAGENTS`, default 20, running at once).
pub const DEFAULT_MAX: usize = 10;

/// A batch and its tasks, in launch order (priority, then age).
#[derive(Debug, Clone, Serialize)]
pub struct Batch {
    pub id: i64,
    pub created_at: String,
    pub emitted_at: Option<String>,
    pub tasks: Vec<Task>,
}

/// What `orch-batch create` may take.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub max: usize,
    pub min: usize,
    pub role: Option<String>,
    /// Agents tracked through hooks whose end never came for this long are
    /// reconciled as lost first (`None`: left alone).
    pub stale_after: Option<std::time::Duration>,
    /// The front end that makes the batch, when its tasks' attempts are its
    /// runner's (`mcp`: orch-mcp hands the batch to Claude Code).
    pub made_by: Option<&'static str>,
}

impl Default for CreateRequest {
    fn default() -> Self {
        CreateRequest {
            max: DEFAULT_MAX,
            min: 1,
            role: None,
            stale_after: Some(crate::limits::DEFAULT_STALE_AFTER),
            made_by: None,
        }
    }
}

/// Why `create` made no batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooFew {
    pub ready: i64,
    pub min: usize,
}

/// Claims up to `max` ready tasks into a new batch, in one IMMEDIATE
/// transaction; `Ok(Err(TooFew))` when fewer than `min` are ready.
pub fn create(db: &Db, req: &CreateRequest) -> Result<std::result::Result<Batch, TooFew>> {
    db.write(|tx| create_in(tx, req))
}

/// [`create`] inside a transaction the caller holds (it must be IMMEDIATE).
pub fn create_in(
    tx: &Transaction,
    req: &CreateRequest,
) -> Result<std::result::Result<Batch, TooFew>> {
    Ok(create_reclaiming_in(tx, req)?.0)
}

/// [`create_in`], with what it took over first ([`take_over_expired_in`]):
/// every batching path hands back what dead runners left before it batches.
#[allow(clippy::type_complexity)]
pub fn create_reclaiming_in(
    tx: &Transaction,
    req: &CreateRequest,
) -> Result<(std::result::Result<Batch, TooFew>, Reclaimed)> {
    if req.max == 0 {
        return Err(Error::invalid("--max must be at least 1"));
    }
    let stale = req.stale_after.map(|d| d.as_millis() as i64);
    let back = take_over_expired_in(tx, stale)?;
    Ok((pick_in(tx, req)?, back))
}

fn pick_in(tx: &Transaction, req: &CreateRequest) -> Result<std::result::Result<Batch, TooFew>> {
    let ready = task::count_ready_upto(tx, req.role.as_deref(), req.min.max(1) as i64)?;
    if ready == 0 || (ready as usize) < req.min {
        return Ok(Err(TooFew {
            ready,
            min: req.min.max(1),
        }));
    }
    if let Some(ids) = crate::touches::pick_ready_in(tx, req.role.as_deref(), req.max)? {
        if ids.len() < req.min.max(1) {
            return Ok(Err(TooFew {
                ready: ids.len() as i64,
                min: req.min.max(1),
            }));
        }
        return Ok(Ok(insert_of_in(tx, &ids, req.made_by)?));
    }
    let now = now_ms();
    let id = insert_in(tx, now, req.made_by)?;
    let claimed = task::batch_ready_in(tx, id, now, req.role.as_deref(), req.max)?;
    debug_assert!(claimed > 0);
    Ok(Ok(get_in(tx, id)?))
}

/// A new, empty batch row.
fn insert_in(tx: &Transaction, now: i64, made_by: Option<&str>) -> Result<i64> {
    tx.execute(
        "INSERT INTO batches (created_at, made_by) VALUES (?1, ?2)",
        params![now, made_by],
    )?;
    let id = tx.last_insert_rowid();
    event::record(tx, Kind::BatchCreated, About::batch(id), None, None, None)?;
    Ok(id)
}

/// Puts exactly the queued tasks `ids` into a new batch (inside a transaction
/// the caller holds, which must be IMMEDIATE); refused if any of them is not
/// queued. Batches whose runner's lease expired are taken over first.
pub fn create_of_in(tx: &Transaction, ids: &[i64]) -> Result<Batch> {
    if ids.is_empty() {
        return Err(Error::invalid("a batch needs at least one task"));
    }
    take_over_expired_in(tx, None)?;
    insert_of_in(tx, ids, None)
}

fn insert_of_in(tx: &Transaction, ids: &[i64], made_by: Option<&str>) -> Result<Batch> {
    let now = now_ms();
    let id = insert_in(tx, now, made_by)?;
    for &t in ids {
        if !task::batch_one_in(tx, id, now, t)? {
            return Err(Error::invalid(format!(
                "task {t} is not queued; it cannot join a new batch"
            )));
        }
    }
    get_in(tx, id)
}

/// Returns tasks of batch `batch` that never started to the queue (e.g. when
/// a run is interrupted before reaching them), as long as `holder` still
/// holds the batch's lease: a run whose batch was taken over hands back
/// nothing (its tasks are another runner's now). Returns the ids that went back.
pub fn requeue_in(tx: &Transaction, batch: i64, holder: &str, ids: &[i64]) -> Result<Vec<i64>> {
    let mut back = Vec::new();
    if !holds_lease_in(tx, batch, holder)? {
        return Ok(back);
    }
    for &id in ids {
        if task::requeue_in(tx, id, batch)? {
            back.push(id);
        }
    }
    Ok(back)
}

/// One batch with its tasks, or `NotFound`.
pub fn get(db: &Db, id: i64) -> Result<Batch> {
    db.read(|tx| get_in(tx, id))
}

/// [`get`] inside a transaction the caller holds.
pub fn get_in(tx: &Transaction, id: i64) -> Result<Batch> {
    let (created_at, emitted_at): (i64, Option<i64>) = tx
        .query_row(
            "SELECT created_at, emitted_at FROM batches WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .ok_or(Error::NotFound { what: "batch", id })?;
    let tasks = task::list_in(
        tx,
        &task::TaskFilter {
            batch: Some(id),
            ..Default::default()
        },
    )?;
    Ok(Batch {
        id,
        created_at: rfc3339(created_at),
        emitted_at: emitted_at.map(rfc3339),
        tasks,
    })
}

/// Records that the batch was emitted (the first time only).
pub fn mark_emitted(db: &Db, id: i64) -> Result<()> {
    db.write(|tx| mark_emitted_in(tx, id))
}

/// [`mark_emitted`] inside a transaction the caller holds.
pub fn mark_emitted_in(tx: &Transaction, id: i64) -> Result<()> {
    let first = tx.execute(
        "UPDATE batches SET emitted_at = ?2 WHERE id = ?1 AND emitted_at IS NULL",
        params![id, now_ms()],
    )?;
    if first == 1 {
        event::record(tx, Kind::BatchEmitted, About::batch(id), None, None, None)?;
    } else if tx
        .query_row("SELECT 1 FROM batches WHERE id = ?1", [id], |_| Ok(()))
        .optional()?
        .is_none()
    {
        return Err(Error::NotFound { what: "batch", id });
    }
    Ok(())
}

/// Who holds batch `id`: (claimed at, runner pid, lease holder, lease end).
#[allow(clippy::type_complexity)]
pub fn lease_in(
    tx: &Transaction,
    id: i64,
) -> Result<(Option<i64>, Option<i64>, Option<String>, Option<i64>)> {
    tx.query_row(
        "SELECT run_claimed_at, runner_pid, lease_holder, lease_until FROM batches WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )
    .optional()?
    .ok_or(Error::NotFound { what: "batch", id })
}

/// Records that orch-run (pid `pid`, lease holder `holder`) claimed batch
/// `id` at `at`, its lease running to `until`.
pub fn set_lease_in(
    tx: &Transaction,
    id: i64,
    at: i64,
    pid: u32,
    holder: &str,
    until: i64,
) -> Result<()> {
    let before: Option<String> = tx
        .query_row(
            "SELECT lease_holder FROM batches WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    if let Some(old) = before.filter(|h| h != holder) {
        let detail = format!("lease of {old} taken over by {holder}");
        event::record(
            tx,
            Kind::BatchLost,
            About::batch(id),
            None,
            None,
            Some(&detail),
        )?;
    }
    tx.execute(
        "UPDATE batches SET run_claimed_at = ?2, runner_pid = ?3, lease_holder = ?4, lease_until = ?5
         WHERE id = ?1",
        params![id, at, pid, holder, until],
    )?;
    Ok(())
}

/// Batches whose runner's lease expired by `now`: (batch, holder, lease end).
/// Only the expiry counts here, as any host sees it: whether a holder on
/// this host is gone is for `orch-run` of that batch to judge, not for every
/// tool that batches (a process hidden from its /proc is not gone).
pub fn lease_expired_in(tx: &Transaction, now: i64) -> Result<Vec<(i64, String, i64)>> {
    let mut s = tx.prepare(
        "SELECT id, lease_holder, lease_until FROM batches
         WHERE lease_holder IS NOT NULL AND lease_until <= ?1",
    )?;
    let v = s
        .query_map([now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(v)
}

/// Batches whose runner's lease expired with tasks still batched or running:
/// what the next batching (or `orch-run` of the batch) takes over.
pub fn expired_with_tasks_in(tx: &Transaction, now: i64) -> Result<Vec<(i64, String, i64)>> {
    let mut v = Vec::new();
    for l in lease_expired_in(tx, now)? {
        if !task::running_in_batch_in(tx, l.0)?.is_empty()
            || !task::batched_in_batch_in(tx, l.0)?.is_empty()
        {
            v.push(l);
        }
    }
    Ok(v)
}

/// Which front end made batch `id` (`mcp`), when one said.
pub fn made_by_in(tx: &Transaction, id: i64) -> Result<Option<String>> {
    Ok(tx
        .query_row("SELECT made_by FROM batches WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?
        .flatten())
}

/// Retries of a task lost with a runner whose lease expired, for whoever takes
/// its batch over.
pub const LOST_RETRIES: u32 = 2;

/// What [`take_over_expired_in`] handed back.
#[derive(Debug, Default)]
pub struct Reclaimed {
    /// Batches whose runner's lease expired, with tasks left.
    pub batches: Vec<i64>,
    /// Tasks back in the queue (never started, or lost and retried).
    pub requeued: Vec<i64>,
    /// Tasks lost with their retries used up, now failed.
    pub failed: Vec<i64>,
    /// Tasks of hook-tracked agents whose end never came, reconciled as lost.
    pub stale: Vec<i64>,
}

impl Reclaimed {
    /// What was taken over, for a note to people (empty when nothing was).
    pub fn describe(&self) -> String {
        let ids = |v: &[i64]| {
            v.iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let s = |n: usize| if n == 1 { "" } else { "s" };
        let mut parts = Vec::new();
        if !self.stale.is_empty() {
            parts.push(format!(
                "the agent{} of task{} {} never reported an end (tracked by orch-hook): reconciled as lost",
                s(self.stale.len()),
                s(self.stale.len()),
                ids(&self.stale)
            ));
        }
        if !self.batches.is_empty() {
            parts.push(format!(
                "the runner of batch{} {} is gone (its lease expired): {} task{} back in the queue{}",
                if self.batches.len() == 1 { "" } else { "es" },
                ids(&self.batches),
                self.requeued.len(),
                s(self.requeued.len()),
                if self.failed.is_empty() {
                    String::new()
                } else {
                    format!(", {} failed (retries used up)", ids(&self.failed))
                }
            ));
        }
        parts.join("; ")
    }
}

/// Takes over every batch whose runner's lease expired (any orch tool that
/// batches does, first): tasks it never started go back to the queue;
/// started ones get a failed attempt of class `lost` and go back to the
/// queue while [`LOST_RETRIES`] last. With `stale_ms`, agents tracked through
/// hooks whose end never came within it are reconciled the same way.
pub fn take_over_expired_in(tx: &Transaction, stale_ms: Option<i64>) -> Result<Reclaimed> {
    let now = now_ms();
    let mut r = Reclaimed::default();
    if let Some(ms) = stale_ms {
        r.stale = crate::limits::reconcile_stale_in(tx, now, ms)?;
    }
    for (id, holder, _) in lease_expired_in(tx, now)? {
        let running = task::running_in_batch_in(tx, id)?;
        let waiting = task::batched_in_batch_in(tx, id)?;
        if running.is_empty() && waiting.is_empty() {
            // A run that ended: nothing to hand back.
            end_lease_in(tx, id)?;
            continue;
        }
        let p = crate::lease::pid_of(&holder).unwrap_or(0);
        let error =
            format!("orch-run (pid {p}) stopped before this task finished (its lease expired)");
        for t in running {
            let again = crate::attempt::Again::Queued;
            match crate::attempt::lose_in(
                tx,
                t,
                crate::attempt::ORCH_RUN,
                &error,
                LOST_RETRIES.into(),
                again,
                now,
            )? {
                true => r.requeued.push(t),
                false => r.failed.push(t),
            }
        }
        for t in waiting {
            if task::requeue_in(tx, t, id)? {
                r.requeued.push(t);
            }
        }
        crate::calls::fail_open(tx, &crate::calls::run_session(id), now)?;
        crate::limits::release_holder_in(tx, &holder)?;
        end_lease_in(tx, id)?;
        r.batches.push(id);
    }
    Ok(r)
}

/// Ends batch `id`'s lease (its runner is gone and its tasks were handed back).
pub fn end_lease_in(tx: &Transaction, id: i64) -> Result<()> {
    let n = tx.execute(
        "UPDATE batches SET lease_holder = NULL, lease_until = NULL
         WHERE id = ?1 AND lease_holder IS NOT NULL",
        [id],
    )?;
    if n == 1 {
        event::record(
            tx,
            Kind::BatchLost,
            About::batch(id),
            None,
            None,
            Some("lease lapsed; its tasks were handed back"),
        )?;
    }
    Ok(())
}

/// Extends `holder`'s lease on batch `id`; false when it no longer holds it.
/// Whether `holder` holds batch `id`'s lease (expired or not: until another
/// tool takes it over, it is still this holder's).
pub fn holds_lease_in(tx: &Transaction, id: i64, holder: &str) -> Result<bool> {
    Ok(tx
        .query_row(
            "SELECT 1 FROM batches WHERE id = ?1 AND lease_holder = ?2",
            params![id, holder],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

pub fn renew_lease_in(tx: &Transaction, id: i64, holder: &str, until: i64) -> Result<bool> {
    Ok(tx.execute(
        "UPDATE batches SET lease_until = ?3 WHERE id = ?1 AND lease_holder = ?2",
        params![id, holder, until],
    )? == 1)
}

/// One line of `orch-batch list`.
#[derive(Debug, Clone, Serialize)]
pub struct BatchSummary {
    pub id: i64,
    pub created_at: String,
    pub emitted_at: Option<String>,
    pub tasks: i64,
    pub batched: i64,
    pub running: i64,
    /// Done, landed or not.
    pub done: i64,
    pub failed: i64,
    pub cancelled: i64,
}

/// Every batch, oldest first, with counts of its tasks by status.
pub fn list(db: &Db) -> Result<Vec<BatchSummary>> {
    db.read(|tx| {
        let mut stmt = tx.prepare(
            "SELECT b.id, b.created_at, b.emitted_at, count(t.id),
                    count(CASE t.status WHEN 'batched' THEN 1 END),
                    count(CASE t.status WHEN 'running' THEN 1 END),
                    count(CASE WHEN t.status IN ('done', 'landed') THEN 1 END),
                    count(CASE t.status WHEN 'failed' THEN 1 END),
                    count(CASE t.status WHEN 'cancelled' THEN 1 END)
             FROM batches b LEFT JOIN tasks t ON t.batch_id = b.id
             GROUP BY b.id ORDER BY b.id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(BatchSummary {
                id: r.get(0)?,
                created_at: rfc3339(r.get(1)?),
                emitted_at: r.get::<_, Option<i64>>(2)?.map(rfc3339),
                tasks: r.get(3)?,
                batched: r.get(4)?,
                running: r.get(5)?,
                done: r.get(6)?,
                failed: r.get(7)?,
                cancelled: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    })
}

/// Returns a batch that never ran to the queue: its tasks become queued again
/// and the batch is deleted. Refused once any of its tasks started. Inside
/// [`crate::dispatch::release`]'s transaction, which first forgets the
/// batch's dispatch (the only way in: a batch sent out as a bundle is
/// released too).
pub(crate) fn release_in(tx: &Transaction, id: i64) -> Result<Vec<i64>> {
    let b = get_in(tx, id)?;
    let (_, _, holder, until) = lease_in(tx, id)?;
    if let Some(h) = holder.as_deref() {
        if !crate::lease::lapsed(Some(h), until, crate::time::now_ms()) {
            return Err(Error::invalid(format!(
                "batch {id} cannot be released: orch-run (pid {}) is running it (its lease runs to {}); stop that run (an interrupted orch-run puts the tasks it did not start back) or wait for its lease to expire",
                crate::lease::pid_of(h).unwrap_or(0),
                crate::time::rfc3339(until.unwrap_or(0))
            )));
        }
    }
    if let Some(t) = b
        .tasks
        .iter()
        .find(|t| !matches!(t.status, Status::Batched | Status::Cancelled))
    {
        return Err(Error::invalid(format!(
            "batch {id} cannot be released: task {} is {} (only a batch that never ran goes back)",
            t.id, t.status
        )));
    }
    task::unbatch_all_in(tx, id)?;
    tx.execute("DELETE FROM batches WHERE id = ?1", [id])?;
    event::record(tx, Kind::BatchReleased, About::batch(id), None, None, None)?;
    Ok(b.tasks
        .iter()
        .filter(|t| t.status == Status::Batched)
        .map(|t| t.id)
        .collect())
}

/// A short view of a task in a plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlanTask {
    pub id: i64,
    pub role: String,
    pub description: String,
    pub after: Vec<i64>,
    /// Why it waits for a later wave than its dependencies allow: its
    /// `--touches` overlap a task of an earlier wave.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_back: Option<String>,
}

/// A task that no wave can reach, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Blocked {
    pub id: i64,
    pub reason: String,
}

/// Waves of queued tasks: each wave can run in parallel once the waves before it are done.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub waves: Vec<Vec<PlanTask>>,
    pub blocked: Vec<Blocked>,
    pub cycles: Vec<Vec<i64>>,
}

/// Plans waves over the queued tasks (writes nothing). Tasks already batched or
/// running count as finishing before the first wave; at most `max` per wave.
pub fn plan(db: &Db, max: usize) -> Result<Plan> {
    if max == 0 {
        return Err(Error::invalid("--max must be at least 1"));
    }
    let (tasks, statuses) = db.read(|tx| {
        let queued = task::list_in(
            tx,
            &task::TaskFilter {
                status: Some(Status::Queued),
                ..Default::default()
            },
        )?;
        // Only the dependencies that are not queued themselves: the plan
        // places the queued ones, and a chain of queued tasks needs no lookup.
        let statuses = task::unqueued_deps_in(tx)?;
        Ok((queued, statuses))
    })?;
    Ok(plan_waves(tasks, &statuses, max))
}

fn plan_waves(mut tasks: Vec<Task>, statuses: &HashMap<i64, String>, max: usize) -> Plan {
    tasks.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.id.cmp(&b.id)));
    let n = tasks.len();
    let index: HashMap<i64, usize> = tasks.iter().enumerate().map(|(i, t)| (t.id, i)).collect();
    // What each task waits on among the queued ones; the rest finish before the first wave.
    let edges: Vec<Vec<usize>> = tasks
        .iter()
        .map(|t| {
            t.after
                .iter()
                .filter_map(|a| index.get(a).copied())
                .collect()
        })
        .collect();
    // Cycles among queued tasks (only possible in a file edited by hand).
    let (cycle_paths, in_cycle) = cycles(&edges);
    let cycles = cycle_paths
        .iter()
        .map(|c| c.iter().map(|&i| tasks[i].id).collect())
        .collect();
    let mut blocked = Vec::new();
    let mut dead = vec![false; n];
    for (i, t) in tasks.iter().enumerate() {
        if in_cycle[i] {
            dead[i] = true;
            blocked.push(Blocked {
                id: t.id,
                reason: "part of a dependency cycle".into(),
            });
            continue;
        }
        for a in &t.after {
            if index.contains_key(a) {
                continue;
            }
            if let Some(s @ ("failed" | "cancelled")) = statuses.get(a).map(String::as_str) {
                dead[i] = true;
                blocked.push(Blocked {
                    id: t.id,
                    reason: format!("waits on task {a}, which is {s}"),
                });
                break;
            }
        }
    }
    // Kahn's algorithm, one wave at a time: a wave takes the first `max` tasks
    // (in priority order) whose queued dependencies are all in earlier waves.
    let mut waiting: Vec<usize> = edges.iter().map(Vec::len).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, e) in edges.iter().enumerate() {
        for &j in e {
            dependents[j].push(i);
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> = (0..n)
        .filter(|&i| !dead[i] && waiting[i] == 0)
        .map(Reverse)
        .collect();
    let mut placed = vec![false; n];
    let mut waves = Vec::new();
    let mut held: HashMap<usize, String> = HashMap::new();
    loop {
        let mut wave: Vec<usize> = Vec::new();
        // Tasks whose globs overlap one already in this wave wait for the next.
        let mut later: Vec<usize> = Vec::new();
        // As orch-batch create decides a batch: each wave its own budget.
        let mut checker = crate::touches::Checker::new();
        while wave.len() < max {
            match ready.pop() {
                Some(Reverse(i)) => {
                    let clash = wave.iter().find_map(|&j| {
                        use crate::touches::Clash;
                        match checker.clash(&tasks[j].touches, &tasks[i].touches) {
                            Clash::Apart => None,
                            Clash::Overlap(b, a) => Some(format!(
                                "touches {a}, which overlaps {b} of task {}",
                                tasks[j].id
                            )),
                            Clash::Undecided => {
                                Some("too many touches globs to compare in one wave".into())
                            }
                        }
                    });
                    match clash {
                        Some(why) => {
                            held.insert(
                                i,
                                format!("held back from wave {}: {why}", waves.len() + 1),
                            );
                            later.push(i);
                        }
                        None => wave.push(i),
                    }
                }
                None => break,
            }
        }
        for i in later {
            ready.push(Reverse(i));
        }
        if wave.is_empty() {
            break;
        }
        for &i in &wave {
            placed[i] = true;
            for &d in &dependents[i] {
                waiting[d] -= 1;
                if waiting[d] == 0 && !dead[d] {
                    ready.push(Reverse(d));
                }
            }
        }
        waves.push(
            wave.iter()
                .map(|&i| PlanTask {
                    id: tasks[i].id,
                    role: tasks[i].role.clone(),
                    description: tasks[i].description.clone(),
                    after: tasks[i].after.clone(),
                    held_back: held.remove(&i),
                })
                .collect(),
        );
    }
    // Anything left waits on a blocked task.
    for (i, t) in tasks.iter().enumerate() {
        if !placed[i] && !dead[i] {
            blocked.push(Blocked {
                id: t.id,
                reason: "waits on a blocked task".into(),
            });
        }
    }
    blocked.sort_by_key(|b| b.id);
    Plan {
        waves,
        blocked,
        cycles,
    }
}

/// The tasks on a dependency cycle (`edges[i]` = what i waits on), in linear
/// time: Tarjan's strongly connected components, iteratively (a 100 000-step
/// chain must not overflow the stack). Returns one cycle per component that
/// has one (its first node repeated at the end), and which nodes are on one.
fn cycles(edges: &[Vec<usize>]) -> (Vec<Vec<usize>>, Vec<bool>) {
    const NONE: usize = usize::MAX;
    let n = edges.len();
    let mut order = vec![NONE; n];
    let mut low = vec![0usize; n];
    let mut on_stack = vec![false; n];
    let mut stack: Vec<usize> = Vec::new();
    let mut calls: Vec<(usize, usize)> = Vec::new();
    let mut comp = vec![NONE; n];
    let mut next = 0usize;
    let mut found: Vec<usize> = Vec::new();
    for s in 0..n {
        if order[s] != NONE {
            continue;
        }
        order[s] = next;
        low[s] = next;
        next += 1;
        stack.push(s);
        on_stack[s] = true;
        calls.push((s, 0));
        while let Some(&mut (v, ref mut pos)) = calls.last_mut() {
            if let Some(&w) = edges[v].get(*pos) {
                *pos += 1;
                if order[w] == NONE {
                    order[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    calls.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(order[w]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(u, _)) = calls.last() {
                low[u] = low[u].min(low[v]);
            }
            if low[v] == order[v] {
                let mut size = 0;
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    comp[w] = v;
                    size += 1;
                    if w == v {
                        break;
                    }
                }
                if size > 1 || edges[v].contains(&v) {
                    found.push(v);
                }
            }
        }
    }
    let cyclic: HashSet<usize> = found.iter().copied().collect();
    let in_cycle: Vec<bool> = comp.iter().map(|c| cyclic.contains(c)).collect();
    // One cycle per component: walk inside it until a node comes back.
    let mut seen_at = vec![NONE; n];
    let mut paths = Vec::new();
    for &root in &found {
        let mut path: Vec<usize> = Vec::new();
        let mut v = root;
        while seen_at[v] == NONE {
            seen_at[v] = path.len();
            path.push(v);
            // Every node of a cyclic component has an edge inside it.
            match edges[v].iter().find(|&&w| comp[w] == root) {
                Some(&w) => v = w,
                None => break,
            }
        }
        let mut cycle = match seen_at[v] {
            NONE => path.clone(),
            at => path[at..].to_vec(),
        };
        cycle.push(v);
        for &p in &path {
            seen_at[p] = NONE;
        }
        paths.push(cycle);
    }
    paths.sort();
    (paths, in_cycle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{add, NewTask, Outcome};

    fn add_one(db: &Db, prompt: &str, after: Vec<i64>, priority: i64) -> i64 {
        let t = NewTask {
            role: Some("dev".into()),
            prompt: prompt.into(),
            priority: Some(priority),
            after: after.into_iter().map(task::Dep::Id).collect(),
            ..Default::default()
        }
        .validate(None)
        .unwrap();
        add(db, vec![t], |_| String::new()).unwrap()[0]
    }

    #[test]
    fn create_takes_ready_tasks_by_priority() {
        let db = Db::open_in_memory().unwrap();
        let a = add_one(&db, "a", vec![], 0);
        let b = add_one(&db, "b", vec![a], 5);
        let c = add_one(&db, "c", vec![], 9);
        let batch = create(&db, &CreateRequest::default()).unwrap().unwrap();
        let ids: Vec<i64> = batch.tasks.iter().map(|t| t.id).collect();
        assert_eq!(ids, vec![c, a]);
        assert!(create(&db, &CreateRequest::default()).unwrap().is_err());
        task::finish(
            &db,
            a,
            Outcome {
                ok: true,
                ..Default::default()
            },
        )
        .unwrap();
        let next = create(&db, &CreateRequest::default()).unwrap().unwrap();
        assert_eq!(next.tasks[0].id, b);
    }

    #[test]
    fn min_is_a_threshold() {
        let db = Db::open_in_memory().unwrap();
        add_one(&db, "a", vec![], 0);
        let req = CreateRequest {
            min: 2,
            ..Default::default()
        };
        assert_eq!(
            create(&db, &req).unwrap().unwrap_err(),
            TooFew { ready: 1, min: 2 }
        );
    }

    #[test]
    fn plan_builds_waves() {
        let db = Db::open_in_memory().unwrap();
        let a = add_one(&db, "a", vec![], 0);
        let b = add_one(&db, "b", vec![], 0);
        let c = add_one(&db, "c", vec![a, b], 0);
        let d = add_one(&db, "d", vec![c], 0);
        let p = plan(&db, 10).unwrap();
        let ids: Vec<Vec<i64>> = p
            .waves
            .iter()
            .map(|w| w.iter().map(|t| t.id).collect())
            .collect();
        assert_eq!(ids, vec![vec![a, b], vec![c], vec![d]]);
        let p = plan(&db, 1).unwrap();
        assert_eq!(p.waves.len(), 4);
    }

    #[test]
    fn plan_names_cycles() {
        let db = Db::open_in_memory().unwrap();
        let a = add_one(&db, "a", vec![], 0);
        let b = add_one(&db, "b", vec![a], 0);
        db.write(|tx| Ok(tx.execute("INSERT INTO task_deps VALUES (?1, ?2)", [a, b])?))
            .unwrap();
        let p = plan(&db, 10).unwrap();
        assert_eq!(p.cycles.len(), 1);
        assert!(p.waves.is_empty());
        assert_eq!(p.blocked.len(), 2);
    }

    #[test]
    fn cycles_are_found_in_one_pass() {
        // 0 -> 1 -> 2 -> 0, 3 -> 3, 4 -> 0 (waits on a cycle, is not on one), 5 alone.
        let edges = vec![vec![1], vec![2], vec![0], vec![3], vec![0], vec![]];
        let (paths, on) = cycles(&edges);
        assert_eq!(on, vec![true, true, true, true, false, false]);
        assert_eq!(paths.len(), 2);
        for p in &paths {
            assert_eq!(p.first(), p.last());
            for w in p.windows(2) {
                assert!(edges[w[0]].contains(&w[1]), "{p:?} follows the edges");
            }
        }
    }

    #[test]
    fn a_long_chain_plans_one_task_per_wave() {
        let db = Db::open_in_memory().unwrap();
        let mut prev = add_one(&db, "first", vec![], 0);
        let first = prev;
        for i in 0..300 {
            prev = add_one(&db, &format!("step {i}"), vec![prev], 0);
        }
        let p = plan(&db, 10).unwrap();
        assert_eq!(p.waves.len(), 301);
        assert_eq!(p.waves[0][0].id, first);
        assert_eq!(p.waves[300][0].id, prev);
        assert!(p.blocked.is_empty() && p.cycles.is_empty());
    }
}
