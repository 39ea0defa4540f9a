//! A batch as a script for Claude Code's Workflow tool (`orch-emit --format
//! workflow`), and installing it as a named workflow under
//! `.claude/workflows/`.
//!
//! The script's first statement is `export const meta = {…}`, a pure literal
//! (Claude Code reads it without running the script), named `orch-batch-N`:
//! named workflows are found by `meta.name`, not by file name. Then one
//! `phase()` per wave of the tasks' dependencies, each wave one `parallel()`
//! of `agent()` calls: a barrier between waves, so a task starts only once
//! every task it waits on has ended (and is skipped when one of them came
//! back with nothing). Every text orch writes into the script (prompts,
//! labels, the description) is a JSON string literal, so no prompt can end
//! the string or reach the code around it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::emit::AgentCall;
use crate::error::{Error, Result};
use crate::task::Task;

/// The largest script Claude Code's Workflow tool takes, in bytes.
pub const MAX_SCRIPT_BYTES: usize = 524_288;

/// The line after `meta` that marks a file as orch's (and so one orch may replace).
pub const MADE_BY: &str = "// Made by orch-emit --format workflow.";

/// The workflow's name, and its file's stem under `.claude/workflows/`.
pub fn name(batch: i64) -> String {
    format!("orch-batch-{batch}")
}

/// The allow rule that lets the named workflow run without asking.
pub fn allow_rule(batch: i64) -> String {
    format!("Workflow({})", name(batch))
}

/// `s` as a JavaScript string literal: JSON's, with every control and
/// invisible format character written as a `\u` escape too (U+2028 and
/// U+2029, bidirectional overrides, zero-width characters, C1 controls): the
/// Workflow tool refuses a script holding characters its approval dialog
/// would hide, and the escapes read back as the same characters.
pub fn js_string(s: &str) -> String {
    let json = serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    if !json.chars().any(hidden) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    let mut units = [0u16; 2];
    for c in json.chars() {
        if hidden(c) {
            for u in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{u:04x}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Control characters (Cc) and invisible format characters (Cf, and the
/// line and paragraph separators).
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c as u32,
            0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F
            | 0x2028..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF
            | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F)
}

/// The wave (0-based) of each task: one more than the latest wave of the
/// tasks it waits on among `tasks`; dependencies outside `tasks` count as
/// ended before the first wave. Tasks on a cycle (only in a database edited
/// by hand) are refused.
pub fn waves(tasks: &[Task]) -> Result<Vec<usize>> {
    let index: HashMap<i64, usize> = tasks.iter().enumerate().map(|(i, t)| (t.id, i)).collect();
    let mut wave: Vec<Option<usize>> = vec![None; tasks.len()];
    // Each pass places every task whose dependencies are placed; at most n passes.
    for _ in 0..=tasks.len() {
        let mut progress = false;
        for (i, t) in tasks.iter().enumerate() {
            if wave[i].is_some() {
                continue;
            }
            let mut w = 0;
            let mut ok = true;
            for a in &t.after {
                if let Some(&j) = index.get(a) {
                    match wave[j] {
                        Some(wj) => w = w.max(wj + 1),
                        None => ok = false,
                    }
                }
            }
            if ok {
                wave[i] = Some(w);
                progress = true;
            }
        }
        if !progress {
            break;
        }
    }
    let mut out = Vec::with_capacity(tasks.len());
    for (i, w) in wave.into_iter().enumerate() {
        match w {
            Some(w) => out.push(w),
            None => {
                return Err(Error::invalid(format!(
                    "task {} is on a dependency cycle; a workflow cannot order it",
                    tasks[i].id
                )))
            }
        }
    }
    Ok(out)
}

fn phase_title(wave: usize) -> String {
    format!("Wave {}", wave + 1)
}

/// The script for `tasks` (with their Agent calls, in the same order).
/// `worktree` runs each agent in its own git worktree. Refused when longer
/// than [`MAX_SCRIPT_BYTES`].
pub fn render(batch: i64, tasks: &[Task], calls: &[AgentCall], worktree: bool) -> Result<String> {
    let wave = waves(tasks)?;
    let n_waves = wave.iter().max().map_or(0, |m| m + 1);
    let n = tasks.len();
    let plural = |k: usize| if k == 1 { "" } else { "s" };
    let description = format!(
        "orch batch {batch}: {n} task{} in {n_waves} wave{}",
        plural(n),
        plural(n_waves)
    );
    let mut s = String::new();
    let _ = writeln!(s, "export const meta = {{");
    let _ = writeln!(s, "  name: {},", js_string(&name(batch)));
    let _ = writeln!(s, "  description: {},", js_string(&description));
    let _ = writeln!(s, "  phases: [");
    for w in 0..n_waves {
        let _ = writeln!(s, "    {{ title: {} }},", js_string(&phase_title(w)));
    }
    let _ = writeln!(s, "  ],");
    let _ = writeln!(s, "}}");
    s.push('\n');
    let _ = writeln!(s, "{MADE_BY}");
    s.push_str(
        "// One phase per wave; each wave runs in parallel and ends before the next starts.\n\
         // A task whose dependency came back with nothing is skipped. Returns [{ task, text }].\n",
    );
    s.push_str("const results = {}\n");
    s.push_str("const ready = (ids) => ids.every((id) => results[id] !== undefined && results[id] !== null)\n");
    for w in 0..n_waves {
        let title = js_string(&phase_title(w));
        s.push('\n');
        let _ = writeln!(s, "phase({title})");
        let _ = writeln!(s, "await parallel([");
        for (i, (t, c)) in tasks.iter().zip(calls).enumerate() {
            if wave[i] != w {
                continue;
            }
            let deps: Vec<String> = t
                .after
                .iter()
                .filter(|a| tasks.iter().any(|x| x.id == **a))
                .map(|a| a.to_string())
                .collect();
            let mut opts = format!(
                "{{ label: {}, phase: {title}",
                js_string(&format!("task {}: {}", t.id, t.description))
            );
            if let Some(ty) = &c.subagent_type {
                let _ = write!(opts, ", agentType: {}", js_string(ty));
            }
            if let Some(m) = &c.model {
                let _ = write!(opts, ", model: {}", js_string(m));
            }
            if worktree || c.isolation.as_deref() == Some("worktree") {
                opts.push_str(", isolation: \"worktree\"");
            }
            opts.push_str(" }");
            let call = format!(
                "agent({}, {opts}).then((text) => {{ results[{}] = text }})",
                js_string(&c.prompt),
                t.id
            );
            if deps.is_empty() {
                let _ = writeln!(s, "  () => {call},");
            } else {
                let _ = writeln!(s, "  () => ready([{}]) ? {call} : null,", deps.join(", "));
            }
        }
        let _ = writeln!(s, "])");
    }
    let ids: Vec<String> = tasks.iter().map(|t| t.id.to_string()).collect();
    s.push('\n');
    let _ = writeln!(
        s,
        "return [{}].map((task) => ({{ task, text: results[task] === undefined ? null : results[task] }}))",
        ids.join(", ")
    );
    if s.len() > MAX_SCRIPT_BYTES {
        return Err(Error::invalid(format!(
            "the workflow script would be {} bytes; Claude Code's Workflow tool takes at most {MAX_SCRIPT_BYTES}: make smaller batches (orch-batch create --max N)",
            s.len()
        )));
    }
    Ok(s)
}

/// Where `--install` writes batch `batch`'s workflow, under the project `dir`.
pub fn install_path(dir: &Path, batch: i64) -> PathBuf {
    crate::claude::project_claude_dir(dir)
        .join("workflows")
        .join(format!("{}.js", name(batch)))
}

/// Writes `script` to `path`, replacing only a file orch made (one that
/// carries [`MADE_BY`]); any other file there is refused and left untouched.
pub fn install(path: &Path, script: &str) -> Result<()> {
    let io = |what: &'static str| {
        move |source| Error::Io {
            path: path.to_path_buf(),
            what,
            source,
        }
    };
    match std::fs::read(path) {
        Ok(old) => {
            let old = String::from_utf8_lossy(&old);
            if !old.lines().any(|l| l == MADE_BY) {
                return Err(Error::invalid(format!(
                    "{} exists and is not orch's; orch left it untouched (move it away, or install elsewhere)",
                    path.display()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("read")(e)),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("create the directory of"))?;
    }
    crate::atomic::write(path, script.as_bytes(), crate::atomic::Access::Keep)
}

/// The rules that already let workflow `rule` run: itself, or every workflow.
fn covering(rule: &str) -> [&str; 2] {
    [rule, "Workflow"]
}

/// The first settings file among `files` that already allows `rule`.
pub fn find_rule(files: &[PathBuf], rule: &str) -> Option<PathBuf> {
    crate::claude::settings::find_allowed(files, &covering(rule))
}

/// Adds `rule` to `permissions.allow` in the settings file `path`: see
/// [`crate::claude::settings::allow`]. `false` when it was already allowed.
pub fn add_rule(path: &Path, rule: &str) -> Result<bool> {
    crate::claude::settings::allow(path, rule, &covering(rule))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn js_strings_escape_line_separators() {
        assert_eq!(js_string("a\u{2028}b\u{2029}"), "\"a\\u2028b\\u2029\"");
        assert_eq!(
            js_string("\u{202e}\u{85}\u{7f}"),
            "\"\\u202e\\u0085\\u007f\""
        );
        assert_eq!(js_string("\u{e0041}"), "\"\\udb40\\udc41\"");
        assert_eq!(js_string("`${x}`"), "\"`${x}`\"");
        assert_eq!(js_string("\"'\n"), "\"\\\"'\\n\"");
    }
}
