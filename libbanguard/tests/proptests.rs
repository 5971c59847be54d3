//! Property tests of the parsers and the hosts.deny rewriter: everything an
//! operator or a remote client can put in front of banguard (config text,
//! durations, PAM_RHOST, the text of /etc/hosts.deny).
//!
//! Bounded for CI: each property runs a fixed number of cases (see
//! `cases`), the whole file takes a few seconds in debug. Failures found
//! are kept twice: proptest's seed file `tests/regressions/proptests.txt`
//! (replayed first on every run) and, for each bug fixed, an explicit
//! `#[test]` at the end of this file.

use banguard::addr::{self, AddrClass, HostKey, Origin};
use banguard::config::Config;
use banguard::duration::{BanTime, MAX_SECONDS, format_duration, parse_duration};
use banguard::error::Error;
use banguard::sync::FirewallEntry;
use banguard::sync::hosts_deny::{BEGIN, END, block_entries, rewrite_block};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

const SEEDS: &str = "tests/regressions/proptests.txt";

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(SEEDS))),
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------- config

const CONFIG_PATH: &str = "/etc/banguard/banguard.d/50-fuzz.toml";

/// Every section and key the config knows, plus a few it does not.
const SECTIONS: &[(&str, &[&str])] = &[
    (
        "default",
        &[
            "database",
            "enabled",
            "maxretry",
            "findtime",
            "bantime",
            "bantime_factor",
            "bantime_max",
            "bantime_lookback",
            "ignoreip",
            "failmode",
            "ipv4_prefix",
            "ipv6_prefix",
            "reset_on_success",
            "refusal_delay",
        ],
    ),
    (
        "services.sshd",
        &[
            "enabled",
            "maxretry",
            "findtime",
            "bantime",
            "bantime_factor",
            "bantime_max",
            "ignoreip",
            "failmode",
            "ipv4_prefix",
            "ipv6_prefix",
            "database",
        ],
    ),
    ("services.\"odd name\"", &["maxretry", "bantime", "enabled"]),
    ("recidive", &["enabled", "bans", "findtime", "bantime"]),
    ("sync", &["backends", "scope", "hosts_deny", "trigger_file", "lock_file"]),
    ("mail", &["enabled", "to", "from", "sendmail"]),
    ("store", &["synchronous", "busy_timeout_ms", "max_failures", "history"]),
    ("bogus", &["maxretry"]),
];

fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        (-3i64..200).prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        any::<bool>().prop_map(|b| b.to_string()),
        Just("\"permanent\"".to_string()),
        Just("-1".to_string()),
        "[0-9]{0,4}[smhdwxy]?".prop_map(|s| format!("{s:?}")),
        "[0-9]{1,3}[smhdw][0-9]{1,3}[smhdw]".prop_map(|s| format!("\"{s}\"")),
        prop::sample::select(vec![
            "\"open\"",
            "\"closed\"",
            "\"repeat\"",
            "\"all\"",
            "\"normal\"",
            "\"off\"",
            "\"root\"",
            "\"root; rm -rf /\"",
            "[\"nftables\", \"hosts.deny\"]",
            "[\"pf\"]",
            "[\"192.0.2.0/24\", \"::1\"]",
            "[\"192.0.2.0/33\"]",
            "[]",
            "{}",
            "\"/var/lib/banguard/x.db\"",
            "1979-05-27T07:32:00Z",
            "\"unterminated",
            "",
        ])
        .prop_map(str::to_string),
        "\\PC{0,12}",
    ]
}

fn toml_line() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (0..SECTIONS.len(), any::<prop::sample::Index>(), toml_value())
            .prop_map(|(s, k, v)| format!("{} = {v}", k.get(SECTIONS[s].1))),
        2 => (0..SECTIONS.len()).prop_map(|s| format!("[{}]", SECTIONS[s].0)),
        1 => Just(String::new()),
        1 => "# \\PC{0,20}",
        1 => "\\PC{0,30}",
    ]
}

fn toml_doc() -> impl Strategy<Value = String> {
    (prop::collection::vec(toml_line(), 0..16), prop::bool::ANY)
        .prop_map(|(lines, nl)| lines.join("\n") + if nl { "\n" } else { "" })
}

/// The config error contract: names the file and, when it gives a line,
/// one that exists in the text.
fn check_config(text: &str) -> Result<(), TestCaseError> {
    match Config::from_toml(Path::new(CONFIG_PATH), text) {
        Ok(c) => {
            prop_assert!(c.default.maxretry >= 1);
            prop_assert!(c.default.findtime > 0);
        }
        Err(e) => {
            let shown = e.to_string();
            prop_assert!(shown.starts_with(CONFIG_PATH), "error does not name the file: {shown}");
            match e {
                Error::Config { line, .. } => {
                    // Positions can be at the very end of the text, after
                    // its last newline: split('\n') counts that line too.
                    let lines = text.split('\n').count();
                    let line = line.ok_or_else(|| TestCaseError::fail(format!("no line: {shown}")))?;
                    prop_assert!((1..=lines).contains(&line), "line {line} of {lines}: {shown}");
                }
                other => prop_assert!(false, "unexpected error kind {}: {other}", other.kind()),
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(3000))]

    #[test]
    fn config_arbitrary_text_never_panics(text in "\\PC{0,200}") {
        check_config(&text)?;
    }

    #[test]
    fn config_tomlish_documents_errors_name_a_real_line(text in toml_doc()) {
        check_config(&text)?;
    }
}

// -------------------------------------------------------------- duration

fn duration_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,24}",
        "[ +-]?[0-9]{0,22}",
        "( ?[0-9]{0,8}[smhdwSMHDWx]?){0,6} ?",
        (0..=MAX_SECONDS).prop_map(format_duration),
    ]
}

proptest! {
    #![proptest_config(cases(5000))]

    #[test]
    fn duration_parse_never_panics_and_is_consistent(text in duration_text()) {
        if let Ok(n) = parse_duration(&text) {
            prop_assert!((0..=MAX_SECONDS).contains(&n), "{text:?} -> {n}");
            prop_assert_eq!(parse_duration(&format_duration(n)), Ok(n), "{:?}", text);
        }
        match BanTime::parse(&text) {
            Ok(BanTime::Seconds(n)) => prop_assert!(n > 0 && n <= MAX_SECONDS),
            Ok(BanTime::Permanent) | Err(_) => {}
        }
    }

    #[test]
    fn duration_format_round_trips(n in 0..=MAX_SECONDS) {
        let shown = format_duration(n);
        prop_assert_eq!(parse_duration(&shown), Ok(n), "{}", shown);
        prop_assert!(shown.chars().all(|c| c.is_ascii_digit() || "smhdw".contains(c)), "{}", shown);
    }

    #[test]
    fn duration_sums_units(parts in prop::collection::vec((0i64..100_000, prop::sample::select(vec![
        ('s', 1i64), ('m', 60), ('h', 3600), ('d', 86_400), ('w', 604_800),
    ])), 1..5)) {
        let text: String = parts.iter().map(|(n, (u, _))| format!("{n}{u}")).collect();
        let sum: i64 = parts.iter().map(|(n, (_, m))| n * m).sum();
        match parse_duration(&text) {
            Ok(v) => prop_assert_eq!(v, sum),
            Err(e) => prop_assert!(sum > MAX_SECONDS && e.contains("100 years"), "{text}: {e}"),
        }
    }
}

// ------------------------------------------------------- address / RHOST

fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

fn ipv6() -> impl Strategy<Value = Ipv6Addr> {
    prop_oneof![
        any::<u128>().prop_map(Ipv6Addr::from),
        // Dense in the interesting corners: mapped, compatible, link-local.
        any::<u32>().prop_map(|v| Ipv6Addr::from(0xffff_0000_0000u128 | u128::from(v))),
        any::<u32>().prop_map(|v| Ipv6Addr::from(u128::from(v))),
        any::<u64>().prop_map(|v| Ipv6Addr::from((0xfe80u128 << 112) | u128::from(v))),
    ]
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![ipv4().prop_map(IpAddr::V4), ipv6().prop_map(IpAddr::V6)]
}

/// What PAM_RHOST can hold: literals in every spelling, names, garbage.
fn rhost() -> impl Strategy<Value = String> {
    prop_oneof![
        ip().prop_map(|a| a.to_string()),
        ipv6().prop_map(|a| format!("[{a}]")),
        (ipv6(), "[a-z0-9]{0,8}").prop_map(|(a, z)| format!("{a}%{z}")),
        ipv4().prop_map(|a| format!("::ffff:{a}")),
        "[a-zA-Z0-9.-]{0,64}\\.?",
        "\\PC{0,300}",
        "[ \\t\\n;|&$`'\"\\\\]{0,10}",
        Just(".".repeat(300)),
    ]
}

fn check_label(label: &str) -> Result<(), TestCaseError> {
    prop_assert!(label.len() <= 253, "label of {} bytes", label.len());
    prop_assert!(
        label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-?".contains(&b)),
        "label {label:?}"
    );
    Ok(())
}

proptest! {
    #![proptest_config(cases(5000))]

    #[test]
    fn rhost_parsing_never_panics_and_labels_are_safe(r in rhost(), hint in prop::option::of(ip())) {
        let parsed = addr::parse_addr(&r);
        let _ = addr::parse_net(&r);
        let _ = addr::parse_ssh_connection(&r);
        check_label(&addr::name_label(&r))?;
        match addr::origin(Some(&r), hint) {
            Origin::Addr(a) => {
                prop_assert!(!r.trim().is_empty());
                // A literal wins; the hint only stands in for a non-literal.
                let want = parsed.or(hint.map(addr::canonical));
                prop_assert_eq!(Some(a), want);
                prop_assert_eq!(a, addr::canonical(a), "origin is canonical");
            }
            Origin::Name(n) => {
                prop_assert!(parsed.is_none() && hint.is_none());
                check_label(&n)?;
                // A label never reads as an address: names never reach a firewall.
                prop_assert_eq!(addr::parse_addr(&n), None, "{:?}", n);
                let key = HostKey::Name(n);
                prop_assert!(key.net().is_none());
                prop_assert_eq!(HostKey::from_db_key(&key.db_key()), Some(key));
            }
            // Without PAM_RHOST a login is local, whatever SSH_CONNECTION says.
            Origin::Local => prop_assert!(r.trim().is_empty()),
        }
    }

    #[test]
    fn ipv4_mapped_ipv6_is_its_ipv4(v4 in ipv4(), p4 in 0u8..=32, p6 in 0u8..=128) {
        let mapped = v4.to_ipv6_mapped();
        for text in [format!("::ffff:{v4}"), mapped.to_string(), format!("[{mapped}]"), format!("{mapped}%eth0")] {
            prop_assert_eq!(addr::parse_addr(&text), Some(IpAddr::V4(v4)), "{}", text);
        }
        prop_assert_eq!(
            HostKey::for_addr(IpAddr::V6(mapped), p4, p6),
            HostKey::for_addr(IpAddr::V4(v4), p4, p6)
        );
        prop_assert_eq!(addr::origin(Some("host.example"), Some(IpAddr::V6(mapped))), Origin::Addr(IpAddr::V4(v4)));
        let net = addr::parse_net(&format!("::ffff:{v4}/{}", 96 + p4)).unwrap();
        prop_assert_eq!(net, IpNet::V4(Ipv4Net::new(v4, p4).unwrap().trunc()));
    }

    #[test]
    fn host_keys_round_trip_through_the_store_text(a in ip(), p4 in 0u8..=40, p6 in 0u8..=140) {
        let key = HostKey::for_addr(a, p4, p6);
        let net = key.net().unwrap();
        prop_assert_eq!(net, net.trunc(), "host bits cleared");
        prop_assert!(net.contains(&addr::canonical(a)));
        prop_assert_eq!(HostKey::from_db_key(&key.db_key()), Some(key.clone()));
        // What people read parses back to the same network.
        let shown = key.to_string();
        let again = addr::parse_net(&shown).map(HostKey::Net);
        prop_assert_eq!(again, Ok(key), "{}", shown);
    }
}

// ------------------------------------------------------- address classes

/// An address of a class that is not plain unicast, with its class.
fn special_addr() -> impl Strategy<Value = (IpAddr, AddrClass)> {
    prop_oneof![
        any::<u32>()
            .prop_map(|x| (IpAddr::V4(Ipv4Addr::from(0x7f00_0000 | (x & 0x00ff_ffff))), AddrClass::Loopback)),
        any::<u16>().prop_map(|x| {
            let [hi, lo] = x.to_be_bytes();
            (IpAddr::V4(Ipv4Addr::new(169, 254, hi, lo)), AddrClass::LinkLocal)
        }),
        any::<u32>().prop_map(|x| (
            IpAddr::V4(Ipv4Addr::from(0xe000_0000 | (x & 0x0fff_ffff))),
            AddrClass::Multicast
        )),
        Just((IpAddr::V4(Ipv4Addr::BROADCAST), AddrClass::Broadcast)),
        Just((IpAddr::V4(Ipv4Addr::UNSPECIFIED), AddrClass::Unspecified)),
        Just((IpAddr::V6(Ipv6Addr::UNSPECIFIED), AddrClass::Unspecified)),
        Just((IpAddr::V6(Ipv6Addr::LOCALHOST), AddrClass::Loopback)),
        any::<u64>().prop_map(|x| (
            IpAddr::V6(Ipv6Addr::from((0xfe80u128 << 112) | u128::from(x))),
            AddrClass::LinkLocal
        )),
        any::<u128>()
            .prop_map(|x| (IpAddr::V6(Ipv6Addr::from((0xffu128 << 120) | (x >> 8))), AddrClass::Multicast)),
    ]
}

/// An address inside `net`: its network with random host bits.
fn inside(net: &IpNet, bits: u128) -> IpAddr {
    match net {
        IpNet::V4(n) => {
            IpAddr::V4(Ipv4Addr::from(u32::from(n.network()) | (bits as u32 & u32::from(n.hostmask()))))
        }
        IpNet::V6(n) => {
            IpAddr::V6(Ipv6Addr::from(u128::from(n.network()) | (bits & u128::from(n.hostmask()))))
        }
    }
}

/// A network small enough to carve exhaustively in a property (IPv4 /16
/// and longer, IPv6 /48 and longer).
fn carvable_net() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (ipv4(), 16u8..=32).prop_map(|(a, p)| IpNet::V4(Ipv4Net::new(a, p).unwrap().trunc())),
        (ipv6(), 48u8..=128).prop_map(|(a, p)| IpNet::V6(Ipv6Net::new(a, p).unwrap().trunc())),
    ]
}

proptest! {
    #![proptest_config(cases(500))]

    #[test]
    fn special_addresses_are_keyed_alone_and_never_blocked(
        (a, class) in special_addr(),
        p4 in 8u8..=32,
        p6 in 16u8..=128,
        zone in prop::option::of("[a-z][a-z0-9]{0,7}"),
    ) {
        let text = match (a, zone) {
            (IpAddr::V6(_), Some(z)) => format!("{a}%{z}"),
            _ => a.to_string(),
        };
        let parsed = addr::parse_addr(&text).unwrap();
        prop_assert_eq!(addr::classify(parsed), class, "{}", text);
        let net = HostKey::for_addr(parsed, p4, p6).net().unwrap();
        prop_assert_eq!(net.prefix_len(), net.max_prefix_len(), "{} keyed alone, not as {}", text, net);
        // Whatever the floor: never into a firewall.
        prop_assert!(addr::block_refusal(&net, 1, 1).is_some(), "{}", net);
        if let IpAddr::V4(v4) = parsed {
            prop_assert_eq!(addr::classify(IpAddr::V6(v4.to_ipv6_mapped())), class);
        }
    }

    #[test]
    fn unicast_hosts_are_keyed_at_the_prefix_and_may_be_blocked(a in ip(), p4 in 16u8..=32, p6 in 32u8..=128) {
        prop_assume!(addr::classify(a) == AddrClass::Unicast);
        let net = HostKey::for_addr(a, p4, p6).net().unwrap();
        let want = if net.addr().is_ipv4() { p4 } else { p6 };
        prop_assert_eq!(net.prefix_len(), want);
        // Keyed at a prefix no wider than the floor, a unicast key may be
        // pushed unless its network starts in a special range.
        let special_start = addr::classify(net.network()) != AddrClass::Unicast;
        prop_assert_eq!(addr::block_refusal(&net, 16, 32).is_none(), !special_start, "{}", net);
    }

    #[test]
    fn carving_covers_exactly_what_is_not_kept(
        base in carvable_net(),
        keeps in prop::collection::vec((any::<u128>(), 0u8..=16), 0..4),
        probes in prop::collection::vec(any::<u128>(), 1..48),
    ) {
        let keep: Vec<IpNet> = keeps
            .iter()
            .map(|(bits, extra)| {
                let a = inside(&base, *bits);
                let len = (base.prefix_len() + extra).min(base.max_prefix_len());
                IpNet::new(a, len).unwrap().trunc()
            })
            .collect();
        let pieces = addr::carve(base, &keep);
        for (i, p) in pieces.iter().enumerate() {
            prop_assert!(base.contains(p), "{} outside {}", p, base);
            for q in &pieces[i + 1..] {
                prop_assert!(!p.contains(&q.network()) && !q.contains(&p.network()), "{} and {} overlap", p, q);
            }
        }
        let addrs = probes.iter().map(|b| inside(&base, *b)).chain(keep.iter().map(|k| k.network()));
        for a in addrs {
            let kept = keep.iter().any(|k| k.contains(&a));
            let blocked = pieces.iter().filter(|p| p.contains(&a)).count();
            prop_assert_eq!(blocked, usize::from(!kept), "{} in {} (keep {:?}): {:?}", a, base, keep, pieces);
        }
    }
}

// ------------------------------------------------------------ hosts.deny

const BEGIN_PREFIX: &str = "# BEGIN banguard";
const END_PREFIX: &str = "# END banguard";

fn deny_line() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-zA-Z0-9:.#/ \\t\\[\\]-]{0,40}",
        2 => "\\PC{0,30}",
        2 => Just("ALL: PARANOID".to_string()),
        1 => Just(BEGIN.to_string()),
        1 => Just(END.to_string()),
        1 => Just(format!("{BEGIN_PREFIX} (edited by hand)")),
        1 => Just(format!("{END_PREFIX}   ")),
        1 => Just(format!("  {BEGIN}")),
        1 => ipv4().prop_map(|a| format!("ALL: {a}")),
    ]
}

/// Lines joined with \n or \r\n, with or without a final newline. Half of
/// the texts get a well-formed block somewhere, so that the Ok path is
/// exercised as much as the refusals.
fn deny_text() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(deny_line(), 0..12),
        prop::collection::vec(deny_line(), 0..6),
        prop::option::of(any::<prop::sample::Index>()),
        prop::bool::ANY,
        prop::bool::ANY,
    )
        .prop_map(|(mut lines, inside, block_at, crlf, final_nl)| {
            if let Some(at) = block_at {
                let mut block = vec![BEGIN.to_string()];
                block.extend(
                    inside.into_iter().filter(|l| !l.starts_with(BEGIN_PREFIX) && !l.starts_with(END_PREFIX)),
                );
                block.push(END.to_string());
                // Only well-formed if the rest holds no markers.
                lines.retain(|l| {
                    !l.trim_end().starts_with(BEGIN_PREFIX) && !l.trim_end().starts_with(END_PREFIX)
                });
                let at = at.index(lines.len() + 1);
                lines.splice(at..at, block);
            }
            let sep = if crlf { "\r\n" } else { "\n" };
            let mut text = lines.join(sep);
            if final_nl && !text.is_empty() {
                text.push_str(sep);
            }
            text
        })
}

fn net() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (ipv4(), 1u8..=32).prop_map(|(a, p)| IpNet::V4(Ipv4Net::new(a, p).unwrap())),
        (ipv4(), 1u8..=32).prop_map(|(a, p)| IpNet::V4(Ipv4Net::new(a, p).unwrap().trunc())),
        (ipv6(), 1u8..=128).prop_map(|(a, p)| IpNet::V6(Ipv6Net::new(a, p).unwrap())),
        (ipv6(), 1u8..=128).prop_map(|(a, p)| IpNet::V6(Ipv6Net::new(a, p).unwrap().trunc())),
    ]
}

fn entries() -> impl Strategy<Value = Vec<FirewallEntry>> {
    prop::collection::vec(
        (net(), prop::option::of(any::<i64>()))
            .prop_map(|(net, expires_at)| FirewallEntry { net, expires_at }),
        0..10,
    )
}

/// Byte ranges of the marker lines (`trim_end().starts_with(prefix)`),
/// computed independently of the code under test.
fn marker_lines(text: &str, prefix: &str) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_end().starts_with(prefix) {
            out.push((i + 1, offset, offset + line.len()));
        }
        offset += line.len();
    }
    out
}

proptest! {
    #![proptest_config(cases(3000))]

    #[test]
    fn hosts_deny_rewrite_keeps_the_rest_and_holds_exactly_the_entries(
        original in deny_text(),
        entries in entries(),
    ) {
        let begins = marker_lines(&original, BEGIN_PREFIX);
        let ends = marker_lines(&original, END_PREFIX);
        let result = rewrite_block(&original, &entries);
        let well_formed = match (begins.as_slice(), ends.as_slice()) {
            ([], []) => true,
            ([(b, _, _)], [(e, _, _)]) => b < e,
            _ => false,
        };
        let out = match result {
            Err(err) => {
                prop_assert!(!well_formed, "refused a well-formed file: {err}");
                let line_count = original.split_inclusive('\n').count();
                prop_assert!((1..=line_count).contains(&err.line), "line {} of {line_count}", err.line);
                prop_assert!(
                    begins.iter().chain(&ends).any(|(n, _, _)| *n == err.line),
                    "line {} is not a marker line: {err}", err.line
                );
                let prefix = format!("line {}: ", err.line);
                prop_assert!(err.to_string().starts_with(&prefix), "{err}");
                return Ok(());
            }
            Ok(out) => {
                prop_assert!(well_formed, "accepted misplaced markers");
                out
            }
        };
        let want: BTreeSet<IpNet> = entries.iter().map(|e| e.net.trunc()).collect();
        // Exactly one block, holding exactly the entries, each once.
        let (ob, oe) = (marker_lines(&out, BEGIN_PREFIX), marker_lines(&out, END_PREFIX));
        if want.is_empty() && begins.is_empty() {
            prop_assert_eq!(&out, &original, "no block and no entries: unchanged");
            return Ok(());
        }
        prop_assert_eq!((ob.len(), oe.len()), (1, 1), "{}", out);
        let (ob, oe) = (ob[0], oe[0]);
        let inside = &out[ob.2..oe.1];
        let lines: Vec<&str> = inside.lines().collect();
        let unique: BTreeSet<&str> = lines.iter().copied().collect();
        prop_assert_eq!(lines.len(), unique.len(), "duplicate lines in the block:\n{}", inside);
        let got: BTreeSet<IpNet> = block_entries(&out).unwrap().unwrap().into_iter().collect();
        prop_assert_eq!(got, want.clone());
        prop_assert_eq!(lines.len(), want.len());
        // Every byte outside the block is the original's.
        let (pre, post) = (&out[..ob.1], &out[oe.2..]);
        match (begins.first(), ends.first()) {
            (Some(b), Some(e)) => {
                prop_assert_eq!(pre, &original[..b.1]);
                prop_assert_eq!(post, &original[e.2..]);
                // A missing final newline stays missing.
                prop_assert_eq!(out.ends_with('\n'), original.ends_with('\n'));
            }
            _ => {
                let expect_pre = if original.is_empty() || original.ends_with('\n') {
                    original.clone()
                } else {
                    format!("{original}\n")
                };
                prop_assert_eq!(pre, expect_pre.as_str());
                prop_assert_eq!(post, "");
            }
        }
        // Idempotent.
        let again = rewrite_block(&out, &entries).unwrap();
        prop_assert_eq!(&again, &out);
        // And from any other set back to this one.
        let emptied = rewrite_block(&out, &[]).unwrap();
        prop_assert_eq!(rewrite_block(&emptied, &entries).unwrap(), out);
    }
}

// ---------------------------------------------------------------- engine

/// What a client does with one attempt of one host.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// A wrong password (a fresh handle: the attempt stays counted).
    Wrong,
    /// The right password: the attempt is given back.
    Right,
    /// Only asks (preauth, banguard_check): records nothing.
    Check,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(prop_oneof![Just(Step::Wrong), Just(Step::Right), Just(Step::Check)], 0..40)
}

proptest! {
    #![proptest_config(cases(64))]

    /// Whatever the interleaving of wrong passwords, right ones and checks
    /// from one host, at most maxretry wrong passwords are let through to
    /// the password check within findtime, and a success never brings the
    /// host closer to a ban.
    #[test]
    fn engine_never_lets_more_than_maxretry_wrong_passwords_through(
        maxretry in 1u32..6,
        steps in steps(),
    ) {
        use banguard::policy::ManualClock;
        let text = format!("[default]\nmaxretry = {maxretry}\n[recidive]\nenabled = false\n");
        let config = Config::from_toml(Path::new("test.toml"), &text).unwrap();
        let mut g = banguard::Banguard::in_memory(config, ManualClock::new(1_800_000_000)).unwrap();
        let req = banguard::Request { service: "sshd", rhost: Some("198.51.100.7"), hint: None, user: Some("u") };
        let used = |g: &mut banguard::Banguard| match g.peek(&req).unwrap() {
            banguard::Verdict::Allowed { used, .. } => Some(used),
            _ => None,
        };
        let mut wrong_through = 0;
        for step in steps {
            let before = used(&mut g);
            match step {
                Step::Check => {
                    g.check(&req).unwrap();
                }
                Step::Wrong => {
                    if let banguard::Verdict::Allowed { .. } = g.attempt(&req, None).unwrap() {
                        wrong_through += 1;
                    }
                }
                Step::Right => {
                    if let banguard::Verdict::Allowed { attempt: Some(id), .. } = g.attempt(&req, None).unwrap() {
                        g.record_success(&req, banguard::AttemptRef::Id(id)).unwrap();
                        prop_assert_eq!(used(&mut g), before, "a success changed the count");
                    }
                }
            }
            prop_assert!(wrong_through <= maxretry, "{} wrong passwords through, maxretry {}", wrong_through, maxretry);
        }
    }
}

proptest! {
    #![proptest_config(cases(256))]

    /// A ban never gets shorter with more earlier bans, never shorter than
    /// `bantime`, never longer than `bantime_max` (unless bantime itself
    /// is longer), and a factor of 1 never changes it.
    #[test]
    fn ban_length_grows_with_prior_bans_within_its_bounds(
        base in 1i64..=10_000_000,
        max in 1i64..=100_000_000,
        factor in 1.0f64..8.0,
        prior in 0u32..100,
    ) {
        let text = format!("[default]\nbantime = {base}\nbantime_max = {max}\nbantime_factor = {factor}\n");
        let config = Config::from_toml(std::path::Path::new("test.toml"), &text).unwrap();
        let secs = |p| match config.default.ban_length(p) {
            BanTime::Seconds(s) => s,
            BanTime::Permanent => i64::MAX,
        };
        let (now, next) = (secs(prior), secs(prior + 1));
        prop_assert!(now <= next, "prior {}: {} then {}", prior, now, next);
        prop_assert!(now >= base, "{} shorter than bantime {}", now, base);
        prop_assert!(now <= max.max(base), "{} beyond bantime_max {}", now, max);
        let flat = format!("[default]\nbantime = {base}\nbantime_factor = 1.0\n");
        let flat = Config::from_toml(std::path::Path::new("test.toml"), &flat).unwrap();
        prop_assert_eq!(flat.default.ban_length(prior), BanTime::Seconds(base));
    }

    /// Whatever the counts (a carried count from another tool's database
    /// may be anything) and the settings, a ban's length and end are
    /// computed without overflow, within their bounds: saturating
    /// arithmetic everywhere.
    #[test]
    fn ban_length_saturates_whatever_the_counts(
        base in 1i64..=i64::MAX / 2,
        max in 1i64..=i64::MAX / 2,
        factor in 1.0f64..=100.0,
        prior in any::<u32>(),
        now in 0i64..=i64::MAX,
    ) {
        let text = format!("[default]\nbantime = {base}\nbantime_max = {max}\nbantime_factor = {factor}\n");
        let Ok(config) = Config::from_toml(std::path::Path::new("test.toml"), &text) else {
            // A duration too long to write is refused by the config; fine.
            return Ok(());
        };
        let length = config.default.ban_length(prior);
        let BanTime::Seconds(s) = length else { return Err(TestCaseError::fail("a finite bantime became permanent")) };
        prop_assert!(s >= base && s <= max.max(base), "{} not within {}..={}", s, base, max.max(base));
        let end = length.expiry_from(now).unwrap();
        prop_assert!(end >= now, "the end {} before the start {}", end, now);
    }
}

/// What happens to one account, step by step.
#[derive(Debug, Clone, Copy)]
enum AccountStep {
    /// A wrong password from the n-th spraying address (each its own /24).
    Spray(u16),
    /// The right password from an unfamiliar address (a bot that guessed
    /// it, or the owner travelling): given back, its network familiar.
    RightFrom(u16),
    /// The owner from home (familiar after the first step): a typo.
    OwnerTypo,
    /// Only asks (preauth): takes nothing.
    Check(u16),
    /// Time passes.
    Wait(u32),
}

fn account_steps() -> impl Strategy<Value = Vec<AccountStep>> {
    prop::collection::vec(
        prop_oneof![
            8 => (0u16..2000).prop_map(AccountStep::Spray),
            1 => (0u16..2000).prop_map(AccountStep::RightFrom),
            2 => Just(AccountStep::OwnerTypo),
            1 => (0u16..2000).prop_map(AccountStep::Check),
            2 => (1u32..20_000).prop_map(AccountStep::Wait),
        ],
        0..120,
    )
}

proptest! {
    #![proptest_config(cases(64))]

    /// Whatever the interleaving: the wrong passwords checked from
    /// unfamiliar sources never exceed the budget plus what refilled plus
    /// one per lock that ended; the owner's familiar network is never
    /// refused by the account rule; and a success never brings the account
    /// closer to a lock.
    #[test]
    fn account_side_bounds_unfamiliar_passwords_and_never_refuses_the_familiar(
        budget in 1u32..6,
        refill in 60i64..7200,
        lock in 30i64..3600,
        steps in account_steps(),
    ) {
        use banguard::policy::{Clock, ManualClock};
        use banguard::{AttemptRef, Request, Verdict};
        let text = format!(
            "[default]\nmaxretry = 1000\n[recidive]\nenabled = false\n\
             [accounts]\nlearning = 0\nbudget = {budget}\nrefill = {refill}\nlock = {lock}\nlock_max = {}\n",
            lock * 8
        );
        let config = Config::from_toml(Path::new("test.toml"), &text).unwrap();
        let start = 1_800_000_000;
        let clock = ManualClock::new(start);
        let mut g = banguard::Banguard::in_memory(config, clock.clone()).unwrap();
        let home = Request { service: "sshd", rhost: Some("198.51.100.7"), hint: None, user: Some("admin") };
        let Verdict::Allowed { attempt: Some(id), .. } = g.attempt(&home, None).unwrap() else {
            return Err(TestCaseError::fail("the owner's first login was refused"));
        };
        g.record_success(&home, AttemptRef::Id(id)).unwrap();
        let used_now = |g: &banguard::Banguard| {
            g.accounts().unwrap().into_iter().find(|a| a.account == "admin").map_or(0, |a| a.used)
        };
        let addr = |n: u16| format!("10.{}.{}.9", n / 256, n % 256);
        let mut wrong_through = 0u64;
        let mut familiar: BTreeSet<u16> = BTreeSet::new();
        for step in steps {
            match step {
                AccountStep::Spray(n) => {
                    let a = addr(n);
                    let r = Request { rhost: Some(&a), ..home };
                    if let Verdict::Allowed { account: Some(side), .. } = g.attempt(&r, None).unwrap()
                        && side.familiar.is_none()
                    {
                        wrong_through += 1;
                    }
                }
                AccountStep::RightFrom(n) => {
                    let a = addr(n);
                    let r = Request { rhost: Some(&a), ..home };
                    let before = used_now(&g);
                    if let Verdict::Allowed { attempt: Some(id), .. } = g.attempt(&r, None).unwrap() {
                        g.record_success(&r, AttemptRef::Id(id)).unwrap();
                        familiar.insert(n);
                        prop_assert!(used_now(&g) <= before, "a success took from the budget");
                    }
                }
                AccountStep::OwnerTypo => {
                    let v = g.attempt(&Request { rhost: Some("198.51.100.99"), ..home }, None).unwrap();
                    prop_assert!(!matches!(v, Verdict::AccountLocked { .. }), "the owner was refused: {:?}", v);
                }
                AccountStep::Check(n) => {
                    let a = addr(n);
                    let before = used_now(&g);
                    let v = g.check(&Request { rhost: Some(&a), ..home }).unwrap();
                    prop_assert!(used_now(&g) <= before, "a check took from the budget");
                    if familiar.contains(&n) {
                        prop_assert!(!matches!(v, Verdict::AccountLocked { .. }), "a familiar source was refused");
                    }
                }
                AccountStep::Wait(s) => clock.advance(i64::from(s)),
            }
            let elapsed = clock.now() - start;
            let bound = u64::from(budget) + (elapsed / refill) as u64 + (elapsed / lock) as u64 + 1;
            prop_assert!(wrong_through <= bound, "{} unfamiliar wrong passwords through, bound {}", wrong_through, bound);
        }
    }
}

// ----------------------------------------------- regressions found above

/// Two entries that differ only in host bits rendered the same line twice
/// (render_block deduplicated before clearing host bits).
#[test]
fn regression_hosts_deny_host_bits_do_not_duplicate_lines() {
    let net = |s: &str| s.parse::<IpNet>().unwrap();
    let entries = [
        FirewallEntry::permanent(net("::ffff:0.0.0.0/71")),
        FirewallEntry::permanent(net("::ffff:0.0.0.1/71")),
        FirewallEntry::permanent(net("10.0.0.1/8")),
        FirewallEntry::until(net("10.0.0.2/8"), 5),
    ];
    let out = rewrite_block("", &entries).unwrap();
    assert_eq!(out, format!("{BEGIN}\nALL: 10.0.0.0/255.0.0.0\nALL: [::]/71\n{END}\n"));
}

/// Found by `config_tomlish_documents_errors_name_a_real_line`: a service
/// name outside the one rule, written as a quoted key, must still name its
/// line.
#[test]
fn regression_invalid_quoted_service_name_names_its_line() {
    let e = Config::from_toml(Path::new(CONFIG_PATH), "[default]\nmaxretry = 3\n[services.\"odd name\"]\n")
        .unwrap_err();
    let shown = e.to_string();
    assert!(shown.starts_with(&format!("{CONFIG_PATH}:3:")), "{shown}");
    assert!(shown.contains("invalid PAM service name \"odd name\""), "{shown}");
}
