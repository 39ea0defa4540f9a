//! orch-events through the real binary: every state change journaled once in
//! commit order, followers before, during and after a run, `--since` resume,
//! many writers and followers, and `--exec`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::*;

/// A running `orch-events --follow --json`, its lines arriving on a channel.
struct Follower {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<serde_json::Value>,
}

impl Follower {
    fn start(env: &Env, args: &[&str]) -> Follower {
        let mut child = env
            .cmd("orch-events")
            .args(["--follow", "--json"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Follower {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (at most 60 s: the suite may be loading the machine) until `n` events have arrived.
    fn until(&mut self, n: usize) -> &[serde_json::Value] {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.seen.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(json(&l)),
                Err(_) => panic!("follower saw {} of {n} events", self.seen.len()),
            }
        }
        &self.seen
    }

    /// Stops the follower; fails if it printed more than `n` events.
    fn stop(mut self, n: usize) -> Vec<serde_json::Value> {
        std::thread::sleep(Duration::from_millis(150));
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(json(&l));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        assert_eq!(self.seen.len(), n, "follower printed extra events");
        std::mem::take(&mut self.seen)
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn all_events(env: &Env) -> Vec<serde_json::Value> {
    json_lines(&env.ok("orch-events", &["--json"]))
}

fn ids(events: &[serde_json::Value]) -> Vec<i64> {
    events.iter().map(|e| e["id"].as_i64().unwrap()).collect()
}

fn kinds(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

/// A small scripted run touching every kind of state change the store has.
fn scripted_run(env: &Env, half: &mut dyn FnMut()) {
    for p in ["one", "two", "three"] {
        env.add("dev", p);
    }
    env.ok("orch-batch", &["create"]);
    env.ok("orch-queue", &["start", "1"]);
    env.ok("orch-queue", &["done", "1"]);
    half();
    env.ok("orch-queue", &["start", "2"]);
    env.ok("orch-queue", &["fail", "2", "--error", "boom"]);
    env.ok("orch-queue", &["done", "3"]);
    env.add("dev", "four");
    env.ok("orch-queue", &["cancel", "4"]);
    env.ok("orch-msg", &["send", "--from", "a", "--to", "b", "hi"]);
    env.ok("orch-msg", &["recv", "--as", "b"]);
    env.ok("orch-queue", &["retry", "2"]);
    env.ok("orch-queue", &["pause"]);
    env.ok("orch-queue", &["resume"]);
    env.ok("orch-queue", &["limit", "4"]);
    env.ok("orch-queue", &["limit", "--clear"]);
}

#[test]
fn every_state_change_once_in_commit_order_for_followers_before_during_and_after() {
    let env = Env::new();
    let mut before = Follower::start(&env, &[]);
    let mut during = None;
    scripted_run(&env, &mut || during = Some(Follower::start(&env, &[])));
    let after = all_events(&env);
    assert_eq!(
        kinds(&after),
        [
            "task.added",
            "task.added",
            "task.added",
            "batch.created",
            "task.batched",
            "task.batched",
            "task.batched",
            "task.started",
            "attempt.started",
            "task.done",
            "attempt.ended",
            "task.started",
            "attempt.started",
            "task.failed",
            "attempt.ended",
            "task.done",
            "attempt.started",
            "attempt.ended",
            "task.added",
            "task.cancelled",
            "message.sent",
            "message.received",
            "task.retried",
            "pause.set",
            "pause.cleared",
            "limit.set",
            "limit.cleared",
        ]
    );
    let n = after.len();
    assert!(ids(&after).windows(2).all(|w| w[0] < w[1]));
    before.until(n);
    let mut during = during.unwrap();
    during.until(n);
    assert_eq!(before.stop(n), after);
    assert_eq!(during.stop(n), after);
    let failed = &after[13];
    assert_eq!(failed["task"], 2);
    assert_eq!(failed["from"], "running");
    assert_eq!(failed["to"], "failed");
    assert_eq!(failed["detail"], "boom");
    let ended = &after[14];
    assert_eq!(ended["task"], 2);
    assert_eq!(ended["to"], "failed");
    assert!(ended["detail"]
        .as_str()
        .unwrap()
        .starts_with("attempt 1: failed"));
    let retried = &after[22];
    assert_eq!(retried["task"], 2);
    assert_eq!(retried["from"], "failed");
    assert_eq!(retried["to"], "queued");
}

#[test]
fn since_resumes_a_killed_follower_with_nothing_lost_or_repeated() {
    let env = Env::new();
    for i in 0..5 {
        env.add("dev", &format!("task {i}"));
    }
    let mut f = Follower::start(&env, &[]);
    let first = f.until(3)[..3].to_vec();
    drop(f); // killed
    let last = first[2]["id"].as_i64().unwrap();
    for i in 5..8 {
        env.add("dev", &format!("task {i}"));
    }
    let mut g = Follower::start(&env, &["--since", &last.to_string()]);
    g.until(5);
    let mut seen = first;
    seen.extend(g.stop(5));
    assert_eq!(seen, all_events(&env));
    assert_eq!(ids(&seen), (1..=8).collect::<Vec<_>>());
}

#[test]
fn twenty_writers_and_three_followers_see_the_same_sequence() {
    let env = Env::new();
    let mut followers: Vec<Follower> = (0..3).map(|_| Follower::start(&env, &[])).collect();
    std::thread::scope(|s| {
        for w in 0..20 {
            let env = &env;
            s.spawn(move || {
                for i in 0..5 {
                    env.add("dev", &format!("writer {w} task {i}"));
                }
            });
        }
    });
    let all = all_events(&env);
    assert_eq!(all.len(), 100);
    assert_eq!(ids(&all), (1..=100).collect::<Vec<_>>());
    for f in &mut followers {
        f.until(100);
    }
    for f in followers {
        assert_eq!(f.stop(100), all);
    }
}

#[test]
fn kind_and_task_filters() {
    let env = Env::new();
    env.add("dev", "a");
    env.add("dev", "b");
    env.ok("orch-queue", &["start", "2"]);
    let out = env.ok("orch-events", &["--task", "2", "--kind", "task.started"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("task.started task 2 queued->running"), "{out}");
    let fam = json_lines(&env.ok("orch-events", &["--kind", "task", "--json"]));
    assert_eq!(fam.len(), 3);
    let err = assert_error(
        &env.run("orch-events", &["--kind", "task.exploded"]),
        "orch-events",
    );
    assert!(err.contains("unknown event kind"), "{err}");
}

#[test]
fn exec_gets_valid_json_and_a_hostile_description_never_reaches_a_shell() {
    let env = Env::new();
    let pwned = env.path().join("pwned");
    let hostile = "$(touch pwned); `touch pwned`; touch pwned \"'; echo }{";
    env.ok(
        "orch-queue",
        &["add", "dev", "--description", hostile, "do it"],
    );
    env.add("dev", "second");
    let sink = env.path().join("sink.jsonl");
    let out = env.run(
        "orch-events",
        &["--exec", "tee", "-a", sink.to_str().unwrap()],
    );
    assert_code(&out, 0);
    let got = json_lines(&std::fs::read_to_string(&sink).unwrap());
    assert_eq!(got, all_events(&env));
    assert_eq!(got[0]["detail"], hostile);
    assert!(!pwned.exists(), "the description reached a shell");
}

#[test]
fn exec_failures_are_reported_and_not_retried() {
    let env = Env::new();
    env.add("dev", "a");
    env.add("dev", "b");
    let out = env.run("orch-events", &["--exec", "false"]);
    assert_code(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("warning: event").count(), 2, "{err}");
    let out = env.run("orch-events", &["--exec", "no-such-program-here"]);
    assert_error(&out, "orch-events");
}

/// A batch of the tasks `prompts`, run by orch-run with `agent` (argv) and `flags`.
fn run_batch(env: &Env, prompts: &[&str], flags: &[&str], agent: &[&str]) -> std::process::Child {
    for p in prompts {
        env.add("dev", p);
    }
    env.ok("orch-batch", &["create"]);
    env.cmd("orch-run")
        .arg("1")
        .args(flags)
        .arg("--")
        .args(agent)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn ten_thousand_fast_lines_stay_within_the_cap_with_the_marker() {
    let env = Env::new();
    let script = "i=0; while [ $i -lt 10000 ]; do i=$((i+1)); echo \"line $i\"; done";
    let mut run = run_batch(
        &env,
        &["loud"],
        &["--log-cap", "65536"],
        &["sh", "-c", script],
    );
    assert!(run.wait().unwrap().success());
    let lines = json_lines(&env.ok("orch-queue", &["logs", "1", "--json"]));
    assert_eq!(lines[0]["stream"], "mark", "{:?}", lines[0]);
    assert!(lines[0]["line"].as_str().unwrap().contains("dropped"));
    let kept: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l["line"].as_str().unwrap())
        .collect();
    let bytes: usize = kept.iter().map(|l| l.len() + 1).sum();
    assert!(bytes <= 65536, "{bytes} bytes kept");
    assert!(bytes > 60000, "{bytes} bytes kept");
    assert_eq!(kept.last(), Some(&"line 10000"));
    // In order, with nothing missing after the cut.
    let first: usize = kept[0].trim_start_matches("line ").parse().unwrap();
    let want: Vec<String> = (first..=10000).map(|i| format!("line {i}")).collect();
    assert_eq!(kept, want);
}

/// The peak resident memory of process `pid` in KiB, while it lives.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn a_flood_of_output_keeps_memory_bounded_and_says_what_it_dropped() {
    let env = Env::new();
    let mut run = run_batch(
        &env,
        &["flood"],
        &[],
        &["sh", "-c", "yes | head -c 20000000"],
    );
    // Ten million lines: the run ends promptly and orch-run's memory stays
    // far below what queueing them all would take (hundreds of MiB).
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = run.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = run.kill();
            let _ = run.wait();
            break None;
        }
        peak = peak.max(peak_rss_kib(run.id()).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.is_some(), "orch-run did not finish in 60 s");
    assert!(status.unwrap().success());
    assert!(peak > 0 && peak < 200 * 1024, "peak RSS {peak} KiB");
    let lines = json_lines(&env.ok("orch-queue", &["logs", "1", "--json"]));
    let marks: Vec<&str> = lines
        .iter()
        .map(|l| l["line"].as_str().unwrap())
        .filter(|l| {
            l.starts_with("[orch: ")
                && l.contains("lines dropped: the agent printed faster than the log is written]")
        })
        .collect();
    assert!(!marks.is_empty(), "no marker among {} lines", lines.len());
    // Every other line is the agent's, in order; the log keeps its cap.
    assert!(lines
        .iter()
        .filter(|l| l["stream"] == "out")
        .all(|l| l["line"] == "y" || l["line"].as_str().unwrap().starts_with("[orch: ")));
    let bytes: usize = lines
        .iter()
        .filter(|l| l["stream"] != "mark")
        .map(|l| l["line"].as_str().unwrap().len() + 1)
        .sum();
    assert!(bytes <= 1024 * 1024, "{bytes} bytes kept");
}

#[test]
fn logs_follow_shows_lines_live() {
    let env = Env::new();
    let mut run = run_batch(
        &env,
        &["slow"],
        &[],
        &[
            "sh",
            "-c",
            "echo first; sleep 0.3; echo oops >&2; sleep 2; echo second",
        ],
    );
    // The task must be running before a follower can attach to it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(&env, 1) != "running" {
        assert!(Instant::now() < deadline, "task never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut f = env
        .cmd("orch-queue")
        .args(["logs", "1", "--follow"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(f.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.ends_with(" out  first"), "{first}");
    // Live: the agent is still sleeping.
    assert!(
        run.try_wait().unwrap().is_none(),
        "the run was already over"
    );
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert!(f.wait().unwrap().success(), "--follow ends with the task");
    assert!(rest[0].ends_with(" err  oops"), "{rest:?}");
    assert!(rest[1].ends_with(" out  second"), "{rest:?}");
    assert!(run.wait().unwrap().success());
}

#[test]
fn a_stalled_agent_is_flagged_once_after_the_setting() {
    let env = Env::new();
    let mut run = run_batch(
        &env,
        &["quiet", "chatty"],
        &["--stalled-after", "300ms"],
        &["sh", "-c", "case \"$1\" in quiet) echo hi; sleep 1.5;; *) for i in 1 2 3 4 5 6 7; do echo $i; sleep 0.2; done;; esac", "agent", "{prompt}"],
    );
    // `orch status` flags the silent one while it runs, and only it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let flagged = loop {
        assert!(Instant::now() < deadline, "never flagged stalled");
        let s = json(&env.ok("orch", &["status", "--json", "--stalled-after", "300ms"]));
        let tasks = s["batches"][0]["tasks"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if tasks.iter().any(|t| t["stalled"] == true) {
            break tasks;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(flagged[0]["stalled"], true, "{flagged:?}");
    assert!(flagged[0]["silent_ms"].as_i64().unwrap() > 300);
    assert_ne!(flagged[1]["stalled"], true, "{flagged:?}");
    let text = env.ok("orch", &["status", "--stalled-after", "300ms"]);
    assert!(text.contains("STALLED: silent"), "{text}");
    assert!(run.wait().unwrap().success());
    let stalled = json_lines(&env.ok("orch-events", &["--kind", "task.stalled", "--json"]));
    assert_eq!(stalled.len(), 1, "{stalled:?}");
    assert_eq!(stalled[0]["task"], 1);
    assert!(stalled[0]["detail"].as_str().unwrap().contains("no output"));
}

#[test]
fn the_page_of_a_twelve_task_run_is_self_contained_and_escaped() {
    let env = Env::new();
    twelve_task_run(&env);
    let page = env.path().join("run.html");
    env.ok(
        "orch-batch",
        &["report", "1", "--html", page.to_str().unwrap()],
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(html.matches("<div class=\"row\"").count(), 12);
    assert!(!html.contains("<script"), "unescaped script");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot;"));
    for never in ["http:", "https:", "src=", "@import", "url("] {
        assert!(!html.contains(never), "{never} in the page");
    }
    assert_eq!(html.matches("class=\"bar failed\"").count(), 1);
    assert!(html.contains("id=\"verdict\""));
    // Bars start in the order the tasks started.
    let lefts: Vec<f64> = html
        .match_indices("style=\"left:")
        .map(|(i, m)| {
            let rest = &html[i + m.len()..];
            rest[..rest.find('%').unwrap()].parse().unwrap()
        })
        .collect();
    assert_eq!(lefts.len(), 12);
    let events = json_lines(&env.ok("orch-events", &["--kind", "task.started", "--json"]));
    let order: Vec<usize> = events
        .iter()
        .map(|e| e["task"].as_u64().unwrap() as usize - 1)
        .collect();
    assert!(
        order.windows(2).all(|w| lefts[w[0]] <= lefts[w[1]]),
        "{lefts:?} {order:?}"
    );
}

#[test]
fn emit_release_and_verification_runs_are_journaled_once() {
    let env = Env::new();
    env.add("dev", "a");
    env.ok("orch-batch", &["create"]);
    env.ok("orch-emit", &["1"]);
    env.ok("orch-emit", &["1"]);
    env.add("dev", "b");
    env.ok("orch-batch", &["create"]);
    env.run("orch-batch", &["release", "2"]);
    env.ok("orch-verify", &["selftest", "-n", "2", "--sleep", "0.1"]);
    let all = all_events(&env);
    let count = |k: &str| kinds(&all).iter().filter(|x| *x == k).count();
    assert_eq!(count("batch.emitted"), 1, "{all:?}");
    assert_eq!(count("batch.released"), 1);
    assert_eq!(count("task.requeued"), 1);
    // The self-test makes two runs (all at once, then one by one).
    assert_eq!(count("verify.started"), 2);
    let judged: Vec<&serde_json::Value> = all
        .iter()
        .filter(|e| e["kind"] == "verify.judged")
        .collect();
    assert_eq!(judged.len(), 2);
    assert_eq!(judged[0]["to"], "PARALLEL");
    assert_eq!(judged[1]["to"], "SEQUENTIAL");
}

/// Retention is a setting of the database, the same for every writer
/// (whatever its environment): set, shown, journaled, and enforced at once
/// and then once per 1 000 events.
#[test]
fn issue15_retention_is_a_database_setting_that_keeps_the_newest_events() {
    let env = Env::new();
    for i in 0..5 {
        env.add("dev", &format!("early {i}"));
    }
    assert_eq!(
        env.ok("orch-queue", &["retention"]).trim(),
        "keep 30 days or 1000000 events, whichever is less"
    );
    let v: serde_json::Value =
        serde_json::from_str(&env.ok("orch-queue", &["retention", "--json"])).unwrap();
    assert_eq!(v, serde_json::json!({"days": 30, "max": 1_000_000}));
    // Setting it journals the change and prunes to it at once: the newest 3 stay.
    assert_eq!(
        env.ok("orch-queue", &["retention", "--max", "3"]).trim(),
        "keep 30 days or 3 events, whichever is less"
    );
    let left = all_events(&env);
    assert_eq!(ids(&left), [4, 5, 6]);
    assert_eq!(left[2]["kind"], "retention.set");
    assert_eq!(left[2]["detail"], "keep 30 days or 3 events");
    let out = env.ok("orch-queue", &["retention", "--max", "100"]);
    assert!(out.contains("100 events"), "{out}");
    let input: String = (0..1500)
        .map(|i| format!("{{\"role\":\"dev\",\"prompt\":\"task {i}\"}}\n"))
        .collect();
    let out = {
        let mut c = env.cmd("orch-queue");
        c.args(["add", "--stdin"])
            // Not a setting any more: the database's own retention holds.
            .env("ORCH_EVENTS_KEEP", "1000000")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    assert_code(&out, 0);
    let left = ids(&all_events(&env));
    // Events 8..=1507 were added; pruned at event 1000 down to the newest
    // 100, then 507 more since.
    assert_eq!(left, (901..=1507).collect::<Vec<_>>());
    // The days and the count are set apart; bad values change nothing.
    let v: serde_json::Value =
        serde_json::from_str(&env.ok("orch-queue", &["retention", "--days", "7", "--json"]))
            .unwrap();
    assert_eq!(v, serde_json::json!({"days": 7, "max": 100}));
    for bad in [&["--days", "0"][..], &["--max", "-1"], &["--max", "many"]] {
        let mut a = vec!["retention"];
        a.extend_from_slice(bad);
        let o = env.run("orch-queue", &a);
        assert_code(&o, 2);
    }
    assert_eq!(
        env.ok("orch-queue", &["retention"]).trim(),
        "keep 7 days or 100 events, whichever is less"
    );
}

/// A task rate-limited once, then done: its row has a bar per attempt, the
/// failed one first, each coloured by its outcome with the attempt's cost in
/// its title; the retry and both attempts are journaled.
#[test]
fn the_page_shows_a_retried_task_as_one_bar_per_attempt() {
    let env = Env::new();
    let dir = env.path().join("agents");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fake-agent"),
        dir.join("claude"),
    )
    .unwrap();
    let state = env.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    env.add("dev", "apierr=429 fails=1 cost=0.25 say=ok");
    env.add("dev", "cost=0.5 say=ok");
    env.ok("orch-batch", &["create", "--max", "2"]);
    let out = env
        .cmd("orch-run")
        .args(["1", "--agent", "claude", "--backoff", "0.2s"])
        .env("PATH", path_with(&[&dir, &bin_dir()]))
        .env("FAKE_AGENT_STATE", &state)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_code(&out, 0);
    let page = env.path().join("run.html");
    env.ok(
        "orch-batch",
        &["report", "1", "--html", page.to_str().unwrap()],
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(html.matches("<div class=\"row\"").count(), 2);
    let row1 = &html[html.find("data-row=\"1\"").unwrap()..];
    let row1 = &row1[..row1.find("</div>").unwrap()];
    assert_eq!(row1.matches("class=\"bar ").count(), 2, "{row1}");
    let failed = row1
        .find("class=\"bar failed\" data-attempt=\"1\"")
        .unwrap();
    let done = row1.find("class=\"bar done\" data-attempt=\"2\"").unwrap();
    assert!(failed < done);
    assert!(row1.contains("background:#c62828"));
    assert!(row1.contains("background:#2e7d32"));
    assert!(row1.contains("rate_limit"), "{row1}");
    assert!(row1.contains("cost $0.2500"), "{row1}");
    let row2 = &html[html.find("data-row=\"2\"").unwrap()..];
    let row2 = &row2[..row2.find("</div>").unwrap()];
    assert_eq!(row2.matches("class=\"bar done\"").count(), 1, "{row2}");
    assert!(row2.contains("cost $0.5000"), "{row2}");
    let retried = json_lines(&env.ok("orch-events", &["--kind", "task.retried", "--json"]));
    assert_eq!(retried.len(), 1, "{retried:?}");
    assert_eq!(retried[0]["task"], 1);
    assert_eq!(retried[0]["to"], "batched");
    assert!(retried[0]["detail"]
        .as_str()
        .unwrap()
        .starts_with("not before "));
    let ended = json_lines(&env.ok("orch-events", &["--kind", "attempt.ended", "--json"]));
    assert_eq!(ended.len(), 3, "{ended:?}");
}

/// `orch-verify report RUN --html` writes the page of a verification run
/// besides its terminal report; `orch-verify session --html` that of the
/// recorded agent calls, a row per orch task. A page that cannot be written
/// is one line and exit 2.
#[test]
fn pages_of_a_verification_run_and_of_a_session() {
    let env = Env::new();
    env.ok("orch-verify", &["selftest", "-n", "3", "--sleep", "0.1"]);
    let page = env.path().join("verify.html");
    let text = env.ok(
        "orch-verify",
        &["report", "1", "--html", page.to_str().unwrap()],
    );
    assert!(text.contains("PARALLEL"), "{text}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(html.matches("<div class=\"row\"").count(), 3);
    assert_eq!(html.matches("class=\"bar done\"").count(), 3);
    assert!(html.contains("<b id=\"verdict\">PARALLEL</b>"), "{html}");
    assert!(html.contains("verify.started") && html.contains("verify.judged"));
    // Only run 1's events, not the second self-test run's.
    assert_eq!(html.matches("<td>verify.").count(), 2, "{html}");

    env.ok(
        "orch-queue",
        &["add", "dev", "--description", "<b>bold</b>", "p1"],
    );
    env.add("dev", "p2");
    env.ok("orch-batch", &["create"]);
    env.ok("orch-run", &["1", "--", "sh", "-c", "sleep 0.2"]);
    let page = env.path().join("session.html");
    let out = env.run(
        "orch-verify",
        &[
            "session",
            "--session",
            "orch-run:1",
            "--html",
            page.to_str().unwrap(),
        ],
    );
    assert_code(&out, 0);
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(html.matches("<div class=\"row\"").count(), 2);
    assert!(html.contains("&lt;b&gt;bold&lt;/b&gt;") && !html.contains("<b>bold"));
    assert!(html.contains("<td>task.done</td>"), "{html}");

    let nowhere = env.path().join("no/such/dir/run.html");
    let out = env.run(
        "orch-verify",
        &["report", "1", "--html", nowhere.to_str().unwrap()],
    );
    assert_code(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("writing"), "{err}");
}

/// A `claude` that replays what Claude Code 2.1 printed: all of a recorded
/// stream-json run when asked for stream-json, its result line alone for json.
fn replaying_claude(env: &Env) -> std::path::PathBuf {
    let dir = env.path().join("replay-bin");
    std::fs::create_dir_all(&dir).unwrap();
    let claude = dir.join("claude");
    std::fs::write(
        &claude,
        "#!/bin/sh\ncat >/dev/null\nf=$(sed -n 1p \"$ORCH_STREAM_DIR/$ORCH_TASK_ID\")\ncase \" $* \" in\n  *' stream-json '*) cat \"$f\" ;;\n  *) tail -n 1 \"$f\" ;;\nesac\nsed -n 2p \"$ORCH_STREAM_DIR/$ORCH_TASK_ID\" | { read code; exit \"$code\"; }\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&claude, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Issue 15, logs: `orch-run --agent claude-stream` runs claude with
/// `--output-format stream-json --verbose`; the task's log holds readable
/// steps, not JSON, and the attempt's result, cost, tokens, error and error
/// class are those the json preset records from the same result line.
#[test]
fn stream_json_is_logged_as_steps_and_judged_like_json() {
    let env = Env::new();
    let bin = replaying_claude(&env);
    let streams = env.path().join("streams");
    std::fs::create_dir_all(&streams).unwrap();
    let fixture = |name: &str| {
        format!(
            "{}/tests/fixtures/claude-stream-json/{name}.jsonl",
            env!("CARGO_MANIFEST_DIR")
        )
    };
    // Tasks 1 and 3 replay the run with a tool call; 2 and 4 the one out of turns.
    for (task, name, code) in [
        (1, "tool-use", 0),
        (2, "max-turns", 1),
        (3, "tool-use", 0),
        (4, "max-turns", 1),
    ] {
        std::fs::write(
            streams.join(task.to_string()),
            format!("{}\n{code}\n", fixture(name)),
        )
        .unwrap();
        env.add("dev", &format!("task {task}"));
    }
    env.ok("orch-batch", &["create", "--max", "2"]);
    env.ok("orch-batch", &["create", "--max", "2"]);
    let run = |batch: &str, agent: &str| {
        env.cmd("orch-run")
            .args([batch, "--agent", agent, "--retries", "0"])
            .env("PATH", path_with(&[&bin, &bin_dir()]))
            .env("ORCH_STREAM_DIR", &streams)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    // Batch 1 (tasks 1, 2) as stream-json, batch 2 (tasks 3, 4) as json.
    assert_code(&run("1", "claude-stream"), 1);
    assert_code(&run("2", "claude"), 1);
    let batch_of =
        |t: i64| json(&env.ok("orch-queue", &["show", &t.to_string(), "--json"]))["batch"].clone();
    assert_eq!((batch_of(2), batch_of(3)), (1.into(), 2.into()));

    let log = env.ok("orch-queue", &["logs", "1"]);
    let steps: Vec<&str> = log
        .lines()
        .map(|l| l.splitn(3, ' ').nth(2).unwrap().trim_start())
        .collect();
    assert!(steps[0].starts_with("start: session "), "{log}");
    assert_eq!(
        steps[1..4],
        [
            "tool Bash: orch-queue stats",
            "tool result: queued     1 (+7 lines)",
            "says: done: Count the queue"
        ],
        "{log}"
    );
    assert!(steps[4].starts_with("done (success), 2 turns"), "{log}");
    assert!(!log.contains('{'), "no raw JSON in the log: {log}");
    let log3 = env.ok("orch-queue", &["logs", "2"]);
    assert!(
        log3.contains("failed (error_max_turns)")
            && log3.contains("Reached maximum number of turns (1)"),
        "{log3}"
    );
    // The json preset's log is what claude printed.
    assert!(env.ok("orch-queue", &["logs", "3"]).contains("{\""));

    let attempt = |t: i64| {
        let mut a = json(&env.ok("orch-queue", &["show", &t.to_string(), "--json"]));
        let attempts = json_lines(&env.ok("orch-queue", &["attempts", &t.to_string(), "--json"]));
        assert_eq!(attempts.len(), 1);
        let mut at = attempts[0].clone();
        for k in ["task", "started_at", "ended_at", "batch", "duration_ms"] {
            at.as_object_mut().unwrap().remove(k);
        }
        for k in [
            "id",
            "batch",
            "batched_at",
            "started_at",
            "finished_at",
            "created_at",
            "prompt",
            "description",
        ] {
            a.as_object_mut().unwrap().remove(k);
        }
        (a, at)
    };
    let (streamed, streamed_attempt) = attempt(1);
    let (plain, plain_attempt) = attempt(3);
    assert_eq!(streamed, plain);
    assert_eq!(streamed_attempt, plain_attempt);
    assert_eq!(streamed["result"], "done: Count the queue");
    assert!(
        streamed_attempt["cost_usd"].as_f64() > Some(0.0),
        "{streamed_attempt}"
    );
    let (streamed, streamed_attempt) = attempt(2);
    let (plain, plain_attempt) = attempt(4);
    assert_eq!(streamed, plain);
    assert_eq!(streamed_attempt, plain_attempt);
    assert_eq!(streamed["status"], "failed");
    assert!(
        streamed_attempt["error_class"].is_string(),
        "{streamed_attempt}"
    );
}

/// `--html FILE` never writes over the database or SQLite's files beside
/// it, named directly or through a symlink; the page itself is written
/// atomically.
#[test]
fn an_html_page_never_overwrites_the_database() {
    let env = Env::new();
    env.ok("orch-verify", &["selftest", "-n", "2", "--sleep", "0.05"]);
    env.add("dev", "p1");
    env.ok("orch-batch", &["create"]);
    env.ok("orch-run", &["1", "--", "true"]);
    let link = env.path().join("page.html");
    std::os::unix::fs::symlink(&env.db, &link).unwrap();
    let db = env.db.to_str().unwrap().to_string();
    let targets = [
        db.clone(),
        format!("{db}-wal"),
        format!("{db}-shm"),
        link.to_str().unwrap().to_string(),
    ];
    let before = dump(&env.db);
    let bytes = std::fs::read(&env.db).unwrap();
    for t in &targets {
        for args in [
            &["orch-verify", "report", "1", "--html", t][..],
            &[
                "orch-verify",
                "session",
                "--session",
                "orch-run:1",
                "--html",
                t,
            ],
            &["orch-batch", "report", "1", "--html", t],
        ] {
            let out = env.run(args[0], &args[1..]);
            let err = assert_error(&out, args[0]);
            assert!(err.contains("is the database"), "{args:?}: {err}");
        }
    }
    assert_eq!(std::fs::read(&env.db).unwrap(), bytes, "database untouched");
    assert_eq!(dump(&env.db), before);
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    // Elsewhere the page is written, replacing what was there.
    let page = env.path().join("ok.html");
    std::fs::write(&page, "old").unwrap();
    env.ok(
        "orch-batch",
        &["report", "1", "--html", page.to_str().unwrap()],
    );
    assert!(std::fs::read_to_string(&page).unwrap().contains("<html"));
}
