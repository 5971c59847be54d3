//! A private CrowdSec Local API for the fleet tests: Debian's `crowdsec`
//! started LAPI-only (`-no-cs`) with its own config dir, SQLite database
//! and a loopback port, no hub, no agent, no central API; machines and
//! bouncers made with the real `cscli`. Runs inside the test's network
//! namespace (the banguard syncs that talk to it run there too).

use crate::{Netns, wait_for};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::Duration;

pub struct Lapi {
    dir: tempfile::TempDir,
    pub port: u16,
    tls: bool,
    child: Option<Child>,
}

impl Lapi {
    /// A LAPI listening on 127.0.0.1:`port` in `ns` (not started yet: see
    /// [`Lapi::start`]), with `extra` appended to `api.server` (TLS).
    pub fn new(ns: &Netns, port: u16, server_extra: &str) -> Lapi {
        Lapi::make(ns, port, server_extra, "")
    }

    /// A LAPI that speaks TLS with `cert` and `key` (PEM); its own cscli
    /// talks to it without checking the certificate.
    pub fn with_tls(ns: &Netns, port: u16, cert: &Path, key: &Path) -> Lapi {
        let server =
            format!("    tls:\n      cert_file: {}\n      key_file: {}\n", cert.display(), key.display());
        let lapi = Lapi::make(ns, port, &server, "    insecure_skip_verify: true\n");
        let creds = lapi.dir().join("cfg/local_api_credentials.yaml");
        let text = fs::read_to_string(&creds).unwrap().replace("url: http://", "url: https://");
        fs::write(&creds, text).unwrap();
        lapi
    }

    fn make(ns: &Netns, port: u16, server_extra: &str, client_extra: &str) -> Lapi {
        let dir = tempfile::Builder::new().prefix("bg-lapi.").tempdir().expect("tempdir");
        let d = dir.path();
        for sub in ["cfg", "data", "hub", "log"] {
            fs::create_dir(d.join(sub)).unwrap();
        }
        fs::copy("/etc/crowdsec/profiles.yaml", d.join("cfg/profiles.yaml"))
            .expect("crowdsec's profiles.yaml");
        fs::write(d.join("cfg/simulation.yaml"), "simulation: false\n").unwrap();
        fs::write(d.join("hub/.index.json"), "{}\n").unwrap();
        fs::write(d.join("cfg/local_api_credentials.yaml"), "").unwrap();
        let config = format!(
            "common:\n  daemonize: false\n  log_media: file\n  log_level: info\n  log_dir: {d}/log\n\
             config_paths:\n  config_dir: {d}/cfg\n  data_dir: {d}/data\n  simulation_path: {d}/cfg/simulation.yaml\n\
             \x20 hub_dir: {d}/hub\n  index_path: {d}/hub/.index.json\n\
             db_config:\n  type: sqlite\n  db_path: {d}/data/crowdsec.db\n  use_wal: true\n\
             api:\n  client:\n    credentials_path: {d}/cfg/local_api_credentials.yaml\n{client_extra}\
             \x20 server:\n    listen_uri: 127.0.0.1:{port}\n    profiles_path: {d}/cfg/profiles.yaml\n{server_extra}\
             prometheus:\n  enabled: false\n",
            d = d.display()
        );
        fs::write(d.join("config.yaml"), config).unwrap();
        let lapi = Lapi { dir, port, tls: !server_extra.is_empty(), child: None };
        // cscli's own machine, for `cscli decisions add/delete`.
        let creds = lapi.dir().join("cfg/local_api_credentials.yaml").display().to_string();
        lapi.cscli_ok(
            ns,
            &["machines", "add", "cscli-admin", "--password", "admin-password", "-f", &creds, "--force"],
        );
        lapi
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    /// Starts the LAPI in `ns` and waits for `/health`.
    pub fn start(&mut self, ns: &Netns) {
        let config = self.config();
        let mut cmd = ns.command(["crowdsec".as_ref(), "-c".as_ref(), config.as_os_str(), "-no-cs".as_ref()]);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        self.child = Some(cmd.spawn().expect("start crowdsec"));
        let health = format!("{}://127.0.0.1:{}/health", if self.tls { "https" } else { "http" }, self.port);
        let up = wait_for(Duration::from_secs(30), || {
            let out = ns.run(["curl", "-sk", "--max-time", "1", &health]);
            String::from_utf8_lossy(&out.stdout).contains("up").then_some(())
        })
        .is_some();
        assert!(up, "the LAPI did not come up; its log:\n{}", self.log());
    }

    /// Stops it (a LAPI that is down). nsenter forks into the PID
    /// namespace: the LAPI itself is found by its unique config path.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let config = self.config().display().to_string();
            let _ = std::process::Command::new("pkill").args(["-KILL", "-f", &config]).status();
            let _ = c.kill();
            let _ = c.wait();
            let _ = wait_for(Duration::from_secs(5), || {
                let alive = std::process::Command::new("pgrep").args(["-f", &config]).status();
                alive.is_ok_and(|s| !s.success()).then_some(())
            });
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("log/crowdsec_api.log"))
            .or_else(|_| fs::read_to_string(self.dir.path().join("log/crowdsec.log")))
            .unwrap_or_default()
    }

    /// `cscli -c CONFIG ARGS` in `ns` (its API calls reach the LAPI there).
    pub fn cscli(&self, ns: &Netns, args: &[&str]) -> Output {
        let config = self.config().display().to_string();
        let mut argv = vec!["cscli", "-c", config.as_str()];
        argv.extend_from_slice(args);
        ns.run(argv)
    }

    pub fn cscli_ok(&self, ns: &Netns, args: &[&str]) -> String {
        let out = self.cscli(ns, args);
        assert!(
            out.status.success(),
            "cscli {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A machine's credentials file (`cscli machines add -f`), 0600, in `dir`.
    pub fn machine(&self, ns: &Netns, name: &str, dir: &Path) -> PathBuf {
        let file = dir.join(format!("{name}.yaml"));
        let f = file.display().to_string();
        self.cscli_ok(
            ns,
            &["machines", "add", name, "--password", &format!("{name}-password"), "-f", &f, "--force"],
        );
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        file
    }

    /// A bouncer key in a file of `dir` (0600).
    pub fn bouncer(&self, ns: &Netns, name: &str, dir: &Path) -> PathBuf {
        let key = format!("{name}-key-0123456789");
        self.cscli_ok(ns, &["bouncers", "add", name, "-k", &key]);
        let file = dir.join(format!("{name}.key"));
        fs::write(&file, format!("{key}\n")).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        file
    }

    /// Every decision in force, as `cscli decisions list -a -o json` gives
    /// them: (origin, scope, value).
    pub fn decisions(&self, ns: &Netns) -> Vec<(String, String, String)> {
        let out = self.cscli_ok(ns, &["decisions", "list", "-a", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or(serde_json::Value::Null);
        let mut found = Vec::new();
        for alert in v.as_array().into_iter().flatten() {
            for d in alert["decisions"].as_array().into_iter().flatten() {
                let s = |k: &str| d[k].as_str().unwrap_or("").to_string();
                found.push((s("origin"), s("scope"), s("value")));
            }
        }
        found
    }

    /// Which machine posted each alert: `cscli alerts list -o json`.
    pub fn alert_machines(&self, ns: &Netns) -> Vec<String> {
        let out = self.cscli_ok(ns, &["alerts", "list", "-a", "-o", "json", "-l", "0"]);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or(serde_json::Value::Null);
        v.as_array()
            .into_iter()
            .flatten()
            .map(|a| a["machine_id"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

impl Drop for Lapi {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A scripted LAPI (`bg-lapi`, this package's binary) in `ns`: what only a
/// hostile or broken LAPI does, and streams too big for a real one.
pub struct ScriptedLapi {
    dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl ScriptedLapi {
    /// Starts `exe` (`env!("CARGO_BIN_EXE_bg-lapi")`) on 127.0.0.1:`port`
    /// in `ns`, answering by `rules` (a JSON array; see bg-lapi).
    pub fn start(ns: &Netns, exe: &Path, port: u16, rules: &serde_json::Value) -> ScriptedLapi {
        let dir = tempfile::Builder::new().prefix("bg-scripted-lapi.").tempdir().expect("tempdir");
        let mut lapi = ScriptedLapi { dir, port, child: None };
        lapi.script(rules);
        let addr = format!("127.0.0.1:{port}");
        let (script, log) = (lapi.dir.path().join("script.json"), lapi.dir.path().join("requests.log"));
        let mut cmd = ns.command([exe.as_os_str(), addr.as_ref(), script.as_os_str(), log.as_os_str()]);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        lapi.child = Some(cmd.spawn().expect("start bg-lapi"));
        let url = format!("http://{addr}/health");
        let up = wait_for(Duration::from_secs(10), || {
            let out = ns.run(["curl", "-s", "-o", "/dev/null", "--max-time", "1", &url]);
            out.status.success().then_some(())
        })
        .is_some();
        assert!(up, "bg-lapi did not come up");
        let _ = fs::remove_file(&log);
        lapi
    }

    /// Replaces the rules (read again at the next request).
    pub fn script(&self, rules: &serde_json::Value) {
        let tmp = self.dir.path().join("script.json.new");
        fs::write(&tmp, rules.to_string()).expect("write script");
        fs::rename(&tmp, self.dir.path().join("script.json")).expect("rename script");
    }

    /// The requests so far: "METHOD TARGET key=.. auth=..".
    pub fn requests(&self) -> Vec<String> {
        fs::read_to_string(self.dir.path().join("requests.log"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for ScriptedLapi {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let script = self.dir.path().join("script.json").display().to_string();
            let _ = std::process::Command::new("pkill").args(["-KILL", "-f", &script]).status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
