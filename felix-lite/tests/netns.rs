//! felix-lite against a real kernel FIB inside throwaway network
//! namespaces, fed by a fake bgpd that speaks the ctlproto RIB stream.
//! Root only (ignored otherwise).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use felix_lite::blocks::{Affinity, AffinityState, BlockEvent};
use felix_lite::daemon::{self, DaemonConfig};
use felix_lite::metrics::Metrics;
use felix_lite::netlink::AckMode;
use ipnetwork::IpNetwork;
use margay_ctlproto::{Request, RibEvent, decode_line, encode_line};
use margay_testkit::{Netns, require_root};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

const PROTO: u8 = 81;

// ===== fake bgpd =====

/// A bgpd stand-in: every subscriber gets `snapshot`, `EndOfSnapshot`, then
/// whatever [`FakeBgpd::send`] broadcasts. Dropping it closes everything.
struct FakeBgpd {
    path: PathBuf,
    deltas: broadcast::Sender<RibEvent>,
    task: JoinHandle<()>,
}

impl FakeBgpd {
    fn start(path: &Path, snapshot: Vec<RibEvent>) -> FakeBgpd {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).unwrap();
        let (deltas, _) = broadcast::channel(1024);
        let tx = deltas.clone();
        let conns = Arc::new(Mutex::new(Vec::<JoinHandle<()>>::new()));
        let task = tokio::spawn(async move {
            let _guard = AbortAll(conns.clone());
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                let mut rx = tx.subscribe();
                let snapshot = snapshot.clone();
                let h = tokio::spawn(async move {
                    let (r, mut w) = conn.into_split();
                    let mut lines = BufReader::new(r).lines();
                    let line = lines.next_line().await.unwrap().unwrap();
                    let req: Request = decode_line(&line).unwrap();
                    assert_eq!(req, Request::SubscribeRib);
                    let mut out = String::new();
                    for ev in snapshot {
                        out.push_str(&encode_line(&ev));
                    }
                    out.push_str(&encode_line(&RibEvent::EndOfSnapshot));
                    if w.write_all(out.as_bytes()).await.is_err() {
                        return;
                    }
                    while let Ok(ev) = rx.recv().await {
                        if w.write_all(encode_line(&ev).as_bytes())
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                });
                conns.lock().unwrap().push(h);
            }
        });
        FakeBgpd {
            path: path.to_path_buf(),
            deltas,
            task,
        }
    }

    fn send(&self, ev: RibEvent) {
        self.deltas.send(ev).unwrap();
    }
}

impl Drop for FakeBgpd {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

struct AbortAll(Arc<Mutex<Vec<JoinHandle<()>>>>);

impl Drop for AbortAll {
    fn drop(&mut self) {
        for h in self.0.lock().unwrap().drain(..) {
            h.abort();
        }
    }
}

// ===== test node =====

/// A namespace with a connected /24 (and /64) to put next hops on, a
/// socket path and an endpoint directory.
struct Node {
    ns: Netns,
    dir: tempfile::TempDir,
}

impl Node {
    fn new(tag: &str) -> Node {
        let ns = Netns::new(tag).unwrap();
        for cmd in [
            "link add eth0 type veth peer name peer0",
            "addr add 192.0.2.1/24 dev eth0",
            "addr add fd00::1/64 dev eth0 nodad",
            "link set peer0 up",
            "link set eth0 up",
        ] {
            let mut argv = vec!["ip"];
            argv.extend(cmd.split(' '));
            ns.exec(&argv).unwrap();
        }
        Node {
            ns,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("bgpd.ctl")
    }

    fn endpoints(&self) -> PathBuf {
        self.dir.path().join("endpoints")
    }

    fn cfg(&self, stale: Duration) -> DaemonConfig {
        DaemonConfig {
            node: "node1".into(),
            bgpd_socket: self.sock(),
            protocol: PROTO,
            stale_time: stale,
            resync_interval: Duration::from_secs(90),
            endpoint_dir: self.endpoints(),
            endpoint_scan_interval: Duration::from_millis(200),
            iface_prefix: "mg".into(),
            netns: Some(self.ns.path()),
            ack_mode: AckMode::Tail,
        }
    }

    /// Starts felix-lite for this node.
    fn felix(
        &self,
        stale: Duration,
        blocks: Option<mpsc::Receiver<BlockEvent>>,
    ) -> JoinHandle<()> {
        let cfg = self.cfg(stale);
        tokio::spawn(async move {
            daemon::run(cfg, blocks, Arc::new(Metrics::new()))
                .await
                .unwrap();
        })
    }

    fn ip(&self, cmd: &str) -> String {
        let mut argv = vec!["ip"];
        argv.extend(cmd.split(' '));
        self.ns.exec(&argv).unwrap()
    }

    /// The main table, one normalized line per route, as
    /// "PREFIX proto P via A,B" / "PREFIX proto P blackhole" /
    /// "PREFIX proto P dev X".
    fn fib(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for family in ["-4", "-6"] {
            let json = self
                .ns
                .exec(&["ip", family, "-j", "route", "show"])
                .unwrap();
            let routes: Vec<serde_json::Value> =
                serde_json::from_str(&json).unwrap();
            for r in routes {
                out.insert(describe(&r));
            }
        }
        // Kernel routes of the connected networks are not interesting.
        out.retain(|l| !l.contains("proto kernel"));
        out
    }

    /// Our routes only.
    fn ours(&self) -> BTreeSet<String> {
        let tag = format!(" proto {PROTO} ");
        self.fib()
            .into_iter()
            .filter(|l| l.contains(&tag))
            .collect()
    }
}

fn describe(r: &serde_json::Value) -> String {
    let s = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or("");
    let mut dst = s("dst").to_string();
    if dst != "default" && !dst.contains('/') {
        dst.push_str(if dst.contains(':') { "/128" } else { "/32" });
    }
    let proto = match r.get("protocol") {
        Some(serde_json::Value::String(p)) => p.clone(),
        Some(v) => v.to_string(),
        None => "boot".into(),
    };
    let what = if s("type") == "blackhole" {
        "blackhole".to_string()
    } else if let Some(nhs) = r.get("nexthops").and_then(|v| v.as_array()) {
        let mut gws: Vec<String> = nhs
            .iter()
            .map(|n| n["gateway"].as_str().unwrap_or("").to_string())
            .collect();
        gws.sort();
        format!("via {}", gws.join(","))
    } else if !s("gateway").is_empty() {
        format!("via {}", s("gateway"))
    } else {
        format!("dev {}", s("dev"))
    };
    format!("{dst} proto {proto} {what}")
}

/// The lines `ours()` should show for these (prefix, what) pairs.
fn expect(lines: &[&str]) -> BTreeSet<String> {
    lines
        .iter()
        .map(|l| {
            let (dst, what) = l.split_once(' ').unwrap();
            format!("{dst} proto {PROTO} {what}")
        })
        .collect()
}

fn route(prefix: &str, hops: &[&str]) -> RibEvent {
    RibEvent::Route {
        prefix: prefix.parse().unwrap(),
        next_hops: hops.iter().map(|h| h.parse::<IpAddr>().unwrap()).collect(),
    }
}

/// Polls `f` until it returns true or `timeout` passes.
async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if tokio::time::Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until our routes are exactly `want`; panics with the FIB if not.
async fn assert_ours(node: &Node, want: &BTreeSet<String>) {
    let ok = eventually(Duration::from_secs(10), || node.ours() == *want).await;
    assert!(
        ok,
        "FIB mismatch\n want: {want:#?}\n have: {:#?}",
        node.ours()
    );
}

const LONG: Duration = Duration::from_secs(120);

// ===== tests =====

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_and_deltas_end_in_the_exact_fib() {
    if !require_root("snapshot_and_deltas_end_in_the_exact_fib") {
        return;
    }
    let node = Node::new("fl-snap");
    let bgpd = FakeBgpd::start(
        &node.sock(),
        vec![
            route("10.1.0.0/26", &["192.0.2.2"]),
            route("10.2.0.0/26", &["192.0.2.3", "192.0.2.2"]),
            route("10.3.0.0/26", &["192.0.2.4"]),
            route("fd00:10::/122", &["fd00::2"]),
        ],
    );
    let felix = node.felix(LONG, None);
    assert_ours(
        &node,
        &expect(&[
            "10.1.0.0/26 via 192.0.2.2",
            "10.2.0.0/26 via 192.0.2.2,192.0.2.3",
            "10.3.0.0/26 via 192.0.2.4",
            "fd00:10::/122 via fd00::2",
        ]),
    )
    .await;
    bgpd.send(route("10.1.0.0/26", &["192.0.2.5"]));
    bgpd.send(RibEvent::Withdraw {
        prefix: "10.3.0.0/26".parse().unwrap(),
    });
    bgpd.send(route("10.9.0.7/32", &["192.0.2.6"]));
    bgpd.send(route("fd00:10::/122", &["fd00::2", "fd00::3"]));
    assert_ours(
        &node,
        &expect(&[
            "10.1.0.0/26 via 192.0.2.5",
            "10.2.0.0/26 via 192.0.2.2,192.0.2.3",
            "10.9.0.7/32 via 192.0.2.6",
            "fd00:10::/122 via fd00::2,fd00::3",
        ]),
    )
    .await;
    felix.abort();
}

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_of_other_protocols_are_untouched() {
    if !require_root("routes_of_other_protocols_are_untouched") {
        return;
    }
    let node = Node::new("fl-foreign");
    node.ip("route add 10.1.0.0/26 via 192.0.2.9 proto bird");
    node.ip("route add 10.60.0.0/24 via 192.0.2.9 proto static");
    node.ip("route add 10.61.0.0/24 via 192.0.2.9 table 100 proto 81");
    let before: BTreeSet<String> = node.fib();
    let _bgpd = FakeBgpd::start(
        &node.sock(),
        vec![
            // Collides with BIRD's route: must not replace it.
            route("10.1.0.0/26", &["192.0.2.2"]),
            route("10.2.0.0/26", &["192.0.2.2"]),
        ],
    );
    let felix = node.felix(LONG, None);
    assert_ours(&node, &expect(&["10.2.0.0/26 via 192.0.2.2"])).await;
    let mut after = node.fib();
    after.remove("10.2.0.0/26 proto 81 via 192.0.2.2");
    assert_eq!(after, before, "foreign routes changed");
    let table100 = node.ip("route show table 100");
    assert!(table100.contains("10.61.0.0/24"), "{table100}");
    felix.abort();
}

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_a_changed_snapshot_removes_only_stale_routes() {
    if !require_root(
        "restart_with_a_changed_snapshot_removes_only_stale_routes",
    ) {
        return;
    }
    let node = Node::new("fl-restart");
    node.ip("route add 10.60.0.0/24 via 192.0.2.9 proto static");
    let bgpd = FakeBgpd::start(
        &node.sock(),
        vec![
            route("10.1.0.0/26", &["192.0.2.2"]),
            route("10.2.0.0/26", &["192.0.2.2"]),
            route("10.3.0.0/26", &["192.0.2.2"]),
        ],
    );
    let felix = node.felix(LONG, None);
    assert_ours(
        &node,
        &expect(&[
            "10.1.0.0/26 via 192.0.2.2",
            "10.2.0.0/26 via 192.0.2.2",
            "10.3.0.0/26 via 192.0.2.2",
        ]),
    )
    .await;
    // felix-lite and bgpd go away: the routes stay.
    felix.abort();
    drop(bgpd);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(node.ours().len(), 3);
    // Both come back, bgpd with a different view.
    let _bgpd = FakeBgpd::start(
        &node.sock(),
        vec![
            route("10.1.0.0/26", &["192.0.2.2"]),
            route("10.4.0.0/26", &["192.0.2.3"]),
        ],
    );
    let felix = node.felix(LONG, None);
    assert_ours(
        &node,
        &expect(&["10.1.0.0/26 via 192.0.2.2", "10.4.0.0/26 via 192.0.2.3"]),
    )
    .await;
    assert!(
        node.fib()
            .contains("10.60.0.0/24 proto static via 192.0.2.9")
    );
    felix.abort();
}

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_dropped_and_restored_with_fewer_routes() {
    if !require_root("stream_dropped_and_restored_with_fewer_routes") {
        return;
    }
    let node = Node::new("fl-drop");
    let all = expect(&[
        "10.1.0.0/26 via 192.0.2.2",
        "10.2.0.0/26 via 192.0.2.2",
        "10.3.0.0/26 via 192.0.2.2",
    ]);
    let bgpd = FakeBgpd::start(
        &node.sock(),
        vec![
            route("10.1.0.0/26", &["192.0.2.2"]),
            route("10.2.0.0/26", &["192.0.2.2"]),
            route("10.3.0.0/26", &["192.0.2.2"]),
        ],
    );
    let felix = node.felix(LONG, None);
    assert_ours(&node, &all).await;
    drop(bgpd);
    // bgpd away for a while: nothing is removed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(node.ours(), all);
    let _bgpd = FakeBgpd::start(
        &node.sock(),
        vec![route("10.2.0.0/26", &["192.0.2.2"])],
    );
    assert_ours(&node, &expect(&["10.2.0.0/26 via 192.0.2.2"])).await;
    felix.abort();
}

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_routes_expire_when_bgpd_stays_away() {
    if !require_root("stale_routes_expire_when_bgpd_stays_away") {
        return;
    }
    let node = Node::new("fl-stale");
    let bgpd = FakeBgpd::start(
        &node.sock(),
        vec![route("10.1.0.0/26", &["192.0.2.2"])],
    );
    let felix = node.felix(Duration::from_secs(3), None);
    assert_ours(&node, &expect(&["10.1.0.0/26 via 192.0.2.2"])).await;
    drop(bgpd);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(node.ours().len(), 1, "removed before the stale time");
    assert_ours(&node, &BTreeSet::new()).await;
    felix.abort();
}

fn affinity(
    name: &str,
    node: &str,
    cidr: &str,
    state: AffinityState,
) -> Affinity {
    Affinity {
        name: name.into(),
        node: node.into(),
        cidr: cidr.parse::<IpNetwork>().unwrap(),
        state,
        deleted: false,
    }
}

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackholes_follow_block_affinity() {
    if !require_root("blackholes_follow_block_affinity") {
        return;
    }
    use AffinityState::*;
    let node = Node::new("fl-blocks");
    // A blackhole left by an earlier run for a block we no longer hold.
    node.ip("route add blackhole 10.4.9.0/26 proto 81");
    let _bgpd = FakeBgpd::start(&node.sock(), vec![]);
    let (tx, rx) = mpsc::channel(16);
    let felix = node.felix(LONG, Some(rx));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        node.ours().contains("10.4.9.0/26 proto 81 blackhole"),
        "kept until listed"
    );
    tx.send(BlockEvent::Snapshot(vec![
        affinity("a", "node1", "10.4.0.0/26", Confirmed),
        affinity("b", "node1", "10.4.0.64/26", Pending),
        affinity("c", "node2", "10.4.0.128/26", Confirmed),
        affinity("d", "node1", "fd00:4::/122", Confirmed),
    ]))
    .await
    .unwrap();
    assert_ours(
        &node,
        &expect(&["10.4.0.0/26 blackhole", "fd00:4::/122 blackhole"]),
    )
    .await;
    tx.send(BlockEvent::Upsert(affinity(
        "b",
        "node1",
        "10.4.0.64/26",
        Confirmed,
    )))
    .await
    .unwrap();
    tx.send(BlockEvent::Delete { name: "a".into() })
        .await
        .unwrap();
    assert_ours(
        &node,
        &expect(&["10.4.0.64/26 blackhole", "fd00:4::/122 blackhole"]),
    )
    .await;
    felix.abort();
}

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_route_deleted_by_hand_comes_back() {
    if !require_root("a_pod_route_deleted_by_hand_comes_back") {
        return;
    }
    let node = Node::new("fl-pod");
    node.ip("link add mgpod1 type veth peer name pod1");
    node.ip("link set pod1 up");
    node.ip("link set mgpod1 up");
    std::fs::create_dir_all(node.endpoints()).unwrap();
    let file = node.endpoints().join("container1-eth0.json");
    std::fs::write(
        &file,
        r#"{"containerID":"container1","ifname":"eth0","hostIface":"mgpod1","ips":["10.4.0.5/32","fd44::5/128"]}"#,
    )
    .unwrap();
    // What the CNI plugin does after writing the file.
    node.ip("route add 10.4.0.5/32 dev mgpod1");
    node.ip("-6 route add fd44::5/128 dev mgpod1 proto static");
    let _bgpd = FakeBgpd::start(&node.sock(), vec![]);
    let felix = node.felix(LONG, None);
    tokio::time::sleep(Duration::from_millis(500)).await;
    node.ip("route del 10.4.0.5/32 dev mgpod1");
    let back = eventually(Duration::from_secs(5), || {
        node.ip("route show 10.4.0.5/32").contains("dev mgpod1")
    })
    .await;
    assert!(back, "pod route not restored: {:#?}", node.fib());
    // The pod goes away (file removed): its routes go too, the IPv6 one
    // included although the CNI plugin made it (IPv6 device routes carry
    // no link scope, yet they are pod routes all the same).
    std::fs::remove_file(&file).unwrap();
    let gone = eventually(Duration::from_secs(5), || {
        node.ip("route show 10.4.0.5/32").is_empty()
            && node.ip("-6 route show fd44::5/128").is_empty()
    })
    .await;
    assert!(gone, "pod route not removed: {:#?}", node.fib());
    felix.abort();
}
