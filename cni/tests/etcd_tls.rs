//! The CNI config's etcd TLS keys (Calico's `etcd_ca_cert_file`,
//! `etcd_cert_file`, `etcd_key_file`, `etcd_scheme`) against an etcd
//! with `--client-cert-auth`: an IPAM ADD with the right files gets an
//! address; without a client certificate it fails as "try again later"
//! (code 11) and takes nothing.

use margay_crds::{IPPool, IPPoolSpec};
use margay_datastore::{Datastore, DatastoreSpec};
use margay_testkit::EtcdServer;
use serde_json::{Value, json};

mod common;
use common::*;

fn ipam_add(id: &str, conf: &Value) -> Out {
    let env = [
        ("CNI_CONTAINERID", id),
        ("CNI_NETNS", "/run/netns/whatever"),
        ("CNI_IFNAME", "eth0"),
    ];
    run_plugin(&ipam_plugin_bin(), "ADD", &env, conf)
}

#[test]
fn ipam_add_over_mutual_tls() {
    let etcd = EtcdServer::start_tls().expect("etcd with TLS");
    let tls = etcd.tls_files().unwrap().clone();
    let spec: DatastoreSpec = format!(
        "etcd:{}?ca_cert_file={}&cert_file={}&key_file={}",
        etcd.endpoint(),
        tls.ca.display(),
        tls.client_cert.display(),
        tls.client_key.display()
    )
    .parse()
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ds = rt.block_on(Datastore::connect(&spec)).unwrap();
    let pool = IPPool::new(
        "pool-a",
        IPPoolSpec {
            cidr: "10.246.0.0/24".into(),
            block_size: Some(28),
            ..IPPoolSpec::default()
        },
    );
    rt.block_on(ds.create(&pool)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let conf = json!({
        "cniVersion": "1.1.0",
        "name": "k8s-pod-network",
        "type": "margay",
        "nodename": "node-tls",
        "datastore_type": "etcdv3",
        "etcd_endpoints": etcd.endpoint(),
        "etcd_scheme": "https",
        "etcd_ca_cert_file": tls.ca,
        "etcd_cert_file": tls.client_cert,
        "etcd_key_file": tls.client_key,
        "ipam_lock_file": dir.path().join("ipam.lock"),
        "ipam": {"type": "margay-ipam"},
    });
    let out = ipam_add("c1", &conf);
    assert!(out.ok, "{}", out.stdout);
    let result: Value = serde_json::from_str(&out.stdout).unwrap();
    let ip = pod_ip(&result);
    assert!(ip.starts_with("10.246.0."), "{ip}");

    // Only the CA: etcd refuses the client; nothing is allocated.
    let mut no_cert = conf.clone();
    let obj = no_cert.as_object_mut().unwrap();
    obj.remove("etcd_cert_file");
    obj.remove("etcd_key_file");
    let out = ipam_add("c2", &no_cert);
    assert!(!out.ok, "{}", out.stdout);
    let err: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(err["code"], 11, "{err}");
    assert!(
        err["msg"]
            .as_str()
            .unwrap()
            .contains("the etcd datastore is unavailable"),
        "{err}"
    );
    let report = rt.block_on(async {
        let opts = margay_ipam::IpamOptions {
            lock_path: None,
            ..Default::default()
        };
        margay_ipam::Ipam::new(ds, "reader", opts)
            .check()
            .await
            .unwrap()
    });
    assert_eq!(report.allocations, 1);
}
