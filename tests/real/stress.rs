//! `scripts/stress.sh` at a small size: many writers on one file, then its
//! invariant checks (written in Python, hence this tier).

use std::path::Path;
use std::process::Command;

use crate::common::*;

#[test]
fn stress_script_holds_its_invariants_at_a_small_size() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/stress.sh");
    let env = Env::new();
    assert!(
        Command::new("python3")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "scripts/stress.sh checks its invariants with python3: run scripts/test-deps.sh"
    );
    let out = env
        .command("bash")
        .arg(&script)
        .args(["--procs", "16", "--seconds", "4", "--bin-dir"])
        .arg(bin_dir())
        .env("TMPDIR", env.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_code(&out, 0);
    assert!(stdout.contains("stress: all invariants hold"), "{stdout}");
    assert!(stdout.contains("ok   no task in two batches"), "{stdout}");
    assert!(
        stdout.contains("ok   views for people show control characters escaped"),
        "{stdout}"
    );
    assert!(!stdout.contains("FAIL"), "{stdout}");
}
