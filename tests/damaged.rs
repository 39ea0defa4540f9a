//! A damaged or limited file system under the database: a file-size limit,
//! and truncated or garbled database files, refused without a panic.

use std::io::Write;
use std::process::Stdio;

use crate::common::*;

#[test]
fn a_file_size_limit_is_a_clear_error_and_nothing_is_half_written() {
    let env = Env::new();
    env.add("dev", "before the limit");
    let before = counts(&env.db);
    // The shell ignores SIGXFSZ, limits files to 256 KiB (512-byte blocks)
    // and becomes the tool.
    let mut c = env.command("sh");
    c.args([
        "-c",
        "trap '' XFSZ; ulimit -f 512 || exit 99; exec \"$0\" \"$@\"",
    ])
    .arg(bin("orch-queue"))
    .env("ORCH_DB", &env.db)
    .args(["add", "--stdin"])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
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
