use std::net::{IpAddr, Ipv4Addr};

use bgp_wire::{AsPath, Origin, PathAttrs};

use super::*;

fn attrs(path: &[u32]) -> PathAttrs {
    PathAttrs {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::from_sequence(path)),
        ..Default::default()
    }
}

fn peer(ebgp: bool, id: u8, addr: u8) -> Source {
    Source::Peer {
        ebgp,
        router_id: Ipv4Addr::new(10, 0, 0, id),
        addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, addr)),
    }
}

fn cmp(a: &PathAttrs, sa: Source, b: &PathAttrs, sb: Source) -> RouteCmp {
    let r = compare(
        &Candidate {
            attrs: a,
            source: sa,
        },
        &Candidate {
            attrs: b,
            source: sb,
        },
    );
    // The comparator must be antisymmetric.
    let back = compare(
        &Candidate {
            attrs: b,
            source: sb,
        },
        &Candidate {
            attrs: a,
            source: sa,
        },
    );
    match r {
        RouteCmp::Preferred(x) => assert_eq!(back, RouteCmp::LessPreferred(x)),
        RouteCmp::LessPreferred(x) => assert_eq!(back, RouteCmp::Preferred(x)),
        RouteCmp::Equal => assert_eq!(back, RouteCmp::Equal),
    }
    r
}

#[test]
fn local_pref_beats_shorter_path() {
    let mut a = attrs(&[1, 2, 3]);
    a.local_pref = Some(200);
    let b = attrs(&[1]);
    assert_eq!(
        cmp(&a, peer(false, 1, 1), &b, peer(false, 2, 2)),
        RouteCmp::Preferred(Reason::LocalPref)
    );
}

#[test]
fn missing_local_pref_counts_as_100() {
    let mut a = attrs(&[1]);
    a.local_pref = Some(100);
    let b = attrs(&[1, 2]);
    assert_eq!(
        cmp(&a, peer(true, 1, 1), &b, peer(true, 2, 2)),
        RouteCmp::Preferred(Reason::AsPathLength)
    );
}

#[test]
fn as_set_counts_one() {
    let mut a = attrs(&[1]);
    a.as_path
        .as_mut()
        .unwrap()
        .segments
        .push(bgp_wire::AsSegment {
            kind: bgp_wire::SegmentType::Set,
            asns: vec![7, 8, 9],
        });
    let b = attrs(&[1, 2, 3]);
    assert_eq!(
        cmp(&a, peer(true, 1, 1), &b, peer(true, 2, 2)),
        RouteCmp::Preferred(Reason::AsPathLength)
    );
}

#[test]
fn origin_then_med_same_neighbour_only() {
    let a = attrs(&[1, 5]);
    let mut b = attrs(&[1, 6]);
    b.origin = Some(Origin::Incomplete);
    assert_eq!(
        cmp(&a, peer(true, 9, 9), &b, peer(true, 2, 2)),
        RouteCmp::Preferred(Reason::Origin)
    );
    let mut a = attrs(&[1, 5]);
    a.med = Some(10);
    let mut b = attrs(&[1, 6]);
    b.med = Some(5);
    assert_eq!(
        cmp(&a, peer(true, 1, 1), &b, peer(true, 2, 2)),
        RouteCmp::LessPreferred(Reason::Med)
    );
    // Different neighbouring AS: MED is skipped, router ID decides.
    let mut b = attrs(&[2, 6]);
    b.med = Some(5);
    assert_eq!(
        cmp(&a, peer(true, 1, 1), &b, peer(true, 2, 2)),
        RouteCmp::Preferred(Reason::RouterId)
    );
    // A missing MED is the lowest.
    let c = attrs(&[1, 7]);
    assert_eq!(
        cmp(&c, peer(true, 3, 3), &a, peer(true, 1, 1)),
        RouteCmp::Preferred(Reason::Med)
    );
}

#[test]
fn ebgp_over_ibgp() {
    let a = attrs(&[1]);
    assert_eq!(
        cmp(&a, peer(false, 1, 1), &a, peer(true, 2, 2)),
        RouteCmp::LessPreferred(Reason::EbgpOverIbgp)
    );
}

#[test]
fn originator_id_replaces_router_id_then_cluster_list_then_address() {
    let mut a = attrs(&[]);
    a.rare_mut().originator_id = Some(Ipv4Addr::new(10, 0, 0, 50));
    let b = attrs(&[]);
    // a's peer has the lower router ID, but its ORIGINATOR_ID is higher.
    assert_eq!(
        cmp(&a, peer(false, 1, 1), &b, peer(false, 2, 2)),
        RouteCmp::LessPreferred(Reason::RouterId)
    );
    let mut c = attrs(&[]);
    c.rare_mut().cluster_list = vec![Ipv4Addr::new(1, 1, 1, 1)];
    assert_eq!(
        cmp(&c, peer(false, 1, 1), &b, peer(false, 1, 2)),
        RouteCmp::LessPreferred(Reason::ClusterListLength)
    );
    assert_eq!(
        cmp(&b, peer(false, 1, 3), &b, peer(false, 1, 2)),
        RouteCmp::LessPreferred(Reason::PeerAddress)
    );
    assert_eq!(
        cmp(&b, peer(false, 1, 3), &b, peer(false, 1, 3)),
        RouteCmp::Equal
    );
}

#[test]
fn local_routes_win() {
    let mut a = attrs(&[1]);
    a.local_pref = Some(500);
    let b = attrs(&[]);
    assert_eq!(
        cmp(&b, Source::Local, &a, peer(false, 1, 1)),
        RouteCmp::Preferred(Reason::LocallyOriginated)
    );
}

#[test]
fn multipath_ignores_router_id_but_not_path_length() {
    let a = attrs(&[65001, 7]);
    let b = attrs(&[65002, 7]);
    let ca = Candidate {
        attrs: &a,
        source: peer(true, 1, 1),
    };
    let cb = Candidate {
        attrs: &b,
        source: peer(true, 2, 2),
    };
    assert!(multipath_equal(&cb, &ca));
    let c = attrs(&[65002, 8, 7]);
    let cc = Candidate {
        attrs: &c,
        source: peer(true, 3, 3),
    };
    assert!(!multipath_equal(&cc, &ca));
    let ci = Candidate {
        attrs: &a,
        source: peer(false, 4, 4),
    };
    assert!(!multipath_equal(&ci, &ca), "iBGP is not equal to eBGP");
    let cl = Candidate {
        attrs: &a,
        source: Source::Local,
    };
    assert!(!multipath_equal(&cl, &ca));
}
