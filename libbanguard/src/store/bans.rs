//! Ban rows: how a ban is read from either file, and the runtime state's
//! copy of the active bans (the mirror), kept in step with the store.

use super::Store;
use crate::addr::HostKey;
use crate::ban::Ban;
use crate::error::{Error, Result};
use ipnet::IpNet;
use rusqlite::types::Value;
use rusqlite::{Connection, Row, Transaction, TransactionBehavior, params, params_from_iter};

pub(crate) const BAN_COLUMNS: &str =
    "id, host, service, created, expires, lifted, reason, failures, prior_bans, firewall, pushed";

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
const MIRROR_COLUMNS: &str = "id, host, family, prefix, service, created, expires, lifted, reason, failures, prior_bans, firewall, pushed";

fn mirror_insert(rt: &Connection, ban: &Ban) -> rusqlite::Result<()> {
    let (family, prefix) = family_prefix(&ban.host);
    rt.prepare_cached(&format!(
        "INSERT OR REPLACE INTO bans ({MIRROR_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
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
        ban.pushed
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
            "INSERT INTO bans ({MIRROR_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
        ))?;
        let mut rows = read.query([])?;
        while let Some(row) = rows.next()? {
            let values = (0..13).map(|i| row.get::<_, Value>(i)).collect::<rusqlite::Result<Vec<_>>>()?;
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
