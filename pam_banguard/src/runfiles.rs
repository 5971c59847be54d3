//! Stamps under /run/banguard that rate-limit error logging across
//! processes (sshd forks one process per connection, so a static in memory
//! would not help). The trigger file is `banguard::trigger`.
//!
//! Everything here is best effort: a login never fails because of it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
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

/// Counts one occurrence of `kind` and, when a line for it is due (see
/// [`first_in_period`]), returns how many occurred since the last line
/// (this one included). Each occurrence appends one byte to a count file
/// (O_APPEND: atomic across processes); the process that logs renames the
/// file away first, so occurrences after that start the next count.
pub fn count_and_report(dir: &Path, kind: &str, period: Duration) -> Option<u64> {
    let count = dir.join(format!("pam-{kind}.count"));
    let appended = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&count)
        .and_then(|mut f| f.write_all(b"."));
    if !first_in_period(dir, kind, period) {
        return None;
    }
    if appended.is_err() {
        return Some(1);
    }
    let taken = dir.join(format!("pam-{kind}.count.{}", std::process::id()));
    let n =
        fs::rename(&count, &taken).and_then(|()| fs::symlink_metadata(&taken)).map_or(1, |m| m.len().max(1));
    let _ = fs::remove_file(&taken);
    Some(n)
}

/// Appends one line "kind service" to the troubles file the sync folds
/// into the metrics ([`banguard::policy::TROUBLES_FILE`]): one write under
/// O_APPEND, atomic across processes. Past the cap (no sync running for a
/// long time) lines are dropped until the next fold.
pub fn count_for_metrics(dir: &Path, kind: &str, service: &str) {
    let file = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(dir.join(banguard::policy::TROUBLES_FILE));
    // Root's own file with one name only: never a file someone else placed
    // or linked there (the directory should be root's alone anyway).
    if let Ok(mut f) = file
        && f.metadata().is_ok_and(|m| {
            m.is_file()
                && m.uid() == banguard::sys::effective_uid()
                && m.nlink() == 1
                && m.len() < banguard::policy::TROUBLES_CAP
        })
    {
        let line = format!("{kind} {}\n", banguard::policy::service_label(service));
        let _ = f.write_all(line.as_bytes());
    }
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

    #[test]
    fn troubles_are_appended_for_the_metrics_up_to_the_cap() {
        let t = tempfile::tempdir().unwrap();
        count_for_metrics(t.path(), "overload", "sshd");
        count_for_metrics(t.path(), "store", "bad\nname");
        let file = t.path().join(banguard::policy::TROUBLES_FILE);
        assert_eq!(fs::read_to_string(&file).unwrap(), "overload sshd\nstore other\n");
        // A second name for it (a hard link someone made): nothing added.
        let link = t.path().join("link");
        fs::hard_link(&file, &link).unwrap();
        count_for_metrics(t.path(), "overload", "sshd");
        assert_eq!(fs::read_to_string(&file).unwrap(), "overload sshd\nstore other\n");
        fs::remove_file(&link).unwrap();
        fs::write(&file, vec![b'x'; banguard::policy::TROUBLES_CAP as usize]).unwrap();
        count_for_metrics(t.path(), "overload", "sshd");
        assert_eq!(fs::metadata(&file).unwrap().len(), banguard::policy::TROUBLES_CAP, "full: nothing added");
    }

    #[test]
    fn occurrences_are_counted_between_two_lines() {
        let t = tempfile::tempdir().unwrap();
        let p = Duration::from_secs(60);
        assert_eq!(count_and_report(t.path(), "overload", p), Some(1), "the first one is logged at once");
        for _ in 0..4 {
            assert_eq!(count_and_report(t.path(), "overload", p), None);
        }
        let stamp = t.path().join("pam-overload.stamp");
        let old = SystemTime::now() - Duration::from_secs(61);
        fs::File::options().write(true).open(&stamp).unwrap().set_modified(old).unwrap();
        assert_eq!(count_and_report(t.path(), "overload", p), Some(5), "four silent ones and this one");
    }
}
