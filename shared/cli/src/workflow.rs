//! `orch-emit --format workflow`: `--plan` (every queued wave as one batch)
//! and `--install` (the named workflow, and the allow rule offered).

use std::io::{self, IsTerminal, Write};

use anyhow::Context;

use crate::{DbArg, Out};
use orch_core::batch;
use orch_core::claude::agents::AgentIndex;
use orch_core::claude::settings;
use orch_core::emit;
use orch_core::error::Exit;
use orch_core::task::Status;
use orch_core::workflow;

/// `--plan`: puts every plannable queued task into a new batch per wave and
/// prints their workflow; the batch is made, the script rendered (and written
/// under `.claude/workflows/`) in one transaction, so a script refused as too
/// large, or a file there that is not orch's, leaves the queue as it was.
/// Nothing in that transaction waits for the user: the allow rule is offered
/// (and the question asked at a terminal) after the commit, so no writer of
/// the database waits for an answer. `worktree`, `install` and `allow` are
/// `orch-emit`'s flags.
pub fn emit_plan(db: &DbArg, worktree: bool, install: bool, allow: bool) -> anyhow::Result<Exit> {
    crate::check_stdout()?;
    let loc = orch_core::db::resolve(db.path())?;
    let db = orch_core::db::Db::open_existing(&loc)?;
    let cwd = std::env::current_dir().unwrap_or_default();
    let agents = AgentIndex::discover(&cwd);
    let plan = batch::plan(&db, usize::MAX)?;
    for b in &plan.blocked {
        eprintln!("orch-emit: note: task {} is left out: {}", b.id, b.reason);
    }
    if plan.waves.is_empty() {
        anyhow::bail!("no queued task can be planned (add tasks with orch-queue add)");
    }
    if install {
        check_rule_file(&cwd, allow)?;
    }
    // One batch per wave, so that orch-verify judges each wave on its own;
    // the workflow is named after the first.
    let cwd_install = if install {
        Some(std::env::current_dir().context("finding the current directory")?)
    } else {
        None
    };
    let (made, text, notes, installed) = db.write(|tx| {
        let mut tasks = Vec::new();
        let mut made = Vec::new();
        for wave in &plan.waves {
            let ids: Vec<i64> = wave.iter().map(|t| t.id).collect();
            let b = batch::create_of_in(tx, &ids)?;
            made.push(b.id);
            tasks.extend(b.tasks.into_iter().filter(|t| t.status == Status::Batched));
        }
        let first = made.first().copied().unwrap_or_default();
        let e = emit::prepare(first, tasks, &agents, &[]);
        let text = workflow::render(first, &e.tasks, &e.calls, worktree)?;
        let installed = match &cwd_install {
            Some(cwd) => {
                let path = workflow::install_path(cwd, first);
                workflow::install(&path, &text)?;
                Some(path)
            }
            None => None,
        };
        Ok((made, text, e.notes, installed))
    })?;
    // Committed: from here on the user may be asked, no lock is held.
    if let (Some(path), Some(cwd)) = (&installed, &cwd_install) {
        let first = made.first().copied().unwrap_or_default();
        announce(path, first);
        if let Err(e) = offer_rule(first, cwd, allow) {
            // Committed already: say what is there, so nobody makes it again.
            let ids: Vec<String> = made.iter().map(|b| b.to_string()).collect();
            eprintln!(
                "orch-emit: error: batches {} were made (not marked emitted) and their workflow installed as {}, but the allow rule could not be added: {}; print the workflow with orch-emit --format workflow {first}",
                ids.join(", "),
                orch_core::text::path(path),
                orch_core::text::escape(&crate::one_line(&e), false)
            );
            return Ok(Exit::NotPrinted);
        }
    }
    for n in notes {
        eprintln!("orch-emit: note: {n}");
    }
    let mut out = Out::new();
    // The batches are committed: a workflow that could not be printed is exit 3.
    out.answer(
        || {
            let ids: Vec<String> = made.iter().map(|b| b.to_string()).collect();
            format!(
                "batches {} were made (not marked emitted); print their workflow with orch-emit --format workflow BATCH",
                ids.join(", ")
            )
        },
        |o| o.text(&text),
    )?;
    for b in made {
        batch::mark_emitted(&db, b)?;
    }
    Ok(Exit::Ok)
}

/// Writes batch `id`'s workflow under `.claude/workflows/` of the current
/// directory and offers the rule `Workflow(orch-batch-N)`: added with
/// `--allow` or a "y" at the terminal, otherwise only shown.
pub fn install(id: i64, script: &str, allow: bool) -> anyhow::Result<()> {
    let cwd = std::env::current_dir().context("finding the current directory")?;
    let path = workflow::install_path(&cwd, id);
    check_rule_file(&cwd, allow)?;
    workflow::install(&path, script)?;
    announce(&path, id);
    offer_rule(id, &cwd, allow)
}

/// Refuses, before anything is written, a settings file the allow rule may
/// be added to (with `--allow`, or at a terminal that may say "y") but could
/// not be: so nothing after a commit fails for that reason.
pub(crate) fn check_rule_file(cwd: &std::path::Path, allow: bool) -> anyhow::Result<()> {
    if allow || (io::stdin().is_terminal() && io::stderr().is_terminal()) {
        settings::check_allowable(&settings::local_path(cwd))?;
    }
    Ok(())
}

fn announce(path: &std::path::Path, id: i64) {
    eprintln!(
        "orch-emit: installed {}; run it in Claude Code with /{}",
        orch_core::text::path(path),
        workflow::name(id)
    );
}

fn offer_rule(id: i64, cwd: &std::path::Path, allow: bool) -> anyhow::Result<()> {
    let rule = workflow::allow_rule(id);
    let local = settings::local_path(cwd);
    let files = settings::permission_files(cwd);
    if let Some(found) = workflow::find_rule(&files, &rule) {
        eprintln!(
            "orch-emit: {rule} is already allowed in {}",
            orch_core::text::path(&found)
        );
        return Ok(());
    }
    let yes =
        allow || (io::stdin().is_terminal() && io::stderr().is_terminal() && ask(&rule, &local));
    if yes {
        workflow::add_rule(&local, &rule)?;
        eprintln!(
            "orch-emit: added {rule} to {}",
            orch_core::text::path(&local)
        );
    } else {
        eprintln!(
            "orch-emit: note: without the rule Claude Code asks before the workflow runs; to allow it, add \"{rule}\" to permissions.allow in {} (or rerun with --allow)",
            orch_core::text::path(&local)
        );
    }
    Ok(())
}

fn ask(rule: &str, local: &std::path::Path) -> bool {
    let mut w = io::stderr();
    let _ = write!(
        w,
        "Allow the workflow to run without asking: add \"{rule}\" to {}? [y/N] ",
        orch_core::text::path(local)
    );
    let _ = w.flush();
    let mut line = String::new();
    match io::stdin().read_line(&mut line) {
        Ok(0) | Err(_) => false,
        Ok(_) => matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes"),
    }
}
