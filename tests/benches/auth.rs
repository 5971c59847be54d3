//! Benchmarks of the authentication path (BENCHMARKS.md §2). Run as root
//! with `bench/auth/run.sh`, or directly:
//!
//! ```sh
//! cargo bench -p banguard-e2e --bench auth [-- bench_overshoot]
//! ```
//!
//! * `bench_auth_cost`: the wall time banguard adds to one authentication.
//!   pamtester runs inside a throwaway namespace whose /etc/pam.d is a
//!   bind-mounted temp dir; each stack is run with and without the module
//!   line (`auth requisite pam_banguard.so` + pam_permit / pam_deny vs
//!   pam_permit / pam_deny alone), interleaved (ABBA), against an empty
//!   store and a pre-filled one. A second table times the same stacks in
//!   process through `pam_start_confdir` (no process start-up noise), a
//!   third one handle asked for many passwords. A pam_faillock success
//!   stack is timed beside them for reference, and the last table times the
//!   store operation alone in fresh processes of `bg-coldstart` (no PAM).
//! * `bench_overshoot`: passwords evaluated beyond `maxretry` when 1, 8 or
//!   32 connections from one address try wrong passwords at once against
//!   the real sshd (ground truth: a pam_exec line after the module).
//!
//! Knobs (environment): `BANGUARD_BENCH_RUNS` (pamtester runs per stack,
//! default 300), `BANGUARD_BENCH_PREFILL` (failing hosts in the full
//! store, default 100000; a tenth as many active bans), `BANGUARD_BENCH_REPS`
//! (overshoot repetitions per row, default 5).

use banguard::duration::BanTime;
use banguard::policy::SystemClock;
use banguard::store::Access;
use banguard::{Banguard, Config, HostKey, Request};
use banguard_e2e::fixture::{Fixture, Policy};
use banguard_e2e::pamtest::{self, Confdir, PAM_ESTABLISH_CRED, Pam};
use banguard_e2e::sshd::{
    DEBIAN_SSHD_STACK, GroundTruth, Method, SshdOptions, SshdServer, TEST_USER, with_auth_lines,
};
use banguard_e2e::{Netns, require};
use std::collections::BTreeMap;
use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// `cargo bench -p banguard-e2e --bench auth [-- NAME...]` runs the benchmarks
/// whose names contain a NAME (all of them without one). Root only.
fn main() {
    banguard_e2e::run_benches(&[
        ("bench_auth_cost", bench_auth_cost as fn()),
        ("bench_overshoot", bench_overshoot as fn()),
    ]);
}

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// (median, p99) of microsecond samples (nearest-rank).
fn stats(samples: &[f64]) -> (f64, f64) {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = |p: f64| s[((p * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
    (rank(0.50), rank(0.99))
}

fn ms(us: f64) -> String {
    format!("{:.2}", us / 1000.0)
}

/// Fills a store with `hosts` failing hosts (one failure each, distinct
/// 10.x.y.z addresses) and `hosts / 10` active manual bans (172.16.x.y),
/// through the public API, as the module and banguardctl would.
fn prefill(fx: &Fixture, hosts: usize) {
    let config = Config::load(&fx.config).expect("config");
    let mut g = Banguard::open_with(config, Access::ReadWrite, Arc::new(SystemClock)).expect("open store");
    for i in 0..hosts {
        let a = IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32 + i as u32 + 1)).to_string();
        let req = Request { service: "sshd", rhost: Some(&a), hint: None, user: Some("root") };
        g.record_failure(&req).expect("record failure");
    }
    for i in 0..hosts / 10 {
        let a = IpAddr::V4(Ipv4Addr::from(0xac10_0000u32 + i as u32 + 1));
        g.ban(&HostKey::for_addr(a, 32, 64), Some("sshd"), BanTime::Seconds(86_400), "bench").expect("ban");
    }
}

struct Case {
    label: String,
    base: &'static str,
    with: String,
    ops: &'static str,
    /// The first two octets of the source addresses: every run comes from
    /// a fresh address (`net.x.y`), as most hosts are seen within maxretry;
    /// one address piling up hundreds of attempts would time the counting
    /// of a host that banguard would have banned long before.
    net: &'static str,
    want_rc: i32,
}

fn bench_auth_cost() {
    if !require("bench_auth_cost", true, &["pamtester", "unshare", "nsenter", "bash"]) {
        return;
    }
    let runs = knob("BANGUARD_BENCH_RUNS", 300);
    let hosts = knob("BANGUARD_BENCH_PREFILL", 100_000);
    let big = Policy { maxretry: 1_000_000, findtime: "1h", runtime_on_tmpfs: true, ..Policy::default() };
    let full_label = format!("{hosts} failing hosts + {} bans", hosts / 10);
    // (name, label, fixture): the runtime state on tmpfs (as /run/banguard
    // is) with an empty and a pre-filled store, and on the VM's disk.
    let stores: Vec<(&str, String, Fixture)> = vec![
        ("empty", "empty store".into(), Fixture::new(&big)),
        ("full", full_label.clone(), Fixture::new(&big)),
        (
            "disk",
            "empty store, runtime state on the disk".into(),
            Fixture::new(&Policy { runtime_on_tmpfs: false, ..big }),
        ),
    ];
    // Create every store up front so that no timed run pays for creation.
    for (_, _, fx) in &stores {
        let config = Config::load(&fx.config).unwrap();
        drop(Banguard::open_with(config, Access::ReadWrite, Arc::new(SystemClock)).unwrap());
    }
    let full = &stores[1].2;
    let t = Instant::now();
    prefill(full, hosts);
    let fill_time = t.elapsed();
    let full_rows: i64 = banguard_e2e::fixture::sql(full.engine().store().runtime_path())
        .query_row("SELECT (SELECT count(*) FROM attempts) + (SELECT count(*) FROM bans)", [], |r| r.get(0))
        .unwrap();
    let full_size = fs::metadata(&full.db).map(|m| m.len()).unwrap_or(0)
        + fs::metadata(full.db.with_extension("db-wal")).map(|m| m.len()).unwrap_or(0);

    let tmp = tempfile::tempdir().unwrap();
    let pamd = tmp.path().join("pam.d");
    fs::create_dir(&pamd).unwrap();
    let confdir = Confdir::new(&pamd);
    confdir.service("bg-base-ok", &["auth required pam_permit.so".to_string()]);
    confdir.service("bg-base-fail", &["auth required pam_deny.so".to_string()]);
    // pam_faillock (Linux-PAM's own tally module, binary files under a
    // tmpfs dir) in its documented preauth/authfail/authsucc stack, for
    // reference: what a module that keeps no SQL store adds. Successes
    // only: after a failure pam_faillock asks libpam for its failure delay
    // (about 2 s), which pamtester cannot turn off.
    let faillock_dir = tempfile::Builder::new().prefix("bg-e2e-faillock.").tempdir_in("/dev/shm").unwrap();
    let faillock = |part: &str| {
        format!("pam_faillock.so {part} dir={} deny=1000000 unlock_time=60", faillock_dir.path().display())
    };
    let mut cases = Vec::new();
    for (ok, what, base, last, ops, net) in [
        (
            true,
            "success (authenticate + setcred)",
            "bg-base-ok",
            "pam_permit.so",
            "authenticate setcred",
            "10.7",
        ),
        (false, "failure (authenticate)", "bg-base-fail", "pam_deny.so", "authenticate", "10.8"),
    ] {
        for (name, label, fx) in &stores {
            let with = format!("bg-{}-{name}", if ok { "ok" } else { "fail" });
            confdir.service(&with, &[fx.module_line("service=sshd"), format!("auth required {last}")]);
            let want_rc = if ok { 0 } else { 1 };
            cases.push(Case { label: format!("{what}, {label}"), base, with, ops, net, want_rc });
        }
        if !ok {
            continue;
        }
        let with = "bg-faillock-ok".to_string();
        confdir.service(
            &with,
            &[
                format!("auth required {}", faillock("preauth")),
                format!("auth [success=1 default=bad] {last}"),
                format!("auth [default=die] {}", faillock("authfail")),
                format!("auth sufficient {}", faillock("authsucc")),
            ],
        );
        let label = format!("{what}, pam_faillock instead of banguard (reference)");
        cases.push(Case { label, base, with, ops, net, want_rc: 0 });
    }

    // One bash loop inside the namespace; $EPOCHREALTIME (bash 5) reads
    // the clock without a fork, so a sample is pamtester's whole run.
    let mut script = String::from(
        "export LC_ALL=C\nrun() { s=$EPOCHREALTIME; pamtester -I rhost=$2 $1 root $3 </dev/null >/dev/null 2>&1; rc=$?; e=$EPOCHREALTIME; echo \"$4 $5 $1 $rc $s $e\"; }\n",
    );
    let warmup = 5;
    script.push_str(&format!("for ((i=0; i<{}; i++)); do\n", runs + warmup));
    for (ci, c) in cases.iter().enumerate() {
        let a = format!("  run {} {}.$((i / 256)).$((i % 256)) '{}' $i {ci}", c.base, c.net, c.ops);
        let b = format!("  run {} {}.$((i / 256)).$((i % 256)) '{}' $i {ci}", c.with, c.net, c.ops);
        // ABBA: which stack goes first alternates every iteration.
        script.push_str(&format!("  if (( (i + {ci}) % 2 == 0 )); then\n{a}\n{b}\n  else\n{b}\n{a}\n  fi\n"));
    }
    script.push_str("done\n");
    let script_path = tmp.path().join("loop.sh");
    fs::write(&script_path, script).unwrap();

    let ns = Netns::new();
    ns.bind_mount(&pamd, Path::new("/etc/pam.d"));
    let t = Instant::now();
    let out = ns.run_ok([Path::new("bash"), &script_path]);
    let loop_time = t.elapsed();
    let mut samples: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 6, "{line}");
        let i: usize = f[0].parse().unwrap();
        let case = &cases[f[1].parse::<usize>().unwrap()];
        let rc: i32 = f[3].parse().unwrap();
        assert_eq!(rc, case.want_rc, "pamtester {} exit code ({line})", f[2]);
        if i < warmup {
            continue;
        }
        let us = (f[5].parse::<f64>().unwrap() - f[4].parse::<f64>().unwrap()) * 1e6;
        samples.entry((case.label.clone(), f[2].to_string())).or_default().push(us);
    }

    // The module did its job in every run: successes all given back,
    // failures all counted.
    let addr = |net: &str, i: usize| format!("{net}.{}.{}", i / 256, i % 256);
    for (_, _, fx) in &stores {
        // Row queries by host: `counted` lists every failing host, and the
        // pre-filled store has 100,000 of them.
        for i in 0..runs + warmup {
            assert_eq!(fx.rows("sshd", &addr("10.7", i)), 1, "success recorded once");
            assert_eq!(fx.given_back("sshd", &addr("10.7", i)), 1, "success given back");
            assert_eq!(fx.rows("sshd", &addr("10.8", i)), 1, "failure recorded once");
            assert_eq!(fx.given_back("sshd", &addr("10.8", i)), 0, "failure still counts");
        }
    }

    // In process: the same stacks through pam_start_confdir, timed around
    // pam_start .. pam_end (dlopen of the module included, as in any
    // application that starts a handle per login).
    let mut inproc: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for i in 0..runs + warmup {
        for (ci, c) in cases.iter().enumerate() {
            let order: [&str; 2] = if (i + ci) % 2 == 0 { [c.base, &c.with] } else { [&c.with, c.base] };
            for svc in order {
                let t = Instant::now();
                let mut p = Pam::start(&pamd, svc, "root");
                p.rhost(&format!("{}.{}.{}", c.net, 100 + i / 256, i % 256));
                let rc = p.authenticate();
                if c.want_rc == 0 {
                    assert_eq!(rc, pamtest::PAM_SUCCESS, "{svc}");
                    p.setcred(PAM_ESTABLISH_CRED);
                } else {
                    assert_ne!(rc, pamtest::PAM_SUCCESS, "{svc}");
                }
                drop(p);
                let us = t.elapsed().as_secs_f64() * 1e6;
                if i >= warmup {
                    inproc.entry((c.label.clone(), svc.to_string())).or_default().push(us);
                }
            }
        }
    }

    // Per password on one open handle, as sshd's password method does it
    // (one handle per connection, pam_authenticate once per password): the
    // module is loaded and the store opened by the first call only.
    let mut per_password: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for c in cases.iter().filter(|c| c.want_rc != 0) {
        for svc in [c.base, c.with.as_str()] {
            let mut p = Pam::start(&pamd, svc, "root");
            for i in 0..runs + warmup {
                // sshd's handle keeps one address; a fresh one per password
                // keeps every host within maxretry (see `Case::net`).
                p.rhost(&format!("{}.{}.{}", c.net, 200 + i / 256, i % 256));
                let t = Instant::now();
                let rc = p.authenticate();
                let us = t.elapsed().as_secs_f64() * 1e6;
                assert_ne!(rc, pamtest::PAM_SUCCESS, "{svc}");
                if i >= warmup {
                    per_password.entry((c.label.clone(), svc.to_string())).or_default().push(us);
                }
            }
        }
    }

    // Where a fresh process's first attempt goes: the store operation alone
    // (no PAM, no config file, no module to load), timed as a whole
    // process against one that only starts and exits.
    let cold = Fixture::new(&big);
    let cold_config = Config::load(&cold.config).unwrap();
    let runtime = cold_config.store.runtime.display().to_string();
    drop(Banguard::open_with(cold_config, Access::ReadWrite, Arc::new(SystemClock)).unwrap());
    let coldstart = env!("CARGO_BIN_EXE_bg-coldstart");
    let database = cold.db.display().to_string();
    let mut fresh: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let cold_config_path = cold.config.display().to_string();
    let variants = ["none", "config", "sqlite", "banguard"];
    for i in 0..runs + warmup {
        let host = format!("10.9.{}.{}", i / 256, i % 256);
        let host_key = banguard_e2e::fixture::key(&host).db_key();
        for k in 0..variants.len() {
            let variant = variants[(i + k) % variants.len()];
            let args: Vec<&str> = match variant {
                "none" => vec!["none"],
                "config" => vec!["config", &cold_config_path],
                "sqlite" => vec!["sqlite", &runtime, &host_key],
                _ => vec!["banguard", &database, &runtime, &host],
            };
            let t = Instant::now();
            let status = std::process::Command::new(coldstart).args(&args).status().unwrap();
            let us = t.elapsed().as_secs_f64() * 1e6;
            assert!(status.success(), "bg-coldstart {args:?}: {status}");
            if i >= warmup {
                fresh.entry(variant).or_default().push(us);
            }
        }
    }
    for i in 0..runs + warmup {
        let host = format!("10.9.{}.{}", i / 256, i % 256);
        assert_eq!(cold.rows("sshd", &host), 2, "{host}: one row by SQLite alone, one by banguard");
    }

    println!(); // cargo's "test ... " line has no newline under --nocapture
    println!("# banguard auth cost: {runs} runs per stack after {warmup} warm-up, interleaved ABBA");
    println!(
        "# pre-filled store: {full_rows} rows ({full_label}), {:.1} MB, filled in {:.1} s; pamtester loop {:.1} s",
        full_size as f64 / 1e6,
        fill_time.as_secs_f64(),
        loop_time.as_secs_f64()
    );
    for (title, data) in [
        ("pamtester, one process per authentication", &samples),
        ("in process (pam_start_confdir .. pam_end)", &inproc),
        ("in process, per password on one open handle (pam_authenticate)", &per_password),
    ] {
        println!();
        println!("## {title} (ms)");
        println!();
        println!("| case | without: median | p99 | with banguard: median | p99 | added: median | p99 |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for c in cases.iter().filter(|c| data.contains_key(&(c.label.clone(), c.base.to_string()))) {
            let without = &data[&(c.label.clone(), c.base.to_string())];
            print_row(&c.label, without, &data[&(c.label.clone(), c.with.clone())]);
        }
    }
    println!();
    println!("## fresh process, no PAM (bg-coldstart): the store operation alone (ms)");
    println!();
    println!(
        "| operation | process alone: median | p99 | with the operation: median | p99 | added: median | p99 |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (variant, what) in [
        ("config", "config: the test config file read, parsed and checked"),
        ("sqlite", "SQLite alone: open, BEGIN IMMEDIATE, count, insert, COMMIT, close"),
        ("banguard", "banguard: open + attempt (ban check, count, record), built-in config"),
    ] {
        print_row(what, &fresh["none"], &fresh[variant]);
    }
}

/// One table row: median and p99 without and with, and what was added.
fn print_row(label: &str, without: &[f64], with: &[f64]) {
    let (bm, b99) = stats(without);
    let (wm, w99) = stats(with);
    println!(
        "| {label} | {} | {} | {} | {} | **{}** | {} |",
        ms(bm),
        ms(b99),
        ms(wm),
        ms(w99),
        ms(wm - bm),
        ms(w99 - b99)
    );
}

fn bench_overshoot() {
    if !require(
        "bench_overshoot",
        true,
        &["unshare", "nsenter", "ip", "ss", "timeout", "sshd", "ssh", "ssh-keygen"],
    ) {
        return;
    }
    let reps = knob("BANGUARD_BENCH_REPS", 5);
    let maxretry = 3;
    let passwords = ["w1", "w2", "w3", "w4"];
    let plan: Vec<(Method, usize)> = [Method::Password, Method::KeyboardInteractive]
        .into_iter()
        .flat_map(|m| [1, 8, 32].map(|n| (m, n)))
        .collect();
    let mut ns = Netns::new();
    let addrs: Vec<String> = (0..plan.len() * reps).map(|k| format!("127.0.1.{}", k + 1)).collect();
    for a in &addrs {
        ns.add_lo_addr(&format!("{a}/8"));
    }
    let fx = Fixture::new(&Policy { maxretry, ..Policy::default() });
    let truth = GroundTruth::new();
    let stack = with_auth_lines(DEBIAN_SSHD_STACK, &[&fx.module_line(""), &truth.pam_line()]);
    let srv = SshdServer::start(&mut ns, SshdOptions::with_stack(&stack));

    println!();
    println!(
        "# overshoot: maxretry {maxretry}, each connection offers {} wrong passwords, {reps} runs per row, a fresh source address per run",
        passwords.len()
    );
    println!();
    println!(
        "| method | connections | passwords offered | evaluated (min..max) | overshoot (max) | banned | all refused | wall time per run (median) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut worst = 0usize;
    let mut k = 0;
    for (method, n) in plan {
        let (mut evaluated, mut banned, mut refused, mut times) = (Vec::new(), 0, 0, Vec::new());
        for _ in 0..reps {
            let src = &addrs[k];
            k += 1;
            let t = Instant::now();
            let outs = srv.try_parallel(&ns, method, src, TEST_USER, &passwords, n);
            times.push(t.elapsed().as_secs_f64());
            evaluated.push(truth.count_from(src));
            banned += usize::from(fx.active_ban("sshd", src).is_some());
            refused += usize::from(outs.iter().all(|o| o.denied() && !o.timed_out));
        }
        let (lo, hi) = (*evaluated.iter().min().unwrap(), *evaluated.iter().max().unwrap());
        worst = worst.max(hi.saturating_sub(maxretry as usize));
        times.sort_by(f64::total_cmp);
        println!(
            "| {} | {n} | {} | {lo}..{hi} | {} | {banned}/{reps} | {refused}/{reps} | {:.2} s |",
            match method {
                Method::Password => "password",
                Method::KeyboardInteractive => "keyboard-interactive",
            },
            n * passwords.len(),
            hi.saturating_sub(maxretry as usize),
            times[times.len() / 2]
        );
        assert!(
            evaluated.iter().all(|&e| e == maxretry as usize),
            "{method:?} × {n}: evaluated {evaluated:?}"
        );
        assert_eq!(banned, reps, "{method:?} × {n}");
    }
    println!();
    println!("# worst overshoot: {worst}");
}
