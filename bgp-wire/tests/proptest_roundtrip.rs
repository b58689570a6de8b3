//! Property tests: NLRI and attribute sets survive encode -> decode.

use std::net::{Ipv4Addr, Ipv6Addr};

use bgp_wire::*;
use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use proptest::prelude::*;

fn v4() -> impl Strategy<Value = IpNetwork> {
    (any::<u32>(), 0u8..=32).prop_map(|(a, l)| {
        let m = if l == 0 { 0 } else { u32::MAX << (32 - l) };
        IpNetwork::V4(Ipv4Network::new(Ipv4Addr::from(a & m), l).unwrap())
    })
}

fn v6() -> impl Strategy<Value = IpNetwork> {
    (any::<u128>(), 0u8..=128).prop_map(|(a, l)| {
        let m = if l == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(l))
        };
        IpNetwork::V6(Ipv6Network::new(Ipv6Addr::from(a & m), l).unwrap())
    })
}

fn attrs() -> impl Strategy<Value = PathAttrs> {
    (
        0u8..3,
        // AS 0 is malformed (RFC 7607), so paths hold 1..
        prop::collection::vec(1..=u32::MAX, 0..20),
        prop::option::of(any::<u32>()),
        prop::option::of(any::<u32>()),
        any::<bool>(),
        prop::collection::vec(any::<u32>(), 0..10),
        prop::collection::vec((any::<u32>(), any::<u32>(), any::<u32>()), 0..5),
        prop::collection::vec(any::<u32>(), 0..4),
    )
        .prop_map(|(o, path, med, lp, atomic, comms, large, cl)| {
            PathAttrs {
                origin: Some(
                    [Origin::Igp, Origin::Egp, Origin::Incomplete][o as usize],
                ),
                as_path: Some(AsPath::from_sequence(&path)),
                next_hop: Some(Ipv4Addr::new(192, 0, 2, 1)),
                med,
                local_pref: lp,
                atomic_aggregate: atomic,
                communities: comms.into_iter().map(Community).collect(),
                rare: RareAttrs {
                    large_communities: {
                        let mut v: Vec<LargeCommunity> = large
                            .into_iter()
                            .map(|(a, b, c)| LargeCommunity {
                                global_admin: a,
                                local_data1: b,
                                local_data2: c,
                            })
                            .collect();
                        v.dedup();
                        v.sort();
                        v.dedup();
                        v
                    },
                    cluster_list: cl.into_iter().map(Ipv4Addr::from).collect(),
                    ..RareAttrs::default()
                }
                .into(),
            }
        })
}

proptest! {
    #[test]
    fn ipv4_update_round_trips(a in attrs(), n in prop::collection::vec(v4(), 1..200), ap in any::<bool>(), ids in any::<u32>()) {
        let cxt = DecodeCxt {
            four_octet_as: true,
            add_path: if ap { FamilySet::of(&[Family::IPV4_UNICAST]) } else { FamilySet::EMPTY },
            ..DecodeCxt::default()
        };
        let nlri: Vec<Nlri> = n.into_iter().map(|p| Nlri { prefix: p, path_id: ap.then_some(ids) }).collect();
        let msg = Message::Update(UpdateMsg { attrs: a, nlri, ..UpdateMsg::default() });
        let b = msg.to_bytes(&cxt).unwrap();
        prop_assert_eq!(Message::decode(&b, &cxt).unwrap(), msg);
    }

    #[test]
    fn ipv6_mp_reach_round_trips(n in prop::collection::vec(v6(), 0..100), ll in any::<bool>()) {
        let cxt = DecodeCxt::four_octet();
        let msg = Message::Update(UpdateMsg {
            mp_reach: Some(MpReach {
                family: Family::IPV6_UNICAST,
                next_hop: NextHop::V6 { global: Ipv6Addr::LOCALHOST, link_local: ll.then_some(Ipv6Addr::UNSPECIFIED) },
                nlri: n.into_iter().map(Nlri::new).collect(),
            }),
            attrs: PathAttrs { origin: Some(Origin::Igp), as_path: Some(AsPath::default()), ..PathAttrs::default() },
            ..UpdateMsg::default()
        });
        let b = msg.to_bytes(&cxt).unwrap();
        prop_assert_eq!(Message::decode(&b, &cxt).unwrap(), msg);
    }

    #[test]
    fn two_octet_session_keeps_4_octet_paths(path in prop::collection::vec(1..=u32::MAX, 1..30)) {
        // Encoded with AS_TRANS + AS4_PATH, merged back on receipt.
        let cxt = DecodeCxt::default();
        let mut a = PathAttrs { origin: Some(Origin::Igp), as_path: Some(AsPath::from_sequence(&path)), next_hop: Some(Ipv4Addr::LOCALHOST), ..PathAttrs::default() };
        let msg = Message::Update(UpdateMsg { attrs: a.clone(), nlri: vec![Nlri::new("10.0.0.0/8".parse().unwrap())], ..UpdateMsg::default() });
        let b = msg.to_bytes(&cxt).unwrap();
        let Message::Update(mut u) = Message::decode(&b, &cxt).unwrap() else { panic!() };
        u.attrs.merge_as4();
        if let Some(r) = a.rare.get_mut() {
            r.as4_path = None;
        }
        prop_assert_eq!(u.attrs, a);
    }

    #[test]
    fn garbage_never_panics(b in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut m = vec![0xff; 16];
        m.extend_from_slice(&((19 + b.len()) as u16).to_be_bytes());
        m.push(2);
        m.extend_from_slice(&b);
        let _ = Message::decode(&m, &DecodeCxt::default());
    }
}

/// Fuzz regression (fuzz/corpus/roundtrip/ext-length-flag-on-raw-attr): an
/// unknown attribute written with the Extended Length flag but a short value
/// must survive decode -> encode -> decode unchanged; the flag only says how
/// the length was written.
#[test]
fn raw_attribute_extended_length_flag_is_not_kept() {
    let mut frame = vec![0xff; 16];
    frame.extend_from_slice(&[0x00, 0x2a, 0x02, 0x00, 0x00, 0x00, 0x13]);
    frame.extend_from_slice(&[0x40, 0x01, 0x01, 0x02]); // ORIGIN incomplete
    frame.extend_from_slice(&[
        0x40, 0x02, 0x06, 0x02, 0x01, 0x00, 0x00, 0xfd, 0xe9,
    ]);
    frame.extend_from_slice(&[0xd0, 0x63, 0x00, 0x02, 0xab, 0xcd]); // ext-len, 2 octets
    assert_eq!(frame.len(), 0x2a);
    let cxt = bgp_wire::DecodeCxt::four_octet();
    let m = bgp_wire::Message::decode(&frame, &cxt).unwrap();
    let bgp_wire::Message::Update(u) = &m else {
        panic!("not an UPDATE: {m:?}");
    };
    assert_eq!(
        u.attrs.rare.unknown[0].flags, 0xc0,
        "{:?}",
        u.attrs.rare.unknown
    );
    let again =
        bgp_wire::Message::decode(&m.to_bytes(&cxt).unwrap(), &cxt).unwrap();
    assert_eq!(again, m);
}
