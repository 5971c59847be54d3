//! `sync`: the companion job (cron every minute, the systemd timer, and
//! the path unit right after a ban), also run by `ban` and `unban`. The job
//! itself is the library's (`banguard::sync::job`); this command takes its
//! lock, opens the store, hands it the mail sender and syslog, and prints
//! the report.

use crate::Outcome;
use crate::cli::SyncArgs;
use crate::ctx::{Ctx, require_root};
use crate::error::{Error, Result};
use crate::mail;
use crate::syslog::Syslog;
use banguard::config::{Config, FleetProvider};
use banguard::policy::{AccountLock, FleetFigures, SyncFigures};
use banguard::sync::job::{
    self, BackendResult, JobLock, LOCK_WAIT, Level, NoticeResult, Notifier, Options, Report,
};
use banguard::sync::{Runner, SystemRunner};
use banguard::{Ban, Banguard};
use serde_json::{Value, json};

pub fn run(ctx: &Ctx, args: &SyncArgs) -> Result<Outcome> {
    let started = std::time::Instant::now();
    let opts = Options { dry_run: args.dry_run, full: args.full };
    let mut log = Syslog::new();
    let mut fleet = None;
    let report = if opts.dry_run {
        let mut g = ctx.open_read()?;
        sync_store(ctx, &mut g, opts, &mut log)?
    } else {
        require_root("sync")?;
        // Take the lock before opening the store: a waiting sync holds nothing.
        match JobLock::acquire(&ctx.config.sync.lock_file, LOCK_WAIT)? {
            None => Report::skipped(&ctx.config.sync),
            Some(_lock) => {
                let mut g = ctx.open_write("sync")?;
                // The local bans first: a slow or unreachable fleet never
                // delays them (the path unit's push after a ban). Then the
                // exchange, and again the firewall if it brought or lifted
                // bans, so that they reach the kernel in this run.
                let mut report = sync_store(ctx, &mut g, opts, &mut log)?;
                fleet = exchange(ctx, &mut g, &mut log);
                // Again when the exchange took or lifted bans, or any ban
                // changed meanwhile (an unban whose own sync found this one
                // running), so that it reaches the kernel in this run.
                let changed = matches!(&fleet, Some(Ok(x)) if x.applied.changed())
                    || g.ban_generation().is_ok_and(|now| now != report.generation);
                if changed {
                    let again = sync_store(ctx, &mut g, opts, &mut log)?;
                    report.lines.extend(again.lines);
                    report.desired = again.desired;
                    report.backends = again.backends;
                    report.errors.extend(again.errors);
                    report.warnings.extend(again.warnings);
                    report.generation = again.generation;
                }
                record_metrics(ctx, &mut g, &report, fleet.as_ref(), started.elapsed(), &mut log);
                report
            }
        }
    };
    let outcome = finish(ctx, &report, args.quiet, fleet.as_ref())?;
    match fleet {
        Some(Err(e)) => {
            crate::say(&format!("fleet: {e}"));
            Ok(Outcome::FleetDown)
        }
        _ => Ok(outcome),
    }
}

/// Folds this run's figures into the store and, with `[metrics]
/// enabled`, writes the textfile. Trouble here is a warning: the bans
/// reached the firewall whatever the metrics say.
fn record_metrics(
    ctx: &Ctx,
    g: &mut Banguard,
    report: &Report,
    fleet: Option<&FleetResult>,
    took: std::time::Duration,
    log: &mut Syslog,
) {
    let firewall = report
        .backends
        .iter()
        .filter(|b| b.outcome.is_ok())
        .map(|b| (b.kind.to_string(), report.desired as u64))
        .collect();
    let fleet = fleet.map(|f| match f {
        Ok(x) => FleetFigures {
            ok: true,
            taken: x.applied.taken,
            left_out: vec![
                ("refused", x.applied.refused.total()),
                ("malformed", x.malformed.total()),
                ("filtered", x.filtered),
                ("max_decisions", x.applied.over_cap),
            ],
        },
        Err(_) => FleetFigures { ok: false, ..FleetFigures::default() },
    });
    let (sent, failed) = mail_counts(report);
    let run = SyncFigures {
        ok: report.errors.is_empty(),
        duration: took,
        firewall,
        fleet,
        mail_sent: sent,
        mail_failed: failed,
    };
    let mut result = g.record_sync(&run).map_err(Error::from);
    if result.is_ok() && ctx.config.metrics.enabled {
        result = g.metrics().map_err(Error::from).and_then(|rows| {
            crate::cmd::metrics::write_textfile(
                &ctx.config.metrics.textfile,
                &crate::cmd::metrics::render(&rows),
            )
        });
    }
    if let Err(e) = result {
        let msg = format!("metrics: {e}");
        log.log(Level::Warning, &msg);
        crate::say(&format!("warning: {msg}"));
    }
}

/// One exchange with the fleet, if `[fleet]` names one.
fn exchange(
    ctx: &Ctx,
    g: &mut Banguard,
    log: &mut Syslog,
) -> Option<std::result::Result<crate::crowdsec::Exchange, crate::crowdsec::FleetError>> {
    match ctx.config.fleet.provider {
        FleetProvider::None => None,
        FleetProvider::Crowdsec => {
            let mut line = |l: &str| log.log(Level::Notice, l);
            let result = crate::crowdsec::exchange(&ctx.config.fleet.crowdsec, g, &mut line);
            if let Err(e) = &result {
                log.log(Level::Warning, &format!("fleet: {e}; exports wait for the next sync"));
            }
            Some(result)
        }
    }
}

/// The sync run by `ban` and `unban` right after they changed the store.
/// When another sync holds the lock, that one pushes the change before it
/// ends (it checks the bans again), and the trigger is touched so that the
/// path unit runs one more after it.
pub fn after_change(ctx: &Ctx, g: &mut Banguard, log: &mut Syslog) -> Result<Report> {
    match JobLock::acquire(&ctx.config.sync.lock_file, LOCK_WAIT)? {
        None => {
            let _ = banguard::trigger::touch(&ctx.config.sync.trigger_file);
            Ok(Report::skipped(&ctx.config.sync))
        }
        Some(_lock) => {
            let report = sync_store(ctx, g, Options::default(), log)?;
            // Mail it sent counts as the timer's would (a warning if not).
            let (sent, failed) = mail_counts(&report);
            if let Err(e) = g.record_mail(sent, failed) {
                crate::say(&format!("warning: metrics: {e}"));
            }
            Ok(report)
        }
    }
}

/// Notices handed to sendmail, and those that could not be.
fn mail_counts(report: &Report) -> (u64, u64) {
    let sent = report.notices.iter().filter(|n| !n.dry_run && n.sent).count() as u64;
    let failed = report.notices.iter().filter(|n| !n.dry_run && !n.sent).count() as u64;
    (sent, failed)
}

/// Mail through `[mail] sendmail`.
struct Sendmail<'a>(&'a Config);

impl Notifier for Sendmail<'_> {
    fn send(&mut self, ban: &Ban, now: i64) -> std::result::Result<(), String> {
        mail::send(&self.0.mail, &mail::compose(self.0, ban, now))
    }

    fn send_account_lock(&mut self, lock: &AccountLock, now: i64) -> std::result::Result<(), String> {
        mail::send(&self.0.mail, &mail::compose_account_lock(self.0, lock, now))
    }
}

/// One run of the library's job with this machine's commands, sendmail
/// and syslog.
fn sync_store(ctx: &Ctx, g: &mut Banguard, opts: Options, log: &mut Syslog) -> Result<Report> {
    let runner: &dyn Runner = &SystemRunner::new();
    let mut to_syslog = |level: Level, line: &str| log.log(level, line);
    Ok(job::run(g, opts, runner, &mut Sendmail(&ctx.config), &mut to_syslog)?)
}

type FleetResult = std::result::Result<crate::crowdsec::Exchange, crate::crowdsec::FleetError>;

/// Prints a report (unless quiet) and turns its errors into the exit status.
pub fn finish(ctx: &Ctx, report: &Report, quiet: bool, fleet: Option<&FleetResult>) -> Result<Outcome> {
    if !quiet {
        if ctx.json {
            let mut v = json(report);
            if let Some(f) = fleet {
                v["fleet"] = match f {
                    Ok(x) => serde_json::to_value(x).unwrap_or(Value::Null),
                    Err(e) => json!({ "error": e.to_string() }),
                };
            }
            ctx.print_json(&v)?;
        } else {
            let mut text = report.text();
            if let Some(Ok(x)) = fleet {
                text.push_str(&x.summary());
                text.push('\n');
                if !x.applied.refused.is_empty() {
                    text.push_str(&format!("fleet: refused: {}\n", x.applied.refused.summary()));
                }
                if !x.malformed.is_empty() {
                    text.push_str(&format!("fleet: malformed: {}\n", x.malformed.summary()));
                }
                if x.applied.over_cap > 0 {
                    text.push_str(&format!(
                        "fleet: {} decisions left out: [fleet.crowdsec] max_decisions = {}\n",
                        x.applied.over_cap, ctx.config.fleet.crowdsec.max_decisions
                    ));
                }
            }
            ctx.print(&text)?;
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

/// The JSON shape of a sync report (`sync --json`, and inside `ban` and
/// `unban`).
pub fn json(r: &Report) -> Value {
    json!({
        "skipped": r.skipped,
        "dry_run": r.dry_run,
        "maintenance": r.maintenance,
        "desired": r.desired,
        "backends": r.backends.iter().map(backend_json).collect::<Vec<_>>(),
        "actions": r.lines,
        "notices": r.notices.iter().map(notice_json).collect::<Vec<_>>(),
        "warnings": r.warnings,
        "errors": r.errors,
    })
}

fn backend_json(b: &BackendResult) -> Value {
    match &b.outcome {
        Ok(rep) => json!({
            "backend": b.kind.to_string(),
            "ok": true,
            "added": rep.added,
            "removed": rep.removed,
            "updated": rep.updated,
            "unchanged": rep.unchanged,
            "repaired": rep.repaired,
            "steps": rep.steps.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        }),
        Err(msg) => json!({ "backend": b.kind.to_string(), "ok": false, "error": msg }),
    }
}

fn notice_json(n: &NoticeResult) -> Value {
    match (n.dry_run, n.sent, &n.error) {
        (true, _, _) => json!({ "notice": n.notice, "ban": n.ban, "sent": false, "dry_run": true }),
        (false, true, _) => json!({ "notice": n.notice, "ban": n.ban, "sent": true }),
        (false, false, error) => json!({ "notice": n.notice, "ban": n.ban, "sent": false, "error": error }),
    }
}
