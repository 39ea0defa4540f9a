//! `orch-emit`: render a batch as the one message for Claude Code, JSON,
//! Markdown or a shell script.

use anyhow::Context;
use clap::Parser;

use crate::{id_or_stdin, DbArg, Out, Tool};
use orch_core::claude::agents::AgentIndex;
use orch_core::clipboard;
use orch_core::emit;
use orch_core::error::Exit;

const EXAMPLES: &str = "\
Examples:
  orch-batch create | orch-emit              # the message to paste into Claude Code
  orch-emit 3 --copy                          # ... and copy it to the clipboard
  orch-emit 3 --format json | jq '.calls[0]'
  orch-emit 3 --with-mailbox                  # agents may message each other with orch-msg
  orch-emit 3 --format shell > run.sh && sh run.sh
  orch-emit --format workflow --plan --install   # every queued wave as /orch-batch-N";

/// Render a batch: the one message that starts every agent at once.
#[derive(Debug, Parser)]
#[command(name = "orch-emit", version, after_help = EXAMPLES)]
pub struct Cli {
    #[command(flatten)]
    pub db: DbArg,
    /// The batch id [default: read from stdin].
    pub batch: Option<i64>,
    /// What to print.
    #[arg(long, short, value_enum, default_value_t = Format::Claude)]
    pub format: Format,
    /// Also copy the output to the clipboard (wl-copy, xclip, xsel or pbcopy).
    #[arg(long)]
    pub copy: bool,
    /// Tell each agent its mailbox name and how to message its peers with orch-msg.
    #[arg(long)]
    pub with_mailbox: bool,
    /// github-actions, k8s-job: run at most N tasks at a time [default: all].
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub jobs: Option<usize>,
    /// github-actions: the bundle's path in the repository [default: .orch/bundle-BATCH.jsonl].
    #[arg(long, value_name = "PATH")]
    pub bundle: Option<String>,
    /// k8s-job: the container image holding orch and the agent CLI.
    #[arg(long, value_name = "IMAGE", default_value = "orch-agent:latest")]
    pub image: String,
    /// With --format workflow: put every queued task into a new batch and
    /// emit all its waves, not only the tasks that are ready now.
    #[arg(long, conflicts_with = "batch")]
    pub plan: bool,
    /// With --format workflow: also write it to .claude/workflows/orch-batch-N.js
    /// (a named workflow) and offer the rule that lets it run unattended.
    #[arg(long)]
    pub install: bool,
    /// With --install: add the allow rule to .claude/settings.local.json without asking.
    #[arg(long, requires = "install")]
    pub allow: bool,
    /// With --format workflow: run each agent in its own git worktree.
    #[arg(long)]
    pub worktree: bool,
}

impl Tool for Cli {
    const NAME: &'static str = "orch-emit";

    fn run(self) -> anyhow::Result<Exit> {
        // Every check that can fail comes before anything is written or printed.
        let clip = match self.copy {
            true => Some(clipboard::find().ok_or_else(clipboard::missing)?),
            false => None,
        };
        let workflow_only = self.plan || self.install || self.worktree;
        if workflow_only && self.format != Format::Workflow {
            anyhow::bail!("--plan, --install and --worktree go with --format workflow");
        }
        if self.plan {
            return super::workflow::emit_plan(&self.db, self.worktree, self.install, self.allow);
        }
        let id = id_or_stdin(self.batch, "batch")?;
        if matches!(self.format, Format::GithubActions | Format::K8sJob) {
            let bundle = self
                .bundle
                .clone()
                .unwrap_or(format!(".orch/bundle-{id}.jsonl"));
            let k8s = self.format == Format::K8sJob;
            return crate::jobs::emit_engine(&self.db, id, k8s, self.jobs, &bundle, &self.image);
        }
        crate::check_stdout()?;
        let loc = orch_core::db::resolve(self.db.path())?;
        let db = orch_core::db::Db::open_existing(&loc)?;
        let agents = AgentIndex::discover(&std::env::current_dir().unwrap_or_default());
        let mailbox = self.with_mailbox.then_some(&loc);
        if self.format == Format::Workflow && self.install {
            let cwd = std::env::current_dir().context("finding the current directory")?;
            super::workflow::check_rule_file(&cwd, self.allow)?;
        }
        let note = |n: &str| eprintln!("orch-emit: note: {n}");
        emit::emit(&db, id, &agents, mailbox, note, |e| {
            let text = match self.format {
                Format::Claude => e.render(emit::Format::Claude),
                Format::Json => e.render(emit::Format::Json),
                Format::Markdown => e.render(emit::Format::Markdown),
                Format::GithubActions | Format::K8sJob => unreachable!("handled above"),
                Format::Shell => {
                    let abs = std::path::absolute(&loc.path).unwrap_or(loc.path.clone());
                    e.render(emit::Format::Shell(&abs))
                }
                Format::Workflow => {
                    let text = orch_core::workflow::render(id, &e.tasks, &e.calls, self.worktree)?;
                    if self.install {
                        super::workflow::install(id, &text, self.allow)?;
                    }
                    text
                }
            };
            // Printed (and copied) first, marked emitted after: a message that
            // could not be delivered leaves the batch unemitted, and nothing was
            // written (exit 2).
            let mut out = Out::new();
            out.text(&text).and_then(|_| out.flush()).with_context(|| {
                format!("printing batch {id}'s message; the batch is not marked emitted")
            })?;
            if let Some(c) = &clip {
                c.copy(&text)?;
            }
            anyhow::Ok(())
        })?;
        drop(db);
        if let Some(c) = clip {
            eprintln!("orch-emit: copied to the clipboard ({})", c.program);
        }
        Ok(Exit::Ok)
    }
}

/// The output formats of `orch-emit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The one message to paste into Claude Code
    Claude,
    /// One JSON object for programs
    Json,
    /// A readable Markdown document
    Markdown,
    /// A POSIX sh script that runs every task with `claude -p` in parallel
    Shell,
    /// A GitHub Actions workflow running the batch's bundle as a matrix (see orch-batch export)
    GithubActions,
    /// A Kubernetes Indexed Job running the batch's bundle from a ConfigMap
    K8sJob,
    /// A script for Claude Code's Workflow tool: one parallel phase per wave
    Workflow,
}
