//! The whole speaker without sockets: two in-memory peers, routes from
//! one re-advertised to the other, withdrawals, graceful-restart stale
//! marking and the RIB stream events.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bgp_wire::{
    Capability, DecodeCxt, GrFamily, Message, NextHop, Nlri, OpenMsg, PathAttrs,
};
use bytes::BytesMut;
use margay_bgpd::caps::Family;
use margay_bgpd::policy::{NextHopMode, Rule, RuleSet, SessionPolicy, Verdict};
use margay_bgpd::speaker::{Output, PeerCfg, Speaker, SpeakerCfg};
use margay_ctlproto::{PeerType, RibEvent};

fn peer(addr: [u8; 4], asn: u32) -> PeerCfg {
    let accept = RuleSet {
        v4: vec![Rule::all(Verdict::Accept)],
        v6: vec![],
    };
    PeerCfg {
        name: format!("Global_{}", Ipv4Addr::from(addr)),
        peer_type: PeerType::Global,
        addr: IpAddr::V4(addr.into()),
        port: 179,
        local_as: 65000,
        remote_as: asn,
        passive: true,
        hold_time: 90,
        keepalive: 30,
        connect_retry: Duration::from_secs(5),
        password: None,
        ttl_security: None,
        source_addr: None,
        restart_time: 120,
        max_prefixes: None,
        families: vec![Family::Ipv4Unicast],
        policy: SessionPolicy {
            local_as: 65000,
            remote_as: asn,
            router_id: Ipv4Addr::new(10, 0, 0, 1),
            cluster_id: None,
            rr_client: false,
            import: accept.clone(),
            export: accept,
            allowed_local_as: 0,
            next_hop_mode: NextHopMode::Auto,
            local_addr: None,
            local_addr_other: None,
        },
    }
}

fn establish(s: &mut Speaker, addr: [u8; 4], asn: u32) -> (u32, u64) {
    let (id, conn) = s
        .on_accept(
            IpAddr::V4(addr.into()),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        )
        .expect("configured peer");
    let gr = bgp_wire::GracefulRestartCap {
        restart_state: false,
        notification: false,
        restart_time: 60,
        families: vec![GrFamily {
            family: bgp_wire::Family::IPV4_UNICAST,
            forwarding_preserved: true,
        }],
    };
    let open = OpenMsg::new(
        asn,
        90,
        Ipv4Addr::from(addr),
        vec![
            Capability::MultiProtocol(bgp_wire::Family::IPV4_UNICAST),
            Capability::FourOctetAs(asn),
            Capability::GracefulRestart(gr),
        ],
    );
    let cxt = DecodeCxt::default();
    s.on_frame(id, conn, &Message::Open(open).to_bytes(&cxt).unwrap());
    s.on_frame(id, conn, &Message::Keepalive.to_bytes(&cxt).unwrap());
    assert!(s.is_established(id));
    (id, conn)
}

/// Decode every UPDATE sent to `conn` among `outs`.
fn updates_to(outs: &[Output], to: (u32, u64)) -> Vec<bgp_wire::UpdateMsg> {
    let mut v = Vec::new();
    for o in outs {
        if let Output::Send { peer, conn, bytes } = o {
            if (*peer, *conn) != to {
                continue;
            }
            let mut b = BytesMut::from(&bytes[..]);
            while let Ok(Some(l)) = bgp_wire::frame_len(&b, false) {
                let f = b.split_to(l);
                if let Ok(Message::Update(u)) =
                    Message::decode(&f, &DecodeCxt::four_octet())
                {
                    v.push(u);
                }
            }
        }
    }
    v
}

fn announce(prefix: &str) -> Vec<u8> {
    let attrs = PathAttrs {
        origin: Some(bgp_wire::Origin::Igp),
        as_path: Some(bgp_wire::AsPath::from_sequence(&[65001])),
        ..Default::default()
    };
    let mut out = BytesMut::new();
    bgp_wire::pack_reach(
        bgp_wire::Family::IPV4_UNICAST,
        &attrs,
        NextHop::V4(Ipv4Addr::new(10, 0, 0, 2)),
        &[Nlri::new(prefix.parse().unwrap())],
        &DecodeCxt::four_octet(),
        &mut out,
    )
    .unwrap();
    out.to_vec()
}

#[test]
fn transit_withdraw_and_graceful_restart_helper() {
    let mut s = Speaker::new(SpeakerCfg {
        router_id: Ipv4Addr::new(10, 0, 0, 1),
        restarting: false,
        idle_hold: Duration::from_secs(5),
    });
    s.set_peers(vec![peer([10, 0, 0, 2], 65001), peer([10, 0, 0, 3], 65002)]);
    s.take_outputs();
    let inj_c = establish(&mut s, [10, 0, 0, 2], 65001);
    let mon_c = establish(&mut s, [10, 0, 0, 3], 65002);
    s.flush();
    let outs = s.take_outputs();
    // End-of-RIB to the monitor after its (empty) initial dump.
    assert!(
        updates_to(&outs, mon_c)
            .iter()
            .any(|u| u.end_of_rib_family().is_some())
    );

    s.on_frame(inj_c.0, inj_c.1, &announce("192.0.2.0/24"));
    s.flush();
    let outs = s.take_outputs();
    assert!(outs.contains(&Output::Rib(RibEvent::Route {
        prefix: "192.0.2.0/24".parse().unwrap(),
        next_hops: vec!["10.0.0.2".parse().unwrap()],
    })));
    let ups = updates_to(&outs, mon_c);
    assert_eq!(ups.len(), 1, "{ups:?}");
    let u = &ups[0];
    assert_eq!(u.nlri[0].prefix.to_string(), "192.0.2.0/24");
    // eBGP transit: our AS prepended, next hop self (no local address is
    // known in memory, so the next hop comes from the session policy).
    assert_eq!(
        u.attrs.as_path.as_ref().unwrap().segments[0].asns,
        vec![65000, 65001]
    );
    assert!(
        updates_to(&outs, inj_c).iter().all(|u| u.nlri.is_empty()),
        "not sent back to its source"
    );

    // The injector's TCP connection dies: GR helper keeps the route stale.
    s.on_closed(inj_c.0, inj_c.1, "reset");
    s.flush();
    let outs = s.take_outputs();
    assert!(
        updates_to(&outs, mon_c)
            .iter()
            .all(|u| u.withdrawn.is_empty()),
        "no withdraw while stale"
    );
    let dump = s.rib_dump();
    assert!(dump[0].paths[0].stale, "{dump:?}");
    assert!(outs.iter().any(|o| matches!(o, Output::ArmTimer(k, d) if matches!(k.kind, margay_bgpd::speaker::TimerKind::GrStale) && *d == Duration::from_secs(60))));

    // It comes back, sends nothing and End-of-RIB: the stale route goes.
    let inj_c = establish(&mut s, [10, 0, 0, 2], 65001);
    let eor = Message::Update(bgp_wire::UpdateMsg::end_of_rib(
        bgp_wire::Family::IPV4_UNICAST,
    ))
    .to_bytes(&DecodeCxt::four_octet())
    .unwrap();
    s.on_frame(inj_c.0, inj_c.1, &eor);
    s.flush();
    let outs = s.take_outputs();
    assert!(outs.contains(&Output::Rib(RibEvent::Withdraw {
        prefix: "192.0.2.0/24".parse().unwrap()
    })));
    let ups = updates_to(&outs, mon_c);
    assert!(
        ups.iter().any(|u| u
            .withdrawn
            .iter()
            .any(|n| n.prefix.to_string() == "192.0.2.0/24")),
        "{ups:?}"
    );
    assert!(s.rib_dump().is_empty());
}
