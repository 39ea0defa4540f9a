//! Error classes from the real CLI's own error results: the scripted model
//! answers 429, 529 and 401, `claude -p --output-format json` reports them as
//! it does for the real API, and orch-run classifies each attempt.

use std::process::Command;

use serde_json::Value;

use crate::common::{assert_code, bin, Env};
use crate::harness::*;

#[test]
fn issue14_real_cli_error_results_are_classified() {
    let env = Env::new();
    let dir = project(&env);
    let ids = queue(
        &env,
        &dir,
        &[
            "Say hi\nmodel-error: 429",
            "Say hi\nmodel-error: 529",
            "Say hi\nmodel-error: 401",
        ],
    );
    let batch = ok_in(&env, &dir, "orch-batch", &["create"]);
    let model = Model::start(&env, "obedient", 0.0);
    let mut c = Command::new(bin("orch-run"));
    claude_env(&mut c, &env, &model);
    // The CLI's own retries off: each error is one attempt's answer.
    c.env("CLAUDE_CODE_MAX_RETRIES", "0")
        .args([batch.trim(), "--agent", "claude", "--retries", "0"])
        .current_dir(&dir);
    let out = run_bounded(c, CLAUDE_LIMIT);
    assert_code(&out, 1);
    for (id, want) in ids.iter().zip(["rate_limited", "overloaded", "auth"]) {
        let a = ok_in(
            &env,
            &dir,
            "orch-queue",
            &["attempts", &id.to_string(), "--json"],
        );
        let a: Value = serde_json::from_str(a.lines().next().unwrap()).unwrap();
        assert_eq!(a["error_class"], want, "task {id}: {a}");
        assert_eq!(a["outcome"], "failed");
    }
}
