//! Per-task logs: what each agent of orch-run printed, line by line, stdout
//! and stderr in the order they arrived, with times. Bounded per task
//! ([`Writer`]'s cap, default [`DEFAULT_CAP`]): the oldest lines go first and
//! one marker line says how much was dropped. Lines are written by a thread of
//! their own in batches, so an agent's output is never held up by the store;
//! the lines waiting for it are bounded ([`Writer`]'s queue), and an agent that
//! prints faster than they are written loses lines (counted, and said so in
//! one line of its log) rather than slowing down or filling memory.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{params, OptionalExtension, Row, Transaction};
use serde::Serialize;

use crate::db::Db;
use crate::error::Result;
use crate::time::{now_ms, rfc3339};

/// The log of a task keeps at most this many bytes of lines (1 MiB).
pub const DEFAULT_CAP: u64 = 1024 * 1024;

/// A line longer than this is cut into pieces of this size.
pub const MAX_LINE: usize = 16 * 1024;

/// The lines waiting to be written hold at most this many bytes (each line
/// counting [`LINE_COST`] more for itself), or twice the cap when that is
/// more, up to [`MAX_QUEUE`].
pub const MIN_QUEUE: u64 = 4 * 1024 * 1024;

/// The most bytes of lines waiting to be written, whatever the cap.
pub const MAX_QUEUE: u64 = 16 * 1024 * 1024;

/// What a queued line costs beyond its text.
const LINE_COST: u64 = 64;

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Out,
    Err,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Out => "out",
            Stream::Err => "err",
        }
    }
}

/// One line sent to the writer.
struct Line {
    task: i64,
    at: i64,
    stream: Stream,
    text: String,
}

enum Msg {
    Line(Line),
    /// Commit what came before, then answer.
    Flush(Sender<()>),
    /// Commit what came before, then stop (readers of a process that left
    /// its group may still hold a sink: their lines are not waited for).
    Stop,
}

/// A handle that readers of agent output send lines through: one per reader
/// (a clone starts with nothing dropped).
pub struct Sink {
    tx: Sender<Msg>,
    /// Bytes of the lines sent and not yet written, shared with the writer.
    queued: Arc<AtomicU64>,
    /// The most `queued` may reach.
    room: u64,
    /// Lines this reader dropped since it last sent one: (task, stream, count).
    dropped: Cell<Option<(i64, Stream, u64)>>,
}

impl Clone for Sink {
    fn clone(&self) -> Sink {
        Sink {
            tx: self.tx.clone(),
            queued: self.queued.clone(),
            room: self.room,
            dropped: Cell::new(None),
        }
    }
}

impl Sink {
    /// Queues one line (without its newline); never blocks. When the queue
    /// is full the line is dropped and counted; the next line that fits is
    /// preceded by one saying how many were.
    pub fn line(&self, task: i64, stream: Stream, bytes: &[u8]) {
        let cost = bytes.len() as u64 + LINE_COST;
        if self.queued.load(Ordering::Relaxed) + cost + 2 * LINE_COST > self.room {
            let n = match self.dropped.get() {
                Some((t, s, n)) if t == task && s == stream => n,
                _ => {
                    self.settle();
                    0
                }
            };
            self.dropped.set(Some((task, stream, n + 1)));
            return;
        }
        self.settle();
        self.send(task, stream, bytes);
    }

    /// Sends the line saying how many lines were dropped, if any were; also
    /// when the queue is full (one short line), so it is never lost.
    pub fn settle(&self) {
        if let Some((task, stream, n)) = self.dropped.take() {
            let text = format!(
                "[orch: {n} line{} dropped: the agent printed faster than the log is written]",
                if n == 1 { "" } else { "s" }
            );
            self.send(task, stream, text.as_bytes());
        }
    }

    fn send(&self, task: i64, stream: Stream, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim_end_matches(['\n', '\r']);
        let at = now_ms();
        let mut rest = text;
        loop {
            let mut cut = rest.len().min(MAX_LINE);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            self.queued
                .fetch_add(cut as u64 + LINE_COST, Ordering::Relaxed);
            let _ = self.tx.send(Msg::Line(Line {
                task,
                at,
                stream,
                text: rest[..cut].to_string(),
            }));
            rest = &rest[cut..];
            if rest.is_empty() {
                break;
            }
        }
    }
}

/// How a stream's lines are logged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Render {
    /// As printed.
    #[default]
    Raw,
    /// `claude -p --output-format stream-json` lines, logged as the readable
    /// [`steps`] they hold.
    ClaudeSteps,
}

/// A stream-json line may be this long (a long tool result) and still be read
/// whole; past it, its text is logged as it is, in pieces.
pub const MAX_JSON_LINE: usize = 4 * 1024 * 1024;

/// Splits a stream into lines as chunks arrive.
#[derive(Default)]
pub struct Splitter {
    partial: Vec<u8>,
    render: Render,
}

impl Splitter {
    pub fn new(render: Render) -> Splitter {
        Splitter {
            partial: Vec::new(),
            render,
        }
    }

    /// Feeds a chunk; each complete line goes to `sink`.
    pub fn push(&mut self, sink: &Sink, task: i64, stream: Stream, chunk: &[u8]) {
        let mut rest = chunk;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&rest[..i]);
            self.emit(sink, task, stream);
            rest = &rest[i + 1..];
        }
        self.partial.extend_from_slice(rest);
        let max = match self.render {
            Render::Raw => MAX_LINE,
            Render::ClaudeSteps => MAX_JSON_LINE,
        };
        if self.partial.len() >= max {
            sink.line(task, stream, &self.partial);
            self.partial.clear();
        }
    }

    /// The last line, when the stream did not end with a newline, and the
    /// count of lines dropped, if any were.
    pub fn finish(&mut self, sink: &Sink, task: i64, stream: Stream) {
        if !self.partial.is_empty() {
            self.emit(sink, task, stream);
        }
        sink.settle();
    }

    fn emit(&mut self, sink: &Sink, task: i64, stream: Stream) {
        match self.render {
            Render::Raw => sink.line(task, stream, &self.partial),
            Render::ClaudeSteps => match steps(&String::from_utf8_lossy(&self.partial)) {
                Some(steps) => steps
                    .iter()
                    .for_each(|s| sink.line(task, stream, s.as_bytes())),
                None => sink.line(task, stream, &self.partial),
            },
        }
        self.partial.clear();
    }
}

/// The readable steps of one `claude -p --output-format stream-json
/// --verbose` line, a log line each: how the session started, what the agent
/// said, each tool it called with the gist of its input, each tool's result,
/// and how the run ended (its result or errors, turns, time, cost). A step of
/// a sub-agent says so. `None` when the line is not one of claude's JSON
/// objects: it is then logged as it is.
pub fn steps(line: &str) -> Option<Vec<String>> {
    use serde_json::Value;
    let v: Value = serde_json::from_str(line.trim()).ok()?;
    let o = v.as_object()?;
    let kind = o.get("type")?.as_str()?;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
    let who = match o.get("parent_tool_use_id") {
        Some(Value::String(_)) => "(sub-agent) ",
        _ => "",
    };
    let mut out = Vec::new();
    let mut lines = |head: &str, body: &str| {
        let mut it = body.lines().filter(|l| !l.trim().is_empty());
        out.push(format!("{who}{head}{}", it.next().unwrap_or("").trim_end()));
        out.extend(it.map(|l| format!("{who}  {}", l.trim_end())));
    };
    match kind {
        "system" if text(o.get("subtype")) == "init" => lines(
            "start: ",
            &format!(
                "session {}, model {}, {} tools",
                text(o.get("session_id")),
                text(o.get("model")),
                o.get("tools").and_then(Value::as_array).map_or(0, Vec::len)
            ),
        ),
        "system" => lines("system: ", &text(o.get("subtype"))),
        "assistant" | "user" => {
            let content = &o.get("message")?["content"];
            if let Some(s) = content.as_str() {
                lines(&format!("{kind}: "), s);
            }
            for b in content.as_array().into_iter().flatten() {
                match b["type"].as_str().unwrap_or("") {
                    "text" => lines("says: ", &text(b.get("text"))),
                    "thinking" => lines(
                        "thinks: ",
                        &crate::text::clip(text(b.get("thinking")).trim(), 300),
                    ),
                    "tool_use" => lines(
                        &format!("tool {}: ", text(b.get("name"))),
                        &tool_input(&b["input"]),
                    ),
                    "tool_result" => {
                        let body = match &b["content"] {
                            Value::String(s) => s.clone(),
                            Value::Array(a) => a
                                .iter()
                                .filter_map(|c| c["text"].as_str())
                                .collect::<Vec<_>>()
                                .join("\n"),
                            _ => String::new(),
                        };
                        let head = match b["is_error"].as_bool() {
                            Some(true) => "tool error: ",
                            _ => "tool result: ",
                        };
                        lines(head, &gist(&body));
                    }
                    other => lines("", other),
                }
            }
        }
        "result" => {
            let failed = o.get("is_error").and_then(Value::as_bool) == Some(true);
            let mut head = format!(
                "{} ({})",
                if failed { "failed" } else { "done" },
                text(o.get("subtype"))
            );
            if let Some(n) = o.get("num_turns").and_then(Value::as_i64) {
                let _ = write!(head, ", {n} turn{}", if n == 1 { "" } else { "s" });
            }
            if let Some(ms) = o.get("duration_ms").and_then(Value::as_i64) {
                let _ = write!(head, ", {}", crate::time::secs1(ms));
            }
            if let Some(c) = o.get("total_cost_usd").and_then(Value::as_f64) {
                let _ = write!(head, ", ${c:.4}");
            }
            let errors: Vec<String> = o
                .get("errors")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string))
                .collect();
            let body = match (errors.is_empty(), o.get("result").and_then(Value::as_str)) {
                (false, _) => errors.join("\n"),
                (true, Some(r)) => r.to_string(),
                (true, None) => String::new(),
            };
            lines(&format!("{head}: "), &body);
        }
        // Partial-message deltas (--include-partial-messages): the whole
        // message follows as its own line.
        "stream_event" => {}
        other => lines("", other),
    }
    Some(out)
}

/// The gist of a tool call's input: the one field that says what it does
/// (the command, the file, the pattern, …), else the input as compact JSON.
fn tool_input(input: &serde_json::Value) -> String {
    const SAYS: [&str; 9] = [
        "command",
        "file_path",
        "notebook_path",
        "pattern",
        "path",
        "url",
        "query",
        "description",
        "prompt",
    ];
    let what = SAYS
        .iter()
        .find_map(|k| input.get(*k).and_then(|v| v.as_str()))
        .map(str::to_string)
        .unwrap_or_else(|| input.to_string());
    gist(&what)
}

/// The first line of `s`, clipped, and how many more there were.
fn gist(s: &str) -> String {
    let mut it = s.lines().filter(|l| !l.trim().is_empty());
    let first = crate::text::clip(it.next().unwrap_or("").trim(), 200);
    match it.count() {
        0 => first,
        1 => format!("{first} (+1 line)"),
        n => format!("{first} (+{n} lines)"),
    }
}

/// The thread that writes lines into the store.
pub struct Writer {
    sink: Option<Sink>,
    thread: Option<JoinHandle<()>>,
}

/// What the writer knows of each task's log.
#[derive(Default)]
struct Kept {
    /// (row id, bytes) of the lines kept, oldest first.
    rows: std::collections::VecDeque<(i64, u64)>,
    bytes: u64,
    dropped_lines: u64,
    dropped_bytes: u64,
}

impl Writer {
    /// Starts the writer on its own connection to `path`; `cap` bytes per
    /// task. The lines waiting for it hold at most [`MIN_QUEUE`] bytes, or
    /// twice `cap` when that is more, up to [`MAX_QUEUE`].
    pub fn start(path: &Path, cap: u64) -> Result<Writer> {
        let db = Db::open(path)?;
        let (tx, rx) = mpsc::channel();
        let queued = Arc::new(AtomicU64::new(0));
        let writer_queued = queued.clone();
        let thread = std::thread::spawn(move || write_loop(&db, &rx, cap.max(1), &writer_queued));
        Ok(Writer {
            sink: Some(Sink {
                tx,
                queued,
                room: cap.saturating_mul(2).clamp(MIN_QUEUE, MAX_QUEUE),
                dropped: Cell::new(None),
            }),
            thread: Some(thread),
        })
    }

    pub fn sink(&self) -> Option<Sink> {
        self.sink.clone()
    }

    /// Waits (at most a second) until every line sent so far is committed:
    /// before a task's end is recorded, so its log is complete when it ends.
    pub fn flush(&self) {
        if let Some(s) = &self.sink {
            let (tx, rx) = mpsc::channel();
            if s.tx.send(Msg::Flush(tx)).is_ok() {
                let _ = rx.recv_timeout(Duration::from_secs(1));
            }
        }
    }
}

impl Drop for Writer {
    /// Writes what is queued, then stops.
    fn drop(&mut self) {
        if let Some(s) = self.sink.take() {
            let _ = s.tx.send(Msg::Stop);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Every 50 ms (or 2000 lines), one transaction of what came in.
fn write_loop(db: &Db, rx: &Receiver<Msg>, cap: u64, queued: &AtomicU64) {
    let mut kept: HashMap<i64, Kept> = HashMap::new();
    loop {
        let mut batch = Vec::new();
        let mut acks = Vec::new();
        match rx.recv() {
            Ok(Msg::Line(l)) => batch.push(l),
            Ok(Msg::Flush(a)) => acks.push(a),
            Ok(Msg::Stop) | Err(_) => return,
        }
        let deadline = std::time::Instant::now() + Duration::from_millis(50);
        let mut closed = false;
        while batch.len() < 2000 && acks.is_empty() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(Msg::Line(l)) => batch.push(l),
                Ok(Msg::Flush(a)) => acks.push(a),
                Err(RecvTimeoutError::Timeout) => break,
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        // A store error loses these lines, never the agent's run.
        if !batch.is_empty() {
            let _ = db.write(|tx| write_in(tx, &batch, &mut kept, cap));
            let done: u64 = batch.iter().map(|l| l.text.len() as u64 + LINE_COST).sum();
            queued.fetch_sub(done, Ordering::Relaxed);
        }
        for a in acks {
            let _ = a.send(());
        }
        if closed {
            return;
        }
    }
}

fn write_in(
    tx: &Transaction,
    lines: &[Line],
    kept: &mut HashMap<i64, Kept>,
    cap: u64,
) -> Result<()> {
    let mut ins = tx.prepare_cached(
        "INSERT INTO task_logs (task_id, at, stream, line) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut over = Vec::new();
    for l in lines {
        ins.execute(params![l.task, l.at, l.stream.as_str(), l.text])?;
        let k = kept.entry(l.task).or_default();
        let n = l.text.len() as u64 + 1;
        k.rows.push_back((tx.last_insert_rowid(), n));
        k.bytes += n;
        if k.bytes > cap && !over.contains(&l.task) {
            over.push(l.task);
        }
    }
    for task in over {
        let Some(k) = kept.get_mut(&task) else {
            continue;
        };
        let mut upto = 0;
        while k.bytes > cap {
            let Some((id, n)) = k.rows.pop_front() else {
                break;
            };
            k.bytes -= n;
            k.dropped_bytes += n;
            k.dropped_lines += 1;
            upto = id;
        }
        tx.prepare_cached(
            "DELETE FROM task_logs WHERE task_id = ?1 AND id <= ?2 AND stream <> 'mark'",
        )?
        .execute(params![task, upto])?;
        let text = format!(
            "[orch: {} earlier lines ({} bytes) dropped: the log keeps the last {} bytes]",
            k.dropped_lines, k.dropped_bytes, cap
        );
        let n = tx
            .prepare_cached(
                "UPDATE task_logs SET line = ?2, at = ?3 WHERE task_id = ?1 AND stream = 'mark'",
            )?
            .execute(params![task, text, now_ms()])?;
        if n == 0 {
            tx.prepare_cached(
                "INSERT INTO task_logs (task_id, at, stream, line) VALUES (?1, ?2, 'mark', ?3)",
            )?
            .execute(params![task, now_ms(), text])?;
        }
    }
    Ok(())
}

/// One line of a task's log, as `orch-queue logs --json` prints it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LogLine {
    #[serde(skip)]
    pub id: i64,
    pub at: String,
    #[serde(skip)]
    pub at_ms: i64,
    /// `out`, `err`, or `mark` (the line saying what was dropped).
    pub stream: String,
    pub line: String,
}

impl LogLine {
    fn from_row(r: &Row) -> rusqlite::Result<LogLine> {
        let at_ms: i64 = r.get(1)?;
        Ok(LogLine {
            id: r.get(0)?,
            at: rfc3339(at_ms),
            at_ms,
            stream: r.get(2)?,
            line: r.get(3)?,
        })
    }
}

/// Lines of task `task` with an id above `after` (the marker first when
/// `after` is 0), at or after `since` ms, at most `limit`.
pub fn lines(
    db: &Db,
    task: i64,
    after: i64,
    since: Option<i64>,
    limit: usize,
) -> Result<Vec<LogLine>> {
    db.read(|tx| {
        let mut out = Vec::new();
        if after == 0 {
            let mark = tx
                .query_row(
                    "SELECT id, at, stream, line FROM task_logs WHERE task_id = ?1 AND stream = 'mark'",
                    [task],
                    LogLine::from_row,
                )
                .optional()?;
            out.extend(mark);
        }
        let mut stmt = tx.prepare_cached(
            "SELECT id, at, stream, line FROM task_logs
             WHERE task_id = ?1 AND id > ?2 AND stream <> 'mark' AND at >= ?3 ORDER BY id LIMIT ?4",
        )?;
        let rows = stmt.query_map(
            params![task, after, since.unwrap_or(i64::MIN), limit as i64],
            LogLine::from_row,
        )?;
        for r in rows {
            out.push(r?);
        }
        Ok(out)
    })
}

/// When each of `tasks` last printed a line (tasks that printed nothing are absent).
pub fn last_output_in(tx: &Transaction, tasks: &[i64]) -> Result<HashMap<i64, i64>> {
    let mut stmt =
        tx.prepare_cached("SELECT max(at) FROM task_logs WHERE task_id = ?1 AND stream <> 'mark'")?;
    let mut out = HashMap::new();
    for &t in tasks {
        if let Some(at) = stmt.query_row([t], |r| r.get::<_, Option<i64>>(0))? {
            out.insert(t, at);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines Claude Code 2.1 printed with `-p --output-format stream-json
    /// --verbose` (against a local scripted model).
    const TOOL_USE: &str =
        include_str!("../../../tests/fixtures/claude-stream-json/tool-use.jsonl");
    const MAX_TURNS: &str =
        include_str!("../../../tests/fixtures/claude-stream-json/max-turns.jsonl");

    fn all_steps(stream: &str) -> Vec<String> {
        stream.lines().flat_map(|l| steps(l).unwrap()).collect()
    }

    #[test]
    fn stream_json_lines_become_readable_steps() {
        let s = all_steps(TOOL_USE);
        assert!(s[0].starts_with("start: session 8d8b0d02-"), "{s:?}");
        assert!(s[0].contains("model claude-opus-5-5"), "{s:?}");
        assert_eq!(s[1], "tool Bash: orch-queue stats");
        assert_eq!(s[2], "tool result: queued     1 (+7 lines)");
        assert_eq!(s[3], "says: done: Count the queue");
        assert!(
            s[4].starts_with("done (success), 2 turns, ")
                && s[4].ends_with(", $0.0003: done: Count the queue"),
            "{s:?}"
        );
        assert_eq!(s.len(), 5, "{s:?}");
        assert!(s.iter().all(|l| !l.contains('{')), "no JSON left: {s:?}");
        let s = all_steps(include_str!(
            "../../../tests/fixtures/claude-stream-json/text-only.jsonl"
        ));
        assert_eq!(s.len(), 3, "{s:?}");
        assert_eq!(s[1], "says: done: Say hello");
        assert!(s[2].starts_with("done (success), 1 turn, "), "{s:?}");
        let s = all_steps(MAX_TURNS);
        assert!(
            s.last()
                .unwrap()
                .starts_with("failed (error_max_turns), 2 turns"),
            "{s:?}"
        );
        assert!(s
            .last()
            .unwrap()
            .ends_with(": Reached maximum number of turns (1)"));
    }

    #[test]
    fn stream_json_steps_of_errors_sub_agents_and_other_lines() {
        let err = r#"{"type":"user","message":{"role":"user","content":[{"type":"tool_result","content":"Exit code 2\nno database","is_error":true,"tool_use_id":"t"}]},"parent_tool_use_id":"toolu_9"}"#;
        assert_eq!(
            steps(err).unwrap(),
            ["(sub-agent) tool error: Exit code 2 (+1 line)"]
        );
        let many = r#"{"type":"assistant","message":{"content":[{"type":"text","text":"one\ntwo"},{"type":"tool_use","name":"Edit","input":{"file_path":"src/a.rs","old_string":"x"}},{"type":"tool_use","name":"X","input":{"n":1}}]}}"#;
        assert_eq!(
            steps(many).unwrap(),
            [
                "says: one",
                "  two",
                "tool Edit: src/a.rs",
                "tool X: {\"n\":1}"
            ]
        );
        assert_eq!(steps("plain text"), None);
        assert_eq!(steps("[1,2]"), None);
        assert_eq!(steps(r#"{"no":"type"}"#), None);
        assert_eq!(
            steps(r#"{"type":"stream_event","event":{}}"#).unwrap(),
            Vec::<String>::new()
        );
    }
}
