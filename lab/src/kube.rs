//! The Kubernetes-datastore lab: kube-apiserver (on the lab's etcd), the
//! manifests of deploy/ applied with kubectl, a core/v1 Node per lab node,
//! and the ServiceAccount tokens the agents and the CNI plugin run with.
//!
//! ```text
//!   lab --admin--> kube-apiserver (host address, RBAC) --> lab etcd
//!   node agents --margay-node token--^   ^--margay-cni token-- CNI ADD
//! ```
//!
//! Nothing else of Kubernetes runs: the DaemonSet is stored but no kubelet
//! runs it, the lab starts the agents itself with the identities the
//! DaemonSet would give them. So a verb missing from deploy/20-rbac.yaml
//! fails the lab as it would fail a cluster.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use margay_apiserver::{ApiServerFiles, client_for};
use serde::{Deserialize, Serialize};

use crate::LabError;
use crate::sys::{alive, spawn_detached};
use crate::topology::{self, Topology};

/// The ServiceAccounts of deploy/20-rbac.yaml the lab runs as.
const NAMESPACE: &str = "margay-system";
const NODE_SA: &str = "margay-node";
const CNI_SA: &str = "margay-cni";
/// deploy/40-controllers.yaml's ServiceAccount.
const CONTROLLERS_SA: &str = "margay-controllers";
/// How long a deleted Kubernetes Node stays before margay-controllers
/// releases it: short in the lab, so the departure can be watched.
pub const DEPARTED_GRACE_SECS: u64 = 5;
/// Token lifetime: longer than any lab session (nothing refreshes them).
const TOKEN_SECONDS: i64 = 24 * 3600;
/// kube-apiserver may take a while to be ready on a busy 2-core box.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// What the lab keeps of its kube-apiserver.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KubeState {
    pub apiserver_pid: u32,
    /// e.g. `https://10.77.0.1:26443`.
    pub server: String,
    pub admin_kubeconfig: PathBuf,
    /// The margay-node ServiceAccount's kubeconfig (TokenRequest token).
    pub node_kubeconfig: PathBuf,
    /// The margay-cni ServiceAccount's kubeconfig (TokenRequest token).
    pub cni_kubeconfig: PathBuf,
    /// The margay-controllers ServiceAccount's kubeconfig.
    #[serde(default)]
    pub controllers_kubeconfig: PathBuf,
    /// margay-controllers, run as deploy/40-controllers.yaml's Deployment
    /// would run it (one replica, the Lease's holder).
    #[serde(default)]
    pub controllers_pid: Option<u32>,
}

/// Starts kube-apiserver on the host link's address (the nodes reach it
/// over the fabric segment), backed by the lab's etcd, with its files in
/// `dir/kube`; waits until it is ready. Returns it without the ServiceAccount
/// kubeconfigs, which need deploy/ applied first ([`identities`]).
pub(crate) async fn start_apiserver(
    dir: &Path,
    topo: &Topology,
) -> Result<KubeState, LabError> {
    let host = IpAddr::V4(topology::host_v4());
    let addr = format!("{host}:{}", topology::KUBE_PORT);
    if let Err(e) = std::net::TcpListener::bind(&addr) {
        return Err(LabError::PortBusy {
            addr,
            detail: e.to_string(),
        });
    }
    let files = ApiServerFiles::create(&dir.join("kube"), &[host])
        .map_err(|e| io("creating kube-apiserver credentials", e))?;
    let server = format!("https://{addr}");
    let admin_kubeconfig = files
        .write_admin_kubeconfig(&server)
        .map_err(|e| io("writing the admin kubeconfig", e))?;
    let args = files.args(&topo.etcd_endpoint(), host, topology::KUBE_PORT);
    let binary = margay_apiserver::kube_apiserver_path();
    let pid = spawn_detached(None, &binary, &args, &files.log_path())?;
    let state = KubeState {
        apiserver_pid: pid,
        server,
        node_kubeconfig: files.dir.join("margay-node.kubeconfig"),
        cni_kubeconfig: files.dir.join("margay-cni.kubeconfig"),
        controllers_kubeconfig: files.dir.join("margay-controllers.kubeconfig"),
        controllers_pid: None,
        admin_kubeconfig,
    };
    let admin = client_for(&state.admin_kubeconfig)
        .await
        .map_err(|e| io("reading the admin kubeconfig", e))?;
    margay_apiserver::wait_ready(&admin, &files, READY_TIMEOUT, || {
        (!alive(pid)).then(|| format!("pid {pid} is gone"))
    })
    .await
    .map_err(|e| LabError::Timeout {
        what: "kube-apiserver".into(),
        detail: e.to_string(),
    })?;
    Ok(state)
}

/// Applies `deploy/crds/` then `deploy/` with kubectl, as an operator
/// installs margay; returns what kubectl printed on stderr (warnings).
pub(crate) fn apply_manifests(
    kube: &KubeState,
    deploy: &Path,
) -> Result<String, LabError> {
    let mut warnings =
        kubectl(kube, &["apply", "-f", &path(&deploy.join("crds"))])?;
    warnings += &kubectl(
        kube,
        &[
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=60s",
        ],
    )?;
    warnings += &kubectl(kube, &["apply", "-f", &path(deploy)])?;
    Ok(warnings)
}

/// Creates a core/v1 Node per lab node, labelled as a cloud or on-prem
/// installer would: a zone and a rack (odd nodes in r1, even in r2).
pub(crate) fn create_nodes(
    kube: &KubeState,
    topo: &Topology,
    dir: &Path,
) -> Result<(), LabError> {
    let file = dir.join("kube/nodes.yaml");
    std::fs::write(&file, nodes_yaml(topo))
        .map_err(|e| io(&format!("writing {}", file.display()), e))?;
    kubectl(kube, &["apply", "-f", &path(&file)]).map(drop)
}

/// Mints the margay-node, margay-cni and margay-controllers tokens
/// (TokenRequest) and writes their kubeconfigs.
pub(crate) async fn identities(
    kube: &KubeState,
    dir: &Path,
) -> Result<(), LabError> {
    let files = ApiServerFiles {
        dir: dir.join("kube"),
    };
    let admin = client_for(&kube.admin_kubeconfig)
        .await
        .map_err(|e| io("reading the admin kubeconfig", e))?;
    for (sa, want) in [
        (NODE_SA, &kube.node_kubeconfig),
        (CNI_SA, &kube.cni_kubeconfig),
        (CONTROLLERS_SA, &kube.controllers_kubeconfig),
    ] {
        let token = margay_apiserver::request_token(
            &admin,
            NAMESPACE,
            sa,
            TOKEN_SECONDS,
        )
        .await
        .map_err(|e| LabError::Resources(e.to_string()))?;
        let written = files
            .write_kubeconfig(sa, &kube.server, &token)
            .map_err(|e| io(&format!("writing {sa}'s kubeconfig"), e))?;
        debug_assert_eq!(&written, want);
    }
    Ok(())
}

/// Starts margay-controllers (departed nodes, addresses of gone pods) as
/// its ServiceAccount, leader-elected with its Lease in margay-system.
pub(crate) fn start_controllers(
    kube: &mut KubeState,
    bin_dir: &Path,
    dir: &Path,
) -> Result<(), LabError> {
    let args = [
        "--datastore".to_string(),
        format!("kubernetes:{}", kube.controllers_kubeconfig.display()),
        "--grace-period-secs".into(),
        DEPARTED_GRACE_SECS.to_string(),
        "--identity".into(),
        "lab-controllers-0".into(),
        "--lease-namespace".into(),
        NAMESPACE.into(),
    ];
    let log = dir.join("logs").join("controllers.log");
    let pid =
        spawn_detached(None, &bin_dir.join("margay-controllers"), &args, &log)?;
    kube.controllers_pid = Some(pid);
    Ok(())
}

/// Makes a CNI network config (see [`Topology::cni_config`]) use the
/// Kubernetes datastore with margay-cni's kubeconfig, relaying to the
/// node's CNI server (not its agent), as the deploy/ conflist does.
pub(crate) fn cni_datastore(
    config: &mut serde_json::Value,
    kube: &KubeState,
    run_dir: &Path,
) {
    if let Some(obj) = config.as_object_mut() {
        obj.remove("etcd_endpoints");
        obj.insert(
            "agent_socket".into(),
            crate::node::cni_server_socket(run_dir)
                .display()
                .to_string()
                .into(),
        );
        obj.insert("datastore_type".into(), "kubernetes".into());
        obj.insert(
            "kubernetes".into(),
            serde_json::json!({ "kubeconfig": kube.cni_kubeconfig }),
        );
    }
}

/// The rack label of lab node `index` (0-based).
pub fn rack_of(index: usize) -> String {
    format!("r{}", 1 + index % 2)
}

fn nodes_yaml(topo: &Topology) -> String {
    let mut out = String::new();
    for (i, n) in topo.nodes.iter().enumerate() {
        out.push_str(&format!(
            "---\n\
             apiVersion: v1\n\
             kind: Node\n\
             metadata:\n  \
               name: {name}\n  \
               labels:\n    \
                 kubernetes.io/hostname: {name}\n    \
                 topology.kubernetes.io/zone: {zone}\n    \
                 rack: {rack}\n",
            name = n.name,
            zone = topology::ZONE,
            rack = rack_of(i),
        ));
    }
    out
}

/// Runs kubectl (the release kube-apiserver is built from) with the admin
/// kubeconfig; returns its stderr (warnings) when it succeeds.
fn kubectl(kube: &KubeState, args: &[&str]) -> Result<String, LabError> {
    let binary = margay_apiserver::kubectl_path();
    let mut argv =
        vec!["--kubeconfig".to_string(), path(&kube.admin_kubeconfig)];
    argv.extend(args.iter().map(|a| a.to_string()));
    let out = std::process::Command::new(&binary)
        .args(&argv)
        .output()
        .map_err(|e| LabError::Command {
            command: format!("{} {}", binary.display(), argv.join(" ")),
            detail: format!(
                "cannot run kubectl (scripts/deps --kube builds it): {e}"
            ),
        })?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(LabError::Command {
            command: format!("kubectl {}", args.join(" ")),
            detail: format!("{}: {}", out.status, stderr.trim()),
        });
    }
    Ok(stderr)
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn io(what: &str, e: std::io::Error) -> LabError {
    LabError::Io {
        what: what.to_string(),
        source: e,
    }
}
