//! The history and the per-service totals: written beside every ban
//! change and every attempt row that leaves the runtime state.

use crate::addr::HostKey;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

/// One line of `banguardctl history`.
pub(crate) fn add_event(
    tx: &Transaction<'_>,
    now: i64,
    key: &HostKey,
    service: &str,
    kind: &str,
    detail: &str,
) -> rusqlite::Result<()> {
    tx.prepare_cached("INSERT INTO events (at, host, service, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![now, key.db_key(), service, kind, detail])?;
    Ok(())
}

/// Adds `delta` to a per-service total (`failed` or `banned`; in the
/// runtime state also `given_back`, `refused`, `refused_account`).
pub(crate) fn add_total(
    tx: &Transaction<'_>,
    service: &str,
    column: &str,
    delta: i64,
) -> rusqlite::Result<()> {
    if delta == 0 {
        return Ok(());
    }
    // `column` is one of the crate's literals, never user input.
    debug_assert!(["failed", "banned", "given_back", "refused", "refused_account"].contains(&column));
    let sql = format!(
        "INSERT INTO totals (service, {column}) VALUES (?1, max(?2, 0))
         ON CONFLICT(service) DO UPDATE SET {column} = max({column} + ?2, 0)"
    );
    tx.prepare_cached(&sql)?.execute(params![service, delta])?;
    Ok(())
}

/// An event row as stored (the host as its store key).
pub(crate) struct EventRow {
    pub at: i64,
    pub host: String,
    pub service: String,
    pub kind: String,
    pub detail: String,
}

/// Every event row, oldest first.
pub(crate) fn events(conn: &Connection) -> rusqlite::Result<Vec<EventRow>> {
    let mut stmt = conn.prepare("SELECT at, host, service, kind, detail FROM events ORDER BY at, id")?;
    let rows = stmt.query_map([], |r| {
        Ok(EventRow {
            at: r.get(0)?,
            host: r.get(1)?,
            service: r.get(2)?,
            kind: r.get(3)?,
            detail: r.get(4)?,
        })
    })?;
    rows.collect()
}

/// The services with a total in this file.
pub(crate) fn total_services(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT service FROM totals")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    rows.collect()
}

/// One per-service total (`failed` in the runtime state, `banned` in the
/// store); 0 if none was kept.
pub(crate) fn total(conn: &Connection, service: &str, column: &str) -> rusqlite::Result<i64> {
    debug_assert!(column == "failed" || column == "banned");
    conn.query_row(&format!("SELECT {column} FROM totals WHERE service = ?1"), [service], |r| r.get(0))
        .optional()
        .map(|v| v.unwrap_or(0))
}

/// Deletes events from before `before`; how many.
pub(crate) fn prune_events(tx: &Transaction<'_>, before: i64) -> rusqlite::Result<u64> {
    // The newest row stays: ids are never given again (the metrics count
    // escalations by id).
    Ok(tx.execute("DELETE FROM events WHERE at < ?1 AND id < (SELECT max(id) FROM events)", [before])? as u64)
}

/// Pulls events from the future (a clock stepped back) to `now`.
pub(crate) fn pull_back_events(tx: &Transaction<'_>, now: i64) -> rusqlite::Result<u64> {
    Ok(tx.execute("UPDATE events SET at = ?1 WHERE at > ?1 + 60", [now])? as u64)
}
