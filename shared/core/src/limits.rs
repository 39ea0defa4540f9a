//! What holds every runner on a database back: a pause (after a usage limit,
//! or by hand) and the most agents running at once.

use rusqlite::{params, Transaction};
use serde::Serialize;

use crate::db::Db;
use crate::error::Result;
use crate::settings::{clear_in, get_in, set_in};
use crate::time::now_ms;

/// Added to a usage limit's reset time before anything starts again.
pub const RESET_MARGIN_MS: i64 = 1_000;
/// How long a usage limit pauses when its message gives no reset time.
pub const UNKNOWN_RESET_MS: i64 = 5 * 60_000;

/// A pause in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pause {
    /// Until when (ms); `None`: until `orch-queue resume`.
    #[serde(skip)]
    pub until_ms: Option<i64>,
    pub until: Option<String>,
    pub reason: String,
}

/// Pauses every runner until `until` (ms; `None` until resumed). An earlier
/// end never shortens a pause already in force.
pub fn pause_in(tx: &Transaction, until: Option<i64>, reason: &str) -> Result<()> {
    if let Some(p) = pause_in_force_in(tx, now_ms())? {
        match (p.until_ms, until) {
            (None, _) => return Ok(()),
            (Some(a), Some(b)) if a >= b => return Ok(()),
            _ => {}
        }
    }
    set_in(
        tx,
        "pause_until",
        &until.map_or_else(|| "forever".to_string(), |u| u.to_string()),
    )?;
    set_in(tx, "pause_reason", reason)?;
    let detail = match until {
        Some(u) => format!("until {}: {reason}", crate::time::rfc3339(u)),
        None => format!("until resumed: {reason}"),
    };
    crate::event::record(
        tx,
        crate::event::Kind::PauseSet,
        crate::event::About::default(),
        None,
        None,
        Some(&detail),
    )?;
    Ok(())
}

/// [`pause_in`] in a transaction of its own.
pub fn pause(db: &Db, until: Option<i64>, reason: &str) -> Result<()> {
    db.write(|tx| pause_in(tx, until, reason))
}

/// Ends the pause.
pub fn resume(db: &Db) -> Result<bool> {
    db.write(|tx| {
        let was = pause_in_force_in(tx, now_ms())?.is_some();
        clear_in(tx, &["pause_until", "pause_reason"])?;
        if was {
            crate::event::record(
                tx,
                crate::event::Kind::PauseCleared,
                crate::event::About::default(),
                None,
                None,
                None,
            )?;
        }
        Ok(was)
    })
}

/// Clears a pause whose time has passed and journals it (`pause.cleared`,
/// "ran out"). The first write transaction that looks at the pause after its
/// end does it, once: writes are serialised, and the next one finds nothing
/// left to clear. Call inside a write transaction only (readers use
/// [`paused_in`], which never writes). True when it cleared one.
pub fn clear_ran_out_in(tx: &Transaction, now: i64) -> Result<bool> {
    let ran_out = get_in(tx, "pause_until")?
        .and_then(|u| u.parse::<i64>().ok())
        .is_some_and(|u| u <= now);
    if !ran_out {
        return Ok(false);
    }
    clear_in(tx, &["pause_until", "pause_reason"])?;
    crate::event::record(
        tx,
        crate::event::Kind::PauseCleared,
        crate::event::About::default(),
        None,
        None,
        Some("ran out"),
    )?;
    Ok(true)
}

/// The pause in force at `now`, inside a write transaction: one that has run
/// out is cleared and journaled first ([`clear_ran_out_in`]).
pub fn pause_in_force_in(tx: &Transaction, now: i64) -> Result<Option<Pause>> {
    clear_ran_out_in(tx, now)?;
    paused_in(tx, now)
}

/// The pause in force at `now`, if any. Reads only: a pause that has run out
/// is not in force, but stays to be cleared by the next write.
pub fn paused_in(tx: &Transaction, now: i64) -> Result<Option<Pause>> {
    let Some(until) = get_in(tx, "pause_until")? else {
        return Ok(None);
    };
    let until_ms = until.parse::<i64>().ok();
    if until_ms.is_some_and(|u| u <= now) {
        return Ok(None);
    }
    Ok(Some(Pause {
        until_ms,
        until: until_ms.map(crate::time::rfc3339),
        reason: get_in(tx, "pause_reason")?.unwrap_or_else(|| "paused".into()),
    }))
}

/// [`paused_in`] in a read transaction of its own.
pub fn paused(db: &Db) -> Result<Option<Pause>> {
    db.read(|tx| paused_in(tx, now_ms()))
}

/// "paused until 14:05:00 (usage limit)" for status lines (with the date
/// when the pause does not end today: "paused until 2026-12-03 14:05:00").
pub fn describe(p: &Pause) -> String {
    match p.until_ms {
        Some(ms) => format!("paused until {} ({})", hhmm(ms), p.reason),
        None => format!("paused until `orch-queue resume` ({})", p.reason),
    }
}

/// HH:MM:SS of `ms` in local time, with its date in front
/// (`2026-12-03 14:05:00`) when that is not today, so a far-off time never
/// reads as one later today.
pub fn hhmm(ms: i64) -> String {
    clock(ms, now_ms(), &jiff::tz::TimeZone::system())
}

/// [`hhmm`] as seen at `now` in zone `tz`.
fn clock(ms: i64, now: i64, tz: &jiff::tz::TimeZone) -> String {
    match (
        jiff::Timestamp::from_millisecond(ms),
        jiff::Timestamp::from_millisecond(now),
    ) {
        (Ok(t), Ok(n)) => {
            let z = t.to_zoned(tz.clone());
            let hms = format!("{:02}:{:02}:{:02}", z.hour(), z.minute(), z.second());
            if z.date() == n.to_zoned(tz.clone()).date() {
                hms
            } else {
                format!("{} {hms}", z.date())
            }
        }
        _ => "??:??:??".into(),
    }
}

/// The most agents running at once on this database, if set.
pub fn limit_in(tx: &Transaction) -> Result<Option<i64>> {
    Ok(get_in(tx, "limit")?.and_then(|v| v.parse().ok()))
}

/// Sets (or with `None` clears) the limit.
pub fn set_limit(db: &Db, n: Option<i64>) -> Result<()> {
    db.write(|tx| {
        let (kind, detail) = match n {
            Some(n) => {
                set_in(tx, "limit", &n.to_string())?;
                (
                    crate::event::Kind::LimitSet,
                    Some(format!("{n} agents at once")),
                )
            }
            None => {
                clear_in(tx, &["limit"])?;
                (crate::event::Kind::LimitCleared, None)
            }
        };
        crate::event::record(
            tx,
            kind,
            crate::event::About::default(),
            None,
            None,
            detail.as_deref(),
        )?;
        Ok(())
    })
}

/// Slots held now (expired ones do not count).
pub fn slots_in_use_in(tx: &Transaction, now: i64) -> Result<i64> {
    Ok(tx.query_row(
        "SELECT count(*) FROM slots WHERE expires_at > ?1",
        [now],
        |r| r.get(0),
    )?)
}

/// Takes a slot for `holder`/`key` when the limit allows (always without a
/// limit, taking nothing), clearing a pause that ran out. Expired slots (a runner whose lease lapsed, a hook
/// agent whose end never came) are freed first. Call inside a write transaction.
pub fn take_slot_in(tx: &Transaction, holder: &str, key: &str, expires_at: i64) -> Result<bool> {
    let now = now_ms();
    // Every start goes through here: a pause that ran out is cleared now.
    clear_ran_out_in(tx, now)?;
    let Some(limit) = limit_in(tx)? else {
        return Ok(true);
    };
    tx.execute("DELETE FROM slots WHERE expires_at <= ?1", [now])?;
    if slots_in_use_in(tx, now)? >= limit {
        return Ok(false);
    }
    tx.execute(
        "INSERT INTO slots (holder, key, taken_at, expires_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (holder, key) DO UPDATE SET expires_at = excluded.expires_at",
        params![holder, key, now, expires_at],
    )?;
    Ok(true)
}

/// Frees one slot; true when it was held.
pub fn release_in(tx: &Transaction, holder: &str, key: &str) -> Result<bool> {
    Ok(tx.execute(
        "DELETE FROM slots WHERE holder = ?1 AND key = ?2",
        params![holder, key],
    )? > 0)
}

/// Moves a slot to another key (an Agent call's slot to its background agent).
pub fn rekey_in(tx: &Transaction, holder: &str, from: &str, to: &str) -> Result<()> {
    tx.execute(
        "UPDATE slots SET key = ?3 WHERE holder = ?1 AND key = ?2",
        params![holder, from, to],
    )?;
    Ok(())
}

/// Frees the oldest slot of `holder` whose key starts with `prefix`.
pub fn release_oldest_in(tx: &Transaction, holder: &str, prefix: &str) -> Result<()> {
    tx.execute(
        "DELETE FROM slots WHERE holder = ?1 AND key = (SELECT key FROM slots
             WHERE holder = ?1 AND substr(key, 1, length(?2)) = ?2
             ORDER BY taken_at LIMIT 1)",
        params![holder, prefix],
    )?;
    Ok(())
}

/// Frees every slot of a holder (a runner taken over).
pub fn release_holder_in(tx: &Transaction, holder: &str) -> Result<()> {
    tx.execute("DELETE FROM slots WHERE holder = ?1", [holder])?;
    Ok(())
}

/// Extends every slot of a holder (with its lease).
pub fn renew_holder_in(tx: &Transaction, holder: &str, until: i64) -> Result<()> {
    tx.execute(
        "UPDATE slots SET expires_at = ?2 WHERE holder = ?1",
        params![holder, until],
    )?;
    Ok(())
}

/// The holder of the slots taken by orch-hook for Agent calls in Claude
/// Code (keyed `SESSION/CALL`).
pub const HOOK_SLOT_HOLDER: &str = "hook";

/// How long a hook-tracked agent may go without its end event before it is
/// reconciled as lost (`orch-hook --stale-after`, `ORCH_STALE_AFTER`).
pub const DEFAULT_STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(2 * 3600);

/// Retries of a task lost by a hook-tracked agent whose end never came.
pub const HOOK_RETRIES: i64 = 2;

/// Reconciles agents tracked through hooks whose end event never arrived
/// (Claude Code drops SubagentStop for background agents, TaskStop, id
/// mismatches): calls started more than `stale_ms` ago end as failed, and
/// their running tasks get a failed attempt of class `lost` and go back to
/// the queue while retries last (else fail). Returns the tasks touched.
pub fn reconcile_stale_in(tx: &Transaction, now: i64, stale_ms: i64) -> Result<Vec<i64>> {
    let cutoff = now - stale_ms;
    let mut ids = Vec::new();
    for c in crate::calls::fail_stale_hooks(tx, cutoff, now)? {
        // Its slot goes with it, or the limit would count a lost agent.
        release_in(tx, HOOK_SLOT_HOLDER, &format!("{}/{}", c.session, c.call))?;
        let Some(id) = c.task else { continue };
        let running = crate::task::find_status_in(tx, id)? == Some(crate::task::Status::Running);
        if running
            && !ids.contains(&id)
            && crate::task::started_at_in(tx, id)?.is_some_and(|s| s < cutoff)
        {
            ids.push(id);
        }
    }
    let error = "its agent's end was never reported (reconciled as lost)".to_string();
    for &id in &ids {
        let again = crate::attempt::Again::Queued;
        crate::attempt::lose_in(tx, id, "hook", &error, HOOK_RETRIES, again, now)?;
    }
    tx.execute("DELETE FROM slots WHERE expires_at <= ?1", [now])?;
    Ok(ids)
}

/// Claude Code's own cap on sub-agents running at once (it refuses spawns
/// past it, without queueing them).
pub const CLAUDE_DEFAULT_CAP: usize = 20;
/// The variable that changes it.
pub const CLAUDE_CAP_ENV: &str = "CLAUDE_CODE_MAX_CONCURRENT_SUBAGENTS";

/// The cap in force: `CLAUDE_CODE_MAX_CONCURRENT_SUBAGENTS` when it is a
/// positive number, else Claude Code's default; and where it came from.
pub fn claude_cap() -> (usize, &'static str) {
    match std::env::var(CLAUDE_CAP_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
    {
        Some(n) => (n, "from CLAUDE_CODE_MAX_CONCURRENT_SUBAGENTS"),
        None => (CLAUDE_DEFAULT_CAP, "Claude Code's default"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-29T23:00:00Z
    const NOW: i64 = 1_795_993_200_000;

    #[test]
    fn a_time_not_today_shows_its_date() {
        let utc = jiff::tz::TimeZone::UTC;
        assert_eq!(clock(NOW + 1_800_000, NOW, &utc), "23:30:00");
        assert_eq!(
            clock(NOW + 3_600_000 + 5_000, NOW, &utc),
            "2026-11-30 00:00:05"
        );
        assert_eq!(
            clock(NOW + 3 * 86_400_000 + 900_000, NOW, &utc),
            "2026-12-02 23:15:00"
        );
        assert_eq!(clock(253_402_000_000_000, NOW, &utc), "9999-12-28 12:26:40");
        assert_eq!(clock(NOW - 86_400_000, NOW, &utc), "2026-11-28 23:00:00");
    }
}
