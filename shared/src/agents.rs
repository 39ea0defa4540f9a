//! Which Claude Code agent types exist: built-ins and `.claude/agents/*.md`
//! definitions in the project (up to the repository root) and the user's home.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Agent types every Claude Code installation has.
pub const BUILT_IN: &[&str] = &["general-purpose", "Explore", "Plan"];

/// The agent types that can be named as `subagent_type`.
#[derive(Debug, Default, Clone)]
pub struct AgentIndex {
    names: HashSet<String>,
    pub searched: Vec<PathBuf>,
}

impl AgentIndex {
    /// Scans the agent directories that apply to `cwd`.
    pub fn discover(cwd: &Path) -> AgentIndex {
        let mut idx = AgentIndex::default();
        for dir in cwd.ancestors() {
            idx.scan(&dir.join(".claude").join("agents"));
            if dir.join(".git").exists() {
                break;
            }
        }
        if let Some(home) = directories::BaseDirs::new().map(|b| b.home_dir().to_path_buf()) {
            idx.scan(&home.join(".claude").join("agents"));
        }
        idx
    }

    fn scan(&mut self, dir: &Path) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        self.searched.push(dir.to_path_buf());
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("md") {
                continue;
            }
            if let Ok(text) = fs::read_to_string(&p) {
                if let Some(name) = frontmatter_name(&text) {
                    self.names.insert(name);
                }
            }
        }
    }

    /// Adds a name by hand (tests, callers that know better).
    pub fn insert(&mut self, name: &str) {
        self.names.insert(name.to_string());
    }

    /// The `subagent_type` for `role`, or `None` when no such agent exists.
    pub fn subagent_type(&self, role: &str) -> Option<String> {
        if BUILT_IN.contains(&role) || self.names.contains(role) {
            Some(role.to_string())
        } else {
            None
        }
    }
}

/// The `name:` in a Markdown file's YAML frontmatter.
pub fn frontmatter_name(text: &str) -> Option<String> {
    let mut lines = text.lines();
    if lines.next()?.trim() != "---" {
        return None;
    }
    for line in lines {
        let line = line.trim_end();
        if line.trim() == "---" {
            break;
        }
        if let Some(v) = line.strip_prefix("name:") {
            let v = v.trim().trim_matches(|c| c == '"' || c == '\'');
            if !v.is_empty() {
                return Some(v.to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_frontmatter_name() {
        let md = "---\nname: code-reviewer\ndescription: Reviews code\n---\nYou review.";
        assert_eq!(
            super::frontmatter_name(md).as_deref(),
            Some("code-reviewer")
        );
        assert_eq!(super::frontmatter_name("no frontmatter"), None);
        assert_eq!(
            super::frontmatter_name("---\nname: \"q\"\n---"),
            Some("q".into())
        );
    }
}
