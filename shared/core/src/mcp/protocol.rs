//! JSON-RPC 2.0 framing: reading one line at most [`MAX_LINE`] long, parsing
//! it, answering requests (`initialize`, `ping`, `tools/*`) and writing the
//! reply as one line.

use std::io::{self, BufRead};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use super::tools::{call, tools};
use super::{State, INSTRUCTIONS, PROTOCOL_VERSIONS, SERVER_NAME};
use crate::task;

/// The longest line (one message) the server reads: a 1 MiB prompt whose
/// every byte needs a six-character JSON escape still fits.
pub const MAX_LINE: usize = 8 * task::MAX_PROMPT;

/// JSON-RPC error codes.
pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;

/// One JSON-RPC response.
#[derive(Debug, Clone, Serialize)]
pub struct Response {
    pub jsonrpc: &'static str,
    /// The request's id as it was written (a number such as
    /// 99999999999999999999999 is echoed digit for digit, not as 1e+23).
    pub id: Box<RawValue>,
    #[serde(flatten)]
    pub body: Body,
}

/// A response's result or error.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Body {
    Result(Value),
    Error(RpcError),
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, Serialize)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

impl Response {
    fn ok(id: Box<RawValue>, result: Value) -> Response {
        Response {
            jsonrpc: "2.0",
            id,
            body: Body::Result(result),
        }
    }

    fn err(id: Box<RawValue>, code: i64, message: impl Into<String>) -> Response {
        Response {
            jsonrpc: "2.0",
            id,
            body: Body::Error(RpcError {
                code,
                message: message.into(),
            }),
        }
    }

    /// The reply to a line longer than [`MAX_LINE`], which is not read at all.
    pub fn too_long(max: usize) -> Response {
        Response::err(
            null_id(),
            INVALID_REQUEST,
            format!("Invalid Request: the message is longer than {max} bytes"),
        )
    }

    /// The reply as one line of JSON (no newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            let fallback = Response::err(
                self.id.clone(),
                INTERNAL_ERROR,
                format!("cannot encode the reply: {e}"),
            );
            serde_json::to_string(&fallback).unwrap_or_default()
        })
    }
}

/// The id of a reply to a message whose id cannot be known.
fn null_id() -> Box<RawValue> {
    RawValue::NULL.to_owned()
}

/// The `"id"` member of a message, exactly as written; `None` when the
/// object holds it more than once.
fn raw_id(text: &str) -> Option<Box<RawValue>> {
    #[derive(Deserialize)]
    struct IdOnly<'a> {
        #[serde(borrow)]
        id: &'a RawValue,
    }
    serde_json::from_str::<IdOnly>(text)
        .ok()
        .map(|m| m.id.to_owned())
}

/// Handles one line of input: returns the reply to send, or `None` for
/// notifications, responses and blank lines. Never fails: every problem with
/// a request becomes a JSON-RPC error, every problem inside a tool a result
/// with `isError: true`.
pub fn handle(state: &mut State, line: &[u8]) -> Option<Response> {
    let line = line.trim_ascii();
    if line.is_empty() {
        return None;
    }
    let text = match std::str::from_utf8(line) {
        Ok(t) => t,
        Err(e) => {
            return Some(Response::err(
                null_id(),
                PARSE_ERROR,
                format!(
                    "Parse error: the line is not valid UTF-8 (bad byte at offset {})",
                    e.valid_up_to()
                ),
            ))
        }
    };
    let msg: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return Some(Response::err(
                null_id(),
                PARSE_ERROR,
                format!("Parse error: {e}"),
            ))
        }
    };
    let obj = match msg {
        Value::Object(o) => o,
        Value::Array(_) => return Some(Response::err(
            null_id(),
            INVALID_REQUEST,
            "Invalid Request: JSON-RPC batch arrays are not supported; send one message per line",
        )),
        _ => {
            return Some(Response::err(
                null_id(),
                INVALID_REQUEST,
                "Invalid Request: a message must be a JSON object",
            ))
        }
    };
    let id = match obj.get("id") {
        None => None,
        // Parsed into a Value, a number may lose digits: echo the text instead.
        Some(Value::String(_) | Value::Number(_)) => match raw_id(text) {
            Some(id) => Some(id),
            None => {
                return Some(Response::err(
                    null_id(),
                    INVALID_REQUEST,
                    "Invalid Request: \"id\" is given more than once",
                ))
            }
        },
        Some(_) => {
            return Some(Response::err(
                null_id(),
                INVALID_REQUEST,
                "Invalid Request: \"id\" must be a string or a number",
            ))
        }
    };
    let method = match obj.get("method") {
        Some(Value::String(m)) => m.as_str(),
        Some(_) => {
            return Some(Response::err(
                id.unwrap_or_else(null_id),
                INVALID_REQUEST,
                "Invalid Request: \"method\" must be a string",
            ))
        }
        // A response to a request of ours (we send none): nothing to answer.
        None if obj.contains_key("result") || obj.contains_key("error") => return None,
        None => {
            return Some(Response::err(
                id.unwrap_or_else(null_id),
                INVALID_REQUEST,
                "Invalid Request: no \"method\"",
            ))
        }
    };
    let Some(id) = id else {
        notification(state, method);
        return None;
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Some(Response::err(
            id,
            INVALID_REQUEST,
            "Invalid Request: \"jsonrpc\" must be \"2.0\"",
        ));
    }
    let params = match obj.get("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p.clone(),
        Some(_) => {
            return Some(Response::err(
                id,
                INVALID_PARAMS,
                "Invalid params: \"params\" must be an object",
            ))
        }
    };
    Some(match request(state, method, &params) {
        Ok(result) => Response::ok(id, result),
        Err((code, message)) => Response::err(id, code, message),
    })
}

fn notification(state: &mut State, method: &str) {
    if method == "notifications/initialized" {
        state.initialized = true;
    }
    // notifications/cancelled and the rest: requests are answered one at a
    // time, so there is never one in flight to cancel; nothing else applies.
}

pub(super) type RpcResult = Result<Value, (i64, String)>;

fn request(state: &mut State, method: &str, params: &Map<String, Value>) -> RpcResult {
    match method {
        "initialize" => initialize(state, params),
        "ping" => Ok(json!({})),
        "tools/list" => Ok(json!({ "tools": tools() })),
        "tools/call" => call(state, params),
        _ => Err((METHOD_NOT_FOUND, format!("Method not found: {method}"))),
    }
}

/// The `initialize` result.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct InitializeResult {
    protocol_version: &'static str,
    capabilities: Value,
    server_info: ServerInfo,
    instructions: &'static str,
}

#[derive(Debug, Serialize)]
struct ServerInfo {
    name: &'static str,
    title: &'static str,
    version: &'static str,
}

/// The version to answer a client that asks for `requested`.
pub fn negotiate(requested: &str) -> &'static str {
    PROTOCOL_VERSIONS
        .iter()
        .find(|v| **v == requested)
        .copied()
        .unwrap_or(PROTOCOL_VERSIONS[0])
}

fn initialize(state: &mut State, params: &Map<String, Value>) -> RpcResult {
    let Some(requested) = params.get("protocolVersion").and_then(Value::as_str) else {
        return Err((
            INVALID_PARAMS,
            "Invalid params: initialize needs \"protocolVersion\" (a string)".into(),
        ));
    };
    let version = negotiate(requested);
    let client = params
        .get("clientInfo")
        .map(|c| {
            format!(
                "{} {}",
                c.get("name").and_then(Value::as_str).unwrap_or("?"),
                c.get("version").and_then(Value::as_str).unwrap_or("?")
            )
        })
        .unwrap_or_else(|| "an unnamed client".into());
    state.protocol = Some(version.to_string());
    state.note(&format!(
        "{client} connected (asked for protocol {requested}, speaking {version})"
    ));
    let result = InitializeResult {
        protocol_version: version,
        capabilities: json!({ "tools": {} }),
        server_info: ServerInfo {
            name: SERVER_NAME,
            title: "orch",
            version: env!("CARGO_PKG_VERSION"),
        },
        instructions: INSTRUCTIONS,
    };
    serde_json::to_value(result).map_err(|e| (INTERNAL_ERROR, e.to_string()))
}

/// How reading one line ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Eof,
    Read,
    TooLong,
}

/// Reads one line (with its newline) into `buf`, keeping at most `max`
/// bytes; a longer line is consumed whole and reported as `TooLong`.
pub fn read_line(r: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> io::Result<Line> {
    buf.clear();
    let mut too_long = false;
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(match (too_long, buf.is_empty()) {
                (true, _) => Line::TooLong,
                (false, true) => Line::Eof,
                (false, false) => Line::Read,
            });
        }
        let (n, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if !too_long {
            if buf.len() + n > max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&chunk[..n]);
            }
        }
        r.consume(n);
        if done {
            return Ok(if too_long { Line::TooLong } else { Line::Read });
        }
    }
}
