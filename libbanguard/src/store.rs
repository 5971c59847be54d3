//! The SQLite store: one file, WAL, a short busy timeout, numbered
//! migrations tracked in `PRAGMA user_version`.
//!
//! Every read-modify-write runs in `BEGIN IMMEDIATE`: the write lock is
//! taken first, so concurrent processes queue on the busy timeout instead
//! of failing on a read→write upgrade (measured: DEFERRED loses half the
//! writers to "database is locked" under 8 processes).

use crate::config::Synchronous;
use crate::error::{Error, Result};
use crate::sys;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Numbered migrations; entry N brings the schema from version N to N+1.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    r#"
    -- One row per attempt. state 0 = being checked (single-line mode counts
    -- it at once), 1 = failed, 2 = succeeded (given back: never counts).
    CREATE TABLE attempts (
        id      INTEGER PRIMARY KEY,
        host    TEXT    NOT NULL,
        service TEXT    NOT NULL,
        user    TEXT,
        at      INTEGER NOT NULL,
        state   INTEGER NOT NULL,
        pid     INTEGER NOT NULL DEFAULT 0,
        ppid    INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX attempts_by_host ON attempts(host, service, at);
    CREATE INDEX attempts_by_time ON attempts(at);

    -- Bans, active and past (history for increasing ban times and the
    -- repeat-offender rule). service '*' = all services.
    CREATE TABLE bans (
        id         INTEGER PRIMARY KEY,
        host       TEXT    NOT NULL,
        family     INTEGER NOT NULL,
        prefix     INTEGER NOT NULL,
        service    TEXT    NOT NULL,
        created    INTEGER NOT NULL,
        expires    INTEGER,
        lifted     INTEGER,
        reason     TEXT    NOT NULL,
        failures   INTEGER NOT NULL,
        prior_bans INTEGER NOT NULL,
        firewall   INTEGER NOT NULL DEFAULT 0,
        pushed     INTEGER
    );
    CREATE INDEX bans_by_host ON bans(host, created);
    CREATE INDEX bans_by_created ON bans(created);

    -- Every prefix length that any ban uses, so that a lookup probes a
    -- handful of exact keys instead of scanning ranges.
    CREATE TABLE ban_prefixes (
        family INTEGER NOT NULL,
        prefix INTEGER NOT NULL,
        PRIMARY KEY (family, prefix)
    ) WITHOUT ROWID;

    CREATE TABLE events (
        id      INTEGER PRIMARY KEY,
        at      INTEGER NOT NULL,
        host    TEXT    NOT NULL,
        service TEXT    NOT NULL,
        kind    TEXT    NOT NULL,
        detail  TEXT    NOT NULL
    );
    CREATE INDEX events_by_host ON events(host, at);
    CREATE INDEX events_by_time ON events(at);

    -- Notices the sync job has to send (mail); kept until sent.
    CREATE TABLE outbox (
        id         INTEGER PRIMARY KEY,
        created    INTEGER NOT NULL,
        ban_id     INTEGER NOT NULL,
        tries      INTEGER NOT NULL DEFAULT 0,
        last_error TEXT
    );

    -- Running totals per service, for `banguardctl status`.
    CREATE TABLE totals (
        service TEXT PRIMARY KEY,
        failed  INTEGER NOT NULL DEFAULT 0,
        banned  INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;

    -- Row counts kept up to date, so bounding the table costs no scan.
    CREATE TABLE counters (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO counters VALUES ('attempt_rows', 0);
    "#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// An open store.
pub struct Store {
    pub(crate) conn: Connection,
    path: PathBuf,
}

/// How to open the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Create the file and its directory if missing; migrate.
    ReadWrite,
    /// Never create or migrate (readers that are not root).
    ReadOnly,
}

impl Store {
    /// Opens (creating if needed) the store at `path`, fsyncing as
    /// `synchronous = "normal"`.
    pub fn open(path: &Path, busy_timeout: Duration, access: Access) -> Result<Store> {
        Store::open_with(path, busy_timeout, Synchronous::Normal, access)
    }

    /// Opens (creating if needed) the store at `path`.
    pub fn open_with(
        path: &Path,
        busy_timeout: Duration,
        sync: Synchronous,
        access: Access,
    ) -> Result<Store> {
        if access == Access::ReadWrite && !path.exists() {
            create_initialised(path, busy_timeout)?;
        }
        check_store_permissions(path)?;
        let flags = match access {
            Access::ReadWrite => OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            Access::ReadOnly => OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        };
        let conn = Connection::open_with_flags(path, flags).map_err(|e| Error::store(path, e))?;
        let mut store = Store { conn, path: path.to_path_buf() };
        store.configure(busy_timeout, sync, access)?;
        Ok(store)
    }

    /// Opens an in-memory store (unit tests and `--dry-run` style checks).
    pub fn open_in_memory() -> Result<Store> {
        let conn = Connection::open_in_memory().map_err(|e| Error::store(":memory:", e))?;
        let mut store = Store { conn, path: PathBuf::from(":memory:") };
        store.migrate()?;
        Ok(store)
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying connection, for read-only reporting queries.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn configure(&mut self, busy_timeout: Duration, sync: Synchronous, access: Access) -> Result<()> {
        let path = self.path.clone();
        let e = |err| Error::store(&path, err);
        set_busy_handler(&mut self.conn, busy_timeout).map_err(e)?;
        if access == Access::ReadWrite {
            let version: i64 = self.conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(e)?;
            if version == 0 {
                // WAL is a property of the file: set once, at creation.
                let _: String = self
                    .conn
                    .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
                    .map_err(e)?;
                self.conn.pragma_update(None, "auto_vacuum", "INCREMENTAL").map_err(e)?;
            }
            self.conn.pragma_update(None, "synchronous", sync.pragma()).map_err(e)?;
            // Keep SQLite's checkpoint when the last connection closes: every
            // sshd connection is a fresh process, and without it the next one
            // must rebuild the WAL index from the whole WAL (measured: median
            // 44 ms instead of about 1 ms per attempt).
            // The common case (schema current) takes no write lock at all.
            if version != SCHEMA_VERSION {
                self.migrate()?;
            }
        } else {
            let version = self.schema_version()?;
            if version > SCHEMA_VERSION {
                return Err(Error::SchemaTooNew { path, found: version, supported: SCHEMA_VERSION });
            }
            if version < SCHEMA_VERSION {
                return Err(Error::Store {
                    path: path.clone(),
                    message: format!(
                        "schema version {version} is older than {SCHEMA_VERSION}: open it once as root to upgrade"
                    ),
                    source: None,
                });
            }
        }
        Ok(())
    }

    /// The schema version stored in the file.
    pub fn schema_version(&self) -> Result<i64> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| Error::store(&self.path, e))
    }

    /// Applies missing migrations, each in one IMMEDIATE transaction with
    /// its version bump, so a crash leaves either the old or the new schema.
    fn migrate(&mut self) -> Result<()> {
        let path = self.path.clone();
        let e = |err| Error::store(&path, err);
        loop {
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(e)?;
            let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(e)?;
            if version > SCHEMA_VERSION {
                return Err(Error::SchemaTooNew { path, found: version, supported: SCHEMA_VERSION });
            }
            if version == SCHEMA_VERSION {
                return Ok(());
            }
            tx.execute_batch(MIGRATIONS[version as usize]).map_err(e)?;
            tx.pragma_update(None, "user_version", version + 1).map_err(e)?;
            tx.commit().map_err(e)?;
        }
    }
}

/// The busy limit in milliseconds. Process-wide (SQLite's busy handler is
/// a plain function), so a handle used from another thread than the one
/// that opened it still waits as configured; every caller in one process
/// reads the same config.
static BUSY_LIMIT_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(2000);

thread_local! {
    /// When the current wait of this thread began.
    static BUSY_START: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
}

/// Waits for a lock held by another process in short, jittered sleeps (50 to
/// 400 µs) up to the busy limit. SQLite's own busy timeout sleeps 1, 2, 5 ...
/// 100 ms, so under 32 contending processes a waiter keeps waking up too
/// late and can starve past the timeout.
fn set_busy_handler(conn: &mut Connection, timeout: Duration) -> rusqlite::Result<()> {
    BUSY_LIMIT_MS.store(timeout.as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
    fn handler(count: i32) -> bool {
        let start = BUSY_START.with(|s| match (count, s.get()) {
            (0, _) | (_, None) => {
                let now = std::time::Instant::now();
                s.set(Some(now));
                now
            }
            (_, Some(start)) => start,
        });
        let limit = Duration::from_millis(BUSY_LIMIT_MS.load(std::sync::atomic::Ordering::Relaxed));
        if start.elapsed() >= limit {
            return false;
        }
        // Cheap jitter from the clock's low bits; no RNG dependency.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        std::thread::sleep(Duration::from_micros(50 + u64::from(nanos % 350)));
        true
    }
    conn.busy_handler(Some(handler))
}

/// Creates a fully initialised store (WAL, schema) under a private temp
/// name and links it into place, so that the many processes that may
/// create it at once on first use (one per sshd connection) never see a
/// half-made file or fight over switching it to WAL. One creator wins the
/// link; the others find the file there.
fn create_initialised(path: &Path, busy_timeout: Duration) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        match fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(Error::Io { path: dir.to_path_buf(), source: e }),
        }
    }
    // Unique per process *and* per call: threads of one process (a C ABI
    // caller, the tests) may race here too.
    static CREATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tmp = path.with_file_name(format!(
        ".{}.new-{}-{}",
        path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
        std::process::id(),
        CREATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let result = (|| {
        // The umask of whichever process comes first must not decide the mode.
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::Io { path: tmp.clone(), source: e })?;
        let conn = Connection::open(&tmp).map_err(|e| Error::store(&tmp, e))?;
        let mut store = Store { conn, path: tmp.clone() };
        store.configure(busy_timeout, Synchronous::Normal, Access::ReadWrite)?;
        drop(store);
        match fs::hard_link(&tmp, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(Error::Io { path: path.to_path_buf(), source: e }),
        }
    })();
    // Closing the last connection checkpointed and removed -wal/-shm; make sure.
    let _ = fs::remove_file(&tmp);
    let _ = fs::remove_file(format!("{}-wal", tmp.display()));
    let _ = fs::remove_file(format!("{}-shm", tmp.display()));
    result
}

/// The store decides who gets refused: it must be changeable by root (or
/// the current user) only.
fn check_store_permissions(path: &Path) -> Result<()> {
    let me = sys::effective_uid();
    let meta = fs::metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::Store {
                path: path.to_path_buf(),
                message: "does not exist yet (it is created by the first authentication or by banguardctl run as root)".into(),
                source: None,
            }
        } else {
            Error::Io { path: path.to_path_buf(), source: e }
        }
    })?;
    if meta.uid() != 0 && meta.uid() != me {
        return Err(Error::Insecure {
            path: path.to_path_buf(),
            message: format!("owned by uid {}: chown root:root {}", meta.uid(), path.display()),
        });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(Error::Insecure {
            path: path.to_path_buf(),
            message: format!("writable by group or others: chmod 600 {}", path.display()),
        });
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let dmeta = fs::metadata(dir).map_err(|e| Error::Io { path: dir.to_path_buf(), source: e })?;
        // A sticky world-writable dir (/tmp) is fine: others cannot replace our file.
        if dmeta.mode() & 0o022 != 0 && dmeta.mode() & 0o1000 == 0 {
            return Err(Error::Insecure {
                path: dir.to_path_buf(),
                message: format!(
                    "the store's directory is writable by group or others: chmod 700 {}",
                    dir.display()
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_with_safe_modes_and_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/banguard.db");
        let store = Store::open(&path, Duration::from_millis(100), Access::ReadWrite).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777, 0o700);
        let mode: String = store.conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        drop(store);
        // Reopening does not migrate again or fail.
        let store = Store::open(&path, Duration::from_millis(100), Access::ReadWrite).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn threads_creating_one_store_at_once_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db/banguard.db");
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    Store::open(&path, Duration::from_secs(2), Access::ReadWrite).map(|_| ())
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".new-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn refuses_newer_schema_and_group_writable_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("banguard.db");
        let store = Store::open(&path, Duration::from_millis(100), Access::ReadWrite).unwrap();
        store.conn.pragma_update(None, "user_version", 99).unwrap();
        drop(store);
        let e = Store::open(&path, Duration::from_millis(100), Access::ReadWrite).err().unwrap();
        assert!(matches!(e, Error::SchemaTooNew { found: 99, .. }), "{e}");
        assert!(e.to_string().contains("upgrade banguard"));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o664)).unwrap();
        let e = Store::open(&path, Duration::from_millis(100), Access::ReadWrite).err().unwrap();
        assert!(e.to_string().contains("chmod 600"), "{e}");
    }

    #[test]
    fn not_a_database_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("banguard.db");
        fs::write(&path, vec![0x5a; 8192]).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let e = Store::open(&path, Duration::from_millis(100), Access::ReadWrite).err().unwrap();
        assert!(e.to_string().contains("corrupt or not a banguard database"), "{e}");
    }

    #[test]
    fn read_only_open_of_missing_store_explains() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("banguard.db");
        let e = Store::open(&path, Duration::from_millis(100), Access::ReadOnly).err().unwrap();
        assert!(e.to_string().contains("does not exist yet"), "{e}");
        assert!(!path.exists());
    }
}
