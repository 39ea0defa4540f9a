//! `orch-msg`: not built yet.

use clap::Parser;

use super::{DbArg, Tool};
use crate::error::Exit;

/// orch-msg (placeholder until its issue lands).
#[derive(Debug, Parser)]
#[command(name = "orch-msg", version)]
pub struct Cli {
    #[command(flatten)]
    pub db: DbArg,
}

impl Tool for Cli {
    const NAME: &'static str = "orch-msg";

    fn run(self) -> anyhow::Result<Exit> {
        anyhow::bail!("not built yet")
    }
}
