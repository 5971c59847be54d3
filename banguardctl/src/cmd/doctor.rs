//! `banguardctl doctor`: is banguard installed so that it protects
//! something? One line per check, each with a verdict and what to do;
//! `--json` for scripts; `--root DIR` checks an installation below DIR (an
//! image, a chroot). Reads only; runs only `systemctl is-enabled` and
//! `semodule -l`, and only on the live system.

use crate::Outcome;
use crate::cli::DoctorArgs;
use crate::error::Result;
use banguard::Banguard;
use banguard::config::{Config, DEFAULT_CONFIG};
use banguard::policy::{Clock, SystemClock};
use banguard::store::Access;
use banguard::sync::BackendKind;
use serde::Serialize;
use serde_json::json;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
    /// Does not apply here (SELinux disabled, a back-end not configured).
    Skip,
}

#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    verdict: Verdict,
    detail: String,
}

/// PAM services whose stacks doctor follows, and the daemons behind them.
const SERVICES: &[&str] = &["sshd", "vsftpd", "login", "su", "sudo", "dovecot", "proftpd", "pure-ftpd"];

/// Where distributions keep PAM modules, newest layouts first.
const PAM_DIRS: &[&str] = &[
    "/usr/lib64/security",
    "/lib64/security",
    "/usr/lib/x86_64-linux-gnu/security",
    "/lib/x86_64-linux-gnu/security",
    "/usr/lib/aarch64-linux-gnu/security",
    "/lib/aarch64-linux-gnu/security",
    "/usr/lib/security",
    "/lib/security",
];

const UNIT_DIRS: &[&str] = &["/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"];

struct Doctor {
    root: PathBuf,
    live: bool,
    checks: Vec<Check>,
}

impl Doctor {
    /// `path` below the root being checked.
    fn at(&self, path: &Path) -> PathBuf {
        match path.strip_prefix("/") {
            Ok(rel) => self.root.join(rel),
            Err(_) => self.root.join(path),
        }
    }

    fn add(&mut self, name: &'static str, verdict: Verdict, detail: impl Into<String>) {
        self.checks.push(Check { name, verdict, detail: detail.into() });
    }
}

pub fn run(config: Option<PathBuf>, json_out: bool, args: &DoctorArgs) -> Result<Outcome> {
    let root = args.root.clone().unwrap_or_else(|| PathBuf::from("/"));
    let mut d = Doctor { live: root == Path::new("/"), root, checks: Vec::new() };
    let config_path = config.unwrap_or_else(|| d.at(Path::new(DEFAULT_CONFIG)));
    let mut config = check_config(&mut d, &config_path).unwrap_or_default();
    // The store's and hosts.deny's paths, below the root being checked.
    config.database = d.at(&config.database);
    config.store.runtime = d.at(&config.store.runtime);
    config.sync.hosts_deny = d.at(&config.sync.hosts_deny);
    check_store(&mut d, &config);
    check_module(&mut d);
    check_stacks(&mut d);
    check_give_back(&mut d);
    check_sync(&mut d, &config);
    check_fleet(&mut d, &config);
    check_accounts(&mut d, &config);
    check_metrics(&mut d, &config);
    check_selinux(&mut d);
    let failed = d.checks.iter().any(|c| c.verdict == Verdict::Fail);
    if json_out {
        let text =
            serde_json::to_string_pretty(&json!({ "root": d.root, "ok": !failed, "checks": d.checks }))
                .map_err(|e| crate::error::Error::msg(e.to_string()))?;
        print(&format!("{text}\n"))?;
    } else {
        let mut out = String::new();
        let width = d.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for c in &d.checks {
            let verdict = match c.verdict {
                Verdict::Ok => "ok",
                Verdict::Warn => "WARN",
                Verdict::Fail => "FAIL",
                Verdict::Skip => "-",
            };
            out.push_str(&format!("{verdict:<4}  {:<width$}  {}\n", c.name, c.detail));
        }
        out.push_str(if failed {
            "\nbanguard is not protecting this system as it should: fix the FAIL lines above.\n"
        } else {
            "\nNo failures.\n"
        });
        print(&out)?;
    }
    Ok(if failed { Outcome::NoMatch } else { Outcome::Ok })
}

fn print(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

fn check_config(d: &mut Doctor, path: &Path) -> Option<Config> {
    if !path.exists() {
        d.add("config", Verdict::Warn, format!("{} does not exist: built-in defaults apply", path.display()));
        return None;
    }
    match Config::load(path) {
        Ok(c) => {
            let files = c.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ");
            d.add("config", Verdict::Ok, format!("valid and root's: {files}"));
            Some(c)
        }
        Err(e) => {
            d.add("config", Verdict::Fail, format!("{e}"));
            None
        }
    }
}

fn check_store(d: &mut Doctor, config: &Config) {
    for (name, file) in [("store", &config.database), ("runtime state", &config.store.runtime)] {
        let Some(dir) = file.parent() else { continue };
        if !dir.exists() {
            let verdict = if name == "store" { Verdict::Warn } else { Verdict::Ok };
            d.add(
                name,
                verdict,
                format!("{} does not exist yet: the first authentication creates it", dir.display()),
            );
            continue;
        }
        if let Err(e) = banguard::store::check_dir(dir) {
            d.add(name, Verdict::Fail, e.to_string());
            continue;
        }
        let free = banguard::sys::free_bytes(dir);
        let space = free.map_or_else(String::new, |b| format!(", {} MiB free", b / (1024 * 1024)));
        if !file.exists() {
            d.add(
                name,
                Verdict::Ok,
                format!("{} is root's; {} not created yet{space}", dir.display(), file.display()),
            );
            continue;
        }
        match banguard::store::check_store_permissions(file) {
            Err(e) => d.add(name, Verdict::Fail, e.to_string()),
            Ok(()) if free.is_some_and(|b| b < 64 * 1024 * 1024) => d.add(
                name,
                Verdict::Warn,
                format!("{} is fine but its file system is nearly full{space}", file.display()),
            ),
            Ok(()) => d.add(name, Verdict::Ok, format!("{} is root's, 0600{space}", file.display())),
        }
    }
}

fn check_module(d: &mut Doctor) {
    // libpam looks beside pam_unix.so.
    let pam_dir = PAM_DIRS.iter().map(|p| d.at(Path::new(p))).find(|dir| dir.join("pam_unix.so").exists());
    let Some(dir) = pam_dir else {
        d.add("PAM module", Verdict::Fail, "no pam_unix.so in the usual places: where does libpam look?");
        return;
    };
    let module = dir.join("pam_banguard.so");
    if module.exists() {
        d.add("PAM module", Verdict::Ok, format!("{} (beside pam_unix.so)", module.display()));
    } else {
        d.add(
            "PAM module",
            Verdict::Fail,
            format!("{} is missing: libpam looks there (make install, or the package)", module.display()),
        );
    }
}

/// The file of each line that loads pam_banguard.so, following includes
/// (`@include`, `include`, `substack`) from `service`.
fn reaches(d: &Doctor, service: &str, seen: &mut Vec<String>) -> Option<String> {
    if seen.iter().any(|s| s == service) || seen.len() > 16 {
        return None;
    }
    seen.push(service.to_string());
    let path = d.at(Path::new("/etc/pam.d")).join(service);
    let text = fs::read_to_string(&path).ok()?;
    for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["@include", other, ..] => {
                if let Some(found) = reaches(d, other, seen) {
                    return Some(found);
                }
            }
            [kind, control, module, ..] if kind.trim_start_matches('-') == "auth" => {
                if matches!(*control, "include" | "substack") {
                    if let Some(found) = reaches(d, module, seen) {
                        return Some(found);
                    }
                } else if module.ends_with("pam_banguard.so") {
                    return Some(format!("/etc/pam.d/{service}"));
                }
            }
            _ => {}
        }
    }
    None
}

/// Every line of `service`'s stack (includes followed) that loads
/// pam_banguard.so: (type, its words after the module).
fn banguard_lines(d: &Doctor, service: &str, seen: &mut Vec<String>) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    if seen.iter().any(|s| s == service) || seen.len() > 16 {
        return out;
    }
    seen.push(service.to_string());
    let Ok(text) = fs::read_to_string(d.at(Path::new("/etc/pam.d")).join(service)) else { return out };
    for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["@include", other, ..] => out.extend(banguard_lines(d, other, seen)),
            [kind, control, module, rest @ ..] => {
                let kind = kind.trim_start_matches('-');
                if matches!(*control, "include" | "substack") {
                    out.extend(banguard_lines(d, module, seen));
                } else if module.ends_with("pam_banguard.so") {
                    out.push((kind.to_string(), rest.iter().map(|w| w.to_string()).collect()));
                }
            }
            _ => {}
        }
    }
    out
}

/// Whether each stack that refuses through banguard also gives a right
/// password back for every shape of application: sshd and vsftpd call
/// pam_setcred (the auth line does it), Dovecot pam_acct_mgmt (an account
/// line), some call neither (only the success line after the password
/// module serves them: their users would be banned after maxretry
/// correct logins).
fn check_give_back(d: &mut Doctor) {
    let mut without_success = Vec::new();
    let mut acct_only_unserved = Vec::new();
    for service in SERVICES {
        if !d.at(Path::new("/etc/pam.d")).join(service).exists()
            || reaches(d, service, &mut Vec::new()).is_none()
        {
            continue;
        }
        let lines = banguard_lines(d, service, &mut Vec::new());
        let success_line =
            lines.iter().any(|(kind, args)| kind == "auth" && args.iter().any(|a| a == "authsucc"));
        let account_line = lines.iter().any(|(kind, _)| kind == "account");
        if !success_line {
            without_success.push(service.to_string());
            if !account_line {
                acct_only_unserved.push(service.to_string());
            }
        }
    }
    if without_success.is_empty() {
        d.add(
            "giving back",
            Verdict::Ok,
            "every protected stack gives a right password back, whatever the application calls",
        );
        return;
    }
    let mut detail = format!(
        "{}: no success line, so a right password is given back only by applications that call pam_setcred \
         (sshd, vsftpd){}; one that calls neither gets its users banned after maxretry correct logins",
        without_success.join(", "),
        if acct_only_unserved.len() < without_success.len() { " or pam_acct_mgmt (Dovecot)" } else { "" }
    );
    if !acct_only_unserved.is_empty() {
        detail.push_str(&format!(
            "; {} also lack banguard's account line, so Dovecot's users are banned that way too",
            acct_only_unserved.join(", ")
        ));
    }
    detail.push_str(" (pam-auth-update --enable banguard banguard-success; by hand: `auth optional pam_banguard.so authsucc` after the password module, `account optional pam_banguard.so`)");
    d.add("giving back", Verdict::Warn, detail);
}

fn check_stacks(d: &mut Doctor) {
    let mut protected = Vec::new();
    let mut open = Vec::new();
    for service in SERVICES {
        if !d.at(Path::new("/etc/pam.d")).join(service).exists() {
            continue;
        }
        match reaches(d, service, &mut Vec::new()) {
            Some(file) if file == format!("/etc/pam.d/{service}") => protected.push(service.to_string()),
            Some(file) => protected.push(format!("{service} (via {file})")),
            None => open.push(service.to_string()),
        }
    }
    if protected.is_empty() {
        d.add(
            "PAM stacks",
            Verdict::Fail,
            "no PAM stack loads pam_banguard.so: banguard protects nothing (pam-auth-update --enable banguard \
             banguard-success, banguard-authselect enable, or one line first in /etc/pam.d/sshd)",
        );
        return;
    }
    let mut detail = format!("protected: {}", protected.join(", "));
    if !open.is_empty() {
        detail.push_str(&format!("; not: {}", open.join(", ")));
    }
    d.add("PAM stacks", if open.iter().any(|s| s == "sshd") { Verdict::Warn } else { Verdict::Ok }, detail);
}

fn check_sync(d: &mut Doctor, config: &Config) {
    let units: Vec<&str> = ["banguard-sync.timer", "banguard-sync.path"]
        .into_iter()
        .filter(|u| UNIT_DIRS.iter().any(|dir| d.at(Path::new(dir)).join(u).exists()))
        .collect();
    let cron = d.at(Path::new("/etc/cron.d/banguard")).exists();
    let enabled: Vec<&str> = if d.live {
        units
            .iter()
            .copied()
            .filter(|u| {
                Command::new("systemctl").args(["-q", "is-enabled", u]).status().is_ok_and(|s| s.success())
            })
            .collect()
    } else {
        Vec::new()
    };
    let (verdict, detail) = match (units.is_empty(), cron) {
        (true, false) => (Verdict::Fail, "neither banguard-sync.timer nor /etc/cron.d/banguard: bans never reach the firewall".to_string()),
        (false, _) if d.live && enabled.is_empty() && !cron => (
            Verdict::Warn,
            "banguard-sync.timer and .path are installed but not enabled: systemctl enable --now banguard-sync.timer banguard-sync.path".to_string(),
        ),
        _ => {
            let mut parts: Vec<String> = units.iter().map(|u| format!("{u}{}", if enabled.contains(u) { " (enabled)" } else { "" })).collect();
            if cron {
                parts.push("/etc/cron.d/banguard".into());
            }
            // How long a ban takes to reach the kernel with what runs.
            let latency = if enabled.contains(&"banguard-sync.path") {
                "a ban reaches the firewall within about a second (the path unit syncs on each ban)"
            } else if !d.live {
                "as installed here: within a second where banguard-sync.path is enabled, else within a minute"
            } else {
                "a ban reaches the firewall within a minute (systemctl enable --now banguard-sync.path: within a second)"
            };
            (Verdict::Ok, format!("{}; {latency}", parts.join(", ")))
        }
    };
    d.add("sync job", verdict, detail);
    if config.sync.backends.is_empty() {
        d.add("firewall", Verdict::Skip, "[sync] backends = []: PAM alone refuses banned hosts");
        return;
    }
    for kind in &config.sync.backends {
        let (verdict, detail) = match kind {
            BackendKind::HostsDeny => {
                let dir = config.sync.hosts_deny.parent().unwrap_or(Path::new("/"));
                if dir.is_dir() {
                    (Verdict::Ok, format!("hosts.deny: {}", config.sync.hosts_deny.display()))
                } else {
                    (Verdict::Fail, format!("hosts.deny: {} does not exist", dir.display()))
                }
            }
            other => {
                let program = match other {
                    BackendKind::Nftables => "nft",
                    BackendKind::Ipset => "ipset",
                    _ => "iptables",
                };
                match ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
                    .iter()
                    .map(|p| d.at(Path::new(p)).join(program))
                    .find(|p| p.exists())
                {
                    Some(p) => (Verdict::Ok, format!("{other}: {}", p.display())),
                    None => (Verdict::Fail, format!("{other}: {program} is not installed")),
                }
            }
        };
        d.add("firewall", verdict, detail);
    }
}

/// The fleet's files, as `sync` checks them before the exchange.
fn check_fleet(d: &mut Doctor, config: &Config) {
    if config.fleet.provider != banguard::config::FleetProvider::Crowdsec {
        d.add("fleet", Verdict::Skip, "[fleet] provider = \"none\"");
        return;
    }
    let mut cs = config.fleet.crowdsec.clone();
    for path in [
        &mut cs.machine_credentials,
        &mut cs.bouncer_key_file,
        &mut cs.ca_cert,
        &mut cs.client_cert,
        &mut cs.client_key,
    ] {
        if !path.as_os_str().is_empty() {
            *path = d.at(path);
        }
    }
    let warnings = crate::crowdsec::file_warnings(&cs);
    if warnings.is_empty() {
        d.add("fleet", Verdict::Ok, format!("crowdsec {}", banguard::text::clean(&cs.url)));
    }
    for w in warnings {
        d.add("fleet", Verdict::Fail, w);
    }
}

/// The metrics' textfile: its directory exists, and (live) the last sync
/// wrote it recently.
fn check_metrics(d: &mut Doctor, config: &Config) {
    if !config.metrics.enabled {
        d.add("metrics", Verdict::Skip, "[metrics] enabled = false");
        return;
    }
    let file = d.at(&config.metrics.textfile);
    let dir = file.parent().unwrap_or(Path::new("/"));
    if !dir.is_dir() {
        let msg = format!(
            "{} does not exist: node_exporter's textfile directory? (install prometheus-node-exporter, or set [metrics] textfile)",
            dir.display()
        );
        d.add("metrics", Verdict::Warn, msg);
        return;
    }
    let age = std::fs::metadata(&file).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
    match age {
        Some(age) if !d.live || age.as_secs() <= METRICS_STALE => {
            d.add("metrics", Verdict::Ok, format!("{} (node_exporter's textfile collector)", file.display()));
        }
        Some(age) => d.add(
            "metrics",
            Verdict::Warn,
            format!("{} was last written {} ago: is the sync running?", file.display(), age.as_secs()),
        ),
        None => d.add(
            "metrics",
            Verdict::Warn,
            format!("{} not written yet: the next sync writes it", file.display()),
        ),
    }
}

/// A textfile older than this means no sync ran for a while (the timer
/// and cron run it every minute).
const METRICS_STALE: u64 = 600;

/// The account side: on or off, learning or refusing, and its settings'
/// bound on a spray.
fn check_accounts(d: &mut Doctor, config: &Config) {
    let a = &config.accounts;
    if !a.enabled {
        d.add(
            "accounts",
            Verdict::Warn,
            "[accounts] enabled = false: a spray from many addresses gets every password checked",
        );
        return;
    }
    let learning = if d.live {
        Banguard::open_with(config.clone(), Access::ReadOnly, std::sync::Arc::new(SystemClock))
            .ok()
            .and_then(|g| g.learning().ok().flatten())
            .filter(|(_, until)| *until > SystemClock.now())
    } else {
        None
    };
    let settings = format!(
        "budget {} from unfamiliar sources, one back every {}, lock {}..{}: a spray that never stops gets {} passwords a week per account",
        a.budget,
        banguard::duration::format_duration(a.refill),
        banguard::duration::format_duration(a.lock),
        banguard::duration::format_duration(a.lock_max),
        banguard::account::weekly_spray(a)
    );
    match learning {
        Some((_, until)) => d.add(
            "accounts",
            Verdict::Ok,
            format!(
                "learning until {}: locks are logged, nothing refused yet; {settings}",
                banguard::text::time(until)
            ),
        ),
        None => d.add("accounts", Verdict::Ok, settings),
    }
    for w in super::check_config::account_warnings(a) {
        d.add("accounts", Verdict::Warn, w);
    }
}

fn check_selinux(d: &mut Doctor) {
    if !d.live {
        d.add("SELinux", Verdict::Skip, "checked on the live system only");
        return;
    }
    let mode = match fs::read("/sys/fs/selinux/enforce") {
        Err(_) => {
            d.add("SELinux", Verdict::Skip, "disabled");
            return;
        }
        Ok(v) if v.first() == Some(&b'1') => "enforcing",
        Ok(_) => "permissive",
    };
    let loaded = Command::new("semodule").arg("-l").output().is_ok_and(|o| {
        String::from_utf8_lossy(&o.stdout).lines().any(|l| l.split_whitespace().next() == Some("banguard"))
    });
    if !loaded {
        let verdict = if mode == "enforcing" { Verdict::Fail } else { Verdict::Warn };
        d.add(
            "SELinux",
            verdict,
            format!("{mode}, banguard's policy module is not loaded: install banguard-selinux (or semodule -i banguard.pp)"),
        );
        return;
    }
    d.add("SELinux", Verdict::Ok, format!("{mode}, policy module banguard loaded"));
    for (path, want) in [
        ("/var/lib/banguard", "banguard_var_lib_t"),
        ("/run/banguard", "banguard_runtime_t"),
        ("/etc/banguard", "banguard_conf_t"),
    ] {
        let label = xattr_label(Path::new(path));
        match label {
            None => d.add("file context", Verdict::Skip, format!("{path}: does not exist")),
            Some(l) if l.contains(want) => d.add("file context", Verdict::Ok, format!("{path}: {l}")),
            Some(l) => d.add(
                "file context",
                Verdict::Fail,
                format!("{path} is {l}, not {want}: restorecon -R {path}"),
            ),
        }
    }
}

/// A file's SELinux label: `ls -Zd`'s first word.
fn xattr_label(path: &Path) -> Option<String> {
    if !path.exists() {
        return None;
    }
    let out = Command::new("ls").arg("-Zd").arg(path).output().ok()?;
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().map(String::from)
}
