//! The allocation context kept across allocations (`ContextCache`, what
//! the node agent uses), on real etcd and on a real kube-apiserver: it is
//! kept from one watch per kind, follows every change to what it depends
//! on without a read, shows this process's own claims to the next
//! allocation (read-your-writes), and a stale copy of a block never hands
//! out an address twice.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use margay_crds::{IPPool, IPPoolSpec, Node};
use margay_datastore::{Datastore, Object};
use margay_ipam::{
    AssignArgs, CacheStats, ContextCache, Ipam, IpamError, IpamOptions,
};

use common::{Env, attrs, env, real_kube_env};

fn v4(handle: &str) -> AssignArgs {
    AssignArgs {
        handle: handle.into(),
        num_v4: 1,
        attrs: attrs(handle),
        ..AssignArgs::default()
    }
}

/// IPAM for `node` sharing `cache`, as the node agent makes one per
/// invocation (with the operator's identity: on Kubernetes the agent,
/// unlike the plugin on its own, may watch what the context needs).
fn cached(e: &Env, node: &str, cache: &Arc<ContextCache>) -> Ipam {
    let opts = IpamOptions {
        lock_path: Some(e.dir.path().join(format!("{node}.lock"))),
        ..IpamOptions::default()
    };
    Ipam::new(e.ds.clone(), node, opts).with_context_cache(cache.clone())
}

/// A cache for `node` whose watches have listed every kind.
async fn started(e: &Env, node: &str) -> Arc<ContextCache> {
    let cache = ContextCache::new(node);
    cache.start(&e.ds);
    for _ in 0..1000 {
        if cache.synced() {
            return cache;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the context cache never synced");
}

/// Waits (up to 10 s) until the cache's watches have delivered `obj`'s
/// write (polling asynchronously: the watch runs on this runtime).
async fn wait_seen<K: Object>(cache: &ContextCache, obj: &K) {
    let rev: i64 = obj
        .meta()
        .resource_version
        .as_deref()
        .and_then(|r| r.parse().ok())
        .expect("a numeric resourceVersion");
    for _ in 0..1000 {
        if cache.revision().is_some_and(|r| r >= rev) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the cache never saw revision {rev}");
}

async fn update<K: Object>(
    ds: &Datastore,
    name: &str,
    change: impl FnOnce(&mut K),
) -> K {
    let mut obj = ds.get::<K>(name).await.unwrap().expect("object exists");
    change(&mut obj);
    ds.update(&obj).await.unwrap()
}

async fn create<K: Object>(ds: &Datastore, obj: K) -> K {
    ds.create(&obj).await.unwrap()
}

fn pool(name: &str, cidr: &str, selector: Option<&str>) -> IPPool {
    IPPool::new(
        name,
        IPPoolSpec {
            cidr: cidr.into(),
            block_size: Some(28),
            node_selector: selector.map(str::to_string),
            ..Default::default()
        },
    )
}

/// Runs a test on etcd and on a real kube-apiserver.
macro_rules! on_etcd_and_kube_apiserver {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn etcd() {
                let Some(e) = super::env(stringify!($name)).await else {
                    return;
                };
                super::$name(&e).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn kube_apiserver() {
                let test = concat!(stringify!($name), "::kube_apiserver");
                let Some(e) = super::real_kube_env(test).await else {
                    return;
                };
                super::$name(&e).await;
            }
        }
    )*};
}

on_etcd_and_kube_apiserver!(
    kept_context_follows_pool_changes_without_a_read,
    kept_context_follows_this_nodes_labels,
    stale_kept_block_never_duplicates,
);

async fn kept_context_follows_pool_changes_without_a_read(e: &Env) {
    create(&e.ds, pool("old", "10.40.0.0/24", None)).await;
    e.node("n1").await;
    let cache = started(e, "n1").await;
    for i in 0..5 {
        let got = cached(e, "n1", &cache)
            .auto_assign(&v4(&format!("net.a{i}")))
            .await
            .unwrap();
        assert_eq!(got.ipv4[0].pool, "old");
    }
    // The first allocation claimed a block; the next ones found that
    // claim in the watched context (they waited for the watch to reach
    // it): not one read of the context.
    assert_eq!(cache.stats(), CacheStats { hits: 5, misses: 0 });

    // Disable the pool and add another: the watch delivers both, and the
    // next allocation uses the new pool, still without a read.
    update::<IPPool>(&e.ds, "old", |p| p.spec.disabled = true).await;
    let new = create(&e.ds, pool("new", "10.41.0.0/24", None)).await;
    wait_seen(&cache, &new).await;
    let got = cached(e, "n1", &cache)
        .auto_assign(&v4("net.b"))
        .await
        .unwrap();
    assert_eq!(got.ipv4[0].pool, "new");
    assert_eq!(cache.stats().misses, 0);

    // IPAMConfig too: strictAffinity with maxBlocksPerHost 1 stops this
    // node once its one block (of 16) in the new pool is full.
    let cfg = margay_crds::IPAMConfig::new(
        "default",
        margay_crds::IPAMConfigSpec {
            strict_affinity: true,
            max_blocks_per_host: 1,
            ..Default::default()
        },
    );
    let cfg = create(&e.ds, cfg).await;
    wait_seen(&cache, &cfg).await;
    let ipam = cached(e, "n1", &cache);
    let mut n = 1;
    let err = loop {
        match ipam.auto_assign(&v4(&format!("net.c{n}"))).await {
            Ok(_) => n += 1,
            Err(err) => break err,
        }
        assert!(n <= 16, "more than the new block's worth allocated");
    };
    assert_eq!(n, 16, "{err}");
    assert!(matches!(err, IpamError::MaxBlocksPerHost { .. }), "{err}");
    assert_eq!(cache.stats().misses, 0);
    let report = ipam.check().await.unwrap();
    assert!(report.is_clean(), "{report}");
}

async fn kept_context_follows_this_nodes_labels(e: &Env) {
    create(&e.ds, pool("rack-a", "10.42.0.0/24", Some("rack == 'a'"))).await;
    e.node("n1").await;
    e.node("n2").await;
    let cache = started(e, "n1").await;
    let err = cached(e, "n1", &cache)
        .auto_assign(&v4("net.a"))
        .await
        .unwrap_err();
    assert!(matches!(err, IpamError::NoUsablePool { .. }), "{err}");

    // Another node's labels do not make this node's pool usable.
    let n2 = update::<Node>(&e.ds, "n2", |n| {
        n.metadata.labels = Some([("rack".into(), "a".into())].into());
    })
    .await;
    wait_seen(&cache, &n2).await;
    let err = cached(e, "n1", &cache)
        .auto_assign(&v4("net.a"))
        .await
        .unwrap_err();
    assert!(matches!(err, IpamError::NoUsablePool { .. }), "{err}");

    let n1 = update::<Node>(&e.ds, "n1", |n| {
        n.metadata.labels = Some([("rack".into(), "a".into())].into());
    })
    .await;
    wait_seen(&cache, &n1).await;
    let got = cached(e, "n1", &cache)
        .auto_assign(&v4("net.a"))
        .await
        .unwrap();
    assert_eq!(got.ipv4[0].pool, "rack-a");
    assert_eq!(cache.stats(), CacheStats { hits: 3, misses: 0 });
}

/// Allocates one address to `handle`, failing the test if a live
/// allocation already has it.
async fn add(held: &mut BTreeMap<IpAddr, String>, who: &Ipam, handle: String) {
    let got = who.auto_assign(&v4(&handle)).await.unwrap();
    let ip = got.ipv4[0].ip;
    if let Some(other) = held.insert(ip, handle.clone()) {
        panic!("{ip} handed to {handle} while {other} holds it");
    }
}

/// Another writer of this node (a plugin that worked without the
/// agent) leaves the kept copy stale: the commit fails, the block is read
/// again, and nothing is handed out twice.
async fn stale_kept_block_never_duplicates(e: &Env) {
    create(&e.ds, pool("p", "10.43.0.0/24", None)).await;
    e.node("n1").await;
    let cache = started(e, "n1").await;
    let agent = cached(e, "n1", &cache);
    let alone = e.ipam("n1");
    // Address -> handle of every live allocation.
    let mut held = BTreeMap::new();
    for i in 0..12 {
        let who = if i % 3 == 2 { &alone } else { &agent };
        add(&mut held, who, format!("net.x{i}")).await;
    }
    // The other writer releases (the kept copy misses that too), then
    // the agent fills the block.
    for i in (2..12).step_by(3) {
        alone.release_by_handle(&format!("net.x{i}")).await.unwrap();
    }
    held.retain(|_, h| {
        !["net.x2", "net.x5", "net.x8", "net.x11"].contains(&h.as_str())
    });
    for i in 12..20 {
        add(&mut held, &agent, format!("net.x{i}")).await;
    }
    assert_eq!(held.len(), 16);
    let report = agent.check().await.unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.allocations, 16, "{report}");
    // Every allocation of the agent used the watched context, also its
    // first (the cache had synced) and those after the other writer
    // changed the block.
    assert_eq!(
        cache.stats(),
        CacheStats {
            hits: 16,
            misses: 0
        }
    );
}

/// etcd's (Range, Txn) RPC counters, from `/metrics` on its client URL.
fn etcd_rpcs(endpoint: &str) -> (u64, u64) {
    let addr = endpoint.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("etcd metrics");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let count = |method: &str| -> u64 {
        let m = format!("grpc_method=\"{method}\"");
        text.lines()
            .filter(|l| l.starts_with("grpc_server_handled_total{"))
            .filter(|l| l.contains(&m))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    assert!(text.contains("grpc_server_handled_total"), "{text}");
    (count("Range"), count("Txn"))
}

/// Pool, Node, reservation and affinity changes elsewhere, and this
/// node's own claims, cost this node's allocations no read of the
/// context: each ADD is the get of its own handle (a repeated ADD
/// returns what the handle holds) and the one transaction that commits
/// it (counted by etcd itself; a context read is one more Txn).
#[tokio::test]
async fn changes_elsewhere_cost_no_read() {
    let Some(e) = env("changes_elsewhere_cost_no_read").await else {
        return;
    };
    let endpoint = e.etcd_endpoint();
    create(&e.ds, pool("p0", "10.44.0.0/16", None)).await;
    e.node("n1").await;
    e.node("n2").await;
    let cache = started(&e, "n1").await;
    let n1 = cached(&e, "n1", &cache);
    let n2 = e.ipam("n2");
    let mut costs = Vec::new();
    for round in 0..8 {
        // Elsewhere: n2 claims a block (16 addresses fill one), a pool
        // and a reservation appear, n2's labels change.
        n2.auto_assign(&AssignArgs {
            num_v4: 16,
            ..v4(&format!("net.n2-{round}"))
        })
        .await
        .unwrap();
        create(
            &e.ds,
            pool(
                &format!("q{round}"),
                &format!("10.{}.0.0/24", 60 + round),
                Some("none()"),
            ),
        )
        .await;
        let res = margay_crds::IPReservation::new(
            &format!("r{round}"),
            margay_crds::IPReservationSpec {
                reserved_cidrs: vec![format!("10.44.250.{round}/32")],
            },
        );
        create(&e.ds, res).await;
        let last = update::<Node>(&e.ds, "n2", |n| {
            n.metadata.labels =
                Some([("round".into(), round.to_string())].into());
        })
        .await;
        wait_seen(&cache, &last).await;
        // Here: one ADD, counted. Every 16th claims a block of its own
        // (round 0), the others fill it.
        let before = etcd_rpcs(&endpoint);
        n1.auto_assign(&v4(&format!("net.n1-{round}")))
            .await
            .unwrap();
        let after = etcd_rpcs(&endpoint);
        costs.push((after.0 - before.0, after.1 - before.1));
    }
    // Round 0 claims n1's block (reads of the claim protocol); every later
    // ADD, right after changes elsewhere and after n1's own claim, is one
    // Txn (the commit, which also checks the handle is new: no read first).
    assert!(
        costs[1..].iter().all(|&c| c == (0, 1)),
        "(Range, Txn) per ADD: {costs:?}"
    );
    assert_eq!(cache.stats().misses, 0);
    let report = n1.check().await.unwrap();
    assert!(report.is_clean(), "{report}");
}
