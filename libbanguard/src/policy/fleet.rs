//! Bans shared with other servers (`[fleet]`): what this server posts
//! (its own bans, never what it took from the fleet) and what it takes
//! (the fleet's decisions, as bans of origin `crowdsec`, under the rule of
//! a manual ban: ignoreip, loopback and the widest-network floor always
//! win, since any peer may post anything). The conversation with the
//! fleet is the CLI's; the rows are the store's (`store::fleet`).

use super::*;
use crate::ban::BanOrigin;
use crate::store::fleet;

/// A decision of the fleet, checked for shape by the caller (scope, value,
/// duration), to be taken as a ban.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetDecision {
    /// The fleet's id of the decision.
    pub id: i64,
    pub host: HostKey,
    /// Local time it ends (now + its remaining duration).
    pub expires: i64,
    /// Why, in the fleet's words ("crowdsecurity/ssh-bf", "banguard/recidive").
    pub scenario: String,
    /// Who posted it ("crowdsec", "cscli", "banguard"...).
    pub origin: String,
}

/// What one exchange's decisions did here.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FleetApplied {
    /// New bans taken from the fleet.
    pub imported: Vec<Ban>,
    /// Bans lifted because the fleet deleted their decision.
    pub lifted: Vec<Ban>,
    /// Decisions already held as bans.
    pub present: u32,
    /// This server's own decisions, coming back (never taken).
    pub ours: u32,
    /// Decisions whose ban was lifted here by an admin: the unban holds.
    pub held: u32,
    /// Refused, with why (inside ignoreip, loopback, wider than the floor).
    pub refused: Vec<(HostKey, String)>,
    /// Left out because `max_decisions` imported bans are active.
    pub over_cap: u32,
}

/// The fleet's side of `status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetStatus {
    /// Unix time of the last exchange that succeeded.
    pub last_ok: Option<i64>,
    /// The last failure, if the last exchange failed.
    pub last_error: Option<String>,
    /// Local bans not posted yet.
    pub pending_exports: u64,
    /// Active bans taken from the fleet.
    pub imported_active: u64,
}

impl Banguard {
    /// This server's active bans that are not in the fleet yet and are due
    /// (tries so far decide the back-off): its own and fail2ban's, never
    /// the fleet's, addresses and networks only.
    pub fn fleet_to_export(&self) -> Result<Vec<(Ban, u32)>> {
        let now = self.clock.now();
        let rows = fleet::to_export(self.store.durable()?, now, BanOrigin::Crowdsec.name())
            .map_err(|e| Error::store(self.store.path(), e))?;
        Ok(rows.into_iter().filter(|(b, _)| b.host.net().is_some()).collect())
    }

    /// A ban became decision `decision_id` in the fleet.
    pub fn fleet_exported(&mut self, ban_id: i64, decision_id: i64) -> Result<()> {
        fleet::exported(self.store.durable()?, ban_id, decision_id)
            .map_err(|e| Error::store(self.store.path(), e))
    }

    /// Posting a ban failed: try again at `next_try`.
    pub fn fleet_export_failed(&mut self, ban_id: i64, error: &str, next_try: i64) -> Result<()> {
        fleet::export_failed(self.store.durable()?, ban_id, error, next_try)
            .map_err(|e| Error::store(self.store.path(), e))
    }

    /// Decisions this server posted for bans since lifted here: (ban id,
    /// decision id), to delete from the fleet.
    pub fn fleet_to_withdraw(&self) -> Result<Vec<(i64, i64)>> {
        fleet::to_withdraw(self.store.durable()?).map_err(|e| Error::store(self.store.path(), e))
    }

    pub fn fleet_withdrawn(&mut self, ban_id: i64) -> Result<()> {
        fleet::withdrawn(self.store.durable()?, ban_id).map_err(|e| Error::store(self.store.path(), e))
    }

    /// Applies one exchange: the decisions the fleet deleted first (their
    /// bans lifted), then its new ones, at most `max_active` imported bans
    /// active at once. Idempotent: a decision seen twice changes nothing.
    pub fn fleet_apply(
        &mut self,
        deleted: &[i64],
        new: &[FleetDecision],
        max_active: u64,
    ) -> Result<FleetApplied> {
        let now = self.clock.now();
        let path = self.store.path().to_path_buf();
        let e = |err| Error::store(&path, err);
        let mut out = FleetApplied::default();
        // Deleted: lift the ban each one became (unless it is over).
        let mut lift_ids = Vec::new();
        {
            let durable = self.store.durable()?;
            for id in deleted {
                if let Some(ban_id) = fleet::imported_ban(durable, *id).map_err(e)? {
                    lift_ids.push(ban_id);
                }
                fleet::forget_import(durable, *id).map_err(e)?;
            }
        }
        if !lift_ids.is_empty() {
            let tx = self.store.begin()?;
            let lifted = change_bans(&tx, &self.store, |dt| {
                let lifted: Vec<Ban> =
                    bans::active_bans(dt, now)?.into_iter().filter(|b| lift_ids.contains(&b.id)).collect();
                lift_bans(dt, &lifted, now, |_| "the fleet deleted its decision".to_string())?;
                let gone = lifted.iter().map(|b| b.id).collect();
                Ok((lifted, BanDelta { removed: gone, ..BanDelta::default() }))
            })?;
            tx.commit().map_err(|err| Error::store(self.store.runtime_path(), err))?;
            out.lifted = lifted;
        }
        // New: never our own, never one an admin lifted here, at most the cap.
        let mut take = Vec::new();
        let mut ids = Vec::new();
        {
            let durable = self.store.durable()?;
            let mut active = fleet::active_imports(durable, now, BanOrigin::Crowdsec.name()).map_err(e)?;
            for d in new {
                if fleet::is_ours(durable, d.id).map_err(e)? {
                    out.ours += 1;
                    continue;
                }
                if let Some(ban_id) = fleet::imported_ban(durable, d.id).map_err(e)? {
                    if fleet::is_lifted(durable, ban_id).map_err(e)? {
                        out.held += 1;
                    } else {
                        out.present += 1;
                    }
                    continue;
                }
                // Refused ones never count against the cap.
                if let Err(why) = crate::ban::check_target(&self.config, &d.host) {
                    out.refused.push((d.host.clone(), why));
                    continue;
                }
                if active >= max_active {
                    out.over_cap += 1;
                    continue;
                }
                active += 1;
                ids.push(d.id);
                take.push(ForeignBan {
                    host: d.host.clone(),
                    service: ALL_SERVICES.to_string(),
                    created: now,
                    expires: Some(d.expires),
                    reason: format!("{} ({})", d.scenario, d.origin),
                    origin: BanOrigin::Crowdsec,
                    failures: 0,
                    carried: 0,
                    firewall: true,
                });
            }
        }
        let answers = self.import_bans(&take)?;
        let mut pairs = Vec::with_capacity(answers.len());
        for ((id, f), answer) in ids.iter().zip(&take).zip(answers) {
            match answer {
                Imported::New(b) => {
                    pairs.push((*id, b.id));
                    out.imported.push(b);
                }
                Imported::Present(b) => {
                    pairs.push((*id, b.id));
                    out.present += 1;
                }
                Imported::Refused(why) => out.refused.push((f.host.clone(), why)),
                Imported::Over => {}
            }
        }
        fleet::record_imports(self.store.durable()?, &pairs).map_err(e)?;
        Ok(out)
    }

    /// The fleet's decisions held as active bans here.
    pub fn fleet_imported_ids(&self) -> Result<Vec<i64>> {
        fleet::active_import_ids(self.store.durable()?, self.clock.now())
            .map_err(|e| Error::store(self.store.path(), e))
    }

    /// A value of the exchange's own state (`cursor`, `last_ok`...).
    pub fn fleet_state(&self, key: &str) -> Result<Option<String>> {
        fleet::state(self.store.durable()?, key).map_err(|e| Error::store(self.store.path(), e))
    }

    pub fn set_fleet_state(&mut self, key: &str, value: &str) -> Result<()> {
        fleet::set_state(self.store.durable()?, key, value).map_err(|e| Error::store(self.store.path(), e))
    }

    /// The fleet's side of `status`.
    pub fn fleet_status(&self) -> Result<FleetStatus> {
        let now = self.clock.now();
        let durable = self.store.durable()?;
        let e = |err| Error::store(self.store.path(), err);
        Ok(FleetStatus {
            last_ok: fleet::state(durable, "last_ok").map_err(e)?.and_then(|v| v.parse().ok()),
            last_error: fleet::state(durable, "last_error").map_err(e)?.filter(|v| !v.is_empty()),
            pending_exports: fleet::pending_exports(durable, now, BanOrigin::Crowdsec.name()).map_err(e)?,
            imported_active: fleet::active_imports(durable, now, BanOrigin::Crowdsec.name()).map_err(e)?,
        })
    }
}
