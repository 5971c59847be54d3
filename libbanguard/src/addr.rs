//! What PAM_RHOST can hold, and the key a host is counted and banned under.
//!
//! * An address literal (IPv4, IPv6 with or without brackets, with a zone
//!   id, IPv4-mapped IPv6) becomes a network: the address masked to the
//!   configured prefix (IPv4 /32, IPv6 /64 by default), so an attacker
//!   rotating inside one IPv6 /64 is one attacker.
//! * Addresses that are not one remote host's own ([`AddrClass`]:
//!   unspecified, loopback, link-local, multicast, broadcast) are counted
//!   per exact address, never aggregated, and never reach a firewall.
//! * Anything else (a DNS name from `UseDNS yes` or a reverse-DNS vsftpd
//!   build, or garbage) is never trusted as an address: it is counted and
//!   refused under a `name:` label, but never reaches a firewall rule or
//!   hosts.deny. Callers that know the numeric address (sshd's
//!   `SSH_CONNECTION`) pass it as a hint, which wins over the name.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Longest name label kept (a DNS name is at most 253 characters).
const MAX_NAME: usize = 253;

/// The identity of a remote host as banguard counts it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostKey {
    /// A validated network (host bits cleared).
    Net(IpNet),
    /// A label for a host known only by a name; never sent to a firewall.
    Name(String),
}

impl HostKey {
    /// The key for an address at the given prefixes; an address that is
    /// not ordinary unicast is keyed alone ([`AddrClass::aggregates`]).
    pub fn for_addr(addr: IpAddr, ipv4_prefix: u8, ipv6_prefix: u8) -> HostKey {
        if classify(addr).aggregates() {
            HostKey::Net(mask(addr, ipv4_prefix, ipv6_prefix))
        } else {
            HostKey::Net(mask(addr, 32, 128))
        }
    }

    /// The text stored in the database: "198.51.100.7/32", "2001:db8::/64"
    /// or "name:host.example".
    pub fn db_key(&self) -> String {
        match self {
            HostKey::Net(n) => n.to_string(),
            HostKey::Name(n) => format!("name:{n}"),
        }
    }

    /// Parses a stored key back.
    pub fn from_db_key(text: &str) -> Option<HostKey> {
        match text.strip_prefix("name:") {
            Some(name) => Some(HostKey::Name(name.to_string())),
            None => IpNet::from_str(text).ok().map(|n| HostKey::Net(n.trunc())),
        }
    }

    /// The network, if this key is an address.
    pub fn net(&self) -> Option<IpNet> {
        match self {
            HostKey::Net(n) => Some(*n),
            HostKey::Name(_) => None,
        }
    }
}

/// Serialised as people read it ("198.51.100.7", "2001:db8::/64").
impl serde::Serialize for HostKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for HostKey {
    /// People read single hosts without their /32 or /128.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostKey::Net(n) if n.prefix_len() == n.max_prefix_len() => write!(f, "{}", n.addr()),
            HostKey::Net(n) => write!(f, "{n}"),
            // Prefixed, so that a label such as "127.1" never reads like
            // an address; `banguardctl` accepts it back as written.
            HostKey::Name(n) => write!(f, "name:{n}"),
        }
    }
}

/// What kind of address a source is. The class decides how a host is
/// keyed and whether its ban may reach a firewall (the table in
/// banguard.toml(5)):
///
/// | class | examples | keyed | firewall |
/// |---|---|---|---|
/// | unicast | 198.51.100.7, 10.1.2.3, 2001:db8::1 | network at ipv4/ipv6_prefix | yes |
/// | loopback | 127.0.0.1, ::1 | the address alone | never |
/// | link-local | 169.254.1.2, fe80::1%eth0 | the address alone (zone dropped) | never |
/// | unspecified | 0.0.0.0, :: | the address alone | never |
/// | multicast | 224.0.0.1, ff02::1 | the address alone | never |
/// | broadcast | 255.255.255.255 | the address alone | never |
///
/// Why: a link-local /64 is every neighbour on every link, and a firewall
/// rule has no zone; loopback is the machine itself; the others are never
/// a real source of a TCP connection, so a PAM_RHOST holding one is an
/// application's mistake or a lie, which PAM may refuse but the kernel
/// must not act on. IPv4-mapped IPv6 is IPv4; private and documentation
/// ranges are ordinary unicast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrClass {
    Unicast,
    Loopback,
    LinkLocal,
    Unspecified,
    Multicast,
    Broadcast,
}

impl AddrClass {
    /// Whether hosts of this class are counted per network of the
    /// configured prefix (only unicast: the others per exact address).
    pub fn aggregates(self) -> bool {
        self == AddrClass::Unicast
    }

    /// Whether a ban of this class may go into the kernel or hosts.deny.
    pub fn may_block(self) -> bool {
        self == AddrClass::Unicast
    }

    /// How people read the class ("link-local").
    pub fn name(self) -> &'static str {
        match self {
            AddrClass::Unicast => "unicast",
            AddrClass::Loopback => "loopback",
            AddrClass::LinkLocal => "link-local",
            AddrClass::Unspecified => "unspecified",
            AddrClass::Multicast => "multicast",
            AddrClass::Broadcast => "broadcast",
        }
    }
}

/// The class of an address (IPv4-mapped IPv6 as IPv4).
pub fn classify(addr: IpAddr) -> AddrClass {
    match canonical(addr) {
        IpAddr::V4(a) if a.is_unspecified() => AddrClass::Unspecified,
        IpAddr::V4(a) if a.is_loopback() => AddrClass::Loopback,
        IpAddr::V4(a) if a.is_link_local() => AddrClass::LinkLocal,
        IpAddr::V4(a) if a.is_multicast() => AddrClass::Multicast,
        IpAddr::V4(a) if a.is_broadcast() => AddrClass::Broadcast,
        IpAddr::V6(a) if a.is_unspecified() => AddrClass::Unspecified,
        IpAddr::V6(a) if a.is_loopback() => AddrClass::Loopback,
        IpAddr::V6(a) if a.is_unicast_link_local() => AddrClass::LinkLocal,
        IpAddr::V6(a) if a.is_multicast() => AddrClass::Multicast,
        _ => AddrClass::Unicast,
    }
}

/// The loopback networks, which no firewall entry may cover.
pub fn loopback_nets() -> [IpNet; 2] {
    [
        IpNet::V4(Ipv4Net::new(Ipv4Addr::LOCALHOST, 8).expect("literal")),
        IpNet::V6(Ipv6Net::new(Ipv6Addr::LOCALHOST, 128).expect("literal")),
    ]
}

/// Why `net` may not go into a firewall, if it may not: its class (taken
/// from its first address; with the floor below, a network that reaches
/// into a special range starts inside it), or wider than the floor
/// (`widest_ipv4`/`widest_ipv6`: the shortest prefix length pushed).
pub fn block_refusal(net: &IpNet, widest_ipv4: u8, widest_ipv6: u8) -> Option<String> {
    let class = classify(net.network());
    if !class.may_block() {
        return Some(format!("{} is {}: never blocked in a firewall", net.trunc(), class.name()));
    }
    let (widest, key) = match net {
        IpNet::V4(_) => (widest_ipv4, "widest_ipv4_prefix"),
        IpNet::V6(_) => (widest_ipv6, "widest_ipv6_prefix"),
    };
    (net.prefix_len() < widest)
        .then(|| format!("{} is wider than /{widest}, the widest network pushed ([sync] {key})", net.trunc()))
}

/// The part of `net` that no network in `keep` covers, as the fewest CIDR
/// blocks: a banned /24 around one ignored address becomes 8 blocks that
/// leave it out. Empty when `keep` covers all of `net`.
pub fn carve(net: IpNet, keep: &[IpNet]) -> Vec<IpNet> {
    let net = net.trunc();
    let overlaps = |k: &IpNet| k.contains(&net.network()) || net.contains(&k.network());
    let inside: Vec<IpNet> = keep.iter().filter(|k| overlaps(k)).map(IpNet::trunc).collect();
    if inside.is_empty() {
        return vec![net];
    }
    if inside.iter().any(|k| k.prefix_len() <= net.prefix_len()) {
        // A kept network covers all of this one.
        return Vec::new();
    }
    let halves = net.subnets(net.prefix_len() + 1).expect("a kept network lies strictly inside");
    halves.flat_map(|half| carve(half, &inside)).collect()
}

/// Masks an address to the configured prefix for its family, after turning
/// IPv4-mapped IPv6 into IPv4.
pub fn mask(addr: IpAddr, ipv4_prefix: u8, ipv6_prefix: u8) -> IpNet {
    match canonical(addr) {
        IpAddr::V4(a) => IpNet::V4(Ipv4Net::new(a, ipv4_prefix.min(32)).expect("prefix <= 32").trunc()),
        IpAddr::V6(a) => IpNet::V6(Ipv6Net::new(a, ipv6_prefix.min(128)).expect("prefix <= 128").trunc()),
    }
}

/// `::ffff:198.51.100.7` is 198.51.100.7.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Parses an address literal as PAM_RHOST may carry it: `198.51.100.7`,
/// `2001:db8::1`, `[2001:db8::1]`, `fe80::1%eth0`, `::ffff:198.51.100.7`.
/// Returns `None` for names and garbage.
pub fn parse_addr(text: &str) -> Option<IpAddr> {
    let s = text.trim();
    let s = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or(s);
    // The zone id names an interface on *our* side; the address is the host.
    let s = s.split_once('%').map_or(s, |(a, _)| a);
    if let Ok(v4) = Ipv4Addr::from_str(s) {
        return Some(IpAddr::V4(v4));
    }
    Ipv6Addr::from_str(s).ok().map(|v6| canonical(IpAddr::V6(v6)))
}

/// Parses an address or network given by an operator: "198.51.100.7",
/// "203.0.113.0/24", "2001:db8::/64". Host bits are cleared.
pub fn parse_net(text: &str) -> Result<IpNet, String> {
    let s = text.trim();
    if let Some(addr) = parse_addr(s) {
        return Ok(IpNet::from(addr));
    }
    match IpNet::from_str(s) {
        Ok(IpNet::V6(n)) => match n.addr().to_ipv4_mapped() {
            Some(v4) if n.prefix_len() >= 96 => {
                Ok(IpNet::V4(Ipv4Net::new(v4, n.prefix_len() - 96).expect("prefix in range").trunc()))
            }
            _ => Ok(IpNet::V6(n.trunc())),
        },
        Ok(n) => Ok(n.trunc()),
        Err(_) => Err(format!(
            "{text:?} is not an IPv4/IPv6 address or network (e.g. 198.51.100.7, 203.0.113.0/24, 2001:db8::/64)"
        )),
    }
}

/// The first address of `SSH_CONNECTION=<client ip> <port> <local ip> <port>`.
pub fn parse_ssh_connection(value: &str) -> Option<IpAddr> {
    let mut parts = value.split_whitespace();
    let client = parts.next()?;
    // Exactly four fields, or it is not what sshd writes.
    let rest: Vec<_> = parts.collect();
    if rest.len() != 3 {
        return None;
    }
    parse_addr(client)
}

/// Where a request came from, as far as the application told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A numeric address.
    Addr(IpAddr),
    /// A name or other non-address text, normalised to a safe label.
    Name(String),
    /// No remote host (local login).
    Local,
}

/// Decides where a request came from. `rhost` is PAM_RHOST; `hint` is a
/// numeric address the application vouches for (sshd's SSH_CONNECTION),
/// used only in place of a name in `rhost`.
pub fn origin(rhost: Option<&str>, hint: Option<IpAddr>) -> Origin {
    let rhost = rhost.map(str::trim).filter(|r| !r.is_empty());
    match (rhost, hint) {
        // The hint only ever replaces a name: a login without PAM_RHOST is
        // local whatever its environment says (a user can set any).
        (None, _) => Origin::Local,
        (Some(text), hint) => match (parse_addr(text), hint) {
            (Some(addr), _) => Origin::Addr(addr),
            (None, Some(addr)) => Origin::Addr(canonical(addr)),
            (None, None) => Origin::Name(name_label(text)),
        },
    }
}

/// A safe, bounded label for a non-address PAM_RHOST: lowercase, with
/// anything outside `[a-z0-9.-_]` replaced by `?`. Distinct garbage may
/// share a label; that only makes counting stricter.
pub fn name_label(name: &str) -> String {
    name.trim()
        .trim_end_matches('.')
        .chars()
        .take(MAX_NAME)
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '?' }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn classes_are_keyed_alone_and_never_blocked() {
        for (text, class) in [
            ("198.51.100.7", AddrClass::Unicast),
            ("10.1.2.3", AddrClass::Unicast),
            ("::ffff:198.51.100.7", AddrClass::Unicast),
            ("127.0.0.1", AddrClass::Loopback),
            ("::1", AddrClass::Loopback),
            ("169.254.1.2", AddrClass::LinkLocal),
            ("fe80::bad:1", AddrClass::LinkLocal),
            ("0.0.0.0", AddrClass::Unspecified),
            ("::", AddrClass::Unspecified),
            ("224.0.0.1", AddrClass::Multicast),
            ("ff02::1", AddrClass::Multicast),
            ("255.255.255.255", AddrClass::Broadcast),
        ] {
            let addr = parse_addr(text).unwrap();
            assert_eq!(classify(addr), class, "{text}");
            let key = HostKey::for_addr(addr, 24, 64).net().unwrap();
            let alone = key.prefix_len() == key.max_prefix_len();
            assert_eq!(alone, class != AddrClass::Unicast, "{text} keyed as {key}");
            assert_eq!(block_refusal(&key, 16, 32).is_none(), class == AddrClass::Unicast, "{text}");
        }
        // The zone is dropped: the key is the neighbour's address alone.
        let zoned = HostKey::for_addr(parse_addr("fe80::bad:1%eth0").unwrap(), 32, 64);
        assert_eq!(zoned.db_key(), "fe80::bad:1/128");
    }

    #[test]
    fn the_floor_refuses_wide_networks() {
        assert!(block_refusal(&n("2000::/3"), 16, 32).unwrap().contains("widest_ipv6_prefix"));
        assert!(block_refusal(&n("10.0.0.0/8"), 16, 32).unwrap().contains("wider than /16"));
        assert!(block_refusal(&n("10.1.0.0/16"), 16, 32).is_none());
        assert!(block_refusal(&n("::/64"), 16, 32).unwrap().contains("unspecified"));
        assert!(block_refusal(&n("fe80::/64"), 16, 32).unwrap().contains("link-local"));
    }

    #[test]
    fn carving_leaves_kept_addresses_out() {
        let keep = [n("192.0.2.10/32")];
        let parts = carve(n("192.0.2.0/24"), &keep);
        assert_eq!(parts.len(), 8, "{parts:?}");
        let ten: IpAddr = "192.0.2.10".parse().unwrap();
        assert!(parts.iter().all(|p| !p.contains(&ten)));
        for host in (0..=255u8).filter(|h| *h != 10) {
            let a = IpAddr::V4(Ipv4Addr::new(192, 0, 2, host));
            assert_eq!(parts.iter().filter(|p| p.contains(&a)).count(), 1, "{a} covered once");
        }
        assert_eq!(carve(n("2001:db8:1:2::/64"), &[n("2001:db8:1:2::10/128")]).len(), 64);
        assert_eq!(carve(n("192.0.2.0/24"), &[n("192.0.2.0/23")]), Vec::<IpNet>::new());
        assert_eq!(carve(n("192.0.2.0/24"), &[n("198.51.100.0/24")]), [n("192.0.2.0/24")]);
    }

    fn a(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_what_rhost_can_hold() {
        assert_eq!(parse_addr("198.51.100.7"), Some(a("198.51.100.7")));
        assert_eq!(parse_addr("2001:db8::1"), Some(a("2001:db8::1")));
        assert_eq!(parse_addr("[2001:db8::1]"), Some(a("2001:db8::1")));
        assert_eq!(parse_addr("fe80::1%eth0"), Some(a("fe80::1")));
        assert_eq!(parse_addr("[fe80::1%2]"), Some(a("fe80::1")));
        assert_eq!(parse_addr("::ffff:198.51.100.7"), Some(a("198.51.100.7")));
        assert_eq!(parse_addr(" 192.0.2.1 "), Some(a("192.0.2.1")));
        for bad in [
            "",
            "host.example.com",
            "198.51.100",
            "198.51.100.7.",
            "1.2.3.4 5",
            "[::1",
            "::1]",
            "300.1.1.1",
            "0x7f.1",
            "localhost",
        ] {
            assert_eq!(parse_addr(bad), None, "{bad}");
        }
    }

    #[test]
    fn keys_mask_to_prefix() {
        assert_eq!(HostKey::for_addr(a("198.51.100.7"), 32, 64).db_key(), "198.51.100.7/32");
        assert_eq!(HostKey::for_addr(a("198.51.100.7"), 24, 64).db_key(), "198.51.100.0/24");
        assert_eq!(HostKey::for_addr(a("2001:db8:1:2:3:4:5:6"), 32, 64).db_key(), "2001:db8:1:2::/64");
        assert_eq!(
            HostKey::for_addr(a("2001:db8:1:2::9"), 32, 64),
            HostKey::for_addr(a("2001:db8:1:2:ffff::1"), 32, 64)
        );
        assert_eq!(HostKey::for_addr(a("::ffff:198.51.100.7"), 32, 64).db_key(), "198.51.100.7/32");
        assert_eq!(HostKey::for_addr(a("2001:db8::1"), 32, 128).to_string(), "2001:db8::1");
        assert_eq!(HostKey::for_addr(a("198.51.100.7"), 32, 64).to_string(), "198.51.100.7");
        assert_eq!(HostKey::for_addr(a("2001:db8::1"), 32, 64).to_string(), "2001:db8::/64");
    }

    #[test]
    fn db_keys_round_trip() {
        for k in [
            HostKey::for_addr(a("198.51.100.7"), 32, 64),
            HostKey::for_addr(a("2001:db8::7"), 32, 64),
            HostKey::Name("host.example".into()),
        ] {
            assert_eq!(HostKey::from_db_key(&k.db_key()), Some(k));
        }
        assert_eq!(HostKey::from_db_key("garbage"), None);
    }

    #[test]
    fn operator_networks() {
        assert_eq!(parse_net("203.0.113.9/24").unwrap().to_string(), "203.0.113.0/24");
        assert_eq!(parse_net("198.51.100.7").unwrap().to_string(), "198.51.100.7/32");
        assert_eq!(parse_net("2001:db8::1/64").unwrap().to_string(), "2001:db8::/64");
        assert_eq!(parse_net("::ffff:198.51.100.0/120").unwrap().to_string(), "198.51.100.0/24");
        assert!(parse_net("example.com").unwrap_err().contains("not an IPv4/IPv6"));
        assert!(parse_net("10.0.0.0/33").is_err());
    }

    #[test]
    fn ssh_connection_env() {
        assert_eq!(parse_ssh_connection("198.51.100.7 51234 127.0.0.1 22"), Some(a("198.51.100.7")));
        assert_eq!(parse_ssh_connection("2001:db8::2 51234 ::1 22"), Some(a("2001:db8::2")));
        assert_eq!(parse_ssh_connection("198.51.100.7"), None);
        assert_eq!(parse_ssh_connection("name 1 2 3"), None);
    }

    #[test]
    fn origin_prefers_literal_then_hint_and_never_trusts_names() {
        let hint = Some(a("192.0.2.5"));
        assert_eq!(origin(Some("198.51.100.7"), hint), Origin::Addr(a("198.51.100.7")));
        assert_eq!(origin(Some("evil.example"), hint), Origin::Addr(a("192.0.2.5")));
        assert_eq!(origin(Some("Evil.Example."), None), Origin::Name("evil.example".into()));
        assert_eq!(origin(Some("a b;rm -rf\n"), None), Origin::Name("a?b?rm?-rf".into()));
        assert_eq!(origin(None, None), Origin::Local);
        assert_eq!(origin(Some("  "), None), Origin::Local);
        assert_eq!(origin(None, hint), Origin::Local, "SSH_CONNECTION never makes a local login remote");
        assert_eq!(origin(Some(" "), hint), Origin::Local);
        let long = "x".repeat(1000);
        match origin(Some(&long), None) {
            Origin::Name(n) => assert_eq!(n.len(), MAX_NAME),
            other => panic!("{other:?}"),
        }
    }
}
