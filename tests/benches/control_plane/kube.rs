//! The bench on a real kube-apiserver (`--kube`): the same seed and churn
//! written through the apiserver (the churn as updates of each block),
//! node-0's bgpd and felix-lite reading it as margay-node's
//! ServiceAccount. The apiserver listens on loopback, so both daemons run
//! in the host's namespace; felix-lite programs a namespace of the
//! bench's own (`--netns`). No node-1 here: the claim-to-FIB time is
//! measured on etcd only. Reads during the churn are the apiserver's own
//! count (`apiserver_request_total`, verbs LIST and GET).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use margay_crds::AllocationAttribute;
use margay_datastore::{Datastore, KubeStore};
use margay_testkit::{KubeApiServer, Netns};

use super::{
    Args, BLOCKS_PER_NODE, Row, block_cidr, in_fib, in_rib, node_name, seed,
    wait_originated,
};
use crate::fabric::{rss_breakdown, usage};

/// (LIST, GET) requests the apiserver has served.
async fn reads(kube: &KubeApiServer) -> (u64, u64) {
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = kube.admin().request_text(req).await.expect("/metrics");
    let count = |verb: &str| -> u64 {
        let v = format!("verb=\"{verb}\"");
        text.lines()
            .filter(|l| l.starts_with("apiserver_request_total{"))
            .filter(|l| l.contains(&v))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    (count("LIST"), count("GET"))
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub async fn run(a: &Args, n: usize) -> Row {
    let kube = KubeApiServer::start().await.expect("kube-apiserver starts");
    kube.install_margay().await.expect("deploy/ applies");
    let ds = Datastore::Kubernetes(KubeStore::from_client(kube.admin()));
    let port = margay_testkit::free_port();
    let mut blocks = seed(&ds, n, port).await;
    let cfg = kube
        .service_account_kubeconfig("margay-system", "margay-node")
        .await
        .expect("margay-node token");
    let remote = format!("kubernetes:{}", cfg.display());
    let ns = Netns::new("cpk").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sock0 = dir.path().join("bgpd0.ctl");
    let bgpd = Kill(
        Command::new(&a.bgpd)
            .args(["--datastore", &remote, "--node", "node-0"])
            .args(["--listen-addr", "127.0.0.1", "--log-level", "warn"])
            .arg("--control-socket")
            .arg(&sock0)
            .stdout(Stdio::null())
            .spawn()
            .expect("bgpd"),
    );
    let felix = Kill(
        Command::new(&a.felix)
            .args(["--datastore", &remote, "--node", "node-0", "--no-nat"])
            .arg("--bgpd-socket")
            .arg(&sock0)
            .arg("--netns")
            .arg(ns.path())
            .arg("--endpoint-dir")
            .arg(dir.path().join("endpoints"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("felix-lite"),
    );
    let (bpid, fpid) = (bgpd.0.id(), felix.0.id());
    // Synced: node-0 originates its first block and felix-lite installed
    // its blackhole.
    let own = block_cidr(0).1;
    let synced = margay_testkit::wait_until(Duration::from_secs(180), || {
        in_rib(&sock0, &own) && in_fib(ns.name(), &own)
    });
    assert!(synced, "bgpd and felix-lite never synced on kube-apiserver");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (b_rss0, b_cpu0) = usage(bpid);
    let (f_rss0, f_cpu0) = usage(fpid);
    let reads0 = reads(&kube).await;
    let mut seed_rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rand = move |m: usize| {
        seed_rng ^= seed_rng << 13;
        seed_rng ^= seed_rng >> 7;
        seed_rng ^= seed_rng << 17;
        (seed_rng % m as u64) as usize
    };
    let period = Duration::from_secs_f64(1.0 / a.rate);
    let mut lend_lat = Vec::new();
    let mut writes = 0u64;
    for e in 0..a.events {
        let start = Instant::now();
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
        *blk = ds.update(&*blk).await.expect("block update");
        writes += 1;
        if lend {
            wait_originated(sock0.clone(), b, slot).await;
            lend_lat.push(start.elapsed());
        }
        if let Some(rest) = period.checked_sub(start.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (b_rss1, b_cpu1) = usage(bpid);
    let (f_rss1, f_cpu1) = usage(fpid);
    let reads1 = reads(&kube).await;
    let breakdown = (rss_breakdown(bpid), rss_breakdown(fpid));
    lend_lat.sort();
    let per_event = |d: Duration| d / writes.max(1) as u32;
    Row {
        nodes: n,
        bgpd: (b_rss0, b_rss1, per_event(b_cpu1 - b_cpu0)),
        felix: (f_rss0, f_rss1, per_event(f_cpu1 - f_cpu0)),
        // The bench's own reads: none (updates only), but /metrics
        // itself is one GET per scrape.
        reads: (reads1.0 - reads0.0, (reads1.1 - reads0.1).saturating_sub(1)),
        lend: lend_lat,
        fib: Vec::new(),
        breakdown,
    }
}
