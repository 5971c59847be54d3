//! Best-effort syslog (facility authpriv, tag `banguardctl`): one line per
//! ban, unban, firewall change, expiry and mail notice. No syslog daemon
//! (no /dev/log) is not an error: the line is then only printed.

use std::sync::Once;

/// The levels banguardctl logs at (the sync job's).
pub use banguard::sync::job::Level;

/// The process's syslog connection (libc's, opened on first use).
#[derive(Default)]
pub struct Syslog;

impl Syslog {
    pub fn new() -> Syslog {
        Syslog
    }

    /// Sends one line; never fails.
    pub fn log(&mut self, level: Level, message: &str) {
        static OPEN: Once = Once::new();
        OPEN.call_once(|| banguard::sys::open_syslog(c"banguardctl", libc::LOG_AUTHPRIV));
        let level = match level {
            Level::Notice => libc::LOG_NOTICE,
            Level::Warning => libc::LOG_WARNING,
            Level::Err => libc::LOG_ERR,
        };
        banguard::sys::syslog(libc::LOG_AUTHPRIV | level, message);
    }

    pub fn notice(&mut self, message: &str) {
        self.log(Level::Notice, message);
    }
}
