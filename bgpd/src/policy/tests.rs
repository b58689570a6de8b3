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
        ext_next_hop: false,
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

/// Import verdict of a prefix carrying no attributes of note.
fn imports(
    s: &SessionPolicy,
    g: &GlobalPolicy,
    p: &IpNetwork,
) -> Result<(), ImportReject> {
    import_prefix(s, g, p, &PathAttrs::default()).map(|_| ())
}

fn exports(
    s: &SessionPolicy,
    g: &GlobalPolicy,
    p: &IpNetwork,
    o: Origin,
    a: &PathAttrs,
) -> bool {
    export_prefix(s, g, p, o, a).is_some()
}

/// Export rewriting without filter operations.
fn rewrite(
    s: &SessionPolicy,
    g: &GlobalPolicy,
    p: &IpNetwork,
    o: Origin,
    id: Option<Ipv4Addr>,
    a: &Attrs,
) -> Attrs {
    export_attrs(s, g, p, o, id, a, &[])
}

fn path(asns: &[u32]) -> PathAttrs {
    PathAttrs {
        origin: Some(bgp_wire::Origin::Igp),
        as_path: Some(AsPath::from_sequence(asns)),
        ..Default::default()
    }
}

#[test]
fn first_matching_rule_wins_then_pool_default() {
    let mut s = sess(65000, 65001);
    let mut reject = Rule::all(Verdict::Reject);
    reject.prefix = Some(margay_crds::PrefixMatch {
        cidr: n("10.244.5.0/24"),
        op: margay_crds::MatchOperator::Equal,
        lengths: None,
    });
    let mut accept = Rule::all(Verdict::Accept);
    accept.prefix = Some(margay_crds::PrefixMatch {
        cidr: n("192.168.0.0/16"),
        op: margay_crds::MatchOperator::In,
        lengths: None,
    });
    s.import.v4 = vec![reject, accept];
    let g = global();
    assert_eq!(
        imports(&s, &g, &n("10.244.5.0/24")),
        Err(ImportReject::Filter)
    );
    assert_eq!(imports(&s, &g, &n("10.244.6.0/24")), Ok(()));
    assert_eq!(imports(&s, &g, &n("192.168.1.0/24")), Ok(()));
    assert_eq!(
        imports(&s, &g, &n("8.8.8.0/24")),
        Err(ImportReject::NotInPool)
    );
    assert_eq!(
        imports(&s, &g, &n("10.98.0.0/24")),
        Err(ImportReject::NotInPool)
    );
    // IPv6 rules are separate: no v6 rule, so the default applies.
    assert_eq!(
        imports(&s, &g, &n("fd00::/64")),
        Err(ImportReject::NotInPool)
    );
    s.import.v4 = vec![Rule::all(Verdict::Accept)];
    assert_eq!(imports(&s, &g, &n("8.8.8.0/24")), Ok(()));
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
    p.rare_mut().originator_id = Some(Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(import_loop_check(&s, &p), Err(ImportReject::OriginatorIsUs));
    let mut p = path(&[]);
    p.rare_mut().cluster_list =
        vec![Ipv4Addr::new(2, 2, 2, 2), Ipv4Addr::new(1, 1, 1, 1)];
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
    assert!(!exports(&ib, &g, &pfx, Origin::Ibgp { client: false }, &p));
    assert!(exports(&ib, &g, &pfx, Origin::Local, &p));
    assert!(exports(&ib, &g, &pfx, Origin::Ebgp, &p));
    let mut rr = ib.clone();
    rr.cluster_id = Some(Ipv4Addr::new(1, 1, 1, 1));
    // Reflector: from a client to a non-client, from a non-client to a
    // client, but not from a non-client to a non-client.
    assert!(exports(&rr, &g, &pfx, Origin::Ibgp { client: true }, &p));
    assert!(!exports(&rr, &g, &pfx, Origin::Ibgp { client: false }, &p));
    rr.rr_client = true;
    assert!(exports(&rr, &g, &pfx, Origin::Ibgp { client: false }, &p));
}

#[test]
fn export_defaults_pools_and_communities() {
    let g = global();
    let eb = sess(65000, 65001);
    let p = path(&[65002]);
    assert!(exports(&eb, &g, &n("10.244.1.0/26"), Origin::Ebgp, &p));
    assert!(!exports(&eb, &g, &n("8.8.8.0/24"), Origin::Ebgp, &p));
    assert!(
        !exports(&eb, &g, &n("10.99.1.0/26"), Origin::Local, &p),
        "disableBGPExport"
    );
    assert!(exports(&eb, &g, &n("172.16.0.0/24"), Origin::Local, &p));
    let mut ne = p.clone();
    ne.communities.push(Community::NO_EXPORT);
    assert!(!exports(&eb, &g, &n("10.244.1.0/26"), Origin::Ebgp, &ne));
    assert!(exports(
        &sess(65000, 65000),
        &g,
        &n("10.244.1.0/26"),
        Origin::Ebgp,
        &ne
    ));
    let mut na = p.clone();
    na.communities.push(Community::NO_ADVERTISE);
    assert!(!exports(
        &sess(65000, 65000),
        &g,
        &n("10.244.1.0/26"),
        Origin::Ebgp,
        &na
    ));
    let mut f = eb.clone();
    f.export.v4 = vec![Rule::all(Verdict::Accept)];
    assert!(exports(&f, &g, &n("8.8.8.0/24"), Origin::Ebgp, &p));
}

#[test]
fn export_attribute_rewriting() {
    let g = GlobalPolicy {
        prefix_communities: vec![PrefixCommunities {
            cidr: n("10.244.0.0/16"),
            communities: vec![AnyCommunity::Standard(Community::new(
                65000, 100,
            ))],
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
    let out = rewrite(&sess(65000, 65001), &g, &pfx, Origin::Ebgp, None, &a);
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
    let out = rewrite(&keep, &g, &pfx, Origin::Ebgp, None, &a);
    assert_eq!(out.next_hop, a.next_hop);
    // iBGP reflection: keep next hop, set ORIGINATOR_ID and CLUSTER_LIST.
    let mut rr = sess(65000, 65000);
    rr.cluster_id = Some(Ipv4Addr::new(1, 1, 1, 1));
    let src = Some(Ipv4Addr::new(10, 0, 0, 7));
    let out = rewrite(&rr, &g, &pfx, Origin::Ibgp { client: true }, src, &a);
    assert_eq!(out.next_hop, a.next_hop);
    assert_eq!(out.path.rare.originator_id, src);
    assert_eq!(out.path.rare.cluster_list, vec![Ipv4Addr::new(1, 1, 1, 1)]);
    assert_eq!(out.path.local_pref, Some(200));
    assert_eq!(
        out.path.as_path.as_ref().unwrap().segments[0].asns,
        vec![65002]
    );
    // iBGP next hop self on request; local routes always self.
    let mut s = sess(65000, 65000);
    s.next_hop_mode = NextHopMode::SelfAddr;
    let out = rewrite(&s, &g, &pfx, Origin::Ebgp, None, &a);
    assert_eq!(out.next_hop, Some(NextHop::V4(Ipv4Addr::new(10, 0, 0, 1))));
    let local = Attrs::local();
    let out =
        rewrite(&sess(65000, 65000), &g, &pfx, Origin::Local, None, &local);
    assert_eq!(out.next_hop, Some(NextHop::V4(Ipv4Addr::new(10, 0, 0, 1))));
    assert_eq!(out.path.local_pref, Some(100));
    assert_eq!(out.path.origin, Some(bgp_wire::Origin::Igp));
}

#[test]
fn filter_operations_apply_on_import_and_before_export_rewriting() {
    let mut s = sess(65000, 65001);
    let mut tag = Rule::all(Verdict::Accept);
    tag.as_path_prefix = vec![65001];
    tag.operations = vec![
        Operation::AddCommunity(AnyCommunity::Standard(Community::new(
            65000, 7,
        ))),
        Operation::PrependAsPath(vec![65010, 65011]),
    ];
    s.import.v4 = vec![tag.clone()];
    s.export.v4 = vec![tag];
    let g = global();
    let from_peer = path(&[65001, 7]);
    // Import: the accepting rule's operations come back to the caller.
    let ops = import_prefix(&s, &g, &n("8.8.8.0/24"), &from_peer).unwrap();
    assert_eq!(ops.len(), 2);
    // A path not starting with 65001 misses the rule: pool default.
    assert_eq!(
        import_prefix(&s, &g, &n("8.8.8.0/24"), &path(&[7])),
        Err(ImportReject::NotInPool)
    );
    // Export to eBGP: the filter's prepend first, then our own AS in
    // front (BIRD's order), and the community added.
    let ops = export_prefix(&s, &g, &n("8.8.8.0/24"), Origin::Ebgp, &from_peer)
        .unwrap();
    let a = Attrs {
        path: from_peer.clone(),
        next_hop: Some(NextHop::V4(Ipv4Addr::new(192, 0, 2, 2))),
    };
    let out =
        export_attrs(&s, &g, &n("8.8.8.0/24"), Origin::Ebgp, None, &a, ops);
    assert_eq!(
        out.path.as_path.as_ref().unwrap().segments[0].asns,
        vec![65000, 65010, 65011, 65001, 7]
    );
    assert_eq!(out.path.communities, vec![Community::new(65000, 7)]);
}

#[test]
fn source_remote_peers_skips_local_routes_on_export() {
    let mut s = sess(65000, 65001);
    let mut r = Rule::all(Verdict::Reject);
    r.remote_peers_only = true;
    s.export.v4 = vec![r];
    let g = global();
    let p = path(&[]);
    let pfx = n("10.244.1.0/26");
    assert!(exports(&s, &g, &pfx, Origin::Local, &p));
    assert!(!exports(&s, &g, &pfx, Origin::Ebgp, &path(&[65002])));
}

#[test]
fn an_ipv6_next_hop_for_ipv4_is_kept_only_where_rfc_8950_runs() {
    use std::net::Ipv6Addr;
    let g = global();
    let v6_nh = NextHop::V6 {
        global: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2),
        link_local: None,
    };
    // Learned over an RFC 8950 session: an IPv4 route, IPv6 next hop.
    let a = Attrs {
        path: PathAttrs::default(),
        next_hop: Some(v6_nh),
    };
    let p = n("10.244.5.0/26");
    // iBGP keeps the next hop (Auto, not our route)...
    let mut s = sess(65000, 65000);
    s.ext_next_hop = true;
    let out = rewrite(&s, &g, &p, Origin::Ebgp, None, &a);
    assert_eq!(out.next_hop, Some(v6_nh));
    // ...but a session without RFC 8950 cannot carry it: ours instead.
    s.ext_next_hop = false;
    let out = rewrite(&s, &g, &p, Origin::Ebgp, None, &a);
    assert_eq!(out.next_hop, Some(NextHop::V4(Ipv4Addr::new(10, 0, 0, 1))));
    // On an RFC 8950 IPv6 session, next hop self for IPv4 is our IPv6
    // session address, even when the node has an IPv4 one.
    let mut s = sess(65000, 65001);
    s.local_addr = Some(IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)));
    s.local_addr_other = Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
    s.ext_next_hop = true;
    let out = rewrite(&s, &g, &p, Origin::Local, None, &a);
    assert_eq!(
        out.next_hop,
        Some(NextHop::V6 {
            global: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1),
            link_local: None
        })
    );
    s.ext_next_hop = false;
    let out = rewrite(&s, &g, &p, Origin::Local, None, &a);
    assert_eq!(out.next_hop, Some(NextHop::V4(Ipv4Addr::new(10, 0, 0, 1))));
}
