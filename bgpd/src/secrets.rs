//! BGP passwords from Kubernetes Secrets (`password.secretKeyRef`, as in
//! Calico): a Secret in the namespace margay's node agent runs in. Only
//! the kubernetes datastore has Secrets; they are read again each time
//! the configuration is derived, so a rotated key applies within one poll.

use std::collections::BTreeMap;
use std::path::Path;

use margay_crds::{BGPPassword, SecretKeySelector};
use margay_datastore::{DatastoreError, KubeStore};

use crate::config::Resources;

/// Where a pod finds its own namespace when `POD_NAMESPACE` is not set.
pub const SA_NAMESPACE_FILE: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
/// The namespace of deploy/ when nothing else says.
pub const DEFAULT_NAMESPACE: &str = "margay-system";

/// The Secret keys the configuration refers to, as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    /// The namespace they were read from (for error messages).
    pub namespace: String,
    /// (Secret name, key) -> the value; `None` when the Secret or key is
    /// absent.
    pub values: BTreeMap<(String, String), Option<String>>,
}

/// Why a Secret could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("reading Secret {namespace}/{name}: {source}")]
    Read {
        namespace: String,
        name: String,
        #[source]
        source: Box<DatastoreError>,
    },
    #[error(
        "Secret {namespace}/{name} key {key:?} is not UTF-8 text; allowed \
         a printable TCP MD5 password"
    )]
    NotText {
        namespace: String,
        name: String,
        key: String,
    },
}

impl Secrets {
    /// The value of `sel`: `Ok(None)` when it is absent and optional;
    /// otherwise an absent value is an error message.
    pub(crate) fn lookup(
        &self,
        sel: &SecretKeySelector,
    ) -> Result<Option<&str>, String> {
        let v = self.values.get(&(sel.name.clone(), sel.key.clone()));
        match v {
            Some(Some(v)) => Ok(Some(v)),
            _ if sel.optional == Some(true) => Ok(None),
            _ => Err(format!(
                "Secret {}/{} has no key {:?} or does not exist; create it, \
                 or set optional: true for no password",
                self.namespace, sel.name, sel.key
            )),
        }
    }
}

/// The namespace to read Secrets from: `POD_NAMESPACE` (the downward API),
/// else the service account's namespace file, else margay-system.
pub fn namespace(pod_namespace: Option<String>, sa_file: &Path) -> String {
    pod_namespace
        .filter(|n| !n.trim().is_empty())
        .or_else(|| {
            std::fs::read_to_string(sa_file)
                .ok()
                .filter(|n| !n.trim().is_empty())
        })
        .map_or_else(|| DEFAULT_NAMESPACE.to_string(), |n| n.trim().to_string())
}

/// Every secretKeyRef in `res` (BGPPeer passwords and the mesh password).
fn refs(res: &Resources) -> Vec<&SecretKeySelector> {
    let peers = res.peers.iter().filter_map(|p| p.spec.password.as_ref());
    let mesh = res
        .bgp_configs
        .iter()
        .filter_map(|c| c.spec.node_mesh_password.as_ref());
    peers
        .chain(mesh)
        .filter_map(|p: &BGPPassword| p.secret_key_ref.as_ref())
        .collect()
}

/// Read every Secret key `res` refers to (one `get` per Secret).
pub async fn resolve(
    store: &KubeStore,
    namespace: &str,
    res: &Resources,
) -> Result<Secrets, SecretError> {
    let mut values = BTreeMap::new();
    for sel in refs(res) {
        let k = (sel.name.clone(), sel.key.clone());
        if values.contains_key(&k) {
            continue;
        }
        let raw = store
            .secret_key(namespace, &sel.name, &sel.key)
            .await
            .map_err(|source| SecretError::Read {
                namespace: namespace.into(),
                name: sel.name.clone(),
                source: Box::new(source),
            })?;
        let v = raw
            .map(|b| {
                String::from_utf8(b).map_err(|_| SecretError::NotText {
                    namespace: namespace.into(),
                    name: sel.name.clone(),
                    key: sel.key.clone(),
                })
            })
            .transpose()?;
        values.insert(k, v);
    }
    Ok(Secrets {
        namespace: namespace.into(),
        values,
    })
}

#[cfg(test)]
mod tests;
