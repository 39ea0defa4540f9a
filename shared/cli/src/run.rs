//! `orch-run`: run a batch headless through an agent CLI, one process per task,
//! at most `-j` at a time, with live progress on stderr and records on stdout.

use std::io::{self, BufRead, IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;

use crate::{id_or_stdin, positive_span, DbArg, Out, PresetArg, Tool};
use orch_core::error::Exit;
use orch_core::run::{self, Options, Preset, Record, RunEvent, RunSummary, Runner, Template};
use orch_core::task::{self, Status};

const EXAMPLES: &str = "\
Examples:
  orch-batch create | orch-run                   # every task through `claude -p`, all at once
  orch-run 3 -j 4 --timeout 10m --json           # at most 4 at a time, 10 minutes each
  orch-run 3 --agent codex
  orch-run 3 -- my-agent --as {role} --task {id} {prompt}
  orch-run 3 -- my-agent --prompt-file {prompt_file}
  printf '%s\\n' 'make lint' 'make test' | orch-run --stdin-lines -- sh -c {prompt}
  orch-verify exec -- orch-run --stdin-lines -- sh -c {prompt}

In a command after --, {prompt}, {role}, {id} and {description} are replaced
inside the argument that holds them; each argument stays exactly one argument
and nothing goes through a shell. {prompt_file} is a private file holding the
prompt; a command with neither {prompt} nor {prompt_file} reads it on stdin
(as `claude -p` does). Exit: 0 all done, 1 some task failed,
2 nothing ran (bad usage, unknown batch, agent not found, batch already
running), 130 interrupted (running tasks failed as \"interrupted\", tasks not
yet started back in the queue).";

/// Run a batch headless: one agent process per task, in parallel, results recorded.
#[derive(Debug, Parser)]
#[command(name = "orch-run", version, after_help = EXAMPLES, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub sub: Option<Sub>,
    #[command(flatten)]
    pub db: DbArg,
    /// The batch to run [default: its id read from stdin].
    #[arg(conflicts_with = "stdin_lines")]
    pub batch: Option<i64>,
    /// Run at most N tasks at a time [default: all of them].
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub jobs: Option<usize>,
    /// The agent CLI to run each task with [default: claude].
    #[arg(long, value_enum, conflicts_with = "command")]
    pub agent: Option<PresetArg>,
    /// Stop a task that runs longer than this (seconds, or 90s, 10m, 1h) and mark it failed.
    #[arg(long, value_name = "SECS", value_parser = positive_span)]
    pub timeout: Option<Duration>,
    /// Bytes kept of each task's log (`orch-queue logs ID`); the oldest lines go first.
    #[arg(long, value_name = "BYTES", env = "ORCH_LOG_CAP", default_value_t = orch_core::tasklog::DEFAULT_CAP)]
    pub log_cap: u64,
    /// Journal a task.stalled event for an agent silent for longer than this (10m, 90s).
    #[arg(long, value_name = "DURATION", env = "ORCH_STALLED_AFTER", default_value = "10m", value_parser = orch_core::time::parse_span)]
    pub stalled_after: Duration,
    /// Print one JSON record per task on stdout as each finishes.
    #[arg(long)]
    pub json: bool,
    /// Make each line of stdin a task (of role --role), batch exactly those, and run them.
    #[arg(long)]
    pub stdin_lines: bool,
    /// The role of --stdin-lines tasks.
    #[arg(long, requires = "stdin_lines", value_name = "ROLE")]
    pub role: Option<String>,
    /// Run each task in its own git worktree (under .orch/worktrees/) on branch
    /// orch/task-ID; what it leaves uncommitted is committed there when it succeeds.
    #[arg(long)]
    pub worktree: bool,
    /// The commit the worktrees start from [default: HEAD].
    #[arg(long, value_name = "REV", requires = "worktree")]
    pub base: Option<String>,
    /// The author of the commits orch makes in worktrees, as 'Name <email>'
    /// [default: git's own].
    #[arg(long, value_name = "NAME <EMAIL>", requires = "worktree")]
    pub author: Option<String>,
    /// Retry a task this many times after a retryable failure (rate limited,
    /// overloaded, usage limit, lost runner; not a timeout), with exponential
    /// backoff and full jitter.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub retries: u32,
    /// The first retry's backoff ceiling; it doubles per retry (up to 5 minutes).
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = positive_span)]
    pub backoff: Duration,
    /// While the database is paused (a usage limit, `orch-queue pause`), exit 1
    /// instead of waiting for the pause to end.
    #[arg(long)]
    pub no_wait: bool,
    /// Start nothing new once this run's recorded spend reaches this many US
    /// dollars; running agents finish; exit 1 with the spend.
    #[arg(long, value_name = "USD", value_parser = parse_budget)]
    pub budget_usd: Option<f64>,
    /// The lease on the batch, renewed while this run lives; another runner
    /// takes the batch over once it lapses (60s, 2m, …).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = positive_span)]
    pub lease: Duration,
    /// The agent command, a template: {prompt} {prompt_file} {role} {id} {description}.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

fn parse_budget(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(format!("'{s}' is not an amount of US dollars (like 2.50)")),
    }
}

/// Reads stdin's lines (blank ones skipped), for --stdin-lines.
fn read_lines() -> anyhow::Result<Vec<String>> {
    let stdin = io::stdin();
    if stdin.is_terminal() {
        bail!("--stdin-lines reads tasks from stdin, but stdin is a terminal: pipe the lines in");
    }
    let mut lines = Vec::new();
    for (i, l) in stdin.lock().lines().enumerate() {
        let l = l.with_context(|| format!("reading line {} of stdin", i + 1))?;
        let l = l.trim_end_matches('\r');
        if !l.trim().is_empty() {
            lines.push(l.to_string());
        }
    }
    Ok(lines)
}

/// Jobs beyond one machine (docs/distributed.md).
#[derive(Debug, clap::Subcommand)]
pub enum Sub {
    /// Run one task of a bundle, without a database; print its result record.
    #[command(
        after_help = "Example:\n  orch-run job --bundle bundle.jsonl --index 0 > record-0.jsonl"
    )]
    Job(crate::jobs::JobArgs),
    /// Record result records from jobs, all or nothing.
    #[command(after_help = "Example:\n  orch-run ingest orch-records/")]
    Ingest {
        /// Record files, or directories holding them.
        #[arg(required = true, value_name = "FILE|DIR")]
        paths: Vec<std::path::PathBuf>,
    },
}

impl Tool for Cli {
    const NAME: &'static str = "orch-run";

    /// A `--` with nothing after it reaches the template check as an empty
    /// command (clap cannot tell it from no `--`, which means the claude preset).
    fn preprocess(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
        if args.iter().position(|a| a == "--") == Some(args.len().wrapping_sub(1)) {
            args.push(std::ffi::OsString::new());
        }
        args
    }

    fn run(self) -> anyhow::Result<Exit> {
        match self.sub {
            Some(Sub::Job(a)) => return crate::jobs::run_job(a),
            Some(Sub::Ingest { paths }) => return crate::jobs::ingest(&self.db, &paths),
            None => {}
        }
        // Everything that can be refused is refused before the database is touched.
        if self.jobs == Some(0) {
            bail!("-j must be at least 1");
        }
        let template = if self.command.is_empty() {
            Template::preset(self.agent.map_or(Preset::Claude, Preset::from))
        } else {
            Template::custom(self.command)?
        };
        let program = run::locate(&template.program)?;
        let role = self.role.unwrap_or_else(|| "shell".to_string());
        if self.stdin_lines {
            task::validate_role(&role)?;
        }
        let lines = if self.stdin_lines {
            Some(read_lines()?)
        } else {
            None
        };
        let batch = match lines {
            Some(_) => None,
            None => Some(id_or_stdin(self.batch, "batch")?),
        };

        if self.json {
            crate::check_stdout()?;
        }
        let mut runner = Runner::new()?;
        let loc = orch_core::db::resolve(self.db.path())?;
        // New tasks from stdin may make the database; a batch must already be in one.
        let db = match lines {
            Some(_) => orch_core::db::Db::open(&loc.path)?,
            None => orch_core::db::Db::open_existing(&loc)?,
        };
        // Git is checked before anything is claimed.
        let worktree = if self.worktree {
            let waiting = match batch {
                Some(id) => orch_core::batch::get(&db, id)?
                    .tasks
                    .into_iter()
                    .filter(|t| t.status == Status::Batched)
                    .collect(),
                None => Vec::new(),
            };
            let here = std::env::current_dir().context("cannot read the current directory")?;
            Some(orch_core::worktree::Setup::prepare(
                &here,
                self.base.as_deref().unwrap_or("HEAD"),
                self.author.clone(),
                &waiting,
            )?)
        } else {
            None
        };
        let claim_opts = run::ClaimOptions {
            lease: self.lease,
            retries: self.retries,
        };
        let claim = match (&lines, batch) {
            (Some(lines), _) => {
                run::enqueue_lines(&db, lines, &role, &claim_opts, &|t| template.check_fits(t))?
            }
            (None, Some(id)) => run::claim(&db, id, &claim_opts, &|t| template.check_fits(t))?,
            (None, None) => bail!("no batch given"),
        };
        let db_path = std::path::absolute(&loc.path).unwrap_or(loc.path.clone());
        let db_env = db_path.to_string_lossy().into_owned();
        if let Some(pid) = claim.dead_runner {
            report_takeover(&claim, pid, &run::stop_leftovers(claim.batch, &db_env));
        }
        if let (Some(id), true) = (batch, lines.is_none()) {
            if let Some(at) = orch_core::batch::get(&db, id)
                .ok()
                .and_then(|b| b.emitted_at)
            {
                eprintln!(
                    "orch-run: note: batch {id} was emitted at {at}; if Claude Code launched it, its tasks run twice"
                );
            }
        }
        let n = claim.tasks.len();
        if n == 0 {
            eprintln!("orch-run: batch {}: no task left to run", claim.batch);
            return Ok(Exit::No);
        }
        let jobs = self.jobs.unwrap_or(n).min(n);
        let opts = Options {
            jobs,
            timeout: self.timeout,
            env: vec![("ORCH_DB".into(), db_env)],
            log_cap: self.log_cap,
            stalled_after: self.stalled_after,
            worktree,
            retries: self.retries,
            backoff: self.backoff,
            no_wait: self.no_wait,
            budget_usd: self.budget_usd,
            lease: self.lease,
        };
        let tty = io::stderr().is_terminal();
        eprintln!(
            "orch-run: batch {}: {n} task{} through {}, {} at a time",
            claim.batch,
            if n == 1 { "" } else { "s" },
            orch_core::text::escape(&template.display(), false),
            jobs
        );
        let mut progress = RunProgress::new(n, tty);
        let mut out = Out::new();
        let mut write_err: Option<io::Error> = None;
        let json = self.json;
        let summary = runner.run(&db, &claim, &program, &template, &opts, &mut |e| {
            progress.event(&e);
            if let (RunEvent::Finished { record, .. }, true, None) = (&e, json, &write_err) {
                if let Err(err) = out.json(record).and_then(|_| out.flush()) {
                    write_err = Some(err);
                }
            }
        })?;
        progress.clear();
        print_summary(claim.batch, &summary);
        if let Some(e) = write_err {
            if e.kind() != io::ErrorKind::BrokenPipe {
                // The run is recorded: exit 3, never 2 ("nothing was written").
                return Err(crate::NotPrinted {
                    what: format!("the run of batch {} (its tasks' records)", claim.batch),
                    source: e,
                }
                .into());
            }
        }
        Ok(if summary.interrupted.is_some() {
            Exit::Interrupted
        } else if summary.failed() > 0 || summary.halted.is_some() {
            Exit::No
        } else {
            Exit::Ok
        })
    }
}

/// What this run found of an earlier orch-run of the batch that died.
fn report_takeover(claim: &run::Claim, pid: i64, leftovers: &[i32]) {
    let mut l = format!(
        "orch-run: note: an earlier orch-run of batch {} (pid {pid}) died",
        claim.batch
    );
    match claim.retried.len() {
        0 => {}
        1 => l.push_str(&format!(
            "; task {} was running and runs again (its attempt is recorded as lost)",
            claim.retried[0]
        )),
        _ => l.push_str(&format!(
            "; tasks {} were running and run again (their attempts are recorded as lost)",
            join_ids(&claim.retried)
        )),
    }
    match claim.recovered.len() {
        0 if claim.retried.is_empty() => l.push_str(" before any of its tasks was running"),
        0 => {}
        1 => l.push_str(&format!(
            "; task {} was running and is marked failed",
            claim.recovered[0]
        )),
        _ => l.push_str(&format!(
            "; tasks {} were running and are marked failed",
            join_ids(&claim.recovered)
        )),
    }
    let pids: Vec<i64> = leftovers.iter().map(|&p| i64::from(p)).collect();
    match pids.len() {
        0 => l.push_str("; none of its processes is still running"),
        n => l.push_str(&format!(
            "; {n} of its processes {} still running and {} now stopped (pid{} {})",
            if n == 1 { "was" } else { "were" },
            if n == 1 { "is" } else { "are" },
            if n == 1 { "" } else { "s" },
            join_ids(&pids)
        )),
    }
    eprintln!("{l}");
}

fn join_ids(ids: &[i64]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_summary(batch: i64, s: &RunSummary) {
    let done = s
        .records
        .iter()
        .filter(|r| r.status == Status::Done)
        .count();
    let failed = s.failed();
    let a = &s.analysis;
    let mut line = format!("orch-run: batch {batch}: {done} done, {failed} failed");
    if !s.records.is_empty() {
        line.push_str(&format!(
            " in {} (serial {}, speedup {:.1}x, peak {} at once)",
            orch_core::time::secs(a.wall_ms),
            orch_core::time::secs(a.serial_ms),
            a.speedup,
            a.peak
        ));
    }
    eprintln!("{line}");
    if let Some(sig) = s.interrupted {
        let mut l = format!("orch-run: interrupted by {}", run::signal_name(sig));
        if !s.requeued.is_empty() {
            let (what, verb) = if s.requeued.len() == 1 {
                ("task", "is")
            } else {
                ("tasks", "are")
            };
            l.push_str(&format!(
                "; {what} {} never started and {verb} back in the queue",
                join_ids(&s.requeued)
            ));
        }
        eprintln!("{l}");
    }
    if let Some(why) = &s.halted {
        let mut l = format!("orch-run: stopped starting tasks: {why}");
        if !s.requeued.is_empty() {
            l.push_str(&format!(
                "; task{} {} back in the queue",
                if s.requeued.len() == 1 { "" } else { "s" },
                join_ids(&s.requeued)
            ));
        }
        eprintln!("{l}");
    }
}

/// Progress on stderr: a redrawn bar on a terminal, one line per event otherwise.
struct RunProgress {
    total: usize,
    running: usize,
    done: usize,
    failed: usize,
    tty: bool,
    started: Instant,
    last_draw: Option<Instant>,
    /// When the last "paused" line was printed.
    last_pause: Option<Instant>,
}

impl RunProgress {
    fn new(total: usize, tty: bool) -> RunProgress {
        RunProgress {
            total,
            running: 0,
            done: 0,
            failed: 0,
            tty,
            started: Instant::now(),
            last_draw: None,
            last_pause: None,
        }
    }

    fn event(&mut self, e: &RunEvent) {
        let line = match e {
            RunEvent::Started { task, pid } => {
                self.running += 1;
                (!self.tty).then(|| {
                    format!(
                        "orch-run: task {} started ({}: {}) pid {pid}",
                        task.id,
                        orch_core::text::escape(&task.role, false),
                        orch_core::text::first_line(&task.description, 60)
                    )
                })
            }
            RunEvent::Finished { record, spawned } => {
                if *spawned {
                    self.running = self.running.saturating_sub(1);
                }
                Some(finished_line(record, &mut self.done, &mut self.failed))
            }
            RunEvent::Stopping { signal } => Some(format!(
                "orch-run: {}: stopping {} running task{}",
                run::signal_name(*signal),
                self.running,
                if self.running == 1 { "" } else { "s" }
            )),
            RunEvent::Paused { until, reason } => {
                let now = Instant::now();
                let every = if self.tty { 1 } else { 5 };
                if self
                    .last_pause
                    .is_some_and(|t| now.duration_since(t) < Duration::from_secs(every))
                {
                    None
                } else {
                    self.last_pause = Some(now);
                    Some(match until {
                        Some(u) => format!(
                            "orch-run: paused until {} ({reason}): {} s left",
                            orch_core::limits::hhmm(*u),
                            ((u - orch_core::time::now_ms()).max(0) + 999) / 1000
                        ),
                        None => format!("orch-run: paused ({reason}) until `orch-queue resume`"),
                    })
                }
            }
            RunEvent::Tick => None,
        };
        let mut err = io::stderr().lock();
        if self.tty {
            let now = Instant::now();
            let due = self
                .last_draw
                .is_none_or(|t| now.duration_since(t) >= Duration::from_millis(100));
            if line.is_none() && !due {
                return;
            }
            let _ = write!(err, "\r\x1b[2K");
            if let Some(l) = line {
                let _ = writeln!(err, "{l}");
            }
            let _ = write!(err, "{}", self.bar());
            let _ = err.flush();
            self.last_draw = Some(now);
        } else if let Some(l) = line {
            let _ = writeln!(err, "{l}");
        }
    }

    fn bar(&self) -> String {
        const WIDTH: usize = 24;
        let finished = self.done + self.failed;
        let filled = (finished * WIDTH).checked_div(self.total).unwrap_or(0);
        format!(
            "[{}{}] {finished}/{}  running {}  done {}  failed {}  {:.1}s",
            "#".repeat(filled),
            "-".repeat(WIDTH - filled),
            self.total,
            self.running,
            self.done,
            self.failed,
            self.started.elapsed().as_secs_f64()
        )
    }

    fn clear(&self) {
        if self.tty && self.last_draw.is_some() {
            let mut err = io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

fn finished_line(r: &Record, done: &mut usize, failed: &mut usize) -> String {
    let took = orch_core::time::secs(r.duration_ms);
    let class = r.error_class.map(|c| format!(" ({c})")).unwrap_or_default();
    if let Some(at) = r.retry_ms {
        return format!(
            "orch-run: task {} attempt {} failed in {took}{class}: {}; next attempt in {}",
            r.id,
            r.attempt,
            orch_core::text::first_line(r.error.as_deref().unwrap_or("failed"), 200),
            orch_core::time::secs1((at - r.end_ms).max(0))
        );
    }
    if r.status == Status::Done {
        *done += 1;
        format!("orch-run: task {} done in {took}", r.id)
    } else {
        *failed += 1;
        format!(
            "orch-run: task {} failed in {took}{class}: {}",
            r.id,
            orch_core::text::first_line(r.error.as_deref().unwrap_or("failed"), 200)
        )
    }
}
