//! orch-queue through the real binary: every verb, the JSON shapes, argument
//! parsing, `--stdin`, bad input (one stderr line, exit 2, nothing written),
//! unusable databases, the WAL bound, a closed pipe, and many processes opening
//! a brand-new file at once.

use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Stdio;

use serde_json::Value;

use crate::common::*;

#[test]
fn add_list_show_round_trip() {
    let env = Env::new();
    let id = env.add("dev", "Fix the flaky login test");
    let list = json_lines(&env.ok("orch-queue", &["list", "--json"]));
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], id);
    assert_eq!(list[0]["status"], "queued");
    assert_eq!(list[0]["description"], "Fix the flaky login test");
    let t = task(&env, id);
    assert_eq!(t["prompt"], "Fix the flaky login test");
    // The JSON shape of a task.
    let keys: Vec<&str> = t.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "id",
            "role",
            "description",
            "prompt",
            "priority",
            "after",
            "status",
            "batch",
            "created_at",
            "batched_at",
            "started_at",
            "finished_at",
            "result",
            "error",
            "exit_code"
        ]
    );
    assert!(t["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(t["batched_at"].is_null());
    // The human views mention the task.
    assert!(env
        .ok("orch-queue", &["list"])
        .contains("Fix the flaky login test"));
    assert!(env
        .ok("orch-queue", &["show", &id.to_string()])
        .contains("role:        dev"));
}

#[test]
fn add_takes_options_in_any_order_and_prompts_that_start_with_a_dash() {
    let env = Env::new();
    let first = env.add("dev", "first");
    let cases: &[(&[&str], &str, &str, i64, bool)] = &[
        (
            &["dev", "-d", "Short desc", "do", "it"],
            "do it",
            "Short desc",
            0,
            false,
        ),
        (&["dev", "do", "it", "-p", "3"], "do it", "do it", 3, false),
        (
            &["-p", "-2", "dev", "do", "--after", "1", "it"],
            "do it",
            "do it",
            -2,
            true,
        ),
        (
            &["dev", "x", "-d", "D", "y", "--after", "1", "-p", "5"],
            "x y",
            "D",
            5,
            true,
        ),
        (
            &["dev", "-rf is a prompt"],
            "-rf is a prompt",
            "-rf is a prompt",
            0,
            false,
        ),
        (
            &["dev", "-5 degrees outside", "-p", "1"],
            "-5 degrees outside",
            "-5 degrees outside",
            1,
            false,
        ),
        (
            &["dev", "--> an arrow"],
            "--> an arrow",
            "--> an arrow",
            0,
            false,
        ),
        (
            &["dev", "-p", "4", "--", "-v", "--help"],
            "-v --help",
            "-v --help",
            4,
            false,
        ),
        (
            &[
                "--db",
                env.db.to_str().unwrap(),
                "add",
                "dev",
                "global",
                "db",
            ],
            "global db",
            "global db",
            0,
            false,
        ),
    ];
    for (args, prompt, desc, prio, after) in cases {
        let mut full = vec!["add"];
        if args[0] == "--db" {
            full.clear();
        }
        full.extend_from_slice(args);
        let id: i64 = env.ok("orch-queue", &full).trim().parse().unwrap();
        let t = task(&env, id);
        assert_eq!(t["prompt"], *prompt, "{args:?}");
        assert_eq!(t["description"], *desc, "{args:?}");
        assert_eq!(t["priority"], *prio, "{args:?}");
        let want: Vec<i64> = if *after { vec![first] } else { vec![] };
        assert_eq!(t["after"], serde_json::json!(want), "{args:?}");
    }
    // Option-shaped words stay options: a typo is an error, not prompt text.
    let before = dump(&env.db);
    for args in [
        &["add", "dev", "-x"][..],
        &["add", "dev", "fix", "--priorty", "3"],
        &["add", "dev", "-p"],
    ] {
        let err = assert_error(&env.run("orch-queue", args), "orch-queue");
        assert!(err.contains("--help"), "{err}");
    }
    assert_eq!(before, dump(&env.db));
}

#[test]
fn prompt_from_stdin_is_kept_byte_for_byte() {
    let env = Env::new();
    let prompt = "line one\n\"quoted\" \\ `tick` \")\n\tשלום 👋\n";
    let id: i64 = env
        .ok_with(
            "orch-queue",
            &["add", "dev", "-d", "From stdin", "-"],
            prompt.as_bytes(),
        )
        .trim()
        .parse()
        .unwrap();
    assert_eq!(task(&env, id)["prompt"], prompt);
}

#[test]
fn every_status_verb() {
    let env = Env::new();
    let a = env.add("dev", "task a");
    let b = env.add("dev", "task b");
    let c = env.add("dev", "task c");
    let d = env.add("dev", "task d");
    // start, done with a result on stdin
    env.ok("orch-queue", &["start", &a.to_string()]);
    assert_eq!(task(&env, a)["status"], "running");
    assert!(task(&env, a)["started_at"].is_string());
    env.ok_with(
        "orch-queue",
        &["done", &a.to_string(), "--result", "-"],
        "all good\n".as_bytes(),
    );
    let t = task(&env, a);
    assert_eq!(t["status"], "done");
    assert_eq!(t["result"], "all good\n");
    assert!(t["finished_at"].is_string());
    // done without start, with an inline result
    env.ok(
        "orch-queue",
        &["done", &b.to_string(), "--result", "inline"],
    );
    assert_eq!(task(&env, b)["result"], "inline");
    // fail with an error and exit code
    env.ok(
        "orch-queue",
        &[
            "fail",
            &c.to_string(),
            "--error",
            "timed out",
            "--exit-code",
            "124",
        ],
    );
    let t = task(&env, c);
    assert_eq!(
        (
            t["status"].as_str(),
            t["error"].as_str(),
            t["exit_code"].as_i64()
        ),
        (Some("failed"), Some("timed out"), Some(124))
    );
    // status only moves forward
    let before = dump(&env.db);
    let (a_s, c_s, d_s) = (a.to_string(), c.to_string(), d.to_string());
    for args in [
        vec!["start", &a_s],
        vec!["done", &a_s],
        vec!["fail", &c_s],
        vec!["cancel", &a_s],
        vec!["cancel", &d_s, &a_s],
    ] {
        assert_error(&env.run("orch-queue", &args), "orch-queue");
    }
    assert_eq!(
        before,
        dump(&env.db),
        "a refused cancel of several ids cancels none"
    );
    env.ok("orch-queue", &["cancel", &d.to_string()]);
    assert_eq!(status(&env, d), "cancelled");
    // list filters
    let ids = |args: &[&str]| -> Vec<i64> {
        let mut full = vec!["list", "--json"];
        full.extend_from_slice(args);
        json_lines(&env.ok("orch-queue", &full))
            .iter()
            .map(|t| t["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(ids(&[]), vec![a, b, c, d]);
    assert_eq!(ids(&["--status", "done"]), vec![a, b]);
    assert_eq!(ids(&["--status", "cancelled"]), vec![d]);
    assert_eq!(ids(&["--role", "nobody"]), Vec::<i64>::new());
    let e = env.add("ops", "task e");
    assert_eq!(ids(&["--role", "ops"]), vec![e]);
    assert_eq!(ids(&["--ready"]), vec![e]);
    // stats
    let mut s = json(&env.ok("orch-queue", &["stats", "--json"]));
    // No agent reported a cost: no ledger (never an invented zero).
    assert!(s.as_object_mut().unwrap().remove("spend").is_none());
    assert_eq!(
        s,
        serde_json::json!({"queued": 1, "ready": 1, "batched": 0, "running": 0, "done": 2, "failed": 1, "cancelled": 1, "total": 5})
    );
    assert!(env.ok("orch-queue", &["stats"]).contains("total      5"));
}

#[test]
fn stdin_adds_all_or_nothing_with_keys() {
    let env = Env::new();
    let base = env.add("dev", "existing");
    let input = format!(
        "{{\"role\":\"dev\",\"prompt\":\"build\",\"key\":\"build\"}}\n\
         \n\
         {{\"role\":\"tester\",\"prompt\":\"test it\",\"after\":[\"build\",{base}],\"priority\":7,\"description\":\"Run the tests\"}}\n\
         {{\"prompt\":\"ship\",\"after\":[\"test\"]}}\n\
         {{\"role\":\"dev\",\"prompt\":\"docs\",\"key\":\"test\",\"after\":[\"build\"]}}\n"
    );
    let out = env.ok_with(
        "orch-queue",
        &["add", "--stdin", "--role", "ops"],
        input.as_bytes(),
    );
    let ids: Vec<i64> = out.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(ids.len(), 4, "one id per task line, in input order: {out}");
    let t = task(&env, ids[1]);
    assert_eq!(t["role"], "tester");
    assert_eq!(t["priority"], 7);
    assert_eq!(t["description"], "Run the tests");
    let mut after: Vec<i64> = serde_json::from_value(t["after"].clone()).unwrap();
    after.sort();
    let mut want = vec![ids[0], base];
    want.sort();
    assert_eq!(after, want);
    assert_eq!(
        task(&env, ids[2])["role"],
        "ops",
        "--role fills a missing role"
    );
    assert_eq!(
        task(&env, ids[2])["after"],
        serde_json::json!([ids[3]]),
        "a key may name a later line"
    );
}

#[test]
fn stdin_cycle_is_refused_and_named() {
    let env = Env::new();
    let before = dump(&env.db_ready());
    let input = "{\"role\":\"dev\",\"prompt\":\"a\",\"key\":\"alpha\",\"after\":[\"gamma\"]}\n\
                 {\"role\":\"dev\",\"prompt\":\"b\",\"key\":\"beta\",\"after\":[\"alpha\"]}\n\
                 {\"role\":\"dev\",\"prompt\":\"c\",\"key\":\"gamma\",\"after\":[\"beta\"]}\n";
    let err = assert_error(
        &env.run_with("orch-queue", &["add", "--stdin"], input.as_bytes()),
        "orch-queue",
    );
    assert!(err.contains("cycle"), "{err}");
    for k in ["alpha", "beta", "gamma"] {
        assert!(err.contains(k), "the cycle is named: {err}");
    }
    assert_eq!(before, dump(&env.db));
    // A task waiting on itself, and a key nobody has.
    for input in [
        "{\"role\":\"dev\",\"prompt\":\"a\",\"key\":\"me\",\"after\":[\"me\"]}\n",
        "{\"role\":\"dev\",\"prompt\":\"a\",\"after\":[\"ghost\"]}\n",
        "{\"role\":\"dev\",\"prompt\":\"a\",\"after\":[999]}\n",
    ] {
        assert_error(
            &env.run_with("orch-queue", &["add", "--stdin"], input.as_bytes()),
            "orch-queue",
        );
    }
    assert_eq!(before, dump(&env.db));
}

#[test]
fn bad_json_on_line_7_of_10_writes_nothing() {
    let env = Env::new();
    let before = dump(&env.db_ready());
    let mut input = String::new();
    for i in 1..=10 {
        if i == 7 {
            input.push_str("{\"role\":\"dev\",\"prompt\":\"seven\",}\n");
        } else {
            input.push_str(&format!("{{\"role\":\"dev\",\"prompt\":\"task {i}\"}}\n"));
        }
    }
    let err = assert_error(
        &env.run_with("orch-queue", &["add", "--stdin"], input.as_bytes()),
        "orch-queue",
    );
    assert!(err.contains("line 7"), "{err}");
    assert_eq!(before, dump(&env.db));
    // The same for a line that is JSON but not a valid task.
    for bad in [
        "{\"role\":\"dev\"}",
        "{\"role\":\"no spaces\",\"prompt\":\"x\"}",
        "{\"role\":\"dev\",\"prompt\":\"\"}",
        "{\"role\":\"dev\",\"prompt\":\"x\",\"colour\":\"red\"}",
        "[1,2]",
    ] {
        let input = input.replacen("{\"role\":\"dev\",\"prompt\":\"seven\",}", bad, 1);
        let err = assert_error(
            &env.run_with("orch-queue", &["add", "--stdin"], input.as_bytes()),
            "orch-queue",
        );
        assert!(err.contains("line 7"), "{bad}: {err}");
    }
    assert_eq!(before, dump(&env.db));
}

impl Env {
    /// Makes sure the database exists (with its schema) and returns its path.
    pub fn db_ready(&self) -> std::path::PathBuf {
        self.ok("orch-queue", &["init", "--db", self.db.to_str().unwrap()]);
        self.db.clone()
    }
}

#[test]
fn bad_input_is_one_line_exit_2_and_writes_nothing() {
    let env = Env::new();
    let id = env.add("dev", "keep me");
    let before = dump(&env.db);
    // Over-long prompts: as words (each argument is limited to 128 KiB by the
    // kernel), as `-` on stdin, and as a JSON line.
    let word = "x".repeat(120 * 1024);
    let mut long_args = vec!["add", "dev"];
    for _ in 0..9 {
        long_args.push(&word);
    }
    let long = "y".repeat((1 << 20) + 1);
    let long_line = format!("{{\"role\":\"dev\",\"prompt\":\"{long}\"}}\n");
    let bad_utf8_arg = std::ffi::OsStr::from_bytes(b"fix \xff\xfe this");
    let long_role = "r".repeat(65);
    let id_s = id.to_string();
    let cases: Vec<(Vec<&std::ffi::OsStr>, Vec<u8>, &str)> = vec![
        (osv(&["add", "dev", ""]), vec![], "empty prompt"),
        (osv(&["add", "dev", "  \n "]), vec![], "empty prompt"),
        (osv(&["add", "dev", "-"]), b"   ".to_vec(), "empty prompt"),
        (osv(&long_args), vec![], "limit"),
        (
            osv(&["add", "dev", "-"]),
            long.as_bytes().to_vec(),
            "larger",
        ),
        (osv(&["add", "--stdin"]), long_line.into_bytes(), "limit"),
        (
            vec!["add".as_ref(), "dev".as_ref(), bad_utf8_arg],
            vec![],
            "UTF-8",
        ),
        (osv(&["add", "dev", "-"]), b"caf\xe9".to_vec(), "UTF-8"),
        (
            osv(&["add", "--stdin"]),
            b"{\"role\":\"dev\",\"prompt\":\"caf\xe9\"}\n".to_vec(),
            "UTF-8",
        ),
        (osv(&["add", "../etc", "x"]), vec![], "bad role"),
        (osv(&["add", "a b", "x"]), vec![], "bad role"),
        (osv(&["add", &long_role, "x"]), vec![], "bad role"),
        (
            osv(&["add", "--stdin", "--role", "no way"]),
            b"{\"prompt\":\"x\"}\n".to_vec(),
            "bad role",
        ),
        (osv(&["add", "dev", "x", "--after", "99"]), vec![], "99"),
        (
            osv(&["add", "dev", "x", "--after", "0"]),
            vec![],
            "positive",
        ),
        (
            osv(&["add", "dev", "x", "-d", "two\nlines"]),
            vec![],
            "description",
        ),
        (osv(&["add", "--stdin"]), vec![], "no tasks"),
        (osv(&["show", "99"]), vec![], "task 99 not found"),
        (osv(&["cancel", "99"]), vec![], "task 99 not found"),
        (osv(&["cancel", &id_s, "99"]), vec![], "task 99 not found"),
        (osv(&["start", "99"]), vec![], "task 99 not found"),
        (osv(&["done", "99"]), vec![], "task 99 not found"),
        (osv(&["fail", "99"]), vec![], "task 99 not found"),
        (osv(&["show", "abc"]), vec![], "invalid value"),
        (
            osv(&["list", "--status", "sleeping"]),
            vec![],
            "invalid value",
        ),
        (osv(&["frobnicate"]), vec![], "unrecognized subcommand"),
        (osv(&["frobnicate"]), vec![], "(see orch-queue --help)"),
        // A mistake inside a verb points at that verb's help.
        (osv(&["add", "dev"]), vec![], "(see orch-queue add --help)"),
        (osv(&["done"]), vec![], "(see orch-queue done --help)"),
    ];
    for (args, stdin, want) in cases {
        let mut c = env.cmd("orch-queue");
        c.args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&stdin);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().chars().take(30).collect())
            .collect();
        let err = assert_error(&out, "orch-queue");
        assert!(err.contains(want), "{shown:?}: expected {want:?} in {err}");
        assert!(out.stdout.is_empty(), "{shown:?}: stdout must stay empty");
        assert_eq!(before, dump(&env.db), "{shown:?} wrote to the database");
    }
}

fn osv<'a>(args: &[&'a str]) -> Vec<&'a std::ffi::OsStr> {
    args.iter().map(|a| std::ffi::OsStr::new(*a)).collect()
}

#[test]
fn unusable_databases_are_refused_and_left_untouched() {
    let env = Env::new();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "text.db",
            b"just some notes\n".to_vec(),
            "not an orch database",
        ),
        (
            "random.db",
            (0..20_000u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
                .collect(),
            "not an orch database",
        ),
    ];
    for (name, bytes, want) in cases {
        let p = env.path().join(name);
        std::fs::write(&p, &bytes).unwrap();
        for args in [&["list"][..], &["add", "dev", "x"], &["stats"]] {
            let mut full = vec!["--db", p.to_str().unwrap()];
            full.extend_from_slice(args);
            let err = assert_error(&env.run("orch-queue", &full), "orch-queue");
            assert!(err.contains(want), "{err}");
            assert_eq!(std::fs::read(&p).unwrap(), bytes, "{name} was modified");
        }
        assert!(!env.path().join(format!("{name}-wal")).exists());
    }
    // Another program's SQLite file.
    let other = env.path().join("other.db");
    let c = rusqlite::Connection::open(&other).unwrap();
    c.execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('mine');")
        .unwrap();
    drop(c);
    let bytes = std::fs::read(&other).unwrap();
    let err = assert_error(
        &env.run(
            "orch-queue",
            &["--db", other.to_str().unwrap(), "add", "dev", "x"],
        ),
        "orch-queue",
    );
    assert!(err.contains("not an orch database"), "{err}");
    assert_eq!(std::fs::read(&other).unwrap(), bytes);
    // A database from a newer orch.
    let newer = env.path().join("newer.db");
    let newer_s = newer.to_str().unwrap();
    env.ok("orch-queue", &["--db", newer_s, "add", "dev", "x"]);
    let c = rusqlite::Connection::open(&newer).unwrap();
    c.execute_batch(
        "PRAGMA wal_checkpoint(TRUNCATE); PRAGMA user_version = 99; PRAGMA journal_mode = DELETE;",
    )
    .unwrap();
    drop(c);
    let bytes = std::fs::read(&newer).unwrap();
    for args in [&["add", "dev", "y"][..], &["list"], &["cancel", "1"]] {
        let mut full = vec!["--db", newer_s];
        full.extend_from_slice(args);
        let err = assert_error(&env.run("orch-queue", &full), "orch-queue");
        assert!(err.contains("newer"), "{err}");
        assert!(err.contains("99"), "{err}");
    }
    assert_eq!(
        std::fs::read(&newer).unwrap(),
        bytes,
        "the newer database was modified"
    );
    // A directory.
    let err = assert_error(
        &env.run(
            "orch-queue",
            &["--db", env.path().to_str().unwrap(), "list"],
        ),
        "orch-queue",
    );
    assert!(err.contains("directory"), "{err}");
}

#[test]
fn where_and_init_follow_the_resolution_rules() {
    let env = Env::new();
    let where_json = |c: &mut std::process::Command| -> Value {
        let out = c.args(["where", "--json"]).output().unwrap();
        assert_code(&out, 0);
        json(&String::from_utf8(out.stdout).unwrap())
    };
    // ORCH_DB
    let w = where_json(&mut env.cmd("orch-queue"));
    assert_eq!(
        (w["path"].as_str(), w["source"].as_str()),
        (env.db.to_str(), Some("env"))
    );
    // --db beats ORCH_DB
    let w = where_json(env.cmd("orch-queue").args(["--db", "/x/y.db"]));
    assert_eq!(
        (w["path"].as_str(), w["source"].as_str()),
        (Some("/x/y.db"), Some("flag"))
    );
    // No flag, no env: the per-user default...
    let project = env.path().join("proj");
    let sub = project.join("a/b");
    std::fs::create_dir_all(&sub).unwrap();
    let w = where_json(
        env.cmd("orch-queue")
            .env_remove("ORCH_DB")
            .current_dir(&sub),
    );
    assert_eq!(w["source"], "user");
    assert!(
        w["path"]
            .as_str()
            .unwrap()
            .starts_with(env.home().to_str().unwrap()),
        "{w}"
    );
    // ...until `init` makes .orch/orch.db, found from any subdirectory.
    let out = env
        .cmd("orch-queue")
        .env_remove("ORCH_DB")
        .current_dir(&project)
        .arg("init")
        .output()
        .unwrap();
    assert_code(&out, 0);
    let made = project.join(".orch/orch.db");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        made.to_str().unwrap()
    );
    let w = where_json(
        env.cmd("orch-queue")
            .env_remove("ORCH_DB")
            .current_dir(&sub),
    );
    assert_eq!(
        (w["path"].as_str(), w["source"].as_str()),
        (made.to_str(), Some("project"))
    );
    // Files and directories orch creates are private.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&made), 0o600);
    assert_eq!(mode(&project.join(".orch")), 0o700);
    let out = env
        .cmd("orch-queue")
        .env_remove("ORCH_DB")
        .current_dir(&sub)
        .args(["add", "dev", "here"])
        .output()
        .unwrap();
    assert_code(&out, 0);
    for suffix in ["-wal", "-shm"] {
        let p = project.join(format!(".orch/orch.db{suffix}"));
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{suffix}");
        }
    }
    let c = rusqlite::Connection::open(&made).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
    // The per-user database is created private too, with its directories.
    let out = env
        .cmd("orch-queue")
        .env_remove("ORCH_DB")
        .args(["add", "dev", "user"])
        .output()
        .unwrap();
    assert_code(&out, 0);
    let user_db = env.home().join(".local/share/orch/orch.db");
    assert_eq!(mode(&user_db), 0o600);
    assert_eq!(mode(user_db.parent().unwrap()), 0o700);
}

#[test]
fn a_closed_stdout_pipe_ends_quietly_with_0() {
    let env = Env::new();
    let lines: String = (0..3000)
        .map(|i| format!("{{\"role\":\"dev\",\"prompt\":\"task number {i} with some words\"}}\n"))
        .collect();
    env.ok_with("orch-queue", &["add", "--stdin"], lines.as_bytes());
    for args in [&["list"][..], &["list", "--json"]] {
        let mut child = env
            .cmd("orch-queue")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut one = [0u8; 1];
        stdout.read_exact(&mut one).unwrap();
        drop(stdout);
        let out = child.wait_with_output().unwrap();
        assert_code(&out, 0);
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn wal_stays_bounded_over_many_adds() {
    let env = Env::new();
    let wal = env.path().join("test.db-wal");
    let mut largest = 0;
    let lines: String = (0..2000)
        .map(|i| format!("{{\"role\":\"dev\",\"prompt\":\"bulk {i}\"}}\n"))
        .collect();
    env.ok_with("orch-queue", &["add", "--stdin"], lines.as_bytes());
    for i in 0..150 {
        env.add("dev", &format!("one at a time {i}"));
        largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
    }
    // Past the limit by at most what one add writes; 150 adds write ~3 MiB.
    let limit = orch_core::db::WAL_TRUNCATE_AT + 128 * 1024;
    assert!(largest <= limit, "the WAL grew to {largest} bytes");
    let n: i64 = env
        .sql()
        .query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2150);
}

#[test]
fn a_hundred_processes_open_a_new_file_at_once() {
    let env = Env::new();
    // Each process blocks reading its prompt from stdin; closing all stdins
    // at once sends them at the brand-new file together.
    let mut children = Vec::new();
    for i in 0..100 {
        let args: &[&str] = if i % 4 == 0 {
            &["stats", "--json"]
        } else {
            &["add", "dev", "-"]
        };
        let mut c = env.cmd("orch-queue");
        c.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        children.push((args[0], c.spawn().unwrap()));
    }
    let mut stdins: Vec<_> = children
        .iter_mut()
        .map(|(_, c)| c.stdin.take().unwrap())
        .collect();
    for (i, s) in stdins.iter_mut().enumerate() {
        let _ = s.write_all(format!("prompt {i}").as_bytes());
    }
    drop(stdins);
    let mut adds = 0;
    for (verb, c) in children {
        let out = c.wait_with_output().unwrap();
        if verb == "stats" && out.status.code() == Some(2) {
            // A read that came before every writer finds no database (and makes none).
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("no database at"), "{err}");
            continue;
        }
        assert_code(&out, 0);
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if verb == "add" {
            adds += 1;
        }
    }
    let c = env.sql();
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, orch_core::db::schema::current_version());
    let n: i64 = c
        .query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, adds);
    // One schema: the same objects as a file made by a single process.
    let schema = |c: &rusqlite::Connection| -> Vec<String> {
        c.prepare("SELECT type || ' ' || name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY 1")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let single = Env::new();
    single.db_ready();
    assert_eq!(schema(&c), schema(&single.sql()));
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

fn task_ids(env: &Env) -> Vec<i64> {
    let c = env.sql();
    let mut s = c.prepare("SELECT id FROM tasks ORDER BY id").unwrap();
    s.query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

/// Item 6: output that fails after a commit is exit 3 with the ids on stderr,
/// never exit 2; a stdout that is known to be unusable is refused first.
#[test]
fn item6_add_after_a_commit_is_exit_3_with_the_ids() {
    let env = Env::new();
    let out = env.run_bad_stdout("orch-queue", &["add", "dev", "one"], b"", BadStdout::Full);
    assert_code(&out, 3);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("orch-queue: error: task 1 committed, but the answer could not be printed"),
        "{err}"
    );
    assert_eq!(task_ids(&env), committed_ids(&out.stderr));

    let lines = "{\"role\":\"dev\",\"prompt\":\"a\"}\n{\"role\":\"dev\",\"prompt\":\"b\"}\n";
    let out = env.run_bad_stdout(
        "orch-queue",
        &["add", "--stdin"],
        lines.as_bytes(),
        BadStdout::Full,
    );
    assert_code(&out, 3);
    assert_eq!(committed_ids(&out.stderr), vec![2, 3]);
    assert_eq!(task_ids(&env), vec![1, 2, 3]);

    // Closed, or a pipe with no reader: refused before anything is written.
    for how in [BadStdout::Closed, BadStdout::NoReader] {
        let out = env.run_bad_stdout("orch-queue", &["add", "dev", "two"], b"", how);
        assert_error(&out, "orch-queue");
        let out = env.run_bad_stdout("orch-queue", &["add", "--stdin"], lines.as_bytes(), how);
        assert_error(&out, "orch-queue");
    }
    assert_eq!(task_ids(&env), vec![1, 2, 3]);
}

fn deps(env: &Env) -> i64 {
    env.sql()
        .query_row("SELECT count(*) FROM task_deps", [], |r| r.get(0))
        .unwrap()
}

/// Item 11: `--after` the id the task itself would get is refused inside the
/// transaction, in `add` and `add --stdin`, as is a cycle through such an id.
#[test]
fn item11_a_task_cannot_wait_for_itself() {
    let env = Env::new();
    env.add("dev", "one");
    let out = env.run("orch-queue", &["add", "dev", "--after", "2", "two"]);
    let err = assert_error(&out, "orch-queue");
    assert!(err.contains("itself"), "{err}");
    let out = env.run_with(
        "orch-queue",
        &["add", "--stdin"],
        b"{\"role\":\"dev\",\"prompt\":\"a\",\"after\":[1]}\n{\"role\":\"dev\",\"prompt\":\"b\",\"after\":[3]}\n",
    );
    let err = assert_error(&out, "orch-queue");
    assert!(err.contains("line 2") && err.contains("itself"), "{err}");
    // Line 1 waits for line 2 by key, line 2 for line 1 by the id it would get.
    let out = env.run_with(
        "orch-queue",
        &["add", "--stdin"],
        b"{\"role\":\"dev\",\"prompt\":\"a\",\"after\":[\"b\"]}\n{\"role\":\"dev\",\"prompt\":\"b\",\"key\":\"b\",\"after\":[2]}\n",
    );
    let err = assert_error(&out, "orch-queue");
    assert!(err.contains("cycle"), "{err}");
    assert_eq!(task_ids(&env), vec![1]);
    assert_eq!(deps(&env), 0);
    // The ids were not used up: the next task gets 2 and may wait for 1.
    let out = env.ok("orch-queue", &["add", "dev", "--after", "1", "two"]);
    assert_eq!(out.trim(), "2");
}

/// Item 11: blocked tasks are named when they are made (a dependency on a
/// failed or cancelled task) and when a `cancel` or `fail` blocks them, and
/// counted by `orch-batch create` and `orch status`.
#[test]
fn item11_blocked_tasks_are_named_and_counted() {
    let env = Env::new();
    env.add("dev", "one"); // 1
    env.ok("orch-queue", &["add", "dev", "--after", "1", "two"]); // 2
    env.ok("orch-queue", &["add", "dev", "--after", "2", "three"]); // 3
    let out = env.run("orch-queue", &["cancel", "1"]);
    assert_code(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("note: tasks 2-3 can never become ready")
            && err.contains("task 1, which is cancelled"),
        "{err}"
    );
    let out = env.run("orch-queue", &["add", "dev", "--after", "1", "four"]);
    assert_code(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("note: task 4 can never become ready"), "{err}");
    let out = env.run_with(
        "orch-queue",
        &["add", "--stdin"],
        b"{\"role\":\"dev\",\"prompt\":\"five\",\"after\":[3]}\n",
    );
    assert_code(&out, 0);
    assert!(String::from_utf8_lossy(&out.stderr).contains("note: task 5 can never become ready"));

    let out = env.run("orch-batch", &["create"]);
    assert_code(&out, 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nothing ready to batch (4 queued tasks are blocked"),
        "{err}"
    );
    let status = env.ok("orch", &["status"]);
    assert!(status.contains("4 queued (0 ready, 4 blocked)"), "{status}");
    let stats: Value = serde_json::from_str(&env.ok("orch-queue", &["stats", "--json"])).unwrap();
    assert_eq!(stats["blocked"], 4);

    // `fail` that leaves a task waiting names it.
    env.add("dev", "six"); // 6
    env.ok("orch-queue", &["add", "dev", "--after", "6", "seven"]); // 7
    let out = env.run("orch-queue", &["fail", "6", "--error", "broke"]);
    assert_code(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("note: task 7 can never become ready")
            && err.contains("task 6, which is failed"),
        "{err}"
    );
    // Nothing blocked, no note.
    let out = env.run("orch-queue", &["cancel", "7"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "cancelled 1 task"
    );
}

#[test]
fn item15_cancel_names_a_task_twice_and_cancels_it_once() {
    let env = Env::new();
    let a = env.add("dev", "one");
    let b = env.add("dev", "two");
    let out = env.run(
        "orch-queue",
        &["cancel", &a.to_string(), &a.to_string(), &b.to_string()],
    );
    assert_code(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cancelled 2 tasks"), "{err}");
    assert_eq!(
        (status(&env, a), status(&env, b)),
        ("cancelled".into(), "cancelled".into())
    );
}

#[test]
fn item15_a_json_array_line_is_told_a_line_must_be_an_object() {
    let env = Env::new();
    for line in [r#"["dev","fix the bug"]"#, r#""dev""#, "42"] {
        let input = format!("{{\"role\":\"dev\",\"prompt\":\"fine\"}}\n{line}\n");
        let err = assert_error(
            &env.run_with("orch-queue", &["add", "--stdin"], input.as_bytes()),
            "orch-queue",
        );
        assert!(
            err.contains("line 2: a line must be a JSON object"),
            "{err}"
        );
    }
    let n: i64 = env
        .sql()
        .query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))
        .unwrap_or(0);
    assert_eq!(n, 0, "nothing written");
}

/// One span parser behind every flag: a bare number is seconds everywhere
/// (`--until 60`, `--stale-after 7200`, `--older-than 60` were refused
/// before), units as before, and a negative span is refused with nothing written.
#[test]
fn every_span_flag_takes_bare_seconds() {
    let env = Env::new();
    let id = env.add("dev", "x").to_string();
    for (bin, args) in [
        ("orch-batch", &["create", "--stale-after", "7200"][..]),
        ("orch", &["status", "--stalled-after", "600"]),
        ("orch-events", &["--since", "60"]),
        ("orch-queue", &["logs", &id, "--since", "60"]),
        ("orch-msg", &["purge", "--older-than", "60"]),
        ("orch-verify", &["session", "--since", "60", "--gap", "30"]),
    ] {
        let out = env.run(bin, args);
        assert!(
            out.status.code() != Some(2),
            "{bin} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = env.run("orch-queue", &["pause", "--until", "-60"]);
    assert_error(&out, "orch-queue");
    assert!(!env.ok("orch", &["status"]).contains("paused"));
    env.ok("orch-queue", &["pause", "--until", "60"]);
    let st = env.ok("orch", &["status"]);
    assert!(st.contains("paused"), "{st}");
}

#[test]
fn spans_over_a_hundred_years_are_refused_and_nothing_is_lost() {
    let env = Env::new();
    let id = env.add("dev", "x").to_string();
    env.ok(
        "orch-msg",
        &["send", "--from", "lead", "--to", "worker", "keep me"],
    );
    let cases: &[(&str, &[&str])] = &[
        ("orch-queue", &["pause", "--until", "9223372036854775s"]),
        ("orch-queue", &["pause", "--until", "18446744073709551s"]),
        ("orch-queue", &["pause", "--until", "8000y"]),
        ("orch-events", &["--since", "9223372036854776s"]),
        ("orch-queue", &["logs", &id, "--since", "9223372036854776s"]),
        ("orch-verify", &["session", "--since", "9223372036854776s"]),
        ("orch-msg", &["purge", "--older-than", "18446744073709551s"]),
        ("orch-batch", &["export", "--lease", "18446744073709551s"]),
        (
            "orch-run",
            &["1", "--timeout", "18446744073709551s", "--", "true"],
        ),
        (
            "orch-msg",
            &["recv", "--as", "worker", "--wait", "9223372036854775s"],
        ),
    ];
    for (bin, args) in cases {
        let out = env.run(bin, args);
        let err = assert_error(&out, bin);
        assert!(err.contains("100 years"), "{bin} {args:?}: {err}");
    }
    // Nothing paused, nothing purged, nothing dispatched.
    let st = env.ok("orch", &["status"]);
    assert!(!st.contains("paused"), "{st}");
    let left: i64 = env
        .sql()
        .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 1);
    let batches: i64 = env
        .sql()
        .query_row("SELECT count(*) FROM batches", [], |r| r.get(0))
        .unwrap();
    assert_eq!(batches, 0);
    // 100 years is still a span.
    env.ok("orch-queue", &["pause", "--until", "100y"]);
    assert!(env.ok("orch", &["status"]).contains("paused"));
}
