//! Claude Code's hook input and output formats, as serde structs.
//!
//! Inputs keep only the fields orch reads and ignore the rest (Claude Code adds
//! fields between versions); a field orch reads that has the wrong type is an
//! error. Outputs are the two shapes orch prints: `additionalContext` for
//! `UserPromptSubmit` and `{"decision": "block"}` for `Stop`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The tool name of Claude Code's sub-agent tool, and its legacy alias.
pub const AGENT_TOOLS: [&str; 2] = ["Agent", "Task"];

pub use crate::claude::hooks::Kind;

/// The fields every event carries that orch reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Common {
    pub session_id: String,
    #[serde(default)]
    pub hook_event_name: Option<String>,
    #[serde(default)]
    pub cwd: Option<String>,
}

/// The Agent tool's input, as far as orch reads it (other keys are ignored).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AgentInput {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default)]
    pub subagent_type: Option<String>,
}

/// `PreToolUse`, `PostToolUse` and `PostToolUseFailure`.
#[derive(Debug, Clone, Deserialize)]
pub struct ToolEvent {
    pub session_id: String,
    pub tool_name: String,
    pub tool_use_id: String,
    /// Read as a value first: only Agent calls are parsed as [`AgentInput`].
    #[serde(default)]
    pub tool_input: Value,
    /// `PostToolUse`: for Agent, [`AgentResponse`] (or a plain string in old versions).
    #[serde(default)]
    pub tool_response: Option<Value>,
    /// `PostToolUseFailure`: what went wrong.
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub is_interrupt: Option<bool>,
    #[serde(default)]
    pub duration_ms: Option<u64>,
}

/// One content block of an Agent result.
#[derive(Debug, Clone, Deserialize)]
pub struct ContentBlock {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
}

/// The Agent tool's `tool_response` in `PostToolUse`; see [`Launch`] for its
/// `status`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentResponse {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub agent_id: Option<String>,
    #[serde(default)]
    pub content: Vec<ContentBlock>,
    #[serde(default)]
    pub total_duration_ms: Option<u64>,
}

/// What an Agent call's result says happened (its `status`: `completed |
/// async_launched | remote_launched | teammate_spawned` in Claude Code's
/// `AgentOutput`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launch {
    /// `completed` (or no status, as older versions answered): the agent ran
    /// and its answer is in `content`.
    Completed,
    /// `async_launched`: a background agent that is still running; its
    /// `SubagentStop` (same `agentId`) ends it.
    Background,
    /// `teammate_spawned`: with agent teams on, a teammate that works on in
    /// its own context and is not done.
    Teammate,
    /// `remote_launched`: an agent started in a cloud session; nothing here
    /// will see it end.
    Remote,
    /// A status this version of orch does not know: not taken for done.
    Unknown,
}

impl Launch {
    /// The `agent_calls.status` of a call that got this result.
    pub fn call_status(self) -> &'static str {
        match self {
            Launch::Completed => "done",
            Launch::Background | Launch::Unknown => "launched",
            Launch::Teammate => "teammate",
            Launch::Remote => "remote",
        }
    }
}

/// The `agent_calls.status` values of calls that started an agent which is
/// still at work somewhere.
pub const LAUNCHED: [&str; 3] = ["launched", "teammate", "remote"];

impl AgentResponse {
    /// What the call's `status` says.
    pub fn launch(&self) -> Launch {
        match self.status.as_deref() {
            None | Some("completed") => Launch::Completed,
            Some("async_launched") => Launch::Background,
            Some("teammate_spawned") => Launch::Teammate,
            Some("remote_launched") => Launch::Remote,
            Some(_) => Launch::Unknown,
        }
    }

    /// The agent's result: its text blocks joined by blank lines.
    pub fn text(&self) -> String {
        self.content
            .iter()
            .filter(|b| matches!(b.kind.as_deref(), None | Some("text")))
            .filter_map(|b| b.text.as_deref())
            .collect::<Vec<_>>()
            .join("\n\n")
    }
}

/// One call in `PostToolBatch`'s `tool_calls`.
#[derive(Debug, Clone, Deserialize)]
pub struct BatchCall {
    pub tool_name: String,
    pub tool_use_id: String,
    #[serde(default)]
    pub tool_input: Value,
    #[serde(default)]
    pub tool_response: Option<Value>,
}

/// `PostToolBatch`: once per resolved group of parallel tool calls.
#[derive(Debug, Clone, Deserialize)]
pub struct BatchEvent {
    pub session_id: String,
    #[serde(default)]
    pub tool_calls: Vec<BatchCall>,
}

/// `SubagentStart` and `SubagentStop`.
#[derive(Debug, Clone, Deserialize)]
pub struct SubagentEvent {
    pub session_id: String,
    pub agent_id: String,
    #[serde(default)]
    pub agent_type: Option<String>,
    #[serde(default)]
    pub last_assistant_message: Option<String>,
    #[serde(default)]
    pub stop_hook_active: Option<bool>,
    /// `SubagentStop`: the agent's own transcript (JSON Lines).
    #[serde(default)]
    pub agent_transcript_path: Option<String>,
}

/// `TaskCreated` and `TaskCompleted`: a task of Claude Code's native task list.
#[derive(Debug, Clone, Deserialize)]
pub struct TaskEvent {
    pub session_id: String,
    pub task_id: String,
    #[serde(default)]
    pub task_subject: Option<String>,
    #[serde(default)]
    pub task_description: Option<String>,
}

/// `UserPromptSubmit` and `Stop`.
#[derive(Debug, Clone, Deserialize)]
pub struct TurnEvent {
    pub session_id: String,
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default)]
    pub stop_hook_active: Option<bool>,
    /// `Stop`: what still runs in the background (agents, workflows, shells).
    #[serde(default)]
    pub background_tasks: Vec<super::workflow::BackgroundTask>,
}

/// `hookSpecificOutput` of `UserPromptSubmit`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SpecificOutput {
    pub hook_event_name: String,
    pub additional_context: String,
}

/// What a hook prints on stdout (exit 0) to talk back to Claude Code.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Output {
    /// `{"hookSpecificOutput": {"hookEventName": …, "additionalContext": …}}`
    Context {
        #[serde(rename = "hookSpecificOutput")]
        hook_specific_output: SpecificOutput,
    },
    /// `{"decision": "block", "reason": …}`
    Block { decision: Decision, reason: String },
    /// PreToolUse: `{"hookSpecificOutput": {"hookEventName": "PreToolUse",
    /// "permissionDecision": "deny", "permissionDecisionReason": …}}`
    Deny {
        #[serde(rename = "hookSpecificOutput")]
        hook_specific_output: DenyOutput,
    },
}

/// `hookSpecificOutput` of a PreToolUse denial.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DenyOutput {
    pub hook_event_name: String,
    pub permission_decision: String,
    pub permission_decision_reason: String,
}

/// The one decision orch takes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Block,
}

impl Output {
    pub fn context(event: Kind, text: String) -> Output {
        Output::Context {
            hook_specific_output: SpecificOutput {
                hook_event_name: event.name().to_string(),
                additional_context: text,
            },
        }
    }

    pub fn deny(reason: String) -> Output {
        Output::Deny {
            hook_specific_output: DenyOutput {
                hook_event_name: Kind::PreToolUse.name().to_string(),
                permission_decision: "deny".into(),
                permission_decision_reason: reason,
            },
        }
    }

    pub fn block(reason: String) -> Output {
        Output::Block {
            decision: Decision::Block,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_have_claude_codes_shape() {
        let v = serde_json::to_value(Output::context(Kind::UserPromptSubmit, "hi".into())).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"hookSpecificOutput": {"hookEventName": "UserPromptSubmit", "additionalContext": "hi"}})
        );
        let v = serde_json::to_value(Output::block("go".into())).unwrap();
        assert_eq!(v, serde_json::json!({"decision": "block", "reason": "go"}));
    }

    #[test]
    fn agent_text_joins_text_blocks() {
        let r: AgentResponse = serde_json::from_value(serde_json::json!({
            "status": "completed", "agentId": "a1",
            "content": [{"type": "text", "text": "one"}, {"type": "image"}, {"type": "text", "text": "two"}]
        }))
        .unwrap();
        assert_eq!(r.text(), "one\n\ntwo");
        assert_eq!(r.agent_id.as_deref(), Some("a1"));
    }
}
