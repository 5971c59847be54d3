//! The drop-in: checked to say exactly what the mapping set, and written
//! as root writes a config: in a directory only root can change (the
//! store's rule), under a name nobody else could have made, owner and mode
//! set on the open file (never by path), synced, then renamed into place
//! only when the bans that go with it have landed.

use super::mapping::Mapping;
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The drop-in's text, read back as TOML, holds exactly the keys and
/// values the mapping set: nothing a fail2ban file said (a file name with
/// a line break in it, an escape in a value) can have become a key of its
/// own.
pub fn check_keys(text: &str, mapping: &Mapping) -> Result<()> {
    let parsed: toml::Table = toml::from_str(text).map_err(|e| {
        Error::msg(format!("the drop-in made from fail2ban's settings does not read back: {e}"))
    })?;
    let mut written: BTreeMap<String, toml::Value> = BTreeMap::new();
    flatten("", &toml::Value::Table(parsed), &mut written);
    let mut wanted: BTreeMap<String, toml::Value> = BTreeMap::new();
    for s in &mapping.settings {
        let value: toml::Table = toml::from_str(&format!("v = {}", s.value)).map_err(|e| {
            Error::msg(format!("the value of [{}] {} does not read back: {e}", s.table, s.key))
        })?;
        wanted.insert(format!("{}.{}", s.table, s.key), value["v"].clone());
    }
    // Tables written for a jail with nothing of their own.
    let empty: Vec<String> = mapping.tables.iter().map(|(t, _)| t.clone()).collect();
    written.retain(|k, v| !(v.as_table().is_some_and(|t| t.is_empty()) && empty.contains(k)));
    if written != wanted {
        let extra: Vec<&String> = written.keys().filter(|k| !wanted.contains_key(*k)).collect();
        return Err(Error::msg(format!(
            "the drop-in made from fail2ban's settings would say more than the mapping set ({}): not written",
            banguard::text::clean(&format!("{extra:?}"))
        )));
    }
    Ok(())
}

/// Leaves of a TOML document by dotted path; a table with no keys is a
/// leaf of its own.
fn flatten(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, toml::Value>) {
    match v.as_table() {
        Some(t) if !t.is_empty() || prefix.is_empty() => {
            for (k, v) in t {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&path, v, out);
            }
        }
        _ => {
            out.insert(prefix.to_string(), v.clone());
        }
    }
}

/// A drop-in written beside its place, not in it yet.
pub struct Pending {
    tmp: PathBuf,
    path: PathBuf,
    done: bool,
}

impl Pending {
    /// Writes `text` to a new file in `path`'s directory: root's, 0644,
    /// synced.
    pub fn prepare(path: &Path, text: &str) -> Result<Pending> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .mode(0o755)
                .create(&dir)
                .map_err(|e| Error::msg(format!("{}: {e}", dir.display())))?;
        }
        // As the store: a directory another user could write in (or reach
        // through a link of theirs) is refused before anything is made.
        banguard::store::check_dir(&dir)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let tmp = dir.join(format!(".{name}.{}.{nonce:08x}.new", std::process::id()));
        let io = |e: std::io::Error| Error::msg(format!("{}: {e}", tmp.display()));
        // O_EXCL: never a file or link someone else made; O_NOFOLLOW for
        // good measure.
        let mut file: File = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(io)?;
        let pending = Pending { tmp: tmp.clone(), path: path.to_path_buf(), done: false };
        if banguard::sys::effective_uid() == 0 {
            std::os::unix::fs::fchown(&file, Some(0), Some(0)).map_err(io)?;
        }
        file.set_permissions(std::fs::Permissions::from_mode(0o644)).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(pending)
    }

    /// Puts the drop-in in place (a rename: readers see the old file or
    /// the new one) and syncs the directory.
    pub fn commit(mut self) -> Result<()> {
        let io = |e: std::io::Error| Error::msg(format!("{}: {e}", self.path.display()));
        std::fs::rename(&self.tmp, &self.path).map_err(io)?;
        self.done = true;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        Ok(())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fail2ban::ini::Ini;

    #[test]
    fn what_a_file_name_says_never_becomes_a_key() {
        let jail = Ini::from_text(
            Path::new("/f/jail.d/50-tune\nenabled = false\nfailmode = \"open\"\n#.conf"),
            "[DEFAULT]\nmaxretry = 4\n[sshd]\nenabled = true\nmaxretry = 3\n",
        )
        .unwrap();
        let m = super::super::mapping::map(&jail, &Ini::default()).unwrap();
        let text = m.render("# header\nwith a line break\n");
        check_keys(&text, &m).unwrap();
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        assert!(parsed.get("enabled").is_none() && parsed.get("failmode").is_none(), "{text}");
        assert!(
            text.lines()
                .all(|l| l.is_empty() || l.starts_with('#') || l.starts_with('[') || l.contains(" = ")),
            "{text}"
        );
        // A drop-in that says more is caught.
        let forged = format!("{text}\n[default]\nenabled = false\n");
        assert!(check_keys(&forged, &m).is_err());
    }

    #[test]
    fn a_pending_drop_in_appears_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("50-fail2ban.toml");
        let p = Pending::prepare(&path, "[default]\nmaxretry = 3\n").unwrap();
        assert!(!path.exists());
        drop(p);
        assert!(!path.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the temp file goes too");
        Pending::prepare(&path, "[default]\nmaxretry = 3\n").unwrap().commit().unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o644);
        // A directory others may write in is refused before anything is made.
        let open = tempfile::tempdir().unwrap();
        std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(Pending::prepare(&open.path().join("x.toml"), "").is_err());
        assert_eq!(std::fs::read_dir(open.path()).unwrap().count(), 0);
    }
}
