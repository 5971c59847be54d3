//! The kernel back-ends against the real tools, each test in its own
//! throwaway network namespace: bans drop real TCP connections, unbans and
//! expiries let them through again, a repeated sync changes nothing, and
//! tables/chains/sets that are not ours survive.
//!
//! Every firewall command runs through `nsenter` into the namespace (the
//! back-ends take a `Runner`); this machine's own firewall is never touched.
//! The traffic is loopback-only inside the namespace: an HTTP listener on
//! `[::]:8080`, clients bound to 127.0.0.2/.3 and 2001:db8::2/::3.
//!
//! The benchmark behind BENCHMARKS-sync.md is `tests/benches/sync.rs`
//! (bench/sync/run.sh runs it).

use banguard_e2e::fixture::ConfigFile;
use std::process::{Command, Stdio};
use std::time::Duration;

use banguard::sync::{BackendKind, FirewallEntry, IpNet, Runner, SyncReport, SyncRequest, SystemRunner};
use banguard_e2e::{Netns, require, wait_for, wait_for_listener};

const PORT: u16 = 8080;

fn now() -> i64 {
    banguard_e2e::unix_now()
}

fn net(s: &str) -> IpNet {
    s.parse().expect("test network")
}

/// Runs back-end commands inside `ns`.
fn runner(ns: &Netns) -> SystemRunner {
    banguard_e2e::ns_runner(ns)
}

/// A namespace with attacker/bystander addresses on lo and a listener.
struct Lab {
    ns: Netns,
    runner: SystemRunner,
}

impl Lab {
    fn new() -> Lab {
        let mut ns = Netns::new();
        for a in ["127.0.0.2/8", "127.0.0.3/8", "2001:db8::2/128", "2001:db8::3/128"] {
            ns.add_lo_addr(a);
        }
        let mut listener = ns.command(["python3", "-m", "http.server", &PORT.to_string(), "--bind", "::"]);
        listener.stdout(Stdio::null()).stderr(Stdio::null());
        ns.spawn(listener);
        assert!(wait_for_listener(&ns, PORT, Duration::from_secs(10)), "listener did not start");
        let runner = runner(&ns);
        Lab { ns, runner }
    }

    /// Whether a TCP connection (an HTTP GET) from `src` gets through; a
    /// dropped SYN makes curl give up after 1 s.
    fn connects(&self, src: &str) -> bool {
        let url = if src.contains(':') {
            format!("http://[::1]:{PORT}/")
        } else {
            format!("http://127.0.0.1:{PORT}/")
        };
        let out = self
            .ns
            .command([
                "curl",
                "-sS",
                "-g",
                "-o",
                "/dev/null",
                "--interface",
                src,
                "--connect-timeout",
                "1",
                "--max-time",
                "3",
                &url,
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run curl in the namespace");
        out.status.success()
    }

    fn assert_blocked(&self, blocked: &[&str], open: &[&str]) {
        for src in blocked {
            assert!(!self.connects(src), "{src} should be dropped");
        }
        for src in open {
            assert!(self.connects(src), "{src} should connect");
        }
    }

    fn sh(&self, argv: &[&str]) -> String {
        String::from_utf8_lossy(&self.ns.run_ok(argv).stdout).into_owned()
    }

    fn sync(&self, kind: BackendKind, req: &SyncRequest<'_>) -> SyncReport {
        kind.backend().sync(req, &self.runner).unwrap_or_else(|e| panic!("{kind} sync: {e}"))
    }
}

/// Listing of the firewall state with the ticking "expires"/"timeout N"
/// countdowns removed, to show that a sync wrote nothing.
fn snapshot(lab: &Lab, kind: BackendKind) -> String {
    let text = match kind {
        BackendKind::Nftables => lab.sh(&["nft", "-a", "list", "ruleset"]),
        BackendKind::Ipset => {
            lab.sh(&["ipset", "list", "-o", "save"])
                + &lab.sh(&["iptables", "-S"])
                + &lab.sh(&["ip6tables", "-S"])
        }
        _ => lab.sh(&["iptables", "-S"]) + &lab.sh(&["ip6tables", "-S"]),
    };
    let mut out = Vec::new();
    let mut skip = false;
    for w in text.split_whitespace() {
        if skip {
            skip = false;
            continue;
        }
        if w == "expires" || (w == "timeout" && kind == BackendKind::Ipset) {
            skip = true;
            continue;
        }
        out.push(w);
    }
    out.join(" ")
}

/// Tables, chains and sets of someone else, which must survive every sync.
fn install_foreign(lab: &Lab, kind: BackendKind) -> String {
    match kind {
        BackendKind::Nftables => {
            lab.sh(&["nft", "add", "table", "ip", "foreign"]);
            lab.sh(&["nft", "add", "chain", "ip", "foreign", "c", "{ type filter hook input priority 0; }"]);
            lab.sh(&["nft", "add", "rule", "ip", "foreign", "c", "ip", "saddr", "192.0.2.99", "accept"]);
            // Same set name as ours, in another table.
            lab.sh(&["nft", "add", "table", "inet", "filter"]);
            lab.sh(&["nft", "add", "set", "inet", "filter", "banned4", "{ type ipv4_addr; }"]);
            lab.sh(&["nft", "add", "element", "inet", "filter", "banned4", "{ 192.0.2.98 }"]);
        }
        _ => {
            for ipt in ["iptables", "ip6tables"] {
                let src = if ipt == "iptables" { "192.0.2.99" } else { "2001:db8:99::1" };
                lab.sh(&[ipt, "-N", "FOREIGN"]);
                lab.sh(&[ipt, "-A", "FOREIGN", "-s", src, "-j", "ACCEPT"]);
                lab.sh(&[ipt, "-A", "INPUT", "-j", "FOREIGN"]);
            }
            if kind == BackendKind::Ipset {
                lab.sh(&["ipset", "create", "foreign", "hash:ip"]);
                lab.sh(&["ipset", "add", "foreign", "192.0.2.97"]);
            }
        }
    }
    foreign_listing(lab, kind)
}

fn foreign_listing(lab: &Lab, kind: BackendKind) -> String {
    match kind {
        BackendKind::Nftables => {
            lab.sh(&["nft", "list", "table", "ip", "foreign"])
                + &lab.sh(&["nft", "list", "table", "inet", "filter"])
        }
        _ => {
            let mut s = lab.sh(&["iptables", "-S", "FOREIGN"]) + &lab.sh(&["ip6tables", "-S", "FOREIGN"]);
            for ipt in ["iptables", "ip6tables"] {
                assert!(
                    lab.sh(&[ipt, "-S", "INPUT"]).contains("-A INPUT -j FOREIGN"),
                    "{ipt}: jump to FOREIGN lost"
                );
            }
            if kind == BackendKind::Ipset {
                s += &lab.sh(&["ipset", "list", "-o", "save", "foreign"]);
            }
            s
        }
    }
}

fn counts(r: &SyncReport) -> (usize, usize, usize, usize) {
    (r.added, r.removed, r.updated, r.unchanged)
}

/// Ban, idempotence, unban, expiry: the same story for every kernel back-end.
fn ban_unban_expire(kind: BackendKind) {
    let lab = Lab::new();
    let foreign = install_foreign(&lab, kind);
    lab.assert_blocked(&[], &["127.0.0.2", "2001:db8::2"]);

    let t = now();
    let bans = vec![
        FirewallEntry::until(net("127.0.0.2/32"), t + 600),
        FirewallEntry::permanent(net("2001:db8::2/128")),
    ];

    // A dry run plans, and changes nothing.
    let plan = lab.sync(kind, &SyncRequest::new(&bans, t).dry_run(true));
    assert!(plan.changed() && plan.dry_run, "{plan:?}");
    assert_eq!(counts(&plan), (2, 0, 0, 0));
    lab.assert_blocked(&[], &["127.0.0.2"]);

    let first = lab.sync(kind, &SyncRequest::new(&bans, t));
    assert_eq!(counts(&first), (2, 0, 0, 0), "{first:?}");
    assert!(first.repaired);
    lab.assert_blocked(&["127.0.0.2", "2001:db8::2"], &["127.0.0.3", "2001:db8::3"]);

    // Same set again: nothing added or removed, nothing written, whether
    // the back-end trusts `previous` or reads the kernel back.
    let before = snapshot(&lab, kind);
    let again = lab.sync(kind, &SyncRequest::new(&bans, now()).previous(Some(&first.applied)));
    assert_eq!(counts(&again), (0, 0, 0, 2), "{again:?}");
    assert!(!again.changed() && !again.repaired, "{again:?}");
    let read_back = lab.sync(kind, &SyncRequest::new(&bans, now()));
    assert_eq!(counts(&read_back), (0, 0, 0, 2), "{read_back:?}");
    assert!(!read_back.changed(), "{read_back:?}");
    assert_eq!(snapshot(&lab, kind), before, "a no-change sync modified the firewall");

    // Unban the IPv4 host.
    let unbanned = lab.sync(kind, &SyncRequest::new(&bans[1..], now()).previous(Some(&read_back.applied)));
    assert_eq!(counts(&unbanned), (0, 1, 0, 1), "{unbanned:?}");
    lab.assert_blocked(&["2001:db8::2"], &["127.0.0.2"]);

    // A short ban ends by itself (kernel timeout) or at the next sync.
    let t = now();
    let short = vec![bans[1].clone(), FirewallEntry::until(net("127.0.0.2/32"), t + 2)];
    let banned = lab.sync(kind, &SyncRequest::new(&short, t).previous(Some(&unbanned.applied)));
    assert_eq!(counts(&banned), (1, 0, 0, 1), "{banned:?}");
    assert!(!lab.connects("127.0.0.2"), "short ban not applied");
    std::thread::sleep(Duration::from_secs(3).saturating_sub(Duration::from_secs((now() - t).max(0) as u64)));
    let later = lab.sync(kind, &SyncRequest::new(&short, now()).previous(Some(&banned.applied)));
    if kind == BackendKind::Iptables {
        assert_eq!(counts(&later), (0, 1, 0, 1), "{later:?}");
    } else {
        // Already gone from the kernel: nothing left to remove.
        assert_eq!(counts(&later), (0, 0, 0, 1), "{later:?}");
        assert!(!later.changed(), "{later:?}");
    }
    let open = wait_for(Duration::from_secs(6), || lab.connects("127.0.0.2").then_some(()));
    assert!(open.is_some(), "expired ban still drops 127.0.0.2");
    lab.assert_blocked(&["2001:db8::2"], &["127.0.0.3"]);

    assert_eq!(foreign_listing(&lab, kind), foreign, "someone else's firewall state changed");
}

#[test]
fn nftables_ban_unban_expire() {
    if !require(
        "nftables_ban_unban_expire",
        true,
        &["unshare", "nsenter", "ip", "ss", "nft", "curl", "python3"],
    ) {
        return;
    }
    ban_unban_expire(BackendKind::Nftables);
}

#[test]
fn ipset_ban_unban_expire() {
    let tools = ["unshare", "nsenter", "ip", "ss", "ipset", "iptables", "ip6tables", "curl", "python3"];
    if !require("ipset_ban_unban_expire", true, &tools) {
        return;
    }
    ban_unban_expire(BackendKind::Ipset);
}

#[test]
fn iptables_ban_unban_expire() {
    let tools = [
        "unshare",
        "nsenter",
        "ip",
        "ss",
        "iptables",
        "ip6tables",
        "iptables-restore",
        "ip6tables-restore",
        "curl",
        "python3",
    ];
    if !require("iptables_ban_unban_expire", true, &tools) {
        return;
    }
    ban_unban_expire(BackendKind::Iptables);
}

/// What an operator or an older version may leave behind is repaired: a
/// deleted drop rule, a set created with other flags, networks.
#[test]
fn nftables_repairs_and_handles_networks() {
    if !require("nftables_repairs_and_handles_networks", true, &["unshare", "nsenter", "nft"]) {
        return;
    }
    let ns = Netns::new();
    let r = runner(&ns);
    let nft =
        |args: &[&str]| String::from_utf8_lossy(&ns.run_ok([&["nft"], args].concat()).stdout).into_owned();
    // An incompatible leftover: banned4 as an interval set.
    nft(&["add", "table", "inet", "banguard"]);
    nft(&["add", "set", "inet", "banguard", "banned4", "{ type ipv4_addr; flags interval; }"]);
    let t = now();
    let bans = vec![
        FirewallEntry::until(net("198.51.100.0/24"), t + 600),
        FirewallEntry::until(net("198.51.100.128/25"), t + 900), // nested: covered already
        FirewallEntry::until(net("198.51.100.7/32"), t + 900),   // a host inside it: kept
        FirewallEntry::permanent(net("2001:db8:1::/64")),
        FirewallEntry::until(net("::ffff:203.0.113.5/128"), t + 60), // mapped: as IPv4
    ];
    let first = BackendKind::Nftables.backend().sync(&SyncRequest::new(&bans, t), &r).unwrap();
    assert!(first.repaired);
    assert_eq!(first.added, 4, "{first:?}");
    let table = nft(&["list", "table", "inet", "banguard"]);
    for want in
        ["198.51.100.0/24 timeout", "198.51.100.7 timeout", "2001:db8:1::/64", "203.0.113.5 timeout 1m"]
    {
        assert!(table.contains(want), "missing {want}:\n{table}");
    }
    assert!(!table.contains("198.51.100.128"), "{table}");

    // Someone deletes our IPv6 network rule; reading back notices.
    let listing = nft(&["-a", "list", "chain", "inet", "banguard", "input"]);
    let handle = listing
        .lines()
        .find(|l| l.contains("@banned6_nets"))
        .and_then(|l| l.rsplit("# handle ").next())
        .expect("rule handle")
        .trim()
        .to_string();
    nft(&["delete", "rule", "inet", "banguard", "input", "handle", &handle]);
    let fixed = BackendKind::Nftables.backend().sync(&SyncRequest::new(&bans, now()), &r).unwrap();
    assert!(fixed.repaired && fixed.changed(), "{fixed:?}");
    assert_eq!((fixed.added, fixed.removed), (0, 0), "{fixed:?}");
    assert!(
        nft(&["list", "chain", "inet", "banguard", "input"])
            .contains("ip6 saddr @banned6_nets ct state new drop")
    );

    // The whole table gone (a reboot, `nft flush ruleset`) with a stale
    // `previous`: the cheap check notices and everything is pushed again.
    nft(&["delete", "table", "inet", "banguard"]);
    let again = BackendKind::Nftables
        .backend()
        .sync(&SyncRequest::new(&bans, now()).previous(Some(&fixed.applied)), &r)
        .unwrap();
    assert_eq!(again.added, 4, "{again:?}");
    assert!(nft(&["list", "set", "inet", "banguard", "banned4"]).contains("198.51.100.7"));
}

/// `previous` lies (an element was deleted by hand, another added): the
/// incremental transaction still applies, since deletes are add+delete.
#[test]
fn nftables_stale_previous_does_not_fail() {
    if !require("nftables_stale_previous_does_not_fail", true, &["unshare", "nsenter", "nft"]) {
        return;
    }
    let ns = Netns::new();
    let r = runner(&ns);
    let t = now();
    let bans = vec![
        FirewallEntry::until(net("192.0.2.1/32"), t + 600),
        FirewallEntry::until(net("192.0.2.0/28"), t + 600),
    ];
    let first = BackendKind::Nftables.backend().sync(&SyncRequest::new(&bans, t), &r).unwrap();
    ns.run_ok(["nft", "delete", "element", "inet", "banguard", "banned4", "{ 192.0.2.1 }"]);
    ns.run_ok(["nft", "delete", "element", "inet", "banguard", "banned4_nets", "{ 192.0.2.0/28 }"]);
    // Unban both: deleting elements that are already gone must not fail.
    let rep = BackendKind::Nftables
        .backend()
        .sync(&SyncRequest::new(&[], now()).previous(Some(&first.applied)), &r)
        .unwrap();
    assert_eq!(rep.removed, 2, "{rep:?}");
    let out =
        String::from_utf8_lossy(&ns.run_ok(["nft", "list", "table", "inet", "banguard"]).stdout).into_owned();
    assert!(!out.contains("192.0.2."), "{out}");
}

/// A host and a network banned again the moment their ban ran out (the
/// kernel may or may not have dropped them yet) end up with the new
/// timeout, not the old one.
#[test]
fn nftables_reban_right_after_expiry() {
    if !require("nftables_reban_right_after_expiry", true, &["unshare", "nsenter", "nft"]) {
        return;
    }
    let ns = Netns::new();
    let r = runner(&ns);
    let t = now();
    let short = vec![
        FirewallEntry::until(net("192.0.2.1/32"), t + 2),
        FirewallEntry::until(net("2001:db8:5::/64"), t + 2),
    ];
    let first = BackendKind::Nftables.backend().sync(&SyncRequest::new(&short, t), &r).unwrap();
    wait_for(Duration::from_secs(5), || (now() >= t + 2).then_some(())).expect("clock");
    let t2 = now();
    let long: Vec<FirewallEntry> = short.iter().map(|e| FirewallEntry::until(e.net, t2 + 600)).collect();
    let rep = BackendKind::Nftables
        .backend()
        .sync(&SyncRequest::new(&long, t2).previous(Some(&first.applied)), &r)
        .unwrap();
    assert_eq!((rep.added, rep.updated), (0, 2), "{rep:?}");
    std::thread::sleep(Duration::from_secs(2));
    let out =
        String::from_utf8_lossy(&ns.run_ok(["nft", "list", "table", "inet", "banguard"]).stdout).into_owned();
    assert!(out.contains("192.0.2.1 timeout 10m") && out.contains("2001:db8:5::/64 timeout 10m"), "{out}");
}

/// ipset pushes bans longer than its 24.8-day timeout ceiling without a
/// timeout, and an extended ban gets its new timeout in place.
#[test]
fn ipset_long_and_extended_bans() {
    if !require(
        "ipset_long_and_extended_bans",
        true,
        &["unshare", "nsenter", "ipset", "iptables", "ip6tables"],
    ) {
        return;
    }
    let ns = Netns::new();
    let r = runner(&ns);
    let t = now();
    let bans = vec![
        FirewallEntry::until(net("192.0.2.1/32"), t + 40 * 86_400),
        FirewallEntry::until(net("192.0.2.2/32"), t + 60),
    ];
    let first = BackendKind::Ipset.backend().sync(&SyncRequest::new(&bans, t), &r).unwrap();
    let save = |ns: &Netns| {
        String::from_utf8_lossy(&ns.run_ok(["ipset", "list", "-o", "save", "banguard4"]).stdout).into_owned()
    };
    let s = save(&ns);
    assert!(s.contains("add banguard4 192.0.2.1 timeout 0"), "{s}");
    let extended = vec![bans[0].clone(), FirewallEntry::until(net("192.0.2.2/32"), t + 7200)];
    let rep = BackendKind::Ipset
        .backend()
        .sync(&SyncRequest::new(&extended, t).previous(Some(&first.applied)), &r)
        .unwrap();
    assert_eq!((rep.added, rep.updated, rep.unchanged), (0, 1, 1), "{rep:?}");
    let s = save(&ns);
    let line = s.lines().find(|l| l.contains("192.0.2.2")).unwrap_or_default().to_string();
    let secs: i64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!(secs > 7000, "{line}");
    // Read back from the kernel, both count as unchanged.
    let rep = BackendKind::Ipset.backend().sync(&SyncRequest::new(&extended, now()), &r).unwrap();
    assert_eq!((rep.added, rep.removed, rep.updated, rep.unchanged), (0, 0, 0, 2), "{rep:?}");
}

/// A command that cannot run is an error naming it, not a panic or a
/// silent success.
#[test]
fn missing_tool_is_a_clear_error() {
    let r = SystemRunner::with_prefix(["env", "PATH=/nonexistent"]);
    let err = BackendKind::Nftables.backend().sync(&SyncRequest::new(&[], 0), &r).unwrap_err().to_string();
    assert!(err.contains("nft"), "{err}");
}

/// A plain closure is a `Runner` (for callers that log or sandbox commands).
#[test]
fn closures_are_runners() {
    let calls = std::cell::RefCell::new(Vec::new());
    let r = |p: &str, a: &[String], _: Option<&[u8]>| -> banguard::Result<std::process::Output> {
        calls.borrow_mut().push(format!("{p} {}", a.join(" ")));
        Command::new("true").output().map_err(|e| banguard::Error::Command {
            program: p.into(),
            args: a.to_vec(),
            status: None,
            stderr: e.to_string(),
        })
    };
    let rep = BackendKind::Iptables
        .backend()
        .sync(&SyncRequest::new(&[], 0).dry_run(true), &r as &dyn Runner)
        .unwrap();
    assert!(rep.dry_run);
    assert_eq!(calls.borrow()[0], "iptables -w -S INPUT");
}

/// Bans made the way the module makes them, with ipv4_prefix = 24 and the
/// default IPv6 /64: attackers 192.0.2.11-13 and 2001:db8:1:2::1-3, while
/// 192.0.2.10 and 2001:db8:1:2::10 are in ignoreip; and a `::2` attacker,
/// whose /64 holds ::1. Returns what the sync job would push.
fn aggregated_bans_around_ignored_hosts(dir: &std::path::Path) -> Vec<FirewallEntry> {
    use banguard::policy::{SystemClock, firewall_entries};
    use banguard::store::Access;
    use banguard::{Banguard, Config, Request};
    let config_path = dir.join("banguard.toml");
    ConfigFile::under(dir)
        .with(
            "maxretry = 3\nipv4_prefix = 24\n\
             ignoreip = [\"127.0.0.0/8\", \"::1\", \"192.0.2.10\", \"2001:db8:1:2::10\"]\n\
             [recidive]\nenabled = false\n[sync]\nscope = \"all\"",
        )
        .write(&config_path);
    let config = Config::load(&config_path).unwrap();
    let mut g =
        Banguard::open_with(config.clone(), Access::ReadWrite, std::sync::Arc::new(SystemClock)).unwrap();
    for rhost in
        ["192.0.2.11", "192.0.2.12", "192.0.2.13", "2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2::3"]
            .iter()
            .chain(&["::2", "::2", "::2"])
    {
        let req = Request { service: "sshd", rhost: Some(rhost), hint: None, user: Some("root") };
        g.record_failure(&req).unwrap();
    }
    let banned: Vec<String> = g.bans(None, false).unwrap().iter().map(|b| b.host.to_string()).collect();
    assert_eq!(banned.len(), 3, "{banned:?}");
    for want in ["192.0.2.0/24", "2001:db8:1:2::/64", "::/64"] {
        assert!(banned.iter().any(|b| b == want), "PAM bans {want}: {banned:?}");
    }
    let push = g.bans_to_push(banguard::config::SyncScope::All).unwrap();
    let entries = firewall_entries(&config, &push, &[]);
    let ten: std::net::IpAddr = "192.0.2.10".parse().unwrap();
    let loopback6: std::net::IpAddr = "::1".parse().unwrap();
    assert!(entries.iter().all(|e| !e.net.contains(&ten) && !e.net.contains(&loopback6)), "{entries:?}");
    entries
}

/// An aggregated ban never drops an address in ignoreip (or loopback), in
/// any kernel back-end: the ignored host inside a banned /24 and /64 still
/// connects, its neighbours do not.
fn ignored_hosts_stay_reachable(kind: BackendKind) {
    let lab = Lab::new();
    for a in ["192.0.2.10/32", "192.0.2.11/32", "2001:db8:1:2::10/128", "2001:db8:1:2::11/128"] {
        lab.ns.add_lo_addr(a);
    }
    let dir = tempfile::tempdir().unwrap();
    let entries = aggregated_bans_around_ignored_hosts(dir.path());
    lab.sync(kind, &SyncRequest::new(&entries, now()));
    lab.assert_blocked(
        &["192.0.2.11", "2001:db8:1:2::11"],
        &["192.0.2.10", "2001:db8:1:2::10", "::1", "127.0.0.1"],
    );
}

#[test]
fn nftables_never_drops_ignored_hosts_inside_a_ban() {
    if !require(
        "nftables_never_drops_ignored_hosts_inside_a_ban",
        true,
        &["unshare", "nsenter", "nft", "curl", "python3"],
    ) {
        return;
    }
    ignored_hosts_stay_reachable(BackendKind::Nftables);
}

#[test]
fn ipset_never_drops_ignored_hosts_inside_a_ban() {
    if !require(
        "ipset_never_drops_ignored_hosts_inside_a_ban",
        true,
        &["unshare", "nsenter", "ipset", "iptables", "ip6tables", "curl", "python3"],
    ) {
        return;
    }
    ignored_hosts_stay_reachable(BackendKind::Ipset);
}

#[test]
fn iptables_never_drops_ignored_hosts_inside_a_ban() {
    if !require(
        "iptables_never_drops_ignored_hosts_inside_a_ban",
        true,
        &["unshare", "nsenter", "iptables", "ip6tables", "curl", "python3"],
    ) {
        return;
    }
    ignored_hosts_stay_reachable(BackendKind::Iptables);
}

/// What an earlier version of banguard left in the kernel: a drop rule for
/// every packet of a banned source.
fn install_old_rules(lab: &Lab, kind: BackendKind) {
    match kind {
        BackendKind::Nftables => {
            let script = "table inet banguard {\n\
                set banned4 { type ipv4_addr; flags timeout; }\n\
                chain input { type filter hook input priority filter - 10; policy accept; }\n}\n\
                add rule inet banguard input ip saddr @banned4 drop\n";
            let out = lab
                .ns
                .command(["nft", "-f", "-"])
                .stdin(Stdio::piped())
                .spawn()
                .and_then(|mut c| {
                    use std::io::Write;
                    c.stdin.take().expect("stdin").write_all(script.as_bytes())?;
                    c.wait_with_output()
                })
                .expect("nft -f -");
            assert!(out.status.success(), "nft: {}", String::from_utf8_lossy(&out.stderr));
        }
        BackendKind::Ipset => {
            lab.sh(&[
                "ipset",
                "create",
                "banguard4",
                "hash:net",
                "family",
                "inet",
                "timeout",
                "0",
                "maxelem",
                "1048576",
            ]);
            lab.sh(&[
                "iptables",
                "-w",
                "-I",
                "INPUT",
                "1",
                "-m",
                "set",
                "--match-set",
                "banguard4",
                "src",
                "-j",
                "DROP",
            ]);
        }
        _ => {
            lab.sh(&["iptables", "-w", "-N", "BANGUARD"]);
            lab.sh(&["iptables", "-w", "-I", "INPUT", "1", "-j", "BANGUARD"]);
        }
    }
}

/// The kernel stops new connections from a banned source, not the replies
/// to connections this server opened: a fleet decision for this server's
/// LAPI, DNS resolver or package mirror cannot cut it off them. An earlier
/// version's every-packet rule is replaced.
fn replies_to_own_connections_pass(kind: BackendKind) {
    let mut lab = Lab::new();
    // The banned hosts' own servers (what this server talks to).
    for (bind, port) in [("127.0.0.2", "8081"), ("2001:db8::2", "8082")] {
        let mut server = lab.ns.command(["python3", "-m", "http.server", port, "--bind", bind]);
        server.stdout(Stdio::null()).stderr(Stdio::null());
        lab.ns.spawn(server);
    }
    // From this server's own address (a banned host's address is on lo
    // too, and the kernel would pick it as the source).
    let outbound = |url: &str| {
        let from = if url.contains('[') { "::1" } else { "127.0.0.1" };
        lab.ns
            .command([
                "curl",
                "-sS",
                "-g",
                "-o",
                "/dev/null",
                "--interface",
                from,
                "--connect-timeout",
                "1",
                "--max-time",
                "3",
                url,
            ])
            .stdin(Stdio::null())
            .output()
            .expect("curl")
            .status
            .success()
    };
    let v4 = "http://127.0.0.2:8081/";
    let v6 = "http://[2001:db8::2]:8082/";
    assert!(wait_for(Duration::from_secs(10), || (outbound(v4) && outbound(v6)).then_some(())).is_some());
    install_old_rules(&lab, kind);
    let t = now();
    let bans = vec![
        FirewallEntry::until(net("127.0.0.2/32"), t + 600),
        FirewallEntry::until(net("2001:db8::2/128"), t + 600),
    ];
    let first = lab.sync(kind, &SyncRequest::new(&bans, t));
    assert!(first.repaired, "{first:?}");
    lab.assert_blocked(&["127.0.0.2", "2001:db8::2"], &["127.0.0.3", "2001:db8::3"]);
    assert!(outbound(v4), "this server's own connection to a banned IPv4 host gets no reply");
    assert!(outbound(v6), "this server's own connection to a banned IPv6 host gets no reply");
    let listing = match kind {
        BackendKind::Nftables => lab.sh(&["nft", "list", "table", "inet", "banguard"]),
        _ => lab.sh(&["iptables", "-w", "-S", "INPUT"]),
    };
    match kind {
        BackendKind::Nftables => assert!(
            listing.lines().filter(|l| l.contains("saddr @")).all(|l| l.contains("ct state new")),
            "{listing}"
        ),
        BackendKind::Ipset => assert!(!listing.contains("src -j DROP"), "the old rule is left:\n{listing}"),
        _ => assert!(!listing.contains("-A INPUT -j BANGUARD"), "the old jump is left:\n{listing}"),
    }
}

#[test]
fn nftables_lets_replies_to_own_connections_through() {
    if !require(
        "nftables_lets_replies_to_own_connections_through",
        true,
        &["unshare", "nsenter", "nft", "curl", "python3"],
    ) {
        return;
    }
    replies_to_own_connections_pass(BackendKind::Nftables);
}

#[test]
fn ipset_lets_replies_to_own_connections_through() {
    let tools = ["unshare", "nsenter", "ipset", "iptables", "ip6tables", "curl", "python3"];
    if !require("ipset_lets_replies_to_own_connections_through", true, &tools) {
        return;
    }
    replies_to_own_connections_pass(BackendKind::Ipset);
}

#[test]
fn iptables_lets_replies_to_own_connections_through() {
    let tools = [
        "unshare",
        "nsenter",
        "iptables",
        "ip6tables",
        "iptables-restore",
        "ip6tables-restore",
        "curl",
        "python3",
    ];
    if !require("iptables_lets_replies_to_own_connections_through", true, &tools) {
        return;
    }
    replies_to_own_connections_pass(BackendKind::Iptables);
}
