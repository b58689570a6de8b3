//! The whole speaker without sockets: two in-memory peers, routes from
//! one re-advertised to the other, withdrawals, graceful-restart stale
//! marking and the RIB stream events.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bgp_wire::Family;
use bgp_wire::{
    Capability, DecodeCxt, GrFamily, Message, NextHop, Nlri, OpenMsg, PathAttrs,
};
use bytes::BytesMut;
use margay_bgpd::policy::{NextHopMode, Rule, RuleSet, SessionPolicy, Verdict};
use margay_bgpd::speaker::{Output, PeerCfg, Speaker, SpeakerCfg};
use margay_ctlproto::{PeerType, RibEvent};

/// RFC 7607: AS 0 in AS_PATH / AS4_PATH is treat-as-withdraw.
mod as_zero;
/// RFC 8950: IPv4 NLRI with an IPv6 next hop.
mod ext_next_hop;
/// Max-prefix back-off: held Idle until the restart interval or a reset.
mod max_prefix;
/// Routes refused at import: counted and shown until withdrawn.
mod rejected;
/// RFC 4724 4.1: the restarting speaker defers its advertisements.
mod restarting;
/// RFC 4456: two reflectors of one cluster ID and their clients.
mod route_reflection;
/// Shutdown: Cease / Administrative Shutdown to every peer.
mod shutdown;
/// Update groups: one export and encoding shared by peers alike.
mod update_groups;

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
        max_prefixes_restart: None,
        families: vec![Family::IPV4_UNICAST],
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
            ext_next_hop: false,
        },
    }
}

/// A speaker (router ID 10.0.0.1, not restarting) configured with `peers`.
fn speaker(peers: Vec<PeerCfg>) -> Speaker {
    let mut s = Speaker::new(SpeakerCfg {
        router_id: Ipv4Addr::new(10, 0, 0, 1),
        restarting: false,
        select_defer: Duration::from_secs(90),
        idle_hold: Duration::from_secs(5),
    });
    s.set_peers(peers);
    s
}

fn establish(s: &mut Speaker, addr: [u8; 4], asn: u32) -> (u32, u64) {
    establish_gr(s, addr, asn, Some(false))
}

/// Bring up the session of `addr`, whose OPEN has a Graceful Restart
/// capability with Restart State bit `gr` (none when `None`).
fn establish_gr(
    s: &mut Speaker,
    addr: [u8; 4],
    asn: u32,
    gr: Option<bool>,
) -> (u32, u64) {
    let (id, conn) = s
        .on_accept(
            IpAddr::V4(addr.into()),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        )
        .expect("configured peer");
    let mut caps = vec![
        Capability::MultiProtocol(bgp_wire::Family::IPV4_UNICAST),
        Capability::FourOctetAs(asn),
    ];
    if let Some(restart_state) = gr {
        caps.push(Capability::GracefulRestart(bgp_wire::GracefulRestartCap {
            restart_state,
            notification: false,
            restart_time: 60,
            families: vec![GrFamily {
                family: bgp_wire::Family::IPV4_UNICAST,
                forwarding_preserved: true,
            }],
        }));
    }
    let open = OpenMsg::new(asn, 90, Ipv4Addr::from(addr), caps);
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
            // Accept IPv6 next hops for IPv4 (RFC 8950) whether or not
            // the session negotiated them, so that tests see any.
            let cxt = DecodeCxt {
                extended_nh: bgp_wire::FamilySet::of(&[
                    bgp_wire::Family::IPV4_UNICAST,
                ]),
                ..DecodeCxt::four_octet()
            };
            let mut b = BytesMut::from(&bytes[..]);
            while let Ok(Some(l)) = bgp_wire::frame_len(&b, false) {
                let f = b.split_to(l);
                if let Ok(Message::Update(u)) = Message::decode(&f, &cxt) {
                    v.push(u);
                }
            }
        }
    }
    v
}

/// The OPEN the speaker sent to peer `id` among `outs`.
fn sent_open(outs: &[Output], id: u32) -> Option<OpenMsg> {
    outs.iter().find_map(|o| match o {
        Output::Send { peer, bytes, .. } if *peer == id => {
            let mut b = BytesMut::from(&bytes[..]);
            let l = bgp_wire::frame_len(&b, false).ok()??;
            match Message::decode(&b.split_to(l), &DecodeCxt::default()) {
                Ok(Message::Open(o)) => Some(o),
                _ => None,
            }
        }
        _ => None,
    })
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
    let mut s =
        speaker(vec![peer([10, 0, 0, 2], 65001), peer([10, 0, 0, 3], 65002)]);
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

/// Issue 12 6: our blocks carry ORIGIN IGP on the wire, and the RIB (what
/// `margayctl routes` shows) says the same.
#[test]
fn local_routes_show_the_origin_the_wire_carries() {
    let mut s = speaker(vec![peer([10, 0, 0, 2], 65001)]);
    s.set_local_routes(["10.65.0.0/26".parse().unwrap()].into());
    let c = establish(&mut s, [10, 0, 0, 2], 65001);
    s.flush();
    let ups = updates_to(&s.take_outputs(), c);
    let u = ups.iter().find(|u| !u.nlri.is_empty()).expect("our block");
    assert_eq!(u.attrs.origin, Some(bgp_wire::Origin::Igp));
    let dump = s.rib_dump();
    assert_eq!(dump[0].paths[0].peer, None);
    assert_eq!(dump[0].paths[0].origin, "Igp");
}

/// Issue 12 6: a refused connect of ours, then the session comes up on the
/// peer's connection: `node status` must not show "Established connect:
/// Connection refused".
#[test]
fn established_session_shows_no_stale_connect_error() {
    let mut p = peer([10, 0, 0, 2], 65001);
    p.passive = false;
    let mut s = speaker(vec![p]);
    let (id, conn) = s
        .take_outputs()
        .iter()
        .find_map(|o| match o {
            Output::Connect { peer, conn, .. } => Some((*peer, *conn)),
            _ => None,
        })
        .expect("active peer connects");
    s.on_connected(id, conn, Err("Connection refused".into()));
    let err = s.peer_status()[0].last_error.clone();
    assert!(err.unwrap_or_default().contains("refused"));
    establish(&mut s, [10, 0, 0, 2], 65001);
    assert_eq!(s.peer_status()[0].last_error, None);
    // A late attempt failing while Established is not the session's error.
    s.on_connected(id, conn + 100, Err("Connection refused".into()));
    assert_eq!(s.peer_status()[0].last_error, None);
}

// ===== BFD as the speaker's liveness signal =====

use margay_bgpd::bfd::session::Timer as BfdTimer;
use margay_bgpd::bfd::{ControlPacket, Diag, SessionCfg, State as BfdState};
use margay_bgpd::speaker::{TimerKey, TimerKind};

fn speaker_with_bfd_peer() -> (Speaker, u32) {
    let mut s = speaker(vec![peer([10, 0, 0, 2], 65001)]);
    s.set_bfd(
        [(
            "Global_10.0.0.2".to_string(),
            SessionCfg {
                min_interval: Duration::from_millis(100),
                multiplier: 3,
            },
        )]
        .into(),
    );
    let outs = s.take_outputs();
    let discr = outs
        .iter()
        .find_map(|o| match o {
            Output::BfdOpen { discr, remote, .. }
                if *remote == IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)) =>
            {
                Some(*discr)
            }
            _ => None,
        })
        .expect("BFD socket opened");
    assert!(
        outs.iter().any(
            |o| matches!(o, Output::BfdSend { discr: d, .. } if *d == discr)
        )
    );
    (s, discr)
}

/// A packet from the peer (discriminator 77) in `state`.
fn bfd_from_peer(state: BfdState, your: u32) -> Vec<u8> {
    ControlPacket {
        diag: Diag::None,
        state,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discr: 77,
        your_discr: your,
        desired_min_tx_us: 100_000,
        required_min_rx_us: 100_000,
        required_min_echo_rx_us: 0,
    }
    .to_bytes()
    .to_vec()
}

fn bfd_state(s: &Speaker) -> Option<String> {
    s.peer_status()[0].bfd_state.clone()
}

const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

/// BFD Up with the peer, which also has an Established session and one
/// route in the RIB.
fn bfd_up_with_route() -> (Speaker, u32, (u32, u64)) {
    let (mut s, discr) = speaker_with_bfd_peer();
    let c = establish(&mut s, [10, 0, 0, 2], 65001);
    s.on_frame(c.0, c.1, &announce("192.0.2.0/24"));
    s.on_bfd_packet(PEER, 255, &bfd_from_peer(BfdState::Down, 0));
    assert_eq!(bfd_state(&s).as_deref(), Some("Init"));
    s.on_bfd_packet(PEER, 255, &bfd_from_peer(BfdState::Up, discr));
    assert_eq!(bfd_state(&s).as_deref(), Some("Up"));
    s.flush();
    s.take_outputs();
    (s, discr, c)
}

#[test]
fn bfd_detection_timeout_tears_the_session_down_and_withdraws() {
    let (mut s, discr, c) = bfd_up_with_route();
    // RFC 5881 5: wrong TTL, or the right discriminator from another
    // address, are discarded: a Down in them changes nothing.
    s.on_bfd_packet(PEER, 254, &bfd_from_peer(BfdState::Down, discr));
    let other = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));
    s.on_bfd_packet(other, 255, &bfd_from_peer(BfdState::Down, discr));
    assert_eq!(bfd_state(&s).as_deref(), Some("Up"));
    assert!(s.is_established(c.0));
    assert_eq!(s.counters.bfd_downs, 0);

    s.on_timer(TimerKey {
        peer: 0,
        kind: TimerKind::Bfd(discr, BfdTimer::Detect),
    });
    s.flush();
    let outs = s.take_outputs();
    assert!(!s.is_established(c.0));
    assert_eq!(bfd_state(&s).as_deref(), Some("Down"));
    // What the metrics report: one Down acted on, the session counted Down.
    assert_eq!(s.counters.bfd_downs, 1);
    let states: Vec<(&str, usize)> = s
        .bfd_states()
        .iter()
        .map(|(st, n)| (st.name(), *n))
        .collect();
    assert_eq!(
        states,
        [("AdminDown", 0), ("Down", 1), ("Init", 0), ("Up", 0)]
    );
    // Cease / BFD Down (RFC 9384) went to the peer, and the route left at
    // once: no graceful-restart retention.
    let cease = Message::Notification(bgp_wire::NotificationMsg {
        code: 6,
        subcode: 10,
        data: vec![],
    })
    .to_bytes(&DecodeCxt::default())
    .unwrap();
    assert!(outs.iter().any(|o| matches!(o, Output::Send { bytes, .. } if bytes[..] == cease[..])), "{outs:?}");
    assert!(outs.contains(&Output::Rib(RibEvent::Withdraw {
        prefix: "192.0.2.0/24".parse().unwrap()
    })));
    assert!(s.rib_dump().is_empty());
    let err = s.peer_status()[0].last_error.clone().unwrap_or_default();
    assert!(err.contains("BFD Down"), "{err}");
}

#[test]
fn bfd_down_flushes_routes_kept_stale_for_a_restart() {
    let (mut s, discr, c) = bfd_up_with_route();
    // The TCP connection dies first (the node's processes were killed):
    // the RFC 4724 helper keeps the route stale...
    s.on_closed(c.0, c.1, "reset");
    s.flush();
    s.take_outputs();
    assert!(s.rib_dump()[0].paths[0].stale);
    // ...until BFD says the forwarding plane is gone too.
    s.on_timer(TimerKey {
        peer: 0,
        kind: TimerKind::Bfd(discr, BfdTimer::Detect),
    });
    s.flush();
    let outs = s.take_outputs();
    assert!(outs.contains(&Output::Rib(RibEvent::Withdraw {
        prefix: "192.0.2.0/24".parse().unwrap()
    })));
    assert!(s.rib_dump().is_empty());
}

#[test]
fn bfd_admin_down_from_the_peer_is_not_a_failure() {
    let (mut s, discr, c) = bfd_up_with_route();
    s.on_bfd_packet(PEER, 255, &bfd_from_peer(BfdState::AdminDown, discr));
    assert_eq!(bfd_state(&s).as_deref(), Some("Down"));
    assert!(s.is_established(c.0), "RFC 5882: AdminDown is no failure");
    assert_eq!(s.rib_dump().len(), 1);
    // Removing BFD from the config closes our side, AdminDown first.
    s.set_bfd(Default::default());
    let outs = s.take_outputs();
    let sent: Vec<_> = outs
        .iter()
        .filter_map(|o| match o {
            Output::BfdSend { bytes, .. } => ControlPacket::decode(bytes).ok(),
            _ => None,
        })
        .collect();
    assert_eq!(sent.last().map(|p| p.state), Some(BfdState::AdminDown));
    assert!(outs.contains(&Output::BfdClose { discr }));
    assert_eq!(bfd_state(&s), None);
}

/// RFC 2918 4: a ROUTE-REFRESH makes the speaker re-advertise what it
/// advertised in that family, without counting it twice.
#[test]
fn route_refresh_resends_the_adj_rib_out() {
    let mut s =
        speaker(vec![peer([10, 0, 0, 2], 65001), peer([10, 0, 0, 3], 65002)]);
    let inj = establish(&mut s, [10, 0, 0, 2], 65001);
    let mon = establish(&mut s, [10, 0, 0, 3], 65002);
    s.on_frame(inj.0, inj.1, &announce("192.0.2.0/24"));
    s.flush();
    s.take_outputs();
    let refresh = Message::RouteRefresh(bgp_wire::RouteRefreshMsg {
        family: bgp_wire::Family::IPV4_UNICAST,
        subtype: bgp_wire::RefreshSubtype::Normal,
    });
    s.on_frame(
        mon.0,
        mon.1,
        &refresh.to_bytes(&DecodeCxt::four_octet()).unwrap(),
    );
    let ups = updates_to(&s.take_outputs(), mon);
    let prefixes: Vec<String> = ups
        .iter()
        .flat_map(|u| u.nlri.iter().map(|n| n.prefix.to_string()))
        .collect();
    assert_eq!(prefixes, ["192.0.2.0/24"]);
    let advertised = s
        .peer_status()
        .iter()
        .find(|p| p.address == IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3)))
        .map(|p| p.prefixes_advertised);
    assert_eq!(advertised, Some(1));
}
