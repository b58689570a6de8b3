//! bgpd's configuration inputs, kept from the datastore's watches
//! (issue 14, section 1). Sans-IO: informer items in, [`Desired`] out.
//!
//! Every pod ADD or DEL anywhere in the cluster writes an IPAMBlock, so
//! re-listing on each event made every node read the whole cluster per
//! pod event. Here each kind has a watch-fed [`Cache`]; an event changes
//! one object, and only what that object can change is derived again:
//!
//! - An IPAMBlock event recomputes that block's share of the originated
//!   routes (the addresses it lends this node) and nothing else: the
//!   block cache keeps only that share per block ([`Origin`]), never the
//!   blocks themselves. Cost: the block's allocations. A block that lends
//!   this node nothing, before and after, changes nothing downstream.
//! - A BlockAffinity event matters only when the affinity is, or was,
//!   this node's; other nodes' affinities are not kept.
//! - A Node, BGPConfiguration, BGPPeer, BGPFilter or IPPool event (rare:
//!   cluster configuration, node joins) derives the rest again with the
//!   pure [`config::derive`] over the cached objects. Cost: a clone of
//!   those objects and the derivation, O(nodes + peers + pools); no read.
//!
//! Consistency: each kind's cache is that kind's stored content at one
//! revision (a list, then each event in order; the informer lists again
//! only when the watch cannot resume: a compaction, 410 Gone). Nothing is
//! derived before every kind has been listed once. Kinds are watched
//! separately, so they are at different revisions, as the seven separate
//! lists of the re-listing pipeline were; once events stop, the derived
//! configuration is exactly what a fresh list of everything derives
//! (tested below against [`config::derive`]).
//!
//! Services and EndpointSlices (kubernetes datastore only, see
//! [`ConfigCache::watching_services`]) feed [`ServiceRoutes`]: an event
//! recomputes one Service's routes, and only a change of the announced
//! set marks the configuration changed (issue 15).
//!
//! Blast radius: objects that do not decode are kept per object by each
//! cache and reported with what derive leaves out; one that is fixed or
//! deleted stops being reported.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnetwork::IpNetwork;
use margay_crds::{
    BGPConfiguration, BGPFilter, BGPPeer, BlockAffinity, IPAMBlock, IPPool,
    Node,
};
use margay_datastore::{
    Cache, CacheItem, Change, DatastoreError, Feed, InvalidObject,
    ListWatchEvent, Object,
};

use crate::config::daemon_opts::{self, DaemonOpts};
use crate::config::{self, ConfigError, Desired, Resources};
use crate::services::{ServiceCfg, ServiceEvent, ServiceRoutes};

/// One informer item of one of the seven kinds bgpd watches.
#[derive(Debug)]
pub enum Update {
    Node(CacheItem<Node>),
    BgpConfig(CacheItem<BGPConfiguration>),
    Peer(CacheItem<BGPPeer>),
    Filter(CacheItem<BGPFilter>),
    Pool(CacheItem<IPPool>),
    Affinity(CacheItem<BlockAffinity, Option<Box<BlockAffinity>>>),
    Block(CacheItem<IPAMBlock, Origin>),
    /// A Service or EndpointSlice item (kubernetes datastore).
    Services(ServiceEvent),
}

/// What each kind's watch lists with: what [`ConfigCache`] keeps of each
/// object, projected as the list is decoded (of 20,000 blocks, the
/// addresses lent to this node; of other nodes' affinities, nothing).
pub struct Feeds {
    pub nodes: Feed<Node>,
    pub bgp_configs: Feed<BGPConfiguration>,
    pub peers: Feed<BGPPeer>,
    pub filters: Feed<BGPFilter>,
    pub pools: Feed<IPPool>,
    pub affinities: Feed<BlockAffinity, Option<Box<BlockAffinity>>>,
    pub blocks: Feed<IPAMBlock, Origin>,
}

/// What one IPAMBlock contributes to this node's originated routes: the
/// addresses it lends this node, and the block itself if its CIDR is bad.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    routes: Vec<IpNetwork>,
    invalid: Vec<InvalidObject>,
}

impl Origin {
    /// The share of `block` for `node` ([`config::originated`] of it).
    fn of(block: IPAMBlock, node: &str) -> Origin {
        let res = Resources {
            blocks: vec![block],
            ..Resources::default()
        };
        let mut invalid = Vec::new();
        let mut routes: Vec<IpNetwork> =
            config::originated(&res, node, &mut invalid)
                .into_iter()
                .collect();
        routes.sort();
        Origin { routes, invalid }
    }

    fn is_empty(&self) -> bool {
        self.routes.is_empty() && self.invalid.is_empty()
    }
}

/// The part derived from every kind but IPAMBlock.
#[derive(Debug)]
struct Base {
    desired: Result<Desired, ConfigError>,
    opts: DaemonOpts,
    /// The BGPConfigurations left out as bad (config::bgp_config::screen),
    /// and bad service CIDRs.
    screened: Vec<InvalidObject>,
}

/// The seven kinds bgpd derives its configuration from, as watched.
#[derive(Debug)]
pub struct ConfigCache {
    node: String,
    nodes: Cache<Node>,
    bgp_configs: Cache<BGPConfiguration>,
    peers: Cache<BGPPeer>,
    filters: Cache<BGPFilter>,
    pools: Cache<IPPool>,
    /// This node's affinities (`None` for another node's: boxed, so that
    /// each of the cluster's other affinities costs a pointer, not the
    /// inline size of an object, some 600 bytes).
    affinities: Cache<BlockAffinity, Option<Box<BlockAffinity>>>,
    /// Each block's share of this node's routes.
    blocks: Cache<IPAMBlock, Origin>,
    /// Names of the blocks whose [`Origin`] is not empty.
    lending: BTreeSet<String>,
    base: Option<Base>,
    /// The last good copy of each BGPConfiguration, kept in place of a bad
    /// new version (one bad object stops nothing but itself).
    last_good: BTreeMap<String, BGPConfiguration>,
    /// An event changed what [`Base`] is derived from.
    base_stale: bool,
    /// Something changed since the last [`ConfigCache::take_desired`].
    changed: bool,
    /// The Service routes, when there is a Service source.
    services: Option<ServiceRoutes>,
}

impl ConfigCache {
    /// An empty cache for node `node`.
    pub fn new(node: impl Into<String>) -> ConfigCache {
        let node = node.into();
        let mine = node.clone();
        let borrower = node.clone();
        ConfigCache {
            node,
            nodes: Cache::new(),
            bgp_configs: Cache::new(),
            peers: Cache::new(),
            filters: Cache::new(),
            pools: Cache::new(),
            affinities: Cache::projected(move |a: BlockAffinity| {
                (a.spec.node == mine).then(|| Box::new(a))
            }),
            blocks: Cache::projected(move |b| Origin::of(b, &borrower)),
            lending: BTreeSet::new(),
            base: None,
            last_good: BTreeMap::new(),
            base_stale: true,
            changed: true,
            services: None,
        }
    }

    /// Announces Service addresses from Service and EndpointSlice events
    /// ([`Update::Services`]); without it (no Service source: the etcd or
    /// file datastore) the BGPConfiguration's service fields are reported
    /// as not acted on. `kube_node` is this node's Kubernetes Node name.
    pub fn watching_services(mut self, kube_node: &str) -> ConfigCache {
        self.services = Some(ServiceRoutes::new(kube_node));
        self
    }

    /// What each kind's watch must list with
    /// ([`margay_datastore::Datastore::list_and_watch_with`]).
    pub fn feeds(&self) -> Feeds {
        Feeds {
            nodes: self.nodes.projection(),
            bgp_configs: self.bgp_configs.projection(),
            peers: self.peers.projection(),
            filters: self.filters.projection(),
            pools: self.pools.projection(),
            affinities: self.affinities.projection(),
            blocks: self.blocks.projection(),
        }
    }

    /// Applies one informer item. `Err` is an error about no object (the
    /// informer retries those itself): log it.
    pub fn apply(&mut self, u: Update) -> Result<(), DatastoreError> {
        let base = match u {
            Update::Node(i) => self.nodes.apply(i)?,
            Update::BgpConfig(i) => self.bgp_configs.apply(i)?,
            Update::Peer(i) => self.peers.apply(i)?,
            Update::Filter(i) => self.filters.apply(i)?,
            Update::Pool(i) => self.pools.apply(i)?,
            Update::Affinity(i) => return self.apply_affinity(i),
            Update::Block(i) => return self.apply_block(i),
            Update::Services(ev) => {
                if let Some(s) = self.services.as_mut()
                    && s.apply(ev)
                {
                    self.changed = true;
                }
                return Ok(());
            }
        };
        // Every change of these kinds changes the base.
        if base.is_some() {
            self.base_stale = true;
            self.changed = true;
        }
        Ok(())
    }

    /// Whether every kind has been listed (nothing is derived before).
    pub fn synced(&self) -> bool {
        self.nodes.synced()
            && self.bgp_configs.synced()
            && self.peers.synced()
            && self.filters.synced()
            && self.pools.synced()
            && self.affinities.synced()
            && self.blocks.synced()
    }

    /// Whether [`ConfigCache::rebase`] must run before
    /// [`ConfigCache::take_desired`] (an event changed its inputs).
    pub fn base_stale(&self) -> bool {
        self.base_stale
    }

    /// Asks for a new derivation of the base even without an event (the
    /// Secrets a peer's password names are read at each one).
    pub fn mark_base_stale(&mut self) {
        self.base_stale = true;
    }

    /// The inputs of [`config::derive`] but the blocks (they are derived
    /// per block), for the caller to add Secrets to and pass to
    /// [`ConfigCache::rebase`].
    pub fn base_resources(&self) -> Resources {
        Resources {
            nodes: self.nodes.items().cloned().collect(),
            bgp_configs: self.bgp_configs.items().cloned().collect(),
            peers: self.peers.items().cloned().collect(),
            filters: self.filters.items().cloned().collect(),
            pools: self.pools.items().cloned().collect(),
            affinities: self
                .affinities
                .items()
                .flatten()
                .map(|a| (**a).clone())
                .collect(),
            blocks: Vec::new(),
            secrets: None,
        }
    }

    /// Derives the base from `res` (from [`ConfigCache::base_resources`],
    /// Secrets added). A bad BGPConfiguration is replaced by its last good
    /// copy (or left out, so the built-in defaults apply) and reported.
    pub fn rebase(&mut self, mut res: Resources, router_id: Option<Ipv4Addr>) {
        let mut screened =
            config::bgp_config::screen(&mut res, &mut self.last_good);
        if let Some(s) = self.services.as_mut() {
            // Calico reads the service ranges from `default` only.
            let cfg = res
                .bgp_configs
                .iter()
                .find(|c| c.metadata.name.as_deref() == Some("default"))
                .map(|c| {
                    ServiceCfg::from_spec(&c.spec, "default", &mut screened)
                })
                .unwrap_or_default();
            s.set_config(cfg);
        }
        self.base = Some(Base {
            desired: config::derive(&res, &self.node, router_id),
            opts: daemon_opts::daemon_opts(
                &res,
                &self.node,
                self.services.is_some(),
            ),
            screened,
        });
        self.base_stale = false;
        self.changed = true;
    }

    /// The configuration, when something changed since the last call and
    /// every kind is synced and the base derived; `Err` when this node's
    /// own configuration cannot be used (no Node, no router ID, ...).
    /// Cost: a clone of the base configuration plus the routes lent by
    /// the blocks that lend this node any.
    pub fn take_desired(
        &mut self,
    ) -> Option<Result<(Desired, DaemonOpts), &ConfigError>> {
        if !self.changed || !self.synced() || self.base_stale {
            return None;
        }
        let base = self.base.as_ref()?;
        self.changed = false;
        let mut d = match &base.desired {
            Ok(d) => d.clone(),
            Err(e) => return Some(Err(e)),
        };
        for name in &self.lending {
            if let Some(o) = self.blocks.get(name) {
                d.local_routes.extend(o.routes.iter().copied());
                d.invalid.extend(o.invalid.iter().cloned());
            }
        }
        d.invalid.extend(base.screened.iter().cloned());
        if let Some(s) = &self.services {
            d.local_routes.extend(s.routes());
            d.invalid.extend(s.invalid().cloned());
        }
        // Objects that do not decode, as each list used to report them.
        d.invalid.extend(self.nodes.invalid().cloned());
        d.invalid.extend(self.bgp_configs.invalid().cloned());
        d.invalid.extend(self.peers.invalid().cloned());
        d.invalid.extend(self.filters.invalid().cloned());
        d.invalid.extend(self.pools.invalid().cloned());
        d.invalid.extend(self.affinities.invalid().cloned());
        d.invalid.extend(self.blocks.invalid().cloned());
        d.invalid
            .sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
        Some(Ok((d, base.opts.clone())))
    }

    // ===== helper methods =====

    /// An affinity changes the base only if it is, or was, this node's.
    fn apply_affinity(
        &mut self,
        item: CacheItem<BlockAffinity, Option<Box<BlockAffinity>>>,
    ) -> Result<(), DatastoreError> {
        let was_mine = subject(&item).is_some_and(|n| {
            self.affinities.get(&n).is_some_and(Option::is_some)
        });
        match self.affinities.apply(item)? {
            None => {}
            Some(Change::Listed) => {
                self.base_stale = true;
                self.changed = true;
            }
            Some(Change::Object(name)) => {
                let mine =
                    self.affinities.get(&name).is_some_and(Option::is_some);
                if was_mine || mine {
                    self.base_stale = true;
                }
                // An invalid one may have come or gone.
                self.changed = true;
            }
        }
        Ok(())
    }

    /// A block changes its own share of the routes, if any.
    fn apply_block(
        &mut self,
        item: CacheItem<IPAMBlock, Origin>,
    ) -> Result<(), DatastoreError> {
        let name = subject(&item);
        let before = name.as_ref().map(|n| self.block_state(n));
        match self.blocks.apply(item)? {
            None => {}
            Some(Change::Listed) => {
                self.lending = self.blocks_lending().collect();
                self.changed = true;
            }
            Some(Change::Object(name)) => {
                let after = self.block_state(&name);
                if after.0.is_empty() {
                    self.lending.remove(&name);
                } else {
                    self.lending.insert(name);
                }
                if before.as_ref() != Some(&after) {
                    self.changed = true;
                }
            }
        }
        Ok(())
    }

    /// What block `name` contributes now: its share and whether it is
    /// reported as not decoding.
    fn block_state(&self, name: &str) -> (Origin, bool) {
        (
            self.blocks.get(name).cloned().unwrap_or_default(),
            self.blocks.invalid_object(name).is_some(),
        )
    }

    /// Names of the blocks that contribute anything.
    fn blocks_lending(&self) -> impl Iterator<Item = String> + '_ {
        self.blocks
            .entries()
            .filter(|(_, o)| !o.is_empty())
            .map(|(n, _)| n.to_string())
    }
}

/// The name of the object an informer item is about, if one.
fn subject<K: Object, V>(item: &CacheItem<K, V>) -> Option<String> {
    match item {
        Ok(ListWatchEvent::Listed(_)) => None,
        Ok(ListWatchEvent::Event(ev)) => Some(ev.name().to_string()),
        Err(e) => e
            .invalid_object()
            .map(|o| o.name)
            .or_else(|| e.deleted_undecodable().map(str::to_string)),
    }
}

#[cfg(test)]
mod tests;
