//! Releasing what a departed node held (Calico's node deletion:
//! `RemoveIPAMHost`, which releases the host's affinities without
//! requiring its blocks to be empty): the node's allocations and its
//! block affinities, never what another node owns.

use std::collections::BTreeSet;
use std::time::Duration;

use ipnetwork::IpNetwork;

use crate::claim::{AffinityRelease, ReleaseCond};
use crate::error::Result;
use crate::ipam::Ipam;

/// What [`Ipam::release_departed_node`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DepartedRelease {
    /// Addresses of the node freed (wherever their block is).
    pub freed_ips: usize,
    /// Blocks whose affinity was released and that were deleted (empty).
    pub released_blocks: Vec<IpNetwork>,
    /// Blocks whose affinity was released but that still hold other
    /// nodes' (borrowed) addresses: they stay, affine to no node, until
    /// the release of their last address deletes them.
    pub orphaned_blocks: Vec<IpNetwork>,
}

impl Ipam {
    /// Releases everything the node of this instance (a departed node)
    /// holds: first every allocation it made (those whose `node`
    /// attribute names it, in any block; each release conditioned on the
    /// handle and sequence number read, so a re-allocated address is left
    /// alone), then every one of its block affinities, as Calico's
    /// `ReleaseHostAffinities(host, mustBeEmpty=false)` does: an empty
    /// block is deleted; a block that still holds another node's
    /// (borrowed) addresses loses its affinity by a CAS write and keeps
    /// those allocations, which no node can claim the block over and
    /// whose borrowers keep advertising their /32s. Idempotent.
    pub async fn release_departed_node(&self) -> Result<DepartedRelease> {
        let stats = self.gc("", &BTreeSet::new(), Duration::ZERO).await?;
        let mut out = DepartedRelease {
            freed_ips: stats.released_ips,
            ..DepartedRelease::default()
        };
        // Only this node's affinities are read (a name-prefix list).
        let mut cidrs: Vec<IpNetwork> = self
            .read_affinities()
            .await?
            .into_iter()
            .map(|(cidr, _)| cidr)
            .collect();
        cidrs.dedup();
        let cond = ReleaseCond {
            require_empty: false,
            sequence: None,
        };
        for cidr in cidrs {
            match self.release_affinity(&self.node, cidr, cond).await? {
                AffinityRelease::BlockDeleted => out.released_blocks.push(cidr),
                AffinityRelease::AffinityCleared => {
                    out.orphaned_blocks.push(cidr);
                }
                // Not its block (any more): only the stale affinity went.
                AffinityRelease::Stale | AffinityRelease::Refused => {}
            }
        }
        Ok(out)
    }
}
