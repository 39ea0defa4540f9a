//! `--help`, `--version` and the examples of every tool of the suite, from
//! one table: each tool and each of its verbs has a one-line summary first
//! and an example, and `--version` names the tool.

use crate::common::*;

/// A tool, its verbs, and what its own `--help` must say beyond an example.
struct Tool {
    name: &'static str,
    verbs: &'static [&'static str],
    help_says: &'static [&'static str],
}

const TOOLS: &[Tool] = &[
    Tool {
        name: "orch",
        verbs: &["doctor", "status", "completions"],
        help_says: &["orch --list"],
    },
    Tool {
        name: "orch-queue",
        verbs: &[
            "init", "where", "add", "list", "show", "cancel", "start", "done", "fail", "stats",
            "clean",
        ],
        help_says: &[],
    },
    Tool {
        name: "orch-batch",
        verbs: &["create", "plan", "list", "show", "release"],
        help_says: &[],
    },
    Tool {
        name: "orch-emit",
        verbs: &[],
        help_says: &[],
    },
    Tool {
        name: "orch-verify",
        verbs: &[
            "guide", "new", "probe", "wait", "report", "selftest", "exec", "session",
        ],
        help_says: &[],
    },
    Tool {
        name: "orch-hook",
        verbs: &["install", "uninstall", "status"],
        help_says: &[],
    },
    Tool {
        name: "orch-msg",
        verbs: &["send", "recv", "list", "purge"],
        help_says: &[],
    },
    Tool {
        name: "orch-mcp",
        verbs: &[],
        help_says: &["MCP server over stdio", "orch-mcp --config"],
    },
    Tool {
        name: "orch-run",
        verbs: &[],
        help_says: &["--worktree"],
    },
    Tool {
        name: "orch-land",
        verbs: &[],
        // The exit codes say what orch-land does: no done task to land is 1.
        help_says: &[
            "merge-tree",
            "orch-land --all",
            "1 stopped at a conflict, or no done task to land",
        ],
    },
    Tool {
        name: "orch-events",
        verbs: &[],
        help_says: &["--follow", "--exec"],
    },
];

/// A help text starts with a non-empty summary line and shows an example.
fn assert_summary_and_example(what: &str, help: &str) {
    assert!(
        help.lines().next().is_some_and(|l| !l.trim().is_empty()),
        "{what}: {help}"
    );
    assert!(
        help.contains("Example"),
        "{what} --help has an example: {help}"
    );
}

#[test]
fn every_tool_and_verb_has_help_with_an_example_and_a_version() {
    let env = Env::new();
    for tool in TOOLS {
        let help = env.ok(tool.name, &["--help"]);
        assert_summary_and_example(tool.name, &help);
        for says in tool.help_says {
            assert!(help.contains(says), "{}: {says:?} in {help}", tool.name);
        }
        for verb in tool.verbs {
            let help = env.ok(tool.name, &[verb, "--help"]);
            assert_summary_and_example(&format!("{} {verb}", tool.name), &help);
            if tool.name == "orch-msg" {
                // orch-msg's examples show the verb itself in use.
                assert!(
                    help.contains(&format!("orch-msg {verb} ")),
                    "{verb}: {help}"
                );
            }
        }
        let version = env.ok(tool.name, &["--version"]);
        assert!(
            version.starts_with(&format!("{} ", tool.name)),
            "{}: {version}",
            tool.name
        );
    }
}

/// Help and version to a stdout that fails (`>/dev/full`) are an error like
/// any answer that cannot be printed; a pipe closed early is not.
#[test]
fn help_and_version_to_a_full_stdout_fail() {
    let env = Env::new();
    for tool in TOOLS {
        for (flag, what) in [("--help", "the help"), ("--version", "the version")] {
            let out = env.run_bad_stdout(tool.name, &[flag], b"", BadStdout::Full);
            // orch-hook, a hook, never exits 2 (Claude Code takes 2 as a block).
            assert_code(&out, if tool.name == "orch-hook" { 1 } else { 2 });
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(
                err.starts_with(&format!(
                    "{}: error: {what} could not be printed",
                    tool.name
                )),
                "{err}"
            );
        }
    }
    // Exit 0 when the reader is gone (`| head -1` that already exited).
    let out = env.run_bad_stdout("orch-queue", &["--help"], b"", BadStdout::NoReader);
    assert_code(&out, 0);
}
