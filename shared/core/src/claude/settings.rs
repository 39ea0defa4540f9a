//! Claude Code's JSON settings files (`.claude/settings.json`,
//! `.claude/settings.local.json`, `~/.claude/settings.json`): reading them
//! without ever touching a file that is not a JSON object, rendering them as
//! Claude Code writes them, and replacing them atomically.

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Error, Result};

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

/// Writes `text` to `path` through a temporary file in the same directory and a
/// rename, keeping the mode of the file it replaces (a symlink's target is written).
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let io = |what: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source| Error::Io {
            path: p,
            what,
            source,
        }
    };
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    fs::create_dir_all(&dir).map_err(io("create directory", &dir))?;
    let mode = fs::metadata(&path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.orch-{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode.unwrap_or(0o666))
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        f.write_all(text.as_bytes()).map_err(io("write", &tmp))?;
        if let Some(m) = mode {
            f.set_permissions(fs::Permissions::from_mode(m))
                .map_err(io("set the mode of", &tmp))?;
        }
        f.sync_all().map_err(io("write", &tmp))?;
        fs::rename(&tmp, &path).map_err(io("replace", &path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
