//! ipset back-end: `hash:net` sets `banguard4` (family inet) and
//! `banguard6` (family inet6) with per-element timeouts, each matched by
//! one rule at the top of INPUT, for new connections only (replies to
//! this server's own connections pass; see `sync` on why):
//!
//! ```text
//! iptables  -I INPUT 1 -m set --match-set banguard4 src -m conntrack --ctstate NEW -j DROP
//! ip6tables -I INPUT 1 -m set --match-set banguard6 src -m conntrack --ctstate NEW -j DROP
//! ```
//!
//! All element changes go through ONE `ipset -exist restore`: with
//! `-exist`, `del` of a missing element and `add` of a present one (which
//! then gets the new timeout) both succeed, so a sync never fails because
//! the kernel let an element time out first. A rule is inserted only if
//! `-C` says it is missing.

use std::fmt::Write as _;

use ipnet::IpNet;

use super::runner::{argv, failed, run_ok};
use super::{
    Backend, BackendKind, Diff, Expiry, FirewallEntry, KERNEL_EXPIRY_SLACK, Runner, Step, SyncReport,
    SyncRequest, cap_expiries, diff, is_host, normalize, parse_net, previous_state, sort_dedup, timeout_secs,
};
use crate::error::{Error, Result};

const IPSET: &str = "ipset";

/// ipset's largest timeout (seconds). Longer bans go in without a timeout
/// until they come under it.
pub const MAX_TIMEOUT: i64 = 2_147_483;

/// `maxelem` of the sets we create. The kernel allocates as the set grows;
/// this is only the ceiling.
pub const MAXELEM: usize = 1 << 20;

/// The ipset back-end.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ipset;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Family {
    set: &'static str,
    family: &'static str,
    iptables: &'static str,
    v6: bool,
}

const FAMILIES: [Family; 2] = [
    Family { set: "banguard4", family: "inet", iptables: "iptables", v6: false },
    Family { set: "banguard6", family: "inet6", iptables: "ip6tables", v6: true },
];

impl Family {
    fn of(net: &IpNet) -> Family {
        FAMILIES[usize::from(matches!(net, IpNet::V6(_)))]
    }

    fn rule(&self, verb: &[&str]) -> Vec<String> {
        let mut a = argv(&["-w"]);
        a.extend(argv(verb));
        a.extend(argv(&[
            "-m",
            "set",
            "--match-set",
            self.set,
            "src",
            "-m",
            "conntrack",
            "--ctstate",
            "NEW",
            "-j",
            "DROP",
        ]));
        a
    }

    /// The rule of earlier versions (every packet of a banned source):
    /// replaced by [`Family::rule`] where found.
    fn old_rule(&self, verb: &[&str]) -> Vec<String> {
        let mut a = argv(&["-w"]);
        a.extend(argv(verb));
        a.extend(argv(&["-m", "set", "--match-set", self.set, "src", "-j", "DROP"]));
        a
    }
}

/// What `ipset list -t` says about one of our sets.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Header {
    Missing,
    Ready { maxelem: usize },
    Incompatible(String),
}

impl Backend for Ipset {
    fn kind(&self) -> BackendKind {
        BackendKind::Ipset
    }

    fn sync(&self, req: &SyncRequest<'_>, runner: &dyn Runner) -> Result<SyncReport> {
        let now = req.now;
        let mut desired = normalize(req.desired, now)?;
        cap_expiries(&mut desired, now, MAX_TIMEOUT);
        let headers = probe(runner)?;
        let mut report = SyncReport::new(BackendKind::Ipset, req.dry_run);
        let mut restore = String::new();
        let mut current = Vec::new();
        let mut foreign = Vec::new();
        for (fam, header) in FAMILIES.iter().zip(&headers) {
            let count = desired.iter().filter(|e| Family::of(&e.net) == *fam).count();
            match header {
                Header::Incompatible(what) => {
                    return Err(Error::InvalidInput {
                        what: "ipset set",
                        value: fam.set.into(),
                        message: format!(
                            "it exists as `{what}` but banguard needs `hash:net family {} timeout 0`: \
                             delete the {} rules that use it, then run `ipset destroy {}`",
                            fam.family, fam.iptables, fam.set
                        ),
                    });
                }
                Header::Missing => {
                    report.repaired = true;
                    let _ = writeln!(
                        restore,
                        "create {} hash:net family {} hashsize 1024 maxelem {MAXELEM} timeout 0",
                        fam.set, fam.family
                    );
                    check_size(fam, count, MAXELEM)?;
                }
                Header::Ready { maxelem } => {
                    check_size(fam, count, *maxelem)?;
                    match req.previous {
                        Some(p) => current.extend(
                            previous_state(p, now, true).into_iter().filter(|e| Family::of(&e.net) == *fam),
                        ),
                        None => {
                            let (entries, odd) = read_state(runner, fam, now)?;
                            current.extend(entries);
                            foreign.extend(odd);
                        }
                    }
                }
            }
        }
        sort_dedup(&mut current);
        let slack = if req.previous.is_some() { 0 } else { KERNEL_EXPIRY_SLACK };
        // Entries we would not have written (`nomatch`) are not in
        // `current`: they are deleted first and, if wanted, added our way.
        let d = diff(&current, &desired, Expiry::Within(slack));
        report.repaired |= !foreign.is_empty();
        report.count(&d);
        report.removed += foreign.len();
        render_changes(&mut restore, &d, &foreign, now);
        report.applied = desired;

        let restore_args = argv(&["-exist", "restore"]);
        if !restore.is_empty() {
            if !req.dry_run {
                run_ok(runner, IPSET, &restore_args, Some(restore.as_bytes()))?;
            }
            report.steps.push(Step::command(IPSET, &restore_args, Some(restore)));
        }
        for (fam, header) in FAMILIES.iter().zip(&headers) {
            // A rule cannot reference a set that did not exist.
            let present = match header {
                Header::Missing => false,
                _ => rule_present(runner, fam, &fam.rule(&["-C", "INPUT"]))?,
            };
            if !present {
                // An earlier version's rule goes first.
                let old = fam.old_rule(&["-C", "INPUT"]);
                if !matches!(header, Header::Missing) && rule_present(runner, fam, &old)? {
                    let args = fam.old_rule(&["-D", "INPUT"]);
                    if !req.dry_run {
                        run_ok(runner, fam.iptables, &args, None)?;
                    }
                    report.steps.push(Step::command(fam.iptables, &args, None));
                }
                report.repaired = true;
                let args = fam.rule(&["-I", "INPUT", "1"]);
                if !req.dry_run {
                    run_ok(runner, fam.iptables, &args, None)?;
                }
                report.steps.push(Step::command(fam.iptables, &args, None));
            }
        }
        Ok(report)
    }
}

fn check_size(fam: &Family, count: usize, maxelem: usize) -> Result<()> {
    if count > maxelem {
        return Err(Error::InvalidInput {
            what: "ban list",
            value: format!("{count} entries"),
            message: format!(
                "ipset set {} holds at most {maxelem} (its maxelem); use the nftables back-end",
                fam.set
            ),
        });
    }
    Ok(())
}

/// `del` lines for what goes, then `add` lines (with the remaining time;
/// `timeout 0` is permanent) for what is new or changed.
fn render_changes(s: &mut String, d: &Diff, foreign: &[IpNet], now: i64) {
    let mut gone: Vec<IpNet> = d.remove.iter().map(|e| e.net).chain(foreign.iter().copied()).collect();
    gone.sort_unstable();
    gone.dedup();
    for net in gone {
        let _ = writeln!(s, "del {} {}", Family::of(&net).set, element(&net));
    }
    let mut new: Vec<FirewallEntry> = d.add.iter().chain(&d.update).cloned().collect();
    sort_dedup(&mut new);
    for e in new {
        let secs = e.expires_at.map_or(0, |t| timeout_secs(t, now));
        let _ = writeln!(s, "add {} {} timeout {secs}", Family::of(&e.net).set, element(&e.net));
    }
}

/// As ipset prints it: a host without `/32`/`/128`.
fn element(net: &IpNet) -> String {
    if is_host(net) { net.addr().to_string() } else { net.to_string() }
}

/// `ipset list -t`: headers only, a few ms whatever the set sizes.
fn probe(runner: &dyn Runner) -> Result<[Header; 2]> {
    let args = argv(&["list", "-t"]);
    let out = run_ok(runner, IPSET, &args, None)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut headers = [Header::Missing, Header::Missing];
    let mut name = "";
    let mut kind = "";
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("Name: ") {
            name = v.trim();
        } else if let Some(v) = line.strip_prefix("Type: ") {
            kind = v.trim();
        } else if let Some(v) = line.strip_prefix("Header: ") {
            let Some(i) = FAMILIES.iter().position(|f| f.set == name) else {
                continue;
            };
            let words: Vec<&str> = v.split_whitespace().collect();
            let value =
                |key: &str| words.iter().position(|w| *w == key).and_then(|p| words.get(p + 1)).copied();
            headers[i] = if kind == "hash:net"
                && value("family") == Some(FAMILIES[i].family)
                && value("timeout").is_some()
            {
                Header::Ready { maxelem: value("maxelem").and_then(|m| m.parse().ok()).unwrap_or(65536) }
            } else {
                Header::Incompatible(format!("{kind} {}", v.trim()))
            };
        }
    }
    Ok(headers)
}

/// Reads one set back (`ipset list -o save`, about 80 ms at 100,000
/// elements). Returns our entries and the networks of entries we would not
/// have written.
fn read_state(runner: &dyn Runner, fam: &Family, now: i64) -> Result<(Vec<FirewallEntry>, Vec<IpNet>)> {
    let args = argv(&["list", "-o", "save", fam.set]);
    let out = run_ok(runner, IPSET, &args, None)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut entries = Vec::new();
    let mut odd = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let ["add", set, elem, rest @ ..] = words.as_slice() else {
            continue;
        };
        if *set != fam.set {
            continue;
        }
        let Some(net) = parse_net(elem) else {
            return Err(Error::Command {
                program: IPSET.into(),
                args,
                status: Some(0),
                stderr: format!("unexpected element in `{line}`"),
            });
        };
        match rest {
            [] => entries.push(FirewallEntry { net, expires_at: None }),
            ["timeout", secs] => match secs.parse::<i64>() {
                Ok(0) => entries.push(FirewallEntry { net, expires_at: None }),
                Ok(s) => entries.push(FirewallEntry { net, expires_at: Some(now + s) }),
                Err(_) => odd.push(net),
            },
            _ => odd.push(net),
        }
    }
    Ok((entries, odd))
}

/// `iptables -C` (`args`): exit 0 present, 1 missing, anything else an error.
fn rule_present(runner: &dyn Runner, fam: &Family, args: &[String]) -> Result<bool> {
    let out = runner.run(fam.iptables, args, None)?;
    match out.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(failed(fam.iptables, args, &out)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::runner::fake::FakeRunner;
    use super::*;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    const NOW: i64 = 1_000_000;

    const HEADERS: &str = "\
Name: other
Type: hash:ip
Revision: 6
Header: family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x1
Size in memory: 200
References: 0
Number of entries: 0

Name: banguard4
Type: hash:net
Revision: 7
Header: family inet hashsize 1024 maxelem 1048576 timeout 0 bucketsize 12 initval 0x2
Size in memory: 1240
References: 1
Number of entries: 2

Name: banguard6
Type: hash:net
Revision: 7
Header: family inet6 hashsize 1024 maxelem 1048576 timeout 0 bucketsize 12 initval 0x3
Size in memory: 1240
References: 1
Number of entries: 1
";

    #[test]
    fn golden_restore_text() {
        let d = Diff {
            add: vec![
                FirewallEntry::until(n("198.51.100.7/32"), NOW + 600),
                FirewallEntry::permanent(n("2001:db8::/64")),
            ],
            update: vec![FirewallEntry::until(n("192.0.2.0/24"), NOW + 60)],
            remove: vec![
                FirewallEntry::permanent(n("2001:db8::2/128")),
                FirewallEntry::permanent(n("203.0.113.9/32")),
            ],
            unchanged: 0,
        };
        let mut s = String::new();
        render_changes(&mut s, &d, &[n("10.0.0.0/8")], NOW);
        assert_eq!(
            s,
            "\
del banguard4 10.0.0.0/8
del banguard4 203.0.113.9
del banguard6 2001:db8::2
add banguard4 192.0.2.0/24 timeout 60
add banguard4 198.51.100.7 timeout 600
add banguard6 2001:db8::/64 timeout 0
"
        );
    }

    #[test]
    fn first_sync_creates_sets_and_rules() {
        let r = FakeRunner::default();
        let entries = vec![
            FirewallEntry::until(n("127.0.0.2/32"), NOW + 10),
            FirewallEntry::permanent(n("2001:db8::2/128")),
        ];
        let rep = Ipset.sync(&SyncRequest::new(&entries, NOW), &r).unwrap();
        assert_eq!((rep.added, rep.removed, rep.unchanged), (2, 0, 0));
        assert!(rep.repaired);
        let shown: Vec<String> = rep.steps.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            vec![
                "ipset -exist restore <<'EOF'\n\
                 create banguard4 hash:net family inet hashsize 1024 maxelem 1048576 timeout 0\n\
                 create banguard6 hash:net family inet6 hashsize 1024 maxelem 1048576 timeout 0\n\
                 add banguard4 127.0.0.2 timeout 10\n\
                 add banguard6 2001:db8::2 timeout 0\n\
                 EOF\n"
                    .to_string(),
                "iptables -w -I INPUT 1 -m set --match-set banguard4 src -m conntrack --ctstate NEW -j DROP\n"
                    .to_string(),
                "ip6tables -w -I INPUT 1 -m set --match-set banguard6 src -m conntrack --ctstate NEW -j DROP\n"
                    .to_string(),
            ]
        );
        assert_eq!(r.programs()[0], "ipset list -t");
    }

    #[test]
    fn kernel_state_diff_and_present_rules() {
        let save4 = "create banguard4 hash:net family inet hashsize 1024 maxelem 1048576 timeout 0\n\
                     add banguard4 198.51.100.7 timeout 597\n\
                     add banguard4 10.0.0.0/8 nomatch\n\
                     add banguard4 192.0.2.1 timeout 0\n";
        let save6 = "create banguard6 hash:net family inet6 hashsize 1024 maxelem 1048576 timeout 0\n";
        let r = FakeRunner::default()
            .on(IPSET, move |args, _| match args {
                [a, ..] if a == "list" && args[1] == "-t" => Some((0, HEADERS.to_string())),
                [_, _, _, set] if set == "banguard4" => Some((0, save4.to_string())),
                [_, _, _, set] if set == "banguard6" => Some((0, save6.to_string())),
                _ => None,
            })
            .on("ip6tables", |args, _| (args[1] == "-C").then(|| (1, "Bad rule".to_string())));
        let entries = vec![
            FirewallEntry::until(n("198.51.100.7/32"), NOW + 600),
            FirewallEntry::permanent(n("10.0.0.0/8")),
        ];
        let rep = Ipset.sync(&SyncRequest::new(&entries, NOW), &r).unwrap();
        // 192.0.2.1 unwanted, the nomatch entry deleted and re-added ours.
        assert_eq!((rep.added, rep.removed, rep.unchanged), (1, 2, 1), "{rep:?}");
        assert_eq!(
            rep.steps[0],
            Step::command(
                IPSET,
                &argv(&["-exist", "restore"]),
                Some(
                    "del banguard4 10.0.0.0/8\ndel banguard4 192.0.2.1\nadd banguard4 10.0.0.0/8 timeout 0\n"
                        .into()
                )
            )
        );
        assert_eq!(
            rep.steps[1].to_string(),
            "ip6tables -w -I INPUT 1 -m set --match-set banguard6 src -m conntrack --ctstate NEW -j DROP\n"
        );
        assert_eq!(rep.steps.len(), 2);
    }

    #[test]
    fn an_earlier_versions_rule_is_replaced() {
        let r = FakeRunner::default().on(IPSET, |_, _| Some((0, HEADERS.to_string()))).on(
            "iptables",
            |args, _| {
                // Only the old form (no conntrack match) is in INPUT.
                (args[1] == "-C").then(|| {
                    if args.iter().any(|a| a == "conntrack") {
                        (1, String::new())
                    } else {
                        (0, String::new())
                    }
                })
            },
        );
        let entries = vec![FirewallEntry::until(n("198.51.100.7/32"), NOW + 600)];
        let rep = Ipset.sync(&SyncRequest::new(&entries, NOW).previous(Some(&entries)), &r).unwrap();
        let shown: Vec<String> = rep.steps.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            vec![
                "iptables -w -D INPUT -m set --match-set banguard4 src -j DROP\n".to_string(),
                "iptables -w -I INPUT 1 -m set --match-set banguard4 src -m conntrack --ctstate NEW -j DROP\n"
                    .to_string(),
            ]
        );
    }

    #[test]
    fn no_change_with_previous_writes_nothing() {
        let r = FakeRunner::default().on(IPSET, |_, _| Some((0, HEADERS.to_string())));
        let entries = vec![FirewallEntry::until(n("198.51.100.7/32"), NOW + 600)];
        let rep = Ipset.sync(&SyncRequest::new(&entries, NOW).previous(Some(&entries)), &r).unwrap();
        assert!(!rep.changed());
        assert_eq!(rep.unchanged, 1);
        assert_eq!(
            r.programs(),
            vec![
                "ipset list -t",
                "iptables -w -C INPUT -m set --match-set banguard4 src -m conntrack --ctstate NEW -j DROP",
                "ip6tables -w -C INPUT -m set --match-set banguard6 src -m conntrack --ctstate NEW -j DROP",
            ]
        );
    }

    #[test]
    fn incompatible_set_is_an_error_naming_the_fix() {
        let text = HEADERS.replace(
            "Type: hash:net\nRevision: 7\nHeader: family inet ",
            "Type: hash:ip\nRevision: 7\nHeader: family inet ",
        );
        let r = FakeRunner::default().on(IPSET, move |_, _| Some((0, text.clone())));
        let e = Ipset.sync(&SyncRequest::new(&[], NOW), &r).unwrap_err().to_string();
        assert!(e.contains("banguard4") && e.contains("ipset destroy banguard4"), "{e}");
    }
}
