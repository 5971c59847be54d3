//! The history and the per-service totals: written beside every ban
//! change and every attempt row that leaves the runtime state.

use crate::addr::HostKey;
use rusqlite::{Transaction, params};

/// One line of `banguardctl history`.
pub(crate) fn add_event(
    tx: &Transaction<'_>,
    now: i64,
    key: &HostKey,
    service: &str,
    kind: &str,
    detail: &str,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO events (at, host, service, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![now, key.db_key(), service, kind, detail],
    )?;
    Ok(())
}

/// Adds `delta` to a per-service total (`failed` or `banned`).
pub(crate) fn add_total(
    tx: &Transaction<'_>,
    service: &str,
    column: &str,
    delta: i64,
) -> rusqlite::Result<()> {
    if delta == 0 {
        return Ok(());
    }
    // `column` is one of two literals of the crate, never user input.
    debug_assert!(column == "failed" || column == "banned");
    let sql = format!(
        "INSERT INTO totals (service, {column}) VALUES (?1, max(?2, 0))
         ON CONFLICT(service) DO UPDATE SET {column} = max({column} + ?2, 0)"
    );
    tx.prepare_cached(&sql)?.execute(params![service, delta])?;
    Ok(())
}
