//! The database's own settings (`settings`: key → text value), one row per
//! key. This module only stores them; what each means belongs to its user:
//! the pause and `orch-queue limit` to [`crate::limits`], the journal's
//! retention to [`crate::event`].

use rusqlite::{params, OptionalExtension, Transaction};

use crate::error::Result;

/// The value of `key`, if set.
pub fn get_in(tx: &Transaction, key: &str) -> Result<Option<String>> {
    Ok(tx
        .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .optional()?)
}

/// Sets `key` to `value`.
pub fn set_in(tx: &Transaction, key: &str, value: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO settings (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// Unsets each of `keys`.
pub fn clear_in(tx: &Transaction, keys: &[&str]) -> Result<()> {
    let mut stmt = tx.prepare_cached("DELETE FROM settings WHERE key = ?1")?;
    for k in keys {
        stmt.execute([k])?;
    }
    Ok(())
}
