//! `orch-mcp`: not built yet.

use clap::Parser;

use super::{DbArg, Tool};
use crate::error::Exit;

/// orch-mcp (placeholder until its issue lands).
#[derive(Debug, Parser)]
#[command(name = "orch-mcp", version)]
pub struct Cli {
    #[command(flatten)]
    pub db: DbArg,
}

impl Tool for Cli {
    const NAME: &'static str = "orch-mcp";

    fn run(self) -> anyhow::Result<Exit> {
        anyhow::bail!("not built yet")
    }
}
