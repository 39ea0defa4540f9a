//! Processes orch starts die with it. Each child gets a process group of its
//! own (so one signal reaches everything it starts), the parent-death signal
//! (SIGKILL when orch goes, on Linux), and a guard in its group: a forked
//! process that waits on a pipe only orch holds open, and kills the whole
//! group when that pipe closes, that is when orch exits or is killed, even by
//! SIGKILL. The guard dies with the group when orch kills it after the child.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::OnceLock;

/// The pipe whose write end this process holds open for its whole life; guards
/// read its other end and see end-of-file only when this process is gone.
fn lifeline() -> Option<libc::c_int> {
    static PIPE: OnceLock<Option<libc::c_int>> = OnceLock::new();
    *PIPE.get_or_init(|| {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe2 writes two descriptors into `fds`. Both are kept open
        // for the life of the process (never closed), close-on-exec so that no
        // child's program inherits them.
        let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
        (r == 0).then_some(fds[0])
    })
}

/// Starts `cmd` in a process group of its own that dies with this process.
/// The group id is the child's pid; kill it with [`kill_group`].
pub fn contain(cmd: &mut Command) -> &mut Command {
    cmd.process_group(0);
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id() as libc::pid_t;
        let read_end = lifeline();
        // SAFETY: the closure runs in the forked child before exec and only
        // makes async-signal-safe calls (prctl, getppid, fork, waitpid,
        // sigprocmask, signal, dup2, close, read, kill, _exit); it allocates nothing.
        unsafe {
            cmd.pre_exec(move || in_child(parent, read_end));
        }
    }
    cmd
}

/// Sends `sig` to process group `pgid` (a group that is gone yields ESRCH, ignored).
pub fn kill_group(pgid: i32, sig: i32) {
    if pgid <= 0 {
        return;
    }
    // SAFETY: killpg only sends a signal.
    unsafe {
        libc::killpg(pgid, sig);
    }
}

#[cfg(target_os = "linux")]
fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// In the child, before exec: die with the parent, and leave a guard behind.
#[cfg(target_os = "linux")]
unsafe fn in_child(parent: libc::pid_t, read_end: Option<libc::c_int>) -> io::Result<()> {
    if libc::prctl(
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL as libc::c_ulong,
        0,
        0,
        0,
    ) != 0
    {
        return Err(io::Error::last_os_error());
    }
    // The parent may have died before the line above: nothing would signal us.
    if libc::getppid() != parent {
        libc::_exit(127);
    }
    if let Some(fd) = read_end {
        start_guard(fd)?;
    }
    Ok(())
}

/// Forks the guard twice over, so that it is nobody's child here (the agent
/// never sees it in its own `wait`); it stays in the child's process group.
#[cfg(target_os = "linux")]
unsafe fn start_guard(read_end: libc::c_int) -> io::Result<()> {
    // Block every signal across the forks: the guard keeps them blocked (only
    // SIGKILL ends it, so a SIGTERM to the group leaves it watching), and no
    // handler inherited from orch runs in these copies of it.
    let mut all: libc::sigset_t = std::mem::zeroed();
    let mut old: libc::sigset_t = std::mem::zeroed();
    libc::sigfillset(&mut all);
    libc::sigprocmask(libc::SIG_SETMASK, &all, &mut old);
    let pid = libc::fork();
    if pid == 0 {
        if libc::fork() == 0 {
            guard(read_end);
        }
        libc::_exit(0);
    }
    let forked = if pid < 0 {
        Err(io::Error::last_os_error())
    } else {
        let mut status = 0;
        while libc::waitpid(pid, &mut status, 0) == -1 && errno() == libc::EINTR {}
        Ok(())
    };
    // The intermediate's SIGCHLD is pending: let it go by unhandled.
    libc::signal(libc::SIGCHLD, libc::SIG_DFL);
    libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    forked
}

/// Waits until the parent's end of the lifeline closes, then kills its group.
#[cfg(target_os = "linux")]
unsafe fn guard(read_end: libc::c_int) -> ! {
    // Hold nothing of orch's open but the lifeline: not its database, not the
    // child's output pipes, not the lifeline's write end.
    libc::dup2(read_end, 0);
    if libc::syscall(libc::SYS_close_range, 1u32, u32::MAX, 0u32) != 0 {
        for fd in 1..4096 {
            libc::close(fd);
        }
    }
    libc::chdir(c"/".as_ptr());
    libc::prctl(
        libc::PR_SET_NAME,
        c"orch-guard".as_ptr() as libc::c_ulong,
        0,
        0,
        0,
    );
    let mut byte = 0u8;
    loop {
        let n = libc::read(0, (&mut byte as *mut u8).cast(), 1);
        if n > 0 || (n < 0 && errno() == libc::EINTR) {
            continue;
        }
        break;
    }
    libc::kill(0, libc::SIGKILL);
    libc::_exit(0)
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
