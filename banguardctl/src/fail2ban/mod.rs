//! `banguardctl import fail2ban`: a fail2ban set-up turned into one
//! banguard drop-in, and the bans in force carried over.
//!
//! Everything is read and checked before anything is written: the
//! configuration (`ini`), what it means for banguard (`mapping`), the
//! drop-in checked together with the config it joins (and that it holds
//! exactly the keys the mapping set, whatever fail2ban's files said),
//! fail2ban's database (`database`), and which of its bans fail2ban itself
//! would restore. Then the drop-in and the bans land together or not at
//! all (`dropin`: the file is prepared, the bans stored, the file put in
//! place; a failure on the way takes the bans back).

pub mod database;
pub mod dropin;
pub mod ini;
pub mod mapping;

use crate::error::{Error, Result};
use banguard::addr::{parse_addr, parse_net};
use banguard::config::Config;
use banguard::policy::{ALL_SERVICES, BanOrigin, ForeignBan, Imported};
use banguard::{Banguard, HostKey};
use ini::Ini;
use mapping::{JailTarget, Mapping};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// fail2ban's default database, when fail2ban.conf names none.
pub const DEFAULT_DATABASE: &str = "/var/lib/fail2ban/fail2ban.sqlite3";

/// What the command was asked to do.
pub struct Options {
    pub from: PathBuf,
    pub database: Option<PathBuf>,
    pub output: PathBuf,
    pub dry_run: bool,
    pub force: bool,
    /// Write the drop-in only (no database read).
    pub config_only: bool,
    /// Carry the bans only (no drop-in written).
    pub bans_only: bool,
}

/// Everything read, before anything is written.
pub struct Plan {
    pub files: Vec<PathBuf>,
    pub mapping: Mapping,
    /// The drop-in's text.
    pub dropin: String,
    /// The config banguard runs with once the drop-in is in place.
    pub config: Config,
    pub database: DatabaseUse,
    /// The bans to carry over, with the rows they came from.
    pub bans: Vec<(database::StoredBan, ForeignBan)>,
    /// Rows not carried over, and why.
    pub skipped: Vec<(database::StoredBan, String)>,
    /// fail2ban files not read, and why.
    pub notes: Vec<ini::Note>,
    /// What the drop-in changes in banguard's effective settings: a line
    /// per setting it changes (values added and removed for a list).
    pub changes: Vec<String>,
}

/// Which database was read.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum DatabaseUse {
    Read {
        path: PathBuf,
        schema: i64,
    },
    /// None to read, and why.
    None {
        reason: String,
    },
}

/// Reads fail2ban's configuration and database and maps them, writing
/// nothing. `config_path` is banguard's config file (its drop-ins are
/// read with it); `now` decides which bans are still in force.
pub fn plan(opts: &Options, config_path: &Path, now: i64) -> Result<Plan> {
    let from = &opts.from;
    match std::fs::metadata(from) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::msg(format!(
                "{}: not a directory (fail2ban's configuration, --from)",
                from.display()
            )));
        }
        Err(e) => {
            return Err(Error::msg(format!("{}: {e} (fail2ban's configuration, --from)", from.display())));
        }
    }
    let jail = Ini::read(from, "jail").map_err(|e| Error::msg(e.to_string()))?;
    if jail.files.is_empty() {
        return Err(Error::msg(format!(
            "{}: no jail.conf, jail.local or jail.d/*.conf: not a fail2ban configuration directory",
            banguard::text::clean(&from.display().to_string())
        )));
    }
    let fail2ban = Ini::read(from, "fail2ban").map_err(|e| Error::msg(e.to_string()))?;
    let mapping = mapping::map(&jail, &fail2ban).map_err(|e| Error::msg(e.to_string()))?;
    let header = format!(
        "# Made by `banguardctl import fail2ban` from {}.\n\
         # Each key names the fail2ban file, line and setting it came from.\n",
        from.display()
    );
    let dropin = mapping.render(&header);
    dropin::check_keys(&dropin, &mapping)?;
    let (config, before) = if opts.bans_only {
        let current = Config::load_from(config_path, false)?;
        (current.clone(), current)
    } else {
        with_dropin(config_path, &opts.output, &dropin)?
    };
    let changes = if opts.bans_only { Vec::new() } else { changes(&before, &config, &mapping) };
    let mut files = fail2ban.files.clone();
    files.extend(jail.files.iter().cloned());
    let mut notes = fail2ban.notes.clone();
    notes.extend(jail.notes.iter().cloned());
    let (database, rows) = if opts.config_only {
        (DatabaseUse::None { reason: "--config-only: no bans carried over".into() }, Vec::new())
    } else {
        read_database(opts, &fail2ban)?
    };
    let (bans, skipped) = carry_over(&jail, &mapping, rows, now)?;
    Ok(Plan { files, mapping, dropin, config, database, bans, skipped, notes, changes })
}

/// What the drop-in changes in banguard's effective settings, key by key:
/// "[default] maxretry: 5 -> 3", "[default] ignoreip: removes ..., adds
/// ..." (a drop-in's list replaces the one before it, so what it leaves
/// out is said).
fn changes(before: &Config, after: &Config, mapping: &Mapping) -> Vec<String> {
    let (b, a) =
        (serde_json::to_value(before).unwrap_or_default(), serde_json::to_value(after).unwrap_or_default());
    let at = |v: &serde_json::Value, table: &str, key: &str| -> serde_json::Value {
        match table.strip_prefix("services.") {
            Some(s) => {
                let own = &v["services"][s][key];
                if own.is_null() { v["default"][key].clone() } else { own.clone() }
            }
            None => v[table][key].clone(),
        }
    };
    let mut out = Vec::new();
    for s in &mapping.settings {
        let (old, new) = (at(&b, &s.table, s.key), at(&a, &s.table, s.key));
        if old == new {
            continue;
        }
        let line = match (old.as_array(), new.as_array()) {
            (Some(o), Some(n)) => {
                let text = |v: &serde_json::Value| v.as_str().map_or_else(|| v.to_string(), String::from);
                let removed: Vec<String> = o.iter().filter(|x| !n.contains(x)).map(text).collect();
                let added: Vec<String> = n.iter().filter(|x| !o.contains(x)).map(text).collect();
                let mut parts = Vec::new();
                if !removed.is_empty() {
                    parts.push(format!("removes {}", removed.join(", ")));
                }
                if !added.is_empty() {
                    parts.push(format!("adds {}", added.join(", ")));
                }
                format!("[{}] {}: {}", s.table, s.key, parts.join("; "))
            }
            _ => format!("[{}] {}: {} -> {}", s.table, s.key, shown_value(&old), shown_value(&new)),
        };
        out.push(mapping::shown(&line));
    }
    out
}

fn shown_value(v: &serde_json::Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), String::from)
}

/// banguard's config as it will be with the drop-in at `output`, and as
/// it is without it: the drop-in is checked by the same parser, against
/// the files it joins.
fn with_dropin(config_path: &Path, output: &Path, dropin: &str) -> Result<(Config, Config)> {
    let mut sources = Config::sources(config_path, false)?;
    sources.retain(|(p, _)| p != output);
    let before = Config::from_sources(&sources)?;
    let at = sources.iter().position(|(p, _)| p.parent() == output.parent() && p.as_path() > output);
    let entry = (output.to_path_buf(), dropin.to_string());
    match at {
        Some(i) => sources.insert(i, entry),
        None => sources.push(entry),
    }
    let after = Config::from_sources(&sources).map_err(|e| {
        let source = match &e {
            banguard::Error::Config { path, line: Some(n), .. } if path == output => dropin
                .lines()
                .take(*n)
                .filter(|l| l.starts_with("# from "))
                .last()
                .map(|l| format!(" ({})", &l[2..]))
                .unwrap_or_default(),
            _ => String::new(),
        };
        Error::msg(format!(
            "the drop-in made from fail2ban's settings is not valid for banguard: {e}{source}"
        ))
    })?;
    Ok((after, before))
}

fn read_database(opts: &Options, fail2ban: &Ini) -> Result<(DatabaseUse, Vec<database::StoredBan>)> {
    let path = match &opts.database {
        Some(p) => p.clone(),
        None => {
            let named = fail2ban.get("Definition", "dbfile").map_err(|e| Error::msg(e.to_string()))?;
            match named {
                Some((v, raw)) if v == ":memory:" || v.eq_ignore_ascii_case("none") => {
                    let reason =
                        format!("{} dbfile = {v}: fail2ban keeps no bans across restarts", raw.place());
                    return Ok((DatabaseUse::None { reason }, Vec::new()));
                }
                Some((v, _)) => PathBuf::from(v),
                None => PathBuf::from(DEFAULT_DATABASE),
            }
        }
    };
    if opts.database.is_none() && !path.exists() {
        let reason =
            format!("no database at {}: no bans to carry over (--database names one)", path.display());
        return Ok((DatabaseUse::None { reason }, Vec::new()));
    }
    let (schema, rows) = database::read(&path).map_err(|e| Error::msg(e.to_string()))?;
    Ok((DatabaseUse::Read { path, schema }, rows))
}

type Carried = (Vec<(database::StoredBan, ForeignBan)>, Vec<(database::StoredBan, String)>);

/// How fail2ban restores one jail's bans at its start (its
/// `restoreCurrentBans`, `getCurrentBans`): which rows, and how long.
struct Restore {
    /// The jail's bantime (seconds; -1 permanent).
    bantime: i64,
    /// Rows older than this are not restored (`None`: any age).
    max_age: Option<i64>,
    /// A row's ban time longer than this, or -1, becomes this.
    cap: Option<i64>,
}

impl Restore {
    fn of(jail: &Ini, name: &str) -> Result<Restore> {
        let seconds = |key: &str| -> Result<Option<i64>> {
            match jail.get(name, key).map_err(|e| Error::msg(e.to_string()))? {
                Some((v, raw)) => mapping::fail2ban_seconds(&v).map(Some).map_err(|why| {
                    Error::msg(format!("{}: {key} = {}: {why}", raw.place(), mapping::shown(&v)))
                }),
                None => Ok(None),
            }
        };
        let bantime = seconds("bantime")?.unwrap_or(600);
        let increment = match jail.get(name, "bantime.increment").map_err(|e| Error::msg(e.to_string()))? {
            Some((v, _)) => matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "yes" | "true" | "on"),
            None => false,
        };
        Ok(if increment {
            // The observer keeps ban times; only bantime.maxtime caps them.
            Restore { bantime, max_age: None, cap: seconds("bantime.maxtime")?.filter(|m| *m >= 0) }
        } else {
            Restore {
                bantime,
                max_age: (bantime != -1).then_some(bantime),
                cap: (bantime >= 0).then_some(bantime),
            }
        })
    }

    /// The end of a row's ban as fail2ban would restore it: `Ok(None)`
    /// permanent, `Err(why)` not restored.
    fn end(&self, row: &database::StoredBan, now: i64) -> std::result::Result<Option<i64>, String> {
        // -2: written by fail2ban's own schema upgrade: the jail's bantime.
        let stored = row.bantime.unwrap_or(-2);
        let live = row.timeofban.saturating_add(stored) > now || stored <= -1;
        let young = self.max_age.is_none_or(|age| row.timeofban > now.saturating_sub(age));
        if !live || !young {
            return Err("over: fail2ban would not restore it".into());
        }
        let mut bantime = if stored == -2 { self.bantime } else { stored };
        if stored != -2
            && let Some(cap) = self.cap
            && (bantime == -1 || bantime > cap)
        {
            bantime = cap;
        }
        if bantime == -1 {
            return Ok(None);
        }
        let end = row.timeofban.saturating_add(bantime);
        if end <= now {
            return Err(format!("ban time {bantime}: over, fail2ban would not restore it"));
        }
        Ok(Some(end))
    }
}

/// The database's rows that fail2ban would restore, of jails banguard
/// covers, with the length fail2ban would give them.
fn carry_over(jail: &Ini, mapping: &Mapping, rows: Vec<database::StoredBan>, now: i64) -> Result<Carried> {
    let mut bans = Vec::new();
    let mut skipped = Vec::new();
    let mut rules: std::collections::HashMap<String, Restore> = std::collections::HashMap::new();
    for row in rows {
        let service = match mapping.jails.get(&row.jail) {
            None => {
                skipped.push((row, "its jail is not in the configuration".into()));
                continue;
            }
            Some(JailTarget::LogBased(why)) => {
                let why = format!("not covered ({why}): fail2ban keeps it");
                skipped.push((row, why));
                continue;
            }
            Some(JailTarget::Service(_)) if !mapping.enabled.contains(&row.jail) => {
                skipped.push((row, "its jail is not enabled: fail2ban would not restore it".into()));
                continue;
            }
            Some(JailTarget::Service(s)) => s.clone(),
        };
        let host = match (parse_addr(&row.ip), parse_net(&row.ip)) {
            (Some(a), _) => HostKey::Net(a.into()),
            (None, Ok(n)) => HostKey::Net(n),
            (None, Err(_)) => {
                let why = format!(
                    "{} is not an address or network: banguard bans addresses",
                    mapping::shown(&row.ip)
                );
                skipped.push((row, why));
                continue;
            }
        };
        if !rules.contains_key(&row.jail) {
            rules.insert(row.jail.clone(), Restore::of(jail, &row.jail)?);
        }
        let expires = match rules[&row.jail].end(&row, now) {
            Ok(e) => e,
            Err(why) => {
                skipped.push((row, why));
                continue;
            }
        };
        let foreign = ForeignBan {
            host,
            service: if service == "*" { ALL_SERVICES.to_string() } else { service },
            created: row.timeofban,
            expires,
            reason: format!("jail {}", mapping::shown(&row.jail)),
            origin: BanOrigin::Fail2ban,
            failures: row.failures.unwrap_or(0),
            carried: row.bancount.saturating_sub(1),
            firewall: true,
        };
        bans.push((row, foreign));
    }
    Ok((bans, skipped))
}

/// What became of the carried-over bans.
pub struct Outcome {
    pub answers: Vec<Imported>,
    pub written: bool,
}

/// Lands the drop-in and the bans together (unless `dry_run`, which only
/// says what would happen): the drop-in is prepared beside its place, the
/// bans are stored, then the drop-in is put in place; if the bans cannot
/// be stored the drop-in never appears, and if the drop-in cannot be put
/// in place the bans are taken back.
pub fn apply(plan: &Plan, opts: &Options, g: &mut Banguard) -> Result<Outcome> {
    let foreign: Vec<ForeignBan> = plan.bans.iter().map(|(_, f)| f.clone()).collect();
    if opts.dry_run {
        return Ok(Outcome { answers: g.plan_import(&foreign)?, written: false });
    }
    let pending =
        if opts.bans_only { None } else { Some(dropin::Pending::prepare(&opts.output, &plan.dropin)?) };
    let answers = g.import_bans(&foreign)?;
    if let Some(p) = pending
        && let Err(e) = p.commit()
    {
        let ids: Vec<i64> = answers
            .iter()
            .filter_map(|a| match a {
                Imported::New(b) => Some(b.id),
                _ => None,
            })
            .collect();
        g.take_back(&ids)?;
        return Err(e);
    }
    Ok(Outcome { answers, written: !opts.bans_only })
}

/// Checked before anything is read or written: the drop-in's place is a
/// drop-in (a `.toml` file, not banguard.toml itself), in a directory only
/// root can change, and not an existing one unless `force`.
pub fn check_output(opts: &Options, config_path: &Path) -> Result<()> {
    if opts.bans_only {
        return Ok(());
    }
    let out = &opts.output;
    let shown = || banguard::text::clean(&out.display().to_string());
    if out.extension().is_none_or(|e| e != "toml")
        || out.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
    {
        return Err(Error::msg(format!(
            "--output {}: a drop-in is a NAME.toml file (banguard reads no other name)",
            shown()
        )));
    }
    let same = |a: &Path, b: &Path| match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    };
    if same(out, config_path) {
        return Err(Error::msg(format!(
            "--output {}: that is banguard's main config file, not a drop-in; name a file in {}",
            shown(),
            banguard::config::dropin_dir(config_path).display()
        )));
    }
    if !opts.dry_run && !opts.force && std::fs::symlink_metadata(out).is_ok() {
        return Err(Error::msg(format!(
            "{} exists: not replaced (--force replaces it, --dry-run shows the new one)",
            shown()
        )));
    }
    Ok(())
}
