//! `unban ADDR|CIDR|NAME` / `unban --all`: lifts the active bans that
//! cover or lie inside the target (the core also clears the failures the
//! host had counted), one syslog line per ban lifted, then an immediate
//! sync so the firewall and hosts.deny lose the address. Exit 1 when
//! there was nothing to lift or clear.

use crate::Outcome;
use crate::cli::UnbanArgs;
use crate::cmd::sync;
use crate::ctx::{Ctx, actor, retry, service_name};
use crate::error::Result;
use crate::output::{self, clean};
use crate::syslog::Syslog;
use crate::target::{self, Accept};
use banguard::HostKey;
use banguard::policy::overlaps;
use serde_json::json;

pub fn run(ctx: &Ctx, args: &UnbanArgs) -> Result<Outcome> {
    let host = match (&args.target, args.all) {
        (Some(t), false) => Some(target::parse(t, Accept::NetOrName)?),
        _ => None,
    };
    let service = args.service.as_deref().map(service_name).transpose()?;
    let target_text = host.as_ref().map_or_else(|| "any host".to_string(), |h| h.to_string());
    let not_matched = || {
        let on = service.map_or(String::new(), |s| format!(" on {s}"));
        format!("{} is not banned{on} and has no failures counted\n", clean(&target_text))
    };
    crate::ctx::require_root("unban")?;
    // Nothing was ever recorded here: nothing to lift, and a command with
    // nothing to do creates no store (and touches no firewall).
    if !ctx.config.database.exists() && !ctx.config.store.runtime.exists() {
        if ctx.json {
            ctx.print_json(&json!({ "lifted": [], "failures_cleared": [], "sync": null }))?;
        } else {
            ctx.print(&not_matched())?;
        }
        return Ok(Outcome::NoMatch);
    }
    // A plain name: sshd counted its attempts by the addresses it resolves
    // to now; those are unbanned with the name's label.
    let by_name = args.target.as_deref().and_then(target::plain_name).map(|n| (n, target::resolve(n)));
    let mut targets: Vec<HostKey> = host.iter().cloned().collect();
    if let Some((_, target::Resolved::Addrs(addrs))) = &by_name {
        targets.extend(addrs.iter().map(|a| HostKey::Net((*a).into())));
    }
    let mut g = ctx.open_write("unban")?;
    // The failures the unban will clear, to say so.
    let cleared: Vec<_> = retry(|| g.failing(service))?
        .into_iter()
        .filter(|f| host.is_none() || targets.iter().any(|h| overlaps(h, &f.host)))
        .collect();
    let lifted = match &host {
        Some(_) => {
            let mut lifted = Vec::new();
            for t in &targets {
                lifted.extend(retry(|| g.unban(t, service))?);
            }
            lifted
        }
        None => retry(|| g.unban_all(service))?,
    };
    let now = g.now();
    let mut log = Syslog::new();
    let who = actor();
    let mut out = String::new();
    for b in &lifted {
        log.notice(&format!(
            "unban {} on {} (ban #{}, {}) by {who}",
            b.host,
            output::service_label(&b.service),
            b.id,
            clean(&b.reason)
        ));
        out.push_str(&format!(
            "unbanned {} on {} (ban #{}, {})\n",
            clean(&b.host.to_string()),
            output::service_label(&b.service),
            b.id,
            clean(&b.reason)
        ));
    }
    for f in &cleared {
        out.push_str(&format!(
            "cleared {} failures of {} on {}\n",
            f.count,
            clean(&f.host.to_string()),
            clean(&f.service)
        ));
    }
    if !cleared.is_empty() && lifted.is_empty() {
        log.notice(&format!("reset the failures of {target_text} by {who}"));
    }
    if let Some((name, resolved)) = &by_name {
        out.push_str(&target::name_note(name, resolved));
        out.push('\n');
    }
    let matched = !lifted.is_empty() || !cleared.is_empty();
    if !matched {
        out.push_str(&not_matched());
    }
    let report = if args.no_sync || lifted.is_empty() {
        None
    } else {
        Some(sync::after_change(ctx, &mut g, &mut log)?)
    };
    if ctx.json {
        ctx.print_json(&json!({
            "lifted": lifted.iter().map(|b| output::ban_json(b, &ctx.config, now)).collect::<Vec<_>>(),
            "failures_cleared": cleared.iter().map(|f| json!({
                "host": f.host.to_string(), "service": f.service, "count": f.count,
            })).collect::<Vec<_>>(),
            "sync": report.as_ref().map(sync::json),
        }))?;
    } else {
        if let Some(r) = &report {
            out.push_str(&r.text());
        }
        ctx.print(&out)?;
    }
    if let Some(r) = &report {
        sync::finish(ctx, r, true, None)?;
    }
    Ok(if matched { Outcome::Ok } else { Outcome::NoMatch })
}
