//! Housekeeping run by the sync job: old rows pruned, timestamps from the
//! future repaired; and the bounded pruning on the attempt path.

use super::*;
use crate::store::attempts;

/// On the authentication path, every `PRUNE_EVERY`-th recorded attempt
/// looks at the `PRUNE_BATCH` oldest rows and deletes those that can no
/// longer count or lie beyond `max_failures`: bounded work, and four times
/// faster than any flood adds rows (one per call).
pub(super) const PRUNE_EVERY: i64 = 16;
pub(super) const PRUNE_BATCH: i64 = 64;

/// What [`Banguard::maintain`] removed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MaintainReport {
    pub attempts_pruned: u64,
    pub bans_pruned: u64,
    pub events_pruned: u64,
    pub timestamps_fixed: u64,
}

impl Banguard {
    /// Housekeeping for the sync job: prunes attempts that can no longer
    /// count, bans and events older than the history period, pulls
    /// timestamps from the future (a clock stepped back) to now so nothing
    /// lasts longer than it should, brings the runtime state's ban mirror up
    /// to date, and returns free pages to the disk.
    pub fn maintain(&mut self) -> Result<MaintainReport> {
        let now = self.clock.now();
        let config = self.config.clone();
        let rt_path = self.store.runtime_path();
        let re = |err| Error::store(rt_path, err);
        let mut report = MaintainReport::default();
        loop {
            let tx = self.begin()?;
            let n = prune_attempts(&tx, &config, now, 10_000).map_err(re)?;
            tx.commit().map_err(re)?;
            report.attempts_pruned += n;
            if n < 10_000 {
                break;
            }
        }
        let keep_after =
            now - config.store.history.max(config.recidive.findtime).max(config.default.bantime_lookback);
        let tx = self.begin()?;
        report.timestamps_fixed +=
            tx.execute("UPDATE attempts SET at = ?1 WHERE at > ?1 + 60", [now]).map_err(re)? as u64;
        // Expired bans leave the mirror (the store keeps them as history).
        tx.execute("DELETE FROM bans WHERE expires IS NOT NULL AND expires <= ?1", [now]).map_err(re)?;
        let durable_report = change_bans(&tx, &self.store, |dt| {
            let mut r = MaintainReport {
                bans_pruned: dt.execute(
                    "DELETE FROM bans WHERE created < ?1 AND (lifted IS NOT NULL OR (expires IS NOT NULL AND expires < ?1))
                       AND id NOT IN (SELECT ban_id FROM outbox)",
                    [keep_after],
                )? as u64,
                events_pruned: dt.execute("DELETE FROM events WHERE at < ?1", [now - config.store.history])? as u64,
                ..MaintainReport::default()
            };
            // A clock stepped back: shift future bans so they end no later
            // than their full length from now.
            r.timestamps_fixed = dt.execute(
                "UPDATE bans SET expires = ?1 + (expires - created), created = ?1
                 WHERE created > ?1 + 60 AND expires IS NOT NULL",
                [now],
            )? as u64;
            r.timestamps_fixed +=
                dt.execute("UPDATE bans SET created = ?1 WHERE created > ?1 + 60", [now])? as u64;
            r.timestamps_fixed += dt.execute("UPDATE events SET at = ?1 WHERE at > ?1 + 60", [now])? as u64;
            let rebuild = r.timestamps_fixed > 0;
            Ok((r, BanDelta { rebuild, ..BanDelta::default() }))
        })?;
        tx.commit().map_err(re)?;
        report.bans_pruned = durable_report.bans_pruned;
        report.events_pruned = durable_report.events_pruned;
        report.timestamps_fixed += durable_report.timestamps_fixed;
        self.store.runtime.execute_batch("PRAGMA incremental_vacuum(1000)").map_err(re)?;
        let durable = self.store.durable()?;
        durable
            .execute_batch("PRAGMA incremental_vacuum(1000)")
            .map_err(|e| Error::store(self.store.path(), e))?;
        // Busy readers may keep it from completing; the next run tries again.
        let _ = durable.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
        Ok(report)
    }
}

/// Deletes, among the `limit` oldest attempts, those too old to count for
/// any service and those beyond the newest `store.max_failures` (a flood of
/// unique addresses). Ids grow with time, so the oldest rows come first and
/// the work stays bounded without an index on the time.
pub(super) fn prune_attempts(
    tx: &Transaction<'_>,
    config: &Config,
    now: i64,
    limit: i64,
) -> rusqlite::Result<u64> {
    let cutoff = now - config.max_findtime();
    let newest: i64 = tx.query_row("SELECT coalesce(max(id), 0) FROM attempts", [], |r| r.get(0))?;
    let beyond = newest - config.store.max_failures as i64;
    let n = attempts::delete(
        tx,
        "id IN (SELECT id FROM attempts ORDER BY id LIMIT ?3) AND (at <= ?1 OR id <= ?2)",
        params![cutoff, beyond, limit],
    )?;
    Ok(n as u64)
}
