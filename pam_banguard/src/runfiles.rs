//! Stamps under /run/banguard that rate-limit error logging across
//! processes (sshd forks one process per connection, so a static in memory
//! would not help). The trigger file is `banguard::trigger`.
//!
//! Everything here is best effort: a login never fails because of it.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Where stamps go when the config could not be read.
pub const DEFAULT_RUN_DIR: &str = "/run/banguard";

/// How long one logged error silences the same kind of error.
pub const ERROR_LOG_PERIOD: Duration = Duration::from_secs(60);

/// Whether an error of `kind` should be logged now: true when no error of
/// that kind was logged (by any process) within `period`. Records the log.
/// If the stamp cannot be written (not root, read-only /run), it logs:
/// better a repeated line than a silent failure.
pub fn first_in_period(dir: &Path, kind: &str, period: Duration) -> bool {
    let stamp = dir.join(format!("pam-{kind}.stamp"));
    let recent = fs::metadata(&stamp)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age < period);
    if recent {
        return false;
    }
    let _ = banguard::trigger::touch(&stamp);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn errors_are_logged_once_per_period_and_kind() {
        let t = tempfile::tempdir().unwrap();
        let p = Duration::from_secs(60);
        assert!(first_in_period(t.path(), "store", p));
        assert!(!first_in_period(t.path(), "store", p));
        assert!(first_in_period(t.path(), "config", p), "another kind has its own stamp");
        let stamp = t.path().join("pam-store.stamp");
        let old = SystemTime::now() - Duration::from_secs(61);
        fs::File::options().write(true).open(&stamp).unwrap().set_modified(old).unwrap();
        assert!(first_in_period(t.path(), "store", p), "a stale stamp lets the next one through");
        // A stamp directory nobody can write to: log every time.
        let ro = t.path().join("ro");
        fs::write(&ro, b"").unwrap();
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(first_in_period(&ro, "store", p));
        assert!(first_in_period(&ro, "store", p));
    }
}
