//! The lab end to end: the README's main job, in CI.
//!
//! Every lab uses the same `mglab-*` names, so the test functions take one
//! lock and run one at a time; each lab up is reused for several checks.

use std::net::IpAddr;
use std::time::Duration;

use margay_lab::inspect;
use margay_lab::topology::{ONE_BLOCK_POOL, SMALL_BLOCKS_POOL};
use margay_lab::{Family, LabOptions, PeeringMode};
use margay_tests::LabGuard;

/// Serializes the labs of this file (they share names and ports).
static LAB: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn options(
    state: &tempfile::TempDir,
    nodes: usize,
    mode: PeeringMode,
    family: Family,
) -> LabOptions {
    LabOptions {
        nodes,
        pods_per_node: 2,
        mode,
        family,
        bin_dir: margay_tests::bin_dir(),
        state_dir: state.path().join("lab"),
        ..Default::default()
    }
}

/// Polls `check` (which says what it still misses) for up to `secs`.
async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match check().await {
            Ok(()) => return,
            Err(e) if tokio::time::Instant::now() > deadline => {
                panic!("{what}: still not true after {secs}s: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// `node`'s FIB routes `cidr` via `gateway` on the fabric link.
async fn fib_has(opts: &LabOptions, node: &str, cidr: &str, gateway: &str) {
    eventually(
        20,
        &format!("{node} routes {cidr} via {gateway}"),
        || async {
            match inspect::fib_route(opts, node, cidr)
                .map_err(|e| e.to_string())?
            {
                Some(hops) if hops.iter().any(|(gw, _)| gw == gateway) => {
                    Ok(())
                }
                other => Err(format!("FIB entry {other:?}")),
            }
        },
    )
    .await;
}

async fn ping(opts: &LabOptions, from: &str, dst: &str) {
    let dst: IpAddr = dst.parse().unwrap();
    eventually(20, &format!("ping {dst} from {from}"), || async {
        inspect::ping_from(opts, from, dst).map_err(|e| e.to_string())
    })
    .await;
}

fn address(opts: &LabOptions, node: &str) -> String {
    inspect::lab_node(opts, node).unwrap().address
}

/// Node 1 fills a block of 4 and claims more: the new blocks reach node 2's
/// FIB via node 1, and a pod on the newest block answers from node 2.
async fn new_block_is_routed(opts: &LabOptions) {
    let before = inspect::node_blocks(opts, "node1").await.unwrap();
    let mut last = None;
    for i in 1..=5 {
        let pod = format!("blk{i}");
        let p = margay_lab::add_extra_pod_in_pool(
            opts,
            "node1",
            &pod,
            &[SMALL_BLOCKS_POOL],
        )
        .unwrap_or_else(|e| panic!("adding {pod}: {e}"));
        last = Some(p);
    }
    let after = inspect::node_blocks(opts, "node1").await.unwrap();
    let new: Vec<&String> =
        after.iter().filter(|b| !before.contains(b)).collect();
    assert!(
        new.len() >= 2,
        "5 pods in blocks of 4 claim two blocks; new blocks: {new:?}"
    );
    let node1 = address(opts, "node1");
    for block in &new {
        fib_has(opts, "node2", block, &node1).await;
        fib_has(opts, "node3", block, &node1).await;
    }
    let newest = last.unwrap();
    ping(opts, "node2-pod1", &newest.ips[0]).await;
}

/// Node 1 holds the only block of a pool; node 2's pod must borrow from it.
/// bgpd on node 2 originates the /32, the other nodes route it via node 2
/// and a pod on node 3 reaches the borrowed address.
async fn borrowed_ip_is_routed(opts: &LabOptions) {
    margay_lab::add_extra_pod_in_pool(opts, "node1", "own1", &[ONE_BLOCK_POOL])
        .expect("node 1 claims the one block");
    let borrower = margay_lab::add_extra_pod_in_pool(
        opts,
        "node2",
        "borrow1",
        &[ONE_BLOCK_POOL],
    )
    .expect("node 2 borrows from node 1's block");
    let ip = borrower.ips[0].clone();
    assert!(ip.starts_with("10.247.0."), "{ip} is in the one-block pool");
    let node2_blocks = inspect::node_blocks(opts, "node2").await.unwrap();
    assert!(
        !node2_blocks.iter().any(|b| b.starts_with("10.247.")),
        "node 2 must not hold a one-block block: {node2_blocks:?}"
    );
    let host = format!("{ip}/32");
    eventually(20, &format!("node2's bgpd originates {host}"), || async {
        let own = inspect::originated(opts, "node2")
            .await
            .map_err(|e| e.to_string())?;
        own.iter()
            .any(|p| p.to_string() == host)
            .then_some(())
            .ok_or(format!("originated {own:?}"))
    })
    .await;
    let node2 = address(opts, "node2");
    fib_has(opts, "node1", &host, &node2).await;
    fib_has(opts, "node3", &host, &node2).await;
    ping(opts, "node3-pod1", &ip).await;
}

/// The agent's /metrics answers inside the node netns with its own
/// families and bgpd's and felix-lite's.
fn metrics_are_served(opts: &LabOptions) {
    let text = inspect::node_metrics(opts, "node1").expect("GET /metrics");
    for want in [
        "margay_node_child_up{child=\"bgpd\"} 1",
        "margay_node_child_up{child=\"felix-lite\"} 1",
        // Two mesh peers and the ToR.
        "margay_node_bgp_sessions_established 3",
        "margay_node_scrape_up{target=\"bgpd\"} 1",
        "margay_node_scrape_up{target=\"felix-lite\"} 1",
    ] {
        assert!(text.lines().any(|l| l == want), "{want:?} in\n{text}");
    }
    assert!(text.contains("\nbgpd_sessions{"), "bgpd's metrics:\n{text}");
    assert!(text.contains("\nfelix_lite_routes{"), "felix's:\n{text}");
    // Which build runs, per daemon; bgpd's per-peer prefix counts;
    // felix-lite's IPAM usage of this node (its pods' block).
    for family in [
        "\nmargay_node_build_info{",
        "\nbgpd_build_info{",
        "\nfelix_lite_build_info{",
        "\nbgpd_peer_prefixes_received{",
        "\nbgpd_peer_prefixes_accepted{",
        "\nbgpd_peer_prefixes_advertised{",
    ] {
        assert!(text.contains(family), "{family:?} in\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("felix_lite_ipam_allocations_in_use{")
                && l.contains("node=\"node1\"")
                && !l.ends_with(" 0")),
        "node1's pods' addresses in\n{text}"
    );
    assert_eq!(text.matches("# EOF").count(), 1, "{text}");
}

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_mesh_then_route_reflector() {
    if !margay_testkit::require_root("lab_mesh_then_route_reflector") {
        return;
    }
    let _serial = LAB.lock().await;
    let state = tempfile::tempdir().unwrap();

    // Three nodes in a full mesh, BIRD ToR, two pods each.
    let mesh = options(&state, 3, PeeringMode::Mesh, Family::V4);
    let guard = LabGuard(mesh.clone());
    let summary = margay_lab::up(&mesh).await.expect("lab up (mesh)");
    assert!(
        summary.ok,
        "mesh lab failed its proofs:\n{}",
        summary.report
    );
    let status = margay_lab::status(&mesh).await.unwrap();
    assert!(status.contains("node3"), "{status}");
    metrics_are_served(&mesh);
    new_block_is_routed(&mesh).await;
    borrowed_ip_is_routed(&mesh).await;
    drop(guard);
    assert!(
        !std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("mglab-"))
            .unwrap(),
        "lab down left namespaces behind"
    );

    // One route reflector and four clients, no mesh.
    let rr = options(&state, 5, PeeringMode::RouteReflector, Family::V4);
    let _guard = LabGuard(rr.clone());
    let summary = margay_lab::up(&rr).await.expect("lab up (route reflector)");
    assert!(summary.ok, "RR lab failed its proofs:\n{}", summary.report);
}

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_dual_stack_mesh() {
    if !margay_testkit::require_root("lab_dual_stack_mesh") {
        return;
    }
    let _serial = LAB.lock().await;
    let state = tempfile::tempdir().unwrap();
    // Pods get an IPv4 and an IPv6 address; the proofs ping and connect to
    // both, and check both families' blocks in node and ToR FIBs.
    let dual = options(&state, 3, PeeringMode::Mesh, Family::Dual);
    let _guard = LabGuard(dual.clone());
    let summary = margay_lab::up(&dual).await.expect("lab up (dual stack)");
    assert!(
        summary.ok,
        "dual-stack lab failed its proofs:\n{}",
        summary.report
    );
    assert!(
        summary.report.contains("fd44::"),
        "the proofs covered IPv6:\n{}",
        summary.report
    );
}
