//! Rendering a batch (SPEC §7): the one message for Claude Code, JSON for
//! programs, Markdown for people, and a POSIX shell script that runs it headless.

use std::fmt::Write as _;
use std::path::Path;

use rusqlite::Transaction;
use serde::Serialize;

use crate::batch::{self, Batch};
use crate::claude::agents::AgentIndex;
use crate::db::{Db, Location, Source};
use crate::error::{Error, Result};
use crate::task::{Status, Task};
use crate::text::escape;

/// The name of Claude Code's sub-agent tool (`Task` is its legacy alias).
pub const AGENT_TOOL: &str = "Agent";

/// What a task's `name` does, for the note every emitting command prints.
pub const NAME_SPAWNS_TEAMMATE: &str = "with agent teams on (CLAUDE_CODE_EXPERIMENTAL_AGENT_TEAMS), a named Agent call spawns a teammate, addressable by SendMessage, instead of a sub-agent";

/// The input of one Agent tool call: only keys that tool accepts, and of the
/// optional ones only those the task sets (`name`, which spawns a teammate
/// when agent teams are on, only when the task asks for it). Never `team_name`.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct AgentCall {
    pub description: String,
    pub prompt: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    #[schemars(with = "String")]
    pub subagent_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub isolation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub run_in_background: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mode: Option<String>,
}

pub use crate::task::{parse_task_marker, task_marker};

/// The Agent call for a task, and a note when its role is not a known agent type.
fn agent_call(t: &Task, agents: &AgentIndex, extra: Option<&str>) -> (AgentCall, Option<String>) {
    let subagent_type = agents.subagent_type(&t.role);
    let mut prompt = String::with_capacity(t.prompt.len() + 64);
    let note = if subagent_type.is_none() {
        let _ = writeln!(prompt, "Role: {}\n", t.role);
        Some(format!(
            "task {}: no agent type '{}' ({}); it runs as general-purpose with its role named in the prompt",
            t.id,
            t.role,
            agents.why_missing(&t.role)
        ))
    } else {
        None
    };
    prompt.push_str(t.prompt.trim_end_matches(['\n', '\r']));
    if let Some(extra) = extra {
        prompt.push_str("\n\n");
        prompt.push_str(extra);
    }
    prompt.push_str("\n\n");
    prompt.push_str(&task_marker(t.id));
    (
        AgentCall {
            description: t.description.clone(),
            prompt,
            subagent_type,
            model: t.agent.model.clone(),
            isolation: t.agent.isolation.clone(),
            run_in_background: t.agent.background.then_some(true),
            name: t.agent.name.clone(),
            mode: t.agent.mode.clone(),
        },
        note,
    )
}

/// A batch on its way to Claude Code: the tasks that wait to launch, their
/// Agent calls, and what to tell whoever launches them. Every front end that
/// emits a batch (`orch-emit`, `orch-mcp`, `orch-hook`) gets one from
/// [`prepare`], through [`emit`] or [`launch_in`], and only renders it.
#[derive(Debug, Clone)]
pub struct Emission {
    pub batch: i64,
    /// The tasks to launch (those still `batched`), in order.
    pub tasks: Vec<Task>,
    /// Their Agent calls, in the same order.
    pub calls: Vec<AgentCall>,
    /// One note per task whose role is not a known agent type, in task order.
    pub task_notes: Vec<String>,
    /// The notes a command prints: that the batch was emitted before, one
    /// per role that is not a known agent type (naming its tasks), and what
    /// a task's `name` does.
    pub notes: Vec<String>,
}

/// The rendered forms of a batch that need nothing but the batch (the
/// workflow script is [`crate::workflow::render`]'s).
#[derive(Debug, Clone, Copy)]
pub enum Format<'a> {
    Claude,
    Json,
    Markdown,
    /// A script recording results in the database at this path.
    Shell(&'a Path),
}

impl Emission {
    /// The batch in `format`.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Claude => render_claude(&self.calls),
            Format::Json => render_json(self.batch, &self.tasks, &self.calls),
            Format::Markdown => render_markdown(self.batch, &self.tasks, &self.calls),
            Format::Shell(db) => render_shell(self.batch, db, &self.tasks, &self.calls),
        }
    }

    /// SPEC §7's JSON object of the batch.
    pub fn json(&self) -> JsonBatch<'_> {
        JsonBatch {
            batch: self.batch,
            tool: AGENT_TOOL,
            tasks: self.tasks.iter().map(|t| t.id).collect(),
            calls: &self.calls,
        }
    }
}

/// The Agent calls for batch `batch`'s `tasks`, in order, and their notes
/// (see [`Emission`]). `extras[i]`, when present, is appended to the i-th prompt.
pub fn prepare(batch: i64, tasks: Vec<Task>, agents: &AgentIndex, extras: &[String]) -> Emission {
    let mut calls = Vec::with_capacity(tasks.len());
    let mut task_notes = Vec::new();
    let mut unknown: Vec<(&str, Vec<i64>)> = Vec::new();
    for (i, t) in tasks.iter().enumerate() {
        let (call, note) = agent_call(t, agents, extras.get(i).map(String::as_str));
        if let Some(note) = note {
            task_notes.push(note);
            match unknown.iter_mut().find(|(r, _)| *r == t.role) {
                Some((_, ids)) => ids.push(t.id),
                None => unknown.push((&t.role, vec![t.id])),
            }
        }
        calls.push(call);
    }
    let named: Vec<String> = tasks
        .iter()
        .filter(|t| t.agent.name.is_some())
        .map(|t| t.id.to_string())
        .collect();
    let mut notes: Vec<String> = unknown
        .into_iter()
        .map(|(role, ids)| {
            let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
            format!(
                "no agent type '{role}' ({}): task{} {} run{} as general-purpose with a `Role: {role}` line",
                agents.why_missing(role),
                if ids.len() == 1 { "" } else { "s" },
                ids.join(", "),
                if ids.len() == 1 { "s" } else { "" },
            )
        })
        .collect();
    if !named.is_empty() {
        notes.push(format!(
            "task{} {} set{} `name`: {NAME_SPAWNS_TEAMMATE}",
            if named.len() == 1 { "" } else { "s" },
            named.join(", "),
            if named.len() == 1 { "s" } else { "" },
        ));
    }
    Emission {
        batch,
        tasks,
        calls,
        task_notes,
        notes,
    }
}

/// Emits batch `id`, which exists already (`orch-emit`): its waiting tasks
/// prepared, every note given to `note` (before any error), the emission
/// given to `deliver`, and the batch marked emitted only once `deliver`
/// succeeded, so a message that could not be delivered leaves it unemitted.
/// With `mailbox`, each prompt tells its agent its mailbox (SPEC §7), naming
/// the database file when the agents' shells may not find it alone.
pub fn emit<T, E: From<Error>>(
    db: &Db,
    id: i64,
    agents: &AgentIndex,
    mailbox: Option<&Location>,
    mut note: impl FnMut(&str),
    deliver: impl FnOnce(&Emission) -> Result<T, E>,
) -> Result<T, E> {
    let b = batch::get(db, id)?;
    let (_, _, holder, until) = db.read(|tx| batch::lease_in(tx, id))?;
    if let Some(h) = holder.as_deref() {
        if !crate::lease::lapsed(Some(h), until, crate::time::now_ms()) {
            return Err(Error::invalid(format!(
                "batch {id} is being run by orch-run (pid {}); emitting it too would run its tasks twice: wait for that run or stop it",
                crate::lease::pid_of(h).unwrap_or(0)
            ))
            .into());
        }
    }
    if let Some(at) = &b.emitted_at {
        note(&format!(
            "batch {id} was already emitted at {at}; launching it twice runs its tasks twice"
        ));
    }
    let tasks: Vec<Task> = b
        .tasks
        .into_iter()
        .filter(|t| t.status == Status::Batched)
        .collect();
    if tasks.is_empty() {
        return Err(Error::invalid(format!("batch {id} has no task waiting to launch (its tasks already started, finished or were cancelled)")).into());
    }
    let extras = match mailbox {
        Some(loc) => {
            // The agents' shells may not see this --db or ORCH_DB: name the file.
            let named = matches!(loc.source, Source::Flag | Source::Env)
                .then(|| std::path::absolute(&loc.path).unwrap_or(loc.path.clone()));
            mailbox_lines(&tasks, named.as_deref())
        }
        None => Vec::new(),
    };
    let e = prepare(id, tasks, agents, &extras);
    for n in &e.notes {
        note(n);
    }
    let done = deliver(&e)?;
    batch::mark_emitted(db, id)?;
    Ok(done)
}

/// Emits batch `b`, made in the caller's transaction (`orch-mcp`,
/// `orch-hook`): marked emitted in it, and its calls and notes prepared.
pub fn launch_in(tx: &Transaction, b: Batch, agents: &AgentIndex) -> Result<Emission> {
    batch::mark_emitted_in(tx, b.id)?;
    Ok(prepare(b.id, b.tasks, agents, &[]))
}

/// For `orch-emit --with-mailbox`: the mailbox line of each task's prompt, in
/// order, naming every other task of the batch as a peer. `db` is the database
/// file the agents must name with `--db`, if any.
pub fn mailbox_lines(tasks: &[Task], db: Option<&Path>) -> Vec<String> {
    let names = crate::msg::mailbox_names(tasks);
    names
        .iter()
        .enumerate()
        .map(|(i, me)| {
            let peers: Vec<String> = names
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, n)| n.clone())
                .collect();
            crate::msg::mailbox_line(me, &peers, db)
        })
        .collect()
}

/// SPEC §7's `--format json` object.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct JsonBatch<'a> {
    #[schemars(description = "The batch id (for batch_status)")]
    pub batch: i64,
    #[schemars(extend("const" = AGENT_TOOL))]
    pub tool: &'static str,
    #[schemars(description = "Task ids, in the order of calls")]
    pub tasks: Vec<i64>,
    #[schemars(description = "The Agent tool call inputs, all to be sent in one message")]
    pub calls: &'a [AgentCall],
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The message that makes Claude Code start every call at once.
pub fn render_claude(calls: &[AgentCall]) -> String {
    let n = calls.len();
    let json = serde_json::to_string_pretty(calls).unwrap_or_default();
    let mut s = String::with_capacity(json.len() + 512);
    if n == 1 {
        let _ = writeln!(
            s,
            "Launch 1 agent: send ONE message that contains the {AGENT_TOOL} tool call below, and nothing else in that message (no other tool calls, no text). Then wait until the agent has finished before you do anything else."
        );
    } else {
        let _ = writeln!(
            s,
            "Launch {n} agents in parallel: send ONE message that contains all {n} {AGENT_TOOL} tool calls below, and nothing else in that message (no other tool calls, no text). Then wait until every agent has finished before you do anything else."
        );
    }
    s.push('\n');
    let _ = writeln!(
        s,
        "Use each object below, unchanged, as the input of one {AGENT_TOOL} tool call:"
    );
    s.push('\n');
    s.push_str(&json);
    s.push_str("\n\n");
    if n > 1 {
        let _ = writeln!(
            s,
            "Reminder: all {n} {AGENT_TOOL} calls in a single message. Calls sent in separate messages run one after another, not in parallel."
        );
    }
    s
}

/// What to do with a batch's calls, for a reader that gets them as JSON data
/// (MCP's structured content) rather than in [`render_claude`]'s message.
pub fn launch_instruction(n: usize) -> String {
    if n == 1 {
        format!("Launch 1 agent: send ONE message that contains one {AGENT_TOOL} tool call whose input is the object in \"calls\", unchanged, and nothing else in that message (no other tool calls, no text). Then wait until the agent has finished before you do anything else.")
    } else {
        format!("Launch {n} agents in parallel: send ONE message that contains all {n} {AGENT_TOOL} tool calls, one per object in \"calls\", each object used unchanged as the input of one {AGENT_TOOL} call, and nothing else in that message (no other tool calls, no text). Then wait until every agent has finished before you do anything else. {AGENT_TOOL} calls sent in separate messages run one after another, not in parallel.")
    }
}

/// `--format json`.
pub fn render_json(batch: i64, tasks: &[Task], calls: &[AgentCall]) -> String {
    let obj = JsonBatch {
        batch,
        tool: AGENT_TOOL,
        tasks: tasks.iter().map(|t| t.id).collect(),
        calls,
    };
    let mut s = serde_json::to_string(&obj).unwrap_or_default();
    s.push('\n');
    s
}

/// A fence of backticks longer than any run inside `text`.
fn fence_for(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    "`".repeat((longest + 1).max(3))
}

/// `--format markdown`: for people, so stored control characters are shown
/// escaped ([`crate::text::escape`]); the other formats keep the bytes.
pub fn render_markdown(batch: i64, tasks: &[Task], calls: &[AgentCall]) -> String {
    let n = calls.len();
    let mut s = String::new();
    let _ = writeln!(s, "# orch batch {batch}: {n} task{}\n", plural(n));
    let _ = writeln!(
        s,
        "Launch all {n} as {AGENT_TOOL} tool calls in one message, then wait for all of them.\n"
    );
    for (i, (t, c)) in tasks.iter().zip(calls).enumerate() {
        let _ = writeln!(
            s,
            "## {}. {} (task {}, role `{}`)\n",
            i + 1,
            escape(&c.description, false),
            t.id,
            escape(&t.role, false)
        );
        if let Some(ty) = &c.subagent_type {
            let _ = writeln!(s, "Agent type: `{}`\n", escape(ty, false));
        }
        let prompt = escape(&c.prompt, true);
        let fence = fence_for(&prompt);
        let _ = writeln!(s, "{fence}text\n{prompt}\n{fence}\n");
    }
    s
}

pub use crate::text::{sh_quote, sh_word};

/// `--format shell`: a script that runs every task with `claude -p` in the
/// background, waits, and records each result with `orch-queue done`/`fail`.
/// Prompts reach the agent on stdin, so no prompt text is ever parsed by the shell
/// or taken for an option of the agent CLI. Each agent gets `ORCH_TASK_ID` and
/// `ORCH_BATCH_ID`, as under `orch-run`, so orch's hooks stay out of it.
pub fn render_shell(batch: i64, db: &Path, tasks: &[Task], calls: &[AgentCall]) -> String {
    let n = calls.len();
    let mut s = String::new();
    let _ = writeln!(s, "#!/bin/sh");
    let _ = writeln!(
        s,
        "# orch batch {batch}: runs {n} task{} in parallel with `claude -p` and records each result.",
        plural(n)
    );
    s.push_str(
        "# Made by orch-emit --format shell. Override the agent with CLAUDE=..., orch-queue with ORCH_QUEUE=...\n",
    );
    s.push_str("set -u\n");
    s.push_str("CLAUDE=${CLAUDE:-claude}\n");
    s.push_str("ORCH_QUEUE=${ORCH_QUEUE:-orch-queue}\n");
    let _ = writeln!(s, "batch={batch}");
    let _ = writeln!(s, "ORCH_DB={}", sh_quote(&db.to_string_lossy()));
    s.push_str("export ORCH_DB\n");
    let _ = writeln!(
        s,
        "out=$(mktemp -d \"${{TMPDIR:-/tmp}}/orch-batch-{batch}.XXXXXX\") || exit 2"
    );
    s.push_str(
        r#"
run_task() {
  id=$1
  "$ORCH_QUEUE" start "$id" || return 1
  if printf '%s' "$2" | ORCH_TASK_ID=$id ORCH_BATCH_ID=$batch "$CLAUDE" -p >"$out/$id.out" 2>"$out/$id.err"; then
    "$ORCH_QUEUE" done "$id" --result - <"$out/$id.out" ||
      "$ORCH_QUEUE" done "$id" --result "(orch: the agent's output was not UTF-8 text or was over 16 MiB, so it was not kept)"
  else
    code=$?
    # tail -c may cut a character in two: without the text, the task still fails.
    "$ORCH_QUEUE" fail "$id" --exit-code "$code" --error "agent exited with status $code: $(tail -c 2000 "$out/$id.err")" ||
      "$ORCH_QUEUE" fail "$id" --exit-code "$code" --error "agent exited with status $code"
  fi
}

"#,
    );
    for (t, c) in tasks.iter().zip(calls) {
        let _ = writeln!(s, "run_task {} {} &", t.id, sh_quote(&c.prompt));
    }
    s.push_str("wait\n");
    let _ = writeln!(s, "rm -rf \"$out\"");
    let _ = writeln!(s, "\"$ORCH_QUEUE\" list --batch {batch}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_call_reads_as_one() {
        let call = AgentCall {
            description: "Map the layout".into(),
            prompt: "List the directories\n\norch-task: 1".into(),
            subagent_type: None,
            ..Default::default()
        };
        let one = render_claude(std::slice::from_ref(&call));
        assert!(one.starts_with(
            "Launch 1 agent: send ONE message that contains the Agent tool call below"
        ));
        assert!(
            !one.contains("all 1") && !one.contains("in parallel"),
            "{one}"
        );
        let two = render_claude(&[call.clone(), call]);
        assert!(two.starts_with("Launch 2 agents in parallel: send ONE message that contains all 2 Agent tool calls below"));
        assert!(two
            .trim_end()
            .ends_with("run one after another, not in parallel."));
    }

    #[test]
    fn marker_round_trips() {
        assert_eq!(parse_task_marker("do it\n\norch-task: 42"), Some(42));
        assert_eq!(
            parse_task_marker("orch-task: 1\nlater\norch-task: 7\n"),
            Some(7)
        );
        assert_eq!(parse_task_marker("nothing"), None);
    }

    #[test]
    fn sh_quote_handles_quotes() {
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn fence_outgrows_backticks() {
        assert_eq!(fence_for("a ```` b"), "`````");
        assert_eq!(fence_for("plain"), "```");
    }
}
