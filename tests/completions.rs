//! The front's generated texts: shell completions, man pages, and a summary
//! and an example in the help of every verb of the suite.

use orch_cli::completions::{Command, CommandFactory};

use crate::common::{assert_code, assert_error, bin_dir, stdout, Env};

#[test]
fn bash_completion_completes_orch_queue_ad_to_add() {
    let env = Env::new();
    let script = env.path().join("orch.bash");
    std::fs::write(&script, env.ok("orch", &["completions", "bash"])).unwrap();
    let complete = |words: &str, fun: &str| {
        let words: Vec<&str> = words.split(' ').collect();
        let code = format!(
            "source {}; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{}'; COMP_POINT=${{#COMP_LINE}}; {fun} {} {} {}; echo \"${{COMPREPLY[@]}}\"",
            script.display(),
            words.join(" "),
            words.len() - 1,
            words.join(" "),
            words[0],
            words[words.len() - 1],
            words[words.len() - 2],
        );
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(&code)
            .output()
            .unwrap();
        assert_code(&out, 0);
        stdout(&out)
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(complete("orch queue ad", "_orch"), ["add"]);
    assert_eq!(complete("orch b", "_orch"), ["batch"]);
    assert!(complete("orch d", "_orch").contains(&"doctor".to_string()));
    assert!(complete("orch batch create --m", "_orch").contains(&"--max".to_string()));
    // Each orch-NAME binary has its own.
    assert_eq!(complete("orch-queue ad", "_orch__queue"), ["add"]);
    assert_eq!(complete("orch-batch rel", "_orch__batch"), ["release"]);
    // ... down to the options of a verb (clap_complete alone offers nothing
    // here for a binary whose name has a hyphen).
    assert_eq!(complete("orch-msg recv --a", "_orch__msg"), ["--as"]);
    assert!(complete("orch-queue add --", "_orch__queue").contains(&"--after".to_string()));

    // --dir: one file per binary, named as bash-completion looks them up.
    let dir = env.path().join("completions");
    env.ok(
        "orch",
        &["completions", "bash", "--dir", dir.to_str().unwrap()],
    );
    for b in [
        "orch",
        "orch-queue",
        "orch-batch",
        "orch-emit",
        "orch-verify",
        "orch-hook",
        "orch-msg",
        "orch-mcp",
        "orch-run",
        "orch-events",
        "orch-land",
    ] {
        let f = dir.join(format!("{b}.bash"));
        assert!(
            std::fs::read_to_string(&f)
                .unwrap()
                .contains(&format!("complete -F _{} ", b.replace('-', "__"))),
            "{f:?}"
        );
    }
}

#[test]
fn zsh_and_fish_completions_cover_the_suite() {
    let env = Env::new();
    let zsh = env.ok("orch", &["completions", "zsh"]);
    assert!(
        zsh.contains("#compdef orch")
            && zsh.contains("#compdef orch-queue")
            && zsh.contains("'add:"),
        "zsh script"
    );
    let fish = env.ok("orch", &["completions", "fish"]);
    assert!(fish.contains("complete -c orch ") && fish.contains("complete -c orch-run "));
    assert!(
        fish.contains("__fish_orch_using_subcommand queue") && fish.contains("-a \"add\""),
        "fish: orch queue add"
    );
    let bad = env.run("orch", &["completions", "tcsh"]);
    crate::common::assert_error(&bad, "orch");
}

#[test]
fn man_pages_for_every_binary_and_verb() {
    let env = Env::new();
    let dir = env.path().join("man1");
    let out = env.run("orch", &["man", dir.to_str().unwrap()]);
    assert_code(&out, 0);
    for page in [
        "orch.1",
        "orch-doctor.1",
        "orch-status.1",
        "orch-queue.1",
        "orch-queue-add.1",
        "orch-batch-create.1",
        "orch-emit.1",
        "orch-run.1",
        "orch-land.1",
        "orch-verify.1",
    ] {
        assert!(dir.join(page).is_file(), "{page} missing");
    }
    let orch = std::fs::read_to_string(dir.join("orch.1")).unwrap();
    assert!(
        orch.starts_with(".ie") || orch.contains(".TH orch 1"),
        "not a man page"
    );
    assert!(
        orch.contains("orch\\-queue(1)") && orch.contains("orch\\-doctor(1)"),
        "orch.1 lists the tools"
    );
    // No page names a `help` verb, which has no page of its own.
    for page in std::fs::read_dir(&dir).unwrap().flatten() {
        let text = std::fs::read_to_string(page.path()).unwrap();
        assert!(!text.contains("\\-help(1)"), "{:?}", page.path());
    }
    assert!(!dir.join("orch-queue-help.1").exists());
    let add = std::fs::read_to_string(dir.join("orch-queue-add.1")).unwrap();
    assert!(add.contains("Example"), "the examples reach the man page");
    // Hidden from help, as it is for packagers.
    assert!(!env.ok("orch", &["--help"]).contains("man "));
}

/// Every verb of every tool: a one-line summary and an example in --help.
#[test]
fn every_verb_has_a_summary_and_an_example() {
    fn walk(cmd: &Command, path: &str, missing: &mut Vec<String>) {
        let path = format!("{path} {}", cmd.get_name()).trim().to_string();
        if cmd
            .get_about()
            .is_none_or(|a| a.to_string().trim().is_empty())
        {
            missing.push(format!(
                "{path}: no one-line summary (a doc comment on the command)"
            ));
        }
        let help = cmd
            .get_after_help()
            .or(cmd.get_after_long_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        if !help.contains("Example") {
            missing.push(format!("{path}: no after_help with an Example"));
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &path, missing);
        }
    }
    let mut missing = Vec::new();
    walk(&orch_cli::orch::Cli::command(), "", &mut missing);
    for t in orch_cli::completions::SUITE {
        walk(&orch_cli::completions::tool_command(t), "", &mut missing);
    }
    assert!(
        missing.is_empty(),
        "help texts to fix:\n{}",
        missing.join("\n")
    );
    // And what clap shows is what the binaries print.
    let env = Env::new();
    let help = env.ok("orch-queue", &["add", "--help"]);
    assert!(help.contains("Example"), "{help}");
    assert!(bin_dir().join("orch").exists());
}

/// A completion file planted as a symlink to the database (or its `-wal`)
/// is refused, not written through.
#[test]
fn completion_files_never_overwrite_the_database() {
    let env = Env::new();
    env.add("dev", "x");
    let dir = env.path().join("completions");
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::symlink(&env.db, dir.join("orch-queue.bash")).unwrap();
    let bytes = std::fs::read(&env.db).unwrap();
    let out = env.run(
        "orch",
        &["completions", "bash", "--dir", dir.to_str().unwrap()],
    );
    let err = assert_error(&out, "orch");
    assert!(err.contains("is the database"), "{err}");
    assert_eq!(std::fs::read(&env.db).unwrap(), bytes);
    // A man page named as the database's -wal file, the same.
    let man = env.path().join("man");
    std::fs::create_dir(&man).unwrap();
    let mut wal = env.db.as_os_str().to_os_string();
    wal.push("-wal");
    std::os::unix::fs::symlink(&wal, man.join("orch.1")).unwrap();
    let out = env.run("orch", &["man", man.to_str().unwrap()]);
    let err = assert_error(&out, "orch");
    assert!(err.contains("is the database"), "{err}");
}
