//! The fleet's rows in the store: which local bans were posted (and
//! withdrawn), the export queue's back-off, the fleet's bans an admin
//! lifted here (held), and the exchange's own state. The bans taken from
//! the fleet are ordinary ban rows of origin `crowdsec`, found by what they
//! are (host and end), never by a decision id: ids start again at 1 when a
//! LAPI's database is reset.

use super::bans::{BAN_COLUMNS, ban_at, ban_from_row};
use crate::ban::Ban;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;

/// Active bans not of `skip_origin` not posted yet whose next try is due,
/// oldest first: (ban, tries so far).
pub(crate) fn to_export(conn: &Connection, now: i64, skip_origin: &str) -> rusqlite::Result<Vec<(Ban, u32)>> {
    let cols = BAN_COLUMNS.split(", ").map(|c| format!("b.{c}")).collect::<Vec<_>>().join(", ");
    let mut stmt = conn.prepare(&format!(
        "SELECT coalesce(e.tries, 0), {cols} FROM bans b LEFT JOIN fleet_exports e ON e.ban_id = b.id
         WHERE b.lifted IS NULL AND (b.expires IS NULL OR b.expires > ?1) AND b.origin != ?2
           AND coalesce(e.posted, 0) = 0 AND coalesce(e.next_try, 0) <= ?1
         ORDER BY b.id"
    ))?;
    let rows = stmt.query_map(params![now, skip_origin], |r| Ok((ban_at(r, 1)?, r.get(0)?)))?;
    rows.collect()
}

/// Bans not posted yet (due or not), for `status`.
pub(crate) fn pending_exports(conn: &Connection, now: i64, skip_origin: &str) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT count(*) FROM bans b LEFT JOIN fleet_exports e ON e.ban_id = b.id
         WHERE b.lifted IS NULL AND (b.expires IS NULL OR b.expires > ?1) AND b.origin != ?2
           AND coalesce(e.posted, 0) = 0",
        params![now, skip_origin],
        |r| r.get::<_, i64>(0).map(|n| n as u64),
    )
}

/// A ban is in the fleet (posted now, or found there already).
pub(crate) fn exported(conn: &Connection, ban_id: i64, alert_id: Option<i64>) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO fleet_exports (ban_id, posted, alert_id) VALUES (?1, 1, ?2)
         ON CONFLICT(ban_id) DO UPDATE SET posted = 1, alert_id = coalesce(?2, alert_id), last_error = NULL",
        params![ban_id, alert_id],
    )?;
    Ok(())
}

pub(crate) fn export_failed(
    conn: &Connection,
    ban_id: i64,
    error: &str,
    next_try: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO fleet_exports (ban_id, tries, next_try, last_error) VALUES (?1, 1, ?3, ?2)
         ON CONFLICT(ban_id) DO UPDATE SET tries = tries + 1, next_try = ?3, last_error = ?2",
        params![ban_id, error, next_try],
    )?;
    Ok(())
}

/// Posted bans lifted here and not withdrawn yet.
pub(crate) fn to_withdraw(conn: &Connection) -> rusqlite::Result<Vec<Ban>> {
    let cols = BAN_COLUMNS.split(", ").map(|c| format!("b.{c}")).collect::<Vec<_>>().join(", ");
    let mut stmt = conn.prepare(&format!(
        "SELECT {cols} FROM fleet_exports e JOIN bans b ON b.id = e.ban_id
         WHERE e.posted = 1 AND e.withdrawn = 0 AND b.lifted IS NOT NULL ORDER BY b.id"
    ))?;
    let rows = stmt.query_map([], ban_from_row)?;
    rows.collect()
}

pub(crate) fn withdrawn(conn: &Connection, ban_id: i64) -> rusqlite::Result<()> {
    conn.execute("UPDATE fleet_exports SET withdrawn = 1 WHERE ban_id = ?1", [ban_id])?;
    Ok(())
}

/// Active bans by host key: (ban id, end) pairs; `None`: permanent.
pub(crate) type ByHost = HashMap<String, Vec<(i64, Option<i64>)>>;

/// Active bans of `origin` (or, with `other`, of every origin but it).
pub(crate) fn active_by_host(
    conn: &Connection,
    now: i64,
    origin: &str,
    other: bool,
) -> rusqlite::Result<ByHost> {
    let op = if other { "!=" } else { "=" };
    let mut stmt = conn.prepare(&format!(
        "SELECT id, host, expires FROM bans
         WHERE origin {op} ?2 AND lifted IS NULL AND (expires IS NULL OR expires > ?1)"
    ))?;
    let mut rows = stmt.query(params![now, origin])?;
    let mut out = ByHost::new();
    while let Some(r) = rows.next()? {
        out.entry(r.get(1)?).or_default().push((r.get(0)?, r.get(2)?));
    }
    Ok(out)
}

/// Hosts whose fleet bans an admin lifted here, with the end of the
/// longest: a decision for such a host that ends no later stays lifted.
pub(crate) fn held(conn: &Connection, now: i64) -> rusqlite::Result<HashMap<String, i64>> {
    let mut stmt = conn.prepare("SELECT host, until FROM fleet_held WHERE until > ?1")?;
    let rows = stmt.query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// An admin lifted a fleet ban of `host` that ran until `until`.
pub(crate) fn hold(conn: &Connection, host: &str, until: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO fleet_held (host, until) VALUES (?1, ?2)
         ON CONFLICT(host) DO UPDATE SET until = max(until, ?2)",
    )?
    .execute(params![host, until])?;
    Ok(())
}

/// Forgets holds that ended before `now`; how many.
pub(crate) fn prune_held(conn: &Connection, now: i64) -> rusqlite::Result<u64> {
    Ok(conn.execute("DELETE FROM fleet_held WHERE until <= ?1", [now])? as u64)
}

/// Active bans of `origin`.
pub(crate) fn active_count(conn: &Connection, now: i64, origin: &str) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT count(*) FROM bans WHERE origin = ?2 AND lifted IS NULL AND (expires IS NULL OR expires > ?1)",
        params![now, origin],
        |r| r.get::<_, i64>(0).map(|n| n as u64),
    )
}

pub(crate) fn state(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM fleet_state WHERE key = ?1", [key], |r| r.get(0)).optional()
}

pub(crate) fn set_state(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO fleet_state (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2",
        params![key, value],
    )?;
    Ok(())
}
