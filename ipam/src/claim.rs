//! Claiming and releasing block affinity: the two-phase protocol of
//! calico.md section 2.
//!
//! Claim: (1) BlockAffinity `pending`, (2) create the IPAMBlock with
//! `affinity: host:<node>` and its claim time, (3) affinity `confirmed`.
//! A pending affinity never means ownership (bgpd does not advertise it),
//! so a crash between the steps leaves nothing that routes traffic. If the
//! block already exists and belongs to another host, our pending affinity
//! is deleted and the claim reports a conflict so the caller tries another
//! block.
//!
//! Release: affinity `confirmed -> pendingDeletion`; the block deleted
//! (soft then hard, conditioned on it still being empty / unchanged) or,
//! when a non-empty block may be released, its affinity cleared by CAS
//! (its allocations stay, and the release of the last one deletes it);
//! affinity deleted.

use ipnetwork::IpNetwork;
use margay_crds::{
    AFFINITY_TYPE_HOST, AffinityState, BlockAffinity, BlockAffinitySpec,
    IPAMBlock,
};

use crate::block::Block;
use crate::convert::{self, affinity_name, block_name, meta};
use crate::error::Result;
use crate::ipam::Ipam;
use crate::store::{
    Created, DATASTORE_RETRIES, create_or_get, delete_shared, get_live,
    retries_exhausted,
};

/// Result of a claim attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The block exists, is affine to us, and our affinity is confirmed.
    Claimed,
    /// Another host owns the block; try a different one.
    Conflict,
}

/// What a release of affinity must find to go ahead.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReleaseCond {
    /// The block must hold no allocation.
    pub require_empty: bool,
    /// The block's sequence number must still be this (a reclaim decided
    /// on an earlier read).
    pub sequence: Option<u64>,
}

impl Ipam {
    /// Claims the block at `cidr` for this node.
    #[tracing::instrument(level = "debug", skip_all, fields(%cidr))]
    pub(crate) async fn claim_block(&self, cidr: IpNetwork) -> Result<Claim> {
        let res = self.claim_block_steps(cidr).await;
        if res.is_err() {
            self.affinities_unknown();
        }
        res
    }

    async fn claim_block_steps(&self, cidr: IpNetwork) -> Result<Claim> {
        let aff_name = affinity_name(&self.node, &cidr);
        self.set_affinity_pending(&aff_name, cidr).await?;

        let now = jiff::Timestamp::now();
        let seed = u64::try_from(now.as_nanosecond()).unwrap_or_default();
        let block = Block::new(cidr, Some(&self.node), seed);
        let obj = convert::new_block_object(&block, &now.to_string());
        if let Created::Exists(existing) = create_or_get(&self.ds, &obj).await?
            && existing.spec.affine_host() != Some(self.node.as_str())
        {
            tracing::debug!(%cidr, owner = ?existing.spec.affinity,
                "block claimed by another host");
            self.delete_affinity(&aff_name).await?;
            return Ok(Claim::Conflict);
        }
        // Either we created it or it is ours from an interrupted claim.
        self.set_affinity_state(&aff_name, AffinityState::Confirmed)
            .await?;
        Ok(Claim::Claimed)
    }

    /// Step 1: our affinity exists and is pending (or already confirmed,
    /// which an interrupted earlier claim may have left).
    async fn set_affinity_pending(
        &self,
        name: &str,
        cidr: IpNetwork,
    ) -> Result<()> {
        let obj = BlockAffinity {
            metadata: meta(name.to_string()),
            spec: BlockAffinitySpec {
                state: AffinityState::Pending,
                node: self.node.clone(),
                type_: AFFINITY_TYPE_HOST.to_string(),
                cidr: cidr.to_string(),
                deleted: false,
            },
        };
        match create_or_get(&self.ds, &obj).await? {
            Created::New(stored) => {
                self.affinity_written(&stored);
                Ok(())
            }
            Created::Exists(a) if a.spec.state == AffinityState::Confirmed => {
                Ok(())
            }
            Created::Exists(_) => {
                self.set_affinity_state(name, AffinityState::Pending).await
            }
        }
    }

    /// Sets the state of an affinity with a CAS loop.
    pub(crate) async fn set_affinity_state(
        &self,
        name: &str,
        state: AffinityState,
    ) -> Result<()> {
        for _ in 0..DATASTORE_RETRIES {
            let Some(mut a) = get_live::<BlockAffinity>(&self.ds, name).await?
            else {
                return Err(crate::error::IpamError::Invalid {
                    what: format!("BlockAffinity {name}"),
                    message: "disappeared during a claim or release".into(),
                });
            };
            if a.spec.state == state {
                return Ok(());
            }
            a.spec.state = state;
            match self.ds.update(&a).await {
                Ok(stored) => {
                    self.affinity_written(&stored);
                    return Ok(());
                }
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(retries_exhausted::<BlockAffinity>("update", name))
    }

    /// Deletes an affinity (soft, then hard), whatever its state.
    pub(crate) async fn delete_affinity(&self, name: &str) -> Result<()> {
        for _ in 0..DATASTORE_RETRIES {
            let Some(a) = get_live::<BlockAffinity>(&self.ds, name).await?
            else {
                return Ok(());
            };
            match delete_shared(&self.ds, &a).await {
                Ok(marked) => {
                    if let Some(marked) = marked {
                        self.affinity_written(&marked);
                    }
                    return Ok(());
                }
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(retries_exhausted::<BlockAffinity>("delete", name))
    }

    /// Releases `node`'s affinity for `cidr` (Calico's
    /// `releaseBlockAffinity`): pendingDeletion; then the block is deleted
    /// if it is empty, or else (only when `cond` allows a non-empty block)
    /// loses its affinity with a CAS write and keeps its allocations,
    /// which are other nodes' to release (the last release deletes the
    /// affinity-less block); then the affinity is deleted. An affinity for
    /// a block that is affine to another node, or to none, is stale and
    /// deleted ([`AffinityRelease::Stale`]). Returns
    /// [`AffinityRelease::Refused`] (and puts the affinity back to
    /// confirmed) when the block does not meet `cond`.
    pub(crate) async fn release_affinity(
        &self,
        node: &str,
        cidr: IpNetwork,
        cond: ReleaseCond,
    ) -> Result<AffinityRelease> {
        let res = self.release_affinity_steps(node, cidr, cond).await;
        if res.is_err() && node == self.node {
            self.affinities_unknown();
        }
        res
    }

    async fn release_affinity_steps(
        &self,
        node: &str,
        cidr: IpNetwork,
        cond: ReleaseCond,
    ) -> Result<AffinityRelease> {
        self.block_unknown(&cidr);
        let aff_name = affinity_name(node, &cidr);
        let have_affinity = get_live::<BlockAffinity>(&self.ds, &aff_name)
            .await?
            .is_some();
        if have_affinity {
            self.set_affinity_state(&aff_name, AffinityState::PendingDeletion)
                .await?;
        }
        let name = block_name(&cidr);
        let mut outcome = None;
        for _ in 0..DATASTORE_RETRIES {
            let Some(mut obj) = get_live::<IPAMBlock>(&self.ds, &name).await?
            else {
                outcome = Some(AffinityRelease::BlockDeleted);
                break;
            };
            let b = convert::block_from_obj(&obj)?;
            if b.host() != Some(node) {
                // Another node's block, or an affinity-less one: our
                // affinity is stale (a claim that lost, or a release cut
                // short after the block lost its affinity).
                self.delete_affinity(&aff_name).await?;
                return Ok(AffinityRelease::Stale);
            }
            let empty_ok = !cond.require_empty || b.is_empty();
            let seq_ok = cond.sequence.is_none_or(|s| s == b.sequence_number);
            if !(empty_ok && seq_ok) {
                if have_affinity {
                    self.set_affinity_state(
                        &aff_name,
                        AffinityState::Confirmed,
                    )
                    .await?;
                }
                return Ok(AffinityRelease::Refused);
            }
            let written = if b.is_empty() {
                delete_shared(&self.ds, &obj)
                    .await
                    .map(|_| AffinityRelease::BlockDeleted)
            } else {
                // The CAS on the block read orders this against every
                // allocation and release in it: none is lost.
                obj.spec.affinity = None;
                obj.spec.affinity_claim_time = None;
                self.ds
                    .update(&obj)
                    .await
                    .map(|_| AffinityRelease::AffinityCleared)
            };
            match written {
                Ok(o) => {
                    outcome = Some(o);
                    break;
                }
                Err(e) if e.is_conflict() || e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let Some(outcome) = outcome else {
            return Err(retries_exhausted::<IPAMBlock>("delete", &name));
        };
        self.delete_affinity(&aff_name).await?;
        tracing::info!(%cidr, node, ?outcome, "released block affinity");
        Ok(outcome)
    }
}

/// What [`Ipam::release_affinity`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AffinityRelease {
    /// The block did not meet the condition: the affinity is confirmed
    /// again and the block untouched.
    Refused,
    /// The block is another node's, or has no affinity: the (stale)
    /// affinity is deleted, the block untouched.
    Stale,
    /// The block was empty (or already gone) and is deleted.
    BlockDeleted,
    /// The block still holds allocations: it stays, without affinity.
    AffinityCleared,
}
