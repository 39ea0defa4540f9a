//! `orch-verify`: not built yet.

use clap::Parser;

use super::{DbArg, Tool};
use crate::error::Exit;

/// orch-verify (placeholder until its issue lands).
#[derive(Debug, Parser)]
#[command(name = "orch-verify", version)]
pub struct Cli {
    #[command(flatten)]
    pub db: DbArg,
}

impl Tool for Cli {
    const NAME: &'static str = "orch-verify";

    fn run(self) -> anyhow::Result<Exit> {
        anyhow::bail!("not built yet")
    }
}
