//! The JSON-RPC client that drives a child `orch-mcp` over its stdin and
//! stdout, one message per line: what `orch-mcp --selftest` and the tests use.

use std::io::{self, BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

/// What went wrong talking to the server, as one line for people.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("no reply within {0} s")]
    NoReply(u64),
    #[error("the server wrote a line that is not JSON: {0:?}")]
    NotJson(String),
    #[error("{0}")]
    Protocol(String),
}

type Result<T> = std::result::Result<T, ClientError>;

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> ClientError {
    move |source| ClientError::Io { what, source }
}

/// A session with a child server.
pub struct Client {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<io::Result<String>>,
    next_id: i64,
    timeout: Duration,
}

impl Client {
    /// Starts `cmd` with its stdin and stdout piped to this client (its
    /// stderr is the caller's choice); a reply must come within `timeout`.
    pub fn start(cmd: &mut Command, timeout: Duration) -> io::Result<Client> {
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout pipe"))?;
        let stdin = child.stdin.take();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Client {
            child,
            stdin,
            lines: rx,
            next_id: 1,
            timeout,
        })
    }

    /// Writes `bytes` as they are (for malformed input) and flushes.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| ClientError::Protocol("stdin already closed".into()))?;
        stdin
            .write_all(bytes)
            .and_then(|_| stdin.flush())
            .map_err(io_err("writing to the server"))
    }

    /// Sends one message as one line.
    pub fn send(&mut self, msg: &Value) -> Result<()> {
        self.write(format!("{msg}\n").as_bytes())
    }

    /// The next line the server wrote, or `None` when none came within `limit`
    /// (or stdout closed).
    pub fn next_line(&mut self, limit: Duration) -> Option<io::Result<String>> {
        self.lines.recv_timeout(limit).ok()
    }

    /// The next line, which must be one JSON value.
    pub fn recv(&mut self) -> Result<Value> {
        let line = self
            .next_line(self.timeout)
            .ok_or(ClientError::NoReply(self.timeout.as_secs()))?
            .map_err(io_err("reading the server's stdout"))?;
        serde_json::from_str(&line).map_err(|_| ClientError::NotJson(line))
    }

    /// Sends request `method` with `id` and returns the whole response
    /// object, checked to carry that id and `"jsonrpc": "2.0"`.
    pub fn request_with_id(&mut self, id: Value, method: &str, params: Value) -> Result<Value> {
        self.send(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }))?;
        let reply = self.recv()?;
        if reply["id"] != id {
            return Err(ClientError::Protocol(format!(
                "reply to {method} carries id {} instead of {id}",
                reply["id"]
            )));
        }
        if reply["jsonrpc"] != "2.0" {
            return Err(ClientError::Protocol(format!(
                "reply to {method} lacks \"jsonrpc\": \"2.0\""
            )));
        }
        Ok(reply)
    }

    /// [`Client::request_with_id`] with the next id of this session (1, 2, …).
    pub fn request(&mut self, method: &str, params: Value) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        self.request_with_id(json!(id), method, params)
    }

    /// A request that must succeed; returns its result.
    pub fn result(&mut self, method: &str, params: Value) -> Result<Value> {
        let reply = self.request(method, params)?;
        if let Some(e) = reply.get("error") {
            return Err(ClientError::Protocol(format!("{method} failed: {e}")));
        }
        Ok(reply["result"].clone())
    }

    /// A tool call that must succeed (`isError` false); returns its result.
    pub fn tool(&mut self, name: &str, args: Value) -> Result<Value> {
        let r = self.result("tools/call", json!({ "name": name, "arguments": args }))?;
        if r["isError"] != false {
            return Err(ClientError::Protocol(format!(
                "{name} returned an error: {}",
                r["content"][0]["text"]
            )));
        }
        Ok(r)
    }

    /// The server's stdin, for a caller that writes on another thread.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take()
    }

    /// Closes the server's stdin (it should then exit).
    pub fn close(&mut self) {
        drop(self.stdin.take());
    }

    /// Closes stdin and waits for the server to exit, however long it takes.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        self.close();
        self.child.wait()
    }

    /// Closes stdin and waits up to `limit` for the server to exit; kills it after.
    pub fn finish(&mut self, limit: Duration) -> Result<ExitStatus> {
        self.close();
        let step = Duration::from_millis(50);
        for _ in 0..=limit.as_millis() / step.as_millis() {
            if let Some(status) = self.child.try_wait().map_err(io_err("waiting"))? {
                return Ok(status);
            }
            std::thread::sleep(step);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Err(ClientError::Protocol(format!(
            "the server did not exit within {} s of its stdin closing",
            limit.as_secs()
        )))
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
