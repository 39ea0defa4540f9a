//! Jobs beyond one machine: `orch-batch export`, `orch-run job`,
//! `orch-run ingest` and the engines of `orch-emit` (github-actions, k8s-job).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::{DbArg, Out};
use orch_core::claude::agents::AgentIndex;
use orch_core::dispatch::{self, Input};
use orch_core::error::Exit;
use orch_core::job::{self, Bundle, Pick};
use orch_core::run::{self, Preset, Template};
use orch_core::text;

/// `orch-batch export BATCH [--out FILE] [--lease SPAN]`.
pub fn export(
    db: &DbArg,
    id: i64,
    out_file: Option<&Path>,
    lease: Option<Duration>,
) -> anyhow::Result<Exit> {
    if out_file.is_none() {
        crate::check_stdout()?;
    }
    let db = db.open_existing()?;
    let cwd = std::env::current_dir().unwrap_or_default();
    let agents = AgentIndex::discover(&cwd);
    let base = orch_core::run::job::git_head(&cwd);
    let (bundle, fresh) = dispatch::export(
        &db,
        id,
        lease.unwrap_or(dispatch::DEFAULT_LEASE),
        base,
        &|role| agents.subagent_type(role),
    )?;
    let text = bundle.render();
    match out_file {
        Some(p) => {
            // A reader never sees half a bundle; it holds prompts, so it is the owner's only.
            if let Err(e) =
                orch_core::atomic::write(p, text.as_bytes(), orch_core::atomic::Access::Private)
            {
                if fresh {
                    dispatch::undo(&db, id)?;
                }
                return Err(e).with_context(|| {
                    format!(
                        "writing {}; batch {id} is {}",
                        text::escape(&p.display().to_string(), false),
                        if fresh {
                            "not dispatched"
                        } else {
                            "still dispatched from before"
                        }
                    )
                });
            }
            eprintln!(
                "orch-batch: batch {id} dispatched: {} task{} in {}",
                bundle.tasks.len(),
                if bundle.tasks.len() == 1 { "" } else { "s" },
                text::escape(&p.display().to_string(), false)
            );
        }
        None => {
            let mut out = Out::new();
            if let Err(source) = out.text(&text).and_then(|_| out.flush()) {
                return Err(crate::NotPrinted {
                    what: format!(
                        "batch {id} is dispatched (`orch-batch release {id}` frees it), its bundle"
                    ),
                    source,
                }
                .into());
            }
        }
    }
    Ok(Exit::Ok)
}

/// Arguments of `orch-run job`.
#[derive(Debug, clap::Args)]
pub struct JobArgs {
    /// The bundle `orch-batch export` wrote.
    #[arg(long, value_name = "FILE")]
    pub bundle: PathBuf,
    /// The task at this index (0-based); `-` reads JOB_COMPLETION_INDEX, SLURM_ARRAY_TASK_ID or ORCH_JOB_INDEX.
    #[arg(
        long,
        value_name = "I",
        conflicts_with = "task",
        required_unless_present = "task"
    )]
    pub index: Option<String>,
    /// The task with this id.
    #[arg(long, value_name = "ID")]
    pub task: Option<i64>,
    /// Stop the agent after this long (seconds, or 90s, 10m, 1h); the task fails with class timeout.
    #[arg(long, value_name = "SECS", value_parser = crate::positive_span)]
    pub timeout: Option<Duration>,
    /// Push the branch orch/task-ID to origin after committing to it.
    #[arg(long)]
    pub push: bool,
    /// The agent CLI [default: claude].
    #[arg(long, value_enum, conflicts_with = "command")]
    pub agent: Option<crate::PresetArg>,
    /// The agent command, a template as for orch-run.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `orch-run job`: one task of a bundle, no database; prints its result record.
pub fn run_job(a: JobArgs) -> anyhow::Result<Exit> {
    let template = if a.command.is_empty() {
        Template::preset(a.agent.map_or(Preset::Claude, Preset::from))
    } else {
        Template::custom(a.command)?
    };
    let pick =
        match (a.index.as_deref(), a.task) {
            (Some("-"), _) => Pick::Index(job::index_from_env()?),
            (Some(i), _) => Pick::Index(i.parse().map_err(|_| {
                anyhow::anyhow!("--index {i:?} is not an index (0, 1, 2, ... or -)")
            })?),
            (None, Some(t)) => Pick::Task(t),
            (None, None) => bail!("give --index or --task"),
        };
    let bundle = Bundle::read(&a.bundle)?;
    let t = bundle.pick(&pick)?.clone();
    let program = run::locate(&template.program)?;
    crate::check_stdout()?;
    let cwd = std::env::current_dir().context("the working directory")?;
    // Nothing on stderr: `kubectl logs` merges it into the records.
    let rec =
        orch_core::run::job::run_one(&bundle, &t, &program, &template, &cwd, a.push, a.timeout)?;
    let mut out = Out::new();
    if let Err(source) = out.json(&rec).and_then(|_| out.flush()) {
        return Err(crate::NotPrinted {
            what: format!(
                "task {} ran (its work is on its branch, if any), its result record",
                t.id
            ),
            source,
        }
        .into());
    }
    Ok(if rec.outcome == orch_core::task::Status::Done {
        Exit::Ok
    } else {
        Exit::No
    })
}

/// `orch-run ingest FILE|DIR…`.
pub fn ingest(db: &DbArg, paths: &[PathBuf]) -> anyhow::Result<Exit> {
    let mut files = Vec::new();
    for p in paths {
        collect(p, &mut files)?;
    }
    if files.is_empty() {
        bail!(
            "no record files found in {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut inputs = Vec::new();
    for f in &files {
        let text = job::read_text(f)?;
        for (n, l) in text.lines().enumerate() {
            if l.trim().is_empty() {
                continue;
            }
            inputs.push(Input {
                label: format!(
                    "{}:{}",
                    text::escape(&f.display().to_string(), false),
                    n + 1
                ),
                text: l.to_string(),
            });
        }
    }
    let db = db.open_existing()?;
    let done = dispatch::ingest(&db, &inputs)?;
    for (label, task) in &done.skipped {
        eprintln!("orch-run: note: {label}: task {task} was already ingested; skipped");
    }
    eprintln!(
        "orch-run: ingested {} record{} ({} skipped)",
        done.recorded.len(),
        if done.recorded.len() == 1 { "" } else { "s" },
        done.skipped.len()
    );
    Ok(Exit::Ok)
}

/// Files named, and the files of directories named (recursively, sorted).
fn collect(p: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let m = std::fs::metadata(p).with_context(|| format!("reading {}", p.display()))?;
    if m.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
            .with_context(|| format!("reading {}", p.display()))?
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for e in entries {
            collect(&e, out)?;
        }
    } else {
        out.push(p.to_path_buf());
    }
    Ok(())
}

/// `orch-emit --format github-actions|k8s-job BATCH`: the engine's file on stdout.
pub fn emit_engine(
    db: &DbArg,
    id: i64,
    k8s: bool,
    jobs: Option<usize>,
    bundle: &str,
    image: &str,
) -> anyhow::Result<Exit> {
    if jobs == Some(0) {
        bail!("-j must be at least 1");
    }
    crate::check_stdout()?;
    let db = db.open_existing()?;
    let b = orch_core::batch::get(&db, id)?;
    let n = b
        .tasks
        .iter()
        .filter(|t| t.status == orch_core::task::Status::Batched)
        .count();
    if n == 0 {
        bail!("batch {id} has no task waiting to launch");
    }
    let j = jobs.unwrap_or(n).min(n);
    let text = if k8s {
        orch_core::engines::k8s_job(id, n, j, image)?
    } else {
        orch_core::engines::github_actions(id, n, j, bundle)?
    };
    let mut out = Out::new();
    out.text(&text)
        .and_then(|_| out.flush())
        .context("printing the workflow")?;
    Ok(Exit::Ok)
}
