//! RFC 8950 export: IPv4 NLRI with an IPv6 next hop, only towards peers
//! that announced the Extended Next Hop capability.

use std::net::Ipv6Addr;

use bgp_wire::{Afi, ExtNextHop};

use super::*;

const OUR_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);

/// An eBGP peer at `fd00::N` whose session carries IPv6 and IPv4 unicast,
/// on a dual-stack node (10.0.0.1 and fd00::1).
fn peer6(n: u16, asn: u32) -> PeerCfg {
    let mut p = peer([10, 0, 0, 99], asn);
    let addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, n);
    p.name = format!("Global_{addr}");
    p.addr = IpAddr::V6(addr);
    p.families = vec![Family::IPV6_UNICAST, Family::IPV4_UNICAST];
    p.policy.local_addr_other = Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
    p
}

/// Accept the connection of `fd00::N`, check the OPEN we send, and bring
/// the session up with an OPEN carrying `extra` capabilities.
fn establish6(
    s: &mut Speaker,
    n: u16,
    asn: u32,
    extra: Vec<Capability>,
) -> ((u32, u64), OpenMsg) {
    let remote = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, n);
    let (id, conn) = s
        .on_accept(IpAddr::V6(remote), IpAddr::V6(OUR_V6))
        .expect("configured peer");
    let mut caps = vec![
        Capability::MultiProtocol(bgp_wire::Family::IPV6_UNICAST),
        Capability::MultiProtocol(bgp_wire::Family::IPV4_UNICAST),
        Capability::FourOctetAs(asn),
    ];
    caps.extend(extra);
    let open = OpenMsg::new(asn, 90, Ipv4Addr::new(10, 9, 0, n as u8), caps);
    let cxt = DecodeCxt::default();
    s.on_frame(id, conn, &Message::Open(open).to_bytes(&cxt).unwrap());
    s.on_frame(id, conn, &Message::Keepalive.to_bytes(&cxt).unwrap());
    assert!(s.is_established(id));
    let ours = sent_open(&s.take_outputs(), id).expect("our OPEN");
    ((id, conn), ours)
}

fn ext_nh_v4() -> Capability {
    Capability::ExtendedNextHop(vec![ExtNextHop {
        family: bgp_wire::Family::IPV4_UNICAST,
        next_hop_afi: Afi::Ipv6,
    }])
}

#[test]
fn ipv4_routes_go_with_an_ipv6_next_hop_only_to_peers_that_asked() {
    let mut s = Speaker::new(SpeakerCfg {
        router_id: Ipv4Addr::new(10, 0, 0, 1),
        restarting: false,
        select_defer: Duration::from_secs(90),
        idle_hold: Duration::from_secs(5),
    });
    s.set_peers(vec![
        peer([10, 0, 0, 2], 65001),
        peer6(2, 65002),
        peer6(3, 65003),
    ]);
    s.take_outputs();
    let inj = establish(&mut s, [10, 0, 0, 2], 65001);
    s.take_outputs();
    // fd00::2 announces Extended Next Hop for IPv4 unicast, fd00::3 not.
    let (enh, our_open) = establish6(&mut s, 2, 65002, vec![ext_nh_v4()]);
    // RFC 8950 section 3: an IPv6 session carrying IPv4 offers it.
    assert!(our_open.capabilities.contains(&ext_nh_v4()), "{our_open:?}");
    let (plain, _) = establish6(&mut s, 3, 65003, vec![]);
    s.flush();
    s.take_outputs();

    s.on_frame(inj.0, inj.1, &announce("192.0.2.0/24"));
    s.flush();
    let outs = s.take_outputs();

    // To fd00::2: MP_REACH_NLRI AFI 1 / SAFI 1 with a 16-octet next hop,
    // our IPv6 session address (RFC 8950 section 3), no classic NLRI.
    let ups = updates_to(&outs, enh);
    assert_eq!(ups.len(), 1, "{ups:?}");
    assert!(ups[0].nlri.is_empty() && ups[0].attrs.next_hop.is_none());
    let mp = ups[0].mp_reach.as_ref().expect("MP_REACH_NLRI");
    assert_eq!(mp.family, bgp_wire::Family::IPV4_UNICAST);
    assert_eq!(
        mp.next_hop,
        NextHop::V6 {
            global: OUR_V6,
            link_local: None
        }
    );
    assert_eq!(mp.nlri[0].prefix.to_string(), "192.0.2.0/24");

    // To fd00::3, which did not announce the capability: "MUST NOT" get
    // an IPv6 next hop (section 4), so the classic IPv4 next hop it is.
    let ups = updates_to(&outs, plain);
    assert_eq!(ups.len(), 1, "{ups:?}");
    assert!(ups[0].mp_reach.is_none());
    assert_eq!(ups[0].attrs.next_hop, Some(Ipv4Addr::new(10, 0, 0, 1)));
    assert_eq!(ups[0].nlri[0].prefix.to_string(), "192.0.2.0/24");

    // The withdrawal reaches both.
    let w = bgp_wire::UpdateMsg {
        withdrawn: vec![Nlri::new("192.0.2.0/24".parse().unwrap())],
        ..Default::default()
    };
    let w = Message::Update(w)
        .to_bytes(&DecodeCxt::four_octet())
        .unwrap();
    s.on_frame(inj.0, inj.1, &w);
    s.flush();
    let outs = s.take_outputs();
    for to in [enh, plain] {
        let gone = updates_to(&outs, to).iter().any(|u| {
            u.withdrawn_all()
                .any(|n| n.prefix.to_string() == "192.0.2.0/24")
        });
        assert!(gone, "withdrawn to {to:?}");
    }
}

#[test]
fn without_an_ipv4_address_a_peer_lacking_the_capability_gets_no_ipv4() {
    let mut s = Speaker::new(SpeakerCfg {
        router_id: Ipv4Addr::new(10, 0, 0, 1),
        restarting: false,
        select_defer: Duration::from_secs(90),
        idle_hold: Duration::from_secs(5),
    });
    // An IPv6-only node: no IPv4 address to offer as next hop.
    let mut p = peer6(3, 65003);
    p.policy.local_addr_other = None;
    s.set_peers(vec![peer([10, 0, 0, 2], 65001), p]);
    s.take_outputs();
    let inj = establish(&mut s, [10, 0, 0, 2], 65001);
    let (plain, _) = establish6(&mut s, 3, 65003, vec![]);
    s.flush();
    s.take_outputs();
    s.on_frame(inj.0, inj.1, &announce("192.0.2.0/24"));
    s.flush();
    let outs = s.take_outputs();
    let ups = updates_to(&outs, plain);
    assert!(
        ups.iter()
            .all(|u| u.nlri.is_empty() && u.mp_reach.is_none()),
        "RFC 8950 4: no IPv6 next hop without the capability: {ups:?}"
    );
    assert_eq!(s.peer_status()[1].prefixes_advertised, 0);
}

#[test]
fn ipv4_sessions_do_not_offer_extended_next_hop() {
    let mut s = Speaker::new(SpeakerCfg {
        router_id: Ipv4Addr::new(10, 0, 0, 1),
        restarting: false,
        select_defer: Duration::from_secs(90),
        idle_hold: Duration::from_secs(5),
    });
    s.set_peers(vec![peer([10, 0, 0, 2], 65001)]);
    s.take_outputs();
    let (id, _) = s
        .on_accept(
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        )
        .unwrap();
    let open = sent_open(&s.take_outputs(), id).expect("OPEN sent on accept");
    assert!(
        !open
            .capabilities
            .iter()
            .any(|c| matches!(c, Capability::ExtendedNextHop(_))),
        "{open:?}"
    );
}

/// Our OPEN on the wire, octet for octet: MP IPv6 and IPv4, ROUTE-REFRESH,
/// 4-octet AS, GR (120 s) and IPv4-over-IPv6 extended next hop, in that
/// order (the bytes margay sent before the FSM took bgp-wire's types).
#[test]
fn our_open_octets() {
    let mut p = peer6(2, 65002);
    p.restart_time = 120;
    let mut s = speaker(vec![p]);
    let (_, ours) = establish6(&mut s, 2, 65002, vec![]);
    let bytes = Message::Open(ours).to_bytes(&DecodeCxt::default()).unwrap();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "ffffffffffffffffffffffffffffffff00470104fde8005a0a0000012a0228010400020001010400010001020041040000fde8400a007800020100000101000506000100010002"
    );
}
