//! `status [SERVICE]`: per service, like `fail2ban-client status sshd`.

use crate::Outcome;
use crate::cli::StatusArgs;
use crate::ctx::{Ctx, retry, service_name};
use crate::error::Result;
use crate::output::{self, clean};
use banguard::config::{FleetProvider, ServicePolicy};
use banguard::duration::format_duration;
use serde_json::json;
use std::collections::BTreeMap;

pub fn run(ctx: &Ctx, args: &StatusArgs) -> Result<Outcome> {
    let service = args.service.as_deref().map(service_name).transpose()?;
    let g = ctx.open_read()?;
    let all = retry(|| g.status(None))?;
    let list = match service {
        Some(s) => {
            if !all.iter().any(|st| st.service == s) {
                ctx.note_unconfigured(s);
            }
            retry(|| g.status(Some(s)))?
        }
        None => all,
    };
    // Hosts, not bans (the library counts a host banned on the service
    // and on all services once).
    let hosts =
        |st: &banguard::policy::ServiceStatus| st.banned.iter().map(|h| h.to_string()).collect::<Vec<_>>();
    // How many of a service's active bans are in the firewall, by reason.
    let now = g.now();
    let mut in_firewall: BTreeMap<String, BTreeMap<&'static str, usize>> = BTreeMap::new();
    for st in &list {
        let counts = in_firewall.entry(st.service.clone()).or_default();
        for b in retry(|| g.bans(Some(&st.service), false))? {
            if let Some(why) = output::kernel_reason(&b, &ctx.config, now) {
                *counts.entry(why).or_default() += 1;
            }
        }
    }
    let firewall_line = |service: &str| {
        let counts = &in_firewall[service];
        let total: usize = counts.values().sum();
        let parts: Vec<String> = counts.iter().map(|(why, n)| format!("{why} {n}")).collect();
        if parts.is_empty() { total.to_string() } else { format!("{total} ({})", parts.join(", ")) }
    };
    let fleet = match ctx.config.fleet.provider {
        FleetProvider::None => None,
        FleetProvider::Crowdsec => Some(retry(|| g.fleet_status())?),
    };
    // The account side: learning or refusing, accounts tried from
    // unfamiliar sources, locks in force and in the last day.
    let accounts = retry(|| g.accounts())?;
    let locks = retry(|| g.account_locks(None, false))?;
    let learning = retry(|| g.learning())?;
    let locked_now = locks.iter().filter(|l| l.lifted.is_none() && l.until > now).count();
    let locks_day = locks.iter().filter(|l| l.created > now - 86_400).count();
    // The last day per service, an hour a column.
    let day = retry(|| g.hours(DAY_HOURS))?;
    let day_of =
        |service: &str| day.get(banguard::policy::service_label(service)).cloned().unwrap_or_default();
    if ctx.json {
        let rows: Vec<_> = list
            .iter()
            .map(|st| {
                let p = ctx.config.policy(&st.service);
                json!({
                    "service": st.service,
                    "section": ctx.section(&st.service),
                    "enabled": p.enabled,
                    "maxretry": p.maxretry,
                    "findtime": format_duration(p.findtime),
                    "bantime": p.bantime.to_string(),
                    "currently_failing": st.currently_failing,
                    "total_failed": st.total_failed,
                    "currently_banned": hosts(st).len(),
                    "total_banned": st.total_banned,
                    "banned": hosts(st),
                    "in_firewall": in_firewall[&st.service],
                    "last_24h": day_of(&st.service),
                })
            })
            .collect();
        let fleet = fleet.map(|f| {
            json!({
                "provider": "crowdsec",
                "url": ctx.config.fleet.crowdsec.url,
                "last_ok": f.last_ok,
                "last_ok_iso": f.last_ok.map(banguard::text::time_iso),
                "last_error": f.last_error,
                "pending_exports": f.pending_exports,
                "imported_active": f.imported_active,
            })
        });
        let accounts_json = json!({
            "enabled": ctx.config.accounts.enabled,
            "learning": ctx.config.accounts.enabled
                && ctx.config.accounts.learning > 0
                && learning.is_none_or(|(_, until)| now < until),
            "learning_since": learning.map(|l| l.0),
            "learning_until": learning.map(|l| l.1),
            "tried": accounts.len(),
            "locked": locked_now,
            "locks_last_24h": locks_day,
        });
        ctx.print_json(&json!({ "services": rows, "fleet": fleet, "accounts": accounts_json }))?;
        return Ok(Outcome::Ok);
    }
    let mut out = String::new();
    if service.is_none() {
        let names: Vec<&str> = list.iter().map(|s| s.service.as_str()).collect();
        out.push_str(&format!("Services: {}", names.len()));
        if !names.is_empty() {
            out.push_str(&format!(" ({})", clean(&names.join(", "))));
        }
        out.push('\n');
    }
    for st in &list {
        let p = ctx.config.policy(&st.service);
        let banned: Vec<String> = hosts(st).iter().map(|h| clean(h)).collect();
        out.push_str(&format!("\nStatus for the service: {}\n", clean(&st.service)));
        out.push_str(&format!("|- Policy:             {} {}\n", ctx.section(&st.service), policy_line(p)));
        out.push_str("|- Failures\n");
        out.push_str(&format!("|  |- Currently failing: {}\n", st.currently_failing));
        out.push_str(&format!("|  `- Total failed:      {}\n", st.total_failed));
        out.push_str("|- Bans\n");
        out.push_str(&format!("|  |- Currently banned:  {}\n", banned.len()));
        out.push_str(&format!("|  |- Total banned:      {}\n", st.total_banned));
        out.push_str(&format!("|  |- In the firewall:   {}\n", firewall_line(&st.service)));
        // fail2ban-client prints every one; a fleet's 100,000 are not read
        // on a screen (`list` shows them all).
        let shown = banned.iter().take(BANNED_SHOWN).cloned().collect::<Vec<_>>().join(" ");
        let more = banned.len().saturating_sub(BANNED_SHOWN);
        let more = if more > 0 {
            format!(" ... and {more} more (banguardctl list shows them all)")
        } else {
            String::new()
        };
        out.push_str(&format!("|  `- Banned list:       {shown}{more}\n"));
        let hours = day_of(&st.service);
        let attempts: Vec<i64> = hours.iter().map(|h| h.attempts).collect();
        let refused: Vec<i64> = hours.iter().map(|h| h.refused).collect();
        out.push_str("`- Last 24 hours (an hour a column, now at the right)\n");
        out.push_str(&format!("   |- Attempts:          {}\n", picture(&attempts)));
        out.push_str(&format!("   `- Refused:           {}\n", picture(&refused)));
    }
    if let Some(f) = fleet {
        out.push_str(&format!("\nFleet: crowdsec {}\n", clean(&ctx.config.fleet.crowdsec.url)));
        let last = f.last_ok.map_or_else(|| "never".to_string(), output::time);
        out.push_str(&format!("|- Last exchange:      {last}\n"));
        if let Some(e) = &f.last_error {
            out.push_str(&format!("|- Last error:         {}\n", clean(e)));
        }
        out.push_str(&format!("|- Waiting to post:    {}\n", f.pending_exports));
        out.push_str(&format!("`- Taken from it:      {}\n", f.imported_active));
    }
    out.push_str("\nAccounts (passwords from unfamiliar sources)\n");
    let side = crate::cmd::accounts::learning_line(ctx, learning, now);
    out.push_str(&format!("|- Account side:       {side}\n"));
    out.push_str(&format!("|- Tried:              {}\n", accounts.len()));
    out.push_str(&format!("|- Locked now:         {locked_now}\n"));
    out.push_str(&format!("`- Locks in 24h:       {locks_day}\n"));
    let out = out.strip_prefix('\n').unwrap_or(&out);
    ctx.print(out)?;
    Ok(Outcome::Ok)
}

/// Hours drawn by `status`.
const DAY_HOURS: i64 = 24;

/// One character per value, its height against the largest ('.' for
/// none, never the lowest block for a few), then the total and peak.
fn picture(values: &[i64]) -> String {
    const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = values.iter().copied().max().unwrap_or(0).max(0);
    let total: i64 = values.iter().map(|v| (*v).max(0)).sum();
    let bars: String = values
        .iter()
        .map(|&v| {
            if v <= 0 || max == 0 {
                '.'
            } else {
                let i = ((v * 8 + max - 1) / max).clamp(1, 8) - 1;
                LEVELS[i as usize]
            }
        })
        .collect();
    format!("{bars}  {total} in all, at most {max} an hour")
}

/// Banned hosts listed by name per service in the text output.
const BANNED_SHOWN: usize = 100;

/// "maxretry 3 within 10m, ban 10m" (or "disabled").
pub fn policy_line(p: &ServicePolicy) -> String {
    if !p.enabled {
        return "disabled (enabled = false)".into();
    }
    format!("maxretry {} within {}, ban {}", p.maxretry, format_duration(p.findtime), p.bantime)
}

#[cfg(test)]
mod tests {
    use super::picture;

    #[test]
    fn the_day_is_drawn_to_scale() {
        assert_eq!(picture(&[0, 1, 8, 4]), ".▁█▄  13 in all, at most 8 an hour");
        assert_eq!(picture(&[0, 0]), "..  0 in all, at most 0 an hour");
    }
}
