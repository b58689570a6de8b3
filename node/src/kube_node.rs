//! The node's Kubernetes Node (core/v1): its labels copied onto the
//! margay Node and kept in sync, and its InternalIP addresses for the
//! `kubernetes-internal-ip` autodetection method.
//!
//! ```text
//!   apiserver --watch (fieldSelector metadata.name=NODE)--> sync_labels
//!        --register (CAS update of the margay Node)--> datastore
//! ```
//!
//! Only this node's object is watched, so the cost is one event per
//! change of this node, whatever the cluster's size.
//!
//! How labels combine (the same precedence on every sync):
//! 1. `--label` flags win: the agent's own configuration.
//! 2. Then the Kubernetes Node's labels.
//! 3. Then labels set on the margay Node by other means (margayctl).
//!
//! Which keys came from Kubernetes is recorded in the annotation
//! [`KUBE_LABELS_ANNOTATION`] (as Calico records them in
//! `projectcalico.org/kube-labels`), so a label removed from the
//! Kubernetes Node is removed from the margay Node too, while a label an
//! operator set on the margay Node is never removed by a sync.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use futures::{StreamExt, pin_mut};
use k8s_openapi::api::core::v1::Node as KubeNode;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::watch_object;
use kube::{Api, Client};
use margay_datastore::Datastore;
use tracing::{info, warn};

use crate::register::{Registration, register};

/// Annotation of the margay Node: the JSON object of the labels last
/// copied from the Kubernetes Node.
pub const KUBE_LABELS_ANNOTATION: &str = "margay.io/kube-labels";

/// The labels a Node should carry: `current` with the keys previously
/// copied from Kubernetes (`previous_kube`) that Kubernetes no longer has
/// removed, then `kube`'s labels, then `cli`'s (see the module docs for
/// the precedence).
pub fn merge_labels(
    current: &BTreeMap<String, String>,
    previous_kube: &BTreeMap<String, String>,
    kube: &BTreeMap<String, String>,
    cli: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out = current.clone();
    for k in previous_kube.keys() {
        if !kube.contains_key(k) && !cli.contains_key(k) {
            out.remove(k);
        }
    }
    out.extend(kube.iter().map(|(k, v)| (k.clone(), v.clone())));
    out.extend(cli.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// The labels recorded in the annotation; an unreadable annotation
/// (edited by hand) counts as empty, so nothing is removed on its word.
pub fn previous_kube_labels(
    annotations: Option<&BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let Some(text) = annotations.and_then(|a| a.get(KUBE_LABELS_ANNOTATION))
    else {
        return BTreeMap::new();
    };
    serde_json::from_str(text).unwrap_or_else(|e| {
        warn!(annotation = KUBE_LABELS_ANNOTATION, error = %e,
            "unreadable annotation on the Node: no label is removed on its word");
        BTreeMap::new()
    })
}

/// The JSON written into the annotation.
pub fn kube_labels_annotation(kube: &BTreeMap<String, String>) -> String {
    serde_json::to_string(kube).expect("a string map serializes")
}

/// The InternalIP addresses the Kubernetes Node reports (its
/// status.addresses), in order.
pub fn internal_ips(node: &KubeNode) -> Vec<IpAddr> {
    node.status
        .iter()
        .flat_map(|s| s.addresses.iter().flatten())
        .filter(|a| a.type_ == "InternalIP")
        .filter_map(|a| a.address.parse().ok())
        .collect()
}

/// Reads the Kubernetes Node `name`; `None` when it does not exist (yet).
pub async fn get(
    client: &Client,
    name: &str,
) -> Result<Option<KubeNode>, kube::Error> {
    Api::<KubeNode>::all(client.clone()).get_opt(name).await
}

/// Keeps the margay Node's labels in sync with the Kubernetes Node's, for
/// ever: watches the one Node `reg.name` (list + watch with a field
/// selector, resumed and re-listed by kube's watcher with backoff) and
/// re-registers whenever its labels change. A deleted Kubernetes Node
/// leaves the labels alone (the departed-node controller removes the
/// margay Node). `reg.kube_labels` holds the labels already applied.
pub async fn sync_labels(client: Client, ds: Datastore, mut reg: Registration) {
    let api = Api::<KubeNode>::all(client);
    let stream = watch_object(api, &reg.name).default_backoff();
    pin_mut!(stream);
    while let Some(item) = stream.next().await {
        let node = match item {
            Ok(Some(node)) => node,
            Ok(None) => continue,
            Err(e) => {
                warn!(node = %reg.name, error = %e, "watching the Kubernetes Node");
                continue;
            }
        };
        let labels = node.metadata.labels.clone().unwrap_or_default();
        if reg.kube_labels.as_ref() == Some(&labels) {
            continue;
        }
        reg.kube_labels = Some(labels);
        // Retry until it lands: a later event restarts from here anyway.
        loop {
            match register(&ds, &reg, Duration::from_secs(30)).await {
                Ok(_) => {
                    info!(node = %reg.name, "Kubernetes labels synced");
                    break;
                }
                Err(e) => {
                    warn!(node = %reg.name, error = %e, "syncing labels; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn kube_labels_are_added_changed_and_removed() {
        let none = BTreeMap::new();
        let first = merge_labels(&none, &none, &m(&[("rack", "r1")]), &none);
        assert_eq!(first, m(&[("rack", "r1")]));
        let changed = merge_labels(
            &first,
            &m(&[("rack", "r1")]),
            &m(&[("rack", "r2")]),
            &none,
        );
        assert_eq!(changed, m(&[("rack", "r2")]));
        let removed =
            merge_labels(&changed, &m(&[("rack", "r2")]), &none, &none);
        assert_eq!(removed, none);
    }

    #[test]
    fn cli_labels_win_and_operator_labels_survive() {
        let current = m(&[("route-reflector", "true"), ("rack", "old")]);
        let cli = m(&[("zone", "cli")]);
        let kube = m(&[("zone", "kube"), ("rack", "r1")]);
        let out = merge_labels(&current, &BTreeMap::new(), &kube, &cli);
        assert_eq!(
            out,
            m(&[("route-reflector", "true"), ("rack", "r1"), ("zone", "cli")])
        );
        // Kubernetes drops `zone`: the --label value stays.
        let out = merge_labels(&out, &kube, &m(&[("rack", "r1")]), &cli);
        assert_eq!(out["zone"], "cli");
        assert_eq!(out["route-reflector"], "true");
    }

    #[test]
    fn unreadable_annotation_removes_nothing() {
        let ann = m(&[(KUBE_LABELS_ANNOTATION, "{not json")]);
        assert!(previous_kube_labels(Some(&ann)).is_empty());
        let ann = m(&[(KUBE_LABELS_ANNOTATION, r#"{"rack":"r1"}"#)]);
        assert_eq!(previous_kube_labels(Some(&ann)), m(&[("rack", "r1")]));
    }
}
