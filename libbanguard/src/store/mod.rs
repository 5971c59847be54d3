//! The store: two SQLite files with one job each.
//!
//! - The store proper (`database`, `/var/lib/banguard/banguard.db`, WAL):
//!   bans, their history (events), mail notices and totals. Everything here
//!   must survive a reboot; it is written when a ban is made or lifted, by
//!   the sync job and by `banguardctl`, never for an ordinary attempt.
//! - The runtime state (`[store] runtime`, `/run/banguard/runtime.db`, on
//!   tmpfs, rollback journal, no fsync): attempts still inside findtime and
//!   a mirror of the active bans. The module's per-attempt transaction
//!   touches this file only, so it never waits for a disk (BENCHMARKS.md §1:
//!   every sshd connection is a fresh process, and with one WAL file each
//!   paid a checkpoint and its fsyncs on close). It is disposable: when it
//!   is missing (after a reboot) the first opener rebuilds it from the store.
//!
//! The mirror carries the store's ban generation it copied. Every change to
//! the bans runs with the runtime write lock held (lock order: runtime, then
//! store), bumps the generation and updates the mirror in the same critical
//! section; should a crash fall between the two commits, the generations
//! differ and the next ban change or sync run rebuilds the mirror.
//!
//! Every read-modify-write of the runtime state first waits for its turn
//! on a file lock beside it ([`crate::lock`]: asleep in the kernel, no polling, bounded by
//! `busy_timeout_ms`), then runs in `BEGIN IMMEDIATE`. The same turn makes
//! the rebuild after a reboot happen once: whoever gets it first builds,
//! the others wait and use the result.
//!
//! Everything here is opened as root in directories that only root can
//! write: [`check_dir`] refuses any other before a file is created, and no
//! file is opened through a symbolic link.

pub(crate) mod accounts;
pub(crate) mod attempts;
pub(crate) mod bans;
pub(crate) mod fleet;
pub(crate) mod history;
pub mod metrics;
pub(crate) mod outbox;
use crate::config::{Config, Synchronous};
use crate::error::{Error, Result};
use crate::lock::{self, Turn, TurnLock};
use crate::sys;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use std::cell::OnceCell;
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
    // 2: attempts move to the runtime state; the generation the mirror follows.
    r#"
    DROP TABLE attempts;
    DROP TABLE counters;
    CREATE TABLE generation (value INTEGER NOT NULL);
    INSERT INTO generation VALUES (0);
    "#,
    // 3: who made a ban (banguard, or a tool it was brought in from) and
    // the earlier bans that tool had counted.
    r#"
    ALTER TABLE bans ADD COLUMN origin TEXT NOT NULL DEFAULT 'banguard';
    ALTER TABLE bans ADD COLUMN carried INTEGER NOT NULL DEFAULT 0;
    "#,
    // 4: the fleet. Which LAPI decision each exported ban became (and
    // whether it was withdrawn), the export queue's back-off, which ban
    // each imported decision became, and the exchange's own state.
    r#"
    CREATE TABLE fleet_exports (
        ban_id      INTEGER PRIMARY KEY,
        decision_id INTEGER,
        withdrawn   INTEGER NOT NULL DEFAULT 0,
        tries       INTEGER NOT NULL DEFAULT 0,
        next_try    INTEGER NOT NULL DEFAULT 0,
        last_error  TEXT
    );
    CREATE INDEX fleet_exports_by_decision ON fleet_exports(decision_id);
    CREATE TABLE fleet_imports (
        decision_id INTEGER PRIMARY KEY,
        ban_id      INTEGER NOT NULL
    );
    CREATE TABLE fleet_state (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 5: the fleet's bans are found by what they are, not by decision id
    // (ids start again at 1 when a LAPI's database is reset; the stream
    // names a value's longest decision, not every one): the id table goes,
    // exports are marked posted, and an admin's unban of a fleet ban is
    // held by host until the end it had. The next exchange pulls in full.
    r#"
    ALTER TABLE fleet_exports ADD COLUMN posted INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE fleet_exports ADD COLUMN alert_id INTEGER;
    UPDATE fleet_exports SET posted = 1 WHERE decision_id IS NOT NULL;
    DROP TABLE fleet_imports;
    CREATE TABLE fleet_held (
        host  TEXT PRIMARY KEY,
        until INTEGER NOT NULL
    ) WITHOUT ROWID;
    DELETE FROM fleet_state WHERE key = 'last_pull';
    CREATE INDEX bans_by_origin ON bans(origin);
    "#,
    // 6: the account side: the networks each account logged in from (or
    // an admin named: `until` NULL), its locks (kept like bans: history,
    // the fleet, a reboot), its events, and when it started learning (0:
    // not yet; it starts with the first unfamiliar attempt, by the
    // engine's clock, new install or upgrade alike). Mail notices name a
    // ban or an account lock.
    r#"
    CREATE TABLE familiar (
        account TEXT NOT NULL,
        net     TEXT NOT NULL,
        until   INTEGER,
        origin  TEXT NOT NULL,
        PRIMARY KEY (account, net)
    ) WITHOUT ROWID;
    CREATE TABLE account_locks (
        id        INTEGER PRIMARY KEY,
        account   TEXT    NOT NULL,
        created   INTEGER NOT NULL,
        until     INTEGER NOT NULL,
        level     INTEGER NOT NULL,
        passwords INTEGER NOT NULL,
        sources   INTEGER NOT NULL,
        origin    TEXT    NOT NULL,
        lifted    INTEGER,
        exported  INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX account_locks_by_account ON account_locks(account, until);
    CREATE TABLE account_events (
        id      INTEGER PRIMARY KEY,
        at      INTEGER NOT NULL,
        account TEXT    NOT NULL,
        kind    TEXT    NOT NULL,
        detail  TEXT    NOT NULL
    );
    CREATE INDEX account_events_by_account ON account_events(account, at);
    CREATE TABLE account_meta (
        key   TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO account_meta VALUES ('learning_since', 0);
    ALTER TABLE outbox ADD COLUMN lock_id INTEGER;
    "#,
    // 7: the figures `banguardctl metrics` prints (`store::metrics`):
    // counters and gauges by name and rendered labels, the runtime
    // state's figures at the last fold, attempts per service and hour.
    r#"
    CREATE TABLE metrics (
        name   TEXT NOT NULL,
        labels TEXT NOT NULL,
        value  REAL NOT NULL,
        PRIMARY KEY (name, labels)
    ) WITHOUT ROWID;
    CREATE TABLE metrics_seen (
        service TEXT    NOT NULL,
        outcome TEXT    NOT NULL,
        value   INTEGER NOT NULL,
        PRIMARY KEY (service, outcome)
    ) WITHOUT ROWID;
    CREATE TABLE hourly (
        hour     INTEGER NOT NULL,
        service  TEXT    NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        refused  INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (hour, service)
    ) WITHOUT ROWID;
    "#,
];

/// Migrations of the runtime state file, numbered like [`MIGRATIONS`].
const RUNTIME_MIGRATIONS: &[&str] = &[
    // 1: the first runtime schema.
    r#"
    -- One row per attempt. state 0 = being checked (single-line mode counts
    -- it at once), 1 = failed, 2 = succeeded (given back: never counts).
    -- Ids grow with time: pruning walks them oldest first, so no index on
    -- the time is kept up to date for it.
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
    -- Covers the count of an attempt: the rows that still count (state 0
    -- and 1) of one host and service, without visiting given-back ones.
    CREATE INDEX attempts_by_host ON attempts(host, service, state, at);

    -- The active bans, copied from the store (same ids and columns).
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
    CREATE INDEX bans_by_host ON bans(host);
    CREATE TABLE ban_prefixes (
        family INTEGER NOT NULL,
        prefix INTEGER NOT NULL,
        PRIMARY KEY (family, prefix)
    ) WITHOUT ROWID;

    -- The store's ban generation the mirror holds; -1 = never copied.
    CREATE TABLE mirror (generation INTEGER NOT NULL);
    INSERT INTO mirror VALUES (-1);

    -- Failures counted per service since the runtime state was created
    -- (normally: since boot), for `banguardctl status`.
    CREATE TABLE totals (
        service TEXT PRIMARY KEY,
        failed  INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    "#,
    // 2: `totals.failed` counts only the failures that have left `attempts`
    // (pruned, consumed by a ban, cleared); `status` adds the rows still
    // there, so recording an attempt no longer writes a total.
    r#"
    UPDATE totals SET failed = max(failed - (SELECT count(*) FROM attempts
        WHERE attempts.service = totals.service AND attempts.state IN (0, 1)), 0);
    "#,
    // 3: attempts refused while banned, per mirrored ban, until the ban
    // goes to the kernel ([sync] escalate_after). A copy rebuilt from the
    // store starts at 0.
    r#"
    ALTER TABLE bans ADD COLUMN refused INTEGER NOT NULL DEFAULT 0;
    "#,
    // 4: the store's migration 3 in the copy.
    r#"
    ALTER TABLE bans ADD COLUMN origin TEXT NOT NULL DEFAULT 'banguard';
    ALTER TABLE bans ADD COLUMN carried INTEGER NOT NULL DEFAULT 0;
    "#,
    // 5: the account side. Which account an attempt was for and whether
    // it holds one of that account's budget (given back with it); each
    // account's bucket, lock and familiar networks, one row per account
    // (`store::accounts`; the empty name's row holds the side's figures).
    r#"
    ALTER TABLE attempts ADD COLUMN account TEXT;
    ALTER TABLE attempts ADD COLUMN reserved INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE accounts (
        account      TEXT PRIMARY KEY,
        used         INTEGER NOT NULL DEFAULT 0,
        leak_at      INTEGER NOT NULL DEFAULT 0,
        locked_until INTEGER NOT NULL DEFAULT 0,
        level        INTEGER NOT NULL DEFAULT 0,
        probe_used   INTEGER NOT NULL DEFAULT 0,
        tries        INTEGER NOT NULL DEFAULT 0,
        first_at     INTEGER NOT NULL DEFAULT 0,
        last_at      INTEGER NOT NULL DEFAULT 0,
        familiar     TEXT
    ) WITHOUT ROWID;
    INSERT INTO accounts (account, first_at) VALUES ('', 0);
    "#,
    // 6: figures for `banguardctl metrics`: attempts given back and
    // refused, per service, counted where the row leaves or the refusal
    // is answered (never for an ordinary attempt). Which file this is (so
    // that the first fold after a reboot starts from zero) goes in the
    // header's application_id, set by `migrate`: no table for every fresh
    // process to parse.
    r#"
    ALTER TABLE totals ADD COLUMN given_back INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE totals ADD COLUMN refused INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE totals ADD COLUMN refused_account INTEGER NOT NULL DEFAULT 0;
    "#,
];

/// The schema version of the store this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;
/// The schema version of the runtime state this build writes.
pub const RUNTIME_SCHEMA_VERSION: i64 = RUNTIME_MIGRATIONS.len() as i64;

/// Which of the two files, for schema handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Store,
    Runtime,
}

impl Kind {
    fn migrations(self) -> &'static [&'static str] {
        match self {
            Kind::Store => MIGRATIONS,
            Kind::Runtime => RUNTIME_MIGRATIONS,
        }
    }
}

/// An open store: the runtime state, and the store proper once needed.
pub struct Store {
    /// The runtime state (attempts, ban mirror), always open.
    pub(crate) runtime: Connection,
    runtime_path: PathBuf,
    /// The store proper, opened on first use: an ordinary attempt never
    /// needs it.
    durable: OnceCell<Connection>,
    path: PathBuf,
    busy_timeout: Duration,
    sync: Synchronous,
    access: Access,
    /// The turn lock of the runtime state (writers only).
    turn: Option<TurnLock>,
}

/// A transaction on the runtime state, taken in this process's turn. The
/// transaction ends (commit or rollback) before the turn is given up.
pub(crate) struct RuntimeTx<'a> {
    tx: Transaction<'a>,
    _turn: Option<Turn<'a>>,
}

impl<'a> std::ops::Deref for RuntimeTx<'a> {
    type Target = Transaction<'a>;
    fn deref(&self) -> &Transaction<'a> {
        &self.tx
    }
}

impl RuntimeTx<'_> {
    pub(crate) fn commit(self) -> rusqlite::Result<()> {
        let RuntimeTx { tx, _turn } = self;
        tx.commit()
    }
}

/// How to open the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Create the files and their directories if missing; migrate.
    ReadWrite,
    /// Never create or migrate (readers that are not root).
    ReadOnly,
}

/// Where the two files are and how to treat them.
#[derive(Debug, Clone)]
pub struct Location {
    pub database: PathBuf,
    pub runtime: PathBuf,
    pub busy_timeout: Duration,
    pub synchronous: Synchronous,
}

impl Location {
    /// The files a config names.
    pub fn of(config: &Config) -> Location {
        Location {
            database: config.database.clone(),
            runtime: config.store.runtime.clone(),
            busy_timeout: Duration::from_millis(u64::from(config.store.busy_timeout_ms)),
            synchronous: config.store.synchronous,
        }
    }
}

impl Store {
    /// Opens the runtime state at `loc.runtime`, creating it (and the
    /// store, if missing) with `ReadWrite`. The store proper is opened when
    /// first needed.
    pub fn open(loc: &Location, access: Access) -> Result<Store> {
        // The runtime state's directory is checked (and made) before
        // anything is created in it; the store's, before the store is.
        let durable = OnceCell::new();
        let turn = match access {
            Access::ReadWrite => {
                ensure_dir(&loc.runtime)?;
                Some(TurnLock::open(&lock::lock_path(&loc.runtime))?)
            }
            Access::ReadOnly => {
                if let Some(dir) = parent_dir(&loc.runtime).filter(|d| d.exists()) {
                    check_dir(dir)?;
                }
                None
            }
        };
        // After a reboot the first writer rebuilds the runtime state in its
        // turn; the others wait for that turn and then find the file.
        let rebuild_turn = match &turn {
            Some(t) if !loc.runtime.exists() => Some(t.acquire(loc.busy_timeout)?),
            _ => None,
        };
        let runtime = if loc.runtime.exists() {
            open_runtime(loc, access)?
        } else {
            // After a reboot: the bans are copied from the store.
            let store = open_durable(&loc.database, loc.busy_timeout, loc.synchronous, access)?;
            let copy = |conn: &Connection| {
                bans::mirror_rebuild(conn, &store)
                    .and_then(|()| accounts::mirror_rebuild(conn, &store, 0))
                    .map_err(|e| Error::store(&loc.database, e))
            };
            let runtime = match access {
                Access::ReadOnly => {
                    // Nothing counted since boot, and a reader creates nothing.
                    let memory = Connection::open_in_memory().map_err(|e| Error::store(":memory:", e))?;
                    memory
                        .execute_batch(RUNTIME_MIGRATIONS.concat().as_str())
                        .map_err(|e| Error::store(":memory:", e))?;
                    copy(&memory)?;
                    memory
                }
                Access::ReadWrite => {
                    create_initialised(&loc.runtime, |tmp| {
                        let mut conn = Connection::open(tmp).map_err(|e| Error::store(tmp, e))?;
                        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
                            .map_err(|e| Error::store(tmp, e))?;
                        migrate(&mut conn, tmp, Kind::Runtime)?;
                        let tx = conn
                            .transaction_with_behavior(TransactionBehavior::Immediate)
                            .map_err(|e| Error::store(tmp, e))?;
                        copy(&tx)?;
                        tx.commit().map_err(|e| Error::store(tmp, e))
                    })?;
                    open_runtime(loc, access)?
                }
            };
            let _ = durable.set(store);
            runtime
        };
        drop(rebuild_turn);
        Ok(Store {
            runtime,
            runtime_path: loc.runtime.clone(),
            durable,
            path: loc.database.clone(),
            busy_timeout: loc.busy_timeout,
            sync: loc.synchronous,
            access,
            turn,
        })
    }

    /// Starts a read-modify-write of the runtime state: waits for this
    /// process's turn (at most `busy_timeout_ms`), then `BEGIN IMMEDIATE`.
    pub(crate) fn begin(&self) -> Result<RuntimeTx<'_>> {
        BUSY_LIMIT.with(|l| l.set(Some(self.busy_timeout)));
        let turn = match &self.turn {
            Some(t) => Some(t.acquire(self.busy_timeout)?),
            None => None,
        };
        let tx = Transaction::new_unchecked(&self.runtime, TransactionBehavior::Immediate)
            .map_err(|e| Error::store(&self.runtime_path, e))?;
        Ok(RuntimeTx { tx, _turn: turn })
    }

    /// A store with both files in memory (unit tests).
    pub fn open_in_memory() -> Result<Store> {
        let mut runtime = Connection::open_in_memory().map_err(|e| Error::store(":memory:", e))?;
        migrate(&mut runtime, Path::new(":memory:"), Kind::Runtime)?;
        let mut durable = Connection::open_in_memory().map_err(|e| Error::store(":memory:", e))?;
        migrate(&mut durable, Path::new(":memory:"), Kind::Store)?;
        let cell = OnceCell::new();
        let _ = cell.set(durable);
        Ok(Store {
            runtime,
            runtime_path: PathBuf::from(":memory:"),
            durable: cell,
            path: PathBuf::from(":memory:"),
            busy_timeout: Duration::from_millis(2000),
            sync: Synchronous::Normal,
            access: Access::ReadWrite,
            turn: None,
        })
    }

    /// The store's file (bans and history).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The runtime state's file (attempts, ban mirror).
    pub fn runtime_path(&self) -> &Path {
        &self.runtime_path
    }

    /// The runtime state connection (attempts, ban mirror).
    #[cfg(test)]
    pub(crate) fn runtime_connection(&self) -> &Connection {
        &self.runtime
    }

    /// The store proper (bans, events, notices), opened on first use.
    pub(crate) fn durable(&self) -> Result<&Connection> {
        if let Some(c) = self.durable.get() {
            return Ok(c);
        }
        let conn = open_durable(&self.path, self.busy_timeout, self.sync, self.access)?;
        Ok(self.durable.get_or_init(|| conn))
    }

    /// Runs `write` on the store in its own IMMEDIATE transaction (callers
    /// on the attempt path hold the runtime state's write lock: lock order
    /// runtime, then store).
    pub(crate) fn write_durable<T>(
        &self,
        write: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let durable = self.durable()?;
        let e = |err| Error::store(&self.path, err);
        let dt = Transaction::new_unchecked(durable, TransactionBehavior::Immediate).map_err(e)?;
        let out = write(&dt).map_err(e)?;
        dt.commit().map_err(e)?;
        Ok(out)
    }

    /// Returns free pages of both files to the disk and folds the store's
    /// write-ahead log back (busy readers may keep that from completing:
    /// the next run tries again).
    pub(crate) fn vacuum(&self) -> Result<()> {
        self.runtime
            .execute_batch("PRAGMA incremental_vacuum(1000)")
            .map_err(|e| Error::store(&self.runtime_path, e))?;
        let durable = self.durable()?;
        durable.execute_batch("PRAGMA incremental_vacuum(1000)").map_err(|e| Error::store(&self.path, e))?;
        let _ = durable.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
        Ok(())
    }

    /// While the guard lives, the store's write-ahead log is folded back
    /// only by [`Store::checkpoint`], not by whichever commit fills it: a
    /// long run of batches, each under the turn lock, never pays a
    /// checkpoint's fsync while logins wait. The guard's drop folds it and
    /// turns the automatic fold back on.
    pub(crate) fn checkpoint_between_batches(&self) -> Result<CheckpointGuard<'_>> {
        self.durable()?
            .pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(|e| Error::store(&self.path, e))?;
        Ok(CheckpointGuard { store: self })
    }

    /// Folds the store's write-ahead log back as far as readers allow.
    pub(crate) fn checkpoint(&self) {
        if let Some(c) = self.durable.get() {
            let _ = c.execute_batch("PRAGMA wal_checkpoint(PASSIVE)");
        }
    }

    /// The schema version stored in the store proper.
    pub fn schema_version(&self) -> Result<i64> {
        self.durable()?
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| Error::store(&self.path, e))
    }
}

/// See [`Store::checkpoint_between_batches`].
pub(crate) struct CheckpointGuard<'a> {
    store: &'a Store,
}

impl Drop for CheckpointGuard<'_> {
    fn drop(&mut self) {
        self.store.checkpoint();
        if let Some(c) = self.store.durable.get() {
            // SQLite's default.
            let _ = c.pragma_update(None, "wal_autocheckpoint", 1000);
        }
    }
}

/// Opens the runtime state, which exists.
fn open_runtime(loc: &Location, access: Access) -> Result<Connection> {
    let path = &loc.runtime;
    check_store_permissions(path)?;
    let mut conn = open_file(path, access)?;
    let e = |err| Error::store(path, err);
    set_busy_handler(&mut conn, loc.busy_timeout).map_err(e)?;
    if access == Access::ReadWrite {
        // Disposable state: a sync would only wait for a disk (and on tmpfs
        // does nothing at all).
        conn.pragma_update(None, "synchronous", "OFF").map_err(e)?;
    }
    check_version(&mut conn, path, Kind::Runtime, access)?;
    Ok(conn)
}

/// Opens one file with the flags for `access`.
fn open_file(path: &Path, access: Access) -> Result<Connection> {
    let flags = match access {
        Access::ReadWrite => OpenFlags::SQLITE_OPEN_READ_WRITE,
        Access::ReadOnly => OpenFlags::SQLITE_OPEN_READ_ONLY,
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_NOFOLLOW;
    Connection::open_with_flags(path, flags).map_err(|e| Error::store(path, e))
}

/// Opens (creating if needed, with `ReadWrite`) the store proper.
fn open_durable(
    path: &Path,
    busy_timeout: Duration,
    sync: Synchronous,
    access: Access,
) -> Result<Connection> {
    if let Some(dir) = parent_dir(path).filter(|d| d.exists()) {
        check_dir(dir)?;
    }
    if access == Access::ReadWrite && !path.exists() {
        create_initialised(path, |tmp| {
            let mut conn = Connection::open(tmp).map_err(|e| Error::store(tmp, e))?;
            // WAL is a property of the file: set once, at creation.
            let _: String = conn
                .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
                .map_err(|e| Error::store(tmp, e))?;
            conn.pragma_update(None, "auto_vacuum", "INCREMENTAL").map_err(|e| Error::store(tmp, e))?;
            migrate(&mut conn, tmp, Kind::Store)
        })?;
    }
    check_store_permissions(path)?;
    let mut conn = open_file(path, access)?;
    let e = |err| Error::store(path, err);
    set_busy_handler(&mut conn, busy_timeout).map_err(e)?;
    if access == Access::ReadWrite {
        conn.pragma_update(None, "synchronous", sync.pragma()).map_err(e)?;
    }
    check_version(&mut conn, path, Kind::Store, access)?;
    Ok(conn)
}

/// Refuses a newer schema; migrates an older one (`ReadWrite`) or says how
/// to (`ReadOnly`).
fn check_version(conn: &mut Connection, path: &Path, kind: Kind, access: Access) -> Result<()> {
    let current = kind.migrations().len() as i64;
    let version: i64 =
        conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(|e| Error::store(path, e))?;
    if version > current {
        return Err(Error::SchemaTooNew { path: path.to_path_buf(), found: version, supported: current });
    }
    if version == current {
        // The common case takes no write lock at all.
        return Ok(());
    }
    if access == Access::ReadWrite {
        return migrate(conn, path, kind);
    }
    Err(Error::Store {
        path: path.to_path_buf(),
        message: format!("schema version {version} is older than {current}: open it once as root to upgrade"),
        source: None,
    })
}

/// Applies missing migrations, each in one IMMEDIATE transaction with its
/// version bump, so a crash leaves either the old or the new schema.
fn migrate(conn: &mut Connection, path: &Path, kind: Kind) -> Result<()> {
    let e = |err| Error::store(path, err);
    let migrations = kind.migrations();
    let current = migrations.len() as i64;
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(e)?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(e)?;
        if version > current {
            return Err(Error::SchemaTooNew { path: path.to_path_buf(), found: version, supported: current });
        }
        if version == current {
            return Ok(());
        }
        tx.execute_batch(migrations[version as usize]).map_err(e)?;
        if kind == Kind::Runtime && version == RUNTIME_INCARNATION_SET_AT {
            tx.pragma_update(None, "application_id", new_incarnation()).map_err(e)?;
        }
        tx.pragma_update(None, "user_version", version + 1).map_err(e)?;
        tx.commit().map_err(e)?;
    }
}

/// The runtime migration (index) after which the file gets its
/// incarnation: every new runtime state file, and one upgraded to it.
const RUNTIME_INCARNATION_SET_AT: i64 = 5;

/// A number that tells this runtime state file from the one before it
/// (the metrics' fold: `store::metrics::runtime_figures`): positive, from
/// the clock and the pid; not a secret.
fn new_incarnation() -> i32 {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 20) ^ (nanos >> 64) as u64;
    ((mixed ^ (mixed >> 31)) & 0x7fff_fffe) as i32 + 1
}

/// Runs `op` again when it failed with SQLITE_BUSY before `limit` passed.
/// The busy handler waits out ordinary lock contention; this catches the
/// few places where SQLite reports BUSY without calling it (a WAL being
/// recovered or deleted by another process's close). The whole operation
/// still ends within `limit` (plus one last try). The one busy policy:
/// the engine uses it with `busy_timeout_ms`, banguardctl with a longer
/// patience.
pub fn retry_busy<T>(limit: Duration, mut op: impl FnMut() -> Result<T>) -> Result<T> {
    let start = std::time::Instant::now();
    loop {
        match op() {
            Err(e) if e.is_busy() && start.elapsed() < limit => {
                std::thread::sleep(Duration::from_micros(
                    200 + u64::from(start.elapsed().subsec_nanos() % 800),
                ));
            }
            other => return other,
        }
    }
}

/// How long an admin's command (and the sync job) retries a busy store:
/// four times the busy timeout a login waits, so that it outlasts a burst
/// of logins.
pub fn admin_patience(config: &Config) -> Duration {
    4 * Duration::from_millis(u64::from(config.store.busy_timeout_ms))
}

/// The busy limit in milliseconds, process-wide (SQLite's busy handler is a
/// plain function): the fallback for a thread that has not opened or begun
/// on a store itself ([`BUSY_LIMIT`] wins).
static BUSY_LIMIT_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(2000);

thread_local! {
    /// When the current wait of this thread began.
    static BUSY_START: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
    /// The limit of the store this thread is working on, set by
    /// [`Store::begin`]: a process with stores of different configs (an
    /// application loading the module for two stacks, the test suite) waits
    /// as each one says. Without it, the process-wide limit.
    static BUSY_LIMIT: std::cell::Cell<Option<Duration>> = const { std::cell::Cell::new(None) };
}

/// Waits for a lock held by another process in short, jittered sleeps (50 to
/// 400 µs) up to the busy limit. SQLite's own busy timeout sleeps 1, 2, 5 ...
/// 100 ms, so under 32 contending processes a waiter keeps waking up too
/// late and can starve past the timeout.
fn set_busy_handler(conn: &mut Connection, timeout: Duration) -> rusqlite::Result<()> {
    BUSY_LIMIT_MS.store(timeout.as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
    BUSY_LIMIT.with(|l| l.set(Some(timeout)));
    fn handler(count: i32) -> bool {
        let start = BUSY_START.with(|s| match (count, s.get()) {
            (0, _) | (_, None) => {
                let now = std::time::Instant::now();
                s.set(Some(now));
                now
            }
            (_, Some(start)) => start,
        });
        let limit = BUSY_LIMIT.with(|l| l.get()).unwrap_or_else(|| {
            Duration::from_millis(BUSY_LIMIT_MS.load(std::sync::atomic::Ordering::Relaxed))
        });
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

/// Creates a fully initialised file (schema, and for the runtime state the
/// ban mirror) under a private temp name with `build`, then links it into
/// place, so that the many processes that may create it at once on first
/// use (one per sshd connection) never see a half-made file or fight over
/// switching it to WAL. One creator wins the link; the others find the
/// file there.
fn create_initialised(path: &Path, build: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    ensure_dir(path)?;
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
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::Io { path: tmp.clone(), source: e })?;
        build(&tmp)?;
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
    let _ = fs::remove_file(format!("{}-journal", tmp.display()));
    result
}

/// The directory a store file lives in (none for a bare file name).
fn parent_dir(path: &Path) -> Option<&Path> {
    path.parent().filter(|d| !d.as_os_str().is_empty())
}

/// Creates the directory of `file` (mode 0700, one level) if missing, after
/// checking the directory it goes into; then checks the directory itself.
fn ensure_dir(file: &Path) -> Result<()> {
    let Some(dir) = parent_dir(file) else { return Ok(()) };
    if !dir.exists() {
        if let Some(up) = parent_dir(dir).filter(|d| d.exists()) {
            check_dir(up)?;
        }
        match fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::Io { path: dir.to_path_buf(), source: e }),
        }
    }
    check_dir(dir)
}

/// Whether a file or directory is owned by someone banguard trusts: root,
/// or the user running it (tests, a non-root C ABI caller's own store).
fn trusted_owner(meta: &fs::Metadata) -> bool {
    meta.uid() == 0 || meta.uid() == sys::effective_uid()
}

/// A directory banguard writes in (as root) must be root's alone: owned by
/// root, writable by nobody else (a sticky world-writable one such as /tmp
/// included: another user could have placed a file or link there first),
/// reached through directories and links that nobody else controls.
/// Checked before anything is created in it.
pub fn check_dir(dir: &Path) -> Result<()> {
    let insecure = |path: &Path, message: String| Error::Insecure { path: path.to_path_buf(), message };
    let mut prefixes: Vec<&Path> = dir.ancestors().filter(|p| !p.as_os_str().is_empty()).collect();
    prefixes.reverse();
    for prefix in prefixes {
        let is_target = prefix == dir;
        let link =
            fs::symlink_metadata(prefix).map_err(|e| Error::Io { path: prefix.to_path_buf(), source: e })?;
        if link.file_type().is_symlink() && !trusted_owner(&link) {
            return Err(insecure(
                prefix,
                format!("is a symbolic link owned by uid {}: use a directory of root's own", link.uid()),
            ));
        }
        let meta = fs::metadata(prefix).map_err(|e| Error::Io { path: prefix.to_path_buf(), source: e })?;
        if !meta.is_dir() {
            return Err(Error::Store {
                path: prefix.to_path_buf(),
                message: "is not a directory, so the store cannot live below it".into(),
                source: None,
            });
        }
        if !trusted_owner(&meta) {
            return Err(insecure(
                prefix,
                format!("is owned by uid {}: chown root:root {}", meta.uid(), prefix.display()),
            ));
        }
        let others_write = meta.mode() & 0o022 != 0;
        let sticky = meta.mode() & 0o1000 != 0;
        if is_target && others_write {
            return Err(insecure(
                prefix,
                format!(
                    "the directory of banguard's state is writable by group or others{}: chmod 700 {}, \
                     or use a directory of root's own (the defaults are /var/lib/banguard and /run/banguard)",
                    if sticky {
                        " (sticky or not, others can place files and links there first)"
                    } else {
                        ""
                    },
                    prefix.display()
                ),
            ));
        }
        if !is_target && others_write && !sticky {
            return Err(insecure(
                prefix,
                format!(
                    "is writable by group or others, so the directory below it can be replaced: chmod go-w {}",
                    prefix.display()
                ),
            ));
        }
    }
    Ok(())
}

/// The store decides who gets refused: it must be root's (or the current
/// user's) file, not a link, and changeable by its owner only.
pub fn check_store_permissions(path: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(path).map_err(|e| {
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
    if meta.file_type().is_symlink() {
        return Err(Error::Insecure {
            path: path.to_path_buf(),
            message: "is a symbolic link; banguard does not follow links it did not make: remove it".into(),
        });
    }
    if !meta.is_file() {
        return Err(Error::Insecure { path: path.to_path_buf(), message: "is not a regular file".into() });
    }
    if !trusted_owner(&meta) {
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn loc(dir: &Path, db: &str, timeout_ms: u64) -> Location {
        Location {
            database: dir.join(db),
            runtime: dir.join("run/runtime.db"),
            busy_timeout: Duration::from_millis(timeout_ms),
            synchronous: Synchronous::Normal,
        }
    }

    #[test]
    fn creates_both_files_with_safe_modes_and_schemas() {
        let dir = tempfile::tempdir().unwrap();
        let l = loc(dir.path(), "sub/banguard.db", 100);
        let store = Store::open(&l, Access::ReadWrite).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        for file in [&l.database, &l.runtime] {
            assert_eq!(fs::metadata(file).unwrap().mode() & 0o777, 0o600, "{}", file.display());
            assert_eq!(fs::metadata(file.parent().unwrap()).unwrap().mode() & 0o777, 0o700);
        }
        let mode: String =
            store.durable().unwrap().pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        let mode: String = store.runtime.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        assert_eq!(mode, "delete", "the runtime state needs no -wal/-shm per process");
        let version: i64 = store.runtime.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, RUNTIME_SCHEMA_VERSION);
        drop(store);
        // Reopening does not migrate again or fail.
        let store = Store::open(&l, Access::ReadWrite).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn runtime_migration_2_keeps_only_the_failures_that_left_the_table_in_totals() {
        let dir = tempfile::tempdir().unwrap();
        let l = loc(dir.path(), "banguard.db", 100);
        drop(Store::open(&l, Access::ReadWrite).unwrap());
        fs::remove_file(&l.runtime).unwrap();
        // A version-1 runtime state: its totals counted every failure at once
        // (5 for sshd, 2 of them still in the table), given-back ones not.
        let old = Connection::open(&l.runtime).unwrap();
        old.execute_batch(RUNTIME_MIGRATIONS[0]).unwrap();
        old.execute_batch(
            "INSERT INTO attempts (host, service, at, state) VALUES
                 ('198.51.100.1/32', 'sshd', 1, 1), ('198.51.100.1/32', 'sshd', 2, 0),
                 ('198.51.100.2/32', 'sshd', 3, 2), ('198.51.100.3/32', 'vsftpd', 4, 1);
             INSERT INTO totals (service, failed) VALUES ('sshd', 5), ('vsftpd', 1), ('login', 2);
             PRAGMA user_version = 1;",
        )
        .unwrap();
        fs::set_permissions(&l.runtime, fs::Permissions::from_mode(0o600)).unwrap();
        drop(old);
        let store = Store::open(&l, Access::ReadWrite).unwrap();
        let version: i64 = store.runtime.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, RUNTIME_SCHEMA_VERSION);
        let totals: Vec<(String, i64)> = store
            .runtime
            .prepare("SELECT service, failed FROM totals ORDER BY service")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(totals, [("login".to_string(), 2), ("sshd".to_string(), 3), ("vsftpd".to_string(), 0)]);
    }

    /// Both files of the build before the account side upgrade in place:
    /// what they held stays, the account side starts empty and not yet
    /// learning.
    #[test]
    fn files_from_before_the_account_side_upgrade_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let l = loc(dir.path(), "banguard.db", 100);
        for (path, migrations) in [(&l.database, &MIGRATIONS[..5]), (&l.runtime, &RUNTIME_MIGRATIONS[..4])] {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::set_permissions(path.parent().unwrap(), fs::Permissions::from_mode(0o700)).unwrap();
            let old = Connection::open(path).unwrap();
            old.execute_batch(&migrations.concat()).unwrap();
            old.pragma_update(None, "user_version", migrations.len() as i64).unwrap();
            drop(old);
            fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
        }
        Connection::open(&l.runtime)
            .unwrap()
            .execute(
                "INSERT INTO attempts (host, service, at, state) VALUES ('198.51.100.1/32', 'sshd', 1, 1)",
                [],
            )
            .unwrap();
        let store = Store::open(&l, Access::ReadWrite).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let version: i64 = store.runtime.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, RUNTIME_SCHEMA_VERSION);
        let kept: i64 = store.runtime.query_row("SELECT count(*) FROM attempts", [], |r| r.get(0)).unwrap();
        assert_eq!(kept, 1);
        let view = accounts::view(&store.runtime, "alice").unwrap();
        assert_eq!((view.learning_since, view.tracked, view.row.is_none()), (0, 0, true));
        assert_eq!(accounts::learning_since(store.durable().unwrap()).unwrap(), 0);
        // The metrics' figures start from what the files held, in a file
        // that now knows which it is.
        let (incarnation, figures) = metrics::runtime_figures(&store.runtime).unwrap();
        assert!(incarnation > 0);
        assert_eq!(figures[&("sshd".to_string(), "checked".to_string())], 1);
        assert!(metrics::all(store.durable().unwrap()).unwrap().is_empty());
    }

    /// The figures read the attempt rows a slice at a time, all of them.
    #[test]
    fn runtime_figures_read_every_slice() {
        let dir = tempfile::tempdir().unwrap();
        let l = loc(dir.path(), "banguard.db", 100);
        let store = Store::open(&l, Access::ReadWrite).unwrap();
        store
            .runtime
            .execute_batch(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 25001)
                 INSERT INTO attempts (host, service, at, state)
                 SELECT 'h' || i, CASE WHEN i % 2 THEN 'sshd' ELSE 'vsftpd' END, i, CASE WHEN i % 5 = 0 THEN 2 ELSE 1 END FROM n;",
            )
            .unwrap();
        let (_, f) = metrics::runtime_figures(&store.runtime).unwrap();
        let get = |s: &str, o: &str| f.get(&(s.to_string(), o.to_string())).copied().unwrap_or(0);
        assert_eq!(get("sshd", "checked") + get("vsftpd", "checked"), 25001);
        assert_eq!(get("sshd", "given_back") + get("vsftpd", "given_back"), 5000);
    }

    /// Each new runtime state file is another incarnation (a reboot).
    #[test]
    fn every_new_runtime_state_file_is_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let l = loc(dir.path(), "banguard.db", 100);
        let first = metrics::runtime_figures(&Store::open(&l, Access::ReadWrite).unwrap().runtime).unwrap().0;
        let again = metrics::runtime_figures(&Store::open(&l, Access::ReadWrite).unwrap().runtime).unwrap().0;
        assert_eq!(first, again, "the same file");
        fs::remove_file(&l.runtime).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        let rebuilt =
            metrics::runtime_figures(&Store::open(&l, Access::ReadWrite).unwrap().runtime).unwrap().0;
        assert!(rebuilt > 0 && rebuilt != first);
    }

    #[test]
    fn an_attempt_does_not_open_the_store_proper() {
        let dir = tempfile::tempdir().unwrap();
        let l = loc(dir.path(), "banguard.db", 100);
        drop(Store::open(&l, Access::ReadWrite).unwrap());
        let store = Store::open(&l, Access::ReadWrite).unwrap();
        assert!(store.durable.get().is_none(), "an existing runtime state is enough to count");
    }

    #[test]
    fn threads_creating_one_store_at_once_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let l = loc(dir.path(), "db/banguard.db", 2000);
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || Store::open(&l, Access::ReadWrite).map(|_| ()))
            })
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
        for d in [l.database.parent().unwrap(), l.runtime.parent().unwrap()] {
            let leftovers: Vec<_> = fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".new-"))
                .collect();
            assert!(leftovers.is_empty(), "{leftovers:?}");
        }
    }

    #[test]
    fn refuses_newer_schema_and_group_writable_files() {
        let dir = tempfile::tempdir().unwrap();
        let l = loc(dir.path(), "banguard.db", 100);
        let store = Store::open(&l, Access::ReadWrite).unwrap();
        store.durable().unwrap().pragma_update(None, "user_version", 99).unwrap();
        drop(store);
        let e = Store::open(&l, Access::ReadWrite).unwrap().schema_version().err().unwrap();
        assert!(matches!(e, Error::SchemaTooNew { found: 99, .. }), "{e}");
        assert!(e.to_string().contains("upgrade banguard"));
        fs::set_permissions(&l.runtime, fs::Permissions::from_mode(0o664)).unwrap();
        let e = Store::open(&l, Access::ReadWrite).err().unwrap();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        assert!(e.to_string().contains("runtime.db"), "{e}");
    }

    #[test]
    fn unsafe_places_are_refused_before_anything_is_created() {
        let dir = tempfile::tempdir().unwrap();
        for (mode, needle) in
            [(0o1777, "sticky or not"), (0o777, "writable by group or others"), (0o770, "chmod 700")]
        {
            let shared = dir.path().join(format!("shared-{mode:o}"));
            fs::create_dir(&shared).unwrap();
            fs::set_permissions(&shared, fs::Permissions::from_mode(mode)).unwrap();
            let l = Location {
                database: shared.join("banguard.db"),
                runtime: shared.join("runtime.db"),
                busy_timeout: Duration::from_millis(100),
                synchronous: Synchronous::Normal,
            };
            let e = Store::open(&l, Access::ReadWrite).err().unwrap();
            assert!(matches!(e, Error::Insecure { .. }), "{e}");
            assert!(
                e.to_string().contains(needle) && e.to_string().contains(&shared.display().to_string()),
                "{e}"
            );
            assert_eq!(fs::read_dir(&shared).unwrap().count(), 0, "{mode:o}: nothing created");
        }
    }

    #[test]
    fn a_link_in_place_of_a_store_file_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.db");
        Connection::open(&victim)
            .unwrap()
            .execute_batch("CREATE TABLE v (x); INSERT INTO v VALUES (1);")
            .unwrap();
        let before = fs::read(&victim).unwrap();
        let l = loc(dir.path(), "banguard.db", 100);
        drop(Store::open(&l, Access::ReadWrite).unwrap());
        for target in [&l.runtime, &l.database] {
            let aside = target.with_extension("aside");
            fs::rename(target, &aside).unwrap();
            std::os::unix::fs::symlink(&victim, target).unwrap();
            let opened = Store::open(&l, Access::ReadWrite).and_then(|s| s.durable().map(|_| ()));
            let e = opened.err().unwrap();
            assert!(e.to_string().contains("symbolic link"), "{}: {e}", target.display());
            fs::remove_file(target).unwrap();
            fs::rename(&aside, target).unwrap();
        }
        assert_eq!(fs::read(&victim).unwrap(), before);
    }

    #[test]
    fn not_a_database_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let l = loc(dir.path(), "banguard.db", 100);
        fs::write(&l.database, vec![0x5a; 8192]).unwrap();
        fs::set_permissions(&l.database, fs::Permissions::from_mode(0o600)).unwrap();
        let e = Store::open(&l, Access::ReadWrite).err().unwrap();
        assert!(e.to_string().contains("corrupt or not a banguard database"), "{e}");
        assert!(!l.runtime.exists(), "no runtime state without the bans to copy");
    }

    #[test]
    fn read_only_open_of_missing_store_explains() {
        let dir = tempfile::tempdir().unwrap();
        let l = loc(dir.path(), "banguard.db", 100);
        let e = Store::open(&l, Access::ReadOnly).err().unwrap();
        assert!(e.to_string().contains("does not exist yet"), "{e}");
        assert!(!l.database.exists());
        assert!(!l.runtime.exists());
    }

    #[test]
    fn read_only_open_without_runtime_state_copies_the_bans_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let l = loc(dir.path(), "banguard.db", 100);
        drop(Store::open(&l, Access::ReadWrite).unwrap());
        fs::remove_file(&l.runtime).unwrap();
        let store = Store::open(&l, Access::ReadOnly).unwrap();
        let generation: i64 =
            store.runtime.query_row("SELECT generation FROM mirror", [], |r| r.get(0)).unwrap();
        assert_eq!(generation, 0);
        assert!(!l.runtime.exists(), "a reader creates nothing");
    }
}
