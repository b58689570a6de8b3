//! `margayctl diagnose` on a running lab (issue 15, section 2): each hop
//! is broken in turn, and diagnose must name exactly that hop (exit 1),
//! then exit 0 once it is repaired. felix-lite re-creates deleted host
//! routes and blackholes within milliseconds, so it is stopped (SIGSTOP)
//! while a route break is observed; resuming it is the repair.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use margay_datastore::{Datastore, DatastoreSpec};
use margay_ipam::{Ipam, IpamOptions};
use margay_lab::LabState;
use margay_lab::{Family, LabOptions, PeeringMode};
use margay_tests::{lab_up, pids_named};

/// What one diagnose run said: the broken hop it names and the exit code.
#[derive(Debug)]
struct Run {
    broken: Option<String>,
    code: i32,
    json: serde_json::Value,
}

/// Runs `margayctl diagnose` in node1's namespace, from node1's pod to
/// node2's pod, with node2's namespace as the remote node.
fn diagnose(state: &LabState) -> Run {
    let n1 = &state.nodes[0];
    let margayctl = margay_tests::bin_dir().join("margayctl");
    let out = Command::new("ip")
        .args(["netns", "exec", &n1.netns])
        .arg(&margayctl)
        .args(["--datastore", &format!("etcd:{}", state.etcd_endpoint)])
        .arg("--bgpd-socket")
        .arg(n1.run_dir.join("bgpd.ctl"))
        // FROM by container ID (its endpoint record): a pod name is found
        // through IPAM, which break 3 empties.
        .args(["diagnose", "lab-node1-pod1", "default/node2-pod1"])
        .args(["--node", &n1.name, "--endpoints"])
        .arg(n1.run_dir.join("endpoints"))
        .args(["--remote-netns", &state.nodes[1].netns, "-o", "json"])
        .output()
        .expect("run margayctl");
    let text = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "diagnose printed no JSON ({e}): {text}\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    Run {
        broken: json["broken"].as_str().map(str::to_string),
        code: out.status.code().unwrap_or(-1),
        json,
    }
}

/// Asserts diagnose names `hop` (exit 1).
fn names(state: &LabState, hop: &str) {
    let r = diagnose(state);
    assert_eq!(r.broken.as_deref(), Some(hop), "{:#}", r.json);
    assert_eq!(r.code, 1, "a broken path exits 1: {:#}", r.json);
}

/// Waits (up to 20 s) for diagnose to name `hop` (exit 1), as a change
/// applied to the datastore takes bgpd a moment; returns that run.
async fn comes_to_name(state: &LabState, hop: &str, after: &str) -> Run {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = diagnose(state);
        if r.broken.as_deref() == Some(hop) {
            assert_eq!(r.code, 1, "a broken path exits 1: {:#}", r.json);
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{hop} never named after {after}: {:#}",
            r.json
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `margayctl apply` of `yaml` on the lab's datastore.
fn apply(state: &LabState, yaml: &str) {
    use std::io::Write;
    let mut child = Command::new(margay_tests::bin_dir().join("margayctl"))
        .args(["--datastore", &format!("etcd:{}", state.etcd_endpoint)])
        .args(["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run margayctl apply");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "apply failed: {}\n{yaml}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// node1's explicit BGPPeer to node2 (the mesh is off), with `as_number`
/// and `filters`.
fn node1_peer(node2: &str, as_number: u32, filters: &[&str]) -> String {
    let mut y = format!(
        "apiVersion: margay.io/v1\nkind: BGPPeer\nmetadata:\n  name: node1-to-node2\n\
         spec:\n  node: node1\n  peerIP: \"{node2}\"\n  asNumber: {as_number}\n"
    );
    if !filters.is_empty() {
        y.push_str(&format!("  filters: [{}]\n", filters.join(", ")));
    }
    y
}

/// Waits (up to 20 s) for diagnose to find the path whole (exit 0).
async fn whole(state: &LabState, after: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = diagnose(state);
        if r.broken.is_none() && r.code == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still broken after {after}: {:#}",
            r.json
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Stops felix-lite in `netns` until the guard drops (also on panic).
struct Paused(Vec<u32>);

impl Paused {
    fn felix(netns: &str) -> Paused {
        let pids = pids_named(netns, "felix-lite");
        assert!(!pids.is_empty(), "no felix-lite in {netns}");
        for p in &pids {
            sh(&["kill", "-STOP", &p.to_string()]);
        }
        Paused(pids)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = Command::new("kill")
                .args(["-CONT", &p.to_string()])
                .status();
        }
    }
}

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_names_each_broken_hop() {
    let name = "diagnose_names_each_broken_hop";
    if !margay_testkit::require_root(name) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let opts = LabOptions {
        nodes: 2,
        pods_per_node: 1,
        mode: PeeringMode::Mesh,
        family: Family::V4,
        bin_dir: margay_tests::bin_dir(),
        state_dir: dir.path().join("lab"),
        ..Default::default()
    };
    let (_down, state) = lab_up(&opts).await;
    whole(&state, "lab up").await;
    let (n1, n2) = (&state.nodes[0], &state.nodes[1]);
    let pod = |n: &str| state.pods.iter().find(|p| p.node == n).unwrap();
    let (src, dst) = (pod("node1"), pod("node2"));
    let veth = |node: &str, ip: &str| -> String {
        let out = Command::new("ip")
            .args([
                "-n",
                node,
                "-j",
                "route",
                "show",
                "exact",
                &format!("{ip}/32"),
            ])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v[0]["dev"]
            .as_str()
            .expect("the pod's host route")
            .to_string()
    };
    let src_ip = &src.ips[0];
    let src_veth = veth(&n1.netns, src_ip);

    // 1. The source pod's host route.
    {
        let _paused = Paused::felix(&n1.netns);
        sh(&[
            "ip",
            "-n",
            &n1.netns,
            "route",
            "del",
            &format!("{src_ip}/32"),
        ]);
        names(&state, "host");
    }
    whole(&state, "felix-lite resumed (re-creates the host route)").await;

    // 2. Proxy ARP on the host veth.
    let sysctl = format!("net.ipv4.conf.{src_veth}.proxy_arp");
    sh(&[
        "ip",
        "netns",
        "exec",
        &n1.netns,
        "sysctl",
        "-qw",
        &format!("{sysctl}=0"),
    ]);
    names(&state, "host");
    sh(&[
        "ip",
        "netns",
        "exec",
        &n1.netns,
        "sysctl",
        "-qw",
        &format!("{sysctl}=1"),
    ]);
    whole(&state, "proxy ARP back on").await;

    // 3. The pod's address released in IPAM, then given back to its handle.
    let ds = Datastore::connect(
        &format!("etcd:{}", state.etcd_endpoint)
            .parse::<DatastoreSpec>()
            .unwrap(),
    )
    .await
    .unwrap();
    let ipam = Ipam::new(
        ds,
        &n1.name,
        IpamOptions {
            lock_path: None,
            ..IpamOptions::default()
        },
    );
    let handle = format!("k8s-pod-network.{}", src.container_id);
    let ip: std::net::IpAddr = src_ip.parse().unwrap();
    assert_eq!(ipam.release_by_handle(&handle).await.unwrap(), vec![ip]);
    names(&state, "ipam");
    let attrs = BTreeMap::from([
        ("namespace".to_string(), "default".to_string()),
        ("pod".to_string(), src.name.clone()),
    ]);
    ipam.assign_ip(ip, &handle, &attrs).await.unwrap();
    whole(&state, "the address re-assigned to the pod's handle").await;

    // 4. The remote node's blackhole for its block.
    let dst_ip = &dst.ips[0];
    {
        let _paused = Paused::felix(&n2.netns);
        let out = Command::new("ip")
            .args(["-n", &n2.netns, "-j", "route", "show", "type", "blackhole"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let block = v
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["dst"].as_str())
            .find(|b| {
                b.parse::<ipnetwork::IpNetwork>()
                    .unwrap()
                    .contains(dst_ip.parse().unwrap())
            })
            .expect("node2 blackholes its block")
            .to_string();
        sh(&["ip", "-n", &n2.netns, "route", "del", "blackhole", &block]);
        names(&state, "remote");
    }
    whole(
        &state,
        "felix-lite on node2 resumed (re-creates the blackhole)",
    )
    .await;

    // 5. The remote /32.
    {
        let _paused = Paused::felix(&n2.netns);
        sh(&[
            "ip",
            "-n",
            &n2.netns,
            "route",
            "del",
            &format!("{dst_ip}/32"),
        ]);
        names(&state, "remote");
    }
    whole(&state, "felix-lite on node2 resumed (re-creates the /32)").await;

    // 6. The BGP hop. node1 reaches node2's block only over BGP (the ToR
    // exports nothing to the nodes; its default route is not margay's),
    // so with the mesh replaced by one explicit session each way, that
    // session is the path.
    let node2_peer = format!(
        "apiVersion: margay.io/v1\nkind: BGPPeer\nmetadata:\n  name: node2-to-node1\n\
         spec:\n  node: {}\n  peerIP: \"{}\"\n  asNumber: 64512\n",
        n2.name, n1.address
    );
    let mesh_off = "apiVersion: margay.io/v1\nkind: BGPConfiguration\nmetadata:\n  \
                    name: default\nspec:\n  asNumber: 64512\n  \
                    nodeToNodeMeshEnabled: false\n  logSeverityScreen: Info\n";
    apply(
        &state,
        &format!(
            "{mesh_off}---\n{}---\n{}",
            node1_peer(&n2.address, 64512, &[]),
            node2_peer
        ),
    );
    whole(&state, "the mesh replaced by explicit peers").await;

    // 6a. The session shut: node1's peer expects the wrong AS, so node2's
    // OPEN is refused (Bad Peer AS) and the route goes.
    apply(&state, &node1_peer(&n2.address, 64999, &[]));
    let r = comes_to_name(&state, "bgp", "the session went down").await;
    let detail = r.json["hops"][4]["detail"].as_str().unwrap();
    assert!(detail.contains("session"), "{:#}", r.json);
    assert_eq!(r.json["hops"][3]["status"], "broken", "{:#}", r.json);
    apply(&state, &node1_peer(&n2.address, 64512, &[]));
    whole(&state, "the peer's AS repaired").await;

    // 6b. An import filter that rejects node2's block on that session.
    let dst_addr: std::net::Ipv4Addr = dst_ip.parse().unwrap();
    let block = ipnetwork::Ipv4Network::new(dst_addr, 26).unwrap();
    let block = format!("{}/26", block.network());
    apply(
        &state,
        &format!(
            "apiVersion: margay.io/v1\nkind: BGPFilter\nmetadata:\n  \
             name: reject-node2-block\nspec:\n  importV4:\n  - action: Reject\n    \
             matchOperator: Equal\n    cidr: {block}\n---\n{}",
            node1_peer(&n2.address, 64512, &["reject-node2-block"])
        ),
    );
    let r = comes_to_name(&state, "bgp", "the filter").await;
    let detail = r.json["hops"][4]["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("sent {block}, refused at import: rejected by a BGPFilter import rule")),
        "{:#}",
        r.json
    );
    // The operator's view of the same: `margayctl routes --rejected`.
    let n1 = &state.nodes[0];
    let out = Command::new(margay_tests::bin_dir().join("margayctl"))
        .arg("--bgpd-socket")
        .arg(n1.run_dir.join("bgpd.ctl"))
        .args(["routes", "--rejected", "-o", "json"])
        .output()
        .expect("run margayctl routes --rejected");
    let rejected: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| {
            panic!(
                "routes --rejected: {e}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(
        rejected
            .as_array()
            .is_some_and(|a| a.iter().any(|r| r["prefix"] == block.as_str()
                && r["reason"] == "rejected by a BGPFilter import rule")),
        "{rejected:#}"
    );
    apply(&state, &node1_peer(&n2.address, 64512, &[]));
    whole(&state, "the filter taken off the peer").await;
}
