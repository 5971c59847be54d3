//! The sync job: `banguardctl sync` (cron every minute, the systemd timer,
//! the path unit right after a ban), also run by `ban` and `unban`. The
//! command line only opens the store, calls [`run`] and prints the
//! [`Report`].
//!
//! Step by step, under an exclusive lock on `[sync] lock_file` (a second
//! sync waits up to [`LOCK_WAIT`], then does nothing and says so):
//!
//! 1. `maintain()`: prune old rows, repair timestamps from the future.
//! 2. The desired set: `bans_to_push([sync] scope)`, addresses and networks
//!    only (a name never reaches a firewall), with their expiry.
//! 3. Each configured back-end converges on that set. What each one holds
//!    afterwards is recorded in the state file (`<lock_file>.state`, next
//!    to the lock in /run: it vanishes at reboot together with the kernel
//!    sets) and passed back next time so that an unchanged set costs no
//!    kernel read-back; `full`, a failed back-end or a missing record make
//!    it read the state back instead.
//! 4. Bans pushed for the first time are marked (`mark_pushed`) once every
//!    back-end succeeded; one log line each.
//! 5. One log line per ban expired since the last sync
//!    (`expired_between(last, now)`), saying whether it left the firewall,
//!    and one per network that left the firewall otherwise (unbanned):
//!    what the back-ends held after the last sync minus what is wanted now.
//! 6. Mail notices (`pending_notices`) go to the caller's [`Notifier`]; a
//!    failure keeps the notice queued (`notice_failed`) for the next run.
//! 7. The state file gets this run's time as the last sync time.
//!
//! A dry run takes no lock, needs only a read-only store and asks every
//! back-end for its plan: nothing changes anywhere.

use super::{Backend, BackendKind, FirewallEntry, HostsDeny, Runner, SyncReport, SyncRequest};
use crate::config::SyncConfig;
use crate::error::{Error, Result};
use crate::policy::{AccountLock, Ban, MaintainReport};
use crate::store::{admin_patience, retry_busy};
use crate::text::{clean, time};
use crate::{Banguard, HostKey};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a sync waits for another one to finish.
pub const LOCK_WAIT: Duration = Duration::from_secs(3);

/// How a sync runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Plan only: no lock, no change anywhere.
    pub dry_run: bool,
    /// Read every back-end's state back instead of trusting the record.
    pub full: bool,
}

/// How loud a line of the job is (for syslog).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Notice,
    Warning,
    Err,
}

/// Sends the mail notice about a ban (the caller composes and hands it to
/// sendmail); an error keeps the notice queued.
pub trait Notifier {
    fn send(&mut self, ban: &Ban, now: i64) -> std::result::Result<(), String>;
    /// The notice about an account locked for unfamiliar sources.
    fn send_account_lock(&mut self, lock: &AccountLock, now: i64) -> std::result::Result<(), String>;
}

/// What one back-end did: its report, or why it failed.
#[derive(Debug)]
pub struct BackendResult {
    pub kind: BackendKind,
    pub outcome: std::result::Result<SyncReport, String>,
}

/// What became of one queued notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeResult {
    pub notice: i64,
    /// The ban it is about (0: an account lock's notice).
    pub ban: i64,
    /// The account lock it is about.
    pub account_lock: Option<i64>,
    pub sent: bool,
    /// A dry run: nothing was sent.
    pub dry_run: bool,
    pub error: Option<String>,
}

/// What one sync did (or, in a dry run, would do).
#[derive(Debug, Default)]
pub struct Report {
    /// Set when another sync held the lock and this one did nothing.
    pub skipped: Option<String>,
    pub dry_run: bool,
    pub maintenance: Option<MaintainReport>,
    /// Entries the firewall should hold.
    pub desired: usize,
    pub backends: Vec<BackendResult>,
    /// What happened, one line each, as printed and logged.
    pub lines: Vec<String>,
    /// Dry run: the plan of each back-end.
    pub plan: Vec<String>,
    pub notices: Vec<NoticeResult>,
    /// Failures (back-ends): the sync failed when not empty.
    pub errors: Vec<String>,
    /// Warnings that do not fail the sync (a notice not sent).
    pub warnings: Vec<String>,
    /// The store's ban generation the firewall was last pushed for.
    pub generation: i64,
}

impl Report {
    /// The report of a sync that found another one running.
    pub fn skipped(sync: &SyncConfig) -> Report {
        Report {
            skipped: Some(format!(
                "another sync holds {} (waited {}s): skipped; it applies the current bans",
                sync.lock_file.display(),
                LOCK_WAIT.as_secs()
            )),
            ..Report::default()
        }
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

/// An exclusive `flock` on the sync's lock file, released on drop.
pub struct JobLock {
    _file: File,
}

impl JobLock {
    /// Takes the lock, waiting up to `wait`; `None` if another holder kept it.
    pub fn acquire(path: &Path, wait: Duration) -> Result<Option<JobLock>> {
        let io = |source| Error::Io { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
        }
        let file =
            OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(path).map_err(io)?;
        let deadline = Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Some(JobLock { _file: file })),
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(TryLockError::WouldBlock) => return Ok(None),
                Err(TryLockError::Error(e)) => return Err(io(e)),
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
    /// The form of the kernel rules the last sync wrote ([`RULES`]).
    #[serde(default)]
    rules: u32,
}

/// The form of the kernel rules this version writes: 2 = new connections
/// only (1: every packet). A state of another form makes every back-end
/// read its state back, so the rules of an earlier version are replaced.
const RULES: u32 = 2;

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
pub fn describe(ban: &Ban) -> String {
    let until = match ban.expires {
        Some(e) => format!("until {}", time(e)),
        None => "permanent".into(),
    };
    format!(
        "{} ({}, {}, {} failures, {until})",
        clean(&ban.host.to_string()),
        clean(ban.service_label()),
        clean(&ban.reason),
        ban.failures
    )
}

/// A line of the job: into the report, and to `log` unless it is a dry run.
fn say(r: &mut Report, log: &mut dyn FnMut(Level, &str), level: Level, line: String) {
    if !r.dry_run {
        log(level, &line);
    }
    r.lines.push(line);
}

/// Lines of one kind said one by one, up to [`LINES_PER_KIND`], then
/// summed up in one: a sync that takes or lifts 100,000 of the fleet's
/// bans says so in a screenful, not in 100,000 log lines.
#[derive(Default)]
struct Said {
    count: usize,
}

impl Said {
    fn line(&mut self, r: &mut Report, log: &mut dyn FnMut(Level, &str), line: String) {
        self.count += 1;
        if self.count <= LINES_PER_KIND {
            say(r, log, Level::Notice, line);
        }
    }

    fn rest(&self, r: &mut Report, log: &mut dyn FnMut(Level, &str), what: &str, of: &str) {
        if self.count > LINES_PER_KIND {
            say(
                r,
                log,
                Level::Notice,
                format!(
                    "{what} {} {of} (the first {LINES_PER_KIND} are listed)",
                    self.count - LINES_PER_KIND
                ),
            );
        }
    }
}

/// Lines said one by one per kind (block, expired, unblock) per sync.
pub const LINES_PER_KIND: usize = 20;

/// Rounds of pushing at most, when bans keep changing during a sync.
const MAX_ROUNDS: u32 = 3;

/// One sync over an open store (read-write, or read-only for a dry run).
/// The caller holds the [`JobLock`] unless it is a dry run. Lines go to
/// `log` as they happen (not in a dry run) and into the report.
pub fn run(
    g: &mut Banguard,
    opts: Options,
    runner: &dyn Runner,
    notifier: &mut dyn Notifier,
    log: &mut dyn FnMut(Level, &str),
) -> Result<Report> {
    let config = g.config().clone();
    let patience = admin_patience(&config);
    let dry = opts.dry_run;
    let mut r = Report { dry_run: dry, ..Report::default() };
    let would = if dry { "would " } else { "" };

    // 1. Housekeeping.
    if !dry {
        let m = retry_busy(patience, || g.maintain())?;
        if m.attempts_pruned + m.bans_pruned + m.events_pruned + m.timestamps_fixed + m.accounts_forgotten > 0
        {
            r.lines.push(format!(
                "maintenance: pruned {} failures, {} bans, {} events, {} idle accounts; fixed {} future timestamps",
                m.attempts_pruned, m.bans_pruned, m.events_pruned, m.accounts_forgotten, m.timestamps_fixed
            ));
        }
        r.maintenance = Some(m);
    }
    let now = g.now();
    let state_file = state_path(&config.sync);
    let mut state = load_state(&state_file, &mut r.warnings);
    let since = state.last_sync.filter(|t| *t <= now);

    // What the back-ends held after the last sync, for step 5.
    let previous_nets: BTreeSet<IpNet> = config
        .sync
        .backends
        .iter()
        .filter_map(|&kind| state.applied.get(&state_key(kind, &config.sync)))
        .flatten()
        .map(|e| e.net)
        .collect();
    let names: Vec<String> = config.sync.backends.iter().map(|k| k.to_string()).collect();
    // The fleet's LAPI is never blocked, whatever a decision says.
    let protected = retry_busy(patience, || g.fleet_protected())?;
    let mut desired_nets: BTreeSet<IpNet>;
    let mut rounds = 0;
    loop {
        rounds += 1;
        let generation = retry_busy(patience, || g.ban_generation())?;
        r.generation = generation;
        r.backends.clear();
        // 2. The desired set.
        let bans = retry_busy(patience, || g.bans_to_push(config.sync.scope))?;
        let desired: Vec<FirewallEntry> = crate::policy::firewall_entries(&config, &bans, &protected);
        desired_nets = desired.iter().map(|e| e.net).collect();
        r.desired = desired.len();

        // 3. Back-ends.
        for &kind in &config.sync.backends {
            let key = state_key(kind, &config.sync);
            let full = opts.full || state.rules != RULES;
            let previous = if full { None } else { state.applied.get(&key).map(Vec::as_slice) };
            let req = SyncRequest::new(&desired, now).previous(previous).dry_run(dry);
            match backend(kind, &config.sync).sync(&req, runner) {
                Ok(mut rep) => {
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
                        say(&mut r, log, Level::Notice, line);
                    }
                    if dry {
                        if rep.steps.is_empty() {
                            r.plan.push(format!("# {kind}: nothing to change\n"));
                        } else {
                            r.plan.push(format!("# {kind}: would run\n"));
                            r.plan.extend(rep.steps.iter().map(|s| s.to_string()));
                        }
                    } else {
                        state.applied.insert(key, std::mem::take(&mut rep.applied));
                    }
                    r.backends.push(BackendResult { kind, outcome: Ok(rep) });
                }
                Err(e) => {
                    let msg = format!("{kind}: {e}");
                    if !dry {
                        log(Level::Err, &format!("firewall {msg}"));
                        // The next sync must read the back-end's state back.
                        state.applied.remove(&key);
                    }
                    r.backends.push(BackendResult { kind, outcome: Err(msg.clone()) });
                    r.errors.push(msg);
                }
            }
        }

        // 4. Bans pushed for the first time.
        if !names.is_empty() && r.errors.is_empty() {
            let fresh: Vec<&Ban> = bans.iter().filter(|b| b.pushed.is_none()).collect();
            let mut said = Said::default();
            for b in &fresh {
                let why = b.kernel_reason(&config.sync).unwrap_or("scope all");
                let line = format!("{would}block {} in {}: {why}", describe(b), names.join(", "));
                said.line(&mut r, log, line);
            }
            said.rest(&mut r, log, &format!("{would}block"), "more bans");
            if !dry && !fresh.is_empty() {
                let ids: Vec<i64> = fresh.iter().map(|b| b.id).collect();
                retry_busy(patience, || g.mark_pushed(&ids))?;
            }
        }
        // A ban changed while the back-ends were being written (an unban
        // whose own sync found this one running): push again, so that it
        // reaches the firewall before this sync ends.
        if dry || !r.errors.is_empty() || rounds >= MAX_ROUNDS {
            break;
        }
        if retry_busy(patience, || g.ban_generation())? == generation {
            break;
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
        let mut said = Said::default();
        for b in retry_busy(patience, || g.expired_between(since, now))? {
            let mut line = format!("ban #{} expired: {} after {}", b.id, describe(&b), b.length());
            if b.host.net().is_some_and(|n| removed.remove(&n)) {
                line.push_str(&format!("; {would}unblock in {}", names.join(", ")));
            }
            said.line(&mut r, log, line);
        }
        said.rest(&mut r, log, "expired:", "more bans");
    }
    if !removed.is_empty() {
        // The newest ended ban of each network says why (one pass over
        // them, however many networks left).
        let mut newest: std::collections::HashMap<IpNet, Ban> = std::collections::HashMap::new();
        for b in retry_busy(patience, || g.bans(None, true))? {
            let Some(net) = b.host.net().filter(|n| removed.contains(n)) else { continue };
            if b.is_active(now) {
                continue;
            }
            let end = |b: &Ban| b.lifted.or(b.expires).unwrap_or(0);
            if newest.get(&net).is_none_or(|cur| end(&b) > end(cur)) {
                newest.insert(net, b);
            }
        }
        let mut said = Said::default();
        for n in removed {
            let why = newest.get(&n).map_or_else(
                || "no active ban".to_string(),
                |b| match b.lifted {
                    Some(_) => format!("ban #{} lifted", b.id),
                    None => format!("ban #{} expired", b.id),
                },
            );
            said.line(
                &mut r,
                log,
                format!("{would}unblock {} ({why}) in {}", HostKey::Net(n), names.join(", ")),
            );
        }
        said.rest(&mut r, log, &format!("{would}unblock"), "more networks");
    }

    // 6. Mail notices.
    let pending = retry_busy(patience, || g.pending_notices())?;
    if !config.mail.enabled && !pending.is_empty() {
        r.lines.push(format!("mail is disabled: {would}discard {} queued notices", pending.len()));
        if !dry {
            for (id, _, _) in &pending {
                retry_busy(patience, || g.notice_sent(*id))?;
            }
        }
    } else {
        let to = &config.mail.to;
        for (id, tries, ban) in &pending {
            let mut result = NoticeResult {
                notice: *id,
                ban: ban.id,
                account_lock: None,
                sent: false,
                dry_run: dry,
                error: None,
            };
            if dry {
                r.lines.push(format!("would mail {to} about {}", describe(ban)));
            } else {
                match notifier.send(ban, now) {
                    Ok(()) => {
                        retry_busy(patience, || g.notice_sent(*id))?;
                        say(&mut r, log, Level::Notice, format!("mailed {to} about {}", describe(ban)));
                        result.sent = true;
                    }
                    Err(e) => {
                        retry_busy(patience, || g.notice_failed(*id, &e))?;
                        let w = format!(
                            "notice about {} not sent (try {}): {e}; kept for the next sync",
                            describe(ban),
                            tries + 1
                        );
                        log(Level::Warning, &w);
                        r.warnings.push(w);
                        result.error = Some(e);
                    }
                }
            }
            r.notices.push(result);
        }
    }
    let locks = retry_busy(patience, || g.pending_lock_notices())?;
    for (id, tries, lock) in &locks {
        let about = format!("account {} locked until {}", clean(&lock.account), time(lock.until));
        let mut result = NoticeResult {
            notice: *id,
            ban: 0,
            account_lock: Some(lock.id),
            sent: false,
            dry_run: dry,
            error: None,
        };
        if dry {
            let verb = if config.mail.enabled { "mail" } else { "discard the notice" };
            r.lines.push(format!("would {verb} about {about}"));
        } else if !config.mail.enabled {
            retry_busy(patience, || g.notice_sent(*id))?;
        } else {
            match notifier.send_account_lock(lock, now) {
                Ok(()) => {
                    retry_busy(patience, || g.notice_sent(*id))?;
                    say(&mut r, log, Level::Notice, format!("mailed {} about {about}", config.mail.to));
                    result.sent = true;
                }
                Err(e) => {
                    retry_busy(patience, || g.notice_failed(*id, &e))?;
                    let w = format!(
                        "notice about {about} not sent (try {}): {e}; kept for the next sync",
                        tries + 1
                    );
                    log(Level::Warning, &w);
                    r.warnings.push(w);
                    result.error = Some(e);
                }
            }
        }
        r.notices.push(result);
    }

    // 7. Remember this run.
    if !dry {
        state.last_sync = Some(now);
        if r.errors.is_empty() {
            state.rules = RULES;
        }
        if let Err(e) = save_state(&state_file, &state) {
            r.warnings.push(format!("cannot write {}: {e}", state_file.display()));
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::duration::BanTime;
    use crate::policy::ManualClock;
    use crate::sync::SystemRunner;

    /// Records the bans it is asked to mail; fails while `fail` is set.
    #[derive(Default)]
    struct Mailbox {
        sent: Vec<i64>,
        fail: bool,
    }

    impl Notifier for Mailbox {
        fn send(&mut self, ban: &Ban, _now: i64) -> std::result::Result<(), String> {
            if self.fail {
                return Err("sendmail exited 75".into());
            }
            self.sent.push(ban.id);
            Ok(())
        }

        fn send_account_lock(&mut self, lock: &AccountLock, _now: i64) -> std::result::Result<(), String> {
            if self.fail {
                return Err("sendmail exited 75".into());
            }
            self.sent.push(-lock.id);
            Ok(())
        }
    }

    /// An engine whose sync writes hosts.deny (a file, no command) and
    /// keeps its lock and state in `dir`; `extra` goes before `[sync]`.
    fn engine(dir: &Path, extra: &str, clock: std::sync::Arc<ManualClock>) -> Banguard {
        let d = dir.display();
        let text = format!(
            "{extra}[sync]\nbackends = [\"hosts.deny\"]\nhosts_deny = \"{d}/hosts.deny\"\nlock_file = \"{d}/sync.lock\"\n"
        );
        Banguard::in_memory(crate::Config::from_toml(Path::new("test.toml"), &text).unwrap(), clock).unwrap()
    }

    /// The whole job in-process: hosts.deny (a file, no command), mail,
    /// the state file, and what it logs.
    #[test]
    fn the_job_pushes_mails_and_remembers_in_process() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(1_800_000_000);
        let mut g = engine(dir.path(), "[mail]\nenabled = true\nto = \"root\"\n", clock.clone());
        let target = HostKey::Net("192.0.2.0/24".parse().unwrap());
        let ban = g.ban(&target, None, BanTime::Seconds(3600), "evil").unwrap();
        let runner = SystemRunner::new();
        let mut mail = Mailbox { fail: true, ..Mailbox::default() };
        let logged = std::cell::RefCell::new(Vec::new());
        let mut log = |level: Level, line: &str| logged.borrow_mut().push((level, line.to_string()));

        let r = run(&mut g, Options::default(), &runner, &mut mail, &mut log).unwrap();
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.desired, 1);
        let deny = fs::read_to_string(dir.path().join("hosts.deny")).unwrap();
        assert!(deny.contains("192.0.2.0/24") || deny.contains("192.0.2.0/255.255.255.0"), "{deny}");
        assert!(
            r.lines.iter().any(|l| l.starts_with("block 192.0.2.0/24 (all services, manual: evil")),
            "{:?}",
            r.lines
        );
        // The mail failed: a warning, the notice stays queued.
        assert_eq!(
            r.notices,
            [NoticeResult {
                account_lock: None,
                notice: 1,
                ban: ban.id,
                sent: false,
                dry_run: false,
                error: Some("sendmail exited 75".into())
            }]
        );
        assert_eq!(g.pending_notices().unwrap().len(), 1);
        let warned =
            logged.borrow().iter().any(|(l, m)| *l == Level::Warning && m.contains("kept for the next sync"));
        assert!(warned, "{logged:?}");
        assert!(state_path(&g.config().sync).exists(), "the state file is written");

        // Next run: nothing to push, the notice goes out.
        mail.fail = false;
        clock.advance(60);
        let r = run(&mut g, Options::default(), &runner, &mut mail, &mut log).unwrap();
        assert_eq!(mail.sent, [ban.id]);
        assert!(g.pending_notices().unwrap().is_empty());
        assert!(!r.lines.iter().any(|l| l.contains("block")), "{:?}", r.lines);

        // The ban ends: the run says so and unblocks it.
        clock.advance(3600);
        let r = run(&mut g, Options::default(), &runner, &mut mail, &mut log).unwrap();
        assert!(
            r.lines.iter().any(|l| l.starts_with(&format!("ban #{} expired", ban.id))
                && l.ends_with("unblock in hosts.deny")),
            "{:?}",
            r.lines
        );
        let deny = fs::read_to_string(dir.path().join("hosts.deny")).unwrap();
        assert!(!deny.contains("192.0.2.0"), "{deny}");
    }

    #[test]
    fn a_dry_run_changes_nothing_and_logs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = engine(dir.path(), "", ManualClock::new(1_800_000_000));
        g.ban(&HostKey::Net("198.51.100.7/32".parse().unwrap()), None, BanTime::Seconds(60), "").unwrap();
        let mut logged = 0;
        let mut log = |_: Level, _: &str| logged += 1;
        let opts = Options { dry_run: true, full: false };
        let r = run(&mut g, opts, &SystemRunner::new(), &mut Mailbox::default(), &mut log).unwrap();
        assert!(r.lines.iter().any(|l| l.starts_with("would block 198.51.100.7")), "{:?}", r.lines);
        assert!(!r.plan.is_empty());
        assert_eq!(logged, 0);
        assert!(!dir.path().join("hosts.deny").exists());
        assert!(!state_path(&g.config().sync).exists());
    }

    #[test]
    fn second_lock_waits_then_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/sync.lock");
        let first = JobLock::acquire(&path, Duration::ZERO).unwrap();
        assert!(first.is_some());
        let t = Instant::now();
        assert!(JobLock::acquire(&path, Duration::from_millis(200)).unwrap().is_none());
        assert!(t.elapsed() >= Duration::from_millis(200));
        drop(first);
        assert!(JobLock::acquire(&path, Duration::ZERO).unwrap().is_some());
    }

    #[test]
    fn state_round_trips_and_corruption_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sync.state");
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
    }

    #[test]
    fn state_file_sits_next_to_the_lock() {
        let c = crate::Config::default();
        assert_eq!(state_path(&c.sync), PathBuf::from("/run/banguard/sync.state"));
        assert_eq!(state_key(BackendKind::HostsDeny, &c.sync), "hosts.deny:/etc/hosts.deny");
        assert_eq!(state_key(BackendKind::Nftables, &c.sync), "nftables");
    }
}
