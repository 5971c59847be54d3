//! Mail notices about bans: queued in the ban's transaction, kept until
//! the sync job has sent them.

use super::bans::{BAN_COLUMNS, ban_at};
use crate::ban::Ban;
use rusqlite::{Connection, Transaction, params};

/// Queues a notice about ban `ban_id`.
pub(crate) fn queue(tx: &Transaction<'_>, now: i64, ban_id: i64) -> rusqlite::Result<()> {
    tx.execute("INSERT INTO outbox (created, ban_id) VALUES (?1, ?2)", params![now, ban_id])?;
    Ok(())
}

/// Queues a notice about account lock `lock_id` (ban 0: none).
pub(crate) fn queue_lock(tx: &Transaction<'_>, now: i64, lock_id: i64) -> rusqlite::Result<()> {
    tx.execute("INSERT INTO outbox (created, ban_id, lock_id) VALUES (?1, 0, ?2)", params![now, lock_id])?;
    Ok(())
}

/// Account lock notices waiting: (notice id, tries so far, lock id),
/// oldest first.
pub(crate) fn pending_locks(conn: &Connection) -> rusqlite::Result<Vec<(i64, u32, i64)>> {
    let mut stmt =
        conn.prepare("SELECT id, tries, lock_id FROM outbox WHERE lock_id IS NOT NULL ORDER BY id")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    rows.collect()
}

/// Notices waiting: (notice id, tries so far, ban), oldest first.
pub(crate) fn pending(conn: &Connection) -> rusqlite::Result<Vec<(i64, u32, Ban)>> {
    let sql = format!(
        "SELECT o.id, o.tries, {} FROM outbox o JOIN bans b ON b.id = o.ban_id ORDER BY o.id",
        BAN_COLUMNS.split(", ").map(|c| format!("b.{c}")).collect::<Vec<_>>().join(", ")
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, ban_at(r, 2)?)))?;
    rows.collect()
}

/// Forgets a sent notice.
pub(crate) fn sent(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM outbox WHERE id = ?1", [id])?;
    Ok(())
}

/// Keeps a notice that could not be sent, with its error and one more try.
pub(crate) fn failed(conn: &Connection, id: i64, error: &str) -> rusqlite::Result<()> {
    conn.execute("UPDATE outbox SET tries = tries + 1, last_error = ?2 WHERE id = ?1", params![id, error])?;
    Ok(())
}
