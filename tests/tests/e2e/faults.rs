//! Fault injection: the store missing, on a read-only or full file system,
//! corrupt, from a newer banguard, locked by another process; writers
//! killed with SIGKILL mid-transaction; the clock stepped back and forth.
//! "The store" is both files: the store proper (bans, history) and the
//! runtime state (attempts, the module's copy of the bans), which the
//! fixture keeps next to it (the default when `database` is set).
//!
//! For each store fault the real `pam_banguard.so` (through libpam with
//! `pam_start_confdir`, stack = banguard line + pam_permit) must follow
//! `failmode` (open: a right password from a clean host logs in; closed:
//! refused), the real `banguardctl` must print one clear line with exit 2
//! (or work, where reading is still possible), nothing may panic, and once
//! the fault is gone everything recorded before is there again.
//!
//! Faults that need a mount (read-only, full) run inside a
//! [`banguard_e2e::Netns`]: the login is then made by this test binary
//! re-executed in the namespace (`fault_child`, driven by environment
//! variables), since mounts of the namespace are invisible outside it.

use banguard::policy::{ManualClock, SystemClock};
use banguard::store::Access;
use banguard::{Banguard, Config, HostKey, Request, Verdict};
use banguard_e2e::fixture::ConfigFile;
use banguard_e2e::pamtest::*;
use banguard_e2e::{Netns, artifacts, require};
use std::ffi::c_int;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A clean host that logs in with the right password.
const CLEAN: &str = "198.51.100.7";
/// A host with failures recorded before the fault.
const FAILING: &str = "192.0.2.50";
/// A host banned before the fault.
const BANNED: &str = "203.0.113.9";
/// Environment of the re-executed child (see `fault_child`).
const CHILD_ENV: &str = "BANGUARD_FAULT_CHILD";

/// One scenario: config, store paths, PAM service files.
struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
    confdir: PathBuf,
    db: PathBuf,
    runtime: PathBuf,
}

impl Fixture {
    /// `db` is relative to the fixture's root.
    fn new(db: &str) -> Fixture {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().to_path_buf();
        let f = Fixture {
            config: root.join("banguard.toml"),
            confdir: root.join("pam.d"),
            db: root.join(db),
            runtime: banguard::config::default_runtime(&root.join(db)),
            root,
            _tmp: tmp,
        };
        ConfigFile::under(&f.root)
            .database(&f.db)
            .with("maxretry = 5\nfindtime = \"1w\"\nbantime = \"1d\"\n[recidive]\nenabled = false\n[store]\nbusy_timeout_ms = 200")
            .write(&f.config);
        let module = artifacts().pam_module.display().to_string();
        let cfg = f.config.display().to_string();
        let conf = Confdir::new(&f.confdir);
        for mode in ["open", "closed"] {
            conf.service(
                &format!("sshd-{mode}"),
                &[
                    format!("auth requisite {module} config={cfg} service=sshd failmode={mode}"),
                    "auth required pam_permit.so".into(),
                    "account required pam_permit.so".into(),
                ],
            );
        }
        f
    }

    fn config(&self) -> Config {
        Config::load(&self.config).expect("config")
    }

    /// Records 3 failures of FAILING and a ban of BANNED on sshd.
    fn seed(&self) {
        let mut bg = Banguard::open(self.config()).expect("open store to seed");
        for _ in 0..3 {
            let v = bg.record_failure(&req(FAILING)).unwrap();
            assert!(matches!(v, Verdict::Allowed { .. }), "{v:?}");
        }
        bg.ban(&host(BANNED), Some("sshd"), banguard::duration::BanTime::Seconds(86_400), "seed").unwrap();
    }

    /// Everything `seed` recorded is there.
    fn assert_seeded(&self) {
        let bg = Banguard::open_with(self.config(), Access::ReadOnly, Arc::new(SystemClock))
            .expect("store readable again after the fault");
        let failing = bg.failing(Some("sshd")).unwrap();
        let f = failing.iter().find(|f| f.host == host(FAILING)).expect("failures kept");
        assert_eq!(f.count, 3, "{failing:?}");
        let bans = bg.bans(Some("sshd"), false).unwrap();
        assert!(bans.iter().any(|b| b.host == host(BANNED)), "ban kept: {bans:?}");
        for file in [bg.store().runtime_path(), bg.store().path()] {
            let conn = banguard_e2e::fixture::sql(file);
            let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
            assert_eq!(ok, "ok");
        }
    }

    /// The seeded ban is in the (rebuilt) runtime state's copy: a reboot
    /// keeps bans, not failure counts.
    fn assert_seeded_bans(&self) {
        let bg = Banguard::open_with(self.config(), Access::ReadOnly, Arc::new(SystemClock)).unwrap();
        let mirrored: i64 = banguard_e2e::fixture::sql(bg.store().runtime_path())
            .query_row("SELECT count(*) FROM bans WHERE host = ?1", [host(BANNED).db_key()], |r| r.get(0))
            .unwrap();
        assert_eq!(mirrored, 1, "the ban was copied into the runtime state once");
    }

    /// One login with the right password from CLEAN, in this process.
    fn login(&self, mode: &str) -> (c_int, Duration) {
        login(&self.confdir, mode)
    }

    /// The same login, made by this test binary run inside `ns`.
    fn login_in(&self, ns: &Netns, mode: &str) -> (c_int, Duration) {
        let out = child(ns, &[("login", mode), ("confdir", &self.confdir.display().to_string())]);
        let rc = field(&out, "RC").expect("child printed RC");
        let ms = field(&out, "MS").expect("child printed MS");
        (rc as c_int, Duration::from_millis(ms as u64))
    }

    /// Asserts the module follows failmode for the current fault.
    fn assert_failmode(&self, what: &str, run: impl Fn(&str) -> (c_int, Duration)) {
        let (open, _) = run("open");
        assert_eq!(
            open,
            PAM_SUCCESS,
            "{what}: failmode=open must let the right password in: {}",
            code_name(open)
        );
        let (closed, _) = run("closed");
        assert_eq!(closed, PAM_PERM_DENIED, "{what}: failmode=closed must refuse: {}", code_name(closed));
    }

    fn ctl(&self, ns: Option<&Netns>, args: &[&str]) -> Output {
        let bin = artifacts().banguardctl.display().to_string();
        let cfg = self.config.display().to_string();
        let mut argv = vec![bin.as_str(), "--config", cfg.as_str()];
        argv.extend(args);
        match ns {
            Some(ns) => ns.run(&argv),
            None => Command::new(argv[0]).args(&argv[1..]).stdin(Stdio::null()).output().unwrap(),
        }
    }

    /// banguardctl list and status: exit 2 with exactly one line on stderr
    /// (containing `needle`), or, where the store can still be read, exit 0.
    fn assert_ctl(&self, what: &str, ns: Option<&Netns>, may_work: bool, needle: &str) {
        for args in [&["list"][..], &["status"]] {
            let out = self.ctl(ns, args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            eprintln!("{what}: banguardctl {args:?} -> {}: {}", out.status, stderr.trim());
            assert!(!stderr.contains("panicked"), "{what}: banguardctl {args:?} panicked: {stderr}");
            if may_work && out.status.success() {
                continue;
            }
            assert_eq!(out.status.code(), Some(2), "{what}: banguardctl {args:?}: {stderr}");
            assert_eq!(stderr.lines().count(), 1, "{what}: banguardctl {args:?} must say one line: {stderr}");
            assert!(stderr.starts_with("banguardctl: "), "{what}: {stderr}");
            assert!(stderr.contains(needle), "{what}: {args:?} should say {needle:?}: {stderr}");
        }
    }
}

fn req(rhost: &str) -> Request<'_> {
    Request { service: "sshd", rhost: Some(rhost), hint: None, user: Some("alice") }
}

fn host(a: &str) -> HostKey {
    HostKey::for_addr(a.parse().unwrap(), 32, 64)
}

fn login(confdir: &Path, mode: &str) -> (c_int, Duration) {
    let start = Instant::now();
    let mut p = Pam::start(confdir, &format!("sshd-{mode}"), "alice");
    p.rhost(CLEAN);
    let rc = p.try_password("right");
    if rc == PAM_SUCCESS {
        p.setcred(PAM_ESTABLISH_CRED);
    }
    drop(p);
    (rc, start.elapsed())
}

/// Runs `fault_child` of this binary (inside `ns`) with `vars`.
fn child(ns: &Netns, vars: &[(&str, &str)]) -> String {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = ns.command([
        exe.as_os_str(),
        "--exact".as_ref(),
        "faults::fault_child".as_ref(),
        "--nocapture".as_ref(),
    ]);
    cmd.env(CHILD_ENV, "1");
    for (k, v) in vars {
        cmd.env(format!("{CHILD_ENV}_{}", k.to_uppercase()), v);
    }
    let out = cmd.stdin(Stdio::null()).output().expect("run child");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "child {vars:?} failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    text
}

fn field(out: &str, name: &str) -> Option<i64> {
    out.split_whitespace().find_map(|w| w.strip_prefix(&format!("{name}="))?.parse().ok())
}

/// The other half of `child`: does nothing unless re-executed by a test.
#[test]
fn fault_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let var = |k: &str| std::env::var(format!("{CHILD_ENV}_{}", k.to_uppercase())).ok();
    let mut out = std::io::stdout().lock();
    if let (Some(mode), Some(confdir)) = (var("login"), var("confdir")) {
        let (rc, took) = login(Path::new(&confdir), &mode);
        writeln!(out, "RC={rc} MS={}", took.as_millis()).unwrap();
    }
    for (mode, config) in [("seed", var("seed")), ("verify", var("verify"))] {
        let Some(config) = config.map(PathBuf::from) else { continue };
        let c = Config::load(&config).unwrap();
        let f = Fixture {
            _tmp: tempfile::tempdir().unwrap(),
            root: config.parent().unwrap().to_path_buf(),
            confdir: PathBuf::new(),
            db: c.database.clone(),
            runtime: c.store.runtime.clone(),
            config,
        };
        if mode == "seed" {
            f.seed()
        } else {
            f.assert_seeded()
        }
        writeln!(out, "{mode} done").unwrap();
    }
    if let Some(config) = var("writer") {
        // Records failures of distinct hosts forever, printing the id of
        // each one after its transaction committed; killed by the test.
        let config = Config::load(Path::new(&config)).unwrap();
        let worker: u32 = var("worker").unwrap().parse().unwrap();
        for i in 0u32.. {
            let mut bg = Banguard::open(config.clone()).unwrap();
            let rhost = format!("10.{}.{}.{}", worker % 256, (i / 256) % 256, i % 256);
            match bg.record_failure(&req(&rhost)).unwrap() {
                Verdict::Allowed { attempt: Some(id), .. } => writeln!(out, "ID {}", id.0).unwrap(),
                // maxretry = 1: every failure makes a ban (both files written).
                Verdict::Refused { ban, new: true, .. } => writeln!(out, "BAN {}", ban.id).unwrap(),
                other => panic!("{other:?}"),
            }
            out.flush().unwrap();
        }
    }
    out.flush().unwrap();
}

fn mount(ns: &Netns, args: &[&str]) {
    let mut argv = vec!["mount"];
    argv.extend(args);
    ns.run_ok(argv);
}

// ------------------------------------------------------------ the faults

#[test]
fn missing_directory_is_created_but_a_missing_parent_follows_failmode() {
    if !require("missing_directory", true, &[]) {
        return;
    }
    // One level missing: created (0700) on first use, the login works even
    // with failmode=closed.
    let f = Fixture::new("newdir/banguard.db");
    let (rc, _) = f.login("closed");
    assert_eq!(rc, PAM_SUCCESS, "{}", code_name(rc));
    assert!(f.db.exists());
    assert_eq!(fs::metadata(f.db.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(fs::metadata(&f.db).unwrap().permissions().mode() & 0o777, 0o600);

    // Two levels missing, and a parent that is a file: failmode.
    for (db, what) in [("no/such/banguard.db", "parent missing"), ("afile/banguard.db", "parent is a file")] {
        let f = Fixture::new(db);
        fs::write(f.root.join("afile"), "x").unwrap();
        f.assert_failmode(what, |m| f.login(m));
        assert!(!f.db.exists());
        // Nothing to read: banguardctl reads a missing store as empty.
        f.assert_ctl(what, None, true, "");
    }
}

#[test]
fn read_only_file_system() {
    if !require("read_only_file_system", true, &["unshare", "nsenter", "mount"]) {
        return;
    }
    let f = Fixture::new("db/banguard.db");
    fs::create_dir(f.root.join("db")).unwrap();
    let ns = Netns::new();
    let dir = f.root.join("db").display().to_string();
    mount(&ns, &["-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", &dir]);
    child_seed(&f, &ns);
    assert_eq!(f.login_in(&ns, "closed").0, PAM_SUCCESS, "healthy store: closed lets the right password in");
    mount(&ns, &["-o", "remount,ro", &dir]);
    f.assert_failmode("read-only fs", |m| f.login_in(&ns, m));
    f.assert_ctl("read-only fs", Some(&ns), true, "database");
    // A store still to be created in a directory that cannot be written.
    let g = Fixture::new("db/banguard.db");
    fs::create_dir(g.root.join("db")).unwrap();
    let gdir = g.root.join("db").display().to_string();
    mount(&ns, &["-t", "tmpfs", "-o", "ro,size=1m,mode=0700", "tmpfs", &gdir]);
    g.assert_failmode("read-only fs, no store yet", |m| g.login_in(&ns, m));
    mount(&ns, &["-o", "remount,rw", &dir]);
    child_verify(&f, &ns);
    assert_eq!(f.login_in(&ns, "closed").0, PAM_SUCCESS, "fault removed: logins work again");
}

#[test]
fn full_disk() {
    if !require("full_disk", true, &["unshare", "nsenter", "mount", "dd"]) {
        return;
    }
    let f = Fixture::new("db/banguard.db");
    fs::create_dir(f.root.join("db")).unwrap();
    let ns = Netns::new();
    let dir = f.root.join("db").display().to_string();
    mount(&ns, &["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", &dir]);
    child_seed(&f, &ns);
    let fill = format!("{dir}/fill");
    // dd stops with ENOSPC (exit 1): that is the point.
    let _ = ns.run(["dd", "if=/dev/zero", &format!("of={fill}"), "bs=4k"]);
    f.assert_failmode("full disk", |m| f.login_in(&ns, m));
    f.assert_ctl("full disk", Some(&ns), true, "no space left on");
    // A write says what is wrong, not "disk I/O error".
    let out = f.ctl(Some(&ns), &["ban", "192.0.2.99", "--no-sync"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("no space left on {dir}")), "{stderr}");
    ns.run_ok(["rm", "-f", &fill]);
    child_verify(&f, &ns);
    assert_eq!(f.login_in(&ns, "closed").0, PAM_SUCCESS, "fault removed: logins work again");
}

/// Seeds and verifies through this binary inside the namespace.
fn child_seed(f: &Fixture, ns: &Netns) {
    child(ns, &[("seed", &f.config.display().to_string())]);
}

fn child_verify(f: &Fixture, ns: &Netns) {
    child(ns, &[("verify", &f.config.display().to_string())]);
}

/// Damages the store file at the path.
type Corruption = Box<dyn Fn(&Path)>;

#[test]
fn corrupt_store() {
    if !require("corrupt_store", true, &[]) {
        return;
    }
    let mut random = vec![0u8; 16 * 1024];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in &mut random {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let corruptions: [(&str, Corruption); 3] = [
        ("random bytes", Box::new(move |p: &Path| fs::write(p, &random).unwrap())),
        ("a text file", Box::new(|p: &Path| fs::write(p, "[default]\nmaxretry = 5\n".repeat(100)).unwrap())),
        (
            "truncated to half",
            Box::new(|p: &Path| {
                let len = fs::metadata(p).unwrap().len();
                fs::OpenOptions::new().write(true).open(p).unwrap().set_len(len / 2).unwrap();
            }),
        ),
    ];
    for (what, corrupt) in corruptions {
        let f = Fixture::new("db/banguard.db");
        f.seed();
        // Enough pages that half of the file cuts into the tables.
        {
            let mut bg = Banguard::open(f.config()).unwrap();
            for i in 0..400 {
                bg.record_failure(&req(&format!("10.9.{}.{}", i / 256, i % 256))).unwrap();
            }
            bg.maintain().unwrap();
        }
        assert!(!Path::new(&format!("{}-wal", f.db.display())).exists(), "WAL checkpointed on close");
        for file in [&f.db, &f.runtime] {
            let what = format!("{what} ({})", file.file_name().unwrap().to_string_lossy());
            let backup = f.root.join("backup.db");
            fs::copy(file, &backup).unwrap();
            corrupt(file);
            if file == &f.db {
                // The runtime state is whole: logins go on, counted, and the
                // banned host stays refused; only a new ban needs the store.
                assert_eq!(f.login("closed").0, PAM_SUCCESS, "{what}: the runtime state carries on");
                let mut bg = Banguard::open(f.config()).unwrap();
                assert!(bg.attempt(&req(BANNED), None).unwrap().is_refused(), "{what}: ban kept");
                let e = bg.ban(&host(FAILING), None, banguard::duration::BanTime::Seconds(60), "").err();
                assert!(
                    e.is_some_and(|e| e.to_string().contains("corrupt")),
                    "{what}: a ban needs the store"
                );
                // After a reboot the runtime state must be rebuilt from it.
                let runtime_backup = f.root.join("runtime-backup.db");
                fs::rename(&f.runtime, &runtime_backup).unwrap();
                f.assert_failmode(&what, |m| f.login(m));
                fs::rename(&runtime_backup, &f.runtime).unwrap();
            } else {
                f.assert_failmode(&what, |m| f.login(m));
            }
            f.assert_ctl(&what, None, false, "corrupt");
            // The advice: move it aside, banguard creates a new one.
            fs::rename(file, f.root.join("corrupt.db")).unwrap();
            let (rc, _) = f.login("closed");
            assert_eq!(rc, PAM_SUCCESS, "{what}: a new file after moving the corrupt one aside");
            // And the old data is whole when the good file comes back (the
            // login above needed no new store: the runtime state sufficed).
            let _ = fs::remove_file(file);
            fs::rename(&backup, file).unwrap();
            f.assert_seeded();
        }
    }
}

#[test]
fn schema_from_a_newer_banguard() {
    if !require("schema_from_a_newer_banguard", true, &[]) {
        return;
    }
    let f = Fixture::new("db/banguard.db");
    f.seed();
    let set_version = |file: &Path, v: i64| {
        let c = rusqlite::Connection::open(file).unwrap();
        c.pragma_update(None, "user_version", v).unwrap();
    };
    let version = |file: &Path| -> i64 {
        rusqlite::Connection::open(file)
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    };
    // A newer banguard wrote the runtime state: the module must not use it.
    set_version(&f.runtime, 99);
    f.assert_failmode("runtime schema 99", |m| f.login(m));
    assert_eq!(version(&f.runtime), 99, "an old banguard must not touch a newer runtime state");
    set_version(&f.runtime, banguard::store::RUNTIME_SCHEMA_VERSION);
    // A newer store: everything that reads it refuses, and a new ban fails.
    set_version(&f.db, 99);
    f.assert_ctl("schema 99", None, false, "upgrade banguard");
    let mut bg = Banguard::open(f.config()).unwrap();
    let e = bg.ban(&host(FAILING), None, banguard::duration::BanTime::Seconds(60), "").err();
    assert!(e.is_some_and(|e| e.to_string().contains("upgrade banguard")), "a ban needs the store");
    assert_eq!(version(&f.db), 99, "an old banguard must not touch a newer store");
    set_version(&f.db, banguard::store::SCHEMA_VERSION);
    f.assert_seeded();
}

/// Starts a process that holds the turn lock beside the fixture's runtime
/// state until it is killed (`--no-fork`: one process, so killing it frees
/// the lock); returns once the lock is held.
fn hold_turn_lock(f: &Fixture) -> std::process::Child {
    let mut holder = Command::new("flock")
        .arg("--no-fork")
        .arg(banguard::lock::lock_path(&f.runtime))
        .args(["sh", "-c", "echo locked; exec sleep 60"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "locked");
    holder
}

/// A store that does not answer within busy_timeout_ms (200 ms here) is
/// contention, not a broken store: whatever failmode says, the attempt is
/// refused unchecked (its password never reaches the stack) and nothing is
/// counted or banned.
fn assert_overloaded(f: &Fixture, what: &str) {
    for mode in ["open", "closed"] {
        let (rc, took) = f.login(mode);
        assert_eq!(rc, PAM_AUTHINFO_UNAVAIL, "{what}, failmode={mode}: {}", code_name(rc));
        eprintln!("{what}, failmode={mode}: {} after {took:?}", code_name(rc));
        assert!(took < Duration::from_millis(1200), "{what}, failmode={mode}: the login took {took:?}");
        assert!(took >= Duration::from_millis(150), "{what}, failmode={mode}: did it wait at all? {took:?}");
    }
}

#[test]
fn turn_lock_held_beyond_the_busy_timeout() {
    if !require("turn_lock_held_beyond_the_busy_timeout", true, &["flock"]) {
        return;
    }
    let f = Fixture::new("db/banguard.db");
    f.seed();
    // A process holds the turn lock (as one that hangs in its transaction
    // would) until it is killed.
    let mut holder = hold_turn_lock(&f);
    assert_overloaded(&f, "turn lock held");
    let _ = holder.kill();
    let _ = holder.wait();
    f.assert_seeded();
    assert_eq!(f.login("closed").0, PAM_SUCCESS, "lock released: logins work again");
}

#[test]
fn lock_held_beyond_the_busy_timeout() {
    if !require("lock_held_beyond_the_busy_timeout", true, &["sqlite3"]) {
        return;
    }
    let f = Fixture::new("db/banguard.db");
    f.seed();
    // Another process holds the write lock of the runtime state (the one an
    // attempt takes) until its stdin closes.
    let mut holder =
        Command::new("sqlite3").arg(&f.runtime).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdin = holder.stdin.take().unwrap();
    writeln!(stdin, ".timeout 5000\nBEGIN IMMEDIATE;\nSELECT 'locked';").unwrap();
    stdin.flush().unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "locked");
    assert_overloaded(&f, "SQLite lock held");
    // Readers are not blocked by a writer: list and status still work.
    f.assert_ctl("locked", None, true, "locked");
    drop(stdin);
    let _ = holder.kill();
    let _ = holder.wait();
    f.assert_seeded();
    assert_eq!(f.login("closed").0, PAM_SUCCESS, "lock released: logins work again");
}

#[test]
fn sigkill_of_writers_loses_no_committed_failure() {
    if !require("sigkill_of_writers", false, &[]) {
        return;
    }
    let f = Fixture::new("db/banguard.db");
    // Maxretry high and findtime long: nothing is ever consumed or pruned.
    ConfigFile::under(&f.root)
        .database(&f.db)
        .with("maxretry = 1000000\nfindtime = \"1w\"\n[recidive]\nenabled = false")
        .write(&f.config);
    Banguard::open(f.config()).unwrap();
    let committed = kill_writers(&f, 100, "ID ");
    eprintln!("{} failures committed by 100 writers killed with SIGKILL", committed.len());
    assert!(committed.len() > 100, "writers committed only {} failures", committed.len());
    let c = rusqlite::Connection::open(&f.runtime).unwrap();
    let ok: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
    let mut stmt = c.prepare("SELECT count(*) FROM attempts WHERE id = ?1 AND state = 1").unwrap();
    let lost: Vec<i64> = committed
        .iter()
        .copied()
        .filter(|id| stmt.query_row([id], |r| r.get::<_, i64>(0)).unwrap() != 1)
        .collect();
    assert!(lost.is_empty(), "{} of {} committed failures lost: {lost:?}", lost.len(), committed.len());
    drop(stmt);
    drop(c);
    // And the store still works for the next writer.
    let mut bg = Banguard::open(f.config()).unwrap();
    assert!(matches!(bg.record_failure(&req(FAILING)).unwrap(), Verdict::Allowed { .. }));
}

/// Bans written to both files by writers killed between any two
/// instructions: the store keeps every committed ban, and the runtime
/// state's copy is either exact or marked stale (its generation differs),
/// and then the next maintenance run makes it exact.
#[test]
fn sigkill_of_ban_writers_leaves_the_ban_copy_exact_or_marked_stale() {
    if !require("sigkill_of_ban_writers", false, &[]) {
        return;
    }
    let f = Fixture::new("db/banguard.db");
    ConfigFile::under(&f.root)
        .database(&f.db)
        .with("maxretry = 1\nfindtime = \"1w\"\nbantime = \"1d\"\n[recidive]\nenabled = false")
        .write(&f.config);
    Banguard::open(f.config()).unwrap();
    let committed = kill_writers(&f, 40, "BAN ");
    eprintln!("{} bans committed by 40 writers killed with SIGKILL", committed.len());
    assert!(committed.len() >= 10, "writers committed only {} bans", committed.len());
    let ids = |file: &Path, sql: &str| -> Vec<i64> {
        let c = rusqlite::Connection::open(file).unwrap();
        let ok: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(ok, "ok", "{}", file.display());
        let mut stmt = c.prepare(sql).unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    let stored = ids(&f.db, "SELECT id FROM bans WHERE lifted IS NULL ORDER BY id");
    let lost: Vec<_> = committed.iter().filter(|id| !stored.contains(id)).collect();
    assert!(lost.is_empty(), "committed bans lost: {lost:?}");
    let store_generation = ids(&f.db, "SELECT value FROM generation")[0];
    let copy_generation = ids(&f.runtime, "SELECT generation FROM mirror")[0];
    let copy = ids(&f.runtime, "SELECT id FROM bans ORDER BY id");
    if copy_generation == store_generation {
        assert_eq!(copy, stored, "a copy at the store's generation is exact");
    } else {
        eprintln!("copy at generation {copy_generation}, store at {store_generation}: stale, as marked");
    }
    Banguard::open(f.config()).unwrap().maintain().unwrap();
    assert_eq!(
        ids(&f.runtime, "SELECT id FROM bans ORDER BY id"),
        stored,
        "maintenance makes the copy exact"
    );
}

/// Runs `rounds` writers (`fault_child`), each killed with SIGKILL at a
/// random moment; returns the ids they reported committed (lines starting
/// with `prefix`).
fn kill_writers(f: &Fixture, rounds: u32, prefix: &'static str) -> Vec<i64> {
    let exe = std::env::current_exe().unwrap();
    let mut committed = Vec::new();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for round in 0..rounds {
        let mut writer = Command::new(&exe)
            .args(["--exact", "faults::fault_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1")
            .env(format!("{CHILD_ENV}_WRITER"), &f.config)
            .env(format!("{CHILD_ENV}_WORKER"), round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = writer.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| l.strip_prefix(prefix).and_then(|n| n.parse::<i64>().ok()))
                .collect::<Vec<_>>()
        });
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Past start-up (about 10 ms) into the write loop, at a random moment.
        std::thread::sleep(Duration::from_micros(8_000 + x % 40_000));
        writer.kill().unwrap(); // SIGKILL
        writer.wait().unwrap();
        committed.extend(reader.join().unwrap());
    }
    committed
}

// ------------------------------------------------------------ the clock

fn clock_config() -> Config {
    Config::from_toml(
        Path::new("/test.toml"),
        "[default]\nmaxretry = 3\nfindtime = \"10m\"\nbantime = \"1h\"\nbantime_factor = 1.0\n[recidive]\nenabled = false\n",
    )
    .unwrap()
}

fn fail(bg: &mut Banguard, rhost: &str) -> Verdict {
    bg.record_failure(&req(rhost)).unwrap()
}

#[test]
fn clock_stepped_back_bounds_bans_and_future_attempts() {
    let t0 = 1_700_000_000;
    let clock = ManualClock::new(t0);
    let mut bg = Banguard::in_memory(clock_config(), clock.clone()).unwrap();
    for _ in 0..3 {
        fail(&mut bg, BANNED);
    }
    bg.ban(&host("198.51.100.99"), None, banguard::duration::BanTime::Permanent, "keep").unwrap();
    fail(&mut bg, FAILING);
    fail(&mut bg, FAILING);
    // The clock jumps back a year (a bad NTP step, a wrong RTC at boot).
    let now = t0 - 365 * 86_400;
    clock.set(now);
    bg.maintain().unwrap();
    let bans = bg.bans(None, false).unwrap();
    assert_eq!(bans.len(), 2, "none disappears early: {bans:?}");
    for b in &bans {
        match b.expires {
            // At most its full length (1h) from now, not a year and an hour.
            Some(e) => assert!(e <= now + 3600 && e > now, "{b:?}"),
            None => assert_eq!(b.host, host("198.51.100.99"), "only the manual ban is permanent"),
        }
    }
    assert!(bg.attempt(&req(BANNED), None).unwrap().is_refused(), "still banned right after the step");
    clock.set(now + 3599);
    assert!(bg.attempt(&req(BANNED), None).unwrap().is_refused(), "still banned within its length");
    clock.set(now + 3601);
    assert!(!bg.attempt(&req(BANNED), None).unwrap().is_refused(), "the ban ends after its length");
    assert!(bg.attempt(&req("198.51.100.99"), None).unwrap().is_refused(), "permanent stays");
    // The two future failures of FAILING were moved to `now` by maintain:
    // they count for one findtime, not for a year.
    clock.set(now + 601);
    match fail(&mut bg, FAILING) {
        Verdict::Allowed { used, .. } => assert_eq!(used, 1, "future attempts must not count forever"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn clock_stepped_forward_less_than_bantime_keeps_the_ban() {
    let t0 = 1_700_000_000;
    let clock = ManualClock::new(t0);
    let mut bg = Banguard::in_memory(clock_config(), clock.clone()).unwrap();
    for _ in 0..3 {
        fail(&mut bg, BANNED);
    }
    clock.advance(3599);
    bg.maintain().unwrap();
    assert!(bg.attempt(&req(BANNED), None).unwrap().is_refused(), "a forward step < bantime keeps it");
    clock.advance(2);
    bg.maintain().unwrap();
    assert!(!bg.attempt(&req(BANNED), None).unwrap().is_refused(), "and it ends once bantime has passed");
    // Back and forth again: a small backwards step (NTP slew) changes nothing.
    for _ in 0..3 {
        fail(&mut bg, FAILING);
    }
    let ban = bg.bans(None, false).unwrap().into_iter().find(|b| b.host == host(FAILING)).unwrap();
    clock.advance(-30);
    bg.maintain().unwrap();
    let again = bg.bans(None, false).unwrap().into_iter().find(|b| b.host == host(FAILING)).unwrap();
    assert_eq!(again.expires, ban.expires, "a step back of 30 s does not rewrite bans");
}

// ------------------------------------------- files opened as root are root's

/// A root-owned 0600 SQLite file of "another program": it must come out of
/// every case byte for byte as it went in.
fn victim(dir: &Path) -> (PathBuf, Vec<u8>) {
    let path = dir.join("victim.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE secrets (v TEXT); INSERT INTO secrets VALUES ('keep');").unwrap();
    drop(conn);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let bytes = fs::read(&path).unwrap();
    (path, bytes)
}

const NOBODY: u32 = 65534;

/// Every place a user could prepare for root: the module refuses them
/// (following failmode, as for any unusable store) before it creates
/// anything, and never writes through the user's link.
#[test]
fn the_module_never_writes_through_what_another_user_placed() {
    if !require("the_module_never_writes_through_what_another_user_placed", true, &[]) {
        return;
    }
    // `allowed`: what may exist in `dir` afterwards (the user's own file,
    // and in root's own directory the lock file banguard makes there).
    let check = |what: &str, f: &Fixture, dir: &Path, victim: &(PathBuf, Vec<u8>), allowed: &[&str]| {
        f.assert_failmode(what, |mode| f.login(mode));
        assert_eq!(fs::read(&victim.0).unwrap(), victim.1, "{what}: the victim file changed");
        assert!(!f.db.exists(), "{what}: the store was created");
        let created: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("banguard") || n.contains(".new-"))
            .collect();
        assert!(created.iter().all(|n| allowed.contains(&n.as_str())), "{what}: created {created:?}");
    };

    // A sticky world-writable directory, like /tmp or /dev/shm: a user's
    // link in place of the runtime state, then a user's empty file.
    let f = Fixture::new("shared/banguard.db");
    let shared = f.root.join("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    let v = victim(&f.root);
    std::os::unix::fs::symlink(&v.0, &f.runtime).unwrap();
    std::os::unix::fs::lchown(&f.runtime, Some(NOBODY), Some(NOBODY)).unwrap();
    check("a user's link in a sticky directory", &f, &shared, &v, &["banguard-runtime.db"]);
    fs::remove_file(&f.runtime).unwrap();
    fs::write(&f.runtime, b"").unwrap();
    std::os::unix::fs::chown(&f.runtime, Some(NOBODY), Some(NOBODY)).unwrap();
    check("a user's empty file in a sticky directory", &f, &shared, &v, &["banguard-runtime.db"]);
    assert_eq!(fs::metadata(&f.runtime).unwrap().len(), 0, "the user's file was written");

    // A directory another user owns, and a 0777 one.
    let f = Fixture::new("theirs/banguard.db");
    let theirs = f.root.join("theirs");
    fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(NOBODY), Some(NOBODY)).unwrap();
    let v = victim(&f.root);
    check("a directory owned by another user", &f, &theirs, &v, &[]);
    fs::set_permissions(&theirs, fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::chown(&theirs, Some(0), Some(0)).unwrap();
    check("a world-writable directory", &f, &theirs, &v, &[]);

    // Even in root's own directory, a link banguard did not make is not
    // followed (the runtime state, and its lock file).
    let f = Fixture::new("db/banguard.db");
    let db_dir = f.root.join("db");
    fs::create_dir(&db_dir).unwrap();
    fs::set_permissions(&db_dir, fs::Permissions::from_mode(0o700)).unwrap();
    let v = victim(&f.root);
    std::os::unix::fs::symlink(&v.0, &f.runtime).unwrap();
    let lock = ["banguard-runtime.db", "banguard-runtime.db.lock"];
    check("a link in root's directory", &f, &db_dir, &v, &lock);
    fs::remove_file(&f.runtime).unwrap();
    let lock_file = banguard::lock::lock_path(&f.runtime);
    fs::remove_file(&lock_file).unwrap();
    std::os::unix::fs::symlink(&v.0, &lock_file).unwrap();
    check("a link in place of the lock file", &f, &db_dir, &v, &lock);
}

// ------------------------------------------------- the rebuild after a reboot

/// After a reboot (the runtime state gone), the copy of the bans is built
/// in a turn at the lock, once: openers that arrive while another process
/// holds the turn wait for it instead of each building a copy of their own;
/// then every one of them opens the one that was built.
#[test]
fn the_rebuild_after_a_reboot_waits_for_its_turn() {
    if !require("the_rebuild_after_a_reboot_waits_for_its_turn", true, &["flock"]) {
        return;
    }
    let f = Fixture::new("db/banguard.db");
    f.seed();
    fs::remove_file(&f.runtime).unwrap();
    let mut holder = hold_turn_lock(&f);
    let mut config = f.config();
    config.store.busy_timeout_ms = 20_000;
    let openers: Vec<_> = (0..8)
        .map(|_| {
            let config = config.clone();
            std::thread::spawn(move || Banguard::open(config).map(|_| ()))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    assert!(!f.runtime.exists(), "an opener built the runtime state outside its turn");
    assert!(openers.iter().all(|t| !t.is_finished()), "an opener did not wait for its turn");
    let _ = holder.kill();
    let _ = holder.wait();
    for t in openers {
        t.join().unwrap().expect("open after the turn");
    }
    f.assert_seeded_bans();
}
