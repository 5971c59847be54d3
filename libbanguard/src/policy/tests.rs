use super::*;
use crate::config::Config;
use std::path::Path;

const T0: i64 = 1_800_000_000;

fn engine(toml: &str) -> (Banguard, Arc<ManualClock>) {
    let config = Config::from_toml(Path::new("test.toml"), toml).unwrap();
    let clock = ManualClock::new(T0);
    (Banguard::in_memory(config, clock.clone()).unwrap(), clock)
}

fn req<'a>(service: &'a str, rhost: &'a str) -> Request<'a> {
    Request { service, rhost: Some(rhost), hint: None, user: Some("alice") }
}

fn allowed(v: &Verdict) -> (Option<AttemptId>, u32) {
    match v {
        Verdict::Allowed { attempt, used, .. } => (*attempt, *used),
        other => panic!("expected Allowed, got {other:?}"),
    }
}

fn refused(v: &Verdict) -> (&Ban, bool) {
    match v {
        Verdict::Refused { ban, new, .. } => (ban, *new),
        other => panic!("expected Refused, got {other:?}"),
    }
}

#[test]
fn single_line_lets_exactly_maxretry_through_then_bans() {
    let (mut g, _) = engine("[default]\nmaxretry = 3\n");
    let r = req("sshd", "198.51.100.7");
    for i in 1..=3 {
        assert_eq!(allowed(&g.attempt(&r, None).unwrap()).1, i);
    }
    let v = g.attempt(&r, None).unwrap();
    let (ban, new) = refused(&v);
    assert!(new);
    assert_eq!(ban.failures, 3);
    assert_eq!(ban.service, "sshd");
    assert_eq!(ban.expires, Some(T0 + 600));
    let (_, new) = refused(&g.attempt(&r, None).unwrap());
    assert!(!new, "second refusal reuses the ban");
    // Another host and another service are unaffected.
    assert_eq!(allowed(&g.attempt(&req("sshd", "198.51.100.8"), None).unwrap()).1, 1);
    assert_eq!(allowed(&g.attempt(&req("vsftpd", "198.51.100.7"), None).unwrap()).1, 1);
}

#[test]
fn success_gives_back_only_its_own_attempt() {
    let (mut g, _) = engine("[default]\nmaxretry = 3\n");
    let r = req("sshd", "198.51.100.7");
    g.attempt(&r, None).unwrap();
    let (id, used) = allowed(&g.attempt(&r, None).unwrap());
    assert_eq!(used, 2);
    assert!(g.record_success(&r, AttemptRef::Id(id.unwrap())).unwrap());
    // Giving it back twice does nothing.
    assert!(!g.record_success(&r, AttemptRef::Id(id.unwrap())).unwrap());
    assert_eq!(allowed(&g.attempt(&r, None).unwrap()).1, 2, "the earlier failure still counts");
}

#[test]
fn previous_attempt_on_the_handle_is_marked_failed_and_cannot_be_given_back() {
    let (mut g, _) = engine("[default]\nmaxretry = 5\n");
    let r = req("sshd", "198.51.100.7");
    let (first, _) = allowed(&g.attempt(&r, None).unwrap());
    let (_, used) = allowed(&g.attempt(&r, first).unwrap());
    assert_eq!(used, 2);
    assert!(!g.record_success(&r, AttemptRef::Id(first.unwrap())).unwrap());
}

#[test]
fn success_by_origin_pid_gives_back_the_newest_pending_attempt() {
    let (mut g, _) = engine("[default]\nmaxretry = 5\n");
    let r = req("sshd", "198.51.100.7");
    g.attempt(&r, None).unwrap();
    g.attempt(&r, None).unwrap();
    let me = std::process::id();
    assert!(g.record_success(&r, AttemptRef::Origin { pid: me }).unwrap());
    assert_eq!(allowed(&g.peek(&r).unwrap()).1, 1);
    // A different user's attempt is not given back.
    let other = Request { user: Some("bob"), ..r };
    assert!(!g.record_success(&other, AttemptRef::Origin { pid: me }).unwrap());
    assert!(!g.record_success(&r, AttemptRef::Origin { pid: 1 }).unwrap());
    // The newest attempt of this origin is spoken for: a second give-back
    // by origin must not hand back the older, failed one.
    assert!(!g.record_success(&r, AttemptRef::Origin { pid: me }).unwrap());
    assert_eq!(allowed(&g.peek(&r).unwrap()).1, 1);
}

#[test]
fn reset_on_success_is_opt_in() {
    let (mut g, _) = engine("[default]\nmaxretry = 5\nreset_on_success = true\n");
    let r = req("sshd", "198.51.100.7");
    g.record_failure(&r).unwrap();
    g.record_failure(&r).unwrap();
    g.record_success(&r, AttemptRef::None).unwrap();
    assert_eq!(allowed(&g.peek(&r).unwrap()).1, 0);
}

#[test]
fn explicit_modes_ban_on_the_maxretry_th_failure() {
    let (mut g, _) = engine("[default]\nmaxretry = 2\n");
    let r = req("sshd", "2001:db8::7");
    assert!(!g.check(&r).unwrap().is_refused());
    assert!(!g.record_failure(&r).unwrap().is_refused());
    let v = g.record_failure(&r).unwrap();
    assert!(refused(&v).1, "second failure bans");
    assert!(g.check(&r).unwrap().is_refused());
}

#[test]
fn bans_expire_and_the_host_starts_afresh() {
    let (mut g, clock) =
        engine("[default]\nmaxretry = 2\nbantime = \"1m\"\nfindtime = \"10m\"\nbantime_factor = 1.0\n");
    let r = req("sshd", "198.51.100.7");
    g.attempt(&r, None).unwrap();
    g.attempt(&r, None).unwrap();
    assert!(g.attempt(&r, None).unwrap().is_refused());
    clock.advance(59);
    assert!(g.attempt(&r, None).unwrap().is_refused());
    clock.advance(1);
    assert_eq!(allowed(&g.attempt(&r, None).unwrap()).1, 1, "ban consumed the old failures");
}

#[test]
fn window_forgets_old_failures() {
    let (mut g, clock) = engine("[default]\nmaxretry = 2\nfindtime = \"1m\"\n");
    let r = req("sshd", "198.51.100.7");
    g.attempt(&r, None).unwrap();
    clock.advance(61);
    assert_eq!(allowed(&g.attempt(&r, None).unwrap()).1, 1);
}

#[test]
fn ban_length_increases_for_repeat_bans() {
    let (mut g, clock) = engine(
        "[default]\nmaxretry = 1\nbantime = \"10m\"\nbantime_factor = 2.0\nbantime_max = \"30m\"\n[recidive]\nenabled = false\n",
    );
    let r = req("sshd", "198.51.100.7");
    let mut lengths = Vec::new();
    for _ in 0..4 {
        g.attempt(&r, None).unwrap();
        let v = g.attempt(&r, None).unwrap();
        let ban = refused(&v).0.clone();
        lengths.push(ban.length());
        clock.advance(ban.expires.unwrap() - clock.now());
    }
    use crate::duration::BanTime::Seconds;
    assert_eq!(lengths, vec![Seconds(600), Seconds(1200), Seconds(1800), Seconds(1800)]);
}

#[test]
fn repeat_offenders_get_an_all_services_firewall_ban() {
    let (mut g, clock) = engine(
        "[default]\nmaxretry = 1\nbantime = \"1m\"\nbantime_factor = 1.0\n[recidive]\nbans = 2\nfindtime = \"1h\"\nbantime = \"1d\"\n",
    );
    let r = req("sshd", "198.51.100.7");
    g.attempt(&r, None).unwrap();
    let first = refused(&g.attempt(&r, None).unwrap()).0.clone();
    assert!(!first.firewall);
    assert!(g.bans_to_push(SyncScope::Repeat).unwrap().is_empty());
    assert_eq!(g.bans_to_push(SyncScope::All).unwrap().len(), 1);
    clock.advance(61);
    g.attempt(&r, None).unwrap();
    let v = g.attempt(&r, None).unwrap();
    let ban = refused(&v).0;
    assert_eq!(ban.service, ALL_SERVICES);
    assert_eq!(ban.reason, "recidive");
    assert!(ban.firewall);
    assert_eq!(ban.expires, Some(clock.now() + 86_400));
    let status = g.status(Some("sshd")).unwrap();
    assert_eq!(status[0].currently_banned, 1, "one host, though two bans");
    // Now refused on every service.
    assert!(g.attempt(&req("vsftpd", "198.51.100.7"), None).unwrap().is_refused());
    let push = g.bans_to_push(SyncScope::Repeat).unwrap();
    assert_eq!(push.len(), 1);
    assert_eq!(push[0].host.to_string(), "198.51.100.7");
}

#[test]
fn ignoreip_disabled_and_local_are_untracked() {
    let (mut g, _) = engine(
        "[default]\nignoreip = [\"192.0.2.0/24\", \"2001:db8:aa::/48\"]\n[services.login]\nenabled = false\n",
    );
    let v = g.attempt(&req("sshd", "192.0.2.55"), None).unwrap();
    assert!(
        matches!(v, Verdict::Untracked { reason: Untracked::Ignored(n) } if n.to_string() == "192.0.2.0/24")
    );
    let v = g.attempt(&req("sshd", "::ffff:192.0.2.55"), None).unwrap();
    assert!(matches!(v, Verdict::Untracked { reason: Untracked::Ignored(_) }));
    let v = g.attempt(&req("sshd", "2001:db8:aa:1::1"), None).unwrap();
    assert!(matches!(v, Verdict::Untracked { reason: Untracked::Ignored(_) }));
    let v = g.attempt(&req("login", "198.51.100.7"), None).unwrap();
    assert_eq!(v, Verdict::Untracked { reason: Untracked::Disabled });
    let local = Request { service: "sshd", rhost: None, hint: None, user: None };
    assert_eq!(g.attempt(&local, None).unwrap(), Verdict::Untracked { reason: Untracked::Local });
    assert!(g.status(None).unwrap().iter().all(|s| s.total_failed == 0));
}

#[test]
fn ipv6_hosts_in_one_64_are_one_attacker() {
    let (mut g, _) = engine("[default]\nmaxretry = 2\n");
    g.attempt(&req("sshd", "2001:db8:1:2::1"), None).unwrap();
    g.attempt(&req("sshd", "2001:db8:1:2::2"), None).unwrap();
    let v = g.attempt(&req("sshd", "2001:db8:1:2:ffff::3"), None).unwrap();
    assert_eq!(refused(&v).0.host.to_string(), "2001:db8:1:2::/64");
    assert!(!g.attempt(&req("sshd", "2001:db8:1:3::1"), None).unwrap().is_refused());
}

#[test]
fn names_are_counted_but_never_pushed() {
    let (mut g, _) = engine("[default]\nmaxretry = 1\n[sync]\nscope = \"all\"\n");
    let r = req("vsftpd", "Dyn-42.Example.NET");
    g.attempt(&r, None).unwrap();
    let v = g.attempt(&r, None).unwrap();
    assert_eq!(refused(&v).0.host, HostKey::Name("dyn-42.example.net".into()));
    assert!(g.bans_to_push(SyncScope::All).unwrap().is_empty());
    // A hint (SSH_CONNECTION) wins over the name.
    let hinted = Request { hint: Some("198.51.100.9".parse().unwrap()), ..r };
    assert_eq!(allowed(&g.attempt(&hinted, None).unwrap()).1, 1);
}

#[test]
fn manual_network_ban_refuses_hosts_inside_and_unban_lifts_it() {
    let (mut g, _) = engine("");
    let net = HostKey::Net("203.0.113.0/24".parse().unwrap());
    let ban = g.ban(&net, None, BanTime::Permanent, "scanner").unwrap();
    assert!(ban.firewall);
    assert_eq!(ban.reason, "manual: scanner");
    let v = g.attempt(&req("sshd", "203.0.113.77"), None).unwrap();
    assert_eq!(refused(&v).0.id, ban.id);
    assert!(!g.attempt(&req("sshd", "203.0.114.1"), None).unwrap().is_refused());
    // Unbanning one address inside the network lifts the network ban.
    let lifted = g.unban(&HostKey::Net("203.0.113.77/32".parse().unwrap()), None).unwrap();
    assert_eq!(lifted.len(), 1);
    assert!(lifted[0].lifted.is_some());
    assert!(!g.attempt(&req("sshd", "203.0.113.77"), None).unwrap().is_refused());
    let kinds: Vec<String> = g.history(&net).unwrap().into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec!["ban", "unban"]);
}

#[test]
fn unban_resets_counts_and_respects_service() {
    let (mut g, _) = engine("[default]\nmaxretry = 2\n");
    let ssh = req("sshd", "198.51.100.7");
    let ftp = req("vsftpd", "198.51.100.7");
    for r in [&ssh, &ssh, &ftp, &ftp] {
        g.attempt(r, None).unwrap();
    }
    assert!(g.attempt(&ssh, None).unwrap().is_refused());
    assert!(g.attempt(&ftp, None).unwrap().is_refused());
    let host = HostKey::Net("198.51.100.7/32".parse().unwrap());
    assert_eq!(g.unban(&host, Some("sshd")).unwrap().len(), 1);
    assert!(!g.attempt(&ssh, None).unwrap().is_refused());
    assert!(g.attempt(&ftp, None).unwrap().is_refused(), "vsftpd ban stays");
    assert_eq!(g.unban_all(None).unwrap().len(), 1);
    assert!(g.bans(None, false).unwrap().is_empty());
    assert_eq!(g.bans(None, true).unwrap().len(), 2);
}

#[test]
fn listing_failing_status_and_history() {
    let (mut g, clock) = engine("[default]\nmaxretry = 3\n[services.sshd]\nmaxretry = 2\n");
    g.attempt(&req("sshd", "198.51.100.1"), None).unwrap();
    clock.advance(5);
    g.attempt(&req("vsftpd", "198.51.100.2"), None).unwrap();
    g.attempt(&req("sshd", "198.51.100.3"), None).unwrap();
    g.attempt(&req("sshd", "198.51.100.3"), None).unwrap();
    assert!(g.attempt(&req("sshd", "198.51.100.3"), None).unwrap().is_refused());
    let failing = g.failing(None).unwrap();
    let hosts: Vec<String> =
        failing.iter().map(|f| format!("{} {} {}/{}", f.host, f.service, f.count, f.maxretry)).collect();
    assert_eq!(hosts, vec!["198.51.100.2 vsftpd 1/3", "198.51.100.1 sshd 1/2"]);
    let status = g.status(Some("sshd")).unwrap();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].currently_failing, 1);
    assert_eq!(status[0].total_failed, 3);
    assert_eq!(status[0].currently_banned, 1);
    assert_eq!(status[0].total_banned, 1);
    assert_eq!(status[0].banned[0].to_string(), "198.51.100.3");
    let all = g.status(None).unwrap();
    assert_eq!(all.iter().map(|s| s.service.as_str()).collect::<Vec<_>>(), vec!["sshd", "vsftpd"]);
    let h = g.history(&HostKey::Net("198.51.100.3/32".parse().unwrap())).unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].detail, "banned on sshd for 10m after 2 failures in 10m");
}

#[test]
fn peek_writes_nothing() {
    let (mut g, _) = engine("[default]\nmaxretry = 1\n");
    let r = req("sshd", "198.51.100.7");
    g.attempt(&r, None).unwrap();
    for _ in 0..3 {
        assert_eq!(allowed(&g.peek(&r).unwrap()).1, 1);
    }
    assert!(g.bans(None, true).unwrap().is_empty());
}

#[test]
fn attempts_table_stays_bounded_under_a_flood() {
    let (mut g, _) = engine("[store]\nmax_failures = 100\n[default]\nmaxretry = 5\n");
    for i in 0..400u32 {
        let ip = format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255);
        g.attempt(&req("sshd", &ip), None).unwrap();
    }
    let rows: i64 =
        g.store().runtime_connection().query_row("SELECT count(*) FROM attempts", [], |r| r.get(0)).unwrap();
    // Pruned every 16th attempt: at most max_failures + 15 rows in between,
    // the newest max_failures right after (attempt 400 pruned).
    assert_eq!(rows, 100, "{rows} rows");
    let oldest: i64 =
        g.store().runtime_connection().query_row("SELECT min(id) FROM attempts", [], |r| r.get(0)).unwrap();
    assert_eq!(oldest, 301, "the oldest go first");
    for i in 400..415u32 {
        let ip = format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255);
        g.attempt(&req("sshd", &ip), None).unwrap();
        let rows: i64 = g
            .store()
            .runtime_connection()
            .query_row("SELECT count(*) FROM attempts", [], |r| r.get(0))
            .unwrap();
        assert!(rows <= 115, "{rows} rows");
    }
}

#[test]
fn maintain_prunes_and_repairs_a_clock_stepped_back() {
    let (mut g, clock) = engine("[default]\nmaxretry = 1\nbantime = \"1h\"\n[store]\nhistory = \"1d\"\n");
    let r = req("sshd", "198.51.100.7");
    g.attempt(&r, None).unwrap();
    assert!(g.attempt(&r, None).unwrap().is_refused());
    g.attempt(&req("sshd", "198.51.100.8"), None).unwrap();
    // The clock steps back a year: the ban must not last a year and an hour.
    clock.advance(-365 * 86_400);
    let report = g.maintain().unwrap();
    assert!(report.timestamps_fixed >= 2, "{report:?}");
    let ban = &g.bans(None, false).unwrap()[0];
    assert_eq!(ban.expires, Some(clock.now() + 3600));
    // Forward again past history: everything old goes, but for the newest
    // ban row (ids are never given again: the metrics count bans by id).
    clock.advance(3 * 86_400);
    g.ban(
        &HostKey::Net("203.0.113.9/32".parse().unwrap()),
        Some("sshd"),
        BanTime::Seconds(60),
        "manual test",
    )
    .unwrap();
    clock.advance(3 * 86_400);
    let report = g.maintain().unwrap();
    assert_eq!(report.attempts_pruned, 1);
    assert_eq!(report.bans_pruned, 1);
    assert!(report.events_pruned >= 1);
    let left = g.bans(None, true).unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].host.to_string(), "203.0.113.9");
}

#[test]
fn outbox_queues_notices_when_mail_is_on() {
    let (mut g, _) = engine("[default]\nmaxretry = 1\n[mail]\nenabled = true\n");
    let r = req("sshd", "198.51.100.7");
    g.attempt(&r, None).unwrap();
    g.attempt(&r, None).unwrap();
    let pending = g.pending_notices().unwrap();
    assert_eq!(pending.len(), 1);
    let (id, tries, ban) = &pending[0];
    assert_eq!((*tries, ban.host.to_string().as_str()), (0, "198.51.100.7"));
    g.notice_failed(*id, "sendmail exited 75").unwrap();
    assert_eq!(g.pending_notices().unwrap()[0].1, 1);
    g.notice_sent(*id).unwrap();
    assert!(g.pending_notices().unwrap().is_empty());
}

#[test]
fn a_ban_has_one_wording_for_the_history_and_the_logs() {
    let (mut g, _) = engine("[default]\nmaxretry = 2\n[recidive]\nbans = 1\n");
    let r = req("sshd", "198.51.100.7");
    g.attempt(&r, None).unwrap();
    g.attempt(&r, None).unwrap();
    let v = g.attempt(&r, None).unwrap();
    let all = refused(&v).0.clone();
    // The recidive rule fired at once (bans = 1): the all-services ban wins.
    assert_eq!(
        all.wording(g.config(), true),
        "repeat offender: banned 198.51.100.7 on all services for 1w after 1 bans in 1d"
    );
    let sshd = g.bans(Some("sshd"), false).unwrap().into_iter().find(|b| b.service == "sshd").unwrap();
    assert_eq!(sshd.wording(g.config(), true), "banned 198.51.100.7 on sshd for 10m after 2 failures in 10m");
    let net = HostKey::Net("2001:db8::/64".parse().unwrap());
    let manual = g.ban(&net, None, BanTime::Seconds(3600), "evil").unwrap();
    assert_eq!(
        manual.wording(g.config(), true),
        "banned 2001:db8::/64 on all services for 1h (manual: evil)"
    );
    // The history holds the same words without the host.
    let events: Vec<String> = [&sshd.host, &net]
        .into_iter()
        .flat_map(|h| g.history(h).unwrap())
        .filter(|e| e.kind == "ban")
        .map(|e| e.detail)
        .collect();
    for ban in [&sshd, &all, &manual] {
        assert!(events.contains(&ban.wording(g.config(), false)), "{events:?}");
    }
}

#[test]
fn long_user_names_are_capped_on_a_char_boundary() {
    let (mut g, _) = engine("");
    let long = "é".repeat(1000);
    let r = Request { user: Some(&long), ..req("sshd", "198.51.100.7") };
    g.attempt(&r, None).unwrap();
    let stored: String =
        g.store().runtime_connection().query_row("SELECT user FROM attempts", [], |row| row.get(0)).unwrap();
    assert_eq!(stored.len(), 256);
    assert!(stored.chars().all(|c| c == 'é'));
    // The success of the same (long) user still finds its attempt.
    assert!(g.record_success(&r, AttemptRef::Origin { pid: std::process::id() }).unwrap());
}

#[test]
fn the_ban_copy_follows_every_change_and_heals_when_it_fell_behind() {
    let (mut g, _) = engine("[default]\nmaxretry = 1\n[recidive]\nenabled = false\n");
    let mirror = |g: &Banguard| -> Vec<i64> {
        let conn = g.store().runtime_connection();
        let mut stmt = conn.prepare("SELECT id FROM bans ORDER BY id").unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    let generations = |g: &Banguard| -> (i64, i64) {
        let store: i64 =
            g.store().durable().unwrap().query_row("SELECT value FROM generation", [], |r| r.get(0)).unwrap();
        let copy: i64 = g
            .store()
            .runtime_connection()
            .query_row("SELECT generation FROM mirror", [], |r| r.get(0))
            .unwrap();
        (store, copy)
    };
    // An automatic ban, a manual one, an unban: the copy follows each.
    g.record_failure(&req("sshd", "198.51.100.7")).unwrap();
    let manual =
        g.ban(&HostKey::for_addr("192.0.2.9".parse().unwrap(), 32, 64), None, BanTime::Seconds(60), "x");
    let manual = manual.unwrap();
    assert_eq!(mirror(&g), vec![1, manual.id]);
    g.unban(&manual.host, None).unwrap();
    assert_eq!(mirror(&g), vec![1]);
    let (store, copy) = generations(&g);
    assert_eq!(store, copy, "in step");
    // A crash between the two commits: the store has a ban the copy lacks.
    let durable = g.store().durable().unwrap();
    durable
        .execute_batch(
            "INSERT INTO bans (host, family, prefix, service, created, expires, reason, failures, prior_bans)
               VALUES ('203.0.113.5/32', 4, 32, 'sshd', 1800000000, NULL, 'maxretry', 1, 0);
             UPDATE generation SET value = value + 1;",
        )
        .unwrap();
    let lost = durable.last_insert_rowid();
    assert!(!g.attempt(&req("sshd", "203.0.113.5"), None).unwrap().is_refused(), "the copy is behind");
    // The next change of the bans notices and copies afresh.
    g.record_failure(&req("sshd", "198.51.100.8")).unwrap();
    assert!(mirror(&g).contains(&lost), "{:?}", mirror(&g));
    assert!(g.attempt(&req("sshd", "203.0.113.5"), None).unwrap().is_refused());
    let (store, copy) = generations(&g);
    assert_eq!(store, copy);
    // So does the sync job's maintenance.
    g.store()
        .runtime_connection()
        .execute_batch("DELETE FROM bans; UPDATE mirror SET generation = -1;")
        .unwrap();
    g.maintain().unwrap();
    assert_eq!(mirror(&g).len(), 3);
}

#[test]
fn total_failed_counts_every_failure_once_wherever_its_row_went() {
    let (mut g, clock) =
        engine("[default]\nmaxretry = 5\nfindtime = \"1m\"\n[services.vsftpd]\nreset_on_success = true\n");
    let total =
        |g: &Banguard, service: &str| g.status(Some(service)).unwrap().first().map_or(0, |s| s.total_failed);
    // Failures stay counted while their rows are in the table ...
    for _ in 0..3 {
        g.record_failure(&req("sshd", "198.51.100.1")).unwrap();
    }
    g.record_failure(&req("sshd", "198.51.100.4")).unwrap();
    // ... a success given back never counts ...
    let Verdict::Allowed { attempt: Some(id), .. } = g.attempt(&req("sshd", "198.51.100.2"), None).unwrap()
    else {
        panic!("attempt not recorded")
    };
    assert!(g.record_success(&req("sshd", "198.51.100.2"), AttemptRef::Id(id)).unwrap());
    // ... a pending attempt counts as a failure until given back.
    g.attempt(&req("sshd", "198.51.100.3"), None).unwrap();
    assert_eq!(total(&g, "sshd"), 5);

    // Rows cleared by an unban, pruned by maintenance or reset by a
    // success keep their count.
    g.unban(&HostKey::Net("198.51.100.1/32".parse().unwrap()), Some("sshd")).unwrap();
    assert_eq!(g.failing(Some("sshd")).unwrap().len(), 2, "198.51.100.1 starts afresh");
    assert_eq!(total(&g, "sshd"), 5);
    clock.advance(120);
    assert_eq!(g.maintain().unwrap().attempts_pruned, 3);
    assert!(g.failing(None).unwrap().is_empty());
    assert_eq!(total(&g, "sshd"), 5);
    g.record_failure(&req("vsftpd", "198.51.100.5")).unwrap();
    let Verdict::Allowed { attempt: Some(id), .. } = g.attempt(&req("vsftpd", "198.51.100.5"), None).unwrap()
    else {
        panic!("attempt not recorded")
    };
    assert!(g.record_success(&req("vsftpd", "198.51.100.5"), AttemptRef::Id(id)).unwrap());
    assert!(g.failing(Some("vsftpd")).unwrap().is_empty(), "reset_on_success cleared the host");
    assert_eq!(total(&g, "vsftpd"), 1);
    assert_eq!(total(&g, "sshd"), 5);
}

fn escalated(v: &Verdict) -> bool {
    matches!(v, Verdict::Refused { escalated: true, .. })
}

#[test]
fn a_host_that_keeps_knocking_goes_to_the_kernel_one_that_stops_does_not() {
    let (mut g, _) =
        engine("[default]\nmaxretry = 3\n[recidive]\nenabled = false\n[sync]\nescalate_after = 5\n");
    let knocker = req("sshd", "198.51.100.7");
    let quiet = req("sshd", "198.51.100.8");
    for r in [&knocker, &quiet] {
        for _ in 0..3 {
            g.attempt(r, None).unwrap();
        }
        let v = g.attempt(r, None).unwrap();
        let (ban, new) = refused(&v);
        assert!(new && !ban.firewall, "a first ban is PAM's only");
    }
    // The quiet host tries twice more and stops: PAM only, its key logins
    // (which never reach the PAM auth stack) keep working.
    for _ in 0..2 {
        assert!(!escalated(&g.attempt(&quiet, None).unwrap()));
    }
    // A peek (banguardctl test) never counts as knocking.
    for _ in 0..10 {
        assert!(g.peek(&knocker).unwrap().is_refused());
    }
    // The knocker's 5th refusal after its ban sends it to the kernel, once.
    for i in 1..=4 {
        assert!(!escalated(&g.attempt(&knocker, None).unwrap()), "refusal {i}");
    }
    let v = g.attempt(&knocker, None).unwrap();
    assert!(escalated(&v));
    let (ban, _) = refused(&v);
    assert!(ban.firewall);
    assert_eq!(ban.kernel_reason(&g.config().sync), Some("kept knocking"));
    assert!(!escalated(&g.attempt(&knocker, None).unwrap()), "escalated once");
    let push = g.bans_to_push(SyncScope::Repeat).unwrap();
    let hosts: Vec<String> = push.iter().map(|b| b.host.to_string()).collect();
    assert_eq!(hosts, ["198.51.100.7"], "only the knocker goes to the kernel");
    let history = g.history(&HostKey::for_addr("198.51.100.7".parse().unwrap(), 32, 64)).unwrap();
    let escalation = history.iter().find(|e| e.kind == "escalate").expect("an escalate event");
    assert!(
        escalation.detail.starts_with("kept knocking: 5 attempts refused while banned on sshd"),
        "{escalation:?}"
    );
    assert_eq!(
        g.bans(None, false)
            .unwrap()
            .iter()
            .find(|b| b.host == ban.host)
            .unwrap()
            .kernel_reason(&g.config().sync),
        Some("kept knocking")
    );
}

#[test]
fn knocking_never_escalates_what_cannot_be_blocked_or_is_switched_off() {
    // A name label, a loopback host: PAM only, however often they knock.
    let (mut g, _) = engine("[default]\nmaxretry = 1\nignoreip = []\n[recidive]\nenabled = false\n");
    for rhost in ["host.example", "127.0.0.5"] {
        let r = req("sshd", rhost);
        g.attempt(&r, None).unwrap();
        for _ in 0..20 {
            assert!(!escalated(&g.attempt(&r, None).unwrap()), "{rhost}");
        }
    }
    assert!(g.bans_to_push(SyncScope::Repeat).unwrap().is_empty());
    // scope = "all" pushes every ban anyway: nothing to count.
    let (mut g, _) =
        engine("[default]\nmaxretry = 1\n[recidive]\nenabled = false\n[sync]\nscope = \"all\"\n");
    let r = req("sshd", "198.51.100.10");
    g.attempt(&r, None).unwrap();
    for _ in 0..20 {
        assert!(!escalated(&g.attempt(&r, None).unwrap()));
    }
    let refused: i64 = g.store.runtime.query_row("SELECT sum(refused) FROM bans", [], |r| r.get(0)).unwrap();
    assert_eq!(refused, 0, "no refusal was written");
    // escalate_after = 0: never.
    let (mut g, _) =
        engine("[default]\nmaxretry = 1\n[recidive]\nenabled = false\n[sync]\nescalate_after = 0\n");
    let r = req("sshd", "198.51.100.9");
    g.attempt(&r, None).unwrap();
    for _ in 0..20 {
        assert!(!escalated(&g.attempt(&r, None).unwrap()));
    }
    assert!(g.bans_to_push(SyncScope::Repeat).unwrap().is_empty());
}

fn foreign(host: &str, service: &str, created: i64, expires: Option<i64>, carried: u32) -> ForeignBan {
    ForeignBan {
        host: HostKey::from_db_key(host).unwrap(),
        service: service.into(),
        created,
        expires,
        reason: format!("jail {service}"),
        origin: BanOrigin::Fail2ban,
        failures: 5,
        carried,
        firewall: true,
    }
}

#[test]
fn imported_bans_refuse_once_each_and_their_counts_lengthen_the_next_ban() {
    let (mut g, clock) = engine(
        "[default]\nmaxretry = 2\nbantime = \"10m\"\nignoreip = [\"192.0.2.7\"]\n[recidive]\nenabled = false\n",
    );
    let bans = [
        foreign("198.51.100.7/32", "sshd", T0 - 60, Some(T0 + 540), 2),
        foreign("2001:db8::/64", "sshd", T0 - 60, None, 0),
        foreign("203.0.113.9/32", "sshd", T0 - 900, Some(T0 - 300), 0),
        foreign("192.0.2.7/32", "sshd", T0 - 60, Some(T0 + 540), 0),
    ];
    let planned = g.plan_import(&bans).unwrap();
    assert!(g.bans(None, false).unwrap().is_empty(), "a plan writes nothing");
    let answers = g.import_bans(&bans).unwrap();
    for (plan, done) in planned.iter().zip(&answers) {
        match (plan, done) {
            (Imported::New(p), Imported::New(d)) => assert_eq!(Ban { id: d.id, ..p.clone() }, *d),
            (p, d) => assert_eq!(p, d),
        }
    }
    let Imported::New(first) = &answers[0] else { panic!("{answers:?}") };
    assert_eq!(
        (first.origin, first.expires, first.created, first.firewall),
        (BanOrigin::Fail2ban, Some(T0 + 540), T0 - 60, true)
    );
    assert_eq!(first.wording(g.config(), false), "banned on sshd for 10m (from fail2ban: jail sshd)");
    assert!(matches!(&answers[1], Imported::New(b) if b.expires.is_none()));
    assert_eq!(answers[2], Imported::Over);
    assert!(matches!(&answers[3], Imported::Refused(why) if why.contains("192.0.2.7")), "{answers:?}");
    // The module refuses the host before any password; fail2ban had put
    // it in the firewall, so sync pushes it whatever the scope.
    let v = g.attempt(&req("sshd", "198.51.100.7"), None).unwrap();
    let (ban, new) = refused(&v);
    assert!(!new);
    assert_eq!(ban.kernel_reason(&g.config().sync), Some("fail2ban ban"));
    assert!(matches!(g.attempt(&req("sshd", "2001:db8::5"), None).unwrap(), Verdict::Refused { .. }));
    // Running the import again changes nothing.
    let again = g.import_bans(&bans).unwrap();
    assert!(matches!(&again[0], Imported::Present(b) if b.id == first.id), "{again:?}");
    assert_eq!(g.bans(None, false).unwrap().len(), 2);
    // Once it ends, the host's next ban counts fail2ban's two earlier
    // bans and this one: 10m doubled three times.
    clock.set(T0 + 600);
    let r = req("sshd", "198.51.100.7");
    g.attempt(&r, None).unwrap();
    g.attempt(&r, None).unwrap();
    let v = g.attempt(&r, None).unwrap();
    let (ban, new) = refused(&v);
    assert!(new);
    assert_eq!((ban.origin, ban.prior_bans, ban.expires), (BanOrigin::Banguard, 3, Some(T0 + 600 + 4800)));
}

// ----- the fleet: decisions taken as bans, by what they are -----

fn decision(host: &str, ends_in: i64, origin: &str) -> FleetDecision {
    FleetDecision {
        host: HostKey::from_db_key(host).unwrap(),
        expires: T0 + ends_in,
        scenario: "crowdsecurity/ssh-bf".into(),
        origin: origin.into(),
    }
}

fn pull(startup: bool, new: Vec<FleetDecision>, deleted: &[&str]) -> FleetPull {
    FleetPull {
        startup,
        new,
        deleted: deleted.iter().map(|h| HostKey::from_db_key(h).unwrap()).collect(),
        ..FleetPull::default()
    }
}

/// Until when `host` is refused on sshd, if it is.
fn refused_until(g: &mut Banguard, host: &str) -> Option<Option<i64>> {
    match g.peek(&req("sshd", host)).unwrap() {
        Verdict::Refused { ban, .. } => Some(ban.expires),
        _ => None,
    }
}

#[test]
fn a_longer_decision_for_a_host_already_held_is_enforced_for_its_whole_length() {
    let (mut g, clock) = engine("");
    let a = g.fleet_apply(&pull(false, vec![decision("198.51.100.7/32", 20, "cscli")], &[]), 100).unwrap();
    assert_eq!(a.taken, 1);
    // The same host, 8760 h: a ban of its own, not "already held".
    let a = g
        .fleet_apply(&pull(false, vec![decision("198.51.100.7/32", 8760 * 3600, "cscli")], &[]), 100)
        .unwrap();
    assert_eq!((a.taken, a.longer, a.present), (1, 1, 0));
    clock.advance(30);
    assert_eq!(refused_until(&mut g, "198.51.100.7"), Some(Some(T0 + 8760 * 3600)), "the short one ended");
    // Seen again: nothing new.
    let a = g
        .fleet_apply(&pull(false, vec![decision("198.51.100.7/32", 8760 * 3600 - 30, "cscli")], &[]), 100)
        .unwrap();
    assert_eq!((a.taken, a.present), (0, 1));
}

#[test]
fn a_full_pull_reconciles_whatever_became_of_the_ids() {
    let (mut g, _) = engine("");
    let year = 365 * 86_400;
    let held = vec![
        decision("192.0.2.1/32", year, "cscli"),
        decision("192.0.2.2/32", year, "cscli"),
        decision("192.0.2.3/32", 3600, "cscli"),
    ];
    assert_eq!(g.fleet_apply(&pull(true, held, &[]), 100).unwrap().taken, 3);
    // The LAPI's database was reset: a full pull lists other decisions
    // (ids from 1 again, which nothing here looks at); .2 is listed with a
    // shorter decision (its year-long one was deleted meanwhile).
    let listed = vec![
        decision("192.0.2.2/32", 600, "cscli"),
        decision("192.0.2.3/32", 3600, "cscli"),
        decision("198.51.100.1/32", 600, "crowdsec"),
        decision("198.51.100.2/32", 600, "crowdsec"),
    ];
    let a = g.fleet_apply(&pull(true, listed, &[]), 100).unwrap();
    assert_eq!((a.taken, a.present, a.lifted), (3, 1, 2), "{a:?}");
    assert_eq!(refused_until(&mut g, "192.0.2.1"), None, "no longer listed: lifted");
    assert_eq!(refused_until(&mut g, "192.0.2.2"), Some(Some(T0 + 600)), "the year-long ban is gone");
    assert_eq!(refused_until(&mut g, "192.0.2.3"), Some(Some(T0 + 3600)));
    assert!(refused_until(&mut g, "198.51.100.2").is_some());
    // A host named twice in one pull (ties, dedup=false): one ban, the longest.
    let (mut g, _) = engine("");
    let twice = vec![decision("203.0.113.9/32", 60, "cscli"), decision("203.0.113.9/32", 600, "cscli")];
    let a = g.fleet_apply(&pull(false, twice, &[]), 100).unwrap();
    assert_eq!(a.taken, 1);
    assert_eq!(refused_until(&mut g, "203.0.113.9"), Some(Some(T0 + 600)));
    // Deleted by value: every ban of the host goes, whatever id was sent.
    let a = g.fleet_apply(&pull(false, vec![], &["203.0.113.9/32"]), 100).unwrap();
    assert_eq!(a.lifted, 1);
    assert_eq!(refused_until(&mut g, "203.0.113.9"), None);
}

#[test]
fn ours_coming_back_an_admins_unban_and_the_rules_of_a_manual_ban() {
    let (mut g, _) = engine("[default]\nignoreip = [\"192.0.2.0/24\"]\n");
    let mine =
        g.ban(&HostKey::from_db_key("198.51.100.7/32").unwrap(), None, BanTime::Seconds(3600), "").unwrap();
    let a = g
        .fleet_apply(
            &pull(
                false,
                vec![
                    decision("198.51.100.7/32", 3598, "banguard"),
                    decision("192.0.2.0/28", 600, "cscli"),
                    decision("0.0.0.0/0", 600, "cscli"),
                ],
                &[],
            ),
            100,
        )
        .unwrap();
    assert_eq!((a.ours, a.taken), (1, 0), "{a:?}");
    assert_eq!(a.refused.total(), 2);
    // Ours for longer than the local ban (another server's, say): taken.
    let a =
        g.fleet_apply(&pull(false, vec![decision("198.51.100.7/32", 7200, "banguard")], &[]), 100).unwrap();
    assert_eq!(a.taken, 1);
    // The admin unbans the host: the fleet's ban is held, a full pull
    // listing the same decision does not bring it back...
    let lifted = g.unban(&HostKey::from_db_key("198.51.100.7/32").unwrap(), None).unwrap();
    assert_eq!(lifted.len(), 2);
    assert!(lifted.iter().any(|b| b.id == mine.id));
    let a =
        g.fleet_apply(&pull(true, vec![decision("198.51.100.7/32", 7199, "banguard")], &[]), 100).unwrap();
    assert_eq!((a.held, a.taken), (1, 0));
    assert_eq!(refused_until(&mut g, "198.51.100.7"), None);
    // ... but a longer one, new, is.
    let a =
        g.fleet_apply(&pull(false, vec![decision("198.51.100.7/32", 86_400, "cscli")], &[]), 100).unwrap();
    assert_eq!(a.taken, 1);
}

#[test]
fn the_cap_counts_hosts_held_and_writing_is_batched() {
    let (mut g, _) = engine("");
    let many: Vec<FleetDecision> = (0..5000u32)
        .map(|i| decision(&format!("10.0.{}.{}/32", i / 256, i % 256), 600, "crowdsec"))
        .collect();
    let a = g.fleet_apply(&pull(true, many.clone(), &[]), 3000).unwrap();
    assert_eq!((a.taken, a.over_cap), (3000, 2000));
    assert_eq!(a.taken_shown.len(), 10);
    assert_eq!(g.fleet_status().unwrap().imported_active, 3000);
    // A full pull without them lifts all 3000, in batches.
    let a = g.fleet_apply(&pull(true, vec![], &[]), 3000).unwrap();
    assert_eq!(a.lifted, 3000);
    assert_eq!(g.fleet_status().unwrap().imported_active, 0);
}
