//! A ban and the rules that read it: whether it is active, how long it
//! is, how it is worded, whether and why it goes into the kernel, and what
//! the firewall blocks for a set of bans. Pure: no store, no clock.

use crate::addr::{self, HostKey};
use crate::config::{Config, SyncConfig, SyncScope};
use crate::duration::{BanTime, format_duration};
use ipnet::IpNet;
use serde::Serialize;

/// Service name of bans that cover every service.
pub const ALL_SERVICES: &str = "*";

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
    /// Who made it: banguard, or the tool it was brought in from.
    pub origin: BanOrigin,
    /// Earlier bans of the host that the tool it came from had counted
    /// (they lengthen its next bans here as banguard's own do).
    pub carried: u32,
}

/// Who made a ban.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BanOrigin {
    /// banguard itself: counted failures, the repeat-offender rule, a
    /// manual ban.
    #[default]
    Banguard,
    /// Carried over from fail2ban's database (`banguardctl import fail2ban`).
    Fail2ban,
    /// A decision of the fleet, taken from a CrowdSec Local API by the sync
    /// job.
    Crowdsec,
}

/// Why a ban was made, in one word of a small set (the metrics' `reason`
/// label): maxretry, recidive, manual (an admin's), fleet, import.
pub fn reason_kind(origin: BanOrigin, reason: &str) -> &'static str {
    match (origin, reason) {
        (BanOrigin::Banguard, "maxretry") => "maxretry",
        (BanOrigin::Banguard, "recidive") => "recidive",
        (BanOrigin::Banguard, _) => "manual",
        (BanOrigin::Crowdsec, _) => "fleet",
        (BanOrigin::Fail2ban, _) => "import",
    }
}

impl BanOrigin {
    /// The name in the store, the lists and JSON.
    pub fn name(self) -> &'static str {
        match self {
            BanOrigin::Banguard => "banguard",
            BanOrigin::Fail2ban => "fail2ban",
            BanOrigin::Crowdsec => "crowdsec",
        }
    }

    /// The origin a stored name stands for (a name this build does not
    /// know reads as banguard's own).
    pub fn from_name(name: &str) -> BanOrigin {
        match name {
            "fail2ban" => BanOrigin::Fail2ban,
            "crowdsec" => BanOrigin::Crowdsec,
            _ => BanOrigin::Banguard,
        }
    }
}

impl std::fmt::Display for BanOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Ban {
    /// A new ban of banguard's own, not yet stored (id 0), PAM-only.
    pub fn new(host: HostKey, service: &str, created: i64, expires: Option<i64>, reason: &str) -> Ban {
        Ban {
            id: 0,
            host,
            service: service.to_string(),
            created,
            expires,
            lifted: None,
            reason: reason.to_string(),
            failures: 0,
            prior_bans: 0,
            firewall: false,
            pushed: None,
            origin: BanOrigin::Banguard,
            carried: 0,
        }
    }

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
    pub fn goes_to_firewall(&self, sync: &SyncConfig) -> bool {
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
        if self.origin != BanOrigin::Banguard {
            return format!("{banned} on {service} for {length} (from {}: {})", self.origin, self.reason);
        }
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

    /// Whether a refusal under this ban counts towards `[sync]
    /// escalate_after`: only a ban that would otherwise stay PAM-only and
    /// that may be blocked at all (an ordinary network within the floor).
    pub fn counts_refusals(&self, sync: &SyncConfig) -> bool {
        sync.escalate_after > 0
            && sync.scope != SyncScope::All
            && !self.firewall
            && self.host.net().is_some_and(|n| sync.block_refusal(&n).is_none())
    }

    /// The log line of a ban sent to the kernel because its host kept
    /// knocking (the module and the C ABI say the same).
    pub fn escalation_line(&self, sync: &SyncConfig) -> String {
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
    pub fn kernel_reason(&self, sync: &SyncConfig) -> Option<&'static str> {
        if self.host.net().is_none_or(|n| sync.block_refusal(&n).is_some()) {
            return None;
        }
        if self.firewall {
            Some(if self.origin == BanOrigin::Fail2ban {
                "fail2ban ban"
            } else if self.origin == BanOrigin::Crowdsec {
                "fleet ban"
            } else if self.reason == "recidive" {
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

/// What the firewall blocks for `bans` (from [`Banguard::bans_to_push`]):
/// each ban's network with every network that must never be blocked
/// (ignoreip of any service, loopback, and `also_keep`: the fleet's own
/// LAPI) carved out, so that the kernel and hosts.deny never refuse a host
/// that PAM lets through, nor cut this server off its fleet.
pub fn firewall_entries(
    config: &Config,
    bans: &[Ban],
    also_keep: &[IpNet],
) -> Vec<crate::sync::FirewallEntry> {
    let mut keep = config.never_blocked();
    keep.extend_from_slice(also_keep);
    bans.iter()
        .filter_map(|b| b.host.net().map(|net| (net, b.expires)))
        .flat_map(|(net, expires_at)| {
            addr::carve(net, &keep).into_iter().map(move |net| crate::sync::FirewallEntry { net, expires_at })
        })
        .collect()
}

/// Whether `host` may be banned as asked (by hand, or brought in from
/// elsewhere): not every address, not a network wider than a firewall may
/// hold, not one wholly inside ignoreip or loopback. If it may, the
/// never-blocked networks inside it (the firewall leaves them out); if
/// not, why, in words for the admin.
pub fn check_target(config: &Config, host: &HostKey) -> Result<Vec<IpNet>, String> {
    let Some(net) = host.net() else { return Ok(Vec::new()) };
    if net.prefix_len() == 0 {
        return Err("that is every address".to_string());
    }
    if let Some(why) = config.sync.block_refusal(&net) {
        return Err(why);
    }
    let keep = config.never_blocked();
    if addr::carve(net, &keep).is_empty() {
        let hit = keep.iter().find(|k| k.contains(&net.network())).map_or(net, |k| *k);
        return Err(format!(
            "it lies inside {hit} (ignoreip or loopback), which banguard never blocks; remove it from ignoreip first"
        ));
    }
    Ok(keep.into_iter().filter(|k| net.contains(&k.network())).collect())
}

/// Whether two keys denote overlapping sets of hosts.
pub fn overlaps(a: &HostKey, b: &HostKey) -> bool {
    match (a, b) {
        (HostKey::Net(x), HostKey::Net(y)) => x.contains(&y.network()) || y.contains(&x.network()),
        (HostKey::Name(x), HostKey::Name(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(host: &str, service: &str, reason: &str, firewall: bool) -> Ban {
        Ban {
            id: 7,
            host: HostKey::from_db_key(host).unwrap(),
            service: service.into(),
            created: 1_000,
            expires: Some(1_600),
            lifted: None,
            reason: reason.into(),
            failures: 5,
            prior_bans: 2,
            firewall,
            pushed: None,
            origin: BanOrigin::Banguard,
            carried: 0,
        }
    }

    #[test]
    fn a_target_is_checked_against_what_is_never_blocked() {
        let mut c = Config::default();
        c.default.ignoreip = vec!["192.0.2.7/32".parse().unwrap(), "198.51.100.0/24".parse().unwrap()];
        let key = |s: &str| HostKey::from_db_key(s).unwrap();
        assert_eq!(check_target(&c, &key("203.0.113.9/32")), Ok(vec![]));
        // Inside a network: the ignored host is carved out, the ban holds.
        assert_eq!(check_target(&c, &key("192.0.2.0/24")), Ok(vec!["192.0.2.7/32".parse().unwrap()]));
        let inside = check_target(&c, &key("198.51.100.0/25")).unwrap_err();
        assert!(inside.contains("inside 198.51.100.0/24"), "{inside}");
        let loopback = check_target(&c, &key("127.0.0.0/16")).unwrap_err();
        assert!(loopback.contains("loopback"), "{loopback}");
        assert!(check_target(&c, &key("0.0.0.0/0")).unwrap_err().contains("every address"));
        assert!(check_target(&c, &key("10.0.0.0/4")).is_err(), "wider than the firewall holds");
        assert_eq!(check_target(&c, &HostKey::Name("bot.example".into())), Ok(vec![]));
    }

    #[test]
    fn the_wording_needs_no_store() {
        let c = Config::default();
        let b = ban("198.51.100.7/32", "sshd", "maxretry", false);
        assert_eq!(b.wording(&c, true), "banned 198.51.100.7 on sshd for 10m after 5 failures in 10m");
        assert_eq!(b.wording(&c, false), "banned on sshd for 10m after 5 failures in 10m");
        let r = ban("2001:db8::/64", ALL_SERVICES, "recidive", true);
        assert_eq!(
            r.wording(&c, true),
            "repeat offender: banned 2001:db8::/64 on all services for 10m after 3 bans in 1d"
        );
        let m = ban("192.0.2.0/24", "vsftpd", "manual: evil", true);
        assert_eq!(m.wording(&c, true), "banned 192.0.2.0/24 on vsftpd for 10m (manual: evil)");
    }

    #[test]
    fn why_a_ban_is_in_the_kernel() {
        let mut c = Config::default();
        let reason = |b: &Ban, c: &Config| b.kernel_reason(&c.sync);
        assert_eq!(reason(&ban("198.51.100.7/32", "sshd", "maxretry", false), &c), None);
        assert_eq!(reason(&ban("198.51.100.7/32", "sshd", "maxretry", true), &c), Some("kept knocking"));
        assert_eq!(reason(&ban("198.51.100.7/32", "*", "recidive", true), &c), Some("repeat offender"));
        assert_eq!(reason(&ban("198.51.100.7/32", "*", "manual", true), &c), Some("manual"));
        // Never for what may not be blocked: a name, loopback, wider than the floor.
        assert_eq!(reason(&ban("name:host.example", "sshd", "manual", true), &c), None);
        assert_eq!(reason(&ban("127.0.0.2/32", "sshd", "manual", true), &c), None);
        assert_eq!(reason(&ban("10.0.0.0/8", "sshd", "manual", true), &c), None);
        c.sync.scope = SyncScope::All;
        assert_eq!(reason(&ban("198.51.100.7/32", "sshd", "maxretry", false), &c), Some("scope all"));
    }

    #[test]
    fn only_a_pam_only_blockable_ban_counts_refusals() {
        let mut c = Config::default();
        let counts = |b: &Ban, c: &Config| b.counts_refusals(&c.sync);
        assert!(counts(&ban("198.51.100.7/32", "sshd", "maxretry", false), &c));
        // Already in the kernel, never blockable, or escalation off.
        assert!(!counts(&ban("198.51.100.7/32", "sshd", "maxretry", true), &c));
        assert!(!counts(&ban("name:host.example", "sshd", "maxretry", false), &c));
        assert!(!counts(&ban("127.0.0.2/32", "sshd", "maxretry", false), &c));
        assert!(!counts(&ban("10.0.0.0/8", "sshd", "maxretry", false), &c));
        c.sync.escalate_after = 0;
        assert!(!counts(&ban("198.51.100.7/32", "sshd", "maxretry", false), &c));
        c.sync.escalate_after = 2;
        c.sync.scope = SyncScope::All;
        assert!(!counts(&ban("198.51.100.7/32", "sshd", "maxretry", false), &c));
    }

    #[test]
    fn the_firewall_never_gets_an_ignored_network() {
        let mut c = Config::default();
        c.default.ignoreip.push("192.0.2.128/25".parse().unwrap());
        let entries = firewall_entries(&c, &[ban("192.0.2.0/24", "*", "manual", true)], &[]);
        let nets: Vec<String> = entries.iter().map(|e| e.net.to_string()).collect();
        assert_eq!(nets, ["192.0.2.0/25"]);
        assert!(entries.iter().all(|e| e.expires_at == Some(1_600)));
    }

    #[test]
    fn keys_overlap_by_containment_and_names_by_equality() {
        let k = |s: &str| HostKey::from_db_key(s).unwrap();
        assert!(overlaps(&k("192.0.2.0/24"), &k("192.0.2.7/32")));
        assert!(overlaps(&k("192.0.2.7/32"), &k("192.0.2.0/24")));
        assert!(!overlaps(&k("192.0.2.0/24"), &k("198.51.100.0/24")));
        assert!(overlaps(&k("name:a.example"), &k("name:a.example")));
        assert!(!overlaps(&k("name:a.example"), &k("192.0.2.0/24")));
    }
}
