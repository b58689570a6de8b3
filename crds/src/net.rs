//! Network containment, the one definition every crate uses (IPAM pools
//! and blocks, bgpd's pool policy, BGPFilter `In`, pool validation).

use ipnetwork::IpNetwork;

/// Whether `inner` lies entirely inside `outer`: same address family,
/// equal or longer prefix, and `inner`'s network address inside `outer`.
/// Host bits of either side are ignored.
pub fn contains(outer: &IpNetwork, inner: &IpNetwork) -> bool {
    outer.is_ipv4() == inner.is_ipv4()
        && outer.prefix() <= inner.prefix()
        && outer.contains(inner.network())
}

/// Whether two networks share at least one address (for CIDRs, one
/// contains the other).
pub fn overlaps(a: &IpNetwork, b: &IpNetwork) -> bool {
    contains(a, b) || contains(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    #[test]
    fn containment_and_overlap() {
        let pool = net("10.0.0.0/16");
        let blk = net("10.0.3.0/26");
        assert!(contains(&pool, &blk));
        assert!(!contains(&blk, &pool));
        assert!(contains(&pool, &pool));
        // Host bits do not matter on either side.
        assert!(contains(&net("10.0.0.1/16"), &net("10.0.3.5/26")));
        assert!(overlaps(&blk, &pool) && overlaps(&pool, &blk));
        assert!(!overlaps(&net("10.1.0.0/26"), &pool));
        // Never across families, not even ::/0 over IPv4.
        assert!(!contains(&net("::/0"), &net("10.0.0.0/8")));
        assert!(!contains(&net("0.0.0.0/0"), &net("::ffff:a00:0/104")));
        assert!(contains(&net("0.0.0.0/0"), &net("10.0.0.0/8")));
        assert!(contains(&net("fd00::/48"), &net("fd00:0:0:1::/64")));
        assert!(!overlaps(&net("fd00::/64"), &net("fd00:0:0:1::/64")));
    }
}
