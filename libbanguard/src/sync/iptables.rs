//! iptables back-end: our own chain `BANGUARD` in table `filter` (in
//! iptables and in ip6tables), jumped to once from the top of INPUT for
//! new connections (replies to this server's own connections pass; see
//! `sync` on why), one `-s NET -j DROP` rule per entry. No kernel
//! timeouts: an expired entry goes at the next sync.
//!
//! A change rewrites our chain whole through `iptables-restore --noflush`:
//! declaring `:BANGUARD - [0:0]` flushes that chain only, nothing else in
//! the table is touched, and the table is committed as one transaction.
//! Deleting single rules instead costs the same with iptables-nft (it loads
//! the whole table, about 0.6 s at 100,000 rules) and fails on a rule that
//! is already gone. This back-end is O(rules) per packet; prefer ipset or
//! nftables for large ban lists.

use std::fmt::Write as _;

use super::runner::{argv, run_ok};
use super::{
    Backend, BackendKind, Expiry, FirewallEntry, Runner, Step, SyncReport, SyncRequest, diff, normalize,
    parse_net, previous_state, sort_dedup,
};
use crate::error::Result;
use ipnet::IpNet;

/// Our chain, in both iptables and ip6tables.
pub const CHAIN: &str = "BANGUARD";

/// The jump as `iptables -S` shows it.
const JUMP: &str = "-A INPUT -m conntrack --ctstate NEW -j BANGUARD";
/// The jump of earlier versions (every packet): replaced where found.
const OLD_JUMP: &str = "-A INPUT -j BANGUARD";

/// The iptables back-end.
#[derive(Debug, Clone, Copy, Default)]
pub struct Iptables;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Family {
    iptables: &'static str,
    restore: &'static str,
}

const FAMILIES: [Family; 2] = [
    Family { iptables: "iptables", restore: "iptables-restore" },
    Family { iptables: "ip6tables", restore: "ip6tables-restore" },
];

impl Family {
    fn of(net: &IpNet) -> Family {
        FAMILIES[usize::from(matches!(net, IpNet::V6(_)))]
    }
}

/// Our rules as `iptables -S` shows them.
#[derive(Debug, Default)]
struct Listed {
    entries: Vec<FirewallEntry>,
    /// A rule in our chain that we would not have written.
    foreign: bool,
}

impl Backend for Iptables {
    fn kind(&self) -> BackendKind {
        BackendKind::Iptables
    }

    fn sync(&self, req: &SyncRequest<'_>, runner: &dyn Runner) -> Result<SyncReport> {
        let now = req.now;
        let desired = normalize(req.desired, now)?;
        let mut report = SyncReport::new(BackendKind::Iptables, req.dry_run);
        for fam in FAMILIES {
            let want: Vec<FirewallEntry> =
                desired.iter().filter(|e| Family::of(&e.net) == fam).cloned().collect();
            // `-S INPUT` is cheap (2 ms) even with 100,000 rules in our chain.
            let input = list(runner, fam, Some("INPUT"))?;
            let jumps = input.lines().filter(|l| l.trim_end() == JUMP).count();
            let old_jumps = input.lines().filter(|l| l.trim_end() == OLD_JUMP).count();
            let listed = if jumps == 0 {
                // First run, after a reboot, or the jump was deleted: look
                // at the whole table (our chain may exist or not).
                parse_chain(&list(runner, fam, None)?)
            } else {
                match req.previous {
                    Some(p) => Listed {
                        entries: previous_state(p, now, false)
                            .into_iter()
                            .filter(|e| Family::of(&e.net) == fam)
                            .collect(),
                        foreign: false,
                    },
                    None => parse_chain(&list(runner, fam, Some(CHAIN))?),
                }
            };
            let d = diff(&listed.entries, &want, Expiry::Ignore);
            report.count(&d);
            if d.is_empty() && jumps == 1 && old_jumps == 0 && !listed.foreign {
                continue;
            }
            report.repaired |= jumps != 1 || old_jumps > 0 || listed.foreign;
            let text = render_restore(&want, jumps, old_jumps);
            let args = argv(&["-w", "--noflush"]);
            if !req.dry_run {
                run_ok(runner, fam.restore, &args, Some(text.as_bytes()))?;
            }
            report.steps.push(Step::command(fam.restore, &args, Some(text)));
        }
        report.applied = desired;
        Ok(report)
    }
}

/// The `filter` table input for iptables-restore: our chain declared (and
/// so flushed) and refilled; the jump inserted if missing, duplicates and
/// earlier versions' jumps removed.
fn render_restore(want: &[FirewallEntry], jumps: usize, old_jumps: usize) -> String {
    let mut s = format!("*filter\n:{CHAIN} - [0:0]\n");
    for e in want {
        let _ = writeln!(s, "-A {CHAIN} -s {} -j DROP", e.net);
    }
    if jumps == 0 {
        let _ = writeln!(s, "-I INPUT 1 -m conntrack --ctstate NEW -j {CHAIN}");
    }
    for _ in 1..jumps {
        let _ = writeln!(s, "-D INPUT -m conntrack --ctstate NEW -j {CHAIN}");
    }
    for _ in 0..old_jumps {
        let _ = writeln!(s, "-D INPUT -j {CHAIN}");
    }
    s.push_str("COMMIT\n");
    s
}

/// `iptables -w -S [chain]` (table filter).
fn list(runner: &dyn Runner, fam: Family, chain: Option<&str>) -> Result<String> {
    let mut args = argv(&["-w", "-S"]);
    args.extend(chain.map(str::to_string));
    let out = run_ok(runner, fam.iptables, &args, None)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Our chain's rules from `-S` output (of the chain or the whole table).
fn parse_chain(text: &str) -> Listed {
    let mut listed = Listed::default();
    let prefix = format!("-A {CHAIN} ");
    for line in text.lines() {
        let Some(rule) = line.trim_end().strip_prefix(&prefix) else {
            continue;
        };
        let words: Vec<&str> = rule.split_whitespace().collect();
        match words.as_slice() {
            ["-s", net, "-j", "DROP"] if parse_net(net).is_some() => {
                listed.entries.extend(parse_net(net).map(FirewallEntry::permanent));
            }
            _ => listed.foreign = true,
        }
    }
    sort_dedup(&mut listed.entries);
    listed
}

#[cfg(test)]
mod tests {
    use super::super::runner::fake::FakeRunner;
    use super::*;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    const NOW: i64 = 1_000_000;

    #[test]
    fn golden_restore_text() {
        let want = vec![
            FirewallEntry::until(n("192.0.2.0/24"), NOW + 5),
            FirewallEntry::permanent(n("198.51.100.7/32")),
        ];
        assert_eq!(
            render_restore(&want, 0, 0),
            "*filter\n:BANGUARD - [0:0]\n-A BANGUARD -s 192.0.2.0/24 -j DROP\n-A BANGUARD -s 198.51.100.7/32 -j DROP\n-I INPUT 1 -m conntrack --ctstate NEW -j BANGUARD\nCOMMIT\n"
        );
        assert_eq!(
            render_restore(&[FirewallEntry::permanent(n("2001:db8::2/128"))], 3, 0),
            "*filter\n:BANGUARD - [0:0]\n-A BANGUARD -s 2001:db8::2/128 -j DROP\n-D INPUT -m conntrack --ctstate NEW -j BANGUARD\n-D INPUT -m conntrack --ctstate NEW -j BANGUARD\nCOMMIT\n"
        );
        // An earlier version's jump (every packet) is replaced.
        assert_eq!(
            render_restore(&[], 0, 1),
            "*filter\n:BANGUARD - [0:0]\n-I INPUT 1 -m conntrack --ctstate NEW -j BANGUARD\n-D INPUT -j BANGUARD\nCOMMIT\n"
        );
    }

    fn runner(input4: &'static str, chain4: &'static str) -> FakeRunner {
        FakeRunner::default()
            .on("iptables", move |args, _| match args.get(2).map(String::as_str) {
                Some("INPUT") => Some((0, input4.to_string())),
                Some(CHAIN) | None => Some((0, chain4.to_string())),
                _ => None,
            })
            .on("ip6tables", |args, _| {
                (args.get(2).map(String::as_str) == Some("INPUT")).then(|| {
                    (0, "-P INPUT ACCEPT\n-A INPUT -m conntrack --ctstate NEW -j BANGUARD\n".to_string())
                })
            })
    }

    #[test]
    fn no_change_with_previous_only_lists_input() {
        let r = runner(
            "-P INPUT ACCEPT\n-A INPUT -m conntrack --ctstate NEW -j BANGUARD\n-A INPUT -j FOREIGN\n",
            "",
        );
        let entries = vec![FirewallEntry::until(n("192.0.2.7/32"), NOW + 5)];
        let rep = Iptables.sync(&SyncRequest::new(&entries, NOW).previous(Some(&entries)), &r).unwrap();
        assert!(!rep.changed());
        assert_eq!(rep.unchanged, 1);
        assert_eq!(r.programs(), vec!["iptables -w -S INPUT", "ip6tables -w -S INPUT"]);
    }

    #[test]
    fn kernel_state_diff_rewrites_only_the_changed_family() {
        let chain =
            "-N BANGUARD\n-A BANGUARD -s 192.0.2.7/32 -j DROP\n-A BANGUARD -s 203.0.113.0/24 -j DROP\n";
        let r = runner("-P INPUT ACCEPT\n-A INPUT -m conntrack --ctstate NEW -j BANGUARD\n", chain);
        let entries = vec![
            FirewallEntry::until(n("192.0.2.7/32"), NOW + 5),
            FirewallEntry::until(n("198.51.100.1/32"), NOW + 5),
        ];
        let rep = Iptables.sync(&SyncRequest::new(&entries, NOW), &r).unwrap();
        assert_eq!((rep.added, rep.removed, rep.unchanged), (1, 1, 1));
        assert!(!rep.repaired);
        assert_eq!(
            rep.steps,
            vec![Step::command(
                "iptables-restore",
                &argv(&["-w", "--noflush"]),
                Some("*filter\n:BANGUARD - [0:0]\n-A BANGUARD -s 192.0.2.7/32 -j DROP\n-A BANGUARD -s 198.51.100.1/32 -j DROP\nCOMMIT\n".into())
            )]
        );
    }

    #[test]
    fn missing_jump_or_foreign_rule_forces_a_rewrite() {
        let r = runner("-P INPUT ACCEPT\n", "-N BANGUARD\n-A BANGUARD -s 192.0.2.7/32 -j ACCEPT\n");
        let rep = Iptables.sync(&SyncRequest::new(&[], NOW).dry_run(true), &r).unwrap();
        assert!(rep.repaired && rep.dry_run);
        assert_eq!(rep.steps.len(), 1);
        assert_eq!(
            rep.steps[0].to_string(),
            "iptables-restore -w --noflush <<'EOF'\n*filter\n:BANGUARD - [0:0]\n-I INPUT 1 -m conntrack --ctstate NEW -j BANGUARD\nCOMMIT\nEOF\n"
        );
        assert!(!r.programs().iter().any(|p| p.starts_with("iptables-restore")));
    }
}
