//! The fleet against a LAPI that misbehaves, as only a compromised or
//! broken one does: a scripted LAPI (`bg-lapi`) in a throwaway network
//! namespace, on loopback, and one banguard server (hosts.deny in its
//! directory) whose syncs run there. What a real LAPI can produce is
//! tested against the real one in `fleet.rs`.

use banguard_e2e::crowdsec::ScriptedLapi;
use banguard_e2e::fixture::{ConfigFile, private_dev_log};
use banguard_e2e::{Netns, artifacts, require};
use serde_json::{Value, json};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

const PORT: u16 = 8090;
const TOOLS: &[&str] = &["curl", "nsenter", "unshare", "pkill"];

fn lapi_exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_bg-lapi"))
}

/// A LAPI that logs in, knows no alerts of ours, takes posts, and streams
/// `stream` (a JSON text) as the decision stream.
fn rules(stream: &str) -> Value {
    json!([
        {"method": "POST", "path": "/v1/watchers/login", "body": r#"{"code":200,"expire":"2099-01-01T00:00:00Z","token":"t0k3n"}"#},
        {"method": "GET", "path": "/v1/alerts", "body": "[]"},
        {"method": "POST", "path": "/v1/alerts", "status": 201, "body": r#"["1"]"#},
        {"method": "GET", "path": "/v1/decisions/stream", "body": stream},
        {"path": "/health", "body": "{}"},
    ])
}

struct Server {
    dir: tempfile::TempDir,
}

impl Server {
    fn new(fleet_extra: &str, extra: &str) -> Server {
        let dir = tempfile::Builder::new().prefix("bg-fleet-hostile.").tempdir().unwrap();
        let d = dir.path().display().to_string();
        let machine = dir.path().join("machine.yaml");
        fs::write(&machine, "url: http://127.0.0.1/\nlogin: m\npassword: p\n").unwrap();
        let key = dir.path().join("bouncer.key");
        fs::write(&key, "k3y\n").unwrap();
        for f in [&machine, &key] {
            fs::set_permissions(f, fs::Permissions::from_mode(0o600)).unwrap();
        }
        ConfigFile::under(dir.path())
            .with(&format!(
                "maxretry = 2\nignoreip = [\"127.0.0.0/8\", \"::1\", \"192.0.2.0/24\"]\n{extra}\n\
                 [recidive]\nenabled = false\n\
                 [sync]\nbackends = [\"hosts.deny\"]\nhosts_deny = \"{d}/hosts.deny\"\nlock_file = \"{d}/run/sync.lock\"\n\
                 [fleet]\nprovider = \"crowdsec\"\n\
                 [fleet.crowdsec]\nurl = \"http://127.0.0.1:{PORT}/\"\nmachine_credentials = \"{}\"\n\
                 bouncer_key_file = \"{}\"\n{}{fleet_extra}",
                machine.display(),
                key.display(),
                if fleet_extra.contains("timeout") { "" } else { "timeout = \"5s\"\n" },
            ))
            .write(&dir.path().join("banguard.toml"));
        Server { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("banguard.toml")
    }

    fn argv(&self, args: &[&str]) -> Vec<String> {
        let mut argv = vec![
            artifacts().banguardctl.display().to_string(),
            "--config".into(),
            self.config().display().to_string(),
        ];
        argv.extend(args.iter().map(|a| a.to_string()));
        argv
    }

    /// `banguardctl ARGS` in the namespace.
    fn ctl(&self, ns: &Netns, args: &[&str]) -> Output {
        ns.run(self.argv(args))
    }

    fn sync_json(&self, ns: &Netns) -> (Option<i32>, Value, Output) {
        let out = self.ctl(ns, &["--json", "sync"]);
        let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.code(), v, out)
    }

    fn hosts_deny(&self) -> String {
        fs::read_to_string(self.dir.path().join("hosts.deny")).unwrap_or_default()
    }

    fn bans(&self, ns: &Netns) -> Vec<String> {
        let out = self.ctl(ns, &["--json", "list"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        v["bans"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| b["host"].as_str().map(String::from))
            .collect()
    }
}

fn decision(id: Value, value: &str, duration: &str) -> Value {
    json!({"id": id, "duration": duration, "origin": "crowdsec", "scenario": "crowdsecurity/ssh-bf",
           "scope": "Ip", "type": "ban", "value": value})
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// One malformed decision is one decision skipped; a thousand refused
/// ones are one summed-up log line; the cap is said in the text output;
/// a `200 {}`, a redirect and an error body full of escapes change
/// nothing held, and reach the operator cleaned.
#[test]
fn a_hostile_lapi_is_read_decision_by_decision_and_changes_nothing_it_should_not() {
    if !require("a_hostile_lapi_is_read_decision_by_decision_and_changes_nothing_it_should_not", true, TOOLS)
    {
        return;
    }
    let ns = Netns::new();
    let tmp = tempfile::tempdir().unwrap();
    let log = private_dev_log(&ns, tmp.path());
    let mut new = vec![
        decision(json!("7"), "198.51.100.7", "1h"),
        json!({"id": 8, "value": ["x"], "scope": {"a": 1}, "type": "ban", "duration": "1h"}),
        decision(json!(1.5), "198.51.100.8", "1h"),
        decision(json!(7), "198.51.100.9", "1h"),
        json!({"id": 9, "scenario": null, "origin": null, "scope": "Ip", "type": "ban", "value": "198.51.100.10", "duration": "1h"}),
        json!("not a decision"),
    ];
    // A thousand that may never be banned (loopback), each refused.
    new.extend(
        (0..1000).map(|i| decision(json!(100 + i), &format!("127.0.{}.{}", i / 250, i % 250 + 1), "1h")),
    );
    let stream = json!({"deleted": null, "new": new}).to_string();
    let lapi = ScriptedLapi::start(&ns, lapi_exe(), PORT, &rules(&stream));
    let s = Server::new("resync = \"1s\"\nexport = false\n", "");
    let (code, x, out) = s.sync_json(&ns);
    assert_eq!(code, Some(0), "{x:#} {}", stderr(&out));
    let fleet = &x["fleet"];
    assert_eq!(fleet["applied"]["taken"], 4, "four good decisions, whatever their ids: {fleet:#}");
    assert_eq!(
        fleet["malformed"].as_array().map(|m| m.iter().map(|r| r["count"].as_u64().unwrap()).sum::<u64>()),
        Some(2),
        "{fleet:#}"
    );
    assert_eq!(fleet["applied"]["refused"][0]["count"], 1000, "{fleet:#}");
    for host in ["198.51.100.7", "198.51.100.8", "198.51.100.9", "198.51.100.10"] {
        assert!(s.hosts_deny().contains(host), "{host}:\n{}", s.hosts_deny());
    }
    let lines = log.all_lines();
    let fleet_lines: Vec<&String> = lines.iter().filter(|l| l.contains("fleet:")).collect();
    assert!(fleet_lines.len() < 20, "a thousand refusals are one line, not a thousand: {fleet_lines:#?}");
    assert!(fleet_lines.iter().any(|l| l.contains("refused to take 1000")), "{fleet_lines:#?}");

    // The cap is said in the text output too.
    let tight = Server::new("resync = \"1s\"\nexport = false\nmax_decisions = 2\n", "");
    let out = tight.ctl(&ns, &["sync"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("left out") && text.contains("max_decisions = 2"), "{text}");

    // A `200 {}` (a proxy's answer) is an error, not "nothing in force".
    std::thread::sleep(Duration::from_millis(1100));
    lapi.script(&rules("{}"));
    let (code, _, out) = s.sync_json(&ns);
    assert_eq!(code, Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("not a decision stream"), "{}", stderr(&out));
    assert_eq!(s.bans(&ns).len(), 4, "nothing lifted");

    // A redirect is never followed (to an empty stream that would lift
    // everything, carrying the bouncer key).
    let other = ScriptedLapi::start(&ns, lapi_exe(), PORT + 1, &rules(r#"{"new":[],"deleted":null}"#));
    let mut redirect = rules("");
    redirect[3] = json!({"method": "GET", "path": "/v1/decisions/stream", "status": 302,
        "headers": [["Location", format!("http://127.0.0.1:{}/v1/decisions/stream?startup=true", PORT + 1)]]});
    lapi.script(&redirect);
    let (code, _, out) = s.sync_json(&ns);
    assert_eq!(code, Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("redirect"), "{}", stderr(&out));
    assert!(other.requests().iter().all(|r| !r.contains("/v1/decisions")), "{:?}", other.requests());
    assert_eq!(s.bans(&ns).len(), 4, "nothing lifted");

    // An error body with escape sequences, line breaks and format
    // characters reaches stderr and the state cleaned, on one line.
    let mut broken = rules("");
    broken[3] = json!({"method": "GET", "path": "/v1/decisions/stream", "status": 500,
        "body": "\u{1b}[2J\u{1b}[31mCLEARED\r\nMar  1 sshd[1]: forged\u{202e}\u{200b}\u{feff}\u{2028}"});
    lapi.script(&broken);
    let (code, _, out) = s.sync_json(&ns);
    assert_eq!(code, Some(3));
    let err = stderr(&out);
    assert!(err.contains("HTTP 500") && err.contains("CLEARED"), "{err}");
    assert!(
        !err.chars().any(|c| c == '\u{1b}' || c == '\r' || banguard::text::is_unsafe(c) && c != '\n'),
        "{err:?}"
    );
    assert!(!err.contains("\nMar"), "no forged line: {err:?}");
    let status: Value = serde_json::from_slice(&s.ctl(&ns, &["--json", "status"]).stdout).unwrap();
    let last = status["fleet"]["last_error"].as_str().unwrap_or("");
    assert!(last.contains("HTTP 500") && !last.chars().any(banguard::text::is_unsafe), "{last:?}");
}

/// `timeout` bounds the whole exchange, not each request: 20 bans to post
/// against a LAPI that takes a second per answer stop at the deadline.
#[test]
fn the_whole_exchange_shares_one_timeout() {
    if !require("the_whole_exchange_shares_one_timeout", true, TOOLS) {
        return;
    }
    let ns = Netns::new();
    let mut slow = rules(r#"{"new":null,"deleted":null}"#);
    for r in slow.as_array_mut().unwrap().iter_mut().take(4) {
        r["delay_ms"] = json!(1000);
    }
    let lapi = ScriptedLapi::start(&ns, lapi_exe(), PORT, &slow);
    let s = Server::new("timeout = \"3s\"\nimport = false\n", "");
    for i in 0..20 {
        let out = s.ctl(&ns, &["ban", &format!("203.0.113.{}", i + 1), "--no-sync"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let (code, x, out) = s.sync_json(&ns);
    assert_eq!(code, Some(3), "{x:#}");
    assert!(stderr(&out).contains("timeout spent") || stderr(&out).contains("timed out"), "{}", stderr(&out));
    let posts = lapi.requests().iter().filter(|r| r.starts_with("POST /v1/alerts")).count();
    assert!(posts <= 2, "{posts} posts after the deadline: {:?}", lapi.requests());
    assert_eq!(x["backends"][0]["ok"], true, "the firewall part ran: {x:#}");
}

/// A post whose answer was lost is found in the fleet by what it is at
/// the next exchange, and not posted again.
#[test]
fn a_post_whose_answer_was_lost_is_not_posted_again() {
    if !require("a_post_whose_answer_was_lost_is_not_posted_again", true, TOOLS) {
        return;
    }
    let ns = Netns::new();
    let mut lost = rules(r#"{"new":null,"deleted":null}"#);
    lost[2]["delay_ms"] = json!(3000);
    let lapi = ScriptedLapi::start(&ns, lapi_exe(), PORT, &lost);
    let s = Server::new("timeout = \"2s\"\nimport = false\n", "");
    let out = s.ctl(&ns, &["ban", "203.0.113.7", "--no-sync"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (code, _, _) = s.sync_json(&ns);
    assert_eq!(code, Some(3), "the answer never came");
    assert_eq!(lapi.requests().iter().filter(|r| r.starts_with("POST /v1/alerts")).count(), 1);
    // The LAPI took it all the same: its alert is ours, by what it is.
    let mut found = rules(r#"{"new":null,"deleted":null}"#);
    found[1]["body"] = json!(json!([{"id": 1, "machine_id": "m", "decisions": [
        {"id": 41, "origin": "banguard", "scope": "Ip", "value": "203.0.113.7", "duration": "59m30s", "type": "ban"}]},
        {"id": 2, "machine_id": "another", "decisions": [
        {"id": 42, "origin": "banguard", "scope": "Ip", "value": "203.0.113.8", "duration": "59m30s", "type": "ban"}]}]).to_string());
    lapi.script(&found);
    // The export's back-off after a failure is 10 s.
    std::thread::sleep(Duration::from_secs(11));
    let (code, x, out) = s.sync_json(&ns);
    assert_eq!(code, Some(0), "{x:#} {}", stderr(&out));
    assert_eq!((x["fleet"]["exported"].as_u64(), x["fleet"]["found"].as_u64()), (Some(1), Some(1)), "{x:#}");
    assert_eq!(
        lapi.requests().iter().filter(|r| r.starts_with("POST /v1/alerts")).count(),
        1,
        "not posted twice"
    );
    // Unbanned here: only this machine's decision for it is deleted.
    assert!(s.ctl(&ns, &["unban", "203.0.113.7", "--no-sync"]).status.success());
    let mut deleting = found.clone();
    deleting
        .as_array_mut()
        .unwrap()
        .insert(0, json!({"method": "DELETE", "path": "/v1/decisions/", "body": r#"{"nbDeleted":"1"}"#}));
    lapi.script(&deleting);
    let (code, x, _) = s.sync_json(&ns);
    assert_eq!(code, Some(0), "{x:#}");
    let deletes: Vec<String> = lapi.requests().into_iter().filter(|r| r.starts_with("DELETE")).collect();
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert!(deletes[0].starts_with("DELETE /v1/decisions/41 "), "{deletes:?}");
}

/// An unban made while another sync holds the lock (here, one waiting on a
/// slow LAPI) is in the firewall before that sync ends.
#[test]
fn an_unban_during_a_running_sync_reaches_the_firewall_before_it_ends() {
    if !require("an_unban_during_a_running_sync_reaches_the_firewall_before_it_ends", true, TOOLS) {
        return;
    }
    let ns = Netns::new();
    let mut slow = rules(r#"{"new":null,"deleted":null}"#);
    slow[3]["delay_ms"] = json!(4000);
    let _lapi = ScriptedLapi::start(&ns, lapi_exe(), PORT, &rules(r#"{"new":null,"deleted":null}"#));
    let s = Server::new("export = false\n", "");
    assert!(s.ctl(&ns, &["ban", "203.0.113.7"]).status.success());
    assert!(s.hosts_deny().contains("203.0.113.7"));
    _lapi.script(&slow);
    let mut child = ns.command(s.argv(&["sync", "--quiet"])).spawn().expect("start the sync");
    std::thread::sleep(Duration::from_millis(1000));
    let out = s.ctl(&ns, &["unban", "203.0.113.7"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status = child.wait().expect("the running sync");
    assert_eq!(status.code(), Some(0));
    assert!(!s.hosts_deny().contains("203.0.113.7"), "still blocked after both runs:\n{}", s.hosts_deny());
}

/// Every file `sync` would refuse is named by `check-config` and `doctor`:
/// a FIFO, a link, a file others may read.
#[test]
fn check_config_and_doctor_name_every_fleet_file_sync_refuses() {
    if !require("check_config_and_doctor_name_every_fleet_file_sync_refuses", true, &["mkfifo"]) {
        return;
    }
    let s = Server::new("", "");
    let d = s.dir.path();
    fs::remove_file(d.join("bouncer.key")).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(d.join("bouncer.key")).status().unwrap().success());
    fs::set_permissions(d.join("machine.yaml"), fs::Permissions::from_mode(0o644)).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(&artifacts().banguardctl)
            .arg("--config")
            .arg(s.config())
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["check-config"]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(text.contains("bouncer_key_file") && text.contains("not a regular file"), "{text}");
    assert!(text.contains("machine_credentials") && text.contains("chmod 600"), "{text}");
    let out = run(&["doctor", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let fleet: Vec<&Value> =
        v["checks"].as_array().unwrap().iter().filter(|c| c["name"] == "fleet").collect();
    assert!(
        fleet
            .iter()
            .any(|c| c["verdict"] == "fail" && c["detail"].as_str().unwrap().contains("not a regular file")),
        "{fleet:?}"
    );
}
