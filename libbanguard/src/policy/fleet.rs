//! Bans shared with other servers (`[fleet]`): what this server posts
//! (its own bans, never what it took from the fleet) and what it takes
//! (the fleet's decisions, as bans of origin `crowdsec` on every service,
//! under the rule of a manual ban: ignoreip, loopback and the
//! widest-network floor always win, since any peer may post anything).
//! The conversation with the fleet is the CLI's; the rows are the store's
//! (`store::fleet`).
//!
//! The model is CrowdSec's own: decisions are independent, and a host is
//! refused while any decision covering it is in force. Each decision taken
//! becomes a ban lasting what it asked for, so the longest in force wins
//! here too. The stream names each value's longest decision, and its
//! deletions by value; a full pull lists everything in force, so it is
//! reconciled against what is held here: a host no longer listed, or held
//! longer than anything listed, is lifted, whatever became of the ids (a
//! LAPI whose database was reset starts them at 1 again).

use super::*;
use crate::ban::BanOrigin;
use crate::store::fleet;
use std::collections::{BTreeMap, HashMap, HashSet};

/// How far two ends may lie apart and still be one decision: the LAPI
/// sends remaining durations, fractional (1.4) or rounded (1.6.4+), and
/// time passes between its reply and our reading.
pub const SAME_END: i64 = 5;

/// A decision of the fleet, checked for shape by the caller (scope, value,
/// duration), to be taken as a ban.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetDecision {
    pub host: HostKey,
    /// Local time it ends (now + its remaining duration).
    pub expires: i64,
    /// Why, in the fleet's words ("crowdsecurity/ssh-bf", "banguard/recidive").
    pub scenario: String,
    /// Who posted it ("crowdsec", "cscli", "banguard"...).
    pub origin: String,
}

/// One pull from the fleet: the decisions it named and the values whose
/// decisions ended or were deleted.
#[derive(Debug, Clone, Default)]
pub struct FleetPull {
    /// A full pull: `new` is everything in force.
    pub startup: bool,
    pub new: Vec<FleetDecision>,
    pub deleted: Vec<HostKey>,
    /// Decisions of scope `Username`: accounts to refuse unfamiliar
    /// sources for.
    pub accounts: Vec<super::accounts::FleetAccountLock>,
    /// Accounts whose decisions ended or were deleted.
    pub accounts_deleted: Vec<String>,
}

/// Counts by reason, with a few examples each: what a log line or the
/// report says about thousands of items without saying each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally(BTreeMap<String, (u64, Vec<String>)>);

/// Examples kept per reason.
const EXAMPLES: usize = 3;

impl Tally {
    pub fn add(&mut self, reason: &str, example: &str) {
        let (n, examples) = self.0.entry(reason.to_string()).or_default();
        *n += 1;
        if examples.len() < EXAMPLES {
            examples.push(example.to_string());
        }
    }

    pub fn total(&self) -> u64 {
        self.0.values().map(|(n, _)| n).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// (reason, count, examples), by reason.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64, &[String])> {
        self.0.iter().map(|(r, (n, e))| (r.as_str(), *n, e.as_slice()))
    }

    /// "3 × reason (e.g. a, b, c); 1 × other (e.g. d)".
    pub fn summary(&self) -> String {
        self.iter()
            .map(|(r, n, e)| format!("{n} × {r} (e.g. {})", e.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl Serialize for Tally {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for (reason, count, examples) in self.iter() {
            seq.serialize_element(&serde_json::json!({
                "reason": reason, "count": count, "examples": examples
            }))?;
        }
        seq.end()
    }
}

/// Lines kept as examples of the bans taken and lifted.
const SHOWN: usize = 10;

/// What one pull's decisions did here.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FleetApplied {
    /// Bans taken from the fleet.
    pub taken: u64,
    /// Of those, for a host already held, by a longer decision.
    pub longer: u64,
    /// Bans lifted: their decision was deleted or ended in the fleet, or
    /// a full pull no longer lists them (or lists a shorter one).
    pub lifted: u64,
    /// Decisions already held as bans.
    pub present: u64,
    /// This server's own decisions, coming back (never taken).
    pub ours: u64,
    /// Decisions for hosts an admin unbanned here that end no later than
    /// the ban lifted: the unban holds.
    pub held: u64,
    /// Refused (inside ignoreip, loopback, wider than the floor), by why.
    pub refused: Tally,
    /// Left out because `max_decisions` imported bans are active.
    pub over_cap: u64,
    /// Some of the bans taken and lifted, for the log.
    pub taken_shown: Vec<String>,
    pub lifted_shown: Vec<String>,
    /// Account locks taken from the fleet, and lifted.
    pub accounts_locked: u64,
    pub accounts_lifted: u64,
    /// Some of the account locks taken, for the log.
    pub accounts_shown: Vec<String>,
}

impl FleetApplied {
    /// Whether the bans here changed (the firewall needs another push).
    pub fn changed(&self) -> bool {
        self.taken + self.lifted > 0
    }

    /// Whether the account locks here changed.
    pub fn accounts_changed(&self) -> bool {
        self.accounts_locked + self.accounts_lifted > 0
    }
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

    /// A ban is in the fleet now (posted as alert `alert_id`, or found
    /// there already).
    pub fn fleet_exported(&mut self, ban_id: i64, alert_id: Option<i64>) -> Result<()> {
        fleet::exported(self.store.durable()?, ban_id, alert_id)
            .map_err(|e| Error::store(self.store.path(), e))
    }

    /// Posting a ban failed: try again at `next_try`.
    pub fn fleet_export_failed(&mut self, ban_id: i64, error: &str, next_try: i64) -> Result<()> {
        fleet::export_failed(self.store.durable()?, ban_id, error, next_try)
            .map_err(|e| Error::store(self.store.path(), e))
    }

    /// Bans this server posted and has lifted since: their decisions are to
    /// be withdrawn from the fleet.
    pub fn fleet_to_withdraw(&self) -> Result<Vec<Ban>> {
        fleet::to_withdraw(self.store.durable()?).map_err(|e| Error::store(self.store.path(), e))
    }

    pub fn fleet_withdrawn(&mut self, ban_id: i64) -> Result<()> {
        fleet::withdrawn(self.store.durable()?, ban_id).map_err(|e| Error::store(self.store.path(), e))
    }

    /// The hosts (store keys) the fleet's active bans here cover: a pull's
    /// deletions and decisions for them always matter, whatever the cap.
    pub fn fleet_held_hosts(&self) -> Result<HashSet<String>> {
        let now = self.clock.now();
        let held = fleet::active_by_host(self.store.durable()?, now, BanOrigin::Crowdsec.name(), false)
            .map_err(|e| Error::store(self.store.path(), e))?;
        Ok(held.into_keys().collect())
    }

    /// Applies one pull: first the values the fleet deleted (their bans
    /// lifted), then its decisions, at most `max_active` imported bans
    /// active at once; a full pull also lifts what it no longer lists.
    /// Idempotent: a decision seen twice changes nothing. Written in short
    /// batches, so a login never waits long for its turn.
    pub fn fleet_apply(&mut self, pull: &FleetPull, max_active: u64) -> Result<FleetApplied> {
        let now = self.clock.now();
        let crowdsec = BanOrigin::Crowdsec.name();
        let path = self.store.path().to_path_buf();
        let e = |err| Error::store(&path, err);
        let durable = self.store.durable()?;
        fleet::prune_held(durable, now).map_err(e)?;
        let mut imports = fleet::active_by_host(durable, now, crowdsec, false).map_err(e)?;
        let local = fleet::active_by_host(durable, now, crowdsec, true).map_err(e)?;
        let held = fleet::held(durable, now).map_err(e)?;
        let mut out = FleetApplied::default();
        let mut lift: Vec<(i64, HostKey)> = Vec::new();
        let mut take: Vec<Ban> = Vec::new();

        for host in &pull.deleted {
            if let Some(bans) = imports.remove(&host.db_key()) {
                lift.extend(bans.into_iter().map(|(id, _)| (id, host.clone())));
            }
        }
        // The longest decision per host (ties and `dedup=false` may name
        // a host twice).
        let mut longest: HashMap<String, &FleetDecision> = HashMap::with_capacity(pull.new.len());
        for d in &pull.new {
            let slot = longest.entry(d.host.db_key()).or_insert(d);
            if d.expires > slot.expires {
                *slot = d;
            }
        }
        let mut active = imports.len() as u64;
        let mut listed: HashSet<&str> = HashSet::with_capacity(longest.len());
        // In the order they came, for a stable cap.
        for d in &pull.new {
            let key = d.host.db_key();
            let Some(&best) = longest.get(&key) else { continue };
            if !std::ptr::eq(best, d) {
                continue;
            }
            let covers = |end: Option<i64>| end.is_none_or(|e| e >= d.expires - SAME_END);
            if d.origin == "banguard"
                && local.get(&key).is_some_and(|bans| bans.iter().any(|(_, end)| covers(*end)))
            {
                out.ours += 1;
                listed.insert(longest.get_key_value(&key).expect("present").0);
                continue;
            }
            if held.get(&key).is_some_and(|until| *until >= d.expires - SAME_END) {
                out.held += 1;
                continue;
            }
            if let Err(why) = crate::ban::check_target(&self.config, &d.host) {
                // One reason for all hosts refused alike, the hosts as examples.
                let mut reason = why;
                if let Some(net) = d.host.net() {
                    reason = reason.replace(&net.to_string(), "the host");
                }
                out.refused.add(&reason.replace(&d.host.to_string(), "the host"), &d.host.to_string());
                continue;
            }
            listed.insert(longest.get_key_value(&key).expect("present").0);
            let fresh = || Ban {
                firewall: true,
                origin: BanOrigin::Crowdsec,
                ..Ban::new(
                    d.host.clone(),
                    ALL_SERVICES,
                    now,
                    Some(d.expires),
                    &format!("{} ({})", d.scenario, d.origin),
                )
            };
            match imports.get_mut(&key) {
                Some(bans) => {
                    if pull.startup {
                        // A full pull names the longest decision in force:
                        // anything held longer was deleted in the meantime.
                        let (stale, keep): (Vec<_>, Vec<_>) = std::mem::take(bans)
                            .into_iter()
                            .partition(|(_, end)| end.is_none_or(|e| e > d.expires + SAME_END));
                        lift.extend(stale.into_iter().map(|(id, _)| (id, d.host.clone())));
                        *bans = keep;
                    }
                    if bans.iter().any(|(_, end)| covers(*end)) {
                        out.present += 1;
                    } else {
                        out.longer += 1;
                        take.push(fresh());
                    }
                }
                None if active >= max_active => out.over_cap += 1,
                None => {
                    active += 1;
                    take.push(fresh());
                }
            }
        }
        if pull.startup {
            for (key, bans) in &imports {
                if !listed.contains(key.as_str()) {
                    let host = HostKey::from_db_key(key).unwrap_or_else(|| HostKey::Name(key.clone()));
                    lift.extend(bans.iter().map(|(id, _)| (*id, host.clone())));
                }
            }
        }

        out.lifted = lift.len() as u64;
        out.lifted_shown = lift.iter().take(SHOWN).map(|(_, h)| h.to_string()).collect();
        self.lift_in_batches(&lift, ALL_SERVICES, "the fleet no longer has a decision for it")?;
        out.taken = take.len() as u64;
        out.taken_shown = take
            .iter()
            .take(SHOWN)
            .map(|b| format!("{} until {} ({})", b.host, crate::text::time(b.expires.unwrap_or(0)), b.reason))
            .collect();
        self.insert_in_batches(take)?;
        self.fleet_apply_accounts(pull, &mut out)?;
        Ok(out)
    }

    /// Lifts bans (id, host; all on `service`) in short batches, each with
    /// its history line.
    fn lift_in_batches(&mut self, bans: &[(i64, HostKey)], service: &str, why: &str) -> Result<()> {
        let now = self.clock.now();
        let mut rest = bans;
        let _checkpoints = self.store.checkpoint_between_batches()?;
        let mut batches = 0u32;
        while !rest.is_empty() {
            let tx = self.store.begin()?;
            let done = change_bans(&tx, &self.store, |dt| {
                let started = std::time::Instant::now();
                let mut delta = BanDelta::default();
                for (i, (id, host)) in rest.iter().enumerate() {
                    bans::lift(dt, *id, now)?;
                    history::add_event(dt, now, host, service, "unban", why)?;
                    delta.removed.push(*id);
                    if started.elapsed() >= BATCH_TIME {
                        return Ok((i + 1, delta));
                    }
                }
                Ok((rest.len(), delta))
            })?;
            tx.commit().map_err(|err| Error::store(self.store.runtime_path(), err))?;
            rest = &rest[done..];
            batches += 1;
            self.between_batches(batches, rest.is_empty());
        }
        Ok(())
    }

    /// Stores new bans in short batches, each with its history line.
    pub(crate) fn insert_in_batches(&mut self, new: Vec<Ban>) -> Result<Vec<Ban>> {
        let now = self.clock.now();
        let mut stored = Vec::with_capacity(new.len());
        let mut rest = new.as_slice();
        let _checkpoints = self.store.checkpoint_between_batches()?;
        let mut batches = 0u32;
        while !rest.is_empty() {
            let config = &self.config;
            let tx = self.store.begin()?;
            let done = change_bans(&tx, &self.store, |dt| {
                let started = std::time::Instant::now();
                let mut added = Vec::new();
                for ban in rest {
                    let ban = bans::insert_ban(dt, ban.clone())?;
                    history::add_event(dt, now, &ban.host, &ban.service, "ban", &ban.wording(config, false))?;
                    added.push(ban);
                    if started.elapsed() >= BATCH_TIME {
                        break;
                    }
                }
                Ok((added.clone(), BanDelta::added(added)))
            })?;
            tx.commit().map_err(|err| Error::store(self.store.runtime_path(), err))?;
            rest = &rest[done.len()..];
            stored.extend(done);
            batches += 1;
            self.between_batches(batches, rest.is_empty());
        }
        Ok(stored)
    }

    /// Between two batches, outside the turn: the store's write-ahead log
    /// folded back now and then (never inside a batch, where its fsync
    /// would hold logins up), and a pause in which waiting logins take
    /// their turns.
    fn between_batches(&self, batches: u32, last: bool) {
        if last {
            return;
        }
        if batches.is_multiple_of(CHECKPOINT_EVERY) {
            self.store.checkpoint();
        }
        std::thread::sleep(BATCH_PAUSE);
    }

    /// A value of the exchange's own state (`last_pull`, `last_ok`...).
    pub fn fleet_state(&self, key: &str) -> Result<Option<String>> {
        fleet::state(self.store.durable()?, key).map_err(|e| Error::store(self.store.path(), e))
    }

    pub fn set_fleet_state(&mut self, key: &str, value: &str) -> Result<()> {
        fleet::set_state(self.store.durable()?, key, value).map_err(|e| Error::store(self.store.path(), e))
    }

    /// The addresses the fleet's exchange talks to (the LAPI, resolved at
    /// the last exchange): never blocked by the firewall, whatever a
    /// decision says, so that no peer can cut this server off its fleet.
    pub fn fleet_protected(&self) -> Result<Vec<IpNet>> {
        Ok(self
            .fleet_state(PROTECTED_KEY)?
            .unwrap_or_default()
            .split(',')
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .map(IpNet::from)
            .collect())
    }

    /// Records the LAPI's addresses (see [`Banguard::fleet_protected`]).
    pub fn set_fleet_protected(&mut self, addrs: &[IpAddr]) -> Result<()> {
        let text = addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        self.set_fleet_state(PROTECTED_KEY, &text)
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
            imported_active: fleet::active_count(durable, now, BanOrigin::Crowdsec.name()).map_err(e)?,
        })
    }
}

/// Where the LAPI's addresses are kept in the exchange's state.
const PROTECTED_KEY: &str = "lapi_addrs";

/// The longest one batch of ban writes holds the runtime state's lock (a
/// login waits at most about this, plus the commit, for its turn).
const BATCH_TIME: std::time::Duration = std::time::Duration::from_millis(2);

/// The pause between batches, in which waiting logins take their turns.
const BATCH_PAUSE: std::time::Duration = std::time::Duration::from_micros(250);

/// Batches between two folds of the store's write-ahead log.
const CHECKPOINT_EVERY: u32 = 16;
