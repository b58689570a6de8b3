//! The sans-IO core of felix-lite: desired routes in, observed routes in,
//! a batch of netlink operations out.
//!
//! Desired state has three sources, in this order of precedence for one
//! prefix:
//! 1. local pods: `podIP/32 dev <hostveth>` (only while the interface
//!    exists);
//! 2. blackholes for the confirmed blocks affine to this node;
//! 3. bgpd's best routes (fresh, or stale from a previous stream).
//!
//! Observed state is the main table as dumps and notifications report it.
//! A route is *ours* when it carries our protocol number, or when it is a
//! host route on an interface whose name starts with the CNI host-veth
//! prefix (the pod routes, which the CNI plugin creates as `proto boot`).
//! Everything else is *foreign*: never replaced, never deleted. A desired
//! prefix that collides with a foreign route at the same metric is not
//! programmed (a replace would overwrite the foreign route) and is reported.
//!
//! Deletes are gated per source: an unwanted route of ours is only removed
//! once that source has said what it wants. For bgpd that is the first
//! `EndOfSnapshot` (or the stale timer expiring), for blocks the first full
//! list, for pods the first scan of the endpoint directory. Until then a
//! route left by a previous felix-lite run stays, so a restart of felix-lite
//! or bgpd never empties the FIB.
//!
//! Bgpd stream life cycle:
//! - stream drops: every route moves to `stale`; stale routes stay
//!   programmed;
//! - stream back: the new snapshot fills `fresh`; at `EndOfSnapshot` stale
//!   prefixes that were not re-announced are deleted;
//! - no `EndOfSnapshot` within `stale_time` of the drop: stale routes are
//!   deleted.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;
use margay_ctlproto::RibEvent;

use crate::route::{
    KernelRoute, Route, RouteOp, Target, default_metric, is_host_prefix,
    normalize,
};

/// Reconciler settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Our route protocol number.
    pub protocol: u8,
    /// How long stale bgpd routes survive without a new `EndOfSnapshot`.
    pub stale_time: Duration,
    /// Name prefix of the CNI host-side veths (e.g. "mg").
    pub iface_prefix: String,
}

/// Which source a route of ours belongs to (decides when it may go).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Bgp,
    Blocks,
    Pods,
}

/// Desired routes by source, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub bgp: usize,
    pub stale: usize,
    pub blackhole: usize,
    pub pod: usize,
    pub conflicts: usize,
}

/// One desired prefix in conflict with a route felix-lite does not own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub dst: IpNetwork,
    pub wanted: Target,
}

/// Keeps the main table equal to the desired state. See the module comment.
#[derive(Debug)]
pub struct Reconciler {
    cfg: Config,
    /// bgpd routes of the current stream.
    fresh: HashMap<IpNetwork, Vec<IpAddr>>,
    /// bgpd routes of an earlier stream, kept until resync or expiry.
    stale: HashMap<IpNetwork, Vec<IpAddr>>,
    /// Since when routes are stale (`None`: nothing stale).
    stale_since: Option<Instant>,
    bgp_synced: bool,
    blocks: BTreeSet<IpNetwork>,
    blocks_synced: bool,
    pods: HashMap<IpNetwork, String>,
    pods_synced: bool,
    /// Endpoint scans so far (`process_pods` calls).
    pods_gen: u64,
    /// Pod routes in the kernel for no known pod, with the scan count at
    /// which they appeared. One that appeared since the last scan is kept:
    /// the CNI plugin creates a pod's host route before felix-lite's next
    /// scan reads the pod's endpoint record, and deleting it would cut the
    /// new pod off until that scan re-creates it.
    unscanned_pod_routes: HashMap<IpNetwork, u64>,
    links: HashSet<String>,
    /// Our routes in the kernel, by destination (several metrics possible).
    observed: HashMap<IpNetwork, Vec<KernelRoute>>,
    /// Destinations with a foreign route at their default metric.
    foreign: HashSet<IpNetwork>,
    /// Nothing is planned before the first dump: we would not know what to
    /// delete, and every add would be blind.
    dumped: bool,
    dirty: HashSet<IpNetwork>,
    conflicts: HashSet<IpNetwork>,
}

// ===== impl Reconciler =====

impl Reconciler {
    /// A reconciler at process start: whatever our protocol left in the
    /// kernel counts as stale since `now`.
    pub fn new(cfg: Config, now: Instant) -> Reconciler {
        Reconciler {
            cfg,
            fresh: HashMap::new(),
            stale: HashMap::new(),
            stale_since: Some(now),
            bgp_synced: false,
            blocks: BTreeSet::new(),
            blocks_synced: false,
            pods: HashMap::new(),
            pods_synced: false,
            pods_gen: 0,
            unscanned_pod_routes: HashMap::new(),
            links: HashSet::new(),
            observed: HashMap::new(),
            foreign: HashSet::new(),
            dumped: false,
            dirty: HashSet::new(),
            conflicts: HashSet::new(),
        }
    }

    // ----- bgpd stream -----

    /// The RIB stream connected (a new snapshot follows).
    pub fn process_stream_up(&mut self) {
        // Anything from a stream that never finished is stale too.
        self.mark_fresh_stale_at(None);
    }

    /// The RIB stream dropped: keep every route, marked stale.
    pub fn process_stream_down(&mut self, now: Instant) {
        self.mark_fresh_stale_at(Some(now));
    }

    fn mark_fresh_stale_at(&mut self, now: Option<Instant>) {
        if self.fresh.is_empty() {
            return;
        }
        // The stale clock runs from the first drop since the last complete
        // snapshot, so a flapping bgpd cannot keep stale routes forever.
        if self.stale_since.is_none() {
            self.stale_since = Some(now.unwrap_or_else(Instant::now));
        }
        self.stale.extend(self.fresh.drain());
    }

    /// One line of the RIB stream.
    pub fn process_rib_event(&mut self, ev: RibEvent) {
        match ev {
            RibEvent::Route { prefix, next_hops } => {
                let dst = normalize(prefix);
                match Target::via(next_hops) {
                    Some(Target::Via(hops)) => {
                        self.fresh.insert(dst, hops);
                    }
                    // No next hop: locally originated, nothing to install.
                    _ => {
                        self.fresh.remove(&dst);
                    }
                }
                self.dirty.insert(dst);
            }
            RibEvent::Withdraw { prefix } => {
                let dst = normalize(prefix);
                self.fresh.remove(&dst);
                self.stale.remove(&dst);
                self.dirty.insert(dst);
            }
            RibEvent::EndOfSnapshot => {
                let stale = std::mem::take(&mut self.stale);
                self.dirty.extend(stale.into_keys());
                self.stale_since = None;
                self.set_bgp_synced();
            }
        }
    }

    /// When the stale timer fires next, if it is armed.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.stale_since.map(|since| since + self.cfg.stale_time)
    }

    /// Timer: drop stale routes whose time is up.
    pub fn process_tick(&mut self, now: Instant) {
        let Some(deadline) = self.next_deadline() else {
            return;
        };
        if now < deadline {
            return;
        }
        let stale = std::mem::take(&mut self.stale);
        self.dirty.extend(stale.into_keys());
        self.stale_since = None;
        self.set_bgp_synced();
    }

    fn set_bgp_synced(&mut self) {
        if !self.bgp_synced {
            self.bgp_synced = true;
            self.mark_observed_dirty();
        }
    }

    // ----- datastore and pods -----

    /// The full set of confirmed blocks affine to this node.
    pub fn process_blocks(&mut self, blocks: BTreeSet<IpNetwork>) {
        let blocks: BTreeSet<IpNetwork> = blocks
            .into_iter()
            .map(normalize)
            // No blackhole for a host-sized block: it would sit on the
            // pod's own /32 and make the CNI route add fail (Calico #2624).
            .filter(|b| !is_host_prefix(b))
            .collect();
        self.dirty.extend(self.blocks.symmetric_difference(&blocks));
        self.blocks = blocks;
        if !self.blocks_synced {
            self.blocks_synced = true;
            self.mark_observed_dirty();
        }
    }

    /// The full set of local pod addresses and their host interfaces.
    pub fn process_pods(&mut self, pods: HashMap<IpNetwork, String>) {
        for (dst, iface) in &self.pods {
            if pods.get(dst) != Some(iface) {
                self.dirty.insert(*dst);
            }
        }
        for (dst, iface) in &pods {
            if self.pods.get(dst) != Some(iface) {
                self.dirty.insert(*dst);
            }
        }
        self.pods = pods;
        self.pods_gen += 1;
        // Routes kept for this scan are decided now: wanted, or deleted.
        self.dirty.extend(self.unscanned_pod_routes.keys());
        let pods = &self.pods;
        self.unscanned_pod_routes
            .retain(|dst, _| !pods.contains_key(dst));
        if !self.pods_synced {
            self.pods_synced = true;
            self.mark_observed_dirty();
        }
    }

    /// An interface appeared or vanished.
    pub fn process_link(&mut self, name: &str, present: bool) {
        let changed = if present {
            self.links.insert(name.to_string())
        } else {
            self.links.remove(name)
        };
        if changed {
            let hits = self.pods.iter().filter(|(_, i)| *i == name);
            self.dirty.extend(hits.map(|(dst, _)| *dst));
        }
    }

    // ----- kernel -----

    /// A full dump: the links that exist and every main-table route.
    pub fn process_dump(
        &mut self,
        links: impl IntoIterator<Item = String>,
        routes: Vec<KernelRoute>,
    ) {
        self.links = links.into_iter().collect();
        self.mark_observed_dirty();
        self.observed.clear();
        self.foreign.clear();
        for route in routes {
            self.observe(route);
        }
        self.mark_observed_dirty();
        self.dirty.extend(self.fresh.keys());
        self.dirty.extend(self.stale.keys());
        self.dirty.extend(self.blocks.iter());
        self.dirty.extend(self.pods.keys());
        self.dumped = true;
    }

    /// RTM_NEWROUTE notification for the main table.
    pub fn process_kernel_new(&mut self, route: KernelRoute) {
        self.dirty.insert(route.dst);
        self.observe(route);
    }

    /// RTM_DELROUTE notification for the main table.
    pub fn process_kernel_del(&mut self, route: KernelRoute) {
        self.dirty.insert(route.dst);
        self.unscanned_pod_routes.remove(&route.dst);
        if self.owner(&route).is_some() {
            if let Some(list) = self.observed.get_mut(&route.dst) {
                list.retain(|r| r.metric != route.metric);
                if list.is_empty() {
                    self.observed.remove(&route.dst);
                }
            }
        } else if route.metric == default_metric(&route.dst) {
            self.foreign.remove(&route.dst);
        }
    }

    /// The kernel refused an operation we planned. What it holds for that
    /// destination is unknown now; the next dump tells. Not retried before
    /// that, so a refusal cannot turn into a busy loop.
    pub fn process_op_failed(&mut self, op: &RouteOp) {
        if let RouteOp::Replace(r) = op
            && let Some(list) = self.observed.get_mut(&r.dst)
        {
            let metric = default_metric(&r.dst);
            list.retain(|k| k.metric != metric);
            if list.is_empty() {
                self.observed.remove(&r.dst);
            }
        }
    }

    fn observe(&mut self, route: KernelRoute) {
        let owner = self.owner(&route);
        if owner == Some(Source::Pods) && !self.pods.contains_key(&route.dst) {
            self.unscanned_pod_routes
                .entry(route.dst)
                .or_insert(self.pods_gen);
        }
        if owner.is_some() {
            let list = self.observed.entry(route.dst).or_default();
            list.retain(|r| r.metric != route.metric);
            list.push(route);
        } else if route.metric == default_metric(&route.dst) {
            self.foreign.insert(route.dst);
        }
    }

    /// Which of our sources a kernel route belongs to; `None`: foreign.
    pub fn owner(&self, route: &KernelRoute) -> Option<Source> {
        if route.protocol == self.cfg.protocol {
            return Some(match &route.target {
                Some(Target::Blackhole) => Source::Blocks,
                Some(Target::Dev(_)) => Source::Pods,
                _ => Source::Bgp,
            });
        }
        match &route.target {
            Some(Target::Dev(name))
                if is_host_prefix(&route.dst)
                    && name.starts_with(&self.cfg.iface_prefix) =>
            {
                Some(Source::Pods)
            }
            _ => None,
        }
    }

    fn mark_observed_dirty(&mut self) {
        self.dirty.extend(self.observed.keys());
    }

    // ----- output -----

    /// What one destination should look like, by precedence.
    fn desired(&self, dst: &IpNetwork) -> Option<(Source, Target)> {
        if let Some(iface) = self.pods.get(dst)
            && self.links.contains(iface)
        {
            return Some((Source::Pods, Target::Dev(iface.clone())));
        }
        if self.blocks.contains(dst) {
            return Some((Source::Blocks, Target::Blackhole));
        }
        let hops = self.fresh.get(dst).or_else(|| self.stale.get(dst))?;
        Some((Source::Bgp, Target::Via(hops.clone())))
    }

    fn synced(&self, source: Source) -> bool {
        match source {
            Source::Bgp => self.bgp_synced,
            Source::Blocks => self.blocks_synced,
            Source::Pods => self.pods_synced,
        }
    }

    /// The operations that bring every changed destination to its desired
    /// state. Observed state is updated as if they succeed; failures come
    /// back through [`Reconciler::process_op_failed`].
    pub fn plan(&mut self) -> Vec<RouteOp> {
        if !self.dumped {
            return Vec::new();
        }
        let mut ops = Vec::new();
        let dirty = std::mem::take(&mut self.dirty);
        for dst in dirty {
            self.plan_one(dst, &mut ops);
        }
        ops
    }

    fn plan_one(&mut self, dst: IpNetwork, ops: &mut Vec<RouteOp>) {
        let want = self.desired(&dst);
        let metric = default_metric(&dst);
        let mut have = self.observed.remove(&dst).unwrap_or_default();
        let mut keep = Vec::new();
        if let Some((_, target)) = &want {
            if self.foreign.contains(&dst) {
                if self.conflicts.insert(dst) {
                    tracing::warn!(
                        %dst, wanted = %target,
                        "a route of another protocol holds this prefix; \
                         not replacing it"
                    );
                }
            } else {
                self.conflicts.remove(&dst);
                let pos = have.iter().position(|r| r.metric == metric);
                let current = pos.map(|i| have.swap_remove(i));
                match current {
                    Some(r) if r.target.as_ref() == Some(target) => {
                        keep.push(r)
                    }
                    _ => {
                        ops.push(RouteOp::Replace(Route {
                            dst,
                            target: target.clone(),
                        }));
                        keep.push(KernelRoute {
                            dst,
                            metric,
                            protocol: self.cfg.protocol,
                            kind: kind_of(target),
                            target: Some(target.clone()),
                        });
                    }
                }
            }
        } else {
            self.conflicts.remove(&dst);
        }
        // Whatever else of ours sits at this destination is unwanted.
        for r in have {
            let source = self.owner(&r).unwrap_or(Source::Bgp);
            let unscanned = source == Source::Pods
                && self.unscanned_pod_routes.get(&dst) == Some(&self.pods_gen);
            if self.synced(source) && !unscanned {
                ops.push(RouteOp::Delete(r));
            } else {
                keep.push(r);
            }
        }
        if !keep.is_empty() {
            self.observed.insert(dst, keep);
        }
    }

    /// Desired routes by source.
    pub fn counts(&self) -> Counts {
        let stale = self
            .stale
            .keys()
            .filter(|k| !self.fresh.contains_key(k))
            .count();
        Counts {
            bgp: self.fresh.len(),
            stale,
            blackhole: self.blocks.len(),
            pod: self.pods.len(),
            conflicts: self.conflicts.len(),
        }
    }

    /// Whether deletes of unwanted bgp routes are allowed yet.
    pub fn bgp_synced(&self) -> bool {
        self.bgp_synced
    }
}

// ===== helper functions =====

/// `rtm_type` of a route we create with this target.
fn kind_of(target: &Target) -> u8 {
    match target {
        Target::Blackhole => libc::RTN_BLACKHOLE,
        _ => libc::RTN_UNICAST,
    }
}

#[cfg(test)]
mod tests;
