//! The account side against a real OpenSSH sshd: a botnet spraying one
//! account from 2,000 addresses (each its own /24 or /64, one wrong
//! password each, 16 at a time) gets the budget checked and no more,
//! while the account's owner keeps logging in from the network it logged
//! in from before, with a key from anywhere, and on the console.
//!
//! The ground truth is a `pam_exec` line right after banguard's, before
//! pam_unix: it sees exactly the passwords that got past banguard. Every
//! address lives on the namespace's lo; sshd listens on 127.0.0.1 and ::1
//! inside the namespace only.

use banguard_e2e::fixture::{Fixture, Policy};
use banguard_e2e::pamtest::{Confdir, Pam, password_lines, write_password_checker};
use banguard_e2e::sshd::{
    DEBIAN_SSHD_STACK, GroundTruth, Login, Method, SshOutcome, SshdOptions, SshdServer, TEST_PASSWORD,
    TEST_USER, with_auth_lines,
};
use banguard_e2e::{Netns, require};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

const SSH: &[&str] = &["unshare", "nsenter", "ip", "ss", "timeout", "sshd", "ssh", "ssh-keygen"];
/// Bots in the spray, and how many connect at once.
const BOTS: usize = 2000;
const AT_ONCE: usize = 16;
/// The bot that has the right password (after the budget is used up).
const LUCKY_BOT: usize = 1200;
const HOME: &str = "198.51.100.7";
const HOME_AGAIN: &str = "198.51.100.8";
const AWAY: &str = "203.0.113.5";

/// The n-th bot's address: the first half IPv4, each in its own /24; the
/// second half IPv6, each in its own /64.
fn bot(n: usize) -> String {
    if n < BOTS / 2 { format!("10.{}.{}.1", n / 256, n % 256) } else { format!("2001:db8:{:x}::1", n) }
}

struct Spray {
    srv: SshdServer,
    truth: GroundTruth,
    fx: Fixture,
    ns: Netns,
    key: PathBuf,
    _keys: tempfile::TempDir,
}

fn setup(accounts: &'static str, bots: usize) -> Spray {
    let mut ns = Netns::new();
    let mut addrs: Vec<String> = (0..bots).map(bot).collect();
    addrs.extend([HOME, HOME_AGAIN, "198.51.100.9", AWAY].map(String::from));
    ns.add_lo_addrs(&addrs);
    let fx = Fixture::new(&Policy { maxretry: 3, accounts, ..Policy::default() });
    let truth = GroundTruth::new();
    // The owner's key, authorised for the test user.
    let keys = tempfile::Builder::new().prefix("bg-e2e-keys.").tempdir().expect("tempdir");
    fs::set_permissions(keys.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let key = keys.path().join("id_ed25519");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "owner", "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
    let authorized = keys.path().join("authorized_keys");
    fs::copy(key.with_extension("pub"), &authorized).expect("authorized_keys");
    fs::set_permissions(&authorized, fs::Permissions::from_mode(0o644)).expect("chmod");
    let stack = with_auth_lines(DEBIAN_SSHD_STACK, &[&fx.module_line(""), &truth.pam_line()]);
    let extra_config = vec![
        "PubkeyAuthentication yes".to_string(),
        format!("AuthorizedKeysFile {}", authorized.display()),
        "StrictModes no".to_string(),
    ];
    let srv = SshdServer::start(&mut ns, SshdOptions { extra_config, ..SshdOptions::with_stack(&stack) });
    Spray { srv, truth, fx, ns, key, _keys: keys }
}

impl Spray {
    fn password(&self, source: &str, passwords: &[&str]) -> SshOutcome {
        self.srv.try_password(&self.ns, source, TEST_USER, passwords)
    }

    /// Bots `from..to`, `AT_ONCE` at a time, one password each; whether
    /// the lucky bot got in.
    fn spray(&self, from: usize, to: usize) -> bool {
        let mut lucky_in = false;
        let mut n = from;
        while n < to {
            let end = (n + AT_ONCE).min(to);
            let running: Vec<_> = (n..end)
                .map(|i| {
                    let pw = if i == LUCKY_BOT { TEST_PASSWORD } else { "Spr1ng2026!" };
                    (
                        i,
                        self.srv
                            .spawn_login(&self.ns, &Login::new(Method::Password, &bot(i), TEST_USER, &[pw])),
                    )
                })
                .collect();
            for (i, r) in running {
                let o = r.finish();
                assert!(!o.timed_out, "bot {i}: {o:#?}");
                if i == LUCKY_BOT {
                    lucky_in = o.authenticated;
                } else {
                    assert!(!o.authenticated, "bot {i} got in with a wrong password");
                }
            }
            n = end;
        }
        lucky_in
    }

    /// Passwords that reached pam_unix from the bots.
    fn checked_for_bots(&self, owner: usize) -> usize {
        self.truth.count() - owner
    }
}

#[test]
fn a_spray_from_2000_addresses_gets_the_budget_and_the_owner_keeps_logging_in() {
    if !require("a_spray_from_2000_addresses_gets_the_budget_and_the_owner_keeps_logging_in", true, SSH) {
        return;
    }
    let s = setup("learning = 0\n", BOTS);
    let budget = banguard::Config::default().accounts.budget as usize;
    // The owner logs in from home first: 198.51.100.0/24 becomes familiar.
    let o = s.password(HOME, &[TEST_PASSWORD]);
    assert!(o.success(), "{o:#?}\n{}", s.srv.log());
    let mut owner = 1;
    let familiar = s.fx.engine().familiar(Some(TEST_USER)).unwrap();
    assert_eq!(familiar.iter().map(|f| f.net.as_str()).collect::<Vec<_>>(), ["198.51.100.0/24"]);

    assert!(!s.spray(0, BOTS / 2));
    assert_eq!(s.checked_for_bots(owner), budget, "passwords from the bots that reached pam_unix");
    // Mid-attack: the owner from another address of the home network,
    // after two typos.
    let o = s.password(HOME_AGAIN, &["typo-1", "typo-2", TEST_PASSWORD]);
    assert!(o.success(), "{o:#?}\n{}", s.srv.log());
    assert_eq!(s.truth.count_from(HOME_AGAIN), 3);
    owner += 3;
    // From an unfamiliar place the owner's password is refused before it
    // is checked; the owner's key works.
    let o = s.password(AWAY, &[TEST_PASSWORD]);
    assert!(!o.authenticated, "{o:#?}");
    assert_eq!(s.truth.count_from(AWAY), 0);
    let key_login =
        Login { identity: Some(s.key.clone()), ..Login::new(Method::Password, AWAY, TEST_USER, &[]) };
    let o = s.srv.login(&s.ns, &key_login);
    assert!(o.success(), "the owner's key from anywhere: {o:#?}\n{}", s.srv.log());

    let lucky_in = s.spray(BOTS / 2, BOTS);
    assert!(!lucky_in, "the bot with the right password got in");
    assert_eq!(s.checked_for_bots(owner), budget, "passwords from the bots that reached pam_unix");
    // No host is banned for one try.
    let g = s.fx.engine();
    assert!(g.bans(None, false).unwrap().is_empty(), "{:?}", g.bans(None, false).unwrap());
    let locks = g.account_locks(Some(TEST_USER), true).unwrap();
    assert_eq!(locks.len(), 1, "{locks:?}");
    assert_eq!(locks[0].passwords as usize, budget);

    // A local login (no PAM_RHOST) through the same module line works.
    let conf = s.fx.dir().join("pam.d");
    let checker = s.fx.dir().join("checker.sh");
    write_password_checker(&checker, &s.fx.dir().join("local.log"), TEST_PASSWORD);
    let mut lines = vec![s.fx.module_line("")];
    lines.extend(password_lines(&checker));
    Confdir::new(&conf).service("login", &lines);
    let mut pam = Pam::start(&conf, "login", TEST_USER);
    pam.passwords([TEST_PASSWORD]);
    assert_eq!(pam.authenticate(), 0, "a console login");

    // The runtime state gone (a reboot): the familiar network and the lock
    // are still there.
    drop(g);
    fs::remove_file(s.fx.dir().join("db/banguard-runtime.db")).expect("remove the runtime state");
    let o = s.password("198.51.100.9", &[TEST_PASSWORD]);
    assert!(o.success(), "familiar after a reboot: {o:#?}\n{}", s.srv.log());
    owner += 1;
    let o = s.password(&bot(7), &["still-spraying"]);
    assert!(!o.authenticated);
    assert_eq!(s.checked_for_bots(owner), budget, "the lock held after a reboot");
}

#[test]
fn with_a_short_lock_one_unfamiliar_password_is_checked_per_lock_end() {
    if !require("with_a_short_lock_one_unfamiliar_password_is_checked_per_lock_end", true, SSH) {
        return;
    }
    let s = setup("learning = 0\nbudget = 2\nlock = \"2s\"\nlock_max = \"2s\"\n", 64);
    let run = |from: usize| {
        let running: Vec<_> = (from..from + 8)
            .map(|i| s.srv.spawn_login(&s.ns, &Login::new(Method::Password, &bot(i), TEST_USER, &["wrong"])))
            .collect();
        for r in running {
            assert!(!r.finish().authenticated);
        }
    };
    run(0);
    assert_eq!(s.truth.count(), 2, "the budget");
    for round in 1..=3 {
        std::thread::sleep(std::time::Duration::from_millis(2_500));
        run(round * 8);
        assert_eq!(s.truth.count(), 2 + round, "one more per lock end (round {round})");
    }
}

#[test]
fn with_the_account_side_off_every_password_of_the_spray_is_checked() {
    if !require("with_the_account_side_off_every_password_of_the_spray_is_checked", true, SSH) {
        return;
    }
    let s = setup("enabled = false\n", BOTS);
    let lucky_in = s.spray(0, BOTS);
    assert!(lucky_in, "the bot with the right password logs in");
    assert_eq!(s.truth.count(), BOTS);
    assert!(s.fx.engine().bans(None, false).unwrap().is_empty());
}
