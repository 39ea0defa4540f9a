//! The documentation's examples, executed: every ```console block of
//! README.md and of each docs/*.md runs in a fresh temporary directory with a
//! fresh database, and each `$ ` command's output must match the lines below
//! it, so the documentation cannot drift. Links between these files must
//! resolve, and the README's demo (scripts/demo.sh) must leave the user's own
//! database alone.
//!
//! Conventions: a block runs in its own temp directory (the working
//! directory), with HOME in a temp dir, ORCH_DB set to a fresh file and the
//! built binaries first on PATH; state carries over between the commands of
//! one block. A `$ ` line is a command, run with `sh -c` and stdout and
//! stderr merged (`2>&1`); a command ending in `\` continues on the next
//! line. In expected output `[..]` matches any text within a line, a line
//! holding only `...` matches any number of lines, and RFC 3339 timestamps
//! match any timestamp.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::bin_dir;

/// One `$ ` command, where it sits in its file, and what it should print.
#[derive(Debug)]
struct Example {
    line: usize,
    command: String,
    expected: Vec<(usize, String)>,
}

/// One ```console block, and the file it is in (relative to the repository).
#[derive(Debug)]
struct Block {
    file: String,
    line: usize,
    examples: Vec<Example>,
}

fn parse(file: &str, readme: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut lines = readme
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .peekable();
    while let Some((n, line)) = lines.next() {
        if line.trim_end() != "```console" {
            continue;
        }
        let mut block = Block {
            file: file.to_string(),
            line: n,
            examples: Vec::new(),
        };
        while let Some((n, line)) = lines.next() {
            if line.trim_end() == "```" {
                break;
            }
            if let Some(cmd) = line.strip_prefix("$ ") {
                let mut command = cmd.to_string();
                while command.ends_with('\\') {
                    match lines.next() {
                        Some((_, more)) => {
                            command.pop();
                            command.push('\n');
                            command.push_str(more);
                        }
                        None => break,
                    }
                }
                block.examples.push(Example {
                    line: n,
                    command,
                    expected: Vec::new(),
                });
            } else if let Some(ex) = block.examples.last_mut() {
                ex.expected.push((n, line.to_string()));
            } else if !line.trim().is_empty() {
                panic!(
                    "{file}:{n}: output before any `$ ` command in the console block of line {}",
                    block.line
                );
            }
        }
        blocks.push(block);
    }
    blocks
}

/// Replaces every RFC 3339 timestamp (2025-01-02T03:04:05[.123](Z|+01:00)) by `{TIME}`.
fn mask_times(s: &str) -> String {
    let b = s.as_bytes();
    let digits =
        |i: usize, n: usize| i + n <= b.len() && b[i..i + n].iter().all(u8::is_ascii_digit);
    let mut out = String::new();
    let mut i = 0;
    let mut last = 0;
    while i < b.len() {
        let head = digits(i, 4)
            && b.get(i + 4) == Some(&b'-')
            && digits(i + 5, 2)
            && b.get(i + 7) == Some(&b'-')
            && digits(i + 8, 2)
            && matches!(b.get(i + 10), Some(b'T') | Some(b' '))
            && digits(i + 11, 2)
            && b.get(i + 13) == Some(&b':')
            && digits(i + 14, 2)
            && b.get(i + 16) == Some(&b':')
            && digits(i + 17, 2);
        if !head {
            i += 1;
            continue;
        }
        let mut j = i + 19;
        if b.get(j) == Some(&b'.') {
            j += 1;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
        }
        match b.get(j) {
            Some(b'Z') => j += 1,
            Some(b'+') | Some(b'-')
                if digits(j + 1, 2) && b.get(j + 3) == Some(&b':') && digits(j + 4, 2) =>
            {
                j += 6
            }
            _ => {}
        }
        out.push_str(&s[last..i]);
        out.push_str("{TIME}");
        i = j;
        last = j;
    }
    out.push_str(&s[last..]);
    out
}

/// Whether one actual line matches one expected line (`[..]` = any text).
fn line_matches(expected: &str, actual: &str) -> bool {
    let expected = mask_times(expected.trim_end());
    let actual = mask_times(actual.trim_end());
    let parts: Vec<&str> = expected.split("[..]").collect();
    if parts.len() == 1 {
        return expected == actual;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !actual.starts_with(first)
        || actual.len() < first.len() + last.len()
        || !actual.ends_with(last)
    {
        return false;
    }
    let mut rest = &actual[first.len()..actual.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(k) => rest = &rest[k + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Matches the expected lines (with `...` lines) against the actual ones. On
/// failure, returns the index of the furthest expected line that could not be matched.
fn lines_match(expected: &[&str], actual: &[&str]) -> Result<(), usize> {
    fn go(
        e: &[&str],
        a: &[&str],
        i: usize,
        j: usize,
        seen: &mut std::collections::HashSet<(usize, usize)>,
        far: &mut usize,
    ) -> bool {
        if !seen.insert((i, j)) {
            return false;
        }
        *far = (*far).max(i);
        if i == e.len() {
            return j == a.len();
        }
        if e[i].trim() == "..." {
            return go(e, a, i + 1, j, seen, far) || (j < a.len() && go(e, a, i, j + 1, seen, far));
        }
        j < a.len() && line_matches(e[i], a[j]) && go(e, a, i + 1, j + 1, seen, far)
    }
    let mut far = 0;
    if go(expected, actual, 0, 0, &mut Default::default(), &mut far) {
        Ok(())
    } else {
        Err(far)
    }
}

/// Drops trailing blank lines.
fn trimmed<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut v: Vec<&str> = lines.collect();
    while v.last().is_some_and(|l| l.trim().is_empty()) {
        v.pop();
    }
    v
}

/// A line diff (longest common subsequence, with `[..]` matching) for the report.
fn diff(expected: &[(usize, &str)], actual: &[&str]) -> String {
    let (n, m) = (expected.len(), actual.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if line_matches(expected[i].1, actual[j]) {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && line_matches(expected[i].1, actual[j]) {
            out.push_str(&format!("   {:>4} | {}\n", expected[i].0, actual[j]));
            i += 1;
            j += 1;
        } else if i < n && expected[i].1.trim() == "..." {
            out.push_str(&format!("   {:>4} | ...\n", expected[i].0));
            i += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push_str(&format!("+       | {}\n", actual[j]));
            j += 1;
        } else {
            out.push_str(&format!("-  {:>4} | {}\n", expected[i].0, expected[i].1));
            i += 1;
        }
    }
    out
}

/// Runs `sh -c COMMAND` with stderr merged into stdout; at most 60 s.
fn run(command: &str, cwd: &Path, home: &Path, db: &Path) -> String {
    let mut c = Command::new("sh");
    c.arg("-c").arg(format!("exec 2>&1\n{command}"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ORCH") {
            c.env_remove(k);
        }
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![bin_dir()];
    paths.extend(std::env::split_paths(&path));
    c.env("PATH", std::env::join_paths(paths).unwrap())
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("ORCH_DB", db)
        .env_remove("NO_COLOR")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("DISPLAY")
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = c.spawn().expect("running sh");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return format!("(killed after 60 s)\n{}", reader.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    reader.join().unwrap()
}

/// Runs one block; returns a report of each command whose output differed.
fn run_block(block: &Block) -> Vec<String> {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path().join("project");
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&cwd).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    let db = tmp.path().join("orch.db");
    let mut failures = Vec::new();
    for ex in &block.examples {
        let actual_text = run(&ex.command, &cwd, &home, &db);
        let actual = trimmed(actual_text.lines());
        let mut expected: Vec<(usize, &str)> =
            ex.expected.iter().map(|(n, l)| (*n, l.as_str())).collect();
        while expected.last().is_some_and(|(_, l)| l.trim().is_empty()) {
            expected.pop();
        }
        let lines: Vec<&str> = expected.iter().map(|(_, l)| *l).collect();
        if let Err(far) = lines_match(&lines, &actual) {
            let at = expected
                .get(far)
                .map(|(n, l)| format!("{}:{n}: `{l}`", block.file))
                .unwrap_or_else(|| "after the last expected line: more output".to_string());
            failures.push(format!(
                "{}:{}: `$ {}` (console block of line {}) printed something else.\nfirst expected line not matched: {at}\n(- expected only, + printed only, line numbers of {} on the left)\n{}",
                block.file,
                ex.line,
                ex.command.replace('\n', " \\ "),
                block.line,
                block.file,
                diff(&expected, &actual)
            ));
            // Later commands of the block depend on this one; one report is enough.
            break;
        }
    }
    failures
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md, then every docs/*.md in name order, as paths relative to the root.
fn documents() -> Vec<String> {
    let mut docs: Vec<String> = std::fs::read_dir(root().join("docs"))
        .expect("reading docs/")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    docs.insert(0, "README.md".to_string());
    docs
}

fn read(file: &str) -> String {
    std::fs::read_to_string(root().join(file)).unwrap_or_else(|e| panic!("reading {file}: {e}"))
}

#[test]
fn readme_console_blocks_run_as_shown() {
    let mut blocks = Vec::new();
    for file in documents() {
        blocks.extend(parse(&file, &read(&file)));
    }
    for file in ["README.md", "docs/guide.md"] {
        assert!(
            blocks
                .iter()
                .any(|b| b.file == file && !b.examples.is_empty()),
            "{file} has no ```console block with a `$ ` command: its examples would go unchecked"
        );
    }
    let failures: Vec<String> = blocks.iter().flat_map(run_block).collect();
    assert!(
        failures.is_empty(),
        "{} documented example(s) do not match what the programs print:\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown file's headings (outside code blocks).
fn anchors(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            out.push(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// The targets of the relative links `[text](target)` outside code blocks and code spans.
fn relative_links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fenced = false;
    for (n, line) in text.lines().enumerate() {
        if line.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = prose.as_str();
        while let Some(k) = rest.find("](") {
            rest = &rest[k + 2..];
            let Some(end) = rest.find(')') else { break };
            let target = &rest[..end];
            if !target.contains("://") && !target.starts_with("mailto:") {
                out.push((n + 1, target.to_string()));
            }
            rest = &rest[end..];
        }
    }
    out
}

#[test]
fn links_between_readme_and_docs_resolve() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in documents() {
        let text = read(&file);
        let dir = Path::new(&file).parent().unwrap_or(Path::new(""));
        for (n, target) in relative_links(&text) {
            checked += 1;
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let resolved = if path.is_empty() {
                PathBuf::from(&file)
            } else {
                dir.join(path)
            };
            if !root().join(&resolved).exists() {
                broken.push(format!(
                    "{file}:{n}: `{target}`: no file {}",
                    resolved.display()
                ));
                continue;
            }
            if let Some(anchor) = anchor {
                let target_text =
                    std::fs::read_to_string(root().join(&resolved)).unwrap_or_default();
                if !anchors(&target_text).iter().any(|a| a == anchor) {
                    broken.push(format!(
                        "{file}:{n}: `{target}`: no heading with anchor #{anchor} in {}",
                        resolved.display()
                    ));
                }
            }
        }
    }
    assert!(
        checked > 0,
        "no relative link found: the check would prove nothing"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn link_check_finds_anchors_and_links() {
    assert_eq!(
        slug(" Is it set up? What is happening? `orch doctor` and `orch status`"),
        "is-it-set-up-what-is-happening-orch-doctor-and-orch-status"
    );
    assert_eq!(
        slug(" Run a batch headless (orch-run)"),
        "run-a-batch-headless-orch-run"
    );
    assert_eq!(
        anchors("# A\n```sh\n# not a heading\n```\n## B c\n"),
        vec!["a", "b-c"]
    );
    assert_eq!(
        relative_links("see [x](docs/a.md#b) and `[y](no.md)` or [z](https://e.org)\n```\n[w](in-code.md)\n```\n"),
        vec![(1, "docs/a.md#b".to_string())]
    );
}

/// `install.sh --demo` runs scripts/demo.sh with the binaries it installed; run
/// here with the built ones, it must queue and emit its three tasks in a
/// database of its own, and leave the user's (per-user, project and ORCH_DB) alone.
#[test]
fn install_demo_queues_in_a_temporary_database() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, project, scratch) = (
        tmp.path().join("home"),
        tmp.path().join("project"),
        tmp.path().join("tmp"),
    );
    for d in [&home, &project, &scratch] {
        std::fs::create_dir_all(d).unwrap();
    }
    let own_db = tmp.path().join("own.db");
    let mut c = Command::new(root().join("scripts/demo.sh"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ORCH") {
            c.env_remove(k);
        }
    }
    let out = c
        .env("ORCH_BIN", bin_dir())
        .env("ORCH_DB", &own_db)
        .env("HOME", &home)
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("TMPDIR", &scratch)
        .current_dir(&project)
        .stdin(Stdio::null())
        .output()
        .expect("running scripts/demo.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {stderr}");
    assert!(stdout.contains("Launch 3 agents in parallel"), "{stdout}");
    assert_eq!(stdout.matches("orch-task: ").count(), 3, "{stdout}");
    // Nothing of the user's: no ORCH_DB file, no project or per-user database.
    assert!(!own_db.exists(), "the demo wrote to ORCH_DB");
    assert!(
        !project.join(".orch").exists(),
        "the demo created a project database"
    );
    let in_home: Vec<_> = walk(&home);
    assert!(in_home.is_empty(), "the demo wrote under HOME: {in_home:?}");
    // Its own database is in the temporary directory, and says so.
    let dbs: Vec<PathBuf> = walk(&scratch)
        .into_iter()
        .filter(|p| p.ends_with("orch.db"))
        .collect();
    assert_eq!(dbs.len(), 1, "{dbs:?}");
    assert!(
        stderr.contains(&*dbs[0].to_string_lossy()),
        "the demo does not say where its tasks are: {stderr}"
    );
    let list = Command::new(crate::common::bin("orch-queue"))
        .args(["list", "--json"])
        .env("ORCH_DB", &dbs[0])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&list.stdout);
    assert_eq!(
        text.lines().filter(|l| l.starts_with("{")).count(),
        3,
        "{text}"
    );
}

/// Every file below `dir`, recursively.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn wildcards_and_times_match_loosely() {
    assert!(line_matches("batch [..]: 3 tasks", "batch 12: 3 tasks"));
    assert!(line_matches("[..]", "anything"));
    assert!(line_matches("a[..]b[..]c", "a-x-b-y-c"));
    assert!(!line_matches("a[..]b[..]c", "a-x-c-y-b"));
    assert!(!line_matches("batch [..]: 3 tasks", "batch 12: 4 tasks"));
    assert!(!line_matches("ab[..]ba", "aba"));
    assert!(line_matches(
        "created 2024-01-01T00:00:00Z done",
        "created 2026-11-28T08:49:34.397Z done"
    ));
    assert!(line_matches(
        "at 2024-01-01T00:00:00+01:00",
        "at 2026-11-28T08:49:34.397-05:00"
    ));
    assert!(!line_matches(
        "created 2024-01-01T00:00:00Z",
        "created yesterday"
    ));
    assert!(!line_matches("exact", "exact but longer"));
    assert!(line_matches("trailing   ", "trailing"));
}

#[test]
fn ellipsis_lines_match_any_number_of_lines() {
    assert_eq!(lines_match(&["a", "...", "z"], &["a", "z"]), Ok(()));
    assert_eq!(
        lines_match(&["a", "...", "z"], &["a", "b", "c", "z"]),
        Ok(())
    );
    assert_eq!(lines_match(&["..."], &[]), Ok(()));
    assert_eq!(lines_match(&["a", "...", "z"], &["a", "b"]), Err(2));
    assert_eq!(lines_match(&["a", "b"], &["a", "c"]), Err(1));
    assert_eq!(lines_match(&["a"], &["a", "extra"]), Err(1));
    assert_eq!(lines_match(&[], &["unexpected"]), Err(0));
}

#[test]
fn parses_blocks_commands_and_continuations() {
    let md = "text\n```console\n$ echo a \\\n  b\na b\n$ true\n```\n```text\n$ not run\n```\n";
    let blocks = parse("x.md", md);
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].line, 2);
    assert_eq!(blocks[0].examples.len(), 2);
    assert_eq!(blocks[0].examples[0].command, "echo a \n  b");
    assert_eq!(blocks[0].examples[0].expected, vec![(5, "a b".to_string())]);
    assert_eq!(blocks[0].examples[1].line, 6);
    let tmp = tempfile::tempdir().unwrap();
    let out = run(
        "echo out; echo err >&2",
        tmp.path(),
        tmp.path(),
        &tmp.path().join("x.db"),
    );
    assert_eq!(out, "out\nerr\n");
}
