//! Failure scenarios on a running lab (issue 6): a crashed bgpd, a dead
//! etcd. One test function, because every lab uses the same names.

use std::process::Command;
use std::time::Duration;

use margay_lab::{Family, LabOptions, PeeringMode};

struct Down(LabOptions);

impl Drop for Down {
    fn drop(&mut self) {
        if let Err(e) = margay_lab::down(&self.0) {
            eprintln!("lab down failed: {e}");
        }
    }
}

/// Pids of processes named `comm` inside network namespace `netns`.
fn pids_named(netns: &str, comm: &str) -> Vec<u32> {
    let out = Command::new("ip")
        .args(["netns", "pids", netns])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|p: &u32| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .map(|c| c.trim() == comm)
                .unwrap_or(false)
        })
        .collect()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bgpd_crash_and_etcd_outage_lose_nothing() {
    if !margay_testkit::require_root("bgpd_crash_and_etcd_outage_lose_nothing")
    {
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
    };
    let _down = Down(opts.clone());
    let summary = margay_lab::up(&opts).await.expect("lab up");
    assert!(summary.ok, "lab failed its proofs:\n{}", summary.report);
    let state = margay_lab::LabState::load(&opts.state_dir)
        .unwrap()
        .unwrap();
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
