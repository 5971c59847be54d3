//! Bans brought in from another tool (`banguardctl import fail2ban`):
//! stored as bans of their own origin, under the same rule as a manual
//! ban (`ban::check_target`), once each however often the import runs.

use super::*;
use crate::ban::{BanOrigin, check_target};

/// A ban as the tool it comes from had it.
#[derive(Debug, Clone, PartialEq)]
pub struct ForeignBan {
    pub host: HostKey,
    /// PAM service, or [`ALL_SERVICES`].
    pub service: String,
    /// When the tool made it (its clock).
    pub created: i64,
    /// `None`: permanent.
    pub expires: Option<i64>,
    /// Why, in the tool's terms ("jail sshd").
    pub reason: String,
    pub origin: BanOrigin,
    /// The failures behind it, if the tool recorded them.
    pub failures: u32,
    /// The tool's count of this host's earlier bans.
    pub carried: u32,
    /// Always pushed to the firewall (the tool had put it there).
    pub firewall: bool,
}

/// What became of one foreign ban.
#[derive(Debug, Clone, PartialEq)]
pub enum Imported {
    /// Stored now.
    New(Ban),
    /// An earlier import already holds it (same host, service, origin).
    Present(Ban),
    /// It has already ended.
    Over,
    /// Refused, and why (inside ignoreip, every address, too wide...).
    Refused(String),
}

impl Banguard {
    /// Stores every foreign ban that is still running, may be banned here
    /// and is not held already, in one transaction; the rest is reported,
    /// one answer per ban, in order.
    pub fn import_bans(&mut self, foreign: &[ForeignBan]) -> Result<Vec<Imported>> {
        let now = self.clock.now();
        let config = &self.config;
        let tx = self.store.begin()?;
        let answers = change_bans(&tx, &self.store, |dt| {
            let mut held = Held::new(bans::active_bans(dt, now)?);
            let mut answers = Vec::with_capacity(foreign.len());
            let mut added = Vec::new();
            for f in foreign {
                let answer = match judge(config, &held, f, now) {
                    Some(answer) => answer,
                    None => {
                        let ban = bans::insert_ban(dt, new_ban(f, now))?;
                        history::add_event(
                            dt,
                            now,
                            &ban.host,
                            &ban.service,
                            "ban",
                            &ban.wording(config, false),
                        )?;
                        held.add(ban.clone());
                        added.push(ban.clone());
                        Imported::New(ban)
                    }
                };
                answers.push(answer);
            }
            Ok((answers, BanDelta::added(added)))
        })?;
        tx.commit().map_err(|e| Error::store(self.store.runtime_path(), e))?;
        Ok(answers)
    }

    /// What [`Banguard::import_bans`] would answer, writing nothing (a
    /// would-be new ban has id 0).
    pub fn plan_import(&self, foreign: &[ForeignBan]) -> Result<Vec<Imported>> {
        let now = self.clock.now();
        let mut held = Held::new(self.bans(None, false)?);
        let mut answers = Vec::with_capacity(foreign.len());
        for f in foreign {
            let answer = judge(&self.config, &held, f, now).unwrap_or_else(|| {
                let ban = new_ban(f, now);
                held.add(ban.clone());
                Imported::New(ban)
            });
            answers.push(answer);
        }
        Ok(answers)
    }
}

/// The active bans by host, service and origin (an import of 100,000
/// decisions looks each one up).
struct Held(std::collections::HashMap<(String, String, BanOrigin), Ban>);

impl Held {
    fn new(bans: Vec<Ban>) -> Held {
        let mut held = Held(std::collections::HashMap::with_capacity(bans.len()));
        for b in bans {
            held.add(b);
        }
        held
    }

    fn add(&mut self, b: Ban) {
        self.0.insert((b.host.db_key(), b.service.clone(), b.origin), b);
    }

    fn get(&self, f: &ForeignBan) -> Option<&Ban> {
        self.0.get(&(f.host.db_key(), f.service.clone(), f.origin))
    }
}

/// The answer for a ban that is not to be stored; `None` if it is.
fn judge(config: &Config, held: &Held, f: &ForeignBan, now: i64) -> Option<Imported> {
    if f.expires.is_some_and(|e| e <= now) {
        return Some(Imported::Over);
    }
    if let Err(why) = check_target(config, &f.host) {
        return Some(Imported::Refused(why));
    }
    held.get(f).map(|b| Imported::Present(b.clone()))
}

fn new_ban(f: &ForeignBan, now: i64) -> Ban {
    Ban {
        origin: f.origin,
        carried: f.carried,
        failures: f.failures,
        firewall: f.firewall,
        ..Ban::new(f.host.clone(), &f.service, f.created.min(now), f.expires, &f.reason)
    }
}
