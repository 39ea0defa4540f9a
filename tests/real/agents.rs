//! Issue item 3: orch's agent lookup must agree with Claude Code's, tested
//! against the `agents` list of the real CLI's stream-json `init` message.

use std::path::Path;
use std::process::Stdio;

use serde_json::Value;

use crate::common::{assert_code, Env};
use crate::harness::*;

/// How Claude Code compares agent names: case, spaces, dashes and underscores ignored.
fn norm(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, ' ' | '-' | '_'))
        .flat_map(char::to_lowercase)
        .collect()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The agent types the CLI itself lists at start (`init.agents`).
fn cli_agents(env: &Env, model: &Model, dir: &Path, extra: &[(&str, &str)]) -> Vec<String> {
    let mut c = claude_cmd(
        env,
        model,
        dir,
        &["-p", "hello", "--output-format", "stream-json", "--verbose"],
    );
    for (k, v) in extra {
        c.env(k, v);
    }
    let out = run_bounded(c, CLAUDE_LIMIT);
    assert_code(&out, 0);
    let text = String::from_utf8(out.stdout).unwrap();
    let init: Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "system" && v["subtype"] == "init")
        .expect("the CLI printed its init message");
    init["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// Runs an orch tool in `dir` with `extra` environment; asserts exit 0.
fn orch_with(env: &Env, dir: &Path, args: &[&str], extra: &[(&str, &str)]) -> String {
    let mut c = env.cmd(args[0]);
    c.args(&args[1..])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in extra {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    assert_code(&out, 0);
    String::from_utf8(out.stdout).unwrap()
}

/// Queues one task per role, batches them and returns orch-emit's JSON calls.
fn emitted(env: &Env, dir: &Path, roles: &[&str], extra: &[(&str, &str)]) -> Vec<Value> {
    for role in roles {
        orch_with(
            env,
            dir,
            &["orch-queue", "add", role, &format!("A task for {role}")],
            extra,
        );
    }
    let batch = orch_with(env, dir, &["orch-batch", "create", "--max", "50"], extra);
    let json = orch_with(
        env,
        dir,
        &["orch-emit", "--format", "json", batch.trim()],
        extra,
    );
    let v: Value = serde_json::from_str(&json).unwrap();
    v["calls"].as_array().unwrap().clone()
}

/// For every role: orch names it as `subagent_type` exactly when the CLI knows
/// an agent of that name, and then by a name the CLI resolves to it.
fn assert_agree(roles: &[&str], calls: &[Value], known: &[String]) {
    for (role, call) in roles.iter().zip(calls) {
        let cli = known.iter().find(|k| norm(k) == norm(role));
        match (cli, call["subagent_type"].as_str()) {
            (Some(k), Some(t)) => assert_eq!(norm(t), norm(k), "role {role}"),
            (None, None) => {}
            (cli, orch) => panic!("role {role}: Claude Code knows {cli:?}, orch emitted {orch:?} (CLI agents: {known:?})"),
        }
    }
}

#[test]
fn agent_lookup_matches_the_clis_init_agents_and_every_call_launches() {
    let env = Env::new();
    let dir = project(&env);
    let config = env.path().join("config");
    write(
        &dir.join(".claude/agents/nested/deep-helper.md"),
        "---\nname: deep-helper\ndescription: Found in a subdirectory\n---\nYou help.",
    );
    write(
        &dir.join(".claude/agents/nodesc.md"),
        "---\nname: nodesc\n---\nNo description: skipped.",
    );
    write(
        &dir.join(".claude/agents/reviewer.md"),
        "---\nname: Code_Reviewer\ndescription: Reviews code\n---\nYou review.",
    );
    write(
        &config.join("agents/config-agent.md"),
        "---\nname: config-agent\ndescription: From CLAUDE_CONFIG_DIR\n---\nYou help.",
    );
    write(
        &env.home().join(".claude/agents/home-agent.md"),
        "---\nname: home-agent\ndescription: In ~/.claude, which CLAUDE_CONFIG_DIR replaces\n---\nYou help.",
    );
    let extra = [("CLAUDE_CONFIG_DIR", config.to_str().unwrap())];
    let roles = [
        "deep-helper",
        "nodesc",
        "code-reviewer",
        "config-agent",
        "home-agent",
        "explore",
        "statusline-setup",
        "claude",
        "general-purpose",
        "Plan",
        "no-such-agent",
    ];
    let model = Model::start(&env, "obedient", 0.0);
    let known = cli_agents(&env, &model, &dir, &extra);
    ok_in(&env, &dir, "orch-hook", &["install"]);
    let calls = emitted(&env, &dir, &roles, &extra);
    assert_agree(&roles, &calls, &known);

    // The calls orch made launch for real: every task done, no "not found".
    let message = orch_with(&env, &dir, &["orch-emit", "1"], &extra);
    let mut c = claude_cmd(&env, &model, &dir, &["-p", &message]);
    c.env("CLAUDE_CONFIG_DIR", &config);
    assert_code(&run_bounded(c, CLAUDE_LIMIT), 0);
    let errors: Vec<String> = model
        .by_role("main")
        .iter()
        .flat_map(tool_results)
        .map(|r| r["content"].to_string())
        .filter(|t| t.contains("not found"))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let all = statuses(&env);
    assert_eq!(all.len(), roles.len());
    assert!(all.iter().all(|(_, s)| s == "done"), "{all:?}");
}

#[test]
fn agent_lookup_in_coordinator_mode_knows_only_worker() {
    let env = Env::new();
    let dir = project(&env);
    let extra = [("CLAUDE_CODE_COORDINATOR_MODE", "1")];
    let model = Model::start(&env, "obedient", 0.0);
    let known = cli_agents(&env, &model, &dir, &extra);
    assert_eq!(
        known,
        ["worker"],
        "what this Claude Code lists in coordinator mode"
    );
    let roles = ["worker", "general-purpose", "Explore"];
    let calls = emitted(&env, &dir, &roles, &extra);
    assert_agree(&roles, &calls, &known);
}
