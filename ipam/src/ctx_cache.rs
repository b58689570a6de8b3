//! The allocation context kept by a long-lived process (the node agent)
//! across allocations, so that an allocation is one transaction instead of
//! a read and a transaction.
//!
//! What is kept, and why it is safe:
//! - The context proper (IPAMConfig, the pools and whether they select
//!   this node, the reservations, this node's affinities), kept from one
//!   list and watch per kind ([`View`]): a change anywhere costs one
//!   watch event, never a read, and the next allocation derives the
//!   context from what the watches delivered. A kind is listed again only
//!   when its watch cannot resume (compaction). Between a change and its
//!   event (milliseconds) an allocation can still see the old context:
//!   the same window as an allocation that read the context just before
//!   the change. Affinities were only ever a hint (allocation re-reads
//!   them when they do not suffice).
//! - Read-your-writes for this process's own affinity writes (claims and
//!   releases, the one part of the context it changes itself): each
//!   successful write raises a fence to its revision, and an allocation
//!   waits until the affinity watch has delivered that revision. A write
//!   whose outcome is unknown (an error midway), a watch that does not
//!   reach the fence in time, or a view not yet synced (or whose watch
//!   is failing, e.g. forbidden) make that one
//!   allocation read the context from the datastore in one transaction,
//!   as without a cache.
//! - The blocks this process last wrote or read, at their revision. Every
//!   write of a block is a compare-and-swap on that revision, so a stale
//!   copy only costs a failed commit and a re-read, never a duplicate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::stream::{self, StreamExt};
use ipnetwork::IpNetwork;
use margay_crds::IPAMBlock;
use margay_datastore::Datastore;
use tokio::sync::Notify;

use crate::ctx_view::{Feeds, Item, View};
use crate::hint::BlockHints;
use crate::ipam::Ctx;

/// Blocks remembered before the memory starts over (a node holds a few).
const BLOCK_CAPACITY: usize = 256;

/// Longest wait for the affinity watch to deliver this process's own
/// last write before an allocation reads the context instead.
const FENCE_WAIT: Duration = Duration::from_secs(2);

/// The context of one node's allocations, shared by every [`crate::Ipam`]
/// of that node made with [`crate::Ipam::with_context_cache`].
#[derive(Debug)]
pub struct ContextCache {
    node: String,
    state: Mutex<State>,
    /// Woken at every item the watches apply.
    applied: Notify,
}

#[derive(Debug)]
struct State {
    view: View,
    /// The task that feeds `view`.
    watch: Option<tokio::task::JoinHandle<()>>,
    /// The revision of this process's newest write to this node's
    /// affinities: an allocation uses the view once the affinity watch
    /// has reached it.
    fence: i64,
    /// Bumped when a write to this node's affinities ended with an
    /// unknown outcome; `read_epoch` is the last bump a read from the
    /// datastore covered.
    unknown_epoch: u64,
    read_epoch: u64,
    /// Blocks at the revision last seen, by CIDR.
    blocks: HashMap<IpNetwork, IPAMBlock>,
    stats: CacheStats,
}

/// Counts of [`ContextCache`] lookups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Allocations that used the watched context.
    pub hits: u64,
    /// Allocations that read it from the datastore (view not yet synced,
    /// own write not yet seen, or its outcome unknown).
    pub misses: u64,
}

/// Where a context read from the datastore started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadTicket {
    epoch: u64,
}

impl ContextCache {
    /// An empty cache for `node`'s allocations. Its watches start with
    /// the first allocation (within a tokio runtime).
    pub fn new(node: impl Into<String>) -> Arc<Self> {
        let node = node.into();
        Arc::new(ContextCache {
            state: Mutex::new(State {
                view: View::new(&node),
                watch: None,
                fence: 0,
                unknown_epoch: 0,
                read_epoch: 0,
                blocks: HashMap::new(),
                stats: CacheStats::default(),
            }),
            node,
            applied: Notify::new(),
        })
    }

    /// The node the cache is for.
    pub fn node(&self) -> &str {
        &self.node
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("not poisoned")
    }

    /// The context from the watches with the remembered blocks `hints`
    /// names, once they cover this process's own writes; else (not yet
    /// synced, a write of unknown outcome, the fence not reached within
    /// [`FENCE_WAIT`]) a ticket to read it from the datastore with.
    pub(crate) async fn get(
        self: &Arc<Self>,
        ds: &Datastore,
        hints: &BlockHints,
    ) -> Result<Ctx, ReadTicket> {
        let deadline = tokio::time::Instant::now() + FENCE_WAIT;
        loop {
            let applied = self.applied.notified();
            tokio::pin!(applied);
            applied.as_mut().enable();
            {
                let mut st = self.state();
                self.ensure_watch(&mut st, ds);
                let fenced =
                    st.view.affinity_revision().is_some_and(|r| r >= st.fence);
                if st.unknown_epoch != st.read_epoch
                    || !st.view.usable()
                    || (!fenced && tokio::time::Instant::now() >= deadline)
                {
                    st.stats.misses += 1;
                    return Err(ReadTicket {
                        epoch: st.unknown_epoch,
                    });
                }
                if fenced && let Some(mut ctx) = st.view.ctx() {
                    st.stats.hits += 1;
                    ctx.hinted = hints
                        .iter()
                        .filter_map(|c| st.blocks.get(&c).cloned())
                        .collect();
                    return Ok(ctx);
                }
            }
            let _ = tokio::time::timeout_at(deadline, applied).await;
        }
    }

    /// Starts the watches now (else the first allocation does), so that
    /// the first allocations find the context listed. Must be called
    /// within a tokio runtime (else it does nothing).
    pub fn start(self: &Arc<Self>, ds: &Datastore) {
        let mut st = self.state();
        self.ensure_watch(&mut st, ds);
    }

    /// Starts the watches unless they run (a finished task, e.g. after
    /// the cache's datastore went away, is started again).
    fn ensure_watch(self: &Arc<Self>, st: &mut State, ds: &Datastore) {
        if st.watch.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        st.view = View::new(&self.node);
        let feeds = st.view.feeds();
        st.watch =
            Some(runtime.spawn(watch(Arc::downgrade(self), ds.clone(), feeds)));
    }

    /// A context read from the datastore after `ticket`: it covers the
    /// writes of unknown outcome made before the ticket, and remembers
    /// the blocks it read.
    pub(crate) fn read_done(&self, ticket: ReadTicket, ctx: &Ctx) {
        let mut st = self.state();
        st.read_epoch = st.read_epoch.max(ticket.epoch);
        for b in &ctx.hinted {
            remember(&mut st.blocks, b.clone());
        }
    }

    /// The newest revision the watches have delivered (None before the
    /// first list).
    pub fn revision(&self) -> Option<i64> {
        self.state().view.revision()
    }

    /// Whether every watched kind has been listed once and no watch is
    /// failing (else allocations read the context from the datastore).
    pub fn synced(&self) -> bool {
        self.state().view.usable()
    }

    /// How often allocations used the watched context.
    pub fn stats(&self) -> CacheStats {
        self.state().stats
    }

    /// Remembers `block` as just written or read (with its revision).
    pub(crate) fn remember_block(&self, block: &IPAMBlock) {
        remember(&mut self.state().blocks, block.clone());
    }

    /// Forgets the block at `cidr` (deleted, or its state is unknown).
    pub(crate) fn forget_block(&self, cidr: &IpNetwork) {
        self.state().blocks.remove(cidr);
    }

    /// This process wrote one of this node's affinities at `revision`:
    /// the next allocation waits for the watch to deliver it. A revision
    /// that is not a number counts as an unknown outcome.
    pub(crate) fn affinity_written(&self, revision: Option<&str>) {
        match revision.and_then(|r| r.parse::<i64>().ok()) {
            Some(rev) => {
                let mut st = self.state();
                st.fence = st.fence.max(rev);
            }
            None => self.affinity_unknown(),
        }
    }

    /// A write of this process to this node's affinities failed midway
    /// (it may or may not have been stored): the next allocation reads
    /// the context from the datastore.
    pub(crate) fn affinity_unknown(&self) {
        self.state().unknown_epoch += 1;
    }

    fn apply(&self, item: Item) {
        if let Err(e) = self.state().view.apply(item) {
            tracing::debug!(error = %e, "IPAM context watch");
        }
        self.applied.notify_waiters();
    }
}

impl Drop for ContextCache {
    fn drop(&mut self) {
        if let Ok(st) = self.state.get_mut()
            && let Some(task) = &st.watch
        {
            task.abort();
        }
    }
}

fn remember(blocks: &mut HashMap<IpNetwork, IPAMBlock>, b: IPAMBlock) {
    let Ok(cidr) = b.spec.cidr.parse::<IpNetwork>() else {
        return;
    };
    if blocks.len() >= BLOCK_CAPACITY && !blocks.contains_key(&cidr) {
        blocks.clear();
    }
    blocks.insert(cidr, b);
}

/// Feeds the cache's view from one list and watch per kind until the
/// cache is dropped. The informer resumes after errors itself and lists
/// again only after a compaction.
async fn watch(cache: Weak<ContextCache>, ds: Datastore, f: Feeds) {
    let mut all = stream::select_all([
        ds.list_and_watch_with(f.config).map(Item::Config).boxed(),
        ds.list_and_watch_with(f.pools).map(Item::Pool).boxed(),
        ds.list_and_watch_with(f.reservations)
            .map(Item::Reservation)
            .boxed(),
        ds.list_and_watch_with(f.nodes).map(Item::Node).boxed(),
        ds.list_and_watch_with(f.affinities)
            .map(Item::Affinity)
            .boxed(),
    ]);
    while let Some(item) = all.next().await {
        let Some(cache) = cache.upgrade() else { return };
        cache.apply(item);
    }
}
