//! Fuzzes the `orch-queue add --stdin` line reader: any bytes must give a
//! validated task or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(line) = std::str::from_utf8(data) {
        for role in [None, Some("dev")] {
            if let Ok(t) = orch_core::jsonl::parse_line(line, role) {
                // What validation promises about an accepted task.
                assert!(orch_core::task::validate_role(&t.role).is_ok());
                assert!(orch_core::task::validate_prompt(&t.prompt).is_ok());
                assert!(!t.description.is_empty());
            }
        }
    }
});
