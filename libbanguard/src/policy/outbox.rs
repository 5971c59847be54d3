//! The mail notices about bans: queued in the ban's transaction, sent by
//! the sync job, kept until sent (rows: `store::outbox`).

use super::*;
use crate::store::outbox;

impl Banguard {
    /// Notices waiting to be mailed: (notice id, tries so far, ban).
    pub fn pending_notices(&self) -> Result<Vec<(i64, u32, Ban)>> {
        outbox::pending(self.store.durable()?).map_err(|e| Error::store(self.store.path(), e))
    }

    /// Account lock notices waiting to be mailed: (notice id, tries so
    /// far, lock); a notice whose lock is gone from the history is dropped.
    pub fn pending_lock_notices(&self) -> Result<Vec<(i64, u32, AccountLock)>> {
        let e = |err| Error::store(self.store.path(), err);
        let durable = self.store.durable()?;
        let mut out = Vec::new();
        for (id, tries, lock_id) in outbox::pending_locks(durable).map_err(e)? {
            match self.account_lock(lock_id)? {
                Some(lock) => out.push((id, tries, lock)),
                None => outbox::sent(durable, id).map_err(e)?,
            }
        }
        Ok(out)
    }

    /// A notice was sent: forget it.
    pub fn notice_sent(&mut self, id: i64) -> Result<()> {
        outbox::sent(self.store.durable()?, id).map_err(|e| Error::store(self.store.path(), e))
    }

    /// A notice could not be sent: keep it for the next run.
    pub fn notice_failed(&mut self, id: i64, error: &str) -> Result<()> {
        outbox::failed(self.store.durable()?, id, error).map_err(|e| Error::store(self.store.path(), e))
    }
}
