//! `orch-verify`: the parallel-execution harness (SPEC §6) — the guided
//! walkthrough for people, and `new`/`probe`/`wait`/`report`/`exec`/`selftest`
//! for scripts and CI.

use std::io::{self, IsTerminal, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use serde::Serialize;

mod guide;
mod render;

pub use render::{render_figures, render_human};

use crate::{color_ok, id_or_stdin, DbArg, Out, Tool};
use orch_core::db::{self, Db, Location, Source};
use orch_core::emit::AgentCall;
use orch_core::error::Exit;
use orch_core::intervals::Verdict;
use orch_core::verify::{self, Probe, ProbeEvent, Run, Waited};

const EXAMPLES: &str = "\
Examples:
  orch-verify                                   # the guided check, on a terminal
  orch-verify selftest                          # check the harness itself
  orch-verify exec -- xargs -P 4 -I{} sh -c {}  # judge any executor
  run=$(orch-verify new -n 4 --json | jq .run)  # in scripts: make a run,
  orch-verify wait \"$run\" && orch-verify report \"$run\"   # then judge it";

const VERBS: &str = "  orch-verify new [-n N] [--sleep S] [--json]   make a run and print the message for Claude Code
  orch-verify wait RUN [--timeout SECS]         wait until its probes report
  orch-verify report RUN [--json|--html FILE]   verdict, figures, timeline (exit 0 only if PARALLEL)
  orch-verify exec -- xargs -P 4 -I{} sh -c {}  judge any executor
  orch-verify selftest                          check the harness itself";

/// Prove that agents really run in parallel: probes record when they ran, the
/// timestamps give the verdict.
#[derive(Debug, Parser)]
#[command(name = "orch-verify", version, after_help = EXAMPLES)]
pub struct Cli {
    #[command(flatten)]
    pub db: DbArg,
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Shape {
    /// How many probes (2-64: one probe proves nothing about parallelism).
    #[arg(short = 'n', value_name = "N", default_value_t = verify::DEFAULT_N, value_parser = clap::value_parser!(i64).range(2..=verify::MAX_N))]
    pub n: i64,
    /// How long each probe sleeps: seconds (fractions allowed) or a duration like 500ms.
    #[arg(long, value_name = "SECS", default_value = "8", value_parser = sleep_arg, allow_negative_numbers = true)]
    pub sleep: i64,
}

fn sleep_arg(s: &str) -> Result<i64, String> {
    verify::parse_sleep(s).map_err(|e| e.to_string())
}

fn timeout_arg(s: &str) -> Result<Duration, String> {
    orch_core::time::parse_span(s).and_then(|d| match d <= Duration::from_secs(86_400) {
        true => Ok(d),
        false => Err(format!("'{s}': a timeout is 0 to 86400 seconds")),
    })
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// The guided check (what `orch-verify` alone runs on a terminal).
    #[command(after_help = "Example:\n  orch-verify guide -n 6 --sleep 10")]
    Guide(Shape),
    /// Make a run; print the one message that starts its probes as Claude Code agents.
    #[command(
        after_help = "Examples:\n  orch-verify new | xclip -selection clipboard\n  orch-verify new -n 8 --sleep 5 --json | jq -r .message"
    )]
    New {
        #[command(flatten)]
        shape: Shape,
        /// One JSON object: run, probe commands, Agent calls, message.
        #[arg(long)]
        json: bool,
    },
    /// Run one probe: record its start, sleep, record its end, print one line.
    #[command(after_help = "Example:\n  orch-verify probe 7 2")]
    Probe {
        /// The run id.
        run: i64,
        /// Which probe of the run (1 to N).
        index: i64,
    },
    /// Wait until every probe of a run reported (progress on stderr); exit 1 on timeout.
    #[command(after_help = "Example:\n  orch-verify wait 7 --timeout 120 && orch-verify report 7")]
    Wait {
        /// The run id [default: read from stdin].
        run: Option<i64>,
        /// Give up after this long: seconds or a duration like 2m.
        #[arg(long, value_name = "SECS", default_value = "600", value_parser = timeout_arg)]
        timeout: Duration,
    },
    /// The verdict, figures and timeline of a run; exit 0 only if PARALLEL.
    #[command(
        after_help = "Examples:\n  orch-verify report 7\n  orch-verify report 7 --json | jq .speedup\n  orch-verify report 7 --html run.html     # the page of the run, to open offline"
    )]
    Report {
        /// The run id [default: read from stdin].
        run: Option<i64>,
        /// One JSON object.
        #[arg(long)]
        json: bool,
        /// Also write the page of the run to FILE: one self-contained HTML file
        /// (timeline of the probes, table, events).
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Check the harness: run probes all at once, then one by one; expect PARALLEL, then SEQUENTIAL.
    #[command(after_help = "Example:\n  orch-verify selftest -n 6 --sleep 0.5")]
    Selftest {
        /// How many probes (2-64).
        #[arg(short = 'n', value_name = "N", default_value_t = verify::DEFAULT_N, value_parser = clap::value_parser!(i64).range(2..=verify::MAX_N))]
        n: i64,
        /// How long each probe sleeps.
        #[arg(long, value_name = "SECS", default_value = "0.5", value_parser = sleep_arg, allow_negative_numbers = true)]
        sleep: i64,
        /// One JSON object per phase.
        #[arg(long)]
        json: bool,
    },
    /// Judge any executor: feed it the probe commands, one per line on stdin, then report.
    #[command(
        after_help = "Examples:\n  orch-verify exec -- xargs -P 4 -I{} sh -c {}\n  orch-verify exec -n 8 --sleep 2 -- parallel -j 8"
    )]
    Exec {
        #[command(flatten)]
        shape: Shape,
        /// Give up (and stop COMMAND) after this long [default: N x sleep + 60 s].
        #[arg(long, value_name = "SECS", value_parser = timeout_arg)]
        timeout: Option<Duration>,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
        /// The executor and its arguments, run without a shell; its stdout goes to stderr.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Judge real Claude Code agent calls recorded by orch-hook (no probes needed).
    #[command(after_help = "Example:\n  orch-verify session --since 1h")]
    Session(crate::session::SessionArgs),
}

impl Tool for Cli {
    const NAME: &'static str = "orch-verify";

    fn run(self) -> anyhow::Result<Exit> {
        let mut out = Out::new();
        let cmd = match self.cmd {
            Some(c) => c,
            None => Cmd::Guide(Shape {
                n: verify::DEFAULT_N,
                sleep: verify::DEFAULT_SLEEP_MS,
            }),
        };
        match cmd {
            Cmd::Guide(shape) => guide::guide(&self.db, shape),
            Cmd::New { shape, json } => new(&self.db, shape, json, &mut out),
            Cmd::Probe { run, index } => probe(&self.db, run, index, &mut out),
            Cmd::Wait { run, timeout } => {
                let run = id_or_stdin(run, "run")?;
                let db = self.db.open_existing()?;
                wait(&db, run, timeout)
            }
            Cmd::Report { run, json, html } => {
                let run = id_or_stdin(run, "run")?;
                let db = self.db.open_existing()?;
                report(&db, run, json, html.as_deref(), &mut out)
            }
            Cmd::Selftest { n, sleep, json } => {
                crate::check_stdout()?;
                let mut runs = Vec::new();
                let r = selftest(&self.db, n, sleep, json, &mut out, &mut runs);
                crate::after_commit(r, || crate::ids_text("run", runs))
            }
            Cmd::Exec {
                shape,
                timeout,
                json,
                command,
            } => exec(&self.db, shape, timeout, json, &command, &mut out),
            Cmd::Session(args) => crate::session::command(&self.db, args, &mut out),
        }
    }
}

/// The database `--db`/the environment choose, opened, and the path probes must
/// be given: absolute, unless it is the per-user default every process finds alike.
fn open_for_probes(arg: &DbArg) -> anyhow::Result<(Db, Location, Option<PathBuf>)> {
    let loc = db::resolve(arg.path())?;
    let db = Db::open(&loc.path)?;
    let probe_db = match loc.source {
        Source::User => None,
        _ => Some(std::path::absolute(&loc.path).unwrap_or_else(|_| loc.path.clone())),
    };
    Ok((db, loc, probe_db))
}

/// `new --json`.
#[derive(Serialize)]
struct NewJson<'a> {
    run: i64,
    n: i64,
    sleep_ms: i64,
    commands: Vec<String>,
    calls: &'a [AgentCall],
    message: String,
}

fn new(arg: &DbArg, shape: Shape, json: bool, out: &mut Out) -> anyhow::Result<Exit> {
    crate::check_stdout()?;
    let (db, _, probe_db) = open_for_probes(arg)?;
    let run = verify::create(&db, shape.n, shape.sleep, None)?;
    let verify::ProbeCalls { calls, message } = verify::probe_calls(&run, probe_db.as_deref());
    let what = || format!("run {}", run.id);
    if json {
        let commands = (1..=run.n)
            .map(|i| verify::probe_command("orch-verify", run.id, i, probe_db.as_deref()))
            .collect();
        let answer = NewJson {
            run: run.id,
            n: run.n,
            sleep_ms: run.sleep_ms,
            commands,
            calls: &calls,
            message,
        };
        out.answer(what, |out| out.json(&answer))?;
    } else {
        out.answer(what, |out| out.text(&message))?;
        eprintln!(
            "run {id}: paste the message into Claude Code as one message, then: orch-verify wait {id} && orch-verify report {id}",
            id = run.id
        );
    }
    Ok(Exit::Ok)
}

fn probe(arg: &DbArg, run: i64, index: i64, out: &mut Out) -> anyhow::Result<Exit> {
    crate::check_stdout()?;
    let db = arg.open_existing()?;
    let (r, start) = verify::probe_start(&db, run, index, std::process::id())?;
    std::thread::sleep(Duration::from_millis(r.sleep_ms as u64));
    let end = verify::probe_end(&db, run, index)?;
    out.answer(
        || format!("probe {index} of run {run}"),
        |out| {
            out.line(format_args!(
                "probe {index} of {} in run {run}: ran {} from {} to {}",
                r.n,
                orch_core::time::secs_short(end - start),
                orch_core::time::rfc3339(start),
                orch_core::time::rfc3339(end)
            ))
        },
    )?;
    Ok(Exit::Ok)
}

/// Live progress while probes report: one line per event, and on a terminal a
/// status line redrawn in place.
struct ProbeProgress<W: Write> {
    w: W,
    live: bool,
    color: bool,
    since: Instant,
    status: bool,
}

impl<W: Write> ProbeProgress<W> {
    fn new(w: W, terminal: bool) -> Self {
        ProbeProgress {
            w,
            live: terminal,
            color: color_ok(terminal),
            since: Instant::now(),
            status: false,
        }
    }

    fn clear(&mut self) {
        if self.status {
            let _ = write!(self.w, "\r\x1b[2K");
            self.status = false;
        }
    }

    fn event(&mut self, r: &Run, probes: &[Probe], e: ProbeEvent) {
        self.clear();
        let t0 = probes
            .iter()
            .filter_map(|p| p.started_at)
            .min()
            .unwrap_or(0);
        let mark = if self.color {
            "\x1b[32m✓\x1b[0m"
        } else {
            "✓"
        };
        let _ = match e {
            ProbeEvent::Started { index, at } => writeln!(
                self.w,
                "  ▶ probe {index:<2} started   +{:>8}",
                orch_core::time::secs(at - t0)
            ),
            ProbeEvent::Finished { index, at, took_ms } => {
                let done = probes
                    .iter()
                    .filter(|p| p.finished_at.is_some_and(|f| f <= at))
                    .count();
                writeln!(
                    self.w,
                    "  {mark} probe {index:<2} finished  +{:>8}   ran {}   {done}/{} done",
                    orch_core::time::secs(at - t0),
                    orch_core::time::secs(took_ms),
                    r.n
                )
            }
        };
        let _ = self.w.flush();
    }

    fn events(&mut self, r: &Run, probes: &[Probe], evs: &[ProbeEvent]) {
        for e in evs {
            self.event(r, probes, *e);
        }
    }

    fn tick(&mut self, r: &Run, probes: &[Probe]) {
        if !self.live {
            return;
        }
        let started = probes.iter().filter(|p| p.started_at.is_some()).count();
        let done = probes.iter().filter(|p| p.finished_at.is_some()).count();
        let _ = write!(
            self.w,
            "\r\x1b[2K  waiting {}: {} running, {done}/{} done (Ctrl-C to stop)",
            orch_core::time::secs_f(self.since.elapsed().as_secs_f64(), 0),
            started - done,
            r.n
        );
        let _ = self.w.flush();
        self.status = true;
    }

    fn note(&mut self, s: &str) {
        self.clear();
        let _ = writeln!(self.w, "{s}");
        let _ = self.w.flush();
    }
}

fn missing_list(probes: &[Probe]) -> String {
    let m: Vec<String> = probes
        .iter()
        .filter(|p| p.finished_at.is_none())
        .map(|p| p.index.to_string())
        .collect();
    m.join(", ")
}

fn wait(db: &Db, run: i64, timeout: Duration) -> anyhow::Result<Exit> {
    let stderr = io::stderr();
    let terminal = stderr.is_terminal();
    let mut p = ProbeProgress::new(stderr.lock(), terminal);
    let res = verify::wait(db, run, Some(timeout), |r, ps, evs| {
        p.events(r, ps, evs);
        p.tick(r, ps);
        true
    })?;
    let (r, probes) = verify::load(db, run)?;
    let done = probes.iter().filter(|x| x.finished_at.is_some()).count();
    match res {
        Waited::AllDone => {
            p.note(&format!("run {run}: all {} probes reported", r.n));
            Ok(Exit::Ok)
        }
        _ => {
            p.note(&format!(
                "run {run}: gave up after {} with {done} of {} probes reported (missing: {})",
                orch_core::time::secs_f(timeout.as_secs_f64(), 1),
                r.n,
                missing_list(&probes)
            ));
            Ok(Exit::No)
        }
    }
}

fn exit_for(v: Verdict) -> Exit {
    if v == Verdict::Parallel {
        Exit::Ok
    } else {
        Exit::No
    }
}

fn report(
    db: &Db,
    run: i64,
    json: bool,
    html: Option<&Path>,
    out: &mut Out,
) -> anyhow::Result<Exit> {
    let (r, probes) = verify::load(db, run)?;
    let rep = verify::report(&r, &probes);
    if let Some(path) = html {
        let events = crate::page::events(
            db,
            orch_core::event::Filter {
                run: Some(run),
                ..Default::default()
            },
        )?;
        crate::page::write(
            db,
            path,
            &crate::page::run(&r, &probes, events),
            "orch-verify",
        )?;
    }
    if json {
        out.json(&rep)?;
    } else {
        let color = color_ok(io::stdout().is_terminal());
        out.text(&render_human(&r, &probes, color))?;
    }
    out.flush()?;
    Ok(exit_for(rep.analysis.verdict))
}

/// One phase of `selftest --json`.
#[derive(Serialize)]
struct Phase {
    phase: &'static str,
    expected: Verdict,
    ok: bool,
    problems: Vec<String>,
    report: verify::RunReport,
}

fn spawn_probe(exe: &Path, run: i64, i: i64, db: &Path) -> anyhow::Result<Child> {
    Command::new(exe)
        .args(["probe", &run.to_string(), &i.to_string(), "--db"])
        .arg(db)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))
}

fn reap(children: Vec<Child>) -> anyhow::Result<()> {
    let mut first_err = None;
    for c in children {
        let o = c.wait_with_output().context("waiting for a probe")?;
        if !o.status.success() && first_err.is_none() {
            let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
            first_err = Some(format!("a probe failed ({}): {err}", o.status));
        }
    }
    match first_err {
        Some(e) => bail!(e),
        None => Ok(()),
    }
}

/// The selftest; `runs` gets the id of each run it makes.
fn selftest(
    arg: &DbArg,
    n: i64,
    sleep: i64,
    json: bool,
    out: &mut Out,
    runs: &mut Vec<i64>,
) -> anyhow::Result<Exit> {
    let loc = db::resolve(arg.path())?;
    let db = Db::open(&loc.path)?;
    let path = std::path::absolute(&loc.path).unwrap_or(loc.path.clone());
    let exe = std::env::current_exe().context("finding this program")?;
    let color = color_ok(io::stdout().is_terminal());
    let mut all_ok = true;
    for (phase, expected) in [
        ("all at once", Verdict::Parallel),
        ("one by one", Verdict::Sequential),
    ] {
        let r = verify::create(&db, n, sleep, Some(&format!("selftest: {phase}")))?;
        runs.push(r.id);
        if expected == Verdict::Parallel {
            let kids = (1..=n)
                .map(|i| spawn_probe(&exe, r.id, i, &path))
                .collect::<anyhow::Result<Vec<_>>>()?;
            reap(kids)?;
        } else {
            for i in 1..=n {
                reap(vec![spawn_probe(&exe, r.id, i, &path)?])?;
            }
        }
        let (r, probes) = verify::load(&db, r.id)?;
        let rep = verify::report(&r, &probes);
        let problems = plausibility(&rep, expected, n, sleep);
        all_ok &= problems.is_empty();
        if json {
            out.json(&Phase {
                phase,
                expected,
                ok: problems.is_empty(),
                problems,
                report: rep,
            })?;
        } else {
            out.line(format_args!(
                "selftest, probes {phase} (expect {expected}):"
            ))?;
            out.text(&render_figures(&r, &probes, color))?;
            for p in &problems {
                out.line(format_args!("  FAILED: {p}"))?;
            }
            out.line("")?;
        }
    }
    if !json {
        out.line(if all_ok {
            "selftest passed: probes run together came out PARALLEL, one by one SEQUENTIAL"
        } else {
            "selftest FAILED: see above"
        })?;
    }
    out.flush()?;
    Ok(if all_ok { Exit::Ok } else { Exit::No })
}

/// What is implausible about a selftest phase's figures.
fn plausibility(rep: &verify::RunReport, expected: Verdict, n: i64, sleep: i64) -> Vec<String> {
    let a = &rep.analysis;
    let mut p = Vec::new();
    if a.verdict != expected {
        p.push(format!("verdict {} (expected {expected})", a.verdict));
    }
    for pr in &rep.probes {
        match pr.duration_ms {
            Some(d) if d < sleep => p.push(format!(
                "probe {} ran {d} ms, shorter than its sleep",
                pr.index
            )),
            Some(d) if d > sleep + 5_000 => p.push(format!(
                "probe {} ran {d} ms for a {sleep} ms sleep",
                pr.index
            )),
            _ => {}
        }
    }
    match expected {
        Verdict::Parallel => {
            if a.peak as i64 != n {
                p.push(format!("peak {} (expected {n})", a.peak));
            }
            if a.wall_ms >= a.serial_ms {
                p.push(format!(
                    "wall {} ms not below serial {} ms",
                    a.wall_ms, a.serial_ms
                ));
            }
        }
        _ => {
            if a.peak != 1 {
                p.push(format!("peak {} (expected 1)", a.peak));
            }
            if a.wall_ms < a.serial_ms || a.wall_ms < n * sleep {
                p.push(format!(
                    "wall {} ms below serial {} ms",
                    a.wall_ms, a.serial_ms
                ));
            }
        }
    }
    p
}

fn exec(
    arg: &DbArg,
    shape: Shape,
    timeout: Option<Duration>,
    json: bool,
    command: &[String],
    out: &mut Out,
) -> anyhow::Result<Exit> {
    let loc = db::resolve(arg.path())?;
    let db = Db::open(&loc.path)?;
    let path = std::path::absolute(&loc.path).unwrap_or(loc.path.clone());
    let exe = std::env::current_exe().context("finding this program")?;
    let (prog, args) = command.split_first().context("no COMMAND given after --")?;
    crate::check_stdout()?;
    let stdout_to_stderr = io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .context("duplicating stderr")?;
    // Start COMMAND before writing anything, so a command that cannot run leaves no run behind.
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::from(stdout_to_stderr))
        .spawn()
        .with_context(|| format!("cannot run {prog}"))?;
    let label = format!("exec: {}", orch_core::text::clip(&command.join(" "), 60));
    let r = match verify::create(&db, shape.n, shape.sleep, Some(&label)) {
        Ok(r) => r,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e.into());
        }
    };
    let lines: String = (1..=r.n)
        .map(|i| verify::probe_command(&exe.to_string_lossy(), r.id, i, Some(&path)) + "\n")
        .collect();
    let mut stdin = child.stdin.take().context("COMMAND's stdin")?;
    let feeder = std::thread::spawn(move || {
        // A command that exits without reading is judged by what it did.
        let _ = stdin.write_all(lines.as_bytes());
    });
    let timeout = timeout
        .unwrap_or(Duration::from_millis((r.n * r.sleep_ms) as u64) + Duration::from_secs(60));
    let stderr = io::stderr();
    let terminal = stderr.is_terminal();
    let mut p = ProbeProgress::new(stderr.lock(), terminal);
    let mut exited: Option<(Instant, std::process::ExitStatus)> = None;
    let mut last_change = Instant::now();
    let res = verify::wait(&db, r.id, Some(timeout), |r, ps, evs| {
        if !evs.is_empty() {
            last_change = Instant::now();
        }
        p.events(r, ps, evs);
        p.tick(r, ps);
        if exited.is_none() {
            if let Ok(Some(st)) = child.try_wait() {
                exited = Some((Instant::now(), st));
            }
        }
        // Once COMMAND is gone, wait only for probes still running, and
        // briefly for any it handed off that have yet to start.
        match exited {
            Some(_) => {
                let running = ps
                    .iter()
                    .any(|x| x.started_at.is_some() && x.finished_at.is_none());
                running || last_change.elapsed() < Duration::from_secs(2)
            }
            None => true,
        }
    })?;
    let status = match exited {
        Some((_, st)) => Some(st),
        None => {
            // Probes are done (or time is up); give COMMAND until the timeout to exit.
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if let Some(st) = child.try_wait()? {
                    break Some(st);
                }
                if res == Waited::TimedOut || Instant::now() >= deadline {
                    p.note(&format!(
                        "orch-verify: stopping {} (pid {})",
                        orch_core::text::escape(prog, false),
                        child.id()
                    ));
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    let _ = feeder.join();
    p.clear();
    if let Some(st) = status.filter(|s| !s.success()) {
        p.note(&format!(
            "orch-verify: {} exited with {st}",
            orch_core::text::escape(prog, false)
        ));
    }
    if res == Waited::TimedOut {
        p.note(&format!(
            "orch-verify: gave up after {}",
            orch_core::time::secs_f(timeout.as_secs_f64(), 1)
        ));
    }
    drop(p);
    crate::after_commit(report(&db, r.id, json, None, out), || {
        format!("run {}", r.id)
    })
}
