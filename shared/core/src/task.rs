//! Tasks (SPEC §3): what a task is, how it is validated, and every SQL
//! statement on the `tasks` and `task_deps` tables.

use std::collections::HashMap;

use rusqlite::{params, OptionalExtension, Row, Transaction};
use serde::{Deserialize, Serialize};

use crate::agent_options::AgentOptions;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::event::{self, About, Kind};
use crate::time::now_ms;

/// What a task records of its git work.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitRecord {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub worktree: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub branch: Option<String>,
    /// The commit its branch started from.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub base: Option<String>,
    /// Its branch's last commit when it ended (the base when it changed nothing).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub head: Option<String>,
    /// The commit on the target that landed it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub landed_commit: Option<String>,
    /// The conflict that stopped its landing: `{"into", "files", "resolved_by"?}`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub conflict: Option<serde_json::Value>,
}

/// The longest prompt orch stores, in bytes.
pub const MAX_PROMPT: usize = 1 << 20;
/// The longest description, in characters.
pub const MAX_DESCRIPTION: usize = 100;

/// Where a task is in its life. It only ever moves forward (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Queued,
    Batched,
    Running,
    Done,
    Failed,
    Cancelled,
    /// Its branch was merged into the target by orch-land (final, after done).
    Landed,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Queued,
        Status::Batched,
        Status::Running,
        Status::Done,
        Status::Failed,
        Status::Cancelled,
        Status::Landed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Batched => "batched",
            Status::Running => "running",
            Status::Done => "done",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::Landed => "landed",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Done, failed, cancelled or landed: the agent's work is over (a done
    /// task may still land).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Done | Status::Failed | Status::Cancelled | Status::Landed
        )
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A task as stored; serialised as the `--json` record.
#[derive(Debug, Clone, Serialize)]
pub struct Task {
    pub id: i64,
    pub role: String,
    pub description: String,
    pub prompt: String,
    pub priority: i64,
    pub after: Vec<i64>,
    pub status: Status,
    pub batch: Option<i64>,
    #[serde(serialize_with = "crate::time::ser_rfc3339")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::time::ser_rfc3339_opt")]
    pub batched_at: Option<i64>,
    #[serde(serialize_with = "crate::time::ser_rfc3339_opt")]
    pub started_at: Option<i64>,
    #[serde(serialize_with = "crate::time::ser_rfc3339_opt")]
    pub finished_at: Option<i64>,
    pub result: Option<String>,
    pub error: Option<String>,
    pub exit_code: Option<i64>,
    /// What `claude -p --output-format json` reported about the run, when it
    /// ran that way: the fields it had of `session_id`, `total_cost_usd`,
    /// `usage`, `modelUsage` and `errors`, as it wrote them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claude: Option<serde_json::Map<String, serde_json::Value>>,
    /// A retry waits until then (the batcher skips the task before).
    #[serde(
        serialize_with = "crate::time::ser_rfc3339_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub not_before: Option<i64>,
    /// The Agent tool options it sets (model, isolation, background, name, mode).
    #[serde(flatten)]
    pub agent: AgentOptions,
    /// Globs of the paths it expects to change (`--touches`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub touches: Vec<String>,
    /// Its git worktree, branch and commits, when it ran with `orch-run --worktree`.
    #[serde(flatten)]
    pub git: GitRecord,
}

const TASK_COLUMNS: &str = "id, role, description, prompt, priority, status, batch_id, \
     created_at, batched_at, started_at, finished_at, result, error, exit_code, claude, not_before, \
     model, isolation, background, agent_name, mode, touches, \
     worktree, branch, base_commit, head_commit, landed_commit, conflict";

impl Task {
    fn from_row(r: &Row) -> rusqlite::Result<Task> {
        let status: String = r.get(5)?;
        Ok(Task {
            id: r.get(0)?,
            role: r.get(1)?,
            description: r.get(2)?,
            prompt: r.get(3)?,
            priority: r.get(4)?,
            after: Vec::new(),
            status: Status::parse(&status).unwrap_or(Status::Failed),
            batch: r.get(6)?,
            created_at: r.get(7)?,
            batched_at: r.get(8)?,
            started_at: r.get(9)?,
            finished_at: r.get(10)?,
            result: r.get(11)?,
            error: r.get(12)?,
            exit_code: r.get(13)?,
            claude: r
                .get::<_, Option<String>>(14)?
                .and_then(|s| serde_json::from_str(&s).ok()),
            not_before: r.get(15)?,
            agent: AgentOptions {
                model: r.get(16)?,
                isolation: r.get(17)?,
                background: r.get::<_, Option<bool>>(18)?.unwrap_or(false),
                name: r.get(19)?,
                mode: r.get(20)?,
            },
            touches: r
                .get::<_, Option<String>>(21)?
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or_default(),
            git: GitRecord {
                worktree: r.get(22)?,
                branch: r.get(23)?,
                base: r.get(24)?,
                head: r.get(25)?,
                landed_commit: r.get(26)?,
                conflict: r
                    .get::<_, Option<String>>(27)?
                    .and_then(|s| serde_json::from_str(&s).ok()),
            },
        })
    }
}

/// The status of task `id`, if it exists.
pub fn find_status_in(tx: &Transaction, id: i64) -> Result<Option<Status>> {
    let s: Option<String> = tx
        .query_row("SELECT status FROM tasks WHERE id = ?1", [id], |r| r.get(0))
        .optional()?;
    Ok(s.and_then(|s| Status::parse(&s)))
}

/// The batch task `id` is in (`None`: not batched), or `NotFound`; without
/// reading the rest of its row.
pub fn batch_of_in(tx: &Transaction, id: i64) -> Result<Option<i64>> {
    tx.prepare_cached("SELECT batch_id FROM tasks WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?
        .ok_or(Error::NotFound { what: "task", id })
}

/// The queued tasks that are ready now and wait on one of `finished`, by
/// priority, then id (PostToolBatch's next wave).
pub fn ready_after_in(tx: &Transaction, finished: &[i64]) -> Result<Vec<i64>> {
    let mut ids = Vec::new();
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT DISTINCT t.id FROM tasks t JOIN task_deps dep ON dep.task_id = t.id
         WHERE dep.after_id = ?1 AND {READY} ORDER BY t.priority DESC, t.id"
    ))?;
    for f in finished {
        for id in stmt.query_map([f], |r| r.get::<_, i64>(0))? {
            let id = id?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    Ok(ids)
}

/// The batches with a task still batched or running, newest `limit`, oldest first.
pub fn in_flight_batches_in(tx: &Transaction, limit: usize) -> Result<Vec<i64>> {
    let mut stmt = tx.prepare(
        "SELECT DISTINCT batch_id FROM tasks WHERE batch_id IS NOT NULL AND status IN ('batched', 'running')
         ORDER BY batch_id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit as i64], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Moves up to `max` ready tasks (of `role`, if given), highest priority
/// first, from queued to batched in batch `batch`; returns how many moved.
pub fn batch_ready_in(
    tx: &Transaction,
    batch: i64,
    at: i64,
    role: Option<&str>,
    max: usize,
) -> Result<usize> {
    let mut stmt = tx.prepare(&format!(
        "UPDATE tasks SET status = 'batched', batch_id = ?1, batched_at = ?2
             WHERE status = 'queued' AND id IN (
                 SELECT t.id FROM tasks t WHERE {READY} AND (?3 IS NULL OR t.role = ?3)
                 ORDER BY t.priority DESC, t.id LIMIT ?4) RETURNING id"
    ))?;
    let mut ids: Vec<i64> = stmt
        .query_map(params![batch, at, role, max as i64], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    ids.sort_unstable();
    for &id in &ids {
        event::record(
            tx,
            Kind::TaskBatched,
            About::task_in(id, Some(batch)),
            Some("queued"),
            Some("batched"),
            None,
        )?;
    }
    Ok(ids.len())
}

/// Moves task `id` from queued to batched in batch `batch`; false when it was not queued.
pub fn batch_one_in(tx: &Transaction, batch: i64, at: i64, id: i64) -> Result<bool> {
    Ok(tx
        .prepare_cached(
            "UPDATE tasks SET status = 'batched', batch_id = ?1, batched_at = ?2 WHERE id = ?3 AND status = 'queued'",
        )?
        .execute(params![batch, at, id])?
        == 1
        && event::record(tx, Kind::TaskBatched, About::task_in(id, Some(batch)), Some("queued"), Some("batched"), None)? > 0)
}

/// The tasks of batch `batch` that are running.
pub fn running_in_batch_in(tx: &Transaction, batch: i64) -> Result<Vec<i64>> {
    let mut stmt =
        tx.prepare("SELECT id FROM tasks WHERE batch_id = ?1 AND status = 'running' ORDER BY id")?;
    let ids = stmt
        .query_map([batch], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(ids)
}

/// Puts a running task of a claimed batch back to wait (batched) for its
/// next attempt, no earlier than `not_before`; the runner holding the batch
/// starts it again.
pub fn retry_later_in(
    tx: &Transaction,
    id: i64,
    not_before: i64,
    error: Option<&str>,
    exit_code: Option<i64>,
) -> Result<()> {
    let n = tx.execute(
        "UPDATE tasks SET status = 'batched', started_at = NULL, not_before = ?2,
             error = ?3, exit_code = ?4
         WHERE id = ?1 AND status = 'running'",
        params![id, not_before, error, exit_code],
    )?;
    if n != 1 {
        return Err(Error::invalid(format!(
            "task {id} is not running; cannot schedule a retry"
        )));
    }
    let batch = batch_of_in(tx, id)?;
    event::record(
        tx,
        Kind::TaskRetried,
        About::task_in(id, batch),
        Some("running"),
        Some("batched"),
        Some(&format!("not before {}", crate::time::rfc3339(not_before))),
    )?;
    Ok(())
}

/// `orch-queue retry`: a failed task goes back in the queue for a new attempt.
pub fn retry_failed_in(tx: &Transaction, id: i64) -> Result<()> {
    let s = status_in(tx, id)?;
    if s != Status::Failed {
        return Err(Error::invalid(format!(
            "task {id} is {s}; only a failed task can be retried"
        )));
    }
    tx.execute(
        "UPDATE tasks SET status = 'queued', batch_id = NULL, batched_at = NULL,
             started_at = NULL, finished_at = NULL, result = NULL, error = NULL,
             exit_code = NULL, not_before = NULL
         WHERE id = ?1",
        [id],
    )?;
    event::record(
        tx,
        Kind::TaskRetried,
        About::task(id),
        Some("failed"),
        Some("queued"),
        Some("orch-queue retry"),
    )?;
    Ok(())
}

/// A running task whose agent was lost goes back in the queue (out of its batch).
pub fn requeue_lost_in(tx: &Transaction, id: i64, error: &str) -> Result<()> {
    let batch = batch_of_in(tx, id)?;
    let n = tx.execute(
        "UPDATE tasks SET status = 'queued', batch_id = NULL, batched_at = NULL,
             started_at = NULL, not_before = NULL, error = ?2
         WHERE id = ?1 AND status = 'running'",
        params![id, error],
    )?;
    if n == 1 {
        event::record(
            tx,
            Kind::TaskRetried,
            About::task_in(id, batch),
            Some("running"),
            Some("queued"),
            Some(error),
        )?;
    }
    Ok(())
}

/// The tasks of batch `batch` that are batched (not started).
pub fn batched_in_batch_in(tx: &Transaction, batch: i64) -> Result<Vec<i64>> {
    let mut stmt =
        tx.prepare("SELECT id FROM tasks WHERE batch_id = ?1 AND status = 'batched' ORDER BY id")?;
    let ids = stmt
        .query_map([batch], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(ids)
}

/// When a running task started.
pub fn started_at_in(tx: &Transaction, id: i64) -> Result<Option<i64>> {
    Ok(tx
        .query_row("SELECT started_at FROM tasks WHERE id = ?1", [id], |r| {
            r.get::<_, Option<i64>>(0)
        })
        .optional()?
        .flatten())
}

/// Moves task `id` from batched back to queued, out of its batch; false when it was not batched.
pub fn requeue_in(tx: &Transaction, id: i64, batch: i64) -> Result<bool> {
    Ok(tx
        .prepare_cached(
            "UPDATE tasks SET status = 'queued', batch_id = NULL, batched_at = NULL
             WHERE id = ?1 AND batch_id = ?2 AND status = 'batched'",
        )?
        .execute([id, batch])?
        == 1
        && event::record(
            tx,
            Kind::TaskRequeued,
            About::task(id),
            Some("batched"),
            Some("queued"),
            None,
        )? > 0)
}

/// Takes every task out of batch `batch` (being deleted): batched ones go back to the queue.
pub fn unbatch_all_in(tx: &Transaction, batch: i64) -> Result<()> {
    let mut stmt = tx.prepare(
        "UPDATE tasks SET status = 'queued', batch_id = NULL, batched_at = NULL
         WHERE batch_id = ?1 AND status = 'batched' RETURNING id",
    )?;
    let mut ids: Vec<i64> = stmt
        .query_map([batch], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    ids.sort_unstable();
    for id in ids {
        event::record(
            tx,
            Kind::TaskRequeued,
            About::task_in(id, Some(batch)),
            Some("batched"),
            Some("queued"),
            Some("batch released"),
        )?;
    }
    tx.execute(
        "UPDATE tasks SET batch_id = NULL WHERE batch_id = ?1",
        [batch],
    )?;
    Ok(())
}

/// The status of every task that a queued task waits for and that is not queued itself.
pub fn unqueued_deps_in(tx: &Transaction) -> Result<HashMap<i64, String>> {
    let mut stmt = tx.prepare(
        "SELECT DISTINCT p.id, p.status FROM task_deps d JOIN tasks t ON t.id = d.task_id
         JOIN tasks p ON p.id = d.after_id WHERE t.status = 'queued' AND p.status != 'queued'",
    )?;
    let statuses = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(statuses)
}

/// The schema version and task count of the database file at `path`, read
/// without writing anything (`orch doctor`); the error is one line for people.
pub fn peek(path: &std::path::Path) -> std::result::Result<(i64, i64), String> {
    crate::db::peek(path, |c| {
        c.query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))
    })
}

#[cfg(test)]
impl Task {
    /// A batched task that lives only in memory, for unit tests of code that
    /// renders or runs tasks.
    pub(crate) fn sample(id: i64, role: &str, description: &str, prompt: &str) -> Task {
        Task {
            id,
            role: role.into(),
            description: description.into(),
            prompt: prompt.into(),
            priority: 0,
            after: vec![],
            status: Status::Batched,
            batch: Some(1),
            created_at: 0,
            batched_at: None,
            started_at: None,
            finished_at: None,
            result: None,
            error: None,
            exit_code: None,
            claude: None,
            not_before: None,
            agent: AgentOptions::default(),
            touches: vec![],
            git: GitRecord::default(),
        }
    }
}

/// A reference to a dependency: an existing task id, or the `key` of another
/// line in the same `--stdin` input.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(
    untagged,
    expecting = "\"after\" items are task ids (numbers) or keys of other lines (strings)"
)]
pub enum Dep {
    Id(i64),
    Key(String),
}

/// A task to add, as given: validated by [`NewTask::validate`] before any write.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    #[serde(default)]
    pub role: Option<String>,
    pub prompt: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub priority: Option<i64>,
    #[serde(default)]
    pub after: Vec<Dep>,
    /// A name other lines of the same input can list in their `after`.
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub isolation: Option<String>,
    #[serde(default)]
    pub background: Option<bool>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub mode: Option<String>,
    /// Globs of the paths the task expects to change.
    #[serde(default)]
    pub touches: Vec<String>,
}

/// A validated task, ready to insert.
#[derive(Debug, Clone)]
pub struct ValidTask {
    pub role: String,
    pub description: String,
    pub prompt: String,
    pub priority: i64,
    pub after: Vec<Dep>,
    pub key: Option<String>,
    pub agent: AgentOptions,
    pub touches: Vec<String>,
}

/// Checks a role: 1–64 of `A-Za-z0-9_.-`, not starting with `.` or `-`.
pub fn validate_role(role: &str) -> Result<()> {
    if !crate::agent_options::is_name(role) {
        return Err(Error::invalid(format!(
            "bad role {:?}: use 1-64 of A-Z a-z 0-9 _ . - (not starting with . or -)",
            crate::text::clip(role, 40)
        )));
    }
    Ok(())
}

/// The last line of every emitted prompt, which hooks read to find the task.
pub fn task_marker(id: i64) -> String {
    format!("orch-task: {id}")
}

/// The task id in a prompt's `orch-task: ID` line, if any (the last one wins).
pub fn parse_task_marker(prompt: &str) -> Option<i64> {
    prompt
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("orch-task:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Checks a prompt: non-empty UTF-8 without NUL, at most 1 MiB.
pub fn validate_prompt(prompt: &str) -> Result<()> {
    if prompt.trim().is_empty() {
        return Err(Error::invalid("empty prompt: say what the agent should do"));
    }
    if prompt.len() > MAX_PROMPT {
        return Err(Error::invalid(format!(
            "prompt is {} bytes; the limit is {MAX_PROMPT} (1 MiB)",
            prompt.len()
        )));
    }
    if prompt.contains('\0') {
        return Err(Error::invalid("prompt contains a NUL byte"));
    }
    Ok(())
}

/// Refuses a description holding a control character (C0, DEL, C1): it is one
/// line of plain text, shown in every view and sent to Claude Code as is.
pub fn validate_description(d: &str) -> Result<()> {
    if let Some((i, c)) = d.chars().enumerate().find(|(_, c)| c.is_control()) {
        return Err(Error::invalid(format!(
            "bad description: control character U+{:04X} at character {}; a description is one line of plain text",
            c as u32,
            i + 1
        )));
    }
    Ok(())
}

/// Words that make a poor last word of a cut-off description.
const DANGLING: &[&str] = &[
    "a", "an", "the", "of", "to", "in", "on", "at", "for", "from", "with", "by", "and", "or",
    "but", "as", "into", "onto", "that", "this", "these", "those", "its", "their", "our", "my",
    "your", "is", "are", "be", "if", "so",
];

/// A 3–5 word description from the prompt's first words, not ending on a
/// dangling word such as "the" or "of".
pub fn derive_description(prompt: &str) -> String {
    // Control characters are dropped: a prompt may hold them, a description not.
    let clean: String;
    let prompt = if crate::text::has_control(prompt) {
        clean = prompt
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        &clean
    } else {
        prompt
    };
    let mut words: Vec<&str> = prompt.split_whitespace().take(5).collect();
    while words.len() > 2
        && words
            .last()
            .is_some_and(|w| DANGLING.contains(&w.to_lowercase().as_str()))
    {
        words.pop();
    }
    let mut d = words.join(" ");
    d = d
        .trim_end_matches(['.', ',', ';', ':', '!', '?'])
        .to_string();
    if d.chars().count() > 60 {
        d = d
            .chars()
            .take(60)
            .collect::<String>()
            .trim_end()
            .to_string();
    }
    if d.is_empty() {
        d = "Run a task".into();
    }
    d
}

impl NewTask {
    /// Validates every field; `default_role` fills in a missing role.
    pub fn validate(self, default_role: Option<&str>) -> Result<ValidTask> {
        let role = match (self.role, default_role) {
            (Some(r), _) => r,
            (None, Some(r)) => r.to_string(),
            (None, None) => return Err(Error::invalid("missing \"role\"")),
        };
        validate_role(&role)?;
        validate_prompt(&self.prompt)?;
        let description = match self.description {
            Some(d) => {
                validate_description(&d)?;
                let d = d.trim().to_string();
                if d.is_empty() || d.chars().count() > MAX_DESCRIPTION {
                    return Err(Error::invalid(format!(
                        "bad description: one line of 1-{MAX_DESCRIPTION} characters (3-5 words suit Claude Code best)"
                    )));
                }
                d
            }
            None => derive_description(&self.prompt),
        };
        if let Some(k) = &self.key {
            if k.is_empty() || k.len() > 200 {
                return Err(Error::invalid("bad \"key\": 1-200 characters"));
            }
        }
        for d in &self.after {
            if let Dep::Id(id) = d {
                if *id <= 0 {
                    return Err(Error::invalid(format!(
                        "bad dependency {id}: task ids are positive"
                    )));
                }
            }
        }
        let agent = AgentOptions {
            model: self.model,
            isolation: self.isolation,
            background: self.background.unwrap_or(false),
            name: self.name,
            mode: self.mode,
        };
        agent.validate()?;
        crate::touches::validate_all(&self.touches)?;
        Ok(ValidTask {
            role,
            description,
            prompt: self.prompt,
            priority: self.priority.unwrap_or(0),
            after: self.after,
            key: self.key,
            agent,
            touches: self.touches,
        })
    }
}

/// Adds tasks, all or nothing, in one IMMEDIATE transaction; returns their ids in order.
///
/// `after` may name existing tasks by id or earlier/later lines of the same
/// call by key; a missing task or a cycle is refused. `label(i)` names the
/// i-th task in errors (e.g. "line 7").
pub fn add(db: &Db, tasks: Vec<ValidTask>, label: impl Fn(usize) -> String) -> Result<Vec<i64>> {
    db.write(|tx| add_in(tx, tasks, label))
}

/// [`add`] inside a transaction the caller holds (it must be IMMEDIATE).
pub fn add_in(
    tx: &Transaction,
    tasks: Vec<ValidTask>,
    label: impl Fn(usize) -> String,
) -> Result<Vec<i64>> {
    let mut keys = KeyCheck::default();
    for (i, t) in tasks.iter().enumerate() {
        keys.note(t, i, &label)?;
    }
    keys.check(&label)?;
    let mut ins = Inserter::new(tx, &keys);
    for (i, t) in tasks.into_iter().enumerate() {
        ins.push(t, i, &label)?;
    }
    Ok(ins.finish()?.iter().collect())
}

/// Task ids in insertion order, stored as runs of consecutive ids (a big
/// insert gets consecutive ids, so 100 000 of them take a few bytes).
#[derive(Debug, Default)]
pub struct Ids {
    /// (index of the run's first task, its id, how many follow it consecutively).
    runs: Vec<(usize, i64, usize)>,
    len: usize,
}

impl Ids {
    fn push(&mut self, id: i64) {
        match self.runs.last_mut() {
            Some((_, first, n)) if *first + *n as i64 == id => *n += 1,
            _ => self.runs.push((self.len, id, 1)),
        }
        self.len += 1;
    }

    /// The id of the `i`-th task.
    fn get(&self, i: usize) -> Option<i64> {
        let r = self.runs.partition_point(|&(start, _, _)| start <= i);
        let (start, first, n) = *self.runs.get(r.checked_sub(1)?)?;
        (i - start < n).then(|| first + (i - start) as i64)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every id, in order.
    pub fn iter(&self) -> impl Iterator<Item = i64> + '_ {
        self.runs
            .iter()
            .flat_map(|&(_, first, n)| (0..n as i64).map(move |k| first + k))
    }
}

/// The keys and keyed `after` references of a stream of tasks, checked before
/// anything is written: keys are unique, every key named exists, and there is
/// no cycle. It keeps only keys and references, never the tasks, so a stream
/// of any length can be checked in a first pass and inserted in a second.
#[derive(Debug, Default)]
pub struct KeyCheck {
    /// Key → index of the task that has it.
    keys: HashMap<String, usize>,
    /// (task index, its label position, a key in its `after`).
    refs: Vec<(usize, usize, String)>,
    /// Tasks noted so far.
    len: usize,
}

impl KeyCheck {
    /// Notes the next task; `at` is what `label` turns into its name in errors.
    pub fn note(
        &mut self,
        t: &ValidTask,
        at: usize,
        label: &impl Fn(usize) -> String,
    ) -> Result<()> {
        let i = self.len;
        self.len += 1;
        if let Some(k) = &t.key {
            if self.keys.insert(k.clone(), i).is_some() {
                return Err(Error::invalid(format!(
                    "{}: key {k:?} is used twice",
                    label(at)
                )));
            }
        }
        for d in &t.after {
            if let Dep::Key(k) = d {
                self.refs.push((i, at, k.clone()));
            }
        }
        Ok(())
    }

    /// How many tasks were noted.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no task was noted.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Checks, once every task is noted, that each key named exists and that
    /// the keyed references form no cycle.
    pub fn check(&self, label: &impl Fn(usize) -> String) -> Result<()> {
        // The graph over the tasks that take part in a keyed reference only.
        let mut node: HashMap<usize, usize> = HashMap::new();
        let mut task_of: Vec<usize> = Vec::new();
        let mut edges: Vec<Vec<usize>> = Vec::new();
        let mut intern = |i: usize, edges: &mut Vec<Vec<usize>>| {
            *node.entry(i).or_insert_with(|| {
                task_of.push(i);
                edges.push(Vec::new());
                edges.len() - 1
            })
        };
        for (i, at, k) in &self.refs {
            let Some(&j) = self.keys.get(k) else {
                return Err(Error::invalid(format!(
                    "{}: \"after\" names key {k:?}, which no line has",
                    label(*at)
                )));
            };
            let a = intern(*i, &mut edges);
            let b = intern(j, &mut edges);
            edges[a].push(b);
        }
        if let Some(cycle) = find_cycle(&edges) {
            // Every task on a cycle is the target of a reference, so it has a key.
            let names: Vec<String> = cycle
                .iter()
                .map(|&n| {
                    let i = task_of[n];
                    self.keys
                        .iter()
                        .find(|(_, &t)| t == i)
                        .map(|(k, _)| k.clone())
                        .unwrap_or_else(|| format!("task {}", i + 1))
                })
                .collect();
            return Err(Error::invalid(format!(
                "dependency cycle: {}",
                names.join(" -> ")
            )));
        }
        Ok(())
    }
}

/// Inserts the tasks a [`KeyCheck`] accepted, one at a time and in the same
/// order, inside an IMMEDIATE transaction the caller holds. A keyed `after`
/// that names a later task is recorded when that task is inserted.
pub struct Inserter<'a> {
    tx: &'a Transaction<'a>,
    keys: &'a KeyCheck,
    now: i64,
    /// The id of each task inserted so far, by index.
    ids: Ids,
    /// Index of a task not inserted yet → the ids of tasks waiting for it.
    waiting: HashMap<usize, Vec<i64>>,
    /// Dependencies between two tasks of this insert (task, after), checked
    /// for a cycle once all are in: an `after` by id can name a task of the
    /// same input that itself waits for a later line by key.
    inner: Vec<(i64, i64)>,
}

impl<'a> Inserter<'a> {
    pub fn new(tx: &'a Transaction<'a>, keys: &'a KeyCheck) -> Inserter<'a> {
        Inserter {
            tx,
            keys,
            now: now_ms(),
            ids: Ids::default(),
            waiting: HashMap::new(),
            inner: Vec::new(),
        }
    }

    /// Inserts the next task and returns its id.
    pub fn push(
        &mut self,
        t: ValidTask,
        at: usize,
        label: &impl Fn(usize) -> String,
    ) -> Result<i64> {
        let i = self.ids.len();
        // The input must be the one that was checked (a file may change between passes).
        let changed = || {
            Error::invalid(format!(
                "{}: the input changed while it was being read",
                label(at)
            ))
        };
        if i >= self.keys.len
            || t.key
                .as_ref()
                .is_some_and(|k| self.keys.keys.get(k) != Some(&i))
        {
            return Err(changed());
        }
        self.tx
            .prepare_cached(
                "INSERT INTO tasks (role, description, prompt, priority, created_at,
                     model, isolation, background, agent_name, mode, touches)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                t.role,
                t.description,
                t.prompt,
                t.priority,
                self.now,
                t.agent.model,
                t.agent.isolation,
                t.agent.background.then_some(true),
                t.agent.name,
                t.agent.mode,
                (!t.touches.is_empty())
                    .then(|| serde_json::to_string(&t.touches).unwrap_or_default())
            ])?;
        let id = self.tx.last_insert_rowid();
        event::record(
            self.tx,
            Kind::TaskAdded,
            About::task(id),
            None,
            Some("queued"),
            Some(&t.description),
        )?;
        self.ids.push(id);
        if let Some(waiting) = self.waiting.remove(&i) {
            for w in waiting {
                self.dep(w, id)?;
                self.inner.push((w, id));
            }
        }
        let first = self.ids.iter().next().unwrap_or(id);
        for d in &t.after {
            match d {
                Dep::Id(a) if *a == id => {
                    return Err(Error::invalid(format!(
                        "{}: \"after\" names task {a}, which is this task itself (the id it gets): a task cannot wait for itself",
                        label(at)
                    )));
                }
                Dep::Id(a) => {
                    if *a >= first {
                        self.inner.push((id, *a));
                    }
                    let found = self
                        .tx
                        .prepare_cached("SELECT 1 FROM tasks WHERE id = ?1")?
                        .query_row([a], |_| Ok(()))
                        .optional()?;
                    if found.is_none() {
                        return Err(Error::invalid(format!(
                            "{}: \"after\" names task {a}, which does not exist",
                            label(at)
                        )));
                    }
                    self.dep(id, *a)?;
                }
                Dep::Key(k) => match self.keys.keys.get(k) {
                    Some(&j) if j < self.ids.len() => match self.ids.get(j) {
                        Some(after) => {
                            self.dep(id, after)?;
                            self.inner.push((id, after));
                        }
                        None => return Err(changed()),
                    },
                    Some(&j) => self.waiting.entry(j).or_default().push(id),
                    None => return Err(changed()),
                },
            }
        }
        Ok(id)
    }

    fn dep(&self, task: i64, after: i64) -> Result<()> {
        self.tx
            .prepare_cached("INSERT OR IGNORE INTO task_deps (task_id, after_id) VALUES (?1, ?2)")?
            .execute(params![task, after])?;
        Ok(())
    }

    /// The ids of every task, in order, once all of them are inserted; refuses
    /// a cycle among them (which the keys alone did not show).
    pub fn finish(self) -> Result<Ids> {
        if self.ids.len() != self.keys.len || !self.waiting.is_empty() {
            return Err(Error::invalid(
                "the input changed while it was being read; nothing was written",
            ));
        }
        if !self.inner.is_empty() {
            let mut node: HashMap<i64, usize> = HashMap::new();
            let mut id_of: Vec<i64> = Vec::new();
            let mut edges: Vec<Vec<usize>> = Vec::new();
            for &(task, after) in &self.inner {
                let mut at = |id: i64| {
                    *node.entry(id).or_insert_with(|| {
                        id_of.push(id);
                        edges.push(Vec::new());
                        edges.len() - 1
                    })
                };
                let (a, b) = (at(task), at(after));
                edges[a].push(b);
            }
            if let Some(cycle) = find_cycle(&edges) {
                let names: Vec<String> = cycle
                    .iter()
                    .map(|&n| format!("task {}", id_of[n]))
                    .collect();
                return Err(Error::invalid(format!(
                    "dependency cycle: {} (ids as they would be); nothing was written",
                    names.join(" -> ")
                )));
            }
        }
        Ok(self.ids)
    }
}

/// Returns one cycle of the graph (`edges[i]` = what i depends on), if any.
pub fn find_cycle(edges: &[Vec<usize>]) -> Option<Vec<usize>> {
    // 0 = unvisited, 1 = on the stack, 2 = finished.
    let mut state = vec![0u8; edges.len()];
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for start in 0..edges.len() {
        if state[start] != 0 {
            continue;
        }
        stack.push((start, 0));
        state[start] = 1;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&succ) = edges[node].get(*next) {
                *next += 1;
                match state[succ] {
                    0 => {
                        state[succ] = 1;
                        stack.push((succ, 0));
                    }
                    1 => {
                        let pos = stack.iter().position(|&(n, _)| n == succ).unwrap_or(0);
                        let mut cycle: Vec<usize> = stack[pos..].iter().map(|&(n, _)| n).collect();
                        cycle.push(succ);
                        return Some(cycle);
                    }
                    _ => {}
                }
            } else {
                state[node] = 2;
                stack.pop();
            }
        }
    }
    None
}

/// SQL condition: task `t` is ready (queued, due — a retry waits for its
/// `not_before` — and everything in its `after` is done).
pub const READY: &str = "t.status = 'queued' \
     AND (t.not_before IS NULL OR t.not_before <= CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)) \
     AND NOT EXISTS (SELECT 1 FROM task_deps d \
     JOIN tasks p ON p.id = d.after_id WHERE d.task_id = t.id AND p.status NOT IN ('done', 'landed'))";

/// A queued task that can never become ready: it waits, directly or through
/// other tasks, for one that failed or was cancelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub id: i64,
    /// The failed or cancelled task it waits for (the lowest id, when several).
    pub behind: i64,
}

/// The tasks that wait, directly or through others, for a failed or
/// cancelled task (or for one of `?1`'s ids), within ids `?2..=?3`. Driven by
/// the (small) set of blocked tasks: `CROSS JOIN` keeps SQLite from walking
/// every queued task instead, which made each `orch-queue add` linear in the
/// size of the queue.
const BLOCKED_SQL: &str = "WITH RECURSIVE blocked(id, root) AS (
             SELECT d.task_id, d.after_id FROM task_deps d JOIN tasks p ON p.id = d.after_id
             WHERE CASE WHEN ?1 IS NULL THEN p.status IN ('failed', 'cancelled')
                        ELSE p.id IN (SELECT value FROM json_each(?1)) END
             UNION
             SELECT d.task_id, b.root FROM task_deps d JOIN blocked b ON d.after_id = b.id
         )
         SELECT t.id, min(b.root) FROM blocked b CROSS JOIN tasks t ON t.id = b.id
         WHERE t.status = 'queued' AND t.id BETWEEN ?2 AND ?3
         GROUP BY t.id ORDER BY t.id";

/// Queued tasks blocked behind `roots` (when given), else behind any failed or
/// cancelled task; only ids in `within` (inclusive) when given. By id.
pub fn blocked_in(
    tx: &Transaction,
    roots: Option<&[i64]>,
    within: Option<(i64, i64)>,
) -> Result<Vec<Blocked>> {
    let roots = roots.map(|r| serde_json::to_string(r).unwrap_or_else(|_| "[]".into()));
    let (lo, hi) = within.unwrap_or((i64::MIN, i64::MAX));
    let mut stmt = tx.prepare_cached(BLOCKED_SQL)?;
    let rows = stmt.query_map(params![roots, lo, hi], |r| {
        Ok(Blocked {
            id: r.get(0)?,
            behind: r.get(1)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// [`blocked_in`] in a read transaction of its own.
pub fn blocked(db: &Db, roots: Option<&[i64]>, within: Option<(i64, i64)>) -> Result<Vec<Blocked>> {
    db.read(|tx| blocked_in(tx, roots, within))
}

/// What `list` shows.
#[derive(Debug, Default, Clone)]
pub struct TaskFilter {
    pub status: Option<Status>,
    pub role: Option<String>,
    pub batch: Option<i64>,
    pub ready: bool,
    pub limit: Option<i64>,
}

fn load_after(tx: &Transaction, tasks: &mut [Task]) -> Result<()> {
    if tasks.len() <= 16 {
        let mut stmt = tx.prepare_cached(
            "SELECT after_id FROM task_deps WHERE task_id = ?1 ORDER BY after_id",
        )?;
        for t in tasks.iter_mut() {
            t.after = stmt
                .query_map([t.id], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
        }
        return Ok(());
    }
    // Many tasks: one range scan of the dependency table instead of a query each.
    let (lo, hi) = tasks.iter().fold((i64::MAX, i64::MIN), |(lo, hi), t| {
        (lo.min(t.id), hi.max(t.id))
    });
    let index: HashMap<i64, usize> = tasks.iter().enumerate().map(|(i, t)| (t.id, i)).collect();
    let mut stmt = tx.prepare_cached(
        "SELECT task_id, after_id FROM task_deps WHERE task_id BETWEEN ?1 AND ?2 ORDER BY task_id, after_id",
    )?;
    let mut rows = stmt.query([lo, hi])?;
    while let Some(r) = rows.next()? {
        let (task, after): (i64, i64) = (r.get(0)?, r.get(1)?);
        if let Some(&i) = index.get(&task) {
            tasks[i].after.push(after);
        }
    }
    Ok(())
}

/// Tasks matching `f`, oldest first.
pub fn list(db: &Db, f: &TaskFilter) -> Result<Vec<Task>> {
    db.read(|tx| list_in(tx, f))
}

/// [`list`] inside a transaction the caller holds.
pub fn list_in(tx: &Transaction, f: &TaskFilter) -> Result<Vec<Task>> {
    let mut sql = format!("SELECT {TASK_COLUMNS} FROM tasks t WHERE 1=1");
    if f.status.is_some() {
        sql.push_str(" AND t.status = ?1");
    }
    if f.role.is_some() {
        sql.push_str(" AND t.role = ?2");
    }
    if f.batch.is_some() {
        sql.push_str(" AND t.batch_id = ?3");
    }
    if f.ready {
        sql.push_str(&format!(" AND {READY}"));
    }
    if f.batch.is_some() {
        sql.push_str(" ORDER BY t.priority DESC, t.id");
    } else {
        sql.push_str(" ORDER BY t.id");
    }
    sql.push_str(" LIMIT ?4");
    let mut stmt = tx.prepare(&sql)?;
    let mut rows = Vec::new();
    let mut q = stmt.query(params![
        f.status.map(|s| s.as_str()),
        f.role,
        f.batch,
        f.limit.unwrap_or(-1)
    ])?;
    while let Some(r) = q.next()? {
        rows.push(Task::from_row(r)?);
    }
    load_after(tx, &mut rows)?;
    Ok(rows)
}

/// One task, or `NotFound`.
pub fn get(db: &Db, id: i64) -> Result<Task> {
    db.read(|tx| get_in(tx, id))
}

/// [`get`] inside a transaction the caller holds.
pub fn get_in(tx: &Transaction, id: i64) -> Result<Task> {
    let mut t = tx
        .query_row(
            &format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"),
            [id],
            Task::from_row,
        )
        .optional()?
        .ok_or(Error::NotFound { what: "task", id })?;
    load_after(tx, std::slice::from_mut(&mut t))?;
    Ok(t)
}

fn status_in(tx: &Transaction, id: i64) -> Result<Status> {
    let s: String = tx
        .query_row("SELECT status FROM tasks WHERE id = ?1", [id], |r| r.get(0))
        .optional()?
        .ok_or(Error::NotFound { what: "task", id })?;
    Ok(Status::parse(&s).unwrap_or(Status::Failed))
}

/// Cancels queued or batched tasks, all or nothing.
pub fn cancel(db: &Db, ids: &[i64]) -> Result<()> {
    let now = now_ms();
    db.write(|tx| {
        for &id in ids {
            let s = status_in(tx, id)?;
            if !matches!(s, Status::Queued | Status::Batched) {
                return Err(Error::invalid(format!(
                    "task {id} is {s}; only queued or batched tasks can be cancelled"
                )));
            }
            tx.execute(
                "UPDATE tasks SET status = 'cancelled', finished_at = ?2 WHERE id = ?1",
                params![id, now],
            )?;
            event::record(
                tx,
                Kind::TaskCancelled,
                About::task(id),
                Some(s.as_str()),
                Some("cancelled"),
                None,
            )?;
        }
        Ok(())
    })
}

/// How a task ended.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub ok: bool,
    pub result: Option<String>,
    pub error: Option<String>,
    pub exit_code: Option<i64>,
    pub log: Option<String>,
    /// What claude reported about the run (a JSON object), when it did.
    pub claude: Option<serde_json::Map<String, serde_json::Value>>,
    /// When it ended; now when `None`.
    pub at: Option<i64>,
}

/// Marks a queued or batched task running. `at` defaults to now.
pub fn start(db: &Db, id: i64, at: Option<i64>) -> Result<()> {
    db.write(|tx| start_in(tx, id, at))
}

/// [`start`] inside a transaction the caller holds.
pub fn start_in(tx: &Transaction, id: i64, at: Option<i64>) -> Result<()> {
    let s = status_in(tx, id)?;
    if !matches!(s, Status::Queued | Status::Batched) {
        return Err(Error::invalid(format!(
            "task {id} is {s}; only a queued or batched task can start"
        )));
    }
    let batch: Option<i64> = tx.query_row(
        "UPDATE tasks SET status = 'running', started_at = ?2 WHERE id = ?1 RETURNING batch_id",
        params![id, at.unwrap_or_else(now_ms)],
        |r| r.get(0),
    )?;
    event::record(
        tx,
        Kind::TaskStarted,
        About::task_in(id, batch),
        Some(s.as_str()),
        Some("running"),
        None,
    )?;
    Ok(())
}

/// Marks a task done or failed. A task that never started is allowed to finish
/// (its start time is then its end time); a finished one is refused.
pub fn finish(db: &Db, id: i64, o: Outcome) -> Result<()> {
    db.write(|tx| finish_in(tx, id, o))
}

/// [`finish`] inside a transaction the caller holds.
pub fn finish_in(tx: &Transaction, id: i64, o: Outcome) -> Result<()> {
    let s = status_in(tx, id)?;
    if s.is_final() {
        return Err(Error::invalid(format!("task {id} is already {s}")));
    }
    if let Some(r) = &o.result {
        if r.len() > 16 * MAX_PROMPT {
            return Err(Error::invalid("result is larger than 16 MiB"));
        }
    }
    let at = o.at.unwrap_or_else(now_ms);
    let (kind, to) = match o.ok {
        true => (Kind::TaskDone, "done"),
        false => (Kind::TaskFailed, "failed"),
    };
    let detail = o.error.clone();
    let batch: Option<i64> = tx.query_row(
        "UPDATE tasks SET status = ?2, finished_at = ?3, started_at = coalesce(started_at, ?3),
             result = coalesce(?4, result), error = ?5, exit_code = ?6, log = coalesce(?7, log),
             claude = coalesce(?8, claude)
         WHERE id = ?1 RETURNING batch_id",
        params![
            id,
            if o.ok { "done" } else { "failed" },
            at,
            o.result,
            o.error,
            o.exit_code,
            o.log,
            o.claude.map(|m| serde_json::Value::Object(m).to_string())
        ],
        |r| r.get(0),
    )?;
    event::record(
        tx,
        kind,
        About::task_in(id, batch),
        Some(s.as_str()),
        Some(to),
        detail.as_deref(),
    )?;
    Ok(())
}

/// Marks a done task landed, with the commit that landed it (`None` when its
/// branch held nothing to land): a task lands once, and only from `done`.
/// A done task whose conflict this one was queued to resolve lands with it
/// (same commit; its conflict stays on record). Returns whether it moved.
pub fn land_in(tx: &Transaction, id: i64, commit: Option<&str>) -> Result<bool> {
    let now = now_ms();
    let n = tx.execute(
        "UPDATE tasks SET status = 'landed', landed_commit = ?2, landed_at = ?3, conflict = NULL
         WHERE id = ?1 AND status = 'done'",
        params![id, commit, now],
    )?;
    if n == 1 {
        let mut stmt = tx.prepare(
            "UPDATE tasks SET status = 'landed', landed_commit = ?2, landed_at = ?3
             WHERE status = 'done' AND conflict IS NOT NULL
               AND json_valid(conflict) AND json_extract(conflict, '$.resolved_by') = ?1
             RETURNING id",
        )?;
        let with: Vec<i64> = stmt
            .query_map(params![id, commit, now], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for t in std::iter::once(id).chain(with) {
            event::record(
                tx,
                Kind::TaskLanded,
                About::task(t),
                Some("done"),
                Some("landed"),
                commit,
            )?;
        }
    }
    Ok(n == 1)
}

/// Records the conflict that stopped a done task's landing (a JSON object).
pub fn set_conflict_in(tx: &Transaction, id: i64, conflict: &serde_json::Value) -> Result<()> {
    tx.execute(
        "UPDATE tasks SET conflict = ?2 WHERE id = ?1 AND status = 'done'",
        params![id, conflict.to_string()],
    )?;
    Ok(())
}

/// Records a task's git work: worktree, branch, base and head.
pub fn record_git_in(tx: &Transaction, id: i64, g: &GitRecord) -> Result<()> {
    tx.execute(
        "UPDATE tasks SET worktree = ?2, branch = ?3, base_commit = ?4, head_commit = ?5 WHERE id = ?1",
        params![id, g.worktree, g.branch, g.base, g.head],
    )?;
    Ok(())
}

/// Forgets a task's worktree path once the worktree is gone.
pub fn forget_worktree_in(tx: &Transaction, id: i64) -> Result<()> {
    tx.execute("UPDATE tasks SET worktree = NULL WHERE id = ?1", [id])?;
    Ok(())
}

/// Tasks that still have a worktree and are done, landed, cancelled or failed.
pub fn with_finished_worktree(db: &Db) -> Result<Vec<Task>> {
    db.read(|tx| {
        let mut st = tx.prepare(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE worktree IS NOT NULL
               AND status IN ('done', 'landed', 'cancelled', 'failed') ORDER BY id"
        ))?;
        let rows = st
            .query_map([], Task::from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    })
}

/// Calls `f` with the id and `touches` of each ready task (of `role`), in
/// batching order (priority, then id), until it returns false. Returns
/// `false` without calling it when no ready task has `touches`.
pub fn each_ready_touches_in(
    tx: &Transaction,
    role: Option<&str>,
    mut f: impl FnMut(i64, Vec<String>) -> bool,
) -> Result<bool> {
    let any: Option<i64> = tx
        .query_row(
            &format!(
                "SELECT 1 FROM tasks t WHERE {READY} AND t.touches IS NOT NULL AND (?1 IS NULL OR t.role = ?1) LIMIT 1"
            ),
            [role],
            |r| r.get(0),
        )
        .optional()?;
    if any.is_none() {
        return Ok(false);
    }
    let mut stmt = tx.prepare(&format!(
        "SELECT t.id, t.touches FROM tasks t WHERE {READY} AND (?1 IS NULL OR t.role = ?1)
         ORDER BY t.priority DESC, t.id"
    ))?;
    let mut rows = stmt.query([role])?;
    while let Some(r) = rows.next()? {
        let globs: Vec<String> = r
            .get::<_, Option<String>>(1)?
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        if !f(r.get(0)?, globs) {
            break;
        }
    }
    Ok(true)
}

/// Counts by status, plus how many queued tasks are ready.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct Stats {
    pub queued: i64,
    pub ready: i64,
    pub batched: i64,
    pub running: i64,
    pub done: i64,
    pub failed: i64,
    pub cancelled: i64,
    /// Done tasks whose branch orch-land merged; left out when there are none.
    #[serde(skip_serializing_if = "is_zero")]
    pub landed: i64,
    pub total: i64,
    /// Queued tasks that can never become ready (see [`blocked_in`]); left
    /// out of the JSON when there are none.
    #[serde(skip_serializing_if = "is_zero")]
    #[schemars(
        description = "Queued tasks that wait for a failed or cancelled task (absent when none)"
    )]
    pub blocked: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl Stats {
    /// How many tasks have `status`.
    pub fn of(&self, status: Status) -> i64 {
        match status {
            Status::Queued => self.queued,
            Status::Batched => self.batched,
            Status::Running => self.running,
            Status::Done => self.done,
            Status::Failed => self.failed,
            Status::Cancelled => self.cancelled,
            Status::Landed => self.landed,
        }
    }

    fn count_mut(&mut self, status: Status) -> &mut i64 {
        match status {
            Status::Queued => &mut self.queued,
            Status::Batched => &mut self.batched,
            Status::Running => &mut self.running,
            Status::Done => &mut self.done,
            Status::Failed => &mut self.failed,
            Status::Cancelled => &mut self.cancelled,
            Status::Landed => &mut self.landed,
        }
    }

    /// The counts for people, every status in [`Status::ALL`]'s order:
    /// `3 queued (2 ready, 1 blocked), 0 batched, …, 0 cancelled, 4 landed`;
    /// blocked and landed only when there are some. `orch status`, `orch-queue
    /// stats` and the MCP `queue_status` text all say it this way.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for s in Status::ALL {
            let n = self.of(s);
            match s {
                Status::Queued => {
                    let blocked = match self.blocked {
                        0 => String::new(),
                        b => format!(", {b} blocked"),
                    };
                    parts.push(format!("{n} queued ({} ready{blocked})", self.ready));
                }
                Status::Landed if n == 0 => {}
                _ => parts.push(format!("{n} {s}")),
            }
        }
        parts.join(", ")
    }
}

/// Counts tasks by status.
pub fn stats(db: &Db) -> Result<Stats> {
    db.read(stats_in)
}

/// [`stats`] inside a transaction the caller holds.
pub fn stats_in(tx: &Transaction) -> Result<Stats> {
    let mut s = Stats::default();
    let mut stmt = tx.prepare_cached("SELECT status, count(*) FROM tasks GROUP BY status")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    for row in rows {
        let (status, n) = row?;
        if let Some(st) = Status::parse(&status) {
            *s.count_mut(st) = n;
        }
        s.total += n;
    }
    s.ready = count_ready_in(tx, None)?;
    if s.queued > s.ready && s.failed + s.cancelled > 0 {
        s.blocked = blocked_in(tx, None, None)?.len() as i64;
    }
    Ok(s)
}

/// How many tasks are ready (optionally of one role).
pub fn count_ready_in(tx: &Transaction, role: Option<&str>) -> Result<i64> {
    count_ready_upto(tx, role, i64::MAX)
}

/// How many tasks are ready, counting no further than `limit` (cheap on a long queue).
pub fn count_ready_upto(tx: &Transaction, role: Option<&str>, limit: i64) -> Result<i64> {
    let sql = format!(
        "SELECT count(*) FROM (SELECT 1 FROM tasks t WHERE {READY} AND (?1 IS NULL OR t.role = ?1) LIMIT ?2)"
    );
    Ok(tx
        .prepare_cached(&sql)?
        .query_row(params![role, limit], |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blocked-task query is driven by the blocked tasks, never by a walk
    /// over every task (which made `add` linear in the queue's size).
    #[test]
    fn the_blocked_query_never_scans_the_tasks() {
        let db = Db::open_in_memory().unwrap();
        // A big queue, as the planner sees it in a real file.
        let tasks: Vec<ValidTask> = (0..20_000).map(|i| new(&format!("task {i}"))).collect();
        add(&db, tasks, |i| format!("line {i}")).unwrap();
        let plan: Vec<String> = db
            .read(|tx| {
                let mut s = tx.prepare(&format!("EXPLAIN QUERY PLAN {BLOCKED_SQL}"))?;
                let rows = s
                    .query_map(params![None::<String>, 5, 5], |r| r.get::<_, String>(3))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            })
            .unwrap();
        // Each blocked task looks up its row; the queue is never walked
        // (`SCAN t`, or `SEARCH t USING … tasks_by_status`).
        assert!(
            plan.iter()
                .any(|l| l.starts_with("SEARCH t USING INTEGER PRIMARY KEY")),
            "{plan:#?}"
        );
    }

    fn new(prompt: &str) -> ValidTask {
        NewTask {
            role: Some("dev".into()),
            prompt: prompt.into(),
            ..Default::default()
        }
        .validate(None)
        .unwrap()
    }

    #[test]
    fn derives_short_descriptions() {
        assert_eq!(
            derive_description("Fix the flaky login test in CI, please."),
            "Fix the flaky login test"
        );
        assert_eq!(derive_description("Refactor."), "Refactor");
        assert_eq!(
            derive_description("Map the layout of \"src\""),
            "Map the layout of \"src\""
        );
        assert_eq!(
            derive_description("Review the diff of the last commit"),
            "Review the diff"
        );
        assert_eq!(
            derive_description("Propose how to split the module"),
            "Propose how to split"
        );
        assert_eq!(derive_description("Fix the bug"), "Fix the bug");
        assert_eq!(
            derive_description("Fix\x1b[2J the\u{9b}bug\x07 now"),
            "Fix [2J the bug now"
        );
    }

    #[test]
    fn roles_are_checked() {
        assert!(validate_role("code-reviewer").is_ok());
        for bad in ["", "../../x", ".hidden", "-rf", "a b", &"x".repeat(65)] {
            assert!(validate_role(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cycle_in_one_input_is_refused() {
        let db = Db::open_in_memory().unwrap();
        let mut a = new("a");
        a.key = Some("a".into());
        a.after = vec![Dep::Key("b".into())];
        let mut b = new("b");
        b.key = Some("b".into());
        b.after = vec![Dep::Key("a".into())];
        let err = add(&db, vec![a, b], |i| format!("line {}", i + 1)).unwrap_err();
        assert!(err.to_string().contains("cycle"), "{err}");
        assert_eq!(stats(&db).unwrap().total, 0);
    }

    #[test]
    fn keyed_dependencies_resolve_in_any_order() {
        let db = Db::open_in_memory().unwrap();
        let mut a = new("a");
        a.after = vec![Dep::Key("b".into())];
        let mut b = new("b");
        b.key = Some("b".into());
        let ids = add(&db, vec![a, b], |i| format!("line {}", i + 1)).unwrap();
        assert_eq!(get(&db, ids[0]).unwrap().after, vec![ids[1]]);
    }

    #[test]
    fn ids_are_kept_as_runs() {
        let mut ids = Ids::default();
        for id in [5, 6, 7, 20, 21, 3] {
            ids.push(id);
        }
        assert_eq!(ids.runs.len(), 3);
        assert_eq!(ids.iter().collect::<Vec<_>>(), vec![5, 6, 7, 20, 21, 3]);
        let got: Vec<Option<i64>> = (0..7).map(|i| ids.get(i)).collect();
        assert_eq!(
            got,
            vec![Some(5), Some(6), Some(7), Some(20), Some(21), Some(3), None]
        );
    }

    #[test]
    fn status_only_moves_forward() {
        let db = Db::open_in_memory().unwrap();
        let id = add(&db, vec![new("x")], |_| String::new()).unwrap()[0];
        start(&db, id, None).unwrap();
        assert!(start(&db, id, None).is_err());
        finish(
            &db,
            id,
            Outcome {
                ok: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(finish(&db, id, Outcome::default()).is_err());
        assert!(cancel(&db, &[id]).is_err());
    }
}
