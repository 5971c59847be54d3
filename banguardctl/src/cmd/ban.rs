//! `ban ADDR|CIDR`: a manual ban (on all services unless `--service`),
//! one syslog line, then an immediate sync so the firewall blocks it now.
//! The same rules as for an automatic ban: a network that contains an
//! ignoreip entry (or loopback) is banned around it (the module never
//! refuses an ignored host, and the firewall leaves it out); a target that
//! lies wholly inside ignoreip, or that may never reach a firewall (a
//! special address class, or wider than the `[sync]` floor), is refused.

use crate::Outcome;
use crate::cli::BanArgs;
use crate::cmd::sync;
use crate::ctx::{Ctx, actor, retry, service_name};
use crate::error::{Error, Result};
use crate::output::{self, clean};
use crate::syslog::Syslog;
use crate::target::{self, Accept};
use banguard::duration::BanTime;
use serde_json::json;

/// Longest `--reason` kept.
const MAX_REASON: usize = 200;

pub fn run(ctx: &Ctx, args: &BanArgs) -> Result<Outcome> {
    let host = target::parse(&args.target, Accept::Net)?;
    let service = args.service.as_deref().map(service_name).transpose()?;
    let reason = reason(args.reason.as_deref())?;
    let spared = banguard::ban::check_target(&ctx.config, &host)
        .map_err(|why| Error::msg(format!("refusing to ban {host}: {why}")))?;
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
            "sync": report.as_ref().map(sync::json),
        }))?;
    } else {
        let mut out = format!("{text_line}\n");
        if !spared.is_empty() {
            let list: Vec<String> = spared.iter().map(|n| n.to_string()).collect();
            out.push_str(&format!("left out (ignoreip or loopback, never blocked): {}\n", list.join(", ")));
        }
        if let Some(r) = &report {
            out.push_str(&r.text());
        }
        ctx.print(&out)?;
    }
    match report {
        Some(r) => sync::finish(ctx, &r, true, None),
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
