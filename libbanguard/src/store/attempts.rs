//! Attempt rows in the runtime state: recorded before a password is
//! checked (state 0 pending), marked failed (1) or given back (2), and
//! deleted with their failures added to the totals.

use super::history;
use rusqlite::{Connection, OptionalExtension, ToSql, Transaction, params};

/// The attempts of one host on one service that count now: failed ones and
/// pending ones (being checked), not given back. `state IN (0, 1)` lets
/// SQLite answer from the index alone.
pub(crate) fn counted(conn: &Connection, host: &str, service: &str, since: i64) -> rusqlite::Result<u32> {
    conn.query_row(
        "SELECT count(*) FROM attempts WHERE host = ?1 AND service = ?2 AND state IN (0, 1) AND at > ?3",
        params![host, service, since],
        |r| r.get(0),
    )
}

/// Which account an attempt was for, and whether it holds one of that
/// account's budget (given back with the attempt).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ForAccount<'a> {
    pub account: Option<&'a str>,
    pub reserved: bool,
}

/// A new attempt row (pending or already failed) of this process; its id.
pub(crate) fn insert(
    tx: &Transaction<'_>,
    host: &str,
    service: &str,
    user: Option<&str>,
    account: ForAccount<'_>,
    at: i64,
    failed: bool,
) -> rusqlite::Result<i64> {
    tx.prepare_cached(
        "INSERT INTO attempts (host, service, user, at, state, pid, ppid, account, reserved)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        host,
        service,
        user,
        at,
        i64::from(failed),
        std::process::id(),
        std::os::unix::process::parent_id(),
        account.account,
        account.reserved
    ])?;
    Ok(tx.last_insert_rowid())
}

/// Marks a pending attempt failed (the next attempt on the same handle).
pub(crate) fn mark_failed(tx: &Transaction<'_>, id: i64) -> rusqlite::Result<()> {
    tx.execute("UPDATE attempts SET state = 1 WHERE id = ?1 AND state = 0", [id])?;
    Ok(())
}

/// What a give-back found: `None` when no pending attempt matched;
/// otherwise the account whose budget the attempt held, if any.
pub(crate) type GivenBack = Option<Option<String>>;

/// Gives back the pending attempt `id` if it is this host's on this
/// service.
pub(crate) fn give_back(
    tx: &Transaction<'_>,
    id: i64,
    host: &str,
    service: &str,
) -> rusqlite::Result<GivenBack> {
    tx.prepare_cached(
        "UPDATE attempts SET state = 2 WHERE id = ?1 AND state = 0 AND host = ?2 AND service = ?3
         RETURNING CASE WHEN reserved THEN account END",
    )?
    .query_row(params![id, host, service], |r| r.get(0))
    .optional()
}

/// Gives back the newest pending attempt of this host, service and user
/// recorded since `since` by process `pid` or a child of it.
pub(crate) fn give_back_by_origin(
    tx: &Transaction<'_>,
    host: &str,
    service: &str,
    user: Option<&str>,
    since: i64,
    pid: u32,
) -> rusqlite::Result<GivenBack> {
    tx.prepare_cached(
        "UPDATE attempts SET state = 2 WHERE state = 0 AND id = (SELECT id FROM attempts
           WHERE host = ?1 AND service = ?2 AND at > ?3
             AND (pid = ?4 OR ppid = ?4) AND user IS ?5
           ORDER BY id DESC LIMIT 1)
         RETURNING CASE WHEN reserved THEN account END",
    )?
    .query_row(params![host, service, since, pid, user], |r| r.get(0))
    .optional()
}

/// The hosts (store keys) that have attempt rows.
pub(crate) fn hosts(tx: &Transaction<'_>) -> rusqlite::Result<Vec<String>> {
    let mut stmt = tx.prepare("SELECT DISTINCT host FROM attempts")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    rows.collect()
}

/// Deletes a host's attempts on one service, or on all when `None`.
pub(crate) fn delete_of(tx: &Transaction<'_>, host: &str, service: Option<&str>) -> rusqlite::Result<usize> {
    match service {
        Some(s) => delete(tx, "host = ?1 AND service = ?2", params![host, s]),
        None => delete(tx, "host = ?1", params![host]),
    }
}

/// Deletes the attempts that match `condition` (SQL over `attempts`),
/// adding the failures among them (pending or failed, not given back) to
/// the per-service totals. `totals.failed` counts the failures that have
/// left the table since the runtime state was created, and `status` adds
/// those still in it: so recording an attempt writes no total, one
/// statement fewer on the authentication path, whose every statement runs
/// in cold code in a fresh sshd process (BENCHMARKS.md §2).
pub(crate) fn delete(
    tx: &Transaction<'_>,
    condition: &str,
    params: &[&dyn ToSql],
) -> rusqlite::Result<usize> {
    let mut deleted = 0;
    // Per service: failures, and attempts given back (for the metrics).
    let mut left: Vec<(String, i64, i64)> = Vec::new();
    {
        let mut stmt =
            tx.prepare_cached(&format!("DELETE FROM attempts WHERE {condition} RETURNING service, state"))?;
        let mut rows = stmt.query(params)?;
        while let Some(row) = rows.next()? {
            deleted += 1;
            let failure = matches!(row.get::<_, i64>(1)?, 0 | 1);
            let service: String = row.get(0)?;
            let (f, g) = if failure { (1, 0) } else { (0, 1) };
            match left.iter_mut().find(|(s, _, _)| *s == service) {
                Some((_, nf, ng)) => {
                    *nf += f;
                    *ng += g;
                }
                None => left.push((service, f, g)),
            }
        }
    }
    for (service, failed, given_back) in left {
        history::add_total(tx, &service, "failed", failed)?;
        history::add_total(tx, &service, "given_back", given_back)?;
    }
    Ok(deleted)
}

/// Deletes, among the `limit` oldest attempts, those from `cutoff` or
/// before (too old to count for any service) and those beyond the newest
/// `keep` (a flood of unique addresses). Ids grow with time, so the oldest
/// rows come first and the work stays bounded without an index on the
/// time.
pub(crate) fn prune(tx: &Transaction<'_>, cutoff: i64, keep: i64, limit: i64) -> rusqlite::Result<u64> {
    let newest: i64 = tx.query_row("SELECT coalesce(max(id), 0) FROM attempts", [], |r| r.get(0))?;
    let n = delete(
        tx,
        "id IN (SELECT id FROM attempts ORDER BY id LIMIT ?3) AND (at <= ?1 OR id <= ?2)",
        params![cutoff, newest - keep, limit],
    )?;
    Ok(n as u64)
}

/// Pulls attempts from the future (a clock stepped back) to `now`.
pub(crate) fn pull_back(tx: &Transaction<'_>, now: i64) -> rusqlite::Result<u64> {
    Ok(tx.execute("UPDATE attempts SET at = ?1 WHERE at > ?1 + 60", [now])? as u64)
}

/// One host's attempts on one service, not given back.
pub(crate) struct Tally {
    /// The host's store key.
    pub host: String,
    pub service: String,
    pub count: u32,
    pub first: i64,
    pub last: i64,
}

/// Per host and service, the attempts since `since` not given back (on
/// `service` only, if given), newest last attempt first.
pub(crate) fn failing(conn: &Connection, since: i64, service: Option<&str>) -> rusqlite::Result<Vec<Tally>> {
    let mut stmt = conn.prepare(
        "SELECT host, service, count(*), min(at), max(at) FROM attempts
         WHERE at > ?1 AND (?2 IS NULL OR service = ?2) AND state != 2
         GROUP BY host, service ORDER BY max(at) DESC",
    )?;
    let rows = stmt.query_map(params![since, service], |r| {
        Ok(Tally { host: r.get(0)?, service: r.get(1)?, count: r.get(2)?, first: r.get(3)?, last: r.get(4)? })
    })?;
    rows.collect()
}

/// Failures still in the table, per service.
pub(crate) fn live_by_service(conn: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    let mut stmt =
        conn.prepare("SELECT service, count(*) FROM attempts WHERE state IN (0, 1) GROUP BY service")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}
