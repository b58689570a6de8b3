//! IPAM against a real etcd: claims, borrowing, exhaustion, dual stack,
//! the ABA guard, GC and empty-block release.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use margay_crds::{AffinityState, BlockAffinity, IPAMConfigSpec};
use margay_ipam::block::{BlockError, Released};
use margay_ipam::{AssignArgs, IpamError, IpamOptions, ReleaseRequest};

use common::{attrs, env};

fn v4(handle: &str, n: usize) -> AssignArgs {
    AssignArgs {
        handle: handle.into(),
        num_v4: n,
        attrs: attrs(handle),
        ..AssignArgs::default()
    }
}

#[tokio::test]
async fn dual_stack_assign_and_release_by_handle() {
    let Some(e) = env("dual_stack_assign_and_release_by_handle").await else {
        return;
    };
    e.pool("v4", "10.10.0.0/24", 28).await;
    e.pool("v6", "fd00:10::/120", 124).await;
    e.node("n1").await;
    let ipam = e.ipam("n1");
    let args = AssignArgs {
        num_v6: 1,
        ..v4("net.c1", 1)
    };
    let got = ipam.auto_assign(&args).await.unwrap();
    assert_eq!(got.ipv4.len(), 1);
    assert_eq!(got.ipv6.len(), 1);
    assert!(got.ipv4[0].block.contains(got.ipv4[0].ip));
    assert_eq!(got.ipv4[0].pool, "v4");
    assert_eq!(got.ipv6[0].pool, "v6");
    assert_eq!(got.ipv4[0].block.prefix(), 28);

    // Both blocks are claimed and confirmed.
    let affs = e.ds.list::<BlockAffinity>().await.unwrap().items;
    assert_eq!(affs.len(), 2);
    assert!(
        affs.iter()
            .all(|a| a.spec.state == AffinityState::Confirmed)
    );
    let report = ipam.check().await.unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.allocations, 2);

    // A second ADD lands in the same (affine) block.
    let again = ipam.auto_assign(&v4("net.c2", 1)).await.unwrap();
    assert_eq!(again.ipv4[0].block, got.ipv4[0].block);

    let freed: BTreeSet<IpAddr> = ipam
        .release_by_handle("net.c1")
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(freed, [got.ipv4[0].ip, got.ipv6[0].ip].into());
    // DEL is idempotent.
    assert!(ipam.release_by_handle("net.c1").await.unwrap().is_empty());
    assert!(
        ipam.release_by_handle("net.never")
            .await
            .unwrap()
            .is_empty()
    );
    let report = ipam.check().await.unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.allocations, 1);
}

#[tokio::test]
async fn dual_stack_is_both_or_neither() {
    let Some(e) = env("dual_stack_is_both_or_neither").await else {
        return;
    };
    e.pool("v4", "10.11.0.0/24", 28).await;
    let ipam = e.ipam("n1");
    let args = AssignArgs {
        num_v6: 1,
        ..v4("net.c1", 1)
    };
    let err = ipam.auto_assign(&args).await.unwrap_err();
    assert!(matches!(err, IpamError::NoUsablePool { .. }), "{err}");
    assert!(err.to_string().contains("no IPv6 IPPool exists"), "{err}");
    let report = ipam.check().await.unwrap();
    assert_eq!(report.allocations, 0, "the IPv4 address was not returned");
    assert!(report.is_clean(), "{report}");
}

#[tokio::test]
async fn pool_exhaustion_names_the_pool() {
    let Some(e) = env("pool_exhaustion_names_the_pool").await else {
        return;
    };
    e.pool("tiny", "10.12.0.0/28", 28).await;
    let ipam = e.ipam("n1");
    let all = ipam.auto_assign(&v4("net.big", 16)).await.unwrap();
    let ips: BTreeSet<_> = all.ipv4.iter().map(|a| a.ip).collect();
    assert_eq!(ips.len(), 16);
    let err = ipam.auto_assign(&v4("net.one-more", 1)).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, IpamError::PoolExhausted { .. }), "{text}");
    assert_eq!(
        text,
        "no free IPv4 address for node n1: pool(s) tiny (10.12.0.0/28) exhausted"
    );
    assert!(!err.is_transient());
}

#[tokio::test]
async fn strict_affinity_stops_at_max_blocks_and_loose_borrows() {
    let Some(e) = env("strict_affinity_stops_at_max_blocks").await else {
        return;
    };
    e.pool("p", "10.13.0.0/27", 28).await; // two blocks of 16
    e.config(IPAMConfigSpec {
        strict_affinity: true,
        max_blocks_per_host: 1,
        auto_allocate_blocks: true,
    })
    .await;
    let a = e.ipam("a");
    let b = e.ipam("b");
    a.auto_assign(&v4("net.a1", 16)).await.unwrap();
    b.auto_assign(&v4("net.b1", 2)).await.unwrap();
    let err = a.auto_assign(&v4("net.a2", 1)).await.unwrap_err();
    assert!(
        matches!(err, IpamError::MaxBlocksPerHost { max: 1, .. }),
        "{err}"
    );

    // Without strict affinity, node a borrows from b's block.
    let mut cfg =
        e.ds.get::<margay_crds::IPAMConfig>("default")
            .await
            .unwrap()
            .unwrap();
    cfg.spec.strict_affinity = false;
    e.ds.update(&cfg).await.unwrap();
    let got = a.auto_assign(&v4("net.a2", 1)).await.unwrap();
    let usage = a.show().await.unwrap();
    let b_block = usage
        .blocks
        .iter()
        .find(|u| u.host.as_deref() == Some("b"))
        .unwrap();
    assert!(b_block.cidr.contains(got.ipv4[0].ip));
    assert_eq!(b_block.borrowed, 1);
    assert_eq!(b_block.allocated, 3);
    let report = a.check().await.unwrap();
    assert!(report.is_clean(), "{report}");
}

#[tokio::test]
async fn stale_release_is_refused() {
    let Some(e) = env("stale_release_is_refused").await else {
        return;
    };
    e.pool("p", "10.14.0.0/24", 28).await;
    let ipam = e.ipam("n1");
    let got = ipam.auto_assign(&v4("net.old", 1)).await.unwrap();
    let ip = got.ipv4[0].ip;
    let snap = ipam.snapshot().await.unwrap();
    let seen = snap.blocks[0].allocation(ip).unwrap().sequence;

    // Released and handed out again (to the same address, explicitly).
    ipam.release_by_handle("net.old").await.unwrap();
    ipam.assign_ip(ip, "net.new", &attrs("new")).await.unwrap();

    let out = ipam
        .release_ips(&[ReleaseRequest {
            ip,
            handle: None,
            sequence: seen,
        }])
        .await
        .unwrap();
    assert!(
        matches!(out[0].result, Err(BlockError::BadSequenceNumber { .. })),
        "{out:?}"
    );
    let err = ipam
        .assign_ip(ip, "net.third", &attrs("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, IpamError::AlreadyAllocated { .. }), "{err}");

    // With the current sequence number it goes.
    let snap = ipam.snapshot().await.unwrap();
    let now = snap.blocks[0].allocation(ip).unwrap().sequence;
    let out = ipam
        .release_ips(&[ReleaseRequest {
            ip,
            handle: Some("net.new".into()),
            sequence: now,
        }])
        .await
        .unwrap();
    assert_eq!(
        out[0].result,
        Ok(Released::Freed {
            handle: Some("net.new".into())
        })
    );
    let report = ipam.check().await.unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.allocations, 0);
}

#[tokio::test]
async fn gc_frees_leaks_only_after_the_grace_period() {
    let Some(e) = env("gc_frees_leaks_only_after_the_grace_period").await
    else {
        return;
    };
    e.pool("p", "10.15.0.0/24", 28).await;
    let ipam = e.ipam("n1");
    ipam.auto_assign(&v4("net.live", 1)).await.unwrap();
    ipam.auto_assign(&v4("net.dead", 2)).await.unwrap();
    ipam.assign_ip("10.15.0.200".parse().unwrap(), "tunnel-n1", &attrs("t"))
        .await
        .unwrap();
    let live = BTreeSet::from(["net.live".to_string()]);
    let grace = Duration::from_millis(400);

    let leaks = ipam.check_leaks("net.", &live).await.unwrap();
    assert_eq!(leaks.issues.len(), 2, "{leaks}");

    let first = ipam.gc("net.", &live, grace).await.unwrap();
    assert_eq!(first.candidates, 1);
    assert_eq!(first.released_ips, 0);
    tokio::time::sleep(grace).await;
    let second = ipam.gc("net.", &live, grace).await.unwrap();
    assert_eq!(second.released_handles, 1);
    assert_eq!(second.released_ips, 2);

    let report = ipam.check_leaks("net.", &live).await.unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.allocations, 2, "live and tunnel addresses stay");
}

#[tokio::test]
async fn empty_blocks_are_released_but_one_is_kept() {
    let Some(e) = env("empty_blocks_are_released_but_one_is_kept").await else {
        return;
    };
    e.pool("p", "10.16.0.0/24", 30).await; // blocks of 4
    let ipam = e.ipam("n1");
    ipam.auto_assign(&v4("net.a", 10)).await.unwrap(); // three blocks
    assert_eq!(ipam.show().await.unwrap().blocks.len(), 3);
    ipam.release_by_handle("net.a").await.unwrap();

    // A long minimum age: seen empty, not yet released.
    let none = ipam.release_empty_blocks(Duration::from_secs(600)).await;
    assert!(none.unwrap().is_empty());
    let released = ipam.release_empty_blocks(Duration::ZERO).await.unwrap();
    assert_eq!(released.len(), 2);
    let usage = ipam.show().await.unwrap();
    assert_eq!(usage.blocks.len(), 1);
    assert_eq!(e.ds.list::<BlockAffinity>().await.unwrap().items.len(), 1);
    let report = ipam.check().await.unwrap();
    assert!(report.is_clean(), "{report}");
}

#[tokio::test]
async fn empty_block_of_another_host_is_reclaimed() {
    let Some(e) = env("empty_block_of_another_host_is_reclaimed").await else {
        return;
    };
    e.pool("p", "10.17.0.0/28", 28).await; // a single block
    let opts = IpamOptions {
        min_reclaim_age: Duration::ZERO,
        ..IpamOptions::default()
    };
    let a = e.ipam_with("a", opts.clone());
    let b = e.ipam_with("b", opts);
    e.config(IPAMConfigSpec {
        strict_affinity: true,
        ..IPAMConfigSpec::default()
    })
    .await;
    a.auto_assign(&v4("net.a", 1)).await.unwrap();
    a.release_by_handle("net.a").await.unwrap();
    // b may not borrow (strict): it must take the empty block over.
    let got = b.auto_assign(&v4("net.b", 1)).await.unwrap();
    let usage = b.show().await.unwrap();
    assert_eq!(usage.blocks.len(), 1);
    assert_eq!(usage.blocks[0].host.as_deref(), Some("b"));
    assert!(usage.blocks[0].cidr.contains(got.ipv4[0].ip));
    let report = b.check().await.unwrap();
    assert!(report.is_clean(), "{report}");
}

#[tokio::test]
async fn node_selector_and_requested_pools_choose_the_pool() {
    let Some(e) = env("node_selector_and_requested_pools").await else {
        return;
    };
    let rack_a = margay_crds::IPPool::new(
        "rack-a",
        margay_crds::IPPoolSpec {
            cidr: "10.18.0.0/24".into(),
            block_size: Some(28),
            node_selector: Some("rack == 'a'".into()),
            ..Default::default()
        },
    );
    e.ds.create(&rack_a).await.unwrap();
    e.pool("shared", "10.19.0.0/24", 28).await;
    e.labeled_node("in-a", &[("rack", "a")]).await;
    e.labeled_node("in-b", &[("rack", "b")]).await;

    let in_a = e.ipam("in-a");
    let got = in_a
        .auto_assign(&AssignArgs {
            v4_pools: vec!["rack-a".into()],
            ..v4("net.x", 1)
        })
        .await
        .unwrap();
    assert_eq!(got.ipv4[0].pool, "rack-a");
    // By CIDR as well.
    let got = in_a
        .auto_assign(&AssignArgs {
            v4_pools: vec!["10.19.0.0/24".into()],
            ..v4("net.y", 1)
        })
        .await
        .unwrap();
    assert_eq!(got.ipv4[0].pool, "shared");

    let in_b = e.ipam("in-b");
    let err = in_b
        .auto_assign(&AssignArgs {
            v4_pools: vec!["rack-a".into()],
            ..v4("net.z", 1)
        })
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, IpamError::NoUsablePool { .. }), "{text}");
    assert!(
        text.contains("pool rack-a (10.18.0.0/24): its nodeSelector does not select this node"),
        "{text}"
    );
    // Unrestricted, node b only ever gets the shared pool.
    let got = in_b.auto_assign(&v4("net.z", 3)).await.unwrap();
    assert!(got.ipv4.iter().all(|a| a.pool == "shared"));
}
