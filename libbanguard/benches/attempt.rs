//! Benchmark of the central operation as a fresh process does it (what
//! every sshd connection pays): load the config, open the store, one
//! `attempt` (ban check + count + record), close, on a store that already
//! holds 1,000,000 failure rows and 100,000 bans.
//!
//! Run: `cargo bench -p banguard --bench attempt` (BANGUARD_BENCH_ITERS to
//! change the sample count, BANGUARD_BENCH_SYNC=off|normal for the store's
//! `synchronous` setting). Prints median / p90 / p99 / max in µs and the
//! file size. Results are recorded in BENCHMARKS.md.

use banguard::policy::SystemClock;
use banguard::rusqlite::params;
use banguard::store::Access;
use banguard::{Banguard, Config, Request};
use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

const FAILURES: u32 = 1_000_000;
const BANS: u32 = 100_000;

fn main() {
    let iters: usize =
        std::env::var("BANGUARD_BENCH_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("banguard.db");
    let config_path = dir.path().join("banguard.toml");
    std::fs::write(
        &config_path,
        format!(
            "[default]\nmaxretry = 5\nfindtime = \"1h\"\nbantime = \"1d\"\ndatabase = \"{}\"\n[services.sshd]\nmaxretry = 3\n[store]\nsynchronous = \"{}\"\n",
            db.display(),
            std::env::var("BANGUARD_BENCH_SYNC").unwrap_or_else(|_| "normal".into())
        ),
    )
    .expect("write config");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64;

    let t = Instant::now();
    populate(&config_path, now);
    let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(dir.path().join("banguard.db-wal")).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "populated {FAILURES} failures from {FAILURES} distinct addresses + {BANS} bans in {:.1} s; store size {:.1} MiB",
        t.elapsed().as_secs_f64(),
        size as f64 / 1048576.0
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
        let req = Request { service: "sshd", rhost: Some(&ip), hint: None, user: Some("root") };
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
    samples.sort_by(f64::total_cmp);
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "attempt (load config + open + check/record + close), {} runs: median {:.0} µs, p90 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        samples.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        samples[samples.len() - 1]
    );
}

/// Bulk-loads the store through the real schema (rows shaped exactly as the
/// engine writes them).
fn populate(config_path: &Path, now: i64) {
    let config = Config::load(config_path).expect("config");
    let g = Banguard::open(config).expect("open");
    let conn = g.store().connection();
    conn.execute_batch("BEGIN").expect("begin");
    {
        let mut ins = conn
            .prepare(
                "INSERT INTO attempts (host, service, user, at, state, pid, ppid) VALUES (?1, 'sshd', 'root', ?2, 1, 1, 1)",
            )
            .expect("prepare");
        for i in 0..FAILURES {
            // 10.x.y.z: one failure from each of 1,000,000 addresses, spread
            // over the last half hour (inside findtime).
            let host = format!("10.{}.{}.{}/32", i >> 16 & 255, i >> 8 & 255, i & 255);
            ins.execute(params![host, now - i64::from(i % 1800)]).expect("insert");
        }
        let mut ban = conn
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
        conn.execute("INSERT OR IGNORE INTO ban_prefixes VALUES (4, 32)", []).expect("prefix");
        conn.execute("UPDATE counters SET value = ?1 WHERE name = 'attempt_rows'", [FAILURES])
            .expect("counter");
    }
    conn.execute_batch("COMMIT; PRAGMA wal_checkpoint(TRUNCATE);").expect("commit");
}
