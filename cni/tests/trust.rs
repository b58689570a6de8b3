//! Issue 12 through the binaries, as a runtime invokes them: GC on one
//! node never frees another node's pods (margay and margay-ipam) and
//! removes what its own stale attachments left (veth, endpoint record);
//! a repeated ADD of one attachment takes no second address; a regular
//! file as CNI_NETNS is an environment error (code 4).

use std::path::Path;

use margay_datastore::{Datastore, DatastoreSpec};
use margay_ipam::{Ipam, IpamOptions};
use margay_testkit::{Netns, require_root};
use serde_json::{Value, json};

mod common;
use common::*;

/// `margay-ipam` ADD/CHECK (a delegated IPAM plugin: it never opens the
/// netns).
fn ipam_plugin(cmd: &str, id: &str, conf: &Value) -> Out {
    let env = [
        ("CNI_CONTAINERID", id),
        ("CNI_NETNS", "/run/netns/whatever"),
        ("CNI_IFNAME", "eth0"),
    ];
    run_plugin(&ipam_plugin_bin(), cmd, &env, conf)
}

/// `conf` with its valid-attachments list (ifname eth0).
fn gc_conf(conf: &Value, live: &[&str]) -> Value {
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = live
        .iter()
        .map(|id| json!({"containerID": id, "ifname": "eth0"}))
        .collect();
    gc
}

/// The IPAM report of the fixture's etcd.
fn ipam_report(f: &Fixture) -> margay_ipam::Report {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let spec: DatastoreSpec =
            format!("etcd:{}", f.etcd.endpoint()).parse().unwrap();
        let ds = Datastore::connect(&spec).await.unwrap();
        let opts = IpamOptions {
            lock_path: None,
            ..IpamOptions::default()
        };
        Ipam::new(ds, "reader", opts).check().await.unwrap()
    })
}

#[test]
fn gc_on_one_node_leaves_the_other_nodes_pods() {
    let f = fixture("10.247.0.0/24");
    let mut n2 = f.conf.clone();
    n2["nodename"] = json!("node-two");
    n2["ipam_lock_file"] = json!(f.dir.path().join("n2.lock"));
    let mut checks = Vec::new();
    for (id, conf) in
        [("n1-live", &f.conf), ("n1-gone", &f.conf), ("n2-pod", &n2)]
    {
        let out = ipam_plugin("ADD", id, conf);
        assert!(out.ok, "ADD {id}: {}", out.stdout);
        let mut check = conf.clone();
        check["prevResult"] = serde_json::from_str(&out.stdout).unwrap();
        checks.push((id, check));
    }
    let path = [("CNI_PATH", "/usr/lib/cni")];
    // n1's runtime lists n1's live pod; then nothing at all. Through
    // both binaries.
    for (bin, live) in [
        (plugin_bin(), &["n1-live"][..]),
        (ipam_plugin_bin(), &[][..]),
    ] {
        let out = run_plugin(&bin, "GC", &path, &gc_conf(&f.conf, live));
        assert!(out.ok, "GC: {}", out.stdout);
        let (_, n2_check) = &checks[2];
        let out = ipam_plugin("CHECK", "n2-pod", n2_check);
        assert!(
            out.ok,
            "GC on node-test freed node-two's pod: {}",
            out.stdout
        );
    }
    for (id, check) in &checks[..2] {
        let out = ipam_plugin("CHECK", id, check);
        assert!(!out.ok, "{id} survived the GC of its node");
    }
    // node-two's next pod gets another address than its live one.
    let out = ipam_plugin("ADD", "n2-next", &n2);
    assert!(out.ok, "{}", out.stdout);
    let next: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_ne!(pod_ip(&next), pod_ip(&checks[2].1["prevResult"]));
    let report = ipam_report(&f);
    assert!(report.is_clean(), "{report}");
}

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[test]
fn gc_removes_the_veth_and_record_of_a_stale_attachment() {
    if !require_root("gc_removes_the_veth_and_record_of_a_stale_attachment") {
        return;
    }
    let f = fixture("10.246.0.0/24");
    let (a, b) = (Netns::new("gca").unwrap(), Netns::new("gcb").unwrap());
    let mut links = HostLinks(Vec::new());
    let mut hosts = Vec::new();
    for (id, ns) in [("keep", &a), ("stale", &b)] {
        let out = invoke("ADD", id, Some(&ns.path()), "eth0", &f.conf);
        assert!(out.ok, "ADD {id}: {}", out.stdout);
        let r: Value = serde_json::from_str(&out.stdout).unwrap();
        links.0.push(host_ifname(&r));
        hosts.push(host_ifname(&r));
    }
    // A record of another network in the same directory is not ours.
    let foreign = f.dir.path().join("endpoints/other-eth0.json");
    std::fs::write(
        &foreign,
        r#"{"containerID":"other","ifname":"eth0","hostIface":"mgother","ips":[],"network":"other-net"}"#,
    )
    .unwrap();
    let path = [("CNI_PATH", "/usr/lib/cni")];
    let out =
        run_plugin(&plugin_bin(), "GC", &path, &gc_conf(&f.conf, &["keep"]));
    assert!(out.ok, "GC: {}", out.stdout);
    let records = f.dir.path().join("endpoints");
    assert!(records.join("keep-eth0.json").exists());
    assert!(
        !records.join("stale-eth0.json").exists(),
        "record left behind"
    );
    assert!(foreign.exists(), "GC removed another network's record");
    assert!(link_exists(&hosts[0]));
    assert!(!link_exists(&hosts[1]), "stale host veth left behind");
    let report = ipam_report(&f);
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.allocations, 1, "{report}");
}

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[test]
fn a_repeated_add_rewires_the_same_address() {
    if !require_root("a_repeated_add_rewires_the_same_address") {
        return;
    }
    let f = fixture("10.245.0.0/24");
    let ns = Netns::new("readd").unwrap();
    let mut links = HostLinks(Vec::new());
    let first = invoke("ADD", "twice", Some(&ns.path()), "eth0", &f.conf);
    assert!(first.ok, "ADD: {}", first.stdout);
    let r1: Value = serde_json::from_str(&first.stdout).unwrap();
    links.0.push(host_ifname(&r1));
    let again = invoke("ADD", "twice", Some(&ns.path()), "eth0", &f.conf);
    assert!(again.ok, "second ADD: {}", again.stdout);
    let r2: Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(
        pod_ip(&r1),
        pod_ip(&r2),
        "the second ADD took a new address"
    );
    assert_eq!(host_ifname(&r1), host_ifname(&r2));
    let report = ipam_report(&f);
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.allocations, 1, "{report}");
    // The wiring is whole: the pod answers on its address, and CHECK
    // agrees with the second answer.
    let ping = std::process::Command::new("ping")
        .args(["-c1", "-W2", &pod_ip(&r2)])
        .output()
        .unwrap();
    assert!(ping.status.success(), "host cannot reach the re-added pod");
    let mut check = f.conf.clone();
    check["prevResult"] = r2;
    let out = invoke("CHECK", "twice", Some(&ns.path()), "eth0", &check);
    assert!(out.ok, "CHECK: {}", out.stdout);
    let out = invoke("DEL", "twice", Some(&ns.path()), "eth0", &f.conf);
    assert!(out.ok, "DEL: {}", out.stdout);
    assert_eq!(ipam_report(&f).allocations, 0);
}

#[test]
fn a_regular_file_as_cni_netns_is_an_environment_error() {
    let conf = json!({"cniVersion": "1.0.0", "name": "n", "type": "margay",
        "etcd_endpoints": "http://127.0.0.1:1", "ipam": {"type": "margay-ipam"}});
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-netns");
    std::fs::write(&file, "").unwrap();
    for netns in [file.as_path(), Path::new("/")] {
        let out = invoke("ADD", "c1", Some(netns), "eth0", &conf);
        assert!(!out.ok);
        let err: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(err["code"], 4, "{err}");
        let msg = err["msg"].as_str().unwrap();
        assert!(msg.starts_with("CNI_NETNS: "), "{msg}");
        assert!(msg.contains("is not a network namespace"), "{msg}");
    }
}
