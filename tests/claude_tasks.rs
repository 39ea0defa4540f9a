//! orch-queue export|import --claude-tasks through the real binary, against a
//! task list in a temporary CLAUDE_CONFIG_DIR: 50 tasks round trip with their
//! dependencies, idempotent, malformed files refused and left untouched, and
//! a concurrent writer using Claude Code's lock protocol never lost.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::common::*;

fn cfg(env: &Env) -> PathBuf {
    env.path().join("claude-config")
}

fn run(env: &Env, args: &[&str]) -> Output {
    let mut c = env.cmd("orch-queue");
    c.env("CLAUDE_CONFIG_DIR", cfg(env)).args(args);
    c.output().unwrap()
}

fn list_dir(env: &Env) -> PathBuf {
    cfg(env).join("tasks").join("feature-x")
}

fn files(dir: &Path) -> BTreeMap<u64, Value> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        if let Some(n) = name.strip_suffix(".json").and_then(|n| n.parse().ok()) {
            out.insert(
                n,
                serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap(),
            );
        }
    }
    out
}

/// 50 tasks; every fifth waits on the two before it.
fn fifty(env: &Env) -> Vec<i64> {
    let mut input = String::new();
    for i in 0..50 {
        let mut l = serde_json::json!({"key": format!("k{i}"), "role": "dev", "description": format!("task {i}"), "prompt": format!("do part {i}\n`${{x}}` \"quoted\"")});
        if i % 5 == 4 {
            l["after"] = serde_json::json!([format!("k{}", i - 1), format!("k{}", i - 2)]);
        }
        input.push_str(&format!("{l}\n"));
    }
    env.ok_with("orch-queue", &["add", "--stdin"], input.as_bytes())
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

#[test]
fn claude_tasks_round_trip_fifty_tasks_with_dependencies() {
    let env = Env::new();
    let ids = fifty(&env);
    let out = run(&env, &["export", "--claude-tasks", "feature/x", "--json"]);
    assert_code(&out, 0);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["added"].as_array().unwrap().len(), 50);
    let dir = list_dir(&env);
    assert!(dir.join(".lock").is_file() && !dir.join(".lock.lock").exists());
    let f = files(&dir);
    assert_eq!(f.len(), 50);
    let by_orch: BTreeMap<i64, &Value> = f
        .values()
        .map(|t| (t["metadata"]["orch_task"].as_i64().unwrap(), t))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let t = by_orch[id];
        assert_eq!(t["status"], "pending");
        assert_eq!(t["subject"], format!("task {i}"));
        assert_eq!(
            t["description"],
            format!("do part {i}\n`${{x}}` \"quoted\"\n\norch-task: {id}")
        );
        let want: Vec<Value> = if i % 5 == 4 {
            vec![
                by_orch[&ids[i - 2]]["id"].clone(),
                by_orch[&ids[i - 1]]["id"].clone(),
            ]
        } else {
            vec![]
        };
        assert_eq!(t["blockedBy"].as_array().unwrap(), &want);
        if i % 5 == 3 {
            assert_eq!(t["blocks"], serde_json::json!([by_orch[&ids[i + 1]]["id"]]));
        }
    }
    // Again: nothing added, every file byte for byte the same.
    let before: Vec<Vec<u8>> = f
        .keys()
        .map(|n| std::fs::read(dir.join(format!("{n}.json"))).unwrap())
        .collect();
    let out = run(&env, &["export", "--claude-tasks", "feature/x", "--json"]);
    assert_code(&out, 0);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["added"].as_array().unwrap().len(), 0);
    assert_eq!(v["already"].as_array().unwrap().len(), 50);
    let after: Vec<Vec<u8>> = f
        .keys()
        .map(|n| std::fs::read(dir.join(format!("{n}.json"))).unwrap())
        .collect();
    assert_eq!(before, after);

    // Claude Code works on them; import reads the statuses back.
    let set = |orch: i64, status: &str| {
        let t = by_orch[&orch];
        let path = dir.join(format!("{}.json", t["id"].as_str().unwrap()));
        let mut t = (*t).clone();
        t["status"] = Value::from(status);
        std::fs::write(path, serde_json::to_string_pretty(&t).unwrap()).unwrap();
    };
    for id in &ids[..10] {
        set(*id, "completed");
    }
    set(ids[10], "in_progress");
    let out = run(&env, &["import", "--claude-tasks", "feature/x", "--json"]);
    assert_code(&out, 0);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["done"], serde_json::json!(ids[..10]));
    assert_eq!(v["started"], serde_json::json!([ids[10]]));
    let status = |id: i64| -> String {
        env.sql()
            .query_row("SELECT status FROM tasks WHERE id = ?1", [id], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(status(ids[0]), "done");
    assert_eq!(status(ids[10]), "running");
    assert_eq!(status(ids[11]), "queued");
    // Idempotent: a second import changes nothing.
    let out = run(&env, &["import", "--claude-tasks", "feature/x", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["done"], serde_json::json!([]));
    assert_eq!(v["started"], serde_json::json!([]));
}

#[test]
fn claude_tasks_malformed_files_are_refused_and_left_untouched() {
    let env = Env::new();
    fifty(&env);
    let dir = list_dir(&env);
    std::fs::create_dir_all(&dir).unwrap();
    for bad in ["{\"id\": \"7\", \"subject\": 1}", "not json", "{\"id\":\"7\",\"subject\":\"s\",\"description\":\"d\",\"status\":\"deleted\",\"blocks\":[],\"blockedBy\":[]}"] {
        std::fs::write(dir.join("7.json"), bad).unwrap();
        for verb in ["export", "import"] {
            let out = run(&env, &[verb, "--claude-tasks", "feature/x"]);
            assert_code(&out, 2);
            let err = assert_error(&out, "orch-queue");
            assert!(err.contains("7.json") && err.contains("untouched"), "{err}");
            assert_eq!(std::fs::read_to_string(dir.join("7.json")).unwrap(), bad);
            assert_eq!(files_named(&dir), ["7.json"], "nothing else written");
            assert!(!dir.join(".lock.lock").exists(), "the lock is released");
        }
    }
    let queued: i64 = env
        .sql()
        .query_row(
            "SELECT COUNT(*) FROM tasks WHERE status = 'queued'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(queued, 50);
}

fn files_named(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    v.sort();
    v
}

/// Claude Code's TaskCreate: under the list lock (`mkdir .lock.lock`, retried),
/// the next id after the highest file and the high-water mark, one file.
fn claude_create(dir: &Path, subject: &str) {
    let lock = dir.join(".lock.lock");
    let mut tries = 0;
    while std::fs::create_dir(&lock).is_err() {
        tries += 1;
        assert!(tries < 2000, "the lock was never free");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let high = std::fs::read_to_string(dir.join(".highwatermark"))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let max = files(dir).keys().next_back().copied().unwrap_or(0);
    let id = max.max(high) + 1;
    let t = serde_json::json!({"id": id.to_string(), "subject": subject, "description": "by Claude", "status": "pending", "blocks": [], "blockedBy": []});
    std::fs::write(
        dir.join(format!("{id}.json")),
        serde_json::to_string_pretty(&t).unwrap(),
    )
    .unwrap();
    std::fs::remove_dir(&lock).unwrap();
}

#[test]
fn claude_tasks_a_concurrent_writer_is_never_lost() {
    let env = Env::new();
    fifty(&env);
    let dir = list_dir(&env);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(".lock"), "").unwrap();
    let d = dir.clone();
    let writer = std::thread::spawn(move || {
        for i in 0..30 {
            claude_create(&d, &format!("claude {i}"));
            // Spread over the export's run, not all before it starts.
            std::thread::sleep(std::time::Duration::from_millis(3));
        }
    });
    let out = run(&env, &["export", "--claude-tasks", "feature/x"]);
    writer.join().unwrap();
    assert_code(&out, 0);
    let f = files(&dir);
    assert_eq!(f.len(), 80, "50 of orch's and 30 of Claude Code's");
    let ids: HashSet<&str> = f.values().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 80);
    for (n, t) in &f {
        assert_eq!(t["id"], n.to_string(), "each file holds its own id");
    }
    let claude: HashSet<&str> = f
        .values()
        .filter_map(|t| t["subject"].as_str())
        .filter(|s| s.starts_with("claude "))
        .collect();
    assert_eq!(claude.len(), 30);
}

#[test]
fn claude_tasks_a_held_lock_refuses_and_a_stale_one_is_taken_over() {
    let env = Env::new();
    env.add("dev", "one");
    let dir = list_dir(&env);
    std::fs::create_dir_all(dir.join(".lock.lock")).unwrap();
    let out = run(&env, &["export", "--claude-tasks", "feature/x"]);
    assert_code(&out, 2);
    assert!(assert_error(&out, "orch-queue").contains("held by another process"));
    assert!(files_named(&dir).is_empty());
    // Left by a process that died 11 s ago: taken over.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(11);
    std::fs::File::open(dir.join(".lock.lock"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let out = run(&env, &["export", "--claude-tasks", "feature/x"]);
    assert_code(&out, 0);
    assert_eq!(files_named(&dir), ["1.json"]);
    assert!(!dir.join(".lock.lock").exists());
}

#[test]
fn claude_tasks_export_writes_private_files_and_never_through_a_symlink() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    env.add("dev", "a secret prompt");
    let dir = list_dir(&env);
    std::fs::create_dir_all(&dir).unwrap();
    let victim = env.path().join("bashrc");
    std::fs::write(&victim, "# the user's\n").unwrap();
    for tmp in ["1.json.orch-tmp", "1.orch-tmp", ".1.json.orch-tmp"] {
        std::os::unix::fs::symlink(&victim, dir.join(tmp)).unwrap();
    }
    let out = run(&env, &["export", "--claude-tasks", "feature/x"]);
    assert_code(&out, 0);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "# the user's\n");
    let file = dir.join("1.json");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a task file holds a prompt");
    assert_eq!(files(&dir).len(), 1);
}
