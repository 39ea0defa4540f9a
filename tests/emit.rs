//! orch-emit through the real binary: the claude message and the JSON object
//! carry hostile prompts byte for byte, the shell script runs them without
//! executing any of their text, subagent_type resolution, --copy, ids on stdin.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;

use crate::common::*;

/// Prompts that break naive quoting in JSON, Markdown or sh.
const HOSTILE: &[&str] = &[
    "say \"hi\" and 'bye'",
    "back\\slash \\n \\\" \\\\ end",
    "two\nlines\n\nand a blank one",
    "`rm -rf /` and ```fenced```",
    "close it \") }] and more \\\")",
    "emoji 🎉👩‍💻 and accents éàü",
    "עברית right-to-left \u{202e}override\u{202c} العربية",
    "$(touch PWNED_SUBST) ${HOME} $((1+1))",
    "`touch PWNED_TICK`",
    "it's; touch PWNED_SEMI; echo '",
    "'; rm -rf \"$HOME\"; echo '",
    "\t tabs \r\n crlf | pipe & amp > redirect < in",
    "-p --not-an-option",
    "orch-task: 999",
];

/// Queues every prompt byte-exact through --stdin; returns the ids in order.
fn queue_prompts(env: &Env, role: &str, prompts: &[&str]) -> Vec<i64> {
    let lines: String = prompts
        .iter()
        .map(|p| {
            serde_json::to_string(
                &serde_json::json!({"role": role, "prompt": p, "description": "Hostile prompt"}),
            )
            .unwrap()
                + "\n"
        })
        .collect();
    env.ok_with("orch-queue", &["add", "--stdin"], lines.as_bytes())
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

fn create(env: &Env) -> i64 {
    env.ok("orch-batch", &["create", "--max", "100"])
        .trim()
        .parse()
        .unwrap()
}

/// The JSON array of Agent inputs inside the claude message.
fn calls_in_message(msg: &str) -> Vec<Value> {
    let start = msg.find("\n[\n").expect("a JSON array on its own lines") + 1;
    let end = msg.rfind("\n]\n").expect("the array's closing line") + 2;
    serde_json::from_str::<Vec<Value>>(&msg[start..end]).unwrap()
}

#[test]
fn claude_and_json_formats_keep_hostile_prompts_byte_for_byte() {
    let env = Env::new();
    let ids = queue_prompts(&env, "general-purpose", HOSTILE);
    let b = create(&env);
    let msg = env.ok("orch-emit", &[&b.to_string()]);
    let n = HOSTILE.len();
    assert!(
        msg.starts_with(&format!("Launch {n} agents in parallel: send ONE message")),
        "{msg}"
    );
    assert!(msg.contains("nothing else in that message"));
    assert!(
        msg.trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("Reminder: all"),
        "a one-line reminder ends it"
    );
    let calls = calls_in_message(&msg);
    let obj = json(&env.ok("orch-emit", &[&b.to_string(), "--format", "json"]));
    assert_eq!(obj["batch"], b);
    assert_eq!(obj["tool"], "Agent");
    assert_eq!(obj["tasks"], serde_json::json!(ids));
    assert_eq!(
        obj["calls"],
        Value::Array(calls.clone()),
        "the json format carries the same calls"
    );
    assert_eq!(calls.len(), n);
    for ((call, id), prompt) in calls.iter().zip(&ids).zip(HOSTILE) {
        let keys: Vec<&str> = call
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            ["description", "prompt", "subagent_type"],
            "only keys the Agent tool accepts"
        );
        assert_eq!(call["subagent_type"], "general-purpose");
        assert_eq!(call["description"], "Hostile prompt");
        let want = format!("{prompt}\n\norch-task: {id}");
        assert_eq!(call["prompt"].as_str().unwrap().as_bytes(), want.as_bytes());
    }
    // Emitting records when; showing the batch says so.
    let shown = json(&env.ok("orch-batch", &["show", &b.to_string(), "--json"]));
    assert!(shown["emitted_at"].is_string());
}

#[test]
fn hostile_prompts_given_as_arguments_survive_too() {
    let env = Env::new();
    let mut ids = Vec::new();
    for p in HOSTILE {
        let id: i64 = env
            .ok(
                "orch-queue",
                &["add", "Explore", "-d", "From argv", "--", p],
            )
            .trim()
            .parse()
            .unwrap();
        ids.push(id);
    }
    let b = create(&env);
    let calls = calls_in_message(&env.ok("orch-emit", &[&b.to_string()]));
    for ((call, id), prompt) in calls.iter().zip(&ids).zip(HOSTILE) {
        assert_eq!(call["subagent_type"], "Explore");
        assert_eq!(
            call["prompt"].as_str().unwrap(),
            format!("{prompt}\n\norch-task: {id}")
        );
    }
}

#[test]
fn subagent_type_from_agent_files_built_ins_or_omitted() {
    let env = Env::new();
    let project = env.path().join("repo");
    let sub = project.join("src/deep");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::create_dir_all(project.join(".git")).unwrap();
    std::fs::create_dir_all(project.join(".claude/agents")).unwrap();
    std::fs::write(
        project.join(".claude/agents/code-reviewer.md"),
        "---\nname: code-reviewer\ndescription: Reviews code\n---\nYou review code.\n",
    )
    .unwrap();
    // Above the repository root: not searched.
    std::fs::create_dir_all(env.path().join(".claude/agents")).unwrap();
    std::fs::write(
        env.path().join(".claude/agents/outsider.md"),
        "---\nname: outsider\n---\n",
    )
    .unwrap();
    // The user's own agents.
    std::fs::create_dir_all(env.home().join(".claude/agents")).unwrap();
    std::fs::write(
        env.home().join(".claude/agents/mine.md"),
        "---\nname: personal\ndescription: Mine\n---\n",
    )
    .unwrap();
    let roles = [
        "code-reviewer",
        "Plan",
        "personal",
        "outsider",
        "mystery",
        "mystery",
    ];
    let mut ids = Vec::new();
    for r in roles {
        ids.push(env.add(r, &format!("work for {r}")));
    }
    let b = create(&env);
    let out = env
        .cmd("orch-emit")
        .arg(b.to_string())
        .current_dir(&sub)
        .output()
        .unwrap();
    assert_code(&out, 0);
    let calls = calls_in_message(&String::from_utf8(out.stdout).unwrap());
    let stderr = String::from_utf8(out.stderr).unwrap();
    let by_role: HashMap<&str, &Value> = roles.iter().copied().zip(&calls).collect();
    assert_eq!(by_role["code-reviewer"]["subagent_type"], "code-reviewer");
    assert_eq!(by_role["Plan"]["subagent_type"], "Plan");
    assert_eq!(by_role["personal"]["subagent_type"], "personal");
    for (i, r) in roles.iter().enumerate() {
        if ["outsider", "mystery"].contains(r) {
            let call = calls[i].as_object().unwrap();
            assert!(
                !call.contains_key("subagent_type"),
                "{r}: omitted, so general-purpose"
            );
            let p = call["prompt"].as_str().unwrap();
            assert_eq!(
                p,
                format!("Role: {r}\n\nwork for {r}\n\norch-task: {}", ids[i])
            );
        }
    }
    let notes: Vec<&str> = stderr.lines().collect();
    assert_eq!(notes.len(), 2, "one note per unknown role: {stderr}");
    assert!(notes.iter().all(|l| l.starts_with("orch-emit: note: ")));
    assert!(
        stderr.contains("'mystery'") && stderr.contains(&format!("tasks {}, {}", ids[4], ids[5])),
        "{stderr}"
    );
}

#[test]
fn issue17_7_markdown_format_and_no_size_warning() {
    let env = Env::new();
    let lines: String = (0..12)
        .map(|i| format!("{{\"role\":\"Explore\",\"prompt\":\"look at {i} ```x```\"}}\n"))
        .collect();
    env.ok_with("orch-queue", &["add", "--stdin"], lines.as_bytes());
    let b = create(&env);
    let out = env.run("orch-emit", &[&b.to_string(), "--format", "markdown"]);
    assert_code(&out, 0);
    let md = String::from_utf8(out.stdout).unwrap();
    assert!(md.starts_with(&format!("# orch batch {b}: 12 tasks")));
    assert!(
        md.contains("````text\nlook at 0 ```x```"),
        "the fence outgrows backticks in the prompt"
    );
    // Twelve Agent calls in one message start together in Claude Code's main
    // loop: no warning about the size.
    assert_eq!(String::from_utf8(out.stderr).unwrap(), "");
}

#[test]
fn batch_id_comes_on_stdin_and_through_a_pipeline() {
    let env = Env::new();
    env.add("Explore", "piped");
    let mut batch = env
        .cmd("orch-batch")
        .args(["create"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let emit = env
        .cmd("orch-emit")
        .arg("--format=json")
        .stdin(batch.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(batch.wait().unwrap().success());
    assert_code(&emit, 0);
    let v = json(&String::from_utf8(emit.stdout).unwrap());
    assert_eq!(v["calls"][0]["prompt"], "piped\n\norch-task: 1");
    // An empty stdin (nothing was ready) is a clear error, not a hang.
    let err = assert_error(&env.run_with("orch-emit", &[], b""), "orch-emit");
    assert!(err.contains("no batch id"), "{err}");
    for args in [&["99"][..], &["0"], &["--format", "yaml", "1"]] {
        assert_error(&env.run("orch-emit", args), "orch-emit");
    }
    assert_error(&env.run_with("orch-emit", &[], b"soon\n"), "orch-emit");
}

#[test]
fn a_batch_with_nothing_left_to_launch_is_an_error() {
    let env = Env::new();
    let id = env.add("Explore", "x");
    let b = create(&env);
    env.ok("orch-queue", &["start", &id.to_string()]);
    let err = assert_error(&env.run("orch-emit", &[&b.to_string()]), "orch-emit");
    assert!(err.contains("no task waiting"), "{err}");
}

/// A bin directory holding only `sh`-script fakes (and links to what they need).
fn fake_bin(env: &Env, files: &[(&str, &str)]) -> PathBuf {
    let dir = env.path().join("fakebin");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, body) in files {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

#[test]
fn copy_without_a_clipboard_tool_is_a_clear_error_and_with_one_copies() {
    let env = Env::new();
    env.add("Explore", "copy me");
    let b = create(&env).to_string();
    // A PATH with no clipboard tool at all.
    let empty = env.path().join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    let out = env
        .cmd("orch-emit")
        .args([&b, "--copy"])
        .env("PATH", &empty)
        .env("DISPLAY", ":0")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .unwrap();
    let err = assert_error(&out, "orch-emit");
    assert!(err.contains("no clipboard tool"), "{err}");
    assert!(out.stdout.is_empty());
    assert!(
        json(&env.ok("orch-batch", &["show", &b, "--json"]))["emitted_at"].is_null(),
        "nothing recorded"
    );
    // A fake xclip that records what it was given.
    let clip = env.path().join("clipboard.txt");
    let bin = fake_bin(
        &env,
        &[("xclip", &format!("#!/bin/sh\ncat > '{}'\n", clip.display()))],
    );
    let out = env
        .cmd("orch-emit")
        .args([&b, "--copy"])
        .env("PATH", path_with(&[&bin, &bin_dir()]))
        .env("DISPLAY", ":0")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .unwrap();
    assert_code(&out, 0);
    assert_eq!(
        std::fs::read(&clip).unwrap(),
        out.stdout,
        "the clipboard holds exactly what was printed"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("copied to the clipboard (xclip)"));
}

#[test]
fn shell_format_runs_hostile_prompts_without_executing_them() {
    let env = Env::new();
    let mut prompts: Vec<&str> = HOSTILE.to_vec();
    prompts.push("please FAIL this one");
    let ids = queue_prompts(&env, "general-purpose", &prompts);
    let b = create(&env);
    let script = env.ok("orch-emit", &[&b.to_string(), "--format", "shell"]);
    assert!(script.starts_with("#!/bin/sh\n"));
    // A fake `claude` that records its arguments and stdin, answers with the
    // prompt's last line, and fails when asked to.
    let rec = env.path().join("rec");
    std::fs::create_dir_all(&rec).unwrap();
    let fake = format!(
        "#!/bin/sh\n\
         d='{rec}'\n\
         n=$(mktemp \"$d/call.XXXXXX\")\n\
         printf '%s\\n' \"$@\" > \"$n.args\"\n\
         cat > \"$n.stdin\"\n\
         if grep -q FAIL \"$n.stdin\"; then echo 'it failed' >&2; exit 3; fi\n\
         printf 'answer to %s' \"$(tail -n 1 \"$n.stdin\")\"\n",
        rec = rec.display()
    );
    let bin = fake_bin(&env, &[("claude", &fake)]);
    let work = env.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("run.sh"), &script).unwrap();
    let out = env
        .command("sh")
        .arg("run.sh")
        .current_dir(&work)
        .env("PATH", path_with(&[&bin, &bin_dir()]))
        .output()
        .unwrap();
    assert_code(&out, 0);
    // Nothing in any prompt was executed, here or in the project directory.
    for dir in [&work, &env.path().to_path_buf()] {
        for marker in ["PWNED_SUBST", "PWNED_TICK", "PWNED_SEMI"] {
            assert!(!dir.join(marker).exists(), "{marker} was executed");
        }
    }
    assert!(env.home().exists(), "HOME survived");
    // The agent got each prompt byte for byte on stdin, and `-p` as its only argument.
    let mut seen = Vec::new();
    for e in std::fs::read_dir(&rec).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "stdin") {
            seen.push(std::fs::read_to_string(&p).unwrap());
            let args = std::fs::read_to_string(p.with_extension("args")).unwrap();
            assert_eq!(args, "-p\n");
        }
    }
    seen.sort();
    let mut want: Vec<String> = prompts
        .iter()
        .zip(&ids)
        .map(|(p, id)| format!("{p}\n\norch-task: {id}"))
        .collect();
    want.sort();
    assert_eq!(seen, want);
    // Each result was recorded through orch-queue.
    for (p, id) in prompts.iter().zip(&ids) {
        let t = json(&env.ok("orch-queue", &["show", &id.to_string(), "--json"]));
        if p.contains("FAIL") {
            assert_eq!(status(&env, *id), "failed");
            assert_eq!(t["exit_code"], 3);
            assert!(t["error"].as_str().unwrap().contains("it failed"), "{t}");
        } else {
            assert_eq!(status(&env, *id), "done", "task {id}");
            assert_eq!(t["result"], format!("answer to orch-task: {id}"));
        }
    }
}

/// Item 6: the message is printed first and the batch marked emitted after,
/// so a stdout that fails leaves the batch unemitted and nothing written (exit 2).
#[test]
fn item6_emit_to_a_failing_stdout_marks_nothing() {
    let env = Env::new();
    env.add("dev", "one");
    env.ok("orch-batch", &["create"]);
    for how in BadStdout::ALL {
        let out = env.run_bad_stdout("orch-emit", &["1"], b"", how);
        assert_code(&out, 2);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.lines()
                .last()
                .unwrap()
                .starts_with("orch-emit: error: "),
            "{err}"
        );
        let emitted: Option<i64> = env
            .sql()
            .query_row("SELECT emitted_at FROM batches WHERE id = 1", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(emitted, None, "{how:?}");
    }
    env.ok("orch-emit", &["1"]);
    let emitted: Option<i64> = env
        .sql()
        .query_row("SELECT emitted_at FROM batches WHERE id = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(emitted.is_some());
}

/// Emits a batch of one task per role from `dir` with `envs`; the calls and stderr.
fn emit_roles(
    env: &Env,
    dir: &Path,
    roles: &[&str],
    envs: &[(&str, &Path)],
) -> (Vec<Value>, String) {
    for r in roles {
        env.add(r, &format!("work for {r}"));
    }
    let b = create(env);
    let mut c = env.cmd("orch-emit");
    c.arg(b.to_string()).current_dir(dir);
    for (k, v) in envs {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    assert_code(&out, 0);
    (
        calls_in_message(&String::from_utf8(out.stdout).unwrap()),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn agent_file(dir: &Path, file: &str, body: &str) {
    let p = dir.join(".claude/agents").join(file);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
}

#[test]
fn issue17_3_agent_lookup_matches_claude_code() {
    let env = Env::new();
    let project = env.path().join("repo");
    std::fs::create_dir_all(project.join(".git")).unwrap();
    agent_file(&project, "nodesc.md", "---\nname: no-desc\n---\nhi\n");
    agent_file(
        &project,
        "empty.md",
        "---\nname: empty-desc\ndescription: \"\"\n---\n",
    );
    agent_file(
        &project,
        "team/deep/nested.md",
        "---\nname: nested_agent\ndescription: deep\n---\n",
    );
    agent_file(
        &project,
        "q.md",
        "---\nname: \"Quoted Name\"\ndescription: >\n  folded\n---\n",
    );
    // CLAUDE_CONFIG_DIR replaces ~/.claude.
    let config = env.path().join("config");
    std::fs::create_dir_all(config.join("agents")).unwrap();
    std::fs::write(
        config.join("agents/c.md"),
        "---\nname: cfg-agent\ndescription: d\n---\n",
    )
    .unwrap();
    agent_file(
        &env.home(),
        "h.md",
        "---\nname: home-agent\ndescription: d\n---\n",
    );
    let roles = [
        "no-desc",
        "empty-desc",
        "nested-agent",
        "quoted-name",
        "explore",
        "statusline-setup",
        "claude",
        "claude-code-guide",
        "cfg-agent",
        "home-agent",
    ];
    let (calls, stderr) = emit_roles(&env, &project, &roles, &[("CLAUDE_CONFIG_DIR", &config)]);
    let types: Vec<Option<&str>> = calls.iter().map(|c| c["subagent_type"].as_str()).collect();
    assert_eq!(
        types,
        [
            None,
            None,
            Some("nested_agent"),
            Some("Quoted Name"),
            Some("Explore"),
            Some("statusline-setup"),
            Some("claude"),
            None,
            Some("cfg-agent"),
            None,
        ],
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "nodesc.md has no `description:` in its front matter, so Claude Code skips it"
        ),
        "{stderr}"
    );
}

#[test]
fn issue17_3_coordinator_mode_has_only_worker_and_the_defined_agents() {
    let env = Env::new();
    std::fs::create_dir_all(env.path().join(".git")).unwrap();
    agent_file(
        env.path(),
        "w.md",
        "---\nname: with-desc\ndescription: d\n---\n",
    );
    for on in ["1", "true", "ON"] {
        let flag = std::ffi::OsString::from(on);
        let (calls, _) = emit_roles(
            &env,
            env.path(),
            &["Explore", "general-purpose", "worker", "with-desc"],
            &[("CLAUDE_CODE_COORDINATOR_MODE", Path::new(&flag))],
        );
        let types: Vec<Option<&str>> = calls.iter().map(|c| c["subagent_type"].as_str()).collect();
        assert_eq!(
            types,
            [None, None, Some("worker"), Some("with-desc")],
            "{on}"
        );
    }
}

#[test]
fn issue17_8_only_a_task_that_asks_for_a_name_carries_one() {
    let env = Env::new();
    // A name spawns a teammate when agent teams are on, so it is sent only
    // when the task sets it (`--name`, or "name" on a line).
    let named = env.ok_with(
        "orch-queue",
        &["add", "--stdin"],
        b"{\"role\":\"Explore\",\"prompt\":\"map it\",\"name\":\"mapper\"}\n",
    );
    for (role, prompt) in [
        ("Explore", "name: mapper"),
        ("reviewer", "{\"name\": \"x\"}"),
    ] {
        env.add(role, prompt);
    }
    let b = create(&env).to_string();
    let emitted = json(&env.ok("orch-emit", &[&b, "--format", "json"]));
    let tasks = emitted["tasks"].as_array().unwrap();
    for (t, c) in tasks.iter().zip(emitted["calls"].as_array().unwrap()) {
        let keys: Vec<&String> = c.as_object().unwrap().keys().collect();
        if t.as_i64() == named.trim().parse().ok() {
            assert_eq!(c["name"], "mapper", "{c}");
        } else {
            assert!(
                keys.iter()
                    .all(|k| ["description", "prompt", "subagent_type"].contains(&k.as_str())),
                "{c}"
            );
        }
    }
}

#[test]
fn item15_emitting_a_batch_again_notes_when_it_was_first_emitted() {
    let env = Env::new();
    env.add("dev", "Fix the bug");
    let b = create(&env).to_string();
    let first = env.run("orch-emit", &[&b]);
    assert_code(&first, 0);
    assert!(!String::from_utf8_lossy(&first.stderr).contains("already emitted"));
    let at: i64 = env
        .sql()
        .query_row("SELECT emitted_at FROM batches", [], |r| r.get(0))
        .unwrap();
    let again = env.run("orch-emit", &[&b]);
    assert_code(&again, 0);
    assert_eq!(again.stdout, first.stdout, "the same message");
    let err = String::from_utf8_lossy(&again.stderr);
    let shown = json(&env.ok("orch-batch", &["show", &b, "--json"]))["emitted_at"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        err.contains(&format!("batch {b} was already emitted at {shown}")),
        "{err}"
    );
    let still: i64 = env
        .sql()
        .query_row("SELECT emitted_at FROM batches", [], |r| r.get(0))
        .unwrap();
    assert_eq!(still, at, "the first time is kept");
}

/// Issue 17 item 8: a task that sets `name` is emitted with it (issue 13), and
/// every emit says on stderr that a named call spawns a teammate.
#[test]
fn issue17_8_a_named_task_is_emitted_with_a_note_on_stderr() {
    let env = Env::new();
    env.ok(
        "orch-queue",
        &["add", "Explore", "--name", "mapper", "map it"],
    );
    env.add("Explore", "plain");
    let b = create(&env).to_string();
    let out = env.run("orch-emit", &[&b, "--format", "json"]);
    assert_code(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("task 1 sets `name`") && err.contains("spawns a teammate"),
        "{err}"
    );
    assert!(!err.contains("task 2 sets"), "{err}");
}

/// The shell script never leaves a task running when orch-queue refuses what
/// the agent printed: an error whose last 2000 bytes start inside a
/// character (`tail -c` cuts bytes) still fails the task, and a result that
/// is not UTF-8 still finishes it, each with a line saying what was lost.
#[test]
fn shell_format_never_leaves_a_task_running_on_output_orch_refuses() {
    let env = Env::new();
    let ids = queue_prompts(&env, "general-purpose", &["please FAIL", "binary please"]);
    let b = create(&env);
    let script = env.ok("orch-emit", &[&b.to_string(), "--format", "shell"]);
    // é (2 bytes) then 1996 x then € (3 bytes): the last 2000 bytes begin
    // with é's second byte.
    let fake = "#!/bin/sh\n\
         if grep -q FAIL; then printf '\\303\\251'; head -c 1996 /dev/zero | tr '\\0' x; printf '\\342\\202\\254' ; exit 3; fi >&2\n\
         printf 'ok \\377\\376 bytes'\n";
    let bin = fake_bin(&env, &[("claude", fake)]);
    let work = env.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("run.sh"), &script).unwrap();
    let out = env
        .command("sh")
        .arg("run.sh")
        .current_dir(&work)
        .env("PATH", path_with(&[&bin, &bin_dir()]))
        .output()
        .unwrap();
    assert_code(&out, 0);
    let failed = json(&env.ok("orch-queue", &["show", &ids[0].to_string(), "--json"]));
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"], "agent exited with status 3");
    assert_eq!(failed["exit_code"], 3);
    let done = json(&env.ok("orch-queue", &["show", &ids[1].to_string(), "--json"]));
    assert_eq!(done["status"], "done", "{done}");
    assert!(
        done["result"].as_str().unwrap().contains("not UTF-8"),
        "{done}"
    );
}

/// Agent file names and names from their front matter reach the terminal in
/// orch-emit's note escaped, as does orch-hook status's hook command.
#[test]
fn escapes_in_agent_files_and_hook_commands_never_reach_the_terminal() {
    let env = Env::new();
    std::fs::create_dir_all(env.path().join(".git")).unwrap();
    let agents = env.path().join(".claude/agents");
    std::fs::create_dir_all(&agents).unwrap();
    // No description: Claude Code skips it, and the note names the file.
    std::fs::write(
        agents.join("evil\u{1b}]52;c;cHduZWQ=\u{7}\u{202e}.md"),
        "---\nname: tester\n---\n",
    )
    .unwrap();
    env.add("tester", "Test it");
    let b = create(&env).to_string();
    let mut c = env.cmd("orch-emit");
    c.arg(&b).current_dir(env.path());
    let out = c.output().unwrap();
    assert_code(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("evil^[]52;c;cHduZWQ=^G<U+202E>.md"), "{err}");
    assert!(
        !err.contains('\u{1b}') && !err.contains('\u{202e}'),
        "{err:?}"
    );

    std::fs::write(
        env.path().join(".claude/settings.json"),
        "{\"hooks\":{\"Stop\":[{\"hooks\":[{\"type\":\"command\",\"command\":\"orch-hook --threshold 3 \\u001b[2J\\u001b]0;owned\\u0007\"}]}]}}\n",
    )
    .unwrap();
    let mut c = env.cmd("orch-hook");
    c.arg("status").current_dir(env.path());
    let out = c.output().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("^[[2J^[]0;owned^G"), "{shown}");
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
        "{shown:?}"
    );
}
