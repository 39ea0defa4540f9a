//! Parallel work that lands: `orch-run --worktree`, `orch-queue clean`,
//! `orch-land` and `--touches`, through the real binaries on real git
//! repositories in temporary directories, with `tests/fake-agent` editing files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;

pub fn fake() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fake-agent").to_string()
}

/// A fresh repository `repo` inside the env's directory, on branch `main`,
/// with one commit; its identity is local so no global config is read.
pub fn repo(env: &Env) -> PathBuf {
    let r = env.path().join("repo");
    std::fs::create_dir_all(&r).unwrap();
    git(&r, &["init", "--quiet", "--initial-branch=main"]);
    git(&r, &["config", "user.name", "Test"]);
    git(&r, &["config", "user.email", "test@example.invalid"]);
    std::fs::write(r.join("README"), "a project\n").unwrap();
    std::fs::write(r.join("shared.txt"), "one\ntwo\nthree\n").unwrap();
    git(&r, &["add", "."]);
    git(&r, &["commit", "--quiet", "-m", "start"]);
    r
}

/// Runs git in `dir`; asserts success; returns trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env_remove("GIT_DIR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A suite binary run in `dir`.
pub fn run_in(env: &Env, dir: &Path, name: &str, args: &[&str]) -> Output {
    let mut c = env.cmd(name);
    c.args(args).current_dir(dir);
    c.output().unwrap()
}

/// Queues `prompts` (role dev) in one batch; returns the batch and the ids.
pub fn batch(env: &Env, prompts: &[&str]) -> (String, Vec<i64>) {
    let ids: Vec<i64> = prompts.iter().map(|p| env.add("dev", p)).collect();
    let b = env
        .ok("orch-batch", &["create", "--max", "100"])
        .trim()
        .to_string();
    (b, ids)
}

/// `orch-run B --worktree ARGS… -- fake-agent {prompt}` in the repository.
pub fn run_worktrees(env: &Env, repo: &Path, b: &str, extra: &[&str]) -> Output {
    let f = fake();
    let mut args = vec![b, "--worktree"];
    args.extend(extra);
    args.extend(["--", f.as_str(), "{prompt}"]);
    run_in(env, repo, "orch-run", &args)
}

#[test]
fn each_task_runs_in_its_own_worktree_and_its_leftovers_are_committed() {
    let env = Env::new();
    let r = repo(&env);
    let base = git(&r, &["rev-parse", "HEAD"]);
    let (b, ids) = batch(
        &env,
        &[
            "write=a.txt=alpha",
            "write=b.txt=beta commit=agent-made",
            "say=nothing-to-change",
            "write=c.txt=gamma exit=3",
        ],
    );
    let out = run_worktrees(
        &env,
        &r,
        &b,
        &["-j", "4", "--author", "Orch Bot <bot@example.invalid>"],
    );
    assert_code(&out, 1);

    let t = task(&env, ids[0]);
    assert_eq!(t["status"], "done");
    assert_eq!(t["branch"], "orch/task-1");
    assert_eq!(t["base"], base.as_str());
    let wt = t["worktree"].as_str().unwrap();
    assert!(wt.ends_with(".orch/worktrees/task-1"), "{wt}");
    assert_eq!(
        git(&r, &["log", "-1", "--format=%s|%an", "orch/task-1"]),
        "orch: task 1: write=a.txt=alpha|Orch Bot"
    );
    assert_eq!(
        t["head"].as_str().unwrap(),
        git(&r, &["rev-parse", "orch/task-1"])
    );
    assert_eq!(git(&r, &["show", "orch/task-1:a.txt"]), "alpha");
    // The agent's own commit is kept, and nothing more was left to commit.
    assert_eq!(
        git(&r, &["log", "-1", "--format=%s", "orch/task-2"]),
        "agent-made"
    );
    // A task that changed nothing: head = base, no worktree or branch left.
    let n = task(&env, ids[2]);
    assert_eq!(
        (n["head"].as_str(), n["base"].as_str()),
        (Some(base.as_str()), Some(base.as_str()))
    );
    assert!(n.get("worktree").is_none(), "{n}");
    assert!(!r.join(".orch/worktrees/task-3").exists());
    assert!(git(&r, &["branch", "--list", "orch/task-3"]).is_empty());
    // A failed task keeps its worktree, uncommitted, for inspection.
    let f = task(&env, ids[3]);
    assert_eq!(f["status"], "failed");
    assert_eq!(
        std::fs::read_to_string(r.join(".orch/worktrees/task-4/c.txt")).unwrap(),
        "gamma\n"
    );
    // The user's checkout never saw any of it.
    assert_eq!(git(&r, &["status", "--porcelain"]), "");
    assert_eq!(git(&r, &["rev-parse", "HEAD"]), base);
    let shown = env.ok("orch-queue", &["show", "1"]);
    assert!(shown.contains("branch:      orch/task-1"), "{shown}");

    let dry = env.ok("orch-queue", &["clean", "--dry-run"]);
    assert_eq!(dry.lines().count(), 3, "{dry}");
    assert!(dry.lines().all(|l| l.starts_with("would remove ")), "{dry}");
    assert!(
        r.join(".orch/worktrees/task-4").exists(),
        "a dry run removes nothing"
    );
    let done = env.ok("orch-queue", &["clean"]);
    assert_eq!(done.lines().count(), 3, "{done}");
    assert_eq!(git(&r, &["worktree", "list"]).lines().count(), 1);
    assert!(
        git(&r, &["branch", "--list", "orch/task-1"]).contains("orch/task-1"),
        "done work keeps its branch"
    );
    assert_eq!(
        env.ok("orch-queue", &["clean"]),
        "",
        "nothing left to clean"
    );
}

#[test]
fn orch_run_worktree_refuses_bad_git_state_before_claiming_anything() {
    let env = Env::new();
    let r = repo(&env);
    let (b, _) = batch(&env, &["write=a.txt=alpha"]);
    let before = dump(&env.db);
    let check = |out: Output, what: &str| {
        let err = assert_error(&out, "orch-run");
        assert!(err.contains(what), "{what}: {err}");
        assert_eq!(dump(&env.db), before, "nothing claimed: {err}");
    };
    // Not a repository.
    let outside = env.path().join("plain");
    std::fs::create_dir_all(&outside).unwrap();
    check(
        run_worktrees(&env, &outside, &b, &[]),
        "not in a git repository",
    );
    // An unknown base.
    check(
        run_worktrees(&env, &r, &b, &["--base", "no-such-rev"]),
        "names no commit",
    );
    // A bad author.
    check(
        run_worktrees(&env, &r, &b, &["--author", "nobody"]),
        "bad --author",
    );
    // A branch that already exists.
    git(&r, &["branch", "orch/task-1"]);
    check(
        run_worktrees(&env, &r, &b, &[]),
        "branch orch/task-1 already exists",
    );
    git(&r, &["branch", "-D", "orch/task-1"]);
    // A dirty checkout.
    std::fs::write(r.join("README"), "changed\n").unwrap();
    check(run_worktrees(&env, &r, &b, &[]), "uncommitted changes");
    git(&r, &["checkout", "--", "README"]);
    // git missing from PATH.
    let f = fake();
    let mut c = env.cmd("orch-run");
    c.args([b.as_str(), "--worktree", "--", f.as_str(), "{prompt}"])
        .current_dir(&r)
        .env("PATH", bin_dir());
    check(c.output().unwrap(), "git not found on PATH");
    assert!(!r.join(".orch").exists(), "no worktree made");
    // And with all that fixed, it runs.
    assert_code(&run_worktrees(&env, &r, &b, &[]), 0);
}
