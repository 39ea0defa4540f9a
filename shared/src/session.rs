//! Judging real Claude Code sessions from the agent calls that `orch-hook`
//! recorded in `agent_calls`: groups of calls launched together, each judged
//! with [`crate::intervals`]. (To be built with the hook issue.)

use crate::cli::{DbArg, Out};
use crate::error::Exit;

/// `orch-verify session` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct SessionArgs {
    /// Only this Claude Code session id.
    #[arg(long)]
    pub session: Option<String>,
    /// Only calls started since this time (RFC 3339) or this long ago (10m, 2h).
    #[arg(long)]
    pub since: Option<String>,
    /// One JSON object per group.
    #[arg(long)]
    pub json: bool,
}

/// Runs `orch-verify session`.
pub fn command(_db: &DbArg, _args: SessionArgs, _out: &mut Out) -> anyhow::Result<Exit> {
    anyhow::bail!("not built yet")
}
