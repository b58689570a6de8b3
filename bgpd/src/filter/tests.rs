use bgp_wire::{AsPath, AsSegment, Community, LargeCommunity, SegmentType};

use super::*;

fn n(s: &str) -> IpNetwork {
    s.parse().unwrap()
}

fn facts(attrs: &PathAttrs) -> RouteFacts<'_> {
    RouteFacts {
        kind: PeerKind::Ebgp,
        from_peer: true,
        attrs,
    }
}

fn pm(cidr: &str, op: crds::MatchOperator, lens: Option<(u8, u8)>) -> Rule {
    let rule = crds::BGPFilterRule {
        cidr: Some(cidr.into()),
        match_operator: Some(op),
        prefix_length: lens.map(|(min, max)| crds::PrefixLengthRange {
            min: Some(min),
            max: Some(max),
        }),
        ..Default::default()
    };
    compile(&rule).unwrap()
}

#[test]
fn match_operators_and_prefix_length() {
    use crds::MatchOperator::*;
    let none = PathAttrs::default();
    let f = facts(&none);
    let r = pm("10.0.0.0/8", In, None);
    assert!(r.matches(&n("10.1.0.0/16"), &f));
    assert!(!r.matches(&n("11.0.0.0/16"), &f));
    assert!(!r.matches(&n("10.0.0.0/7"), &f), "less specific is not In");
    let r = pm("10.0.0.0/8", Equal, None);
    assert!(r.matches(&n("10.0.0.0/8"), &f));
    assert!(!r.matches(&n("10.1.0.0/16"), &f));
    let r = pm("10.0.0.0/8", NotEqual, None);
    assert!(r.matches(&n("10.1.0.0/16"), &f));
    let r = pm("10.0.0.0/8", NotIn, None);
    assert!(r.matches(&n("11.0.0.0/16"), &f));
    let mut r = pm("10.0.0.0/8", In, Some((16, 24)));
    assert!(r.matches(&n("10.1.2.0/24"), &f));
    assert!(!r.matches(&n("10.1.2.128/25"), &f));
    r.peer_kind = Some(PeerKind::Ibgp);
    assert!(!r.matches(&n("10.1.2.0/24"), &f));
}

/// The case: crds said match, bgpd no match. Calico renders
/// `net ~ [ 10.0.0.0/16{16,32} ]`, which BIRD does not match.
#[test]
fn in_with_min_below_the_cidr_length_is_birds() {
    let none = PathAttrs::default();
    let r = pm("10.0.0.0/16", crds::MatchOperator::In, Some((8, 32)));
    assert!(!r.matches(&n("10.0.0.0/8"), &facts(&none)));
    assert_eq!(r.prefix.unwrap().lengths, Some((16, 32)));
}

#[test]
fn community_match_standard_and_large() {
    let mut attrs = PathAttrs {
        communities: vec![Community::new(65000, 100)],
        ..Default::default()
    };
    let pfx = n("10.0.0.0/24");
    let mut r = Rule::all(Verdict::Accept);
    r.community = Some(AnyCommunity::Standard(Community::new(65000, 100)));
    assert!(r.matches(&pfx, &facts(&attrs)));
    r.community = Some(AnyCommunity::Standard(Community::new(65000, 101)));
    assert!(!r.matches(&pfx, &facts(&attrs)));
    let big = LargeCommunity {
        global_admin: 4_200_000_000,
        local_data1: 1,
        local_data2: 2,
    };
    r.community = Some(AnyCommunity::Large(big));
    assert!(!r.matches(&pfx, &facts(&attrs)));
    attrs.rare_mut().large_communities.push(big);
    assert!(r.matches(&pfx, &facts(&attrs)));
}

#[test]
fn as_path_prefix_reads_leading_sequences_only() {
    let pfx = n("10.0.0.0/24");
    let mut r = Rule::all(Verdict::Accept);
    r.as_path_prefix = vec![65001, 65002];
    let with = |segments: Vec<AsSegment>| PathAttrs {
        as_path: Some(AsPath { segments }),
        ..Default::default()
    };
    let seq = |asns: &[u32]| AsSegment {
        kind: SegmentType::Sequence,
        asns: asns.to_vec(),
    };
    let set = |asns: &[u32]| AsSegment {
        kind: SegmentType::Set,
        asns: asns.to_vec(),
    };
    assert!(r.matches(&pfx, &facts(&with(vec![seq(&[65001, 65002, 7])]))));
    // Split over two AS_SEQUENCE segments still counts.
    assert!(r.matches(&pfx, &facts(&with(vec![seq(&[65001]), seq(&[65002])]))));
    assert!(!r.matches(&pfx, &facts(&with(vec![seq(&[65002, 65001])]))));
    assert!(
        !r.matches(&pfx, &facts(&with(vec![seq(&[65001])]))),
        "short"
    );
    assert!(
        !r.matches(&pfx, &facts(&with(vec![seq(&[65001]), set(&[65002])]))),
        "an AS_SET is unordered: no prefix match through it"
    );
    assert!(!r.matches(&pfx, &facts(&PathAttrs::default())), "no path");
}

#[test]
fn operations_add_once_and_prepend_in_written_order() {
    let mut attrs = PathAttrs {
        as_path: Some(AsPath::from_sequence(&[7])),
        ..Default::default()
    };
    let add =
        Operation::AddCommunity(AnyCommunity::Standard(Community::new(1, 2)));
    add.apply(&mut attrs);
    add.apply(&mut attrs);
    assert_eq!(attrs.communities, vec![Community::new(1, 2)]);
    Operation::PrependAsPath(vec![10, 11]).apply(&mut attrs);
    assert_eq!(attrs.as_path.unwrap().segments[0].asns, vec![10, 11, 7]);
    // A route without AS_PATH (our own) gets one.
    let mut own = PathAttrs::default();
    Operation::PrependAsPath(vec![5]).apply(&mut own);
    assert_eq!(own.as_path.unwrap().segments[0].asns, vec![5]);
}

#[test]
fn first_match_decides_and_returns_its_operations() {
    let none = PathAttrs::default();
    let mut reject = pm("10.1.0.0/16", crds::MatchOperator::In, None);
    reject.action = Verdict::Reject;
    let mut accept = Rule::all(Verdict::Accept);
    accept.operations = vec![Operation::PrependAsPath(vec![1])];
    let set = RuleSet {
        v4: vec![reject, accept],
        v6: vec![],
    };
    let f = facts(&none);
    assert_eq!(
        set.evaluate(&n("10.1.2.0/24"), &f).unwrap().action,
        Verdict::Reject
    );
    let r = set.evaluate(&n("10.2.0.0/24"), &f).unwrap();
    assert_eq!((r.action, r.operations.len()), (Verdict::Accept, 1));
    assert!(set.evaluate(&n("fd00::/64"), &f).is_none());
}
