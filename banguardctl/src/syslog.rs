//! Best-effort syslog (facility authpriv, tag `banguardctl`): one line per
//! ban, unban, firewall change, expiry and mail notice. No syslog daemon
//! (no /dev/log) is not an error: the line is then only printed.

use syslog::{Facility, Formatter3164, Logger, LoggerBackend};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Notice,
    Warning,
    Err,
}

/// A lazily connected logger.
#[derive(Default)]
pub struct Syslog {
    logger: Option<Logger<LoggerBackend, Formatter3164>>,
    tried: bool,
}

impl Syslog {
    pub fn new() -> Syslog {
        Syslog::default()
    }

    /// Sends one line; never fails.
    pub fn log(&mut self, level: Level, message: &str) {
        if !self.tried {
            self.tried = true;
            let formatter = Formatter3164 {
                facility: Facility::LOG_AUTHPRIV,
                hostname: None,
                process: "banguardctl".into(),
                pid: std::process::id(),
            };
            self.logger = syslog::unix(formatter).ok();
        }
        let Some(logger) = self.logger.as_mut() else { return };
        let line = one_line(message);
        let sent = match level {
            Level::Notice => logger.notice(&line),
            Level::Warning => logger.warning(&line),
            Level::Err => logger.err(&line),
        };
        if sent.is_err() {
            // The daemon went away: stop trying for this run.
            self.logger = None;
        }
    }

    pub fn notice(&mut self, message: &str) {
        self.log(Level::Notice, message);
    }

    pub fn warning(&mut self, message: &str) {
        self.log(Level::Warning, message);
    }

    pub fn err(&mut self, message: &str) {
        self.log(Level::Err, message);
    }
}

/// A syslog line holds no control characters (no forged second line).
fn one_line(message: &str) -> String {
    message.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_cannot_be_forged() {
        assert_eq!(one_line("a\nJan 1 x sshd[1]: ok\r"), "a Jan 1 x sshd[1]: ok ");
    }
}
