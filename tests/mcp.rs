//! orch-mcp through the real binary: raw JSON-RPC lines over its pipes, many
//! servers on one database. Real third-party clients (the Python SDK, the MCP
//! Inspector) drive it in the real tier (tests/real/mcp_clients.rs).

use std::io::Write;

use orch_core::mcp::client::Client;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

/// A running orch-mcp with its pipes, driven by orch's own client; every
/// reply is checked to be one JSON-RPC response.
struct Server(Client);

impl Server {
    fn start(mut cmd: Command) -> Server {
        Server(Client::start(cmd.stderr(Stdio::null()), Duration::from_secs(30)).unwrap())
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes).unwrap();
    }

    fn send(&mut self, msg: &Value) {
        self.0.send(msg).unwrap();
    }

    /// The next line of stdout, which must be one JSON-RPC response.
    fn recv(&mut self) -> Value {
        let v = self.0.recv().expect("a reply within 30 s");
        assert_eq!(v["jsonrpc"], "2.0", "{v}");
        assert!(v.get("result").is_some() != v.get("error").is_some(), "{v}");
        v
    }

    fn rpc(&mut self, id: i64, method: &str, params: Value) -> Value {
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let r = self.recv();
        assert_eq!(r["id"], id, "{r}");
        r
    }

    fn tool(&mut self, id: i64, name: &str, args: Value) -> Value {
        let r = self.rpc(id, "tools/call", json!({"name": name, "arguments": args}));
        r["result"].clone()
    }

    /// Closes stdin; the server must exit 0 and write nothing more.
    fn finish(mut self) {
        let status = self.0.wait().unwrap();
        assert!(status.success(), "{status}");
        assert!(
            self.0.next_line(Duration::from_secs(5)).is_none(),
            "a line after the last reply"
        );
    }
}

fn initialize(s: &mut Server, version: &str) -> Value {
    let r = s.rpc(
        1,
        "initialize",
        json!({"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "orch-tests", "version": "1"}}),
    );
    r["result"].clone()
}

#[test]
fn handshake_is_instant_and_creates_no_file() {
    let env = Env::new();
    let db = env.path().join("not-yet").join("orch.db");
    let mut cmd = env.cmd("orch-mcp");
    cmd.env("ORCH_DB", &db);
    let started = Instant::now();
    let mut s = Server::start(cmd);
    // What `claude mcp list` does: initialize at 2025-11-25, tools/list, then kill.
    let init = initialize(&mut s, "2025-11-25");
    assert_eq!(init["protocolVersion"], "2025-11-25");
    assert_eq!(init["serverInfo"]["name"], "orch-mcp");
    s.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    let tools = s.rpc(2, "tools/list", json!({}));
    assert_eq!(tools["result"]["tools"].as_array().unwrap().len(), 4);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");
    s.finish();
    assert!(
        !db.parent().unwrap().exists(),
        "the handshake created {}",
        db.display()
    );
    assert!(
        !env.home().join(".local").exists(),
        "the handshake created files under HOME"
    );
}

#[test]
fn every_request_gets_its_reply_in_order() {
    let env = Env::new();
    let mut s = Server::start(env.cmd("orch-mcp"));
    // All written at once, as a pipelining client would.
    let mut input = Vec::new();
    input.extend_from_slice(
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"server/discover\",\"params\":{}}\n",
    );
    input.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n");
    input.extend_from_slice(b"[{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}]\n");
    input.extend_from_slice(
        b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\",\"params\":{\"x\":\"\xff\xfe\"}}\n",
    );
    input.extend_from_slice(b"\n");
    input.extend_from_slice(b"{this is not json\n");
    input.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":\"four\",\"method\":\"tools/call\",\"params\":{\"name\":\"nope\"}}\r\n");
    input.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"ping\"}");
    s.write(&input);
    s.0.close();
    let expect: [(Value, Option<i64>); 6] = [
        (json!(1), Some(-32601)),
        (Value::Null, Some(-32600)),
        (Value::Null, Some(-32700)),
        (Value::Null, Some(-32700)),
        (json!("four"), Some(-32602)),
        (json!(5), None),
    ];
    for (id, code) in expect {
        let r = s.recv();
        assert_eq!(r["id"], id, "{r}");
        assert_eq!(r["error"]["code"].as_i64(), code, "{r}");
    }
    s.finish();
}

#[test]
fn a_session_queues_batches_and_reports_into_the_clis_database() {
    let env = Env::new();
    let mut s = Server::start(env.cmd("orch-mcp"));
    initialize(&mut s, "2025-06-18");
    // A prompt of 1 MiB with quotes, newlines and non-ASCII survives one line.
    let big: String = "line \"one\"\n\tétoile `x`\n"
        .chars()
        .cycle()
        .take(200_000)
        .collect();
    let big = format!(
        "{big}{}",
        "z".repeat(orch_core::task::MAX_PROMPT - big.len())
    );
    let a = s.tool(
        2,
        "queue_parallel_task",
        json!({"agent": "Explore", "task": big, "description": "Read a big prompt"}),
    );
    assert_eq!(a["isError"], false, "{a}");
    let b = s.tool(
        3,
        "queue_parallel_task",
        json!({"agent": "reviewer", "task": "Review it", "priority": 2}),
    );
    assert_eq!(b["structuredContent"]["ready"], 2);
    // Invalid UTF-8 in the middle of the session: an error, and the session goes on.
    s.write(b"{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"ping\",\"p\":\"\xc0\"}\n");
    assert_eq!(s.recv()["error"]["code"], -32700);
    let e = s.tool(5, "execute_parallel_batch", json!({}));
    assert_eq!(e["isError"], false, "{e}");
    let batch = e["structuredContent"]["batch"].as_i64().unwrap();
    assert_eq!(e["structuredContent"]["tasks"], json!([2, 1]));
    let calls = e["structuredContent"]["calls"].as_array().unwrap();
    assert_eq!(
        calls[1]["prompt"].as_str().unwrap(),
        format!("{big}\n\norch-task: 1")
    );

    // The CLI sees the same tasks, batched, and renders the same calls.
    let list = json_lines(&env.ok("orch-queue", &["list", "--json"]));
    assert_eq!(list.len(), 2);
    assert!(list
        .iter()
        .all(|t| t["status"] == "batched" && t["batch"] == batch));
    assert_eq!(list[0]["prompt"].as_str().unwrap(), big);
    let emitted: Value =
        serde_json::from_str(&env.ok("orch-emit", &[&batch.to_string(), "--format", "json"]))
            .unwrap();
    assert_eq!(&emitted["calls"], &e["structuredContent"]["calls"]);

    // A result recorded by the CLI shows in batch_status.
    env.ok("orch-queue", &["done", "2", "--result", "looks good"]);
    let st = s.tool(6, "batch_status", json!({"batch": batch}));
    let tasks = st["structuredContent"]["tasks"].as_array().unwrap();
    assert_eq!(
        (tasks[0]["status"].as_str(), tasks[0]["result"].as_str()),
        (Some("done"), Some("looks good"))
    );
    let q = s.tool(7, "queue_status", json!({}));
    assert_eq!(q["structuredContent"]["done"], 1);
    assert_eq!(q["structuredContent"]["batched"], 1);
    s.finish();
}

#[test]
fn a_line_longer_than_the_limit_is_refused_and_skipped() {
    let env = Env::new();
    let mut s = Server::start(env.cmd("orch-mcp"));
    let huge = "x".repeat(orch_core::mcp::MAX_LINE + 10);
    let writer = {
        let mut stdin = s.0.take_stdin().unwrap();
        std::thread::spawn(move || {
            stdin.write_all(huge.as_bytes()).unwrap();
            stdin
                .write_all(b"\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n")
                .unwrap();
        })
    };
    let r = s.recv();
    assert_eq!(
        (r["id"].clone(), r["error"]["code"].as_i64()),
        (Value::Null, Some(-32600)),
        "{r}"
    );
    assert_eq!(s.recv()["id"], 2);
    writer.join().unwrap();
    s.finish();
}

fn config(env: &Env, args: &[&str], orch_db: Option<&Path>) -> (String, Value) {
    let mut cmd = env.cmd("orch-mcp");
    cmd.env_remove("ORCH_DB").arg("--config").args(args);
    if let Some(p) = orch_db {
        cmd.env("ORCH_DB", p);
    }
    let out = cmd.output().unwrap();
    assert_code(&out, 0);
    let text = String::from_utf8(out.stdout).unwrap();
    let add = text
        .lines()
        .find(|l| l.starts_with("claude mcp add "))
        .unwrap()
        .to_string();
    let start = text.find("\n{").unwrap();
    let end = text.find("\n}\n").unwrap();
    let json: Value = serde_json::from_str(&text[start..end + 2]).unwrap();
    (add, json)
}

#[test]
fn config_prints_the_claude_line_and_the_desktop_json() {
    let env = Env::new();
    let exe = bin("orch-mcp").canonicalize().unwrap();
    let exe = exe.to_str().unwrap();

    let (add, j) = config(&env, &[], None);
    assert_eq!(add, format!("claude mcp add orch -- {exe}"));
    let entry = &j["mcpServers"]["orch"];
    assert_eq!(
        entry,
        &json!({"type": "stdio", "command": exe, "args": [], "env": {}, "alwaysLoad": true})
    );

    // A chosen database goes in the environment, with `-e` after the name.
    let (add, j) = config(&env, &["--db", "sub/my.db"], None);
    let abs = env.path().join("sub/my.db");
    assert_eq!(
        add,
        format!("claude mcp add orch -e ORCH_DB={} -- {exe}", abs.display())
    );
    assert_eq!(
        j["mcpServers"]["orch"]["env"],
        json!({"ORCH_DB": abs.to_str().unwrap()})
    );
    let (add, j) = config(&env, &[], Some(&env.db));
    assert!(add.starts_with("claude mcp add orch -e ORCH_DB="), "{add}");
    assert_eq!(
        j["mcpServers"]["orch"]["env"]["ORCH_DB"],
        env.db.to_str().unwrap()
    );
    assert!(
        !abs.exists() && !env.db.exists(),
        "--config created a database"
    );
}

#[test]
fn selftest_passes_on_a_temporary_database() {
    let env = Env::new();
    let out = env.run("orch-mcp", &["--selftest"]);
    assert_code(&out, 0);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("ok    execute_parallel_batch: batch 1 with tasks [1, 2, 3]"),
        "{text}"
    );
    assert!(
        text.trim_end().ends_with("self-test passed: 11 checks"),
        "{text}"
    );
    assert!(!env.db.exists(), "the self-test touched ORCH_DB");
}

#[test]
fn selftest_on_a_real_database_leaves_the_users_tasks_alone() {
    let env = Env::new();
    let mine = env.add("dev", "A task of the user's");
    let db = env.db.to_str().unwrap();
    let out = env.run("orch-mcp", &["--selftest", "--db", db]);
    assert_code(&out, 0);
    let list = json_lines(&env.ok("orch-queue", &["list", "--json"]));
    assert_eq!(list.len(), 4);
    assert_eq!(
        (list[0]["id"].as_i64(), list[0]["status"].as_str()),
        (Some(mine), Some("queued"))
    );
    assert!(
        list[1..]
            .iter()
            .all(|t| t["status"] == "cancelled" && t["batch"].is_null()),
        "{list:?}"
    );
    let batches: i64 = env
        .sql()
        .query_row("SELECT count(*) FROM batches", [], |r| r.get(0))
        .unwrap();
    assert_eq!(batches, 0);
}

/// Runs `orch-mcp` with all of `input` on stdin and returns its replies.
fn run_lines(env: &Env, input: String) -> std::thread::JoinHandle<(Output, Vec<Value>)> {
    let cmd_env = env.cmd("orch-mcp");
    std::thread::spawn(move || {
        let mut cmd = cmd_env;
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let w = std::thread::spawn(move || stdin.write_all(input.as_bytes()).unwrap());
        let out = child.wait_with_output().unwrap();
        w.join().unwrap();
        let replies = String::from_utf8(out.stdout.clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (out, replies)
    })
}

#[test]
fn ten_servers_queue_500_tasks_into_one_database_and_batch_each_once() {
    let env = Env::new();
    env.db_ready();
    let mut handles = Vec::new();
    for p in 0..10 {
        let mut input = String::new();
        for i in 0..50 {
            let msg = json!({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {
                "name": "queue_parallel_task", "arguments": {"agent": "dev", "task": format!("client {p} task {i}")}}});
            input.push_str(&format!("{msg}\n"));
        }
        handles.push(run_lines(&env, input));
    }
    let mut ids = Vec::new();
    for h in handles {
        let (out, replies) = h.join().unwrap();
        assert_code(&out, 0);
        assert_eq!(replies.len(), 50);
        for (i, r) in replies.iter().enumerate() {
            assert_eq!(r["id"], i);
            assert_eq!(r["result"]["isError"], false, "{r}");
            ids.push(r["result"]["structuredContent"]["task"].as_i64().unwrap());
        }
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 500, "task ids handed out twice");
    let conn = env.sql();
    let (n, prompts): (i64, i64) = conn
        .query_row(
            "SELECT count(*), count(DISTINCT prompt) FROM tasks WHERE status = 'queued'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((n, prompts), (500, 500));

    // Ten servers batching at once: every task lands in exactly one batch.
    let line = format!(
        "{}\n",
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "execute_parallel_batch", "arguments": {"max": 60}}})
    );
    let handles: Vec<_> = (0..10).map(|_| run_lines(&env, line.clone())).collect();
    let mut batched = Vec::new();
    for h in handles {
        let (out, replies) = h.join().unwrap();
        assert_code(&out, 0);
        let r = &replies[0]["result"];
        if r["isError"] == false {
            batched.extend(
                r["structuredContent"]["tasks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_i64().unwrap()),
            );
        }
    }
    batched.sort();
    assert_eq!(batched, ids, "every task in exactly one batch");
    let left: i64 = conn
        .query_row(
            "SELECT count(*) FROM tasks WHERE status != 'batched'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);
}

/// Item 11: `queue_parallel_task` refuses `after` naming the task's own id.
#[test]
fn item11_queue_parallel_task_cannot_wait_for_itself() {
    let env = Env::new();
    let mut s = Server::start(env.cmd("orch-mcp"));
    initialize(&mut s, "2025-06-18");
    let a = s.tool(
        2,
        "queue_parallel_task",
        json!({"agent": "dev", "task": "one"}),
    );
    assert_eq!(a["structuredContent"]["task"], 1, "{a}");
    let b = s.tool(
        3,
        "queue_parallel_task",
        json!({"agent": "dev", "task": "two", "after": [2]}),
    );
    assert_eq!(b["isError"], true, "{b}");
    assert!(
        b["content"][0]["text"].as_str().unwrap().contains("itself"),
        "{b}"
    );
    let n: i64 = env
        .sql()
        .query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
    // A dependency on a cancelled task is queued, with a note.
    env.ok("orch-queue", &["cancel", "1"]);
    let c = s.tool(
        4,
        "queue_parallel_task",
        json!({"agent": "dev", "task": "three", "after": [1]}),
    );
    assert_eq!(c["isError"], false, "{c}");
    let text = c["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("can never become ready: it waits for task 1, which is cancelled"),
        "{text}"
    );
    s.finish();
}

/// Claude Code shows the model only a result's structured content when it has
/// one (the text content is dropped), so what to do must be in it too.
#[test]
fn issue17_2_the_instruction_travels_in_the_structured_content() {
    let env = Env::new();
    let mut s = Server::start(env.cmd("orch-mcp"));
    initialize(&mut s, "2025-11-25");
    let tools = s.rpc(2, "tools/list", json!({}));
    let schema = |name: &str| {
        tools["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap()["outputSchema"]
            .clone()
    };
    let required = |name: &str| -> Vec<String> {
        serde_json::from_value(schema(name)["required"].clone()).unwrap()
    };
    let mut last = Value::Null;
    for (i, role) in ["Explore", "Plan", "reviewer"].iter().enumerate() {
        last = s.tool(
            3 + i as i64,
            "queue_parallel_task",
            json!({"agent": role, "task": format!("part {i}")}),
        );
        let sc = &last["structuredContent"];
        for k in required("queue_parallel_task") {
            assert!(sc.get(&k).is_some(), "{k} missing in {sc}");
        }
    }
    let next = last["structuredContent"]["next"].as_str().unwrap();
    assert!(
        next.contains("3 tasks ready") && next.contains("execute_parallel_batch"),
        "{next}"
    );
    assert!(schema("execute_parallel_batch")["properties"]["instruction"].is_object());
    let e = s.tool(9, "execute_parallel_batch", json!({}));
    let sc = &e["structuredContent"];
    for k in required("execute_parallel_batch") {
        assert!(sc.get(&k).is_some(), "{k} missing in {sc}");
    }
    let instruction = sc["instruction"].as_str().unwrap();
    assert!(
        instruction.starts_with(
            "Launch 3 agents in parallel: send ONE message that contains all 3 Agent tool calls"
        ),
        "{instruction}"
    );
    assert!(instruction.contains("\"calls\""), "{instruction}");
    assert_eq!(sc["calls"].as_array().unwrap().len(), 3);
    s.finish();
}

#[test]
fn issue17_8_a_named_task_keeps_its_name_and_a_bad_one_is_refused() {
    let env = Env::new();
    let mut s = Server::start(env.cmd("orch-mcp"));
    initialize(&mut s, "2025-11-25");
    let r = s.tool(
        2,
        "queue_parallel_task",
        json!({"agent": "Explore", "task": "map it", "name": "mapper", "model": "haiku",
               "isolation": "worktree", "background": true, "mode": "plan", "touches": ["src/*"]}),
    );
    assert_eq!(r["isError"], false, "{r}");
    let r = s.tool(
        3,
        "queue_parallel_task",
        json!({"agent": "Explore", "task": "map it", "name": "two words", "model": "gpt"}),
    );
    assert_eq!(r["isError"], true, "{r}");
    s.finish();
    let t = task(&env, 1);
    assert_eq!(
        (
            &t["name"],
            &t["model"],
            &t["isolation"],
            &t["background"],
            &t["mode"],
            &t["touches"]
        ),
        (
            &json!("mapper"),
            &json!("haiku"),
            &json!("worktree"),
            &json!(true),
            &json!("plan"),
            &json!(["src/*"])
        )
    );
    assert_eq!(count(&env, "tasks"), 1);
}
