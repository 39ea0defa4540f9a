//! Everything whose format Claude Code owns: where its user and project
//! directories are (one definition, here), its settings files (`settings`),
//! the orch-hook entries in them (`hooks`), and agent definitions
//! (`agents`). When Claude Code changes a format, the fix lands here.

pub mod agents;
pub mod hooks;
pub mod settings;
pub mod tasks;

use std::path::{Path, PathBuf};

/// The variable that moves Claude Code's user directory (default `~/.claude`).
pub const CONFIG_DIR_ENV: &str = "CLAUDE_CONFIG_DIR";

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
        .or_else(|| home().map(|h| h.join(".claude")))
}

/// The project directory for `cwd`: the nearest one with `.claude/` or `.git`
/// (never the home directory itself), else `cwd`.
pub fn project_dir(cwd: &Path, home: Option<&Path>) -> PathBuf {
    for dir in cwd.ancestors() {
        if Some(dir) == home {
            break;
        }
        if dir.join(".claude").is_dir() || dir.join(".git").exists() {
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
