//! orch-mcp driven by real third-party MCP clients: the official Python SDK
//! (`tests/mcp_clients/python_sdk.py` in the `.venv` of scripts/test-deps.sh)
//! and the MCP Inspector CLI (pinned in `tests/mcp_clients/package.json`).

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::*;

/// The repository root (where .venv and tests/mcp_clients live).
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const DEPS_HINT: &str = "run scripts/test-deps.sh to install the MCP test clients";

/// Runs a client program; panics with its output when it fails.
fn run_client(mut cmd: Command, what: &str) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn python_sdk(mode: &str) {
    let python = root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: {DEPS_HINT}",
        python.display()
    );
    let env = Env::new();
    let mut cmd = Command::new(python);
    cmd.arg(root().join("tests/mcp_clients/python_sdk.py"))
        .arg(bin("orch-mcp"))
        .arg(&env.db)
        .arg(mode)
        .current_dir(env.path());
    let out = run_client(cmd, "the Python SDK client");
    eprintln!("{out}");
    assert!(out.starts_with("mcp "), "{out}");
    assert!(out.trim_end().ends_with("checks passed"), "{out}");
    // What the client did is in the database the CLI reads.
    let list = json_lines(&env.ok("orch-queue", &["list", "--json"]));
    let roles: Vec<&str> = list.iter().map(|t| t["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["Explore", "Plan", "general-purpose"]);
    assert!(list.iter().all(|t| t["status"] == "batched"));
}

#[test]
fn python_sdk_client_legacy_mode() {
    python_sdk("legacy");
}

#[test]
fn python_sdk_client_auto_mode_falls_back_at_once() {
    python_sdk("auto");
}

/// `npx --prefix tests/mcp_clients mcp-inspector --cli ARGS…`, parsed as JSON.
fn inspector(env: &Env, args: &[&str]) -> Value {
    let prefix = root().join("tests/mcp_clients");
    let installed = prefix.join("node_modules/.bin/mcp-inspector");
    assert!(
        installed.exists(),
        "{} is missing: {DEPS_HINT}",
        installed.display()
    );
    let mut cmd = Command::new("npx");
    cmd.arg("--prefix")
        .arg(&prefix)
        .arg("mcp-inspector")
        .arg("--cli")
        .args(args)
        .current_dir(env.path());
    let out = run_client(cmd, "the MCP Inspector CLI");
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("inspector output is not JSON ({e}): {out}"))
}

fn inspector_version() -> String {
    let p =
        root().join("tests/mcp_clients/node_modules/@modelcontextprotocol/inspector/package.json");
    let j: Value = serde_json::from_str(
        &std::fs::read_to_string(&p).unwrap_or_else(|_| panic!("{DEPS_HINT}")),
    )
    .unwrap();
    j["version"].as_str().unwrap().to_string()
}

#[test]
fn inspector_cli_lists_tools_and_queues_a_task() {
    let env = Env::new();
    eprintln!("MCP Inspector {}", inspector_version());
    let exe = bin("orch-mcp");
    let (exe, db) = (exe.to_str().unwrap(), env.db.to_str().unwrap());
    let list = inspector(&env, &[exe, "--db", db, "--method", "tools/list"]);
    let names: Vec<&str> = list["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "queue_parallel_task",
            "execute_parallel_batch",
            "queue_status",
            "batch_status"
        ]
    );

    let r = inspector(
        &env,
        &[
            exe,
            "--db",
            db,
            "--method",
            "tools/call",
            "--tool-name",
            "queue_parallel_task",
            "--tool-arg",
            "agent=code-reviewer",
            "--tool-arg",
            "task=Review src/db.rs for locking bugs; quote \"each\" one",
            "--tool-arg",
            "description=Review the locking",
            "--tool-arg",
            "priority=4",
        ],
    );
    assert_eq!(r["isError"], false, "{r}");
    let id = r["structuredContent"]["task"].as_i64().unwrap();
    let shown: Value =
        serde_json::from_str(&env.ok("orch-queue", &["show", &id.to_string(), "--json"])).unwrap();
    assert_eq!(shown["role"], "code-reviewer");
    assert_eq!(
        shown["prompt"],
        "Review src/db.rs for locking bugs; quote \"each\" one"
    );
    assert_eq!(shown["description"], "Review the locking");
    assert_eq!(shown["priority"], 4);
    assert_eq!(shown["status"], "queued");
}

#[test]
fn inspector_cli_reads_the_config_that_orch_mcp_prints() {
    let env = Env::new();
    let out = env.ok("orch-mcp", &["--config"]);
    let json = &out[out.find("\n{").unwrap()..out.find("\n}\n").unwrap() + 2];
    let file = env.path().join("mcp.json");
    std::fs::write(&file, json).unwrap();
    let r = inspector(
        &env,
        &[
            "--config",
            file.to_str().unwrap(),
            "--server",
            "orch",
            "--method",
            "tools/call",
            "--tool-name",
            "queue_parallel_task",
            "--tool-arg",
            "agent=Plan",
            "--tool-arg",
            "task=Plan the release",
        ],
    );
    assert_eq!(r["structuredContent"]["task"], 1, "{r}");
    // The server found the database through the env block of the config.
    let list = json_lines(&env.ok("orch-queue", &["list", "--json"]));
    assert_eq!(
        (list.len(), list[0]["prompt"].as_str()),
        (1, Some("Plan the release"))
    );
}
