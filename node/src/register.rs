//! Registration of this node's Node resource.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnetwork::IpNetwork;
use margay_crds::{Node, NodeBGPSpec, NodeSpec};
use margay_datastore::{Datastore, DatastoreError};
use tracing::{info, warn};

use crate::kube_node::{
    KUBE_LABELS_ANNOTATION, kube_labels_annotation, merge_labels,
    previous_kube_labels,
};

/// What the agent knows about its node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Registration {
    pub name: String,
    pub ipv4: Option<IpNetwork>,
    pub ipv6: Option<IpNetwork>,
    pub as_number: Option<u32>,
    pub rr_cluster_id: Option<String>,
    /// `--label` flags.
    pub labels: BTreeMap<String, String>,
    /// The Kubernetes Node's labels, on the kubernetes datastore (`None`:
    /// not known, the labels copied earlier stay as they are).
    pub kube_labels: Option<BTreeMap<String, String>>,
}

/// The Node as it should be: `existing` (if any) with this agent's fields
/// set. Fields the agent does not manage, and labels it does not set, are
/// kept, so an operator's edits survive agent restarts (label precedence:
/// [`crate::kube_node`]).
pub fn desired_node(existing: Option<Node>, reg: &Registration) -> Node {
    let mut node =
        existing.unwrap_or_else(|| Node::new(&reg.name, NodeSpec::default()));
    let current = node.metadata.labels.take().unwrap_or_default();
    let labels = match &reg.kube_labels {
        Some(kube) => {
            let previous =
                previous_kube_labels(node.metadata.annotations.as_ref());
            node.metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(
                    KUBE_LABELS_ANNOTATION.to_string(),
                    kube_labels_annotation(kube),
                );
            merge_labels(&current, &previous, kube, &reg.labels)
        }
        None => merge_labels(
            &current,
            &BTreeMap::new(),
            &BTreeMap::new(),
            &reg.labels,
        ),
    };
    node.metadata.labels = Some(labels);
    let bgp = node.spec.bgp.get_or_insert_with(NodeBGPSpec::default);
    if let Some(v4) = reg.ipv4 {
        bgp.ipv4_address = Some(v4.to_string());
    }
    if let Some(v6) = reg.ipv6 {
        bgp.ipv6_address = Some(v6.to_string());
    }
    if reg.as_number.is_some() {
        bgp.as_number = reg.as_number;
    }
    if reg.rr_cluster_id.is_some() {
        bgp.route_reflector_cluster_id = reg.rr_cluster_id.clone();
    }
    node
}

/// Creates or updates the Node with compare-and-swap, retrying on conflicts
/// and while the datastore is unavailable (up to `patience`).
pub async fn register(
    ds: &Datastore,
    reg: &Registration,
    patience: Duration,
) -> Result<Node, DatastoreError> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let result = async {
            let existing = ds.get::<Node>(&reg.name).await?;
            let is_new = existing.is_none();
            let want = desired_node(existing.clone(), reg);
            if existing.as_ref() == Some(&want) {
                return Ok(want);
            }
            if is_new {
                ds.create(&want).await
            } else {
                ds.update(&want).await
            }
        }
        .await;
        match result {
            Ok(node) => {
                info!(node = %reg.name, "node registered");
                return Ok(node);
            }
            Err(e)
                if retryable(&e) && tokio::time::Instant::now() < deadline =>
            {
                warn!(node = %reg.name, error = %e, "registering node; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn retryable(e: &DatastoreError) -> bool {
    e.is_transient()
        || matches!(
            e,
            DatastoreError::Conflict { .. }
                | DatastoreError::AlreadyExists { .. }
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg() -> Registration {
        Registration {
            name: "n1".into(),
            ipv4: Some("10.77.0.11/24".parse().unwrap()),
            labels: BTreeMap::from([("rack".into(), "r1".into())]),
            ..Default::default()
        }
    }

    #[test]
    fn new_node_gets_address_and_labels() {
        let node = desired_node(None, &reg());
        assert_eq!(node.metadata.name.as_deref(), Some("n1"));
        let bgp = node.spec.bgp.unwrap();
        assert_eq!(bgp.ipv4_address.as_deref(), Some("10.77.0.11/24"));
        assert_eq!(bgp.as_number, None);
        assert_eq!(node.metadata.labels.unwrap()["rack"], "r1");
    }

    #[test]
    fn operator_fields_survive_re_registration() {
        let mut existing = desired_node(None, &reg());
        existing
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("route-reflector".into(), "true".into());
        existing.spec.bgp.as_mut().unwrap().as_number = Some(65001);
        let mut r = reg();
        r.ipv4 = Some("10.77.0.12/24".parse().unwrap());
        let node = desired_node(Some(existing), &r);
        let bgp = node.spec.bgp.as_ref().unwrap();
        assert_eq!(bgp.as_number, Some(65001));
        assert_eq!(bgp.ipv4_address.as_deref(), Some("10.77.0.12/24"));
        assert_eq!(node.metadata.labels.unwrap()["route-reflector"], "true");
    }
}
