//! `View`: what allocation needs of the cluster (the [`Ctx`] minus the
//! pre-read blocks), kept from one watch per kind (sans-IO: list and
//! watch items in, context out).
//!
//! Each kind is a [`Cache`] that keeps only what the context uses of
//! each object: the IPAMConfig and the pools whole (a few objects), of a
//! reservation its CIDRs, of a Node its labels if it is this node, of an
//! affinity its CIDR and state if it is this node's and live. So a change
//! to another node's affinity or Node costs one event and changes
//! nothing kept, and a pool change costs one event and the next
//! allocation derives the pool facts again (O(pools) CPU, no read).
//!
//! Consistency: each kind is as the datastore had it at one revision
//! (its last event or list); different kinds can be at different
//! revisions for the milliseconds between a change and its event, the
//! same window as a context read just before the change. The one fact
//! this process changes itself, its own affinities, is fenced by the
//! caller ([`crate::ContextCache`]): an allocation waits until the
//! affinity watch has reached this process's last write.

use std::collections::BTreeMap;

use ipnetwork::IpNetwork;
use margay_crds::{
    AffinityState, AllowedUse, AssignmentMode, BlockAffinity, IPAM_CONFIG_NAME,
    IPAMConfig, IPPool, IPReservation, Node, Selector,
};
use margay_datastore::{Cache, CacheItem, Feed, Result};

use crate::convert::SoftDelete;
use crate::ipam::{Ctx, pool_view};
use crate::pools::PoolFacts;

/// One item of one of the five watches the context is kept from.
#[derive(Debug)]
pub(crate) enum Item {
    Config(CacheItem<IPAMConfig>),
    Pool(CacheItem<IPPool>),
    Reservation(CacheItem<IPReservation, Vec<IpNetwork>>),
    Node(CacheItem<Node, Option<Labels>>),
    Affinity(CacheItem<BlockAffinity, Option<OwnAffinity>>),
}

type Labels = BTreeMap<String, String>;
type OwnAffinity = (IpNetwork, AffinityState);

/// What each watch lists with (what [`View`] keeps of each object).
pub(crate) struct Feeds {
    pub config: Feed<IPAMConfig>,
    pub pools: Feed<IPPool>,
    pub reservations: Feed<IPReservation, Vec<IpNetwork>>,
    pub nodes: Feed<Node, Option<Labels>>,
    pub affinities: Feed<BlockAffinity, Option<OwnAffinity>>,
}

/// The context as the watches have delivered it.
#[derive(Debug)]
pub(crate) struct View {
    config: Cache<IPAMConfig>,
    pools: Cache<IPPool>,
    reservations: Cache<IPReservation, Vec<IpNetwork>>,
    /// Only this node's labels are kept (None for every other Node).
    nodes: Cache<Node, Option<Labels>>,
    /// Only this node's live affinities are kept.
    affinities: Cache<BlockAffinity, Option<OwnAffinity>>,
    /// Per kind (in [`Item`]'s order): its last item was an error about
    /// no object (e.g. the watch is forbidden), so its cache may no longer
    /// follow the datastore.
    broken: [bool; 5],
    node: String,
}

impl View {
    /// An empty view of `node`'s context, not yet synced.
    pub fn new(node: &str) -> Self {
        let me = node.to_string();
        let me2 = node.to_string();
        View {
            config: Cache::new(),
            pools: Cache::new(),
            reservations: Cache::projected(|r: IPReservation| {
                reserved(std::iter::once(&r))
            }),
            nodes: Cache::projected(move |n: Node| {
                (n.metadata.name.as_deref() == Some(me.as_str()))
                    .then(|| n.metadata.labels.unwrap_or_default())
            }),
            affinities: Cache::projected(move |a: BlockAffinity| {
                own_affinity(&me2, &a)
            }),
            broken: [false; 5],
            node: node.to_string(),
        }
    }

    /// What each kind's watch must list with.
    pub fn feeds(&self) -> Feeds {
        Feeds {
            config: self.config.projection(),
            pools: self.pools.projection(),
            reservations: self.reservations.projection(),
            nodes: self.nodes.projection(),
            affinities: self.affinities.projection(),
        }
    }

    /// Applies one watch item. Errors about no object (the informer
    /// retries those) are returned for the caller to log.
    pub fn apply(&mut self, item: Item) -> Result<()> {
        let (kind, res) = match item {
            Item::Config(i) => (0, self.config.apply(i).map(drop)),
            Item::Pool(i) => (1, self.pools.apply(i).map(drop)),
            Item::Reservation(i) => (2, self.reservations.apply(i).map(drop)),
            Item::Node(i) => (3, self.nodes.apply(i).map(drop)),
            Item::Affinity(i) => (4, self.affinities.apply(i).map(drop)),
        };
        self.broken[kind] = res.is_err();
        res
    }

    /// Whether every kind has been listed once and no watch is failing:
    /// only then does the view follow the datastore.
    pub fn usable(&self) -> bool {
        self.synced() && !self.broken.contains(&true)
    }

    /// Whether every kind has been listed once.
    pub fn synced(&self) -> bool {
        self.config.synced()
            && self.pools.synced()
            && self.reservations.synced()
            && self.nodes.synced()
            && self.affinities.synced()
    }

    /// The revision the affinities are at (None before their first list,
    /// or when the backend's revisions are not numbers).
    pub fn affinity_revision(&self) -> Option<i64> {
        self.affinities.revision()?.parse().ok()
    }

    /// The newest revision any watch has delivered.
    pub fn revision(&self) -> Option<i64> {
        [
            self.config.revision(),
            self.pools.revision(),
            self.reservations.revision(),
            self.nodes.revision(),
            self.affinities.revision(),
        ]
        .into_iter()
        .flatten()
        .filter_map(|r| r.parse::<i64>().ok())
        .max()
    }

    /// The context (without pre-read blocks), once every kind is synced.
    pub fn ctx(&self) -> Option<Ctx> {
        if !self.usable() {
            return None;
        }
        let labels = self
            .nodes
            .get(&self.node)
            .and_then(Option::as_ref)
            .cloned()
            .unwrap_or_default();
        let mut affinities: Vec<_> =
            self.affinities.items().filter_map(|a| *a).collect();
        affinities.sort_by_key(|(c, _)| *c);
        Some(Ctx {
            cfg: self
                .config
                .get(IPAM_CONFIG_NAME)
                .map(|c| c.spec.clone())
                .unwrap_or_default(),
            pools: pool_facts(self.pools.items(), &labels),
            reserved: self.reservations.items().flatten().copied().collect(),
            affinities,
            hinted: Vec::new(),
        })
    }
}

/// (CIDR, state) of `a` if it is `node`'s and live (a name prefix would
/// also match node10's for node1: the spec says whose it is).
pub(crate) fn own_affinity(
    node: &str,
    a: &BlockAffinity,
) -> Option<OwnAffinity> {
    if a.is_deleted() || a.spec.node != node {
        return None;
    }
    Some((a.spec.cidr.parse().ok()?, a.spec.state))
}

/// The reserved CIDRs of `reservations` (entries that do not parse are
/// left out).
pub(crate) fn reserved<'a>(
    reservations: impl IntoIterator<Item = &'a IPReservation>,
) -> Vec<IpNetwork> {
    reservations
        .into_iter()
        .flat_map(|r| r.spec.reserved_cidrs.iter())
        .filter_map(|c| c.parse::<IpNetwork>().ok())
        .collect()
}

/// The facts of each pool for the node with `labels`; a pool with a bad
/// selector is left out (and logged), not every pool.
pub(crate) fn pool_facts<'a>(
    pools: impl IntoIterator<Item = &'a IPPool>,
    labels: &Labels,
) -> Vec<PoolFacts> {
    let mut facts = Vec::new();
    for p in pools {
        let Some(view) = pool_view(p) else { continue };
        let selector = match Selector::parse(p.spec.node_selector()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(
                    kind = "IPPool", name = %view.name,
                    field = "spec.nodeSelector", error = %e,
                    "IPAM: left out an invalid IP pool"
                );
                continue;
            }
        };
        facts.push(PoolFacts {
            selects_node: selector.matches(labels),
            allows_workload: p.spec.allows(AllowedUse::Workload),
            automatic: p.spec.assignment_mode() == AssignmentMode::Automatic,
            namespace_selector: !margay_crds::validate::unsupported::ip_pool(
                &p.spec,
            )
            .is_empty(),
            view,
        });
    }
    facts
}
