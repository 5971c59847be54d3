//! The fleet through a CrowdSec Local API (`[fleet] provider =
//! "crowdsec"`), run by `banguardctl sync` between its two firewall pushes:
//! this server's bans posted as alerts with one decision each (machine
//! credentials), bans lifted here withdrawn, the fleet's decisions pulled
//! from the bouncer stream (a full pull on the first exchange and every
//! `resync`, deltas otherwise) and taken as bans. The PAM module never
//! talks to the LAPI: an unreachable LAPI costs logins nothing.
//!
//! Everything a peer sends is checked before it reaches the store: the
//! type, the scope (`Ip`, `Range`, exactly), the value, the duration (Go's
//! syntax; capped), decision by decision, then the library's rule of a
//! manual ban (ignoreip, loopback, the widest-network floor). This
//! server's own decisions are found by what they are (its machine's alerts
//! of origin banguard for that value), never by an id alone. The whole
//! exchange shares one `timeout`.

mod lapi;
mod stream;

pub use lapi::{Secrecy, open_checked};

use banguard::config::CrowdsecConfig;
use banguard::policy::{
    AccountLock, BanOrigin, FleetAccountLock, FleetApplied, FleetDecision, FleetPull, SAME_END, Tally,
};
use banguard::{Ban, Banguard, HostKey};
use lapi::{Lapi, decision_key};
use std::collections::HashSet;
use stream::{Field, List, RawDecision};

/// The longest a decision taken from the fleet may last here.
pub const MAX_IMPORTED: i64 = 365 * 86_400;

/// A failed exchange, worded for the operator (already cleaned).
#[derive(Debug)]
pub struct FleetError(pub String);

impl std::fmt::Display for FleetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

type Result<T> = std::result::Result<T, FleetError>;

fn fail(msg: impl Into<String>) -> FleetError {
    FleetError(banguard::text::clean(&msg.into()))
}

/// What one exchange did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Exchange {
    pub exported: u32,
    /// Of the exported, those found in the fleet already (posted before,
    /// its answer lost): not posted again.
    pub found: u32,
    pub withdrawn: u32,
    pub startup: bool,
    pub applied: FleetApplied,
    /// Decisions skipped for their shape, by why.
    pub malformed: Tally,
    /// Decisions left out by the filters (type, origin, scenario).
    pub filtered: u64,
    /// Durations cut to [`MAX_IMPORTED`].
    pub capped: u64,
}

impl Exchange {
    /// The one-line account `sync` prints.
    pub fn summary(&self) -> String {
        let a = &self.applied;
        format!(
            "fleet: {} posted ({} already there), {} withdrawn; {} taken ({} longer), {} lifted, {} already held, \
             {} ours, {} unbanned here, {} refused, {} malformed, {} filtered, {} left out by max_decisions{}",
            self.exported,
            self.found,
            self.withdrawn,
            a.taken,
            a.longer,
            a.lifted,
            a.present,
            a.ours,
            a.held,
            a.refused.total(),
            self.malformed.total(),
            self.filtered,
            a.over_cap,
            if self.startup { " (full pull)" } else { "" }
        )
    }
}

/// One exchange with the LAPI; the firewall push follows whatever happens.
pub fn exchange(cfg: &CrowdsecConfig, g: &mut Banguard, log: &mut dyn FnMut(&str)) -> Result<Exchange> {
    let now = g.now();
    let result = run(cfg, g, now, log);
    match &result {
        Ok(_) => {
            let _ = g.set_fleet_state("last_ok", &now.to_string());
            let _ = g.set_fleet_state("last_error", "");
        }
        Err(e) => {
            let _ = g.set_fleet_state("last_error", &e.0);
        }
    }
    result
}

fn run(cfg: &CrowdsecConfig, g: &mut Banguard, now: i64, log: &mut dyn FnMut(&str)) -> Result<Exchange> {
    let lapi = Lapi::new(cfg)?;
    // Resolved at every exchange: the firewall never blocks the LAPI.
    let addrs = lapi.addresses();
    if !addrs.is_empty() {
        g.set_fleet_protected(&addrs).map_err(core)?;
    }
    let mut out = Exchange::default();
    if cfg.export {
        export(&lapi, g, now, &mut out, log)?;
    }
    if cfg.import {
        import(cfg, &lapi, g, now, &mut out, log)?;
    }
    Ok(out)
}

fn export(
    lapi: &Lapi,
    g: &mut Banguard,
    now: i64,
    out: &mut Exchange,
    log: &mut dyn FnMut(&str),
) -> Result<()> {
    let withdraw = g.fleet_to_withdraw().map_err(core)?;
    let post = g.fleet_to_export().map_err(core)?;
    let unlocked = g.fleet_locks_to_withdraw().map_err(core)?;
    let locked = g.fleet_locks_to_export().map_err(core)?;
    if withdraw.is_empty() && post.is_empty() && unlocked.is_empty() && locked.is_empty() {
        return Ok(());
    }
    let token = lapi.login()?;
    // What of this server's is in the fleet now, for these hosts and
    // accounts.
    let values: HashSet<String> = withdraw
        .iter()
        .map(|b| b.host.db_key())
        .chain(post.iter().map(|(b, _)| b.host.db_key()))
        .chain(unlocked.iter().chain(&locked).map(|l| banguard::account::fleet_key(&l.account)))
        .collect();
    let mut ours = lapi.our_decisions(&token, &values)?;
    export_account_locks(lapi, g, &token, &unlocked, &locked, &mut ours, now, out, log)?;
    for ban in &withdraw {
        // Every decision of ours for the host goes; a ban made here again
        // since is posted afresh below.
        for d in ours.remove(&ban.host.db_key()).unwrap_or_default() {
            lapi.delete_decision(&token, d.id)?;
            log(&format!(
                "fleet: withdrew decision {} for {} (ban #{} was lifted here)",
                d.id, ban.host, ban.id
            ));
        }
        g.fleet_withdrawn(ban.id).map_err(core)?;
        out.withdrawn += 1;
    }
    for (i, (ban, _)) in post.iter().enumerate() {
        let left = ban.expires.map(|e| (e - now) as f64);
        let already = ours.get(&ban.host.db_key()).is_some_and(|found| {
            found.iter().any(|d| match left {
                Some(l) => d.left >= l - SAME_END as f64,
                None => d.left >= PERMANENT_SECS - 86_400.0,
            })
        });
        if already {
            g.fleet_exported(ban.id, None).map_err(core)?;
            out.found += 1;
            out.exported += 1;
            continue;
        }
        match lapi.post_ban(&token, ban, scenario(ban), now) {
            Ok(alert) => {
                g.fleet_exported(ban.id, alert).map_err(core)?;
                log(&format!("fleet: posted ban #{} of {}", ban.id, ban.host));
                out.exported += 1;
            }
            Err(e) => {
                // The rest waits with it: one failure is the LAPI's state.
                for (ban, tries) in &post[i..] {
                    let next = now + backoff(*tries);
                    g.fleet_export_failed(ban.id, &e.0, next).map_err(core)?;
                }
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Withdraws the account locks lifted here, then posts those made here
/// (an account's lock found in the fleet already is not posted again).
#[allow(clippy::too_many_arguments)]
fn export_account_locks(
    lapi: &Lapi,
    g: &mut Banguard,
    token: &str,
    unlocked: &[AccountLock],
    locked: &[AccountLock],
    ours: &mut std::collections::HashMap<String, Vec<lapi::OurDecision>>,
    now: i64,
    out: &mut Exchange,
    log: &mut dyn FnMut(&str),
) -> Result<()> {
    for lock in unlocked {
        let key = banguard::account::fleet_key(&lock.account);
        for d in ours.remove(&key).unwrap_or_default() {
            lapi.delete_decision(token, d.id)?;
            log(&format!(
                "fleet: withdrew decision {} for account {} (unlocked here)",
                d.id,
                banguard::text::clean(&lock.account)
            ));
        }
        g.fleet_lock_exported(lock.id, true).map_err(core)?;
        out.withdrawn += 1;
    }
    for lock in locked {
        let key = banguard::account::fleet_key(&lock.account);
        let left = (lock.until - now) as f64;
        let already =
            ours.get(&key).is_some_and(|found| found.iter().any(|d| d.left >= left - SAME_END as f64));
        if !already {
            lapi.post_account_lock(token, lock, now)?;
            log(&format!(
                "fleet: posted the lock of account {} (unfamiliar sources refused)",
                banguard::text::clean(&lock.account)
            ));
        } else {
            out.found += 1;
        }
        g.fleet_lock_exported(lock.id, false).map_err(core)?;
        out.exported += 1;
    }
    Ok(())
}

/// [`lapi::PERMANENT`] in seconds.
const PERMANENT_SECS: f64 = 87_600.0 * 3600.0;

/// Seconds before the next try of an export that failed `tries` times.
fn backoff(tries: u32) -> i64 {
    (10i64 << tries.min(8)).min(3600)
}

fn import(
    cfg: &CrowdsecConfig,
    lapi: &Lapi,
    g: &mut Banguard,
    now: i64,
    out: &mut Exchange,
    log: &mut dyn FnMut(&str),
) -> Result<()> {
    let last_pull: Option<i64> = g.fleet_state("last_pull").map_err(core)?.and_then(|v| v.parse().ok());
    let startup = last_pull.is_none_or(|t| now - t >= cfg.resync || t > now);
    out.startup = startup;
    // Decisions for hosts held here always matter; others are kept up to
    // max_decisions, so memory follows that setting, not the LAPI.
    let held = g.fleet_held_hosts().map_err(core)?;
    let locked = g.fleet_locked_accounts().map_err(core)?;
    let mut pull = FleetPull { startup, ..FleetPull::default() };
    let mut fresh: u64 = 0;
    let mut fresh_accounts: u64 = 0;
    let account_cap = banguard::policy::fleet_account_cap(&g.config().accounts);
    let mut over_cap: u64 = 0;
    lapi.stream(startup, &mut |list, raw| match list {
        List::Deleted if raw.scope.text().is_some_and(lapi::is_account_scope) => {
            if let Some(account) = raw.value.text().and_then(banguard::account::key)
                && locked.contains(&account)
            {
                pull.accounts_deleted.push(account);
            }
        }
        List::Deleted => {
            let key = raw
                .scope
                .text()
                .zip(raw.value.text())
                .and_then(|(s, v)| decision_key(s, v))
                .filter(|k| held.contains(k));
            if let Some(key) = key.and_then(|k| HostKey::from_db_key(&k)) {
                pull.deleted.push(key);
            }
        }
        List::New => match checked(cfg, &raw, now) {
            Check::Account(d, capped) => {
                // Their own cap (the engine's), so that a flood of names
                // never crowds out the fleet's bans of addresses.
                out.capped += u64::from(capped);
                if locked.contains(&d.account) {
                    pull.accounts.push(d);
                } else if fresh_accounts < account_cap {
                    fresh_accounts += 1;
                    pull.accounts.push(d);
                } else {
                    over_cap += 1;
                }
            }
            Check::Take(d, capped) => {
                out.capped += u64::from(capped);
                if held.contains(&d.host.db_key()) {
                    pull.new.push(d);
                } else if fresh < cfg.max_decisions {
                    fresh += 1;
                    pull.new.push(d);
                } else {
                    over_cap += 1;
                }
            }
            Check::Filtered => out.filtered += 1,
            Check::Bad(why, example) => out.malformed.add(&why, &example),
        },
    })?;
    let mut applied = g.fleet_apply(&pull, cfg.max_decisions).map_err(core)?;
    applied.over_cap += over_cap;
    let mut lines = |shown: &[String], total: u64, what: &str, more: &str| {
        for line in shown {
            log(&format!("fleet: {line}: {what}"));
        }
        if total > shown.len() as u64 {
            log(&format!("fleet: and {} more {more}", total - shown.len() as u64));
        }
    };
    lines(&applied.taken_shown, applied.taken, "refused on all services", "hosts refused on all services");
    lines(
        &applied.accounts_shown,
        applied.accounts_locked,
        "unfamiliar sources refused (familiar networks unaffected)",
        "accounts locked",
    );
    lines(
        &applied.lifted_shown,
        applied.lifted,
        "no longer refused (the fleet has no decision for it any more)",
        "hosts no longer refused",
    );
    if applied.accounts_lifted > 0 {
        log(&format!(
            "fleet: {} account locks lifted (the fleet has no decision for them any more)",
            applied.accounts_lifted
        ));
    }
    if !applied.refused.is_empty() {
        log(&format!(
            "fleet: refused to take {} decisions: {}",
            applied.refused.total(),
            applied.refused.summary()
        ));
    }
    if !out.malformed.is_empty() {
        log(&format!(
            "fleet: skipped {} malformed decisions: {}",
            out.malformed.total(),
            out.malformed.summary()
        ));
    }
    if out.capped > 0 {
        log(&format!("fleet: {} decisions last more than a year: cut to a year", out.capped));
    }
    if applied.over_cap > 0 {
        log(&format!(
            "fleet: {} decisions left out: [fleet.crowdsec] max_decisions = {} imported bans at most",
            applied.over_cap, cfg.max_decisions
        ));
    }
    out.applied = applied;
    if startup {
        g.set_fleet_state("last_pull", &now.to_string()).map_err(core)?;
    }
    Ok(())
}

fn core(e: banguard::Error) -> FleetError {
    fail(e.to_string())
}

enum Check {
    Take(FleetDecision, bool),
    /// An account lock (scope `Username`).
    Account(FleetAccountLock, bool),
    Filtered,
    /// Why (a reason shared by many), and which decision (an example).
    Bad(String, String),
}

/// A short, clean rendering of a field for a message.
fn shown(f: &Field) -> String {
    match f {
        Field::Text(t) => format!("{:?}", banguard::text::clean(&t.chars().take(60).collect::<String>())),
        Field::Int(n) => n.to_string(),
        other => other.kind().to_string(),
    }
}

/// Whether and how a decision is taken: a ban of an address or network,
/// of an origin and scenario the filters let through, ending in the future.
fn checked(cfg: &CrowdsecConfig, d: &RawDecision, now: i64) -> Check {
    let example = || format!("id {} value {}", shown(&d.id), shown(&d.value));
    if !d.object {
        return Check::Bad("not an object".into(), "-".into());
    }
    let Some(kind) = d.kind.text() else {
        return Check::Bad(format!("type is {}", d.kind.kind()), example());
    };
    if kind != "ban" {
        return Check::Filtered;
    }
    // Origin and scenario are words to match; missing or null: none.
    let origin = d.origin.text().unwrap_or("");
    let scenario = d.scenario.text().unwrap_or("");
    if !cfg.import_origins.is_empty() && !cfg.import_origins.iter().any(|o| o == origin) {
        return Check::Filtered;
    }
    if !cfg.import_scenarios.is_empty() && !cfg.import_scenarios.iter().any(|s| scenario.contains(s.as_str()))
    {
        return Check::Filtered;
    }
    let (Some(scope), Some(value)) = (d.scope.text(), d.value.text()) else {
        return Check::Bad(format!("scope is {}, value is {}", d.scope.kind(), d.value.kind()), example());
    };
    let account = match scope {
        s if lapi::is_account_scope(s) => match banguard::account::key(value) {
            Some(a) if value.len() <= banguard::account::MAX_KEY => Some(a),
            _ => return Check::Bad(format!("scope {s}, value not an account name"), example()),
        },
        _ => None,
    };
    let host = match scope {
        _ if account.is_some() => HostKey::Name(String::new()),
        "Ip" => match banguard::addr::parse_addr(value) {
            Some(a) => HostKey::Net(a.into()),
            None => return Check::Bad("scope Ip, value not an address".into(), example()),
        },
        "Range" => match banguard::addr::parse_net(value) {
            Ok(n) => HostKey::Net(n),
            Err(_) => return Check::Bad("scope Range, value not a network".into(), example()),
        },
        other => {
            let other = banguard::text::clean(&other.chars().take(30).collect::<String>());
            return Check::Bad(format!("scope {other:?} is neither Ip, Range nor Username"), example());
        }
    };
    let Some(secs) = d.duration.text().and_then(go_duration) else {
        return Check::Bad(format!("duration {} is not a Go duration", shown(&d.duration)), example());
    };
    if secs <= 0.0 {
        return Check::Bad("duration has already run out".into(), example());
    }
    let capped = secs > MAX_IMPORTED as f64;
    let secs = (secs.min(MAX_IMPORTED as f64)).ceil() as i64;
    let clean = |s: &str| banguard::text::clean(s).chars().take(100).collect::<String>();
    if let Some(account) = account {
        let lock = FleetAccountLock {
            account,
            expires: now + secs,
            scenario: clean(scenario),
            origin: clean(origin),
        };
        return Check::Account(lock, capped);
    }
    Check::Take(
        FleetDecision { host, expires: now + secs, scenario: clean(scenario), origin: clean(origin) },
        capped,
    )
}

/// A Go duration ("59m55.855863609s", "-22.785677ms", "87600h") in seconds.
pub fn go_duration(text: &str) -> Option<f64> {
    let (neg, mut rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest.is_empty() || rest.len() > 64 {
        return None;
    }
    if rest == "0" {
        return Some(0.0);
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).filter(|n| *n > 0)?;
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let mult = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * mult;
        rest = &rest[unit_len..];
    }
    total.is_finite().then_some(if neg { -total } else { total })
}

/// What banguard's ban is called in the fleet.
fn scenario(ban: &Ban) -> &'static str {
    match (ban.origin, ban.reason.as_str()) {
        (BanOrigin::Fail2ban, _) => "banguard/fail2ban",
        (_, "recidive") => "banguard/recidive",
        (_, r) if r.starts_with("manual") => "banguard/manual",
        _ => "banguard/pam-bruteforce",
    }
}

/// What `check-config` and `doctor` say about the files the exchange
/// reads: every case `sync` refuses (missing, a link, not a regular file,
/// owner, mode, size).
pub fn file_warnings(cs: &CrowdsecConfig) -> Vec<String> {
    let files = [
        (cs.export, "machine_credentials", &cs.machine_credentials, Secrecy::Secret),
        (cs.import, "bouncer_key_file", &cs.bouncer_key_file, Secrecy::Secret),
        (!cs.ca_cert.as_os_str().is_empty(), "ca_cert", &cs.ca_cert, Secrecy::Public),
        (!cs.client_cert.as_os_str().is_empty(), "client_cert", &cs.client_cert, Secrecy::Public),
        (!cs.client_cert.as_os_str().is_empty(), "client_key", &cs.client_key, Secrecy::Secret),
    ];
    files
        .into_iter()
        .filter(|(used, ..)| *used)
        .filter_map(|(_, key, path, secrecy)| {
            open_checked(path, secrecy).err().map(|e| {
                format!("[fleet.crowdsec] {key}: {}: sync refuses it, the fleet exchange fails", e.0)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_as_the_lapi_sends_them() {
        assert_eq!(go_duration("87600h"), Some(315_360_000.0));
        assert!((go_duration("59m55.855863609s").unwrap() - 3595.855863609).abs() < 1e-6);
        assert!(go_duration("-22.785677ms").unwrap() < 0.0);
        assert_eq!(go_duration("1h2m3s"), Some(3723.0));
        assert_eq!(go_duration("0"), Some(0.0));
        for bad in ["", "5", "1d", "h", "1.2.3s", "10 m", &"9".repeat(400)] {
            assert_eq!(go_duration(bad), None, "{bad:?}");
        }
    }

    fn raw(scope: &str, value: &str, duration: &str, kind: &str) -> RawDecision {
        RawDecision {
            object: true,
            id: Field::Int(1),
            duration: Field::Text(duration.into()),
            origin: Field::Text("crowdsec".into()),
            scenario: Field::Text("crowdsecurity/ssh-bf".into()),
            scope: Field::Text(scope.into()),
            kind: Field::Text(kind.into()),
            value: Field::Text(value.into()),
        }
    }

    #[test]
    fn hostile_decisions_are_refused_or_cut_one_by_one() {
        let cfg = banguard::Config::default().fleet.crowdsec;
        let now = 1_000;
        assert!(
            matches!(checked(&cfg, &raw("Ip", "198.51.100.7", "1h", "ban"), now), Check::Take(f, false) if f.expires == 4600)
        );
        assert!(matches!(checked(&cfg, &raw("Range", "2001:db8::/64", "10m", "ban"), now), Check::Take(..)));
        assert!(
            matches!(checked(&cfg, &raw("ip", "198.51.100.7", "1h", "ban"), now), Check::Bad(w, _) if w.contains("neither Ip, Range nor Username"))
        );
        assert!(
            matches!(checked(&cfg, &raw("Ip", "not-an-ip", "1h", "ban"), now), Check::Bad(w, _) if w.contains("not an address"))
        );
        assert!(matches!(checked(&cfg, &raw("Ip", "198.51.100.7", "forever", "ban"), now), Check::Bad(..)));
        assert!(matches!(checked(&cfg, &raw("Ip", "198.51.100.7", "-1s", "ban"), now), Check::Bad(..)));
        assert!(matches!(checked(&cfg, &raw("Ip", "198.51.100.7", "1h", "captcha"), now), Check::Filtered));
        match checked(&cfg, &raw("Ip", "198.51.100.7", "8760000h", "ban"), now) {
            Check::Take(f, true) => assert_eq!(f.expires, now + MAX_IMPORTED),
            _ => panic!("an absurd duration is cut"),
        }
        let only = CrowdsecConfig { import_origins: vec!["cscli".into()], ..cfg.clone() };
        assert!(matches!(checked(&only, &raw("Ip", "198.51.100.7", "1h", "ban"), now), Check::Filtered));
        // An id that is a string or a fraction, a null scenario: the
        // decision is still what it says.
        let mut odd = raw("Ip", "198.51.100.7", "1h", "ban");
        odd.id = Field::Text("7".into());
        odd.scenario = Field::Null;
        assert!(matches!(checked(&cfg, &odd, now), Check::Take(f, _) if f.scenario.is_empty()));
        odd.id = Field::Other("a fraction");
        assert!(matches!(checked(&cfg, &odd, now), Check::Take(..)));
        // A value that is not a string, and text that would move a cursor.
        let mut bad = raw("Ip", "x", "1h", "ban");
        bad.value = Field::Other("a list");
        assert!(matches!(checked(&cfg, &bad, now), Check::Bad(w, _) if w.contains("value is a list")));
        let evil = raw("Ip\u{1b}[2J\u{202e}", "198.51.100.7", "1h", "ban");
        match checked(&cfg, &evil, now) {
            Check::Bad(w, _) => assert!(!w.chars().any(banguard::text::is_unsafe), "{w:?}"),
            _ => panic!("a scope with escapes is refused"),
        }
    }
}
