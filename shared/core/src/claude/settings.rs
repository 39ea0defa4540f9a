//! Claude Code's JSON settings files (`.claude/settings.json`,
//! `.claude/settings.local.json`, `~/.claude/settings.json`): reading them
//! without ever touching a file that is not a JSON object, rendering them as
//! Claude Code writes them, and replacing them atomically.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The settings file Claude Code shares with a project's team, in `.claude/`.
pub const SHARED: &str = "settings.json";
/// The project's personal settings file, in `.claude/`.
pub const LOCAL: &str = "settings.local.json";

/// A project's shared settings under the project directory `dir`:
/// `dir/.claude/settings.json`.
pub fn shared_path(dir: &Path) -> PathBuf {
    dir.join(".claude").join(SHARED)
}

/// A project's personal settings under the project directory `dir`:
/// `dir/.claude/settings.local.json`.
pub fn local_path(dir: &Path) -> PathBuf {
    dir.join(".claude").join(LOCAL)
}

/// The user's settings: `settings.json` in [`super::user_dir`]
/// (`$CLAUDE_CONFIG_DIR`, default `~/.claude`).
pub fn user_path() -> Option<PathBuf> {
    super::user_dir().map(|d| d.join(SHARED))
}

/// The settings files, most specific first, that Claude Code started in
/// `dir` reads permission rules from: local, project, user.
pub fn permission_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = vec![local_path(dir), shared_path(dir)];
    files.extend(user_path());
    files
}

/// The error for a settings file orch will not change, with the way out.
pub fn wrong(path: &Path, what: &str) -> Error {
    Error::invalid(format!(
        "{}: {what}; fix it by hand, orch left the file untouched",
        path.display()
    ))
}

/// Reads a settings file: `None` when it does not exist; an error (and nothing
/// touched) when it is not a JSON object.
pub fn read(path: &Path) -> Result<Option<Value>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::Io {
                path: path.to_path_buf(),
                what: "read",
                source,
            })
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Some(Value::Object(Map::new())));
    }
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
        Error::invalid(format!(
            "{} is not valid JSON (line {}, column {}): {}; fix it by hand, orch left the file untouched",
            path.display(),
            e.line(),
            e.column(),
            e
        ))
    })?;
    if !v.is_object() {
        return Err(wrong(path, "the settings are not a JSON object"));
    }
    Ok(Some(v))
}

/// Renders settings as Claude Code writes them: 2-space indentation, a final newline.
pub fn render(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

/// Writes settings atomically, keeping the mode of the file replaced (a
/// symlink's target is written) and making its directory: see [`crate::atomic::write`].
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            what: "create directory",
            source,
        })?;
    }
    crate::atomic::write(path, text.as_bytes(), crate::atomic::Access::Keep)
}
