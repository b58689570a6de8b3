//! The local lab: a whole margay fabric on one machine.
//!
//! `up` builds etcd, N nodes as network namespaces on one L2 segment (each
//! running the margay node agent, hence bgpd and felix-lite), a ToR router
//! (BIRD) peering eBGP with every node, and pods wired by invoking the CNI
//! plugin exactly as a container runtime does. It then proves the fabric
//! works: every pod reaches every other pod (ICMP and TCP) without
//! encapsulation, node FIBs route pod blocks via node addresses, the ToR has
//! learned every block, and all sessions are Established.
//!
//! Every name starts with `mglab`, so `down` finds and removes leftovers of
//! a failed `up` even without the state file.

mod converge;
mod down;
mod etcd;
pub mod inspect;
mod kube;
pub use kube::DEPARTED_GRACE_SECS;
mod neigh;
mod node;
mod pods;
mod probe;
mod prove;
mod reach;
mod segment;
mod state;
mod status;
mod sys;
pub mod topology;
mod tor;
mod up;

use std::path::PathBuf;

pub use down::down;
pub use etcd::{start_etcd_again, stop_etcd};
pub use kube::KubeState;
pub use node::{start_node_again, stop_node};
pub use pods::{add_extra_pod, add_extra_pod_in_pool};
pub use probe::tcp_via;
pub use state::LabState;
pub use status::status;
pub use topology::{Family, PeeringMode};
pub use up::{LabSummary, up};

/// How to build the lab.
#[derive(Debug, Clone)]
pub struct LabOptions {
    pub nodes: usize,
    pub pods_per_node: usize,
    pub mode: PeeringMode,
    /// How many route reflectors (nodes 1..=k, one cluster ID) in
    /// [`PeeringMode::RouteReflector`]; 2 is Calico's advice.
    pub route_reflectors: usize,
    pub family: Family,
    /// Where bgpd, felix-lite, margay-node, margay and margay-ipam are.
    pub bin_dir: PathBuf,
    /// Where the lab keeps its state, logs and etcd data.
    pub state_dir: PathBuf,
    /// Where the agents and the CNI plugin keep margay's resources.
    pub datastore: LabDatastore,
    /// The manifests a Kubernetes-datastore lab applies (`deploy/`, with
    /// the CRDs in `deploy/crds/`).
    pub deploy_dir: PathBuf,
}

/// The datastore of a lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabDatastore {
    /// etcd v3, written directly.
    Etcd,
    /// Custom resources in a kube-apiserver (on the lab's etcd), reached
    /// with the ServiceAccount tokens of deploy/20-rbac.yaml.
    Kubernetes,
}

/// The repository's deploy/ directory (where `margayctl` was built).
pub fn default_deploy_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy"))
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            nodes: 3,
            pods_per_node: 2,
            mode: PeeringMode::Mesh,
            route_reflectors: 1,
            family: Family::V4,
            bin_dir: PathBuf::from("target/release"),
            state_dir: PathBuf::from("/var/run/margay-lab"),
            datastore: LabDatastore::Etcd,
            deploy_dir: default_deploy_dir(),
        }
    }
}

/// Why the lab could not be built, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(
        "the lab needs root (network namespaces, veth links): run it with sudo"
    )]
    NotRoot,
    #[error(
        "missing programs: {}; install them with: apt-get install {packages}",
        programs.join(", ")
    )]
    MissingPrograms {
        programs: Vec<String>,
        packages: String,
    },
    #[error(
        "margay binaries missing in {dir}: {}; build them with: \
         cargo build --release --bins",
        names.join(", ")
    )]
    MissingBinaries { dir: String, names: Vec<String> },
    #[error(
        "a Kubernetes-datastore lab needs kube-apiserver and kubectl {}: \
         missing {}; build them with: scripts/deps --kube",
        margay_apiserver::KUBE_VERSION,
        paths.join(", ")
    )]
    MissingKube { paths: Vec<String> },
    #[error(
        "{addr} is already in use ({detail}); stop what holds it or run `margayctl lab down`"
    )]
    PortBusy { addr: String, detail: String },
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("datastore: {0}")]
    Datastore(#[from] margay_datastore::DatastoreError),
    #[error("lab resources: {0}")]
    Resources(String),
    #[error("timed out waiting for {what}: {detail}")]
    Timeout { what: String, detail: String },
    #[error("CNI ADD of pod {pod} failed: {detail}")]
    Cni { pod: String, detail: String },
    #[error("lab state: {0}")]
    State(String),
    #[error("lab options: {0}")]
    Options(String),
}
