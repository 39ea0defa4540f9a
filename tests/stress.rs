//! Load, faults and hostile input: writers
//! killed with SIGKILL (one of them while it holds the write lock), a batch
//! whose emitter died, a file-size limit, damaged database files, and the
//! corpus under tests/hostile/ run through every binary. Read-only and full
//! disks need root to mount: tests/real/faults.rs.

use std::io::Write;
use std::path::{Path, PathBuf};
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

/// The next commands work: add, batch, emit.
fn next_commands_work(env: &Env) {
    let id = env.add("dev", "after the storm");
    assert!(id > 0);
    let b = env.ok("orch-batch", &["create", "--max", "100000"]);
    let out = env.ok("orch-emit", &[b.trim(), "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["tasks"].as_array().unwrap().contains(&id.into()));
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

#[test]
fn a_file_size_limit_is_a_clear_error_and_nothing_is_half_written() {
    use std::os::unix::process::CommandExt;
    let env = Env::new();
    env.add("dev", "before the limit");
    let before = counts(&env.db);
    let mut c = env.cmd("orch-queue");
    c.args(["add", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        c.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit {
                rlim_cur: 256 * 1024,
                rlim_max: 256 * 1024,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = c.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = jsonl("limit:", 500, 2000);
    std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    let err = assert_error(&out, "orch-queue");
    assert!(
        err.contains("full") || err.contains("too large") || err.contains("I/O"),
        "{err}"
    );
    assert_eq!(counts(&env.db), before);
    integrity_ok(&env.db);
    next_commands_work(&env);
}

/// A database with a few tasks and a batch, checkpointed into one file.
fn seeded(env: &Env) {
    for i in 0..40 {
        env.add("dev", &format!("seed task {i} {}", "z".repeat(300)));
    }
    env.ok("orch-batch", &["create"]);
    let c = env.sql();
    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    drop(c);
    let _ = std::fs::remove_file(env.db.with_extension("db-wal"));
    let _ = std::fs::remove_file(env.db.with_extension("db-shm"));
}

#[test]
fn a_truncated_or_garbled_database_is_refused_without_a_panic() {
    let env = Env::new();
    seeded(&env);
    let good = std::fs::read(&env.db).unwrap();
    assert!(good.len() > 3 * 4096);
    let damage: Vec<(&str, Vec<u8>)> = vec![
        ("truncated inside the header", good[..50].to_vec()),
        ("truncated inside page 1", good[..1000].to_vec()),
        ("truncated after two pages", good[..8192].to_vec()),
        (
            "garbage header",
            [vec![0xA5u8; 100], good[100..].to_vec()].concat(),
        ),
        (
            "garbage after page 1",
            [good[..4096].to_vec(), vec![0x5Au8; good.len() - 4096]].concat(),
        ),
        (
            "all garbage",
            (0..good.len()).map(|i| (i * 7 + 3) as u8).collect(),
        ),
    ];
    for (what, bytes) in damage {
        for args in [
            vec!["orch-queue", "list"],
            vec!["orch-queue", "add", "dev", "x"],
            vec!["orch-queue", "stats"],
            vec!["orch-batch", "create"],
            vec!["orch-batch", "list"],
            vec!["orch-emit", "1"],
        ] {
            std::fs::write(&env.db, &bytes).unwrap();
            let out = env
                .cmd(args[0])
                .args(&args[1..])
                .env("RUST_BACKTRACE", "1")
                .output()
                .unwrap();
            let err = assert_error(&out, args[0]);
            assert!(
                err.contains("not an orch database")
                    || err.contains("damaged")
                    || err.contains("malformed"),
                "{what}: {args:?}: {err}"
            );
            assert_eq!(
                std::fs::read(&env.db).unwrap(),
                bytes,
                "{what}: {args:?} changed the file"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// The hostile corpus: tests/hostile/cases.json, inputs beside it.

/// One case of the corpus.
#[derive(Debug)]
struct Case {
    name: String,
    bin: String,
    args: Vec<std::ffi::OsString>,
    stdin: Vec<u8>,
    expect: String,
}

fn hostile_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile")
}

/// An argument: plain text, or `hex:…` for raw bytes (invalid UTF-8).
fn arg(v: &serde_json::Value) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let s = v.as_str().unwrap();
    match s.strip_prefix("hex:") {
        Some(h) => std::ffi::OsString::from_vec(
            (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                .collect(),
        ),
        None => s.into(),
    }
}

/// Stdin: a file of the corpus, or generated (`{"repeat": S, "times": N,
/// "before": S, "after": S}`) for inputs too big to keep in the repository.
fn stdin_of(v: &serde_json::Value) -> Vec<u8> {
    if let Some(f) = v.get("stdin_file").and_then(|f| f.as_str()) {
        return std::fs::read(hostile_dir().join(f)).unwrap();
    }
    if let Some(g) = v.get("stdin_gen") {
        let s = |k: &str| g.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
        let times = g["times"].as_u64().unwrap() as usize;
        return format!("{}{}{}", s("before"), s("repeat").repeat(times), s("after")).into_bytes();
    }
    v.get("stdin")
        .and_then(|s| s.as_str())
        .unwrap_or("")
        .as_bytes()
        .to_vec()
}

fn load_cases() -> Vec<Case> {
    let text = std::fs::read_to_string(hostile_dir().join("cases.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_string(),
            bin: c["bin"].as_str().unwrap().to_string(),
            args: c["args"].as_array().unwrap().iter().map(arg).collect(),
            stdin: stdin_of(c),
            expect: c["expect"].as_str().unwrap().to_string(),
        })
        .collect()
}

/// At most 600 characters of `s`, for failure messages.
fn clip(s: &str) -> String {
    s.chars().take(600).collect()
}

/// Whether the binary is built (not the placeholder of a tool still to come).
#[test]
fn the_hostile_corpus_gets_one_clear_line_and_writes_nothing() {
    let env = Env::new();
    // Something for ids to point at: queued tasks, a batch.
    for i in 0..3 {
        env.add("dev", &format!("seed {i}"));
    }
    env.ok("orch-batch", &["create", "--max", "1"]);
    let cases = load_cases();
    assert!(cases.len() >= 30, "corpus too small: {}", cases.len());
    for c in &cases {
        let before = counts(&env.db);
        let mut cmd = env.cmd(&c.bin);
        cmd.args(&c.args)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let data = c.stdin.clone();
        let w = std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
        let out = child.wait_with_output().unwrap();
        w.join().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let ctx = format!(
            "case {:?}: exit {:?}, stderr: {}",
            c.name,
            out.status.code(),
            clip(&err)
        );
        assert!(
            !err.contains("panicked") && !err.contains("stack backtrace"),
            "{ctx}"
        );
        // Nothing raw reaches a terminal: what a message echoes of the input is escaped.
        assert!(
            !err.chars().any(|c| c.is_control() && c != '\n'),
            "{ctx}: raw control characters on stderr"
        );
        match c.expect.as_str() {
            "error" => {
                assert_eq!(out.status.code(), Some(2), "{ctx}");
                assert_eq!(err.lines().count(), 1, "{ctx}");
                assert!(err.starts_with(&format!("{}: error: ", c.bin)), "{ctx}");
                assert!(out.stdout.is_empty(), "{ctx}: data on stdout");
                assert_eq!(counts(&env.db), before, "{ctx}: something was written");
            }
            "ok-write" => assert_eq!(out.status.code(), Some(0), "{ctx}"),
            "ok-read" => {
                assert_eq!(out.status.code(), Some(0), "{ctx}");
                assert_eq!(counts(&env.db), before, "{ctx}: a read wrote");
            }
            "fault1" => {
                assert_eq!(out.status.code(), Some(1), "{ctx}");
                assert_eq!(err.lines().count(), 1, "{ctx}");
                assert!(err.starts_with(&format!("{}: error: ", c.bin)), "{ctx}");
                assert_eq!(counts(&env.db), before, "{ctx}: something was written");
            }
            "jsonrpc" => {
                assert_eq!(out.status.code(), Some(0), "{ctx}");
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(text.lines().count() > 0, "{ctx}: no reply");
                for l in text.lines() {
                    let v: serde_json::Value = serde_json::from_str(l)
                        .unwrap_or_else(|e| panic!("{ctx}: reply {l:?} is not JSON: {e}"));
                    assert_eq!(v["jsonrpc"], "2.0", "{ctx}");
                }
                assert_eq!(counts(&env.db), before, "{ctx}: something was written");
            }
            "no" => {
                assert_eq!(out.status.code(), Some(1), "{ctx}");
                assert_eq!(counts(&env.db), before, "{ctx}: something was written");
            }
            other => panic!("case {}: unknown expect {other}", c.name),
        }
        // Text stored verbatim must come back verbatim.
        if c.expect == "ok-write"
            && c.bin == "orch-queue"
            && c.args.first().is_some_and(|a| a == "add")
        {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let shown: serde_json::Value =
                    serde_json::from_str(&env.ok("orch-queue", &["show", id.trim(), "--json"]))
                        .unwrap();
                let given = c.args.last().unwrap().to_string_lossy().to_string();
                if !c.args.iter().any(|a| a == "--stdin" || a == "-") {
                    assert_eq!(shown["prompt"], given, "{ctx}: prompt not stored verbatim");
                }
            }
        }
    }
    integrity_ok(&env.db);
}

// ---------------------------------------------------------------------------
// Every command that writes, with a stdout that fails.

fn max_id(db: &Path, table: &str) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(
            &format!("SELECT coalesce(max(id), 0) FROM {table}"),
            [],
            |r| r.get(0),
        )
        .unwrap()
}

fn ids_above(db: &Path, table: &str, above: i64) -> Vec<i64> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut s = c
        .prepare(&format!("SELECT id FROM {table} WHERE id > ?1 ORDER BY id"))
        .unwrap();
    s.query_map([above], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

/// What a command that exited 3 committed, and how to find it in the database.
#[derive(Debug, Clone, Copy)]
enum Committed {
    /// New rows of this table, exactly the ids stderr names.
    NewIds(&'static str),
    /// `verify probe 1 1`: probe 1 of run 1 has its start and end.
    Probe,
    /// `msg purge`: every message is gone.
    Purge,
    /// `queue init`: the project database exists.
    Init,
    /// Prints nothing on stdout: exit 0, and the write happened.
    Silent,
}

struct Writer {
    bin: &'static str,
    args: &'static [&'static str],
    stdin: &'static str,
    setup: &'static [(&'static str, &'static [&'static str])],
    committed: Committed,
}

/// The database must hold exactly what stderr says was committed: exit 2
/// with nothing written, or exit 3 with stderr naming every id written (and
/// exit 0 only for commands that print nothing on stdout).
#[test]
fn a_failing_stdout_commits_exactly_what_stderr_says() {
    use Committed::*;
    const TASK: (&str, &[&str]) = ("orch-queue", &["add", "dev", "seed"]);
    const BATCH: (&str, &[&str]) = ("orch-batch", &["create"]);
    const SEND: (&str, &[&str]) = ("orch-msg", &["send", "--from", "a", "--to", "b", "hi"]);
    const RUN: (&str, &[&str]) = ("orch-verify", &["new", "-n", "2", "--sleep", "1"]);
    let writers = [
        Writer { bin: "orch-queue", args: &["add", "dev", "x"], stdin: "", setup: &[], committed: NewIds("tasks") },
        Writer {
            bin: "orch-queue",
            args: &["add", "--stdin"],
            stdin: "{\"role\":\"dev\",\"prompt\":\"a\"}\n{\"role\":\"dev\",\"prompt\":\"b\",\"after\":[1]}\n",
            setup: &[TASK],
            committed: NewIds("tasks"),
        },
        Writer { bin: "orch-queue", args: &["init"], stdin: "", setup: &[], committed: Init },
        Writer { bin: "orch-queue", args: &["cancel", "1"], stdin: "", setup: &[TASK], committed: Silent },
        Writer { bin: "orch-queue", args: &["start", "1"], stdin: "", setup: &[TASK], committed: Silent },
        Writer { bin: "orch-queue", args: &["done", "1", "--result", "ok"], stdin: "", setup: &[TASK], committed: Silent },
        Writer { bin: "orch-queue", args: &["fail", "1", "--error", "no"], stdin: "", setup: &[TASK], committed: Silent },
        Writer { bin: "orch-batch", args: &["create"], stdin: "", setup: &[TASK, TASK], committed: NewIds("batches") },
        Writer { bin: "orch-batch", args: &["release", "1"], stdin: "", setup: &[TASK, BATCH], committed: Silent },
        // Prints first, marks emitted after: never exit 3.
        Writer { bin: "orch-emit", args: &["1"], stdin: "", setup: &[TASK, BATCH], committed: Silent },
        Writer { bin: "orch-msg", args: &["send", "--from", "a", "--to", "b", "x"], stdin: "", setup: &[], committed: NewIds("messages") },
        Writer {
            bin: "orch-msg",
            args: &["send", "--from", "a", "--stdin"],
            stdin: "{\"to\":\"b\",\"body\":\"1\"}\n{\"to\":\"*\",\"body\":\"2\"}\n",
            setup: &[SEND],
            committed: NewIds("messages"),
        },
        // Claims only after printing: never exit 3.
        Writer { bin: "orch-msg", args: &["recv", "--as", "b"], stdin: "", setup: &[SEND, SEND], committed: Silent },
        Writer { bin: "orch-msg", args: &["purge", "--older-than", "0s"], stdin: "", setup: &[SEND], committed: Purge },
        Writer { bin: "orch-verify", args: &["new", "-n", "2"], stdin: "", setup: &[], committed: NewIds("verify_runs") },
        Writer { bin: "orch-verify", args: &["probe", "1", "1"], stdin: "", setup: &[RUN], committed: Probe },
    ];
    for w in &writers {
        for how in BadStdout::ALL {
            let env = Env::new();
            for (bin, args) in w.setup {
                env.ok(bin, args);
            }
            // Makes the database for every case (a no-op when setup did).
            env.db_ready();
            let before = dump(&env.db);
            let table = match w.committed {
                NewIds(t) => t,
                _ => "tasks",
            };
            let top = max_id(&env.db, table);
            let out = env.run_bad_stdout(w.bin, w.args, w.stdin.as_bytes(), how);
            let err = String::from_utf8_lossy(&out.stderr).to_string();
            let ctx = format!(
                "{} {:?} {how:?}: exit {:?}, stderr: {err}",
                w.bin,
                w.args,
                out.status.code()
            );
            assert!(!err.contains("panicked"), "{ctx}");
            let after = dump(&env.db);
            match (out.status.code(), w.committed) {
                (Some(2), _) => {
                    assert_eq!(before, after, "{ctx}: exit 2 but something was written");
                    assert!(
                        err.lines()
                            .last()
                            .unwrap()
                            .starts_with(&format!("{}: error: ", w.bin)),
                        "{ctx}"
                    );
                    if w.bin == "orch-queue" && w.args[0] == "init" {
                        assert!(!env.path().join(".orch").exists(), "{ctx}");
                    }
                }
                (Some(0), Silent) => assert_ne!(before, after, "{ctx}: exit 0 but nothing done"),
                (Some(3), c) => {
                    assert_eq!(err.lines().count(), 1, "{ctx}");
                    assert!(
                        err.contains(" committed, but the answer could not be printed"),
                        "{ctx}"
                    );
                    match c {
                        NewIds(t) => {
                            let new = ids_above(&env.db, t, top);
                            assert!(!new.is_empty(), "{ctx}");
                            assert_eq!(committed_ids(&out.stderr), new, "{ctx}");
                        }
                        Probe => {
                            assert!(err.contains("error: probe 1 of run 1 committed"), "{ctx}");
                            let done: i64 = env
                                .sql()
                                .query_row(
                                    "SELECT count(*) FROM verify_probes WHERE run_id = 1 AND idx = 1 AND finished_at IS NOT NULL",
                                    [],
                                    |r| r.get(0),
                                )
                                .unwrap();
                            assert_eq!(done, 1, "{ctx}");
                        }
                        Purge => {
                            assert!(
                                err.contains("error: the deletion of 1 message committed"),
                                "{ctx}"
                            );
                            assert_eq!(
                                ids_above(&env.db, "messages", 0),
                                Vec::<i64>::new(),
                                "{ctx}"
                            );
                        }
                        Init => assert!(env.path().join(".orch/orch.db").is_file(), "{ctx}"),
                        Silent => panic!("{ctx}: exit 3 from a command that prints nothing"),
                    }
                }
                _ => panic!("{ctx}: unexpected exit"),
            }
            integrity_ok(&env.db);
        }
    }
}
