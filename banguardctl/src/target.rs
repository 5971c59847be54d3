//! Hosts named on the command line: an address, a network in CIDR form,
//! or (where a command accepts it) the name label a non-numeric PAM_RHOST
//! was counted under, as `list` shows it (`name:host.example`,
//! `name:a?b`) or as a plain host name.
//!
//! A network with host bits set (`10.1.2.3/8`) is refused with the
//! network it would mean: for `ban` a typo there widens a ban to millions
//! of hosts, and one rule for every command is easier to remember.

use crate::error::{Error, Result};
use banguard::HostKey;
use banguard::addr::{name_label, parse_addr, parse_net};
use ipnet::IpNet;
use std::str::FromStr;

/// What a command accepts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Accept {
    /// Address or network (`ban`).
    Net,
    /// Address, network or name label (`unban`, `history`).
    NetOrName,
}

const EXAMPLES: &str = "e.g. 198.51.100.7, 203.0.113.0/24, 2001:db8::/64";

pub fn parse(text: &str, accept: Accept) -> Result<HostKey> {
    let s = text.trim();
    let bad = |msg: String| Error::msg(format!("invalid address {text:?}: {msg}"));
    if s.is_empty() {
        return Err(bad(format!("empty; give an address or network ({EXAMPLES})")));
    }
    if let Some(label) = s.strip_prefix("name:") {
        if accept == Accept::NetOrName && !label.is_empty() && name_label(label) == label {
            return Ok(HostKey::Name(label.to_string()));
        }
        return Err(bad(match accept {
            Accept::Net => "a name label is never banned by hand; give an address or network".into(),
            Accept::NetOrName => {
                "not a name label as `list` shows one (lowercase letters, digits, '.', '-', '_', '?')".into()
            }
        }));
    }
    if s.contains('/') {
        let raw = IpNet::from_str(s)
            .map_err(|_| bad(format!("not an IPv4/IPv6 network in CIDR form ({EXAMPLES})")))?;
        if raw != raw.trunc() {
            return Err(bad(format!(
                "host bits are set after /{}: did you mean {}?",
                raw.prefix_len(),
                raw.trunc()
            )));
        }
        return parse_net(s).map(HostKey::Net).map_err(bad);
    }
    if let Some(addr) = parse_addr(s) {
        return Ok(HostKey::Net(IpNet::from(addr)));
    }
    if accept == Accept::NetOrName && looks_like_name(s) {
        return Ok(HostKey::Name(name_label(s)));
    }
    Err(bad(match accept {
        Accept::Net => format!("not an IPv4/IPv6 address or network ({EXAMPLES})"),
        Accept::NetOrName => {
            format!("not an IPv4/IPv6 address, network or host name ({EXAMPLES}, host.example.net)")
        }
    }))
}

/// A DNS-like name: letters, digits, '.', '-', '_', at least one letter,
/// so that a mistyped address ("300.1.1.1", "10.0.0") is not taken for one.
pub fn looks_like_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && !s.starts_with(['-', '.'])
        && s.chars().all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
        && s.chars().any(|c| c.is_ascii_alphabetic())
}

/// A host name given as it is (not as a `name:` label): what the admin
/// copied from a log line such as sshd's `Failed password for root from
/// host.example.com` (UseDNS yes). sshd counts by the numeric address it
/// vouches for (SSH_CONNECTION), so commands look at the addresses the
/// name resolves to as well as its label.
pub fn plain_name(text: &str) -> Option<&str> {
    let s = text.trim();
    (!s.starts_with("name:") && looks_like_name(s)).then_some(s)
}

/// What a name resolves to now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    Addrs(Vec<std::net::IpAddr>),
    /// Why not (no such name, no answer within [`RESOLVE_TIMEOUT`]).
    Failed(String),
}

/// The longest a lookup may take before the command goes on without it.
pub const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Resolves `name` through the system's resolver (hosts file, DNS), in a
/// thread so that a hung resolver costs at most [`RESOLVE_TIMEOUT`];
/// addresses deduplicated, in the resolver's order, at most 16.
pub fn resolve(name: &str) -> Resolved {
    use std::net::ToSocketAddrs;
    let (tx, rx) = std::sync::mpsc::channel();
    let owned = name.to_string();
    std::thread::spawn(move || {
        let _ =
            tx.send((owned.as_str(), 0).to_socket_addrs().map(|it| it.map(|a| a.ip()).collect::<Vec<_>>()));
    });
    match rx.recv_timeout(RESOLVE_TIMEOUT) {
        Ok(Ok(found)) => {
            let mut addrs = Vec::new();
            for a in found {
                let a = banguard::addr::parse_addr(&a.to_string()).unwrap_or(a);
                if !addrs.contains(&a) && addrs.len() < 16 {
                    addrs.push(a);
                }
            }
            if addrs.is_empty() { Resolved::Failed("no address".into()) } else { Resolved::Addrs(addrs) }
        }
        Ok(Err(e)) => Resolved::Failed(banguard::text::clean(&e.to_string())),
        Err(_) => Resolved::Failed(format!("no answer within {} s", RESOLVE_TIMEOUT.as_secs())),
    }
}

/// The line every command prints for a plain name.
pub fn name_note(name: &str, resolved: &Resolved) -> String {
    let name = banguard::text::clean(name);
    let found = match resolved {
        Resolved::Addrs(a) => {
            format!(
                "{name} resolves to {} now",
                a.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
            )
        }
        Resolved::Failed(why) => format!("{name} could not be resolved ({why})"),
    };
    format!(
        "note: sshd counts its attempts by the client's address (SSH_CONNECTION), not by the name it logs; {found}; \
         the name's own label (name:{}) is what applications that give no address are counted under",
        banguard::addr::name_label(&name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str, a: Accept) -> String {
        parse(s, a).unwrap().db_key()
    }

    fn err(s: &str, a: Accept) -> String {
        parse(s, a).unwrap_err().to_string()
    }

    #[test]
    fn addresses_and_networks() {
        assert_eq!(ok("198.51.100.7", Accept::Net), "198.51.100.7/32");
        assert_eq!(ok(" 203.0.113.0/24 ", Accept::Net), "203.0.113.0/24");
        assert_eq!(ok("2001:db8::1", Accept::Net), "2001:db8::1/128");
        assert_eq!(ok("[2001:db8::1]", Accept::Net), "2001:db8::1/128");
        assert_eq!(ok("2001:db8::/64", Accept::Net), "2001:db8::/64");
        assert_eq!(ok("::ffff:198.51.100.7", Accept::Net), "198.51.100.7/32");
        assert_eq!(ok("::ffff:198.51.100.0/120", Accept::Net), "198.51.100.0/24");
    }

    #[test]
    fn host_bits_are_refused_with_the_network_meant() {
        let e = err("10.1.2.3/8", Accept::Net);
        assert!(e.contains("host bits") && e.contains("did you mean 10.0.0.0/8?"), "{e}");
        assert!(err("2001:db8::1/64", Accept::NetOrName).contains("2001:db8::/64"));
    }

    #[test]
    fn names_only_where_accepted() {
        assert_eq!(ok("Host.Example.NET", Accept::NetOrName), "name:host.example.net");
        // Every label `list` prints comes back as the same key.
        for label in ["a?b", "127.1", "1.2.3", "host.example", "x??y"] {
            let key = HostKey::Name(label.to_string());
            assert_eq!(parse(&key.to_string(), Accept::NetOrName).unwrap(), key, "{key}");
        }
        assert!(err("name:a?b", Accept::Net).contains("never banned by hand"));
        assert!(parse("name:A B", Accept::NetOrName).is_err());
        assert!(err("host.example.net", Accept::Net).contains("not an IPv4/IPv6 address or network"));
        for bad in ["300.1.1.1", "10.0.0", "1.2.3.4/33", "a b", "x;rm", "", "-x", "1.2.3.4/x"] {
            assert!(parse(bad, Accept::NetOrName).is_err(), "{bad:?}");
        }
    }
}
