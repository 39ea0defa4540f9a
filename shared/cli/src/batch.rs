//! `orch-batch`: group ready tasks into a batch, plan waves, list, show, release.

use std::io;

use clap::{Parser, Subcommand};

use crate::{id_or_stdin, DbArg, Out, Tool};
use orch_core::batch::{self, CreateRequest, DEFAULT_MAX};
use orch_core::error::Exit;
use orch_core::text;

const EXAMPLES: &str = "\
Examples:
  orch-batch create | orch-emit          # batch what is ready, print the message
  orch-batch create --min 3 --max 8      # only when at least 3 are ready
  orch-batch plan                        # waves from the dependencies
  orch-batch release 4                   # put a batch that never ran back";

/// Group ready tasks into batches; plan waves from dependencies.
#[derive(Debug, Parser)]
#[command(name = "orch-batch", version, after_help = EXAMPLES)]
pub struct Cli {
    #[command(flatten)]
    pub db: DbArg,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Claim ready tasks (by priority, then age) into a new batch; prints its id.
    ///
    /// Exits 1, printing nothing, when fewer than --min tasks are ready.
    #[command(after_help = "Example:\n  orch-batch create --max 5 --role reviewer")]
    Create {
        /// At most this many tasks [default: 10, and never more than the
        /// sub-agents Claude Code runs at once, CLAUDE_CODE_MAX_CONCURRENT_SUBAGENTS
        /// or 20]. A larger --max is for batches run headless (orch-run).
        #[arg(long)]
        max: Option<usize>,
        /// Only batch when at least this many are ready.
        #[arg(long, default_value_t = 1)]
        min: usize,
        /// Only tasks of this role.
        #[arg(long)]
        role: Option<String>,
        /// Print the whole batch as JSON instead of its id.
        #[arg(long)]
        json: bool,
        /// Agents tracked through orch-hook whose end never came for this long
        /// are reconciled as lost first (as orch-hook --stale-after).
        #[arg(long, value_name = "DURATION", env = "ORCH_STALE_AFTER", default_value = "2h", value_parser = orch_core::time::parse_span)]
        stale_after: std::time::Duration,
    },
    /// Show the waves the queued tasks would run in; writes nothing.
    #[command(after_help = "Example:\n  orch-batch plan --max 4 --json")]
    Plan {
        /// At most this many tasks per wave.
        #[arg(long, default_value_t = DEFAULT_MAX)]
        max: usize,
        #[arg(long)]
        json: bool,
    },
    /// List batches with their tasks' progress.
    #[command(after_help = "Example:\n  orch-batch list --json")]
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one batch and its tasks (the id may come on stdin).
    #[command(after_help = "Example:\n  orch-batch show 3")]
    Show {
        batch: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// Write the page of a batch: one self-contained HTML file with its timeline, tasks and events.
    #[command(
        after_help = "Example:\n  orch-batch report 3 --html run.html      # open it in any browser, offline"
    )]
    Report {
        batch: Option<i64>,
        /// The HTML file to write.
        #[arg(long, value_name = "FILE", required = true)]
        html: std::path::PathBuf,
    },
    /// Put a batch that never ran back in the queue.
    #[command(after_help = "Example:\n  orch-batch release 3")]
    Release { batch: Option<i64> },
    /// Send a batch out as a bundle (JSON Lines) for jobs on other machines; marks it dispatched.
    #[command(after_help = "Example:\n  orch-batch export 3 --out .orch/bundle-3.jsonl")]
    Export {
        batch: Option<i64>,
        /// Write the bundle here instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
        /// How long the dispatch holds the batch before `orch status` calls it expired [default: 7d].
        #[arg(long, value_name = "SPAN", value_parser = orch_core::time::parse_span)]
        lease: Option<std::time::Duration>,
    },
}

impl Tool for Cli {
    const NAME: &'static str = "orch-batch";

    fn run(self) -> anyhow::Result<Exit> {
        let mut out = Out::new();
        match self.cmd {
            Cmd::Create {
                max,
                min,
                role,
                json,
                stale_after,
            } => {
                if let Some(r) = &role {
                    orch_core::task::validate_role(r)?;
                }
                if max == Some(0) {
                    anyhow::bail!("--max must be at least 1");
                }
                // Claude Code refuses spawns past its own cap, without queueing
                // them: the default never makes a bigger batch, and a bigger
                // --max is said to be for headless runs.
                let (cap, from) = orch_core::limits::claude_cap();
                let max = match max {
                    None if DEFAULT_MAX > cap => {
                        eprintln!(
                            "orch-batch: note: at most {cap} tasks per batch, the sub-agents Claude Code runs at once ({from})"
                        );
                        cap
                    }
                    None => DEFAULT_MAX,
                    // Warned about below, only when the batch made is larger than the cap.
                    Some(m) => m,
                };
                if min > max {
                    anyhow::bail!(
                        "--min {min} is more than --max {max}: no batch could ever be made"
                    );
                }
                crate::check_stdout()?;
                let db = self.db.open()?;
                // A runner whose lease expired left tasks behind: they are
                // ready again (the batching itself takes them over).
                let req = CreateRequest {
                    max,
                    min,
                    role,
                    stale_after: Some(stale_after),
                    made_by: None,
                };
                let (made, back) = db.write(|tx| batch::create_reclaiming_in(tx, &req))?;
                let note = back.describe();
                if !note.is_empty() {
                    eprintln!(
                        "orch-batch: note: {}",
                        orch_core::text::escape(&note, false)
                    );
                }
                match made {
                    Ok(b) => {
                        // The id first, then the human note, also when both go to one terminal.
                        out.answer(
                            || {
                                let tasks = crate::ids_text("task", b.tasks.iter().map(|t| t.id));
                                format!("batch {} ({tasks})", b.id)
                            },
                            |out| match json {
                                true => out.json(&b),
                                false => out.line(b.id),
                            },
                        )?;
                        eprintln!(
                            "batch {}: {} task{}",
                            b.id,
                            b.tasks.len(),
                            if b.tasks.len() == 1 { "" } else { "s" }
                        );
                        if b.tasks.len() > cap {
                            eprintln!(
                                "orch-batch: note: Claude Code runs at most {cap} sub-agents at once ({from}) and refuses the rest; a batch of {} is for orch-run",
                                b.tasks.len()
                            );
                        }
                    }
                    Err(few) => {
                        if few.ready == 0 {
                            let blocked = orch_core::task::blocked(&db, None, None)
                                .map(|b| b.len())
                                .unwrap_or(0);
                            match blocked {
                                0 => eprintln!("nothing ready to batch"),
                                n => eprintln!(
                                    "nothing ready to batch ({n} queued task{} blocked: {} for a failed or cancelled task; `orch-batch plan` shows them)",
                                    if n == 1 { " is" } else { "s are" },
                                    if n == 1 { "it waits" } else { "they wait" }
                                ),
                            }
                        } else {
                            eprintln!(
                                "only {} ready, fewer than --min {}; no batch made",
                                few.ready, few.min
                            );
                        }
                        return Ok(Exit::No);
                    }
                }
            }
            Cmd::Plan { max, json } => {
                let db = self.db.open_existing()?;
                let p = batch::plan(&db, max)?;
                if json {
                    out.json(&p)?;
                } else {
                    print_plan(&mut out, &p)?;
                }
            }
            Cmd::List { json } => {
                let db = self.db.open_existing()?;
                let list = batch::list(&db)?;
                if json {
                    for b in &list {
                        out.json(b)?;
                    }
                } else if list.is_empty() {
                    eprintln!("no batches");
                } else {
                    out.line(format_args!(
                        "{:>5}  {:<24}  {:<10}  {:>5}  PROGRESS",
                        "BATCH", "CREATED", "EMITTED", "TASKS"
                    ))?;
                    for b in &list {
                        out.line(format_args!(
                            "{:>5}  {:<24}  {:<10}  {:>5}  {} waiting, {} running, {} done, {} failed{}",
                            b.id,
                            b.created_at,
                            if b.emitted_at.is_some() { "yes" } else { "no" },
                            b.tasks,
                            b.batched,
                            b.running,
                            b.done,
                            b.failed,
                            if b.cancelled > 0 { format!(", {} cancelled", b.cancelled) } else { String::new() }
                        ))?;
                    }
                }
            }
            Cmd::Show { batch: id, json } => {
                let id = id_or_stdin(id, "batch")?;
                let db = self.db.open_existing()?;
                let b = batch::get(&db, id)?;
                if json {
                    out.json(&b)?;
                } else {
                    out.line(format_args!(
                        "batch {}  created {}  {}",
                        b.id,
                        b.created_at,
                        match &b.emitted_at {
                            Some(t) => format!("emitted {t}"),
                            None => "not emitted".into(),
                        }
                    ))?;
                    for t in &b.tasks {
                        out.line(format_args!(
                            "{:>5}  {:<9}  {:<16}  {}",
                            t.id,
                            t.status.as_str(),
                            text::escape(&t.role, false),
                            text::escape(&t.description, false)
                        ))?;
                    }
                }
            }
            Cmd::Report { batch: id, html } => {
                let id = id_or_stdin(id, "batch")?;
                let db = self.db.open_existing()?;
                let b = batch::get(&db, id)?;
                let events = crate::page::events(
                    &db,
                    orch_core::event::Filter {
                        batch: Some(id),
                        ..Default::default()
                    },
                )?;
                // The attempts made in this batch (a task retried by hand
                // may have had others in another).
                let mut attempts = Vec::new();
                for t in &b.tasks {
                    attempts.extend(
                        orch_core::attempt::list(&db, t.id)?
                            .into_iter()
                            .filter(|a| a.batch == Some(id)),
                    );
                }
                crate::page::write(
                    &db,
                    &html,
                    &crate::page::batch(&b, &attempts, events),
                    "orch-batch",
                )?;
            }
            Cmd::Export {
                batch: id,
                out: file,
                lease,
            } => {
                let id = id_or_stdin(id, "batch")?;
                return crate::jobs::export(&self.db, id, file.as_deref(), lease);
            }
            Cmd::Release { batch: id } => {
                let id = id_or_stdin(id, "batch")?;
                let db = self.db.open_existing()?;
                let emitted = batch::get(&db, id).ok().and_then(|b| b.emitted_at);
                let ids = orch_core::dispatch::release(&db, id)?;
                eprintln!(
                    "batch {id} released: {} task{} queued again",
                    ids.len(),
                    if ids.len() == 1 { "" } else { "s" }
                );
                if let (Some(at), false) = (emitted, ids.is_empty()) {
                    // Without hooks nothing says whether Claude Code started them.
                    eprintln!(
                        "note: batch {id} was emitted at {at}; if its agents were launched, the tasks run again when batched again (`orch-queue cancel` the ones that ran)"
                    );
                }
            }
        }
        out.flush()?;
        Ok(Exit::Ok)
    }
}

fn print_plan(out: &mut Out, p: &batch::Plan) -> io::Result<()> {
    if p.waves.is_empty() && p.blocked.is_empty() {
        eprintln!("nothing queued");
    }
    for (i, w) in p.waves.iter().enumerate() {
        out.line(format_args!(
            "wave {} ({} task{}{})",
            i + 1,
            w.len(),
            if w.len() == 1 { "" } else { "s" },
            if i == 0 { ", ready now" } else { "" }
        ))?;
        for t in w {
            let after = if t.after.is_empty() {
                String::new()
            } else {
                format!(
                    "  (after {})",
                    t.after
                        .iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            out.line(format_args!(
                "  {:>5}  {:<16}  {}{after}",
                t.id,
                text::escape(&t.role, false),
                text::escape(&t.description, false)
            ))?;
            if let Some(why) = &t.held_back {
                out.line(format_args!("         {}", text::escape(why, false)))?;
            }
        }
    }
    for c in &p.cycles {
        let names: Vec<String> = c.iter().map(|i| i.to_string()).collect();
        out.line(format_args!("cycle: {}", names.join(" -> ")))?;
    }
    for b in &p.blocked {
        out.line(format_args!("blocked: task {}: {}", b.id, b.reason))?;
    }
    Ok(())
}
