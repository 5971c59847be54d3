//! The engine: counting attempts in a window, bans with increasing length,
//! ignore lists, the repeat-offender rule and hosts that keep knocking, each
//! operation one `BEGIN IMMEDIATE` transaction so that many processes (one
//! per sshd connection) can call it at once and no attempt beyond
//! `maxretry` is ever let through. What a ban means is `crate::ban`; the
//! rows and the mirror are the store's (`store::bans`); what the engine
//! reports (`reports`), the mail outbox (`outbox`), housekeeping
//! (`maintain`) and bans brought in from other tools (`import`) live
//! beside it.

mod accounts;
mod clock;
mod fleet;
mod import;
mod maintain;
mod metrics;
mod outbox;
mod reports;

pub use crate::ban::{ALL_SERVICES, Ban, BanOrigin, firewall_entries, overlaps};
pub use accounts::{
    AccountEvent, AccountLock, AccountSide, AccountStatus, Familiar, FleetAccountLock, familiar_target,
    fleet_account_cap,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use fleet::{FleetApplied, FleetDecision, FleetPull, FleetStatus, SAME_END, Tally};
pub use import::{ForeignBan, Imported};
pub use maintain::MaintainReport;
pub use metrics::{
    FleetFigures, HOURS_KEPT, Hour, SyncFigures, TROUBLE_KINDS, TROUBLES_CAP, TROUBLES_FILE, service_label,
};
pub use reports::{Event, Failing, ServiceStatus};

use crate::addr::{self, HostKey, Origin};
use crate::config::{Config, ServicePolicy, SyncScope};
use crate::duration::BanTime;
use crate::error::{Error, Result};
use crate::store::bans::{self, BanDelta, change_bans};
use crate::store::{Access, Location, RuntimeTx, Store, retry_busy};
use crate::store::{attempts, history, outbox as notices};
use ipnet::IpNet;
use maintain::{PRUNE_BATCH, PRUNE_EVERY, prune_attempts};

use rusqlite::Transaction;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

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
    /// PAM_USER: the account the password is for (the account side), and
    /// the history's.
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
    /// are now counted in the window (including this one, if recorded);
    /// `account`: what the account side made of it (a new lock while
    /// learning, a familiar source, the budget used).
    Allowed {
        host: HostKey,
        attempt: Option<AttemptId>,
        used: u32,
        maxretry: u32,
        account: Option<AccountSide>,
    },
    /// Refused before the password by the account side: the account is
    /// locked for unfamiliar sources (the host's own count went up by one:
    /// `used` of `maxretry`).
    AccountLocked { host: HostKey, account: AccountSide, used: u32, maxretry: u32 },
    /// Refused before the password is looked at. `new` is true when this
    /// call created the ban; `escalated` when this refusal sent the ban to
    /// the kernel (the host kept knocking: [`Ban::kernel_reason`]).
    Refused { host: HostKey, ban: Ban, new: bool, escalated: bool },
}

impl Verdict {
    pub fn is_refused(&self) -> bool {
        matches!(self, Verdict::Refused { .. } | Verdict::AccountLocked { .. })
    }

    /// Let through, but with no tries left: the next attempt is refused
    /// and makes the ban (what `peek` says of such a host).
    pub fn is_exhausted(&self) -> bool {
        matches!(self, Verdict::Allowed { used, maxretry, .. } if used_up(*used, *maxretry))
    }
}

/// The one rule for "has the host used up its tries?".
fn used_up(used: u32, maxretry: u32) -> bool {
    used >= maxretry
}

/// The banguard engine: a config, a store and a clock.
pub struct Banguard {
    config: Config,
    store: Store,
    clock: Arc<dyn Clock>,
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
            attempts::mark_failed(&tx, id).map_err(e)?;
        }
        let service = req.service;
        if let Some(ban) = bans::active_ban(&tx, &key, addr, service, now).map_err(e)? {
            if matches!(mode, Mode::Attempt | Mode::Check) {
                history::add_total(&tx, service, "refused", 1).map_err(e)?;
            }
            let knocking = matches!(mode, Mode::Attempt | Mode::Check) && ban.counts_refusals(&config.sync);
            if !knocking {
                tx.commit().map_err(e)?;
                return Ok(Verdict::Refused { host: key, ban, new: false, escalated: false });
            }
            // Counted per ban only until the ban goes to the kernel (after
            // that the kernel drops the host's new connections, so little
            // reaches this point: the service's total above).
            let refused = bans::count_refusal(&tx, ban.id).map_err(e)?;
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
        let mut used = attempts::counted(&tx, &db_key, service, since).map_err(e)?;
        // The account side, for a host that may still try (an exhausted
        // host is banned below and its password never checked).
        let side = match accounts::account_of(config, req) {
            Some(name) if mode == Mode::Failure || !used_up(used, policy.maxretry) => {
                Some(accounts::judge(&tx, store, config, name, &key, addr, now, mode)?)
            }
            _ => None,
        };
        if let Some(side) = side.as_ref().filter(|s| s.refuses() && mode != Mode::Failure) {
            // Refused before the password: one failure of the host, so a
            // source that keeps spraying ends up banned like any other.
            if mode != Mode::Peek {
                history::add_total(&tx, service, "refused_account", 1).map_err(e)?;
                let account = attempts::ForAccount { account: Some(side.bucket()), reserved: false };
                let id = attempts::insert(&tx, &db_key, service, req.user, account, now, true).map_err(e)?;
                used += 1;
                if id % PRUNE_EVERY == 0 {
                    prune_attempts(&tx, config, now, PRUNE_BATCH).map_err(e)?;
                }
            }
            tx.commit().map_err(e)?;
            let account = side.clone();
            return Ok(Verdict::AccountLocked { host: key, account, used, maxretry: policy.maxretry });
        }
        // A recorded failure counts before the threshold test; a pending
        // attempt only if there is room for it.
        let mut attempt = None;
        if mode == Mode::Failure || (mode == Mode::Attempt && !used_up(used, policy.maxretry)) {
            let failed = mode == Mode::Failure;
            let account = match &side {
                Some(s) if s.familiar.is_none() => {
                    attempts::ForAccount { account: Some(s.bucket()), reserved: s.reserves() && !failed }
                }
                _ => attempts::ForAccount::default(),
            };
            let id = attempts::insert(&tx, &db_key, service, req.user, account, now, failed).map_err(e)?;
            attempt = Some(AttemptId(id));
            used += 1;
            if id % PRUNE_EVERY == 0 {
                prune_attempts(&tx, config, now, PRUNE_BATCH).map_err(e)?;
            }
        }
        let exhausted = match mode {
            Mode::Failure => used_up(used, policy.maxretry),
            Mode::Attempt | Mode::Check => attempt.is_none() && used_up(used, policy.maxretry),
            Mode::Peek => false,
        };
        if !exhausted {
            tx.commit().map_err(e)?;
            let maxretry = policy.maxretry;
            return Ok(match side {
                // authfail's failure made the lock.
                Some(account) if account.refuses() => {
                    Verdict::AccountLocked { host: key, account, used, maxretry }
                }
                account => Verdict::Allowed { host: key, attempt, used, maxretry, account },
            });
        }
        let ban = change_bans(&tx, store, |dt| {
            let made = create_auto_ban(dt, config, policy, &key, service, used, now)?;
            let last = made.last().expect("one ban at least").clone();
            Ok((last, BanDelta::added(made)))
        })?;
        // The ban consumes the failures that made it (the ban row keeps their
        // number): once it expires the host starts afresh, as with fail2ban.
        attempts::delete_of(&tx, &db_key, Some(service)).map_err(e)?;
        if matches!(mode, Mode::Attempt | Mode::Check) {
            // The attempt that made the ban is refused too.
            history::add_total(&tx, service, "refused", 1).map_err(e)?;
        }
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
        let (key, addr, policy) = match Banguard::resolve(&self.config, req) {
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
        let found = match attempt {
            AttemptRef::Id(AttemptId(id)) => attempts::give_back(&tx, id, &db_key, service),
            AttemptRef::Origin { pid } => {
                attempts::give_back_by_origin(&tx, &db_key, service, req.user, now - findtime, pid)
            }
            AttemptRef::None => Ok(None),
        }
        .map_err(e)?;
        let gone = found.is_some();
        // A password proved right: given back, and (with an explicit
        // authsucc, placed after the password module) any success.
        if gone || attempt == AttemptRef::None {
            let name = accounts::account_of(&self.config, req);
            let reserved = found.flatten();
            accounts::succeeded(&tx, &self.store, &self.config, name, reserved, &key, addr, now)?;
        }
        if reset {
            attempts::delete_of(&tx, &db_key, Some(service)).map_err(e)?;
        }
        tx.commit().map_err(e)?;
        Ok(gone)
    }

    /// The password of this request was checked and right (the success
    /// line, `authsucc`, placed after the password module): its source's
    /// network becomes familiar for the account, whatever was given back.
    pub fn password_proven(&mut self, req: &Request<'_>) -> Result<()> {
        let limit = Duration::from_millis(u64::from(self.config.store.busy_timeout_ms));
        retry_busy(limit, || {
            let user = req.user.map(bounded_user);
            let req = &Request { user: user.as_deref(), ..*req };
            let Some(name) = accounts::account_of(&self.config, req) else { return Ok(()) };
            let Ok((key, addr, _)) = Banguard::resolve(&self.config, req) else { return Ok(()) };
            let now = self.clock.now();
            let tx = self.store.begin()?;
            accounts::succeeded(&tx, &self.store, &self.config, Some(name), None, &key, addr, now)?;
            tx.commit().map_err(|e| Error::store(self.store.runtime_path(), e))
        })
    }

    /// A manual ban of an address, network or name, on one service or all,
    /// if `ban::check_target` allows it. Manual bans go to the firewall
    /// whatever the sync scope.
    pub fn ban(
        &mut self,
        target: &HostKey,
        service: Option<&str>,
        length: BanTime,
        reason: &str,
    ) -> Result<Ban> {
        crate::ban::check_target(&self.config, target).map_err(|message| Error::InvalidInput {
            what: "ban target",
            value: target.to_string(),
            message,
        })?;
        let now = self.clock.now();
        let service = service.unwrap_or(ALL_SERVICES).to_string();
        let reason = if reason.is_empty() { "manual".to_string() } else { format!("manual: {reason}") };
        let config = &self.config;
        let lookback = config.default.bantime_lookback;
        let mail = config.mail.enabled;
        let tx = self.store.begin()?;
        let ban = change_bans(&tx, &self.store, |dt| {
            let prior = bans::prior_bans(dt, target, now - lookback)?;
            let ban = bans::insert_ban(
                dt,
                Ban {
                    prior_bans: prior,
                    firewall: true,
                    ..Ban::new(target.clone(), &service, now, length.expiry_from(now), &reason)
                },
            )?;
            history::add_event(dt, now, target, &service, "ban", &ban.wording(config, false))?;
            history::add_total(dt, &service, "banned", 1)?;
            if mail {
                notices::queue(dt, now, ban.id)?;
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
            let lifted: Vec<Ban> = bans::active_bans(dt, now)?
                .into_iter()
                .filter(|b| service.is_none_or(|s| b.service == s))
                .filter(|b| target.is_none_or(|t| overlaps(t, &b.host)))
                .collect();
            lift_bans(dt, &lifted, now, |b| format!("unbanned on {}", b.service_label()))?;
            let gone = lifted.iter().map(|b| b.id).collect();
            Ok((lifted, BanDelta { removed: gone, ..BanDelta::default() }))
        })?;
        // Clear the counts so the host starts afresh.
        for h in attempts::hosts(&tx).map_err(e)? {
            let Some(key) = HostKey::from_db_key(&h) else { continue };
            let hit = match target {
                Some(t) => overlaps(t, &key),
                None => true,
            };
            if hit {
                attempts::delete_of(&tx, &h, service).map_err(e)?;
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

    /// Active bans the sync job pushes to the kernel for `scope`: only
    /// address keys (a name never reaches a firewall).
    pub fn bans_to_push(&self, scope: SyncScope) -> Result<Vec<Ban>> {
        let sync = crate::config::SyncConfig { scope, ..self.config.sync.clone() };
        Ok(self.bans(None, false)?.into_iter().filter(|b| b.goes_to_firewall(&sync)).collect())
    }

    /// Records that the sync job pushed these bans.
    pub fn mark_pushed(&mut self, ids: &[i64]) -> Result<()> {
        bans::mark_pushed(&self.store, ids, self.clock.now())
    }

    /// The newest ban's id (0: none yet).
    pub(crate) fn newest_ban_id(&self) -> Result<i64> {
        bans::newest_id(self.store.durable()?).map_err(|e| Error::store(self.store.path(), e))
    }

    /// Ids of the bans of `origin` stored after ban `id`.
    pub(crate) fn ban_ids_after(&self, id: i64, origin: crate::ban::BanOrigin) -> Result<Vec<i64>> {
        bans::ids_after(self.store.durable()?, id, origin.name())
            .map_err(|e| Error::store(self.store.path(), e))
    }

    /// The store's ban generation: different after any change to the bans
    /// (made, lifted, sent to the kernel), so the sync job can tell whether
    /// what it pushed is still what is wanted.
    pub fn ban_generation(&self) -> Result<i64> {
        bans::generation(self.store.durable()?).map_err(|e| Error::store(self.store.path(), e))
    }
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

/// Lifts `lifted` at `now`, each with an "unban" line in the history.
fn lift_bans(
    dt: &Transaction<'_>,
    lifted: &[Ban],
    now: i64,
    why: impl Fn(&Ban) -> String,
) -> rusqlite::Result<()> {
    for b in lifted {
        bans::lift(dt, b.id, now)?;
        history::add_event(dt, now, &b.host, &b.service, "unban", &why(b))?;
        if b.origin == crate::ban::BanOrigin::Crowdsec {
            // An admin's unban of a fleet ban holds against the fleet's
            // decisions that end no later (the fleet's bans are never
            // permanent here).
            crate::store::fleet::hold(dt, &b.host.db_key(), b.expires.unwrap_or(i64::MAX))?;
        }
    }
    Ok(())
}

/// Sends a ban to the kernel because its host kept knocking: the ban is
/// marked for the firewall, and the history says why.
fn escalate(dt: &Transaction<'_>, mut ban: Ban, refused: u32, now: i64) -> rusqlite::Result<(Ban, BanDelta)> {
    bans::send_to_firewall(dt, ban.id)?;
    ban.firewall = true;
    let detail = format!(
        "kept knocking: {refused} attempts refused while banned on {}; pushed to the firewall",
        ban.service_label()
    );
    history::add_event(dt, now, &ban.host, &ban.service, "escalate", &detail)?;
    Ok((ban.clone(), BanDelta::added(vec![ban])))
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
    let prior = bans::prior_bans(tx, key, now - policy.bantime_lookback)?;
    let length = policy.ban_length(prior);
    let ban = bans::insert_ban(
        tx,
        Ban {
            failures,
            prior_bans: prior,
            ..Ban::new(key.clone(), service, now, length.expiry_from(now), "maxretry")
        },
    )?;
    history::add_event(tx, now, key, service, "ban", &ban.wording(config, false))?;
    history::add_total(tx, service, "banned", 1)?;
    let mut made = vec![ban];
    let r = &config.recidive;
    if r.enabled {
        let recent = bans::prior_bans(tx, key, now - r.findtime)?;
        if recent >= r.bans {
            let all = bans::insert_ban(
                tx,
                Ban {
                    failures,
                    prior_bans: recent - 1,
                    firewall: true,
                    ..Ban::new(key.clone(), ALL_SERVICES, now, r.bantime.expiry_from(now), "recidive")
                },
            )?;
            history::add_event(tx, now, key, ALL_SERVICES, "ban", &all.wording(config, false))?;
            history::add_total(tx, ALL_SERVICES, "banned", 1)?;
            made.push(all);
        }
    }
    if config.mail.enabled {
        let last = made.last().expect("one ban at least");
        notices::queue(tx, now, last.id)?;
    }
    Ok(made)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_accounts;
