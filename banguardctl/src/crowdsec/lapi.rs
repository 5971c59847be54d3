//! The HTTP side of the fleet: one CrowdSec Local API, its two
//! credentials, and one deadline for the whole exchange. Redirects are
//! never followed (the LAPI itself never sends one: an answer that does
//! is not the LAPI's), error bodies are cut short and cleaned before they
//! are shown, and bodies are read as they arrive, within limits.

use super::stream::{self, List, RawDecision, TokenLimit};
use super::{FleetError, Result, fail};
use banguard::config::CrowdsecConfig;
use banguard::policy::AccountLock;
use banguard::{Ban, HostKey};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::net::{IpAddr, ToSocketAddrs};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

/// The largest answer read from the LAPI (a full pull of a million
/// decisions is about 150 MB).
const MAX_RESPONSE: u64 = 512 * 1024 * 1024;
/// The largest answer that is not a decision stream (a login, an alert's
/// ids, our own alerts).
const MAX_SMALL_RESPONSE: u64 = 32 * 1024 * 1024;
/// How much of an error body is shown.
const ERROR_BODY_SHOWN: usize = 200;
/// The largest secret, certificate or key file read.
pub const MAX_SECRET_FILE: u64 = 1024 * 1024;
/// "Permanent" posted as the LAPI's longest usual duration (it has none).
pub const PERMANENT: &str = "87600h";

/// The scenario of an account lock in the fleet.
pub const ACCOUNT_SCENARIO: &str = "banguard/account-spray";

/// One of this server's decisions in the fleet, as its alerts list them.
#[derive(Debug, Clone, PartialEq)]
pub struct OurDecision {
    pub id: i64,
    /// Seconds left.
    pub left: f64,
}

/// The LAPI, with the credentials of `[fleet.crowdsec]`.
pub struct Lapi {
    agent: ureq::Agent,
    base: String,
    machine: Option<(String, String)>,
    bouncer_key: Option<String>,
    deadline: Instant,
}

impl Lapi {
    /// Reads the credentials and sets the exchange's deadline: `timeout`
    /// from now, for every request of it together.
    pub fn new(cfg: &CrowdsecConfig) -> Result<Lapi> {
        use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
        let deadline = Instant::now() + Duration::from_secs(cfg.timeout.max(1) as u64);
        let mut tls = TlsConfig::builder();
        if !cfg.ca_cert.as_os_str().is_empty() {
            let pem = read_checked(&cfg.ca_cert, Secrecy::Public)?;
            let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|i| match i {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(fail(format!("{}: no PEM certificate in it", cfg.ca_cert.display())));
            }
            tls = tls.root_certs(RootCerts::new_with_certs(&certs));
        }
        if !cfg.client_cert.as_os_str().is_empty() {
            let cert = Certificate::from_pem(&read_checked(&cfg.client_cert, Secrecy::Public)?)
                .map_err(|e| fail(format!("{}: {e}", cfg.client_cert.display())))?;
            let key = PrivateKey::from_pem(&read_checked(&cfg.client_key, Secrecy::Secret)?)
                .map_err(|e| fail(format!("{}: {e}", cfg.client_key.display())))?;
            tls = tls.client_cert(Some(ClientCert::new_with_certs(&[cert], key)));
        }
        if cfg.insecure_skip_verify {
            tls = tls.disable_verification(true);
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .tls_config(tls.build())
            .build()
            .into();
        let machine = if cfg.export { Some(machine_credentials(&cfg.machine_credentials)?) } else { None };
        let bouncer_key = if cfg.import {
            let key = String::from_utf8_lossy(&read_checked(&cfg.bouncer_key_file, Secrecy::Secret)?)
                .trim()
                .to_string();
            if key.is_empty() {
                return Err(fail(format!("{}: empty bouncer key", cfg.bouncer_key_file.display())));
            }
            if key.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(fail(format!(
                    "{}: not a bouncer key (spaces or control characters)",
                    cfg.bouncer_key_file.display()
                )));
            }
            Some(key)
        } else {
            None
        };
        Ok(Lapi { agent, base: cfg.url.trim_end_matches('/').to_string(), machine, bouncer_key, deadline })
    }

    /// The machine login this server posts as.
    pub fn login_name(&self) -> Option<&str> {
        self.machine.as_ref().map(|(l, _)| l.as_str())
    }

    /// The addresses the URL's host stands for now (the firewall never
    /// blocks them, so no peer can cut this server off its LAPI).
    pub fn addresses(&self) -> Vec<IpAddr> {
        let rest = self.base.split_once("://").map_or(self.base.as_str(), |(_, r)| r);
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let https = self.base.starts_with("https://");
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => match v6.split_once(']') {
                Some((h, p)) => (h, p.strip_prefix(':').and_then(|p| p.parse().ok())),
                None => return Vec::new(),
            },
            None => match authority.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().ok()),
                None => (authority, None),
            },
        };
        let port = port.unwrap_or(if https { 443 } else { 80 });
        let mut addrs: Vec<IpAddr> = match (host, port).to_socket_addrs() {
            Ok(a) => a.map(|s| banguard::addr::canonical(s.ip())).collect(),
            Err(_) => Vec::new(),
        };
        addrs.sort();
        addrs.dedup();
        addrs
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// What is left of the exchange's time; an error once it is spent.
    fn left(&self, what: &str) -> Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(fail(format!(
                "LAPI {}: {what}: [fleet.crowdsec] timeout spent before it (the rest waits for the next sync)",
                self.base
            )));
        }
        Ok(left)
    }

    /// Sends a request built by `make` with the time left, and opens the
    /// answer: its body if 2xx, else an error with a little of it, cleaned.
    fn send(
        &self,
        what: &str,
        make: impl FnOnce(Duration) -> std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let left = self.left(what)?;
        let mut resp = make(left).map_err(|e| self.fail(what, &e.to_string()))?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let mut shown = Vec::new();
        let _ = resp
            .body_mut()
            .with_config()
            .limit(ERROR_BODY_SHOWN as u64 * 4)
            .reader()
            .take(ERROR_BODY_SHOWN as u64 * 4)
            .read_to_end(&mut shown);
        let body: String = String::from_utf8_lossy(&shown).chars().take(ERROR_BODY_SHOWN).collect();
        let redirect = if (300..400).contains(&status) {
            " (a redirect, never followed: the LAPI sends none; check [fleet.crowdsec] url)"
        } else {
            ""
        };
        Err(self.fail(what, &format!("HTTP {status}{redirect} {}", body.trim())))
    }

    fn fail(&self, what: &str, msg: &str) -> FleetError {
        fail(banguard::text::clean(&format!("LAPI {}: {what}: {msg}", self.base)))
    }

    /// A small JSON answer, parsed whole.
    fn json(&self, what: &str, resp: ureq::http::Response<ureq::Body>) -> Result<serde_json::Value> {
        let mut resp = resp;
        let reader = TokenLimit::new(resp.body_mut().with_config().limit(MAX_SMALL_RESPONSE).reader());
        serde_json::from_reader(std::io::BufReader::new(reader))
            .map_err(|e| self.fail(what, &format!("not the JSON expected: {e}")))
    }

    /// Logs in as the machine; the JWT.
    pub fn login(&self) -> Result<String> {
        let Some((login, password)) = &self.machine else {
            return Err(fail("no machine credentials ([fleet.crowdsec] export = false)"));
        };
        let body = json!({ "machine_id": login, "password": password, "scenarios": [] });
        let resp = self.send("login", |left| {
            self.agent
                .post(self.url("/v1/watchers/login"))
                .config()
                .timeout_global(Some(left))
                .build()
                .send_json(&body)
        })?;
        let v = self.json("login", resp)?;
        v["token"]
            .as_str()
            .filter(|t| !t.is_empty() && !t.chars().any(|c| c.is_control() || c.is_whitespace()))
            .map(String::from)
            .ok_or_else(|| self.fail("login", "no token in the answer"))
    }

    /// This server's decisions in force for `values` (store keys), found
    /// by what they are: alerts of origin banguard with a decision in
    /// force, posted by this machine, for one of those values.
    pub fn our_decisions(
        &self,
        token: &str,
        values: &HashSet<String>,
    ) -> Result<HashMap<String, Vec<OurDecision>>> {
        let Some(login) = self.login_name() else { return Ok(HashMap::new()) };
        let bearer = format!("Bearer {token}");
        let resp = self.send("list our alerts", |left| {
            self.agent
                .get(self.url("/v1/alerts?origin=banguard&has_active_decision=true&limit=0"))
                .header("Authorization", &bearer)
                .config()
                .timeout_global(Some(left))
                .build()
                .call()
        })?;
        let v = self.json("list our alerts", resp)?;
        let mut out: HashMap<String, Vec<OurDecision>> = HashMap::new();
        for alert in v.as_array().into_iter().flatten() {
            if alert["machine_id"].as_str() != Some(login) {
                continue;
            }
            for d in alert["decisions"].as_array().into_iter().flatten() {
                let (Some(id), Some(value), Some(duration)) =
                    (d["id"].as_i64(), d["value"].as_str(), d["duration"].as_str())
                else {
                    continue;
                };
                if d["origin"].as_str() != Some("banguard") {
                    continue;
                }
                let Some(key) = decision_key(d["scope"].as_str().unwrap_or(""), value) else { continue };
                let Some(left) = super::go_duration(duration).filter(|s| *s > 0.0) else { continue };
                if values.contains(&key) {
                    out.entry(key).or_default().push(OurDecision { id, left });
                }
            }
        }
        Ok(out)
    }

    /// Posts one ban as an alert with one decision; the alert's id.
    pub fn post_ban(&self, token: &str, ban: &Ban, scenario: &str, now: i64) -> Result<Option<i64>> {
        let net = ban.host.net().ok_or_else(|| fail(format!("{} is not an address", ban.host)))?;
        let single = net.prefix_len() == net.max_prefix_len();
        let (scope, value) = if single { ("Ip", net.addr().to_string()) } else { ("Range", net.to_string()) };
        let duration = match ban.expires {
            Some(e) => format!("{}s", (e - now).max(1)),
            None => PERMANENT.to_string(),
        };
        let source = if single {
            json!({ "scope": scope, "value": value, "ip": value })
        } else {
            json!({ "scope": scope, "value": value, "range": value })
        };
        let alert = one_decision_alert(
            scenario,
            &format!("banguard: {} banned on {} ({})", ban.host, ban.service_label(), ban.reason),
            i64::from(ban.failures.max(1)),
            ban.created,
            source,
            &duration,
        );
        let resp = self.post_alert(token, &alert)?;
        // The decision's id is not needed: it is found by what it is.
        let ids = self.json("post alert", resp).unwrap_or(serde_json::Value::Null);
        Ok(ids
            .as_array()
            .and_then(|a| a.first())
            .and_then(|v| v.as_str().and_then(|s| s.parse().ok()).or_else(|| v.as_i64())))
    }

    /// Posts one account lock as an alert with one decision of scope
    /// `Username`: "refuse unfamiliar sources for this account".
    pub fn post_account_lock(&self, token: &str, lock: &AccountLock, now: i64) -> Result<()> {
        let value = &lock.account;
        let alert = one_decision_alert(
            ACCOUNT_SCENARIO,
            &format!(
                "banguard: account {value} locked for unfamiliar sources ({} passwords from {} addresses)",
                lock.passwords, lock.sources
            ),
            i64::from(lock.passwords.max(1)),
            lock.created,
            json!({ "scope": "Username", "value": value }),
            &format!("{}s", (lock.until - now).max(1)),
        );
        self.post_alert(token, &alert).map(drop)
    }

    /// POSTs alerts as this machine.
    fn post_alert(&self, token: &str, alert: &serde_json::Value) -> Result<ureq::http::Response<ureq::Body>> {
        let bearer = format!("Bearer {token}");
        self.send("post alert", |left| {
            self.agent
                .post(self.url("/v1/alerts"))
                .header("Authorization", &bearer)
                .config()
                .timeout_global(Some(left))
                .build()
                .send_json(alert)
        })
    }

    /// Deletes exactly one decision, one this server's alert holds (never
    /// a filter that could match other origins' decisions).
    pub fn delete_decision(&self, token: &str, id: i64) -> Result<()> {
        let bearer = format!("Bearer {token}");
        self.send("delete decision", |left| {
            self.agent
                .delete(self.url(&format!("/v1/decisions/{id}")))
                .header("Authorization", &bearer)
                .config()
                .timeout_global(Some(left))
                .build()
                .call()
        })?;
        Ok(())
    }

    /// The bouncer stream: everything in force with `startup`, else what
    /// changed since this key's last pull; each decision handed to `each`
    /// as it is read.
    pub fn stream(&self, startup: bool, each: &mut dyn FnMut(List, RawDecision)) -> Result<()> {
        let Some(key) = &self.bouncer_key else {
            return Err(fail("no bouncer key ([fleet.crowdsec] import = false)"));
        };
        // Usernames too (the account side's locks): CrowdSec matches scopes
        // other than ip and range exactly, and cscli stores them as typed.
        let url =
            self.url(&format!("/v1/decisions/stream?startup={startup}&scopes=ip,range,{ACCOUNT_SCOPES}"));
        let mut resp = self.send("decision stream", |left| {
            self.agent.get(&url).header("X-Api-Key", key).config().timeout_global(Some(left)).build().call()
        })?;
        let reader = TokenLimit::new(resp.body_mut().with_config().limit(MAX_RESPONSE).reader());
        stream::read_stream(reader, each).map_err(|e| self.fail("decision stream", &e))
    }
}

/// The scopes an account lock may come under (banguard posts `Username`).
pub const ACCOUNT_SCOPES: &str = "username,Username";

/// Whether a decision's scope is an account's.
pub fn is_account_scope(scope: &str) -> bool {
    ACCOUNT_SCOPES.split(',').any(|s| s == scope)
}

/// The store key of a decision's value: an address or a network, or an
/// account (`user:NAME`).
pub fn decision_key(scope: &str, value: &str) -> Option<String> {
    if is_account_scope(scope) {
        return banguard::account::key(value).map(|a| banguard::account::fleet_key(&a));
    }
    let host = match scope {
        "Ip" => HostKey::Net(banguard::addr::parse_addr(value)?.into()),
        "Range" => HostKey::Net(banguard::addr::parse_net(value).ok()?),
        _ => return None,
    };
    Some(host.db_key())
}

/// UTC, RFC 3339, as the LAPI wants its times.
pub fn rfc3339(t: i64) -> String {
    let (y, m, d) = banguard::duration::civil_from_days(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

/// How a file the exchange reads must be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrecy {
    /// A key or password: readable by its owner alone.
    Secret,
    /// A certificate: anyone may read it, nobody but root may change it.
    Public,
}

/// Opens a file the exchange reads, never through a link, and checks it on
/// the handle: a regular file (a FIFO or device is refused at once, never
/// waited on), root's (or this user's), kept as `secrecy` says, at most
/// [`MAX_SECRET_FILE`]. Without reading it: what `check-config` and
/// `doctor` say about it.
pub fn open_checked(path: &Path, secrecy: Secrecy) -> Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => fail(format!("{}: a link: refused (name the file itself)", path.display())),
            _ => fail(format!("{}: {e}", path.display())),
        })?;
    let meta = file.metadata().map_err(|e| fail(format!("{}: {e}", path.display())))?;
    let me = banguard::sys::effective_uid();
    if !meta.is_file() {
        return Err(fail(format!("{}: not a regular file", path.display())));
    }
    if meta.uid() != 0 && meta.uid() != me {
        return Err(fail(format!(
            "{}: owned by uid {}, not root: chown root {}",
            path.display(),
            meta.uid(),
            path.display()
        )));
    }
    let (forbidden, fix, what) = match secrecy {
        Secrecy::Secret => (0o077, "chmod 600", "a secret readable or writable by others"),
        Secrecy::Public => (0o022, "chmod go-w", "writable by group or others"),
    };
    if meta.mode() & forbidden != 0 {
        return Err(fail(format!(
            "{}: {what} (mode {:o}): {fix} {}",
            path.display(),
            meta.mode() & 0o777,
            path.display()
        )));
    }
    if meta.len() > MAX_SECRET_FILE {
        return Err(fail(format!(
            "{}: {} bytes; a credentials or certificate file is at most {MAX_SECRET_FILE}",
            path.display(),
            meta.len()
        )));
    }
    Ok(file)
}

/// Reads a file [`open_checked`] accepts.
pub fn read_checked(path: &Path, secrecy: Secrecy) -> Result<Vec<u8>> {
    let file = open_checked(path, secrecy)?;
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("{}: {e}", path.display())))?;
    Ok(bytes)
}

/// `cscli machines add NAME -f FILE`'s file: `login:` and `password:`.
fn machine_credentials(path: &Path) -> Result<(String, String)> {
    let text = String::from_utf8_lossy(&read_checked(path, Secrecy::Secret)?).into_owned();
    let field = |name: &str| {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix(name))
            .filter_map(|r| r.trim_start().strip_prefix(':'))
            .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_string())
            .next()
            .filter(|v| !v.is_empty())
    };
    match (field("login"), field("password")) {
        (Some(l), Some(p)) => Ok((l, p)),
        _ => Err(fail(format!(
            "{}: no login and password (the file `cscli machines add -f` writes)",
            path.display()
        ))),
    }
}

/// An alert of this machine with one decision of origin banguard, type
/// ban, for what `source` names (its scope and value), lasting `duration`
/// (Go's syntax); the message cleaned.
fn one_decision_alert(
    scenario: &str,
    message: &str,
    events: i64,
    created: i64,
    source: serde_json::Value,
    duration: &str,
) -> serde_json::Value {
    let stamp = rfc3339(created);
    json!([{
        "scenario": scenario,
        "scenario_hash": "",
        "scenario_version": "",
        "message": banguard::text::clean(message),
        "events_count": events,
        "start_at": stamp,
        "stop_at": stamp,
        "capacity": 0,
        "leakspeed": "0",
        "simulated": false,
        "events": [],
        "decisions": [{
            "origin": "banguard",
            "type": "ban",
            "scope": source["scope"],
            "value": source["value"],
            "duration": duration,
            "scenario": scenario,
        }],
        "source": source,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_are_checked_on_the_handle_before_they_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("bouncer.key");
        std::fs::write(&key, "k\n").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_checked(&key, Secrecy::Secret).unwrap(), b"k\n");
        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(&key, &link).unwrap();
        assert!(read_checked(&link, Secrecy::Secret).unwrap_err().0.contains("a link"));
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(read_checked(&key, Secrecy::Secret).unwrap_err().0.contains("chmod 600"));
        assert!(read_checked(&key, Secrecy::Public).is_ok(), "a certificate may be read by others");
        // A FIFO is refused at once, never waited on.
        let fifo = dir.path().join("fifo.pem");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let started = Instant::now();
        assert!(read_checked(&fifo, Secrecy::Public).unwrap_err().0.contains("not a regular file"));
        assert!(started.elapsed() < Duration::from_secs(2));
        // Too big.
        let big = dir.path().join("big.pem");
        std::fs::write(&big, vec![b'x'; (MAX_SECRET_FILE + 1) as usize]).unwrap();
        assert!(read_checked(&big, Secrecy::Public).unwrap_err().0.contains("at most"));
        let creds = dir.path().join("machine.yaml");
        std::fs::write(&creds, "url: http://127.0.0.1:8080\nlogin: a\npassword: 'p w'\n").unwrap();
        std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(machine_credentials(&creds).unwrap(), ("a".to_string(), "p w".to_string()));
    }

    #[test]
    fn times_are_utc_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_800_000_000), "2027-01-15T08:00:00Z");
    }

    #[test]
    fn the_lapi_host_is_found_in_its_url() {
        let cfg = |url: &str| CrowdsecConfig {
            url: url.into(),
            export: false,
            import: false,
            ..banguard::Config::default().fleet.crowdsec
        };
        let l = Lapi::new(&cfg("http://127.0.0.1:8080/")).unwrap();
        assert_eq!(l.addresses(), vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
        let l = Lapi::new(&cfg("https://[::1]:8443")).unwrap();
        assert_eq!(l.addresses(), vec!["::1".parse::<IpAddr>().unwrap()]);
        let l = Lapi::new(&cfg("http://localhost")).unwrap();
        assert!(!l.addresses().is_empty());
    }
}
