//! Benchmark of the central operation as a fresh process does it (what
//! every sshd connection pays): load the config, open the store, one
//! `attempt` (ban check + count + record), close, on a store that already
//! holds 1,000,000 failure rows and 100,000 bans.
//!
//! Run: `cargo bench -p banguard --bench attempt` (BANGUARD_BENCH_ITERS to
//! change the sample count, BANGUARD_BENCH_SYNC=off|normal for the store's
//! `synchronous` setting, TMPDIR for where the store lives,
//! BANGUARD_BENCH_RUNTIME_DIR for the runtime state: default /dev/shm, the
//! tmpfs that /run is on a systemd machine). Prints median / p90 / p99 /
//! max in µs and the file sizes; then a banned host's refusals with and
//! without the counting of `escalate_after`. Results are recorded in
//! BENCHMARKS.md.
//!
//! The account side is on, learning over, with BANGUARD_BENCH_ACCOUNTS
//! (100,000) accounts tracked, some locked and some with a familiar
//! network; each attempt names one of them (1 in 10 a new name).

use banguard::policy::SystemClock;
use banguard::store::Access;
use banguard::{Banguard, Config, Request};
use rusqlite::params;
use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

const FAILURES: u32 = 1_000_000;
const BANS: u32 = 100_000;

fn accounts() -> u32 {
    std::env::var("BANGUARD_BENCH_ACCOUNTS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000)
}

fn main() {
    let iters: usize =
        std::env::var("BANGUARD_BENCH_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime_dir = tempfile::tempdir_in(
        std::env::var("BANGUARD_BENCH_RUNTIME_DIR").unwrap_or_else(|_| "/dev/shm".into()),
    )
    .expect("runtime tempdir");
    let db = dir.path().join("banguard.db");
    let runtime = runtime_dir.path().join("runtime.db");
    let config_path = dir.path().join("banguard.toml");
    std::fs::write(
        &config_path,
        format!(
            "[default]\nmaxretry = 5\nfindtime = \"1h\"\nbantime = \"1d\"\ndatabase = \"{}\"\n[services.sshd]\nmaxretry = 3\n[store]\nruntime = \"{}\"\nsynchronous = \"{}\"\n[accounts]\nlearning = 0\nmax_tracked = 1000000\n",
            db.display(),
            runtime.display(),
            std::env::var("BANGUARD_BENCH_SYNC").unwrap_or_else(|_| "normal".into())
        ),
    )
    .expect("write config");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64;

    let t = Instant::now();
    let rebuild = populate(&config_path, &runtime, now);
    let size = |p: &Path| {
        let wal = p.with_file_name(format!("{}-wal", p.file_name().unwrap().to_string_lossy()));
        std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
            + std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
    };
    eprintln!(
        "populated {FAILURES} failures from {FAILURES} distinct addresses + {BANS} bans in {:.1} s; \
         store {:.1} MiB, runtime state {:.1} MiB; runtime state rebuilt from the store's {BANS} bans in {} ms",
        t.elapsed().as_secs_f64(),
        size(&db) as f64 / 1048576.0,
        size(&runtime) as f64 / 1048576.0,
        rebuild.as_millis()
    );

    let mut samples = Vec::with_capacity(iters);
    let mut stages: [Vec<f64>; 4] = Default::default();
    for i in 0..iters {
        // Mix: 1 in 10 from a banned host, the rest new or repeating hosts.
        let ip = if i % 10 == 0 {
            format!("172.16.{}.{}", (i / 10) % 256, (i / 2560) % 256)
        } else {
            format!("192.168.{}.{}", (i / 3) % 256, (i / 768) % 256)
        };
        let start = Instant::now();
        let config = Config::load(&config_path).expect("config");
        let t1 = Instant::now();
        let mut g = Banguard::open_with(config, Access::ReadWrite, Arc::new(SystemClock)).expect("open");
        let t2 = Instant::now();
        let user = if i % 10 == 5 {
            format!("new{i}")
        } else {
            format!("user{}", i * 7919 % accounts().max(1) as usize)
        };
        let req = Request { service: "sshd", rhost: Some(&ip), hint: None, user: Some(&user) };
        let verdict = g.attempt(&req, None).expect("attempt");
        let t3 = Instant::now();
        drop(g);
        let end = Instant::now();
        samples.push((end - start).as_nanos() as f64 / 1000.0);
        for (k, d) in [t1 - start, t2 - t1, t3 - t2, end - t3].into_iter().enumerate() {
            stages[k].push(d.as_nanos() as f64 / 1000.0);
        }
        std::hint::black_box(verdict);
    }
    for (name, mut v) in ["config", "open", "attempt", "close"].into_iter().zip(stages) {
        v.sort_by(f64::total_cmp);
        eprintln!("  {name}: median {:.0} µs, p99 {:.0} µs", v[v.len() / 2], v[(v.len() - 1) * 99 / 100]);
    }
    report("attempt (load config + open + check/record + close)", samples);

    // The attempt that makes a ban (one in maxretry + 1 of a host's at most):
    // it also writes the ban to the store, whose WAL the closing process
    // checkpoints and syncs. Each sample's host has maxretry attempts already.
    let mut bans = Vec::new();
    for i in 0..(iters / 10).max(10) {
        let ip = format!("192.0.{}.{}", 2 + i / 256, i % 256);
        let req = Request { service: "sshd", rhost: Some(&ip), hint: None, user: Some("root") };
        {
            let config = Config::load(&config_path).expect("config");
            let mut g = Banguard::open_with(config, Access::ReadWrite, Arc::new(SystemClock)).expect("open");
            for _ in 0..3 {
                g.attempt(&req, None).expect("attempt");
            }
        }
        let start = Instant::now();
        let config = Config::load(&config_path).expect("config");
        let mut g = Banguard::open_with(config, Access::ReadWrite, Arc::new(SystemClock)).expect("open");
        let verdict = g.attempt(&req, None).expect("attempt");
        drop(g);
        bans.push(start.elapsed().as_nanos() as f64 / 1000.0);
        assert!(matches!(verdict, banguard::Verdict::Refused { new: true, .. }), "{verdict:?}");
    }
    report("attempt that makes a ban (+ the ban written to the store)", bans);

    refusals(&config_path, (iters / 20).max(20));
}

/// A refusal of a banned host, fresh process style, under the default
/// `escalate_after = 5` (each of the first 5 refusals counted in the runtime
/// state, the 5th marks the ban for the kernel in the store) and under
/// `escalate_after = 0` (nothing counted: the refusal as it was before),
/// interleaved host by host so both see the same machine.
fn refusals(config_path: &Path, hosts: usize) {
    let text = std::fs::read_to_string(config_path).expect("read config");
    let with_escalation = |name: &str, n: u32| {
        let path = config_path.with_file_name(name);
        std::fs::write(&path, format!("{text}[sync]\nescalate_after = {n}\n")).expect("write config");
        path
    };
    // 5, not the default 2: four counted refusals to time, not one.
    let counting = with_escalation("counting.toml", 5);
    let uncounted = with_escalation("uncounted.toml", 0);
    let refuse = |config: &Path, ip: &str| -> (f64, banguard::Verdict) {
        let req = Request { service: "sshd", rhost: Some(ip), hint: None, user: Some("root") };
        let start = Instant::now();
        let config = Config::load(config).expect("config");
        let mut g = Banguard::open_with(config, Access::ReadWrite, Arc::new(SystemClock)).expect("open");
        let verdict = g.attempt(&req, None).expect("attempt");
        drop(g);
        (start.elapsed().as_nanos() as f64 / 1000.0, verdict)
    };
    let ips: Vec<(String, String)> = (0..hosts)
        .map(|i| {
            (format!("198.51.{}.{}", 100 + i / 256, i % 256), format!("203.0.{}.{}", 113 + i / 256, i % 256))
        })
        .collect();
    for (a, b) in &ips {
        for (config, ip) in [(counting.as_path(), a), (uncounted.as_path(), b)] {
            for _ in 0..4 {
                refuse(config, ip);
            }
        }
    }
    // Refusals 1..=6 of each host: [counted 1-4, the 5th (escalates), 6th].
    let (mut counted, mut escalating, mut after, mut before) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for n in 1..=6 {
        for (a, b) in &ips {
            let (t, verdict) = refuse(&counting, a);
            assert!(verdict.is_refused(), "{verdict:?}");
            match n {
                1..=4 => counted.push(t),
                5 => {
                    assert!(
                        matches!(verdict, banguard::Verdict::Refused { escalated: true, .. }),
                        "{verdict:?}"
                    );
                    escalating.push(t)
                }
                _ => after.push(t),
            }
            let (t, verdict) = refuse(&uncounted, b);
            assert!(matches!(verdict, banguard::Verdict::Refused { escalated: false, .. }), "{verdict:?}");
            before.push(t);
        }
    }
    report("refusal of a banned host, escalate_after = 0 (nothing counted, as before)", before);
    report("refusal of a banned host, escalate_after = 5: refusals 1-4 (counted)", counted);
    report(
        "refusal of a banned host, escalate_after = 5: the 5th (marks the ban for the kernel)",
        escalating,
    );
    report("refusal of a banned host, escalate_after = 5: after the 5th (nothing counted)", after);
}

fn report(what: &str, mut samples: Vec<f64>) {
    samples.sort_by(f64::total_cmp);
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{what}, {} runs: median {:.0} µs, p90 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        samples.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        samples[samples.len() - 1]
    );
}

/// Bulk-loads both files through the real schema (rows shaped exactly as
/// the engine writes them): bans into the store, then the runtime state is
/// removed and rebuilt from it (as after a reboot; the time it took is
/// returned), then the failures go into the runtime state.
fn populate(config_path: &Path, runtime: &Path, now: i64) -> std::time::Duration {
    let config = Config::load(config_path).expect("config");
    let g = Banguard::open(config.clone()).expect("open");
    let durable = rusqlite::Connection::open(g.store().path()).expect("store");
    durable.execute_batch("BEGIN").expect("begin");
    {
        let mut ban = durable
            .prepare(
                "INSERT INTO bans (host, family, prefix, service, created, expires, reason, failures, prior_bans)
                 VALUES (?1, 4, 32, 'sshd', ?2, ?3, 'maxretry', 3, 0)",
            )
            .expect("prepare");
        for i in 0..BANS {
            let host = format!("172.16.{}.{}/32", i % 256, (i / 256) % 256);
            let host = if i < 65_536 { host } else { format!("172.17.{}.{}/32", i % 256, (i / 256) % 256) };
            ban.execute(params![host, now - 60, now + 86_400]).expect("insert ban");
        }
        durable.execute("INSERT OR IGNORE INTO ban_prefixes VALUES (4, 32)", []).expect("prefix");
        durable.execute("UPDATE generation SET value = value + 1", []).expect("generation");
    }
    durable.execute_batch("COMMIT; PRAGMA wal_checkpoint(TRUNCATE);").expect("commit");
    drop(g);
    std::fs::remove_file(runtime).expect("remove runtime state");
    let t = Instant::now();
    let g = Banguard::open(config).expect("open");
    let rebuild = t.elapsed();
    let conn = rusqlite::Connection::open(g.store().runtime_path()).expect("runtime state");
    conn.execute_batch("BEGIN").expect("begin");
    {
        let mut ins = conn
            .prepare(
                "INSERT INTO attempts (host, service, user, at, state, pid, ppid) VALUES (?1, 'sshd', 'root', ?2, 1, 1, 1)",
            )
            .expect("prepare");
        for i in 0..FAILURES {
            // 10.x.y.z: one failure from each of 1,000,000 addresses, spread
            // over the last half hour (inside findtime), oldest first.
            let host = format!("10.{}.{}.{}/32", i >> 16 & 255, i >> 8 & 255, i & 255);
            ins.execute(params![host, now - 1800 + i64::from(i) * 1800 / i64::from(FAILURES)])
                .expect("insert");
        }
    }
    conn.execute_batch("COMMIT").expect("commit");
    populate_accounts(&conn, now, accounts());
    let banned: i64 = conn.query_row("SELECT count(*) FROM bans", [], |r| r.get(0)).expect("mirror");
    assert_eq!(banned, i64::from(BANS), "the runtime state holds every ban");
    rebuild
}

/// `n` accounts in the runtime state, shaped as the engine writes them: a
/// bucket partly used, one in 50 locked, one in 4 with a familiar network
/// (not the bench's sources: every attempt is unfamiliar).
fn populate_accounts(conn: &rusqlite::Connection, now: i64, n: u32) {
    conn.execute_batch("BEGIN").expect("begin");
    {
        let mut ins = conn
            .prepare(
                "INSERT INTO accounts (account, used, leak_at, locked_until, level, tries, first_at, last_at, familiar)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?2, ?3, ?3, ?6)",
            )
            .expect("prepare");
        for i in 0..n {
            let locked = if i % 50 == 0 { now + 3600 } else { 0 };
            let familiar = (i % 4 == 0).then(|| format!("203.0.113.0/24 {}", now + 86_400 * 30));
            ins.execute(params![
                format!("user{i}"),
                i % 10,
                now - 600,
                locked,
                u32::from(locked > 0),
                familiar
            ])
            .expect("insert account");
        }
    }
    conn.execute("UPDATE accounts SET tries = ?1 WHERE account = ''", [n]).expect("tracked");
    conn.execute_batch("COMMIT").expect("commit");
    eprintln!("{n} accounts tracked");
}
