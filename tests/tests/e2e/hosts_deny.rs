//! The hosts.deny back-end: golden rewrites, verdicts from Debian's real
//! `tcpdmatch` (it reads /etc/hosts.{allow,deny}, so it runs in a throwaway
//! namespace with our temp files bind-mounted over those), everything
//! outside the block kept byte-for-byte, and a crash before the rename
//! leaving the old file intact.

use banguard_e2e::fixture::ConfigFile;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use banguard::sync::hosts_deny::{BEGIN, END, write_atomic_with};
use banguard::sync::{Backend, FirewallEntry, HostsDeny, IpNet, SyncRequest, SystemRunner, rewrite_block};
use banguard_e2e::{Netns, require};

fn net(s: &str) -> IpNet {
    s.parse().expect("test network")
}

fn bans() -> Vec<FirewallEntry> {
    vec![
        FirewallEntry::until(net("198.51.100.7/32"), i64::MAX),
        FirewallEntry::permanent(net("192.0.2.0/24")),
        FirewallEntry::permanent(net("2001:db8::2/128")),
        FirewallEntry::permanent(net("2001:db8:1::/64")),
    ]
}

const BLOCK: &str = "\
# BEGIN banguard (managed by banguardctl sync; do not edit)
ALL: 192.0.2.0/255.255.255.0
ALL: 198.51.100.7
ALL: [2001:db8::2]
ALL: [2001:db8:1::]/64
# END banguard
";

/// The administrator's own file, with odd spacing, CRLF and no final
/// newline: all of it must survive.
const ADMIN_HEAD: &str =
    "# /etc/hosts.deny: list of hosts that are _not_ allowed\n#\n\nvsftpd:  203.0.113.50\t# old attacker\r\n";
const ADMIN_TAIL: &str = "\n# trailer without newline";

#[test]
fn golden_rewrites() {
    let b = bans();
    // No block yet: appended; a missing final newline gets one first.
    assert_eq!(rewrite_block("", &b).unwrap(), BLOCK);
    assert_eq!(rewrite_block(ADMIN_HEAD, &b).unwrap(), format!("{ADMIN_HEAD}{BLOCK}"));
    assert_eq!(rewrite_block("sshd: ALL", &b).unwrap(), format!("sshd: ALL\n{BLOCK}"));
    // Nothing to add and no block: untouched.
    assert_eq!(rewrite_block(ADMIN_HEAD, &[]).unwrap(), ADMIN_HEAD);
    // A block at the start, in the middle, at the end, at the end without
    // final newline: only the block changes.
    let stale = format!("{BEGIN}\nALL: 203.0.113.1\nALL: garbage the parser ignores\n{END}\n");
    for (head, tail) in [("", ADMIN_TAIL), (ADMIN_HEAD, ADMIN_TAIL), (ADMIN_HEAD, "")] {
        let got = rewrite_block(&format!("{head}{stale}{tail}"), &b).unwrap();
        assert_eq!(got, format!("{head}{BLOCK}{tail}"));
    }
    let got = rewrite_block(&format!("{ADMIN_HEAD}{}", stale.trim_end()), &b).unwrap();
    assert_eq!(got, format!("{ADMIN_HEAD}{}", BLOCK.trim_end()));
    // Idempotent.
    let once = rewrite_block(&format!("{ADMIN_HEAD}{ADMIN_TAIL}"), &b).unwrap();
    assert_eq!(rewrite_block(&once, &b).unwrap(), once);
    // Unban everything: an empty block stays in place.
    assert_eq!(rewrite_block(&once, &[]).unwrap(), format!("{ADMIN_HEAD}{ADMIN_TAIL}\n{BEGIN}\n{END}\n"));
}

#[test]
fn broken_markers_are_refused_and_the_file_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hosts.deny");
    let cases = [
        (format!("{ADMIN_HEAD}{BEGIN}\nALL: 1.2.3.4\n"), 5, "no `# END banguard`"),
        (
            format!("{ADMIN_HEAD}{BLOCK}{BLOCK}"),
            11,
            "second `# BEGIN banguard` marker (the first is on line 5)",
        ),
        (format!("{END}\n{BLOCK}"), 1, "without a `# BEGIN banguard`"),
        (format!("{BEGIN}\n{END}\n{END}\n"), 3, "second `# END banguard`"),
    ];
    for (text, line, needle) in cases {
        let e = rewrite_block(&text, &bans()).unwrap_err();
        assert_eq!(e.line, line, "{e}");
        assert!(e.message.contains(needle), "{e}");
        fs::write(&path, &text).unwrap();
        let err = HostsDeny::new(&path)
            .sync(&SyncRequest::new(&bans(), 0), &SystemRunner::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains(&path.display().to_string()) && err.contains(&format!("line {line}:")), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), text, "file changed despite the error");
    }
}

/// tcpdmatch's verdict for `daemon` and `client` with `dir`'s hosts.allow
/// and hosts.deny in place of /etc's. Bind-mounted anew on every call:
/// an atomic rewrite replaces the inode an older mount points at (and a
/// mount on top of a deleted file fails, so the old ones go first).
fn verdict(ns: &Netns, dir: &Path, daemon: &str, client: &str) -> &'static str {
    for name in ["hosts.allow", "hosts.deny"] {
        let target = Path::new("/etc").join(name);
        for _ in 0..20 {
            if !ns.run([Path::new("umount"), &target]).status.success() {
                break;
            }
        }
        ns.bind_mount(&dir.join(name), &target);
    }
    let out = ns.run(["tcpdmatch", daemon, client]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("warning") && !err.contains("error"), "tcpdmatch complains: {err}\n{text}");
    match text.lines().find_map(|l| l.strip_prefix("access:")).map(str::trim) {
        Some("denied") => "denied",
        Some("granted") => "granted",
        _ => panic!("tcpdmatch {daemon} {client}: unexpected output:\n{text}\n{err}"),
    }
}

#[test]
fn tcpdmatch_denies_banned_and_grants_others() {
    if !require(
        "tcpdmatch_denies_banned_and_grants_others",
        true,
        &["unshare", "nsenter", "mount", "tcpdmatch"],
    ) {
        return;
    }
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hosts.deny");
    fs::write(dir.path().join("hosts.allow"), "").unwrap();
    fs::write(&path, format!("{ADMIN_HEAD}{ADMIN_TAIL}")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(&path, Some(1234), Some(5678)).unwrap();
    let b = HostsDeny::new(&path);
    let r = SystemRunner::new();

    let rep = b.sync(&SyncRequest::new(&bans(), 0), &r).unwrap();
    assert_eq!((rep.added, rep.removed, rep.unchanged), (4, 0, 0));
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(text, format!("{ADMIN_HEAD}{ADMIN_TAIL}\n{BLOCK}"));
    let meta = fs::metadata(&path).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.uid(), meta.gid()), (0o640, 1234, 5678));

    for (client, want) in [
        ("198.51.100.7", "denied"),
        ("198.51.100.8", "granted"),
        ("192.0.2.77", "denied"),
        ("192.0.3.1", "granted"),
        ("2001:db8::2", "denied"),
        ("2001:db8::3", "granted"),
        ("2001:db8:1::5", "denied"),
        ("2001:db8:2::5", "granted"),
    ] {
        assert_eq!(verdict(&ns, dir.path(), "sshd", client), want, "sshd from {client}");
    }
    // The administrator's own rule still works.
    assert_eq!(verdict(&ns, dir.path(), "vsftpd", "203.0.113.50"), "denied");
    assert_eq!(verdict(&ns, dir.path(), "sshd", "203.0.113.50"), "granted");

    // No change: not rewritten (same inode, same mtime).
    let before = fs::metadata(&path).unwrap();
    let rep = b.sync(&SyncRequest::new(&bans(), 0), &r).unwrap();
    assert!(!rep.changed() && rep.unchanged == 4, "{rep:?}");
    let after = fs::metadata(&path).unwrap();
    assert_eq!(
        (before.ino(), before.mtime(), before.mtime_nsec()),
        (after.ino(), after.mtime(), after.mtime_nsec())
    );

    // Unban one, and an expired entry is dropped too.
    let mut less = bans()[1..].to_vec();
    less.push(FirewallEntry::until(net("203.0.113.9/32"), 100));
    let rep = b.sync(&SyncRequest::new(&less, 100), &r).unwrap();
    assert_eq!((rep.added, rep.removed, rep.unchanged), (0, 1, 3), "{rep:?}");
    assert_eq!(verdict(&ns, dir.path(), "sshd", "198.51.100.7"), "granted");
    assert_eq!(verdict(&ns, dir.path(), "sshd", "192.0.2.77"), "denied");
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.starts_with(&format!("{ADMIN_HEAD}{ADMIN_TAIL}\n{BEGIN}\n")), "{text}");
}

#[test]
fn crash_before_rename_keeps_the_old_file_valid() {
    if !require(
        "crash_before_rename_keeps_the_old_file_valid",
        true,
        &["unshare", "nsenter", "mount", "tcpdmatch"],
    ) {
        return;
    }
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hosts.deny");
    fs::write(dir.path().join("hosts.allow"), "").unwrap();
    let old = format!("{ADMIN_HEAD}{BLOCK}");
    fs::write(&path, &old).unwrap();

    let new = rewrite_block(&old, &[]).unwrap();
    let mut temp_seen = String::new();
    let err = write_atomic_with(&path, new.as_bytes(), &mut |tmp| {
        // The new content is complete on disk; then the "crash".
        temp_seen = fs::read_to_string(tmp)?;
        Err(io::Error::other("simulated crash before rename"))
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("simulated crash") && err.contains(&path.display().to_string()), "{err}");
    assert_eq!(temp_seen, new);
    assert_eq!(fs::read_to_string(&path).unwrap(), old, "original changed");
    let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "temp file left behind: {names:?}");
    assert_eq!(verdict(&ns, dir.path(), "sshd", "198.51.100.7"), "denied");
    assert_eq!(verdict(&ns, dir.path(), "sshd", "2001:db8:1::9"), "denied");
}

/// /etc/hosts.deny as a symlink (configuration management does that):
/// the target is rewritten, the link stays.
#[test]
fn symlink_is_followed_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("real-hosts.deny");
    let link = dir.path().join("hosts.deny");
    fs::write(&target, ADMIN_HEAD).unwrap();
    std::os::unix::fs::symlink(&target, &link).unwrap();
    HostsDeny::new(&link).sync(&SyncRequest::new(&bans(), 0), &SystemRunner::new()).unwrap();
    assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(fs::read_to_string(&target).unwrap(), format!("{ADMIN_HEAD}{BLOCK}"));
}

/// A missing file is created (0644) when there is something to deny, and
/// not created when there is not.
#[test]
fn missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hosts.deny");
    let b = HostsDeny::new(&path);
    let rep = b.sync(&SyncRequest::new(&[], 0), &SystemRunner::new()).unwrap();
    assert!(!rep.changed() && !path.exists());
    b.sync(&SyncRequest::new(&bans(), 0), &SystemRunner::new()).unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), BLOCK);
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o644);
}

/// hosts.deny agrees with PAM: an address in ignoreip inside an aggregated
/// ban (a /24 and a /64) is granted by tcpdmatch, its neighbours denied.
#[test]
fn tcpdmatch_grants_ignored_hosts_inside_a_ban() {
    if !require(
        "tcpdmatch_grants_ignored_hosts_inside_a_ban",
        true,
        &["unshare", "nsenter", "mount", "tcpdmatch"],
    ) {
        return;
    }
    use banguard::policy::{SystemClock, firewall_entries};
    use banguard::store::Access;
    use banguard::{Banguard, Config, Request};
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("banguard.toml");
    ConfigFile::under(dir.path())
        .with(
            "maxretry = 1\nipv4_prefix = 24\n\
             ignoreip = [\"127.0.0.0/8\", \"::1\", \"192.0.2.10\", \"2001:db8:1:2::10\"]\n\
             [recidive]\nenabled = false\n[sync]\nscope = \"all\"",
        )
        .write(&config_path);
    let config = Config::load(&config_path).unwrap();
    let mut g =
        Banguard::open_with(config.clone(), Access::ReadWrite, std::sync::Arc::new(SystemClock)).unwrap();
    for rhost in ["192.0.2.11", "2001:db8:1:2::1"] {
        g.record_failure(&Request { service: "sshd", rhost: Some(rhost), hint: None, user: None }).unwrap();
    }
    let entries = firewall_entries(&config, &g.bans_to_push(banguard::config::SyncScope::All).unwrap(), &[]);
    fs::write(dir.path().join("hosts.allow"), "").unwrap();
    fs::write(dir.path().join("hosts.deny"), "").unwrap();
    HostsDeny::new(dir.path().join("hosts.deny"))
        .sync(&SyncRequest::new(&entries, 0), &SystemRunner::new())
        .unwrap();
    for (client, want) in [
        ("192.0.2.10", "granted"),
        ("192.0.2.11", "denied"),
        ("192.0.2.200", "denied"),
        ("2001:db8:1:2::10", "granted"),
        ("2001:db8:1:2::11", "denied"),
    ] {
        assert_eq!(verdict(&ns, dir.path(), "sshd", client), want, "{client}");
    }
}
