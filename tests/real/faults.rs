//! Faults of the file system that need root: a read-only mount (root ignores
//! file modes), a full disk (a small tmpfs), and a read-only directory. The
//! real tier runs as root (scripts/test-deps.sh installs as root too); run as
//! another user, the tests that need a mount fail and say so.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::*;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A tmpfs mounted for one test, unmounted when dropped. Needs root
/// (CAP_SYS_ADMIN); `None` when mounting is not allowed here.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
    fn remount(&self, opt: &str) {
        let s = Command::new("mount")
            .args(["-o", &format!("remount,{opt}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(s.success(), "remount {opt}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// How a directory is made read-only: a read-only tmpfs when we may mount
/// (root ignores file modes, so chmod proves nothing there), else modes.
enum ReadOnly {
    Mount(Tmpfs),
    Modes(PathBuf),
}

impl ReadOnly {
    fn prepare(dir: &Path) -> ReadOnly {
        if is_root() {
            let m = Tmpfs::mount(dir, "8m").expect(
                "running as root, the read-only test needs `mount -t tmpfs` (root ignores file modes); \
                 run the tests as a normal user or where mounting is allowed",
            );
            ReadOnly::Mount(m)
        } else {
            std::fs::create_dir_all(dir).unwrap();
            ReadOnly::Modes(dir.to_path_buf())
        }
    }
    fn set(&self, ro: bool) {
        use std::os::unix::fs::PermissionsExt;
        match self {
            ReadOnly::Mount(m) => m.remount(if ro { "ro" } else { "rw" }),
            ReadOnly::Modes(d) => {
                for e in std::fs::read_dir(d).unwrap() {
                    let p = e.unwrap().path();
                    let mode = if ro { 0o400 } else { 0o600 };
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
                }
                let mode = if ro { 0o500 } else { 0o700 };
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode)).unwrap();
            }
        }
    }
}

#[test]
fn a_read_only_database_or_directory_is_a_clear_error_and_nothing_is_written() {
    let env = Env::new();
    let dir = env.path().join("ro");
    let ro = ReadOnly::prepare(&dir);
    let db = dir.join("orch.db");
    let dbs = db.to_str().unwrap();
    env.ok("orch-queue", &["--db", dbs, "add", "dev", "first"]);
    env.ok("orch-queue", &["--db", dbs, "add", "dev", "second"]);
    let before = counts(&db);
    ro.set(true);
    for args in [
        vec!["orch-queue", "add", "dev", "third"],
        vec!["orch-batch", "create"],
        vec!["orch-queue", "cancel", "1"],
    ] {
        let mut full = vec!["--db", dbs];
        full.extend(&args[1..]);
        let err = assert_error(&env.run(args[0], &full), args[0]);
        assert!(err.contains("read-only"), "{err}");
    }
    // A new database in a read-only directory.
    let fresh = dir.join("sub/new.db");
    let err = assert_error(
        &env.run(
            "orch-queue",
            &["--db", fresh.to_str().unwrap(), "add", "dev", "x"],
        ),
        "orch-queue",
    );
    assert!(err.contains("sub"), "{err}");
    ro.set(false);
    assert!(!fresh.exists() && !dir.join("sub").exists());
    assert_eq!(counts(&db), before);
    integrity_ok(&db);
    env.ok("orch-queue", &["--db", dbs, "add", "dev", "third"]);
}

/// Fills the file system under `dir` until writing fails.
fn fill(dir: &Path) -> PathBuf {
    let p = dir.join("filler");
    let mut f = std::fs::File::create(&p).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
    p
}

#[test]
fn a_full_disk_is_a_clear_error_and_nothing_is_half_written() {
    let env = Env::new();
    let dir = env.path().join("small");
    let _m = Tmpfs::mount(&dir, "2m").expect(
        "the full-disk test needs `mount -t tmpfs` (root): run the real tier as root, \
         as scripts/test.sh does after scripts/test-deps.sh",
    );
    let db = dir.join("orch.db");
    let dbs = db.to_str().unwrap();
    env.ok(
        "orch-queue",
        &["--db", dbs, "add", "dev", "before the disk filled"],
    );
    let before = counts(&db);
    let filler = fill(&dir);
    let big = jsonl("big:", 200, 4000);
    let out = env.run_with("orch-queue", &["--db", dbs, "add", "--stdin"], &big);
    let err = assert_error(&out, "orch-queue");
    assert!(err.contains("full"), "{err}");
    let prompt = "y".repeat(600_000);
    let err = assert_error(
        &env.run_with(
            "orch-queue",
            &["--db", dbs, "add", "dev", "-"],
            prompt.as_bytes(),
        ),
        "orch-queue",
    );
    assert!(err.contains("full"), "{err}");
    std::fs::remove_file(filler).unwrap();
    assert_eq!(counts(&db), before);
    integrity_ok(&db);
    env.ok_with("orch-queue", &["--db", dbs, "add", "--stdin"], &big);
    assert_eq!(tasks_like(&db, "big:"), 200);
}

#[test]
fn read_only_directory_is_a_clear_error() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let dir = env.path().join("ro");
    std::fs::create_dir(&dir).unwrap();
    let db = dir.join("orch.db");
    let db_s = db.to_str().unwrap();
    env.ok("orch-queue", &["--db", db_s, "add", "dev", "before"]);
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    drop(c);
    let _ = std::fs::remove_file(dir.join("orch.db-wal"));
    let _ = std::fs::remove_file(dir.join("orch.db-shm"));
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    // Root ignores file modes: as root, the commands run as `nobody`.
    std::fs::set_permissions(env.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = |args: &[&str]| output_of(queue_as_nobody(&env).args(args));
    if !is_root() {
        assert!(
            std::fs::write(dir.join("probe"), b"x").is_err(),
            "permissions are not enforced for this user"
        );
    }
    let before = std::fs::read(&db).unwrap();
    let err = assert_error(&run(&["--db", db_s, "add", "dev", "x"]), "orch-queue");
    assert!(
        err.contains("permission") || err.contains("read-only"),
        "{err}"
    );
    // A new database in the read-only directory (a command that writes would
    // make it; `list` only reads and says there is none).
    let err = assert_error(
        &run(&[
            "--db",
            dir.join("new.db").to_str().unwrap(),
            "add",
            "dev",
            "x",
        ]),
        "orch-queue",
    );
    assert!(err.contains("ermission"), "{err}");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(std::fs::read(&db).unwrap(), before);
}

/// `orch-queue` run as `nobody` (65534) when the tests run as root, else as
/// `env.cmd` runs it. As root it runs a copy of the binary in the test's own
/// directory: `nobody` may not reach the build directory (a clone in a 0700
/// temporary directory).
fn queue_as_nobody(env: &Env) -> Command {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if !is_root() {
        return env.cmd("orch-queue");
    }
    let dir = env.path().join("bin-for-nobody");
    std::fs::create_dir_all(&dir).unwrap();
    for d in [env.path(), dir.as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let copy = dir.join("orch-queue");
    if !copy.exists() {
        std::fs::copy(bin("orch-queue"), &copy).unwrap();
    }
    let mut c = env.command(&copy);
    c.env("ORCH_DB", &env.db)
        .stdin(Stdio::null())
        .uid(65534)
        .gid(65534);
    c
}

/// A project database another user owns is not used by walking up to it
/// (like git's "dubious ownership"): the commands run as `nobody` in root's
/// project are refused, naming the owner and `--db`. Needs root to have a
/// second user; as another user the test fails and says so.
#[test]
fn a_project_database_another_user_owns_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    assert!(
        is_root(),
        "this test needs root: it runs orch as `nobody` in a project root owns"
    );
    let env = Env::new();
    let project = env.path().join("proj");
    std::fs::create_dir(&project).unwrap();
    let init = env
        .cmd("orch-queue")
        .env_remove("ORCH_DB")
        .current_dir(&project)
        .arg("init")
        .output()
        .unwrap();
    assert_code(&init, 0);
    let dot = project.join(".orch");
    for p in [env.path(), project.as_path(), dot.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(dot.join("orch.db"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let before = std::fs::read(dot.join("orch.db")).unwrap();
    for args in [&["list"][..], &["add", "dev", "x"]] {
        let out = output_of(
            queue_as_nobody(&env)
                .env_remove("ORCH_DB")
                .env("HOME", env.path())
                .current_dir(&project)
                .args(args),
        );
        let err = assert_error(&out, "orch-queue");
        assert!(
            err.contains("owned by another user (uid 0)") && err.contains("--db"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(std::fs::read(dot.join("orch.db")).unwrap(), before);
}
