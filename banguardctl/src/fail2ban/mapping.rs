//! What each fail2ban setting means for banguard: one table per kind of
//! setting, used both to map a configuration and to print the reference
//! table of README.md ("Coming from fail2ban"), so the two never drift.

use super::ini::{Ini, IniError, Raw};
use banguard::addr::{loopback_nets, parse_net};
use banguard::duration::format_duration;
use banguard::sync::{BackendKind, IpNet};
use std::collections::BTreeMap;

/// The PAM service a fail2ban filter's daemon authenticates through.
pub enum Covered {
    /// One PAM service: a `[services.NAME]` section.
    Service(&'static str),
    /// Every PAM service with banguard's line (`[default]`).
    AllServices,
    /// fail2ban's repeat-offender jail: banguard's `[recidive]`.
    Recidive,
}

/// Filters whose daemon checks passwords through PAM, and its PAM service
/// name (the file in /etc/pam.d). `postfix` only in its `mode=auth`.
pub const FILTERS: &[(&str, Covered, &str)] = &[
    ("sshd", Covered::Service("sshd"), "OpenSSH"),
    ("vsftpd", Covered::Service("vsftpd"), "vsftpd"),
    ("proftpd", Covered::Service("proftpd"), "ProFTPD (`AuthOrder mod_auth_pam.c`)"),
    ("pure-ftpd", Covered::Service("pure-ftpd"), "Pure-FTPd built with PAM"),
    ("wuftpd", Covered::Service("ftp"), "wu-ftpd"),
    ("dovecot", Covered::Service("dovecot"), "Dovecot (`passdb { driver = pam }`)"),
    ("postfix[mode=auth]", Covered::Service("smtp"), "Postfix SMTP AUTH through saslauthd's PAM"),
    ("postfix-sasl", Covered::Service("smtp"), "Postfix SMTP AUTH through saslauthd's PAM (0.8-0.10)"),
    ("sasl", Covered::Service("smtp"), "Cyrus SASL through PAM (0.8)"),
    ("pam-generic", Covered::AllServices, "every PAM service"),
    ("recidive", Covered::Recidive, "fail2ban's own log"),
];

/// Ban actions by name prefix, and the back-end that does the same job.
pub const BAN_ACTIONS: &[(&str, BackendKind)] = &[
    ("iptables-ipset", BackendKind::Ipset),
    ("ipset", BackendKind::Ipset),
    ("iptables", BackendKind::Iptables),
    ("ip6tables", BackendKind::Iptables),
    ("nftables", BackendKind::Nftables),
    ("hostsdeny", BackendKind::HostsDeny),
];

/// Actions that mail (by name prefix).
pub const MAIL_ACTIONS: &[&str] = &["sendmail", "mail"];

/// A setting of a jail (or `[DEFAULT]`) and the banguard key it becomes.
pub struct KeyMap {
    pub fail2ban: &'static str,
    pub banguard: &'static str,
    pub how: &'static str,
}

/// Per-jail settings, in the order the drop-in lists them.
pub const KEYS: &[KeyMap] = &[
    KeyMap { fail2ban: "maxretry", banguard: "maxretry", how: "the same number" },
    KeyMap { fail2ban: "findtime", banguard: "findtime", how: "fail2ban's duration syntax converted" },
    KeyMap { fail2ban: "bantime", banguard: "bantime", how: "converted; a negative one is \"permanent\"" },
    KeyMap {
        fail2ban: "ignoreip",
        banguard: "ignoreip",
        how: "addresses and networks; a host name or `file:` entry is reported, never resolved",
    },
    KeyMap {
        fail2ban: "ignoreself",
        banguard: "ignoreip",
        how: "loopback added (this machine's other addresses are reported)",
    },
    KeyMap {
        fail2ban: "bantime.increment",
        banguard: "bantime_factor",
        how: "off: 1.0; on: the factor its formula or multipliers grow by (2.0 for the default formula)",
    },
];

/// How well a setting came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Mapped,
    Approximated,
    NotCovered,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Mapped => "mapped",
            Status::Approximated => "approximated",
            Status::NotCovered => "not covered",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Item {
    pub status: Status,
    /// Where in fail2ban's files (`file:line`, or the directory).
    pub place: String,
    /// What fail2ban said (`[sshd] maxretry = 3`).
    pub fail2ban: String,
    /// What it became, or why not.
    pub banguard: String,
}

/// One key of the drop-in, and the fail2ban setting it came from.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Setting {
    /// `default`, `services.sshd`, `recidive`, `sync`, `mail`.
    pub table: String,
    pub key: &'static str,
    /// TOML, ready to write.
    pub value: String,
    /// `file:line [section] key = value` of the source.
    pub from: String,
}

/// What a jail becomes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "service")]
pub enum JailTarget {
    /// A PAM service ("*" for every one).
    Service(String),
    /// Not covered: the reason.
    LogBased(String),
}

/// The result of mapping a fail2ban configuration.
#[derive(Debug, Default, serde::Serialize)]
pub struct Mapping {
    pub settings: Vec<Setting>,
    pub items: Vec<Item>,
    /// Every jail (enabled or not) and what its bans become.
    pub jails: BTreeMap<String, JailTarget>,
    /// Enabled jails.
    pub enabled: Vec<String>,
    /// The PAM services the enabled jails stood for.
    pub services: Vec<String>,
    /// Each `[services.NAME]` table and the jail it stands for, written
    /// even when every value is inherited.
    pub tables: Vec<(String, String)>,
}

impl Mapping {
    fn set(&mut self, table: &str, key: &'static str, value: String, from: String) {
        match self.settings.iter_mut().find(|s| s.table == table && s.key == key) {
            Some(s) => {
                s.value = value;
                s.from = from;
            }
            None => self.settings.push(Setting { table: table.to_string(), key, value, from }),
        }
    }

    fn item(&mut self, status: Status, place: &str, fail2ban: String, banguard: String) {
        self.items.push(Item { status, place: place.to_string(), fail2ban, banguard });
    }

    /// The drop-in: every key with a comment naming its source.
    pub fn render(&self, header: &str) -> String {
        // Every header line a comment, whatever the path in it held.
        let mut out: String = header
            .lines()
            .map(comment)
            .map(|l| if l.starts_with('#') { format!("{l}\n") } else { format!("# {l}\n") })
            .collect();
        let mut tables: Vec<&str> = Vec::new();
        for t in
            self.settings.iter().map(|s| s.table.as_str()).chain(self.tables.iter().map(|(t, _)| t.as_str()))
        {
            if !tables.contains(&t) {
                tables.push(t);
            }
        }
        // banguard.toml's own order.
        tables.sort_by_key(|t| {
            ["default", "services.", "recidive", "sync", "mail"].iter().position(|p| t.starts_with(p))
        });
        for t in tables {
            out.push_str(&format!("\n[{t}]\n"));
            if let Some((_, jail)) = self.tables.iter().find(|(name, _)| name == t) {
                out.push_str(&format!(
                    "# for {}: what it does not set comes from [default]\n",
                    comment(jail)
                ));
            }
            for s in self.settings.iter().filter(|s| s.table == t) {
                out.push_str(&format!("# from {}\n{} = {}\n", comment(&s.from), s.key, s.value));
            }
        }
        out
    }
}

/// Maps an enabled jail set and its defaults. `fail2ban` is fail2ban.conf
/// (for `dbpurgeage`).
pub fn map(jail: &Ini, fail2ban: &Ini) -> Result<Mapping, IniError> {
    let mut m = Mapping::default();
    let default_ctx = Ctx { ini: jail, section: "DEFAULT" };
    for k in KEYS {
        map_key(&mut m, &default_ctx, k, "default", None)?;
    }
    map_growth(&mut m, &default_ctx, "default", fail2ban)?;
    let mut backends: Vec<(BackendKind, String)> = Vec::new();
    let mut mail: Option<(String, Option<String>, String)> = None;
    let mut services: BTreeMap<&'static str, String> = BTreeMap::new();
    let names: Vec<String> =
        jail.sections().filter(|s| *s != "Definition" && !s.contains('?')).map(String::from).collect();
    for name in names {
        let ctx = Ctx { ini: jail, section: &name };
        let enabled = match ctx.get("enabled")? {
            Some((v, raw)) => parse_bool(&v, &raw, "enabled")?,
            None => false,
        };
        let filter_text = ctx.get("filter")?.map_or_else(|| name.clone(), |(v, _)| v);
        // Where the jail is set up: its own filter line, else its enabled line.
        let place = match jail.own(&name, "filter") {
            Some(raw) => raw.place(),
            None => jail_place(jail, &name),
        };
        let target = classify(&filter_text);
        let jail_target = match &target {
            Some(Covered::Service(s)) => JailTarget::Service(s.to_string()),
            Some(Covered::AllServices | Covered::Recidive) => JailTarget::Service("*".into()),
            None => {
                let logpath = ctx.get("logpath")?.map(|(v, _)| v.replace('\n', " ")).unwrap_or_default();
                JailTarget::LogBased(format!(
                    "log-based: filter {} watches {}",
                    filter_base(&filter_text),
                    logpath
                ))
            }
        };
        m.jails.insert(name.clone(), jail_target.clone());
        if !enabled {
            continue;
        }
        m.enabled.push(name.clone());
        let Some(target) = target else {
            let JailTarget::LogBased(why) = jail_target else { unreachable!("no target: log-based") };
            m.item(Status::NotCovered, &place, format!("[{name}] (enabled)"), why);
            continue;
        };
        match target {
            Covered::Service(service) => {
                let table = format!("services.{service}");
                if let Some(first) = services.get(service) {
                    m.item(
                        Status::Approximated,
                        &place,
                        format!("[{name}] filter = {filter_text}"),
                        format!("[{table}] already comes from jail [{first}]; this jail's own settings are not carried over"),
                    );
                } else {
                    services.insert(service, name.clone());
                    m.services.push(service.to_string());
                    m.tables.push((
                        table.clone(),
                        format!("{place} jail [{name}], filter {}", filter_base(&filter_text)),
                    ));
                    m.item(
                        Status::Mapped,
                        &place,
                        format!("[{name}] filter = {filter_text}"),
                        format!("[{table}]: logins through PAM service {service:?} (with banguard's line in /etc/pam.d/{service})"),
                    );
                    for k in KEYS {
                        map_key(&mut m, &ctx, k, &table, Some(&default_ctx))?;
                    }
                    map_growth_override(&mut m, &ctx, &default_ctx, &table, fail2ban)?;
                }
            }
            Covered::AllServices => {
                m.item(
                    Status::Approximated,
                    &place,
                    format!("[{name}] filter = {filter_text}"),
                    "[default]: every PAM service with banguard's line; its settings override [DEFAULT]'s"
                        .into(),
                );
                for k in KEYS {
                    map_key(&mut m, &ctx, k, "default", Some(&default_ctx))?;
                }
            }
            Covered::Recidive => map_recidive(&mut m, &ctx, &place)?,
        }
        map_actions(&mut m, &ctx, &mut backends, &mut mail)?;
    }
    if !m.jails.get("recidive").is_some_and(|_| m.enabled.iter().any(|j| j == "recidive")) {
        m.item(
            Status::Approximated,
            &jail_place(jail, "recidive"),
            "no enabled [recidive] jail".into(),
            "banguard's repeat-offender rule stays on (3 bans in 1d: 1w on every service, in the firewall); \
             `[recidive] enabled = false` to match fail2ban"
                .into(),
        );
    }
    if !backends.is_empty() {
        let list: Vec<String> = backends.iter().map(|(k, _)| format!("{:?}", k.to_string())).collect();
        let from = backends.iter().map(|(_, f)| f.as_str()).collect::<Vec<_>>().join("; ");
        m.set("sync", "backends", format!("[{}]", list.join(", ")), from);
        m.item(
            Status::Approximated,
            "",
            "fail2ban puts every ban into the firewall".into(),
            "banguard refuses banned hosts in PAM and pushes repeat offenders, manual bans, hosts that keep \
             knocking and bans carried over from fail2ban ([sync] scope = \"repeat\"); `scope = \"all\"` to push every ban"
                .into(),
        );
    }
    if let Some((to, from, place)) = mail {
        m.set("mail", "enabled", "true".into(), place.clone());
        m.set("mail", "to", toml_string(&to), place.clone());
        if let Some(from) = from {
            m.set("mail", "from", toml_string(&from), place);
        }
    }
    Ok(m)
}

/// A jail section's values.
struct Ctx<'a> {
    ini: &'a Ini,
    section: &'a str,
}

impl Ctx<'_> {
    fn get(&self, key: &str) -> Result<Option<(String, Raw)>, IniError> {
        self.ini.get(self.section, key)
    }

    /// "[section] key = value" as the source of a key (a comment line of
    /// the drop-in: cleaned, shortened).
    fn source(&self, key: &str, value: &str, raw: &Raw) -> String {
        comment(&format!("{} [{}] {key} = {}", raw.place(), self.section, shown(&value.replace('\n', " "))))
    }
}

fn jail_place(jail: &Ini, name: &str) -> String {
    jail.own(name, "enabled")
        .or_else(|| jail.raw(name, "enabled"))
        .map_or_else(|| format!("[{name}]"), Raw::place)
}

/// The filter name without its `[options]`.
fn filter_base(filter: &str) -> &str {
    let first = filter.lines().next().unwrap_or("").trim();
    first.split('[').next().unwrap_or(first).trim()
}

fn classify(filter: &str) -> Option<Covered> {
    let base = filter_base(filter);
    let first = filter.lines().next().unwrap_or("");
    for (name, covered, _) in FILTERS {
        let matches = match name.split_once('[') {
            // "postfix[mode=auth]": the base and the option.
            Some((b, opt)) => base == b && first.replace(' ', "").contains(opt.trim_end_matches(']')),
            None => base == *name,
        };
        if matches {
            return Some(match covered {
                Covered::Service(s) => Covered::Service(s),
                Covered::AllServices => Covered::AllServices,
                Covered::Recidive => Covered::Recidive,
            });
        }
    }
    None
}

/// Maps one key of [`KEYS`] into `table`; with `inherit`, only when its
/// value differs from the one inherited there.
fn map_key(
    m: &mut Mapping,
    ctx: &Ctx<'_>,
    k: &KeyMap,
    table: &str,
    inherit: Option<&Ctx<'_>>,
) -> Result<(), IniError> {
    if k.fail2ban == "ignoreself" || k.fail2ban == "bantime.increment" {
        // Part of ignoreip / the growth below.
        return Ok(());
    }
    let Some((value, raw)) = ctx.get(k.fail2ban)? else { return Ok(()) };
    if let Some(parent) = inherit {
        let same = parent.get(k.fail2ban)?.is_some_and(|(v, _)| v == value);
        let same_ignoreself = k.fail2ban != "ignoreip"
            || parent.get("ignoreself")?.map(|(v, _)| v) == ctx.get("ignoreself")?.map(|(v, _)| v);
        if same && same_ignoreself {
            return Ok(());
        }
    }
    let from = ctx.source(k.fail2ban, &value, &raw);
    let said = format!("[{}] {} = {}", ctx.section, k.fail2ban, value.replace('\n', " "));
    let toml = match k.fail2ban {
        "maxretry" => {
            let n: i64 =
                value.trim().parse().map_err(|_| bad(&raw, k.fail2ban, &value, "not a whole number"))?;
            n.to_string()
        }
        "findtime" => {
            let secs = fail2ban_seconds(&value).map_err(|why| bad(&raw, k.fail2ban, &value, &why))?;
            if secs < 0 {
                return Err(bad(&raw, k.fail2ban, &value, "must not be negative"));
            }
            toml_string(&format_duration(secs))
        }
        "bantime" => {
            let secs = fail2ban_seconds(&value).map_err(|why| bad(&raw, k.fail2ban, &value, &why))?;
            if secs < 0 { toml_string("permanent") } else { toml_string(&format_duration(secs)) }
        }
        "ignoreip" => {
            let ignoreself = match ctx.get("ignoreself")? {
                Some((v, r)) => parse_bool(&v, &r, "ignoreself")?,
                None => true,
            };
            ignoreip(m, ctx, &value, &raw, ignoreself)
        }
        other => unreachable!("key {other} has no conversion"),
    };
    m.item(Status::Mapped, &raw.place(), said, format!("[{table}] {} = {toml}", k.banguard));
    m.set(table, k.banguard, toml, from);
    Ok(())
}

fn ignoreip(m: &mut Mapping, ctx: &Ctx<'_>, value: &str, raw: &Raw, ignoreself: bool) -> String {
    let mut nets: Vec<IpNet> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for entry in value.split(|c: char| c.is_whitespace() || c == ',').filter(|e| !e.is_empty()) {
        match fail2ban_net(entry) {
            Ok(n) => {
                if seen.insert(n) {
                    nets.push(n);
                }
            }
            Err(_) => {
                let why = if entry.starts_with("file:") {
                    "a file of addresses: copy them into ignoreip"
                } else {
                    "not an address or network (a host name?): banguard never resolves names; add its addresses"
                };
                m.item(
                    Status::NotCovered,
                    &raw.place(),
                    format!("[{}] ignoreip entry {}", ctx.section, shown(entry)),
                    why.into(),
                );
            }
        }
    }
    if ignoreself {
        for n in loopback_nets() {
            if !nets.iter().any(|have| have.contains(&n.network())) {
                nets.push(n);
            }
        }
        m.item(
            Status::Approximated,
            &raw.place(),
            format!("[{}] ignoreself = true", ctx.section),
            "loopback is in ignoreip; this machine's other own addresses are not: add them if users log in through them"
                .into(),
        );
    }
    let list: Vec<String> = nets.iter().map(|n| toml_string(&n.to_string())).collect();
    format!("[{}]", list.join(", "))
}

/// `bantime.increment` and its companions in `[DEFAULT]` (and
/// fail2ban.conf's `dbpurgeage`, how far back fail2ban looks for earlier
/// bans).
fn map_growth(m: &mut Mapping, ctx: &Ctx<'_>, table: &str, fail2ban: &Ini) -> Result<(), IniError> {
    let Some((on, raw)) = ctx.get("bantime.increment")? else {
        // fail2ban's default: no growth.
        m.set(table, "bantime_factor", "1.0".into(), "fail2ban's default: bantime.increment = false".into());
        m.item(
            Status::Mapped,
            "",
            format!("[{}] bantime.increment unset (false)", ctx.section),
            format!("[{table}] bantime_factor = 1.0: bans do not grow"),
        );
        return Ok(());
    };
    growth(m, ctx, table, &on, &raw)?;
    if parse_bool(&on, &raw, "bantime.increment")?
        && let Some((v, r)) = fail2ban.get("Definition", "dbpurgeage")?
    {
        let secs = fail2ban_seconds(&v).map_err(|why| bad(&r, "dbpurgeage", &v, &why))?;
        let value = toml_string(&format_duration(secs.max(1)));
        m.item(
            Status::Mapped,
            &r.place(),
            format!("[Definition] dbpurgeage = {v}"),
            format!("[{table}] bantime_lookback = {value}"),
        );
        m.set(table, "bantime_lookback", value, format!("{} [Definition] dbpurgeage = {v}", r.place()));
    }
    Ok(())
}

/// A jail's own growth settings, where they differ from `[DEFAULT]`'s.
fn map_growth_override(
    m: &mut Mapping,
    ctx: &Ctx<'_>,
    parent: &Ctx<'_>,
    table: &str,
    _fail2ban: &Ini,
) -> Result<(), IniError> {
    for key in
        ["bantime.increment", "bantime.factor", "bantime.formula", "bantime.multipliers", "bantime.maxtime"]
    {
        if ctx.get(key)?.map(|(v, _)| v) != parent.get(key)?.map(|(v, _)| v) {
            let (on, raw) = match ctx.get("bantime.increment")? {
                Some(v) => v,
                None => return Ok(()),
            };
            return growth(m, ctx, table, &on, &raw);
        }
    }
    Ok(())
}

fn growth(m: &mut Mapping, ctx: &Ctx<'_>, table: &str, on: &str, raw: &Raw) -> Result<(), IniError> {
    let from = ctx.source("bantime.increment", on, raw);
    if !parse_bool(on, raw, "bantime.increment")? {
        m.item(
            Status::Mapped,
            &raw.place(),
            format!("[{}] bantime.increment = {on}", ctx.section),
            format!("[{table}] bantime_factor = 1.0"),
        );
        m.set(table, "bantime_factor", "1.0".into(), from);
        return Ok(());
    }
    let mut factor = 2.0;
    let mut status = Status::Mapped;
    let mut how = "fail2ban's default formula doubles the ban each time".to_string();
    if let Some((mult, r)) = ctx.get("bantime.multipliers")?.filter(|(v, _)| !v.trim().is_empty()) {
        let steps: Vec<f64> = mult
            .split_whitespace()
            .map(|s| {
                s.parse::<f64>().map_err(|_| bad(&r, "bantime.multipliers", &mult, "not a list of numbers"))
            })
            .collect::<Result<_, _>>()?;
        let ratios: Vec<f64> = steps.windows(2).filter(|w| w[0] > 0.0).map(|w| w[1] / w[0]).collect();
        if ratios.is_empty() {
            factor = 1.0;
        } else {
            // The geometric mean of the steps.
            factor = (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp();
            factor = (factor * 10.0).round() / 10.0;
            if ratios.iter().any(|r| (r - ratios[0]).abs() > 1e-9) {
                status = Status::Approximated;
            }
        }
        how = format!("bantime.multipliers = {mult}: a factor of {factor}");
    } else if let Some((formula, _)) = ctx.get("bantime.formula")?.filter(|(v, _)| !v.trim().is_empty()) {
        status = Status::Approximated;
        how = format!(
            "bantime.formula = {formula} cannot be carried over: banguard multiplies by a constant factor (2.0)"
        );
    } else if let Some((f, r)) = ctx.get("bantime.factor")? {
        let f: f64 = f.trim().parse().map_err(|_| bad(&r, "bantime.factor", &f, "not a number"))?;
        if (f - 1.0).abs() > 1e-9 {
            status = Status::Approximated;
            how = format!("bantime.factor = {f} scales fail2ban's doubling; banguard doubles (2.0)");
        }
    }
    let factor = factor.clamp(1.0, 100.0);
    let value = format!("{factor:?}");
    m.item(
        status,
        &raw.place(),
        format!("[{}] bantime.increment = {on}", ctx.section),
        format!("[{table}] bantime_factor = {value} ({how})"),
    );
    m.set(table, "bantime_factor", value, from);
    if let Some((rnd, r)) = ctx.get("bantime.rndtime")?.filter(|(v, _)| !v.trim().is_empty()) {
        m.item(
            Status::NotCovered,
            &r.place(),
            format!("[{}] bantime.rndtime = {rnd}", ctx.section),
            "banguard's ban lengths are not randomised".into(),
        );
    }
    if let Some((all, r)) = ctx.get("bantime.overalljails")?
        && !parse_bool(&all, &r, "bantime.overalljails")?
    {
        m.item(
            Status::Approximated,
            &r.place(),
            format!("[{}] bantime.overalljails = {all}", ctx.section),
            "banguard counts a host's earlier bans on every service".into(),
        );
    }
    if let Some((max, r)) = ctx.get("bantime.maxtime")?.filter(|(v, _)| !v.trim().is_empty()) {
        let secs = fail2ban_seconds(&max).map_err(|why| bad(&r, "bantime.maxtime", &max, &why))?;
        if secs <= 0 {
            // fail2ban takes it, and every increased ban then ends at once.
            return Err(bad(
                &r,
                "bantime.maxtime",
                &max,
                "must be a positive duration (fail2ban would end every increased ban at once)",
            ));
        }
        let v = toml_string(&format_duration(secs.max(1)));
        m.item(
            Status::Mapped,
            &r.place(),
            format!("[{}] bantime.maxtime = {max}", ctx.section),
            format!("[{table}] bantime_max = {v}"),
        );
        m.set(table, "bantime_max", v, ctx.source("bantime.maxtime", &max, &r));
    }
    Ok(())
}

fn map_recidive(m: &mut Mapping, ctx: &Ctx<'_>, place: &str) -> Result<(), IniError> {
    m.set("recidive", "enabled", "true".into(), format!("{place} [recidive] enabled"));
    m.item(
        Status::Approximated,
        place,
        "[recidive] (enabled)".into(),
        "[recidive]: counts banguard's bans only (fail2ban's also counted its log-based jails' bans)".into(),
    );
    for (f2b, key) in [("maxretry", "bans"), ("findtime", "findtime"), ("bantime", "bantime")] {
        let Some((v, raw)) = ctx.get(f2b)? else { continue };
        let toml = if f2b == "maxretry" {
            v.trim().parse::<i64>().map_err(|_| bad(&raw, f2b, &v, "not a whole number"))?.to_string()
        } else {
            let secs = fail2ban_seconds(&v).map_err(|why| bad(&raw, f2b, &v, &why))?;
            toml_string(&if secs < 0 { "permanent".to_string() } else { format_duration(secs) })
        };
        m.item(
            Status::Mapped,
            &raw.place(),
            format!("[recidive] {f2b} = {v}"),
            format!("[recidive] {key} = {toml}"),
        );
        m.set("recidive", key, toml, ctx.source(f2b, &v, &raw));
    }
    Ok(())
}

/// One action of an `action` value: `name[key=value, ...]`.
fn parse_action(text: &str) -> (String, BTreeMap<String, String>) {
    let text = text.trim();
    let (name, rest) = match text.split_once('[') {
        Some((n, r)) => (n.trim(), r.rsplit_once(']').map_or(r, |(a, _)| a)),
        None => (text, ""),
    };
    let mut args = BTreeMap::new();
    let mut part = String::new();
    let mut quote: Option<char> = None;
    let mut parts = Vec::new();
    for c in rest.chars() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ',') => parts.push(std::mem::take(&mut part)),
            _ => part.push(c),
        }
    }
    parts.push(part);
    for p in parts {
        if let Some((k, v)) = p.split_once('=') {
            args.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    (name.to_string(), args)
}

fn map_actions(
    m: &mut Mapping,
    ctx: &Ctx<'_>,
    backends: &mut Vec<(BackendKind, String)>,
    mail: &mut Option<(String, Option<String>, String)>,
) -> Result<(), IniError> {
    let Some((value, raw)) = ctx.get("action")? else { return Ok(()) };
    for line in value.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (name, args) = parse_action(line);
        let said = format!("[{}] action {name}", ctx.section);
        if let Some((_, kind)) = BAN_ACTIONS.iter().find(|(prefix, _)| name.starts_with(prefix)) {
            if !backends.iter().any(|(k, _)| k == kind) {
                backends.push((*kind, ctx.source("action", &name, &raw)));
            }
            m.item(
                Status::Mapped,
                &raw.place(),
                said,
                format!("[sync] backends includes {:?}", kind.to_string()),
            );
        } else if MAIL_ACTIONS.iter().any(|p| name.starts_with(p)) {
            let to = args
                .get("dest")
                .cloned()
                .or(ctx.get("destemail")?.map(|(v, _)| v))
                .unwrap_or_else(|| "root".into());
            let from = args.get("sender").cloned().or(ctx.get("sender")?.map(|(v, _)| v));
            // fail2ban fills `<fq-hostname>` in at run time; sendmail
            // qualifies a bare local part the same way.
            let from = from.map(|f| f.split("@<").next().unwrap_or(&f).to_string()).filter(|f| !f.is_empty());
            match mail {
                Some((have, _, _)) if *have != to => m.item(
                    Status::Approximated,
                    &raw.place(),
                    format!("{said} dest={to}"),
                    format!("banguard mails one address: [mail] to = {have:?} is kept"),
                ),
                Some(_) => {}
                None => {
                    m.item(
                        Status::Mapped,
                        &raw.place(),
                        format!("{said} dest={to}"),
                        format!("[mail] enabled = true, to = {to:?}"),
                    );
                    *mail = Some((to, from, ctx.source("action", &name, &raw)));
                }
            }
        } else {
            m.item(Status::NotCovered, &raw.place(), said, "no banguard equivalent for this action".into());
        }
    }
    Ok(())
}

/// An address or network as fail2ban's `IPAddr` takes it: banguard's forms
/// (CIDR, a bare address) and a netmask (`192.168.1.0/255.255.255.0`,
/// `2001:db8::/ffff:ffff::`), whose ones must be contiguous.
pub fn fail2ban_net(entry: &str) -> Result<IpNet, String> {
    if let Ok(n) = parse_net(entry) {
        return Ok(n);
    }
    let (addr, mask) =
        entry.split_once('/').ok_or_else(|| format!("{entry:?} is not an address or network"))?;
    let addr: std::net::IpAddr =
        addr.trim_matches(['[', ']']).parse().map_err(|_| format!("{entry:?}: not an address"))?;
    let mask: std::net::IpAddr =
        mask.parse().map_err(|_| format!("{entry:?}: not a prefix length or netmask"))?;
    let (bits, width) = match (addr, mask) {
        (std::net::IpAddr::V4(_), std::net::IpAddr::V4(m)) => (u128::from(u32::from(m)) << 96, 32),
        (std::net::IpAddr::V6(_), std::net::IpAddr::V6(m)) => (u128::from(m), 128),
        _ => return Err(format!("{entry:?}: the netmask is of the other address family")),
    };
    let ones = bits.leading_ones();
    if bits.checked_shl(ones).unwrap_or(0) != 0 {
        return Err(format!("{entry:?}: a netmask whose ones are not contiguous"));
    }
    parse_net(&format!("{addr}/{}", ones.min(width))).map_err(|e| format!("{entry:?}: {e}"))
}

/// A value from a fail2ban file quoted in the report: cleaned, at most 80
/// characters.
pub fn shown(text: &str) -> String {
    let mut s: String = banguard::text::clean(text).chars().take(80).collect();
    if s.chars().count() < text.chars().count() {
        s.push('…');
    }
    s
}

/// A comment line of the drop-in: nothing in it may end the comment (a
/// line break in a file name, say) or read differently from what it is.
pub fn comment(text: &str) -> String {
    banguard::text::clean(text).chars().map(|c| if c == '\n' || c == '\r' { ' ' } else { c }).collect()
}

/// configparser's booleans.
fn parse_bool(v: &str, raw: &Raw, key: &str) -> Result<bool, IniError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Ok(true),
        "0" | "no" | "false" | "off" => Ok(false),
        _ => Err(bad(raw, key, v, "not a boolean (true/false, yes/no, on/off, 1/0)")),
    }
}

fn bad(raw: &Raw, key: &str, value: &str, why: &str) -> IniError {
    IniError {
        file: raw.file.clone(),
        line: Some(raw.line),
        message: format!("{key} = {}: {why}", shown(value)),
    }
}

/// A TOML basic string (JSON's escapes are TOML's).
pub fn toml_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// fail2ban's duration syntax (`MyTime.str2seconds`): a sum of numbers
/// with optional units (s, m, h, d, w, mo, y and their long forms, as in
/// "1h 30m", "1d12h", "10 minutes"), "+" or "-" between terms; a bare
/// number is seconds; -1 is permanent.
pub fn fail2ban_seconds(text: &str) -> Result<i64, String> {
    let s = text.trim().to_ascii_lowercase();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    // fail2ban turns "N M" into "N+M" for each pair of numbers it finds,
    // left to right without overlap, then evaluates: "1 2" is 3, but in
    // "1 2 3" the second gap is left and the expression fails.
    let s = join_number_pairs(&s)?;
    let mut total = 0.0f64;
    let mut rest = s.as_str();
    let mut sign = 1.0;
    let mut terms = 0;
    while !rest.is_empty() {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix('+') {
            sign = 1.0;
            rest = r.trim_start();
        } else if let Some(r) = rest.strip_prefix('-') {
            sign = -1.0;
            rest = r.trim_start();
        }
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!("{text:?} is not a fail2ban duration (e.g. 600, 10m, 1h, 1d, 1w, -1)"));
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| format!("{text:?}: bad number"))?;
        rest = rest[num_len..].trim_start();
        let unit_len = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let mult = match unit {
            "" | "s" | "ss" | "se" | "sec" | "second" | "seconds" => 1.0,
            "m" | "mm" | "mi" | "min" | "minute" | "minutes" => 60.0,
            "h" | "hh" | "ho" | "hou" | "hour" | "hours" => 3600.0,
            "d" | "dd" | "da" | "day" | "days" => 86_400.0,
            "w" | "ww" | "we" | "wee" | "week" | "weeks" => 604_800.0,
            "mo" | "mon" | "month" | "months" => (365.0 * 3.0 + 366.0) * 86_400.0 / 4.0 / 12.0,
            "y" | "yy" | "ye" | "yea" | "year" | "years" => (365.0 * 3.0 + 366.0) * 86_400.0 / 4.0,
            other => return Err(format!("{text:?}: unknown unit {other:?} (s, m, h, d, w, mo, y)")),
        };
        total += sign * n * mult;
        sign = 1.0;
        terms += 1;
    }
    if terms == 0 {
        return Err(format!("{text:?} is not a fail2ban duration"));
    }
    Ok(total.round() as i64)
}

/// fail2ban's `(\d)\s+(\d)` → `\1+\2` (non-overlapping); a gap between two
/// numbers that is left over is an error, as it is for fail2ban.
fn join_number_pairs(s: &str) -> Result<String, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        out.push(c);
        if c.is_ascii_digit() {
            let mut j = i + 1;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            if j > i + 1 && j < chars.len() && chars[j].is_ascii_digit() {
                out.push('+');
                out.push(chars[j]);
                // The digit after the gap is consumed: it cannot start the
                // next pair (Python's re.sub does not overlap matches).
                i = j + 1;
                if i < chars.len() && chars[i].is_whitespace() {
                    let mut k = i;
                    while k < chars.len() && chars[k].is_whitespace() {
                        k += 1;
                    }
                    if k < chars.len() && chars[k].is_ascii_digit() {
                        return Err(format!(
                            "{s:?} is not a duration fail2ban accepts (numbers left side by side)"
                        ));
                    }
                }
                continue;
            }
        }
        i += 1;
    }
    Ok(out)
}

/// The reference table of README.md's "Coming from fail2ban", from the
/// tables above.
pub fn reference_table() -> String {
    let mut out = String::from("| fail2ban | banguard | how |\n|---|---|---|\n");
    for k in KEYS {
        out.push_str(&format!("| `{}` | `{}` | {} |\n", k.fail2ban, k.banguard, k.how));
    }
    out.push_str(
        "| `bantime.maxtime`, fail2ban.conf's `dbpurgeage` (with `.increment`) | `bantime_max`, `bantime_lookback` | converted |\n",
    );
    out.push_str("| `bantime.formula`, `.factor` other than 1, uneven `.multipliers` | `bantime_factor` | approximated: banguard grows by a constant factor |\n");
    out.push_str("| `bantime.rndtime` | — | not covered: ban lengths are not randomised |\n");
    for (filter, covered, daemon) in FILTERS {
        let to = match covered {
            Covered::Service(s) => format!("`[services.{s}]`"),
            Covered::AllServices => "`[default]`".to_string(),
            Covered::Recidive => "`[recidive]` (`maxretry` → `bans`)".to_string(),
        };
        out.push_str(&format!("| jail with `filter = {filter}` | {to} | {daemon} |\n"));
    }
    out.push_str("| any other jail (web servers, bots, mail relays...) | — | not covered: log-based; keep fail2ban for it |\n");
    let mut by_kind: Vec<(BackendKind, Vec<&str>)> = Vec::new();
    for (prefix, kind) in BAN_ACTIONS {
        match by_kind.iter_mut().find(|(k, _)| k == kind) {
            Some((_, p)) => p.push(prefix),
            None => by_kind.push((*kind, vec![prefix])),
        }
    }
    for (kind, prefixes) in by_kind {
        let names: Vec<String> = prefixes.iter().map(|p| format!("`{p}*`")).collect();
        out.push_str(&format!(
            "| action {} | `[sync] backends = [\"{kind}\"]` | banguard's own set, chain or block |\n",
            names.join(", ")
        ));
    }
    let mail: Vec<String> = MAIL_ACTIONS.iter().map(|p| format!("`{p}*`")).collect();
    out.push_str(&format!(
        "| action {} (`action_mw`, `action_mwl`), `destemail`, `sender` | `[mail] enabled = true`, `to`, `from` | one address |\n",
        mail.join(", ")
    ));
    out.push_str("| `logpath`, `backend`, `port`, `protocol`, `chain`, `usedns` | — | not needed: PAM reports every outcome itself |\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// README.md's table is this code's (`--show-mapping` prints it).
    #[test]
    fn readme_shows_the_mapping_this_code_does() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        let begin = "<!-- fail2ban-mapping: generated by `banguardctl import fail2ban --show-mapping` -->\n";
        let start = readme.find(begin).expect("README has the mapping block") + begin.len();
        let end = readme[start..].find("<!-- /fail2ban-mapping -->").expect("the block ends") + start;
        assert_eq!(
            &readme[start..end],
            reference_table(),
            "paste `banguardctl import fail2ban --show-mapping` there"
        );
    }

    #[test]
    fn fail2ban_durations() {
        for (text, secs) in [
            ("600", 600),
            ("10m", 600),
            ("1h", 3600),
            ("1d", 86_400),
            ("1w", 604_800),
            ("-1", -1),
            ("1h 30m", 5400),
            ("1d12h", 129_600),
            ("10 minutes", 600),
            ("1year-6mo", 15_778_800),
        ] {
            assert_eq!(fail2ban_seconds(text), Ok(secs), "{text}");
        }
        assert!(fail2ban_seconds("soon").unwrap_err().contains("not a fail2ban duration"));
        // As fail2ban's own parser (mytime.py): "1 2" adds up, "1 2 3" fails.
        assert_eq!(fail2ban_seconds("1 2"), Ok(3));
        assert_eq!(fail2ban_seconds("1 2h"), Ok(7201));
        assert!(fail2ban_seconds("1 2 3").unwrap_err().contains("side by side"));
        assert!(fail2ban_seconds("5 fortnights").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn actions_with_quoted_arguments() {
        let (name, args) =
            parse_action(r#"sendmail-whois[name=SSH, dest="a@x, b@y", sender=f2b@example.com]"#);
        assert_eq!(name, "sendmail-whois");
        assert_eq!(args["dest"], "a@x, b@y");
        assert_eq!(args["sender"], "f2b@example.com");
        assert_eq!(parse_action("hostsdeny").0, "hostsdeny");
    }

    #[test]
    fn filters_map_to_pam_services() {
        let svc = |f: &str| match classify(f) {
            Some(Covered::Service(s)) => s.to_string(),
            Some(Covered::AllServices) => "*".into(),
            Some(Covered::Recidive) => "recidive".into(),
            None => "-".into(),
        };
        assert_eq!(svc("sshd"), "sshd");
        assert_eq!(svc("sshd[mode=aggressive]"), "sshd");
        assert_eq!(svc("postfix[mode=auth]"), "smtp");
        assert_eq!(svc("postfix[mode=more]"), "-");
        assert_eq!(svc("apache-auth"), "-");
        assert_eq!(svc("pam-generic"), "*");
        assert_eq!(svc("recidive"), "recidive");
    }

    #[test]
    fn jail_values_that_differ_from_default_go_to_their_service() {
        let jail = Ini::from_text(
            Path::new("/f/jail.local"),
            "[DEFAULT]\nbantime = 1h\nfindtime = 600\nmaxretry = 5\nignoreip = 127.0.0.1/8 192.0.2.1, host.example\n\
             [sshd]\nenabled = true\nmaxretry = 3\naction = iptables-multiport[name=ssh]\n\
             \x20  sendmail-whois[dest=ops@example.org, sender=fail2ban@<fq-hostname>]\n\
             [apache-auth]\nenabled = true\nlogpath = /var/log/apache2/error.log\n",
        )
        .unwrap();
        let f2b = Ini::default();
        let m = map(&jail, &f2b).unwrap();
        let text = m.render("");
        assert!(
            text.contains("\n# from /f/jail.local:2 [DEFAULT] bantime = 1h\nbantime = \"1h\"\n"),
            "{text}"
        );
        assert!(text.contains("ignoreip = [\"127.0.0.0/8\", \"192.0.2.1/32\", \"::1/128\"]"), "{text}");
        assert!(
            text.contains(
                "[services.sshd]\n# for /f/jail.local:7 jail [sshd], filter sshd: what it does not set comes from \
                 [default]\n# from /f/jail.local:8 [sshd] maxretry = 3\nmaxretry = 3\n"
            ),
            "{text}"
        );
        assert!(
            !text.contains("[services.sshd]\n# from /f/jail.local:2"),
            "inherited values are not repeated: {text}"
        );
        assert!(text.contains("[sync]\n# from /f/jail.local:9 [sshd] action = iptables-multiport\nbackends = [\"iptables\"]\n"), "{text}");
        assert!(
            text.contains("to = \"ops@example.org\"\n") && text.contains("from = \"fail2ban\"\n"),
            "{text}"
        );
        let not: Vec<&Item> = m.items.iter().filter(|i| i.status == Status::NotCovered).collect();
        assert!(not.iter().any(|i| i.fail2ban.contains("host.example")), "{not:?}");
        assert!(
            not.iter().any(|i| i.fail2ban == "[apache-auth] (enabled)"
                && i.banguard.contains("/var/log/apache2/error.log")),
            "{not:?}"
        );
        assert_eq!(
            m.jails["apache-auth"],
            JailTarget::LogBased("log-based: filter apache-auth watches /var/log/apache2/error.log".into())
        );
        let config = banguard::Config::from_toml(Path::new("/f/50-fail2ban.toml"), &text).expect("valid");
        assert_eq!((config.policy("sshd").maxretry, config.default.maxretry), (3, 5));
    }
}
