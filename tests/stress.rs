//! Processes killed at the worst moment: writers killed with SIGKILL (one of
//! them while it holds the write lock), processes waiting for the lock, and a
//! batch whose emitter died. Read-only and full disks need root to mount:
//! tests/real/faults.rs; the stress script: tests/real/stress.rs.

use std::io::Write;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// A small xorshift generator: random enough to pick victims, seed printed.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        eprintln!("rng seed {seed}");
        Rng(seed)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Spawns `name ARGS` with `input` fed on stdin from a thread; output piped.
fn spawn_fed(env: &Env, name: &str, args: &[&str], input: Vec<u8>) -> Child {
    let mut c = env.cmd(name);
    c.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    child
}

fn stdout_ids(out: &Output) -> Vec<i64> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

fn assert_no_lock_error(out: &Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.to_lowercase().contains("locked") && !err.contains("busy"),
        "{err}"
    );
}

#[test]
fn sigkilled_writers_leave_all_or_nothing_and_the_next_command_works() {
    let env = Env::new();
    env.db_ready();
    let mut rng = Rng::new();
    const LINES: usize = 400;
    let mut adders = Vec::new();
    let mut batchers = Vec::new();
    for round in 0..3 {
        let mut children = Vec::new();
        for i in 0..8 {
            let prefix = format!("k{round}.{i}:");
            let child = spawn_fed(
                &env,
                "orch-queue",
                &["add", "--stdin"],
                jsonl(&prefix, LINES, 200),
            );
            children.push((prefix, child, false));
        }
        let mut bs = Vec::new();
        for _ in 0..3 {
            let mut c = env.cmd("orch-batch");
            c.args(["create", "--max", "300", "--json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            bs.push((c.spawn().unwrap(), false));
        }
        // Kill about half, each at a random moment in the first 150 ms.
        let start = Instant::now();
        let mut plan: Vec<(usize, Duration)> = Vec::new();
        for k in 0..children.len() + bs.len() {
            if rng.below(2) == 0 {
                plan.push((k, Duration::from_millis(rng.below(150))));
            }
        }
        plan.sort_by_key(|p| p.1);
        for (k, at) in plan {
            if let Some(wait) = at.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
            if k < children.len() {
                let _ = children[k].1.kill();
                children[k].2 = true;
            } else {
                let _ = bs[k - children.len()].0.kill();
                bs[k - children.len()].1 = true;
            }
        }
        adders.extend(
            children
                .into_iter()
                .map(|(p, c, k)| (p, c.wait_with_output().unwrap(), k)),
        );
        batchers.extend(
            bs.into_iter()
                .map(|(c, k)| (c.wait_with_output().unwrap(), k)),
        );
    }
    let mut completed = 0;
    for (prefix, out, killed) in &adders {
        let n = tasks_like(&env.db, prefix);
        assert!(
            n == 0 || n == LINES as i64,
            "{prefix}: {n} of {LINES} rows: not all or nothing"
        );
        if out.status.success() {
            completed += 1;
            assert_eq!(n, LINES as i64, "{prefix} acknowledged but missing");
            assert_eq!(stdout_ids(out).len(), LINES);
        } else {
            assert!(
                *killed,
                "{prefix} failed without being killed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert_no_lock_error(out);
    }
    let c = env.sql();
    for (out, killed) in &batchers {
        match out.status.code() {
            Some(0) => {
                let b: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                for t in b["tasks"].as_array().unwrap() {
                    let in_db: i64 = c
                        .query_row(
                            "SELECT batch_id FROM tasks WHERE id = ?1",
                            [t["id"].as_i64().unwrap()],
                            |r| r.get(0),
                        )
                        .unwrap();
                    assert_eq!(
                        in_db,
                        b["id"].as_i64().unwrap(),
                        "task claimed by two batches"
                    );
                }
            }
            Some(1) => {}
            _ => assert!(
                *killed,
                "batcher failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
        assert_no_lock_error(out);
    }
    eprintln!("{completed} of {} bulk adds completed", adders.len());
    let orphans: i64 = c
        .query_row(
            "SELECT count(*) FROM tasks WHERE (status = 'queued') != (batch_id IS NULL)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        orphans, 0,
        "a task is batched without a batch, or queued with one"
    );
    integrity_ok(&env.db);
    next_commands_work(&env);
}

#[test]
fn killing_processes_that_wait_for_the_lock_loses_nothing() {
    let env = Env::new();
    env.db_ready();
    let mut holder = env.sql();
    let tx = holder
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    let mut waiters: Vec<Child> = (0..4)
        .map(|i| {
            let mut c = env.cmd("orch-queue");
            c.args(["add", "dev", &format!("waiter{i} here")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(400));
    for w in waiters.iter_mut() {
        assert!(
            w.try_wait().unwrap().is_none(),
            "a waiter did not wait for the lock"
        );
    }
    waiters[0].kill().unwrap();
    waiters[2].kill().unwrap();
    tx.rollback().unwrap();
    for (i, w) in waiters.into_iter().enumerate() {
        let out = w.wait_with_output().unwrap();
        let n = tasks_like(&env.db, &format!("waiter{i} "));
        if i % 2 == 0 {
            assert_eq!(n, 0, "a killed waiter wrote");
        } else {
            assert_code(&out, 0);
            assert_eq!(n, 1);
        }
    }
    drop(holder);
    integrity_ok(&env.db);
    next_commands_work(&env);
}

#[test]
fn killing_the_lock_holder_mid_transaction_rolls_it_back() {
    let env = Env::new();
    env.db_ready();
    let probe = env.sql();
    probe.busy_timeout(Duration::ZERO).unwrap();
    let lock_held = || probe.execute_batch("BEGIN IMMEDIATE; ROLLBACK").is_err();
    // A bulk add large enough to hold the write lock for a while.
    let mut bulk = spawn_fed(
        &env,
        "orch-queue",
        &["add", "--stdin"],
        jsonl("bulk:", 30_000, 1000),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !lock_held() {
        assert!(
            bulk.try_wait().unwrap().is_none(),
            "bulk add finished before it could be caught holding the lock"
        );
        assert!(Instant::now() < deadline, "bulk add never took the lock");
        std::thread::sleep(Duration::from_millis(2));
    }
    // Someone queues behind it, then the holder dies.
    let mut waiter = env.cmd("orch-queue");
    waiter
        .args(["add", "dev", "queued behind the holder"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let waiter = waiter.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(lock_held(), "the lock was released before the kill");
    bulk.kill().unwrap();
    let _ = bulk.wait();
    let out = waiter.wait_with_output().unwrap();
    assert_code(&out, 0);
    assert_no_lock_error(&out);
    assert_eq!(
        tasks_like(&env.db, "bulk:"),
        0,
        "a killed transaction left rows"
    );
    assert_eq!(tasks_like(&env.db, "queued behind"), 1);
    drop(probe);
    integrity_ok(&env.db);
    next_commands_work(&env);
}

#[test]
fn a_batch_whose_emitter_died_is_listed_unemitted_and_can_be_released() {
    let env = Env::new();
    let ids: Vec<i64> = (0..3)
        .map(|i| env.add("dev", &format!("task {i}")))
        .collect();
    let b = env.ok("orch-batch", &["create"]).trim().to_string();
    // The emitter waits for the batch id on stdin and dies before it gets it.
    let mut emit = env.cmd("orch-emit");
    emit.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut emit = emit.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    emit.kill().unwrap();
    let _ = emit.wait();
    let list = json_lines(&env.ok("orch-batch", &["list", "--json"]));
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"].to_string(), b);
    assert!(list[0]["emitted_at"].is_null());
    assert_eq!(list[0]["batched"], 3);
    let text = env.ok("orch-batch", &["list"]);
    assert!(text.lines().nth(1).unwrap().contains(" no "), "{text}");
    env.ok("orch-batch", &["release", &b]);
    let queued = json_lines(&env.ok("orch-queue", &["list", "--status", "queued", "--json"]));
    assert_eq!(
        queued
            .iter()
            .map(|t| t["id"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        ids
    );
    let b2 = env.ok("orch-batch", &["create"]).trim().to_string();
    assert_ne!(b2, b);
    let v: serde_json::Value =
        serde_json::from_str(&env.ok("orch-emit", &[&b2, "--format", "json"])).unwrap();
    assert_eq!(v["tasks"], serde_json::json!(ids));
    let list = json_lines(&env.ok("orch-batch", &["list", "--json"]));
    assert!(list[0]["emitted_at"].is_string());
}
