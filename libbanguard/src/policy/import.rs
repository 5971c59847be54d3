//! Bans brought in from another tool (`banguardctl import fail2ban`):
//! stored as bans of their own origin, under the same rule as a manual
//! ban (`ban::check_target`), once each however often the import runs: a
//! ban is known by its host, service, origin and the time the tool made
//! it, so one an admin lifted here stays lifted when the import runs
//! again. Written in short batches (a login never waits long for its
//! turn), and taken back whole if what goes with them cannot land.

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
    /// An earlier import already holds it (same host, service, origin and
    /// time made).
    Present(Ban),
    /// An earlier import brought it and an admin lifted it here: it stays
    /// lifted.
    Lifted(Ban),
    /// It has already ended.
    Over,
    /// Refused, and why (inside ignoreip, every address, too wide...).
    Refused(String),
}

/// Up to this many bans an import stores in one transaction (all or none,
/// about 0.2 s of the runtime state's lock); more go in short batches, so
/// that logins never wait long, and are taken back if one fails.
pub const ATOMIC_IMPORT: usize = 20_000;

/// The most earlier bans a carried ban counts for (the tool's count;
/// enough to reach any `bantime_max`).
pub const MAX_CARRIED: u32 = 64;

impl Banguard {
    /// Stores every foreign ban that is still running, may be banned here
    /// and was not brought in before, in short batches; the rest is
    /// reported, one answer per ban, in order. [`Banguard::take_back`]
    /// removes what this stored, if what goes with it cannot land.
    pub fn import_bans(&mut self, foreign: &[ForeignBan]) -> Result<Vec<Imported>> {
        let mut answers = self.plan_import(foreign)?;
        let new: Vec<Ban> = answers
            .iter()
            .filter_map(|a| match a {
                Imported::New(b) => Some(b.clone()),
                _ => None,
            })
            .collect();
        let stored = if new.len() <= ATOMIC_IMPORT {
            self.insert_at_once(new)?
        } else {
            self.insert_in_batches_or_none(new)?
        };
        let mut stored = stored.into_iter();
        for a in &mut answers {
            if let Imported::New(b) = a {
                *b = stored.next().expect("one stored ban per new one");
            }
        }
        Ok(answers)
    }

    /// What [`Banguard::import_bans`] would answer, writing nothing (a
    /// would-be new ban has id 0).
    pub fn plan_import(&self, foreign: &[ForeignBan]) -> Result<Vec<Imported>> {
        let now = self.clock.now();
        let durable = self.store.durable()?;
        let e = |err| Error::store(self.store.path(), err);
        let mut planned = std::collections::HashSet::new();
        let mut answers = Vec::with_capacity(foreign.len());
        for f in foreign {
            let known =
                bans::imported_before(durable, &f.host, &f.service, f.origin.name(), f.created.min(now))
                    .map_err(e)?;
            let answer = match judge(&self.config, f, now) {
                Some(answer) => answer,
                None => match known {
                    Some(b) if b.lifted.is_some() => Imported::Lifted(b),
                    Some(b) if b.is_active(now) => Imported::Present(b),
                    Some(_) => Imported::Over,
                    None if !planned.insert((f.host.db_key(), f.service.clone(), f.created.min(now))) => {
                        // The tool listed it twice: once is enough.
                        Imported::Present(new_ban(f, now))
                    }
                    None => Imported::New(new_ban(f, now)),
                },
            };
            answers.push(answer);
        }
        Ok(answers)
    }

    /// Stores bans in short batches; if one fails, what the others stored
    /// is taken back before the error is returned.
    fn insert_in_batches_or_none(&mut self, new: Vec<Ban>) -> Result<Vec<Ban>> {
        let before = self.newest_ban_id()?;
        let mut origins: Vec<BanOrigin> = new.iter().map(|b| b.origin).collect();
        origins.dedup();
        match self.insert_in_batches(new) {
            Ok(stored) => Ok(stored),
            Err(e) => {
                let mut ids = Vec::new();
                for origin in origins {
                    ids.extend(self.ban_ids_after(before, origin)?);
                }
                self.take_back(&ids)?;
                Err(e)
            }
        }
    }

    /// Stores bans in one transaction: all of them or none.
    fn insert_at_once(&mut self, new: Vec<Ban>) -> Result<Vec<Ban>> {
        let now = self.clock.now();
        let config = &self.config;
        let tx = self.store.begin()?;
        let stored = change_bans(&tx, &self.store, |dt| {
            let mut stored = Vec::with_capacity(new.len());
            for ban in new {
                let ban = bans::insert_ban(dt, ban)?;
                history::add_event(dt, now, &ban.host, &ban.service, "ban", &ban.wording(config, false))?;
                stored.push(ban);
            }
            Ok((stored.clone(), BanDelta::added(stored)))
        })?;
        tx.commit().map_err(|e| Error::store(self.store.runtime_path(), e))?;
        Ok(stored)
    }

    /// Removes bans an import just stored (by id), with their history: for
    /// an import whose other half (the drop-in) could not land, so that
    /// running it again brings them in afresh.
    pub fn take_back(&mut self, ids: &[i64]) -> Result<()> {
        for chunk in ids.chunks(500) {
            let tx = self.store.begin()?;
            change_bans(&tx, &self.store, |dt| {
                for id in chunk {
                    bans::forget(dt, *id)?;
                }
                Ok(((), BanDelta { removed: chunk.to_vec(), ..BanDelta::default() }))
            })?;
            tx.commit().map_err(|e| Error::store(self.store.runtime_path(), e))?;
        }
        Ok(())
    }
}

/// The answer for a ban that is not to be stored whatever the store holds;
/// `None` if it may be.
fn judge(config: &Config, f: &ForeignBan, now: i64) -> Option<Imported> {
    if f.expires.is_some_and(|e| e <= now) {
        return Some(Imported::Over);
    }
    if let Err(why) = check_target(config, &f.host) {
        return Some(Imported::Refused(why));
    }
    None
}

fn new_ban(f: &ForeignBan, now: i64) -> Ban {
    Ban {
        origin: f.origin,
        carried: f.carried.min(MAX_CARRIED),
        failures: f.failures,
        firewall: f.firewall,
        ..Ban::new(f.host.clone(), &f.service, f.created.min(now), f.expires, &f.reason)
    }
}
