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
    // --plan batched every task, and the batch is emitted.
    let c = env.sql();
    let n: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM tasks WHERE status = 'batched' AND batch_id = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 4);
    let emitted: Option<i64> = c
        .query_row("SELECT emitted_at FROM batches WHERE id = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(emitted.is_some());
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
        !s.contains('\u{2028}') && !s.contains('\u{2029}'),
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
        env.path().join(".claude/workflows/orch-batch-2.js"),
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
        std::fs::read_to_string(env.path().join(".claude/workflows/orch-batch-2.js")).unwrap(),
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
    std::fs::remove_file(env.path().join(".claude/workflows/orch-batch-2.js")).unwrap();
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
        serde_json::json!(["Workflow(orch-batch-2)"])
    );
}

#[test]
fn workflow_flags_need_the_workflow_format() {
    let env = Env::new();
    env.add("dev", "x");
    let out = env.run("orch-emit", &["--plan"]);
    assert_code(&out, 2);
    assert!(assert_error(&out, "orch-emit").contains("--format workflow"));
}
