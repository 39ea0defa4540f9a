//! The Workflow path through the real Claude Code: orch-emit --format workflow
//! passes acorn (the parser Claude Code's Workflow tool uses) with hostile
//! prompts byte-exact; the scripted model calls Workflow with the emitted
//! script (after a rejected one, which comes back as an error) and,
//! separately, runs the installed named workflow; every task ends done through
//! SubagentStart/SubagentStop, a dependent task starts after both its
//! dependencies, and the workflow's concurrency cap shows in the timestamps.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::*;
use crate::harness::*;

fn acorn_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/acorn")
}

/// Runs tests/acorn/check.cjs on `script`: meta's value and every agent() prompt.
fn acorn_check(script: &str) -> Value {
    let dir = acorn_dir();
    assert!(
        dir.join("node_modules/acorn/package.json").is_file(),
        "acorn is not installed in {}: run scripts/test-deps.sh",
        dir.display()
    );
    let mut child = Command::new("node")
        .arg(dir.join("check.cjs"))
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the real tier needs node");
    let mut stdin = child.stdin.take().unwrap();
    let data = script.as_bytes().to_vec();
    let w = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    w.join().unwrap().unwrap();
    assert_code(&out, 0);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn workflow_script_passes_acorn_with_hostile_prompts_byte_exact() {
    let env = Env::new();
    let big = "z`${q}'\"\u{2028}</script>".repeat(100 * 1024 / 20);
    let hostile = [
        "quotes \" ' and `backticks`",
        "${process.exit(1)} `${x}`",
        "</script><script>alert(1)</script>",
        "'); process.exit(1); ('",
        "line\u{2028}separator\u{2029}paragraph",
        "bidi \u{202e}rlo\u{202c} zero\u{200b}width \u{85}nel \u{7f}del \u{e0041}tag",
        big.as_str(),
    ];
    let lines: String = hostile
        .iter()
        .map(|p| {
            format!(
                "{}\n",
                serde_json::json!({"role": "general-purpose", "prompt": p})
            )
        })
        .collect();
    let ids: Vec<i64> = env
        .ok_with("orch-queue", &["add", "--stdin"], lines.as_bytes())
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let script = env.ok("orch-emit", &["--format", "workflow", "--plan"]);
    let v = acorn_check(&script);
    assert_eq!(v["meta"]["name"], "orch-batch-1");
    assert_eq!(
        v["meta"]["phases"],
        serde_json::json!([{"title": "Wave 1"}])
    );
    let prompts = v["prompts"].as_array().unwrap();
    assert_eq!(prompts.len(), hostile.len());
    for (i, p) in hostile.iter().enumerate() {
        assert_eq!(prompts[i], format!("{p}\n\norch-task: {}", ids[i]));
    }
}

/// Three independent tasks and one after the first two.
fn diamond(env: &Env, dir: &Path) -> Vec<i64> {
    let lines = [
        serde_json::json!({"key": "a", "role": "general-purpose", "description": "A", "prompt": "Task A: `${x}` '); process.exit(1); (' \u{202e}rlo\u{2028}ls \u{200b}"}),
        serde_json::json!({"key": "b", "role": "general-purpose", "description": "B", "prompt": "Task B"}),
        serde_json::json!({"key": "c", "role": "general-purpose", "description": "C", "prompt": "Task C"}),
        serde_json::json!({"role": "general-purpose", "description": "D", "prompt": "Task D", "after": ["a", "b"]}),
    ];
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let out = env
        .cmd("orch-queue")
        .args(["add", "--stdin"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(input.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert_code(&out, 0);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

/// (id, started_at, finished_at) of every task.
fn intervals(env: &Env) -> Vec<(i64, i64, i64)> {
    let c = env.sql();
    let mut s = c
        .prepare("SELECT id, started_at, finished_at FROM tasks ORDER BY id")
        .unwrap();
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The most tasks of `ids` running at one instant.
fn peak(iv: &[(i64, i64, i64)], ids: &[i64]) -> usize {
    let mut edges: Vec<(i64, i32)> = Vec::new();
    for (id, s, f) in iv {
        if ids.contains(id) {
            edges.push((*s, 1));
            edges.push((*f, -1));
        }
    }
    edges.sort_by_key(|&(t, d)| (t, d));
    let (mut now, mut best) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        best = best.max(now);
    }
    best as usize
}

fn check_run(env: &Env, ids: &[i64]) -> Vec<(i64, i64, i64)> {
    let all = statuses(env);
    assert_eq!(all.len(), 4, "{all:?}");
    assert!(all.iter().all(|(_, s)| s == "done"), "{all:?}");
    for id in ids {
        assert_eq!(
            task_row(env, *id).1.as_deref(),
            Some(format!("finished task {id}").as_str())
        );
    }
    let iv = intervals(env);
    let end = |id: i64| iv.iter().find(|r| r.0 == id).unwrap().2;
    let start = |id: i64| iv.iter().find(|r| r.0 == id).unwrap().1;
    assert!(
        start(ids[3]) >= end(ids[0]).max(end(ids[1])),
        "the dependent task started after both its dependencies ended: {iv:?}"
    );
    iv
}

#[test]
fn workflow_script_runs_through_claude_code_and_its_hooks() {
    let env = Env::new();
    let dir = project(&env);
    ok_in(&env, &dir, "orch-hook", &["install"]);
    let ids = diamond(&env, &dir);
    let script = ok_in(&env, &dir, "orch-emit", &["--format", "workflow", "--plan"]);
    let file = env.path().join("batch.js");
    std::fs::write(&file, &script).unwrap();
    let model = Model::start(&env, "workflow", 2.0);
    let prompt = format!(
        "Run orch's batch as a workflow.\nworkflow-bad: yes\nworkflow-file: {}",
        file.display()
    );
    let mut c = claude_cmd(
        &env,
        &model,
        &dir,
        &["-p", &prompt, "--allowedTools", "Workflow"],
    );
    // No prompt-cache stagger: the first agent of a wave would otherwise run
    // alone until its first answer.
    c.env("CLAUDE_CODE_WORKFLOW_PREFIX_STAGGER_MS", "0");
    let out = run_bounded(c, CLAUDE_LIMIT);
    assert_code(&out, 0);

    // The rejected script came back as an error; the emitted one was accepted.
    let main = model.by_role("main");
    let results: Vec<Value> = main.iter().flat_map(tool_results).collect();
    let rejected = results
        .iter()
        .find(|r| r["is_error"] == true)
        .unwrap_or_else(|| panic!("no error result: {results:?}"));
    assert!(
        rejected.to_string().contains("Invalid workflow script"),
        "{rejected}"
    );
    let launched = results
        .iter()
        .find(|r| r.to_string().contains("Workflow launched in background"))
        .unwrap_or_else(|| panic!("the emitted script was not launched: {results:?}"));
    assert_ne!(launched["is_error"], true);
    // The agents were asked with orch's prompts, each once.
    let agents = model.by_role("agent");
    for id in &ids {
        assert!(
            agents
                .iter()
                .any(|r| request_text(r).contains(&format!("orch-task: {id}"))),
            "task {id} reached the model"
        );
    }
    // Claude Code frames a workflow agent's prompt (continuation lines
    // indented, U+2028 taken for a line break); the characters arrive.
    assert!(
        agents.iter().any(|r| {
            let t = request_text(r);
            t.contains("Task A: `${x}` '); process.exit(1); (' \u{202e}rlo")
                && t.contains("ls \u{200b}")
        }),
        "task A's prompt reached its agent"
    );
    let iv = check_run(&env, &ids);
    // The workflow's cap: min(16, max(2, cores - 2)) agents at once.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cap = cores.saturating_sub(2).clamp(2, 16);
    let wave = peak(&iv, &ids[..3]);
    assert_eq!(wave, cap.min(3), "{iv:?}");
    assert_eq!(peak(&iv, &ids), cap.min(3));
}

#[test]
fn installed_named_workflow_runs_by_name() {
    let env = Env::new();
    let dir = project(&env);
    ok_in(&env, &dir, "orch-hook", &["install"]);
    let ids = diamond(&env, &dir);
    ok_in(
        &env,
        &dir,
        "orch-emit",
        &["--format", "workflow", "--plan", "--install", "--allow"],
    );
    let local: Value =
        serde_json::from_slice(&std::fs::read(dir.join(".claude/settings.local.json")).unwrap())
            .unwrap();
    assert_eq!(
        local["permissions"]["allow"],
        serde_json::json!(["Workflow(orch-batch-1)"])
    );
    // Claude Code reads a project's permission rules only once the folder is trusted.
    let trust =
        serde_json::json!({"projects": {dir.to_string_lossy(): {"hasTrustDialogAccepted": true}}});
    std::fs::write(env.home().join(".claude.json"), trust.to_string()).unwrap();
    let model = Model::start(&env, "workflow", 2.0);
    let mut c = claude_cmd(
        &env,
        &model,
        &dir,
        &["-p", "Run orch's batch.\nworkflow-name: orch-batch-1"],
    );
    c.env("CLAUDE_CODE_WORKFLOW_PREFIX_STAGGER_MS", "0")
        .env("CLAUDE_CODE_WORKFLOW_MAX_CONCURRENT_AGENTS", "3");
    let out = run_bounded(c, CLAUDE_LIMIT);
    assert_code(&out, 0);
    let results: Vec<Value> = model
        .by_role("main")
        .iter()
        .flat_map(tool_results)
        .collect();
    assert!(
        results.iter().any(
            |r| r.to_string().contains("Workflow launched in background") && r["is_error"] != true
        ),
        "the named workflow ran without a permission prompt: {results:?}"
    );
    let iv = check_run(&env, &ids);
    assert_eq!(peak(&iv, &ids[..3]), 3, "{iv:?}");
    // orch-verify judges the first wave (its own batch) PARALLEL.
    let out = env
        .cmd("orch-verify")
        .args(["session", "--json"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let groups = json_lines(&String::from_utf8(out.stdout).unwrap());
    let wave = groups
        .iter()
        .find(|g| g["batch"] == 1)
        .unwrap_or_else(|| panic!("no group for batch 1: {groups:?}"))
        .clone();
    assert_eq!(wave["verdict"], "PARALLEL", "{wave}");
    assert_eq!(wave["n"], 3, "{wave}");
}

#[test]
fn post_tool_batch_hands_over_each_wave_without_a_stop_block() {
    let env = Env::new();
    let dir = project(&env);
    ok_in(&env, &dir, "orch-hook", &["install", "--threshold", "1"]);
    // Three waves: A; B after A; C after B.
    let lines = [
        serde_json::json!({"key": "a", "role": "general-purpose", "prompt": "Wave one"}),
        serde_json::json!({"key": "b", "role": "general-purpose", "prompt": "Wave two", "after": ["a"]}),
        serde_json::json!({"role": "general-purpose", "prompt": "Wave three", "after": ["b"]}),
    ];
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let out = env
        .cmd("orch-queue")
        .args(["add", "--stdin"])
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(input.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert_code(&out, 0);
    let first = batch_message(&env, &dir, 10);
    // Foreground agents: each Agent call resolves with its agent's answer, so
    // the group's PostToolBatch sees the wave end.
    let model = Model::start(&env, "foreground", 0.5);
    claude_p(&env, &model, &dir, &first, &[]);

    let all = statuses(&env);
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(all.iter().all(|(_, s)| s == "done"), "{all:?}");
    let launched = model.agent_messages();
    assert_eq!(launched.len(), 3, "one message per wave: {launched:?}");
    let main = model.by_role("main");
    for r in &main {
        assert!(
            !request_text(r).contains("Stop hook"),
            "no stop was blocked in between"
        );
    }
    for wave in [2, 3] {
        let carried = main
            .iter()
            .find(|r| request_text(r).contains(&format!("orch-task: {wave}")))
            .unwrap_or_else(|| panic!("no turn carried wave {wave}"));
        assert!(
            request_text(carried).contains("PostToolBatch"),
            "wave {wave} came as PostToolBatch's additional context"
        );
    }
}
