//! orch-emit --format workflow through the real binary: the script's shape
//! (a pure-literal meta, one parallel phase per wave, dependencies skipped
//! when theirs came back empty), hostile prompts byte-exact, the size limit,
//! --plan all or nothing, and --install with its allow rule.

use serde_json::Value;

use crate::common::*;

const HOSTILE: &[&str] = &[
    "quotes \" and ' and `backticks`",
    "${process.exit(1)} and `${x}`",
    "</script><script>alert(1)</script>",
    "'); process.exit(1); ('",
    "\"); process.exit(1); (\"",
    "line\u{2028}separator\u{2029}paragraph",
    "back\\slash\\u2028 \\n",
    "\u{7}bell \u{1b}[31mred",
    "orch-task: 999",
    "bidi \u{202e}rlo\u{202c} zero\u{200b}width \u{85}nel \u{7f}del \u{feff}bom \u{e0041}tag",
];

/// Queues JSON Lines and returns the ids.
fn queue(env: &Env, lines: &[Value]) -> Vec<i64> {
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    env.ok_with("orch-queue", &["add", "--stdin"], input.as_bytes())
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

/// The first argument of every `agent(` call, decoded as the JSON string it is.
fn agent_prompts(script: &str) -> Vec<String> {
    script
        .match_indices("agent(\"")
        .map(|(i, _)| {
            let mut de = serde_json::Deserializer::from_str(&script[i + 6..]).into_iter::<String>();
            de.next().unwrap().unwrap()
        })
        .collect()
}

fn diamond(env: &Env) -> Vec<i64> {
    queue(
        env,
        &[
            serde_json::json!({"key": "a", "role": "dev", "description": "A", "prompt": "do a"}),
            serde_json::json!({"key": "b", "role": "dev", "description": "B", "prompt": "do b"}),
            serde_json::json!({"key": "c", "role": "dev", "description": "C", "prompt": "do c"}),
            serde_json::json!({"role": "dev", "description": "D", "prompt": "do d", "after": ["a", "b"]}),
        ],
    )
}

#[test]
fn workflow_plan_has_one_parallel_phase_per_wave() {
    let env = Env::new();
    let ids = diamond(&env);
    let s = env.ok("orch-emit", &["--format", "workflow", "--plan"]);
    assert!(
        s.starts_with("export const meta = {\n  name: \"orch-batch-1\",\n"),
        "{s}"
    );
    // meta ends before anything else: only literals inside.
    let meta = &s[..s.find("\n}\n").unwrap()];
    assert!(
        !meta.contains('(') && !meta.contains('='.to_string().repeat(2).as_str()),
        "{meta}"
    );
    assert!(
        !meta.contains("${") && !meta.contains("...") && !meta.contains('`'),
        "{meta}"
    );
    assert!(
        meta.contains("{ title: \"Wave 1\" },\n    { title: \"Wave 2\" },"),
        "{meta}"
    );
    assert_eq!(s.matches("await parallel([").count(), 2, "{s}");
    let w2 = s.find("phase(\"Wave 2\")").unwrap();
    for id in &ids[..3] {
        let at = s.find(&format!("orch-task: {id}\"")).unwrap();
        assert!(at < w2, "task {id} belongs to wave 1");
    }
    let d = s.find(&format!("orch-task: {}\"", ids[3])).unwrap();
    assert!(d > w2);
    assert!(
        s.contains(&format!("() => ready([{}, {}]) ? agent(", ids[0], ids[1])),
        "{s}"
    );
    assert!(
        s.contains("return [1, 2, 3, 4].map((task) => ({ task, text:"),
        "{s}"
    );
    // Only the options the runtime takes; never the Agent tool's key.
    assert!(
        !s.contains("subagent_type")
            && !s.contains("remote")
            && !s.contains("Date.now")
            && !s.contains("Math.random")
    );
    // --plan batched every task, one batch per wave, each emitted.
    let c = env.sql();
    let per: Vec<(i64, i64)> = c
        .prepare("SELECT batch_id, COUNT(*) FROM tasks WHERE status = 'batched' GROUP BY batch_id ORDER BY batch_id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(per, [(1, 3), (2, 1)]);
    let unemitted: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM batches WHERE emitted_at IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(unemitted, 0);
}

#[test]
fn workflow_prompts_come_back_byte_exact() {
    let env = Env::new();
    let mut lines: Vec<Value> = HOSTILE
        .iter()
        .map(|p| serde_json::json!({"role": "Explore", "description": "hostile `${x}` \"'); ('", "prompt": p}))
        .collect();
    let big = "x`${y}'\"\u{2028}".repeat(100 * 1024 / 10);
    lines.push(serde_json::json!({"role": "Explore", "description": "big", "prompt": big}));
    let ids = queue(&env, &lines);
    let batch = env.ok("orch-batch", &["create", "--max", "20"]);
    let s = env.ok("orch-emit", &[batch.trim(), "--format", "workflow"]);
    assert!(
        !s.contains([
            '\u{2028}',
            '\u{2029}',
            '\u{202e}',
            '\u{200b}',
            '\u{85}',
            '\u{7f}',
            '\u{feff}',
            '\u{e0041}'
        ]),
        "line separators are escaped"
    );
    let prompts = agent_prompts(&s);
    assert_eq!(prompts.len(), ids.len());
    for (i, p) in prompts.iter().enumerate() {
        let want = if i < HOSTILE.len() {
            HOSTILE[i]
        } else {
            big.as_str()
        };
        assert_eq!(p, &format!("{want}\n\norch-task: {}", ids[i]));
    }
    assert!(
        s.contains("agentType: \"Explore\""),
        "a known role is the agent type"
    );
}

#[test]
fn workflow_larger_than_the_tool_takes_is_refused() {
    let env = Env::new();
    let big = "y".repeat(200 * 1024);
    let lines: Vec<Value> = (0..3)
        .map(|_| serde_json::json!({"role": "dev", "prompt": big}))
        .collect();
    queue(&env, &lines);
    let out = env.run("orch-emit", &["--format", "workflow", "--plan"]);
    assert_code(&out, 2);
    let err = assert_error(&out, "orch-emit");
    assert!(err.contains("at most 524288"), "{err}");
    // All or nothing: no batch was made, every task still queued.
    let c = env.sql();
    let n: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM tasks WHERE status = 'queued'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 3);
    let b: i64 = c
        .query_row("SELECT COUNT(*) FROM batches", [], |r| r.get(0))
        .unwrap();
    assert_eq!(b, 0);
}

#[test]
fn workflow_install_writes_the_named_workflow_and_asks_for_the_rule() {
    let env = Env::new();
    diamond(&env);
    let out = env.run(
        "orch-emit",
        &["--format", "workflow", "--plan", "--install"],
    );
    assert_code(&out, 0);
    let file = env.path().join(".claude/workflows/orch-batch-1.js");
    let installed = std::fs::read_to_string(&file).unwrap();
    assert_eq!(installed.as_bytes(), out.stdout.as_slice());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Workflow(orch-batch-1)") && err.contains("--allow"),
        "{err}"
    );
    // Not asked at a terminal: the rule is only offered, never written.
    let local = env.path().join(".claude/settings.local.json");
    assert!(!local.exists());

    // A file there that is not orch's is never replaced.
    std::fs::write(
        env.path().join(".claude/workflows/orch-batch-3.js"),
        "mine\n",
    )
    .unwrap();
    env.add("dev", "more");
    let out = env.run(
        "orch-emit",
        &["--format", "workflow", "--plan", "--install", "--allow"],
    );
    assert_code(&out, 2);
    let e = assert_error(&out, "orch-emit");
    assert!(e.contains("not orch's"), "{e}");
    assert_eq!(
        std::fs::read_to_string(env.path().join(".claude/workflows/orch-batch-3.js")).unwrap(),
        "mine\n"
    );
    assert!(!local.exists());
    let queued: i64 = env
        .sql()
        .query_row(
            "SELECT COUNT(*) FROM tasks WHERE status = 'queued'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(queued, 1, "the refused install left the task queued");

    // --allow is the user's yes: the rule is added, other settings kept.
    std::fs::remove_file(env.path().join(".claude/workflows/orch-batch-3.js")).unwrap();
    std::fs::write(&local, "{\"model\": \"opus\"}\n").unwrap();
    let out = env.run(
        "orch-emit",
        &["--format", "workflow", "--plan", "--install", "--allow"],
    );
    assert_code(&out, 0);
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&local).unwrap()).unwrap();
    assert_eq!(v["model"], "opus");
    assert_eq!(
        v["permissions"]["allow"],
        serde_json::json!(["Workflow(orch-batch-3)"])
    );
}

/// Every temporary name a previous orch used, and a few more a repository
/// could commit as symlinks: each points at `victim`.
fn plant_symlinks(dir: &std::path::Path, name: &str, victim: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    let stem = name.rsplit_once('.').map(|(s, _)| s).unwrap_or(name);
    for tmp in [
        format!("{name}.orch-tmp"),
        format!("{stem}.orch-tmp"),
        format!(".{name}.orch-tmp"),
    ] {
        std::os::unix::fs::symlink(victim, dir.join(tmp)).unwrap();
    }
}

#[test]
fn workflow_install_never_writes_through_a_symlink_at_a_temporary_name() {
    let env = Env::new();
    diamond(&env);
    let victim = env.path().join("bashrc");
    std::fs::write(&victim, "# the user's\n").unwrap();
    plant_symlinks(
        &env.path().join(".claude/workflows"),
        "orch-batch-1.js",
        &victim,
    );
    let out = env.run(
        "orch-emit",
        &["--format", "workflow", "--plan", "--install"],
    );
    assert_code(&out, 0);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "# the user's\n");
    let installed =
        std::fs::read_to_string(env.path().join(".claude/workflows/orch-batch-1.js")).unwrap();
    assert_eq!(installed.as_bytes(), out.stdout.as_slice());
}

#[test]
fn workflow_flags_need_the_workflow_format() {
    let env = Env::new();
    env.add("dev", "x");
    let out = env.run("orch-emit", &["--plan"]);
    assert_code(&out, 2);
    assert!(assert_error(&out, "orch-emit").contains("--format workflow"));
}

/// Runs orch-hook with `event`; asserts exit 0, no stderr; returns stdout.
fn hook(env: &Env, event: &Value) -> String {
    let out = env.run_with("orch-hook", &[], event.to_string().as_bytes());
    assert_code(&out, 0);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn status(env: &Env, id: i64) -> String {
    env.sql()
        .query_row("SELECT status FROM tasks WHERE id = ?1", [id], |r| r.get(0))
        .unwrap()
}

const SESSION: &str = "5d0e7f1a-workflow";

/// A workflow agent's transcript, as Claude Code writes it: its first user
/// message is the prompt of the script, ending with the task's line.
fn transcript(env: &Env, agent: &str, prompt: &str) -> String {
    let path = env.path().join(format!("agent-{agent}.jsonl"));
    let lines = [
        serde_json::json!({"type": "user", "message": {"role": "user", "content": prompt}}),
        serde_json::json!({"type": "assistant", "message": {"role": "assistant", "content": [{"type": "text", "text": "orch-task: 999"}]}}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

fn start(env: &Env, agent: &str) {
    hook(
        env,
        &serde_json::json!({"session_id": SESSION, "hook_event_name": "SubagentStart", "agent_id": agent, "agent_type": "workflow-subagent"}),
    );
}

fn stop(env: &Env, agent: &str, transcript: &str, answer: &str) {
    hook(
        env,
        &serde_json::json!({"session_id": SESSION, "hook_event_name": "SubagentStop", "agent_id": agent,
            "agent_type": "workflow-subagent", "agent_transcript_path": transcript, "last_assistant_message": answer, "stop_hook_active": false}),
    );
}

#[test]
fn workflow_agents_end_their_tasks_through_subagent_events() {
    let env = Env::new();
    let ids = diamond(&env);
    let script = env.ok("orch-emit", &["--format", "workflow", "--plan"]);
    let prompts = agent_prompts(&script);
    let paths: Vec<String> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| transcript(&env, &format!("w{i}"), p))
        .collect();
    // Wave 1: three agents overlap; wave 2 starts after both its dependencies.
    for i in 0..3 {
        start(&env, &format!("w{i}"));
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    stop(&env, "w0", &paths[0], "a done");
    stop(&env, "w1", &paths[1], "b done");
    stop(&env, "w2", &paths[2], "");
    assert_eq!(status(&env, ids[0]), "done");
    assert_eq!(status(&env, ids[1]), "done");
    assert_eq!(status(&env, ids[2]), "failed", "no answer is a failure");
    start(&env, "w3");
    std::thread::sleep(std::time::Duration::from_millis(5));
    stop(&env, "w3", &paths[3], "d done");
    let t: Value =
        serde_json::from_str(&env.ok("orch-queue", &["show", &ids[3].to_string(), "--json"]))
            .unwrap();
    assert_eq!(t["status"], "done");
    assert_eq!(t["result"], "d done");
    // orch-verify judges each wave (one batch each): the first PARALLEL.
    let out = env.run("orch-verify", &["session", "--json"]);
    let groups = json_lines(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(groups.len(), 2, "{groups:?}");
    assert_eq!(groups[0]["verdict"], "PARALLEL");
    assert_eq!(groups[0]["n"], 3);
    // The dependent task started after both its dependencies ended.
    let c = env.sql();
    let at = |id: i64, col: &str| -> i64 {
        c.query_row(
            &format!("SELECT {col} FROM tasks WHERE id = ?1"),
            [id],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert!(at(ids[3], "started_at") >= at(ids[0], "finished_at").max(at(ids[1], "finished_at")));
    // A repeated stop changes nothing; an agent of no task is only recorded.
    stop(&env, "w3", &paths[3], "again");
    assert_eq!(status(&env, ids[3]), "done");
    let stray = transcript(&env, "x", "no marker here");
    start(&env, "x");
    stop(&env, "x", &stray, "hi");
}

#[test]
fn stop_never_blocks_while_an_orch_workflow_runs() {
    let env = Env::new();
    for i in 0..3 {
        env.add("dev", &format!("ready {i}"));
    }
    let stop_event = |bg: Value| serde_json::json!({"session_id": SESSION, "hook_event_name": "Stop", "stop_hook_active": false, "background_tasks": bg});
    // orch's workflow still runs: no block, nothing batched.
    let bg = serde_json::json!([{"id": "wf_1", "type": "workflow", "status": "running", "description": "orch batch 1", "name": "orch-batch-1"}]);
    assert_eq!(hook(&env, &stop_event(bg)), "");
    assert_eq!(status(&env, 1), "queued");
    // Someone else's shell in the background does not hold orch back.
    let bg = serde_json::json!([{"id": "b1", "type": "shell", "status": "running", "description": "npm test"}]);
    let out: Value = serde_json::from_str(&hook(&env, &stop_event(bg))).unwrap();
    assert_eq!(out["decision"], "block");
}

#[test]
fn post_tool_batch_hands_over_the_next_wave() {
    let env = Env::new();
    let ids = diamond(&env);
    env.ok("orch-batch", &["create"]);
    let pre = |call: &str, id: i64| {
        serde_json::json!({"session_id": SESSION, "hook_event_name": "PreToolUse", "tool_name": "Agent", "tool_use_id": call,
            "tool_input": {"description": "x", "prompt": format!("go\n\norch-task: {id}")}})
    };
    let resp = |id: i64| serde_json::json!({"status": "completed", "content": [{"type": "text", "text": format!("result {id}")}]});
    for (i, id) in ids[..3].iter().enumerate() {
        hook(&env, &pre(&format!("t{i}"), *id));
    }
    let calls: Vec<Value> = ids[..3]
        .iter()
        .enumerate()
        .map(|(i, id)| serde_json::json!({"tool_name": "Agent", "tool_use_id": format!("t{i}"), "tool_input": {}, "tool_response": resp(*id)}))
        .collect();
    let out = hook(
        &env,
        &serde_json::json!({"session_id": SESSION, "hook_event_name": "PostToolBatch", "tool_calls": calls}),
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["hookSpecificOutput"]["hookEventName"], "PostToolBatch");
    let ctx = v["hookSpecificOutput"]["additionalContext"]
        .as_str()
        .unwrap();
    assert!(ctx.contains(&format!("orch-task: {}", ids[3])), "{ctx}");
    assert_eq!(status(&env, ids[3]), "batched");
    // The same group again hands nothing over twice.
    let calls: Vec<Value> = ids[..3]
        .iter()
        .enumerate()
        .map(|(i, id)| serde_json::json!({"tool_name": "Agent", "tool_use_id": format!("t{i}"), "tool_input": {}, "tool_response": resp(*id)}))
        .collect();
    let out = hook(
        &env,
        &serde_json::json!({"session_id": SESSION, "hook_event_name": "PostToolBatch", "tool_calls": calls}),
    );
    assert_eq!(out, "");
}

#[test]
fn task_completed_of_a_mirrored_task_ends_it() {
    let env = Env::new();
    let a = env.add("dev", "first");
    let b = env.add("dev", "second");
    let ev = |kind: &str, id: i64| {
        serde_json::json!({"session_id": SESSION, "hook_event_name": kind, "task_id": "3", "task_subject": "first",
            "task_description": format!("first\n\norch-task: {id}")})
    };
    assert_eq!(hook(&env, &ev("TaskCreated", a)), "");
    assert_eq!(
        status(&env, a),
        "queued",
        "a task in the list is not yet at work"
    );
    assert_eq!(hook(&env, &ev("TaskCompleted", a)), "");
    assert_eq!(status(&env, a), "done");
    assert_eq!(status(&env, b), "queued");
    let result: String = env
        .sql()
        .query_row("SELECT result FROM tasks WHERE id = ?1", [a], |r| r.get(0))
        .unwrap();
    assert_eq!(
        result,
        "completed in Claude Code's task list (task 3: first)"
    );
    // A native task orch did not make, or of a task that does not exist: nothing.
    let mut other = ev("TaskCompleted", 999);
    hook(&env, &other);
    other["task_description"] = Value::from("no marker");
    hook(&env, &other);
    assert_eq!(status(&env, b), "queued");
}

#[test]
fn workflow_plan_to_a_failing_stdout_says_what_was_made() {
    for how in BadStdout::ALL {
        let env = Env::new();
        diamond(&env);
        let out = env.run_bad_stdout("orch-emit", &["--format", "workflow", "--plan"], b"", how);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        let batched: i64 = env
            .sql()
            .query_row(
                "SELECT COUNT(*) FROM tasks WHERE status = 'batched'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        match out.status.code() {
            // Seen before anything was written: nothing batched.
            Some(2) => assert_eq!(batched, 0, "{how:?}: {err}"),
            // Committed, then not printed: stderr names the batches.
            Some(3) => {
                assert_eq!(batched, 4, "{how:?}");
                assert!(err.contains("batches 1, 2 were made"), "{how:?}: {err}");
            }
            c => panic!("{how:?}: exit {c:?}: {err}"),
        }
        let emitted: i64 = env
            .sql()
            .query_row(
                "SELECT COUNT(*) FROM batches WHERE emitted_at IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(emitted, 0, "{how:?}: a workflow nobody got is not emitted");
    }
}

/// The user's settings are where Claude Code reads them: in
/// `$CLAUDE_CONFIG_DIR` when that is set, not `~/.claude`.
#[test]
fn workflow_install_finds_the_rule_in_claude_config_dir() {
    let env = Env::new();
    diamond(&env);
    let config = env.path().join("config");
    std::fs::create_dir(&config).unwrap();
    std::fs::write(
        config.join("settings.json"),
        r#"{"permissions": {"allow": ["Workflow"]}}"#,
    )
    .unwrap();
    // ~/.claude also allows it, but Claude Code does not read it here.
    std::fs::create_dir_all(env.home().join(".claude")).unwrap();
    std::fs::write(
        env.home().join(".claude/settings.json"),
        r#"{"permissions": {"allow": ["Workflow"]}}"#,
    )
    .unwrap();
    let mut c = env.cmd("orch-emit");
    c.args(["--format", "workflow", "--plan", "--install"])
        .env("CLAUDE_CONFIG_DIR", &config);
    let out = crate::common::output_of(&mut c);
    assert_code(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "is already allowed in {}",
            config.join("settings.json").display()
        )),
        "{err}"
    );
    std::fs::remove_file(config.join("settings.json")).unwrap();
    env.add("dev", "more");
    let mut c = env.cmd("orch-emit");
    c.args(["--format", "workflow", "--plan", "--install"])
        .env("CLAUDE_CONFIG_DIR", &config);
    let out = crate::common::output_of(&mut c);
    assert_code(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("already allowed"), "{err}");
}

#[test]
fn workflow_install_allow_checks_the_settings_before_it_commits() {
    let env = Env::new();
    diamond(&env);
    let local = env.path().join(".claude/settings.local.json");
    std::fs::create_dir_all(local.parent().unwrap()).unwrap();
    std::fs::write(&local, "{ broken").unwrap();
    let before = dump(&env.db);
    let out = env.run(
        "orch-emit",
        &["--format", "workflow", "--plan", "--install", "--allow"],
    );
    let e = assert_error(&out, "orch-emit");
    assert!(e.contains("settings.local.json is not valid JSON"), "{e}");
    assert!(out.stdout.is_empty());
    assert_eq!(dump(&env.db), before, "no batch made");
    assert!(!env.path().join(".claude/workflows").exists());
    assert_eq!(std::fs::read_to_string(&local).unwrap(), "{ broken");
    // The same for one batch: nothing installed, the batch not emitted.
    let b = env.ok("orch-batch", &["create"]).trim().to_string();
    let before = dump(&env.db);
    let out = env.run(
        "orch-emit",
        &["--format", "workflow", &b, "--install", "--allow"],
    );
    assert_error(&out, "orch-emit");
    assert!(out.stdout.is_empty());
    assert_eq!(dump(&env.db), before, "not marked emitted");
    assert!(!env.path().join(".claude/workflows").exists());
}
