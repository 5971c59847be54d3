//! `history ADDR|CIDR|NAME`: the events of one host (or of every host in
//! a network), oldest first: bans and unbans recorded by the store, the
//! expiry of each ban (derived from the ban rows), then the failures
//! counting now. Exit 1 when nothing at all is recorded.

use crate::Outcome;
use crate::cli::HistoryArgs;
use crate::ctx::{Ctx, retry};
use crate::error::Result;
use crate::output::{self, Table, clean};
use crate::target::{self, Accept};
use banguard::duration::format_duration;
use banguard::policy::overlaps;
use serde_json::json;

struct Row {
    at: i64,
    host: String,
    service: String,
    kind: String,
    detail: String,
}

pub fn run(ctx: &Ctx, args: &HistoryArgs) -> Result<Outcome> {
    let target = target::parse(&args.target, Accept::NetOrName)?;
    let g = ctx.open_read()?;
    let now = g.now();
    let mut rows: Vec<Row> = retry(|| g.history(&target))?
        .into_iter()
        .map(|e| Row {
            at: e.at,
            host: e.host.to_string(),
            service: output::service_label(&e.service).to_string(),
            kind: e.kind,
            detail: e.detail,
        })
        .collect();
    // Expiries are not events in the store; every ban row still in the
    // history tells when it ended by itself.
    for b in retry(|| g.bans(None, true))? {
        if !overlaps(&target, &b.host) || b.lifted.is_some() {
            continue;
        }
        if let Some(e) = b.expires.filter(|e| *e <= now) {
            rows.push(Row {
                at: e,
                host: b.host.to_string(),
                service: output::service_label(&b.service).to_string(),
                kind: "expire".into(),
                detail: format!("ban #{} ({}, {}) ended", b.id, output::length(&b), b.reason),
            });
        }
    }
    rows.sort_by_key(|r| r.at);
    let failing: Vec<_> =
        retry(|| g.failing(None))?.into_iter().filter(|f| overlaps(&target, &f.host)).collect();
    if ctx.json {
        let events: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "at": r.at,
                    "at_iso": output::time_iso(r.at),
                    "host": r.host,
                    "service": r.service,
                    "event": r.kind,
                    "detail": r.detail,
                })
            })
            .collect();
        let failing_json: Vec<_> = failing
            .iter()
            .map(|f| {
                json!({
                    "host": f.host.to_string(),
                    "service": f.service,
                    "count": f.count,
                    "maxretry": f.maxretry,
                    "findtime": format_duration(f.findtime),
                    "last": f.last,
                    "last_iso": output::time_iso(f.last),
                })
            })
            .collect();
        ctx.print_json(&json!({
            "target": target.to_string(),
            "events": events,
            "failing": failing_json,
        }))?;
    } else {
        let mut t = Table::new(&["TIME", "HOST", "SERVICE", "EVENT", "DETAIL"]);
        for r in &rows {
            t.row(vec![
                output::time(r.at),
                clean(&r.host),
                clean(&r.service),
                clean(&r.kind),
                clean(&r.detail),
            ]);
        }
        let mut out = t.render();
        for f in &failing {
            out.push_str(&format!(
                "now: {} has {} of {} failures on {} within {} (last at {})\n",
                clean(&f.host.to_string()),
                f.count,
                f.maxretry,
                clean(&f.service),
                format_duration(f.findtime),
                output::time(f.last)
            ));
        }
        ctx.print(&out)?;
    }
    Ok(if rows.is_empty() && failing.is_empty() { Outcome::NoMatch } else { Outcome::Ok })
}
