//! Proves the real-sshd / real-vsftpd harness works with the stock Debian
//! stacks (no banguard), and reproduces the PAM-call research written up in
//! doc/sshd-pam-calls.md (tests `research_*`), asserting what was found.

use banguard_e2e::sshd::{
    Action, DEBIAN_SSHD_STACK, GroundTruth, Login, Method, SshdOptions, SshdServer, TEST_PASSWORD, TEST_USER,
    build_pam_probe, with_auth_lines,
};
use banguard_e2e::vsftpd::{DEBIAN_VSFTPD_STACK, FtpOutcome, VsftpdServer};
use banguard_e2e::{Netns, require, wait_for};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

const SSH: &[&str] = &["unshare", "nsenter", "ip", "ss", "timeout", "sshd", "ssh", "ssh-keygen"];
// vsftpd's ground truth is the compiled probe (pam_exec deadlocks vsftpd).
const FTP: &[&str] = &["unshare", "nsenter", "ip", "ss", "timeout", "vsftpd", "curl", "bash", "gcc"];

/// A namespace with the extra attacker addresses on lo.
fn netns(v4: &[&str]) -> Netns {
    let ns = Netns::new();
    for a in v4 {
        ns.add_lo_addr(&format!("{a}/8"));
    }
    ns
}

/// Stock sshd stack with a ground-truth line where banguard would go.
fn sshd_with_truth(ns: &mut Netns, opts: SshdOptions) -> (SshdServer, GroundTruth) {
    let truth = GroundTruth::new();
    let stack = with_auth_lines(DEBIAN_SSHD_STACK, &[&truth.pam_line()]);
    let srv = SshdServer::start(ns, SshdOptions { pam_stack: stack, ..opts });
    (srv, truth)
}

#[test]
fn sshd_right_password_logs_in_wrong_one_is_refused() {
    if !require("sshd_right_password_logs_in_wrong_one_is_refused", true, SSH) {
        return;
    }
    let mut ns = netns(&["127.0.0.2"]);
    ns.add_lo_addr("2001:db8::2/128");
    let (srv, truth) = sshd_with_truth(&mut ns, SshdOptions::default());

    let ok = srv.try_password(&ns, "127.0.0.2", TEST_USER, &[TEST_PASSWORD]);
    assert!(ok.success(), "{ok:#?}\n{}", srv.log());
    let bad = srv.try_password(&ns, "127.0.0.2", TEST_USER, &["wrong"]);
    assert!(bad.denied() && !bad.success(), "{bad:#?}");
    let ok6 = srv.try_kbdint(&ns, "2001:db8::2", TEST_USER, &[TEST_PASSWORD]);
    assert!(ok6.success(), "{ok6:#?}\n{}", srv.log());
    let bad6 = srv.try_kbdint(&ns, "2001:db8::2", TEST_USER, &["wrong"]);
    assert!(bad6.denied(), "{bad6:#?}");
    // sshd hands PAM the numeric source address (UseDNS no).
    assert_eq!(truth.count_from("127.0.0.2"), 2);
    assert_eq!(truth.count_from("2001:db8::2"), 2);
    assert!(srv.log().contains("Failed password for bgtest from 127.0.0.2"));
}

#[test]
fn sshd_ground_truth_counts_every_password_of_one_connection() {
    if !require("sshd_ground_truth_counts_every_password_of_one_connection", true, SSH) {
        return;
    }
    let mut ns = netns(&["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]);
    let (srv, truth) = sshd_with_truth(&mut ns, SshdOptions::default());
    let four_bad = ["bad1", "bad2", "bad3", "bad4"];

    let o = srv.try_password(&ns, "127.0.0.2", TEST_USER, &four_bad);
    assert!(o.denied(), "{o:#?}");
    assert_eq!(o.passwords_sent(), 4, "{o:#?}");
    assert_eq!(truth.count_from("127.0.0.2"), 4);

    let o = srv.try_kbdint(&ns, "127.0.0.3", TEST_USER, &four_bad);
    assert!(o.denied(), "{o:#?}");
    assert_eq!(o.passwords_sent(), 4, "{o:#?}");
    assert_eq!(truth.count_from("127.0.0.3"), 4);

    // A right password after wrong ones: every one evaluated, then success.
    let o = srv.try_password(&ns, "127.0.0.4", TEST_USER, &["bad1", "bad2", TEST_PASSWORD]);
    assert!(o.success(), "{o:#?}");
    assert_eq!(truth.count_from("127.0.0.4"), 3);
    let o = srv.try_kbdint(&ns, "127.0.0.5", TEST_USER, &["bad1", "bad2", TEST_PASSWORD]);
    assert!(o.success(), "{o:#?}");
    assert_eq!(truth.count_from("127.0.0.5"), 3);
    assert_eq!(truth.count(), 14);
}

#[test]
fn sshd_max_auth_tries_ends_the_connection() {
    if !require("sshd_max_auth_tries_ends_the_connection", true, SSH) {
        return;
    }
    let mut ns = netns(&["127.0.0.2"]);
    let opts = SshdOptions { max_auth_tries: 2, ..SshdOptions::default() };
    let (srv, truth) = sshd_with_truth(&mut ns, opts);
    let o = srv.try_password(&ns, "127.0.0.2", TEST_USER, &["a", "b", "c", "d"]);
    assert!(o.denied(), "{o:#?}");
    // sshd evaluates MaxAuthTries passwords and then disconnects.
    assert_eq!(truth.count_from("127.0.0.2"), 2, "{o:#?}");
    assert!(o.stderr.contains("Too many authentication failures"), "{o:#?}");
}

#[test]
fn sshd_parallel_connections_from_one_address_are_all_counted() {
    if !require("sshd_parallel_connections_from_one_address_are_all_counted", true, SSH) {
        return;
    }
    let mut ns = netns(&["127.0.0.3"]);
    let (srv, truth) = sshd_with_truth(&mut ns, SshdOptions::default());
    let outs = srv.try_parallel(&ns, Method::Password, "127.0.0.3", TEST_USER, &["bad1", "bad2"], 8);
    assert_eq!(outs.len(), 8);
    for o in &outs {
        assert!(o.denied(), "{o:#?}");
        assert_eq!(o.passwords_sent(), 2, "{o:#?}");
    }
    let outs = srv.try_parallel(
        &ns,
        Method::KeyboardInteractive,
        "127.0.0.3",
        TEST_USER,
        &["bad1", TEST_PASSWORD],
        4,
    );
    assert!(outs.iter().all(|o| o.success()), "{outs:#?}");
    assert_eq!(truth.count_from("127.0.0.3"), 8 * 2 + 4 * 2);
}

#[test]
fn sshd_command_and_no_command_sessions() {
    if !require("sshd_command_and_no_command_sessions", true, SSH) {
        return;
    }
    let mut ns = netns(&["127.0.0.2"]);
    let (srv, truth) = sshd_with_truth(&mut ns, SshdOptions::default());
    let o = srv.run_command(&ns, Method::Password, "127.0.0.2", TEST_USER, TEST_PASSWORD, "id -un");
    assert!(o.success(), "{o:#?}");
    assert_eq!(o.stdout.trim(), TEST_USER);
    let o = srv.run_command(&ns, Method::Password, "127.0.0.2", TEST_USER, TEST_PASSWORD, "exit 3");
    assert!(o.authenticated && o.status == Some(3), "{o:#?}");
    let hold = Duration::from_millis(700);
    let o =
        srv.hold_no_command(&ns, Method::KeyboardInteractive, "127.0.0.2", TEST_USER, TEST_PASSWORD, hold);
    assert!(o.authenticated && !o.timed_out, "{o:#?}");
    let o = srv.hold_no_command(&ns, Method::Password, "127.0.0.2", TEST_USER, "wrong", hold);
    assert!(o.denied(), "{o:#?}");
    assert_eq!(truth.count(), 4);
}

#[test]
fn vsftpd_right_password_logs_in_wrong_one_is_refused() {
    if !require("vsftpd_right_password_logs_in_wrong_one_is_refused", true, FTP) {
        return;
    }
    let mut ns = netns(&["127.0.0.2", "127.0.0.3"]);
    let truth = GroundTruth::compiled();
    let stack = with_auth_lines(DEBIAN_VSFTPD_STACK, &[&truth.pam_line()]);
    let ftp = VsftpdServer::start(&mut ns, &stack);
    assert_eq!(
        ftp.try_login(&ns, "127.0.0.2", TEST_USER, TEST_PASSWORD),
        FtpOutcome::LoggedIn,
        "{}",
        ftp.log()
    );
    assert_eq!(ftp.try_login(&ns, "127.0.0.3", TEST_USER, "wrong"), FtpOutcome::Denied);
    // An unknown user is refused too (and still evaluated by the stack).
    assert_eq!(ftp.try_login(&ns, "127.0.0.3", "nosuchuser", "x"), FtpOutcome::Denied);
    assert_eq!(truth.count_from("127.0.0.2"), 1);
    assert_eq!(truth.count_from("127.0.0.3"), 2);
    // Several attempts on one connection: one PAM handle, one count each.
    let outs = ftp.try_logins(&ns, TEST_USER, &["bad1", "bad2", TEST_PASSWORD]);
    assert_eq!(outs, [FtpOutcome::Denied, FtpOutcome::Denied, FtpOutcome::LoggedIn], "{}", ftp.log());
    assert_eq!(truth.count_from("127.0.0.1"), 3);
}

#[test]
fn sshd_and_vsftpd_share_one_namespace() {
    if !require("sshd_and_vsftpd_share_one_namespace", true, &[SSH, FTP].concat()) {
        return;
    }
    let mut ns = netns(&["127.0.0.2"]);
    let truth = GroundTruth::compiled();
    let stack = with_auth_lines(DEBIAN_SSHD_STACK, &[&truth.pam_line()]);
    let srv = SshdServer::start(&mut ns, SshdOptions::with_stack(&stack));
    let ftp = VsftpdServer::start(&mut ns, &with_auth_lines(DEBIAN_VSFTPD_STACK, &[&truth.pam_line()]));
    assert!(srv.try_password(&ns, "127.0.0.2", TEST_USER, &[TEST_PASSWORD]).success());
    assert_eq!(ftp.try_login(&ns, "127.0.0.2", TEST_USER, TEST_PASSWORD), FtpOutcome::LoggedIn);
    let log = std::fs::read_to_string(truth.log_path()).unwrap();
    assert!(log.contains("service=sshd") && log.contains("service=vsftpd"), "{log}");
    // Stopping one server frees its port for another in the same namespace.
    let port = srv.port();
    drop(srv);
    let again = SshdServer::start(&mut ns, SshdOptions { port, ..SshdOptions::default() });
    assert!(again.try_password(&ns, "127.0.0.2", TEST_USER, &[TEST_PASSWORD]).success());
}

// ---------------------------------------------------------------------------
// Research: which PAM hooks run where (doc/sshd-pam-calls.md).

/// The probe on the auth line (where banguard goes: `auth requisite`, first),
/// and as the last account and session line.
fn probe_stack(base: &str, so: &Path, log: &Path) -> String {
    let p = format!("{} log={}", so.display(), log.display());
    let mut s = with_auth_lines(base, &[&format!("auth requisite {p} label=auth")]);
    s.push_str(&format!("account optional {p} label=account\nsession optional {p} label=session\n"));
    s
}

/// One parsed probe line.
#[derive(Debug, Clone)]
struct Call {
    hook: String,
    pid: u32,
    ppid: u32,
    flags: u32,
    /// (set_in_pid, setcred_seen_in_pid) when pam_get_data found the data.
    data: Option<(u32, u32)>,
    status: Option<u32>,
    rhost: String,
}

fn parse_calls(log: &Path) -> Vec<Call> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .map(|l| {
            let get = |k: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(k).and_then(|w| w.strip_prefix('=')))
                    .unwrap_or("")
                    .to_string()
            };
            let hex = |s: &str| {
                u32::from_str_radix(s.trim_start_matches("0x").split('(').next().unwrap_or(""), 16).ok()
            };
            let data = get("data");
            let data = data.strip_prefix("found(set_in_pid=").map(|rest| {
                let (a, b) =
                    rest.trim_end_matches(')').split_once(",setcred_seen_in_pid=").expect("data format");
                (a.parse().unwrap(), b.parse().unwrap())
            });
            Call {
                hook: get("hook"),
                pid: get("pid").parse().unwrap(),
                ppid: get("ppid").parse().unwrap(),
                flags: hex(&get("flags")).unwrap_or(0),
                data,
                status: hex(&get("status")),
                rhost: get("rhost"),
            }
        })
        .collect()
}

const ESTABLISH: u32 = 0x2;
const DELETE: u32 = 0x4;
const PAM_AUTH_ERR: u32 = 7;
const PAM_DATA_REPLACE: u32 = 0x2000_0000;

fn hooks(calls: &[Call]) -> Vec<&str> {
    calls.iter().map(|c| c.hook.as_str()).collect()
}

#[test]
fn research_sshd_pam_calls() {
    if !require("research_sshd_pam_calls", true, &[SSH, &["gcc"]].concat()) {
        return;
    }
    // One source address per scenario, all at once; the log is split by rhost.
    let scen: Vec<(&str, &str, Method, Vec<&str>, Action)> = vec![
        ("1 password ok, shell", "127.0.0.11", Method::Password, vec![TEST_PASSWORD], Action::Shell),
        ("2 password, 3 bad", "127.0.0.12", Method::Password, vec!["a", "b", "c"], Action::Shell),
        (
            "3 kbd-int ok, shell",
            "127.0.0.13",
            Method::KeyboardInteractive,
            vec![TEST_PASSWORD],
            Action::Shell,
        ),
        ("4 kbd-int, 3 bad", "127.0.0.14", Method::KeyboardInteractive, vec!["a", "b", "c"], Action::Shell),
        (
            "5 password ok, -N",
            "127.0.0.15",
            Method::Password,
            vec![TEST_PASSWORD],
            Action::NoCommand(Duration::from_millis(1200)),
        ),
        (
            "6 password ok, true",
            "127.0.0.16",
            Method::Password,
            vec![TEST_PASSWORD],
            Action::Command("true".into()),
        ),
        (
            "7 password bad,bad,ok",
            "127.0.0.17",
            Method::Password,
            vec!["a", "b", TEST_PASSWORD],
            Action::Shell,
        ),
        (
            "8 kbd-int bad,bad,ok",
            "127.0.0.18",
            Method::KeyboardInteractive,
            vec!["a", "b", TEST_PASSWORD],
            Action::Shell,
        ),
        (
            "9 kbd-int ok, -N",
            "127.0.0.19",
            Method::KeyboardInteractive,
            vec![TEST_PASSWORD],
            Action::NoCommand(Duration::from_millis(1200)),
        ),
    ];
    let mut addrs: Vec<&str> = scen.iter().map(|s| s.1).collect();
    addrs.extend(["127.0.0.21", "127.0.0.22", "127.0.0.23", "127.0.0.24"]);
    let mut ns = netns(&addrs);
    let tmp = tempfile::tempdir().unwrap();
    let so = build_pam_probe(tmp.path());
    let log = tmp.path().join("probe.log");
    let srv = SshdServer::start(&mut ns, SshdOptions::with_stack(&probe_stack(DEBIAN_SSHD_STACK, &so, &log)));
    let running: Vec<_> = scen
        .iter()
        .map(|(_, src, m, pws, act)| {
            let mut l = Login::new(*m, src, TEST_USER, pws);
            l.action = act.clone();
            srv.spawn_login(&ns, &l)
        })
        .collect();
    let outs: Vec<_> = running.into_iter().map(|r| r.finish()).collect();
    for ((name, ..), o) in scen.iter().zip(&outs) {
        let want = !name.contains("3 bad");
        assert_eq!(o.authenticated, want, "{name}: {o:#?}\n{}", srv.log());
    }
    // After the clients are gone sshd still runs close_session, setcred
    // DELETE and pam_end; wait for the last hook of each scenario.
    let of = |calls: &[Call], rhost: &str| -> Vec<Call> {
        calls.iter().filter(|c| c.rhost == rhost).cloned().collect()
    };
    let finished = |c: &[Call], name: &str| match name {
        n if n.contains("kbd-int, 3 bad") => c.iter().filter(|c| c.hook == "authenticate").count() == 3,
        n if n.contains("kbd-int") => c.iter().any(|c| c.hook == "setcred" && c.flags & DELETE != 0),
        _ => c.iter().any(|c| c.hook == "cleanup" && c.status != Some(PAM_DATA_REPLACE)),
    };
    let done = wait_for(Duration::from_secs(30), || {
        let calls = parse_calls(&log);
        scen.iter().all(|(name, src, ..)| finished(&of(&calls, src), name)).then_some(())
    });
    let calls = parse_calls(&log);
    let report: String = scen
        .iter()
        .map(|(name, src, ..)| {
            let lines: Vec<String> = std::fs::read_to_string(&log)
                .unwrap()
                .lines()
                .filter(|l| l.ends_with(&format!("rhost={src}")))
                .map(str::to_string)
                .collect();
            format!("== {name} ({src})\n{}\n", lines.join("\n"))
        })
        .collect();
    eprintln!("{report}");
    assert!(done.is_some(), "not every scenario finished:\n{report}");

    for (name, src, method, pws, _) in &scen {
        let c = of(&calls, src);
        let auth: Vec<&Call> = c.iter().filter(|c| c.hook == "authenticate").collect();
        assert_eq!(auth.len(), pws.len(), "{name}: one authenticate per password\n{report}");
        let setcred: Vec<&Call> = c.iter().filter(|c| c.hook == "setcred").collect();
        let cleanup: Vec<&Call> = c.iter().filter(|c| c.hook == "cleanup").collect();
        let success = pws.last() == Some(&TEST_PASSWORD);
        match method {
            Method::Password => {
                // All authenticate calls in one process: the monitor, a
                // child of the listener; later calls see the earlier data.
                let monitor = auth[0].pid;
                assert!(auth.iter().all(|a| a.pid == monitor), "{name}\n{report}");
                assert!(auth[0].data.is_none());
                assert!(auth[1..].iter().all(|a| a.data.map(|d| d.0) == Some(monitor)), "{name}\n{report}");
                if success {
                    // setcred(ESTABLISH) in the monitor, data visible; then again in
                    // the post-auth child (forked after, so it also sees the
                    // monitor's mark); DELETE in the monitor at the end.
                    // (cleanups with PAM_DATA_REPLACE come from the probe's own
                    // pam_set_data on the 2nd and 3rd password; skip them.)
                    let last_auth = c.iter().rposition(|c| c.hook == "authenticate").unwrap();
                    let after: Vec<Call> = c[last_auth + 1..]
                        .iter()
                        .filter(|c| c.status != Some(PAM_DATA_REPLACE))
                        .cloned()
                        .collect();
                    assert_eq!(
                        hooks(&after),
                        [
                            "acct_mgmt",
                            "setcred",
                            "open_session",
                            "setcred",
                            "close_session",
                            "setcred",
                            "cleanup"
                        ],
                        "{name}\n{report}"
                    );
                    assert_eq!(
                        (setcred[0].pid, setcred[0].flags & ESTABLISH),
                        (monitor, ESTABLISH),
                        "{name}"
                    );
                    assert_eq!(setcred[0].data, Some((monitor, 0)), "{name}");
                    assert_eq!(
                        (setcred[1].ppid, setcred[1].flags & ESTABLISH),
                        (monitor, ESTABLISH),
                        "{name}"
                    );
                    assert_ne!(setcred[1].pid, monitor);
                    assert_eq!(setcred[1].data, Some((monitor, monitor)), "{name}");
                    assert_eq!((setcred[2].pid, setcred[2].flags & DELETE), (monitor, DELETE), "{name}");
                    let last = cleanup.last().expect("pam_end ran");
                    assert_eq!((last.pid, last.status), (monitor, Some(0)), "{name}");
                } else {
                    // No setcred at all; pam_end(PAM_AUTH_ERR) in the monitor.
                    assert!(setcred.is_empty(), "{name}\n{report}");
                    let last = cleanup.last().expect("pam_end ran");
                    assert_eq!((last.pid, last.status), (monitor, Some(PAM_AUTH_ERR)), "{name}");
                }
            }
            Method::KeyboardInteractive => {
                // Each password in its own forked child of the monitor;
                // none sees data; no cleanup ever runs for that data.
                let monitor = auth[0].ppid;
                let pids: BTreeSet<u32> = auth.iter().map(|a| a.pid).collect();
                assert_eq!(pids.len(), auth.len(), "{name}: one child per password\n{report}");
                assert!(auth.iter().all(|a| a.ppid == monitor && a.data.is_none()), "{name}\n{report}");
                assert!(cleanup.is_empty(), "{name}\n{report}");
                if success {
                    let acct = c.iter().find(|c| c.hook == "acct_mgmt").expect("acct_mgmt");
                    assert_eq!(acct.pid, auth.last().unwrap().pid, "{name}: account runs in the child");
                    assert_eq!(setcred.len(), 3, "{name}\n{report}");
                    assert_eq!(
                        (setcred[0].pid, setcred[0].flags & ESTABLISH),
                        (monitor, ESTABLISH),
                        "{name}"
                    );
                    assert_eq!(
                        (setcred[1].ppid, setcred[1].flags & ESTABLISH),
                        (monitor, ESTABLISH),
                        "{name}"
                    );
                    assert_eq!((setcred[2].pid, setcred[2].flags & DELETE), (monitor, DELETE), "{name}");
                    assert!(
                        setcred.iter().all(|s| s.data.is_none()),
                        "{name}: data lost with the child\n{report}"
                    );
                } else {
                    assert!(setcred.is_empty(), "{name}\n{report}");
                }
            }
        }
    }

    // Phase 2. (a) The auth line's setcred runs whatever its authenticate
    // returned: the probe now returns PAM_SUCCESS instead of PAM_IGNORE.
    // (b) A right password that the account stack refuses (pam_nologin,
    // /run/nologin on the namespace's tmpfs): no setcred at all.
    let log2 = tmp.path().join("probe2.log");
    let rc_success =
        probe_stack(DEBIAN_SSHD_STACK, &so, &log2).replace("label=auth", "label=auth rc=success");
    srv.set_pam_stack(&ns, &rc_success);
    for (src, m) in [("127.0.0.21", Method::Password), ("127.0.0.22", Method::KeyboardInteractive)] {
        let o = srv.login(&ns, &Login::new(m, src, TEST_USER, &[TEST_PASSWORD]));
        assert!(o.success(), "{o:#?}");
    }
    ns.run_ok(["touch", "/run/nologin"]);
    for (src, m) in [("127.0.0.23", Method::Password), ("127.0.0.24", Method::KeyboardInteractive)] {
        let o = srv.login(&ns, &Login::new(m, src, TEST_USER, &[TEST_PASSWORD]));
        assert!(!o.authenticated, "{o:#?}");
    }
    ns.run_ok(["rm", "/run/nologin"]);
    let phase2_done = |c: &[Call]| {
        let est = |r: &str| c.iter().filter(|c| c.rhost == r && c.hook == "setcred").count() == 3;
        let acct = |r: &str| c.iter().any(|c| c.rhost == r && c.hook == "acct_mgmt");
        let ended = c.iter().any(|c| c.rhost == "127.0.0.23" && c.hook == "cleanup");
        est("127.0.0.21") && est("127.0.0.22") && acct("127.0.0.23") && acct("127.0.0.24") && ended
    };
    let done = wait_for(Duration::from_secs(30), || phase2_done(&parse_calls(&log2)).then_some(()));
    let report2 = std::fs::read_to_string(&log2).unwrap_or_default();
    eprintln!("== phase 2\n{report2}");
    assert!(done.is_some(), "{report2}");
    let calls2 = parse_calls(&log2);
    // The password-method refusal ends with pam_end(PAM_AUTH_ERR) in the
    // monitor; the kbd-int one never cleans up (the data was in the child).
    let ends = |r: &str| -> Vec<Option<u32>> {
        of(&calls2, r).iter().filter(|c| c.hook == "cleanup").map(|c| c.status).collect()
    };
    assert_eq!(ends("127.0.0.23"), [Some(PAM_AUTH_ERR)], "{report2}");
    assert_eq!(ends("127.0.0.24"), [], "{report2}");
    for refused in ["127.0.0.23", "127.0.0.24"] {
        let c = of(&calls2, refused);
        assert!(
            !c.iter().any(|c| c.hook == "setcred"),
            "{refused}: setcred after account failure\n{report2}"
        );
    }
}

#[test]
fn research_vsftpd_pam_calls() {
    if !require("research_vsftpd_pam_calls", true, FTP) {
        return;
    }
    let mut ns = netns(&["127.0.0.2", "127.0.0.3"]);
    let tmp = tempfile::tempdir().unwrap();
    let so = build_pam_probe(tmp.path());
    let log = tmp.path().join("probe.log");
    let ftp = VsftpdServer::start(&mut ns, &probe_stack(DEBIAN_VSFTPD_STACK, &so, &log));
    assert_eq!(ftp.try_login(&ns, "127.0.0.2", TEST_USER, "wrong"), FtpOutcome::Denied);
    assert_eq!(ftp.try_login(&ns, "127.0.0.3", TEST_USER, TEST_PASSWORD), FtpOutcome::LoggedIn);
    let outs = ftp.try_logins(&ns, TEST_USER, &["a", "b", TEST_PASSWORD]);
    assert_eq!(outs.len(), 3, "{outs:?}");
    let done = wait_for(Duration::from_secs(30), || {
        let c = parse_calls(&log);
        (c.iter().filter(|c| c.hook == "cleanup" && c.status == Some(0)).count() == 2).then_some(())
    });
    let report = std::fs::read_to_string(&log).unwrap_or_default();
    eprintln!("{report}");
    assert!(done.is_some(), "{report}");
    let calls = parse_calls(&log);
    let of = |rhost: &str| -> Vec<Call> { calls.iter().filter(|c| c.rhost == rhost).cloned().collect() };

    // Failure: authenticate, then pam_end(PAM_AUTH_ERR) at once, same process.
    let f = of("127.0.0.2");
    assert_eq!(hooks(&f), ["authenticate", "cleanup"], "{report}");
    assert_eq!((f[1].pid, f[1].status), (f[0].pid, Some(PAM_AUTH_ERR)));
    // Success: account, setcred(ESTABLISH) in the same process with the data;
    // no session hooks (session_support=NO); pam_end(PAM_SUCCESS) at logout.
    let s = of("127.0.0.3");
    assert_eq!(hooks(&s), ["authenticate", "acct_mgmt", "setcred", "cleanup"], "{report}");
    assert!(s.iter().all(|c| c.pid == s[0].pid));
    assert_eq!(s[2].flags, ESTABLISH);
    assert_eq!(s[2].data, Some((s[0].pid, 0)));
    assert_eq!(s[3].status, Some(0));
    // Three attempts on one connection: a fresh handle each (no data carried
    // over), pam_end after each failure; the same process throughout.
    let m = of("127.0.0.1");
    assert_eq!(
        hooks(&m),
        [
            "authenticate",
            "cleanup",
            "authenticate",
            "cleanup",
            "authenticate",
            "acct_mgmt",
            "setcred",
            "cleanup"
        ],
        "{report}"
    );
    assert!(m.iter().filter(|c| c.hook == "authenticate").all(|c| c.data.is_none()));
    assert!(m.iter().all(|c| c.pid == m[0].pid));
}
