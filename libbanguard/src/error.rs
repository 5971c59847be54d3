//! The one error type of the banguard core. Every message says what went
//! wrong and, where there is one, what to do about it.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Result alias for the banguard core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the banguard core.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A config file could not be read.
    ConfigRead { path: PathBuf, source: io::Error },
    /// A config file has a syntax or value error. `line` is 1-based.
    Config { path: PathBuf, line: Option<usize>, key: Option<String>, message: String },
    /// A file we trust (config, store) has unsafe ownership or permissions.
    Insecure { path: PathBuf, message: String },
    /// A value given by a user (command line, C caller) is invalid.
    InvalidInput { what: &'static str, value: String, message: String },
    /// The store could not be opened or used.
    Store { path: PathBuf, message: String, source: Option<SqlError> },
    /// The store was written by a newer banguard.
    SchemaTooNew { path: PathBuf, found: i64, supported: i64 },
    /// A file operation failed.
    Io { path: PathBuf, source: io::Error },
    /// This process's turn at the runtime state did not come within
    /// `busy_timeout_ms`: more attempts at once than the machine can serve
    /// in that time (or a holder that hangs). The attempt was not counted.
    Overloaded { path: PathBuf, waited: std::time::Duration },
    /// An external command (nft, ipset, iptables, sendmail) failed.
    Command { program: String, args: Vec<String>, status: Option<i32>, stderr: String },
}

impl Error {
    /// Wraps a SQLite error on the store at `path`, adding advice where the
    /// cause is one an operator can fix.
    pub(crate) fn store(path: impl Into<PathBuf>, source: rusqlite::Error) -> Error {
        let path = path.into();
        let message = match no_space(&path, &source) {
            Some(m) => m,
            None => store_advice(&source),
        };
        Error::Store { path, message, source: Some(SqlError(source)) }
    }

    /// Whether this is a store error caused by the store being busy (locked
    /// beyond the busy timeout).
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            Error::Store { source: Some(SqlError(rusqlite::Error::SqliteFailure(e, _))), .. }
                if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    }

    /// Whether the store did not answer in time: this process's turn did
    /// not come, or a lock stayed held (contention, not a broken store).
    pub fn is_overload(&self) -> bool {
        matches!(self, Error::Overloaded { .. }) || self.is_busy()
    }

    /// Whether the system refused access to a file (the store, the
    /// runtime state, their directories, the lock, the config).
    pub fn is_access_denied(&self) -> bool {
        use rusqlite::ErrorCode::{CannotOpen, PermissionDenied, ReadOnly};
        match self {
            Error::Io { source, .. } | Error::ConfigRead { source, .. } => {
                source.kind() == io::ErrorKind::PermissionDenied
            }
            Error::Store { source: Some(SqlError(rusqlite::Error::SqliteFailure(f, _))), .. } => {
                matches!(f.code, CannotOpen | PermissionDenied | ReadOnly)
            }
            _ => false,
        }
    }

    /// What the platform adds to this error: a denial to root while
    /// SELinux is enforcing is SELinux's (file modes do not stop root), and
    /// the fix is banguard's policy module.
    pub fn platform_advice(&self) -> Option<&'static str> {
        let denied = self.is_access_denied() && crate::sys::effective_uid() == 0;
        selinux_advice(denied, crate::sys::selinux_enforcing())
    }

    /// What kind of trouble this is (the C ABI maps it to its codes; the
    /// module rate-limits its log lines per kind).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::ConfigRead { .. } | Error::Config { .. } => ErrorKind::Config,
            Error::Insecure { .. } => ErrorKind::Insecure,
            Error::InvalidInput { .. } => ErrorKind::InvalidInput,
            Error::Store { .. } | Error::SchemaTooNew { .. } => ErrorKind::Store,
            Error::Overloaded { .. } => ErrorKind::Overload,
            Error::Io { .. } => ErrorKind::Io,
            Error::Command { .. } => ErrorKind::Command,
        }
    }
}

/// The kinds of [`Error`], for callers that act on the kind, not the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    Config,
    Insecure,
    InvalidInput,
    Store,
    Overload,
    Io,
    Command,
}

impl ErrorKind {
    /// A short stable name ("config", "store", ...), for logs and stamp files.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Insecure => "insecure",
            ErrorKind::InvalidInput => "invalid-input",
            ErrorKind::Store => "store",
            ErrorKind::Overload => "overload",
            ErrorKind::Io => "io",
            ErrorKind::Command => "command",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What to say about a denial to root, given whether SELinux enforces.
fn selinux_advice(denied_to_root: bool, enforcing: bool) -> Option<&'static str> {
    (denied_to_root && enforcing).then_some(SELINUX_ADVICE)
}

/// The fix for a denial by SELinux.
pub const SELINUX_ADVICE: &str = "SELinux is enforcing and denied it: install banguard's policy module \
     (package banguard-selinux, or `semodule -i banguard.pp`), then \
     `restorecon -R /etc/banguard /var/lib/banguard /run/banguard`";

/// The SQLite error under a store error: its text and `source()` only;
/// SQLite's own types are not part of the library's API.
#[derive(Debug)]
pub struct SqlError(rusqlite::Error);

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SqlError {}

/// SQLite reports a write that found the disk full as "disk I/O error"
/// as often as "database or disk is full"; the file system says which.
fn no_space(path: &std::path::Path, e: &rusqlite::Error) -> Option<String> {
    use rusqlite::ErrorCode::{DiskFull, SystemIoFailure};
    let rusqlite::Error::SqliteFailure(f, _) = e else { return None };
    if !matches!(f.code, DiskFull | SystemIoFailure) {
        return None;
    }
    // Less than a few pages free: SQLite could not have written.
    (crate::sys::free_bytes(path)? < 64 * 1024).then(|| {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(path);
        format!("no space left on {} (the file system holding it is full): free some space", dir.display())
    })
}

fn store_advice(e: &rusqlite::Error) -> String {
    use rusqlite::ErrorCode::*;
    let uid = crate::sys::real_uid();
    match e {
        rusqlite::Error::SqliteFailure(f, msg) => {
            let detail = msg.clone().unwrap_or_else(|| f.to_string());
            match f.code {
                ReadOnly | CannotOpen | PermissionDenied if uid != 0 => {
                    format!("{detail}: the store is not writable by uid {uid}: run as root")
                }
                ReadOnly => format!("{detail}: the store or its directory is read-only"),
                CannotOpen => format!(
                    "{detail}: cannot open the store; check that its directory exists and is writable"
                ),
                DatabaseBusy | DatabaseLocked => format!(
                    "{detail}: the store stayed locked beyond the busy timeout; another process holds it"
                ),
                DiskFull => format!("{detail}: the disk holding the store is full"),
                NotADatabase | DatabaseCorrupt => format!(
                    "{detail}: the store is corrupt or not a banguard database; move it aside (banguard creates a new one)"
                ),
                _ => detail,
            }
        }
        other => other.to_string(),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ConfigRead { path, source } => {
                write!(f, "cannot read config {}: {source}", path.display())
            }
            Error::Config { path, line, key, message } => {
                write!(f, "{}", path.display())?;
                if let Some(line) = line {
                    write!(f, ":{line}")?;
                }
                if let Some(key) = key {
                    write!(f, ": key `{key}`")?;
                }
                write!(f, ": {message}")
            }
            Error::Insecure { path, message } => write!(f, "refusing {}: {message}", path.display()),
            Error::InvalidInput { what, value, message } => {
                write!(f, "invalid {what} {value:?}: {message}")
            }
            Error::Store { path, message, .. } => write!(f, "database {}: {message}", path.display()),
            Error::SchemaTooNew { path, found, supported } => write!(
                f,
                "database {} has schema version {found}, this banguard supports up to {supported}: upgrade banguard",
                path.display()
            ),
            Error::Overloaded { path, waited } => write!(
                f,
                "no turn at {} within {} ms: more attempts at once than this machine serves in that time \
                 ([store] busy_timeout_ms), or a process holds the lock and hangs",
                path.display(),
                waited.as_millis()
            ),
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Command { program, args, status, stderr } => {
                write!(f, "`{program} {}` failed", args.join(" "))?;
                match status {
                    Some(code) => write!(f, " with exit code {code}")?,
                    None => write!(f, " (killed by a signal or could not start)")?,
                }
                let stderr = stderr.trim();
                if !stderr.is_empty() {
                    write!(f, ": {stderr}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::ConfigRead { source, .. } | Error::Io { source, .. } => Some(source),
            Error::Store { source: Some(s), .. } => Some(s),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denial_to_root_under_selinux_names_the_policy_module() {
        let denied = Error::Io {
            path: "/var/lib/banguard".into(),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        assert!(denied.is_access_denied());
        let cannot_open = Error::store(
            "/var/lib/banguard/banguard.db",
            rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN), None),
        );
        assert!(cannot_open.is_access_denied());
        let missing =
            Error::Io { path: "/etc/banguard".into(), source: io::Error::from(io::ErrorKind::NotFound) };
        assert!(!missing.is_access_denied());
        let advice = selinux_advice(true, true).unwrap();
        assert!(advice.contains("banguard-selinux") && advice.contains("restorecon"), "{advice}");
        assert_eq!(selinux_advice(true, false), None, "permissive or disabled: not SELinux's doing");
        assert_eq!(selinux_advice(false, true), None, "not a denial");
    }
}
