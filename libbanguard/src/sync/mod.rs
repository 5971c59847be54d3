//! Firewall and hosts.deny back-ends: make the kernel (or a file) block
//! exactly the hosts that are banned now.
//!
//! Every back-end takes the full desired set and converges on it: new
//! entries are added, gone or expired ones removed, changed expiries
//! updated. Four back-ends exist, selected by name ([`BackendKind`]):
//!
//! * `nftables`: table `inet banguard`, per-element kernel timeouts.
//! * `ipset`: `hash:net` sets `banguard4`/`banguard6` plus one iptables and
//!   one ip6tables rule; per-element kernel timeouts.
//! * `iptables`: chain `BANGUARD` with one rule per entry; expiry happens
//!   at the next sync.
//! * `hosts.deny`: a marked block in `/etc/hosts.deny` (tcp_wrappers).
//!
//! Commands are argv only (never a shell) and are spawned through a
//! [`Runner`], so callers and tests decide where they run (the tests run
//! them inside a throwaway network namespace).
//!
//! # The no-change path
//!
//! Reading 100,000 set elements back from the kernel costs about a second
//! (`nft -j list`, `iptables -S`), so the caller passes what the previous
//! sync applied ([`SyncReport::applied`], kept in its store) as
//! [`SyncRequest::previous`]. The back-end then only checks cheaply that
//! its table/sets/chain still exist (they vanish at reboot) and diffs
//! against `previous`; when nothing changed, nothing is written. Without
//! `previous` (first run, `--full`, or after a failed sync) the current
//! state is read from the kernel and diffed exactly. Callers must serialise
//! syncs (one lock file) and must pass `None` after a failed one.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub mod hosts_deny;
pub mod ipset;
pub mod iptables;
pub mod job;
pub mod nftables;
pub mod runner;

pub use hosts_deny::{HostsDeny, rewrite_block};
/// The network types of [`FirewallEntry`], for callers without `ipnet`.
pub use ipnet::{IpNet, Ipv4Net, Ipv6Net};
pub use ipset::Ipset;
pub use iptables::Iptables;
pub use nftables::Nftables;
pub use runner::{Runner, SystemRunner};

/// One address or network to block in the kernel / hosts.deny.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallEntry {
    /// A validated address or network (host bits cleared).
    pub net: ipnet::IpNet,
    /// When the block ends (unix seconds), or `None` for permanent.
    pub expires_at: Option<i64>,
}

impl FirewallEntry {
    /// A permanent entry.
    pub fn permanent(net: IpNet) -> FirewallEntry {
        FirewallEntry { net, expires_at: None }
    }

    /// An entry that ends at `expires_at` (unix seconds).
    pub fn until(net: IpNet, expires_at: i64) -> FirewallEntry {
        FirewallEntry { net, expires_at: Some(expires_at) }
    }
}

/// The back-ends, by the names used in the config and on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// `nftables`: table `inet banguard` with timeout sets.
    Nftables,
    /// `ipset`: sets `banguard4`/`banguard6` matched by one rule per family.
    Ipset,
    /// `iptables`: chain `BANGUARD`, one rule per entry.
    Iptables,
    /// `hosts.deny`: a managed block in `/etc/hosts.deny`.
    HostsDeny,
}

impl BackendKind {
    /// Every back-end, in documentation order.
    pub const ALL: [BackendKind; 4] =
        [BackendKind::Nftables, BackendKind::Ipset, BackendKind::Iptables, BackendKind::HostsDeny];

    /// The name used in the config and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Nftables => "nftables",
            BackendKind::Ipset => "ipset",
            BackendKind::Iptables => "iptables",
            BackendKind::HostsDeny => "hosts.deny",
        }
    }

    /// The back-end with its default settings (hosts.deny: `/etc/hosts.deny`).
    pub fn backend(self) -> Box<dyn Backend> {
        match self {
            BackendKind::Nftables => Box::new(Nftables),
            BackendKind::Ipset => Box::new(Ipset),
            BackendKind::Iptables => Box::new(Iptables),
            BackendKind::HostsDeny => Box::new(HostsDeny::default()),
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for BackendKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<BackendKind> {
        BackendKind::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| Error::InvalidInput {
            what: "firewall back-end",
            value: s.to_string(),
            message: "expected one of nftables, ipset, iptables, hosts.deny".into(),
        })
    }
}

/// What to sync.
#[derive(Debug, Clone, Copy)]
pub struct SyncRequest<'a> {
    /// Every entry that should be blocked; expired ones are ignored.
    pub desired: &'a [FirewallEntry],
    /// The current time (unix seconds).
    pub now: i64,
    /// [`SyncReport::applied`] of the last successful sync of this
    /// back-end, or `None` to read the state back from the kernel.
    pub previous: Option<&'a [FirewallEntry]>,
    /// Plan only: read the current state, run nothing that changes it.
    pub dry_run: bool,
}

impl<'a> SyncRequest<'a> {
    /// A real (not dry-run) sync without `previous`.
    pub fn new(desired: &'a [FirewallEntry], now: i64) -> SyncRequest<'a> {
        SyncRequest { desired, now, previous: None, dry_run: false }
    }

    /// Sets [`SyncRequest::previous`].
    pub fn previous(mut self, previous: Option<&'a [FirewallEntry]>) -> SyncRequest<'a> {
        self.previous = previous;
        self
    }

    /// Sets [`SyncRequest::dry_run`].
    pub fn dry_run(mut self, dry_run: bool) -> SyncRequest<'a> {
        self.dry_run = dry_run;
        self
    }
}

/// One change a sync applies (or, in a dry run, would apply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Run `program args`, feeding `stdin` if present.
    Command { program: String, args: Vec<String>, stdin: Option<String> },
    /// Atomically replace `path` with `contents`.
    WriteFile { path: PathBuf, contents: String },
}

impl Step {
    pub(crate) fn command(program: &str, args: &[String], stdin: Option<String>) -> Step {
        Step::Command { program: program.to_string(), args: args.to_vec(), stdin }
    }
}

/// Shown by `banguardctl sync --dry-run`; a command with stdin is shown as
/// a here-document so that an operator can read (or paste) it.
impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Command { program, args, stdin } => {
                write!(f, "{program}")?;
                for a in args {
                    write!(f, " {a}")?;
                }
                if let Some(text) = stdin {
                    write!(f, " <<'EOF'\n{text}")?;
                    if !text.ends_with('\n') {
                        writeln!(f)?;
                    }
                    write!(f, "EOF")?;
                }
                writeln!(f)
            }
            Step::WriteFile { path, contents } => {
                writeln!(f, "# replace {} with:", path.display())?;
                f.write_str(contents)?;
                if !contents.is_empty() && !contents.ends_with('\n') {
                    writeln!(f)?;
                }
                Ok(())
            }
        }
    }
}

/// What a sync did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Which back-end.
    pub backend: BackendKind,
    /// Entries that were not blocked before.
    pub added: usize,
    /// Entries that were blocked and no longer are (unbanned or expired).
    pub removed: usize,
    /// Entries whose kernel timeout changed (ban extended or shortened).
    pub updated: usize,
    /// Entries already blocked as desired.
    pub unchanged: usize,
    /// The back-end's table, sets, chain, rules or block were (re)created.
    pub repaired: bool,
    /// Nothing was changed; `steps` is the plan.
    pub dry_run: bool,
    /// The changes, in order; empty when nothing needed to change.
    pub steps: Vec<Step>,
    /// What the back-end holds now (normalised). Store it and pass it as
    /// [`SyncRequest::previous`] next time; not meaningful after a dry run.
    pub applied: Vec<FirewallEntry>,
}

impl SyncReport {
    /// Whether anything was (or in a dry run would be) changed.
    pub fn changed(&self) -> bool {
        !self.steps.is_empty()
    }

    fn new(backend: BackendKind, dry_run: bool) -> SyncReport {
        SyncReport {
            backend,
            added: 0,
            removed: 0,
            updated: 0,
            unchanged: 0,
            repaired: false,
            dry_run,
            steps: Vec::new(),
            applied: Vec::new(),
        }
    }

    fn count(&mut self, d: &Diff) {
        self.added += d.add.len();
        self.removed += d.remove.len();
        self.updated += d.update.len();
        self.unchanged += d.unchanged;
    }
}

/// A firewall or hosts.deny back-end.
pub trait Backend {
    /// Which back-end this is.
    fn kind(&self) -> BackendKind;

    /// Makes the back-end block exactly the unexpired entries of
    /// `req.desired`, spawning every command through `runner`.
    fn sync(&self, req: &SyncRequest<'_>, runner: &dyn Runner) -> Result<SyncReport>;
}

/// Cleans up the desired set the way every back-end needs it: host bits
/// cleared, IPv4-mapped IPv6 turned into IPv4 (an IPv6 rule would never
/// match those packets), expired entries dropped, duplicates merged (the
/// longest ban wins), sorted by network. Refuses a `/0`: blocking every
/// address is never a ban.
pub fn normalize(entries: &[FirewallEntry], now: i64) -> Result<Vec<FirewallEntry>> {
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        if e.expires_at.is_some_and(|t| t <= now) {
            continue;
        }
        let net = canonical(e.net);
        if net.prefix_len() == 0 {
            return Err(Error::InvalidInput {
                what: "firewall entry",
                value: e.net.to_string(),
                message: "refusing to block every address (prefix length 0)".into(),
            });
        }
        out.push(FirewallEntry { net, expires_at: e.expires_at });
    }
    sort_dedup(&mut out);
    Ok(out)
}

/// The back-end's view of `previous`: sorted and deduplicated like
/// [`normalize`]; with kernel timeouts, entries past their expiry are
/// gone (the kernel removed them).
pub(crate) fn previous_state(
    previous: &[FirewallEntry],
    now: i64,
    kernel_timeouts: bool,
) -> Vec<FirewallEntry> {
    let mut out: Vec<FirewallEntry> = previous
        .iter()
        .filter(|e| !(kernel_timeouts && e.expires_at.is_some_and(|t| t <= now)))
        .map(|e| FirewallEntry { net: canonical(e.net), expires_at: e.expires_at })
        .filter(|e| e.net.prefix_len() > 0)
        .collect();
    sort_dedup(&mut out);
    out
}

/// Entries of `previous` that expired within the last `slack` seconds and
/// are wanted again. The kernel may still hold them (their timeout started
/// counting a moment after the push), and re-adding an element that is
/// still there keeps its old timeout on older kernels; counting them as
/// present makes the back-end delete and re-add them.
pub(crate) fn recently_expired(
    previous: &[FirewallEntry],
    desired: &[FirewallEntry],
    now: i64,
    slack: i64,
) -> Vec<FirewallEntry> {
    previous
        .iter()
        .filter(|e| e.expires_at.is_some_and(|t| t <= now && t > now - slack))
        .map(|e| FirewallEntry { net: canonical(e.net), expires_at: e.expires_at })
        .filter(|e| desired.binary_search_by(|d| d.net.cmp(&e.net)).is_ok())
        .collect()
}

/// Kernel timeouts have a ceiling (ipset: 2147483 s). A longer ban is
/// pushed without a timeout and turned into a timed one by the first sync
/// after it comes under the ceiling.
pub(crate) fn cap_expiries(entries: &mut [FirewallEntry], now: i64, max_timeout: i64) {
    for e in entries {
        if e.expires_at.is_some_and(|t| t - now > max_timeout) {
            e.expires_at = None;
        }
    }
}

/// Seconds until `expires_at` for a kernel timeout (at least 1).
pub(crate) fn timeout_secs(expires_at: i64, now: i64) -> i64 {
    (expires_at - now).max(1)
}

fn canonical(net: IpNet) -> IpNet {
    match net.trunc() {
        IpNet::V6(n) if n.prefix_len() >= 96 => match n.addr().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, n.prefix_len() - 96).map(IpNet::V4).unwrap_or(IpNet::V6(n)),
            None => IpNet::V6(n),
        },
        other => other,
    }
}

pub(crate) fn sort_dedup(v: &mut Vec<FirewallEntry>) {
    // Per network, the longest ban first (None = permanent = longest), so
    // that dedup keeps it.
    v.sort_unstable_by(|a, b| {
        a.net
            .cmp(&b.net)
            .then_with(|| b.expires_at.unwrap_or(i64::MAX).cmp(&a.expires_at.unwrap_or(i64::MAX)))
    });
    v.dedup_by(|later, kept| later.net == kept.net);
}

/// Whether `net` is one address (goes into a plain set, not an interval set).
pub(crate) fn is_host(net: &IpNet) -> bool {
    net.prefix_len() == net.max_prefix_len()
}

/// How expiries are compared when diffing.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Expiry {
    /// The back-end has no timeouts (iptables, hosts.deny): only the
    /// network matters.
    Ignore,
    /// Equal within this many seconds. 0 when `current` comes from
    /// `previous` (exact); a few seconds when it was read from the kernel,
    /// which reports the remaining time rounded down and started counting a
    /// moment after `now`.
    Within(i64),
}

/// Seconds of slack when comparing kernel-reported expiries.
pub(crate) const KERNEL_EXPIRY_SLACK: i64 = 5;

/// The difference between what is there and what should be.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Diff {
    pub add: Vec<FirewallEntry>,
    pub update: Vec<FirewallEntry>,
    pub remove: Vec<FirewallEntry>,
    pub unchanged: usize,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.update.is_empty() && self.remove.is_empty()
    }
}

/// Diffs two lists sorted by network with unique networks (as produced by
/// [`normalize`] / [`previous_state`]). `update` holds the desired entry.
pub(crate) fn diff(current: &[FirewallEntry], desired: &[FirewallEntry], expiry: Expiry) -> Diff {
    use std::cmp::Ordering::*;
    let mut d = Diff::default();
    let (mut i, mut j) = (0, 0);
    while i < current.len() || j < desired.len() {
        let order = match (current.get(i), desired.get(j)) {
            (Some(c), Some(w)) => c.net.cmp(&w.net),
            (Some(_), None) => Less,
            (None, _) => Greater,
        };
        match order {
            Less => {
                d.remove.push(current[i].clone());
                i += 1;
            }
            Greater => {
                d.add.push(desired[j].clone());
                j += 1;
            }
            Equal => {
                let (c, w) = (&current[i], &desired[j]);
                let same = match (expiry, c.expires_at, w.expires_at) {
                    (Expiry::Ignore, _, _) => true,
                    (Expiry::Within(_), None, None) => true,
                    (Expiry::Within(s), Some(a), Some(b)) => (a - b).abs() <= s,
                    (Expiry::Within(_), _, _) => false,
                };
                if same {
                    d.unchanged += 1;
                } else {
                    d.update.push(w.clone());
                }
                i += 1;
                j += 1;
            }
        }
    }
    d
}

/// Parses an address or network as the kernel tools print it.
pub(crate) fn parse_net(s: &str) -> Option<IpNet> {
    if s.contains('/') {
        s.parse::<IpNet>().ok().map(|n| n.trunc())
    } else {
        s.parse::<IpAddr>().ok().map(IpNet::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn backend_names_round_trip() {
        for k in BackendKind::ALL {
            assert_eq!(k.name().parse::<BackendKind>().unwrap(), k);
            assert_eq!(k.backend().kind(), k);
        }
        let err = "pf".parse::<BackendKind>().unwrap_err().to_string();
        assert!(err.contains("\"pf\"") && err.contains("hosts.deny"), "{err}");
    }

    #[test]
    fn normalize_cleans_up() {
        let now = 1000;
        let input = vec![
            FirewallEntry::until(n("192.0.2.7/24"), 2000),    // host bits set
            FirewallEntry::until(n("192.0.2.0/24"), 3000),    // duplicate, longer
            FirewallEntry::until(n("198.51.100.1/32"), 1000), // expired
            FirewallEntry::permanent(n("::ffff:203.0.113.5/128")), // mapped
            FirewallEntry::until(n("2001:db8::1/128"), 1500),
            FirewallEntry::permanent(n("2001:db8::1/128")),
        ];
        let out = normalize(&input, now).unwrap();
        assert_eq!(
            out,
            vec![
                FirewallEntry::until(n("192.0.2.0/24"), 3000),
                FirewallEntry::permanent(n("203.0.113.5/32")),
                FirewallEntry::permanent(n("2001:db8::1/128")),
            ]
        );
    }

    #[test]
    fn normalize_refuses_everything() {
        let err = normalize(&[FirewallEntry::permanent(n("10.1.2.3/0"))], 0).unwrap_err();
        assert!(err.to_string().contains("every address"), "{err}");
        assert!(normalize(&[FirewallEntry::permanent(n("::ffff:0.0.0.0/96"))], 0).is_err());
    }

    #[test]
    fn diff_finds_add_remove_update() {
        let cur = vec![
            FirewallEntry::until(n("192.0.2.1/32"), 100),
            FirewallEntry::until(n("192.0.2.2/32"), 100),
            FirewallEntry::permanent(n("192.0.2.3/32")),
        ];
        let want = vec![
            FirewallEntry::until(n("192.0.2.2/32"), 103),
            FirewallEntry::until(n("192.0.2.3/32"), 100),
            FirewallEntry::until(n("192.0.2.4/32"), 100),
        ];
        let d = diff(&cur, &want, Expiry::Within(0));
        assert_eq!(d.remove, vec![cur[0].clone()]);
        assert_eq!(d.update, vec![want[0].clone(), want[1].clone()]);
        assert_eq!(d.add, vec![want[2].clone()]);
        assert_eq!(d.unchanged, 0);
        let d = diff(&cur, &want, Expiry::Within(5));
        assert_eq!(d.update, vec![want[1].clone()]);
        assert_eq!(d.unchanged, 1);
        let d = diff(&cur, &want, Expiry::Ignore);
        assert!(d.update.is_empty());
        assert_eq!(d.unchanged, 2);
    }

    #[test]
    fn previous_state_drops_kernel_expired() {
        let prev =
            vec![FirewallEntry::until(n("192.0.2.1/32"), 10), FirewallEntry::until(n("192.0.2.2/32"), 30)];
        assert_eq!(previous_state(&prev, 20, true), vec![prev[1].clone()]);
        assert_eq!(previous_state(&prev, 20, false), prev);
    }

    #[test]
    fn recently_expired_and_wanted_again() {
        let prev = vec![
            FirewallEntry::until(n("192.0.2.1/32"), 98),
            FirewallEntry::until(n("192.0.2.2/32"), 98),
            FirewallEntry::until(n("192.0.2.3/32"), 90),
        ];
        let want =
            vec![FirewallEntry::until(n("192.0.2.1/32"), 500), FirewallEntry::until(n("192.0.2.3/32"), 500)];
        assert_eq!(recently_expired(&prev, &want, 100, 5), vec![prev[0].clone()]);
    }

    #[test]
    fn long_bans_are_pushed_without_timeout() {
        let mut v = vec![FirewallEntry::until(n("192.0.2.1/32"), 100 + 50)];
        cap_expiries(&mut v, 100, 60);
        assert_eq!(v[0].expires_at, Some(150));
        cap_expiries(&mut v, 80, 60);
        assert_eq!(v[0].expires_at, None);
    }

    #[test]
    fn step_display_is_a_here_document() {
        let s = Step::command("nft", &["-f".into(), "-".into()], Some("flush set x\n".into()));
        assert_eq!(s.to_string(), "nft -f - <<'EOF'\nflush set x\nEOF\n");
    }
}
