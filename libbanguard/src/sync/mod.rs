//! Firewall and hosts.deny back-ends. Filled in by the sync work.

/// One address or network to block in the kernel / hosts.deny.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallEntry {
    /// A validated address or network (host bits cleared).
    pub net: ipnet::IpNet,
    /// When the block ends (unix seconds), or `None` for permanent.
    pub expires_at: Option<i64>,
}
