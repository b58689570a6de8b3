//! Many allocators on one etcd: concurrent tasks acting for 8 nodes, and
//! etcd killed and restarted in the middle of the churn.
//!
//! A shared table of "who holds which address" catches duplicates the
//! moment an ADD returns an address another live handle holds; `check()`
//! at the end catches leaks and bookkeeping errors.

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use margay_ipam::{AssignArgs, ContextCache, Ipam};

use common::{Env, attrs, env};

/// Address -> handle of every address some task currently believes it
/// holds.
type Held = Arc<Mutex<BTreeMap<IpAddr, String>>>;

#[derive(Debug, Default)]
struct Tally {
    adds: usize,
    dels: usize,
    transient_errors: usize,
}

/// One simulated node: ADDs until it holds `keep` pods, then alternates
/// DEL of its oldest pod and ADD of a new one, `ops` times in all.
async fn churn(
    ipam: Arc<Ipam>,
    held: Held,
    ops: usize,
    keep: usize,
    deadline: Instant,
) -> Tally {
    let node = ipam.node().to_string();
    let mut mine: Vec<(String, Vec<IpAddr>)> = Vec::new();
    let mut t = Tally::default();
    let mut seq = 0;
    while t.adds + t.dels < ops && Instant::now() < deadline {
        if mine.len() >= keep {
            let (handle, ips) = mine.remove(0);
            // The pod stops using its addresses before DEL starts; they
            // may be handed out again as soon as DEL frees them.
            {
                let mut h = held.lock().unwrap();
                for ip in ips {
                    assert_eq!(h.remove(&ip).as_deref(), Some(handle.as_str()));
                }
            }
            // Like a runtime: repeat DEL until it succeeds.
            loop {
                match ipam.release_by_handle(&handle).await {
                    Ok(_) => break,
                    Err(e) => {
                        assert!(e.is_transient(), "{node}: DEL failed: {e}");
                        t.transient_errors += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            t.dels += 1;
            continue;
        }
        seq += 1;
        let handle = format!("net.{node}-{seq}");
        let args = AssignArgs {
            handle: handle.clone(),
            num_v4: 1,
            attrs: attrs(&handle),
            ..AssignArgs::default()
        };
        match ipam.auto_assign(&args).await {
            Ok(got) => {
                let ips: Vec<IpAddr> = got.ipv4.iter().map(|a| a.ip).collect();
                let mut h = held.lock().unwrap();
                for ip in &ips {
                    if let Some(other) = h.insert(*ip, handle.clone()) {
                        panic!(
                            "{ip} handed to {handle} while {other} holds it"
                        );
                    }
                }
                mine.push((handle, ips));
                t.adds += 1;
            }
            Err(e) => {
                assert!(e.is_transient(), "{node}: ADD failed: {e}");
                t.transient_errors += 1;
                // The runtime follows a failed ADD with a DEL.
                mine.push((handle, Vec::new()));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // Tear down everything still held.
    for (handle, ips) in mine {
        {
            let mut h = held.lock().unwrap();
            for ip in ips {
                h.remove(&ip);
            }
        }
        while let Err(e) = ipam.release_by_handle(&handle).await {
            assert!(e.is_transient(), "{node}: final DEL failed: {e}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    t
}

/// IPAM for simulated node number `i`: odd nodes keep their context
/// across allocations (as the node agent does), even ones read it for
/// each, so both paths contend for the same blocks.
fn ipam_for(e: &Env, node: &str, i: usize) -> Ipam {
    let ipam = e.ipam(node);
    if i % 2 == 1 {
        return ipam.with_context_cache(ContextCache::new(node));
    }
    ipam
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_nodes_churn_without_duplicates_or_leaks() {
    let Some(e) = env("eight_nodes_churn_without_duplicates_or_leaks").await
    else {
        return;
    };
    // Four blocks of 8 for 8 nodes keeping 3 pods each: half the nodes
    // get no block of their own and borrow, so writers on different
    // nodes really contend for the same blocks.
    e.pool("p", "10.30.0.0/27", 29).await;
    let held: Held = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let node = format!("node-{i}");
        e.node(&node).await;
        let ipam = Arc::new(ipam_for(&e, &node, i));
        tasks.push(tokio::spawn(churn(ipam, held.clone(), 120, 3, deadline)));
    }
    let mut adds = 0;
    for t in tasks {
        let tally = t.await.unwrap();
        assert_eq!(tally.transient_errors, 0, "{tally:?}");
        adds += tally.adds;
    }
    assert!(adds >= 8 * 40, "only {adds} ADDs completed");
    assert!(held.lock().unwrap().is_empty());
    let report = e.ipam("node-0").check().await.unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.allocations, 0, "{report}");
    assert_eq!(report.handles, 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_restart_mid_churn_duplicates_nothing() {
    let Some(mut e) = env("etcd_restart_mid_churn_duplicates_nothing").await
    else {
        return;
    };
    e.pool("p", "10.31.0.0/24", 28).await;
    let held: Held = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut tasks = Vec::new();
    for i in 0..4 {
        let node = format!("node-{i}");
        e.node(&node).await;
        let ipam = Arc::new(ipam_for(&e, &node, i));
        tasks.push(tokio::spawn(churn(ipam, held.clone(), 400, 5, deadline)));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    e.etcd().stop();
    // While etcd is down, requests fail with transient errors (checked in
    // churn); nothing is duplicated when it comes back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    e.etcd().restart().expect("restart etcd");
    let mut transient = 0;
    for t in tasks {
        let tally = t.await.unwrap();
        transient += tally.transient_errors;
    }
    assert!(transient > 0, "no request noticed the outage");
    assert!(held.lock().unwrap().is_empty());
    let report = e.ipam("node-0").check().await.unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.allocations, 0, "{report}");
}
