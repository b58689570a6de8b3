//! Choosing which block CIDR of a pool to claim next (Calico
//! `ipam_block_reader_writer.go findUsableBlock` / `randomBlockGenerator`).
//!
//! Blocks are visited from a pseudo-random starting index, then in address
//! order with wrap-around. The start is seeded from an FNV-1 hash of the
//! host name: a host retrying a claim visits the same blocks in the same
//! order (so concurrent ADDs on one node converge on one new block) while
//! different nodes start in different places (so they rarely collide).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ipnetwork::IpNetwork;
use jiff::Timestamp;

use crate::addr::{self, Family};

/// An empty block of another host is reclaimed only when its claim is at
/// least this old (Calico `EmptyBlockMinReclaimAge`).
pub const EMPTY_BLOCK_MIN_RECLAIM_AGE: Duration = Duration::from_secs(60);

/// Upper bound on blocks visited in one search, so that a huge IPv6 pool
/// behind a huge reservation cannot stall an ADD.
const MAX_VISITS: u128 = 1 << 20;

/// What the search needs to know about an existing block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSummary {
    /// Owner node, if affine.
    pub host: Option<String>,
    pub empty: bool,
    pub claim_time: Option<Timestamp>,
    /// The block's sequence number when read (conditions a reclaim).
    pub sequence: u64,
}

/// A block the caller should try to claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// No block exists at this CIDR: create it.
    Fresh(IpNetwork),
    /// An empty block of another host, old enough to take over: release
    /// its affinity (conditioned on `sequence`) and then claim it.
    Reclaim {
        cidr: IpNetwork,
        owner: String,
        sequence: u64,
    },
}

/// FNV-1 (32-bit) of `s`, the hash Calico seeds its block order with.
pub fn fnv1_32(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h = h.wrapping_mul(0x0100_0193);
        h ^= u32::from(b);
    }
    h
}

/// The walk seed for `host`. Single-address blocks use `entropy` instead
/// (Calico uses the clock there): a host never re-fills such a block, so
/// a fixed order would only make every claim start on taken blocks.
pub fn walk_seed(
    host: &str,
    block_prefix: u8,
    fam: Family,
    entropy: u64,
) -> u64 {
    if block_prefix == fam.bits() {
        entropy
    } else {
        u64::from(fnv1_32(host))
    }
}

/// Every block-sized CIDR of `pool`, starting at a seeded random index and
/// wrapping around.
pub fn block_walk(
    pool: &IpNetwork,
    block_prefix: u8,
    seed: u64,
) -> impl Iterator<Item = IpNetwork> + use<> {
    let fam = Family::of_net(pool);
    let num_blocks: u128 = 1u128
        .checked_shl(u32::from(block_prefix.saturating_sub(pool.prefix())))
        .unwrap_or(u128::MAX);
    let block_len = 1u128
        .checked_shl(u32::from(fam.bits() - block_prefix))
        .unwrap_or(u128::MAX);
    let base = addr::base(pool);
    let mut s = seed;
    let r =
        (u128::from(splitmix64(&mut s)) << 64) | u128::from(splitmix64(&mut s));
    let start = r % num_blocks;
    (0..num_blocks.min(MAX_VISITS)).map(move |k| {
        let idx = (start + k) % num_blocks;
        addr::net_at(fam, base + idx * block_len, block_prefix)
    })
}

/// The first usable block of `pool` in walk order: a CIDR with no block,
/// or failing that an empty block of another host whose claim is older
/// than `min_reclaim_age`. Skips CIDRs in `skip` (already tried) and
/// blocks entirely covered by a reservation.
#[allow(clippy::too_many_arguments)]
pub fn find_usable_block(
    pool: &IpNetwork,
    block_prefix: u8,
    seed: u64,
    host: &str,
    existing: &BTreeMap<IpNetwork, BlockSummary>,
    reserved: &[IpNetwork],
    skip: &BTreeSet<IpNetwork>,
    now: Timestamp,
    min_reclaim_age: Duration,
) -> Option<Pick> {
    let mut reclaim = None;
    for cidr in block_walk(pool, block_prefix, seed) {
        if skip.contains(&cidr)
            || reserved
                .iter()
                .any(|r| margay_crds::net::contains(r, &cidr))
        {
            continue;
        }
        let Some(sum) = existing.get(&cidr) else {
            return Some(Pick::Fresh(cidr));
        };
        if reclaim.is_some() || !sum.empty {
            continue;
        }
        let Some(owner) = sum.host.as_deref().filter(|h| *h != host) else {
            continue;
        };
        let old_enough = sum.claim_time.is_none_or(|t| {
            now.duration_since(t).unsigned_abs() >= min_reclaim_age
        });
        if old_enough {
            reclaim = Some(Pick::Reclaim {
                cidr,
                owner: owner.to_string(),
                sequence: sum.sequence,
            });
        }
    }
    reclaim
}

/// One step of SplitMix64: a small, well-mixed PRNG for the start index.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    #[test]
    fn fnv1_matches_reference_vectors() {
        // FNV-1 32-bit test vectors (draft-eastlake-fnv).
        assert_eq!(fnv1_32(""), 0x811c_9dc5);
        assert_eq!(fnv1_32("a"), 0x050c_5d7e);
        assert_eq!(fnv1_32("foobar"), 0x31f0_b262);
    }

    #[test]
    fn walk_covers_every_block_once_and_depends_on_host() {
        let pool = net("10.0.0.0/24");
        let a: Vec<_> =
            block_walk(&pool, 26, walk_seed("node-a", 26, Family::V4, 0))
                .collect();
        let mut sorted = a.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 4);
        assert!(sorted.iter().all(|b| margay_crds::net::contains(&pool, b)));
        // Same host, same order.
        let again: Vec<_> =
            block_walk(&pool, 26, walk_seed("node-a", 26, Family::V4, 9))
                .collect();
        assert_eq!(a, again);
        // Many hosts start in different places.
        let starts: BTreeSet<_> = (0..32)
            .map(|i| {
                let seed = walk_seed(&format!("node-{i}"), 26, Family::V4, 0);
                block_walk(&pool, 26, seed).next().unwrap()
            })
            .collect();
        assert!(starts.len() > 1);
    }

    #[test]
    fn huge_ipv6_pool_walk_is_lazy() {
        let pool = net("fd00::/48");
        let first = block_walk(&pool, 122, 1).next().unwrap();
        assert_eq!(first.prefix(), 122);
        assert!(margay_crds::net::contains(&pool, &first));
    }

    #[test]
    fn picks_fresh_then_old_empty_foreign_block() {
        let pool = net("10.0.0.0/25");
        let now: Timestamp = "2026-01-01T00:10:00Z".parse().unwrap();
        let mut existing = BTreeMap::new();
        let sum = |host: &str, empty, t: &str| BlockSummary {
            host: Some(host.to_string()),
            empty,
            claim_time: Some(t.parse().unwrap()),
            sequence: 5,
        };
        existing
            .insert(net("10.0.0.0/26"), sum("b", true, "2026-01-01T00:09:30Z"));
        let none = BTreeSet::new();
        let age = EMPTY_BLOCK_MIN_RECLAIM_AGE;
        let pick = find_usable_block(
            &pool,
            26,
            3,
            "a",
            &existing,
            &[],
            &none,
            now,
            age,
        );
        assert_eq!(pick, Some(Pick::Fresh(net("10.0.0.64/26"))));

        existing.insert(
            net("10.0.0.64/26"),
            sum("c", false, "2026-01-01T00:00:00Z"),
        );
        // The only empty block is too young.
        let pick = find_usable_block(
            &pool,
            26,
            3,
            "a",
            &existing,
            &[],
            &none,
            now,
            age,
        );
        assert_eq!(pick, None);
        existing
            .insert(net("10.0.0.0/26"), sum("b", true, "2026-01-01T00:08:00Z"));
        let pick = find_usable_block(
            &pool,
            26,
            3,
            "a",
            &existing,
            &[],
            &none,
            now,
            age,
        );
        assert_eq!(
            pick,
            Some(Pick::Reclaim {
                cidr: net("10.0.0.0/26"),
                owner: "b".into(),
                sequence: 5
            })
        );
    }

    #[test]
    fn skips_tried_and_fully_reserved_blocks() {
        let pool = net("10.0.0.0/25");
        let now = Timestamp::UNIX_EPOCH;
        let skip = BTreeSet::from([net("10.0.0.0/26")]);
        let reserved = vec![net("10.0.0.64/26")];
        let age = EMPTY_BLOCK_MIN_RECLAIM_AGE;
        let existing = BTreeMap::new();
        let pick = find_usable_block(
            &pool, 26, 1, "a", &existing, &reserved, &skip, now, age,
        );
        assert_eq!(pick, None);
        let pick = find_usable_block(
            &pool,
            26,
            1,
            "a",
            &existing,
            &reserved,
            &BTreeSet::new(),
            now,
            age,
        );
        assert_eq!(pick, Some(Pick::Fresh(net("10.0.0.0/26"))));
    }
}
