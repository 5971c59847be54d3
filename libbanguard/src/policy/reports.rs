//! What the engine tells people: bans, hosts failing, a host's history,
//! per-service figures, bans that ended. Reads only (rows: `store`).

use super::*;
use crate::store::{attempts, history};

/// A host with failures counted but not (yet) banned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failing {
    pub host: HostKey,
    pub service: String,
    pub count: u32,
    pub maxretry: u32,
    pub first: i64,
    pub last: i64,
    pub findtime: i64,
}

/// One entry of a host's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub at: i64,
    pub host: HostKey,
    pub service: String,
    /// "ban", "unban", "expire", "notice".
    pub kind: String,
    pub detail: String,
}

/// Per-service figures, like `fail2ban-client status <jail>`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceStatus {
    pub service: String,
    pub currently_failing: u32,
    /// Failures counted since the runtime state was created (normally
    /// since boot), like fail2ban's since its start.
    pub total_failed: u64,
    pub currently_banned: u32,
    pub total_banned: u64,
    pub banned: Vec<HostKey>,
}

impl Banguard {
    /// Bans, newest first: active ones, or with `include_inactive` also
    /// expired and lifted ones still in the history.
    pub fn bans(&self, service: Option<&str>, include_inactive: bool) -> Result<Vec<Ban>> {
        let now = self.clock.now();
        let rows = bans::all(self.store.durable()?).map_err(|e| Error::store(self.store.path(), e))?;
        let mut out = Vec::new();
        for b in rows {
            if service.is_some_and(|s| b.service != s && b.service != ALL_SERVICES) {
                continue;
            }
            if include_inactive || b.is_active(now) {
                out.push(b);
            }
        }
        Ok(out)
    }

    /// Hosts counting failures within their service's findtime that are
    /// not banned.
    pub fn failing(&self, service: Option<&str>) -> Result<Vec<Failing>> {
        let now = self.clock.now();
        let path = self.store.runtime_path();
        let e = |err| Error::store(path, err);
        let rows =
            attempts::failing(&self.store.runtime, now - self.config.max_findtime(), service).map_err(e)?;
        let active = self.bans(None, false)?;
        let mut out = Vec::new();
        for row in rows {
            let attempts::Tally { host, service: svc, mut count, first, last } = row;
            let Some(key) = HostKey::from_db_key(&host) else { continue };
            let policy = self.config.policy(&svc);
            if first <= now - policy.findtime {
                count =
                    attempts::counted(&self.store.runtime, &host, &svc, now - policy.findtime).map_err(e)?;
            }
            let banned = active
                .iter()
                .any(|b| (b.service == svc || b.service == ALL_SERVICES) && overlaps(&b.host, &key));
            if count == 0 || banned {
                continue;
            }
            out.push(Failing {
                host: key,
                service: svc,
                count,
                maxretry: policy.maxretry,
                first,
                last,
                findtime: policy.findtime,
            });
        }
        Ok(out)
    }

    /// The events of one host (or of every host inside a network), oldest
    /// first.
    pub fn history(&self, target: &HostKey) -> Result<Vec<Event>> {
        let rows = history::events(self.store.durable()?).map_err(|e| Error::store(self.store.path(), e))?;
        let mut out = Vec::new();
        for history::EventRow { at, host, service, kind, detail } in rows {
            let Some(key) = HostKey::from_db_key(&host) else { continue };
            if overlaps(target, &key) {
                out.push(Event { at, host: key, service, kind, detail });
            }
        }
        Ok(out)
    }

    /// Figures per service (every configured service plus any seen in the
    /// store), or for one.
    pub fn status(&self, service: Option<&str>) -> Result<Vec<ServiceStatus>> {
        let path = self.store.path();
        let e = |err| Error::store(path, err);
        let rt_path = self.store.runtime_path();
        let re = |err| Error::store(rt_path, err);
        let durable = self.store.durable()?;
        // Failures still in the table; those pruned or consumed are in totals.
        let live: BTreeMap<String, i64> =
            attempts::live_by_service(&self.store.runtime).map_err(re)?.into_iter().collect();
        let mut names: Vec<String> = self.config.services.keys().chain(live.keys()).cloned().collect();
        names.extend(history::total_services(durable).map_err(e)?);
        names.extend(history::total_services(&self.store.runtime).map_err(re)?);
        names.retain(|n| n != ALL_SERVICES);
        names.sort();
        names.dedup();
        if let Some(s) = service {
            names = vec![s.to_string()];
        }
        let failing = self.failing(None)?;
        let bans = self.bans(None, false)?;
        let mut out = Vec::new();
        for name in names {
            let banned = history::total(durable, &name, "banned").map_err(e)?;
            let failed = history::total(&self.store.runtime, &name, "failed").map_err(re)?
                + live.get(&name).copied().unwrap_or(0);
            // Hosts, not bans: a repeat offender has a service ban and an
            // all-services ban at once.
            let mut banned_hosts: Vec<HostKey> = bans
                .iter()
                .filter(|b| b.service == name || b.service == ALL_SERVICES)
                .map(|b| b.host.clone())
                .collect();
            banned_hosts.sort();
            banned_hosts.dedup();
            out.push(ServiceStatus {
                currently_failing: failing.iter().filter(|f| f.service == name).count() as u32,
                total_failed: failed.max(0) as u64,
                currently_banned: banned_hosts.len() as u32,
                total_banned: banned.max(0) as u64,
                banned: banned_hosts,
                service: name,
            });
        }
        Ok(out)
    }

    /// Bans that expired since `since` (for "expired" syslog lines).
    pub fn expired_between(&self, since: i64, until: i64) -> Result<Vec<Ban>> {
        bans::ended_between(self.store.durable()?, since, until)
            .map_err(|e| Error::store(self.store.path(), e))
    }
}
