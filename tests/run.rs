//! orch-run through the real binary, with `tests/fake-agent` standing in for
//! agent CLIs (it sleeps, prints, fails on request and echoes its arguments).

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// (start, end) in ms of every task, from the database.
fn intervals(env: &Env) -> Vec<(i64, i64)> {
    let c = env.sql();
    let mut s = c
        .prepare("SELECT started_at, finished_at FROM tasks ORDER BY id")
        .unwrap();
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The most intervals open at one instant (touching ones do not overlap).
fn peak(iv: &[(i64, i64)]) -> i32 {
    let mut ev: Vec<(i64, i32)> = iv.iter().flat_map(|&(s, e)| [(s, 1), (e, -1)]).collect();
    ev.sort();
    let (mut open, mut peak) = (0, 0);
    for (_, d) in ev {
        open += d;
        peak = peak.max(open);
    }
    peak
}

fn count(env: &Env, sql: &str) -> i64 {
    env.sql().query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Everything in the tables orch-run writes, for before/after comparisons.
fn dump(env: &Env) -> String {
    let c = env.sql();
    let mut out = String::new();
    for table in ["tasks", "batches", "agent_calls", "task_deps"] {
        let mut s = c
            .prepare(&format!("SELECT * FROM {table} ORDER BY 1"))
            .unwrap();
        let n = s.column_count();
        let rows = s
            .query_map([], |r| {
                (0..n)
                    .map(|i| {
                        r.get::<_, rusqlite::types::Value>(i)
                            .map(|v| format!("{v:?}"))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .unwrap();
        for row in rows {
            out.push_str(&format!("{table}: {}\n", row.unwrap().join(" | ")));
        }
    }
    out
}

/// A directory holding the fake agent under the name `claude`.
fn claude_dir(env: &Env) -> PathBuf {
    let dir = env.path().join("agents");
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("claude");
    if !link.exists() {
        symlink(fake_agent(), &link).unwrap();
    }
    dir
}

/// PATH with `first` in front of the suite and the system directories.
fn timed(env: &Env, args: &[&str]) -> (Output, Duration) {
    let t = Instant::now();
    let out = env.run("orch-run", args);
    (out, t.elapsed())
}

#[test]
fn eight_one_second_tasks_overlap_with_j8_and_pair_up_with_j2() {
    let env = Env::new();
    let prompts = ["sleep=1"; 8];
    let (b, _) = batch_of(&env, &prompts);
    let f = fake_agent();
    let out = env.run("orch-run", &[&b, "-j", "8", "--", &f, "{prompt}"]);
    assert_code(&out, 0);
    // Order, not a stopwatch: every task started before any of them ended.
    let iv = intervals(&env);
    let last_start = iv.iter().map(|i| i.0).max().unwrap();
    let first_end = iv.iter().map(|i| i.1).min().unwrap();
    assert!(last_start < first_end, "-j 8 ran them in turns: {iv:?}");
    assert_eq!(peak(&iv), 8);

    let env = Env::new();
    let (b, _) = batch_of(&env, &prompts);
    let out = env.run("orch-run", &[&b, "-j", "2", "--", &f, "{prompt}"]);
    assert_code(&out, 0);
    // In pairs: the k-th task to start (k >= 2) starts only once k-1 have ended,
    // and the two of each pair overlap.
    let iv = intervals(&env);
    let mut starts: Vec<i64> = iv.iter().map(|i| i.0).collect();
    let mut ends: Vec<i64> = iv.iter().map(|i| i.1).collect();
    starts.sort();
    ends.sort();
    for k in 2..starts.len() {
        assert!(
            starts[k] >= ends[k - 2],
            "task {k} started in a full slot: {iv:?}"
        );
    }
    for k in (0..starts.len()).step_by(2) {
        assert!(starts[k + 1] < ends[k], "pair {k} ran in turns: {iv:?}");
    }
    assert_eq!(peak(&iv), 2, "never more than -j at once");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("8 done, 0 failed"), "{stderr}");
}

#[test]
fn results_and_exit_codes_land_on_their_tasks() {
    let env = Env::new();
    let (b, ids) = batch_of(
        &env,
        &[
            "say=alpha sleep=0.3",
            "say=beta exit=3 err=broken",
            "say=gamma sleep=0.1 err=just-a-warning",
        ],
    );
    let f = fake_agent();
    // The batch id comes on stdin, as from `orch-batch create | orch-run`.
    let out = env.run_with(
        "orch-run",
        &["--json", "--", &f, "{id}", "{role}", "{prompt}"],
        format!("{b}\n").as_bytes(),
    );
    assert_code(&out, 1);
    let recs = json_lines(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(recs.len(), 3);
    let rec = |id: i64| recs.iter().find(|r| r["id"] == id).unwrap().clone();
    for (id, word, code) in [
        (ids[0], "alpha", 0),
        (ids[1], "beta", 3),
        (ids[2], "gamma", 0),
    ] {
        let t = task(&env, id);
        let r = rec(id);
        let result = t["result"].as_str().unwrap();
        assert!(
            result.starts_with(&format!("{word}\n[1] {id}\n[2] dev\n")),
            "{result}"
        );
        assert_eq!(t["exit_code"], code);
        assert_eq!(r["exit_code"], code);
        assert_eq!(r["result"], t["result"]);
        let status = if code == 0 { "done" } else { "failed" };
        assert_eq!(t["status"], status);
        assert_eq!(r["status"], status);
        assert!(t["started_at"].is_string() && t["finished_at"].is_string());
    }
    assert_eq!(task(&env, ids[1])["error"], "exited with status 3: broken");
    let log: String = env
        .sql()
        .query_row("SELECT log FROM tasks WHERE id = ?1", [ids[2]], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(log, "just-a-warning\n");
    // One agent call per task, closed, under the run's session id.
    assert_eq!(
        count(&env, &format!("SELECT count(*) FROM agent_calls WHERE session_id = 'orch-run:{b}' AND source = 'orch-run' AND finished_at >= started_at AND agent_type = 'dev'")),
        3
    );
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM agent_calls WHERE status = 'failed'"
        ),
        1
    );
}

#[test]
fn a_hostile_prompt_reaches_the_agent_as_one_literal_argument() {
    let env = Env::new();
    let marker = env.path().join("pwned");
    let prompt = format!(
        "$(touch {m}); rm -rf ~; `touch {m}` 'q' \"dq\" \\ * -rf",
        m = marker.display()
    );
    let (b, ids) = batch_of(&env, &[&prompt]);
    let f = fake_agent();
    env.ok("orch-run", &[&b, "--", &f, "{prompt}"]);
    assert_eq!(task(&env, ids[0])["result"], format!("[1] {prompt}"));

    // The same through the claude preset: one argument after `--`.
    let (b, ids) = batch_of(&env, &[&prompt]);
    let mut c = env.cmd("orch-run");
    c.args([&b, "--agent", "claude"])
        .env("PATH", path_with(&[&claude_dir(&env), &bin_dir()]));
    let out = c.output().unwrap();
    assert_code(&out, 0);
    let result = task(&env, ids[0])["result"].as_str().unwrap().to_string();
    assert!(result.ends_with(&format!("\nprompt: {prompt}")), "{result}");
    assert!(!marker.exists(), "nothing may be executed");
    assert!(env.home().exists());
}

#[test]
fn the_claude_preset_reads_the_json_result_and_judges_is_error() {
    let env = Env::new();
    let (b, ids) = batch_of(
        &env,
        &[
            "say=Fixed say=it.",
            "iserror say=Invalid-API-key",
            "exit=2 say=crashed",
            "what is your role",
        ],
    );
    let mut c = env.cmd("orch-run");
    c.args([b.as_str(), "--agent", "claude", "--json"])
        .env("PATH", path_with(&[&claude_dir(&env), &bin_dir()]));
    let out = c.output().unwrap();
    assert_code(&out, 1);
    let ok = task(&env, ids[0]);
    assert_eq!(
        (ok["status"].as_str(), ok["result"].as_str()),
        (Some("done"), Some("Fixed it."))
    );
    // "subtype": "success" with "is_error": true is a failure.
    let bad = task(&env, ids[1]);
    assert_eq!(bad["status"], "failed");
    assert_eq!(bad["exit_code"], 0);
    assert!(
        bad["error"].as_str().unwrap().contains("Invalid-API-key"),
        "{bad}"
    );
    let crashed = task(&env, ids[2]);
    assert_eq!(
        (crashed["status"].as_str(), crashed["exit_code"].as_i64()),
        (Some("failed"), Some(2))
    );
    // The role reaches claude as an appended system prompt.
    let role = task(&env, ids[3]);
    assert_eq!(role["status"], "done");
    let r = role["result"].as_str().unwrap();
    assert!(
        r.starts_with("system: You are working as the dev agent on orch task"),
        "{r}"
    );
}

#[test]
fn a_timeout_fails_only_the_task_that_overran() {
    let env = Env::new();
    let (b, ids) = batch_of(
        &env,
        &["sleep=30", "sleep=0.2 say=quick", "sleep=30 ignoreterm"],
    );
    let f = fake_agent();
    let (out, wall) = timed(&env, &[&b, "--timeout", "1", "--", &f, "{prompt}"]);
    assert_code(&out, 1);
    // 1 s, plus the 2 s grace before SIGKILL for the one that ignores SIGTERM:
    // what matters is that nobody waited for the 30 s sleepers.
    assert!(wall < Duration::from_secs(25), "took {wall:?}");
    let slow = task(&env, ids[0]);
    assert_eq!(
        (slow["status"].as_str(), slow["error"].as_str()),
        (Some("failed"), Some("timed out after 1 s"))
    );
    assert_eq!(task(&env, ids[1])["status"], "done");
    let stubborn = task(&env, ids[2]);
    assert_eq!(
        (stubborn["status"].as_str(), stubborn["error"].as_str()),
        (Some("failed"), Some("timed out after 1 s"))
    );
}

/// True when `pid` is gone (or a zombie: dead, waiting for its parent).
fn dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

fn wait_for(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn sigint_stops_every_child_and_leaves_no_task_running() {
    let env = Env::new();
    let pids = env.path().join("pids");
    std::fs::create_dir_all(&pids).unwrap();
    let (b, ids) = batch_of(&env, &["sleep=30", "sleep=30", "sleep=30", "sleep=30"]);
    let f = fake_agent();
    let mut c = env.cmd("orch-run");
    c.args([&b, "-j", "2", "--", &f, "{prompt}"])
        .env("FAKE_AGENT_PIDS", &pids)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    // Wait until both agents and their sleepers are up.
    let t = Instant::now();
    let recorded = loop {
        let files: Vec<_> = std::fs::read_dir(&pids)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        if files.len() == 4 {
            break files;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "agents did not start: {files:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(100));
    let procs: Vec<i32> = recorded
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap().trim().parse().unwrap())
        .collect();
    assert!(procs.iter().all(|&p| !dead(p)));
    signal(&child, rustix::process::Signal::INT);
    let status = wait_for(&mut child, Duration::from_secs(10)).expect("orch-run did not stop");
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    let t = Instant::now();
    while !procs.iter().all(|&p| dead(p)) {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "children left alive: {procs:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        count(&env, "SELECT count(*) FROM tasks WHERE status = 'running'"),
        0
    );
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM tasks WHERE status = 'failed' AND error = 'interrupted'"
        ),
        2
    );
    // The two that never started are back in the queue, ready for the next batch.
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM tasks WHERE status = 'queued' AND batch_id IS NULL"
        ),
        2
    );
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM agent_calls WHERE finished_at IS NULL"
        ),
        0
    );
    assert_eq!(task(&env, ids[0])["status"], "failed");
    assert!(err.contains("interrupted by SIGINT"), "{err}");
}

#[test]
fn a_missing_agent_fails_before_anything_changes() {
    let env = Env::new();
    let (b, _) = batch_of(&env, &["do something"]);
    let before = dump(&env);
    let mut c = env.cmd("orch-run");
    c.args([&b, "--agent", "codex"]).env("PATH", bin_dir());
    let err = assert_error(&c.output().unwrap(), "orch-run");
    assert!(err.contains("\"codex\" not found on PATH"), "{err}");
    assert_error(
        &env.run("orch-run", &[&b, "--", "/no/such/agent", "{prompt}"]),
        "orch-run",
    );
    assert_error(
        &env.run("orch-run", &[&b, "--", "sh", "-c", "{}"]),
        "orch-run",
    );
    assert_eq!(dump(&env), before);
    // Not even a database is made.
    let mut c = env.cmd("orch-run");
    c.args(["1", "--agent", "gemini"])
        .env("PATH", bin_dir())
        .env("ORCH_DB", env.path().join("new.db"));
    assert_error(&c.output().unwrap(), "orch-run");
    assert!(!env.path().join("new.db").exists());
}

#[test]
fn a_second_run_of_a_running_batch_is_refused() {
    let env = Env::new();
    let (b, ids) = batch_of(&env, &["sleep=2 say=once", "sleep=2 say=once"]);
    let f = fake_agent();
    let mut c = env.cmd("orch-run");
    c.args([&b, "--", &f, "{prompt}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut first = c.spawn().unwrap();
    let t = Instant::now();
    while count(&env, "SELECT count(*) FROM tasks WHERE status = 'running'") < 2 {
        assert!(t.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(20));
    }
    let err = assert_error(
        &env.run("orch-run", &[&b, "--", &f, "{prompt}"]),
        "orch-run",
    );
    assert!(err.contains("already being run"), "{err}");
    assert_eq!(
        wait_for(&mut first, Duration::from_secs(10))
            .unwrap()
            .code(),
        Some(0)
    );
    for id in ids {
        assert_eq!(task(&env, id)["status"], "done");
    }
    assert_eq!(count(&env, "SELECT count(*) FROM agent_calls"), 2);
    // Once run, the batch is not run again either.
    let err = assert_error(
        &env.run("orch-run", &[&b, "--", &f, "{prompt}"]),
        "orch-run",
    );
    assert!(err.contains("already run"), "{err}");
}

#[test]
fn stdin_lines_become_a_batch_of_their_own() {
    let env = Env::new();
    let other = env.add("dev", "not part of this run");
    let out = env.run_with(
        "orch-run",
        &["--stdin-lines", "--json", "--", "sh", "-c", "{prompt}"],
        b"echo one\n\nprintf '%s' \"$ORCH_TASK_ID\"; exit 3\n",
    );
    assert_code(&out, 1);
    let recs = json_lines(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(recs.len(), 2);
    let by_result = |r: &str| recs.iter().find(|x| x["result"] == r).cloned();
    let one = by_result("one").expect("echo one ran");
    assert_eq!(
        (one["role"].as_str(), one["status"].as_str()),
        (Some("shell"), Some("done"))
    );
    let second = recs.iter().find(|x| x["exit_code"] == 3).unwrap();
    // The task id reaches the agent in ORCH_TASK_ID.
    assert_eq!(second["result"].as_str().unwrap(), second["id"].to_string());
    assert_eq!(task(&env, other)["status"], "queued");
}

#[test]
fn output_beyond_the_cap_keeps_its_end_and_says_so() {
    let env = Env::new();
    let (b, ids) = batch_of(&env, &["spam=5000000"]);
    let f = fake_agent();
    let out = env.run("orch-run", &[&b, "--json", "--", &f, "{prompt}"]);
    assert_code(&out, 0);
    let rec = &json_lines(&String::from_utf8(out.stdout).unwrap())[0];
    assert_eq!(rec["truncated"], true);
    assert!(rec["stdout_bytes"].as_u64().unwrap() > 5_000_000);
    let result = task(&env, ids[0])["result"].as_str().unwrap().to_string();
    // The last 4 MiB (less the final newline): the end of the x's and the echoed argument.
    assert_eq!(result.len(), (4 << 20) - 1);
    assert!(result.starts_with("xxx") && result.ends_with("x\n[1] spam=5000000"));
    let log: String = env
        .sql()
        .query_row("SELECT log FROM tasks WHERE id = ?1", [ids[0]], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(log.contains("kept the last"), "{log}");
}

#[test]
fn bad_usage_is_refused() {
    let env = Env::new();
    let (b, _) = batch_of(&env, &["x y z"]);
    for args in [
        vec![b.as_str(), "-j", "0", "--", "true"],
        vec![b.as_str(), "--timeout", "0", "--", "true"],
        vec![b.as_str(), "--agent", "claude", "--", "true"],
        vec!["999", "--", "true"],
        vec!["--", "true"],
    ] {
        assert_error(&env.run("orch-run", &args), "orch-run");
    }
    assert_eq!(
        count(&env, "SELECT count(*) FROM tasks WHERE status != 'batched'"),
        0
    );
}

#[test]
fn orch_verify_exec_judges_orch_run_parallel_and_one_at_a_time() {
    let env = Env::new();
    let out = env.run(
        "orch-verify",
        &[
            "exec",
            "-n",
            "6",
            "--sleep",
            "1",
            "--json",
            "--",
            "orch-run",
            "--stdin-lines",
            "--",
            "sh",
            "-c",
            "{prompt}",
        ],
    );
    assert_code(&out, 0);
    let v = json_lines(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(v.len(), 1, "stdout holds only the report");
    assert_eq!(
        (v[0]["verdict"].as_str(), v[0]["peak"].as_i64()),
        (Some("PARALLEL"), Some(6))
    );
    // orch-run recorded every probe as a done task of role shell.
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM tasks WHERE role = 'shell' AND status = 'done'"
        ),
        6
    );

    let out = env.run(
        "orch-verify",
        &[
            "exec",
            "-n",
            "3",
            "--sleep",
            "0.3",
            "--json",
            "--",
            "orch-run",
            "--stdin-lines",
            "-j",
            "1",
            "--",
            "sh",
            "-c",
            "{prompt}",
        ],
    );
    assert_code(&out, 1);
    assert_eq!(
        json_lines(&String::from_utf8_lossy(&out.stdout))[0]["verdict"],
        "SEQUENTIAL"
    );
}

/// Item 6: `orch-run --json` whose records cannot be printed has still run
/// and recorded the batch: exit 3 naming it, never 2; a closed stdout is
/// refused before the batch is claimed.
#[test]
fn item6_run_json_after_a_commit_is_exit_3() {
    let env = Env::new();
    let (b, ids) = batch_of(&env, &["say=one", "say=two"]);
    let f = fake_agent();
    let args = [b.as_str(), "--json", "--", f.as_str(), "{prompt}"];
    let out = env.run_bad_stdout("orch-run", &args, b"", BadStdout::Closed);
    assert_error(&out, "orch-run");
    assert_eq!(task(&env, ids[0])["status"], "batched");
    let out = env.run_bad_stdout("orch-run", &args, b"", BadStdout::Full);
    assert_code(&out, 3);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines().last().unwrap().starts_with(&format!(
            "orch-run: error: the run of batch {b} (its tasks' records) committed, but the answer could not be printed"
        )),
        "{err}"
    );
    for id in ids {
        assert_eq!(task(&env, id)["status"], "done");
    }
}

#[test]
fn item15_a_dash_dash_with_no_command_is_refused() {
    let env = Env::new();
    let (b, _) = batch_of(&env, &["x y z"]);
    let before = dump(&env);
    let mut c = env.cmd("orch-run");
    // A claude on PATH: without the check, the empty `--` would run it.
    c.args(["--stdin-lines", "--"])
        .env("PATH", path_with(&[&claude_dir(&env), &bin_dir()]))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    // It may refuse before reading stdin: a closed pipe here is fine.
    let _ = std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"echo hi\n");
    drop(child.stdin.take());
    let err = assert_error(&child.wait_with_output().unwrap(), "orch-run");
    assert!(err.contains("no command after --"), "{err}");
    let mut c = env.cmd("orch-run");
    c.args([b.as_str(), "--"])
        .env("PATH", path_with(&[&claude_dir(&env), &bin_dir()]));
    assert_error(&c.output().unwrap(), "orch-run");
    assert_eq!(dump(&env), before, "nothing queued, claimed or run");
}

/// Queues one task with `prompt` (too long for an argument of `orch-queue add`) and batches it.
fn batch_of_long(env: &Env, prompt: &str) -> (String, i64) {
    let line = serde_json::json!({"role": "dev", "prompt": prompt, "description": "Long prompt"});
    let id: i64 = env
        .ok_with(
            "orch-queue",
            &["add", "--stdin"],
            format!("{line}\n").as_bytes(),
        )
        .trim()
        .parse()
        .unwrap();
    let b = env.ok("orch-batch", &["create"]).trim().to_string();
    (b, id)
}

#[test]
fn item13_prompts_over_128_kib_reach_the_agent_on_stdin_or_in_a_file() {
    let env = Env::new();
    // 300 KB of words (over the 128 KiB one argument may hold), ending in a marker.
    let prompt = format!("{} the end", "lorem ipsum dolor ".repeat(16_000));
    assert!(prompt.len() > 200 << 10);

    // The claude preset: the prompt on stdin, read whole.
    let (b, id) = batch_of_long(&env, &prompt);
    let mut c = env.cmd("orch-run");
    c.args([b.as_str(), "--agent", "claude"])
        .env("PATH", path_with(&[&claude_dir(&env), &bin_dir()]));
    let out = c.output().unwrap();
    assert_code(&out, 0);
    let result = task(&env, id)["result"].as_str().unwrap().to_string();
    assert!(
        result.ends_with(&format!("\nprompt: {prompt}")),
        "{}",
        &result[..200]
    );

    // {prompt_file}: a private file holding exactly the prompt, gone afterwards.
    let (b, id) = batch_of_long(&env, &prompt);
    let out = env.run(
        "orch-run",
        &[
            &b,
            "--",
            "sh",
            "-c",
            "wc -c < \"$1\"; ls -l \"$1\"; echo \"$1\"",
            "sh",
            "{prompt_file}",
        ],
    );
    assert_code(&out, 0);
    let result = task(&env, id)["result"].as_str().unwrap().to_string();
    let lines: Vec<&str> = result.lines().collect();
    assert_eq!(lines[0].trim(), prompt.len().to_string(), "{result}");
    assert!(lines[1].starts_with("-rw-------"), "0600: {result}");
    assert!(
        !Path::new(lines[2]).exists(),
        "removed when the task ended: {result}"
    );

    // A command that names neither placeholder reads the prompt on stdin.
    let (b, id) = batch_of_long(&env, &prompt);
    env.ok("orch-run", &[&b, "--", "wc", "-c"]);
    assert_eq!(
        task(&env, id)["result"].as_str().unwrap().trim(),
        prompt.len().to_string()
    );
}

#[test]
fn item13_a_prompt_too_long_for_an_argument_is_refused_before_the_claim() {
    let env = Env::new();
    let prompt = "word ".repeat(30_000);
    let (b, id) = batch_of_long(&env, &prompt);
    let before = dump(&env);
    let f = fake_agent();
    let err = assert_error(
        &env.run("orch-run", &[&b, "--", &f, "{prompt}"]),
        "orch-run",
    );
    assert!(
        err.contains(&format!("task {id}: its prompt is 150000 bytes")),
        "{err}"
    );
    assert!(err.contains("{prompt_file}"), "{err}");
    assert_eq!(dump(&env), before, "nothing claimed, nothing started");
    // The same through --stdin-lines: nothing queued either.
    let out = env.run_with(
        "orch-run",
        &["--stdin-lines", "--", "sh", "-c", "{prompt}"],
        format!("echo {prompt}\n").as_bytes(),
    );
    assert_error(&out, "orch-run");
    assert_eq!(dump(&env), before);
    // The same batch runs once the prompt goes in a file.
    env.ok(
        "orch-run",
        &[&b, "--", "sh", "-c", "echo ok", "{prompt_file}"],
    );
    assert_eq!(task(&env, id)["status"], "done");
}

#[test]
fn issue17_6_claude_error_results_cost_usage_and_session_are_recorded() {
    let env = Env::new();
    let (b, ids) = batch_of(
        &env,
        &[
            "say=Fixed cost=0.5",
            "error=Tool-failed error=Out-of-budget cost=0.25",
            "maxturns",
            "bare say=ok",
        ],
    );
    let mut c = env.cmd("orch-run");
    c.args([b.as_str(), "--agent", "claude", "--json"])
        .env("PATH", path_with(&[&claude_dir(&env), &bin_dir()]));
    let out = c.output().unwrap();
    assert_code(&out, 1);
    let recs = json_lines(&String::from_utf8(out.stdout).unwrap());

    let ok = task(&env, ids[0]);
    assert_eq!(
        (ok["status"].as_str(), ok["result"].as_str()),
        (Some("done"), Some("Fixed"))
    );
    let cl = &ok["claude"];
    assert!(
        cl["session_id"].as_str().unwrap().starts_with("fake-"),
        "{ok}"
    );
    assert_eq!(cl["total_cost_usd"], 0.5);
    assert_eq!(cl["usage"]["input_tokens"], 12);
    assert_eq!(cl["modelUsage"]["claude-fake-1"]["costUSD"], 0.5);
    assert!(cl.get("errors").is_none(), "{ok}");

    // An error result has errors[] and no result: the errors are the detail.
    let bad = task(&env, ids[1]);
    assert_eq!(bad["status"], "failed");
    assert!(bad["result"].is_null());
    assert_eq!(
        bad["error"],
        "the agent reported an error (error_during_execution): Tool-failed; Out-of-budget"
    );
    assert_eq!(
        bad["claude"]["errors"],
        serde_json::json!(["Tool-failed", "Out-of-budget"])
    );
    assert_eq!(bad["claude"]["total_cost_usd"], 0.25);
    assert!(bad["claude"]["session_id"].is_string());
    let turns = task(&env, ids[2]);
    assert_eq!(
        turns["error"],
        "the agent reported an error (error_max_turns): Reached maximum number of turns (1)"
    );

    // Nothing reported, nothing stored: no zeros made up.
    let bare = task(&env, ids[3]);
    assert_eq!(bare["status"], "done");
    assert!(bare.get("claude").is_none(), "{bare}");

    // The --json records carry the same.
    let rec = recs.iter().find(|r| r["id"] == ids[1]).unwrap();
    assert_eq!(rec["claude"], bad["claude"]);
    assert_eq!(rec["error"], bad["error"]);

    // And the human view shows it.
    let shown = env.ok("orch-queue", &["show", &ids[1].to_string()]);
    for want in [
        "session:     fake-",
        "cost:        0.25 USD",
        "tokens:      in 12, out 34",
        "errors:\n  Tool-failed\n  Out-of-budget",
    ] {
        assert!(shown.contains(want), "{want:?} in:\n{shown}");
    }
    let shown = env.ok("orch-queue", &["show", &ids[3].to_string()]);
    assert!(!shown.contains("cost:"), "{shown}");
}

/// Waits (bounded) until every file in `dir` is there, `n` of them; returns the pids they hold.
fn pids_in(dir: &Path, n: usize) -> Vec<i32> {
    let t = Instant::now();
    loop {
        let files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        let pids: Vec<i32> = files
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok()?.trim().parse().ok())
            .collect();
        if pids.len() == n {
            return pids;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "processes did not start: {files:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (bounded) until every pid is gone.
fn all_gone(pids: &[i32], limit: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if pids.iter().all(|&p| dead(p)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

pub(crate) fn signal(child: &Child, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_child(child);
    rustix::process::kill_process(pid, sig).unwrap();
}

fn sigkill(child: &mut Child) {
    signal(child, rustix::process::Signal::KILL);
    child.wait().unwrap();
}

#[test]
fn item16_a_sigkilled_orch_run_takes_its_agents_with_it_and_the_next_run_reports() {
    let env = Env::new();
    let pids = env.path().join("pids");
    std::fs::create_dir_all(&pids).unwrap();
    let (b, ids) = batch_of(&env, &["sleep=30", "sleep=30", "say=later"]);
    let f = fake_agent();
    let mut c = env.cmd("orch-run");
    c.args([&b, "-j", "2", "--", &f, "{prompt}"])
        .env("FAKE_AGENT_PIDS", &pids)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut first = c.spawn().unwrap();
    let first_pid = first.id();
    // Two agents and the sleeper each started.
    let procs = pids_in(&pids, 4);
    assert!(procs.iter().all(|&p| !dead(p)));
    sigkill(&mut first);
    assert!(
        all_gone(&procs, Duration::from_secs(3)),
        "agents outlived a SIGKILLed orch-run: {procs:?}"
    );
    // The next run of the batch says what it found, and runs what never started.
    // (No retries: the lost tasks stay failed; retries are run_limits' business.)
    let out = env.run("orch-run", &[&b, "--retries", "0", "--", &f, "{prompt}"]);
    assert_code(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "an earlier orch-run of batch {b} (pid {first_pid}) died; tasks {}, {} were running and are marked failed; none of its processes is still running",
            ids[0], ids[1]
        )),
        "{err}"
    );
    for id in &ids[..2] {
        let t = task(&env, *id);
        assert_eq!(t["status"], "failed");
        assert!(t["error"]
            .as_str()
            .unwrap()
            .contains("stopped before this task finished"));
    }
    assert_eq!(task(&env, ids[2])["status"], "done");
}

#[test]
fn item16_the_next_run_stops_what_escaped_the_process_group() {
    let env = Env::new();
    let marks = env.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    // `setsid` leaves the task's process group and session: only its
    // environment still says which batch started it.
    let escape = format!(
        "setsid sleep 60 & echo $! > {}/escaped; sleep 30",
        marks.display()
    );
    let (b, ids) = batch_of(&env, &[&escape, "echo done"]);
    let mut c = env.cmd("orch-run");
    c.args([&b, "-j", "1", "--", "sh", "-c", "{prompt}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut first = c.spawn().unwrap();
    let escaped = pids_in(&marks, 1);
    std::thread::sleep(Duration::from_millis(100));
    sigkill(&mut first);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !dead(escaped[0]),
        "the escapee is still there before the next run"
    );
    let out = env.run(
        "orch-run",
        &[&b, "--retries", "0", "--", "sh", "-c", "{prompt}"],
    );
    assert_code(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "task {} was running and is marked failed; 1 of its processes was still running and is now stopped (pid {})",
            ids[0], escaped[0]
        )),
        "{err}"
    );
    assert!(all_gone(&escaped, Duration::from_secs(2)), "{escaped:?}");
    assert_eq!(task(&env, ids[1])["status"], "done");
}

#[test]
fn item16_a_run_whose_tasks_were_all_running_is_recorded_when_taken_over() {
    let env = Env::new();
    let pids = env.path().join("pids");
    std::fs::create_dir_all(&pids).unwrap();
    let (b, ids) = batch_of(&env, &["sleep=30"]);
    let f = fake_agent();
    let mut c = env.cmd("orch-run");
    c.args([&b, "--", &f, "{prompt}"])
        .env("FAKE_AGENT_PIDS", &pids)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut first = c.spawn().unwrap();
    let procs = pids_in(&pids, 2);
    sigkill(&mut first);
    assert!(all_gone(&procs, Duration::from_secs(3)), "{procs:?}");
    // Nothing is left to run, but the dead run's task no longer shows as running.
    let out = env.run("orch-run", &[&b, "--retries", "0", "--", &f, "{prompt}"]);
    assert_code(&out, 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("was running and is marked failed") && err.contains("no task left to run"),
        "{err}"
    );
    assert_eq!(task(&env, ids[0])["status"], "failed");
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM agent_calls WHERE finished_at IS NULL"
        ),
        0
    );
}

#[test]
fn a_claude_result_longer_than_the_kept_stdout_is_judged_whole() {
    // A claude that succeeds with a 5 MB answer: its result line alone is
    // longer than the 4 MiB of stdout orch-run keeps.
    let env = Env::new();
    let dir = env.path().join("big-claude");
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("claude");
    std::fs::write(
        &script,
        "#!/bin/sh\ncat >/dev/null\n\
         printf '{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"s-big\"}\\n'\n\
         printf '{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"session_id\":\"s-big\",\"total_cost_usd\":0.5,\"result\":\"'\n\
         head -c 5000000 /dev/zero | tr '\\000' x\n\
         printf '\"}\\n'\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    for agent in ["claude", "claude-stream"] {
        let (b, ids) = batch_of(&env, &["answer at length"]);
        let mut c = env.cmd("orch-run");
        c.args([b.as_str(), "--agent", agent, "--json"])
            .env("PATH", path_with(&[&dir, &bin_dir()]));
        let out = c.output().unwrap();
        assert_code(&out, 0);
        let t = task(&env, ids[0]);
        assert_eq!(t["status"], "done", "{agent}: {}", t["error"]);
        assert_eq!(t["claude"]["total_cost_usd"], 0.5, "{agent}");
        // The stored result is cut to what orch-run keeps, and the log says so.
        let result = t["result"].as_str().unwrap();
        assert_eq!(result.len(), 4 << 20, "{agent}");
        assert!(result.bytes().all(|b| b == b'x'), "{agent}");
        let log: String = env
            .sql()
            .query_row("SELECT log FROM tasks WHERE id = ?1", [ids[0]], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(
            log.contains("the result was 5000000 bytes; kept the first 4194304"),
            "{agent}: {log}"
        );
    }
}
