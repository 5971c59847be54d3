//! The account side of the engine.

use super::*;
use crate::config::Config;
use std::path::Path;

const T0: i64 = 1_800_000_000;

/// No learning, a budget of 3, a one-minute lock, unless `extra` says.
fn engine(extra: &str) -> (Banguard, Arc<ManualClock>) {
    let mut accounts = String::new();
    for (key, value) in [("learning", "0"), ("budget", "3"), ("lock", "60")] {
        if !extra.contains(&format!("{key} =")) {
            accounts.push_str(&format!("{key} = {value}\n"));
        }
    }
    let (accounts_extra, other) = match extra.split_once("[mail]") {
        Some((a, m)) => (a.to_string(), format!("[mail]{m}")),
        None => (extra.to_string(), String::new()),
    };
    let text = format!(
        "[default]\nmaxretry = 5\n[recidive]\nenabled = false\n[accounts]\n{accounts}{accounts_extra}{other}"
    );
    let config = Config::from_toml(Path::new("test.toml"), &text).unwrap();
    let clock = ManualClock::new(T0);
    (Banguard::in_memory(config, clock.clone()).unwrap(), clock)
}

fn from<'a>(rhost: &'a str, user: &'a str) -> Request<'a> {
    Request { service: "sshd", rhost: Some(rhost), hint: None, user: Some(user) }
}

/// The i-th address of a spray: each in its own /24 (and /64).
fn bot(i: u32) -> String {
    format!("10.{}.{}.1", i / 256 % 256, i % 256)
}

fn checked(v: &Verdict) -> bool {
    matches!(v, Verdict::Allowed { .. })
}

#[test]
fn a_spray_from_many_addresses_gets_the_budget_and_no_host_is_banned_for_one_try() {
    let (mut g, _) = engine("");
    let mut through = 0;
    for i in 0..200 {
        let v = g.attempt(&from(&bot(i), "admin"), None).unwrap();
        if checked(&v) {
            through += 1;
        } else {
            let Verdict::AccountLocked { account, used, .. } = &v else { panic!("{v:?}") };
            assert_eq!(account.account, "admin");
            assert_eq!(*used, 1, "the refusal counts as one failure of that host");
            assert_eq!(account.new_lock, i == 3, "attempt {i}");
        }
    }
    assert_eq!(through, 3);
    assert!(g.bans(None, false).unwrap().is_empty(), "no host banned for one try");
    let locks = g.account_locks(Some("admin"), true).unwrap();
    assert_eq!(locks.len(), 1);
    assert_eq!((locks[0].passwords, locks[0].sources), (3, 4));
    // Another account is untouched.
    assert!(checked(&g.attempt(&from(&bot(500), "alice"), None).unwrap()));
}

#[test]
fn a_source_that_keeps_knocking_on_a_locked_account_ends_up_banned() {
    let (mut g, _) = engine("");
    for i in 0..4 {
        g.attempt(&from(&bot(i), "admin"), None).unwrap();
    }
    let r = from("203.0.113.9", "admin");
    for _ in 0..5 {
        assert!(matches!(g.attempt(&r, None).unwrap(), Verdict::AccountLocked { .. }));
    }
    let (ban, new) = match g.attempt(&r, None).unwrap() {
        Verdict::Refused { ban, new, .. } => (ban, new),
        other => panic!("{other:?}"),
    };
    assert!(new);
    assert_eq!(ban.failures, 5);
}

#[test]
fn the_owner_from_a_familiar_network_is_never_refused_and_typos_do_not_lock() {
    let (mut g, _) = engine("");
    let home = from("198.51.100.7", "Admin");
    let Verdict::Allowed { attempt: Some(id), .. } = g.attempt(&home, None).unwrap() else { panic!() };
    g.record_success(&home, AttemptRef::Id(id)).unwrap();
    let fam = g.familiar(Some("admin")).unwrap();
    assert_eq!(fam.len(), 1);
    assert_eq!((fam[0].net.as_str(), fam[0].origin.as_str()), ("198.51.100.0/24", "login"));
    for i in 0..50 {
        g.attempt(&from(&bot(i), "admin"), None).unwrap();
    }
    assert_eq!(g.account_locks(Some("admin"), true).unwrap().len(), 1);
    // Two typos then the right password, from another address of the /24.
    let typo = from("198.51.100.44", "admin");
    for _ in 0..2 {
        let v = g.attempt(&typo, None).unwrap();
        let Verdict::Allowed { account: Some(a), .. } = &v else { panic!("{v:?}") };
        assert_eq!(a.familiar.as_deref(), Some("198.51.100.0/24"));
    }
    let Verdict::Allowed { attempt: Some(id), .. } = g.attempt(&typo, None).unwrap() else { panic!() };
    assert!(g.record_success(&typo, AttemptRef::Id(id)).unwrap());
    // A local login is never read.
    let local = Request { service: "login", rhost: None, hint: None, user: Some("admin") };
    assert!(matches!(g.attempt(&local, None).unwrap(), Verdict::Untracked { reason: Untracked::Local }));
}

#[test]
fn one_unfamiliar_attempt_per_lock_end_and_each_relock_is_longer() {
    let (mut g, clock) = engine("lock_max = \"1h\"\n");
    for i in 0..4 {
        g.attempt(&from(&bot(i), "admin"), None).unwrap();
    }
    let mut lock = 60;
    for round in 0..4 {
        clock.advance(lock);
        assert!(checked(&g.attempt(&from(&bot(100 + round * 10), "admin"), None).unwrap()), "round {round}");
        for k in 1..5 {
            let v = g.attempt(&from(&bot(100 + round * 10 + k), "admin"), None).unwrap();
            assert!(matches!(v, Verdict::AccountLocked { .. }), "round {round} attempt {k}: {v:?}");
        }
        let until = g.account_locks(Some("admin"), true).unwrap()[0].until;
        lock *= 2;
        assert_eq!(until - clock.now(), lock, "round {round}");
    }
}

#[test]
fn a_success_gives_its_share_back_and_never_brings_the_account_closer_to_a_lock() {
    let (mut g, _) = engine("");
    g.attempt(&from(&bot(1), "admin"), None).unwrap();
    let away = from("192.0.2.50", "admin");
    let Verdict::Allowed { attempt: Some(id), account: Some(a), .. } = g.attempt(&away, None).unwrap() else {
        panic!()
    };
    assert_eq!(a.used, 2);
    g.record_success(&away, AttemptRef::Id(id)).unwrap();
    assert_eq!(g.accounts().unwrap()[0].used, 1);
}

#[test]
fn learning_logs_the_lock_it_would_make_and_refuses_nothing() {
    // Learning starts with the first unfamiliar attempt.
    let (mut g, clock) = engine("learning = \"1d\"\n");
    assert_eq!(g.learning().unwrap(), None);
    let mut new_locks = 0;
    for i in 0..20 {
        match g.attempt(&from(&bot(i), "admin"), None).unwrap() {
            Verdict::Allowed { account: Some(a), .. } => new_locks += u32::from(a.new_lock),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(new_locks, 1);
    assert_eq!(g.learning().unwrap(), Some((T0, T0 + 86_400)));
    assert!(g.account_locks(None, false).unwrap().is_empty());
    let events = g.account_events(Some("admin")).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, "would-lock");
    assert!(events[0].detail.contains("learning"), "{}", events[0].detail);
    clock.advance(86_400);
    // Learning over: the lock's doubling is remembered, the spray goes on.
    let mut through = 0;
    for i in 100..120 {
        through += u32::from(checked(&g.attempt(&from(&bot(i), "admin"), None).unwrap()));
    }
    assert!(through <= 4, "{through}");
}

#[test]
fn names_are_bounded_normalised_and_a_flood_of_names_shares_one_budget() {
    let (mut g, _) = engine("max_tracked = 100\n");
    let long = "A".repeat(4096);
    for (i, name) in ["ADMIN ", "admin", "\tAdmin", &long].iter().enumerate() {
        g.attempt(&from(&bot(i as u32), name), None).unwrap();
    }
    let names: Vec<String> = g.accounts().unwrap().into_iter().map(|a| a.account).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().all(|n| n.len() <= crate::account::MAX_KEY));
    let evil = "x\n\u{1b}[31mroot\u{202e}";
    g.attempt(&from(&bot(9), evil), None).unwrap();
    assert!(g.accounts().unwrap().iter().all(|a| !a.account.chars().any(crate::text::is_unsafe)));
    for i in 0..1000 {
        g.attempt(&from(&bot(1000 + i), &format!("made-up-{i}")), None).unwrap();
    }
    let tracked = g.accounts().unwrap();
    assert!(tracked.len() <= 101, "{} rows", tracked.len());
    assert!(tracked.iter().any(|a| a.account == crate::account::OVERFLOW));
    // An empty name is no account: the host side alone.
    let v = g.attempt(&from(&bot(3000), ""), None).unwrap();
    assert!(matches!(v, Verdict::Allowed { account: None, .. }), "{v:?}");
}

#[test]
fn admins_unlock_and_add_and_remove_familiar_networks() {
    let (mut g, _) = engine("");
    for i in 0..4 {
        g.attempt(&from(&bot(i), "admin"), None).unwrap();
    }
    let office = HostKey::Net("203.0.113.0/24".parse().unwrap());
    g.add_familiar("admin", &office, "root").unwrap();
    assert!(checked(&g.attempt(&from("203.0.113.77", "admin"), None).unwrap()));
    assert!(g.remove_familiar("admin", &office, "root").unwrap());
    assert!(!checked(&g.attempt(&from("203.0.113.78", "admin"), None).unwrap()));
    let wide = HostKey::Net("0.0.0.0/0".parse().unwrap());
    let err = g.add_familiar("admin", &wide, "root").unwrap_err().to_string();
    assert!(err.contains("wider than /8"), "{err}");
    assert!(g.unlock_account("admin", "root").unwrap());
    assert!(checked(&g.attempt(&from(&bot(50), "admin"), None).unwrap()));
    let kinds: Vec<String> = g.account_events(Some("admin")).unwrap().into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds, ["lock", "familiar", "unfamiliar", "unlock"]);
}

#[test]
fn peek_and_check_take_nothing_and_preauth_authfail_count_failures() {
    let (mut g, _) = engine("");
    for i in 0..3 {
        let addr = bot(i);
        let r = from(&addr, "admin");
        assert!(checked(&g.peek(&r).unwrap()));
        assert!(checked(&g.check(&r).unwrap()));
    }
    assert!(g.accounts().unwrap().is_empty());
    for i in 0..3 {
        g.record_failure(&from(&bot(i), "admin")).unwrap();
    }
    // The budget is used: the next failure locks (already checked: the
    // explicit mode cannot reserve), and preauth refuses from then on.
    let v = g.record_failure(&from(&bot(3), "admin")).unwrap();
    assert!(matches!(&v, Verdict::AccountLocked { account, .. } if account.new_lock), "{v:?}");
    assert!(matches!(g.check(&from(&bot(4), "admin")).unwrap(), Verdict::AccountLocked { .. }));
    assert!(matches!(g.peek(&from(&bot(5), "admin")).unwrap(), Verdict::AccountLocked { .. }));
}

#[test]
fn familiar_networks_and_locks_survive_a_new_runtime_state() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let text = format!(
        "[default]\ndatabase = \"{d}/banguard.db\"\n[store]\nruntime = \"{d}/run/runtime.db\"\n\
         [recidive]\nenabled = false\n[accounts]\nlearning = 0\nbudget = 3\nlock = \"1h\"\n"
    );
    let config = Config::from_toml(Path::new("test.toml"), &text).unwrap();
    let clock = ManualClock::new(T0);
    let mut g = Banguard::open_with(config.clone(), crate::store::Access::ReadWrite, clock.clone()).unwrap();
    let home = from("198.51.100.7", "admin");
    let Verdict::Allowed { attempt: Some(id), .. } = g.attempt(&home, None).unwrap() else { panic!() };
    g.record_success(&home, AttemptRef::Id(id)).unwrap();
    for i in 0..4 {
        g.attempt(&from(&bot(i), "admin"), None).unwrap();
    }
    drop(g);
    std::fs::remove_file(dir.path().join("run/runtime.db")).unwrap();
    let mut g = Banguard::open_with(config, crate::store::Access::ReadWrite, clock.clone()).unwrap();
    assert!(checked(&g.attempt(&from("198.51.100.8", "admin"), None).unwrap()), "familiar after a reboot");
    assert!(matches!(g.attempt(&from(&bot(77), "admin"), None).unwrap(), Verdict::AccountLocked { .. }));
    clock.advance(3600);
    // The probe after the lock, then a longer relock: no fresh budget.
    assert!(checked(&g.attempt(&from(&bot(78), "admin"), None).unwrap()));
    assert!(matches!(g.attempt(&from(&bot(79), "admin"), None).unwrap(), Verdict::AccountLocked { .. }));
}

fn fleet_lock(account: &str, expires: i64, origin: &str) -> FleetAccountLock {
    FleetAccountLock {
        account: account.into(),
        expires,
        scenario: "banguard/account-spray".into(),
        origin: origin.into(),
    }
}

#[test]
fn fleet_locks_refuse_unfamiliar_sources_and_are_reconciled_by_value() {
    let (mut g, clock) = engine("");
    let home = from("198.51.100.7", "admin");
    let Verdict::Allowed { attempt: Some(id), .. } = g.attempt(&home, None).unwrap() else { panic!() };
    g.record_success(&home, AttemptRef::Id(id)).unwrap();
    let pull = FleetPull {
        accounts: vec![fleet_lock("admin", T0 + 600, "banguard"), fleet_lock("admin", T0 + 60, "banguard")],
        ..FleetPull::default()
    };
    let applied = g.fleet_apply(&pull, 1000).unwrap();
    assert_eq!(applied.accounts_locked, 1);
    assert!(matches!(g.attempt(&from(&bot(1), "admin"), None).unwrap(), Verdict::AccountLocked { .. }));
    assert!(checked(&g.attempt(&from("198.51.100.9", "admin"), None).unwrap()), "familiar: unaffected");
    // Seen again: nothing new.
    assert_eq!(g.fleet_apply(&pull, 1000).unwrap().present, 1);
    // Deleted by value.
    let gone = FleetPull { accounts_deleted: vec!["admin".into()], ..FleetPull::default() };
    assert_eq!(g.fleet_apply(&gone, 1000).unwrap().accounts_lifted, 1);
    assert!(checked(&g.attempt(&from(&bot(2), "admin"), None).unwrap()));
    // A full pull lifts what it no longer lists; an admin's unlock holds.
    g.fleet_apply(
        &FleetPull { accounts: vec![fleet_lock("bob", T0 + 600, "x")], ..FleetPull::default() },
        1000,
    )
    .unwrap();
    let full = FleetPull { startup: true, ..FleetPull::default() };
    assert_eq!(g.fleet_apply(&full, 1000).unwrap().accounts_lifted, 1);
    g.fleet_apply(
        &FleetPull { accounts: vec![fleet_lock("carol", T0 + 600, "x")], ..FleetPull::default() },
        1000,
    )
    .unwrap();
    g.unlock_account("carol", "root").unwrap();
    clock.advance(10);
    let again = g.fleet_apply(
        &FleetPull { accounts: vec![fleet_lock("carol", T0 + 600, "x")], ..FleetPull::default() },
        1000,
    );
    assert_eq!(again.unwrap().held, 1);
}

#[test]
fn locks_made_here_go_to_the_fleet_once_and_come_back_as_ours() {
    let (mut g, _) = engine("");
    for i in 0..4 {
        g.attempt(&from(&bot(i), "admin"), None).unwrap();
    }
    let out = g.fleet_locks_to_export().unwrap();
    assert_eq!(out.len(), 1);
    g.fleet_lock_exported(out[0].id, false).unwrap();
    assert!(g.fleet_locks_to_export().unwrap().is_empty());
    let back =
        FleetPull { accounts: vec![fleet_lock("admin", out[0].until, "banguard")], ..FleetPull::default() };
    assert_eq!(g.fleet_apply(&back, 1000).unwrap().ours, 1);
    g.unlock_account("admin", "root").unwrap();
    assert_eq!(g.fleet_locks_to_withdraw().unwrap().len(), 1);
}

#[test]
fn a_new_lock_queues_a_mail_notice_when_mail_is_on() {
    let (mut g, _) = engine("[mail]\nenabled = true\nto = \"root\"\n");
    for i in 0..4 {
        g.attempt(&from(&bot(i), "admin"), None).unwrap();
    }
    let pending = g.pending_lock_notices().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].2.account, "admin");
    assert!(g.pending_notices().unwrap().is_empty(), "not a ban notice");
}

#[test]
fn the_success_line_makes_the_network_familiar_without_a_recorded_attempt() {
    let (mut g, _) = engine("");
    g.password_proven(&from("198.51.100.7", "admin")).unwrap();
    assert_eq!(g.familiar(Some("admin")).unwrap()[0].net, "198.51.100.0/24");
    // A local login proves nothing about a network.
    let local = Request { service: "login", rhost: None, hint: None, user: Some("bob") };
    g.password_proven(&local).unwrap();
    assert!(g.familiar(Some("bob")).unwrap().is_empty());
}

#[test]
fn the_shared_budget_can_be_unlocked_and_never_goes_to_the_fleet() {
    let (mut g, _) = engine("max_tracked = 100\n");
    for i in 0..100 {
        g.attempt(&from(&bot(i), &format!("name-{i}")), None).unwrap();
    }
    for i in 0..5 {
        g.attempt(&from(&bot(200 + i), "bob"), None).unwrap();
    }
    assert!(matches!(g.attempt(&from(&bot(300), "bob"), None).unwrap(), Verdict::AccountLocked { .. }));
    assert!(g.fleet_locks_to_export().unwrap().iter().all(|l| l.account != crate::account::OVERFLOW));
    assert!(!g.unlock_account("bob", "root").unwrap(), "bob has no budget of his own");
    assert!(g.unlock_account("*", "root").unwrap());
    assert!(checked(&g.attempt(&from(&bot(301), "bob"), None).unwrap()));
}

#[test]
fn the_fleet_holds_at_most_a_tenth_of_max_tracked_accounts_locked() {
    let (mut g, _) = engine("max_tracked = 100\n");
    let accounts = (0..50).map(|i| fleet_lock(&format!("junk-{i}"), T0 + 86_400, "x")).collect();
    let applied = g.fleet_apply(&FleetPull { accounts, ..FleetPull::default() }, 1_000_000).unwrap();
    assert_eq!((applied.accounts_locked, applied.over_cap), (10, 40));
    // New accounts keep budgets of their own.
    for i in 0..3 {
        assert!(checked(&g.attempt(&from(&bot(i), "newcomer"), None).unwrap()));
    }
}
