//! Leases: who runs a batch, for how long. A holder is this host, a pid and
//! that process's start time, so a pid reused by another process never passes
//! for the runner that died; the lease's expiry, renewed while the runner
//! lives, lets any host see that a runner it cannot signal is gone.

use std::time::Duration;

use crate::time::now_ms;

/// How long a lease lasts unless renewed (`orch-run --lease`).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// This machine's name.
pub fn hostname() -> String {
    let name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .replace(':', "_");
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// The start time of process `pid` (clock ticks since boot), from /proc.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 is the state (index 0 here); starttime is field 22 (index 19).
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// This process as a lease holder: `host:pid:start`.
pub fn me() -> String {
    let pid = std::process::id();
    format!("{}:{pid}:{}", hostname(), process_start(pid).unwrap_or(0))
}

/// The pid in a holder id.
pub fn pid_of(holder: &str) -> Option<i64> {
    holder.split(':').nth(1)?.parse().ok()
}

/// Whether the holder is a process on this host that is gone (or whose pid
/// now belongs to a process started at another time).
pub fn dead_here(holder: &str) -> bool {
    let mut it = holder.split(':');
    let (Some(host), Some(pid), Some(start)) = (it.next(), it.next(), it.next()) else {
        return false;
    };
    if host != hostname() {
        return false;
    }
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return true;
    };
    process_start(pid) != Some(start)
}

/// Whether a lease (holder, expiry) has lapsed at `now`: expired, or its
/// holder is known dead on this host.
pub fn lapsed(holder: Option<&str>, until: Option<i64>, now: i64) -> bool {
    match (holder, until) {
        (Some(h), Some(u)) => u <= now || dead_here(h),
        _ => true,
    }
}

/// When a lease taken now ends.
pub fn until(lease: Duration) -> i64 {
    crate::time::after(now_ms(), lease)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_pid_is_not_the_holder() {
        let me = me();
        assert!(!dead_here(&me));
        let pid = std::process::id();
        let start = process_start(pid).unwrap();
        assert!(dead_here(&format!("{}:{pid}:{}", hostname(), start + 1)));
        assert!(!dead_here(&format!("elsewhere:{pid}:{}", start + 1)));
        assert!(lapsed(Some(&me), Some(now_ms() - 1), now_ms()));
        assert!(!lapsed(Some(&me), Some(now_ms() + 60_000), now_ms()));
    }
}
