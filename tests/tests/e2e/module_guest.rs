//! pam_banguard.so as a guest in other programs' processes: small C hosts
//! (`tests/fixtures/hosts/pam_host.c`) drive real libpam the way sshd and
//! long-lived daemons do, and check what the module leaves behind: no
//! open file of root's in sshd's unprivileged post-login child, no pthread
//! key lost per load, no password let through when a signal interrupts
//! its wait, and at most one waiting thread per process.

use banguard::Config;
use banguard_e2e::fixture::ConfigFile;
use banguard_e2e::pamtest::{Confdir, PAM_AUTHINFO_UNAVAIL, PAM_PERM_DENIED, Pam};
use banguard_e2e::{artifacts, require, workspace_root};
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

const HOST: &str = "198.51.100.7";
const USER: &str = "alice";

struct Host {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    confdir: PathBuf,
    config: PathBuf,
    exe: PathBuf,
}

impl Host {
    /// A config with `toml` over the test defaults, and the host compiled.
    fn new(toml: &str) -> Host {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().to_path_buf();
        let config = root.join("banguard.toml");
        ConfigFile::under(&root)
            .with("maxretry = 2\nbantime = \"1h\"\nrefusal_delay = 0\n[recidive]\nenabled = false")
            .with(toml)
            .write(&config);
        let exe = root.join("pam_host");
        let source = workspace_root().join("tests/fixtures/hosts/pam_host.c");
        let out = Command::new("cc")
            .args(["-Wall", "-Wextra", "-Werror", "-pthread", "-o"])
            .arg(&exe)
            .arg(&source)
            .arg("-lpam")
            .output()
            .expect("run cc");
        assert!(out.status.success(), "cc: {}", String::from_utf8_lossy(&out.stderr));
        Host { confdir: root.join("pam.d"), config, exe, root, _tmp: tmp }
    }

    fn line(&self, kind: &str, control: &str, args: &str) -> String {
        format!(
            "{kind} {control} {} config={} {args}",
            artifacts().pam_module.display(),
            self.config.display()
        )
    }

    fn service(&self, name: &str, lines: Vec<String>) {
        Confdir::new(&self.confdir).service(name, &lines);
    }

    fn run(&self, args: &[&str]) -> String {
        let out: Output = Command::new(&self.exe).args(args).output().expect("run the host");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?}: {}\n{text}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    /// The value after `key ` on the host's output lines.
    fn values(out: &str, key: &str) -> Vec<i64> {
        out.lines().filter_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok()).collect()
    }

    /// Holds the runtime state's turn lock as another process would.
    fn hold_turn(&self) -> fs::File {
        let config = Config::load(&self.config).expect("config");
        let path = banguard::lock::lock_path(&config.store.runtime);
        let file = fs::OpenOptions::new().read(true).write(true).open(&path).expect("open the turn lock");
        file.lock().expect("take the turn");
        file
    }

    /// One attempt in this process, so the runtime state exists.
    fn create_runtime(&self, service: &str) {
        let mut p = Pam::start(&self.confdir, service, USER);
        p.rhost("192.0.2.1");
        p.authenticate();
    }
}

fn ready(test: &str) -> bool {
    require(test, true, &["cc"])
}

/// After refused passwords and a key login, sshd's privileged process
/// forks its unprivileged child without exec: the child must not inherit
/// the runtime state, its lock or (after a ban) the store, in the single
/// line's stack and in pam_faillock's explicit one without `authsucc`.
#[test]
fn sshds_unprivileged_child_inherits_no_file_of_banguards() {
    if !ready("sshds_unprivileged_child_inherits_no_file_of_banguards") {
        return;
    }
    let h = Host::new("");
    h.service(
        "single",
        vec![
            h.line("auth", "requisite", ""),
            "auth required pam_deny.so".into(),
            "account required pam_permit.so".into(),
        ],
    );
    h.service(
        "explicit",
        vec![
            h.line("auth", "requisite", "preauth"),
            "auth [success=1 default=bad] pam_deny.so".into(),
            h.line("auth", "[default=die]", "authfail"),
            "auth required pam_deny.so".into(),
            "account required pam_permit.so".into(),
        ],
    );
    let watch = format!("{}/", h.root.display());
    for service in ["single", "explicit"] {
        // Two wrong passwords, then a third refused by the ban they made:
        // the store was opened and written, not only the runtime state.
        let out = h.run(&["sshd-shape", h.confdir.to_str().unwrap(), service, USER, HOST, "3", &watch]);
        let auth = Host::values(&out, "authenticate");
        assert_eq!(auth.len(), 3, "{out}");
        assert_eq!(auth[2], i64::from(PAM_PERM_DENIED), "the third password is refused by the ban:\n{out}");
        assert!(h.root.join("db/banguard.db").exists());
        assert_eq!(
            Host::values(&out, "child-leaks"),
            [0],
            "{service}: the child holds files of banguard's:\n{out}"
        );
        // A fresh address for the next stack.
        let mut g = banguard::Banguard::open(Config::load(&h.config).unwrap()).unwrap();
        g.unban_all(None).unwrap();
    }
}

/// A long-lived multi-threaded host that authenticates in fresh threads,
/// the module loaded and unloaded each time, each attempt waiting for its
/// turn through a helper thread: past the 1,024 pthread keys a process
/// has, none is lost per load (each fresh load of the module's std took
/// one for its threads).
#[test]
fn loading_the_module_again_and_again_costs_no_pthread_key() {
    if !ready("loading_the_module_again_and_again_costs_no_pthread_key") {
        return;
    }
    let h = Host::new("");
    h.service("reload", vec![h.line("auth", "requisite", ""), "auth required pam_permit.so".into()]);
    h.create_runtime("reload");
    let config = Config::load(&h.config).expect("config");
    let lock = banguard::lock::lock_path(&config.store.runtime);
    let out =
        h.run(&["reload", h.confdir.to_str().unwrap(), "reload", USER, HOST, "1100", lock.to_str().unwrap()]);
    assert_eq!(Host::values(&out, "waited"), [1100], "every attempt waited through a helper:\n{out}");
    assert_eq!(Host::values(&out, "allowed"), [1100], "and then got its turn:\n{out}");
    let free = Host::values(&out, "keys-free");
    assert!(free.len() == 1 && free[0] > 900, "pthread keys were used up by the loads:\n{out}");
}

/// Signals that interrupt the wait for the turn never let a password
/// through uncounted (failmode open, the right password behind the
/// line): every attempt is refused unchecked; thirty waits that ran out
/// leave one waiting thread, not thirty.
#[test]
fn a_signal_never_lets_a_waiting_password_through_and_waiters_do_not_pile_up() {
    if !ready("a_signal_never_lets_a_waiting_password_through_and_waiters_do_not_pile_up") {
        return;
    }
    let h = Host::new("[store]\nbusy_timeout_ms = 100");
    h.service("signals", vec![h.line("auth", "requisite", ""), "auth required pam_permit.so".into()]);
    h.create_runtime("signals");
    let _held = h.hold_turn();
    let out = h.run(&["signals", h.confdir.to_str().unwrap(), "signals", USER, HOST, "30"]);
    let rcs = Host::values(&out, "rc");
    assert_eq!(rcs.len(), 30, "{out}");
    assert!(rcs.iter().all(|rc| *rc == i64::from(PAM_AUTHINFO_UNAVAIL)), "{out}");
    assert!(Host::values(&out, "signals")[0] > 0, "no signal was delivered:\n{out}");
    // The main thread and at most one helper, still parked in flock.
    assert!(Host::values(&out, "threads")[0] <= 2, "{out}");
    // stdin/out/err, the directory being listed, the helper's lock file
    // and libpam's syslog socket at most.
    assert!(Host::values(&out, "fds")[0] <= 7, "{out}");
}
