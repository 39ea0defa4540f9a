//! Per-task logs: what each agent of orch-run printed, line by line, stdout
//! and stderr in the order they arrived, with times. Bounded per task
//! ([`Writer`]'s cap, default [`DEFAULT_CAP`]): the oldest lines go first and
//! one marker line says how much was dropped. Lines are written by a thread of
//! their own in batches, so an agent's output is never held up by the store.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
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

/// A handle that readers of agent output send lines through.
#[derive(Clone)]
pub struct Sink {
    tx: Sender<Msg>,
}

impl Sink {
    /// Queues one line (without its newline); never blocks.
    pub fn line(&self, task: i64, stream: Stream, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim_end_matches(['\n', '\r']);
        let at = now_ms();
        let mut rest = text;
        loop {
            let mut cut = rest.len().min(MAX_LINE);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
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

/// Splits a stream into lines as chunks arrive.
#[derive(Default)]
pub struct Splitter {
    partial: Vec<u8>,
}

impl Splitter {
    /// Feeds a chunk; each complete line goes to `sink`.
    pub fn push(&mut self, sink: &Sink, task: i64, stream: Stream, chunk: &[u8]) {
        let mut rest = chunk;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&rest[..i]);
            sink.line(task, stream, &self.partial);
            self.partial.clear();
            rest = &rest[i + 1..];
        }
        self.partial.extend_from_slice(rest);
        if self.partial.len() >= MAX_LINE {
            sink.line(task, stream, &self.partial);
            self.partial.clear();
        }
    }

    /// The last line, when the stream did not end with a newline.
    pub fn finish(&mut self, sink: &Sink, task: i64, stream: Stream) {
        if !self.partial.is_empty() {
            sink.line(task, stream, &self.partial);
            self.partial.clear();
        }
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
    /// Starts the writer on its own connection to `path`; `cap` bytes per task.
    pub fn start(path: &Path, cap: u64) -> Result<Writer> {
        let db = Db::open(path)?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || write_loop(&db, &rx, cap.max(1)));
        Ok(Writer {
            sink: Some(Sink { tx }),
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
fn write_loop(db: &Db, rx: &Receiver<Msg>, cap: u64) {
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
