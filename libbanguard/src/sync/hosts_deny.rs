//! hosts.deny back-end: one marked block in `/etc/hosts.deny`, rewritten
//! atomically; every byte outside the block is kept.
//!
//! ```text
//! # BEGIN banguard (managed by banguardctl sync; do not edit)
//! ALL: 198.51.100.7
//! ALL: 192.0.2.0/255.255.255.0
//! ALL: [2001:db8::2]
//! ALL: [2001:db8::]/64
//! # END banguard
//! ```
//!
//! Patterns follow hosts_access(5): an IPv4 address as is, an IPv4 network
//! as `net/mask` (the portable form; `/mm` is a Debian addition), IPv6 in
//! brackets with an optional `/prefixlen`. A `/32` must not be written as
//! `/255.255.255.255`, which hosts_access(5) calls invalid.
//!
//! tcp_wrappers only protects daemons linked with libwrap (sshd dropped it
//! in 2014); it scans the file linearly on every connection.

use std::fmt::{self, Write as _};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::net::IpAddr;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ipnet::{IpNet, Ipv4Net};

use super::{
    Backend, BackendKind, Expiry, FirewallEntry, Runner, Step, SyncReport, SyncRequest, diff, normalize,
    sort_dedup,
};
use crate::error::{Error, Result};

/// The first line of our block.
pub const BEGIN: &str = "# BEGIN banguard (managed by banguardctl sync; do not edit)";
/// The last line of our block.
pub const END: &str = "# END banguard";
/// Where tcp_wrappers reads its deny list.
pub const DEFAULT_PATH: &str = "/etc/hosts.deny";

/// Lines starting with these are our markers, even if edited after them.
const BEGIN_PREFIX: &str = "# BEGIN banguard";
const END_PREFIX: &str = "# END banguard";

/// The hosts.deny back-end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsDeny {
    path: PathBuf,
}

impl Default for HostsDeny {
    fn default() -> Self {
        HostsDeny { path: PathBuf::from(DEFAULT_PATH) }
    }
}

impl HostsDeny {
    /// The back-end writing `path` instead of `/etc/hosts.deny`.
    pub fn new(path: impl Into<PathBuf>) -> HostsDeny {
        HostsDeny { path: path.into() }
    }

    /// The file this back-end writes.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Why a file's markers cannot be trusted. Nothing is written then: the
/// operator fixes the file by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockError {
    /// 1-based line of the offending marker.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for BlockError {}

/// Where our block is: byte range of the BEGIN..=END lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Block {
    start: usize,
    end: usize,
    /// The END line is the last line and has no newline.
    unterminated_last_line: bool,
}

fn find_block(text: &str) -> std::result::Result<Option<Block>, BlockError> {
    let mut begin: Option<(usize, usize)> = None; // (line, byte offset)
    let mut end: Option<(usize, usize, bool)> = None; // (line, end offset, had newline)
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let n = i + 1;
        let content = line.trim_end();
        if content.starts_with(BEGIN_PREFIX) {
            if let Some((first, _)) = begin {
                return Err(BlockError {
                    line: n,
                    message: format!("second `{BEGIN_PREFIX}` marker (the first is on line {first})"),
                });
            }
            begin = Some((n, offset));
        } else if content.starts_with(END_PREFIX) {
            if let Some((first, _, _)) = end {
                return Err(BlockError {
                    line: n,
                    message: format!("second `{END_PREFIX}` marker (the first is on line {first})"),
                });
            }
            match begin {
                None => {
                    return Err(BlockError {
                        line: n,
                        message: format!("`{END_PREFIX}` without a `{BEGIN_PREFIX}` before it"),
                    });
                }
                Some(_) => end = Some((n, offset + line.len(), line.ends_with('\n'))),
            }
        }
        offset += line.len();
    }
    match (begin, end) {
        (None, _) => Ok(None),
        (Some((n, _)), None) => {
            Err(BlockError { line: n, message: format!("`{BEGIN_PREFIX}` has no `{END_PREFIX}` after it") })
        }
        (Some((_, start)), Some((_, end, newline))) => {
            Ok(Some(Block { start, end, unterminated_last_line: !newline }))
        }
    }
}

/// Our block for `entries`, BEGIN to END, each line ending in `\n`.
/// Entries are sorted and deduplicated; expiry is not looked at.
pub fn render_block(entries: &[FirewallEntry]) -> String {
    // Clear host bits before deduplicating: 10.0.0.1/8 and 10.0.0.2/8 are
    // one line (found by tests/proptests.rs).
    let mut v: Vec<FirewallEntry> =
        entries.iter().map(|e| FirewallEntry { net: e.net.trunc(), expires_at: e.expires_at }).collect();
    sort_dedup(&mut v);
    let mut s = String::with_capacity(64 + 24 * v.len());
    s.push_str(BEGIN);
    s.push('\n');
    for e in &v {
        let _ = writeln!(s, "ALL: {}", pattern(&e.net));
    }
    s.push_str(END);
    s.push('\n');
    s
}

/// The hosts_access(5) pattern for one network.
fn pattern(net: &IpNet) -> String {
    match net {
        IpNet::V4(n) if n.prefix_len() == 32 => n.addr().to_string(),
        IpNet::V4(n) => format!("{}/{}", n.network(), n.netmask()),
        IpNet::V6(n) if n.prefix_len() == 128 => format!("[{}]", n.addr()),
        IpNet::V6(n) => format!("[{}]/{}", n.network(), n.prefix_len()),
    }
}

/// `original` with our block holding exactly `entries`: replaced where it
/// is, or appended (after a newline if the last line lacks one). Without a
/// block and without entries, `original` is returned unchanged. Refuses
/// duplicated, unmatched or reversed markers rather than guess.
pub fn rewrite_block(original: &str, entries: &[FirewallEntry]) -> std::result::Result<String, BlockError> {
    let block = find_block(original)?;
    let mut rendered = render_block(entries);
    let Some(b) = block else {
        if entries.is_empty() {
            return Ok(original.to_string());
        }
        let mut out = String::with_capacity(original.len() + rendered.len() + 1);
        out.push_str(original);
        if !original.is_empty() && !original.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&rendered);
        return Ok(out);
    };
    if b.unterminated_last_line {
        // Keep the file's missing final newline: no change, no rewrite.
        rendered.pop();
    }
    let mut out = String::with_capacity(original.len() - (b.end - b.start) + rendered.len());
    out.push_str(&original[..b.start]);
    out.push_str(&rendered);
    out.push_str(&original[b.end..]);
    Ok(out)
}

/// The networks in our block (`None` without a block); lines we cannot
/// read are skipped (the next rewrite drops them).
pub fn block_entries(text: &str) -> std::result::Result<Option<Vec<IpNet>>, BlockError> {
    let Some(b) = find_block(text)? else {
        return Ok(None);
    };
    let nets = text[b.start..b.end]
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ALL:"))
        .filter_map(|p| parse_pattern(p.trim()))
        .collect();
    Ok(Some(nets))
}

fn parse_pattern(p: &str) -> Option<IpNet> {
    if let Some(rest) = p.strip_prefix('[') {
        let (addr, len) = rest.split_once(']')?;
        let addr: IpAddr = addr.parse().ok()?;
        return match len.strip_prefix('/') {
            Some(l) => IpNet::new(addr, l.parse().ok()?).ok(),
            None if len.is_empty() => Some(IpNet::from(addr)),
            None => None,
        };
    }
    match p.split_once('/') {
        Some((net, mask)) => {
            let net = net.parse().ok()?;
            match mask.parse::<u8>() {
                Ok(len) => Ipv4Net::new(net, len).ok().map(IpNet::V4),
                Err(_) => Ipv4Net::with_netmask(net, mask.parse().ok()?).ok().map(IpNet::V4),
            }
        }
        None => p.parse::<IpAddr>().ok().map(IpNet::from),
    }
}

impl Backend for HostsDeny {
    fn kind(&self) -> BackendKind {
        BackendKind::HostsDeny
    }

    /// Reads the file every time (cheap, and an edit by hand is seen), so
    /// `previous` is not needed; the runner is not used.
    fn sync(&self, req: &SyncRequest<'_>, _runner: &dyn Runner) -> Result<SyncReport> {
        let desired = normalize(req.desired, req.now)?;
        // Write through a symlink to its target rather than replace it.
        let path = fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone());
        let mut report = SyncReport::new(BackendKind::HostsDeny, req.dry_run);
        report.applied = desired.clone();
        // An edit by hand between our read and our rename would be lost:
        // notice it and start over (a few times at most).
        for _ in 0..3 {
            let (original, stamp) = read(&path)?;
            let bad = |e: BlockError| Error::InvalidInput {
                what: "managed block in",
                value: path.display().to_string(),
                message: format!("{e}; fix the file by hand (nothing was changed)"),
            };
            let block = block_entries(&original).map_err(bad)?;
            let had_block = block.is_some();
            let mut current: Vec<FirewallEntry> =
                block.unwrap_or_default().into_iter().map(|n| FirewallEntry::permanent(n.trunc())).collect();
            sort_dedup(&mut current);
            let new = rewrite_block(&original, &desired).map_err(bad)?;
            let d = diff(&current, &desired, Expiry::Ignore);
            report.added = d.add.len();
            report.removed = d.remove.len();
            report.unchanged = d.unchanged;
            if new == original {
                return Ok(report);
            }
            report.repaired = !had_block;
            if !req.dry_run {
                let mut unchanged_since_read = |_: &Path| {
                    if read_stamp(&path)? == stamp {
                        Ok(())
                    } else {
                        Err(io::Error::new(io::ErrorKind::Interrupted, "changed while being rewritten"))
                    }
                };
                match write_atomic_with(&path, new.as_bytes(), &mut unchanged_since_read) {
                    Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::Interrupted => continue,
                    other => other?,
                }
            }
            report.steps.push(Step::WriteFile { path, contents: new });
            return Ok(report);
        }
        Err(Error::Io {
            path,
            source: io::Error::new(
                io::ErrorKind::Interrupted,
                "kept changing while banguard rewrote it; try again",
            ),
        })
    }
}

/// Identity and version of a file: (device, inode, size, mtime ns).
type Stamp = Option<(u64, u64, u64, i64, i64)>;

fn read_stamp(path: &Path) -> io::Result<Stamp> {
    match fs::metadata(path) {
        Ok(m) => Ok(Some((m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn read(path: &Path) -> Result<(String, Stamp)> {
    let io_err = |source| Error::Io { path: path.to_path_buf(), source };
    let stamp = read_stamp(path).map_err(io_err)?;
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_err(e)),
    };
    let text = String::from_utf8(bytes).map_err(|e| {
        io_err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not UTF-8 (byte {}); refusing to rewrite it", e.utf8_error().valid_up_to()),
        ))
    })?;
    Ok((text, stamp))
}

/// Replaces `path` with `contents` so that a reader (or a crash) sees the
/// old file or the new one, never a mix: a temp file in the same directory,
/// the old file's mode and owner, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    write_atomic_with(path, contents, &mut |_| Ok(()))
}

/// [`write_atomic`] calling `before_rename(temp_path)` when the temp file is
/// complete and synced; an error from it aborts the write (the temp file
/// is removed, `path` untouched). For crash tests and last-moment checks.
pub fn write_atomic_with(
    path: &Path,
    contents: &[u8],
    before_rename: &mut dyn FnMut(&Path) -> io::Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Some(name) = path.file_name() else {
        return Err(Error::Io {
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "not a file path"),
        });
    };
    let old = match fs::metadata(path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::Io { path: path.to_path_buf(), source: e }),
    };
    let tmp = dir.join(format!(".{}.banguard-{}.tmp", name.to_string_lossy(), std::process::id()));
    let result = (|| -> io::Result<()> {
        let mut f = match create_new(&tmp) {
            // Left by a crashed run that had our pid.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                fs::remove_file(&tmp)?;
                create_new(&tmp)?
            }
            other => other?,
        };
        f.write_all(contents)?;
        match &old {
            Some(m) => {
                let mine = f.metadata()?;
                if (mine.uid(), mine.gid()) != (m.uid(), m.gid()) {
                    std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()))?;
                }
                f.set_permissions(fs::Permissions::from_mode(m.permissions().mode() & 0o7777))?;
            }
            None => f.set_permissions(fs::Permissions::from_mode(0o644))?,
        }
        f.sync_all()?;
        drop(f);
        before_rename(&tmp)?;
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        File::open(dir)?.sync_all()
    })();
    result.map_err(|source| {
        let _ = fs::remove_file(&tmp);
        Error::Io { path: path.to_path_buf(), source }
    })
}

fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn sample() -> Vec<FirewallEntry> {
        vec![
            FirewallEntry::until(n("198.51.100.7/32"), 5),
            FirewallEntry::permanent(n("2001:db8::/64")),
            FirewallEntry::permanent(n("192.0.2.0/24")),
            FirewallEntry::permanent(n("2001:db8::2/128")),
            FirewallEntry::permanent(n("10.128.0.0/9")),
        ]
    }

    const BLOCK: &str = "\
# BEGIN banguard (managed by banguardctl sync; do not edit)
ALL: 10.128.0.0/255.128.0.0
ALL: 192.0.2.0/255.255.255.0
ALL: 198.51.100.7
ALL: [2001:db8::]/64
ALL: [2001:db8::2]
# END banguard
";

    #[test]
    fn golden_block() {
        assert_eq!(render_block(&sample()), BLOCK);
        assert_eq!(render_block(&[]), format!("{BEGIN}\n{END}\n"));
    }

    #[test]
    fn block_round_trips_through_the_parser() {
        let mut got = block_entries(BLOCK).unwrap().unwrap();
        got.sort();
        let mut want: Vec<IpNet> = sample().iter().map(|e| e.net).collect();
        want.sort();
        assert_eq!(got, want);
        assert_eq!(parse_pattern("192.0.2.0/24"), Some(n("192.0.2.0/24")));
        assert_eq!(parse_pattern("[2001:db8::2]/128"), Some(n("2001:db8::2/128")));
        assert_eq!(parse_pattern("[2001:db8::2]x"), None);
        assert_eq!(parse_pattern("host.example"), None);
    }

    #[test]
    fn rewrite_appends_replaces_and_keeps_the_rest() {
        let e = sample();
        assert_eq!(rewrite_block("", &e).unwrap(), BLOCK);
        assert_eq!(rewrite_block("", &[]).unwrap(), "");
        assert_eq!(rewrite_block("sshd: ALL", &[]).unwrap(), "sshd: ALL");
        assert_eq!(rewrite_block("sshd: ALL", &e).unwrap(), format!("sshd: ALL\n{BLOCK}"));
        let old = format!("{BEGIN}\nALL: 203.0.113.9\n{END}\n");
        for (before, after) in [("", ""), ("# head\n", ""), ("", "vsftpd: 1.2.3.4\n"), ("a\r\n\n", "\nz")] {
            let original = format!("{before}{old}{after}");
            assert_eq!(rewrite_block(&original, &e).unwrap(), format!("{before}{BLOCK}{after}"));
        }
        // END is the last line, without newline: stays so; same content is a no-op.
        let original = format!("x\n{}", BLOCK.trim_end_matches('\n'));
        assert_eq!(rewrite_block(&original, &e).unwrap(), original);
        // An emptied block stays, empty.
        assert_eq!(rewrite_block(&format!("x\n{BLOCK}y\n"), &[]).unwrap(), format!("x\n{BEGIN}\n{END}\ny\n"));
    }

    #[test]
    fn broken_markers_are_refused_with_the_line() {
        let cases = [
            (format!("a\n{BEGIN}\nALL: 1.2.3.4\n"), 2, "has no"),
            (format!("a\nb\n{END}\n{BEGIN}\n{END}\n"), 3, "without"),
            (format!("{BEGIN}\n{END}\n{BEGIN}\n{END}\n"), 3, "second `# BEGIN"),
            (format!("{BEGIN}\n{END}\n{END}\n"), 3, "second `# END"),
            (format!("{BEGIN}\n# BEGIN banguard (edited)\n{END}\n"), 2, "first is on line 1"),
        ];
        for (text, line, needle) in cases {
            let e = rewrite_block(&text, &sample()).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.to_string().contains(needle), "{e}");
        }
    }

    #[test]
    fn sync_writes_only_on_change_and_names_the_file_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts.deny");
        fs::write(&path, "# keep me\nsshd: 203.0.113.1\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let b = HostsDeny::new(&path);
        let e = sample();
        let noop =
            |_: &str, _: &[String], _: Option<&[u8]>| -> Result<std::process::Output> { unreachable!() };
        let rep = b.sync(&SyncRequest::new(&e, 0), &noop).unwrap();
        assert_eq!((rep.added, rep.removed, rep.unchanged), (5, 0, 0));
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("# keep me\nsshd: 203.0.113.1\n{BLOCK}"));
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
        let ino = fs::metadata(&path).unwrap().ino();
        let rep = b.sync(&SyncRequest::new(&e, 0), &noop).unwrap();
        assert!(!rep.changed());
        assert_eq!(rep.unchanged, 5);
        assert_eq!(fs::metadata(&path).unwrap().ino(), ino, "rewritten without a change");
        // Dry run: the plan, no write.
        let rep = b.sync(&SyncRequest::new(&e[..1], 0).dry_run(true), &noop).unwrap();
        assert_eq!(rep.removed, 4);
        assert!(matches!(&rep.steps[..], [Step::WriteFile { .. }]));
        assert_eq!(fs::metadata(&path).unwrap().ino(), ino);
        // Broken markers: error naming file and line, file untouched.
        fs::write(&path, format!("{BEGIN}\n")).unwrap();
        let err = b.sync(&SyncRequest::new(&e, 0), &noop).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()) && err.contains("line 1"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("{BEGIN}\n"));
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }

    #[test]
    fn failed_write_leaves_the_original() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts.deny");
        fs::write(&path, "old\n").unwrap();
        let mut seen = None;
        let err = write_atomic_with(&path, b"new\n", &mut |tmp| {
            seen = Some(fs::read(tmp)?);
            Err(io::Error::other("simulated crash"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("simulated crash"));
        assert_eq!(seen.as_deref(), Some(&b"new\n"[..]));
        assert_eq!(fs::read(&path).unwrap(), b"old\n");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        write_atomic(&path, b"new\n").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new\n");
    }
}
