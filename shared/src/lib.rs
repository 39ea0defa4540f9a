//! The library behind every orch binary: the SQLite store and the concepts
//! that live in it (tasks, batches, messages, verification runs, agent calls),
//! the renderers, and the command-line front ends the thin `main.rs` files call.

pub mod agent_options;
pub mod agents;
pub mod batch;
pub mod child;
pub mod cli;
pub mod clipboard;
pub mod completions;
pub mod db;
pub mod doctor;
pub mod emit;
pub mod error;
pub mod front;
pub mod git;
pub mod hook;
pub mod intervals;
pub mod land;
pub mod mcp;
pub mod msg;
pub mod run;
pub mod session;
pub mod settings_file;
pub mod status;
pub mod task;
pub mod text;
pub mod time;
pub mod touches;
pub mod verify;
pub mod worktree;

pub use error::{Error, Exit, Result};
