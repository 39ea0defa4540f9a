//! Long runs across every front end, through the real binaries: a lapsed
//! lease is taken over by whichever tool batches next (orch-batch, orch-mcp,
//! orch-hook), hook-tracked agents whose end never came are reconciled by
//! them too, `orch status` and `orch doctor` show a lapsed lease, orch-mcp's
//! tasks have attempts of their own (runner `mcp`) with the tokens the Agent
//! tool reported, and `orch status` shows spend and tokens per batch.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use orch_core::mcp::client::Client;
use serde_json::{json, Value};

use crate::common::*;

/// A JSON-RPC session with a real orch-mcp on the env's database, its
/// stderr in `mcp.err` of the env's directory.
fn mcp(env: &Env, cmd: &mut Command) -> Client {
    let err = std::fs::File::create(env.path().join("mcp.err")).unwrap();
    let mut c = Client::start(cmd.stderr(err), Duration::from_secs(30)).unwrap();
    c.result(
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "orch-tests", "version": "1"}}),
    )
    .unwrap();
    c
}

fn fixture(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hooks")
        .join(name);
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// A recorded Agent tool event carrying `prompt`, as tool-use `call`.
fn agent_event(name: &str, call: &str, prompt: &str) -> Vec<u8> {
    let mut v = fixture(name);
    v["tool_use_id"] = json!(call);
    v["tool_input"]["prompt"] = json!(prompt);
    if v["tool_response"].is_object() {
        v["tool_response"]["prompt"] = json!(prompt);
        v["tool_response"]["agentId"] = json!(format!("agent-{call}"));
    }
    serde_json::to_vec(&v).unwrap()
}

fn hook(env: &Env, args: &[&str], event: &[u8]) -> String {
    let out = env.run_with("orch-hook", args, event);
    assert_code(&out, 0);
    String::from_utf8(out.stdout).unwrap()
}

fn status(env: &Env, id: i64) -> String {
    env.sql()
        .query_row("SELECT status FROM tasks WHERE id = ?1", [id], |r| r.get(0))
        .unwrap()
}

fn attempts(env: &Env, id: i64) -> Vec<Value> {
    json_lines(&env.ok("orch-queue", &["attempts", &id.to_string(), "--json"]))
}

/// Three tasks in a batch whose runner (on another host) stopped renewing
/// its lease a minute ago, the first of them started; returns (batch, ids).
fn abandoned_batch(env: &Env) -> (i64, Vec<i64>) {
    let ids: Vec<i64> = ["a", "b", "c"].iter().map(|p| env.add("dev", p)).collect();
    let b: i64 = env
        .ok("orch-batch", &["create", "--max", "3"])
        .trim()
        .parse()
        .unwrap();
    env.ok("orch-queue", &["start", &ids[0].to_string()]);
    expire(env, b);
    (b, ids)
}

fn expire(env: &Env, b: i64) {
    env.sql()
        .execute(
            "UPDATE batches SET run_claimed_at = 1, runner_pid = 4242,
                 lease_holder = 'elsewhere:4242:1',
                 lease_until = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) - 60000
             WHERE id = ?1",
            [b],
        )
        .unwrap();
}

/// The takeover every front end must have done: unstarted tasks back in the
/// queue (and batched again here), the started one a `lost` attempt.
fn taken_over(env: &Env, ids: &[i64], new_batch: i64) {
    for id in ids {
        assert_eq!(status(env, *id), "batched", "task {id}");
        let b: i64 = env
            .sql()
            .query_row("SELECT batch_id FROM tasks WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(b, new_batch, "task {id}");
    }
    let a = attempts(env, ids[0]);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0]["error_class"], "lost");
    assert_eq!(a[0]["outcome"], "failed");
    let held: i64 = env
        .sql()
        .query_row(
            "SELECT count(*) FROM batches WHERE lease_holder = 'elsewhere:4242:1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(held, 0, "the lapsed lease is ended");
}

#[test]
fn issue14_orch_mcp_takes_over_an_expired_lease_when_it_batches() {
    let env = Env::new();
    let (old, ids) = abandoned_batch(&env);
    let mut s = mcp(&env, &mut env.cmd("orch-mcp"));
    let r = s.tool("execute_parallel_batch", json!({})).unwrap();
    assert_eq!(r["isError"], false, "{r}");
    let b = r["structuredContent"]["batch"].as_i64().unwrap();
    assert_ne!(b, old);
    let mut handed: Vec<i64> =
        serde_json::from_value(r["structuredContent"]["tasks"].clone()).unwrap();
    handed.sort();
    assert_eq!(handed, ids);
    taken_over(&env, &ids, b);
    s.close();
    assert!(s.wait().unwrap().success());
    let err = std::fs::read_to_string(env.path().join("mcp.err")).unwrap();
    assert!(
        err.contains(&format!(
            "the runner of batch {old} is gone (its lease expired): 3 tasks back in the queue"
        )),
        "{err}"
    );
}

#[test]
fn issue14_the_hooks_batching_takes_over_an_expired_lease() {
    let env = Env::new();
    let (old, ids) = abandoned_batch(&env);
    let prompt = fixture("user_prompt_submit.json");
    let out = hook(
        &env,
        &["--threshold", "1"],
        &serde_json::to_vec(&prompt).unwrap(),
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    let context = v["hookSpecificOutput"]["additionalContext"]
        .as_str()
        .unwrap();
    let b: i64 = env
        .sql()
        .query_row("SELECT max(id) FROM batches", [], |r| r.get(0))
        .unwrap();
    assert_ne!(b, old);
    assert!(context.contains(&format!("batch {b}")), "{context}");
    taken_over(&env, &ids, b);
}

#[test]
fn issue14_the_hooks_next_wave_takes_over_an_expired_lease() {
    let env = Env::new();
    // Task `first` runs in the session; `next` waits for it.
    let first = env.add("dev", "first");
    env.ok("orch-batch", &["create"]);
    let next: i64 = env
        .ok(
            "orch-queue",
            &["add", "dev", "--after", &first.to_string(), "next"],
        )
        .trim()
        .parse()
        .unwrap();
    // Meanwhile another runner's batch lapsed.
    let (old, ids) = abandoned_batch(&env);
    let prompt = format!("Do it.\n\norch-task: {first}");
    hook(
        &env,
        &[],
        &agent_event("pre_tool_use_agent.json", "toolu_f", &prompt),
    );
    let mut ev = fixture("post_tool_batch.json");
    ev["tool_calls"][0]["tool_use_id"] = json!("toolu_f");
    ev["tool_calls"][0]["tool_input"]["prompt"] = json!(prompt);
    let out = hook(&env, &[], &serde_json::to_vec(&ev).unwrap());
    let v: Value = serde_json::from_str(&out).unwrap();
    let context = v["hookSpecificOutput"]["additionalContext"]
        .as_str()
        .unwrap();
    assert!(context.contains(&format!("orch-task: {next}")), "{context}");
    // The wave's batch took the lapsed one over first: its tasks are queued
    // again (the started one with a lost attempt), not held by the dead runner.
    for id in &ids {
        assert_eq!(status(&env, *id), "queued", "task {id}");
    }
    assert_eq!(attempts(&env, ids[0])[0]["error_class"], "lost");
    let held: Option<String> = env
        .sql()
        .query_row(
            "SELECT lease_holder FROM batches WHERE id = ?1",
            [old],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(held, None);
}

#[test]
fn issue14_stale_hook_agents_are_reconciled_by_every_batching_tool() {
    let env = Env::new();
    let ids: Vec<i64> = ["a", "b"].iter().map(|p| env.add("dev", p)).collect();
    env.ok("orch-batch", &["create", "--max", "1"]);
    let prompt = format!("Do a.\n\norch-task: {}", ids[0]);
    hook(
        &env,
        &[],
        &agent_event("pre_tool_use_agent.json", "toolu_gone", &prompt),
    );
    assert_eq!(status(&env, ids[0]), "running");
    // Its end never comes, and no later Agent launch happens; three hours pass.
    let c = env.sql();
    c.execute(
        "UPDATE agent_calls SET started_at = started_at - 3 * 3600 * 1000",
        [],
    )
    .unwrap();
    c.execute(
        "UPDATE tasks SET started_at = started_at - 3 * 3600 * 1000 WHERE id = ?1",
        [ids[0]],
    )
    .unwrap();
    // A longer ORCH_STALE_AFTER (read by orch-hook, orch-batch and orch-mcp alike) leaves it be.
    let mut s = mcp(&env, env.cmd("orch-mcp").env("ORCH_STALE_AFTER", "4h"));
    let r = s.tool("execute_parallel_batch", json!({})).unwrap();
    assert_eq!(r["structuredContent"]["tasks"], json!([ids[1]]), "{r}");
    drop(s);
    assert_eq!(status(&env, ids[0]), "running");
    // orch-batch create, with the default 2 h: a lost attempt, and the task queued again.
    let out = env.run("orch-batch", &["create"]);
    assert_code(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "the agent of task {} never reported an end (tracked by orch-hook): reconciled as lost",
            ids[0]
        )),
        "{err}"
    );
    assert_eq!(status(&env, ids[0]), "batched");
    let a = attempts(&env, ids[0]);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["runner"], "hook");
    assert_eq!(a[0]["error_class"], "lost");
    // Never left running: no agent call of it is open any more.
    let open: i64 = env
        .sql()
        .query_row(
            "SELECT count(*) FROM agent_calls WHERE finished_at IS NULL AND source = 'hook'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(open, 0);
}

#[test]
fn issue14_status_and_doctor_show_an_expired_lease_and_change_nothing() {
    let env = Env::new();
    let (b, ids) = abandoned_batch(&env);
    let st = env.ok("orch", &["status"]);
    assert!(
        st.contains(&format!("batch {b}"))
            && st.contains("LEASE EXPIRED: its runner elsewhere:4242:1 stopped renewing it at "),
        "{st}"
    );
    let j: Value = serde_json::from_str(&env.ok("orch", &["status", "--json"])).unwrap();
    let lease = &j["batches"][0]["lease"];
    assert_eq!(lease["holder"], "elsewhere:4242:1", "{j}");
    assert_eq!(lease["expired"], true, "{j}");
    let d = env.cmd("orch").args(["doctor", "--json"]).output().unwrap();
    let checks = json_lines(&stdout(&d));
    let l = checks.iter().find(|c| c["check"] == "limits").unwrap();
    let m = l["message"].as_str().unwrap();
    assert!(
        m.contains(&format!(
            "batch {b}: the lease of its runner elsewhere:4242:1 expired at"
        )),
        "{m}"
    );
    assert_eq!(l["status"], "warn", "{l}");
    assert!(
        l["fix"].as_str().unwrap().contains("orch-batch create"),
        "{l}"
    );
    // Looking changed nothing: the task is still running under the lapsed lease.
    assert_eq!(status(&env, ids[0]), "running");
    // A live lease shows who holds it, and is no warning.
    env.sql()
        .execute(
            "UPDATE batches SET lease_until = lease_until + 3600000 WHERE id = ?1",
            [b],
        )
        .unwrap();
    let st = env.ok("orch", &["status"]);
    assert!(st.contains("run by elsewhere:4242:1, lease to"), "{st}");
    let d = env.cmd("orch").args(["doctor", "--json"]).output().unwrap();
    let checks = json_lines(&stdout(&d));
    let l = checks.iter().find(|c| c["check"] == "limits").unwrap();
    assert_eq!(l["status"], "ok", "{l}");
}

#[test]
fn issue14_orch_mcp_tasks_have_attempts_of_their_own_with_the_agents_tokens() {
    let env = Env::new();
    let mut s = mcp(&env, &mut env.cmd("orch-mcp"));
    for t in ["Review the login code", "Review the logout code", "Tidy"] {
        let r = s
            .tool(
                "queue_parallel_task",
                json!({"agent": "general-purpose", "task": t}),
            )
            .unwrap();
        assert_eq!(r["isError"], false, "{r}");
    }
    let r = s.tool("execute_parallel_batch", json!({})).unwrap();
    let calls = r["structuredContent"]["calls"].as_array().unwrap().clone();
    let tasks: Vec<i64> = serde_json::from_value(r["structuredContent"]["tasks"].clone()).unwrap();
    drop(s);
    let prompt = |i: usize| calls[i]["prompt"].as_str().unwrap().to_string();
    // Claude Code runs the calls; orch-hook sees each start and end.
    hook(
        &env,
        &[],
        &agent_event("pre_tool_use_agent.json", "toolu_1", &prompt(0)),
    );
    assert_eq!(status(&env, tasks[0]), "running");
    let running = attempts(&env, tasks[0]);
    assert_eq!(running.len(), 1);
    assert_eq!(running[0]["runner"], "mcp");
    assert!(running[0]["ended_at"].is_null(), "{running:?}");
    hook(
        &env,
        &[],
        &agent_event("post_tool_use_agent.json", "toolu_1", &prompt(0)),
    );
    let a = attempts(&env, tasks[0]);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["runner"], "mcp");
    assert_eq!(a[0]["outcome"], "done");
    // What the Agent tool's response said, totalTokens included.
    assert_eq!(a[0]["total_tokens"], 10544);
    assert_eq!(a[0]["input_tokens"], 9321);
    assert_eq!(a[0]["duration_ms"], 8123);
    assert!(a[0].get("cost_usd").is_none(), "{a:?}");
    // A failed one closes its attempt as failed.
    hook(
        &env,
        &[],
        &agent_event("pre_tool_use_agent.json", "toolu_2", &prompt(1)),
    );
    hook(
        &env,
        &[],
        &agent_event("post_tool_use_failure_agent.json", "toolu_2", &prompt(1)),
    );
    let a = attempts(&env, tasks[1]);
    assert_eq!(a.len(), 1);
    assert_eq!(
        (&a[0]["runner"], &a[0]["outcome"]),
        (&json!("mcp"), &json!("failed"))
    );
    assert_eq!(a[0]["error_class"], "agent_error");
    // A response without totalTokens records none (never an invented zero).
    let mut ev: Value = serde_json::from_slice(&agent_event(
        "post_tool_use_agent.json",
        "toolu_3",
        &prompt(2),
    ))
    .unwrap();
    ev["tool_response"]
        .as_object_mut()
        .unwrap()
        .remove("totalTokens");
    hook(
        &env,
        &[],
        &agent_event("pre_tool_use_agent.json", "toolu_3", &prompt(2)),
    );
    hook(&env, &[], &serde_json::to_vec(&ev).unwrap());
    let a = attempts(&env, tasks[2]);
    assert_eq!(a[0]["outcome"], "done");
    assert!(a[0].get("total_tokens").is_none(), "{a:?}");
    let stored: Option<i64> = env
        .sql()
        .query_row(
            "SELECT total_tokens FROM attempts WHERE task_id = ?1",
            [tasks[2]],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, None);
    // The people's views: attempts and show name the runner and the total.
    let text = env.ok("orch-queue", &["attempts", &tasks[0].to_string()]);
    assert!(
        text.contains(" mcp ") && text.contains("9321 in/1223 out tokens, 10544 in all"),
        "{text}"
    );
    let show = env.ok("orch-queue", &["show", &tasks[0].to_string()]);
    assert!(show.contains("10544 in all"), "{show}");
    // A background agent (as `claude -p` launches them): its launch names
    // the model, its SubagentStop ends the attempt; no tokens reach a hook.
    let mut s = mcp(&env, &mut env.cmd("orch-mcp"));
    s.tool(
        "queue_parallel_task",
        json!({"agent": "general-purpose", "task": "In the background"}),
    )
    .unwrap();
    let r = s.tool("execute_parallel_batch", json!({})).unwrap();
    drop(s);
    let bg = r["structuredContent"]["tasks"][0].as_i64().unwrap();
    let p = r["structuredContent"]["calls"][0]["prompt"]
        .as_str()
        .unwrap()
        .to_string();
    hook(
        &env,
        &[],
        &agent_event("pre_tool_use_agent.json", "toolu_5", &p),
    );
    let mut launch: Value = serde_json::from_slice(&agent_event(
        "post_tool_use_agent_async.json",
        "toolu_5",
        &p,
    ))
    .unwrap();
    launch["tool_response"]["resolvedModel"] = json!("claude-sonnet-4-5");
    hook(&env, &[], &serde_json::to_vec(&launch).unwrap());
    assert_eq!(status(&env, bg), "running");
    let mut stop = fixture("subagent_stop.json");
    stop["agent_id"] = json!("agent-toolu_5");
    hook(&env, &[], &serde_json::to_vec(&stop).unwrap());
    let a = attempts(&env, bg);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        (&a[0]["runner"], &a[0]["outcome"]),
        (&json!("mcp"), &json!("done"))
    );
    assert_eq!(a[0]["model"], "claude-sonnet-4-5");
    assert_eq!(a[0]["session_id"], "agent-toolu_5");
    for k in ["total_tokens", "input_tokens", "duration_ms"] {
        assert!(a[0].get(k).is_none(), "{k}: {a:?}");
    }
    // A task of a batch made elsewhere is still the hook's.
    let other = env.add("dev", "elsewhere");
    env.ok("orch-batch", &["create"]);
    let p = format!("Do it.\n\norch-task: {other}");
    hook(
        &env,
        &[],
        &agent_event("pre_tool_use_agent.json", "toolu_4", &p),
    );
    assert_eq!(attempts(&env, other)[0]["runner"], "hook");
}

#[test]
fn issue14_status_shows_spend_and_tokens_per_batch_and_in_total() {
    let env = Env::new();
    // Tokens without a cost (an in-session agent, through orch-hook).
    let id = env.add("dev", "a");
    let b: i64 = env.ok("orch-batch", &["create"]).trim().parse().unwrap();
    let p = format!("Do a.\n\norch-task: {id}");
    hook(
        &env,
        &[],
        &agent_event("pre_tool_use_agent.json", "toolu_1", &p),
    );
    hook(
        &env,
        &[],
        &agent_event("post_tool_use_agent.json", "toolu_1", &p),
    );
    // A cost and tokens, recorded by hand as an agent reported them.
    let id2 = env.add("dev", "b");
    let b2: i64 = env.ok("orch-batch", &["create"]).trim().parse().unwrap();
    env.ok("orch-queue", &["start", &id2.to_string()]);
    env.ok("orch-queue", &["done", &id2.to_string()]);
    env.sql()
        .execute(
            "UPDATE attempts SET cost_usd = 0.25, input_tokens = 100, output_tokens = 20 WHERE task_id = ?1",
            [id2],
        )
        .unwrap();
    let st = env.ok("orch", &["status"]);
    assert!(
        st.contains("spend     $0.2500 over 2 attempts (1 reported a cost); tokens 9421 in, 1243 out, 8192 cache read, 0 cache written, 10544 in all"),
        "{st}"
    );
    assert!(
        st.contains(&format!(
            "  batch {b:<5} $-  1 attempts  tokens 9321 in, 1223 out, 10544 in all"
        )),
        "{st}"
    );
    assert!(
        st.contains(&format!(
            "  batch {b2:<5} $0.2500  1 attempts  tokens 100 in, 20 out"
        )),
        "{st}"
    );
    // The same ledger as orch-queue stats, in both JSON records.
    let j: Value = serde_json::from_str(&env.ok("orch", &["status", "--json"])).unwrap();
    let q: Value = serde_json::from_str(&env.ok("orch-queue", &["stats", "--json"])).unwrap();
    assert_eq!(j["spend"], q["spend"]);
    assert_eq!(j["spend"]["total"]["cost_usd"], 0.25);
    assert_eq!(j["spend"]["total"]["total_tokens"], 10544);
    assert_eq!(j["spend"]["batches"][0]["batch"], b);
    assert!(j["spend"]["batches"][0].get("cost_usd").is_none(), "{j}");
    assert_eq!(j["spend"]["batches"][1]["input_tokens"], 100);
}
