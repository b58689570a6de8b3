//! Capabilities we advertise and what a session negotiated (RFC 5492,
//! RFC 4760, RFC 6793, RFC 2918/7313, RFC 4724, RFC 8950).

use std::net::Ipv4Addr;

use serde::Serialize;

/// The address families margay routes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize,
)]
pub enum Family {
    Ipv4Unicast,
    Ipv6Unicast,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::Ipv4Unicast, Family::Ipv6Unicast];

    pub fn afi(self) -> u16 {
        match self {
            Family::Ipv4Unicast => 1,
            Family::Ipv6Unicast => 2,
        }
    }

    pub fn safi(self) -> u8 {
        1
    }

    pub fn from_afi_safi(afi: u16, safi: u8) -> Option<Family> {
        match (afi, safi) {
            (1, 1) => Some(Family::Ipv4Unicast),
            (2, 1) => Some(Family::Ipv6Unicast),
            _ => None,
        }
    }
}

/// The Graceful Restart capability (RFC 4724 section 3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GracefulRestartCap {
    /// The R bit: "the BGP speaker has restarted".
    pub restarting: bool,
    /// Seconds the peer should keep our routes (12 bits).
    pub restart_time: u16,
    /// Families, each with its "forwarding state preserved" flag.
    pub families: Vec<(Family, bool)>,
}

/// The capabilities of one OPEN, as margay understands them; others are
/// ignored as RFC 5492 section 3 allows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// RFC 4760 Multiprotocol Extensions.
    pub families: Vec<Family>,
    /// RFC 6793: our/their 4-octet AS.
    pub four_octet_as: Option<u32>,
    /// RFC 2918.
    pub route_refresh: bool,
    /// RFC 7313.
    pub enhanced_route_refresh: bool,
    pub graceful_restart: Option<GracefulRestartCap>,
    /// RFC 8950: NLRI families that may carry an IPv6 next hop.
    pub extended_next_hop: Vec<Family>,
    /// Multiprotocol capabilities for families margay does not route
    /// were sent (so the implicit IPv4 of RFC 4760 8 does not apply).
    pub mp_other: bool,
}

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
        ours: &Capabilities,
        theirs: &Capabilities,
        remote_as: u32,
        remote_id: Ipv4Addr,
        hold_time: u16,
        keepalive: u16,
        ibgp: bool,
    ) -> Negotiated {
        // RFC 4760 section 8: a speaker that advertises no Multiprotocol
        // capability supports IPv4 unicast only.
        let implicit = |c: &Capabilities| {
            if c.families.is_empty() && !c.mp_other {
                vec![Family::Ipv4Unicast]
            } else {
                c.families.clone()
            }
        };
        let their_fams = implicit(theirs);
        let families = implicit(ours)
            .into_iter()
            .filter(|f| their_fams.contains(f))
            .collect();
        let both = |f: fn(&Capabilities) -> bool| f(ours) && f(theirs);
        Negotiated {
            remote_as,
            remote_id,
            hold_time,
            keepalive,
            ibgp,
            families,
            // RFC 6793 section 4: both must advertise it.
            four_octet_as: ours.four_octet_as.is_some()
                && theirs.four_octet_as.is_some(),
            route_refresh: both(|c| c.route_refresh),
            enhanced_route_refresh: both(|c| c.enhanced_route_refresh),
            peer_gr: if ours.graceful_restart.is_some() {
                theirs.graceful_restart.clone()
            } else {
                None
            },
            ipv4_over_ipv6_nh: ours
                .extended_next_hop
                .contains(&Family::Ipv4Unicast)
                && theirs.extended_next_hop.contains(&Family::Ipv4Unicast),
        }
    }

    pub fn has(&self, f: Family) -> bool {
        self.families.contains(&f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_mp_capability_means_ipv4_only() {
        let ours = Capabilities {
            families: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
            four_octet_as: Some(65000),
            route_refresh: true,
            ..Default::default()
        };
        let n = Negotiated::new(
            &ours,
            &Capabilities::default(),
            1,
            Ipv4Addr::new(1, 1, 1, 1),
            90,
            30,
            false,
        );
        assert_eq!(n.families, vec![Family::Ipv4Unicast]);
        assert!(!n.four_octet_as && !n.route_refresh);
        assert!(n.peer_gr.is_none());
    }

    #[test]
    fn intersection_and_gr() {
        let gr = GracefulRestartCap {
            restarting: true,
            restart_time: 120,
            families: vec![(Family::Ipv6Unicast, true)],
        };
        let ours = Capabilities {
            families: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
            graceful_restart: Some(GracefulRestartCap {
                restarting: false,
                restart_time: 120,
                families: vec![],
            }),
            extended_next_hop: vec![Family::Ipv4Unicast],
            ..Default::default()
        };
        let theirs = Capabilities {
            families: vec![Family::Ipv6Unicast],
            graceful_restart: Some(gr.clone()),
            extended_next_hop: vec![Family::Ipv4Unicast],
            ..Default::default()
        };
        let n = Negotiated::new(
            &ours,
            &theirs,
            1,
            Ipv4Addr::new(1, 1, 1, 1),
            90,
            30,
            false,
        );
        assert_eq!(n.families, vec![Family::Ipv6Unicast]);
        assert_eq!(n.peer_gr, Some(gr));
        assert!(n.ipv4_over_ipv6_nh);
        assert!(n.has(Family::Ipv6Unicast) && !n.has(Family::Ipv4Unicast));
    }
}
