//! Running a batch headless (SPEC §10): agent command templates, the claim on a
//! batch (the run columns of `batches`), one process group per task bounded by
//! `-j`, bounded output capture, timeouts, signals, and what each run records
//! (the task's start, end, exit and output, and one `agent_calls` row per task).

mod claim;
pub mod job;
mod judge;
mod template;

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Transaction;
use serde::Serialize;

use crate::batch;
use crate::calls::{self, NewCall};
use crate::child::kill_group;
use crate::db::Db;
use crate::errclass::Class;
use crate::error::{Error, Result};
use crate::event;
use crate::intervals::{self, Analysis, Interval};
use crate::task::{self, NewTask, Outcome, Status, Task};
use crate::tasklog;
use crate::time::{now_ms, rfc3339};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// How much of a task's stdout is kept (the end of it).
pub const STDOUT_CAP: usize = 4 << 20;
/// How long claude's result line may be and still be judged whole, however
/// much of stdout's end [`STDOUT_CAP`] keeps.
pub const JSON_LINE_CAP: usize = 64 << 20;
/// How much of a task's stderr is kept (the end of it).
pub const STDERR_CAP: usize = 1 << 20;
/// Time between SIGTERM and SIGKILL when a task is stopped.
pub const GRACE: Duration = Duration::from_secs(2);
/// How long output is awaited after a task's process group is gone.
const DRAIN: Duration = Duration::from_secs(2);
/// The `agent_calls.source` of rows orch-run writes.
pub const SOURCE: &str = crate::attempt::ORCH_RUN;

pub use claim::*;
pub use judge::*;
pub use template::*;

/// What happened to one task, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub id: i64,
    pub batch: i64,
    pub role: String,
    pub description: String,
    pub status: Status,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub interrupted: bool,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: i64,
    pub result: Option<String>,
    pub error: Option<String>,
    /// This run's attempt number of the task (1 for its first).
    pub attempt: i64,
    /// Why it failed, as a class (see [`crate::errclass`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_class: Option<crate::errclass::Class>,
    /// When a failed attempt is retried (the task then waits, `batched`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<String>,
    /// What claude reported (see [`Task::claude`]); absent for other agents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claude: Option<JsonObject>,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    /// True when only the end of stdout or stderr was kept.
    pub truncated: bool,
    #[serde(skip)]
    pub start_ms: i64,
    #[serde(skip)]
    pub end_ms: i64,
    #[serde(skip)]
    pub retry_ms: Option<i64>,
}

/// What the runner reports while it works.
pub enum RunEvent<'a> {
    Started {
        task: &'a Task,
        pid: u32,
    },
    /// `spawned` is false when the agent could not be started at all.
    Finished {
        record: &'a Record,
        spawned: bool,
    },
    /// A signal asked orch-run to stop; running tasks are being stopped.
    Stopping {
        signal: i32,
    },
    /// Nothing starts until `until` (ms; `None`: until resumed).
    Paused {
        until: Option<i64>,
        reason: &'a str,
    },
    /// Nothing happened; time passed (for redrawing progress).
    Tick,
}

/// The end of a run.
#[derive(Debug)]
pub struct RunSummary {
    /// One record per task that started, in batch order.
    pub records: Vec<Record>,
    /// The signal that stopped the run, if one did.
    pub interrupted: Option<i32>,
    /// Tasks that never started because of the interruption: back in the queue.
    pub requeued: Vec<i64>,
    /// Why the run stopped starting tasks before the batch was through
    /// (a pause with --no-wait, the budget).
    pub halted: Option<String>,
    pub analysis: Analysis,
}

impl RunSummary {
    pub fn failed(&self) -> usize {
        self.records
            .iter()
            .filter(|r| r.status == Status::Failed)
            .count()
    }
}

/// How to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub jobs: usize,
    pub timeout: Option<Duration>,
    /// Extra environment for every agent.
    pub env: Vec<(String, String)>,
    /// Bytes kept of each task's log (`tasklog`).
    pub log_cap: u64,
    /// An agent silent for longer is journaled stalled (once).
    pub stalled_after: Duration,
    /// Retries of a task after a retryable failure.
    pub retries: u32,
    /// The first retry's backoff ceiling (doubled per retry, full jitter).
    pub backoff: Duration,
    /// Exit (instead of waiting) while the database is paused.
    pub no_wait: bool,
    /// Start nothing new once this run's recorded spend reaches this.
    pub budget_usd: Option<f64>,
    /// The lease on the batch and on this run's slots, renewed while it runs.
    pub lease: Duration,
    /// A git worktree per task (`--worktree`), made as each task starts.
    pub worktree: Option<crate::worktree::Setup>,
}

/// The longest backoff between two attempts.
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);

enum Msg {
    Signal(i32),
    OutputClosed,
}

/// The end of a stream: at most `cap` bytes, and how many there were in all;
/// with `json`, also the last line that starts with `{`, whole, up to
/// [`JSON_LINE_CAP`] (claude's result line, which may be longer than `cap`).
#[derive(Debug, Default)]
struct Tail {
    buf: Vec<u8>,
    total: u64,
    cap: usize,
    json: bool,
    /// The line being read, while it may be the one kept.
    line: Vec<u8>,
    line_state: LineState,
    /// The last complete line that started with `{`.
    last_json: Option<Vec<u8>>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum LineState {
    /// Nothing of this line read yet.
    #[default]
    Start,
    /// It starts with `{` and fits: being kept.
    Json,
    /// Not kept.
    Skip,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        self.buf.extend_from_slice(data);
        if self.buf.len() > 2 * self.cap {
            let cut = self.buf.len() - self.cap;
            self.buf.drain(..cut);
        }
        if self.json {
            self.track(data);
        }
    }

    fn track(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let (part, newline) = match data.iter().position(|&b| b == b'\n') {
                Some(i) => (&data[..i], true),
                None => (data, false),
            };
            data = &data[part.len() + usize::from(newline)..];
            if self.line_state == LineState::Start && !part.is_empty() {
                self.line_state = match part[0] {
                    // A later line that may be the result supersedes the one kept.
                    b'{' => {
                        self.last_json = None;
                        LineState::Json
                    }
                    _ => LineState::Skip,
                };
            }
            if self.line_state == LineState::Json {
                if self.line.len() + part.len() > JSON_LINE_CAP {
                    self.line = Vec::new();
                    self.line_state = LineState::Skip;
                } else {
                    self.line.extend_from_slice(part);
                }
            }
            if newline {
                if self.line_state == LineState::Json {
                    self.last_json = Some(std::mem::take(&mut self.line));
                }
                self.line.clear();
                self.line_state = LineState::Start;
            }
        }
    }

    /// The last line that started with `{` (the last line may lack its
    /// newline), when the kept end of the stream does not hold all of it.
    fn json_line(&self) -> Option<String> {
        if !self.truncated() {
            return None;
        }
        let line = match self.line_state {
            LineState::Json if !self.line.is_empty() => &self.line,
            _ => self.last_json.as_ref()?,
        };
        Some(String::from_utf8_lossy(line).into_owned())
    }

    fn truncated(&self) -> bool {
        self.total > self.cap as u64
    }

    fn text(&self) -> String {
        let start = self.buf.len().saturating_sub(self.cap);
        String::from_utf8_lossy(&self.buf[start..]).into_owned()
    }
}

/// Where a reader sends the lines it reads, and when it last read one.
struct LogTo {
    sink: Option<tasklog::Sink>,
    task: i64,
    stream: tasklog::Stream,
    render: tasklog::Render,
    last: Arc<AtomicI64>,
}

fn spawn_reader(
    mut r: impl Read + Send + 'static,
    cap: usize,
    json: bool,
    tx: Sender<Msg>,
    log: LogTo,
) -> JoinHandle<Tail> {
    std::thread::spawn(move || {
        let mut tail = Tail {
            cap,
            json,
            ..Default::default()
        };
        let mut lines = tasklog::Splitter::new(log.render);
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match r.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    log.last.store(now_ms(), Ordering::Relaxed);
                    tail.push(&chunk[..n]);
                    if let Some(s) = &log.sink {
                        lines.push(s, log.task, log.stream, &chunk[..n]);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        if let Some(s) = &log.sink {
            lines.finish(s, log.task, log.stream);
        }
        let _ = tx.send(Msg::OutputClosed);
        tail
    })
}

/// True once `pid` has exited; the zombie is left in place (WNOWAIT), so its
/// process group id cannot be reused before the group is killed and it is reaped.
fn has_exited(pid: i32) -> bool {
    use rustix::process::{waitid, WaitId, WaitIdOptions};
    let Some(pid) = rustix::process::Pid::from_raw(pid) else {
        return true;
    };
    match waitid(
        WaitId::Pid(pid),
        WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT,
    ) {
        Ok(status) => status.is_some(),
        // ECHILD (already reaped elsewhere) counts as exited; EINTR means look again later.
        Err(e) => e != rustix::io::Errno::INTR,
    }
}

/// What the agent reads the prompt from: stdin, and the file `{prompt_file}`
/// names (removed when the task ends). Both are 0600 temporary files.
pub(crate) fn prompt_input(
    t: &Task,
    via: PromptVia,
) -> std::io::Result<(Stdio, Option<tempfile::NamedTempFile>)> {
    use std::io::{Seek, Write};
    match via {
        PromptVia::Argument => Ok((Stdio::null(), None)),
        PromptVia::Stdin => {
            let mut f = tempfile::tempfile()?;
            f.write_all(t.prompt.as_bytes())?;
            f.rewind()?;
            Ok((Stdio::from(f), None))
        }
        PromptVia::File => {
            let mut f = tempfile::Builder::new()
                .prefix("orch-prompt-")
                .suffix(".txt")
                .tempfile()?;
            f.write_all(t.prompt.as_bytes())?;
            f.flush()?;
            Ok((Stdio::null(), Some(f)))
        }
    }
}

struct Slot {
    idx: usize,
    child: Child,
    /// The `{prompt_file}`, kept until the task ends.
    _prompt_file: Option<tempfile::NamedTempFile>,
    pgid: i32,
    start_ms: i64,
    deadline: Option<Instant>,
    term_at: Option<Instant>,
    killed: bool,
    timed_out: bool,
    interrupted: bool,
    exit: Option<(ExitStatus, i64, Instant)>,
    out: Option<JoinHandle<Tail>>,
    err: Option<JoinHandle<Tail>>,
    /// When the agent last printed something (ms).
    last_output: Arc<AtomicI64>,
    stalled: bool,
    /// The task's worktree, when it has one.
    git: Option<crate::worktree::GitRecord>,
}

impl Slot {
    fn stop(&mut self, now: Instant) {
        if self.exit.is_none() && self.term_at.is_none() {
            kill_group(self.pgid, libc::SIGTERM);
            self.term_at = Some(now);
        }
    }

    fn kill(&mut self) {
        if self.exit.is_none() && !self.killed {
            kill_group(self.pgid, libc::SIGKILL);
            self.killed = true;
        }
    }

    fn drained(&self) -> bool {
        self.out.as_ref().is_none_or(|h| h.is_finished())
            && self.err.as_ref().is_none_or(|h| h.is_finished())
    }
}

impl Drop for Slot {
    /// Whatever way the runner leaves (an error, a panic), no agent outlives it.
    fn drop(&mut self) {
        if self.exit.is_none() {
            kill_group(self.pgid, libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// Runs claimed tasks: owns the signal handlers for the length of the run.
pub struct Runner {
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    signals: signal_hook::iterator::Handle,
    thread: Option<JoinHandle<()>>,
}

impl Runner {
    /// Installs the handlers (SIGINT, SIGTERM, SIGHUP stop the run; SIGCHLD wakes it).
    /// Install before claiming, so a Ctrl-C at any point after the claim is handled.
    pub fn new() -> Result<Runner> {
        use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGCHLD])
            .map_err(|source| Error::Io {
            path: PathBuf::from("signal handlers"),
            what: "install",
            source,
        })?;
        let handle = signals.handle();
        let (tx, rx) = mpsc::channel();
        let stx = tx.clone();
        let thread = std::thread::spawn(move || {
            for s in signals.forever() {
                if stx.send(Msg::Signal(s)).is_err() {
                    break;
                }
            }
        });
        Ok(Runner {
            tx,
            rx,
            signals: handle,
            thread: Some(thread),
        })
    }

    /// Runs every task of `claim` through `program` + `template`, at most
    /// `opts.jobs` at a time, recording each start and end; `on` hears progress.
    pub fn run(
        &mut self,
        db: &Db,
        claim: &Claim,
        program: &std::path::Path,
        template: &Template,
        opts: &Options,
        on: &mut dyn FnMut(RunEvent),
    ) -> Result<RunSummary> {
        let tasks = &claim.tasks;
        let jobs = opts.jobs.max(1);
        let mut slots: Vec<Slot> = Vec::new();
        let mut records: Vec<Option<Record>> = vec![None; tasks.len()];
        let mut next = 0usize;
        let mut stopping: Option<i32> = None;
        let mut halted: Option<String> = None;
        // Tasks waiting for their next attempt: (due ms, index).
        let mut retry_q: Vec<(i64, usize)> = Vec::new();
        let run_start = now_ms();
        let tick = Duration::from_millis(100);
        // A store that is a file gets the agents' lines (an in-memory one is a test's).
        let writer = match db.path.as_os_str() == ":memory:" {
            true => None,
            false => Some(tasklog::Writer::start(&db.path, opts.log_cap)?),
        };
        let sink = writer.as_ref().and_then(|w| w.sink());
        let flush = || {
            if let Some(w) = &writer {
                w.flush();
            }
        };
        let renew_every = (opts.lease / 3).max(Duration::from_millis(200));
        let mut renewed = Instant::now();
        loop {
            let mut waiting_slot = false;
            if renewed.elapsed() >= renew_every {
                renewed = Instant::now();
                if !renew(db, claim, opts.lease)? && halted.is_none() {
                    halted = Some(
                        "another orch-run took the batch over (this run's lease lapsed)".into(),
                    );
                }
            }
            let mut paused_for: Option<Instant> = None;
            let wants = stopping.is_none()
                && halted.is_none()
                && slots.len() < jobs
                && (next < tasks.len() || !retry_q.is_empty());
            if wants {
                if let Some(p) = crate::limits::paused(db)? {
                    if opts.no_wait {
                        halted = Some(crate::limits::describe(&p));
                    } else {
                        on(RunEvent::Paused {
                            until: p.until_ms,
                            reason: &p.reason,
                        });
                        paused_for = Some(Instant::now() + Duration::from_millis(500));
                    }
                } else if let Some(budget) = opts.budget_usd {
                    let spent = db.read(|tx| {
                        crate::attempt::batch_cost_since_in(tx, claim.batch, run_start)
                    })?;
                    if spent >= budget {
                        halted = Some(format!(
                            "budget of ${budget:.2} reached: this run spent ${spent:.4}"
                        ));
                    }
                }
            }
            while stopping.is_none()
                && halted.is_none()
                && paused_for.is_none()
                && slots.len() < jobs
            {
                let now = now_ms();
                let pick = retry_q.iter().position(|&(due, _)| due <= now);
                if pick.is_none() && next >= tasks.len() {
                    break;
                }
                // One of the database's slots (`orch-queue limit`), if it has a limit.
                let key = tasks[pick.map_or(next, |p| retry_q[p].1)].id.to_string();
                let until = crate::lease::until(opts.lease);
                if !db.write(|tx| crate::limits::take_slot_in(tx, &claim.holder, &key, until))? {
                    waiting_slot = true;
                    break;
                }
                let idx = match pick {
                    Some(pos) => retry_q.swap_remove(pos).1,
                    None => {
                        next += 1;
                        next - 1
                    }
                };
                match self.spawn(
                    db,
                    claim.batch,
                    &claim.holder,
                    &tasks[idx],
                    idx,
                    program,
                    template,
                    opts,
                    &sink,
                )? {
                    Ok(slot) => {
                        on(RunEvent::Started {
                            task: &tasks[idx],
                            pid: slot.pgid as u32,
                        });
                        slots.push(slot);
                    }
                    Err(rec) => {
                        let key = tasks[idx].id.to_string();
                        db.write(|tx| crate::limits::release_in(tx, &claim.holder, &key))?;
                        on(RunEvent::Finished {
                            record: &rec,
                            spawned: false,
                        });
                        records[idx] = Some(rec);
                    }
                }
            }
            if slots.is_empty()
                && ((next >= tasks.len() && retry_q.is_empty())
                    || stopping.is_some()
                    || halted.is_some())
            {
                break;
            }
            let now_wall = now_ms();
            let retry_wait = retry_q
                .iter()
                .map(|&(due, _)| Duration::from_millis((due - now_wall).max(0) as u64))
                .min();
            let now = Instant::now();
            let wait = slots
                .iter()
                .filter_map(|s| match (s.exit, s.deadline, s.term_at) {
                    (Some(_), _, _) => Some(now + Duration::from_millis(10)),
                    (None, _, Some(t)) => Some(t + GRACE),
                    (None, Some(d), None) => Some(d),
                    _ => None,
                })
                .min()
                .map_or(tick, |d| d.saturating_duration_since(now).min(tick));
            let wait = retry_wait.map_or(wait, |r| r.min(wait));
            let wait = paused_for.map_or(wait, |p| p.saturating_duration_since(now).min(wait));
            let wait = if waiting_slot {
                wait.min(Duration::from_millis(50))
            } else {
                wait
            };
            match self.rx.recv_timeout(wait) {
                Ok(Msg::Signal(s)) if s != libc::SIGCHLD => {
                    let now = Instant::now();
                    if stopping.is_some() {
                        for slot in &mut slots {
                            slot.kill();
                        }
                    } else {
                        stopping = Some(s);
                        on(RunEvent::Stopping { signal: s });
                        for slot in &mut slots {
                            slot.interrupted = true;
                            slot.stop(now);
                        }
                    }
                }
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {}
            }
            let now = Instant::now();
            let mut i = 0;
            while i < slots.len() {
                let s = &mut slots[i];
                if s.exit.is_none() {
                    if has_exited(s.pgid) {
                        let end = now_ms();
                        // Anything the agent left behind in its group goes with it.
                        kill_group(s.pgid, libc::SIGKILL);
                        let status = s.child.wait().map_err(|source| Error::Io {
                            path: PathBuf::from(&template.program),
                            what: "wait for",
                            source,
                        })?;
                        s.exit = Some((status, end, now));
                    } else if s.term_at.is_some_and(|t| now >= t + GRACE) {
                        s.kill();
                    } else if s.deadline.is_some_and(|d| now >= d) && s.term_at.is_none() {
                        s.timed_out = true;
                        s.stop(now);
                    }
                    let silent = now_ms() - s.last_output.load(Ordering::Relaxed);
                    if !s.stalled && silent > crate::time::ms(opts.stalled_after) {
                        s.stalled = true;
                        let id = tasks[s.idx].id;
                        let detail = format!("no output for {}", crate::time::whole_secs(silent));
                        db.write(|tx| {
                            event::record(
                                tx,
                                event::Kind::TaskStalled,
                                event::About::task_in(id, Some(claim.batch)),
                                None,
                                None,
                                Some(&detail),
                            )
                        })?;
                    }
                }
                let ready = match s.exit {
                    Some((_, _, at)) => s.drained() || now >= at + DRAIN,
                    None => false,
                };
                if ready {
                    flush();
                    let slot = slots.swap_remove(i);
                    let idx = slot.idx;
                    let rec = self.finish(db, claim.batch, &tasks[idx], slot, template, opts)?;
                    let key = tasks[idx].id.to_string();
                    db.write(|tx| crate::limits::release_in(tx, &claim.holder, &key))?;
                    on(RunEvent::Finished {
                        record: &rec,
                        spawned: true,
                    });
                    if let Some(due) = rec.retry_ms {
                        retry_q.push((due, idx));
                    }
                    records[idx] = Some(rec);
                    continue;
                }
                i += 1;
            }
            on(RunEvent::Tick);
        }
        drop(writer);
        let requeued = if (stopping.is_some() || halted.is_some())
            && (next < tasks.len() || !retry_q.is_empty())
        {
            let ids: Vec<i64> = tasks[next..]
                .iter()
                .map(|t| t.id)
                .chain(retry_q.iter().map(|&(_, i)| tasks[i].id))
                .collect();
            db.write(|tx| batch::requeue_in(tx, claim.batch, &claim.holder, &ids))?
        } else {
            Vec::new()
        };
        let records: Vec<Record> = records.into_iter().flatten().collect();
        let analysis = intervals::analyse(
            &records
                .iter()
                .map(|r| Interval {
                    start: Some(r.start_ms),
                    end: Some(r.end_ms),
                })
                .collect::<Vec<_>>(),
        );
        Ok(RunSummary {
            records,
            interrupted: stopping,
            requeued,
            halted,
            analysis,
        })
    }

    /// Marks the task running and starts its agent in a process group of its own.
    /// `Ok(Err(record))` when the agent could not start (the task is then failed).
    #[allow(clippy::too_many_arguments)]
    fn spawn(
        &self,
        db: &Db,
        batch: i64,
        holder: &str,
        t: &Task,
        idx: usize,
        program: &std::path::Path,
        template: &Template,
        opts: &Options,
        sink: &Option<tasklog::Sink>,
    ) -> Result<std::result::Result<Slot, Record>> {
        let start_ms = now_ms();
        record_start(db, batch, holder, t, start_ms)?;
        let git = match &opts.worktree {
            Some(setup) => match setup.create(t.id) {
                Ok(g) => {
                    db.write(|tx| crate::task::record_git_in(tx, t.id, &g))?;
                    Some(g)
                }
                Err(e) => {
                    return self.not_started(
                        db,
                        batch,
                        t,
                        start_ms,
                        format!("cannot make its worktree: {e}"),
                    )
                }
            },
            None => None,
        };
        let (stdin, prompt_file) = match prompt_input(t, template.prompt_via()) {
            Ok(p) => p,
            Err(e) => {
                return self.not_started(
                    db,
                    batch,
                    t,
                    start_ms,
                    format!("cannot write its prompt to a file: {e}"),
                )
            }
        };
        let mut cmd = Command::new(program);
        cmd.args(template.argv(t, prompt_file.as_ref().map(|f| f.path())))
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("ORCH_TASK_ID", t.id.to_string())
            .env("ORCH_BATCH_ID", batch.to_string());
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        if let Some(dir) = git.as_ref().and_then(|g| g.worktree.as_ref()) {
            cmd.current_dir(dir);
        }
        // Its own process group, which dies with orch-run even when orch-run is SIGKILLed.
        match crate::child::spawn(&mut cmd) {
            Ok(mut child) => {
                let last_output = Arc::new(AtomicI64::new(now_ms()));
                // claude's stream-json is logged as the steps it holds.
                let log = |stream| LogTo {
                    sink: sink.clone(),
                    task: t.id,
                    stream,
                    render: match (stream, template.output) {
                        (tasklog::Stream::Out, OutputKind::ClaudeStreamJson) => {
                            tasklog::Render::ClaudeSteps
                        }
                        _ => tasklog::Render::Raw,
                    },
                    last: last_output.clone(),
                };
                let out = child.stdout.take().map(|r| {
                    spawn_reader(
                        r,
                        STDOUT_CAP,
                        template.output.is_claude(),
                        self.tx.clone(),
                        log(tasklog::Stream::Out),
                    )
                });
                let err = child.stderr.take().map(|r| {
                    spawn_reader(
                        r,
                        STDERR_CAP,
                        false,
                        self.tx.clone(),
                        log(tasklog::Stream::Err),
                    )
                });
                let pgid = child.id() as i32;
                Ok(Ok(Slot {
                    idx,
                    child,
                    _prompt_file: prompt_file,
                    pgid,
                    start_ms,
                    deadline: opts.timeout.map(|d| Instant::now() + d),
                    term_at: None,
                    killed: false,
                    timed_out: false,
                    interrupted: false,
                    exit: None,
                    out,
                    err,
                    last_output,
                    stalled: false,
                    git,
                }))
            }
            Err(e) => self.not_started(
                db,
                batch,
                t,
                start_ms,
                format!("cannot start {}: {e}", program.display()),
            ),
        }
    }

    /// Fails a task whose agent could not be started.
    fn not_started(
        &self,
        db: &Db,
        batch: i64,
        t: &Task,
        start_ms: i64,
        error: String,
    ) -> Result<std::result::Result<Slot, Record>> {
        let end = now_ms();
        record_finish(
            db,
            batch,
            t.id,
            Outcome {
                ok: false,
                error: Some(error.clone()),
                at: Some(end),
                ..Default::default()
            },
            crate::attempt::End {
                ok: false,
                class: Some(Class::SpawnError),
                error: Some(error.clone()),
                at: end,
                ..Default::default()
            },
            &|_| None,
            None,
            None,
        )?;
        let attempt = db.read(|tx| crate::attempt::count_in(tx, t.id))?;
        Ok(Err(Record {
            id: t.id,
            batch,
            role: t.role.clone(),
            description: t.description.clone(),
            status: Status::Failed,
            exit_code: None,
            signal: None,
            timed_out: false,
            interrupted: false,
            started_at: rfc3339(start_ms),
            finished_at: rfc3339(end),
            duration_ms: end - start_ms,
            result: None,
            error: Some(error),
            attempt,
            error_class: Some(Class::SpawnError),
            retry_at: None,
            retry_ms: None,
            claude: None,
            stdout_bytes: 0,
            stderr_bytes: 0,
            truncated: false,
            start_ms,
            end_ms: end,
        }))
    }

    /// Judges a finished task, records it, and returns its record.
    fn finish(
        &self,
        db: &Db,
        batch: i64,
        t: &Task,
        mut slot: Slot,
        template: &Template,
        opts: &Options,
    ) -> Result<Record> {
        let Some((status, end_ms, _)) = slot.exit else {
            return Err(Error::invalid(
                "internal: a task was finished before it exited",
            ));
        };
        let take = |h: Option<JoinHandle<Tail>>| -> (Tail, bool) {
            match h {
                Some(h) if h.is_finished() => (h.join().unwrap_or_default(), false),
                // A process that left the task's group still holds the pipe: keep nothing of it.
                Some(_) => (Tail::default(), true),
                None => (Tail::default(), false),
            }
        };
        let (out, out_held) = take(slot.out.take());
        let (err, err_held) = take(slot.err.take());
        let mut stdout = out.text();
        let stderr = err.text();
        let mut notes: Vec<String> = Vec::new();
        if out.truncated() {
            notes.push(format!(
                "stdout was {} bytes; kept the last {}",
                out.total, STDOUT_CAP
            ));
        }
        // claude's result line is judged whole even when longer than the end
        // of stdout that is kept.
        if let Some(line) = out
            .json_line()
            .filter(|l| crate::errclass::result_object(l).is_some())
        {
            if crate::errclass::result_object(&stdout).is_none() {
                stdout = line;
            }
        }
        if err.truncated() {
            notes.push(format!(
                "stderr was {} bytes; kept the last {}",
                err.total, STDERR_CAP
            ));
        }
        if out_held || err_held {
            notes.push("a process that left the task's process group kept its output open; that output was not read".into());
        }
        let j = judge(
            template.output,
            status,
            &stdout,
            &stderr,
            slot.timed_out,
            slot.interrupted,
            opts.timeout,
        );
        let mut j = j;
        // A result longer than the stdout orch-run keeps is kept cut.
        if let Some(r) = j.result.as_mut().filter(|r| r.len() > STDOUT_CAP) {
            notes.push(format!(
                "the result was {} bytes; kept the first {STDOUT_CAP}",
                r.len()
            ));
            let mut cut = STDOUT_CAP;
            while !r.is_char_boundary(cut) {
                cut -= 1;
            }
            r.truncate(cut);
        }
        let mut log = String::new();
        for n in &notes {
            log.push_str("orch-run: ");
            log.push_str(n);
            log.push('\n');
        }
        log.push_str(&stderr);
        // A successful task's leftovers are committed on its branch.
        if let (true, Some(setup), Some(g)) = (j.ok, &opts.worktree, slot.git.as_mut()) {
            if let Err(e) = setup.finish(t, g) {
                j.ok = false;
                j.error = Some(format!("cannot commit what it changed: {e}"));
            }
        }
        let metrics = crate::errclass::result_object(&stdout)
            .map(|o| crate::attempt::Metrics::from_claude(&o))
            .unwrap_or_default();
        let class = (!j.ok).then(|| {
            crate::errclass::classify(
                &crate::errclass::Ending {
                    stdout: &stdout,
                    stderr: &stderr,
                    exit_code: status.code(),
                    signal: status.signal(),
                    timed_out: slot.timed_out,
                    interrupted: slot.interrupted,
                    spawn_failed: false,
                },
                end_ms,
            )
        });
        let pause_until = class
            .as_ref()
            .filter(|c| c.class == Class::UsageLimit)
            .map(|c| {
                c.reset_at
                    .unwrap_or(end_ms + crate::limits::UNKNOWN_RESET_MS)
                    .max(end_ms)
                    + crate::limits::RESET_MARGIN_MS
            });
        let retry = |n: i64| -> Option<i64> {
            let c = class.as_ref()?;
            if slot.interrupted || !c.class.retryable() || n > i64::from(opts.retries) {
                return None;
            }
            Some(match pause_until {
                Some(p) => p,
                None => {
                    let d = crate::errclass::backoff(
                        n as u32,
                        opts.backoff,
                        BACKOFF_CAP,
                        c.retry_after,
                    );
                    crate::time::after(end_ms, d)
                }
            })
        };
        let retry_ms = record_finish(
            db,
            batch,
            t.id,
            Outcome {
                ok: j.ok,
                result: j.result.clone(),
                error: j.error.clone(),
                exit_code: status.code().map(i64::from),
                log: (!log.is_empty()).then_some(log),
                claude: j.claude.clone(),
                at: Some(end_ms),
            },
            crate::attempt::End {
                ok: j.ok,
                class: class.as_ref().map(|c| c.class),
                error: j.error.clone(),
                exit_code: status.code().map(i64::from),
                retry_at: None,
                metrics,
                at: end_ms,
            },
            &retry,
            pause_until,
            slot.git.as_ref(),
        )?;
        let attempt = db.read(|tx| crate::attempt::count_in(tx, t.id))?;
        Ok(Record {
            id: t.id,
            batch,
            role: t.role.clone(),
            description: t.description.clone(),
            status: if j.ok {
                Status::Done
            } else if retry_ms.is_some() {
                Status::Batched
            } else {
                Status::Failed
            },
            exit_code: status.code(),
            signal: status.signal(),
            timed_out: slot.timed_out,
            interrupted: slot.interrupted,
            started_at: rfc3339(slot.start_ms),
            finished_at: rfc3339(end_ms),
            duration_ms: end_ms - slot.start_ms,
            result: j.result,
            error: j.error,
            attempt,
            error_class: class.map(|c| c.class),
            retry_at: retry_ms.map(rfc3339),
            retry_ms,
            claude: j.claude,
            stdout_bytes: out.total,
            stderr_bytes: err.total,
            truncated: out.truncated() || err.truncated(),
            start_ms: slot.start_ms,
            end_ms,
        })
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.signals.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(prompt: &str) -> Task {
        Task::sample(7, "dev", "Fix it", prompt)
    }

    #[test]
    fn placeholders_fill_one_argument_each_in_one_pass() {
        let t = Template::custom(vec![
            "agent".into(),
            "--role={role}".into(),
            "{prompt}".into(),
            "#{id}".into(),
        ])
        .unwrap();
        let argv = t.argv(&task("say {role} $(rm -rf ~); `x` 'q'"), None);
        assert_eq!(
            argv,
            vec!["--role=dev", "say {role} $(rm -rf ~); `x` 'q'", "#7"]
        );
    }

    #[test]
    fn unknown_placeholders_and_templated_programs_are_refused() {
        assert!(Template::custom(vec!["agent".into(), "{promt}".into()]).is_err());
        assert!(Template::custom(vec!["{prompt}".into()]).is_err());
        assert!(Template::custom(vec![]).is_err());
        // JSON and other braces are fine.
        assert!(
            Template::custom(vec!["agent".into(), r#"{"a":1}"#.into(), "{ x }".into()]).is_ok()
        );
        // xargs' {} is not orch's: say so rather than pass it through.
        assert!(Template::custom(vec!["agent".into(), "{}".into()]).is_err());
    }

    #[test]
    fn claude_output_is_recognised() {
        assert_eq!(
            Template::preset(Preset::Claude).output,
            OutputKind::ClaudeJson
        );
        let c = Template::custom(vec![
            "/usr/bin/claude".into(),
            "-p".into(),
            "--output-format".into(),
            "json".into(),
        ]);
        assert_eq!(c.unwrap().output, OutputKind::ClaudeJson);
        let c = Template::custom(vec!["claude".into(), "-p".into(), "{prompt}".into()]);
        assert_eq!(c.unwrap().output, OutputKind::Text);
    }

    fn exit(code: i32) -> ExitStatus {
        ExitStatus::from_raw(code << 8)
    }

    #[test]
    fn claude_json_is_judged_by_is_error_and_exit_code() {
        let ok = r#"{"type":"result","subtype":"success","is_error":false,"result":"All fixed."}"#;
        let j = judge(OutputKind::ClaudeJson, exit(0), ok, "", false, false, None);
        assert_eq!(
            j,
            Judged {
                ok: true,
                result: Some("All fixed.".into()),
                error: None,
                claude: None,
            }
        );
        // `subtype` says success but is_error is true: failed.
        let bad =
            r#"{"type":"result","subtype":"success","is_error":true,"result":"Invalid API key"}"#;
        let j = judge(OutputKind::ClaudeJson, exit(0), bad, "", false, false, None);
        assert!(!j.ok && j.error.unwrap().contains("Invalid API key"));
        let j = judge(
            OutputKind::ClaudeJson,
            exit(1),
            ok,
            "boom\n",
            false,
            false,
            None,
        );
        assert_eq!(j.error.as_deref(), Some("exited with status 1: boom"));
        let j = judge(
            OutputKind::ClaudeJson,
            exit(0),
            "not json",
            "",
            false,
            false,
            None,
        );
        assert!(!j.ok);
    }

    #[test]
    fn an_error_result_has_its_errors_as_the_detail_and_keeps_only_what_it_had() {
        let bad = r#"{"type":"result","subtype":"error_max_turns","is_error":true,"session_id":"s1","total_cost_usd":0.01,"usage":{"input_tokens":3},"errors":["Reached maximum number of turns (1)"]}"#;
        let j = judge(OutputKind::ClaudeJson, exit(1), bad, "", false, false, None);
        assert_eq!(
            j.error.as_deref(),
            Some("exited with status 1: Reached maximum number of turns (1)")
        );
        let j = judge(OutputKind::ClaudeJson, exit(0), bad, "", false, false, None);
        assert_eq!(
            j.error.as_deref(),
            Some("the agent reported an error (error_max_turns): Reached maximum number of turns (1)")
        );
        assert_eq!(j.result, None);
        let kept: Vec<&str> = j
            .claude
            .as_ref()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(kept, ["session_id", "total_cost_usd", "usage", "errors"]);
    }

    #[test]
    fn text_output_and_signals() {
        let j = judge(OutputKind::Text, exit(0), "hello\n", "", false, false, None);
        assert_eq!(j.result.as_deref(), Some("hello"));
        let j = judge(
            OutputKind::Text,
            ExitStatus::from_raw(libc::SIGKILL),
            "",
            "",
            false,
            false,
            None,
        );
        assert_eq!(j.error.as_deref(), Some("killed by SIGKILL"));
        let j = judge(
            OutputKind::Text,
            exit(0),
            "",
            "",
            true,
            false,
            Some(Duration::from_millis(1500)),
        );
        assert_eq!(j.error.as_deref(), Some("timed out after 1.5 s"));
    }

    #[test]
    fn tail_keeps_the_end() {
        let mut t = Tail {
            cap: 4,
            ..Default::default()
        };
        for chunk in [&b"abc"[..], b"defgh", b"ij"] {
            t.push(chunk);
        }
        assert_eq!(t.text(), "ghij");
        assert!(t.truncated());
        assert_eq!(t.total, 10);
    }

    #[test]
    fn tail_keeps_the_last_json_line_whole() {
        let mut t = Tail {
            cap: 4,
            json: true,
            ..Default::default()
        };
        for chunk in [
            &b"{\"a\":1}\nnot json\n{\"b\""[..],
            b":2",
            b"}\n\n",
            b"warn\n",
        ] {
            t.push(chunk);
        }
        assert_eq!(t.json_line().as_deref(), Some("{\"b\":2}"));
        // The last line may lack its newline.
        t.push(b"{\"c\":3}");
        assert_eq!(t.json_line().as_deref(), Some("{\"c\":3}"));
        // Nothing when the kept end holds everything.
        let mut short = Tail {
            cap: 100,
            json: true,
            ..Default::default()
        };
        short.push(b"{}\n");
        assert_eq!(short.json_line(), None);
    }

    #[test]
    fn second_claim_is_refused_while_the_runner_lives() {
        let db = Db::open_in_memory().unwrap();
        let o = ClaimOptions::default();
        let c = enqueue_lines(
            &db,
            &["echo a".into(), "echo b".into()],
            "shell",
            &o,
            &|_| Ok(()),
        )
        .unwrap();
        assert_eq!(c.tasks.len(), 2);
        let err = claim(&db, c.batch, &o, &|_| Ok(())).unwrap_err();
        assert!(err.to_string().contains("already being run"), "{err}");
        // A runner whose lease expired: its claim is taken over.
        db.write(|tx| {
            Ok(tx.execute(
                "UPDATE batches SET lease_until = 0 WHERE id = ?1",
                [c.batch],
            )?)
        })
        .unwrap();
        assert_eq!(claim(&db, c.batch, &o, &|_| Ok(())).unwrap().tasks.len(), 2);
    }
}
