//! Datastore reads per pod event (issue 14, section 1): on a running
//! 3-node lab with the etcd datastore, 20 IPAMBlock changes (what 20 pod
//! ADDs or DELs write) cost bgpd, felix-lite and the node agents no read
//! at all: each reader lists once and then only watches. Counted by
//! etcd itself (`/metrics`: the Range and Txn RPCs it handled, and its
//! MVCC range counter, which also counts the previous-value lookups it
//! makes for watches), while 40 more blocks sit in the datastore, so a
//! reader that re-lists on events would show here.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use ipnetwork::IpNetwork;
use margay_crds::{AllocationAttribute, IPAMBlock, IPAMBlockSpec};
use margay_lab::{Family, LabOptions, PeeringMode};
use margay_tests::lab_up;

/// Blocks of a node outside the lab, present while counting.
const EXTRA_BLOCKS: u8 = 40;
/// Changes to one block, counted.
const CHANGES: u8 = 20;

/// etcd's read counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reads {
    /// `grpc_server_handled_total{grpc_method="Range"}`: get and list.
    range_rpcs: u64,
    /// `grpc_server_handled_total{grpc_method="Txn"}`: batch reads (and
    /// conditional writes, of which the test makes none).
    txn_rpcs: u64,
    /// `etcd_debugging_mvcc_range_total`: every range, in RPCs, Txns, or
    /// etcd's own lookup of a watched key's previous value.
    mvcc_ranges: u64,
}

/// Scrapes etcd's `/metrics` on its client URL.
fn scrape(endpoint: &str) -> Reads {
    let addr = endpoint.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("etcd metrics");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(
        text.contains("etcd_debugging_mvcc_range_total"),
        "not etcd's metrics from {addr}:\n{text}"
    );
    let sum = |pred: &dyn Fn(&str) -> bool| -> u64 {
        text.lines()
            .filter(|l| !l.starts_with('#') && pred(l))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    let grpc = |method: &str| {
        let m = format!("grpc_method=\"{method}\"");
        sum(&|l| l.starts_with("grpc_server_handled_total{") && l.contains(&m))
    };
    Reads {
        range_rpcs: grpc("Range"),
        txn_rpcs: grpc("Txn"),
        mvcc_ranges: sum(&|l| l.starts_with("etcd_debugging_mvcc_range_total")),
    }
}

/// A /26 block at 10.250.`n`.0 of node "ghost", lending its first
/// `lent` addresses to node2.
fn block(n: u8, lent: u8) -> (String, String) {
    let cidr = format!("10.250.{n}.0/26");
    let name = format!("10-250-{n}-0-26");
    let mut spec = IPAMBlockSpec {
        cidr,
        affinity: Some("host:ghost".into()),
        allocations: vec![None; 64],
        ..Default::default()
    };
    for i in 0..usize::from(lent) {
        spec.allocations[i] = Some(i);
        spec.attributes.push(AllocationAttribute {
            handle_id: Some(format!("h{i}")),
            secondary: [("node".to_string(), "node2".to_string())].into(),
            ..Default::default()
        });
    }
    spec.unallocated = (usize::from(lent)..64).collect();
    let obj = IPAMBlock::new(&name, spec);
    (
        format!("/margay/v1/ipamblocks/{name}"),
        serde_json::to_string(&obj).unwrap(),
    )
}

/// Whether node2's bgpd comes to originate 10.250.`n`.`i`/32 within 20 s.
async fn node2_originates(opts: &LabOptions, n: u8, i: u8) -> bool {
    let want: IpNetwork = format!("10.250.{n}.{i}/32").parse().unwrap();
    for _ in 0..200 {
        if margay_lab::inspect::originated(opts, "node2")
            .await
            .is_ok_and(|r| r.contains(&want))
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_changes_cost_no_datastore_read() {
    let name = "block_changes_cost_no_datastore_read";
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
    let mut etcd =
        etcd_client::Client::connect([state.etcd_endpoint.clone()], None)
            .await
            .unwrap();
    // Plain puts: no Range and no Txn of the test's own in the counts.
    for n in 0..EXTRA_BLOCKS {
        let (key, json) = block(n, 0);
        etcd.put(key, json, None).await.unwrap();
    }
    // The last extra block lends node2 one address: once node2's bgpd
    // originates it, every earlier block event has been seen (one watch,
    // in revision order).
    let (key, json) = block(EXTRA_BLOCKS - 1, 1);
    etcd.put(key, json, None).await.unwrap();
    let seen = node2_originates(&opts, EXTRA_BLOCKS - 1, 0).await;
    assert!(seen, "node2's bgpd never saw the extra blocks");
    // Whatever reacting the other readers do to those is over.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let before = scrape(&state.etcd_endpoint);
    let counted = 200;
    for k in 1..=CHANGES {
        let (key, json) = block(counted, k);
        etcd.put(key, json, None).await.unwrap();
    }
    let seen = node2_originates(&opts, counted, CHANGES - 1).await;
    assert!(seen, "node2's bgpd never applied the last block change");
    // Reads that the events set off elsewhere (node1, node3) land too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = scrape(&state.etcd_endpoint);
    eprintln!(
        "{CHANGES} block changes with {EXTRA_BLOCKS} more blocks stored: \
         before {before:?}, after {after:?}"
    );
    assert_eq!(
        (
            after.range_rpcs - before.range_rpcs,
            after.txn_rpcs - before.txn_rpcs,
        ),
        (0, 0),
        "Range and Txn requests during {CHANGES} block changes: every \
         reader must only watch"
    );
    // etcd itself reads the previous value of each changed key for each
    // watch that asks for it (bgpd's three IPAMBlock watches; the first
    // change creates the key and has none): one per watcher per event,
    // whatever the number of blocks.
    let per_watch = u64::from(CHANGES);
    assert!(
        after.mvcc_ranges - before.mvcc_ranges <= 3 * per_watch,
        "MVCC ranges {} > 3 watches x {per_watch} events",
        after.mvcc_ranges - before.mvcc_ranges
    );
}
