//! IPAM on both datastores that can write: claims, borrowing,
//! exhaustion, dual stack, the ABA guard, GC and empty-block release.
//! Every scenario is one body run three times: on a real etcd (one
//! transaction per allocation), and on the Kubernetes backend (no
//! transactions: the handle-first, one-object-at-a-time protocol) through
//! kube-fake-client and through a real kube-apiserver, where IPAM runs as
//! margay-cni under deploy/20-rbac.yaml.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use margay_crds::{AffinityState, BlockAffinity, IPAMBlock, IPAMConfigSpec};
use margay_ipam::block::{BlockError, Released};
use margay_ipam::{AssignArgs, IpamError, IpamOptions, ReleaseRequest};

use common::{Env, attrs, env, kube_env, real_kube_env};

/// Three tests for scenario `$name`: `$name::etcd`, `$name::kubernetes`
/// (kube-fake-client) and `$name::kube_apiserver`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn etcd() {
                let Some(e) = super::env(stringify!($name)).await else {
                    return;
                };
                super::$name(&e).await;
            }

            #[tokio::test]
            async fn kubernetes() {
                super::$name(&super::kube_env().await).await;
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

on_both_backends!(
    dual_stack_assign_and_release_by_handle,
    dual_stack_is_both_or_neither,
    pool_exhaustion_names_the_pool,
    strict_affinity_stops_at_max_blocks_and_loose_borrows,
    stale_release_is_refused,
    gc_frees_leaks_only_after_the_grace_period,
    empty_blocks_are_released_but_one_is_kept,
    empty_block_of_another_host_is_reclaimed,
    node_selector_and_requested_pools_choose_the_pool,
    block_hint_is_only_a_hint,
    racing_nodes_claim_and_borrow_without_duplicates,
    departed_node_leaves_borrowed_addresses_in_a_block_affine_to_none,
    departed_release_races_the_borrower,
);

fn v4(handle: &str, n: usize) -> AssignArgs {
    AssignArgs {
        handle: handle.into(),
        num_v4: n,
        attrs: attrs(handle),
        ..AssignArgs::default()
    }
}

async fn dual_stack_assign_and_release_by_handle(e: &Env) {
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

async fn dual_stack_is_both_or_neither(e: &Env) {
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

async fn pool_exhaustion_names_the_pool(e: &Env) {
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

async fn strict_affinity_stops_at_max_blocks_and_loose_borrows(e: &Env) {
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

    // Without strict affinity, node a borrows from b's block (the pool's
    // two blocks are both claimed). maxBlocksPerHost goes too: Calico (and
    // the CRD's rule) allow it only with strictAffinity.
    let mut cfg =
        e.ds.get::<margay_crds::IPAMConfig>("default")
            .await
            .unwrap()
            .unwrap();
    cfg.spec.strict_affinity = false;
    cfg.spec.max_blocks_per_host = 0;
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

async fn stale_release_is_refused(e: &Env) {
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

async fn gc_frees_leaks_only_after_the_grace_period(e: &Env) {
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

async fn empty_blocks_are_released_but_one_is_kept(e: &Env) {
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

async fn empty_block_of_another_host_is_reclaimed(e: &Env) {
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

async fn node_selector_and_requested_pools_choose_the_pool(e: &Env) {
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

/// The hint file next to the host lock names the block to read with the
/// context; a hint naming another node's block, or garbage, changes only
/// how many reads an allocation takes, never where it allocates.
async fn block_hint_is_only_a_hint(e: &Env) {
    e.pool("p", "10.20.0.0/26", 28).await; // four blocks of 16
    e.config(IPAMConfigSpec {
        strict_affinity: true,
        ..IPAMConfigSpec::default()
    })
    .await;
    let a = e.ipam("a");
    let b = e.ipam("b");
    let theirs = b.auto_assign(&v4("net.b", 1)).await.unwrap().ipv4[0].block;
    let hint = e.dir.path().join("a.block-hint");
    std::fs::write(&hint, format!("garbage\na {theirs}\n")).unwrap();

    let got = a.auto_assign(&v4("net.a1", 2)).await.unwrap();
    let mine = got.ipv4[0].block;
    assert_ne!(mine, theirs, "allocated from the hinted block of node b");
    assert!(got.ipv4.iter().all(|x| x.block == mine), "{got:?}");
    // The hint now names a's own block, and a's next ADD continues there.
    assert_eq!(
        std::fs::read_to_string(&hint).unwrap(),
        format!("a {mine}\n")
    );
    let next = a.auto_assign(&v4("net.a2", 1)).await.unwrap();
    assert_eq!(next.ipv4[0].block, mine);

    let usage = a.show().await.unwrap();
    let of = |cidr| usage.blocks.iter().find(|u| u.cidr == cidr).unwrap();
    assert_eq!(of(theirs).allocated, 1, "b's block holds only b's address");
    assert_eq!(of(mine).allocated, 3);
    let report = a.check().await.unwrap();
    assert!(report.is_clean(), "{report}");
}

/// Six nodes allocate at the same time from a pool of four blocks: they
/// race for the block claims (compare-and-swap conflicts on every kind),
/// the nodes left without a block borrow, and still every address is handed out once and
/// releasing every handle leaves nothing behind.
async fn racing_nodes_claim_and_borrow_without_duplicates(e: &Env) {
    const NODES: usize = 6;
    const EACH: usize = 5;
    e.pool("p", "10.21.0.0/27", 29).await; // four blocks of 8
    // Every ADD at once: nodes race each other for blocks, and the ADDs
    // of one node queue on its host lock.
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..NODES {
        let ipam = Arc::new(e.ipam(&format!("node-{n}")));
        for i in 0..EACH {
            let ipam = ipam.clone();
            tasks.spawn(async move {
                let handle = format!("net.n{n}-{i}");
                let got = ipam.auto_assign(&v4(&handle, 1)).await.unwrap();
                (ipam, handle, got.ipv4[0].ip)
            });
        }
    }
    let mut ips = BTreeSet::new();
    let mut owners = Vec::new();
    while let Some(res) = tasks.join_next().await {
        let (ipam, handle, ip) = res.unwrap();
        assert!(ips.insert(ip), "{ip} handed out twice");
        owners.push((ipam, handle));
    }
    assert_eq!(ips.len(), NODES * EACH);
    let checker = e.ipam("checker");
    let usage = checker.show().await.unwrap();
    assert_eq!(usage.blocks.len(), 4, "{usage:?}");
    let borrowed: usize = usage.blocks.iter().map(|b| b.borrowed).sum();
    assert!(
        borrowed > 0,
        "six nodes fit in four blocks only by borrowing"
    );
    let report = checker.check().await.unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.allocations, NODES * EACH);

    let mut releases = tokio::task::JoinSet::new();
    for (ipam, handle) in owners {
        releases.spawn(async move {
            ipam.release_by_handle(&handle).await.unwrap().len()
        });
    }
    let mut freed = 0;
    while let Some(n) = releases.join_next().await {
        freed += n.unwrap();
    }
    assert_eq!(freed, NODES * EACH);
    let report = checker.check().await.unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.allocations, 0);
    assert_eq!(report.handles, 0);
}

/// Calico's node removal (`ReleaseHostAffinities(host, mustBeEmpty=false)`):
/// the departed node's affinity goes even though its block holds an address
/// another node borrowed; the block stays, affine to no node, with that
/// allocation; no node can claim it while it holds one; the borrower's
/// release of its last address deletes it, and the CIDR is claimable again.
async fn departed_node_leaves_borrowed_addresses_in_a_block_affine_to_none(
    e: &Env,
) {
    e.pool("p", "10.15.0.0/28", 28).await; // one block
    e.config(IPAMConfigSpec {
        strict_affinity: true,
        max_blocks_per_host: 0,
        auto_allocate_blocks: true,
    })
    .await;
    let n1 = e.ipam("n1");
    let n3 = e.ipam("n3");
    let own = n1.auto_assign(&v4("net.n1", 1)).await.unwrap();
    let block = own.ipv4[0].block;
    let IpAddr::V4(first) = own.ipv4[0].ip else {
        panic!("an IPv4 pool")
    };
    let b1 = IpAddr::V4((u32::from(first) + 1).into());
    let b2 = IpAddr::V4((u32::from(first) + 2).into());
    n3.assign_ip(b1, "net.n3a", &attrs("n3a")).await.unwrap();
    n3.assign_ip(b2, "net.n3b", &attrs("n3b")).await.unwrap();

    let out = n1.release_departed_node().await.unwrap();
    assert_eq!(out.freed_ips, 1);
    assert_eq!(out.orphaned_blocks, vec![block]);
    assert!(out.released_blocks.is_empty());
    let live_affs = async || {
        e.ds.list::<BlockAffinity>()
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|a| !a.spec.deleted)
            .map(|a| a.spec.node)
            .collect::<Vec<_>>()
    };
    assert!(live_affs().await.is_empty(), "n1's affinity is gone");
    let name = margay_crds::names::block_name(&block);
    let stored = e.ds.get::<IPAMBlock>(&name).await.unwrap().unwrap();
    assert_eq!(stored.spec.affinity, None);
    assert_eq!(stored.spec.affinity_claim_time, None);
    let usage = n3.show().await.unwrap();
    let u = usage.blocks.iter().find(|u| u.cidr == block).unwrap();
    assert_eq!((u.host.as_deref(), u.allocated), (None, 2));
    let report = n3.check().await.unwrap();
    assert!(report.is_clean(), "{report}");
    // Idempotent: nothing left to do.
    let again = n1.release_departed_node().await.unwrap();
    assert_eq!(again, margay_ipam::DepartedRelease::default());

    // Strict affinity: n2 may not borrow, and cannot claim the orphaned
    // block while it holds addresses.
    let n2 = e.ipam("n2");
    let err = n2.auto_assign(&v4("net.n2", 1)).await.unwrap_err();
    assert!(matches!(err, IpamError::PoolExhausted { .. }), "{err}");
    assert!(live_affs().await.is_empty(), "no claim was left behind");

    // The borrower still releases its addresses: by address (the block
    // stays for the other one), then by handle (the block goes).
    let req = ReleaseRequest {
        ip: b1,
        handle: Some("net.n3a".into()),
        sequence: None,
    };
    let got = n3.release_ips(&[req]).await.unwrap();
    assert!(matches!(got[0].result, Ok(Released::Freed { .. })));
    assert!(e.ds.get::<IPAMBlock>(&name).await.unwrap().is_some());
    assert_eq!(n3.release_by_handle("net.n3b").await.unwrap(), vec![b2]);
    let gone = e.ds.get::<IPAMBlock>(&name).await.unwrap();
    assert!(
        gone.is_none(),
        "the emptied block affine to none is deleted"
    );
    let report = n3.check().await.unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.allocations, 0);

    // The CIDR is free: n2 claims it.
    let got = n2.auto_assign(&v4("net.n2", 1)).await.unwrap();
    assert_eq!(got.ipv4[0].block, block);
    assert_eq!(live_affs().await, vec!["n2".to_string()]);
}

/// The departed node's release runs while the borrower allocates and
/// releases in the same block: every write is a CAS on the block, so no
/// allocation of the borrower is lost or freed, and the block ends affine
/// to none.
async fn departed_release_races_the_borrower(e: &Env) {
    e.pool("p", "10.16.0.0/28", 28).await;
    let n1 = e.ipam("n1");
    let n3 = e.ipam("n3");
    let own = n1.auto_assign(&v4("net.n1", 1)).await.unwrap();
    let block = own.ipv4[0].block;
    let IpAddr::V4(first) = own.ipv4[0].ip else {
        panic!("an IPv4 pool")
    };
    let nth = |i: u32| IpAddr::V4((u32::from(first) + i).into());
    n3.assign_ip(nth(1), "net.n3-1", &attrs("n3-1"))
        .await
        .unwrap();
    let borrower = async {
        for i in 2..8 {
            let h = format!("net.n3-{i}");
            n3.assign_ip(nth(i), &h, &attrs(&h)).await.unwrap();
        }
        assert_eq!(
            n3.release_by_handle("net.n3-2").await.unwrap(),
            vec![nth(2)]
        );
    };
    let (out, ()) = tokio::join!(n1.release_departed_node(), borrower);
    let out = out.unwrap();
    assert_eq!(out.freed_ips, 1);
    assert_eq!(out.orphaned_blocks, vec![block]);
    let usage = n3.show().await.unwrap();
    let u = usage.blocks.iter().find(|u| u.cidr == block).unwrap();
    assert_eq!((u.host.as_deref(), u.allocated), (None, 6), "{u:?}");
    let report = n3.check().await.unwrap();
    assert!(report.is_clean(), "{report}");
    for i in [1, 3, 4, 5, 6, 7] {
        let h = format!("net.n3-{i}");
        assert_eq!(n3.release_by_handle(&h).await.unwrap(), vec![nth(i)]);
    }
    let name = margay_crds::names::block_name(&block);
    assert!(e.ds.get::<IPAMBlock>(&name).await.unwrap().is_none());
}
