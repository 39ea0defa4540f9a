//! Batches and runs that tests of both tiers set up the same way.

use super::{assert_code, Env};

/// The fake agent (`tests/fake-agent`), for `orch-run -- PROGRAM`.
pub fn fake_agent() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fake-agent").to_string()
}

/// Adds one task per prompt and puts them all in one batch; returns the batch and task ids.
pub fn batch_of(env: &Env, prompts: &[&str]) -> (String, Vec<i64>) {
    let ids: Vec<i64> = prompts.iter().map(|p| env.add("dev", p)).collect();
    let max = prompts.len().to_string();
    let b = env
        .ok("orch-batch", &["create", "--max", &max])
        .trim()
        .to_string();
    (b, ids)
}

/// A batch of `prompts` exported to `bundle.jsonl` in the env's directory; the batch id.
pub fn exported(env: &Env, prompts: &[String]) -> String {
    for p in prompts {
        env.add("dev", p);
    }
    let b = env
        .ok(
            "orch-batch",
            &["create", "--max", &prompts.len().to_string()],
        )
        .trim()
        .to_string();
    env.ok("orch-batch", &["export", &b, "--out", "bundle.jsonl"]);
    b
}

/// A finished 12-task batch: task 5 fails, task 1's description is hostile.
pub fn twelve_task_run(env: &Env) {
    env.ok(
        "orch-queue",
        &[
            "add",
            "dev",
            "--description",
            "<script>alert(1)</script> & \"quotes\"",
            "p1",
        ],
    );
    for i in 2..=12 {
        env.add("dev", &format!("p{i}"));
    }
    env.ok("orch-batch", &["create", "--max", "12"]);
    let script = "case \"$1\" in p5) echo broken >&2; exit 3;; esac; sleep 0.$(( ${1#p} % 4 + 1 )); echo done";
    let out = env.run(
        "orch-run",
        &[
            "1", "-j", "4", "--", "sh", "-c", script, "agent", "{prompt}",
        ],
    );
    assert_code(&out, 1);
}
