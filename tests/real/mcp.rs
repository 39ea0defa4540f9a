//! MCP: orch-mcp registered with `claude mcp add`; the model queues three
//! tasks and executes the batch through it, then launches the calls.

use crate::common::{bin, Env};
use crate::harness::*;

const TOOLS: &str = "mcp__orch__queue_parallel_task mcp__orch__execute_parallel_batch";

/// Registers orch-mcp for the project the way `orch-mcp --config` says.
fn register(env: &Env, model: &Model, dir: &std::path::Path) {
    let db = format!("ORCH_DB={}", env.db.display());
    let mcp = bin("orch-mcp");
    let args = ["mcp", "add", "orch", "-e", &db, "--", mcp.to_str().unwrap()];
    let out = run_bounded(claude_cmd(env, model, dir, &args), CLAUDE_LIMIT);
    crate::common::assert_code(&out, 0);
}

#[test]
fn mcp_model_queues_three_tasks_executes_the_batch_and_launches_it_parallel() {
    let env = Env::new();
    let dir = project(&env);
    ok_in(&env, &dir, "orch-hook", &["install"]);
    let model = Model::start(&env, "mcp", 3.0);
    register(&env, &model, &dir);
    claude_p(
        &env,
        &model,
        &dir,
        "Use orch to run three tasks in parallel.",
        &["--allowedTools", TOOLS],
    );

    // Three queue_parallel_task calls and one execute_parallel_batch reached
    // orch-mcp (the tasks are in orch's database, in one batch) ...
    let all = statuses(&env);
    assert_eq!(all.len(), 3, "{all:?}");
    let batches: i64 = env
        .sql()
        .query_row(
            "SELECT COUNT(DISTINCT batch_id) FROM tasks WHERE batch_id IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(batches, 1);
    // ... and the model launched the batch's calls from one message.
    let launched = model.agent_messages();
    assert_eq!(launched.len(), 1, "{launched:?}");
    assert_eq!(launched[0].len(), 3);
    let v = session_verdict(&env, &dir);
    assert_eq!(v["verdict"], "PARALLEL", "{v}");
    assert!(all.iter().all(|(_, s)| s == "done"), "{all:?}");
}

/// Issue item 2: when a tool result has structuredContent, Claude Code shows the
/// model only that JSON; the instruction to send every call in ONE message must
/// be inside it.
#[test]
fn mcp_instructions_reach_the_model_in_structured_content() {
    let env = Env::new();
    let dir = project(&env);
    let model = Model::start(&env, "mcp", 0.0);
    register(&env, &model, &dir);
    claude_p(
        &env,
        &model,
        &dir,
        "Use orch to run three tasks in parallel.",
        &["--allowedTools", TOOLS],
    );

    let main = model.by_role("main");
    let execute_id = main
        .iter()
        .flat_map(|r| r["answer"].as_array().cloned().unwrap_or_default())
        .find(|b| b["name"] == "mcp__orch__execute_parallel_batch")
        .expect("the model called execute_parallel_batch")["id"]
        .clone();
    let result = main
        .iter()
        .flat_map(tool_results)
        .find(|r| r["tool_use_id"] == execute_id)
        .expect("its result reached the model");
    let seen = result["content"].to_string();
    assert!(
        seen.contains("orch-task: 1"),
        "the calls reached the model: {seen}"
    );
    assert!(
        seen.to_lowercase().contains("one message"),
        "the instruction to send all calls in ONE message reached the model: {seen}"
    );
}
