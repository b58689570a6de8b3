//! What a session negotiated from the two OPENs' capabilities (RFC 5492,
//! RFC 4760, RFC 6793, RFC 2918/7313, RFC 4724, RFC 8950). The
//! capabilities themselves are bgp-wire's [`Capability`] values, as the
//! codec decodes them and as we send them.

use std::net::Ipv4Addr;

use bgp_wire::open::mp_families;
use bgp_wire::{Afi, Capability, Family, GracefulRestartCap};
use serde::Serialize;

/// The address families margay routes; MP capabilities, End-of-RIB and
/// ROUTE-REFRESH for any other family are ignored (RFC 4760 8: a family
/// not advertised by both sides is just not negotiated).
pub const ROUTED: [Family; 2] = [Family::IPV4_UNICAST, Family::IPV6_UNICAST];

/// The outcome of an OPEN exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Negotiated {
    pub remote_as: u32,
    pub remote_id: Ipv4Addr,
    pub hold_time: u16,
    pub keepalive: u16,
    pub ibgp: bool,
    /// Families both sides enabled.
    pub families: Vec<Family>,
    pub four_octet_as: bool,
    pub route_refresh: bool,
    pub enhanced_route_refresh: bool,
    /// The peer's GR capability, if both sides advertised one.
    pub peer_gr: Option<GracefulRestartCap>,
    /// IPv4 NLRI may be sent and received with an IPv6 next hop.
    pub ipv4_over_ipv6_nh: bool,
}

impl Negotiated {
    /// Intersect our capabilities with the peer's.
    pub fn new(
        ours: &[Capability],
        theirs: &[Capability],
        remote_as: u32,
        remote_id: Ipv4Addr,
        hold_time: u16,
        keepalive: u16,
        ibgp: bool,
    ) -> Negotiated {
        let their_fams = mp_families(theirs);
        let families = mp_families(ours)
            .into_iter()
            .filter(|f| ROUTED.contains(f) && their_fams.contains(f))
            .collect();
        let both = |f: fn(&Capability) -> bool| {
            ours.iter().any(f) && theirs.iter().any(f)
        };
        Negotiated {
            remote_as,
            remote_id,
            hold_time,
            keepalive,
            ibgp,
            families,
            // RFC 6793 section 4: both must advertise it.
            four_octet_as: both(|c| matches!(c, Capability::FourOctetAs(_))),
            route_refresh: both(|c| *c == Capability::RouteRefresh),
            enhanced_route_refresh: both(|c| {
                *c == Capability::EnhancedRouteRefresh
            }),
            peer_gr: graceful_restart(ours)
                .and(graceful_restart(theirs))
                .cloned(),
            // RFC 8950 section 4: IPv4 NLRI with an IPv6 next hop only if
            // both sides announced that combination.
            ipv4_over_ipv6_nh: both(ipv4_over_ipv6),
        }
    }

    pub fn has(&self, f: Family) -> bool {
        self.families.contains(&f)
    }
}

/// The Graceful Restart capability (RFC 4724 section 3), if present.
pub fn graceful_restart(caps: &[Capability]) -> Option<&GracefulRestartCap> {
    caps.iter().find_map(|c| match c {
        Capability::GracefulRestart(g) => Some(g),
        _ => None,
    })
}

/// An Extended Next Hop capability with IPv4 unicast over an IPv6 next
/// hop (RFC 8950 section 3).
fn ipv4_over_ipv6(c: &Capability) -> bool {
    matches!(c, Capability::ExtendedNextHop(v) if v.iter().any(|e| {
        e.family == Family::IPV4_UNICAST && e.next_hop_afi == Afi::Ipv6
    }))
}

#[cfg(test)]
mod tests {
    use bgp_wire::{ExtNextHop, GrFamily};

    use super::*;

    fn enh_v4() -> Capability {
        Capability::ExtendedNextHop(vec![ExtNextHop {
            family: Family::IPV4_UNICAST,
            next_hop_afi: Afi::Ipv6,
        }])
    }

    fn neg(ours: &[Capability], theirs: &[Capability]) -> Negotiated {
        Negotiated::new(
            ours,
            theirs,
            1,
            Ipv4Addr::new(1, 1, 1, 1),
            90,
            30,
            false,
        )
    }

    #[test]
    fn no_mp_capability_means_ipv4_only() {
        let ours = [
            Capability::MultiProtocol(Family::IPV4_UNICAST),
            Capability::MultiProtocol(Family::IPV6_UNICAST),
            Capability::FourOctetAs(65000),
            Capability::RouteRefresh,
        ];
        let n = neg(&ours, &[]);
        assert_eq!(n.families, vec![Family::IPV4_UNICAST]);
        assert!(!n.four_octet_as && !n.route_refresh);
        assert!(n.peer_gr.is_none());
        // Any MP capability, even for a family we do not route, turns
        // the implicit IPv4 off.
        let n =
            neg(&ours, &[Capability::MultiProtocol(Family::IPV4_MULTICAST)]);
        assert!(n.families.is_empty());
    }

    #[test]
    fn intersection_and_gr() {
        let gr = GracefulRestartCap {
            restart_state: true,
            notification: false,
            restart_time: 120,
            families: vec![GrFamily {
                family: Family::IPV6_UNICAST,
                forwarding_preserved: true,
            }],
        };
        let ours = [
            Capability::MultiProtocol(Family::IPV4_UNICAST),
            Capability::MultiProtocol(Family::IPV6_UNICAST),
            Capability::GracefulRestart(GracefulRestartCap {
                restart_time: 120,
                ..Default::default()
            }),
            enh_v4(),
        ];
        let theirs = [
            Capability::MultiProtocol(Family::IPV6_UNICAST),
            Capability::GracefulRestart(gr.clone()),
            enh_v4(),
        ];
        let n = neg(&ours, &theirs);
        assert_eq!(n.families, vec![Family::IPV6_UNICAST]);
        assert_eq!(n.peer_gr, Some(gr.clone()));
        assert!(n.ipv4_over_ipv6_nh);
        assert!(n.has(Family::IPV6_UNICAST) && !n.has(Family::IPV4_UNICAST));
        // GR only counts when we advertise it too (RFC 4724 4).
        assert!(neg(&ours[..2], &theirs).peer_gr.is_none());
        // Extended next hop for IPv4 only with an IPv6 next hop.
        let v4_nh = Capability::ExtendedNextHop(vec![ExtNextHop {
            family: Family::IPV4_UNICAST,
            next_hop_afi: Afi::Ipv4,
        }]);
        assert!(!neg(&ours, &[v4_nh]).ipv4_over_ipv6_nh);
    }
}
