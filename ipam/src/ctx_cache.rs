//! The allocation context kept by a long-lived process (the node agent)
//! across allocations, so that an allocation is one transaction instead of
//! a read and a transaction.
//!
//! What is kept, and why it is safe:
//! - The context proper (IPAMConfig, the pools and whether they select
//!   this node, the reservations, this node's affinities), read at one
//!   revision. A watch on those kinds, started from that revision, marks
//!   it stale at the first change after it (this node's affinities and
//!   Node only); the next allocation reads it again. Between a change and
//!   its watch event (milliseconds) an allocation can still see the old
//!   context: the same window as an allocation that read the context just
//!   before the change. Affinities were only ever a hint (allocation
//!   re-reads them when they do not suffice).
//! - The blocks this process last wrote or read, at their revision. Every
//!   write of a block is a compare-and-swap on that revision, so a stale
//!   copy only costs a failed commit and a re-read, never a duplicate.
//!
//! A context read without a revision (a backend that cannot read a batch
//! at one revision) is never kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use futures::stream::{self, BoxStream, StreamExt};
use ipnetwork::IpNetwork;
use margay_crds::{
    BlockAffinity, IPAMBlock, IPAMConfig, IPPool, IPReservation, Node,
};
use margay_datastore::{Datastore, Object, WatchEvent};

use crate::hint::BlockHints;
use crate::ipam::Ctx;

/// Blocks remembered before the memory starts over (a node holds a few).
const BLOCK_CAPACITY: usize = 256;

/// The context of one node's allocations, shared by every [`crate::Ipam`]
/// of that node made with [`crate::Ipam::with_context_cache`].
#[derive(Debug)]
pub struct ContextCache {
    node: String,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The context and the revision it was read at.
    ctx: Option<(i64, Ctx)>,
    /// Blocks at the revision last seen, by CIDR.
    blocks: HashMap<IpNetwork, IPAMBlock>,
    /// The watch: the revision it reports changes after, and its task.
    watch: Option<(i64, tokio::task::JoinHandle<()>)>,
    /// The newest revision at which something the context depends on
    /// changed (seen by the watch).
    changed_at: i64,
    /// Bumped by [`ContextCache::invalidate`]: a context read before a
    /// bump is not stored after it.
    epoch: u64,
    stats: CacheStats,
}

impl State {
    /// The context, unless the watch has seen a change after its read or
    /// does not cover every change after it.
    fn current(&self) -> Option<&(i64, Ctx)> {
        let kept = self.ctx.as_ref()?;
        let watched = self
            .watch
            .as_ref()
            .is_some_and(|(from, task)| *from <= kept.0 && !task.is_finished());
        (watched && self.changed_at <= kept.0).then_some(kept)
    }
}

/// Counts of [`ContextCache`] lookups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Allocations that used the kept context.
    pub hits: u64,
    /// Allocations that read it (first use, or it had changed).
    pub misses: u64,
}

/// Where a context read started, to store what it read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadTicket {
    epoch: u64,
}

impl ContextCache {
    /// An empty cache for `node`'s allocations.
    pub fn new(node: impl Into<String>) -> Arc<Self> {
        Arc::new(ContextCache {
            node: node.into(),
            state: Mutex::new(State::default()),
        })
    }

    /// The node the cache is for.
    pub fn node(&self) -> &str {
        &self.node
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("not poisoned")
    }

    /// The context, if it is still current, with the blocks `hints` names
    /// that are remembered; else a ticket to read it with.
    pub(crate) fn get(&self, hints: &BlockHints) -> Result<Ctx, ReadTicket> {
        let mut st = self.state();
        let Some(mut ctx) = st.current().map(|(_, ctx)| ctx.clone()) else {
            st.stats.misses += 1;
            return Err(ReadTicket { epoch: st.epoch });
        };
        st.stats.hits += 1;
        ctx.hinted = hints
            .iter()
            .filter_map(|c| st.blocks.get(&c).cloned())
            .collect();
        Ok(ctx)
    }

    /// The revision of the kept context, if it is current (no change to
    /// what it depends on seen since).
    pub fn current_revision(&self) -> Option<i64> {
        self.state().current().map(|(rev, _)| *rev)
    }

    /// How often allocations found the context current.
    pub fn stats(&self) -> CacheStats {
        self.state().stats
    }

    /// Keeps `ctx`, read at `revision` after `ticket` was issued, and
    /// starts the watch that invalidates it if none is running. Must be
    /// called within a tokio runtime (else nothing is kept).
    pub(crate) fn store(
        self: &Arc<Self>,
        ds: &Datastore,
        ticket: ReadTicket,
        revision: &str,
        ctx: &Ctx,
    ) {
        let Ok(rev) = revision.parse::<i64>() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut st = self.state();
        if st.epoch != ticket.epoch {
            return;
        }
        for b in &ctx.hinted {
            remember(&mut st.blocks, b.clone());
        }
        let running = st.watch.as_ref().is_some_and(|(_, t)| !t.is_finished());
        if !running {
            let task = runtime.spawn(watch(
                Arc::downgrade(self),
                ds.clone(),
                rev,
                self.node.clone(),
            ));
            st.watch = Some((rev, task));
            st.changed_at = 0;
        }
        let mut kept = ctx.clone();
        kept.hinted.clear();
        st.ctx = Some((rev, kept));
    }

    /// Remembers `block` as just written or read (with its revision).
    pub(crate) fn remember_block(&self, block: &IPAMBlock) {
        remember(&mut self.state().blocks, block.clone());
    }

    /// Forgets the block at `cidr` (deleted, or its state is unknown).
    pub(crate) fn forget_block(&self, cidr: &IpNetwork) {
        self.state().blocks.remove(cidr);
    }

    /// Drops the context at once: this process is changing what it says
    /// (an affinity claimed or released), so the watch's word on it would
    /// come too late for the next allocation.
    pub(crate) fn invalidate(&self) {
        let mut st = self.state();
        st.ctx = None;
        st.epoch += 1;
    }

    /// The watch saw a change at `rev`.
    fn changed(&self, rev: i64) {
        let mut st = self.state();
        st.changed_at = st.changed_at.max(rev);
    }

    /// The watch ended: nothing kept is current any more.
    fn watch_ended(&self) {
        let mut st = self.state();
        st.ctx = None;
        st.watch = None;
    }
}

impl Drop for ContextCache {
    fn drop(&mut self) {
        if let Ok(st) = self.state.get_mut()
            && let Some((_, task)) = &st.watch
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

/// A change stream of kind `K` reduced to "the context may have changed
/// at this revision" (Some) or "not about this node" (None).
fn changes<K: Object>(
    ds: &Datastore,
    from: &str,
    relevant: impl Fn(&K) -> bool + Send + 'static,
) -> BoxStream<'static, margay_datastore::Result<Option<i64>>> {
    ds.watch::<K>(from)
        .map(move |item| {
            item.map(|ev: WatchEvent<K>| {
                // An unreadable revision counts as the newest: the context
                // is then never current under this watch (safe, slower).
                let rev =
                    ev.resource_version().parse::<i64>().unwrap_or(i64::MAX);
                relevant(ev.object()).then_some(rev)
            })
        })
        .boxed()
}

/// Marks the cache's context stale at every change after `from` to what
/// it depends on, until the cache is dropped or the watch fails (then
/// the next allocation reads the context again and starts a new watch).
async fn watch(
    cache: Weak<ContextCache>,
    ds: Datastore,
    from: i64,
    node: String,
) {
    let from = from.to_string();
    let own_node = node.clone();
    let mut all = stream::select_all([
        changes::<IPAMConfig>(&ds, &from, |_| true),
        changes::<IPPool>(&ds, &from, |_| true),
        changes::<IPReservation>(&ds, &from, |_| true),
        changes::<Node>(&ds, &from, move |n| {
            n.metadata.name.as_deref() == Some(own_node.as_str())
        }),
        changes::<BlockAffinity>(&ds, &from, move |a| a.spec.node == node),
    ]);
    while let Some(item) = all.next().await {
        let Some(cache) = cache.upgrade() else { return };
        match item {
            Ok(Some(rev)) => cache.changed(rev),
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %e, "IPAM context watch ended");
                cache.watch_ended();
                return;
            }
        }
    }
    if let Some(cache) = cache.upgrade() {
        cache.watch_ended();
    }
}
