//! The IO around [`Departed`]: thin tasks feed events to one loop that
//! owns the state and runs the clean-ups it asks for.
//!
//! ```text
//!   lease::run ----------(leader: bool)----------\
//!   kube_nodes (metadata watch of core Nodes) ----> main loop (Departed)
//!   margay_nodes (list_and_watch of Nodes) -------/    |  Action::Cleanup
//!   ticker ---------------------------------------/    v
//!                  cleanup task: Ipam::release_departed_node, delete Node
//! ```

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::{StreamExt, pin_mut};
use k8s_openapi::api::core::v1::Node as KubeNode;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, watcher};
use kube::{Api, Client};
use margay_crds::Node;
use margay_datastore::{Datastore, ListWatchEvent, WatchEvent};
use margay_ipam::{Ipam, IpamOptions};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::departed::{Action, Departed, Event};
use crate::lease::{self, LeaseConfig};

/// Settings of the departed-node controller.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long a margay Node must lack its Kubernetes Node before it is
    /// cleaned up.
    pub grace: Duration,
    /// How often due clean-ups are looked for.
    pub tick: Duration,
    pub lease: LeaseConfig,
}

/// What this instance did (for tests and logs).
#[derive(Debug, Default)]
pub struct Stats {
    /// Clean-ups completed by this instance.
    pub cleanups: AtomicUsize,
}

/// Runs the controller for ever.
pub async fn run(
    client: Client,
    ds: Datastore,
    cfg: Config,
    stats: Arc<Stats>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let (leader_tx, mut leader_rx) = watch::channel(false);
    // Stopping this future (abort, drop) stops its tasks too: a stopped
    // controller must stop renewing its Lease.
    let _tasks = AbortOnDrop(vec![
        tokio::spawn(lease::run(client.clone(), cfg.lease.clone(), leader_tx)),
        tokio::spawn(kube_nodes(client, tx.clone())),
        tokio::spawn(margay_nodes(ds.clone(), tx.clone())),
    ]);
    let mut state = Departed::new(cfg.grace);
    let mut ticker = tokio::time::interval(cfg.tick);
    loop {
        let ev = tokio::select! {
            Some(ev) = rx.recv() => ev,
            Ok(()) = leader_rx.changed() => Event::Leader(*leader_rx.borrow()),
            _ = ticker.tick() => Event::Tick,
        };
        for action in state.handle(ev, Instant::now()) {
            let Action::Cleanup(name) = action;
            tokio::spawn(cleanup(ds.clone(), name, tx.clone(), stats.clone()));
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
        if !released.kept_blocks.is_empty() {
            warn!(node = %name, kept = ?released.kept_blocks,
                "blocks of the departed node still hold other nodes' addresses: left affine");
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
