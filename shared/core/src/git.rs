//! Git as a program: every call goes through `duct` with its arguments as
//! separate words, never through a shell, in a fixed locale and without
//! prompts. The few plumbing commands orch needs are wrapped here.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// What one git command did.
#[derive(Debug)]
pub struct Output {
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// A git repository (or one of its worktrees) to run commands in.
#[derive(Debug, Clone)]
pub struct Git {
    program: PathBuf,
    dir: PathBuf,
    env: Vec<(String, String)>,
}

/// The git program on PATH, or a clear error.
pub fn program() -> Result<PathBuf> {
    which::which("git").map_err(|_| {
        Error::invalid("git not found on PATH: install git (orch runs it as a program)")
    })
}

impl Git {
    /// The repository that holds `dir`: its top-level directory. Refuses a
    /// directory outside any repository.
    pub fn open(dir: &Path) -> Result<Git> {
        let g = Git::in_dir(dir)?;
        let o = g.output(&["rev-parse", "--show-toplevel"])?;
        if !o.ok {
            return Err(Error::invalid(format!(
                "{} is not in a git repository",
                dir.display()
            )));
        }
        Ok(Git {
            dir: PathBuf::from(o.stdout.trim_end_matches('\n')),
            ..g
        })
    }

    /// Git run in `dir` as it is, without finding the repository first.
    pub fn in_dir(dir: &Path) -> Result<Git> {
        Ok(Git {
            program: program()?,
            dir: dir.to_path_buf(),
            env: Vec::new(),
        })
    }

    /// The same repository, seen from another directory (a worktree of it).
    pub fn at(&self, dir: &Path) -> Git {
        Git {
            dir: dir.to_path_buf(),
            ..self.clone()
        }
    }

    /// The same, with extra environment for every command.
    pub fn with_env(mut self, k: &str, v: &str) -> Git {
        self.env.push((k.into(), v.into()));
        self
    }

    /// The directory commands run in (the top level for [`Git::open`]).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs git and returns what it did, whatever its exit status.
    pub fn output(&self, args: &[&str]) -> Result<Output> {
        let mut e = duct::cmd(&self.program, args)
            .dir(&self.dir)
            .env("LC_ALL", "C")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .stdin_null()
            .stdout_capture()
            .stderr_capture()
            .unchecked();
        for (k, v) in &self.env {
            e = e.env(k, v);
        }
        let o = e.run().map_err(|source| Error::Io {
            path: self.program.clone(),
            what: "run",
            source,
        })?;
        Ok(Output {
            ok: o.status.success(),
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        })
    }

    /// Runs git; its trimmed stdout, or an error naming the command and git's
    /// first line of complaint.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let o = self.output(args)?;
        if !o.ok {
            return Err(failed(args, &o));
        }
        Ok(o.stdout.trim_end_matches('\n').to_string())
    }

    /// The version of git, as (major, minor).
    pub fn version(&self) -> Result<(u32, u32)> {
        let out = self.run(&["version"])?;
        parse_version(&out).ok_or_else(|| {
            Error::invalid(format!(
                "cannot read git's version from {:?}",
                crate::text::clip(&out, 60)
            ))
        })
    }

    /// Refuses a git older than `want` with a message naming both versions and
    /// what needs it.
    pub fn require(&self, want: (u32, u32), what: &str) -> Result<()> {
        let have = self.version()?;
        if have < want {
            return Err(Error::invalid(format!(
                "{what} needs git {}.{} or later; {} is {}.{}",
                want.0,
                want.1,
                self.program.display(),
                have.0,
                have.1
            )));
        }
        Ok(())
    }

    /// The commit `rev` names, or `None`.
    pub fn commit(&self, rev: &str) -> Result<Option<String>> {
        let spec = format!("{rev}^{{commit}}");
        let o = self.output(&[
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &spec,
        ])?;
        Ok(o.ok.then(|| o.stdout.trim().to_string()))
    }

    /// Whether the local branch exists.
    pub fn has_branch(&self, branch: &str) -> Result<bool> {
        let r = format!("refs/heads/{branch}");
        Ok(self.output(&["show-ref", "--verify", "--quiet", &r])?.ok)
    }

    /// The branch checked out here, or `None` when HEAD is detached.
    pub fn current_branch(&self) -> Result<Option<String>> {
        let o = self.output(&["symbolic-ref", "--quiet", "--short", "HEAD"])?;
        Ok(o.ok.then(|| o.stdout.trim().to_string()))
    }

    /// Changes to tracked files here (staged or not), as `git status` lists them.
    pub fn dirty(&self) -> Result<Vec<String>> {
        let out = self.run(&["status", "--porcelain", "--untracked-files=no"])?;
        Ok(out
            .lines()
            .map(|l| l.get(3..).unwrap_or(l).to_string())
            .collect())
    }
}

/// (major, minor) from `git version`'s answer ("git version 2.39.5",
/// "git version 2.45.1.windows.1", ...).
fn parse_version(s: &str) -> Option<(u32, u32)> {
    let v = s.trim().strip_prefix("git version ")?;
    let mut parts = v.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()?;
    Some((major, minor))
}

/// The error for a git command that failed.
pub fn failed(args: &[&str], o: &Output) -> Error {
    let why = o
        .stderr
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no message");
    Error::invalid(format!(
        "git {} failed: {}",
        args.first().copied().unwrap_or(""),
        crate::text::escape(why, false)
    ))
}

#[cfg(test)]
mod tests {
    use super::parse_version;

    #[test]
    fn versions_git_prints_are_read() {
        for (s, want) in [
            ("git version 2.39.5\n", Some((2, 39))),
            ("git version 2.47.3", Some((2, 47))),
            ("git version 2.45.1.windows.1", Some((2, 45))),
            ("git version 2.40.0-rc1", Some((2, 40))),
            ("git version 3.0", Some((3, 0))),
            ("hub version 2.1", None),
            ("git version x.y", None),
        ] {
            assert_eq!(parse_version(s), want, "{s:?}");
        }
    }
}
