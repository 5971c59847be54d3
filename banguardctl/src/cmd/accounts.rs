//! `accounts`: the account side for support staff. `list` (the default)
//! shows the accounts tried from unfamiliar sources, their budget, sources
//! and lock; `unlock` lifts an account's locks; `familiar`, `familiar-add`
//! and `familiar-remove` show and change the networks an account is never
//! refused from by the account rule. Exit 1 when there is nothing to show
//! or change.

use crate::Outcome;
use crate::cli::{AccountsAction, AccountsArgs};
use crate::ctx::{Ctx, actor, retry};
use crate::error::{Error, Result};
use crate::output::{self, Table, clean};
use crate::syslog::Syslog;
use crate::target::{self, Accept};
use banguard::duration::format_duration;
use serde_json::json;

pub fn run(ctx: &Ctx, args: &AccountsArgs) -> Result<Outcome> {
    match args.action.as_ref().unwrap_or(&AccountsAction::List) {
        AccountsAction::List => list(ctx),
        AccountsAction::Unlock { name } => unlock(ctx, name),
        AccountsAction::Familiar { name } => familiar(ctx, name.as_deref()),
        AccountsAction::FamiliarAdd { name, target } => change_familiar(ctx, name, target, true),
        AccountsAction::FamiliarRemove { name, target } => change_familiar(ctx, name, target, false),
    }
}

/// The account a name stands for (`*`: the budget all accounts share past
/// `max_tracked`), or why it stands for none.
fn account(name: &str) -> Result<String> {
    if name.trim() == banguard::account::OVERFLOW {
        return Ok(banguard::account::OVERFLOW.to_string());
    }
    banguard::account::key(name)
        .ok_or_else(|| Error::msg(format!("invalid account {:?}: an empty name is no account", clean(name))))
}

/// "learning until <time> (nothing refused)", "refusing since <time>",
/// "off".
pub fn learning_line(ctx: &Ctx, learning: Option<(i64, i64)>, now: i64) -> String {
    let learns = ctx.config.accounts.learning > 0;
    let Some((since, until)) = learning else {
        return if !ctx.config.accounts.enabled {
            "off ([accounts] enabled = false)".into()
        } else if learns {
            format!(
                "learning for {} from the first attempt from an unfamiliar source (none yet): locks are logged, nothing is refused",
                format_duration(ctx.config.accounts.learning)
            )
        } else {
            "on".into()
        };
    };
    if !ctx.config.accounts.enabled {
        "off ([accounts] enabled = false)".into()
    } else if now < until {
        format!(
            "learning until {} ({} left): locks are logged, nothing is refused (started {})",
            output::time(until),
            format_duration(until - now),
            output::time(since)
        )
    } else {
        format!("on since {}", output::time(until))
    }
}

fn list(ctx: &Ctx) -> Result<Outcome> {
    let g = ctx.open_read()?;
    let now = g.now();
    let accounts = retry(|| g.accounts())?;
    let locks = retry(|| g.account_locks(None, true))?;
    let learning = retry(|| g.learning())?;
    let until = learning.map_or(0, |l| l.1);
    let cfg = &ctx.config.accounts;
    if ctx.json {
        let rows: Vec<_> = accounts
            .iter()
            .map(|a| {
                json!({
                    "account": a.account,
                    "used": a.used,
                    "budget": a.budget,
                    "locked_until": a.locked_until,
                    "locked_until_iso": a.locked_until.map(output::time_iso),
                    "locks_in_a_row": a.level,
                    "tries": a.tries,
                    "sources": a.sources,
                    "first": a.first_at,
                    "last": a.last_at,
                })
            })
            .collect();
        let locks: Vec<_> = locks.iter().map(lock_json).collect();
        ctx.print_json(&json!({
            "enabled": cfg.enabled,
            "learning_since": learning.map(|l| l.0),
            "learning_until": learning.map(|l| l.1),
            "learning": ctx.config.accounts.learning > 0 && (learning.is_none() || now < until),
            "accounts": rows,
            "locks": locks,
        }))?;
        return Ok(if accounts.is_empty() && locks.is_empty() { Outcome::NoMatch } else { Outcome::Ok });
    }
    let mut out = format!("Account side: {}\n", learning_line(ctx, learning, now));
    out.push_str(&format!(
        "Budget: {} passwords from unfamiliar sources, one back every {}; lock {} doubling up to {}\n\n",
        cfg.budget,
        format_duration(cfg.refill),
        format_duration(cfg.lock),
        format_duration(cfg.lock_max)
    ));
    if accounts.is_empty() {
        out.push_str("No account has been tried from unfamiliar sources.\n");
    } else {
        let mut t = Table::new(&["ACCOUNT", "BUDGET USED", "LOCKED", "TRIES", "SOURCES", "LAST TRY"]);
        for a in &accounts {
            let locked = match a.locked_until {
                Some(u) => format!("{} left", output::until(u, now)),
                None => "no".into(),
            };
            t.row(vec![
                clean(&a.account),
                format!("{}/{}", a.used, a.budget),
                locked,
                a.tries.to_string(),
                a.sources.to_string(),
                output::time(a.last_at),
            ]);
        }
        out.push_str(&t.render());
    }
    if !locks.is_empty() {
        out.push_str("\nLocks in force (unfamiliar sources refused; familiar networks, keys and local logins unaffected):\n");
        let mut t = Table::new(&["ACCOUNT", "UNTIL", "FROM", "PASSWORDS", "SOURCES"]);
        for l in &locks {
            t.row(vec![
                clean(&l.account),
                format!("{} ({} left)", output::time(l.until), output::until(l.until, now)),
                clean(&l.origin),
                l.passwords.to_string(),
                l.sources.to_string(),
            ]);
        }
        out.push_str(&t.render());
    }
    ctx.print(&out)?;
    Ok(if accounts.is_empty() && locks.is_empty() { Outcome::NoMatch } else { Outcome::Ok })
}

fn lock_json(l: &banguard::policy::AccountLock) -> serde_json::Value {
    json!({
        "id": l.id,
        "account": l.account,
        "created": l.created,
        "until": l.until,
        "until_iso": output::time_iso(l.until),
        "origin": l.origin,
        "passwords": l.passwords,
        "sources": l.sources,
        "lifted": l.lifted,
    })
}

fn unlock(ctx: &Ctx, name: &str) -> Result<Outcome> {
    let key = account(name)?;
    crate::ctx::require_root("accounts unlock")?;
    let mut g = ctx.open_write("accounts unlock")?;
    let who = actor();
    let done = retry(|| g.unlock_account(&key, &who))?;
    if done {
        Syslog::new().notice(&format!("account {} unlocked by {who}", clean(&key)));
        // The sync withdraws the lock from the fleet.
        let _ = banguard::trigger::touch(&ctx.config.sync.trigger_file);
    }
    if ctx.json {
        ctx.print_json(&json!({ "account": key, "unlocked": done }))?;
    } else if done {
        ctx.print(&format!("account {} unlocked: its budget is full again\n", clean(&key)))?;
    } else {
        let mut text = format!("account {} is not locked and has no budget used\n", clean(&key));
        // An account with no row of its own is counted in the shared budget.
        let shared = retry(|| g.accounts())?.into_iter().find(|a| a.account == banguard::account::OVERFLOW);
        if key != banguard::account::OVERFLOW && shared.is_some_and(|a| a.locked_until.is_some()) {
            text.push_str(
                "note: the budget all new accounts share ([accounts] max_tracked reached) is locked; \
                 `banguardctl accounts unlock '*'` lifts it\n",
            );
        }
        ctx.print(&text)?;
    }
    Ok(if done { Outcome::Ok } else { Outcome::NoMatch })
}

fn familiar(ctx: &Ctx, name: Option<&str>) -> Result<Outcome> {
    let key = name.map(account).transpose()?;
    let g = ctx.open_read()?;
    let now = g.now();
    let rows = retry(|| g.familiar(key.as_deref()))?;
    if ctx.json {
        let rows: Vec<_> = rows
            .iter()
            .map(|f| {
                json!({
                    "account": f.account,
                    "network": f.net,
                    "until": f.until,
                    "until_iso": f.until.map(output::time_iso),
                    "origin": f.origin,
                })
            })
            .collect();
        ctx.print_json(&json!({ "familiar": rows }))?;
    } else if rows.is_empty() {
        let whose =
            key.as_deref().map_or_else(|| "any account".to_string(), |k| format!("account {}", clean(k)));
        ctx.print(&format!("no familiar network for {whose}\n"))?;
    } else {
        let mut t = Table::new(&["ACCOUNT", "NETWORK", "UNTIL", "FROM"]);
        for f in &rows {
            let until = match f.until {
                Some(u) => format!("{} ({} left)", output::time(u), output::until(u, now)),
                None => "until removed".into(),
            };
            let from = if f.origin == "admin" { "added by an admin" } else { "learned from a login" };
            t.row(vec![clean(&f.account), clean(&f.net), until, from.into()]);
        }
        ctx.print(&t.render())?;
    }
    Ok(if rows.is_empty() { Outcome::NoMatch } else { Outcome::Ok })
}

fn change_familiar(ctx: &Ctx, name: &str, target: &str, add: bool) -> Result<Outcome> {
    let key = account(name)?;
    let net = target::parse(target, Accept::NetOrName)?;
    let command = if add { "accounts familiar-add" } else { "accounts familiar-remove" };
    if add {
        banguard::policy::familiar_target(&net)
            .map_err(|m| Error::msg(format!("invalid network {target:?}: {m}")))?;
    }
    crate::ctx::require_root(command)?;
    let mut g = ctx.open_write(command)?;
    let who = actor();
    let changed = if add {
        retry(|| g.add_familiar(&key, &net, &who)).map(|_| true)?
    } else {
        retry(|| g.remove_familiar(&key, &net, &who))?
    };
    let what = if add { "made familiar for" } else { "no longer familiar for" };
    if changed {
        Syslog::new().notice(&format!("{net} {what} account {} by {who}", clean(&key)));
    }
    if ctx.json {
        ctx.print_json(
            &json!({ "account": key, "network": net.to_string(), "added": add, "changed": changed }),
        )?;
    } else if changed {
        ctx.print(&format!("{} {what} account {}\n", clean(&net.to_string()), clean(&key)))?;
    } else {
        ctx.print(&format!(
            "{} is not a familiar network of account {}\n",
            clean(&net.to_string()),
            clean(&key)
        ))?;
    }
    Ok(if changed { Outcome::Ok } else { Outcome::NoMatch })
}
