//! Control-plane scale benchmark (issue 14, section 2), bgpd part: N
//! simulated nodes (a Node, 4 BlockAffinities and 4 IPAMBlocks each) in a
//! real etcd, one real bgpd acting as node-0 and watching them, and a
//! generator of pod churn (an allocation added to a random other node's
//! block, R per second). Every 10th event lends node-0 an address in
//! another node's block (a borrowed /32), and its latency is timed from
//! the etcd write to the route in bgpd's RIB.
//!
//! Measured: bgpd's RSS after the initial sync and after the churn, its
//! CPU time per event (/proc), and the Range and Txn requests etcd
//! handled during the churn (its /metrics; the generator writes with
//! plain Puts, so every one counted is bgpd's).
//!
//! ```sh
//! cargo build --release -p margay-bgpd --bins
//! cargo bench -p margay-tests --bench control_plane -- --nodes 100,1000,5000
//! # another bgpd binary (e.g. an older build) for a before/after row:
//! cargo bench -p margay-tests --bench control_plane -- --bgpd /tmp/bgpd-old
//! ```
//!
//! Not measured here yet: felix-lite, and a remote block reaching the FIB
//! through BGP (the node-0 route is bgpd's own origination).

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use margay_crds::{
    AffinityState, AllocationAttribute, BGPConfiguration, BGPConfigurationSpec,
    BlockAffinity, BlockAffinitySpec, IPAMBlock, IPAMBlockSpec, IPPool,
    IPPoolSpec, Node, NodeBGPSpec, NodeSpec,
};
use margay_datastore::{Datastore, DatastoreSpec};
use margay_testkit::EtcdServer;

const BLOCKS_PER_NODE: usize = 4;

struct Args {
    nodes: Vec<usize>,
    events: usize,
    rate: f64,
    bgpd: PathBuf,
}

fn args() -> Args {
    let mut a = Args {
        nodes: vec![100, 1000],
        events: 200,
        rate: 50.0,
        bgpd: margay_tests::bin_dir().join("bgpd"),
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
    let nodes: Vec<Node> = (0..n)
        .map(|i| {
            let addr = if i == 0 {
                "127.0.0.1/8".to_string()
            } else {
                format!("10.{}.{}.1/8", i >> 8, i & 255)
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

/// Resident set size in KiB and CPU time (user + system) of `pid`.
fn usage(pid: u32) -> (u64, Duration) {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime), in clock ticks (100 Hz).
    let ticks: u64 =
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    (rss, Duration::from_millis(ticks * 10))
}

/// Whether bgpd's RIB holds `prefix` as its own route.
fn originates(socket: &std::path::Path, prefix: &str) -> bool {
    margay_ctlproto::client::rib(socket)
        .is_ok_and(|rib| rib.iter().any(|r| r.prefix.to_string() == prefix))
}

struct Row {
    nodes: usize,
    rss_synced: u64,
    rss_churned: u64,
    cpu_per_event: Duration,
    reads: (u64, u64),
    lat: Vec<Duration>,
}

async fn run(a: &Args, n: usize) -> Row {
    let etcd = EtcdServer::start().expect("etcd (scripts/deps installs it)");
    let spec: DatastoreSpec =
        format!("etcd:{}", etcd.endpoint()).parse().unwrap();
    let ds = Datastore::connect(&spec).await.unwrap();
    let port = margay_testkit::free_port();
    let mut blocks = seed(&ds, n, port).await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("bgpd.ctl");
    let mut bgpd: Child = Command::new(&a.bgpd)
        .args(["--datastore", &spec.to_string(), "--node", "node-0"])
        .args(["--listen-addr", "127.0.0.1", "--log-level", "warn"])
        .arg("--control-socket")
        .arg(&socket)
        .stdout(Stdio::null())
        .spawn()
        .expect("bgpd binary (cargo build -p margay-bgpd --bins)");
    let pid = bgpd.id();
    // Synced: node-0's first block is in its RIB.
    let first = block_cidr(0).1;
    assert!(
        margay_testkit::wait_until(Duration::from_secs(60), || {
            originates(&socket, &first)
        }),
        "bgpd never originated {first}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_synced, cpu0) = usage(pid);
    let reads0 = etcd_requests(&etcd.endpoint());
    let mut seed_rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rand = move |m: usize| {
        seed_rng ^= seed_rng << 13;
        seed_rng ^= seed_rng >> 7;
        seed_rng ^= seed_rng << 17;
        (seed_rng % m as u64) as usize
    };
    let period = Duration::from_secs_f64(1.0 / a.rate);
    let mut lat = Vec::new();
    // Raw puts: the generator itself makes no Range or Txn request.
    let mut etcd_client = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .unwrap();
    for e in 0..a.events {
        let start = Instant::now();
        // A block of another node (never node-0's).
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
        let key = format!(
            "/margay/v1/ipamblocks/{}",
            blk.metadata.name.as_deref().unwrap()
        );
        etcd_client
            .put(key, serde_json::to_string(&*blk).unwrap(), None)
            .await
            .unwrap();
        if lend {
            let ip = Ipv4Addr::from(u32::from(block_cidr(b).0) + slot as u32);
            let prefix = format!("{ip}/32");
            let sock = socket.clone();
            let ok = tokio::task::spawn_blocking(move || {
                margay_testkit::wait_until(Duration::from_secs(10), || {
                    originates(&sock, &prefix)
                })
            })
            .await
            .unwrap();
            assert!(ok, "bgpd never originated {ip}/32");
            lat.push(start.elapsed());
        }
        if let Some(rest) = period.checked_sub(start.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_churned, cpu1) = usage(pid);
    let reads1 = etcd_requests(&etcd.endpoint());
    let _ = bgpd.kill();
    let _ = bgpd.wait();
    lat.sort();
    Row {
        nodes: n,
        rss_synced,
        rss_churned,
        cpu_per_event: (cpu1 - cpu0) / a.events as u32,
        reads: (reads1.0 - reads0.0, reads1.1 - reads0.1),
        lat,
    }
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Runtime::new().unwrap();
    println!(
        "bgpd {}: {} events at {}/s, every 10th lends node-0 an address",
        a.bgpd.display(),
        a.events,
        a.rate
    );
    println!(
        "| nodes | blocks | bgpd RSS synced | after churn | CPU/event | \
         Range/Txn reads during churn | lend-to-RIB p50 | p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for &n in &a.nodes {
        let r = rt.block_on(run(&a, n));
        let p = |q: f64| {
            r.lat
                .get(((r.lat.len() as f64 - 1.0) * q).round() as usize)
                .map_or("-".into(), |d| {
                    format!("{:.1} ms", d.as_secs_f64() * 1e3)
                })
        };
        println!(
            "| {} | {} | {:.1} MiB | {:.1} MiB | {:.2} ms | {} / {} | {} | {} |",
            r.nodes,
            r.nodes * BLOCKS_PER_NODE,
            r.rss_synced as f64 / 1024.0,
            r.rss_churned as f64 / 1024.0,
            r.cpu_per_event.as_secs_f64() * 1e3,
            r.reads.0,
            r.reads.1,
            p(0.5),
            p(0.99),
        );
    }
}
