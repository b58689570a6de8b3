//! What a running lab consists of, saved so that `status` and `down` (from
//! another invocation) know what to look at and remove.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use margay_datastore::DatastoreSpec;

use crate::LabError;
use crate::kube::KubeState;

/// The saved state of a lab.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LabState {
    pub state_dir: PathBuf,
    pub etcd_pid: Option<u32>,
    pub etcd_endpoint: String,
    pub nodes: Vec<NodeState>,
    pub pods: Vec<PodState>,
    pub tor_pid: Option<u32>,
    pub tor_socket: PathBuf,
    pub mode: String,
    pub family: String,
    /// Host neighbour-table sysctls `up` raised, with their old values,
    /// for `down` to restore.
    #[serde(default)]
    pub raised_sysctls: Vec<(String, u64)>,
    /// The kube-apiserver of a Kubernetes-datastore lab.
    #[serde(default)]
    pub kube: Option<KubeState>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeState {
    pub name: String,
    pub netns: String,
    pub address: String,
    /// The node's IPv6 fabric address, in IPv6 and dual-stack labs.
    #[serde(default)]
    pub address_v6: Option<String>,
    pub agent_pid: u32,
    /// The CNI server (`margay-node cni-server`) of a Kubernetes lab.
    #[serde(default)]
    pub cni_server_pid: Option<u32>,
    pub run_dir: PathBuf,
    pub route_reflector: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodState {
    pub name: String,
    pub node: String,
    pub netns: String,
    pub container_id: String,
    pub ips: Vec<String>,
}

const FILE: &str = "lab.json";

impl LabState {
    pub fn load(state_dir: &Path) -> Result<Option<LabState>, LabError> {
        let path = state_dir.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                    LabError::State(format!(
                        "{} is corrupt: {e}",
                        path.display()
                    ))
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LabError::Io {
                what: format!("reading {}", path.display()),
                source: e,
            }),
        }
    }

    /// The datastore with the lab's admin rights: etcd, or the
    /// apiserver with the admin kubeconfig.
    pub fn admin_datastore(&self) -> DatastoreSpec {
        match &self.kube {
            Some(k) => DatastoreSpec::Kubernetes {
                kubeconfig: Some(k.admin_kubeconfig.clone()),
            },
            None => DatastoreSpec::etcd(vec![self.etcd_endpoint.clone()]),
        }
    }

    /// The `--datastore` of the node agents: etcd, or the apiserver with
    /// the margay-node ServiceAccount's kubeconfig.
    pub fn agent_datastore(&self) -> DatastoreSpec {
        match &self.kube {
            Some(k) => DatastoreSpec::Kubernetes {
                kubeconfig: Some(k.node_kubeconfig.clone()),
            },
            None => self.admin_datastore(),
        }
    }

    pub fn save(&self) -> Result<(), LabError> {
        let path = self.state_dir.join(FILE);
        let bytes =
            serde_json::to_vec_pretty(self).expect("lab state serializes");
        std::fs::write(&path, bytes).map_err(|e| LabError::Io {
            what: format!("writing {}", path.display()),
            source: e,
        })
    }
}
