//! The real tier: the pinned Claude Code CLI (`tests/claude_code/`), run in a
//! scratch git project with a scratch HOME, against the scripted model of
//! `tests/real/model.py` on 127.0.0.1. Every proof asserts on orch's database
//! and on the model's request log, never on the model's prose.
//!
//! Beside it, the other tests that need more than cargo: real third-party MCP
//! clients (`mcp_clients`), real terminals (`terminal`), and file-system
//! faults that need root (`faults`), and `scripts/stress.sh`, whose checks
//! are Python (`stress`).
//!
//! Built only with `--features real-tier` (`scripts/test.sh` runs it after the
//! hermetic tier, once `scripts/test-deps.sh` installed the CLI). A missing
//! prerequisite fails the test with a message; nothing is skipped.

#[path = "../common/mod.rs"]
mod common;
mod harness;

mod agent_options;
mod agents;
mod cli;
mod faults;
mod fidelity;
mod guided;
mod hooks;
mod jobs;
mod limits;
mod mcp;
mod mcp_clients;
mod page;
mod paste;
mod run;
mod stress;
mod terminal;
mod workflow;
