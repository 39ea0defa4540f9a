//! Running one task of a bundle without a database (`orch-run job`): the
//! agent through a command template, judged, and its work committed on
//! `orch/task-ID`. The bundle and record formats are [`crate::job`]'s.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::job::{
    branch_name, Bundle, BundleHeader, BundleTask, ResultRecord, Tokens, RECORD_FORMAT,
};
use crate::run::{judge, Template};
use crate::task::{Status, Task};
use crate::time::{now_ms, rfc3339};

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
