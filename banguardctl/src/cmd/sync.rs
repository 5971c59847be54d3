//! `sync`: the companion job (cron every minute, the systemd timer, and
//! the path unit right after a ban). Also run by `ban` and `unban`.
//!
//! Step by step, under an exclusive lock on `[sync] lock_file` (a second
//! sync waits up to [`LOCK_WAIT`], then exits 0 saying so):
//!
//! 1. `maintain()`: prune old rows, repair timestamps from the future.
//! 2. The desired set: `bans_to_push([sync] scope)`, addresses and networks
//!    only (a name never reaches a firewall), with their expiry.
//! 3. Each configured back-end converges on that set. What each one holds
//!    afterwards is recorded in the state file (`<lock_file>.state`, next
//!    to the lock in /run: it vanishes at reboot together with the kernel
//!    sets) and passed back next time so that an unchanged set costs no
//!    kernel read-back; `--full`, a failed back-end or a missing record
//!    make it read the state back instead.
//! 4. Bans pushed for the first time are marked (`mark_pushed`) once every
//!    back-end succeeded; one syslog line each.
//! 5. One syslog line per ban expired since the last sync
//!    (`expired_between(last, now)`), saying whether it left the firewall,
//!    and one per network that left the firewall otherwise (unbanned):
//!    what the back-ends held after the last sync minus what is wanted now.
//! 6. Mail notices (`pending_notices`) go to `[mail] sendmail`; a failure
//!    keeps the notice queued (`notice_failed`) for the next run.
//! 7. The state file gets this run's time as the last sync time.
//!
//! `--dry-run` takes no lock, opens the store read-only and asks every
//! back-end for its plan only: nothing changes anywhere.

use crate::Outcome;
use crate::cli::SyncArgs;
use crate::ctx::{Ctx, require_root, retry};
use crate::error::{Error, Result};
use crate::mail;
use crate::output::{self, clean};
use crate::syslog::Syslog;
use banguard::config::SyncConfig;
use banguard::policy::{Ban, MaintainReport};
use banguard::sync::{Backend, BackendKind, FirewallEntry, HostsDeny, SyncReport, SyncRequest, SystemRunner};
use banguard::{Banguard, HostKey};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a sync waits for another one to finish.
pub const LOCK_WAIT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, Default)]
pub struct Opts {
    pub dry_run: bool,
    pub full: bool,
}

/// What one sync did (or, in a dry run, would do).
#[derive(Debug, Default)]
pub struct Report {
    /// Set when another sync held the lock and this one did nothing.
    pub skipped: Option<String>,
    pub dry_run: bool,
    pub maintenance: Option<MaintainReport>,
    pub desired: usize,
    pub backends: Vec<Value>,
    /// What happened, one line each, as printed and sent to syslog.
    pub lines: Vec<String>,
    /// Dry run: the plan of each back-end.
    pub plan: Vec<String>,
    /// Notices: (ban id, sent?, error).
    pub notices: Vec<Value>,
    /// Failures (back-ends, store): the sync exits 2 when not empty.
    pub errors: Vec<String>,
    /// Warnings that do not fail the sync (a notice not sent).
    pub warnings: Vec<String>,
}

impl Report {
    pub fn json(&self) -> Value {
        json!({
            "skipped": self.skipped,
            "dry_run": self.dry_run,
            "maintenance": self.maintenance,
            "desired": self.desired,
            "backends": self.backends,
            "actions": self.lines,
            "notices": self.notices,
            "warnings": self.warnings,
            "errors": self.errors,
        })
    }

    /// The human text: actions, and in a dry run the plan.
    pub fn text(&self) -> String {
        let mut o = String::new();
        if let Some(s) = &self.skipped {
            o.push_str(s);
            o.push('\n');
        }
        for l in &self.lines {
            o.push_str(l);
            o.push('\n');
        }
        for p in &self.plan {
            o.push_str(p);
            if !p.ends_with('\n') {
                o.push('\n');
            }
        }
        o
    }
}

pub fn run(ctx: &Ctx, args: &SyncArgs) -> Result<Outcome> {
    let opts = Opts { dry_run: args.dry_run, full: args.full };
    let mut log = Syslog::new();
    let report = if opts.dry_run {
        let mut g = ctx.open_read()?;
        sync_store(ctx, &mut g, opts, &mut log)?
    } else {
        require_root("sync")?;
        // Take the lock before opening the store: a waiting sync holds nothing.
        match Lock::acquire(&ctx.config.sync.lock_file, LOCK_WAIT)? {
            None => skipped(&ctx.config.sync),
            Some(_lock) => {
                let mut g = ctx.open_write("sync")?;
                sync_store(ctx, &mut g, opts, &mut log)?
            }
        }
    };
    finish(ctx, &report, args.quiet)
}

/// Prints a report (unless quiet) and turns its errors into the exit status.
pub fn finish(ctx: &Ctx, report: &Report, quiet: bool) -> Result<Outcome> {
    if !quiet {
        if ctx.json {
            ctx.print_json(&report.json())?;
        } else {
            ctx.print(&report.text())?;
        }
    }
    for w in &report.warnings {
        crate::say(&format!("warning: {w}"));
    }
    if report.errors.is_empty() {
        Ok(Outcome::Ok)
    } else {
        Err(Error::msg(format!("sync failed: {}", report.errors.join("; "))))
    }
}

fn skipped(sync: &SyncConfig) -> Report {
    Report {
        skipped: Some(format!(
            "another sync holds {} (waited {}s): skipped; it applies the current bans",
            sync.lock_file.display(),
            LOCK_WAIT.as_secs()
        )),
        ..Report::default()
    }
}

/// The sync run by `ban` and `unban` right after they changed the store.
pub fn after_change(ctx: &Ctx, g: &mut Banguard, log: &mut Syslog) -> Result<Report> {
    match Lock::acquire(&ctx.config.sync.lock_file, LOCK_WAIT)? {
        None => Ok(skipped(&ctx.config.sync)),
        Some(_lock) => sync_store(ctx, g, Opts::default(), log),
    }
}

/// An exclusive `flock` on the lock file, released on drop.
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Takes the lock, waiting up to `wait`; `None` if another holder kept it.
    pub fn acquire(path: &Path, wait: Duration) -> Result<Option<Lock>> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(|e| Error::msg(format!("cannot create {}: {e}", dir.display())))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::msg(format!("lock file {}: {e}", path.display())))?;
        let deadline = Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Some(Lock { _file: file })),
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(TryLockError::WouldBlock) => return Ok(None),
                Err(TryLockError::Error(e)) => {
                    return Err(Error::msg(format!("lock file {}: {e}", path.display())));
                }
            }
        }
    }
}

/// What the sync job remembers between runs (JSON, next to the lock).
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// When the last sync ran (unix seconds).
    last_sync: Option<i64>,
    /// What each back-end held after its last successful sync, by
    /// [`state_key`].
    #[serde(default)]
    applied: BTreeMap<String, Vec<FirewallEntry>>,
}

/// `/run/banguard/sync.lock` → `/run/banguard/sync.state`.
pub fn state_path(sync: &SyncConfig) -> PathBuf {
    sync.lock_file.with_extension("state")
}

/// Back-ends are recorded by name; hosts.deny also by file, so that a
/// changed path is not mistaken for the old one.
fn state_key(kind: BackendKind, sync: &SyncConfig) -> String {
    match kind {
        BackendKind::HostsDeny => format!("{kind}:{}", sync.hosts_deny.display()),
        _ => kind.to_string(),
    }
}

fn load_state(path: &Path, warnings: &mut Vec<String>) -> State {
    match fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
            warnings.push(format!("{}: {e}: ignored (back-ends are read back)", path.display()));
            State::default()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
        Err(e) => {
            warnings.push(format!("{}: {e}: ignored (back-ends are read back)", path.display()));
            State::default()
        }
    }
}

/// Replaces the state file atomically (write, fsync, rename).
fn save_state(path: &Path, state: &State) -> std::io::Result<()> {
    let tmp = path.with_extension("state.tmp");
    let text = serde_json::to_string(state).map_err(std::io::Error::other)?;
    {
        let mut f = OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)
}

/// The back-end for a configured name, with the config's settings
/// (hosts.deny: `[sync] hosts_deny`; the kernel back-ends have none).
fn backend(kind: BackendKind, sync: &SyncConfig) -> Box<dyn Backend> {
    match kind {
        BackendKind::HostsDeny => Box::new(HostsDeny::new(&sync.hosts_deny)),
        other => other.backend(),
    }
}

/// "198.51.100.7 (sshd, maxretry, 5 failures, until 2027-01-15 08:10:00)".
fn describe(ban: &Ban) -> String {
    let until = match ban.expires {
        Some(e) => format!("until {}", output::time(e)),
        None => "permanent".into(),
    };
    format!(
        "{} ({}, {}, {} failures, {until})",
        clean(&ban.host.to_string()),
        clean(output::service_label(&ban.service)),
        clean(&ban.reason),
        ban.failures
    )
}

/// One sync over an open store; the caller holds the lock (or it is a
/// dry run).
pub fn sync_store(ctx: &Ctx, g: &mut Banguard, opts: Opts, log: &mut Syslog) -> Result<Report> {
    let config = &ctx.config;
    let dry = opts.dry_run;
    let mut r = Report { dry_run: dry, ..Report::default() };
    let would = if dry { "would " } else { "" };

    // 1. Housekeeping.
    if !dry {
        let m = retry(|| g.maintain())?;
        if m.attempts_pruned + m.bans_pruned + m.events_pruned + m.timestamps_fixed > 0 {
            r.lines.push(format!(
                "maintenance: pruned {} failures, {} bans, {} events; fixed {} future timestamps",
                m.attempts_pruned, m.bans_pruned, m.events_pruned, m.timestamps_fixed
            ));
        }
        r.maintenance = Some(m);
    }
    let now = g.now();
    let state_file = state_path(&config.sync);
    let mut state = load_state(&state_file, &mut r.warnings);
    let since = state.last_sync.filter(|t| *t <= now);

    // 2. The desired set.
    let bans = retry(|| g.bans_to_push(config.sync.scope))?;
    let desired: Vec<FirewallEntry> = banguard::policy::firewall_entries(config, &bans);
    let desired_nets: BTreeSet<IpNet> = desired.iter().map(|e| e.net).collect();
    r.desired = desired.len();

    // 3. Back-ends. What they held after the last sync, for step 5.
    let previous_nets: BTreeSet<IpNet> = config
        .sync
        .backends
        .iter()
        .filter_map(|name| name.parse::<BackendKind>().ok())
        .filter_map(|kind| state.applied.get(&state_key(kind, &config.sync)))
        .flatten()
        .map(|e| e.net)
        .collect();
    let runner = SystemRunner::new();
    let mut names = Vec::new();
    for name in &config.sync.backends {
        let kind: BackendKind = match name.parse() {
            Ok(k) => k,
            Err(e) => {
                r.errors.push(format!("{name}: {e}"));
                continue;
            }
        };
        names.push(kind.to_string());
        let key = state_key(kind, &config.sync);
        let previous = if opts.full { None } else { state.applied.get(&key).map(Vec::as_slice) };
        let req = SyncRequest::new(&desired, now).previous(previous).dry_run(dry);
        let result = backend(kind, &config.sync).sync(&req, &runner);
        match result {
            Ok(rep) => {
                r.backends.push(backend_json(&rep, None));
                if rep.changed() || rep.repaired {
                    let line = format!(
                        "firewall {kind}: {would}add {}, remove {}, update {}, keep {}{}",
                        rep.added,
                        rep.removed,
                        rep.updated,
                        rep.unchanged,
                        if rep.repaired {
                            format!(" ({would}recreate what was missing)")
                        } else {
                            String::new()
                        }
                    );
                    if !dry {
                        log.notice(&line);
                    }
                    r.lines.push(line);
                }
                if dry {
                    if rep.steps.is_empty() {
                        r.plan.push(format!("# {kind}: nothing to change\n"));
                    } else {
                        r.plan.push(format!("# {kind}: would run\n"));
                        r.plan.extend(rep.steps.iter().map(|s| s.to_string()));
                    }
                } else {
                    state.applied.insert(key, rep.applied);
                }
            }
            Err(e) => {
                let msg = format!("{kind}: {e}");
                r.backends.push(json!({ "backend": kind.to_string(), "ok": false, "error": msg }));
                if !dry {
                    log.err(&format!("firewall {msg}"));
                    // The next sync must read the back-end's state back.
                    state.applied.remove(&key);
                }
                r.errors.push(msg);
            }
        }
    }

    // 4. Bans pushed for the first time.
    if !names.is_empty() && r.errors.is_empty() {
        let fresh: Vec<&Ban> = bans.iter().filter(|b| b.pushed.is_none()).collect();
        for b in &fresh {
            let why = b.kernel_reason(&config.sync).unwrap_or("scope all");
            let line = format!("{would}block {} in {}: {why}", describe(b), names.join(", "));
            if !dry {
                log.notice(&line);
            }
            r.lines.push(line);
        }
        if !dry && !fresh.is_empty() {
            let ids: Vec<i64> = fresh.iter().map(|b| b.id).collect();
            retry(|| g.mark_pushed(&ids))?;
        }
    }

    // 5. Expired since the last sync, and what left the firewall: the
    // networks the back-ends held after the last sync that are no longer
    // wanted (the back-ends' own diff, so a lift in the same second as the
    // last sync is not missed). Only said once every back-end succeeded.
    let mut removed: BTreeSet<IpNet> = if r.errors.is_empty() {
        previous_nets.difference(&desired_nets).copied().collect()
    } else {
        BTreeSet::new()
    };
    if let Some(since) = since {
        for b in retry(|| g.expired_between(since, now))? {
            let mut line = format!("ban #{} expired: {} after {}", b.id, describe(&b), output::length(&b));
            if b.host.net().is_some_and(|n| removed.remove(&n)) {
                line.push_str(&format!("; {would}unblock in {}", names.join(", ")));
            }
            if !dry {
                log.notice(&line);
            }
            r.lines.push(line);
        }
    }
    if !removed.is_empty() {
        let ended = retry(|| g.bans(None, true))?;
        for n in removed {
            // The newest ended ban of this network says why.
            let why = ended
                .iter()
                .filter(|b| b.host.net() == Some(n) && !b.is_active(now))
                .max_by_key(|b| b.lifted.or(b.expires).unwrap_or(0))
                .map_or_else(
                    || "no active ban".to_string(),
                    |b| match b.lifted {
                        Some(_) => format!("ban #{} lifted by unban", b.id),
                        None => format!("ban #{} expired", b.id),
                    },
                );
            let line = format!("{would}unblock {} ({why}) in {}", HostKey::Net(n), names.join(", "));
            if !dry {
                log.notice(&line);
            }
            r.lines.push(line);
        }
    }

    // 6. Mail notices.
    let pending = retry(|| g.pending_notices())?;
    if !config.mail.enabled && !pending.is_empty() {
        let line = format!("mail is disabled: {would}discard {} queued notices", pending.len());
        r.lines.push(line);
        if !dry {
            for (id, _, _) in &pending {
                retry(|| g.notice_sent(*id))?;
            }
        }
    } else {
        for (id, tries, ban) in &pending {
            let to = &config.mail.to;
            if dry {
                r.lines.push(format!("would mail {to} about {}", describe(ban)));
                r.notices.push(json!({ "notice": id, "ban": ban.id, "sent": false, "dry_run": true }));
                continue;
            }
            let message = mail::compose(config, ban, now);
            match mail::send(&config.mail, &message) {
                Ok(()) => {
                    retry(|| g.notice_sent(*id))?;
                    let line = format!("mailed {to} about {}", describe(ban));
                    log.notice(&line);
                    r.lines.push(line);
                    r.notices.push(json!({ "notice": id, "ban": ban.id, "sent": true }));
                }
                Err(e) => {
                    retry(|| g.notice_failed(*id, &e))?;
                    let w = format!(
                        "notice about {} not sent (try {}): {e}; kept for the next sync",
                        describe(ban),
                        tries + 1
                    );
                    log.warning(&w);
                    r.notices.push(json!({ "notice": id, "ban": ban.id, "sent": false, "error": e }));
                    r.warnings.push(w);
                }
            }
        }
    }

    // 7. Remember this run.
    if !dry {
        state.last_sync = Some(now);
        if let Err(e) = save_state(&state_file, &state) {
            r.warnings.push(format!("cannot write {}: {e}", state_file.display()));
        }
    }
    Ok(r)
}

fn backend_json(rep: &SyncReport, error: Option<&str>) -> Value {
    json!({
        "backend": rep.backend.to_string(),
        "ok": error.is_none(),
        "added": rep.added,
        "removed": rep.removed,
        "updated": rep.updated,
        "unchanged": rep.unchanged,
        "repaired": rep.repaired,
        "steps": rep.steps.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_waits_then_gives_up() {
        let dir = std::env::temp_dir().join(format!("bgctl-lock-{}", std::process::id()));
        let path = dir.join("sub/sync.lock");
        let first = Lock::acquire(&path, Duration::ZERO).unwrap();
        assert!(first.is_some());
        let t = Instant::now();
        assert!(Lock::acquire(&path, Duration::from_millis(200)).unwrap().is_none());
        assert!(t.elapsed() >= Duration::from_millis(200));
        drop(first);
        assert!(Lock::acquire(&path, Duration::ZERO).unwrap().is_some());
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn state_round_trips_and_corruption_is_ignored() {
        let dir = std::env::temp_dir().join(format!("bgctl-state-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("sync.state");
        let mut s = State { last_sync: Some(42), ..State::default() };
        s.applied.insert("nftables".into(), vec![FirewallEntry::permanent("192.0.2.1/32".parse().unwrap())]);
        save_state(&p, &s).unwrap();
        let mut w = Vec::new();
        let back = load_state(&p, &mut w);
        assert_eq!(back.last_sync, Some(42));
        assert_eq!(back.applied["nftables"].len(), 1);
        assert!(w.is_empty());
        fs::write(&p, "{garbage").unwrap();
        let back = load_state(&p, &mut w);
        assert_eq!(back.last_sync, None);
        assert_eq!(w.len(), 1);
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn state_file_sits_next_to_the_lock() {
        let c = banguard::Config::default();
        assert_eq!(state_path(&c.sync), PathBuf::from("/run/banguard/sync.state"));
        assert_eq!(state_key(BackendKind::HostsDeny, &c.sync), "hosts.deny:/etc/hosts.deny");
        assert_eq!(state_key(BackendKind::Nftables, &c.sync), "nftables");
    }
}
