//! A git worktree per task (`orch-run --worktree`): made from a base commit on
//! branch `orch/task-ID` under `.orch/worktrees/` when the task starts, its
//! leftovers committed when it ends, removed when there is nothing in it to
//! keep; and what a task records of it.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::git::Git;
use crate::task::Task;

pub use crate::task::GitRecord;

/// The branch of a task.
pub fn branch_name(id: i64) -> String {
    format!("orch/task-{id}")
}

/// Where worktrees live in a repository.
pub fn root(repo: &Git) -> PathBuf {
    repo.dir().join(".orch").join("worktrees")
}

/// How `orch-run --worktree` makes worktrees.
#[derive(Debug, Clone)]
pub struct Setup {
    pub repo: Git,
    /// The base commit (resolved once, before anything is claimed).
    pub base: String,
    /// `Name <email>` of the commits orch makes; git's own identity when `None`.
    pub author: Option<String>,
}

impl Setup {
    /// Checks everything before any task is claimed: git runs, `dir` is in a
    /// repository, `base` names a commit, the checkout has no uncommitted
    /// changes to tracked files, and no task's branch exists yet.
    pub fn prepare(
        dir: &Path,
        base: &str,
        author: Option<String>,
        tasks: &[Task],
    ) -> Result<Setup> {
        let repo = Git::open(dir)?;
        let Some(commit) = repo.commit(base)? else {
            return Err(Error::invalid(format!(
                "--base {:?} names no commit in {}",
                crate::text::clip(base, 60),
                repo.dir().display()
            )));
        };
        let dirty = repo.dirty()?;
        if !dirty.is_empty() {
            return Err(Error::invalid(format!(
                "{} has uncommitted changes ({}{}): commit or stash them first, so the tasks start from what you see",
                repo.dir().display(),
                crate::text::escape(&dirty[0], false),
                if dirty.len() > 1 { format!(" and {} more", dirty.len() - 1) } else { String::new() }
            )));
        }
        for t in tasks {
            let b = branch_name(t.id);
            if repo.has_branch(&b)? {
                return Err(Error::invalid(format!(
                    "branch {b} already exists: land or delete it before task {} runs again",
                    t.id
                )));
            }
        }
        if let Some(a) = &author {
            parse_author(a)?;
        }
        Ok(Setup {
            repo,
            base: commit,
            author,
        })
    }

    /// Makes the worktree of task `id`; returns its record (path, branch, base).
    pub fn create(&self, id: i64) -> Result<GitRecord> {
        let root = root(&self.repo);
        std::fs::create_dir_all(&root).map_err(|source| Error::Io {
            path: root.clone(),
            what: "create",
            source,
        })?;
        // Keep the worktrees out of the user's `git status`.
        let ignore = root.join(".gitignore");
        if !ignore.exists() {
            let _ = crate::atomic::write(&ignore, b"*\n", crate::atomic::Access::Keep);
        }
        let path = root.join(format!("task-{id}"));
        let branch = branch_name(id);
        let p = path.to_string_lossy().into_owned();
        // A retry of the task works on in the worktree its last attempt left.
        if path.exists() && self.repo.has_branch(&branch)? {
            return Ok(GitRecord {
                worktree: Some(p),
                branch: Some(branch),
                base: Some(self.base.clone()),
                ..Default::default()
            });
        }
        self.repo
            .run(&["worktree", "add", "--quiet", "-b", &branch, &p, &self.base])?;
        Ok(GitRecord {
            worktree: Some(p),
            branch: Some(branch),
            base: Some(self.base.clone()),
            ..Default::default()
        })
    }

    /// After a successful task: commits what the agent left uncommitted
    /// (`orch: task ID: DESCRIPTION`), records the head, and removes the
    /// worktree and branch of a task that changed nothing (head = base).
    pub fn finish(&self, t: &Task, rec: &mut GitRecord) -> Result<()> {
        let Some(path) = rec.worktree.clone() else {
            return Ok(());
        };
        let wt = self.identity(self.repo.at(Path::new(&path)));
        wt.run(&["add", "--all"])?;
        let staged = wt.output(&["diff", "--cached", "--quiet"])?;
        if !staged.ok {
            let msg = format!("orch: task {}: {}", t.id, t.description);
            let mut args = vec!["commit", "--quiet", "--no-verify", "-m", &msg];
            if let Some(a) = &self.author {
                args.push("--author");
                args.push(a);
            }
            wt.run(&args)?;
        }
        let head = wt.run(&["rev-parse", "HEAD"])?;
        if Some(&head) == rec.base.as_ref() {
            remove(&self.repo, rec)?;
            rec.worktree = None;
        }
        rec.head = Some(head);
        Ok(())
    }

    /// Git with a committer identity when orch was given one.
    fn identity(&self, g: Git) -> Git {
        match self.author.as_deref().and_then(|a| parse_author(a).ok()) {
            Some((name, email)) => g
                .with_env("GIT_COMMITTER_NAME", &name)
                .with_env("GIT_COMMITTER_EMAIL", &email),
            None => g,
        }
    }
}

/// `Name <email>` split in two.
pub fn parse_author(a: &str) -> Result<(String, String)> {
    let bad = || {
        Error::invalid(format!(
            "bad --author {:?}: write it as 'Name <email>'",
            crate::text::clip(a, 60)
        ))
    };
    if a.chars().any(|c| c.is_control()) {
        return Err(bad());
    }
    let (name, rest) = a.split_once('<').ok_or_else(bad)?;
    let email = rest.strip_suffix('>').ok_or_else(bad)?;
    let name = name.trim();
    if name.is_empty() || email.is_empty() || email.contains(['<', '>']) {
        return Err(bad());
    }
    Ok((name.to_string(), email.to_string()))
}

/// Removes a task's worktree (and, when its branch holds nothing new, the branch).
pub fn remove(repo: &Git, rec: &GitRecord) -> Result<()> {
    if let Some(p) = &rec.worktree {
        if Path::new(p).exists() {
            repo.run(&["worktree", "remove", "--force", p])?;
        }
    }
    repo.run(&["worktree", "prune"])?;
    if let (Some(b), Some(base)) = (&rec.branch, &rec.base) {
        if repo.has_branch(b)? && repo.commit(b)?.as_deref() == Some(base.as_str()) {
            repo.run(&["branch", "-D", "--quiet", b])?;
        }
    }
    Ok(())
}

/// One worktree `orch-queue clean` removes (or would).
#[derive(Debug, Clone, Serialize)]
pub struct Cleaned {
    pub task: i64,
    pub status: crate::task::Status,
    pub worktree: String,
    /// The branch deleted with it (a landed task's, or one holding nothing new).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch_deleted: Option<String>,
}

/// The repository a worktree of ours belongs to: `REPO/.orch/worktrees/task-N`.
fn repo_of(worktree: &Path) -> Option<&Path> {
    worktree.parent()?.parent()?.parent()
}

/// Removes the worktrees of tasks that are done, landed, cancelled or failed
/// (with `dry_run`, only says which). A landed task's branch goes too.
pub fn clean(db: &crate::db::Db, dry_run: bool) -> Result<Vec<Cleaned>> {
    use crate::task::Status;
    let tasks: Vec<(i64, String, GitRecord, Status)> = crate::task::with_finished_worktree(db)?
        .into_iter()
        .filter_map(|t| Some((t.id, t.git.worktree.clone()?, t.git, t.status)))
        .collect();
    let mut out = Vec::new();
    for (id, wt, rec, status) in tasks {
        let path = Path::new(&wt);
        let mut branch_deleted = None;
        if !dry_run {
            if let Some(repo) = repo_of(path).filter(|r| r.exists()) {
                let git = Git::open(repo)?;
                remove(&git, &rec)?;
                if let Some(b) = &rec.branch {
                    if status == Status::Landed && git.has_branch(b)? {
                        git.run(&["branch", "-D", "--quiet", b])?;
                        branch_deleted = Some(b.clone());
                    }
                }
            }
            db.write(|tx| crate::task::forget_worktree_in(tx, id))?;
        } else if status == Status::Landed {
            branch_deleted = rec.branch.clone();
        }
        out.push(Cleaned {
            task: id,
            status,
            worktree: wt,
            branch_deleted,
        });
    }
    Ok(out)
}
