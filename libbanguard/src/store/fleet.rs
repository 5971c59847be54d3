//! The fleet's rows in the store: which LAPI decision each exported ban
//! became, the export queue's back-off, which ban each imported decision
//! became, and the exchange's own state (cursor time, last success).

use super::bans::{BAN_COLUMNS, ban_at};
use crate::ban::Ban;
use rusqlite::{Connection, OptionalExtension, params};

/// Active bans not of `skip_origin` that have no decision yet and whose
/// next try is due, oldest first: (ban, tries so far).
pub(crate) fn to_export(conn: &Connection, now: i64, skip_origin: &str) -> rusqlite::Result<Vec<(Ban, u32)>> {
    let cols = BAN_COLUMNS.split(", ").map(|c| format!("b.{c}")).collect::<Vec<_>>().join(", ");
    let mut stmt = conn.prepare(&format!(
        "SELECT coalesce(e.tries, 0), {cols} FROM bans b LEFT JOIN fleet_exports e ON e.ban_id = b.id
         WHERE b.lifted IS NULL AND (b.expires IS NULL OR b.expires > ?1) AND b.origin != ?2
           AND e.decision_id IS NULL AND coalesce(e.next_try, 0) <= ?1
         ORDER BY b.id"
    ))?;
    let rows = stmt.query_map(params![now, skip_origin], |r| Ok((ban_at(r, 1)?, r.get(0)?)))?;
    rows.collect()
}

/// Bans not yet exported (due or not), for `status`.
pub(crate) fn pending_exports(conn: &Connection, now: i64, skip_origin: &str) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT count(*) FROM bans b LEFT JOIN fleet_exports e ON e.ban_id = b.id
         WHERE b.lifted IS NULL AND (b.expires IS NULL OR b.expires > ?1) AND b.origin != ?2
           AND e.decision_id IS NULL",
        params![now, skip_origin],
        |r| r.get::<_, i64>(0).map(|n| n as u64),
    )
}

pub(crate) fn exported(conn: &Connection, ban_id: i64, decision_id: i64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO fleet_exports (ban_id, decision_id) VALUES (?1, ?2)
         ON CONFLICT(ban_id) DO UPDATE SET decision_id = ?2, last_error = NULL",
        params![ban_id, decision_id],
    )?;
    Ok(())
}

pub(crate) fn export_failed(
    conn: &Connection,
    ban_id: i64,
    error: &str,
    next_try: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO fleet_exports (ban_id, tries, next_try, last_error) VALUES (?1, 1, ?3, ?2)
         ON CONFLICT(ban_id) DO UPDATE SET tries = tries + 1, next_try = ?3, last_error = ?2",
        params![ban_id, error, next_try],
    )?;
    Ok(())
}

/// Exported decisions of bans lifted here, not withdrawn yet: (ban id,
/// decision id).
pub(crate) fn to_withdraw(conn: &Connection) -> rusqlite::Result<Vec<(i64, i64)>> {
    let mut stmt = conn.prepare(
        "SELECT e.ban_id, e.decision_id FROM fleet_exports e JOIN bans b ON b.id = e.ban_id
         WHERE e.decision_id IS NOT NULL AND e.withdrawn = 0 AND b.lifted IS NOT NULL",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

pub(crate) fn withdrawn(conn: &Connection, ban_id: i64) -> rusqlite::Result<()> {
    conn.execute("UPDATE fleet_exports SET withdrawn = 1 WHERE ban_id = ?1", [ban_id])?;
    Ok(())
}

/// Whether a decision is one this server posted.
pub(crate) fn is_ours(conn: &Connection, decision_id: i64) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM fleet_exports WHERE decision_id = ?1")?
        .query_row([decision_id], |_| Ok(()))
        .optional()
        .map(|r| r.is_some())
}

/// The ban an imported decision became.
pub(crate) fn imported_ban(conn: &Connection, decision_id: i64) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT ban_id FROM fleet_imports WHERE decision_id = ?1")?
        .query_row([decision_id], |r| r.get(0))
        .optional()
}

/// Whether a ban was lifted by hand (or is gone from the history).
pub(crate) fn is_lifted(conn: &Connection, ban_id: i64) -> rusqlite::Result<bool> {
    let lifted: Option<Option<i64>> =
        conn.query_row("SELECT lifted FROM bans WHERE id = ?1", [ban_id], |r| r.get(0)).optional()?;
    Ok(lifted.is_none_or(|l| l.is_some()))
}

/// Records which ban each decision became, in one transaction.
pub(crate) fn record_imports(conn: &Connection, pairs: &[(i64, i64)]) -> rusqlite::Result<()> {
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut stmt =
            tx.prepare("INSERT OR REPLACE INTO fleet_imports (decision_id, ban_id) VALUES (?1, ?2)")?;
        for (decision, ban) in pairs {
            stmt.execute(params![decision, ban])?;
        }
    }
    tx.commit()
}

pub(crate) fn forget_import(conn: &Connection, decision_id: i64) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM fleet_imports WHERE decision_id = ?1", [decision_id])?;
    Ok(())
}

/// The decisions whose bans are active here.
pub(crate) fn active_import_ids(conn: &Connection, now: i64) -> rusqlite::Result<Vec<i64>> {
    let mut stmt = conn.prepare(
        "SELECT i.decision_id FROM fleet_imports i JOIN bans b ON b.id = i.ban_id
         WHERE b.lifted IS NULL AND (b.expires IS NULL OR b.expires > ?1)",
    )?;
    let rows = stmt.query_map([now], |r| r.get(0))?;
    rows.collect()
}

/// Imported bans still active.
pub(crate) fn active_imports(conn: &Connection, now: i64, origin: &str) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT count(*) FROM bans WHERE origin = ?2 AND lifted IS NULL AND (expires IS NULL OR expires > ?1)",
        params![now, origin],
        |r| r.get::<_, i64>(0).map(|n| n as u64),
    )
}

pub(crate) fn state(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM fleet_state WHERE key = ?1", [key], |r| r.get(0)).optional()
}

pub(crate) fn set_state(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO fleet_state (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2",
        params![key, value],
    )?;
    Ok(())
}
