//! Installing `orch-hook` into Claude Code's settings: merging its entries into
//! `.claude/settings.json` without disturbing anything else, removing exactly
//! them again, and saying what is installed where.
//!
//! - Which file: `--user` → the user's settings, `$CLAUDE_CONFIG_DIR/settings.json`
//!   (default `~/.claude/settings.json`), read by Claude Code wherever it is
//!   started. `--here` → `./.claude/settings.json`. Otherwise the project's
//!   `.claude/settings.json`, the project being the nearest directory at or
//!   above the current one that holds `.claude/` or `.git` (the home directory
//!   itself does not count: its `.claude/` holds the user's settings), else the
//!   current directory.
//! - Who reads it: Claude Code reads project settings (and so project hooks)
//!   from `.claude/settings.json` of the directory it is started in only, not
//!   from its parents ([`read_when_started_in`]); a project file installed at
//!   the repository root does nothing for a session started in a subdirectory.
//! - Which entries are orch's: hook commands whose program (first shell word)
//!   is named `orch-hook`. Installing again replaces them in place (a new
//!   threshold, a moved binary) and adds nothing; uninstalling removes them, and
//!   a matcher group, an event list or the `hooks` object that becomes empty
//!   by that removal goes too.
//! - How the file is written: 2-space indentation and a trailing newline (as
//!   Claude Code writes it), keys in their original order, through a temporary
//!   file renamed over the original, keeping its permissions. A file already in
//!   that format comes back byte-identical after install + uninstall; one in
//!   another format comes back with the same content, reformatted. A file that
//!   is not a JSON object is refused and left untouched.
//! - The threshold and database travel in the command line
//!   (`/abs/orch-hook --threshold 3 [--db PATH]`), so the hook reads no file to
//!   learn them.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};

use super::settings::wrong;
pub use super::settings::{read, render, write_atomic};
use crate::error::{Error, Result};

/// The binary name that marks a hook command as orch's.
pub const PROGRAM: &str = "orch-hook";
/// Seconds Claude Code gives each hook invocation before killing it.
pub const TIMEOUT_SECS: u64 = 30;
/// The `description:` line that marks `.claude/commands/orch.md` as orch's.
const COMMAND_DESCRIPTION: &str = "Batch the ready orch tasks and launch them as parallel agents";

/// User or project settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The nearest project directory's `.claude/settings.json`.
    Project,
    /// `.claude/settings.json` of the current directory itself.
    Here,
    /// The user's settings.
    User,
    /// A project's personal `.claude/settings.local.json` (orch-hook only
    /// reports it; it installs into the other three).
    Local,
}

use super::home;

/// The events orch handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    PreToolUse,
    PostToolUse,
    PostToolUseFailure,
    PostToolBatch,
    SubagentStart,
    SubagentStop,
    UserPromptSubmit,
    Stop,
    TaskCreated,
    TaskCompleted,
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::PreToolUse,
        Kind::PostToolUse,
        Kind::PostToolUseFailure,
        Kind::PostToolBatch,
        Kind::SubagentStart,
        Kind::SubagentStop,
        Kind::UserPromptSubmit,
        Kind::Stop,
        Kind::TaskCreated,
        Kind::TaskCompleted,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::PreToolUse => "PreToolUse",
            Kind::PostToolUse => "PostToolUse",
            Kind::PostToolUseFailure => "PostToolUseFailure",
            Kind::PostToolBatch => "PostToolBatch",
            Kind::SubagentStart => "SubagentStart",
            Kind::SubagentStop => "SubagentStop",
            Kind::UserPromptSubmit => "UserPromptSubmit",
            Kind::Stop => "Stop",
            Kind::TaskCreated => "TaskCreated",
            Kind::TaskCompleted => "TaskCompleted",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// The settings `matcher` for this event: the Agent tool (and its alias)
    /// for tool events, none (every occurrence) for the others.
    pub fn matcher(self) -> Option<&'static str> {
        match self {
            Kind::PreToolUse | Kind::PostToolUse | Kind::PostToolUseFailure => Some("Agent|Task"),
            _ => None,
        }
    }
}

pub use super::{project_dir, CONFIG_DIR_ENV};

/// Where one scope's settings and slash commands live.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub scope: Scope,
    pub settings: PathBuf,
    pub command: PathBuf,
}

/// The directory this process runs in.
pub fn current_dir() -> Result<PathBuf> {
    std::env::current_dir().map_err(|source| Error::Io {
        path: PathBuf::from("."),
        what: "read the current directory",
        source,
    })
}

/// The settings file and slash-command path of a scope.
pub fn target(scope: Scope) -> Result<Target> {
    let claude = match scope {
        Scope::User => super::user_dir()
            .ok_or_else(|| Error::invalid("HOME is not set: cannot find ~/.claude"))?,
        Scope::Here => super::project_claude_dir(&current_dir()?),
        Scope::Project | Scope::Local => {
            super::project_claude_dir(&project_dir(&current_dir()?, home().as_deref()))
        }
    };
    let file = if scope == Scope::Local {
        super::settings::LOCAL
    } else {
        super::settings::SHARED
    };
    Ok(Target {
        scope,
        settings: claude.join(file),
        command: claude.join("commands").join("orch.md"),
    })
}

/// One settings file that can hold hooks for Claude Code started in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsFile {
    pub scope: Scope,
    pub path: PathBuf,
    /// Whether Claude Code started in that directory reads the file's hooks.
    pub read_here: bool,
}

/// Every settings file whose hooks matter to Claude Code started in `cwd`,
/// the one list `orch-hook status` and `orch doctor` both judge from: for
/// `cwd` and each parent below the home directory, `.claude/settings.json`
/// (project scope, read only in `cwd` itself: Claude Code reads project
/// hooks from the directory it is started in) and `.claude/settings.local.json`
/// (local scope, read in `cwd` and at the repository root); then the user's
/// `settings.json` (`$CLAUDE_CONFIG_DIR`, default `~/.claude`), always read.
/// Managed (enterprise) settings are not listed: orch never installs there.
pub fn settings_files(cwd: &Path) -> Vec<SettingsFile> {
    let home = home();
    let dirs = super::project_dirs(cwd, home.as_deref());
    let git_root = dirs.iter().find(|d| d.join(".git").exists()).cloned();
    let mut files = Vec::new();
    for d in &dirs {
        let here = d == cwd;
        files.push(SettingsFile {
            scope: Scope::Project,
            path: super::settings::shared_path(d),
            read_here: here,
        });
        files.push(SettingsFile {
            scope: Scope::Local,
            path: super::settings::local_path(d),
            read_here: here || Some(d) == git_root.as_ref(),
        });
    }
    if let Some(user) = super::settings::user_path() {
        files.push(SettingsFile {
            scope: Scope::User,
            path: user,
            read_here: true,
        });
    }
    files
}

/// Whether Claude Code started in `dir` reads the hooks of `t`: as
/// [`settings_files`] says.
pub fn read_when_started_in(t: &Target, dir: &Path) -> bool {
    settings_files(dir)
        .iter()
        .any(|f| f.path == t.settings && f.read_here)
}

fn first_word(command: &str) -> String {
    let mut word = String::new();
    let mut chars = command.trim_start().chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => break,
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => word.push(c),
            (_, '\\') => {
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            (_, c) => word.push(c),
        }
    }
    word
}

/// Whether a hook command runs `orch-hook`.
pub fn is_ours(command: &str) -> bool {
    let w = first_word(command);
    Path::new(&w).file_name().is_some_and(|n| n == PROGRAM)
}

/// The command line Claude Code runs for every event.
pub fn hook_command(exe: &Path, threshold: usize, db: Option<&Path>) -> String {
    let mut c = format!(
        "{} --threshold {threshold}",
        crate::text::sh_word(&exe.to_string_lossy())
    );
    if let Some(db) = db {
        c.push_str(" --db ");
        c.push_str(&crate::text::sh_word(&db.to_string_lossy()));
    }
    c
}

/// The threshold written in one of orch's commands.
pub fn threshold_of(command: &str) -> Option<usize> {
    let mut words = command.split_whitespace();
    while let Some(w) = words.next() {
        if w == "--threshold" {
            return words.next().and_then(|n| n.parse().ok());
        }
        if let Some(n) = w.strip_prefix("--threshold=") {
            return n.parse().ok();
        }
    }
    None
}

/// One hook handler as Claude Code's settings hold it.
#[derive(Debug, Serialize)]
struct HookEntry<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    command: &'a str,
    timeout: u64,
}

/// One matcher group.
#[derive(Debug, Serialize)]
struct Group<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    matcher: Option<&'static str>,
    hooks: [HookEntry<'a>; 1],
}

fn entry(command: &str) -> Value {
    serde_json::to_value(HookEntry {
        kind: "command",
        command,
        timeout: TIMEOUT_SECS,
    })
    .unwrap_or(Value::Null)
}

fn hook_is_ours(h: &Value) -> bool {
    h.get("command")
        .and_then(Value::as_str)
        .is_some_and(is_ours)
}

/// Merges orch's entries for every event into `settings`; true when it changed.
pub fn merge(settings: &mut Value, command: &str, path: &Path) -> Result<bool> {
    let before = settings.clone();
    let root = settings
        .as_object_mut()
        .ok_or_else(|| wrong(path, "the settings are not a JSON object"))?;
    let hooks = root
        .entry("hooks")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| wrong(path, "\"hooks\" is not an object"))?;
    for kind in Kind::ALL {
        let list = hooks
            .entry(kind.name())
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()
            .ok_or_else(|| wrong(path, &format!("\"hooks.{}\" is not a list", kind.name())))?;
        let mut found = false;
        let mut emptied = Vec::new();
        for (i, group) in list.iter_mut().enumerate() {
            let Some(hs) = group.get_mut("hooks").and_then(Value::as_array_mut) else {
                continue;
            };
            let had = hs.len();
            let mut kept = Vec::with_capacity(had);
            for h in hs.drain(..) {
                if hook_is_ours(&h) {
                    if !found {
                        found = true;
                        kept.push(entry(command));
                    }
                } else {
                    kept.push(h);
                }
            }
            // A duplicate of ours that was alone in its group leaves an empty group behind.
            if kept.is_empty() && had > 0 {
                emptied.push(i);
            }
            *hs = kept;
        }
        for i in emptied.into_iter().rev() {
            list.remove(i);
        }
        if !found {
            let g = Group {
                matcher: kind.matcher(),
                hooks: [HookEntry {
                    kind: "command",
                    command,
                    timeout: TIMEOUT_SECS,
                }],
            };
            list.push(serde_json::to_value(g).map_err(|e| Error::invalid(e.to_string()))?);
        }
    }
    Ok(*settings != before)
}

/// Removes orch's entries; returns how many hook handlers went.
pub fn remove(settings: &mut Value) -> usize {
    let Some(root) = settings.as_object_mut() else {
        return 0;
    };
    let Some(hooks) = root.get_mut("hooks").and_then(Value::as_object_mut) else {
        return 0;
    };
    let mut removed = 0;
    let mut emptied_events = Vec::new();
    for (event, list) in hooks.iter_mut() {
        let Some(list) = list.as_array_mut() else {
            continue;
        };
        let mut touched = false;
        list.retain_mut(|group| {
            let Some(hs) = group.get_mut("hooks").and_then(Value::as_array_mut) else {
                return true;
            };
            let n = hs.len();
            hs.retain(|h| !hook_is_ours(h));
            let gone = n - hs.len();
            removed += gone;
            touched |= gone > 0;
            !(gone > 0 && hs.is_empty())
        });
        if touched && list.is_empty() {
            emptied_events.push(event.clone());
        }
    }
    for e in &emptied_events {
        hooks.shift_remove(e);
    }
    if removed > 0 && hooks.is_empty() {
        root.shift_remove("hooks");
    }
    removed
}

/// The events and commands of orch's entries in `settings`.
pub fn installed(settings: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(hooks) = settings.get("hooks").and_then(Value::as_object) else {
        return out;
    };
    for (event, list) in hooks {
        for group in list.as_array().into_iter().flatten() {
            for h in group
                .get("hooks")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(c) = h
                    .get("command")
                    .and_then(Value::as_str)
                    .filter(|c| is_ours(c))
                {
                    out.push((event.clone(), c.to_string()));
                }
            }
        }
    }
    out
}

/// The `/orch` slash command: runs `orch-batch create | orch-emit` before the
/// prompt reaches Claude and asks Claude to follow the message it printed.
pub fn slash_command(bin_dir: Option<&Path>, db: Option<&Path>) -> String {
    let tool = |name: &str| match bin_dir.map(|d| d.join(name)).filter(|p| p.is_file()) {
        Some(p) => crate::text::sh_word(&p.to_string_lossy()),
        None => name.to_string(),
    };
    let (batch, emit) = (tool("orch-batch"), tool("orch-emit"));
    let db_arg = db
        .map(|d| format!(" --db {}", crate::text::sh_word(&d.to_string_lossy())))
        .unwrap_or_default();
    format!(
        "---\n\
         description: {COMMAND_DESCRIPTION}\n\
         allowed-tools: Bash({batch}:*), Bash({emit}:*)\n\
         ---\n\
         orch batched the tasks that were ready and printed the message below \
         (`orch-batch create | orch-emit`):\n\
         \n\
         !`{batch}{db_arg} create 2>&1 | {emit}{db_arg} 2>&1`\n\
         \n\
         If the output above is a message that asks you to launch agents, do exactly \
         what it says: every Agent call in ONE message, nothing else in it, then wait \
         for all of them. If it is an error or says nothing is ready, tell the user in \
         one sentence and stop.\n"
    )
}

/// Whether a slash-command file is the one orch installs.
pub fn command_is_ours(text: &str) -> bool {
    text.lines()
        .take(5)
        .any(|l| l.trim() == format!("description: {COMMAND_DESCRIPTION}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::fs;

    #[test]
    fn ours_is_known_by_program_name() {
        assert!(is_ours("/usr/local/bin/orch-hook --threshold 3"));
        assert!(is_ours("'/path with space/orch-hook' --threshold 3"));
        assert!(is_ours("orch-hook"));
        assert!(!is_ours("/usr/bin/other-hook orch-hook"));
        assert!(!is_ours("echo orch-hook"));
    }

    #[test]
    fn merge_is_idempotent_and_remove_is_exact() {
        let orig = json!({
            "permissions": {"allow": ["Bash(ls:*)"]},
            "hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "lint.sh"}]}]},
            "zzz": 1
        });
        let p = Path::new("s.json");
        let mut v = orig.clone();
        assert!(merge(&mut v, "/x/orch-hook --threshold 3", p).unwrap());
        assert!(!merge(&mut v, "/x/orch-hook --threshold 3", p).unwrap());
        assert_eq!(installed(&v).len(), Kind::ALL.len());
        assert!(merge(&mut v, "/y/orch-hook --threshold 5", p).unwrap());
        assert_eq!(installed(&v).len(), Kind::ALL.len());
        assert!(installed(&v)
            .iter()
            .all(|(_, c)| threshold_of(c) == Some(5)));
        assert_eq!(remove(&mut v), Kind::ALL.len());
        assert_eq!(render(&v), render(&orig));
    }

    #[test]
    fn empty_lists_of_the_user_stay() {
        let orig = json!({"hooks": {"Stop": [{"hooks": []}], "PreToolUse": []}});
        let mut v = orig.clone();
        merge(&mut v, "orch-hook --threshold 3", Path::new("s.json")).unwrap();
        assert_eq!(v["hooks"]["Stop"][0], json!({"hooks": []}));
        remove(&mut v);
        // An event list that held only orch's entry goes: orch cannot tell that
        // it was there, empty, before (the same meaning to Claude Code).
        assert_eq!(v, json!({"hooks": {"Stop": [{"hooks": []}]}}));
    }

    #[test]
    fn project_dir_stops_at_home() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().join("home");
        let deep = home.join("a/b");
        fs::create_dir_all(&deep).unwrap();
        fs::create_dir_all(home.join(".claude")).unwrap();
        assert_eq!(project_dir(&deep, Some(&home)), deep);
        fs::create_dir_all(home.join("a/.git")).unwrap();
        assert_eq!(project_dir(&deep, Some(&home)), home.join("a"));
    }
}
