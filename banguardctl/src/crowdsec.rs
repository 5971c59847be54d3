//! The fleet through a CrowdSec Local API (`[fleet] provider =
//! "crowdsec"`), run by `banguardctl sync` before it pushes bans to the
//! firewall: this server's bans posted as alerts with one decision each
//! (machine credentials), bans lifted here withdrawn, the fleet's decisions
//! pulled from the bouncer stream (a full pull on the first exchange and
//! every `resync`, deltas otherwise) and taken as bans. The PAM module never
//! talks to the LAPI: an unreachable LAPI costs logins nothing.
//!
//! Everything a peer sends is checked before it reaches the store: the
//! type, the scope (`Ip`, `Range`, exactly), the value, the duration (Go's
//! syntax; capped), then the library's rule of a manual ban (ignoreip,
//! loopback, the widest-network floor).

use banguard::addr::{parse_addr, parse_net};
use banguard::config::CrowdsecConfig;
use banguard::policy::{BanOrigin, FleetApplied, FleetDecision};
use banguard::{Ban, Banguard, HostKey};
use serde::Deserialize;
use serde_json::json;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

/// The longest a decision taken from the fleet may last here.
pub const MAX_IMPORTED: i64 = 365 * 86_400;
/// The largest answer read from the LAPI (a full pull of a million
/// decisions is about 150 MB).
const MAX_RESPONSE: u64 = 512 * 1024 * 1024;
/// "Permanent" posted as the LAPI's longest usual duration (it has none).
const PERMANENT: &str = "87600h";

/// A failed exchange, worded for the operator.
#[derive(Debug)]
pub struct FleetError(pub String);

impl std::fmt::Display for FleetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

type Result<T> = std::result::Result<T, FleetError>;

fn fail(msg: impl Into<String>) -> FleetError {
    FleetError(msg.into())
}

/// What one exchange did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Exchange {
    pub exported: u32,
    pub withdrawn: u32,
    pub startup: bool,
    pub applied: FleetApplied,
    /// Decisions refused for their shape, with why.
    pub malformed: Vec<String>,
    /// Decisions left out by the filters (type, origin, scenario).
    pub filtered: u32,
    /// Durations cut to [`MAX_IMPORTED`].
    pub capped: u32,
}

/// One exchange with the LAPI; the firewall push follows whatever happens.
pub fn exchange(cfg: &CrowdsecConfig, g: &mut Banguard, log: &mut dyn FnMut(&str)) -> Result<Exchange> {
    let now = g.now();
    let result = run(cfg, g, now, log);
    match &result {
        Ok(_) => {
            let _ = g.set_fleet_state("last_ok", &now.to_string());
            let _ = g.set_fleet_state("last_error", "");
        }
        Err(e) => {
            let _ = g.set_fleet_state("last_error", &e.0);
        }
    }
    result
}

fn run(cfg: &CrowdsecConfig, g: &mut Banguard, now: i64, log: &mut dyn FnMut(&str)) -> Result<Exchange> {
    let lapi = Lapi::new(cfg)?;
    let mut out = Exchange::default();
    if cfg.export {
        export(&lapi, g, now, &mut out, log)?;
    }
    if cfg.import {
        import(cfg, &lapi, g, now, &mut out, log)?;
    }
    Ok(out)
}

fn export(
    lapi: &Lapi,
    g: &mut Banguard,
    now: i64,
    out: &mut Exchange,
    log: &mut dyn FnMut(&str),
) -> Result<()> {
    let withdraw = g.fleet_to_withdraw().map_err(core)?;
    let post = g.fleet_to_export().map_err(core)?;
    if withdraw.is_empty() && post.is_empty() {
        return Ok(());
    }
    let token = lapi.login()?;
    for (ban_id, decision) in withdraw {
        lapi.delete_decision(&token, decision)?;
        g.fleet_withdrawn(ban_id).map_err(core)?;
        log(&format!("fleet: withdrew decision {decision} (ban #{ban_id} was lifted here)"));
        out.withdrawn += 1;
    }
    for (i, (ban, tries)) in post.iter().enumerate() {
        match lapi.post_ban(&token, ban, now) {
            Ok(decision) => {
                g.fleet_exported(ban.id, decision).map_err(core)?;
                log(&format!("fleet: posted ban #{} of {} as decision {decision}", ban.id, ban.host));
                out.exported += 1;
            }
            Err(e) => {
                // The rest waits with it: one failure is the LAPI's state.
                for (ban, tries) in &post[i..] {
                    let next = now + backoff(*tries);
                    g.fleet_export_failed(ban.id, &e.0, next).map_err(core)?;
                }
                let _ = tries;
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Seconds before the next try of an export that failed `tries` times.
fn backoff(tries: u32) -> i64 {
    (10i64 << tries.min(8)).min(3600)
}

fn import(
    cfg: &CrowdsecConfig,
    lapi: &Lapi,
    g: &mut Banguard,
    now: i64,
    out: &mut Exchange,
    log: &mut dyn FnMut(&str),
) -> Result<()> {
    let last_pull: Option<i64> = g.fleet_state("last_pull").map_err(core)?.and_then(|v| v.parse().ok());
    let startup = last_pull.is_none_or(|t| now - t >= cfg.resync);
    let stream = lapi.stream(startup)?;
    out.startup = startup;
    let mut deleted: Vec<i64> = stream.deleted.unwrap_or_default().iter().map(|d| d.id).collect();
    let mut new = Vec::new();
    for d in stream.new.unwrap_or_default() {
        match checked(cfg, &d, now) {
            Check::Take(decision, capped) => {
                if capped {
                    out.capped += 1;
                    log(&format!(
                        "fleet: decision {} for {} lasts {}: cut to a year",
                        d.id, decision.host, d.duration
                    ));
                }
                new.push(decision);
            }
            Check::Filtered => out.filtered += 1,
            Check::Bad(why) => {
                log(&format!("fleet: refused decision {}: {why}", d.id));
                out.malformed.push(why);
            }
        }
    }
    if startup {
        // A full pull lists every decision in force: those held here and
        // missing from it were deleted while a delta was lost.
        let listed: std::collections::HashSet<i64> = new.iter().map(|d| d.id).collect();
        deleted.extend(g.fleet_imported_ids().map_err(core)?.into_iter().filter(|id| !listed.contains(id)));
    }
    let applied = g.fleet_apply(&deleted, &new, cfg.max_decisions).map_err(core)?;
    for b in &applied.imported {
        log(&format!(
            "fleet: {} refused on all services until {} ({})",
            b.host,
            b.expires.unwrap_or(0),
            b.reason
        ));
    }
    for b in &applied.lifted {
        log(&format!("fleet: {} no longer refused (the fleet deleted its decision)", b.host));
    }
    for (host, why) in &applied.refused {
        log(&format!("fleet: refused to take a ban of {host}: {why}"));
    }
    if applied.over_cap > 0 {
        log(&format!(
            "fleet: {} decisions left out: [fleet.crowdsec] max_decisions = {} imported bans are active",
            applied.over_cap, cfg.max_decisions
        ));
    }
    out.applied = applied;
    if startup {
        g.set_fleet_state("last_pull", &now.to_string()).map_err(core)?;
    }
    Ok(())
}

fn core(e: banguard::Error) -> FleetError {
    fail(e.to_string())
}

enum Check {
    Take(FleetDecision, bool),
    Filtered,
    Bad(String),
}

/// A decision as the stream sends it.
#[derive(Debug, Deserialize)]
pub struct Decision {
    pub id: i64,
    #[serde(default)]
    pub duration: String,
    #[serde(default)]
    pub origin: String,
    #[serde(default)]
    pub scenario: String,
    #[serde(default)]
    pub scope: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Deserialize)]
pub struct Stream {
    pub new: Option<Vec<Decision>>,
    pub deleted: Option<Vec<Decision>>,
}

/// Whether and how a decision is taken: a ban of an address or network,
/// of an origin and scenario the filters let through, ending in the future.
fn checked(cfg: &CrowdsecConfig, d: &Decision, now: i64) -> Check {
    if d.kind != "ban" {
        return Check::Filtered;
    }
    if !cfg.import_origins.is_empty() && !cfg.import_origins.contains(&d.origin) {
        return Check::Filtered;
    }
    if !cfg.import_scenarios.is_empty()
        && !cfg.import_scenarios.iter().any(|s| d.scenario.contains(s.as_str()))
    {
        return Check::Filtered;
    }
    let host = match d.scope.as_str() {
        "Ip" => match parse_addr(&d.value) {
            Some(a) => HostKey::Net(a.into()),
            None => return Check::Bad(format!("scope Ip, value {:?} is not an address", d.value)),
        },
        "Range" => match parse_net(&d.value) {
            Ok(n) => HostKey::Net(n),
            Err(_) => return Check::Bad(format!("scope Range, value {:?} is not a network", d.value)),
        },
        other => return Check::Bad(format!("scope {other:?} is neither Ip nor Range")),
    };
    let Some(secs) = go_duration(&d.duration) else {
        return Check::Bad(format!("duration {:?} is not a Go duration", d.duration));
    };
    if secs <= 0.0 {
        return Check::Bad(format!("duration {:?} has already run out", d.duration));
    }
    let capped = secs > MAX_IMPORTED as f64;
    let secs = (secs.min(MAX_IMPORTED as f64)).ceil() as i64;
    let clean = |s: &str| banguard::text::clean(s).chars().take(100).collect::<String>();
    Check::Take(
        FleetDecision {
            id: d.id,
            host,
            expires: now + secs,
            scenario: clean(&d.scenario),
            origin: clean(&d.origin),
        },
        capped,
    )
}

/// A Go duration ("59m55.855863609s", "-22.785677ms", "87600h") in seconds.
pub fn go_duration(text: &str) -> Option<f64> {
    let (neg, mut rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(0.0);
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).filter(|n| *n > 0)?;
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let mult = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * mult;
        rest = &rest[unit_len..];
    }
    Some(if neg { -total } else { total })
}

/// What banguard's ban is called in the fleet.
fn scenario(ban: &Ban) -> &'static str {
    match (ban.origin, ban.reason.as_str()) {
        (BanOrigin::Fail2ban, _) => "banguard/fail2ban",
        (_, "recidive") => "banguard/recidive",
        (_, r) if r.starts_with("manual") => "banguard/manual",
        _ => "banguard/pam-bruteforce",
    }
}

/// The LAPI, with the credentials of `[fleet.crowdsec]`.
pub struct Lapi {
    agent: ureq::Agent,
    base: String,
    machine: Option<(String, String)>,
    bouncer_key: Option<String>,
}

impl Lapi {
    pub fn new(cfg: &CrowdsecConfig) -> Result<Lapi> {
        use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
        let mut tls = TlsConfig::builder();
        if !cfg.ca_cert.as_os_str().is_empty() {
            let pem = read(&cfg.ca_cert)?;
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
            let cert = Certificate::from_pem(&read(&cfg.client_cert)?)
                .map_err(|e| fail(format!("{}: {e}", cfg.client_cert.display())))?;
            let key = PrivateKey::from_pem(&read_secret(&cfg.client_key)?)
                .map_err(|e| fail(format!("{}: {e}", cfg.client_key.display())))?;
            tls = tls.client_cert(Some(ClientCert::new_with_certs(&[cert], key)));
        }
        if cfg.insecure_skip_verify {
            tls = tls.disable_verification(true);
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(cfg.timeout.max(1) as u64)))
            .http_status_as_error(false)
            .tls_config(tls.build())
            .build()
            .into();
        let machine = if cfg.export { Some(machine_credentials(&cfg.machine_credentials)?) } else { None };
        let bouncer_key = if cfg.import {
            let key = String::from_utf8_lossy(&read_secret(&cfg.bouncer_key_file)?).trim().to_string();
            if key.is_empty() {
                return Err(fail(format!("{}: empty bouncer key", cfg.bouncer_key_file.display())));
            }
            Some(key)
        } else {
            None
        };
        Ok(Lapi { agent, base: cfg.url.trim_end_matches('/').to_string(), machine, bouncer_key })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn send(
        &self,
        what: &str,
        result: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<serde_json::Value> {
        let mut resp = result.map_err(|e| fail(format!("LAPI {}: {what}: {e}", self.base)))?;
        let status = resp.status().as_u16();
        // A full pull of a community blocklist is tens of megabytes.
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE)
            .read_to_string()
            .map_err(|e| fail(format!("LAPI {}: {what}: {e}", self.base)))?;
        if !(200..300).contains(&status) {
            let body: String = body.chars().take(200).collect();
            return Err(fail(format!("LAPI {}: {what}: HTTP {status} {}", self.base, body.trim())));
        }
        if body.trim().is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_str(&body).map_err(|e| fail(format!("LAPI {}: {what}: not JSON: {e}", self.base)))
    }

    /// Logs in as the machine; the JWT.
    pub fn login(&self) -> Result<String> {
        let Some((login, password)) = &self.machine else {
            return Err(fail("no machine credentials ([fleet.crowdsec] export = false)"));
        };
        let body = json!({ "machine_id": login, "password": password, "scenarios": [] });
        let v = self.send("login", self.agent.post(self.url("/v1/watchers/login")).send_json(&body))?;
        v["token"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| fail(format!("LAPI {}: login: no token", self.base)))
    }

    /// Posts one ban as an alert with one decision; the decision's id.
    pub fn post_ban(&self, token: &str, ban: &Ban, now: i64) -> Result<i64> {
        let net = ban.host.net().ok_or_else(|| fail(format!("{} is not an address", ban.host)))?;
        let single = net.prefix_len() == net.max_prefix_len();
        let (scope, value) = if single { ("Ip", net.addr().to_string()) } else { ("Range", net.to_string()) };
        let duration = match ban.expires {
            Some(e) => format!("{}s", (e - now).max(1)),
            None => PERMANENT.to_string(),
        };
        let stamp = rfc3339(ban.created);
        let alert = json!([{
            "scenario": scenario(ban),
            "scenario_hash": "",
            "scenario_version": "",
            "message": banguard::text::clean(&format!("banguard: {} banned on {} ({})", ban.host, ban.service_label(), ban.reason)),
            "events_count": ban.failures.max(1),
            "start_at": stamp,
            "stop_at": stamp,
            "capacity": 0,
            "leakspeed": "0",
            "simulated": false,
            "events": [],
            "source": if single { json!({ "scope": scope, "value": value, "ip": value }) } else { json!({ "scope": scope, "value": value, "range": value }) },
            "decisions": [{
                "origin": "banguard",
                "type": "ban",
                "scope": scope,
                "value": value,
                "duration": duration,
                "scenario": scenario(ban),
            }],
        }]);
        let bearer = format!("Bearer {token}");
        let ids = self.send(
            "post alert",
            self.agent.post(self.url("/v1/alerts")).header("Authorization", &bearer).send_json(&alert),
        )?;
        let alert_id = ids
            .as_array()
            .and_then(|a| a.first())
            .and_then(|v| v.as_str().map(String::from).or_else(|| v.as_i64().map(|n| n.to_string())))
            .ok_or_else(|| fail(format!("LAPI {}: post alert: no alert id in {ids}", self.base)))?;
        let alert = self.send(
            "read alert",
            self.agent
                .get(self.url(&format!("/v1/alerts/{alert_id}")))
                .header("Authorization", &bearer)
                .call(),
        )?;
        alert["decisions"]
            .as_array()
            .and_then(|d| d.first())
            .and_then(|d| d["id"].as_i64())
            .ok_or_else(|| fail(format!("LAPI {}: alert {alert_id} has no decision", self.base)))
    }

    /// Deletes exactly one decision (never a filter that could match other
    /// origins' decisions).
    pub fn delete_decision(&self, token: &str, id: i64) -> Result<()> {
        self.send(
            "delete decision",
            self.agent
                .delete(self.url(&format!("/v1/decisions/{id}")))
                .header("Authorization", &format!("Bearer {token}"))
                .call(),
        )?;
        Ok(())
    }

    /// The bouncer stream: everything in force with `startup`, else what
    /// changed since this key's last pull.
    pub fn stream(&self, startup: bool) -> Result<Stream> {
        let Some(key) = &self.bouncer_key else {
            return Err(fail("no bouncer key ([fleet.crowdsec] import = false)"));
        };
        let url = self.url(&format!("/v1/decisions/stream?startup={startup}"));
        let v = self.send("decision stream", self.agent.get(url).header("X-Api-Key", key).call())?;
        serde_json::from_value(v).map_err(|e| fail(format!("LAPI {}: decision stream: {e}", self.base)))
    }
}

/// UTC, RFC 3339, as the LAPI wants its times.
fn rfc3339(t: i64) -> String {
    let (y, m, d) = banguard::duration::civil_from_days(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| fail(format!("{}: {e}", path.display())))
}

/// A secret: root's (or this user's) and readable by nobody else. Opened
/// without following a link, and checked on the handle it is read from.
fn read_secret(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| fail(format!("{}: {e} (a secret file, not a link)", path.display())))?;
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
    if meta.mode() & 0o077 != 0 {
        return Err(fail(format!(
            "{}: a secret readable or writable by others (mode {:o}): chmod 600 {}",
            path.display(),
            meta.mode() & 0o777,
            path.display()
        )));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| fail(format!("{}: {e}", path.display())))?;
    Ok(bytes)
}

/// `cscli machines add NAME -f FILE`'s file: `login:` and `password:`.
fn machine_credentials(path: &Path) -> Result<(String, String)> {
    let text = String::from_utf8_lossy(&read_secret(path)?).into_owned();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_as_the_lapi_sends_them() {
        assert_eq!(go_duration("87600h"), Some(315_360_000.0));
        assert!((go_duration("59m55.855863609s").unwrap() - 3595.855863609).abs() < 1e-6);
        assert!(go_duration("-22.785677ms").unwrap() < 0.0);
        assert_eq!(go_duration("1h2m3s"), Some(3723.0));
        assert_eq!(go_duration("0"), Some(0.0));
        for bad in ["", "5", "1d", "h", "1.2.3s", "10 m"] {
            assert_eq!(go_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn hostile_decisions_are_refused_or_cut() {
        let cfg = banguard::Config::default().fleet.crowdsec;
        let d = |scope: &str, value: &str, duration: &str, kind: &str| Decision {
            id: 1,
            duration: duration.into(),
            origin: "crowdsec".into(),
            scenario: "crowdsecurity/ssh-bf".into(),
            scope: scope.into(),
            kind: kind.into(),
            value: value.into(),
        };
        let now = 1_000;
        assert!(
            matches!(checked(&cfg, &d("Ip", "198.51.100.7", "1h", "ban"), now), Check::Take(f, false) if f.expires == 4600)
        );
        assert!(matches!(checked(&cfg, &d("Range", "2001:db8::/64", "10m", "ban"), now), Check::Take(..)));
        assert!(
            matches!(checked(&cfg, &d("ip", "198.51.100.7", "1h", "ban"), now), Check::Bad(w) if w.contains("neither Ip nor Range"))
        );
        assert!(
            matches!(checked(&cfg, &d("Ip", "not-an-ip", "1h", "ban"), now), Check::Bad(w) if w.contains("not an address"))
        );
        assert!(matches!(checked(&cfg, &d("Ip", "198.51.100.7", "forever", "ban"), now), Check::Bad(_)));
        assert!(matches!(checked(&cfg, &d("Ip", "198.51.100.7", "-1s", "ban"), now), Check::Bad(_)));
        assert!(matches!(checked(&cfg, &d("Ip", "198.51.100.7", "1h", "captcha"), now), Check::Filtered));
        match checked(&cfg, &d("Ip", "198.51.100.7", "8760000h", "ban"), now) {
            Check::Take(f, true) => assert_eq!(f.expires, now + MAX_IMPORTED),
            _ => panic!("an absurd duration is cut"),
        }
        let only = CrowdsecConfig { import_origins: vec!["cscli".into()], ..cfg.clone() };
        assert!(matches!(checked(&only, &d("Ip", "198.51.100.7", "1h", "ban"), now), Check::Filtered));
    }

    #[test]
    fn secrets_must_be_private_files_not_links() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("bouncer.key");
        std::fs::write(&key, "k\n").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_secret(&key).unwrap(), b"k\n");
        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(&key, &link).unwrap();
        assert!(read_secret(&link).unwrap_err().0.contains("not a link"));
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(read_secret(&key).unwrap_err().0.contains("chmod 600"));
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
}
