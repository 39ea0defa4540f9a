//! Tests for the front's own verbs: `orch doctor`, `orch status`,
//! `orch completions`, `orch man`, and the help text of every verb of the suite.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use serde_json::Value;

use orch_cli::completions::{Command, CommandFactory};

use crate::common::{assert_code, bin, bin_dir, json_lines, Env};

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `orch doctor --json` as records by check name, and the exit code.
fn doctor(env: &Env) -> (std::collections::HashMap<String, Value>, i32) {
    let out = env.run("orch", &["doctor", "--json"]);
    let recs = json_lines(&stdout(&out));
    let names: Vec<&str> = recs.iter().map(|r| r["check"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "tools",
            "database",
            "claude",
            "hooks",
            "mcp",
            "clipboard",
            "agent"
        ]
    );
    let code = out.status.code().unwrap();
    (
        recs.into_iter()
            .map(|r| (r["check"].as_str().unwrap().to_string(), r))
            .collect(),
        code,
    )
}

/// The human line of one check.
fn doctor_line(env: &Env, check: &str) -> (String, i32) {
    let out = env.run("orch", &["doctor"]);
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(check))
        .unwrap_or_else(|| panic!("no {check} line in:\n{text}"))
        .to_string();
    (line, out.status.code().unwrap())
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn doctor_healthy_setup_exits_0() {
    let env = Env::new();
    env.add("dev", "Fix the flaky login test");
    let (checks, code) = doctor(&env);
    assert_eq!(code, 0, "{checks:?}");
    let tools = &checks["tools"];
    assert_eq!(tools["status"], "ok", "{tools}");
    let names: Vec<&str> = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for t in [
        "batch", "emit", "hook", "mcp", "msg", "queue", "run", "verify",
    ] {
        assert!(names.contains(&t), "{t} missing from {names:?}");
    }
    assert!(tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["version"] == env!("CARGO_PKG_VERSION")));
    let db = &checks["database"];
    assert_eq!(db["status"], "ok", "{db}");
    assert_eq!(db["path"], env.db.to_str().unwrap());
    let msg = db["message"].as_str().unwrap();
    assert!(
        msg.contains("from ORCH_DB") && msg.contains("schema 2") && msg.contains("1 task"),
        "{msg}"
    );
    // Optional checks never fail the run.
    for c in ["claude", "hooks", "mcp", "clipboard", "agent"] {
        assert_ne!(checks[c]["status"], "fail", "{c}: {}", checks[c]);
        assert_eq!(checks[c]["required"], false);
    }
    let (line, _) = doctor_line(&env, "database");
    assert!(line.starts_with("✓ database"), "{line}");
}

#[test]
fn doctor_without_a_database_explains_and_creates_nothing() {
    let env = Env::new();
    let (checks, code) = doctor(&env);
    assert_eq!(
        checks["database"]["status"], "warn",
        "{}",
        checks["database"]
    );
    assert!(checks["database"]["message"]
        .as_str()
        .unwrap()
        .contains("does not exist yet"));
    assert_eq!(code, 0, "a database that can be made is enough");
    assert!(!env.db.exists(), "doctor must not create the database");
    let (line, _) = doctor_line(&env, "database");
    assert!(
        line.starts_with("! database") && line.contains("fix:"),
        "{line}"
    );

    // Under a regular file, no database can ever be made: ✗ and exit 1.
    let blocker = env.path().join("not-a-dir");
    std::fs::write(&blocker, "x").unwrap();
    let out = env
        .cmd("orch")
        .args(["doctor"])
        .env("ORCH_DB", blocker.join("orch.db"))
        .output()
        .unwrap();
    assert_code(&out, 1);
    let text = stdout(&out);
    let line = text.lines().find(|l| l.contains("database")).unwrap();
    assert!(
        line.starts_with("✗ database") && line.contains("cannot be made") && line.contains("fix: "),
        "{line}"
    );
}

#[test]
fn doctor_flags_a_database_others_can_read() {
    let env = Env::new();
    env.add("dev", "Fix the flaky login test");
    assert_eq!(mode(&env.db), 0o600);
    std::fs::set_permissions(&env.db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (checks, code) = doctor(&env);
    assert_eq!(code, 1);
    let db = &checks["database"];
    assert_eq!(db["status"], "fail");
    assert!(db["message"].as_str().unwrap().contains("0644"), "{db}");
    assert_eq!(db["fix"], format!("chmod 600 {}", env.db.display()));
    let (line, code) = doctor_line(&env, "database");
    assert_eq!(code, 1);
    assert!(line.starts_with("✗ database"), "{line}");
    assert_eq!(
        mode(&env.db),
        0o644,
        "doctor only reports; it changes nothing"
    );
    // Following the fix makes it healthy again.
    std::fs::set_permissions(&env.db, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(doctor(&env).1, 0);
}

#[test]
fn doctor_refuses_a_foreign_file() {
    let env = Env::new();
    std::fs::write(&env.db, vec![b'x'; 4096]).unwrap();
    std::fs::set_permissions(&env.db, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (checks, code) = doctor(&env);
    assert_eq!(code, 1);
    assert_eq!(
        checks["database"]["status"], "fail",
        "{}",
        checks["database"]
    );
    assert_eq!(std::fs::read(&env.db).unwrap(), vec![b'x'; 4096]);
}

#[test]
fn doctor_finds_hooks_and_mcp_where_claude_code_reads_them() {
    let env = Env::new();
    env.add("dev", "Fix the flaky login test");
    let (checks, _) = doctor(&env);
    assert_eq!(checks["hooks"]["status"], "warn");
    assert!(checks["hooks"]["fix"]
        .as_str()
        .unwrap()
        .contains("orch hook install"));
    assert_eq!(checks["mcp"]["status"], "warn");
    let (line, code) = doctor_line(&env, "hooks");
    assert!(
        line.starts_with("! hooks") && line.contains("fix: orch hook install"),
        "{line}"
    );
    assert_eq!(code, 0, "hooks are optional");

    // Project hooks, with other entries around them.
    std::fs::create_dir_all(env.path().join(".claude")).unwrap();
    std::fs::write(
        env.path().join(".claude/settings.json"),
        r#"{"permissions": {"allow": ["Bash(ls:*)"]}, "hooks": {
            "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "echo hi"}]},
                           {"matcher": "Agent", "hooks": [{"type": "command", "command": "/opt/bin/orch-hook PreToolUse", "timeout": 30}]}],
            "Stop": [{"hooks": [{"type": "command", "command": "orch-hook Stop"}]}]}}"#,
    )
    .unwrap();
    let (checks, code) = doctor(&env);
    assert_eq!(code, 0);
    let msg = checks["hooks"]["message"].as_str().unwrap();
    assert_eq!(checks["hooks"]["status"], "ok", "{msg}");
    assert!(
        msg.contains(".claude/settings.json") && msg.contains("PreToolUse") && msg.contains("Stop"),
        "{msg}"
    );

    // A settings file with only other hooks does not count.
    std::fs::write(
        env.path().join(".claude/settings.json"),
        r#"{"hooks": {"Stop": [{"hooks": [{"type": "command", "command": "say done"}]}]}}"#,
    )
    .unwrap();
    assert_eq!(doctor(&env).0["hooks"]["status"], "warn");

    // User-level hooks.
    std::fs::create_dir_all(env.home().join(".claude")).unwrap();
    std::fs::write(
        env.home().join(".claude/settings.json"),
        r#"{"hooks": {"SubagentStart": [{"hooks": [{"type": "command", "command": "orch-hook"}]}]}}"#,
    )
    .unwrap();
    let (checks, _) = doctor(&env);
    assert_eq!(checks["hooks"]["status"], "ok");
    assert!(checks["hooks"]["message"]
        .as_str()
        .unwrap()
        .contains("~/.claude/settings.json"));

    // MCP: a project .mcp.json, then the user's ~/.claude.json.
    std::fs::write(env.path().join(".mcp.json"), r#"{"mcpServers": {"orch": {"type": "stdio", "command": "/usr/local/bin/orch-mcp", "args": []}}}"#).unwrap();
    let (checks, _) = doctor(&env);
    assert_eq!(checks["mcp"]["status"], "ok");
    assert!(checks["mcp"]["message"]
        .as_str()
        .unwrap()
        .contains(".mcp.json (orch)"));
    std::fs::remove_file(env.path().join(".mcp.json")).unwrap();
    std::fs::write(
        env.home().join(".claude.json"),
        r#"{"mcpServers": {"tasks": {"command": "orch", "args": ["mcp"]}}}"#,
    )
    .unwrap();
    let (checks, _) = doctor(&env);
    assert_eq!(checks["mcp"]["status"], "ok", "{}", checks["mcp"]);
    assert!(checks["mcp"]["message"]
        .as_str()
        .unwrap()
        .contains("user scope (tasks)"));
}

/// A directory holding a copy of `orch` and the given tools (links to the
/// real ones, or scripts), so the front finds exactly those.
fn suite_dir(env: &Env, real: &[&str], scripts: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = env.path().join("bin");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(bin("orch"), dir.join("orch")).unwrap();
    for t in real {
        std::os::unix::fs::symlink(bin(&format!("orch-{t}")), dir.join(format!("orch-{t}")))
            .unwrap();
    }
    for (name, body) in scripts {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

#[test]
fn doctor_reports_missing_and_mismatched_tools() {
    let env = Env::new();
    let dir = suite_dir(
        &env,
        &["batch", "emit", "hook", "mcp", "msg", "verify"],
        &[
            ("orch-queue", "echo orch-queue 0.0.1"),
            ("orch-foo", "echo hi"),
        ],
    );
    let run = || {
        let out = std::process::Command::new(dir.join("orch"))
            .args(["doctor", "--json"])
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", env.home())
            .env("ORCH_DB", &env.db)
            .current_dir(env.path())
            .output()
            .unwrap();
        (json_lines(&stdout(&out)), out.status.code().unwrap())
    };
    let (recs, code) = run();
    assert_eq!(code, 1);
    let tools = &recs[0];
    assert_eq!(tools["status"], "fail");
    let msg = tools["message"].as_str().unwrap();
    assert!(msg.contains("orch-run not found"), "{msg}");
    assert!(msg.contains("orch-foo (third-party)"), "{msg}");
    // Once the missing one is there, the stale version is what is left.
    std::os::unix::fs::symlink(bin("orch-run"), dir.join("orch-run")).unwrap();
    let (recs, code) = run();
    assert_eq!(code, 1);
    let msg = recs[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("orch-queue is 0.0.1")
            && msg.contains(&format!("orch is {}", env!("CARGO_PKG_VERSION"))),
        "{msg}"
    );
    assert!(recs[0]["fix"].as_str().unwrap().contains("install"));
}

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

#[test]
fn bash_completion_completes_orch_queue_a_to_add() {
    let env = Env::new();
    let script = env.path().join("orch.bash");
    std::fs::write(&script, env.ok("orch", &["completions", "bash"])).unwrap();
    let complete = |words: &str, fun: &str| {
        let words: Vec<&str> = words.split(' ').collect();
        let code = format!(
            "source {}; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{}'; COMP_POINT=${{#COMP_LINE}}; {fun} {} {} {}; echo \"${{COMPREPLY[@]}}\"",
            script.display(),
            words.join(" "),
            words.len() - 1,
            words.join(" "),
            words[0],
            words[words.len() - 1],
            words[words.len() - 2],
        );
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(&code)
            .output()
            .unwrap();
        assert_code(&out, 0);
        stdout(&out)
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(complete("orch queue a", "_orch"), ["add"]);
    assert_eq!(complete("orch b", "_orch"), ["batch"]);
    assert!(complete("orch d", "_orch").contains(&"doctor".to_string()));
    assert!(complete("orch batch create --m", "_orch").contains(&"--max".to_string()));
    // Each orch-NAME binary has its own.
    assert_eq!(complete("orch-queue a", "_orch__queue"), ["add"]);
    assert_eq!(complete("orch-batch r", "_orch__batch"), ["release"]);
    // ... down to the options of a verb (clap_complete alone offers nothing
    // here for a binary whose name has a hyphen).
    assert_eq!(complete("orch-msg recv --a", "_orch__msg"), ["--as"]);
    assert!(complete("orch-queue add --", "_orch__queue").contains(&"--after".to_string()));

    // --dir: one file per binary, named as bash-completion looks them up.
    let dir = env.path().join("completions");
    env.ok(
        "orch",
        &["completions", "bash", "--dir", dir.to_str().unwrap()],
    );
    for b in [
        "orch",
        "orch-queue",
        "orch-batch",
        "orch-emit",
        "orch-verify",
        "orch-hook",
        "orch-msg",
        "orch-mcp",
        "orch-run",
    ] {
        let f = dir.join(format!("{b}.bash"));
        assert!(
            std::fs::read_to_string(&f)
                .unwrap()
                .contains(&format!("complete -F _{} ", b.replace('-', "__"))),
            "{f:?}"
        );
    }
}

#[test]
fn zsh_and_fish_completions_cover_the_suite() {
    let env = Env::new();
    let zsh = env.ok("orch", &["completions", "zsh"]);
    assert!(
        zsh.contains("#compdef orch")
            && zsh.contains("#compdef orch-queue")
            && zsh.contains("'add:"),
        "zsh script"
    );
    let fish = env.ok("orch", &["completions", "fish"]);
    assert!(fish.contains("complete -c orch ") && fish.contains("complete -c orch-run "));
    assert!(
        fish.contains("__fish_orch_using_subcommand queue") && fish.contains("-a \"add\""),
        "fish: orch queue add"
    );
    for (shell, text) in [("zsh", &zsh), ("fish", &fish)] {
        if which_exists(shell) {
            let f = env.path().join(format!("c.{shell}"));
            std::fs::write(&f, text).unwrap();
            let out = std::process::Command::new(shell)
                .arg("-n")
                .arg(&f)
                .output()
                .unwrap();
            assert_code(&out, 0);
        }
    }
    let bad = env.run("orch", &["completions", "tcsh"]);
    crate::common::assert_error(&bad, "orch");
}

fn which_exists(prog: &str) -> bool {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {prog}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn man_pages_for_every_binary_and_verb() {
    let env = Env::new();
    let dir = env.path().join("man1");
    let out = env.run("orch", &["man", dir.to_str().unwrap()]);
    assert_code(&out, 0);
    for page in [
        "orch.1",
        "orch-doctor.1",
        "orch-status.1",
        "orch-queue.1",
        "orch-queue-add.1",
        "orch-batch-create.1",
        "orch-emit.1",
        "orch-run.1",
        "orch-verify.1",
    ] {
        assert!(dir.join(page).is_file(), "{page} missing");
    }
    let orch = std::fs::read_to_string(dir.join("orch.1")).unwrap();
    assert!(
        orch.starts_with(".ie") || orch.contains(".TH orch 1"),
        "not a man page"
    );
    assert!(
        orch.contains("orch\\-queue(1)") && orch.contains("orch\\-doctor(1)"),
        "orch.1 lists the tools"
    );
    // No page names a `help` verb, which has no page of its own.
    for page in std::fs::read_dir(&dir).unwrap().flatten() {
        let text = std::fs::read_to_string(page.path()).unwrap();
        assert!(!text.contains("\\-help(1)"), "{:?}", page.path());
    }
    assert!(!dir.join("orch-queue-help.1").exists());
    let add = std::fs::read_to_string(dir.join("orch-queue-add.1")).unwrap();
    assert!(add.contains("Example"), "the examples reach the man page");
    // Hidden from help, as it is for packagers.
    assert!(!env.ok("orch", &["--help"]).contains("man "));
}

/// Every verb of every tool: a one-line summary and an example in --help.
#[test]
fn every_verb_has_a_summary_and_an_example() {
    fn walk(cmd: &Command, path: &str, missing: &mut Vec<String>) {
        let path = format!("{path} {}", cmd.get_name()).trim().to_string();
        if cmd
            .get_about()
            .is_none_or(|a| a.to_string().trim().is_empty())
        {
            missing.push(format!(
                "{path}: no one-line summary (a doc comment on the command)"
            ));
        }
        let help = cmd
            .get_after_help()
            .or(cmd.get_after_long_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        if !help.contains("Example") {
            missing.push(format!("{path}: no after_help with an Example"));
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &path, missing);
        }
    }
    let mut missing = Vec::new();
    walk(&orch_cli::orch::Cli::command(), "", &mut missing);
    for t in orch_cli::completions::SUITE {
        walk(&orch_cli::completions::tool_command(t), "", &mut missing);
    }
    assert!(
        missing.is_empty(),
        "help texts to fix:\n{}",
        missing.join("\n")
    );
    // And what clap shows is what the binaries print.
    let env = Env::new();
    let help = env.ok("orch-queue", &["add", "--help"]);
    assert!(help.contains("Example"), "{help}");
    assert!(bin_dir().join("orch").exists());
}

/// On a terminal (a pty from `script`), --watch draws once, then once per
/// change, in place (cursor home, clear to end), and not while nothing changes.
#[test]
fn status_watch_redraws_only_on_change() {
    if !which_exists("script") {
        eprintln!("skipped: no `script` (util-linux) to give orch a terminal");
        return;
    }
    let env = Env::new();
    let log = env.path().join("typescript");
    let path = std::env::join_paths(std::iter::once(bin_dir()).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let mut child = std::process::Command::new("script")
        .args(["-qfc", "timeout 30 orch status --watch"])
        .arg(&log)
        .env("PATH", path)
        .env("HOME", env.home())
        .env("ORCH_DB", &env.db)
        .current_dir(env.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let frames = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("\x1b[H")
            .count()
    };
    let wait_for = |n: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while frames() < n && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        frames()
    };
    assert_eq!(wait_for(1), 1, "first frame");
    env.add("dev", "Fix the flaky login test");
    assert_eq!(wait_for(2), 2, "a frame for the new database");
    env.add("dev", "Write the release notes");
    assert_eq!(wait_for(3), 3, "a frame for the change");
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert_eq!(frames(), 3, "no redraw while nothing changes");
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    let last = text.rsplit("\x1b[H").next().unwrap();
    assert!(last.contains("tasks     2 queued (2 ready)"), "{last:?}");
    assert!(
        last.contains("\x1b[K") && last.contains("\x1b[J"),
        "lines are cleared in place: {last:?}"
    );
    assert_eq!(
        text.matches("\x1b[2J").count(),
        1,
        "the screen is cleared once, not per frame"
    );
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

/// What `orch-hook install` and `orch-mcp --config` write is what doctor finds.
#[test]
fn doctor_sees_what_orch_hook_and_orch_mcp_set_up() {
    let env = Env::new();
    env.add("dev", "Fix the flaky login test");
    env.ok("orch-hook", &["install"]);
    let (checks, code) = doctor(&env);
    assert_eq!(code, 0);
    assert_eq!(checks["hooks"]["status"], "ok", "{}", checks["hooks"]);
    let msg = checks["hooks"]["message"].as_str().unwrap();
    assert!(
        msg.contains(".claude/settings.json") && msg.contains("PreToolUse"),
        "{msg}"
    );
    env.ok("orch-hook", &["uninstall"]);
    assert_eq!(doctor(&env).0["hooks"]["status"], "warn");

    let config = env.ok("orch-mcp", &["--config"]);
    let json = &config[config
        .find("\n{")
        .expect("a JSON block in orch-mcp --config")
        + 1..];
    let end = json.find("\n}").unwrap() + 2;
    std::fs::write(env.path().join(".mcp.json"), &json[..end]).unwrap();
    let (checks, _) = doctor(&env);
    assert_eq!(checks["mcp"]["status"], "ok", "{}", checks["mcp"]);
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

/// `orch doctor --json`'s hooks record, run in `dir`.
fn hooks_check_in(env: &Env, dir: &Path) -> Value {
    let out = env
        .cmd("orch")
        .args(["doctor", "--json"])
        .current_dir(dir)
        .output()
        .unwrap();
    json_lines(&stdout(&out))
        .into_iter()
        .find(|r| r["check"] == "hooks")
        .unwrap()
}

#[test]
fn issue17_4_doctor_says_root_hooks_do_not_run_in_a_subdirectory() {
    let env = Env::new();
    std::fs::create_dir_all(env.path().join(".git")).unwrap();
    let pkg = env.path().join("pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    env.ok("orch-hook", &["install"]);
    assert_eq!(hooks_check_in(&env, env.path())["status"], "ok");
    let c = hooks_check_in(&env, &pkg);
    assert_eq!(c["status"], "warn", "{c}");
    let msg = c["message"].as_str().unwrap();
    assert!(
        msg.contains("/.claude/settings.json") && msg.contains("started here, it runs none"),
        "{msg}"
    );
    let fix = c["fix"].as_str().unwrap();
    assert!(
        fix.contains("orch hook install --here") && fix.contains("orch hook install --user"),
        "{fix}"
    );
    // Installed where Claude Code is started, it runs.
    let out = env
        .cmd("orch-hook")
        .args(["install", "--here"])
        .current_dir(&pkg)
        .output()
        .unwrap();
    assert_code(&out, 0);
    assert!(pkg.join(".claude/settings.json").is_file());
    assert_eq!(hooks_check_in(&env, &pkg)["status"], "ok");
    // The repository root's settings.local.json is read from a subdirectory.
    std::fs::remove_dir_all(pkg.join(".claude")).unwrap();
    std::fs::rename(
        env.path().join(".claude/settings.json"),
        env.path().join(".claude/settings.local.json"),
    )
    .unwrap();
    assert_eq!(hooks_check_in(&env, &pkg)["status"], "ok");
}
