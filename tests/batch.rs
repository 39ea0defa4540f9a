//! orch-batch through the real binary: create (ready tasks only, priority then
//! age, --max/--min/--role), dependencies, plan, list, show, release, and many
//! processes adding and batching on one file at once.

use std::collections::HashSet;
use std::io::Write;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::Value;

use crate::common::*;

fn create(env: &Env, args: &[&str]) -> Option<i64> {
    let mut full = vec!["create"];
    full.extend_from_slice(args);
    let out = env.run("orch-batch", &full);
    match out.status.code() {
        Some(0) => Some(
            String::from_utf8(out.stdout)
                .unwrap()
                .trim()
                .parse()
                .unwrap(),
        ),
        Some(1) => {
            assert!(out.stdout.is_empty());
            None
        }
        _ => panic!("create failed: {}", String::from_utf8_lossy(&out.stderr)),
    }
}

fn batch_tasks(env: &Env, b: i64) -> Vec<i64> {
    let v = json(&env.ok("orch-batch", &["show", &b.to_string(), "--json"]));
    v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect()
}

fn add_prio(env: &Env, prompt: &str, prio: i64) -> i64 {
    env.ok(
        "orch-queue",
        &["add", "dev", prompt, "-p", &prio.to_string()],
    )
    .trim()
    .parse()
    .unwrap()
}

#[test]
fn create_takes_ready_tasks_by_priority_then_age() {
    let env = Env::new();
    let low = add_prio(&env, "low", -1);
    let a = add_prio(&env, "a", 0);
    let high = add_prio(&env, "high", 5);
    let b = add_prio(&env, "b", 0);
    let b1 = create(&env, &["--max", "3"]).unwrap();
    assert_eq!(batch_tasks(&env, b1), vec![high, a, b]);
    for id in [high, a, b] {
        assert_eq!(status(&env, id), "batched");
    }
    let b2 = create(&env, &[]).unwrap();
    assert_eq!(batch_tasks(&env, b2), vec![low]);
    // Nothing ready: exit 1, nothing printed, nothing written.
    let before = dump(&env.db);
    let out = env.run("orch-batch", &["create"]);
    assert_code(&out, 1);
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing ready"));
    assert_eq!(before, dump(&env.db));
}

#[test]
fn default_max_is_ten_and_min_is_a_threshold() {
    let env = Env::new();
    let lines: String = (0..12)
        .map(|i| format!("{{\"role\":\"dev\",\"prompt\":\"t{i}\"}}\n"))
        .collect();
    env.ok_with("orch-queue", &["add", "--stdin"], lines.as_bytes());
    let before = dump(&env.db);
    let out = env.run("orch-batch", &["create", "--min", "13", "--max", "13"]);
    assert_code(&out, 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("fewer than --min"));
    assert_eq!(before, dump(&env.db));
    let b = create(&env, &["--min", "10"]).unwrap();
    assert_eq!(batch_tasks(&env, b).len(), 10, "the default --max");
    assert_eq!(create(&env, &["--min", "3"]), None, "2 left, fewer than 3");
    let b = json(&env.ok("orch-batch", &["create", "--json"]));
    assert_eq!(b["tasks"].as_array().unwrap().len(), 2);
    assert!(b["id"].is_i64());
    assert!(b["created_at"].is_string());
}

#[test]
fn role_filter() {
    let env = Env::new();
    let d = env.add("dev", "code");
    let r = env.add("reviewer", "review");
    let b = create(&env, &["--role", "reviewer"]).unwrap();
    assert_eq!(batch_tasks(&env, b), vec![r]);
    assert_eq!(status(&env, d), "queued");
    assert_error(
        &env.run("orch-batch", &["create", "--role", "bad role"]),
        "orch-batch",
    );
    assert_error(
        &env.run("orch-batch", &["create", "--max", "0"]),
        "orch-batch",
    );
}

#[test]
fn a_task_waits_for_its_after_to_be_done() {
    let env = Env::new();
    let a = env.add("dev", "build");
    let b: i64 = env
        .ok(
            "orch-queue",
            &["add", "dev", "test", "--after", &a.to_string()],
        )
        .trim()
        .parse()
        .unwrap();
    let c: i64 = env
        .ok(
            "orch-queue",
            &["add", "dev", "ship", "--after", &b.to_string()],
        )
        .trim()
        .parse()
        .unwrap();
    let b1 = create(&env, &[]).unwrap();
    assert_eq!(batch_tasks(&env, b1), vec![a]);
    assert_eq!(create(&env, &[]), None, "b waits for a");
    env.ok("orch-queue", &["start", &a.to_string()]);
    assert_eq!(create(&env, &[]), None, "running is not done");
    env.ok("orch-queue", &["done", &a.to_string()]);
    assert_eq!(batch_tasks(&env, create(&env, &[]).unwrap()), vec![b]);
    env.ok("orch-queue", &["fail", &b.to_string()]);
    assert_eq!(
        create(&env, &[]),
        None,
        "a failed dependency never becomes done"
    );
    assert_eq!(status(&env, c), "queued");
    // plan says why.
    let p = json(&env.ok("orch-batch", &["plan", "--json"]));
    assert_eq!(p["waves"], serde_json::json!([]));
    assert_eq!(p["blocked"][0]["id"], c);
    assert!(p["blocked"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("failed"));
}

#[test]
fn plan_shows_waves_and_writes_nothing() {
    let env = Env::new();
    let input = "{\"role\":\"dev\",\"prompt\":\"a\",\"key\":\"a\"}\n\
                 {\"role\":\"dev\",\"prompt\":\"b\",\"key\":\"b\"}\n\
                 {\"role\":\"dev\",\"prompt\":\"c\",\"key\":\"c\",\"after\":[\"a\",\"b\"]}\n\
                 {\"role\":\"dev\",\"prompt\":\"d\",\"after\":[\"c\"]}\n\
                 {\"role\":\"dev\",\"prompt\":\"e\"}\n";
    let ids: Vec<i64> = env
        .ok_with("orch-queue", &["add", "--stdin"], input.as_bytes())
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let before = dump(&env.db);
    let p = json(&env.ok("orch-batch", &["plan", "--json"]));
    let waves: Vec<Vec<i64>> = p["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            w.as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].as_i64().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(
        waves,
        vec![vec![ids[0], ids[1], ids[4]], vec![ids[2]], vec![ids[3]]]
    );
    assert_eq!(p["cycles"], serde_json::json!([]));
    let p2 = json(&env.ok("orch-batch", &["plan", "--max", "2", "--json"]));
    let waves2: Vec<Vec<i64>> = p2["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            w.as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].as_i64().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(
        waves2,
        vec![vec![ids[0], ids[1]], vec![ids[2], ids[4]], vec![ids[3]]]
    );
    let text = env.ok("orch-batch", &["plan"]);
    assert!(text.contains("wave 1 (3 tasks, ready now)"), "{text}");
    assert_eq!(before, dump(&env.db));
}

#[test]
fn plan_names_a_cycle_in_a_hand_edited_file() {
    let env = Env::new();
    let a = env.add("dev", "a");
    let b: i64 = env
        .ok(
            "orch-queue",
            &["add", "dev", "b", "--after", &a.to_string()],
        )
        .trim()
        .parse()
        .unwrap();
    env.sql()
        .execute(
            "INSERT INTO task_deps (task_id, after_id) VALUES (?1, ?2)",
            [a, b],
        )
        .unwrap();
    let p = json(&env.ok("orch-batch", &["plan", "--json"]));
    let cycle: HashSet<i64> = p["cycles"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(cycle, HashSet::from([a, b]));
    assert!(env.ok("orch-batch", &["plan"]).contains("cycle:"));
}

#[test]
fn list_show_release() {
    let env = Env::new();
    let a = env.add("dev", "a");
    let b = env.add("dev", "b");
    let bid = create(&env, &[]).unwrap();
    let list = json_lines(&env.ok("orch-batch", &["list", "--json"]));
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], bid);
    assert_eq!(list[0]["tasks"], 2);
    assert_eq!(list[0]["batched"], 2);
    assert!(list[0]["emitted_at"].is_null());
    // show takes the id on stdin too
    let v = json(&env.ok_with(
        "orch-batch",
        &["show", "--json"],
        format!("{bid}\n").as_bytes(),
    ));
    assert_eq!(v["id"], bid);
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["id", "created_at", "emitted_at", "tasks"]);
    assert!(env
        .ok("orch-batch", &["show", &bid.to_string()])
        .contains("not emitted"));
    assert!(env.ok("orch-batch", &["list"]).contains("2 waiting"));
    // release puts the tasks back
    env.ok("orch-batch", &["release", &bid.to_string()]);
    assert_eq!(status(&env, a), "queued");
    assert_eq!(status(&env, b), "queued");
    assert!(json_lines(&env.ok("orch-batch", &["list", "--json"])).is_empty());
    // An emitted batch goes back too, with a word that its agents may have run.
    let bid = create(&env, &[]).unwrap();
    env.ok("orch-emit", &[&bid.to_string()]);
    let out = env.run("orch-batch", &["release", &bid.to_string()]);
    assert_code(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("was emitted at") && err.contains("run again"),
        "{err}"
    );
    assert_eq!(status(&env, a), "queued");
    // ...but not once a task started
    let bid = create(&env, &[]).unwrap();
    env.ok("orch-queue", &["start", &a.to_string()]);
    let before = dump(&env.db);
    let err = assert_error(
        &env.run("orch-batch", &["release", &bid.to_string()]),
        "orch-batch",
    );
    assert!(err.contains("running"), "{err}");
    assert_eq!(before, dump(&env.db));
    // unknown ids
    for args in [&["show", "99"][..], &["release", "99"], &["show", "x"]] {
        assert_error(&env.run("orch-batch", args), "orch-batch");
    }
    assert_error(&env.run_with("orch-batch", &["show"], b""), "orch-batch");
    assert_eq!(before, dump(&env.db));
}

/// 200 `orch-queue add` at once while 5 `orch-batch create` loops run: every
/// task ends in exactly one batch, none is lost, and no process ever sees a
/// locked database.
#[test]
fn concurrent_adds_and_batches_lose_nothing() {
    let env = Arc::new(Env::new());
    env.db_ready();
    let adding = Arc::new(AtomicBool::new(true));
    let mut loops = Vec::new();
    for _ in 0..5 {
        let env = Arc::clone(&env);
        let adding = Arc::clone(&adding);
        loops.push(std::thread::spawn(move || {
            let mut batches = Vec::new();
            let mut stderrs = String::new();
            loop {
                let still_adding = adding.load(Ordering::SeqCst);
                let out = env.run("orch-batch", &["create", "--max", "7"]);
                stderrs.push_str(&String::from_utf8_lossy(&out.stderr));
                match out.status.code() {
                    Some(0) => batches.push(
                        String::from_utf8(out.stdout)
                            .unwrap()
                            .trim()
                            .parse::<i64>()
                            .unwrap(),
                    ),
                    Some(1) if !still_adding => break,
                    Some(1) => {}
                    other => panic!("orch-batch create exited {other:?}: {stderrs}"),
                }
            }
            (batches, stderrs)
        }));
    }
    let mut children = Vec::new();
    for i in 0..200 {
        let mut c = env.cmd("orch-queue");
        c.args(["add", "dev", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("concurrent task {i}").as_bytes())
            .unwrap();
        children.push(child);
    }
    let mut added = HashSet::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_code(&out, 0);
        assert!(err.is_empty(), "{err}");
        assert!(added.insert(
            String::from_utf8(out.stdout)
                .unwrap()
                .trim()
                .parse::<i64>()
                .unwrap()
        ));
    }
    adding.store(false, Ordering::SeqCst);
    let mut batches = Vec::new();
    for l in loops {
        let (b, stderrs) = l.join().unwrap();
        let lower = stderrs.to_lowercase();
        assert!(
            !lower.contains("locked") && !lower.contains("busy") && !lower.contains("error"),
            "{stderrs}"
        );
        batches.extend(b);
    }
    assert_eq!(added.len(), 200);
    let mut seen = HashSet::new();
    for b in &batches {
        let tasks = batch_tasks(&env, *b);
        assert!(
            !tasks.is_empty() && tasks.len() <= 7,
            "batch {b}: {tasks:?}"
        );
        for t in tasks {
            assert!(seen.insert(t), "task {t} is in two batches");
        }
    }
    assert_eq!(seen, added, "every task in exactly one batch");
    let c = env.sql();
    let unbatched: i64 = c
        .query_row(
            "SELECT count(*) FROM tasks WHERE status != 'batched' OR batch_id IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(unbatched, 0);
    let check: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let v: Value = json(&env.ok("orch-queue", &["stats", "--json"]));
    assert_eq!(v["batched"], 200);
}

/// Item 6: `create` whose answer cannot be printed says which batch and tasks
/// it committed and exits 3; a stdout known to be unusable claims nothing.
#[test]
fn item6_create_after_a_commit_is_exit_3_with_the_ids() {
    let env = Env::new();
    for i in 0..3 {
        env.add("dev", &format!("task {i}"));
    }
    for how in [BadStdout::Closed, BadStdout::NoReader] {
        let out = env.run_bad_stdout("orch-batch", &["create"], b"", how);
        assert_error(&out, "orch-batch");
        assert!(
            env.ok("orch-batch", &["list", "--json"]).is_empty(),
            "{how:?}"
        );
    }
    let out = env.run_bad_stdout(
        "orch-batch",
        &["create", "--max", "2"],
        b"",
        BadStdout::Full,
    );
    assert_code(&out, 3);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(
            "orch-batch: error: batch 1 (tasks 1-2) committed, but the answer could not be printed"
        ),
        "{err}"
    );
    assert_eq!(batch_tasks(&env, 1), vec![1, 2]);
}

#[test]
fn item15_min_above_max_is_a_usage_error() {
    let env = Env::new();
    for i in 0..3 {
        env.add("dev", &format!("task {i}"));
    }
    let before = dump(&env.db);
    let err = assert_error(
        &env.run("orch-batch", &["create", "--min", "3", "--max", "2"]),
        "orch-batch",
    );
    assert!(err.contains("--min 3 is more than --max 2"), "{err}");
    assert_eq!(dump(&env.db), before, "nothing batched");
    // Equal is fine.
    assert!(create(&env, &["--min", "2", "--max", "2"]).is_some());
}

#[test]
fn item15_a_batch_id_on_stdin_is_exactly_one_id() {
    let env = Env::new();
    env.add("dev", "one");
    env.add("dev", "two");
    let b = create(&env, &["--max", "1"]).unwrap();
    let b2 = create(&env, &[]).unwrap();
    let big = format!("{b}{}", " ".repeat(5000));
    for input in [
        format!("{b} junk\n"),
        format!("{b}\n{b2}\n"),
        format!("{b}x\n"),
        format!("{big}{b2}\n"),
    ] {
        let err = assert_error(
            &env.run_with("orch-batch", &["show"], input.as_bytes()),
            "orch-batch",
        );
        assert!(err.contains("id"), "{input:?}: {err}");
    }
    // One id, with the newline and spaces a pipe brings, still works.
    let out = env.ok_with(
        "orch-batch",
        &["show", "--json"],
        format!("  {b}\r\n\n").as_bytes(),
    );
    assert_eq!(json(&out)["id"], b);
}

#[test]
fn item14_plan_of_a_long_chain_and_many_independent_tasks() {
    let env = Env::new();
    let mut lines = String::new();
    for i in 0..500 {
        let after = if i == 0 {
            String::new()
        } else {
            format!(r#","after":["s{}"]"#, i - 1)
        };
        lines.push_str(&format!(
            "{{\"role\":\"dev\",\"prompt\":\"step {i}\",\"key\":\"s{i}\"{after}}}\n"
        ));
    }
    for i in 0..25 {
        lines.push_str(&format!("{{\"role\":\"dev\",\"prompt\":\"alone {i}\"}}\n"));
    }
    env.ok_with("orch-queue", &["add", "--stdin"], lines.as_bytes());
    let p = json(&env.ok("orch-batch", &["plan", "--max", "10", "--json"]));
    let waves = p["waves"].as_array().unwrap();
    assert_eq!(waves.len(), 500, "one wave per step of the chain");
    let mut wave_of = std::collections::HashMap::new();
    for (w, wave) in waves.iter().enumerate() {
        let ids: Vec<i64> = wave
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_i64().unwrap())
            .collect();
        assert!(
            ids.len() <= 10 && ids.windows(2).all(|x| x[0] < x[1]),
            "{ids:?}"
        );
        for id in ids {
            assert!(wave_of.insert(id, w).is_none(), "task {id} planned twice");
        }
    }
    assert_eq!(wave_of.len(), 525);
    for wave in waves {
        for t in wave.as_array().unwrap() {
            for a in t["after"].as_array().unwrap() {
                assert!(wave_of[&a.as_i64().unwrap()] < wave_of[&t["id"].as_i64().unwrap()]);
            }
        }
    }
    // Step 0 and the first nine independent tasks make the first wave.
    let first: Vec<i64> = waves[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    assert_eq!(first, [1, 501, 502, 503, 504, 505, 506, 507, 508, 509]);
    assert!(p["blocked"].as_array().unwrap().is_empty());
}
