//! orch-queue through the real binary.

use crate::common::*;

#[test]
fn add_list_show_round_trip() {
    let env = Env::new();
    let id = env.add("dev", "Fix the flaky login test");
    let list = json_lines(&env.ok("orch-queue", &["list", "--json"]));
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], id);
    assert_eq!(list[0]["status"], "queued");
    assert_eq!(list[0]["description"], "Fix the flaky login test");
    let shown: serde_json::Value =
        serde_json::from_str(&env.ok("orch-queue", &["show", &id.to_string(), "--json"])).unwrap();
    assert_eq!(shown["prompt"], "Fix the flaky login test");
}

#[test]
fn empty_prompt_is_refused() {
    let env = Env::new();
    assert_error(&env.run("orch-queue", &["add", "dev", "  "]), "orch-queue");
}
