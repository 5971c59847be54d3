//! Configuration: `/etc/banguard/banguard.toml` plus drop-ins
//! `/etc/banguard/banguard.d/*.toml` (read in name order; later files
//! override earlier ones key by key).
//!
//! One parser serves the module, the CLI and the C ABI. Every value is
//! checked while it is read, so an error names the file, the line and the
//! key. A config writable by anyone but root is refused: a local user must
//! not be able to whitelist themselves.
//!
//! Here: the effective settings and their defaults. `files`: finding and
//! reading the files safely; `raw`: one file as written, each section's
//! keys listed once; `values`: the checks of each value.

mod files;
mod raw;
mod values;

pub use files::{MAX_CONFIG_BYTES, check_trusted, dropin_dir};
pub use values::MAX_REFUSAL_DELAY;

use crate::duration::{BanTime, format_duration};
use crate::error::{Error, Result};
use crate::sync::BackendKind;
use ipnet::IpNet;
use raw::RawFile;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The config file read when none is named.
pub const DEFAULT_CONFIG: &str = "/etc/banguard/banguard.toml";
/// The store used when the config names none.
pub const DEFAULT_DATABASE: &str = "/var/lib/banguard/banguard.db";
/// The runtime state (pending attempts and the module's copy of the active
/// bans): on tmpfs, so that counting an attempt never waits for a disk.
pub const DEFAULT_RUNTIME: &str = "/run/banguard/runtime.db";
/// The runtime state that goes with `database` when the config names none:
/// the default one for the default store, else a file next to the store,
/// so that two configs with their own stores never share one.
pub fn default_runtime(database: &Path) -> PathBuf {
    if database == Path::new(DEFAULT_DATABASE) {
        return PathBuf::from(DEFAULT_RUNTIME);
    }
    let stem = database.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    database.with_file_name(format!("{stem}-runtime.db"))
}

/// The file the module touches after a ban so that a systemd path unit
/// runs `banguardctl sync` at once.
pub const DEFAULT_TRIGGER: &str = "/run/banguard/ban.trigger";

/// What the module does when its store cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Let the rest of the stack decide (log once).
    Open,
    /// Refuse the attempt.
    Closed,
}

impl std::str::FromStr for FailMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "open" => Ok(FailMode::Open),
            "closed" => Ok(FailMode::Closed),
            other => Err(format!("failmode {other:?}: expected \"open\" or \"closed\"")),
        }
    }
}

/// Which bans `banguardctl sync` pushes into the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncScope {
    /// Only repeat offenders (the recidive rule) and manual bans.
    Repeat,
    /// Every active ban.
    All,
}

/// The effective policy of one PAM service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServicePolicy {
    pub enabled: bool,
    pub maxretry: u32,
    /// Seconds.
    #[serde(serialize_with = "ser_secs")]
    pub findtime: i64,
    #[serde(serialize_with = "ser_bantime")]
    pub bantime: BanTime,
    /// Each earlier ban of the host within `bantime_lookback` multiplies
    /// the ban by this factor (1 = no increase), up to `bantime_max`.
    pub bantime_factor: f64,
    #[serde(serialize_with = "ser_secs")]
    pub bantime_max: i64,
    #[serde(serialize_with = "ser_secs")]
    pub bantime_lookback: i64,
    pub ignoreip: Vec<IpNet>,
    pub failmode: FailMode,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    /// Whether a successful login also clears the host's earlier failures.
    pub reset_on_success: bool,
    /// Seconds libpam waits before it answers a refused attempt (as
    /// pam_unix's fail delay does for a wrong password); 0: at once.
    #[serde(serialize_with = "ser_secs")]
    pub refusal_delay: i64,
}

impl ServicePolicy {
    /// The ban length for a host banned `prior` times before (within the
    /// lookback window).
    pub fn ban_length(&self, prior: u32) -> BanTime {
        match self.bantime {
            BanTime::Permanent => BanTime::Permanent,
            BanTime::Seconds(base) => {
                let factor = self.bantime_factor.max(1.0).powi(prior.min(64) as i32);
                let scaled = (base as f64 * factor).min(self.bantime_max.max(base) as f64);
                BanTime::Seconds(scaled as i64)
            }
        }
    }

    /// The ignoreip entry that covers `addr`, if any.
    pub fn ignored_by(&self, addr: std::net::IpAddr) -> Option<IpNet> {
        let addr = crate::addr::canonical(addr);
        self.ignoreip.iter().copied().find(|n| n.contains(&addr))
    }
}

/// The repeat-offender rule (fail2ban's `[recidive]` jail).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recidive {
    pub enabled: bool,
    /// Bans within `findtime` that make a repeat offender.
    pub bans: u32,
    #[serde(serialize_with = "ser_secs")]
    pub findtime: i64,
    #[serde(serialize_with = "ser_bantime")]
    pub bantime: BanTime,
}

/// `[sync]`: what the sync job pushes, and where.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncConfig {
    /// "nftables", "ipset", "iptables", "hosts.deny".
    pub backends: Vec<BackendKind>,
    pub scope: SyncScope,
    pub hosts_deny: PathBuf,
    pub trigger_file: PathBuf,
    pub lock_file: PathBuf,
    /// The shortest IPv4 prefix length any firewall entry may have: wider
    /// bans (manual or automatic) are refused by PAM only.
    pub widest_ipv4_prefix: u8,
    /// The same for IPv6.
    pub widest_ipv6_prefix: u8,
    /// Attempts refused while banned after which a ban goes to the kernel
    /// ("kept knocking"); 0: never (such bans stay PAM-only unless scope
    /// is "all"). The default, 2, measured in BENCHMARKS-bruteforce.md.
    pub escalate_after: u32,
}

impl SyncConfig {
    /// Why `net` may not go into a firewall, if it may not
    /// ([`crate::addr::block_refusal`] with this config's floor).
    pub fn block_refusal(&self, net: &IpNet) -> Option<String> {
        crate::addr::block_refusal(net, self.widest_ipv4_prefix, self.widest_ipv6_prefix)
    }
}

/// `[mail]`: notices about bans, sent by the sync job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MailConfig {
    pub enabled: bool,
    pub to: String,
    pub from: String,
    pub sendmail: PathBuf,
}

/// `[metrics]`: each sync run also writes `banguardctl metrics` to a file
/// for node_exporter's textfile collector (nothing listens on a port).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricsConfig {
    pub enabled: bool,
    /// Written atomically, root's, 0644; must end in `.prom`.
    pub textfile: PathBuf,
}

/// Where Debian's prometheus-node-exporter reads textfiles.
pub const DEFAULT_TEXTFILE: &str = "/var/lib/prometheus/node-exporter/banguard.prom";

/// `[fleet]`: sharing bans with other servers; off unless a provider is
/// named.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetConfig {
    pub provider: FleetProvider,
    pub crowdsec: CrowdsecConfig,
}

/// Who carries the fleet's bans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FleetProvider {
    /// No fleet: this server's bans are its own.
    None,
    /// A CrowdSec Local API.
    Crowdsec,
}

/// `[fleet.crowdsec]`: the Local API and the credentials to use it. Only
/// `banguardctl sync` talks to it; the PAM module reads local files only.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CrowdsecConfig {
    /// The LAPI's base URL (`http://127.0.0.1:8080/`, `https://lapi:8080/`).
    pub url: String,
    /// The machine credentials (`cscli machines add NAME -f FILE`): export.
    pub machine_credentials: PathBuf,
    /// A file holding the bouncer key (`cscli bouncers add NAME`): import.
    pub bouncer_key_file: PathBuf,
    /// The CA that signed the LAPI's certificate (PEM); empty: the system's.
    pub ca_cert: PathBuf,
    /// Client certificate and key for mTLS (PEM); empty: none.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// Seconds an exchange with the LAPI may take.
    #[serde(serialize_with = "ser_secs")]
    pub timeout: i64,
    /// Post this server's bans as decisions.
    pub export: bool,
    /// Take the fleet's decisions as bans.
    pub import: bool,
    /// Only decisions of these origins (`crowdsec`, `cscli`, `banguard`,
    /// `CAPI`, `lists`...); empty: any.
    pub import_origins: Vec<String>,
    /// Only decisions whose scenario contains one of these; empty: any.
    pub import_scenarios: Vec<String>,
    /// At most this many imported bans at once; beyond, decisions are
    /// skipped with a log line.
    pub max_decisions: u64,
    /// A full pull of the fleet's decisions this often (seconds); deltas
    /// in between.
    #[serde(serialize_with = "ser_secs")]
    pub resync: i64,
    /// Accept any certificate: only by this explicit name, never by default.
    pub insecure_skip_verify: bool,
}

/// `[accounts]`: the account side. Per account (PAM_USER), a budget of
/// passwords from unfamiliar sources, refilled slowly; used up, the
/// account is locked for unfamiliar sources only (growing on each relock,
/// with one attempt let through when a lock ends). Familiar sources (the
/// networks the account logged in from, ignoreip, networks an admin adds)
/// are never refused by it; local logins are never read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountsConfig {
    pub enabled: bool,
    /// Unfamiliar attempts an account may have at once (the bucket).
    pub budget: u32,
    /// One attempt of the budget comes back this often (seconds).
    #[serde(serialize_with = "ser_secs")]
    pub refill: i64,
    /// The first lock; each relock doubles it, up to `lock_max`.
    #[serde(serialize_with = "ser_secs")]
    pub lock: i64,
    #[serde(serialize_with = "ser_secs")]
    pub lock_max: i64,
    /// From the account side's first start, it counts and logs what it
    /// would do but refuses nothing for this long (0: refuse at once).
    #[serde(serialize_with = "ser_secs")]
    pub learning: i64,
    /// A successful login makes this network of its source familiar.
    pub familiar_ipv4_prefix: u8,
    pub familiar_ipv6_prefix: u8,
    /// Learned familiar networks kept per account (the oldest go first).
    pub familiar_max: u32,
    /// A learned network stays familiar this long after its last login.
    #[serde(serialize_with = "ser_secs")]
    pub familiar_for: i64,
    /// Accounts tracked at once; beyond, new names share one budget.
    pub max_tracked: u64,
}

/// How hard SQLite pushes the store's writes to the disk (`PRAGMA
/// synchronous` of `database`; the runtime state is never synced, it is
/// rebuilt from the store after a reboot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// fsync at every checkpoint (the process that writes a ban checkpoints
    /// when it closes the store): bans survive power loss; an ordinary
    /// attempt does not open the store, so only ban changes pay for it.
    Normal,
    /// Never fsync (pam_faillock's tally files are not fsynced either):
    /// survives any crash of a process, but power loss or a kernel crash can
    /// lose or corrupt recent bans.
    Off,
}

impl Synchronous {
    /// The PRAGMA value.
    pub fn pragma(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Off => "OFF",
        }
    }
}

/// `[store]`: durability and limits that keep the database small.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreConfig {
    /// The runtime state file: attempts within findtime and a copy of the
    /// active bans. Disposable (rebuilt from the store when missing), so it
    /// belongs on tmpfs; bans and history stay in `database`. Unset, it is
    /// [`default_runtime`] of `database`.
    pub runtime: PathBuf,
    pub synchronous: Synchronous,
    /// Busy timeout in milliseconds: the longest a login waits for the store.
    pub busy_timeout_ms: u32,
    /// Upper bound on stored failure rows; the oldest go first beyond it.
    pub max_failures: u64,
    /// How long ban history and events are kept (seconds).
    #[serde(serialize_with = "ser_secs")]
    pub history: i64,
}

/// The whole effective configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// Files read, in order.
    pub files: Vec<PathBuf>,
    pub database: PathBuf,
    pub default: ServicePolicy,
    pub services: BTreeMap<String, ServicePolicy>,
    pub recidive: Recidive,
    pub sync: SyncConfig,
    pub mail: MailConfig,
    pub metrics: MetricsConfig,
    pub store: StoreConfig,
    pub fleet: FleetConfig,
    pub accounts: AccountsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            files: Vec::new(),
            database: PathBuf::from(DEFAULT_DATABASE),
            default: ServicePolicy {
                enabled: true,
                maxretry: 5,
                findtime: 600,
                bantime: BanTime::Seconds(600),
                bantime_factor: 2.0,
                bantime_max: 7 * 86_400,
                bantime_lookback: 86_400,
                ignoreip: vec!["127.0.0.0/8".parse().expect("literal"), "::1/128".parse().expect("literal")],
                failmode: FailMode::Open,
                ipv4_prefix: 32,
                ipv6_prefix: 64,
                reset_on_success: false,
                refusal_delay: 2,
            },
            services: BTreeMap::new(),
            recidive: Recidive {
                enabled: true,
                bans: 3,
                findtime: 86_400,
                bantime: BanTime::Seconds(7 * 86_400),
            },
            sync: SyncConfig {
                backends: vec![BackendKind::Nftables],
                scope: SyncScope::Repeat,
                hosts_deny: PathBuf::from("/etc/hosts.deny"),
                trigger_file: PathBuf::from(DEFAULT_TRIGGER),
                lock_file: PathBuf::from("/run/banguard/sync.lock"),
                widest_ipv4_prefix: 16,
                widest_ipv6_prefix: 32,
                escalate_after: 2,
            },
            mail: MailConfig {
                enabled: false,
                to: "root".into(),
                from: "banguard".into(),
                sendmail: PathBuf::from("/usr/sbin/sendmail"),
            },
            metrics: MetricsConfig { enabled: false, textfile: PathBuf::from(DEFAULT_TEXTFILE) },
            store: StoreConfig {
                runtime: PathBuf::from(DEFAULT_RUNTIME),
                synchronous: Synchronous::Normal,
                busy_timeout_ms: 10_000,
                max_failures: 1_000_000,
                history: 30 * 86_400,
            },
            accounts: AccountsConfig {
                enabled: true,
                budget: 10,
                refill: 12 * 3600,
                lock: 15 * 60,
                lock_max: 86_400,
                learning: 7 * 86_400,
                familiar_ipv4_prefix: 24,
                familiar_ipv6_prefix: 64,
                familiar_max: 20,
                familiar_for: 90 * 86_400,
                max_tracked: 100_000,
            },
            fleet: FleetConfig {
                provider: FleetProvider::None,
                crowdsec: CrowdsecConfig {
                    url: "http://127.0.0.1:8080/".into(),
                    machine_credentials: PathBuf::from("/etc/banguard/crowdsec-machine.yaml"),
                    bouncer_key_file: PathBuf::from("/etc/banguard/crowdsec-bouncer.key"),
                    ca_cert: PathBuf::new(),
                    client_cert: PathBuf::new(),
                    client_key: PathBuf::new(),
                    timeout: 5,
                    export: true,
                    import: true,
                    import_origins: Vec::new(),
                    import_scenarios: Vec::new(),
                    max_decisions: 100_000,
                    resync: 3600,
                    insecure_skip_verify: false,
                },
            },
        }
    }
}

impl Config {
    /// Reads the default config file and its drop-ins. A missing default
    /// file means built-in defaults (like pam_faillock's faillock.conf).
    pub fn load_default() -> Result<Config> {
        Config::load_from(Path::new(DEFAULT_CONFIG), false)
    }

    /// Reads an explicitly named config file (which must exist) and its
    /// drop-ins (`<dir>/<stem>.d/*.toml`).
    pub fn load(path: &Path) -> Result<Config> {
        Config::load_from(path, true)
    }

    /// Reads `path` (required or optional) and its drop-ins.
    pub fn load_from(path: &Path, required: bool) -> Result<Config> {
        Config::from_sources(&Config::sources(path, required)?)
    }

    /// The texts of `path` (required or optional) and its drop-ins, in the
    /// order they apply, each checked as trusted.
    pub fn sources(path: &Path, required: bool) -> Result<Vec<(PathBuf, String)>> {
        files::sources(path, required)
    }

    /// Builds the config from file texts, in order (no file access).
    pub fn from_sources(sources: &[(PathBuf, String)]) -> Result<Config> {
        let mut merged = RawFile::default();
        for (path, text) in sources {
            let raw: RawFile = toml::from_str(text).map_err(|e| toml_error(path, text, &e))?;
            for name in raw.services.keys() {
                if let Err(message) = check_service_name(name) {
                    let header = format!("[services.{name}]");
                    // The header as written: bare, quoted or dotted.
                    let line = text
                        .lines()
                        .position(|l| l.trim_start().starts_with("[services.") && l.contains(name.as_str()))
                        .or_else(|| text.lines().position(|l| l.contains(name.as_str())))
                        .map(|n| n + 1);
                    return Err(Error::Config { path: path.clone(), line, key: Some(header), message });
                }
            }
            merged.merge(raw);
        }
        let mut config =
            Config { files: sources.iter().map(|(p, _)| p.clone()).collect(), ..Config::default() };
        merged.apply(&mut config);
        Ok(config)
    }

    /// Parses one config text (for tests and `check-config` of a single file).
    pub fn from_toml(path: &Path, text: &str) -> Result<Config> {
        Config::from_sources(&[(path.to_path_buf(), text.to_string())])
    }

    /// The policy for a PAM service: its section, or `[default]`.
    pub fn policy(&self, service: &str) -> &ServicePolicy {
        self.services.get(service).unwrap_or(&self.default)
    }

    /// What no firewall entry may cover: every service's ignoreip and the
    /// loopback networks. A firewall cannot tell services apart, so an
    /// address ignored on any service is left out of every entry.
    pub fn never_blocked(&self) -> Vec<IpNet> {
        let mut nets: Vec<IpNet> = std::iter::once(&self.default)
            .chain(self.services.values())
            .flat_map(|p| p.ignoreip.iter().copied())
            .chain(crate::addr::loopback_nets())
            .collect();
        nets.sort_unstable();
        nets.dedup();
        nets
    }

    /// The longest `findtime` of any service: failures older than that
    /// can never count again.
    pub fn max_findtime(&self) -> i64 {
        std::iter::once(&self.default).chain(self.services.values()).map(|p| p.findtime).max().unwrap_or(0)
    }
}

/// The one rule for a PAM service name, wherever one comes in (the PAM
/// item, `service=` on the module line, the C ABI, the command line, a
/// `[services.NAME]` section): 1 to 64 ASCII letters, digits, '.', '_' or
/// '-', not starting with '.' or '-'. That is every name a file in
/// /etc/pam.d can sensibly have, and nothing a log line or a shell
/// command line would need quoting for.
pub fn check_service_name(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid PAM service name {name:?}: 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-'"
        ))
    }
}

fn toml_error(path: &Path, text: &str, e: &toml::de::Error) -> Error {
    let line_no = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
    // The key is what stands before '=' on the offending line, if anything.
    let key = line_no.and_then(|n| text.lines().nth(n - 1)).and_then(|l| {
        let (k, _) = l.split_once('=')?;
        let k = k.trim();
        (!k.is_empty() && !k.starts_with('[') && !k.starts_with('#')).then(|| k.to_string())
    });
    Error::Config { path: path.to_path_buf(), line: line_no, key, message: e.message().trim().to_string() }
}

fn ser_secs<S: serde::Serializer>(v: &i64, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*v))
}

fn ser_bantime<S: serde::Serializer>(v: &BanTime, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn parse(text: &str) -> Result<Config> {
        Config::from_toml(Path::new("/etc/banguard/banguard.toml"), text)
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn empty_config_gives_documented_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.default.maxretry, 5);
        assert_eq!(c.default.findtime, 600);
        assert_eq!(c.default.bantime, BanTime::Seconds(600));
        assert_eq!(c.default.failmode, FailMode::Open);
        assert_eq!(c.default.ipv4_prefix, 32);
        assert_eq!(c.default.ipv6_prefix, 64);
        assert_eq!(c.database, PathBuf::from(DEFAULT_DATABASE));
        assert!(c.default.ignored_by("127.0.0.9".parse().unwrap()).is_some());
        assert!(c.default.ignored_by("::1".parse().unwrap()).is_some());
        assert!(c.default.ignored_by("::ffff:127.0.0.1".parse().unwrap()).is_some());
        assert!(c.default.ignored_by("198.51.100.7".parse().unwrap()).is_none());
        assert!(!c.default.reset_on_success);
    }

    #[test]
    fn services_inherit_and_override() {
        let c = parse(
            r#"
[default]
maxretry = 4
bantime = "1h"
ignoreip = ["192.0.2.0/24", "2001:db8::/32"]

[services.sshd]
maxretry = 3

[services.vsftpd]
enabled = false
"#,
        )
        .unwrap();
        let sshd = c.policy("sshd");
        assert_eq!(sshd.maxretry, 3);
        assert_eq!(sshd.bantime, BanTime::Seconds(3600));
        assert!(sshd.ignored_by("192.0.2.77".parse().unwrap()).is_some());
        assert!(sshd.ignored_by("2001:db8:5::1".parse().unwrap()).is_some());
        assert!(
            sshd.ignored_by("127.0.0.1".parse().unwrap()).is_none(),
            "ignoreip replaces the default list"
        );
        assert!(!c.policy("vsftpd").enabled);
        assert_eq!(c.policy("login").maxretry, 4, "unlisted services use [default]");
    }

    #[test]
    fn dropins_override_key_by_key() {
        let c = Config::from_sources(&[
            (
                "/a.toml".into(),
                "[default]\nmaxretry = 4\nfindtime = \"5m\"\n[services.sshd]\nmaxretry = 2\n".into(),
            ),
            ("/b.toml".into(), "[default]\nmaxretry = 7\n[services.sshd]\nbantime = \"2h\"\n".into()),
        ])
        .unwrap();
        assert_eq!(c.default.maxretry, 7);
        assert_eq!(c.default.findtime, 300);
        assert_eq!(c.policy("sshd").maxretry, 2);
        assert_eq!(c.policy("sshd").bantime, BanTime::Seconds(7200));
        assert_eq!(c.policy("sshd").findtime, 300);
    }

    #[test]
    fn refusal_delay_defaults_to_pam_unix_s_and_is_bounded() {
        assert_eq!(Config::default().default.refusal_delay, 2);
        let c = Config::from_sources(&[(
            "/a.toml".into(),
            "[default]\nrefusal_delay = 0\n[services.vsftpd]\nrefusal_delay = \"5s\"\n".into(),
        )])
        .unwrap();
        assert_eq!((c.policy("sshd").refusal_delay, c.policy("vsftpd").refusal_delay), (0, 5));
        let e = err("[default]\n\nrefusal_delay = \"1m\"\n");
        assert!(e.contains(":3: key `refusal_delay`: must be from 0 to 30 seconds, not 60"), "{e}");
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = err("[default]\nmaxretry = 5\nfindtime = \"10 minutes\"\n");
        assert!(e.starts_with("/etc/banguard/banguard.toml:3: key `findtime`:"), "{e}");
        let e = err("[default]\n\nmaxretry = 0\n");
        assert!(e.contains(":3: key `maxretry`: must be a whole number from 1"), "{e}");
        let e = err("[default]\nmaxretyr = 3\n");
        assert!(e.contains(":2: key `maxretyr`: unknown field `maxretyr`"), "{e}");
        let e = err("[default]\nignoreip = [\"192.0.2.0/33\"]\n");
        assert!(e.contains(":2: key `ignoreip`") && e.contains("192.0.2.0/33"), "{e}");
        let e = err("[default]\nmaxretry = \"five\"\n");
        assert!(e.contains(":2: key `maxretry`"), "{e}");
        let e = err("[services.sshd]\ndatabase = \"/tmp/x.db\"\n");
        assert!(e.contains(":2: key `database`: unknown field"), "{e}");
        let e = err("[default\nmaxretry = 3\n");
        assert!(e.contains(":1"), "{e}");
        let e = err("[sync]\nbackends = [\"pf\"]\n");
        assert!(e.contains("unknown back-end \"pf\""), "{e}");
        let e = err("[mail]\nto = \"root; rm -rf /\"\n");
        assert!(e.contains("not a plain mail address"), "{e}");
        let e = err("[default]\nipv6_prefix = 200\n");
        assert!(e.contains("prefix length from 16 to 128"), "{e}");
        let e = err("[bogus]\n");
        assert!(e.contains("unknown field `bogus`"), "{e}");
        let e = err("[metrics]\ntextfile = \"/var/lib/prometheus/node-exporter/banguard.txt\"\n");
        assert!(e.contains(":2: key `textfile`") && e.contains("does not end in .prom"), "{e}");
        let e = err("[metrics]\ntextfile = \"banguard.prom\"\n");
        assert!(e.contains("not an absolute path"), "{e}");
    }

    #[test]
    fn paths_must_be_absolute() {
        let e = err("[default]\ndatabase = \"banguard.db\"\n");
        assert!(e.contains(":2: key `database`") && e.contains("not an absolute path"), "{e}");
        for (section, key) in
            [("store", "runtime"), ("sync", "trigger_file"), ("sync", "lock_file"), ("mail", "sendmail")]
        {
            let e = err(&format!("[{section}]\n{key} = \"run/x\"\n"));
            assert!(e.contains(&format!(":2: key `{key}`")) && e.contains("absolute"), "{e}");
        }
        let e = err("[fleet.crowdsec]\nca_cert = \"ca.pem\"\n");
        assert!(e.contains("key `ca_cert`") && e.contains("absolute"), "{e}");
        assert!(parse("[fleet.crowdsec]\nca_cert = \"\"\n").is_ok(), "empty means none");
    }

    #[test]
    fn bantime_forms_and_increase() {
        let c = parse("[default]\nbantime = -1\n").unwrap();
        assert_eq!(c.default.bantime, BanTime::Permanent);
        assert_eq!(c.default.ban_length(5), BanTime::Permanent);
        let c = parse("[default]\nbantime = \"10m\"\nbantime_factor = 2.0\nbantime_max = \"1h\"\n").unwrap();
        assert_eq!(c.default.ban_length(0), BanTime::Seconds(600));
        assert_eq!(c.default.ban_length(1), BanTime::Seconds(1200));
        assert_eq!(c.default.ban_length(2), BanTime::Seconds(2400));
        assert_eq!(c.default.ban_length(3), BanTime::Seconds(3600));
        assert_eq!(c.default.ban_length(1000), BanTime::Seconds(3600));
        let c = parse("[default]\nbantime = 600\nbantime_factor = 1.0\n").unwrap();
        assert_eq!(c.default.ban_length(9), BanTime::Seconds(600));
    }

    #[test]
    fn hidden_dropins_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("banguard.toml");
        fs::write(&main, "[default]\nmaxretry = 4\n").unwrap();
        fs::create_dir(dir.path().join("banguard.d")).unwrap();
        fs::write(dir.path().join("banguard.d/50-local.toml"), "[default]\nmaxretry = 6\n").unwrap();
        // An editor's swap/backup copy, even one that would not parse.
        fs::write(dir.path().join("banguard.d/.50-local.toml"), "[default]\nmaxretry = oops\n").unwrap();
        fs::write(dir.path().join("banguard.d/.#60.toml"), "[default]\nmaxretry = 1\n").unwrap();
        let c = Config::load(&main).unwrap();
        assert_eq!(c.default.maxretry, 6);
        assert_eq!(c.files.len(), 2, "{:?}", c.files);
    }

    #[test]
    fn findtime_spans_services() {
        let c =
            parse("[default]\nfindtime = \"5m\"\n[services.vsftpd]\nipv6_prefix = 128\nfindtime = \"2h\"\n")
                .unwrap();
        assert_eq!(c.max_findtime(), 7200);
    }

    #[test]
    fn untrusted_files_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("banguard.toml");
        fs::write(&p, "[default]\nmaxretry = 3\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(Config::load(&p).unwrap().default.maxretry, 3);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o666)).unwrap();
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(e.contains("writable by group or others") && e.contains("chmod go-w"), "{e}");
    }

    #[test]
    fn missing_explicit_file_is_an_error_but_default_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("none.toml");
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(e.contains("cannot read config") && e.contains("none.toml"), "{e}");
        assert_eq!(Config::load_from(&p, false).unwrap().default.maxretry, 5);
    }

    #[test]
    fn dropin_files_are_read_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("banguard.toml");
        fs::write(&p, "[default]\nmaxretry = 3\n").unwrap();
        fs::create_dir(dir.path().join("banguard.d")).unwrap();
        fs::write(dir.path().join("banguard.d/20-b.toml"), "[default]\nmaxretry = 9\n").unwrap();
        fs::write(dir.path().join("banguard.d/10-a.toml"), "[default]\nmaxretry = 8\nfindtime = 60\n")
            .unwrap();
        fs::write(dir.path().join("banguard.d/ignored.conf"), "garbage").unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(c.default.maxretry, 9);
        assert_eq!(c.default.findtime, 60);
        assert_eq!(c.files.len(), 3);
        fs::write(dir.path().join("banguard.d/30-bad.toml"), "[default]\nfindtime = \"x\"\n").unwrap();
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(e.contains("30-bad.toml:2: key `findtime`"), "{e}");
    }
}
