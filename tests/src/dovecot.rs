//! A real Dovecot IMAP server inside a [`Netns`], passdb PAM (service
//! `dovecot`), with the same throwaway user as [`crate::sshd`], plus an IMAP
//! client (python3's imaplib) that logs in once from a chosen source address.
//!
//! Dovecot is the application shape the one module line cannot see succeed
//! by itself: its PAM passdb calls `pam_authenticate` and `pam_acct_mgmt`,
//! and `pam_setcred` only with `setcred=yes` (default no).

use crate::Netns;
use crate::sshd::{Bounded, TestUser, ensure_test_user, first_child, prepare_runtime, set_pam_service};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;
use tempfile::TempDir;

/// Dovecot's IMAP port inside the namespace.
pub const IMAP_PORT: u16 = 1143;

/// Debian 12's stock `/etc/pam.d/dovecot` without comments (dovecot-core 2.3.19).
pub const DEBIAN_DOVECOT_STACK: &str = "\
@include common-auth
@include common-account
@include common-session
";

/// A running Dovecot on 127.0.0.1:[`IMAP_PORT`]. Stopped on drop.
pub struct DovecotServer {
    dir: TempDir,
    nsenter_pid: u32,
    pub user: TestUser,
}

/// What one IMAP login gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImapOutcome {
    LoggedIn,
    /// The server answered NO to LOGIN.
    Denied,
    /// Anything else (connection trouble, a timeout), with the client's output.
    Error(String),
}

impl DovecotServer {
    /// Starts Dovecot (foreground, IMAP only, plaintext logins allowed on
    /// loopback, passdb PAM, userdb passwd) with `pam_stack` as
    /// `/etc/pam.d/dovecot`. Its failure delays are off (`auth_failure_delay
    /// = 0`, and anvil's per-address penalty has no socket to answer on), so
    /// the test sees banguard's decisions at full speed. Panics with its log
    /// when it does not listen within 15 s.
    pub fn start(ns: &mut Netns, pam_stack: &str) -> DovecotServer {
        prepare_runtime(ns);
        let user = ensure_test_user(ns);
        set_pam_service(ns, "dovecot", Some(pam_stack));
        let dir = tempfile::Builder::new().prefix("bg-e2e-dovecot.").tempdir().expect("tempdir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let d = dir.path();
        for sub in ["run", "state"] {
            fs::create_dir(d.join(sub)).expect("mkdir");
        }
        let conf = format!(
            "protocols = imap\n\
             listen = 127.0.0.1\n\
             base_dir = {d}/run\n\
             state_dir = {d}/state\n\
             log_path = {d}/dovecot.log\n\
             ssl = no\n\
             disable_plaintext_auth = no\n\
             auth_mechanisms = plain login\n\
             auth_failure_delay = 0\n\
             auth_verbose = yes\n\
             mail_location = maildir:~/Maildir\n\
             passdb {{\n  driver = pam\n  args = dovecot\n}}\n\
             userdb {{\n  driver = passwd\n}}\n\
             service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {IMAP_PORT}\n  }}\n}}\n\
             service anvil {{\n  unix_listener anvil-auth-penalty {{\n    mode = 0\n  }}\n}}\n",
            d = d.display()
        );
        let conf_path = d.join("dovecot.conf");
        fs::write(&conf_path, conf).expect("write dovecot.conf");
        let out = fs::File::create(d.join("stderr.log")).expect("create stderr.log");
        let mut cmd =
            ns.command(["/usr/sbin/dovecot".as_ref(), "-F".as_ref(), "-c".as_ref(), conf_path.as_os_str()]);
        cmd.stdout(out.try_clone().expect("dup")).stderr(out);
        let nsenter_pid = ns.spawn(cmd).id();
        let server = DovecotServer { dir, nsenter_pid, user };
        if !crate::wait_for_listener(ns, IMAP_PORT, Duration::from_secs(15)) {
            panic!("dovecot did not listen on port {IMAP_PORT}; its log:\n{}", server.log());
        }
        server
    }

    /// Dovecot's log and stderr, for debugging.
    pub fn log(&self) -> String {
        let d = self.dir.path();
        let mut s = fs::read_to_string(d.join("dovecot.log")).unwrap_or_default();
        s.push_str(&fs::read_to_string(d.join("stderr.log")).unwrap_or_default());
        s
    }

    /// One IMAP connection from `source` (an address on lo) with one LOGIN.
    /// The credentials reach the client through a file, never a command
    /// line. Hard limit 20 s.
    pub fn try_login(&self, ns: &Netns, source: &str, user: &str, password: &str) -> ImapOutcome {
        let script = "\
import imaplib, socket, sys
source, port = sys.argv[1], int(sys.argv[2])
user, password = open(sys.argv[3]).read().split('\\n')[:2]
class Client(imaplib.IMAP4):
    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, source_address=(source, 0))
try:
    imap = Client('127.0.0.1', port, timeout=15)
except OSError as e:
    sys.exit(f'connect: {e}')
try:
    imap.login(user, password)
except imaplib.IMAP4.error as e:
    print('DENIED', e)
    sys.exit(0)
print('LOGGEDIN')
imap.logout()
";
        assert!(!user.contains('\n') && !password.contains('\n'), "bad IMAP credentials");
        let creds_dir = tempfile::Builder::new().prefix("bg-e2e-imap.").tempdir().expect("tempdir");
        let creds = creds_dir.path().join("credentials");
        fs::write(&creds, format!("{user}\n{password}\n")).expect("write credentials");
        let port = IMAP_PORT.to_string();
        let creds = creds.display().to_string();
        let cmd = ns.command(["timeout", "-k", "2", "18", "python3", "-c", script, source, &port, &creds]);
        let r = Bounded::spawn(cmd, Duration::from_secs(20)).finish();
        match r.stdout.lines().next() {
            Some("LOGGEDIN") => ImapOutcome::LoggedIn,
            Some(l) if l.starts_with("DENIED") => ImapOutcome::Denied,
            _ => ImapOutcome::Error(format!("status {:?}: {}{}", r.status, r.stdout, r.stderr)),
        }
    }

    /// The server's temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for DovecotServer {
    fn drop(&mut self) {
        if let Some(pid) = first_child(self.nsenter_pid) {
            // SAFETY: kill(2) on a pid of a process we started; at worst ESRCH.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            let _ = crate::wait_for(Duration::from_secs(5), || {
                (!Path::new(&format!("/proc/{pid}")).exists()).then_some(())
            });
        }
    }
}
