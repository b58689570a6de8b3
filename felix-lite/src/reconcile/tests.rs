//! Unit tests of the reconciler's transitions (no kernel involved).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use margay_ctlproto::RibEvent;

use super::*;

const PROTO: u8 = 81;

fn cfg() -> Config {
    Config {
        protocol: PROTO,
        stale_time: Duration::from_secs(120),
        iface_prefix: "mg".into(),
    }
}

fn net(s: &str) -> IpNetwork {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn route_ev(prefix: &str, hops: &[&str]) -> RibEvent {
    RibEvent::Route {
        prefix: net(prefix),
        next_hops: hops.iter().map(|h| ip(h)).collect(),
    }
}

fn kernel(dst: &str, protocol: u8, target: Target) -> KernelRoute {
    let dst = net(dst);
    KernelRoute {
        dst,
        metric: default_metric(&dst),
        protocol,
        kind: kind_of(&target),
        target: Some(target),
    }
}

fn via(hops: &[&str]) -> Target {
    Target::Via(hops.iter().map(|h| ip(h)).collect())
}

fn replace(dst: &str, target: Target) -> RouteOp {
    RouteOp::Replace(Route {
        dst: net(dst),
        target,
    })
}

/// Sorted textual ops, so tests do not depend on hash order.
fn sorted(ops: Vec<RouteOp>) -> Vec<String> {
    let mut v: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
    v.sort();
    v
}

/// A reconciler that has seen an (empty-pod, empty-block) world and the
/// given kernel routes.
fn started(now: Instant, routes: Vec<KernelRoute>) -> Reconciler {
    let mut r = Reconciler::new(cfg(), now);
    r.process_dump(Vec::<String>::new(), routes);
    r.process_pods(HashMap::new());
    r.process_blocks(BTreeSet::new());
    r
}

#[test]
fn nothing_is_planned_before_the_first_dump() {
    let now = Instant::now();
    let mut r = Reconciler::new(cfg(), now);
    r.process_stream_up();
    r.process_rib_event(route_ev("10.1.0.0/26", &["192.0.2.2"]));
    assert!(r.plan().is_empty());
    r.process_dump(Vec::<String>::new(), vec![]);
    assert_eq!(r.plan(), vec![replace("10.1.0.0/26", via(&["192.0.2.2"]))]);
    // Planned once: the observed state now matches.
    assert!(r.plan().is_empty());
}

#[test]
fn old_routes_go_only_after_the_first_end_of_snapshot() {
    let now = Instant::now();
    let leftover = kernel("10.9.0.0/26", PROTO, via(&["192.0.2.9"]));
    let kept = kernel("10.1.0.0/26", PROTO, via(&["192.0.2.2"]));
    let mut r = started(now, vec![leftover.clone(), kept]);
    r.process_stream_up();
    r.process_rib_event(route_ev("10.1.0.0/26", &["192.0.2.2"]));
    r.process_rib_event(route_ev("10.2.0.0/26", &["192.0.2.3"]));
    // Mid-snapshot: adds only, the leftover stays.
    assert_eq!(r.plan(), vec![replace("10.2.0.0/26", via(&["192.0.2.3"]))]);
    r.process_rib_event(RibEvent::EndOfSnapshot);
    assert_eq!(r.plan(), vec![RouteOp::Delete(leftover)]);
    assert!(r.bgp_synced());
}

#[test]
fn deltas_replace_and_withdraw() {
    let now = Instant::now();
    let mut r = started(now, vec![]);
    r.process_stream_up();
    r.process_rib_event(route_ev("10.1.0.0/26", &["192.0.2.2"]));
    r.process_rib_event(RibEvent::EndOfSnapshot);
    r.plan();
    r.process_rib_event(route_ev("10.1.0.0/26", &["192.0.2.4", "192.0.2.3"]));
    assert_eq!(
        r.plan(),
        vec![replace("10.1.0.0/26", via(&["192.0.2.3", "192.0.2.4"]))],
        "ECMP next hops are programmed sorted, as one multipath route"
    );
    r.process_rib_event(RibEvent::Withdraw {
        prefix: net("10.1.0.0/26"),
    });
    let ops = r.plan();
    assert_eq!(
        ops,
        vec![RouteOp::Delete(kernel(
            "10.1.0.0/26",
            PROTO,
            via(&["192.0.2.3", "192.0.2.4"])
        ))]
    );
}

#[test]
fn foreign_routes_are_never_touched() {
    let now = Instant::now();
    let foreign = kernel("10.1.0.0/26", 12, via(&["192.0.2.77"]));
    let other = kernel("10.3.0.0/26", 4, via(&["192.0.2.78"]));
    let mut r = started(now, vec![foreign, other]);
    r.process_stream_up();
    r.process_rib_event(route_ev("10.1.0.0/26", &["192.0.2.2"]));
    r.process_rib_event(RibEvent::EndOfSnapshot);
    // 10.1.0.0/26 collides with BIRD's route: not replaced; 10.3.0.0/26 is
    // not ours and not wanted: not deleted.
    assert!(r.plan().is_empty());
    assert_eq!(r.counts().conflicts, 1);
    // Once the foreign route goes, ours is installed.
    r.process_kernel_del(kernel("10.1.0.0/26", 12, via(&["192.0.2.77"])));
    assert_eq!(r.plan(), vec![replace("10.1.0.0/26", via(&["192.0.2.2"]))]);
    assert_eq!(r.counts().conflicts, 0);
}

/// A reconciler with a completed stream holding `prefixes`, all programmed.
fn synced_with(now: Instant, prefixes: &[&str]) -> Reconciler {
    let mut r = started(now, vec![]);
    r.process_stream_up();
    for p in prefixes {
        r.process_rib_event(route_ev(p, &["192.0.2.2"]));
    }
    r.process_rib_event(RibEvent::EndOfSnapshot);
    assert_eq!(r.plan().len(), prefixes.len());
    r
}

#[test]
fn stream_drop_keeps_routes_and_resync_removes_the_missing() {
    let now = Instant::now();
    let mut r =
        synced_with(now, &["10.1.0.0/26", "10.2.0.0/26", "10.3.0.0/26"]);
    r.process_stream_down(now);
    assert!(r.plan().is_empty(), "a dropped stream changes nothing");
    assert_eq!(r.counts().stale, 3);
    r.process_stream_up();
    r.process_rib_event(route_ev("10.1.0.0/26", &["192.0.2.2"]));
    r.process_rib_event(route_ev("10.2.0.0/26", &["192.0.2.5"]));
    // Re-announced unchanged: nothing; changed: replaced; missing: kept.
    assert_eq!(r.plan(), vec![replace("10.2.0.0/26", via(&["192.0.2.5"]))]);
    r.process_rib_event(RibEvent::EndOfSnapshot);
    assert_eq!(
        r.plan(),
        vec![RouteOp::Delete(kernel(
            "10.3.0.0/26",
            PROTO,
            via(&["192.0.2.2"])
        ))]
    );
    assert_eq!(r.counts().stale, 0);
    assert_eq!(r.next_deadline(), None);
}

#[test]
fn stale_routes_expire_after_stale_time() {
    let now = Instant::now();
    let mut r = synced_with(now, &["10.1.0.0/26", "10.2.0.0/26"]);
    let down = now + Duration::from_secs(10);
    r.process_stream_down(down);
    assert_eq!(r.next_deadline(), Some(down + Duration::from_secs(120)));
    r.process_tick(down + Duration::from_secs(119));
    assert!(r.plan().is_empty());
    r.process_tick(down + Duration::from_secs(120));
    assert_eq!(
        sorted(r.plan()),
        vec![
            "delete 10.1.0.0/26 via 192.0.2.2 metric 0",
            "delete 10.2.0.0/26 via 192.0.2.2 metric 0"
        ]
    );
}

#[test]
fn the_stale_clock_is_not_reset_by_a_stream_that_never_completes() {
    let now = Instant::now();
    let mut r = synced_with(now, &["10.1.0.0/26"]);
    r.process_stream_down(now);
    r.process_stream_up();
    r.process_rib_event(route_ev("10.1.0.0/26", &["192.0.2.2"]));
    let later = now + Duration::from_secs(60);
    r.process_stream_down(later);
    assert_eq!(r.next_deadline(), Some(now + Duration::from_secs(120)));
}

#[test]
fn leftovers_expire_when_bgpd_never_comes() {
    let now = Instant::now();
    let leftover = kernel("10.9.0.0/26", PROTO, via(&["192.0.2.9"]));
    let mut r = started(now, vec![leftover.clone()]);
    assert!(r.plan().is_empty());
    r.process_tick(now + Duration::from_secs(120));
    assert_eq!(r.plan(), vec![RouteOp::Delete(leftover)]);
}

#[test]
fn withdraw_during_resync_removes_a_stale_route() {
    let now = Instant::now();
    let mut r = synced_with(now, &["10.1.0.0/26"]);
    r.process_stream_down(now);
    r.process_stream_up();
    r.process_rib_event(RibEvent::Withdraw {
        prefix: net("10.1.0.0/26"),
    });
    assert_eq!(r.plan().len(), 1);
}

#[test]
fn blackholes_follow_blocks() {
    let now = Instant::now();
    let mut r = Reconciler::new(cfg(), now);
    let old = kernel("10.5.0.0/26", PROTO, Target::Blackhole);
    r.process_dump(Vec::<String>::new(), vec![old.clone()]);
    assert!(
        r.plan().is_empty(),
        "blocks not listed yet: keep blackholes"
    );
    let blocks: BTreeSet<IpNetwork> =
        [net("10.4.0.0/26"), net("10.4.0.64/32")].into();
    r.process_blocks(blocks);
    assert_eq!(
        sorted(r.plan()),
        vec![
            "delete 10.5.0.0/26 blackhole metric 0",
            "replace 10.4.0.0/26 blackhole"
        ],
        "host-sized blocks get no blackhole"
    );
    r.process_blocks(BTreeSet::new());
    assert_eq!(
        sorted(r.plan()),
        vec!["delete 10.4.0.0/26 blackhole metric 0"]
    );
}

#[test]
fn own_block_wins_over_a_bgp_route_for_it() {
    let now = Instant::now();
    let mut r = synced_with(now, &["10.4.0.0/26"]);
    r.process_blocks([net("10.4.0.0/26")].into());
    assert_eq!(r.plan(), vec![replace("10.4.0.0/26", Target::Blackhole)]);
}

#[test]
fn pod_routes_are_restored_and_cleaned() {
    let now = Instant::now();
    let mut r = Reconciler::new(cfg(), now);
    // CNI made the route for pod A (proto boot); pod B's route is missing;
    // pod C's interface does not exist; a stale route sits on mgold.
    let a = kernel("10.4.0.1/32", 3, Target::Dev("mga".into()));
    let stale = kernel("10.4.0.9/32", 3, Target::Dev("mgold".into()));
    let links = ["mga", "mgb", "mgold"].map(String::from);
    r.process_dump(links, vec![a, stale.clone()]);
    r.process_pods(HashMap::from([
        (net("10.4.0.1/32"), "mga".to_string()),
        (net("10.4.0.2/32"), "mgb".to_string()),
        (net("10.4.0.3/32"), "mgc".to_string()),
    ]));
    assert_eq!(
        sorted(r.plan()),
        vec![
            "delete 10.4.0.9/32 dev mgold metric 0",
            "replace 10.4.0.2/32 dev mgb"
        ]
    );
    // Someone deletes pod A's route by hand: it comes back.
    r.process_kernel_del(kernel("10.4.0.1/32", 3, Target::Dev("mga".into())));
    assert_eq!(
        r.plan(),
        vec![replace("10.4.0.1/32", Target::Dev("mga".into()))]
    );
    // mgc appears: its route is created.
    r.process_link("mgc", true);
    assert_eq!(
        r.plan(),
        vec![replace("10.4.0.3/32", Target::Dev("mgc".into()))]
    );
    // A /32 on an interface outside the prefix is foreign.
    r.process_kernel_new(kernel("10.8.0.1/32", 3, Target::Dev("eth0".into())));
    assert!(r.plan().is_empty());
}

/// The CNI plugin creates a pod's host route (proto boot) before
/// felix-lite's next endpoint scan knows the pod: the route must stay, or
/// the new pod is unreachable until that scan re-creates it.
#[test]
fn a_new_pods_route_waits_for_the_endpoint_scan() {
    let mut r = started(Instant::now(), vec![]);
    r.process_link("mgnew", true);
    let cni = kernel("10.4.0.7/32", 3, Target::Dev("mgnew".into()));
    r.process_kernel_new(cni.clone());
    assert!(r.plan().is_empty(), "kept until the next scan");
    // The scan brings the pod: the route is wanted and left alone.
    r.process_pods(HashMap::from([(net("10.4.0.7/32"), "mgnew".into())]));
    assert!(r.plan().is_empty());
    // A route for no pod that is still unknown after a scan goes.
    let stray = kernel("10.4.0.8/32", 3, Target::Dev("mgnew".into()));
    r.process_kernel_new(stray);
    assert!(r.plan().is_empty());
    r.process_pods(HashMap::from([(net("10.4.0.7/32"), "mgnew".into())]));
    assert_eq!(
        sorted(r.plan()),
        vec!["delete 10.4.0.8/32 dev mgnew metric 0"]
    );
}

#[test]
fn drift_is_repaired() {
    let now = Instant::now();
    let mut r = synced_with(now, &["10.1.0.0/26"]);
    // Someone points our route elsewhere and adds one with our protocol.
    r.process_kernel_new(kernel("10.1.0.0/26", PROTO, via(&["192.0.2.99"])));
    r.process_kernel_new(kernel("10.7.0.0/26", PROTO, via(&["192.0.2.99"])));
    assert_eq!(
        sorted(r.plan()),
        vec![
            "delete 10.7.0.0/26 via 192.0.2.99 metric 0",
            "replace 10.1.0.0/26 via 192.0.2.2"
        ]
    );
    // Our own notification echoes change nothing.
    r.process_kernel_new(kernel("10.1.0.0/26", PROTO, via(&["192.0.2.2"])));
    assert!(r.plan().is_empty());
}

#[test]
fn refused_ops_wait_for_the_next_dump() {
    let now = Instant::now();
    let mut r = synced_with(now, &[]);
    r.process_rib_event(route_ev("10.1.0.0/26", &["203.0.113.1"]));
    let ops = r.plan();
    assert_eq!(ops.len(), 1);
    r.process_op_failed(&ops[0]);
    assert!(r.plan().is_empty(), "no busy retry");
    r.process_dump(Vec::<String>::new(), vec![]);
    assert_eq!(r.plan(), ops, "retried after the next dump");
}

#[test]
fn ipv6_routes_use_the_ipv6_default_metric() {
    let now = Instant::now();
    let mut r = synced_with(now, &[]);
    r.process_rib_event(route_ev("fd00:1::/122", &["fd00::2"]));
    r.process_rib_event(route_ev("10.1.2.3/24", &["192.0.2.2"]));
    assert_eq!(
        sorted(r.plan()),
        vec![
            "replace 10.1.2.0/24 via 192.0.2.2",
            "replace fd00:1::/122 via fd00::2"
        ]
    );
    r.process_rib_event(RibEvent::Withdraw {
        prefix: net("fd00:1::/122"),
    });
    assert_eq!(
        sorted(r.plan()),
        vec!["delete fd00:1::/122 via fd00::2 metric 1024"]
    );
}
