//! The route model shared by the reconciler and the netlink layer: what a
//! route does (`Target`), a desired route, a route as the kernel holds it,
//! and the operations that turn one into the other.

use std::fmt;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

/// The main routing table (`RT_TABLE_MAIN`), the only one felix-lite reads
/// or writes.
pub const MAIN_TABLE: u32 = 254;

/// Margay's default route protocol number; defined in ctlproto because
/// margayctl reads the FIB by it too.
pub use margay_ctlproto::DEFAULT_FIB_PROTOCOL as DEFAULT_PROTOCOL;

/// What a route does with matching packets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// Forward via one gateway, or several (equal-cost multipath). Always
    /// sorted and without duplicates, so equal sets compare equal.
    Via(Vec<IpAddr>),
    /// Drop silently (`blackhole`).
    Blackhole,
    /// Deliver directly on an interface (`dev NAME scope link`).
    Dev(String),
}

impl Target {
    /// A `Via` target from next hops in any order, or `None` when empty.
    pub fn via(mut next_hops: Vec<IpAddr>) -> Option<Target> {
        next_hops.sort();
        next_hops.dedup();
        (!next_hops.is_empty()).then_some(Target::Via(next_hops))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Via(hops) => {
                f.write_str("via")?;
                for hop in hops {
                    write!(f, " {hop}")?;
                }
                Ok(())
            }
            Target::Blackhole => f.write_str("blackhole"),
            Target::Dev(name) => write!(f, "dev {name}"),
        }
    }
}

/// A route felix-lite wants in the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNetwork,
    pub target: Target,
}

/// A main-table route as a dump or a notification reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRoute {
    pub dst: IpNetwork,
    /// `RTA_PRIORITY` (0 when absent).
    pub metric: u32,
    /// `rtm_protocol`.
    pub protocol: u8,
    /// `rtm_type` (1 unicast, 6 blackhole, ...), needed to delete it exactly.
    pub kind: u8,
    /// `None` for shapes felix-lite never creates (unreachable, prohibit,
    /// encapsulated, a gateway plus a device restriction, ...).
    pub target: Option<Target>,
}

/// One change to the FIB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteOp {
    /// RTM_NEWROUTE with NLM_F_CREATE | NLM_F_REPLACE: idempotent.
    Replace(Route),
    /// RTM_DELROUTE of exactly this kernel route.
    Delete(KernelRoute),
}

impl RouteOp {
    /// The destination the operation is about.
    pub fn dst(&self) -> IpNetwork {
        match self {
            RouteOp::Replace(r) => r.dst,
            RouteOp::Delete(r) => r.dst,
        }
    }
}

impl fmt::Display for RouteOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteOp::Replace(r) => write!(f, "replace {} {}", r.dst, r.target),
            RouteOp::Delete(r) => match &r.target {
                Some(t) => {
                    write!(f, "delete {} {t} metric {}", r.dst, r.metric)
                }
                None => write!(f, "delete {} metric {}", r.dst, r.metric),
            },
        }
    }
}

/// The metric the kernel gives a route added without `RTA_PRIORITY`: 0 for
/// IPv4, 1024 (`IP6_RT_PRIO_USER`) for IPv6. felix-lite never sets one, so
/// its routes sit at exactly this metric.
pub fn default_metric(dst: &IpNetwork) -> u32 {
    match dst {
        IpNetwork::V4(_) => 0,
        IpNetwork::V6(_) => 1024,
    }
}

/// `dst` with its host bits cleared: the kernel refuses "10.0.0.5/24"
/// (EINVAL), and two spellings of one prefix must be one key.
pub fn normalize(dst: IpNetwork) -> IpNetwork {
    IpNetwork::new(dst.network(), dst.prefix()).unwrap_or(dst)
}

/// True for /32 and /128.
pub fn is_host_prefix(dst: &IpNetwork) -> bool {
    match dst {
        IpNetwork::V4(n) => n.prefix() == 32,
        IpNetwork::V6(n) => n.prefix() == 128,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_sorts_and_dedups() {
        let a: IpAddr = "10.0.0.2".parse().unwrap();
        let b: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(Target::via(vec![a, b, a]), Some(Target::Via(vec![b, a])));
        assert_eq!(Target::via(vec![]), None);
    }

    #[test]
    fn normalize_clears_host_bits() {
        let n = normalize("10.1.2.3/24".parse().unwrap());
        assert_eq!(n.to_string(), "10.1.2.0/24");
        let n = normalize("fd00::1/64".parse().unwrap());
        assert_eq!(n.to_string(), "fd00::/64");
    }
}
