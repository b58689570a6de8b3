//! apply / get / delete against a real etcd (margay_testkit::EtcdServer).

use margay_datastore::{Datastore, DatastoreSpec};
use margay_testkit::EtcdServer;
use margayctl::output::Format;
use margayctl::resources::{self, Kind};

const POOLS: &str = "\
apiVersion: margay.io/v1
kind: IPPool
metadata:
  name: default
spec:
  cidr: 10.244.0.0/16
---
apiVersion: margay.io/v1
kind: BGPConfiguration
metadata:
  name: default
spec:
  asNumber: 64600
  nodeToNodeMeshEnabled: false
";

async fn connect(etcd: &EtcdServer) -> Datastore {
    let spec: DatastoreSpec =
        format!("etcd:{}", etcd.endpoint()).parse().unwrap();
    Datastore::connect(&spec).await.unwrap()
}

#[tokio::test]
async fn apply_get_delete_round_trip() {
    let etcd = EtcdServer::start().expect("etcd");
    let ds = connect(&etcd).await;

    let out = resources::apply(&ds, "pools.yaml", POOLS).await.unwrap();
    assert_eq!(out, "ippool/default created\nbgpconfig/default created\n");
    let out = resources::apply(&ds, "pools.yaml", POOLS).await.unwrap();
    assert_eq!(
        out,
        "ippool/default unchanged\nbgpconfig/default unchanged\n"
    );
    let changed = POOLS.replace("asNumber: 64600", "asNumber: 64601");
    let out = resources::apply(&ds, "pools.yaml", &changed).await.unwrap();
    assert_eq!(
        out,
        "ippool/default unchanged\nbgpconfig/default configured\n"
    );

    let table = resources::get(
        &ds,
        Kind::parse("ippools").unwrap(),
        None,
        Format::Table,
        i64::MAX / 2,
    )
    .await
    .unwrap();
    let mut lines = table.lines();
    assert!(
        lines.next().unwrap().starts_with(
            "NAME      CIDR            BLOCK SIZE   DISABLED   AGE"
        ),
        "{table}"
    );
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("default   10.244.0.0/16   26           false"),
        "{table}"
    );
    let yaml = resources::get(
        &ds,
        Kind::BGPConfiguration,
        Some("default"),
        Format::Yaml,
        0,
    )
    .await
    .unwrap();
    assert!(yaml.contains("asNumber: 64601"), "{yaml}");
    assert!(yaml.contains("resourceVersion:"), "{yaml}");
    // What `get -o yaml` prints can be applied again unchanged.
    let out = resources::apply(&ds, "got.yaml", &yaml).await.unwrap();
    assert_eq!(out, "bgpconfig/default unchanged\n");

    // An overlapping pool is refused before anything is written.
    let overlap = "apiVersion: margay.io/v1\nkind: IPPool\nmetadata:\n  name: other\n\
                   spec:\n  cidr: 10.244.128.0/17\n";
    let err = resources::apply(&ds, "o.yaml", overlap)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("o.yaml: invalid resources"), "{err}");
    assert!(err.contains("10.244.128.0/17"), "{err}");
    let err =
        resources::get(&ds, Kind::IPPool, Some("other"), Format::Table, 0)
            .await
            .unwrap_err()
            .to_string();
    assert_eq!(err, "IPPool \"other\" not found");
    // A stored pool's CIDR cannot change (as in Calico): blocks already
    // carved from it would fall outside every pool.
    let moved = POOLS.replace("10.244.0.0/16", "10.245.0.0/16");
    let err = resources::apply(&ds, "pools.yaml", &moved)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "IPPool \"default\": spec.cidr = \"10.245.0.0/16\" is invalid: \
             cannot be changed"
        ),
        "{err}"
    );
    let json = resources::get(&ds, Kind::IPPool, None, Format::Json, 0)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["spec"]["cidr"], "10.244.0.0/16");

    let out = resources::delete(&ds, Kind::IPPool, "default")
        .await
        .unwrap();
    assert_eq!(out, "ippool/default deleted\n");
    let err = resources::delete(&ds, Kind::IPPool, "default")
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(err, "IPPool \"default\" not found");
    let (out, all_found) = resources::delete_file(&ds, "pools.yaml", POOLS)
        .await
        .unwrap();
    assert_eq!(out, "ippool/default not found\nbgpconfig/default deleted\n");
    assert!(!all_found);
    let empty =
        resources::get(&ds, Kind::BGPConfiguration, None, Format::Table, 0)
            .await
            .unwrap();
    assert_eq!(empty, "No bgpconfig resources found.\n");
}

#[tokio::test]
async fn apply_reports_document_errors_with_the_file_name() {
    let etcd = EtcdServer::start().expect("etcd");
    let ds = connect(&etcd).await;
    let typo = POOLS.replace("cidr:", "cdir:");
    let err = resources::apply(&ds, "bad.yaml", &typo)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("bad.yaml: "), "{err}");
    assert!(err.contains("cdir"), "{err}");
    // Nothing was written.
    let list = ds.list::<margay_crds::IPPool>().await.unwrap();
    assert!(list.items.is_empty());
}

/// Service advertisement needs Services, which only the kubernetes
/// datastore has: on etcd `apply` refuses the fields by name.
#[tokio::test]
async fn apply_refuses_service_ranges_without_a_service_source() {
    let etcd = EtcdServer::start().expect("etcd");
    let ds = connect(&etcd).await;
    let cfg = "apiVersion: margay.io/v1\nkind: BGPConfiguration\n\
               metadata: {name: default}\n\
               spec: {serviceClusterIPs: [{cidr: 10.96.0.0/12}]}\n";
    let err = resources::apply(&ds, "c.yaml", cfg)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("spec.serviceClusterIPs"), "{err}");
    assert!(err.contains("needs the kubernetes datastore"), "{err}");
    let list = ds.list::<margay_crds::BGPConfiguration>().await.unwrap();
    assert!(list.items.is_empty());
}

const FILTER: &str = "\
apiVersion: margay.io/v1
kind: BGPFilter
metadata:
  name: export-pods
spec:
  exportV4:
    - cidr: 10.244.0.0/16
      matchOperator: In
      action: Accept
";

const PEER: &str = "\
apiVersion: margay.io/v1
kind: BGPPeer
metadata:
  name: tor
spec:
  peerIP: 192.0.2.1
  asNumber: 65001
  filters: [export-pods]
";

/// A BGPPeer may name a BGPFilter applied earlier; a missing one is
/// still refused, listing the stored filters.
#[tokio::test]
async fn apply_validates_against_stored_objects() {
    let etcd = EtcdServer::start().expect("etcd");
    let ds = connect(&etcd).await;
    let out = resources::apply(&ds, "f.yaml", FILTER).await.unwrap();
    assert_eq!(out, "bgpfilter/export-pods created\n");
    let out = resources::apply(&ds, "p.yaml", PEER).await.unwrap();
    assert_eq!(out, "bgppeer/tor created\n");
    let other = PEER.replace("[export-pods]", "[export-pods, nope]");
    let err = resources::apply(&ds, "p.yaml", &other)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no BGPFilter named \"nope\"; defined: export-pods"),
        "{err}"
    );
}

/// Calico: blockSize cannot change on update, and a new pool cannot take
/// another block size than stored blocks inside it. blockSize 0 is the
/// default, so it is no change.
#[tokio::test]
async fn pool_block_size_is_immutable_while_blocks_exist() {
    let etcd = EtcdServer::start().expect("etcd");
    let ds = connect(&etcd).await;
    resources::apply(&ds, "p.yaml", POOLS).await.unwrap();
    let zero = POOLS
        .replace("cidr: 10.244.0.0/16", "cidr: 10.244.0.0/16\n  blockSize: 0");
    resources::apply(&ds, "p.yaml", &zero).await.unwrap();
    let resized = POOLS.replace(
        "cidr: 10.244.0.0/16",
        "cidr: 10.244.0.0/16\n  blockSize: 28",
    );
    let err = resources::apply(&ds, "p.yaml", &resized)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("spec.blockSize = 28 is invalid: cannot be changed"),
        "{err}"
    );
    let block = "apiVersion: margay.io/v1\nkind: IPAMBlock\nmetadata:\n  name: \
                 10-244-0-0-26\nspec:\n  cidr: 10.244.0.0/26\n  affinity: \
                 host:n1\n  allocations: []\n  unallocated: []\n  \
                 attributes: []\n";
    resources::apply(&ds, "b.yaml", block).await.unwrap();
    resources::delete(&ds, Kind::IPPool, "default")
        .await
        .unwrap();
    let err = resources::apply(&ds, "p.yaml", &resized)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "spec.blockSize = 28 is invalid: conflicts with the stored \
             IPAMBlock 10.244.0.0/26"
        ),
        "{err}"
    );
    resources::apply(&ds, "p.yaml", POOLS).await.unwrap();
}
