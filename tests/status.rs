//! `orch status`: tasks, batches, verification verdicts and agent calls on
//! one screen.

use std::path::Path;

use serde_json::Value;

use crate::common::{assert_code, stdout, Env};

#[test]
fn status_shows_tasks_batches_verdicts_and_agent_calls() {
    let env = Env::new();
    // No database: an empty snapshot, and still no file.
    let s: Value = serde_json::from_str(&env.ok("orch", &["status", "--json"])).unwrap();
    assert_eq!(s["exists"], false);
    assert_eq!(s["tasks"]["total"], 0);
    assert!(!env.db.exists(), "status must not create the database");
    assert!(env.ok("orch", &["status"]).contains("not made yet"));

    let a = env.add("dev", "Fix the flaky login test");
    let b = env.add("reviewer", "Review the locking code");
    let batch: i64 = env.ok("orch-batch", &["create"]).trim().parse().unwrap();
    let c = env.add("dev", "Write the release notes");
    env.ok("orch-queue", &["start", &a.to_string()]);

    // A verification run of 3 probes that overlapped, and two agent calls.
    let sql = env.sql();
    sql.execute_batch(
        "INSERT INTO verify_runs (id, n, sleep_ms, created_at) VALUES (7, 3, 1000, 1700000000000);
         INSERT INTO verify_probes (run_id, idx, started_at, finished_at) VALUES
            (7, 0, 1700000000100, 1700000001100), (7, 1, 1700000000120, 1700000001120), (7, 2, 1700000000140, 1700000001140);
         INSERT INTO agent_calls (session_id, call_id, source, task_id, agent_type, description, started_at, finished_at, status)
         VALUES ('s1', 'toolu_1', 'PreToolUse', 1, 'dev', 'Fix the flaky login test', 1700000002000, NULL, 'running'),
                ('s1', 'toolu_2', 'PreToolUse', NULL, 'Explore', 'Map the layout', 1700000001000, 1700000001500, 'done');",
    )
    .unwrap();
    drop(sql);

    let s: Value = serde_json::from_str(&env.ok("orch", &["status", "--json"])).unwrap();
    assert_eq!(s["exists"], true);
    assert_eq!(s["source"], "env");
    let t = &s["tasks"];
    assert_eq!(
        (
            t["queued"].as_i64(),
            t["ready"].as_i64(),
            t["batched"].as_i64(),
            t["running"].as_i64(),
            t["total"].as_i64()
        ),
        (Some(1), Some(1), Some(1), Some(1), Some(3))
    );
    let batches = s["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0]["id"], batch);
    let ids: Vec<i64> = batches[0]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [a, b]);
    assert_eq!(batches[0]["tasks"][0]["status"], "running");
    assert!(!ids.contains(&c));
    let runs = s["verify_runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["id"], 7);
    assert_eq!(runs[0]["reported"], 3);
    assert_eq!(runs[0]["analysis"]["verdict"], "PARALLEL");
    assert_eq!(runs[0]["analysis"]["peak"], 3);
    let calls = s["agent_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1]["call_id"], "toolu_1", "newest last");
    assert_eq!(calls[1]["task_id"], 1);
    assert!(calls[1]["finished_at"].is_null());

    let text = env.ok("orch", &["status"]);
    assert!(
        text.contains("tasks     1 queued (1 ready), 1 batched, 1 running"),
        "{text}"
    );
    assert!(
        text.contains(&format!("batch {batch}")) && text.contains("Review the locking code"),
        "{text}"
    );
    assert!(
        text.contains("PARALLEL") && text.contains("3/3 probes"),
        "{text}"
    );
    assert!(
        text.contains("Explore") && text.contains("→ running"),
        "{text}"
    );

    // Not on a terminal, --watch prints one snapshot and ends.
    let out = env.run("orch", &["status", "--watch"]);
    assert_code(&out, 0);
    assert_eq!(stdout(&out), text);
}

/// The verdict `orch status` shows for a real `orch-verify` run matches the
/// one `orch-verify report` gives.
#[test]
fn status_shows_the_verdict_of_a_real_verify_run() {
    let env = Env::new();
    let run: Value = serde_json::from_str(
        env.ok("orch-verify", &["new", "-n", "2", "--sleep", "1", "--json"])
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let id = run["run"].as_i64().unwrap().to_string();
    let probes: Vec<_> = ["1", "2"]
        .iter()
        .map(|i| {
            env.cmd("orch-verify")
                .args(["probe", &id, i])
                .spawn()
                .unwrap()
        })
        .collect();
    let s: Value = serde_json::from_str(&env.ok("orch", &["status", "--json"])).unwrap();
    assert_eq!(
        s["verify_runs"][0]["analysis"]["verdict"], "INCOMPLETE",
        "probes still running"
    );
    for mut p in probes {
        assert!(p.wait().unwrap().success());
    }
    let s: Value = serde_json::from_str(&env.ok("orch", &["status", "--json"])).unwrap();
    let r = &s["verify_runs"][0];
    assert_eq!(r["id"].as_i64().unwrap().to_string(), id);
    assert_eq!(r["reported"], 2);
    let report = env.run("orch-verify", &["report", &id, "--json"]);
    let report: Value = serde_json::from_str(&stdout(&report)).unwrap();
    assert_eq!(r["analysis"]["verdict"], report["verdict"]);
    assert_eq!(r["analysis"]["peak"], report["peak"]);
    assert_eq!(r["analysis"]["verdict"], "PARALLEL");
}

/// Agent calls that `orch-hook` records from real hook events show in status.
#[test]
fn status_shows_agent_calls_recorded_by_orch_hook() {
    let env = Env::new();
    env.add("dev", "Review the login handler");
    let fixture = |name: &str| {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/hooks")
                .join(name),
        )
        .unwrap()
    };
    env.ok_with("orch-hook", &[], &fixture("pre_tool_use_agent.json"));
    let s: Value = serde_json::from_str(&env.ok("orch", &["status", "--json"])).unwrap();
    let calls = s["agent_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    assert!(
        calls[0]["finished_at"].is_null() && calls[0]["started_at"].is_string(),
        "{}",
        calls[0]
    );
    env.ok_with("orch-hook", &[], &fixture("post_tool_use_agent.json"));
    let s: Value = serde_json::from_str(&env.ok("orch", &["status", "--json"])).unwrap();
    let calls = s["agent_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "the end completes the same call");
    assert!(calls[0]["finished_at"].is_string(), "{}", calls[0]);
    assert_eq!(calls[0]["task_id"], 1);
    let text = env.ok("orch", &["status"]);
    assert!(text.contains("last 1 agent call recorded"), "{text}");
}
