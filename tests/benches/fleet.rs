//! The fleet's figures (BENCHMARKS.md §5), against a real CrowdSec LAPI
//! (Debian's crowdsec, LAPI only) in a throwaway network namespace:
//!
//! * `fleet_sync_idle`: a sync with a fleet configured and nothing new;
//! * `fleet_import_100k`: 100,000 decisions taken in one sync, and the
//!   first attempt of a fresh process with them present;
//! * `fleet_ban_to_refusal`: from a ban on server A (its sync posting it,
//!   as the path unit runs it) to server B refusing the host, with B
//!   syncing every 10 s (banguard-fleet.timer).
//!
//! `cargo bench -p banguard-e2e --bench fleet [-- NAME...]` (root).

use banguard::policy::SystemClock;
use banguard::store::Access;
use banguard::{Banguard, Config, Request, Verdict};
use banguard_e2e::crowdsec::Lapi;
use banguard_e2e::fixture::ConfigFile;
use banguard_e2e::{Netns, artifacts, require};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const PORT: u16 = 8080;

fn main() {
    banguard_e2e::run_benches(&[
        ("fleet_sync_idle", fleet_sync_idle),
        ("fleet_import_100k", fleet_import_100k),
        ("fleet_ban_to_refusal", fleet_ban_to_refusal),
        ("fleet_scale_100k", || fleet_scale(100_000)),
        ("fleet_scale_1m", || fleet_scale(1_000_000)),
    ]);
}

/// N decisions taken in one sync, then all N lifted in one sync (a full
/// pull that no longer lists them), from a scripted LAPI that streams
/// them as it generates them, each sync pushing them to nftables in the
/// namespace and taking them out again; while the import runs, attempts of fresh
/// hosts (open the store, one attempt, as a new sshd connection does)
/// are timed. Each sync runs under `/usr/bin/time` for its peak RSS.
/// `BANGUARD_TEST_ARTIFACTS` picks the banguardctl to measure (a "before"
/// build, say); the attempts are this build's.
fn fleet_scale(n: u64) {
    if !require("fleet scale bench", true, &["curl", "nsenter", "unshare", "pkill", "time", "nft"]) {
        return;
    }
    let ns = Netns::new();
    let empty = serde_json::json!([
        {"method": "GET", "path": "/v1/decisions/stream", "body": r#"{"deleted":null,"new":null}"#},
        {"path": "/health", "body": "{}"},
    ]);
    let lapi = banguard_e2e::crowdsec::ScriptedLapi::start(
        &ns,
        std::path::Path::new(env!("CARGO_BIN_EXE_bg-lapi")),
        8095,
        &empty,
    );
    let dir = tempfile::Builder::new().prefix("bg-fleet-scale.").tempdir().unwrap();
    let d = dir.path().display().to_string();
    let key = dir.path().join("bouncer.key");
    std::fs::write(&key, "k\n").unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let config = dir.path().join("banguard.toml");
    ConfigFile::under(dir.path())
        .with(&format!(
            "[recidive]\nenabled = false\n[sync]\nbackends = []\nlock_file = \"{d}/run/sync.lock\"\n\
             [store]\nruntime = \"{d}/run/runtime.db\"\n\
             [fleet]\nprovider = \"crowdsec\"\n[fleet.crowdsec]\nurl = \"http://127.0.0.1:8095/\"\n\
             export = false\nbouncer_key_file = \"{}\"\nmax_decisions = {}\ntimeout = \"900s\"\nresync = \"1s\"\n",
            key.display(),
            n + 10
        ))
        .write(&config);
    let sync = || {
        let ctl = artifacts().banguardctl.display().to_string();
        let cfg = config.display().to_string();
        let t = Instant::now();
        let out = ns.run([
            "/usr/bin/time",
            "-f",
            "maxrss %M",
            ctl.as_str(),
            "--config",
            cfg.as_str(),
            "sync",
            "--quiet",
        ]);
        let took = t.elapsed();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "sync: {err}");
        let kib: u64 = err
            .lines()
            .filter_map(|l| l.strip_prefix("maxrss "))
            .find_map(|v| v.trim().parse().ok())
            .unwrap_or(0);
        (took, kib)
    };
    sync();
    std::thread::sleep(Duration::from_millis(1100));
    let generated = serde_json::json!([
        {"method": "GET", "path": "/v1/decisions/stream", "generate": {"list": "new", "count": n, "duration": "4h"}},
        {"path": "/health", "body": "{}"},
    ]);
    lapi.script(&generated);
    // Attempts of fresh hosts while a sync runs: (sync time, its peak
    // RSS, the attempts' times in ms).
    let timed_sync = |first: u32| {
        let stop = Arc::new(AtomicBool::new(false));
        let attempts = {
            let (stop, config) = (stop.clone(), Config::load(&config).unwrap());
            std::thread::spawn(move || {
                let mut times = Vec::new();
                let mut refused = 0u32;
                let mut i = first;
                while !stop.load(Ordering::Relaxed) {
                    let host = format!("172.{}.{}.{}", 16 + i / 65_536 % 16, (i / 256) % 256, i % 256);
                    let t = Instant::now();
                    let mut g = Banguard::open(config.clone()).unwrap();
                    let v = g.attempt(
                        &Request { service: "sshd", rhost: Some(&host), hint: None, user: Some("u") },
                        None,
                    );
                    // An attempt that could not wait its turn (an
                    // overload) counts with the time it waited.
                    times.push(t.elapsed().as_secs_f64() * 1000.0);
                    if let Err(e) = v {
                        assert!(e.is_overload(), "{e}");
                        refused += 1;
                    }
                    i += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
                (times, refused)
            })
        };
        let (took, kib) = sync();
        stop.store(true, Ordering::Relaxed);
        let (times, refused) = attempts.join().unwrap();
        (took, kib, times, refused)
    };
    let (import, import_kib, mut import_times, import_refused) = timed_sync(0);
    // Read from the store directly: this build's library would migrate an
    // older build's store, and an older build's `status` is slow with a
    // million bans.
    let db = dir.path().join("db/banguard.db");
    let imported = || {
        let conn = banguard_e2e::fixture::sql(&db);
        conn.query_row(
            "SELECT count(*) FROM bans WHERE origin = 'crowdsec' AND lifted IS NULL AND (expires IS NULL OR expires > unixepoch())",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap_or(0)
    };
    let held = imported();
    std::thread::sleep(Duration::from_millis(1100));
    lapi.script(&empty);
    let (lift, lift_kib, mut lift_times, lift_refused) = timed_sync(100_000);
    let left = imported();
    let row = |what: String, took: Duration, kib: u64, times: &mut Vec<f64>, refused: u32| {
        println!(
            "| {what} | {:.1} s | peak RSS {} MiB | attempts during it: {}, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms, {refused} refused unchecked (no turn in 10 s) |",
            took.as_secs_f64(),
            kib / 1024,
            times.len(),
            percentile(&mut times.clone(), 0.5),
            percentile(&mut times.clone(), 0.99),
            percentile(times, 1.0)
        );
    };
    row(
        format!("{n} decisions taken in one sync ({held} held)"),
        import,
        import_kib,
        &mut import_times,
        import_refused,
    );
    row(format!("{n} bans lifted in one sync ({left} left)"), lift, lift_kib, &mut lift_times, lift_refused);
}

struct Server {
    dir: tempfile::TempDir,
}

impl Server {
    fn new(ns: &Netns, lapi: &Lapi, name: &str) -> Server {
        let dir = tempfile::Builder::new().prefix(&format!("bg-fleet-bench-{name}.")).tempdir().unwrap();
        let d = dir.path().display().to_string();
        let machine = lapi.machine(ns, &format!("bench-{name}"), dir.path());
        let bouncer = lapi.bouncer(ns, &format!("bench-{name}"), dir.path());
        ConfigFile::under(dir.path())
            .with(&format!(
                "[recidive]\nenabled = false\n[sync]\nbackends = [\"nftables\"]\nlock_file = \"{d}/run/sync.lock\"\n\
                 [store]\nruntime = \"{d}/run/runtime.db\"\n\
                 [fleet]\nprovider = \"crowdsec\"\n[fleet.crowdsec]\nurl = \"http://127.0.0.1:{PORT}/\"\n\
                 machine_credentials = \"{}\"\nbouncer_key_file = \"{}\"\nmax_decisions = 200000\ntimeout = \"60s\"\n",
                machine.display(),
                bouncer.display()
            ))
            .write(&dir.path().join("banguard.toml"));
        Server { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("banguard.toml")
    }

    fn ctl(&self, ns: &Netns, args: &[&str]) -> Duration {
        let ctl = artifacts().banguardctl.display().to_string();
        let cfg = self.config().display().to_string();
        let mut argv = vec![ctl.as_str(), "--config", cfg.as_str()];
        argv.extend_from_slice(args);
        let t = Instant::now();
        let out = ns.run(&argv);
        let d = t.elapsed();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        d
    }

    fn refuses(&self, host: &str) -> bool {
        let config = Config::load(&self.config()).unwrap();
        let mut g = Banguard::open_with(config, Access::ReadOnly, Arc::new(SystemClock)).unwrap();
        matches!(
            g.peek(&Request { service: "sshd", rhost: Some(host), hint: None, user: None }),
            Ok(Verdict::Refused { .. })
        )
    }
}

fn setup() -> Option<(Netns, Lapi)> {
    if !require("fleet bench", true, &["crowdsec", "cscli", "curl", "nsenter", "unshare", "pkill"]) {
        return None;
    }
    let ns = Netns::new();
    let mut lapi = Lapi::new(&ns, PORT, "");
    lapi.start(&ns);
    Some((ns, lapi))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
}

fn fleet_sync_idle() {
    let Some((ns, lapi)) = setup() else { return };
    let b = Server::new(&ns, &lapi, "b");
    lapi.cscli_ok(&ns, &["decisions", "add", "--ip", "198.51.100.7", "--duration", "1h"]);
    b.ctl(&ns, &["sync", "--quiet"]);
    let mut times: Vec<f64> = (0..20).map(|_| ms(b.ctl(&ns, &["sync", "--quiet"]))).collect();
    let nsenter: Vec<f64> = (0..20)
        .map(|_| {
            let t = Instant::now();
            ns.run(["true"]);
            ms(t.elapsed())
        })
        .collect();
    let median = percentile(&mut times.clone(), 0.5);
    println!(
        "| sync with a fleet, nothing new (20 runs; the process through nsenter) | median {median:.1} ms | worst {:.1} ms | nsenter alone {:.1} ms |",
        percentile(&mut times, 1.0),
        percentile(&mut nsenter.clone(), 0.5)
    );
}

fn fleet_import_100k() {
    let Some((ns, lapi)) = setup() else { return };
    let b = Server::new(&ns, &lapi, "b");
    let list = lapi.dir().join("list.csv");
    let lines: Vec<String> = (0..100_000u32)
        .map(|i| format!("4h,Ip,10.{}.{}.{}", 64 + i / 65_536, (i / 256) % 256, i % 256))
        .collect();
    std::fs::write(&list, format!("duration,scope,value\n{}\n", lines.join("\n"))).unwrap();
    let t = Instant::now();
    lapi.cscli_ok(&ns, &["decisions", "import", "-i", &list.display().to_string()]);
    let cscli = t.elapsed();
    let import = b.ctl(&ns, &["sync", "--quiet"]);
    let config = Config::load(&b.config()).unwrap();
    let g = Banguard::open(config.clone()).unwrap();
    let held = g.fleet_status().unwrap().imported_active;
    drop(g);
    assert!(held >= 100_000, "{held} taken");
    // The first attempt of a fresh process: open the store, one attempt.
    let mut times = Vec::new();
    for i in 0..1000u32 {
        let host = format!("172.20.{}.{}", i / 256, i % 256);
        let t = Instant::now();
        let mut g = Banguard::open(config.clone()).unwrap();
        let v = g
            .attempt(&Request { service: "sshd", rhost: Some(&host), hint: None, user: Some("u") }, None)
            .unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e6);
        assert!(matches!(v, Verdict::Allowed { .. }));
    }
    let refused = {
        let t = Instant::now();
        let mut g = Banguard::open(config).unwrap();
        let v = g
            .attempt(&Request { service: "sshd", rhost: Some("10.64.1.1"), hint: None, user: None }, None)
            .unwrap();
        assert!(matches!(v, Verdict::Refused { .. }));
        t.elapsed().as_secs_f64() * 1e6
    };
    println!(
        "| 100,000 decisions (cscli import {:.1} s) taken in one sync | {:.2} s | {held} bans held |",
        cscli.as_secs_f64(),
        import.as_secs_f64()
    );
    println!(
        "| open + attempt with them present (1000 fresh hosts) | median {:.0} µs | p99 {:.0} µs | a host of the list refused in {refused:.0} µs |",
        percentile(&mut times.clone(), 0.5),
        percentile(&mut times, 0.99)
    );
}

fn fleet_ban_to_refusal() {
    let Some((ns, lapi)) = setup() else { return };
    let a = Server::new(&ns, &lapi, "a");
    let b = Arc::new(Server::new(&ns, &lapi, "b"));
    b.ctl(&ns, &["sync", "--quiet"]);
    // B's timer: a sync every 10 s.
    let stop = Arc::new(AtomicBool::new(false));
    let ns = Arc::new(ns);
    let poller = {
        let (b, stop, ns) = (b.clone(), stop.clone(), ns.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                b.ctl(&ns, &["sync", "--quiet"]);
                std::thread::sleep(Duration::from_secs(10).saturating_sub(started.elapsed()));
            }
        })
    };
    let mut lat = Vec::new();
    for i in 0..20u32 {
        // Bans at every phase of B's 10 s period.
        std::thread::sleep(Duration::from_millis(1300 + 500 * u64::from(i % 7)));
        let host = format!("203.0.113.{}", 10 + i);
        let t = Instant::now();
        a.ctl(&ns, &["ban", &host, "--no-sync"]);
        a.ctl(&ns, &["sync", "--quiet"]);
        while !b.refuses(&host) {
            assert!(t.elapsed() < Duration::from_secs(60), "B never refused {host}");
            std::thread::sleep(Duration::from_millis(20));
        }
        lat.push(t.elapsed().as_secs_f64());
    }
    stop.store(true, Ordering::Relaxed);
    let _ = poller.join();
    println!(
        "| a ban on A to B refusing the host, B syncing every 10 s (20 bans) | median {:.1} s | worst {:.1} s |",
        percentile(&mut lat.clone(), 0.5),
        percentile(&mut lat, 1.0)
    );
}
