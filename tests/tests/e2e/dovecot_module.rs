//! pam_banguard.so against a real Dovecot IMAP server, the application that
//! never calls `pam_setcred` (passdb PAM calls it only with `setcred=yes`):
//! common-auth as the two shipped pam-auth-update profiles make it, the
//! `banguard` line first and the `banguard-success` line after the password
//! modules, with the compiled ground-truth probe right after banguard.

use banguard_e2e::dovecot::{DEBIAN_DOVECOT_STACK, DovecotServer, ImapOutcome};
use banguard_e2e::fixture::{Fixture, Policy};
use banguard_e2e::sshd::{GroundTruth, TEST_PASSWORD, TEST_USER, set_pam_service};
use banguard_e2e::{Netns, artifacts, require};

const NEEDS: &[&str] = &["unshare", "nsenter", "ip", "ss", "timeout", "dovecot", "python3", "gcc"];

#[test]
fn imap_users_are_never_banned_for_logging_in_and_attackers_get_maxretry() {
    if !require("imap_users_are_never_banned_for_logging_in_and_attackers_get_maxretry", true, NEEDS) {
        return;
    }
    let mut ns = Netns::new();
    for a in ["127.0.0.2", "127.0.0.3"] {
        ns.add_lo_addr(&format!("{a}/8"));
    }
    let fx = Fixture::new(&Policy::default());
    let truth = GroundTruth::compiled();
    let success =
        format!("auth optional {} config={} authsucc", artifacts().pam_module.display(), fx.config.display());
    let common_auth = [
        fx.module_line(""),
        truth.pam_line(),
        "auth [success=1 default=ignore] pam_unix.so nullok nodelay".into(),
        "auth requisite pam_deny.so".into(),
        "auth required pam_permit.so".into(),
        success,
    ]
    .join("\n");
    set_pam_service(&ns, "common-auth", Some(&format!("{common_auth}\n")));
    let imap = DovecotServer::start(&mut ns, DEBIAN_DOVECOT_STACK);

    for n in 1..=20 {
        let o = imap.try_login(&ns, "127.0.0.2", TEST_USER, TEST_PASSWORD);
        assert_eq!(o, ImapOutcome::LoggedIn, "right password {n}\n{}", imap.log());
    }
    assert_eq!(fx.counted("dovecot", "127.0.0.2"), 0, "20 successes leave nothing counted");
    assert!(fx.active_ban("dovecot", "127.0.0.2").is_none());
    assert_eq!(truth.count_from("127.0.0.2"), 20);

    for n in 1..=6 {
        let o = imap.try_login(&ns, "127.0.0.3", TEST_USER, "wrong");
        assert_eq!(o, ImapOutcome::Denied, "wrong password {n}\n{}", imap.log());
    }
    assert_eq!(truth.count_from("127.0.0.3"), 3, "exactly maxretry wrong passwords evaluated");
    let ban = fx.active_ban("dovecot", "127.0.0.3").expect("127.0.0.3 banned on dovecot");
    assert_eq!(ban.failures, 3);
    let o = imap.try_login(&ns, "127.0.0.3", TEST_USER, TEST_PASSWORD);
    assert_eq!(o, ImapOutcome::Denied, "the ban refuses the right password too");
    assert_eq!(truth.count_from("127.0.0.3"), 3, "and never evaluates it");
}
