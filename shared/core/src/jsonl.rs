//! The JSON Lines task input of `orch-queue add --stdin`: one task object
//! per line, parsed and validated here (the key and cycle checks across
//! lines are `task::KeyCheck`'s).

use crate::error::{Error, Result};
use crate::task::{NewTask, ValidTask};

/// Line `n` as trimmed text; `None` when it is blank.
pub fn text_line(buf: &[u8], n: usize) -> Result<Option<&str>> {
    let line = std::str::from_utf8(buf).map_err(|e| {
        Error::invalid(format!(
            "line {n}: not valid UTF-8 (at byte {})",
            e.valid_up_to()
        ))
    })?;
    let line = line.trim();
    Ok((!line.is_empty()).then_some(line))
}

/// Parses and validates one JSON Lines record.
pub fn parse_line(line: &str, default_role: Option<&str>) -> Result<ValidTask> {
    // serde would read `["dev","fix it"]` as the fields in order: only objects are tasks.
    if !line.starts_with('{') {
        let got = match line.as_bytes().first() {
            Some(b'[') => "an array",
            Some(b'"') => "a string",
            _ => "not an object",
        };
        return Err(Error::invalid(format!(
            "a line must be a JSON object like {{\"role\":\"dev\",\"prompt\":\"…\"}}, got {got}"
        )));
    }
    let t: NewTask = serde_json::from_str(line).map_err(|e| {
        // serde_json says "at line 1 column N": the line is always 1 here.
        let msg = e.to_string();
        let msg = msg
            .split(" at line ")
            .next()
            .unwrap_or_default()
            .to_string();
        Error::invalid(format!("bad JSON: {} (column {})", msg, e.column()))
    })?;
    t.validate(default_role)
}
