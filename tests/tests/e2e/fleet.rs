//! The fleet through a real CrowdSec Local API (Debian's crowdsec, LAPI
//! only, offline) in a throwaway network namespace, with two banguard
//! servers: A (hosts.deny) and B (nftables in the namespace). Their syncs
//! run in the namespace; their PAM stacks run here through libpam, reading
//! only their local files.

use banguard_e2e::crowdsec::Lapi;
use banguard_e2e::fixture::ConfigFile;
use banguard_e2e::pamtest::*;
use banguard_e2e::{Netns, artifacts, require};
use serde_json::Value;
use std::fs;
use std::path::PathBuf;
use std::process::Output;

const PORT: u16 = 8080;
const TOOLS: &[&str] = &["crowdsec", "cscli", "curl", "nsenter", "unshare", "nft", "pkill", "pgrep"];

/// One banguard server: its config, store, PAM stack and password checker.
struct Server {
    dir: tempfile::TempDir,
    name: &'static str,
}

impl Server {
    fn new(ns: &Netns, lapi: &Lapi, name: &'static str, backend: &str, extra: &str) -> Server {
        let dir = tempfile::Builder::new().prefix(&format!("bg-fleet-{name}.")).tempdir().unwrap();
        let d = dir.path().display().to_string();
        let machine = lapi.machine(ns, &format!("banguard-{name}"), dir.path());
        let bouncer = lapi.bouncer(ns, &format!("banguard-{name}"), dir.path());
        ConfigFile::under(dir.path())
            .with(&format!(
                "maxretry = 2\nignoreip = [\"127.0.0.0/8\", \"::1\", \"192.0.2.10\"]\n\
                 [recidive]\nenabled = false\n\
                 [sync]\nbackends = [\"{backend}\"]\nhosts_deny = \"{d}/hosts.deny\"\nlock_file = \"{d}/run/sync.lock\"\n\
                 [fleet]\nprovider = \"crowdsec\"\n\
                 [fleet.crowdsec]\n{url}machine_credentials = \"{}\"\nbouncer_key_file = \"{}\"\ntimeout = \"3s\"\n{extra}",
                machine.display(),
                bouncer.display(),
                url = if extra.contains("url =") { String::new() } else { format!("url = \"http://127.0.0.1:{PORT}/\"\n") },
            ))
            .write(&dir.path().join("banguard.toml"));
        let s = Server { dir, name };
        write_password_checker(&s.path("checkpw"), &s.path("evaluated.log"), "right");
        let mut lines = vec![format!(
            "auth requisite {} config={}",
            artifacts().pam_module.display(),
            s.config().display()
        )];
        lines.extend(password_lines(&s.path("checkpw")));
        lines.push("account required pam_permit.so".into());
        Confdir::new(&s.path("pam.d")).service("sshd", &lines);
        s
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config(&self) -> PathBuf {
        self.path("banguard.toml")
    }

    /// One login through the real PAM stack: the code, and whether the
    /// password was looked at.
    fn login(&self, rhost: &str, password: &str) -> (i32, bool) {
        let before = fs::read_to_string(self.path("evaluated.log")).unwrap_or_default().lines().count();
        let mut p = Pam::start(&self.path("pam.d"), "sshd", "alice");
        p.rhost(rhost);
        let rc = p.try_password(password);
        if rc == PAM_SUCCESS {
            p.setcred(PAM_ESTABLISH_CRED);
        }
        p.abandon();
        let after = fs::read_to_string(self.path("evaluated.log")).unwrap_or_default().lines().count();
        (rc, after > before)
    }

    /// `banguardctl sync --json` in the namespace (where the LAPI is).
    fn sync(&self, ns: &Netns) -> (Option<i32>, Value, Output) {
        let ctl = artifacts().banguardctl.display().to_string();
        let cfg = self.config().display().to_string();
        let out = ns.run([ctl.as_str(), "--config", &cfg, "--json", "sync"]);
        let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.code(), v, out)
    }

    fn sync_ok(&self, ns: &Netns) -> Value {
        let (code, v, out) = self.sync(ns);
        assert_eq!(
            code,
            Some(0),
            "{} sync: {}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        v
    }

    fn ctl(&self, args: &[&str]) -> Output {
        std::process::Command::new(&artifacts().banguardctl)
            .arg("--config")
            .arg(self.config())
            .args(args)
            .output()
            .unwrap()
    }

    fn bans(&self) -> Vec<Value> {
        let out = self.ctl(&["--json", "list"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["bans"].as_array().cloned().unwrap_or_default()
    }

    fn banned(&self, host: &str) -> bool {
        self.bans().iter().any(|b| b["host"] == host)
    }
}

fn nft_set(ns: &Netns) -> String {
    String::from_utf8_lossy(&ns.run(["nft", "list", "table", "inet", "banguard"]).stdout).into_owned()
}

fn lapi_up(ns: &Netns) -> Lapi {
    let mut lapi = Lapi::new(ns, PORT, "");
    lapi.start(ns);
    lapi
}

#[test]
fn a_ban_on_one_server_is_refused_on_the_other_and_lifted_with_it() {
    if !require("a_ban_on_one_server_is_refused_on_the_other_and_lifted_with_it", true, TOOLS) {
        return;
    }
    let ns = Netns::new();
    let mut lapi = lapi_up(&ns);
    let a = Server::new(&ns, &lapi, "a", "hosts.deny", "");
    let b = Server::new(&ns, &lapi, "b", "nftables", "");
    b.sync_ok(&ns);

    // A bans two hosts through its PAM stack: an address and an IPv6 /64.
    for host in ["198.51.100.7", "2001:db8:1:2::7"] {
        for _ in 0..2 {
            assert_eq!(a.login(host, "wrong").0, PAM_AUTH_ERR);
        }
        assert_eq!(a.login(host, "right"), (PAM_PERM_DENIED, false), "A refuses {host}");
    }
    let x = a.sync_ok(&ns);
    assert_eq!(x["fleet"]["exported"], 2, "{x:#}");
    assert_eq!(x["fleet"]["applied"]["ours"], 2, "A's own decisions come back and are skipped: {x:#}");
    let posted = lapi.decisions(&ns);
    assert!(posted.contains(&("banguard".into(), "Ip".into(), "198.51.100.7".into())), "{posted:?}");
    assert!(posted.contains(&("banguard".into(), "Range".into(), "2001:db8:1:2::/64".into())), "{posted:?}");

    // B takes them: refused before the password, in B's nft set.
    let x = b.sync_ok(&ns);
    assert_eq!(x["fleet"]["applied"]["taken"], 2, "{x:#}");
    assert_eq!(b.login("198.51.100.7", "right"), (PAM_PERM_DENIED, false), "B refuses A's host unchecked");
    assert_eq!(b.login("2001:db8:1:2::99", "right"), (PAM_PERM_DENIED, false), "and its /64");
    assert_eq!(b.login("198.51.100.8", "right").0, PAM_SUCCESS, "a clean host logs in on B");
    let set = nft_set(&ns);
    assert!(set.contains("198.51.100.7") && set.contains("2001:db8:1:2::/64"), "{set}");
    let ban = b.bans().into_iter().find(|b| b["host"] == "198.51.100.7").unwrap();
    assert_eq!(
        (ban["origin"].as_str(), ban["service"].as_str()),
        (Some("crowdsec"), Some("all services")),
        "{ban:#}"
    );
    // B never posts what it took.
    let x = b.sync_ok(&ns);
    assert_eq!(x["fleet"]["exported"], 0, "{x:#}");
    assert!(lapi.alert_machines(&ns).iter().all(|m| m != "banguard-b"), "{:?}", lapi.alert_machines(&ns));

    // The fleet deletes the address's decision: B lifts it at its next sync.
    lapi.cscli_ok(&ns, &["decisions", "delete", "--ip", "198.51.100.7"]);
    b.sync_ok(&ns);
    assert!(!b.banned("198.51.100.7"));
    assert_eq!(b.login("198.51.100.7", "right").0, PAM_SUCCESS);

    // An unban on A withdraws exactly A's decision: another origin's wider
    // range around it stays.
    lapi.cscli_ok(&ns, &["decisions", "add", "--range", "2001:db8:1::/48", "--duration", "1h"]);
    let out = a.ctl(&["unban", "2001:db8:1:2::/64", "--no-sync"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let x = a.sync_ok(&ns);
    assert_eq!(x["fleet"]["withdrawn"], 1, "{x:#}");
    let left = lapi.decisions(&ns);
    assert!(!left.iter().any(|d| d.0 == "banguard" && d.2 == "2001:db8:1:2::/64"), "{left:?}");
    assert!(left.iter().any(|d| d.0 == "cscli" && d.2 == "2001:db8:1::/48"), "{left:?}");

    // LAPI down: logins are unaffected, A's new ban waits, B keeps its bans.
    lapi.stop();
    for _ in 0..2 {
        a.login("203.0.113.5", "wrong");
    }
    assert_eq!(a.login("203.0.113.5", "right"), (PAM_PERM_DENIED, false), "banned at its third try");
    assert!(a.banned("203.0.113.5"));
    let (code, x, _) = a.sync(&ns);
    assert_eq!(code, Some(3), "a distinct exit status: {x:#}");
    assert_eq!(x["backends"][0]["ok"], true, "the firewall part ran: {x:#}");
    assert!(x["fleet"]["error"].as_str().is_some_and(|e| e.contains("LAPI")), "{x:#}");
    let status: Value = serde_json::from_slice(&a.ctl(&["--json", "status"]).stdout).unwrap();
    assert_eq!(status["fleet"]["pending_exports"], 1, "{status:#}");
    assert!(status["fleet"]["last_error"].as_str().is_some_and(|e| e.contains("LAPI")), "{status:#}");
    assert_eq!(b.sync(&ns).0, Some(3));
    assert_eq!(b.login("2001:db8:1:2::5", "right").0, PAM_PERM_DENIED, "B keeps the fleet's bans meanwhile");
    assert_eq!(b.login("198.51.100.9", "right").0, PAM_SUCCESS, "clean hosts log in");
    // Back up: the export arrives, B takes it.
    lapi.start(&ns);
    let x = a.sync_ok(&ns);
    assert_eq!(x["fleet"]["exported"], 1, "{x:#}");
    b.sync_ok(&ns);
    assert_eq!(b.login("203.0.113.5", "right"), (PAM_PERM_DENIED, false));
}

/// Any machine may post any decision: what would block a clean host, or
/// is not a ban of an address, is refused or cut, with a reason.
#[test]
fn hostile_decisions_never_block_a_clean_host() {
    if !require("hostile_decisions_never_block_a_clean_host", true, TOOLS) {
        return;
    }
    let ns = Netns::new();
    let lapi = lapi_up(&ns);
    let b = Server::new(&ns, &lapi, "b", "nftables", "max_decisions = 2000\n");
    let add = |args: &[&str]| {
        let mut all = vec!["decisions", "add"];
        all.extend_from_slice(args);
        lapi.cscli_ok(&ns, &all);
    };
    add(&["--range", "0.0.0.0/0", "--duration", "1h"]);
    add(&["--range", "192.0.2.0/24", "--duration", "1h"]);
    add(&["--ip", "127.0.0.1", "--duration", "1h"]);
    // Scopes banguard cannot enforce. (The LAPI itself turns cscli's "ip"
    // into "Ip", refuses a garbage address with a 500, and leaves other
    // scopes out of the stream; banguard's own refusal of such decisions
    // is unit-tested in banguardctl's crowdsec.rs.)
    add(&["--scope", "username", "--value", "198.51.100.50", "--duration", "1h"]);
    add(&["--scope", "Country", "--value", "FR", "--duration", "1h"]);
    add(&["--ip", "198.51.100.60", "--duration", "876000h"]);
    add(&["--ip", "198.51.100.61", "--duration", "1h", "--type", "captcha"]);
    let x = b.sync_ok(&ns);
    let fleet = &x["fleet"];
    let refused: Vec<String> =
        fleet["applied"]["refused"].as_array().unwrap().iter().map(|r| r.to_string()).collect();
    assert!(refused.iter().any(|r| r.contains("0.0.0.0/0") && r.contains("every address")), "{refused:?}");
    assert!(refused.iter().any(|r| r.contains("127.0.0.1")), "{refused:?}");
    assert_eq!(fleet["capped"], 1, "{fleet:#}");
    assert!(fleet["filtered"].as_u64() >= Some(1), "the captcha: {fleet:#}");
    // The absurd one lasts a year at most.
    let long = b.bans().into_iter().find(|b| b["host"] == "198.51.100.60").expect("taken, cut");
    assert!(long["expires_in"].as_i64().unwrap() <= 365 * 86_400, "{long:#}");
    // Clean hosts log in: the ignored one inside the /24, and any other.
    assert_eq!(b.login("192.0.2.10", "right").0, PAM_SUCCESS, "ignoreip wins over the fleet");
    assert_eq!(b.login("198.51.100.200", "right").0, PAM_SUCCESS);
    assert_eq!(b.login("198.51.100.50", "right").0, PAM_SUCCESS, "a username decision is not an address ban");
    assert_eq!(b.login("192.0.2.11", "right").0, PAM_PERM_DENIED, "the rest of the /24 is banned");

    // 10,000 decisions at once (a list import), beyond max_decisions.
    let list = lapi.dir().join("list.csv");
    let lines: Vec<String> = (0..10_000)
        .map(|i| format!("1h,Ip,10.{}.{}.{}", 64 + i / 65_536, (i / 256) % 256, i % 256))
        .collect();
    fs::write(&list, format!("duration,scope,value\n{}\n", lines.join("\n"))).unwrap();
    let f = list.display().to_string();
    lapi.cscli_ok(&ns, &["decisions", "import", "-i", &f]);
    let x = b.sync_ok(&ns);
    let applied = &x["fleet"]["applied"];
    let before = 2; // the /24 and the long one
    let taken = applied["taken"].as_u64().unwrap() as usize;
    assert_eq!(taken, 2000 - before, "max_decisions holds: {}", applied["over_cap"]);
    assert_eq!(applied["over_cap"].as_u64(), Some(10_000 - (2000 - before) as u64));
    assert_eq!(b.login("198.51.100.201", "right").0, PAM_SUCCESS, "clean hosts still log in");
    let set = nft_set(&ns);
    assert!(!set.contains("0.0.0.0/0") && !set.contains("127.0.0.1"), "{set}");
}

/// `openssl` in `dir`: a CA, and a certificate for 127.0.0.1 it signed.
fn ca_and_server_cert(dir: &std::path::Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let (ca, ca_key) = (format!("{name}-ca.pem"), format!("{name}-ca.key"));
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &ca_key,
        "-out",
        &ca,
        "-days",
        "2",
        "-subj",
        &format!("/CN={name} CA"),
    ]);
    let (csr, cert, key) = (format!("{name}.csr"), format!("{name}.pem"), format!("{name}.key"));
    run(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", "/CN=127.0.0.1"]);
    fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-out",
        &cert,
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    (dir.join(ca), dir.join(cert), dir.join(key))
}

/// TLS is verified: with the LAPI's CA the exchange works; with another
/// CA, or the system's, it fails, and only the fleet part does: the sync
/// still pushes the bans it has, logins are answered as before.
#[test]
fn a_lapi_certificate_from_the_wrong_ca_fails_the_fleet_part_only() {
    let mut tools = TOOLS.to_vec();
    tools.push("openssl");
    if !require("a_lapi_certificate_from_the_wrong_ca_fails_the_fleet_part_only", true, &tools) {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = ca_and_server_cert(certs.path(), "lapi");
    let (other_ca, _, _) = ca_and_server_cert(certs.path(), "other");
    let ns = Netns::new();
    let mut lapi = Lapi::with_tls(&ns, PORT, &cert, &key);
    lapi.start(&ns);
    let url = format!("url = \"https://127.0.0.1:{PORT}/\"\n");
    let b = Server::new(&ns, &lapi, "b", "nftables", &format!("{url}ca_cert = \"{}\"\n", ca.display()));
    lapi.cscli_ok(&ns, &["decisions", "add", "--ip", "198.51.100.7", "--duration", "1h"]);
    let x = b.sync_ok(&ns);
    assert_eq!(x["fleet"]["applied"]["taken"], 1, "{x:#}");
    assert_eq!(b.login("198.51.100.7", "right"), (PAM_PERM_DENIED, false));

    for (what, lines) in [
        ("another CA", format!("{url}ca_cert = \"{}\"\n", other_ca.display())),
        ("the system's CAs", url.clone()),
    ] {
        let config = b.config();
        let text = fs::read_to_string(&config).unwrap();
        let start = text.find("[fleet.crowdsec]\n").unwrap() + "[fleet.crowdsec]\n".len();
        let rest: String = text[start..]
            .lines()
            .filter(|l| !l.starts_with("url =") && !l.starts_with("ca_cert ="))
            .map(|l| format!("{l}\n"))
            .collect();
        fs::write(&config, format!("{}{lines}{rest}", &text[..start])).unwrap();
        lapi.cscli_ok(&ns, &["decisions", "add", "--ip", "198.51.100.8", "--duration", "1h"]);
        let (code, x, out) = b.sync(&ns);
        assert_eq!(code, Some(3), "{what}: {x:#}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.to_lowercase().contains("certificate") || err.contains("UnknownIssuer"), "{what}: {err}");
        assert!(x["backends"][0]["ok"].as_bool() == Some(true), "{what}: the firewall part ran: {x:#}");
        assert!(nft_set(&ns).contains("198.51.100.7"), "{what}: the ban taken before stays in the firewall");
        assert_eq!(b.login("198.51.100.7", "right").0, PAM_PERM_DENIED, "{what}");
        assert_eq!(b.login("198.51.100.8", "right").0, PAM_SUCCESS, "{what}: nothing new was taken");
        lapi.cscli_ok(&ns, &["decisions", "delete", "--ip", "198.51.100.8"]);
    }
}

/// A host is refused while any decision covering it is in force: a longer
/// decision for a host already held is enforced for its whole length, and
/// a full pull after the LAPI's database was reset (ids from 1 again)
/// reconciles everything held with what is in force now.
#[test]
fn every_decision_in_force_is_enforced_whatever_became_of_the_ids() {
    if !require("every_decision_in_force_is_enforced_whatever_became_of_the_ids", true, TOOLS) {
        return;
    }
    let ns = Netns::new();
    let mut lapi = lapi_up(&ns);
    let b = Server::new(&ns, &lapi, "b", "nftables", "resync = \"2s\"\n");
    b.sync_ok(&ns);
    let add = |lapi: &Lapi, ip: &str, d: &str| {
        lapi.cscli_ok(&ns, &["decisions", "add", "--ip", ip, "--duration", d])
    };
    add(&lapi, "198.51.100.7", "3s");
    let x = b.sync_ok(&ns);
    assert_eq!(x["fleet"]["applied"]["taken"], 1, "{x:#}");
    add(&lapi, "198.51.100.7", "8760h");
    let x = b.sync_ok(&ns);
    assert_eq!(
        (x["fleet"]["applied"]["taken"].as_u64(), x["fleet"]["applied"]["longer"].as_u64()),
        (Some(1), Some(1)),
        "{x:#}"
    );
    std::thread::sleep(std::time::Duration::from_secs(4));
    b.sync_ok(&ns);
    assert_eq!(
        b.login("198.51.100.7", "right"),
        (PAM_PERM_DENIED, false),
        "the 8760h decision holds after the 3 s one ended"
    );
    assert!(nft_set(&ns).contains("198.51.100.7"), "{}", nft_set(&ns));

    // The LAPI's database is reset: a new one, the same machine and key.
    add(&lapi, "198.51.100.8", "8760h");
    b.sync_ok(&ns);
    assert!(b.banned("198.51.100.8"));
    lapi.stop();
    let mut fresh = Lapi::new(&ns, PORT, "");
    fresh.start(&ns);
    fresh.machine(&ns, "banguard-b", b.dir.path());
    fresh.bouncer(&ns, "banguard-b", b.dir.path());
    let new: Vec<String> = (1..=6).map(|i| format!("203.0.113.{i}")).collect();
    for ip in &new {
        add(&fresh, ip, "1h");
    }
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let x = b.sync_ok(&ns);
    assert_eq!(x["fleet"]["startup"], true, "{x:#}");
    assert_eq!(x["fleet"]["applied"]["taken"], 6, "none is skipped as already held: {x:#}");
    assert_eq!(x["fleet"]["applied"]["lifted"], 2, "the bans the new LAPI does not have are lifted: {x:#}");
    for ip in &new {
        assert!(b.banned(ip), "{ip}");
    }
    assert_eq!(b.login("198.51.100.7", "right").0, PAM_SUCCESS);
    assert_eq!(b.login("198.51.100.8", "right").0, PAM_SUCCESS);
    drop(lapi);
}

/// The account side across the fleet: an account locked on A (a spray)
/// is locked for unfamiliar sources on B after both sync, as a decision
/// of scope Username; B's familiar networks for it are unaffected; an
/// unlock on A withdraws it, and B lifts it.
#[test]
fn an_account_lock_on_one_server_refuses_unfamiliar_sources_on_the_other() {
    if !require("an_account_lock_on_one_server_refuses_unfamiliar_sources_on_the_other", true, TOOLS) {
        return;
    }
    let ns = Netns::new();
    let lapi = lapi_up(&ns);
    let accounts = "[accounts]\nlearning = 0\nbudget = 2\nlock = \"1h\"\n";
    let a = Server::new(&ns, &lapi, "a", "hosts.deny", accounts);
    let b = Server::new(&ns, &lapi, "b", "nftables", accounts);
    // alice logs in on B from home: 198.51.100.0/24 is familiar there.
    assert_eq!(b.login("198.51.100.7", "right").0, PAM_SUCCESS);
    b.sync_ok(&ns);
    // A spray on A, one password per address: two checked, then locked.
    for (i, host) in ["203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"].iter().enumerate() {
        let (rc, looked_at) = a.login(host, "wrong");
        if i < 2 {
            assert_eq!((rc, looked_at), (PAM_AUTH_ERR, true), "{host}");
        } else {
            assert_eq!((rc, looked_at), (PAM_PERM_DENIED, false), "{host}");
        }
    }
    let x = a.sync_ok(&ns);
    assert_eq!(x["fleet"]["exported"], 1, "{x:#}");
    let posted = lapi.decisions(&ns);
    assert!(posted.contains(&("banguard".into(), "Username".into(), "alice".into())), "{posted:?}");
    assert_eq!(x["fleet"]["applied"]["ours"], 1, "A's own lock comes back and is skipped: {x:#}");

    let x = b.sync_ok(&ns);
    assert_eq!(x["fleet"]["applied"]["accounts_locked"], 1, "{x:#}");
    assert_eq!(
        b.login("192.0.2.77", "right"),
        (PAM_PERM_DENIED, false),
        "unfamiliar: refused unchecked on B"
    );
    assert_eq!(b.login("198.51.100.9", "right").0, PAM_SUCCESS, "familiar on B: unaffected");
    let listed: Value = serde_json::from_slice(&b.ctl(&["--json", "accounts"]).stdout).unwrap();
    assert_eq!(listed["locks"][0]["origin"], "crowdsec", "{listed:#}");
    // No host is banned anywhere for it.
    assert!(a.bans().is_empty() && b.bans().is_empty());

    // Unlocked on A: withdrawn from the fleet, lifted on B.
    let out = a.ctl(&["accounts", "unlock", "alice"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let x = a.sync_ok(&ns);
    assert_eq!(x["fleet"]["withdrawn"], 1, "{x:#}");
    assert!(!lapi.decisions(&ns).iter().any(|d| d.2 == "alice"), "{:?}", lapi.decisions(&ns));
    let x = b.sync_ok(&ns);
    assert_eq!(x["fleet"]["applied"]["accounts_lifted"], 1, "{x:#}");
    assert_eq!(b.login("192.0.2.78", "right").0, PAM_SUCCESS, "lifted on B");
}
