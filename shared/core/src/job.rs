//! Jobs: a batch leaves the machine as a **bundle** (JSON Lines, one task a
//! line), one task of it runs anywhere without a database (`orch-run job`),
//! and comes back as one **result record**. No SQL here: the dispatch mark
//! and the ingest of records are in `dispatch`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::run::{judge, Template};
use crate::task::{Status, Task};
use crate::time::{now_ms, rfc3339};

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

fn as_task(b: &BundleHeader, t: &BundleTask) -> Task {
    Task {
        id: t.id,
        role: t.role.clone(),
        description: t.description.clone(),
        prompt: t.prompt.clone(),
        priority: 0,
        after: t.after.clone(),
        status: Status::Running,
        batch: Some(b.batch),
        created_at: 0,
        batched_at: None,
        started_at: None,
        finished_at: None,
        result: None,
        error: None,
        exit_code: None,
        claude: None,
        not_before: None,
        agent: crate::agent_options::AgentOptions::default(),
        touches: Vec::new(),
        git: crate::worktree::GitRecord::default(),
    }
}

/// Runs one task of a bundle through `program` + `template` in `dir` and
/// judges it; in a git checkout commits what it left on `orch/task-ID` (and
/// pushes that branch to `origin` with `push`).
pub fn run_one(
    b: &Bundle,
    t: &BundleTask,
    program: &Path,
    template: &Template,
    dir: &Path,
    push: bool,
    timeout: Option<Duration>,
) -> Result<ResultRecord> {
    let task = as_task(&b.header, t);
    template.check_fits(std::slice::from_ref(&task))?;
    let git = git_root(dir);
    let start = now_ms();
    let (stdin, file) =
        crate::run::prompt_input(&task, template.prompt_via()).map_err(|source| Error::Io {
            path: PathBuf::from("the prompt"),
            what: "write",
            source,
        })?;
    let mut cmd = Command::new(program);
    cmd.args(template.argv(&task, file.as_ref().map(|f| f.path())))
        .current_dir(dir)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("ORCH_TASK_ID", t.id.to_string())
        .env("ORCH_BATCH_ID", b.header.batch.to_string())
        .env_remove("ORCH_DB");
    let mut timed_out = false;
    let out = crate::child::spawn(&mut cmd).and_then(|c| wait_bounded(c, timeout, &mut timed_out));
    let end = now_ms();
    let mut rec = ResultRecord {
        format: RECORD_FORMAT.into(),
        batch: b.header.batch,
        dispatch: b.header.dispatch.clone(),
        task: t.id,
        outcome: Status::Failed,
        error_class: None,
        error: None,
        exit_code: None,
        signal: None,
        started_at: rfc3339(start),
        finished_at: rfc3339(end),
        start_ms: start,
        end_ms: end,
        cost_usd: None,
        tokens: None,
        session_id: None,
        claude: None,
        result: None,
        branch: None,
        commit: None,
        pushed: false,
        host: hostname(),
    };
    match out {
        Err(e) => {
            rec.error_class = Some(crate::errclass::Class::SpawnError.as_str().into());
            rec.error = Some(format!("cannot start {}: {e}", program.display()));
        }
        Ok(o) => {
            use std::os::unix::process::ExitStatusExt;
            let stdout = String::from_utf8_lossy(&o.stdout);
            let stderr = String::from_utf8_lossy(&o.stderr);
            let j = judge(
                template.output,
                o.status,
                &stdout,
                &stderr,
                timed_out,
                false,
                timeout,
            );
            rec.exit_code = o.status.code();
            rec.signal = o.status.signal();
            rec.outcome = if j.ok { Status::Done } else { Status::Failed };
            rec.error_class = (!j.ok).then(|| {
                crate::errclass::classify(
                    &crate::errclass::Ending {
                        stdout: &stdout,
                        stderr: &stderr,
                        exit_code: rec.exit_code,
                        signal: rec.signal,
                        timed_out,
                        interrupted: false,
                        spawn_failed: false,
                    },
                    end,
                )
                .class
                .as_str()
                .to_string()
            });
            rec.error = j.error;
            rec.result = j.result.map(|r| crate::text::clip(&r, 1 << 20));
            if let Some(c) = &j.claude {
                rec.cost_usd = c.get("total_cost_usd").and_then(|v| v.as_f64());
                rec.session_id = c
                    .get("session_id")
                    .and_then(|v| v.as_str())
                    .map(str::to_string);
                rec.tokens = c.get("usage").and_then(|u| {
                    Some(Tokens {
                        input: u.get("input_tokens")?.as_i64()?,
                        output: u.get("output_tokens")?.as_i64()?,
                    })
                });
            }
            rec.claude = j.claude;
        }
    }
    if let Some(root) = git {
        let (commit, pushed) = commit_leftovers(&root, t, push)?;
        rec.branch = Some(branch_name(t.id));
        rec.commit = Some(commit);
        rec.pushed = pushed;
    }
    Ok(rec)
}

/// Waits for `child` and its output; past `timeout` its process group gets
/// SIGTERM, then SIGKILL after [`crate::run::GRACE`].
fn wait_bounded(
    mut child: std::process::Child,
    timeout: Option<Duration>,
    timed_out: &mut bool,
) -> std::io::Result<std::process::Output> {
    let read = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = read(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let err = read(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let pgid = child.id() as i32;
    let start = Instant::now();
    let mut termed: Option<Instant> = None;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        let now = Instant::now();
        match (timeout, termed) {
            (Some(t), None) if now.duration_since(start) >= t => {
                *timed_out = true;
                crate::child::kill_group(pgid, libc::SIGTERM);
                termed = Some(now);
            }
            (_, Some(at)) if now.duration_since(at) >= crate::run::GRACE => {
                crate::child::kill_group(pgid, libc::SIGKILL);
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // What the agent left in its group goes with it (and closes the pipes).
    crate::child::kill_group(pgid, libc::SIGKILL);
    Ok(std::process::Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let o = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Io {
            path: PathBuf::from("git"),
            what: "run",
            source,
        })?;
    if !o.status.success() {
        return Err(Error::invalid(format!(
            "git {}: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&o.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// The top of the git checkout `dir` is in, if any.
pub fn git_root(dir: &Path) -> Option<PathBuf> {
    git(dir, &["rev-parse", "--show-toplevel"])
        .ok()
        .map(PathBuf::from)
}

/// `HEAD` of the checkout `dir` is in, if any.
pub fn git_head(dir: &Path) -> Option<String> {
    git(dir, &["rev-parse", "--verify", "-q", "HEAD"]).ok()
}

/// Commits everything the agent left in `root` on `orch/task-ID` (made from
/// where the checkout stands) and pushes it with `push`; the commit and
/// whether it was pushed.
fn commit_leftovers(root: &Path, t: &BundleTask, push: bool) -> Result<(String, bool)> {
    let branch = branch_name(t.id);
    git(root, &["checkout", "-q", "-B", &branch])?;
    git(root, &["add", "-A"])?;
    let msg = format!(
        "orch task {}: {}",
        t.id,
        crate::text::first_line(&t.description, 60)
    );
    git(
        root,
        &[
            "-c",
            "user.name=orch",
            "-c",
            "user.email=orch@localhost",
            "commit",
            "-q",
            "--allow-empty",
            "--no-verify",
            "-m",
            &msg,
        ],
    )?;
    let commit = git(root, &["rev-parse", "HEAD"])?;
    if push {
        git(
            root,
            &["push", "-q", "-f", "origin", &format!("{branch}:{branch}")],
        )?;
    }
    Ok((commit, push))
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
