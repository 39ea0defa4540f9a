//! Parallel work that lands: `orch-run --worktree`, `orch-queue clean`,
//! `orch-land` and `--touches`, through the real binaries on real git
//! repositories in temporary directories, with `tests/fake-agent` editing files.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;

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
    let f = fake_agent();
    let mut args = vec![b, "--worktree"];
    args.extend(extra);
    args.extend(["--", f.as_str(), "{prompt}"]);
    run_in(env, repo, "orch-run", &args)
}

#[test]
fn worktree_gitignore_never_writes_through_a_dangling_symlink() {
    let env = Env::new();
    let r = repo(&env);
    let away = env.path().join("planted");
    std::fs::create_dir_all(r.join(".orch/worktrees")).unwrap();
    std::os::unix::fs::symlink(&away, r.join(".orch/worktrees/.gitignore")).unwrap();
    let (b, _) = batch(&env, &["write=a.txt=alpha"]);
    let out = run_worktrees(&env, &r, &b, &[]);
    assert_code(&out, 0);
    assert!(!away.exists(), "the symlink's target was created");
    assert_eq!(
        std::fs::read_to_string(r.join(".orch/worktrees/.gitignore")).unwrap(),
        "*\n"
    );
}

#[test]
fn landed_tasks_are_listed_counted_and_reported_everywhere() {
    let env = Env::new();
    let r = repo(&env);
    let (b, ids) = batch(&env, &["write=a.txt=alpha", "write=b.txt=beta"]);
    assert_code(&run_worktrees(&env, &r, &b, &["-j", "2"]), 0);
    env.add("dev", "still queued");
    assert_code(&land(&env, &r, &["--all"]), 0);
    // orch-queue list --status takes every status there is.
    let listed = json_lines(&env.ok("orch-queue", &["list", "--status", "landed", "--json"]));
    let got: Vec<i64> = listed.iter().map(|t| t["id"].as_i64().unwrap()).collect();
    assert_eq!(got, ids);
    let stats = env.ok("orch-queue", &["stats"]);
    assert!(stats.contains("landed     2"), "{stats}");
    let st = env.ok("orch", &["status"]);
    assert!(st.contains("0 cancelled, 2 landed"), "{st}");
    // The MCP queue_status text counts them as orch status does.
    let mut c = env.cmd("orch-mcp");
    c.stderr(std::process::Stdio::null());
    let mut mcp =
        orch_core::mcp::client::Client::start(&mut c, std::time::Duration::from_secs(30)).unwrap();
    let init = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    mcp.send(&init).unwrap();
    mcp.recv().unwrap();
    let call = serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "queue_status", "arguments": {}}});
    mcp.send(&call).unwrap();
    let reply = mcp.recv().unwrap();
    let text = reply["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        text.starts_with("3 tasks: 1 queued (1 ready), 0 batched, 0 running, 0 done, 0 failed, 0 cancelled, 2 landed."),
        "{text}"
    );
    assert!(mcp.wait().unwrap().success());
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
    let shown = env.ok("orch-queue", &["show", "3"]);
    assert!(shown.contains("changes:     none"), "{shown}");
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
    let f = fake_agent();
    let mut c = env.cmd("orch-run");
    c.args([b.as_str(), "--worktree", "--", f.as_str(), "{prompt}"])
        .current_dir(&r)
        .env("PATH", bin_dir());
    check(c.output().unwrap(), "git not found on PATH");
    assert!(!r.join(".orch").exists(), "no worktree made");
    // And with all that fixed, it runs.
    assert_code(&run_worktrees(&env, &r, &b, &[]), 0);
}

/// `orch-land ARGS…` in the repository.
fn land(env: &Env, r: &Path, args: &[&str]) -> Output {
    run_in(env, r, "orch-land", args)
}

/// The `Orch-Task` trailers on `main`'s first-parent history, oldest first.
fn landed_order(r: &Path) -> Vec<i64> {
    let log = git(
        r,
        &[
            "log",
            "--first-parent",
            "--reverse",
            "--format=%(trailers:key=Orch-Task,valueonly)",
            "main",
        ],
    );
    log.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

#[test]
fn twenty_tasks_in_worktrees_land_as_twenty_commits_in_dependency_order() {
    let env = Env::new();
    let r = repo(&env);
    let base = git(&r, &["rev-parse", "HEAD"]);
    // Line 1 waits for line 20 (by key) and has the highest priority: it still lands after it.
    let mut lines = String::new();
    for i in 1..=20 {
        let after = if i == 1 { r#","after":["t20"]"# } else { "" };
        let prio = if i == 1 { 9 } else { 20 - i };
        lines.push_str(&format!(
            "{{\"role\":\"dev\",\"prompt\":\"write=files/f{i}.txt=v{i}\",\"key\":\"t{i}\",\"priority\":{prio}{after}}}\n"
        ));
    }
    env.ok_with("orch-queue", &["add", "--stdin"], lines.as_bytes());
    let b = env
        .ok("orch-batch", &["create", "--max", "100"])
        .trim()
        .to_string();
    assert_code(&run_worktrees(&env, &r, &b, &["-j", "8"]), 0);
    let b2 = env.ok("orch-batch", &["create"]).trim().to_string();
    assert_code(&run_worktrees(&env, &r, &b2, &[]), 0);

    let out = land(&env, &r, &["--all", "--json"]);
    assert_code(&out, 0);
    let lines = json_lines(&stdout(&out));
    assert_eq!(lines.len(), 20);
    assert!(lines.iter().all(|l| l["outcome"] == "landed"), "{lines:?}");
    // Priority order (2, 3, … 20 by falling priority), then 1 after its dependency 20.
    let mut expected: Vec<i64> = (2..=20).collect();
    expected.push(1);
    assert_eq!(landed_order(&r), expected);
    let ids: Vec<i64> = lines.iter().map(|l| l["task"].as_i64().unwrap()).collect();
    assert_eq!(ids, expected);
    let range = format!("{base}..main");
    assert_eq!(
        git(&r, &["rev-list", "--first-parent", "--count", &range]),
        "20"
    );
    for i in 1..=20 {
        assert_eq!(
            git(&r, &["show", &format!("main:files/f{i}.txt")]),
            format!("v{i}")
        );
        assert_eq!(task(&env, i)["status"], "landed");
    }
    let c = lines[0]["commit"].as_str().unwrap();
    assert_eq!(task(&env, 2)["landed_commit"], c);
    git(&r, &["fsck", "--strict", "--no-progress"]);
    assert_eq!(
        git(&r, &["status", "--porcelain"]),
        "",
        "the checkout followed the branch"
    );
    let st = env.ok("orch", &["status"]);
    assert!(
        st.contains("0 done, 0 failed, 0 cancelled, 20 landed"),
        "{st}"
    );
    assert_eq!(
        json(&env.ok("orch-queue", &["stats", "--json"]))["landed"],
        20
    );
    // Landing again lands nothing more.
    let again = land(&env, &r, &["--all"]);
    assert_code(&again, 1);
    assert_eq!(landed_order(&r).len(), 20);
    // And clean leaves no worktree, and no branch of a landed task.
    env.ok("orch-queue", &["clean"]);
    assert_eq!(git(&r, &["worktree", "list"]).lines().count(), 1);
    assert_eq!(git(&r, &["branch", "--list", "orch/*"]), "");
    assert!(std::fs::read_dir(r.join(".orch/worktrees"))
        .unwrap()
        .all(|e| e.unwrap().file_name() == ".gitignore"));
}

#[test]
fn two_tasks_editing_the_same_lines_land_one_and_stop_at_the_other() {
    let env = Env::new();
    let r = repo(&env);
    let (b, ids) = batch(&env, &["write=shared.txt=first", "write=shared.txt=second"]);
    assert_code(&run_worktrees(&env, &r, &b, &[]), 0);
    // A task waiting for the second one must not land before it does.
    let dependent = env
        .ok(
            "orch-queue",
            &[
                "add",
                "dev",
                "write=later.txt=x",
                "--after",
                &ids[1].to_string(),
            ],
        )
        .trim()
        .to_string();
    let b2 = env.ok("orch-batch", &["create"]).trim().to_string();
    assert_code(&run_worktrees(&env, &r, &b2, &[]), 0);

    let out = land(&env, &r, &["--all", "--json"]);
    assert_code(&out, 1);
    let lines = json_lines(&stdout(&out));
    assert_eq!(lines.len(), 2, "it stops at the conflict: {lines:?}");
    assert_eq!(lines[0]["outcome"], "landed");
    assert_eq!(lines[1]["outcome"], "conflict");
    assert_eq!(lines[1]["task"], ids[1]);
    assert_eq!(lines[1]["files"], serde_json::json!(["shared.txt"]));
    assert_eq!(git(&r, &["status", "--porcelain"]), "");
    assert_eq!(
        git(&r, &["rev-parse", "main"]),
        lines[0]["commit"].as_str().unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(r.join("shared.txt")).unwrap(),
        "first\n"
    );
    let t = task(&env, ids[1]);
    assert_eq!(t["status"], "done");
    assert_eq!(t["conflict"]["files"], serde_json::json!(["shared.txt"]));
    assert_eq!(status(&env, dependent.parse().unwrap()), "done");

    // With --on-conflict queue, a task that resolves it is queued, waiting for nothing.
    let out = land(&env, &r, &["--all", "--json", "--on-conflict", "queue"]);
    let lines = json_lines(&stdout(&out));
    assert_eq!(lines[0]["outcome"], "conflict");
    let q = lines[0]["queued"].as_i64().expect("a queued task");
    assert_eq!(
        lines[1]["outcome"], "skipped",
        "its dependent waits: {lines:?}"
    );
    let resolver = task(&env, q);
    assert_eq!(resolver["status"], "queued");
    assert_eq!(resolver["after"], serde_json::json!([]));
    let p = resolver["prompt"].as_str().unwrap();
    assert!(
        p.contains("orch/task-2") && p.contains("main") && p.contains("shared.txt"),
        "{p}"
    );
    assert_eq!(git(&r, &["status", "--porcelain"]), "");
    // The resolving task's own branch lands like any other.
    let rb = env.ok("orch-batch", &["create"]).trim().to_string();
    let f = fake_agent();
    let mut c = env.cmd("orch-run");
    c.args([
        rb.as_str(),
        "--worktree",
        "--",
        f.as_str(),
        "write=shared.txt=first-and-second",
    ])
    .current_dir(&r);
    assert_code(&c.output().unwrap(), 0);
    let out = land(&env, &r, &["--all", "--json"]);
    let lines = json_lines(&stdout(&out));
    let mine = lines
        .iter()
        .find(|l| l["task"] == q)
        .unwrap_or_else(|| panic!("{lines:?} {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(mine["outcome"], "landed", "{lines:?}");
    assert_eq!(
        std::fs::read_to_string(r.join("shared.txt")).unwrap(),
        "first-and-second\n"
    );
    // The task it resolved lands with it, and so its dependent can land now.
    let resolved = task(&env, ids[1]);
    assert_eq!(resolved["status"], "landed");
    assert_eq!(resolved["landed_commit"], mine["commit"]);
    let out = land(&env, &r, &["--all", "--json"]);
    assert_code(&out, 0);
    let lines = json_lines(&stdout(&out));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["task"], dependent.parse::<i64>().unwrap());
    assert_eq!(lines[0]["outcome"], "landed");
}

#[test]
fn orch_land_sigkilled_between_merges_lands_every_task_exactly_once() {
    let env = Env::new();
    let r = repo(&env);
    let prompts: Vec<String> = (1..=12).map(|i| format!("write=k{i}.txt={i}")).collect();
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let (b, _) = batch(&env, &refs);
    assert_code(&run_worktrees(&env, &r, &b, &["-j", "6"]), 0);
    // Kill it at growing delays, a bounded number of times, then let it finish.
    for delay in [5u64, 15, 30, 60, 100, 150] {
        let mut c = env.cmd("orch-land");
        c.args(["--all"])
            .current_dir(&r)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = c.spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay));
        let _ = child.kill();
        let _ = child.wait();
    }
    let out = land(&env, &r, &["--all"]);
    assert!(matches!(out.status.code(), Some(0) | Some(1)), "{out:?}");
    let mut order = landed_order(&r);
    assert_eq!(order.len(), 12, "each task once: {order:?}");
    order.sort();
    assert_eq!(order, (1..=12).collect::<Vec<i64>>());
    for i in 1..=12 {
        assert_eq!(status(&env, i), "landed");
    }
    git(&r, &["fsck", "--strict", "--no-progress"]);
    assert_eq!(git(&r, &["status", "--porcelain"]), "");
}

#[test]
fn squash_and_rebase_put_the_work_on_a_branch_not_checked_out() {
    let env = Env::new();
    let r = repo(&env);
    git(&r, &["branch", "release"]);
    let (b1, _) = batch(&env, &["write=a.txt=a commit=one write=b.txt=b"]);
    assert_code(&run_worktrees(&env, &r, &b1, &[]), 0);
    let (b2, _) = batch(&env, &["write=c.txt=c"]);
    assert_code(&run_worktrees(&env, &r, &b2, &[]), 0);
    let head_before = git(&r, &["rev-parse", "main"]);
    let out = land(
        &env,
        &r,
        &[&b1, "--into", "release", "--strategy", "rebase", "--json"],
    );
    assert_code(&out, 0);
    // Rebase: task 1's two commits replayed, the last one carrying the trailer.
    let subjects = git(&r, &["log", "--format=%s", "main..release"]);
    assert_eq!(subjects.lines().count(), 2, "{subjects}");
    assert!(subjects.contains("orch: task 1: write=a.txt=a commit=one"));
    assert!(
        git(&r, &["log", "--format=%P", "-1", "release"])
            .split(' ')
            .count()
            == 1
    );
    assert_eq!(
        git(&r, &["rev-parse", "main"]),
        head_before,
        "main untouched"
    );
    assert_eq!(git(&r, &["status", "--porcelain"]), "");
    // Squash: one commit, one parent.
    git(&r, &["branch", "squashed", "main"]);
    let out = land(
        &env,
        &r,
        &["--all", "--into", "squashed", "--strategy", "squash"],
    );
    assert_code(&out, 0);
    assert_eq!(git(&r, &["rev-list", "--count", "main..squashed"]), "1");
    assert_eq!(git(&r, &["show", "squashed:c.txt"]), "c");
    assert_eq!(
        git(&r, &["log", "--format=%P", "-1", "squashed"])
            .split(' ')
            .count(),
        1
    );
}

#[test]
fn orch_land_bad_input_is_one_line_exit_2_and_changes_nothing() {
    let env = Env::new();
    let r = repo(&env);
    let (b, _) = batch(&env, &["write=a.txt=a"]);
    assert_code(&run_worktrees(&env, &r, &b, &[]), 0);
    let plain = env.add("dev", "no branch here");
    let b2 = env.ok("orch-batch", &["create"]).trim().to_string();
    env.ok("orch-queue", &["start", &plain.to_string()]);
    env.ok("orch-queue", &["done", &plain.to_string()]);
    let db_before = dump(&env.db);
    let main_before = git(&r, &["rev-parse", "main"]);
    let unchanged = |what: &str| {
        assert_eq!(dump(&env.db), db_before, "{what}: database unchanged");
        assert_eq!(
            git(&r, &["rev-parse", "main"]),
            main_before,
            "{what}: main unchanged"
        );
    };
    let check = |out: Output, what: &str| {
        let err = assert_error(&out, "orch-land");
        assert!(err.contains(what), "{what}: {err}");
        unchanged(what);
    };
    let outside = env.path().join("plain");
    std::fs::create_dir_all(&outside).unwrap();
    check(land(&env, &outside, &["--all"]), "not in a git repository");
    check(
        land(&env, &r, &["--all", "--into", "no-such-branch"]),
        "unknown branch",
    );
    check(land(&env, &r, &[&b2]), "has no branch to land");
    check(land(&env, &r, &["99"]), "batch 99 not found");
    check(
        land(&env, &r, &["--all", "--strategy", "octopus"]),
        "octopus",
    );
    check(land(&env, &r, &[]), "<BATCH>");
    std::fs::write(r.join("README"), "edited\n").unwrap();
    check(land(&env, &r, &["--all"]), "uncommitted changes");
    assert_eq!(
        std::fs::read_to_string(r.join("README")).unwrap(),
        "edited\n"
    );
    git(&r, &["checkout", "--", "README"]);
    let mut c = env.cmd("orch-land");
    c.args(["--all"]).current_dir(&r).env("PATH", bin_dir());
    check(c.output().unwrap(), "git not found on PATH");
    // A git too old for `merge-tree --write-tree` (a wrapper that reports
    // 2.37 and hands everything else to the real git) is named, not tripped on.
    let real = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join("git"))
        .find(|p| p.is_file())
        .unwrap();
    let old = env.path().join("old-git");
    std::fs::create_dir_all(&old).unwrap();
    let wrapper = old.join("git");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n[ \"$1\" = version ] && {{ echo 'git version 2.37.4'; exit 0; }}\nexec '{}' \"$@\"\n",
            real.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = env.cmd("orch-land");
    c.args(["--all"])
        .current_dir(&r)
        .env("PATH", path_with(&[&old]));
    check(c.output().unwrap(), "needs git 2.38 or later");
    // The same request, fixed, lands.
    assert_code(&land(&env, &r, &["--all"]), 0);
}

/// Runs `c` and waits at most `secs` seconds for it; the output, and
/// whether it finished in time (if not it is killed).
fn within(mut c: Command, secs: u64) -> (Output, bool) {
    c.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut finished = false;
    for _ in 0..secs * 20 {
        if child.try_wait().unwrap().is_some() {
            finished = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if !finished {
        let _ = child.kill();
    }
    (child.wait_with_output().unwrap(), finished)
}

fn batched_ids(env: &Env) -> Vec<i64> {
    env.sql()
        .prepare("SELECT id FROM tasks WHERE batch_id IS NOT NULL ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn touches_globs_with_many_double_stars_are_decided_quickly_and_long_ones_refused() {
    let env = Env::new();
    let stars = format!("{}x", "**/".repeat(8));
    let deep = format!("{}y", "a/".repeat(18));
    env.ok("orch-queue", &["add", "dev", "one", "--touches", &stars]);
    env.ok("orch-queue", &["add", "dev", "two", "--touches", &deep]);
    env.ok("orch-queue", &["add", "dev", "three", "--touches", &stars]);
    let mut c = env.cmd("orch-batch");
    c.args(["create", "--max", "10"]);
    let (out, finished) = within(c, 10);
    assert!(finished, "orch-batch create did not finish in 10 s");
    assert_code(&out, 0);
    // One and two cannot name the same path; one and three can.
    assert_eq!(batched_ids(&env), [1, 2]);
    // Longer globs are refused when queued, with the limit named.
    for (glob, limit) in [
        (format!("{}x", "a/".repeat(32)), "at most 32 components"),
        (format!("{}x", "**/".repeat(9)), "at most 8 `*` or `**`"),
        ("a".repeat(129), "1-128 bytes"),
    ] {
        let out = env.run("orch-queue", &["add", "dev", "four", "--touches", &glob]);
        let err = assert_error(&out, "orch-queue");
        assert!(err.contains(limit), "{err}");
    }
    let many: Vec<String> = (0..17).map(|i| format!("\"f{i}\"")).collect();
    let line = format!(
        "{{\"role\":\"dev\",\"prompt\":\"five\",\"touches\":[{}]}}\n",
        many.join(",")
    );
    let out = env.run_with("orch-queue", &["add", "--stdin"], line.as_bytes());
    let err = assert_error(&out, "orch-queue");
    assert!(err.contains("at most 16"), "{err}");
    let n: i64 = env
        .sql()
        .query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 3);
}

/// A glob as costly to compare as the limits allow: 128 bytes, 8 stars,
/// one component, each ending differently so no two overlap.
fn costly_glob(len: usize, t: usize, g: usize) -> String {
    let head = format!("{}*", "*a".repeat(7));
    let tail = format!("end{t}_{g}");
    format!("{head}{}{tail}", "a".repeat(len - head.len() - tail.len()))
}

#[test]
fn touches_overlap_checks_are_bounded_inside_the_write_transaction() {
    let env = Env::new();
    // The worst input the limits accept batches within a few seconds.
    for t in 0..12 {
        let mut args = vec!["add".to_string(), "dev".into(), format!("task {t}")];
        for g in 0..16 {
            args.extend(["--touches".into(), costly_glob(128, t, g)]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        env.ok("orch-queue", &args);
    }
    // The old worst case (64 globs of 1020 bytes with 506 stars each) is
    // refused at add, with one line and nothing written.
    let mut args = vec!["add".to_string(), "dev".into(), "big".into()];
    for g in 0..64 {
        let mut glob = "*a".repeat(505)[..1010].to_string();
        glob.push_str(&format!("*end1_{g}"));
        args.extend(["--touches".into(), glob]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = assert_error(&env.run("orch-queue", &args), "orch-queue");
    assert!(err.contains("a task gives at most 16"), "{err}");
    let n: i64 = env
        .sql()
        .query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 12);

    let mut c = env.cmd("orch-batch");
    c.args(["create", "--max", "100"]);
    let (out, finished) = within(c, 10);
    assert!(finished, "orch-batch create did not finish in 10 s");
    assert_code(&out, 0);
    // No two overlap: the batch holds as many as could be compared, in order.
    let first = batched_ids(&env);
    assert!(first.len() >= 2, "{first:?}");
    assert_eq!(first, (1..=first.len() as i64).collect::<Vec<_>>());

    // Globs stored before these limits cost no more: the tasks that could
    // not be compared in time wait for the next batch.
    let old = Env::new();
    for t in 0..3 {
        old.add("dev", &format!("old {t}"));
        let globs: Vec<String> = (0..64)
            .map(|g| {
                let mut glob = "*a".repeat(505)[..1010].to_string();
                glob.push_str(&format!("*end{t}_{g}"));
                glob
            })
            .collect();
        old.sql()
            .execute(
                "UPDATE tasks SET touches = ?1 WHERE id = ?2",
                rusqlite::params![serde_json::to_string(&globs).unwrap(), t + 1],
            )
            .unwrap();
    }
    let mut c = old.cmd("orch-batch");
    c.args(["create", "--max", "10"]);
    let (out, finished) = within(c, 10);
    assert!(finished, "orch-batch create did not finish in 10 s");
    assert_code(&out, 0);
    assert_eq!(batched_ids(&old), [1]);
    let (out, finished) = within(
        {
            let mut c = old.cmd("orch-batch");
            c.args(["plan"]);
            c
        },
        10,
    );
    assert!(finished, "orch-batch plan did not finish in 10 s");
    assert_code(&out, 0);
}

#[test]
fn tasks_touching_overlapping_globs_never_share_a_batch() {
    let env = Env::new();
    let add = |prompt: &str, globs: &[&str]| -> i64 {
        let mut args = vec!["add", "dev", prompt];
        for g in globs {
            args.extend(["--touches", g]);
        }
        env.ok("orch-queue", &args).trim().parse().unwrap()
    };
    let a = add("Change the schema", &["src/db/*"]);
    let b = add("Change the queries", &["src/db/*", "docs/db.md"]);
    let c = add("Change the CLI", &["src/cli/*"]);
    let d = add("Write the changelog", &[]);
    let e = env
        .ok_with(
            "orch-queue",
            &["add", "--stdin"],
            br#"{"role":"dev","prompt":"Tune the schema","touches":["src/**/schema.rs"]}
"#,
        )
        .trim()
        .parse::<i64>()
        .unwrap();
    assert_eq!(
        task(&env, b)["touches"],
        serde_json::json!(["src/db/*", "docs/db.md"])
    );
    let shown = env.ok("orch-queue", &["show", &b.to_string()]);
    assert!(
        shown.contains("touches:     src/db/*, docs/db.md"),
        "{shown}"
    );

    let plan = env.ok("orch-batch", &["plan"]);
    assert!(
        plan.contains(&format!(
            "held back from wave 1: touches src/db/*, which overlaps src/db/* of task {a}"
        )),
        "{plan}"
    );
    let pj = json(&env.ok("orch-batch", &["plan", "--json"]));
    let wave1: Vec<i64> = pj["waves"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    assert_eq!(wave1, [a, c, d]);

    let first = json(&env.ok("orch-batch", &["create", "--json"]));
    let ids: Vec<i64> = first["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [a, c, d], "b and e overlap a: they wait");
    let second = json(&env.ok("orch-batch", &["create", "--json"]));
    let ids: Vec<i64> = second["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [b], "e overlaps b too");
    let third = json(&env.ok("orch-batch", &["create", "--json"]));
    assert_eq!(third["tasks"][0]["id"], e);

    // Without --touches a batch is what it always was.
    let other = Env::new();
    for i in 0..4 {
        other.add("dev", &format!("task {i}"));
    }
    let all = json(&other.ok("orch-batch", &["create", "--json"]));
    assert_eq!(all["tasks"].as_array().unwrap().len(), 4);
}

#[test]
fn orch_land_to_a_full_stdout_lands_and_says_so_with_exit_3() {
    let env = Env::new();
    let r = repo(&env);
    let (b, ids) = batch(&env, &["write=a.txt=a", "write=b.txt=b"]);
    assert_code(&run_worktrees(&env, &r, &b, &[]), 0);
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let mut c = env.cmd("orch-land");
    c.args(["--all", "--json"]).current_dir(&r).stdout(full);
    let out = c.output().unwrap();
    assert_code(&out, 3);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("landed into main"), "{err}");
    for id in ids {
        assert_eq!(status(&env, id), "landed");
    }
    assert_eq!(landed_order(&r), [1, 2]);
}

#[test]
fn orch_land_run_four_times_at_once_lands_every_task_exactly_once() {
    let env = Env::new();
    let r = repo(&env);
    let prompts: Vec<String> = (1..=8).map(|i| format!("write=c{i}.txt={i}")).collect();
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let (b, _) = batch(&env, &refs);
    assert_code(&run_worktrees(&env, &r, &b, &["-j", "4"]), 0);
    let children: Vec<_> = (0..4)
        .map(|_| {
            let mut c = env.cmd("orch-land");
            c.args(["--all"])
                .current_dir(&r)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) | Some(1) => {}
            Some(2) => assert!(err.contains("another orch-land is landing"), "{err}"),
            other => panic!("{other:?}: {err}"),
        }
    }
    let _ = land(&env, &r, &["--all"]);
    let mut order = landed_order(&r);
    order.sort();
    assert_eq!(
        order,
        (1..=8).collect::<Vec<i64>>(),
        "each task exactly once"
    );
}
