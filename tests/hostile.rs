//! The hostile corpus: tests/hostile/cases.json, inputs beside it, run through
//! every binary: one clear line on stderr, exit 2, nothing written.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::common::*;

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
