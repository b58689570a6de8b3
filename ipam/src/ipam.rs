//! `Ipam`: the driver that reads and writes the datastore on behalf of one
//! node. The decisions live in the pure modules (block, search, pools, gc,
//! check, show); this file holds the shared state and the read paths.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use ipnetwork::IpNetwork;
use margay_crds::{
    AllowedUse, AssignmentMode, BlockAffinity, IPAM_CONFIG_NAME, IPAMBlock,
    IPAMConfig, IPAMConfigSpec, IPAMHandle, IPPool, IPReservation, Node,
    Selector,
};
use margay_datastore::Datastore;

use crate::check::{self, Liveness, Report};
use crate::convert::{self, affinity_view, handle_view};
use crate::error::{IpamError, Result};
use crate::gc::GcTracker;
use crate::lock::{DEFAULT_LOCK_PATH, HostLock};
use crate::model::{PoolView, Snapshot};
use crate::pools::PoolFacts;
use crate::search::EMPTY_BLOCK_MIN_RECLAIM_AGE;
use crate::show::{self, Usage};
use crate::store::list_live;

/// Tunables of an [`Ipam`].
#[derive(Debug, Clone)]
pub struct IpamOptions {
    /// The host lock file; None disables host locking (tests that
    /// simulate several nodes in one process give each its own file).
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
}

/// What every allocation needs to know about the cluster.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub cfg: IPAMConfigSpec,
    pub pools: Vec<PoolFacts>,
    pub reserved: Vec<IpNetwork>,
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
        }
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
    /// and the reservations.
    #[tracing::instrument(level = "debug", skip_all)]
    pub(crate) async fn load_ctx(&self) -> Result<Ctx> {
        let (cfg, pools, node, reservations) = tokio::try_join!(
            self.ds.get::<IPAMConfig>(IPAM_CONFIG_NAME),
            self.ds.list::<IPPool>(),
            self.ds.get::<Node>(&self.node),
            self.ds.list::<IPReservation>(),
        )?;
        let labels = node.and_then(|n| n.metadata.labels).unwrap_or_default();
        let mut facts = Vec::new();
        for p in pools.items {
            let Some(view) = pool_view(&p) else { continue };
            let selector =
                Selector::parse(p.spec.node_selector()).map_err(|e| {
                    IpamError::Invalid {
                        what: format!("IPPool {} spec.nodeSelector", view.name),
                        message: e.to_string(),
                    }
                })?;
            let selects_node = selector.matches(&labels);
            facts.push(PoolFacts {
                selects_node,
                allows_workload: p.spec.allows(AllowedUse::Workload),
                automatic: p.spec.assignment_mode()
                    == AssignmentMode::Automatic,
                view,
            });
        }
        let reserved = reservations
            .items
            .iter()
            .flat_map(|r| r.spec.reserved_cidrs.iter())
            .filter_map(|c| parse_addr_or_net(c))
            .collect();
        Ok(Ctx {
            cfg: cfg.map(|c| c.spec).unwrap_or_default(),
            pools: facts,
            reserved,
        })
    }

    /// Reads everything IPAM stores (soft-deleted objects left out).
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let (pools, nodes, res) = tokio::try_join!(
            self.ds.list::<IPPool>(),
            self.ds.list::<Node>(),
            self.ds.list::<IPReservation>(),
        )?;
        let (blocks, affs, handles) = tokio::try_join!(
            list_live::<IPAMBlock>(&self.ds),
            list_live::<BlockAffinity>(&self.ds),
            list_live::<IPAMHandle>(&self.ds),
        )?;
        let blocks = blocks
            .iter()
            .map(|b| convert::block_from_spec(&b.spec))
            .collect::<Result<Vec<_>>>()?;
        let nodes: BTreeSet<String> = nodes
            .items
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        Ok(Snapshot {
            pools: pools.items.iter().filter_map(pool_view).collect(),
            blocks,
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

/// A reservation entry: a CIDR or a bare address (as a host route).
fn parse_addr_or_net(s: &str) -> Option<IpNetwork> {
    s.parse::<IpNetwork>().ok()
}
