//! Claude Code's native task list: one JSON file per task in
//! `<config>/tasks/<listId>/<n>.json` (`<config>` is `CLAUDE_CONFIG_DIR`, else
//! `~/.claude`), with `.lock` and `.highwatermark` beside them.
//!
//! `orch-queue export --claude-tasks LIST` mirrors orch's unfinished tasks
//! there (their dependencies as `blockedBy`, each description ending with the
//! task's `orch-task: ID` line, `metadata.orch_task` naming it), and
//! `orch-queue import --claude-tasks LIST` reads the statuses back. Both take
//! the list's lock the way Claude Code does (a `.lock.lock` directory made by
//! `mkdir`, retried with backoff, stale after 10 s), refuse a list that holds a
//! malformed task file before writing anything, and are idempotent: a task
//! already mirrored is not mirrored again.

use std::collections::{BTreeMap, HashMap};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rusqlite::Transaction;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::task::{self, Outcome, Status, Task};
use crate::task::{parse_task_marker, task_marker};

/// How many times the lock is tried, and the backoff between tries (Claude
/// Code's: 30 retries, 5 ms doubling to 100 ms).
const LOCK_RETRIES: u32 = 30;
const LOCK_MIN: Duration = Duration::from_millis(5);
const LOCK_MAX: Duration = Duration::from_millis(100);
/// A lock directory older than this was left by a process that died.
const LOCK_STALE: Duration = Duration::from_secs(10);

/// One task file, as Claude Code's schema has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaudeTask {
    pub id: String,
    pub subject: String,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub active_form: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub owner: Option<String>,
    pub status: String,
    pub blocks: Vec<String>,
    pub blocked_by: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub metadata: Option<Map<String, Value>>,
}

impl ClaudeTask {
    /// The orch task this file mirrors: `metadata.orch_task`, else the
    /// description's `orch-task` line.
    pub fn orch_task(&self) -> Option<i64> {
        self.metadata
            .as_ref()
            .and_then(|m| m.get("orch_task"))
            .and_then(Value::as_i64)
            .or_else(|| parse_task_marker(&self.description))
    }
}

/// Claude Code's user directory, where its task lists are: [`super::user_dir`].
pub fn config_dir() -> Result<PathBuf> {
    super::user_dir().ok_or_else(|| {
        Error::invalid(
            "neither CLAUDE_CONFIG_DIR nor HOME is set: cannot find Claude Code's task lists",
        )
    })
}

/// The directory of list `list`: its name with every character other than
/// ASCII letters, digits, `_` and `-` made `-`, as Claude Code does.
pub fn list_dir(config: &Path, list: &str) -> Result<PathBuf> {
    if list.is_empty() {
        return Err(Error::invalid("the task list name is empty"));
    }
    let safe: String = list
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    Ok(config.join("tasks").join(safe))
}

fn io<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        path: path.to_path_buf(),
        what,
        source,
    }
}

/// A held lock: the directory is removed when dropped.
pub struct Lock {
    dir: PathBuf,
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Takes the lock directory `dir` the way Claude Code's lock does: `mkdir`,
/// retried with backoff while another holder has it, taken over once when it
/// is older than 10 s.
pub fn lock_dir(dir: &Path) -> Result<Lock> {
    let mut delay = LOCK_MIN;
    let mut took_over = false;
    for attempt in 0..=LOCK_RETRIES {
        match std::fs::create_dir(dir) {
            Ok(()) => {
                return Ok(Lock {
                    dir: dir.to_path_buf(),
                })
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let stale = std::fs::metadata(dir)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .is_some_and(|age| age > LOCK_STALE);
                if stale && !took_over {
                    took_over = true;
                    let _ = std::fs::remove_dir(dir);
                    continue;
                }
                if attempt < LOCK_RETRIES {
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(LOCK_MAX);
                }
            }
            Err(e) => return Err(io(dir, "make the lock directory")(e)),
        }
    }
    Err(Error::invalid(format!(
        "{} is held by another process (Claude Code is writing the task list); nothing changed, try again",
        dir.display()
    )))
}

/// Takes the list lock of `dir` (its `.lock` anchor made when missing).
pub fn lock_list(dir: &Path) -> Result<Lock> {
    std::fs::create_dir_all(dir).map_err(io(dir, "make the directory"))?;
    let anchor = dir.join(".lock");
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&anchor)
    {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(&anchor, "create")(e)),
    }
    lock_dir(&dir.join(".lock.lock"))
}

/// The task files of a list, by number; any that is not a task Claude Code's
/// schema accepts is refused.
pub fn read_list(dir: &Path) -> Result<BTreeMap<u64, ClaudeTask>> {
    let mut out = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(dir, "read")(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io(dir, "read"))?;
        let name = entry.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let path = entry.path();
        let bytes = std::fs::read(&path).map_err(io(&path, "read"))?;
        let t: ClaudeTask = serde_json::from_slice(&bytes).map_err(|e| {
            Error::invalid(format!(
                "{} is not a task file Claude Code can read ({e}); nothing changed, the file is left untouched",
                path.display()
            ))
        })?;
        if !matches!(t.status.as_str(), "pending" | "in_progress" | "completed") {
            return Err(Error::invalid(format!(
                "{}: unknown status {:?}; nothing changed, the file is left untouched",
                path.display(),
                t.status
            )));
        }
        out.insert(n, t);
    }
    Ok(out)
}

fn high_water(dir: &Path) -> Result<u64> {
    let path = dir.join(".highwatermark");
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(s.trim().parse().unwrap_or(0)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io(&path, "read")(e)),
    }
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    // The task's text is a prompt: the owner's only, as the database is.
    crate::atomic::write(path, text.as_bytes(), crate::atomic::Access::Private)
}

fn render(t: &ClaudeTask) -> String {
    serde_json::to_string_pretty(t).unwrap_or_default()
}

/// What an export did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Exported {
    pub dir: PathBuf,
    /// (orch task, Claude Code task id) of every task mirrored now.
    pub added: Vec<(i64, String)>,
    /// orch tasks that were already in the list.
    pub already: Vec<i64>,
}

fn subject(t: &Task) -> String {
    let s = if t.description.trim().is_empty() {
        t.prompt.lines().next().unwrap_or("").to_string()
    } else {
        t.description.clone()
    };
    s.chars().take(200).collect()
}

/// Mirrors `tasks` (orch's unfinished tasks) into the list at `dir`, under its
/// lock; all or nothing.
pub fn export(dir: &Path, tasks: &[Task]) -> Result<Exported> {
    let _lock = lock_list(dir)?;
    let existing = read_list(dir)?;
    let mut claude_id: HashMap<i64, String> = HashMap::new();
    let mut already = Vec::new();
    for (n, t) in &existing {
        if let Some(o) = t.orch_task() {
            claude_id.entry(o).or_insert_with(|| n.to_string());
        }
    }
    let mut next = existing
        .keys()
        .next_back()
        .copied()
        .unwrap_or(0)
        .max(high_water(dir)?)
        + 1;
    let mut new: Vec<(u64, i64, ClaudeTask)> = Vec::new();
    for t in tasks {
        if claude_id.contains_key(&t.id) {
            already.push(t.id);
            continue;
        }
        claude_id.insert(t.id, next.to_string());
        let mut meta = Map::new();
        meta.insert("orch_task".into(), Value::from(t.id));
        let status = match t.status {
            Status::Running => "in_progress",
            _ => "pending",
        };
        new.push((
            next,
            t.id,
            ClaudeTask {
                id: next.to_string(),
                subject: subject(t),
                description: format!(
                    "{}\n\n{}",
                    t.prompt.trim_end_matches(['\n', '\r']),
                    task_marker(t.id)
                ),
                active_form: None,
                owner: None,
                status: status.into(),
                blocks: Vec::new(),
                blocked_by: Vec::new(),
                metadata: Some(meta),
            },
        ));
        next += 1;
    }
    // Dependencies: blockedBy on the new task, blocks on what it waits on.
    let by_orch: HashMap<i64, &Task> = tasks.iter().map(|t| (t.id, t)).collect();
    let mut blocks_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, orch, ct) in new.iter_mut() {
        if let Some(t) = by_orch.get(orch) {
            for a in &t.after {
                if let Some(cid) = claude_id.get(a) {
                    ct.blocked_by.push(cid.clone());
                    blocks_of
                        .entry(cid.clone())
                        .or_default()
                        .push(ct.id.clone());
                }
            }
        }
    }
    for (_, _, ct) in new.iter_mut() {
        if let Some(b) = blocks_of.remove(&ct.id) {
            ct.blocks.extend(b);
        }
    }
    // Existing tasks that new ones wait on get them in `blocks`, each under
    // its own task lock, as Claude Code updates a task.
    let mut updates: Vec<(u64, ClaudeTask)> = Vec::new();
    for (cid, b) in blocks_of {
        let Ok(n) = cid.parse::<u64>() else { continue };
        if let Some(t) = existing.get(&n) {
            let mut t = t.clone();
            for x in b {
                if !t.blocks.contains(&x) {
                    t.blocks.push(x);
                }
            }
            updates.push((n, t));
        }
    }
    let mut written: Vec<PathBuf> = Vec::new();
    let result = (|| -> Result<()> {
        for (n, _, ct) in &new {
            let path = dir.join(format!("{n}.json"));
            write_file(&path, &render(ct))?;
            written.push(path);
        }
        for (n, t) in &updates {
            let _task_lock = lock_dir(&dir.join(format!("{n}.json.lock")))?;
            write_file(&dir.join(format!("{n}.json")), &render(t))?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        for p in written {
            let _ = std::fs::remove_file(p);
        }
        return Err(e);
    }
    Ok(Exported {
        dir: dir.to_path_buf(),
        added: new.into_iter().map(|(_, o, ct)| (o, ct.id)).collect(),
        already,
    })
}

/// What an import did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Imported {
    pub done: Vec<i64>,
    pub started: Vec<i64>,
    pub unchanged: Vec<i64>,
}

/// Reads the list at `dir` (under its lock) and applies the statuses of the
/// tasks that mirror orch's to them, inside `tx`: `completed` ends a task
/// done, `in_progress` starts it. Tasks already finished are left as they are.
pub fn import_in(tx: &Transaction, dir: &Path) -> Result<Imported> {
    let list = {
        let _lock = lock_list(dir)?;
        read_list(dir)?
    };
    let mut out = Imported::default();
    for t in list.values() {
        let Some(id) = t.orch_task() else { continue };
        let Some(status) = task::find_status_in(tx, id)? else {
            continue;
        };
        match (t.status.as_str(), status) {
            ("completed", s) if !s.is_final() => {
                task::finish_in(
                    tx,
                    id,
                    Outcome {
                        ok: true,
                        result: Some(format!(
                            "completed in Claude Code's task list (task {})",
                            t.id
                        )),
                        ..Default::default()
                    },
                )?;
                out.done.push(id);
            }
            ("in_progress", Status::Queued | Status::Batched) => {
                task::start_in(tx, id, None)?;
                out.started.push(id);
            }
            _ => out.unchanged.push(id),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_names_are_made_safe() {
        let d = list_dir(Path::new("/c"), "my team/../x").unwrap();
        assert_eq!(d, Path::new("/c/tasks/my-team----x"));
        assert!(list_dir(Path::new("/c"), "").is_err());
    }
}
