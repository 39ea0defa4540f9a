//! Everything whose format Claude Code owns: where its user and project
//! directories are (one definition, here), its settings files and their
//! permission rules (`settings`), the orch-hook entries in them (`hooks`),
//! agent definitions (`agents`), MCP registrations (`mcp`) and the native
//! task list (`tasks`). When Claude Code changes a format, the fix lands here.

pub mod agents;
pub mod hooks;
pub mod mcp;
pub mod settings;
pub mod tasks;

use std::path::{Path, PathBuf};

/// The variable that moves Claude Code's user directory (default `~/.claude`).
pub const CONFIG_DIR_ENV: &str = "CLAUDE_CONFIG_DIR";

/// The directory of a project's Claude Code files, under the project.
pub const PROJECT_DIR: &str = ".claude";

/// `dir/.claude`: where Claude Code keeps a project's settings, agents,
/// commands and workflows.
pub fn project_claude_dir(dir: &Path) -> PathBuf {
    dir.join(PROJECT_DIR)
}

/// The home directory as Claude Code finds it: `$HOME`, else the password
/// database's.
pub fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| directories::BaseDirs::new().map(|b| b.home_dir().to_path_buf()))
}

/// Claude Code's user directory: `$CLAUDE_CONFIG_DIR`, else `~/.claude`.
pub fn user_dir() -> Option<PathBuf> {
    std::env::var_os(CONFIG_DIR_ENV)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(PROJECT_DIR)))
}

/// Claude Code's global config file (MCP servers of the user and local
/// scopes, per-project state): `.claude.json` in `$CLAUDE_CONFIG_DIR` when
/// that is set, else in the home directory, as the CLI resolves it.
pub fn global_config() -> Option<PathBuf> {
    std::env::var_os(CONFIG_DIR_ENV)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(home)
        .map(|d| d.join(".claude.json"))
}

/// The project directory for `cwd`: the nearest one with `.claude/` or `.git`
/// (never the home directory itself), else `cwd`.
pub fn project_dir(cwd: &Path, home: Option<&Path>) -> PathBuf {
    for dir in cwd.ancestors() {
        if Some(dir) == home {
            break;
        }
        if project_claude_dir(dir).is_dir() || dir.join(".git").exists() {
            return dir.to_path_buf();
        }
    }
    cwd.to_path_buf()
}

/// `cwd` and its parents, stopping before `home` (whose `.claude/` is the
/// user's, not a project's): where Claude Code looks for project settings.
pub fn project_dirs(cwd: &Path, home: Option<&Path>) -> Vec<PathBuf> {
    cwd.ancestors()
        .take_while(|d| Some(*d) != home)
        .map(Path::to_path_buf)
        .collect()
}
