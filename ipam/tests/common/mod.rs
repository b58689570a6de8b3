//! Shared setup of the IPAM integration tests: a datastore on a real
//! etcd, on kube-fake-client (an in-memory apiserver) for the Kubernetes
//! backend, or on a real kube-apiserver where IPAM runs as the margay-cni
//! ServiceAccount of deploy/20-rbac.yaml.
#![allow(dead_code)]

use std::collections::BTreeMap;

use kube_fake_client::ClientBuilder;
use margay_crds::{
    BlockAffinity, IPAMBlock, IPAMConfig, IPAMConfigSpec, IPAMHandle, IPPool,
    IPPoolSpec, IPReservation, Node, NodeSpec,
};
use margay_datastore::{Datastore, DatastoreSpec, KubeStore};
use margay_ipam::{Ipam, IpamOptions};
use margay_testkit::fake_kube::cluster_scoped;
use margay_testkit::{EtcdServer, KubeApiServer, kube_apiserver_binary};

/// A datastore (and, on etcd, the server behind it).
pub struct Env {
    /// None on the Kubernetes backend.
    pub etcd: Option<EtcdServer>,
    /// The operator's datastore: pools, IPAMConfig, Nodes (and reads).
    pub ds: Datastore,
    /// IPAM's datastore: `ds`, except on the real apiserver, where it is
    /// margay-cni's ServiceAccount token (its RBAC, nothing more).
    pub ipam_ds: Datastore,
    /// The real apiserver, when the test runs on one.
    pub kube: Option<KubeApiServer>,
    pub dir: tempfile::TempDir,
}

/// Starts etcd (fails when the etcd binary is absent: scripts/deps installs it).
pub async fn env(test: &str) -> Option<Env> {
    let etcd = match EtcdServer::start() {
        Ok(e) => e,
        Err(e) => {
            panic!("{test}: cannot start etcd ({e}): scripts/deps installs it");
        }
    };
    let spec = DatastoreSpec::etcd(vec![etcd.endpoint()]);
    let ds = Datastore::connect(&spec).await.expect("connect");
    let dir = tempfile::tempdir().expect("tempdir");
    Some(Env {
        etcd: Some(etcd),
        ipam_ds: ds.clone(),
        ds,
        kube: None,
        dir,
    })
}

/// A real etcd and kube-apiserver with deploy/ applied; setup writes go
/// with the admin token, IPAM with margay-cni's. Fails without the
/// kube-apiserver binary (scripts/deps --kube builds it).
pub async fn real_kube_env(test: &str) -> Option<Env> {
    kube_apiserver_binary(test)?;
    let kube = KubeApiServer::start().await.expect("kube-apiserver starts");
    kube.install_margay().await.expect("deploy/ applies");
    let store = |c| Datastore::Kubernetes(KubeStore::from_client(c));
    let cni = kube
        .service_account_client("margay-system", "margay-cni")
        .await
        .expect("margay-cni token");
    Some(Env {
        etcd: None,
        ds: store(kube.admin()),
        ipam_ds: store(cni),
        kube: Some(kube),
        dir: tempfile::tempdir().expect("tempdir"),
    })
}

/// The Kubernetes backend on a fresh, empty kube-fake-client that knows
/// every kind IPAM reads or writes. Always available (no server to
/// start).
///
/// `margay_testkit::fake_kube` moves the backend's cluster-scoped paths
/// into one namespace (the fake knows namespaced resources only). The
/// fake has no multi-object transactions (like
/// a real apiserver) and ignores delete preconditions.
pub async fn kube_env() -> Env {
    let fake = ClientBuilder::new()
        .with_resource::<IPPool>()
        .with_resource::<IPAMConfig>()
        .with_resource::<IPReservation>()
        .with_resource::<Node>()
        .with_resource::<IPAMBlock>()
        .with_resource::<BlockAffinity>()
        .with_resource::<IPAMHandle>()
        .build()
        .await
        .expect("fake client");
    let client = cluster_scoped(fake);
    let ds = Datastore::Kubernetes(KubeStore::from_client(client));
    Env {
        etcd: None,
        ipam_ds: ds.clone(),
        ds,
        kube: None,
        dir: tempfile::tempdir().expect("tempdir"),
    }
}

impl Env {
    /// The etcd server (tests that stop it or hand its endpoint to other
    /// processes run on etcd only).
    pub fn etcd(&mut self) -> &mut EtcdServer {
        self.etcd.as_mut().expect("an etcd-backed test environment")
    }

    /// The etcd server's client URL.
    pub fn etcd_endpoint(&self) -> String {
        let etcd = self.etcd.as_ref();
        etcd.expect("an etcd-backed test environment").endpoint()
    }

    /// IPAM for `node` with its own host lock file.
    pub fn ipam(&self, node: &str) -> Ipam {
        self.ipam_with(node, IpamOptions::default())
    }

    /// IPAM for `node` with `opts` (the lock path is replaced by a
    /// per-node file in the test's directory).
    pub fn ipam_with(&self, node: &str, mut opts: IpamOptions) -> Ipam {
        opts.lock_path = Some(self.dir.path().join(format!("{node}.lock")));
        Ipam::new(self.ipam_ds.clone(), node, opts)
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
