//! The single integration-test binary: each module drives one tool through
//! its real binary on a real temporary SQLite file.

mod common;

mod agent_options;
mod bad_stdout;
mod batch;
mod claude_tasks;
mod completions;
mod damaged;
mod database;
mod doctor;
mod emit;
mod events;
mod front;
mod help;
mod hook;
mod hostile;
mod jobs;
mod land;
mod long_runs;
mod mcp;
mod msg;
mod queue;
mod readme;
mod run;
mod run_limits;
mod status;
mod stress;
mod terminal;
mod verify;
mod workflow;
