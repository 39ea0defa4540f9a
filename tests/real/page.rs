//! The pages of a run (`orch-batch report --html`, `orch-verify report
//! --html`, `orch-verify session --html`) in a real browser: headless Chromium
//! (Debian's `chromium`, installed by scripts/test-deps.sh) driven over the
//! DevTools protocol by `tests/real/browser.py`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::*;

const HOSTILE: &str = "<script>alert(1)</script> & \"quotes\" </title><img src=x>";

/// A finished 12-task batch run by `orch-run --agent claude` with the fake
/// claude: tasks 3 and 8 are rate limited once and retried (two attempts
/// each), task 5 fails for good, task 1's description is hostile.
fn twelve_task_run_with_retries(env: &Env) {
    let dir = env.path().join("agents");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fake-agent"),
        dir.join("claude"),
    )
    .unwrap();
    let state = env.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    for i in 1..=12 {
        let work = format!("sleep=0.{} say=ok cost=0.0{i}", i % 4 + 2);
        let prompt = match i {
            3 | 8 => format!("apierr=429 fails=1 {work}"),
            5 => "sleep=0.3 error=broken".to_string(),
            _ => work,
        };
        let mut args = vec!["add", "dev"];
        if i == 1 {
            args.extend(["--description", HOSTILE]);
        }
        args.push(&prompt);
        env.ok("orch-queue", &args);
    }
    env.ok("orch-batch", &["create", "--max", "12"]);
    let out = env
        .cmd("orch-run")
        .args(["1", "--agent", "claude", "-j", "4", "--backoff", "0.3s"])
        .env("PATH", path_with(&[&dir, &bin_dir()]))
        .env("FAKE_AGENT_STATE", &state)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_code(&out, 1);
}

/// Opens `page` in headless Chromium; the report of browser.py, checked for
/// what every page must be: no console message, no exception, no request but
/// the page itself, no script, the run on one printed A4 sheet (its events
/// start the next).
fn open_in_chromium(env: &Env, page: &Path) -> (serde_json::Value, PathBuf) {
    assert!(
        Path::new("/usr/lib/chromium/chromium").exists(),
        "the real tier needs Chromium (/usr/lib/chromium/chromium): run scripts/test-deps.sh"
    );
    let shot = page.with_extension("png");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/real/browser.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(format!("file://{}", page.display()))
        .arg(&shot)
        .current_dir(env.path())
        .output()
        .expect("the real tier needs python3");
    let report = json(&String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success(), "errors in the page: {report}");
    assert!(report["console"].as_array().unwrap().is_empty(), "{report}");
    assert!(
        report["exceptions"].as_array().unwrap().is_empty(),
        "{report}"
    );
    // The page itself and nothing else.
    assert_eq!(report["requests"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["dom"]["scripts"], 0, "{report}");
    assert_eq!(report["dom"]["printed_pages_before_events"], 1, "{report}");
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 2000,
        "no screenshot"
    );
    (report["dom"].clone(), shot)
}

/// Each bar's (left, right) in pixels, by row and attempt.
fn bars(dom: &serde_json::Value) -> Vec<(i64, i64, String, f64, f64, String)> {
    dom["bars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["row"].as_i64().unwrap(),
                b["attempt"].as_i64().unwrap(),
                b["outcome"].as_str().unwrap().to_string(),
                b["left"].as_f64().unwrap(),
                b["right"].as_f64().unwrap(),
                b["title"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn the_page_of_a_twelve_task_run_with_retries_and_a_failure_in_headless_chromium() {
    let env = Env::new();
    twelve_task_run_with_retries(&env);
    let page = env.path().join("run.html");
    env.ok(
        "orch-batch",
        &["report", "1", "--html", page.to_str().unwrap()],
    );
    let (dom, shot) = open_in_chromium(&env, &page);
    assert_eq!(dom["rows"], 12, "{dom}");
    // The hostile description shows as written, in the row and the tables.
    assert_eq!(dom["labels"][0], format!("1 {HOSTILE}"), "{dom}");
    assert!(dom["cells"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c == HOSTILE));
    let bars = bars(&dom);
    // A bar per attempt: 12 tasks, two retried once.
    assert_eq!(bars.len(), 14, "{dom}");
    for task in [3, 8] {
        let mine: Vec<_> = bars.iter().filter(|b| b.0 == task).collect();
        assert_eq!(mine.len(), 2, "task {task}: {mine:?}");
        let (first, second) = (mine[0], mine[1]);
        assert_eq!((first.1, first.2.as_str()), (1, "failed"), "{first:?}");
        assert_eq!((second.1, second.2.as_str()), (2, "done"), "{second:?}");
        // The retry starts after the failed attempt ended (its backoff).
        assert!(second.3 >= first.4 - 0.5, "{mine:?}");
        assert!(first.5.contains("rate_limit"), "{}", first.5);
    }
    let failed: Vec<_> = bars.iter().filter(|b| b.2 == "failed").collect();
    assert_eq!(failed.len(), 3, "two rate limits and task 5: {failed:?}");
    assert!(failed.iter().any(|b| b.0 == 5 && b.5.contains("broken")));
    assert!(bars.iter().all(|b| b.5.contains("cost $")), "{bars:?}");
    // Bars are placed in the order the attempts started.
    let started = json_lines(&env.ok("orch-events", &["--kind", "attempt.started", "--json"]));
    assert_eq!(started.len(), 14);
    let mut seen = std::collections::HashMap::new();
    let order: Vec<f64> = started
        .iter()
        .map(|e| {
            let task = e["task"].as_i64().unwrap();
            let n = seen.entry(task).or_insert(0);
            *n += 1;
            bars.iter()
                .find(|b| b.0 == task && b.1 == *n)
                .unwrap_or_else(|| panic!("no bar for attempt {n} of task {task}"))
                .3
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] <= w[1]), "{order:?}");
    let journal = env.ok("orch-events", &["--batch", "1"]).lines().count();
    assert_eq!(dom["events"], journal, "{dom}");
    // Four at a time, for twelve tasks.
    assert_eq!(dom["verdict"], "PARTIAL", "{dom}");
    assert!(dom["speedup"].as_str().unwrap() > "2", "{dom}");
    if let Some(keep) = std::env::var_os("ORCH_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }

    // The same run judged from its recorded agent calls: a row per task.
    let page = env.path().join("session.html");
    let out = env.run(
        "orch-verify",
        &[
            "session",
            "--session",
            "orch-run:1",
            "--html",
            page.to_str().unwrap(),
        ],
    );
    assert_code(&out, 1);
    let (dom, _) = open_in_chromium(&env, &page);
    assert_eq!(dom["rows"], 12, "{dom}");
    assert_eq!(dom["verdict"], "PARTIAL", "{dom}");
    let bars = self::bars(&dom);
    assert_eq!(bars.len(), 12, "{dom}");
    assert!(bars.iter().any(|b| b.0 == 5 && b.2 == "failed"), "{bars:?}");
    assert!(dom["events"].as_i64().unwrap() > 12, "{dom}");
}

/// Twenty tasks, the most the page promises to print on one sheet.
#[test]
fn the_page_of_twenty_tasks_prints_on_one_sheet() {
    let env = Env::new();
    for i in 1..=20 {
        env.ok(
            "orch-queue",
            &[
                "add",
                "dev",
                "--description",
                &format!("Task {i}: a description long enough to be cut at the edge of its label"),
                &format!("p{i}"),
            ],
        );
    }
    env.ok("orch-batch", &["create", "--max", "20"]);
    env.ok(
        "orch-run",
        &["1", "-j", "8", "--", "sh", "-c", "sleep 0.1; echo done"],
    );
    let page = env.path().join("twenty.html");
    env.ok(
        "orch-batch",
        &["report", "1", "--html", page.to_str().unwrap()],
    );
    // open_in_chromium asserts the single sheet.
    let (dom, _) = open_in_chromium(&env, &page);
    assert_eq!(dom["rows"], 20, "{dom}");
    assert_eq!(dom["printed_pages_before_events"], 1, "{dom}");
}

#[test]
fn the_page_of_a_verification_run_in_headless_chromium() {
    let env = Env::new();
    let out = env.run(
        "orch-verify",
        &[
            "exec", "-n", "6", "--sleep", "0.4", "--json", "--", "xargs", "-P", "3", "-I{}", "sh",
            "-c", "{}",
        ],
    );
    // Three at a time, for six probes.
    assert_code(&out, 1);
    let run = json(&String::from_utf8_lossy(&out.stdout))["run"]
        .as_i64()
        .unwrap();
    let page = env.path().join("verify.html");
    // The terminal report stays; --html writes the page besides.
    let out = env.run(
        "orch-verify",
        &["report", &run.to_string(), "--html", page.to_str().unwrap()],
    );
    assert_code(&out, 1);
    assert!(String::from_utf8_lossy(&out.stdout).contains("PARTIAL"));
    let (dom, _) = open_in_chromium(&env, &page);
    assert_eq!(dom["rows"], 6, "{dom}");
    assert_eq!(dom["verdict"], "PARTIAL", "{dom}");
    let bars = bars(&dom);
    assert_eq!(bars.len(), 6);
    assert!(bars.iter().all(|b| b.2 == "done"), "{bars:?}");
    // Three at a time: probes 4-6 start after the first three ended.
    let first_end = bars[..3].iter().map(|b| b.4).fold(f64::MAX, f64::min);
    assert!(bars[3..].iter().all(|b| b.3 >= first_end - 1.0), "{bars:?}");
    // verify.started and verify.judged.
    assert_eq!(dom["events"], 2, "{dom}");
}
