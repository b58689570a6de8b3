//! Failure scenarios on a running lab (issue 6): a crashed bgpd, a dead
//! etcd, a node that stops entirely. Every lab uses the same names, so
//! the tests take `LAB` in turn.

use std::process::Command;
use std::time::Duration;

use margay_lab::{Family, LabOptions, PeeringMode};
use margay_tests::{lab_up, pids_named};

/// Held for the whole of each test: labs cannot run side by side.
static LAB: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The lab both failure scenarios use: three mesh nodes, one pod each.
fn mesh_of_three(dir: &tempfile::TempDir) -> LabOptions {
    LabOptions {
        nodes: 3,
        pods_per_node: 1,
        mode: PeeringMode::Mesh,
        family: Family::V4,
        bin_dir: margay_tests::bin_dir(),
        state_dir: dir.path().join("lab"),
        ..Default::default()
    }
}

/// Starts `count` pings at `interval` from a pod namespace; the child
/// prints ping's summary when it ends.
fn start_ping(
    netns: &str,
    dst: &str,
    count: u32,
    interval: &str,
) -> std::process::Child {
    Command::new("ip")
        .args([
            "netns", "exec", netns, "ping", "-n", "-q", "-W", "1", "-i",
            interval,
        ])
        .args(["-c", &count.to_string(), dst])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// (transmitted, received) from ping's summary.
fn ping_result(child: std::process::Child) -> (u32, u32, String) {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no ping summary in {text:?}"))
        .to_string();
    let nums: Vec<u32> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect();
    (nums[0], nums[1], line)
}

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bgpd_crash_and_etcd_outage_lose_nothing() {
    if !margay_testkit::require_root("bgpd_crash_and_etcd_outage_lose_nothing")
    {
        return;
    }
    let _serial = LAB.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let opts = mesh_of_three(&dir);
    let (_down, state) = lab_up(&opts).await;
    let pod_on = |node: &str| {
        state.pods.iter().find(|p| p.node == node).unwrap().clone()
    };
    let (src, dst) = (pod_on("node2"), pod_on("node1"));

    // 1. kill -9 node1's bgpd while node2's pod pings node1's pod: graceful
    // restart on the peers and felix-lite keeping the FIB lose no reply.
    let old = pids_named("mglab-node1", "bgpd");
    assert_eq!(old.len(), 1, "one bgpd in node1: {old:?}");
    let ping = start_ping(&src.netns, &dst.ips[0], 160, "0.05");
    tokio::time::sleep(Duration::from_secs(2)).await;
    Command::new("kill")
        .args(["-9", &old[0].to_string()])
        .status()
        .unwrap();
    let (sent, received, line) = ping_result(ping);
    assert_eq!(sent, received, "replies lost across a bgpd crash: {line}");
    let new = pids_named("mglab-node1", "bgpd");
    assert!(
        new.len() == 1 && new != old,
        "bgpd was not restarted: {new:?}"
    );

    // 2. etcd down for 20 s: traffic unaffected, a new pod fails cleanly
    // with "try again later", and succeeds once etcd is back.
    margay_lab::stop_etcd(&opts).unwrap();
    let ping = start_ping(&src.netns, &dst.ips[0], 100, "0.2");
    let err = margay_lab::add_extra_pod(&opts, "node3", "late")
        .expect_err("ADD must fail while etcd is down");
    let text = err.to_string();
    assert!(
        text.contains("\"code\":11") || text.contains("\"code\": 11"),
        "{text}"
    );
    let (sent, received, line) = ping_result(ping);
    assert_eq!(
        sent, received,
        "replies lost during the etcd outage: {line}"
    );
    margay_lab::start_etcd_again(&opts).await.unwrap();
    let pod = margay_lab::add_extra_pod(&opts, "node3", "late")
        .expect("ADD after recovery");
    let state = margay_lab::LabState::load(&opts.state_dir)
        .unwrap()
        .unwrap();
    let mut ips: Vec<&String> =
        state.pods.iter().flat_map(|p| &p.ips).collect();
    let n = ips.len();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), n, "duplicate pod IPs: {:?}", state.pods);
    // The new pod is reachable from another node.
    let (sent, received, line) =
        ping_result(start_ping(&src.netns, &pod.ips[0], 10, "0.2"));
    assert!(received > 0 && sent > 0, "new pod unreachable: {line}");
}

/// `margayctl ARGS` from this build, which must succeed; its stdout.
fn margayctl(args: &[&str]) -> String {
    let out = Command::new(margay_tests::bin_dir().join("margayctl"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "margayctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The margay (felix-lite, protocol 81) routes of `netns` via `gateway`.
fn fib_via(netns: &str, gateway: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-n", netns, "route", "show", "proto", "81"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!("via {gateway} ")))
        .map(str::to_owned)
        .collect()
}

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_node_leaves_the_fibs_within_bfd_detection() {
    let name = "stopped_node_leaves_the_fibs_within_bfd_detection";
    if !margay_testkit::require_root(name) {
        return;
    }
    let _serial = LAB.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let opts = mesh_of_three(&dir);
    let (_down, state) = lab_up(&opts).await;
    let node = |n: &str| state.nodes.iter().find(|x| x.name == n).unwrap();

    // 1. BFD on every mesh session (100 ms x 3), applied to the running
    // fabric through the datastore as a user would.
    let cfg = dir.path().join("bfd.yaml");
    std::fs::write(
        &cfg,
        format!(
            "apiVersion: margay.io/v1\nkind: BGPConfiguration\nmetadata:\n  \
             name: default\nspec:\n  asNumber: {}\n  \
             nodeToNodeMeshEnabled: true\n  logSeverityScreen: Info\n  \
             nodeMeshBFD: {{enabled: true, minInterval: 100ms, multiplier: \
             3}}\n",
            margay_lab::topology::NODE_AS
        ),
    )
    .unwrap();
    let datastore = format!("etcd:{}", state.etcd_endpoint);
    margayctl(&[
        "--datastore",
        &datastore,
        "apply",
        "-f",
        cfg.to_str().unwrap(),
    ]);
    let status = |n: &str| {
        let sock = node(n).run_dir.join("bgpd.ctl");
        margayctl(&["--bgpd-socket", sock.to_str().unwrap(), "node", "status"])
    };
    for n in ["node1", "node2"] {
        let up = margay_testkit::wait_until(Duration::from_secs(30), || {
            status(n).matches("Established, BFD Up").count() == 2
        });
        assert!(up, "{n}: mesh BFD not Up on both sessions:\n{}", status(n));
    }
    let node3 = node("node3");
    let gw = node3.address.split('/').next().unwrap().to_string();
    for n in ["node1", "node2"] {
        let routes = fib_via(&node(n).netns, &gw);
        assert!(!routes.is_empty(), "{n} has no route via node3 ({gw})");
    }

    // 2. Stop node3 entirely: every margay process, then its link.
    let t0 = std::time::Instant::now();
    for comm in ["margay-node", "bgpd", "felix-lite"] {
        for pid in pids_named(&node3.netns, comm) {
            Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()
                .unwrap();
        }
    }
    let down = Command::new("ip")
        .args(["-n", &node3.netns, "link", "set", "eth0", "down"])
        .status()
        .unwrap();
    assert!(down.success());

    // 3. node3's blocks leave node1's and node2's FIBs within the
    // detection time (300 ms) plus felix-lite's batching; 10 s is the
    // bound of a failure, far below the 240 s hold time.
    let mut gone = Vec::new();
    let bound = Duration::from_secs(10);
    while gone.len() < 2 && t0.elapsed() < bound {
        for n in ["node1", "node2"] {
            if !gone.iter().any(|(g, _)| *g == n)
                && fib_via(&node(n).netns, &gw).is_empty()
            {
                gone.push((n, t0.elapsed()));
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for n in ["node1", "node2"] {
        match gone.iter().find(|(g, _)| *g == n) {
            Some((_, t)) => eprintln!(
                "node3 routes gone from {n} FIB after {} ms",
                t.as_millis()
            ),
            None => panic!(
                "{n} still routes via node3 {bound:?} after it stopped:\n{}\n{}",
                fib_via(&node(n).netns, &gw).join("\n"),
                status(n)
            ),
        }
    }
}
