//! Scale and convergence benchmark of issue 6: an N-node lab fabric
//! (mesh, or one route reflector and N-1 clients), then
//!
//! - convergence: a block claimed on one node (through margay's IPAM, as a
//!   CNI ADD would) until its route is in every other node's kernel FIB,
//!   timed by `ip monitor route` in each node namespace, from the moment
//!   the confirmed BlockAffinity reaches an etcd watcher (the claim) and,
//!   as an upper bound, from the start of the IPAM call;
//! - idle cost: resident memory and CPU of every bgpd, felix-lite and
//!   margay-node, next to the lab's BIRD ToR, which carries a session to
//!   every node and every block (the same job as one node's bgpd, plus
//!   kernel export).
//!
//! Needs root, etcd and bird2, and release binaries:
//!
//! ```sh
//! cargo build --release --bins
//! cargo bench -p margay-tests --bench mesh_scale -- --nodes 20 --claims 10
//! cargo bench -p margay-tests --bench mesh_scale -- --nodes 50 --mode rr
//! cargo bench -p margay-tests --bench mesh_scale -- --nodes 50 --mode rr \
//!     --route-reflectors 2
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use margay_crds::{AffinityState, BlockAffinity};
use margay_datastore::{Datastore, DatastoreSpec, WatchEvent};
use margay_ipam::{AssignArgs, Ipam, IpamOptions};
use margay_lab::topology::{TOR_NS, Topology};
use margay_lab::{Family, LabOptions, PeeringMode};
use margay_tests::{lab_up, pids_named};

const POOL: &str = "scale-bench";
const POOL_CIDR: &str = "10.250.0.0/16";

struct Args {
    nodes: usize,
    mode: PeeringMode,
    /// Reflectors of one cluster ID in RR mode (nodes 1..=k).
    route_reflectors: usize,
    claims: usize,
    idle_secs: u64,
}

fn args() -> Args {
    let mut a = Args {
        nodes: 20,
        mode: PeeringMode::Mesh,
        route_reflectors: 1,
        claims: 10,
        idle_secs: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().unwrap_or_default();
        match arg.as_str() {
            "--nodes" => a.nodes = val().parse().expect("--nodes N"),
            "--claims" => a.claims = val().parse().expect("--claims N"),
            "--route-reflectors" => {
                a.route_reflectors =
                    val().parse().expect("--route-reflectors N")
            }
            "--idle-secs" => {
                a.idle_secs = val().parse().expect("--idle-secs N")
            }
            "--mode" => {
                a.mode = match val().as_str() {
                    "mesh" => PeeringMode::Mesh,
                    "rr" | "route-reflector" => PeeringMode::RouteReflector,
                    m => panic!("--mode {m:?}: allowed mesh, rr"),
                }
            }
            // cargo bench passes --bench; ignore it and unknown flags.
            _ => {}
        }
    }
    a
}

/// `ip monitor route` in one namespace; lines go to `tx` with their time.
struct Monitor {
    child: Child,
}

impl Monitor {
    fn start(
        netns: &str,
        idx: usize,
        tx: mpsc::Sender<(usize, Instant, String)>,
    ) -> Monitor {
        let mut child = Command::new("ip")
            .args(["-n", netns, "monitor", "route"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("ip monitor");
        let out = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send((idx, Instant::now(), line)).is_err() {
                    return;
                }
            }
        });
        Monitor { child }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `/proc/<pid>/status` field in KiB: `VmRSS:` (all resident pages) or
/// `RssAnon:` (private heap and stacks; the rest of VmRSS is mostly the
/// executable's pages, shared by every process running it).
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// utime + stime of `pid` in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are
    // fields 14 and 15 of proc(5).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn release_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    if !margay_testkit::require_root("mesh_scale") {
        return;
    }
    let state = tempfile::tempdir().expect("tempdir");
    let opts = LabOptions {
        nodes: a.nodes,
        pods_per_node: 1,
        mode: a.mode,
        route_reflectors: a.route_reflectors,
        family: Family::V4,
        bin_dir: release_dir(),
        state_dir: state.path().to_path_buf(),
        ..Default::default()
    };
    let shape = match a.mode {
        PeeringMode::RouteReflector => {
            format!("{} route reflector(s)", a.route_reflectors)
        }
        PeeringMode::Mesh => "mesh".to_string(),
    };
    let started = Instant::now();
    let (_down, _state) = lab_up(&opts).await;
    println!(
        "lab of {} nodes ({}) up and proven in {:.1} s",
        a.nodes,
        shape,
        started.elapsed().as_secs_f64()
    );
    let topo = Topology::new(a.nodes, 1, a.mode, Family::V4);
    let spec: DatastoreSpec = format!("etcd:{}", topo.etcd_endpoint())
        .parse()
        .expect("datastore spec");
    let ds = Datastore::connect(&spec).await.expect("etcd");
    let pool = margay_crds::parse_documents(&format!(
        "apiVersion: margay.io/v1\nkind: IPPool\nmetadata: {{name: {POOL}}}\n\
         spec: {{cidr: {POOL_CIDR}, blockSize: 26}}\n"
    ))
    .expect("pool YAML");
    let Some(margay_crds::AnyResource::IPPool(pool)) = pool.into_iter().next()
    else {
        panic!("pool YAML is one IPPool");
    };
    ds.create(&pool).await.expect("create pool");
    // Let every bgpd see the new pool (import accepts pool prefixes only).
    tokio::time::sleep(Duration::from_secs(3)).await;

    // When each block's affinity became confirmed, as an etcd watcher
    // sees it: the instant bgpd on the owning node can see it too.
    let (ctx, crx) = mpsc::channel::<(String, Instant)>();
    let mut affinities = ds.watch::<BlockAffinity>("");
    tokio::spawn(async move {
        while let Some(Ok(ev)) = affinities.next().await {
            if let WatchEvent::Added(a) | WatchEvent::Modified(a) = ev
                && a.spec.state == AffinityState::Confirmed
                && ctx.send((a.spec.cidr.clone(), Instant::now())).is_err()
            {
                return;
            }
        }
    });
    let (tx, rx) = mpsc::channel();
    let _monitors: Vec<Monitor> = topo
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| Monitor::start(&n.netns, i, tx.clone()))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut to_all = Vec::new();
    let mut per_node = Vec::new();
    let mut ipam_ms = Vec::new();
    let mut from_confirm = Vec::new();
    for c in 0..a.claims {
        let owner = c % a.nodes;
        let node = &topo.nodes[owner];
        let ipam = Ipam::new(
            ds.clone(),
            node.name.clone(),
            IpamOptions {
                lock_path: None,
                ..IpamOptions::default()
            },
        );
        while rx.try_recv().is_ok() {}
        let t0 = Instant::now();
        let got = ipam
            .auto_assign(&AssignArgs {
                handle: format!("scale-bench.{c}"),
                num_v4: 1,
                num_v6: 0,
                v4_pools: vec![POOL.into()],
                v6_pools: vec![],
                attrs: BTreeMap::new(),
            })
            .await
            .expect("assign");
        ipam_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        let block = got.ipv4[0].block.to_string();
        let confirmed = std::iter::from_fn(|| {
            crx.recv_timeout(Duration::from_secs(5)).ok()
        })
        .find(|(cidr, _)| *cidr == block)
        .map(|(_, at)| at)
        .expect("the claim's confirmed affinity is watched");
        let mut seen = vec![None; a.nodes];
        seen[owner] = Some(0.0);
        let deadline = t0 + Duration::from_secs(15);
        while seen.iter().any(Option::is_none) {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok((i, at, line)) = rx.recv_timeout(left) else {
                break;
            };
            if seen[i].is_none()
                && line.starts_with(&block)
                && line.contains("proto 81")
            {
                seen[i] = Some((at - t0).as_secs_f64() * 1e3);
            }
        }
        let missing: Vec<&str> = seen
            .iter()
            .zip(&topo.nodes)
            .filter(|(s, _)| s.is_none())
            .map(|(_, n)| n.name.as_str())
            .collect();
        assert!(
            missing.is_empty(),
            "block {block} of {} never reached {missing:?}",
            node.name
        );
        let times: Vec<f64> = seen
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != owner)
            .map(|(_, s)| s.expect("checked"))
            .collect();
        let max = times.iter().copied().fold(0.0, f64::max);
        let offset = (confirmed - t0).as_secs_f64() * 1e3;
        println!(
            "claim {c}: {block} on {}: IPAM {:.1} ms (confirmed at {offset:.1} \
             ms), in every other FIB {max:.1} ms after the IPAM call \
             started, {:.1} ms after the confirmation",
            node.name,
            ipam_ms[c],
            max - offset
        );
        to_all.push(max);
        from_confirm.push(max - offset);
        per_node.extend(times);
    }
    to_all.sort_by(f64::total_cmp);
    per_node.sort_by(f64::total_cmp);
    ipam_ms.sort_by(f64::total_cmp);
    from_confirm.sort_by(f64::total_cmp);

    // Idle: no claims, no pods being created.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut procs: Vec<(&str, u32)> = Vec::new();
    for n in &topo.nodes {
        for comm in ["bgpd", "felix-lite", "margay-node"] {
            procs.extend(
                pids_named(&n.netns, comm).into_iter().map(|p| (comm, p)),
            );
        }
    }
    procs.extend(
        pids_named(TOR_NS, "bird")
            .into_iter()
            .map(|p| ("bird (ToR)", p)),
    );
    let before: Vec<u64> = procs.iter().map(|(_, p)| cpu_ticks(*p)).collect();
    tokio::time::sleep(Duration::from_secs(a.idle_secs)).await;
    let ticks_per_sec = 100.0; // USER_HZ on Linux
    type Samples = (Vec<f64>, Vec<f64>, Vec<f64>);
    let mut rows: BTreeMap<&str, Samples> = BTreeMap::new();
    for ((comm, pid), b) in procs.iter().zip(before) {
        let cpu =
            (cpu_ticks(*pid) - b) as f64 / ticks_per_sec / a.idle_secs as f64
                * 100.0;
        let e = rows.entry(comm).or_default();
        e.0.push(status_kib(*pid, "VmRSS:") as f64 / 1024.0);
        e.1.push(status_kib(*pid, "RssAnon:") as f64 / 1024.0);
        e.2.push(cpu);
    }

    println!();
    println!(
        "## convergence: block claim -> route in the other nodes' FIBs \
         ({} claims, {} nodes, {})",
        a.claims, a.nodes, shape
    );
    println!("| metric | p50 | p90 | max |");
    println!("|---|---|---|---|");
    for (name, v) in [
        ("IPAM claim+assign (ms)", &ipam_ms),
        ("affinity confirmed -> every other FIB (ms)", &from_confirm),
        ("claim start -> every other FIB (ms)", &to_all),
        ("claim start -> one node's FIB (ms)", &per_node),
    ] {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} |",
            percentile(v, 0.5),
            percentile(v, 0.9),
            percentile(v, 1.0)
        );
    }
    println!();
    println!("## idle cost per process ({} s window)", a.idle_secs);
    println!(
        "| process | count | RSS MiB median | RSS MiB max | private (RssAnon) \
         MiB median | CPU % median | CPU % max |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (comm, (mut rss, mut anon, mut cpu)) in rows {
        rss.sort_by(f64::total_cmp);
        anon.sort_by(f64::total_cmp);
        cpu.sort_by(f64::total_cmp);
        println!(
            "| {comm} | {} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} |",
            rss.len(),
            percentile(&rss, 0.5),
            percentile(&rss, 1.0),
            percentile(&anon, 0.5),
            percentile(&cpu, 0.5),
            percentile(&cpu, 1.0)
        );
    }
}
