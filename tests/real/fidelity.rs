//! Fidelity to Claude Code: what the real CLI does with hooks, result
//! statuses, large batches and `name`, and what orch must make of it.

use std::path::Path;
use std::process::Stdio;

use crate::common::{assert_code, bin, Env};
use crate::harness::*;

fn queued(env: &Env, dir: &Path, n: usize) -> Vec<i64> {
    let prompts: Vec<String> = (1..=n).map(|i| format!("Task number {i}")).collect();
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    queue(env, dir, &refs)
}

/// `orch-hook status` in `dir`: (exit code, stdout + stderr).
fn hook_status(env: &Env, dir: &Path) -> (i32, String) {
    let out = env
        .cmd("orch-hook")
        .arg("status")
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap(), text)
}

/// The `hooks` check of `orch doctor --json` run in `dir`.
fn doctor_hooks(env: &Env, dir: &Path) -> serde_json::Value {
    let out = env
        .cmd("orch")
        .args(["doctor", "--json"])
        .current_dir(dir)
        .output()
        .unwrap();
    crate::common::json_lines(&String::from_utf8_lossy(&out.stdout))
        .into_iter()
        .find(|c| c["check"] == "hooks")
        .expect("orch doctor has a hooks check")
}

fn agent_call_count(env: &Env) -> i64 {
    env.sql()
        .query_row("SELECT COUNT(*) FROM agent_calls", [], |r| r.get(0))
        .unwrap()
}

/// Issue item 4: project settings are read from the directory Claude Code was
/// started in; hooks installed at the repository root do not fire when it
/// starts in a subdirectory, and `orch-hook status` there must say so and
/// offer the fix. User-scope hooks fire anywhere.
#[test]
fn hooks_at_the_repo_root_do_not_fire_in_a_subdirectory_and_status_tells_the_truth() {
    let env = Env::new();
    let dir = project(&env);
    let sub = dir.join("src/deep");
    std::fs::create_dir_all(&sub).unwrap();
    ok_in(&env, &dir, "orch-hook", &["install"]);
    assert!(dir.join(".claude/settings.json").is_file());
    let model = Model::start(&env, "obedient", 0.0);

    // What the CLI does: started in the subdirectory, it never runs the hooks.
    queued(&env, &dir, 2);
    let message = batch_message(&env, &dir, 2);
    claude_p(&env, &model, &sub, &message, &[]);
    assert_eq!(model.agent_messages().len(), 1, "the agents were launched");
    assert_eq!(agent_call_count(&env), 0, "no hook fired");

    let (code_root_only, text_root_only) = hook_status(&env, &sub);
    let doctor_root_only = doctor_hooks(&env, &sub);

    // The fix works: hooks in user scope fire in the subdirectory.
    ok_in(&env, &sub, "orch-hook", &["install", "--user"]);
    let (code, text) = hook_status(&env, &sub);
    assert_eq!(code, 0, "{text}");
    assert_eq!(doctor_hooks(&env, &sub)["status"], "ok");
    let before = model.agent_messages().len();
    queued(&env, &dir, 2);
    let message = batch_message(&env, &dir, 2);
    claude_p(&env, &model, &sub, &message, &[]);
    assert_eq!(model.agent_messages().len(), before + 1);
    let done: Vec<_> = statuses(&env)
        .into_iter()
        .filter(|(id, _)| *id > 2)
        .collect();
    assert!(done.iter().all(|(_, s)| s == "done"), "{done:?}");

    // What orch must say where only the root has them: not installed for a
    // session started here, and how to fix it (`orch-hook install` or
    // `orch hook install`, here or in user scope).
    assert_eq!(
        code_root_only, 1,
        "status in the subdirectory: {text_root_only}"
    );
    assert!(
        text_root_only.contains("hook install"),
        "status offers the fix: {text_root_only}"
    );
    assert_ne!(doctor_root_only["status"], "ok", "{doctor_root_only}");
    assert!(
        doctor_root_only["fix"]
            .as_str()
            .unwrap_or_default()
            .contains("hook install"),
        "doctor offers the fix: {doctor_root_only}"
    );
}

/// Issue item 5: a background agent's PostToolUse says `async_launched`, a
/// foreground one's `completed`; each task ends done with the agent's own
/// answer, and a background one only once the agent has really finished.
#[test]
fn result_statuses_async_launched_and_completed_each_end_their_task_with_the_answer() {
    for (scenario, launched_async) in [("obedient", true), ("foreground", false)] {
        let env = Env::new();
        let dir = project(&env);
        ok_in(&env, &dir, "orch-hook", &["install"]);
        let ids = queued(&env, &dir, 2);
        let message = batch_message(&env, &dir, 2);
        let model = Model::start(&env, scenario, 2.0);
        claude_p(&env, &model, &dir, &message, &[]);

        let results: Vec<String> = model
            .by_role("main")
            .iter()
            .flat_map(tool_results)
            .map(|r| r["content"].to_string())
            .collect();
        assert_eq!(
            results.iter().any(|t| t.contains("Async agent launched")),
            launched_async,
            "{scenario}: {results:?}"
        );
        for id in ids {
            let (status, result) = task_row(&env, id);
            assert_eq!(status, "done", "{scenario}: task {id}");
            assert!(
                result
                    .unwrap_or_default()
                    .contains(&format!("finished task {id}")),
                "{scenario}: task {id} holds the agent's answer"
            );
            let (start, end): (i64, i64) = env
                .sql()
                .query_row(
                    "SELECT started_at, finished_at FROM tasks WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            assert!(
                end - start >= 1900,
                "{scenario}: task {id} ended when its agent did, not at launch ({} ms)",
                end - start
            );
        }
    }
}

/// Issue item 7: how many Agent calls of one message start together with the
/// pinned Claude Code. Measured with 2.1.332: all 12 (see docs/development.md).
/// orch must not warn that more than 10 may not start at once.
#[test]
fn twelve_agent_calls_of_one_message_all_start_together() {
    let env = Env::new();
    let dir = project(&env);
    ok_in(&env, &dir, "orch-hook", &["install"]);
    let ids = queued(&env, &dir, 12);
    let batch = ok_in(&env, &dir, "orch-batch", &["create", "--max", "12"]);
    let out = env
        .cmd("orch-emit")
        .arg(batch.trim())
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_code(&out, 0);
    let warning = String::from_utf8_lossy(&out.stderr).to_string();
    let message = String::from_utf8(out.stdout).unwrap();
    let model = Model::start(&env, "obedient", 5.0);
    claude_p(&env, &model, &dir, &message, &[]);

    let launched = model.agent_messages();
    assert_eq!(launched.len(), 1);
    assert_eq!(launched[0].len(), 12);
    let v = session_verdict(&env, &dir);
    assert_eq!(v["peak"], 12, "all 12 running at one instant: {v}");
    assert_eq!(v["verdict"], "PARALLEL");
    assert!(ids.iter().all(|id| task_row(&env, *id).0 == "done"));
    assert!(
        !warning.contains("may not all start at once"),
        "no size warning that the measurement contradicts: {warning}"
    );
}

/// Issue item 7, in orch-mcp: the tool schemas the model loads (Claude Code
/// defers MCP tools until ToolSearch selects them) make no claim about 10
/// calls that the measurement contradicts.
#[test]
fn the_mcp_tools_the_model_sees_make_no_unfounded_size_claim() {
    let env = Env::new();
    let dir = project(&env);
    let model = Model::start(&env, "mcp", 0.0);
    let db = format!("ORCH_DB={}", env.db.display());
    let mcp = bin("orch-mcp");
    let add = ["mcp", "add", "orch", "-e", &db, "--", mcp.to_str().unwrap()];
    assert_code(
        &run_bounded(claude_cmd(&env, &model, &dir, &add), CLAUDE_LIMIT),
        0,
    );
    let allow = "mcp__orch__queue_parallel_task mcp__orch__execute_parallel_batch";
    claude_p(&env, &model, &dir, "Use orch.", &["--allowedTools", allow]);
    let schemas: Vec<String> = model
        .by_role("main")
        .iter()
        .flat_map(|r| r["body"]["tools"].as_array().cloned().unwrap_or_default())
        .filter(|t| t["name"] == "mcp__orch__execute_parallel_batch")
        .map(|t| t.to_string())
        .collect();
    assert!(
        !schemas.is_empty(),
        "the model loaded execute_parallel_batch's schema"
    );
    for s in schemas {
        assert!(
            !s.contains("may not all start at once"),
            "no unfounded size claim reaches the model: {s}"
        );
    }
}

/// Issue item 8: with agent teams on, `name` on an Agent call makes a
/// teammate, not a sub-agent. orch never emits it, so its calls launch plain
/// sub-agents that end their tasks.
#[test]
fn name_is_never_emitted_so_agent_teams_still_get_sub_agents() {
    let env = Env::new();
    let dir = project(&env);
    ok_in(&env, &dir, "orch-hook", &["install"]);
    let ids = queued(&env, &dir, 2);
    let message = batch_message(&env, &dir, 2);
    let model = Model::start(&env, "obedient", 0.0);
    let mut c = claude_cmd(&env, &model, &dir, &["-p", &message]);
    c.env("CLAUDE_CODE_EXPERIMENTAL_AGENT_TEAMS", "1");
    assert_code(&run_bounded(c, CLAUDE_LIMIT), 0);

    // Teams are on: the Agent tool offers `name` to the model ...
    let main = model.by_role("main");
    let agent_tool = main[0]["body"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "Agent")
        .unwrap()
        .clone();
    assert!(agent_tool["input_schema"]["properties"]["name"].is_object());
    // ... and orch's calls do not use it: sub-agents ran and ended the tasks.
    let calls = model.agent_messages().concat();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c.get("name").is_none()), "{calls:?}");
    assert_eq!(model.by_role("agent").len(), 2, "two sub-agents ran");
    assert!(ids.iter().all(|id| task_row(&env, *id).0 == "done"));
}

/// Issue item 8, through MCP: a task may ask for `name` (issue 13's Agent
/// options), and the model is told, in the structured content it sees, that a
/// named call spawns a teammate when agent teams are on.
#[test]
fn a_task_asking_for_an_agent_name_is_queued_and_the_model_is_told_what_it_does() {
    let env = Env::new();
    let dir = project(&env);
    let model = Model::start(&env, "mcp", 0.0);
    let db = format!("ORCH_DB={}", env.db.display());
    let mcp = bin("orch-mcp");
    let add = ["mcp", "add", "orch", "-e", &db, "--", mcp.to_str().unwrap()];
    assert_code(
        &run_bounded(claude_cmd(&env, &model, &dir, &add), CLAUDE_LIMIT),
        0,
    );
    let allow = "mcp__orch__queue_parallel_task mcp__orch__execute_parallel_batch";
    let prompt = "Use orch.\nqueue-with: {\"name\": \"mate\"}";
    claude_p(&env, &model, &dir, prompt, &["--allowedTools", allow]);

    let main = model.by_role("main");
    let queue_ids: Vec<serde_json::Value> = main
        .iter()
        .flat_map(|r| r["answer"].as_array().cloned().unwrap_or_default())
        .filter(|b| b["name"] == "mcp__orch__queue_parallel_task")
        .map(|b| b["id"].clone())
        .collect();
    assert_eq!(queue_ids.len(), 3);
    let results: Vec<serde_json::Value> = main
        .iter()
        .flat_map(tool_results)
        .filter(|r| queue_ids.contains(&r["tool_use_id"]))
        .collect();
    assert!(!results.is_empty());
    for r in &results {
        assert_ne!(r["is_error"], true, "{r}");
        assert!(
            r["content"].to_string().contains("spawns a teammate"),
            "the model is told what a name does: {r}"
        );
    }
    assert!(
        statuses(&env).len() == 3,
        "the three named tasks were queued: {:?}",
        statuses(&env)
    );
}
