//! The `margay` binary invoked exactly as a runtime does (CNI_* env +
//! stdin JSON, stdout read back), with IPAM on a real etcd, wiring pods
//! in throwaway network namespaces. Needs root; ignored otherwise.

use std::path::Path;
use std::process::Command;

use margay_crds::{IPPool, IPPoolSpec};
use margay_datastore::{Datastore, DatastoreSpec};
use margay_testkit::{Netns, require_root};
use serde_json::{Value, json};

mod common;
use common::*;

/// `margay-ipam` (a delegated IPAM plugin: it never opens the netns).
fn ipam_plugin(cmd: &str, id: &str, conf: &Value) -> Out {
    let env = [
        ("CNI_CONTAINERID", id),
        ("CNI_NETNS", "/run/netns/whatever"),
        ("CNI_IFNAME", "eth0"),
    ];
    run_plugin(&ipam_plugin_bin(), cmd, &env, conf)
}

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[test]
fn add_ping_check_del() {
    if !require_root("add_ping_check_del") {
        return;
    }
    let f = fixture("10.251.0.0/24");
    let a = Netns::new("cnia").unwrap();
    let b = Netns::new("cnib").unwrap();
    let mut links = HostLinks(Vec::new());

    let out = invoke("ADD", "ctr-a", Some(&a.path()), "eth0", &f.conf);
    assert!(out.ok, "ADD a: {}", out.stdout);
    let ra: Value = serde_json::from_str(&out.stdout).unwrap();
    links.0.push(host_ifname(&ra));
    assert_eq!(ra["cniVersion"], "1.1.0");
    assert_eq!(ra["interfaces"][0]["mac"], "ee:ee:ee:ee:ee:ee");
    assert_eq!(ra["interfaces"][1]["name"], "eth0");
    assert_eq!(
        ra["interfaces"][1]["sandbox"],
        a.path().display().to_string()
    );
    assert!(ra["ips"][0]["address"].as_str().unwrap().ends_with("/32"));
    assert_eq!(ra["routes"][0]["gw"], "169.254.1.1");
    let ip_a = pod_ip(&ra);
    assert!(ip_a.starts_with("10.251.0."), "{ip_a}");

    let out = invoke("ADD", "ctr-b", Some(&b.path()), "eth0", &f.conf);
    assert!(out.ok, "ADD b: {}", out.stdout);
    let rb: Value = serde_json::from_str(&out.stdout).unwrap();
    links.0.push(host_ifname(&rb));
    let ip_b = pod_ip(&rb);
    assert_ne!(ip_a, ip_b);

    // The endpoint record for felix-lite.
    let rec: Value = serde_json::from_slice(
        &std::fs::read(f.dir.path().join("endpoints/ctr-a-eth0.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(rec["hostIface"], host_ifname(&ra));

    // Host -> pod and pod -> pod on the same node.
    let ping = Command::new("ping")
        .args(["-c1", "-W2", &ip_a])
        .output()
        .unwrap();
    assert!(ping.status.success(), "host -> pod a: {ping:?}");
    a.exec(&["sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"])
        .ok();
    b.exec(&["ping", "-c1", "-W2", &ip_a])
        .expect("pod b -> pod a");
    a.exec(&["ping", "-c1", "-W2", &ip_b])
        .expect("pod a -> pod b");

    // CHECK passes, then names a deleted host route.
    let mut check_conf = f.conf.clone();
    check_conf["prevResult"] = ra.clone();
    let out = invoke("CHECK", "ctr-a", Some(&a.path()), "eth0", &check_conf);
    assert!(out.ok, "CHECK: {}", out.stdout);
    let st = Command::new("ip")
        .args(["route", "del", &format!("{ip_a}/32")])
        .status()
        .unwrap();
    assert!(st.success());
    let out = invoke("CHECK", "ctr-a", Some(&a.path()), "eth0", &check_conf);
    assert!(!out.ok);
    let err: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(err["code"], 103);
    let want = format!(
        "host route {ip_a}/32 dev {} scope link is missing",
        host_ifname(&ra)
    );
    assert!(err["msg"].as_str().unwrap().contains(&want), "{err}");

    // DEL twice, the second finding nothing; the netns may be gone too.
    for _ in 0..2 {
        let out = invoke("DEL", "ctr-a", Some(&a.path()), "eth0", &f.conf);
        assert!(out.ok, "DEL: {}", out.stdout);
        assert_eq!(out.stdout, "");
    }
    assert!(!link_exists(&host_ifname(&ra)));
    assert!(!f.dir.path().join("endpoints/ctr-a-eth0.json").exists());
    drop(b);
    let out = invoke("DEL", "ctr-b", None, "eth0", &f.conf);
    assert!(out.ok, "DEL without netns: {}", out.stdout);
    assert!(!link_exists(&host_ifname(&rb)));

    // The released address is free again: a new pod gets an address and
    // CHECK on the deleted one's IPAM fails.
    let out = invoke("CHECK", "ctr-a", Some(&a.path()), "eth0", &check_conf);
    assert!(!out.ok);
    assert!(
        out.stdout
            .contains("IPAM: handle k8s-pod-network.ctr-a no longer holds"),
        "{}",
        out.stdout
    );
}

/// `num_queues` (Calico's) sets the TX and RX queues of both ends; left
/// out, both get one, as in Calico, and not one per CPU.
#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[test]
fn num_queues_sets_both_ends() {
    if !require_root("num_queues_sets_both_ends") {
        return;
    }
    let f = fixture("10.253.0.0/24");
    let mut links = HostLinks(Vec::new());
    for (id, queues) in [("ctr-q1", None), ("ctr-q3", Some(3))] {
        let ns = Netns::new(&format!("cni{id}")).unwrap();
        let mut conf = f.conf.clone();
        if let Some(q) = queues {
            conf["num_queues"] = json!(q);
        }
        let out = invoke("ADD", id, Some(&ns.path()), "eth0", &conf);
        assert!(out.ok, "ADD {id}: {}", out.stdout);
        let r: Value = serde_json::from_str(&out.stdout).unwrap();
        let host = host_ifname(&r);
        links.0.push(host.clone());
        let shown = Command::new("ip")
            .args(["-d", "link", "show", &host])
            .output()
            .unwrap();
        let want = queues.unwrap_or(1);
        let want = format!("numtxqueues {want} numrxqueues {want}");
        let host_side = String::from_utf8_lossy(&shown.stdout);
        assert!(
            host_side.contains(&want),
            "host end, want {want}: {host_side}"
        );
        let pod_side = ns.exec(&["ip", "-d", "link", "show", "eth0"]).unwrap();
        assert!(pod_side.contains(&want), "pod end, want {want}: {pod_side}");
        let out = invoke("DEL", id, Some(&ns.path()), "eth0", &conf);
        assert!(out.ok, "DEL {id}: {}", out.stdout);
    }
}

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[test]
fn failed_add_leaves_nothing_behind() {
    if !require_root("failed_add_leaves_nothing_behind") {
        return;
    }
    let f = fixture("10.252.0.0/24");
    let a = Netns::new("cnif").unwrap();
    // CNI_IFNAME already taken inside the container: ADD must fail after
    // allocating and undo everything.
    a.exec(&[
        "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "tmp0",
    ])
    .unwrap();
    let out = invoke("ADD", "ctr-f", Some(&a.path()), "eth0", &f.conf);
    assert!(!out.ok);
    let err: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(err["code"], 102, "{err}");
    assert!(
        err["msg"]
            .as_str()
            .unwrap()
            .contains("already exists in the container"),
        "{err}"
    );
    let derived = margay_cni::veth::host_ifname("ctr-f", "eth0");
    let _guard = HostLinks(vec![derived.clone()]);
    assert!(!link_exists(&derived), "host veth left behind");
    assert!(!f.dir.path().join("endpoints/ctr-f-eth0.json").exists());
    // The address was released: a fresh ADD in another netns gets the
    // same first address of the block again.
    a.exec(&["ip", "link", "del", "eth0"]).unwrap();
    // A host end left by an earlier attempt (here a veth of that name
    // whose peer stayed in the host) is replaced by the retry.
    let st = std::process::Command::new("ip")
        .args(["link", "add", &derived, "type", "veth", "peer", "mgstale0"])
        .status()
        .unwrap();
    assert!(st.success());
    let out = invoke("ADD", "ctr-f", Some(&a.path()), "eth0", &f.conf);
    assert!(out.ok, "retry ADD: {}", out.stdout);
    let r: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(host_ifname(&r), derived);
    let kind = std::process::Command::new("ip")
        .args(["-d", "link", "show", &derived])
        .output()
        .unwrap();
    let kind = String::from_utf8_lossy(&kind.stdout);
    assert!(
        kind.contains("ee:ee:ee:ee:ee:ee"),
        "not the new veth: {kind}"
    );
    assert!(!link_exists("mgstale0"), "the stale pair was not removed");
    let out = invoke("DEL", "ctr-f", Some(&a.path()), "eth0", &f.conf);
    assert!(out.ok);
}

#[test]
fn bad_env_and_config_errors_on_stdout() {
    // No root needed: these fail before touching anything.
    let conf = json!({"cniVersion": "1.0.0", "name": "n", "type": "margay",
        "etcd_endpoints": "http://127.0.0.1:1", "ipam": {"type": "margay-ipam"}, "bogus": 1});
    let out =
        invoke("ADD", "c1", Some(Path::new("/nonexistent")), "eth0", &conf);
    assert!(!out.ok);
    assert_eq!(
        out.stdout.trim(),
        r#"{"cniVersion":"1.0.0","code":2,"msg":"unsupported field \"bogus\" = 1","details":"allowed here: cniVersion, name, type, nodename, nodename_file, datastore_type, etcd_endpoints, etcd_scheme, etcd_key_file, etcd_cert_file, etcd_ca_cert_file, datastore_file, kubernetes, mtu, num_queues, log_level, log_file_path, ipam, ipam_lock_file, container_settings, endpoint_dir, agent_socket, dns, ipMasq, capabilities, runtimeConfig, args, prevResult, cni.dev/valid-attachments, policy"}"#
    );
    let out = invoke("ADD", "c1", None, "eth0", &conf);
    assert_eq!(
        out.stdout.trim(),
        r#"{"cniVersion":"1.0.0","code":4,"msg":"CNI_NETNS: not set (required for ADD)"}"#
    );
    let out = invoke(
        "VERSION",
        "c1",
        None,
        "eth0",
        &json!({"cniVersion": "1.0.0"}),
    );
    assert!(out.ok);
    assert_eq!(
        out.stdout.trim(),
        r#"{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0","1.1.0"]}"#
    );
}

#[test]
fn ipam_plugin_add_check_del() {
    // margay-ipam as a delegated IPAM plugin: an IPAM result (no
    // interfaces), CHECK against it, DEL releasing it.
    let f = fixture("10.254.0.0/24");
    let mut conf = f.conf.clone();
    conf["type"] = json!("bridge");
    conf["bridge"] = json!("cni0"); // the main plugin's field: ignored
    let run = |cmd: &str, conf: &Value| {
        let out = ipam_plugin(cmd, "ipam-ctr", conf);
        (out.ok, out.stdout)
    };
    let (ok, out) = run("ADD", &conf);
    assert!(ok, "{out}");
    let res: Value = serde_json::from_str(&out).unwrap();
    assert!(res.get("interfaces").is_none(), "{res}");
    assert!(res["ips"][0].get("interface").is_none());
    assert!(
        res["ips"][0]["address"]
            .as_str()
            .unwrap()
            .starts_with("10.254.0.")
    );
    let mut check = conf.clone();
    check["prevResult"] = res;
    assert!(run("CHECK", &check).0);
    assert!(run("DEL", &conf).0);
    assert!(run("DEL", &conf).0, "second DEL");
    let (ok, out) = run("CHECK", &check);
    assert!(!ok);
    assert!(out.contains("no longer holds"), "{out}");
}

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[test]
fn dual_stack_add_del_and_status_follow_node_selector() {
    if !require_root("dual_stack_add_del_and_status_follow_node_selector") {
        return;
    }
    let f = fixture("10.253.0.0/24");
    let endpoint = f.conf["etcd_endpoints"].as_str().unwrap().to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ds = rt.block_on(async {
        let spec: DatastoreSpec = format!("etcd:{endpoint}").parse().unwrap();
        let ds = Datastore::connect(&spec).await.unwrap();
        let pool = IPPool::new(
            "pool-v6",
            IPPoolSpec {
                cidr: "fd00:253::/112".into(),
                block_size: Some(122),
                ..IPPoolSpec::default()
            },
        );
        ds.create(&pool).await.unwrap();
        ds
    });
    let mut conf = f.conf.clone();
    conf["ipam"]["assign_ipv6"] = json!("true");
    let ns = Netns::new("mgds").unwrap();
    let nsp = ns.path();
    let mut links = HostLinks(Vec::new());

    let out = invoke("STATUS", "ds-ctr", None, "eth0", &conf);
    assert!(out.ok, "STATUS with both pools usable: {}", out.stdout);

    let out = invoke("ADD", "ds-ctr", Some(&nsp), "eth0", &conf);
    assert!(out.ok, "ADD: {}", out.stdout);
    let res: Value = serde_json::from_str(&out.stdout).unwrap();
    links.0.push(host_ifname(&res));
    let addrs: Vec<&str> = res["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ip| ip["address"].as_str().unwrap())
        .collect();
    assert_eq!(addrs.len(), 2, "{res}");
    assert!(addrs[0].starts_with("10.253.0.") && addrs[0].ends_with("/32"));
    assert!(addrs[1].starts_with("fd00:253::") && addrs[1].ends_with("/128"));
    let v6 = addrs[1].split('/').next().unwrap().to_string();
    let in_pod = ns.exec(&["ip", "-6", "addr", "show", "eth0"]).unwrap();
    assert!(in_pod.contains(&v6), "{in_pod}");
    let routes = ns.exec(&["ip", "-6", "route"]).unwrap();
    assert!(
        routes.contains("default via fe80::ecee:eeff:feee:eeee dev eth0"),
        "{routes}"
    );
    let host_route = Command::new("ip")
        .args(["-6", "route", "show", &format!("{v6}/128")])
        .output()
        .unwrap();
    let host_route = String::from_utf8_lossy(&host_route.stdout);
    assert!(host_route.contains(&host_ifname(&res)), "{host_route}");
    let mut check = conf.clone();
    check["prevResult"] = res.clone();
    let out = invoke("CHECK", "ds-ctr", Some(&nsp), "eth0", &check);
    assert!(out.ok, "CHECK: {}", out.stdout);

    let mut del = conf.clone();
    del["prevResult"] = res.clone();
    assert!(invoke("DEL", "ds-ctr", Some(&nsp), "eth0", &del).ok);
    assert!(!link_exists(&host_ifname(&res)));
    assert!(invoke("DEL", "ds-ctr", Some(&nsp), "eth0", &del).ok);
    // Both addresses are free again: the next ADD may take them.
    let out = invoke("ADD", "ds-ctr2", Some(&nsp), "eth0", &conf);
    assert!(out.ok, "second ADD: {}", out.stdout);
    let res2: Value = serde_json::from_str(&out.stdout).unwrap();
    links.0.push(host_ifname(&res2));
    assert!(invoke("DEL", "ds-ctr2", Some(&nsp), "eth0", &conf).ok);

    // A v6 pool whose nodeSelector does not pick this node makes STATUS
    // report "not available" (50), naming why.
    rt.block_on(async {
        let mut pool = ds.get::<IPPool>("pool-v6").await.unwrap().unwrap();
        pool.spec.node_selector = Some("rack == 'elsewhere'".into());
        ds.update(&pool).await.unwrap();
    });
    let out = invoke("STATUS", "ds-ctr", None, "eth0", &conf);
    assert!(!out.ok);
    let err: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(err["code"], 50, "{err}");
    let msg = err["msg"].as_str().unwrap();
    assert!(msg.contains("nodeSelector"), "{msg}");
    // Asking for IPv4 only, the node is ready again.
    conf["ipam"]["assign_ipv6"] = json!("false");
    let out = invoke("STATUS", "ds-ctr", None, "eth0", &conf);
    assert!(out.ok, "{}", out.stdout);
}

#[test]
fn gc_releases_only_attachments_missing_from_valid_attachments() {
    // No root needed: the addresses come from margay-ipam (IPAM only, no
    // interfaces), and GC touches nothing but IPAM.
    let f = fixture("10.250.0.0/24");
    let run = |cmd: &str, id: &str, conf: &Value| {
        let out = ipam_plugin(cmd, id, conf);
        (out.ok, out.stdout)
    };
    // Three pods of this network, and one of another network (its
    // handles have another prefix: GC of this network must not see it).
    let mut other = f.conf.clone();
    other["name"] = json!("other-net");
    let mut results = Vec::new();
    for (id, conf) in [
        ("keep-1", &f.conf),
        ("gone", &f.conf),
        ("keep-2", &f.conf),
        ("other", &other),
    ] {
        let (ok, out) = run("ADD", id, conf);
        assert!(ok, "ADD {id}: {out}");
        let mut check = conf.clone();
        check["prevResult"] = serde_json::from_str(&out).unwrap();
        results.push((id, check));
    }

    let mut gc = f.conf.clone();
    gc["cni.dev/valid-attachments"] = json!([
        {"containerID": "keep-1", "ifname": "eth0"},
        {"containerID": "keep-2", "ifname": "eth0"},
    ]);
    let path = [("CNI_PATH", "/usr/lib/cni")];
    // Both binaries serve GC; the main plugin is what a runtime calls.
    let out = run_plugin(&plugin_bin(), "GC", &path, &gc);
    assert!(out.ok, "GC: {}", out.stdout);
    assert_eq!(out.stdout, "", "GC prints nothing on success");
    for (id, check) in &results {
        let (ok, out) = run("CHECK", id, check);
        if *id == "gone" {
            assert!(!ok, "{id} survived GC");
            assert!(out.contains("no longer holds"), "{out}");
        } else {
            assert!(ok, "GC freed {id}: {out}");
        }
    }
    // Nothing more to free: a second GC is a no-op and succeeds.
    let out = run_plugin(&ipam_plugin_bin(), "GC", &path, &gc);
    assert!(out.ok, "second GC: {}", out.stdout);
    assert!(run("CHECK", "keep-1", &results[0].1).0);

    // GC needs the list (code 7 naming it), and exists from 1.1.0 only.
    let out = run_plugin(&plugin_bin(), "GC", &path, &f.conf);
    assert!(!out.ok);
    let err: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(err["code"], 7, "{err}");
    let msg = err["msg"].as_str().unwrap();
    assert!(msg.contains("cni.dev/valid-attachments"), "{err}");
    let mut old = gc.clone();
    old["cniVersion"] = json!("1.0.0");
    let out = run_plugin(&plugin_bin(), "GC", &path, &old);
    assert!(!out.ok);
    let err: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(err["code"], 1, "{err}");
}

/// An IPPool that does not decode (`{}`, written raw into etcd past every
/// check) is left out: STATUS still reports ready from the good pool
/// instead of 50 "datastore not reachable".
#[test]
fn undecodable_ippool_does_not_fail_status() {
    let f = fixture("10.252.0.0/24");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut raw = etcd_client::Client::connect([f.etcd.endpoint()], None)
            .await
            .unwrap();
        raw.put("/margay/v1/ippools/bad", "{}", None).await.unwrap();
        raw.put("/margay/v1/ippools/notjson", "{", None)
            .await
            .unwrap();
    });
    let out = invoke("STATUS", "st-ctr", None, "eth0", &f.conf);
    assert!(
        out.ok,
        "STATUS with a bad pool beside a good one: {}",
        out.stdout
    );
}
