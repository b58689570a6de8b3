//! The default IPPool of a first install, against a real kube-apiserver,
//! as margay-node's ServiceAccount: every node starting at once makes one
//! pool, and an operator's pool is never overwritten or joined by one.

use futures::future::join_all;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use margay_crds::{IPPool, IPPoolSpec};
use margay_datastore::{Datastore, KubeStore};
use margay_node::default_pool::{self, Ensured};
use margay_testkit::{KubeApiServer, kube_apiserver_binary};

const NS: &str = "margay-system";

async fn node_ds(server: &KubeApiServer) -> Datastore {
    let client = server
        .service_account_client(NS, "margay-node")
        .await
        .unwrap();
    Datastore::Kubernetes(KubeStore::from_client(client))
}

fn env(pairs: &[(&str, &str)]) -> Vec<IPPool> {
    default_pool::from_env(|k| {
        pairs
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_at_once_makes_one_pool_and_operator_pools_win() {
    kube_apiserver_binary(
        "every_node_at_once_makes_one_pool_and_operator_pools_win",
    );
    let server = KubeApiServer::start().await.expect("kube-apiserver starts");
    server.install_margay().await.expect("deploy/ applies");
    let pools = env(&[
        ("CALICO_IPV4POOL_CIDR", "10.244.0.0/16"),
        ("CALICO_IPV4POOL_BLOCK_SIZE", "26"),
    ]);

    // Eight nodes start at once.
    let mut stores = Vec::new();
    for _ in 0..8 {
        stores.push(node_ds(&server).await);
    }
    let results =
        join_all(stores.iter().map(|ds| default_pool::ensure(ds, &pools)))
            .await;
    let outcomes: Vec<Ensured> =
        results.into_iter().flat_map(|r| r.unwrap()).collect();
    let created = outcomes
        .iter()
        .filter(|o| matches!(o, Ensured::Created(_)))
        .count();
    assert_eq!(created, 1, "{outcomes:?}");
    let admin: Api<IPPool> = Api::all(server.admin());
    let all = admin.list(&Default::default()).await.unwrap().items;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].spec.cidr, "10.244.0.0/16");
    assert_eq!(all[0].spec.block_size, Some(26));
    // A restart finds it and does nothing (idempotent).
    let again = default_pool::ensure(&stores[0], &pools).await.unwrap();
    assert_eq!(again, [Ensured::PoolsExist("default-ipv4-ippool".into())]);

    // An operator's own pool: no default pool joins it, nothing changes.
    admin
        .delete("default-ipv4-ippool", &DeleteParams::default())
        .await
        .unwrap();
    let ops = IPPool::new(
        "ops",
        IPPoolSpec {
            cidr: "10.9.0.0/16".into(),
            ..IPPoolSpec::default()
        },
    );
    let ops = admin.create(&PostParams::default(), &ops).await.unwrap();
    let done = default_pool::ensure(&stores[1], &pools).await.unwrap();
    assert_eq!(done, [Ensured::PoolsExist("default-ipv4-ippool".into())]);
    let all = admin.list(&Default::default()).await.unwrap().items;
    assert_eq!(all.len(), 1);
    assert_eq!(
        all[0].metadata.resource_version,
        ops.metadata.resource_version
    );

    // Families are separate: an IPv6 default pool still comes.
    let v6 = env(&[("CALICO_IPV6POOL_CIDR", "fd00:10:244::/48")]);
    let done = default_pool::ensure(&stores[2], &v6).await.unwrap();
    assert_eq!(done, [Ensured::Created("default-ipv6-ippool".into())]);
}
