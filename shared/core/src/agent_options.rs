//! The options of Claude Code's Agent tool that a task can set besides its
//! prompt, description and agent type (SPEC §7): `model`, `isolation`,
//! `run_in_background`, `name` and `mode`. The enums live here and nowhere
//! else; a test checks them against the installed Claude Code's `sdk-tools.d.ts`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The Agent tool's `model` enum.
pub const MODELS: &[&str] = &["sonnet", "opus", "haiku", "fable"];
/// The Agent tool's `isolation` enum.
pub const ISOLATIONS: &[&str] = &["worktree", "remote"];
/// The Agent tool's `mode` enum (Claude Code's permission modes).
pub const MODES: &[&str] = &[
    "acceptEdits",
    "auto",
    "bypassPermissions",
    "default",
    "dontAsk",
    "plan",
];

/// The Agent options of one task; each is sent only when set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentOptions {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub isolation: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub background: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mode: Option<String>,
}

fn one_of(what: &str, value: &Option<String>, allowed: &[&str]) -> Result<()> {
    match value {
        Some(v) if !allowed.contains(&v.as_str()) => Err(Error::invalid(format!(
            "bad {what} {:?}: Claude Code's Agent tool takes {}",
            crate::text::clip(v, 40),
            allowed.join(", ")
        ))),
        _ => Ok(()),
    }
}

/// Whether `s` is 1-64 of `A-Za-z0-9_.-`, not starting with `.` or `-`: a
/// task's role, and a name that SendMessage can address.
pub fn is_name(s: &str) -> bool {
    let ok_chars = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    !s.is_empty() && s.len() <= 64 && ok_chars && !s.starts_with(['.', '-'])
}

impl AgentOptions {
    /// Checks every option against the Agent tool's enums; a name is 1-64 of
    /// `A-Za-z0-9_.-` (what SendMessage can address).
    pub fn validate(&self) -> Result<()> {
        one_of("model", &self.model, MODELS)?;
        one_of("isolation", &self.isolation, ISOLATIONS)?;
        one_of("mode", &self.mode, MODES)?;
        if let Some(n) = &self.name {
            if !is_name(n) {
                return Err(Error::invalid(format!(
                    "bad name {:?}: use 1-64 of A-Z a-z 0-9 _ . - (not starting with . or -)",
                    crate::text::clip(n, 40)
                )));
            }
        }
        Ok(())
    }

    /// Whether no option is set.
    pub fn is_empty(&self) -> bool {
        *self == AgentOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_outside_the_enums_are_refused() {
        let ok = AgentOptions {
            model: Some("opus".into()),
            isolation: Some("worktree".into()),
            background: true,
            name: Some("reviewer-1".into()),
            mode: Some("plan".into()),
        };
        ok.validate().unwrap();
        for bad in [
            AgentOptions {
                model: Some("gpt".into()),
                ..Default::default()
            },
            AgentOptions {
                isolation: Some("docker".into()),
                ..Default::default()
            },
            AgentOptions {
                mode: Some("yolo".into()),
                ..Default::default()
            },
            AgentOptions {
                name: Some("a b".into()),
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
