//! Jobs beyond one machine: `orch-batch export`, `orch-run job` (no
//! database) and `orch-run ingest` (all or nothing), through the real
//! binaries, with `tests/fake-agent` linked as `claude`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// A directory holding `claude` (the fake agent), to put first on PATH.
fn fake_claude(env: &Env) -> PathBuf {
    let d = env.path().join("agents");
    std::fs::create_dir_all(&d).unwrap();
    let fake = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fake-agent");
    std::os::unix::fs::symlink(fake, d.join("claude")).unwrap();
    d
}

/// Runs `orch-run job` for index `i` in `dir` with no database anywhere; its record line.
fn job(env: &Env, agents: &Path, dir: &Path, bundle: &Path, i: usize) -> String {
    let mut c = env.command(bin("orch-run"));
    c.env(
        "PATH",
        path_with(&[agents, &bin_dir(), Path::new("/usr/bin"), Path::new("/bin")]),
    )
    .current_dir(dir)
    .args(["job", "--bundle"])
    .arg(bundle)
    .args(["--index", &i.to_string()]);
    let out = c.output().unwrap();
    assert_code(&out, 0);
    let s = String::from_utf8(out.stdout).unwrap();
    assert_eq!(s.lines().count(), 1, "one record: {s}");
    s
}

fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@localhost"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

fn statuses(env: &Env) -> Vec<String> {
    let c = env.sql();
    let mut s = c.prepare("SELECT status FROM tasks ORDER BY id").unwrap();
    s.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Every record of the bundle, one per line, in one file.
fn all_records(env: &Env, n: usize) -> String {
    let agents = fake_claude(env);
    let bundle = env.path().join("bundle.jsonl");
    (0..n)
        .map(|i| job(env, &agents, env.path(), &bundle, i))
        .collect()
}

#[test]
fn a_bundle_goes_out_runs_as_jobs_in_clones_and_comes_back_with_branches_and_costs() {
    let env = Env::new();
    let repo = env.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README"), "x\n").unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "base"]);
    let base = git(&repo, &["rev-parse", "HEAD"]);
    let hostile = "say=ok ${{ github.token }} $(touch pwned) `id` \"q\" 'q'\nline two";
    let prompts: Vec<String> = (0..3).map(|i| format!("say=t{i} {hostile}")).collect();
    for p in &prompts {
        env.add("dev", p);
    }
    let mut c = env.cmd("orch-batch");
    c.current_dir(&repo)
        .args(["export", "1", "--out"])
        .arg(env.path().join("bundle.jsonl"));
    env.ok("orch-batch", &["create"]);
    assert_code(&c.output().unwrap(), 0);
    let bundle = std::fs::read_to_string(env.path().join("bundle.jsonl")).unwrap();
    let lines = json_lines(&bundle);
    assert_eq!(lines[0]["format"], "orch-bundle/1");
    assert_eq!(lines[0]["base"], base.as_str());
    assert_eq!(lines[1]["prompt"], prompts[0].as_str());
    let agents = fake_claude(&env);
    let mut records = String::new();
    for i in 0..3 {
        let clone = env.path().join(format!("clone{i}"));
        git(
            env.path(),
            &[
                "clone",
                "-q",
                repo.to_str().unwrap(),
                clone.to_str().unwrap(),
            ],
        );
        std::fs::write(clone.join(format!("work{i}")), "done\n").unwrap();
        let mut c = env.command(bin("orch-run"));
        c.env(
            "PATH",
            path_with(&[
                &agents,
                &bin_dir(),
                Path::new("/usr/bin"),
                Path::new("/bin"),
            ]),
        )
        .current_dir(&clone)
        .args(["job", "--push", "--index", "-", "--bundle"])
        .arg(env.path().join("bundle.jsonl"))
        .env("JOB_COMPLETION_INDEX", i.to_string());
        let out = c.output().unwrap();
        assert_code(&out, 0);
        let r = json(&String::from_utf8(out.stdout.clone()).unwrap());
        assert_eq!(r["format"], "orch-result/1");
        assert_eq!(r["outcome"], "done");
        assert_eq!(r["task"], i + 1);
        assert_eq!(r["cost_usd"], 0.0123);
        assert_eq!(r["tokens"]["output"], 34);
        assert_eq!(r["branch"], format!("orch/task-{}", i + 1));
        assert_eq!(r["pushed"], true);
        assert!(!clone.join("pwned").exists() && !env.path().join("pwned").exists());
        records.push_str(&String::from_utf8(out.stdout).unwrap());
    }
    // Each branch reached the origin with the work its job left.
    for i in 0..3 {
        let files = git(
            &repo,
            &["ls-tree", "--name-only", &format!("orch/task-{}", i + 1)],
        );
        assert!(files.contains(&format!("work{i}")), "{files}");
    }
    std::fs::write(env.path().join("records.jsonl"), &records).unwrap();
    let out = env.run("orch-run", &["ingest", "records.jsonl"]);
    assert_code(&out, 0);
    assert_eq!(statuses(&env), ["done", "done", "done"]);
    let branches: i64 = env
        .sql()
        .query_row("SELECT count(branch) FROM job_results", [], |r| r.get(0))
        .unwrap();
    assert_eq!(branches, 3);
}

#[test]
fn ingest_is_all_or_nothing_under_a_corrupted_7th_record() {
    let env = Env::new();
    let prompts: Vec<String> = (0..10).map(|i| format!("say=r{i}")).collect();
    exported(&env, &prompts);
    let records = all_records(&env, 10);
    let mut lines: Vec<String> = records.lines().map(str::to_string).collect();
    lines[6] = lines[6].replace("\"outcome\":\"done\"", "\"outcome\":\"done\",\"extra\":1");
    std::fs::write(env.path().join("r.jsonl"), lines.join("\n") + "\n").unwrap();
    let out = env.run("orch-run", &["ingest", "r.jsonl"]);
    let err = assert_error(&out, "orch-run");
    assert!(err.contains("r.jsonl:7"), "{err}");
    assert!(err.contains("nothing ingested"), "{err}");
    assert!(statuses(&env).iter().all(|s| s == "batched"));
    // An edited time is refused the same way.
    lines[6] = records
        .lines()
        .nth(6)
        .unwrap()
        .replace("\"start_ms\":1", "\"start_ms\":2");
    std::fs::write(env.path().join("r.jsonl"), lines.join("\n") + "\n").unwrap();
    let err = assert_error(&env.run("orch-run", &["ingest", "r.jsonl"]), "orch-run");
    assert!(err.contains("r.jsonl:7"), "{err}");
    assert!(statuses(&env).iter().all(|s| s == "batched"));
    // Refused inside the write, after six attempts were recorded: none stay.
    let mut r = json(records.lines().nth(6).unwrap());
    r["task"] = 999.into();
    lines[6] = r.to_string();
    std::fs::write(env.path().join("r.jsonl"), lines.join("\n") + "\n").unwrap();
    let err = assert_error(&env.run("orch-run", &["ingest", "r.jsonl"]), "orch-run");
    assert!(
        err.contains("r.jsonl:7") && err.contains("no such task"),
        "{err}"
    );
    assert!(statuses(&env).iter().all(|s| s == "batched"));
    let attempts: i64 = env
        .sql()
        .query_row("SELECT count(*) FROM attempts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(attempts, 0);
    // Whole, it is ten attempts of runner job.
    std::fs::write(env.path().join("r.jsonl"), &records).unwrap();
    assert_code(&env.run("orch-run", &["ingest", "r.jsonl"]), 0);
    let jobs: i64 = env
        .sql()
        .query_row(
            "SELECT count(*) FROM attempts WHERE runner = 'job' AND outcome = 'done'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(jobs, 10);
}

#[test]
fn ingest_refuses_times_orch_cannot_show_and_writes_nothing() {
    let env = Env::new();
    exported(&env, &["say=a".to_string()]);
    let records = all_records(&env, 1);
    for end in ["253402300800000", "9223372036854775807"] {
        let mut r = json(records.lines().next().unwrap());
        r["end_ms"] = serde_json::Value::Number(end.parse().unwrap());
        std::fs::write(env.path().join("r.jsonl"), format!("{r}\n")).unwrap();
        let out = env.run("orch-run", &["ingest", "r.jsonl"]);
        let err = assert_error(&out, "orch-run");
        assert!(err.contains("out of range"), "{err}");
        assert!(statuses(&env).iter().all(|s| s == "batched"));
    }
    let attempts: i64 = env
        .sql()
        .query_row("SELECT count(*) FROM attempts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(attempts, 0);
}

#[test]
fn a_duplicate_ingest_is_a_no_op() {
    let env = Env::new();
    exported(&env, &["say=a".into(), "say=b".into()]);
    std::fs::write(env.path().join("r.jsonl"), all_records(&env, 2)).unwrap();
    assert_code(&env.run("orch-run", &["ingest", "r.jsonl"]), 0);
    let before: String = env
        .sql()
        .query_row(
            "SELECT group_concat(finished_at || result) FROM tasks",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let out = env.run("orch-run", &["ingest", "r.jsonl", "r.jsonl"]);
    assert_code(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already ingested; skipped"), "{err}");
    assert!(err.contains("ingested 0 records (4 skipped)"), "{err}");
    let after: String = env
        .sql()
        .query_row(
            "SELECT group_concat(finished_at || result) FROM tasks",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(before, after);
}

#[test]
fn records_from_another_batch_or_database_are_refused() {
    let env = Env::new();
    exported(&env, &["say=a".into()]);
    let mine = all_records(&env, 1);
    // The same batch id and task id in another database: another dispatch.
    let other = Env::new();
    exported(&other, &["say=b".into()]);
    let theirs = all_records(&other, 1);
    std::fs::write(env.path().join("r.jsonl"), format!("{mine}{theirs}")).unwrap();
    let err = assert_error(&env.run("orch-run", &["ingest", "r.jsonl"]), "orch-run");
    assert!(
        err.contains("r.jsonl:2") && err.contains("another export"),
        "{err}"
    );
    assert_eq!(statuses(&env), ["batched"]);
    // A batch never dispatched here.
    let forged = mine.replace("\"batch\":1", "\"batch\":9");
    std::fs::write(env.path().join("r.jsonl"), forged).unwrap();
    let err = assert_error(&env.run("orch-run", &["ingest", "r.jsonl"]), "orch-run");
    assert!(err.contains("never dispatched"), "{err}");
    assert_eq!(statuses(&env), ["batched"]);
}

#[test]
fn a_bundle_never_returned_shows_in_status_with_its_age_and_release_frees_it() {
    let env = Env::new();
    let b = exported(&env, &["say=a".into(), "say=b".into()]);
    let status = env.ok("orch", &["status"]);
    assert!(
        status.contains(&format!(
            "dispatched  batch {b}  2 tasks without a record  out for"
        )),
        "{status}"
    );
    let js = json(&env.ok("orch", &["status", "--json"]));
    assert_eq!(js["dispatched"][0]["batch"], b.parse::<i64>().unwrap());
    assert!(js["dispatched"][0]["age_ms"].as_i64().unwrap() >= 0);
    env.ok("orch-batch", &["release", &b]);
    assert!(!env.ok("orch", &["status"]).contains("dispatched"));
    assert_eq!(statuses(&env), ["queued", "queued"]);
}

#[test]
fn a_job_refuses_a_bad_bundle_or_index_in_one_line() {
    let env = Env::new();
    exported(&env, &["say=a".into()]);
    let agents = fake_claude(&env);
    let run = |args: &[&str]| {
        let mut c = env.command(bin("orch-run"));
        c.env(
            "PATH",
            path_with(&[
                &agents,
                &bin_dir(),
                Path::new("/usr/bin"),
                Path::new("/bin"),
            ]),
        )
        .args(args);
        c.output().unwrap()
    };
    let err = assert_error(
        &run(&["job", "--bundle", "bundle.jsonl", "--index", "5"]),
        "orch-run",
    );
    assert!(err.contains("out of range"), "{err}");
    let err = assert_error(
        &run(&["job", "--bundle", "bundle.jsonl", "--index", "-"]),
        "orch-run",
    );
    assert!(err.contains("JOB_COMPLETION_INDEX"), "{err}");
    let text = std::fs::read_to_string(env.path().join("bundle.jsonl")).unwrap();
    std::fs::write(env.path().join("cut.jsonl"), text.lines().next().unwrap()).unwrap();
    let err = assert_error(
        &run(&["job", "--bundle", "cut.jsonl", "--index", "0"]),
        "orch-run",
    );
    assert!(err.contains("truncated"), "{err}");
}

#[test]
fn the_engines_files_hold_no_task_text_even_for_hostile_prompts() {
    let env = Env::new();
    let big = "y".repeat(100 * 1024);
    let prompts: Vec<String> = vec![
        "${{ github.token }} leak".into(),
        "$(curl evil) and `id`".into(),
        "quotes \" ' and\nnewlines\r\n: key: value".into(),
        format!("huge {big}"),
    ];
    let b = exported(&env, &prompts);
    let wf = env.ok(
        "orch-emit",
        &[
            "--format",
            "github-actions",
            &b,
            "-j",
            "2",
            "--bundle",
            "bundle.jsonl",
        ],
    );
    let k8s = env.ok("orch-emit", &["--format", "k8s-job", &b, "-j", "3"]);
    for file in [&wf, &k8s] {
        for needle in [
            "github.token",
            "curl",
            "`id`",
            "quotes",
            "newlines",
            "yyyy",
            "leak",
        ] {
            assert!(!file.contains(needle), "{needle} in\n{file}");
        }
    }
    assert!(
        wf.contains("max-parallel: 2") && wf.contains("index: [0, 1, 2, 3]"),
        "{wf}"
    );
    assert!(
        wf.contains("fail-fast: false") && wf.contains("workflow_dispatch"),
        "{wf}"
    );
    assert!(
        wf.contains("${{ secrets.ANTHROPIC_API_KEY }}") && !wf.contains("echo"),
        "{wf}"
    );
    assert!(wf.contains("--bundle bundle.jsonl --index -"), "{wf}");
    assert!(
        k8s.contains("completionMode: Indexed") && k8s.contains("parallelism: 3"),
        "{k8s}"
    );
    assert!(k8s.contains("completions: 4"), "{k8s}");
    // A bundle path or image that could break out of the file is refused.
    for bad in [
        "a b",
        "x'; rm -rf /",
        "${{ github.token }}",
        "../up",
        "a\nb",
    ] {
        let out = env.run(
            "orch-emit",
            &["--format", "github-actions", &b, "--bundle", bad],
        );
        assert_error(&out, "orch-emit");
        if bad != "../up" {
            let out = env.run("orch-emit", &["--format", "k8s-job", &b, "--image", bad]);
            assert_error(&out, "orch-emit");
        }
    }
}

/// One step of the generated workflow, as far as the local run needs it.
#[derive(Debug, Default)]
struct Step {
    uses: Option<String>,
    run: Option<String>,
    env: Vec<(String, String)>,
    with: Vec<(String, String)>,
}

/// The steps of the workflow's one job, read from its YAML (the subset orch-emit writes).
fn steps(wf: &str) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::new();
    let mut lines = wf
        .lines()
        .skip_while(|l| l.trim() != "steps:")
        .skip(1)
        .peekable();
    let mut section = "";
    while let Some(l) = lines.next() {
        let t = l.trim_start();
        let indent = l.len() - t.len();
        if let Some(rest) = t.strip_prefix("- ") {
            out.push(Step::default());
            section = "";
            let (k, v) = rest.split_once(": ").unwrap_or((rest, ""));
            if k == "uses" {
                out.last_mut().unwrap().uses = Some(v.to_string());
            }
            continue;
        }
        let s = out.last_mut().unwrap();
        let (k, raw) = t.split_once(':').unwrap();
        let v = raw.trim().trim_matches('"').to_string();
        match (indent, k) {
            (8, "env" | "with") => section = if k == "env" { "env" } else { "with" },
            (8, "run") if v == "|" => {
                let mut body = String::new();
                while let Some(n) = lines.peek() {
                    if n.len() - n.trim_start().len() <= 8 {
                        break;
                    }
                    body.push_str(n.trim_start());
                    body.push('\n');
                    lines.next();
                }
                s.run = Some(body);
            }
            (8, "run") => s.run = Some(raw.trim().to_string()),
            (8, _) => section = "",
            (10, _) if section == "env" => s.env.push((k.to_string(), v)),
            (10, _) if section == "with" => s.with.push((k.to_string(), v)),
            _ => {}
        }
    }
    out
}

/// `${{ … }}` as Actions would fill it for matrix index `i`.
fn expand(v: &str, i: usize, temp: &Path) -> String {
    v.replace("${{ matrix.index }}", &i.to_string())
        .replace("${{ secrets.ANTHROPIC_API_KEY }}", "sk-test-not-echoed")
        .replace("${{ vars.ORCH_GIT }}", "https://example.invalid/orch.git")
        .replace("${{ runner.temp }}", temp.to_str().unwrap())
}

#[test]
fn the_workflow_steps_run_locally_in_clones_every_task_done_once_and_branches_landable() {
    let env = Env::new();
    let repo = env.path().join("origin");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README"), "x\n").unwrap();
    // The fake agent, told by its prompt, leaves a file behind for the branch.
    let prompts: Vec<String> = (0..4)
        .map(|i| format!("say=t{i} ${{{{ github.token }}}} $(id)"))
        .collect();
    for p in &prompts {
        env.add("dev", p);
    }
    let b = env.ok("orch-batch", &["create"]).trim().to_string();
    let mut c = env.cmd("orch-batch");
    c.current_dir(&repo)
        .args(["export", &b, "--out", ".orch-bundle.jsonl"]);
    assert_code(&c.output().unwrap(), 0);
    let mut c = env.cmd("orch-emit");
    c.current_dir(&repo).args([
        "--format",
        "github-actions",
        &b,
        "-j",
        "2",
        "--bundle",
        ".orch-bundle.jsonl",
    ]);
    let out = c.output().unwrap();
    assert_code(&out, 0);
    let wf = String::from_utf8(out.stdout).unwrap();
    std::fs::create_dir_all(repo.join(".github/workflows")).unwrap();
    std::fs::write(repo.join(".github/workflows/orch.yml"), &wf).unwrap();
    git(&repo, &["add", "-A"]);
    git(
        &repo,
        &["commit", "-q", "-m", "the bundle and its workflow"],
    );
    // Stand-ins for the network: npm installs nothing (claude is the fake
    // agent), cargo "builds" orch by linking the suite into --root.
    let stubs = env.path().join("stubs");
    std::fs::create_dir_all(&stubs).unwrap();
    std::os::unix::fs::symlink(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fake-agent"),
        stubs.join("claude"),
    )
    .unwrap();
    std::fs::write(
        stubs.join("npm"),
        "#!/bin/sh\necho \"npm $*\" >> \"$STUB_LOG\"\n",
    )
    .unwrap();
    std::fs::write(
        stubs.join("cargo"),
        format!(
            "#!/bin/sh\necho \"cargo $*\" >> \"$STUB_LOG\"\nwhile [ $# -gt 0 ]; do [ \"$1\" = --root ] && root=$2; shift; done\nmkdir -p \"$root/bin\" && ln -sf {}/orch-run \"$root/bin/orch-run\"\n",
            bin_dir().display()
        ),
    )
    .unwrap();
    for s in ["npm", "cargo"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(stubs.join(s), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let steps = steps(&wf);
    assert_eq!(steps.len(), 6, "{steps:?}");
    let artifacts = env.path().join("artifacts");
    let indices: Vec<usize> = (0..4).collect();
    assert!(wf.contains("index: [0, 1, 2, 3]"));
    for &i in &indices {
        let clone = env.path().join(format!("runner{i}/work"));
        let temp = env.path().join(format!("runner{i}/temp"));
        std::fs::create_dir_all(&temp).unwrap();
        for s in &steps {
            match s.uses.as_deref() {
                Some("actions/checkout@v4") => {
                    git(
                        env.path(),
                        &[
                            "clone",
                            "-q",
                            repo.to_str().unwrap(),
                            clone.to_str().unwrap(),
                        ],
                    );
                    std::fs::write(clone.join(format!("left-by-{i}")), "work\n").unwrap();
                }
                Some("actions/setup-node@v4") => {}
                Some("actions/upload-artifact@v4") => {
                    let get = |k: &str| s.with.iter().find(|(n, _)| n == k).unwrap().1.clone();
                    let dest = artifacts.join(expand(&get("name"), i, &temp));
                    std::fs::create_dir_all(&dest).unwrap();
                    let src = PathBuf::from(expand(&get("path"), i, &temp));
                    for f in std::fs::read_dir(&src).unwrap().flatten() {
                        std::fs::copy(f.path(), dest.join(f.file_name())).unwrap();
                    }
                }
                Some(other) => panic!("unexpected action {other}"),
                None => {
                    let script = s.run.as_deref().unwrap();
                    assert!(
                        !script.contains("${{"),
                        "an expression in a run: script: {script}"
                    );
                    let mut c = env.command("bash");
                    c.args(["-e", "-c", script])
                        .current_dir(&clone)
                        .env(
                            "PATH",
                            path_with(&[&stubs, Path::new("/usr/bin"), Path::new("/bin")]),
                        )
                        .env("RUNNER_TEMP", &temp)
                        .env("GITHUB_ACTIONS", "true")
                        .env("STUB_LOG", env.path().join("stubs.log"));
                    for (k, v) in &s.env {
                        c.env(k, expand(v, i, &temp));
                    }
                    let out = c.output().unwrap();
                    assert!(
                        out.status.success(),
                        "step {script}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    assert!(!String::from_utf8_lossy(&out.stdout).contains("sk-test"));
                    assert!(!String::from_utf8_lossy(&out.stderr).contains("sk-test"));
                }
            }
        }
    }
    let log = std::fs::read_to_string(env.path().join("stubs.log")).unwrap();
    assert_eq!(
        log.matches("npm install -g @anthropic-ai/claude-code@")
            .count(),
        4,
        "{log}"
    );
    let out = env.run("orch-run", &["ingest", artifacts.to_str().unwrap()]);
    assert_code(&out, 0);
    assert_eq!(statuses(&env), ["done"; 4]);
    // Every branch is on the origin and merges into main.
    git(&repo, &["checkout", "-q", "main"]);
    for t in 1..=4 {
        git(
            &repo,
            &["merge", "-q", "--no-edit", &format!("orch/task-{t}")],
        );
    }
    for i in 0..4 {
        assert!(repo.join(format!("left-by-{i}")).exists());
    }
}

#[test]
fn a_failed_job_comes_back_failed_with_its_class_and_a_dispatched_batch_does_not_run_here() {
    let env = Env::new();
    let b = exported(&env, &["exit=3 say=no".into(), "say=yes".into()]);
    let agents = fake_claude(&env);
    let mut c = env.command(bin("orch-run"));
    c.env(
        "PATH",
        path_with(&[
            &agents,
            &bin_dir(),
            Path::new("/usr/bin"),
            Path::new("/bin"),
        ]),
    )
    .args(["job", "--bundle", "bundle.jsonl", "--task", "1"]);
    let out = c.output().unwrap();
    assert_code(&out, 1);
    let r = json(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(r["outcome"], "failed");
    // A non-zero exit is classified from the agent's output, as orch-run does.
    assert_eq!(r["error_class"], "agent_error");
    assert_eq!(r["exit_code"], 3);
    // orch-run will not run the tasks of a batch that is out as jobs.
    let err = assert_error(&env.run("orch-run", &[&b, "--", "true"]), "orch-run");
    assert!(err.contains("dispatched as a bundle"), "{err}");
    std::fs::write(env.path().join("r.jsonl"), r.to_string() + "\n").unwrap();
    assert_code(&env.run("orch-run", &["ingest", "r.jsonl"]), 0);
    assert_eq!(statuses(&env), ["failed", "batched"]);
    // The ingested record is the task's attempt, run by a job.
    let a = env.ok("orch-queue", &["attempts", "1", "--json"]);
    let lines: Vec<_> = a.lines().map(json).collect();
    assert_eq!(lines.len(), 1, "{a}");
    assert_eq!(lines[0]["runner"], "job");
    assert_eq!(lines[0]["outcome"], "failed");
    assert_eq!(lines[0]["error_class"], "agent_error");
    assert_eq!(lines[0]["exit_code"], 3);
    assert_eq!(lines[0]["started_at"], r["started_at"]);
    // A lease that ran out says so; the batch still waits for task 2.
    env.ok(
        "orch-batch",
        &["export", &b, "--lease", "0", "--out", "again.jsonl"],
    );
    let status = env.ok("orch", &["status"]);
    assert!(
        status.contains("1 task without a record") && status.contains("lease expired"),
        "{status}"
    );
}

#[test]
fn a_job_past_its_timeout_is_stopped_and_fails_with_class_timeout() {
    let env = Env::new();
    exported(&env, &["sleep=30 say=late".into()]);
    let agents = fake_claude(&env);
    let mut c = env.command(bin("orch-run"));
    c.env(
        "PATH",
        path_with(&[
            &agents,
            &bin_dir(),
            Path::new("/usr/bin"),
            Path::new("/bin"),
        ]),
    )
    .args([
        "job",
        "--bundle",
        "bundle.jsonl",
        "--index",
        "0",
        "--timeout",
        "0.5",
    ]);
    let out = c.output().unwrap();
    assert_code(&out, 1);
    let r = json(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(r["outcome"], "failed");
    assert_eq!(r["error_class"], "timeout");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("timed out after 0.5 s"),
        "{r}"
    );
    let took = r["end_ms"].as_i64().unwrap() - r["start_ms"].as_i64().unwrap();
    assert!(took < 29_000, "the agent was not stopped: {took} ms");
}

#[test]
fn an_export_whose_bundle_cannot_be_written_dispatches_nothing() {
    let env = Env::new();
    env.add("dev", "say=a");
    let b = env.ok("orch-batch", &["create"]).trim().to_string();
    let out = env.run(
        "orch-batch",
        &["export", &b, "--out", "no/such/dir/bundle.jsonl"],
    );
    let err = assert_error(&out, "orch-batch");
    assert!(err.contains("not dispatched"), "{err}");
    assert!(!env.ok("orch", &["status"]).contains("dispatched  batch"));
    assert!(!env.path().join("no").exists());
}
