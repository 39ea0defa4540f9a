//! The page of a run (`orch-batch report --html`) in a real browser:
//! headless Chromium (Debian's `chromium`, installed by scripts/test-deps.sh)
//! driven over the DevTools protocol by `tests/real/browser.py`.

use std::path::Path;
use std::process::Command;

use crate::common::*;

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
