//! The event journal: one row per state change, written in the transaction
//! of the change itself, so the journal and the state never disagree. Ids
//! increase in commit order (writes are serialised by the IMMEDIATE lock and
//! `AUTOINCREMENT` never reuses an id), which is what `orch events --since ID`
//! resumes from. Growth is bounded by [`Retention`], enforced every
//! [`PRUNE_EVERY`] events by one indexed DELETE.

use rusqlite::{params, Row, Transaction};
use serde::Serialize;

use crate::db::Db;
use crate::error::Result;
use crate::time::{now_ms, rfc3339};

/// What happened. The names are the stable `kind` strings of the JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    TaskAdded,
    TaskBatched,
    TaskRequeued,
    TaskStarted,
    TaskDone,
    TaskFailed,
    TaskCancelled,
    TaskStalled,
    TaskLanded,
    BatchCreated,
    BatchEmitted,
    BatchReleased,
    MessageSent,
    MessageReceived,
    VerifyStarted,
    VerifyJudged,
    AttemptStarted,
    AttemptEnded,
    TaskRetried,
    BatchLost,
    PauseSet,
    PauseCleared,
    LimitSet,
    LimitCleared,
    RetentionSet,
}

impl Kind {
    pub const ALL: &'static [Kind] = &[
        Kind::TaskAdded,
        Kind::TaskBatched,
        Kind::TaskRequeued,
        Kind::TaskStarted,
        Kind::TaskDone,
        Kind::TaskFailed,
        Kind::TaskCancelled,
        Kind::TaskStalled,
        Kind::TaskLanded,
        Kind::BatchCreated,
        Kind::BatchEmitted,
        Kind::BatchReleased,
        Kind::MessageSent,
        Kind::MessageReceived,
        Kind::VerifyStarted,
        Kind::VerifyJudged,
        Kind::AttemptStarted,
        Kind::AttemptEnded,
        Kind::TaskRetried,
        Kind::BatchLost,
        Kind::PauseSet,
        Kind::PauseCleared,
        Kind::LimitSet,
        Kind::LimitCleared,
        Kind::RetentionSet,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::TaskAdded => "task.added",
            Kind::TaskBatched => "task.batched",
            Kind::TaskRequeued => "task.requeued",
            Kind::TaskStarted => "task.started",
            Kind::TaskDone => "task.done",
            Kind::TaskFailed => "task.failed",
            Kind::TaskCancelled => "task.cancelled",
            Kind::TaskStalled => "task.stalled",
            Kind::TaskLanded => "task.landed",
            Kind::BatchCreated => "batch.created",
            Kind::BatchEmitted => "batch.emitted",
            Kind::BatchReleased => "batch.released",
            Kind::MessageSent => "message.sent",
            Kind::MessageReceived => "message.received",
            Kind::VerifyStarted => "verify.started",
            Kind::VerifyJudged => "verify.judged",
            Kind::AttemptStarted => "attempt.started",
            Kind::AttemptEnded => "attempt.ended",
            Kind::TaskRetried => "task.retried",
            Kind::BatchLost => "batch.lost",
            Kind::PauseSet => "pause.set",
            Kind::PauseCleared => "pause.cleared",
            Kind::LimitSet => "limit.set",
            Kind::LimitCleared => "limit.cleared",
            Kind::RetentionSet => "retention.set",
        }
    }
}

/// What an event is about; each field is an id in its own table.
#[derive(Debug, Clone, Copy, Default)]
pub struct About {
    pub task: Option<i64>,
    pub batch: Option<i64>,
    pub message: Option<i64>,
    pub run: Option<i64>,
}

impl About {
    pub fn task(id: i64) -> About {
        About {
            task: Some(id),
            ..About::default()
        }
    }
    pub fn task_in(id: i64, batch: Option<i64>) -> About {
        About {
            task: Some(id),
            batch,
            ..About::default()
        }
    }
    pub fn batch(id: i64) -> About {
        About {
            batch: Some(id),
            ..About::default()
        }
    }
    pub fn message(id: i64) -> About {
        About {
            message: Some(id),
            ..About::default()
        }
    }
    pub fn run(id: i64) -> About {
        About {
            run: Some(id),
            ..About::default()
        }
    }
}

/// How much of the journal is kept: events younger than `days` and among the
/// newest `max`. A setting of the database (`orch-queue retention`, read by
/// [`retention_in`]), the same for every writer; by default 30 days, 1 000 000 events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Retention {
    pub days: i64,
    pub max: i64,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            days: 30,
            max: 1_000_000,
        }
    }
}

/// How much of the event journal this database keeps (`orch-queue
/// retention`); the defaults where unset.
pub fn retention_in(tx: &Transaction) -> Result<Retention> {
    let d = Retention::default();
    let num = |k: &str, d: i64| -> Result<i64> {
        Ok(crate::settings::get_in(tx, k)?
            .and_then(|v| v.parse::<i64>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(d))
    };
    Ok(Retention {
        days: num("events_keep_days", d.days)?,
        max: num("events_keep", d.max)?,
    })
}

/// Sets how much of the journal is kept (what is `None` stays as it was),
/// journals it, and prunes to it at once. Returns the retention now in force.
pub fn set_retention(db: &Db, days: Option<i64>, max: Option<i64>) -> Result<Retention> {
    db.write(|tx| {
        if let Some(d) = days {
            crate::settings::set_in(tx, "events_keep_days", &d.to_string())?;
        }
        if let Some(m) = max {
            crate::settings::set_in(tx, "events_keep", &m.to_string())?;
        }
        let r = retention_in(tx)?;
        let detail = format!("keep {} days or {} events", r.days, r.max);
        let id = record(
            tx,
            Kind::RetentionSet,
            About::default(),
            None,
            None,
            Some(&detail),
        )?;
        prune_in(tx, id, r)?;
        Ok(r)
    })
}

/// The journal is pruned when an event id is a multiple of this: the cost of
/// retention is one DELETE per this many events.
pub const PRUNE_EVERY: i64 = 1000;

/// The longest `detail` kept, in bytes (longer ones are cut at a character boundary).
pub const MAX_DETAIL: usize = 200;

/// Appends one event inside the caller's write transaction; returns its id.
pub fn record(
    tx: &Transaction,
    kind: Kind,
    ids: About,
    from: Option<&str>,
    to: Option<&str>,
    detail: Option<&str>,
) -> Result<i64> {
    let detail = detail.map(|d| crate::text::clip(d, MAX_DETAIL));
    tx.prepare_cached(
        "INSERT INTO events (at, kind, task_id, batch_id, message_id, run_id, from_status, to_status, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        now_ms(),
        kind.as_str(),
        ids.task,
        ids.batch,
        ids.message,
        ids.run,
        from,
        to,
        detail
    ])?;
    let id = tx.last_insert_rowid();
    if id % PRUNE_EVERY == 0 {
        prune_in(tx, id, retention_in(tx)?)?;
    }
    Ok(id)
}

/// Deletes what [`Retention`] no longer keeps (the newest event always stays).
pub fn prune_in(tx: &Transaction, newest: i64, keep: Retention) -> Result<usize> {
    let before = now_ms() - keep.days.saturating_mul(86_400_000);
    // Two range deletes (by rowid, then through events_by_at): neither scans the table.
    let by_count = tx.execute(
        "DELETE FROM events WHERE id <= ?1 - ?2 AND id < ?1",
        params![newest, keep.max],
    )?;
    let by_age = tx.execute(
        "DELETE FROM events WHERE at < ?2 AND id < ?1",
        params![newest, before],
    )?;
    Ok(by_count + by_age)
}

/// One event as `orch events --json` prints it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Event {
    pub id: i64,
    pub at: String,
    #[serde(skip)]
    pub at_ms: i64,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Event {
    fn from_row(r: &Row) -> rusqlite::Result<Event> {
        let at_ms: i64 = r.get(1)?;
        Ok(Event {
            id: r.get(0)?,
            at: rfc3339(at_ms),
            at_ms,
            kind: r.get(2)?,
            task: r.get(3)?,
            batch: r.get(4)?,
            message: r.get(5)?,
            run: r.get(6)?,
            from: r.get(7)?,
            to: r.get(8)?,
            detail: r.get(9)?,
        })
    }
}

/// Which events to read.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only events with an id above this.
    pub after_id: i64,
    /// Only events at or after this time (ms).
    pub since_ms: Option<i64>,
    /// Only these kinds; a kind without a dot (`task`) matches all of its family.
    pub kinds: Vec<String>,
    pub task: Option<i64>,
    /// Only events of these batches (tasks in them, and the batches themselves).
    pub batch: Option<i64>,
    /// Only events of this verification run.
    pub run: Option<i64>,
}

impl Filter {
    fn matches(&self, e: &Event) -> bool {
        (self.kinds.is_empty()
            || self.kinds.iter().any(|k| {
                e.kind == *k || (!k.contains('.') && e.kind.split('.').next() == Some(k.as_str()))
            }))
            && self.task.is_none_or(|t| e.task == Some(t))
            && self.batch.is_none_or(|b| e.batch == Some(b))
            && self.run.is_none_or(|r| e.run == Some(r))
            && self.since_ms.is_none_or(|s| e.at_ms >= s)
    }
}

/// Checks a `--kind` value: a known kind, or a family (`task`, `batch`, …).
pub fn validate_kind(k: &str) -> std::result::Result<String, String> {
    let known = Kind::ALL
        .iter()
        .any(|x| x.as_str() == k || x.as_str().split('.').next() == Some(k));
    if known {
        Ok(k.to_string())
    } else {
        let all: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        Err(format!(
            "unknown event kind {:?}; one of {} (or a family: task, batch, message, verify)",
            crate::text::clip(k, 40),
            all.join(", ")
        ))
    }
}

/// Up to `limit` events after `f.after_id` in id (commit) order, and the id of
/// the last event looked at (matching or not): the next call resumes after it.
pub fn page(db: &Db, f: &Filter, limit: usize) -> Result<(Vec<Event>, i64)> {
    db.read(|tx| page_in(tx, f, limit))
}

/// [`page`] inside a transaction the caller holds.
pub fn page_in(tx: &Transaction, f: &Filter, limit: usize) -> Result<(Vec<Event>, i64)> {
    let mut stmt = tx.prepare_cached(
        "SELECT id, at, kind, task_id, batch_id, message_id, run_id, from_status, to_status, detail
         FROM events WHERE id > ?1 AND (?2 IS NULL OR task_id = ?2) ORDER BY id LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![f.after_id, f.task, limit as i64], Event::from_row)?;
    let mut last = f.after_id;
    let mut out = Vec::new();
    for r in rows {
        let e = r?;
        last = e.id;
        if f.matches(&e) {
            out.push(e);
        }
    }
    Ok((out, last))
}

/// The id of the first event at or after `ms` (so `--since TIME` becomes an id).
pub fn first_at_or_after(db: &Db, ms: i64) -> Result<i64> {
    db.read(|tx| {
        Ok(tx
            .query_row("SELECT min(id) FROM events WHERE at >= ?1", [ms], |r| {
                r.get::<_, Option<i64>>(0)
            })?
            .unwrap_or(i64::MAX))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_keeps_the_newest_and_the_young() {
        let db = Db::open_in_memory().unwrap();
        db.write(|tx| {
            for _ in 0..50 {
                record(
                    tx,
                    Kind::TaskAdded,
                    About::task(1),
                    None,
                    Some("queued"),
                    None,
                )?;
            }
            Ok(())
        })
        .unwrap();
        let n = db
            .write(|tx| prune_in(tx, 50, Retention { days: 30, max: 10 }))
            .unwrap();
        assert_eq!(n, 40);
        let (left, _) = page(&db, &Filter::default(), 100).unwrap();
        assert_eq!(left.first().map(|e| e.id), Some(41));
        assert_eq!(left.len(), 10);
    }

    #[test]
    fn kinds_match_exactly_or_by_family() {
        assert!(validate_kind("task").is_ok());
        assert!(validate_kind("task.failed").is_ok());
        assert!(validate_kind("task.exploded").is_err());
        let f = Filter {
            kinds: vec!["batch".into()],
            ..Filter::default()
        };
        let db = Db::open_in_memory().unwrap();
        db.write(|tx| {
            record(tx, Kind::BatchCreated, About::batch(1), None, None, None)?;
            record(tx, Kind::TaskAdded, About::task(1), None, None, None)?;
            Ok(())
        })
        .unwrap();
        let (got, last) = page(&db, &f, 10).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(last, 2);
    }
}
