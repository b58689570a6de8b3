//! The Kubernetes-datastore lab end to end (`margayctl lab up --datastore
//! kubernetes`): a real kube-apiserver with RBAC, deploy/ applied with
//! kubectl, core/v1 Nodes, agents and CNI plugin with the ServiceAccount
//! tokens of deploy/20-rbac.yaml, and the same proofs as the etcd lab.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use margay_datastore::{Datastore, DatastoreSpec};
use margay_lab::{Family, LabDatastore, LabError, LabOptions, PeeringMode};
use margay_tests::LabGuard;

/// Serializes the labs of this file (they share names and ports).
static LAB: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn options(state: &Path, nodes: usize, deploy: &Path) -> LabOptions {
    LabOptions {
        nodes,
        pods_per_node: 2,
        mode: PeeringMode::Mesh,
        route_reflectors: 1,
        family: Family::V4,
        bin_dir: margay_tests::bin_dir(),
        state_dir: state.join("lab"),
        datastore: LabDatastore::Kubernetes,
        deploy_dir: deploy.to_path_buf(),
    }
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new(margay_testkit::kubectl_path())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs (scripts/deps --kube builds it)");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether anything of a lab is left: namespaces, or a process whose
/// command line names the lab's state directory (kube-apiserver, etcd).
fn leftovers(state_dir: &Path) -> Vec<String> {
    let mut left = Vec::new();
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    left.extend(
        String::from_utf8_lossy(&ns.stdout)
            .lines()
            .filter(|l| l.starts_with("mglab-"))
            .map(|l| format!("netns {l}")),
    );
    let needle = state_dir.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .unwrap_or_default();
        if cmd.contains(&needle) {
            left.push(format!("process {pid}: {cmd}"));
        }
    }
    left
}

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_lab_proves_the_fabric_with_deploy_identities() {
    if !margay_testkit::require_root("kubernetes_lab_proves_the_fabric") {
        return;
    }
    margay_testkit::kube_apiserver_binary("kubernetes_lab");
    let _serial = LAB.lock().await;
    let state = tempfile::tempdir().unwrap();
    let opts = options(state.path(), 3, &margay_testkit::deploy_dir());
    let guard = LabGuard(opts.clone());
    let summary = margay_lab::up(&opts).await.expect("kubernetes lab up");
    assert!(
        summary.ok,
        "kubernetes lab failed its proofs:\n{}",
        summary.report
    );
    let lab = margay_lab::LabState::load(&opts.state_dir)
        .unwrap()
        .expect("lab state");
    let kube = lab
        .kube
        .clone()
        .expect("a kubernetes lab records its apiserver");

    // A core/v1 Node per lab node, with its zone and rack labels.
    let nodes = kubectl(
        &kube.admin_kubeconfig,
        &[
            "get",
            "nodes",
            "--no-headers",
            "-o",
            "custom-columns=N:.metadata.name,Z:.metadata.labels.topology\\.kubernetes\\.io/zone,R:.metadata.labels.rack",
        ],
    );
    let rows: Vec<Vec<&str>> = nodes
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        vec![
            vec!["node1", "lab-zone-a", "r1"],
            vec!["node2", "lab-zone-a", "r2"],
            vec!["node3", "lab-zone-a", "r1"],
        ],
        "{nodes}"
    );
    // The DaemonSet is stored, though no kubelet runs it.
    let ds = kubectl(
        &kube.admin_kubeconfig,
        &["get", "daemonset", "-n", "margay-system", "-o", "name"],
    );
    assert_eq!(ds.trim(), "daemonset.apps/margay-node");

    // The agents' margay Nodes were registered through the margay-node
    // identity, the pods' addresses claimed through margay-cni's.
    let status = margay_lab::status(&opts).await.unwrap();
    assert!(status.contains("kube   https://"), "{status}");
    // As deploy/ runs it, the pods' ADDs went through each node's CNI
    // server (`margay-node cni-server`, the margay-cni container), which
    // used the conflist's margay-cni kubeconfig, while the agents serve
    // no CNI socket.
    for n in &lab.nodes {
        let log = opts.state_dir.join(format!("logs/{}-cni.log", n.name));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            text.matches("CNI reply sent").count() >= 2,
            "{}: the pods' ADDs were not served there:\n{text}",
            log.display()
        );
        assert!(!text.contains("CNI request failed"), "{text}");
        assert!(n.cni_server_pid.is_some(), "{}", n.name);
        assert!(!n.run_dir.join("cni.sock").exists(), "the agent serves CNI");
    }

    // margay-cni holds a working token but may not write BGPPeers.
    let cni = Datastore::connect(&DatastoreSpec::Kubernetes {
        kubeconfig: Some(kube.cni_kubeconfig.clone()),
    })
    .await
    .unwrap();
    assert!(
        !cni.list::<margay_crds::IPPool>()
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let peer = margay_crds::parse_documents(
        "apiVersion: margay.io/v1\nkind: BGPPeer\nmetadata: {name: rogue}\n\
         spec: {peerIP: 192.0.2.1, asNumber: 65001}\n",
    )
    .unwrap();
    let margay_crds::AnyResource::BGPPeer(peer) = &peer[0] else {
        panic!("a BGPPeer");
    };
    let err = cni.create(peer).await.unwrap_err().to_string();
    assert!(
        err.contains("forbidden")
            && err.contains("system:serviceaccount:margay-system:margay-cni")
            && err.contains("bgppeers"),
        "margay-cni creating a BGPPeer: {err}"
    );

    // node3 departs: its machine dies (every process in its namespace),
    // then it is deleted from Kubernetes. margay-controllers (the Lease
    // holder, as its own ServiceAccount) releases its margay Node, its
    // affinities and its pods' addresses after the grace period, and the
    // other nodes' mesh sessions to it go away.
    let admin = Datastore::connect(&DatastoreSpec::Kubernetes {
        kubeconfig: Some(kube.admin_kubeconfig.clone()),
    })
    .await
    .unwrap();
    let node3 = lab.nodes.iter().find(|n| n.name == "node3").unwrap();
    let node3_ip = node3.address.split('/').next().unwrap().to_string();
    let pids = Command::new("ip")
        .args(["netns", "pids", &node3.netns])
        .output()
        .unwrap();
    for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
        let _ = Command::new("kill").args(["-9", pid]).status();
    }
    kubectl(&kube.admin_kubeconfig, &["delete", "node", "node3"]);
    let status = |n: &str| {
        let sock = lab
            .nodes
            .iter()
            .find(|x| x.name == n)
            .unwrap()
            .run_dir
            .join("bgpd.ctl");
        let out = Command::new(margay_tests::bin_dir().join("margayctl"))
            .args(["--bgpd-socket", sock.to_str().unwrap(), "node", "status"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut last = String::new();
    let released = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let nodes = admin.list::<margay_crds::Node>().await.unwrap();
            let affs =
                admin.list::<margay_crds::BlockAffinity>().await.unwrap();
            let blocks = admin.list::<margay_crds::IPAMBlock>().await.unwrap();
            let node_left = nodes
                .items
                .iter()
                .any(|n| n.metadata.name.as_deref() == Some("node3"));
            let affs_left =
                affs.items.iter().filter(|a| a.spec.node == "node3").count();
            let addrs_left = blocks
                .items
                .iter()
                .flat_map(|b| b.spec.attributes.iter())
                .filter(|a| {
                    a.secondary.get("node").map(String::as_str) == Some("node3")
                })
                .count();
            let sessions: Vec<String> =
                ["node1", "node2"].iter().map(|n| status(n)).collect();
            let sessions_left =
                sessions.iter().filter(|s| s.contains(&node3_ip)).count();
            last = format!(
                "node3 Node left: {node_left}, affinities: {affs_left}, \
                 allocations: {addrs_left}, sessions to {node3_ip}: \
                 {sessions_left}\n{}",
                sessions.join("\n")
            );
            if !node_left
                && affs_left == 0
                && addrs_left == 0
                && sessions_left == 0
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    assert!(
        released.is_ok(),
        "node3's departure was not released within 60 s (grace {} s):\n{last}",
        margay_lab::DEPARTED_GRACE_SECS
    );

    // `lab down` removes everything: apiserver, etcd, namespaces, files.
    drop(guard);
    let left = leftovers(&opts.state_dir);
    assert!(left.is_empty(), "lab down left: {left:#?}");
    assert!(!opts.state_dir.exists());
}

/// deploy/20-rbac.yaml less one verb the CNI plugin needs (create on
/// ipamblocks): the lab must fail at the first pod, naming the refusal.
#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_lab_fails_when_rbac_misses_a_verb() {
    if !margay_testkit::require_root("kubernetes_lab_rbac_missing_verb") {
        return;
    }
    margay_testkit::kube_apiserver_binary("kubernetes_lab_rbac");
    let _serial = LAB.lock().await;
    let state = tempfile::tempdir().unwrap();
    let deploy = state.path().join("deploy");
    copy_dir(&margay_testkit::deploy_dir(), &deploy);
    let rbac = deploy.join("20-rbac.yaml");
    let text = std::fs::read_to_string(&rbac).unwrap();
    let granted = "resources: [\"ipamblocks\", \"ipamhandles\"]\n    \
                   verbs: [\"get\", \"list\", \"create\", \"update\", \
                   \"delete\"]";
    assert!(text.contains(granted), "the CNI's IPAM rule moved:\n{text}");
    let without = granted.replace("\"create\", ", "");
    std::fs::write(&rbac, text.replace(granted, &without)).unwrap();

    let mut opts = options(state.path(), 1, &deploy);
    opts.pods_per_node = 1;
    let _guard = LabGuard(opts.clone());
    match margay_lab::up(&opts).await {
        Err(LabError::Cni { pod, detail }) => assert!(
            detail.contains("forbidden") && detail.contains("margay-cni"),
            "pod {pod} failed for another reason: {detail}"
        ),
        Err(e) => panic!("failed, but not at the CNI's refused create: {e}"),
        Ok(s) => panic!("a lab missing an RBAC verb came up:\n{}", s.report),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
