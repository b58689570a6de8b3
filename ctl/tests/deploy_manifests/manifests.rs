//! Loading deploy/ manifests into k8s-openapi types, failing on any field
//! the Kubernetes API does not know.

use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, Secret, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, Role, RoleBinding,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every YAML file under deploy/, recursively, sorted.
pub fn manifest_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("reading deploy/") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&workspace().join("deploy"), &mut out);
    out.sort();
    out
}

/// Everything the manifests declare, typed.
#[derive(Default)]
pub struct Manifests {
    pub daemonsets: Vec<DaemonSet>,
    pub deployments: Vec<Deployment>,
    pub config_maps: Vec<ConfigMap>,
    pub service_accounts: Vec<ServiceAccount>,
    pub secrets: Vec<Secret>,
    pub cluster_roles: Vec<ClusterRole>,
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
    pub roles: Vec<Role>,
    pub role_bindings: Vec<RoleBinding>,
    pub crds: Vec<CustomResourceDefinition>,
    pub namespaces: Vec<Namespace>,
}

/// Parses `doc` as `T` and fails if the typed round trip lost anything.
pub fn typed<T: DeserializeOwned + Serialize>(doc: &Value, at: &str) -> T {
    let t: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{at}: {e}"));
    let back = serde_json::to_value(&t).expect("serializes");
    let mut lost = Vec::new();
    missing_paths(doc, &back, String::new(), &mut lost);
    assert!(
        lost.is_empty(),
        "{at}: fields unknown to the Kubernetes API (typos?): {lost:?}"
    );
    t
}

/// Paths present in `orig` but absent from `back`.
pub fn missing_paths(
    orig: &Value,
    back: &Value,
    path: String,
    out: &mut Vec<String>,
) {
    match (orig, back) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = format!("{path}.{k}");
                match b.get(k) {
                    Some(bv) => missing_paths(v, bv, p, out),
                    // An explicitly empty value may be dropped harmlessly.
                    None if is_empty(v) => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, v) in a.iter().enumerate() {
                match b.get(i) {
                    Some(bv) => {
                        missing_paths(v, bv, format!("{path}[{i}]"), out)
                    }
                    None => out.push(format!("{path}[{i}]")),
                }
            }
        }
        _ => {}
    }
}

pub fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

pub fn load() -> Manifests {
    let mut m = Manifests::default();
    let files = manifest_files();
    assert!(
        files.iter().any(|f| f.ends_with("30-daemonset.yaml")),
        "deploy/ has no DaemonSet manifest: {files:?}"
    );
    for file in files {
        let text = std::fs::read_to_string(&file).expect("reading manifest");
        for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let at = format!("{} document {}", file.display(), i + 1);
            let value: Value = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{at}: invalid YAML: {e}"));
            if value.is_null() {
                continue;
            }
            let api = value["apiVersion"].as_str().unwrap_or_default();
            let kind = value["kind"].as_str().unwrap_or_default();
            match (api, kind) {
                ("v1", "Namespace") => m.namespaces.push(typed(&value, &at)),
                ("v1", "ConfigMap") => m.config_maps.push(typed(&value, &at)),
                ("v1", "ServiceAccount") => {
                    m.service_accounts.push(typed(&value, &at))
                }
                ("v1", "Secret") => m.secrets.push(typed(&value, &at)),
                ("apps/v1", "DaemonSet") => {
                    m.daemonsets.push(typed(&value, &at))
                }
                ("apps/v1", "Deployment") => {
                    m.deployments.push(typed(&value, &at))
                }
                ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
                    m.cluster_roles.push(typed(&value, &at))
                }
                ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                    m.cluster_role_bindings.push(typed(&value, &at))
                }
                ("rbac.authorization.k8s.io/v1", "Role") => {
                    m.roles.push(typed(&value, &at))
                }
                ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
                    m.role_bindings.push(typed(&value, &at))
                }
                ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
                    m.crds.push(typed(&value, &at))
                }
                _ => {
                    panic!("{at}: unexpected apiVersion {api:?} kind {kind:?}")
                }
            }
        }
    }
    m
}
