//! `ipam show|check|release` against a real etcd, with addresses
//! allocated by margay-ipam exactly as the CNI plugin does.

use margay_datastore::{Datastore, DatastoreSpec};
use margay_ipam::{AssignArgs, Ipam, IpamOptions};
use margay_testkit::EtcdServer;
use margayctl::{ipam, resources};

const SETUP: &str = "\
apiVersion: margay.io/v1
kind: IPPool
metadata:
  name: pods
spec:
  cidr: 10.244.0.0/24
---
apiVersion: margay.io/v1
kind: Node
metadata:
  name: n1
spec: {}
";

#[tokio::test]
async fn show_check_and_release_allocations() {
    let etcd = EtcdServer::start().expect("etcd");
    let spec: DatastoreSpec =
        format!("etcd:{}", etcd.endpoint()).parse().unwrap();
    let ds = Datastore::connect(&spec).await.unwrap();
    resources::apply(&ds, "setup.yaml", SETUP).await.unwrap();

    // Node n1 allocates three addresses for two pods.
    let opts = IpamOptions {
        lock_path: None,
        ..IpamOptions::default()
    };
    let node = Ipam::new(ds.clone(), "n1", opts);
    let mut ips = Vec::new();
    for (handle, n) in [("k8s-pod-network.a", 2), ("k8s-pod-network.b", 1)] {
        let got = node
            .auto_assign(&AssignArgs {
                handle: handle.into(),
                num_v4: n,
                ..AssignArgs::default()
            })
            .await
            .unwrap();
        ips.extend(got.ipv4.into_iter().map(|a| a.ip));
    }
    assert_eq!(ips.len(), 3);

    let text = ipam::show(&ds, true).await.unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "POOL   CIDR            SIZE   IN USE   USE %   BLOCKS   DISABLED"
    );
    assert_eq!(
        lines.next().unwrap(),
        "pods   10.244.0.0/24   256    3        1.2%    1        false"
    );
    let block_row = text.lines().find(|l| l.contains("host:n1")).expect(&text);
    assert!(block_row.ends_with("64     3        4.7%    0"), "{text}");

    let report = ipam::check(&ds).await.unwrap();
    assert!(report.is_clean(), "{report}");

    let out = ipam::release_ip(&ds, ips[2]).await.unwrap();
    assert_eq!(
        out,
        format!("released {} (handle k8s-pod-network.b)\n", ips[2])
    );
    let out = ipam::release_ip(&ds, ips[2]).await.unwrap();
    assert_eq!(out, format!("{} was not allocated\n", ips[2]));
    let out = ipam::release_handle(&ds, "k8s-pod-network.a")
        .await
        .unwrap();
    assert_eq!(
        out,
        format!(
            "released {}, {} (handle k8s-pod-network.a)\n",
            ips[0], ips[1]
        )
    );
    let err = ipam::release_ip(&ds, "192.168.7.7".parse().unwrap()).await;
    assert!(err.is_err(), "{err:?}");

    let text = ipam::show(&ds, false).await.unwrap();
    assert!(text.contains("pods   10.244.0.0/24   256    0 "), "{text}");
    let report = ipam::check(&ds).await.unwrap();
    assert!(report.is_clean(), "{report}");

    // A block whose node is gone is an inconsistency `check` reports.
    resources::delete(&ds, resources::Kind::Node, "n1")
        .await
        .unwrap();
    resources::apply(
        &ds,
        "n2.yaml",
        "apiVersion: margay.io/v1\nkind: Node\nmetadata:\n  name: n2\nspec: {}\n",
    )
    .await
    .unwrap();
    let report = ipam::check(&ds).await.unwrap();
    assert!(!report.is_clean(), "{report}");
    assert!(
        report.to_string().contains("n1, which does not exist"),
        "{report}"
    );
}
