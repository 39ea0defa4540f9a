//! orch-msg through the real binary: exactly-once delivery under concurrent
//! receivers, broadcasts, waiting, peeking, bad input, and the mailbox line of
//! `orch-emit --with-mailbox`.

use std::collections::{BTreeSet, HashMap};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;

fn ids_of(stdout: impl AsRef<[u8]>) -> Vec<i64> {
    json_lines(&String::from_utf8_lossy(stdout.as_ref()))
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect()
}

/// Fails on any stderr that speaks of lock contention.
fn assert_no_lock_errors(outs: &[Output]) {
    for o in outs {
        let err = String::from_utf8_lossy(&o.stderr).to_lowercase();
        assert!(
            !err.contains("locked") && !err.contains("busy"),
            "lock trouble on stderr: {err}"
        );
    }
}

#[test]
fn twenty_receivers_drain_a_thousand_messages_exactly_once() {
    let env = Arc::new(Env::new());
    env.db_ready(); // create the file before the crowd arrives
    let start = Instant::now();
    let senders_done = Arc::new(AtomicBool::new(false));
    let outputs = Arc::new(Mutex::new(Vec::<Output>::new()));

    // 20 receivers for one name, each a loop of real `recv` processes. A receiver
    // stops on "none waiting" only when that answer was asked for after every
    // sender had finished.
    let receivers: Vec<_> = (0..20)
        .map(|i| {
            let (env, done, outputs) = (env.clone(), senders_done.clone(), outputs.clone());
            std::thread::spawn(move || {
                let max = (1 + i % 7).to_string();
                let mut got = Vec::new();
                loop {
                    let after_senders = done.load(Ordering::SeqCst);
                    let out = env.run(
                        "orch-msg",
                        &[
                            "recv", "--as", "worker", "--max", &max, "--wait", "0.2", "--json",
                        ],
                    );
                    match out.status.code() {
                        Some(0) => {
                            let ids = ids_of(&out.stdout);
                            assert!(!ids.is_empty() && ids.len() <= 1 + i % 7, "{ids:?}");
                            got.extend(ids);
                        }
                        Some(1) if after_senders => {
                            outputs.lock().unwrap().push(out);
                            break;
                        }
                        Some(1) => {}
                        _ => panic!("recv failed: {}", String::from_utf8_lossy(&out.stderr)),
                    }
                    outputs.lock().unwrap().push(out);
                }
                got
            })
        })
        .collect();

    // 10 senders of 100 messages each: 4 single sends and 4 bulk sends of 24 lines.
    let senders: Vec<_> = (0..10)
        .map(|s| {
            let (env, outputs) = (env.clone(), outputs.clone());
            std::thread::spawn(move || {
                let from = format!("sender{s}");
                let mut sent = Vec::new();
                for round in 0..4 {
                    let body = format!("single {round} from {from}");
                    let out = env.run(
                        "orch-msg",
                        &["send", "--from", &from, "--to", "worker", &body],
                    );
                    assert_code(&out, 0);
                    sent.push(
                        String::from_utf8_lossy(&out.stdout)
                            .trim()
                            .parse::<i64>()
                            .unwrap(),
                    );
                    outputs.lock().unwrap().push(out);
                    let lines: String = (0..24)
                        .map(|k| {
                            format!(
                                "{{\"to\":\"worker\",\"body\":\"bulk {round}.{k} from {from}\"}}\n"
                            )
                        })
                        .collect();
                    let out = env.run_with(
                        "orch-msg",
                        &["send", "--from", &from, "--stdin"],
                        lines.as_bytes(),
                    );
                    assert_code(&out, 0);
                    let ids: Vec<i64> = String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .map(|l| l.parse().unwrap())
                        .collect();
                    assert_eq!(ids.len(), 24);
                    sent.extend(ids);
                    outputs.lock().unwrap().push(out);
                }
                sent
            })
        })
        .collect();

    let mut sent = Vec::new();
    for s in senders {
        sent.extend(s.join().unwrap());
    }
    senders_done.store(true, Ordering::SeqCst);
    let mut received = Vec::new();
    for r in receivers {
        received.extend(r.join().unwrap());
    }
    let elapsed = start.elapsed();

    assert_eq!(sent.len(), 1000);
    let sent_set: BTreeSet<i64> = sent.iter().copied().collect();
    assert_eq!(sent_set.len(), 1000, "send printed a duplicate id");
    let received_set: BTreeSet<i64> = received.iter().copied().collect();
    assert_eq!(
        received.len(),
        1000,
        "some message was received twice or not at all"
    );
    assert_eq!(received_set, sent_set);
    // Nothing is left, and the database agrees: one delivery per message.
    assert_code(&env.run("orch-msg", &["recv", "--as", "worker"]), 1);
    assert!(env
        .ok("orch-msg", &["list", "--unread", "--json"])
        .is_empty());
    assert_eq!(count(&env, "deliveries"), 1000);
    assert_no_lock_errors(&outputs.lock().unwrap());
    eprintln!("1000 messages, 10 senders, 20 receivers: {elapsed:?}");
}

#[test]
fn broadcast_reaches_each_distinct_reader_once() {
    let env = Arc::new(Env::new());
    let id: i64 = env
        .ok(
            "orch-msg",
            &[
                "send", "--from", "lead", "--to", "*", "--kind", "stop", "Freeze",
            ],
        )
        .trim()
        .parse()
        .unwrap();
    // Three processes per name ask at once; each name gets the broadcast once.
    let readers: Vec<_> = ["alpha", "beta", "gamma"]
        .iter()
        .flat_map(|name| (0..3).map(move |_| name.to_string()))
        .map(|name| {
            let env = env.clone();
            std::thread::spawn(move || {
                (
                    name.clone(),
                    env.run("orch-msg", &["recv", "--as", &name, "--json"]),
                )
            })
        })
        .collect();
    let mut got: HashMap<String, Vec<i64>> = HashMap::new();
    let mut outs = Vec::new();
    for r in readers {
        let (name, out) = r.join().unwrap();
        match out.status.code() {
            Some(0) => {
                let msgs = json_lines(&String::from_utf8_lossy(&out.stdout));
                assert_eq!(msgs.len(), 1);
                assert_eq!(msgs[0]["to"], "*");
                assert_eq!(msgs[0]["from"], "lead");
                assert_eq!(msgs[0]["kind"], "stop");
                assert_eq!(msgs[0]["body"], "Freeze");
                got.entry(name)
                    .or_default()
                    .push(msgs[0]["id"].as_i64().unwrap());
            }
            Some(1) => {}
            _ => panic!("recv failed: {}", String::from_utf8_lossy(&out.stderr)),
        }
        outs.push(out);
    }
    assert_no_lock_errors(&outs);
    for name in ["alpha", "beta", "gamma"] {
        assert_eq!(got.get(name), Some(&vec![id]), "{name}: {got:?}");
        assert_code(&env.run("orch-msg", &["recv", "--as", name]), 1);
    }
    // Its sender does not get it back; a name that asks later still does.
    assert_code(&env.run("orch-msg", &["recv", "--as", "lead"]), 1);
    assert_eq!(
        ids_of(env.ok("orch-msg", &["recv", "--as", "late", "--json"])),
        vec![id]
    );
    let listed = json_lines(&env.ok("orch-msg", &["list", "--json"]));
    let readers: BTreeSet<&str> = listed[0]["read_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["reader"].as_str().unwrap())
        .collect();
    assert_eq!(readers, BTreeSet::from(["alpha", "beta", "gamma", "late"]));
    assert_eq!(count(&env, "deliveries"), 4);
}

#[test]
fn wait_returns_when_a_message_arrives_and_exits_1_on_timeout() {
    let env = Env::new();
    env.db_ready();
    let start = Instant::now();
    let child = env
        .cmd("orch-msg")
        .args(["recv", "--as", "w", "--wait", "10", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let id: i64 = env
        .ok("orch-msg", &["send", "--from", "a", "--to", "w", "wake up"])
        .trim()
        .parse()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let elapsed = start.elapsed();
    assert_code(&out, 0);
    assert_eq!(ids_of(&out.stdout), vec![id]);
    assert!(
        elapsed >= Duration::from_millis(450),
        "returned before the message was sent: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "woke at the end of --wait, not on the message: {elapsed:?}"
    );

    // Nothing arrives: exit 1 at the end of the wait, not before, nothing on stdout.
    let start = Instant::now();
    let out = env.run("orch-msg", &["recv", "--as", "w", "--wait", "0.6"]);
    let elapsed = start.elapsed();
    assert_code(&out, 1);
    assert!(out.stdout.is_empty());
    assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[test]
fn peek_does_not_claim() {
    let env = Env::new();
    let id: i64 = env
        .ok("orch-msg", &["send", "--from", "a", "--to", "b", "hello"])
        .trim()
        .parse()
        .unwrap();
    for _ in 0..2 {
        assert_eq!(
            ids_of(env.ok("orch-msg", &["recv", "--as", "b", "--peek", "--json"])),
            vec![id]
        );
    }
    assert_eq!(count(&env, "deliveries"), 0);
    let unread = json_lines(&env.ok("orch-msg", &["list", "--to", "b", "--unread", "--json"]));
    assert_eq!(unread.len(), 1);
    let human = env.ok("orch-msg", &["recv", "--as", "b"]);
    assert!(
        human.starts_with(&format!("message {id} from a to b ")),
        "{human}"
    );
    assert!(human.ends_with("\nhello\n"), "{human}");
    assert_code(&env.run("orch-msg", &["recv", "--as", "b", "--peek"]), 1);
    let listed = json_lines(&env.ok("orch-msg", &["list", "--to", "b", "--json"]));
    assert_eq!(listed[0]["read_by"][0]["reader"], "b");
}

#[test]
fn bodies_round_trip_exactly_from_stdin() {
    let env = Env::new();
    let body = "line one\n  \"quoted\" `ticks` ünïcödé\n\n";
    env.ok_with(
        "orch-msg",
        &["send", "--from", "a", "--to", "b", "--kind", "note", "-"],
        body.as_bytes(),
    );
    let got = json_lines(&env.ok("orch-msg", &["recv", "--as", "b", "--json"]));
    assert_eq!(got[0]["body"], body);
    assert_eq!(got[0]["kind"], "note");
    // An exactly 1 MiB body is accepted.
    let big = "x".repeat(1 << 20);
    env.ok_with(
        "orch-msg",
        &["send", "--from", "a", "--to", "b", "-"],
        big.as_bytes(),
    );
    let got = json_lines(&env.ok("orch-msg", &["recv", "--as", "b", "--json"]));
    assert_eq!(got[0]["body"].as_str().unwrap().len(), 1 << 20);
}

#[test]
fn bad_input_is_refused_and_nothing_is_stored() {
    use std::os::unix::ffi::OsStrExt;
    let env = Env::new();
    env.db_ready();
    let too_big = vec![b'x'; (1 << 20) + 1];
    let cases: Vec<(Vec<&str>, &[u8])> = vec![
        (vec!["send", "--from", "a", "--to", "b", ""], b""),
        (vec!["send", "--from", "a", "--to", "b", "   "], b""),
        (vec!["send", "--from", "a", "--to", "b", "-"], b""),
        (vec!["send", "--from", "a", "--to", "b", "-"], &too_big),
        (vec!["send", "--from", "a", "--to", "b", "-"], b"caf\xe9"),
        (vec!["send", "--from", "a", "--to", "b", "-"], b"nul\0byte"),
        (vec!["send", "--from", "*", "--to", "b", "hi"], b""),
        (vec!["send", "--from", "a b", "--to", "b", "hi"], b""),
        (vec!["send", "--from", "a", "--to", "../b", "hi"], b""),
        (vec!["send", "--from", "a", "--to", "-b", "hi"], b""),
        (vec!["send", "--from", "a", "--to", "b", "--kind", "a kind", "hi"], b""),
        (vec!["send", "--from", "a", "--to", "b"], b""),
        (vec!["send", "--to", "b", "hi"], b""),
        // One bad line of three: none of them is stored.
        (
            vec!["send", "--from", "a", "--stdin"],
            b"{\"to\":\"b\",\"body\":\"ok\"}\n{\"to\":\"b\",\"body\":\"\"}\n{\"to\":\"c\",\"body\":\"ok\"}\n",
        ),
        (vec!["send", "--from", "a", "--stdin"], b"{\"to\":\"b\",\"body\":\"ok\",\"extra\":1}\n"),
        (vec!["send", "--from", "a", "--stdin"], b"{\"body\":\"no recipient\"}\n"),
        (vec!["send", "--from", "a", "--stdin"], b""),
        (vec!["recv", "--as", "*"], b""),
        (vec!["recv", "--as", "a/b"], b""),
        (vec!["recv", "--as", "b", "--max", "0"], b""),
        (vec!["recv", "--as", "b", "--wait", "soon"], b""),
        (vec!["list", "--from", "*"], b""),
        (vec!["purge", "--older-than", "a while"], b""),
    ];
    for (args, stdin) in cases {
        let out = env.run_with("orch-msg", &args, stdin);
        let err = assert_error(&out, "orch-msg");
        assert!(!err.contains("locked") && !err.contains("busy"), "{err}");
        assert_eq!(count(&env, "messages"), 0, "{args:?} stored something");
    }
    // A body argument that is not UTF-8.
    let out = env
        .cmd("orch-msg")
        .args(["send", "--from", "a", "--to", "b"])
        .arg(std::ffi::OsStr::from_bytes(b"caf\xe9"))
        .output()
        .unwrap();
    assert_error(&out, "orch-msg");
    assert_eq!(count(&env, "messages"), 0);
    assert_eq!(count(&env, "deliveries"), 0);
}

#[test]
fn list_filters_and_purge_deletes_old_messages() {
    let env = Env::new();
    env.ok("orch-msg", &["send", "--from", "a", "--to", "b", "to b"]);
    env.ok("orch-msg", &["send", "--from", "c", "--to", "*", "to all"]);
    env.ok("orch-msg", &["send", "--from", "b", "--to", "a", "to a"]);
    let bodies = |args: &[&str]| -> Vec<String> {
        json_lines(&env.ok("orch-msg", args))
            .iter()
            .map(|m| m["body"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(bodies(&["list", "--json"]), ["to b", "to all", "to a"]);
    assert_eq!(bodies(&["list", "--to", "b", "--json"]), ["to b", "to all"]);
    assert_eq!(bodies(&["list", "--to", "*", "--json"]), ["to all"]);
    assert_eq!(bodies(&["list", "--from", "b", "--json"]), ["to a"]);
    assert_eq!(
        bodies(&["list", "--to", "c", "--json"]),
        Vec::<String>::new()
    );
    env.ok("orch-msg", &["recv", "--as", "b"]);
    assert_eq!(
        bodies(&["list", "--to", "b", "--unread", "--json"]),
        Vec::<String>::new()
    );
    assert_eq!(
        bodies(&["list", "--to", "a", "--unread", "--json"]),
        ["to all", "to a"]
    );
    assert_eq!(bodies(&["list", "--unread", "--json"]), ["to a"]);
    let listed = json_lines(&env.ok("orch-msg", &["list", "--json"]));
    assert!(listed[0]["sent_at"].as_str().unwrap().ends_with('Z'));
    assert!(listed[0]["read_by"][0]["read_at"]
        .as_str()
        .unwrap()
        .ends_with('Z'));

    assert_eq!(
        env.ok("orch-msg", &["purge", "--older-than", "1h"]).trim(),
        "0"
    );
    assert_eq!(count(&env, "messages"), 3);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        env.ok("orch-msg", &["purge", "--older-than", "10ms"])
            .trim(),
        "3"
    );
    assert_eq!(count(&env, "messages"), 0);
    assert_eq!(count(&env, "deliveries"), 0);
}

/// The backtick-quoted command in `line` that contains `what`.
fn quoted_command<'a>(line: &'a str, what: &str) -> &'a str {
    line.split('`')
        .find(|s| s.starts_with("orch-msg") && s.contains(what))
        .unwrap()
}

#[test]
fn emit_with_mailbox_tells_each_agent_how_to_talk_to_its_peers() {
    let env = Env::new();
    env.add("backend", "Build the users API");
    env.add("frontend", "Build the users page");
    env.add("frontend", "Build the admin page");
    let batch = env.ok("orch-batch", &["create"]);
    let plain = env.ok("orch-emit", &[batch.trim(), "--format", "json"]);
    assert!(!plain.contains("orch-msg"), "{plain}");
    let json: serde_json::Value = serde_json::from_str(&env.ok(
        "orch-emit",
        &[batch.trim(), "--format", "json", "--with-mailbox"],
    ))
    .unwrap();
    let prompts: Vec<&str> = json["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["prompt"].as_str().unwrap())
        .collect();
    let names = ["backend", "frontend-2", "frontend-3"];
    let db = std::path::absolute(&env.db).unwrap();
    for (i, (prompt, me)) in prompts.iter().zip(names).enumerate() {
        let line = prompt
            .lines()
            .find(|l| l.starts_with("Mailbox:"))
            .expect(prompt);
        assert!(line.contains(&format!("your name is `{me}`")), "{line}");
        for peer in names.iter().filter(|&&p| p != me) {
            assert!(line.contains(&format!("`{peer}`")), "{line}");
        }
        let db_flag = format!("orch-msg --db {} ", db.display());
        assert!(
            line.contains(&format!("{db_flag}send --from {me} --to PEER")),
            "{line}"
        );
        assert!(line.contains(&format!("{db_flag}recv --as {me}")), "{line}");
        assert_eq!(
            prompt.lines().last(),
            Some(format!("orch-task: {}", i + 1).as_str())
        );
    }

    // The commands work as written from a shell that has no ORCH_DB.
    let backend = prompts[0]
        .lines()
        .find(|l| l.starts_with("Mailbox:"))
        .unwrap();
    let frontend = prompts[1]
        .lines()
        .find(|l| l.starts_with("Mailbox:"))
        .unwrap();
    let send = quoted_command(frontend, " send ")
        .replace("PEER", "backend")
        .replace("'TEXT'", "'users.email is unique'");
    let recv = format!("{} --json", quoted_command(backend, " recv "));
    let sh = |script: &str| {
        let mut paths = vec![bin_dir()];
        paths.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        env.command("sh")
            .args(["-c", script])
            .env("PATH", std::env::join_paths(paths).unwrap())
            .current_dir(env.home())
            .output()
            .unwrap()
    };
    assert_code(&sh(&send), 0);
    let out = sh(&recv);
    assert_code(&out, 0);
    let got = json_lines(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(got[0]["from"], "frontend-2");
    assert_eq!(got[0]["body"], "users.email is unique");
}

#[test]
fn emit_with_mailbox_names_no_database_for_a_project_database() {
    let env = Env::new();
    let run = |args: &[&str]| {
        let out = env
            .cmd(args[0])
            .args(&args[1..])
            .env_remove("ORCH_DB")
            .output()
            .unwrap();
        assert_code(&out, 0);
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["orch-queue", "init"]);
    run(&["orch-queue", "add", "solo", "Work alone"]);
    let batch = run(&["orch-batch", "create"]);
    let json: serde_json::Value = serde_json::from_str(&run(&[
        "orch-emit",
        batch.trim(),
        "--format",
        "json",
        "--with-mailbox",
    ]))
    .unwrap();
    let prompt = json["calls"][0]["prompt"].as_str().unwrap();
    assert!(prompt.contains("`orch-msg recv --as solo`"), "{prompt}");
    assert!(
        prompt.contains("no other agent runs in this batch"),
        "{prompt}"
    );
    assert!(!prompt.contains("--db"), "{prompt}");
}

/// Item 5: `recv` writes and flushes the messages before it claims them; a
/// stdout that fails (`> /dev/full`, a pipe nobody reads) or is closed
/// (`>&-`) claims nothing.
#[test]
fn item5_recv_to_a_failing_stdout_claims_nothing() {
    let env = Env::new();
    let first: i64 = env
        .ok("orch-msg", &["send", "--from", "a", "--to", "b", "first"])
        .trim()
        .parse()
        .unwrap();
    env.ok("orch-msg", &["send", "--from", "a", "--to", "*", "second"]);
    for how in [BadStdout::Full, BadStdout::NoReader, BadStdout::Closed] {
        for args in [
            &["recv", "--as", "b"][..],
            &["recv", "--as", "b", "--json", "--max", "1"],
            &["recv", "--as", "b", "--wait", "1"],
        ] {
            let out = env.run_bad_stdout("orch-msg", args, b"", how);
            let err = assert_error(&out, "orch-msg");
            assert!(
                err.contains("nothing was") || err.contains("stdout"),
                "{how:?} {args:?}: {err}"
            );
            assert_eq!(count(&env, "deliveries"), 0, "{how:?} {args:?}: claimed");
        }
    }
    // Both are still there for a reader whose stdout works.
    let got = json_lines(&env.ok("orch-msg", &["recv", "--as", "b", "--json"]));
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["id"], first);
    assert_eq!(count(&env, "deliveries"), 2);
}

/// Item 12: `--with-mailbox` gives every agent of a batch its own name, also
/// when a role looks like the name made up for another (`worker`, `worker`,
/// `worker-2`).
#[test]
fn item12_with_mailbox_names_are_unique_in_a_batch() {
    for roles in [
        &["worker", "worker", "worker-2"][..],
        &["worker-2", "worker", "worker", "worker-2-2"],
        &["a-3", "a", "a", "a-2", "a-3"],
    ] {
        let env = Env::new();
        for r in roles {
            env.add(r, "Do the thing");
        }
        let batch = env.ok("orch-batch", &["create"]);
        let json: serde_json::Value = serde_json::from_str(&env.ok(
            "orch-emit",
            &[batch.trim(), "--format", "json", "--with-mailbox"],
        ))
        .unwrap();
        let names: Vec<String> = json["calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let p = c["prompt"].as_str().unwrap();
                let line = p.lines().find(|l| l.starts_with("Mailbox:")).unwrap();
                line.split('`').nth(1).unwrap().to_string()
            })
            .collect();
        assert_eq!(names.len(), roles.len());
        let distinct: BTreeSet<&String> = names.iter().collect();
        assert_eq!(distinct.len(), names.len(), "{roles:?} -> {names:?}");
    }
}

/// Item 5: a reader that stops reading cannot hold the claim's write lock for
/// long: `recv` gives up after 2 s, claims nothing, and writers waiting
/// behind it go on, orch-hook (which waits the shortest, 3 s) included.
#[test]
fn item5_a_stalled_reader_claims_nothing_and_blocks_no_one_for_long() {
    let env = Env::new();
    let body = "x".repeat(100_000);
    for _ in 0..2 {
        env.ok("orch-msg", &["send", "--from", "a", "--to", "b", &body]);
    }
    let (read_end, write_end) = rustix::pipe::pipe().unwrap();
    let started = Instant::now();
    let mut recv = env.cmd("orch-msg");
    recv.args(["recv", "--as", "b"])
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::piped());
    let child = recv.spawn().unwrap();
    drop(recv);
    // The pipe fills and nobody reads it; a writer queues behind the lock.
    std::thread::sleep(Duration::from_millis(500));
    let hook = env.run_with(
        "orch-hook",
        &["PreToolUse"],
        br#"{"hook_event_name":"PreToolUse","session_id":"s","tool_name":"Agent","tool_use_id":"toolu_1","tool_input":{"description":"d","prompt":"p","subagent_type":"general-purpose"}}"#,
    );
    assert_code(&hook, 0);
    let add = env.run("orch-queue", &["add", "dev", "waits its turn"]);
    assert_code(&add, 0);
    let out = child.wait_with_output().unwrap();
    let took = started.elapsed();
    assert_error(&out, "orch-msg");
    assert!(took < Duration::from_secs(25), "{took:?}");
    assert_eq!(count(&env, "deliveries"), 0);
    assert_eq!(count(&env, "agent_calls"), 1, "the hook's event was kept");
    drop(read_end);
    let got = json_lines(&env.ok("orch-msg", &["recv", "--as", "b", "--json"]));
    assert_eq!(got.len(), 2);
}
