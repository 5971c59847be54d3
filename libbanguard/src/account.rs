//! The account side of an attempt, its pure rules: which account a
//! PAM_USER stands for, and what an unfamiliar attempt on it may do.
//!
//! Every account has a budget of passwords from unfamiliar sources, a
//! bucket of `budget` attempts that empties by one every `refill`. An
//! unfamiliar attempt takes one (reserved before its password is checked,
//! given back if the login succeeds). With the bucket full, the next
//! unfamiliar attempt locks the account, for unfamiliar sources only, for
//! `lock`, doubled on each relock up to `lock_max`; when a lock ends, one
//! unfamiliar attempt is let through (if it fails too, the account is
//! locked again, longer). The bucket's level and the lock's length go back
//! to nothing once the bucket has emptied. So however many addresses a
//! spray comes from, an account gets about `budget` + a week's refills + a
//! week's lock ends checked per week (23 at the defaults at a steady pace,
//! at most about three dozen however it is timed; the engine's
//! tests bound it), and its owner, from a familiar network, never notices.

use crate::config::AccountsConfig;
use serde::Serialize;

/// The longest account key kept (bytes).
pub const MAX_KEY: usize = 256;

/// The account a PAM_USER stands for: trimmed, lowercased (so that names
/// that differ only in case or surrounding blanks, which many name
/// services treat as one account, share one budget), unsafe characters
/// replaced by '?', at most [`MAX_KEY`] bytes. `None` for an empty name.
/// The same whether the account exists or not: nothing here looks it up.
pub fn key(user: &str) -> Option<String> {
    let trimmed = user.trim();
    if trimmed.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(trimmed.len().min(MAX_KEY));
    for c in trimmed.chars().flat_map(char::to_lowercase) {
        let c = if crate::text::is_unsafe(c) || c.is_whitespace() { '?' } else { c };
        if out.len() + c.len_utf8() > MAX_KEY {
            break;
        }
        out.push(c);
    }
    if out == OVERFLOW {
        // A user named like the shared budget is not the shared budget.
        out = "?".into();
    }
    Some(out)
}

/// An account's key among the fleet's values (beside hosts' store keys,
/// which never start this way).
pub fn fleet_key(account: &str) -> String {
    format!("user:{account}")
}

/// The key all accounts share once `max_tracked` are tracked: a flood of
/// made-up names fills one budget, not the table.
pub const OVERFLOW: &str = "*";

/// An account lock, as the store keeps it: made here (a spray used the
/// budget) or taken from the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountLock {
    pub id: i64,
    pub account: String,
    pub created: i64,
    pub until: i64,
    /// Locks in a row before this one (its doubling).
    pub level: u32,
    /// Unfamiliar passwords in the bucket when it locked.
    pub passwords: u32,
    /// Distinct sources of those.
    pub sources: u32,
    /// "banguard" or "crowdsec" (the fleet's).
    pub origin: String,
    pub lifted: Option<i64>,
    /// 0: not in the fleet, 1: posted, 2: withdrawn.
    pub exported: i64,
}

/// One account's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct State {
    /// Unfamiliar attempts in the bucket.
    pub used: u32,
    /// When the bucket last leaked (or was first filled).
    pub leak_at: i64,
    /// Locked for unfamiliar sources until then (0: never locked).
    pub locked_until: i64,
    /// Locks since the bucket was last empty (the next lock's doubling).
    pub level: u32,
    /// The one attempt after the current lock ended was let through.
    pub probe_used: bool,
}

/// What an unfamiliar attempt may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    /// Its password may be checked: it takes one of the budget (`probe`:
    /// the one attempt let through after a lock).
    Allow { probe: bool },
    /// Refused before its password: locked until `until`; `new` when this
    /// attempt made the lock (or relock).
    Refuse { until: i64, new: bool },
}

impl State {
    /// The bucket after what leaked since `leak_at`; an empty bucket
    /// forgets the lock's doubling.
    pub fn leaked(mut self, cfg: &AccountsConfig, now: i64) -> State {
        let refill = cfg.refill.max(1);
        if self.used == 0 || now <= self.leak_at {
            if self.used == 0 {
                self.leak_at = now.max(self.leak_at);
            }
            return self;
        }
        let out = ((now - self.leak_at) / refill).min(i64::from(self.used)) as u32;
        self.used -= out;
        self.leak_at = if self.used == 0 { now } else { self.leak_at + i64::from(out) * refill };
        if self.used == 0 && now >= self.locked_until {
            self.level = 0;
            self.probe_used = false;
        }
        self
    }

    /// Whether the account is locked for unfamiliar sources at `now`.
    pub fn locked(&self, now: i64) -> bool {
        now < self.locked_until
    }

    /// Judges one unfamiliar attempt at `now` and returns the state after
    /// it (the caller stores it, in the same transaction).
    pub fn judge(self, cfg: &AccountsConfig, now: i64) -> (Judgement, State) {
        let mut s = self.leaked(cfg, now);
        if s.locked(now) {
            return (Judgement::Refuse { until: s.locked_until, new: false }, s);
        }
        if s.locked_until > 0 && s.level > 0 && !s.probe_used && s.used >= cfg.budget {
            // The lock has ended: one attempt through.
            s.probe_used = true;
            s.used = s.used.saturating_add(1);
            return (Judgement::Allow { probe: true }, s);
        }
        if s.used < cfg.budget {
            if s.used == 0 {
                s.leak_at = now;
            }
            s.used += 1;
            return (Judgement::Allow { probe: false }, s);
        }
        // Budget used up (and the probe, if there was a lock): (re)lock.
        s.locked_until = now.saturating_add(lock_length(cfg, s.level));
        s.level = s.level.saturating_add(1);
        s.probe_used = false;
        (Judgement::Refuse { until: s.locked_until, new: true }, s)
    }

    /// A reserved attempt's password was right: it is given back.
    pub fn give_back(mut self) -> State {
        self.used = self.used.saturating_sub(1);
        self
    }
}

/// The `level`-th lock's length: `lock` doubled `level` times, at most
/// `lock_max` (saturating).
pub fn lock_length(cfg: &AccountsConfig, level: u32) -> i64 {
    let doubled = cfg.lock.max(1).saturating_mul(1i64.checked_shl(level.min(62)).unwrap_or(i64::MAX));
    doubled.min(cfg.lock_max.max(cfg.lock.max(1)))
}

/// How many passwords a spray that never stops (an attempt every ten
/// seconds from ever new addresses, or a thousand a second: the same) gets
/// checked against one account in a week from unfamiliar sources at these
/// settings: the budget, the refills, one attempt per lock that ends. What
/// banguard.toml(5), check-config and doctor say of the settings.
pub fn weekly_spray(cfg: &AccountsConfig) -> u64 {
    const WEEK: i64 = 7 * 86_400;
    let start = 1_000_000_000;
    let mut state = State::default();
    let mut checked = 0;
    let mut t = start;
    while t < start + WEEK {
        let (judgement, next) = state.judge(cfg, t);
        state = next;
        checked += u64::from(matches!(judgement, Judgement::Allow { .. }));
        t += 10;
    }
    checked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> AccountsConfig {
        crate::Config::default().accounts
    }

    #[test]
    fn keys_are_one_per_account_bounded_and_safe() {
        assert_eq!(key("Alice"), key("alice"));
        assert_eq!(key(" alice\t"), key("alice"));
        assert_eq!(key(""), None);
        assert_eq!(key("   "), None);
        assert_eq!(key("a\nb\u{1b}[2J\u{202e}c").as_deref(), Some("a?b?[2j?c"));
        assert_eq!(key(&"x".repeat(4096)).unwrap().len(), MAX_KEY);
        let long_multibyte = "é".repeat(200);
        assert!(key(&long_multibyte).unwrap().len() <= MAX_KEY);
        assert_ne!(key("alice"), key("alicia"));
        assert_ne!(key(OVERFLOW).as_deref(), Some(OVERFLOW));
    }

    #[test]
    fn a_spray_gets_the_budget_then_one_attempt_per_lock_end() {
        let c = cfg();
        let mut s = State::default();
        let mut now = 1_000_000;
        for _ in 0..c.budget {
            let (j, next) = s.judge(&c, now);
            assert_eq!(j, Judgement::Allow { probe: false });
            s = next;
        }
        let (j, next) = s.judge(&c, now);
        assert_eq!(j, Judgement::Refuse { until: now + c.lock, new: true });
        s = next;
        assert!(matches!(s.judge(&c, now + 1).0, Judgement::Refuse { new: false, .. }));
        now += c.lock;
        let (j, next) = s.judge(&c, now);
        assert_eq!(j, Judgement::Allow { probe: true });
        s = next;
        let (j, next) = s.judge(&c, now + 1);
        assert_eq!(
            j,
            Judgement::Refuse { until: now + 1 + 2 * c.lock, new: true },
            "relocked, twice as long"
        );
        s = next;
        assert_eq!(lock_length(&c, 40), c.lock_max);
        assert_eq!(s.level, 2);
    }

    /// A relentless spray for a week: at the defaults, a few dozen
    /// passwords checked (the figure banguard.toml(5) gives).
    #[test]
    fn a_week_of_spraying_gets_a_few_dozen_passwords() {
        let c = cfg();
        let checked = weekly_spray(&c);
        assert!((u64::from(c.budget)..=36).contains(&checked), "{checked} passwords checked in a week");
        // One attempt a minute instead of six: the same events, the same count.
        let mut s = State::default();
        let mut per_minute = 0;
        for minute in 0..7 * 24 * 60 {
            let (j, next) = s.judge(&c, 1_000_000_000 + minute * 60);
            s = next;
            per_minute += u64::from(matches!(j, Judgement::Allow { .. }));
        }
        assert!(per_minute.abs_diff(checked) <= 1, "{per_minute} vs {checked}");
    }

    #[test]
    fn a_given_back_attempt_brings_nothing_closer_and_an_empty_bucket_forgets() {
        let c = cfg();
        let (_, s) = State::default().judge(&c, 100);
        let s = s.give_back();
        assert_eq!(s.used, 0);
        let mut s = State { used: c.budget, leak_at: 0, locked_until: 50, level: 3, probe_used: true };
        s = s.leaked(&c, i64::from(c.budget) * c.refill + 10);
        assert_eq!((s.used, s.level, s.probe_used), (0, 0, false));
    }
}
