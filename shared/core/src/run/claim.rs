//! The claim on a batch: one orch-run at a time, taking over from a dead
//! runner, and recording each task's start and end with its agent call.

#[allow(unused_imports)]
use super::*;

/// The `agent_calls.session_id` of a batch's run, so `orch-verify session` can judge it.
pub fn session_id(batch: i64) -> String {
    format!("orch-run:{batch}")
}

/// A batch claimed for running, with the tasks this run will start.
#[derive(Debug)]
pub struct Claim {
    pub batch: i64,
    pub tasks: Vec<Task>,
    /// Tasks a dead earlier runner left `running`, now marked failed.
    pub recovered: Vec<i64>,
    /// The pid of the earlier orch-run of this batch that died, when this claim took over from it.
    pub dead_runner: Option<i64>,
}

pub(crate) fn process_alive(pid: i64) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Claims batch `id` for this process in one IMMEDIATE transaction. Refused when
/// another live orch-run holds it. A claim whose runner died is taken over: the
/// tasks it left running are marked failed and the waiting ones run now.
/// `check` sees the tasks about to be claimed; its error leaves everything as it was.
pub fn claim(db: &Db, id: i64, check: &dyn Fn(&[Task]) -> Result<()>) -> Result<Claim> {
    db.write(|tx| claim_in(tx, id, std::process::id(), check))
}

/// [`claim`] inside a transaction the caller holds.
pub fn claim_in(
    tx: &Transaction,
    id: i64,
    pid: u32,
    check: &dyn Fn(&[Task]) -> Result<()>,
) -> Result<Claim> {
    let (claimed_at, runner) = batch::runner_in(tx, id)?;
    let mut recovered = Vec::new();
    let mut dead_runner = None;
    if let Some(at) = claimed_at {
        let p = runner.unwrap_or(0);
        if process_alive(p) {
            return Err(Error::invalid(format!(
                "batch {id} is already being run by orch-run (pid {p}, since {}); not running its tasks twice",
                rfc3339(at)
            )));
        }
        dead_runner = Some(p);
        let now = now_ms();
        recovered = task::fail_running_in_batch(tx, id, now, p)?;
        calls::fail_open(tx, &session_id(id), now)?;
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
    batch::set_runner_in(tx, id, now_ms(), pid)?;
    Ok(Claim {
        batch: id,
        tasks,
        recovered,
        dead_runner,
    })
}

/// Queues one task per line (all or nothing), puts exactly those tasks in a new
/// batch and claims it, in one IMMEDIATE transaction (undone when `check` refuses).
pub fn enqueue_lines(
    db: &Db,
    lines: &[String],
    role: &str,
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
        claim_in(tx, b.id, std::process::id(), check)
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
        // SAFETY: kill only sends a signal; the pid was just seen carrying this batch's environment.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    pids
}

pub(crate) fn record_start(db: &Db, batch: i64, t: &Task, at: i64) -> Result<()> {
    db.write(|tx| {
        task::start_in(tx, t.id, Some(at))?;
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

pub(crate) fn record_finish(
    db: &Db,
    batch: i64,
    id: i64,
    o: Outcome,
    git: Option<&crate::worktree::GitRecord>,
) -> Result<()> {
    let at = o.at.unwrap_or_else(now_ms);
    let status = if o.ok { "done" } else { "failed" };
    db.write(|tx| {
        task::finish_in(tx, id, o)?;
        if let Some(g) = git {
            crate::task::record_git_in(tx, id, g)?;
        }
        calls::finish(tx, &session_id(batch), &id.to_string(), at, status)
    })
}
