//! Finding and reading the config files: the main file, then its drop-ins
//! in name order. Every file is opened first and checked on the open
//! handle (a regular file, root's, writable by nobody else, of a sane
//! size), in a directory only root can change: what is checked is what is
//! read. The module reads them in every login, so nothing here can block:
//! a FIFO or a device where a file belongs is refused at once.

use crate::error::{Error, Result};
use crate::sys;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The largest config file read (the documented default file is ~10 KiB).
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The texts of `path` (required or optional) and its drop-ins, in the
/// order they apply, each checked as trusted.
pub fn sources(path: &Path, required: bool) -> Result<Vec<(PathBuf, String)>> {
    let mut sources = Vec::new();
    match read_trusted(path)? {
        Some(text) => sources.push((path.to_path_buf(), text)),
        None if !required => {}
        None => {
            return Err(Error::ConfigRead {
                path: path.to_path_buf(),
                source: std::io::Error::from_raw_os_error(libc::ENOENT),
            });
        }
    }
    let dropin_dir = dropin_dir(path);
    let entries = match fs::read_dir(&dropin_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(sources),
        Err(e) => return Err(Error::ConfigRead { path: dropin_dir, source: e }),
    };
    check_trusted(&dropin_dir)?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        // Hidden files are editors' swap and backup copies, as systemd
        // and run-parts skip them.
        .filter(|p| p.file_name().is_some_and(|n| !n.to_string_lossy().starts_with('.')))
        .collect();
    files.sort();
    for f in files {
        // Listed a moment ago: gone now is a race with an editor or a
        // package upgrade, not an error.
        if let Some(text) = read_trusted(&f)? {
            sources.push((f, text));
        }
    }
    Ok(sources)
}

/// `banguard.toml` → `banguard.d`.
pub fn dropin_dir(path: &Path) -> PathBuf {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!("{stem}.d"))
}

/// Reads a config file checked on the handle it is read from; `None` when
/// there is no such file.
fn read_trusted(path: &Path) -> Result<Option<String>> {
    let read_error = |source| Error::ConfigRead { path: path.to_path_buf(), source };
    // O_NONBLOCK: a FIFO put where a file belongs must not hang a login
    // (it is refused below as not a regular file). A link is followed
    // (configuration managers make them); the file it leads to is what is
    // checked, and so is the directory it lies in.
    let file = match File::options().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_error(e)),
    };
    let meta = file.metadata().map_err(read_error)?;
    if !meta.is_file() {
        return Err(Error::Insecure {
            path: path.to_path_buf(),
            message: "is not a regular file (a FIFO, device or directory is never read as a config)".into(),
        });
    }
    check_owner_and_mode(path, &meta)?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(Error::Config {
            path: path.to_path_buf(),
            line: None,
            key: None,
            message: format!("is {} bytes; a config file is at most {MAX_CONFIG_BYTES}", meta.len()),
        });
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        check_trusted(dir)?;
    }
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        let target = fs::canonicalize(path).map_err(read_error)?;
        if let Some(dir) = target.parent() {
            check_trusted(dir)?;
        }
    }
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text).map_err(read_error)?;
    Ok(Some(text))
}

/// Refuses a file or directory that someone other than root (or the
/// current user, who gains nothing) could change.
pub fn check_trusted(path: &Path) -> Result<()> {
    let meta = fs::metadata(path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
    check_owner_and_mode(path, &meta)
}

fn check_owner_and_mode(path: &Path, meta: &fs::Metadata) -> Result<()> {
    let me = sys::effective_uid();
    if meta.uid() != 0 && meta.uid() != me {
        return Err(Error::Insecure {
            path: path.to_path_buf(),
            message: format!("owned by uid {}, not root: chown root {}", meta.uid(), path.display()),
        });
    }
    // A sticky directory (/tmp) is writable by all, but nobody can replace
    // another's entry in it; still, a config belongs in a private place.
    if meta.mode() & 0o022 != 0 {
        return Err(Error::Insecure {
            path: path.to_path_buf(),
            message: format!(
                "writable by group or others (mode {:o}): chmod go-w {}",
                meta.mode() & 0o7777,
                path.display()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_fifo_is_refused_at_once_never_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("banguard.toml");
        let status = std::process::Command::new("mkfifo").arg(&p).status().unwrap();
        assert!(status.success());
        let started = std::time::Instant::now();
        let e = sources(&p, true).unwrap_err().to_string();
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "it must not wait for a writer");
        assert!(e.contains("not a regular file") && e.contains("banguard.toml"), "{e}");
    }

    #[test]
    fn what_is_checked_is_what_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("banguard.toml");
        fs::write(&p, "[default]\nmaxretry = 3\n").unwrap();
        assert_eq!(sources(&p, true).unwrap().len(), 1);
        // A group-writable directory is refused, whatever the file says.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o775)).unwrap();
        let e = sources(&p, true).unwrap_err().to_string();
        assert!(e.contains("writable by group or others"), "{e}");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        // Too big to be a config.
        fs::write(&p, vec![b'#'; (MAX_CONFIG_BYTES + 1) as usize]).unwrap();
        let e = sources(&p, true).unwrap_err().to_string();
        assert!(e.contains("at most"), "{e}");
        // A link to a file in a directory others may write is refused.
        let open = tempfile::tempdir().unwrap();
        fs::set_permissions(open.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let target = open.path().join("real.toml");
        fs::write(&target, "[default]\nmaxretry = 2\n").unwrap();
        fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink(&target, &p).unwrap();
        let e = sources(&p, true).unwrap_err().to_string();
        assert!(e.contains("writable by group or others"), "{e}");
    }

    #[test]
    fn a_dropin_that_is_not_a_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("banguard.toml");
        fs::create_dir(dir.path().join("banguard.d")).unwrap();
        fs::create_dir(dir.path().join("banguard.d/50-x.toml")).unwrap();
        let e = sources(&p, false).unwrap_err().to_string();
        assert!(e.contains("50-x.toml") && e.contains("not a regular file"), "{e}");
    }
}
