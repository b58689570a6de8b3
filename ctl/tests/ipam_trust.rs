//! `ipam check` on what issue 12 found unreported: a block breaking its
//! invariants (reported by name and field, not a failure of the whole
//! check), and on a node, allocations without an endpoint record and a
//! handle holding a second address of one family.

use margay_crds::IPAMBlock;
use margay_datastore::{Datastore, DatastoreSpec};
use margay_ipam::{AssignArgs, Ipam, IpamOptions, Issue};
use margay_testkit::EtcdServer;
use margayctl::{ipam, resources};

const SETUP: &str = "\
apiVersion: margay.io/v1
kind: IPPool
metadata:
  name: pods
spec:
  cidr: 10.243.0.0/24
  blockSize: 28
---
apiVersion: margay.io/v1
kind: Node
metadata:
  name: n1
spec: {}
";

fn args(handle: &str, n: usize) -> AssignArgs {
    AssignArgs {
        handle: handle.into(),
        num_v4: n,
        ..AssignArgs::default()
    }
}

#[tokio::test]
async fn check_reports_bad_blocks_orphans_and_double_addresses() {
    let etcd = EtcdServer::start().expect("etcd");
    let spec: DatastoreSpec =
        format!("etcd:{}", etcd.endpoint()).parse().unwrap();
    let ds = Datastore::connect(&spec).await.unwrap();
    resources::apply(&ds, "setup.yaml", SETUP).await.unwrap();
    let opts = IpamOptions {
        lock_path: None,
        ..IpamOptions::default()
    };
    let node = Ipam::new(ds.clone(), "n1", opts);
    node.auto_assign(&args("k8s-pod-network.wired", 1))
        .await
        .unwrap();
    let lost = node
        .auto_assign(&args("k8s-pod-network.lost", 1))
        .await
        .unwrap()
        .ipv4[0]
        .ip;
    node.auto_assign(&args("k8s-pod-network.twice", 2))
        .await
        .unwrap();

    // The node's endpoint records: "wired" and "twice" are wired.
    let dir = tempfile::tempdir().unwrap();
    for id in ["wired", "twice"] {
        std::fs::write(
            dir.path().join(format!("{id}-eth0.json")),
            format!(
                r#"{{"containerID":"{id}","ifname":"eth0","hostIface":"mg{id}","ips":[]}}"#
            ),
        )
        .unwrap();
    }
    let report = ipam::check_node(&ds, "n1", "k8s-pod-network", dir.path())
        .await
        .unwrap();
    let text = report.to_string();
    assert!(
        report.issues.contains(&Issue::NoEndpoint {
            ip: lost,
            handle: "k8s-pod-network.lost".into(),
            node: "n1".into(),
        }),
        "{text}"
    );
    assert!(
        text.contains("handle k8s-pod-network.twice holds several"),
        "{text}"
    );
    assert_eq!(report.issues.len(), 2, "{text}");

    // A corrupt block: check still answers, naming it and the field.
    let mut b = ds.list::<IPAMBlock>().await.unwrap().items.remove(0);
    let taken = b.spec.allocations.iter().position(Option::is_some).unwrap();
    b.spec.unallocated.insert(0, taken);
    ds.update(&b).await.unwrap();
    let report = ipam::check(&ds).await.unwrap();
    let text = report.to_string();
    let name = b.metadata.name.clone().unwrap();
    assert!(
        text.contains(&format!(
            "block {name} is invalid and unused: spec.unallocated: lists \
             ordinal {taken} ("
        )),
        "{text}"
    );
    assert!(text.contains("which spec.allocations says is allocated"));
    assert_eq!(report.issues.len(), 1, "{text}");
    assert!(ipam::show(&ds, true).await.is_ok());
}
