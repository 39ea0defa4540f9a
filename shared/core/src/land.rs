//! Landing (`orch-land`): the branches of done tasks merged into one target
//! branch, in dependency order, then priority, then id.
//!
//! Each merge is first made in memory (`git merge-tree --write-tree`); a clean
//! result becomes a commit whose message carries an `Orch-Task: ID` trailer,
//! and the target moves to it in one step (`update-ref` with the old value,
//! or a fast-forward of the checked-out branch). Only then is the task marked
//! `landed`. A crash between the two is repaired by the next run, which finds
//! the trailer on the target and marks the task without merging it again: a
//! task lands exactly once. A conflict leaves the target as it was.

use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
use std::path::Path;

use serde::Serialize;

use crate::db::Db;
use crate::error::{Error, Result};
use crate::git::Git;
use crate::task::{self, Status, Task};

/// How a branch is put onto the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// A merge commit with the target and the branch as parents.
    Merge,
    /// One commit with the branch's changes, the target its only parent.
    Squash,
    /// The branch's commits replayed one by one onto the target.
    Rebase,
}

impl Strategy {
    pub const NAMES: &'static [&'static str] = &["merge", "squash", "rebase"];

    pub fn parse(s: &str) -> Option<Strategy> {
        match s {
            "merge" => Some(Strategy::Merge),
            "squash" => Some(Strategy::Squash),
            "rebase" => Some(Strategy::Rebase),
            _ => None,
        }
    }
}

/// What to land, and how.
#[derive(Debug, Clone)]
pub struct Request {
    /// Batches whose done tasks land; empty with `all`.
    pub batches: Vec<i64>,
    pub all: bool,
    /// The target branch; the checked-out one when `None`.
    pub into: Option<String>,
    pub strategy: Strategy,
    pub dry_run: bool,
    /// Queue a task that resolves a conflict instead of stopping.
    pub queue_conflicts: bool,
}

/// What happened to one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Landed,
    Conflict,
    Skipped,
    NothingToLand,
}

/// One line of `orch-land --json`.
#[derive(Debug, Clone, Serialize)]
pub struct Landing {
    pub task: i64,
    pub branch: Option<String>,
    pub outcome: Outcome,
    /// The commit that landed it (none in a dry run or when nothing landed).
    pub commit: Option<String>,
    /// The conflicting files (for a conflict).
    pub files: Vec<String>,
    /// Why it was skipped, or that an earlier run had already put it on the target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The task queued to resolve its conflict (`--on-conflict queue`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued: Option<i64>,
}

/// Everything checked before the first merge.
#[derive(Debug)]
pub struct Plan {
    pub repo: Git,
    pub target: String,
    /// Whether the target is the branch checked out in `repo` (its working
    /// tree then moves with it).
    pub checked_out: bool,
    /// The tasks to land, in landing order.
    pub tasks: Vec<Task>,
    /// One orch-land at a time per repository (none for a dry run); the
    /// kernel drops it with the process, however that ends.
    _lock: Option<std::fs::File>,
}

/// Takes the repository's landing lock (`orch-land.lock` in its git
/// directory, held with `flock`), or says who has it.
fn lock(repo: &Git) -> Result<std::fs::File> {
    let dir = repo.run(&["rev-parse", "--git-common-dir"])?;
    let path = repo.dir().join(dir).join("orch-land.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| Error::Io {
            path: path.clone(),
            what: "open",
            source,
        })?;
    if rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        return Err(Error::invalid(format!(
            "another orch-land is landing in {} (it holds {}); run again when it is done",
            repo.dir().display(),
            path.display()
        )));
    }
    Ok(f)
}

const TRAILER: &str = "Orch-Task";

/// Checks the request against git and the database and orders the tasks.
/// Every refusal here happens before anything is changed.
pub fn prepare(db: &Db, dir: &Path, req: &Request) -> Result<Plan> {
    let repo = Git::open(dir)?;
    // Every merge is made in memory with `merge-tree --write-tree`.
    repo.require((2, 38), "orch-land")?;
    let current = repo.current_branch()?;
    let target = match &req.into {
        Some(b) => {
            if b.is_empty() || b.starts_with('-') || b.chars().any(|c| c.is_control()) {
                return Err(Error::invalid(format!(
                    "bad branch name {:?}",
                    crate::text::clip(b, 60)
                )));
            }
            b.clone()
        }
        None => current.clone().ok_or_else(|| {
            Error::invalid("HEAD is detached: name the branch to land into with --into BRANCH")
        })?,
    };
    if !repo.has_branch(&target)? {
        return Err(Error::invalid(format!(
            "unknown branch {:?} in {}",
            crate::text::clip(&target, 60),
            repo.dir().display()
        )));
    }
    let checked_out = current.as_deref() == Some(target.as_str());
    let held = if req.dry_run {
        None
    } else {
        Some(lock(&repo)?)
    };
    if checked_out && !req.dry_run {
        let dirty = repo.dirty()?;
        if !dirty.is_empty() {
            return Err(Error::invalid(format!(
                "{} has uncommitted changes ({}{}) and {target} is checked out there: commit or stash them first",
                repo.dir().display(),
                crate::text::escape(&dirty[0], false),
                if dirty.len() > 1 { format!(" and {} more", dirty.len() - 1) } else { String::new() }
            )));
        }
    }
    let tasks = candidates(db, req)?;
    for t in &tasks {
        let (Some(b), Some(head)) = (&t.git.branch, &t.git.head) else {
            return Err(Error::invalid(format!(
                "task {} has no branch to land: it did not run with orch-run --worktree",
                t.id
            )));
        };
        if repo.commit(head)?.is_none() {
            return Err(Error::invalid(format!(
                "task {}: its commit {} (branch {b}) is not in {}",
                t.id,
                crate::text::clip(head, 12),
                repo.dir().display()
            )));
        }
    }
    Ok(Plan {
        repo,
        target,
        checked_out,
        tasks: order(tasks),
        _lock: held,
    })
}

/// The done tasks the request names (landed ones are already done with).
fn candidates(db: &Db, req: &Request) -> Result<Vec<Task>> {
    let mut out = Vec::new();
    if req.all {
        for t in task::list(
            db,
            &task::TaskFilter {
                status: Some(Status::Done),
                ..Default::default()
            },
        )? {
            if t.git.branch.is_some() {
                out.push(t);
            }
        }
    } else {
        let mut seen = HashSet::new();
        for &b in &req.batches {
            for t in crate::batch::get(db, b)?.tasks {
                if t.status == Status::Done && seen.insert(t.id) {
                    out.push(t);
                }
            }
        }
    }
    Ok(out)
}

/// Dependencies first, then higher priority, then lower id.
fn order(tasks: Vec<Task>) -> Vec<Task> {
    let ids: HashSet<i64> = tasks.iter().map(|t| t.id).collect();
    let mut waiting: HashMap<i64, usize> = HashMap::new();
    let mut dependents: HashMap<i64, Vec<i64>> = HashMap::new();
    for t in &tasks {
        let inside: Vec<i64> = t
            .after
            .iter()
            .copied()
            .filter(|a| ids.contains(a))
            .collect();
        waiting.insert(t.id, inside.len());
        for a in inside {
            dependents.entry(a).or_default().push(t.id);
        }
    }
    let mut by_id: HashMap<i64, Task> = tasks.into_iter().map(|t| (t.id, t)).collect();
    let key = |t: &Task| (t.priority, -t.id);
    let mut heap: BinaryHeap<((i64, i64), i64)> = by_id
        .values()
        .filter(|t| waiting[&t.id] == 0)
        .map(|t| (key(t), t.id))
        .collect();
    let mut out = Vec::with_capacity(by_id.len());
    while let Some((_, id)) = heap.pop() {
        for d in dependents.remove(&id).unwrap_or_default() {
            if let Some(w) = waiting.get_mut(&d) {
                *w -= 1;
                if *w == 0 {
                    if let Some(t) = by_id.get(&d) {
                        heap.push((key(t), d));
                    }
                }
            }
        }
        if let Some(t) = by_id.remove(&id) {
            out.push(t);
        }
    }
    // Cycles cannot be added; anything left is appended as it is.
    let mut rest: Vec<Task> = by_id.into_values().collect();
    rest.sort_by_key(|t| t.id);
    out.extend(rest);
    out
}

/// The tasks whose trailer is already on the target (since their bases).
fn already_landed(plan: &Plan) -> Result<HashMap<i64, String>> {
    let mut args: Vec<String> = vec![
        "log".into(),
        format!("--format=%H%x09%(trailers:key={TRAILER},valueonly,separator=%x2C)"),
        format!("refs/heads/{}", plan.target),
    ];
    let bases: BTreeSet<&str> = plan
        .tasks
        .iter()
        .filter_map(|t| t.git.base.as_deref())
        .collect();
    if !bases.is_empty() {
        args.push("--not".into());
        args.extend(bases.iter().map(|b| b.to_string()));
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut found = HashMap::new();
    for line in plan.repo.run(&argv)?.lines() {
        if let Some((commit, ids)) = line.split_once('\t') {
            for id in ids.split(',').filter_map(|i| i.trim().parse::<i64>().ok()) {
                found.entry(id).or_insert_with(|| commit.to_string());
            }
        }
    }
    Ok(found)
}

/// The merge of `head` into `cur` made in memory: its tree, or the conflicting files.
fn merge_tree(
    repo: &Git,
    cur: &str,
    head: &str,
    base: Option<&str>,
) -> Result<std::result::Result<String, Vec<String>>> {
    // A given merge base (replaying one commit onto `cur`) is expressed
    // through ancestry rather than `--merge-base`, which needs git 2.40: a
    // throwaway commit with `cur`'s tree whose only parent is the base has
    // exactly that base in common with `head`'s commit.
    let ours = match base {
        Some(b) => {
            let tree = format!("{cur}^{{tree}}");
            repo.run(&["commit-tree", &tree, "-p", b, "-m", "orch: replay base"])?
        }
        None => cur.to_string(),
    };
    let args = [
        "merge-tree",
        "--write-tree",
        "--name-only",
        "--no-messages",
        "-z",
        ours.as_str(),
        head,
    ];
    let o = repo.output(&args)?;
    let mut parts = o.stdout.split('\0').filter(|p| !p.is_empty());
    let tree = parts.next().unwrap_or("").trim().to_string();
    match o.code {
        Some(0) => Ok(Ok(tree)),
        Some(1) => {
            let files: BTreeSet<String> = parts
                .map(|p| p.trim_end_matches('\n').to_string())
                .collect();
            Ok(Err(files.into_iter().collect()))
        }
        _ => Err(crate::git::failed(&args, &o)),
    }
}

fn message(t: &Task, strategy: Strategy) -> String {
    let first = match strategy {
        Strategy::Merge => format!(
            "Merge {}: {}",
            t.git.branch.as_deref().unwrap_or("?"),
            t.description
        ),
        _ => format!("orch: task {}: {}", t.id, t.description),
    };
    format!("{first}\n\n{TRAILER}: {}\n", t.id)
}

/// The commit that puts task `t` onto `cur`, or the conflicting files.
fn make_commit(
    repo: &Git,
    t: &Task,
    cur: &str,
    strategy: Strategy,
) -> Result<std::result::Result<String, Vec<String>>> {
    let head = t.git.head.as_deref().unwrap_or_default();
    match strategy {
        Strategy::Merge | Strategy::Squash => {
            let tree = match merge_tree(repo, cur, head, None)? {
                Ok(tree) => tree,
                Err(files) => return Ok(Err(files)),
            };
            let msg = message(t, strategy);
            let mut args = vec!["commit-tree", tree.as_str(), "-p", cur];
            if strategy == Strategy::Merge {
                args.extend(["-p", head]);
            }
            args.extend(["-m", msg.as_str()]);
            Ok(Ok(repo.run(&args)?))
        }
        Strategy::Rebase => {
            let base = t.git.base.as_deref().unwrap_or_default();
            let range = format!("{base}..{head}");
            let commits = repo.run(&["rev-list", "--reverse", "--no-merges", &range])?;
            let commits: Vec<&str> = commits.lines().collect();
            let mut tip = cur.to_string();
            for (i, c) in commits.iter().enumerate() {
                let parent = format!("{c}^");
                let tree = match merge_tree(repo, &tip, c, Some(&parent))? {
                    Ok(tree) => tree,
                    Err(files) => return Ok(Err(files)),
                };
                let info = repo.run(&["log", "-1", "--format=%an%x00%ae%x00%aD%x00%B", c])?;
                let mut f = info.splitn(4, '\0');
                let (name, email, date) = (
                    f.next().unwrap_or(""),
                    f.next().unwrap_or(""),
                    f.next().unwrap_or(""),
                );
                let mut body = f.next().unwrap_or("").trim_end().to_string();
                if i + 1 == commits.len() {
                    body.push_str(&format!("\n\n{TRAILER}: {}\n", t.id));
                }
                tip = repo
                    .clone()
                    .with_env("GIT_AUTHOR_NAME", name)
                    .with_env("GIT_AUTHOR_EMAIL", email)
                    .with_env("GIT_AUTHOR_DATE", date)
                    .run(&["commit-tree", &tree, "-p", &tip, "-m", &body])?;
            }
            Ok(Ok(tip))
        }
    }
}

/// Moves the target from `old` to `new` (a descendant of it): a fast-forward
/// of the checked-out branch (working tree and index with it), or the branch
/// alone, compare-and-swap.
fn advance(plan: &Plan, t: &Task, old: &str, new: &str) -> Result<()> {
    if plan.checked_out {
        plan.repo
            .run(&["merge", "--ff-only", "--quiet", "--no-verify", new])?;
    } else {
        let r = format!("refs/heads/{}", plan.target);
        let why = format!("orch-land: task {}", t.id);
        plan.repo.run(&["update-ref", "-m", &why, &r, new, old])?;
    }
    Ok(())
}

/// Whether anything stopped the landing.
#[derive(Debug, Default)]
pub struct Summary {
    pub landed: usize,
    pub stopped: bool,
    pub conflicts: usize,
}

/// Lands the plan's tasks in order, reporting each through `on`.
pub fn land(
    db: &Db,
    plan: &Plan,
    req: &Request,
    on: &mut dyn FnMut(&Landing) -> Result<()>,
) -> Result<Summary> {
    let done_before = if req.dry_run {
        HashMap::new()
    } else {
        already_landed(plan)?
    };
    let target_ref = format!("refs/heads/{}", plan.target);
    let mut cur = plan.repo.run(&["rev-parse", "--verify", &target_ref])?;
    let mut landed: HashSet<i64> = HashSet::new();
    let mut summary = Summary::default();
    for t in &plan.tasks {
        let mut l = Landing {
            task: t.id,
            branch: t.git.branch.clone(),
            outcome: Outcome::Skipped,
            commit: None,
            files: Vec::new(),
            note: None,
            queued: None,
        };
        // An earlier run put it on the target but stopped before marking it.
        if let Some(c) = done_before.get(&t.id) {
            db.write(|tx| task::land_in(tx, t.id, Some(c)))?;
            landed.insert(t.id);
            summary.landed += 1;
            l.outcome = Outcome::Landed;
            l.commit = Some(c.clone());
            l.note = Some("already on the target; marked landed".into());
            on(&l)?;
            continue;
        }
        if let Some(by) = t
            .git
            .conflict
            .as_ref()
            .and_then(|c| c.get("resolved_by"))
            .and_then(|v| v.as_i64())
        {
            l.note = Some(format!("its conflict is being resolved by task {by}"));
            on(&l)?;
            continue;
        }
        if let Some(dep) = t.after.iter().find(|a| !landed.contains(a)) {
            let dep_status = task::get(db, *dep)?.status;
            if dep_status != Status::Landed {
                l.note = Some(format!("task {dep} has not landed"));
                on(&l)?;
                continue;
            }
        }
        if t.git.head == t.git.base {
            if !req.dry_run {
                db.write(|tx| task::land_in(tx, t.id, None))?;
            }
            landed.insert(t.id);
            l.outcome = Outcome::NothingToLand;
            on(&l)?;
            continue;
        }
        match make_commit(&plan.repo, t, &cur, req.strategy)? {
            Ok(new) => {
                if !req.dry_run {
                    advance(plan, t, &cur, &new)?;
                    db.write(|tx| task::land_in(tx, t.id, Some(&new)))?;
                    l.commit = Some(new.clone());
                }
                cur = new;
                landed.insert(t.id);
                summary.landed += 1;
                l.outcome = Outcome::Landed;
                on(&l)?;
            }
            Err(files) => {
                summary.conflicts += 1;
                l.outcome = Outcome::Conflict;
                l.files = files;
                if !req.dry_run {
                    let mut conflict = serde_json::json!({
                        "into": plan.target,
                        "at": cur,
                        "files": l.files,
                    });
                    if req.queue_conflicts {
                        let id = queue_resolution(db, t, plan, &l.files)?;
                        conflict["resolved_by"] = id.into();
                        l.queued = Some(id);
                    }
                    db.write(|tx| task::set_conflict_in(tx, t.id, &conflict))?;
                }
                on(&l)?;
                if !req.queue_conflicts {
                    summary.stopped = true;
                    break;
                }
            }
        }
    }
    Ok(summary)
}

/// Queues the task that resolves a conflict: its prompt names both branches
/// and the files; it waits for nothing.
fn queue_resolution(db: &Db, t: &Task, plan: &Plan, files: &[String]) -> Result<i64> {
    let branch = t.git.branch.as_deref().unwrap_or("?");
    let prompt = format!(
        "Merge branch {branch} (orch task {id}: {desc}) into {target} and resolve the conflicts.\n\
         Start from {target}, run `git merge {branch}`, and resolve the conflicting files:\n{list}\n\
         Keep the intent of both sides; commit the merge when every conflict is resolved.",
        id = t.id,
        desc = t.description,
        target = plan.target,
        list = files
            .iter()
            .map(|f| format!("- {f}"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let v = task::NewTask {
        role: Some(t.role.clone()),
        prompt,
        description: Some(format!("Resolve task {} conflict", t.id)),
        priority: Some(t.priority),
        touches: t.touches.clone(),
        ..Default::default()
    }
    .validate(None)?;
    Ok(task::add(db, vec![v], |_| "resolving task".into())?[0])
}
