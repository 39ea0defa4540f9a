//! Every Agent option per task: stored, validated against the Agent tool's
//! enums, shown, emitted only when set, and honoured by orch-run.

use std::path::PathBuf;

use serde_json::Value;

use crate::common::*;

fn claude_dir(env: &Env) -> PathBuf {
    let d = env.path().join("claude-bin");
    std::fs::create_dir_all(&d).unwrap();
    let link = d.join("claude");
    if !link.exists() {
        std::os::unix::fs::symlink(
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fake-agent"),
            &link,
        )
        .unwrap();
    }
    d
}

const ALL: &[&str] = &[
    "--model",
    "opus",
    "--isolation",
    "worktree",
    "--background",
    "--name",
    "reviewer-1",
    "--mode",
    "plan",
];

/// The Agent tool's input keys (SPEC §7); anything else is unknown to it.
const KNOWN: &[&str] = &[
    "description",
    "prompt",
    "subagent_type",
    "model",
    "run_in_background",
    "name",
    "team_name",
    "mode",
    "isolation",
];

#[test]
fn agent_options_are_stored_shown_and_emitted_only_when_set() {
    let env = Env::new();
    let mut args = vec!["add", "general-purpose", "Review the parser"];
    args.extend(ALL);
    let id = env.ok("orch-queue", &args).trim().to_string();
    let plain = env.add("general-purpose", "Map the layout");
    let line = r#"{"role":"Explore","prompt":"Read the docs","model":"haiku","isolation":"remote","background":true,"name":"docs","mode":"acceptEdits"}"#;
    let from_stdin = env.ok_with("orch-queue", &["add", "--stdin"], line.as_bytes());

    let shown = env.ok("orch-queue", &["show", &id]);
    for l in [
        "model:       opus",
        "isolation:   worktree",
        "background:  yes",
        "name:        reviewer-1",
        "mode:        plan",
    ] {
        assert!(shown.contains(l), "{l} in {shown}");
    }
    let j = json(&env.ok("orch-queue", &["show", &id, "--json"]));
    assert_eq!(
        (
            &j["model"],
            &j["isolation"],
            &j["background"],
            &j["name"],
            &j["mode"]
        ),
        (
            &Value::from("opus"),
            &Value::from("worktree"),
            &Value::from(true),
            &Value::from("reviewer-1"),
            &Value::from("plan")
        )
    );
    let jp = json(&env.ok("orch-queue", &["show", &plain.to_string(), "--json"]));
    assert!(
        jp.get("model").is_none() && jp.get("background").is_none(),
        "{jp}"
    );

    let b = env.ok("orch-batch", &["create"]).trim().to_string();
    let obj = json(&env.ok("orch-emit", &[&b, "--format", "json"]));
    let calls = obj["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 3);
    let by_task: Vec<(i64, &Value)> = obj["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_i64().unwrap())
        .zip(calls)
        .collect();
    let call = |id: &str| by_task.iter().find(|(t, _)| t.to_string() == id).unwrap().1;
    let full = call(&id);
    assert_eq!(full["model"], "opus");
    assert_eq!(full["isolation"], "worktree");
    assert_eq!(full["run_in_background"], true);
    assert_eq!(full["name"], "reviewer-1");
    assert_eq!(full["mode"], "plan");
    let bare = call(&plain.to_string());
    let keys: Vec<&String> = bare.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["description", "prompt", "subagent_type"],
        "unset options are not sent"
    );
    let s = call(from_stdin.trim());
    assert_eq!(
        (s["model"].as_str(), s["mode"].as_str()),
        (Some("haiku"), Some("acceptEdits"))
    );
    // The claude format carries the very same calls.
    let msg = env.ok("orch-emit", &[&b]);
    let start = msg.find("\n[\n").unwrap() + 1;
    let end = msg.rfind("\n]\n").unwrap() + 2;
    let in_msg: Vec<Value> = serde_json::from_str(&msg[start..end]).unwrap();
    assert_eq!(&in_msg, calls);
}

#[test]
fn emitted_calls_with_every_option_pass_the_tools_schema() {
    let env = Env::new();
    for (m, iso, mode) in [
        ("sonnet", "worktree", "acceptEdits"),
        ("haiku", "remote", "bypassPermissions"),
        ("opus", "worktree", "dontAsk"),
    ] {
        env.ok(
            "orch-queue",
            &[
                "add",
                "general-purpose",
                "Do it",
                "--model",
                m,
                "--isolation",
                iso,
                "--mode",
                mode,
                "--background",
                "--name",
                "n1",
            ],
        );
    }
    let b = env.ok("orch-batch", &["create"]).trim().to_string();
    let obj = json(&env.ok("orch-emit", &[&b, "--format", "json"]));
    for c in obj["calls"].as_array().unwrap() {
        for k in c.as_object().unwrap().keys() {
            assert!(KNOWN.contains(&k.as_str()), "unknown key {k}");
        }
        assert!(["sonnet", "opus", "haiku"].contains(&c["model"].as_str().unwrap()));
        assert!(["worktree", "remote"].contains(&c["isolation"].as_str().unwrap()));
        assert!([
            "acceptEdits",
            "auto",
            "bypassPermissions",
            "default",
            "dontAsk",
            "plan"
        ]
        .contains(&c["mode"].as_str().unwrap()));
        assert_eq!(c["run_in_background"], true);
    }
}

#[test]
fn values_outside_the_agent_tools_enums_are_refused_and_nothing_is_written() {
    let env = Env::new();
    env.add("dev", "seed");
    let before = dump(&env.db);
    for bad in [
        &["--model", "gpt-5"][..],
        &["--isolation", "docker"],
        &["--mode", "yolo"],
        &["--name", "two words"],
        &["--name", "-x"],
        &["--touches", "/etc/passwd"],
        &["--touches", "../up"],
    ] {
        let mut args = vec!["add", "dev", "Do it"];
        args.extend(bad);
        let out = env.run("orch-queue", &args);
        assert_code(&out, 2);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(err.starts_with("orch-queue: error:"), "{bad:?}: {err}");
    }
    for line in [
        r#"{"role":"dev","prompt":"x","model":"gpt"}"#,
        r#"{"role":"dev","prompt":"x","mode":"root"}"#,
        r#"{"role":"dev","prompt":"x","isolation":"vm"}"#,
        r#"{"role":"dev","prompt":"x","background":"yes"}"#,
        r#"{"role":"dev","prompt":"x","team_name":"t"}"#,
    ] {
        let input = format!("{{\"role\":\"dev\",\"prompt\":\"fine\"}}\n{line}\n");
        let out = env.run_with("orch-queue", &["add", "--stdin"], input.as_bytes());
        let err = assert_error(&out, "orch-queue");
        assert!(err.contains("line 2"), "{err}");
    }
    assert_eq!(dump(&env.db), before, "nothing written");
}

#[test]
fn orch_run_passes_the_tasks_model_and_mode_to_claude() {
    let env = Env::new();
    let with = env
        .ok(
            "orch-queue",
            &[
                "add",
                "dev",
                "Fix the bug",
                "--model",
                "haiku",
                "--mode",
                "acceptEdits",
            ],
        )
        .trim()
        .parse::<i64>()
        .unwrap();
    let without = env.add("dev", "Fix the other bug");
    let b = env.ok("orch-batch", &["create"]).trim().to_string();
    let mut c = env.cmd("orch-run");
    c.args([b.as_str(), "--agent", "claude"])
        .env("PATH", path_with(&[&claude_dir(&env)]));
    assert_code(&c.output().unwrap(), 0);
    let r = task(&env, with)["result"].as_str().unwrap().to_string();
    assert!(
        r.starts_with("model: haiku\npermission mode: acceptEdits\n"),
        "{r}"
    );
    let r = task(&env, without)["result"].as_str().unwrap().to_string();
    assert!(!r.contains("model:"), "{r}");
}

#[test]
fn the_workflow_format_carries_a_tasks_model_and_worktree_isolation() {
    let env = Env::new();
    env.ok(
        "orch-queue",
        &[
            "add",
            "general-purpose",
            "Do it",
            "--model",
            "opus",
            "--isolation",
            "worktree",
        ],
    );
    env.add("general-purpose", "Plain");
    let b = env.ok("orch-batch", &["create"]).trim().to_string();
    let s = env.ok("orch-emit", &[&b, "--format", "workflow"]);
    let lines: Vec<&str> = s.lines().filter(|l| l.contains("agent(")).collect();
    assert_eq!(lines.len(), 2, "{s}");
    assert!(
        lines[0].contains(r#"model: "opus""#) && lines[0].contains(r#"isolation: "worktree""#),
        "{s}"
    );
    assert!(
        !lines[1].contains("model:") && !lines[1].contains("isolation:"),
        "{s}"
    );
}
