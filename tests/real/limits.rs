//! Long runs against the real CLI: error classes from its own error results
//! (the scripted model answers 429, 529 and 401, `claude -p --output-format
//! json` reports them as it does for the real API, and orch-run classifies
//! each attempt); the attempts of tasks run inside Claude Code, orch-mcp's
//! (runner `mcp`) and the hook's, with what the real Agent tool reported.

use std::process::Command;

use serde_json::Value;

use crate::common::{assert_code, bin, Env};
use crate::harness::*;

#[test]
fn issue14_real_cli_error_results_are_classified() {
    let env = Env::new();
    let dir = project(&env);
    let ids = queue(
        &env,
        &dir,
        &[
            "Say hi\nmodel-error: 429",
            "Say hi\nmodel-error: 529",
            "Say hi\nmodel-error: 401",
        ],
    );
    let batch = ok_in(&env, &dir, "orch-batch", &["create"]);
    let model = Model::start(&env, "obedient", 0.0);
    let mut c = Command::new(bin("orch-run"));
    claude_env(&mut c, &env, &model);
    // The CLI's own retries off: each error is one attempt's answer.
    c.env("CLAUDE_CODE_MAX_RETRIES", "0")
        .args([batch.trim(), "--agent", "claude", "--retries", "0"])
        .current_dir(&dir);
    let out = run_bounded(c, CLAUDE_LIMIT);
    assert_code(&out, 1);
    for (id, want) in ids.iter().zip(["rate_limited", "overloaded", "auth"]) {
        let a = ok_in(
            &env,
            &dir,
            "orch-queue",
            &["attempts", &id.to_string(), "--json"],
        );
        let a: Value = serde_json::from_str(a.lines().next().unwrap()).unwrap();
        assert_eq!(a["error_class"], want, "task {id}: {a}");
        assert_eq!(a["outcome"], "failed");
    }
}

/// The fields orch-hook reads from the Agent tool's PostToolUse response,
/// against the installed Claude Code's own declaration of that response
/// (`AgentOutput`, its completed form, in `sdk-tools.d.ts`).
#[test]
fn issue14_the_agent_response_fields_orch_keeps_are_the_installed_claude_codes() {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/claude_code/node_modules/@anthropic-ai/claude-code/sdk-tools.d.ts");
    let text = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}: run scripts/test-deps.sh", p.display()));
    let start = text
        .find("export type AgentOutput =")
        .expect("AgentOutput in sdk-tools.d.ts");
    let body = &text[start..];
    // Its first form is the completed agent's; each form starts at "| {".
    let first = body.find("\n  | {").expect("the forms of AgentOutput") + 1;
    let rest = &body[first..];
    let completed = &rest[..rest[1..].find("\n  | {").expect("a second form") + 1];
    assert!(completed.contains("status: \"completed\";"), "{completed}");
    let fields: Vec<&str> = completed.lines().map(str::trim).collect();
    for f in [
        "agentId: string;",
        "totalTokens: number;",
        "totalDurationMs: number;",
        "resolvedModel?: string;",
        "modelsUsed?: string[];",
        "usage: {",
        "input_tokens: number;",
        "output_tokens: number;",
        "cache_creation_input_tokens: number | null;",
        "cache_read_input_tokens: number | null;",
    ] {
        assert!(
            fields.contains(&f),
            "AgentOutput has no `{f}`:\n{completed}"
        );
    }
}

/// orch-mcp registered with `claude mcp add` and orch-hook installed: the
/// model queues three tasks and executes the batch through MCP, Claude Code
/// runs the Agent calls (in the background, as `claude -p` does), and each
/// task's attempt is orch-mcp's (runner `mcp`), closed done, with the model
/// the launch named. A background agent's tokens reach no hook: none are
/// recorded, not a zero.
#[test]
fn issue14_real_mcp_tasks_have_attempts_of_runner_mcp() {
    let env = Env::new();
    let dir = project(&env);
    ok_in(&env, &dir, "orch-hook", &["install"]);
    let model = Model::start(&env, "mcp", 0.5);
    let db = format!("ORCH_DB={}", env.db.display());
    let mcp = bin("orch-mcp");
    let add = ["mcp", "add", "orch", "-e", &db, "--", mcp.to_str().unwrap()];
    let out = run_bounded(claude_cmd(&env, &model, &dir, &add), CLAUDE_LIMIT);
    assert_code(&out, 0);
    claude_p(
        &env,
        &model,
        &dir,
        "Use orch to run three tasks in parallel.",
        &[
            "--allowedTools",
            "mcp__orch__queue_parallel_task mcp__orch__execute_parallel_batch",
        ],
    );
    let all = statuses(&env);
    assert_eq!(all.len(), 3, "{all:?}");
    for (id, s) in &all {
        assert_eq!(s, "done", "task {id}");
        let a = only_attempt(&env, &dir, *id);
        assert_eq!(a["runner"], "mcp", "task {id}: {a}");
        assert_eq!(a["outcome"], "done", "task {id}: {a}");
        assert!(
            a["model"].as_str().is_some_and(|m| !m.is_empty()),
            "the launch's resolvedModel: {a}"
        );
        for k in ["total_tokens", "input_tokens", "cost_usd"] {
            assert!(a.get(k).is_none(), "task {id}: no {k} was reported: {a}");
        }
    }
}

/// A foreground Agent call's PostToolUse carries `totalTokens` and `usage`:
/// orch-hook keeps them on the task's attempt, as the real tool counted them,
/// and `orch status` shows them for the batch.
#[test]
fn issue14_real_foreground_agents_attempts_keep_their_total_tokens() {
    let env = Env::new();
    let dir = project(&env);
    ok_in(&env, &dir, "orch-hook", &["install"]);
    let ids = queue(&env, &dir, &["Say hi", "Say bye"]);
    let message = batch_message(&env, &dir, 2);
    let model = Model::start(&env, "foreground", 0.5);
    claude_p(&env, &model, &dir, &message, &[]);
    for id in &ids {
        assert_eq!(task_row(&env, *id).0, "done", "task {id}");
        let a = only_attempt(&env, &dir, *id);
        assert_eq!(a["runner"], "hook", "task {id}: {a}");
        let total = a["total_tokens"]
            .as_i64()
            .unwrap_or_else(|| panic!("task {id}: totalTokens not kept: {a}"));
        let input = a["input_tokens"].as_i64().expect("usage.input_tokens");
        let output = a["output_tokens"].as_i64().expect("usage.output_tokens");
        assert!(total > 0 && input > 0 && output > 0, "task {id}: {a}");
        assert!(a["duration_ms"].as_i64().is_some(), "task {id}: {a}");
        assert!(a.get("cost_usd").is_none(), "task {id}: {a}");
    }
    let st = ok_in(&env, &dir, "orch", &["status"]);
    assert!(
        st.contains("no cost reported over 2 attempts; tokens"),
        "{st}"
    );
    assert!(st.contains(" in all"), "{st}");
}

/// The one attempt of task `id`, from `orch-queue attempts ID --json`.
fn only_attempt(env: &Env, dir: &std::path::Path, id: i64) -> Value {
    let a = ok_in(
        env,
        dir,
        "orch-queue",
        &["attempts", &id.to_string(), "--json"],
    );
    let lines: Vec<Value> = a
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "task {id}: {a}");
    lines.into_iter().next().unwrap()
}
