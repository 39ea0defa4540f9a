//! The paste path: `orch-batch create | orch-emit` → `claude -p MESSAGE` →
//! the agents, with orch-hook recording them.

use crate::common::Env;
use crate::harness::*;

/// A project with hooks installed and `n` queued tasks; returns it and the message.
fn pasted(env: &Env, n: usize) -> (std::path::PathBuf, Vec<i64>, String) {
    let dir = project(env);
    ok_in(env, &dir, "orch-hook", &["install"]);
    let prompts: Vec<String> = (1..=n).map(|i| format!("Task number {i}")).collect();
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let ids = queue(env, &dir, &refs);
    let msg = batch_message(env, &dir, n);
    (dir, ids, msg)
}

#[test]
fn paste_path_obedient_model_launches_every_agent_from_one_message_parallel() {
    let env = Env::new();
    let (dir, ids, msg) = pasted(&env, 3);
    let model = Model::start(&env, "obedient", 3.0);
    claude_p(&env, &model, &dir, &msg, &[]);

    // The model sent all three calls in one assistant message, and Claude Code
    // started a sub-agent for each (their requests reached the model).
    let launched = model.agent_messages();
    assert_eq!(launched.len(), 1, "{launched:?}");
    assert_eq!(launched[0].len(), 3);
    assert_eq!(model.by_role("agent").len(), 3);

    let v = session_verdict(&env, &dir);
    assert_eq!(v["verdict"], "PARALLEL", "{v}");
    assert_eq!(v["peak"], 3);
    for id in ids {
        let (status, result) = task_row(&env, id);
        assert_eq!(status, "done", "task {id}");
        assert!(
            result
                .unwrap_or_default()
                .contains(&format!("finished task {id}")),
            "task {id}: the agent's answer is its result"
        );
    }
}

#[test]
fn paste_path_one_by_one_model_is_sequential() {
    let env = Env::new();
    let (dir, ids, msg) = pasted(&env, 3);
    let model = Model::start(&env, "one-by-one", 1.0);
    claude_p(&env, &model, &dir, &msg, &[]);

    let launched = model.agent_messages();
    assert_eq!(launched.len(), 3, "one call per message: {launched:?}");
    assert!(launched.iter().all(|m| m.len() == 1));

    let v = session_verdict(&env, &dir);
    assert_eq!(v["verdict"], "SEQUENTIAL", "{v}");
    assert_eq!(v["peak"], 1);
    for id in ids {
        assert_eq!(task_row(&env, id).0, "done", "task {id}");
    }
}

/// Prompt text of any shape survives the trip: orch's message → the model's
/// Agent calls → Claude Code → the sub-agent's first user turn, byte for byte.
#[test]
fn paste_path_hostile_prompts_reach_the_sub_agents_exactly() {
    let env = Env::new();
    let dir = project(&env);
    ok_in(&env, &dir, "orch-hook", &["install"]);
    let prompts = [
        "Quote \"this\" and 'that', then `backticks` and a \") breakout",
        "Shell: $(rm -rf /) ; `id` && echo $HOME | cat\n\tindented line\\n not a newline",
        "Unicode: héllo wörld ✓ 日本語 — and a ```fenced``` block\n```json\n{\"a\": [1, 2]}\n```",
    ];
    let ids = queue(&env, &dir, &prompts);
    let msg = batch_message(&env, &dir, prompts.len());
    let model = Model::start(&env, "obedient", 0.0);
    claude_p(&env, &model, &dir, &msg, &[]);

    let mut seen: Vec<String> = model
        .by_role("agent")
        .iter()
        .map(|r| {
            let first = &r["body"]["messages"][0]["content"];
            first
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|b| b["text"].as_str())
                .filter(|t| !t.trim_start().starts_with("<system-reminder>"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    seen.sort();
    let mut want: Vec<String> = prompts
        .iter()
        .zip(&ids)
        .map(|(p, id)| format!("{p}\n\norch-task: {id}"))
        .collect();
    want.sort();
    assert_eq!(seen, want);
    assert!(ids.iter().all(|id| task_row(&env, *id).0 == "done"));
}
