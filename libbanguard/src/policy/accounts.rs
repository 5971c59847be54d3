//! The account side of the engine: a budget of passwords per account from
//! unfamiliar sources (`crate::account` holds the rule), reserved before
//! the password in the attempt's own transaction and given back on
//! success; the networks each account logs in from become familiar and
//! are never refused by it. Rows: `store::accounts`.

use super::*;
pub use crate::account::AccountLock;
use crate::account::{self, Judgement, OVERFLOW};
use crate::store::accounts::{self as rows, Row};
use std::collections::{HashMap, HashSet};

/// What the account side made of an attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountSide {
    /// The account (PAM_USER normalised: `crate::account::key`).
    pub account: String,
    /// Counted in the budget all accounts share once `max_tracked` are
    /// tracked.
    pub shared: bool,
    /// The familiar network (or name) that covers the source: the account
    /// rule does not apply.
    pub familiar: Option<String>,
    /// Unfamiliar attempts in the account's bucket (this one included).
    pub used: u32,
    pub budget: u32,
    /// Locked for unfamiliar sources until then.
    pub locked_until: Option<i64>,
    /// This attempt made the lock (or relock).
    pub new_lock: bool,
    /// The store's id of that lock (mail, fleet, history).
    pub lock_id: Option<i64>,
    /// The one attempt let through when a lock ended.
    pub probe: bool,
    /// Still learning: a lock is logged, nothing is refused.
    pub learning: bool,
    /// Distinct sources of the account's recent unfamiliar attempts (told
    /// with a new lock).
    pub sources: u32,
}

impl AccountSide {
    /// Whether this attempt is refused by the account rule.
    pub fn refuses(&self) -> bool {
        self.familiar.is_none() && !self.learning && self.locked_until.is_some()
    }

    /// Whether the attempt takes one of the account's budget (it was let
    /// through by the account rule, not merely while learning).
    pub(super) fn reserves(&self) -> bool {
        self.familiar.is_none() && self.locked_until.is_none()
    }

    /// The bucket the attempt counts in: the account's, or the shared one.
    pub(super) fn bucket(&self) -> &str {
        if self.shared { OVERFLOW } else { &self.account }
    }

    /// The syslog line of a new lock (never a password, the same whether
    /// the account exists or not).
    pub fn lock_line(&self, now: i64) -> String {
        let until = self.locked_until.unwrap_or(now);
        let what = if self.learning { "would be locked (learning: nothing refused)" } else { "locked" };
        format!(
            "account {} {what} for unfamiliar sources for {}: {} passwords from unfamiliar sources ({} addresses); familiar networks unaffected",
            crate::text::clean(&self.account),
            crate::duration::format_duration(until - now),
            self.used,
            self.sources,
        )
    }
}

/// An account as `banguardctl accounts` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountStatus {
    pub account: String,
    /// Unfamiliar attempts in the bucket now (after what leaked), at most
    /// the budget.
    pub used: u32,
    pub budget: u32,
    pub locked_until: Option<i64>,
    /// Locks since the bucket was last empty.
    pub level: u32,
    /// Unfamiliar attempts since `first_at`, refused ones too.
    pub tries: u32,
    pub first_at: i64,
    pub last_at: i64,
    /// Distinct sources among its recent unfamiliar attempts.
    pub sources: u32,
}

/// A familiar network of an account.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Familiar {
    pub account: String,
    /// A network ("198.51.100.0/24") or a name ("name:host.example").
    pub net: String,
    /// Familiar until then; `None`: an admin's, until removed.
    pub until: Option<i64>,
    /// "login" (learned), "admin".
    pub origin: String,
}

/// A line of an account's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountEvent {
    pub at: i64,
    pub account: String,
    /// "lock", "would-lock", "unlock", "familiar", "unfamiliar".
    pub kind: String,
    pub detail: String,
}

/// The widest network an admin may make familiar: wider would switch the
/// account rule off for most of the Internet.
const WIDEST_FAMILIAR_V4: u8 = 8;
const WIDEST_FAMILIAR_V6: u8 = 32;

/// Whether a stored familiar network or name covers the source.
fn covers(net: &str, key: &HostKey, addr: Option<IpAddr>) -> bool {
    match (HostKey::from_db_key(net), addr) {
        (Some(HostKey::Net(n)), Some(a)) => n.contains(&a),
        (Some(name @ HostKey::Name(_)), None) => name == *key,
        _ => false,
    }
}

/// The network a login from this source makes familiar.
fn learned_net(config: &Config, key: &HostKey, addr: Option<IpAddr>) -> String {
    let a = &config.accounts;
    match addr {
        Some(addr) => HostKey::for_addr(addr, a.familiar_ipv4_prefix, a.familiar_ipv6_prefix).db_key(),
        None => key.db_key(),
    }
}

/// The account key of a request, when the account side applies to it.
pub(super) fn account_of(config: &Config, req: &Request<'_>) -> Option<String> {
    if !config.accounts.enabled {
        return None;
    }
    req.user.and_then(account::key)
}

/// Judges an attempt on the account side inside the attempt's runtime
/// transaction `tx` (writing its state unless `mode` is `Peek`; a new lock
/// is also written to the store, with its event and mail notice).
#[allow(clippy::too_many_arguments)]
pub(super) fn judge(
    tx: &Transaction<'_>,
    store: &Store,
    config: &Config,
    name: String,
    key: &HostKey,
    addr: Option<IpAddr>,
    now: i64,
    mode: Mode,
) -> Result<AccountSide> {
    let cfg = &config.accounts;
    let path = store.runtime_path();
    let e = |err| Error::store(path, err);
    let mut side = AccountSide {
        account: name,
        shared: false,
        familiar: None,
        used: 0,
        budget: cfg.budget,
        locked_until: None,
        new_lock: false,
        lock_id: None,
        probe: false,
        learning: false,
        sources: 0,
    };
    let view = rows::view(tx, &side.account).map_err(e)?;
    side.familiar = view
        .row
        .iter()
        .flat_map(|r| &r.familiar)
        .find(|(net, until)| until.is_none_or(|u| u > now) && covers(net, key, addr))
        .map(|(net, _)| net.clone());
    if side.familiar.is_some() {
        return Ok(side);
    }
    let mut learning_since = view.learning_since;
    if learning_since == 0 && mode != Mode::Peek {
        // The first unfamiliar attempt the side ever sees: learning starts.
        learning_since = store.write_durable(|dt| rows::start_learning(dt, now))?;
        rows::set_learning_since(tx, learning_since).map_err(e)?;
    }
    side.learning =
        cfg.learning > 0 && (learning_since == 0 || now < learning_since.saturating_add(cfg.learning));
    let mut bucket = side.account.clone();
    let mut existing = view.row;
    if existing.is_none() && view.tracked >= cfg.max_tracked {
        // A flood of names fills one shared budget, not the table.
        bucket = OVERFLOW.to_string();
        side.shared = true;
        existing = rows::get(tx, &bucket).map_err(e)?;
    }
    let new_row = existing.is_none();
    let mut row = existing.unwrap_or(Row { first_at: now, ..Row::default() });
    let (judgement, state) = row.state.judge(cfg, now);
    match judgement {
        Judgement::Allow { probe } => side.probe = probe,
        Judgement::Refuse { until, new } => {
            side.locked_until = Some(until);
            side.new_lock = new;
        }
    }
    side.used = state.used;
    if mode == Mode::Peek || (mode == Mode::Check && !side.refuses()) {
        // Nothing taken: a peek writes nothing, and preauth's password is
        // counted by authfail.
        if mode == Mode::Check {
            side.used = row.state.leaked(cfg, now).used;
        }
        return Ok(side);
    }
    row.state = state;
    row.tries = row.tries.saturating_add(1);
    row.last_at = now;
    rows::put(tx, &bucket, &row, new_row).map_err(e)?;
    if side.new_lock {
        // The attempts that filled the bucket, and this one.
        let window = cfg.refill.saturating_mul(i64::from(cfg.budget));
        side.sources = rows::sources(tx, &bucket, now - window).map_err(e)?.saturating_add(1);
        side.lock_id = record_lock(store, config, &side, &bucket, state.level, now)?;
    }
    Ok(side)
}

/// Writes a new lock (or, while learning, only its event) to the store,
/// with a mail notice when mail is on.
fn record_lock(
    store: &Store,
    config: &Config,
    side: &AccountSide,
    bucket: &str,
    level: u32,
    now: i64,
) -> Result<Option<i64>> {
    let until = side.locked_until.unwrap_or(now);
    let line = side.lock_line(now);
    let mail = config.mail.enabled;
    store.write_durable(|dt| {
        if side.learning {
            rows::add_event(dt, now, bucket, "would-lock", &line)?;
            return Ok(None);
        }
        let id = rows::insert_lock(
            dt,
            &AccountLock {
                id: 0,
                account: bucket.to_string(),
                created: now,
                until,
                level,
                passwords: side.used,
                sources: side.sources,
                origin: crate::ban::BanOrigin::Banguard.name().to_string(),
                lifted: None,
                exported: 0,
            },
        )?;
        rows::add_event(dt, now, bucket, "lock", &line)?;
        if mail {
            crate::store::outbox::queue_lock(dt, now, id)?;
        }
        Ok(Some(id))
    })
}

/// A login succeeded from this source: the attempt's share of the budget
/// comes back (`reserved`: the bucket it was taken from), and the source's
/// network becomes (or stays) familiar for the account.
#[allow(clippy::too_many_arguments)]
pub(super) fn succeeded(
    tx: &Transaction<'_>,
    store: &Store,
    config: &Config,
    name: Option<String>,
    reserved: Option<String>,
    key: &HostKey,
    addr: Option<IpAddr>,
    now: i64,
) -> Result<()> {
    let cfg = &config.accounts;
    let path = store.runtime_path();
    let e = |err| Error::store(path, err);
    if let Some(bucket) = reserved
        && let Some(mut row) = rows::get(tx, &bucket).map_err(e)?
    {
        row.state = row.state.give_back();
        rows::put(tx, &bucket, &row, false).map_err(e)?;
    }
    let Some(name) = name else { return Ok(()) };
    let net = learned_net(config, key, addr);
    let known = rows::get(tx, &name).map_err(e)?.map(|r| r.familiar).unwrap_or_default();
    if known.iter().any(|(n, until)| until.is_none() && covers(n, key, addr)) {
        return Ok(()); // an admin's network: nothing to learn
    }
    let until = now.saturating_add(cfg.familiar_for);
    // Written to the store when new, or at most once a day after: most
    // logins write nothing there.
    let fresh = known.iter().any(|(n, u)| *n == net && u.is_some_and(|u| u >= until - 86_400));
    if fresh {
        return Ok(());
    }
    let new = !known.iter().any(|(n, _)| *n == net);
    rows::set_familiar(tx, &name, &net, Some(until), cfg.familiar_max).map_err(e)?;
    store.write_durable(|dt| {
        rows::add_familiar(dt, &name, &net, Some(until), "login")?;
        rows::trim_learned(dt, &name, cfg.familiar_max)?;
        if new {
            rows::add_event(
                dt,
                now,
                &name,
                "familiar",
                &format!("{} familiar after a login", shown_net(&net)),
            )?;
        }
        Ok(())
    })
}

/// A stored network or name as people read it.
fn shown_net(net: &str) -> String {
    HostKey::from_db_key(net).map(|k| k.to_string()).unwrap_or_else(|| crate::text::clean(net))
}

/// Checks a network an admin makes familiar: an address or network no
/// wider than /8 (IPv4) or /32 (IPv6), or a `name:` label.
pub fn familiar_target(target: &HostKey) -> std::result::Result<String, String> {
    if let HostKey::Net(n) = target {
        let widest = if n.addr().is_ipv4() { WIDEST_FAMILIAR_V4 } else { WIDEST_FAMILIAR_V6 };
        if n.prefix_len() < widest {
            return Err(format!(
                "{n} is wider than /{widest}: it would switch the account rule off for most of the Internet \
                 (to stop counting an account, set [accounts] enabled = false, or add the networks you use)"
            ));
        }
    }
    Ok(target.db_key())
}

/// The account an admin names: `*` is the budget all accounts share past
/// `max_tracked` (no user's name ever becomes it).
fn account_name(user: &str) -> Result<String> {
    if user.trim() == OVERFLOW {
        return Ok(OVERFLOW.to_string());
    }
    account::key(user).ok_or_else(|| Error::InvalidInput {
        what: "account",
        value: user.to_string(),
        message: "an empty name is no account".into(),
    })
}

impl Banguard {
    /// The accounts tracked now, most recently tried first.
    pub fn accounts(&self) -> Result<Vec<AccountStatus>> {
        let now = self.clock.now();
        let cfg = &self.config.accounts;
        let path = self.store.runtime_path();
        let e = |err| Error::store(path, err);
        let window = cfg.refill.saturating_mul(i64::from(cfg.budget));
        let sources = rows::sources_by_account(&self.store.runtime, now - window).map_err(e)?;
        let mut out = Vec::new();
        for (account, row) in rows::all(&self.store.runtime).map_err(e)? {
            let state = row.state.leaked(cfg, now);
            out.push(AccountStatus {
                sources: sources.get(&account).copied().unwrap_or(0),
                account,
                // The probes after locks may take the bucket past it.
                used: state.used.min(cfg.budget),
                budget: cfg.budget,
                locked_until: state.locked(now).then_some(state.locked_until),
                level: state.level,
                tries: row.tries,
                first_at: row.first_at,
                last_at: row.last_at,
            });
        }
        Ok(out)
    }

    /// Familiar networks (of one account, or all), from the store.
    pub fn familiar(&self, user: Option<&str>) -> Result<Vec<Familiar>> {
        let now = self.clock.now();
        let name = user.map(account_name).transpose()?;
        let rows =
            rows::all_familiar(self.store.durable()?).map_err(|e| Error::store(self.store.path(), e))?;
        Ok(rows
            .into_iter()
            .filter(|(a, _, until, _)| name.as_ref().is_none_or(|n| n == a) && until.is_none_or(|u| u > now))
            .map(|(account, net, until, origin)| Familiar { account, net: shown_net(&net), until, origin })
            .collect())
    }

    /// Account locks still in the history (of one account, or all), newest
    /// first; with `active_only`, those in force.
    pub fn account_locks(&self, user: Option<&str>, active_only: bool) -> Result<Vec<AccountLock>> {
        let now = self.clock.now();
        let name = user.map(account_name).transpose()?;
        let rows = rows::all_locks(self.store.durable()?).map_err(|e| Error::store(self.store.path(), e))?;
        Ok(rows
            .into_iter()
            .filter(|l| name.as_ref().is_none_or(|n| *n == l.account))
            .filter(|l| !active_only || (l.lifted.is_none() && l.until > now))
            .collect())
    }

    /// An account's history (or every account's), oldest first.
    pub fn account_events(&self, user: Option<&str>) -> Result<Vec<AccountEvent>> {
        let name = user.map(account_name).transpose()?;
        let rows = rows::events(self.store.durable()?, name.as_deref())
            .map_err(|e| Error::store(self.store.path(), e))?;
        Ok(rows
            .into_iter()
            .map(|(at, account, kind, detail)| AccountEvent { at, account, kind, detail })
            .collect())
    }

    /// One lock by id (the mail).
    pub fn account_lock(&self, id: i64) -> Result<Option<AccountLock>> {
        rows::lock_by_id(self.store.durable()?, id).map_err(|e| Error::store(self.store.path(), e))
    }

    /// When the account side started learning, and when it stops; `None`:
    /// not yet started (it starts with the first unfamiliar attempt).
    pub fn learning(&self) -> Result<Option<(i64, i64)>> {
        let since =
            rows::learning_since(self.store.durable()?).map_err(|e| Error::store(self.store.path(), e))?;
        Ok((since > 0).then(|| (since, since.saturating_add(self.config.accounts.learning))))
    }

    /// Lifts an account's locks and empties its bucket (`banguardctl
    /// accounts unlock`): whether there was anything to lift. A fleet lock
    /// lifted here holds against the fleet's decisions that end no later.
    pub fn unlock_account(&mut self, user: &str, actor: &str) -> Result<bool> {
        let name = account_name(user)?;
        let now = self.clock.now();
        let path = self.store.runtime_path();
        let e = |err| Error::store(path, err);
        let tx = self.begin()?;
        let had_row = rows::forget(&tx, &name).map_err(e)?;
        let lifted = self.store.write_durable(|dt| {
            let locks = rows::active_locks(dt, Some(&name), now)?;
            for l in &locks {
                rows::lift_lock(dt, l.id, now)?;
                if l.origin == crate::ban::BanOrigin::Crowdsec.name() {
                    crate::store::fleet::hold(dt, &account::fleet_key(&name), l.until)?;
                }
            }
            if !locks.is_empty() || had_row {
                rows::add_event(
                    dt,
                    now,
                    &name,
                    "unlock",
                    &format!("unlocked by {}", crate::text::clean(actor)),
                )?;
            }
            Ok(!locks.is_empty())
        })?;
        tx.commit().map_err(e)?;
        Ok(lifted || had_row)
    }

    /// Makes a network (or name) familiar for an account until removed.
    pub fn add_familiar(&mut self, user: &str, target: &HostKey, actor: &str) -> Result<String> {
        let name = account_name(user)?;
        let net = familiar_target(target).map_err(|message| Error::InvalidInput {
            what: "familiar network",
            value: target.to_string(),
            message,
        })?;
        let now = self.clock.now();
        let path = self.store.runtime_path();
        let e = |err| Error::store(path, err);
        let tx = self.begin()?;
        rows::set_familiar(&tx, &name, &net, None, self.config.accounts.familiar_max).map_err(e)?;
        self.store.write_durable(|dt| {
            rows::add_familiar(dt, &name, &net, None, "admin")?;
            rows::add_event(
                dt,
                now,
                &name,
                "familiar",
                &format!("{} made familiar by {}", shown_net(&net), crate::text::clean(actor)),
            )
        })?;
        tx.commit().map_err(e)?;
        Ok(name)
    }

    /// Removes a familiar network (learned or an admin's): whether there
    /// was one.
    pub fn remove_familiar(&mut self, user: &str, target: &HostKey, actor: &str) -> Result<bool> {
        let name = account_name(user)?;
        let net = target.db_key();
        let now = self.clock.now();
        let path = self.store.runtime_path();
        let e = |err| Error::store(path, err);
        let tx = self.begin()?;
        rows::unset_familiar(&tx, &name, &net).map_err(e)?;
        let gone = self.store.write_durable(|dt| {
            let gone = rows::remove_familiar(dt, &name, &net)?;
            if gone {
                rows::add_event(
                    dt,
                    now,
                    &name,
                    "unfamiliar",
                    &format!("{} removed by {}", shown_net(&net), crate::text::clean(actor)),
                )?;
            }
            Ok(gone)
        })?;
        tx.commit().map_err(e)?;
        Ok(gone)
    }

    /// Housekeeping of the account side (the sync job): idle accounts
    /// forgotten, networks no longer familiar dropped, old locks and
    /// events pruned. How many accounts were forgotten.
    pub(super) fn maintain_accounts(&mut self, now: i64) -> Result<u64> {
        let cfg = self.config.accounts.clone();
        let history = self.config.store.history;
        let path = self.store.runtime_path();
        let e = |err| Error::store(path, err);
        let mut forgotten = 0;
        loop {
            let tx = self.begin()?;
            let n = rows::prune(&tx, now, cfg.refill, 10_000).map_err(e)?;
            rows::prune_familiar_rows(&tx, now).map_err(e)?;
            tx.commit().map_err(e)?;
            forgotten += n;
            if n < 10_000 {
                break;
            }
        }
        self.store.write_durable(|dt| {
            rows::prune_familiar(dt, now)?;
            rows::prune_locks(dt, now - history)?;
            rows::prune_events(dt, now - history)
        })?;
        Ok(forgotten)
    }
}

/// A lock of the fleet (a decision of scope `Username`), checked for
/// shape by the caller: refuse unfamiliar sources for this account.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetAccountLock {
    /// The decision's value as an account key (`crate::account::key`).
    pub account: String,
    pub expires: i64,
    pub scenario: String,
    pub origin: String,
}

/// Account locks written per transaction when applying a pull.
const FLEET_LOCK_BATCH: usize = 200;

/// The most accounts the fleet may hold locked here at once: a tenth of
/// `max_tracked`, at most 10,000 (a fleet's locks are the accounts being
/// sprayed now, a handful; any peer may post any number, and each takes a
/// row of the table that new names share once it is full).
pub fn fleet_account_cap(cfg: &crate::config::AccountsConfig) -> u64 {
    (cfg.max_tracked / 10).clamp(1, 10_000)
}

impl Banguard {
    /// Applies a pull's account locks: deletions lift the fleet's locks of
    /// those accounts, each account's longest decision is held as a lock
    /// (this server's own coming back, and those an admin unlocked here,
    /// excepted), and a full pull lifts what it no longer lists.
    pub(super) fn fleet_apply_accounts(&mut self, pull: &FleetPull, out: &mut FleetApplied) -> Result<()> {
        let now = self.clock.now();
        let crowdsec = crate::ban::BanOrigin::Crowdsec.name();
        let durable = self.store.durable()?;
        let de = |err| Error::store(self.store.path(), err);
        let held = crate::store::fleet::held(durable, now).map_err(de)?;
        let mut mine: HashMap<String, i64> = HashMap::new();
        let mut fleet: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
        for l in rows::active_locks(durable, None, now).map_err(de)? {
            if l.origin == crowdsec {
                fleet.entry(l.account).or_default().push((l.id, l.until));
            } else {
                let end = mine.entry(l.account).or_default();
                *end = (*end).max(l.until);
            }
        }
        let mut lift: Vec<(i64, String)> = Vec::new();
        for account in &pull.accounts_deleted {
            if let Some(locks) = fleet.remove(account) {
                lift.extend(locks.into_iter().map(|(id, _)| (id, account.clone())));
            }
        }
        let mut longest: HashMap<&str, &FleetAccountLock> = HashMap::new();
        for d in &pull.accounts {
            let slot = longest.entry(d.account.as_str()).or_insert(d);
            if d.expires > slot.expires {
                *slot = d;
            }
        }
        let mut take: Vec<&FleetAccountLock> = Vec::new();
        let mut listed: HashSet<&str> = HashSet::new();
        let cap = fleet_account_cap(&self.config.accounts);
        let mut held_here = fleet.values().filter(|locks| !locks.is_empty()).count() as u64;
        for d in &pull.accounts {
            if !longest.get(d.account.as_str()).is_some_and(|best| std::ptr::eq(*best, d)) {
                continue;
            }
            if d.origin == "banguard" && mine.get(&d.account).is_some_and(|end| *end >= d.expires - SAME_END)
            {
                out.ours += 1;
                continue;
            }
            if held.get(&account::fleet_key(&d.account)).is_some_and(|until| *until >= d.expires - SAME_END) {
                out.held += 1;
                continue;
            }
            listed.insert(d.account.as_str());
            let locks = fleet.entry(d.account.clone()).or_default();
            if pull.startup {
                let (stale, keep): (Vec<_>, Vec<_>) =
                    std::mem::take(locks).into_iter().partition(|(_, end)| *end > d.expires + SAME_END);
                lift.extend(stale.into_iter().map(|(id, _)| (id, d.account.clone())));
                *locks = keep;
            }
            if locks.iter().any(|(_, end)| *end >= d.expires - SAME_END) {
                out.present += 1;
            } else if locks.is_empty() && held_here >= cap {
                out.over_cap += 1;
            } else {
                held_here += u64::from(locks.is_empty());
                take.push(d);
            }
        }
        if pull.startup {
            for (account, locks) in &fleet {
                if !listed.contains(account.as_str()) {
                    lift.extend(locks.iter().map(|(id, _)| (*id, account.clone())));
                }
            }
        }
        out.accounts_locked = take.len() as u64;
        out.accounts_lifted = lift.len() as u64;
        out.accounts_shown = take
            .iter()
            .take(10)
            .map(|d| {
                format!("account {} until {}", crate::text::clean(&d.account), crate::text::time(d.expires))
            })
            .collect();
        for chunk in lift.chunks(FLEET_LOCK_BATCH) {
            self.fleet_lift_locks(chunk, now)?;
        }
        for chunk in take.chunks(FLEET_LOCK_BATCH) {
            self.fleet_take_locks(chunk, now)?;
        }
        Ok(())
    }

    fn fleet_take_locks(&mut self, locks: &[&FleetAccountLock], now: i64) -> Result<()> {
        let path = self.store.runtime_path();
        let e = |err| Error::store(path, err);
        let tx = self.store.begin()?;
        for d in locks {
            let existing = rows::get(&tx, &d.account).map_err(e)?;
            let new = existing.is_none();
            let mut row = existing.unwrap_or(Row { first_at: now, ..Row::default() });
            row.state.locked_until = row.state.locked_until.max(d.expires);
            row.state.probe_used = false;
            row.last_at = now;
            rows::put(&tx, &d.account, &row, new).map_err(e)?;
        }
        self.store.write_durable(|dt| {
            for d in locks {
                let lock = AccountLock {
                    id: 0,
                    account: d.account.clone(),
                    created: now,
                    until: d.expires,
                    level: 0,
                    passwords: 0,
                    sources: 0,
                    origin: crate::ban::BanOrigin::Crowdsec.name().to_string(),
                    lifted: None,
                    exported: 0,
                };
                rows::insert_lock(dt, &lock)?;
                let detail = format!(
                    "locked for unfamiliar sources by the fleet until {} ({} ({}))",
                    crate::text::time(d.expires),
                    d.scenario,
                    d.origin
                );
                rows::add_event(dt, now, &d.account, "lock", &crate::text::clean(&detail))?;
            }
            Ok(())
        })?;
        tx.commit().map_err(e)
    }

    fn fleet_lift_locks(&mut self, locks: &[(i64, String)], now: i64) -> Result<()> {
        let path = self.store.runtime_path();
        let e = |err| Error::store(path, err);
        let tx = self.store.begin()?;
        let remaining = self.store.write_durable(|dt| {
            let mut remaining = HashMap::new();
            for (id, account) in locks {
                rows::lift_lock(dt, *id, now)?;
                rows::add_event(dt, now, account, "unlock", "the fleet no longer has a decision for it")?;
            }
            for (_, account) in locks {
                let end = rows::active_locks(dt, Some(account), now)?.first().map_or(0, |l| l.until);
                remaining.insert(account.clone(), end);
            }
            Ok(remaining)
        })?;
        for (account, end) in remaining {
            if let Some(mut row) = rows::get(&tx, &account).map_err(e)? {
                row.state.locked_until = end;
                rows::put(&tx, &account, &row, false).map_err(e)?;
            }
        }
        tx.commit().map_err(e)
    }

    /// The accounts the fleet's locks in force here are for: a pull's
    /// deletions matter for those only.
    pub fn fleet_locked_accounts(&self) -> Result<HashSet<String>> {
        let now = self.clock.now();
        let crowdsec = crate::ban::BanOrigin::Crowdsec.name();
        let locks = rows::active_locks(self.store.durable()?, None, now)
            .map_err(|e| Error::store(self.store.path(), e))?;
        Ok(locks.into_iter().filter(|l| l.origin == crowdsec).map(|l| l.account).collect())
    }

    /// Account locks made here that are in force and not in the fleet yet.
    pub fn fleet_locks_to_export(&self) -> Result<Vec<AccountLock>> {
        let now = self.clock.now();
        let rows = rows::locks_to_export(self.store.durable()?, now, crate::ban::BanOrigin::Banguard.name())
            .map_err(|e| Error::store(self.store.path(), e))?;
        // The shared budget is this server's own bookkeeping, no account.
        Ok(rows.into_iter().filter(|l| l.account != OVERFLOW).collect())
    }

    /// Account locks posted to the fleet and lifted here since.
    pub fn fleet_locks_to_withdraw(&self) -> Result<Vec<AccountLock>> {
        let rows =
            rows::locks_to_withdraw(self.store.durable()?).map_err(|e| Error::store(self.store.path(), e))?;
        Ok(rows.into_iter().collect())
    }

    /// An account lock is in the fleet now (`withdrawn`: taken out again).
    pub fn fleet_lock_exported(&mut self, id: i64, withdrawn: bool) -> Result<()> {
        rows::lock_exported(self.store.durable()?, id, if withdrawn { 2 } else { 1 })
            .map_err(|e| Error::store(self.store.path(), e))
    }
}
