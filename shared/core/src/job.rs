//! Jobs: a batch leaves the machine as a **bundle** (JSON Lines, one task a
//! line), one task of it runs anywhere without a database (`orch-run job`,
//! [`crate::run::job`]), and comes back as one **result record**. No SQL
//! here: the dispatch mark and the ingest of records are in `dispatch`.

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::task::Status;
use crate::time::rfc3339;

/// The `format` of a bundle's header line.
pub const BUNDLE_FORMAT: &str = "orch-bundle/1";
/// The `format` of a result record.
pub const RECORD_FORMAT: &str = "orch-result/1";
/// The longest a bundle or a record file may be.
pub const MAX_FILE: u64 = 256 << 20;

/// A bundle's first line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleHeader {
    pub format: String,
    pub batch: i64,
    /// Names this export of the batch; every record carries it back.
    pub dispatch: String,
    /// The repository's `HEAD` when the bundle was made, if in a git checkout.
    pub base: Option<String>,
    pub tasks: usize,
}

/// One task of a bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleTask {
    pub index: usize,
    pub id: i64,
    pub role: String,
    pub description: String,
    pub prompt: String,
    /// The Agent call's `subagent_type` when the role is a known agent type.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub subagent_type: Option<String>,
    pub after: Vec<i64>,
}

/// A parsed bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub header: BundleHeader,
    pub tasks: Vec<BundleTask>,
}

impl Bundle {
    /// The JSON Lines text of the bundle.
    pub fn render(&self) -> String {
        let mut s = serde_json::to_string(&self.header).unwrap_or_default();
        s.push('\n');
        for t in &self.tasks {
            s.push_str(&serde_json::to_string(t).unwrap_or_default());
            s.push('\n');
        }
        s
    }

    /// Parses a bundle; an error names the line (`name:N`).
    pub fn parse(name: &str, text: &str) -> Result<Bundle> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let bad = |n: usize, why: String| Error::invalid(format!("{name}:{}: {why}", n + 1));
        let (n, first) = lines
            .next()
            .ok_or_else(|| Error::invalid(format!("{name}: empty: not an orch bundle")))?;
        let header: BundleHeader = serde_json::from_str(first)
            .map_err(|e| bad(n, format!("not a bundle header ({e})")))?;
        if header.format != BUNDLE_FORMAT {
            return Err(bad(
                n,
                format!(
                    "bundle format {:?}; this orch reads {BUNDLE_FORMAT}",
                    header.format
                ),
            ));
        }
        let mut tasks = Vec::new();
        for (n, l) in lines {
            let t: BundleTask =
                serde_json::from_str(l).map_err(|e| bad(n, format!("not a bundle task ({e})")))?;
            if t.index != tasks.len() {
                return Err(bad(n, format!("task index {} out of order", t.index)));
            }
            tasks.push(t);
        }
        if tasks.len() != header.tasks {
            return Err(Error::invalid(format!(
                "{name}: the header promises {} tasks but {} follow (truncated?)",
                header.tasks,
                tasks.len()
            )));
        }
        Ok(Bundle { header, tasks })
    }

    /// Reads and parses a bundle file.
    pub fn read(path: &Path) -> Result<Bundle> {
        let text = read_text(path)?;
        Bundle::parse(&path.display().to_string(), &text)
    }
}

/// A file's text, bounded, or an error naming it.
pub fn read_text(path: &Path) -> Result<String> {
    let io = |what, source| Error::Io {
        path: path.to_path_buf(),
        what,
        source,
    };
    let f = std::fs::File::open(path).map_err(|e| io("open", e))?;
    let mut s = String::new();
    f.take(MAX_FILE + 1)
        .read_to_string(&mut s)
        .map_err(|e| io("read", e))?;
    if s.len() as u64 > MAX_FILE {
        return Err(Error::invalid(format!(
            "{} is larger than {} MiB",
            path.display(),
            MAX_FILE >> 20
        )));
    }
    Ok(s)
}

/// Tokens claude reported for the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tokens {
    pub input: i64,
    pub output: i64,
}

/// What one task's job reports: the line `orch-run job` prints and
/// `orch-run ingest` reads (docs/reference.md, "Result records").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultRecord {
    pub format: String,
    pub batch: i64,
    pub dispatch: String,
    pub task: i64,
    /// `done` or `failed`.
    pub outcome: Status,
    /// Why it failed: one of [`crate::errclass::Class`] (`timeout`,
    /// `spawn_error`, `killed`, `rate_limited`, `agent_error`, ...).
    pub error_class: Option<String>,
    pub error: Option<String>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub started_at: String,
    pub finished_at: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub cost_usd: Option<f64>,
    pub tokens: Option<Tokens>,
    pub session_id: Option<String>,
    /// What claude reported, as orch-run keeps it for a task.
    pub claude: Option<serde_json::Map<String, serde_json::Value>>,
    /// The agent's final text.
    pub result: Option<String>,
    /// `orch/task-ID`, when the job ran in a git checkout.
    pub branch: Option<String>,
    pub commit: Option<String>,
    pub pushed: bool,
    /// The host the job ran on.
    pub host: Option<String>,
}

impl ResultRecord {
    /// Checks what parsing cannot: the format, the outcome, the times.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.format != RECORD_FORMAT {
            return Err(format!(
                "record format {:?}; this orch reads {RECORD_FORMAT}",
                self.format
            ));
        }
        if !matches!(self.outcome, Status::Done | Status::Failed) {
            return Err(format!(
                "outcome {} is neither done nor failed",
                self.outcome
            ));
        }
        if !crate::time::in_range(self.start_ms) || !crate::time::in_range(self.end_ms) {
            return Err(format!(
                "its times are out of range (start_ms {}, end_ms {}; orch keeps 1970 to 9999)",
                self.start_ms, self.end_ms
            ));
        }
        if self.end_ms < self.start_ms || self.start_ms <= 0 {
            return Err("its times are impossible (it ends before it starts)".into());
        }
        if self.started_at != rfc3339(self.start_ms) || self.finished_at != rfc3339(self.end_ms) {
            return Err("its times disagree with each other (edited?)".into());
        }
        if (self.outcome == Status::Done) != self.error_class.is_none() {
            return Err("its outcome and its error class disagree".into());
        }
        if let Some(c) = &self.error_class {
            if crate::errclass::Class::parse(c).is_none() {
                return Err(format!("error class {c:?} is not one orch knows"));
            }
        }
        if let Some(b) = &self.branch {
            if *b != branch_name(self.task) {
                return Err(format!("branch {b:?} is not {}", branch_name(self.task)));
            }
        }
        Ok(())
    }
}

/// The branch a task's job commits to.
pub fn branch_name(task: i64) -> String {
    format!("orch/task-{task}")
}

/// Which task of a bundle to run.
#[derive(Debug, Clone)]
pub enum Pick {
    Index(usize),
    Task(i64),
}

/// The index given as `-`: `JOB_COMPLETION_INDEX` (Kubernetes),
/// `SLURM_ARRAY_TASK_ID` (Slurm) or `ORCH_JOB_INDEX` (anything else).
pub fn index_from_env() -> Result<usize> {
    for k in [
        "JOB_COMPLETION_INDEX",
        "SLURM_ARRAY_TASK_ID",
        "ORCH_JOB_INDEX",
    ] {
        if let Some(v) = std::env::var_os(k) {
            let v = v.to_string_lossy();
            return v
                .trim()
                .parse()
                .map_err(|_| Error::invalid(format!("{k}={v:?} is not an index (0, 1, 2, ...)")));
        }
    }
    Err(Error::invalid(
        "--index - reads JOB_COMPLETION_INDEX, SLURM_ARRAY_TASK_ID or ORCH_JOB_INDEX, and none is set",
    ))
}

impl Bundle {
    /// The task `pick` names.
    pub fn pick(&self, pick: &Pick) -> Result<&BundleTask> {
        match pick {
            Pick::Index(i) => self.tasks.get(*i).ok_or_else(|| {
                Error::invalid(format!(
                    "index {i} is out of range: the bundle has {} tasks (0 to {})",
                    self.tasks.len(),
                    self.tasks.len().saturating_sub(1)
                ))
            }),
            Pick::Task(id) => self
                .tasks
                .iter()
                .find(|t| t.id == *id)
                .ok_or_else(|| Error::invalid(format!("task {id} is not in the bundle"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_round_trips_and_a_short_one_is_refused() {
        let b = Bundle {
            header: BundleHeader {
                format: BUNDLE_FORMAT.into(),
                batch: 3,
                dispatch: "d".into(),
                base: None,
                tasks: 1,
            },
            tasks: vec![BundleTask {
                index: 0,
                id: 7,
                role: "dev".into(),
                description: "x".into(),
                prompt: "line\n${{ github.token }}".into(),
                subagent_type: None,
                after: vec![],
            }],
        };
        let text = b.render();
        assert_eq!(text.lines().count(), 2);
        assert_eq!(Bundle::parse("b", &text).unwrap().tasks, b.tasks);
        let first = text.lines().next().unwrap();
        assert!(Bundle::parse("b", first).is_err());
    }
}
