//! The policy: counting attempts in a window, bans with increasing length,
//! ignore lists and the repeat-offender rule, each operation one
//! `BEGIN IMMEDIATE` transaction so that many processes (one per sshd
//! connection) can call it at once and no attempt beyond `maxretry` is
//! ever let through.

use crate::addr::{self, HostKey, Origin};
use crate::config::{Config, ServicePolicy, SyncScope};
use crate::duration::{BanTime, format_duration};
use crate::error::{Error, Result};
use crate::store::{Access, Location, RuntimeTx, Store, retry_busy};
use ipnet::IpNet;
use rusqlite::types::Value;
use rusqlite::{
    Connection, OptionalExtension, Row, ToSql, Transaction, TransactionBehavior, params, params_from_iter,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Service name of bans that cover every service.
pub const ALL_SERVICES: &str = "*";

/// On the authentication path, every `PRUNE_EVERY`-th recorded attempt
/// looks at the `PRUNE_BATCH` oldest rows and deletes those that can no
/// longer count or lie beyond `max_failures`: bounded work, and four times
/// faster than any flood adds rows (one per call).
const PRUNE_EVERY: i64 = 16;
const PRUNE_BATCH: i64 = 64;

/// Where time comes from; tests use [`ManualClock`].
pub trait Clock: Send + Sync {
    /// Unix time in seconds.
    fn now(&self) -> i64;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
    }
}

/// A clock the tests move by hand.
#[derive(Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start: i64) -> Arc<ManualClock> {
        Arc::new(ManualClock(AtomicI64::new(start)))
    }
    pub fn set(&self, t: i64) {
        self.0.store(t, Ordering::SeqCst);
    }
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// One authentication attempt as the caller sees it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    /// PAM service (sshd, vsftpd, ...).
    pub service: &'a str,
    /// PAM_RHOST as given by the application.
    pub rhost: Option<&'a str>,
    /// A numeric client address the application vouches for (sshd's
    /// SSH_CONNECTION); wins over a name in `rhost`.
    pub hint: Option<IpAddr>,
    /// PAM_USER, recorded for the history; never part of the decision.
    pub user: Option<&'a str>,
}

/// A recorded attempt, to be given back if the login succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AttemptId(pub i64);

/// Which attempt a success gives back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptRef {
    /// The attempt recorded on this handle.
    Id(AttemptId),
    /// The newest pending attempt of this host, service and user recorded by
    /// process `pid` or a child of it (sshd's keyboard-interactive method
    /// runs pam_authenticate in a forked child whose memory we never see).
    Origin { pid: u32 },
    /// Nothing recorded (explicit `authsucc` after `preauth`).
    None,
}

/// Why a request is none of banguard's business.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "why", content = "by")]
pub enum Untracked {
    /// The service is disabled in the config.
    Disabled,
    /// The host is covered by this ignoreip entry.
    Ignored(IpNet),
    /// No remote host: a local login.
    Local,
}

/// The answer to an attempt.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "verdict")]
pub enum Verdict {
    /// Not counted, not refused.
    Untracked { reason: Untracked },
    /// Let through to the password check. `used` attempts of `maxretry`
    /// are now counted in the window (including this one, if recorded).
    Allowed { host: HostKey, attempt: Option<AttemptId>, used: u32, maxretry: u32 },
    /// Refused before the password is looked at. `new` is true when this
    /// call created the ban; `escalated` when this refusal sent the ban to
    /// the kernel (the host kept knocking: [`Ban::kernel_reason`]).
    Refused { host: HostKey, ban: Ban, new: bool, escalated: bool },
}

impl Verdict {
    pub fn is_refused(&self) -> bool {
        matches!(self, Verdict::Refused { .. })
    }
}

/// A ban, active or past.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ban {
    pub id: i64,
    pub host: HostKey,
    /// PAM service, or `*` for all.
    pub service: String,
    pub created: i64,
    /// `None`: permanent.
    pub expires: Option<i64>,
    /// When it was lifted by an unban, if it was.
    pub lifted: Option<i64>,
    pub reason: String,
    /// Failures that led to it.
    pub failures: u32,
    /// Earlier bans of the host within the lookback window.
    pub prior_bans: u32,
    /// Marked for the kernel firewall (repeat offender or manual ban).
    pub firewall: bool,
    /// When the sync job last pushed it, if it did.
    pub pushed: Option<i64>,
}

impl Ban {
    /// Whether the ban refuses attempts at time `now`.
    pub fn is_active(&self, now: i64) -> bool {
        self.lifted.is_none() && self.expires.is_none_or(|e| e > now)
    }

    /// The ban's full length.
    pub fn length(&self) -> BanTime {
        match self.expires {
            Some(e) => BanTime::Seconds(e - self.created),
            None => BanTime::Permanent,
        }
    }

    /// "sshd" or "all services".
    pub fn service_label(&self) -> &str {
        if self.service == ALL_SERVICES { "all services" } else { &self.service }
    }

    /// Whether the sync job pushes this ban into the firewall while it is
    /// active: an address key that may be blocked at all (its class, the
    /// `[sync]` floor), and a repeat offender or manual ban unless every
    /// ban goes (`scope = "all"`).
    pub fn goes_to_firewall(&self, sync: &crate::config::SyncConfig) -> bool {
        self.kernel_reason(sync).is_some()
    }

    /// What made the ban, in the one wording of the history, syslog and
    /// the C ABI: "banned on sshd for 10m after 5 failures in 10m",
    /// "repeat offender: banned on all services for 1w after 3 bans in 1d",
    /// "banned on all services for 1h (manual: evil)". With `with_host`
    /// the host follows "banned" (log lines; history rows have their own
    /// host column).
    pub fn wording(&self, config: &Config, with_host: bool) -> String {
        let banned = if with_host { format!("banned {}", self.host) } else { "banned".to_string() };
        let (service, length) = (self.service_label(), self.length());
        match self.reason.as_str() {
            "maxretry" => format!(
                "{banned} on {service} for {length} after {} failures in {}",
                self.failures,
                format_duration(config.policy(&self.service).findtime)
            ),
            "recidive" => format!(
                "repeat offender: {banned} on {service} for {length} after {} bans in {}",
                self.prior_bans + 1,
                format_duration(config.recidive.findtime)
            ),
            reason => format!("{banned} on {service} for {length} ({reason})"),
        }
    }

    /// The log line of a ban sent to the kernel because its host kept
    /// knocking (the module and the C ABI say the same).
    pub fn escalation_line(&self, sync: &crate::config::SyncConfig) -> String {
        format!(
            "sending {} to the firewall: it kept knocking while banned on {} ({} attempts refused)",
            self.host,
            self.service_label(),
            sync.escalate_after
        )
    }

    /// Why the sync job puts this ban into the kernel, if it does: a
    /// repeat offender, a manual ban, a host that kept knocking while
    /// banned ([sync] escalate_after), or `scope = "all"`. `None` for a ban
    /// PAM alone enforces (a host that stopped after its ban, whose
    /// public-key logins keep working) or that may never be blocked.
    pub fn kernel_reason(&self, sync: &crate::config::SyncConfig) -> Option<&'static str> {
        if self.host.net().is_none_or(|n| sync.block_refusal(&n).is_some()) {
            return None;
        }
        if self.firewall {
            Some(if self.reason == "recidive" {
                "repeat offender"
            } else if self.reason.starts_with("manual") {
                "manual"
            } else {
                "kept knocking"
            })
        } else if sync.scope == SyncScope::All {
            Some("scope all")
        } else {
            None
        }
    }
}

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

/// What [`Banguard::maintain`] removed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MaintainReport {
    pub attempts_pruned: u64,
    pub bans_pruned: u64,
    pub events_pruned: u64,
    pub timestamps_fixed: u64,
}

/// The banguard engine: a config, a store and a clock.
pub struct Banguard {
    config: Config,
    store: Store,
    clock: Arc<dyn Clock>,
}

const BAN_COLUMNS: &str =
    "id, host, service, created, expires, lifted, reason, failures, prior_bans, firewall, pushed";

fn ban_from_row(r: &Row<'_>) -> rusqlite::Result<Ban> {
    let host: String = r.get(1)?;
    Ok(Ban {
        id: r.get(0)?,
        host: HostKey::from_db_key(&host).unwrap_or(HostKey::Name(host)),
        service: r.get(2)?,
        created: r.get(3)?,
        expires: r.get(4)?,
        lifted: r.get(5)?,
        reason: r.get(6)?,
        failures: r.get(7)?,
        prior_bans: r.get(8)?,
        firewall: r.get(9)?,
        pushed: r.get(10)?,
    })
}

fn family_prefix(key: &HostKey) -> (i64, i64) {
    match key {
        HostKey::Net(IpNet::V4(n)) => (4, i64::from(n.prefix_len())),
        HostKey::Net(IpNet::V6(n)) => (6, i64::from(n.prefix_len())),
        HostKey::Name(_) => (0, 0),
    }
}

impl Banguard {
    /// Opens the store named by the config (creating it if needed).
    pub fn open(config: Config) -> Result<Banguard> {
        Banguard::open_with(config, Access::ReadWrite, Arc::new(SystemClock))
    }

    /// Opens with an explicit access mode and clock.
    pub fn open_with(config: Config, access: Access, clock: Arc<dyn Clock>) -> Result<Banguard> {
        let loc = Location::of(&config);
        let store = retry_busy(loc.busy_timeout, || Store::open(&loc, access))?;
        Ok(Banguard { config, store, clock })
    }

    /// An engine over an in-memory store (tests).
    pub fn in_memory(config: Config, clock: Arc<dyn Clock>) -> Result<Banguard> {
        Ok(Banguard { config, store: Store::open_in_memory()?, clock })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Why `req` is not tracked at all (service disabled, ignoreip, a local
    /// login), if it is not: a caller can answer without opening the store.
    pub fn untracked(config: &Config, req: &Request<'_>) -> Option<Untracked> {
        Banguard::resolve(config, req).err()
    }

    /// Resolves a request to the host key and policy, or says why it is
    /// not tracked. `addr` is the address the key was made from.
    fn resolve<'c>(
        config: &'c Config,
        req: &Request<'_>,
    ) -> std::result::Result<(HostKey, Option<IpAddr>, &'c ServicePolicy), Untracked> {
        let policy = config.policy(req.service);
        if !policy.enabled {
            return Err(Untracked::Disabled);
        }
        match addr::origin(req.rhost, req.hint) {
            Origin::Local => Err(Untracked::Local),
            Origin::Name(n) => Ok((HostKey::Name(n), None, policy)),
            Origin::Addr(a) => {
                if let Some(net) = policy.ignored_by(a) {
                    return Err(Untracked::Ignored(net));
                }
                Ok((HostKey::for_addr(a, policy.ipv4_prefix, policy.ipv6_prefix), Some(a), policy))
            }
        }
    }

    /// Takes the runtime state's write lock: the first lock of every
    /// read-modify-write (lock order: runtime state, then store).
    fn begin(&self) -> Result<RuntimeTx<'_>> {
        self.store.begin()
    }

    /// The single-line mode: "attempt from host H on service S: is H
    /// banned? if not, count it; if that makes maxretry within findtime,
    /// ban H". The attempt is counted *before* the password is checked, so
    /// parallel connections can never get more than `maxretry` passwords
    /// evaluated; a success gives it back with [`Banguard::record_success`].
    ///
    /// `previous` is the attempt recorded earlier on the same PAM handle:
    /// another call on that handle means it failed.
    pub fn attempt(&mut self, req: &Request<'_>, previous: Option<AttemptId>) -> Result<Verdict> {
        self.decide(req, previous, Mode::Attempt)
    }

    /// `preauth`: refuses a banned (or exhausted) host, records nothing.
    pub fn check(&mut self, req: &Request<'_>) -> Result<Verdict> {
        self.decide(req, None, Mode::Check)
    }

    /// `authfail`: records one failed attempt; bans at once when that
    /// makes `maxretry` within `findtime`.
    pub fn record_failure(&mut self, req: &Request<'_>) -> Result<Verdict> {
        self.decide(req, None, Mode::Failure)
    }

    /// Reports what would happen to an attempt now, writing nothing
    /// (`banguardctl test`). An exhausted host shows as `Allowed` with
    /// `used >= maxretry`: its next attempt creates the ban.
    pub fn peek(&mut self, req: &Request<'_>) -> Result<Verdict> {
        self.decide(req, None, Mode::Peek)
    }

    fn decide(&mut self, req: &Request<'_>, previous: Option<AttemptId>, mode: Mode) -> Result<Verdict> {
        let limit = Duration::from_millis(u64::from(self.config.store.busy_timeout_ms));
        retry_busy(limit, || self.decide_once(req, previous, mode))
    }

    fn decide_once(&mut self, req: &Request<'_>, previous: Option<AttemptId>, mode: Mode) -> Result<Verdict> {
        let user = req.user.map(bounded_user);
        let req = &Request { user: user.as_deref(), ..*req };
        // Split borrows: the transaction holds the connection while the
        // config is read (no clone on the authentication path).
        let Banguard { config, store, clock } = self;
        let (key, addr, policy) = match Banguard::resolve(config, req) {
            Ok(v) => v,
            Err(reason) => return Ok(Verdict::Untracked { reason }),
        };
        let now = clock.now();
        let path = store.runtime_path();
        let e = |err| Error::store(path, err);
        let tx = store.begin()?;
        if let Some(AttemptId(id)) = previous.filter(|_| mode != Mode::Peek) {
            tx.execute("UPDATE attempts SET state = 1 WHERE id = ?1 AND state = 0", [id]).map_err(e)?;
        }
        let service = req.service;
        if let Some(ban) = active_ban(&tx, &key, addr, service, now).map_err(e)? {
            // Only a ban that would otherwise stay PAM-only is counted.
            let knocking = matches!(mode, Mode::Attempt | Mode::Check)
                && config.sync.escalate_after > 0
                && config.sync.scope != SyncScope::All
                && !ban.firewall
                && ban.host.net().is_some_and(|n| config.sync.block_refusal(&n).is_none());
            if !knocking {
                tx.commit().map_err(e)?;
                return Ok(Verdict::Refused { host: key, ban, new: false, escalated: false });
            }
            // Counted only until the ban goes to the kernel: a flood of
            // refusals writes at most `escalate_after` small updates.
            let refused: u32 = tx
                .query_row(
                    "UPDATE bans SET refused = refused + 1 WHERE id = ?1 RETURNING refused",
                    [ban.id],
                    |r| r.get(0),
                )
                .map_err(e)?;
            if refused < config.sync.escalate_after {
                tx.commit().map_err(e)?;
                return Ok(Verdict::Refused { host: key, ban, new: false, escalated: false });
            }
            let ban = change_bans(&tx, store, |dt| escalate(dt, ban, refused, now))?;
            tx.commit().map_err(e)?;
            return Ok(Verdict::Refused { host: key, ban, new: false, escalated: true });
        }
        let db_key = key.db_key();
        let since = now - policy.findtime;
        let mut used: u32 =
            tx.query_row(COUNTED, params![db_key, service, since], |r| r.get(0)).map_err(e)?;
        let record_state = match mode {
            Mode::Attempt => Some(0),
            Mode::Failure => Some(1),
            Mode::Check | Mode::Peek => None,
        };
        // A recorded failure counts before the threshold test; a pending
        // attempt only if there is room for it.
        let mut attempt = None;
        if mode == Mode::Failure || (mode == Mode::Attempt && used < policy.maxretry) {
            let state = record_state.expect("recording modes");
            tx.execute(
                "INSERT INTO attempts (host, service, user, at, state, pid, ppid) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![db_key, service, req.user, now, state, std::process::id(), std::os::unix::process::parent_id()],
            )
            .map_err(e)?;
            let id = tx.last_insert_rowid();
            attempt = Some(AttemptId(id));
            used += 1;
            if id % PRUNE_EVERY == 0 {
                prune_attempts(&tx, config, now, PRUNE_BATCH).map_err(e)?;
            }
        }
        let exhausted = match mode {
            Mode::Failure => used >= policy.maxretry,
            Mode::Attempt | Mode::Check => attempt.is_none() && used >= policy.maxretry,
            Mode::Peek => false,
        };
        if !exhausted {
            tx.commit().map_err(e)?;
            return Ok(Verdict::Allowed { host: key, attempt, used, maxretry: policy.maxretry });
        }
        let ban = change_bans(&tx, store, |dt| {
            let made = create_auto_ban(dt, config, policy, &key, service, used, now)?;
            let last = made.last().expect("one ban at least").clone();
            Ok((last, BanDelta::added(made)))
        })?;
        // The ban consumes the failures that made it (the ban row keeps their
        // number): once it expires the host starts afresh, as with fail2ban.
        delete_attempts(&tx, "host = ?1 AND service = ?2", params![key.db_key(), service]).map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(Verdict::Refused { host: key, ban, new: true, escalated: false })
    }

    /// Gives back a successful attempt (and with `reset_on_success`, the
    /// host's whole count on this service). Only the attempt named is
    /// given back: a valid account is no way to keep guessing.
    pub fn record_success(&mut self, req: &Request<'_>, attempt: AttemptRef) -> Result<bool> {
        let limit = Duration::from_millis(u64::from(self.config.store.busy_timeout_ms));
        retry_busy(limit, || self.record_success_once(req, attempt))
    }

    fn record_success_once(&mut self, req: &Request<'_>, attempt: AttemptRef) -> Result<bool> {
        let user = req.user.map(bounded_user);
        let req = &Request { user: user.as_deref(), ..*req };
        let (key, _, policy) = match Banguard::resolve(&self.config, req) {
            Ok(v) => v,
            Err(_) => return Ok(false),
        };
        let (findtime, reset) = (policy.findtime, policy.reset_on_success);
        let now = self.clock.now();
        let path = self.store.runtime_path();
        let e = |err| Error::store(path, err);
        let db_key = key.db_key();
        let service = req.service;
        let tx = self.begin()?;
        // A success is marked (state 2), not deleted: the newest attempt of
        // an origin then stays "spoken for", so a second give-back by origin
        // (account and setcred hooks both firing) cannot hand back an older
        // failed attempt.
        let gone = match attempt {
            AttemptRef::Id(AttemptId(id)) => tx
                .execute(
                    "UPDATE attempts SET state = 2 WHERE id = ?1 AND state = 0 AND host = ?2 AND service = ?3",
                    params![id, db_key, service],
                )
                .map_err(e)?,
            AttemptRef::Origin { pid } => tx
                .execute(
                    "UPDATE attempts SET state = 2 WHERE state = 0 AND id = (SELECT id FROM attempts
                       WHERE host = ?1 AND service = ?2 AND at > ?3
                         AND (pid = ?4 OR ppid = ?4) AND user IS ?5
                       ORDER BY id DESC LIMIT 1)",
                    params![db_key, service, now - findtime, pid, req.user],
                )
                .map_err(e)?,
            AttemptRef::None => 0,
        };
        if reset {
            delete_attempts(&tx, "host = ?1 AND service = ?2", params![db_key, service]).map_err(e)?;
        }
        tx.commit().map_err(e)?;
        Ok(gone > 0)
    }

    /// A manual ban of an address, network or name, on one service or all.
    /// Manual bans go to the firewall whatever the sync scope.
    pub fn ban(
        &mut self,
        target: &HostKey,
        service: Option<&str>,
        length: BanTime,
        reason: &str,
    ) -> Result<Ban> {
        let now = self.clock.now();
        let service = service.unwrap_or(ALL_SERVICES).to_string();
        let reason = if reason.is_empty() { "manual".to_string() } else { format!("manual: {reason}") };
        let config = &self.config;
        let lookback = config.default.bantime_lookback;
        let mail = config.mail.enabled;
        let tx = self.store.begin()?;
        let ban = change_bans(&tx, &self.store, |dt| {
            let prior = prior_bans(dt, target, now - lookback)?;
            let ban =
                insert_ban(dt, target, &service, now, length.expiry_from(now), &reason, 0, prior, true)?;
            add_event(dt, now, target, &service, "ban", &ban.wording(config, false))?;
            add_total(dt, &service, "banned", 1)?;
            if mail {
                queue_notice(dt, now, ban.id)?;
            }
            Ok((ban.clone(), BanDelta::added(vec![ban])))
        })?;
        tx.commit().map_err(|e| Error::store(self.store.runtime_path(), e))?;
        Ok(ban)
    }

    /// Lifts the active bans that cover or lie inside `target` (on
    /// `service`, or on any service when `None`) and clears the failure
    /// counts of those hosts. Returns the bans lifted.
    pub fn unban(&mut self, target: &HostKey, service: Option<&str>) -> Result<Vec<Ban>> {
        self.lift(Some(target), service)
    }

    /// Lifts every active ban (on one service, or all) and clears all
    /// failure counts there.
    pub fn unban_all(&mut self, service: Option<&str>) -> Result<Vec<Ban>> {
        self.lift(None, service)
    }

    fn lift(&mut self, target: Option<&HostKey>, service: Option<&str>) -> Result<Vec<Ban>> {
        let now = self.clock.now();
        let path = self.store.runtime_path();
        let e = |err| Error::store(path, err);
        let tx = self.begin()?;
        let lifted = change_bans(&tx, &self.store, |dt| {
            let lifted: Vec<Ban> = active_bans(dt, now)?
                .into_iter()
                .filter(|b| service.is_none_or(|s| b.service == s))
                .filter(|b| target.is_none_or(|t| overlaps(t, &b.host)))
                .collect();
            for b in &lifted {
                dt.execute("UPDATE bans SET lifted = ?1 WHERE id = ?2", params![now, b.id])?;
                add_event(
                    dt,
                    now,
                    &b.host,
                    &b.service,
                    "unban",
                    &format!("unbanned on {}", b.service_label()),
                )?;
            }
            let gone = lifted.iter().map(|b| b.id).collect();
            Ok((lifted, BanDelta { removed: gone, ..BanDelta::default() }))
        })?;
        // Clear the counts so the host starts afresh.
        let hosts: Vec<String> = {
            let mut stmt = tx.prepare("SELECT DISTINCT host FROM attempts").map_err(e)?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(e)?;
            rows.collect::<rusqlite::Result<_>>().map_err(e)?
        };
        for h in hosts {
            let Some(key) = HostKey::from_db_key(&h) else { continue };
            let hit = match target {
                Some(t) => overlaps(t, &key),
                None => true,
            };
            if hit {
                match service {
                    Some(s) => delete_attempts(&tx, "host = ?1 AND service = ?2", params![h, s]),
                    None => delete_attempts(&tx, "host = ?1", params![h]),
                }
                .map_err(e)?;
            }
        }
        tx.commit().map_err(e)?;
        Ok(lifted
            .into_iter()
            .map(|mut b| {
                b.lifted = Some(now);
                b
            })
            .collect())
    }

    /// Bans, newest first: active ones, or with `include_inactive` also
    /// expired and lifted ones still in the history.
    pub fn bans(&self, service: Option<&str>, include_inactive: bool) -> Result<Vec<Ban>> {
        let now = self.clock.now();
        let path = self.store.path();
        let sql = format!("SELECT {BAN_COLUMNS} FROM bans ORDER BY created DESC, id DESC");
        let mut stmt = self.store.durable()?.prepare(&sql).map_err(|e| Error::store(path, e))?;
        let rows = stmt.query_map([], ban_from_row).map_err(|e| Error::store(path, e))?;
        let mut out = Vec::new();
        for b in rows {
            let b = b.map_err(|e| Error::store(path, e))?;
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
        let mut stmt = self
            .store
            .runtime
            .prepare(
                "SELECT host, service, count(*), min(at), max(at) FROM attempts
                 WHERE at > ?1 AND (?2 IS NULL OR service = ?2) AND state != 2
                 GROUP BY host, service ORDER BY max(at) DESC",
            )
            .map_err(e)?;
        let rows = stmt
            .query_map(params![now - self.config.max_findtime(), service], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, u32>(2)?,
                    r.get(3)?,
                    r.get(4)?,
                ))
            })
            .map_err(e)?;
        let active = self.bans(None, false)?;
        let mut out = Vec::new();
        for row in rows {
            let (host, svc, mut count, first, last): (String, String, u32, i64, i64) = row.map_err(e)?;
            let Some(key) = HostKey::from_db_key(&host) else { continue };
            let policy = self.config.policy(&svc);
            if first <= now - policy.findtime {
                count = self
                    .store
                    .runtime
                    .query_row(COUNTED, params![host, svc, now - policy.findtime], |r| r.get(0))
                    .map_err(e)?;
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
        let path = self.store.path();
        let e = |err| Error::store(path, err);
        let mut stmt = self
            .store
            .durable()?
            .prepare("SELECT at, host, service, kind, detail FROM events ORDER BY at, id")
            .map_err(e)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get(3)?,
                    r.get(4)?,
                ))
            })
            .map_err(e)?;
        let mut out = Vec::new();
        for row in rows {
            let (at, host, service, kind, detail) = row.map_err(e)?;
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
        let live: BTreeMap<String, i64> = {
            let mut stmt = self
                .store
                .runtime
                .prepare("SELECT service, count(*) FROM attempts WHERE state IN (0, 1) GROUP BY service")
                .map_err(re)?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).map_err(re)?;
            rows.collect::<rusqlite::Result<_>>().map_err(re)?
        };
        let mut names: Vec<String> = self.config.services.keys().chain(live.keys()).cloned().collect();
        for (conn, e) in [(durable, &e as &dyn Fn(rusqlite::Error) -> Error), (&self.store.runtime, &re)] {
            let mut stmt = conn.prepare("SELECT service FROM totals").map_err(e)?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(e)?;
            for r in rows {
                names.push(r.map_err(e)?);
            }
        }
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
            let banned: i64 = durable
                .query_row("SELECT banned FROM totals WHERE service = ?1", [&name], |r| r.get(0))
                .optional()
                .map_err(e)?
                .unwrap_or(0);
            let failed: i64 = self
                .store
                .runtime
                .query_row("SELECT failed FROM totals WHERE service = ?1", [&name], |r| r.get(0))
                .optional()
                .map_err(re)?
                .unwrap_or(0)
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

    /// Active bans the sync job pushes to the kernel for `scope`: only
    /// address keys (a name never reaches a firewall).
    pub fn bans_to_push(&self, scope: SyncScope) -> Result<Vec<Ban>> {
        let sync = crate::config::SyncConfig { scope, ..self.config.sync.clone() };
        Ok(self.bans(None, false)?.into_iter().filter(|b| b.goes_to_firewall(&sync)).collect())
    }

    /// Records that the sync job pushed these bans.
    pub fn mark_pushed(&mut self, ids: &[i64]) -> Result<()> {
        let now = self.clock.now();
        let path = self.store.path();
        let e = |err| Error::store(path, err);
        // Not a change to who is refused: the store alone.
        let tx =
            Transaction::new_unchecked(self.store.durable()?, TransactionBehavior::Immediate).map_err(e)?;
        {
            let mut stmt = tx.prepare("UPDATE bans SET pushed = ?1 WHERE id = ?2").map_err(e)?;
            for id in ids {
                stmt.execute(params![now, id]).map_err(e)?;
            }
        }
        tx.commit().map_err(e)
    }

    /// Bans that expired since `since` (for "expired" syslog lines).
    pub fn expired_between(&self, since: i64, until: i64) -> Result<Vec<Ban>> {
        let path = self.store.path();
        let sql = format!(
            "SELECT {BAN_COLUMNS} FROM bans WHERE lifted IS NULL AND expires > ?1 AND expires <= ?2 ORDER BY expires"
        );
        let mut stmt = self.store.durable()?.prepare(&sql).map_err(|e| Error::store(path, e))?;
        let rows = stmt.query_map(params![since, until], ban_from_row).map_err(|e| Error::store(path, e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| Error::store(path, e))
    }

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
                let ban = Ban {
                    id: r.get(2)?,
                    host: {
                        let h: String = r.get(3)?;
                        HostKey::from_db_key(&h).unwrap_or(HostKey::Name(h))
                    },
                    service: r.get(4)?,
                    created: r.get(5)?,
                    expires: r.get(6)?,
                    lifted: r.get(7)?,
                    reason: r.get(8)?,
                    failures: r.get(9)?,
                    prior_bans: r.get(10)?,
                    firewall: r.get(11)?,
                    pushed: r.get(12)?,
                };
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

/// What a change to the store's bans does to the runtime state's mirror.
#[derive(Debug, Default)]
struct BanDelta {
    /// New active bans to copy.
    added: Vec<Ban>,
    /// Ids of bans that stopped being active.
    removed: Vec<i64>,
    /// Copy the whole mirror afresh (a change the lists cannot describe).
    rebuild: bool,
}

impl BanDelta {
    fn added(bans: Vec<Ban>) -> BanDelta {
        BanDelta { added: bans, ..BanDelta::default() }
    }
}

/// Runs `change` on the store in its own IMMEDIATE transaction while `rt`
/// (the runtime state's write lock, always taken first) is held, bumps the
/// ban generation, and brings the mirror in `rt` along. A mirror that was
/// not at the generation the change started from (a crash between the two
/// commits, a runtime state rebuilt meanwhile) is copied afresh.
fn change_bans<T>(
    rt: &Transaction<'_>,
    store: &Store,
    change: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<(T, BanDelta)>,
) -> Result<T> {
    let durable = store.durable()?;
    let de = |err| Error::store(store.path(), err);
    let re = |err| Error::store(store.runtime_path(), err);
    let dt = Transaction::new_unchecked(durable, TransactionBehavior::Immediate).map_err(de)?;
    let before: i64 = dt.query_row("SELECT value FROM generation", [], |r| r.get(0)).map_err(de)?;
    let (out, delta) = change(&dt).map_err(de)?;
    dt.execute("UPDATE generation SET value = ?1", [before + 1]).map_err(de)?;
    dt.commit().map_err(de)?;
    let mirrored: i64 = rt.query_row("SELECT generation FROM mirror", [], |r| r.get(0)).map_err(re)?;
    if delta.rebuild || mirrored != before {
        return mirror_rebuild(rt, durable).map(|()| out).map_err(re);
    }
    for ban in &delta.added {
        mirror_insert(rt, ban).map_err(re)?;
    }
    for id in &delta.removed {
        rt.prepare_cached("DELETE FROM bans WHERE id = ?1")
            .and_then(|mut st| st.execute([id]))
            .map_err(re)?;
    }
    rt.execute("UPDATE mirror SET generation = ?1", [before + 1]).map_err(re)?;
    Ok(out)
}

/// The attempts of one host on one service that count now: failed ones and
/// pending ones (being checked), not given back. `state IN (0, 1)` lets
/// SQLite answer from the index alone.
const COUNTED: &str =
    "SELECT count(*) FROM attempts WHERE host = ?1 AND service = ?2 AND state IN (0, 1) AND at > ?3";

/// Every column of a ban row, in both files.
const MIRROR_COLUMNS: &str = "id, host, family, prefix, service, created, expires, lifted, reason, failures, prior_bans, firewall, pushed";

fn mirror_insert(rt: &Connection, ban: &Ban) -> rusqlite::Result<()> {
    let (family, prefix) = family_prefix(&ban.host);
    rt.prepare_cached(&format!(
        "INSERT OR REPLACE INTO bans ({MIRROR_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
    ))?
    .execute(params![
        ban.id,
        ban.host.db_key(),
        family,
        prefix,
        ban.service,
        ban.created,
        ban.expires,
        ban.lifted,
        ban.reason,
        ban.failures,
        ban.prior_bans,
        ban.firewall,
        ban.pushed
    ])?;
    if family != 0 {
        rt.prepare_cached("INSERT OR IGNORE INTO ban_prefixes (family, prefix) VALUES (?1, ?2)")?
            .execute(params![family, prefix])?;
    }
    Ok(())
}

/// Replaces the mirror in `rt` with the store's bans that are not lifted,
/// read in one transaction together with their generation. Expired ones are
/// copied too (lookups ignore them; `maintain` drops them), so the copy
/// needs no clock.
pub(crate) fn mirror_rebuild(rt: &Connection, durable: &Connection) -> rusqlite::Result<()> {
    let dt = Transaction::new_unchecked(durable, TransactionBehavior::Deferred)?;
    let generation: i64 = dt.query_row("SELECT value FROM generation", [], |r| r.get(0))?;
    rt.execute_batch("DELETE FROM bans; DELETE FROM ban_prefixes;")?;
    {
        let mut read = dt.prepare(&format!("SELECT {MIRROR_COLUMNS} FROM bans WHERE lifted IS NULL"))?;
        let mut write = rt.prepare(&format!(
            "INSERT INTO bans ({MIRROR_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
        ))?;
        let mut rows = read.query([])?;
        while let Some(row) = rows.next()? {
            let values = (0..13).map(|i| row.get::<_, Value>(i)).collect::<rusqlite::Result<Vec<_>>>()?;
            write.execute(params_from_iter(values))?;
        }
        let mut prefixes = dt.prepare("SELECT family, prefix FROM ban_prefixes")?;
        let mut add = rt.prepare("INSERT OR IGNORE INTO ban_prefixes (family, prefix) VALUES (?1, ?2)")?;
        let mut rows = prefixes.query([])?;
        while let Some(row) = rows.next()? {
            add.execute(params![row.get::<_, i64>(0)?, row.get::<_, i64>(1)?])?;
        }
    }
    rt.execute("UPDATE mirror SET generation = ?1", [generation])?;
    dt.finish()
}

/// Longest user name stored: what a client sends as a login name is not
/// ours to store in full (the same cap for PAM and the C ABI).
const MAX_USER: usize = 256;

fn bounded_user(user: &str) -> String {
    let mut end = user.len().min(MAX_USER);
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    user[..end].to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Attempt,
    Check,
    Failure,
    Peek,
}

/// Sends a ban to the kernel because its host kept knocking: the ban is
/// marked for the firewall, and the history says why.
fn escalate(dt: &Transaction<'_>, mut ban: Ban, refused: u32, now: i64) -> rusqlite::Result<(Ban, BanDelta)> {
    dt.execute("UPDATE bans SET firewall = 1 WHERE id = ?1", [ban.id])?;
    ban.firewall = true;
    let detail = format!(
        "kept knocking: {refused} attempts refused while banned on {}; pushed to the firewall",
        ban.service_label()
    );
    add_event(dt, now, &ban.host, &ban.service, "escalate", &detail)?;
    Ok((ban.clone(), BanDelta::added(vec![ban])))
}

/// What the firewall blocks for `bans` (from [`Banguard::bans_to_push`]):
/// each ban's network with every network that must never be blocked
/// (ignoreip of any service, loopback) carved out, so that the kernel and
/// hosts.deny never refuse a host that PAM lets through.
pub fn firewall_entries(config: &Config, bans: &[Ban]) -> Vec<crate::sync::FirewallEntry> {
    let keep = config.never_blocked();
    bans.iter()
        .filter_map(|b| b.host.net().map(|net| (net, b.expires)))
        .flat_map(|(net, expires_at)| {
            addr::carve(net, &keep).into_iter().map(move |net| crate::sync::FirewallEntry { net, expires_at })
        })
        .collect()
}

/// Whether two keys denote overlapping sets of hosts.
pub fn overlaps(a: &HostKey, b: &HostKey) -> bool {
    match (a, b) {
        (HostKey::Net(x), HostKey::Net(y)) => x.contains(&y.network()) || y.contains(&x.network()),
        (HostKey::Name(x), HostKey::Name(y)) => x == y,
        _ => false,
    }
}

/// The active ban on `key` (or any network containing `addr`) for
/// `service` or all services; the longest one if several.
fn active_ban(
    tx: &Transaction<'_>,
    key: &HostKey,
    addr: Option<IpAddr>,
    service: &str,
    now: i64,
) -> rusqlite::Result<Option<Ban>> {
    let mut keys = vec![key.db_key()];
    if let Some(a) = addr {
        let family = if a.is_ipv4() { 4 } else { 6 };
        let mut stmt = tx.prepare_cached("SELECT prefix FROM ban_prefixes WHERE family = ?1")?;
        let prefixes = stmt.query_map([family], |r| r.get::<_, u8>(0))?;
        for p in prefixes {
            let p = p?;
            let k = HostKey::Net(addr::mask(a, p, p)).db_key();
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    // A plain lookup by host, filtered and ranked here: a host has a handful
    // of rows, and in a fresh sshd process the IN / ORDER BY form of this
    // query cost 0.17 ms of cold SQLite code (BENCHMARKS.md §2).
    let sql = format!("SELECT {BAN_COLUMNS} FROM bans WHERE host = ?1 AND lifted IS NULL");
    let mut best: Option<Ban> = None;
    let mut stmt = tx.prepare_cached(&sql)?;
    for k in keys {
        let rows = stmt.query_map(params![k], ban_from_row)?;
        for b in rows {
            let b = b?;
            if !(b.service == service || b.service == ALL_SERVICES) || b.expires.is_some_and(|x| x <= now) {
                continue;
            }
            let longer = match (&best, b.expires) {
                (None, _) => true,
                (Some(cur), None) => cur.expires.is_some(),
                (Some(cur), Some(x)) => cur.expires.is_some_and(|c| x > c),
            };
            if longer {
                best = Some(b);
            }
        }
    }
    Ok(best)
}

fn active_bans(tx: &Transaction<'_>, now: i64) -> rusqlite::Result<Vec<Ban>> {
    let sql =
        format!("SELECT {BAN_COLUMNS} FROM bans WHERE lifted IS NULL AND (expires IS NULL OR expires > ?1)");
    let mut stmt = tx.prepare(&sql)?;
    let rows = stmt.query_map([now], ban_from_row)?;
    rows.collect()
}

/// The host's bans on single services made after `since` (the ban-length
/// factor and the repeat-offender rule both count these).
fn prior_bans(tx: &Transaction<'_>, key: &HostKey, since: i64) -> rusqlite::Result<u32> {
    tx.query_row(
        "SELECT count(*) FROM bans WHERE host = ?1 AND created > ?2 AND service != ?3",
        params![key.db_key(), since, ALL_SERVICES],
        |r| r.get(0),
    )
}

#[allow(clippy::too_many_arguments)]
fn insert_ban(
    tx: &Transaction<'_>,
    key: &HostKey,
    service: &str,
    now: i64,
    expires: Option<i64>,
    reason: &str,
    failures: u32,
    prior: u32,
    firewall: bool,
) -> rusqlite::Result<Ban> {
    let (family, prefix) = family_prefix(key);
    tx.execute(
        "INSERT INTO bans (host, family, prefix, service, created, expires, reason, failures, prior_bans, firewall)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![key.db_key(), family, prefix, service, now, expires, reason, failures, prior, firewall],
    )?;
    let id = tx.last_insert_rowid();
    if family != 0 {
        tx.execute(
            "INSERT OR IGNORE INTO ban_prefixes (family, prefix) VALUES (?1, ?2)",
            params![family, prefix],
        )?;
    }
    Ok(Ban {
        id,
        host: key.clone(),
        service: service.to_string(),
        created: now,
        expires,
        lifted: None,
        reason: reason.to_string(),
        failures,
        prior_bans: prior,
        firewall,
        pushed: None,
    })
}

/// Bans `key` on `service` after `failures`, then applies the
/// repeat-offender rule. Returns the bans made, the one that matters most
/// (the all-services one if the rule fired) last.
fn create_auto_ban(
    tx: &Transaction<'_>,
    config: &Config,
    policy: &ServicePolicy,
    key: &HostKey,
    service: &str,
    failures: u32,
    now: i64,
) -> rusqlite::Result<Vec<Ban>> {
    let prior = prior_bans(tx, key, now - policy.bantime_lookback)?;
    let length = policy.ban_length(prior);
    let ban = insert_ban(tx, key, service, now, length.expiry_from(now), "maxretry", failures, prior, false)?;
    add_event(tx, now, key, service, "ban", &ban.wording(config, false))?;
    add_total(tx, service, "banned", 1)?;
    let mut made = vec![ban];
    let r = &config.recidive;
    if r.enabled {
        let recent = prior_bans(tx, key, now - r.findtime)?;
        if recent >= r.bans {
            let all = insert_ban(
                tx,
                key,
                ALL_SERVICES,
                now,
                r.bantime.expiry_from(now),
                "recidive",
                failures,
                recent - 1,
                true,
            )?;
            add_event(tx, now, key, ALL_SERVICES, "ban", &all.wording(config, false))?;
            add_total(tx, ALL_SERVICES, "banned", 1)?;
            made.push(all);
        }
    }
    if config.mail.enabled {
        let last = made.last().expect("one ban at least");
        queue_notice(tx, now, last.id)?;
    }
    Ok(made)
}

fn queue_notice(tx: &Transaction<'_>, now: i64, ban_id: i64) -> rusqlite::Result<()> {
    tx.execute("INSERT INTO outbox (created, ban_id) VALUES (?1, ?2)", params![now, ban_id])?;
    Ok(())
}

fn add_event(
    tx: &Transaction<'_>,
    now: i64,
    key: &HostKey,
    service: &str,
    kind: &str,
    detail: &str,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO events (at, host, service, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![now, key.db_key(), service, kind, detail],
    )?;
    Ok(())
}

fn add_total(tx: &Transaction<'_>, service: &str, column: &str, delta: i64) -> rusqlite::Result<()> {
    if delta == 0 {
        return Ok(());
    }
    // `column` is one of two literals from this file, never user input.
    debug_assert!(column == "failed" || column == "banned");
    let sql = format!(
        "INSERT INTO totals (service, {column}) VALUES (?1, max(?2, 0))
         ON CONFLICT(service) DO UPDATE SET {column} = max({column} + ?2, 0)"
    );
    tx.prepare_cached(&sql)?.execute(params![service, delta])?;
    Ok(())
}

/// Deletes the attempts that match `condition` (SQL over `attempts`),
/// adding the failures among them (pending or failed, not given back) to
/// the per-service totals. `totals.failed` counts the failures that have
/// left the table since the runtime state was created, and `status` adds
/// those still in it: so recording an attempt writes no total, one
/// statement fewer on the authentication path, whose every statement runs
/// in cold code in a fresh sshd process (BENCHMARKS.md §2).
fn delete_attempts(tx: &Transaction<'_>, condition: &str, params: &[&dyn ToSql]) -> rusqlite::Result<usize> {
    let mut deleted = 0;
    let mut failed: Vec<(String, i64)> = Vec::new();
    {
        let mut stmt =
            tx.prepare_cached(&format!("DELETE FROM attempts WHERE {condition} RETURNING service, state"))?;
        let mut rows = stmt.query(params)?;
        while let Some(row) = rows.next()? {
            deleted += 1;
            if !matches!(row.get::<_, i64>(1)?, 0 | 1) {
                continue; // given back: never a failure
            }
            let service: String = row.get(0)?;
            match failed.iter_mut().find(|(s, _)| *s == service) {
                Some((_, n)) => *n += 1,
                None => failed.push((service, 1)),
            }
        }
    }
    for (service, n) in failed {
        tx.prepare_cached(
            "INSERT INTO totals (service, failed) VALUES (?1, ?2)
             ON CONFLICT(service) DO UPDATE SET failed = failed + ?2",
        )?
        .execute(params![service, n])?;
    }
    Ok(deleted)
}

/// Deletes, among the `limit` oldest attempts, those too old to count for
/// any service and those beyond the newest `store.max_failures` (a flood of
/// unique addresses). Ids grow with time, so the oldest rows come first and
/// the work stays bounded without an index on the time.
fn prune_attempts(tx: &Transaction<'_>, config: &Config, now: i64, limit: i64) -> rusqlite::Result<u64> {
    let cutoff = now - config.max_findtime();
    let newest: i64 = tx.query_row("SELECT coalesce(max(id), 0) FROM attempts", [], |r| r.get(0))?;
    let beyond = newest - config.store.max_failures as i64;
    let n = delete_attempts(
        tx,
        "id IN (SELECT id FROM attempts ORDER BY id LIMIT ?3) AND (at <= ?1 OR id <= ?2)",
        params![cutoff, beyond, limit],
    )?;
    Ok(n as u64)
}

#[cfg(test)]
mod tests;
