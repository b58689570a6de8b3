use std::net::{IpAddr, Ipv4Addr};

use bgp_wire::{AsPath, NextHop, Origin, PathAttrs};

use super::*;

fn src(id: u8) -> SourceInfo {
    SourceInfo {
        ebgp: true,
        router_id: Ipv4Addr::new(10, 0, 0, id),
        addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, id)),
    }
}

fn attrs(rib: &mut Rib, path: &[u32], nh: u8) -> Arc<Attrs> {
    rib.intern(Attrs {
        path: PathAttrs {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::from_sequence(path)),
            ..Default::default()
        },
        next_hop: Some(NextHop::V4(Ipv4Addr::new(192, 0, 2, nh))),
    })
}

fn rib() -> Rib {
    let mut r = Rib::new();
    for i in 1..=3 {
        r.set_source(i, src(i as u8));
    }
    r
}

fn p(s: &str) -> IpNetwork {
    s.parse().unwrap()
}

#[test]
fn interning_shares_one_arc() {
    let mut r = rib();
    let a = attrs(&mut r, &[1], 1);
    let b = attrs(&mut r, &[1], 1);
    assert!(Arc::ptr_eq(&a, &b));
    let c = attrs(&mut r, &[2], 1);
    assert!(!Arc::ptr_eq(&a, &c));
    drop((a, b, c));
    r.gc_interned();
    assert!(r.interned.is_empty());
}

#[test]
fn best_path_and_ecmp_and_withdraw() {
    let mut r = rib();
    let short1 = attrs(&mut r, &[65001], 1);
    let short2 = attrs(&mut r, &[65002], 2);
    let long3 = attrs(&mut r, &[65003, 7], 3);
    assert_eq!(r.update(3, p("10.0.0.0/24"), long3.clone()), Change::Best);
    assert_eq!(r.update(1, p("10.0.0.0/24"), short1), Change::Best);
    let e = r.get(&p("10.0.0.0/24")).unwrap();
    assert_eq!(e.best().unwrap().peer, 1);
    assert_eq!(e.multipath().len(), 1);
    // An equal path from another AS joins the ECMP set without changing
    // the best path (router ID 1 < 2).
    assert_eq!(r.update(2, p("10.0.0.0/24"), short2), Change::Multipath);
    let e = r.get(&p("10.0.0.0/24")).unwrap();
    assert_eq!(e.best().unwrap().peer, 1);
    let mp: Vec<_> = e.multipath().iter().map(|p| p.peer).collect();
    assert_eq!(mp, [1, 2]);
    // Re-announcing the same attributes changes nothing.
    assert_eq!(r.update(3, p("10.0.0.0/24"), long3), Change::None);
    assert_eq!(r.withdraw(1, &p("10.0.0.0/24")), Change::Best);
    assert_eq!(r.get(&p("10.0.0.0/24")).unwrap().best().unwrap().peer, 2);
    assert_eq!(r.withdraw(2, &p("10.0.0.0/24")), Change::Best);
    assert_eq!(r.withdraw(3, &p("10.0.0.0/24")), Change::Best);
    assert_eq!(r.withdraw(3, &p("10.0.0.0/24")), Change::None);
    assert_eq!(drained(&mut r, usize::MAX), ["10.0.0.0/24 gone"]);
    assert!(r.is_empty(), "an unadvertised empty entry is dropped");
}

/// Every changed prefix as `drain_changed` hands it out: "<prefix>
/// <best peer>" or "<prefix> gone".
fn drained(r: &mut Rib, max: usize) -> Vec<String> {
    let mut v = Vec::new();
    r.drain_changed(max, |prefix, e, _| {
        v.push(match e.best() {
            Some(b) => format!("{prefix} {}", b.peer),
            None => format!("{prefix} gone"),
        })
    });
    v
}

#[test]
fn changes_drain_once_each_in_arrival_order() {
    let mut r = rib();
    let a = attrs(&mut r, &[65001], 1);
    let b = attrs(&mut r, &[65002], 2);
    for s in ["10.0.3.0/24", "10.0.1.0/24", "10.0.2.0/24"] {
        r.update(1, p(s), a.clone());
    }
    // A second change of a queued prefix keeps its place; an unchanged
    // re-announcement queues nothing.
    r.update(2, p("10.0.3.0/24"), b.clone());
    r.update(1, p("10.0.1.0/24"), a.clone());
    assert_eq!(drained(&mut r, 2), ["10.0.3.0/24 1", "10.0.1.0/24 1"]);
    assert!(r.has_changes());
    // Withdrawn and announced again before the drain: once, as it is now.
    r.withdraw(1, &p("10.0.1.0/24"));
    assert_eq!(
        drained(&mut r, usize::MAX),
        ["10.0.2.0/24 1", "10.0.1.0/24 gone"]
    );
    r.update(2, p("10.0.5.0/24"), b.clone());
    r.withdraw(2, &p("10.0.5.0/24"));
    r.update(2, p("10.0.5.0/24"), b);
    assert_eq!(drained(&mut r, usize::MAX), ["10.0.5.0/24 2"]);
    assert!(!r.has_changes());
    assert_eq!(r.len(), 3);
}

#[test]
fn stale_marking_refresh_and_purge() {
    let mut r = rib();
    let a = attrs(&mut r, &[65001], 1);
    for s in ["10.0.1.0/24", "10.0.2.0/24"] {
        r.update(1, p(s), a.clone());
    }
    assert_eq!(r.mark_stale(1), 2);
    assert!(r.get(&p("10.0.1.0/24")).unwrap().best().unwrap().stale);
    // Re-advertisement after the restart replaces the stale path.
    r.update(1, p("10.0.1.0/24"), a);
    assert!(!r.get(&p("10.0.1.0/24")).unwrap().best().unwrap().stale);
    drained(&mut r, usize::MAX);
    assert_eq!(r.remove_peer(1, true), 1);
    assert_eq!(drained(&mut r, usize::MAX), ["10.0.2.0/24 gone"]);
    assert_eq!(r.len(), 1);
    assert_eq!(r.count_from(1), 1);
}

#[test]
fn advertised_bits_keep_entry_until_withdrawn() {
    let mut r = rib();
    let a = attrs(&mut r, &[65001], 1);
    r.update(1, p("10.0.1.0/24"), a);
    let e = r.get_mut(&p("10.0.1.0/24")).unwrap();
    e.set_advertised(70, true);
    assert!(e.is_advertised(70) && !e.is_advertised(6));
    drained(&mut r, usize::MAX);
    r.withdraw(1, &p("10.0.1.0/24"));
    r.clear_advertised(6);
    assert_eq!(r.len(), 1, "queued, and still advertised to slot 70");
    assert_eq!(drained(&mut r, usize::MAX), ["10.0.1.0/24 gone"]);
    assert_eq!(r.len(), 1, "still advertised to slot 70");
    // The export of the withdrawal clears the bit: then it goes.
    let a = attrs(&mut r, &[65001], 1);
    r.update(1, p("10.0.1.0/24"), a);
    r.withdraw(1, &p("10.0.1.0/24"));
    r.drain_changed(usize::MAX, |_, e, _| e.set_advertised(70, false));
    assert!(r.is_empty());
}

/// A route's memory: the entry (with its prefix) must stay within 56
/// octets; a million of them are most of a full table.
#[test]
fn entry_fits_in_56_octets() {
    assert_eq!(std::mem::size_of::<Paths>(), 16);
    assert!(
        std::mem::size_of::<Entry>() <= 56,
        "{}",
        std::mem::size_of::<Entry>()
    );
}

/// An attribute set's memory: every distinct set is one `Arc<Attrs>`
/// (120 octets, 136 with the reference counts: glibc hands out 144) plus
/// its AS path and community lists (three more chunks of 32-48). At
/// 200,000 sets that is about 50 MiB, about the prefix table of a
/// million prefixes (bgperf); a field added to `PathAttrs` inline costs
/// every set its size, and 8 octets more cost a glibc size class. Rare
/// attributes belong in `bgp_wire::RareAttrs`, behind one pointer (240
/// octets, 272 handed out, before they moved there).
#[test]
fn attribute_set_stays_within_120_octets() {
    assert!(
        std::mem::size_of::<Attrs>() <= 120,
        "{}",
        std::mem::size_of::<Attrs>()
    );
}

#[test]
fn paths_move_between_inline_and_heap() {
    let mut r = rib();
    let a = attrs(&mut r, &[65001], 1);
    let path = |peer| Path {
        attrs: a.clone(),
        peer,
        stale: false,
    };
    let mut ps = Paths::None;
    ps.push(path(1));
    assert!(matches!(ps, Paths::One(_)));
    ps.push(path(2));
    ps.push(path(3));
    assert_eq!(ps.iter().map(|p| p.peer).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(ps.remove(1).peer, 2);
    ps.retain(|p| p.peer != 1);
    assert!(matches!(&ps, Paths::One(p) if p.peer == 3));
    ps[0].stale = true;
    assert!(ps[0].stale);
    assert_eq!(ps.remove(0).peer, 3);
    assert!(ps.is_empty() && matches!(ps, Paths::None));
}

#[test]
fn dead_entries_are_invisible_revivable_and_compacted_in_bulk() {
    let mut r = rib();
    let a = attrs(&mut r, &[65001], 1);
    let ps = ["10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24", "10.0.4.0/24"];
    for s in ps {
        r.update(1, p(s), a.clone());
    }
    drained(&mut r, usize::MAX);
    r.withdraw(1, &p(ps[0]));
    drained(&mut r, usize::MAX);
    // One dead of four: kept until the dead are as many as the live.
    assert_eq!((r.len(), r.table.len()), (3, 4));
    assert!(r.get(&p(ps[0])).is_none());
    assert_eq!(r.iter().count(), 3);
    // A new path brings it back.
    r.update(2, p(ps[0]), a.clone());
    assert_eq!(drained(&mut r, usize::MAX), ["10.0.1.0/24 2"]);
    assert_eq!((r.len(), r.table.len()), (4, 4));
    for s in &ps[1..3] {
        r.withdraw(1, &p(s));
    }
    drained(&mut r, usize::MAX);
    // Two dead of four: one compaction drops both.
    assert_eq!((r.len(), r.table.len()), (2, 2));
    assert_eq!(r.get(&p(ps[3])).unwrap().best().unwrap().peer, 1);
    assert_eq!(r.get(&p(ps[0])).unwrap().best().unwrap().peer, 2);
}
