//! `list`: active bans (`--all`: also expired and lifted ones), or with
//! `--failures` the hosts counting failures. An empty list is exit 0.

use crate::Outcome;
use crate::cli::ListArgs;
use crate::ctx::{Ctx, retry, service_name};
use crate::error::Result;
use crate::output::{self, Table, clean};
use banguard::duration::format_duration;
use serde_json::json;

pub fn run(ctx: &Ctx, args: &ListArgs) -> Result<Outcome> {
    let service = args.service.as_deref().map(service_name).transpose()?;
    let g = ctx.open_read()?;
    let now = g.now();
    if args.failures {
        let failing = retry(|| g.failing(service))?;
        if ctx.json {
            let rows: Vec<_> = failing
                .iter()
                .map(|f| {
                    json!({
                        "host": f.host.to_string(),
                        "key": f.host.db_key(),
                        "service": f.service,
                        "count": f.count,
                        "maxretry": f.maxretry,
                        "findtime": format_duration(f.findtime),
                        "first": f.first,
                        "first_iso": output::time_iso(f.first),
                        "last": f.last,
                        "last_iso": output::time_iso(f.last),
                    })
                })
                .collect();
            ctx.print_json(&json!({ "failing": rows }))?;
        } else {
            let mut t = Table::new(&["ADDRESS", "SERVICE", "FAILURES", "WINDOW", "FIRST", "LAST"]);
            for f in &failing {
                t.row(vec![
                    clean(&f.host.to_string()),
                    clean(&f.service),
                    format!("{}/{}", f.count, f.maxretry),
                    format_duration(f.findtime),
                    output::time(f.first),
                    output::time(f.last),
                ]);
            }
            ctx.print(&t.render())?;
        }
        return Ok(Outcome::Ok);
    }
    let bans = retry(|| g.bans(service, args.all))?;
    if ctx.json {
        let rows: Vec<_> = bans.iter().map(|b| output::ban_json(b, &ctx.config, now)).collect();
        ctx.print_json(&json!({ "bans": rows }))?;
        return Ok(Outcome::Ok);
    }
    let mut header = vec![
        "ADDRESS",
        "SERVICE",
        "SINCE",
        "EXPIRES IN",
        "FAILURES",
        "BANS BEFORE",
        "FIREWALL",
        "ORIGIN",
        "REASON",
    ];
    if args.all {
        header.insert(1, "STATE");
    }
    let mut t = Table::new(&header);
    for b in &bans {
        let mut row = vec![
            clean(&b.host.to_string()),
            clean(output::service_label(&b.service)),
            output::time(b.created),
            output::expires_cell(b, now),
            b.failures.to_string(),
            b.prior_bans.to_string(),
            output::firewall_cell(b, &ctx.config, now),
            b.origin.to_string(),
            clean(&b.reason),
        ];
        if args.all {
            row.insert(1, output::state(b, now).to_string());
        }
        t.row(row);
    }
    let mut out = t.render();
    if bans.iter().any(|b| matches!(b.host, banguard::HostKey::Name(_))) {
        // What `name:` rows mean (and do not).
        out.push_str(
            "note: a name: row refuses only applications that give that name as the client (no address); \
             sshd counts by the client's address (SSH_CONNECTION) whatever name it logs, and a name never \
             reaches the firewall (banguardctl test NAME sshd shows the addresses it resolves to)\n",
        );
    }
    ctx.print(&out)?;
    Ok(Outcome::Ok)
}
