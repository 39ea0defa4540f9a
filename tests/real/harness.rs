//! The real tier's machinery: the pinned Claude Code CLI, the scripted model
//! server, and a scratch git project they share with orch's binaries.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{assert_code, bin_dir, Env};

/// The longest one `claude` run may take before the test fails.
pub const CLAUDE_LIMIT: Duration = Duration::from_secs(90);

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The version pinned by `tests/claude_code/package.json`.
pub fn pinned_version() -> String {
    let p = manifest().join("tests/claude_code/package.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    v["dependencies"]["@anthropic-ai/claude-code"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The pinned CLI as `scripts/test-deps.sh` installed it; fails (never skips)
/// when it is missing, and prints its version once per run.
pub fn claude_bin() -> PathBuf {
    let p = manifest().join("tests/claude_code/node_modules/.bin/claude");
    assert!(
        p.exists(),
        "the real tier needs Claude Code {} at {}: run scripts/test-deps.sh",
        pinned_version(),
        p.display()
    );
    static VERSION: Once = Once::new();
    VERSION.call_once(|| {
        let out = Command::new(&p).arg("--version").output().unwrap();
        eprintln!(
            "real tier: Claude Code {}",
            String::from_utf8_lossy(&out.stdout).trim()
        );
    });
    p
}

/// A directory holding only a `claude` link to the pinned CLI (for PATH, so
/// orch-run's `--agent claude` and orch's own `claude` lookups find it).
pub fn claude_dir(env: &Env) -> PathBuf {
    let d = env.path().join("claude-bin");
    if !d.exists() {
        std::fs::create_dir_all(&d).unwrap();
        std::os::unix::fs::symlink(claude_bin(), d.join("claude")).unwrap();
    }
    d
}

/// The scripted model: `tests/real/model.py`, on 127.0.0.1, stopped on drop.
pub struct Model {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Model {
    /// Starts `scenario` with sub-agents answering after `delay` seconds.
    pub fn start(env: &Env, scenario: &str, delay: f64) -> Model {
        let log = env.path().join(format!("model-{scenario}.jsonl"));
        let script = manifest().join("tests/real/model.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .args(["--scenario", scenario, "--log"])
            .arg(&log)
            .args(["--delay", &delay.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("the real tier needs python3 for the scripted model: {e}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the scripted model did not print its port: {line:?}"));
        Model { child, port, log }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The `/v1/messages` requests from `role` (main, agent, probe, other).
    pub fn by_role(&self, role: &str) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["role"] == role)
            .collect()
    }

    /// The model's answers to the main loop that launched Agent calls: the
    /// inputs of each such assistant message, one Vec per message.
    pub fn agent_messages(&self) -> Vec<Vec<Value>> {
        self.by_role("main")
            .iter()
            .map(|r| tool_uses(&r["answer"], "Agent"))
            .filter(|c| !c.is_empty())
            .collect()
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The inputs of the `name` tool_use blocks in a content array.
pub fn tool_uses(content: &Value, name: &str) -> Vec<Value> {
    content
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|b| b["type"] == "tool_use" && b["name"] == name)
                .map(|b| b["input"].clone())
                .collect()
        })
        .unwrap_or_default()
}

/// The tool_result blocks Claude Code sent back in a request.
pub fn tool_results(req: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for m in req["body"]["messages"].as_array().into_iter().flatten() {
        for b in m["content"].as_array().into_iter().flatten() {
            if b["type"] == "tool_result" {
                out.push(b.clone());
            }
        }
    }
    out
}

/// Every text Claude Code sent in a request's messages (tool results included).
pub fn request_text(req: &Value) -> String {
    fn walk(v: &Value, out: &mut String) {
        match v {
            Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(o) => {
                for (k, x) in o {
                    if k == "text" || k == "content" {
                        walk(x, out);
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = String::new();
    walk(&req["body"]["messages"], &mut out);
    out
}

/// A scratch git project inside `env` (HOME is the env's), at `env/proj`.
pub fn project(env: &Env) -> PathBuf {
    let p = env.path().join("proj");
    std::fs::create_dir_all(&p).unwrap();
    let out = Command::new("git")
        .args(["init", "-q", "."])
        .current_dir(&p)
        .output()
        .expect("the real tier needs git");
    assert_code(&out, 0);
    p
}

/// Runs an orch tool in `dir` (instead of the env's root); asserts exit 0.
pub fn ok_in(env: &Env, dir: &Path, name: &str, args: &[&str]) -> String {
    let out = env
        .cmd(name)
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_code(&out, 0);
    String::from_utf8(out.stdout).unwrap()
}

/// The environment every Claude Code process of the tier gets: a scratch
/// HOME, the model's URL, a dummy key, nothing phoned home (any non-local
/// connection goes to a dead proxy on 127.0.0.1).
pub fn claude_env(c: &mut Command, env: &Env, model: &Model) {
    c.env_clear();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![bin_dir(), claude_dir(env)];
    paths.extend(std::env::split_paths(&path));
    let tmp = env.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    c.env("PATH", std::env::join_paths(paths).unwrap())
        .env("HOME", env.home())
        .env("TMPDIR", &tmp)
        .env("CLAUDE_CODE_TMPDIR", &tmp)
        .env("ORCH_DB", &env.db)
        .env("ANTHROPIC_BASE_URL", model.url())
        .env("ANTHROPIC_API_KEY", "sk-ant-scripted-model")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("LANG", "C.UTF-8");
}

/// `claude ARGS` in `dir`, against `model`.
pub fn claude_cmd(env: &Env, model: &Model, dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(claude_bin());
    claude_env(&mut c, env, model);
    c.args(args).current_dir(dir).stdin(Stdio::null());
    c
}

/// Runs a command to completion within `limit`, killing it (and failing the
/// test with what it printed) past that.
pub fn run_bounded(mut c: Command, limit: Duration) -> Output {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let o = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let e = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "still running after {limit:?}; stdout: {}\nstderr: {}",
                String::from_utf8_lossy(&o.join().unwrap()),
                String::from_utf8_lossy(&e.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: o.join().unwrap(),
        stderr: e.join().unwrap(),
    }
}

/// `claude -p MESSAGE EXTRA…` in `dir`; asserts exit 0; returns its output.
pub fn claude_p(env: &Env, model: &Model, dir: &Path, message: &str, extra: &[&str]) -> Output {
    let mut args = vec!["-p", message];
    args.extend_from_slice(extra);
    let out = run_bounded(claude_cmd(env, model, dir, &args), CLAUDE_LIMIT);
    assert_code(&out, 0);
    out
}

/// A task's status and result from the database.
pub fn task_row(env: &Env, id: i64) -> (String, Option<String>) {
    env.sql()
        .query_row(
            "SELECT status, result FROM tasks WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

/// The statuses of every task, by id.
pub fn statuses(env: &Env) -> Vec<(i64, String)> {
    let c = env.sql();
    let mut s = c
        .prepare("SELECT id, status FROM tasks ORDER BY id")
        .unwrap();
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// `orch-verify session --json` (judging every recorded agent call).
pub fn session_verdict(env: &Env, dir: &Path) -> Value {
    let out = env
        .cmd("orch-verify")
        .args(["session", "--json"])
        .current_dir(dir)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "orch-verify session --json: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Queues one task per prompt (role general-purpose); returns their ids.
pub fn queue(env: &Env, dir: &Path, prompts: &[&str]) -> Vec<i64> {
    prompts
        .iter()
        .map(|p| {
            ok_in(env, dir, "orch-queue", &["add", "general-purpose", p])
                .trim()
                .parse()
                .unwrap()
        })
        .collect()
}

/// `orch-batch create --max N | orch-emit` in `dir`: the message to paste.
pub fn batch_message(env: &Env, dir: &Path, max: usize) -> String {
    let batch = ok_in(
        env,
        dir,
        "orch-batch",
        &["create", "--max", &max.to_string()],
    );
    ok_in(env, dir, "orch-emit", &[batch.trim()])
}
