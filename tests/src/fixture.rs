//! The fixture of the module tests and benchmarks: a banguard config +
//! store in a temp dir, the one module line that uses it, read-only views
//! of the store, and a syslog socket to read what was logged.
//!
//! The store lives on the host's /tmp, which the test namespaces see too
//! (they copy the host's mounts), so sshd/vsftpd inside a namespace and
//! the test process outside read and write the same file.

use crate::{Netns, artifacts};
use banguard::policy::SystemClock;
use banguard::store::Access;
use banguard::{Ban, Banguard, Config, HostKey};
use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;

/// The policy knobs the tests turn. Everything else stays at banguard's
/// defaults, except that the sync trigger goes to the temp dir.
#[derive(Clone, Debug)]
pub struct Policy {
    pub maxretry: u32,
    pub findtime: &'static str,
    pub bantime: &'static str,
    /// TOML array body, e.g. `"127.0.0.9/32"`; empty: `ignoreip = []`
    /// (the default list covers 127.0.0.0/8, our attacker addresses).
    pub ignoreip: &'static [&'static str],
    /// `Some(n)`: the repeat-offender rule with `bans = n`; `None`: off.
    pub recidive_bans: Option<u32>,
    /// `[store] synchronous` ("normal", "off"); `None`: the default.
    pub synchronous: Option<&'static str>,
    /// The runtime state on tmpfs (/dev/shm, as /run is on a systemd
    /// machine) instead of next to the store in the temp dir.
    pub runtime_on_tmpfs: bool,
    /// `refusal_delay`: "0" by default so tests stay fast (as they set
    /// pam_unix's `nodelay`); benchmarks use the stock "2s".
    pub refusal_delay: &'static str,
    /// Lines of `[accounts]` (the account side); empty: its defaults.
    pub accounts: &'static str,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            maxretry: 3,
            findtime: "10m",
            bantime: "1h",
            ignoreip: &[],
            recidive_bans: None,
            synchronous: None,
            runtime_on_tmpfs: false,
            refusal_delay: "0",
            accounts: "",
        }
    }
}

/// The one way the tests write a banguard.toml: the store and the sync
/// trigger inside a test's directory, then the test's own TOML, merged
/// section by section (a snippet may name `[sync]` or `[store]` again).
#[derive(Debug, Clone)]
pub struct ConfigFile {
    sections: Vec<(String, Vec<String>)>,
}

impl ConfigFile {
    /// The store at `root/db/banguard.db`, the trigger at
    /// `root/run/ban.trigger`.
    pub fn under(root: &Path) -> ConfigFile {
        ConfigFile { sections: Vec::new() }
            .key("default", "database", &root.join("db/banguard.db").display().to_string())
            .key("sync", "trigger_file", &root.join("run/ban.trigger").display().to_string())
    }

    /// The store at `path` instead.
    pub fn database(mut self, path: &Path) -> ConfigFile {
        self.section("default").retain(|l| !l.starts_with("database ="));
        self.key("default", "database", &path.display().to_string())
    }

    /// Sets a string key.
    pub fn key(mut self, section: &str, key: &str, value: &str) -> ConfigFile {
        self.section(section).push(format!("{key} = {value:?}"));
        self
    }

    /// Adds TOML lines: before any `[header]` they go to `[default]`.
    pub fn with(mut self, toml: &str) -> ConfigFile {
        let mut section = "default".to_string();
        for line in toml.lines().map(str::trim).filter(|l| !l.is_empty()) {
            match line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                Some(name) if !line.contains('=') && !line.contains('"') => section = name.trim().to_string(),
                _ => self.section(&section).push(line.to_string()),
            }
        }
        self
    }

    fn section(&mut self, name: &str) -> &mut Vec<String> {
        let i = match self.sections.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                self.sections.push((name.to_string(), Vec::new()));
                self.sections.len() - 1
            }
        };
        &mut self.sections[i].1
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        for (name, lines) in &self.sections {
            out.push_str(&format!("[{name}]\n"));
            for l in lines {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Writes it to `path` through a rename (a reader never sees half a
    /// file), mode 0644 as the core demands of a config.
    pub fn write(&self, path: &Path) {
        let tmp = path.with_extension("toml.new");
        fs::write(&tmp, self.text()).expect("write config");
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).expect("chmod config");
        fs::rename(&tmp, path).expect("rename config");
    }
}

/// A config file and its store in a fresh temp dir.
pub struct Fixture {
    tmp: TempDir,
    /// Holds the runtime state when the policy wants it on tmpfs.
    shm: Option<TempDir>,
    pub config: PathBuf,
    pub db: PathBuf,
}

impl Fixture {
    pub fn new(policy: &Policy) -> Fixture {
        let tmp = tempfile::Builder::new().prefix("bg-e2e-module.").tempdir().expect("tempdir");
        let shm = policy.runtime_on_tmpfs.then(|| {
            tempfile::Builder::new()
                .prefix("bg-e2e-runtime.")
                .tempdir_in("/dev/shm")
                .expect("tempdir on /dev/shm")
        });
        let f = Fixture {
            config: tmp.path().join("banguard.toml"),
            db: tmp.path().join("db/banguard.db"),
            shm,
            tmp,
        };
        f.set_policy(policy);
        f
    }

    /// A fixture whose store can never be opened: its directory is a
    /// regular file.
    pub fn unusable_store(policy: &Policy) -> Fixture {
        let tmp = tempfile::Builder::new().prefix("bg-e2e-module.").tempdir().expect("tempdir");
        fs::write(tmp.path().join("not-a-dir"), b"").expect("write file");
        let f = Fixture {
            config: tmp.path().join("banguard.toml"),
            db: tmp.path().join("not-a-dir/banguard.db"),
            shm: None,
            tmp,
        };
        f.set_policy(policy);
        f
    }

    /// Turns on the sync to nftables (lock file in the temp dir), with
    /// `extra` lines (`scope = "all"`, `escalate_after = 0`) in `[sync]`.
    pub fn sync_to_nftables(&self, extra: &str) {
        let lock = self.tmp.path().join("sync.lock");
        let text = fs::read_to_string(&self.config).expect("read config").replace(
            "[sync]\n",
            &format!("[sync]\nbackends = [\"nftables\"]\nlock_file = \"{}\"\n{extra}", lock.display()),
        );
        fs::write(&self.config, text).expect("write config");
        fs::set_permissions(&self.config, fs::Permissions::from_mode(0o644)).expect("chmod config");
    }

    /// The sync trigger the module touches after each new ban.
    pub fn trigger(&self) -> PathBuf {
        self.tmp.path().join("run/ban.trigger")
    }

    /// The temp dir (config, store, trigger).
    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// (Re)writes the config. The module reads it at every call, so this
    /// applies from the next authentication on. Written through a rename
    /// so that no call sees half a file; mode 0644 as the core demands.
    pub fn set_policy(&self, p: &Policy) {
        let ignoreip: Vec<String> = p.ignoreip.iter().map(|n| format!("\"{n}\"")).collect();
        let recidive = match p.recidive_bans {
            Some(n) => format!("enabled = true\nbans = {n}\nfindtime = \"1d\"\nbantime = \"1h\""),
            None => "enabled = false".to_string(),
        };
        let mut conf = ConfigFile::under(self.dir()).database(&self.db).with(&format!(
            "maxretry = {}\nfindtime = \"{}\"\nbantime = \"{}\"\nignoreip = [{}]\nrefusal_delay = \"{}\"\n\
             [recidive]\n{recidive}",
            p.maxretry,
            p.findtime,
            p.bantime,
            ignoreip.join(", "),
            p.refusal_delay,
        ));
        if let Some(v) = p.synchronous {
            conf = conf.key("store", "synchronous", v);
        }
        if !p.accounts.is_empty() {
            conf = conf.with(&format!("[accounts]\n{}", p.accounts));
        }
        if let Some(shm) = &self.shm {
            conf = conf.key("store", "runtime", &shm.path().join("runtime.db").display().to_string());
        }
        conf.write(&self.config);
    }

    /// The ONE line a user adds: `auth requisite <abs module> config=<file> [extra]`.
    pub fn module_line(&self, extra: &str) -> String {
        let line =
            format!("auth requisite {} config={}", artifacts().pam_module.display(), self.config.display());
        if extra.is_empty() { line } else { format!("{line} {extra}") }
    }

    /// A read-only view of the store (fails if nothing created it yet).
    pub fn engine(&self) -> Banguard {
        let config = Config::load(&self.config).expect("load config");
        Banguard::open_with(config, Access::ReadOnly, Arc::new(SystemClock)).expect("open store read-only")
    }

    /// Attempts of `addr` on `service` that count against it now: failed
    /// ones and pending ones (recorded before the password check and not
    /// given back). 0 when the host has none or is banned (a ban consumes
    /// the attempts that made it).
    pub fn counted(&self, service: &str, addr: &str) -> u32 {
        let k = key(addr);
        let failing = self.engine().failing(Some(service)).expect("failing");
        failing.iter().filter(|f| f.host == k).map(|f| f.count).sum()
    }

    /// Attempts of `addr` on `service` given back by a successful login.
    pub fn given_back(&self, service: &str, addr: &str) -> u32 {
        self.count_attempts(service, addr, "AND state = 2")
    }

    /// Every attempt row of `addr` on `service`, whatever its state.
    pub fn rows(&self, service: &str, addr: &str) -> u32 {
        self.count_attempts(service, addr, "")
    }

    /// Attempt rows of `addr` on `service` matching the extra SQL condition.
    fn count_attempts(&self, service: &str, addr: &str, condition: &str) -> u32 {
        let query = format!("SELECT count(*) FROM attempts WHERE host = ?1 AND service = ?2 {condition}");
        sql(self.engine().store().runtime_path())
            .query_row(&query, [key(addr).db_key(), service.to_string()], |r| r.get(0))
            .expect("count attempts")
    }

    /// The active ban that refuses `addr` on `service` (its own or one on
    /// all services), if any.
    pub fn active_ban(&self, service: &str, addr: &str) -> Option<Ban> {
        let k = key(addr);
        self.engine().bans(Some(service), false).expect("bans").into_iter().find(|b| b.host == k)
    }

    /// Every ban of `addr`, active or not.
    pub fn all_bans(&self, addr: &str) -> Vec<Ban> {
        let k = key(addr);
        self.engine().bans(None, true).expect("bans").into_iter().filter(|b| b.host == k).collect()
    }
}

/// The host key banguard counts `addr` under with the default prefixes
/// (/32 for IPv4, /64 for IPv6).
/// A connection of the test's own to one of the store's two files: tests
/// read rows and hold locks as another process would (the library keeps
/// its SQL to itself).
pub fn sql(file: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(file).expect("open a store file");
    conn.busy_timeout(Duration::from_secs(10)).expect("busy timeout");
    conn
}

pub fn key(addr: &str) -> HostKey {
    let a: IpAddr = addr.parse().expect("an IP address");
    HostKey::for_addr(a, 32, 64)
}

/// Polls `cond` every 20 ms for up to `timeout`; true when it held.
/// For what sshd does after the client already saw its answer (the
/// monitor's setcred runs after USERAUTH_SUCCESS went out).
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    crate::wait_for(timeout, || cond().then_some(())).is_some()
}

/// A datagram socket standing in for `/dev/log` inside a namespace
/// (see [`private_dev_log`]): the module's syslog lines, as
/// "<PRI>pam_banguard(service:auth): text".
pub struct Syslog {
    sock: UnixDatagram,
}

impl Syslog {
    pub fn bind(path: &Path) -> Syslog {
        let sock = UnixDatagram::bind(path).expect("bind syslog socket");
        fs::set_permissions(path, fs::Permissions::from_mode(0o666)).expect("chmod socket");
        sock.set_read_timeout(Some(Duration::from_millis(100))).expect("socket timeout");
        Syslog { sock }
    }

    /// Every line received since the last call, whoever sent it.
    pub fn all_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = self.sock.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }

    /// The module's lines received since the last call.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = self.sock.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if let (Some(pri_end), Some(at)) = (text.find('>'), text.find("pam_banguard")) {
                out.push(format!("{}{}", &text[..=pri_end], &text[at..]));
            }
        }
        out
    }
}

/// Gives the namespace a private /dev (tmpfs with null, zero, random,
/// urandom) whose `log` is a socket the test reads. Everything the
/// servers and PAM modules send to syslog then stays in the test, and the
/// host's /dev is never written to.
pub fn private_dev_log(ns: &Netns, dir: &Path) -> Syslog {
    let sock = dir.join("dev-log.sock");
    let log = Syslog::bind(&sock);
    ns.run_ok(["mount", "-t", "tmpfs", "-o", "mode=755", "bg-e2e-dev", "/dev"]);
    for (name, minor) in [("null", "3"), ("zero", "5"), ("random", "8"), ("urandom", "9")] {
        ns.run_ok(["mknod", "-m", "666", &format!("/dev/{name}"), "c", "1", minor]);
    }
    ns.run_ok(["touch", "/dev/log"]);
    ns.bind_mount(&sock, Path::new("/dev/log"));
    log
}
