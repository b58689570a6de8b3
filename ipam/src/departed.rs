//! Releasing what a departed node held (Calico kube-controllers' IPAM
//! controller, on a deleted Kubernetes Node): the node's allocations and
//! its block affinities, never what another node owns.

use std::collections::BTreeSet;
use std::time::Duration;

use ipnetwork::IpNetwork;
use margay_crds::BlockAffinity;

use crate::claim::ReleaseCond;
use crate::error::Result;
use crate::ipam::Ipam;
use crate::store::list_live;

/// What [`Ipam::release_departed_node`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DepartedRelease {
    /// Addresses of the node freed (wherever their block is).
    pub freed_ips: usize,
    /// Blocks whose affinity (and block) was released.
    pub released_blocks: Vec<IpNetwork>,
    /// Blocks left affine to the node because they still hold another
    /// node's (borrowed) addresses: a later pass releases them once
    /// those are freed.
    pub kept_blocks: Vec<IpNetwork>,
}

impl Ipam {
    /// Releases everything the node of this instance (a departed node)
    /// holds: first every allocation it made (those whose `node`
    /// attribute names it, in any block; each release conditioned on the
    /// handle and sequence number read, so a re-allocated address is left
    /// alone), then each of its block affinities whose block is now empty
    /// (conditioned on it still being empty). Allocations made by other
    /// nodes, borrowed from its blocks, are never touched: such a block
    /// stays, affine, and is counted in `kept_blocks`. Idempotent.
    pub async fn release_departed_node(&self) -> Result<DepartedRelease> {
        let stats = self.gc("", &BTreeSet::new(), Duration::ZERO).await?;
        let mut out = DepartedRelease {
            freed_ips: stats.released_ips,
            ..DepartedRelease::default()
        };
        let mut cidrs: Vec<IpNetwork> = list_live::<BlockAffinity>(&self.ds)
            .await?
            .iter()
            .filter(|a| a.spec.node == self.node)
            .filter_map(|a| a.spec.cidr.parse().ok())
            .collect();
        cidrs.sort();
        cidrs.dedup();
        let cond = ReleaseCond {
            require_empty: true,
            sequence: None,
        };
        for cidr in cidrs {
            if self.release_affinity(&self.node, cidr, cond).await? {
                out.released_blocks.push(cidr);
            } else {
                out.kept_blocks.push(cidr);
            }
        }
        Ok(out)
    }
}
