//! The claim on a batch: one orch-run at a time, taking over from a dead
//! runner, and recording each task's start and end with its agent call.

#[allow(unused_imports)]
use super::*;
use crate::attempt::{self, Again};

pub use crate::calls::run_session as session_id;

/// A batch claimed for running, with the tasks this run will start.
#[derive(Debug)]
pub struct Claim {
    pub batch: i64,
    pub tasks: Vec<Task>,
    /// Tasks a dead earlier runner left `running`, now marked failed (their
    /// retries used up).
    pub recovered: Vec<i64>,
    /// Tasks a dead earlier runner left `running` that this run starts again.
    pub retried: Vec<i64>,
    /// The pid of the earlier orch-run of this batch that died, when this claim took over from it.
    pub dead_runner: Option<i64>,
    /// This run's lease holder id (see [`crate::lease`]).
    pub holder: String,
}

/// How a claim is made.
#[derive(Debug, Clone)]
pub struct ClaimOptions {
    /// How long the lease lasts unless renewed.
    pub lease: Duration,
    /// Retries of a task lost with a dead runner.
    pub retries: u32,
}

impl Default for ClaimOptions {
    fn default() -> Self {
        ClaimOptions {
            lease: crate::lease::DEFAULT_LEASE,
            retries: 2,
        }
    }
}

/// Claims batch `id` for this process in one IMMEDIATE transaction, with a
/// lease. Refused while another runner's lease holds. A lapsed lease (expired,
/// or its holder dead on this host) is taken over: the tasks it left running
/// become a failed attempt of class `lost`, run again while retries last.
/// `check` sees the tasks about to be claimed; its error leaves everything as it was.
pub fn claim(
    db: &Db,
    id: i64,
    o: &ClaimOptions,
    check: &dyn Fn(&[Task]) -> Result<()>,
) -> Result<Claim> {
    db.write(|tx| claim_in(tx, id, o, check))
}

/// [`claim`] inside a transaction the caller holds.
pub fn claim_in(
    tx: &Transaction,
    id: i64,
    o: &ClaimOptions,
    check: &dyn Fn(&[Task]) -> Result<()>,
) -> Result<Claim> {
    let (claimed_at, runner, holder, until) = batch::lease_in(tx, id)?;
    let now = now_ms();
    // A batch sent out as a bundle is held by its dispatch, a lease of its
    // own that `orch-batch release` ends.
    crate::dispatch::refuse_if_dispatched_in(tx, id)?;
    let mut recovered = Vec::new();
    let mut retried = Vec::new();
    let mut dead_runner = None;
    if let Some(at) = claimed_at {
        let p = holder
            .as_deref()
            .and_then(crate::lease::pid_of)
            .or(runner)
            .unwrap_or(0);
        if !crate::lease::lapsed(holder.as_deref(), until, now) {
            return Err(Error::invalid(format!(
                "batch {id} is already being run by orch-run (pid {p}, since {}; its lease runs to {}); not running its tasks twice",
                rfc3339(at),
                rfc3339(until.unwrap_or(now))
            )));
        }
        dead_runner = Some(p);
        let error = format!("orch-run (pid {p}) stopped before this task finished");
        for t in task::running_in_batch_in(tx, id)? {
            let retries = i64::from(o.retries);
            match attempt::lose_in(tx, t, SOURCE, &error, retries, Again::InItsBatch, now)? {
                true => retried.push(t),
                false => recovered.push(t),
            }
        }
        calls::fail_open(tx, &session_id(id), now)?;
        if let Some(h) = &holder {
            crate::limits::release_holder_in(tx, h)?;
        }
    }
    let b = batch::get_in(tx, id)?;
    let tasks: Vec<Task> = b
        .tasks
        .into_iter()
        .filter(|t| t.status == Status::Batched)
        .collect();
    // A runner that died with tasks running: what it left is recorded even
    // when nothing is left to run.
    if tasks.is_empty() && recovered.is_empty() {
        return Err(Error::invalid(match claimed_at {
            Some(at) => format!("batch {id} was already run (by orch-run, from {})", rfc3339(at)),
            None => format!(
                "batch {id} has no task waiting to run (its tasks already started, finished or were cancelled)"
            ),
        }));
    }
    check(&tasks)?;
    let me = crate::lease::me();
    batch::set_lease_in(
        tx,
        id,
        now_ms(),
        std::process::id(),
        &me,
        crate::lease::until(o.lease),
    )?;
    Ok(Claim {
        batch: id,
        tasks,
        recovered,
        retried,
        dead_runner,
        holder: me,
    })
}

/// Renews this run's lease on its batch and on its slots; false when the
/// lease is no longer this run's (another runner took the batch over).
pub fn renew(db: &Db, claim: &Claim, lease: Duration) -> Result<bool> {
    let until = crate::lease::until(lease);
    db.write(|tx| {
        let held = batch::renew_lease_in(tx, claim.batch, &claim.holder, until)?;
        crate::limits::renew_holder_in(tx, &claim.holder, until)?;
        Ok(held)
    })
}

/// Queues one task per line (all or nothing), puts exactly those tasks in a new
/// batch and claims it, in one IMMEDIATE transaction (undone when `check` refuses).
pub fn enqueue_lines(
    db: &Db,
    lines: &[String],
    role: &str,
    o: &ClaimOptions,
    check: &dyn Fn(&[Task]) -> Result<()>,
) -> Result<Claim> {
    task::validate_role(role)?;
    let mut tasks = Vec::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate() {
        let t = NewTask {
            role: Some(role.to_string()),
            prompt: l.clone(),
            ..Default::default()
        }
        .validate(None)
        .map_err(|e| Error::invalid(format!("line {}: {e}", i + 1)))?;
        tasks.push(t);
    }
    if tasks.is_empty() {
        return Err(Error::invalid("no lines on stdin: each line is one task"));
    }
    db.write(|tx| {
        let ids = task::add_in(tx, tasks, |i| format!("line {}", i + 1))?;
        let b = batch::create_of_in(tx, &ids)?;
        claim_in(tx, b.id, o, check)
    })
}

/// Stops what a dead orch-run of `batch` on the database `db_path` (as it was
/// given to agents in `ORCH_DB`) left running: every process whose environment
/// says it was started for that batch of that file (agents and what they
/// started, even outside their process group). Returns their pids.
pub fn stop_leftovers(batch: i64, db_path: &str) -> Vec<i32> {
    let batch = batch.to_string();
    let pids = crate::child::with_environment(&[("ORCH_BATCH_ID", &batch), ("ORCH_DB", db_path)]);
    for &pid in &pids {
        // The pid was just seen carrying this batch's environment.
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
    pids
}

/// Marks task `t` started by this run, in the same transaction as the check
/// that the run still holds its batch: a batch released or taken over since
/// the last renewal starts nothing more (its tasks are someone else's now).
pub(crate) fn record_start(db: &Db, batch: i64, holder: &str, t: &Task, at: i64) -> Result<()> {
    db.write(|tx| {
        if !batch::holds_lease_in(tx, batch, holder)? {
            return Err(Error::invalid(format!(
                "batch {batch} is no longer this run's (released or taken over); task {} not started here",
                t.id
            )));
        }
        task::start_in(tx, t.id, Some(at))?;
        crate::attempt::begin_in(tx, t.id, SOURCE, at)?;
        calls::restart(
            tx,
            &NewCall {
                session: &session_id(batch),
                call_id: &t.id.to_string(),
                source: SOURCE,
                task_id: Some(t.id),
                agent_type: Some(&t.role),
                description: Some(&t.description),
                started_at: Some(at),
                ..NewCall::default()
            },
        )
    })
}

/// Records how an attempt ended: the task finishes, or (when `retry`
/// decides so inside the same transaction) waits in the batch for its next
/// attempt. A usage limit pauses every runner. Returns when the retry is due.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_finish(
    db: &Db,
    batch: i64,
    id: i64,
    o: Outcome,
    mut end: crate::attempt::End,
    retry: &dyn Fn(i64) -> Option<i64>,
    pause_until: Option<i64>,
    git: Option<&crate::worktree::GitRecord>,
) -> Result<Option<i64>> {
    let at = o.at.unwrap_or_else(now_ms);
    db.write(|tx| {
        if let Some(until) = pause_until {
            crate::limits::pause_in(tx, Some(until), "usage limit")?;
        }
        let n = crate::attempt::count_in(tx, id)?;
        end.retry_at = if o.ok { None } else { retry(n) };
        crate::attempt::end_in(tx, id, SOURCE, &end)?;
        let status = match end.retry_at {
            Some(due) => {
                crate::attempt::schedule_retry_in(tx, id, due, o.error.as_deref(), o.exit_code)?;
                "failed"
            }
            None => {
                let ok = o.ok;
                task::finish_in(tx, id, o)?;
                if ok {
                    "done"
                } else {
                    "failed"
                }
            }
        };
        if let Some(g) = git {
            crate::task::record_git_in(tx, id, g)?;
        }
        calls::finish(tx, &session_id(batch), &id.to_string(), at, status)?;
        Ok(end.retry_at)
    })
}
