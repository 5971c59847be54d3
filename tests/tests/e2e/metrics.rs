//! The metrics as an admin reads them: an attack through pamtester (real
//! libpam, /etc/pam.d a test directory bound in a namespace), the sync in
//! that namespace pushing to nftables and exchanging with a real CrowdSec
//! LAPI, writing the textfile; Debian's prometheus-node-exporter reading it
//! and Debian's Prometheus scraping node_exporter, both on loopback in the
//! namespace. Values are read back through Prometheus' HTTP API, every
//! panel of the Grafana dashboard (conf/grafana/banguard.json) is queried,
//! and `promtool check metrics` lints the text.

use banguard_e2e::crowdsec::Lapi;
use banguard_e2e::fixture::ConfigFile;
use banguard_e2e::pamtest::*;
use banguard_e2e::{Netns, artifacts, require, wait_for, workspace_root};
use serde_json::Value;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

const TOOLS: &[&str] = &[
    "pamtester",
    "prometheus",
    "promtool",
    "prometheus-node-exporter",
    "crowdsec",
    "cscli",
    "curl",
    "nft",
    "nsenter",
    "unshare",
    "mknod",
];
const LAPI_PORT: u16 = 8080;
const NODE_PORT: u16 = 9100;
const PROM_PORT: u16 = 9090;

/// One instant query through Prometheus' HTTP API (curl in `ns`): the
/// result vector.
fn query(ns: &Netns, expr: &str) -> Vec<Value> {
    let url = format!("http://127.0.0.1:{PROM_PORT}/api/v1/query");
    let out = ns.run(["curl", "-s", "--max-time", "5", &url, "--data-urlencode", &format!("query={expr}")]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert!(
        v["status"] == "success" || v.is_null(),
        "query {expr}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// The value of the one series `expr` selects, once Prometheus has it.
fn value_of(ns: &Netns, expr: &str) -> Option<f64> {
    let r = query(ns, expr);
    r.first().and_then(|s| s["value"][1].as_str()).and_then(|v| v.parse().ok())
}

/// Waits until `expr` selects something.
fn wait_some(ns: &Netns, expr: &str) {
    let seen = wait_for(Duration::from_secs(30), || (!query(ns, expr).is_empty()).then_some(()));
    assert!(seen.is_some(), "{expr}: Prometheus has nothing");
}

/// Waits until `expr` reads `want` in Prometheus (scrapes every second).
fn wait_value(ns: &Netns, expr: &str, want: f64) {
    let seen = wait_for(Duration::from_secs(30), || (value_of(ns, expr) == Some(want)).then_some(()));
    assert!(seen.is_some(), "{expr}: wanted {want}, Prometheus has {:?}", value_of(ns, expr));
}

#[test]
fn prometheus_reads_an_attack_and_every_dashboard_panel_has_data() {
    if !require("prometheus_reads_an_attack_and_every_dashboard_panel_has_data", true, TOOLS) {
        return;
    }
    let dir = tempfile::Builder::new().prefix("bg-metrics.").tempdir().unwrap();
    let root = dir.path();
    let d = root.display().to_string();
    for sub in ["pam.d", "textfile", "tsdb"] {
        fs::create_dir(root.join(sub)).unwrap();
    }
    // A capture sendmail, a password checker, the log socket.
    let sendmail = root.join("sendmail");
    fs::write(&sendmail, format!("#!/bin/sh\ncat >> '{d}/mail.out'\n")).unwrap();
    fs::set_permissions(&sendmail, fs::Permissions::from_mode(0o755)).unwrap();
    write_password_checker(&root.join("checkpw"), &root.join("evaluated.log"), "right");
    // Syslog lines (the module's, the sync's), read all the time: a full
    // datagram queue would block their senders.
    let log = banguard_e2e::fixture::Syslog::bind(&root.join("log.sock"));
    let logged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = logged.clone();
    std::thread::spawn(move || {
        loop {
            let lines = log.all_lines();
            sink.lock().unwrap().extend(lines);
        }
    });
    let mut ns = pam_namespace(root, &root.join("log.sock"));

    let mut lapi = Lapi::new(&ns, LAPI_PORT, "");
    lapi.start(&ns);
    let machine = lapi.machine(&ns, "banguard-metrics", root);
    let bouncer = lapi.bouncer(&ns, "banguard-metrics", root);
    // node_exporter's textfile collector and a Prometheus scraping it.
    let mut node = ns.command([
        "prometheus-node-exporter",
        &format!("--web.listen-address=127.0.0.1:{NODE_PORT}"),
        "--collector.disable-defaults",
        "--collector.textfile",
        &format!("--collector.textfile.directory={d}/textfile"),
    ]);
    node.stdout(Stdio::null()).stderr(Stdio::null());
    ns.spawn(node);
    fs::write(
        root.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{NODE_PORT}']\n"
        ),
    )
    .unwrap();
    let mut prom = ns.command([
        "prometheus",
        &format!("--config.file={d}/prometheus.yml"),
        &format!("--storage.tsdb.path={d}/tsdb"),
        &format!("--web.listen-address=127.0.0.1:{PROM_PORT}"),
    ]);
    prom.stdout(Stdio::null()).stderr(Stdio::null());
    ns.spawn(prom);

    let config = root.join("banguard.toml");
    ConfigFile::under(root)
        .with(&format!(
            "maxretry = 2\n[sync]\nbackends = [\"nftables\"]\nlock_file = \"{d}/run/sync.lock\"\n\
             [mail]\nenabled = true\nsendmail = \"{}\"\n\
             [metrics]\nenabled = true\ntextfile = \"{d}/textfile/banguard.prom\"\n\
             [fleet]\nprovider = \"crowdsec\"\n\
             [fleet.crowdsec]\nurl = \"http://127.0.0.1:{LAPI_PORT}/\"\nmachine_credentials = \"{}\"\n\
             bouncer_key_file = \"{}\"\ntimeout = \"5s\"\n",
            sendmail.display(),
            machine.display(),
            bouncer.display()
        ))
        .write(&config);
    let module = format!("auth requisite {} config={}", artifacts().pam_module.display(), config.display());
    let mut sshd = vec![module.clone()];
    sshd.extend(password_lines(&root.join("checkpw")));
    sshd.push("account required pam_permit.so".into());
    Confdir::new(&root.join("pam.d")).service("sshd", &sshd);
    // A line with a typo: the module's trouble, counted for the metrics.
    let mut typo = vec![format!("{module} degub")];
    typo.extend(password_lines(&root.join("checkpw")));
    Confdir::new(&root.join("pam.d")).service("sshd-typo", &typo);
    let auth = |service: &str, rhost: &str, pw: &str| {
        let rhost = format!("rhost={rhost}");
        pamtester(&ns, &[], &["-I", &rhost, service, "root", "authenticate", "setcred"], pw).0
    };
    let sync = || {
        let ctl = artifacts().banguardctl.display().to_string();
        let cfg = config.display().to_string();
        let out = ns.run([ctl.as_str(), "--config", &cfg, "sync"]);
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "sync: {text}");
        assert!(!text.contains("warning: metrics"), "{text}");
    };

    // The attack: two wrong passwords, then refusals until the kernel has
    // the host (escalate_after 2); a right password given back; the
    // fleet's decision for another host.
    let attacker = "192.0.2.7";
    assert_eq!(auth("sshd", attacker, "wrong"), 1);
    assert_eq!(auth("sshd", attacker, "wrong"), 1);
    for _ in 0..3 {
        assert_eq!(auth("sshd", attacker, "right"), 1, "refused while banned");
    }
    assert_eq!(auth("sshd", "198.51.100.8", "right"), 0);
    assert_eq!(auth("sshd-typo", "198.51.100.9", "right"), 0, "failmode=open");
    lapi.cscli_ok(&ns, &["decisions", "add", "--ip", "203.0.113.50", "-d", "1h"]);
    sync();
    let text = fs::read_to_string(root.join("textfile/banguard.prom")).unwrap();
    let meta = fs::metadata(root.join("textfile/banguard.prom")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o644);
    assert!(text.contains("banguard_attempts_total{service=\"sshd\",outcome=\"checked\"} 3\n"), "{text}");
    assert!(!text.contains(attacker) && !text.contains("root"), "no address or user as a label: {text}");

    // promtool lints the text as Prometheus' own tooling would.
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    lint.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = lint.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    wait_value(&ns, "banguard_attempts_total{service=\"sshd\",outcome=\"checked\"}", 3.0);
    wait_value(&ns, "banguard_attempts_total{service=\"sshd\",outcome=\"given_back\"}", 1.0);
    wait_value(&ns, "banguard_attempts_total{service=\"sshd\",outcome=\"refused_banned\"}", 3.0);
    wait_value(&ns, "banguard_bans_total{origin=\"banguard\",reason=\"maxretry\"}", 1.0);
    wait_value(&ns, "banguard_bans_active{origin=\"crowdsec\",kernel=\"true\"}", 1.0);
    wait_value(&ns, "banguard_bans_active{origin=\"banguard\",kernel=\"true\"}", 1.0);
    wait_value(&ns, "banguard_escalations_total", 1.0);
    wait_value(&ns, "banguard_ban_to_kernel_seconds_count", 2.0);
    wait_some(&ns, "banguard_module_errors_total{kind=\"options\"} > 0");
    wait_value(&ns, "banguard_fleet_up", 1.0);
    wait_value(&ns, "banguard_fleet_decisions_total{outcome=\"taken\"}", 1.0);
    wait_value(&ns, "banguard_mail_total{result=\"sent\"}", 1.0);
    wait_value(&ns, "banguard_firewall_entries{backend=\"nftables\"}", 2.0);
    wait_value(&ns, "banguard_sync_runs_total{result=\"ok\"}", 1.0);

    // Another attacker once Prometheus has the first figures: counters
    // grow, never start over, and the range queries see the change.
    let second = "192.0.2.8";
    assert_eq!(auth("sshd", second, "wrong"), 1);
    assert_eq!(auth("sshd", second, "wrong"), 1);
    for _ in 0..3 {
        assert_eq!(auth("sshd", second, "right"), 1, "refused while banned");
    }
    sync();
    wait_value(&ns, "banguard_attempts_total{service=\"sshd\",outcome=\"checked\"}", 5.0);
    wait_value(&ns, "banguard_attempts_total{service=\"sshd\",outcome=\"refused_banned\"}", 6.0);
    wait_value(&ns, "banguard_bans_total{origin=\"banguard\",reason=\"maxretry\"}", 2.0);
    wait_value(&ns, "banguard_ban_to_kernel_seconds_count", 3.0);
    wait_value(&ns, "banguard_sync_runs_total{result=\"ok\"}", 2.0);
    std::thread::sleep(Duration::from_secs(2));

    // Every panel's query has data.
    let dashboard: Value = serde_json::from_str(
        &fs::read_to_string(workspace_root().join("conf/grafana/banguard.json")).unwrap(),
    )
    .unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 10, "{} panels", panels.len());
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let expr =
                expr.replace("$__rate_interval", "2m").replace("$__range", "1h").replace("$__interval", "5s");
            let result = query(&ns, &expr);
            let numbers: Vec<f64> = result
                .iter()
                .filter_map(|s| s["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()))
                .filter(|v| v.is_finite())
                .collect();
            assert!(!numbers.is_empty(), "panel {:?}: {expr} returned {result:?}", panel["title"]);
        }
    }

    // The last day in the terminal: this hour's column has the attack.
    let status = Command::new(&artifacts().banguardctl)
        .args(["--config", &config.display().to_string(), "status", "sshd"])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("`- Last 24 hours"), "{status}");
    // (An hour may turn during the test: the totals, not the columns.)
    assert!(
        status.contains("|- Attempts:          ") && status.contains("  11 in all, at most "),
        "{status}"
    );
    assert!(status.contains("`- Refused:           ") && status.contains("  6 in all, at most "), "{status}");
    let logged = logged.lock().unwrap();
    assert!(
        logged.iter().any(|l| l.contains("pam_banguard(sshd-typo:auth)") && l.contains("degub")),
        "{logged:?}"
    );
}
