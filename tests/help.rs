//! `--help`, `--version` and the examples of every tool of the suite, from
//! one table: each tool and each of its verbs has a one-line summary first
//! and an example, and `--version` names the tool. The verbs are read from
//! each tool's own `--help` (its `Commands:` list, and theirs in turn), so a
//! new verb without an example fails here; the table's `verbs` are checked
//! against that list, so neither can drift.

use crate::common::*;

/// A tool, its verbs (every one its `--help` lists, nested ones as
/// `job ingest`), and what its own `--help` must say beyond an example.
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
            "init",
            "export",
            "import",
            "where",
            "add",
            "list",
            "show",
            "logs",
            "cancel",
            "start",
            "done",
            "fail",
            "stats",
            "clean",
            "attempts",
            "retry",
            "pause",
            "resume",
            "limit",
            "retention",
        ],
        help_says: &[],
    },
    Tool {
        name: "orch-batch",
        verbs: &[
            "create", "plan", "list", "show", "report", "release", "export",
        ],
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
        verbs: &["job", "ingest"],
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

/// The subcommands a help text lists under `Commands:`, `help` aside.
fn commands_in(help: &str) -> Vec<String> {
    let mut verbs = Vec::new();
    let mut inside = false;
    for line in help.lines() {
        if line == "Commands:" {
            inside = true;
            continue;
        }
        if !inside {
            continue;
        }
        if line.trim().is_empty() || !line.starts_with(' ') {
            break;
        }
        // A verb starts two spaces in; a wrapped summary is indented further.
        if line.starts_with("  ") && !line.starts_with("   ") {
            let verb = line.split_whitespace().next().unwrap();
            if verb != "help" {
                verbs.push(verb.to_string());
            }
        }
    }
    verbs
}

/// Every verb of `tool` (nested ones as `job ingest`), read from the help
/// texts themselves, each checked to have a summary and an example.
fn verbs_of(env: &Env, tool: &str, path: &[String], help: &str, found: &mut Vec<String>) {
    for verb in commands_in(help) {
        let mut args = path.to_vec();
        args.push(verb);
        let mut argv: Vec<&str> = args.iter().map(String::as_str).collect();
        argv.push("--help");
        let sub = env.ok(tool, &argv);
        let name = args.join(" ");
        assert_summary_and_example(&format!("{tool} {name}"), &sub);
        if tool == "orch-msg" {
            // orch-msg's examples show the verb itself in use.
            assert!(sub.contains(&format!("orch-msg {name} ")), "{name}: {sub}");
        }
        found.push(name);
        verbs_of(env, tool, &args, &sub, found);
    }
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
        let mut found = Vec::new();
        verbs_of(&env, tool.name, &[], &help, &mut found);
        let mut listed: Vec<String> = tool.verbs.iter().map(|v| v.to_string()).collect();
        listed.sort();
        found.sort();
        assert_eq!(
            found, listed,
            "{}: the verbs its --help lists, and the table's",
            tool.name
        );
        let version = env.ok(tool.name, &["--version"]);
        assert!(
            version.starts_with(&format!("{} ", tool.name)),
            "{}: {version}",
            tool.name
        );
    }
}

/// Every tool of the suite is in the table: the binaries cargo built.
#[test]
fn the_help_table_names_every_tool() {
    let mut built: Vec<String> = std::fs::read_dir(bin_dir())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            let ours = name == "orch" || name.starts_with("orch-");
            (ours && !name.contains('.') && !name.ends_with(".d")).then_some(name)
        })
        .collect();
    built.sort();
    built.dedup();
    let mut table: Vec<String> = TOOLS.iter().map(|t| t.name.to_string()).collect();
    table.sort();
    for b in &built {
        assert!(table.contains(b), "{b} is built but not in the help table");
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
