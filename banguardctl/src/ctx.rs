//! What every command needs: the config, the store opened the right way
//! (read-only for commands that only read), the clock, retries while the
//! store is busy, and output that survives a closed pipe.

use crate::error::{Error, Result};
use banguard::Banguard;
use banguard::config::Config;
use banguard::policy::{Clock, ManualClock, SystemClock};
use banguard::store::Access;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Environment variable that fixes "now" (unix seconds) for the commands
/// that write nothing. For tests; see `--help`.
pub const NOW_ENV: &str = "BANGUARD_NOW";

pub struct Ctx {
    pub config: Config,
    /// The config file asked for (its drop-ins sit beside it).
    pub config_path: PathBuf,
    pub json: bool,
}

impl Ctx {
    /// Loads the config: an explicit `--config` must exist; the default
    /// file may be missing (built-in defaults then).
    pub fn load(config: Option<PathBuf>, json: bool) -> Result<Ctx> {
        let (config, config_path) = match config {
            Some(path) => (Config::load(&path)?, path),
            None => (Config::load_default()?, PathBuf::from(banguard::config::DEFAULT_CONFIG)),
        };
        let _ = PATIENCE.set(banguard::store::admin_patience(&config));
        Ok(Ctx { config, config_path, json })
    }

    /// Opens the store for a command that only reads. Never creates,
    /// migrates or writes anything; a store that does not exist yet reads
    /// as empty.
    pub fn open_read(&self) -> Result<Banguard> {
        self.open_read_with(self.config.clone())
    }

    /// [`Ctx::open_read`] with another config (one not yet written).
    pub fn open_read_with(&self, config: Config) -> Result<Banguard> {
        let clock = read_clock()?;
        let path = &config.database;
        match std::fs::metadata(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Banguard::in_memory(config, clock)?);
            }
            Err(e) => {
                let hint = if e.kind() == std::io::ErrorKind::PermissionDenied && !is_root() {
                    ": run as root"
                } else {
                    ""
                };
                return Err(Error::msg(format!("database {}: {e}{hint}", path.display())));
            }
        }
        retry(|| Banguard::open_with(config.clone(), Access::ReadOnly, clock.clone()))
    }

    /// Opens the store for a command that writes: root only.
    pub fn open_write(&self, command: &str) -> Result<Banguard> {
        self.open_write_with(command, self.config.clone())
    }

    /// [`Ctx::open_write`] with another config (one about to be written).
    pub fn open_write_with(&self, command: &str, config: Config) -> Result<Banguard> {
        require_root(command)?;
        if std::env::var_os(NOW_ENV).is_some() {
            crate::say(&format!("warning: {NOW_ENV} is ignored by `{command}`, which writes"));
        }
        retry(|| Banguard::open_with(config.clone(), Access::ReadWrite, Arc::new(SystemClock)))
    }

    /// Prints to stdout; a closed pipe becomes [`Error::BrokenPipe`].
    pub fn print(&self, text: &str) -> Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
        Ok(())
    }

    /// Prints a value as pretty JSON with a final newline.
    pub fn print_json(&self, value: &serde_json::Value) -> Result<()> {
        let mut text = serde_json::to_string_pretty(value).map_err(|e| Error::msg(e.to_string()))?;
        text.push('\n');
        self.print(&text)
    }

    /// Warns (stderr) when `service` has no section of its own.
    pub fn note_unconfigured(&self, service: &str) {
        if !self.config.services.contains_key(service) {
            crate::say(&format!("note: no [services.{service}] section in the config: [default] applies"));
        }
    }

    /// The config section that governs `service`.
    pub fn section(&self, service: &str) -> String {
        if self.config.services.contains_key(service) {
            format!("[services.{service}]")
        } else {
            "[default]".to_string()
        }
    }
}

/// The clock of read-only commands: `BANGUARD_NOW` if set, else the system.
pub fn read_clock() -> Result<Arc<dyn Clock>> {
    match std::env::var(NOW_ENV) {
        Ok(v) => {
            let t: i64 = v
                .trim()
                .parse()
                .ok()
                .filter(|t: &i64| *t >= 0)
                .ok_or_else(|| Error::msg(format!("invalid {NOW_ENV} {v:?}: expected unix seconds")))?;
            Ok(ManualClock::new(t))
        }
        Err(_) => Ok(Arc::new(SystemClock)),
    }
}

pub fn is_root() -> bool {
    banguard::sys::effective_uid() == 0
}

/// Refuses a write command run without root.
pub fn require_root(command: &str) -> Result<()> {
    if is_root() {
        Ok(())
    } else {
        Err(Error::msg(format!(
            "`{command}` changes the store and the firewall: run as root (uid {} is not)",
            banguard::sys::effective_uid()
        )))
    }
}

/// How long a command keeps retrying a busy store
/// (`banguard::store::admin_patience`). Set once per process by [`Ctx::load`].
static PATIENCE: OnceLock<Duration> = OnceLock::new();

/// Runs a store operation, retrying while another process (sshd under
/// load) holds the write lock beyond the busy timeout.
pub fn retry<T>(f: impl FnMut() -> banguard::Result<T>) -> Result<T> {
    let patience = *PATIENCE.get_or_init(|| banguard::store::admin_patience(&Config::default()));
    banguard::store::retry_busy(patience, f).map_err(Error::from)
}

/// Checks a PAM service name given on the command line.
pub fn service_name(text: &str) -> Result<&str> {
    banguard::config::check_service_name(text).map_err(Error::msg)?;
    Ok(text)
}

/// Who ran the command, for syslog lines: the real uid, and the sudo user
/// if any (sanitised: it is only a label).
pub fn actor() -> String {
    let uid = banguard::sys::real_uid();
    let mut who = format!("uid {uid}");
    if let Ok(user) = std::env::var("SUDO_USER") {
        let user: String =
            user.chars().filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c)).take(32).collect();
        if !user.is_empty() {
            who.push_str(&format!(" (sudo by {user})"));
        }
    }
    who
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names() {
        assert!(service_name("sshd").is_ok());
        assert!(service_name("vsftpd.local_2-x").is_ok());
        for bad in ["", "-x", "a b", "sshd\n", "ssh;d", &"x".repeat(65)] {
            assert!(service_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn retry_gives_up_on_other_errors_at_once() {
        let mut calls = 0;
        let r: Result<()> = retry(|| {
            calls += 1;
            Err(banguard::Error::InvalidInput { what: "x", value: "y".into(), message: "z".into() })
        });
        assert!(r.is_err());
        assert_eq!(calls, 1);
    }
}
