//! A real vsftpd inside a [`Netns`], PAM service `vsftpd`, with the same
//! throwaway user as [`crate::sshd`], plus an FTP client (curl) that makes
//! one login attempt from a chosen source address.
//!
//! vsftpd opens a fresh PAM handle for every login attempt and calls
//! `pam_end` at once when it fails, unlike sshd (doc/sshd-pam-calls.md).

use crate::Netns;
use crate::sshd::{
    Bounded, TestUser, ensure_test_user, first_child, prepare_runtime, set_pam_service, set_pam_unix_nodelay,
};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;
use tempfile::TempDir;

/// vsftpd's control port inside the namespace.
pub const DEFAULT_FTP_PORT: u16 = 2121;

/// Debian 12's stock `/etc/pam.d/vsftpd` without comments (vsftpd 3.0.3-13).
pub const DEBIAN_VSFTPD_STACK: &str = "\
auth	required	pam_listfile.so item=user sense=deny file=/etc/ftpusers onerr=succeed
@include common-account
@include common-session
@include common-auth
auth	required	pam_shells.so
";

/// How vsftpd is set up.
#[derive(Clone, Debug)]
pub struct VsftpdOptions {
    /// Contents of `/etc/pam.d/vsftpd` inside the namespace.
    pub pam_stack: String,
    pub port: u16,
    /// vsftpd's `delay_failed_login` (seconds; its default is 1).
    pub delay_failed_login: u32,
    /// vsftpd's `max_login_fails` per connection (its default is 3).
    pub max_login_fails: u32,
    /// See [`crate::sshd::set_pam_unix_nodelay`]; true by default.
    pub pam_unix_nodelay: bool,
    /// Extra `vsftpd.conf` lines, appended last.
    pub extra_config: Vec<String>,
}

impl Default for VsftpdOptions {
    fn default() -> Self {
        VsftpdOptions {
            pam_stack: DEBIAN_VSFTPD_STACK.to_string(),
            port: DEFAULT_FTP_PORT,
            delay_failed_login: 0,
            max_login_fails: 3,
            pam_unix_nodelay: true,
            extra_config: Vec::new(),
        }
    }
}

/// A running vsftpd on 127.0.0.1. Its listener is stopped on drop.
pub struct VsftpdServer {
    dir: TempDir,
    port: u16,
    nsenter_pid: u32,
    pub user: TestUser,
}

/// What one FTP login attempt gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FtpOutcome {
    /// Logged in (and listed the home directory).
    LoggedIn,
    /// The server answered 530 to PASS (curl exit 67).
    Denied,
    /// Anything else: connection refused/closed, timeout, ...; curl's exit
    /// code (None when killed) and stderr.
    Error(Option<i32>, String),
}

impl VsftpdServer {
    /// Starts vsftpd with default options and `pam_stack` as
    /// `/etc/pam.d/vsftpd`.
    pub fn start(ns: &mut Netns, pam_stack: &str) -> VsftpdServer {
        VsftpdServer::start_with(
            ns,
            VsftpdOptions { pam_stack: pam_stack.to_string(), ..VsftpdOptions::default() },
        )
    }

    /// Starts vsftpd on 127.0.0.1:`opts.port` (foreground, `listen=YES`,
    /// local users, no anonymous, `seccomp_sandbox=NO`). Panics with its
    /// log when it does not listen within 10 s.
    pub fn start_with(ns: &mut Netns, opts: VsftpdOptions) -> VsftpdServer {
        prepare_runtime(ns);
        let user = ensure_test_user(ns);
        set_pam_service(ns, "vsftpd", Some(&opts.pam_stack));
        set_pam_unix_nodelay(ns, opts.pam_unix_nodelay);
        let dir = tempfile::Builder::new().prefix("bg-e2e-vsftpd.").tempdir().expect("tempdir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let d = dir.path();
        let port = opts.port;
        let mut conf = format!(
            "listen=YES\n\
             listen_ipv6=NO\n\
             listen_address=127.0.0.1\n\
             listen_port={port}\n\
             background=NO\n\
             anonymous_enable=NO\n\
             local_enable=YES\n\
             write_enable=NO\n\
             pam_service_name=vsftpd\n\
             secure_chroot_dir=/run/vsftpd/empty\n\
             seccomp_sandbox=NO\n\
             connect_from_port_20=NO\n\
             pasv_enable=YES\n\
             pasv_address=127.0.0.1\n\
             pasv_min_port=30000\n\
             pasv_max_port=30999\n\
             delay_failed_login={delay}\n\
             max_login_fails={fails}\n\
             syslog_enable=NO\n\
             xferlog_enable=YES\n\
             xferlog_std_format=NO\n\
             log_ftp_protocol=YES\n\
             vsftpd_log_file={log}\n\
             ftpd_banner=banguard-e2e\n",
            delay = opts.delay_failed_login,
            fails = opts.max_login_fails,
            log = d.join("vsftpd.log").display(),
        );
        for l in &opts.extra_config {
            conf.push_str(l);
            conf.push('\n');
        }
        let conf_path = d.join("vsftpd.conf");
        fs::write(&conf_path, conf).expect("write vsftpd.conf");
        // vsftpd insists that its config belongs to root and is not writable
        // by others; the temp file already is (we run as root).
        fs::set_permissions(&conf_path, fs::Permissions::from_mode(0o600)).expect("chmod");
        let out = fs::File::create(d.join("stderr.log")).expect("create stderr.log");
        let mut cmd = ns.command(["/usr/sbin/vsftpd".as_ref(), conf_path.as_os_str()]);
        cmd.stdout(out.try_clone().expect("dup")).stderr(out);
        let nsenter_pid = ns.spawn(cmd).id();
        let server = VsftpdServer { dir, port, nsenter_pid, user };
        if !crate::wait_for_listener(ns, port, Duration::from_secs(10)) {
            panic!("vsftpd did not listen on port {port}; its log:\n{}", server.log());
        }
        server
    }

    /// The control port (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// vsftpd's log (`log_ftp_protocol`) and stderr, for debugging.
    pub fn log(&self) -> String {
        let d = self.dir.path();
        let mut s = fs::read_to_string(d.join("vsftpd.log")).unwrap_or_default();
        s.push_str(&fs::read_to_string(d.join("stderr.log")).unwrap_or_default());
        s
    }

    /// Replaces `/etc/pam.d/vsftpd`; applies from the next login on.
    pub fn set_pam_stack(&self, ns: &Netns, stack: &str) {
        set_pam_service(ns, "vsftpd", Some(stack));
    }

    /// One FTP connection from `source` (an IPv4 address on lo, curl
    /// `--interface`) with one USER/PASS attempt; on success lists the home
    /// directory. Hard limit 15 s.
    pub fn try_login(&self, ns: &Netns, source: &str, user: &str, password: &str) -> FtpOutcome {
        let url = format!("ftp://127.0.0.1:{}/", self.port);
        let userpass = format!("{user}:{password}");
        // The credentials go through a curl config file so that they never
        // appear on a command line; `user` may not contain ':' (FTP's own
        // limit is looser, but no test needs it).
        assert!(!user.contains(':') && !userpass.contains('\n'), "bad FTP credentials");
        let cfg_dir = tempfile::Builder::new().prefix("bg-e2e-ftp.").tempdir().expect("tempdir");
        let cfg = cfg_dir.path().join("curlrc");
        let quoted = userpass.replace('\\', "\\\\").replace('"', "\\\"");
        fs::write(&cfg, format!("user = \"{quoted}\"\n")).expect("write curlrc");
        let cmd = ns.command([
            "timeout".as_ref(),
            "-k".as_ref(),
            "2".as_ref(),
            "12".as_ref(),
            "curl".as_ref(),
            "-q".as_ref(),
            "-sS".as_ref(),
            "--max-time".as_ref(),
            "10".as_ref(),
            "--interface".as_ref(),
            source.as_ref(),
            "-K".as_ref(),
            cfg.as_os_str(),
            url.as_ref(),
        ]);
        let r = Bounded::spawn(cmd, Duration::from_secs(15)).finish();
        match r.status {
            Some(0) => FtpOutcome::LoggedIn,
            Some(67) => FtpOutcome::Denied,
            other => FtpOutcome::Error(other, r.stderr),
        }
    }

    /// One FTP connection from 127.0.0.1 that sends USER/PASS once per
    /// password (vsftpd opens a fresh PAM handle for each), stopping at the
    /// first success. Written with bash's `/dev/tcp`, which cannot pick a
    /// source address; use [`VsftpdServer::try_login`] for that. Returns
    /// one outcome per password sent. Hard limit 15 s.
    pub fn try_logins(&self, ns: &Netns, user: &str, passwords: &[&str]) -> Vec<FtpOutcome> {
        let bad = |s: &str| s.contains(['\r', '\n']);
        assert!(!bad(user) && !passwords.iter().any(|p| bad(p)), "bad FTP credentials");
        // Replies are read up to their first line only; vsftpd's replies to
        // USER/PASS are single lines. Credentials come in as arguments.
        let script = "exec 3<>\"/dev/tcp/127.0.0.1/$1\" || exit 2
            read -r l <&3
            u=$2; shift 2
            for p in \"$@\"; do
              printf 'USER %s\\r\\n' \"$u\" >&3; read -r l <&3
              printf 'PASS %s\\r\\n' \"$p\" >&3; read -r l <&3 || { echo EOF; exit 0; }
              echo \"${l%$'\\r'}\"
              case $l in 230*) break;; esac
            done
            printf 'QUIT\\r\\n' >&3; read -r l <&3; exit 0";
        let port = self.port.to_string();
        let mut argv = vec!["timeout", "-k", "2", "12", "bash", "-c", script, "bash", &port, user];
        argv.extend(passwords);
        let r = Bounded::spawn(ns.command(argv), Duration::from_secs(15)).finish();
        if r.status != Some(0) {
            return vec![FtpOutcome::Error(r.status, r.stderr)];
        }
        r.stdout
            .lines()
            .map(|l| match l.get(..3) {
                Some("230") => FtpOutcome::LoggedIn,
                Some("530") => FtpOutcome::Denied,
                _ => FtpOutcome::Error(Some(0), l.to_string()),
            })
            .collect()
    }
}

impl Drop for VsftpdServer {
    fn drop(&mut self) {
        if let Some(pid) = first_child(self.nsenter_pid) {
            // SAFETY: kill(2) on a pid of a process we started; at worst ESRCH.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            let _ = crate::wait_for(Duration::from_secs(3), || {
                (!Path::new(&format!("/proc/{pid}")).exists()).then_some(())
            });
        }
    }
}
