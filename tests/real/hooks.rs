//! Hook auto-batching: tasks queued past the threshold reach Claude through
//! UserPromptSubmit (additional context) and Stop (a blocked stop), and the
//! model launches them. In this Claude Code, a background agent's completion
//! notification also passes through UserPromptSubmit.

use crate::common::Env;
use crate::harness::*;

#[test]
fn hook_auto_batching_hands_claude_the_batch_with_the_prompt_and_with_agent_notifications() {
    let env = Env::new();
    let dir = project(&env);
    ok_in(&env, &dir, "orch-hook", &["install", "--threshold", "1"]);
    // Task 1's agent queues three more tasks after the delay, when the
    // session's turn has ended (its Stop hook found nothing ready): only the
    // agent's completion notification can hand them over.
    let follow = "run: orch-queue add general-purpose 'follow-up 2' && orch-queue add general-purpose 'follow-up 3' && orch-queue add general-purpose 'follow-up 4'";
    queue(&env, &dir, &[&format!("Queue the follow-ups\n{follow}")]);
    let model = Model::start(&env, "obedient", 2.0);
    claude_p(
        &env,
        &model,
        &dir,
        "Carry on with the project.",
        &["--allowedTools", "Bash(orch-queue add:*)"],
    );

    // The first batch came with the prompt (UserPromptSubmit's context), the
    // second with the notification; each launched from one assistant message.
    let launched = model.agent_messages();
    assert_eq!(launched.len(), 2, "{launched:?}");
    assert_eq!(launched[0].len(), 1, "{launched:?}");
    assert_eq!(launched[1].len(), 3, "{launched:?}");
    let first = &model.by_role("main")[0];
    assert!(
        request_text(first).contains("orch-task: 1"),
        "the first turn carried the batch"
    );
    let second = model
        .by_role("main")
        .into_iter()
        .find(|r| request_text(r).contains("orch-task: 2"))
        .expect("a turn carried the second batch");
    assert!(
        request_text(first).contains("UserPromptSubmit hook additional context"),
        "batch 1 came as the prompt's additional context"
    );
    // A finished background agent's notification is a prompt too: its
    // UserPromptSubmit hook handed over the tasks the agent queued.
    let text = request_text(&second);
    let handed = text.find("orch-task: 2").unwrap();
    let notified = text
        .find("<task-notification>")
        .expect("a notification came first");
    assert!(notified < handed, "the batch followed the notification");
    assert!(!text.contains("Stop hook"), "not a blocked stop");

    let all = statuses(&env);
    assert_eq!(all.len(), 4, "{all:?}");
    assert!(all.iter().all(|(_, s)| s == "done"), "{all:?}");
    let batches: i64 = env
        .sql()
        .query_row("SELECT COUNT(DISTINCT batch_id) FROM tasks", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(batches, 2);
}

#[test]
fn hook_auto_batching_hands_claude_the_batch_with_a_blocked_stop() {
    let env = Env::new();
    let dir = project(&env);
    ok_in(&env, &dir, "orch-hook", &["install", "--threshold", "3"]);
    // Nothing is ready when the prompt is submitted; the session's own turn
    // queues three tasks, so its Stop hook finds them.
    let model = Model::start(&env, "obedient", 1.0);
    let prompt = "Queue three tasks.\nrun: orch-queue add general-purpose 'task A' && orch-queue add general-purpose 'task B' && orch-queue add general-purpose 'task C'";
    claude_p(
        &env,
        &model,
        &dir,
        prompt,
        &["--allowedTools", "Bash(orch-queue add:*)"],
    );

    let main = model.by_role("main");
    let carried = main
        .iter()
        .find(|r| request_text(r).contains("orch-task: 1"))
        .expect("a turn carried the batch");
    let text = request_text(carried);
    assert!(
        text.contains("Stop hook"),
        "the batch came as a blocked stop"
    );
    assert!(!request_text(&main[0]).contains("orch-task:"));
    let launched = model.agent_messages();
    assert_eq!(launched.len(), 1, "{launched:?}");
    assert_eq!(launched[0].len(), 3);
    let all = statuses(&env);
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(all.iter().all(|(_, s)| s == "done"), "{all:?}");
}
