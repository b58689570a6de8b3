//! Eight processes, each a simulated node, churn ADD/DEL on one etcd at
//! the same time. Afterwards: no address is held by two pods, every
//! allocation belongs to a pod some process still holds (no leaks), and
//! `check()` is clean.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};

use common::env;

const NODES: usize = 8;
const OPS: usize = 200;
const KEEP: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_churn_without_duplicates_or_leaks() {
    let Some(e) =
        env("eight_processes_churn_without_duplicates_or_leaks").await
    else {
        return;
    };
    // 48 addresses in blocks of 8 for 8 nodes holding up to 4 each: six
    // nodes get blocks, the others borrow from them.
    e.pool("p", "10.40.0.0/27", 29).await;
    e.pool("q", "10.40.0.32/28", 29).await;
    let mut children = Vec::new();
    for i in 0..NODES {
        let node = format!("proc-{i}");
        e.node(&node).await;
        let lock = e.dir.path().join(format!("{node}.lock"));
        let child = Command::new(env!("CARGO_BIN_EXE_margay-ipam-churn"))
            .args([
                e.etcd_endpoint(),
                node,
                OPS.to_string(),
                KEEP.to_string(),
                lock.display().to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn churn process");
        children.push(child);
    }
    let mut held: BTreeMap<String, String> = BTreeMap::new();
    let mut adds = 0;
    for child in children {
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "churn process failed: {stderr}");
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("JSON report");
        eprintln!("{v}");
        adds += v["adds"].as_u64().unwrap();
        for (ip, handle) in v["held"].as_object().unwrap() {
            let handle = handle.as_str().unwrap().to_string();
            if let Some(other) = held.insert(ip.clone(), handle.clone()) {
                panic!("{ip} is held by both {other} and {handle}");
            }
        }
    }
    assert_eq!(adds as usize, NODES * (OPS / 2 + KEEP / 2));
    assert_eq!(held.len(), NODES * KEEP);

    let ipam = e.ipam("proc-0");
    let live: BTreeSet<String> = held.values().cloned().collect();
    let report = ipam.check_leaks("net.", &live).await.unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.allocations, held.len());
    assert_eq!(report.handles, held.len());
    for handle in &live {
        assert_eq!(ipam.release_by_handle(handle).await.unwrap().len(), 1);
    }
    let report = ipam.check().await.unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.allocations, 0);
}
