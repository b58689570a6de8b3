use std::net::{IpAddr, Ipv4Addr};

use bgp_wire::{AsPath, Community, NextHop, PathAttrs};

use super::*;

fn sess(local_as: u32, remote_as: u32) -> SessionPolicy {
    SessionPolicy {
        local_as,
        remote_as,
        router_id: Ipv4Addr::new(10, 0, 0, 1),
        cluster_id: None,
        rr_client: false,
        import: RuleSet::default(),
        export: RuleSet::default(),
        allowed_local_as: 0,
        next_hop_mode: NextHopMode::Auto,
        local_addr: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
        local_addr_other: None,
    }
}

fn global() -> GlobalPolicy {
    GlobalPolicy {
        pools: vec![
            Pool {
                cidr: n("10.244.0.0/16"),
                disabled: false,
                disable_bgp_export: false,
            },
            Pool {
                cidr: n("10.99.0.0/16"),
                disabled: false,
                disable_bgp_export: true,
            },
            Pool {
                cidr: n("10.98.0.0/16"),
                disabled: true,
                disable_bgp_export: false,
            },
        ],
        prefix_communities: vec![],
    }
}

fn n(s: &str) -> IpNetwork {
    s.parse().unwrap()
}

fn path(asns: &[u32]) -> PathAttrs {
    PathAttrs {
        origin: Some(bgp_wire::Origin::Igp),
        as_path: Some(AsPath::from_sequence(asns)),
        ..Default::default()
    }
}

#[test]
fn match_operators_and_prefix_length() {
    let mut r = Rule::all(Verdict::Accept);
    r.cidr = Some(n("10.0.0.0/8"));
    assert!(r.matches(&n("10.1.0.0/16"), PeerKind::Ebgp));
    assert!(!r.matches(&n("11.0.0.0/16"), PeerKind::Ebgp));
    assert!(
        !r.matches(&n("10.0.0.0/7"), PeerKind::Ebgp),
        "less specific is not In"
    );
    r.op = MatchOp::Equal;
    assert!(r.matches(&n("10.0.0.0/8"), PeerKind::Ebgp));
    assert!(!r.matches(&n("10.1.0.0/16"), PeerKind::Ebgp));
    r.op = MatchOp::NotEqual;
    assert!(r.matches(&n("10.1.0.0/16"), PeerKind::Ebgp));
    r.op = MatchOp::NotIn;
    assert!(r.matches(&n("11.0.0.0/16"), PeerKind::Ebgp));
    assert!(r.matches(&n("fd00::/64"), PeerKind::Ebgp));
    r.op = MatchOp::In;
    r.prefix_len = Some((16, 24));
    assert!(r.matches(&n("10.1.2.0/24"), PeerKind::Ebgp));
    assert!(!r.matches(&n("10.1.2.128/25"), PeerKind::Ebgp));
    r.peer_kind = Some(PeerKind::Ibgp);
    assert!(!r.matches(&n("10.1.2.0/24"), PeerKind::Ebgp));
}

#[test]
fn first_matching_rule_wins_then_pool_default() {
    let mut s = sess(65000, 65001);
    let mut reject = Rule::all(Verdict::Reject);
    reject.cidr = Some(n("10.244.5.0/24"));
    reject.op = MatchOp::Equal;
    let mut accept = Rule::all(Verdict::Accept);
    accept.cidr = Some(n("192.168.0.0/16"));
    s.import.v4 = vec![reject, accept];
    let g = global();
    assert_eq!(
        import_prefix(&s, &g, &n("10.244.5.0/24")),
        Err(ImportReject::Filter)
    );
    assert_eq!(import_prefix(&s, &g, &n("10.244.6.0/24")), Ok(()));
    assert_eq!(import_prefix(&s, &g, &n("192.168.1.0/24")), Ok(()));
    assert_eq!(
        import_prefix(&s, &g, &n("8.8.8.0/24")),
        Err(ImportReject::NotInPool)
    );
    assert_eq!(
        import_prefix(&s, &g, &n("10.98.0.0/24")),
        Err(ImportReject::NotInPool)
    );
    // IPv6 rules are separate: no v6 rule, so the default applies.
    assert_eq!(
        import_prefix(&s, &g, &n("fd00::/64")),
        Err(ImportReject::NotInPool)
    );
    s.import.v4 = vec![Rule::all(Verdict::Accept)];
    assert_eq!(import_prefix(&s, &g, &n("8.8.8.0/24")), Ok(()));
}

#[test]
fn loop_checks() {
    let mut s = sess(65000, 65001);
    let p = path(&[65001, 65000, 7]);
    assert_eq!(import_loop_check(&s, &p), Err(ImportReject::AsLoop));
    s.allowed_local_as = 1;
    assert_eq!(import_loop_check(&s, &p), Ok(()));
    let mut s = sess(65000, 65000);
    s.cluster_id = Some(Ipv4Addr::new(1, 1, 1, 1));
    let mut p = path(&[]);
    p.originator_id = Some(Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(import_loop_check(&s, &p), Err(ImportReject::OriginatorIsUs));
    let mut p = path(&[]);
    p.cluster_list = vec![Ipv4Addr::new(2, 2, 2, 2), Ipv4Addr::new(1, 1, 1, 1)];
    assert_eq!(import_loop_check(&s, &p), Err(ImportReject::ClusterLoop));
}

#[test]
fn ebgp_local_pref_is_ignored_on_import() {
    let mut p = path(&[65001]);
    p.local_pref = Some(300);
    assert_eq!(
        import_attrs(&sess(65000, 65001), p.clone()).local_pref,
        None
    );
    assert_eq!(import_attrs(&sess(65000, 65000), p).local_pref, Some(300));
}

#[test]
fn ibgp_split_horizon_and_route_reflection() {
    let g = global();
    let pfx = n("10.244.1.0/26");
    let p = path(&[]);
    let ib = sess(65000, 65000);
    assert!(!export_prefix(
        &ib,
        &g,
        &pfx,
        Origin::Ibgp { client: false },
        &p
    ));
    assert!(export_prefix(&ib, &g, &pfx, Origin::Local, &p));
    assert!(export_prefix(&ib, &g, &pfx, Origin::Ebgp, &p));
    let mut rr = ib.clone();
    rr.cluster_id = Some(Ipv4Addr::new(1, 1, 1, 1));
    // Reflector: from a client to a non-client, from a non-client to a
    // client, but not from a non-client to a non-client.
    assert!(export_prefix(
        &rr,
        &g,
        &pfx,
        Origin::Ibgp { client: true },
        &p
    ));
    assert!(!export_prefix(
        &rr,
        &g,
        &pfx,
        Origin::Ibgp { client: false },
        &p
    ));
    rr.rr_client = true;
    assert!(export_prefix(
        &rr,
        &g,
        &pfx,
        Origin::Ibgp { client: false },
        &p
    ));
}

#[test]
fn export_defaults_pools_and_communities() {
    let g = global();
    let eb = sess(65000, 65001);
    let p = path(&[65002]);
    assert!(export_prefix(
        &eb,
        &g,
        &n("10.244.1.0/26"),
        Origin::Ebgp,
        &p
    ));
    assert!(!export_prefix(&eb, &g, &n("8.8.8.0/24"), Origin::Ebgp, &p));
    assert!(
        !export_prefix(&eb, &g, &n("10.99.1.0/26"), Origin::Local, &p),
        "disableBGPExport"
    );
    assert!(export_prefix(
        &eb,
        &g,
        &n("172.16.0.0/24"),
        Origin::Local,
        &p
    ));
    let mut ne = p.clone();
    ne.communities.push(Community::NO_EXPORT);
    assert!(!export_prefix(
        &eb,
        &g,
        &n("10.244.1.0/26"),
        Origin::Ebgp,
        &ne
    ));
    assert!(export_prefix(
        &sess(65000, 65000),
        &g,
        &n("10.244.1.0/26"),
        Origin::Ebgp,
        &ne
    ));
    let mut na = p.clone();
    na.communities.push(Community::NO_ADVERTISE);
    assert!(!export_prefix(
        &sess(65000, 65000),
        &g,
        &n("10.244.1.0/26"),
        Origin::Ebgp,
        &na
    ));
    let mut f = eb.clone();
    f.export.v4 = vec![Rule::all(Verdict::Accept)];
    assert!(export_prefix(&f, &g, &n("8.8.8.0/24"), Origin::Ebgp, &p));
}

#[test]
fn export_attribute_rewriting() {
    let g = GlobalPolicy {
        prefix_communities: vec![PrefixCommunities {
            cidr: n("10.244.0.0/16"),
            communities: vec![Community::new(65000, 100)],
            large: vec![],
        }],
        ..global()
    };
    let mut learned = path(&[65002]);
    learned.med = Some(5);
    learned.local_pref = Some(200);
    let a = Attrs {
        path: learned,
        next_hop: Some(NextHop::V4(Ipv4Addr::new(192, 0, 2, 2))),
    };
    let pfx = n("10.244.1.0/26");
    // eBGP: prepend, next hop self, no LOCAL_PREF, no MED.
    let out =
        export_attrs(&sess(65000, 65001), &g, &pfx, Origin::Ebgp, None, &a);
    assert_eq!(
        out.path.as_path.as_ref().unwrap().segments[0].asns,
        vec![65000, 65002]
    );
    assert_eq!(out.next_hop, Some(NextHop::V4(Ipv4Addr::new(10, 0, 0, 1))));
    assert_eq!((out.path.local_pref, out.path.med), (None, None));
    assert_eq!(out.path.communities, vec![Community::new(65000, 100)]);
    // eBGP with nextHopMode Keep keeps it.
    let mut keep = sess(65000, 65001);
    keep.next_hop_mode = NextHopMode::Keep;
    let out = export_attrs(&keep, &g, &pfx, Origin::Ebgp, None, &a);
    assert_eq!(out.next_hop, a.next_hop);
    // iBGP reflection: keep next hop, set ORIGINATOR_ID and CLUSTER_LIST.
    let mut rr = sess(65000, 65000);
    rr.cluster_id = Some(Ipv4Addr::new(1, 1, 1, 1));
    let src = Some(Ipv4Addr::new(10, 0, 0, 7));
    let out =
        export_attrs(&rr, &g, &pfx, Origin::Ibgp { client: true }, src, &a);
    assert_eq!(out.next_hop, a.next_hop);
    assert_eq!(out.path.originator_id, src);
    assert_eq!(out.path.cluster_list, vec![Ipv4Addr::new(1, 1, 1, 1)]);
    assert_eq!(out.path.local_pref, Some(200));
    assert_eq!(
        out.path.as_path.as_ref().unwrap().segments[0].asns,
        vec![65002]
    );
    // iBGP next hop self on request; local routes always self.
    let mut s = sess(65000, 65000);
    s.next_hop_mode = NextHopMode::SelfAddr;
    let out = export_attrs(&s, &g, &pfx, Origin::Ebgp, None, &a);
    assert_eq!(out.next_hop, Some(NextHop::V4(Ipv4Addr::new(10, 0, 0, 1))));
    let local = Attrs::default();
    let out = export_attrs(
        &sess(65000, 65000),
        &g,
        &pfx,
        Origin::Local,
        None,
        &local,
    );
    assert_eq!(out.next_hop, Some(NextHop::V4(Ipv4Addr::new(10, 0, 0, 1))));
    assert_eq!(out.path.local_pref, Some(100));
    assert_eq!(out.path.origin, Some(bgp_wire::Origin::Igp));
}
