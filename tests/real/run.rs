//! orch-run with `--agent claude` (and `orch-emit --format shell`): the real
//! CLI as the headless agent, against the scripted model.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::{assert_code, bin, Env};
use crate::harness::*;

/// `orch-run ARGS` in `dir` with Claude Code's environment (the pinned CLI is
/// `claude` on PATH, the model is the scripted one).
fn orch_run(env: &Env, model: &Model, dir: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(bin("orch-run"));
    claude_env(&mut c, env, model);
    c.args(args).current_dir(dir);
    run_bounded(c, CLAUDE_LIMIT)
}

/// `orch-queue show ID --json`, parsed.
fn show(env: &Env, dir: &Path, id: i64) -> Value {
    serde_json::from_str(&ok_in(
        env,
        dir,
        "orch-queue",
        &["show", &id.to_string(), "--json"],
    ))
    .unwrap()
}

/// Every (key, value) pair in a JSON tree, outside raw captured output (a
/// record must hold the field itself, not a copy of the agent's stdout).
fn fields(v: &Value, key: &str, out: &mut Vec<(String, Value)>) {
    if ["log", "output", "stdout", "stderr", "raw"].contains(&key) {
        return;
    }
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                out.push((k.clone(), x.clone()));
                fields(x, k, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| fields(x, key, out)),
        Value::String(s) => {
            // A field may hold JSON text (e.g. usage stored as a string).
            if let Ok(inner @ (Value::Object(_) | Value::Array(_))) =
                serde_json::from_str::<Value>(s)
            {
                fields(&inner, key, out);
            }
        }
        _ => {}
    }
}

fn all_fields(v: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    fields(v, "", &mut out);
    out
}

/// The Claude Code session ids of the requests whose first user text holds `marker`.
fn sessions_with(model: &Model, marker: &str) -> Vec<String> {
    let mut ids: Vec<String> = model
        .requests()
        .iter()
        .filter(|r| request_text(r).contains(marker))
        .filter_map(|r| {
            let h = r["headers"].as_object()?;
            h.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("x-claude-code-session-id"))
                .and_then(|(_, v)| v.as_str().map(String::from))
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

#[test]
fn orch_run_agent_claude_records_results_cost_and_session_ids() {
    let env = Env::new();
    let dir = project(&env);
    let ids = queue(&env, &dir, &["Summarise alpha", "Summarise beta"]);
    let batch = ok_in(&env, &dir, "orch-batch", &["create"]);
    let model = Model::start(&env, "obedient", 0.0);
    let out = orch_run(&env, &model, &dir, &[batch.trim(), "--agent", "claude"]);
    assert_code(&out, 0);

    for (id, prompt) in ids.iter().zip(["Summarise alpha", "Summarise beta"]) {
        let (status, result) = task_row(&env, *id);
        assert_eq!(status, "done", "task {id}");
        assert_eq!(
            result.as_deref(),
            Some(format!("done: {prompt}").as_str()),
            "the CLI's result is the task's result"
        );
        let sessions = sessions_with(&model, prompt);
        assert_eq!(
            sessions.len(),
            1,
            "one Claude Code session per task: {sessions:?}"
        );
        let record = all_fields(&show(&env, &dir, *id));
        assert!(
            record
                .iter()
                .any(|(_, v)| v.as_str() == Some(sessions[0].as_str())),
            "task {id} records its Claude Code session id {}: {record:?}",
            sessions[0]
        );
        assert!(
            record
                .iter()
                .any(|(k, v)| k.to_lowercase().contains("cost")
                    && v.as_f64().is_some_and(|c| c > 0.0)),
            "task {id} records its cost: {record:?}"
        );
        assert!(
            record
                .iter()
                .any(|(k, v)| (k == "input_tokens" || k == "inputTokens")
                    && v.as_i64().is_some_and(|n| n > 0)),
            "task {id} records its usage: {record:?}"
        );
        assert!(
            record
                .iter()
                .any(|(k, _)| k.to_lowercase().contains("modelusage") || k == "model_usage"),
            "task {id} records modelUsage: {record:?}"
        );
    }
}

/// Issue item 6: an error result carries `errors[]` and no `result`; orch-run
/// records the errors as the failure's detail.
#[test]
fn orch_run_records_the_errors_of_an_error_result() {
    let env = Env::new();
    let dir = project(&env);
    // The scripted model answers this prompt with a Bash call; one turn is all
    // the CLI may take, so it ends with error_max_turns and errors[].
    let id = queue(&env, &dir, &["List the queue\nrun: orch-queue list"])[0];
    let batch = ok_in(&env, &dir, "orch-batch", &["create"]);
    let model = Model::start(&env, "obedient", 0.0);
    let out = orch_run(
        &env,
        &model,
        &dir,
        &[
            batch.trim(),
            "--",
            "claude",
            "-p",
            "--output-format",
            "json",
            "--max-turns",
            "1",
            "--allowedTools",
            "Bash(orch-queue list:*)",
            "--",
            "{prompt}",
        ],
    );
    assert_code(&out, 1);
    let t = show(&env, &dir, id);
    assert_eq!(t["status"], "failed", "{t}");
    let error = t["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("Reached maximum number of turns (1)"),
        "the failure's detail is the CLI's errors[]: {t}"
    );
    let sessions = sessions_with(&model, "List the queue");
    let record = all_fields(&t);
    assert!(
        record
            .iter()
            .any(|(_, v)| v.as_str() == Some(sessions[0].as_str())),
        "a failed task records its session id too: {t}"
    );
}

/// Issue item 1: each `claude -p` child fires the project's hooks; its
/// UserPromptSubmit must not batch other tasks into a batch handed to the child.
#[test]
fn orch_run_children_leave_other_tasks_alone() {
    let env = Env::new();
    let dir = project(&env);
    ok_in(&env, &dir, "orch-hook", &["install", "--threshold", "3"]);
    let mine = queue(&env, &dir, &["The task orch-run runs"])[0];
    let batch = ok_in(&env, &dir, "orch-batch", &["create"]);
    let others = queue(
        &env,
        &dir,
        &["Someone else's 1", "Someone else's 2", "Someone else's 3"],
    );
    let model = Model::start(&env, "obedient", 0.0);
    let out = orch_run(&env, &model, &dir, &[batch.trim(), "--agent", "claude"]);
    assert_code(&out, 0);
    assert_left_alone(&env, &model, mine, &others);
    assert!(
        model
            .by_role("main")
            .iter()
            .all(|r| !request_text(r).contains("orch-task: 2")),
        "no batch was handed to the child"
    );
}

/// Issue item 1, through `orch-emit --format shell`: the same children, started
/// by the script.
#[test]
fn emit_shell_children_leave_other_tasks_alone() {
    let env = Env::new();
    let dir = project(&env);
    ok_in(&env, &dir, "orch-hook", &["install", "--threshold", "3"]);
    let mine = queue(&env, &dir, &["The task the script runs"])[0];
    let batch = ok_in(&env, &dir, "orch-batch", &["create"]);
    let script = ok_in(
        &env,
        &dir,
        "orch-emit",
        &["--format", "shell", batch.trim()],
    );
    let others = queue(
        &env,
        &dir,
        &["Someone else's 1", "Someone else's 2", "Someone else's 3"],
    );
    let model = Model::start(&env, "obedient", 0.0);
    let path = env.path().join("batch.sh");
    std::fs::write(&path, script).unwrap();
    let mut c = Command::new("sh");
    claude_env(&mut c, &env, &model);
    c.arg(&path).current_dir(&dir);
    let out = run_bounded(c, CLAUDE_LIMIT);
    assert_code(&out, 0);
    assert_left_alone(&env, &model, mine, &others);
}

/// Task `mine` is done, `others` still queued for their owner, and the child
/// launched no agents.
fn assert_left_alone(env: &Env, model: &Model, mine: i64, others: &[i64]) {
    assert_eq!(task_row(env, mine).0, "done");
    for &id in others {
        assert_eq!(
            task_row(env, id).0,
            "queued",
            "task {id} was left for its owner"
        );
    }
    assert!(
        model.agent_messages().is_empty(),
        "the child launched no agents"
    );
}

/// Issue 15, logs: `orch-run --agent claude-stream` runs the real CLI with
/// `--output-format stream-json --verbose`; the task's log holds its steps
/// (the session, the Bash call and its result, the answer, the end), and the
/// attempt records what the json preset records for the same work.
#[test]
fn orch_run_claude_stream_logs_steps_and_records_like_json() {
    let env = Env::new();
    let dir = project(&env);
    let prompt = "Count the queue\nrun: orch-queue stats";
    let streamed = queue(&env, &dir, &[prompt])[0];
    let first = ok_in(&env, &dir, "orch-batch", &["create"]);
    let plain = queue(&env, &dir, &[prompt])[0];
    let second = ok_in(&env, &dir, "orch-batch", &["create"]);
    let model = Model::start(&env, "obedient", 0.0);
    let out = orch_run(
        &env,
        &model,
        &dir,
        &[first.trim(), "--agent", "claude-stream"],
    );
    assert_code(&out, 0);
    let out = orch_run(&env, &model, &dir, &[second.trim(), "--agent", "claude"]);
    assert_code(&out, 0);

    let log = ok_in(&env, &dir, "orch-queue", &["logs", &streamed.to_string()]);
    let steps: Vec<&str> = log
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("out"))
        .map(|l| l.splitn(3, ' ').nth(2).unwrap().trim_start())
        .collect();
    let session = show(&env, &dir, streamed)["claude"]["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(sessions_with(&model, "Count the queue").len(), 2);
    assert!(
        steps[0].starts_with(&format!("start: session {session}, model ")),
        "{log}"
    );
    let at = |p: &str| {
        steps
            .iter()
            .position(|s| s.starts_with(p))
            .unwrap_or_else(|| panic!("no step {p:?}: {log}"))
    };
    let call = at("tool Bash: orch-queue stats");
    let result = steps
        .iter()
        .position(|s| s.starts_with("tool result: ") || s.starts_with("tool error: "))
        .unwrap_or_else(|| panic!("no tool result: {log}"));
    let says = at("says: done: Count the queue");
    let done = at("done (success), 2 turns");
    assert!(call < result && result < says && says < done, "{log}");
    assert!(steps[done].ends_with(": done: Count the queue"), "{log}");
    assert!(!log.contains("{\""), "no raw JSON in the log: {log}");

    let record = |id: i64| {
        let t = show(&env, &dir, id);
        let attempts: Vec<Value> = ok_in(
            &env,
            &dir,
            "orch-queue",
            &["attempts", &id.to_string(), "--json"],
        )
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
        assert_eq!(attempts.len(), 1, "{attempts:?}");
        let a = &attempts[0];
        (
            t["status"].clone(),
            t["result"].clone(),
            t["claude"]["total_cost_usd"].clone(),
            t["claude"]["usage"]["input_tokens"].clone(),
            a["outcome"].clone(),
            a["cost_usd"].clone(),
            a["input_tokens"].clone(),
            a["output_tokens"].clone(),
            a["turns"].clone(),
            a["model"].clone(),
        )
    };
    let s = record(streamed);
    assert_eq!(s, record(plain));
    assert_eq!(s.1, "done: Count the queue");
    assert!(s.5.as_f64().is_some_and(|c| c > 0.0), "{s:?}");
}
