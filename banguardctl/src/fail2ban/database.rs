//! fail2ban's database (`dbfile`), read-only: the bans it would restore
//! at its next start. Schema version 4 (fail2ban 0.11 and later) keeps
//! one row per address and jail in `bips` with its ban time and count;
//! versions 2 and 3 (0.9, 0.10) only `bans`.
//!
//! Read as it lies, read-only, when it is in rollback-journal mode
//! (fail2ban's default): that creates nothing beside it. A database in
//! WAL mode would get `-wal` and `-shm` files beside it from any reader,
//! so it (with its write-ahead log) is copied into a private directory and
//! read there. Only a regular file is read (a FIFO never blocks), of at
//! most [`MAX_DATABASE_BYTES`].

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The newest schema this reader knows.
pub const NEWEST_SCHEMA: i64 = 4;
/// The largest database copied (a year of bans of a busy server is a few
/// tens of megabytes).
pub const MAX_DATABASE_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// The largest earlier-ban count carried over (fail2ban's formulas stop
/// growing at 20).
pub const MAX_BANCOUNT: u32 = 64;

/// One ban as fail2ban keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredBan {
    pub ip: String,
    pub jail: String,
    pub timeofban: i64,
    /// Seconds (a REAL with `bantime.rndtime`: rounded up); -1 permanent,
    /// other negatives as stored; `None` unknown (an older schema, or -2
    /// after fail2ban's own upgrade): the jail's bantime applies.
    pub bantime: Option<i64>,
    /// How often fail2ban has banned this address in this jail (1 to
    /// [`MAX_BANCOUNT`]).
    pub bancount: u32,
    /// The failures behind the ban, when fail2ban recorded them.
    pub failures: Option<u32>,
}

/// The database could not be used, worded for the operator.
#[derive(Debug)]
pub struct DbError {
    pub path: PathBuf,
    pub message: String,
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

/// Every ban row of the database (active or not: the caller decides with
/// its own clock and the jails' ban times).
pub fn read(path: &Path) -> Result<(i64, Vec<StoredBan>), DbError> {
    let fail = |message: String| DbError { path: path.to_path_buf(), message };
    let wal_mode = header(path).map_err(fail)?.get(18..20) == Some(&[2, 2]);
    let copy = tempfile::Builder::new()
        .prefix("banguard-fail2ban-db.")
        .tempdir()
        .map_err(|e| fail(format!("cannot make a private copy: {e}")))?;
    let conn = if wal_mode {
        let local = copy.path().join("fail2ban.sqlite3");
        copy_regular(path, &local).map_err(fail)?;
        let wal = PathBuf::from(format!("{}-wal", path.display()));
        if std::fs::symlink_metadata(&wal).is_ok() {
            copy_regular(&wal, &copy.path().join("fail2ban.sqlite3-wal")).map_err(fail)?;
        }
        // The copy is ours: opened read-write so that SQLite may play its
        // write-ahead log in; fail2ban's file is never touched.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        Connection::open_with_flags(&local, flags).map_err(|e| fail(sql_advice(&e)))?
    } else {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        Connection::open_with_flags(path, flags).map_err(|e| fail(sql_advice(&e)))?
    };
    // fail2ban writes in short transactions; wait one out.
    conn.busy_timeout(Duration::from_secs(5)).map_err(|e| fail(sql_advice(&e)))?;
    let has = |table: &str| -> Result<bool, DbError> {
        conn.query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", [table], |_| Ok(()))
            .optional()
            .map(|r| r.is_some())
            .map_err(|e| fail(sql_advice(&e)))
    };
    if !has("fail2banDb")? {
        return Err(fail("not a fail2ban database (no fail2banDb table)".into()));
    }
    let version: i64 = conn
        .query_row("SELECT version FROM fail2banDb LIMIT 1", [], |r| r.get(0))
        .optional()
        .map_err(|e| fail(sql_advice(&e)))?
        .ok_or_else(|| fail("fail2banDb holds no schema version".into()))?;
    if version > NEWEST_SCHEMA {
        return Err(fail(format!(
            "schema version {version} is newer than this banguard reads (up to {NEWEST_SCHEMA}): \
             upgrade banguard, or leave out --database to map the configuration only"
        )));
    }
    let query = if has("bips")? {
        "SELECT ip, jail, timeofban, bantime, bancount, data FROM bips"
    } else if version >= 3 {
        "SELECT ip, jail, max(timeofban), bantime, count(*), data FROM bans GROUP BY ip, jail"
    } else if has("bans")? {
        "SELECT ip, jail, max(timeofban), -2, count(*), data FROM bans GROUP BY ip, jail"
    } else {
        return Ok((version, Vec::new()));
    };
    let mut stmt = conn.prepare(query).map_err(|e| fail(sql_advice(&e)))?;
    let rows = stmt
        .query_map([], |r| {
            let data: Option<String> = r.get::<_, Option<String>>(5).ok().flatten();
            let bantime = seconds(r.get_ref(3)?);
            Ok(StoredBan {
                ip: r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                jail: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                timeofban: seconds(r.get_ref(2)?).unwrap_or(0),
                bantime: bantime.filter(|b| *b != -2),
                bancount: seconds(r.get_ref(4)?).unwrap_or(1).clamp(1, i64::from(MAX_BANCOUNT)) as u32,
                failures: data.as_deref().and_then(failures_of),
            })
        })
        .map_err(|e| fail(sql_advice(&e)))?;
    let bans = rows.collect::<Result<Vec<_>, _>>().map_err(|e| fail(sql_advice(&e)))?;
    Ok((version, bans))
}

/// A number column as fail2ban may have written it: INTEGER, or REAL
/// (`bantime.rndtime` makes ban times fractional; rounded up, so no ban
/// ends earlier here). Anything else: `None`.
fn seconds(v: rusqlite::types::ValueRef<'_>) -> Option<i64> {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Integer(n) => Some(n),
        ValueRef::Real(f) if f.is_finite() => Some(f.ceil().clamp(i64::MIN as f64, i64::MAX as f64) as i64),
        _ => None,
    }
}

/// The first 100 bytes of a database file (SQLite's header), read from a
/// regular file of at most [`MAX_DATABASE_BYTES`] only.
fn header(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot read fail2ban's database: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot read fail2ban's database: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file (a FIFO, device or directory is never read as a database)".into());
    }
    if meta.len() > MAX_DATABASE_BYTES {
        return Err(format!(
            "{} bytes: larger than banguard reads ({MAX_DATABASE_BYTES} at most)",
            meta.len()
        ));
    }
    let mut head = Vec::new();
    file.take(100).read_to_end(&mut head).map_err(|e| format!("cannot read fail2ban's database: {e}"))?;
    Ok(head)
}

/// Copies a regular file (never a FIFO or device, never through a last
/// link of someone else's), at most [`MAX_DATABASE_BYTES`].
fn copy_regular(from: &Path, to: &Path) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut src = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(from)
        .map_err(|e| format!("cannot read fail2ban's database: {e}"))?;
    let meta = src.metadata().map_err(|e| format!("cannot read fail2ban's database: {e}"))?;
    if !meta.is_file() {
        return Err(format!(
            "{}: not a regular file (a FIFO, device or directory is never read as a database)",
            banguard::text::clean(&from.display().to_string())
        ));
    }
    if meta.len() > MAX_DATABASE_BYTES {
        return Err(format!(
            "{} bytes: larger than banguard reads ({MAX_DATABASE_BYTES} at most)",
            meta.len()
        ));
    }
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .map_err(|e| format!("cannot make a private copy: {e}"))?;
    std::io::copy(&mut std::io::Read::take(&mut src, MAX_DATABASE_BYTES), &mut dst)
        .map_err(|e| format!("cannot copy fail2ban's database: {e}"))?;
    Ok(())
}

/// `data` is JSON: `{"matches": [...], "failures": N}`.
fn failures_of(data: &str) -> Option<u32> {
    let v: serde_json::Value = serde_json::from_str(data).ok()?;
    v.get("failures")?.as_u64().and_then(|n| u32::try_from(n).ok())
}

fn sql_advice(e: &rusqlite::Error) -> String {
    use rusqlite::ErrorCode::*;
    match e.sqlite_error_code() {
        Some(DatabaseBusy | DatabaseLocked) => {
            format!("{e}: fail2ban is writing to it; try again, or stop fail2ban first")
        }
        Some(NotADatabase) => format!("{e}: not a fail2ban database"),
        Some(CannotOpen | PermissionDenied) if banguard::sys::effective_uid() != 0 => {
            format!("{e}: cannot open it (run as root?)")
        }
        _ => e.to_string(),
    }
}
