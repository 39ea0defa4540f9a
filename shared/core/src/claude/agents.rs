//! Which Claude Code agent types exist, found the way Claude Code finds them,
//! so that an emitted `subagent_type` never fails with "Agent type '…' not
//! found":
//!
//! - Built in: `general-purpose`, `Explore`, `Plan`, `statusline-setup` and
//!   `claude` ([`BUILT_IN`]; interactive sessions also have
//!   `claude-code-guide`, headless `claude -p` does not, so orch never names
//!   it). In coordinator mode (`CLAUDE_CODE_COORDINATOR_MODE` = 1, true, yes
//!   or on) the built-ins are replaced by `worker`.
//! - Defined in `.claude/agents/` (searched recursively, `*.md` files) of the
//!   directory and each parent up to the repository root, and in the user's
//!   `$CLAUDE_CONFIG_DIR/agents` (default `~/.claude/agents`). A file counts
//!   only when its front matter has both a `name` and a non-empty
//!   `description`; the type is the `name`, not the file name.
//! - A type is found by its exact name first; else by the one name that is
//!   equal ignoring case, white space, dashes and underscores (`explore` →
//!   `Explore`). Two such names are ambiguous: none is chosen.

use std::fs;
use std::path::{Path, PathBuf};

/// Agent types Claude Code has built in (outside coordinator mode).
pub const BUILT_IN: &[&str] = &[
    "general-purpose",
    "Explore",
    "Plan",
    "statusline-setup",
    "claude",
];
/// The built-in agent types of coordinator mode.
pub const COORDINATOR_BUILT_IN: &[&str] = &["worker"];
/// The variable that turns Claude Code's coordinator mode on.
pub const COORDINATOR_ENV: &str = "CLAUDE_CODE_COORDINATOR_MODE";
pub use super::CONFIG_DIR_ENV;

/// How deep below `agents/` a definition is looked for, and how many files at
/// most: a bound on a symlink loop or a huge tree, far beyond real use.
const MAX_DEPTH: usize = 16;
const MAX_FILES: usize = 10_000;

/// Where Claude Code looks, as the environment says.
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    /// `$CLAUDE_CONFIG_DIR`, else `~/.claude`.
    pub user_dir: Option<PathBuf>,
    pub coordinator: bool,
}

impl Lookup {
    /// From this process's environment.
    pub fn from_env() -> Lookup {
        let user_dir = super::user_dir();
        Lookup {
            user_dir,
            coordinator: std::env::var(COORDINATOR_ENV).is_ok_and(|v| truthy(&v)),
        }
    }
}

/// Claude Code's reading of a boolean variable: 1, true, yes or on, in any case.
fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

/// An agent file that Claude Code skips because its front matter lacks a
/// `description`.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub name: String,
    pub path: PathBuf,
}

/// The agent types that can be named as `subagent_type`.
#[derive(Debug, Default, Clone)]
pub struct AgentIndex {
    built_in: &'static [&'static str],
    names: Vec<String>,
    pub skipped: Vec<Skipped>,
    pub searched: Vec<PathBuf>,
}

impl AgentIndex {
    /// Scans the agent directories that apply to `cwd`, as this process's
    /// environment says (see [`Lookup::from_env`]).
    pub fn discover(cwd: &Path) -> AgentIndex {
        AgentIndex::discover_with(cwd, &Lookup::from_env())
    }

    pub fn discover_with(cwd: &Path, lookup: &Lookup) -> AgentIndex {
        let mut idx = AgentIndex {
            built_in: if lookup.coordinator {
                COORDINATOR_BUILT_IN
            } else {
                BUILT_IN
            },
            ..Default::default()
        };
        for dir in cwd.ancestors() {
            idx.scan(&super::project_claude_dir(dir).join("agents"));
            if dir.join(".git").exists() {
                break;
            }
        }
        if let Some(user) = &lookup.user_dir {
            idx.scan(&user.join("agents"));
        }
        idx
    }

    fn scan(&mut self, dir: &Path) {
        if !dir.is_dir() || self.searched.iter().any(|d| d == dir) {
            return;
        }
        self.searched.push(dir.to_path_buf());
        let mut files = Vec::new();
        collect_md(dir, 0, &mut files);
        files.sort();
        for p in files {
            let Ok(text) = fs::read_to_string(&p) else {
                continue;
            };
            let Some(fm) = FrontMatter::parse(&text) else {
                continue;
            };
            let Some(name) = fm.name else { continue };
            if fm.has_description {
                if !self.names.contains(&name) {
                    self.names.push(name);
                }
            } else {
                self.skipped.push(Skipped { name, path: p });
            }
        }
    }

    /// Adds a name by hand (tests, callers that know better).
    pub fn insert(&mut self, name: &str) {
        if !self.names.iter().any(|n| n == name) {
            self.names.push(name.to_string());
        }
    }

    /// Every agent type: the built-ins, then the defined ones.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.built_in
            .iter()
            .copied()
            .chain(self.names.iter().map(String::as_str))
    }

    /// The `subagent_type` for `role`: its exact name, else the one name equal
    /// to it ignoring case, white space, dashes and underscores; `None` when
    /// there is no such agent or more than one.
    pub fn subagent_type(&self, role: &str) -> Option<String> {
        if self.names().any(|n| n == role) {
            return Some(role.to_string());
        }
        let want = normalize(role);
        let mut found = self.names().filter(|n| normalize(n) == want);
        match (found.next(), found.next()) {
            (Some(n), None) => Some(n.to_string()),
            _ => None,
        }
    }

    /// Why `role` has no agent type, for a note: an ambiguous name, or a file
    /// that names it but that Claude Code skips.
    pub fn why_missing(&self, role: &str) -> String {
        let want = normalize(role);
        // Names and paths come from files anyone may commit: escaped, as
        // this goes to a terminal.
        let close: Vec<String> = self
            .names()
            .filter(|n| normalize(n) == want)
            .map(|n| crate::text::escape(n, false).into_owned())
            .collect();
        if close.len() > 1 {
            return format!(
                "'{}' matches {} (ignoring case, spaces, dashes and underscores)",
                crate::text::escape(role, false),
                close.join(" and ")
            );
        }
        if let Some(s) = self.skipped.iter().find(|s| normalize(&s.name) == want) {
            return format!(
                "{} has no `description:` in its front matter, so Claude Code skips it",
                crate::text::escape(&s.path.display().to_string(), false)
            );
        }
        "no file in the project's or the user's .claude/agents names it, and it is not built in"
            .into()
    }
}

/// Claude Code's comparison key: lower case without white space, dashes and
/// underscores.
fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_whitespace() && *c != '_' && !is_dash(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Unicode dash punctuation (category Pd).
fn is_dash(c: char) -> bool {
    matches!(
        c,
        '-' | '\u{058A}' | '\u{05BE}' | '\u{1400}' | '\u{1806}' | '\u{2010}'
            ..='\u{2015}'
                | '\u{2E17}'
                | '\u{2E1A}'
                | '\u{2E3A}'
                | '\u{2E3B}'
                | '\u{2E40}'
                | '\u{2E5D}'
                | '\u{301C}'
                | '\u{3030}'
                | '\u{30A0}'
                | '\u{FE31}'
                | '\u{FE32}'
                | '\u{FE58}'
                | '\u{FE63}'
                | '\u{FF0D}'
                | '\u{10EAD}'
    )
}

/// The `*.md` files under `dir`, without following symlinked directories.
fn collect_md(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if depth > MAX_DEPTH || out.len() >= MAX_FILES {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_dir() {
            collect_md(&p, depth + 1, out);
        } else if p.extension().and_then(|x| x.to_str()) == Some("md") && out.len() < MAX_FILES {
            out.push(p);
        }
    }
}

/// What orch reads of an agent file's YAML front matter.
#[derive(Debug, Default, PartialEq, Eq)]
struct FrontMatter {
    name: Option<String>,
    has_description: bool,
}

impl FrontMatter {
    fn parse(text: &str) -> Option<FrontMatter> {
        let mut lines = text.lines().peekable();
        if lines.next()?.trim() != "---" {
            return None;
        }
        let mut fm = FrontMatter::default();
        while let Some(line) = lines.next() {
            let line = line.trim_end();
            if line.trim() == "---" {
                return Some(fm);
            }
            if let Some(v) = line.strip_prefix("name:") {
                let v = unquote(v);
                if !v.is_empty() {
                    fm.name = Some(v.to_string());
                }
            } else if let Some(v) = line.strip_prefix("description:") {
                let v = unquote(v);
                fm.has_description = if v.starts_with('|') || v.starts_with('>') {
                    // A block scalar: its text is on the indented lines below.
                    lines
                        .peek()
                        .is_some_and(|n| n.starts_with([' ', '\t']) && !n.trim().is_empty())
                } else {
                    !v.is_empty()
                };
            }
        }
        None
    }
}

fn unquote(v: &str) -> &str {
    let v = v.trim();
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            return inner.trim();
        }
    }
    v
}

/// The `name:` in a Markdown file's YAML front matter.
pub fn frontmatter_name(text: &str) -> Option<String> {
    FrontMatter::parse(text).and_then(|f| f.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_frontmatter_name() {
        let md = "---\nname: code-reviewer\ndescription: Reviews code\n---\nYou review.";
        assert_eq!(frontmatter_name(md).as_deref(), Some("code-reviewer"));
        assert_eq!(frontmatter_name("no frontmatter"), None);
        assert_eq!(frontmatter_name("---\nname: \"q\"\n---"), Some("q".into()));
    }

    #[test]
    fn a_description_must_say_something() {
        let has = |md: &str| FrontMatter::parse(md).unwrap().has_description;
        assert!(has("---\nname: a\ndescription: d\n---\n"));
        assert!(has("---\nname: a\ndescription: >\n  folded\n---\n"));
        assert!(!has("---\nname: a\n---\n"));
        assert!(!has("---\nname: a\ndescription: \"\"\n---\n"));
        assert!(!has("---\nname: a\ndescription: |\n---\n"));
    }

    #[test]
    fn names_match_ignoring_case_spaces_dashes_and_underscores() {
        let mut idx = AgentIndex::discover_with(Path::new("/nonexistent"), &Lookup::default());
        idx.insert("Code Reviewer");
        assert_eq!(idx.subagent_type("explore").as_deref(), Some("Explore"));
        assert_eq!(
            idx.subagent_type("GENERAL_PURPOSE").as_deref(),
            Some("general-purpose")
        );
        assert_eq!(
            idx.subagent_type("code-reviewer").as_deref(),
            Some("Code Reviewer")
        );
        assert_eq!(idx.subagent_type("claude").as_deref(), Some("claude"));
        assert_eq!(idx.subagent_type("claude-code-guide"), None);
        idx.insert("code_reviewer");
        assert_eq!(idx.subagent_type("codereviewer"), None, "ambiguous");
        assert_eq!(
            idx.subagent_type("code_reviewer").as_deref(),
            Some("code_reviewer")
        );
    }

    #[test]
    fn coordinator_mode_has_only_worker_built_in() {
        let lookup = Lookup {
            user_dir: None,
            coordinator: true,
        };
        let idx = AgentIndex::discover_with(Path::new("/nonexistent"), &lookup);
        assert_eq!(idx.names().collect::<Vec<_>>(), ["worker"]);
        assert_eq!(idx.subagent_type("Explore"), None);
        assert!(truthy(" On ") && truthy("1") && !truthy("0") && !truthy(""));
    }
}
