//! Worker process for the multi-process exactness tests: opens the store the
//! way a fresh sshd connection does (load config, open, one operation,
//! close) for every attempt, after waiting on a start barrier so that all
//! workers collide.
//!
//! usage: bg-hammer CONFIG BARRIER same-host N | distinct-hosts WORKER N | spray WORKER N
//! prints: `allowed=A refused=R errors=E` and the first error, if any.

use banguard::{Banguard, Config, Request};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: bg-hammer CONFIG BARRIER same-host N | distinct-hosts WORKER N | spray WORKER N");
        return ExitCode::from(2);
    }
    let config_path = Path::new(&args[1]);
    let barrier = Path::new(&args[2]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !barrier.exists() {
        if Instant::now() > deadline {
            eprintln!("bg-hammer: barrier {} never appeared", barrier.display());
            return ExitCode::from(2);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let (mut allowed, mut refused, mut errors) = (0u32, 0u32, 0u32);
    let mut first_error = None;
    let mut run = |rhost: &str, record_failure: bool| {
        let started = Instant::now();
        let outcome = Config::load(config_path).and_then(Banguard::open).and_then(|mut g| {
            let req = Request { service: "sshd", rhost: Some(rhost), hint: None, user: Some("root") };
            if record_failure { g.record_failure(&req) } else { g.attempt(&req, None) }
        });
        match outcome {
            Ok(v) if v.is_refused() => refused += 1,
            Ok(_) => allowed += 1,
            Err(e) => {
                errors += 1;
                first_error
                    .get_or_insert_with(|| format!("{e} (after {} ms)", started.elapsed().as_millis()));
            }
        }
    };
    match args[3].as_str() {
        "same-host" => {
            let n: u32 = args[4].parse().expect("N");
            for _ in 0..n {
                run("198.51.100.7", false);
            }
        }
        "spray" => {
            // One password each from distinct hosts, all for the account
            // root, checked before the password (the single line).
            let worker: u32 = args[4].parse().expect("WORKER");
            let n: u32 = args.get(5).and_then(|s| s.parse().ok()).expect("N");
            for i in 0..n {
                run(&format!("10.{}.{}.{}", worker, i / 256, i % 256), false);
            }
        }
        "distinct-hosts" => {
            let worker: u32 = args[4].parse().expect("WORKER");
            let n: u32 = args.get(5).and_then(|s| s.parse().ok()).expect("N");
            for i in 0..n {
                // 10.W.x.y: every (worker, i) pair is a distinct host.
                run(&format!("10.{}.{}.{}", worker, i / 256, i % 256), true);
            }
        }
        other => {
            eprintln!("bg-hammer: unknown mode {other}");
            return ExitCode::from(2);
        }
    }
    // The parent may have gone (a failed test): never panic on a closed pipe.
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "allowed={allowed} refused={refused} errors={errors}");
    if let Some(e) = first_error {
        let _ = writeln!(out, "first error: {e}");
    }
    ExitCode::SUCCESS
}
