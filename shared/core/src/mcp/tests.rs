//! The protocol and the tools through [`handle`], on an in-memory database.

use super::*;
use crate::{emit, task};
use serde_json::{json, Value};

fn state() -> State {
    let mut s = State::new(DbSource::Memory, std::env::temp_dir());
    s.log = Box::new(|_| {});
    s
}

/// Sends one line and returns the reply as JSON, if any.
fn raw(s: &mut State, line: &[u8]) -> Option<Value> {
    handle(s, line).map(|r| serde_json::from_str(&r.to_line()).unwrap())
}

fn send(s: &mut State, msg: Value) -> Option<Value> {
    raw(s, msg.to_string().as_bytes())
}

fn rpc(s: &mut State, id: i64, method: &str, params: Value) -> Value {
    let r = send(
        s,
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
    )
    .unwrap();
    assert_eq!(r["id"], json!(id), "{r}");
    assert_eq!(r["jsonrpc"], "2.0");
    r
}

fn error_code(r: &Value) -> i64 {
    r["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("not an error: {r}"))
}

fn call(s: &mut State, name: &str, args: Value) -> Value {
    let r = rpc(s, 9, "tools/call", json!({"name": name, "arguments": args}));
    assert!(r.get("error").is_none(), "{r}");
    r["result"].clone()
}

fn ok_call(s: &mut State, name: &str, args: Value) -> Value {
    let r = call(s, name, args);
    assert_eq!(r["isError"], false, "{r}");
    r
}

fn err_text(s: &mut State, name: &str, args: Value) -> String {
    let r = call(s, name, args);
    assert_eq!(r["isError"], true, "{r}");
    assert!(r.get("structuredContent").is_none(), "{r}");
    r["content"][0]["text"].as_str().unwrap().to_string()
}

fn init(s: &mut State, version: &str) -> Value {
    rpc(
        s,
        1,
        "initialize",
        json!({"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
    )
}

#[test]
fn ids_are_echoed_exactly_as_written() {
    let mut s = state();
    for id in [
        "99999999999999999999999",
        "-99999999999999999999999",
        "18446744073709551616",
        "1.5",
        "1e2",
        "-0",
        "0.10000000000000000000001",
        "7",
        "\"a\\u00e9 \\\"b\\\"\"",
    ] {
        let line = format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"ping\"}}");
        let reply = handle(&mut s, line.as_bytes()).unwrap().to_line();
        let want = format!("\"id\":{id},");
        assert!(reply.contains(&want), "{id}: {reply}");
        let r: Value = serde_json::from_str(&reply).unwrap();
        assert!(r.get("result").is_some(), "{id}: {reply}");
    }
    // An error reply echoes the id too.
    let reply = handle(
        &mut s,
        br#"{"jsonrpc":"2.0","id":99999999999999999999999,"method":"no/such"}"#,
    )
    .unwrap()
    .to_line();
    assert!(reply.contains("\"id\":99999999999999999999999,"), "{reply}");
    // An id given twice cannot be echoed with confidence: Invalid Request.
    let r = raw(
        &mut s,
        br#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#,
    )
    .unwrap();
    assert_eq!(error_code(&r), INVALID_REQUEST, "{r}");
    assert_eq!(r["id"], Value::Null);
}

#[test]
fn initialize_echoes_supported_versions_else_the_newest() {
    for v in PROTOCOL_VERSIONS {
        let mut s = state();
        let r = init(&mut s, v);
        assert_eq!(r["result"]["protocolVersion"], v);
        assert_eq!(s.protocol.as_deref(), Some(v));
    }
    for v in ["2026-07-28", "1999-01-01", ""] {
        let r = init(&mut state(), v);
        assert_eq!(r["result"]["protocolVersion"], PROTOCOL_VERSIONS[0], "{v}");
    }
    let r = init(&mut state(), "2025-06-18");
    let res = &r["result"];
    assert_eq!(res["capabilities"], json!({"tools": {}}));
    assert_eq!(res["serverInfo"]["name"], SERVER_NAME);
    assert_eq!(res["serverInfo"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(res["instructions"]
        .as_str()
        .unwrap()
        .contains("ONE assistant message"));
}

#[test]
fn initialize_without_a_version_is_invalid_params() {
    let mut s = state();
    assert_eq!(
        error_code(&rpc(&mut s, 1, "initialize", json!({}))),
        INVALID_PARAMS
    );
    assert_eq!(
        error_code(&rpc(&mut s, 2, "initialize", json!({"protocolVersion": 5}))),
        INVALID_PARAMS
    );
}

#[test]
fn handshake_and_listing_never_open_the_database() {
    let mut s = state();
    init(&mut s, "2025-11-25");
    send(
        &mut s,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    );
    rpc(&mut s, 2, "ping", json!({}));
    rpc(&mut s, 3, "tools/list", json!({}));
    rpc(&mut s, 4, "server/discover", json!({}));
    assert!(!s.db_open());
    ok_call(&mut s, QUEUE_STATUS_TOOL, json!({}));
    assert!(s.db_open());
}

#[test]
fn notifications_and_responses_get_no_reply() {
    let mut s = state();
    assert!(send(
        &mut s,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
    )
    .is_none());
    assert!(s.initialized);
    for m in [
        "notifications/cancelled",
        "notifications/roots/list_changed",
        "no/such/thing",
        "tools/call",
    ] {
        assert!(
            send(
                &mut s,
                json!({"jsonrpc": "2.0", "method": m, "params": {"requestId": 1}})
            )
            .is_none(),
            "{m}"
        );
    }
    assert!(send(&mut s, json!({"jsonrpc": "2.0", "id": 5, "result": {}})).is_none());
    assert!(send(
        &mut s,
        json!({"jsonrpc": "2.0", "id": 5, "error": {"code": 1, "message": "x"}})
    )
    .is_none());
    assert!(raw(&mut s, b"").is_none());
    assert!(raw(&mut s, b"  \r\n").is_none());
}

#[test]
fn ping_answers_an_empty_object_and_ids_are_echoed() {
    let mut s = state();
    assert_eq!(rpc(&mut s, 7, "ping", json!({}))["result"], json!({}));
    let r = send(
        &mut s,
        json!({"jsonrpc": "2.0", "id": "abc-1", "method": "ping"}),
    )
    .unwrap();
    assert_eq!(r["id"], "abc-1");
    assert_eq!(r["result"], json!({}));
    let r = raw(
        &mut s,
        b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\"}\r\n",
    )
    .unwrap();
    assert_eq!(r["id"], 3);
}

#[test]
fn tools_list_describes_four_tools() {
    let mut s = state();
    let r = rpc(&mut s, 1, "tools/list", json!({}));
    let tools = r["result"]["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            QUEUE_TOOL,
            EXECUTE_TOOL,
            QUEUE_STATUS_TOOL,
            BATCH_STATUS_TOOL
        ]
    );
    for t in tools {
        assert!(t["description"].as_str().unwrap().len() > 80, "{t}");
        assert_eq!(t["inputSchema"]["type"], "object");
        assert_eq!(t["inputSchema"]["additionalProperties"], false);
        assert_eq!(t["outputSchema"]["type"], "object");
        let read_only = t["annotations"]["readOnlyHint"].as_bool().unwrap();
        assert_eq!(
            read_only,
            [QUEUE_STATUS_TOOL, BATCH_STATUS_TOOL].contains(&t["name"].as_str().unwrap())
        );
    }
    assert_eq!(
        tools[0]["inputSchema"]["required"],
        json!(["agent", "task"])
    );
    assert_eq!(tools[3]["inputSchema"]["required"], json!(["batch"]));
    assert_eq!(
        tools[1]["outputSchema"]["required"],
        json!(["instruction", "batch", "tool", "tasks", "calls"])
    );
}

#[test]
fn unknown_methods_are_method_not_found() {
    let mut s = state();
    for m in [
        "server/discover",
        "resources/list",
        "prompts/list",
        "logging/setLevel",
        "tools/unknown",
        "",
    ] {
        let r = rpc(&mut s, 4, m, json!({}));
        assert_eq!(error_code(&r), METHOD_NOT_FOUND, "{m}");
    }
}

#[test]
fn unparseable_lines_are_parse_errors_with_a_null_id() {
    let mut s = state();
    for line in [
        &b"{not json"[..],
        b"{\"jsonrpc\":\"2.0\",\"id\":1,",
        b"\xff\xfe{}",
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"x\":\"\xc3\x28\"}",
    ] {
        let r = raw(&mut s, line).unwrap();
        assert_eq!(
            error_code(&r),
            PARSE_ERROR,
            "{}",
            String::from_utf8_lossy(line)
        );
        assert!(r["id"].is_null());
    }
    let r = raw(&mut s, b"\xff").unwrap();
    assert!(
        r["error"]["message"].as_str().unwrap().contains("UTF-8"),
        "{r}"
    );
    // The session goes on.
    assert_eq!(rpc(&mut s, 2, "ping", json!({}))["result"], json!({}));
}

#[test]
fn invalid_requests_are_refused() {
    let mut s = state();
    let batch = json!([{"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"jsonrpc": "2.0", "id": 2, "method": "ping"}]);
    for (msg, id) in [
        (batch, Value::Null),
        (json!([]), Value::Null),
        (json!(42), Value::Null),
        (json!("ping"), Value::Null),
        (json!(null), Value::Null),
        (json!({"jsonrpc": "2.0", "id": 1}), json!(1)),
        (
            json!({"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"}),
            Value::Null,
        ),
        (
            json!({"jsonrpc": "2.0", "id": null, "method": "ping"}),
            Value::Null,
        ),
        (json!({"jsonrpc": "2.0", "id": 3, "method": 7}), json!(3)),
        (
            json!({"jsonrpc": "1.0", "id": 4, "method": "ping"}),
            json!(4),
        ),
        (json!({"id": 5, "method": "ping"}), json!(5)),
    ] {
        let r = send(&mut s, msg.clone()).unwrap();
        assert_eq!(error_code(&r), INVALID_REQUEST, "{msg}");
        assert_eq!(r["id"], id, "{msg}");
    }
    let r = send(
        &mut s,
        json!({"jsonrpc": "2.0", "id": 6, "method": "ping", "params": [1]}),
    )
    .unwrap();
    assert_eq!(error_code(&r), INVALID_PARAMS);
    assert_eq!(
        error_code(&serde_json::from_str(&Response::too_long(10).to_line()).unwrap()),
        INVALID_REQUEST
    );
}

#[test]
fn bad_tool_calls_are_invalid_params() {
    let mut s = state();
    for params in [
        json!({"name": "no_such_tool", "arguments": {}}),
        json!({"name": QUEUE_TOOL, "arguments": [1, 2]}),
        json!({"name": QUEUE_TOOL, "arguments": "agent=x"}),
        json!({"arguments": {}}),
        json!({"name": 3}),
    ] {
        let r = rpc(&mut s, 1, "tools/call", params.clone());
        assert_eq!(error_code(&r), INVALID_PARAMS, "{params}");
    }
    let r = rpc(&mut s, 1, "tools/call", json!({"name": "no_such_tool"}));
    assert!(r["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Unknown tool: no_such_tool"));
}

#[test]
fn a_tools_own_failure_is_an_error_result() {
    let mut s = state();
    assert!(
        err_text(&mut s, QUEUE_TOOL, json!({"agent": "Explore"})).contains("missing field `task`")
    );
    assert!(err_text(&mut s, QUEUE_TOOL, json!({"task": "x"})).contains("missing field `agent`"));
    assert!(err_text(
        &mut s,
        QUEUE_TOOL,
        json!({"agent": "../x", "task": "do it"})
    )
    .contains("bad role"));
    assert!(
        err_text(&mut s, QUEUE_TOOL, json!({"agent": "dev", "task": "  "}))
            .contains("empty prompt")
    );
    assert!(
        err_text(&mut s, QUEUE_TOOL, json!({"agent": "dev", "prompt": "x"}))
            .contains("unknown field `prompt`")
    );
    assert!(err_text(
        &mut s,
        QUEUE_TOOL,
        json!({"agent": "dev", "task": "x", "priority": "high"})
    )
    .contains("invalid type"));
    assert!(err_text(
        &mut s,
        QUEUE_TOOL,
        json!({"agent": "dev", "task": "x", "after": [99]})
    )
    .contains("task 99, which does not exist"));
    assert!(err_text(
        &mut s,
        QUEUE_TOOL,
        json!({"agent": "dev", "task": "x", "description": "a\nb"})
    )
    .contains("bad description"));
    assert!(err_text(&mut s, EXECUTE_TOOL, json!({})).contains("no task is queued"));
    assert!(err_text(&mut s, EXECUTE_TOOL, json!({"max": 0})).contains("max must be at least 1"));
    assert!(
        err_text(&mut s, BATCH_STATUS_TOOL, json!({"batch": 42})).contains("batch 42 not found")
    );
    assert!(err_text(&mut s, BATCH_STATUS_TOOL, json!({})).contains("missing field `batch`"));
    assert!(err_text(&mut s, QUEUE_STATUS_TOOL, json!({"x": 1})).contains("unknown field `x`"));
    // Nothing was written by any of them.
    let st = ok_call(&mut s, QUEUE_STATUS_TOOL, json!({}));
    assert_eq!(st["structuredContent"]["total"], 0);
}

#[test]
fn queue_execute_and_status_work_together() {
    let mut s = state();
    let a = ok_call(
        &mut s,
        QUEUE_TOOL,
        json!({"agent": "Explore", "task": "Map \"it\"\n`all` of it", "description": "Map the layout"}),
    );
    assert_eq!(
        (
            a["structuredContent"]["task"].as_i64(),
            a["structuredContent"]["ready"].as_i64()
        ),
        (Some(1), Some(1))
    );
    assert!(a["content"][0]["text"]
        .as_str()
        .unwrap()
        .starts_with("Queued task 1 (agent Explore"));
    let b = ok_call(
        &mut s,
        QUEUE_TOOL,
        json!({"agent": "reviewer", "task": "Review it", "priority": 5}),
    );
    assert_eq!(
        (
            b["structuredContent"]["task"].as_i64(),
            b["structuredContent"]["ready"].as_i64()
        ),
        (Some(2), Some(2))
    );
    let c = ok_call(
        &mut s,
        QUEUE_TOOL,
        json!({"agent": "Plan", "task": "Plan after", "after": [1]}),
    );
    assert_eq!(
        (
            c["structuredContent"]["task"].as_i64(),
            c["structuredContent"]["ready"].as_i64()
        ),
        (Some(3), Some(2))
    );
    assert!(c["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("once task 1 is done"));

    let st = ok_call(&mut s, QUEUE_STATUS_TOOL, json!({}));
    let sc = &st["structuredContent"];
    assert_eq!(
        (
            sc["queued"].as_i64(),
            sc["ready"].as_i64(),
            sc["total"].as_i64()
        ),
        (Some(3), Some(2), Some(3))
    );
    let ready: Vec<i64> = sc["ready_tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ready, [1, 2]);

    let e = ok_call(&mut s, EXECUTE_TOOL, json!({}));
    let sc = &e["structuredContent"];
    assert!(sc["instruction"]
        .as_str()
        .unwrap()
        .starts_with("Launch 2 agents in parallel: send ONE message"));
    assert_eq!(sc["batch"], 1);
    assert_eq!(sc["tool"], "Agent");
    assert_eq!(sc["tasks"], json!([2, 1]), "priority first");
    let calls: Vec<emit::AgentCall> = serde_json::from_value(sc["calls"].clone()).unwrap();
    assert_eq!(calls[1].prompt, "Map \"it\"\n`all` of it\n\norch-task: 1");
    assert_eq!(calls[1].subagent_type.as_deref(), Some("Explore"));
    assert_eq!(calls[1].description, "Map the layout");
    assert!(
        calls[0].prompt.starts_with("Role: reviewer"),
        "{}",
        calls[0].prompt
    );
    assert_eq!(e["content"][0]["text"], emit::render_claude(&calls));

    let again = err_text(&mut s, EXECUTE_TOOL, json!({}));
    assert!(again.contains("1 queued task wait"), "{again}");

    let bs = ok_call(&mut s, BATCH_STATUS_TOOL, json!({"batch": 1}));
    let sc = &bs["structuredContent"];
    assert_eq!(sc["batch"], 1);
    assert!(sc["emitted_at"].is_string());
    let statuses: Vec<&str> = sc["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["batched", "batched"]);
    assert!(bs["content"][0]["text"]
        .as_str()
        .unwrap()
        .starts_with("Batch 1 (2 tasks"));

    // Results show up clipped once the tasks finish.
    let db = s.db().unwrap();
    let long = "r".repeat(MAX_RESULT_CHARS + 10);
    task::finish(
        db,
        1,
        task::Outcome {
            ok: true,
            result: Some(long),
            ..Default::default()
        },
    )
    .unwrap();
    task::finish(
        db,
        2,
        task::Outcome {
            ok: false,
            error: Some("boom".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let bs = ok_call(&mut s, BATCH_STATUS_TOOL, json!({"batch": 1}));
    let t = &bs["structuredContent"]["tasks"];
    assert_eq!(t[0]["status"], "failed");
    assert_eq!(t[0]["error"], "boom");
    assert!(t[1]["result"]
        .as_str()
        .unwrap()
        .ends_with("(10 more characters)"));
    assert!(t[1]["finished_at"].is_string());

    // Task 3 is ready now that task 1 is done.
    let e = ok_call(&mut s, EXECUTE_TOOL, json!({"max": 5}));
    assert_eq!(e["structuredContent"]["tasks"], json!([3]));
    assert!(e["content"][0]["text"]
        .as_str()
        .unwrap()
        .starts_with("Launch 1 agent: send ONE message"));
}

#[test]
fn execute_takes_at_most_max() {
    let mut s = state();
    for i in 0..4 {
        ok_call(
            &mut s,
            QUEUE_TOOL,
            json!({"agent": "dev", "task": format!("task {i}")}),
        );
    }
    let e = ok_call(&mut s, EXECUTE_TOOL, json!({"max": 3}));
    assert_eq!(e["structuredContent"]["tasks"], json!([1, 2, 3]));
    let e = ok_call(&mut s, EXECUTE_TOOL, json!({"max": 3}));
    assert_eq!(e["structuredContent"]["tasks"], json!([4]));
}

#[test]
fn a_one_mebibyte_prompt_fits_in_one_line() {
    let mut s = state();
    // Every character escaped: the line is far longer than the prompt.
    let prompt: String = "\"\n\\é"
        .chars()
        .cycle()
        .take(task::MAX_PROMPT / 2)
        .collect();
    let prompt = format!("{prompt}{}", "x".repeat(task::MAX_PROMPT - prompt.len()));
    assert_eq!(prompt.len(), task::MAX_PROMPT);
    let line = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": QUEUE_TOOL, "arguments": {"agent": "dev", "task": prompt}}}).to_string();
    assert!(line.len() > task::MAX_PROMPT && line.len() < MAX_LINE);
    let r = raw(&mut s, line.as_bytes()).unwrap();
    assert_eq!(r["result"]["isError"], false, "{}", r["result"]["content"]);
    assert_eq!(task::get(s.db().unwrap(), 1).unwrap().prompt, prompt);
    let too_big = "y".repeat(task::MAX_PROMPT + 1);
    assert!(
        err_text(&mut s, QUEUE_TOOL, json!({"agent": "dev", "task": too_big})).contains("1 MiB")
    );
}

#[test]
fn a_broken_database_is_an_error_result_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-db");
    std::fs::write(&path, b"this is not SQLite, not at all, no").unwrap();
    let mut s = State::new(
        DbSource::Resolve(Some(path.clone())),
        dir.path().to_path_buf(),
    );
    s.log = Box::new(|_| {});
    let text = err_text(&mut s, QUEUE_STATUS_TOOL, json!({}));
    assert!(
        text.contains("cannot open the orch database") && text.contains("not an orch database"),
        "{text}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"this is not SQLite, not at all, no"
    );
    std::fs::remove_file(&path).unwrap();
    // A read tool makes no database; a write tool does, and then reads work.
    let text = err_text(&mut s, QUEUE_STATUS_TOOL, json!({}));
    assert!(text.contains("no database at"), "{text}");
    assert!(!path.exists());
    ok_call(
        &mut s,
        QUEUE_TOOL,
        json!({"agent": "dev", "task": "Fix it"}),
    );
    ok_call(&mut s, QUEUE_STATUS_TOOL, json!({}));
}

#[test]
fn long_lines_are_consumed_whole() {
    let data = format!("{}\nshort\nlast", "x".repeat(100));
    let mut r = std::io::BufReader::with_capacity(7, data.as_bytes());
    let mut buf = Vec::new();
    assert_eq!(read_line(&mut r, &mut buf, 50).unwrap(), Line::TooLong);
    assert_eq!(read_line(&mut r, &mut buf, 50).unwrap(), Line::Read);
    assert_eq!(buf, b"short\n");
    assert_eq!(read_line(&mut r, &mut buf, 50).unwrap(), Line::Read);
    assert_eq!(buf, b"last");
    assert_eq!(read_line(&mut r, &mut buf, 50).unwrap(), Line::Eof);
}
