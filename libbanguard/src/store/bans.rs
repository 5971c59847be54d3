//! Ban rows: how a ban is read from either file, written and looked up,
//! and the runtime state's copy of the active bans (the mirror), kept in
//! step with the store.

use super::Store;
use crate::addr::{self, HostKey};
use crate::ban::{ALL_SERVICES, Ban, BanOrigin};
use crate::error::{Error, Result};
use ipnet::IpNet;
use rusqlite::types::Value;
use rusqlite::{Connection, Row, Transaction, TransactionBehavior, params, params_from_iter};
use std::net::IpAddr;

pub(crate) const BAN_COLUMNS: &str = "id, host, service, created, expires, lifted, reason, failures, prior_bans, firewall, pushed, origin, carried";

pub(crate) fn ban_from_row(r: &Row<'_>) -> rusqlite::Result<Ban> {
    ban_at(r, 0)
}

/// The ban whose [`BAN_COLUMNS`] start at column `first` of a row (a
/// query that selects something before them).
pub(crate) fn ban_at(r: &Row<'_>, first: usize) -> rusqlite::Result<Ban> {
    let host: String = r.get(first + 1)?;
    Ok(Ban {
        id: r.get(first)?,
        host: HostKey::from_db_key(&host).unwrap_or(HostKey::Name(host)),
        service: r.get(first + 2)?,
        created: r.get(first + 3)?,
        expires: r.get(first + 4)?,
        lifted: r.get(first + 5)?,
        reason: r.get(first + 6)?,
        failures: r.get(first + 7)?,
        prior_bans: r.get(first + 8)?,
        firewall: r.get(first + 9)?,
        pushed: r.get(first + 10)?,
        origin: BanOrigin::from_name(&r.get::<_, String>(first + 11)?),
        carried: r.get(first + 12)?,
    })
}

pub(crate) fn family_prefix(key: &HostKey) -> (i64, i64) {
    match key {
        HostKey::Net(IpNet::V4(n)) => (4, i64::from(n.prefix_len())),
        HostKey::Net(IpNet::V6(n)) => (6, i64::from(n.prefix_len())),
        HostKey::Name(_) => (0, 0),
    }
}

/// What a change to the store's bans does to the runtime state's mirror.
#[derive(Debug, Default)]
pub(crate) struct BanDelta {
    /// New active bans to copy.
    pub added: Vec<Ban>,
    /// Ids of bans that stopped being active.
    pub removed: Vec<i64>,
    /// Copy the whole mirror afresh (a change the lists cannot describe).
    pub rebuild: bool,
}

impl BanDelta {
    pub(crate) fn added(bans: Vec<Ban>) -> BanDelta {
        BanDelta { added: bans, ..BanDelta::default() }
    }
}

/// Runs `change` on the store in its own IMMEDIATE transaction while `rt`
/// (the runtime state's write lock, always taken first) is held, bumps the
/// ban generation, and brings the mirror in `rt` along. A mirror that was
/// not at the generation the change started from (a crash between the two
/// commits, a runtime state rebuilt meanwhile) is copied afresh.
pub(crate) fn change_bans<T>(
    rt: &Transaction<'_>,
    store: &Store,
    change: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<(T, BanDelta)>,
) -> Result<T> {
    let durable = store.durable()?;
    let de = |err| Error::store(store.path(), err);
    let re = |err| Error::store(store.runtime_path(), err);
    let dt = Transaction::new_unchecked(durable, TransactionBehavior::Immediate).map_err(de)?;
    let before: i64 = dt.query_row("SELECT value FROM generation", [], |r| r.get(0)).map_err(de)?;
    let (out, delta) = change(&dt).map_err(de)?;
    dt.execute("UPDATE generation SET value = ?1", [before + 1]).map_err(de)?;
    dt.commit().map_err(de)?;
    let mirrored: i64 = rt.query_row("SELECT generation FROM mirror", [], |r| r.get(0)).map_err(re)?;
    if delta.rebuild || mirrored != before {
        return mirror_rebuild(rt, durable).map(|()| out).map_err(re);
    }
    for ban in &delta.added {
        mirror_insert(rt, ban).map_err(re)?;
    }
    for id in &delta.removed {
        rt.prepare_cached("DELETE FROM bans WHERE id = ?1")
            .and_then(|mut st| st.execute([id]))
            .map_err(re)?;
    }
    rt.execute("UPDATE mirror SET generation = ?1", [before + 1]).map_err(re)?;
    Ok(out)
}

/// Every column of a ban row, in both files.
const MIRROR_COLUMNS: &str = "id, host, family, prefix, service, created, expires, lifted, reason, failures, prior_bans, firewall, pushed, origin, carried";

fn mirror_insert(rt: &Connection, ban: &Ban) -> rusqlite::Result<()> {
    let (family, prefix) = family_prefix(&ban.host);
    rt.prepare_cached(&format!(
        "INSERT OR REPLACE INTO bans ({MIRROR_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
    ))?
    .execute(params![
        ban.id,
        ban.host.db_key(),
        family,
        prefix,
        ban.service,
        ban.created,
        ban.expires,
        ban.lifted,
        ban.reason,
        ban.failures,
        ban.prior_bans,
        ban.firewall,
        ban.pushed,
        ban.origin.name(),
        ban.carried
    ])?;
    if family != 0 {
        rt.prepare_cached("INSERT OR IGNORE INTO ban_prefixes (family, prefix) VALUES (?1, ?2)")?
            .execute(params![family, prefix])?;
    }
    Ok(())
}

/// Replaces the mirror in `rt` with the store's bans that are not lifted,
/// read in one transaction together with their generation. Expired ones are
/// copied too (lookups ignore them; `maintain` drops them), so the copy
/// needs no clock.
pub(crate) fn mirror_rebuild(rt: &Connection, durable: &Connection) -> rusqlite::Result<()> {
    let dt = Transaction::new_unchecked(durable, TransactionBehavior::Deferred)?;
    let generation: i64 = dt.query_row("SELECT value FROM generation", [], |r| r.get(0))?;
    rt.execute_batch("DELETE FROM bans; DELETE FROM ban_prefixes;")?;
    {
        let mut read = dt.prepare(&format!("SELECT {MIRROR_COLUMNS} FROM bans WHERE lifted IS NULL"))?;
        let mut write = rt.prepare(&format!(
            "INSERT INTO bans ({MIRROR_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
        ))?;
        let mut rows = read.query([])?;
        while let Some(row) = rows.next()? {
            let values = (0..15).map(|i| row.get::<_, Value>(i)).collect::<rusqlite::Result<Vec<_>>>()?;
            write.execute(params_from_iter(values))?;
        }
        let mut prefixes = dt.prepare("SELECT family, prefix FROM ban_prefixes")?;
        let mut add = rt.prepare("INSERT OR IGNORE INTO ban_prefixes (family, prefix) VALUES (?1, ?2)")?;
        let mut rows = prefixes.query([])?;
        while let Some(row) = rows.next()? {
            add.execute(params![row.get::<_, i64>(0)?, row.get::<_, i64>(1)?])?;
        }
    }
    rt.execute("UPDATE mirror SET generation = ?1", [generation])?;
    dt.finish()
}

/// The active ban on `key` (or any network containing `addr`) for
/// `service` or all services; the longest one if several.
pub(crate) fn active_ban(
    tx: &Transaction<'_>,
    key: &HostKey,
    addr: Option<IpAddr>,
    service: &str,
    now: i64,
) -> rusqlite::Result<Option<Ban>> {
    let mut keys = vec![key.db_key()];
    if let Some(a) = addr {
        let family = if a.is_ipv4() { 4 } else { 6 };
        let mut stmt = tx.prepare_cached("SELECT prefix FROM ban_prefixes WHERE family = ?1")?;
        let prefixes = stmt.query_map([family], |r| r.get::<_, u8>(0))?;
        for p in prefixes {
            let p = p?;
            let k = HostKey::Net(addr::mask(a, p, p)).db_key();
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    // A plain lookup by host, filtered and ranked here: a host has a handful
    // of rows, and in a fresh sshd process the IN / ORDER BY form of this
    // query cost 0.17 ms of cold SQLite code (BENCHMARKS.md §2).
    let sql = format!("SELECT {BAN_COLUMNS} FROM bans WHERE host = ?1 AND lifted IS NULL");
    let mut best: Option<Ban> = None;
    let mut stmt = tx.prepare_cached(&sql)?;
    for k in keys {
        let rows = stmt.query_map(params![k], ban_from_row)?;
        for b in rows {
            let b = b?;
            if !(b.service == service || b.service == ALL_SERVICES) || b.expires.is_some_and(|x| x <= now) {
                continue;
            }
            let longer = match (&best, b.expires) {
                (None, _) => true,
                (Some(cur), None) => cur.expires.is_some(),
                (Some(cur), Some(x)) => cur.expires.is_some_and(|c| x > c),
            };
            if longer {
                best = Some(b);
            }
        }
    }
    Ok(best)
}

pub(crate) fn active_bans(tx: &Transaction<'_>, now: i64) -> rusqlite::Result<Vec<Ban>> {
    let sql =
        format!("SELECT {BAN_COLUMNS} FROM bans WHERE lifted IS NULL AND (expires IS NULL OR expires > ?1)");
    let mut stmt = tx.prepare(&sql)?;
    let rows = stmt.query_map([now], ban_from_row)?;
    rows.collect()
}

/// The host's bans on single services made after `since` (the ban-length
/// factor and the repeat-offender rule both count these).
pub(crate) fn prior_bans(tx: &Transaction<'_>, key: &HostKey, since: i64) -> rusqlite::Result<u32> {
    // Saturating: whatever a carried count says, this is a small number
    // (a ban length needs no more than 64 earlier bans to reach its cap).
    let n: i64 = tx.query_row(
        "SELECT count(*) + coalesce(sum(min(max(carried, 0), 64)), 0) FROM bans
         WHERE host = ?1 AND created > ?2 AND service != ?3",
        params![key.db_key(), since, ALL_SERVICES],
        |r| r.get(0),
    )?;
    Ok(n.clamp(0, i64::from(u32::MAX)) as u32)
}

/// Stores a new ban; returns it with the id the store gave it.
pub(crate) fn insert_ban(tx: &Transaction<'_>, mut ban: Ban) -> rusqlite::Result<Ban> {
    let (family, prefix) = family_prefix(&ban.host);
    tx.prepare_cached(
        "INSERT INTO bans (host, family, prefix, service, created, expires, reason, failures, prior_bans, firewall,
                           origin, carried)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
            ban.host.db_key(),
            family,
            prefix,
            ban.service,
            ban.created,
            ban.expires,
            ban.reason,
            ban.failures,
            ban.prior_bans,
            ban.firewall,
            ban.origin.name(),
            ban.carried
    ])?;
    ban.id = tx.last_insert_rowid();
    if family != 0 {
        tx.prepare_cached("INSERT OR IGNORE INTO ban_prefixes (family, prefix) VALUES (?1, ?2)")?
            .execute(params![family, prefix])?;
    }
    Ok(ban)
}

/// The store's ban generation: it changes with every change to the bans.
pub(crate) fn generation(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT value FROM generation", [], |r| r.get(0))
}

/// The ban an earlier import stored for this host, service and origin,
/// made at `created` (active, ended or lifted), if any.
pub(crate) fn imported_before(
    conn: &Connection,
    host: &HostKey,
    service: &str,
    origin: &str,
    created: i64,
) -> rusqlite::Result<Option<Ban>> {
    use rusqlite::OptionalExtension;
    conn.prepare_cached(&format!(
        "SELECT {BAN_COLUMNS} FROM bans WHERE host = ?1 AND service = ?2 AND origin = ?3 AND created = ?4
         ORDER BY id DESC LIMIT 1"
    ))?
    .query_row(params![host.db_key(), service, origin, created], ban_from_row)
    .optional()
}

pub(crate) fn newest_id(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT coalesce(max(id), 0) FROM bans", [], |r| r.get(0))
}

/// Bans of `origin` stored after ban `id` (an import's own: bans made
/// meanwhile by logins are of another origin).
pub(crate) fn ids_after(conn: &Connection, id: i64, origin: &str) -> rusqlite::Result<Vec<i64>> {
    let mut stmt = conn.prepare("SELECT id FROM bans WHERE id > ?1 AND origin = ?2 ORDER BY id")?;
    let rows = stmt.query_map(params![id, origin], |r| r.get(0))?;
    rows.collect()
}

/// Deletes a ban and its history lines (an import taken back).
pub(crate) fn forget(tx: &Transaction<'_>, id: i64) -> rusqlite::Result<()> {
    let ban: Option<(String, String)> = {
        use rusqlite::OptionalExtension;
        tx.query_row("SELECT host, service FROM bans WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
    };
    tx.execute("DELETE FROM bans WHERE id = ?1", [id])?;
    if let Some((host, service)) = ban {
        // Its "ban" line, written with it a moment ago.
        tx.execute(
            "DELETE FROM events WHERE id = (SELECT max(id) FROM events WHERE host = ?1 AND service = ?2 AND kind = 'ban')",
            params![host, service],
        )?;
    }
    Ok(())
}

/// Counts one more refused attempt of a ban's host; the count so far.
pub(crate) fn count_refusal(tx: &Transaction<'_>, id: i64) -> rusqlite::Result<u32> {
    tx.query_row("UPDATE bans SET refused = refused + 1 WHERE id = ?1 RETURNING refused", [id], |r| r.get(0))
}

/// Marks a ban for the firewall.
pub(crate) fn send_to_firewall(tx: &Transaction<'_>, id: i64) -> rusqlite::Result<()> {
    tx.execute("UPDATE bans SET firewall = 1 WHERE id = ?1", [id])?;
    Ok(())
}

/// Marks a ban lifted at `now`.
pub(crate) fn lift(tx: &Transaction<'_>, id: i64, now: i64) -> rusqlite::Result<()> {
    tx.execute("UPDATE bans SET lifted = ?1 WHERE id = ?2", params![now, id])?;
    Ok(())
}

/// Records that the sync job pushed these bans at `now` (the store alone:
/// not a change to who is refused).
/// How long each took from its creation goes to the metrics' histogram.
pub(crate) fn mark_pushed(store: &Store, ids: &[i64], now: i64) -> Result<()> {
    let e = |err| Error::store(store.path(), err);
    let tx = Transaction::new_unchecked(store.durable()?, TransactionBehavior::Immediate).map_err(e)?;
    let delays = super::metrics::kernel_delays(&tx, ids, now).map_err(e)?;
    super::metrics::observe_kernel_delays(&tx, &delays).map_err(e)?;
    tx.commit().map_err(e)
}

/// Every ban in the store, newest first.
pub(crate) fn all(conn: &Connection) -> rusqlite::Result<Vec<Ban>> {
    let mut stmt = conn.prepare(&format!("SELECT {BAN_COLUMNS} FROM bans ORDER BY created DESC, id DESC"))?;
    let rows = stmt.query_map([], ban_from_row)?;
    rows.collect()
}

/// Bans not lifted that ended after `since`, up to `until`, in the order
/// they ended.
pub(crate) fn ended_between(conn: &Connection, since: i64, until: i64) -> rusqlite::Result<Vec<Ban>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {BAN_COLUMNS} FROM bans WHERE lifted IS NULL AND expires > ?1 AND expires <= ?2 ORDER BY expires"
    ))?;
    let rows = stmt.query_map(params![since, until], ban_from_row)?;
    rows.collect()
}

/// Drops ended bans from the runtime state's mirror (the store keeps them
/// as history).
pub(crate) fn drop_ended_from_mirror(rt: &Transaction<'_>, now: i64) -> rusqlite::Result<()> {
    rt.execute("DELETE FROM bans WHERE expires IS NOT NULL AND expires <= ?1", [now])?;
    Ok(())
}

/// Deletes from the store the bans made before `before` that have ended
/// and have no notice waiting; how many. The newest row stays, so that
/// ids are never given again (the metrics count bans by id).
pub(crate) fn prune_ended(dt: &Transaction<'_>, before: i64) -> rusqlite::Result<u64> {
    Ok(dt.execute(
        "DELETE FROM bans WHERE created < ?1 AND (lifted IS NOT NULL OR (expires IS NOT NULL AND expires < ?1))
           AND id NOT IN (SELECT ban_id FROM outbox) AND id < (SELECT max(id) FROM bans)",
        [before],
    )? as u64)
}

/// A clock stepped back: bans made in the future are moved to `now`,
/// ending no later than their full length from now; how many.
pub(crate) fn pull_back(dt: &Transaction<'_>, now: i64) -> rusqlite::Result<u64> {
    let shifted = dt.execute(
        "UPDATE bans SET expires = ?1 + (expires - created), created = ?1
         WHERE created > ?1 + 60 AND expires IS NOT NULL",
        [now],
    )?;
    let permanent = dt.execute("UPDATE bans SET created = ?1 WHERE created > ?1 + 60", [now])?;
    Ok((shifted + permanent) as u64)
}
