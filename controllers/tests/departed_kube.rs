//! The departed-node controller against a real kube-apiserver, with the
//! margay-controllers ServiceAccount of deploy/40-controllers.yaml: a
//! deleted Kubernetes Node loses its margay Node, affinities and
//! addresses after the grace period while another node's stay; of two
//! instances only the Lease holder acts; the other takes over once the
//! holder stops.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node as KubeNode;
use kube::Api;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use margay_controllers::lease::LeaseConfig;
use margay_controllers::run::{Config, Stats, run};
use margay_crds::{
    BlockAffinity, IPAMBlock, IPAMHandle, IPPool, IPPoolSpec, Node, NodeSpec,
};
use margay_datastore::{Datastore, KubeStore};
use margay_ipam::{AssignArgs, Ipam, IpamOptions};
use margay_testkit::{KubeApiServer, deploy_dir, kube_apiserver_binary};

const NS: &str = "margay-system";

async fn wait(what: &str, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ok().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Node `name` on both sides, with one pod address allocated by it.
async fn add_node(
    admin: &Datastore,
    kube: &Api<KubeNode>,
    name: &str,
) -> IpAddr {
    let kn = KubeNode {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..KubeNode::default()
    };
    kube.create(&PostParams::default(), &kn).await.unwrap();
    admin
        .create(&Node::new(name, NodeSpec::default()))
        .await
        .unwrap();
    let opts = IpamOptions {
        lock_path: None,
        ..IpamOptions::default()
    };
    let ipam = Ipam::new(admin.clone(), name, opts);
    let args = AssignArgs {
        handle: format!("k8s-pod-network.{name}-pod"),
        num_v4: 1,
        attrs: BTreeMap::from([
            ("namespace".to_string(), "default".to_string()),
            ("pod".to_string(), format!("{name}-pod")),
        ]),
        ..AssignArgs::default()
    };
    let got = ipam.auto_assign(&args).await.unwrap();
    assert_eq!(got.ipv4.len(), 1);
    got.ipv4[0].ip
}

/// What `node` still holds: (margay Node, affinities, allocations by it,
/// its handle).
async fn holdings(ds: &Datastore, node: &str) -> (bool, usize, usize, bool) {
    let exists = ds.get::<Node>(node).await.unwrap().is_some();
    let affs = ds
        .list::<BlockAffinity>()
        .await
        .unwrap()
        .items
        .iter()
        .filter(|a| a.spec.node == node && !a.spec.deleted)
        .count();
    let allocs = ds
        .list::<IPAMBlock>()
        .await
        .unwrap()
        .items
        .iter()
        .flat_map(|b| {
            b.spec
                .allocations
                .iter()
                .flatten()
                .filter_map(|i| b.spec.attributes.get(*i))
                .collect::<Vec<_>>()
        })
        .filter(|a| a.secondary.get("node").map(String::as_str) == Some(node))
        .count();
    let handle = ds
        .get::<IPAMHandle>(&format!("k8s-pod-network.{node}-pod"))
        .await
        .unwrap()
        .is_some();
    (exists, affs, allocs, handle)
}

fn config(identity: &str) -> Config {
    Config {
        grace: Duration::from_secs(1),
        pod_grace: Duration::from_secs(3600),
        tick: Duration::from_millis(200),
        lease: LeaseConfig {
            namespace: NS.into(),
            name: "margay-controllers".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(3),
            renew_every: Duration::from_secs(1),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn departed_nodes_are_released_by_the_lease_holder_only() {
    kube_apiserver_binary(
        "departed_nodes_are_released_by_the_lease_holder_only",
    );
    let server = KubeApiServer::start().await.expect("kube-apiserver starts");
    server.install_margay().await.expect("deploy/ applies");
    server
        .apply_file(&deploy_dir().join("40-controllers.yaml"))
        .await
        .expect("deploy/40-controllers.yaml applies");
    let admin = Datastore::Kubernetes(KubeStore::from_client(server.admin()));
    let kube: Api<KubeNode> = Api::all(server.admin());
    admin
        .create(&IPPool::new(
            "pool",
            IPPoolSpec {
                cidr: "10.50.0.0/16".into(),
                block_size: Some(26),
                ..IPPoolSpec::default()
            },
        ))
        .await
        .unwrap();
    let mut ips = Vec::new();
    for n in ["n1", "n2", "n3"] {
        ips.push(add_node(&admin, &kube, n).await);
    }
    assert_eq!(holdings(&admin, "n1").await, (true, 1, 1, true));
    // n3 borrows an address from n1's block: it must survive n1.
    let IpAddr::V4(n1_ip) = ips[0] else { panic!() };
    let borrowed = IpAddr::V4((u32::from(n1_ip) + 1).into());
    let n3 = Ipam::new(
        admin.clone(),
        "n3",
        IpamOptions {
            lock_path: None,
            ..IpamOptions::default()
        },
    );
    n3.assign_ip(borrowed, "k8s-pod-network.n3-borrowed", &BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(holdings(&admin, "n3").await, (true, 1, 2, true));

    // Two instances, as margay-controllers.
    let mut instances = Vec::new();
    for id in ["a", "b"] {
        let client = server
            .service_account_client(NS, "margay-controllers")
            .await
            .unwrap();
        let ds = Datastore::Kubernetes(KubeStore::from_client(client.clone()));
        let stats = Arc::new(Stats::default());
        let task = tokio::spawn(run(client, ds, config(id), stats.clone()));
        instances.push((id, task, stats));
    }
    let leases: Api<Lease> = Api::namespaced(server.admin(), NS);
    let holder = async || {
        leases
            .get_opt("margay-controllers")
            .await
            .unwrap()
            .and_then(|l| l.spec?.holder_identity)
    };
    wait("a lease holder", async || holder().await.is_some()).await;
    let first = holder().await.unwrap();

    kube.delete("n1", &DeleteParams::default()).await.unwrap();
    wait("n1 released", async || {
        // n1's affinity goes although its block holds n3's address.
        holdings(&admin, "n1").await == (false, 0, 0, false)
    })
    .await;
    let orphan = admin
        .list::<IPAMBlock>()
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|b| b.spec.cidr_net().is_ok_and(|c| c.contains(borrowed)))
        .expect("n1's block stays: it holds n3's address");
    let n1_block = orphan.metadata.name.clone().unwrap();
    assert_eq!(orphan.spec.affinity, None, "n1's block is affine to none");
    assert_eq!(holdings(&admin, "n2").await, (true, 1, 1, true));
    assert_eq!(holdings(&admin, "n3").await, (true, 1, 2, true));
    let borrowed_handle = "k8s-pod-network.n3-borrowed";
    assert!(
        admin
            .get::<IPAMHandle>(borrowed_handle)
            .await
            .unwrap()
            .is_some()
    );
    let (leader_idx, _) = instances
        .iter()
        .enumerate()
        .find(|(_, (id, _, _))| *id == first)
        .unwrap();
    let done = |i: usize| instances[i].2.cleanups.load(Ordering::Relaxed);
    assert_eq!(done(leader_idx), 1, "the holder cleaned n1 up");
    assert_eq!(done(1 - leader_idx), 0, "the follower did nothing");

    // The holder stops; the other takes over after the lease duration.
    instances[leader_idx].1.abort();
    kube.delete("n2", &DeleteParams::default()).await.unwrap();
    wait("n2 released", async || {
        holdings(&admin, "n2").await == (false, 0, 0, false)
    })
    .await;
    assert_eq!(done(1 - leader_idx), 1, "the new holder cleaned n2 up");
    assert_ne!(holder().await.unwrap(), first);
    assert_eq!(holdings(&admin, "n3").await, (true, 1, 2, true));
    for (_, t, _) in &instances {
        t.abort();
    }

    // n3 releases its borrowed address: the emptied block goes.
    assert_eq!(
        n3.release_by_handle(borrowed_handle).await.unwrap(),
        vec![borrowed]
    );
    assert!(admin.get::<IPAMBlock>(&n1_block).await.unwrap().is_none());
}

/// A pod-named allocation whose pod is gone is released after the pod
/// grace period; one whose pod exists stays, until that pod goes too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_of_gone_pods_are_released() {
    use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ServiceAccount};
    kube_apiserver_binary("addresses_of_gone_pods_are_released");
    let server = KubeApiServer::start().await.expect("kube-apiserver starts");
    server.install_margay().await.expect("deploy/ applies");
    server
        .apply_file(&deploy_dir().join("40-controllers.yaml"))
        .await
        .expect("deploy/40-controllers.yaml applies");
    let admin = Datastore::Kubernetes(KubeStore::from_client(server.admin()));
    let kube: Api<KubeNode> = Api::all(server.admin());
    admin
        .create(&IPPool::new(
            "pool",
            IPPoolSpec {
                cidr: "10.60.0.0/16".into(),
                block_size: Some(26),
                ..IPPoolSpec::default()
            },
        ))
        .await
        .unwrap();
    // No controller-manager here: the default ServiceAccount by hand.
    let sas: Api<ServiceAccount> = Api::namespaced(server.admin(), "default");
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("default".into()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    sas.create(&PostParams::default(), &sa).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(server.admin(), "default");
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some("n1-pod".into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            automount_service_account_token: Some(false),
            containers: vec![Container {
                name: "c".into(),
                image: Some("pause".into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    };
    pods.create(&PostParams::default(), &pod).await.unwrap();
    // n1's pod exists; n2's ("n2-pod") never did.
    add_node(&admin, &kube, "n1").await;
    add_node(&admin, &kube, "n2").await;

    let client = server
        .service_account_client(NS, "margay-controllers")
        .await
        .unwrap();
    let ds = Datastore::Kubernetes(KubeStore::from_client(client.clone()));
    let stats = Arc::new(Stats::default());
    let mut cfg = config("a");
    cfg.grace = Duration::from_secs(3600);
    cfg.pod_grace = Duration::from_secs(1);
    let task = tokio::spawn(run(client, ds, cfg, stats.clone()));

    // Only the address (and handle) go: the node keeps its block.
    wait("n2-pod's address released", async || {
        holdings(&admin, "n2").await == (true, 1, 0, false)
    })
    .await;
    assert_eq!(holdings(&admin, "n1").await, (true, 1, 1, true));
    pods.delete("n1-pod", &DeleteParams::default())
        .await
        .unwrap();
    wait("n1-pod's address released", async || {
        holdings(&admin, "n1").await == (true, 1, 0, false)
    })
    .await;
    assert_eq!(stats.released_handles.load(Ordering::Relaxed), 2);
    task.abort();
}
