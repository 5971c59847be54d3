//! `banguardctl import fail2ban`: a fail2ban set-up turned into one
//! banguard drop-in, and the bans in force carried over.
//!
//! Everything is read and checked before anything is written: the
//! configuration (`ini`), what it means for banguard (`mapping`), the
//! drop-in checked together with the config it joins, fail2ban's database
//! (`database`). Then the drop-in is written (atomically, root's, 0644)
//! and the bans are stored in one transaction.

pub mod database;
pub mod ini;
pub mod mapping;

use crate::error::{Error, Result};
use banguard::addr::parse_addr;
use banguard::config::Config;
use banguard::policy::{ALL_SERVICES, BanOrigin, ForeignBan, Imported};
use banguard::{Banguard, HostKey};
use ini::Ini;
use mapping::{JailTarget, Mapping, fail2ban_seconds};
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
            from.display()
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
    let config = with_dropin(config_path, &opts.output, &dropin)?;
    let mut files = fail2ban.files.clone();
    files.extend(jail.files.iter().cloned());
    let (database, rows) = read_database(opts, &fail2ban)?;
    let (bans, skipped) = carry_over(&jail, &mapping, rows, now)?;
    Ok(Plan { files, mapping, dropin, config, database, bans, skipped })
}

/// banguard's config as it will be with the drop-in at `output`: the
/// drop-in is checked by the same parser, against the files it joins.
fn with_dropin(config_path: &Path, output: &Path, dropin: &str) -> Result<Config> {
    let mut sources = Config::sources(config_path, false)?;
    sources.retain(|(p, _)| p != output);
    let at = sources.iter().position(|(p, _)| p.parent() == output.parent() && p.as_path() > output);
    let entry = (output.to_path_buf(), dropin.to_string());
    match at {
        Some(i) => sources.insert(i, entry),
        None => sources.push(entry),
    }
    Config::from_sources(&sources).map_err(|e| {
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
    })
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

/// The database's rows that are bans in force of jails banguard covers.
fn carry_over(jail: &Ini, mapping: &Mapping, rows: Vec<database::StoredBan>, now: i64) -> Result<Carried> {
    let mut bans = Vec::new();
    let mut skipped = Vec::new();
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
            Some(JailTarget::Service(s)) if !mapping.enabled.contains(&row.jail) => {
                let _ = s;
                skipped.push((row, "its jail is not enabled: fail2ban would not restore it".into()));
                continue;
            }
            Some(JailTarget::Service(s)) => s.clone(),
        };
        let Some(addr) = parse_addr(&row.ip) else {
            skipped.push((row.clone(), format!("{:?} is not an IP address", row.ip)));
            continue;
        };
        let bantime = match row.bantime {
            Some(t) => t,
            None => match jail.get(&row.jail, "bantime").map_err(|e| Error::msg(e.to_string()))? {
                Some((v, raw)) => fail2ban_seconds(&v)
                    .map_err(|why| Error::msg(format!("{}: bantime = {v}: {why}", raw.place())))?,
                None => 600,
            },
        };
        let expires = (bantime >= 0).then(|| row.timeofban.saturating_add(bantime));
        if expires.is_some_and(|e| e <= now) {
            continue; // over: fail2ban would not restore it either
        }
        let foreign = ForeignBan {
            host: HostKey::Net(addr.into()),
            service: if service == "*" { ALL_SERVICES.to_string() } else { service },
            created: row.timeofban,
            expires,
            reason: format!("jail {}", banguard::text::clean(&row.jail)),
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

/// Writes the drop-in (unless it exists and `force` is not given) and
/// stores the bans; with `dry_run`, only says what would happen.
pub fn apply(plan: &Plan, opts: &Options, g: &mut Banguard) -> Result<Outcome> {
    let foreign: Vec<ForeignBan> = plan.bans.iter().map(|(_, f)| f.clone()).collect();
    if opts.dry_run {
        return Ok(Outcome { answers: g.plan_import(&foreign)?, written: false });
    }
    write_dropin(&opts.output, &plan.dropin)?;
    Ok(Outcome { answers: g.import_bans(&foreign)?, written: true })
}

/// Refuses to replace an existing drop-in unless forced (checked before
/// anything is written).
pub fn check_output(opts: &Options) -> Result<()> {
    if !opts.dry_run && !opts.force && opts.output.exists() {
        return Err(Error::msg(format!(
            "{} exists: not replaced (--force replaces it, --dry-run shows the new one)",
            opts.output.display()
        )));
    }
    Ok(())
}

fn write_dropin(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| Error::msg(format!("{}: {e}", dir.display())))?;
    }
    // Root's and 0644 whatever an earlier file was: banguard refuses a
    // config others could change.
    banguard::sync::hosts_deny::write_atomic_with(path, text.as_bytes(), &mut |tmp| {
        std::os::unix::fs::chown(tmp, Some(0), Some(0))?;
        std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o644))
    })?;
    Ok(())
}
