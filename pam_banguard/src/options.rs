//! The arguments after `pam_banguard.so` on a PAM stack line.
//!
//! Parsing never fails outright: it keeps every valid option and collects
//! a message for each bad one, so that the hook still knows `failmode=`
//! and `debug` when it has to report a typo next to them.

use banguard::config::FailMode;
use std::ffi::CStr;
use std::path::PathBuf;

/// What `pam_sm_authenticate` does on this line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// One line before the password modules: count the attempt, refuse a
    /// host that has used up its tries, give the attempt back on success.
    #[default]
    Single,
    /// Refuse a banned host; record nothing.
    Preauth,
    /// Record one failed attempt (on the stack's failure path).
    Authfail,
    /// Give back this handle's attempt (on the stack's success path).
    Authsucc,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Single => "(single-line)",
            Mode::Preauth => "preauth",
            Mode::Authfail => "authfail",
            Mode::Authsucc => "authsucc",
        }
    }
}

/// The options of one stack line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    /// `config=PATH`: an explicit config file (must exist).
    pub config: Option<PathBuf>,
    /// `debug`: log every decision.
    pub debug: bool,
    /// `failmode=open|closed`: overrides the config's `failmode`.
    pub failmode: Option<FailMode>,
    /// `service=NAME`: overrides PAM_SERVICE.
    pub service: Option<String>,
    pub mode: Mode,
    /// Debug builds only: panic inside the hook, to test the panic guard.
    pub test_panic: bool,
    /// One message per bad option, in the order given.
    pub errors: Vec<String>,
}

/// The options this module knows, for error messages.
pub const VALID: &str = "config=PATH, debug, failmode=open|closed, service=NAME, preauth, authfail, authsucc";

impl Options {
    /// Parses a stack line's arguments as libpam passes them.
    pub fn parse(args: &[&CStr]) -> Options {
        let mut opts = Options::default();
        for arg in args {
            match arg.to_str() {
                Ok(a) => opts.apply(a),
                Err(_) => opts.errors.push(format!("option {:?} is not UTF-8", arg.to_string_lossy())),
            }
        }
        opts
    }

    /// Parses arguments given as text (unit tests).
    #[cfg(test)]
    pub fn parse_str(args: &[&str]) -> Options {
        let mut opts = Options::default();
        for a in args {
            opts.apply(a);
        }
        opts
    }

    fn apply(&mut self, arg: &str) {
        let (name, value) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (arg, None),
        };
        match (name, value) {
            ("config", Some(v)) => {
                // libpam runs us in the application's working directory: a
                // relative path would depend on where sshd happened to start.
                if v.starts_with('/') {
                    self.config = Some(PathBuf::from(v));
                } else {
                    self.errors.push(format!("config={v:?}: the path must be absolute"));
                }
            }
            ("failmode", Some(v)) => match v.parse::<FailMode>() {
                Ok(f) => self.failmode = Some(f),
                Err(e) => self.errors.push(e),
            },
            ("service", Some(v)) => match banguard::config::check_service_name(v) {
                Ok(()) => self.service = Some(v.to_string()),
                Err(e) => self.errors.push(format!("service={v:?}: {e}")),
            },
            ("debug", None) => self.debug = true,
            ("preauth", None) => self.set_mode(Mode::Preauth),
            ("authfail", None) => self.set_mode(Mode::Authfail),
            ("authsucc", None) => self.set_mode(Mode::Authsucc),
            #[cfg(debug_assertions)]
            ("test_panic", None) => self.test_panic = true,
            ("config" | "failmode" | "service", None) => {
                self.errors.push(format!("option {name:?} needs a value ({name}=...)"));
            }
            _ => self.errors.push(format!("unknown option {arg:?}")),
        }
    }

    fn set_mode(&mut self, mode: Mode) {
        if self.mode != Mode::Single && self.mode != mode {
            self.errors.push(format!("conflicting modes {} and {}", self.mode.name(), mode.name()));
        }
        self.mode = mode;
    }

    /// All bad options as one log message, or `None` when there are none.
    pub fn error_message(&self) -> Option<String> {
        if self.errors.is_empty() {
            return None;
        }
        Some(format!("bad module options: {} (valid: {VALID})", self.errors.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_options_is_single_line_mode() {
        let o = Options::parse_str(&[]);
        assert_eq!(o, Options::default());
        assert_eq!(o.mode, Mode::Single);
        assert_eq!(o.error_message(), None);
    }

    #[test]
    fn every_option_is_understood() {
        let o = Options::parse_str(&[
            "config=/etc/banguard/other.toml",
            "debug",
            "failmode=closed",
            "service=sshd",
            "authfail",
        ]);
        assert_eq!(o.config.as_deref(), Some(std::path::Path::new("/etc/banguard/other.toml")));
        assert!(o.debug);
        assert_eq!(o.failmode, Some(FailMode::Closed));
        assert_eq!(o.service.as_deref(), Some("sshd"));
        assert_eq!(o.mode, Mode::Authfail);
        assert!(o.errors.is_empty(), "{:?}", o.errors);
        assert_eq!(Options::parse_str(&["preauth"]).mode, Mode::Preauth);
        assert_eq!(Options::parse_str(&["authsucc"]).mode, Mode::Authsucc);
        assert_eq!(Options::parse_str(&["failmode=open"]).failmode, Some(FailMode::Open));
        // Later options override earlier ones, like faillock.
        assert_eq!(
            Options::parse_str(&["failmode=open", "failmode=closed"]).failmode,
            Some(FailMode::Closed)
        );
    }

    #[test]
    fn typos_are_reported_and_valid_options_are_kept() {
        let o = Options::parse_str(&["degub", "failmode=closed", "confg=/x", "authfial"]);
        assert_eq!(o.failmode, Some(FailMode::Closed), "failmode still known for the error path");
        assert_eq!(o.mode, Mode::Single);
        assert_eq!(
            o.errors,
            vec![
                "unknown option \"degub\"".to_string(),
                "unknown option \"confg=/x\"".to_string(),
                "unknown option \"authfial\"".to_string(),
            ]
        );
        let msg = o.error_message().unwrap();
        assert!(msg.starts_with("bad module options: unknown option \"degub\"; "), "{msg}");
        assert!(msg.ends_with(&format!("(valid: {VALID})")), "{msg}");
    }

    #[test]
    fn bad_values_are_reported() {
        let cases: &[(&str, &str)] = &[
            ("failmode=shut", "failmode \"shut\": expected \"open\" or \"closed\""),
            ("config=banguard.toml", "config=\"banguard.toml\": the path must be absolute"),
            ("config=", "config=\"\": the path must be absolute"),
            (
                "service=",
                "service=\"\": invalid PAM service name \"\": 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-'",
            ),
            (
                "service=../../etc",
                "service=\"../../etc\": invalid PAM service name \"../../etc\": 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-'",
            ),
            ("config", "option \"config\" needs a value (config=...)"),
            ("failmode", "option \"failmode\" needs a value (failmode=...)"),
            ("debug=1", "unknown option \"debug=1\""),
            ("preauth=yes", "unknown option \"preauth=yes\""),
            ("Debug", "unknown option \"Debug\""),
        ];
        for (arg, want) in cases {
            let o = Options::parse_str(&[arg]);
            assert_eq!(o.errors, vec![want.to_string()], "{arg}");
        }
        let o = Options::parse_str(&["failmode=shut"]);
        assert_eq!(o.failmode, None, "an invalid failmode leaves the config's in force");
    }

    #[test]
    fn conflicting_modes_are_an_error_repeats_are_not() {
        let o = Options::parse_str(&["preauth", "authfail"]);
        assert_eq!(o.errors, vec!["conflicting modes preauth and authfail".to_string()]);
        assert!(Options::parse_str(&["authfail", "authfail"]).errors.is_empty());
    }

    #[test]
    fn non_utf8_arguments_are_reported() {
        let bad = c"service=\xff";
        let o = Options::parse(&[c"debug", bad]);
        assert!(o.debug);
        assert_eq!(o.errors, vec!["option \"service=\u{fffd}\" is not UTF-8".to_string()]);
    }

    #[test]
    fn test_panic_exists_only_in_debug_builds() {
        let o = Options::parse_str(&["test_panic"]);
        if cfg!(debug_assertions) {
            assert!(o.test_panic && o.errors.is_empty());
        } else {
            assert!(!o.test_panic && o.errors.len() == 1);
        }
    }
}
