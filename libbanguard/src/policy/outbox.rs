//! The mail notices about bans: queued in the ban's transaction, sent by
//! the sync job, kept until sent.

use super::*;
use crate::store::bans::{BAN_COLUMNS, ban_at};

impl Banguard {
    /// Notices waiting to be mailed: (notice id, tries so far, ban).
    pub fn pending_notices(&self) -> Result<Vec<(i64, u32, Ban)>> {
        let path = self.store.path();
        let sql = format!(
            "SELECT o.id, o.tries, {} FROM outbox o JOIN bans b ON b.id = o.ban_id ORDER BY o.id",
            BAN_COLUMNS.split(", ").map(|c| format!("b.{c}")).collect::<Vec<_>>().join(", ")
        );
        let mut stmt = self.store.durable()?.prepare(&sql).map_err(|e| Error::store(path, e))?;
        let rows = stmt
            .query_map([], |r| {
                let id: i64 = r.get(0)?;
                let tries: u32 = r.get(1)?;
                let ban = ban_at(r, 2)?;
                Ok((id, tries, ban))
            })
            .map_err(|e| Error::store(path, e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| Error::store(path, e))
    }

    /// A notice was sent: forget it.
    pub fn notice_sent(&mut self, id: i64) -> Result<()> {
        let path = self.store.path();
        self.store
            .durable()?
            .execute("DELETE FROM outbox WHERE id = ?1", [id])
            .map_err(|e| Error::store(path, e))?;
        Ok(())
    }

    /// A notice could not be sent: keep it for the next run.
    pub fn notice_failed(&mut self, id: i64, error: &str) -> Result<()> {
        let path = self.store.path();
        self.store
            .durable()?
            .execute("UPDATE outbox SET tries = tries + 1, last_error = ?2 WHERE id = ?1", params![id, error])
            .map_err(|e| Error::store(path, e))?;
        Ok(())
    }
}

pub(super) fn queue_notice(tx: &Transaction<'_>, now: i64, ban_id: i64) -> rusqlite::Result<()> {
    tx.execute("INSERT INTO outbox (created, ban_id) VALUES (?1, ?2)", params![now, ban_id])?;
    Ok(())
}
