//! pam_banguard.so against a real OpenSSH sshd, set up the way a user does
//! it: ONE line, `auth requisite <module> config=<file>`, right before
//! `@include common-auth` in Debian's stock `/etc/pam.d/sshd`.
//!
//! Right after that line sits a [`GroundTruth`] line: it counts the
//! passwords that got PAST banguard, i.e. the ones pam_unix looked at.
//! "Exactly maxretry evaluated" is read there, never from banguard's own
//! store; the store is checked separately (read-only) for bans and counts.
//!
//! Attackers are 127.0.0.2, 127.0.0.3, ... on the namespace's lo; every
//! config sets `ignoreip` so that they are not covered by the default
//! 127.0.0.0/8 entry. pam_unix runs with `nodelay` (harness default).

use banguard_e2e::fixture::{Fixture, Policy, eventually};
use banguard_e2e::sshd::{
    DEBIAN_SSHD_STACK, GroundTruth, Method, SshOutcome, SshdOptions, SshdServer, TEST_PASSWORD, TEST_USER,
    with_auth_lines,
};
use banguard_e2e::{Netns, require};
use std::time::{Duration, Instant};

const SSH: &[&str] = &["unshare", "nsenter", "ip", "ss", "timeout", "sshd", "ssh", "ssh-keygen"];
const SVC: &str = "sshd";
/// How long sshd's monitor may take to give a success back after the
/// client saw it (setcred runs after USERAUTH_SUCCESS went out).
const SETTLE: Duration = Duration::from_secs(10);

/// One namespace with sshd, the module line and the ground-truth line.
struct Setup {
    srv: SshdServer,
    truth: GroundTruth,
    fx: Fixture,
    ns: Netns,
}

fn setup(addrs: &[&str], policy: &Policy, max_auth_tries: u32) -> Setup {
    let mut ns = Netns::new();
    for a in addrs {
        if a.contains(':') {
            ns.add_lo_addr(&format!("{a}/128"));
        } else {
            ns.add_lo_addr(&format!("{a}/8"));
        }
    }
    let fx = Fixture::new(policy);
    let truth = GroundTruth::new();
    let stack = with_auth_lines(DEBIAN_SSHD_STACK, &[&fx.module_line(""), &truth.pam_line()]);
    let srv = SshdServer::start(&mut ns, SshdOptions { max_auth_tries, ..SshdOptions::with_stack(&stack) });
    Setup { srv, truth, fx, ns }
}

impl Setup {
    fn login(&self, method: Method, src: &str, passwords: &[&str]) -> SshOutcome {
        match method {
            Method::Password => self.srv.try_password(&self.ns, src, TEST_USER, passwords),
            Method::KeyboardInteractive => self.srv.try_kbdint(&self.ns, src, TEST_USER, passwords),
        }
    }

    /// Waits until the store shows `addr` with `counted` attempts and
    /// `given_back` given back; panics with both figures otherwise.
    #[track_caller]
    fn settle(&self, addr: &str, counted: u32, given_back: u32) {
        let ok = eventually(SETTLE, || {
            self.fx.counted(SVC, addr) == counted && self.fx.given_back(SVC, addr) == given_back
        });
        assert!(
            ok,
            "{addr}: want counted={counted} given_back={given_back}, store has counted={} given_back={}\n{}",
            self.fx.counted(SVC, addr),
            self.fx.given_back(SVC, addr),
            self.srv.log()
        );
    }
}

/// Six wrong passwords on one connection, the given method: exactly
/// maxretry reach pam_unix, then the host is banned.
fn six_wrong_on_one_connection(method: Method) {
    let s = setup(&["127.0.0.2"], &Policy::default(), 10);
    let six = ["w1", "w2", "w3", "w4", "w5", "w6"];
    let o = s.login(method, "127.0.0.2", &six);
    assert!(o.denied() && !o.timed_out, "{o:#?}\n{}", s.srv.log());
    assert_eq!(s.truth.count_from("127.0.0.2"), 3, "passwords evaluated\n{o:#?}");
    let ban = s.fx.active_ban(SVC, "127.0.0.2").expect("127.0.0.2 banned on sshd");
    assert_eq!((ban.service.as_str(), ban.failures, ban.reason.as_str()), (SVC, 3, "maxretry"));
    assert!(ban.expires.is_some_and(|e| e - ban.created == 3600), "{ban:?}");
    // The ban consumed the failures that made it.
    assert_eq!(s.fx.rows(SVC, "127.0.0.2"), 0);
    match method {
        // The client types every password; sshd just refuses 4..6 unseen.
        Method::Password => assert_eq!(o.passwords_sent(), 6, "{o:#?}"),
        // Refused before pam_unix's conversation: no prompt is ever sent
        // for rounds 4..6, so the client types only 3.
        Method::KeyboardInteractive => assert_eq!(o.passwords_sent(), 3, "{o:#?}"),
    }
}

/// (a)
#[test]
fn password_method_six_wrong_evaluates_exactly_maxretry_and_bans() {
    if !require("password_method_six_wrong_evaluates_exactly_maxretry_and_bans", true, SSH) {
        return;
    }
    six_wrong_on_one_connection(Method::Password);
}

/// (b)
#[test]
fn kbdint_six_wrong_evaluates_exactly_maxretry_and_bans() {
    if !require("kbdint_six_wrong_evaluates_exactly_maxretry_and_bans", true, SSH) {
        return;
    }
    six_wrong_on_one_connection(Method::KeyboardInteractive);
}

/// (c) 16 connections at once from one address, two wrong passwords each:
/// 32 offered, exactly maxretry evaluated in total, with each method.
#[test]
fn sixteen_parallel_connections_get_exactly_maxretry_passwords_evaluated() {
    if !require("sixteen_parallel_connections_get_exactly_maxretry_passwords_evaluated", true, SSH) {
        return;
    }
    let s = setup(&["127.0.0.2", "127.0.0.3"], &Policy::default(), 6);
    for (method, src) in [(Method::Password, "127.0.0.2"), (Method::KeyboardInteractive, "127.0.0.3")] {
        let outs = s.srv.try_parallel(&s.ns, method, src, TEST_USER, &["bad1", "bad2"], 16);
        assert_eq!(outs.len(), 16);
        for o in &outs {
            assert!(o.denied() && !o.timed_out, "{method:?} {o:#?}\n{}", s.srv.log());
        }
        assert_eq!(s.truth.count_from(src), 3, "{method:?}: passwords evaluated from {src}");
        assert!(s.fx.active_ban(SVC, src).is_some(), "{method:?}: {src} banned");
    }
    assert_eq!(s.truth.count(), 6);
}

/// (d) While one address is banned, another logs in with the right
/// password; the banned one is refused even with the right password, and
/// that password is never looked at.
#[test]
fn a_banned_address_is_refused_even_with_the_right_password_others_log_in() {
    if !require("a_banned_address_is_refused_even_with_the_right_password_others_log_in", true, SSH) {
        return;
    }
    let s = setup(&["127.0.0.2", "127.0.0.3"], &Policy::default(), 6);
    let o = s.login(Method::Password, "127.0.0.2", &["w1", "w2", "w3", "w4"]);
    assert!(o.denied(), "{o:#?}");
    assert!(s.fx.active_ban(SVC, "127.0.0.2").is_some());
    assert_eq!(s.truth.count_from("127.0.0.2"), 3);

    let other = s.login(Method::Password, "127.0.0.3", &[TEST_PASSWORD]);
    assert!(other.success(), "127.0.0.3 is not banned: {other:#?}\n{}", s.srv.log());
    for method in [Method::Password, Method::KeyboardInteractive] {
        let o = s.login(method, "127.0.0.2", &[TEST_PASSWORD]);
        assert!(o.denied() && !o.authenticated, "{method:?}: banned host got in: {o:#?}");
    }
    // The right passwords of the banned host never reached pam_unix.
    assert_eq!(s.truth.count_from("127.0.0.2"), 3);
    assert_eq!(s.truth.count_from("127.0.0.3"), 1);
    assert!(s.srv.log().contains("Accepted password for bgtest from 127.0.0.3"), "{}", s.srv.log());
    assert!(!s.srv.log().contains("Accepted password for bgtest from 127.0.0.2"), "{}", s.srv.log());
    s.settle("127.0.0.3", 0, 1);
}

/// (e) A successful login gives its attempt back, whatever the method and
/// whether or not a command runs: nothing stays counted. More successes
/// than maxretry from one address never add up to a ban.
#[test]
fn successful_logins_leave_nothing_counted() {
    if !require("successful_logins_leave_nothing_counted", true, SSH) {
        return;
    }
    let s = setup(&["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"], &Policy::default(), 6);
    let o = s.login(Method::Password, "127.0.0.2", &[TEST_PASSWORD]);
    assert!(o.success(), "{o:#?}\n{}", s.srv.log());
    s.settle("127.0.0.2", 0, 1);

    let o = s.login(Method::KeyboardInteractive, "127.0.0.3", &[TEST_PASSWORD]);
    assert!(o.success(), "{o:#?}\n{}", s.srv.log());
    s.settle("127.0.0.3", 0, 1);

    let hold = Duration::from_millis(800);
    let o = s.srv.hold_no_command(&s.ns, Method::Password, "127.0.0.4", TEST_USER, TEST_PASSWORD, hold);
    assert!(o.authenticated && !o.timed_out, "ssh -N: {o:#?}");
    s.settle("127.0.0.4", 0, 1);
    let o = s.srv.hold_no_command(
        &s.ns,
        Method::KeyboardInteractive,
        "127.0.0.4",
        TEST_USER,
        TEST_PASSWORD,
        hold,
    );
    assert!(o.authenticated && !o.timed_out, "ssh -N kbd-int: {o:#?}");
    s.settle("127.0.0.4", 0, 2);

    // 2 × maxretry successes in a row, alternating methods: each one is
    // counted while in flight and given back, so none is ever refused.
    for i in 0..6 {
        let method = if i % 2 == 0 { Method::Password } else { Method::KeyboardInteractive };
        let o = s.login(method, "127.0.0.5", &[TEST_PASSWORD]);
        assert!(o.success(), "success #{i} ({method:?}) refused: {o:#?}\n{}", s.srv.log());
        s.settle("127.0.0.5", 0, i + 1);
    }
    assert!(s.fx.active_ban(SVC, "127.0.0.5").is_none());
    assert_eq!(s.truth.count(), 10);
}

/// (e, second part) Two wrong passwords and then the right one on one
/// connection: the success gives back only its own attempt, the two
/// failures stay counted. With both methods.
#[test]
fn wrong_wrong_right_on_one_connection_keeps_two_counted() {
    if !require("wrong_wrong_right_on_one_connection_keeps_two_counted", true, SSH) {
        return;
    }
    let s = setup(&["127.0.0.2", "127.0.0.3"], &Policy::default(), 6);
    for (method, src) in [(Method::Password, "127.0.0.2"), (Method::KeyboardInteractive, "127.0.0.3")] {
        let o = s.login(method, src, &["w1", "w2", TEST_PASSWORD]);
        assert!(o.success(), "{method:?}: {o:#?}\n{}", s.srv.log());
        assert_eq!(s.truth.count_from(src), 3, "{method:?}");
        s.settle(src, 2, 1);
        assert_eq!(s.fx.rows(SVC, src), 3, "{method:?}: three attempts recorded");
        // The host has one try left before the ban: a wrong password is
        // still evaluated, the next one is refused.
        let o = s.login(method, src, &["w3", "w4"]);
        assert!(o.denied(), "{method:?}: {o:#?}");
        assert_eq!(s.truth.count_from(src), 4, "{method:?}: exactly one more evaluated");
        assert!(s.fx.active_ban(SVC, src).is_some(), "{method:?}: {src} banned");
    }
}

/// (f) After the ban expires, the right password works again (and the
/// host starts afresh).
#[test]
fn the_right_password_works_again_after_the_ban_expires() {
    if !require("the_right_password_works_again_after_the_ban_expires", true, SSH) {
        return;
    }
    let policy = Policy { bantime: "5s", ..Policy::default() };
    let s = setup(&["127.0.0.2"], &policy, 6);
    let o = s.login(Method::Password, "127.0.0.2", &["w1", "w2", "w3", "w4"]);
    assert!(o.denied(), "{o:#?}");
    let ban = s.fx.active_ban(SVC, "127.0.0.2").expect("banned");
    let expires = ban.expires.expect("a 5 s ban");
    assert_eq!(expires - ban.created, 5);
    let o = s.login(Method::Password, "127.0.0.2", &[TEST_PASSWORD]);
    assert!(!o.authenticated, "still banned: {o:#?}");
    assert!(s.fx.active_ban(SVC, "127.0.0.2").is_some(), "the refusal above happened during the ban");
    assert_eq!(s.truth.count_from("127.0.0.2"), 3);

    // Wait for the store to call the ban over (bounded: 5 s + slack).
    let start = Instant::now();
    assert!(eventually(Duration::from_secs(10), || s.fx.active_ban(SVC, "127.0.0.2").is_none()));
    assert!(start.elapsed() < Duration::from_secs(7), "ban outlived its bantime: {:?}", start.elapsed());
    let o = s.login(Method::KeyboardInteractive, "127.0.0.2", &[TEST_PASSWORD]);
    assert!(o.success(), "after the ban: {o:#?}\n{}", s.srv.log());
    assert_eq!(s.truth.count_from("127.0.0.2"), 4);
    s.settle("127.0.0.2", 0, 1);
    // The expired ban stays in the history.
    let bans = s.fx.all_bans("127.0.0.2");
    assert_eq!(bans.len(), 1, "{bans:?}");
}

/// An address covered by `ignoreip` is never counted or refused; an
/// address next to it, not covered, is (the control).
#[test]
fn ignoreip_sources_are_never_counted() {
    if !require("ignoreip_sources_are_never_counted", true, SSH) {
        return;
    }
    let policy = Policy { ignoreip: &["127.0.0.9/32"], ..Policy::default() };
    let s = setup(&["127.0.0.9", "127.0.0.10"], &policy, 10);
    let six = ["w1", "w2", "w3", "w4", "w5", "w6"];
    for method in [Method::Password, Method::KeyboardInteractive] {
        let o = s.login(method, "127.0.0.9", &six);
        assert!(o.denied(), "{method:?}: {o:#?}");
    }
    assert_eq!(s.truth.count_from("127.0.0.9"), 12, "every password of the ignored host evaluated");
    let o = s.login(Method::Password, "127.0.0.9", &[TEST_PASSWORD]);
    assert!(o.success(), "{o:#?}");
    assert!(!s.fx.db.exists(), "an ignored host never opens, so never creates, the store");

    let o = s.login(Method::Password, "127.0.0.10", &six);
    assert!(o.denied(), "{o:#?}");
    assert_eq!(s.truth.count_from("127.0.0.10"), 3, "the neighbour is counted");
    assert!(s.fx.active_ban(SVC, "127.0.0.10").is_some());
    assert_eq!(s.fx.rows(SVC, "127.0.0.9"), 0, "nothing recorded for the ignored host");
    assert!(s.fx.all_bans("127.0.0.9").is_empty());
}

/// IPv6 clients are counted per /64 (the default `ipv6_prefix`): a ban
/// earned from one address refuses its neighbour in the same /64, but
/// not an address in another /64.
#[test]
fn ipv6_sources_are_counted_per_64() {
    if !require("ipv6_sources_are_counted_per_64", true, SSH) {
        return;
    }
    let s = setup(&["2001:db8::2", "2001:db8::3", "2001:db8:0:1::2"], &Policy::default(), 6);
    let o = s.login(Method::Password, "2001:db8::2", &["w1", "w2", "w3", "w4"]);
    assert!(o.denied(), "{o:#?}\n{}", s.srv.log());
    assert_eq!(s.truth.count_from("2001:db8::2"), 3);
    let ban = s.fx.active_ban(SVC, "2001:db8::3").expect("the /64 is banned");
    assert_eq!(ban.host.db_key(), "2001:db8::/64");
    let o = s.login(Method::KeyboardInteractive, "2001:db8::3", &[TEST_PASSWORD]);
    assert!(!o.authenticated, "same /64 refused: {o:#?}");
    assert_eq!(s.truth.count_from("2001:db8::3"), 0);
    let o = s.login(Method::Password, "2001:db8:0:1::2", &[TEST_PASSWORD]);
    assert!(o.success(), "another /64 logs in: {o:#?}\n{}", s.srv.log());
}
