//! Firewall sync benchmark (BENCHMARKS-sync.md): the three kernel
//! back-ends with 100,000 banned addresses, every command inside a
//! throwaway network namespace (this machine's own firewall is never
//! touched). Run it with bench/sync/run.sh (root; nft, ipset, iptables),
//! which explains the two passes; `BANGUARD_BENCH_N` and
//! `BANGUARD_BENCH_BACKENDS` choose the size and the back-ends.

use banguard::sync::{BackendKind, FirewallEntry, IpNet, Ipv4Net, SyncReport, SyncRequest, SystemRunner};
use banguard_e2e::{Netns, require};
use std::time::{Duration, Instant};

fn main() {
    banguard_e2e::run_benches(&[("sync_100k", sync_100k)]);
}

fn net(s: &str) -> IpNet {
    s.parse().expect("test network")
}

/// 100,000 distinct addresses (and a few networks), 30 minutes to live.
fn bench_entries(n: usize, t: i64) -> Vec<FirewallEntry> {
    (0..n)
        .map(|i| {
            let a = 0x0a00_0000u32 + (i as u32) * 3;
            let addr = std::net::Ipv4Addr::from(a);
            let prefix = if i % 1000 == 999 { 28 } else { 32 };
            FirewallEntry::until(
                Ipv4Net::new(addr, prefix).expect("prefix").trunc().into(),
                t + 1800 + (i as i64 % 600),
            )
        })
        .collect()
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let v = f();
    (v, start.elapsed())
}

/// The benchmark's runner: through nsenter into a fresh namespace, or
/// (BANGUARD_BENCH_DIRECT=1) directly, which is only allowed when this
/// process sits in another network namespace than the one named by
/// BANGUARD_BENCH_HOST_NETNS (run.sh reads it before `unshare --net`).
fn bench_runner(ns: &Netns) -> (SystemRunner, &'static str) {
    if std::env::var("BANGUARD_BENCH_DIRECT").is_ok_and(|v| v == "1") {
        let mine = std::fs::read_link("/proc/self/ns/net").expect("read /proc/self/ns/net");
        let host = std::env::var("BANGUARD_BENCH_HOST_NETNS").unwrap_or_default();
        assert!(
            !host.is_empty() && mine.to_string_lossy() != host,
            "BANGUARD_BENCH_DIRECT=1 needs BANGUARD_BENCH_HOST_NETNS and a private network namespace (`unshare --net`)"
        );
        (SystemRunner::new(), "direct (unshare --net around the benchmark)")
    } else {
        (banguard_e2e::ns_runner(ns), "via nsenter into a throwaway namespace")
    }
}

fn sync_100k() {
    let tools = ["unshare", "nsenter", "nft", "ipset", "iptables", "ip6tables", "iptables-restore"];
    assert!(require("sync_100k", true, &tools), "missing tools");
    let n: usize = std::env::var("BANGUARD_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let kinds: Vec<BackendKind> = std::env::var("BANGUARD_BENCH_BACKENDS")
        .unwrap_or_else(|_| "nftables,ipset,iptables".into())
        .split(',')
        .map(|k| k.parse().expect("back-end name"))
        .collect();
    println!("| back-end | case | entries | time | added | removed | updated | unchanged |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for kind in kinds {
        // A fresh namespace per back-end: an empty firewall to start with.
        let ns = Netns::new();
        let (r, how) = bench_runner(&ns);
        let b = kind.backend();
        let t = banguard_e2e::unix_now();
        let all = bench_entries(n, t);
        let row = |case: &str, rep: &SyncReport, d: Duration| {
            println!(
                "| {kind} | {case} | {n} | {:.0} ms | {} | {} | {} | {} |",
                d.as_secs_f64() * 1000.0,
                rep.added,
                rep.removed,
                rep.updated,
                rep.unchanged
            );
        };
        let (first, d) = timed(|| b.sync(&SyncRequest::new(&all, t), &r).expect("initial sync"));
        row("into empty", &first, d);
        let mut fast = Vec::new();
        let mut last = first.applied.clone();
        for _ in 0..5 {
            let (rep, d) = timed(|| {
                b.sync(&SyncRequest::new(&all, t).previous(Some(&last)), &r).expect("no-change sync")
            });
            assert!(!rep.changed(), "{kind}: no-change sync wrote something");
            fast.push(d);
            last = rep.applied;
        }
        fast.sort();
        let (rep, _) =
            timed(|| b.sync(&SyncRequest::new(&all, t).previous(Some(&last)), &r).expect("no-change sync"));
        row("no change, with previous (median of 5)", &rep, fast[2]);
        let (rep, d) = timed(|| b.sync(&SyncRequest::new(&all, t), &r).expect("read-back sync"));
        row("no change, read back from kernel", &rep, d);
        // 100 unbans and 100 new bans.
        let mut changed: Vec<FirewallEntry> = all[100..].to_vec();
        changed.extend(
            (0..100).map(|i| {
                FirewallEntry::until(net(&format!("198.51.{}.{}/32", i / 200, i % 200 + 1)), t + 900)
            }),
        );
        let (rep, d) = timed(|| {
            b.sync(&SyncRequest::new(&changed, t).previous(Some(&last)), &r).expect("incremental sync")
        });
        row("100 added + 100 removed, with previous", &rep, d);
        println!("<!-- {kind}: commands run {how} -->");
    }
}
