//! Every command that writes, with a stdout that fails: what stderr says was
//! committed is exactly what the database holds.

use std::path::Path;

use crate::common::*;

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
    /// `queue limit 3`: the limit is 3.
    Limit,
    /// `export --claude-tasks`: the task list holds task 1.
    ClaudeTasks,
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
    const PAUSE: (&str, &[&str]) = ("orch-queue", &["pause"]);
    const FAIL: (&str, &[&str]) = ("orch-queue", &["fail", "1", "--error", "no"]);
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
        Writer { bin: "orch-queue", args: &["limit", "3"], stdin: "", setup: &[], committed: Limit },
        Writer { bin: "orch-queue", args: &["pause"], stdin: "", setup: &[], committed: Silent },
        Writer { bin: "orch-queue", args: &["resume"], stdin: "", setup: &[PAUSE], committed: Silent },
        Writer { bin: "orch-queue", args: &["retry", "1"], stdin: "", setup: &[TASK, FAIL], committed: Silent },
        Writer { bin: "orch-queue", args: &["export", "--claude-tasks", "l"], stdin: "", setup: &[TASK], committed: ClaudeTasks },
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
                        Limit => {
                            assert!(err.contains("error: the limit of 3 committed"), "{ctx}");
                            let limit: String = env
                                .sql()
                                .query_row(
                                    "SELECT value FROM settings WHERE key = 'limit'",
                                    [],
                                    |r| r.get(0),
                                )
                                .unwrap();
                            assert_eq!(limit, "3", "{ctx}");
                        }
                        ClaudeTasks => {
                            assert!(err.contains("1 tasks were exported"), "{ctx}");
                            let file = env.home().join(".claude/tasks/l/1.json");
                            assert!(file.is_file(), "{ctx}");
                        }
                        Silent => panic!("{ctx}: exit 3 from a command that prints nothing"),
                    }
                }
                _ => panic!("{ctx}: unexpected exit"),
            }
            integrity_ok(&env.db);
        }
    }
}

/// A stderr that cannot be written (`2>/dev/full`) loses the message, not the
/// exit code: a usage error is still 2 and a runtime error still 2, never a
/// panic's 101.
#[test]
fn a_full_stderr_keeps_the_exit_code() {
    let env = Env::new();
    env.add("dev", "seed");
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    for bin in [
        "orch",
        "orch-queue",
        "orch-batch",
        "orch-emit",
        "orch-verify",
        "orch-hook",
        "orch-msg",
        "orch-mcp",
        "orch-run",
        "orch-land",
        "orch-events",
    ] {
        let out = env
            .cmd(bin)
            .arg("--no-such-flag")
            .stderr(full())
            .output()
            .unwrap();
        // orch-hook answers a usage error with 1, Claude Code's non-blocking
        // hook error, so a broken hook entry never blocks a tool call.
        let want = if bin == "orch-hook" { 1 } else { 2 };
        assert_eq!(out.status.code(), Some(want), "{bin} --no-such-flag");
    }
    for (bin, args) in [
        ("orch-queue", &["show", "999"][..]),
        ("orch-batch", &["report", "999"]),
        ("orch-emit", &["999"]),
        ("orch-msg", &["send", "--to", "", "x"]),
    ] {
        let out = env.cmd(bin).args(args).stderr(full()).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bin} {args:?}");
    }
}

/// /dev/null opened for reading and writing is what a closed stdout (`>&-`)
/// becomes, and Python's `DEVNULL` opens it the same way: refused before
/// anything is written, with the way to discard on purpose; /dev/null opened
/// for writing (`>/dev/null`) takes the answer and drops it.
#[test]
fn dev_null_read_write_is_refused_like_a_closed_stdout_and_write_only_works() {
    let env = Env::new();
    let run = |bin: &str, args: &[&str], read: bool| {
        let null = std::fs::OpenOptions::new()
            .read(read)
            .write(true)
            .open("/dev/null")
            .unwrap();
        let mut c = env.cmd(bin);
        c.args(args)
            .stdout(std::process::Stdio::from(null))
            .stderr(std::process::Stdio::piped());
        c.output().unwrap()
    };
    env.add("dev", "seed");
    let before = dump(&env.db);
    for (bin, args) in [
        ("orch-queue", &["add", "dev", "x"][..]),
        ("orch-batch", &["create"]),
        ("orch-msg", &["send", "--from", "a", "--to", "b", "hi"]),
    ] {
        let err = assert_error(&run(bin, args, true), bin);
        assert!(
            err.contains("stdout is closed") && err.contains(">/dev/null"),
            "{err}"
        );
    }
    assert_eq!(dump(&env.db), before, "nothing written");
    assert_code(&run("orch-queue", &["add", "dev", "x"], false), 0);
    assert_eq!(ids_above(&env.db, "tasks", 0), [1, 2]);
}
