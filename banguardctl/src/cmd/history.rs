//! `history ADDR|CIDR|NAME`: the events of one host (or of every host in
//! a network), oldest first: bans and unbans recorded by the store, the
//! expiry of each ban (derived from the ban rows), then the failures
//! counting now. `history --user NAME`: an account's locks, unlocks and
//! familiar networks, then its budget now. Exit 1 when nothing at all is
//! recorded.

use crate::Outcome;
use crate::cli::HistoryArgs;
use crate::ctx::{Ctx, retry};
use crate::error::Result;
use crate::output::{self, Table, clean};
use crate::target::{self, Accept};
use banguard::HostKey;
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
    let text = match (&args.target, &args.user) {
        (_, Some(user)) => return account(ctx, user),
        (Some(t), None) => t,
        (None, None) => unreachable!("clap requires a target or --user"),
    };
    let target = target::parse(text, Accept::NetOrName)?;
    // A plain name: sshd counted its attempts by the addresses it resolves
    // to, so their events are shown with the label's.
    let by_name = target::plain_name(text).map(|name| (name, target::resolve(name)));
    let mut targets = vec![target.clone()];
    if let Some((_, target::Resolved::Addrs(addrs))) = &by_name {
        targets.extend(addrs.iter().map(|a| HostKey::Net((*a).into())));
    }
    let covered = |host: &HostKey| targets.iter().any(|t| overlaps(t, host));
    let g = ctx.open_read()?;
    let now = g.now();
    let mut events = Vec::new();
    for t in &targets {
        events.extend(retry(|| g.history(t))?);
    }
    let mut rows: Vec<Row> = events
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
        if !covered(&b.host) || b.lifted.is_some() {
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
    let failing: Vec<_> = retry(|| g.failing(None))?.into_iter().filter(|f| covered(&f.host)).collect();
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
            "note": by_name.as_ref().map(|(name, resolved)| target::name_note(name, resolved)),
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
        if let Some((name, resolved)) = &by_name {
            out.push_str(&target::name_note(name, resolved));
            out.push('\n');
        }
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

/// `history --user NAME`.
fn account(ctx: &Ctx, user: &str) -> Result<Outcome> {
    let Some(key) = banguard::account::key(user) else {
        return Err(crate::error::Error::msg(format!(
            "invalid account {:?}: an empty name is no account",
            clean(user)
        )));
    };
    let g = ctx.open_read()?;
    let now = g.now();
    let mut rows: Vec<(i64, String, String)> =
        retry(|| g.account_events(Some(&key)))?.into_iter().map(|e| (e.at, e.kind, e.detail)).collect();
    for l in retry(|| g.account_locks(Some(&key), false))? {
        if l.lifted.is_none() && l.until <= now {
            rows.push((l.until, "expire".into(), format!("lock #{} ({}) ended", l.id, l.origin)));
        }
    }
    rows.sort_by_key(|r| r.0);
    let current = retry(|| g.accounts())?.into_iter().find(|a| a.account == key);
    if ctx.json {
        let events: Vec<_> = rows
            .iter()
            .map(|(at, kind, detail)| {
                json!({ "at": at, "at_iso": output::time_iso(*at), "event": kind, "detail": detail })
            })
            .collect();
        let now_json = current.as_ref().map(|a| {
            json!({ "used": a.used, "budget": a.budget, "locked_until": a.locked_until, "sources": a.sources })
        });
        ctx.print_json(&json!({ "account": key, "events": events, "now": now_json }))?;
    } else {
        let mut t = Table::new(&["TIME", "ACCOUNT", "EVENT", "DETAIL"]);
        for (at, kind, detail) in &rows {
            t.row(vec![output::time(*at), clean(&key), clean(kind), clean(detail)]);
        }
        let mut out = t.render();
        if let Some(a) = &current {
            let lock = a.locked_until.map_or_else(String::new, |u| {
                format!("; locked for unfamiliar sources for {}", output::until(u, now))
            });
            out.push_str(&format!(
                "now: account {} has used {} of its {} passwords from unfamiliar sources ({} sources){lock}\n",
                clean(&key),
                a.used,
                a.budget,
                a.sources
            ));
        }
        ctx.print(&out)?;
    }
    Ok(if rows.is_empty() && current.is_none() { Outcome::NoMatch } else { Outcome::Ok })
}
