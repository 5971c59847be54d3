//! `ban ADDR|CIDR`: a manual ban (on all services unless `--service`),
//! one syslog line, then an immediate sync so the firewall blocks it now.
//! A target inside an ignoreip entry (or containing one) is refused: the
//! module would never refuse it, and a firewall block of 127.0.0.0/8 or of
//! the admin network locks out what ignoreip protects.

use crate::Outcome;
use crate::cli::BanArgs;
use crate::cmd::sync;
use crate::ctx::{Ctx, actor, retry, service_name};
use crate::error::{Error, Result};
use crate::output::{self, clean};
use crate::syslog::Syslog;
use crate::target::{self, Accept};
use banguard::HostKey;
use banguard::duration::BanTime;
use serde_json::json;

/// Longest `--reason` kept.
const MAX_REASON: usize = 200;

pub fn run(ctx: &Ctx, args: &BanArgs) -> Result<Outcome> {
    let host = target::parse(&args.target, Accept::Net)?;
    let service = args.service.as_deref().map(service_name).transpose()?;
    let reason = reason(args.reason.as_deref())?;
    check_not_ignored(ctx, &host)?;
    let length = if args.permanent {
        BanTime::Permanent
    } else if let Some(secs) = args.length {
        BanTime::Seconds(secs)
    } else {
        service.map_or(&ctx.config.default, |s| ctx.config.policy(s)).bantime
    };
    let mut g = ctx.open_write("ban")?;
    let ban = retry(|| g.ban(&host, service, length, &reason))?;
    if let Some(s) = service {
        ctx.note_unconfigured(s);
    }
    let now = g.now();
    let mut log = Syslog::new();
    let line = format!(
        "ban {} on {} for {} ({}) by {}",
        ban.host,
        output::service_label(&ban.service),
        length,
        clean(&ban.reason),
        actor()
    );
    log.notice(&line);
    let report = if args.no_sync { None } else { Some(sync::after_change(ctx, &mut g, &mut log)?) };
    let text_line = format!(
        "banned {} on {} for {} (ban #{})",
        ban.host,
        output::service_label(&ban.service),
        length,
        ban.id
    );
    if ctx.json {
        ctx.print_json(&json!({
            "ban": output::ban_json(&ban, &ctx.config, now),
            "sync": report.as_ref().map(|r| r.json()),
        }))?;
    } else {
        let mut out = format!("{text_line}\n");
        if let Some(r) = &report {
            out.push_str(&r.text());
        }
        ctx.print(&out)?;
    }
    match report {
        Some(r) => sync::finish(ctx, &r, true),
        None => Ok(Outcome::Ok),
    }
}

/// A reason is a short line of printable text.
fn reason(text: Option<&str>) -> Result<String> {
    let Some(t) = text else { return Ok(String::new()) };
    let t = t.trim();
    if t.chars().count() > MAX_REASON || t.chars().any(char::is_control) {
        return Err(Error::msg(format!(
            "invalid reason {t:?}: at most {MAX_REASON} printable characters on one line"
        )));
    }
    Ok(t.to_string())
}

/// Refuses a ban that overlaps any ignoreip entry, or blocks everything.
fn check_not_ignored(ctx: &Ctx, host: &HostKey) -> Result<()> {
    let Some(net) = host.net() else { return Ok(()) };
    if net.prefix_len() == 0 {
        return Err(Error::msg(format!("refusing to ban {net}: that is every address")));
    }
    let c = &ctx.config;
    let sections = std::iter::once(("[default]".to_string(), &c.default))
        .chain(c.services.iter().map(|(n, p)| (format!("[services.{n}]"), p)));
    for (section, p) in sections {
        if let Some(hit) =
            p.ignoreip.iter().find(|i| i.contains(&net.network()) || net.contains(&i.network()))
        {
            return Err(Error::msg(format!(
                "refusing to ban {host}: it overlaps ignoreip {} in {section}; remove it from ignoreip first",
                hit.trunc()
            )));
        }
    }
    Ok(())
}
