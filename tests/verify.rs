//! orch-verify: real probe processes on one database file, judged from their
//! timestamps; bad input refused with nothing recorded; `exec` with xargs; the
//! selftest. The guided check in a real terminal (tmux) is in the real tier
//! (tests/real/terminal.rs).

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::common::{assert_code, assert_error, json_lines, Env};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `orch-verify new --json` → (run id, the whole object).
fn new_run(env: &Env, n: i64, sleep: &str) -> (i64, Value) {
    let out = env.ok(
        "orch-verify",
        &["new", "-n", &n.to_string(), "--sleep", sleep, "--json"],
    );
    let v = json_lines(&out).remove(0);
    (v["run"].as_i64().unwrap(), v)
}

fn spawn_probe(env: &Env, run: i64, i: i64) -> Child {
    env.cmd("orch-verify")
        .args(["probe", &run.to_string(), &i.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(c: Child) -> Output {
    let out = c.wait_with_output().unwrap();
    assert_code(&out, 0);
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(text.lines().count(), 1, "a probe prints one line: {text}");
    out
}

/// Runs probes `group` at a time, each group after the previous one finished.
fn run_groups(env: &Env, run: i64, groups: &[&[i64]]) {
    for g in groups {
        let kids: Vec<Child> = g.iter().map(|&i| spawn_probe(env, run, i)).collect();
        for k in kids {
            finish(k);
        }
    }
}

fn report(env: &Env, run: i64) -> (Output, Value) {
    let out = env.run("orch-verify", &["report", &run.to_string(), "--json"]);
    let v = json_lines(&String::from_utf8_lossy(&out.stdout)).remove(0);
    (out, v)
}

/// (started_at, finished_at) of every probe of `run`, straight from the database.
fn rows(env: &Env, run: i64) -> Vec<(Option<i64>, Option<i64>)> {
    let c = env.sql();
    let mut st = c
        .prepare("SELECT started_at, finished_at FROM verify_probes WHERE run_id = ?1 ORDER BY idx")
        .unwrap();
    st.query_map([run], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn concurrent_probes_are_parallel_and_the_figures_match_what_happened() {
    let env = Env::new();
    let (run, new) = new_run(&env, 4, "1");
    // The exact commands the message gives the agents, run the way the Bash tool runs them.
    let commands: Vec<String> = new["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(commands.len(), 4);
    for (i, (c, call)) in commands
        .iter()
        .zip(new["calls"].as_array().unwrap())
        .enumerate()
    {
        assert!(
            c.starts_with(&format!("orch-verify probe {run} {} --db ", i + 1)),
            "{c}"
        );
        assert!(call["prompt"].as_str().unwrap().contains(c.as_str()));
        assert!(new["message"].as_str().unwrap().contains(c.as_str()));
    }
    let before = now_ms();
    let t = Instant::now();
    let kids: Vec<Child> = commands
        .iter()
        .map(|c| {
            let mut cmd = env.cmd("orch-verify");
            cmd.env_remove("ORCH_DB"); // the command names its database itself
            let path = cmd
                .get_envs()
                .find(|(k, _)| *k == "PATH")
                .and_then(|(_, v)| v)
                .unwrap()
                .to_owned();
            Command::new("sh")
                .args(["-c", c])
                .env("PATH", path)
                .env_remove("ORCH_DB")
                .current_dir(env.home())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Output> = kids.into_iter().map(finish).collect();
    let elapsed = t.elapsed().as_millis() as i64;
    let after = now_ms();
    for (i, o) in outs.iter().enumerate() {
        let line = String::from_utf8_lossy(&o.stdout);
        assert!(
            line.starts_with(&format!("probe {} of 4 in run {run}: ran ", i + 1)),
            "{line}"
        );
    }

    let w = env.run("orch-verify", &["wait", &run.to_string(), "--timeout", "5"]);
    assert_code(&w, 0);
    assert!(w.stdout.is_empty(), "wait keeps stdout for data");
    let (out, v) = report(&env, run);
    assert_code(&out, 0);
    assert_eq!(v["verdict"], "PARALLEL");
    assert_eq!(
        (v["n"].as_i64(), v["completed"].as_i64(), v["peak"].as_i64()),
        (Some(4), Some(4), Some(4))
    );
    assert_eq!(v["missing"], serde_json::json!([]));

    // The figures agree with the rows in the database and with what the test saw.
    let db = rows(&env, run);
    let starts: Vec<i64> = db.iter().map(|r| r.0.unwrap()).collect();
    let ends: Vec<i64> = db.iter().map(|r| r.1.unwrap()).collect();
    let (first, last_start, last_end) = (
        *starts.iter().min().unwrap(),
        *starts.iter().max().unwrap(),
        *ends.iter().max().unwrap(),
    );
    assert_eq!(v["wall_ms"].as_i64().unwrap(), last_end - first);
    assert_eq!(v["skew_ms"].as_i64().unwrap(), last_start - first);
    let serial: i64 = starts.iter().zip(&ends).map(|(s, e)| e - s).sum();
    assert_eq!(v["serial_ms"].as_i64().unwrap(), serial);
    let speedup = v["speedup"].as_f64().unwrap();
    assert!((speedup - serial as f64 / (last_end - first) as f64).abs() < 0.01);
    assert!(speedup > 2.0, "four 1 s probes at once: {speedup}");
    for (i, p) in v["probes"].as_array().unwrap().iter().enumerate() {
        let d = p["duration_ms"].as_i64().unwrap();
        assert!(
            (1000..1000 + 1500).contains(&d),
            "probe {i} ran {d} ms for a 1 s sleep"
        );
        assert_eq!(p["index"].as_i64(), Some(i as i64 + 1));
        assert_eq!(p["start_offset_ms"].as_i64().unwrap(), starts[i] - first);
    }
    assert!(
        first >= before - 5 && last_end <= after + 5,
        "recorded times lie within the test's window"
    );
    assert!(v["wall_ms"].as_i64().unwrap() <= elapsed + 5);
    assert!(v["wall_ms"].as_i64().unwrap() >= 1000);

    // The human report: figures and a timeline within 80 columns, no colour off a terminal.
    let human = env.run("orch-verify", &["report", &run.to_string()]);
    assert_code(&human, 0);
    let text = String::from_utf8(human.stdout).unwrap();
    assert!(text.contains("verdict  PARALLEL"), "{text}");
    assert!(text.contains("peak     4 of 4"), "{text}");
    assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("probe ") && l.contains('█'))
            .count(),
        4
    );
    assert!(!text.contains('\x1b'));
}

#[test]
fn one_by_one_is_sequential() {
    let env = Env::new();
    let (run, _) = new_run(&env, 3, "0.3");
    run_groups(&env, run, &[&[1], &[2], &[3]]);
    let (out, v) = report(&env, run);
    assert_code(&out, 1);
    assert_eq!(v["verdict"], "SEQUENTIAL");
    assert_eq!(v["peak"].as_i64(), Some(1));
    assert!(v["speedup"].as_f64().unwrap() <= 1.0);
    assert!(v["wall_ms"].as_i64().unwrap() >= 900);
    let human = env.run("orch-verify", &["report", &run.to_string()]);
    assert_code(&human, 1);
    assert!(String::from_utf8_lossy(&human.stdout).contains("What to do"));
}

#[test]
fn two_at_a_time_out_of_four_is_partial() {
    let env = Env::new();
    let (run, _) = new_run(&env, 4, "1");
    run_groups(&env, run, &[&[1, 2], &[3, 4]]);
    let (out, v) = report(&env, run);
    assert_code(&out, 1);
    assert_eq!(v["verdict"], "PARTIAL");
    assert_eq!(v["peak"].as_i64(), Some(2));
}

#[test]
fn a_missing_probe_is_incomplete_after_the_timeout() {
    let env = Env::new();
    let (run, _) = new_run(&env, 3, "0.3");
    run_groups(&env, run, &[&[1, 2]]);
    let t = Instant::now();
    let w = env.run(
        "orch-verify",
        &["wait", &run.to_string(), "--timeout", "0.6"],
    );
    assert_code(&w, 1);
    assert!(t.elapsed() >= Duration::from_millis(600));
    let err = String::from_utf8_lossy(&w.stderr);
    assert!(
        err.contains("2 of 3") && err.contains("missing: 3"),
        "{err}"
    );
    let (out, v) = report(&env, run);
    assert_code(&out, 1);
    assert_eq!(v["verdict"], "INCOMPLETE");
    assert_eq!(v["missing"], serde_json::json!([3]));
    assert_eq!(v["completed"].as_i64(), Some(2));
    assert!(v["probes"][2]["started_at"].is_null());
}

#[test]
fn wait_returns_as_soon_as_the_last_probe_reports() {
    let env = Env::new();
    let (run, _) = new_run(&env, 2, "0.5");
    let waiter = env
        .cmd("orch-verify")
        .args(["wait", &run.to_string(), "--timeout", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    run_groups(&env, run, &[&[1, 2]]);
    let out = waiter.wait_with_output().unwrap();
    assert_code(&out, 0);
    // It returned on the last report, well before its 20 s timeout.
    let took = t.elapsed();
    assert!(took < Duration::from_secs(15), "{took:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("probe 2") && err.contains("2/2 done"),
        "progress on stderr: {err}"
    );
}

#[test]
fn many_probes_at_once_each_record_exactly_once() {
    let env = Env::new();
    let (run, _) = new_run(&env, 12, "1.5");
    // Every index twice, all at once: one of each pair must win, the other be refused.
    let kids: Vec<(i64, Child)> = (1..=12)
        .flat_map(|i| [i, i])
        .map(|i| (i, spawn_probe(&env, run, i)))
        .collect();
    let mut won = vec![0; 13];
    for (i, k) in kids {
        let out = k.wait_with_output().unwrap();
        match out.status.code() {
            Some(0) => won[i as usize] += 1,
            Some(2) => {
                let e = assert_error(&out, "orch-verify");
                assert!(e.contains("already ran"), "{e}");
            }
            other => panic!(
                "probe {i}: exit {other:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
    assert!(
        won[1..].iter().all(|&w| w == 1),
        "each index ran exactly once: {won:?}"
    );
    let pids: std::collections::HashSet<i64> = env
        .sql()
        .prepare("SELECT pid FROM verify_probes WHERE run_id = ?1")
        .unwrap()
        .query_map([run], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(pids.len(), 12);
    let (out, v) = report(&env, run);
    assert_code(&out, 0);
    assert_eq!(v["verdict"], "PARALLEL");
}

#[test]
fn exec_judges_xargs() {
    let env = Env::new();
    let out = env.run(
        "orch-verify",
        &[
            "exec", "-n", "4", "--sleep", "1", "--json", "--", "xargs", "-P", "4", "-I{}", "sh",
            "-c", "{}",
        ],
    );
    assert_code(&out, 0);
    let v = json_lines(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        v.len(),
        1,
        "stdout holds only the report; the probes' lines go to stderr"
    );
    assert_eq!(v[0]["verdict"], "PARALLEL");
    assert_eq!(v[0]["peak"].as_i64(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("probe 4 of 4"));

    let out = env.run(
        "orch-verify",
        &[
            "exec", "-n", "3", "--sleep", "0.3", "--json", "--", "xargs", "-P", "1", "-I{}", "sh",
            "-c", "{}",
        ],
    );
    assert_code(&out, 1);
    let v = json_lines(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(v[0]["verdict"], "SEQUENTIAL");
    assert_eq!(v[0]["completed"].as_i64(), Some(3));
}

#[test]
fn exec_with_an_executor_that_runs_nothing_is_incomplete_and_a_missing_one_records_nothing() {
    let env = Env::new();
    let t = Instant::now();
    let out = env.run(
        "orch-verify",
        &["exec", "-n", "2", "--sleep", "0.3", "--json", "--", "true"],
    );
    assert_code(&out, 1);
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!(
        json_lines(&String::from_utf8_lossy(&out.stdout))[0]["verdict"],
        "INCOMPLETE"
    );

    let before: i64 = env
        .sql()
        .query_row("SELECT count(*) FROM verify_runs", [], |r| r.get(0))
        .unwrap();
    let out = env.run("orch-verify", &["exec", "--", "no-such-executor-here"]);
    assert_error(&out, "orch-verify");
    let after: i64 = env
        .sql()
        .query_row("SELECT count(*) FROM verify_runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(before, after);
}

#[test]
fn selftest_passes() {
    let env = Env::new();
    let out = env.run(
        "orch-verify",
        &["selftest", "-n", "3", "--sleep", "0.4", "--json"],
    );
    assert_code(&out, 0);
    let phases = json_lines(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(phases.len(), 2);
    assert_eq!(phases[0]["expected"], "PARALLEL");
    assert_eq!(phases[0]["report"]["verdict"], "PARALLEL");
    assert_eq!(phases[1]["report"]["verdict"], "SEQUENTIAL");
    assert!(phases
        .iter()
        .all(|p| p["ok"] == true && p["problems"] == serde_json::json!([])));
    let runs: i64 = env
        .sql()
        .query_row(
            "SELECT count(*) FROM verify_runs WHERE label LIKE 'selftest%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(runs, 2);

    // The human form: both verdicts, and no advice to fix a SEQUENTIAL
    // result that is exactly what the second phase wants.
    let text = env.ok("orch-verify", &["selftest", "-n", "2", "--sleep", "0.2"]);
    assert!(text.contains("verdict  SEQUENTIAL"), "{text}");
    assert!(!text.contains("What to do"), "{text}");
    assert!(text.ends_with(
        "selftest passed: probes run together came out PARALLEL, one by one SEQUENTIAL\n"
    ));
}

#[test]
fn bad_input_is_refused_and_nothing_is_recorded() {
    let env = Env::new();
    let (run, _) = new_run(&env, 2, "0.2");
    let r = run.to_string();
    let count = || -> i64 {
        env.sql()
            .query_row("SELECT count(*) FROM verify_runs", [], |r| r.get(0))
            .unwrap()
    };
    let runs = count();

    for (args, needle) in [
        (vec!["probe", "999", "1"], "run 999 not found"),
        (vec!["probe", &r, "0"], "no probe 0"),
        (vec!["probe", &r, "3"], "no probe 3"),
        (vec!["probe", &r, "x"], "invalid value"),
        (vec!["report", "999"], "run 999 not found"),
        (vec!["wait", "999", "--timeout", "1"], "run 999 not found"),
    ] {
        let e = assert_error(&env.run("orch-verify", &args), "orch-verify");
        assert!(e.contains(needle), "{args:?}: {e}");
    }
    assert_eq!(
        rows(&env, run),
        vec![(None, None), (None, None)],
        "nothing recorded"
    );

    finish(spawn_probe(&env, run, 1));
    let recorded = rows(&env, run);
    let e = assert_error(&env.run("orch-verify", &["probe", &r, "1"]), "orch-verify");
    assert!(e.contains("already ran"), "{e}");
    assert_eq!(
        rows(&env, run),
        recorded,
        "a second report of probe 1 changes nothing"
    );

    for sleep in ["0", "0.0001", "-1", "601", "1e9", "nan", "soon"] {
        let e = assert_error(
            &env.run("orch-verify", &["new", "--sleep", sleep]),
            "orch-verify",
        );
        assert!(e.contains("sleep"), "{sleep}: {e}");
    }
    for n in ["0", "65", "-3"] {
        assert_error(&env.run("orch-verify", &["new", "-n", n]), "orch-verify");
    }
    assert_error(
        &env.run("orch-verify", &["exec", "--sleep", "0", "--", "true"]),
        "orch-verify",
    );
    assert_eq!(count(), runs, "no run was created");
}

#[test]
fn without_a_terminal_it_points_to_the_verbs() {
    let env = Env::new();
    let out = env.run("orch-verify", &[]);
    assert_code(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("orch-verify: error: the guided check needs a terminal"),
        "{err}"
    );
    assert!(
        err.contains("orch-verify new") && err.contains("orch-verify exec"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    let runs: i64 = env
        .sql()
        .query_row("SELECT count(*) FROM verify_runs", [], |r| r.get(0))
        .unwrap_or(0);
    assert_eq!(runs, 0);
}

#[test]
fn a_relative_db_reaches_probes_as_an_absolute_path() {
    let env = Env::new();
    let mut c = env.cmd("orch-verify");
    c.env_remove("ORCH_DB").args([
        "--db", "rel.db", "new", "-n", "2", "--sleep", "0.1", "--json",
    ]);
    let out = c.output().unwrap();
    assert_code(&out, 0);
    let v = json_lines(&String::from_utf8_lossy(&out.stdout)).remove(0);
    let cmd = v["commands"][0].as_str().unwrap();
    let abs = std::fs::canonicalize(env.path()).unwrap().join("rel.db");
    let given = cmd.split(" --db ").nth(1).unwrap();
    assert_eq!(std::fs::canonicalize(given).unwrap(), abs, "{cmd}");
}

#[test]
fn item15_one_probe_proves_nothing_and_is_refused() {
    let env = Env::new();
    for args in [
        vec!["new", "-n", "1"],
        vec!["exec", "-n", "1", "--", "xargs", "-I{}", "sh", "-c", "{}"],
    ] {
        let err = assert_error(&env.run("orch-verify", &args), "orch-verify");
        assert!(err.contains("-n"), "{err}");
    }
    assert!(!env.db.exists(), "no database made");
}
