//! BGP address autodetection: the address of the interface that holds the
//! default route, as Calico's `first-found`/`can-reach` methods would most
//! often pick on a node with one uplink.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

/// Why no address could be detected.
#[derive(Debug, thiserror::Error)]
pub enum AutodetectError {
    #[error("reading {path}: {source}")]
    Read {
        path: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no IPv{family} default route: configure the node address with \
         --ipv{family}-address"
    )]
    NoDefaultRoute { family: u8 },
    #[error(
        "interface {iface} holds the IPv{family} default route but has no \
         usable IPv{family} address"
    )]
    NoAddress { iface: String, family: u8 },
    #[error("listing interface addresses: {0}")]
    Ifaddrs(#[from] nix::Error),
}

/// The interface of the lowest-metric IPv4 default route in
/// /proc/net/route text.
pub fn default_iface_v4(proc_net_route: &str) -> Option<String> {
    proc_net_route
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
            if f.len() < 8 || f[1] != "00000000" || f[7] != "00000000" {
                return None;
            }
            let metric: u32 = f[6].parse().ok()?;
            Some((metric, f[0].to_string()))
        })
        .min()
        .map(|(_, iface)| iface)
}

/// The interface of the lowest-metric IPv6 default route in
/// /proc/net/ipv6_route text (the kernel's unreachable default on `lo` is
/// not a default route).
pub fn default_iface_v6(proc_net_ipv6_route: &str) -> Option<String> {
    proc_net_ipv6_route
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // dest plen src splen next_hop metric refcnt use flags iface
            if f.len() < 10 || f[1] != "00" || f[0].bytes().any(|b| b != b'0') {
                return None;
            }
            if f[9] == "lo" {
                return None;
            }
            let metric = u32::from_str_radix(f[5], 16).ok()?;
            Some((metric, f[9].to_string()))
        })
        .min()
        .map(|(_, iface)| iface)
}

/// The first usable address of `iface` in the family of `v6`, with its
/// prefix length. Link-local IPv6 addresses are not usable as BGP
/// addresses of a node.
pub fn iface_address(
    iface: &str,
    v6: bool,
) -> Result<Option<IpNetwork>, AutodetectError> {
    for ifa in nix::ifaddrs::getifaddrs()? {
        if ifa.interface_name != iface {
            continue;
        }
        let (Some(addr), Some(mask)) = (ifa.address, ifa.netmask) else {
            continue;
        };
        let found = if v6 {
            match (addr.as_sockaddr_in6(), mask.as_sockaddr_in6()) {
                (Some(a), Some(m)) if !is_link_local_v6(a.ip()) => {
                    let plen = u128::from(m.ip()).count_ones() as u8;
                    IpNetwork::new(IpAddr::V6(a.ip()), plen).ok()
                }
                _ => None,
            }
        } else {
            match (addr.as_sockaddr_in(), mask.as_sockaddr_in()) {
                (Some(a), Some(m)) => {
                    let plen = u32::from(m.ip()).count_ones() as u8;
                    IpNetwork::new(IpAddr::V4(a.ip()), plen).ok()
                }
                _ => None,
            }
        };
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

fn is_link_local_v6(ip: std::net::Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

/// Detects this node's address of one family from the default route.
pub fn detect(v6: bool) -> Result<IpNetwork, AutodetectError> {
    let family = if v6 { 6 } else { 4 };
    let path = if v6 {
        "/proc/net/ipv6_route"
    } else {
        "/proc/net/route"
    };
    let text = std::fs::read_to_string(path)
        .map_err(|source| AutodetectError::Read { path, source })?;
    let iface = if v6 {
        default_iface_v6(&text)
    } else {
        default_iface_v4(&text)
    }
    .ok_or(AutodetectError::NoDefaultRoute { family })?;
    iface_address(&iface, v6)?
        .ok_or(AutodetectError::NoAddress { iface, family })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_lowest_metric_ipv4_default() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth1\t00000000\t0100A8C0\t0003\t0\t0\t200\t00000000\t0\t0\t0\n\
            eth0\t00000000\t01004D0A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
            eth0\t00004D0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(default_iface_v4(text).as_deref(), Some("eth0"));
        assert_eq!(default_iface_v4("Iface\tDestination\n"), None);
    }

    #[test]
    fn ignores_unreachable_ipv6_default_on_lo() {
        let z = "00000000000000000000000000000000";
        let text = format!(
            "{z} 00 {z} 00 {z} ffffffff 00000001 00000000 00200200 lo\n\
             {z} 00 {z} 00 fd000000000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n\
             fd000000000000000000000000000000 40 {z} 00 {z} 00000100 00000001 00000000 00000001 eth0\n"
        );
        assert_eq!(default_iface_v6(&text).as_deref(), Some("eth0"));
        let only_lo = format!(
            "{z} 00 {z} 00 {z} ffffffff 00000001 00000000 00200200 lo\n"
        );
        assert_eq!(default_iface_v6(&only_lo), None);
    }

    #[test]
    fn loopback_has_an_ipv4_address() {
        let lo = iface_address("lo", false).unwrap().unwrap();
        assert_eq!(lo.ip().to_string(), "127.0.0.1");
        assert_eq!(lo.prefix(), 8);
        assert!(iface_address("no-such-if0", false).unwrap().is_none());
    }
}
