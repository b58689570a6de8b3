//! Kubernetes Node labels follow onto the margay Node, against a real
//! kube-apiserver, with margay-node's own ServiceAccount token (so the
//! RBAC of deploy/20-rbac.yaml is what authorizes the watch).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node as KubeNode;
use kube::Api;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use margay_crds::Node;
use margay_datastore::{Datastore, KubeStore};
use margay_node::kube_node::{self, KUBE_LABELS_ANNOTATION};
use margay_node::register::{Registration, register};
use margay_testkit::{KubeApiServer, kube_apiserver_binary};

const NS: &str = "margay-system";

/// Waits (up to 30 s) until the margay Node `name` satisfies `ok`.
async fn wait_node(
    ds: &Datastore,
    name: &str,
    what: &str,
    ok: impl Fn(&Node) -> bool,
) -> Node {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(n) = ds.get::<Node>(name).await.unwrap()
            && ok(&n)
        {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "margay Node {name}: never {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn label<'a>(n: &'a Node, k: &str) -> Option<&'a str> {
    n.metadata.labels.as_ref()?.get(k).map(String::as_str)
}

async fn set_kube_label(
    api: &Api<KubeNode>,
    node: &str,
    k: &str,
    v: Option<&str>,
) {
    let patch = serde_json::json!({ "metadata": { "labels": { k: v } } });
    api.patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patching the Kubernetes Node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_node_labels_follow_onto_the_margay_node() {
    kube_apiserver_binary("kubernetes_node_labels_follow_onto_the_margay_node");
    let server = KubeApiServer::start().await.expect("kube-apiserver starts");
    server.install_margay().await.expect("deploy/ applies");
    let admin: Api<KubeNode> = Api::all(server.admin());
    let kn = KubeNode {
        metadata: ObjectMeta {
            name: Some("n1".into()),
            labels: Some(BTreeMap::from([
                ("rack".to_string(), "r1".to_string()),
                ("zone".to_string(), "kube".to_string()),
            ])),
            ..ObjectMeta::default()
        },
        ..KubeNode::default()
    };
    admin.create(&PostParams::default(), &kn).await.unwrap();

    // What margay-node does at start, as its ServiceAccount.
    let client = server
        .service_account_client(NS, "margay-node")
        .await
        .unwrap();
    let ds = Datastore::Kubernetes(KubeStore::from_client(client.clone()));
    let found = kube_node::get(&client, "n1")
        .await
        .unwrap()
        .expect("n1 exists");
    let reg = Registration {
        name: "n1".into(),
        ipv4: Some("10.77.0.11/24".parse().unwrap()),
        // --label zone=cli wins over the Kubernetes label.
        labels: BTreeMap::from([("zone".to_string(), "cli".to_string())]),
        kube_labels: found.metadata.labels.clone(),
        ..Registration::default()
    };
    register(&ds, &reg, Duration::from_secs(30)).await.unwrap();
    let n = ds.get::<Node>("n1").await.unwrap().unwrap();
    assert_eq!(label(&n, "rack"), Some("r1"));
    assert_eq!(label(&n, "zone"), Some("cli"));
    assert!(
        n.metadata
            .annotations
            .as_ref()
            .unwrap()
            .contains_key(KUBE_LABELS_ANNOTATION)
    );

    // An operator's label on the margay Node survives every sync.
    let mut n = n;
    n.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("route-reflector".into(), "true".into());
    ds.update(&n).await.unwrap();

    let sync = tokio::spawn(kube_node::sync_labels(client, ds.clone(), reg));

    set_kube_label(&admin, "n1", "rack", Some("r2")).await;
    wait_node(&ds, "n1", "rack=r2", |n| label(n, "rack") == Some("r2")).await;
    set_kube_label(&admin, "n1", "topology.kubernetes.io/zone", Some("z1"))
        .await;
    let n = wait_node(&ds, "n1", "has the zone label", |n| {
        label(n, "topology.kubernetes.io/zone") == Some("z1")
    })
    .await;
    assert_eq!(label(&n, "route-reflector"), Some("true"));

    set_kube_label(&admin, "n1", "rack", None).await;
    let n =
        wait_node(&ds, "n1", "lost rack", |n| label(n, "rack").is_none()).await;
    assert_eq!(label(&n, "route-reflector"), Some("true"));
    assert_eq!(label(&n, "topology.kubernetes.io/zone"), Some("z1"));
    // Kubernetes drops `zone`: the --label value stays.
    set_kube_label(&admin, "n1", "zone", None).await;
    set_kube_label(&admin, "n1", "marker", Some("m")).await;
    let n =
        wait_node(&ds, "n1", "has marker", |n| label(n, "marker") == Some("m"))
            .await;
    assert_eq!(label(&n, "zone"), Some("cli"));
    sync.abort();
}
