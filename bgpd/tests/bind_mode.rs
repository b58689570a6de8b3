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

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
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

/// BGPConfiguration `logSeverityScreen` sets bgpd's log level while it
/// runs (no `--log-level` given).
#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[test]
fn log_severity_screen_applies_at_run_time() {
    if !require_root("log_severity_screen_applies_at_run_time") {
        return;
    }
    let lab = Lab::new("logsev").unwrap();
    let file = lab.path("store.yaml");
    let write = |sev: &str| {
        let yaml = store(&format!("  logSeverityScreen: {sev}\n"));
        let tmp = lab.path("store.tmp");
        std::fs::write(&tmp, yaml).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
    };
    write("Warning");
    let mut c = std::process::Command::new(common::bgpd_bin());
    c.arg("--datastore")
        .arg(format!("file:{}", file.display()))
        .args(["--node", "dut", "--poll-seconds", "1"])
        .arg("--control-socket")
        .arg(lab.ctl());
    let pid = lab.dut.spawn(c).unwrap();
    let up =
        wait_until(Duration::from_secs(10), || !listeners(&lab).is_empty());
    assert!(up, "bgpd never listened:\n{}", lab.dut.log(pid));
    std::thread::sleep(Duration::from_secs(2));
    // Warning: the INFO line announcing the level is not shown.
    let log = lab.dut.log(pid);
    assert!(!log.contains("log level set"), "{log}");
    write("Debug");
    let debug = wait_until(Duration::from_secs(15), || {
        lab.dut.log(pid).contains("log level set")
    });
    let log = lab.dut.log(pid);
    assert!(debug, "the level never changed:\n{log}");
    assert!(log.contains("\"debug\""), "{log}");
    // The file's second load was logged (INFO) while the level was still
    // Warning: only the first load shows.
    assert_eq!(log.matches("file datastore loaded").count(), 1, "{log}");
}
