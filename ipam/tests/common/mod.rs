//! Shared setup of the etcd-backed IPAM tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use margay_crds::{
    IPAMConfig, IPAMConfigSpec, IPPool, IPPoolSpec, Node, NodeSpec,
};
use margay_datastore::{Datastore, DatastoreSpec};
use margay_ipam::{Ipam, IpamOptions};
use margay_testkit::EtcdServer;

/// A running etcd and a datastore client on it.
pub struct Env {
    pub etcd: EtcdServer,
    pub ds: Datastore,
    pub dir: tempfile::TempDir,
}

/// Starts etcd; None (after printing SKIP) when the etcd binary is absent.
pub async fn env(test: &str) -> Option<Env> {
    let etcd = match EtcdServer::start() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("SKIP {test}: cannot start etcd: {e}");
            return None;
        }
    };
    let spec = DatastoreSpec::Etcd {
        endpoints: vec![etcd.endpoint()],
    };
    let ds = Datastore::connect(&spec).await.expect("connect");
    let dir = tempfile::tempdir().expect("tempdir");
    Some(Env { etcd, ds, dir })
}

impl Env {
    /// IPAM for `node` with its own host lock file.
    pub fn ipam(&self, node: &str) -> Ipam {
        self.ipam_with(node, IpamOptions::default())
    }

    /// IPAM for `node` with `opts` (the lock path is replaced by a
    /// per-node file in the test's directory).
    pub fn ipam_with(&self, node: &str, mut opts: IpamOptions) -> Ipam {
        opts.lock_path = Some(self.dir.path().join(format!("{node}.lock")));
        Ipam::new(self.ds.clone(), node, opts)
    }

    pub async fn pool(&self, name: &str, cidr: &str, block_size: u8) {
        let pool = IPPool::new(
            name,
            IPPoolSpec {
                cidr: cidr.into(),
                block_size: Some(block_size),
                ..IPPoolSpec::default()
            },
        );
        self.ds.create(&pool).await.expect("create pool");
    }

    pub async fn config(&self, spec: IPAMConfigSpec) {
        let cfg = IPAMConfig::new("default", spec);
        self.ds.create(&cfg).await.expect("create IPAMConfig");
    }

    pub async fn node(&self, name: &str) {
        let node = Node::new(name, NodeSpec::default());
        self.ds.create(&node).await.expect("create node");
    }
}

/// Pod attributes for handle `h`.
pub fn attrs(pod: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("pod".to_string(), pod.to_string()),
        ("namespace".to_string(), "default".to_string()),
    ])
}

impl Env {
    /// A node with labels.
    pub async fn labeled_node(&self, name: &str, labels: &[(&str, &str)]) {
        let mut node = Node::new(name, NodeSpec::default());
        node.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        self.ds.create(&node).await.expect("create node");
    }
}
