//! `test ADDR SERVICE`: the tcpdmatch of banguard. Asks the core what an
//! attempt from ADDR on SERVICE would meet now (`peek`, which writes
//! nothing). Exit 0 when the client would be let through to the password
//! check, 1 when it would be refused.

use crate::Outcome;
use crate::cli::TestArgs;
use crate::cmd::status::policy_line;
use crate::ctx::{Ctx, retry, service_name};
use crate::error::{Error, Result};
use crate::output::{self, clean};
use crate::target::{self, Accept};
use banguard::HostKey;
use banguard::duration::format_duration;
use banguard::policy::{BanOrigin, Request, Untracked, Verdict};
use serde_json::{Value, json};

pub fn run(ctx: &Ctx, args: &TestArgs) -> Result<Outcome> {
    let service = service_name(&args.service)?;
    let client = args.client.trim();
    // Validate as an operator target; a network makes no sense here.
    let key = target::parse(client, Accept::NetOrName)?;
    if client.contains('/') {
        return Err(Error::msg(format!(
            "invalid address {client:?}: `test` takes one client address, not a network"
        )));
    }
    let mut g = ctx.open_read()?;
    let now = g.now();
    // A name key is asked about by its label, which counts as itself.
    let rhost = match &key {
        HostKey::Name(label) => label.as_str(),
        HostKey::Net(_) => client,
    };
    let req = Request { service, rhost: Some(rhost), hint: None, user: args.user.as_deref() };
    let verdict = retry(|| g.peek(&req))?;
    ctx.note_unconfigured(service);
    let policy = ctx.config.policy(service);
    let findtime = format_duration(policy.findtime);
    let (access, why, reason, ban_json): (&str, &str, String, Value) = match &verdict {
        Verdict::Untracked { reason: Untracked::Disabled } => (
            "granted",
            "disabled",
            format!("banguard is disabled for {service} ({} enabled = false)", ctx.section(service)),
            Value::Null,
        ),
        Verdict::Untracked { reason: Untracked::Ignored(net) } => {
            ("granted", "ignored", format!("never counted: in ignoreip {}", net.trunc()), Value::Null)
        }
        Verdict::Untracked { reason: Untracked::Local } => {
            ("granted", "local", "no remote host: a local login is never counted".into(), Value::Null)
        }
        Verdict::Allowed { used, maxretry, .. } if verdict.is_exhausted() => (
            "denied",
            "exhausted",
            format!(
                "{used} of {maxretry} failures used within {findtime}: the next attempt is refused and bans it"
            ),
            Value::Null,
        ),
        Verdict::Allowed { used, maxretry, .. } => (
            "granted",
            "counting",
            format!("{used} of {maxretry} failures used within {findtime}"),
            Value::Null,
        ),
        Verdict::AccountLocked { account, .. } => (
            "denied",
            "account-locked",
            format!(
                "account {} is locked for unfamiliar sources {}: {} of its {} passwords from unfamiliar sources \
                 used, and {} is not one of its familiar networks (a key, a familiar network or a local login \
                 still works)",
                clean(&account.account),
                account.locked_until.map_or_else(String::new, |u| format!(
                    "until {} ({} left)",
                    output::time(u),
                    output::until(u, now)
                )),
                account.used.min(account.budget),
                account.budget,
                clean(client)
            ),
            Value::Null,
        ),
        Verdict::Refused { ban, .. } => {
            let until = match ban.expires {
                Some(e) => format!("until {} ({} left)", output::time(e), output::until(e, now)),
                None => "permanently".into(),
            };
            let on = ban.service_label();
            let covered = if ban.host != key { format!(" (as part of {})", ban.host) } else { String::new() };
            let enforced = match output::kernel_reason(ban, &ctx.config, now) {
                Some(why) => format!("; in the firewall: {why}"),
                None => "; refused by PAM only".to_string(),
            };
            (
                "denied",
                "banned",
                format!(
                    "banned on {on}{covered} {until}; ban #{} since {}, {}{}, {} failures{enforced}",
                    ban.id,
                    output::time(ban.created),
                    match ban.origin {
                        BanOrigin::Banguard => String::new(),
                        origin => format!("from {origin}: "),
                    },
                    clean(&ban.reason),
                    ban.failures
                ),
                output::ban_json(ban, &ctx.config, now),
            )
        }
    };
    let counted_as = match &verdict {
        Verdict::Allowed { host, .. }
        | Verdict::Refused { host, .. }
        | Verdict::AccountLocked { host, .. } => Some(host.db_key()),
        Verdict::Untracked { .. } => None,
    };
    let (used, maxretry) = match &verdict {
        Verdict::Allowed { used, maxretry, .. } | Verdict::AccountLocked { used, maxretry, .. } => {
            (Some(*used), Some(*maxretry))
        }
        _ => (None, None),
    };
    let side = match &verdict {
        Verdict::Allowed { account, .. } => account.clone(),
        Verdict::AccountLocked { account, .. } => Some(account.clone()),
        _ => None,
    };
    let account_line = args.user.as_deref().map(|user| account_line(ctx, user, side.as_ref(), &verdict, now));
    // A plain name (from a log line): what sshd counts is the address.
    let by_address = target::plain_name(client).map(|name| {
        let resolved = target::resolve(name);
        let mut verdicts = Vec::new();
        if let target::Resolved::Addrs(addrs) = &resolved {
            for a in addrs {
                let text = a.to_string();
                let req = Request { service, rhost: Some(&text), hint: None, user: args.user.as_deref() };
                verdicts.push((*a, retry(|| g.peek(&req))));
            }
        }
        (name, resolved, verdicts)
    });
    let mut address_lines = Vec::new();
    let mut address_json = Vec::new();
    let mut any_address_denied = false;
    if let Some((_, _, verdicts)) = &by_address {
        for (a, v) in verdicts {
            let v = v.as_ref().map_err(|e| Error::msg(e.to_string()))?;
            let denied = v.is_refused() || v.is_exhausted();
            any_address_denied |= denied;
            let what = match v {
                Verdict::Refused { ban, .. } => format!(
                    "denied: banned on {} ({})",
                    ban.service_label(),
                    ban.expires
                        .map_or("permanent".to_string(), |e| format!("{} left", output::until(e, now)))
                ),
                Verdict::AccountLocked { .. } => {
                    "denied: the account is locked for unfamiliar sources".into()
                }
                Verdict::Allowed { used, maxretry, .. } if denied => {
                    format!("denied: {used} of {maxretry} failures used, the next attempt bans")
                }
                Verdict::Allowed { used, maxretry, .. } => {
                    format!("granted: {used} of {maxretry} failures used")
                }
                Verdict::Untracked { reason: Untracked::Ignored(n) } => {
                    format!("granted: in ignoreip {}", n.trunc())
                }
                Verdict::Untracked { .. } => "granted: not counted".into(),
            };
            address_lines.push(format!("  {a}: {what}"));
            address_json.push(json!({ "address": a.to_string(), "access": if denied { "denied" } else { "granted" }, "reason": what }));
        }
    }
    let access = if any_address_denied { "denied" } else { access };
    if ctx.json {
        let ignored_by = match &verdict {
            Verdict::Untracked { reason: Untracked::Ignored(n) } => Some(n.trunc().to_string()),
            _ => None,
        };
        ctx.print_json(&json!({
            "client": client,
            "counted_as": counted_as,
            "service": service,
            "section": ctx.section(service),
            "access": access,
            "why": why,
            "used": used,
            "maxretry": maxretry,
            "findtime": findtime,
            "ignored_by": ignored_by,
            "ban": ban_json,
            "reason": reason,
            "account": side.as_ref().map(|a| json!({
                "account": a.account,
                "familiar": a.familiar,
                "used": a.used.min(a.budget),
                "budget": a.budget,
                "locked_until": a.locked_until,
                "learning": a.learning,
                "shared_budget": a.shared,
                "refused": a.refuses(),
            })),
            "account_reason": account_line,
            "by_address": by_address.as_ref().map(|(name, resolved, _)| json!({
                "note": target::name_note(name, resolved),
                "resolved": match resolved {
                    target::Resolved::Addrs(_) => Value::Array(address_json.clone()),
                    target::Resolved::Failed(why) => json!({ "error": why }),
                },
            })),
        }))?;
    } else {
        let mut out = String::new();
        out.push_str(&format!("client:   {}", clean(client)));
        if let Some(k) = &counted_as {
            out.push_str(&format!(" (counted as {})", clean(k)));
        }
        out.push('\n');
        out.push_str(&format!("service:  {service} ({} {})\n", ctx.section(service), policy_line(policy)));
        out.push_str(&format!("access:   {access}\n"));
        out.push_str(&format!("reason:   {reason}\n"));
        if let Some(line) = &account_line {
            out.push_str(&format!("account:  {line}\n"));
        }
        if let Some((name, resolved, _)) = &by_address {
            out.push_str(&target::name_note(name, resolved));
            out.push('\n');
            for l in &address_lines {
                out.push_str(&clean(l));
                out.push('\n');
            }
        }
        ctx.print(&out)?;
    }
    Ok(if access == "granted" { Outcome::Ok } else { Outcome::NoMatch })
}

/// What the account side says of an attempt by `user` (text).
fn account_line(
    ctx: &Ctx,
    user: &str,
    side: Option<&banguard::policy::AccountSide>,
    verdict: &Verdict,
    now: i64,
) -> String {
    let cfg = &ctx.config.accounts;
    let Some(a) = side else {
        return match verdict {
            _ if !cfg.enabled => "the account side is off ([accounts] enabled = false)".into(),
            _ if banguard::account::key(user).is_none() => "an empty name is no account: not counted".into(),
            Verdict::Untracked { .. } => "not counted (the host is not tracked)".into(),
            Verdict::Refused { .. } => "not reached: the host is refused first".into(),
            _ => "not reached: the host's next attempt is refused first".into(),
        };
    };
    let name = clean(&a.account);
    if let Some(net) = &a.familiar {
        let net = banguard::HostKey::from_db_key(net).map_or_else(|| clean(net), |k| k.to_string());
        return format!(
            "{name}: the source is in its familiar network {net}: never refused by the account rule"
        );
    }
    let shared =
        if a.shared { " (counted in the budget all new accounts share: max_tracked reached)" } else { "" };
    let learning = if a.learning { "; learning: nothing is refused yet" } else { "" };
    match a.locked_until {
        Some(u) => format!(
            "{name}: locked for unfamiliar sources until {} ({} left){shared}{learning}",
            output::time(u),
            output::until(u, now)
        ),
        None => format!(
            "{name}: {} of {} passwords from unfamiliar sources used; this one would take one more{shared}{learning}",
            a.used.saturating_sub(1).min(a.budget),
            a.budget
        ),
    }
}
