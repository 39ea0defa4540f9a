//! Test helpers: a fresh directory and database per test, and the real
//! binaries run with every `ORCH_*` variable removed first.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod runs;
mod store;
pub use runs::*;
pub use store::*;

/// The path of a suite binary built by cargo for this test run.
pub fn bin(name: &str) -> PathBuf {
    PathBuf::from(match name {
        "orch" => env!("CARGO_BIN_EXE_orch"),
        "orch-queue" => env!("CARGO_BIN_EXE_orch-queue"),
        "orch-batch" => env!("CARGO_BIN_EXE_orch-batch"),
        "orch-emit" => env!("CARGO_BIN_EXE_orch-emit"),
        "orch-verify" => env!("CARGO_BIN_EXE_orch-verify"),
        "orch-hook" => env!("CARGO_BIN_EXE_orch-hook"),
        "orch-msg" => env!("CARGO_BIN_EXE_orch-msg"),
        "orch-mcp" => env!("CARGO_BIN_EXE_orch-mcp"),
        "orch-run" => env!("CARGO_BIN_EXE_orch-run"),
        "orch-events" => env!("CARGO_BIN_EXE_orch-events"),
        "orch-land" => env!("CARGO_BIN_EXE_orch-land"),
        other => panic!("no binary {other}"),
    })
}

/// The directory holding the built binaries (to put on PATH).
pub fn bin_dir() -> PathBuf {
    bin("orch").parent().unwrap().to_path_buf()
}

/// A temporary project directory with its own HOME and database.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        let db = dir.path().join("test.db");
        Env { dir, db }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// A command for `program` with the environment every test runs in:
    /// [`clean_env`] with HOME in the temp dir, the suite first on PATH, and
    /// the temp dir as working directory. No `ORCH_DB`.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        clean_env(&mut c, &self.home());
        c.env("PATH", path_with(&[&bin_dir()]));
        c.current_dir(self.path());
        c
    }

    /// A command for the suite binary `name`: [`Env::command`] with ORCH_DB
    /// set to this env's database and stdin empty.
    pub fn cmd(&self, name: &str) -> Command {
        let mut c = self.command(bin(name));
        c.env("ORCH_DB", &self.db);
        c.stdin(Stdio::null());
        c
    }

    /// Runs `name ARGS` with `stdin` and returns its output.
    pub fn run_with(&self, name: &str, args: &[&str], stdin: &[u8]) -> Output {
        let mut c = self.cmd(name);
        c.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out
    }

    /// Runs `name ARGS` with empty stdin.
    pub fn run(&self, name: &str, args: &[&str]) -> Output {
        self.run_with(name, args, b"")
    }

    /// Runs and asserts exit 0; returns stdout.
    pub fn ok(&self, name: &str, args: &[&str]) -> String {
        let out = self.run(name, args);
        assert_code(&out, 0);
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs with stdin and asserts exit 0; returns stdout.
    pub fn ok_with(&self, name: &str, args: &[&str], stdin: &[u8]) -> String {
        let out = self.run_with(name, args, stdin);
        assert_code(&out, 0);
        String::from_utf8(out.stdout).unwrap()
    }

    /// Adds a task and returns its id.
    pub fn add(&self, role: &str, prompt: &str) -> i64 {
        self.ok("orch-queue", &["add", role, prompt])
            .trim()
            .parse()
            .unwrap()
    }

    /// Opens the database directly (for checking invariants).
    pub fn sql(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(&self.db).unwrap()
    }
}

/// The one place a test's environment is cleaned: nothing of the machine the
/// tests run on reaches the command under test. Removes every `ORCH*`,
/// `CLAUDE*` and `XDG_*` variable, the display (`DISPLAY`, `WAYLAND_DISPLAY`:
/// no real clipboard), `TMUX`, `NO_COLOR`; sets HOME to `home` and
/// XDG_DATA_HOME inside it.
pub fn clean_env<'a>(c: &'a mut Command, home: &Path) -> &'a mut Command {
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if ["ORCH", "CLAUDE", "XDG_"].iter().any(|p| k.starts_with(p)) {
            c.env_remove(&*k);
        }
    }
    for k in ["DISPLAY", "WAYLAND_DISPLAY", "TMUX", "NO_COLOR"] {
        c.env_remove(k);
    }
    c.env("HOME", home);
    c.env("XDG_DATA_HOME", home.join(".local/share"));
    c
}

/// PATH with `dirs` first, then the PATH the tests run with.
pub fn path_with(dirs: &[&Path]) -> std::ffi::OsString {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths: Vec<PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    paths.extend(std::env::split_paths(&path));
    std::env::join_paths(paths).unwrap()
}

/// Asserts the exit code, showing stderr when it differs.
pub fn assert_code(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit code; stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts exit 2 with exactly one line on stderr naming the tool; returns that line.
pub fn assert_error(out: &Output, tool: &str) -> String {
    assert_code(out, 2);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        err.lines().count(),
        1,
        "one stderr line expected, got: {err}"
    );
    assert!(err.starts_with(&format!("{tool}: error: ")), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// A command's stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The next commands work: add, batch, emit.
pub fn next_commands_work(env: &Env) {
    let id = env.add("dev", "after the storm");
    assert!(id > 0);
    let b = env.ok("orch-batch", &["create", "--max", "100000"]);
    let out = env.ok("orch-emit", &[b.trim(), "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["tasks"].as_array().unwrap().contains(&id.into()));
}

/// Parses one JSON value.
pub fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// Parses JSON Lines.
pub fn json_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A stdout that fails: how `run_bad_stdout` connects the command's stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadStdout {
    /// `> /dev/full`: every write fails with "no space left".
    Full,
    /// `>&-`: descriptor 1 closed before the program starts.
    Closed,
    /// A pipe whose reading end is closed (`| true` that already exited).
    NoReader,
}

impl BadStdout {
    pub const ALL: [BadStdout; 3] = [BadStdout::Full, BadStdout::Closed, BadStdout::NoReader];
}

impl Env {
    /// Runs `name ARGS` with `stdin` and a failing stdout; stdout in the
    /// result is always empty, stderr is captured.
    pub fn run_bad_stdout(
        &self,
        name: &str,
        args: &[&str],
        stdin: &[u8],
        how: BadStdout,
    ) -> Output {
        let mut c = match how {
            // The shell closes stdout (`>&-`) and becomes the tool.
            BadStdout::Closed => {
                let mut c = self.command("sh");
                c.args(["-c", "exec \"$0\" \"$@\" >&-"])
                    .arg(bin(name))
                    .env("ORCH_DB", &self.db);
                c
            }
            _ => self.cmd(name),
        };
        c.args(args).stdin(Stdio::piped()).stderr(Stdio::piped());
        match how {
            BadStdout::Full => {
                let full = std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/full")
                    .unwrap();
                c.stdout(Stdio::from(full));
            }
            BadStdout::Closed => {
                c.stdout(Stdio::inherit());
            }
            BadStdout::NoReader => {
                let (r, w) = rustix::pipe::pipe().unwrap();
                drop(r);
                c.stdout(Stdio::from(w));
            }
        }
        let mut child = c.spawn().unwrap();
        // `c` keeps the parent's copy of the pipe's write end: drop it with `c`.
        drop(c);
        let mut input = child.stdin.take().unwrap();
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out
    }
}

/// The ids a stderr line `… committed, but the answer could not be printed`
/// names, e.g. `tasks 5-7, 9`.
pub fn committed_ids(stderr: &[u8]) -> Vec<i64> {
    let err = String::from_utf8_lossy(stderr);
    let head = err
        .split(" committed, but the answer could not be printed")
        .next()
        .unwrap();
    let head = head.split_once(": error: ").map_or(head, |(_, h)| h);
    let list = head.split_once(' ').map_or("", |(_, l)| l);
    let list = list.split(" (").next().unwrap();
    let mut ids = Vec::new();
    for part in list.split(", ") {
        match part.split_once('-') {
            Some((a, b)) => ids.extend(a.parse::<i64>().unwrap()..=b.parse::<i64>().unwrap()),
            None => ids.push(part.trim().parse().unwrap()),
        }
    }
    ids
}

/// Runs `c` to completion. A program written by this test process moments
/// ago can be refused with ETXTBSY while another test thread's fork still
/// holds the writing descriptor (until its exec closes it); that is retried.
pub fn output_of(c: &mut Command) -> Output {
    for _ in 0..100 {
        match c.output() {
            Err(e) if e.raw_os_error() == Some(26) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            r => return r.unwrap(),
        }
    }
    panic!("{c:?}: text file busy for 2 s")
}
