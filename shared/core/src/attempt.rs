//! Attempts: every run of a task, by whichever runner, with how it ended, its
//! error class and what the agent reported it cost. A failed task can be put
//! back in the queue as a new attempt; its earlier attempts stay.

use rusqlite::{params, OptionalExtension, Row, Transaction};
use serde::Serialize;

use crate::db::Db;
use crate::errclass::Class;
use crate::error::Result;
use crate::task;
use crate::time::rfc3339;

/// The runner of an attempt ingested from a result record (`orch-run job`
/// ran it elsewhere).
pub const JOB: &str = "job";

/// The runner of an attempt of a task orch-mcp handed out.
pub const MCP: &str = "mcp";

/// The runner of an attempt orch-run started.
pub const ORCH_RUN: &str = "orch-run";

/// Who ran an attempt.
pub const RUNNERS: [&str; 5] = [ORCH_RUN, "hook", MCP, "manual", JOB];

/// What an agent reported about one run; `None` where it said nothing (never an invented zero).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Metrics {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_read_tokens: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_creation_tokens: Option<i64>,
    /// Every token of the run as the agent counted it (the Agent tool's
    /// `totalTokens`; `claude -p` reports no such total).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_tokens: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turns: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
}

impl Metrics {
    /// From `claude -p --output-format json`'s result object.
    pub fn from_claude(o: &serde_json::Map<String, serde_json::Value>) -> Metrics {
        let int = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_i64());
        let usage = o.get("usage");
        let u = |k: &str| int(usage.and_then(|u| u.get(k)));
        let models: Vec<&str> = o
            .get("modelUsage")
            .and_then(|m| m.as_object())
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        Metrics {
            cost_usd: o.get("total_cost_usd").and_then(|v| v.as_f64()),
            input_tokens: u("input_tokens"),
            output_tokens: u("output_tokens"),
            cache_read_tokens: u("cache_read_input_tokens"),
            cache_creation_tokens: u("cache_creation_input_tokens"),
            turns: int(o.get("num_turns")),
            model: (!models.is_empty()).then(|| models.join(",")),
            session_id: o
                .get("session_id")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            duration_ms: int(o.get("duration_ms")),
            total_tokens: None,
        }
    }

    /// From the Agent tool's PostToolUse response (`AgentOutput` in Claude
    /// Code's `sdk-tools.d.ts`: `totalTokens`, `usage`, `totalDurationMs`,
    /// `agentId`, `resolvedModel`/`modelsUsed`), as orch-hook sees in-session agents.
    pub fn from_agent_response(r: &serde_json::Value) -> Metrics {
        let int = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_i64());
        let usage = r.get("usage");
        let u = |k: &str| int(usage.and_then(|u| u.get(k)));
        let used: Vec<&str> = r
            .get("modelsUsed")
            .and_then(|m| m.as_array())
            .map(|m| m.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        let model = match r.get("resolvedModel").and_then(|v| v.as_str()) {
            _ if used.len() > 1 => Some(used.join(",")),
            Some(m) => Some(m.to_string()),
            None => used.first().map(|m| m.to_string()),
        };
        Metrics {
            input_tokens: u("input_tokens"),
            output_tokens: u("output_tokens"),
            cache_read_tokens: u("cache_read_input_tokens"),
            cache_creation_tokens: u("cache_creation_input_tokens"),
            total_tokens: int(r.get("totalTokens")),
            model,
            duration_ms: int(r.get("totalDurationMs")),
            session_id: r
                .get("agentId")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            ..Default::default()
        }
    }
}

/// One attempt, as `orch-queue attempts ID --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub task: i64,
    pub attempt: i64,
    pub batch: Option<i64>,
    pub runner: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub outcome: Option<String>,
    pub error_class: Option<String>,
    pub error: Option<String>,
    pub exit_code: Option<i64>,
    /// When the next attempt may start, for a failed attempt that is retried.
    pub retry_at: Option<String>,
    #[serde(flatten)]
    pub metrics: Metrics,
    #[serde(skip)]
    pub start_ms: i64,
    #[serde(skip)]
    pub end_ms: Option<i64>,
    #[serde(skip)]
    pub retry_ms: Option<i64>,
}

const COLUMNS: &str = "task_id, n, batch_id, runner, started_at, ended_at, outcome, error_class, \
     error, exit_code, retry_at, cost_usd, input_tokens, output_tokens, cache_read_tokens, \
     cache_creation_tokens, turns, model, session_id, duration_ms, total_tokens";

impl Attempt {
    fn from_row(r: &Row) -> rusqlite::Result<Attempt> {
        let start: i64 = r.get(4)?;
        let end: Option<i64> = r.get(5)?;
        let retry: Option<i64> = r.get(10)?;
        Ok(Attempt {
            task: r.get(0)?,
            attempt: r.get(1)?,
            batch: r.get(2)?,
            runner: r.get(3)?,
            started_at: rfc3339(start),
            ended_at: end.map(rfc3339),
            outcome: r.get(6)?,
            error_class: r.get(7)?,
            error: r.get(8)?,
            exit_code: r.get(9)?,
            retry_at: retry.map(rfc3339),
            metrics: Metrics {
                cost_usd: r.get(11)?,
                input_tokens: r.get(12)?,
                output_tokens: r.get(13)?,
                cache_read_tokens: r.get(14)?,
                cache_creation_tokens: r.get(15)?,
                turns: r.get(16)?,
                model: r.get(17)?,
                session_id: r.get(18)?,
                duration_ms: r.get(19)?,
                total_tokens: r.get(20)?,
            },
            start_ms: start,
            end_ms: end,
            retry_ms: retry,
        })
    }
}

/// Opens a new attempt of task `id`; returns its number (1 for the first).
pub fn begin_in(tx: &Transaction, id: i64, runner: &str, at: i64) -> Result<i64> {
    let n: i64 = tx.query_row(
        "SELECT coalesce(max(n), 0) + 1 FROM attempts WHERE task_id = ?1",
        [id],
        |r| r.get(0),
    )?;
    let batch = crate::task::batch_of_in(tx, id)?;
    tx.execute(
        "INSERT INTO attempts (task_id, n, batch_id, runner, started_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, n, batch, runner, at],
    )?;
    crate::event::record(
        tx,
        crate::event::Kind::AttemptStarted,
        crate::event::About::task_in(id, batch),
        None,
        Some("running"),
        Some(&format!("attempt {n} ({runner})")),
    )?;
    Ok(n)
}

/// How an attempt ended.
#[derive(Debug, Clone, Default)]
pub struct End {
    pub ok: bool,
    pub class: Option<Class>,
    pub error: Option<String>,
    pub exit_code: Option<i64>,
    pub retry_at: Option<i64>,
    pub metrics: Metrics,
    pub at: i64,
}

/// Where a lost task waits for its next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Again {
    /// Batched again in its batch, whose runner starts it again.
    InItsBatch,
    /// Back in the queue.
    Queued,
}

/// Ends running task `id`'s attempt as lost (its runner or agent is gone;
/// `error` says how): retried (`again`) while it has had at most `retries`
/// attempts, else failed. Whether it is retried.
pub fn lose_in(
    tx: &Transaction,
    id: i64,
    runner: &str,
    error: &str,
    retries: i64,
    again: Again,
    now: i64,
) -> Result<bool> {
    let retry = count_in(tx, id)? <= retries;
    let end = End {
        ok: false,
        class: Some(Class::Lost),
        error: Some(error.to_string()),
        retry_at: retry.then_some(now),
        at: now,
        ..Default::default()
    };
    end_in(tx, id, runner, &end)?;
    match (retry, again) {
        (true, Again::InItsBatch) => task::retry_later_in(tx, id, now, Some(error), None)?,
        (true, Again::Queued) => task::requeue_lost_in(tx, id, error)?,
        (false, _) => task::finish_in(
            tx,
            id,
            task::Outcome {
                ok: false,
                error: Some(error.to_string()),
                at: Some(now),
                ..Default::default()
            },
        )?,
    }
    Ok(retry)
}

/// Closes task `id`'s open attempt (or records a closed one when none is
/// open: a task finished without being started through orch).
pub fn end_in(tx: &Transaction, id: i64, runner: &str, e: &End) -> Result<()> {
    let open: Option<i64> = tx
        .query_row(
            "SELECT n FROM attempts WHERE task_id = ?1 AND ended_at IS NULL ORDER BY n DESC LIMIT 1",
            [id],
            |r| r.get(0),
        )
        .optional()?;
    let n = match open {
        Some(n) => n,
        None => begin_in(tx, id, runner, e.at)?,
    };
    let m = &e.metrics;
    tx.execute(
        "UPDATE attempts SET ended_at = ?3, outcome = ?4, error_class = ?5, error = ?6,
             exit_code = ?7, retry_at = ?8, cost_usd = coalesce(?9, cost_usd),
             input_tokens = coalesce(?10, input_tokens),
             output_tokens = coalesce(?11, output_tokens),
             cache_read_tokens = coalesce(?12, cache_read_tokens),
             cache_creation_tokens = coalesce(?13, cache_creation_tokens),
             turns = coalesce(?14, turns), model = coalesce(?15, model),
             session_id = coalesce(?16, session_id), duration_ms = coalesce(?17, duration_ms),
             total_tokens = coalesce(?18, total_tokens)
         WHERE task_id = ?1 AND n = ?2",
        params![
            id,
            n,
            e.at,
            if e.ok { "done" } else { "failed" },
            e.class.map(Class::as_str),
            e.error,
            e.exit_code,
            e.retry_at,
            m.cost_usd,
            m.input_tokens,
            m.output_tokens,
            m.cache_read_tokens,
            m.cache_creation_tokens,
            m.turns,
            m.model,
            m.session_id,
            m.duration_ms,
            m.total_tokens
        ],
    )?;
    let outcome = if e.ok { "done" } else { "failed" };
    let mut detail = format!("attempt {n}: {outcome}");
    if let Some(c) = e.class {
        detail.push_str(&format!(", {}", c.as_str()));
    }
    if let Some(r) = e.retry_at {
        detail.push_str(&format!(", retry at {}", rfc3339(r)));
    }
    let batch = crate::task::batch_of_in(tx, id)?;
    crate::event::record(
        tx,
        crate::event::Kind::AttemptEnded,
        crate::event::About::task_in(id, batch),
        Some("running"),
        Some(outcome),
        Some(&detail),
    )?;
    Ok(())
}

/// Adds what an agent reported to task `id`'s latest attempt, open or just
/// ended (a background agent's model at its launch; a response that came
/// after another event ended the task): only figures the attempt lacks.
pub fn add_metrics_in(tx: &Transaction, id: i64, m: &Metrics) -> Result<()> {
    if *m == Metrics::default() {
        return Ok(());
    }
    tx.execute(
        "UPDATE attempts SET cost_usd = coalesce(cost_usd, ?2),
             input_tokens = coalesce(input_tokens, ?3),
             output_tokens = coalesce(output_tokens, ?4),
             cache_read_tokens = coalesce(cache_read_tokens, ?5),
             cache_creation_tokens = coalesce(cache_creation_tokens, ?6),
             turns = coalesce(turns, ?7), model = coalesce(model, ?8),
             session_id = coalesce(session_id, ?9), duration_ms = coalesce(duration_ms, ?10),
             total_tokens = coalesce(total_tokens, ?11)
         WHERE task_id = ?1 AND n = (SELECT max(n) FROM attempts WHERE task_id = ?1)",
        params![
            id,
            m.cost_usd,
            m.input_tokens,
            m.output_tokens,
            m.cache_read_tokens,
            m.cache_creation_tokens,
            m.turns,
            m.model,
            m.session_id,
            m.duration_ms,
            m.total_tokens
        ],
    )?;
    Ok(())
}

/// How many attempts task `id` has had.
pub fn count_in(tx: &Transaction, id: i64) -> Result<i64> {
    Ok(tx.query_row(
        "SELECT count(*) FROM attempts WHERE task_id = ?1",
        [id],
        |r| r.get(0),
    )?)
}

/// Every attempt of task `id`, first first (`NotFound` for an unknown task).
pub fn list(db: &Db, id: i64) -> Result<Vec<Attempt>> {
    db.read(|tx| {
        crate::task::get_in(tx, id)?;
        let mut s = tx.prepare(&format!(
            "SELECT {COLUMNS} FROM attempts WHERE task_id = ?1 ORDER BY n"
        ))?;
        let v = s
            .query_map([id], Attempt::from_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    })
}

/// Puts a running task of a claimed batch back to wait for its next attempt,
/// no earlier than `not_before`; the runner holding the batch starts it again.
pub fn schedule_retry_in(
    tx: &Transaction,
    id: i64,
    not_before: i64,
    error: Option<&str>,
    exit_code: Option<i64>,
) -> Result<()> {
    crate::task::retry_later_in(tx, id, not_before, error, exit_code)
}

/// `orch-queue retry`: puts failed tasks back in the queue for a new attempt
/// (all or nothing); their earlier attempts stay.
pub fn retry(db: &Db, ids: &[i64]) -> Result<()> {
    db.write(|tx| {
        for &id in ids {
            crate::task::retry_failed_in(tx, id)?;
        }
        Ok(())
    })
}

/// Spend and tokens, per batch and in total, from every attempt that reported
/// them: a sum over the attempts that reported it, absent when none did (never
/// an invented zero).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Spend {
    pub attempts: i64,
    /// Attempts that reported a cost.
    pub reported: i64,
    /// Attempts that reported tokens (any of the figures below).
    pub reported_tokens: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_read_tokens: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_creation_tokens: Option<i64>,
    /// The agents' own totals (the Agent tool's `totalTokens`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_tokens: Option<i64>,
}

impl Spend {
    /// Whether any attempt reported a cost or tokens.
    pub fn any(&self) -> bool {
        self.reported > 0 || self.reported_tokens > 0
    }
}

/// Spend per batch (`None`: tasks run outside a batch) and in total.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Ledger {
    pub total: Spend,
    pub batches: Vec<BatchSpend>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BatchSpend {
    pub batch: Option<i64>,
    #[serde(flatten)]
    pub spend: Spend,
}

fn spend_row(r: &Row, at: usize) -> rusqlite::Result<Spend> {
    Ok(Spend {
        attempts: r.get(at)?,
        reported: r.get(at + 1)?,
        reported_tokens: r.get(at + 2)?,
        cost_usd: r.get(at + 3)?,
        input_tokens: r.get(at + 4)?,
        output_tokens: r.get(at + 5)?,
        cache_read_tokens: r.get(at + 6)?,
        cache_creation_tokens: r.get(at + 7)?,
        total_tokens: r.get(at + 8)?,
    })
}

const SUMS: &str = "count(*), count(cost_usd), \
     count(coalesce(input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, total_tokens)), \
     sum(cost_usd), sum(input_tokens), sum(output_tokens), sum(cache_read_tokens), \
     sum(cache_creation_tokens), sum(total_tokens)";

/// [`Ledger`] inside a transaction the caller holds.
pub fn ledger_in(tx: &Transaction) -> Result<Ledger> {
    let total = tx.query_row(&format!("SELECT {SUMS} FROM attempts"), [], |r| {
        spend_row(r, 0)
    })?;
    let mut s = tx.prepare(&format!(
        "SELECT batch_id, {SUMS} FROM attempts GROUP BY batch_id ORDER BY batch_id"
    ))?;
    let batches = s
        .query_map([], |r| {
            Ok(BatchSpend {
                batch: r.get(0)?,
                spend: spend_row(r, 1)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Ledger { total, batches })
}

/// Recorded spend of the attempts a run made since `since` on batch `batch`.
pub fn batch_cost_since_in(tx: &Transaction, batch: i64, since: i64) -> Result<f64> {
    Ok(tx.query_row(
        "SELECT coalesce(sum(cost_usd), 0) FROM attempts WHERE batch_id = ?1 AND started_at >= ?2",
        params![batch, since],
        |r| r.get(0),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_response_gives_what_it_carries_and_nothing_more() {
        let done = serde_json::json!({
            "status": "completed", "agentId": "a1", "totalTokens": 10544,
            "totalDurationMs": 8123, "resolvedModel": "claude-sonnet-4-5",
            "usage": {"input_tokens": 9321, "output_tokens": 1223,
                      "cache_read_input_tokens": null, "cache_creation_input_tokens": 0}
        });
        let m = Metrics::from_agent_response(&done);
        assert_eq!(m.total_tokens, Some(10544));
        assert_eq!(m.input_tokens, Some(9321));
        assert_eq!(m.cache_read_tokens, None);
        assert_eq!(m.cache_creation_tokens, Some(0));
        assert_eq!(m.model.as_deref(), Some("claude-sonnet-4-5"));
        assert_eq!(m.cost_usd, None);
        // A background launch: its agent and model, no figures.
        let launched = serde_json::json!({
            "status": "async_launched", "agentId": "a2",
            "modelsUsed": ["claude-haiku-4-5", "claude-sonnet-4-5"]
        });
        let m = Metrics::from_agent_response(&launched);
        assert_eq!(m.total_tokens, None);
        assert_eq!(m.input_tokens, None);
        assert_eq!(
            m.model.as_deref(),
            Some("claude-haiku-4-5,claude-sonnet-4-5")
        );
        assert_eq!(m.session_id.as_deref(), Some("a2"));
    }
}
