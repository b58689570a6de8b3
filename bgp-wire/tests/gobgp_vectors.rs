//! Messages captured from GoBGP (tests/vectors/gobgp, produced by
//! tests/vectors/capture_gobgp.py): decoded by us, checked field by field,
//! and re-encoded to the same bytes (except where noted).

mod common;

use std::net::Ipv4Addr;

use bgp_wire::*;
use common::vector;

/// GoBGP negotiated 4-octet AS with our scripted peer, nothing else.
fn cxt() -> DecodeCxt {
    DecodeCxt::four_octet()
}

/// Decodes a vector and checks that encoding gives the same bytes back.
fn roundtrip(name: &str) -> Message {
    let bytes = vector(name);
    let msg = Message::decode(&bytes, &cxt())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let out = msg.to_bytes(&cxt()).unwrap();
    assert_eq!(hex::encode(&out), hex::encode(&bytes), "{name}");
    msg
}

fn pfx(s: &str) -> Nlri {
    Nlri::new(s.parse().unwrap())
}

#[test]
fn gobgp_open() {
    let Message::Open(o) = roundtrip("gobgp/open_1.hex") else {
        panic!("not an OPEN")
    };
    assert_eq!(o.asn(), 65001);
    assert_eq!(o.hold_time, 90);
    assert_eq!(o.bgp_id, Ipv4Addr::new(192, 0, 2, 1));
    let c = &o.capabilities;
    assert!(c.contains(&Capability::RouteRefresh));
    assert!(c.contains(&Capability::FourOctetAs(65001)));
    assert!(c.contains(&Capability::MultiProtocol(Family::IPV4_UNICAST)));
    assert!(c.contains(&Capability::MultiProtocol(Family::IPV6_UNICAST)));
    assert!(c.contains(&Capability::ExtendedNextHop(vec![ExtNextHop {
        family: Family::IPV4_UNICAST,
        next_hop_afi: Afi::Ipv6,
    }])));
    // FQDN (RFC draft, code 73) is kept raw.
    assert!(
        c.iter()
            .any(|c| matches!(c, Capability::Unknown { code: 73, .. }))
    );
    let gr = o.graceful_restart().expect("graceful restart capability");
    assert_eq!(gr.restart_time, 120);
    let fams: Vec<Family> = gr.families.iter().map(|f| f.family).collect();
    assert_eq!(fams, vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]);
}

#[test]
fn gobgp_keepalive() {
    assert_eq!(roundtrip("gobgp/keepalive_1.hex"), Message::Keepalive);
}

#[test]
fn gobgp_end_of_rib() {
    let Message::Update(u) = roundtrip("gobgp/update_1.hex") else {
        panic!()
    };
    assert_eq!(u.end_of_rib_family(), Some(Family::IPV6_UNICAST));
    let Message::Update(u) = roundtrip("gobgp/update_2.hex") else {
        panic!()
    };
    assert_eq!(u.end_of_rib_family(), Some(Family::IPV4_UNICAST));
    assert_eq!(
        Message::Update(UpdateMsg::end_of_rib(Family::IPV4_UNICAST))
            .to_bytes(&cxt())
            .unwrap()
            .as_ref(),
        vector("gobgp/update_2.hex")
    );
}

#[test]
fn gobgp_update_ipv4_with_communities() {
    let Message::Update(u) = roundtrip("gobgp/update_3.hex") else {
        panic!()
    };
    assert_eq!(u.verdict(), Verdict::Accept);
    assert_eq!(u.nlri, vec![pfx("10.1.0.0/24")]);
    let a = &u.attrs;
    assert_eq!(a.origin, Some(Origin::Igp));
    assert_eq!(a.as_path, Some(AsPath::from_sequence(&[65001])));
    assert_eq!(a.next_hop, Some(Ipv4Addr::LOCALHOST));
    assert_eq!(a.med, Some(10));
    assert_eq!(
        a.communities,
        vec![Community::new(65000, 1), Community::NO_EXPORT]
    );
    assert_eq!(
        a.rare.large_communities,
        vec![LargeCommunity {
            global_admin: 65001,
            local_data1: 2,
            local_data2: 3
        }]
    );
}

#[test]
fn gobgp_update_4_octet_aggregator() {
    let Message::Update(u) = roundtrip("gobgp/update_4.hex") else {
        panic!()
    };
    assert_eq!(u.nlri, vec![pfx("10.2.0.0/16")]);
    assert_eq!(u.attrs.origin, Some(Origin::Incomplete));
    assert_eq!(
        u.attrs.rare.aggregator,
        Some(Aggregator {
            asn: 4_200_000_002,
            addr: Ipv4Addr::new(192, 0, 2, 9)
        })
    );
}

#[test]
fn gobgp_update_ipv6_mp_reach() {
    // GoBGP puts MP_REACH_NLRI after AS_PATH (type order); we send it
    // first as RFC 7606 5.1 recommends, so the bytes differ in order
    // only: same length, and our encoding decodes to the same message.
    let bytes = vector("gobgp/update_5.hex");
    let msg = Message::decode(&bytes, &cxt()).unwrap();
    let Message::Update(u) = &msg else { panic!() };
    let r = u.mp_reach.as_ref().expect("MP_REACH_NLRI");
    assert_eq!(r.family, Family::IPV6_UNICAST);
    assert_eq!(
        r.next_hop,
        NextHop::V6 {
            global: "2001:db8::1".parse().unwrap(),
            link_local: None
        }
    );
    assert_eq!(r.nlri, vec![pfx("2001:db8:1::/48")]);
    assert_eq!(u.attrs.next_hop, None);
    let ours = msg.to_bytes(&cxt()).unwrap();
    assert_eq!(ours.len(), bytes.len());
    assert_eq!(Message::decode(&ours, &cxt()).unwrap(), msg);
    let mut a = bytes.clone();
    let mut b = ours.to_vec();
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b, "same octets, different attribute order");
}

#[test]
fn gobgp_withdrawals() {
    let Message::Update(u) = roundtrip("gobgp/update_6.hex") else {
        panic!()
    };
    assert_eq!(u.withdrawn, vec![pfx("10.1.0.0/24")]);
    let Message::Update(u) = roundtrip("gobgp/update_7.hex") else {
        panic!()
    };
    let w = u.mp_unreach.expect("MP_UNREACH_NLRI");
    assert_eq!(w.withdrawn, vec![pfx("2001:db8:1::/48")]);
}

#[test]
fn gobgp_shutdown_notification() {
    let Message::Notification(n) = roundtrip("gobgp/notification_1.hex") else {
        panic!()
    };
    assert_eq!(n.error_code(), Some(ErrorCode::Cease));
    assert_eq!(n.subcode, CeaseSubcode::AdminShutdown as u8);
    assert_eq!(n.shutdown_message(), Some("maintenance window"));
    assert_eq!(
        n,
        NotificationMsg::shutdown(
            CeaseSubcode::AdminShutdown,
            "maintenance window"
        )
    );
}
