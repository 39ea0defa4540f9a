//! The `orch` front through the real binary: git-style arguments, the child's
//! exit code, `ORCH`, `--list`, and an unknown name.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use crate::common::*;

/// A directory with a third-party `orch-foo` that reports how it was called.
fn third_party(env: &Env) -> PathBuf {
    let dir = env.path().join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("orch-foo");
    std::fs::write(&p, "#!/bin/sh\nprintf 'argc=%s\\n' \"$#\"\nfor a in \"$@\"; do printf 'arg=%s\\n' \"$a\"; done\nprintf 'ORCH=%s\\n' \"$ORCH\"\nexit 7\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Not executable: never listed or run.
    std::fs::write(dir.join("orch-notexec"), "#!/bin/sh\n").unwrap();
    // A second `orch-queue` later on PATH: the one beside `orch` wins.
    std::fs::write(dir.join("orch-queue"), "#!/bin/sh\necho impostor\n").unwrap();
    std::fs::set_permissions(
        dir.join("orch-queue"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    dir
}

#[test]
fn runs_a_tool_with_git_style_arguments_and_passes_its_exit_code() {
    let env = Env::new();
    let dir = third_party(&env);
    let out = env
        .cmd("orch")
        .args(["foo", "a b", "--flag", "-x", ""])
        .env("PATH", path_with(&[&bin_dir(), &dir]))
        .output()
        .unwrap();
    assert_code(&out, 7);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text,
        format!(
            "argc=4\narg=a b\narg=--flag\narg=-x\narg=\nORCH={}\n",
            bin("orch").display()
        ),
        "the name is not repeated, every argument arrives intact, ORCH is set"
    );
}

#[test]
fn runs_suite_tools_exactly_as_when_called_directly() {
    let env = Env::new();
    let out = env
        .cmd("orch")
        .args(["queue", "add", "dev", "via the front"])
        .output()
        .unwrap();
    assert_code(&out, 0);
    let id: i64 = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let shown = env.ok("orch", &["queue", "show", &id.to_string(), "--json"]);
    assert!(shown.contains("via the front"));
    // The child's own error and exit code come through unchanged.
    let out = env.run("orch", &["queue", "show", "99"]);
    let err = assert_error(&out, "orch-queue");
    assert!(err.contains("not found"));
    env.ok("orch", &["batch", "create"]);
    let out = env.run("orch", &["batch", "create"]);
    assert_code(&out, 1);
    // The child's version, not the front's.
    assert!(env
        .ok("orch", &["emit", "--version"])
        .starts_with("orch-emit "));
}

#[test]
fn list_is_sorted_and_first_of_each_name_wins() {
    let env = Env::new();
    let dir = third_party(&env);
    let out = env
        .cmd("orch")
        .arg("--list")
        .env("PATH", path_with(&[&bin_dir(), &dir]))
        .output()
        .unwrap();
    assert_code(&out, 0);
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            let mut it = l.split_whitespace();
            (
                it.next().unwrap().to_string(),
                it.next().unwrap().to_string(),
            )
        })
        .collect();
    let names: Vec<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    for want in ["batch", "emit", "queue", "foo"] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    assert!(!names.contains(&"notexec"));
    let queue = rows.iter().find(|(n, _)| n == "queue").unwrap();
    assert_eq!(
        PathBuf::from(&queue.1),
        bin("orch-queue"),
        "its own directory first"
    );
    assert_eq!(names.iter().filter(|n| **n == "queue").count(), 1);
    // And `orch queue` runs that one, not the impostor.
    let out = env
        .cmd("orch")
        .args(["queue", "--version"])
        .env("PATH", path_with(&[&bin_dir(), &dir]))
        .output()
        .unwrap();
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .starts_with("orch-queue "));
}

#[test]
fn unknown_name_lists_what_exists_and_exits_2() {
    let env = Env::new();
    let out = env.run("orch", &["frobnicate", "x"]);
    let err = assert_error(&out, "orch");
    assert!(err.contains("no command 'frobnicate'"), "{err}");
    for name in ["queue", "batch", "emit"] {
        assert!(err.contains(name), "{err}");
    }
    assert!(out.stdout.is_empty());
    // A name with a slash is never a path.
    assert_error(&env.run("orch", &["../orch-queue"]), "orch");
    // No arguments: usage, exit 2.
    assert_code(&env.run("orch", &[]), 2);
    assert!(env.ok("orch", &["--help"]).contains("orch --list"));
}
