//! One store operation in a fresh process, without PAM and without a config
//! file: where the cost of pam_banguard's first attempt on a connection
//! comes from (BENCHMARKS.md §2). The auth benchmark times this program
//! once per operation, as sshd runs a fresh process per connection:
//!
//! - `none`: starts and exits (the process alone, to subtract);
//! - `config CONFIG`: reads and checks a config file, as every hook does;
//! - `sqlite RUNTIME KEY`: the least any SQLite store can do for an
//!   attempt: open the file, `BEGIN IMMEDIATE`, count the host's rows,
//!   insert one, `COMMIT`, close, with the bundled SQLite banguard uses
//!   (KEY as banguard stores a host: `192.0.2.7/32`);
//! - `banguard DATABASE RUNTIME HOST`: banguard's own open + `attempt`
//!   (ban check, count, record) on those files, with the built-in defaults.
//!
//! Exit status 0 when the operation ran, 1 with a message when it failed.

use banguard::policy::SystemClock;
use banguard::store::Access;
use banguard::{Banguard, Config, Request, Verdict};
use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["none"] => Ok(()),
        ["config", path] => Config::load(std::path::Path::new(path)).map(drop).map_err(|e| e.to_string()),
        ["sqlite", runtime, key] => sqlite_attempt(runtime, key),
        ["banguard", database, runtime, host] => banguard_attempt(database, runtime, host),
        _ => Err(
            "usage: bg-coldstart none | config CONFIG | sqlite RUNTIME KEY | banguard DATABASE RUNTIME HOST"
                .into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bg-coldstart: {e}");
            ExitCode::from(1)
        }
    }
}

/// The smallest attempt transaction on banguard's runtime schema.
fn sqlite_attempt(runtime: &str, key: &str) -> Result<(), String> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(runtime, flags).map_err(|e| format!("{runtime}: {e}"))?;
    let e = |err: rusqlite::Error| format!("{runtime}: {err}");
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(e)?;
    let _used: i64 = tx
        .query_row("SELECT count(*) FROM attempts WHERE host = ?1 AND service = 'sshd'", [key], |r| r.get(0))
        .map_err(e)?;
    tx.execute(
        "INSERT INTO attempts (host, service, at, state, pid, ppid) VALUES (?1, 'sshd', 0, 1, 0, 0)",
        params![key],
    )
    .map_err(e)?;
    tx.commit().map_err(e)?;
    conn.close().map_err(|(_, err)| e(err))
}

fn banguard_attempt(database: &str, runtime: &str, host: &str) -> Result<(), String> {
    let defaults = Config::default();
    let mut config = Config {
        database: PathBuf::from(database),
        store: banguard::config::StoreConfig { runtime: PathBuf::from(runtime), ..defaults.store.clone() },
        ..defaults
    };
    config.default.ignoreip.clear();
    let mut bg =
        Banguard::open_with(config, Access::ReadWrite, Arc::new(SystemClock)).map_err(|e| e.to_string())?;
    let req = Request { service: "sshd", rhost: Some(host), hint: None, user: Some("root") };
    match bg.attempt(&req, None).map_err(|e| e.to_string())? {
        Verdict::Allowed { attempt: Some(_), .. } => Ok(()),
        other => Err(format!("expected a recorded attempt, got {other:?}")),
    }
}
