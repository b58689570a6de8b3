//! The allocation context kept across allocations (`ContextCache`, what
//! the node agent uses), on real etcd: it saves the context read, follows
//! every change to what it depends on, and a stale copy of a block never
//! hands out an address twice.

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use margay_crds::{IPPool, IPPoolSpec, Node};
use margay_datastore::Datastore;
use margay_ipam::{AssignArgs, CacheStats, ContextCache, Ipam, IpamError};

use common::{Env, attrs, env};

fn v4(handle: &str) -> AssignArgs {
    AssignArgs {
        handle: handle.into(),
        num_v4: 1,
        attrs: attrs(handle),
        ..AssignArgs::default()
    }
}

/// IPAM for `node` sharing `cache`, as the node agent makes one per
/// invocation.
fn cached(e: &Env, node: &str, cache: &Arc<ContextCache>) -> Ipam {
    e.ipam(node).with_context_cache(cache.clone())
}

/// Waits (up to 5 s) until the watch has marked the kept context stale
/// (polling asynchronously: the watch runs on this test's runtime).
async fn wait_stale(cache: &ContextCache) {
    for _ in 0..500 {
        if cache.current_revision().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the kept context was never marked stale");
}

async fn update<K: margay_datastore::Object>(
    ds: &Datastore,
    name: &str,
    change: impl FnOnce(&mut K),
) {
    let mut obj = ds.get::<K>(name).await.unwrap().expect("object exists");
    change(&mut obj);
    ds.update(&obj).await.unwrap();
}

#[tokio::test]
async fn kept_context_is_read_once_and_follows_pool_changes() {
    let Some(e) =
        env("kept_context_is_read_once_and_follows_pool_changes").await
    else {
        return;
    };
    e.pool("old", "10.40.0.0/24", 28).await;
    e.node("n1").await;
    let cache = ContextCache::new("n1");
    for i in 0..5 {
        let got = cached(&e, "n1", &cache)
            .auto_assign(&v4(&format!("net.a{i}")))
            .await
            .unwrap();
        assert_eq!(got.ipv4[0].pool, "old");
    }
    // The first allocation read the context and claimed a block; a claim
    // changes this node's affinities, so the second read it again; the
    // other three used the kept context.
    assert_eq!(cache.stats(), CacheStats { hits: 3, misses: 2 });
    assert!(cache.current_revision().is_some());

    // Disable the pool and add another: the watch marks the context
    // stale, and the next allocation reads it again and uses the new pool.
    update::<IPPool>(&e.ds, "old", |p| p.spec.disabled = true).await;
    e.pool("new", "10.41.0.0/24", 28).await;
    wait_stale(&cache).await;
    let got = cached(&e, "n1", &cache)
        .auto_assign(&v4("net.b"))
        .await
        .unwrap();
    assert_eq!(got.ipv4[0].pool, "new");
    // One more read (the allocation then claimed a block in the new pool).
    assert_eq!(cache.stats().misses, 3);

    // IPAMConfig too: strictAffinity with maxBlocksPerHost 1 stops this
    // node once its one block (of 16) is full.
    e.config(margay_crds::IPAMConfigSpec {
        strict_affinity: true,
        max_blocks_per_host: 1,
        ..Default::default()
    })
    .await;
    wait_stale(&cache).await;
    let ipam = cached(&e, "n1", &cache);
    let mut n = 1;
    let err = loop {
        match ipam.auto_assign(&v4(&format!("net.c{n}"))).await {
            Ok(_) => n += 1,
            Err(err) => break err,
        }
        assert!(n <= 16, "more than one block's worth allocated");
    };
    assert_eq!(n, 16, "{err}");
    assert!(matches!(err, IpamError::MaxBlocksPerHost { .. }), "{err}");
    let report = ipam.check().await.unwrap();
    assert!(report.is_clean(), "{report}");
}

#[tokio::test]
async fn kept_context_follows_this_nodes_labels() {
    let Some(e) = env("kept_context_follows_this_nodes_labels").await else {
        return;
    };
    let pool = IPPool::new(
        "rack-a",
        IPPoolSpec {
            cidr: "10.42.0.0/24".into(),
            block_size: Some(28),
            node_selector: Some("rack == 'a'".into()),
            ..Default::default()
        },
    );
    e.ds.create(&pool).await.unwrap();
    e.node("n1").await;
    e.node("n2").await;
    let cache = ContextCache::new("n1");
    let err = cached(&e, "n1", &cache)
        .auto_assign(&v4("net.a"))
        .await
        .unwrap_err();
    assert!(matches!(err, IpamError::NoUsablePool { .. }), "{err}");
    assert!(cache.current_revision().is_some());

    // Another node's labels do not touch this node's context.
    update::<Node>(&e.ds, "n2", |n| {
        n.metadata.labels = Some([("rack".into(), "a".into())].into());
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(cache.current_revision().is_some());

    update::<Node>(&e.ds, "n1", |n| {
        n.metadata.labels = Some([("rack".into(), "a".into())].into());
    })
    .await;
    wait_stale(&cache).await;
    let got = cached(&e, "n1", &cache)
        .auto_assign(&v4("net.a"))
        .await
        .unwrap();
    assert_eq!(got.ipv4[0].pool, "rack-a");
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
#[tokio::test]
async fn stale_kept_block_never_duplicates() {
    let Some(e) = env("stale_kept_block_never_duplicates").await else {
        return;
    };
    e.pool("p", "10.43.0.0/24", 28).await;
    e.node("n1").await;
    let cache = ContextCache::new("n1");
    let agent = cached(&e, "n1", &cache);
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
    // The agent's first allocation claimed the block (which drops the
    // context: affinities changed), every later one used the kept context,
    // also those after the other writer changed the block.
    assert_eq!(
        cache.stats(),
        CacheStats {
            hits: 14,
            misses: 2
        }
    );
}
