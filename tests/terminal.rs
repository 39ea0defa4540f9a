//! What reaches a terminal: a description refuses control characters, and
//! every view for people shows the control characters of stored text escaped
//! (`^[` for ESC, as `cat -v` does), while the machine formats keep the bytes.

use std::path::Path;
use std::process::Output;

use serde_json::{json, Value};

use crate::common::{assert_code, assert_error, Env};

/// What an attacker would plant: OSC 52 (write the clipboard), clear the
/// screen, a C1 CSI, BEL, DEL, a carriage return that hides the line before it.
const PAYLOAD: &str = "pwn\x1b]52;c;aGVsbG8=\x07\x1b[2J\u{9b}31m\x7f\rgone";

/// Every control character but the newline (and the tab, kept where a view
/// prints multi-line text) in `out`'s stdout and stderr.
fn raw_controls(out: &Output) -> Vec<(char, String)> {
    let mut found = Vec::new();
    for (which, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        for c in text.chars() {
            if c.is_control() && c != '\n' && c != '\t' {
                found.push((c, which.to_string()));
            }
        }
    }
    found
}

/// Asserts that a view printed nothing raw, and that it did show the payload, escaped.
fn assert_escaped(what: &str, out: &Output) {
    let raw = raw_controls(out);
    assert!(
        raw.is_empty(),
        "{what}: raw control characters {raw:?} reached the terminal:\nstdout: {:?}\nstderr: {:?}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.contains("pwn^[]52;c;aGVsbG8=^G^[[2J"),
        "{what}: the payload is not shown escaped: {all:?}"
    );
}

fn count_tasks(db: &Path) -> i64 {
    if !db.exists() {
        return 0;
    }
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))
        .unwrap()
}

/// One MCP session on stdin: initialize, then the given tool calls; returns the replies by id.
fn mcp_session(env: &Env, calls: &[(i64, &str, Value)]) -> Vec<Value> {
    let mut input = String::new();
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "orch-tests", "version": "1"}}});
    input.push_str(&format!("{init}\n"));
    input.push_str("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n");
    for (id, name, args) in calls {
        let m = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": name, "arguments": args}});
        input.push_str(&format!("{m}\n"));
    }
    let out = env.run_with("orch-mcp", &[], input.as_bytes());
    assert_code(&out, 0);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Item 1: a description with any C0 or C1 control character or DEL is
/// refused with exit 2, wherever it comes in, and nothing is written.
#[test]
fn item_1_terminal_escape_injection_descriptions_refuse_control_characters() {
    let env = Env::new();
    env.db_ready(); // a database, so that "nothing written" is measurable
    let bad = [
        "Fix \x1b[2J it",
        "Copy \x1b]52;c;aGk=\x07",
        "Ring\x07",
        "del\x7f",
        "c1 \u{9b}31m",
        "nel \u{85} x",
        "tab\there",
        "two\nlines",
        "cr\rhidden",
        "trailing newline\n",
    ];
    for d in bad {
        let out = env.run("orch-queue", &["add", "dev", "-d", d, "Do the work"]);
        let err = assert_error(&out, "orch-queue");
        assert!(err.contains("control character"), "{d:?}: {err}");
        assert!(raw_controls(&out).is_empty(), "{d:?}: {err:?}");

        let line = json!({"role": "dev", "prompt": "Do the work", "description": d});
        let out = env.run_with(
            "orch-queue",
            &["add", "--stdin"],
            format!("{line}\n").as_bytes(),
        );
        let err = assert_error(&out, "orch-queue");
        assert!(
            err.contains("line 1") && err.contains("control character"),
            "{err}"
        );
    }
    let calls: Vec<(i64, &str, Value)> = bad
        .iter()
        .enumerate()
        .map(|(i, d)| {
            (
                i as i64 + 1,
                "queue_parallel_task",
                json!({"agent": "dev", "task": "Do the work", "description": d}),
            )
        })
        .collect();
    let replies = mcp_session(&env, &calls);
    for (id, _, args) in &calls {
        let r = replies
            .iter()
            .find(|r| r["id"] == json!(id))
            .unwrap_or_else(|| panic!("no reply to {id}: {replies:?}"));
        assert_eq!(r["result"]["isError"], json!(true), "{args}: {r}");
        assert!(
            r["result"]["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains("control character"),
            "{r}"
        );
    }
    assert_eq!(
        count_tasks(&env.db),
        0,
        "a refused description wrote a task"
    );

    // A prompt may hold control characters; the description derived from it does not.
    let id = env.add("dev", "Fix\x1b[2J the\x07 bug");
    let t: Value =
        serde_json::from_str(&env.ok("orch-queue", &["show", &id.to_string(), "--json"])).unwrap();
    assert_eq!(
        t["prompt"], "Fix\x1b[2J the\x07 bug",
        "the prompt is kept exactly"
    );
    assert_eq!(t["description"], "Fix [2J the bug");
}

/// Item 1: stored text with control characters (prompts, results, errors,
/// message bodies, what hooks recorded, verification labels) is shown escaped
/// by every view for people; `--json` and the Claude Code formats keep it exact.
#[test]
fn item_1_terminal_escape_injection_human_views_escape_stored_text() {
    let env = Env::new();
    let p = PAYLOAD;
    // A task with the payload in its prompt, result and (another) error.
    let a = env.add("dev", p).to_string();
    let b = env.add("dev", &format!("second {p}")).to_string();
    let c = env.add("dev", "third").to_string();
    let batch = env
        .ok("orch-batch", &["create", "--max", "2"])
        .trim()
        .to_string();
    env.ok("orch-queue", &["start", &a]);
    env.ok(
        "orch-queue",
        &["done", &a, "--result", &format!("line one\n{p}\nlast")],
    );
    env.ok("orch-queue", &["fail", &b, "--error", p]);
    // A database written before descriptions were checked may hold anything.
    env.sql()
        .execute(
            "UPDATE tasks SET description = ?1 WHERE id = ?2",
            rusqlite::params![p, a],
        )
        .unwrap();
    // A message, and agent calls as Claude Code's hooks report them.
    env.ok("orch-msg", &["send", "--from", "lead", "--to", "dev", p]);
    env.ok(
        "orch-msg",
        &["send", "--from", "lead", "--to", "ops", &format!("x\n{p}")],
    );
    let mut ev: Value = serde_json::from_slice(
        &std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/hooks/pre_tool_use_agent.json"),
        )
        .unwrap(),
    )
    .unwrap();
    ev["session_id"] = json!(format!("s{p}"));
    ev["tool_input"]["description"] = json!(p);
    ev["tool_input"]["subagent_type"] = json!(p);
    ev["tool_input"]["prompt"] = json!("no task here");
    let out = env.run_with(
        "orch-hook",
        &["PreToolUse"],
        &serde_json::to_vec(&ev).unwrap(),
    );
    assert_code(&out, 0);
    // A verification run whose label (the executor's command line) holds the payload.
    let out = env.run(
        "orch-verify",
        &[
            "exec", "-n", "2", "--sleep", "0.1", "--", "xargs", "-P", "2", "-I{}", "sh", "-c",
            "{}", p,
        ],
    );
    assert_escaped("orch-verify exec", &out);
    let run = env
        .sql()
        .query_row("SELECT max(id) FROM verify_runs", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap()
        .to_string();

    let views: Vec<(&str, Vec<&str>)> = vec![
        ("orch-queue", vec!["list"]),
        ("orch-queue", vec!["show", &a]),
        ("orch-queue", vec!["show", &b]),
        ("orch-batch", vec!["show", &batch]),
        ("orch", vec!["status"]),
        ("orch-msg", vec!["list"]),
        ("orch-msg", vec!["recv", "--as", "dev", "--peek"]),
        ("orch-msg", vec!["recv", "--as", "dev"]),
        ("orch-msg", vec!["recv", "--as", "ops"]),
        ("orch-verify", vec!["report", &run]),
        ("orch-verify", vec!["session"]),
    ];
    for (bin, args) in &views {
        let out = env.run(bin, args);
        assert!(
            out.status.code().is_some_and(|c| c <= 1),
            "{bin} {args:?}: {out:?}"
        );
        assert_escaped(&format!("{bin} {}", args.join(" ")), &out);
    }
    // `orch-queue show` keeps the newlines of a multi-line result.
    let shown = env.ok("orch-queue", &["show", &a]);
    assert!(
        shown.contains("  line one\n  pwn^[") && shown.contains("\n  last\n"),
        "{shown}"
    );

    // The batch plan shows descriptions.
    let d = env.add("dev", "plan").to_string();
    env.sql()
        .execute(
            "UPDATE tasks SET description = ?1 WHERE id = ?2",
            rusqlite::params![p, d],
        )
        .unwrap();
    let out = env.run("orch-batch", &["plan"]);
    assert_code(&out, 0);
    assert_escaped("orch-batch plan", &out);
    env.ok("orch-queue", &["cancel", &d, &c]);

    // orch-run's progress shows a failed task's error (here the agent's stderr).
    env.add("dev", p);
    let batch2 = env.ok("orch-batch", &["create"]).trim().to_string();
    // The formats for programs and for Claude Code keep the bytes exact.
    let emitted: Value =
        serde_json::from_str(&env.ok("orch-emit", &[&batch2, "--format", "json"])).unwrap();
    assert!(
        emitted["calls"][0]["prompt"].as_str().unwrap().contains(p),
        "{emitted}"
    );
    let claude = env.ok("orch-emit", &[&batch2, "--format", "claude"]);
    assert!(claude.contains(&json!(p).to_string()[1..20]), "{claude}");
    // Markdown is for people: escaped.
    let out = env.run("orch-emit", &[&batch2, "--format", "markdown"]);
    assert_code(&out, 0);
    assert_escaped("orch-emit --format markdown", &out);
    let out = env.run(
        "orch-run",
        &[
            &batch2,
            "--",
            "sh",
            "-c",
            "printf '%s\\n' \"$0\" >&2; exit 1",
            "{prompt}",
        ],
    );
    assert_code(&out, 1);
    assert_escaped("orch-run", &out);

    // An error that echoes user text is escaped too (clap's and orch's own).
    let out = env.run("orch-queue", &["list", "--status", p]);
    assert_error(&out, "orch-queue");
    assert!(raw_controls(&out).is_empty(), "{out:?}");
    let dir = env.path().join(format!("dir{p}"));
    std::fs::create_dir(&dir).unwrap();
    let out = env.run("orch-queue", &["--db", dir.to_str().unwrap(), "list"]);
    assert_error(&out, "orch-queue");
    assert_escaped("an error naming a path", &out);

    // Machine formats keep the bytes exact.
    let t: Value = serde_json::from_str(&env.ok("orch-queue", &["show", &a, "--json"])).unwrap();
    assert_eq!(t["prompt"], p);
    assert_eq!(t["result"], format!("line one\n{p}\nlast"));
    let listed: Value = serde_json::from_str(
        env.ok("orch-msg", &["list", "--json"])
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(listed["body"], p);
}

#[test]
fn paths_with_control_characters_are_escaped_in_messages() {
    let env = Env::new();
    let proj = env.path().join("proj\x1b[2J");
    std::fs::create_dir(&proj).unwrap();
    let config = env.path().join("cfg\x1b]52;c;aGk=\x07");
    let run = |args: &[&str]| {
        let (tool, args) = args.split_first().unwrap();
        env.cmd(tool)
            .env_remove("ORCH_DB")
            .env("CLAUDE_CONFIG_DIR", &config)
            .current_dir(&proj)
            .args(args)
            .output()
            .unwrap()
    };
    for args in [
        &["orch-queue", "init"][..],
        &["orch-queue", "where"],
        &["orch-hook", "install"],
        &["orch-hook", "install", "--user"],
        &["orch-hook", "uninstall"],
        &["orch-hook", "uninstall", "--user"],
        &["orch-queue", "add", "dev", "x"],
        &["orch-batch", "create"],
        &["orch-emit", "--format", "workflow", "1", "--install"],
    ] {
        let out = run(args);
        assert_code(&out, 0);
        let raw = raw_controls(&out);
        assert!(
            raw.is_empty(),
            "{args:?}: raw control characters {raw:?}:\nstdout: {:?}\nstderr: {:?}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = run(&["orch-queue", "init"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("proj^[[2J/.orch/orch.db"),
        "{out:?}"
    );
    let out = run(&["orch-hook", "install", "--user"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cfg^[]52;c;aGk=^G"),
        "{out:?}"
    );
}
