//! The `agent_calls` table: one row per agent call that `orch-hook` saw
//! Claude Code make, or that `orch-run` started. Every statement on the table
//! is here; the hook, the runner, `orch status` and `orch-verify session` call
//! these functions.

use rusqlite::{params, OptionalExtension, Transaction};

use serde::Serialize;

use crate::error::Result;
use crate::intervals::Interval;

/// One row of `agent_calls` to insert or merge.
#[derive(Debug, Clone, Default)]
pub struct NewCall<'a> {
    pub session: &'a str,
    pub call_id: &'a str,
    pub source: &'a str,
    pub task_id: Option<i64>,
    pub agent_type: Option<&'a str>,
    pub description: Option<&'a str>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub status: Option<&'a str>,
}

/// Inserts `c`, or merges it into the row already there: the first start and
/// the first end win, a known task/type/description is kept, and a status
/// changes only while the call is open. Hook events may arrive twice and out
/// of order; this makes each one count once.
pub fn record(tx: &Transaction, c: &NewCall) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO agent_calls (session_id, call_id, source, task_id, agent_type, description,
                                  started_at, finished_at, status)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (session_id, call_id) DO UPDATE SET
             task_id     = coalesce(agent_calls.task_id, excluded.task_id),
             agent_type  = coalesce(agent_calls.agent_type, excluded.agent_type),
             description = coalesce(agent_calls.description, excluded.description),
             started_at  = coalesce(agent_calls.started_at, excluded.started_at),
             status      = CASE WHEN agent_calls.finished_at IS NULL
                                THEN coalesce(excluded.status, agent_calls.status)
                                ELSE agent_calls.status END,
             finished_at = coalesce(agent_calls.finished_at, excluded.finished_at)",
    )?
    .execute(params![
        c.session,
        c.call_id,
        c.source,
        c.task_id,
        c.agent_type,
        c.description,
        c.started_at,
        c.finished_at,
        c.status,
    ])?;
    Ok(())
}

/// Starts `c` afresh (orch-run running a task again after a crash): the row's
/// start is replaced, its end cleared, its status `running`.
pub fn restart(tx: &Transaction, c: &NewCall) -> Result<()> {
    tx.execute(
        "INSERT INTO agent_calls (session_id, call_id, source, task_id, agent_type, description, started_at, status)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'running')
         ON CONFLICT (session_id, call_id) DO UPDATE
             SET started_at = excluded.started_at, finished_at = NULL, status = 'running'",
        params![c.session, c.call_id, c.source, c.task_id, c.agent_type, c.description, c.started_at],
    )?;
    Ok(())
}

/// Ends one call at `at` with `status`.
pub fn finish(tx: &Transaction, session: &str, call_id: &str, at: i64, status: &str) -> Result<()> {
    tx.execute(
        "UPDATE agent_calls SET finished_at = ?3, status = ?4 WHERE session_id = ?1 AND call_id = ?2",
        params![session, call_id, at, status],
    )?;
    Ok(())
}

/// Sets the status of one call, leaving its times.
pub fn set_status(tx: &Transaction, session: &str, call_id: &str, status: &str) -> Result<()> {
    tx.execute(
        "UPDATE agent_calls SET status = ?3 WHERE session_id = ?1 AND call_id = ?2",
        params![session, call_id, status],
    )?;
    Ok(())
}

/// Fails every call of `session` still open (its runner died).
pub fn fail_open(tx: &Transaction, session: &str, at: i64) -> Result<()> {
    tx.execute(
        "UPDATE agent_calls SET finished_at = ?2, status = 'failed'
         WHERE session_id = ?1 AND finished_at IS NULL",
        params![session, at],
    )?;
    Ok(())
}

/// Ends, as failed, the hook-tracked calls started before `cutoff` whose end
/// never came; returns their tasks.
pub fn fail_stale_hooks(tx: &Transaction, cutoff: i64, at: i64) -> Result<Vec<StaleCall>> {
    let stale: Vec<StaleCall> = {
        let mut s = tx.prepare(
            "UPDATE agent_calls SET finished_at = ?2, status = 'failed'
             WHERE source IN ('hook', 'subagent') AND finished_at IS NULL AND started_at < ?1
             RETURNING session_id, call_id, task_id",
        )?;
        let v = s
            .query_map(params![cutoff, at], |r| {
                Ok(StaleCall {
                    session: r.get(0)?,
                    call: r.get(1)?,
                    task: r.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        v
    };
    Ok(stale)
}

/// A hook-tracked call whose end never came, ended by [`fail_stale_hooks`].
#[derive(Debug, Clone)]
pub struct StaleCall {
    pub session: String,
    pub call: String,
    pub task: Option<i64>,
}

/// Whether sub-agent `agent` of `session` (of `source`) has ended.
pub fn ended(tx: &Transaction, session: &str, agent: &str, source: &str) -> Result<bool> {
    Ok(tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM agent_calls WHERE session_id = ?1 AND call_id = ?2
             AND source = ?3 AND finished_at IS NOT NULL)",
        params![session, agent, source],
        |r| r.get(0),
    )?)
}

/// Ties call `call_id` of `source` to task `task` unless it already has one.
pub fn tie_task(
    tx: &Transaction,
    session: &str,
    call_id: &str,
    source: &str,
    task: i64,
) -> Result<()> {
    tx.execute(
        "UPDATE agent_calls SET task_id = coalesce(task_id, ?3)
         WHERE session_id = ?1 AND call_id = ?2 AND source = ?4",
        params![session, call_id, task, source],
    )?;
    Ok(())
}

/// The task of one call, if it has one.
pub fn task_of(tx: &Transaction, session: &str, call_id: &str) -> Result<Option<i64>> {
    Ok(tx
        .query_row(
            "SELECT task_id FROM agent_calls WHERE session_id = ?1 AND call_id = ?2",
            params![session, call_id],
            |r| r.get::<_, Option<i64>>(0),
        )
        .optional()?
        .flatten())
}

/// Whether a call of `source` in `session` carries task `task`.
pub fn task_has_call(tx: &Transaction, session: &str, task: i64, source: &str) -> Result<bool> {
    Ok(tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM agent_calls WHERE session_id = ?1 AND task_id = ?2 AND source = ?3)",
        params![session, task, source],
        |r| r.get(0),
    )?)
}

/// When one call started, if it is recorded with a start.
pub fn started_at(tx: &Transaction, session: &str, call_id: &str) -> Result<Option<i64>> {
    Ok(tx
        .query_row(
            "SELECT started_at FROM agent_calls WHERE session_id = ?1 AND call_id = ?2",
            params![session, call_id],
            |r| r.get::<_, Option<i64>>(0),
        )
        .optional()?
        .flatten())
}

/// The task and status of one call that started and has not ended.
pub fn open_call(
    tx: &Transaction,
    session: &str,
    call_id: &str,
) -> Result<Option<(Option<i64>, Option<String>)>> {
    Ok(tx
        .query_row(
            "SELECT task_id, status FROM agent_calls
             WHERE session_id = ?1 AND call_id = ?2 AND finished_at IS NULL AND started_at IS NOT NULL",
            params![session, call_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// Ends, at `at`, the open calls of `source` for task `task` whose status is
/// one of a background launch (`launched`, `teammate`).
pub fn finish_launched(
    tx: &Transaction,
    session: &str,
    task: i64,
    source: &str,
    at: i64,
) -> Result<()> {
    tx.execute(
        "UPDATE agent_calls SET finished_at = ?3, status = 'done'
         WHERE session_id = ?1 AND task_id = ?2 AND source = ?4 AND status IN ('launched', 'teammate')
           AND finished_at IS NULL",
        params![session, task, at, source],
    )?;
    Ok(())
}

/// One recorded agent call, as `orch-verify session` reads and prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Call {
    pub call_id: String,
    #[serde(skip)]
    pub session_id: String,
    #[serde(skip)]
    pub source: String,
    pub task: Option<i64>,
    #[serde(skip)]
    pub batch: Option<i64>,
    pub agent_type: Option<String>,
    pub description: Option<String>,
    #[serde(serialize_with = "crate::time::ser_rfc3339_opt")]
    pub started_at: Option<i64>,
    #[serde(serialize_with = "crate::time::ser_rfc3339_opt")]
    pub finished_at: Option<i64>,
    pub status: Option<String>,
}

impl Call {
    pub fn interval(&self) -> Interval {
        Interval {
            start: self.started_at,
            end: self.finished_at,
        }
    }

    pub fn label(&self) -> String {
        match (self.task, &self.description) {
            (Some(t), _) => format!("task {t}"),
            (None, Some(d)) => d.clone(),
            (None, None) => crate::text::clip(&self.call_id, 16),
        }
    }
}

fn row(r: &rusqlite::Row) -> rusqlite::Result<Call> {
    Ok(Call {
        session_id: r.get(0)?,
        call_id: r.get(1)?,
        source: r.get(2)?,
        task: r.get(3)?,
        batch: r.get(4)?,
        agent_type: r.get(5)?,
        description: r.get(6)?,
        started_at: r.get(7)?,
        finished_at: r.get(8)?,
        status: r.get(9)?,
    })
}

/// The recorded calls, oldest first, filtered by session and start time.
pub fn load(tx: &Transaction, session: Option<&str>, since: Option<i64>) -> Result<Vec<Call>> {
    let mut stmt = tx.prepare(
        "SELECT c.session_id, c.call_id, c.source, c.task_id, t.batch_id, c.agent_type,
                c.description, c.started_at, c.finished_at, c.status
         FROM agent_calls c LEFT JOIN tasks t ON t.id = c.task_id
         WHERE (?1 IS NULL OR c.session_id = ?1)
           AND (?2 IS NULL OR coalesce(c.started_at, c.finished_at) >= ?2)
         ORDER BY coalesce(c.started_at, c.finished_at), c.id",
    )?;
    let rows = stmt.query_map(params![session, since], row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The `limit` calls that started or ended last, oldest first.
pub fn recent(tx: &Transaction, limit: usize) -> Result<Vec<Call>> {
    let mut stmt = tx.prepare(
        "SELECT c.session_id, c.call_id, c.source, c.task_id, t.batch_id, c.agent_type,
                c.description, c.started_at, c.finished_at, c.status
         FROM agent_calls c LEFT JOIN tasks t ON t.id = c.task_id
         ORDER BY coalesce(c.finished_at, c.started_at, 0) DESC, c.id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit as i64], row)?;
    let mut v: Vec<Call> = rows.collect::<rusqlite::Result<_>>()?;
    v.reverse();
    Ok(v)
}

/// The `agent_calls.session_id` of orch-run's run of a batch, so
/// `orch-verify session` can judge it.
pub fn run_session(batch: i64) -> String {
    format!("orch-run:{batch}")
}
