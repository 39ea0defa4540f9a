//! MCP (SPEC §9): the server's session state here; JSON-RPC framing and
//! dispatch in [`protocol`] (one message per line in, at most one reply out,
//! through the pure [`handle`] function); the four tools over the same queue
//! the command-line tools use in [`tools`]; and the one JSON-RPC client that
//! drives an `orch-mcp` over its pipes in [`client`].

use std::path::PathBuf;

use crate::db::Db;

pub mod client;
pub mod protocol;
#[cfg(test)]
mod tests;
pub mod tools;

pub use protocol::*;
pub use tools::*;

/// Protocol revisions this server speaks, newest first. A client asking for
/// one of them gets it back; any other request is answered with the first.
pub const PROTOCOL_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// The server's name in `serverInfo`.
pub const SERVER_NAME: &str = "orch-mcp";

/// How much of a task's result or error `batch_status` returns.
pub const MAX_RESULT_CHARS: usize = 4000;

/// What the server tells the model about itself in `initialize`.
pub const INSTRUCTIONS: &str = "orch makes Claude Code sub-agents run in parallel. \
Queue each piece of work with queue_parallel_task (one call per task), then call \
execute_parallel_batch once: it returns the Agent tool calls of every ready task. \
Send ALL of those Agent calls together in ONE assistant message, with nothing else in \
it: Agent calls sent in separate messages run one after another, not in parallel.";

/// Where the database comes from: resolved (SPEC §2) at the first tool call,
/// so that `initialize` and `tools/list` never touch the file system.
#[derive(Debug, Clone)]
pub enum DbSource {
    /// `--db` if given, else `ORCH_DB`, the nearest `.orch/orch.db`, the per-user file.
    Resolve(Option<PathBuf>),
    /// A private in-memory database (tests).
    Memory,
}

/// A session's state: the negotiated protocol and the lazily opened database.
pub struct State {
    source: DbSource,
    db: Option<Db>,
    /// Where agent definitions are looked up (`.claude/agents/` here and above).
    pub cwd: PathBuf,
    /// The protocol revision agreed in `initialize`, once it happened.
    pub protocol: Option<String>,
    /// Whether the client sent `notifications/initialized`.
    pub initialized: bool,
    /// Where notes for people go (the server sends them to stderr; none by default).
    pub log: Box<dyn FnMut(&str)>,
    /// Hook-tracked agents whose end never came for this long are reconciled
    /// as lost when `execute_parallel_batch` batches.
    pub stale_after: std::time::Duration,
}

impl State {
    pub fn new(source: DbSource, cwd: PathBuf) -> State {
        State {
            source,
            db: None,
            cwd,
            protocol: None,
            initialized: false,
            log: Box::new(|_| {}),
            stale_after: crate::limits::DEFAULT_STALE_AFTER,
        }
    }

    /// Whether the database has been opened yet.
    pub fn db_open(&self) -> bool {
        self.db.is_some()
    }

    /// The database, opened on first use. A failure is not remembered: the
    /// next call tries again (the file may have been fixed meanwhile).
    fn db(&mut self) -> Result<&Db, String> {
        if self.db.is_none() {
            let opened = match &self.source {
                DbSource::Memory => Db::open_in_memory(),
                DbSource::Resolve(flag) => Db::open_resolved(flag.as_deref()),
            };
            self.db = Some(opened.map_err(|e| format!("cannot open the orch database: {e}"))?);
        }
        self.db.as_ref().ok_or_else(|| "no database".to_string())
    }

    /// The database for a tool that only reads: like [`State::db`], but a
    /// missing file is `no database at PATH` and nothing is created.
    fn existing_db(&mut self) -> Result<&Db, String> {
        if self.db.is_none() {
            if let DbSource::Resolve(flag) = &self.source {
                let opened = crate::db::resolve(flag.as_deref())
                    .and_then(|loc| Db::open_existing(&loc))
                    .map_err(|e| format!("cannot open the orch database: {e}"))?;
                self.db = Some(opened);
            }
        }
        self.db()
    }

    fn note(&mut self, s: &str) {
        (self.log)(s)
    }
}
