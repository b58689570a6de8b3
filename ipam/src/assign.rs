//! Allocation (Calico `autoAssign`; a chosen address: `assign_ip`).
//!
//! Per family: the node's confirmed blocks first; then new blocks claimed
//! for the node (up to maxBlocksPerHost, when autoAllocateBlocks allows);
//! then, unless strictAffinity, addresses borrowed from other nodes'
//! blocks. Dual stack is all-or-nothing: when one family fails, whatever
//! the other got is released again.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use margay_crds::{AffinityState, IPAMBlock, IPAMHandle};

use crate::addr::{self, Family};
use crate::block::{ATTR_NODE, ATTR_TIMESTAMP};
use crate::claim::{AffinityRelease, Claim, ReleaseCond};
use crate::convert::{self, block_name, handle_name};
use crate::error::{IpamError, Result};
use crate::hint::BlockHints;
use crate::ipam::{Ctx, Ipam, LockAttempt};
use crate::lock::HostLock;
use crate::model::PoolView;
use crate::pools::{describe, select_pools};
use crate::search::{self, BlockSummary, Pick};
use crate::store::{DATASTORE_RETRIES, get_live, list_live, retries_exhausted};

/// An allocation request.
#[derive(Debug, Clone, Default)]
pub struct AssignArgs {
    /// Owner of the addresses, e.g. `k8s-pod-network.<containerID>`.
    pub handle: String,
    pub num_v4: usize,
    pub num_v6: usize,
    /// Pools to use (names or CIDRs); empty = every usable pool.
    pub v4_pools: Vec<String>,
    pub v6_pools: Vec<String>,
    /// Secondary attributes (pod, namespace, ...). `node` and `timestamp`
    /// are filled in.
    pub attrs: BTreeMap<String, String>,
}

/// One allocated address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignedIp {
    pub ip: IpAddr,
    /// The block it came from.
    pub block: IpNetwork,
    /// Name of the pool the block belongs to.
    pub pool: String,
}

/// Result of [`Ipam::auto_assign`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assigned {
    pub ipv4: Vec<AssignedIp>,
    pub ipv6: Vec<AssignedIp>,
}

impl Ipam {
    /// Allocates `num_v4` IPv4 and `num_v6` IPv6 addresses to
    /// `args.handle`, or returns those it already holds (a repeated
    /// request; see `existing`). Either everything requested is allocated
    /// or the request releases what it took before the error returns,
    /// retrying that release while the datastore is unavailable.
    #[tracing::instrument(level = "debug", skip_all, fields(handle = %args.handle))]
    pub async fn auto_assign(&self, args: &AssignArgs) -> Result<Assigned> {
        let name = handle_name(&args.handle)?;
        if args.num_v4 == 0 && args.num_v6 == 0 {
            return Err(IpamError::BadRequest(
                "nothing to assign: both num_v4 and num_v6 are 0".into(),
            ));
        }
        let hints = self.load_block_hints();
        let (_lock, ctx) = match (&self.ctx_cache, self.try_host_lock()?) {
            // A kept context costs no read: wait for the lock, then ask.
            (Some(cache), attempt) => {
                let lock = match attempt {
                    LockAttempt::Taken(lock) => lock,
                    LockAttempt::Busy => self.wait_host_lock().await?,
                };
                (lock, self.cached_ctx(cache, &hints).await?)
            }
            (None, attempt) => self.lock_and_load_ctx(attempt, &hints).await?,
        };
        // A repeated request for one handle gets what it already holds.
        // Outside the undo below: those addresses are another request's.
        // With transactions the handle is not read first unless this
        // instance wrote it (a retry through the same agent): the commit
        // creates it on condition that it is absent, so a handle written
        // elsewhere fails the first commit whole (HandleHolds, nothing
        // taken) and is read then. That saves a datastore round trip on
        // the critical path of every new attachment.
        let unread =
            self.ds.has_transactions() && self.handle_hint(&name).is_none();
        if unread {
            self.assumed_new
                .lock()
                .expect("not poisoned")
                .insert(name.clone());
        } else if let Some(existing) =
            self.existing_assignment(args, &ctx).await?
        {
            return Ok(existing);
        }
        let mut attrs = args.attrs.clone();
        attrs.insert(ATTR_NODE.into(), self.node.clone());
        attrs.insert(ATTR_TIMESTAMP.into(), jiff::Timestamp::now().to_string());

        let mut out = Assigned::default();
        let res = async {
            if args.num_v4 > 0 {
                out.ipv4 = self
                    .assign_family(
                        Family::V4,
                        args.num_v4,
                        &args.handle,
                        &args.v4_pools,
                        &attrs,
                        &ctx,
                    )
                    .await?;
            }
            if args.num_v6 > 0 {
                out.ipv6 = self
                    .assign_family(
                        Family::V6,
                        args.num_v6,
                        &args.handle,
                        &args.v6_pools,
                        &attrs,
                        &ctx,
                    )
                    .await?;
            }
            Ok::<_, IpamError>(())
        }
        .await;
        if unread {
            self.assumed_new.lock().expect("not poisoned").remove(&name);
        }
        if let Err(IpamError::HandleHolds { .. }) = res {
            return match self.existing_assignment(args, &ctx).await? {
                Some(existing) => Ok(existing),
                // Emptied or deleted in between: ask again.
                None => Err(retries_exhausted::<IPAMHandle>("create", &name)),
            };
        }
        if let Err(e) = res {
            // Both or neither: undo whatever this request took. Release by
            // handle also frees a partial allocation of the failed family.
            self.undo_assignment(&args.handle).await;
            return Err(e);
        }
        Ok(out)
    }

    /// The host lock and the context read from the datastore. With the
    /// lock free (the usual case) it is taken first, so the context, and
    /// the hinted blocks in it, are read under it. When another request
    /// of this node holds it, the read overlaps the wait instead: what it
    /// says about this node's blocks is re-read if it does not suffice,
    /// and the hinted blocks are dropped (that request is probably
    /// changing them right now).
    async fn lock_and_load_ctx(
        &self,
        attempt: LockAttempt,
        hints: &BlockHints,
    ) -> Result<(Option<HostLock>, Ctx)> {
        Ok(match attempt {
            LockAttempt::Taken(lock) => (lock, self.load_ctx(hints).await?),
            LockAttempt::Busy => {
                let none = BlockHints::default();
                let (lock, mut ctx) = tokio::try_join!(
                    self.wait_host_lock(),
                    self.load_ctx(&none)
                )?;
                ctx.hinted.clear();
                (lock, ctx)
            }
        })
    }

    /// Allocates `num` addresses of one family.
    async fn assign_family(
        &self,
        fam: Family,
        num: usize,
        handle: &str,
        requested: &[String],
        attrs: &BTreeMap<String, String>,
        ctx: &Ctx,
    ) -> Result<Vec<AssignedIp>> {
        let pools = select_pools(fam, &self.node, requested, &ctx.pools)?;
        let mut got = Vec::new();

        // 1. Blocks already affine to this node: those the context read
        // (perhaps before the host lock), then, if they were not enough,
        // any that a request of this node claimed meanwhile.
        let in_pools = |affs: &[(IpNetwork, AffinityState)]| {
            affs.iter()
                .filter(|(c, _)| pool_of(&pools, c).is_some())
                .copied()
                .collect::<Vec<_>>()
        };
        let mut mine = in_pools(&ctx.affinities);
        // The block last allocated from first: it was read with the
        // context, so allocating there needs no further read.
        mine.sort_by_key(|(c, _)| ctx.prefetched(c).is_none());
        let mut visited = BTreeSet::new();
        for round in 0..2 {
            if round == 1 {
                if got.len() == num {
                    break;
                }
                mine = in_pools(&self.read_affinities().await?);
            }
            self.fill_from_own(
                &mine,
                &mut visited,
                num,
                &mut got,
                handle,
                attrs,
                ctx,
                &pools,
            )
            .await?;
        }

        // 2. New blocks for this node.
        let max = ctx.cfg.max_blocks_per_host();
        let mut held = mine.len() as u32;
        let mut at_cap = false;
        let mut tried = BTreeSet::new();
        while got.len() < num && ctx.cfg.auto_allocate_blocks {
            if held >= max {
                at_cap = true;
                break;
            }
            let Some((pick, pool)) =
                self.pick_block(&pools, &tried, ctx).await?
            else {
                break;
            };
            let cidr = match pick {
                Pick::Fresh(c) => c,
                Pick::Reclaim {
                    cidr,
                    owner,
                    sequence,
                } => {
                    let cond = ReleaseCond {
                        require_empty: true,
                        sequence: Some(sequence),
                    };
                    let done =
                        self.release_affinity(&owner, cidr, cond).await?;
                    if done != AffinityRelease::BlockDeleted {
                        tried.insert(cidr);
                        continue;
                    }
                    cidr
                }
            };
            tried.insert(cidr);
            if self.claim_block(cidr).await? == Claim::Conflict {
                continue;
            }
            held += 1;
            let need = num - got.len();
            let pools1 = std::slice::from_ref(pool);
            got.extend(
                self.alloc_in_block(
                    cidr, need, handle, attrs, ctx, true, pools1,
                )
                .await?,
            );
        }

        // 3. Borrow from other nodes' blocks.
        if got.len() < num && !ctx.cfg.strict_affinity {
            let blocks = list_live::<IPAMBlock>(&self.ds).await?;
            let seed = u64::from(search::fnv1_32(&self.node));
            let mut others: Vec<IpNetwork> = blocks
                .iter()
                .filter(|b| b.spec.affine_host() != Some(self.node.as_str()))
                .filter_map(|b| b.spec.cidr.parse().ok())
                .filter(|c| pool_of(&pools, c).is_some())
                .collect();
            // Spread borrowers over the blocks instead of piling onto the
            // lowest one.
            others
                .sort_by_key(|c| (addr::base(c) as u64) ^ seed.rotate_left(17));
            for cidr in others {
                if got.len() == num {
                    break;
                }
                let need = num - got.len();
                got.extend(
                    self.alloc_in_block(
                        cidr, need, handle, attrs, ctx, false, &pools,
                    )
                    .await?,
                );
            }
        }

        if got.len() < num {
            if at_cap && ctx.cfg.strict_affinity {
                return Err(IpamError::MaxBlocksPerHost {
                    family: fam,
                    node: self.node.clone(),
                    max,
                });
            }
            return Err(IpamError::PoolExhausted {
                family: fam,
                node: self.node.clone(),
                pools: describe(&pools),
            });
        }
        Ok(got)
    }

    /// Step 1 of [`Ipam::assign_family`]: allocates from the node's own
    /// blocks in `mine` not yet `visited` until `got` holds `num`.
    #[allow(clippy::too_many_arguments)]
    async fn fill_from_own(
        &self,
        mine: &[(IpNetwork, AffinityState)],
        visited: &mut BTreeSet<IpNetwork>,
        num: usize,
        got: &mut Vec<AssignedIp>,
        handle: &str,
        attrs: &BTreeMap<String, String>,
        ctx: &Ctx,
        pools: &[PoolView],
    ) -> Result<()> {
        for (cidr, state) in mine {
            if got.len() == num {
                break;
            }
            if !visited.insert(*cidr) {
                continue;
            }
            if *state == AffinityState::PendingDeletion {
                continue;
            }
            if *state == AffinityState::Pending
                && self.claim_block(*cidr).await? == Claim::Conflict
            {
                continue; // An interrupted claim that lost its block.
            }
            let need = num - got.len();
            got.extend(
                self.alloc_in_block(
                    *cidr, need, handle, attrs, ctx, true, pools,
                )
                .await?,
            );
        }
        Ok(())
    }

    /// The next block to claim in any of `pools`, in pool order.
    async fn pick_block<'p>(
        &self,
        pools: &'p [PoolView],
        tried: &BTreeSet<IpNetwork>,
        ctx: &Ctx,
    ) -> Result<Option<(Pick, &'p PoolView)>> {
        let list = self.ds.list::<IPAMBlock>().await?;
        let blocks = list.items;
        // Names of invalid blocks: their CIDR is taken (by a block nobody
        // may use) whatever their spec says.
        let invalid: BTreeSet<String> = blocks
            .iter()
            .filter(|b| convert::block_from_obj(b).is_err())
            .filter_map(|b| b.metadata.name.clone())
            .collect();
        let mut existing: BTreeMap<IpNetwork, BlockSummary> = blocks
            .iter()
            .filter_map(|b| {
                let model = convert::block_from_obj(b).ok()?;
                let summary = BlockSummary {
                    host: model.host().map(str::to_string),
                    // A soft-deleted block is on its way out: not usable
                    // until it is gone, so never "empty" for reclaim.
                    empty: model.is_empty() && !b.spec.deleted,
                    claim_time: b
                        .spec
                        .affinity_claim_time
                        .as_deref()
                        .and_then(|t| t.parse().ok()),
                    sequence: model.sequence_number,
                };
                Some((model.cidr, summary))
            })
            .collect();
        // A stored block that does not decode is never allocated from nor
        // claimed: its CIDR counts as taken by nobody we could reclaim.
        for bad in &list.invalid {
            if let Some(cidr) = convert::block_cidr_of_name(&bad.name) {
                existing.insert(
                    cidr,
                    BlockSummary {
                        host: Some(String::new()),
                        empty: false,
                        claim_time: None,
                        sequence: 0,
                    },
                );
            }
        }
        let now = jiff::Timestamp::now();
        let mut tried = tried.clone();
        for pool in pools {
            let fam = Family::of_net(&pool.cidr);
            let entropy = u64::try_from(now.as_nanosecond()).unwrap_or(0);
            let seed =
                search::walk_seed(&self.node, pool.block_size, fam, entropy);
            while let Some(pick) = search::find_usable_block(
                &pool.cidr,
                pool.block_size,
                seed,
                &self.node,
                &existing,
                &ctx.reserved,
                &tried,
                now,
                self.opts.min_reclaim_age,
            ) {
                let cidr = match &pick {
                    Pick::Fresh(c) => *c,
                    Pick::Reclaim { cidr, .. } => *cidr,
                };
                if !invalid.contains(&block_name(&cidr)) {
                    return Ok(Some((pick, pool)));
                }
                tried.insert(cidr);
            }
        }
        Ok(None)
    }

    /// Allocates up to `need` addresses from the block at `cidr` with a
    /// CAS loop. With `own`, only if the block is affine to this node
    /// (re-creating it if our confirmed affinity outlived it).
    #[allow(clippy::too_many_arguments)]
    #[tracing::instrument(level = "debug", skip_all, fields(%cidr))]
    async fn alloc_in_block(
        &self,
        cidr: IpNetwork,
        need: usize,
        handle: &str,
        attrs: &BTreeMap<String, String>,
        ctx: &Ctx,
        own: bool,
        pools: &[PoolView],
    ) -> Result<Vec<AssignedIp>> {
        let name = block_name(&cidr);
        let pool = pool_of(pools, &cidr)
            .map(|p| p.name.clone())
            .unwrap_or_default();
        // Read with the context when a hint named it; a stale copy fails
        // the compare-and-swap and the loop reads it again.
        let mut prefetched = ctx.prefetched(&cidr).filter(|_| own).cloned();
        for _ in 0..DATASTORE_RETRIES {
            let current = match prefetched.take() {
                Some(b) => Some(b),
                None => get_live::<IPAMBlock>(&self.ds, &name).await?,
            };
            let Some(mut obj) = current else {
                if own && self.claim_block(cidr).await? == Claim::Claimed {
                    continue; // Rebuilt after a crash mid-claim.
                }
                return Ok(Vec::new());
            };
            // A block breaking its invariants only harms itself: never
            // allocate from it, try the next one.
            let mut b = match convert::block_from_obj(&obj) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "skipping an invalid block");
                    return Ok(Vec::new());
                }
            };
            if own && b.host() != Some(self.node.as_str()) {
                return Ok(Vec::new());
            }
            let ips = b.allocate(need, handle, attrs, &ctx.reserved);
            if ips.is_empty() {
                return Ok(Vec::new());
            }
            let n = ips.len() as u32;
            convert::block_into_spec(&b, &mut obj.spec);
            if self.write_allocation(handle, cidr, n, &obj).await? {
                if own {
                    self.remember_block(cidr);
                }
                return Ok(ips
                    .into_iter()
                    .map(|ip| AssignedIp {
                        ip,
                        block: cidr,
                        pool: pool.clone(),
                    })
                    .collect());
            }
        }
        Err(retries_exhausted::<IPAMBlock>("update", &name))
    }

    /// Stores an allocation of `n` addresses in `block` (already changed,
    /// with the resourceVersion it was read at) and counts them in the
    /// handle. Ok(false) when the block changed since it was read (read
    /// it again and retry). With transactions both writes are one atomic
    /// commit; otherwise the handle goes first, so that a crash in between
    /// leaves a handle that over-counts rather than an address nobody
    /// can find.
    pub(crate) async fn write_allocation(
        &self,
        handle: &str,
        cidr: IpNetwork,
        n: u32,
        block: &IPAMBlock,
    ) -> Result<bool> {
        if self.ds.has_transactions() {
            return self.commit_allocation(handle, cidr, n, block).await;
        }
        self.handle_add(handle, cidr, n).await?;
        match self.ds.update(block).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_conflict() || e.is_not_found() => {
                self.handle_remove(handle, cidr, n).await?;
                Ok(false)
            }
            // The write may or may not have happened: the handle keeps
            // counting this block so that release by handle finds it.
            Err(e) => Err(e.into()),
        }
    }
}

/// The pool (among `pools`) that contains block `cidr`.
fn pool_of<'p>(
    pools: &'p [PoolView],
    cidr: &IpNetwork,
) -> Option<&'p PoolView> {
    pools
        .iter()
        .find(|p| margay_crds::net::contains(&p.cidr, cidr))
}
