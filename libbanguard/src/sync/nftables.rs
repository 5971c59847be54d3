//! nftables back-end: our own table `inet banguard`, nothing else touched.
//!
//! ```text
//! table inet banguard
//!   set banned4       ipv4_addr; flags timeout            single addresses
//!   set banned4_nets  ipv4_addr; flags interval,timeout   networks
//!   set banned6, banned6_nets                             the same for IPv6
//!   chain input       hook input, priority filter - 10, policy accept,
//!                     one `ip saddr @set ct state new drop` rule per set
//!                     (replies to this server's own connections pass;
//!                     see `sync` on why)
//! ```
//!
//! Single addresses and networks live in separate sets because nft 1.0.6
//! loads every element of an interval set before changing one: any change
//! to a 100,000-element interval set took 1.2-1.6 s here, the same change
//! to a plain timeout set 15 ms (BENCHMARKS-sync.md).
//!
//! Every change is one `nft -f -` transaction fed on stdin, so the kernel
//! never sees a half-applied sync. Element deletes are written as
//! `add` + `delete` (and updates as `add` + `delete` + `add`), which
//! succeeds whether or not the kernel already let the element time out.

use std::fmt::Write as _;

use ipnet::IpNet;
use serde_json::{Value, json};

use super::runner::{argv, run_ok};
use super::{
    Backend, BackendKind, Diff, Expiry, FirewallEntry, KERNEL_EXPIRY_SLACK, Runner, Step, SyncReport,
    SyncRequest, cap_expiries, diff, is_host, normalize, parse_net, previous_state, recently_expired,
    sort_dedup, timeout_secs,
};
use crate::error::{Error, Result};

const NFT: &str = "nft";

/// Our table (family `inet`).
pub const TABLE: &str = "banguard";

/// Longest kernel timeout we push; nft 1.0.6's parser rejects `100000000s`.
/// Longer bans go in without a timeout until they come under it.
pub const MAX_TIMEOUT: i64 = 365 * 86_400;

/// The nftables back-end.
#[derive(Debug, Clone, Copy, Default)]
pub struct Nftables;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Set {
    Hosts4,
    Nets4,
    Hosts6,
    Nets6,
}

impl Set {
    const ALL: [Set; 4] = [Set::Hosts4, Set::Nets4, Set::Hosts6, Set::Nets6];

    fn name(self) -> &'static str {
        match self {
            Set::Hosts4 => "banned4",
            Set::Nets4 => "banned4_nets",
            Set::Hosts6 => "banned6",
            Set::Nets6 => "banned6_nets",
        }
    }

    fn by_name(name: &str) -> Option<Set> {
        Set::ALL.into_iter().find(|s| s.name() == name)
    }

    fn addr_type(self) -> &'static str {
        match self {
            Set::Hosts4 | Set::Nets4 => "ipv4_addr",
            Set::Hosts6 | Set::Nets6 => "ipv6_addr",
        }
    }

    fn proto(self) -> &'static str {
        match self {
            Set::Hosts4 | Set::Nets4 => "ip",
            Set::Hosts6 | Set::Nets6 => "ip6",
        }
    }

    fn interval(self) -> bool {
        matches!(self, Set::Nets4 | Set::Nets6)
    }

    fn flags(self) -> &'static [&'static str] {
        if self.interval() { &["interval", "timeout"] } else { &["timeout"] }
    }

    fn of(net: &IpNet) -> Set {
        match (net, is_host(net)) {
            (IpNet::V4(_), true) => Set::Hosts4,
            (IpNet::V4(_), false) => Set::Nets4,
            (IpNet::V6(_), true) => Set::Hosts6,
            (IpNet::V6(_), false) => Set::Nets6,
        }
    }

    /// The JSON `nft -j` prints for this set's drop rule.
    fn rule_json(self) -> Value {
        json!([
            {"match": {"op": "==",
                       "left": {"payload": {"protocol": self.proto(), "field": "saddr"}},
                       "right": format!("@{}", self.name())}},
            {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}},
            {"drop": null}
        ])
    }
}

/// What the cheap existence check found.
#[derive(Debug, PartialEq, Eq)]
enum Probe {
    /// All four sets and the chain exist as we create them.
    Ready,
    /// Some or all are missing (first run, after a reboot).
    Partial,
    /// Something of ours exists with other properties (type, flags, hook).
    Incompatible(String),
}

#[derive(Debug)]
enum Plan {
    Nothing,
    Incremental(Diff),
    /// Flush our sets and add everything.
    Rebuild,
    /// Delete our table and create it again.
    Recreate,
}

impl Backend for Nftables {
    fn kind(&self) -> BackendKind {
        BackendKind::Nftables
    }

    fn sync(&self, req: &SyncRequest<'_>, runner: &dyn Runner) -> Result<SyncReport> {
        let now = req.now;
        let desired = desired_elements(req.desired, now)?;
        let mut report = SyncReport::new(BackendKind::Nftables, req.dry_run);
        let plan = match probe(runner)? {
            Probe::Incompatible(_) => {
                report.repaired = true;
                report.count(&diff(&[], &desired, Expiry::Ignore));
                Plan::Recreate
            }
            Probe::Partial => {
                report.repaired = true;
                report.count(&diff(&[], &desired, Expiry::Ignore));
                Plan::Rebuild
            }
            Probe::Ready => {
                let (current, expiry, state_ok) = match req.previous {
                    Some(p) => {
                        let mut current = previous_state(p, now, true);
                        current.extend(recently_expired(p, &desired, now, KERNEL_EXPIRY_SLACK));
                        sort_dedup(&mut current);
                        (current, Expiry::Within(0), StateOk::default())
                    }
                    None => {
                        let (current, ok) = read_state(runner, now)?;
                        (current, Expiry::Within(KERNEL_EXPIRY_SLACK), ok)
                    }
                };
                let d = diff(&current, &desired, expiry);
                report.count(&d);
                if !state_ok.elements {
                    report.repaired = true;
                    Plan::Rebuild
                } else if d.is_empty() && state_ok.rules {
                    Plan::Nothing
                } else {
                    report.repaired = !state_ok.rules;
                    Plan::Incremental(d)
                }
            }
        };
        report.applied = desired.clone();
        let Some(script) = render(&plan, &desired, now) else {
            return Ok(report);
        };
        let args = argv(&["-f", "-"]);
        if req.dry_run {
            report.steps.push(Step::command(NFT, &args, Some(script)));
            return Ok(report);
        }
        match run_ok(runner, NFT, &args, Some(script.as_bytes())) {
            Ok(_) => report.steps.push(Step::command(NFT, &args, Some(script))),
            Err(first) if matches!(plan, Plan::Incremental(_)) => {
                // `previous` did not match the kernel after all (an element
                // added by hand overlapping a new network, a set edited):
                // replace the sets' contents in one transaction instead.
                let rebuild = render(&Plan::Rebuild, &desired, now).unwrap_or_default();
                run_ok(runner, NFT, &args, Some(rebuild.as_bytes())).map_err(|e| after(e, &first))?;
                report.repaired = true;
                report.steps.push(Step::command(NFT, &args, Some(rebuild)));
            }
            Err(e) => return Err(e),
        }
        Ok(report)
    }
}

/// Normalised desired elements as this back-end stores them: timeouts
/// capped, networks nested in another network dropped (an interval set
/// refuses overlaps; the outer one blocks them already; a nested one that
/// outlives it comes back at the first sync after the outer one expires).
fn desired_elements(desired: &[FirewallEntry], now: i64) -> Result<Vec<FirewallEntry>> {
    let mut v = normalize(desired, now)?;
    cap_expiries(&mut v, now, MAX_TIMEOUT);
    let mut outer: Option<IpNet> = None;
    // Sorted by (address, prefix): an enclosing network comes first, and
    // the kept networks are disjoint, so checking the last kept suffices.
    v.retain(|e| {
        if is_host(&e.net) {
            return true;
        }
        if outer.is_some_and(|o| o.contains(&e.net)) {
            return false;
        }
        outer = Some(e.net);
        true
    });
    Ok(v)
}

fn after(e: Error, first: &Error) -> Error {
    match e {
        Error::Command { program, args, status, stderr } => Error::Command {
            program,
            args,
            status,
            stderr: format!("{stderr}\n(full rebuild, tried after the incremental update failed: {first})"),
        },
        other => other,
    }
}

fn render(plan: &Plan, desired: &[FirewallEntry], now: i64) -> Option<String> {
    let mut s = String::new();
    match plan {
        Plan::Nothing => return None,
        Plan::Incremental(d) => {
            render_structure(&mut s);
            render_incremental(&mut s, d, now);
        }
        Plan::Rebuild => {
            render_structure(&mut s);
            for set in Set::ALL {
                let _ = writeln!(s, "flush set inet {TABLE} {}", set.name());
            }
            render_elements(&mut s, "add", desired.iter(), Some(now));
        }
        Plan::Recreate => {
            // `add` first so that `delete` cannot fail.
            let _ = writeln!(s, "add table inet {TABLE}\ndelete table inet {TABLE}");
            render_structure(&mut s);
            render_elements(&mut s, "add", desired.iter(), Some(now));
        }
    }
    Some(s)
}

/// The table, sets and chain (idempotent declarations) and the chain's
/// rules (flushed and re-added, so a rule deleted by hand comes back).
fn render_structure(s: &mut String) {
    let _ = writeln!(s, "table inet {TABLE} {{");
    for set in Set::ALL {
        let _ = writeln!(
            s,
            "\tset {} {{\n\t\ttype {}\n\t\tflags {}\n\t}}",
            set.name(),
            set.addr_type(),
            set.flags().join(",")
        );
    }
    s.push_str("\tchain input {\n\t\ttype filter hook input priority filter - 10; policy accept;\n\t}\n}\n");
    let _ = writeln!(s, "flush chain inet {TABLE} input");
    for set in Set::ALL {
        let _ = writeln!(
            s,
            "add rule inet {TABLE} input {} saddr @{} ct state new drop",
            set.proto(),
            set.name()
        );
    }
}

fn render_incremental(s: &mut String, d: &Diff, now: i64) {
    for set in Set::ALL {
        let mine =
            |v: &[FirewallEntry]| v.iter().filter(|e| Set::of(&e.net) == set).cloned().collect::<Vec<_>>();
        // Everything that goes or changes is first made to exist, so the
        // delete cannot fail. New elements of a plain set too: an element
        // that the kernel has not yet timed out gets its new timeout. Not in
        // interval sets, where an `add` overlapping a network that is
        // deleted in the same transaction would fail.
        let mut gone = mine(&d.remove);
        gone.extend(mine(&d.update));
        if !set.interval() {
            gone.extend(mine(&d.add));
        }
        sort_dedup(&mut gone);
        render_set_elements(s, "add", set, &gone, None);
        render_set_elements(s, "delete", set, &gone, None);
        let mut new = mine(&d.add);
        new.extend(mine(&d.update));
        sort_dedup(&mut new);
        render_set_elements(s, "add", set, &new, Some(now));
    }
}

fn render_elements<'a>(
    s: &mut String,
    verb: &str,
    entries: impl Iterator<Item = &'a FirewallEntry> + Clone,
    now: Option<i64>,
) {
    for set in Set::ALL {
        let mine: Vec<FirewallEntry> = entries.clone().filter(|e| Set::of(&e.net) == set).cloned().collect();
        render_set_elements(s, verb, set, &mine, now);
    }
}

/// One `VERB element` statement, one element per line (nft's error
/// messages quote the failing line). With `now`, each element carries its
/// remaining time; without, none does (add-before-delete).
fn render_set_elements(s: &mut String, verb: &str, set: Set, entries: &[FirewallEntry], now: Option<i64>) {
    if entries.is_empty() {
        return;
    }
    let _ = writeln!(s, "{verb} element inet {TABLE} {} {{", set.name());
    for (i, e) in entries.iter().enumerate() {
        s.push('\t');
        if is_host(&e.net) {
            let _ = write!(s, "{}", e.net.addr());
        } else {
            let _ = write!(s, "{}", e.net);
        }
        if let (Some(now), Some(t)) = (now, e.expires_at) {
            let _ = write!(s, " timeout {}s", timeout_secs(t, now));
        }
        s.push_str(if i + 1 < entries.len() { ",\n" } else { "\n" });
    }
    s.push_str("}\n");
}

/// Lists our sets (without elements) and chains: about 3 ms even with
/// 100,000 elements, where listing the table or a chain costs 0.5-1 s
/// because nft then loads every element.
/// (Two commands: with `-j`, nft 1.0.6 reads `-f -` as JSON input and
/// prints nothing for listing commands.)
fn probe(runner: &dyn Runner) -> Result<Probe> {
    let mut items = Vec::new();
    for what in ["sets", "chains"] {
        let args = argv(&["-j", "-t", "list", what, "inet"]);
        let out = run_ok(runner, NFT, &args, None)?;
        items.extend(json_items(&out.stdout, &args)?);
    }
    let mut sets = [false; 4];
    let mut chain = false;
    for item in items {
        if let Some(v) = item.get("set").filter(|v| ours(v)) {
            let Some(set) = v["name"].as_str().and_then(Set::by_name) else {
                continue;
            };
            let mut flags = string_list(&v["flags"]);
            flags.sort_unstable();
            if v["type"].as_str() != Some(set.addr_type()) || flags != set.flags() {
                return Ok(Probe::Incompatible(format!(
                    "set {} is `{}` with flags {:?}",
                    set.name(),
                    v["type"],
                    flags
                )));
            }
            sets[Set::ALL.iter().position(|s| *s == set).unwrap_or(0)] = true;
        } else if let Some(v) = item.get("chain").filter(|v| ours(v) && v["name"] == "input") {
            let expected = [
                ("type", json!("filter")),
                ("hook", json!("input")),
                ("prio", json!(-10)),
                ("policy", json!("accept")),
            ];
            if expected.iter().any(|(k, want)| &v[*k] != want) {
                return Ok(Probe::Incompatible(format!("chain input is {v}")));
            }
            chain = true;
        }
    }
    Ok(if chain && sets.iter().all(|s| *s) { Probe::Ready } else { Probe::Partial })
}

#[derive(Debug, Clone, Copy)]
struct StateOk {
    /// Every element is one we could have put there, in the right set.
    elements: bool,
    /// The chain holds exactly our four rules.
    rules: bool,
}

impl Default for StateOk {
    fn default() -> Self {
        StateOk { elements: true, rules: true }
    }
}

/// Reads every element and rule of our table back (about 0.8 s at 100,000
/// elements): the exact path, used when there is no `previous`.
fn read_state(runner: &dyn Runner, now: i64) -> Result<(Vec<FirewallEntry>, StateOk)> {
    let args = argv(&["-j", "list", "table", "inet", TABLE]);
    let out = run_ok(runner, NFT, &args, None)?;
    let mut entries = Vec::new();
    let mut ok = StateOk::default();
    let mut rules = Vec::new();
    for item in json_items(&out.stdout, &args)? {
        if let Some(v) = item.get("set").filter(|v| ours(v)) {
            let Some(set) = v["name"].as_str().and_then(Set::by_name) else {
                continue;
            };
            for elem in v["elem"].as_array().map(Vec::as_slice).unwrap_or_default() {
                match parse_elem(elem, now) {
                    Some(e) if Set::of(&e.net) == set => entries.push(e),
                    _ => ok.elements = false,
                }
            }
        } else if let Some(v) = item.get("rule").filter(|v| ours(v) && v["chain"] == "input") {
            rules.push(v["expr"].clone());
        }
    }
    let want: Vec<Value> = Set::ALL.iter().map(|s| s.rule_json()).collect();
    ok.rules = rules == want;
    sort_dedup(&mut entries);
    Ok((entries, ok))
}

/// One element as `nft -j` prints it: `"1.2.3.4"`, `{"prefix": {...}}`, or
/// either wrapped in `{"elem": {"val": ..., "timeout": s, "expires": s}}`.
/// Ranges and anything else are not ours: `None`.
fn parse_elem(v: &Value, now: i64) -> Option<FirewallEntry> {
    let (val, timing) = match v.get("elem") {
        Some(e) => (e.get("val")?, Some(e)),
        None => (v, None),
    };
    let net = match val {
        Value::String(s) if !s.contains('/') => parse_net(s)?,
        Value::Object(o) => {
            let p = o.get("prefix")?;
            let addr = p.get("addr")?.as_str()?.parse().ok()?;
            let len = u8::try_from(p.get("len")?.as_u64()?).ok()?;
            IpNet::new(addr, len).ok()?.trunc()
        }
        _ => return None,
    };
    let remaining =
        timing.and_then(|e| e.get("expires").or_else(|| e.get("timeout"))).and_then(Value::as_i64);
    Some(FirewallEntry { net, expires_at: remaining.map(|r| now + r) })
}

fn ours(v: &Value) -> bool {
    v["family"] == "inet" && v["table"] == TABLE
}

fn string_list(v: &Value) -> Vec<&str> {
    match v {
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        Value::String(s) => vec![s.as_str()],
        _ => Vec::new(),
    }
}

/// The objects of `{"nftables": [...]}` documents (one per command).
fn json_items(stdout: &[u8], args: &[String]) -> Result<Vec<Value>> {
    let mut items = Vec::new();
    for doc in serde_json::Deserializer::from_slice(stdout).into_iter::<Value>() {
        let doc = doc.map_err(|e| Error::Command {
            program: NFT.into(),
            args: args.to_vec(),
            status: Some(0),
            stderr: format!("unexpected output (not JSON): {e}"),
        })?;
        if let Value::Object(mut doc) = doc
            && let Some(Value::Array(a)) = doc.remove("nftables")
        {
            items.extend(a);
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::super::runner::fake::FakeRunner;
    use super::*;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    const NOW: i64 = 1_000_000;

    fn sample() -> Vec<FirewallEntry> {
        vec![
            FirewallEntry::until(n("198.51.100.7/32"), NOW + 600),
            FirewallEntry::permanent(n("192.0.2.0/24")),
            FirewallEntry::until(n("192.0.2.128/25"), NOW + 60), // nested: dropped
            FirewallEntry::until(n("192.0.2.9/32"), NOW + 60),   // host inside a network: kept
            FirewallEntry::until(n("2001:db8::2/128"), NOW + 3600),
            FirewallEntry::until(n("2001:db8:1::/64"), NOW + 7200),
            FirewallEntry::until(n("203.0.113.1/32"), NOW), // expired
        ]
    }

    const STRUCTURE: &str = "\
table inet banguard {
\tset banned4 {
\t\ttype ipv4_addr
\t\tflags timeout
\t}
\tset banned4_nets {
\t\ttype ipv4_addr
\t\tflags interval,timeout
\t}
\tset banned6 {
\t\ttype ipv6_addr
\t\tflags timeout
\t}
\tset banned6_nets {
\t\ttype ipv6_addr
\t\tflags interval,timeout
\t}
\tchain input {
\t\ttype filter hook input priority filter - 10; policy accept;
\t}
}
flush chain inet banguard input
add rule inet banguard input ip saddr @banned4 ct state new drop
add rule inet banguard input ip saddr @banned4_nets ct state new drop
add rule inet banguard input ip6 saddr @banned6 ct state new drop
add rule inet banguard input ip6 saddr @banned6_nets ct state new drop
";

    #[test]
    fn golden_rebuild_script() {
        let desired = desired_elements(&sample(), NOW).unwrap();
        let got = render(&Plan::Rebuild, &desired, NOW).unwrap();
        let want = format!(
            "{STRUCTURE}\
flush set inet banguard banned4
flush set inet banguard banned4_nets
flush set inet banguard banned6
flush set inet banguard banned6_nets
add element inet banguard banned4 {{
\t192.0.2.9 timeout 60s,
\t198.51.100.7 timeout 600s
}}
add element inet banguard banned4_nets {{
\t192.0.2.0/24
}}
add element inet banguard banned6 {{
\t2001:db8::2 timeout 3600s
}}
add element inet banguard banned6_nets {{
\t2001:db8:1::/64 timeout 7200s
}}
"
        );
        assert_eq!(got, want);
    }

    #[test]
    fn golden_incremental_script() {
        let d = Diff {
            add: vec![
                FirewallEntry::until(n("198.51.100.8/32"), NOW + 30),
                FirewallEntry::permanent(n("10.0.0.0/8")),
            ],
            update: vec![FirewallEntry::until(n("198.51.100.7/32"), NOW + 90)],
            remove: vec![
                FirewallEntry::until(n("192.0.2.0/24"), NOW + 5),
                FirewallEntry::permanent(n("2001:db8::2/128")),
            ],
            unchanged: 3,
        };
        let mut got = String::new();
        render_incremental(&mut got, &d, NOW);
        let want = "\
add element inet banguard banned4 {
\t198.51.100.7,
\t198.51.100.8
}
delete element inet banguard banned4 {
\t198.51.100.7,
\t198.51.100.8
}
add element inet banguard banned4 {
\t198.51.100.7 timeout 90s,
\t198.51.100.8 timeout 30s
}
add element inet banguard banned4_nets {
\t192.0.2.0/24
}
delete element inet banguard banned4_nets {
\t192.0.2.0/24
}
add element inet banguard banned4_nets {
\t10.0.0.0/8
}
add element inet banguard banned6 {
\t2001:db8::2
}
delete element inet banguard banned6 {
\t2001:db8::2
}
";
        assert_eq!(got, want);
    }

    #[test]
    fn golden_recreate_script_starts_by_dropping_our_table() {
        let got = render(&Plan::Recreate, &[], NOW).unwrap();
        assert_eq!(got, format!("add table inet banguard\ndelete table inet banguard\n{STRUCTURE}"));
    }

    /// What `nft -j -t list sets inet` and `... list chains inet` print.
    fn probe_json(sets: &[(&str, &str, &str)], chain_prio: Option<i64>) -> (String, String) {
        let mut items = vec![json!({"metainfo": {"version": "1.0.6"}})];
        for (name, ty, flags) in sets {
            let flags: Vec<&str> = flags.split(',').collect();
            items.push(json!({"set": {"family": "inet", "table": "banguard", "name": name, "type": ty, "flags": flags}}));
        }
        // Someone else's set: ignored.
        items.push(
            json!({"set": {"family": "inet", "table": "filter", "name": "banned4", "type": "ipv4_addr"}}),
        );
        let sets = json!({"nftables": items}).to_string();
        let mut chains = vec![json!({"metainfo": {}})];
        if let Some(p) = chain_prio {
            chains.push(json!({"chain": {"family": "inet", "table": "banguard", "name": "input", "type": "filter", "hook": "input", "prio": p, "policy": "accept"}}));
        }
        (sets, json!({"nftables": chains}).to_string())
    }

    fn all_sets() -> Vec<(&'static str, &'static str, &'static str)> {
        vec![
            ("banned4", "ipv4_addr", "timeout"),
            ("banned4_nets", "ipv4_addr", "interval,timeout"),
            ("banned6", "ipv6_addr", "timeout"),
            ("banned6_nets", "ipv6_addr", "interval,timeout"),
        ]
    }

    fn answer_probe(probe: &(String, String), args: &[String]) -> Option<(i32, String)> {
        match args.get(3).map(String::as_str) {
            Some("sets") if args[1] == "-t" => Some((0, probe.0.clone())),
            Some("chains") if args[1] == "-t" => Some((0, probe.1.clone())),
            _ => None,
        }
    }

    const PROBES: [&str; 2] = ["nft -j -t list sets inet", "nft -j -t list chains inet"];

    fn runner_with(probe: (String, String), state: Option<String>) -> FakeRunner {
        FakeRunner::default().on(NFT, move |args, _| {
            if let Some(a) = answer_probe(&probe, args) {
                Some(a)
            } else if args.first().map(String::as_str) == Some("-j") {
                state.clone().map(|s| (0, s))
            } else {
                None
            }
        })
    }

    #[test]
    fn probe_classifies() {
        let r = runner_with(probe_json(&all_sets(), Some(-10)), None);
        assert_eq!(probe(&r).unwrap(), Probe::Ready);
        let r = runner_with(probe_json(&all_sets()[..2], Some(-10)), None);
        assert_eq!(probe(&r).unwrap(), Probe::Partial);
        let r = runner_with(probe_json(&all_sets(), Some(0)), None);
        assert!(matches!(probe(&r).unwrap(), Probe::Incompatible(_)));
        let mut sets = all_sets();
        sets[0].2 = "interval,timeout";
        let r = runner_with(probe_json(&sets, Some(-10)), None);
        assert!(matches!(probe(&r).unwrap(), Probe::Incompatible(m) if m.contains("banned4")));
    }

    #[test]
    fn first_sync_dry_run_plans_a_rebuild_and_runs_nothing_else() {
        let r = runner_with(probe_json(&[], None), None);
        let entries = sample();
        let rep = Nftables.sync(&SyncRequest::new(&entries, NOW).dry_run(true), &r).unwrap();
        assert_eq!((rep.added, rep.removed, rep.unchanged), (5, 0, 0));
        assert!(rep.repaired && rep.dry_run);
        assert_eq!(rep.steps.len(), 1);
        assert_eq!(r.programs(), PROBES);
        let Step::Command { stdin: Some(script), .. } = &rep.steps[0] else { panic!() };
        assert!(script.contains("flush set inet banguard banned4\n"));
    }

    #[test]
    fn no_change_with_previous_runs_only_the_probe() {
        let r = runner_with(probe_json(&all_sets(), Some(-10)), None);
        let entries = sample();
        let previous = desired_elements(&entries, NOW - 10).unwrap();
        let rep = Nftables.sync(&SyncRequest::new(&entries, NOW).previous(Some(&previous)), &r).unwrap();
        assert_eq!((rep.added, rep.removed, rep.updated, rep.unchanged), (0, 0, 0, 5));
        assert!(!rep.changed());
        assert_eq!(r.programs(), PROBES);
    }

    #[test]
    fn kernel_state_is_parsed_with_slack() {
        let rules: Vec<Value> = Set::ALL
            .iter()
            .map(|s| json!({"rule": {"family": "inet", "table": "banguard", "chain": "input", "expr": s.rule_json()}}))
            .collect();
        let mut items = vec![
            json!({"set": {"family": "inet", "table": "banguard", "name": "banned4", "elem": [
                {"elem": {"val": "198.51.100.7", "timeout": 600, "expires": 597}},
                {"elem": {"val": "192.0.2.9", "timeout": 60, "expires": 58}},
            ]}}),
            json!({"set": {"family": "inet", "table": "banguard", "name": "banned4_nets", "elem": [
                {"prefix": {"addr": "192.0.2.0", "len": 24}},
            ]}}),
            json!({"set": {"family": "inet", "table": "banguard", "name": "banned6", "elem": [
                {"elem": {"val": "2001:db8::2", "timeout": 3600, "expires": 3599}},
            ]}}),
            json!({"set": {"family": "inet", "table": "banguard", "name": "banned6_nets", "elem": [
                {"elem": {"val": {"prefix": {"addr": "2001:db8:1::", "len": 64}}, "timeout": 7200, "expires": 7190}},
            ]}}),
        ];
        items.extend(rules);
        let state = json!({"nftables": items}).to_string();
        let r = runner_with(probe_json(&all_sets(), Some(-10)), Some(state.clone()));
        let entries = sample();
        let rep = Nftables.sync(&SyncRequest::new(&entries, NOW), &r).unwrap();
        assert_eq!((rep.added, rep.removed, rep.updated, rep.unchanged), (0, 0, 1, 4), "{rep:?}");
        let Step::Command { stdin: Some(script), .. } = &rep.steps[0] else { panic!() };
        assert!(
            script
                .ends_with("add element inet banguard banned6_nets {\n\t2001:db8:1::/64 timeout 7200s\n}\n"),
            "{script}"
        );
        // A range (not something we add) forces a rebuild.
        let odd = state.replace(
            r#"{"prefix":{"addr":"192.0.2.0","len":24}}"#,
            r#"{"range":["192.0.2.0","192.0.2.77"]}"#,
        );
        assert_ne!(odd, state);
        let r = runner_with(probe_json(&all_sets(), Some(-10)), Some(odd));
        let rep = Nftables.sync(&SyncRequest::new(&entries, NOW), &r).unwrap();
        assert!(rep.repaired);
        let Step::Command { stdin: Some(script), .. } = &rep.steps[0] else { panic!() };
        assert!(script.contains("flush set inet banguard banned4_nets"));
    }

    #[test]
    fn failed_incremental_falls_back_to_rebuild() {
        let probe = probe_json(&all_sets(), Some(-10));
        let r = FakeRunner::default().on(NFT, move |args, stdin| {
            if let Some(a) = answer_probe(&probe, args) {
                return Some(a);
            }
            let s = stdin.unwrap_or_default();
            (!s.contains("flush set"))
                .then(|| (1, "Error: interval overlaps with an existing one".to_string()))
        });
        let entries = sample();
        let rep = Nftables.sync(&SyncRequest::new(&entries, NOW).previous(Some(&[])), &r).unwrap();
        assert!(rep.repaired);
        assert_eq!(rep.steps.len(), 1);
        assert_eq!(r.calls.borrow().len(), 4);
    }
}
