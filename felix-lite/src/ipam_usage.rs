//! This node's IPAM usage, for the `felix_lite_ipam_*` gauges: blocks and
//! addresses in use per IPPool, as Calico's kube-controllers exports
//! `ipam_blocks` and `ipam_allocations_in_use` by pool and node.
//!
//! Why here: felix-lite already tracks this node's confirmed blocks (a
//! BlockAffinity watch, for the blackhole routes), so a scrape costs one
//! IPPool list and one read per block of this node: it grows with the
//! node's own blocks, never with the cluster. Summed over nodes in
//! Prometheus, the series give the per-pool totals kube-controllers'
//! single leader would.

use std::collections::{BTreeMap, BTreeSet};

use ipnetwork::IpNetwork;
use margay_crds::net::contains;
use margay_crds::{IPAMBlock, IPPool};
use margay_datastore::Datastore;

/// One pool's share of this node's blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolUsage {
    pub blocks: u64,
    pub in_use: u64,
}

/// Groups blocks (CIDR, addresses in use) by the pool that contains them;
/// a block in no pool (its pool was deleted) is counted under `""`, so
/// its addresses are not lost from the totals.
pub fn by_pool(
    pools: &[(String, IpNetwork)],
    blocks: &[(IpNetwork, u64)],
) -> BTreeMap<String, PoolUsage> {
    let mut out = BTreeMap::new();
    for (cidr, in_use) in blocks {
        let pool = pools
            .iter()
            .find(|(_, p)| contains(p, cidr))
            .map_or("", |(name, _)| name.as_str());
        let u: &mut PoolUsage = out.entry(pool.to_string()).or_default();
        u.blocks += 1;
        u.in_use += in_use;
    }
    out
}

/// Reads the pools and this node's blocks and groups them.
pub async fn read(
    ds: &Datastore,
    blocks: &BTreeSet<IpNetwork>,
) -> margay_datastore::Result<BTreeMap<String, PoolUsage>> {
    let pools: Vec<(String, IpNetwork)> = ds
        .list::<IPPool>()
        .await?
        .items
        .iter()
        .filter_map(|p| {
            Some((p.metadata.name.clone()?, p.spec.cidr.parse().ok()?))
        })
        .collect();
    let mut used = Vec::with_capacity(blocks.len());
    for cidr in blocks {
        let name = margay_crds::names::block_name(cidr);
        // A block whose affinity is confirmed but that is not (yet)
        // readable counts as a block with nothing in use.
        let in_use = ds.get::<IPAMBlock>(&name).await?.map_or(0, |b| {
            b.spec.allocations.iter().filter(|a| a.is_some()).count() as u64
        });
        used.push((*cidr, in_use));
    }
    Ok(by_pool(&pools, &used))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_are_counted_under_the_pool_that_contains_them() {
        let pools = [
            ("a".to_string(), net("10.0.0.0/16")),
            ("b".to_string(), net("10.1.0.0/16")),
            ("v6".to_string(), net("fd00::/48")),
        ];
        let blocks = [
            (net("10.0.0.0/26"), 3),
            (net("10.0.0.64/26"), 1),
            (net("10.1.0.0/26"), 0),
            (net("fd00::/122"), 2),
            (net("192.168.0.0/26"), 5),
        ];
        let got = by_pool(&pools, &blocks);
        let want = |blocks, in_use| PoolUsage { blocks, in_use };
        assert_eq!(got["a"], want(2, 4));
        assert_eq!(got["b"], want(1, 0));
        assert_eq!(got["v6"], want(1, 2));
        assert_eq!(got[""], want(1, 5), "a block outside every pool");
        assert_eq!(got.len(), 4);
    }
}
