//! One bad object never stops a node, nor every node (issue 12, section
//! 2), on a running lab: a BGPPeer with an unknown field, a BGPFilter
//! using `interface` (and a BGPPeer naming it), a BGPPeer with a bad
//! peerIP and an IPPool that is `{}` are written raw into etcd, past every
//! check (as `kubectl apply` past a loose schema would), while pods are
//! being created. Sessions with good peers stay up, a new block reaches
//! every FIB, new pods get addresses, each bad object is reported by
//! bgpd, and a bgpd restarted with the bad objects present comes up.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use margay_lab::topology::SMALL_BLOCKS_POOL;
use margay_lab::{Family, LabOptions, PeeringMode};
use margay_tests::{lab_up, pids_named};

/// The raw objects: (etcd key below /margay/v1/, JSON).
const BAD: [(&str, &str); 5] = [
    (
        "bgppeers/bad-unknown-field",
        r#"{"apiVersion":"margay.io/v1","kind":"BGPPeer",
            "metadata":{"name":"bad-unknown-field"},
            "spec":{"peerIP":"192.0.2.1","asNumber":65001,"colour":"red"}}"#,
    ),
    (
        "bgpfilters/bad-filter",
        r#"{"apiVersion":"margay.io/v1","kind":"BGPFilter",
            "metadata":{"name":"bad-filter"},
            "spec":{"exportV4":[{"action":"Accept","interface":"eth0"}]}}"#,
    ),
    (
        "bgppeers/uses-bad-filter",
        r#"{"apiVersion":"margay.io/v1","kind":"BGPPeer",
            "metadata":{"name":"uses-bad-filter"},
            "spec":{"peerIP":"192.0.2.2","asNumber":65001,
                    "filters":["bad-filter"]}}"#,
    ),
    (
        "bgppeers/bad-peer-ip",
        r#"{"apiVersion":"margay.io/v1","kind":"BGPPeer",
            "metadata":{"name":"bad-peer-ip"},
            "spec":{"peerIP":"10.0.0.x","asNumber":65001}}"#,
    ),
    ("ippools/bad-pool", "{}"),
];

/// (kind, name) of every object bgpd must report.
const REPORTED: [(&str, &str); 5] = [
    ("BGPFilter", "bad-filter"),
    ("BGPPeer", "bad-peer-ip"),
    ("BGPPeer", "bad-unknown-field"),
    ("BGPPeer", "uses-bad-filter"),
    ("IPPool", "bad-pool"),
];

/// Names of `node`'s sessions that are Established.
fn established(socket: &std::path::Path) -> BTreeSet<String> {
    margay_ctlproto::client::peers(socket)
        .map(|peers| {
            peers
                .into_iter()
                .filter(|p| p.state == "Established")
                .map(|p| p.name)
                .collect()
        })
        .unwrap_or_default()
}

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_objects_stop_nothing_else() {
    let name = "bad_objects_stop_nothing_else";
    if !margay_testkit::require_root(name) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let opts = LabOptions {
        nodes: 3,
        pods_per_node: 1,
        mode: PeeringMode::Mesh,
        family: Family::V4,
        bin_dir: margay_tests::bin_dir(),
        state_dir: dir.path().join("lab"),
        ..Default::default()
    };
    let (_down, state) = lab_up(&opts).await;
    let node = |n: &str| state.nodes.iter().find(|x| x.name == n).unwrap();
    let socket = |n: &str| node(n).run_dir.join("bgpd.ctl");
    let names = ["node1", "node2", "node3"];
    // Every node's sessions (mesh and ToR) are up after lab up.
    let before: Vec<BTreeSet<String>> =
        names.iter().map(|n| established(&socket(n))).collect();
    for (n, up) in names.iter().zip(&before) {
        assert_eq!(up.len(), 3, "{n}: mesh x2 + ToR: {up:?}");
    }

    // 1. Pods are created while the bad objects are written.
    let creating = {
        let opts = opts.clone();
        std::thread::spawn(move || {
            (0..4)
                .map(|i| {
                    let n = ["node1", "node2", "node3"][i % 3];
                    margay_lab::add_extra_pod(&opts, n, &format!("busy{i}"))
                })
                .collect::<Vec<_>>()
        })
    };
    let mut etcd =
        etcd_client::Client::connect([state.etcd_endpoint.clone()], None)
            .await
            .unwrap();
    for (key, json) in BAD {
        etcd.put(format!("/margay/v1/{key}"), json, None)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for pod in creating.join().unwrap() {
        let pod = pod.expect("ADD while bad objects are written");
        assert_eq!(pod.ips.len(), 1, "{pod:?}");
    }

    // 2. bgpd reports every bad object by kind and name, and keeps its
    // good sessions.
    for n in names {
        let reported = || -> BTreeSet<(String, String)> {
            margay_ctlproto::client::invalid(&socket(n))
                .unwrap_or_default()
                .into_iter()
                .map(|o| (o.kind, o.name))
                .collect()
        };
        let want: BTreeSet<(String, String)> = REPORTED
            .iter()
            .map(|(k, n)| (k.to_string(), n.to_string()))
            .collect();
        let ok = margay_testkit::wait_until(Duration::from_secs(15), || {
            reported() == want
        });
        assert!(ok, "{n} reports {:?}, want {want:?}", reported());
    }
    for (n, up) in names.iter().zip(&before) {
        assert_eq!(&established(&socket(n)), up, "{n}: sessions changed");
    }
    // Counted in the node's metrics (bgpd's section of the agent's scrape).
    let metrics = margay_lab::inspect::node_metrics(&opts, "node1").unwrap();
    for (kind, name) in REPORTED {
        let series = format!(
            "margay_invalid_objects{{kind=\"{kind}\",name=\"{name}\"}} 1"
        );
        assert!(metrics.contains(&series), "no {series} in:\n{metrics}");
    }

    // 3. A new block (a small-blocks pod on node1 claims one) reaches the
    // other nodes' FIBs via node1.
    let pod = margay_lab::add_extra_pod_in_pool(
        &opts,
        "node1",
        "newblock",
        &[SMALL_BLOCKS_POOL],
    )
    .expect("ADD in a fresh block");
    let blocks = margay_lab::inspect::node_blocks(&opts, "node1")
        .await
        .unwrap();
    let ip: std::net::IpAddr = pod.ips[0].parse().unwrap();
    let block = blocks
        .iter()
        .find(|b| {
            b.parse::<ipnetwork::IpNetwork>()
                .is_ok_and(|net| net.contains(ip))
        })
        .unwrap_or_else(|| panic!("no block of node1 holds {ip}: {blocks:?}"))
        .clone();
    for n in ["node2", "node3"] {
        let routed =
            margay_testkit::wait_until(Duration::from_secs(15), || {
                margay_lab::inspect::fib_route(&opts, n, &block)
                    .is_ok_and(|r| r.is_some())
            });
        assert!(routed, "{n}: no FIB route for node1's new block {block}");
    }
    margay_lab::inspect::ping_from(&opts, "busy1", ip)
        .expect("new pod reachable");

    // 4. A bgpd started with the bad objects present comes up and peers.
    let old = pids_named(&node("node2").netns, "bgpd");
    assert_eq!(old.len(), 1, "one bgpd in node2: {old:?}");
    Command::new("kill")
        .args(["-9", &old[0].to_string()])
        .status()
        .unwrap();
    let back = margay_testkit::wait_until(Duration::from_secs(30), || {
        let new = pids_named(&node("node2").netns, "bgpd");
        new.len() == 1
            && new != old
            && established(&socket("node2")) == before[1]
    });
    assert!(
        back,
        "bgpd on node2 did not come back with its sessions: {:?}",
        established(&socket("node2"))
    );
}
