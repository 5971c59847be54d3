//! A real OpenSSH sshd inside a [`Netns`], with a throwaway user and a
//! test-supplied PAM stack, plus ssh clients that try passwords from chosen
//! source addresses.
//!
//! Everything that changes system files happens inside the namespace only
//! ([`prepare_runtime`]): fresh tmpfs mounts over `/run`, `/var/log` and
//! `/home` (so sshd's privsep dir, utmp/wtmp/btmp/lastlog writes and the test
//! user's home never reach the host), and bind mounts of namespace-private
//! copies of `/etc/passwd`, `/etc/shadow`, `/etc/group` and `/etc/pam.d`.
//!
//! Clients never need a terminal: every password is handed to ssh through
//! `SSH_ASKPASS` + `SSH_ASKPASS_REQUIRE=force` and a script that returns the
//! next password of a list on each call, so one connection can try several
//! passwords (sshpass can only type one). Every client runs under
//! `timeout -k` inside the namespace and is also killed from outside when a
//! host-side deadline passes.
//!
//! ```no_run
//! use banguard_e2e::Netns;
//! use banguard_e2e::sshd::*;
//! let mut ns = Netns::new();
//! ns.add_lo_addr("127.0.0.2/8");
//! let truth = GroundTruth::new();
//! let stack = with_auth_lines(
//!     DEBIAN_SSHD_STACK,
//!     &["auth requisite /path/to/libpam_banguard.so", &truth.pam_line()],
//! );
//! let srv = SshdServer::start(&mut ns, SshdOptions::with_stack(&stack));
//! let out = srv.try_password(&ns, "127.0.0.2", TEST_USER, &["bad1", "bad2", TEST_PASSWORD]);
//! assert!(out.success());
//! assert_eq!(truth.count_from("127.0.0.2"), 3); // every password reached pam_unix
//! ```

use crate::{Netns, wait_for, wait_for_listener};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Name of the throwaway user that both servers accept.
pub const TEST_USER: &str = "bgtest";
/// Its password.
pub const TEST_PASSWORD: &str = "Corr3ct-h0rse";
/// Its uid and gid (unused on Debian by default; the user exists only
/// inside the namespace).
pub const TEST_UID: u32 = 4242;
/// sshd's port inside the namespace (each namespace has its own ports).
pub const DEFAULT_SSHD_PORT: u16 = 2222;

/// Debian 12's stock `/etc/pam.d/sshd` without comments (openssh-server
/// 1:9.2p1-2). Embedded rather than read from the host so that a host whose
/// stack was edited does not change the tests.
pub const DEBIAN_SSHD_STACK: &str = "\
@include common-auth
account    required     pam_nologin.so
@include common-account
session [success=ok ignore=ignore module_unknown=ignore default=bad]        pam_selinux.so close
session    required     pam_loginuid.so
session    optional     pam_keyinit.so force revoke
@include common-session
session    optional     pam_motd.so  motd=/run/motd.dynamic
session    optional     pam_motd.so noupdate
session    optional     pam_mail.so standard noenv
session    required     pam_limits.so
session    required     pam_env.so
session    required     pam_env.so user_readenv=1 envfile=/etc/default/locale
session [success=ok ignore=ignore module_unknown=ignore default=bad]        pam_selinux.so open
@include common-password
";

/// Where the namespace-private copies live (on the namespace's own /run tmpfs).
const NS_STATE: &str = "/run/banguard-e2e";

/// Inserts `lines` into `stack` right before its first `@include common-auth`
/// (or at the top when there is none): the place where `pam_banguard.so` and
/// a [`GroundTruth`] line go.
pub fn with_auth_lines(stack: &str, lines: &[&str]) -> String {
    let mut out = String::new();
    let mut done = false;
    for l in stack.lines() {
        if !done && l.trim_start().starts_with("@include") && l.contains("common-auth") {
            for x in lines {
                out.push_str(x);
                out.push('\n');
            }
            done = true;
        }
        out.push_str(l);
        out.push('\n');
    }
    if !done {
        let mut top: String = lines.iter().map(|x| format!("{x}\n")).collect();
        top.push_str(&out);
        return top;
    }
    out
}

/// Prepares the namespace for servers, once per namespace (idempotent).
///
/// Mounts fresh tmpfs over `/run`, `/var/log` and `/home`, creates
/// `/run/sshd` (sshd's privsep dir) and `/run/vsftpd/empty`, and bind-mounts
/// namespace-private copies of `/etc/{passwd,shadow,group}` and
/// `/etc/pam.d` (kept under `/run/banguard-e2e/`). Anything a test put in
/// `/run` before the first call is hidden by the tmpfs.
pub fn prepare_runtime(ns: &Netns) {
    if ns.run(["test", "-d", NS_STATE]).status.success() {
        return;
    }
    // /etc is not under any of the new mounts, so it can be copied after.
    let script = format!(
        "set -e
        mount -t tmpfs -o mode=0755 bg-e2e-run /run
        mount -t tmpfs -o mode=0755 bg-e2e-log /var/log
        mount -t tmpfs -o mode=0755 bg-e2e-home /home
        mkdir -p -m 0755 /run/sshd /run/vsftpd/empty {NS_STATE}
        cp -a /etc/pam.d /etc/passwd /etc/shadow /etc/group {NS_STATE}/
        for f in passwd shadow group pam.d; do mount --bind {NS_STATE}/$f /etc/$f; done"
    );
    ns.run_ok(["sh", "-c", &script]);
}

/// Writes `contents` to `path` as seen inside the namespace (through a
/// temp file and a rename, so that a reader never sees half a file).
pub fn write_ns_file(ns: &Netns, path: &str, contents: &str) {
    let mut child = ns
        .command(["sh", "-c", "cat > \"$1.tmp\" && mv -f \"$1.tmp\" \"$1\"", "sh", path])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nsenter");
    child.stdin.take().expect("piped stdin").write_all(contents.as_bytes()).expect("write to nsenter stdin");
    let out = child.wait_with_output().expect("wait nsenter");
    assert!(
        out.status.success(),
        "writing {path} in the namespace failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sets (or, with `contents = None`, removes) the PAM service file
/// `/etc/pam.d/<service>` inside the namespace. libpam reads it at every
/// `pam_start`, so a change applies to the next connection.
pub fn set_pam_service(ns: &Netns, service: &str, contents: Option<&str>) {
    assert!(!service.is_empty() && !service.contains('/'), "bad PAM service name {service:?}");
    prepare_runtime(ns);
    let path = format!("{NS_STATE}/pam.d/{service}");
    match contents {
        Some(c) => write_ns_file(ns, &path, c),
        None => {
            ns.run_ok(["rm", "-f", &path]);
        }
    }
}

/// Adds or removes `nodelay` on the `auth ... pam_unix.so` line of the
/// namespace's `common-auth`. With the stock line every wrong password costs
/// pam_unix's ~2 s fail delay; tests switch it off to stay fast. Nothing else
/// in the stack changes.
pub fn set_pam_unix_nodelay(ns: &Netns, nodelay: bool) {
    prepare_runtime(ns);
    let sed = if nodelay {
        r"/^auth.*pam_unix\.so/{/ nodelay/!s/$/ nodelay/}"
    } else {
        r"/^auth.*pam_unix\.so/s/ nodelay//"
    };
    let file = format!("{NS_STATE}/pam.d/common-auth");
    // sed -i replaces the file inside the bind-mounted directory: fine.
    ns.run_ok(["sed", "-i", "-e", sed, &file]);
}

/// A local user that exists only inside one namespace.
#[derive(Clone, Debug)]
pub struct TestUser {
    pub name: String,
    pub password: String,
    pub uid: u32,
    pub home: String,
}

/// Creates the throwaway user [`TEST_USER`] / [`TEST_PASSWORD`].
pub fn ensure_test_user(ns: &Netns) -> TestUser {
    add_user(ns, TEST_USER, TEST_PASSWORD, TEST_UID)
}

/// Creates a local user inside the namespace by appending to the
/// namespace's copies of passwd/shadow/group (shell `/bin/sh`, home
/// `/home/<name>` on the namespace's tmpfs). If the name already exists the
/// call changes nothing and returns the record with the given password.
pub fn add_user(ns: &Netns, name: &str, password: &str, uid: u32) -> TestUser {
    assert!(
        name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
        "bad user name {name:?}"
    );
    prepare_runtime(ns);
    let home = format!("/home/{name}");
    let user = TestUser { name: name.into(), password: password.into(), uid, home: home.clone() };
    let passwd = ns.run_ok(["cat", "/etc/passwd"]);
    if String::from_utf8_lossy(&passwd.stdout).lines().any(|l| l.split(':').next() == Some(name)) {
        return user;
    }
    let hash = sha512_crypt(password);
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(19_000)
        - 1;
    let script = format!(
        "set -e
        echo '{name}:x:{uid}:{uid}:banguard e2e:{home}:/bin/sh' >> {NS_STATE}/passwd
        echo '{name}:{hash}:{days}:0:99999:7:::' >> {NS_STATE}/shadow
        echo '{name}:x:{uid}:' >> {NS_STATE}/group
        install -d -o {uid} -g {uid} -m 0755 {home}"
    );
    ns.run_ok(["sh", "-c", &script]);
    user
}

/// SHA-512 crypt hash, from whichever tool exists (openssl, mkpasswd, python3).
fn sha512_crypt(password: &str) -> String {
    assert!(!password.contains('\n'), "password with a newline");
    let tries: [(&str, &[&str]); 3] = [
        ("openssl", &["passwd", "-6", "-stdin"]),
        ("mkpasswd", &["-m", "sha-512", "--stdin"]),
        (
            "python3",
            &[
                "-c",
                "import crypt,sys; print(crypt.crypt(sys.stdin.readline().rstrip('\\n'), crypt.METHOD_SHA512))",
            ],
        ),
    ];
    for (prog, args) in tries {
        let Some(path) = crate::find_program(prog) else { continue };
        let Ok(mut child) = Command::new(path)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
        else {
            continue;
        };
        let _ = child.stdin.take().expect("piped").write_all(format!("{password}\n").as_bytes());
        if let Ok(out) = child.wait_with_output() {
            let h = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() && h.starts_with("$6$") {
                return h;
            }
        }
    }
    panic!("no way to make a SHA-512 crypt hash (need openssl, mkpasswd or python3)");
}

/// Ground truth for "how many passwords were actually evaluated": an auth
/// line that appends one line per `pam_sm_authenticate` call reaching it.
///
/// Put [`GroundTruth::pam_line`] right after `pam_banguard.so` and before
/// `@include common-auth` (see [`with_auth_lines`]): a password that the
/// lines above refuse never reaches it, every password that goes on to
/// pam_unix passes it exactly once. `[default=ignore]` keeps it from ever
/// changing the stack's result.
///
/// Two back-ends: [`GroundTruth::new`] uses `pam_exec.so` and a shell
/// script (no compiler needed; fine for sshd). vsftpd deadlocks with any
/// module that forks a child during authentication (its SIGCHLD handler
/// reaps "the" child and then waits for its own session process), so for
/// vsftpd use [`GroundTruth::compiled`], which builds
/// `tests/fixtures/pam_probe.c` (gcc + libpam0g-dev) and forks nothing.
pub struct GroundTruth {
    dir: TempDir,
    line: String,
}

impl GroundTruth {
    /// The `pam_exec.so` back-end.
    pub fn new() -> GroundTruth {
        let dir = truth_dir();
        let log = dir.path().join("evaluated.log");
        // pam_exec exports PAM_TYPE, PAM_RHOST, PAM_USER, PAM_SERVICE. Only
        // the auth call counts (pam_exec's setcred does nothing, but be sure).
        let script = format!(
            "#!/bin/sh\n\
             [ \"$PAM_TYPE\" = auth ] || exit 0\n\
             echo \"hook=authenticate service=${{PAM_SERVICE:--}} user=${{PAM_USER:--}} rhost=${{PAM_RHOST:--}}\" >> '{}'\n\
             exit 0\n",
            log.display()
        );
        let path = dir.path().join("count.sh");
        fs::write(&path, script).expect("write ground-truth script");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        let line = format!("auth [default=ignore] pam_exec.so quiet {}", path.display());
        GroundTruth { dir, line }
    }

    /// The compiled back-end (pam_probe.so; needs gcc and the PAM headers).
    pub fn compiled() -> GroundTruth {
        let dir = truth_dir();
        let so = build_pam_probe(dir.path());
        let line = format!(
            "auth [default=ignore] {} label=truth log={}",
            so.display(),
            dir.path().join("evaluated.log").display()
        );
        GroundTruth { dir, line }
    }

    /// The stack line to insert, e.g.
    /// `auth [default=ignore] pam_exec.so quiet /tmp/bg-e2e-truth.X/count.sh`.
    pub fn pam_line(&self) -> String {
        self.line.clone()
    }

    /// The log file: one `hook=authenticate ... rhost=R` line per evaluated
    /// password (the compiled back-end also logs other hooks; they are not
    /// counted).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("evaluated.log")
    }

    fn evaluated(&self) -> Vec<String> {
        fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("hook=authenticate "))
            .map(str::to_string)
            .collect()
    }

    /// How many passwords were evaluated so far, from any host.
    pub fn count(&self) -> usize {
        self.evaluated().len()
    }

    /// How many passwords from `rhost` (PAM_RHOST as the service set it)
    /// were evaluated so far.
    pub fn count_from(&self, rhost: &str) -> usize {
        let token = format!("rhost={rhost}");
        self.evaluated().iter().filter(|l| l.split_whitespace().any(|w| w == token)).count()
    }
}

impl Default for GroundTruth {
    fn default() -> Self {
        GroundTruth::new()
    }
}

fn truth_dir() -> TempDir {
    let dir = tempfile::Builder::new().prefix("bg-e2e-truth.").tempdir().expect("tempdir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// Builds `tests/fixtures/pam_probe.c` (a PAM module that logs every hook
/// call; see its header) into `dir/pam_probe.so` with gcc, and returns the
/// path. Stack arguments: `log=PATH label=NAME [rc=success]`.
pub fn build_pam_probe(dir: &Path) -> PathBuf {
    let so = dir.join("pam_probe.so");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/pam_probe.c");
    let out = Command::new("gcc")
        .args(["-Wall", "-O1", "-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(&src)
        .arg("-lpam")
        .stdin(Stdio::null())
        .output()
        .expect("run gcc (needed for the compiled PAM probe)");
    assert!(out.status.success(), "gcc {}: {}", src.display(), String::from_utf8_lossy(&out.stderr));
    so
}

/// How sshd is set up.
#[derive(Clone, Debug)]
pub struct SshdOptions {
    /// Contents of `/etc/pam.d/sshd` inside the namespace.
    pub pam_stack: String,
    pub port: u16,
    /// sshd's `MaxAuthTries` (the default 6 is sshd's own).
    pub max_auth_tries: u32,
    /// sshd's `LoginGraceTime` in seconds.
    pub login_grace_time: u32,
    /// See [`set_pam_unix_nodelay`]; true by default so tests stay fast.
    pub pam_unix_nodelay: bool,
    /// sshd's `LogLevel` (its stderr goes to [`SshdServer::log`]).
    pub log_level: String,
    /// Extra `sshd_config` lines, placed FIRST: sshd keeps the first value
    /// it reads for a keyword, so these override the harness's own lines.
    /// (Hence no `Match` blocks here.)
    pub extra_config: Vec<String>,
}

impl Default for SshdOptions {
    fn default() -> Self {
        SshdOptions {
            pam_stack: DEBIAN_SSHD_STACK.to_string(),
            port: DEFAULT_SSHD_PORT,
            max_auth_tries: 6,
            login_grace_time: 30,
            pam_unix_nodelay: true,
            log_level: "VERBOSE".into(),
            extra_config: Vec::new(),
        }
    }
}

impl SshdOptions {
    /// Default options with the given `/etc/pam.d/sshd`.
    pub fn with_stack(stack: &str) -> SshdOptions {
        SshdOptions { pam_stack: stack.to_string(), ..SshdOptions::default() }
    }
}

/// A running sshd (`-D -e`) inside a namespace. Its listener is stopped on
/// drop; everything else dies with the namespace.
pub struct SshdServer {
    dir: TempDir,
    port: u16,
    nsenter_pid: u32,
    pub user: TestUser,
}

impl SshdServer {
    /// Starts sshd listening on 127.0.0.1 and ::1 at `opts.port`, with the
    /// test user and `opts.pam_stack` as `/etc/pam.d/sshd`. Panics (with
    /// sshd's stderr) when it does not come up within 10 s.
    pub fn start(ns: &mut Netns, opts: SshdOptions) -> SshdServer {
        prepare_runtime(ns);
        let user = ensure_test_user(ns);
        set_pam_service(ns, "sshd", Some(&opts.pam_stack));
        set_pam_unix_nodelay(ns, opts.pam_unix_nodelay);
        let dir = tempfile::Builder::new().prefix("bg-e2e-sshd.").tempdir().expect("tempdir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let d = dir.path();
        let key = d.join("ssh_host_ed25519_key");
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "banguard-e2e", "-f"])
            .arg(&key)
            .stdin(Stdio::null())
            .output()
            .expect("run ssh-keygen");
        assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
        let port = opts.port;
        let mut config: String = opts.extra_config.iter().map(|l| format!("{l}\n")).collect();
        config += &format!(
            "ListenAddress 127.0.0.1:{port}\n\
             ListenAddress [::1]:{port}\n\
             HostKey {key}\n\
             PidFile {pid}\n\
             UsePAM yes\n\
             PasswordAuthentication yes\n\
             KbdInteractiveAuthentication yes\n\
             PubkeyAuthentication no\n\
             AuthorizedKeysFile none\n\
             PermitRootLogin no\n\
             MaxAuthTries {tries}\n\
             LoginGraceTime {grace}\n\
             UseDNS no\n\
             MaxStartups 200\n\
             MaxSessions 20\n\
             PrintMotd no\n\
             PrintLastLog no\n\
             LogLevel {level}\n",
            key = key.display(),
            pid = d.join("sshd.pid").display(),
            tries = opts.max_auth_tries,
            grace = opts.login_grace_time,
            level = opts.log_level,
        );
        let config_path = d.join("sshd_config");
        fs::write(&config_path, config).expect("write sshd_config");
        let test = ns.run(["/usr/sbin/sshd".as_ref(), "-t".as_ref(), "-f".as_ref(), config_path.as_os_str()]);
        assert!(
            test.status.success(),
            "sshd -t rejected the config: {}",
            String::from_utf8_lossy(&test.stderr)
        );
        let log = fs::File::create(d.join("sshd.log")).expect("create sshd.log");
        let mut cmd = ns.command([
            "/usr/sbin/sshd".as_ref(),
            "-D".as_ref(),
            "-e".as_ref(),
            "-f".as_ref(),
            config_path.as_os_str(),
        ]);
        cmd.stdout(log.try_clone().expect("dup log")).stderr(log);
        let nsenter_pid = ns.spawn(cmd).id();
        let server = SshdServer { dir, port, nsenter_pid, user };
        if !wait_for_listener(ns, port, Duration::from_secs(10)) {
            panic!("sshd did not listen on port {port}; its log:\n{}", server.log());
        }
        server
    }

    /// The port it listens on (127.0.0.1 and ::1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The listening sshd's pid in the host's view (its `/proc/PID/stat`
    /// `cutime`/`cstime` add up every connection it has reaped).
    pub fn listener_pid(&self) -> Option<u32> {
        first_child(self.nsenter_pid)
    }

    /// The server's temp dir (config, host key, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// sshd's stderr so far (`-e`: its own log lines, for debugging).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Replaces `/etc/pam.d/sshd`; applies from the next connection on.
    pub fn set_pam_stack(&self, ns: &Netns, stack: &str) {
        set_pam_service(ns, "sshd", Some(stack));
    }

    /// One connection from `source` that offers `passwords` in turn with
    /// the `password` method (one `pam_authenticate` each) and runs `true`
    /// once one is accepted.
    pub fn try_password(&self, ns: &Netns, source: &str, user: &str, passwords: &[&str]) -> SshOutcome {
        self.login(ns, &Login::new(Method::Password, source, user, passwords))
    }

    /// The same with the `keyboard-interactive` method (one PAM conversation,
    /// hence one forked PAM child in sshd, per password).
    pub fn try_kbdint(&self, ns: &Netns, source: &str, user: &str, passwords: &[&str]) -> SshOutcome {
        self.login(ns, &Login::new(Method::KeyboardInteractive, source, user, passwords))
    }

    /// `connections` simultaneous connections from `source`, each offering
    /// `passwords` in turn. All clients are started before any is waited for.
    pub fn try_parallel(
        &self,
        ns: &Netns,
        method: Method,
        source: &str,
        user: &str,
        passwords: &[&str],
        connections: usize,
    ) -> Vec<SshOutcome> {
        let login = Login::new(method, source, user, passwords);
        let running: Vec<_> = (0..connections).map(|_| self.spawn_login(ns, &login)).collect();
        running.into_iter().map(RunningLogin::finish).collect()
    }

    /// Logs in with one password and runs `command` (e.g. `true`).
    pub fn run_command(
        &self,
        ns: &Netns,
        method: Method,
        source: &str,
        user: &str,
        password: &str,
        command: &str,
    ) -> SshOutcome {
        let mut l = Login::new(method, source, user, &[password]);
        l.action = Action::Command(command.to_string());
        self.login(ns, &l)
    }

    /// Logs in with `ssh -N` (no command, no shell), keeps the connection
    /// open for `hold`, then ends the client with SIGTERM.
    /// Success shows as `authenticated` (the exit status is SIGTERM's).
    pub fn hold_no_command(
        &self,
        ns: &Netns,
        method: Method,
        source: &str,
        user: &str,
        password: &str,
        hold: Duration,
    ) -> SshOutcome {
        let mut l = Login::new(method, source, user, &[password]);
        l.action = Action::NoCommand(hold);
        self.login(ns, &l)
    }

    /// Runs one client as described by `login` and waits for it.
    pub fn login(&self, ns: &Netns, login: &Login) -> SshOutcome {
        self.spawn_login(ns, login).finish()
    }

    /// Starts one client without waiting (for hand-made parallel runs).
    pub fn spawn_login(&self, ns: &Netns, login: &Login) -> RunningLogin {
        assert!(login.passwords.iter().all(|p| !p.contains('\n')), "passwords cannot contain newlines");
        let dir = tempfile::Builder::new().prefix("bg-e2e-ssh.").tempdir().expect("tempdir");
        let d = dir.path();
        let mut pw = login.passwords.join("\n");
        pw.push('\n');
        fs::write(d.join("passwords"), pw).expect("write passwords");
        // Each call prints the next password and records its prompt.
        let askpass = format!(
            "#!/bin/sh\n\
             d='{d}'\n\
             echo x >> \"$d/count\"\n\
             printf '%s\\n' \"$(printf '%s' \"$1\" | tr '\\n' ' ')\" >> \"$d/prompts\"\n\
             n=$(wc -l < \"$d/count\")\n\
             sed -n \"${{n}}p\" \"$d/passwords\"\n",
            d = d.display()
        );
        let script = d.join("askpass.sh");
        fs::write(&script, askpass).expect("write askpass");
        fs::set_permissions(&script, fs::Permissions::from_mode(0o700)).expect("chmod");

        let target = if login.source.contains(':') { "::1" } else { "127.0.0.1" };
        let method = match login.method {
            Method::Password => "password",
            Method::KeyboardInteractive => "keyboard-interactive",
        };
        let tries = login.passwords.len().max(1);
        let (limit, action_args): (Duration, Vec<String>) = match &login.action {
            Action::Command(c) => (login.timeout, vec![c.clone()]),
            Action::Shell => (login.timeout, Vec::new()),
            // The hold starts once the client is in (RunningLogin::finish).
            Action::NoCommand(hold) => (login.timeout + *hold, vec!["-N".into()]),
        };
        let mut argv: Vec<String> = vec![
            "timeout".into(),
            "-k".into(),
            "2".into(),
            format!("{:.3}", limit.as_secs_f64()),
            "ssh".into(),
            "-F".into(),
            "/dev/null".into(),
            "-T".into(),
            "-p".into(),
            self.port.to_string(),
            "-b".into(),
            login.source.clone(),
            "-l".into(),
            login.user.clone(),
        ];
        let (pubkey, identity, method) = match &login.identity {
            Some(key) => (
                "PubkeyAuthentication=yes".to_string(),
                format!("IdentityFile={}", key.display()),
                "publickey",
            ),
            None => ("PubkeyAuthentication=no".to_string(), "IdentityFile=none".to_string(), method),
        };
        for o in [
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "GlobalKnownHostsFile=/dev/null",
            "LogLevel=VERBOSE",
            "ConnectTimeout=5",
            "ConnectionAttempts=1",
            "BatchMode=no",
            &pubkey,
            "HostbasedAuthentication=no",
            "GSSAPIAuthentication=no",
            "IdentitiesOnly=yes",
            &identity,
            "ServerAliveInterval=0",
        ] {
            argv.push("-o".into());
            argv.push(o.into());
        }
        argv.push("-o".into());
        argv.push(format!("PreferredAuthentications={method}"));
        argv.push("-o".into());
        argv.push(format!("NumberOfPasswordPrompts={tries}"));
        argv.push(target.into());
        argv.extend(action_args);
        let mut cmd = ns.command(&argv);
        cmd.env("SSH_ASKPASS", &script)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env_remove("DISPLAY")
            .env_remove("SSH_AUTH_SOCK");
        let run = Bounded::spawn(cmd, limit + Duration::from_secs(5));
        let hold = match login.action {
            Action::NoCommand(h) => Some(h),
            _ => None,
        };
        RunningLogin { run, dir, hold, deadline: login.timeout }
    }
}

impl Drop for SshdServer {
    fn drop(&mut self) {
        // nsenter forked the listener; stop it so that a later server in the
        // same namespace can take the port. Sessions die with the namespace.
        if let Some(pid) = first_child(self.nsenter_pid) {
            // SAFETY: kill(2) on a pid of a process we started; at worst ESRCH.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            let _ = wait_for(Duration::from_secs(3), || {
                (!Path::new(&format!("/proc/{pid}")).exists()).then_some(())
            });
        }
    }
}

pub(crate) fn first_child(pid: u32) -> Option<u32> {
    let c = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    c.split_whitespace().next()?.parse().ok()
}

/// Which SSH user-auth method the client uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `password`: one `pam_authenticate` per password, in sshd's monitor.
    Password,
    /// `keyboard-interactive`: one forked PAM child per password.
    KeyboardInteractive,
}

/// What the client does once logged in.
#[derive(Clone, Debug)]
pub enum Action {
    /// Run this remote command (`ssh host CMD`).
    Command(String),
    /// No command: sshd starts the login shell, which exits at once
    /// because the client's stdin is /dev/null.
    Shell,
    /// `ssh -N`, ended with SIGTERM this long after the client logged in.
    NoCommand(Duration),
}

/// One client connection, fully described.
#[derive(Clone, Debug)]
pub struct Login {
    pub method: Method,
    /// Source address (`ssh -b`): 127.0.0.x or an IPv6 address on lo; an
    /// IPv6 source connects to ::1, anything else to 127.0.0.1.
    pub source: String,
    pub user: String,
    /// Offered in turn on this one connection (`NumberOfPasswordPrompts`
    /// is set to their number).
    pub passwords: Vec<String>,
    pub action: Action,
    /// A private key: log in with it (`publickey`) instead of passwords.
    pub identity: Option<PathBuf>,
    /// Hard limit for connecting, authenticating and running the command
    /// (the client is killed after it; for `NoCommand` the hold comes on top).
    pub timeout: Duration,
}

impl Login {
    /// A login that runs `true`, with a 20 s hard limit.
    pub fn new(method: Method, source: &str, user: &str, passwords: &[&str]) -> Login {
        Login {
            method,
            source: source.into(),
            user: user.into(),
            passwords: passwords.iter().map(|p| p.to_string()).collect(),
            action: Action::Command("true".into()),
            identity: None,
            timeout: Duration::from_secs(20),
        }
    }
}

/// A client that was started and not yet waited for.
pub struct RunningLogin {
    run: Bounded,
    dir: TempDir,
    /// `Some` for `ssh -N`: end the client this long after it logged in.
    hold: Option<Duration>,
    deadline: Duration,
}

impl RunningLogin {
    /// Waits for the client (bounded) and collects what happened. An
    /// `ssh -N` client is sent SIGTERM `hold` after it logged in (or when
    /// its login deadline passes).
    pub fn finish(mut self) -> SshOutcome {
        if let Some(hold) = self.hold {
            while !self.run.exited()
                && !self.run.stderr_so_far().contains("Authenticated to ")
                && self.run.elapsed() < self.deadline
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            if !self.run.exited() {
                if self.run.stderr_so_far().contains("Authenticated to ") {
                    std::thread::sleep(hold);
                }
                self.run.signal_inner(libc::SIGTERM);
            }
        }
        let r = self.run.finish();
        let prompts = fs::read_to_string(self.dir.path().join("prompts")).unwrap_or_default();
        let prompts: Vec<String> = prompts.lines().map(str::to_string).collect();
        SshOutcome {
            authenticated: r.stderr.contains("Authenticated to "),
            status: r.status,
            timed_out: r.timed_out,
            prompts,
            stderr: r.stderr,
            stdout: r.stdout,
            elapsed: r.elapsed,
        }
    }
}

/// What one ssh client saw.
#[derive(Clone, Debug)]
pub struct SshOutcome {
    /// The client logged `Authenticated to ...` (LogLevel=VERBOSE).
    pub authenticated: bool,
    /// Exit code of `timeout ssh ...` (255: ssh error or denied; 124/137:
    /// timed out inside the namespace), `None` when killed by a signal.
    pub status: Option<i32>,
    /// Killed by the host-side deadline (should not happen).
    pub timed_out: bool,
    /// The prompts the client answered, in order (one per password sent).
    pub prompts: Vec<String>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl SshOutcome {
    /// Logged in and the remote command exited 0.
    pub fn success(&self) -> bool {
        self.authenticated && self.status == Some(0)
    }

    /// The server refused every password offered.
    pub fn denied(&self) -> bool {
        !self.authenticated
            && (self.stderr.contains("Permission denied")
                || self.stderr.contains("Too many authentication failures"))
    }

    /// How many passwords the client typed.
    pub fn passwords_sent(&self) -> usize {
        self.prompts.len()
    }
}

/// A child process with a host-side deadline and captured output.
pub(crate) struct Bounded {
    child: Child,
    out: Option<JoinHandle<()>>,
    err: Option<JoinHandle<()>>,
    out_buf: Arc<Mutex<Vec<u8>>>,
    err_buf: Arc<Mutex<Vec<u8>>>,
    start: Instant,
    limit: Duration,
}

pub(crate) struct BoundedResult {
    pub status: Option<i32>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Bounded {
    pub(crate) fn spawn(mut cmd: Command, limit: Duration) -> Bounded {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn client in netns");
        let out_buf = Arc::new(Mutex::new(Vec::new()));
        let err_buf = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().map(|r| reader(r, out_buf.clone()));
        let err = child.stderr.take().map(|r| reader(r, err_buf.clone()));
        Bounded { child, out, err, out_buf, err_buf, start: Instant::now(), limit }
    }

    /// What the process wrote to stderr so far.
    pub(crate) fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&self.err_buf.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Whether the process has exited (without reaping it for good: a later
    /// `finish` still sees the status).
    pub(crate) fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `sig` to the process nsenter started inside the namespace
    /// (for clients that is `timeout`, which passes it on to its command).
    pub(crate) fn signal_inner(&self, sig: libc::c_int) {
        if let Some(pid) = first_child(self.child.id()) {
            // SAFETY: kill(2) on a process we started; at worst ESRCH.
            unsafe { libc::kill(pid as libc::pid_t, sig) };
        }
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    pub(crate) fn finish(mut self) -> BoundedResult {
        let mut timed_out = false;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break s.code(),
                Ok(None) if self.start.elapsed() > self.limit => {
                    timed_out = true;
                    let _ = self.child.kill();
                    break self.child.wait().ok().and_then(|s| s.code());
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(_) => break None,
            }
        };
        let elapsed = self.start.elapsed();
        // A killed nsenter may leave its child holding the pipes; the
        // `timeout -k` inside ends that child, so these joins are bounded.
        for h in [self.out.take(), self.err.take()].into_iter().flatten() {
            let _ = h.join();
        }
        let text = |b: &Arc<Mutex<Vec<u8>>>| {
            String::from_utf8_lossy(&b.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
        };
        let (stdout, stderr) = (text(&self.out_buf), text(&self.err_buf));
        BoundedResult { status, timed_out, stdout, stderr, elapsed }
    }
}

impl Drop for Bounded {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn reader<R: Read + Send + 'static>(mut r: R, buf: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            buf.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(&chunk[..n]);
        }
    })
}
