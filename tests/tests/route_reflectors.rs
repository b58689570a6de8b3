//! Two route reflectors of one cluster ID (issue 14 4, Calico's advice
//! for redundancy): every client peers with both, so stopping one loses
//! no route in any live node's FIB. The same scenario with one reflector
//! must lose routes, which shows the sampling sees a loss when there is
//! one.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use margay_lab::{Family, LabOptions, LabState, PeeringMode};
use margay_tests::lab_up;

/// Held for the whole of each test: labs cannot run side by side.
static LAB: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The reflector that is stopped, and the one that stays.
const STOPPED: &str = "node1";

fn rr_lab(dir: &tempfile::TempDir, reflectors: usize) -> LabOptions {
    LabOptions {
        nodes: 5,
        pods_per_node: 1,
        mode: PeeringMode::RouteReflector,
        route_reflectors: reflectors,
        family: Family::V4,
        bin_dir: margay_tests::bin_dir(),
        state_dir: dir.path().join("lab"),
        ..Default::default()
    }
}

/// One route a node's FIB must hold: `block` via `gateway`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Want {
    block: String,
    gateway: String,
}

/// For every node, the routes to every other node's blocks it must hold
/// (all of them, or only those of nodes other than `except`).
async fn wanted(
    opts: &LabOptions,
    state: &LabState,
    except: Option<&str>,
) -> BTreeMap<String, Vec<Want>> {
    let mut blocks = BTreeMap::new();
    for n in &state.nodes {
        let b = margay_lab::inspect::node_blocks(opts, &n.name)
            .await
            .unwrap();
        assert!(!b.is_empty(), "{} holds no block", n.name);
        blocks.insert(n.name.clone(), (n.address.clone(), b));
    }
    let mut out = BTreeMap::new();
    for n in &state.nodes {
        if Some(n.name.as_str()) == except {
            continue;
        }
        let mut w = Vec::new();
        for (other, (gateway, bs)) in &blocks {
            if other == &n.name || Some(other.as_str()) == except {
                continue;
            }
            for b in bs {
                w.push(Want {
                    block: b.clone(),
                    gateway: gateway.clone(),
                });
            }
        }
        out.insert(n.netns.clone(), w);
    }
    out
}

/// The routes of `want` missing from `netns`'s FIB (one `ip route`).
fn missing(netns: &str, want: &[Want]) -> Vec<Want> {
    let out = Command::new("ip")
        .args(["-n", netns, "-4", "route", "show"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // A route is its first line plus its indented `nexthop` lines.
    let mut routes: Vec<String> = Vec::new();
    for line in text.lines() {
        match routes.last_mut() {
            Some(r) if line.starts_with(char::is_whitespace) => {
                r.push_str(line);
                r.push(' ');
            }
            _ => routes.push(format!("{line} ")),
        }
    }
    want.iter()
        .filter(|w| {
            !routes.iter().any(|r| {
                r.starts_with(&format!("{} ", w.block))
                    && r.contains(&format!("via {} ", w.gateway))
            })
        })
        .cloned()
        .collect()
}

/// Samples every node's FIB of `want` until `stop` (one sample reads
/// every node's FIB once); what each sample that found a route missing
/// lacked, and how many samples were taken.
fn sample(
    want: BTreeMap<String, Vec<Want>>,
    stop: Arc<AtomicBool>,
) -> (Vec<String>, usize) {
    let mut losses = Vec::new();
    let mut samples = 0;
    while !stop.load(Ordering::Relaxed) {
        let lacking: Vec<String> = want
            .iter()
            .filter_map(|(netns, w)| {
                let gone = missing(netns, w);
                (!gone.is_empty()).then(|| format!("{netns} lacks {gone:?}"))
            })
            .collect();
        if !lacking.is_empty() {
            losses.push(lacking.join("; "));
        }
        samples += 1;
    }
    (losses, samples)
}

/// The peers each prefix's paths came from in `node`'s bgpd RIB.
fn rib_sources(state: &LabState, node: &str) -> BTreeMap<String, Vec<IpAddr>> {
    let n = state.nodes.iter().find(|n| n.name == node).unwrap();
    margay_ctlproto::client::rib(&n.run_dir.join("bgpd.ctl"))
        .unwrap_or_else(|e| panic!("{node}'s RIB: {e}"))
        .into_iter()
        .map(|r| {
            let mut peers: Vec<IpAddr> =
                r.paths.iter().filter_map(|p| p.peer).collect();
            peers.sort();
            (r.prefix.to_string(), peers)
        })
        .collect()
}

/// Every node's FIB holds `want`, within 30 s.
fn all_routed(want: &BTreeMap<String, Vec<Want>>) {
    let ok = margay_testkit::wait_until(Duration::from_secs(30), || {
        want.iter().all(|(ns, w)| missing(ns, w).is_empty())
    });
    if !ok {
        let gaps: Vec<String> = want
            .iter()
            .map(|(ns, w)| format!("{ns}: {:?}", missing(ns, w)))
            .collect();
        panic!("routes missing after 30 s:\n{}", gaps.join("\n"));
    }
}

/// Brings up an RR lab of `reflectors`, stops node1 (a reflector) while
/// sampling the live nodes' FIBs; the losses seen and the sample count.
/// With two reflectors it then starts node1 again and checks the clients
/// learn every block through both reflectors once more.
async fn stop_a_reflector(reflectors: usize) -> (Vec<String>, usize) {
    let dir = tempfile::tempdir().unwrap();
    let opts = rr_lab(&dir, reflectors);
    let (_down, state) = lab_up(&opts).await;
    let addr = |n: &str| -> IpAddr {
        let n = state.nodes.iter().find(|x| x.name == n).unwrap();
        n.address.parse().unwrap()
    };
    let all = wanted(&opts, &state, None).await;
    all_routed(&all);
    let reflector_addrs: Vec<IpAddr> = state
        .nodes
        .iter()
        .filter(|n| n.route_reflector)
        .map(|n| n.address.parse().unwrap())
        .collect();
    assert_eq!(reflector_addrs.len(), reflectors);
    // A client learns node4's blocks from every reflector (RFC 4456: each
    // reflects its client's routes to its other clients).
    let node4_block = &margay_lab::inspect::node_blocks(&opts, "node4")
        .await
        .unwrap()[0];
    let from = rib_sources(&state, "node5");
    assert_eq!(from[node4_block], reflector_addrs, "node5's RIB: {from:?}");
    if reflectors == 2 {
        // node1 gets node4's block from node4 only: node2 reflects it with
        // their shared cluster ID in CLUSTER_LIST, which node1 drops
        // (RFC 4456 8).
        let from = rib_sources(&state, "node1");
        assert_eq!(from[node4_block], [addr("node4")], "node1's RIB");
    }

    // Stop node1 while sampling the other nodes' FIBs.
    let live = wanted(&opts, &state, Some(STOPPED)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || sample(live, stop))
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    margay_lab::stop_node(&opts, STOPPED).unwrap();
    // The clients have dropped node1's paths (its Cease came), and a while
    // more for the FIBs to follow whatever bgpd decided.
    let gone = margay_testkit::wait_until(Duration::from_secs(20), || {
        !rib_sources(&state, "node5")
            .values()
            .any(|peers| peers.contains(&addr(STOPPED)))
    });
    assert!(gone, "node5 still has paths from the stopped {STOPPED}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let (losses, samples) = sampler.join().unwrap();
    eprintln!(
        "{reflectors} reflector(s), {STOPPED} stopped: {} of {samples} FIB \
         samples lacked a route",
        losses.len()
    );
    if reflectors == 1 {
        return (losses, samples);
    }
    // Without node1 every client holds node4's block through node2 only.
    let from = rib_sources(&state, "node5");
    assert_eq!(from[node4_block], [addr("node2")], "node5's RIB");

    // node1 comes back: all blocks (its own too) through both reflectors.
    margay_lab::start_node_again(&opts, STOPPED).await.unwrap();
    all_routed(&all);
    let back = margay_testkit::wait_until(Duration::from_secs(30), || {
        ["node3", "node4", "node5"].iter().all(|c| {
            let from = rib_sources(&state, c);
            all[&format!("mglab-{c}")]
                .iter()
                .all(|w| from.get(&w.block) == Some(&reflector_addrs))
        })
    });
    assert!(
        back,
        "clients do not learn every block from both reflectors again: {:?}",
        rib_sources(&state, "node5")
    );
    (losses, samples)
}

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_reflectors_one_stopped_no_fib_loses_a_route() {
    let name = "two_reflectors_one_stopped_no_fib_loses_a_route";
    if !margay_testkit::require_root(name) {
        return;
    }
    let _serial = LAB.lock().await;
    let (losses, samples) = stop_a_reflector(2).await;
    assert!(samples >= 10, "only {samples} FIB samples were taken");
    assert!(
        losses.is_empty(),
        "{} of {samples} samples lost routes, first: {:?}",
        losses.len(),
        &losses[..losses.len().min(3)]
    );
}

/// The control: with one reflector the same stop empties the clients'
/// FIBs of the other nodes' blocks, and the sampling sees it.
#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_reflector_stopped_the_fibs_lose_routes() {
    let name = "one_reflector_stopped_the_fibs_lose_routes";
    if !margay_testkit::require_root(name) {
        return;
    }
    let _serial = LAB.lock().await;
    let (losses, samples) = stop_a_reflector(1).await;
    assert!(
        !losses.is_empty(),
        "no route lost in {samples} samples with a single reflector stopped"
    );
}
