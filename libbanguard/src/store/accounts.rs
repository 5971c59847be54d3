//! The account side's rows. In the runtime state, one row per account
//! in `accounts`: its bucket and lock, and a copy of its familiar
//! networks (one row, so that an attempt reads one row: a fresh sshd
//! process compiles every statement it runs, BENCHMARKS.md §2). The row
//! of the empty name, never an account, holds the side's own figures:
//! `first_at` when learning started, `tries` how many accounts are
//! tracked. In the store: the familiar networks (learned from logins, or
//! named by an admin), the locks (history, the fleet, a reboot), the
//! accounts' events and when learning started. The runtime state's rows
//! are rebuilt from the store's after a reboot ([`mirror_rebuild`]).

use crate::account::{AccountLock, State};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

/// The name of the side's own row.
const SIDE: &str = "";

/// One account's row in the runtime state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Row {
    pub state: State,
    /// Unfamiliar attempts since `first_at` (refused ones too).
    pub tries: u32,
    pub first_at: i64,
    pub last_at: i64,
    /// Its familiar networks: (net, until; `None`: an admin's).
    pub familiar: Vec<(String, Option<i64>)>,
}

/// Familiar networks as the runtime state keeps them: "net until" items
/// separated by ',' (an admin's has no until). Nets and name labels never
/// hold ' ' or ',' (validated keys).
fn parse_familiar(text: Option<String>) -> Vec<(String, Option<i64>)> {
    text.unwrap_or_default()
        .split(',')
        .filter_map(|item| item.split_once(' '))
        .map(|(net, until)| (net.to_string(), until.parse().ok()))
        .collect()
}

fn format_familiar(list: &[(String, Option<i64>)]) -> Option<String> {
    if list.is_empty() {
        return None;
    }
    let items: Vec<String> = list
        .iter()
        .map(|(net, until)| format!("{net} {}", until.map(|u| u.to_string()).unwrap_or_default()))
        .collect();
    Some(items.join(","))
}

/// Everything the attempt path reads of an account: when learning
/// started, how many accounts are tracked, and its row.
#[derive(Debug, Default)]
pub(crate) struct View {
    pub learning_since: i64,
    pub tracked: u64,
    pub row: Option<Row>,
}

const ROW_COLUMNS: &str =
    "used, leak_at, locked_until, level, probe_used, tries, first_at, last_at, familiar, account";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        state: State {
            used: r.get(0)?,
            leak_at: r.get(1)?,
            locked_until: r.get(2)?,
            level: r.get(3)?,
            probe_used: r.get(4)?,
        },
        tries: r.get(5)?,
        first_at: r.get(6)?,
        last_at: r.get(7)?,
        familiar: parse_familiar(r.get(8)?),
    })
}

/// One statement: the side's row and the account's.
pub(crate) fn view(conn: &Connection, account: &str) -> rusqlite::Result<View> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {ROW_COLUMNS} FROM accounts WHERE account IN ('', ?1)"))?;
    let mut rows = stmt.query([account])?;
    let mut view = View::default();
    while let Some(r) = rows.next()? {
        let found = row(r)?;
        if r.get_ref(9)?.as_str()? == SIDE {
            view.learning_since = found.first_at;
            view.tracked = u64::from(found.tries);
        } else {
            view.row = Some(found);
        }
    }
    Ok(view)
}

/// An account's row, if it has one.
pub(crate) fn get(conn: &Connection, account: &str) -> rusqlite::Result<Option<Row>> {
    conn.prepare_cached(&format!("SELECT {ROW_COLUMNS} FROM accounts WHERE account = ?1"))?
        .query_row([account], row)
        .optional()
}

/// Writes an account's row; a new one counts as tracked.
pub(crate) fn put(conn: &Connection, account: &str, row: &Row, new: bool) -> rusqlite::Result<()> {
    let s = &row.state;
    conn.prepare_cached(
        "INSERT OR REPLACE INTO accounts
           (account, used, leak_at, locked_until, level, probe_used, tries, first_at, last_at, familiar)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        account,
        s.used,
        s.leak_at,
        s.locked_until,
        s.level,
        s.probe_used,
        row.tries,
        row.first_at,
        row.last_at,
        format_familiar(&row.familiar)
    ])?;
    if new {
        track(conn, 1)?;
    }
    Ok(())
}

/// Changes the count of accounts tracked.
fn track(conn: &Connection, delta: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE accounts SET tries = max(tries + ?1, 0) WHERE account = ''")?
        .execute([delta])?;
    Ok(())
}

/// Every account tried from unfamiliar sources, most recently tried first
/// (the CLI's list).
pub(crate) fn all(conn: &Connection) -> rusqlite::Result<Vec<(String, Row)>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {ROW_COLUMNS} FROM accounts WHERE account != '' AND (tries > 0 OR locked_until > 0)
         ORDER BY last_at DESC"
    ))?;
    let rows = stmt.query_map([], |r| Ok((r.get(9)?, row(r)?)))?;
    rows.collect()
}

/// Forgets accounts whose bucket is empty, whose lock has ended and that
/// have no familiar network, among the `limit` least recently tried; and
/// brings the others' learned networks up to date. How many went.
pub(crate) fn prune(tx: &Transaction<'_>, now: i64, refill: i64, limit: i64) -> rusqlite::Result<u64> {
    let n = tx.execute(
        "DELETE FROM accounts WHERE account IN (SELECT account FROM accounts
           WHERE account != '' AND familiar IS NULL AND locked_until <= ?1
             AND (used = 0 OR leak_at + used * ?2 <= ?1)
           ORDER BY last_at LIMIT ?3)",
        params![now, refill.max(1), limit],
    )?;
    track(tx, -(n as i64))?;
    Ok(n as u64)
}

/// Drops the learned networks that stopped being familiar from the
/// runtime state's rows.
pub(crate) fn prune_familiar_rows(tx: &Transaction<'_>, now: i64) -> rusqlite::Result<()> {
    let stale: Vec<(String, Row)> = {
        let mut stmt = tx.prepare(&format!(
            "SELECT {ROW_COLUMNS} FROM accounts WHERE familiar IS NOT NULL AND account != ''"
        ))?;
        let rows = stmt.query_map([], |r| Ok((r.get(9)?, row(r)?)))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    for (account, mut r) in stale {
        let before = r.familiar.len();
        r.familiar.retain(|(_, until)| until.is_none_or(|u| u > now));
        if r.familiar.len() != before {
            put(tx, &account, &r, false)?;
        }
    }
    Ok(())
}

/// Empties an account's bucket and lifts its lock (an admin's unlock),
/// keeping its familiar networks; whether there was anything to empty.
pub(crate) fn forget(tx: &Transaction<'_>, account: &str) -> rusqlite::Result<bool> {
    let Some(r) = get(tx, account)? else { return Ok(false) };
    let had = r.state != State::default() || r.tries > 0;
    put(tx, account, &Row { familiar: r.familiar, ..Row::default() }, false)?;
    Ok(had)
}

/// The distinct sources of an account's unfamiliar attempts since
/// `since` that did not succeed, among the newest [`SOURCES_SCANNED`]
/// attempts (bounded work under the lock, whatever the table holds).
pub(crate) fn sources(conn: &Connection, account: &str, since: i64) -> rusqlite::Result<u32> {
    conn.prepare_cached(
        "SELECT count(DISTINCT host) FROM
           (SELECT host, account, at, state FROM attempts ORDER BY id DESC LIMIT ?3)
         WHERE account = ?1 AND at > ?2 AND state != 2",
    )?
    .query_row(params![account, since, SOURCES_SCANNED], |r| r.get(0))
}

/// Attempts looked at to count an account's sources when it locks (under
/// the turn lock: about 0.3 ms at most; a spray's attempts are the newest).
const SOURCES_SCANNED: i64 = 5_000;

/// Attempts looked at to count every account's sources (the CLI's list):
/// one pass, whatever the number of accounts.
const SOURCES_LISTED: i64 = 100_000;

/// The distinct sources of each account's unfamiliar attempts since
/// `since` that did not succeed, among the newest [`SOURCES_LISTED`]
/// attempts, in one pass.
pub(crate) fn sources_by_account(
    conn: &Connection,
    since: i64,
) -> rusqlite::Result<std::collections::HashMap<String, u32>> {
    let mut stmt = conn.prepare(
        "SELECT account, count(DISTINCT host) FROM
           (SELECT host, account, at, state FROM attempts ORDER BY id DESC LIMIT ?2)
         WHERE account IS NOT NULL AND at > ?1 AND state != 2 GROUP BY account",
    )?;
    let rows = stmt.query_map(params![since, SOURCES_LISTED], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// Makes `net` familiar for `account` in the runtime state (`until`
/// `None`: an admin's, for good), keeping at most `max` learned ones.
pub(crate) fn set_familiar(
    conn: &Connection,
    account: &str,
    net: &str,
    until: Option<i64>,
    max: u32,
) -> rusqlite::Result<()> {
    let existing = get(conn, account)?;
    let new = existing.is_none();
    let mut r = existing.unwrap_or_default();
    match r.familiar.iter_mut().find(|(n, _)| n == net) {
        // An admin's network is never shortened by a login.
        Some((_, u)) => *u = if u.is_none() || until.is_none() { None } else { (*u).max(until) },
        None => r.familiar.push((net.to_string(), until)),
    }
    let mut learned: Vec<(String, i64)> =
        r.familiar.iter().filter_map(|(n, u)| u.map(|u| (n.clone(), u))).collect();
    if learned.len() > max as usize {
        // The ones that stay familiar longest are kept.
        learned.sort_unstable_by_key(|l| std::cmp::Reverse(l.1));
        let dropped: Vec<String> = learned.split_off(max as usize).into_iter().map(|(n, _)| n).collect();
        r.familiar.retain(|(n, u)| u.is_none() || !dropped.contains(n));
    }
    put(conn, account, &r, new)
}

/// Removes a familiar network from the runtime state's row.
pub(crate) fn unset_familiar(conn: &Connection, account: &str, net: &str) -> rusqlite::Result<()> {
    if let Some(mut r) = get(conn, account)? {
        r.familiar.retain(|(n, _)| n != net);
        put(conn, account, &r, false)?;
    }
    Ok(())
}

/// Makes `net` familiar for `account` until `until` (`None`: for good),
/// in the store. An admin's network is never shortened by a login.
pub(crate) fn add_familiar(
    conn: &Connection,
    account: &str,
    net: &str,
    until: Option<i64>,
    origin: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO familiar (account, net, until, origin) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(account, net) DO UPDATE SET
           until = CASE WHEN familiar.until IS NULL OR ?3 IS NULL THEN NULL ELSE max(familiar.until, ?3) END,
           origin = CASE WHEN familiar.until IS NULL THEN familiar.origin ELSE ?4 END",
    )?
    .execute(params![account, net, until, origin])?;
    Ok(())
}

/// Keeps at most `max` learned networks for `account` (the ones that
/// stay familiar longest), in the store; how many went.
pub(crate) fn trim_learned(conn: &Connection, account: &str, max: u32) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "DELETE FROM familiar WHERE account = ?1 AND until IS NOT NULL AND net NOT IN
           (SELECT net FROM familiar WHERE account = ?1 AND until IS NOT NULL ORDER BY until DESC LIMIT ?2)",
    )?
    .execute(params![account, max])
}

/// Removes one familiar network from the store; whether there was one.
pub(crate) fn remove_familiar(conn: &Connection, account: &str, net: &str) -> rusqlite::Result<bool> {
    Ok(conn.execute("DELETE FROM familiar WHERE account = ?1 AND net = ?2", params![account, net])? > 0)
}

/// Forgets learned networks that stopped being familiar, in the store.
pub(crate) fn prune_familiar(conn: &Connection, now: i64) -> rusqlite::Result<u64> {
    Ok(conn.execute("DELETE FROM familiar WHERE until IS NOT NULL AND until <= ?1", [now])? as u64)
}

/// A familiar row: (account, net, until, origin).
pub(crate) type FamiliarRow = (String, String, Option<i64>, String);

/// Every familiar network, by account (the CLI's list).
pub(crate) fn all_familiar(conn: &Connection) -> rusqlite::Result<Vec<FamiliarRow>> {
    let mut stmt = conn.prepare("SELECT account, net, until, origin FROM familiar ORDER BY account, net")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    rows.collect()
}

/// Learning starts at `now` unless it started before (in the store):
/// when it started.
pub(crate) fn start_learning(dt: &Transaction<'_>, now: i64) -> rusqlite::Result<i64> {
    dt.execute("UPDATE account_meta SET value = ?1 WHERE key = 'learning_since' AND value = 0", [now])?;
    learning_since(dt)
}

/// The runtime state's copy of when learning started.
pub(crate) fn set_learning_since(conn: &Connection, since: i64) -> rusqlite::Result<()> {
    conn.execute("UPDATE accounts SET first_at = ?1 WHERE account = ''", [since])?;
    Ok(())
}

/// When the account side started learning, in the store (0: not yet).
pub(crate) fn learning_since(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT value FROM account_meta WHERE key = 'learning_since'", [], |r| r.get(0))
}

const LOCK_COLUMNS: &str = "id, account, created, until, level, passwords, sources, origin, lifted, exported";

fn lock_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AccountLock> {
    Ok(AccountLock {
        id: r.get(0)?,
        account: r.get(1)?,
        created: r.get(2)?,
        until: r.get(3)?,
        level: r.get(4)?,
        passwords: r.get(5)?,
        sources: r.get(6)?,
        origin: r.get(7)?,
        lifted: r.get(8)?,
        exported: r.get(9)?,
    })
}

/// Stores a lock; its id.
pub(crate) fn insert_lock(dt: &Transaction<'_>, lock: &AccountLock) -> rusqlite::Result<i64> {
    dt.prepare_cached(
        "INSERT INTO account_locks (account, created, until, level, passwords, sources, origin)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        lock.account,
        lock.created,
        lock.until,
        lock.level,
        lock.passwords,
        lock.sources,
        lock.origin
    ])?;
    Ok(dt.last_insert_rowid())
}

/// Locks in force at `now` (of one account, or all), longest first.
pub(crate) fn active_locks(
    conn: &Connection,
    account: Option<&str>,
    now: i64,
) -> rusqlite::Result<Vec<AccountLock>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {LOCK_COLUMNS} FROM account_locks
         WHERE lifted IS NULL AND until > ?1 AND (?2 IS NULL OR account = ?2) ORDER BY until DESC, id"
    ))?;
    let rows = stmt.query_map(params![now, account], lock_row)?;
    rows.collect()
}

/// Every lock still in the history, newest first.
pub(crate) fn all_locks(conn: &Connection) -> rusqlite::Result<Vec<AccountLock>> {
    let mut stmt = conn.prepare(&format!("SELECT {LOCK_COLUMNS} FROM account_locks ORDER BY id DESC"))?;
    let rows = stmt.query_map([], lock_row)?;
    rows.collect()
}

/// One lock by id.
pub(crate) fn lock_by_id(conn: &Connection, id: i64) -> rusqlite::Result<Option<AccountLock>> {
    conn.query_row(&format!("SELECT {LOCK_COLUMNS} FROM account_locks WHERE id = ?1"), [id], lock_row)
        .optional()
}

/// Lifts a lock at `now`.
pub(crate) fn lift_lock(dt: &Transaction<'_>, id: i64, now: i64) -> rusqlite::Result<()> {
    dt.execute("UPDATE account_locks SET lifted = ?2 WHERE id = ?1 AND lifted IS NULL", params![id, now])?;
    Ok(())
}

/// Marks a lock as in the fleet (1) or withdrawn from it (2).
pub(crate) fn lock_exported(conn: &Connection, id: i64, state: i64) -> rusqlite::Result<()> {
    conn.execute("UPDATE account_locks SET exported = ?2 WHERE id = ?1", params![id, state])?;
    Ok(())
}

/// Locks posted to the fleet and lifted here since, oldest first.
pub(crate) fn locks_to_withdraw(conn: &Connection) -> rusqlite::Result<Vec<AccountLock>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {LOCK_COLUMNS} FROM account_locks WHERE exported = 1 AND lifted IS NOT NULL ORDER BY id"
    ))?;
    let rows = stmt.query_map([], lock_row)?;
    rows.collect()
}

/// Locks made here, in force, not in the fleet yet, oldest first.
pub(crate) fn locks_to_export(
    conn: &Connection,
    now: i64,
    origin: &str,
) -> rusqlite::Result<Vec<AccountLock>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {LOCK_COLUMNS} FROM account_locks
         WHERE lifted IS NULL AND until > ?1 AND origin = ?2 AND exported = 0 ORDER BY id"
    ))?;
    let rows = stmt.query_map(params![now, origin], lock_row)?;
    rows.collect()
}

/// Forgets locks that ended before `before`; how many.
pub(crate) fn prune_locks(dt: &Transaction<'_>, before: i64) -> rusqlite::Result<u64> {
    // The newest row stays: ids are never given again (the metrics count
    // locks by id).
    Ok(dt.execute(
        "DELETE FROM account_locks WHERE coalesce(lifted, until) < ?1 AND id < (SELECT max(id) FROM account_locks)",
        [before],
    )? as u64)
}

/// One line of an account's history.
pub(crate) fn add_event(
    dt: &Transaction<'_>,
    now: i64,
    account: &str,
    kind: &str,
    detail: &str,
) -> rusqlite::Result<()> {
    dt.prepare_cached("INSERT INTO account_events (at, account, kind, detail) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![now, account, kind, detail])?;
    Ok(())
}

/// An account's events (or every account's), oldest first: (at, account,
/// kind, detail).
pub(crate) fn events(
    conn: &Connection,
    account: Option<&str>,
) -> rusqlite::Result<Vec<(i64, String, String, String)>> {
    let mut stmt = conn.prepare(
        "SELECT at, account, kind, detail FROM account_events WHERE ?1 IS NULL OR account = ?1 ORDER BY at, id",
    )?;
    let rows = stmt.query_map([account], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    rows.collect()
}

/// Forgets events from before `before`; how many.
pub(crate) fn prune_events(dt: &Transaction<'_>, before: i64) -> rusqlite::Result<u64> {
    Ok(dt.execute("DELETE FROM account_events WHERE at < ?1", [before])? as u64)
}

/// Brings the runtime state's account rows from the store (a runtime
/// state made after a reboot): familiar networks, when learning started,
/// and the locks not lifted (a reboot does not end them; those that
/// ended before `now` only keep the next lock's doubling until the
/// bucket leaks).
pub(crate) fn mirror_rebuild(rt: &Connection, durable: &Connection, now: i64) -> rusqlite::Result<()> {
    set_learning_since(rt, learning_since(durable)?)?;
    let mut rows: std::collections::BTreeMap<String, Row> = std::collections::BTreeMap::new();
    for (account, net, until, _) in all_familiar(durable)? {
        rows.entry(account).or_default().familiar.push((net, until));
    }
    for lock in active_locks(durable, None, now)? {
        let row = rows
            .entry(lock.account.clone())
            .or_insert_with(|| Row { first_at: lock.created, ..Row::default() });
        // Full, as when it locked: a reboot gives a spray no new budget.
        row.state.used = row.state.used.max(lock.passwords);
        row.state.leak_at = row.state.leak_at.max(lock.created);
        row.state.locked_until = row.state.locked_until.max(lock.until);
        row.state.level = row.state.level.max(lock.level);
        row.last_at = row.last_at.max(lock.created);
        if row.first_at == 0 {
            row.first_at = lock.created;
        }
    }
    for (account, row) in &rows {
        let new = get(rt, account)?.is_none();
        put(rt, account, row, new)?;
    }
    Ok(())
}
