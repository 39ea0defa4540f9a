//! `orch-land`: merge the branches of done tasks into one branch, in
//! dependency order, checking each merge in memory first.

use std::io;

use clap::Parser;

use crate::{DbArg, Out, Tool};
use orch_core::error::Exit;
use orch_core::land::{self, Landing, Outcome, Request, Strategy};
use orch_core::text;

const EXAMPLES: &str = "\
Examples:
  orch-land --all                         # every done task's branch into the current branch
  orch-land 3 --into main --dry-run       # what batch 3 would do to main, changing nothing
  orch-land --all --strategy squash --json
  orch-land --all --on-conflict queue     # a conflict queues a task that resolves it

Each task's branch (orch-run --worktree) is merged in memory first (git
merge-tree); a clean merge is committed and the branch moves to it, then the
task is marked landed. A conflict stops at that task, leaving the branch and
the working tree as they were. Exit: 0 every task was taken in turn (landed,
its branch held nothing new, skipped, or its conflict queued with
--on-conflict queue), 1 stopped at a conflict, or no done task to land,
2 nothing done (bad usage, not a repository, unknown branch, dirty tree, a
task without a branch).";

/// Land the branches of done tasks in dependency order, then priority, then id.
#[derive(Debug, Parser)]
#[command(name = "orch-land", version, after_help = EXAMPLES)]
pub struct Cli {
    #[command(flatten)]
    pub db: DbArg,
    /// The batches whose done tasks land.
    #[arg(
        value_name = "BATCH",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub batches: Vec<i64>,
    /// Every done task that has a branch.
    #[arg(long)]
    pub all: bool,
    /// The branch to land into [default: the checked-out branch].
    #[arg(long, value_name = "BRANCH")]
    pub into: Option<String>,
    /// How a task's branch goes onto the target.
    #[arg(long, default_value = "merge", value_parser = clap::builder::PossibleValuesParser::new(Strategy::NAMES))]
    pub strategy: String,
    /// Check every merge and print what would happen; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// On a conflict: stop (the default), or queue a task that resolves it and go on.
    #[arg(long, value_name = "WHAT", default_value = "stop", value_parser = ["stop", "queue"])]
    pub on_conflict: String,
    /// One JSON line per task: task, branch, outcome, commit, files.
    #[arg(long)]
    pub json: bool,
}

impl Tool for Cli {
    const NAME: &'static str = "orch-land";

    fn run(self) -> anyhow::Result<Exit> {
        let req = Request {
            batches: self.batches,
            all: self.all,
            into: self.into,
            strategy: Strategy::parse(&self.strategy).unwrap_or(Strategy::Merge),
            dry_run: self.dry_run,
            queue_conflicts: self.on_conflict == "queue",
        };
        if self.json {
            crate::check_stdout()?;
        }
        let db = self.db.open_existing()?;
        let here = std::env::current_dir()?;
        let plan = land::prepare(&db, &here, &req)?;
        if plan.tasks.is_empty() {
            eprintln!(
                "orch-land: nothing to land into {}",
                text::escape(&plan.target, false)
            );
            return Ok(Exit::No);
        }
        let mut out = Out::new();
        let json = self.json;
        let dry = req.dry_run;
        let mut printed: io::Result<()> = Ok(());
        let summary = land::land(&db, &plan, &req, &mut |l: &Landing| {
            if printed.is_ok() {
                printed = if json {
                    out.json(l)
                } else {
                    out.line(human(l, dry))
                }
                .and_then(|_| out.flush());
            }
            Ok(())
        })?;
        if let Err(e) = printed {
            if e.kind() != io::ErrorKind::BrokenPipe {
                return Err(crate::NotPrinted {
                    what: format!("{} task(s) landed into {}", summary.landed, plan.target),
                    source: e,
                }
                .into());
            }
        }
        if summary.stopped {
            eprintln!(
                "orch-land: stopped at a conflict; {} is as it was before that task",
                text::escape(&plan.target, false)
            );
            return Ok(Exit::No);
        }
        Ok(Exit::Ok)
    }
}

fn human(l: &Landing, dry: bool) -> String {
    let branch = text::escape(l.branch.as_deref().unwrap_or("-"), false).into_owned();
    let what = match l.outcome {
        Outcome::Landed => match (&l.commit, dry) {
            (_, true) => "would land cleanly".to_string(),
            (Some(c), _) => format!("landed as {}", &c[..c.len().min(12)]),
            (None, _) => "landed".to_string(),
        },
        Outcome::NothingToLand => "nothing to land".to_string(),
        Outcome::Skipped => format!(
            "skipped: {}",
            text::escape(l.note.as_deref().unwrap_or(""), false)
        ),
        Outcome::Conflict => {
            let files: Vec<String> = l
                .files
                .iter()
                .map(|f| text::escape(f, false).into_owned())
                .collect();
            let mut s = format!("conflict in {}", files.join(", "));
            if let Some(q) = l.queued {
                s.push_str(&format!("; queued task {q} to resolve it"));
            }
            s
        }
    };
    format!("task {} ({branch}): {what}", l.task)
}
