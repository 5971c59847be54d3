//! pam_banguard.so against a real vsftpd: the one module line before
//! `@include common-auth` in Debian's stock `/etc/pam.d/vsftpd`, with the
//! compiled ground-truth probe right after it (vsftpd deadlocks when a PAM
//! module forks, so `pam_exec` cannot be the counter here).
//!
//! vsftpd opens a fresh PAM handle for every USER/PASS and ends it at once
//! on failure (doc/sshd-pam-calls.md), so each FTP login is one attempt.

use banguard_e2e::fixture::{Fixture, Policy, eventually};
use banguard_e2e::sshd::{
    DEBIAN_SSHD_STACK, GroundTruth, SshdOptions, SshdServer, TEST_PASSWORD, TEST_USER, with_auth_lines,
};
use banguard_e2e::vsftpd::{DEBIAN_VSFTPD_STACK, FtpOutcome, VsftpdServer};
use banguard_e2e::{Netns, require};
use std::time::Duration;

const FTP: &[&str] = &["unshare", "nsenter", "ip", "ss", "timeout", "vsftpd", "curl", "gcc"];
const SSH: &[&str] = &["sshd", "ssh", "ssh-keygen"];
const SETTLE: Duration = Duration::from_secs(10);

fn netns(addrs: &[&str]) -> Netns {
    let ns = Netns::new();
    for a in addrs {
        ns.add_lo_addr(&format!("{a}/8"));
    }
    ns
}

fn vsftpd(ns: &mut Netns, fx: &Fixture) -> (VsftpdServer, GroundTruth) {
    let truth = GroundTruth::compiled();
    let stack = with_auth_lines(DEBIAN_VSFTPD_STACK, &[&fx.module_line(""), &truth.pam_line()]);
    (VsftpdServer::start(ns, &stack), truth)
}

#[test]
fn failed_ftp_logins_are_counted_and_the_ban_refuses_the_right_password() {
    if !require("failed_ftp_logins_are_counted_and_the_ban_refuses_the_right_password", true, FTP) {
        return;
    }
    let mut ns = netns(&["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    let fx = Fixture::new(&Policy::default());
    let (ftp, truth) = vsftpd(&mut ns, &fx);

    for i in 1..=3 {
        let o = ftp.try_login(&ns, "127.0.0.2", TEST_USER, "wrong");
        assert_eq!(o, FtpOutcome::Denied, "wrong password {i}\n{}", ftp.log());
        assert_eq!(fx.counted("vsftpd", "127.0.0.2"), i, "after wrong password {i}");
    }
    assert_eq!(truth.count_from("127.0.0.2"), 3);
    assert!(fx.active_ban("vsftpd", "127.0.0.2").is_none(), "exhausted, not yet banned");

    // The next login, with the RIGHT password, is refused and creates the
    // ban; its password never reaches pam_unix. So is the one after.
    for _ in 0..2 {
        let o = ftp.try_login(&ns, "127.0.0.2", TEST_USER, TEST_PASSWORD);
        assert_eq!(o, FtpOutcome::Denied, "{}", ftp.log());
    }
    assert_eq!(truth.count_from("127.0.0.2"), 3, "no password evaluated after maxretry");
    let ban = fx.active_ban("vsftpd", "127.0.0.2").expect("127.0.0.2 banned on vsftpd");
    assert_eq!((ban.service.as_str(), ban.failures), ("vsftpd", 3));
    assert!(fx.active_ban("sshd", "127.0.0.2").is_none(), "the ban is vsftpd's only");

    // Another address logs in; its attempt is given back (setcred).
    assert_eq!(ftp.try_login(&ns, "127.0.0.3", TEST_USER, TEST_PASSWORD), FtpOutcome::LoggedIn);
    assert!(eventually(SETTLE, || fx.counted("vsftpd", "127.0.0.3") == 0
        && fx.given_back("vsftpd", "127.0.0.3") == 1));

    // A failure then a success: the failure stays counted.
    assert_eq!(ftp.try_login(&ns, "127.0.0.4", TEST_USER, "wrong"), FtpOutcome::Denied);
    assert_eq!(ftp.try_login(&ns, "127.0.0.4", TEST_USER, TEST_PASSWORD), FtpOutcome::LoggedIn);
    assert!(
        eventually(SETTLE, || fx.counted("vsftpd", "127.0.0.4") == 1
            && fx.given_back("vsftpd", "127.0.0.4") == 1),
        "counted={} given_back={}",
        fx.counted("vsftpd", "127.0.0.4"),
        fx.given_back("vsftpd", "127.0.0.4")
    );
    assert_eq!(truth.count_from("127.0.0.3") + truth.count_from("127.0.0.4"), 3);
}

/// Several USER/PASS on one FTP connection (from 127.0.0.1, which the
/// test's `ignoreip = []` does not cover): one attempt each, and the
/// ban cuts the connection's later tries off before pam_unix.
#[test]
fn several_attempts_on_one_ftp_connection_count_one_each() {
    if !require("several_attempts_on_one_ftp_connection_count_one_each", true, &[FTP, &["bash"]].concat()) {
        return;
    }
    let mut ns = netns(&[]);
    let fx = Fixture::new(&Policy::default());
    let truth = GroundTruth::compiled();
    let stack = with_auth_lines(DEBIAN_VSFTPD_STACK, &[&fx.module_line(""), &truth.pam_line()]);
    let opts = banguard_e2e::vsftpd::VsftpdOptions {
        pam_stack: stack,
        max_login_fails: 10,
        ..banguard_e2e::vsftpd::VsftpdOptions::default()
    };
    let ftp = VsftpdServer::start_with(&mut ns, opts);
    let outs = ftp.try_logins(&ns, TEST_USER, &["w1", "w2", "w3", "w4", TEST_PASSWORD]);
    assert_eq!(outs, vec![FtpOutcome::Denied; 5], "{}", ftp.log());
    assert_eq!(truth.count_from("127.0.0.1"), 3);
    assert!(fx.active_ban("vsftpd", "127.0.0.1").is_some());
}

/// A ban belongs to the service it was earned on: a host banned on sshd
/// still logs in to vsftpd. Unless the repeat-offender rule made it a ban
/// on all services: then vsftpd refuses it too, right password or not.
#[test]
fn an_sshd_ban_does_not_refuse_vsftpd_unless_repeat_offender() {
    if !require("an_sshd_ban_does_not_refuse_vsftpd_unless_repeat_offender", true, &[FTP, SSH].concat()) {
        return;
    }
    let mut ns = netns(&["127.0.0.2", "127.0.0.3"]);
    let fx = Fixture::new(&Policy::default());
    let ssh_truth = GroundTruth::compiled();
    let stack = with_auth_lines(DEBIAN_SSHD_STACK, &[&fx.module_line(""), &ssh_truth.pam_line()]);
    let srv = SshdServer::start(&mut ns, SshdOptions::with_stack(&stack));
    let (ftp, ftp_truth) = vsftpd(&mut ns, &fx);

    let o = srv.try_password(&ns, "127.0.0.2", TEST_USER, &["w1", "w2", "w3", "w4"]);
    assert!(o.denied(), "{o:#?}");
    assert_eq!(ssh_truth.count_from("127.0.0.2"), 3);
    assert!(fx.active_ban("sshd", "127.0.0.2").is_some());
    assert!(fx.active_ban("vsftpd", "127.0.0.2").is_none());
    assert_eq!(
        ftp.try_login(&ns, "127.0.0.2", TEST_USER, TEST_PASSWORD),
        FtpOutcome::LoggedIn,
        "{}",
        ftp.log()
    );
    assert_eq!(ftp_truth.count_from("127.0.0.2"), 1);

    // One ban is enough to be a repeat offender now (applies at once: the
    // module reads its config at every call).
    fx.set_policy(&Policy { recidive_bans: Some(1), ..Policy::default() });
    let o = srv.try_password(&ns, "127.0.0.3", TEST_USER, &["w1", "w2", "w3", "w4"]);
    assert!(o.denied(), "{o:#?}");
    assert_eq!(ssh_truth.count_from("127.0.0.3"), 3);
    let ban = fx.active_ban("vsftpd", "127.0.0.3").expect("a ban on all services");
    assert_eq!((ban.service.as_str(), ban.reason.as_str()), ("*", "recidive"));
    assert_eq!(
        ftp.try_login(&ns, "127.0.0.3", TEST_USER, TEST_PASSWORD),
        FtpOutcome::Denied,
        "{}",
        ftp.log()
    );
    assert_eq!(ftp_truth.count_from("127.0.0.3"), 0, "refused before pam_unix");
    // The first host's plain sshd ban is still not a vsftpd ban.
    assert_eq!(ftp.try_login(&ns, "127.0.0.2", TEST_USER, TEST_PASSWORD), FtpOutcome::LoggedIn);
}
