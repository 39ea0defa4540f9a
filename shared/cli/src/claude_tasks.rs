//! `orch-queue export|import --claude-tasks LIST`: orch's tasks in Claude
//! Code's native task list, and their statuses back.

use crate::{DbArg, Out};
use orch_core::claude::tasks as claude_tasks;
use orch_core::error::Exit;
use orch_core::task::{self, Status};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The task list: the directory name under CLAUDE_CONFIG_DIR (else ~/.claude)/tasks/.
    #[arg(long, value_name = "LIST")]
    pub claude_tasks: String,
    /// Print what was done as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn export(db: &DbArg, a: Args, out: &mut Out) -> anyhow::Result<Exit> {
    crate::check_stdout()?;
    let dir = claude_tasks::list_dir(&claude_tasks::config_dir()?, &a.claude_tasks)?;
    let loc = orch_core::db::resolve(db.path())?;
    let db = orch_core::db::Db::open_existing(&loc)?;
    let tasks = db.read(|tx| {
        let mut all = Vec::new();
        for s in [Status::Queued, Status::Batched, Status::Running] {
            all.extend(task::list_in(
                tx,
                &task::TaskFilter {
                    status: Some(s),
                    ..Default::default()
                },
            )?);
        }
        all.sort_by_key(|t| t.id);
        Ok(all)
    })?;
    let done = claude_tasks::export(&dir, &tasks)?;
    out.answer(
        || {
            format!(
                "{} tasks were exported to {}",
                done.added.len(),
                dir.display()
            )
        },
        |o| {
            if a.json {
                o.json(&done)
            } else {
                o.line(format!(
                    "exported {} task{} to {} ({} already there)",
                    done.added.len(),
                    if done.added.len() == 1 { "" } else { "s" },
                    orch_core::text::path(&dir),
                    done.already.len()
                ))
            }
        },
    )?;
    Ok(Exit::Ok)
}

pub fn import(db: &DbArg, a: Args, out: &mut Out) -> anyhow::Result<Exit> {
    crate::check_stdout()?;
    let dir = claude_tasks::list_dir(&claude_tasks::config_dir()?, &a.claude_tasks)?;
    if !dir.is_dir() {
        anyhow::bail!("no task list at {}", dir.display());
    }
    let loc = orch_core::db::resolve(db.path())?;
    let db = orch_core::db::Db::open_existing(&loc)?;
    let done = db.write(|tx| claude_tasks::import_in(tx, &dir))?;
    out.answer(
        || "the statuses were imported".to_string(),
        |o| {
            if a.json {
                o.json(&done)
            } else {
                o.line(format!(
                    "{} done, {} started, {} unchanged",
                    done.done.len(),
                    done.started.len(),
                    done.unchanged.len()
                ))
            }
        },
    )?;
    Ok(Exit::Ok)
}
