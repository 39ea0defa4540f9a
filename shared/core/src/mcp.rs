//! The MCP server's protocol layer (SPEC §9): one JSON-RPC 2.0 message per
//! line in, at most one reply out, through the pure [`handle`] function; and
//! the four tools over the same queue the command-line tools use.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use crate::agent_options;
use crate::batch::{self, CreateRequest, DEFAULT_MAX};
use crate::claude::agents::AgentIndex;
use crate::db::Db;
use crate::emit::{self, JsonBatch, AGENT_TOOL};
use crate::task::{self, Dep, NewTask, Status};

/// Protocol revisions this server speaks, newest first. A client asking for
/// one of them gets it back; any other request is answered with the first.
pub const PROTOCOL_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// The server's name in `serverInfo`.
pub const SERVER_NAME: &str = "orch-mcp";

/// The longest line (one message) the server reads: a 1 MiB prompt whose
/// every byte needs a six-character JSON escape still fits.
pub const MAX_LINE: usize = 8 * task::MAX_PROMPT;

/// How much of a task's result or error `batch_status` returns.
pub const MAX_RESULT_CHARS: usize = 4000;

/// JSON-RPC error codes.
pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;

/// What the server tells the model about itself in `initialize`.
pub const INSTRUCTIONS: &str = "orch makes Claude Code sub-agents run in parallel. \
Queue each piece of work with queue_parallel_task (one call per task), then call \
execute_parallel_batch once: it returns the Agent tool calls of every ready task. \
Send ALL of those Agent calls together in ONE assistant message, with nothing else in \
it: Agent calls sent in separate messages run one after another, not in parallel.";

/// Where the database comes from: resolved (SPEC §2) at the first tool call,
/// so that `initialize` and `tools/list` never touch the file system.
#[derive(Debug, Clone)]
pub enum DbSource {
    /// `--db` if given, else `ORCH_DB`, the nearest `.orch/orch.db`, the per-user file.
    Resolve(Option<PathBuf>),
    /// A private in-memory database (tests).
    Memory,
}

/// A session's state: the negotiated protocol and the lazily opened database.
pub struct State {
    source: DbSource,
    db: Option<Db>,
    /// Where agent definitions are looked up (`.claude/agents/` here and above).
    pub cwd: PathBuf,
    /// The protocol revision agreed in `initialize`, once it happened.
    pub protocol: Option<String>,
    /// Whether the client sent `notifications/initialized`.
    pub initialized: bool,
    /// Where notes for people go (the server sends them to stderr; none by default).
    pub log: Box<dyn FnMut(&str)>,
}

impl State {
    pub fn new(source: DbSource, cwd: PathBuf) -> State {
        State {
            source,
            db: None,
            cwd,
            protocol: None,
            initialized: false,
            log: Box::new(|_| {}),
        }
    }

    /// Whether the database has been opened yet.
    pub fn db_open(&self) -> bool {
        self.db.is_some()
    }

    /// The database, opened on first use. A failure is not remembered: the
    /// next call tries again (the file may have been fixed meanwhile).
    fn db(&mut self) -> Result<&Db, String> {
        if self.db.is_none() {
            let opened = match &self.source {
                DbSource::Memory => Db::open_in_memory(),
                DbSource::Resolve(flag) => Db::open_resolved(flag.as_deref()),
            };
            self.db = Some(opened.map_err(|e| format!("cannot open the orch database: {e}"))?);
        }
        self.db.as_ref().ok_or_else(|| "no database".to_string())
    }

    /// The database for a tool that only reads: like [`State::db`], but a
    /// missing file is `no database at PATH` and nothing is created.
    fn existing_db(&mut self) -> Result<&Db, String> {
        if self.db.is_none() {
            if let DbSource::Resolve(flag) = &self.source {
                let opened = crate::db::resolve(flag.as_deref())
                    .and_then(|loc| Db::open_existing(&loc))
                    .map_err(|e| format!("cannot open the orch database: {e}"))?;
                self.db = Some(opened);
            }
        }
        self.db()
    }

    fn note(&mut self, s: &str) {
        (self.log)(s)
    }
}

/// One JSON-RPC response.
#[derive(Debug, Clone, Serialize)]
pub struct Response {
    pub jsonrpc: &'static str,
    /// The request's id as it was written (a number such as
    /// 99999999999999999999999 is echoed digit for digit, not as 1e+23).
    pub id: Box<RawValue>,
    #[serde(flatten)]
    pub body: Body,
}

/// A response's result or error.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Body {
    Result(Value),
    Error(RpcError),
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, Serialize)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

impl Response {
    fn ok(id: Box<RawValue>, result: Value) -> Response {
        Response {
            jsonrpc: "2.0",
            id,
            body: Body::Result(result),
        }
    }

    fn err(id: Box<RawValue>, code: i64, message: impl Into<String>) -> Response {
        Response {
            jsonrpc: "2.0",
            id,
            body: Body::Error(RpcError {
                code,
                message: message.into(),
            }),
        }
    }

    /// The reply to a line longer than [`MAX_LINE`], which is not read at all.
    pub fn too_long(max: usize) -> Response {
        Response::err(
            null_id(),
            INVALID_REQUEST,
            format!("Invalid Request: the message is longer than {max} bytes"),
        )
    }

    /// The reply as one line of JSON (no newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            let fallback = Response::err(
                self.id.clone(),
                INTERNAL_ERROR,
                format!("cannot encode the reply: {e}"),
            );
            serde_json::to_string(&fallback).unwrap_or_default()
        })
    }
}

/// The id of a reply to a message whose id cannot be known.
fn null_id() -> Box<RawValue> {
    RawValue::NULL.to_owned()
}

/// The `"id"` member of a message, exactly as written; `None` when the
/// object holds it more than once.
fn raw_id(text: &str) -> Option<Box<RawValue>> {
    #[derive(Deserialize)]
    struct IdOnly<'a> {
        #[serde(borrow)]
        id: &'a RawValue,
    }
    serde_json::from_str::<IdOnly>(text)
        .ok()
        .map(|m| m.id.to_owned())
}

/// Handles one line of input: returns the reply to send, or `None` for
/// notifications, responses and blank lines. Never fails: every problem with
/// a request becomes a JSON-RPC error, every problem inside a tool a result
/// with `isError: true`.
pub fn handle(state: &mut State, line: &[u8]) -> Option<Response> {
    let line = line.trim_ascii();
    if line.is_empty() {
        return None;
    }
    let text = match std::str::from_utf8(line) {
        Ok(t) => t,
        Err(e) => {
            return Some(Response::err(
                null_id(),
                PARSE_ERROR,
                format!(
                    "Parse error: the line is not valid UTF-8 (bad byte at offset {})",
                    e.valid_up_to()
                ),
            ))
        }
    };
    let msg: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return Some(Response::err(
                null_id(),
                PARSE_ERROR,
                format!("Parse error: {e}"),
            ))
        }
    };
    let obj = match msg {
        Value::Object(o) => o,
        Value::Array(_) => return Some(Response::err(
            null_id(),
            INVALID_REQUEST,
            "Invalid Request: JSON-RPC batch arrays are not supported; send one message per line",
        )),
        _ => {
            return Some(Response::err(
                null_id(),
                INVALID_REQUEST,
                "Invalid Request: a message must be a JSON object",
            ))
        }
    };
    let id = match obj.get("id") {
        None => None,
        // Parsed into a Value, a number may lose digits: echo the text instead.
        Some(Value::String(_) | Value::Number(_)) => match raw_id(text) {
            Some(id) => Some(id),
            None => {
                return Some(Response::err(
                    null_id(),
                    INVALID_REQUEST,
                    "Invalid Request: \"id\" is given more than once",
                ))
            }
        },
        Some(_) => {
            return Some(Response::err(
                null_id(),
                INVALID_REQUEST,
                "Invalid Request: \"id\" must be a string or a number",
            ))
        }
    };
    let method = match obj.get("method") {
        Some(Value::String(m)) => m.as_str(),
        Some(_) => {
            return Some(Response::err(
                id.unwrap_or_else(null_id),
                INVALID_REQUEST,
                "Invalid Request: \"method\" must be a string",
            ))
        }
        // A response to a request of ours (we send none): nothing to answer.
        None if obj.contains_key("result") || obj.contains_key("error") => return None,
        None => {
            return Some(Response::err(
                id.unwrap_or_else(null_id),
                INVALID_REQUEST,
                "Invalid Request: no \"method\"",
            ))
        }
    };
    let Some(id) = id else {
        notification(state, method);
        return None;
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Some(Response::err(
            id,
            INVALID_REQUEST,
            "Invalid Request: \"jsonrpc\" must be \"2.0\"",
        ));
    }
    let params = match obj.get("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p.clone(),
        Some(_) => {
            return Some(Response::err(
                id,
                INVALID_PARAMS,
                "Invalid params: \"params\" must be an object",
            ))
        }
    };
    Some(match request(state, method, &params) {
        Ok(result) => Response::ok(id, result),
        Err((code, message)) => Response::err(id, code, message),
    })
}

fn notification(state: &mut State, method: &str) {
    if method == "notifications/initialized" {
        state.initialized = true;
    }
    // notifications/cancelled and the rest: requests are answered one at a
    // time, so there is never one in flight to cancel; nothing else applies.
}

type RpcResult = Result<Value, (i64, String)>;

fn request(state: &mut State, method: &str, params: &Map<String, Value>) -> RpcResult {
    match method {
        "initialize" => initialize(state, params),
        "ping" => Ok(json!({})),
        "tools/list" => Ok(json!({ "tools": tools() })),
        "tools/call" => call(state, params),
        _ => Err((METHOD_NOT_FOUND, format!("Method not found: {method}"))),
    }
}

/// The `initialize` result.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct InitializeResult {
    protocol_version: &'static str,
    capabilities: Value,
    server_info: ServerInfo,
    instructions: &'static str,
}

#[derive(Debug, Serialize)]
struct ServerInfo {
    name: &'static str,
    title: &'static str,
    version: &'static str,
}

/// The version to answer a client that asks for `requested`.
pub fn negotiate(requested: &str) -> &'static str {
    PROTOCOL_VERSIONS
        .iter()
        .find(|v| **v == requested)
        .copied()
        .unwrap_or(PROTOCOL_VERSIONS[0])
}

fn initialize(state: &mut State, params: &Map<String, Value>) -> RpcResult {
    let Some(requested) = params.get("protocolVersion").and_then(Value::as_str) else {
        return Err((
            INVALID_PARAMS,
            "Invalid params: initialize needs \"protocolVersion\" (a string)".into(),
        ));
    };
    let version = negotiate(requested);
    let client = params
        .get("clientInfo")
        .map(|c| {
            format!(
                "{} {}",
                c.get("name").and_then(Value::as_str).unwrap_or("?"),
                c.get("version").and_then(Value::as_str).unwrap_or("?")
            )
        })
        .unwrap_or_else(|| "an unnamed client".into());
    state.protocol = Some(version.to_string());
    state.note(&format!(
        "{client} connected (asked for protocol {requested}, speaking {version})"
    ));
    let result = InitializeResult {
        protocol_version: version,
        capabilities: json!({ "tools": {} }),
        server_info: ServerInfo {
            name: SERVER_NAME,
            title: "orch",
            version: env!("CARGO_PKG_VERSION"),
        },
        instructions: INSTRUCTIONS,
    };
    serde_json::to_value(result).map_err(|e| (INTERNAL_ERROR, e.to_string()))
}

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

const NULLABLE_STRING: [&str; 2] = ["string", "null"];

/// The four tools, with the descriptions the model reads.
pub fn tools() -> Vec<ToolDef> {
    let task_brief = json!({
        "type": "object",
        "properties": {
            "id": { "type": "integer" },
            "agent": { "type": "string" },
            "description": { "type": "string" },
            "priority": { "type": "integer" }
        },
        "required": ["id", "agent", "description", "priority"]
    });
    vec![
        ToolDef {
            name: QUEUE_TOOL,
            title: "Queue a parallel agent task",
            description: "Queue one task for a Claude Code sub-agent; it will be launched later, in parallel \
with the other queued tasks. Call this once per task, then call execute_parallel_batch ONCE to launch every \
ready task at the same time. Nothing runs until then. Returns the new task's id and how many tasks are ready.",
            input_schema: json!({
                "type": "object",
                "properties": {
                    "agent": {
                        "type": "string",
                        "description": "The sub-agent type that does the task: one defined in a .claude/agents/ file (with a name and a description), or a built-in one (general-purpose, Explore, Plan, statusline-setup, claude); names match ignoring case, spaces, dashes and underscores. 1-64 of A-Z a-z 0-9 _ . - ; an unknown type runs as general-purpose with the name given in its prompt.",
                        "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"
                    },
                    "task": {
                        "type": "string",
                        "description": "The complete, self-contained instructions for the agent: it sees nothing else of this conversation. At most 1 MiB.",
                        "minLength": 1
                    },
                    "description": {
                        "type": "string",
                        "description": "3-5 words summing up the task, shown while the agent runs. Default: the task's first words.",
                        "maxLength": task::MAX_DESCRIPTION
                    },
                    "priority": {
                        "type": "integer",
                        "description": "Higher goes first when more tasks are ready than one batch takes. Default 0."
                    },
                    "after": {
                        "type": "array",
                        "items": { "type": "integer", "minimum": 1 },
                        "description": "Ids of existing tasks that must be done before this one becomes ready."
                    }
               ,
                    "model": { "type": "string", "enum": agent_options::MODELS, "description": "The model the sub-agent runs on. Default: the session's." },
                    "isolation": { "type": "string", "enum": agent_options::ISOLATIONS, "description": "Run the sub-agent in its own git worktree, or remotely." },
                    "background": { "type": "boolean", "description": "Launch the sub-agent in the background (run_in_background)." },
                    "name": { "type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$", "description": "A name SendMessage can address the agent by." },
                    "mode": { "type": "string", "enum": agent_options::MODES, "description": "The sub-agent's permission mode." },
                    "touches": { "type": "array", "items": { "type": "string" }, "description": "Globs of the paths the task expects to change; tasks whose globs overlap never share a batch." }
                },
                "required": ["agent", "task"],
                "additionalProperties": false
            }),
            output_schema: json!({
                "type": "object",
                "properties": {
                    "task": { "type": "integer", "description": "The new task's id" },
                    "ready": { "type": "integer", "description": "How many tasks are ready to launch now" },
                    "next": { "type": "string", "description": "What to do next" }
                },
                "required": ["task", "ready", "next"]
            }),
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
            input_schema: json!({
                "type": "object",
                "properties": {
                    "max": {
                        "type": "integer",
                        "minimum": 1,
                        "default": DEFAULT_MAX,
                        "description": "At most this many tasks in the batch (default 10, a size that is easy to review)."
                    }
                },
                "additionalProperties": false
            }),
            output_schema: json!({
                "type": "object",
                "properties": {
                    "instruction": { "type": "string", "description": "How to launch the calls: follow it" },
                    "batch": { "type": "integer", "description": "The batch id (for batch_status)" },
                    "tool": { "type": "string", "const": AGENT_TOOL },
                    "tasks": { "type": "array", "items": { "type": "integer" }, "description": "Task ids, in the order of calls" },
                    "calls": {
                        "type": "array",
                        "description": "The Agent tool call inputs, all to be sent in one message",
                        "items": {
                            "type": "object",
                            "properties": {
                                "description": { "type": "string" },
                                "prompt": { "type": "string" },
                                "subagent_type": { "type": "string" }
                            },
                            "required": ["description", "prompt"],
                            "additionalProperties": false
                        }
                    }
                },
                "required": ["instruction", "batch", "tool", "tasks", "calls"]
            }),
            annotations: Annotations::writes("Launch the ready tasks in parallel"),
        },
        ToolDef {
            name: QUEUE_STATUS_TOOL,
            title: "Queue status",
            description: "Read-only. Count the tasks by status (queued, ready, batched, running, done, failed, \
cancelled) and list the ready ones: what execute_parallel_batch would take next. Changes nothing.",
            input_schema: json!({ "type": "object", "properties": {}, "additionalProperties": false }),
            output_schema: json!({
                "type": "object",
                "properties": {
                    "queued": { "type": "integer" },
                    "ready": { "type": "integer" },
                    "batched": { "type": "integer" },
                    "running": { "type": "integer" },
                    "done": { "type": "integer" },
                    "failed": { "type": "integer" },
                    "cancelled": { "type": "integer" },
                    "total": { "type": "integer" },
                    "blocked": { "type": "integer", "description": "Queued tasks that wait for a failed or cancelled task (absent when none)" },
                    "landed": { "type": "integer", "description": "Done tasks whose branch orch-land merged (absent when none)" },
                    "ready_tasks": { "type": "array", "items": task_brief }
                },
                "required": ["queued", "ready", "batched", "running", "done", "failed", "cancelled", "total", "ready_tasks"]
            }),
            annotations: Annotations::reads("Queue status"),
        },
        ToolDef {
            name: BATCH_STATUS_TOOL,
            title: "Batch status",
            description: "Read-only. Show one batch: each task's status (batched, running, done, failed, \
cancelled), start and end time, and its result or error (clipped to 4000 characters), as recorded by orch's \
hooks or orch-queue. Changes nothing.",
            input_schema: json!({
                "type": "object",
                "properties": {
                    "batch": { "type": "integer", "minimum": 1, "description": "The batch id that execute_parallel_batch returned" }
                },
                "required": ["batch"],
                "additionalProperties": false
            }),
            output_schema: json!({
                "type": "object",
                "properties": {
                    "batch": { "type": "integer" },
                    "created_at": { "type": "string" },
                    "emitted_at": { "type": NULLABLE_STRING },
                    "tasks": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "id": { "type": "integer" },
                                "agent": { "type": "string" },
                                "description": { "type": "string" },
                                "status": { "type": "string", "enum": Status::ALL.map(Status::as_str) },
                                "started_at": { "type": NULLABLE_STRING },
                                "finished_at": { "type": NULLABLE_STRING },
                                "result": { "type": NULLABLE_STRING },
                                "error": { "type": NULLABLE_STRING }
                            },
                            "required": ["id", "agent", "description", "status", "started_at", "finished_at", "result", "error"]
                        }
                    }
                },
                "required": ["batch", "created_at", "emitted_at", "tasks"]
            }),
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

fn call(state: &mut State, params: &Map<String, Value>) -> RpcResult {
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
        .map_err(|e| emit::explain_name(format!("bad arguments for {tool}: {e}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueArgs {
    agent: String,
    task: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    priority: Option<i64>,
    #[serde(default)]
    after: Option<Vec<i64>>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    isolation: Option<String>,
    #[serde(default)]
    background: Option<bool>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    touches: Vec<String>,
}

/// `queue_parallel_task`'s structured result. Claude Code shows the model only
/// the structured content of a result that has one, so what to do next is in it.
#[derive(Debug, Serialize)]
struct Queued {
    task: i64,
    ready: i64,
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
    let next = format!(
        "{} ready to launch. Queue every task first, then call {EXECUTE_TOOL} once to launch them all in parallel.",
        plural(ready, "task")
    );
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
#[derive(Debug, Serialize)]
struct Launch<'a> {
    instruction: String,
    #[serde(flatten)]
    batch: JsonBatch<'a>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecuteArgs {
    #[serde(default)]
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
    let db = state.db()?;
    let req = CreateRequest {
        max: max as usize,
        ..Default::default()
    };
    let b = match batch::create(db, &req).map_err(|e| e.to_string())? {
        Ok(b) => b,
        Err(_) => {
            let s = task::stats(db).map_err(|e| e.to_string())?;
            return Err(if s.queued > 0 {
                format!(
                    "Nothing to launch: no task is ready ({} wait for tasks that are not done yet).",
                    plural(s.queued, "queued task")
                )
            } else {
                format!(
                    "Nothing to launch: no task is queued. Queue tasks with {QUEUE_TOOL} first."
                )
            });
        }
    };
    let agents = AgentIndex::discover(&cwd);
    // One note per task (README shows them): not emit::agent_calls' one per role.
    let mut calls: Vec<emit::AgentCall> = Vec::with_capacity(b.tasks.len());
    let mut notes = Vec::new();
    for t in &b.tasks {
        let (c, note) = emit::agent_call(t, &agents, None);
        notes.extend(note);
        calls.push(c);
    }
    let ids: Vec<i64> = b.tasks.iter().map(|t| t.id).collect();
    batch::mark_emitted(db, b.id).map_err(|e| e.to_string())?;
    for n in notes {
        state.note(&format!("note: {n}"));
    }
    let text = emit::render_claude(&calls);
    CallResult::ok(
        text,
        Launch {
            instruction: emit::launch_instruction(calls.len()),
            batch: JsonBatch {
                batch: b.id,
                tool: AGENT_TOOL,
                tasks: ids,
                calls: &calls,
            },
        },
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

/// A task in a list of ready ones.
#[derive(Debug, Serialize)]
struct TaskBrief {
    id: i64,
    agent: String,
    description: String,
    priority: i64,
}

#[derive(Debug, Serialize)]
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
    let mut text = format!(
        "{}: {} queued ({} ready), {} batched, {} running, {} done, {} failed, {} cancelled.",
        plural(stats.total, "task"),
        stats.queued,
        stats.ready,
        stats.batched,
        stats.running,
        stats.done,
        stats.failed,
        stats.cancelled
    );
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchArgs {
    batch: i64,
}

#[derive(Debug, Serialize)]
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

#[derive(Debug, Serialize)]
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

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        let mut s = State::new(DbSource::Memory, std::env::temp_dir());
        s.log = Box::new(|_| {});
        s
    }

    /// Sends one line and returns the reply as JSON, if any.
    fn raw(s: &mut State, line: &[u8]) -> Option<Value> {
        handle(s, line).map(|r| serde_json::from_str(&r.to_line()).unwrap())
    }

    fn send(s: &mut State, msg: Value) -> Option<Value> {
        raw(s, msg.to_string().as_bytes())
    }

    fn rpc(s: &mut State, id: i64, method: &str, params: Value) -> Value {
        let r = send(
            s,
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
        )
        .unwrap();
        assert_eq!(r["id"], json!(id), "{r}");
        assert_eq!(r["jsonrpc"], "2.0");
        r
    }

    fn error_code(r: &Value) -> i64 {
        r["error"]["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("not an error: {r}"))
    }

    fn call(s: &mut State, name: &str, args: Value) -> Value {
        let r = rpc(s, 9, "tools/call", json!({"name": name, "arguments": args}));
        assert!(r.get("error").is_none(), "{r}");
        r["result"].clone()
    }

    fn ok_call(s: &mut State, name: &str, args: Value) -> Value {
        let r = call(s, name, args);
        assert_eq!(r["isError"], false, "{r}");
        r
    }

    fn err_text(s: &mut State, name: &str, args: Value) -> String {
        let r = call(s, name, args);
        assert_eq!(r["isError"], true, "{r}");
        assert!(r.get("structuredContent").is_none(), "{r}");
        r["content"][0]["text"].as_str().unwrap().to_string()
    }

    fn init(s: &mut State, version: &str) -> Value {
        rpc(
            s,
            1,
            "initialize",
            json!({"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
        )
    }

    #[test]
    fn ids_are_echoed_exactly_as_written() {
        let mut s = state();
        for id in [
            "99999999999999999999999",
            "-99999999999999999999999",
            "18446744073709551616",
            "1.5",
            "1e2",
            "-0",
            "0.10000000000000000000001",
            "7",
            "\"a\\u00e9 \\\"b\\\"\"",
        ] {
            let line = format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"ping\"}}");
            let reply = handle(&mut s, line.as_bytes()).unwrap().to_line();
            let want = format!("\"id\":{id},");
            assert!(reply.contains(&want), "{id}: {reply}");
            let r: Value = serde_json::from_str(&reply).unwrap();
            assert!(r.get("result").is_some(), "{id}: {reply}");
        }
        // An error reply echoes the id too.
        let reply = handle(
            &mut s,
            br#"{"jsonrpc":"2.0","id":99999999999999999999999,"method":"no/such"}"#,
        )
        .unwrap()
        .to_line();
        assert!(reply.contains("\"id\":99999999999999999999999,"), "{reply}");
        // An id given twice cannot be echoed with confidence: Invalid Request.
        let r = raw(
            &mut s,
            br#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#,
        )
        .unwrap();
        assert_eq!(error_code(&r), INVALID_REQUEST, "{r}");
        assert_eq!(r["id"], Value::Null);
    }

    #[test]
    fn initialize_echoes_supported_versions_else_the_newest() {
        for v in PROTOCOL_VERSIONS {
            let mut s = state();
            let r = init(&mut s, v);
            assert_eq!(r["result"]["protocolVersion"], v);
            assert_eq!(s.protocol.as_deref(), Some(v));
        }
        for v in ["2026-07-28", "1999-01-01", ""] {
            let r = init(&mut state(), v);
            assert_eq!(r["result"]["protocolVersion"], PROTOCOL_VERSIONS[0], "{v}");
        }
        let r = init(&mut state(), "2025-06-18");
        let res = &r["result"];
        assert_eq!(res["capabilities"], json!({"tools": {}}));
        assert_eq!(res["serverInfo"]["name"], SERVER_NAME);
        assert_eq!(res["serverInfo"]["version"], env!("CARGO_PKG_VERSION"));
        assert!(res["instructions"]
            .as_str()
            .unwrap()
            .contains("ONE assistant message"));
    }

    #[test]
    fn initialize_without_a_version_is_invalid_params() {
        let mut s = state();
        assert_eq!(
            error_code(&rpc(&mut s, 1, "initialize", json!({}))),
            INVALID_PARAMS
        );
        assert_eq!(
            error_code(&rpc(&mut s, 2, "initialize", json!({"protocolVersion": 5}))),
            INVALID_PARAMS
        );
    }

    #[test]
    fn handshake_and_listing_never_open_the_database() {
        let mut s = state();
        init(&mut s, "2025-11-25");
        send(
            &mut s,
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        );
        rpc(&mut s, 2, "ping", json!({}));
        rpc(&mut s, 3, "tools/list", json!({}));
        rpc(&mut s, 4, "server/discover", json!({}));
        assert!(!s.db_open());
        ok_call(&mut s, QUEUE_STATUS_TOOL, json!({}));
        assert!(s.db_open());
    }

    #[test]
    fn notifications_and_responses_get_no_reply() {
        let mut s = state();
        assert!(send(
            &mut s,
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
        )
        .is_none());
        assert!(s.initialized);
        for m in [
            "notifications/cancelled",
            "notifications/roots/list_changed",
            "no/such/thing",
            "tools/call",
        ] {
            assert!(
                send(
                    &mut s,
                    json!({"jsonrpc": "2.0", "method": m, "params": {"requestId": 1}})
                )
                .is_none(),
                "{m}"
            );
        }
        assert!(send(&mut s, json!({"jsonrpc": "2.0", "id": 5, "result": {}})).is_none());
        assert!(send(
            &mut s,
            json!({"jsonrpc": "2.0", "id": 5, "error": {"code": 1, "message": "x"}})
        )
        .is_none());
        assert!(raw(&mut s, b"").is_none());
        assert!(raw(&mut s, b"  \r\n").is_none());
    }

    #[test]
    fn ping_answers_an_empty_object_and_ids_are_echoed() {
        let mut s = state();
        assert_eq!(rpc(&mut s, 7, "ping", json!({}))["result"], json!({}));
        let r = send(
            &mut s,
            json!({"jsonrpc": "2.0", "id": "abc-1", "method": "ping"}),
        )
        .unwrap();
        assert_eq!(r["id"], "abc-1");
        assert_eq!(r["result"], json!({}));
        let r = raw(
            &mut s,
            b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\"}\r\n",
        )
        .unwrap();
        assert_eq!(r["id"], 3);
    }

    #[test]
    fn tools_list_describes_four_tools() {
        let mut s = state();
        let r = rpc(&mut s, 1, "tools/list", json!({}));
        let tools = r["result"]["tools"].as_array().unwrap();
        let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                QUEUE_TOOL,
                EXECUTE_TOOL,
                QUEUE_STATUS_TOOL,
                BATCH_STATUS_TOOL
            ]
        );
        for t in tools {
            assert!(t["description"].as_str().unwrap().len() > 80, "{t}");
            assert_eq!(t["inputSchema"]["type"], "object");
            assert_eq!(t["inputSchema"]["additionalProperties"], false);
            assert_eq!(t["outputSchema"]["type"], "object");
            let read_only = t["annotations"]["readOnlyHint"].as_bool().unwrap();
            assert_eq!(
                read_only,
                [QUEUE_STATUS_TOOL, BATCH_STATUS_TOOL].contains(&t["name"].as_str().unwrap())
            );
        }
        assert_eq!(
            tools[0]["inputSchema"]["required"],
            json!(["agent", "task"])
        );
        assert_eq!(tools[3]["inputSchema"]["required"], json!(["batch"]));
        assert_eq!(
            tools[1]["outputSchema"]["required"],
            json!(["instruction", "batch", "tool", "tasks", "calls"])
        );
    }

    #[test]
    fn unknown_methods_are_method_not_found() {
        let mut s = state();
        for m in [
            "server/discover",
            "resources/list",
            "prompts/list",
            "logging/setLevel",
            "tools/unknown",
            "",
        ] {
            let r = rpc(&mut s, 4, m, json!({}));
            assert_eq!(error_code(&r), METHOD_NOT_FOUND, "{m}");
        }
    }

    #[test]
    fn unparseable_lines_are_parse_errors_with_a_null_id() {
        let mut s = state();
        for line in [
            &b"{not json"[..],
            b"{\"jsonrpc\":\"2.0\",\"id\":1,",
            b"\xff\xfe{}",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"x\":\"\xc3\x28\"}",
        ] {
            let r = raw(&mut s, line).unwrap();
            assert_eq!(
                error_code(&r),
                PARSE_ERROR,
                "{}",
                String::from_utf8_lossy(line)
            );
            assert!(r["id"].is_null());
        }
        let r = raw(&mut s, b"\xff").unwrap();
        assert!(
            r["error"]["message"].as_str().unwrap().contains("UTF-8"),
            "{r}"
        );
        // The session goes on.
        assert_eq!(rpc(&mut s, 2, "ping", json!({}))["result"], json!({}));
    }

    #[test]
    fn invalid_requests_are_refused() {
        let mut s = state();
        let batch = json!([{"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"jsonrpc": "2.0", "id": 2, "method": "ping"}]);
        for (msg, id) in [
            (batch, Value::Null),
            (json!([]), Value::Null),
            (json!(42), Value::Null),
            (json!("ping"), Value::Null),
            (json!(null), Value::Null),
            (json!({"jsonrpc": "2.0", "id": 1}), json!(1)),
            (
                json!({"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"}),
                Value::Null,
            ),
            (
                json!({"jsonrpc": "2.0", "id": null, "method": "ping"}),
                Value::Null,
            ),
            (json!({"jsonrpc": "2.0", "id": 3, "method": 7}), json!(3)),
            (
                json!({"jsonrpc": "1.0", "id": 4, "method": "ping"}),
                json!(4),
            ),
            (json!({"id": 5, "method": "ping"}), json!(5)),
        ] {
            let r = send(&mut s, msg.clone()).unwrap();
            assert_eq!(error_code(&r), INVALID_REQUEST, "{msg}");
            assert_eq!(r["id"], id, "{msg}");
        }
        let r = send(
            &mut s,
            json!({"jsonrpc": "2.0", "id": 6, "method": "ping", "params": [1]}),
        )
        .unwrap();
        assert_eq!(error_code(&r), INVALID_PARAMS);
        assert_eq!(
            error_code(&serde_json::from_str(&Response::too_long(10).to_line()).unwrap()),
            INVALID_REQUEST
        );
    }

    #[test]
    fn bad_tool_calls_are_invalid_params() {
        let mut s = state();
        for params in [
            json!({"name": "no_such_tool", "arguments": {}}),
            json!({"name": QUEUE_TOOL, "arguments": [1, 2]}),
            json!({"name": QUEUE_TOOL, "arguments": "agent=x"}),
            json!({"arguments": {}}),
            json!({"name": 3}),
        ] {
            let r = rpc(&mut s, 1, "tools/call", params.clone());
            assert_eq!(error_code(&r), INVALID_PARAMS, "{params}");
        }
        let r = rpc(&mut s, 1, "tools/call", json!({"name": "no_such_tool"}));
        assert!(r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Unknown tool: no_such_tool"));
    }

    #[test]
    fn a_tools_own_failure_is_an_error_result() {
        let mut s = state();
        assert!(err_text(&mut s, QUEUE_TOOL, json!({"agent": "Explore"}))
            .contains("missing field `task`"));
        assert!(
            err_text(&mut s, QUEUE_TOOL, json!({"task": "x"})).contains("missing field `agent`")
        );
        assert!(err_text(
            &mut s,
            QUEUE_TOOL,
            json!({"agent": "../x", "task": "do it"})
        )
        .contains("bad role"));
        assert!(
            err_text(&mut s, QUEUE_TOOL, json!({"agent": "dev", "task": "  "}))
                .contains("empty prompt")
        );
        assert!(
            err_text(&mut s, QUEUE_TOOL, json!({"agent": "dev", "prompt": "x"}))
                .contains("unknown field `prompt`")
        );
        assert!(err_text(
            &mut s,
            QUEUE_TOOL,
            json!({"agent": "dev", "task": "x", "priority": "high"})
        )
        .contains("invalid type"));
        assert!(err_text(
            &mut s,
            QUEUE_TOOL,
            json!({"agent": "dev", "task": "x", "after": [99]})
        )
        .contains("task 99, which does not exist"));
        assert!(err_text(
            &mut s,
            QUEUE_TOOL,
            json!({"agent": "dev", "task": "x", "description": "a\nb"})
        )
        .contains("bad description"));
        assert!(err_text(&mut s, EXECUTE_TOOL, json!({})).contains("no task is queued"));
        assert!(
            err_text(&mut s, EXECUTE_TOOL, json!({"max": 0})).contains("max must be at least 1")
        );
        assert!(err_text(&mut s, BATCH_STATUS_TOOL, json!({"batch": 42}))
            .contains("batch 42 not found"));
        assert!(err_text(&mut s, BATCH_STATUS_TOOL, json!({})).contains("missing field `batch`"));
        assert!(err_text(&mut s, QUEUE_STATUS_TOOL, json!({"x": 1})).contains("unknown field `x`"));
        // Nothing was written by any of them.
        let st = ok_call(&mut s, QUEUE_STATUS_TOOL, json!({}));
        assert_eq!(st["structuredContent"]["total"], 0);
    }

    #[test]
    fn queue_execute_and_status_work_together() {
        let mut s = state();
        let a = ok_call(
            &mut s,
            QUEUE_TOOL,
            json!({"agent": "Explore", "task": "Map \"it\"\n`all` of it", "description": "Map the layout"}),
        );
        assert_eq!(
            (
                a["structuredContent"]["task"].as_i64(),
                a["structuredContent"]["ready"].as_i64()
            ),
            (Some(1), Some(1))
        );
        assert!(a["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("Queued task 1 (agent Explore"));
        let b = ok_call(
            &mut s,
            QUEUE_TOOL,
            json!({"agent": "reviewer", "task": "Review it", "priority": 5}),
        );
        assert_eq!(
            (
                b["structuredContent"]["task"].as_i64(),
                b["structuredContent"]["ready"].as_i64()
            ),
            (Some(2), Some(2))
        );
        let c = ok_call(
            &mut s,
            QUEUE_TOOL,
            json!({"agent": "Plan", "task": "Plan after", "after": [1]}),
        );
        assert_eq!(
            (
                c["structuredContent"]["task"].as_i64(),
                c["structuredContent"]["ready"].as_i64()
            ),
            (Some(3), Some(2))
        );
        assert!(c["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("once task 1 is done"));

        let st = ok_call(&mut s, QUEUE_STATUS_TOOL, json!({}));
        let sc = &st["structuredContent"];
        assert_eq!(
            (
                sc["queued"].as_i64(),
                sc["ready"].as_i64(),
                sc["total"].as_i64()
            ),
            (Some(3), Some(2), Some(3))
        );
        let ready: Vec<i64> = sc["ready_tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ready, [1, 2]);

        let e = ok_call(&mut s, EXECUTE_TOOL, json!({}));
        let sc = &e["structuredContent"];
        assert!(sc["instruction"]
            .as_str()
            .unwrap()
            .starts_with("Launch 2 agents in parallel: send ONE message"));
        assert_eq!(sc["batch"], 1);
        assert_eq!(sc["tool"], "Agent");
        assert_eq!(sc["tasks"], json!([2, 1]), "priority first");
        let calls: Vec<emit::AgentCall> = serde_json::from_value(sc["calls"].clone()).unwrap();
        assert_eq!(calls[1].prompt, "Map \"it\"\n`all` of it\n\norch-task: 1");
        assert_eq!(calls[1].subagent_type.as_deref(), Some("Explore"));
        assert_eq!(calls[1].description, "Map the layout");
        assert!(
            calls[0].prompt.starts_with("Role: reviewer"),
            "{}",
            calls[0].prompt
        );
        assert_eq!(e["content"][0]["text"], emit::render_claude(&calls));

        let again = err_text(&mut s, EXECUTE_TOOL, json!({}));
        assert!(again.contains("1 queued task wait"), "{again}");

        let bs = ok_call(&mut s, BATCH_STATUS_TOOL, json!({"batch": 1}));
        let sc = &bs["structuredContent"];
        assert_eq!(sc["batch"], 1);
        assert!(sc["emitted_at"].is_string());
        let statuses: Vec<&str> = sc["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["batched", "batched"]);
        assert!(bs["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("Batch 1 (2 tasks"));

        // Results show up clipped once the tasks finish.
        let db = s.db().unwrap();
        let long = "r".repeat(MAX_RESULT_CHARS + 10);
        task::finish(
            db,
            1,
            task::Outcome {
                ok: true,
                result: Some(long),
                ..Default::default()
            },
        )
        .unwrap();
        task::finish(
            db,
            2,
            task::Outcome {
                ok: false,
                error: Some("boom".into()),
                ..Default::default()
            },
        )
        .unwrap();
        let bs = ok_call(&mut s, BATCH_STATUS_TOOL, json!({"batch": 1}));
        let t = &bs["structuredContent"]["tasks"];
        assert_eq!(t[0]["status"], "failed");
        assert_eq!(t[0]["error"], "boom");
        assert!(t[1]["result"]
            .as_str()
            .unwrap()
            .ends_with("(10 more characters)"));
        assert!(t[1]["finished_at"].is_string());

        // Task 3 is ready now that task 1 is done.
        let e = ok_call(&mut s, EXECUTE_TOOL, json!({"max": 5}));
        assert_eq!(e["structuredContent"]["tasks"], json!([3]));
        assert!(e["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("Launch 1 agent: send ONE message"));
    }

    #[test]
    fn execute_takes_at_most_max() {
        let mut s = state();
        for i in 0..4 {
            ok_call(
                &mut s,
                QUEUE_TOOL,
                json!({"agent": "dev", "task": format!("task {i}")}),
            );
        }
        let e = ok_call(&mut s, EXECUTE_TOOL, json!({"max": 3}));
        assert_eq!(e["structuredContent"]["tasks"], json!([1, 2, 3]));
        let e = ok_call(&mut s, EXECUTE_TOOL, json!({"max": 3}));
        assert_eq!(e["structuredContent"]["tasks"], json!([4]));
    }

    #[test]
    fn a_one_mebibyte_prompt_fits_in_one_line() {
        let mut s = state();
        // Every character escaped: the line is far longer than the prompt.
        let prompt: String = "\"\n\\é"
            .chars()
            .cycle()
            .take(task::MAX_PROMPT / 2)
            .collect();
        let prompt = format!("{prompt}{}", "x".repeat(task::MAX_PROMPT - prompt.len()));
        assert_eq!(prompt.len(), task::MAX_PROMPT);
        let line = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": QUEUE_TOOL, "arguments": {"agent": "dev", "task": prompt}}}).to_string();
        assert!(line.len() > task::MAX_PROMPT && line.len() < MAX_LINE);
        let r = raw(&mut s, line.as_bytes()).unwrap();
        assert_eq!(r["result"]["isError"], false, "{}", r["result"]["content"]);
        assert_eq!(task::get(s.db().unwrap(), 1).unwrap().prompt, prompt);
        let too_big = "y".repeat(task::MAX_PROMPT + 1);
        assert!(
            err_text(&mut s, QUEUE_TOOL, json!({"agent": "dev", "task": too_big}))
                .contains("1 MiB")
        );
    }

    #[test]
    fn a_broken_database_is_an_error_result_and_retried() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-a-db");
        std::fs::write(&path, b"this is not SQLite, not at all, no").unwrap();
        let mut s = State::new(
            DbSource::Resolve(Some(path.clone())),
            dir.path().to_path_buf(),
        );
        s.log = Box::new(|_| {});
        let text = err_text(&mut s, QUEUE_STATUS_TOOL, json!({}));
        assert!(
            text.contains("cannot open the orch database") && text.contains("not an orch database"),
            "{text}"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"this is not SQLite, not at all, no"
        );
        std::fs::remove_file(&path).unwrap();
        // A read tool makes no database; a write tool does, and then reads work.
        let text = err_text(&mut s, QUEUE_STATUS_TOOL, json!({}));
        assert!(text.contains("no database at"), "{text}");
        assert!(!path.exists());
        ok_call(
            &mut s,
            QUEUE_TOOL,
            json!({"agent": "dev", "task": "Fix it"}),
        );
        ok_call(&mut s, QUEUE_STATUS_TOOL, json!({}));
    }
}
