//! The trigger file: touched after every new ban so that a systemd path
//! unit (`banguard-sync.path`) runs `banguardctl sync` at once instead of
//! at the next minute. Shared by the PAM module and the C ABI.

use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::time::SystemTime;

/// Sets the mtime of `path` to now, creating it (mode 0600) and its parent
/// directory (mode 0700, one level only) if missing.
///
/// O_NONBLOCK: if an operator made the trigger a FIFO with no reader, open
/// fails at once (ENXIO) instead of blocking a login.
pub fn touch(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        match DirBuilder::new().mode(0o700).create(dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
    }
    // O_NOFOLLOW: root never touches a file through a link someone placed.
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)?;
    file.set_modified(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::MetadataExt;
    use std::time::Duration;

    #[test]
    fn creates_dir_and_file_privately_and_updates_mtime() {
        let t = tempfile::tempdir().unwrap();
        let trigger = t.path().join("run/ban.trigger");
        touch(&trigger).unwrap();
        assert_eq!(fs::metadata(t.path().join("run")).unwrap().mode() & 0o777, 0o700);
        assert_eq!(fs::metadata(&trigger).unwrap().mode() & 0o777, 0o600);
        let old = SystemTime::now() - Duration::from_secs(3600);
        fs::File::options().write(true).open(&trigger).unwrap().set_modified(old).unwrap();
        touch(&trigger).unwrap();
        let age = SystemTime::now().duration_since(fs::metadata(&trigger).unwrap().modified().unwrap());
        assert!(age.unwrap_or_default() < Duration::from_secs(60));
        // A missing grandparent is an error, not a tree of new directories.
        assert!(touch(&t.path().join("a/b/ban.trigger")).is_err());
    }

    #[test]
    fn a_fifo_without_reader_does_not_block() {
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("fifo");
        let status = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(status.success());
        let e = touch(&fifo).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENXIO), "fails at once");
    }
}
