//! The CLI the tier drives is the pinned one, and it talks only to the
//! scripted model.

use crate::common::Env;
use crate::harness::*;

#[test]
fn the_installed_cli_is_the_pinned_version() {
    let out = std::process::Command::new(claude_bin())
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        version.starts_with(&format!("{} ", pinned_version())),
        "tests/claude_code pins {}, the installed CLI says {version:?}: run scripts/test-deps.sh",
        pinned_version()
    );
}

#[test]
fn a_prompt_reaches_the_scripted_model_and_its_answer_comes_back() {
    let env = Env::new();
    let dir = project(&env);
    let model = Model::start(&env, "obedient", 0.0);
    let out = claude_p(
        &env,
        &model,
        &dir,
        "Say hello",
        &["--output-format", "json"],
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["result"], "done: Say hello");
    assert_eq!(result["is_error"], false);
    let requests = model.requests();
    assert!(!requests.is_empty());
    assert!(
        requests.iter().all(|r| r["path"] == "/v1/messages"),
        "{:?}",
        requests.iter().map(|r| &r["path"]).collect::<Vec<_>>()
    );
    let main = model.by_role("main");
    assert_eq!(main.len(), 1);
    assert_eq!(main[0]["body"]["stream"], true, "the CLI streams (SSE)");
}

#[test]
fn a_broken_stream_makes_the_cli_ask_again_for_plain_json() {
    let env = Env::new();
    let dir = project(&env);
    let model = Model::start(&env, "obedient", 0.0);
    let prompt = "Say hello\nmodel-stream: broken";
    let out = claude_p(&env, &model, &dir, prompt, &["--output-format", "json"]);
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["result"], "done: Say hello");
    let streams: Vec<_> = model
        .by_role("main")
        .iter()
        .map(|r| r["body"]["stream"].as_bool().unwrap_or(false))
        .collect();
    assert_eq!(streams, [true, false], "SSE first, then plain JSON");
}
