//! Rows of the figures `banguardctl metrics` prints: counters and gauges
//! kept in the store (`metrics`, by name and rendered labels), what the
//! runtime state held at the last fold (`metrics_seen`), and attempts per
//! service and hour for `status` (`hourly`, the last day only).
//!
//! The runtime state's own figures (`totals`, and the attempt rows still
//! there) are read as they are: nothing on the authentication path writes
//! a figure for an ordinary attempt.

use rusqlite::{Connection, Transaction, params};
use std::collections::BTreeMap;

/// One series: its name, rendered labels (`a="x",b="y"`) and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: String,
    pub labels: String,
    pub value: f64,
}

/// Renders label pairs, values escaped as the exposition format wants
/// (backslash, double quote, line feed).
pub fn labels(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out
}

/// Figures per (service, outcome), with the runtime state file they are
/// of (its incarnation).
pub type Figures = (i64, BTreeMap<(String, String), i64>);

/// Adds `delta` to a counter (0 creates it: a counter shows from its
/// first run, not from its first event).
pub(crate) fn add(tx: &Transaction<'_>, name: &str, labels: &str, delta: f64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO metrics (name, labels, value) VALUES (?1, ?2, ?3)
         ON CONFLICT(name, labels) DO UPDATE SET value = value + ?3",
    )?
    .execute(params![name, labels, delta])?;
    Ok(())
}

/// Sets a gauge.
pub(crate) fn set(tx: &Transaction<'_>, name: &str, labels: &str, value: f64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO metrics (name, labels, value) VALUES (?1, ?2, ?3)
         ON CONFLICT(name, labels) DO UPDATE SET value = ?3",
    )?
    .execute(params![name, labels, value])?;
    Ok(())
}

/// Every stored series, by name then labels.
pub(crate) fn all(conn: &Connection) -> rusqlite::Result<Vec<Row>> {
    let mut stmt = conn.prepare("SELECT name, labels, value FROM metrics ORDER BY name, labels")?;
    let rows = stmt.query_map([], |r| Ok(Row { name: r.get(0)?, labels: r.get(1)?, value: r.get(2)? }))?;
    rows.collect()
}

/// What the runtime state's figures were at the last fold, and which
/// runtime state file that was (its incarnation).
pub(crate) fn seen(conn: &Connection) -> rusqlite::Result<Figures> {
    let mut stmt = conn.prepare("SELECT service, outcome, value FROM metrics_seen")?;
    let mut incarnation = 0;
    let mut out = BTreeMap::new();
    let rows =
        stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))?;
    for row in rows {
        let (service, outcome, value) = row?;
        if service.is_empty() && outcome == "incarnation" {
            incarnation = value;
        } else {
            out.insert((service, outcome), value);
        }
    }
    Ok((incarnation, out))
}

/// Replaces what was seen with `figures` of runtime state `incarnation`.
pub(crate) fn set_seen(
    tx: &Transaction<'_>,
    incarnation: i64,
    figures: &BTreeMap<(String, String), i64>,
) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM metrics_seen", [])?;
    let mut stmt = tx.prepare("INSERT INTO metrics_seen (service, outcome, value) VALUES (?1, ?2, ?3)")?;
    stmt.execute(params!["", "incarnation", incarnation])?;
    for ((service, outcome), value) in figures {
        stmt.execute(params![service, outcome, value])?;
    }
    Ok(())
}

/// The runtime state's attempt figures per service and outcome (every
/// value only grows while this runtime state file lives; a read may come
/// out low while rows leave, never high), and its incarnation. Not one
/// transaction: see the slices below.
///
/// - `checked`: attempts whose password went to the stack, counted
///   before the check (rows ever inserted, less those refused for their
///   account, which are rows too);
/// - `given_back`: of those, the ones given back after a success;
/// - `refused_banned`, `refused_account`: refused before the password.
pub(crate) fn runtime_figures(conn: &Connection) -> rusqlite::Result<Figures> {
    let incarnation: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let mut out: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut put = |service: String, outcome: &str, n: i64| {
        *out.entry((service, outcome.to_string())).or_default() += n;
    };
    let mut stmt =
        conn.prepare("SELECT service, failed, given_back, refused, refused_account FROM totals")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
        ))
    })?;
    for row in rows {
        let (service, failed, given_back, refused, refused_account) = row?;
        put(service.clone(), "checked", failed + given_back - refused_account);
        put(service.clone(), "given_back", given_back);
        put(service.clone(), "refused_banned", refused);
        put(service, "refused_account", refused_account);
    }
    // The rows still there, a slice of ids at a time, each slice its own
    // short read: a login's commit never waits for the whole table. Read
    // after the totals, a row that leaves meanwhile is missed (counted at
    // the next fold), never counted twice: a figure may read low, never
    // high (the fold keeps the highest it saw).
    let mut after = 0i64;
    loop {
        let mut last = None;
        let mut stmt = conn.prepare_cached(
            "SELECT service, state = 2, count(*), max(id) FROM
               (SELECT id, service, state FROM attempts WHERE id > ?1 ORDER BY id LIMIT ?2)
             GROUP BY service, state = 2",
        )?;
        let rows = stmt.query_map(params![after, SCAN_SLICE], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?))
        })?;
        for row in rows {
            let (service, given_back, n, max) = row?;
            last = Some(last.unwrap_or(max).max(max));
            put(service.clone(), "checked", n);
            if given_back {
                put(service, "given_back", n);
            }
        }
        match last {
            Some(max) => after = max,
            None => break,
        }
    }
    Ok((incarnation, out))
}

/// Attempt rows read per slice by [`runtime_figures`].
const SCAN_SLICE: i64 = 10_000;

/// Adds attempts and refusals to a service's hour.
pub(crate) fn add_hour(
    tx: &Transaction<'_>,
    hour: i64,
    service: &str,
    attempts: i64,
    refused: i64,
) -> rusqlite::Result<()> {
    if attempts == 0 && refused == 0 {
        return Ok(());
    }
    tx.prepare_cached(
        "INSERT INTO hourly (hour, service, attempts, refused) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(hour, service) DO UPDATE SET attempts = attempts + ?3, refused = refused + ?4",
    )?
    .execute(params![hour, service, attempts, refused])?;
    Ok(())
}

/// Forgets the hours before `oldest`.
pub(crate) fn prune_hours(tx: &Transaction<'_>, oldest: i64) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM hourly WHERE hour < ?1", [oldest])?;
    Ok(())
}

/// The hours from `oldest` on: (hour, service, attempts, refused).
pub(crate) fn hours(conn: &Connection, oldest: i64) -> rusqlite::Result<Vec<(i64, String, i64, i64)>> {
    let mut stmt = conn.prepare(
        "SELECT hour, service, attempts, refused FROM hourly WHERE hour >= ?1 ORDER BY service, hour",
    )?;
    let rows = stmt.query_map([oldest], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    rows.collect()
}

/// Records that bans went to the kernel `now`: marks them pushed and
/// returns, for those pushed for the first time, how long after their
/// creation (imported fail2ban bans, made elsewhere long ago, excepted).
pub(crate) fn kernel_delays(tx: &Transaction<'_>, ids: &[i64], now: i64) -> rusqlite::Result<Vec<i64>> {
    let mut stmt = tx.prepare(
        "UPDATE bans SET pushed = ?1 WHERE id = ?2 AND pushed IS NULL
         RETURNING CASE WHEN origin = 'fail2ban' THEN NULL ELSE ?1 - created END",
    )?;
    let mut out = Vec::new();
    for id in ids {
        let mut rows = stmt.query(params![now, id])?;
        if let Some(row) = rows.next()?
            && let Some(d) = row.get::<_, Option<i64>>(0)?
        {
            out.push(d.max(0));
        }
    }
    Ok(out)
}

/// The histogram's bucket bounds for the time from a ban to the kernel,
/// in seconds: the path unit's push (about a second), the cron minute, a
/// few minutes of a slow or stopped sync.
pub const KERNEL_DELAY_BUCKETS: &[i64] = &[1, 5, 15, 60, 300, 900, 3600];

/// Adds delays to the `banguard_ban_to_kernel_seconds` histogram.
pub(crate) fn observe_kernel_delays(tx: &Transaction<'_>, delays: &[i64]) -> rusqlite::Result<()> {
    if delays.is_empty() {
        return Ok(());
    }
    let name = "banguard_ban_to_kernel_seconds";
    for le in KERNEL_DELAY_BUCKETS {
        let n = delays.iter().filter(|d| **d <= *le).count();
        add(tx, &format!("{name}_bucket"), &labels(&[("le", &le.to_string())]), n as f64)?;
    }
    add(tx, &format!("{name}_bucket"), &labels(&[("le", "+Inf")]), delays.len() as f64)?;
    add(tx, &format!("{name}_sum"), "", delays.iter().sum::<i64>() as f64)?;
    add(tx, &format!("{name}_count"), "", delays.len() as f64)
}

/// Accounts the runtime state tracks (its figures row excepted).
pub(crate) fn tracked_accounts(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT count(*) FROM accounts WHERE account != ''", [], |r| r.get(0))
}

/// Mail notices waiting to be sent.
pub(crate) fn queued_notices(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))
}

/// Groups of rows (two columns' values, count) and the new mark.
pub(crate) type Groups = (Vec<(String, String, i64)>, i64);

/// What rows of `table` past id `after` hold, grouped by `columns` (SQL
/// of the crate, never input): (the columns' values, count), and the
/// highest id (`after` when none is higher). Rows keep their ids: pruning
/// never deletes a table's newest row.
fn rows_after(
    conn: &Connection,
    table: &str,
    columns: &str,
    filter: &str,
    after: i64,
) -> rusqlite::Result<Groups> {
    // The mark is the table's highest id, whatever the filter.
    let max: i64 = conn.query_row(&format!("SELECT coalesce(max(id), 0) FROM {table}"), [], |r| r.get(0))?;
    // Ids below the mark (the newest rows taken back, an import's): what
    // comes in their place is not counted until the ids pass the mark
    // again, rather than everything counted twice.
    if max < after {
        return Ok((Vec::new(), after));
    }
    let mut stmt = conn.prepare(&format!(
        "SELECT {columns}, count(*) FROM {table} WHERE id > ?1 AND {filter} GROUP BY {columns}"
    ))?;
    let rows = stmt.query_map([after], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok((rows.collect::<rusqlite::Result<_>>()?, max))
}

/// Bans made since id `after`: (origin, reason, count), and the new mark.
pub(crate) fn bans_after(conn: &Connection, after: i64) -> rusqlite::Result<Groups> {
    rows_after(conn, "bans", "origin, reason", "1", after)
}

/// Escalations (a banned host that kept knocking, sent to the kernel)
/// since event id `after`, and the new mark.
pub(crate) fn escalations_after(conn: &Connection, after: i64) -> rusqlite::Result<(i64, i64)> {
    let (rows, max) = rows_after(conn, "events", "kind, ''", "kind = 'escalate'", after)?;
    Ok((rows.iter().map(|r| r.2).sum(), max))
}

/// Account locks made since id `after`: (origin, count), and the new mark.
pub(crate) fn locks_after(conn: &Connection, after: i64) -> rusqlite::Result<(Vec<(String, i64)>, i64)> {
    let (rows, max) = rows_after(conn, "account_locks", "origin, ''", "1", after)?;
    Ok((rows.into_iter().map(|(o, _, n)| (o, n)).collect(), max))
}

/// The service label values the store counts attempts for.
pub(crate) fn service_labels(conn: &Connection) -> rusqlite::Result<std::collections::BTreeSet<String>> {
    let mut stmt =
        conn.prepare("SELECT DISTINCT labels FROM metrics WHERE name = 'banguard_attempts_total'")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    let mut out = std::collections::BTreeSet::new();
    for l in rows {
        let l = l?;
        // Rendered by `labels`: service="NAME",outcome="..." (a plain name).
        if let Some(name) = l.strip_prefix("service=\"").and_then(|rest| rest.split('"').next()) {
            out.insert(name.to_string());
        }
    }
    Ok(out)
}
