//! Checks on a database file itself: row counts of every table, integrity,
//! and JSON Lines input of many tasks.

use std::io::Write;
use std::path::Path;

use serde_json::Value;

use crate::common::{json, Env};

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

/// Every row of every table, as text, plus the schema version: equal dumps mean
/// nothing was written.
pub fn dump(db: &Path) -> Vec<String> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let mut out = vec![format!(
        "user_version={}",
        c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
            .unwrap()
    )];
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for t in tables {
        let mut stmt = c
            .prepare(&format!("SELECT * FROM \"{t}\" ORDER BY 1, 2"))
            .unwrap();
        let n = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            let cells: Vec<String> = (0..n)
                .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                .collect();
            out.push(format!("{t}: {}", cells.join(" | ")));
        }
    }
    out
}

/// A task's status, read straight from the file.
pub fn status(env: &Env, id: i64) -> String {
    env.sql()
        .query_row("SELECT status FROM tasks WHERE id = ?1", [id], |r| r.get(0))
        .unwrap()
}

/// Row count of `table`.
pub fn count(env: &Env, table: &str) -> i64 {
    env.sql()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// `orch-queue show ID --json`, parsed.
pub fn task(env: &Env, id: i64) -> Value {
    json(&env.ok("orch-queue", &["show", &id.to_string(), "--json"]))
}
