//! Conversions between bgp-wire's message types and the FSM's view of
//! OPENs, capabilities and NOTIFICATIONs.

use bgp_wire::{Afi, Capability, ExtNextHop, GrFamily, OpenMsg};

use crate::caps::{Capabilities, Family, GracefulRestartCap};
use crate::fsm::{OpenParams, PeerOpen};

/// Our family type as bgp-wire's.
pub fn family_to_wire(f: Family) -> bgp_wire::Family {
    match f {
        Family::Ipv4Unicast => bgp_wire::Family::IPV4_UNICAST,
        Family::Ipv6Unicast => bgp_wire::Family::IPV6_UNICAST,
    }
}

/// bgp-wire's family as ours, if we route it.
pub fn family_from_wire(f: bgp_wire::Family) -> Option<Family> {
    if f == bgp_wire::Family::IPV4_UNICAST {
        Some(Family::Ipv4Unicast)
    } else if f == bgp_wire::Family::IPV6_UNICAST {
        Some(Family::Ipv6Unicast)
    } else {
        None
    }
}

/// The capabilities of a received OPEN that margay understands.
pub fn caps_from_wire(caps: &[Capability]) -> Capabilities {
    let mut out = Capabilities::default();
    for c in caps {
        match c {
            Capability::MultiProtocol(f) => {
                // RFC 4760 8: families we do not route are just not
                // negotiated; but remember that MP was used at all.
                if let Some(f) = family_from_wire(*f) {
                    out.families.push(f);
                } else if out.families.is_empty() {
                    // Keep "some MP capability was sent" distinguishable
                    // from "none" by not adding IPv4 implicitly later.
                    out.mp_other = true;
                }
            }
            Capability::RouteRefresh => out.route_refresh = true,
            Capability::EnhancedRouteRefresh => {
                out.enhanced_route_refresh = true
            }
            Capability::FourOctetAs(a) => out.four_octet_as = Some(*a),
            Capability::GracefulRestart(g) => {
                out.graceful_restart = Some(GracefulRestartCap {
                    restarting: g.restart_state,
                    restart_time: g.restart_time,
                    families: g
                        .families
                        .iter()
                        .filter_map(|gf| {
                            family_from_wire(gf.family)
                                .map(|f| (f, gf.forwarding_preserved))
                        })
                        .collect(),
                })
            }
            Capability::ExtendedNextHop(v) => {
                for e in v.iter().filter(|e| e.next_hop_afi == Afi::Ipv6) {
                    if let Some(f) = family_from_wire(e.family) {
                        out.extended_next_hop.push(f);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Our OPEN in wire form.
pub fn open_to_wire(p: &OpenParams) -> OpenMsg {
    let c = &p.caps;
    let mut caps: Vec<Capability> = c
        .families
        .iter()
        .map(|f| Capability::MultiProtocol(family_to_wire(*f)))
        .collect();
    if c.route_refresh {
        caps.push(Capability::RouteRefresh);
    }
    if c.enhanced_route_refresh {
        caps.push(Capability::EnhancedRouteRefresh);
    }
    if let Some(a) = c.four_octet_as {
        caps.push(Capability::FourOctetAs(a));
    }
    if let Some(g) = &c.graceful_restart {
        caps.push(Capability::GracefulRestart(bgp_wire::GracefulRestartCap {
            restart_state: g.restarting,
            notification: false,
            restart_time: g.restart_time.min(4095),
            families: g
                .families
                .iter()
                .map(|(f, fwd)| GrFamily {
                    family: family_to_wire(*f),
                    forwarding_preserved: *fwd,
                })
                .collect(),
        }));
    }
    if !c.extended_next_hop.is_empty() {
        caps.push(Capability::ExtendedNextHop(
            c.extended_next_hop
                .iter()
                .map(|f| ExtNextHop {
                    family: family_to_wire(*f),
                    next_hop_afi: Afi::Ipv6,
                })
                .collect(),
        ));
    }
    OpenMsg {
        version: 4,
        my_as: p.my_as,
        hold_time: p.hold_time,
        bgp_id: p.bgp_id,
        capabilities: caps,
    }
}

/// A received OPEN as the FSM sees it.
pub fn peer_open(o: &OpenMsg) -> PeerOpen {
    PeerOpen {
        my_as: o.my_as,
        hold_time: o.hold_time,
        bgp_id: o.bgp_id,
        caps: caps_from_wire(&o.capabilities),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn open_round_trips_through_wire_form() {
        let caps = Capabilities {
            families: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
            four_octet_as: Some(4_200_000_000),
            route_refresh: true,
            enhanced_route_refresh: false,
            graceful_restart: Some(GracefulRestartCap {
                restarting: true,
                restart_time: 120,
                families: vec![(Family::Ipv4Unicast, true)],
            }),
            extended_next_hop: vec![Family::Ipv4Unicast],
            mp_other: false,
        };
        let p = OpenParams {
            my_as: bgp_wire::iana::AS_TRANS,
            hold_time: 90,
            bgp_id: Ipv4Addr::new(1, 2, 3, 4),
            caps: caps.clone(),
        };
        let w = open_to_wire(&p);
        let bytes = bgp_wire::Message::Open(w.clone())
            .to_bytes(&bgp_wire::DecodeCxt::default())
            .unwrap();
        let back = match bgp_wire::Message::decode(
            &bytes,
            &bgp_wire::DecodeCxt::default(),
        )
        .unwrap()
        {
            bgp_wire::Message::Open(o) => o,
            m => panic!("{m:?}"),
        };
        assert_eq!(back, w);
        let po = peer_open(&back);
        assert_eq!(po.caps, caps);
        assert_eq!(po.my_as, bgp_wire::iana::AS_TRANS);
        assert_eq!(po.hold_time, 90);
    }
}
