//! Fuzzes the hook event parser and handler (`orch-hook` reading Claude
//! Code's JSON on stdin) against a real database file: any bytes must give a
//! reply or an error, never a panic.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use orch_core::hook::{handle, Config};

fn db() -> &'static PathBuf {
    static DB: OnceLock<PathBuf> = OnceLock::new();
    DB.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("orch-fuzz-hook-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("orch.db");
        drop(orch_core::db::Db::open(&path).expect("database"));
        path
    })
}

fuzz_target!(|data: &[u8]| {
    let cfg = Config {
        db: Some(db().clone()),
        ..Config::default()
    };
    // With the name from the input, and with each name given on the command line.
    let _ = handle(&cfg, None, data);
    for name in ["PreToolUse", "PostToolUse", "SubagentStop", "Stop", "UserPromptSubmit"] {
        let _ = handle(&cfg, Some(name), data);
    }
});
