//! fail2ban's database (`dbfile`), read-only: the bans it would restore
//! at its next start. Schema version 4 (fail2ban 0.11 and later) keeps
//! one row per address and jail in `bips` with its ban time and count;
//! versions 2 and 3 (0.9, 0.10) only `bans`.

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The newest schema this reader knows.
pub const NEWEST_SCHEMA: i64 = 4;

/// One ban as fail2ban keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredBan {
    pub ip: String,
    pub jail: String,
    pub timeofban: i64,
    /// Seconds; -1 permanent; `None` unknown (an older schema, or -2 after
    /// fail2ban's own upgrade): the jail's bantime applies.
    pub bantime: Option<i64>,
    /// How often fail2ban has banned this address in this jail.
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
    if let Err(e) = std::fs::metadata(path) {
        return Err(fail(format!("cannot read fail2ban's database: {e}")));
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| fail(sql_advice(&e)))?;
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
            let bantime: i64 = r.get(3)?;
            Ok(StoredBan {
                ip: r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                jail: r.get(1)?,
                timeofban: r.get(2)?,
                bantime: (bantime != -2).then_some(bantime),
                bancount: r.get::<_, i64>(4)?.clamp(1, i64::from(u32::MAX)) as u32,
                failures: data.as_deref().and_then(failures_of),
            })
        })
        .map_err(|e| fail(sql_advice(&e)))?;
    let bans = rows.collect::<Result<Vec<_>, _>>().map_err(|e| fail(sql_advice(&e)))?;
    Ok((version, bans))
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
        Some(CannotOpen | PermissionDenied) => format!("{e}: cannot open it read-only (run as root?)"),
        _ => e.to_string(),
    }
}
