//! `orch`: the front that runs `orch-NAME ARGS…` for `orch NAME ARGS…`.

use std::ffi::OsString;

use clap::{Parser, Subcommand};

use crate::suite;
use crate::{Out, Tool};
use orch_core::error::Exit;

const ABOUT: &str = "Make AI coding agents run in parallel, and prove it.

orch NAME ARGS... runs orch-NAME ARGS... (its own directory first, then PATH).";

const EXAMPLES: &str = "\
Tools (orch NAME --help for each):
  queue    add, list, show, cancel tasks; record their start and result
  batch    claim the ready tasks into a batch; plan waves from dependencies
  emit     print a batch as the one message for Claude Code (or JSON, Markdown, sh)
  verify   prove from timestamps that agents really ran at the same time
  hook     Claude Code hooks: auto-batching, every agent's start and end
  mcp      the same queue as an MCP server
  run      run a batch headless through claude -p or any agent command
  land     merge the branches of done tasks, in dependency order
  msg      a mailbox between agents, each message delivered once
  events   the journal of every state change: print, follow, act on it
Any orch-NAME on PATH runs as `orch NAME`; `orch --list` shows what is installed.

Examples:
  orch queue add reviewer 'Review src/db.rs'
  orch batch create | orch emit
  orch verify selftest
  orch --list";

/// The orch front.
#[derive(Debug, Parser)]
#[command(name = "orch", version, about = ABOUT, after_help = EXAMPLES, allow_external_subcommands = true, arg_required_else_help = true)]
pub struct Cli {
    /// List every orch-* tool found.
    #[arg(long)]
    pub list: bool,
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Check what is set up (tools, database, Claude Code, hooks, MCP, clipboard, agent CLI) and how to fix the rest.
    #[command(after_help = crate::doctor::EXAMPLES)]
    Doctor(crate::doctor::Args),
    /// One screen: tasks by status, batches in flight, verification verdicts, agent calls.
    #[command(after_help = crate::status::EXAMPLES)]
    Status(crate::status::Args),
    /// Print shell completions for orch and every orch-* tool.
    #[command(after_help = crate::completions::EXAMPLES)]
    Completions(crate::completions::Args),
    /// Write man pages for orch and every orch-* tool into DIR.
    #[command(hide = true, after_help = crate::completions::MAN_EXAMPLES)]
    Man(crate::completions::ManArgs),
    #[command(external_subcommand)]
    External(Vec<OsString>),
}

impl Tool for Cli {
    const NAME: &'static str = "orch";

    fn run(self) -> anyhow::Result<Exit> {
        if self.list {
            let mut out = Out::new();
            for (name, path) in suite::discover() {
                out.line(format_args!("{name:<10} {}", orch_core::text::path(&path)))?;
            }
            out.flush()?;
            return Ok(Exit::Ok);
        }
        match self.cmd {
            Some(Cmd::Doctor(args)) => crate::doctor::run(args),
            Some(Cmd::Status(args)) => crate::status::run(args),
            Some(Cmd::Completions(args)) => {
                crate::completions::run(args, <Cli as clap::CommandFactory>::command)
            }
            Some(Cmd::Man(args)) => {
                crate::completions::man(args, <Cli as clap::CommandFactory>::command)
            }
            Some(Cmd::External(args)) => external(args),
            None => anyhow::bail!("no command given (try orch --list)"),
        }
    }
}

fn external(mut args: Vec<OsString>) -> anyhow::Result<Exit> {
    let name = args.remove(0);
    let name = name.to_string_lossy();
    match suite::find(&name) {
        Some(tool) => {
            let err = suite::exec(&tool, &args);
            anyhow::bail!("cannot run {}: {err}", tool.display())
        }
        None => {
            let names: Vec<String> = suite::discover().into_keys().collect();
            anyhow::bail!(
                "no command '{name}' (no orch-{name} beside orch or on PATH); available: {}",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn help_names_every_tool_of_the_suite() {
        for t in crate::suite::SUITE {
            assert!(
                super::EXAMPLES.contains(&format!("\n  {:<9}", t.name)),
                "orch --help does not list {}",
                t.name
            );
        }
    }
}
