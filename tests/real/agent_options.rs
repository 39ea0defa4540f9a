//! The Agent options orch accepts, against the installed Claude Code's own
//! type declarations (`sdk-tools.d.ts`): the same enums, and no key orch can
//! emit that the tool does not declare.

use std::collections::BTreeMap;
use std::path::Path;

use orch_core::agent_options::{ISOLATIONS, MODELS, MODES};

/// `key -> type text` of `export interface AgentInput { … }`.
fn agent_input() -> BTreeMap<String, String> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/claude_code/node_modules/@anthropic-ai/claude-code/sdk-tools.d.ts");
    let text = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}: run scripts/test-deps.sh", p.display()));
    let start = text
        .find("export interface AgentInput {")
        .expect("AgentInput in sdk-tools.d.ts");
    let body = &text[start..];
    let body = &body[..body.find("\n}").expect("the end of AgentInput")];
    let mut keys = BTreeMap::new();
    for line in body.lines().skip(1) {
        let l = line.trim();
        if l.starts_with("/**") || l.starts_with('*') || l.is_empty() {
            continue;
        }
        if let Some((k, ty)) = l.split_once(':') {
            keys.insert(
                k.trim_end_matches('?').trim().to_string(),
                ty.trim().trim_end_matches(';').to_string(),
            );
        }
    }
    keys
}

fn literals(ty: &str) -> Vec<String> {
    ty.split('|')
        .map(|v| v.trim().trim_matches('"').to_string())
        .collect()
}

#[test]
fn agent_option_enums_match_the_installed_sdk_tools() {
    let keys = agent_input();
    assert_eq!(literals(&keys["model"]), MODELS, "model");
    assert_eq!(literals(&keys["mode"]), MODES, "mode");
    assert_eq!(literals(&keys["isolation"]), ISOLATIONS, "isolation");
    assert_eq!(keys["run_in_background"], "boolean");
    assert_eq!(keys["name"], "string");
    for k in [
        "description",
        "prompt",
        "subagent_type",
        "model",
        "isolation",
        "run_in_background",
        "name",
        "mode",
    ] {
        assert!(
            keys.contains_key(k),
            "orch emits {k}, which AgentInput lacks"
        );
    }
}
