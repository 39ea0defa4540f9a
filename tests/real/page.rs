//! The page of a run (`orch-batch report --html`) in a real browser:
//! headless Chromium (Debian's `chromium`, installed by scripts/test-deps.sh)
//! driven over the DevTools protocol by `tests/real/browser.py`.

use std::path::Path;
use std::process::Command;

use crate::common::*;

/// A finished 12-task batch: task 5 fails, task 1's description is hostile.
fn twelve_task_run(env: &Env) {
    env.ok(
        "orch-queue",
        &[
            "add",
            "dev",
            "--description",
            "<script>alert(1)</script> & \"quotes\"",
            "p1",
        ],
    );
    for i in 2..=12 {
        env.add("dev", &format!("p{i}"));
    }
    env.ok("orch-batch", &["create", "--max", "12"]);
    let script = "case \"$1\" in p5) echo broken >&2; exit 3;; esac; sleep 0.$(( ${1#p} % 4 + 1 )); echo done";
    let out = env.run(
        "orch-run",
        &[
            "1", "-j", "4", "--", "sh", "-c", script, "agent", "{prompt}",
        ],
    );
    assert_code(&out, 1);
}

#[test]
fn the_page_of_a_twelve_task_run_in_headless_chromium() {
    assert!(
        Path::new("/usr/lib/chromium/chromium").exists(),
        "the real tier needs Chromium (/usr/lib/chromium/chromium): run scripts/test-deps.sh"
    );
    let env = Env::new();
    twelve_task_run(&env);
    let page = env.path().join("run.html");
    env.ok(
        "orch-batch",
        &["report", "1", "--html", page.to_str().unwrap()],
    );
    let shot = env.path().join("run.png");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/real/browser.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(format!("file://{}", page.display()))
        .arg(&shot)
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
    let dom = &report["dom"];
    assert_eq!(dom["rows"], 12, "{dom}");
    assert_eq!(dom["scripts"], 0, "{dom}");
    assert!(
        dom["label1"]
            .as_str()
            .unwrap()
            .contains("<script>alert(1)</script> & \"quotes\""),
        "{dom}"
    );
    // Bars are placed in the order the tasks started.
    let lefts: std::collections::HashMap<i64, f64> = dom["lefts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_i64().unwrap(), p[1].as_f64().unwrap()))
        .collect();
    let started = json_lines(&env.ok("orch-events", &["--kind", "task.started", "--json"]));
    let order: Vec<f64> = started
        .iter()
        .map(|e| lefts[&e["task"].as_i64().unwrap()])
        .collect();
    assert_eq!(order.len(), 12);
    assert!(order.windows(2).all(|w| w[0] <= w[1]), "{order:?}");
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 2000,
        "no screenshot"
    );
    if let Some(keep) = std::env::var_os("ORCH_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}
