//! The IO around [`Departed`]: thin tasks feed events to one loop that
//! owns the state and runs the clean-ups it asks for.
//!
//! ```text
//!   lease::run ----------(leader: bool)----------\
//!   kube_nodes (metadata watch of core Nodes) ----> main loop (Departed)
//!   margay_nodes (list_and_watch of Nodes) -------/    |  Action::Cleanup
//!   pods (metadata watch), blocks (list_and_watch) -/   v
//!   ticker ---------------------------------------/  cleanup task:
//!      Ipam::release_departed_node + delete Node; release_leaked task:
//!      Ipam::release_ips (handle + sequence conditions) for PodGc
//! ```

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::{StreamExt, pin_mut};
use k8s_openapi::api::core::v1::{Node as KubeNode, Pod};
use kube::api::ObjectMeta;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, watcher};
use kube::{Api, Client};
use margay_crds::{IPAMBlock, Node};
use margay_datastore::{Datastore, ListWatchEvent, WatchEvent};
use margay_ipam::block::{ATTR_NAMESPACE, ATTR_POD};
use margay_ipam::{Ipam, IpamOptions, ReleaseRequest, block_from_obj};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::departed::{Action, Departed, Event};
use crate::lease::{self, LeaseConfig};
use crate::podgc::{self, PodGc, Release};

/// Settings of the departed-node controller.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long a margay Node must lack its Kubernetes Node before it is
    /// cleaned up.
    pub grace: Duration,
    /// How long a pod must be gone before its addresses are released.
    pub pod_grace: Duration,
    /// How often due clean-ups are looked for.
    pub tick: Duration,
    pub lease: LeaseConfig,
}

/// What this instance did (for tests and logs).
#[derive(Debug, Default)]
pub struct Stats {
    /// Clean-ups completed by this instance.
    pub cleanups: AtomicUsize,
    /// Handles of gone pods released by this instance.
    pub released_handles: AtomicUsize,
}

/// Runs the controller for ever.
pub async fn run(
    client: Client,
    ds: Datastore,
    cfg: Config,
    stats: Arc<Stats>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let (gc_tx, mut gc_rx) = mpsc::unbounded_channel::<podgc::Event>();
    let (leader_tx, mut leader_rx) = watch::channel(false);
    // Stopping this future (abort, drop) stops its tasks too: a stopped
    // controller must stop renewing its Lease.
    let _tasks = AbortOnDrop(vec![
        tokio::spawn(lease::run(client.clone(), cfg.lease.clone(), leader_tx)),
        tokio::spawn(kube_nodes(client.clone(), tx.clone())),
        tokio::spawn(margay_nodes(ds.clone(), tx.clone())),
        tokio::spawn(pods(client, gc_tx.clone())),
        tokio::spawn(blocks(ds.clone(), gc_tx.clone())),
    ]);
    let mut state = Departed::new(cfg.grace);
    let mut gc = PodGc::new(cfg.pod_grace);
    let mut ticker = tokio::time::interval(cfg.tick);
    loop {
        let (ev, gc_ev) = tokio::select! {
            Some(ev) = rx.recv() => (Some(ev), None),
            Some(ev) = gc_rx.recv() => (None, Some(ev)),
            Ok(()) = leader_rx.changed() => {
                let l = *leader_rx.borrow();
                (Some(Event::Leader(l)), Some(podgc::Event::Leader(l)))
            }
            _ = ticker.tick() => (Some(Event::Tick), Some(podgc::Event::Tick)),
        };
        let now = Instant::now();
        for action in ev.map(|e| state.handle(e, now)).unwrap_or_default() {
            let Action::Cleanup(name) = action;
            tokio::spawn(cleanup(ds.clone(), name, tx.clone(), stats.clone()));
        }
        for release in gc_ev.map(|e| gc.handle(e, now)).unwrap_or_default() {
            tokio::spawn(release_leaked(
                ds.clone(),
                release,
                gc_tx.clone(),
                stats.clone(),
            ));
        }
    }
}

/// Frees the addresses of a pod that is gone, each only if it still
/// belongs to the handle with the sequence number seen.
async fn release_leaked(
    ds: Datastore,
    release: Release,
    tx: mpsc::UnboundedSender<podgc::Event>,
    stats: Arc<Stats>,
) {
    let opts = IpamOptions {
        lock_path: None,
        ..IpamOptions::default()
    };
    let reqs: Vec<ReleaseRequest> = release
        .ips
        .iter()
        .map(|(ip, sequence)| ReleaseRequest {
            ip: *ip,
            handle: Some(release.handle.clone()),
            sequence: *sequence,
        })
        .collect();
    match Ipam::new(ds, "margay-controllers", opts)
        .release_ips(&reqs)
        .await
    {
        Ok(outcomes) => {
            for o in &outcomes {
                if let Err(e) = &o.result {
                    info!(ip = %o.ip, error = %e, "pod GC left an address alone");
                }
            }
            info!(handle = %release.handle, "released the addresses of a pod that is gone");
            stats.released_handles.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            warn!(handle = %release.handle, error = %e, "pod GC release failed; retrying later")
        }
    }
    let _ = tx.send(podgc::Event::ReleaseDone(release.handle));
}

/// Pods, metadata only: (namespace, name) is all that is needed.
async fn pods(client: Client, tx: mpsc::UnboundedSender<podgc::Event>) {
    let api: Api<PartialObjectMeta<Pod>> = Api::all(client);
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    pin_mut!(stream);
    let key = |m: &ObjectMeta| Some((m.namespace.clone()?, m.name.clone()?));
    let mut listing = BTreeSet::new();
    while let Some(item) = stream.next().await {
        let ev = match item {
            Ok(watcher::Event::Init) => {
                listing.clear();
                continue;
            }
            Ok(watcher::Event::InitApply(o)) => {
                listing.extend(key(&o.metadata));
                continue;
            }
            Ok(watcher::Event::InitDone) => {
                podgc::Event::PodsListed(std::mem::take(&mut listing))
            }
            Ok(watcher::Event::Apply(o)) => match key(&o.metadata) {
                Some(k) => podgc::Event::PodAdded(k),
                None => continue,
            },
            Ok(watcher::Event::Delete(o)) => match key(&o.metadata) {
                Some(k) => podgc::Event::PodDeleted(k),
                None => continue,
            },
            Err(e) => {
                warn!(error = %e, "watching Pods");
                continue;
            }
        };
        if tx.send(ev).is_err() {
            return;
        }
    }
}

/// The pod-named allocations of one block (none for a soft-deleted or
/// unreadable block).
fn pod_allocations(b: &IPAMBlock) -> Vec<podgc::Allocation> {
    if b.spec.deleted {
        return Vec::new();
    }
    let Ok(block) = block_from_obj(b) else {
        return Vec::new();
    };
    block
        .allocations()
        .into_iter()
        .filter_map(|a| {
            Some(podgc::Allocation {
                ip: a.ip,
                handle: a.handle_id?,
                pod: (
                    a.secondary.get(ATTR_NAMESPACE)?.clone(),
                    a.secondary.get(ATTR_POD)?.clone(),
                ),
                sequence: a.sequence,
            })
        })
        .collect()
}

/// IPAM blocks, each change re-read as that block's allocations.
async fn blocks(ds: Datastore, tx: mpsc::UnboundedSender<podgc::Event>) {
    let stream = ds.list_and_watch::<IPAMBlock>();
    pin_mut!(stream);
    let mut known: BTreeSet<String> = BTreeSet::new();
    while let Some(item) = stream.next().await {
        let evs = match item {
            Ok(ListWatchEvent::Listed(list)) => {
                let now: BTreeSet<String> = list
                    .items
                    .iter()
                    .filter_map(|b| b.metadata.name.clone())
                    .collect();
                let mut evs: Vec<podgc::Event> = known
                    .difference(&now)
                    .map(|n| podgc::Event::BlockDeleted(n.clone()))
                    .collect();
                for b in &list.items {
                    if let Some(n) = &b.metadata.name {
                        evs.push(podgc::Event::Block(
                            n.clone(),
                            pod_allocations(b),
                        ));
                    }
                }
                known = now;
                evs
            }
            Ok(ListWatchEvent::Event(
                WatchEvent::Added(b) | WatchEvent::Modified(b),
            )) => {
                let Some(n) = b.metadata.name.clone() else {
                    continue;
                };
                known.insert(n.clone());
                vec![podgc::Event::Block(n, pod_allocations(&b))]
            }
            Ok(ListWatchEvent::Event(WatchEvent::Deleted(b))) => {
                let Some(n) = b.metadata.name.clone() else {
                    continue;
                };
                known.remove(&n);
                vec![podgc::Event::BlockDeleted(n)]
            }
            Err(e) => {
                warn!(error = %e, "watching IPAM blocks");
                continue;
            }
        };
        for ev in evs {
            if tx.send(ev).is_err() {
                return;
            }
        }
    }
}

/// Aborts its tasks when dropped.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Releases a departed node's IPAM, then deletes its margay Node (in this
/// order, so a crash in between is retried: the Node still exists).
async fn cleanup(
    ds: Datastore,
    name: String,
    tx: mpsc::UnboundedSender<Event>,
    stats: Arc<Stats>,
) {
    let result = async {
        let opts = IpamOptions {
            lock_path: None,
            ..IpamOptions::default()
        };
        let released = Ipam::new(ds.clone(), name.clone(), opts)
            .release_departed_node()
            .await?;
        if !released.orphaned_blocks.is_empty() {
            info!(node = %name, blocks = ?released.orphaned_blocks,
                "blocks of the departed node still hold other nodes' addresses: \
                 kept without affinity until those are released");
        }
        match ds.delete::<Node>(&name, None).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        info!(node = %name, freed_ips = released.freed_ips,
            released_blocks = released.released_blocks.len(),
            "cleaned up a departed node");
        Ok::<_, anyhow::Error>(())
    }
    .await;
    let ev = match result {
        Ok(()) => {
            stats.cleanups.fetch_add(1, Ordering::Relaxed);
            Event::CleanupDone(name)
        }
        Err(e) => {
            warn!(node = %name, error = %e, "cleaning up a departed node; retrying later");
            Event::CleanupFailed(name)
        }
    };
    let _ = tx.send(ev);
}

/// Kubernetes Nodes, metadata only (names are all that is needed).
async fn kube_nodes(client: Client, tx: mpsc::UnboundedSender<Event>) {
    // Metadata-only requests: names are all that is needed.
    let api: Api<PartialObjectMeta<KubeNode>> = Api::all(client);
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    pin_mut!(stream);
    let mut listing = BTreeSet::new();
    while let Some(item) = stream.next().await {
        let ev = match item {
            Ok(watcher::Event::Init) => {
                listing.clear();
                continue;
            }
            Ok(watcher::Event::InitApply(o)) => {
                listing.extend(o.metadata.name);
                continue;
            }
            Ok(watcher::Event::InitDone) => {
                Event::KubeListed(std::mem::take(&mut listing))
            }
            Ok(watcher::Event::Apply(o)) => match o.metadata.name {
                Some(n) => Event::KubeAdded(n),
                None => continue,
            },
            Ok(watcher::Event::Delete(o)) => match o.metadata.name {
                Some(n) => Event::KubeDeleted(n),
                None => continue,
            },
            Err(e) => {
                warn!(error = %e, "watching Kubernetes Nodes");
                continue;
            }
        };
        if tx.send(ev).is_err() {
            return;
        }
    }
}

/// margay Nodes (objects that do not decode count too: they exist).
async fn margay_nodes(ds: Datastore, tx: mpsc::UnboundedSender<Event>) {
    let stream = ds.list_and_watch::<Node>();
    pin_mut!(stream);
    while let Some(item) = stream.next().await {
        let ev = match item {
            Ok(ListWatchEvent::Listed(list)) => Event::MargayListed(
                list.items
                    .iter()
                    .filter_map(|n| n.metadata.name.clone())
                    .chain(list.invalid.iter().map(|i| i.name.clone()))
                    .collect(),
            ),
            Ok(ListWatchEvent::Event(
                WatchEvent::Added(n) | WatchEvent::Modified(n),
            )) => match n.metadata.name {
                Some(name) => Event::MargayAdded(name),
                None => continue,
            },
            Ok(ListWatchEvent::Event(WatchEvent::Deleted(n))) => {
                match n.metadata.name {
                    Some(name) => Event::MargayDeleted(name),
                    None => continue,
                }
            }
            Err(e) => {
                warn!(error = %e, "watching margay Nodes");
                continue;
            }
        };
        if tx.send(ev).is_err() {
            return;
        }
    }
}
