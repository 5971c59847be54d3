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
    /// Accounts whose bucket emptied and whose lock ended.
    pub accounts_forgotten: u64,
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
        report.timestamps_fixed += attempts::pull_back(&tx, now).map_err(re)?;
        bans::drop_ended_from_mirror(&tx, now).map_err(re)?;
        let durable_report = change_bans(&tx, &self.store, |dt| {
            let mut r = MaintainReport {
                bans_pruned: bans::prune_ended(dt, keep_after)?,
                events_pruned: history::prune_events(dt, now - config.store.history)?,
                ..MaintainReport::default()
            };
            r.timestamps_fixed = bans::pull_back(dt, now)? + history::pull_back_events(dt, now)?;
            let rebuild = r.timestamps_fixed > 0;
            Ok((r, BanDelta { rebuild, ..BanDelta::default() }))
        })?;
        tx.commit().map_err(re)?;
        report.bans_pruned = durable_report.bans_pruned;
        report.events_pruned = durable_report.events_pruned;
        report.timestamps_fixed += durable_report.timestamps_fixed;
        report.accounts_forgotten = self.maintain_accounts(now)?;
        self.store.vacuum()?;
        Ok(report)
    }
}

/// The bounded pruning of attempts (`store::attempts::prune`) under this
/// config: older than any service's findtime, beyond `max_failures`.
pub(super) fn prune_attempts(
    tx: &Transaction<'_>,
    config: &Config,
    now: i64,
    limit: i64,
) -> rusqlite::Result<u64> {
    attempts::prune(tx, now - config.max_findtime(), config.store.max_failures as i64, limit)
}
