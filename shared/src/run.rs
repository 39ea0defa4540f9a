//! Running a batch headless (SPEC §10): agent command templates, the claim on a
//! batch (the run columns of `batches`), one process group per task bounded by
//! `-j`, bounded output capture, timeouts, signals, and what each run records
//! (the task's start, end, exit and output, and one `agent_calls` row per task).

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{params, OptionalExtension, Transaction};
use serde::Serialize;

use crate::batch;
use crate::child::kill_group;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::intervals::{self, Analysis, Interval};
use crate::task::{self, NewTask, Outcome, Status, Task};
use crate::time::{now_ms, rfc3339};

/// How much of a task's stdout is kept (the end of it).
pub const STDOUT_CAP: usize = 4 << 20;
/// How much of a task's stderr is kept (the end of it).
pub const STDERR_CAP: usize = 1 << 20;
/// Time between SIGTERM and SIGKILL when a task is stopped.
pub const GRACE: Duration = Duration::from_secs(2);
/// How long output is awaited after a task's process group is gone.
const DRAIN: Duration = Duration::from_secs(2);
/// The `agent_calls.source` of rows orch-run writes.
pub const SOURCE: &str = "orch-run";

/// The agent CLIs orch-run knows how to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// `claude -p --output-format json` with the prompt on stdin and the role as an appended system prompt
    Claude,
    /// `codex exec -- PROMPT`
    Codex,
    /// `gemini --prompt=PROMPT`
    Gemini,
}

/// How a task's stdout becomes its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputKind {
    /// stdout is the answer.
    Text,
    /// stdout is `claude --output-format json`'s result object.
    ClaudeJson,
}

/// The placeholders a command template may use; each fills part of ONE argument.
pub const PLACEHOLDERS: [&str; 5] = [
    "{prompt}",
    "{prompt_file}",
    "{role}",
    "{id}",
    "{description}",
];

/// How the prompt reaches the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptVia {
    /// Inside an argument (`{prompt}`): at most one argument's worth (128 KiB on Linux).
    Argument,
    /// In a private file whose path an argument holds (`{prompt_file}`).
    File,
    /// On stdin (a template that names neither): any prompt the queue accepts.
    Stdin,
}

/// An agent command: a program and argument templates.
#[derive(Debug, Clone)]
pub struct Template {
    pub program: String,
    pub args: Vec<String>,
    pub output: OutputKind,
    /// Whether a task's `model` and `mode` are passed as `--model` and
    /// `--permission-mode` (the claude preset).
    pub model_flag: bool,
}

impl Template {
    /// A preset's command.
    pub fn preset(p: Preset) -> Template {
        let (program, args, output): (&str, &[&str], OutputKind) = match p {
            // The prompt goes on stdin: one argument is capped at 128 KiB by
            // Linux, a prompt at 1 MiB by orch (and a leading `-` means nothing there).
            Preset::Claude => (
                "claude",
                &[
                    "-p",
                    "--output-format",
                    "json",
                    "--append-system-prompt",
                    "You are working as the {role} agent on orch task {id}: {description}.",
                ],
                OutputKind::ClaudeJson,
            ),
            Preset::Codex => ("codex", &["exec", "--", "{prompt}"], OutputKind::Text),
            // `--prompt=…` keeps the prompt one value even when it starts with `-`.
            Preset::Gemini => ("gemini", &["--prompt={prompt}"], OutputKind::Text),
        };
        Template {
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            output,
            model_flag: p == Preset::Claude,
        }
    }

    /// A command given after `--`. Its output is read as claude's JSON when the
    /// program is `claude` with `--output-format json`, as text otherwise.
    pub fn custom(argv: Vec<String>) -> Result<Template> {
        let Some((program, args)) = argv.split_first() else {
            return Err(Error::invalid("no command after --"));
        };
        if program.is_empty() {
            return Err(Error::invalid(
                "no command after -- (name the agent command, or leave out -- to use --agent)",
            ));
        }
        if program.contains('{') {
            return Err(Error::invalid(format!(
                "the command name {program:?} cannot hold a placeholder: it is looked up before anything starts"
            )));
        }
        for a in args {
            check_placeholders(a)?;
        }
        let is_claude = std::path::Path::new(program)
            .file_name()
            .is_some_and(|n| n == "claude");
        let json = args
            .windows(2)
            .any(|w| w[0] == "--output-format" && w[1] == "json")
            || args.iter().any(|a| a == "--output-format=json");
        Ok(Template {
            program: program.clone(),
            args: args.to_vec(),
            output: if is_claude && json {
                OutputKind::ClaudeJson
            } else {
                OutputKind::Text
            },
            model_flag: false,
        })
    }

    /// The arguments for one task: every template argument stays exactly one
    /// argument. `prompt_file` fills `{prompt_file}`.
    pub fn argv(&self, t: &Task, prompt_file: Option<&std::path::Path>) -> Vec<String> {
        let file = prompt_file
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut argv: Vec<String> = self.args.iter().map(|a| substitute(a, t, &file)).collect();
        // The preset claude honours the task's model and permission mode.
        if self.model_flag {
            if let Some(m) = &t.agent.model {
                argv.extend(["--model".to_string(), m.clone()]);
            }
            // `default` is what claude does without the flag (its CLI calls it `manual`).
            if let Some(m) = t.agent.mode.as_deref().filter(|m| *m != "default") {
                argv.extend(["--permission-mode".to_string(), m.to_string()]);
            }
        }
        argv
    }

    /// How this command takes the prompt: `{prompt}` in an argument, else
    /// `{prompt_file}`, else stdin.
    pub fn prompt_via(&self) -> PromptVia {
        if self.args.iter().any(|a| a.contains("{prompt}")) {
            PromptVia::Argument
        } else if self.args.iter().any(|a| a.contains("{prompt_file}")) {
            PromptVia::File
        } else {
            PromptVia::Stdin
        }
    }

    /// Refuses, before anything is claimed, a task whose command line the
    /// kernel would refuse: one argument over `MAX_ARG_STRLEN` (32 pages, 128
    /// KiB with 4 KiB pages) or all of them with the environment over `ARG_MAX`.
    pub fn check_fits(&self, tasks: &[Task]) -> Result<()> {
        // SAFETY: sysconf only reads a system limit.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let max_arg = if page > 0 {
            page as usize * 32
        } else {
            128 << 10
        };
        // SAFETY: as above.
        let arg_max = unsafe { libc::sysconf(libc::_SC_ARG_MAX) };
        let arg_max = if arg_max > 0 {
            arg_max as usize
        } else {
            2 << 20
        };
        // The environment orch-run passes on, its own variables (with room for
        // a long ORCH_DB path), and a pointer for each string.
        let env: usize = std::env::vars_os()
            .map(|(k, v)| k.len() + v.len() + 2 + 8)
            .sum::<usize>()
            + 8 * 1024;
        // A placeholder stands in for the prompt file's path (a temp path: short).
        let file = std::path::Path::new("/tmp/orch-prompt-XXXXXXXXXXXXXXXXXXXXXXXXXXXX");
        for t in tasks {
            let argv = self.argv(t, Some(file));
            let mut total = env + self.program.len() + 1 + 8;
            for a in &argv {
                if a.len() + 1 > max_arg {
                    let what = if a.contains(t.prompt.as_str()) {
                        format!("its prompt is {} bytes", t.prompt.len())
                    } else {
                        format!("an argument is {} bytes", a.len())
                    };
                    return Err(Error::invalid(format!(
                        "task {}: {what}, more than one argument may hold ({} bytes); \
                         pass it with {{prompt_file}}, or leave {{prompt}} out and the agent reads it on stdin",
                        t.id,
                        max_arg - 1
                    )));
                }
                total += a.len() + 1 + 8;
            }
            if total > arg_max {
                return Err(Error::invalid(format!(
                    "task {}: its command line and environment come to {total} bytes, more than the system takes ({arg_max}); \
                     pass the prompt with {{prompt_file}} or on stdin",
                    t.id
                )));
            }
        }
        Ok(())
    }

    /// The command as a person would read it (placeholders left in).
    pub fn display(&self) -> String {
        let mut s = self.program.clone();
        for a in &self.args {
            s.push(' ');
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"\\$`".contains(c)) {
                s.push_str(&crate::emit::sh_quote(a));
            } else {
                s.push_str(a);
            }
        }
        s
    }
}

/// Refuses `{name}` placeholders orch does not know (a typo would otherwise pass through).
fn check_placeholders(arg: &str) -> Result<()> {
    let mut rest = arg;
    while let Some(i) = rest.find('{') {
        let after = &rest[i + 1..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(after.len());
        if after[name_len..].starts_with('}') {
            let ph = &rest[i..i + name_len + 2];
            if !PLACEHOLDERS.contains(&ph) {
                return Err(Error::invalid(format!(
                    "unknown placeholder {ph} in {arg:?}: use {}",
                    PLACEHOLDERS.join(", ")
                )));
            }
        }
        rest = after;
    }
    Ok(())
}

/// Replaces the placeholders in one argument, in one pass (substituted text is never re-read).
fn substitute(arg: &str, t: &Task, prompt_file: &str) -> String {
    let id = t.id.to_string();
    let values: [(&str, &str); 5] = [
        ("{prompt}", &t.prompt),
        ("{prompt_file}", prompt_file),
        ("{role}", &t.role),
        ("{id}", &id),
        ("{description}", &t.description),
    ];
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    'scan: while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let at = &rest[i..];
        for (name, value) in values {
            if let Some(tail) = at.strip_prefix(name) {
                out.push_str(value);
                rest = tail;
                continue 'scan;
            }
        }
        out.push('{');
        rest = &at[1..];
    }
    out.push_str(rest);
    out
}

/// Finds the agent's program on PATH (or checks the path given) before anything starts.
pub fn locate(program: &str) -> Result<PathBuf> {
    which::which(program).map_err(|_| {
        let hint = match program {
            "claude" => " (install Claude Code, or name another agent with --agent or after --)",
            "codex" | "gemini" => " (install it, or name another agent with --agent or after --)",
            _ => "",
        };
        if program.contains('/') {
            Error::invalid(format!(
                "agent command {program} is not an executable file{hint}"
            ))
        } else {
            Error::invalid(format!("agent command {program:?} not found on PATH{hint}"))
        }
    })
}

/// The `agent_calls.session_id` of a batch's run, so `orch-verify session` can judge it.
pub fn session_id(batch: i64) -> String {
    format!("orch-run:{batch}")
}

/// A batch claimed for running, with the tasks this run will start.
#[derive(Debug)]
pub struct Claim {
    pub batch: i64,
    pub tasks: Vec<Task>,
    /// Tasks a dead earlier runner left `running`, now marked failed.
    pub recovered: Vec<i64>,
    /// The pid of the earlier orch-run of this batch that died, when this claim took over from it.
    pub dead_runner: Option<i64>,
}

fn process_alive(pid: i64) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Claims batch `id` for this process in one IMMEDIATE transaction. Refused when
/// another live orch-run holds it. A claim whose runner died is taken over: the
/// tasks it left running are marked failed and the waiting ones run now.
/// `check` sees the tasks about to be claimed; its error leaves everything as it was.
pub fn claim(db: &Db, id: i64, check: &dyn Fn(&[Task]) -> Result<()>) -> Result<Claim> {
    db.write(|tx| claim_in(tx, id, std::process::id(), check))
}

/// [`claim`] inside a transaction the caller holds.
pub fn claim_in(
    tx: &Transaction,
    id: i64,
    pid: u32,
    check: &dyn Fn(&[Task]) -> Result<()>,
) -> Result<Claim> {
    let (claimed_at, runner): (Option<i64>, Option<i64>) = tx
        .query_row(
            "SELECT run_claimed_at, runner_pid FROM batches WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .ok_or(Error::NotFound { what: "batch", id })?;
    let mut recovered = Vec::new();
    let mut dead_runner = None;
    if let Some(at) = claimed_at {
        let p = runner.unwrap_or(0);
        if process_alive(p) {
            return Err(Error::invalid(format!(
                "batch {id} is already being run by orch-run (pid {p}, since {}); not running its tasks twice",
                rfc3339(at)
            )));
        }
        dead_runner = Some(p);
        let now = now_ms();
        let mut stmt = tx.prepare(
            "UPDATE tasks SET status = 'failed', finished_at = ?2,
                 error = 'orch-run (pid ' || ?3 || ') stopped before this task finished'
             WHERE batch_id = ?1 AND status = 'running' RETURNING id",
        )?;
        recovered = stmt
            .query_map(params![id, now, p], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        tx.execute(
            "UPDATE agent_calls SET finished_at = ?2, status = 'failed'
             WHERE session_id = ?1 AND finished_at IS NULL",
            params![session_id(id), now],
        )?;
    }
    let b = batch::get_in(tx, id)?;
    let tasks: Vec<Task> = b
        .tasks
        .into_iter()
        .filter(|t| t.status == Status::Batched)
        .collect();
    // A runner that died with tasks running: what it left is recorded even
    // when nothing is left to run.
    if tasks.is_empty() && recovered.is_empty() {
        return Err(Error::invalid(match claimed_at {
            Some(at) => format!("batch {id} was already run (by orch-run, from {})", rfc3339(at)),
            None => format!(
                "batch {id} has no task waiting to run (its tasks already started, finished or were cancelled)"
            ),
        }));
    }
    check(&tasks)?;
    tx.execute(
        "UPDATE batches SET run_claimed_at = ?2, runner_pid = ?3 WHERE id = ?1",
        params![id, now_ms(), pid],
    )?;
    Ok(Claim {
        batch: id,
        tasks,
        recovered,
        dead_runner,
    })
}

/// Queues one task per line (all or nothing), puts exactly those tasks in a new
/// batch and claims it, in one IMMEDIATE transaction (undone when `check` refuses).
pub fn enqueue_lines(
    db: &Db,
    lines: &[String],
    role: &str,
    check: &dyn Fn(&[Task]) -> Result<()>,
) -> Result<Claim> {
    task::validate_role(role)?;
    let mut tasks = Vec::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate() {
        let t = NewTask {
            role: Some(role.to_string()),
            prompt: l.clone(),
            ..Default::default()
        }
        .validate(None)
        .map_err(|e| Error::invalid(format!("line {}: {e}", i + 1)))?;
        tasks.push(t);
    }
    if tasks.is_empty() {
        return Err(Error::invalid("no lines on stdin: each line is one task"));
    }
    db.write(|tx| {
        let ids = task::add_in(tx, tasks, |i| format!("line {}", i + 1))?;
        let b = batch::create_of_in(tx, &ids)?;
        claim_in(tx, b.id, std::process::id(), check)
    })
}

/// Stops what a dead orch-run of `batch` on the database `db_path` (as it was
/// given to agents in `ORCH_DB`) left running: every process whose environment
/// says it was started for that batch of that file (agents and what they
/// started, even outside their process group). Returns their pids.
pub fn stop_leftovers(batch: i64, db_path: &str) -> Vec<i32> {
    let batch = batch.to_string();
    let pids = crate::child::with_environment(&[("ORCH_BATCH_ID", &batch), ("ORCH_DB", db_path)]);
    for &pid in &pids {
        // SAFETY: kill only sends a signal; the pid was just seen carrying this batch's environment.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    pids
}

fn record_start(db: &Db, batch: i64, t: &Task, at: i64) -> Result<()> {
    db.write(|tx| {
        task::start_in(tx, t.id, Some(at))?;
        tx.execute(
            "INSERT INTO agent_calls (session_id, call_id, source, task_id, agent_type, description, started_at, status)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'running')
             ON CONFLICT (session_id, call_id) DO UPDATE
                 SET started_at = excluded.started_at, finished_at = NULL, status = 'running'",
            params![session_id(batch), t.id.to_string(), SOURCE, t.id, t.role, t.description, at],
        )?;
        Ok(())
    })
}

fn record_finish(
    db: &Db,
    batch: i64,
    id: i64,
    o: Outcome,
    git: Option<&crate::worktree::GitRecord>,
) -> Result<()> {
    let at = o.at.unwrap_or_else(now_ms);
    let status = if o.ok { "done" } else { "failed" };
    db.write(|tx| {
        task::finish_in(tx, id, o)?;
        if let Some(g) = git {
            crate::task::record_git_in(tx, id, g)?;
        }
        tx.execute(
            "UPDATE agent_calls SET finished_at = ?3, status = ?4 WHERE session_id = ?1 AND call_id = ?2",
            params![session_id(batch), id.to_string(), at, status],
        )?;
        Ok(())
    })
}

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
}

/// What the runner reports while it works.
pub enum Event<'a> {
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
    /// Nothing happened; time passed (for redrawing progress).
    Tick,
}

/// The end of a run.
#[derive(Debug)]
pub struct Summary {
    /// One record per task that started, in batch order.
    pub records: Vec<Record>,
    /// The signal that stopped the run, if one did.
    pub interrupted: Option<i32>,
    /// Tasks that never started because of the interruption: back in the queue.
    pub requeued: Vec<i64>,
    pub analysis: Analysis,
}

impl Summary {
    pub fn failed(&self) -> usize {
        self.records
            .iter()
            .filter(|r| r.status != Status::Done)
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
    /// A git worktree per task (`--worktree`), made as each task starts.
    pub worktree: Option<crate::worktree::Setup>,
}

enum Msg {
    Signal(i32),
    OutputClosed,
}

/// The end of a stream: at most `cap` bytes, and how many there were in all.
#[derive(Debug, Default)]
struct Tail {
    buf: Vec<u8>,
    total: u64,
    cap: usize,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        self.buf.extend_from_slice(data);
        if self.buf.len() > 2 * self.cap {
            let cut = self.buf.len() - self.cap;
            self.buf.drain(..cut);
        }
    }

    fn truncated(&self) -> bool {
        self.total > self.cap as u64
    }

    fn text(&self) -> String {
        let start = self.buf.len().saturating_sub(self.cap);
        String::from_utf8_lossy(&self.buf[start..]).into_owned()
    }
}

fn spawn_reader(
    mut r: impl Read + Send + 'static,
    cap: usize,
    tx: Sender<Msg>,
) -> JoinHandle<Tail> {
    std::thread::spawn(move || {
        let mut tail = Tail {
            cap,
            ..Default::default()
        };
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match r.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => tail.push(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let _ = tx.send(Msg::OutputClosed);
        tail
    })
}

/// True once `pid` has exited; the zombie is left in place (WNOWAIT), so its
/// process group id cannot be reused before the group is killed and it is reaped.
fn has_exited(pid: i32) -> bool {
    // SAFETY: waitid writes only into `info`, which is zeroed first as WNOHANG requires.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        if r != 0 {
            // ECHILD (already reaped elsewhere) counts as exited; EINTR means look again later.
            return std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR);
        }
        info.si_pid() != 0
    }
}

/// What the agent reads the prompt from: stdin, and the file `{prompt_file}`
/// names (removed when the task ends). Both are 0600 temporary files.
fn prompt_input(
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
        on: &mut dyn FnMut(Event),
    ) -> Result<Summary> {
        let tasks = &claim.tasks;
        let jobs = opts.jobs.max(1);
        let mut slots: Vec<Slot> = Vec::new();
        let mut records: Vec<Option<Record>> = vec![None; tasks.len()];
        let mut next = 0usize;
        let mut stopping: Option<i32> = None;
        let tick = Duration::from_millis(100);
        loop {
            while stopping.is_none() && slots.len() < jobs && next < tasks.len() {
                let idx = next;
                next += 1;
                match self.spawn(db, claim.batch, &tasks[idx], idx, program, template, opts)? {
                    Ok(slot) => {
                        on(Event::Started {
                            task: &tasks[idx],
                            pid: slot.pgid as u32,
                        });
                        slots.push(slot);
                    }
                    Err(rec) => {
                        on(Event::Finished {
                            record: &rec,
                            spawned: false,
                        });
                        records[idx] = Some(rec);
                    }
                }
            }
            if slots.is_empty() && (next >= tasks.len() || stopping.is_some()) {
                break;
            }
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
            match self.rx.recv_timeout(wait) {
                Ok(Msg::Signal(s)) if s != libc::SIGCHLD => {
                    let now = Instant::now();
                    if stopping.is_some() {
                        for slot in &mut slots {
                            slot.kill();
                        }
                    } else {
                        stopping = Some(s);
                        on(Event::Stopping { signal: s });
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
                }
                let ready = match s.exit {
                    Some((_, _, at)) => s.drained() || now >= at + DRAIN,
                    None => false,
                };
                if ready {
                    let slot = slots.swap_remove(i);
                    let idx = slot.idx;
                    let rec = self.finish(db, claim.batch, &tasks[idx], slot, template, opts)?;
                    on(Event::Finished {
                        record: &rec,
                        spawned: true,
                    });
                    records[idx] = Some(rec);
                    continue;
                }
                i += 1;
            }
            on(Event::Tick);
        }
        let requeued = if stopping.is_some() && next < tasks.len() {
            let ids: Vec<i64> = tasks[next..].iter().map(|t| t.id).collect();
            db.write(|tx| batch::requeue_in(tx, &ids))?
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
        Ok(Summary {
            records,
            interrupted: stopping,
            requeued,
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
        t: &Task,
        idx: usize,
        program: &std::path::Path,
        template: &Template,
        opts: &Options,
    ) -> Result<std::result::Result<Slot, Record>> {
        let start_ms = now_ms();
        record_start(db, batch, t, start_ms)?;
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
        // Its own process group, which dies with orch-run even when orch-run is SIGKILLed.
        crate::child::contain(&mut cmd);
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        if let Some(dir) = git.as_ref().and_then(|g| g.worktree.as_ref()) {
            cmd.current_dir(dir);
        }
        match cmd.spawn() {
            Ok(mut child) => {
                let out = child
                    .stdout
                    .take()
                    .map(|r| spawn_reader(r, STDOUT_CAP, self.tx.clone()));
                let err = child
                    .stderr
                    .take()
                    .map(|r| spawn_reader(r, STDERR_CAP, self.tx.clone()));
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
            None,
        )?;
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
        let stdout = out.text();
        let stderr = err.text();
        let mut notes: Vec<String> = Vec::new();
        if out.truncated() {
            notes.push(format!(
                "stdout was {} bytes; kept the last {}",
                out.total, STDOUT_CAP
            ));
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
        let mut log = String::new();
        for n in &notes {
            log.push_str("orch-run: ");
            log.push_str(n);
            log.push('\n');
        }
        log.push_str(&stderr);
        let mut j = j;
        // A successful task's leftovers are committed on its branch.
        if let (true, Some(setup), Some(g)) = (j.ok, &opts.worktree, slot.git.as_mut()) {
            if let Err(e) = setup.finish(t, g) {
                j.ok = false;
                j.error = Some(format!("cannot commit what it changed: {e}"));
            }
        }
        record_finish(
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
            slot.git.as_ref(),
        )?;
        Ok(Record {
            id: t.id,
            batch,
            role: t.role.clone(),
            description: t.description.clone(),
            status: if j.ok { Status::Done } else { Status::Failed },
            exit_code: status.code(),
            signal: status.signal(),
            timed_out: slot.timed_out,
            interrupted: slot.interrupted,
            started_at: rfc3339(slot.start_ms),
            finished_at: rfc3339(end_ms),
            duration_ms: end_ms - slot.start_ms,
            result: j.result,
            error: j.error,
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

/// A task's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    pub ok: bool,
    pub result: Option<String>,
    pub error: Option<String>,
    /// What claude reported about the run (its [`CLAUDE_FIELDS`]), when it printed a result.
    pub claude: Option<JsonObject>,
}

/// The last non-empty line of `s`, clipped, for error messages.
fn last_line(s: &str) -> Option<String> {
    s.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| crate::text::clip(l, 300))
}

/// The name of a signal, for messages.
pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}

/// The fields of claude's result object that a task keeps (see [`Task::claude`]).
pub const CLAUDE_FIELDS: [&str; 5] = [
    "session_id",
    "total_cost_usd",
    "usage",
    "modelUsage",
    "errors",
];

type JsonObject = serde_json::Map<String, serde_json::Value>;

/// claude's `--output-format json` result object: `result` on success; on an
/// error `is_error`, a `subtype` such as `error_max_turns` and `errors[]`, often no `result`.
#[derive(Debug, Default)]
struct ClaudeResult {
    is_error: bool,
    subtype: Option<String>,
    result: Option<String>,
    errors: Vec<String>,
    /// The [`CLAUDE_FIELDS`] it had, as written (nothing filled in).
    kept: JsonObject,
}

fn parse_claude(stdout: &str) -> Option<ClaudeResult> {
    let object = |s: &str| serde_json::from_str::<JsonObject>(s.trim()).ok();
    let o = object(stdout)
        .or_else(|| {
            stdout
                .lines()
                .rev()
                .filter(|l| !l.trim().is_empty())
                .find_map(object)
        })
        .filter(|o| {
            o.get("type").and_then(|t| t.as_str()) == Some("result")
                || o.get("is_error").is_some_and(|e| e.is_boolean())
        })?;
    let text = |k: &str| o.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let kept: JsonObject = CLAUDE_FIELDS
        .iter()
        .filter_map(|&k| {
            o.get(k)
                .filter(|v| !v.is_null())
                .map(|v| (k.to_string(), v.clone()))
        })
        .collect();
    Some(ClaudeResult {
        is_error: o.get("is_error").and_then(|v| v.as_bool()).unwrap_or(false),
        subtype: text("subtype"),
        result: text("result"),
        errors: o
            .get("errors")
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .map(|e| match e.as_str() {
                        Some(s) => s.to_string(),
                        None => e.to_string(),
                    })
                    .filter(|s| !s.trim().is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        kept,
    })
}

/// Decides done or failed from how the agent ended and what it printed.
/// Claude's JSON is judged by `is_error` and the exit code, never by `subtype`.
pub fn judge(
    kind: OutputKind,
    status: ExitStatus,
    stdout: &str,
    stderr: &str,
    timed_out: bool,
    interrupted: bool,
    timeout: Option<Duration>,
) -> Judged {
    let text = stdout.strip_suffix('\n').unwrap_or(stdout);
    let text = text.strip_suffix('\r').unwrap_or(text);
    let (answer, claude, json_missing) = match kind {
        OutputKind::Text => (
            Some(text.to_string()).filter(|s| !s.is_empty()),
            None,
            false,
        ),
        OutputKind::ClaudeJson => match parse_claude(stdout) {
            Some(mut r) => (r.result.take(), Some(r), false),
            None => (Some(text.to_string()).filter(|s| !s.is_empty()), None, true),
        },
    };
    let reported_error = claude.as_ref().is_some_and(|c| c.is_error);
    // An error result's detail is in `errors[]` (it often has no `result`).
    let errors = claude
        .as_ref()
        .filter(|c| !c.errors.is_empty())
        .map(|c| crate::text::clip(&c.errors.join("; "), 300));
    let with_detail = |what: String| match last_line(stderr).or_else(|| errors.clone()) {
        Some(l) => format!("{what}: {l}"),
        None => what,
    };
    let error = if interrupted {
        Some("interrupted".to_string())
    } else if timed_out {
        let secs = timeout.map(|d| d.as_secs_f64()).unwrap_or(0.0);
        Some(format!("timed out after {secs} s"))
    } else if let Some(sig) = status.signal() {
        Some(with_detail(format!("killed by {}", signal_name(sig))))
    } else if status.code() != Some(0) {
        Some(with_detail(format!(
            "exited with status {}",
            status.code().unwrap_or(-1)
        )))
    } else if reported_error {
        let subtype = claude
            .as_ref()
            .and_then(|c| c.subtype.as_deref())
            .filter(|s| *s != "success")
            .map(|s| format!(" ({s})"))
            .unwrap_or_default();
        let detail = errors
            .clone()
            .or_else(|| answer.as_deref().map(|a| crate::text::clip(a.trim(), 300)))
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "no detail given".into());
        Some(format!("the agent reported an error{subtype}: {detail}"))
    } else if json_missing {
        Some(with_detail(
            "no JSON result on stdout (expected `--output-format json` output)".to_string(),
        ))
    } else {
        None
    };
    Judged {
        ok: error.is_none(),
        result: answer,
        error,
        claude: claude.map(|c| c.kept).filter(|k| !k.is_empty()),
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
    fn second_claim_is_refused_while_the_runner_lives() {
        let db = Db::open_in_memory().unwrap();
        let c = enqueue_lines(&db, &["echo a".into(), "echo b".into()], "shell", &|_| {
            Ok(())
        })
        .unwrap();
        assert_eq!(c.tasks.len(), 2);
        let err = claim(&db, c.batch, &|_| Ok(())).unwrap_err();
        assert!(err.to_string().contains("already being run"), "{err}");
        // A runner that died: its claim is taken over.
        db.conn
            .execute("UPDATE batches SET runner_pid = 0 WHERE id = ?1", [c.batch])
            .unwrap();
        assert_eq!(claim(&db, c.batch, &|_| Ok(())).unwrap().tasks.len(), 2);
    }
}
