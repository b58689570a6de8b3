//! Address arithmetic shared by blocks, pools and the block search: IPv4
//! and IPv6 addresses as `u128` offsets so one code path serves both.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;

/// Address family of a pool, block or request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The family of `ip`.
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// The family of a network.
    pub fn of_net(net: &IpNetwork) -> Family {
        Family::of(net.ip())
    }

    /// Address width in bits.
    pub fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// `ip` as an unsigned integer.
pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The address of family `fam` whose integer value is `n` (truncated to
/// the family's width).
pub fn from_u128(fam: Family, n: u128) -> IpAddr {
    match fam {
        // Truncation is intended: callers only pass in-range values.
        Family::V4 => IpAddr::V4(Ipv4Addr::from(n as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

/// Number of addresses in `net` (saturating at `u128::MAX` for ::/0).
pub fn size(net: &IpNetwork) -> u128 {
    let host_bits = u32::from(Family::of_net(net).bits() - net.prefix());
    1u128.checked_shl(host_bits).unwrap_or(u128::MAX)
}

/// The network address of `net` as an integer.
pub fn base(net: &IpNetwork) -> u128 {
    to_u128(net.network())
}

/// Offset of `ip` inside `net`, or None when `ip` lies outside it.
pub fn ordinal(net: &IpNetwork, ip: IpAddr) -> Option<u128> {
    if Family::of(ip) != Family::of_net(net) || !net.contains(ip) {
        return None;
    }
    Some(to_u128(ip) - base(net))
}

/// The network of family `fam` at `start` with prefix length `prefix`.
pub fn net_at(fam: Family, start: u128, prefix: u8) -> IpNetwork {
    IpNetwork::new(from_u128(fam, start), prefix)
        .expect("prefix length checked by the caller")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_round_trip_v4_and_v6() {
        let v4: IpNetwork = "10.0.0.64/26".parse().unwrap();
        assert_eq!(size(&v4), 64);
        let ip: IpAddr = "10.0.0.70".parse().unwrap();
        assert_eq!(ordinal(&v4, ip), Some(6));
        assert_eq!(from_u128(Family::V4, base(&v4) + 6), ip);
        assert_eq!(ordinal(&v4, "10.0.0.128".parse().unwrap()), None);

        let v6: IpNetwork = "fd00::40/122".parse().unwrap();
        assert_eq!(size(&v6), 64);
        assert_eq!(ordinal(&v6, "fd00::41".parse().unwrap()), Some(1));
        assert_eq!(ordinal(&v6, "10.0.0.1".parse().unwrap()), None);
    }
}
