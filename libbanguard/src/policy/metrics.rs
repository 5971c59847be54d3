//! The figures behind `banguardctl metrics` and the day `status` draws.
//!
//! Where each comes from (counters only ever grow, across syncs, restarts
//! and reboots):
//! - attempts per service and outcome: the runtime state's own figures
//!   (attempt rows, and totals written where a row leaves or a refusal is
//!   answered), folded into the store by every sync run; a reboot empties
//!   the runtime state, and the fold then starts from zero (what happened
//!   after the last sync before the reboot is lost);
//! - the module's troubles (an overload, a broken store): one line each
//!   appended to [`TROUBLES_FILE`] beside the trigger file, taken by the
//!   sync's fold;
//! - bans made, escalations, account locks, the time from a ban to the
//!   kernel: counted in the store's transaction that made them;
//! - sync runs, fleet exchanges and decisions, mail: recorded by the sync
//!   run ([`Banguard::record_sync`]);
//! - gauges (bans in force, locks, queues, sizes): read when asked.

use super::*;
use crate::store::metrics::{self as rows, Row, labels};
use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::PathBuf;

/// The file the PAM module appends one line to per trouble ("kind
/// service"), beside the trigger file; the sync folds it.
pub const TROUBLES_FILE: &str = "pam-troubles.count";
/// Past this size the module stops appending until the next fold.
pub const TROUBLES_CAP: u64 = 1 << 20;
/// The kinds of trouble the module reports (anything else reads as
/// "other").
pub const TROUBLE_KINDS: &[&str] =
    &["options", "overload", "config", "insecure", "invalid-input", "store", "io", "command", "panic"];
/// Most services the metrics keep apart; the rest are counted as "other".
pub const MAX_SERVICES: usize = 64;
/// Hours of attempts per service the store keeps for `status`.
pub const HOURS_KEPT: i64 = 48;

/// What one sync run did, for the metrics.
#[derive(Debug, Default, Clone)]
pub struct SyncFigures {
    pub ok: bool,
    pub duration: Duration,
    /// Entries each back-end holds after a push that succeeded.
    pub firewall: Vec<(String, u64)>,
    pub fleet: Option<FleetFigures>,
    pub mail_sent: u64,
    pub mail_failed: u64,
}

/// What one exchange with the fleet did.
#[derive(Debug, Default, Clone)]
pub struct FleetFigures {
    pub ok: bool,
    pub taken: u64,
    /// Decisions not taken, by a reason of a small set.
    pub left_out: Vec<(&'static str, u64)>,
}

/// One service's attempts and refusals in one hour (Unix time / 3600).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Hour {
    pub hour: i64,
    pub attempts: i64,
    pub refused: i64,
}

/// A service name as a label value: kept when it is a plain name (what
/// PAM service files are called), "other" otherwise.
pub fn service_label(name: &str) -> &str {
    let plain = !name.is_empty()
        && name.len() <= 32
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-@+".contains(&b));
    if name == ALL_SERVICES {
        "all"
    } else if plain {
        name
    } else {
        "other"
    }
}

/// Figures per (service, outcome).
type Figures = BTreeMap<(String, String), i64>;

/// Which services get a label of their own: the configured ones, those
/// the store already counts, and new ones while fewer than
/// [`MAX_SERVICES`] are counted; the rest are "other". Kept through the
/// store, so a service keeps its label from one fold to the next.
struct Services {
    configured: BTreeSet<String>,
    known: BTreeSet<String>,
}

impl Services {
    fn load(conn: &rusqlite::Connection, config: &crate::config::Config) -> rusqlite::Result<Services> {
        let configured = config.services.keys().map(|s| service_label(s).to_string()).collect();
        Ok(Services { configured, known: rows::service_labels(conn)? })
    }

    fn label(&mut self, name: &str) -> String {
        let l = service_label(name);
        if matches!(l, "other" | "all") || self.configured.contains(l) || self.known.contains(l) {
            return l.to_string();
        }
        if self.known.len() < MAX_SERVICES {
            self.known.insert(l.to_string());
            return l.to_string();
        }
        "other".to_string()
    }
}

/// Per (service label, outcome), what the runtime state counted since the
/// last fold: everything when it is another file (a reboot); otherwise
/// what grew past the highest figure seen (a read may come out low while
/// rows leave: that is no reset, and what it missed counts later).
fn deltas(
    services: &mut Services,
    incarnation: i64,
    current: &Figures,
    seen_incarnation: i64,
    seen: &Figures,
) -> Figures {
    let mut out = Figures::new();
    for ((service, outcome), now) in current {
        let before = if incarnation == seen_incarnation {
            seen.get(&(service.clone(), outcome.clone())).copied().unwrap_or(0)
        } else {
            0
        };
        let d = (now - before).max(0);
        if d > 0 {
            *out.entry((services.label(service), outcome.clone())).or_default() += d;
        }
    }
    out
}

/// What the fold remembers as seen: the highest figure read in this
/// runtime state file (the figures as read, after a reboot).
fn seen_after(incarnation: i64, current: &Figures, seen_incarnation: i64, seen: &Figures) -> Figures {
    let mut out = current.clone();
    if incarnation == seen_incarnation {
        for (key, before) in seen {
            if let Some(now) = out.get_mut(key) {
                *now = (*now).max(*before);
            }
        }
    }
    out
}

/// The keys (service "") under which the store keeps how far the fold
/// counted each table's rows.
const BANS_MARK: &str = "bans_id";
const EVENTS_MARK: &str = "events_id";
const LOCKS_MARK: &str = "locks_id";

fn mark(seen: &Figures, name: &str) -> i64 {
    seen.get(&(String::new(), name.to_string())).copied().unwrap_or(0)
}

/// Series to add (name, labels, value), and the marks they were counted to.
type Made = (Vec<(&'static str, String, f64)>, Figures);

/// What the store's own rows made since the last fold: bans by origin and
/// reason, escalations, account locks (counted here, at the sync, so that
/// the transaction that makes them on the authentication path writes
/// nothing more); and the new marks.
fn made_since(conn: &rusqlite::Connection, seen: &Figures) -> rusqlite::Result<Made> {
    let mut out = Vec::new();
    let (bans, bans_mark) = rows::bans_after(conn, mark(seen, BANS_MARK))?;
    for (origin, reason, n) in bans {
        let origin = BanOrigin::from_name(&origin);
        let l = labels(&[("origin", origin.name()), ("reason", crate::ban::reason_kind(origin, &reason))]);
        out.push(("banguard_bans_total", l, n as f64));
    }
    let (escalations, events_mark) = rows::escalations_after(conn, mark(seen, EVENTS_MARK))?;
    out.push(("banguard_escalations_total", String::new(), escalations as f64));
    let (locks, locks_mark) = rows::locks_after(conn, mark(seen, LOCKS_MARK))?;
    for (origin, n) in locks {
        let origin = if origin == BanOrigin::Banguard.name() { "banguard" } else { "crowdsec" };
        out.push(("banguard_account_locks_total", labels(&[("origin", origin)]), n as f64));
    }
    let marks = [(BANS_MARK, bans_mark), (EVENTS_MARK, events_mark), (LOCKS_MARK, locks_mark)]
        .into_iter()
        .map(|(k, v)| ((String::new(), k.to_string()), v))
        .collect();
    Ok((out, marks))
}

/// The module's trouble lines as (kind, service) counts (the file is
/// capped, so are they).
fn parse_troubles(text: &str) -> BTreeMap<(String, String), i64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let (kind, service) = line.split_once(' ').unwrap_or((line, ""));
        let kind = if TROUBLE_KINDS.contains(&kind) { kind } else { "other" };
        *out.entry((kind.to_string(), service_label(service).to_string())).or_default() += 1;
    }
    out
}

/// A troubles file's text (at most [`TROUBLES_CAP`] and a little) and what
/// tells this file from another (inode, size, time); `None` when it is
/// missing, not a regular file, not this process's owner's (root's) or
/// has another name (a hard link).
fn read_troubles(path: &Path) -> Option<(String, i64)> {
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let m = f.metadata().ok()?;
    if !m.is_file() || m.uid() != crate::sys::effective_uid() || m.nlink() != 1 {
        return None;
    }
    let id =
        (m.ino() ^ m.len().rotate_left(32) ^ (m.mtime_nsec() as u64) ^ (m.mtime() as u64).rotate_left(17))
            & (i64::MAX as u64);
    let mut text = String::new();
    let _ = f.take(TROUBLES_CAP + 4096).read_to_string(&mut text);
    Some((text, id as i64))
}

/// The key under which the fold keeps which taken troubles file it
/// counted (so that neither a reader nor a fold after a crash counts it
/// twice).
const TAKEN_MARK: &str = "troubles_taken";

use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

impl Banguard {
    /// The runtime state's attempt figures (short reads: logins never
    /// wait for the whole table).
    fn runtime_figures(&self) -> Result<(i64, Figures)> {
        rows::runtime_figures(&self.store.runtime).map_err(|e| Error::store(self.store.runtime_path(), e))
    }

    /// The directory of the module's troubles file.
    fn troubles_dir(&self) -> PathBuf {
        self.config
            .sync
            .trigger_file
            .parent()
            .map_or_else(|| PathBuf::from("/run/banguard"), Path::to_path_buf)
    }

    /// Folds what the runtime state and the module counted since the last
    /// fold into the store, with what this sync run did. Called by the
    /// sync job's command after each run (with its lock held).
    pub fn record_sync(&mut self, run: &SyncFigures) -> Result<()> {
        let now = self.clock.now();
        let (incarnation, current) = self.runtime_figures()?;
        // The module's lines: a file left by a fold that failed first,
        // else the current one, moved aside so that new lines start anew.
        let dir = self.troubles_dir();
        let taken = dir.join(format!("{TROUBLES_FILE}.taken"));
        if fs::symlink_metadata(&taken).is_err() {
            let _ = fs::rename(dir.join(TROUBLES_FILE), &taken);
        }
        let troubles = read_troubles(&taken);
        let hour = now.div_euclid(3600);
        let config = &self.config;
        self.store.write_durable(|tx| {
            let (seen_incarnation, seen) = rows::seen(tx)?;
            let mut services = Services::load(tx, config)?;
            let mut hours: BTreeMap<String, (i64, i64)> = BTreeMap::new();
            for ((service, outcome), d) in
                deltas(&mut services, incarnation, &current, seen_incarnation, &seen)
            {
                let l = labels(&[("service", &service), ("outcome", &outcome)]);
                rows::add(tx, "banguard_attempts_total", &l, d as f64)?;
                let h = hours.entry(service).or_default();
                match outcome.as_str() {
                    "checked" => h.0 += d,
                    "refused_banned" | "refused_account" => {
                        h.0 += d;
                        h.1 += d;
                    }
                    _ => {}
                }
            }
            // A taken file this store already counted (a crash between the
            // commit and its removal) is only removed.
            let mut taken_mark = mark(&seen, TAKEN_MARK);
            if let Some((text, id)) = troubles.as_ref().filter(|(_, id)| *id != taken_mark) {
                taken_mark = *id;
                for ((kind, service), n) in parse_troubles(text) {
                    rows::add(tx, "banguard_module_errors_total", &labels(&[("kind", &kind)]), n as f64)?;
                    if kind == "overload" {
                        let service = services.label(&service);
                        let l = labels(&[("service", &service), ("outcome", "overload")]);
                        rows::add(tx, "banguard_attempts_total", &l, n as f64)?;
                        let h = hours.entry(service).or_default();
                        h.0 += n;
                        h.1 += n;
                    }
                }
            }
            for (service, (attempts, refused)) in hours {
                rows::add_hour(tx, hour, &service, attempts, refused)?;
            }
            rows::prune_hours(tx, hour - HOURS_KEPT + 1)?;
            let (made, marks) = made_since(tx, &seen)?;
            for (name, l, n) in made {
                rows::add(tx, name, &l, n)?;
            }
            zero_series(tx, &services)?;
            let mut now_seen = seen_after(incarnation, &current, seen_incarnation, &seen);
            now_seen.extend(marks);
            now_seen.insert((String::new(), TAKEN_MARK.to_string()), taken_mark);
            rows::set_seen(tx, incarnation, &now_seen)?;
            record_run(tx, run, now)
        })?;
        let _ = fs::remove_file(&taken);
        Ok(())
    }

    /// Counts mail notices handed to sendmail (or not) by a sync run.
    pub fn record_mail(&mut self, sent: u64, failed: u64) -> Result<()> {
        self.store.write_durable(|tx| {
            rows::add(tx, "banguard_mail_total", &labels(&[("result", "sent")]), sent as f64)?;
            rows::add(tx, "banguard_mail_total", &labels(&[("result", "failed")]), failed as f64)
        })
    }

    /// Every series: the counters as the last sync run folded them (so
    /// that two reads never go down: Prometheus would take that for a
    /// restart), and the gauges read now.
    pub fn metrics(&self) -> Result<Vec<Row>> {
        let now = self.clock.now();
        let durable = self.store.durable()?;
        let e = |err| Error::store(self.store.path(), err);
        let mut series: BTreeMap<(String, String), f64> =
            rows::all(durable).map_err(e)?.into_iter().map(|r| ((r.name, r.labels), r.value)).collect();
        let mut add = |name: &str, l: String, v: f64| *series.entry((name.to_string(), l)).or_default() += v;
        let queued = rows::queued_notices(durable).map_err(e)?;
        // Bans in force, by origin and whether the kernel holds them.
        for origin in [BanOrigin::Banguard, BanOrigin::Crowdsec, BanOrigin::Fail2ban] {
            for kernel in ["true", "false"] {
                add("banguard_bans_active", labels(&[("origin", origin.name()), ("kernel", kernel)]), 0.0);
            }
        }
        for b in self.bans(None, false)? {
            let kernel = b.pushed.is_some() && b.kernel_reason(&self.config.sync).is_some();
            let l = labels(&[("origin", b.origin.name()), ("kernel", if kernel { "true" } else { "false" })]);
            add("banguard_bans_active", l, 1.0);
        }
        let locked = self.account_locks(None, true)?.len();
        add("banguard_accounts_locked", String::new(), locked as f64);
        let tracked = rows::tracked_accounts(&self.store.runtime)
            .map_err(|err| Error::store(self.store.runtime_path(), err))?;
        add("banguard_accounts_tracked", String::new(), tracked as f64);
        let learning = self.config.accounts.enabled
            && self.config.accounts.learning > 0
            && self.learning()?.is_none_or(|(_, until)| now < until);
        add("banguard_accounts_learning", String::new(), if learning { 1.0 } else { 0.0 });
        add("banguard_mail_queued", String::new(), queued as f64);
        if self.config.fleet.provider != crate::config::FleetProvider::None {
            let f = self.fleet_status()?;
            if let Some(t) = f.last_ok {
                add("banguard_fleet_last_success_timestamp_seconds", String::new(), t as f64);
            }
            add(
                "banguard_fleet_up",
                String::new(),
                if f.last_ok.is_some() && f.last_error.is_none() { 1.0 } else { 0.0 },
            );
            add("banguard_fleet_pending_exports", String::new(), f.pending_exports as f64);
        }
        let wal = PathBuf::from(format!("{}-wal", self.store.path().display()));
        for (file, path) in [
            ("store", self.store.path()),
            ("store-wal", wal.as_path()),
            ("runtime", self.store.runtime_path()),
        ] {
            let size = fs::symlink_metadata(path).map_or(0, |m| m.len());
            add("banguard_store_bytes", labels(&[("file", file)]), size as f64);
        }
        Ok(series.into_iter().map(|((name, labels), value)| Row { name, labels, value }).collect())
    }

    /// Per service, the last `hours` hours (oldest first, the current one
    /// last), with what was counted since the last fold in the current
    /// hour.
    pub fn hours(&self, hours: i64) -> Result<BTreeMap<String, Vec<Hour>>> {
        let now = self.clock.now();
        let current_hour = now.div_euclid(3600);
        let first = current_hour - hours + 1;
        let durable = self.store.durable()?;
        let e = |err| Error::store(self.store.path(), err);
        // One snapshot of the store, then the runtime state (see `metrics`).
        let snapshot =
            Transaction::new_unchecked(durable, rusqlite::TransactionBehavior::Deferred).map_err(e)?;
        let stored = rows::hours(&snapshot, first).map_err(e)?;
        let (seen_incarnation, seen) = rows::seen(&snapshot).map_err(e)?;
        let mut services = Services::load(&snapshot, &self.config).map_err(e)?;
        snapshot.commit().map_err(e)?;
        let mut out: BTreeMap<String, Vec<Hour>> = BTreeMap::new();
        let blank =
            |first: i64| (0..hours).map(|i| Hour { hour: first + i, attempts: 0, refused: 0 }).collect();
        for (hour, service, attempts, refused) in stored {
            let row: &mut Vec<Hour> = out.entry(service).or_insert_with(|| blank(first));
            if let Some(h) = row.get_mut((hour - first) as usize) {
                h.attempts += attempts;
                h.refused += refused;
            }
        }
        let (incarnation, current) = self.runtime_figures()?;
        for ((service, outcome), d) in deltas(&mut services, incarnation, &current, seen_incarnation, &seen) {
            let row = out.entry(service).or_insert_with(|| blank(first));
            let last = row.last_mut().expect("hours > 0");
            match outcome.as_str() {
                "checked" => last.attempts += d,
                "refused_banned" | "refused_account" => {
                    last.attempts += d;
                    last.refused += d;
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

/// Creates at 0 the counters an alert or `increase()` must see from their
/// first event on: every trouble kind, every ban origin and reason, lock
/// origins, each counted service's outcomes.
fn zero_series(tx: &Transaction<'_>, services: &Services) -> rusqlite::Result<()> {
    for kind in TROUBLE_KINDS.iter().chain(&["other"]) {
        rows::add(tx, "banguard_module_errors_total", &labels(&[("kind", kind)]), 0.0)?;
    }
    for (origin, reason) in [
        (BanOrigin::Banguard, "maxretry"),
        (BanOrigin::Banguard, "recidive"),
        (BanOrigin::Banguard, "manual"),
        (BanOrigin::Crowdsec, "fleet"),
        (BanOrigin::Fail2ban, "import"),
    ] {
        rows::add(tx, "banguard_bans_total", &labels(&[("origin", origin.name()), ("reason", reason)]), 0.0)?;
    }
    for origin in ["banguard", "crowdsec"] {
        rows::add(tx, "banguard_account_locks_total", &labels(&[("origin", origin)]), 0.0)?;
    }
    for service in &services.known {
        for outcome in ["checked", "given_back", "refused_banned", "refused_account", "overload"] {
            rows::add(
                tx,
                "banguard_attempts_total",
                &labels(&[("service", service), ("outcome", outcome)]),
                0.0,
            )?;
        }
    }
    Ok(())
}

/// Records one sync run's own figures.
fn record_run(tx: &Transaction<'_>, run: &SyncFigures, now: i64) -> rusqlite::Result<()> {
    let result = |ok: bool| if ok { "ok" } else { "failed" };
    rows::add(tx, "banguard_sync_runs_total", &labels(&[("result", result(run.ok))]), 1.0)?;
    rows::set(tx, "banguard_sync_last_run_timestamp_seconds", "", now as f64)?;
    rows::set(tx, "banguard_sync_last_duration_seconds", "", run.duration.as_secs_f64())?;
    if run.ok {
        rows::set(tx, "banguard_sync_last_success_timestamp_seconds", "", now as f64)?;
    }
    for (backend, entries) in &run.firewall {
        rows::set(tx, "banguard_firewall_entries", &labels(&[("backend", backend)]), *entries as f64)?;
    }
    if let Some(f) = &run.fleet {
        rows::add(tx, "banguard_fleet_exchanges_total", &labels(&[("result", result(f.ok))]), 1.0)?;
        rows::add(
            tx,
            "banguard_fleet_decisions_total",
            &labels(&[("outcome", "taken"), ("reason", "")]),
            f.taken as f64,
        )?;
        for (reason, n) in &f.left_out {
            let l = labels(&[("outcome", "left_out"), ("reason", reason)]);
            rows::add(tx, "banguard_fleet_decisions_total", &l, *n as f64)?;
        }
    }
    rows::add(tx, "banguard_mail_total", &labels(&[("result", "sent")]), run.mail_sent as f64)?;
    rows::add(tx, "banguard_mail_total", &labels(&[("result", "failed")]), run.mail_failed as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> Services {
        Services { configured: BTreeSet::new(), known: BTreeSet::new() }
    }

    fn figures(pairs: &[(&str, &str, i64)]) -> Figures {
        pairs.iter().map(|(s, o, n)| ((s.to_string(), o.to_string()), *n)).collect()
    }

    #[test]
    fn a_fold_adds_what_grew_and_a_new_runtime_file_starts_from_zero() {
        let seen = figures(&[("sshd", "checked", 10), ("sshd", "given_back", 2)]);
        let now = figures(&[("sshd", "checked", 15), ("sshd", "given_back", 2), ("vsftpd", "checked", 1)]);
        assert_eq!(
            deltas(&mut none(), 7, &now, 7, &seen),
            figures(&[("sshd", "checked", 5), ("vsftpd", "checked", 1)])
        );
        // After a reboot (another file), everything it holds is new.
        assert_eq!(
            deltas(&mut none(), 8, &now, 7, &seen),
            figures(&[("sshd", "checked", 15), ("sshd", "given_back", 2), ("vsftpd", "checked", 1)])
        );
        // A figure that reads low (rows leaving during the read) adds
        // nothing, and the highest seen is kept: what it missed counts once.
        let low = figures(&[("sshd", "checked", 8), ("sshd", "given_back", 2)]);
        assert_eq!(deltas(&mut none(), 7, &low, 7, &seen), Figures::new());
        let kept = seen_after(7, &low, 7, &seen);
        assert_eq!(kept[&("sshd".to_string(), "checked".to_string())], 10);
        let later = figures(&[("sshd", "checked", 12)]);
        assert_eq!(deltas(&mut none(), 7, &later, 7, &kept), figures(&[("sshd", "checked", 2)]));
        // After a reboot, what was seen before does not count.
        assert_eq!(seen_after(8, &low, 7, &seen), low);
    }

    #[test]
    fn service_labels_are_bounded() {
        assert_eq!(service_label("sshd"), "sshd");
        assert_eq!(service_label("*"), "all");
        assert_eq!(service_label("a\"b"), "other");
        assert_eq!(service_label(&"x".repeat(33)), "other");
        let many: Figures = (0..200).map(|i| ((format!("svc{i:03}"), "checked".to_string()), 1)).collect();
        let mut services = none();
        let d = deltas(&mut services, 1, &many, 0, &Figures::new());
        assert_eq!(d.len(), MAX_SERVICES + 1);
        assert_eq!(d[&("other".to_string(), "checked".to_string())], 200 - MAX_SERVICES as i64);
        // The set holds across folds (the store keeps it): a new name in a
        // later fold is "other" too, a known one keeps its label, and a
        // configured one always has its own.
        assert_eq!(services.label("zzz"), "other");
        assert_eq!(services.label("svc000"), "svc000");
        services.configured.insert("sshd".into());
        assert_eq!(services.label("sshd"), "sshd");
    }

    #[test]
    fn trouble_lines_are_read_by_kind_and_service() {
        let t = parse_troubles("overload sshd\noverload sshd\nstore vsftpd\nweird x\"y\n");
        assert_eq!(t[&("overload".to_string(), "sshd".to_string())], 2);
        assert_eq!(t[&("store".to_string(), "vsftpd".to_string())], 1);
        assert_eq!(t[&("other".to_string(), "other".to_string())], 1);
    }
}

#[cfg(test)]
mod engine_tests {
    use super::*;
    use crate::policy::{AttemptRef, ManualClock};
    use std::path::Path;

    fn value(g: &Banguard, name: &str, labels: &str) -> f64 {
        g.metrics()
            .unwrap()
            .into_iter()
            .find(|r| r.name == name && r.labels == labels)
            .map_or(0.0, |r| r.value)
    }

    fn attempts(g: &Banguard, outcome: &str) -> f64 {
        value(g, "banguard_attempts_total", &format!("service=\"sshd\",outcome=\"{outcome}\""))
    }

    #[test]
    fn counters_hold_across_folds_pruning_and_a_new_runtime_state() {
        let run = tempfile::tempdir().unwrap();
        let toml = format!(
            "[default]\nmaxretry = 2\nfindtime = \"1m\"\n[sync]\ntrigger_file = \"{}/trigger\"\n",
            run.path().display()
        );
        let config = Config::from_toml(Path::new("test.toml"), &toml).unwrap();
        let clock = ManualClock::new(1_800_000_000);
        let mut g = Banguard::in_memory(config, clock.clone()).unwrap();
        let ok = Request { service: "sshd", rhost: Some("198.51.100.1"), hint: None, user: Some("alice") };
        let bad = Request { rhost: Some("198.51.100.2"), ..ok };
        let Verdict::Allowed { attempt: Some(id), .. } = g.attempt(&ok, None).unwrap() else { panic!() };
        assert!(g.record_success(&ok, AttemptRef::Id(id)).unwrap());
        for _ in 0..3 {
            g.attempt(&bad, None).unwrap(); // two checked, then banned and refused
        }
        g.attempt(&bad, None).unwrap();
        // Counters are as the last sync folded them (none yet); gauges live.
        assert_eq!(attempts(&g, "checked"), 0.0);
        assert_eq!(value(&g, "banguard_bans_active", "origin=\"banguard\",kernel=\"false\""), 1.0);
        // A trouble line from the module.
        std::fs::write(run.path().join(TROUBLES_FILE), "overload sshd\nstore sshd\n").unwrap();
        g.record_sync(&SyncFigures { ok: true, ..SyncFigures::default() }).unwrap();
        assert!(
            !run.path().join(TROUBLES_FILE).exists() && !run.path().join("pam-troubles.count.taken").exists()
        );
        assert_eq!((attempts(&g, "checked"), attempts(&g, "given_back")), (3.0, 1.0));
        assert_eq!(attempts(&g, "refused_banned"), 2.0);
        assert_eq!(value(&g, "banguard_bans_total", "origin=\"banguard\",reason=\"maxretry\""), 1.0);
        g.record_sync(&SyncFigures { ok: true, ..SyncFigures::default() }).unwrap();
        assert_eq!(attempts(&g, "checked"), 3.0, "folded once, not twice");
        assert_eq!(value(&g, "banguard_bans_total", "origin=\"banguard\",reason=\"maxretry\""), 1.0);
        assert_eq!(attempts(&g, "overload"), 1.0);
        assert_eq!(value(&g, "banguard_module_errors_total", "kind=\"store\""), 1.0);
        assert_eq!(value(&g, "banguard_sync_runs_total", "result=\"ok\""), 2.0);
        // Rows pruned: their figures move to the totals, the counters stay.
        clock.advance(3600);
        g.maintain().unwrap();
        g.record_sync(&SyncFigures::default()).unwrap();
        assert_eq!((attempts(&g, "checked"), attempts(&g, "given_back")), (3.0, 1.0));
        // The same hour shows in the day: 3 checked + 2 refused + 1 overload.
        let day = g.hours(24).unwrap();
        let sshd = &day["sshd"];
        assert_eq!(sshd.len(), 24);
        assert_eq!(
            sshd.iter().map(|h| (h.attempts, h.refused)).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1)),
            (6, 3)
        );
        // A reboot: a new runtime state, counting from zero; nothing goes down.
        g.store
            .runtime
            .execute_batch("DELETE FROM attempts; DELETE FROM totals; PRAGMA application_id = 7;")
            .unwrap();
        assert_eq!(attempts(&g, "checked"), 3.0);
        g.attempt(&Request { rhost: Some("198.51.100.3"), ..ok }, None).unwrap();
        g.record_sync(&SyncFigures::default()).unwrap();
        assert_eq!(attempts(&g, "checked"), 4.0);
        g.record_sync(&SyncFigures::default()).unwrap();
        assert_eq!(attempts(&g, "checked"), 4.0);
        assert_eq!(value(&g, "banguard_sync_runs_total", "result=\"failed\""), 3.0);
        // Every trouble kind shows from the first fold on, at 0.
        assert!(g.metrics().unwrap().iter().any(|r| r.name == "banguard_module_errors_total"
            && r.labels == "kind=\"panic\""
            && r.value == 0.0));
    }

    #[test]
    fn a_taken_troubles_file_already_counted_is_never_counted_again() {
        let run = tempfile::tempdir().unwrap();
        let toml = format!("[sync]\ntrigger_file = \"{}/trigger\"\n", run.path().display());
        let config = Config::from_toml(Path::new("test.toml"), &toml).unwrap();
        let mut g = Banguard::in_memory(config, ManualClock::new(1_800_000_000)).unwrap();
        let taken = run.path().join(format!("{TROUBLES_FILE}.taken"));
        std::fs::write(&taken, "store sshd\n").unwrap();
        let kind = |g: &Banguard| value(g, "banguard_module_errors_total", "kind=\"store\"");
        // As if a fold had committed it and died before removing the file.
        let (_, id) = read_troubles(&taken).unwrap();
        g.store
            .durable()
            .unwrap()
            .execute("INSERT INTO metrics_seen VALUES ('', ?1, ?2)", rusqlite::params![TAKEN_MARK, id])
            .unwrap();
        g.record_sync(&SyncFigures::default()).unwrap();
        assert!(!taken.exists());
        assert_eq!(kind(&g), 0.0, "the fold only removes it");
        // Another one (a new file) is counted.
        std::fs::write(run.path().join(TROUBLES_FILE), "store sshd\n").unwrap();
        g.record_sync(&SyncFigures::default()).unwrap();
        assert_eq!(kind(&g), 1.0);
        // Another name for a file (a hard link) is not read.
        let other = run.path().join("elsewhere");
        std::fs::write(&other, "store sshd\n").unwrap();
        std::fs::hard_link(&other, run.path().join(TROUBLES_FILE)).unwrap();
        g.record_sync(&SyncFigures::default()).unwrap();
        assert_eq!(kind(&g), 1.0);
    }
}
