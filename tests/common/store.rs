//! Checks on a database file itself: row counts of every table, integrity,
//! and JSON Lines input of many tasks.

use std::io::Write;
use std::path::Path;

/// Every table of the schema, to prove that "nothing was written".
pub const TABLES: &[&str] = &[
    "tasks",
    "task_deps",
    "batches",
    "messages",
    "deliveries",
    "verify_runs",
    "verify_probes",
    "agent_calls",
];

/// Row counts of every table (a missing table counts -1).
pub fn counts(db: &Path) -> Vec<i64> {
    let c = rusqlite::Connection::open(db).unwrap();
    TABLES
        .iter()
        .map(|t| {
            c.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
                .unwrap_or(-1)
        })
        .collect()
}

pub fn integrity_ok(db: &Path) {
    let c = rusqlite::Connection::open(db).unwrap();
    let r: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(r, "ok");
    let fk: i64 = c
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(fk, 0, "foreign keys");
}

/// Count of tasks whose prompt starts with `prefix`.
pub fn tasks_like(db: &Path, prefix: &str) -> i64 {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row(
        "SELECT count(*) FROM tasks WHERE substr(prompt, 1, length(?1)) = ?1",
        [prefix],
        |r| r.get(0),
    )
    .unwrap()
}

/// JSON Lines of `n` tasks whose prompts start with `prefix`.
pub fn jsonl(prefix: &str, n: usize, pad: usize) -> Vec<u8> {
    let mut v = Vec::new();
    let filler = "x".repeat(pad);
    for i in 0..n {
        let line = serde_json::json!({"role": "dev", "prompt": format!("{prefix}{i} {filler}")});
        writeln!(v, "{line}").unwrap();
    }
    v
}
