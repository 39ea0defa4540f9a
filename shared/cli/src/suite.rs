//! The `orch` front: finding `orch-*` tools (its own directory first, then
//! PATH) and handing over to one, git style.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use clap::{Command, CommandFactory};

/// A tool of the suite: the NAME in `orch-NAME`, and its clap definition.
pub struct SuiteTool {
    pub name: &'static str,
    pub command: fn() -> Command,
}

/// Every `orch-NAME` binary this build ships, in `orch --help` order.
pub const SUITE: &[SuiteTool] = &[
    SuiteTool {
        name: "queue",
        command: <crate::queue::Cli as CommandFactory>::command,
    },
    SuiteTool {
        name: "batch",
        command: <crate::batch::Cli as CommandFactory>::command,
    },
    SuiteTool {
        name: "emit",
        command: <crate::emit::Cli as CommandFactory>::command,
    },
    SuiteTool {
        name: "verify",
        command: <crate::verify::Cli as CommandFactory>::command,
    },
    SuiteTool {
        name: "hook",
        command: <crate::hook::Cli as CommandFactory>::command,
    },
    SuiteTool {
        name: "msg",
        command: <crate::msg::Cli as CommandFactory>::command,
    },
    SuiteTool {
        name: "mcp",
        command: <crate::mcp::Cli as CommandFactory>::command,
    },
    SuiteTool {
        name: "run",
        command: <crate::run::Cli as CommandFactory>::command,
    },
    SuiteTool {
        name: "events",
        command: <crate::events::Cli as CommandFactory>::command,
    },
    SuiteTool {
        name: "land",
        command: <crate::land::Cli as CommandFactory>::command,
    },
];

/// Names `orch` answers itself; an `orch-NAME` with one of these names is never run.
pub const BUILT_IN: &[&str] = &["doctor", "status", "completions", "man", "help"];

/// Every `orch-NAME` tool found, by NAME, sorted; the first of each name wins.
pub fn discover() -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    for dir in search_dirs() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let file_name = e.file_name();
            let Some(name) = file_name.to_str().and_then(|n| n.strip_prefix("orch-")) else {
                continue;
            };
            if name.is_empty() || name.contains('.') || found.contains_key(name) {
                continue;
            }
            let path = e.path();
            if is_executable(&path) {
                found.insert(name.to_string(), path);
            }
        }
    }
    found
}

/// Finds one tool by name.
pub fn find(name: &str) -> Option<PathBuf> {
    if name.is_empty() || name.contains('/') {
        return None;
    }
    search_dirs()
        .into_iter()
        .map(|d| d.join(format!("orch-{name}")))
        .find(|p| is_executable(p))
}

/// This binary's directory, then each PATH directory.
pub fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        dirs.push(dir);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if !d.as_os_str().is_empty() && !dirs.contains(&d) {
                dirs.push(d);
            }
        }
    }
    dirs
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Replaces this process with `tool ARGS…`, with `ORCH` set to this binary.
/// Returns only when that fails.
pub fn exec(tool: &Path, args: &[OsString]) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(tool);
    cmd.args(args);
    if let Ok(me) = std::env::current_exe() {
        cmd.env("ORCH", me);
    }
    cmd.exec()
}
