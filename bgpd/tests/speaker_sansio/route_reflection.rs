//! RFC 4456 with two reflectors of one cluster ID (Calico's redundant
//! pair): what one reflector sends its clients and its twin, the loops it
//! drops, and a client keeping its route through the second reflector
//! when the first stops.

use super::*;

const CLUSTER: Ipv4Addr = Ipv4Addr::new(244, 0, 0, 1);
const US: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

/// An iBGP peer (AS 65000); `cluster` is our cluster ID when we reflect,
/// `client` whether the peer is our route-reflector client.
fn ibgp(addr: [u8; 4], cluster: Option<Ipv4Addr>, client: bool) -> PeerCfg {
    let mut p = peer(addr, 65000);
    p.peer_type = if client {
        PeerType::RouteReflectorClient
    } else {
        PeerType::NodeSpecific
    };
    p.policy.cluster_id = cluster;
    p.policy.rr_client = client;
    p
}

/// An iBGP UPDATE for `prefix` via `next_hop` with the reflection
/// attributes given.
fn ibgp_update(
    prefix: &str,
    next_hop: [u8; 4],
    originator: Option<Ipv4Addr>,
    cluster_list: &[Ipv4Addr],
) -> Vec<u8> {
    let attrs = PathAttrs {
        origin: Some(bgp_wire::Origin::Igp),
        as_path: Some(bgp_wire::AsPath::default()),
        local_pref: Some(100),
        rare: bgp_wire::RareAttrs {
            originator_id: originator,
            cluster_list: cluster_list.to_vec(),
            ..Default::default()
        }
        .into(),
        ..Default::default()
    };
    let mut out = BytesMut::new();
    bgp_wire::pack_reach(
        bgp_wire::Family::IPV4_UNICAST,
        &attrs,
        NextHop::V4(next_hop.into()),
        &[Nlri::new(prefix.parse().unwrap())],
        &DecodeCxt::four_octet(),
        &mut out,
    )
    .unwrap();
    out.to_vec()
}

/// The UPDATEs to `to` among `outs` that announce `prefix`.
fn announced(
    outs: &[Output],
    to: (u32, u64),
    prefix: &str,
) -> Vec<bgp_wire::UpdateMsg> {
    updates_to(outs, to)
        .into_iter()
        .filter(|u| u.nlri.iter().any(|n| n.prefix.to_string() == prefix))
        .collect()
}

fn in_rib(s: &Speaker, prefix: &str) -> Vec<Option<IpAddr>> {
    s.rib_dump()
        .iter()
        .filter(|r| r.prefix.to_string() == prefix)
        .flat_map(|r| r.paths.iter().map(|p| p.peer))
        .collect()
}

/// We are reflector 10.0.0.1 of cluster 244.0.0.1 with clients 10.0.0.2
/// and 10.0.0.3 and the other reflector of the cluster, 10.0.0.4.
fn reflector() -> (Speaker, [(u32, u64); 3]) {
    let c = Some(CLUSTER);
    let mut s = speaker(vec![
        ibgp([10, 0, 0, 2], c, true),
        ibgp([10, 0, 0, 3], c, true),
        ibgp([10, 0, 0, 4], c, false),
    ]);
    let c1 = establish(&mut s, [10, 0, 0, 2], 65000);
    let c2 = establish(&mut s, [10, 0, 0, 3], 65000);
    let twin = establish(&mut s, [10, 0, 0, 4], 65000);
    s.flush();
    s.take_outputs();
    (s, [c1, c2, twin])
}

#[test]
fn a_client_route_goes_to_the_other_client_and_the_twin_reflector() {
    let (mut s, [c1, c2, twin]) = reflector();
    let pfx = "10.244.1.0/26";
    s.on_frame(c1.0, c1.1, &ibgp_update(pfx, [10, 0, 0, 2], None, &[]));
    s.flush();
    let outs = s.take_outputs();
    // RFC 4456 8: the reflector sets ORIGINATOR_ID (the client's BGP
    // Identifier) and prepends its CLUSTER_ID; the next hop is kept.
    for to in [c2, twin] {
        let ups = announced(&outs, to, pfx);
        assert_eq!(ups.len(), 1, "to {to:?}: {outs:?}");
        let a = &ups[0].attrs;
        assert_eq!(a.rare.originator_id, Some(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(a.rare.cluster_list, [CLUSTER]);
        assert_eq!(a.next_hop, Some(Ipv4Addr::new(10, 0, 0, 2)));
    }
    // RFC 4456 6: to the clients "other than the originator".
    assert!(announced(&outs, c1, pfx).is_empty(), "not back to c1");
}

#[test]
fn the_twins_route_goes_to_clients_only() {
    let (mut s, [c1, c2, twin]) = reflector();
    // The twin's own block (it is no client of ours: same cluster ID).
    let pfx = "10.244.4.0/26";
    s.on_frame(twin.0, twin.1, &ibgp_update(pfx, [10, 0, 0, 4], None, &[]));
    s.flush();
    let outs = s.take_outputs();
    // RFC 4456 6: from a non-client, reflect to the clients.
    for to in [c1, c2] {
        let ups = announced(&outs, to, pfx);
        assert_eq!(ups.len(), 1, "to {to:?}");
        assert_eq!(
            ups[0].attrs.rare.originator_id,
            Some(Ipv4Addr::new(10, 0, 0, 4))
        );
        assert_eq!(ups[0].attrs.rare.cluster_list, [CLUSTER]);
    }
    assert!(announced(&outs, twin, pfx).is_empty());
}

#[test]
fn routes_looping_through_our_cluster_or_back_to_us_are_dropped() {
    let (mut s, [c1, c2, twin]) = reflector();
    // The twin reflects a client's route to us: our cluster ID is in the
    // CLUSTER_LIST. RFC 4456 8: "the advertisement received SHOULD be
    // ignored" (we have it from the client itself).
    let looped = "10.244.2.0/26";
    let client = Some(Ipv4Addr::new(10, 0, 0, 2));
    s.on_frame(
        twin.0,
        twin.1,
        &ibgp_update(looped, [10, 0, 0, 2], client, &[CLUSTER]),
    );
    // A route whose ORIGINATOR_ID is our own BGP Identifier (RFC 4456 8:
    // "SHOULD ignore").
    let ours = "10.244.3.0/26";
    s.on_frame(
        twin.0,
        twin.1,
        &ibgp_update(ours, [10, 0, 0, 1], Some(US), &[]),
    );
    s.flush();
    let outs = s.take_outputs();
    for pfx in [looped, ours] {
        assert!(in_rib(&s, pfx).is_empty(), "{pfx} in {:?}", s.rib_dump());
        for to in [c1, c2] {
            assert!(announced(&outs, to, pfx).is_empty(), "{pfx} to {to:?}");
        }
        assert!(
            !outs.iter().any(|o| matches!(o, Output::Rib(RibEvent::Route { prefix, .. }) if prefix.to_string() == pfx))
        );
    }
    // Another cluster's ID in the list is no loop for us.
    let other = "10.244.5.0/26";
    let list = [Ipv4Addr::new(244, 0, 0, 9)];
    s.on_frame(
        twin.0,
        twin.1,
        &ibgp_update(other, [10, 0, 0, 7], None, &list),
    );
    s.flush();
    let outs = s.take_outputs();
    let ups = announced(&outs, c1, other);
    assert_eq!(ups.len(), 1);
    assert_eq!(ups[0].attrs.rare.cluster_list, [CLUSTER, list[0]]);
}

#[test]
fn a_client_keeps_its_route_through_the_second_reflector() {
    // We are a client of reflectors 10.0.0.2 and 10.0.0.3.
    let mut s = speaker(vec![
        ibgp([10, 0, 0, 2], None, false),
        ibgp([10, 0, 0, 3], None, false),
    ]);
    let rr1 = establish(&mut s, [10, 0, 0, 2], 65000);
    let rr2 = establish(&mut s, [10, 0, 0, 3], 65000);
    let pfx = "10.244.9.0/26";
    let origin = Some(Ipv4Addr::new(10, 0, 0, 9));
    for rr in [rr1, rr2] {
        s.on_frame(
            rr.0,
            rr.1,
            &ibgp_update(pfx, [10, 0, 0, 9], origin, &[CLUSTER]),
        );
    }
    s.flush();
    let outs = s.take_outputs();
    let route = Output::Rib(RibEvent::Route {
        prefix: pfx.parse().unwrap(),
        next_hops: vec!["10.0.0.9".parse().unwrap()],
    });
    assert!(outs.contains(&route), "{outs:?}");
    assert_eq!(in_rib(&s, pfx).len(), 2);
    // Our own route reflected back to us: RFC 4456 8, ORIGINATOR_ID is our
    // BGP Identifier, ignored (the client has no cluster ID to check).
    let own = "10.244.8.0/26";
    s.on_frame(
        rr1.0,
        rr1.1,
        &ibgp_update(own, [10, 0, 0, 1], Some(US), &[CLUSTER]),
    );
    s.flush();
    assert!(in_rib(&s, own).is_empty(), "{:?}", s.rib_dump());
    let withdraw = Output::Rib(RibEvent::Withdraw {
        prefix: pfx.parse().unwrap(),
    });
    // Reflector 1 stops for good: its Cease / Administrative Shutdown
    // flushes its paths (no graceful-restart retention after a
    // NOTIFICATION), and the route stays, through reflector 2.
    let cease = Message::Notification(bgp_wire::NotificationMsg::cease(
        bgp_wire::CeaseSubcode::AdminShutdown,
    ))
    .to_bytes(&DecodeCxt::default())
    .unwrap();
    s.on_frame(rr1.0, rr1.1, &cease);
    s.flush();
    let outs = s.take_outputs();
    assert!(!s.is_established(rr1.0));
    assert!(!outs.contains(&withdraw), "{outs:?}");
    assert_eq!(
        in_rib(&s, pfx),
        [Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3)))]
    );
    // The control: reflector 2 stopping too withdraws it.
    s.on_frame(rr2.0, rr2.1, &cease);
    s.flush();
    assert!(s.take_outputs().contains(&withdraw));
    assert!(in_rib(&s, pfx).is_empty());
}
