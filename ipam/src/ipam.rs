//! `Ipam`: the driver that reads and writes the datastore on behalf of one
//! node. The decisions live in the pure modules (block, search, pools, gc,
//! check, show); this file holds the shared state and the read paths.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnetwork::IpNetwork;
use margay_crds::{
    AffinityState as CrdAffinityState, BlockAffinity, IPAM_CONFIG_NAME,
    IPAMBlock, IPAMConfig, IPAMConfigSpec, IPAMHandle, IPPool, IPReservation,
    Node,
};
use margay_datastore::{Datastore, ReadBatch};

use crate::addr::Family;
use crate::check::{self, Liveness, Report};
use crate::convert::{self, SoftDelete, affinity_view, handle_view};
use crate::ctx_cache::ContextCache;
use crate::ctx_view::{own_affinity, pool_facts, reserved};
use crate::error::{IpamError, Result};
use crate::gc::GcTracker;
use crate::hint::{self, BlockHints};
use crate::lock::{DEFAULT_LOCK_PATH, HostLock};
use crate::model::{PoolView, Snapshot};
use crate::pools::{PoolFacts, select_pools};
use crate::search::EMPTY_BLOCK_MIN_RECLAIM_AGE;
use crate::show::{self, Usage};

/// Tunables of an [`Ipam`].
#[derive(Debug, Clone)]
pub struct IpamOptions {
    /// The host lock file; None disables host locking (tests that
    /// simulate several nodes in one process give each its own file).
    /// The node's block hints (module `hint`) are kept next to it.
    pub lock_path: Option<PathBuf>,
    /// Longest wait for the host lock.
    pub lock_timeout: Duration,
    /// Minimum claim age before another host's empty block is reclaimed.
    pub min_reclaim_age: Duration,
}

impl Default for IpamOptions {
    fn default() -> Self {
        IpamOptions {
            lock_path: Some(PathBuf::from(DEFAULT_LOCK_PATH)),
            lock_timeout: Duration::from_secs(60),
            min_reclaim_age: EMPTY_BLOCK_MIN_RECLAIM_AGE,
        }
    }
}

/// IPAM for one node.
#[derive(Debug)]
pub struct Ipam {
    pub(crate) ds: Datastore,
    pub(crate) node: String,
    pub(crate) opts: IpamOptions,
    /// Leak candidates across `gc` passes.
    pub(crate) gc_tracker: Mutex<GcTracker>,
    /// Empty blocks of this node: first seen empty at (time, sequence).
    pub(crate) empty_since: Mutex<BTreeMap<IpNetwork, (jiff::Timestamp, u64)>>,
    /// Handles as this instance last wrote them: the first guess of a
    /// transactional allocation (a wrong guess only costs a re-read).
    pub(crate) handle_hints: Mutex<HashMap<String, IPAMHandle>>,
    /// Handles an `auto_assign` in progress took to be new without reading
    /// them (see `assign.rs`): their creation finding one that holds
    /// addresses stops with [`IpamError::HandleHolds`].
    pub(crate) assumed_new: Mutex<HashSet<String>>,
    /// The blocks this node last allocated from, as last read from or
    /// written to the hint file (or only kept here without a lock path).
    pub(crate) block_hints: Mutex<BlockHints>,
    /// The context kept across instances by a long-lived process.
    pub(crate) ctx_cache: Option<Arc<ContextCache>>,
}

/// What every allocation needs to know about the cluster.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub cfg: IPAMConfigSpec,
    pub pools: Vec<PoolFacts>,
    pub reserved: Vec<IpNetwork>,
    /// This node's live block affinities, sorted by CIDR. Read with the
    /// rest, possibly before the host lock was taken: a hint that
    /// allocation re-reads when it does not suffice.
    pub affinities: Vec<(IpNetwork, CrdAffinityState)>,
    /// The live blocks the hints named, read in the same batch; empty
    /// unless that read happened under the host lock (else another
    /// request of this node may have changed them since).
    pub hinted: Vec<IPAMBlock>,
}

impl Ctx {
    /// The pre-read block at `cidr`, if there is one.
    pub fn prefetched(&self, cidr: &IpNetwork) -> Option<&IPAMBlock> {
        let name = convert::block_name(cidr);
        self.hinted
            .iter()
            .find(|b| b.metadata.name.as_deref() == Some(name.as_str()))
    }
}

/// Outcome of trying the host lock without waiting.
pub(crate) enum LockAttempt {
    /// Taken (None: host locking is off).
    Taken(Option<HostLock>),
    /// Another request of this node holds it.
    Busy,
}

impl Ipam {
    /// IPAM acting for `node` on `ds`.
    pub fn new(
        ds: Datastore,
        node: impl Into<String>,
        opts: IpamOptions,
    ) -> Self {
        Ipam {
            ds,
            node: node.into(),
            opts,
            gc_tracker: Mutex::new(GcTracker::new()),
            empty_since: Mutex::new(BTreeMap::new()),
            handle_hints: Mutex::new(HashMap::new()),
            assumed_new: Mutex::new(HashSet::new()),
            block_hints: Mutex::new(BlockHints::default()),
            ctx_cache: None,
        }
    }

    /// Keeps the allocation context in `cache` (shared by this node's
    /// instances in one process) instead of reading it for every
    /// allocation; see [`ContextCache`]. Ignored when the cache is for
    /// another node.
    pub fn with_context_cache(mut self, cache: Arc<ContextCache>) -> Self {
        if cache.node() == self.node {
            self.ctx_cache = Some(cache);
        } else {
            tracing::warn!(node = %self.node, cache = %cache.node(),
                "IPAM context cache of another node ignored");
        }
        self
    }

    /// The node this instance allocates for.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The datastore.
    pub fn datastore(&self) -> &Datastore {
        &self.ds
    }

    /// Takes the host lock (if configured) without blocking the runtime.
    #[tracing::instrument(level = "debug", skip_all)]
    pub(crate) async fn host_lock(&self) -> Result<Option<HostLock>> {
        match self.try_host_lock()? {
            LockAttempt::Taken(lock) => Ok(lock),
            LockAttempt::Busy => self.wait_host_lock().await,
        }
    }

    /// Takes the host lock if it is free (the usual case), without a
    /// blocking-pool thread.
    pub(crate) fn try_host_lock(&self) -> Result<LockAttempt> {
        let Some(path) = &self.opts.lock_path else {
            return Ok(LockAttempt::Taken(None));
        };
        Ok(match HostLock::try_acquire(path)? {
            Some(lock) => LockAttempt::Taken(Some(lock)),
            None => LockAttempt::Busy,
        })
    }

    /// Waits for the host lock (up to the lock timeout) without blocking
    /// the runtime.
    #[tracing::instrument(level = "debug", skip_all)]
    pub(crate) async fn wait_host_lock(&self) -> Result<Option<HostLock>> {
        let Some(path) = self.opts.lock_path.clone() else {
            return Ok(None);
        };
        let timeout = self.opts.lock_timeout;
        tokio::task::spawn_blocking(move || HostLock::acquire(&path, timeout))
            .await
            .map_err(|e| {
                IpamError::BadRequest(format!("lock task failed: {e}"))
            })?
            .map(Some)
            .map_err(IpamError::from)
    }

    /// Reads IPAMConfig, the pools (with whether this node may use them),
    /// the reservations, this node's affinities and the blocks `hints`
    /// name, in one round trip.
    pub(crate) async fn load_ctx(&self, hints: &BlockHints) -> Result<Ctx> {
        Ok(self.read_ctx(hints).await?.1)
    }

    /// The context from the cache when it is current, else read (and
    /// kept). Called under the host lock, so the remembered blocks are as
    /// this node's last allocation left them (unless another process of
    /// this node wrote since: then a commit fails and the block is read).
    pub(crate) async fn cached_ctx(
        &self,
        cache: &Arc<ContextCache>,
        hints: &BlockHints,
    ) -> Result<Ctx> {
        let ticket = match cache.get(&self.ds, hints).await {
            Ok(ctx) => return Ok(ctx),
            Err(ticket) => ticket,
        };
        let (_, ctx) = self.read_ctx(hints).await?;
        cache.read_done(ticket, &ctx);
        Ok(ctx)
    }

    /// [`Ipam::load_ctx`], with the revision it was read at when the
    /// backend read it all at one.
    #[tracing::instrument(level = "debug", name = "load_ctx", skip_all)]
    async fn read_ctx(
        &self,
        hints: &BlockHints,
    ) -> Result<(Option<String>, Ctx)> {
        let mut batch = ReadBatch::new();
        let cfg = batch.get::<IPAMConfig>(IPAM_CONFIG_NAME);
        let pools = batch.list::<IPPool>("");
        let node = batch.get::<Node>(&self.node);
        let reservations = batch.list::<IPReservation>("");
        let affs = batch.list::<BlockAffinity>(&affinity_prefix(&self.node));
        let hinted: Vec<_> = hints
            .iter()
            .map(|c| batch.get::<IPAMBlock>(&convert::block_name(&c)))
            .collect();
        let mut got = self.ds.read(&batch).await?;
        // Objects that do not decode are left out of the lists (a bad
        // IPPool must not fail every ADD on every node); say which.
        for bad in got.invalid() {
            tracing::warn!(
                kind = %bad.kind, name = %bad.name, field = %bad.field,
                error = %bad.error, "IPAM: left out an invalid object"
            );
        }
        let revision = got.revision().map(str::to_string);
        let (cfg, pools, node, reservations) = (
            got.take(cfg),
            got.take(pools),
            got.take(node),
            got.take(reservations),
        );
        let hinted = hinted
            .into_iter()
            .filter_map(|slot| got.take(slot).filter(|b| !b.is_deleted()))
            .collect();
        let affinities = self.own_affinities(got.take(affs));
        let labels = node.and_then(|n| n.metadata.labels).unwrap_or_default();
        let facts = pool_facts(&pools, &labels);
        let reserved = reserved(&reservations);
        let ctx = Ctx {
            cfg: cfg.map(|c| c.spec).unwrap_or_default(),
            pools: facts,
            reserved,
            affinities,
            hinted,
        };
        Ok((revision, ctx))
    }

    /// The blocks to read with the context: from the hint file next to
    /// the host lock, else as this instance last allocated.
    pub(crate) fn load_block_hints(&self) -> BlockHints {
        let mut mem = self.block_hints.lock().expect("not poisoned");
        if let Some(path) = self.hint_path() {
            *mem = BlockHints::read(&path, &self.node);
        }
        *mem
    }

    /// Records that an allocation came from `cidr`, a block of this node
    /// (called under the host lock, so writers of one node take turns).
    /// The hint is only an optimisation: failing to store it is logged.
    pub(crate) fn remember_block(&self, cidr: IpNetwork) {
        let mut mem = self.block_hints.lock().expect("not poisoned");
        if !mem.set(cidr) {
            return;
        }
        if let Some(path) = self.hint_path()
            && let Err(e) = mem.write(&path, &self.node)
        {
            tracing::debug!(path = %path.display(), error = %e,
                "cannot store the block hint");
        }
    }

    /// Remembers `block` as written at `revision`, for the next
    /// allocation of this node (when a context cache is kept).
    pub(crate) fn block_written(&self, block: &IPAMBlock, revision: &str) {
        if let Some(cache) = &self.ctx_cache {
            let mut b = block.clone();
            b.metadata.resource_version = Some(revision.to_string());
            cache.remember_block(&b);
        }
    }

    /// Forgets the remembered copy of the block at `cidr` (it changed
    /// under us; the next allocation reads it).
    pub(crate) fn block_unknown(&self, cidr: &IpNetwork) {
        if let Some(cache) = &self.ctx_cache {
            cache.forget_block(cidr);
        }
    }

    /// This process stored `a` (or its soft deletion): when it is this
    /// node's, a kept context must show it to the next allocation.
    pub(crate) fn affinity_written(&self, a: &BlockAffinity) {
        if let Some(cache) = &self.ctx_cache
            && a.spec.node == self.node
        {
            cache.affinity_written(a.metadata.resource_version.as_deref());
        }
    }

    /// A change to this node's affinities failed midway: whether each of
    /// its writes was stored is unknown, so the next allocation reads
    /// the context from the datastore.
    pub(crate) fn affinities_unknown(&self) {
        if let Some(cache) = &self.ctx_cache {
            cache.affinity_unknown();
        }
    }

    fn hint_path(&self) -> Option<PathBuf> {
        self.opts.lock_path.as_deref().map(hint::path_for_lock)
    }

    /// This node's live affinities, freshly read.
    pub(crate) async fn read_affinities(
        &self,
    ) -> Result<Vec<(IpNetwork, CrdAffinityState)>> {
        let mut batch = ReadBatch::new();
        let affs = batch.list::<BlockAffinity>(&affinity_prefix(&self.node));
        let mut got = self.ds.read(&batch).await?;
        Ok(self.own_affinities(got.take(affs)))
    }

    /// (CIDR, state) of the live affinities in `affs` that are this
    /// node's (a name prefix also matches e.g. node1's for node10).
    fn own_affinities(
        &self,
        affs: Vec<BlockAffinity>,
    ) -> Vec<(IpNetwork, CrdAffinityState)> {
        let mut mine: Vec<_> = affs
            .iter()
            .filter_map(|a| own_affinity(&self.node, a))
            .collect();
        mine.sort_by_key(|(c, _)| *c);
        mine
    }

    /// Reads everything IPAM stores (soft-deleted objects left out, and
    /// objects that do not decode left out and listed in `invalid`).
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let (pools, nodes, res) = tokio::try_join!(
            self.ds.list::<IPPool>(),
            self.ds.list::<Node>(),
            self.ds.list::<IPReservation>(),
        )?;
        let (blocks, affs, handles) = tokio::try_join!(
            self.ds.list::<IPAMBlock>(),
            self.ds.list::<BlockAffinity>(),
            self.ds.list::<IPAMHandle>(),
        )?;
        let invalid = [
            &pools.invalid,
            &nodes.invalid,
            &res.invalid,
            &blocks.invalid,
            &affs.invalid,
            &handles.invalid,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        let blocks: Vec<IPAMBlock> = blocks
            .items
            .into_iter()
            .filter(|o| !o.is_deleted())
            .collect();
        let affs: Vec<BlockAffinity> =
            affs.items.into_iter().filter(|o| !o.is_deleted()).collect();
        let handles: Vec<IPAMHandle> = handles
            .items
            .into_iter()
            .filter(|o| !o.is_deleted())
            .collect();
        let (blocks, invalid_blocks) = convert::partition_blocks(&blocks);
        let nodes: BTreeSet<String> = nodes
            .items
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        Ok(Snapshot {
            pools: pools.items.iter().filter_map(pool_view).collect(),
            blocks,
            invalid_blocks,
            affinities: affs.iter().filter_map(affinity_view).collect(),
            handles: handles.iter().map(handle_view).collect(),
            // A datastore without any Node objects (a bare etcd used
            // only for IPAM) cannot say which nodes exist.
            nodes: (!nodes.is_empty()).then_some(nodes),
            reserved: res
                .items
                .iter()
                .flat_map(|r| r.spec.reserved_cidrs.iter())
                .filter_map(|c| parse_addr_or_net(c))
                .collect(),
            invalid,
        })
    }

    /// Reports inconsistencies without changing anything.
    pub async fn check(&self) -> Result<Report> {
        Ok(check::check(&self.snapshot().await?, None))
    }

    /// Like [`Ipam::check`], also reporting allocations whose handle starts
    /// with `prefix` but is not in `live` as leaked.
    pub async fn check_leaks(
        &self,
        prefix: &str,
        live: &BTreeSet<String>,
    ) -> Result<Report> {
        let snap = self.snapshot().await?;
        Ok(check::check(&snap, Some(Liveness { prefix, live })))
    }

    /// Like [`Ipam::check`], also reporting allocations made by `node`
    /// whose handle starts with `prefix` but has no endpoint there
    /// (`live`: the handles of the node's endpoint records).
    pub async fn check_endpoints(
        &self,
        node: &str,
        prefix: &str,
        live: &BTreeSet<String>,
    ) -> Result<Report> {
        let snap = self.snapshot().await?;
        let endpoints = check::NodeEndpoints {
            node,
            liveness: Liveness { prefix, live },
        };
        Ok(check::check_with(&snap, None, Some(endpoints)))
    }

    /// The pools an allocation of family `fam` would use on this node
    /// (`requested`: pool names or CIDRs, empty = every automatic pool),
    /// or why there is none: each candidate disabled, not selecting this
    /// node by its nodeSelector, not for workloads, or Manual. One read.
    pub async fn usable_pools(
        &self,
        fam: Family,
        requested: &[String],
    ) -> Result<Vec<PoolView>> {
        let ctx = self.load_ctx(&BlockHints::default()).await?;
        select_pools(fam, &self.node, requested, &ctx.pools)
    }

    /// Pool and block utilisation.
    pub async fn show(&self) -> Result<Usage> {
        Ok(show::usage(&self.snapshot().await?))
    }
}

/// The IPAM view of a pool; None for a pool whose CIDR does not parse
/// (validation rejects those on write, so this is only defensive).
pub(crate) fn pool_view(p: &IPPool) -> Option<PoolView> {
    Some(PoolView {
        name: p.metadata.name.clone().unwrap_or_default(),
        cidr: p.spec.cidr_net().ok()?,
        block_size: p.block_size(),
        disabled: p.spec.disabled,
    })
}

/// A name prefix shared by every affinity object of `node`: the node name
/// and '-', or for very long node names (whose affinity names keep only
/// the start of the node name, margay_crds::names) that start.
pub(crate) fn affinity_prefix(node: &str) -> String {
    /// Far below what an affinity name keeps of the node name.
    const KEPT: usize = 64;
    if node.len() <= KEPT {
        return format!("{node}-");
    }
    let mut cut = KEPT;
    while !node.is_char_boundary(cut) {
        cut -= 1;
    }
    node[..cut].to_string()
}

/// A reservation entry: a CIDR or a bare address (as a host route).
fn parse_addr_or_net(s: &str) -> Option<IpNetwork> {
    s.parse::<IpNetwork>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_names_start_with_the_node_prefix() {
        let long = "n".repeat(240);
        for node in ["node1", long.as_str()] {
            for cidr in
                ["10.1.2.0/26", "fd00:1234:5678:9abc:def0:1234:5678:9a00/122"]
            {
                let cidr: IpNetwork = cidr.parse().unwrap();
                let name = convert::affinity_name(node, &cidr);
                assert!(name.starts_with(&affinity_prefix(node)), "{name}");
            }
        }
        assert_eq!(affinity_prefix("node1"), "node1-");
    }
}
