//! The single integration-test binary: each module drives one tool through
//! its real binary on a real temporary SQLite file.

mod common;

mod batch;
mod claude_tasks;
mod database;
mod doctor;
mod emit;
mod front;
mod hook;
mod mcp;
mod msg;
mod queue;
mod readme;
mod run;
mod stress;
mod terminal;
mod verify;
mod workflow;
