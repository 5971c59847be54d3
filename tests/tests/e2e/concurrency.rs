//! Multi-process exactness of the central operation on a real SQLite file:
//! many OS processes (as sshd forks one per connection) at once.

use banguard_e2e::fixture::ConfigFile;
use rusqlite::types::Value;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

const WORKERS: u32 = 32;

/// The two tests each run their own 32 processes; run them one at a time
/// so each sees exactly the contention it describes, not 64 processes.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn write_config(dir: &Path, maxretry: u32) -> std::path::PathBuf {
    let config = dir.join("banguard.toml");
    ConfigFile::under(dir)
        .with(&format!("maxretry = {maxretry}\nfindtime = \"1h\"\nbantime = \"1h\""))
        .write(&config);
    config
}

/// Starts WORKERS hammer processes, opens the barrier, returns their totals.
fn hammer(dir: &Path, config: &Path, args: impl Fn(u32) -> Vec<String>) -> (u32, u32, u32) {
    let barrier = dir.join("go");
    let children: Vec<_> = (0..WORKERS)
        .map(|w| {
            Command::new(env!("CARGO_BIN_EXE_bg-hammer"))
                .arg(config)
                .arg(&barrier)
                .args(args(w))
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn bg-hammer")
        })
        .collect();
    fs::write(&barrier, "").unwrap();
    let (mut allowed, mut refused, mut errors) = (0, 0, 0);
    for child in children {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "worker failed: {text}");
        let field = |name: &str| -> u32 {
            text.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {text:?}"))
        };
        allowed += field("allowed");
        refused += field("refused");
        errors += field("errors");
        assert!(!text.contains("first error"), "an error escaped: {text}");
    }
    (allowed, refused, errors)
}

#[test]
fn thirty_two_processes_on_one_host_get_exactly_maxretry_attempts() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 5);
    let per_worker = 20;
    let (allowed, refused, errors) =
        hammer(dir.path(), &config, |_| vec!["same-host".into(), per_worker.to_string()]);
    assert_eq!(errors, 0);
    assert_eq!(allowed, 5, "exactly maxretry attempts may pass");
    assert_eq!(refused, WORKERS * per_worker - 5);
    assert_eq!(
        count(&config, File::Store, "SELECT count(*) FROM bans"),
        1,
        "one ban, not one per racing process"
    );
    assert_eq!(count(&config, File::Runtime, "SELECT count(*) FROM bans"), 1, "the module's copy has it");
}

#[test]
fn thirty_two_processes_times_500_failures_are_all_counted() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 5);
    let (allowed, refused, errors) =
        hammer(dir.path(), &config, |w| vec!["distinct-hosts".into(), w.to_string(), "500".into()]);
    assert_eq!(errors, 0, "no 'database is locked' may escape");
    assert_eq!((allowed, refused), (16_000, 0));
    assert_eq!(count(&config, File::Runtime, "SELECT count(*) FROM attempts WHERE state = 1"), 16_000);
    assert_eq!(count(&config, File::Runtime, "SELECT count(DISTINCT host) FROM attempts"), 16_000);
    assert_eq!(count(&config, File::Runtime, "PRAGMA integrity_check"), 0, "integrity_check is ok");
    assert_eq!(count(&config, File::Store, "PRAGMA integrity_check"), 0, "integrity_check is ok");
}

/// 32 processes × 32 attempts at once, each from its own address, all for
/// the same account: exactly the account's budget reaches the password
/// check, every other attempt is refused before it, and no host is banned.
#[test]
fn a_thousand_concurrent_unfamiliar_attempts_on_one_account_get_exactly_the_budget() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("banguard.toml");
    ConfigFile::under(dir.path())
        .with("maxretry = 5\nfindtime = \"1h\"\nbantime = \"1h\"\n[accounts]\nlearning = 0\nlock = \"1h\"")
        .write(&config);
    let (allowed, refused, errors) =
        hammer(dir.path(), &config, |w| vec!["spray".into(), w.to_string(), "32".into()]);
    let budget = banguard::Config::default().accounts.budget;
    assert_eq!(errors, 0);
    assert_eq!(allowed, budget, "exactly the budget of unfamiliar passwords checked");
    assert_eq!(refused, WORKERS * 32 - budget);
    assert_eq!(count(&config, File::Store, "SELECT count(*) FROM bans"), 0, "no host banned for one try");
    assert_eq!(count(&config, File::Store, "SELECT count(*) FROM account_locks"), 1, "one lock");
}

enum File {
    Store,
    Runtime,
}

/// Runs a one-value query on one of the config's two files (read-only).
fn count(config: &Path, file: File, sql: &str) -> i64 {
    let config = banguard::Config::load(config).unwrap();
    let loc = banguard::store::Location::of(&config);
    let store = banguard::store::Store::open(&loc, banguard::store::Access::ReadOnly).unwrap();
    let conn = banguard_e2e::fixture::sql(match file {
        File::Store => store.path(),
        File::Runtime => store.runtime_path(),
    });
    let v: Value = conn.query_row(sql, [], |r| r.get(0)).unwrap();
    match v {
        Value::Integer(n) => n,
        Value::Text(t) if t == "ok" => 0,
        other => panic!("unexpected {other:?}"),
    }
}
