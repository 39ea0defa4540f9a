//! Long runs through the real binaries: attempts and retries by error class,
//! the usage-limit pause shared by every runner, `retry` by hand, the budget,
//! and the spend ledger. `tests/fake-agent`, linked as `claude`, prints what
//! `claude -p --output-format json` prints on each error.

use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use crate::common::*;

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/claude-errors"
    ))
}

/// orch-run through the fake agent named `claude`, its call counters in the env's dir.
fn orch_run(env: &Env, args: &[&str]) -> Command {
    let dir = env.path().join("agents");
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("claude");
    if !link.exists() {
        symlink(fake_agent(), &link).unwrap();
    }
    let state = env.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let mut c = env.cmd("orch-run");
    c.args(args)
        .env("PATH", path_with(&[&dir, &bin_dir()]))
        .env("FAKE_AGENT_STATE", &state)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// `orch-queue attempts ID --json`, parsed.
fn attempts(env: &Env, id: i64) -> Vec<serde_json::Value> {
    env.ok("orch-queue", &["attempts", &id.to_string(), "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// (started, ended, retry due) in ms of each attempt of task `id`, from the database.
fn times(env: &Env, id: i64) -> Vec<(i64, Option<i64>, Option<i64>)> {
    env.sql()
        .prepare(
            "SELECT started_at, ended_at, retry_at FROM attempts WHERE task_id = ?1 ORDER BY n",
        )
        .unwrap()
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn status(env: &Env, id: i64) -> String {
    env.sql()
        .query_row("SELECT status FROM tasks WHERE id = ?1", [id], |r| r.get(0))
        .unwrap()
}

fn out_of(c: &mut Command) -> Output {
    c.output().unwrap()
}

#[test]
fn issue14_429_twice_then_success_is_done_on_attempt_3_with_backoff() {
    let env = Env::new();
    let (b, ids) = batch_of(&env, &["apierr=429 fails=2 say=ok"]);
    let out = out_of(&mut orch_run(
        &env,
        &[&b, "--agent", "claude", "--backoff", "0.3s", "--json"],
    ));
    assert_code(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("(rate_limited)"), "{err}");
    assert!(err.contains("next attempt in"), "{err}");
    assert_eq!(status(&env, ids[0]), "done");
    let a = attempts(&env, ids[0]);
    assert_eq!(a.len(), 3, "{a:?}");
    for (i, x) in a.iter().enumerate() {
        assert_eq!(x["attempt"], i as i64 + 1);
        assert_eq!(x["runner"], "orch-run");
    }
    assert_eq!(a[0]["outcome"], "failed");
    assert_eq!(a[0]["error_class"], "rate_limited");
    assert_eq!(a[1]["error_class"], "rate_limited");
    assert_eq!(a[2]["outcome"], "done");
    assert!(a[2].get("error_class").is_none_or(|c| c.is_null()));
    // The backoff is in the attempt times: each retry was scheduled after
    // its failure, no later than the ceiling (0.3 s, then 0.6 s), and the
    // next attempt did not start before it was due.
    let t = times(&env, ids[0]);
    for (n, ceiling) in [(0usize, 300i64), (1, 600)] {
        let (end, due) = (t[n].1.unwrap(), t[n].2.unwrap());
        assert!(due >= end && due <= end + ceiling, "{n}: {end} {due}");
        assert!(t[n + 1].0 >= due, "attempt {} started early", n + 2);
    }
    assert!(a[2].get("retry_at").is_none_or(|c| c.is_null()));
    // What claude reported is recorded per attempt.
    assert_eq!(a[2]["cost_usd"], 0.0123);
    assert_eq!(a[2]["input_tokens"], 12);
    assert_eq!(a[2]["output_tokens"], 34);
    assert_eq!(a[2]["model"], "claude-fake-1");
    // The last --json record is the last attempt's.
    let last: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(last["attempt"], 3);
    assert_eq!(last["status"], "done");
}

#[test]
fn issue14_auth_fails_at_once_without_retry() {
    let env = Env::new();
    let (b, ids) = batch_of(&env, &["apierr=401"]);
    let out = out_of(&mut orch_run(
        &env,
        &[&b, "--agent", "claude", "--retries", "5"],
    ));
    assert_code(&out, 1);
    assert_eq!(status(&env, ids[0]), "failed");
    let a = attempts(&env, ids[0]);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0]["error_class"], "auth");
    assert!(a[0]["retry_at"].is_null());
}

#[test]
fn issue14_retries_run_out_and_the_task_fails() {
    let env = Env::new();
    let (b, ids) = batch_of(&env, &["apierr=529"]);
    let out = out_of(&mut orch_run(
        &env,
        &[
            &b,
            "--agent",
            "claude",
            "--retries",
            "1",
            "--backoff",
            "0.1s",
        ],
    ));
    assert_code(&out, 1);
    assert_eq!(status(&env, ids[0]), "failed");
    let a = attempts(&env, ids[0]);
    assert_eq!(a.len(), 2);
    assert!(a.iter().all(|x| x["error_class"] == "overloaded"));
    assert!(!a[0]["retry_at"].is_null() && a[1]["retry_at"].is_null());
}

#[test]
fn agent_text_that_once_panicked_the_classifier_fails_the_task_cleanly() {
    let env = Env::new();
    for text in [
        "İİİİİİİİ usage limit reached, resets 5pm",
        "Claude AI usage limit reached|9999999999999999",
        "Claude AI usage limit reached|253402300800",
    ] {
        let id = env.add("dev", "x");
        let b = env.ok("orch-batch", &["create"]).trim().to_string();
        let script = format!("echo '{text}'; exit 1");
        let out = env.run(
            "orch-run",
            &[&b, "--retries", "0", "--", "sh", "-c", &script],
        );
        assert_code(&out, 1);
        let a = attempts(&env, id);
        assert_eq!(a.len(), 1, "{text}");
        assert_eq!(a[0]["error_class"], "usage_limit", "{text}");
        assert_eq!(status(&env, id), "failed", "{text}");
        // The pause it set shows in the status; then it is lifted for the next.
        let st = env.ok("orch", &["status"]);
        assert!(st.contains("(usage limit)"), "{st}");
        env.ok("orch-queue", &["resume"]);
    }
}

#[test]
fn issue14_every_fixture_class_is_classified_right() {
    let env = Env::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 15);
    let prompts: Vec<String> = files
        .iter()
        .map(|f| format!("replay={}", f.display()))
        .collect();
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let (b, ids) = batch_of(&env, &refs);
    // No retries: each fixture is one attempt.
    let out = out_of(&mut orch_run(
        &env,
        &[&b, "--agent", "claude", "--retries", "0"],
    ));
    assert_code(&out, 1);
    for (f, id) in files.iter().zip(&ids) {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let want = name.split("--").next().unwrap();
        let a = attempts(&env, *id);
        assert_eq!(a.len(), 1, "{name}");
        assert_eq!(a[0]["error_class"], want, "{name}");
    }
    // The usage limits among them paused the database.
    let st = env.ok("orch", &["status"]);
    assert!(st.contains("(usage limit)"), "{st}");
    env.ok("orch-queue", &["resume"]);
    // Timeouts are their own class.
    let (b, ids) = batch_of(&env, &["sleep=5"]);
    let out = out_of(&mut orch_run(
        &env,
        &[
            &b,
            "--agent",
            "claude",
            "--retries",
            "0",
            "--timeout",
            "0.3",
            "--no-wait",
        ],
    ));
    assert_code(&out, 1);
    let a = attempts(&env, ids[0]);
    assert_eq!(a[0]["error_class"], "timeout");
}

#[test]
fn issue14_usage_limit_reset_times_pause_every_runner() {
    // The 5-hour form resets at the next 2:34am UTC; the 1.0.x form at its epoch.
    let env = Env::new();
    let five = fixtures().join("usage_limit--5-hour.json");
    let (b, ids) = batch_of(&env, &[&format!("replay={}", five.display())]);
    let out = out_of(&mut orch_run(
        &env,
        &[&b, "--agent", "claude", "--retries", "1", "--no-wait"],
    ));
    assert_code(&out, 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("usage limit"), "{err}");
    let t = times(&env, ids[0]);
    let end = t[0].1.unwrap() / 1000;
    let mut reset = end / 86_400 * 86_400 + 2 * 3600 + 34 * 60;
    if reset <= end {
        reset += 86_400;
    }
    assert_eq!(t[0].2, Some(reset * 1000 + 1000));
    // The task waits in the queue for its reset; status and doctor show the pause.
    assert_eq!(status(&env, ids[0]), "queued");
    let s = env.ok("orch", &["status"]);
    assert!(
        s.contains("paused until") && s.contains("(usage limit)"),
        "{s}"
    );
    let list = env.ok("orch-queue", &["list"]);
    assert!(list.contains("retry due"), "{list}");
    // Not yet due: the batcher leaves it.
    let o = env.run("orch-batch", &["create"]);
    assert_ne!(o.status.code(), Some(0));
}

/// A reset time with a named zone is read in that zone, whatever the
/// machine's own (TZ here); one without a zone in the machine's zone.
#[test]
fn issue14_a_usage_limit_reset_is_read_in_the_zone_it_names() {
    for (fixture, tz, zone, hour, minute) in [
        (
            "usage_limit--zone-warsaw.json",
            "Asia/Tokyo",
            "Europe/Warsaw",
            15,
            0,
        ),
        (
            "usage_limit--zone-new-york.json",
            "Asia/Tokyo",
            "America/New_York",
            11,
            0,
        ),
        (
            "usage_limit--no-zone.json",
            "America/Los_Angeles",
            "America/Los_Angeles",
            15,
            0,
        ),
        (
            "usage_limit--no-zone.json",
            "Asia/Kolkata",
            "Asia/Kolkata",
            15,
            0,
        ),
    ] {
        let env = Env::new();
        let file = fixtures().join(fixture);
        let (b, ids) = batch_of(&env, &[&format!("replay={}", file.display())]);
        let out = out_of(
            orch_run(
                &env,
                &[&b, "--agent", "claude", "--retries", "1", "--no-wait"],
            )
            .env("TZ", tz),
        );
        assert_code(&out, 1);
        let t = times(&env, ids[0]);
        let end = t[0].1.unwrap();
        // The next HOUR:MINUTE in ZONE after the attempt ended, plus the 1 s margin.
        let z = jiff::tz::TimeZone::get(zone).unwrap();
        let local = jiff::Timestamp::from_millisecond(end)
            .unwrap()
            .to_zoned(z.clone());
        let mut reset = local.date().at(hour, minute, 0, 0).to_zoned(z).unwrap();
        if reset.timestamp().as_millisecond() <= end {
            reset = reset.tomorrow().unwrap();
        }
        let want = reset.timestamp().as_millisecond() / 1000 * 1000 + 1000;
        assert_eq!(t[0].2, Some(want), "{fixture} with TZ={tz}");
    }
}

#[test]
fn issue14_usage_limit_stops_starts_across_two_runners_until_reset() {
    let env = Env::new();
    // Batch 1: the first task hits a usage limit resetting 3 s ahead; the
    // others take a moment so both runners are busy when it does.
    let mut p1 = vec!["apierr=usage resetin=3 fails=1 say=ok".to_string()];
    p1.extend((0..5).map(|i| format!("sleep=0.4 say=a{i}")));
    let r1: Vec<&str> = p1.iter().map(String::as_str).collect();
    let (b1, _) = batch_of(&env, &r1);
    let p2: Vec<String> = (0..6).map(|i| format!("sleep=0.4 say=b{i}")).collect();
    let r2: Vec<&str> = p2.iter().map(String::as_str).collect();
    let (b2, _) = batch_of(&env, &r2);
    let mut c1 = orch_run(&env, &[&b1, "--agent", "claude", "-j", "2"])
        .spawn()
        .unwrap();
    let mut c2 = orch_run(&env, &[&b2, "--agent", "claude", "-j", "2"])
        .spawn()
        .unwrap();
    let o1 = c1.wait().unwrap();
    let o2 = c2.wait().unwrap();
    assert!(o1.success() && o2.success());
    let c = env.sql();
    let undone: i64 = c
        .query_row(
            "SELECT count(*) FROM tasks WHERE status != 'done'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(undone, 0);
    let (limit_end, pause_until): (i64, i64) = c
        .query_row(
            "SELECT ended_at, retry_at FROM attempts WHERE error_class = 'usage_limit'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    // Nothing started, in either runner, between the limit and its reset.
    let starts: Vec<i64> = c
        .prepare("SELECT started_at FROM attempts")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(starts.len(), 13);
    for s in &starts {
        assert!(
            *s <= limit_end || *s >= pause_until,
            "an attempt started at {s}, inside the pause {limit_end}..{pause_until}"
        );
    }
    assert!(starts.iter().filter(|&&s| s >= pause_until).count() >= 2);
}

#[test]
fn issue14_retry_of_a_failed_task_keeps_its_history() {
    let env = Env::new();
    let (b, ids) = batch_of(&env, &["exit=3"]);
    let out = out_of(&mut orch_run(&env, &[&b, "--agent", "claude"]));
    assert_code(&out, 1);
    assert_eq!(attempts(&env, ids[0])[0]["error_class"], "agent_error");
    // Only failed tasks, all or nothing.
    let other = env.add("dev", "say=x");
    let o = env.run(
        "orch-queue",
        &["retry", &ids[0].to_string(), &other.to_string()],
    );
    assert_code(&o, 2);
    assert_eq!(status(&env, ids[0]), "failed");
    env.ok("orch-queue", &["retry", &ids[0].to_string()]);
    assert_eq!(status(&env, ids[0]), "queued");
    // Run by hand this time: a second attempt, runner manual.
    env.ok("orch-queue", &["start", &ids[0].to_string()]);
    env.ok(
        "orch-queue",
        &["done", &ids[0].to_string(), "--result", "fixed"],
    );
    let a = attempts(&env, ids[0]);
    assert_eq!(a.len(), 2);
    assert_eq!(a[0]["outcome"], "failed");
    assert_eq!(a[1]["outcome"], "done");
    assert_eq!(a[1]["runner"], "manual");
    let show = env.ok("orch-queue", &["show", &ids[0].to_string()]);
    assert!(
        show.contains("attempts:") && show.contains("#1 orch-run") && show.contains("#2 manual"),
        "{show}"
    );
    let o = env.run("orch-queue", &["attempts", "999"]);
    assert_code(&o, 2);
}

#[test]
fn issue14_pause_and_resume_by_hand() {
    let env = Env::new();
    let (b, ids) = batch_of(&env, &["say=one", "say=two"]);
    env.ok("orch-queue", &["pause"]);
    let s = env.ok("orch", &["status"]);
    assert!(s.contains("paused"), "{s}");
    let out = out_of(&mut orch_run(&env, &[&b, "--agent", "claude", "--no-wait"]));
    assert_code(&out, 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("paused by hand"), "{err}");
    // Nothing started; both are back in the queue.
    for id in &ids {
        assert_eq!(status(&env, *id), "queued");
        assert!(attempts(&env, *id).is_empty());
    }
    env.ok("orch-queue", &["resume"]);
    let b = env.ok("orch-batch", &["create"]).trim().to_string();
    let out = out_of(&mut orch_run(&env, &[&b, "--agent", "claude", "--no-wait"]));
    assert_code(&out, 0);
    // A pause with an end: orch-run waits it out, with a countdown.
    env.add("dev", "say=three");
    env.ok("orch-queue", &["pause", "--until", "1s"]);
    let b = env.ok("orch-batch", &["create"]).trim().to_string();
    let out = out_of(&mut orch_run(&env, &[&b, "--agent", "claude"]));
    assert_code(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("s left"), "{err}");
    let o = env.run("orch-queue", &["pause", "--until", "soon"]);
    assert_code(&o, 2);
}

#[test]
fn issue14_budget_stops_new_starts_and_stats_show_spend() {
    let env = Env::new();
    let (b, ids) = batch_of(
        &env,
        &["cost=0.5 say=a", "cost=0.5 say=b", "cost=0.5 say=c"],
    );
    let out = out_of(&mut orch_run(
        &env,
        &[&b, "--agent", "claude", "-j", "1", "--budget-usd", "0.9"],
    ));
    assert_code(&out, 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("budget of $0.90 reached: this run spent $1.0000"),
        "{err}"
    );
    assert_eq!(status(&env, ids[0]), "done");
    assert_eq!(status(&env, ids[1]), "done");
    assert_eq!(status(&env, ids[2]), "queued");
    let s: serde_json::Value =
        serde_json::from_str(&env.ok("orch-queue", &["stats", "--json"])).unwrap();
    assert_eq!(s["spend"]["total"]["cost_usd"], 1.0);
    assert_eq!(s["spend"]["total"]["input_tokens"], 24);
    assert_eq!(s["spend"]["batches"][0]["batch"], b.parse::<i64>().unwrap());
    let text = env.ok("orch-queue", &["stats"]);
    assert!(
        text.contains("spend      $1.0000 over 2 attempts"),
        "{text}"
    );
    let st = env.ok("orch", &["status"]);
    assert!(st.contains("$1.0000"), "{st}");
    let o = env.run("orch-run", &[&b, "--budget-usd", "lots"]);
    assert_code(&o, 2);
}

/// Waits (bounded) until `n` tasks are running.
fn until_running(env: &Env, n: i64) {
    for _ in 0..400 {
        let r: i64 = env
            .sql()
            .query_row(
                "SELECT count(*) FROM tasks WHERE status = 'running'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        if r >= n {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("{n} tasks never ran");
}

#[test]
fn issue14_a_sigkilled_runner_is_taken_over_and_every_task_is_done_exactly_once() {
    let env = Env::new();
    let (b, ids) = batch_of(
        &env,
        &["sleep=0.5 say=a", "sleep=0.5 say=b", "say=c", "say=d"],
    );
    let mut first = orch_run(&env, &[&b, "--agent", "claude", "-j", "2", "--lease", "1s"])
        .spawn()
        .unwrap();
    until_running(&env, 2);
    crate::run::signal(&first, rustix::process::Signal::KILL);
    first.wait().unwrap();
    let out = out_of(&mut orch_run(&env, &[&b, "--agent", "claude"]));
    assert_code(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("run again (their attempts are recorded as lost)"),
        "{err}"
    );
    let c = env.sql();
    for id in &ids {
        assert_eq!(status(&env, *id), "done");
        // Done exactly once: one attempt ended done.
        let done: i64 = c
            .query_row(
                "SELECT count(*) FROM attempts WHERE task_id = ?1 AND outcome = 'done'",
                [id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(done, 1, "task {id}");
    }
    for id in &ids[..2] {
        let a = attempts(&env, *id);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0]["error_class"], "lost");
    }
    let running: i64 = c
        .query_row(
            "SELECT count(*) FROM tasks WHERE status = 'running'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(running, 0);
}

#[test]
fn issue14_a_reused_pid_does_not_keep_the_batch_locked_and_a_live_lease_does() {
    let env = Env::new();
    let (b, ids) = batch_of(&env, &["say=a"]);
    let host = orch_core::lease::hostname();
    // The holder's pid is alive (this test), but it started at another time:
    // a reused pid. Its lease has not expired.
    let me = std::process::id();
    let c = env.sql();
    let claim = |holder: &str| {
        c.execute(
            "UPDATE batches SET run_claimed_at = 1, runner_pid = ?2, lease_holder = ?3,
                 lease_until = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) + 60000
             WHERE id = ?1",
            rusqlite::params![b.parse::<i64>().unwrap(), me, holder],
        )
        .unwrap();
    };
    // A live lease held on another host: refused, nothing changes.
    claim(&format!("{host}-elsewhere:{me}:1"));
    let out = out_of(&mut orch_run(&env, &[&b, "--agent", "claude"]));
    assert_code(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("its lease runs to"));
    assert_eq!(status(&env, ids[0]), "batched");
    // The same pid on this host, with another start time: taken over.
    claim(&format!("{host}:{me}:1"));
    let out = out_of(&mut orch_run(&env, &[&b, "--agent", "claude"]));
    assert_code(&out, 0);
    assert_eq!(status(&env, ids[0]), "done");
}

/// The most spans `[start, end)` open at one moment, and that moment. At
/// equal times an end comes before a start (a slot given back, then taken).
fn most_at_once(spans: &[(i64, i64)]) -> (usize, i64) {
    let mut edges: Vec<(i64, i32)> = spans
        .iter()
        .flat_map(|&(s, e)| {
            assert!(s <= e, "an attempt ended before it started: {s}..{e}");
            [(s, 1), (e, -1)]
        })
        .collect();
    edges.sort();
    let (mut open, mut most, mut at) = (0i32, 0i32, 0);
    for (t, d) in edges {
        open += d;
        if open > most {
            (most, at) = (open, t);
        }
    }
    (most as usize, at)
}

#[test]
fn most_at_once_counts_overlaps_not_touches() {
    assert_eq!(most_at_once(&[(0, 10), (10, 20), (20, 30)]).0, 1);
    assert_eq!(most_at_once(&[(0, 10), (5, 20), (6, 7), (19, 30)]), (3, 6));
    assert_eq!(most_at_once(&[]).0, 0);
}

#[test]
fn issue14_limit_4_caps_three_runners_measured_from_the_agents_timestamps() {
    let env = Env::new();
    env.ok("orch-queue", &["init"]);
    env.ok("orch-queue", &["limit", "4"]);
    assert_eq!(
        env.ok("orch-queue", &["limit"]).trim(),
        "limit 4 (0 running)"
    );
    let v: serde_json::Value = serde_json::from_str(&env.ok(
        "orch-verify",
        &["new", "-n", "24", "--sleep", "1", "--json"],
    ))
    .unwrap();
    let run = v["run"].as_i64().unwrap().to_string();
    let mut batches = Vec::new();
    for chunk in 0..3 {
        for i in 1..=8 {
            env.add(
                "probe",
                &format!("orch-verify probe {run} {}", chunk * 8 + i),
            );
        }
        batches.push(
            env.ok("orch-batch", &["create", "--max", "8"])
                .trim()
                .to_string(),
        );
    }
    let mut children: Vec<_> = batches
        .iter()
        .map(|b| {
            orch_run(&env, &[b, "-j", "4", "--", "sh", "-c", "{prompt}"])
                .spawn()
                .unwrap()
        })
        .collect();
    for c in &mut children {
        assert!(c.wait().unwrap().success());
    }
    // (The verdict is PARTIAL by design: 4 at a time of 24. Its figures are what count.)
    let r: serde_json::Value = serde_json::from_str(&stdout(
        &env.run("orch-verify", &["report", &run, "--json"]),
    ))
    .unwrap();
    assert_eq!(r["completed"], 24, "{r}");
    let peak = r["peak"].as_i64().unwrap();
    assert!(
        peak <= 4,
        "{peak} probes ran at once under a limit of 4: {r}"
    );
    // 24 one-second probes, 4 at a time: at least 6 s.
    assert!(r["wall_ms"].as_i64().unwrap() >= 6000, "{r}");
    // And the cap is used, not just kept: from the attempts' own start and
    // end times, 4 ran at once at some moment, and never more.
    let spans: Vec<(i64, i64)> = env
        .sql()
        .prepare("SELECT started_at, ended_at FROM attempts")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(spans.len(), 24, "one attempt per probe: {spans:?}");
    let (most, _) = most_at_once(&spans);
    assert_eq!(
        most, 4,
        "at most {most} ran at once under a limit of 4: {spans:?}"
    );
    // Every slot was given back.
    assert_eq!(
        env.ok("orch-queue", &["limit"]).trim(),
        "limit 4 (0 running)"
    );
    env.ok("orch-queue", &["limit", "--clear"]);
    assert_eq!(env.ok("orch-queue", &["limit"]).trim(), "no limit");
    assert_code(&env.run("orch-queue", &["limit", "0"]), 2);
}

#[test]
fn issue14_batches_never_exceed_claude_codes_cap_and_doctor_shows_it() {
    let env = Env::new();
    for i in 0..12 {
        env.add("dev", &format!("task {i}"));
    }
    let create = |args: &[&str]| {
        env.cmd("orch-batch")
            .arg("create")
            .args(args)
            .env("CLAUDE_CODE_MAX_CONCURRENT_SUBAGENTS", "3")
            .output()
            .unwrap()
    };
    let size = |b: &str| -> i64 {
        env.sql()
            .query_row("SELECT count(*) FROM tasks WHERE batch_id = ?1", [b], |r| {
                r.get(0)
            })
            .unwrap()
    };
    // The default never exceeds the cap in force.
    let out = create(&[]);
    assert_code(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at most 3 tasks per batch"), "{err}");
    assert_eq!(size(stdout(&out).trim()), 3);
    // A bigger --max is said to be for orch-run.
    let out = create(&["--max", "5"]);
    assert_code(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refuses the rest; a batch of 5 is for orch-run"),
        "{err}"
    );
    assert_eq!(size(stdout(&out).trim()), 5);
    // A huge --max that makes a batch within the cap says nothing about it.
    let out = create(&["--max", "18446744073709551615", "--role", "small"]);
    assert_code(&out, 1);
    env.add("small", "one");
    env.add("small", "two");
    let out = create(&["--max", "18446744073709551615", "--role", "small"]);
    assert_code(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("Claude Code runs at most"), "{err}");
    assert_eq!(size(stdout(&out).trim()), 2);
    // orch-hook's batches (launched inside Claude Code) never exceed it.
    let mut c = env.cmd("orch-hook");
    c.args(["--threshold", "1"])
        .env("CLAUDE_CODE_MAX_CONCURRENT_SUBAGENTS", "2")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"session_id":"s","hook_event_name":"UserPromptSubmit","prompt":"go"}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_code(&out, 0);
    let newest: i64 = env
        .sql()
        .query_row("SELECT max(id) FROM batches", [], |r| r.get(0))
        .unwrap();
    assert_eq!(size(&newest.to_string()), 2);
    env.ok("orch-queue", &["limit", "5"]);
    env.ok("orch-queue", &["pause", "--until", "1h"]);
    let d = env
        .cmd("orch")
        .args(["doctor", "--json"])
        .env("CLAUDE_CODE_MAX_CONCURRENT_SUBAGENTS", "7")
        .output()
        .unwrap();
    let checks = json_lines(&stdout(&d));
    let l = checks.iter().find(|c| c["check"] == "limits").unwrap();
    let m = l["message"].as_str().unwrap();
    assert!(m.contains("at most 7 sub-agents"), "{m}");
    assert!(m.contains("orch-queue limit 5"), "{m}");
    assert!(
        m.contains("paused until") && m.contains("paused by hand"),
        "{m}"
    );
    let st: serde_json::Value =
        serde_json::from_str(&env.ok("orch", &["status", "--json"])).unwrap();
    assert_eq!(st["paused"]["reason"], "paused by hand");
}

#[test]
fn issue14_a_task_waiting_for_its_retry_shows_when_it_is_due() {
    let env = Env::new();
    let (b, ids) = batch_of(&env, &["apierr=usage resetin=60 fails=1 say=ok"]);
    let c = orch_run(&env, &[&b, "--agent", "claude"]).spawn().unwrap();
    // Bounded wait for the first attempt to end and the retry to be scheduled.
    let mut shown = String::new();
    for _ in 0..400 {
        shown = env.ok("orch", &["status"]);
        if shown.contains("retry due") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert!(shown.contains("(retry due "), "{shown}");
    assert!(
        shown.contains("paused until") && shown.contains("(usage limit)"),
        "{shown}"
    );
    let list = env.ok("orch-queue", &["list"]);
    assert!(list.contains("(retry due "), "{list}");
    // orch-run waits, counting down; stopped, it puts the task back in the
    // queue, still not due.
    crate::run::signal(&c, rustix::process::Signal::TERM);
    let out = c.wait_with_output().unwrap();
    assert_code(&out, 130);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("s left"), "{err}");
    assert_eq!(status(&env, ids[0]), "queued");
    let t = times(&env, ids[0]);
    assert_eq!(t.len(), 1);
    let nb: i64 = env
        .sql()
        .query_row(
            "SELECT not_before FROM tasks WHERE id = ?1",
            [ids[0]],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(Some(nb), t[0].2);
    assert_code(&env.run("orch-batch", &["create"]), 1);
}

#[test]
fn issue14_any_tool_takes_over_an_expired_lease_unstarted_back_to_queued_started_lost() {
    let env = Env::new();
    let (b, ids) = batch_of(&env, &["say=a", "say=b", "say=c"]);
    env.ok("orch-queue", &["start", &ids[0].to_string()]);
    // Its runner, on another host, stopped renewing a minute ago.
    env.sql()
        .execute(
            "UPDATE batches SET run_claimed_at = 1, runner_pid = 4242,
                 lease_holder = 'elsewhere:4242:1',
                 lease_until = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) - 60000
             WHERE id = ?1",
            [b.parse::<i64>().unwrap()],
        )
        .unwrap();
    let out = env.run("orch-batch", &["create"]);
    assert_code(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "the runner of batch {b} is gone (its lease expired): 3 tasks back in the queue"
        )),
        "{err}"
    );
    let nb = stdout(&out).trim().to_string();
    assert_ne!(nb, b);
    for id in &ids {
        assert_eq!(status(&env, *id), "batched");
    }
    let a = attempts(&env, ids[0]);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["error_class"], "lost");
    // The new batch runs; each task is done once.
    let out = out_of(&mut orch_run(&env, &[&nb, "--agent", "claude"]));
    assert_code(&out, 0);
    let done: i64 = env
        .sql()
        .query_row(
            "SELECT count(*) FROM attempts WHERE outcome = 'done'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(done, 3);
    // The old batch has nothing left to run.
    let out = out_of(&mut orch_run(&env, &[&b, "--agent", "claude"]));
    assert_code(&out, 2);
}

#[test]
fn issue14_a_finished_run_with_an_expired_lease_is_left_alone() {
    let env = Env::new();
    let (b, _) = batch_of(&env, &["say=a"]);
    let out = out_of(&mut orch_run(
        &env,
        &[&b, "--agent", "claude", "--lease", "0.2s"],
    ));
    assert_code(&out, 0);
    // Long after: its lease expired, but it finished; nothing is said or moved.
    env.sql()
        .execute("UPDATE batches SET lease_until = 1", [])
        .unwrap();
    env.add("dev", "say=b");
    let out = env.run("orch-batch", &["create"]);
    assert_code(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("is gone"), "{err}");
}

/// A batch an orch-run holds (here: waiting out a pause, nothing started)
/// cannot be released under it, so no second batch can take its tasks and no
/// task runs twice; once the runner is gone and its lease expired, release
/// works again.
#[test]
fn a_batch_an_orch_run_holds_cannot_be_released_under_it() {
    let env = Env::new();
    let (b, ids) = batch_of(&env, &["say=one", "say=two"]);
    env.ok("orch-queue", &["pause"]);
    // Emitted first: orch-run says the tasks may run twice.
    env.ok("orch-emit", &[&b]);
    let run = orch_run(&env, &[&b, "--agent", "claude", "--lease", "1s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The run holds the batch once its lease is recorded.
    let wait_held = |b: &str| {
        let held = || -> bool {
            env.sql()
                .query_row(
                    "SELECT lease_holder IS NOT NULL FROM batches WHERE id = ?1",
                    [b.parse::<i64>().unwrap()],
                    |r| r.get(0),
                )
                .unwrap()
        };
        for _ in 0..400 {
            if held() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("orch-run never claimed batch {b}");
    };
    wait_held(&b);
    let before = dump(&env.db);
    let err = assert_error(&env.run("orch-batch", &["release", &b]), "orch-batch");
    assert!(err.contains("is running it"), "{err}");
    assert_eq!(dump(&env.db), before, "nothing changed");
    // Emitting it for Claude Code too is refused: its tasks would run twice.
    let out = env.run("orch-emit", &[&b]);
    assert!(out.stdout.is_empty(), "printed nothing");
    let err = assert_error(&out, "orch-emit");
    assert!(
        err.contains("is being run by orch-run") && err.contains("would run its tasks twice"),
        "{err}"
    );
    assert_eq!(dump(&env.db), before, "nothing marked");
    env.ok("orch-queue", &["resume"]);
    let out = run.wait_with_output().unwrap();
    assert_code(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("was emitted at"), "{err}");
    for id in &ids {
        assert_eq!(status(&env, *id), "done");
        assert_eq!(attempts(&env, *id).len(), 1, "task {id} ran once");
    }
    // A runner killed while it waits: once its lease expired, release works.
    let (b, ids) = batch_of(&env, &["say=three"]);
    env.ok("orch-queue", &["pause"]);
    let mut run = orch_run(&env, &[&b, "--agent", "claude", "--lease", "1s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_held(&b);
    run.kill().unwrap();
    run.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    env.ok("orch-batch", &["release", &b]);
    assert_eq!(status(&env, ids[0]), "queued");
}

#[test]
fn a_zero_span_names_the_flag_it_was_given_to() {
    let env = Env::new();
    env.add("dev", "x");
    for flag in ["--backoff", "--lease", "--timeout"] {
        let out = env.run("orch-run", &["1", flag, "0", "--", "true"]);
        let err = assert_error(&out, "orch-run");
        assert!(err.contains(&format!("'{flag} ")), "{flag}: {err}");
        assert!(err.contains("must be more than 0"), "{flag}: {err}");
        assert!(
            flag == "--timeout" || !err.contains("timeout"),
            "{flag}: {err}"
        );
    }
}

#[test]
fn a_reset_time_years_ahead_is_unknown_and_a_pause_not_today_shows_its_date() {
    let env = Env::new();
    let pause_until = || -> i64 {
        env.sql()
            .query_row(
                "SELECT CAST(value AS INTEGER) FROM settings WHERE key = 'pause_until'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    // An agent's text claiming a reset in the year 9999 pauses for the
    // short while an unknown reset time gets, not until then.
    env.add("dev", "x");
    let b = env.ok("orch-batch", &["create"]).trim().to_string();
    let script = "echo 'Claude AI usage limit reached|253402000000'; exit 1";
    let started = orch_core::time::now_ms();
    let out = env.run(
        "orch-run",
        &[&b, "--retries", "0", "--", "sh", "-c", script],
    );
    assert_code(&out, 1);
    let until = pause_until();
    assert!(
        until > started && until < orch_core::time::now_ms() + 3_600_000,
        "paused until {until}"
    );
    let st = env.ok("orch", &["status"]);
    assert!(!st.contains("9999"), "{st}");
    env.ok("orch-queue", &["resume"]);
    // A pause that ends on another day says which.
    env.ok("orch-queue", &["pause", "--until", "3d"]);
    let day = jiff::Timestamp::from_millisecond(pause_until())
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .to_string();
    let st = env
        .cmd("orch")
        .arg("status")
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert_code(&st, 0);
    let st = String::from_utf8_lossy(&st.stdout);
    assert!(st.contains(&format!("paused until {day} ")), "{st}");
}
