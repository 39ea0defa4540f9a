//! `orch doctor`: what is set up (tools, database, Claude Code's hooks and MCP
//! registration) and how to fix the rest.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;

use crate::common::{assert_code, bin, json_lines, output_of, stdout, Env};

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
            "agent",
            "limits"
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
        "batch", "emit", "events", "hook", "mcp", "msg", "queue", "run", "verify",
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
        msg.contains("from ORCH_DB")
            && msg.contains(&format!(
                "schema {}",
                orch_core::db::schema::current_version()
            ))
            && msg.contains("1 task"),
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

    // With CLAUDE_CONFIG_DIR set, Claude Code's .claude.json is in it.
    let config = env.path().join("config");
    std::fs::create_dir(&config).unwrap();
    let mcp_in = |config: &Path| {
        let mut c = env.cmd("orch");
        c.args(["doctor", "--json"])
            .env("CLAUDE_CONFIG_DIR", config);
        let recs = json_lines(&stdout(&output_of(&mut c)));
        recs.into_iter().find(|r| r["check"] == "mcp").unwrap()
    };
    assert_eq!(mcp_in(&config)["status"], "warn");
    std::fs::rename(env.home().join(".claude.json"), config.join(".claude.json")).unwrap();
    let check = mcp_in(&config);
    assert_eq!(check["status"], "ok", "{check}");
    assert!(check["message"]
        .as_str()
        .unwrap()
        .contains("config/.claude.json, user scope (tasks)"));
}

const ORCH_HOOKS: &str =
    r#"{"hooks": {"SubagentStart": [{"hooks": [{"type": "command", "command": "orch-hook"}]}]}}"#;

/// `orch doctor`'s hooks check and `orch-hook status`, run in `dir` with
/// `vars`: they must agree on whether orch's hooks run there, and on which
/// file. Returns the file both name, if any.
fn hooks_agree(env: &Env, dir: &Path, vars: &[(&str, &Path)]) -> Option<String> {
    let run = |args: &[&str]| {
        let mut c = env.cmd(args[0]);
        c.args(&args[1..]).current_dir(dir);
        for (k, v) in vars {
            c.env(k, v);
        }
        output_of(&mut c)
    };
    let doctor = json_lines(&stdout(&run(&["orch", "doctor", "--json"])));
    let check = doctor.iter().find(|r| r["check"] == "hooks").unwrap();
    let status = run(&["orch-hook", "status", "--json"]);
    let scopes = json_lines(&stdout(&status));
    let running: Vec<&Value> = scopes
        .iter()
        .filter(|s| s["read_here"] == true && !s["events"].as_array().unwrap().is_empty())
        .collect();
    let message = check["message"].as_str().unwrap();
    assert_eq!(
        check["status"] == "ok",
        !running.is_empty(),
        "doctor: {message}; orch-hook status: {scopes:?}"
    );
    assert_eq!(
        status.status.code(),
        Some(if running.is_empty() { 1 } else { 0 })
    );
    let file = running.first()?["settings"].as_str().unwrap().to_string();
    let name = Path::new(&file).file_name().unwrap().to_string_lossy();
    assert!(
        message.contains(&*name),
        "doctor: {message}; status: {file}"
    );
    Some(file)
}

#[test]
fn doctor_and_hook_status_agree_on_every_scope() {
    let env = Env::new();
    env.add("dev", "x");
    let root = env.path();
    std::fs::create_dir(root.join(".git")).unwrap();
    std::fs::create_dir_all(root.join(".claude")).unwrap();
    let sub = root.join("sub");
    std::fs::create_dir(&sub).unwrap();
    assert_eq!(hooks_agree(&env, root, &[]), None);

    // Project scope: read where Claude Code starts, not from a subdirectory.
    let project = root.join(".claude/settings.json");
    std::fs::write(&project, ORCH_HOOKS).unwrap();
    let found = hooks_agree(&env, root, &[]).unwrap();
    assert!(found.ends_with(".claude/settings.json"), "{found}");
    assert_eq!(hooks_agree(&env, &sub, &[]), None);
    std::fs::remove_file(&project).unwrap();

    // Local scope: here, and at the repository root from a subdirectory.
    let local = root.join(".claude/settings.local.json");
    std::fs::write(&local, ORCH_HOOKS).unwrap();
    let found = hooks_agree(&env, root, &[]).unwrap();
    assert!(found.ends_with(".claude/settings.local.json"), "{found}");
    let status = stdout(&env.run("orch-hook", &["status"]));
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("local ") && l.contains("installed for 1 events")),
        "{status}"
    );
    let found = hooks_agree(&env, &sub, &[]).unwrap();
    assert!(found.ends_with(".claude/settings.local.json"), "{found}");
    std::fs::remove_file(&local).unwrap();

    // User scope: ~/.claude, or $CLAUDE_CONFIG_DIR where that is set.
    std::fs::create_dir_all(env.home().join(".claude")).unwrap();
    let user = env.home().join(".claude/settings.json");
    std::fs::write(&user, ORCH_HOOKS).unwrap();
    let found = hooks_agree(&env, root, &[]).unwrap();
    assert_eq!(Path::new(&found), user);
    let config = env.path().join("config");
    std::fs::create_dir(&config).unwrap();
    let vars: &[(&str, &Path)] = &[("CLAUDE_CONFIG_DIR", &config)];
    assert_eq!(hooks_agree(&env, root, vars), None);
    std::fs::write(config.join("settings.json"), ORCH_HOOKS).unwrap();
    let found = hooks_agree(&env, &sub, vars).unwrap();
    assert_eq!(Path::new(&found), config.join("settings.json"));
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
        &[
            "batch", "emit", "events", "hook", "land", "mcp", "msg", "verify",
        ],
        &[
            ("orch-queue", "echo orch-queue 0.0.1"),
            ("orch-foo", "echo hi"),
        ],
    );
    let run = || {
        let out = output_of(
            env.command(dir.join("orch"))
                .args(["doctor", "--json"])
                .env("PATH", "/usr/bin:/bin")
                .env("ORCH_DB", &env.db),
        );
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
