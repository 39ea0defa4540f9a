//! Processes orch starts die with it. Each child gets a process group of its
//! own (so one signal reaches everything it starts) and a guard in its group:
//! this same program started again in its hidden guard mode ([`guard_if_asked`]),
//! which waits on a pipe only orch holds open and kills the whole group when
//! that pipe closes, that is when orch exits or is killed, even by SIGKILL.
//! The guard dies with the group when orch kills it after the child.

use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use rustix::process::{Pid, Signal};

/// The argument that starts an orch binary as a guard (never shown to people).
const GUARD_ARG: &str = "--orch-internal-guard";

/// The pipe whose write end this process holds open for its whole life; guards
/// read its other end and see end-of-file only when this process is gone. Both
/// ends are close-on-exec, so no child's program inherits them.
fn lifeline() -> Option<&'static OwnedFd> {
    static PIPE: OnceLock<Option<(OwnedFd, OwnedFd)>> = OnceLock::new();
    PIPE.get_or_init(|| rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).ok())
        .as_ref()
        .map(|(read, _write)| read)
}

/// Starts `cmd` in a process group of its own that dies with this process.
/// The group id is the child's pid; kill it with [`kill_group`].
pub fn spawn(cmd: &mut Command) -> io::Result<Child> {
    cmd.process_group(0);
    let mut child = cmd.spawn()?;
    if let Err(e) = start_guard(child.id()) {
        kill_group(child.id() as i32, libc::SIGKILL);
        let _ = child.wait();
        return Err(e);
    }
    Ok(child)
}

/// Sends `sig` to process group `pgid` (a group that is gone yields ESRCH, ignored).
pub fn kill_group(pgid: i32, sig: i32) {
    let (Some(pid), Some(sig)) = (Pid::from_raw(pgid), Signal::from_named_raw(sig)) else {
        return;
    };
    if pgid > 0 {
        let _ = rustix::process::kill_process_group(pid, sig);
    }
}

/// Starts the guard of group `pgid` in that group. The child holds the group
/// open (it is not reaped before its group is killed), so joining cannot miss.
/// The guard is this process's child, not the agent's: the agent never sees it
/// in its own `wait`; a thread here reaps it.
fn start_guard(pgid: u32) -> io::Result<()> {
    let Some(read_end) = lifeline() else {
        return Ok(());
    };
    // The running program, even if its file was replaced since it started.
    let mut guard = Command::new("/proc/self/exe")
        .arg0("orch-guard")
        .arg(GUARD_ARG)
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::from(read_end.try_clone()?))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(pgid as i32)
        .spawn()?;
    std::thread::spawn(move || guard.wait());
    Ok(())
}

/// When this process was started as a guard ([`spawn`]), does the guard's work
/// and exits; otherwise returns at once. Every binary calls it first.
pub fn guard_if_asked() {
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|a| a == GUARD_ARG) && args.next().is_none() {
        guard()
    }
}

/// Waits until orch's end of the lifeline (its stdin) closes, then kills its group.
fn guard() -> ! {
    let _ = rustix::thread::set_name(c"orch-guard");
    // Only SIGKILL ends it: a SIGTERM to the group leaves it watching.
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGPIPE,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGALRM,
    ] {
        let _ = signal_hook::flag::register(sig, seen.clone());
    }
    let mut stdin = io::stdin().lock();
    let mut buf = [0u8; 64];
    loop {
        match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let _ = rustix::process::kill_current_process_group(Signal::KILL);
    std::process::exit(0)
}

/// Processes (other than this one) whose environment holds every `NAME=VALUE`
/// of `vars`: what an earlier run started and left behind. Linux only (reads
/// `/proc/PID/environ`); elsewhere, and for processes of other users, nothing.
pub fn with_environment(vars: &[(&str, &str)]) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let wanted: Vec<Vec<u8>> = vars
        .iter()
        .map(|(k, v)| format!("{k}={v}").into_bytes())
        .collect();
    let mut found = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let entries = env.split(|&b| b == 0);
        if wanted
            .iter()
            .all(|w| entries.clone().any(|e| e == w.as_slice()))
        {
            found.push(pid);
        }
    }
    found.sort_unstable();
    found
}
