//! The domain and the store behind every orch tool: the SQLite file and the
//! concepts that live in it (tasks, batches, messages, verification runs,
//! agent calls), and the formats other programs read (emit, MCP, hooks).
//! Nothing here parses flags or prints for people; `orch-cli` does that.

pub mod agent_options;
pub mod atomic;
pub mod attempt;
pub mod batch;
pub mod calls;
pub mod child;
pub mod claude;
pub mod clipboard;
pub mod db;
pub mod dispatch;
pub mod emit;
pub mod engines;
pub mod errclass;
pub mod error;
pub mod event;
pub mod git;
pub mod hook;
pub mod intervals;
pub mod job;
pub mod jsonl;
pub mod land;
pub mod lease;
pub mod limits;
pub mod mcp;
pub mod msg;
pub mod run;
pub mod settings;
pub mod task;
pub mod tasklog;
pub mod text;
pub mod time;
pub mod touches;
pub mod verify;
pub mod workflow;
pub mod worktree;

pub use error::{Error, Exit, Result};

#[cfg(test)]
mod tests;
