//! Fuzzes the MCP server's message handler on an in-memory database: any
//! line must get a well-formed JSON-RPC reply (or none), never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orch_core::mcp::{handle, DbSource, State};

fuzz_target!(|data: &[u8]| {
    let mut state = State::new(DbSource::Memory, std::env::temp_dir());
    state.log = Box::new(|_| {});
    // A session: initialize first, then the input (one or more lines).
    let init = br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"fuzz","version":"0"}}}"#;
    let _ = handle(&mut state, init);
    for line in data.split(|&b| b == b'\n') {
        if let Some(reply) = handle(&mut state, line) {
            let text = reply.to_line();
            let v: serde_json::Value = serde_json::from_str(&text).expect("reply is JSON");
            assert_eq!(v["jsonrpc"], "2.0");
        }
    }
});
