//! `banguardctl` end to end: golden output of every reporting command
//! (human and `--json`), every kind of bad input, and the sync job against
//! the hosts.deny back-end with a capture script as sendmail.
//!
//! Time: reporting commands honour `BANGUARD_NOW` (unix seconds) and the
//! store is prepared through the core with a [`ManualClock`], so the golden
//! files hold fixed times (TZ=UTC). Commands that write (ban, unban, sync)
//! always use the system clock; their tests check content, not times.
//!
//! Golden files live in `tests/fixtures/cli/`; regenerate them with
//! `BANGUARD_BLESS=1 cargo test -p banguard-e2e --test e2e cli::` and review the
//! diff.

use banguard::duration::BanTime;
use banguard::policy::{Clock, ManualClock, Request, SystemClock};
use banguard::store::Access;
use banguard::{AttemptRef, Banguard, Config, HostKey, Verdict};
use banguard_e2e::fixture::ConfigFile;
use banguard_e2e::{artifacts, find_program, is_root, require, workspace_root};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// 2027-01-15 08:00:00 UTC.
const T0: i64 = 1_800_000_000;
/// "Now" of the golden scenario: ten minutes after T0.
const NOW: i64 = T0 + 600;

/// A temp dir with a config whose every path points inside it.
struct Env {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Env {
    /// `extra` is appended to a config with the store, hosts.deny, lock
    /// and sendmail inside the temp dir.
    fn new(extra: &str) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        // Readable by `nobody` for the non-root tests; the store dir is 0700.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let d = dir.path().display().to_string();
        let config = dir.path().join("banguard.toml");
        ConfigFile::under(dir.path())
            .with(extra)
            .with(&format!(
                "[sync]\nbackends = [\"hosts.deny\"]\nhosts_deny = \"{d}/hosts.deny\"\nlock_file = \"{d}/run/sync.lock\"\n\
                 [mail]\nenabled = true\nsendmail = \"{d}/sendmail\"\n"
            ))
            .write(&config);
        let env = Env { dir, config };
        env.set_sendmail(0);
        env
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A sendmail that appends its argv and stdin to `mail.out` and exits
    /// with `code`.
    fn set_sendmail(&self, code: i32) {
        let out = self.path("mail.out");
        let script = format!(
            "#!/bin/sh\nif [ {code} -ne 0 ]; then echo 'queue file write error' >&2; exit {code}; fi\n\
             echo \"=== argv: $*\" >> '{}'\ncat >> '{}'\n",
            out.display(),
            out.display()
        );
        let p = self.path("sendmail");
        fs::write(&p, script).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn mail(&self) -> String {
        fs::read_to_string(self.path("mail.out")).unwrap_or_default()
    }

    fn hosts_deny(&self) -> String {
        fs::read_to_string(self.path("hosts.deny")).unwrap_or_default()
    }

    fn load(&self) -> Config {
        Config::load(&self.config).expect("test config loads")
    }

    /// The engine on this env's store with the given clock.
    fn open(&self, clock: Arc<dyn Clock>) -> Banguard {
        Banguard::open_with(self.load(), Access::ReadWrite, clock).expect("open store")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&artifacts().banguardctl);
        c.arg("--config").arg(&self.config).args(args);
        c.env("TZ", "UTC").env_remove("BANGUARD_NOW").env_remove("SUDO_USER").stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run banguardctl")
    }

    /// Runs a reporting command at the scenario's fixed "now".
    fn run_at(&self, now: i64, args: &[&str]) -> Output {
        self.command(args).env("BANGUARD_NOW", now.to_string()).output().expect("run banguardctl")
    }

    /// stdout, asserting the exit code.
    fn ok(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(code), "{args:?}\n{}", show(&out));
        assert!(!text(&out.stderr).contains("panicked"), "{}", show(&out));
        text(&out.stdout)
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn show(o: &Output) -> String {
    format!("status: {}\nstdout:\n{}stderr:\n{}", o.status, text(&o.stdout), text(&o.stderr))
}

fn net(s: &str) -> HostKey {
    HostKey::Net(s.parse().unwrap())
}

fn req<'a>(service: &'a str, rhost: &'a str) -> Request<'a> {
    Request { service, rhost: Some(rhost), hint: None, user: Some("root") }
}

/// `n` failures (faillock-style `authfail`).
fn fail(g: &mut Banguard, service: &str, rhost: &str, n: u32) {
    for _ in 0..n {
        g.record_failure(&req(service, rhost)).unwrap();
    }
}

// ---------------------------------------------------------------- golden

const SCENARIO: &str = r#"maxretry = 3

[services.sshd]
maxretry = 2
bantime = "1h"

[services.vsftpd]
findtime = "30m"

[services.login]
enabled = false

[recidive]
bans = 2

[accounts]
learning = 0
budget = 3
"#;

/// A store with one of everything, prepared at fixed times around T0.
fn scenario() -> Env {
    let env = Env::new(SCENARIO);
    let clock = ManualClock::new(T0 - 10_000);
    let mut g = env.open(clock.clone());
    // 192.0.2.66: banned on sshd twice; the second ban makes it a repeat
    // offender, banned on all services (pushed to the firewall).
    fail(&mut g, "sshd", "192.0.2.66", 2);
    clock.set(T0 - 5_000);
    fail(&mut g, "sshd", "192.0.2.66", 2);
    // 198.51.100.99: banned, then unbanned by hand.
    clock.set(T0 - 3_000);
    fail(&mut g, "sshd", "198.51.100.99", 2);
    clock.set(T0 - 2_000);
    assert_eq!(g.unban(&net("198.51.100.99/32"), None).unwrap().len(), 1);
    // 198.51.100.7: banned on sshd now.
    clock.set(T0);
    fail(&mut g, "sshd", "198.51.100.7", 2);
    // Counting, not banned: an address, an IPv6 /64, a name.
    clock.set(T0 + 60);
    fail(&mut g, "vsftpd", "198.51.100.20", 2);
    clock.set(T0 + 120);
    fail(&mut g, "sshd", "2001:db8:1:2::5", 1);
    // 198.51.100.30 used both sshd tries (single-line mode): its next
    // attempt is refused.
    clock.set(T0 + 150);
    for _ in 0..2 {
        g.attempt(&req("sshd", "198.51.100.30"), None).unwrap();
    }
    clock.set(T0 + 180);
    let manual = g.ban(&net("203.0.113.0/24"), None, BanTime::Permanent, "scanner").unwrap();
    clock.set(T0 + 200);
    fail(&mut g, "vsftpd", "Dyn-7.Example.NET", 1);
    let recidive: Vec<i64> =
        g.bans(None, false).unwrap().iter().filter(|b| b.reason == "recidive").map(|b| b.id).collect();
    assert_eq!(recidive.len(), 1);
    g.mark_pushed(&recidive).unwrap();
    assert!(manual.firewall);
    // The account side: admin logs in from home, then a spray from four
    // addresses locks it for unfamiliar sources.
    clock.set(T0 + 220);
    let home = Request { user: Some("admin"), ..req("sshd", "198.51.100.200") };
    let Verdict::Allowed { attempt: Some(id), .. } = g.attempt(&home, None).unwrap() else { panic!() };
    g.record_success(&home, AttemptRef::Id(id)).unwrap();
    clock.set(T0 + 250);
    for bot in ["192.0.2.101", "192.0.2.102", "192.0.2.103", "192.0.2.104"] {
        g.attempt(&Request { user: Some("admin"), ..req("sshd", bot) }, None).unwrap();
    }
    env
}

/// Compares `actual` with `tests/fixtures/cli/<name>` (or writes it with
/// BANGUARD_BLESS=1).
fn golden(name: &str, actual: &str) {
    let path = workspace_root().join("tests/fixtures/cli").join(name);
    if std::env::var_os("BANGUARD_BLESS").is_some() {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, actual).unwrap();
        return;
    }
    let expected = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with BANGUARD_BLESS=1 to create it)", path.display()));
    if expected != actual {
        let first = expected.lines().zip(actual.lines()).position(|(a, b)| a != b);
        panic!(
            "{} differs (first differing line: {first:?}); BANGUARD_BLESS=1 regenerates it\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        );
    }
}

/// Runs a reporting command at NOW and renders the case as a golden file:
/// the command, exit code, stdout and stderr, temp paths as `$DIR`.
fn case(env: &Env, args: &[&str]) -> String {
    let out = env.run_at(NOW, args);
    let dir = env.dir.path().display().to_string();
    let norm = |b: &[u8]| text(b).replace(&dir, "$DIR");
    format!(
        "$ banguardctl {}\nexit: {}\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        out.status.code().map_or("signal".into(), |c| c.to_string()),
        norm(&out.stdout),
        norm(&out.stderr)
    )
}

#[test]
fn golden_reports() {
    let env = scenario();
    let cases: &[(&str, &[&str])] = &[
        ("list.txt", &["list"]),
        ("list.json", &["list", "--json"]),
        ("list-all.txt", &["list", "--all"]),
        ("list-service.txt", &["list", "--service", "vsftpd"]),
        ("list-failures.txt", &["list", "--failures"]),
        ("list-failures.json", &["--json", "list", "--failures"]),
        ("status.txt", &["status"]),
        ("status.json", &["status", "--json"]),
        ("status-sshd.txt", &["status", "sshd"]),
        ("status-unconfigured.txt", &["status", "ftpd"]),
        ("test-banned.txt", &["test", "203.0.113.9", "sshd"]),
        ("test-banned.json", &["test", "203.0.113.9", "sshd", "--json"]),
        ("test-recidive.txt", &["test", "192.0.2.66", "vsftpd"]),
        ("test-counting.txt", &["test", "198.51.100.20", "vsftpd"]),
        ("test-counting.json", &["test", "198.51.100.20", "vsftpd", "--json"]),
        ("test-exhausted.txt", &["test", "198.51.100.30", "sshd"]),
        ("test-ipv6.txt", &["test", "2001:db8:1:2::77", "sshd"]),
        ("test-name.txt", &["test", "name:dyn-7.example.net", "vsftpd"]),
        ("test-ignored.txt", &["test", "127.0.0.1", "sshd"]),
        ("test-disabled.txt", &["test", "198.51.100.7", "login"]),
        ("test-unconfigured.txt", &["test", "198.51.100.7", "ftpd"]),
        ("history.txt", &["history", "192.0.2.66"]),
        ("history.json", &["history", "192.0.2.66", "--json"]),
        ("history-network.txt", &["history", "198.51.100.0/24"]),
        ("history-none.txt", &["history", "192.0.2.1"]),
        ("accounts.txt", &["accounts"]),
        ("accounts.json", &["accounts", "--json"]),
        ("accounts-familiar.txt", &["accounts", "familiar"]),
        ("test-account-locked.txt", &["test", "192.0.2.200", "sshd", "--user", "admin"]),
        ("test-account-locked.json", &["test", "192.0.2.200", "sshd", "--user", "admin", "--json"]),
        ("test-account-familiar.txt", &["test", "198.51.100.201", "sshd", "--user", "Admin"]),
        ("test-account-counting.txt", &["test", "192.0.2.200", "sshd", "--user", "alice"]),
        ("history-account.txt", &["history", "--user", "admin"]),
        ("check-config.txt", &["check-config"]),
        ("check-config.json", &["check-config", "--json"]),
    ];
    let mut failures = Vec::new();
    for (name, args) in cases {
        let actual = case(&env, args);
        assert!(!actual.contains("panicked"), "{actual}");
        if let Err(e) = std::panic::catch_unwind(|| golden(name, &actual)) {
            failures.push(format!("{name}: {}", e.downcast_ref::<String>().cloned().unwrap_or_default()));
        }
    }
    assert!(failures.is_empty(), "{} golden files differ:\n{}", failures.len(), failures.join("\n\n"));
}

#[test]
fn json_outputs_parse_and_reports_write_nothing() {
    let env = scenario();
    let db = env.load().database;
    let before = fs::read(&db).unwrap();
    for args in [
        &["list", "--json"][..],
        &["list", "--all", "--json"],
        &["list", "--failures", "--json"],
        &["status", "--json"],
        &["test", "192.0.2.66", "sshd", "--json"],
        &["history", "198.51.100.0/24", "--json"],
        &["check-config", "--json"],
        &["sync", "--dry-run", "--json"],
    ] {
        let out = env.run_at(NOW, args);
        assert!(matches!(out.status.code(), Some(0 | 1)), "{args:?}: {}", show(&out));
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", show(&out)));
        assert!(v.is_object(), "{args:?}");
    }
    assert_eq!(fs::read(&db).unwrap(), before, "a reporting command changed the store");
    let v: serde_json::Value = serde_json::from_slice(&env.run_at(NOW, &["list", "--json"]).stdout).unwrap();
    let bans = v["bans"].as_array().unwrap();
    let manual = bans.iter().find(|b| b["host"] == "203.0.113.0/24").unwrap();
    assert_eq!(manual["firewall"], "pending");
    assert_eq!(manual["expires"], serde_json::Value::Null);
    assert_eq!(manual["since_iso"], "2027-01-15T08:03:00+00:00");
}

#[test]
fn empty_or_missing_store_lists_nothing_with_exit_0() {
    let env = Env::new("");
    let db = env.load().database;
    assert_eq!(env.ok(&["list"], 0).lines().count(), 1, "just the header");
    assert_eq!(env.ok(&["list", "--failures"], 0).lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["list", "--json"], 0)).unwrap();
    assert_eq!(v["bans"], serde_json::json!([]));
    assert!(env.ok(&["status"], 0).starts_with("Services: 0"));
    assert!(!db.exists(), "a reporting command must not create the store");
    env.ok(&["history", "192.0.2.1"], 1);
}

#[test]
fn closed_stdout_is_not_an_error() {
    let env = scenario();
    let mut child =
        env.command(&["list", "--all"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(out.stderr.is_empty(), "{}", show(&out));
}

// ------------------------------------------------------------- bad input

/// Asserts exit 2 and exactly one `banguardctl: ` line on stderr
/// containing `needle`; nothing on stdout, no panic.
fn bad(out: &Output, needle: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", show(out));
    assert_eq!(err.lines().count(), 1, "one line on stderr: {}", show(out));
    assert!(err.starts_with("banguardctl: "), "{}", show(out));
    assert!(err.contains(needle), "expected {needle:?}: {}", show(out));
    assert!(out.stdout.is_empty(), "{}", show(out));
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{}", show(out));
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let env = scenario();
    let cases: &[(&[&str], &str)] = &[
        (&["ban", "not-an-ip"], "invalid address \"not-an-ip\": not an IPv4/IPv6 address or network"),
        (&["ban", "198.51.100.7.1"], "not an IPv4/IPv6 address"),
        (&["unban", "300.1.1.1"], "invalid address \"300.1.1.1\""),
        (&["history", "10.0.0.0/33"], "not an IPv4/IPv6 network in CIDR form"),
        (&["ban", "10.1.2.3/8"], "host bits are set after /8: did you mean 10.0.0.0/8?"),
        (&["unban", "2001:db8::1/64"], "did you mean 2001:db8::/64?"),
        (&["test", "10.0.0.0/8", "sshd"], "takes one client address, not a network"),
        (&["test", "198.51.100.7", "ss hd"], "invalid PAM service name \"ss hd\""),
        (&["list", "--service", "x;y"], "invalid PAM service name"),
        (&["list", "--bogus"], "unexpected argument '--bogus' found (try --help)"),
        (&["frobnicate"], "unrecognized subcommand 'frobnicate'"),
        (&[], "a command is required"),
        (&["test", "198.51.100.7"], "required"),
        (&["ban", "192.0.2.1", "--for", "10x"], "unknown unit"),
        (&["ban", "192.0.2.1", "--for", "1h", "--permanent"], "cannot be used with"),
        (&["unban", "192.0.2.1", "--all"], "cannot be used with"),
        (&["ban", "127.0.0.5"], "refusing to ban 127.0.0.5: 127.0.0.5/32 is loopback: never blocked"),
        (&["ban", "2000::/3"], "wider than /32, the widest network pushed ([sync] widest_ipv6_prefix)"),
        (&["ban", "fe80::/64"], "fe80::/64 is link-local: never blocked"),
        (&["ban", "224.0.0.1"], "is multicast"),
        (&["ban", "0.0.0.0/0"], "every address"),
        (&["ban", "192.0.2.1", "--reason", "two\nlines"], "invalid reason"),
    ];
    for (args, needle) in cases {
        bad(&env.run(args), needle);
    }
    bad(&env.command(&["list"]).env("BANGUARD_NOW", "soon").output().unwrap(), "invalid BANGUARD_NOW");
}

#[test]
fn config_errors_name_file_and_line() {
    let env = Env::new("");
    let missing = env.path("none.toml");
    let out =
        Command::new(&artifacts().banguardctl).arg("--config").arg(&missing).arg("list").output().unwrap();
    bad(&out, "cannot read config");
    bad(&out, "none.toml: No such file or directory");

    let typo = env.path("typo.toml");
    fs::write(&typo, "[default]\nmaxretyr = 3\n").unwrap();
    for args in [&["check-config"][..], &["list"], &["sync"]] {
        let out =
            Command::new(&artifacts().banguardctl).arg("--config").arg(&typo).args(args).output().unwrap();
        bad(&out, &format!("{}:2: key `maxretyr`: unknown field `maxretyr`", typo.display()));
    }

    let value = env.path("value.toml");
    fs::write(&value, "[default]\nmaxretry = 5\n\nfindtime = \"10 minutes\"\n").unwrap();
    let out = Command::new(&artifacts().banguardctl)
        .arg("--config")
        .arg(&value)
        .arg("check-config")
        .output()
        .unwrap();
    bad(&out, "value.toml:4: key `findtime`");

    // A drop-in's error names the drop-in.
    let base = env.path("base.toml");
    fs::write(&base, "[default]\nmaxretry = 5\n").unwrap();
    fs::create_dir(env.path("base.d")).unwrap();
    fs::write(env.path("base.d/10-x.toml"), "[services.sshd]\nbantime = \"0\"\n").unwrap();
    let out = Command::new(&artifacts().banguardctl)
        .arg("--config")
        .arg(&base)
        .arg("check-config")
        .output()
        .unwrap();
    bad(&out, "base.d/10-x.toml:2: key `bantime`");

    let loose = env.path("loose.toml");
    fs::write(&loose, "").unwrap();
    fs::set_permissions(&loose, fs::Permissions::from_mode(0o666)).unwrap();
    let out =
        Command::new(&artifacts().banguardctl).arg("--config").arg(&loose).arg("list").output().unwrap();
    bad(&out, "writable by group or others");
}

#[test]
fn corrupt_store_is_one_line() {
    let env = Env::new("");
    let db = env.load().database;
    fs::create_dir_all(db.parent().unwrap()).unwrap();
    fs::set_permissions(db.parent().unwrap(), fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(&db, vec![0x5a; 8192]).unwrap();
    fs::set_permissions(&db, fs::Permissions::from_mode(0o600)).unwrap();
    for args in [&["list"][..], &["status"], &["test", "192.0.2.1", "sshd"], &["history", "192.0.2.1"]] {
        bad(&env.run(args), "corrupt or not a banguard database");
    }
    if is_root() {
        bad(&env.run(&["unban", "192.0.2.1"]), "corrupt or not a banguard database");
        bad(&env.run(&["sync"]), "corrupt or not a banguard database");
    }
}

#[test]
fn non_root_reads_fail_clearly_and_writes_are_refused() {
    if !require("non_root_reads_fail_clearly_and_writes_are_refused", true, &["setpriv"]) {
        return;
    }
    let env = scenario();
    // A copy nobody can run wherever the build tree lives (/root is 0700).
    let ctl = env.path("banguardctl");
    fs::copy(&artifacts().banguardctl, &ctl).unwrap();
    let as_nobody = |args: &[&str]| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
        c.arg(&ctl).arg("--config").arg(&env.config).args(args);
        c.env("TZ", "UTC").stdin(Stdio::null()).output().unwrap()
    };
    // The store is root's (0600 in a 0700 directory).
    bad(&as_nobody(&["list"]), "Permission denied (os error 13): run as root");
    for args in [&["ban", "192.0.2.1"][..], &["unban", "192.0.2.66"], &["unban", "--all"], &["sync"]] {
        bad(&as_nobody(args), "changes the store and the firewall: run as root (uid 65534 is not)");
    }
    // Reading the config works for anyone.
    let out = as_nobody(&["check-config"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(env.hosts_deny().is_empty());
}

// ------------------------------------------------------------------ sync

#[test]
fn sync_pushes_marks_and_mails_once() {
    if !require("sync_pushes_marks_and_mails_once", true, &[]) {
        return;
    }
    let env = Env::new("[recidive]\nenabled = false\n");
    let mut g = env.open(Arc::new(SystemClock));
    g.ban(&net("198.51.100.7/32"), Some("sshd"), BanTime::Seconds(3600), "brute force").unwrap();
    fail(&mut g, "vsftpd", "2001:db8:5::9", 5); // an automatic ban: PAM only (scope repeat)
    drop(g);

    let out = env.ok(&["sync"], 0);
    assert!(out.contains("block 198.51.100.7 (sshd, manual: brute force, 0 failures, until "), "{out}");
    assert!(out.contains("mailed root about 198.51.100.7"), "{out}");
    assert!(out.contains("mailed root about 2001:db8:5::/64"), "{out}");
    let deny = env.hosts_deny();
    assert!(deny.contains("ALL: 198.51.100.7\n"), "{deny}");
    assert!(!deny.contains("2001:db8:5"), "scope = repeat: automatic bans stay in PAM: {deny}");

    // The notice: argv only, plain headers, everything an operator needs.
    let mail = env.mail();
    assert!(mail.contains("=== argv: -oi -- root\n"), "{mail}");
    assert!(
        mail.contains("Subject: [banguard ") && mail.contains("] 198.51.100.7 banned on sshd for 1h\n"),
        "{mail}"
    );
    for needle in [
        "From: banguard\n",
        "To: root\n",
        "  Host:          198.51.100.7 (counted as 198.51.100.7/32)\n",
        "  Service:       sshd\n",
        "  Length:        1h, until ",
        "  Failures:      0\n",
        "  Reason:        manual: brute force\n",
        "  banguardctl unban 198.51.100.7 --service sshd\n",
        "  Failures:      5\n",
        "  banguardctl unban 2001:db8:5::/64 --service vsftpd\n",
    ] {
        assert!(mail.contains(needle), "missing {needle:?} in\n{mail}");
    }

    let v: serde_json::Value = serde_json::from_str(&env.ok(&["list", "--json"], 0)).unwrap();
    let fw: Vec<(&str, &str)> = v["bans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["host"].as_str().unwrap(), b["firewall"].as_str().unwrap()))
        .collect();
    assert!(fw.contains(&("198.51.100.7", "yes")) && fw.contains(&("2001:db8:5::/64", "no")), "{fw:?}");

    // A second run changes nothing and mails nothing.
    let mail_before = env.mail();
    let deny_before = env.hosts_deny();
    let out = env.ok(&["sync"], 0);
    assert_eq!(out, "", "nothing to do, nothing said");
    assert_eq!(env.mail(), mail_before);
    assert_eq!(env.hosts_deny(), deny_before);
    assert!(env.path("run/sync.state").exists());
    // --quiet prints nothing; --json prints a report.
    assert_eq!(env.ok(&["sync", "--quiet"], 0), "");
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["sync", "--json"], 0)).unwrap();
    assert_eq!(v["backends"][0]["backend"], "hosts.deny");
    assert_eq!(v["errors"], serde_json::json!([]));
}

#[test]
fn failed_mail_stays_queued_until_sendmail_works() {
    if !require("failed_mail_stays_queued_until_sendmail_works", true, &[]) {
        return;
    }
    let env = Env::new("");
    let mut g = env.open(Arc::new(SystemClock));
    g.ban(&net("192.0.2.10/32"), None, BanTime::Seconds(600), "").unwrap();
    drop(g);
    env.set_sendmail(75);
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(0), "a mail failure does not fail the sync: {}", show(&out));
    let err = text(&out.stderr);
    assert!(err.contains("warning: notice about 192.0.2.10") && err.contains("exit code 75"), "{err}");
    assert!(err.contains("queue file write error") && err.contains("kept for the next sync"), "{err}");
    assert_eq!(env.mail(), "");
    let g = env.open(Arc::new(SystemClock));
    let pending = g.pending_notices().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].1, 1, "one try recorded");
    drop(g);
    // Still failing: still queued, tries counted.
    env.run(&["sync"]);
    assert_eq!(env.open(Arc::new(SystemClock)).pending_notices().unwrap()[0].1, 2);
    env.set_sendmail(0);
    let out = env.ok(&["sync"], 0);
    assert!(out.contains("mailed root about 192.0.2.10"), "{out}");
    assert!(env.mail().contains("192.0.2.10 banned on all services for 10m"));
    assert!(env.open(Arc::new(SystemClock)).pending_notices().unwrap().is_empty());
    // A sendmail that does not exist is a failure like any other.
    let mut g = env.open(Arc::new(SystemClock));
    g.ban(&net("192.0.2.11/32"), None, BanTime::Seconds(600), "").unwrap();
    drop(g);
    fs::remove_file(env.path("sendmail")).unwrap();
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(text(&out.stderr).contains("cannot run"), "{}", show(&out));
}

#[test]
fn ban_and_unban_change_the_store_and_sync_at_once() {
    if !require("ban_and_unban_change_the_store_and_sync_at_once", true, &[]) {
        return;
    }
    let env = Env::new("[services.sshd]\nbantime = \"2h\"\n");
    let out = env.ok(&["ban", "192.0.2.50", "--service", "sshd", "--reason", "manual test"], 0);
    assert!(out.starts_with("banned 192.0.2.50 on sshd for 2h (ban #1)\n"), "{out}");
    assert!(env.hosts_deny().contains("ALL: 192.0.2.50\n"), "{}", env.hosts_deny());
    let out = env.ok(&["ban", "2001:db8:7::/48", "--permanent"], 0);
    assert!(out.starts_with("banned 2001:db8:7::/48 on all services for permanent"), "{out}");
    assert!(env.hosts_deny().contains("ALL: [2001:db8:7::]/48\n"), "{}", env.hosts_deny());
    let list = env.ok(&["list"], 0);
    assert!(list.contains("manual: manual test") && list.contains("permanent"), "{list}");

    // Unban one address inside the /48: the network ban is lifted.
    let out = env.ok(&["unban", "2001:db8:7:1::1"], 0);
    assert!(out.contains("unbanned 2001:db8:7::/48 on all services (ban #2, manual)"), "{out}");
    assert!(!env.hosts_deny().contains("2001:db8:7"), "{}", env.hosts_deny());
    assert!(env.hosts_deny().contains("ALL: 192.0.2.50\n"));
    // --service that does not match leaves the sshd ban.
    env.ok(&["unban", "192.0.2.50", "--service", "vsftpd"], 1);
    assert!(env.hosts_deny().contains("ALL: 192.0.2.50\n"));
    let out = env.ok(&["unban", "192.0.2.50", "--json"], 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["lifted"][0]["host"], "192.0.2.50");
    assert!(!env.hosts_deny().contains("192.0.2.50"), "{}", env.hosts_deny());
    // Nothing left: exit 1.
    let out = env.ok(&["unban", "192.0.2.50"], 1);
    assert_eq!(out, "192.0.2.50 is not banned and has no failures counted\n");
    env.ok(&["unban", "--all"], 1);

    // Unban clears failures too (exit 0 even without a ban).
    let mut g = env.open(Arc::new(SystemClock));
    fail(&mut g, "sshd", "198.51.100.3", 2);
    drop(g);
    let out = env.ok(&["unban", "198.51.100.3"], 0);
    assert_eq!(out, "cleared 2 failures of 198.51.100.3 on sshd\n");
    assert!(env.ok(&["list", "--failures"], 0).lines().count() == 1);

    // --no-sync leaves the firewall to the next sync.
    env.ok(&["ban", "192.0.2.77", "--no-sync"], 0);
    assert!(!env.hosts_deny().contains("192.0.2.77"));
    env.ok(&["sync"], 0);
    assert!(env.hosts_deny().contains("ALL: 192.0.2.77\n"));
    env.ok(&["unban", "--all"], 0);
    assert!(!env.hosts_deny().contains("ALL:"), "{}", env.hosts_deny());
}

#[test]
fn dry_run_changes_nothing() {
    if !require("dry_run_changes_nothing", true, &[]) {
        return;
    }
    let env = Env::new("");
    let mut g = env.open(Arc::new(SystemClock));
    g.ban(&net("192.0.2.20/32"), None, BanTime::Seconds(600), "x").unwrap();
    drop(g);
    let db = env.load().database;
    let before = fs::read(&db).unwrap();
    let out = env.ok(&["sync", "--dry-run"], 0);
    assert!(out.contains("would block 192.0.2.20"), "{out}");
    assert!(out.contains("would mail root about 192.0.2.20"), "{out}");
    assert!(out.contains("# hosts.deny: would run") && out.contains("ALL: 192.0.2.20"), "{out}");
    assert_eq!(fs::read(&db).unwrap(), before);
    assert!(!env.path("hosts.deny").exists());
    assert!(!env.path("run").exists(), "no lock or state file");
    assert_eq!(env.mail(), "");
    let g = env.open(Arc::new(SystemClock));
    assert_eq!(g.pending_notices().unwrap().len(), 1);
    assert!(g.bans(None, false).unwrap()[0].pushed.is_none());
}

#[test]
fn concurrent_syncs_wait_skip_and_never_corrupt() {
    if !require("concurrent_syncs_wait_skip_and_never_corrupt", true, &[]) {
        return;
    }
    let env = Env::new("");
    let mut g = env.open(Arc::new(SystemClock));
    for i in 1..=20 {
        g.ban(&net(&format!("192.0.2.{i}/32")), None, BanTime::Seconds(600), "").unwrap();
    }
    drop(g);
    // Another holder keeps the lock: the sync waits a few seconds, then
    // exits 0 saying so, having changed nothing.
    fs::create_dir_all(env.path("run")).unwrap();
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(env.path("run/sync.lock"))
        .unwrap();
    lock.try_lock().unwrap();
    let t = Instant::now();
    let out = env.ok(&["sync"], 0);
    assert!(out.contains("another sync holds") && out.contains("skipped"), "{out}");
    assert!(t.elapsed() >= Duration::from_secs(2), "it waited");
    assert!(!env.path("hosts.deny").exists());
    drop(lock);
    // Several at once: all succeed, the result is exactly the ban set.
    let children: Vec<_> = (0..4)
        .map(|_| {
            env.command(&["sync", "--quiet"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    }
    let deny = env.hosts_deny();
    assert_eq!(deny.matches("ALL: ").count(), 20, "{deny}");
    assert_eq!(deny.matches("# BEGIN banguard").count(), 1, "{deny}");
    assert_eq!(env.mail().matches("Subject: ").count(), 20, "each notice mailed exactly once");
}

#[test]
fn sync_logs_expiries_and_unbans_since_the_last_run() {
    if !require("sync_logs_expiries_and_unbans_since_the_last_run", true, &[]) {
        return;
    }
    let env = Env::new("");
    let now = SystemClock.now();
    // A manual ban pushed earlier that expired 400 s ago.
    let clock = ManualClock::new(now - 1000);
    let mut g = env.open(clock.clone());
    let ban = g.ban(&net("198.51.100.44/32"), None, BanTime::Seconds(600), "old").unwrap();
    g.mark_pushed(&[ban.id]).unwrap();
    drop(g);
    env.set_sendmail(0);
    fs::create_dir_all(env.path("run")).unwrap();
    // What the last sync (500 s ago) left in hosts.deny.
    let state = serde_json::json!({
        "last_sync": now - 500,
        "applied": { format!("hosts.deny:{}", env.path("hosts.deny").display()):
            [{ "net": "198.51.100.44/32", "expires_at": now - 400 }] },
    });
    fs::write(env.path("run/sync.state"), state.to_string()).unwrap();
    let out = env.ok(&["sync"], 0);
    assert!(
        out.contains(&format!(
            "ban #{} expired: 198.51.100.44 (all services, manual: old, 0 failures, until ",
            ban.id
        )),
        "{out}"
    );
    assert!(out.contains("after 10m; unblock in hosts.deny"), "{out}");
    // The same expiry is not reported twice.
    assert!(!env.ok(&["sync"], 0).contains("expired"));
}

/// Binds a datagram socket, makes it the syslog socket of a private mount
/// namespace, and runs banguardctl there.
#[test]
fn actions_reach_syslog_as_authpriv() {
    if !require("actions_reach_syslog_as_authpriv", true, &["unshare", "mount", "mknod", "sh"]) {
        return;
    }
    let env = Env::new("");
    let sock_path = env.path("log.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    // libc's syslog writes to /dev/log: bound over the machine's one if it
    // has one; else on a private tmpfs over /dev (with /dev/null).
    let script = if Path::new("/dev/log").exists() {
        "mount --bind \"$1\" /dev/log && shift && exec \"$@\"".to_string()
    } else {
        "mount -t tmpfs tmpfs /dev && mknod -m 666 /dev/null c 1 3 && : > /dev/log && \
         mount --bind \"$1\" /dev/log && shift && exec \"$@\""
            .to_string()
    };
    let ctl = artifacts().banguardctl.display().to_string();
    let cfg = env.config.display().to_string();
    let run = |args: &[&str]| {
        let out = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script, "sh"])
            .arg(&sock_path)
            .args([ctl.as_str(), "--config", cfg.as_str()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", show(&out));
    };
    run(&["ban", "192.0.2.9", "--for", "1h", "--reason", "evil"]);
    run(&["unban", "192.0.2.9"]);
    let mut lines = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok(n) = sock.recv(&mut buf) {
        lines.push(text(&buf[..n]));
    }
    let all = lines.join("\n");
    // authpriv (10) * 8 + notice (5) = 85.
    let find = |needle: &str| {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in:\n{all}"))
            .clone()
    };
    let ban = find("ban 192.0.2.9 on all services for 1h");
    assert!(ban.starts_with("<85>") && ban.contains("banguardctl["), "{ban}");
    assert!(ban.contains("by uid 0"), "{ban}");
    find("block 192.0.2.9 (all services, manual: evil");
    find("mailed root about 192.0.2.9");
    find("unban 192.0.2.9 on all services (ban #1");
    find("unblock 192.0.2.9 (ban #1 lifted) in hosts.deny");
}

/// A store held locked by another writer: the CLI retries, then either
/// succeeds once the lock goes or fails with one clear line.
#[test]
fn busy_store_is_retried_then_reported() {
    if !require("busy_store_is_retried_then_reported", true, &[]) {
        return;
    }
    let env = Env::new("[store]\nbusy_timeout_ms = 100\n");
    let g = env.open(Arc::new(SystemClock));
    let runtime = banguard_e2e::fixture::sql(g.store().runtime_path());
    let durable = banguard_e2e::fixture::sql(g.store().path());
    // A ban change takes the runtime state's lock first, then the store's.
    runtime.execute_batch("BEGIN IMMEDIATE").unwrap();
    let out = env.run(&["ban", "192.0.2.5", "--no-sync"]);
    bad(&out, "locked");
    // Released while the CLI retries: it succeeds.
    let child = env
        .command(&["ban", "192.0.2.5", "--no-sync"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(250));
    runtime.execute_batch("COMMIT").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    // Reads are never blocked by a writer holding both files.
    runtime.execute_batch("BEGIN IMMEDIATE").unwrap();
    durable.execute_batch("BEGIN IMMEDIATE").unwrap();
    assert!(env.ok(&["list"], 0).contains("192.0.2.5"));
    durable.execute_batch("COMMIT").unwrap();
    runtime.execute_batch("COMMIT").unwrap();
}

// ------------------------------------------------------------------ conf/

#[test]
fn shipped_config_is_the_built_in_defaults() {
    let path = workspace_root().join("conf/banguard.toml");
    let mut shipped = Config::load(&path).expect("conf/banguard.toml loads");
    assert_eq!(shipped.files, vec![path.clone()]);
    shipped.files.clear();
    assert_eq!(shipped, Config::default());
    // Every key the core knows appears in the file, set to its default or
    // (services) as a commented example; a key added to the core without
    // documenting it here fails this test.
    let text = fs::read_to_string(&path).unwrap();
    let json = serde_json::to_value(Config::default()).unwrap();
    let mut keys = vec!["database".to_string(), "[services.sshd]".to_string()];
    for section in ["default", "recidive", "sync", "mail", "store"] {
        assert!(section == "default" || text.contains(&format!("\n[{section}]\n")), "[{section}] missing");
        keys.extend(json[section].as_object().unwrap().keys().cloned());
    }
    for key in keys {
        assert!(
            text.contains(&format!("\n{key} = ")) || text.contains(&format!("# {key}")),
            "conf/banguard.toml does not document `{key}`"
        );
    }
    let out = Command::new(&artifacts().banguardctl)
        .arg("--config")
        .arg(&path)
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}

#[test]
fn cron_file_runs_sync_every_minute_as_root() {
    let text = fs::read_to_string(workspace_root().join("conf/cron.d/banguard")).unwrap();
    let jobs: Vec<&str> =
        text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#') && !l.contains('=')).collect();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let f: Vec<&str> = jobs[0].split_whitespace().collect();
    assert_eq!(&f[..6], &["*", "*", "*", "*", "*", "root"], "{f:?}");
    assert!(jobs[0].contains("banguardctl sync --quiet"));
}

#[test]
fn systemd_units_verify() {
    if !require("systemd_units_verify", false, &["systemd-analyze"]) {
        return;
    }
    let analyze = find_program("systemd-analyze").expect("checked by require");
    let dir = tempfile::tempdir().unwrap();
    let ctl = artifacts().banguardctl.display().to_string();
    let mut units = Vec::new();
    for name in ["banguard-sync.service", "banguard-sync.timer", "banguard-sync.path"] {
        let text = fs::read_to_string(workspace_root().join("conf/systemd").join(name)).unwrap();
        // Verify checks that ExecStart exists: point it at the built binary.
        fs::write(dir.path().join(name), text.replace("/usr/sbin/banguardctl", &ctl)).unwrap();
        units.push(dir.path().join(name));
    }
    let out = Command::new(analyze)
        .args(["verify", "--man=no"])
        .args(&units)
        .current_dir(dir.path())
        .output()
        .unwrap();
    // Warnings about the machine's own units are not ours to judge.
    assert!(out.status.success() && !text(&out.stderr).contains("banguard"), "{}", show(&out));
    let path = fs::read_to_string(workspace_root().join("conf/systemd/banguard-sync.path")).unwrap();
    assert!(path.contains(&format!("PathChanged={}", Config::default().sync.trigger_file.display())));
}

/// The sync job drives a kernel back-end end to end (inside a throwaway
/// network namespace): push, no-change run, unban removes the element.
#[test]
fn sync_drives_nftables_in_a_namespace() {
    if !require("sync_drives_nftables_in_a_namespace", true, &["unshare", "nsenter", "ip", "nft"]) {
        return;
    }
    let env = Env::new("");
    let cfg = env.path("nft.toml");
    let toml = fs::read_to_string(&env.config).unwrap().replace("[\"hosts.deny\"]", "[\"nftables\"]");
    fs::write(&cfg, toml).unwrap();
    let ns = banguard_e2e::Netns::new();
    let ctl = |args: &[&str]| {
        let mut argv =
            vec![artifacts().banguardctl.display().to_string(), "--config".into(), cfg.display().to_string()];
        argv.extend(args.iter().map(|s| s.to_string()));
        let out = ns.run(&argv);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", show(&out));
        text(&out.stdout)
    };
    let out = ctl(&["ban", "192.0.2.33", "--for", "1h"]);
    assert!(out.contains("firewall nftables: add 1"), "{out}");
    let rules = text(&ns.run_ok(["nft", "list", "table", "inet", "banguard"]).stdout);
    assert!(rules.contains("192.0.2.33"), "{rules}");
    assert_eq!(ctl(&["sync"]), "", "nothing changed: nothing done");
    let out = ctl(&["unban", "192.0.2.33"]);
    assert!(out.contains("unblock 192.0.2.33 (ban #1 lifted) in nftables"), "{out}");
    let rules = text(&ns.run_ok(["nft", "list", "table", "inet", "banguard"]).stdout);
    assert!(!rules.contains("192.0.2.33"), "{rules}");
}

/// A back-end that fails makes the sync exit 2 with one line; bans stay
/// `pending`, notices are still mailed, and a later good run catches up.
#[test]
fn failing_backend_exits_2_and_bans_stay_pending() {
    if !require("failing_backend_exits_2_and_bans_stay_pending", true, &[]) {
        return;
    }
    let env = Env::new("");
    let good = fs::read_to_string(&env.config).unwrap();
    let broken = good.replace(
        &format!("hosts_deny = \"{}\"", env.path("hosts.deny").display()),
        &format!("hosts_deny = \"{}\"", env.path("missing/dir/hosts.deny").display()),
    );
    assert_ne!(good, broken);
    fs::write(&env.config, broken).unwrap();
    let mut g = env.open(Arc::new(SystemClock));
    g.ban(&net("192.0.2.60/32"), None, BanTime::Seconds(600), "").unwrap();
    drop(g);
    let out = env.run(&["sync", "--quiet"]);
    bad(&out, "sync failed: hosts.deny: ");
    assert!(env.mail().contains("192.0.2.60 banned on all services"), "mail still goes out");
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["list", "--json"], 0)).unwrap();
    assert_eq!(v["bans"][0]["firewall"], "pending");
    fs::write(&env.config, good).unwrap();
    let out = env.ok(&["sync"], 0);
    assert!(out.contains("block 192.0.2.60"), "{out}");
    assert!(env.hosts_deny().contains("ALL: 192.0.2.60\n"));
}

/// A command with nothing to do leaves no trace: `unban` on a machine
/// where nothing was ever recorded creates no store and touches no
/// firewall or hosts.deny.
#[test]
fn unban_without_a_store_leaves_no_trace() {
    if !require("unban_without_a_store_leaves_no_trace", true, &[]) {
        return;
    }
    let env = Env::new("");
    let out = env.ok(&["unban", "192.0.2.1"], 1);
    assert_eq!(out, "192.0.2.1 is not banned and has no failures counted\n");
    for left in ["db", "hosts.deny", "run"] {
        assert!(!env.path(left).exists(), "{left} was created");
    }
}

/// Every host key `list` prints is accepted back by `unban`, `test` and
/// `history`, and a name label never reads like an address.
#[test]
fn every_listed_key_is_accepted_back() {
    if !require("every_listed_key_is_accepted_back", true, &[]) {
        return;
    }
    let env = Env::new("[services.sshd]\nmaxretry = 5\n");
    let mut g = env.open(Arc::new(banguard::policy::SystemClock));
    for rhost in ["a b", "127.1", "1.2.3"] {
        g.record_failure(&Request { service: "sshd", rhost: Some(rhost), hint: None, user: None }).unwrap();
    }
    drop(g);
    let list = env.ok(&["list", "--failures"], 0);
    for shown in ["name:a?b", "name:127.1", "name:1.2.3"] {
        assert!(list.contains(&format!("\n{shown} ")), "{shown} in:\n{list}");
        let test = env.ok(&["test", shown, "sshd"], 0);
        assert!(test.contains("1 of 5") || test.contains("1/5"), "test {shown}:\n{test}");
        let history = env.run(&["history", shown]);
        assert!(matches!(history.status.code(), Some(0 | 1)), "history {shown}: {}", show(&history));
        let out = env.ok(&["unban", shown], 0);
        assert!(out.contains(&format!("cleared 1 failures of {shown} on sshd")), "{out}");
    }
    assert!(!env.ok(&["list", "--failures"], 0).contains("name:"), "all cleared");
}

/// A manual ban around an ignored address is made, and the firewall
/// (hosts.deny here) leaves the ignored address out, as for an automatic
/// ban; one wholly inside ignoreip is refused.
#[test]
fn a_manual_ban_leaves_ignored_hosts_out_of_the_firewall() {
    if !require("a_manual_ban_leaves_ignored_hosts_out_of_the_firewall", true, &[]) {
        return;
    }
    let env = Env::new("ignoreip = [\"127.0.0.0/8\", \"::1\", \"192.0.2.10\", \"198.51.100.0/24\"]\n");
    let out = env.ok(&["ban", "192.0.2.0/24"], 0);
    assert!(out.contains("left out (ignoreip or loopback, never blocked): 192.0.2.10/32"), "{out}");
    let deny = env.hosts_deny();
    assert!(!deny.contains("192.0.2.0/255.255.255.0"), "the whole /24 must not be denied:\n{deny}");
    assert!(deny.contains("192.0.2.0/255.255.255.248") && deny.contains("192.0.2.11"), "{deny}");
    let out = env.run(&["ban", "198.51.100.7"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        text(&out.stderr).contains("lies inside 198.51.100.0/24 (ignoreip or loopback)"),
        "{}",
        show(&out)
    );
}

/// A name copied from sshd's log (`UseDNS yes`): `test`, `history` and
/// `unban` answer for the addresses it resolves to (through a hosts file
/// bind-mounted in a private mount namespace), because sshd's attempts
/// count by address; a name that does not resolve is said so.
#[test]
fn a_name_from_sshds_log_is_answered_by_the_addresses_it_resolves_to() {
    if !require(
        "a_name_from_sshds_log_is_answered_by_the_addresses_it_resolves_to",
        true,
        &["unshare", "mount"],
    ) {
        return;
    }
    let env = scenario();
    let hosts = env.path("hosts");
    fs::write(&hosts, "127.0.0.1 localhost\n198.51.100.7 bad.example.test\n198.51.100.99 ok.example.test\n")
        .unwrap();
    // banguardctl in a namespace whose /etc/hosts is ours.
    let run = |args: &[&str], now: bool| -> Output {
        let mut script = format!("mount --bind '{}' /etc/hosts && exec", hosts.display());
        script.push_str(&format!(
            " '{}' --config '{}'",
            artifacts().banguardctl.display(),
            env.config.display()
        ));
        for a in args {
            script.push_str(&format!(" '{a}'"));
        }
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
        c.env("TZ", "UTC").env_remove("SUDO_USER").stdin(Stdio::null());
        if now {
            c.env("BANGUARD_NOW", NOW.to_string());
        } else {
            c.env_remove("BANGUARD_NOW");
        }
        c.output().unwrap()
    };
    let out = run(&["test", "bad.example.test", "sshd"], true);
    let o = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(o.contains("access:   denied"), "{o}");
    assert!(o.contains("sshd counts its attempts by the client's address"), "{o}");
    assert!(o.contains("bad.example.test resolves to 198.51.100.7 now"), "{o}");
    assert!(o.contains("  198.51.100.7: denied: banned on sshd"), "{o}");
    let out = run(&["test", "ok.example.test", "sshd"], true);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(text(&out.stdout).contains("  198.51.100.99: granted"), "{}", show(&out));
    let out = run(&["test", "nowhere.invalid", "sshd"], true);
    assert!(text(&out.stdout).contains("nowhere.invalid could not be resolved"), "{}", show(&out));
    // A label stays a label: no lookup.
    let out = run(&["test", "name:bad.example.test", "sshd"], true);
    assert!(!text(&out.stdout).contains("resolves to"), "{}", show(&out));
    let out = run(&["history", "bad.example.test"], true);
    assert!(text(&out.stdout).contains("198.51.100.7"), "{}", show(&out));
    // unban by name lifts the address's ban.
    let out = run(&["unban", "bad.example.test", "--no-sync"], false);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(text(&out.stdout).contains("unbanned 198.51.100.7"), "{}", show(&out));
    assert!(env.load().policy("sshd").enabled);
    let g = Banguard::open_with(env.load(), Access::ReadOnly, Arc::new(SystemClock)).unwrap();
    assert!(!g.bans(None, false).unwrap().iter().any(|b| b.host == net("198.51.100.7/32")));
}
