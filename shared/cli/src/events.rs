//! `orch-events`: the event journal — print it, follow it, act on it.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;

use crate::{DbArg, Out, Tool};
use orch_core::error::Exit;
use orch_core::event::{self, Event, Filter};
use orch_core::text;

const EXAMPLES: &str = "\
Examples:
  orch-events                                   # every event kept, oldest first
  orch-events --follow --kind task.failed       # wait for failures
  orch-events --since 120 --json                # resume after event 120
  orch-events --since 10m --task 7              # what happened to task 7 lately
  orch-events --follow --kind task.failed --exec notify-send orch";

/// How often a follower checks for new commits (`PRAGMA data_version`: no read
/// of the journal unless something was committed).
pub const POLL: Duration = Duration::from_millis(20);

/// The journal of every state change: tasks, batches, messages, verification runs.
///
/// Events have increasing ids in commit order; `--since ID` resumes after a
/// restart with nothing lost or repeated. The journal keeps 30 days or
/// 1 000 000 events (`orch-queue retention` changes it).
#[derive(Debug, Parser)]
#[command(name = "orch-events", version, after_help = EXAMPLES)]
pub struct Cli {
    #[command(flatten)]
    pub db: DbArg,
    /// Only events after event ID, or at or after TIME (RFC 3339, or a
    /// duration ago: 10m, 2h).
    #[arg(long, value_name = "ID|TIME")]
    pub since: Option<String>,
    /// After the past events, wait for new ones and print them as they commit.
    #[arg(long, short)]
    pub follow: bool,
    /// Only events of kind K (task.failed) or family K (task); repeatable.
    #[arg(long, value_name = "K", num_args = 1.., value_parser = event::validate_kind)]
    pub kind: Vec<String>,
    /// Only events of task ID.
    #[arg(long, value_name = "ID")]
    pub task: Option<i64>,
    /// Only events of batch ID (the batch and its tasks).
    #[arg(long, value_name = "ID")]
    pub batch: Option<i64>,
    /// JSON Lines: one event object per line.
    #[arg(long)]
    pub json: bool,
    /// Run CMD ARGS… (no shell) once per event, the event's JSON on its stdin,
    /// one at a time and in order, instead of printing; a failure is reported
    /// on stderr and the next event goes on.
    #[arg(long, value_name = "CMD", num_args = 1.., allow_hyphen_values = true, trailing_var_arg = true)]
    pub exec: Vec<String>,
}

impl Tool for Cli {
    const NAME: &'static str = "orch-events";

    fn run(self) -> anyhow::Result<Exit> {
        if let Some(t) = self.task {
            if t <= 0 {
                bail!("bad task id {t}: ids are positive whole numbers");
            }
        }
        if let Some(cmd) = self.exec.first() {
            if which::which(cmd).is_err() {
                bail!("--exec: {} not found (it runs without a shell: give a program and its arguments)", text::escape(cmd, false));
            }
        } else {
            crate::check_stdout()?;
        }
        // A follower may start before the run: it makes the database then.
        let db = match self.follow {
            true => self.db.open()?,
            false => self.db.open_existing()?,
        };
        let mut f = Filter {
            kinds: self.kind.clone(),
            task: self.task,
            batch: self.batch,
            ..Filter::default()
        };
        if let Some(s) = &self.since {
            match s.trim().parse::<i64>() {
                Ok(id) if id >= 0 => f.after_id = id,
                Ok(_) => bail!("--since {s}: an event id is a whole number from 0"),
                Err(_) => {
                    let ms = orch_core::time::parse_since(s)
                        .map_err(|e| anyhow::anyhow!("--since: {e}"))?;
                    f.after_id = event::first_at_or_after(&db, ms)?.saturating_sub(1);
                    f.since_ms = Some(ms);
                }
            }
        }
        let mut out = Out::new();
        let mut failed = 0u64;
        let mut version = db.data_version()?;
        loop {
            loop {
                let (events, last) = event::page(&db, &f, 1000)?;
                let more = last != f.after_id;
                f.after_id = last;
                for e in &events {
                    if self.exec.is_empty() {
                        print(&mut out, e, self.json)?;
                    } else if !exec(&self.exec, e) {
                        failed += 1;
                    }
                }
                out.flush()?;
                if !more {
                    break;
                }
            }
            if !self.follow {
                break;
            }
            // Sleep until another connection commits something.
            loop {
                std::thread::sleep(POLL);
                let v = db.data_version()?;
                if v != version {
                    version = v;
                    break;
                }
            }
        }
        Ok(if failed > 0 { Exit::Error } else { Exit::Ok })
    }
}

/// One event, for people or as JSON.
fn print(out: &mut Out, e: &Event, json: bool) -> std::io::Result<()> {
    if json {
        return out.json(e);
    }
    out.line(human(e))
}

/// `#12 2026-…Z task.started task 3 (batch 1) batched→running: detail`.
pub fn human(e: &Event) -> String {
    let mut s = format!("#{} {} {}", e.id, e.at, e.kind);
    for (noun, id) in [
        ("task", e.task),
        ("batch", e.batch),
        ("message", e.message),
        ("run", e.run),
    ] {
        if let Some(id) = id {
            s.push_str(&format!(" {noun} {id}"));
        }
    }
    match (&e.from, &e.to) {
        (Some(a), Some(b)) => s.push_str(&format!(" {a}->{b}")),
        (None, Some(b)) => s.push_str(&format!(" ->{b}")),
        _ => {}
    }
    if let Some(d) = &e.detail {
        s.push_str(": ");
        s.push_str(&text::escape(d, false));
    }
    s
}

/// Runs the `--exec` command for one event; false (and a line on stderr) when
/// it could not start or did not exit 0. Never retried: the next event goes on.
fn exec(cmd: &[String], e: &Event) -> bool {
    let json = match serde_json::to_string(e) {
        Ok(j) => j + "\n",
        Err(_) => return false,
    };
    let run = || -> anyhow::Result<std::process::ExitStatus> {
        let mut child = Command::new(&cmd[0])
            .args(&cmd[1..])
            .stdin(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", text::escape(&cmd[0], false)))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A command that does not read its stdin is fine.
            let _ = stdin.write_all(json.as_bytes());
        }
        Ok(child.wait()?)
    };
    match run() {
        Ok(st) if st.success() => true,
        Ok(st) => {
            eprintln!(
                "orch-events: warning: event {} ({}): {} {st}; going on with the next event",
                e.id,
                e.kind,
                text::escape(&cmd[0], false)
            );
            false
        }
        Err(err) => {
            eprintln!(
                "orch-events: warning: event {} ({}): {}; going on with the next event",
                e.id,
                e.kind,
                crate::one_line(&err)
            );
            false
        }
    }
}
