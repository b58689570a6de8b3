//! IPPool `natOutgoing` against a real kernel: a node namespace with two
//! pods and a ToR-side neighbour that has no route back to the pods.
//! felix-lite's NAT task reads the pools from a file datastore. Root only.

use std::path::Path;
use std::time::Duration;

use margay_datastore::{Datastore, DatastoreSpec};
use margay_testkit::{Netns, require_root, veth_between, wait_until};

/// One pool, 10.65.0.0/16, with `natOutgoing` as given.
fn write_pools(path: &Path, nat: bool) {
    let yaml = format!(
        "apiVersion: margay.io/v1\nkind: IPPool\nmetadata:\n  name: pods\n\
         spec:\n  cidr: 10.65.0.0/16\n  natOutgoing: {nat}\n"
    );
    // Write then rename: the poller never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, yaml).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn sh(ns: &Netns, cmd: &str) -> String {
    let argv: Vec<&str> = cmd.split(' ').collect();
    ns.exec(&argv).unwrap()
}

/// A pod as the CNI plugin wires one: a /32 on eth0 and a default route
/// via the proxy-ARP gateway 169.254.1.1.
fn pod(node: &Netns, tag: &str, host_if: &str, addr: &str) -> Netns {
    let p = Netns::new(tag).unwrap();
    veth_between(node, host_if, "", &p, "eth0", &format!("{addr}/32")).unwrap();
    sh(&p, "ip route add 169.254.1.1 dev eth0 scope link");
    sh(&p, "ip route add default via 169.254.1.1 dev eth0");
    sh(
        node,
        &format!("sysctl -qw net.ipv4.conf.{host_if}.proxy_arp=1"),
    );
    sh(node, &format!("ip route add {addr}/32 dev {host_if}"));
    p
}

/// Counts echo requests from `src` arriving in `ns`.
fn count_pings_from(ns: &Netns, src: &str) {
    let script = format!(
        "add table ip obs; add chain ip obs input {{ type filter hook input \
         priority 0; }}; add rule ip obs input ip saddr {src} \
         icmp type echo-request counter"
    );
    ns.exec(&["nft", &script]).unwrap();
}

/// Packets the counter of [`count_pings_from`] saw.
fn pings_seen(ns: &Netns) -> u64 {
    let out = ns
        .exec(&["nft", "list", "chain", "ip", "obs", "input"])
        .unwrap();
    let at = out.find("counter packets ").expect("counter rule") + 16;
    out[at..].split(' ').next().unwrap().parse().unwrap()
}

fn ping(from: &Netns, to: &str) -> bool {
    from.exec(&["ping", "-c1", "-W1", to]).is_ok()
}

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nat_outgoing_masquerades_only_beyond_the_pools() {
    if !require_root("nat_outgoing_masquerades_only_beyond_the_pools") {
        return;
    }
    let node = Netns::new("natnode").unwrap();
    let tor = Netns::new("nattor").unwrap();
    sh(&node, "sysctl -qw net.ipv4.ip_forward=1");
    veth_between(&node, "tor0", "192.0.2.1/24", &tor, "eth0", "192.0.2.2/24")
        .unwrap();
    // The ToR is the node's default gateway (proxy ARP answers for
    // 169.254.1.1 only when the node has a route to it).
    sh(&node, "ip route add default via 192.0.2.2");
    let a = pod(&node, "natpa", "mga", "10.65.0.5");
    let b = pod(&node, "natpb", "mgb", "10.65.0.6");
    count_pings_from(&tor, "192.0.2.1");
    count_pings_from(&b, "10.65.0.5");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pools.yaml");
    write_pools(&file, false);
    let spec: DatastoreSpec =
        format!("file:{}", file.display()).parse().unwrap();
    let ds = Datastore::connect(&spec).await.unwrap();
    let task = tokio::spawn(felix_lite::nat::run(
        ds,
        Some(node.path()),
        Duration::from_secs(1),
    ));

    // natOutgoing false: the table is there, and the ToR cannot answer.
    let table_present = || {
        node.exec(&["nft", "list", "table", "inet", "margay"])
            .is_ok()
    };
    assert!(wait_until(Duration::from_secs(10), table_present));
    assert!(!ping(&a, "192.0.2.2"), "reached the ToR side without NAT");

    // natOutgoing true: masqueraded to the node's address, so it answers.
    write_pools(&file, true);
    assert!(
        wait_until(Duration::from_secs(15), || ping(&a, "192.0.2.2")),
        "natOutgoing: true never let the pod reach the ToR side: {}",
        node.exec(&["nft", "list", "ruleset"]).unwrap()
    );
    assert!(pings_seen(&tor) >= 1, "the ToR saw no ping from 192.0.2.1");

    // Pod to pod keeps its source address.
    assert!(ping(&a, "10.65.0.6"));
    assert!(pings_seen(&b) >= 1, "pod b saw no ping from 10.65.0.5");

    // Uninstall removes the table, and the ToR side is unreachable again.
    task.abort();
    let _ = task.await;
    felix_lite::nat::nft_remove(Some(&node.path())).unwrap();
    assert!(!table_present());
    // Conntrack keeps the old flow's NAT binding; a new ICMP id is a new
    // flow, and ping picks a new id each run.
    assert!(!ping(&a, "192.0.2.2"));
}
