//! The hooks of Claude Code's own parallel machinery.
//!
//! - Workflow agents: inside a Workflow run Claude Code fires no Agent tool
//!   events, only `SubagentStart`/`SubagentStop`. `SubagentStop` names the
//!   agent's transcript (`agent_transcript_path`), whose first user message is
//!   the prompt orch wrote, ending with its `orch-task: ID` line: that ties the
//!   agent to its task, which starts when the agent started and ends done
//!   (with its last message) or failed (nothing came back). An agent an Agent
//!   tool call started is left to the tool events, as before.
//! - `Stop` with `background_tasks`: while a workflow orch made (`orch-batch-N`)
//!   or a background agent of one of orch's tasks still runs, the hook never
//!   blocks the stop; it hands nothing over until they end.
//! - `TaskCompleted` (Claude Code's native task list): a task whose
//!   description carries an `orch-task` line ends that orch task done.
//!   `TaskCreated` changes nothing: a task in the list is not yet at work.
//! - `PostToolBatch`: when a task of the group just ended and that made tasks
//!   waiting on it ready, they are batched and handed over right there, as
//!   additional context, instead of waiting for the next stop.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use rusqlite::Transaction;
use serde::Deserialize;
use serde_json::Value;

use super::{finish_task, Outcome, SOURCE_SUBAGENT, SOURCE_TOOL};
use crate::calls;
use crate::emit;
use crate::error::Result;
use crate::task::{self, Status};

/// At most this much of a transcript is read looking for its first user message.
const TRANSCRIPT_LIMIT: u64 = 16 << 20;

/// One entry of `Stop`'s `background_tasks`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BackgroundTask {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// The text of a transcript message's `content` (a string, or text blocks).
fn content_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// The task named by the `orch-task` line of the first user message of the
/// JSON Lines transcript at `path`, if any (unreadable: none).
pub fn transcript_task(path: &Path) -> Option<i64> {
    let f = std::fs::File::open(path).ok()?;
    let mut r = BufReader::new(f.take(TRANSCRIPT_LIMIT));
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if v.get("type").and_then(Value::as_str) != Some("user") {
            continue;
        }
        let text = v
            .get("message")
            .and_then(|m| m.get("content"))
            .map(content_text)
            .unwrap_or_default();
        return emit::parse_task_marker(&text);
    }
}

/// `SubagentStop` of an agent no Agent tool call accounts for (a workflow's):
/// ties it to its task from its transcript and ends that task. The caller has
/// found no task for it through `calls::task_of` already.
pub fn workflow_agent_stop(
    tx: &Transaction,
    session: &str,
    agent_id: &str,
    transcript: Option<&str>,
    last_message: Option<&str>,
    now: i64,
) -> Result<()> {
    let Some(id) = transcript
        .filter(|p| !p.is_empty())
        .and_then(|p| transcript_task(Path::new(p)))
    else {
        return Ok(());
    };
    let Some(status) = task::find_status_in(tx, id)? else {
        return Ok(());
    };
    // An Agent tool call of this session carries the task: its events own it.
    if calls::task_has_call(tx, session, id, SOURCE_TOOL)? {
        return Ok(());
    }
    let started = calls::started_at(tx, session, agent_id)?;
    calls::tie_task(tx, session, agent_id, SOURCE_SUBAGENT, id)?;
    if matches!(status, Status::Queued | Status::Batched) {
        task::start_in(tx, id, Some(started.unwrap_or(now)))?;
    }
    let result = last_message
        .map(str::to_string)
        .filter(|s| !s.trim().is_empty());
    let outcome = match result {
        Some(text) => Outcome {
            ok: true,
            result: Some(text),
            at: Some(now),
            ..Default::default()
        },
        None => Outcome {
            ok: false,
            error: Some("the workflow agent ended without an answer".into()),
            at: Some(now),
            ..Default::default()
        },
    };
    if !outcome.ok {
        calls::set_status(tx, session, agent_id, "failed")?;
    }
    finish_task(tx, id, outcome)
}

/// Whether `background` (Stop's `background_tasks`) holds a running workflow
/// orch made or a running agent of one of orch's tasks.
pub fn orch_still_running(
    tx: &Transaction,
    session: &str,
    background: &[BackgroundTask],
) -> Result<bool> {
    for b in background {
        if !matches!(b.status.as_deref(), None | Some("running" | "pending")) {
            continue;
        }
        match b.kind.as_deref() {
            Some("workflow") => {
                if b.name
                    .as_deref()
                    .is_some_and(|n| n.starts_with("orch-batch-"))
                {
                    return Ok(true);
                }
            }
            _ => {
                let Some(id) = b.id.as_deref() else { continue };
                // A call tied to a task is one of orch's.
                if calls::task_of(tx, session, id)?.is_some() {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

/// `TaskCompleted` of a native task that mirrors orch task `id`.
pub fn native_task_completed(
    tx: &Transaction,
    id: i64,
    ev: &super::event::TaskEvent,
    now: i64,
) -> Result<()> {
    if task::find_status_in(tx, id)?.is_none() {
        return Ok(());
    }
    finish_task(
        tx,
        id,
        Outcome {
            ok: true,
            result: Some(format!(
                "completed in Claude Code's task list (task {}{})",
                ev.task_id,
                ev.task_subject
                    .as_deref()
                    .map(|s| format!(": {s}"))
                    .unwrap_or_default()
            )),
            at: Some(now),
            ..Default::default()
        },
    )
}
