//! Control-plane scale benchmark (issue 14, section 2), root: N
//! simulated nodes (a Node, 4 BlockAffinities and 4 IPAMBlocks each) in a
//! real etcd; the tested node-0 runs a real bgpd and a real felix-lite in
//! a network namespace, watching them; node-1 runs one more real bgpd in
//! another namespace, peered explicitly with node-0 (BGPPeers, mesh off);
//! a generator of pod churn adds an allocation to a random other node's
//! block, R per second (module `fabric` draws the namespaces).
//!
//! Timed: every 10th event lends node-0 an address in another node's
//! block (a borrowed /32): from the etcd write to the route in node-0's
//! bgpd RIB. Every 10th event (offset 5) claims a new block for node-1
//! (its confirmed BlockAffinity): from that etcd write to the block's
//! route in node-0's kernel FIB (`ip monitor route`), through node-1's
//! bgpd, BGP, node-0's bgpd and felix-lite.
//!
//! Measured besides: RSS of node-0's bgpd and felix-lite after the
//! initial sync and after the churn, their CPU time per event (/proc),
//! and the Range and Txn requests etcd handled during the churn (its
//! /metrics; the generator writes with plain Puts, so every one counted
//! is a reader's).
//!
//! ```sh
//! cargo build -p margay-bgpd -p felix-lite --bins
//! cargo test -p margay-tests --bench control_plane --no-run   # debug
//! target/debug/deps/control_plane-* --nodes 100,1000,5000
//! # other binaries (e.g. an older build) for a before/after row:
//! target/debug/deps/control_plane-* --bgpd /tmp/bgpd-old --felix-lite /tmp/felix-old
//! ```

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use margay_crds::{
    AffinityState, AllocationAttribute, BGPConfiguration, BGPConfigurationSpec,
    BGPPeer, BGPPeerSpec, BlockAffinity, BlockAffinitySpec, IPAMBlock,
    IPAMBlockSpec, IPPool, IPPoolSpec, Node, NodeBGPSpec, NodeSpec,
};
use margay_datastore::{Datastore, DatastoreSpec};

#[path = "control_plane/fabric.rs"]
mod fabric;
#[path = "control_plane/kube.rs"]
mod kube;
use fabric::{Fabric, FibWatch, NODE0, NODE1, rss_breakdown, usage};

const BLOCKS_PER_NODE: usize = 4;

struct Args {
    nodes: Vec<usize>,
    events: usize,
    rate: f64,
    bgpd: PathBuf,
    felix: PathBuf,
    /// On a real kube-apiserver instead of etcd.
    kube: bool,
}

fn args() -> Args {
    let mut a = Args {
        nodes: vec![100, 1000],
        events: 200,
        rate: 50.0,
        bgpd: margay_tests::bin_dir().join("bgpd"),
        felix: margay_tests::bin_dir().join("felix-lite"),
        kube: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().unwrap_or_default();
        match arg.as_str() {
            "--nodes" => {
                a.nodes = val()
                    .split(',')
                    .map(|n| n.parse().expect("--nodes N[,N..]"))
                    .collect()
            }
            "--events" => a.events = val().parse().expect("--events N"),
            "--rate" => a.rate = val().parse().expect("--rate R"),
            "--bgpd" => a.bgpd = PathBuf::from(val()),
            "--felix-lite" => a.felix = PathBuf::from(val()),
            "--kube" => a.kube = true,
            // cargo bench passes --bench.
            _ => {}
        }
    }
    a
}

/// The `b`th /26 of 10.128.0.0/9.
fn block_cidr(b: usize) -> (Ipv4Addr, String) {
    let base = u32::from(Ipv4Addr::new(10, 128, 0, 0)) + (b as u32) * 64;
    let ip = Ipv4Addr::from(base);
    (ip, format!("{ip}/26"))
}

fn node_name(i: usize) -> String {
    format!("node-{i}")
}

/// Stores N nodes with their affinities and blocks; returns the blocks.
async fn seed(ds: &Datastore, n: usize, port: u16) -> Vec<IPAMBlock> {
    let cfg = BGPConfiguration::new(
        "default",
        BGPConfigurationSpec {
            node_to_node_mesh_enabled: Some(false),
            as_number: Some(64512),
            listen_port: Some(port),
            ..Default::default()
        },
    );
    ds.create(&cfg).await.unwrap();
    let pool = IPPool::new(
        "bench",
        IPPoolSpec {
            cidr: "10.128.0.0/9".into(),
            block_size: Some(26),
            ..Default::default()
        },
    );
    ds.create(&pool).await.unwrap();
    // node-0 and node-1 peer with each other only (mesh off), on the
    // cluster's listen port.
    for (name, node, peer) in
        [("n0-n1", "node-0", NODE1), ("n1-n0", "node-1", NODE0)]
    {
        let p = BGPPeer::new(
            name,
            BGPPeerSpec {
                node: Some(node.into()),
                peer_ip: Some(format!("{peer}:{port}")),
                as_number: Some(64512),
                ..Default::default()
            },
        );
        ds.create(&p).await.unwrap();
    }
    let nodes: Vec<Node> = (0..n)
        .map(|i| {
            let addr = match i {
                0 => format!("{NODE0}/24"),
                1 => format!("{NODE1}/24"),
                _ => format!("10.{}.{}.1/8", i >> 8, i & 255),
            };
            Node::new(
                &node_name(i),
                NodeSpec {
                    bgp: Some(NodeBGPSpec {
                        ipv4_address: Some(addr),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )
        })
        .collect();
    futures::stream::iter(nodes)
        .for_each_concurrent(32, |node| async move {
            ds.create(&node).await.unwrap();
        })
        .await;
    let mut blocks = Vec::new();
    let mut affinities = Vec::new();
    for b in 0..n * BLOCKS_PER_NODE {
        let owner = node_name(b / BLOCKS_PER_NODE);
        let (_, cidr) = block_cidr(b);
        let name = cidr.replace(['.', '/'], "-");
        affinities.push(BlockAffinity::new(
            &format!("{owner}-{name}"),
            BlockAffinitySpec {
                state: AffinityState::Confirmed,
                node: owner.clone(),
                type_: "host".into(),
                cidr: cidr.clone(),
                deleted: false,
            },
        ));
        blocks.push(IPAMBlock::new(
            &name,
            IPAMBlockSpec {
                cidr,
                affinity: Some(format!("host:{owner}")),
                allocations: vec![None; 64],
                unallocated: (0..64).collect(),
                ..Default::default()
            },
        ));
    }
    futures::stream::iter(affinities)
        .for_each_concurrent(32, |a| async move {
            ds.create(&a).await.unwrap();
        })
        .await;
    futures::stream::iter(blocks)
        .map(|b| async move { ds.create(&b).await.unwrap() })
        .buffered(32)
        .collect()
        .await
}

/// (Range, Txn) requests etcd has handled.
fn etcd_requests(endpoint: &str) -> (u64, u64) {
    let addr = endpoint.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("etcd metrics");
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let count = |m: &str| -> u64 {
        let m = format!("grpc_method=\"{m}\"");
        text.lines()
            .filter(|l| l.starts_with("grpc_server_handled_total{"))
            .filter(|l| l.contains(&m))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    (count("Range"), count("Txn"))
}

/// Whether bgpd's RIB holds `prefix`.
fn in_rib(socket: &std::path::Path, prefix: &str) -> bool {
    margay_ctlproto::client::rib(socket)
        .is_ok_and(|rib| rib.iter().any(|r| r.prefix.to_string() == prefix))
}

/// Waits (up to 10 s) until the bgpd behind `socket` originates the
/// address of `slot` in `block`, lent to node-0; panics if it never does.
async fn wait_originated(socket: PathBuf, block: usize, slot: usize) {
    let ip = Ipv4Addr::from(u32::from(block_cidr(block).0) + slot as u32);
    let prefix = format!("{ip}/32");
    let ok = tokio::task::spawn_blocking(move || {
        margay_testkit::wait_until(Duration::from_secs(10), || {
            in_rib(&socket, &prefix)
        })
    })
    .await
    .unwrap();
    assert!(ok, "bgpd never originated {ip}/32");
}

/// Whether netns `ns`'s FIB routes `prefix`.
fn in_fib(ns: &str, prefix: &str) -> bool {
    Command::new("ip")
        .args(["-n", ns, "route", "show", prefix])
        .output()
        .is_ok_and(|o| !o.stdout.is_empty())
}

/// p-quantile of sorted durations.
fn quantile(v: &[Duration], q: f64) -> String {
    v.get(((v.len() as f64 - 1.0) * q).round() as usize)
        .map_or("-".into(), |d| format!("{:.1} ms", d.as_secs_f64() * 1e3))
}

struct Row {
    nodes: usize,
    bgpd: (u64, u64, Duration),
    felix: (u64, u64, Duration),
    reads: (u64, u64),
    lend: Vec<Duration>,
    fib: Vec<Duration>,
    /// Where bgpd's and felix-lite's RSS is, after the churn.
    breakdown: (String, String),
}

/// Raw Put of `obj` under its etcd key (no Range, no Txn).
async fn put<K: margay_datastore::Object>(
    c: &mut etcd_client::Client,
    obj: &K,
) {
    let key =
        margay_datastore::etcd::key::<K>(obj.meta().name.as_deref().unwrap());
    c.put(key, serde_json::to_string(obj).unwrap(), None)
        .await
        .unwrap();
}

async fn run(a: &Args, n: usize) -> Row {
    let fabric = Fabric::new();
    let spec: DatastoreSpec =
        format!("etcd:{}", fabric.etcd_local()).parse().unwrap();
    let remote = format!("etcd:{}", fabric.etcd_remote());
    let ds = Datastore::connect(&spec).await.unwrap();
    let port = margay_testkit::free_port();
    let mut blocks = seed(&ds, n, port).await;
    let dir = tempfile::tempdir().unwrap();
    let sock0 = dir.path().join("bgpd0.ctl");
    let sock1 = dir.path().join("bgpd1.ctl");
    let bgpd = |node: &str, addr: &str, sock: &std::path::Path| {
        let mut c = Command::new(&a.bgpd);
        c.args(["--datastore", &remote, "--node", node])
            .args(["--listen-addr", addr, "--log-level", "warn"])
            .arg("--control-socket")
            .arg(sock);
        c
    };
    let bgpd0 = fabric.a.spawn(bgpd("node-0", NODE0, &sock0)).unwrap();
    let _bgpd1 = fabric.b.spawn(bgpd("node-1", NODE1, &sock1)).unwrap();
    let mut felix = Command::new(&a.felix);
    felix
        .args(["--datastore", &remote, "--node", "node-0", "--no-nat"])
        .arg("--bgpd-socket")
        .arg(&sock0)
        .arg("--endpoint-dir")
        .arg(dir.path().join("endpoints"));
    let felix = fabric.a.spawn(felix).unwrap();
    // Synced: node-0 originates its first block, and node-1's first block
    // is in node-0's FIB (the session is up, felix-lite programs).
    let (own, remote_block) = (block_cidr(0).1, block_cidr(BLOCKS_PER_NODE).1);
    let ns = fabric.a.name().to_string();
    let synced = margay_testkit::wait_until(Duration::from_secs(120), || {
        in_rib(&sock0, &own) && in_fib(&ns, &remote_block)
    });
    assert!(
        synced,
        "not synced: bgpd {}\nfelix-lite {}",
        fabric.a.log(bgpd0),
        fabric.a.log(felix)
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fib = FibWatch::start(&ns);
    let (b_rss0, b_cpu0) = usage(bgpd0);
    let (f_rss0, f_cpu0) = usage(felix);
    let reads0 = etcd_requests(&fabric.etcd_local());
    let mut seed_rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rand = move |m: usize| {
        seed_rng ^= seed_rng << 13;
        seed_rng ^= seed_rng >> 7;
        seed_rng ^= seed_rng << 17;
        (seed_rng % m as u64) as usize
    };
    let period = Duration::from_secs_f64(1.0 / a.rate);
    let (mut lend_lat, mut fib_lat) = (Vec::new(), Vec::new());
    // Raw puts: the generator itself makes no Range or Txn request.
    let mut etcd = etcd_client::Client::connect([fabric.etcd_local()], None)
        .await
        .unwrap();
    let mut next_block = n * BLOCKS_PER_NODE;
    for e in 0..a.events {
        let start = Instant::now();
        if e % 10 == 5 {
            // node-1 claims a new block: the block, then its confirmed
            // affinity (what makes node-1 originate it).
            let (_, cidr) = block_cidr(next_block);
            next_block += 1;
            let name = cidr.replace(['.', '/'], "-");
            let block = IPAMBlock::new(
                &name,
                IPAMBlockSpec {
                    cidr: cidr.clone(),
                    affinity: Some("host:node-1".into()),
                    allocations: vec![None; 64],
                    unallocated: (0..64).collect(),
                    ..Default::default()
                },
            );
            put(&mut etcd, &block).await;
            let aff = BlockAffinity::new(
                &format!("node-1-{name}"),
                BlockAffinitySpec {
                    state: AffinityState::Confirmed,
                    node: "node-1".into(),
                    type_: "host".into(),
                    cidr: cidr.clone(),
                    deleted: false,
                },
            );
            let claimed = Instant::now();
            put(&mut etcd, &aff).await;
            let at = fib.added(&cidr, Duration::from_secs(10));
            let at =
                at.unwrap_or_else(|| panic!("{cidr} never reached the FIB"));
            fib_lat.push(at.saturating_duration_since(claimed));
        } else {
            // A pod event in a block of another node (never node-0's).
            let b = BLOCKS_PER_NODE + rand(blocks.len() - BLOCKS_PER_NODE);
            let owner = node_name(b / BLOCKS_PER_NODE);
            let lend = e % 10 == 9;
            let blk = &mut blocks[b];
            let Some(slot) = blk.spec.unallocated.pop() else {
                continue;
            };
            blk.spec.allocations[slot] = Some(blk.spec.attributes.len());
            blk.spec.attributes.push(AllocationAttribute {
                handle_id: Some(format!("h{e}")),
                secondary: [(
                    "node".to_string(),
                    if lend { "node-0".to_string() } else { owner },
                )]
                .into(),
                ..Default::default()
            });
            put(&mut etcd, &*blk).await;
            if lend {
                wait_originated(sock0.clone(), b, slot).await;
                lend_lat.push(start.elapsed());
            }
        }
        if let Some(rest) = period.checked_sub(start.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (b_rss1, b_cpu1) = usage(bgpd0);
    let (f_rss1, f_cpu1) = usage(felix);
    let reads1 = etcd_requests(&fabric.etcd_local());
    let breakdown = (rss_breakdown(bgpd0), rss_breakdown(felix));
    lend_lat.sort();
    fib_lat.sort();
    let per_event = |d: Duration| d / a.events as u32;
    Row {
        nodes: n,
        bgpd: (b_rss0, b_rss1, per_event(b_cpu1 - b_cpu0)),
        felix: (f_rss0, f_rss1, per_event(f_cpu1 - f_cpu0)),
        reads: (reads1.0 - reads0.0, reads1.1 - reads0.1),
        lend: lend_lat,
        fib: fib_lat,
        breakdown,
    }
}

fn main() {
    margay_testkit::require_root("control_plane bench");
    let a = args();
    let rt = tokio::runtime::Runtime::new().unwrap();
    println!(
        "{}: bgpd {}, felix-lite {}: {} events at {}/s; every 10th lends \
         node-0 an address, every 10th (offset 5) claims a block for node-1",
        if a.kube { "kube-apiserver" } else { "etcd" },
        a.bgpd.display(),
        a.felix.display(),
        a.events,
        a.rate
    );
    println!(
        "| nodes | blocks | bgpd RSS synced / after | bgpd CPU/event | \
         felix-lite RSS synced / after | felix-lite CPU/event | \
         Range/Txn during churn | lend-to-RIB p50 / p99 | \
         claim-to-FIB p50 / p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mib = |k: u64| k as f64 / 1024.0;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut notes = Vec::new();
    for &n in &a.nodes {
        let r = if a.kube {
            rt.block_on(kube::run(&a, n))
        } else {
            rt.block_on(run(&a, n))
        };
        notes.push(format!(
            "{n} nodes: bgpd RSS: {}; felix-lite RSS: {}",
            r.breakdown.0, r.breakdown.1
        ));
        println!(
            "| {} | {} | {:.1} / {:.1} MiB | {:.2} ms | {:.1} / {:.1} MiB | \
             {:.2} ms | {} / {} | {} / {} | {} / {} |",
            r.nodes,
            r.nodes * BLOCKS_PER_NODE,
            mib(r.bgpd.0),
            mib(r.bgpd.1),
            ms(r.bgpd.2),
            mib(r.felix.0),
            mib(r.felix.1),
            ms(r.felix.2),
            r.reads.0,
            r.reads.1,
            quantile(&r.lend, 0.5),
            quantile(&r.lend, 0.99),
            quantile(&r.fib, 0.5),
            quantile(&r.fib, 0.99),
        );
    }
    if a.kube {
        notes.push(
            "kube-apiserver: the reads column is LIST / GET requests the \
             apiserver served during the churn; no node-1 (claim-to-FIB)"
                .into(),
        );
    }
    for n in notes {
        println!("{n}");
    }
}
