//! `orch-hook`'s logic: one Claude Code hook event in, the database updated,
//! at most one JSON answer out (SPEC §8); and its installer ([`settings`]).
//!
//! What each event does:
//! - `PreToolUse` (Agent or its legacy name Task): records the call's start in
//!   `agent_calls` (session id, tool-use id, the task from the prompt's
//!   `orch-task:` line, agent type, description) and marks that task running.
//! - `PostToolUse`: by the result's `status` ([`event::Launch`]): `completed`
//!   records the end and marks the task done with the agent's text
//!   (`tool_response.content[].text`). The others have not ended and leave
//!   the task running: a background agent (`async_launched`) and a teammate
//!   (`teammate_spawned`) have their agent id remembered, so that their
//!   `SubagentStop` ends them; a remote agent (`remote_launched`) runs in a
//!   cloud session that no hook here sees, so its task stays running until
//!   it is recorded by hand (`orch-queue done|fail`). `PostToolUseFailure`
//!   marks the task failed.
//! - `PostToolBatch`: closes any completed Agent call of the group whose end
//!   was missed.
//! - `SubagentStart` / `SubagentStop`: record the sub-agent itself (source
//!   `subagent`, call id = agent id), and finish a background agent's task.
//! - `UserPromptSubmit` / `Stop`: when at least the threshold of tasks is ready,
//!   batch them and hand Claude the message (additional context, or a blocked
//!   stop; never when `stop_hook_active`).
//!
//! Repeated events change nothing (the first start and the first end win), and
//! a task that already finished is left as it is. A hook never creates a
//! database and never uses the per-user one: with no `--db`, no `ORCH_DB`
//! and no `.orch/orch.db` in or above the project, it does nothing.
//!
//! Inside an agent that orch itself started for one task (`orch-run`, the
//! script of `orch-emit --format shell`: [`TASK_ENV`] is set) the hook does
//! nothing for any event. That agent is a headless `claude -p` that fires the
//! project's hooks too: batching there would hand other tasks to a child that
//! was started for one task and exits after it, stranding them as `batched`;
//! its Agent calls are its own business, and its task's start and end are
//! recorded by whoever started it.

pub mod event;
pub mod workflow;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Transaction;
use serde_json::Value;

use crate::batch::{self, CreateRequest, DEFAULT_MAX};
use crate::calls::{self, NewCall};
use crate::claude::agents::AgentIndex;
use crate::db::{self, Db, Source};
use crate::emit;
use crate::error::{Error, Result};
use crate::task::{self, Outcome, Status};
use crate::time::now_ms;
use event::{
    AgentInput, AgentResponse, BatchEvent, Kind, Launch, Output, SubagentEvent, ToolEvent,
    TurnEvent, LAUNCHED,
};

/// How long a hook waits for the write lock: short, so a stuck database costs
/// the user's session seconds, not the 30 s other tools wait.
pub const HOOK_BUSY_TIMEOUT: Duration = Duration::from_secs(3);
/// Ready tasks that trigger a batch unless `--threshold` says otherwise.
pub const DEFAULT_THRESHOLD: usize = 3;
/// The `source` of rows recorded from Agent tool events.
pub const SOURCE_TOOL: &str = "hook";
/// The `source` of rows recorded from SubagentStart/SubagentStop.
pub const SOURCE_SUBAGENT: &str = "subagent";

/// The variable orch sets for an agent it starts for one task (its task id).
pub const TASK_ENV: &str = "ORCH_TASK_ID";

/// How the hook was configured (from its command line and environment).
#[derive(Debug, Clone)]
pub struct Config {
    pub db: Option<PathBuf>,
    pub threshold: usize,
    pub max: usize,
    /// [`TASK_ENV`]: the task of the agent this hook runs inside, when orch
    /// started that agent. The hook then stays out of the way.
    pub inside_task: Option<String>,
    /// How long a hook-tracked agent may go without its end event before it
    /// is reconciled as lost.
    pub stale_after: Duration,
}

/// The default of `--stale-after`.
pub const DEFAULT_STALE_AFTER: Duration = crate::limits::DEFAULT_STALE_AFTER;
/// The lease holder of slots taken by agents in Claude Code sessions.
pub const SLOT_HOLDER: &str = crate::limits::HOOK_SLOT_HOLDER;

impl Default for Config {
    fn default() -> Self {
        Config {
            db: None,
            threshold: DEFAULT_THRESHOLD,
            max: DEFAULT_MAX,
            inside_task: None,
            stale_after: DEFAULT_STALE_AFTER,
        }
    }
}

/// A hook's answer: nothing, or one JSON object for stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Silent,
    Print(Output),
}

fn bad(what: &str, e: serde_json::Error) -> Error {
    Error::invalid(format!("bad {what} event: {e}"))
}

/// Handles one event: `input` is the JSON Claude Code wrote on stdin, `named`
/// the event name given on the command line (else `hook_event_name`).
pub fn handle(cfg: &Config, named: Option<&str>, input: &[u8]) -> Result<Reply> {
    if cfg.inside_task.is_some() {
        return Ok(Reply::Silent);
    }
    let now = now_ms();
    let value: Value = serde_json::from_slice(input)
        .map_err(|e| Error::invalid(format!("the event on stdin is not JSON: {e}")))?;
    if !value.is_object() {
        return Err(Error::invalid("the event on stdin is not a JSON object"));
    }
    let name = match named {
        Some(n) => n.to_string(),
        None => match value.get("hook_event_name") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                return Err(Error::invalid(
                    "bad event: \"hook_event_name\" is not a string",
                ))
            }
            None => {
                return Err(Error::invalid(
                    "no event name: pass it as an argument or in \"hook_event_name\"",
                ))
            }
        },
    };
    let Some(kind) = Kind::parse(&name) else {
        return Ok(Reply::Silent);
    };
    // Read in place: the event (PostToolBatch carries every tool's output) is not copied.
    let common =
        <event::Common as serde::Deserialize>::deserialize(&value).map_err(|e| bad(&name, e))?;
    match kind {
        Kind::PreToolUse | Kind::PostToolUse | Kind::PostToolUseFailure => {
            let ev: ToolEvent = serde_json::from_value(value).map_err(|e| bad(&name, e))?;
            if !event::AGENT_TOOLS.contains(&ev.tool_name.as_str()) {
                return Ok(Reply::Silent);
            }
            let input: AgentInput = match &ev.tool_input {
                Value::Null => AgentInput::default(),
                v => serde_json::from_value(v.clone()).map_err(|e| bad(&name, e))?,
            };
            let response = match (&ev.tool_response, kind) {
                (Some(v), Kind::PostToolUse) => Some(parse_response(v).map_err(|e| bad(&name, e))?),
                _ => None,
            };
            let Some(db) = open(cfg)? else {
                return Ok(Reply::Silent);
            };
            let stale = crate::time::ms(cfg.stale_after);
            let denied = db
                .write(|tx| {
                    if kind == Kind::PreToolUse {
                        crate::limits::reconcile_stale_in(tx, now, stale)?;
                        // With `orch-queue limit` set, a launch past it waits.
                        let key = format!("{}/{}", ev.session_id, ev.tool_use_id);
                        if !crate::limits::take_slot_in(tx, SLOT_HOLDER, &key, now + stale)? {
                            let limit = crate::limits::limit_in(tx)?.unwrap_or(0);
                            return Ok(Some(format!(
                                "orch: {limit} agents are already running on this project (orch-queue limit {limit}). This call was not run: wait for a running agent to finish, then send this same Agent call again."
                            )));
                        }
                        // A pause (a usage limit, or `orch-queue pause`) starts nothing new.
                        if let Some(p) = crate::limits::paused_in(tx, now)? {
                            crate::limits::release_in(tx, SLOT_HOLDER, &key)?;
                            return Ok(Some(format!(
                                "orch: agents on this project are {}. This call was not run: send this same Agent call again after that (`orch-queue resume` ends the pause by hand).",
                                crate::limits::describe(&p)
                            )));
                        }
                    }
                    tool_event(tx, kind, &ev, &input, response.as_ref(), now)?;
                    Ok(None)
                })
                .map_err(busy)?;
            if let Some(reason) = denied {
                return Ok(Reply::Print(Output::deny(reason)));
            }
            Ok(Reply::Silent)
        }
        Kind::PostToolBatch => {
            let ev: BatchEvent = serde_json::from_value(value).map_err(|e| bad(&name, e))?;
            let mut closing = Vec::new();
            for c in &ev.tool_calls {
                if event::AGENT_TOOLS.contains(&c.tool_name.as_str()) {
                    let r = match &c.tool_response {
                        Some(v) => parse_response(v).map_err(|e| bad(&name, e))?,
                        None => AgentResponse::default(),
                    };
                    closing.push((c.tool_use_id.clone(), r));
                }
            }
            if closing.is_empty() {
                return Ok(Reply::Silent);
            }
            let Some(db) = open(cfg)? else {
                return Ok(Reply::Silent);
            };
            let message = db
                .write(|tx| {
                    let ended = batch_event(tx, &ev.session_id, &closing, now)?;
                    next_wave(tx, &ended, &common.cwd)
                })
                .map_err(busy)?;
            Ok(match message {
                Some(m) => Reply::Print(Output::context(kind, m)),
                None => Reply::Silent,
            })
        }
        Kind::SubagentStart | Kind::SubagentStop => {
            let ev: SubagentEvent = serde_json::from_value(value).map_err(|e| bad(&name, e))?;
            let Some(db) = open(cfg)? else {
                return Ok(Reply::Silent);
            };
            db.write(|tx| subagent_event(tx, kind, &ev, now))
                .map_err(busy)?;
            Ok(Reply::Silent)
        }
        Kind::TaskCreated | Kind::TaskCompleted => {
            let ev: event::TaskEvent = serde_json::from_value(value).map_err(|e| bad(&name, e))?;
            let Some(id) = ev
                .task_description
                .as_deref()
                .and_then(emit::parse_task_marker)
            else {
                return Ok(Reply::Silent);
            };
            if kind == Kind::TaskCreated {
                return Ok(Reply::Silent);
            }
            let Some(db) = open(cfg)? else {
                return Ok(Reply::Silent);
            };
            db.write(|tx| workflow::native_task_completed(tx, id, &ev, now))
                .map_err(busy)?;
            Ok(Reply::Silent)
        }
        Kind::UserPromptSubmit | Kind::Stop => {
            let ev: TurnEvent = serde_json::from_value(value).map_err(|e| bad(&name, e))?;
            if kind == Kind::Stop && ev.stop_hook_active == Some(true) {
                return Ok(Reply::Silent);
            }
            let Some(db) = open(cfg)? else {
                return Ok(Reply::Silent);
            };
            if kind == Kind::Stop
                && !ev.background_tasks.is_empty()
                && db.read(|tx| {
                    workflow::orch_still_running(tx, &ev.session_id, &ev.background_tasks)
                })?
            {
                return Ok(Reply::Silent);
            }
            let cwd = common
                .cwd
                .map(PathBuf::from)
                .filter(|p| p.is_dir())
                .or_else(|| std::env::current_dir().ok())
                .unwrap_or_default();
            let message = match auto_batch(&db, cfg, &cwd)? {
                Some(m) => m,
                None => return Ok(Reply::Silent),
            };
            Ok(Reply::Print(match kind {
                Kind::Stop => Output::block(message),
                _ => Output::context(kind, message),
            }))
        }
    }
}

/// Opens the configured database without ever creating one. `None` when orch is
/// not in use in this project: no `--db`, no `ORCH_DB` and no `.orch/orch.db`
/// here or above. The per-user database is never the hook's: with it, every
/// project's prompts and stops would be batched.
pub fn open(cfg: &Config) -> Result<Option<Db>> {
    let loc = db::resolve(cfg.db.as_deref())?;
    if loc.source == Source::User {
        return Ok(None);
    }
    if !loc.path.is_file() {
        return match loc.source {
            Source::Flag | Source::Env => Err(Error::invalid(format!(
                "no database at {} ({}); a hook never creates one: check the path, or make it with a command that writes (`orch-queue add`)",
                loc.path.display(),
                loc.source.explain()
            ))),
            Source::Project | Source::User => Ok(None),
        };
    }
    let db = Db::open(&loc.path).map_err(busy)?;
    db.set_busy_timeout(HOOK_BUSY_TIMEOUT)?;
    Ok(Some(db))
}

fn busy(e: Error) -> Error {
    match e {
        Error::Busy(_) => Error::invalid(format!(
            "database is busy: another process held the write lock for longer than {} s; nothing recorded",
            HOOK_BUSY_TIMEOUT.as_secs()
        )),
        e => e,
    }
}

/// The Agent tool's response: an object ([`AgentResponse`]), a plain string,
/// or an array of content blocks (as `PostToolBatch` passes it).
fn parse_response(v: &Value) -> std::result::Result<AgentResponse, serde_json::Error> {
    match v {
        Value::Object(_) => serde_json::from_value(v.clone()),
        Value::String(s) => Ok(AgentResponse {
            content: vec![event::ContentBlock {
                kind: Some("text".into()),
                text: Some(s.clone()),
            }],
            ..Default::default()
        }),
        Value::Array(_) => Ok(AgentResponse {
            content: serde_json::from_value(v.clone())?,
            ..Default::default()
        }),
        _ => Ok(AgentResponse::default()),
    }
}

/// The task an Agent prompt names, if that task exists here.
fn task_of(tx: &Transaction, prompt: Option<&str>) -> Result<Option<i64>> {
    let Some(id) = prompt.and_then(emit::parse_task_marker) else {
        return Ok(None);
    };
    Ok(task::find_status_in(tx, id)?.map(|_| id))
}

fn task_status(tx: &Transaction, id: i64) -> Result<Option<Status>> {
    task::find_status_in(tx, id)
}

/// Marks a task running unless it already moved on (repeated events are
/// no-ops), opening its attempt: orch-mcp's (runner `mcp`) when orch-mcp
/// handed its batch out, else the hook's.
fn start_task(tx: &Transaction, id: i64, at: i64) -> Result<()> {
    if matches!(task_status(tx, id)?, Some(Status::Queued | Status::Batched)) {
        let runner = match task::batch_of_in(tx, id)? {
            Some(b) if batch::made_by_in(tx, b)?.as_deref() == Some(crate::attempt::MCP) => {
                crate::attempt::MCP
            }
            _ => SOURCE_TOOL,
        };
        task::start_in(tx, id, Some(at))?;
        crate::attempt::begin_in(tx, id, runner, at)?;
    }
    Ok(())
}

/// Finishes a task unless it already finished (a hook does not argue).
fn finish_task(tx: &Transaction, id: i64, o: Outcome) -> Result<()> {
    finish_task_with(tx, id, o, crate::attempt::Metrics::default())
}

/// [`finish_task`], with what the Agent tool's response said the run took.
fn finish_task_with(
    tx: &Transaction,
    id: i64,
    o: Outcome,
    metrics: crate::attempt::Metrics,
) -> Result<()> {
    match task_status(tx, id)? {
        Some(s) if !s.is_final() => {
            let end = crate::attempt::End {
                ok: o.ok,
                class: (!o.ok).then_some(crate::errclass::Class::AgentError),
                error: o.error.clone(),
                exit_code: o.exit_code,
                at: o.at.unwrap_or_else(now_ms),
                metrics,
                ..Default::default()
            };
            task::finish_in(tx, id, o)?;
            crate::attempt::end_in(tx, id, SOURCE_TOOL, &end)
        }
        // Another event ended it first: what this response reports still
        // belongs to its attempt.
        Some(_) => crate::attempt::add_metrics_in(tx, id, &metrics),
        None => Ok(()),
    }
}

/// A task finished by an agent that completed, with its answer as the result.
fn completed(r: &AgentResponse, now: i64) -> Outcome {
    Outcome {
        ok: true,
        result: nonempty(r.text()),
        at: Some(now),
        ..Default::default()
    }
}

fn nonempty(s: String) -> Option<String> {
    (!s.trim().is_empty()).then_some(s)
}

fn tool_event(
    tx: &Transaction,
    kind: Kind,
    ev: &ToolEvent,
    input: &AgentInput,
    response: Option<&AgentResponse>,
    now: i64,
) -> Result<()> {
    let task_id = task_of(tx, input.prompt.as_deref())?;
    let mut call = NewCall {
        session: &ev.session_id,
        call_id: &ev.tool_use_id,
        source: SOURCE_TOOL,
        task_id,
        agent_type: Some(input.subagent_type.as_deref().unwrap_or("general-purpose")),
        description: input.description.as_deref(),
        started_at: None,
        finished_at: None,
        status: None,
    };
    match kind {
        Kind::PreToolUse => {
            call.started_at = Some(now);
            call.status = Some("running");
            calls::record(tx, &call)?;
            if let Some(id) = task_id {
                start_task(tx, id, now)?;
            }
        }
        Kind::PostToolUseFailure => {
            free_slot(tx, &ev.session_id, &ev.tool_use_id, None)?;
            let duration = ev.duration_ms.map(|d| i64::try_from(d).unwrap_or(i64::MAX));
            call.started_at = duration.map(|d| now - d);
            call.finished_at = Some(now);
            call.status = Some("failed");
            calls::record(tx, &call)?;
            let task_id = calls::task_of(tx, &ev.session_id, &ev.tool_use_id)?.or(task_id);
            if let Some(id) = task_id {
                let error = match (&ev.error, ev.is_interrupt) {
                    (_, Some(true)) => "the agent was interrupted".to_string(),
                    (Some(e), _) => e.clone(),
                    (None, _) => "the agent call failed".to_string(),
                };
                finish_task(
                    tx,
                    id,
                    Outcome {
                        ok: false,
                        error: Some(error),
                        at: Some(now),
                        ..Default::default()
                    },
                )?;
            }
        }
        _ => {
            let r = response.cloned().unwrap_or_default();
            let launch = r.launch();
            let launched = launch != Launch::Completed;
            if launched {
                // A background agent holds its slot until its SubagentStop.
                if let Some(agent) = &r.agent_id {
                    crate::limits::rekey_in(
                        tx,
                        SLOT_HOLDER,
                        &format!("{}/{}", ev.session_id, ev.tool_use_id),
                        &format!("{}/{}", ev.session_id, agent),
                    )?;
                }
            } else {
                free_slot(tx, &ev.session_id, &ev.tool_use_id, r.agent_id.as_deref())?;
            }
            let duration = ev
                .duration_ms
                .or(r.total_duration_ms)
                .map(|d| i64::try_from(d).unwrap_or(i64::MAX));
            call.started_at = duration.map(|d| now - d).or(Some(now));
            call.status = Some(launch.call_status());
            if !launched {
                call.finished_at = Some(now);
            }
            calls::record(tx, &call)?;
            let task_id = calls::task_of(tx, &ev.session_id, &ev.tool_use_id)?.or(task_id);
            if let (Some(agent), Some(id)) = (&r.agent_id, task_id) {
                // Tie the sub-agent to the task, so its SubagentStop can finish a background one.
                calls::tie_task(tx, &ev.session_id, agent, SOURCE_SUBAGENT, id)?;
                if launched {
                    calls::record(
                        tx,
                        &NewCall {
                            session: &ev.session_id,
                            call_id: agent,
                            source: SOURCE_SUBAGENT,
                            task_id: Some(id),
                            agent_type: call.agent_type,
                            description: call.description,
                            started_at: None,
                            finished_at: None,
                            status: Some("running"),
                        },
                    )?;
                }
            }
            if let Some(id) = task_id {
                let metrics = ev
                    .tool_response
                    .as_ref()
                    .map(crate::attempt::Metrics::from_agent_response)
                    .unwrap_or_default();
                if launched {
                    start_task(tx, id, call.started_at.unwrap_or(now))?;
                    // A background agent's launch names its model (and its
                    // agent id); its tokens never reach a hook.
                    crate::attempt::add_metrics_in(tx, id, &metrics)?;
                } else {
                    finish_task_with(tx, id, completed(&r, now), metrics)?;
                }
            }
        }
    }
    Ok(())
}

/// Closes the Agent calls of a resolved group whose `PostToolUse` never came.
fn batch_event(
    tx: &Transaction,
    session: &str,
    calls: &[(String, AgentResponse)],
    now: i64,
) -> Result<Vec<i64>> {
    let mut ended = Vec::new();
    for (call_id, r) in calls {
        let open = calls::open_call(tx, session, call_id)?;
        let Some((task_id, status)) = open else {
            continue;
        };
        if status.as_deref().is_some_and(|s| LAUNCHED.contains(&s)) {
            continue;
        }
        if r.launch() != Launch::Completed {
            calls::set_status(tx, session, call_id, r.launch().call_status())?;
            continue;
        }
        calls::finish(tx, session, call_id, now, "done")?;
        if let Some(id) = task_id {
            finish_task(tx, id, completed(r, now))?;
        }
    }
    // Every task of the group's Agent calls that has ended by now.
    for (call_id, _) in calls {
        if let Some(id) = calls::task_of(tx, session, call_id)? {
            if task_status(tx, id)?.is_some_and(|s| s.is_final()) && !ended.contains(&id) {
                ended.push(id);
            }
        }
    }
    Ok(ended)
}

/// PostToolBatch's hand-over: the tasks that `ended` made ready, batched,
/// and the message that launches them.
fn next_wave(tx: &Transaction, ended: &[i64], cwd: &Option<String>) -> Result<Option<String>> {
    let ready = task::ready_after_in(tx, ended)?;
    if ready.is_empty() {
        return Ok(None);
    }
    let b = batch::create_of_in(tx, &ready)?;
    let dir = cwd
        .as_deref()
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_default();
    let e = emit::launch_in(tx, b, &AgentIndex::discover(&dir))?;
    Ok(Some(format!(
        "orch: the tasks that waited on the agents that just ended are ready and were put in batch {}. Launch them now, in parallel, as described below.\n\n{}",
        e.batch,
        e.render(emit::Format::Claude)
    )))
}

/// Gives back the slot of a finished Agent call: its own, unless the
/// agent's SubagentStop already gave one back.
fn free_slot(tx: &Transaction, session: &str, call: &str, agent: Option<&str>) -> Result<()> {
    if let Some(a) = agent {
        if calls::ended(tx, session, a, SOURCE_SUBAGENT)? {
            return Ok(());
        }
    }
    crate::limits::release_in(tx, SLOT_HOLDER, &format!("{session}/{call}"))?;
    Ok(())
}

/// SubagentStop: the agent's slot is free (its own when it was a background
/// agent, else the session's oldest: the Agent call's PostToolUse, which
/// names the agent, comes after).
fn stop_slot(tx: &Transaction, session: &str, agent: &str) -> Result<()> {
    if crate::limits::release_in(tx, SLOT_HOLDER, &format!("{session}/{agent}"))? {
        return Ok(());
    }
    crate::limits::release_oldest_in(tx, SLOT_HOLDER, &format!("{session}/"))
}

fn subagent_event(tx: &Transaction, kind: Kind, ev: &SubagentEvent, now: i64) -> Result<()> {
    let start = kind == Kind::SubagentStart;
    if !start && !calls::ended(tx, &ev.session_id, &ev.agent_id, SOURCE_SUBAGENT)? {
        stop_slot(tx, &ev.session_id, &ev.agent_id)?;
    }
    calls::record(
        tx,
        &NewCall {
            session: &ev.session_id,
            call_id: &ev.agent_id,
            source: SOURCE_SUBAGENT,
            task_id: None,
            agent_type: ev.agent_type.as_deref(),
            description: None,
            started_at: Some(now),
            finished_at: (!start).then_some(now),
            status: Some(if start { "running" } else { "done" }),
        },
    )?;
    if start {
        return Ok(());
    }
    // A background agent: its task and its launched Agent call end now.
    let Some(id) = calls::task_of(tx, &ev.session_id, &ev.agent_id)? else {
        // No Agent call accounts for it: a workflow's agent, tied by its transcript.
        return workflow::workflow_agent_stop(
            tx,
            &ev.session_id,
            &ev.agent_id,
            ev.agent_transcript_path.as_deref(),
            ev.last_assistant_message.as_deref(),
            now,
        );
    };
    calls::finish_launched(tx, &ev.session_id, id, SOURCE_TOOL, now)?;
    let result = ev.last_assistant_message.clone().and_then(nonempty);
    finish_task(
        tx,
        id,
        Outcome {
            ok: true,
            result,
            at: Some(now),
            ..Default::default()
        },
    )
}

/// Batches the ready tasks when there are at least `cfg.threshold`, and returns
/// the message that launches them.
pub fn auto_batch(db: &Db, cfg: &Config, cwd: &Path) -> Result<Option<String>> {
    let req = CreateRequest {
        // Claude Code refuses sub-agents past its cap: never a bigger batch.
        max: cfg.max.max(1).min(crate::limits::claude_cap().0),
        min: cfg.threshold.max(1),
        role: None,
        stale_after: Some(cfg.stale_after),
        made_by: None,
    };
    let made = db
        .write(|tx| match batch::create_in(tx, &req)? {
            // The agent definitions are read only when a batch is made (rare),
            // not on every prompt and stop.
            Ok(b) => emit::launch_in(tx, b, &AgentIndex::discover(cwd)).map(Some),
            Err(_) => Ok(None),
        })
        .map_err(busy)?;
    let Some(e) = made else { return Ok(None) };
    let n = e.calls.len();
    Ok(Some(format!(
        "orch: {n} queued tasks are ready and were put in batch {}. Launch them now, in parallel, as described below.\n\n{}",
        e.batch,
        e.render(emit::Format::Claude)
    )))
}
