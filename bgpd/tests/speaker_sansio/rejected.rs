//! Routes a peer announces that import refuses: `prefixes_received` is
//! what the peer announces now (accepted + refused), and the control
//! socket names each refused prefix with the reason, until the peer
//! withdraws it, announces it again acceptably, or the session ends.

use margay_crds::bgpfilter::{MatchOperator, PrefixMatch};

use super::*;

/// A peer whose import accepts 192.0.2.0/24 only; the speaker has no
/// IPPool, so anything else is refused.
fn speaker_importing_one() -> Speaker {
    let mut p = peer([10, 0, 0, 2], 65001);
    p.policy.import = RuleSet {
        v4: vec![Rule {
            prefix: Some(PrefixMatch {
                cidr: "192.0.2.0/24".parse().unwrap(),
                op: MatchOperator::Equal,
                lengths: None,
            }),
            ..Rule::all(Verdict::Accept)
        }],
        v6: vec![],
    };
    speaker(vec![p])
}

fn withdraw(prefix: &str) -> Vec<u8> {
    let mut out = BytesMut::new();
    bgp_wire::pack_unreach(
        Family::IPV4_UNICAST,
        &[Nlri::new(prefix.parse().unwrap())],
        &DecodeCxt::four_octet(),
        &mut out,
    )
    .unwrap();
    out.to_vec()
}

fn counts(s: &Speaker) -> (u64, u64) {
    let st = &s.peer_status()[0];
    (st.prefixes_received, st.prefixes_accepted)
}

#[test]
fn refused_routes_are_counted_once_and_named_until_withdrawn() {
    let mut s = speaker_importing_one();
    let c = establish(&mut s, [10, 0, 0, 2], 65001);
    s.on_frame(c.0, c.1, &announce("192.0.2.0/24"));
    s.on_frame(c.0, c.1, &announce("198.51.100.0/24"));
    assert_eq!(counts(&s), (2, 1));
    // Announced again (a refresh, an attribute change): still one prefix
    // each, not a running total.
    s.on_frame(c.0, c.1, &announce("198.51.100.0/24"));
    s.on_frame(c.0, c.1, &announce("192.0.2.0/24"));
    assert_eq!(counts(&s), (2, 1));

    let inside = "198.51.100.7".parse().ok();
    let r = s.rejected_routes(inside);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].peer, "Global_10.0.0.2");
    assert_eq!(r[0].prefix.to_string(), "198.51.100.0/24");
    assert!(
        r[0].reason.contains("outside every enabled IPPool"),
        "{r:?}"
    );
    assert!(s.rejected_routes("192.0.2.1".parse().ok()).is_empty());
    assert_eq!(s.rejected_routes(None).len(), 1);

    s.on_frame(c.0, c.1, &withdraw("198.51.100.0/24"));
    assert_eq!(counts(&s), (1, 1));
    assert!(s.rejected_routes(None).is_empty());

    // Refused again, then the session ends: nothing is left behind.
    s.on_frame(c.0, c.1, &announce("198.51.100.0/24"));
    assert_eq!(s.rejected_routes(None).len(), 1);
    s.on_closed(c.0, c.1, "reset");
    assert!(s.rejected_routes(None).is_empty());
}
