//! Issue 12's data-plane items on a real etcd: GC frees only what the
//! node running it allocated, also across an etcd outage; a repeated
//! assignment for one handle gets the same addresses; a block breaking
//! its invariants is skipped, never handed out from, and reported; an
//! allocation without an endpoint on its node is found.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use margay_crds::IPAMBlock;
use margay_ipam::{AssignArgs, IpamError, Issue};

use common::{Env, attrs, env};

fn v4(handle: &str) -> AssignArgs {
    AssignArgs {
        handle: handle.into(),
        num_v4: 1,
        attrs: attrs(handle),
        ..AssignArgs::default()
    }
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Every allocated address, with its handle (waiting for the client to
/// reconnect after a restart of etcd).
async fn allocated(e: &Env) -> Vec<(IpAddr, String)> {
    let reader = e.ipam("reader");
    let mut tries = 0;
    let snap = loop {
        match reader.snapshot().await {
            Ok(s) => break s,
            Err(err) if err.is_transient() && tries < 50 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("snapshot: {err}"),
        }
    };
    let mut out: Vec<_> = snap
        .blocks
        .iter()
        .flat_map(|b| b.allocations())
        .map(|a| (a.ip, a.handle_id.unwrap_or_default()))
        .collect();
    out.sort();
    out
}

async fn ip_of(e: &Env, handle: &str) -> Option<IpAddr> {
    allocated(e)
        .await
        .into_iter()
        .find(|(_, h)| h == handle)
        .map(|(ip, _)| ip)
}

#[tokio::test]
async fn gc_on_one_node_never_frees_another_nodes_pods() {
    let Some(e) = env("gc_on_one_node_never_frees_another_nodes_pods").await
    else {
        return;
    };
    e.pool("p", "10.60.0.0/24", 28).await;
    let (n1, n2) = (e.ipam("n1"), e.ipam("n2"));
    n1.auto_assign(&v4("net.a1")).await.unwrap();
    n1.auto_assign(&v4("net.a1-leaked")).await.unwrap();
    let b = n2.auto_assign(&v4("net.b1")).await.unwrap().ipv4[0].ip;

    // n1's runtime lists n1's pod only: n1's leak goes, n2's pod stays.
    let stats = n1.gc("net.", &set(&["net.a1"]), Duration::ZERO).await;
    assert_eq!(stats.unwrap().released_ips, 1);
    assert_eq!(ip_of(&e, "net.b1").await, Some(b), "n2's pod was freed");
    assert!(ip_of(&e, "net.a1-leaked").await.is_none());
    // The handle still counts it, and the next pod gets another address.
    let report = n2.check().await.unwrap();
    assert!(report.is_clean(), "{report}");
    let next = n2.auto_assign(&v4("net.b2")).await.unwrap().ipv4[0].ip;
    assert_ne!(next, b, "n2's next pod got its live pod's address");

    // An empty list frees n1's pods only.
    n1.gc("net.", &BTreeSet::new(), Duration::ZERO)
        .await
        .unwrap();
    let mut left: Vec<String> =
        allocated(&e).await.into_iter().map(|(_, h)| h).collect();
    left.sort();
    assert_eq!(left, ["net.b1", "net.b2"], "{left:?}");
    let report = n1.check().await.unwrap();
    assert!(report.is_clean(), "{report}");
}

#[tokio::test]
async fn gc_interrupted_by_an_etcd_outage_frees_no_live_address() {
    let Some(mut e) =
        env("gc_interrupted_by_an_etcd_outage_frees_no_live_address").await
    else {
        return;
    };
    e.pool("p", "10.61.0.0/24", 28).await;
    let (n1, n2) = (e.ipam("n1"), e.ipam("n2"));
    let live1 = n1.auto_assign(&v4("net.live1")).await.unwrap().ipv4[0].ip;
    let live2 = n2.auto_assign(&v4("net.live2")).await.unwrap().ipv4[0].ip;
    for i in 0..12 {
        n1.auto_assign(&v4(&format!("net.dead{i}"))).await.unwrap();
    }
    let live = set(&["net.live1"]);
    // etcd dies at a different point of the pass each round; whatever
    // the pass did, the live addresses stay and a rerun converges.
    for delay_ms in [0u64, 5, 15, 40] {
        let gc = n1.gc("net.", &live, Duration::ZERO);
        let outage = async {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            e.etcd().stop();
        };
        let (res, ()) = tokio::join!(gc, outage);
        eprintln!("outage after {delay_ms} ms: GC gave {res:?}");
        if let Err(err) = &res {
            assert!(err.is_transient(), "GC failed uncleanly: {err}");
        }
        e.etcd().restart().unwrap();
        assert_eq!(ip_of(&e, "net.live1").await, Some(live1));
        assert_eq!(ip_of(&e, "net.live2").await, Some(live2));
    }
    allocated(&e).await; // Reconnected.
    n1.gc("net.", &live, Duration::ZERO).await.unwrap();
    let mut left: Vec<String> =
        allocated(&e).await.into_iter().map(|(_, h)| h).collect();
    left.sort();
    assert_eq!(left, ["net.live1", "net.live2"]);
    let report = n1.check().await.unwrap();
    assert!(report.is_clean(), "{report}");
}

#[tokio::test]
async fn repeated_assignment_for_one_handle_takes_no_second_address() {
    let Some(e) =
        env("repeated_assignment_for_one_handle_takes_no_second_address").await
    else {
        return;
    };
    e.pool("p", "10.62.0.0/24", 28).await;
    let n1 = e.ipam("n1");
    let first = n1.auto_assign(&v4("net.c1")).await.unwrap();
    let again = n1.auto_assign(&v4("net.c1")).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(allocated(&e).await.len(), 1);
    // Asking for something else is refused, and nothing is released.
    let dual = AssignArgs {
        num_v6: 1,
        ..v4("net.c1")
    };
    let err = n1.auto_assign(&dual).await.unwrap_err();
    assert!(matches!(err, IpamError::BadRequest(_)), "{err}");
    assert!(err.to_string().contains("already holds"), "{err}");
    assert_eq!(ip_of(&e, "net.c1").await, Some(first.ipv4[0].ip));
    let report = n1.check().await.unwrap();
    assert!(report.is_clean(), "{report}");
}

/// The same when the first assignment was made by another process of the
/// node (the plugin on its own, then the agent): the second instance has
/// not written the handle, so it does not read it before allocating; its
/// commit's "handle absent" condition fails and it answers with what the
/// handle holds, taking nothing.
#[tokio::test]
async fn a_repeat_through_another_instance_takes_no_second_address() {
    let Some(e) =
        env("a_repeat_through_another_instance_takes_no_second_address").await
    else {
        return;
    };
    e.pool("p", "10.61.0.0/24", 28).await;
    let first = e.ipam("n1").auto_assign(&v4("net.c1")).await.unwrap();
    let again = e.ipam("n1").auto_assign(&v4("net.c1")).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(allocated(&e).await.len(), 1);
    let dual = AssignArgs {
        num_v6: 1,
        ..v4("net.c1")
    };
    let err = e.ipam("n1").auto_assign(&dual).await.unwrap_err();
    assert!(err.to_string().contains("already holds"), "{err}");
    assert_eq!(ip_of(&e, "net.c1").await, Some(first.ipv4[0].ip));
    // A new handle after that is served as usual.
    let n1 = e.ipam("n1");
    let other = n1.auto_assign(&v4("net.c2")).await.unwrap();
    assert_ne!(other.ipv4[0].ip, first.ipv4[0].ip);
    assert_eq!(allocated(&e).await.len(), 2);
    let report = n1.check().await.unwrap();
    assert!(report.is_clean(), "{report}");
}

/// n1's block, as stored.
async fn own_block(e: &Env) -> IPAMBlock {
    let blocks = e.ds.list::<IPAMBlock>().await.unwrap().items;
    assert_eq!(blocks.len(), 1);
    blocks.into_iter().next().unwrap()
}

#[tokio::test]
async fn an_inconsistent_block_is_skipped_and_reported() {
    let Some(e) = env("an_inconsistent_block_is_skipped_and_reported").await
    else {
        return;
    };
    e.pool("p", "10.63.0.0/24", 28).await;
    e.node("n1").await;
    let n1 = e.ipam("n1");
    let taken = n1.auto_assign(&v4("net.c1")).await.unwrap().ipv4[0].ip;
    // The allocated ordinal also heads the free list.
    let mut b = own_block(&e).await;
    let ordinal = b.spec.allocations.iter().position(Option::is_some).unwrap();
    b.spec.unallocated.insert(0, ordinal);
    e.ds.update(&b).await.unwrap();

    for i in 0..3 {
        let ip = n1.auto_assign(&v4(&format!("net.n{i}"))).await.unwrap();
        assert_ne!(ip.ipv4[0].ip, taken, "the address was handed out twice");
        assert!(!ip.ipv4[0].block.contains(taken), "the bad block was used");
    }
    let report = n1.check().await.unwrap();
    let invalid: Vec<_> = report
        .issues
        .iter()
        .filter(|i| matches!(i, Issue::InvalidBlock { .. }))
        .map(ToString::to_string)
        .collect();
    assert_eq!(invalid.len(), 1, "{report}");
    let name = b.metadata.name.clone().unwrap();
    assert!(invalid[0].contains(&name), "{}", invalid[0]);
    assert!(invalid[0].contains("spec.unallocated"), "{}", invalid[0]);
    // show and GC keep working around it.
    n1.show().await.unwrap();
    n1.gc("net.", &BTreeSet::new(), Duration::ZERO)
        .await
        .unwrap();
}

/// The same through the node agent's path: the context cache hints the
/// node's block (prefetched with the context), which is garbage now.
#[tokio::test]
async fn an_inconsistent_hinted_block_is_skipped_by_the_cached_context() {
    let Some(e) = env("an_inconsistent_hinted_block").await else {
        return;
    };
    e.pool("p", "10.65.0.0/24", 28).await;
    e.node("n1").await;
    let cache = margay_ipam::ContextCache::new("n1");
    let n1 = e.ipam("n1").with_context_cache(cache.clone());
    let taken = n1.auto_assign(&v4("net.c1")).await.unwrap().ipv4[0].ip;
    let mut b = own_block(&e).await;
    let ordinal = b.spec.allocations.iter().position(Option::is_some).unwrap();
    b.spec.unallocated.insert(0, ordinal);
    e.ds.update(&b).await.unwrap();
    for i in 0..3 {
        let n1 = e.ipam("n1").with_context_cache(cache.clone());
        let ip = n1.auto_assign(&v4(&format!("net.n{i}"))).await.unwrap();
        assert!(!ip.ipv4[0].block.contains(taken), "the bad block was used");
    }
    let report = e.ipam("n1").check().await.unwrap();
    assert!(
        report
            .to_string()
            .contains(b.metadata.name.as_deref().unwrap())
    );
}

#[tokio::test]
async fn a_block_whose_cidr_disagrees_with_its_name_is_never_used() {
    let Some(e) =
        env("a_block_whose_cidr_disagrees_with_its_name_is_never_used").await
    else {
        return;
    };
    e.pool("p", "10.64.0.0/24", 28).await;
    let n1 = e.ipam("n1");
    n1.auto_assign(&v4("net.c1")).await.unwrap();
    let mut b = own_block(&e).await;
    b.spec.cidr = "192.168.77.0/28".into();
    e.ds.update(&b).await.unwrap();
    for i in 0..3 {
        let ip = n1.auto_assign(&v4(&format!("net.n{i}"))).await.unwrap();
        let ip = ip.ipv4[0].ip.to_string();
        assert!(ip.starts_with("10.64.0."), "{ip} is outside the pool");
    }
    let report = n1.check().await.unwrap();
    let text = report.to_string();
    assert!(text.contains("does not match the object name"), "{text}");
}

#[tokio::test]
async fn an_allocation_without_an_endpoint_on_its_node_is_reported() {
    let Some(e) =
        env("an_allocation_without_an_endpoint_on_its_node_is_reported").await
    else {
        return;
    };
    e.pool("p", "10.65.0.0/24", 28).await;
    let (n1, n2) = (e.ipam("n1"), e.ipam("n2"));
    n1.auto_assign(&v4("net.wired")).await.unwrap();
    let orphan = n1.auto_assign(&v4("net.lost")).await.unwrap().ipv4[0].ip;
    n2.auto_assign(&v4("net.elsewhere")).await.unwrap();
    let report = n1
        .check_endpoints("n1", "net.", &set(&["net.wired"]))
        .await
        .unwrap();
    assert_eq!(
        report.issues,
        [Issue::NoEndpoint {
            ip: orphan,
            handle: "net.lost".into(),
            node: "n1".into(),
        }],
        "{report}"
    );
}
