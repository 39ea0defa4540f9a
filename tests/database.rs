//! Which file a command opens and how: reads never create a database, a
//! broken `.orch/` is an error, and files that can never be a database
//! (hard-linked, special, dangling symlinks) are refused by name; an empty
//! file adopted as the database is made private first.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::common::{assert_code, assert_error, bin_dir, Env};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Every file and directory under `dir`, sorted (to show nothing was made).
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The `doctor` line of one check.
fn doctor_line(env: &Env, args: &[&str], check: &str) -> String {
    let mut full = vec!["doctor"];
    full.extend_from_slice(args);
    let out = env.run("orch", &full);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(check))
        .unwrap_or_else(|| panic!("no {check} line in:\n{text}"))
        .to_string()
}

/// Item 3: an empty file (0644 from `touch`) adopted as the database is made
/// 0600 before SQLite writes to it, so the prompts and the `-wal`/`-shm`
/// files SQLite derives from its mode are not readable by others.
#[test]
fn item_3_an_empty_file_adopted_as_the_database_keeps_no_wide_mode() {
    let env = Env::new();
    std::fs::write(&env.db, b"").unwrap();
    std::fs::set_permissions(&env.db, std::fs::Permissions::from_mode(0o644)).unwrap();
    env.add("dev", "A prompt that may hold a secret");
    assert_eq!(mode(&env.db), 0o600, "the adopted file");
    let mut sidecars = 0;
    for suffix in ["-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", env.db.display()));
        if p.exists() {
            sidecars += 1;
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
    assert!(sidecars > 0, "SQLite made its -wal/-shm files");
    // A file with data in it is someone's choice: its mode is left alone.
    std::fs::set_permissions(&env.db, std::fs::Permissions::from_mode(0o640)).unwrap();
    env.add("dev", "another");
    assert_eq!(mode(&env.db), 0o640);
}

/// Item 4: a database file with more than one hard link is refused, by every
/// command, with the cause named, and `orch doctor` marks it ✗: each name
/// would keep its own `-wal` and the two would silently diverge.
#[test]
fn item_4_hard_linked_database_files_are_refused_and_doctor_fails_them() {
    let env = Env::new();
    env.db_ready();
    env.add("dev", "first");
    let other = env.path().join("other-name.db");
    std::fs::hard_link(&env.db, &other).unwrap();
    let before = std::fs::read(&env.db).unwrap();
    for db in [&env.db, &other] {
        let db = db.to_str().unwrap();
        for args in [
            vec!["orch-queue", "--db", db, "add", "dev", "second"],
            vec!["orch-queue", "--db", db, "list"],
            vec!["orch-batch", "--db", db, "create"],
            vec![
                "orch-msg", "--db", db, "send", "--from", "a", "--to", "b", "hi",
            ],
        ] {
            let out = env.run(args[0], &args[1..]);
            let err = assert_error(&out, args[0]);
            assert!(err.contains("2 hard links") && err.contains(db), "{err}");
        }
    }
    assert_eq!(
        std::fs::read(&env.db).unwrap(),
        before,
        "nothing was written"
    );
    let line = doctor_line(&env, &[], "database");
    assert!(
        line.starts_with("✗") && line.contains("hard links"),
        "{line}"
    );
    // One name again: back to normal.
    std::fs::remove_file(&other).unwrap();
    env.add("dev", "second");
}

/// The commands that only read (or change what is already there), each
/// with arguments that would be valid on an existing database.
const READS: &[&[&str]] = &[
    &["orch-queue", "list"],
    &["orch-queue", "list", "--json"],
    &["orch-queue", "show", "1"],
    &["orch-queue", "stats"],
    &["orch-queue", "cancel", "1"],
    &["orch-queue", "start", "1"],
    &["orch-queue", "done", "1"],
    &["orch-queue", "fail", "1"],
    &["orch-batch", "plan"],
    &["orch-batch", "list"],
    &["orch-batch", "show", "1"],
    &["orch-batch", "release", "1"],
    &["orch-emit", "1"],
    &["orch-verify", "report", "1"],
    &["orch-verify", "wait", "1", "--timeout", "1"],
    &["orch-verify", "probe", "1", "1"],
    &["orch-verify", "session"],
    &["orch-msg", "list"],
    &["orch-msg", "purge", "--older-than", "1d"],
    &["orch-run", "1", "--", "true"],
];

/// Item 7: every read on a missing database says `no database at PATH`,
/// exits 2 and creates nothing, not even a directory, whichever rule chose
/// the path; `orch status` and `orch doctor` show it as not made yet.
#[test]
fn item_7_reads_on_missing_paths_create_nothing() {
    let env = Env::new();
    let typo = env.path().join("typo/sub/orch.db");
    let before = tree(env.path());
    for args in READS {
        // From ORCH_DB, then from --db: init does not make those, so no hint says it.
        for via_flag in [false, true] {
            let mut c = env.cmd(args[0]);
            if via_flag {
                c.env_remove("ORCH_DB").arg("--db").arg(&typo);
            } else {
                c.env("ORCH_DB", &typo);
            }
            let out = c.args(&args[1..]).output().unwrap();
            let err = assert_error(&out, args[0]);
            assert!(
                err.contains(&format!("no database at {}", typo.display())),
                "{args:?}: {err}"
            );
            assert!(!err.contains("init"), "{args:?}: {err}");
            assert_eq!(tree(env.path()), before, "{args:?} created something");
        }
        // The per-user default: nothing made under the data directory either.
        let out = env
            .cmd(args[0])
            .env_remove("ORCH_DB")
            .args(&args[1..])
            .output()
            .unwrap();
        let err = assert_error(&out, args[0]);
        assert!(err.contains("no database at "), "{args:?}: {err}");
        assert!(err.contains("orch-queue init"), "{args:?}: {err}");
        assert_eq!(tree(env.path()), before, "{args:?} created something");
    }
    // The read-only MCP tools too.
    let input = [
        r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"queue_status","arguments":{}}}"#,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"batch_status","arguments":{"batch":1}}}"#,
    ]
    .join("\n");
    let mut c = env.cmd("orch-mcp");
    c.env("ORCH_DB", &typo)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        format!("{input}\n").as_bytes(),
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let replies: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for id in [1, 2] {
        let r = replies.iter().find(|r| r["id"] == id).unwrap();
        assert_eq!(r["result"]["isError"], true, "{r}");
        let text = r["result"]["content"][0]["text"].as_str().unwrap();
        assert!(text.contains("no database at"), "{text}");
    }
    assert_eq!(
        tree(env.path()),
        before,
        "orch-mcp's read tools created something"
    );

    let out = env
        .cmd("orch")
        .env("ORCH_DB", &typo)
        .arg("status")
        .output()
        .unwrap();
    assert_code(&out, 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("not made yet") && !text.contains("init"),
        "{text}"
    );
    let line = doctor_line(&env, &["--db", typo.to_str().unwrap()], "database");
    assert!(
        line.contains("does not exist yet") && !line.contains("init"),
        "{line}"
    );
    assert_eq!(
        tree(env.path()),
        before,
        "status or doctor created something"
    );
    // A command that writes does make it.
    env.cmd("orch-queue")
        .env("ORCH_DB", &typo)
        .args(["add", "dev", "x"])
        .output()
        .unwrap();
    assert!(typo.is_file());
}

/// Item 8: a `.orch/` that is there but broken (no orch.db in it, a dangling
/// symlink for orch.db or for `.orch` itself) is an error that names it and
/// the fix, for reads and writes alike, never a silent fall back to the
/// per-user database; `where` does not claim there is no `.orch/`.
#[test]
fn item_8_a_broken_orch_directory_is_an_error_naming_it() {
    let env = Env::new();
    let project = env.path().join("proj");
    let sub = project.join("src/deep");
    std::fs::create_dir_all(&sub).unwrap();
    let dot = project.join(".orch");
    let user_data = env.home().join(".local/share");
    let run = |args: &[&str]| {
        env.cmd("orch-queue")
            .env_remove("ORCH_DB")
            .current_dir(&sub)
            .args(args)
            .output()
            .unwrap()
    };
    let check = |what: &str, why: &str| {
        for args in [&["list"][..], &["add", "dev", "x"], &["where"], &["stats"]] {
            let out = run(args);
            let err = assert_error(&out, "orch-queue");
            assert!(
                err.contains(&format!("{}", dot.display())),
                "{what} {args:?}: {err}"
            );
            assert!(err.contains(why), "{what} {args:?}: {err}");
            assert!(
                !user_data.exists(),
                "{what} {args:?}: fell back to the per-user database"
            );
        }
        let out = env
            .cmd("orch")
            .env_remove("ORCH_DB")
            .current_dir(&sub)
            .arg("status")
            .output()
            .unwrap();
        assert_error(&out, "orch");
    };

    // The directory, without its database.
    std::fs::create_dir(&dot).unwrap();
    check("empty .orch/", "holds no orch.db");
    let err = assert_error(&run(&["list"]), "orch-queue");
    assert!(
        err.contains("orch-queue init") && err.contains("remove"),
        "{err}"
    );

    // orch.db a dangling symlink: found as the project's, and refused by name.
    std::os::unix::fs::symlink(project.join("gone.db"), dot.join("orch.db")).unwrap();
    let out = run(&["where"]);
    assert_code(&out, 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains(".orch/orch.db"));
    for args in [&["list"][..], &["add", "dev", "x"]] {
        let err = assert_error(&run(args), "orch-queue");
        assert!(
            err.contains(".orch/orch.db") && err.contains("which does not exist"),
            "{err}"
        );
    }
    assert!(
        !project.join("gone.db").exists(),
        "nothing made through the link"
    );
    std::fs::remove_file(dot.join("orch.db")).unwrap();
    std::fs::remove_dir(&dot).unwrap();

    // .orch itself a dangling symlink.
    std::os::unix::fs::symlink(env.path().join("moved-away"), &dot).unwrap();
    check("dangling .orch", "which does not exist");
    std::fs::remove_file(&dot).unwrap();

    // .orch a regular file, or a symlink to one: not a directory, refused.
    std::fs::write(&dot, "something else's\n").unwrap();
    check(".orch file", "it is a file, not a directory");
    std::fs::remove_file(&dot).unwrap();
    std::fs::write(project.join("elsewhere"), "").unwrap();
    std::os::unix::fs::symlink(project.join("elsewhere"), &dot).unwrap();
    check(".orch symlink to a file", "which is not a directory");
    std::fs::remove_file(&dot).unwrap();

    // The fix the message gives: `orch-queue init` in the project.
    std::fs::create_dir(&dot).unwrap();
    let out = env
        .cmd("orch-queue")
        .env_remove("ORCH_DB")
        .current_dir(&project)
        .arg("init")
        .output()
        .unwrap();
    assert_code(&out, 0);
    assert_code(&run(&["add", "dev", "x"]), 0);
    assert!(String::from_utf8_lossy(&run(&["list"]).stdout).contains("dev"));
}

/// Item 17: `/dev/null` (or any file that is not a regular one) says "not a
/// regular file", a dangling symlink says so, and nothing is made through it.
#[test]
fn item_17_clearer_errors_for_special_files_and_dangling_symlinks() {
    let env = Env::new();
    for args in [&["list"][..], &["add", "dev", "x"], &["stats"]] {
        let mut full = vec!["--db", "/dev/null"];
        full.extend_from_slice(args);
        let err = assert_error(&env.run("orch-queue", &full), "orch-queue");
        assert!(
            err.contains("/dev/null is not a regular file (a character device)"),
            "{err}"
        );
    }
    let out = env
        .cmd("orch")
        .env("ORCH_DB", "/dev/null")
        .arg("status")
        .output()
        .unwrap();
    let err = assert_error(&out, "orch");
    assert!(err.contains("not a regular file"), "{err}");
    let line = doctor_line(&env, &["--db", "/dev/null"], "database");
    assert!(
        line.starts_with("✗") && line.contains("not a regular file"),
        "{line}"
    );

    let link = env.path().join("link.db");
    let target = env.path().join("nowhere/real.db");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    for args in [&["list"][..], &["add", "dev", "x"]] {
        let mut full = vec!["--db", link.to_str().unwrap()];
        full.extend_from_slice(args);
        let err = assert_error(&env.run("orch-queue", &full), "orch-queue");
        assert!(
            err.contains(&format!(
                "{} is a symlink to {}, which does not exist",
                link.display(),
                target.display()
            )),
            "{err}"
        );
    }
    assert!(
        !env.path().join("nowhere").exists(),
        "nothing made through the link"
    );
    let line = doctor_line(&env, &["--db", link.to_str().unwrap()], "database");
    assert!(
        line.starts_with("✗") && line.contains("dangling symlink"),
        "{line}"
    );
}

/// A project database found by walking up must be one made here: a
/// `.orch/orch.db` that came with a cloned repository (tracked by git) is
/// refused by every command that would use it, naming the fix, until it is
/// untracked or named with `--db`. `orch-queue init` keeps `.orch/` out of git.
#[test]
fn a_project_database_tracked_by_git_is_refused() {
    let env = Env::new();
    let repo = env.path().join("clone");
    let sub = repo.join("src");
    std::fs::create_dir_all(&sub).unwrap();
    let git = |args: &[&str]| {
        let out = env
            .command("git")
            .current_dir(&repo)
            .args(args)
            .output()
            .unwrap();
        assert_code(&out, 0);
    };
    git(&["init", "--quiet"]);
    let run = |dir: &Path, args: &[&str]| {
        env.cmd("orch-queue")
            .env_remove("ORCH_DB")
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap()
    };
    assert_code(&run(&repo, &["init"]), 0);
    let ignore = std::fs::read_to_string(repo.join(".orch/.gitignore")).unwrap();
    assert!(ignore.lines().any(|l| l == "*"), "{ignore}");
    assert_code(
        &run(&sub, &["add", "dev", "launch with bypassPermissions"]),
        0,
    );
    // As an attacker's repository would have it: the database committed.
    git(&["add", "--force", ".orch/orch.db"]);
    let db = repo.join(".orch/orch.db");
    let before = std::fs::read(&db).unwrap();
    for args in [&["list"][..], &["add", "dev", "x"], &["show", "1"]] {
        let err = assert_error(&run(&sub, args), "orch-queue");
        assert!(
            err.contains("tracked by git") && err.contains("--db"),
            "{err}"
        );
    }
    let hook = env
        .cmd("orch-hook")
        .env_remove("ORCH_DB")
        .current_dir(&sub)
        .arg("UserPromptSubmit")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(br#"{"hook_event_name":"UserPromptSubmit","prompt":"hi","session_id":"s","cwd":"."}"#)?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&hook.stdout).contains("bypassPermissions"),
        "the hook offered a tracked database's task"
    );
    assert_eq!(std::fs::read(&db).unwrap(), before, "database untouched");
    // Named explicitly, it is the user's choice.
    let out = run(&sub, &["--db", db.to_str().unwrap(), "list"]);
    assert_code(&out, 0);
    // Untracked again, it is the project's database.
    git(&["rm", "--quiet", "--cached", ".orch/orch.db"]);
    assert_code(&run(&sub, &["list"]), 0);
    // With git missing from PATH nobody can tell: refused, not accepted.
    let out = env
        .cmd("orch-queue")
        .env_remove("ORCH_DB")
        .env("PATH", bin_dir())
        .current_dir(&sub)
        .arg("list")
        .output()
        .unwrap();
    let err = assert_error(&out, "orch-queue");
    assert!(
        err.contains("git is not on PATH") && err.contains("--db"),
        "{err}"
    );
    // A tracked symlink `.orch -> x` with `x/orch.db` tracked: git lists
    // nothing through the symlink, so it is asked about `.orch` itself and
    // about the file the database really is.
    std::fs::remove_dir_all(repo.join(".orch")).unwrap();
    std::fs::create_dir(repo.join("x")).unwrap();
    std::fs::write(repo.join("x/orch.db"), &before).unwrap();
    std::os::unix::fs::symlink("x", repo.join(".orch")).unwrap();
    git(&["add", "x/orch.db", ".orch"]);
    for args in [&["list"][..], &["show", "1"]] {
        let err = assert_error(&run(&sub, args), "orch-queue");
        assert!(
            err.contains("tracked by git") && err.contains("--db"),
            "{err}"
        );
    }
    // Only the real file tracked (the symlink not): still refused.
    git(&["rm", "--quiet", "--cached", ".orch"]);
    let err = assert_error(&run(&sub, &["list"]), "orch-queue");
    assert!(err.contains("tracked by git"), "{err}");
    assert_eq!(std::fs::read(repo.join("x/orch.db")).unwrap(), before);
}
