//! `check-config`: reads the config and its drop-ins (loading already
//! checked every value, so an error arrives here as `file:line: key `k`:
//! message`, exit 2), adds warnings about things that parse but will not
//! work, and prints the effective settings per service.

use crate::Outcome;
use crate::ctx::Ctx;
use crate::error::{Error, Result};
use banguard::config::{Config, ServicePolicy};
use banguard::duration::format_duration;
use banguard::sync::BackendKind;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;

pub fn run(ctx: &Ctx) -> Result<Outcome> {
    let c = &ctx.config;
    let warnings = warnings(c);
    for w in &warnings {
        crate::say(&format!("warning: {w}"));
    }
    if ctx.json {
        let mut config = serde_json::to_value(c).map_err(|e| Error::msg(e.to_string()))?;
        // Networks as they take effect (host bits cleared).
        let nets =
            |p: &ServicePolicy| json!(p.ignoreip.iter().map(|n| n.trunc().to_string()).collect::<Vec<_>>());
        config["default"]["ignoreip"] = nets(&c.default);
        for (name, p) in &c.services {
            config["services"][name]["ignoreip"] = nets(p);
        }
        ctx.print_json(&json!({ "ok": true, "warnings": warnings, "config": config }))?;
        return Ok(Outcome::Ok);
    }
    ctx.print(&render(c))?;
    Ok(Outcome::Ok)
}

/// The effective settings, in the config's own syntax.
pub fn render(c: &Config) -> String {
    let mut o = String::new();
    let q = |p: &std::path::Path| format!("{:?}", p.display().to_string());
    if c.files.is_empty() {
        o.push_str("# files: none (built-in defaults)\n");
    } else {
        for f in &c.files {
            o.push_str(&format!("# file: {}\n", f.display()));
        }
    }
    o.push_str("\n[default]\n");
    o.push_str(&format!("database = {}\n", q(&c.database)));
    policy(&mut o, &c.default);
    for (name, p) in &c.services {
        o.push_str(&format!("\n[services.{name}]\n"));
        policy(&mut o, p);
    }
    let r = &c.recidive;
    o.push_str("\n[recidive]\n");
    o.push_str(&format!("enabled = {}\n", r.enabled));
    o.push_str(&format!("bans = {}\n", r.bans));
    o.push_str(&format!("findtime = \"{}\"\n", format_duration(r.findtime)));
    o.push_str(&format!("bantime = \"{}\"\n", r.bantime));
    let s = &c.sync;
    o.push_str("\n[sync]\n");
    o.push_str(&format!("backends = [{}]\n", list(s.backends.iter())));
    o.push_str(&format!("scope = \"{}\"\n", json_word(&s.scope)));
    o.push_str(&format!("hosts_deny = {}\n", q(&s.hosts_deny)));
    o.push_str(&format!("trigger_file = {}\n", q(&s.trigger_file)));
    o.push_str(&format!("lock_file = {}\n", q(&s.lock_file)));
    o.push_str(&format!(
        "widest_ipv4_prefix = {}\nwidest_ipv6_prefix = {}\n",
        s.widest_ipv4_prefix, s.widest_ipv6_prefix
    ));
    o.push_str(&format!("escalate_after = {}\n", s.escalate_after));
    let m = &c.mail;
    o.push_str("\n[mail]\n");
    o.push_str(&format!("enabled = {}\n", m.enabled));
    o.push_str(&format!("to = \"{}\"\n", m.to));
    o.push_str(&format!("from = \"{}\"\n", m.from));
    o.push_str(&format!("sendmail = {}\n", q(&m.sendmail)));
    let st = &c.store;
    o.push_str("\n[store]\n");
    o.push_str(&format!("runtime = {}\n", q(&st.runtime)));
    o.push_str(&format!("synchronous = \"{}\"\n", json_word(&st.synchronous)));
    o.push_str(&format!("busy_timeout_ms = {}\n", st.busy_timeout_ms));
    o.push_str(&format!("max_failures = {}\n", st.max_failures));
    o.push_str(&format!("history = \"{}\"\n", format_duration(st.history)));
    let a = &c.accounts;
    o.push_str("\n[accounts]\n");
    o.push_str(&format!("enabled = {}\n", a.enabled));
    o.push_str(&format!("budget = {}\n", a.budget));
    o.push_str(&format!("refill = \"{}\"\n", format_duration(a.refill)));
    o.push_str(&format!("lock = \"{}\"\n", format_duration(a.lock)));
    o.push_str(&format!("lock_max = \"{}\"\n", format_duration(a.lock_max)));
    o.push_str(&format!("learning = \"{}\"\n", format_duration(a.learning)));
    o.push_str(&format!("familiar_ipv4_prefix = {}\n", a.familiar_ipv4_prefix));
    o.push_str(&format!("familiar_ipv6_prefix = {}\n", a.familiar_ipv6_prefix));
    o.push_str(&format!("familiar_max = {}\n", a.familiar_max));
    o.push_str(&format!("familiar_for = \"{}\"\n", format_duration(a.familiar_for)));
    o.push_str(&format!("max_tracked = {}\n", a.max_tracked));
    o
}

fn policy(o: &mut String, p: &ServicePolicy) {
    o.push_str(&format!("enabled = {}\n", p.enabled));
    o.push_str(&format!("maxretry = {}\n", p.maxretry));
    o.push_str(&format!("findtime = \"{}\"\n", format_duration(p.findtime)));
    o.push_str(&format!("bantime = \"{}\"\n", p.bantime));
    o.push_str(&format!("bantime_factor = {:?}\n", p.bantime_factor));
    o.push_str(&format!("bantime_max = \"{}\"\n", format_duration(p.bantime_max)));
    o.push_str(&format!("bantime_lookback = \"{}\"\n", format_duration(p.bantime_lookback)));
    o.push_str(&format!("ignoreip = [{}]\n", list(p.ignoreip.iter().map(|n| n.trunc()))));
    o.push_str(&format!("failmode = \"{}\"\n", json_word(&p.failmode)));
    o.push_str(&format!("ipv4_prefix = {}\n", p.ipv4_prefix));
    o.push_str(&format!("ipv6_prefix = {}\n", p.ipv6_prefix));
    o.push_str(&format!("reset_on_success = {}\n", p.reset_on_success));
    o.push_str(&format!("refusal_delay = \"{}\"\n", format_duration(p.refusal_delay)));
}

fn list<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    items.map(|i| format!("\"{i}\"")).collect::<Vec<_>>().join(", ")
}

/// The serde name of a unit enum value ("open", "repeat").
fn json_word<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// Things that parse but will not work as meant.
pub fn warnings(c: &Config) -> Vec<String> {
    let mut w = Vec::new();
    if c.mail.enabled {
        match std::fs::metadata(&c.mail.sendmail) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {}
            Ok(_) => w.push(format!(
                "[mail] sendmail {} is not an executable file: notices stay queued",
                c.mail.sendmail.display()
            )),
            Err(e) => w.push(format!(
                "[mail] sendmail {}: {e}: notices stay queued until it exists",
                c.mail.sendmail.display()
            )),
        }
    }
    if c.sync.backends.contains(&BackendKind::HostsDeny)
        && let Some(dir) = c.sync.hosts_deny.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        w.push(format!(
            "[sync] hosts_deny {}: directory {} does not exist",
            c.sync.hosts_deny.display(),
            dir.display()
        ));
    }
    if c.fleet.provider == banguard::config::FleetProvider::Crowdsec {
        let cs = &c.fleet.crowdsec;
        w.extend(crate::crowdsec::file_warnings(cs));
        if cs.insecure_skip_verify {
            w.push(
                "[fleet.crowdsec] insecure_skip_verify = true: the LAPI's certificate is not checked".into(),
            );
        }
    }
    w.extend(account_warnings(&c.accounts));
    for (name, p) in
        std::iter::once(("default", &c.default)).chain(c.services.iter().map(|(n, p)| (n.as_str(), p)))
    {
        if p.enabled && p.findtime < 60 {
            w.push(format!(
                "[{}] findtime {} is very short: only fast bursts get banned",
                section(name),
                format_duration(p.findtime)
            ));
        }
    }
    w
}

fn section(name: &str) -> String {
    if name == "default" { "default".into() } else { format!("services.{name}") }
}

/// What the account side's settings mean for the owner and a spray, when
/// it is surprising.
pub fn account_warnings(a: &banguard::config::AccountsConfig) -> Vec<String> {
    let mut w = Vec::new();
    if !a.enabled {
        return w;
    }
    if a.lock > a.lock_max {
        w.push(format!(
            "[accounts] lock {} is longer than lock_max {}: every lock lasts {}",
            format_duration(a.lock),
            format_duration(a.lock_max),
            format_duration(a.lock)
        ));
    }
    if a.familiar_ipv4_prefix < 16 || a.familiar_ipv6_prefix < 48 {
        w.push(format!(
            "[accounts] familiar_ipv4_prefix = {} / familiar_ipv6_prefix = {}: one login makes a wide network \
             familiar for that account (a shared provider's customers share it)",
            a.familiar_ipv4_prefix, a.familiar_ipv6_prefix
        ));
    }
    let week = banguard::account::weekly_spray(a);
    if week > 100 {
        w.push(format!(
            "[accounts] a spray that never stops gets {week} passwords a week checked per account at these \
             settings (budget, refill, lock)"
        ));
    }
    w
}
