//! The guided check for real: the message `orch-verify new` prints → Claude
//! Code's sub-agents run the probes through their Bash tool → the report.

use serde_json::Value;

use crate::common::Env;
use crate::harness::*;

/// Makes a 3-probe run, pastes its message into `claude -p` with the permission
/// rule orch-verify shows, and returns the report (JSON) and its exit code.
fn guided(env: &Env, scenario: &str) -> (Value, i32, Model) {
    let dir = project(env);
    let made: Value = serde_json::from_str(&ok_in(
        env,
        &dir,
        "orch-verify",
        &["new", "-n", "3", "--sleep", "4", "--json"],
    ))
    .unwrap();
    let run = made["run"].to_string();
    let message = made["message"].as_str().unwrap();
    let model = Model::start(env, scenario, 0.0);
    claude_p(
        env,
        &model,
        &dir,
        message,
        &["--allowedTools", "Bash(orch-verify probe:*)"],
    );

    // Each probe ran inside Claude Code: a sub-agent asked for its Bash call,
    // and the Bash result came back to that sub-agent.
    let commands: Vec<String> = made["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let probes = model.by_role("probe");
    for cmd in &commands {
        let asked = probes
            .iter()
            .flat_map(|r| tool_uses(&r["answer"], "Bash"))
            .filter(|i| i["command"] == cmd.as_str())
            .count();
        assert_eq!(asked, 1, "{cmd} asked for once");
    }
    // ... and each Bash result (the probe's own line) came back to its sub-agent.
    let answered = probes
        .iter()
        .filter(|r| !tool_results(r).is_empty())
        .count();
    assert_eq!(
        answered,
        commands.len(),
        "every probe's Bash result reached the model"
    );
    let out = env
        .cmd("orch-verify")
        .args(["report", &run, "--json"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let code = out.status.code().unwrap();
    assert!(code == 0 || code == 1, "report exit {code}");
    (serde_json::from_slice(&out.stdout).unwrap(), code, model)
}

#[test]
fn guided_check_obedient_model_runs_the_probes_through_bash_parallel() {
    let env = Env::new();
    let (report, code, model) = guided(&env, "obedient");
    assert_eq!(report["verdict"], "PARALLEL", "{report}");
    assert_eq!(code, 0);
    assert_eq!(model.agent_messages().len(), 1);
    assert_eq!(model.agent_messages()[0].len(), 3);
}

#[test]
fn guided_check_one_by_one_model_is_not_parallel() {
    let env = Env::new();
    let (report, code, model) = guided(&env, "one-by-one");
    assert_ne!(report["verdict"], "PARALLEL", "{report}");
    assert_eq!(report["verdict"], "SEQUENTIAL", "{report}");
    assert_eq!(code, 1);
    assert_eq!(model.agent_messages().len(), 3);
}
