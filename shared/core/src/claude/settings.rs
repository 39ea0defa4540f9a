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
    super::project_claude_dir(dir).join(SHARED)
}

/// A project's personal settings under the project directory `dir`:
/// `dir/.claude/settings.local.json`.
pub fn local_path(dir: &Path) -> PathBuf {
    super::project_claude_dir(dir).join(LOCAL)
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

/// Whether settings `v` hold one of `rules` in `permissions.allow`.
pub fn allows(v: &Value, rules: &[&str]) -> bool {
    v.pointer("/permissions/allow")
        .and_then(|a| a.as_array())
        .is_some_and(|a| {
            a.iter()
                .filter_map(|x| x.as_str())
                .any(|x| rules.contains(&x.trim()))
        })
}

/// The first settings file among `files` whose `permissions.allow` holds one
/// of `rules`; a file that is missing or unreadable allows nothing.
pub fn find_allowed(files: &[PathBuf], rules: &[&str]) -> Option<PathBuf> {
    files
        .iter()
        .find(|f| read(f).ok().flatten().is_some_and(|v| allows(&v, rules)))
        .cloned()
}

/// Adds `rule` to `permissions.allow` in the settings file `path` (made
/// when missing, every other key kept) unless one of `covering` (which
/// should name `rule` itself) is already there: `false` then. A file of the
/// wrong shape (not an object, `permissions` or `allow` of another type) is
/// refused and left untouched; the new file replaces the old atomically.
pub fn allow(path: &Path, rule: &str, covering: &[&str]) -> Result<bool> {
    let mut v = read(path)?.unwrap_or_else(|| Value::Object(Map::new()));
    if allows(&v, covering) || allows(&v, &[rule]) {
        return Ok(false);
    }
    allow_list(&mut v, path)?.push(Value::String(rule.into()));
    write_atomic(path, &render(&v))?;
    Ok(true)
}

/// Refuses, touching nothing, a settings file [`allow`] could not add a rule
/// to (not JSON, not an object, `permissions` or `allow` of another type), so
/// a command can check it before it commits anything.
pub fn check_allowable(path: &Path) -> Result<()> {
    let mut v = read(path)?.unwrap_or_else(|| Value::Object(Map::new()));
    allow_list(&mut v, path).map(|_| ())
}

/// `permissions.allow` of settings `v` (read from `path`), made when missing.
fn allow_list<'a>(v: &'a mut Value, path: &Path) -> Result<&'a mut Vec<Value>> {
    v.as_object_mut()
        .ok_or_else(|| wrong(path, "not a JSON object"))?
        .entry("permissions")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| wrong(path, "\"permissions\" is not an object"))?
        .entry("allow")
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
        .ok_or_else(|| wrong(path, "\"permissions.allow\" is not an array"))
}
