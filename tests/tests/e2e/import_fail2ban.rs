//! `banguardctl import fail2ban` against real fail2ban: Debian's package
//! configuration parsed whole, the seed guide's 0.8 set-up, a real
//! fail2ban-server (in a throwaway network namespace) whose bans are
//! carried over and then refused by the PAM module before any password
//! and pushed by `sync` into the namespace's firewall, and every kind of
//! bad input.

use banguard_e2e::fail2ban::{Fail2ban, syslog_prefix};
use banguard_e2e::fixture::ConfigFile;
use banguard_e2e::pamtest::*;
use banguard_e2e::{Netns, artifacts, require, wait_for};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// A banguard config in a temp dir (store, trigger and sync lock in it).
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display().to_string();
        ConfigFile::under(dir.path())
            .with(&format!("[sync]\nlock_file = \"{d}/run/sync.lock\"\nhosts_deny = \"{d}/hosts.deny\""))
            .write(&dir.path().join("banguard.toml"));
        Env { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("banguard.toml")
    }

    fn dropin(&self) -> PathBuf {
        self.dir.path().join("banguard.d/50-fail2ban.toml")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&artifacts().banguardctl);
        c.arg("--config").arg(self.config()).args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run banguardctl")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}\n{}", show(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).expect("JSON")
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

fn setting<'a>(report: &'a Value, table: &str, key: &str) -> Option<&'a str> {
    report["settings"]
        .as_array()?
        .iter()
        .find(|s| s["table"] == table && s["key"] == key)
        .and_then(|s| s["value"].as_str())
}

/// Debian's fail2ban package configuration, read whole: its documented
/// defaults (jail.conf: bantime 10m, findtime 10m, maxretry 5, no
/// increment) come out, every jail is classified, and the drop-in written
/// from it passes check-config.
#[test]
fn debian_fail2ban_configuration_maps_to_its_documented_defaults() {
    if !require("debian_fail2ban_configuration_maps_to_its_documented_defaults", true, &["fail2ban-client"]) {
        return;
    }
    let env = Env::new();
    // An empty database: the machine's own fail2ban state plays no part.
    let db = env.dir.path().join("none.sqlite3");
    make_database(&db, 4, &[]);
    let db_arg = db.display().to_string();
    let r = env.json(&["import", "fail2ban", "--from", "/etc/fail2ban", "--database", &db_arg, "--dry-run"]);
    assert_eq!(setting(&r, "default", "maxretry"), Some("5"), "{r:#}");
    assert_eq!(setting(&r, "default", "findtime"), Some("\"10m\""));
    assert_eq!(setting(&r, "default", "bantime"), Some("\"10m\""));
    assert_eq!(setting(&r, "default", "bantime_factor"), Some("1.0"));
    let jails = r["jails"].as_object().expect("jails");
    assert!(jails.len() >= 50, "every jail of jail.conf is read: {}", jails.len());
    let kind =
        |j: &str| (jails[j]["kind"].as_str().unwrap_or(""), jails[j]["service"].as_str().unwrap_or(""));
    assert_eq!(kind("sshd"), ("service", "sshd"));
    assert_eq!(kind("vsftpd"), ("service", "vsftpd"));
    assert_eq!(kind("dovecot"), ("service", "dovecot"));
    assert_eq!(kind("postfix-sasl"), ("service", "smtp"));
    assert_eq!(kind("recidive"), ("service", "*"));
    assert_eq!(kind("apache-auth").0, "log-based");
    // Debian enables the sshd jail (jail.d/defaults-debian.conf) only.
    assert_eq!(r["dropin"]["written"], false);
    assert!(!env.dropin().exists(), "a dry run writes nothing");
    let text = r["dropin"]["text"].as_str().unwrap();
    assert!(text.contains("# from /etc/fail2ban/jail.conf:"), "{text}");
    // Written for real, the config with it is valid.
    env.ok(&["import", "fail2ban", "--from", "/etc/fail2ban", "--database", &db_arg]);
    assert_eq!(fs::read_to_string(env.dropin()).unwrap(), text);
    let meta = fs::metadata(env.dropin()).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((meta.mode() & 0o777, meta.uid()), (0o644, 0), "root's, 0644");
    let checked = env.ok(&["check-config"]);
    assert!(checked.contains("50-fail2ban.toml"), "{checked}");
}

/// The guide's set-up (CentOS, fail2ban 0.8): jail.conf edited in place,
/// `[ssh-iptables]` with sshd's filter, iptables and sendmail-whois.
const SEED_JAIL_CONF: &str = "\
# Fail2Ban configuration file (0.8 layout)

[DEFAULT]

# \"ignoreip\" can be an IP address, a CIDR mask or a DNS host
ignoreip = 127.0.0.1/8 203.0.113.50
bantime  = 86400
findtime  = 600
maxretry = 3
backend = auto

[ssh-iptables]

enabled  = true
filter   = sshd
action   = iptables[name=SSH, port=ssh, protocol=tcp]
           sendmail-whois[name=SSH, dest=admin@example.com, sender=fail2ban@example.com]
logpath  = /var/log/secure
maxretry = 5

[proftpd-iptables]

enabled  = false
filter   = proftpd
action   = iptables[name=ProFTPD, port=ftp, protocol=tcp]
logpath  = /var/log/proftpd/proftpd.log
maxretry = 6

[apache-badbots]

enabled  = true
filter   = apache-badbots
action   = iptables-multiport[name=BadBots, port=\"http,https\"]
logpath  = /var/www/*/logs/access_log
bantime  = 172800
maxretry = 1
";

#[test]
fn the_guides_08_setup_maps_line_by_line() {
    if !require("the_guides_08_setup_maps_line_by_line", true, &[]) {
        return;
    }
    let env = Env::new();
    let from = env.dir.path().join("fail2ban");
    fs::create_dir(&from).unwrap();
    fs::write(from.join("jail.conf"), SEED_JAIL_CONF).unwrap();
    let f = from.display().to_string();
    let out = env.ok(&["import", "fail2ban", "--from", &f, "--dry-run"]);
    let conf = format!("{f}/jail.conf");
    let want = format!(
        "[default]\n\
         # from {conf}:9 [DEFAULT] maxretry = 3\nmaxretry = 3\n\
         # from {conf}:8 [DEFAULT] findtime = 600\nfindtime = \"10m\"\n\
         # from {conf}:7 [DEFAULT] bantime = 86400\nbantime = \"1d\"\n\
         # from {conf}:6 [DEFAULT] ignoreip = 127.0.0.1/8 203.0.113.50\n\
         ignoreip = [\"127.0.0.0/8\", \"203.0.113.50/32\", \"::1/128\"]\n\
         # from fail2ban's default: bantime.increment = false\nbantime_factor = 1.0\n\
         \n[services.sshd]\n\
         # for {conf}:15 jail [ssh-iptables], filter sshd: what it does not set comes from [default]\n\
         # from {conf}:19 [ssh-iptables] maxretry = 5\nmaxretry = 5\n\
         \n[sync]\n\
         # from {conf}:16 [ssh-iptables] action = iptables\nbackends = [\"iptables\"]\n\
         \n[mail]\n\
         # from {conf}:16 [ssh-iptables] action = sendmail-whois\nenabled = true\n\
         # from {conf}:16 [ssh-iptables] action = sendmail-whois\nto = \"admin@example.com\"\n\
         # from {conf}:16 [ssh-iptables] action = sendmail-whois\nfrom = \"fail2ban@example.com\"\n"
    );
    assert!(out.contains(&want), "want:\n{want}\ngot:\n{out}");
    let row = |status: &str, text: &str| out.lines().any(|l| l.starts_with(status) && l.contains(text));
    assert!(row("mapped", "[ssh-iptables] filter = sshd"), "{out}");
    assert!(row("mapped", "[services.sshd]: logins through PAM service \"sshd\""), "{out}");
    assert!(row("not covered", "[apache-badbots] (enabled)"), "{out}");
    assert!(
        row("not covered", "log-based: filter apache-badbots watches /var/www/*/logs/access_log"),
        "{out}"
    );
    assert!(row("approximated", "no enabled [recidive] jail"), "{out}");
    assert!(!out.contains("proftpd"), "a disabled jail maps to nothing: {out}");
    assert!(
        out.contains("database: no database at /var/lib/fail2ban/fail2ban.sqlite3")
            || out.contains("database: /var/lib/fail2ban/"),
        "{out}"
    );
    assert!(out.contains("keep fail2ban for its log-based jails ([apache-badbots])"), "{out}");
    assert!(out.contains("/etc/pam.d/sshd"), "{out}");
}

/// fail2ban's files in today's layout: [INCLUDES], a jail.d drop-in, a
/// .local override using %(known/...)s, bantime.increment with multipliers.
#[test]
fn includes_interpolation_and_local_overrides_are_followed() {
    if !require("includes_interpolation_and_local_overrides_are_followed", true, &[]) {
        return;
    }
    let env = Env::new();
    let from = env.dir.path().join("fail2ban");
    fs::create_dir_all(from.join("jail.d")).unwrap();
    fs::write(from.join("paths-site.conf"), "[DEFAULT]\nsite_ban = 2h\n").unwrap();
    fs::write(
        from.join("jail.conf"),
        "[INCLUDES]\nbefore = paths-site.conf\n[DEFAULT]\nbantime = %(site_ban)s\nmaxretry = 5\n\
         banaction = nftables-multiport\naction = %(banaction)s[name=%(__name__)s]\n\
         [sshd]\nport = ssh\nmaxretry = 4\n[vsftpd]\nport = ftp\n",
    )
    .unwrap();
    fs::write(from.join("jail.d/site.conf"), "[sshd]\nenabled = true\n[vsftpd]\nenabled = true\n").unwrap();
    fs::write(
        from.join("jail.local"),
        "[DEFAULT]\nbantime.increment = true\nbantime.multipliers = 1 2 4 8 16\nbantime.maxtime = 5w\n\
         [sshd]\nmaxretry = %(known/maxretry)s\nbantime = 1d\n",
    )
    .unwrap();
    fs::write(from.join("fail2ban.local"), "[Definition]\ndbpurgeage = 3d\ndbfile = :memory:\n").unwrap();
    let f = from.display().to_string();
    let r = env.json(&["import", "fail2ban", "--from", &f, "--dry-run"]);
    assert_eq!(setting(&r, "default", "bantime"), Some("\"2h\""), "{r:#}");
    assert_eq!(setting(&r, "default", "bantime_factor"), Some("2.0"));
    assert_eq!(setting(&r, "default", "bantime_max"), Some("\"5w\""));
    assert_eq!(setting(&r, "default", "bantime_lookback"), Some("\"3d\""));
    assert_eq!(setting(&r, "services.sshd", "maxretry"), Some("4"), "known/ keeps jail.conf's 4");
    assert_eq!(setting(&r, "services.sshd", "bantime"), Some("\"1d\""));
    assert_eq!(setting(&r, "services.vsftpd", "maxretry"), None, "vsftpd inherits [DEFAULT]");
    assert_eq!(setting(&r, "sync", "backends"), Some("[\"nftables\"]"));
    assert!(r["database"]["reason"].as_str().unwrap().contains("dbfile = :memory:"), "{r:#}");
    let files: Vec<&str> = r["files"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert_eq!(
        files,
        [
            format!("{f}/fail2ban.local"),
            format!("{f}/paths-site.conf"),
            format!("{f}/jail.conf"),
            format!("{f}/jail.d/site.conf"),
            format!("{f}/jail.local")
        ]
    );
}

/// A fail2ban database of schema `version` with `bips` rows (ip, jail,
/// timeofban, bantime, bancount), as fail2ban 0.11+ writes it.
fn make_database(path: &Path, version: i64, rows: &[(&str, &str, i64, i64, i64)]) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(
        "CREATE TABLE fail2banDb(version INTEGER);
         CREATE TABLE jails(name TEXT NOT NULL UNIQUE, enabled INTEGER NOT NULL DEFAULT 1);
         CREATE TABLE bans(jail TEXT NOT NULL, ip TEXT, timeofban INTEGER NOT NULL, bantime INTEGER NOT NULL,
                           bancount INTEGER NOT NULL default 1, data JSON);
         CREATE TABLE bips(ip TEXT NOT NULL, jail TEXT NOT NULL, timeofban INTEGER NOT NULL, bantime INTEGER NOT NULL,
                           bancount INTEGER NOT NULL default 1, data JSON, PRIMARY KEY(ip, jail));",
    )
    .unwrap();
    c.execute("INSERT INTO fail2banDb VALUES (?1)", [version]).unwrap();
    for (ip, jail, at, len, count) in rows {
        c.execute(
            "INSERT INTO bips VALUES (?1, ?2, ?3, ?4, ?5, '{\"failures\": 3}')",
            rusqlite::params![ip, jail, at, len, count],
        )
        .unwrap();
    }
}

/// Each bad input: exit 2, one line on stderr naming the file (and line),
/// and nothing written: no drop-in, no ban.
#[test]
fn bad_input_names_the_file_and_line_and_writes_nothing() {
    if !require("bad_input_names_the_file_and_line_and_writes_nothing", true, &[]) {
        return;
    }
    let env = Env::new();
    let from = env.dir.path().join("fail2ban");
    fs::create_dir(&from).unwrap();
    let f = from.display().to_string();
    let good = "[DEFAULT]\nmaxretry = 3\n[sshd]\nenabled = true\n";
    let db = env.dir.path().join("f2b.sqlite3");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    make_database(&db, 4, &[("198.51.100.7", "sshd", now - 60, 3600, 3)]);
    let d = db.display().to_string();
    let fails = |args: &[&str], names: &str| {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}\n{}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains(names), "{names:?} not in: {err}");
        assert!(!env.dropin().exists(), "nothing written: {args:?}");
    };
    let missing = env.dir.path().join("nope").display().to_string();
    fails(&["import", "fail2ban", "--from", &missing], &format!("{missing}: No such file"));
    fails(&["import", "fail2ban", "--from", &f, "--database", &d], "not a fail2ban configuration directory");
    fs::write(from.join("jail.conf"), "[DEFAULT]\nmaxretry = 3\nthis is not ini\n").unwrap();
    fails(
        &["import", "fail2ban", "--from", &f, "--database", &d],
        &format!("{f}/jail.conf:3: not `key = value`"),
    );
    fs::write(from.join("jail.conf"), "[DEFAULT]\nbantime = %(nope)s\n[sshd]\nenabled = true\n").unwrap();
    fails(
        &["import", "fail2ban", "--from", &f, "--database", &d],
        &format!("{f}/jail.conf:2: unknown interpolation %(nope)s"),
    );
    fs::write(from.join("jail.conf"), "[DEFAULT]\nmaxretry = many\n[sshd]\nenabled = true\n").unwrap();
    fails(
        &["import", "fail2ban", "--from", &f, "--database", &d],
        &format!("{f}/jail.conf:2: maxretry = many: not a whole number"),
    );
    fs::write(from.join("jail.conf"), "[DEFAULT]\nmaxretry = 0\n[sshd]\nenabled = true\n").unwrap();
    fails(&["import", "fail2ban", "--from", &f, "--database", &d], "[DEFAULT] maxretry = 0");
    fs::write(from.join("jail.conf"), good).unwrap();
    // Databases: not one, newer, locked, missing.
    let text = env.dir.path().join("text.sqlite3");
    fs::write(&text, "[DEFAULT]\n".repeat(200)).unwrap();
    fails(
        &["import", "fail2ban", "--from", &f, "--database", &text.display().to_string()],
        &format!("{}: ", text.display()),
    );
    let newer = env.dir.path().join("newer.sqlite3");
    make_database(&newer, 99, &[]);
    fails(
        &["import", "fail2ban", "--from", &f, "--database", &newer.display().to_string()],
        "schema version 99 is newer",
    );
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    fails(&["import", "fail2ban", "--from", &f, "--database", &d], "fail2ban is writing to it");
    holder.execute_batch("ROLLBACK").unwrap();
    fails(
        &["import", "fail2ban", "--from", &f, "--database", &format!("{d}.gone")],
        &format!("{d}.gone: cannot read"),
    );
    // No ban was stored by any of these.
    assert_eq!(env.json(&["list"])["bans"].as_array().unwrap().len(), 0);
    // An existing drop-in is never replaced without --force.
    env.ok(&["import", "fail2ban", "--from", &f, "--database", &d]);
    let before = fs::read_to_string(env.dropin()).unwrap();
    fs::write(from.join("jail.local"), "[DEFAULT]\nmaxretry = 4\n").unwrap();
    let out = env.run(&["import", "fail2ban", "--from", &f, "--database", &d]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists: not replaced (--force"), "{}", show(&out));
    assert_eq!(fs::read_to_string(env.dropin()).unwrap(), before);
    env.ok(&["import", "fail2ban", "--from", &f, "--database", &d, "--force"]);
    assert!(fs::read_to_string(env.dropin()).unwrap().contains("maxretry = 4"));
    // Run twice, the ban is stored once; fail2ban's two earlier bans of
    // the host are carried for the length of its next ban here.
    let bans = env.json(&["list"]);
    assert_eq!(bans["bans"].as_array().unwrap().len(), 1, "{bans:#}");
    assert_eq!(
        (bans["bans"][0]["carried_bans"].as_u64(), bans["bans"][0]["failures"].as_u64()),
        (Some(2), Some(3))
    );
}

/// A real fail2ban-server bans three hosts (one IPv6, one permanently, by
/// hand) and one host in a log-based jail; `import fail2ban` (fail2ban
/// still running, its database found through fail2ban.local) carries the
/// three over: `list` shows them with their time left and origin, the
/// PAM module refuses them before their password is checked, `sync` puts
/// them into the namespace's firewall.
#[test]
fn real_fail2ban_bans_are_carried_over_refused_and_pushed() {
    let tools = [
        "unshare",
        "nsenter",
        "fail2ban-server",
        "fail2ban-client",
        "iptables",
        "ip6tables",
        "iptables-restore",
    ];
    if !require("real_fail2ban_bans_are_carried_over_refused_and_pushed", true, &tools) {
        return;
    }
    let mut ns = Netns::new();
    let jail = "[DEFAULT]\nignoreip = 127.0.0.1/8 ::1 192.0.2.10\nbantime = 1h\nfindtime = 10m\nmaxretry = 3\n\
                backend = polling\n\n\
                [sshd]\nenabled = true\nfilter = sshd\nport = 22\nlogpath = @DIR@/auth.log\n\
                action = iptables-multiport[name=sshd, port=\"22\", protocol=tcp]\n\n\
                [apache-auth]\nenabled = true\nport = 80\nlogpath = @DIR@/apache.log\n\
                action = iptables-multiport[name=apache, port=\"80\", protocol=tcp]\n";
    let f2b = Fail2ban::start_with(&mut ns, jail, &[], "sshd", &["auth.log", "apache.log"]);
    let auth = f2b.dir().join("auth.log");
    let mut lines = String::new();
    for (pid, host) in [(1000, "198.51.100.7"), (2000, "2001:db8::7")] {
        for port in 40000..40003 {
            let prefix = syslog_prefix("sshd", pid + port - 40000);
            lines.push_str(&format!("{prefix}Failed password for root from {host} port {port} ssh2\n"));
        }
    }
    use std::io::Write;
    fs::OpenOptions::new().append(true).open(&auth).unwrap().write_all(lines.as_bytes()).unwrap();
    let banned = wait_for(Duration::from_secs(60), || {
        let s = f2b.client(&ns, &["status", "sshd"]);
        (s.contains("198.51.100.7") && s.contains("2001:db8::7")).then_some(s)
    });
    assert!(banned.is_some(), "fail2ban banned both; its log:\n{}", f2b.log());
    f2b.client(&ns, &["set", "sshd", "bantime", "-1"]);
    f2b.client(&ns, &["set", "sshd", "banip", "203.0.113.77"]);
    f2b.client(&ns, &["set", "apache-auth", "banip", "198.51.100.99"]);
    let db = f2b.database();
    let stored = wait_for(Duration::from_secs(20), || {
        let c =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
        let n: i64 = c.query_row("SELECT count(*) FROM bips", [], |r| r.get(0)).ok()?;
        (n >= 4).then_some(())
    });
    assert!(stored.is_some(), "fail2ban stored its bans; its log:\n{}", f2b.log());

    let env = Env::new();
    let conf = f2b.conf().display().to_string();
    let out = env.ok(&["import", "fail2ban", "--from", &conf]);
    assert!(
        out.contains(&format!("database: {} (schema 4", db.display())),
        "found through fail2ban.local:\n{out}"
    );
    assert!(
        out.contains(
            "bans: 3 imported, 0 already imported, 0 lifted here (stay lifted), 0 refused, 1 not carried over"
        ),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.contains("198.51.100.99") && l.contains("not carried over: not covered")),
        "{out}"
    );
    let list = env.json(&["list"]);
    let bans = list["bans"].as_array().unwrap();
    let ban =
        |host: &str| bans.iter().find(|b| b["host"] == host).unwrap_or_else(|| panic!("{host} in {list:#}"));
    for host in ["198.51.100.7", "2001:db8::7"] {
        let b = ban(host);
        assert_eq!((b["origin"].as_str(), b["service"].as_str()), (Some("fail2ban"), Some("sshd")), "{b:#}");
        let left = b["expires_in"].as_i64().unwrap();
        // fail2ban's times have fractions, rounded up (no ban ends early):
        // an import in the ban's own second leaves an hour and a second.
        assert!((3000..=3601).contains(&left), "about an hour left: {b:#}");
        assert_eq!(b["reason"], "jail sshd");
    }
    // Banned by hand with `set sshd bantime -1` at run time: fail2ban's
    // next start restores it for the jail's configured bantime (1h), not
    // for ever, and so does banguard.
    let by_hand = ban("203.0.113.77");
    assert!((3000..=3601).contains(&by_hand["expires_in"].as_i64().unwrap()), "{by_hand:#}");
    let history = env.ok(&["history", "198.51.100.7"]);
    assert!(history.contains("banned on sshd for 1h (from fail2ban: jail sshd)"), "{history}");
    let test = env.run(&["test", "198.51.100.7", "sshd"]);
    assert_eq!(test.status.code(), Some(1), "refused now: {}", show(&test));
    assert!(String::from_utf8_lossy(&test.stdout).contains("from fail2ban: jail sshd"), "{}", show(&test));
    let table = env.ok(&["list"]);
    assert!(
        table
            .lines()
            .any(|l| l.contains("198.51.100.7") && l.contains("fail2ban") && l.contains("jail sshd")),
        "{table}"
    );

    // The module refuses them before the password is looked at.
    let stack = env.dir.path().join("pam.d");
    let checker = env.dir.path().join("checkpw");
    let evaluated = env.dir.path().join("evaluated.log");
    write_password_checker(&checker, &evaluated, "right");
    let mut lines = vec![format!(
        "auth requisite {} config={}",
        artifacts().pam_module.display(),
        env.config().display()
    )];
    lines.extend(password_lines(&checker));
    Confdir::new(&stack).service("sshd", &lines);
    for host in ["198.51.100.7", "2001:db8::7", "203.0.113.77"] {
        let mut p = Pam::start(&stack, "sshd", "alice");
        p.rhost(host);
        assert_eq!(p.try_password("right"), PAM_PERM_DENIED, "{host} refused");
        p.abandon();
    }
    assert!(!evaluated.exists(), "no password of a carried-over host was checked");
    let mut p = Pam::start(&stack, "sshd", "alice");
    p.rhost("198.51.100.8");
    assert_eq!(p.try_password("right"), PAM_SUCCESS, "another host logs in");
    p.abandon();

    // sync (in the namespace) pushes them into banguard's own chains.
    let ctl = artifacts().banguardctl.display().to_string();
    let cfg = env.config().display().to_string();
    let out = ns.run([ctl.as_str(), "--config", &cfg, "sync"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v4 = String::from_utf8_lossy(&ns.run_ok(["iptables", "-S", "BANGUARD"]).stdout).into_owned();
    let v6 = String::from_utf8_lossy(&ns.run_ok(["ip6tables", "-S", "BANGUARD"]).stdout).into_owned();
    assert!(v4.contains("-A BANGUARD -s 198.51.100.7/32 -j DROP"), "{v4}");
    assert!(v4.contains("-A BANGUARD -s 203.0.113.77/32 -j DROP"), "{v4}");
    assert!(!v4.contains("198.51.100.99"), "the log-based jail's ban stays fail2ban's: {v4}");
    assert!(v6.contains("-A BANGUARD -s 2001:db8::7/128 -j DROP"), "{v6}");
}
