//! pam_banguard.so in whole PAM stacks, driven through libpam with
//! `pam_start_confdir` from temporary directories (no /etc/pam.d), plus one
//! pamtester run in a namespace.
//!
//! The password module is `pam_exec.so expose_authtok` running a script
//! that accepts only "right" and appends a line per evaluated password to
//! a file: the ground truth of how many passwords were looked at.

use banguard::policy::SystemClock;
use banguard::store::Access;
use banguard::{Banguard, Config, Request, Verdict};
use banguard_e2e::fixture::ConfigFile;
use banguard_e2e::pamtest::*;
use banguard_e2e::{artifacts, count_lines, require};
use std::collections::BTreeMap;
use std::ffi::c_int;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const HOST: &str = "198.51.100.7";
const USER: &str = "alice";

/// One scenario's files: config, store, PAM service files, checker.
struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    confdir: PathBuf,
    config: PathBuf,
    checker: PathBuf,
    evaluated: PathBuf,
    trigger: PathBuf,
}

impl Fixture {
    /// `default` is added to `[default]`; `rest` after it (other sections).
    fn new(default: &str, rest: &str) -> Fixture {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().to_path_buf();
        let f = Fixture {
            confdir: root.join("pam.d"),
            config: root.join("banguard.toml"),
            checker: root.join("checkpw"),
            evaluated: root.join("evaluated.log"),
            trigger: root.join("run/ban.trigger"),
            root,
            _tmp: tmp,
        };
        fs::create_dir(&f.confdir).unwrap();
        ConfigFile::under(&f.root)
            .with(default)
            .with("[recidive]\nenabled = false")
            .with(rest)
            .write(&f.config);
        write_password_checker(&f.checker, &f.evaluated, "right");
        f
    }

    fn db(&self) -> PathBuf {
        self.root.join("db/banguard.db")
    }

    fn write_config(&self, text: &str) {
        fs::write(&self.config, text).unwrap();
        // The core refuses configs others could change.
        fs::set_permissions(&self.config, fs::Permissions::from_mode(0o644)).unwrap();
    }

    /// "TYPE CONTROL /abs/libpam_banguard.so config=... ARGS"
    fn line(&self, kind: &str, control: &str, args: &str) -> String {
        format!(
            "{kind} {control} {} config={} {args}",
            artifacts().pam_module.display(),
            self.config.display()
        )
    }

    /// The one-line set-up: banguard before the password modules (its
    /// success comes back through setcred; the account stack only permits).
    fn single_line(&self, service: &str, args: &str) -> &Self {
        let mut lines = vec![self.line("auth", "requisite", args)];
        lines.extend(password_lines(&self.checker));
        lines.push("account required pam_permit.so".into());
        self.service(service, lines)
    }

    fn service(&self, name: &str, lines: Vec<String>) -> &Self {
        Confdir::new(&self.confdir).service(name, &lines);
        self
    }

    fn pam(&self, service: &str, rhost: Option<&str>) -> Pam {
        let mut p = Pam::start(&self.confdir, service, USER);
        if let Some(r) = rhost {
            p.rhost(r);
        }
        p
    }

    /// One fresh handle, one password, pam_end: vsftpd's way.
    fn login(&self, service: &str, rhost: &str, pw: &str) -> c_int {
        let mut p = self.pam(service, Some(rhost));
        let rc = p.try_password(pw);
        if rc == PAM_SUCCESS {
            p.setcred(PAM_ESTABLISH_CRED);
        }
        rc
    }

    /// Passwords the password module has looked at.
    fn evaluated(&self) -> usize {
        count_lines(&self.evaluated)
    }

    /// What the store says about `rhost` on `service`, read-only.
    fn peek(&self, service: &str, rhost: &str) -> Verdict {
        let config = Config::load(&self.config).expect("config");
        let mut g = Banguard::open_with(config, Access::ReadOnly, Arc::new(SystemClock)).expect("open store");
        g.peek(&Request { service, rhost: Some(rhost), hint: None, user: None }).expect("peek")
    }

    /// Attempts counted against `rhost` (panics if it is banned).
    fn used(&self, service: &str, rhost: &str) -> u32 {
        match self.peek(service, rhost) {
            Verdict::Allowed { used, .. } => used,
            other => panic!("expected {rhost} allowed on {service}, got {other:?}"),
        }
    }

    fn banned(&self, service: &str, rhost: &str) -> bool {
        self.peek(service, rhost).is_refused()
    }
}

/// The module rate-limits its error logs with stamp files; when it cannot
/// read its config it falls back to the host's /run/banguard. Tests that
/// break the config remove what they left there.
struct HostRunDirGuard {
    existed: bool,
    before: Vec<PathBuf>,
}

const HOST_RUN_DIR: &str = "/run/banguard";

fn stamps() -> Vec<PathBuf> {
    fs::read_dir(HOST_RUN_DIR)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("pam-")))
                .collect()
        })
        .unwrap_or_default()
}

impl HostRunDirGuard {
    fn new() -> HostRunDirGuard {
        HostRunDirGuard { existed: Path::new(HOST_RUN_DIR).exists(), before: stamps() }
    }
}

impl Drop for HostRunDirGuard {
    fn drop(&mut self) {
        for p in stamps() {
            if !self.before.contains(&p) {
                let _ = fs::remove_file(p);
            }
        }
        if !self.existed {
            let _ = fs::remove_dir(HOST_RUN_DIR);
        }
    }
}

#[track_caller]
fn assert_rc(got: c_int, want: c_int, what: &str) {
    assert_eq!(got, want, "{what}: got {} ({got}), want {} ({want})", code_name(got), code_name(want));
}

fn ready(name: &str) -> bool {
    // pam_exec runs the checker; only root writes the store.
    require(name, true, &["sh"])
}

#[test]
fn single_line_bans_after_maxretry_even_with_the_right_password() {
    if !ready("single_line_bans_after_maxretry_even_with_the_right_password") {
        return;
    }
    let f = Fixture::new("maxretry = 3", "");
    f.single_line("sshd", "");
    for i in 1..=3 {
        assert_rc(f.login("sshd", HOST, "wrong"), PAM_AUTH_ERR, &format!("wrong password {i}"));
    }
    assert!(!f.trigger.exists(), "no ban yet");
    assert_rc(f.login("sshd", HOST, "right"), PAM_PERM_DENIED, "4th attempt, right password");
    assert_eq!(f.evaluated(), 3, "the 4th password was never looked at");
    assert!(f.banned("sshd", HOST));
    assert!(f.trigger.exists(), "the new ban touched the sync trigger");
    // Another host and another service are not affected.
    assert_rc(f.login("sshd", "198.51.100.8", "right"), PAM_SUCCESS, "other host");
    f.single_line("vsftpd", "");
    assert_rc(f.login("vsftpd", HOST, "right"), PAM_SUCCESS, "other service");
}

#[test]
fn a_refusal_asks_libpam_for_the_fail_delay_of_a_wrong_password() {
    if !ready("a_refusal_asks_libpam_for_the_fail_delay_of_a_wrong_password") {
        return;
    }
    // libpam varies the delay asked for by up to ±50 % (_pam_compute_delay).
    let about = |secs: u32| (secs * 500_000)..=(secs * 1_500_000);
    let f = Fixture::new("maxretry = 2", "[services.vsftpd]\nrefusal_delay = \"5s\"\n");
    f.single_line("sshd", "");
    let mut p = f.pam("sshd", Some(HOST));
    assert_rc(p.try_password("wrong"), PAM_AUTH_ERR, "1st");
    assert_rc(p.try_password("wrong"), PAM_AUTH_ERR, "2nd");
    assert_rc(p.try_password("right"), PAM_PERM_DENIED, "3rd: refused");
    let delays = p.delays();
    // The password checker asks for none: only the refusal is delayed, by
    // the default 2 s (pam_unix's).
    assert_eq!(delays[..2], [(PAM_AUTH_ERR, 0), (PAM_AUTH_ERR, 0)], "{delays:?}");
    assert_eq!(delays[2].0, PAM_PERM_DENIED);
    assert!(about(2).contains(&delays[2].1), "{delays:?}");
    // Per service, and 0 asks for nothing.
    f.single_line("vsftpd", "");
    for _ in 0..2 {
        f.login("vsftpd", HOST, "wrong");
    }
    let mut p = f.pam("vsftpd", Some(HOST));
    assert_rc(p.try_password("right"), PAM_PERM_DENIED, "vsftpd refused");
    assert!(about(5).contains(&p.delays()[0].1), "{:?}", p.delays());
    let none = Fixture::new("maxretry = 1\nrefusal_delay = 0", "");
    none.single_line("sshd", "");
    none.login("sshd", HOST, "wrong");
    let mut p = none.pam("sshd", Some(HOST));
    assert_rc(p.try_password("right"), PAM_PERM_DENIED, "refused");
    assert_eq!(p.delays(), [(PAM_PERM_DENIED, 0)]);
}

#[test]
fn several_passwords_on_one_handle_count_several_times() {
    if !ready("several_passwords_on_one_handle_count_several_times") {
        return;
    }
    let f = Fixture::new("maxretry = 3", "");
    f.single_line("sshd", "");
    // sshd's password method: one handle, one pam_authenticate per password.
    let mut p = f.pam("sshd", Some(HOST));
    assert_rc(p.try_password("wrong"), PAM_AUTH_ERR, "1st");
    assert_eq!(f.used("sshd", HOST), 1);
    assert_rc(p.try_password("wrong"), PAM_AUTH_ERR, "2nd");
    assert_eq!(f.used("sshd", HOST), 2);
    assert_rc(p.try_password("wrong"), PAM_AUTH_ERR, "3rd");
    assert_rc(p.try_password("right"), PAM_PERM_DENIED, "4th on the same handle");
    assert_eq!(p.end(PAM_PERM_DENIED), PAM_SUCCESS);
    assert_eq!(f.evaluated(), 3);
    assert!(f.banned("sshd", HOST));
}

#[test]
fn one_handle_keeps_its_config_and_store_open_between_passwords() {
    if !ready("one_handle_keeps_its_config_and_store_open_between_passwords") {
        return;
    }
    let _host_run_dir = HostRunDirGuard::new();
    let f = Fixture::new("maxretry = 3", "");
    f.single_line("sshd", "failmode=closed");
    let mut p = f.pam("sshd", Some(HOST));
    assert_rc(p.try_password("wrong"), PAM_AUTH_ERR, "1st");
    // From here on a fresh handle cannot read the config (failmode=closed
    // refuses); the open handle goes on with what it read and opened.
    let saved = f.root.join("banguard.toml.saved");
    fs::rename(&f.config, &saved).unwrap();
    assert_rc(f.pam("sshd", Some("192.0.2.1")).try_password("right"), PAM_PERM_DENIED, "new handle");
    assert_rc(p.try_password("wrong"), PAM_AUTH_ERR, "2nd on the open handle");
    assert_rc(p.try_password("right"), PAM_SUCCESS, "3rd on the open handle");
    assert_eq!(p.setcred(PAM_ESTABLISH_CRED), PAM_SUCCESS);
    assert_eq!(p.end(PAM_SUCCESS), PAM_SUCCESS);
    fs::rename(&saved, &f.config).unwrap();
    // Two failures counted, the success given back on the same engine.
    assert_eq!(f.used("sshd", HOST), 2);
    assert_eq!(f.evaluated(), 3);
}

#[test]
fn a_success_gives_back_its_attempt_once() {
    if !ready("a_success_gives_back_its_attempt_once") {
        return;
    }
    let f = Fixture::new("maxretry = 3", "");
    let mut lines = vec![f.line("auth", "requisite", "")];
    lines.extend(password_lines(&f.checker));
    lines.push(f.line("account", "required", ""));
    lines.push("account required pam_permit.so".into());
    f.service("sshd", lines);
    let mut p = f.pam("sshd", Some(HOST));
    assert_rc(p.try_password("wrong"), PAM_AUTH_ERR, "1st");
    assert_rc(p.try_password("wrong"), PAM_AUTH_ERR, "2nd");
    assert_rc(p.try_password("right"), PAM_SUCCESS, "3rd, right");
    assert_eq!(f.used("sshd", HOST), 3, "counted until the success hooks run");
    // setcred walks the auth stack; pam_exec ignores it and pam_deny
    // refuses it, so the stack says CRED_ERR, but banguard ran first.
    p.setcred(PAM_ESTABLISH_CRED);
    assert_eq!(f.used("sshd", HOST), 2, "setcred gave back the successful attempt");
    p.setcred(PAM_ESTABLISH_CRED);
    assert_rc(p.acct_mgmt(), PAM_SUCCESS, "account");
    assert_eq!(f.used("sshd", HOST), 2, "given back once, the failures still count");
    drop(p);
    // The account hook alone gives back as well (a stack whose setcred is
    // never called).
    let mut p = f.pam("sshd", Some(HOST));
    assert_rc(p.try_password("right"), PAM_SUCCESS, "right");
    assert_eq!(f.used("sshd", HOST), 3);
    assert_rc(p.acct_mgmt(), PAM_SUCCESS, "account");
    assert_eq!(f.used("sshd", HOST), 2);
    drop(p);
    // REINITIALIZE after a success on this handle gives back by id.
    let mut p = f.pam("sshd", Some(HOST));
    assert_rc(p.try_password("right"), PAM_SUCCESS, "right");
    assert_eq!(f.used("sshd", HOST), 3);
    p.setcred(PAM_REINITIALIZE_CRED);
    assert_eq!(f.used("sshd", HOST), 2);
    drop(p);
    // PAM_DELETE_CRED gives nothing back.
    let mut p = f.pam("sshd", Some(HOST));
    assert_rc(p.try_password("right"), PAM_SUCCESS, "right");
    p.setcred(PAM_DELETE_CRED);
    assert_eq!(f.used("sshd", HOST), 3);
    p.abandon();
    // One more failure and the host is out.
    assert_rc(f.login("sshd", HOST, "right"), PAM_PERM_DENIED, "exhausted");
}

/// Entry point of the child processes the tests start by re-executing
/// this binary (see [`child`]); a normal run does nothing here.
///
/// * `login CONFDIR SERVICE RHOST PASSWORD account|-`: one handle, one
///   password, optionally the account stack, then leaves like sshd's
///   keyboard-interactive child: no pam_end.
/// * `lock CONFIG`: holds the store's write lock until stdin closes (a
///   lock held in this process would not block the module: fcntl locks
///   are per process, and the module carries its own SQLite).
#[test]
fn child_process_entry() {
    let Ok(spec) = std::env::var("BANGUARD_PAMTEST_CHILD") else { return };
    let parts: Vec<&str> = spec.split('\t').collect();
    match parts[..] {
        ["login", confdir, service, rhost, password, account] => {
            let mut p = Pam::start(Path::new(confdir), service, USER);
            p.rhost(rhost);
            let rc = p.try_password(password);
            if rc == PAM_SUCCESS && account == "account" {
                p.acct_mgmt();
            }
            println!("PAMTEST_RC={rc}");
            p.abandon();
        }
        ["lock", config] => {
            let config = Config::load(Path::new(config)).unwrap();
            let holder = Banguard::open_with(config, Access::ReadWrite, Arc::new(SystemClock)).unwrap();
            // The module's attempt takes the runtime state's lock first.
            let conn = banguard_e2e::fixture::sql(holder.store().runtime_path());
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            println!("PAMTEST_LOCKED");
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
        }
        _ => panic!("bad child spec {spec:?}"),
    }
}

/// A re-executed test binary running `child_process_entry` with `args`.
fn child(args: &[&str]) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["pam_stack::child_process_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env("BANGUARD_PAMTEST_CHILD", args.join("\t"));
    c
}

/// The rc a `login` child printed.
fn child_rc(out: &std::process::Output) -> c_int {
    let stdout = String::from_utf8_lossy(&out.stdout);
    // libtest prints "test pam_stack::child_process_entry ... " on the same line.
    let rc = stdout.lines().find_map(|l| l.split_once("PAMTEST_RC=").map(|(_, rc)| rc));
    match rc {
        Some(rc) if out.status.success() => rc.trim().parse().unwrap(),
        _ => panic!("child failed ({}): {stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr)),
    }
}

fn run_child(f: &Fixture, service: &str, password: &str, account: bool) -> c_int {
    let confdir = f.confdir.to_str().unwrap();
    let out = child(&["login", confdir, service, HOST, password, if account { "account" } else { "-" }])
        .output()
        .expect("re-exec the test binary");
    child_rc(&out)
}

#[test]
fn kbd_interactive_child_success_is_given_back_by_pid() {
    if !ready("kbd_interactive_child_success_is_given_back_by_pid") {
        return;
    }
    let f = Fixture::new("maxretry = 4", "");
    f.single_line("sshd", "");
    // Keyboard-interactive: pam_authenticate runs in a forked child that
    // exits without pam_end; the success hooks run in the parent, on a
    // handle that never saw the child's data.
    assert_rc(run_child(&f, "sshd", "wrong", false), PAM_AUTH_ERR, "child 1, wrong");
    assert_rc(run_child(&f, "sshd", "right", false), PAM_SUCCESS, "child 2, right");
    assert_eq!(f.used("sshd", HOST), 2);
    let mut monitor = f.pam("sshd", Some(HOST));
    monitor.setcred(PAM_REFRESH_CRED);
    monitor.setcred(PAM_REINITIALIZE_CRED);
    assert_eq!(f.used("sshd", HOST), 2, "renewing credentials is no login: no give-back by pid");
    monitor.setcred(PAM_ESTABLISH_CRED);
    assert_eq!(f.used("sshd", HOST), 1, "the parent gave back its child's success, not the failure");
    monitor.setcred(PAM_ESTABLISH_CRED);
    assert_rc(monitor.acct_mgmt(), PAM_SUCCESS, "account");
    assert_eq!(f.used("sshd", HOST), 1, "repeating is harmless");
    drop(monitor);
    // A child that also runs the account stack gives back by id itself;
    // the parent's give-back by pid then finds nothing more.
    let mut lines = vec![f.line("auth", "requisite", "")];
    lines.extend(password_lines(&f.checker));
    lines.push(f.line("account", "required", ""));
    lines.push("account required pam_permit.so".into());
    f.service("sshd", lines);
    assert_rc(run_child(&f, "sshd", "right", true), PAM_SUCCESS, "child 3, right + account");
    assert_eq!(f.used("sshd", HOST), 1);
    let mut monitor = f.pam("sshd", Some(HOST));
    monitor.setcred(PAM_ESTABLISH_CRED);
    assert_eq!(f.used("sshd", HOST), 1, "the failure of child 1 is never given back");
}

#[test]
fn bans_expire_by_themselves() {
    if !ready("bans_expire_by_themselves") {
        return;
    }
    let f = Fixture::new("maxretry = 1\nbantime = \"2s\"", "");
    f.single_line("sshd", "");
    assert_rc(f.login("sshd", HOST, "wrong"), PAM_AUTH_ERR, "wrong");
    let banned_at = Instant::now();
    assert_rc(f.login("sshd", HOST, "right"), PAM_PERM_DENIED, "banned");
    std::thread::sleep(
        Duration::from_secs(2).saturating_sub(banned_at.elapsed()) + Duration::from_millis(50),
    );
    assert_rc(f.login("sshd", HOST, "right"), PAM_SUCCESS, "after the ban expired");
    assert_eq!(f.evaluated(), 2);
}

#[test]
fn ignoreip_hosts_are_never_counted_or_refused() {
    if !ready("ignoreip_hosts_are_never_counted_or_refused") {
        return;
    }
    let f = Fixture::new("maxretry = 1\nignoreip = [\"192.0.2.0/24\", \"2001:db8:1::/48\"]", "");
    f.single_line("sshd", "");
    for host in ["192.0.2.7", "2001:db8:1::7", "::ffff:192.0.2.7"] {
        for _ in 0..3 {
            assert_rc(f.login("sshd", host, "wrong"), PAM_AUTH_ERR, host);
        }
        assert_rc(f.login("sshd", host, "right"), PAM_SUCCESS, host);
    }
    assert_eq!(f.evaluated(), 12);
}

#[test]
fn local_logins_are_left_to_the_stack() {
    if !ready("local_logins_are_left_to_the_stack") {
        return;
    }
    let _run_dir = HostRunDirGuard::new();
    let f = Fixture::new("maxretry = 1", "");
    f.single_line("login", "");
    for i in 0..3 {
        let mut p = f.pam("login", None);
        if i == 0 {
            // What a user can put in a PAM environment (su keeps it) never
            // makes a local login remote.
            p.putenv(&format!("SSH_CONNECTION={HOST} 50022 203.0.113.1 22"));
        }
        assert_rc(p.try_password("wrong"), PAM_AUTH_ERR, "no PAM_RHOST, wrong");
    }
    let mut p = f.pam("login", None);
    p.putenv(&format!("SSH_CONNECTION={HOST} 50022 203.0.113.1 22"));
    assert_rc(p.try_password("right"), PAM_SUCCESS, "no PAM_RHOST, right");
    assert!(!f.db().exists(), "a local login never opens the store");
    // Not even a broken config with failmode=closed refuses the console.
    f.write_config("[default]\nmaxretyr = 1\n");
    f.single_line("login", "failmode=closed");
    let mut p = f.pam("login", None);
    assert_rc(p.try_password("right"), PAM_SUCCESS, "console with a broken config");
    let mut p = f.pam("login", Some(""));
    assert_rc(p.try_password("right"), PAM_SUCCESS, "empty PAM_RHOST");
}

#[test]
fn a_name_in_rhost_counts_under_the_ssh_connection_address() {
    if !ready("a_name_in_rhost_counts_under_the_ssh_connection_address") {
        return;
    }
    let f = Fixture::new("maxretry = 2", "");
    f.single_line("sshd", "");
    // sshd with UseDNS yes: a name in PAM_RHOST, the address in SSH_CONNECTION.
    for _ in 0..2 {
        let mut p = f.pam("sshd", Some("attacker.example"));
        p.putenv(&format!("SSH_CONNECTION={HOST} 50022 203.0.113.1 22"));
        assert_rc(p.try_password("wrong"), PAM_AUTH_ERR, "wrong");
    }
    assert_eq!(f.used("sshd", HOST), 2, "counted under the address");
    let mut p = f.pam("sshd", Some("other-name.example"));
    p.putenv(&format!("SSH_CONNECTION={HOST} 50023 203.0.113.1 22"));
    assert_rc(p.try_password("right"), PAM_PERM_DENIED, "a new name does not escape");
    assert!(f.banned("sshd", HOST));
    // Without SSH_CONNECTION a name counts as a name (never as an address).
    let g = Fixture::new("maxretry = 5", "");
    g.single_line("vsftpd", "");
    assert_rc(g.login("vsftpd", "Host.Example.", "wrong"), PAM_AUTH_ERR, "name");
    assert_eq!(g.used("vsftpd", "host.example"), 1);
}

#[test]
fn explicit_modes_like_pam_faillock() {
    if !ready("explicit_modes_like_pam_faillock") {
        return;
    }
    let f = Fixture::new("maxretry = 2", "");
    // pam_faillock.8's example, with pam_exec in place of pam_unix and
    // `requisite` on preauth so that a banned host's password is never
    // looked at (with `required` the stack would go on and ask for it).
    f.service(
        "faillock-style",
        vec![
            f.line("auth", "requisite", "preauth"),
            format!("auth [success=1 default=bad] pam_exec.so quiet expose_authtok {}", f.checker.display()),
            f.line("auth", "[default=die]", "authfail"),
            f.line("auth", "sufficient", "authsucc"),
            f.line("account", "required", ""),
            "account required pam_permit.so".into(),
        ],
    );
    let login = |pw: &str| {
        let mut p = f.pam("faillock-style", Some(HOST));
        let rc = p.try_password(pw);
        if rc == PAM_SUCCESS {
            assert_rc(p.acct_mgmt(), PAM_SUCCESS, "account");
        }
        rc
    };
    assert_rc(login("right"), PAM_SUCCESS, "right");
    assert_eq!(f.used("faillock-style", HOST), 0, "preauth and authsucc record nothing");
    // pam_exec's code for a command that failed, which authfail leaves standing.
    assert_rc(login("wrong"), PAM_SYSTEM_ERR, "wrong: authfail records, the stack's failure stands");
    assert_eq!(f.used("faillock-style", HOST), 1);
    assert_rc(login("right"), PAM_SUCCESS, "right");
    assert_eq!(f.used("faillock-style", HOST), 1, "an explicit failure is never given back");
    assert_rc(login("wrong"), PAM_SYSTEM_ERR, "wrong, reaches maxretry: banned");
    assert!(f.banned("faillock-style", HOST));
    assert!(f.trigger.exists());
    assert_rc(login("right"), PAM_PERM_DENIED, "preauth refuses the banned host");
    assert_eq!(f.evaluated(), 4);

    // Each mode on its own line, return codes as pam_faillock's retval test
    // checks them: preauth → IGNORE, or PERM_DENIED when banned; authfail →
    // IGNORE (the stack's earlier result stands); authsucc → SUCCESS.
    let g = Fixture::new("maxretry = 1", "");
    // service= makes the four files one service, as the lines of one stack.
    let permit = || "auth required pam_permit.so".to_string();
    g.service("preauth", vec![g.line("auth", "required", "preauth service=fl"), permit()]);
    g.service(
        "authfail",
        vec!["auth required pam_deny.so".into(), g.line("auth", "required", "authfail service=fl")],
    );
    g.service("authsucc", vec![g.line("auth", "required", "authsucc service=fl"), permit()]);
    g.service("only-authsucc", vec![g.line("auth", "required", "authsucc service=fl")]);
    let run = |svc: &str| g.pam(svc, Some(HOST)).authenticate();
    assert_rc(run("preauth"), PAM_SUCCESS, "preauth, not banned: IGNORE, pam_permit decides");
    assert_rc(run("only-authsucc"), PAM_SUCCESS, "authsucc answers PAM_SUCCESS, as pam_faillock's");
    assert_rc(run("authsucc"), PAM_SUCCESS, "authsucc + pam_permit");
    assert_rc(run("authfail"), PAM_AUTH_ERR, "authfail after pam_deny: pam_deny's code stands");
    assert!(g.banned("fl", HOST), "maxretry = 1: one recorded failure bans");
    assert_rc(run("preauth"), PAM_PERM_DENIED, "preauth, banned");
    assert_rc(g.pam("preauth", Some("198.51.100.8")).authenticate(), PAM_SUCCESS, "preauth, other host");
    assert_rc(g.pam("authsucc", Some(HOST)).authenticate(), PAM_SUCCESS, "authsucc does not check bans");
}

#[test]
fn an_unusable_store_follows_failmode() {
    if !ready("an_unusable_store_follows_failmode") {
        return;
    }
    let f = Fixture::new("maxretry = 1", "");
    // The store's directory is a regular file: nothing can create it.
    fs::write(f.root.join("db"), b"not a directory").unwrap();
    f.single_line("open", "");
    f.single_line("closed", "failmode=closed");
    assert_rc(f.login("open", HOST, "wrong"), PAM_AUTH_ERR, "failmode=open, wrong");
    assert_rc(f.login("open", HOST, "wrong"), PAM_AUTH_ERR, "failmode=open, wrong again");
    assert_rc(f.login("open", HOST, "right"), PAM_SUCCESS, "failmode=open, right");
    assert_rc(f.login("closed", HOST, "right"), PAM_PERM_DENIED, "failmode=closed, right");
    assert_eq!(f.evaluated(), 3, "failmode=closed refuses before the password");
    // The success hooks never fail a login over it, whatever the failmode.
    let lines = vec![
        f.line("auth", "requisite", ""),
        "auth required pam_permit.so".into(),
        f.line("account", "required", "failmode=closed"),
        "account required pam_permit.so".into(),
    ];
    f.service("hooks", lines);
    let mut p = f.pam("hooks", Some(HOST));
    assert_rc(p.authenticate(), PAM_SUCCESS, "failmode=open");
    assert_rc(p.setcred(PAM_ESTABLISH_CRED), PAM_SUCCESS, "setcred");
    assert_rc(p.acct_mgmt(), PAM_SUCCESS, "account with failmode=closed");
    // failmode from the config (per service) when the line has none.
    let text = fs::read_to_string(&f.config).unwrap();
    f.write_config(&format!("{text}\n[services.sshd]\nfailmode = \"closed\"\n"));
    f.single_line("sshd", "");
    assert_rc(f.login("sshd", HOST, "right"), PAM_PERM_DENIED, "config failmode = closed for sshd");
    f.single_line("sshd", "failmode=open");
    assert_rc(f.login("sshd", HOST, "right"), PAM_SUCCESS, "the module option wins over the config");
    // A host banguard does not track never needs the store: its logins go
    // through even with failmode=closed and the store unusable.
    f.write_config(&format!(
        "{text}\n[services.sshd]\nfailmode = \"closed\"\nignoreip = [\"192.0.2.0/24\"]\n"
    ));
    f.single_line("sshd", "");
    assert_rc(f.login("sshd", "192.0.2.9", "right"), PAM_SUCCESS, "ignoreip, store unusable");
    assert_rc(f.login("sshd", HOST, "right"), PAM_PERM_DENIED, "a tracked host still follows failmode");
}

#[test]
fn a_corrupt_store_follows_failmode() {
    if !ready("a_corrupt_store_follows_failmode") {
        return;
    }
    let f = Fixture::new("maxretry = 1", "");
    fs::create_dir(f.root.join("db")).unwrap();
    fs::set_permissions(f.root.join("db"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(f.db(), vec![0x5a; 8192]).unwrap();
    fs::set_permissions(f.db(), fs::Permissions::from_mode(0o600)).unwrap();
    f.single_line("open", "");
    f.single_line("closed", "failmode=closed");
    assert_rc(f.login("open", HOST, "wrong"), PAM_AUTH_ERR, "open, wrong");
    assert_rc(f.login("open", HOST, "right"), PAM_SUCCESS, "open, right");
    assert_rc(f.login("closed", HOST, "right"), PAM_PERM_DENIED, "closed, right");
    assert_eq!(fs::read(f.db()).unwrap(), vec![0x5a; 8192], "the module never overwrites a corrupt store");
}

#[test]
fn a_locked_store_refuses_unchecked_after_the_busy_timeout() {
    if !ready("a_locked_store_refuses_unchecked_after_the_busy_timeout") {
        return;
    }
    let f = Fixture::new("maxretry = 3", "[store]\nbusy_timeout_ms = 300");
    f.single_line("open", "");
    f.single_line("closed", "failmode=closed");
    // sshd-like handle: a wrong password is recorded before the lock.
    let mut p = f.pam("open", Some(HOST));
    assert_rc(p.try_password("wrong"), PAM_AUTH_ERR, "store created");
    // Another process holds the write lock.
    let mut holder = child(&["lock", f.config.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the lock holder");
    let mut out = BufReader::new(holder.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("PAMTEST_LOCKED") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "lock holder ended early");
    }
    // Contention is not a broken store: whatever failmode says, an attempt
    // that cannot be counted in time is refused unchecked.
    assert_rc(f.login("open", HOST, "right"), PAM_AUTHINFO_UNAVAIL, "busy, failmode=open");
    let start = Instant::now();
    assert_rc(f.login("closed", HOST, "right"), PAM_AUTHINFO_UNAVAIL, "busy, failmode=closed");
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(300), "it waited for the lock: {took:?}");
    // Generous: the whole suite runs in parallel on small machines.
    assert!(took < Duration::from_millis(300 + 2000), "it gave up after the busy timeout: {took:?}");
    assert_rc(p.try_password("right"), PAM_AUTHINFO_UNAVAIL, "busy, failmode=open, same handle");
    drop(holder.stdin.take());
    assert!(holder.wait().unwrap().success());
    // The right password was not recorded; its success must not give back
    // the handle's earlier, failed attempt.
    p.setcred(PAM_ESTABLISH_CRED);
    assert_eq!(f.used("open", HOST), 1);
    assert_rc(f.login("closed", HOST, "right"), PAM_SUCCESS, "lock released");
}

#[test]
fn a_config_error_follows_failmode() {
    if !ready("a_config_error_follows_failmode") {
        return;
    }
    let _run_dir = HostRunDirGuard::new();
    let f = Fixture::new("maxretry = 1", "");
    f.write_config(&format!("[default]\ndatabase = \"{}\"\nmaxretyr = 1\n", f.db().display()));
    f.single_line("open", "");
    f.single_line("closed", "failmode=closed");
    assert_rc(f.login("open", HOST, "wrong"), PAM_AUTH_ERR, "typo, open, wrong");
    assert_rc(f.login("open", HOST, "right"), PAM_SUCCESS, "typo, open, right");
    assert_rc(f.login("closed", HOST, "right"), PAM_PERM_DENIED, "typo, closed");
    assert!(!f.db().exists(), "nothing recorded under a broken config");
    // A missing explicit config and a group-writable one are errors too.
    let missing = f.line("auth", "requisite", "failmode=closed").replace("banguard.toml", "missing.toml");
    f.service("missing", vec![missing, "auth required pam_permit.so".into()]);
    assert_rc(f.pam("missing", Some(HOST)).authenticate(), PAM_PERM_DENIED, "missing config, closed");
    f.write_config(&format!("[default]\ndatabase = \"{}\"\n", f.db().display()));
    fs::set_permissions(&f.config, fs::Permissions::from_mode(0o666)).unwrap();
    assert_rc(f.login("closed", HOST, "right"), PAM_PERM_DENIED, "world-writable config, closed");
    assert_rc(f.login("open", HOST, "right"), PAM_SUCCESS, "world-writable config, open");
}

#[test]
fn an_unknown_option_follows_failmode() {
    if !ready("an_unknown_option_follows_failmode") {
        return;
    }
    let _run_dir = HostRunDirGuard::new();
    let f = Fixture::new("maxretry = 1", "");
    f.single_line("open", "degub");
    f.single_line("closed", "failmode=closed degub");
    f.single_line("badmode", "failmode=shut");
    assert_rc(f.login("open", HOST, "wrong"), PAM_AUTH_ERR, "typo, open, wrong");
    assert_rc(f.login("open", HOST, "right"), PAM_SUCCESS, "typo, open, right: nothing counted");
    assert_rc(f.login("badmode", HOST, "right"), PAM_SUCCESS, "bad failmode value: the config's (open)");
    assert_rc(f.login("closed", HOST, "right"), PAM_PERM_DENIED, "typo, closed");
    assert!(!f.db().exists(), "a misconfigured line records nothing");
}

#[test]
fn a_panic_follows_failmode_and_never_aborts_the_stack() {
    if !ready("a_panic_follows_failmode_and_never_aborts_the_stack") {
        return;
    }
    let _run_dir = HostRunDirGuard::new();
    if !artifacts().target_dir.ends_with("debug") {
        // The debug run of `make test` covers it.
        eprintln!("not run: the test_panic option exists only in debug builds of the module");
        return;
    }
    let f = Fixture::new("maxretry = 1", "");
    f.single_line("open", "test_panic");
    f.single_line("closed", "test_panic failmode=closed");
    assert_rc(f.login("open", HOST, "right"), PAM_SUCCESS, "panic, open");
    assert_rc(f.login("open", HOST, "wrong"), PAM_AUTH_ERR, "panic, open, wrong");
    assert_rc(f.login("closed", HOST, "right"), PAM_PERM_DENIED, "panic, closed (not PAM_ABORT)");
    let mut lines = vec![f.line("auth", "requisite", "")];
    lines.push("auth required pam_permit.so".into());
    lines.push(f.line("account", "required", "test_panic failmode=closed"));
    lines.push("account required pam_permit.so".into());
    f.service("account", lines);
    let mut p = f.pam("account", Some(HOST));
    assert_rc(p.authenticate(), PAM_SUCCESS, "no panic in auth");
    assert_rc(p.acct_mgmt(), PAM_SUCCESS, "a panic in the account hook is PAM_IGNORE");
    assert_rc(p.setcred(PAM_ESTABLISH_CRED), PAM_SUCCESS, "setcred");
}

#[test]
fn the_module_exports_only_pam_sm_symbols() {
    if !require("the_module_exports_only_pam_sm_symbols", false, &["nm"]) {
        return;
    }
    let out =
        Command::new("nm").args(["-D", "--defined-only"]).arg(&artifacts().pam_module).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let mut names: Vec<&str> = text.lines().filter_map(|l| l.split_whitespace().nth(2)).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "pam_sm_acct_mgmt",
            "pam_sm_authenticate",
            "pam_sm_chauthtok",
            "pam_sm_close_session",
            "pam_sm_open_session",
            "pam_sm_setcred"
        ],
        "{text}"
    );
}

#[test]
fn sixteen_parallel_processes_let_exactly_maxretry_passwords_through() {
    if !ready("sixteen_parallel_processes_let_exactly_maxretry_passwords_through") {
        return;
    }
    let f = Fixture::new("maxretry = 3", "");
    f.single_line("sshd", "");
    // One process per connection, as sshd forks them; the first ones also
    // race to create the store.
    let confdir = f.confdir.to_str().unwrap();
    let children: Vec<_> = (0..16)
        .map(|_| {
            child(&["login", confdir, "sshd", HOST, "wrong", "-"]).stdout(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    let codes: Vec<c_int> = children.into_iter().map(|c| child_rc(&c.wait_with_output().unwrap())).collect();
    assert_eq!(f.evaluated(), 3, "exactly maxretry passwords reached the password module");
    assert_eq!(codes.iter().filter(|&&c| c == PAM_AUTH_ERR).count(), 3, "{codes:?}");
    assert_eq!(codes.iter().filter(|&&c| c == PAM_PERM_DENIED).count(), 13, "{codes:?}");
}

/// The fixture's stacks under the installed name, so log lines read
/// "pam_banguard(service:auth)" as on a real system.
fn install_module(f: &Fixture) -> PathBuf {
    let so = f.root.join("pam_banguard.so");
    fs::copy(&artifacts().pam_module, &so).unwrap();
    so
}

#[test]
fn pamtester_refuses_and_logs_the_ban() {
    if !require("pamtester_refuses_and_logs_the_ban", true, &["pamtester", "unshare", "nsenter", "mknod"]) {
        return;
    }
    // Refusals stay refusals here (no escalation after the second).
    let f = Fixture::new("maxretry = 2", "[sync]\nescalate_after = 0");
    let so = install_module(&f);
    let line = |args: &str| format!("auth requisite {} config={} {args}", so.display(), f.config.display());
    let stack = |name: &str, first: String| {
        let mut lines = vec![first];
        lines.extend(password_lines(&f.checker));
        f.service(name, lines);
    };
    stack("bgtest", line(""));
    stack("bgdebug", line("service=bgtest debug"));
    stack("bgtypo", line("degub"));
    stack("bgpanic", line("test_panic"));
    let broken = f.root.join("broken.toml");
    let broken_text = format!(
        "[default]\ndatabase = \"{0}/file/banguard.db\"\n[sync]\ntrigger_file = \"{0}/run2/ban.trigger\"\n",
        f.root.display()
    );
    fs::write(&broken, broken_text).unwrap();
    fs::set_permissions(&broken, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(f.root.join("file"), b"").unwrap();
    stack("bgbroken", format!("auth requisite {} config={}", so.display(), broken.display()));
    f.service("other", vec!["auth required pam_deny.so".into(), "account required pam_deny.so".into()]);
    let log = banguard_e2e::fixture::Syslog::bind(&f.root.join("log.sock"));
    let ns = pam_namespace(&f.root, &f.root.join("log.sock"));
    let auth = |service: &str, rhost: &str, pw: &str| {
        let rhost = format!("rhost={rhost}");
        pamtester(&ns, &[], &["-I", &rhost, service, "root", "authenticate", "setcred"], pw)
    };

    for i in 1..=2 {
        let (rc, out) = auth("bgtest", "192.0.2.7", "wrong");
        assert_eq!(rc, 1, "wrong password {i}: {out}");
        assert!(out.contains("Authentication failure"), "{out}");
    }
    let started = Instant::now();
    let (rc, out) = auth("bgtest", "192.0.2.7", "right");
    assert_eq!(rc, 1, "{out}");
    assert!(out.contains("Permission denied"), "PAM_PERM_DENIED: {out}");
    // An application without its own delay function: libpam slept the
    // refusal's fail delay (2 s, less at most 50 %) before answering.
    assert!(started.elapsed() >= Duration::from_millis(950), "refused after {:?}", started.elapsed());
    assert_eq!(
        log.lines(),
        ["<85>pam_banguard(bgtest:auth): banned 192.0.2.7 on bgtest for 10m after 2 failures in 10m"]
    );

    // `debug` logs a refusal at LOG_INFO; without it a refusal is silent.
    let (rc, _) = auth("bgtest", "192.0.2.7", "right");
    assert_eq!(rc, 1);
    assert_eq!(log.lines(), Vec::<String>::new());
    let (rc, _) = auth("bgdebug", "192.0.2.7", "right");
    assert_eq!(rc, 1);
    let lines = log.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0]
            .starts_with("<86>pam_banguard(bgdebug:auth): refused 192.0.2.7 on bgtest: banned on bgtest ("),
        "{lines:?}"
    );

    // A right password with setcred: counted, then given back.
    let (rc, out) = auth("bgtest", "192.0.2.8", "right");
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("successfully authenticated"), "{out}");
    assert_eq!(f.used("bgtest", "192.0.2.8"), 0);

    // Errors are logged at LOG_ERR once per minute and kind, across processes.
    for _ in 0..2 {
        let (rc, out) = auth("bgbroken", "192.0.2.9", "right");
        assert_eq!(rc, 0, "failmode=open: {out}");
        let (rc, _) = auth("bgtypo", "192.0.2.9", "right");
        assert_eq!(rc, 0);
    }
    let lines = log.lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("<83>pam_banguard(bgbroken:auth): "), "{lines:?}");
    assert!(lines[0].ends_with("; failmode=open: letting the rest of the stack decide"), "{lines:?}");
    assert!(
        lines[1].starts_with(
            "<83>pam_banguard(bgtypo:auth): bad module options: unknown option \"degub\" (valid: "
        )
    );

    // A panic: its message goes to syslog (not to the program's stderr),
    // and the hook follows failmode. Here both authenticate and setcred
    // panic: the panic hook logs each, the error line is rate-limited.
    // (`test_panic` exists in debug builds of the module only.)
    if artifacts().target_dir.ends_with("debug") {
        let (rc, out) = auth("bgpanic", "192.0.2.9", "right");
        assert_eq!(rc, 0, "failmode=open: {out}");
        assert!(!out.contains("panicked"), "{out}");
        let lines = log.lines();
        assert_eq!(lines.len(), 3, "{lines:?}");
        for i in [0, 2] {
            assert!(lines[i].starts_with("<83>pam_banguard: panicked at "), "{lines:?}");
            assert!(lines[i].ends_with("test_panic given on the module line"), "{lines:?}");
        }
        assert_eq!(
            lines[1],
            "<83>pam_banguard(bgpanic:auth): internal error (panic): test_panic given on the module line; \
             failmode=open: letting the rest of the stack decide"
        );
    }
}

#[test]
fn pamtester_run_by_a_user_only_reads_the_store() {
    if !require(
        "pamtester_run_by_a_user_only_reads_the_store",
        true,
        &["pamtester", "unshare", "setpriv", "mknod"],
    ) {
        return;
    }
    let f = Fixture::new("maxretry = 2", "");
    f.single_line("bgtest", "");
    f.service("other", vec!["auth required pam_deny.so".into()]);
    // Root bans 192.0.2.7 and leaves the store readable to the user.
    for _ in 0..3 {
        f.login("bgtest", "192.0.2.7", "wrong");
    }
    assert!(f.banned("bgtest", "192.0.2.7"));
    fs::set_permissions(&f.root, fs::Permissions::from_mode(0o755)).unwrap();
    for entry in fs::read_dir(f.root.join("db")).unwrap() {
        // The store and, if a reader left them, its -wal and -shm.
        fs::set_permissions(entry.unwrap().path(), fs::Permissions::from_mode(0o644)).unwrap();
    }
    fs::set_permissions(f.root.join("db"), fs::Permissions::from_mode(0o755)).unwrap();
    // An open connection keeps the WAL index (-shm) that a read-only
    // reader needs (SQLite cannot build it without write access).
    let reader =
        Banguard::open_with(Config::load(&f.config).unwrap(), Access::ReadOnly, Arc::new(SystemClock));
    let _reader = reader.expect("open the store");
    let log = banguard_e2e::fixture::Syslog::bind(&f.root.join("log.sock"));
    let ns = pam_namespace(&f.root, &f.root.join("log.sock"));
    let nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
    let auth = |rhost: &str, pw: &str| {
        let rhost = format!("rhost={rhost}");
        pamtester(&ns, &nobody, &["-I", &rhost, "bgtest", "nobody", "authenticate", "setcred"], pw)
    };
    let (rc, out) = auth("192.0.2.7", "right");
    assert_eq!(rc, 1, "{out}");
    assert!(out.contains("Permission denied"), "an active ban still refuses: {out}");
    for i in 0..4 {
        let (rc, out) = auth("192.0.2.8", "wrong");
        assert_eq!(rc, 1, "wrong {i}: {out}");
        assert!(out.contains("Authentication failure"), "{out}");
    }
    let (rc, out) = auth("192.0.2.8", "right");
    assert_eq!(rc, 0, "a user cannot get a host banned: {out}");
    assert_eq!(f.used("bgtest", "192.0.2.8"), 0, "nothing was written");
    assert_eq!(log.lines(), Vec::<String>::new(), "no errors");
}

/// A right password never counts against the user, whatever the application
/// calls after it: authenticate + setcred (sshd), authenticate + acct_mgmt
/// (Dovecot), authenticate alone. The stack is the one the two shipped
/// pam-auth-update profiles make of common-auth: the `banguard` line before
/// the password modules, the `banguard-success` line (authsucc) in the
/// block that runs only after they succeeded.
#[test]
fn pamtester_every_application_shape_gets_its_success_back() {
    if !require(
        "pamtester_every_application_shape_gets_its_success_back",
        true,
        &["pamtester", "unshare", "mknod"],
    ) {
        return;
    }
    // Seventeen refusals per shape: without their fail delay.
    let f = Fixture::new("maxretry = 3\nrefusal_delay = 0", "");
    let so = install_module(&f);
    let mut lines = vec![format!("auth requisite {} config={}", so.display(), f.config.display())];
    lines.extend(password_lines(&f.checker));
    lines.push(format!("auth optional {} config={} authsucc", so.display(), f.config.display()));
    lines.push("account required pam_permit.so".into());
    f.service("bgshapes", lines);
    f.service("other", vec!["auth required pam_deny.so".into(), "account required pam_deny.so".into()]);
    let log = banguard_e2e::fixture::Syslog::bind(&f.root.join("log.sock"));
    let ns = pam_namespace(&f.root, &f.root.join("log.sock"));
    // The capture is drained after every call: a full socket queue would
    // block the next program that logs.
    let errors = std::cell::RefCell::new(Vec::new());
    let shapes: [&[&str]; 3] =
        [&["authenticate", "setcred"], &["authenticate", "acct_mgmt"], &["authenticate"]];
    for (i, ops) in shapes.iter().enumerate() {
        let good = format!("198.51.100.{}", 20 + i);
        let bad = format!("198.51.100.{}", 30 + i);
        let auth = |rhost: &str, pw: &str| {
            let mut args = vec!["-I".to_string(), format!("rhost={rhost}"), "bgshapes".into(), "root".into()];
            args.extend(ops.iter().map(|s| s.to_string()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let result = pamtester(&ns, &[], &args, pw);
            errors.borrow_mut().extend(log.lines().into_iter().filter(|l| l.starts_with("<83>")));
            result
        };
        for n in 1..=20 {
            let (rc, out) = auth(&good, "right");
            assert_eq!(rc, 0, "{ops:?}: right password {n} from {good}: {out}");
        }
        assert_eq!(f.used("bgshapes", &good), 0, "{ops:?}: nothing left counted after 20 successes");
        for n in 1..=20 {
            let (rc, out) = auth(&bad, "wrong");
            assert_eq!(rc, 1, "{ops:?}: wrong password {n}: {out}");
        }
        let evaluated = fs::read_to_string(&f.evaluated).unwrap();
        let looked_at = evaluated.lines().filter(|l| l.starts_with(&format!("{bad} "))).count();
        assert_eq!(looked_at, 3, "{ops:?}: exactly maxretry wrong passwords evaluated");
        assert!(f.banned("bgshapes", &bad), "{ops:?}");
    }
    let errors = errors.into_inner();
    assert!(errors.is_empty(), "{errors:?}");
}

/// 50 hosts x 4 wrong passwords, 200 pamtester processes released at
/// once, each its own PAM handle and process (as sshd forks one per
/// connection). Returns pamtester's last words per count, and per host the
/// passwords the password module evaluated.
fn flood_200(f: &Fixture, net: u8) -> (BTreeMap<String, usize>, Vec<(String, usize)>) {
    const HOSTS: usize = 50;
    let so = install_module(f);
    let mut lines = vec![format!("auth requisite {} config={}", so.display(), f.config.display())];
    lines.extend(password_lines(&f.checker));
    f.service("bgflood", lines);
    f.service("other", vec!["auth required pam_deny.so".into()]);
    // The store exists before the flood, as on a running server.
    assert_rc(f.login("bgflood", "198.51.100.250", "right"), PAM_SUCCESS, "first login");
    let log = banguard_e2e::fixture::Syslog::bind(&f.root.join("log.sock"));
    let ns = pam_namespace(&f.root, &f.root.join("log.sock"));
    let go = f.root.join("go");
    assert!(Command::new("mkfifo").arg(&go).status().unwrap().success());
    let rhost = |h: usize| format!("10.{net}.{h}.1");
    let children: Vec<_> = (0..HOSTS * 4)
        .map(|i| {
            let script = "read -r _ < \"$0\" || true; printf 'wrong\\n' | pamtester -I rhost=\"$1\" bgflood root authenticate 2>&1";
            ns.command(["sh", "-c", script, go.to_str().unwrap(), &rhost(i / 4)])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Every child blocks opening the FIFO until a writer opens it; then all
    // read EOF at once. A short pause lets the last ones reach the open.
    std::thread::sleep(Duration::from_millis(500));
    drop(fs::OpenOptions::new().write(true).open(&go).unwrap());
    // The log socket's queue is small (10 datagrams): a thread drains it
    // while the answers come in, or a logging child would block.
    let done = std::sync::atomic::AtomicBool::new(false);
    let outcomes = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = log.lines();
            }
        });
        let mut outcomes = BTreeMap::<String, usize>::new();
        for child in children {
            let out = child.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let what = text.rsplit(": ").next().unwrap_or("").to_string();
            *outcomes.entry(what).or_default() += 1;
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        outcomes
    });
    let evaluated = fs::read_to_string(&f.evaluated).unwrap();
    let per_host = (0..HOSTS)
        .map(|h| {
            let host = rhost(h);
            let n = evaluated.lines().filter(|l| l.starts_with(&format!("{host} "))).count();
            (host, n)
        })
        .collect();
    (outcomes, per_host)
}

/// The headline promise under a flood: every host gets exactly maxretry
/// (3) passwords evaluated, its 4th attempt makes the ban; none is refused
/// for overload (the wait is 10 s by default) or let through uncounted.
#[test]
fn pamtester_200_at_once_are_exact() {
    if !require("pamtester_200_at_once_are_exact", true, &["pamtester", "unshare", "mknod", "sh", "mkfifo"]) {
        return;
    }
    let f = Fixture::new("maxretry = 3\nfindtime = \"1h\"", "");
    let (outcomes, per_host) = flood_200(&f, 20);
    for (host, n) in &per_host {
        assert_eq!(*n, 3, "{host}: passwords evaluated ({outcomes:?})");
        assert!(f.banned("bgflood", host), "{host} banned");
    }
    assert_eq!(outcomes.get("Authentication failure"), Some(&150), "{outcomes:?}");
    assert_eq!(outcomes.get("Permission denied"), Some(&50), "{outcomes:?}");
}

/// The same flood with a wait far too short (20 ms) for 200 processes on
/// a small machine: attempts whose turn does not come are refused
/// unchecked, never evaluated uncounted. No host gets more than maxretry
/// passwords evaluated, and every evaluated password is in the store.
#[test]
fn pamtester_200_at_once_with_a_short_wait_never_evaluate_uncounted() {
    if !require(
        "pamtester_200_at_once_with_a_short_wait_never_evaluate_uncounted",
        true,
        &["pamtester", "unshare", "mknod", "sh", "mkfifo"],
    ) {
        return;
    }
    let f = Fixture::new("maxretry = 3\nfindtime = \"1h\"", "[store]\nbusy_timeout_ms = 20");
    let (outcomes, per_host) = flood_200(&f, 21);
    let config = Config::load(&f.config).unwrap();
    let g = Banguard::open_with(config, Access::ReadOnly, Arc::new(SystemClock)).unwrap();
    let bans = g.bans(Some("bgflood"), false).unwrap();
    let failing = g.failing(Some("bgflood")).unwrap();
    for (host, n) in &per_host {
        assert!(*n <= 3, "{host}: {n} passwords evaluated ({outcomes:?})");
        let key = banguard::HostKey::for_addr(host.parse().unwrap(), 32, 64);
        let counted = bans.iter().filter(|b| b.host == key).map(|b| b.failures).sum::<u32>()
            + failing.iter().filter(|x| x.host == key).map(|x| x.count).sum::<u32>();
        assert!(counted as usize >= *n, "{host}: {n} evaluated but {counted} counted ({outcomes:?})");
    }
    eprintln!("short wait: {outcomes:?}");
}

/// The explicit stack (preauth / authfail / authsucc, as pam_faillock's)
/// with the account side: the success line makes the login's network
/// familiar, so after a spray locks the account the owner still logs in
/// from home, while an unfamiliar source is refused before its password.
#[test]
fn explicit_modes_learn_familiar_networks_and_refuse_a_locked_account() {
    if !ready("explicit_modes_learn_familiar_networks_and_refuse_a_locked_account") {
        return;
    }
    let f = Fixture::new("maxretry = 3", "[accounts]\nlearning = 0\nbudget = 2");
    f.service(
        "faillock-style",
        vec![
            f.line("auth", "requisite", "preauth"),
            format!("auth [success=1 default=bad] pam_exec.so quiet expose_authtok {}", f.checker.display()),
            f.line("auth", "[default=die]", "authfail"),
            f.line("auth", "sufficient", "authsucc"),
            "account required pam_permit.so".into(),
        ],
    );
    let login = |rhost: &str, pw: &str| f.pam("faillock-style", Some(rhost)).try_password(pw);
    assert_rc(login("198.51.100.7", "right"), PAM_SUCCESS, "the owner from home");
    let config = Config::load(&f.config).unwrap();
    let g = Banguard::open_with(config, Access::ReadOnly, Arc::new(SystemClock)).unwrap();
    assert_eq!(g.familiar(Some(USER)).unwrap()[0].net, "198.51.100.0/24", "learned by the success line");
    drop(g);
    for (i, bot) in ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"].iter().enumerate() {
        let rc = login(bot, "wrong");
        assert_ne!(rc, PAM_SUCCESS, "bot {i}");
    }
    let before = f.evaluated();
    assert_rc(
        login("192.0.2.9", "right"),
        PAM_PERM_DENIED,
        "locked: an unfamiliar source is refused unchecked",
    );
    assert_eq!(f.evaluated(), before);
    assert_rc(login("198.51.100.8", "right"), PAM_SUCCESS, "the owner from home still logs in");
}
