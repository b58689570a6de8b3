//! BGPConfiguration `bindMode`: which addresses bgpd listens on. Root
//! only (network namespaces).

mod common;

use std::time::Duration;

use common::Lab;
use margay_testkit::{require_root, wait_until};

/// The DUT's Node (10.0.0.1) and a BGPConfiguration with `bind_mode`.
fn store(bind_mode: &str) -> String {
    format!(
        "apiVersion: margay.io/v1\nkind: Node\nmetadata:\n  name: dut\n\
         spec:\n  bgp:\n    ipv4Address: 10.0.0.1/24\n---\n\
         apiVersion: margay.io/v1\nkind: BGPConfiguration\nmetadata:\n  \
         name: default\nspec:\n  nodeToNodeMeshEnabled: false\n{bind_mode}"
    )
}

/// Local addresses of the DUT's TCP listeners on port 179.
fn listeners(lab: &Lab) -> Vec<String> {
    let out = lab
        .dut
        .exec(&["ss", "-Hltn", "sport", "=", ":179"])
        .unwrap_or_default();
    let mut addrs: Vec<String> = out
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
        .collect();
    addrs.sort();
    addrs
}

#[test]
fn bind_mode_none_listens_everywhere_node_ip_on_the_node_address() {
    if !require_root(
        "bind_mode_none_listens_everywhere_node_ip_on_the_node_address",
    ) {
        return;
    }
    for (mode, want) in [
        ("  bindMode: NodeIP\n", "10.0.0.1:179"),
        ("", "10.0.0.1:179"),
        ("  bindMode: None\n", "0.0.0.0:179"),
    ] {
        let mut lab = Lab::new("bind").unwrap();
        lab.start_bgpd(&store(mode), &[]).unwrap();
        let up =
            wait_until(Duration::from_secs(10), || !listeners(&lab).is_empty());
        assert!(up, "bgpd never listened:\n{}", lab.bgpd_log());
        assert_eq!(listeners(&lab), [want], "{mode:?}:\n{}", lab.bgpd_log());
        lab.stop_bgpd();
    }
}
