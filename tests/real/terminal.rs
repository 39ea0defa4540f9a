//! Real terminals: the guided check of orch-verify and `orch-emit --install`'s
//! question driven in tmux, and `orch status --watch` on a pty from `script`
//! (util-linux), both installed by scripts/test-deps.sh; the completion
//! scripts checked by zsh and fish.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{bin_dir, Env};

struct Tmux {
    sock: PathBuf,
}

impl Tmux {
    /// Starts `script` in a detached tmux session on a private server.
    fn start(env: &Env, script: &str) -> Tmux {
        assert!(
            Command::new("tmux")
                .arg("-V")
                .output()
                .is_ok_and(|o| o.status.success()),
            "tmux is not installed: run scripts/test-deps.sh"
        );
        let file = env.path().join("session.sh");
        std::fs::write(&file, script).unwrap();
        let sock = env.path().join("tmux.sock");
        let st = env
            .command("tmux")
            .arg("-S")
            .arg(&sock)
            .args([
                "new-session",
                "-d",
                "-s",
                "t",
                "-x",
                "110",
                "-y",
                "60",
                "sh",
            ])
            .arg(&file)
            .status()
            .unwrap();
        assert!(st.success());
        Tmux { sock }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.sock)
            .args(["capture-pane", "-p", "-J", "-t", "t", "-S", "-2000"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn wait_for(&self, what: &str, secs: u64) -> String {
        let t = Instant::now();
        loop {
            let s = self.screen();
            if s.contains(what) {
                return s;
            }
            assert!(
                t.elapsed() < Duration::from_secs(secs),
                "waited for {what:?}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn keys(&self, keys: &[&str]) {
        let st = Command::new("tmux")
            .arg("-S")
            .arg(&self.sock)
            .args(["send-keys", "-t", "t"])
            .args(keys)
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.sock)
            .arg("kill-server")
            .status();
    }
}

/// A script that runs `orch-verify ARGS` in the env's directory with its database, then
/// prints the exit code and lingers so the screen can be read.
fn session_script(env: &Env, args: &str) -> String {
    tool_script(env, &format!("orch-verify {args}"))
}

/// A script that runs the command line `line` (a tool of the suite) in the
/// env's directory with its database, then prints the exit code and lingers.
fn tool_script(env: &Env, line: &str) -> String {
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    format!(
        "cd '{dir}' || exit 1\nunset DISPLAY WAYLAND_DISPLAY ORCH\ntrap : INT\nexport HOME='{home}' ORCH_DB='{db}' TMPDIR='{dir}' PATH='{path}' NO_COLOR=1\n{line}\necho \"exit=$?\"\nsleep 120\n",
        dir = env.path().display(),
        home = env.home().display(),
        db = env.db.display(),
    )
}

/// The files the guided check saved the message of `run` to, in `dir`
/// (`orch-verify-run-RUN-RANDOM.txt`).
fn saved_messages(dir: &Path, run: i64) -> Vec<PathBuf> {
    let prefix = format!("orch-verify-run-{run}-");
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(&prefix) && name.ends_with(".txt")
        })
        .collect();
    found.sort();
    found
}

/// The probe commands in the message the guided check saved for `run`.
fn commands_in_saved_message(dir: &Path, run: i64) -> Vec<String> {
    let saved = saved_messages(dir, run);
    assert_eq!(saved.len(), 1, "{saved:?}");
    let text = std::fs::read_to_string(&saved[0]).unwrap();
    let start = text.find("\n[\n").unwrap() + 1;
    let end = text.find("\n]\n").unwrap() + 2;
    let calls: Vec<Value> = serde_json::from_str(&text[start..end]).unwrap();
    calls
        .iter()
        .map(|c| {
            let p = c["prompt"].as_str().unwrap();
            p.lines()
                .find(|l| l.starts_with("orch-verify probe "))
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn guided_check_in_a_terminal_from_start_to_verdict() {
    let env = Env::new();
    let tmux = Tmux::start(&env, &session_script(&env, "guide -n 3 --sleep 0.8"));
    let screen = tmux.wait_for("[y/N]", 20);
    assert!(screen.contains("Bash(orch-verify probe:*)"), "{screen}");
    tmux.keys(&["y", "Enter"]);
    let screen = tmux.wait_for("Step 3 of 3", 20);
    assert!(screen.contains("Added."), "{screen}");
    assert!(screen.contains("Launch 3 agents in parallel"), "{screen}");
    let settings: Value = serde_json::from_str(
        &std::fs::read_to_string(env.path().join(".claude/settings.local.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        settings["permissions"]["allow"],
        serde_json::json!(["Bash(orch-verify probe:*)"])
    );

    // Act as Claude Code: run the three commands from the saved message at once.
    let run: i64 = env
        .sql()
        .query_row("SELECT max(id) FROM verify_runs", [], |r| r.get(0))
        .unwrap();
    let commands = commands_in_saved_message(env.path(), run);
    assert_eq!(commands.len(), 3);
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let kids: Vec<Child> = commands
        .iter()
        .map(|c| {
            Command::new("sh")
                .args(["-c", c])
                .env("PATH", &path)
                .env_remove("ORCH_DB")
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut k in kids {
        assert!(k.wait().unwrap().success());
    }
    let screen = tmux.wait_for("exit=", 20);
    assert!(screen.contains("exit=0"), "{screen}");
    assert!(screen.contains("3/3 done"), "each probe ticks in: {screen}");
    assert!(screen.contains("verdict  PARALLEL"), "{screen}");
    assert!(screen.contains("running │"), "the timeline: {screen}");
}

/// Item 2: the guided check saves its message under a random name, made
/// with exclusive creation and mode 0600, so a file or symlink planted at the
/// old predictable name (`orch-verify-run-1.txt`) is neither followed nor
/// overwritten, and two runs never share a file.
#[test]
fn item_2_predictable_tmp_file_guided_check_saves_to_a_new_private_file() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    std::fs::create_dir_all(env.path().join(".claude")).unwrap();
    std::fs::write(
        env.path().join(".claude/settings.local.json"),
        r#"{"permissions": {"allow": ["Bash(orch-verify probe:*)"]}}"#,
    )
    .unwrap();
    // TMPDIR is the env's directory (see session_script): plant the trap there.
    let victim = env.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, env.path().join("orch-verify-run-1.txt")).unwrap();
    // What another project's run 1 saved before: left alone.
    let other = env.path().join("orch-verify-run-1-other.txt");
    std::fs::write(&other, "another project's message\n").unwrap();
    {
        let run = 1;
        let tmux = Tmux::start(&env, &session_script(&env, "guide -n 2 --sleep 0.1"));
        tmux.wait_for("Step 3 of 3", 20);
        tmux.keys(&["C-c"]);
        let screen = tmux.wait_for("exit=", 20);
        assert!(screen.contains("exit=130"), "{screen}");
        let saved: Vec<PathBuf> = saved_messages(env.path(), run)
            .into_iter()
            .filter(|p| *p != other)
            .collect();
        assert_eq!(saved.len(), 1, "one new file for run {run}: {saved:?}");
        let file = &saved[0];
        let meta = std::fs::symlink_metadata(file).unwrap();
        assert!(meta.file_type().is_file(), "a regular file, not a link");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{file:?}");
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            screen.replace('\n', "").contains(&name),
            "the screen names the file: {screen}"
        );
        assert!(std::fs::read_to_string(file)
            .unwrap()
            .contains(&format!("orch-verify probe {run} 1")));
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert_eq!(
        std::fs::read_to_string(&other).unwrap(),
        "another project's message\n"
    );
    let planted = env.path().join("orch-verify-run-1.txt");
    assert!(std::fs::symlink_metadata(&planted)
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn bare_orch_verify_in_a_terminal_keeps_bad_settings_and_stops_on_ctrl_c() {
    let env = Env::new();
    std::fs::create_dir_all(env.path().join(".claude")).unwrap();
    let settings = env.path().join(".claude/settings.local.json");
    std::fs::write(&settings, "{ \"model\": ").unwrap();
    let tmux = Tmux::start(&env, &session_script(&env, ""));
    let screen = tmux.wait_for("[y/N]", 20);
    assert!(screen.contains("starts 4 agents"), "the defaults: {screen}");
    tmux.keys(&["y", "Enter"]);
    let screen = tmux.wait_for("Step 3 of 3", 20);
    assert!(
        screen.contains("Could not add it") && screen.contains("not valid JSON"),
        "{screen}"
    );
    assert_eq!(
        std::fs::read_to_string(&settings).unwrap(),
        "{ \"model\": ",
        "left untouched"
    );
    tmux.keys(&["C-c"]);
    let screen = tmux.wait_for("exit=", 20);
    assert!(
        screen.contains("exit=130") && screen.contains("Stopped waiting"),
        "{screen}"
    );
}

/// On a terminal (a pty from `script`), --watch draws once, then once per
/// change, in place (cursor home, clear to end), and not while nothing changes.
#[test]
fn status_watch_redraws_only_on_change() {
    assert!(
        std::process::Command::new("script")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "`script` (util-linux) is not installed: run scripts/test-deps.sh"
    );
    let env = Env::new();
    let log = env.path().join("typescript");
    let mut child = env
        .command("script")
        .args(["-qfc", "timeout 30 orch status --watch"])
        .arg(&log)
        .env("ORCH_DB", &env.db)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let frames = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("\x1b[H")
            .count()
    };
    let wait_for = |n: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while frames() < n && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        frames()
    };
    assert_eq!(wait_for(1), 1, "first frame");
    env.add("dev", "Fix the flaky login test");
    assert_eq!(wait_for(2), 2, "a frame for the new database");
    env.add("dev", "Write the release notes");
    assert_eq!(wait_for(3), 3, "a frame for the change");
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert_eq!(frames(), 3, "no redraw while nothing changes");
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    let last = text.rsplit("\x1b[H").next().unwrap();
    assert!(last.contains("tasks     2 queued (2 ready)"), "{last:?}");
    assert!(
        last.contains("\x1b[K") && last.contains("\x1b[J"),
        "lines are cleared in place: {last:?}"
    );
    assert_eq!(
        text.matches("\x1b[2J").count(),
        1,
        "the screen is cleared once, not per frame"
    );
}

/// The generated zsh and fish completion scripts parse (`SHELL -n`) in the
/// real shells, which scripts/test-deps.sh installs.
#[test]
fn zsh_and_fish_accept_the_completion_scripts() {
    let env = Env::new();
    for shell in ["zsh", "fish"] {
        let text = env.ok("orch", &["completions", shell]);
        let f = env.path().join(format!("c.{shell}"));
        std::fs::write(&f, text).unwrap();
        let out = env
            .command(shell)
            .arg("-n")
            .arg(&f)
            .output()
            .unwrap_or_else(|e| panic!("{shell} is not installed ({e}): run scripts/test-deps.sh"));
        crate::common::assert_code(&out, 0);
    }
}

/// `orch-emit --format workflow --plan --install` at a terminal asks whether
/// to add the allow rule only after its batches are committed: while the
/// question waits, another writer (`orch-queue add`) gets the database at
/// once instead of waiting for the user's answer.
#[test]
fn workflow_install_asks_for_the_rule_with_no_transaction_open() {
    let env = Env::new();
    env.add("dev", "first");
    env.add("dev", "second");
    let tmux = Tmux::start(
        &env,
        &tool_script(&env, "orch-emit --format workflow --plan --install"),
    );
    let screen = tmux.wait_for("[y/N]", 20);
    assert!(screen.contains("Workflow(orch-batch-1)"), "{screen}");

    // The question waits: a concurrent writer must finish well within the
    // busy timeout (30 s) it would otherwise wait through.
    let mut add = env.cmd("orch-queue");
    add.args(["add", "dev", "while asked"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = add.spawn().unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("orch-queue add waited for the question's answer (the write lock was held)");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "orch-queue add failed while the question waited"
    );
    assert!(
        !tmux.screen().contains("exit="),
        "orch-emit stopped waiting before it was answered"
    );

    tmux.keys(&["y", "Enter"]);
    let screen = tmux.wait_for("exit=", 20);
    assert!(screen.contains("exit=0"), "{screen}");
    let local: Value = serde_json::from_str(
        &std::fs::read_to_string(env.path().join(".claude/settings.local.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        local["permissions"]["allow"],
        serde_json::json!(["Workflow(orch-batch-1)"])
    );
    let c = rusqlite::Connection::open(&env.db).unwrap();
    let queued: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM tasks WHERE status = 'queued'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        queued, 1,
        "the task added while the question waited is queued"
    );
}
