//! The four tools: their definitions as `tools/list` shows them, and what a
//! `tools/call` of each does to the queue.

use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::protocol::{RpcResult, INTERNAL_ERROR, INVALID_PARAMS};
use super::{State, MAX_RESULT_CHARS};
use crate::batch::{self, CreateRequest, DEFAULT_MAX};
use crate::claude::agents::AgentIndex;
use crate::emit::{self, JsonBatch};
use crate::task::{self, Dep, NewTask, Status};

/// A tool as `tools/list` describes it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolDef {
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub input_schema: Value,
    pub output_schema: Value,
    pub annotations: Annotations,
}

/// Hints for clients (MCP tool annotations).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Annotations {
    pub title: &'static str,
    pub read_only_hint: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destructive_hint: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotent_hint: Option<bool>,
    pub open_world_hint: bool,
}

impl Annotations {
    fn writes(title: &'static str) -> Annotations {
        Annotations {
            title,
            read_only_hint: false,
            destructive_hint: Some(false),
            idempotent_hint: Some(false),
            open_world_hint: false,
        }
    }

    fn reads(title: &'static str) -> Annotations {
        Annotations {
            title,
            read_only_hint: true,
            destructive_hint: None,
            idempotent_hint: None,
            open_world_hint: false,
        }
    }
}

pub const QUEUE_TOOL: &str = "queue_parallel_task";
pub const EXECUTE_TOOL: &str = "execute_parallel_batch";
pub const QUEUE_STATUS_TOOL: &str = "queue_status";
pub const BATCH_STATUS_TOOL: &str = "batch_status";

/// A tool's arguments, described as they are read.
struct Input<T>(std::marker::PhantomData<T>);
/// A tool's structured result, described as it is written.
struct Output<T>(std::marker::PhantomData<T>);

trait Described {
    fn settings() -> SchemaSettings;
    fn schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema;
}

impl<T: JsonSchema> Described for Input<T> {
    fn settings() -> SchemaSettings {
        SchemaSettings::draft2020_12()
    }
    fn schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(g)
    }
}

impl<T: JsonSchema> Described for Output<T> {
    fn settings() -> SchemaSettings {
        SchemaSettings::draft2020_12().for_serialize()
    }
    fn schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(g)
    }
}

/// The JSON Schema of a tool's arguments or result, derived from the serde
/// struct that reads or writes them: every subschema inline (no `$defs`),
/// without `$schema`, titles or formats, which clients do not need.
fn schema<D: Described>() -> Value {
    let mut g = D::settings()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .into_generator();
    let mut v = D::schema(&mut g).to_value();
    strip(&mut v, true);
    v
}

/// Drops what a derived schema says beyond the contract clients were given:
/// titles, integer formats and bounds of i64, the doc comments of Rust types
/// (descriptions of whole types; those given to fields stay), `null` defaults;
/// and gives an object without properties an empty `properties`.
fn strip(v: &mut Value, root: bool) {
    match v {
        Value::Object(m) => {
            m.remove("title");
            m.remove("format");
            m.remove("$schema");
            if root || m.contains_key("enum") {
                m.remove("description");
            }
            // An optional argument's default is its absence, not null.
            if m.get("default") == Some(&Value::Null) {
                m.remove("default");
            }
            if root && m.get("type") == Some(&json!("object")) && !m.contains_key("properties") {
                m.insert("properties".into(), json!({}));
            }
            if m.get("type") == Some(&json!("integer")) {
                // schemars bounds i64 by its range; the contract has no such bounds.
                for k in ["minimum", "maximum"] {
                    if m.get(k)
                        .and_then(Value::as_f64)
                        .is_some_and(|x| x.abs() > 1e15)
                    {
                        m.remove(k);
                    }
                }
            }
            if let Some(Value::Object(props)) = m.get_mut("properties") {
                for p in props.values_mut() {
                    strip(p, false);
                }
            }
            if let Some(items) = m.get_mut("items") {
                strip(items, true);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| strip(x, false)),
        _ => {}
    }
}

/// The four tools, with the descriptions the model reads.
pub fn tools() -> Vec<ToolDef> {
    vec![
        ToolDef {
            name: QUEUE_TOOL,
            title: "Queue a parallel agent task",
            description: "Queue one task for a Claude Code sub-agent; it will be launched later, in parallel \
with the other queued tasks. Call this once per task, then call execute_parallel_batch ONCE to launch every \
ready task at the same time. Nothing runs until then. Returns the new task's id and how many tasks are ready.",
            input_schema: schema::<Input<QueueArgs>>(),
            output_schema: schema::<Output<Queued>>(),
            annotations: Annotations::writes("Queue a parallel agent task"),
        },
        ToolDef {
            name: EXECUTE_TOOL,
            title: "Launch the ready tasks in parallel",
            description: "Claim the ready tasks (at most max, highest priority first) into one batch and return \
the message that launches them: one Agent tool call input per task, as JSON. You must then send ALL of those \
Agent calls in ONE assistant message, each object used unchanged as the input of one Agent call, with no other \
tool call or text in that message, and wait for all of them: Agent calls sent in separate messages run one after \
another, not in parallel. Each task is handed out once; a later call batches only tasks that became ready since. \
Returns an error result when no task is ready.",
            input_schema: schema::<Input<ExecuteArgs>>(),
            output_schema: schema::<Output<Launch<'static>>>(),
            annotations: Annotations::writes("Launch the ready tasks in parallel"),
        },
        ToolDef {
            name: QUEUE_STATUS_TOOL,
            title: "Queue status",
            description: "Read-only. Count the tasks by status (queued, ready, batched, running, done, failed, \
cancelled, landed) and list the ready ones: what execute_parallel_batch would take next. Changes nothing.",
            input_schema: schema::<Input<NoArgs>>(),
            output_schema: schema::<Output<QueueStatus>>(),
            annotations: Annotations::reads("Queue status"),
        },
        ToolDef {
            name: BATCH_STATUS_TOOL,
            title: "Batch status",
            description: "Read-only. Show one batch: each task's status (batched, running, done, failed, \
cancelled, landed), start and end time, and its result or error (clipped to 4000 characters), as recorded by orch's \
hooks or orch-queue. Changes nothing.",
            input_schema: schema::<Input<BatchArgs>>(),
            output_schema: schema::<Output<BatchStatus>>(),
            annotations: Annotations::reads("Batch status"),
        },
    ]
}

/// A `tools/call` result.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallResult {
    pub content: Vec<TextContent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub structured_content: Option<Value>,
    pub is_error: bool,
}

/// A text content block.
#[derive(Debug, Clone, Serialize)]
pub struct TextContent {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub text: String,
}

impl CallResult {
    fn ok(text: String, structured: impl Serialize) -> Result<CallResult, String> {
        let structured = serde_json::to_value(structured)
            .map_err(|e| format!("cannot encode the result: {e}"))?;
        Ok(CallResult {
            content: vec![TextContent { kind: "text", text }],
            structured_content: Some(structured),
            is_error: false,
        })
    }

    fn failed(text: String) -> CallResult {
        CallResult {
            content: vec![TextContent { kind: "text", text }],
            structured_content: None,
            is_error: true,
        }
    }
}

pub(super) fn call(state: &mut State, params: &Map<String, Value>) -> RpcResult {
    let Some(name) = params.get("name").and_then(Value::as_str) else {
        return Err((
            INVALID_PARAMS,
            "Invalid params: tools/call needs \"name\" (a string)".into(),
        ));
    };
    let args = match params.get("arguments") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(a)) => a.clone(),
        Some(_) => {
            return Err((
                INVALID_PARAMS,
                format!("Invalid params: the arguments of {name} must be an object"),
            ))
        }
    };
    let outcome = match name {
        QUEUE_TOOL => args_for(name, args).and_then(|a| queue_task(state, a)),
        EXECUTE_TOOL => args_for(name, args).and_then(|a| execute_batch(state, a)),
        QUEUE_STATUS_TOOL => args_for(name, args).and_then(|a| queue_status(state, a)),
        BATCH_STATUS_TOOL => args_for(name, args).and_then(|a| batch_status(state, a)),
        _ => {
            let known: Vec<&str> = tools().iter().map(|t| t.name).collect();
            return Err((
                INVALID_PARAMS,
                format!(
                    "Unknown tool: {name} (this server has {})",
                    known.join(", ")
                ),
            ));
        }
    };
    let result = outcome.unwrap_or_else(|text| {
        state.note(&format!("{name}: {text}"));
        CallResult::failed(text)
    });
    serde_json::to_value(result).map_err(|e| (INTERNAL_ERROR, e.to_string()))
}

/// Decodes a tool's arguments; a wrong or missing one is the tool's own failure.
fn args_for<T: serde::de::DeserializeOwned>(
    tool: &str,
    args: Map<String, Value>,
) -> Result<T, String> {
    serde_json::from_value(Value::Object(args))
        .map_err(|e| format!("bad arguments for {tool}: {e}"))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct QueueArgs {
    #[schemars(
        description = "The sub-agent type that does the task: one defined in a .claude/agents/ file (with a name and a description), or a built-in one (general-purpose, Explore, Plan, statusline-setup, claude); names match ignoring case, spaces, dashes and underscores. 1-64 of A-Z a-z 0-9 _ . - ; an unknown type runs as general-purpose with the name given in its prompt.",
        regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
    )]
    agent: String,
    #[schemars(
        description = "The complete, self-contained instructions for the agent: it sees nothing else of this conversation. At most 1 MiB.",
        length(min = 1)
    )]
    task: String,
    #[serde(default)]
    #[schemars(
        with = "String",
        description = "3-5 words summing up the task, shown while the agent runs. Default: the task's first words.",
        length(max = task::MAX_DESCRIPTION)
    )]
    description: Option<String>,
    #[serde(default)]
    #[schemars(
        with = "i64",
        description = "Higher goes first when more tasks are ready than one batch takes. Default 0."
    )]
    priority: Option<i64>,
    #[serde(default)]
    #[schemars(
        with = "Vec<i64>",
        inner(range(min = 1)),
        description = "Ids of existing tasks that must be done before this one becomes ready."
    )]
    after: Option<Vec<i64>>,
    #[serde(default)]
    #[schemars(
        with = "String",
        description = "The model the sub-agent runs on: sonnet, opus, haiku or fable. Default: the session's."
    )]
    model: Option<String>,
    #[serde(default)]
    #[schemars(
        with = "String",
        description = "worktree (the sub-agent works in its own git worktree) or remote."
    )]
    isolation: Option<String>,
    #[serde(default)]
    #[schemars(
        with = "bool",
        description = "Launch the sub-agent in the background (run_in_background)."
    )]
    background: Option<bool>,
    #[serde(default)]
    #[schemars(
        with = "String",
        description = "A name SendMessage can address the agent by (1-64 of A-Z a-z 0-9 _ . -)."
    )]
    name: Option<String>,
    #[serde(default)]
    #[schemars(
        with = "String",
        description = "The sub-agent's permission mode: acceptEdits, auto, bypassPermissions, default, dontAsk or plan."
    )]
    mode: Option<String>,
    #[serde(default)]
    #[schemars(
        description = "Globs of the paths the task expects to change; tasks whose globs overlap never share a batch."
    )]
    touches: Vec<String>,
}

/// `queue_parallel_task`'s structured result. Claude Code shows the model only
/// the structured content of a result that has one, so what to do next is in it.
#[derive(Debug, Serialize, JsonSchema)]
struct Queued {
    #[schemars(description = "The new task's id")]
    task: i64,
    #[schemars(description = "How many tasks are ready to launch now")]
    ready: i64,
    #[schemars(description = "What to do next")]
    next: String,
}

fn plural(n: i64, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

fn queue_task(state: &mut State, a: QueueArgs) -> Result<CallResult, String> {
    let after = a.after.unwrap_or_default();
    let valid = NewTask {
        role: Some(a.agent),
        prompt: a.task,
        description: a.description,
        priority: a.priority,
        after: after.iter().copied().map(Dep::Id).collect(),
        key: None,
        model: a.model,
        isolation: a.isolation,
        background: a.background,
        name: a.name,
        mode: a.mode,
        touches: a.touches,
    }
    .validate(None)
    .map_err(|e| e.to_string())?;
    let role = valid.role.clone();
    let description = valid.description.clone();
    let named = valid.agent.name.is_some();
    let db = state.db()?;
    let id = task::add(db, vec![valid], |_| "task".into()).map_err(|e| e.to_string())?[0];
    let ready = db
        .read(|tx| task::count_ready_in(tx, None))
        .map_err(|e| e.to_string())?;
    let mut text = format!("Queued task {id} (agent {role}: {description:?}).");
    if !after.is_empty() {
        let ids: Vec<String> = after.iter().map(|i| i.to_string()).collect();
        text.push_str(&format!(
            " It becomes ready once task {} is done.",
            ids.join(", ")
        ));
        // Best effort: the task is queued whatever this finds.
        if let Some(b) = task::blocked(db, None, Some((id, id)))
            .ok()
            .and_then(|b| b.into_iter().next())
        {
            let status = task::get(db, b.behind)
                .map(|t| t.status.as_str())
                .unwrap_or("gone");
            text.push_str(&format!(
                " But it can never become ready: it waits for task {}, which is {status}.",
                b.behind
            ));
        }
    }
    let mut next = format!(
        "{} ready to launch. Queue every task first, then call {EXECUTE_TOOL} once to launch them all in parallel.",
        plural(ready, "task")
    );
    if named {
        next.push_str(&format!(
            " Task {id} sets `name`: {}.",
            crate::emit::NAME_SPAWNS_TEAMMATE
        ));
    }
    text.push(' ');
    text.push_str(&next);
    CallResult::ok(
        text,
        Queued {
            task: id,
            ready,
            next,
        },
    )
}

/// `execute_parallel_batch`'s structured result: the instruction (Claude Code
/// shows the model only this JSON, not the text content) and the batch.
#[derive(Debug, Serialize, JsonSchema)]
struct Launch<'a> {
    #[schemars(description = "How to launch the calls: follow it")]
    instruction: String,
    #[serde(flatten)]
    batch: JsonBatch<'a>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ExecuteArgs {
    #[serde(default)]
    #[schemars(
        with = "i64",
        range(min = 1),
        extend("default" = DEFAULT_MAX),
        description = "At most this many tasks in the batch (default 10, a size that is easy to review)."
    )]
    max: Option<i64>,
}

fn execute_batch(state: &mut State, a: ExecuteArgs) -> Result<CallResult, String> {
    let max = a.max.unwrap_or(DEFAULT_MAX as i64);
    if max < 1 {
        return Err(format!(
            "bad arguments for {EXECUTE_TOOL}: max must be at least 1 (got {max})"
        ));
    }
    let cwd = state.cwd.clone();
    let req = CreateRequest {
        max: max as usize,
        stale_after: Some(state.stale_after),
        // Its tasks' attempts are orch-mcp's (runner `mcp`), recorded as the hook sees them run.
        made_by: Some(crate::attempt::MCP),
        ..Default::default()
    };
    let agents = AgentIndex::discover(&cwd);
    let db = state.db()?;
    // Runners whose lease expired are taken over first, as every batching path does.
    let (made, back) = db
        .write(|tx| {
            let (made, back) = batch::create_reclaiming_in(tx, &req)?;
            let launched = match made {
                Ok(b) => Some(emit::launch_in(tx, b, &agents)?),
                Err(_) => None,
            };
            Ok((launched, back))
        })
        .map_err(|e| e.to_string())?;
    let note = back.describe();
    if !note.is_empty() {
        state.note(&format!("note: {note}"));
    }
    let db = state.db()?;
    let Some(e) = made else {
        let s = task::stats(db).map_err(|e| e.to_string())?;
        return Err(if s.queued > 0 {
            format!(
                "Nothing to launch: no task is ready ({} wait for tasks that are not done yet).",
                plural(s.queued, "queued task")
            )
        } else {
            format!("Nothing to launch: no task is queued. Queue tasks with {QUEUE_TOOL} first.")
        });
    };
    // One note per task (README shows them), not one per role.
    for n in &e.task_notes {
        state.note(&format!("note: {n}"));
    }
    CallResult::ok(
        e.render(emit::Format::Claude),
        Launch {
            instruction: emit::launch_instruction(e.calls.len()),
            batch: e.json(),
        },
    )
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

/// A task in a list of ready ones.
#[derive(Debug, Serialize, JsonSchema)]
struct TaskBrief {
    id: i64,
    agent: String,
    description: String,
    priority: i64,
}

#[derive(Debug, Serialize, JsonSchema)]
struct QueueStatus {
    #[serde(flatten)]
    stats: task::Stats,
    ready_tasks: Vec<TaskBrief>,
}

/// How many ready tasks `queue_status` lists.
const MAX_LISTED: i64 = 100;

fn queue_status(state: &mut State, _: NoArgs) -> Result<CallResult, String> {
    let db = state.existing_db()?;
    let (stats, ready) = db
        .read(|tx| {
            let stats = task::stats_in(tx)?;
            let f = task::TaskFilter {
                ready: true,
                limit: Some(MAX_LISTED),
                ..Default::default()
            };
            Ok((stats, task::list_in(tx, &f)?))
        })
        .map_err(|e| e.to_string())?;
    let mut text = format!("{}: {}.", plural(stats.total, "task"), stats.summary());
    for t in &ready {
        text.push_str(&format!(
            "\nready: task {} ({}, priority {}): {}",
            t.id, t.role, t.priority, t.description
        ));
    }
    let ready_tasks = ready
        .into_iter()
        .map(|t| TaskBrief {
            id: t.id,
            agent: t.role,
            description: t.description,
            priority: t.priority,
        })
        .collect();
    CallResult::ok(text, QueueStatus { stats, ready_tasks })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct BatchArgs {
    #[schemars(
        range(min = 1),
        description = "The batch id that execute_parallel_batch returned"
    )]
    batch: i64,
}

#[derive(Debug, Serialize, JsonSchema)]
struct BatchTask {
    id: i64,
    agent: String,
    description: String,
    status: Status,
    started_at: Option<String>,
    finished_at: Option<String>,
    result: Option<String>,
    error: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
struct BatchStatus {
    batch: i64,
    created_at: String,
    emitted_at: Option<String>,
    tasks: Vec<BatchTask>,
}

fn clip_result(s: Option<String>) -> Option<String> {
    s.map(|r| {
        let n = r.chars().count();
        if n <= MAX_RESULT_CHARS {
            r
        } else {
            let mut c: String = r.chars().take(MAX_RESULT_CHARS).collect();
            c.push_str(&format!("… ({} more characters)", n - MAX_RESULT_CHARS));
            c
        }
    })
}

fn batch_status(state: &mut State, a: BatchArgs) -> Result<CallResult, String> {
    let db = state.existing_db()?;
    let b = batch::get(db, a.batch).map_err(|e| e.to_string())?;
    let mut counts: Vec<(Status, i64)> = Vec::new();
    for t in &b.tasks {
        match counts.iter_mut().find(|(s, _)| *s == t.status) {
            Some((_, n)) => *n += 1,
            None => counts.push((t.status, 1)),
        }
    }
    let summary: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    let mut text = format!(
        "Batch {} ({}, created {}{}): {}.",
        b.id,
        plural(b.tasks.len() as i64, "task"),
        b.created_at,
        match &b.emitted_at {
            Some(t) => format!(", handed out {t}"),
            None => String::new(),
        },
        if summary.is_empty() {
            "no tasks".into()
        } else {
            summary.join(", ")
        }
    );
    let tasks: Vec<BatchTask> = b
        .tasks
        .into_iter()
        .map(|t| BatchTask {
            id: t.id,
            agent: t.role,
            description: t.description,
            status: t.status,
            started_at: t.started_at.map(crate::time::rfc3339),
            finished_at: t.finished_at.map(crate::time::rfc3339),
            result: clip_result(t.result),
            error: clip_result(t.error),
        })
        .collect();
    for t in &tasks {
        text.push_str(&format!(
            "\ntask {} {} ({}): {}",
            t.id, t.status, t.agent, t.description
        ));
        if let Some(r) = &t.result {
            text.push_str(&format!("\n  result: {}", crate::text::first_line(r, 200)));
        }
        if let Some(e) = &t.error {
            text.push_str(&format!("\n  error: {}", crate::text::first_line(e, 200)));
        }
    }
    CallResult::ok(
        text,
        BatchStatus {
            batch: b.id,
            created_at: b.created_at,
            emitted_at: b.emitted_at,
            tasks,
        },
    )
}
