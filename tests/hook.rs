//! orch-hook: installing into Claude Code's settings, and recorded-format hook
//! events (tests/fixtures/hooks) fed through the real binary.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::common::{assert_code, assert_error, task, Env};

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hooks")
        .join(name)
}

fn fixture(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixture_path(name)).unwrap()).unwrap()
}

/// A recorded Agent tool event for task `task`, as tool-use `call`.
fn agent_event(name: &str, call: &str, task: i64) -> Vec<u8> {
    let mut v = fixture(name);
    let prompt = format!("Do part {task} of the work.\n\norch-task: {task}");
    v["tool_use_id"] = json!(call);
    v["tool_input"]["prompt"] = json!(prompt);
    if v["tool_response"].is_object() {
        v["tool_response"]["prompt"] = json!(prompt);
        v["tool_response"]["agentId"] = json!(format!("agent-{call}"));
        if v["tool_response"]["content"].is_array() {
            v["tool_response"]["content"][0]["text"] = json!(format!("result of task {task}"));
        }
    }
    serde_json::to_vec(&v).unwrap()
}

fn settings_path(env: &Env) -> PathBuf {
    env.path().join(".claude/settings.json")
}

/// Runs the hook with `event` on stdin; asserts exit 0 and returns stdout.
fn hook(env: &Env, args: &[&str], event: &[u8]) -> String {
    let out = env.run_with("orch-hook", args, event);
    assert_code(&out, 0);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn three_batched_tasks(env: &Env) -> Vec<i64> {
    let ids: Vec<i64> = (1..=3)
        .map(|i| env.add("dev", &format!("part {i}")))
        .collect();
    env.ok("orch-batch", &["create"]);
    ids
}

fn agent_calls(env: &Env) -> i64 {
    env.sql()
        .query_row("SELECT count(*) FROM agent_calls", [], |r| r.get(0))
        .unwrap()
}

/// `orch-verify session --json`: each group's verdict and size, and the exit code.
fn session_verdicts(env: &Env, args: &[&str]) -> (Vec<(String, usize)>, i32) {
    let mut a = vec!["session", "--json"];
    a.extend_from_slice(args);
    let out = env.run("orch-verify", &a);
    let groups = crate::common::json_lines(&String::from_utf8(out.stdout.clone()).unwrap());
    let v = groups
        .iter()
        .map(|g| {
            (
                g["verdict"].as_str().unwrap().to_string(),
                g["n"].as_u64().unwrap() as usize,
            )
        })
        .collect();
    (v, out.status.code().unwrap())
}

fn pause() {
    std::thread::sleep(std::time::Duration::from_millis(15));
}

#[test]
fn install_keeps_everything_else_and_adds_once() {
    let env = Env::new();
    let path = settings_path(&env);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let original = std::fs::read(fixture_path("settings_existing.json")).unwrap();
    std::fs::write(&path, &original).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();

    env.ok("orch-hook", &["install"]);
    env.ok("orch-hook", &["install"]);
    let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let before: Value = serde_json::from_slice(&original).unwrap();
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["$schema", "permissions", "hooks", "env", "someFutureKey"]
    );
    for k in ["$schema", "permissions", "env", "someFutureKey"] {
        assert_eq!(v[k], before[k], "{k}");
    }
    // The user's own hooks are still first in their lists.
    assert_eq!(
        v["hooks"]["PreToolUse"][0],
        before["hooks"]["PreToolUse"][0]
    );
    assert_eq!(v["hooks"]["Stop"][0], before["hooks"]["Stop"][0]);
    let ours = |v: &Value| -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (event, groups) in v["hooks"].as_object().unwrap() {
            for g in groups.as_array().unwrap() {
                for h in g["hooks"].as_array().unwrap() {
                    let c = h["command"].as_str().unwrap();
                    if c.contains("orch-hook") {
                        out.push((event.clone(), c.to_string()));
                    }
                }
            }
        }
        out
    };
    let installed = ours(&v);
    assert_eq!(installed.len(), 10, "{installed:?}");
    for e in [
        "PreToolUse",
        "PostToolUse",
        "PostToolUseFailure",
        "PostToolBatch",
        "SubagentStart",
        "SubagentStop",
        "UserPromptSubmit",
        "Stop",
        "TaskCreated",
        "TaskCompleted",
    ] {
        assert_eq!(installed.iter().filter(|(ev, _)| ev == e).count(), 1, "{e}");
    }
    let pre = v["hooks"]["PreToolUse"].as_array().unwrap();
    assert_eq!(pre.len(), 2);
    assert_eq!(pre[1]["matcher"], "Agent|Task");
    assert_eq!(pre[1]["hooks"][0]["type"], "command");
    assert!(pre[1]["hooks"][0]["command"]
        .as_str()
        .unwrap()
        .starts_with('/'));
    assert!(v["hooks"]["Stop"][1].get("matcher").is_none());
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // A new threshold replaces the entries in place.
    env.ok("orch-hook", &["install", "--threshold", "5"]);
    let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let installed = ours(&v);
    assert_eq!(installed.len(), 10);
    assert!(
        installed.iter().all(|(_, c)| c.ends_with("--threshold 5")),
        "{installed:?}"
    );

    let status: Vec<Value> = crate::common::json_lines(&env.ok("orch-hook", &["status", "--json"]));
    assert_eq!(status[0]["scope"], "project");
    assert_eq!(status[0]["events"].as_array().unwrap().len(), 10);
    assert_eq!(status[0]["threshold"], 5);
    assert_eq!(status[1]["scope"], "user");
    assert_eq!(status[1]["events"].as_array().unwrap().len(), 0);

    env.ok("orch-hook", &["uninstall"]);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        original,
        "uninstall restores the file byte for byte"
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_code(&env.run("orch-hook", &["status"]), 1);
    let left: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "no temporary files left: {left:?}");
}

#[test]
fn install_into_a_new_file_and_the_user_settings() {
    let env = Env::new();
    std::fs::create_dir(env.path().join(".git")).unwrap();
    env.ok("orch-hook", &["install", "--command", "--threshold", "2"]);
    let text = std::fs::read_to_string(settings_path(&env)).unwrap();
    assert!(
        text.ends_with("}\n") && text.contains("\n  \"hooks\": {\n"),
        "{text}"
    );
    let slash = std::fs::read_to_string(env.path().join(".claude/commands/orch.md")).unwrap();
    assert!(
        slash.contains("orch-batch") && slash.contains("orch-emit"),
        "{slash}"
    );
    env.ok("orch-hook", &["uninstall"]);
    assert_eq!(
        std::fs::read_to_string(settings_path(&env)).unwrap(),
        "{}\n"
    );
    assert!(!env.path().join(".claude/commands/orch.md").exists());

    env.ok("orch-hook", &["install", "--user"]);
    let user: Value =
        serde_json::from_slice(&std::fs::read(env.home().join(".claude/settings.json")).unwrap())
            .unwrap();
    assert_eq!(user["hooks"].as_object().unwrap().len(), 10);
    let status = crate::common::json_lines(&env.ok("orch-hook", &["status", "--json"]));
    assert_eq!(status[1]["events"].as_array().unwrap().len(), 10);
}

#[test]
fn invalid_settings_are_refused_and_untouched() {
    let env = Env::new();
    let path = settings_path(&env);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    for (bad, verbs) in [
        (
            &b"{ \"permissions\": { \"allow\": [ }"[..],
            &["install", "uninstall", "status"][..],
        ),
        (b"[1, 2]", &["install", "uninstall"]),
        (b"{\"hooks\": []}", &["install"]),
    ] {
        std::fs::write(&path, bad).unwrap();
        for &verb in verbs {
            if verb == "status" {
                let out = env.run("orch-hook", &["status"]);
                assert_code(&out, 1);
                assert!(String::from_utf8_lossy(&out.stdout).contains("unreadable"));
                continue;
            }
            let err = assert_error(&env.run("orch-hook", &[verb]), "orch-hook");
            assert!(err.contains("settings.json"), "{err}");
            assert_eq!(std::fs::read(&path).unwrap(), bad);
        }
    }
}

#[test]
fn parallel_session_runs_then_finishes_tasks() {
    let env = Env::new();
    let ids = three_batched_tasks(&env);
    for (i, id) in ids.iter().enumerate() {
        hook(
            &env,
            &[],
            &agent_event("pre_tool_use_agent.json", &format!("toolu_{i}"), *id),
        );
    }
    for id in &ids {
        assert_eq!(task(&env, *id)["status"], "running");
    }
    pause();
    for i in [2usize, 0, 1] {
        hook(
            &env,
            &[],
            &agent_event("post_tool_use_agent.json", &format!("toolu_{i}"), ids[i]),
        );
    }
    for id in &ids {
        let t = task(&env, *id);
        assert_eq!(t["status"], "done");
        assert_eq!(t["result"], format!("result of task {id}"));
    }
    let rows: Vec<(String, Option<i64>, Option<i64>, String)> = {
        let c = env.sql();
        let mut s = c
            .prepare("SELECT call_id, task_id, finished_at - started_at, source FROM agent_calls ORDER BY id")
            .unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(rows.len(), 3);
    for (i, (call, task, dur, source)) in rows.iter().enumerate() {
        assert_eq!(
            (call.as_str(), *task, source.as_str()),
            (format!("toolu_{i}").as_str(), Some(ids[i]), "hook")
        );
        assert!(dur.unwrap() > 0);
    }
    assert_eq!(
        session_verdicts(&env, &[]),
        (vec![("PARALLEL".to_string(), 3)], 0)
    );
    let session = fixture("pre_tool_use_agent.json")["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(session_verdicts(&env, &["--session", &session]).1, 0);
    assert_eq!(
        session_verdicts(&env, &["--session", "another"]),
        (vec![], 1)
    );
    let human = env.ok("orch-verify", &["session"]);
    assert!(
        human.contains("PARALLEL") && human.contains("task 1 "),
        "{human}"
    );
}

#[test]
fn one_call_per_message_is_sequential() {
    let env = Env::new();
    let ids = three_batched_tasks(&env);
    for (i, id) in ids.iter().enumerate() {
        hook(
            &env,
            &[],
            &agent_event("pre_tool_use_agent.json", &format!("toolu_{i}"), *id),
        );
        pause();
        hook(
            &env,
            &[],
            &agent_event("post_tool_use_agent.json", &format!("toolu_{i}"), *id),
        );
        pause();
    }
    for id in &ids {
        assert_eq!(task(&env, *id)["status"], "done");
    }
    assert_eq!(
        session_verdicts(&env, &[]),
        (vec![("SEQUENTIAL".to_string(), 3)], 1)
    );
}

#[test]
fn repeated_events_change_nothing() {
    let env = Env::new();
    let ids = three_batched_tasks(&env);
    let pre = agent_event("pre_tool_use_agent.json", "toolu_x", ids[0]);
    let post = agent_event("post_tool_use_agent.json", "toolu_x", ids[0]);
    hook(&env, &[], &pre);
    let started: i64 = env
        .sql()
        .query_row("SELECT started_at FROM agent_calls", [], |r| r.get(0))
        .unwrap();
    pause();
    hook(&env, &[], &pre);
    pause();
    hook(&env, &[], &post);
    let t1 = task(&env, ids[0]);
    pause();
    hook(&env, &[], &post);
    hook(&env, &[], &pre);
    assert_eq!(agent_calls(&env), 1);
    let (s, status): (i64, String) = env
        .sql()
        .query_row("SELECT started_at, status FROM agent_calls", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((s, status.as_str()), (started, "done"));
    assert_eq!(task(&env, ids[0]), t1);
}

#[test]
fn failure_marks_the_task_failed() {
    let env = Env::new();
    let ids = three_batched_tasks(&env);
    hook(
        &env,
        &["PreToolUse"],
        &agent_event("pre_tool_use_agent.json", "toolu_f", ids[1]),
    );
    hook(
        &env,
        &[],
        &agent_event("post_tool_use_failure_agent.json", "toolu_f", ids[1]),
    );
    let t = task(&env, ids[1]);
    assert_eq!(t["status"], "failed");
    assert!(t["error"].as_str().unwrap().contains("not found"), "{t}");
    let status: String = env
        .sql()
        .query_row("SELECT status FROM agent_calls", [], |r| r.get(0))
        .unwrap();
    assert_eq!(status, "failed");
}

#[test]
fn background_agent_ends_at_its_subagent_stop() {
    let env = Env::new();
    let ids = three_batched_tasks(&env);
    let mut start = fixture("subagent_start.json");
    start["agent_id"] = json!("agent-toolu_bg");
    let mut stop = fixture("subagent_stop.json");
    stop["agent_id"] = json!("agent-toolu_bg");
    hook(
        &env,
        &[],
        &agent_event("pre_tool_use_agent.json", "toolu_bg", ids[0]),
    );
    hook(&env, &[], &serde_json::to_vec(&start).unwrap());
    hook(
        &env,
        &[],
        &agent_event("post_tool_use_agent_async.json", "toolu_bg", ids[0]),
    );
    assert_eq!(task(&env, ids[0])["status"], "running");
    pause();
    hook(&env, &[], &serde_json::to_vec(&stop).unwrap());
    let t = task(&env, ids[0]);
    assert_eq!(t["status"], "done");
    assert_eq!(t["result"], stop["last_assistant_message"]);
    let open: i64 = env
        .sql()
        .query_row(
            "SELECT count(*) FROM agent_calls WHERE finished_at IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(open, 0);
    // The sub-agent row does not count a second time.
    assert_eq!(
        session_verdicts(&env, &[]).0,
        vec![("PARALLEL".to_string(), 1)]
    );
}

#[test]
fn post_tool_batch_closes_a_missed_end() {
    let env = Env::new();
    let ids = three_batched_tasks(&env);
    hook(
        &env,
        &[],
        &agent_event(
            "pre_tool_use_agent.json",
            "toolu_01A9bQ7dKcT3mX2vLp8sNw4e",
            ids[0],
        ),
    );
    pause();
    hook(
        &env,
        &[],
        &std::fs::read(fixture_path("post_tool_batch.json")).unwrap(),
    );
    let t = task(&env, ids[0]);
    assert_eq!(t["status"], "done");
    assert!(t["result"].as_str().unwrap().starts_with("Found 2 gaps"));
}

#[test]
fn stop_blocks_with_the_batch_when_the_threshold_is_met() {
    let env = Env::new();
    let stop = std::fs::read(fixture_path("stop.json")).unwrap();
    env.add("dev", "first");
    env.add("dev", "second");
    assert_eq!(
        hook(&env, &["--threshold", "3"], &stop),
        "",
        "two ready, threshold three"
    );
    let third = env.add("dev", "third");
    let out = hook(&env, &["--threshold", "3"], &stop);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["decision"], "block");
    let reason = v["reason"].as_str().unwrap();
    for id in 1..=third {
        assert!(reason.contains(&format!("orch-task: {id}")), "{reason}");
    }
    assert!(reason.contains("ONE message"), "{reason}");
    for id in 1..=third {
        assert_eq!(task(&env, id)["status"], "batched");
    }
    let emitted: Option<i64> = env
        .sql()
        .query_row("SELECT emitted_at FROM batches", [], |r| r.get(0))
        .unwrap();
    assert!(emitted.is_some());
    // Nothing left to batch: the next stop passes.
    assert_eq!(hook(&env, &["--threshold", "3"], &stop), "");
}

#[test]
fn stop_never_blocks_when_a_stop_hook_is_active() {
    let env = Env::new();
    let mut stop = fixture("stop.json");
    stop["stop_hook_active"] = json!(true);
    for i in 0..4 {
        env.add("dev", &format!("task {i}"));
    }
    assert_eq!(
        hook(
            &env,
            &["--threshold", "1"],
            &serde_json::to_vec(&stop).unwrap()
        ),
        ""
    );
    assert_eq!(task(&env, 1)["status"], "queued");
}

#[test]
fn prompt_submit_adds_the_message_as_context() {
    let env = Env::new();
    for i in 0..2 {
        env.add("dev", &format!("task {i}"));
    }
    let out = hook(
        &env,
        &["--threshold", "2"],
        &std::fs::read(fixture_path("user_prompt_submit.json")).unwrap(),
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["hookSpecificOutput"]["hookEventName"], "UserPromptSubmit");
    let ctx = v["hookSpecificOutput"]["additionalContext"]
        .as_str()
        .unwrap();
    assert!(
        ctx.contains("orch-task: 1") && ctx.contains("orch-task: 2"),
        "{ctx}"
    );
    assert_eq!(v.as_object().unwrap().len(), 1);
}

/// Asserts a non-blocking hook fault: exit 1, one stderr line, nothing on stdout.
fn assert_fault(out: &std::process::Output) -> String {
    assert_code(out, 1);
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("orch-hook: error: "), "{err}");
    err
}

#[test]
fn malformed_events_fail_softly_and_write_nothing() {
    let env = Env::new();
    let ids = three_batched_tasks(&env);
    let before = env.ok("orch-queue", &["list", "--json"]);
    let mut wrong_type = fixture("pre_tool_use_agent.json");
    wrong_type["tool_use_id"] = json!(5);
    let mut wrong_prompt: Value =
        serde_json::from_slice(&agent_event("pre_tool_use_agent.json", "t", ids[0])).unwrap();
    wrong_prompt["tool_input"]["prompt"] = json!(["not", "text"]);
    let mut wrong_flag = fixture("stop.json");
    wrong_flag["stop_hook_active"] = json!("yes");
    let mut no_session: Value =
        serde_json::from_slice(&agent_event("pre_tool_use_agent.json", "t", ids[0])).unwrap();
    no_session.as_object_mut().unwrap().remove("session_id");
    let cases: Vec<Vec<u8>> = vec![
        b"{ this is not json".to_vec(),
        b"".to_vec(),
        b"[1, 2, 3]".to_vec(),
        br#"{"session_id": "s"}"#.to_vec(),
        serde_json::to_vec(&wrong_type).unwrap(),
        serde_json::to_vec(&wrong_prompt).unwrap(),
        serde_json::to_vec(&wrong_flag).unwrap(),
        serde_json::to_vec(&no_session).unwrap(),
    ];
    for case in cases {
        assert_fault(&env.run_with("orch-hook", &[], &case));
    }
    assert_eq!(agent_calls(&env), 0);
    assert_eq!(env.ok("orch-queue", &["list", "--json"]), before);
}

#[test]
fn other_events_and_tools_are_ignored() {
    let env = Env::new();
    three_batched_tasks(&env);
    hook(
        &env,
        &[],
        &std::fs::read(fixture_path("pre_tool_use_bash.json")).unwrap(),
    );
    hook(
        &env,
        &[],
        br#"{"session_id": "s", "hook_event_name": "Notification", "message": "hi"}"#,
    );
    hook(
        &env,
        &["SessionStart"],
        br#"{"session_id": "s", "source": "startup"}"#,
    );
    assert_eq!(agent_calls(&env), 0);
}

#[test]
fn no_database_means_no_hook_and_none_is_created() {
    let env = Env::new();
    let pre = agent_event("pre_tool_use_agent.json", "toolu_1", 1);
    let mut c = env.cmd("orch-hook");
    c.env_remove("ORCH_DB");
    let out = run_stdin(c, &pre);
    assert_code(&out, 0);
    assert!(out.stderr.is_empty());
    assert!(!env.home().join(".local/share/orch").exists());

    // An explicit database that is missing is a fault, and is not created.
    let out = env.run_with("orch-hook", &[], &pre);
    assert_fault(&out);
    assert!(!env.db.exists());
}

fn run_stdin(mut c: std::process::Command, input: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn a_locked_database_is_a_soft_fault() {
    let env = Env::new();
    let ids = three_batched_tasks(&env);
    let lock = env.sql();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let started = std::time::Instant::now();
    let out = env.run_with(
        "orch-hook",
        &[],
        &agent_event("pre_tool_use_agent.json", "toolu_l", ids[0]),
    );
    let err = assert_fault(&out);
    assert!(err.contains("busy"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    lock.execute_batch("ROLLBACK").unwrap();
    assert_eq!(agent_calls(&env), 0);
}

#[test]
fn orch_run_batches_are_judged_too() {
    let env = Env::new();
    for _ in 0..3 {
        env.add("dev", "sleep=0.3");
    }
    let b = env.ok("orch-batch", &["create"]).trim().to_string();
    let fake = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fake-agent");
    env.ok("orch-run", &[&b, "--", fake, "{prompt}"]);
    let session = format!("orch-run:{b}");
    assert_eq!(
        session_verdicts(&env, &["--session", &session]),
        (vec![("PARALLEL".to_string(), 3)], 0)
    );

    for _ in 0..3 {
        env.add("dev", "sleep=0.1");
    }
    let b = env.ok("orch-batch", &["create"]).trim().to_string();
    env.ok("orch-run", &[&b, "-j", "1", "--", fake, "{prompt}"]);
    // The latest group decides the exit status.
    let (groups, code) = session_verdicts(&env, &[]);
    assert_eq!(
        groups,
        vec![("PARALLEL".to_string(), 3), ("SEQUENTIAL".to_string(), 3)]
    );
    assert_eq!(code, 1);
}

/// Item 6: `install --command` checks the user's own `orch.md` before it
/// writes anything: refused, and the settings are not touched.
#[test]
fn item6_install_command_checks_orch_md_before_writing() {
    let env = Env::new();
    let path = settings_path(&env);
    let md = path.parent().unwrap().join("commands/orch.md");
    std::fs::create_dir_all(md.parent().unwrap()).unwrap();
    std::fs::write(&md, "my own /orch\n").unwrap();
    let out = env.run("orch-hook", &["install", "--command"]);
    assert_error(&out, "orch-hook");
    assert!(!path.exists(), "settings written before the refusal");
    assert_eq!(std::fs::read_to_string(&md).unwrap(), "my own /orch\n");
    // Settings that exist stay byte for byte.
    std::fs::write(&path, "{\"env\": {}}\n").unwrap();
    let out = env.run("orch-hook", &["install", "--command"]);
    assert_error(&out, "orch-hook");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"env\": {}}\n");
}

/// Item 9: with only a per-user database, the hook does nothing: no batch on
/// a prompt or a stop, no agent call recorded.
#[test]
fn item9_the_hook_ignores_the_per_user_database() {
    let env = Env::new();
    let user = |name: &str| {
        let mut c = env.cmd(name);
        c.env_remove("ORCH_DB");
        c
    };
    for i in 0..3 {
        let out = user("orch-queue")
            .args(["add", "dev", &format!("task {i}")])
            .output()
            .unwrap();
        assert_code(&out, 0);
    }
    let user_db = env.home().join(".local/share/orch/orch.db");
    assert!(user_db.is_file());
    let prompt = serde_json::to_vec(&fixture("user_prompt_submit.json")).unwrap();
    let stop = serde_json::to_vec(&fixture("stop.json")).unwrap();
    let pre = agent_event("pre_tool_use_agent.json", "toolu_1", 1);
    for ev in [&prompt, &stop, &pre] {
        let mut c = user("orch-hook");
        c.args(["--threshold", "1"]);
        let out = run_stdin(c, ev);
        assert_code(&out, 0);
        assert!(
            out.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let c = rusqlite::Connection::open(&user_db).unwrap();
    let (batches, calls, queued): (i64, i64, i64) = c
        .query_row(
            "SELECT (SELECT count(*) FROM batches), (SELECT count(*) FROM agent_calls),
                    (SELECT count(*) FROM tasks WHERE status = 'queued')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((batches, calls, queued), (0, 0, 3));
    // Installing here says so.
    let out = user("orch-hook").arg("install").output().unwrap();
    assert_code(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("never uses the per-user database"), "{err}");

    // The same project with its own .orch/orch.db: the hook acts.
    let out = user("orch-queue").arg("init").output().unwrap();
    assert_code(&out, 0);
    for i in 0..3 {
        let out = user("orch-queue")
            .args(["add", "dev", &format!("task {i}")])
            .output()
            .unwrap();
        assert_code(&out, 0);
    }
    let mut c = user("orch-hook");
    c.args(["--threshold", "1"]);
    let out = run_stdin(c, &prompt);
    assert_code(&out, 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("additionalContext"));
}

/// Item 10: in hook mode a usage error is a fault (exit 1, one line), never
/// the exit 2 Claude Code reads as "block"; the installer keeps exit 2.
#[test]
fn item10_hook_usage_errors_exit_1() {
    let env = Env::new();
    three_batched_tasks(&env);
    let stop = serde_json::to_vec(&fixture("stop.json")).unwrap();
    for args in [
        &["--threshold", "0"][..],
        &["--max", "0"],
        &["--threshold", "x"],
        &["--bogus"],
        &["Stop", "extra"],
        &["--db"],
    ] {
        let out = env.run_with("orch-hook", args, &stop);
        let err = assert_fault(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    assert_error(
        &env.run("orch-hook", &["install", "--threshold", "0"]),
        "orch-hook",
    );
    assert_error(&env.run("orch-hook", &["status", "--bogus"]), "orch-hook");
}

/// A fake `claude` that does what the real one does on a prompt: fire the
/// project's UserPromptSubmit hook (orch's, threshold 1) and report its answer.
fn claude_firing_the_hook() -> String {
    format!(
        "#!/bin/sh\ncat >/dev/null\nprintf 'hook said: [%s]' \"$(orch-hook --threshold 1 < '{}')\"\n",
        fixture_path("user_prompt_submit.json").display()
    )
}

fn batches(env: &Env) -> i64 {
    env.sql()
        .query_row("SELECT count(*) FROM batches", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn issue17_1_orch_run_children_leave_other_tasks_alone() {
    let env = Env::new();
    let mine = env.add("dev", "mine");
    let b = env
        .ok("orch-batch", &["create", "--max", "1"])
        .trim()
        .to_string();
    let others: Vec<i64> = (0..3)
        .map(|i| env.add("dev", &format!("other {i}")))
        .collect();
    let fake = env.path().join("claude");
    std::fs::write(&fake, claude_firing_the_hook()).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    env.ok("orch-run", &[&b, "--", &fake.to_string_lossy(), "{prompt}"]);
    let t = task(&env, mine);
    assert_eq!(t["status"], "done");
    assert_eq!(
        t["result"], "hook said: []",
        "the hook handed the child nothing"
    );
    for id in others {
        assert_eq!(task(&env, id)["status"], "queued", "task {id}");
    }
    assert_eq!(batches(&env), 1);
    assert_eq!(agent_calls(&env), 1, "only orch-run's own record");
    // Outside such a child the same event does batch them.
    let out = hook(
        &env,
        &["--threshold", "1"],
        &std::fs::read(fixture_path("user_prompt_submit.json")).unwrap(),
    );
    assert!(out.contains("orch-task: 2"), "{out}");
}

#[test]
fn issue17_1_shell_script_children_leave_other_tasks_alone() {
    let env = Env::new();
    let mine = env.add("dev", "mine");
    let b = env
        .ok("orch-batch", &["create", "--max", "1"])
        .trim()
        .to_string();
    let others: Vec<i64> = (0..3)
        .map(|i| env.add("dev", &format!("other {i}")))
        .collect();
    let script = env.ok("orch-emit", &[&b, "--format", "shell"]);
    let bin = env.path().join("fakebin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("claude"), claude_firing_the_hook()).unwrap();
    std::fs::set_permissions(bin.join("claude"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(env.path().join("run.sh"), &script).unwrap();
    let mut paths = vec![bin, crate::common::bin_dir()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let out = env
        .command("sh")
        .arg("run.sh")
        .env("PATH", std::env::join_paths(paths).unwrap())
        .output()
        .unwrap();
    assert_code(&out, 0);
    let t = task(&env, mine);
    assert_eq!(t["status"], "done");
    assert_eq!(t["result"], "hook said: []");
    for id in others {
        assert_eq!(task(&env, id)["status"], "queued", "task {id}");
    }
    assert_eq!(batches(&env), 1);
}

#[test]
fn issue17_1_every_event_is_ignored_inside_a_task_agent() {
    let env = Env::new();
    let ids = three_batched_tasks(&env);
    env.add("dev", "ready");
    let events = [
        agent_event("pre_tool_use_agent.json", "toolu_in", ids[0]),
        agent_event("post_tool_use_agent.json", "toolu_in", ids[0]),
        std::fs::read(fixture_path("subagent_start.json")).unwrap(),
        std::fs::read(fixture_path("stop.json")).unwrap(),
        std::fs::read(fixture_path("user_prompt_submit.json")).unwrap(),
    ];
    for e in &events {
        let mut c = env.cmd("orch-hook");
        c.args(["--threshold", "1"]).env("ORCH_TASK_ID", "99");
        let out = run_stdin(c, e);
        assert_code(&out, 0);
        assert!(out.stdout.is_empty() && out.stderr.is_empty());
    }
    assert_eq!(agent_calls(&env), 0);
    assert_eq!(batches(&env), 1);
    assert_eq!(task(&env, ids[0])["status"], "batched");
}

fn open_calls(env: &Env) -> Vec<(String, String)> {
    let sql = env.sql();
    let mut st = sql
        .prepare("SELECT call_id, status FROM agent_calls WHERE finished_at IS NULL ORDER BY id")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn issue17_5_remote_and_teammate_agents_are_launched_not_done() {
    let env = Env::new();
    let ids = three_batched_tasks(&env);
    // A remote agent: launched in a cloud session; no hook here sees it end.
    let mut remote: Value = serde_json::from_slice(&agent_event(
        "post_tool_use_agent_remote.json",
        "toolu_r",
        ids[0],
    ))
    .unwrap();
    remote["tool_response"]
        .as_object_mut()
        .unwrap()
        .remove("agentId");
    hook(
        &env,
        &[],
        &agent_event("pre_tool_use_agent.json", "toolu_r", ids[0]),
    );
    hook(&env, &[], &serde_json::to_vec(&remote).unwrap());
    let t = task(&env, ids[0]);
    assert_eq!(t["status"], "running");
    assert!(t["result"].is_null());
    // A teammate: at work in its own context until its SubagentStop.
    hook(
        &env,
        &[],
        &agent_event("pre_tool_use_agent.json", "toolu_t", ids[1]),
    );
    hook(
        &env,
        &[],
        &agent_event("post_tool_use_agent_teammate.json", "toolu_t", ids[1]),
    );
    assert_eq!(task(&env, ids[1])["status"], "running");
    assert_eq!(
        open_calls(&env),
        [
            ("toolu_r".to_string(), "remote".to_string()),
            ("toolu_t".to_string(), "teammate".to_string()),
            ("agent-toolu_t".to_string(), "running".to_string()),
        ]
    );
    // A PostToolBatch for the group closes neither.
    let batch = json!({
        "session_id": remote["session_id"],
        "hook_event_name": "PostToolBatch",
        "tool_calls": [
            {"tool_name": "Agent", "tool_use_id": "toolu_r", "tool_input": {}, "tool_response": remote["tool_response"]},
            {"tool_name": "Agent", "tool_use_id": "toolu_t", "tool_input": {}, "tool_response": {"status": "teammate_spawned", "agentId": "agent-toolu_t"}}
        ]
    });
    hook(&env, &[], &serde_json::to_vec(&batch).unwrap());
    assert_eq!(open_calls(&env).len(), 3);
    assert_eq!(task(&env, ids[0])["status"], "running");
    pause();
    let mut stop = fixture("subagent_stop.json");
    stop["agent_id"] = json!("agent-toolu_t");
    hook(&env, &[], &serde_json::to_vec(&stop).unwrap());
    let t = task(&env, ids[1]);
    assert_eq!(t["status"], "done");
    assert_eq!(t["result"], stop["last_assistant_message"]);
    assert_eq!(
        open_calls(&env),
        [("toolu_r".to_string(), "remote".to_string())]
    );
}

#[test]
fn issue17_5_an_unknown_status_is_not_taken_for_done() {
    let env = Env::new();
    let ids = three_batched_tasks(&env);
    let mut ev: Value =
        serde_json::from_slice(&agent_event("post_tool_use_agent.json", "toolu_u", ids[0]))
            .unwrap();
    ev["tool_response"]["status"] = json!("sub_agent_entered");
    hook(
        &env,
        &[],
        &agent_event("pre_tool_use_agent.json", "toolu_u", ids[0]),
    );
    hook(&env, &[], &serde_json::to_vec(&ev).unwrap());
    assert_eq!(task(&env, ids[0])["status"], "running");
    // A completed one is done, with its answer.
    hook(
        &env,
        &[],
        &agent_event("post_tool_use_agent.json", "toolu_c", ids[1]),
    );
    let t = task(&env, ids[1]);
    assert_eq!(t["status"], "done");
    assert_eq!(t["result"], format!("result of task {}", ids[1]));
}

#[test]
fn issue17_4_status_in_a_subdirectory_says_root_hooks_do_not_run_there() {
    let env = Env::new();
    std::fs::create_dir_all(env.path().join(".git")).unwrap();
    let pkg = env.path().join("pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    env.ok("orch-hook", &["install"]);
    let status_in = |dir: &Path, json: bool| {
        let mut c = env.cmd("orch-hook");
        c.arg("status").current_dir(dir);
        if json {
            c.arg("--json");
        }
        c.output().unwrap()
    };
    assert_code(&status_in(env.path(), false), 0);
    let out = status_in(&pkg, false);
    assert_code(&out, 1);
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("project ") && lines[0].contains("installed for 10 events"));
    assert!(
        lines[1].contains("not run here: Claude Code reads project hooks only from the directory it is started in")
            && lines[1].contains("orch-hook install --here")
            && lines[1].contains("orch-hook install --user"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("here ") && lines[2].contains("not installed"),
        "{text}"
    );
    let recs = crate::common::json_lines(&String::from_utf8(status_in(&pkg, true).stdout).unwrap());
    assert_eq!(
        recs.iter()
            .map(|r| (
                r["scope"].as_str().unwrap(),
                r["read_here"].as_bool().unwrap()
            ))
            .collect::<Vec<_>>(),
        [("project", false), ("here", true), ("user", true)]
    );
    // `install` from the subdirectory says so too, and `--here` fixes it.
    let out = env
        .cmd("orch-hook")
        .arg("install")
        .current_dir(&pkg)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("note: Claude Code reads project hooks only"),
        "{out:?}"
    );
    let out = env
        .cmd("orch-hook")
        .args(["install", "--here"])
        .current_dir(&pkg)
        .output()
        .unwrap();
    assert_code(&out, 0);
    assert_code(&status_in(&pkg, false), 0);
}

#[test]
fn issue17_4_user_hooks_follow_claude_config_dir() {
    let env = Env::new();
    let config = env.path().join("config");
    let out = env
        .cmd("orch-hook")
        .args(["install", "--user"])
        .env("CLAUDE_CONFIG_DIR", &config)
        .output()
        .unwrap();
    assert_code(&out, 0);
    let v: Value =
        serde_json::from_slice(&std::fs::read(config.join("settings.json")).unwrap()).unwrap();
    assert!(v["hooks"]["Stop"].is_array());
    assert!(!env.home().join(".claude/settings.json").exists());
}

#[test]
fn issue14_a_launch_past_the_limit_is_denied_with_exit_0_and_subagent_stop_frees_a_slot() {
    let env = Env::new();
    let ids = three_batched_tasks(&env);
    env.ok("orch-queue", &["limit", "2"]);
    let pre =
        |call: &str, id: i64| hook(&env, &[], &agent_event("pre_tool_use_agent.json", call, id));
    assert_eq!(pre("toolu_a", ids[0]), "");
    assert_eq!(pre("toolu_b", ids[1]), "");
    // The third in a row: denied, exit 0, a JSON reason that says to send it again.
    let out = pre("toolu_c", ids[2]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let h = &v["hookSpecificOutput"];
    assert_eq!(h["hookEventName"], "PreToolUse");
    assert_eq!(h["permissionDecision"], "deny");
    let reason = h["permissionDecisionReason"].as_str().unwrap();
    assert!(
        reason.contains("limit 2") && reason.contains("send this same Agent call again"),
        "{reason}"
    );
    // The denied call did not start its task.
    assert_eq!(task(&env, ids[2])["status"], "batched");
    assert_eq!(
        env.ok("orch-queue", &["limit"]).trim(),
        "limit 2 (2 running)"
    );
    // An agent ends: SubagentStop frees a slot, and the call sent again runs.
    let mut stop = fixture("subagent_stop.json");
    stop["agent_id"] = json!("agent-toolu_a");
    hook(&env, &[], &serde_json::to_vec(&stop).unwrap());
    assert_eq!(
        env.ok("orch-queue", &["limit"]).trim(),
        "limit 2 (1 running)"
    );
    // Its PostToolUse after the SubagentStop frees nothing more.
    hook(
        &env,
        &[],
        &agent_event("post_tool_use_agent.json", "toolu_a", ids[0]),
    );
    assert_eq!(
        env.ok("orch-queue", &["limit"]).trim(),
        "limit 2 (1 running)"
    );
    assert_eq!(pre("toolu_c", ids[2]), "");
    assert_eq!(task(&env, ids[2])["status"], "running");
    // The hook's tasks have attempts too.
    let a = env.ok("orch-queue", &["attempts", &ids[0].to_string(), "--json"]);
    let a: Value = serde_json::from_str(a.lines().next().unwrap()).unwrap();
    assert_eq!(a["runner"], "hook");
    assert_eq!(a["outcome"], "done");
    // What the Agent tool's response reported, as it reported it (no cost: none was given).
    assert_eq!(a["input_tokens"], 9321);
    assert_eq!(a["output_tokens"], 1223);
    assert_eq!(a["cache_read_tokens"], 8192);
    assert_eq!(a["duration_ms"], 8123);
    assert_eq!(a["session_id"], "agent-toolu_a");
    assert!(a.get("cost_usd").is_none(), "{a}");
}

#[test]
fn issue14_stale_hook_tasks_are_reconciled_not_left_running() {
    let env = Env::new();
    let ids = three_batched_tasks(&env);
    hook(
        &env,
        &[],
        &agent_event("pre_tool_use_agent.json", "toolu_old", ids[0]),
    );
    assert_eq!(task(&env, ids[0])["status"], "running");
    // Its end never comes; three hours pass.
    env.sql()
        .execute(
            "UPDATE agent_calls SET started_at = started_at - 3 * 3600 * 1000;",
            [],
        )
        .unwrap();
    env.sql()
        .execute(
            "UPDATE tasks SET started_at = started_at - 3 * 3600 * 1000",
            [],
        )
        .unwrap();
    // Any later launch reconciles it: a lost attempt, back in the queue.
    hook(
        &env,
        &[],
        &agent_event("pre_tool_use_agent.json", "toolu_new", ids[1]),
    );
    let t = task(&env, ids[0]);
    assert_eq!(t["status"], "queued");
    let a = env.ok("orch-queue", &["attempts", &ids[0].to_string(), "--json"]);
    let a: Value = serde_json::from_str(a.lines().next().unwrap()).unwrap();
    assert_eq!(a["error_class"], "lost");
    // The fresh one is left alone by the default (2 h)...
    assert_eq!(task(&env, ids[1])["status"], "running");
    // ...and reconciled by a shorter --stale-after once it is older than that.
    env.sql()
        .execute(
            "UPDATE agent_calls SET started_at = started_at - 90 * 60 * 1000 WHERE call_id = 'toolu_new';
             ",
            [],
        )
        .unwrap();
    env.sql()
        .execute(
            "UPDATE tasks SET started_at = started_at - 90 * 60 * 1000 WHERE id = ?1",
            [ids[1]],
        )
        .unwrap();
    hook(
        &env,
        &["--stale-after", "3h"],
        &agent_event("pre_tool_use_agent.json", "toolu_x", ids[2]),
    );
    assert_eq!(task(&env, ids[1])["status"], "running", "90 min < 3 h");
    hook(
        &env,
        &["--stale-after", "1h"],
        &agent_event("pre_tool_use_agent.json", "toolu_y", ids[0]),
    );
    assert_eq!(task(&env, ids[1])["status"], "queued", "90 min > 1 h");
}

/// A hook-tracked agent reconciled as lost gives back its slot of
/// `orch-queue limit`: the next launches are not denied for a lost agent.
#[test]
fn issue14_a_reconciled_agent_frees_its_slot() {
    let env = Env::new();
    let ids = three_batched_tasks(&env);
    env.ok("orch-queue", &["limit", "1"]);
    hook(
        &env,
        &[],
        &agent_event("pre_tool_use_agent.json", "toolu_old", ids[0]),
    );
    // At the limit: the next launch is denied.
    let denied = hook(
        &env,
        &[],
        &agent_event("pre_tool_use_agent.json", "toolu_next", ids[1]),
    );
    assert!(denied.contains("\"deny\""), "{denied}");
    // The first agent's end never comes; 90 minutes pass.
    env.sql()
        .execute(
            "UPDATE agent_calls SET started_at = started_at - 90 * 60 * 1000",
            [],
        )
        .unwrap();
    env.sql()
        .execute(
            "UPDATE tasks SET started_at = started_at - 90 * 60 * 1000",
            [],
        )
        .unwrap();
    let allowed = hook(
        &env,
        &["--stale-after", "1h"],
        &agent_event("pre_tool_use_agent.json", "toolu_next", ids[1]),
    );
    assert!(!allowed.contains("\"deny\""), "{allowed}");
    assert_eq!(task(&env, ids[0])["status"], "queued");
    assert_eq!(task(&env, ids[1])["status"], "running");
    assert!(env.ok("orch-queue", &["limit"]).contains("1 running"));
}

/// A pause whose time has passed is cleared by the first write that looks at
/// it, journaled once as `pause.cleared` ("ran out") however many processes
/// race to notice; reads before it change nothing.
#[test]
fn issue15_a_pause_that_runs_out_is_journaled_once_by_the_first_write() {
    let env = Env::new();
    let ids: Vec<i64> = (1..=8)
        .map(|i| env.add("dev", &format!("part {i}")))
        .collect();
    env.ok("orch-batch", &["create"]);
    env.ok("orch-queue", &["pause", "--until", "1s"]);
    let cleared = || -> Vec<Value> {
        env.ok("orch-events", &["--kind", "pause.cleared", "--json"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let pause_rows = || -> i64 {
        env.sql()
            .query_row(
                "SELECT count(*) FROM settings WHERE key IN ('pause_until', 'pause_reason')",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert!(cleared().is_empty());
    std::thread::sleep(std::time::Duration::from_millis(1300));
    // Readers see no pause in force, and write nothing.
    assert!(!env.ok("orch", &["status"]).contains("paused"));
    env.ok("orch-queue", &["limit"]);
    env.ok("orch", &["doctor"]);
    assert!(cleared().is_empty());
    assert_eq!(pause_rows(), 2);
    // Eight launches at once: each looks at the pause inside its write.
    std::thread::scope(|s| {
        for (i, id) in ids.iter().enumerate() {
            let env = &env;
            s.spawn(move || {
                hook(
                    env,
                    &[],
                    &agent_event("pre_tool_use_agent.json", &format!("toolu_{i}"), *id),
                )
            });
        }
    });
    let c = cleared();
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0]["detail"], "ran out");
    assert_eq!(pause_rows(), 0);
    // Nothing left to resume, and nothing more journaled.
    let out = env.run("orch-queue", &["resume"]);
    assert_code(&out, 0);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not paused"));
    assert_eq!(cleared().len(), 1);
}

/// A pause stops new starts in Claude Code too: while `orch-queue pause` (or
/// a usage limit) holds, orch-hook denies an Agent launch with a reason that
/// says when to send it again, records nothing for it and holds no slot;
/// after `resume` the same call goes through.
#[test]
fn issue14_a_launch_during_a_pause_is_denied_until_resume() {
    let env = Env::new();
    let ids = three_batched_tasks(&env);
    env.ok("orch-queue", &["limit", "3"]);
    env.ok("orch-queue", &["pause"]);
    let out = hook(
        &env,
        &[],
        &agent_event("pre_tool_use_agent.json", "toolu_p", ids[0]),
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    let h = &v["hookSpecificOutput"];
    assert_eq!(h["permissionDecision"], "deny", "{v}");
    let reason = h["permissionDecisionReason"].as_str().unwrap();
    assert!(
        reason.contains("paused") && reason.contains("again"),
        "{reason}"
    );
    assert_eq!(task(&env, ids[0])["status"], "batched");
    assert!(env.ok("orch-queue", &["limit"]).contains("0 running"));
    env.ok("orch-queue", &["resume"]);
    let out = hook(
        &env,
        &[],
        &agent_event("pre_tool_use_agent.json", "toolu_p", ids[0]),
    );
    assert!(!out.contains("deny"), "{out}");
    assert_eq!(task(&env, ids[0])["status"], "running");
}
