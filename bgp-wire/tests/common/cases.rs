//! Messages covering every message type and attribute, built with the
//! public API; tests/golden.rs checks them against vector files and
//! against netgauze-bgp-pkt.

use std::net::Ipv4Addr;

use bgp_wire::*;

fn pfx(s: &str) -> Nlri {
    Nlri::new(s.parse().unwrap())
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// (name, context, message).
pub fn cases() -> Vec<(&'static str, DecodeCxt, Message)> {
    let four = DecodeCxt::four_octet();
    let two = DecodeCxt::default();
    let v4ap = DecodeCxt {
        four_octet_as: true,
        add_path: FamilySet::of(&[Family::IPV4_UNICAST, Family::IPV6_UNICAST]),
        ..DecodeCxt::default()
    };
    let enh = DecodeCxt {
        four_octet_as: true,
        extended_nh: FamilySet::of(&[Family::IPV4_UNICAST]),
        ..DecodeCxt::default()
    };
    let base = || PathAttrs {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::from_sequence(&[65001, 4_200_000_001])),
        ..PathAttrs::default()
    };
    let full_attrs = PathAttrs {
        origin: Some(Origin::Egp),
        as_path: Some(AsPath {
            segments: vec![
                AsSegment {
                    kind: SegmentType::Sequence,
                    asns: vec![65001, 65002],
                },
                AsSegment {
                    kind: SegmentType::Set,
                    asns: vec![65010, 65011],
                },
            ],
        }),
        next_hop: Some(ip("192.0.2.1")),
        med: Some(100),
        local_pref: Some(200),
        atomic_aggregate: true,
        communities: vec![Community::new(65001, 7), Community::NO_ADVERTISE],
        rare: RareAttrs {
            aggregator: Some(Aggregator {
                asn: 65001,
                addr: ip("192.0.2.7"),
            }),
            originator_id: Some(ip("192.0.2.30")),
            cluster_list: vec![ip("192.0.2.40"), ip("192.0.2.41")],
            large_communities: vec![LargeCommunity {
                global_admin: 4_200_000_001,
                local_data1: 1,
                local_data2: 2,
            }],
            // An unknown optional transitive attribute, passed on raw.
            unknown: vec![RawAttr {
                flags: 0xE0,
                type_code: 99,
                value: vec![1, 2, 3],
            }],
            ..RareAttrs::default()
        }
        .into(),
    };
    let open_full = OpenMsg::new(
        4_200_000_001,
        180,
        ip("192.0.2.2"),
        vec![
            Capability::MultiProtocol(Family::IPV4_UNICAST),
            Capability::MultiProtocol(Family::IPV6_UNICAST),
            Capability::RouteRefresh,
            Capability::EnhancedRouteRefresh,
            Capability::FourOctetAs(4_200_000_001),
            Capability::GracefulRestart(GracefulRestartCap {
                restart_state: true,
                notification: true,
                restart_time: 300,
                families: vec![
                    GrFamily {
                        family: Family::IPV4_UNICAST,
                        forwarding_preserved: true,
                    },
                    GrFamily {
                        family: Family::IPV6_UNICAST,
                        forwarding_preserved: false,
                    },
                ],
            }),
            Capability::ExtendedNextHop(vec![ExtNextHop {
                family: Family::IPV4_UNICAST,
                next_hop_afi: Afi::Ipv6,
            }]),
            Capability::ExtendedMessage,
            Capability::AddPath(vec![
                AddPathFamily {
                    family: Family::IPV4_UNICAST,
                    mode: AddPathMode::Both,
                },
                AddPathFamily {
                    family: Family::IPV6_UNICAST,
                    mode: AddPathMode::Receive,
                },
            ]),
        ],
    );
    let upd = |u: UpdateMsg| Message::Update(u);
    vec![
        ("open_full", four, Message::Open(open_full)),
        (
            "open_plain",
            two,
            Message::Open(OpenMsg::new(65001, 90, ip("10.0.0.1"), vec![])),
        ),
        ("keepalive", two, Message::Keepalive),
        (
            "notification_hold_timer",
            two,
            Message::Notification(NotificationMsg::new(
                ErrorCode::HoldTimerExpired,
                0,
                vec![],
            )),
        ),
        (
            "notification_max_prefix",
            two,
            Message::Notification(NotificationMsg::max_prefixes(1, 1, 1000)),
        ),
        (
            "notification_admin_reset",
            two,
            Message::Notification(NotificationMsg::shutdown(
                CeaseSubcode::AdminReset,
                "upgrade to v2 ✓",
            )),
        ),
        (
            "refresh_normal",
            two,
            Message::RouteRefresh(RouteRefreshMsg::request(
                Family::IPV6_UNICAST,
            )),
        ),
        (
            "refresh_borr",
            two,
            Message::RouteRefresh(RouteRefreshMsg {
                family: Family::IPV4_UNICAST,
                subtype: RefreshSubtype::BeginOfRr,
            }),
        ),
        (
            "refresh_eorr",
            two,
            Message::RouteRefresh(RouteRefreshMsg {
                family: Family::IPV4_UNICAST,
                subtype: RefreshSubtype::EndOfRr,
            }),
        ),
        (
            "update_ipv4_all_attrs",
            four,
            upd(UpdateMsg {
                withdrawn: vec![pfx("10.9.0.0/16"), pfx("0.0.0.0/0")],
                attrs: full_attrs.clone(),
                nlri: vec![
                    pfx("10.1.0.0/24"),
                    pfx("10.2.3.4/32"),
                    pfx("10.128.0.0/9"),
                ],
                ..UpdateMsg::default()
            }),
        ),
        (
            "update_ipv4_2octet_as4",
            two,
            upd(UpdateMsg {
                attrs: PathAttrs {
                    next_hop: Some(ip("192.0.2.1")),
                    as_path: Some(AsPath::from_sequence(&[65001, 23456])),
                    rare: RareAttrs {
                        as4_path: Some(AsPath::from_sequence(&[
                            65001,
                            4_200_000_001,
                        ])),
                        aggregator: Some(Aggregator {
                            asn: 23456,
                            addr: ip("192.0.2.7"),
                        }),
                        as4_aggregator: Some(Aggregator {
                            asn: 4_200_000_001,
                            addr: ip("192.0.2.7"),
                        }),
                        ..RareAttrs::default()
                    }
                    .into(),
                    ..base()
                },
                nlri: vec![pfx("10.1.0.0/24")],
                ..UpdateMsg::default()
            }),
        ),
        (
            "update_ipv6_link_local",
            four,
            upd(UpdateMsg {
                attrs: PathAttrs {
                    local_pref: Some(100),
                    ..base()
                },
                mp_reach: Some(MpReach {
                    family: Family::IPV6_UNICAST,
                    next_hop: NextHop::V6 {
                        global: "2001:db8::1".parse().unwrap(),
                        link_local: Some("fe80::1".parse().unwrap()),
                    },
                    nlri: vec![
                        pfx("2001:db8:1::/48"),
                        pfx("2001:db8:2:3::/64"),
                        pfx("::/0"),
                    ],
                }),
                ..UpdateMsg::default()
            }),
        ),
        (
            "update_rfc8950_ipv4_via_ipv6",
            enh,
            upd(UpdateMsg {
                attrs: base(),
                mp_reach: Some(MpReach {
                    family: Family::IPV4_UNICAST,
                    next_hop: NextHop::V6 {
                        global: "2001:db8::2".parse().unwrap(),
                        link_local: None,
                    },
                    nlri: vec![pfx("10.5.0.0/16")],
                }),
                ..UpdateMsg::default()
            }),
        ),
        (
            "update_add_path",
            v4ap,
            upd(UpdateMsg {
                withdrawn: vec![Nlri::with_path_id(
                    "10.3.0.0/24".parse().unwrap(),
                    9,
                )],
                attrs: PathAttrs {
                    next_hop: Some(ip("192.0.2.1")),
                    ..base()
                },
                nlri: vec![
                    Nlri::with_path_id("10.1.0.0/24".parse().unwrap(), 1),
                    Nlri::with_path_id("10.1.0.0/24".parse().unwrap(), 2),
                ],
                ..UpdateMsg::default()
            }),
        ),
        (
            "update_mp_unreach_ipv6",
            four,
            upd(UpdateMsg {
                mp_unreach: Some(MpUnreach {
                    family: Family::IPV6_UNICAST,
                    withdrawn: vec![
                        pfx("2001:db8:1::/48"),
                        pfx("2001:db8::1/128"),
                    ],
                }),
                ..UpdateMsg::default()
            }),
        ),
        (
            "update_eor_ipv6",
            four,
            upd(UpdateMsg::end_of_rib(Family::IPV6_UNICAST)),
        ),
    ]
}
