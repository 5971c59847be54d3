//! `banguardctl import fail2ban` on set-ups a careless admin or a local
//! user who controls part of /etc/fail2ban or the output directory would
//! leave: what a file says never becomes something else in the drop-in,
//! nothing outside fail2ban's directory is read, files are written as
//! root writes them, the drop-in and the bans land together, nothing
//! hangs, and the bans carried over are those fail2ban's own restore
//! would bring back (checked against a real fail2ban-server).

use banguard_e2e::fail2ban::Fail2ban;
use banguard_e2e::fixture::ConfigFile;
use banguard_e2e::{Netns, artifacts, require, wait_for};
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display().to_string();
        ConfigFile::under(dir.path())
            .with(&format!(
                "ignoreip = [\"127.0.0.0/8\", \"::1\", \"10.0.0.0/8\"]\n\
                 [sync]\nlock_file = \"{d}/run/sync.lock\"\nhosts_deny = \"{d}/hosts.deny\"\nbackends = [\"hosts.deny\"]"
            ))
            .write(&dir.path().join("banguard.toml"));
        let from = dir.path().join("fail2ban");
        fs::create_dir(&from).unwrap();
        Env { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn from(&self) -> PathBuf {
        self.path("fail2ban")
    }

    fn write(&self, name: &str, text: &str) {
        let p = self.from().join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    fn dropin(&self) -> PathBuf {
        self.path("banguard.d/50-fail2ban.toml")
    }

    /// `banguardctl --config ... ARGS`, killed after 60 s (a hang is a
    /// failure, not a stuck test).
    fn run(&self, args: &[&str]) -> Output {
        let out = Command::new("timeout")
            .arg("60")
            .arg(&artifacts().banguardctl)
            .arg("--config")
            .arg(self.path("banguard.toml"))
            .args(args)
            .output()
            .expect("run banguardctl");
        assert_ne!(out.status.code(), Some(124), "{args:?} hung:\n{}", show(&out));
        out
    }

    fn import(&self, extra: &[&str]) -> Output {
        let from = self.from().display().to_string();
        let mut args = vec!["import", "fail2ban", "--from", from.as_str()];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    fn ok(&self, out: Output) -> String {
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn bans(&self) -> Vec<Value> {
        let out = self.run(&["--json", "list", "--all"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        v["bans"].as_array().cloned().unwrap_or_default()
    }
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn now() -> i64 {
    banguard_e2e::unix_now()
}

/// A fail2ban database of schema 4 (`bips`), made by fail2ban's own code
/// (Debian's python3 module), with these rows: (ip, jail, timeofban,
/// bantime as SQL text so REAL can be written, bancount).
fn database(path: &Path, rows: &[(&str, &str, i64, &str, &str)]) {
    let made = Command::new("/usr/bin/python3")
        .args(["-c", "import sys; from fail2ban.server.database import Fail2BanDb; Fail2BanDb(sys.argv[1])"])
        .arg(path)
        .output()
        .expect("python3");
    assert!(made.status.success(), "fail2ban's Fail2BanDb: {}", String::from_utf8_lossy(&made.stderr));
    let c = rusqlite::Connection::open(path).unwrap();
    for (ip, jail, at, len, count) in rows {
        c.execute("INSERT OR IGNORE INTO jails(name, enabled) VALUES (?1, 1)", [jail]).unwrap();
        c.execute_batch(&format!(
            "INSERT INTO bips VALUES ('{ip}', '{jail}', {at}, {len}, {count}, '{{\"failures\": 3}}')"
        ))
        .unwrap();
    }
}

fn ready(test: &str) -> bool {
    require(test, true, &["timeout", "mkfifo"])
}

/// A file name in jail.d with line breaks, and values with escapes: the
/// drop-in holds the keys the mapping set and no other (banguard stays on).
#[test]
fn what_a_fail2ban_file_says_never_becomes_something_else_in_the_drop_in() {
    if !ready("what_a_fail2ban_file_says_never_becomes_something_else_in_the_drop_in") {
        return;
    }
    let env = Env::new();
    env.write("jail.conf", "[DEFAULT]\nmaxretry = 4\n[sshd]\nenabled = true\n");
    env.write("jail.d/50-tune\nenabled = false\nfailmode = \"open\"\n#.conf", "[sshd]\nmaxretry = 3\n");
    env.write("jail.d/60-x\"].conf", "[DEFAULT]\nbantime = 1h\n");
    let out = env.ok(env.import(&["--config-only"]));
    let dropin = fs::read_to_string(env.dropin()).unwrap();
    let parsed: toml::Table = toml::from_str(&dropin).unwrap();
    assert!(
        parsed["default"].get("enabled").is_none() && parsed["default"].get("failmode").is_none(),
        "{dropin}"
    );
    for line in dropin.lines() {
        assert!(
            line.is_empty() || line.starts_with('#') || line.starts_with('[') || line.contains(" = "),
            "a line that is neither comment, table nor key: {line:?}\n{dropin}"
        );
    }
    let check = env.run(&["--json", "check-config"]);
    let v: Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(v["config"]["default"]["enabled"], true, "{v:#}");
    assert_eq!(v["config"]["default"]["failmode"], "open", "the default, not a file name's");
    assert!(!out.contains('\u{1b}'), "{out:?}");
}

/// A value that includes a file outside fail2ban's directory (a root 0600
/// secret, /etc/shadow) is never read, written or printed; the report says
/// the include was not followed.
#[test]
fn nothing_outside_the_fail2ban_directory_is_read_or_shown() {
    if !ready("nothing_outside_the_fail2ban_directory_is_read_or_shown") {
        return;
    }
    let env = Env::new();
    let secret = env.path("secret.conf");
    fs::write(&secret, "[DEFAULT]\ndestemail = TOPSECRET-LINE\nignoreip = 198.51.100.66\n").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    env.write(
        "jail.conf",
        &format!(
            "[INCLUDES]\nbefore = {}\n        /etc/shadow\n[DEFAULT]\nmaxretry = 4\n[sshd]\nenabled = true\n\
             action = sendmail[dest=%(destemail)s]\n",
            secret.display()
        ),
    );
    let out = env.import(&["--config-only"]);
    let all = show(&out);
    assert!(!all.contains("TOPSECRET") && !all.contains("root:"), "{all}");
    assert!(all.contains("not read") || all.contains("unknown interpolation"), "{all}");
    if out.status.success() {
        let dropin = fs::read_to_string(env.dropin()).unwrap();
        assert!(!dropin.contains("TOPSECRET") && !dropin.contains("198.51.100.66"), "{dropin}");
        assert!(all.contains("outside"), "the report names the include not followed: {all}");
    }
    // Without the reference, the import goes through and says why.
    env.write(
        "jail.conf",
        &format!(
            "[INCLUDES]\nbefore = {}\n[DEFAULT]\nmaxretry = 4\n[sshd]\nenabled = true\n",
            secret.display()
        ),
    );
    let out = env.ok(env.import(&["--config-only", "--force"]));
    assert!(out.contains("not read") && out.contains("outside"), "{out}");
    assert!(!out.contains("TOPSECRET"), "{out}");
}

/// Include loops however spelled, a fan of includes, interpolation that
/// explodes, FIFOs and huge files: every run ends, with a clean error or a
/// drop-in.
#[test]
fn no_fail2ban_set_up_makes_it_hang_or_grow() {
    if !ready("no_fail2ban_set_up_makes_it_hang_or_grow") {
        return;
    }
    let env = Env::new();
    let base = "[DEFAULT]\nmaxretry = 4\n[sshd]\nenabled = true\n";
    // A loop respelled twice, and through a linked directory.
    env.write("sub/x.conf", "[DEFAULT]\nfindtime = 5m\n");
    std::os::unix::fs::symlink(env.from(), env.from().join("loop")).unwrap();
    env.write(
        "jail.conf",
        &format!("[INCLUDES]\nbefore = sub/../jail.conf\n         loop/jail.conf\n         loop/loop/loop/jail.conf\n{base}"),
    );
    let out = env.ok(env.import(&["--config-only", "--dry-run"]));
    assert!(out.contains("maxretry"), "{out}");
    // Forty files, each including the next two.
    for i in 0..40 {
        env.write(
            &format!("inc/f{i}.conf"),
            &format!(
                "[INCLUDES]\nbefore = f{}.conf\n        f{}.conf\n[DEFAULT]\nk{i} = {i}\n",
                i + 1,
                i + 2
            ),
        );
    }
    env.write("jail.conf", &format!("[INCLUDES]\nbefore = inc/f0.conf\n{base}"));
    env.ok(env.import(&["--config-only", "--dry-run"]));
    // Interpolation fan-out: 9 levels of 10 references each.
    let mut fan = String::from("[DEFAULT]\nv0 = x\n");
    for level in 1..=9 {
        fan.push_str(&format!("v{level} = {}\n", format!("%(v{})s", level - 1).repeat(10)));
    }
    env.write("jail.conf", &format!("{fan}ignoreip = %(v9)s\n[sshd]\nenabled = true\n"));
    let out = env.import(&["--config-only", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("jail.conf:") && (err.contains("interpolation") || err.contains("bytes")), "{err}");
    // A FIFO as jail.local, and as the database.
    env.write("jail.conf", base);
    assert!(Command::new("mkfifo").arg(env.from().join("jail.local")).status().unwrap().success());
    let fifo_db = env.path("f2b.fifo");
    assert!(Command::new("mkfifo").arg(&fifo_db).status().unwrap().success());
    let out = env.import(&["--dry-run", "--database", &fifo_db.display().to_string()]);
    let all = show(&out);
    assert!(all.contains("not a regular file"), "{all}");
    // A huge ignoreip: refused as larger than any fail2ban file.
    fs::remove_file(env.from().join("jail.local")).unwrap();
    let big: String =
        (0..200_000).map(|i| format!("10.{}.{}.{} ", i / 65536 % 256, i / 256 % 256, i % 256)).collect();
    env.write("jail.local", &format!("[DEFAULT]\nignoreip = {big}\n"));
    let out = env.import(&["--config-only", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("larger than any fail2ban file"), "{}", show(&out));
    // Just under the size limit: 60,000 entries, read in linear time.
    let many: String =
        (0..60_000).map(|i| format!("10.{}.{}.{} ", i / 65536 % 256, i / 256 % 256, i % 256)).collect();
    env.write("jail.local", &format!("[DEFAULT]\nignoreip = {many}\n"));
    env.ok(env.import(&["--config-only", "--dry-run"]));
}

/// The output goes where a drop-in belongs, written as root writes a
/// config; the drop-in and the bans land together or not at all.
#[test]
fn the_drop_in_is_written_safely_and_lands_with_the_bans() {
    if !ready("the_drop_in_is_written_safely_and_lands_with_the_bans") {
        return;
    }
    let env = Env::new();
    env.write("jail.conf", "[DEFAULT]\nmaxretry = 4\nbantime = 1h\n[sshd]\nenabled = true\n");
    let db = env.path("f2b.sqlite3");
    database(&db, &[("198.51.100.7", "sshd", now() - 60, "3600", "1")]);
    let d = db.display().to_string();
    // Another user's directory.
    let theirs = env.path("theirs");
    fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let out = env.import(&["--database", &d, "--output", &theirs.join("50-f2b.toml").display().to_string()]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("owned by uid 65534"), "{}", show(&out));
    assert_eq!(fs::read_dir(&theirs).unwrap().count(), 0, "nothing made there");
    assert!(env.bans().is_empty(), "no ban without its drop-in");
    // banguard.toml itself.
    let out = env.import(&[
        "--database",
        &d,
        "--output",
        &env.path("banguard.toml").display().to_string(),
        "--force",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("main config file"), "{}", show(&out));
    // The store cannot take the bans (a full file system): no drop-in.
    let full = env.path("db");
    let _ = fs::remove_dir_all(&full);
    fs::create_dir(&full).unwrap();
    let mounted = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o size=64k,mode=700 bg-full {full} && dd if=/dev/zero of={full}/filler bs=1k count=40 2>/dev/null; \
             exec timeout 60 {ctl} --config {cfg} import fail2ban --from {from} --database {d}",
            full = full.display(),
            ctl = artifacts().banguardctl.display(),
            cfg = env.path("banguard.toml").display(),
            from = env.from().display(),
        ))
        .output()
        .unwrap();
    assert_ne!(mounted.status.code(), Some(0), "the store is full: {}", show(&mounted));
    assert!(!env.dropin().exists(), "the drop-in landed without its bans:\n{}", show(&mounted));
    // Then it works, and the drop-in is root's, 0644.
    env.ok(env.import(&["--database", &d]));
    let meta = fs::metadata(env.dropin()).unwrap();
    assert_eq!((std::os::unix::fs::MetadataExt::uid(&meta), meta.permissions().mode() & 0o777), (0, 0o644));
    assert_eq!(env.bans().len(), 1);
}

/// fail2ban's parser, not a looser one: netmasks, hidden and unusable
/// files, durations it refuses, values shown cleaned and short; what the
/// drop-in takes away from banguard's own settings is said.
#[test]
fn it_reads_what_fail2ban_reads_and_says_what_it_changes() {
    if !ready("it_reads_what_fail2ban_reads_and_says_what_it_changes") {
        return;
    }
    let env = Env::new();
    env.write(
        "jail.conf",
        "[DEFAULT]\nignoreip = 127.0.0.1/8 192.168.1.0/255.255.255.0 2001:db8::/ffff:ffff::\n[sshd]\nenabled = true\n",
    );
    env.write("jail.d/.hidden.conf", "[DEFAULT]\nmaxretry = 1\n");
    std::os::unix::fs::symlink("/nonexistent", env.from().join("jail.d/dangling.conf")).unwrap();
    fs::create_dir(env.from().join("jail.local")).unwrap();
    let out = env.ok(env.import(&["--config-only", "--dry-run"]));
    assert!(out.contains("\"192.168.1.0/24\"") && out.contains("\"2001:db8::/32\""), "{out}");
    assert!(!out.contains("maxretry = 1"), "a hidden file is read: {out}");
    assert!(out.contains("dangling.conf") && out.contains("a link to nothing"), "{out}");
    assert!(out.contains("jail.local") && out.contains("a directory"), "{out}");
    assert!(out.contains("[default] ignoreip: removes 10.0.0.0/8"), "the override is said: {out}");
    fs::remove_dir(env.from().join("jail.local")).unwrap();
    for (text, why) in [
        ("[DEFAULT]\nbantime = 1 2 3\n[sshd]\nenabled = true\n", "side by side"),
        ("[DEFAULT]\nbantime.increment = true\nbantime.maxtime = -5\n[sshd]\nenabled = true\n", "positive"),
        ("[DEFAULT]\nbantime = \u{1b}[2J\u{1b}[31mred\n[sshd]\nenabled = true\n", "bantime"),
    ] {
        env.write("jail.local", text);
        let out = env.import(&["--config-only", "--dry-run"]);
        assert_eq!(out.status.code(), Some(2), "{}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why) && err.contains("jail.local:"), "{err}");
        assert!(!err.contains('\u{1b}'), "an escape reached the terminal: {err:?}");
    }
    // One long value does not pad every row of the report.
    let long = format!("host-{}", "x".repeat(10_000));
    env.write("jail.local", &format!("[DEFAULT]\nignoreip = 127.0.0.1/8 {long}\n[sshd]\nenabled = true\n"));
    let out = env.ok(env.import(&["--config-only", "--dry-run"]));
    assert!(
        out.lines().all(|l| l.chars().count() < 600),
        "a line of {} characters",
        out.lines().map(|l| l.len()).max().unwrap_or(0)
    );
}

/// Crafted counts are clamped, a lifted ban stays lifted when the import
/// runs again, config and bans can be carried alone, and a WAL database
/// gets no -wal/-shm from banguard.
#[test]
fn carried_bans_are_bounded_and_an_admins_unban_holds() {
    if !ready("carried_bans_are_bounded_and_an_admins_unban_holds") {
        return;
    }
    let env = Env::new();
    env.write("jail.conf", "[DEFAULT]\nmaxretry = 2\nbantime = 1h\n[sshd]\nenabled = true\n");
    let db = env.path("f2b.sqlite3");
    database(
        &db,
        &[
            ("198.51.100.7", "sshd", now() - 60, "3600", "4611686018427387904"),
            ("198.51.100.8", "sshd", now() - 60, "3600", "1"),
        ],
    );
    rusqlite::Connection::open(&db).unwrap().pragma_update(None, "journal_mode", "WAL").unwrap();
    let d = db.display().to_string();
    let out = env.ok(env.import(&["--bans-only", "--database", &d]));
    assert!(!env.dropin().exists(), "--bans-only writes no drop-in: {out}");
    assert!(!Path::new(&format!("{d}-wal")).exists() && !Path::new(&format!("{d}-shm")).exists());
    let bans = env.bans();
    let b7 = bans.iter().find(|b| b["host"] == "198.51.100.7").expect("carried");
    assert!(b7["carried_bans"].as_u64().unwrap() <= 64, "{b7:#}");
    // The host's next ban here has a sane length (its count saturates).
    let out = env.run(&["unban", "198.51.100.7", "--no-sync"]);
    assert!(out.status.success(), "{}", show(&out));
    let cfg = banguard::Config::load(&env.path("banguard.toml")).unwrap();
    let mut g = banguard::Banguard::open(cfg).unwrap();
    let req = banguard::Request { service: "sshd", rhost: Some("198.51.100.7"), hint: None, user: None };
    for _ in 0..g.config().policy("sshd").maxretry {
        g.record_failure(&req).expect("failures still count");
    }
    match g.peek(&req).unwrap() {
        banguard::Verdict::Refused { ban, .. } => {
            assert!(ban.expires.unwrap() - ban.created <= 7 * 86_400, "{ban:?}")
        }
        other => panic!("{other:?}"),
    }
    drop(g);
    // Run again: the lifted carried ban stays lifted.
    let out = env.ok(env.import(&["--bans-only", "--database", &d]));
    assert!(out.contains("stays lifted"), "{out}");
    let bans = env.bans();
    let active: Vec<&Value> =
        bans.iter().filter(|b| b["origin"] == "fail2ban" && b["lifted"].is_null()).collect();
    assert_eq!(active.len(), 1, "only 198.51.100.8's: {active:#?}");
    // --config-only: a drop-in, no database read.
    let out = env.ok(env.import(&["--config-only", "--database", "/nonexistent.sqlite3"]));
    assert!(env.dropin().exists() && out.contains("--config-only"), "{out}");
}

/// Against a real fail2ban-server restoring the same database: the bans
/// banguard carries over are exactly those fail2ban brings back, for the
/// same time (-1 rows capped at the jail's bantime, -5 not restored, long
/// rows capped, old rows skipped, a network, a REAL ban time, an
/// increasing jail's maxtime).
#[test]
fn what_is_carried_over_is_what_fail2ban_would_restore() {
    let tools = ["unshare", "nsenter", "fail2ban-server", "fail2ban-client", "timeout", "mkfifo"];
    if !require("what_is_carried_over_is_what_fail2ban_would_restore", true, &tools) {
        return;
    }
    let t = now();
    let year10 = "315360000";
    let rows: Vec<(&str, &str, i64, String, &str)> = vec![
        ("198.51.100.1", "sshd", t - 60, "-1".into(), "1"),
        ("198.51.100.2", "sshd", t - 60, "-5".into(), "1"),
        ("198.51.100.3", "sshd", t - 60, year10.into(), "1"),
        ("198.51.100.4", "sshd", t - 3600, year10.into(), "1"),
        ("198.51.100.5", "sshd", t - 700, "300".into(), "1"),
        ("203.0.113.0/24", "sshd", t - 60, "600".into(), "1"),
        ("198.51.100.20", "vsftpd", t - 60, "1294.75".into(), "2"),
        ("198.51.100.21", "vsftpd", t - 3600, year10.into(), "3"),
        ("198.51.100.22", "vsftpd", t - 60, "-1".into(), "1"),
    ];
    let jail = "[DEFAULT]\nbantime = 10m\nfindtime = 10m\nmaxretry = 3\nbackend = polling\nbanaction = dummy\n\
                ignoreip = 127.0.0.1/8 ::1\n\
                [sshd]\nenabled = true\nfilter = sshd\nlogpath = @DIR@/auth.log\naction =\n\
                [vsftpd]\nenabled = true\nfilter = vsftpd\nlogpath = @DIR@/vsftpd.log\naction =\n\
                bantime.increment = true\nbantime.maxtime = 1d\n";
    // banguard reads a copy made before fail2ban starts (fail2ban writes
    // its database as it goes).
    let env = Env::new();
    let snapshot = env.path("f2b-copy.sqlite3");
    let rows_ref: Vec<(&str, &str, i64, &str, &str)> =
        rows.iter().map(|(a, b, c, d, e)| (*a, *b, *c, d.as_str(), *e)).collect();
    database(&snapshot, &rows_ref);
    let mut ns = Netns::new();
    let staged = tempfile::tempdir().unwrap();
    let f2b_db = staged.path().join("f2b.sqlite3");
    fs::copy(&snapshot, &f2b_db).unwrap();
    let f2b = Fail2ban::start_with_database(&mut ns, jail, &f2b_db, "sshd", &["auth.log", "vsftpd.log"]);
    let restored = |jail: &str| -> Vec<(String, i64)> {
        let text = f2b.client(&ns, &["get", jail, "banip", "--with-time"]);
        text.lines()
            .filter_map(|l| {
                let ip = l.split_whitespace().next()?.trim_matches(|c| "[]',\"".contains(c)).to_string();
                let plus = l.split(" + ").nth(1)?;
                let secs: i64 = plus.split_whitespace().next()?.parse().ok()?;
                Some((ip, secs))
            })
            .collect()
    };
    // Both jails have restored what they restore once the log says so.
    let started = wait_for(Duration::from_secs(30), || {
        let log = f2b.log();
        (log.contains("Jail 'sshd' started") && log.contains("Jail 'vsftpd' started")).then_some(())
    });
    assert!(started.is_some(), "fail2ban's jails did not start; its log:\n{}", f2b.log());
    std::thread::sleep(Duration::from_secs(2));
    let got: Vec<(String, i64)> = restored("sshd").into_iter().chain(restored("vsftpd")).collect();
    let conf = f2b.conf();
    let out = env.run(&[
        "--json",
        "import",
        "fail2ban",
        "--from",
        &conf.display().to_string(),
        "--database",
        &snapshot.display().to_string(),
        "--dry-run",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours: Vec<(String, i64)> = v["bans"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["result"] == "would be imported")
        .map(|b| {
            let ban = &b["ban"];
            let len = ban["expires"].as_i64().map_or(-1, |e| e - ban["since"].as_i64().unwrap());
            (b["address"].as_str().unwrap().to_string(), len)
        })
        .collect();
    let mut fail2ban_hosts: Vec<&str> = got.iter().map(|(ip, _)| ip.as_str()).collect();
    let mut banguard_hosts: Vec<&str> = ours.iter().map(|(ip, _)| ip.as_str()).collect();
    fail2ban_hosts.sort();
    banguard_hosts.sort();
    assert_eq!(banguard_hosts, fail2ban_hosts, "fail2ban restored {got:?}, banguard carries {ours:?}");
    for (ip, secs) in &got {
        let (_, len) = ours.iter().find(|(h, _)| h == ip).unwrap();
        assert!((len - secs).abs() <= 1, "{ip}: fail2ban {secs} s, banguard {len} s");
    }
}
