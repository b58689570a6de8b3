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
    assert!(r.is_empty(), "an unadvertised empty entry is dropped");
    assert_eq!(r.withdraw(3, &p("10.0.0.0/24")), Change::None);
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
    let gone = r.remove_peer(1, true);
    assert_eq!(gone, vec![(p("10.0.2.0/24"), Change::Best)]);
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
    r.withdraw(1, &p("10.0.1.0/24"));
    assert_eq!(r.len(), 1, "still advertised to slot 70");
    r.get_mut(&p("10.0.1.0/24"))
        .unwrap()
        .set_advertised(70, false);
    r.forget_if_unused(&p("10.0.1.0/24"));
    assert!(r.is_empty());
}

/// A route's memory: the entry (with its prefix) must stay within one
/// 64-octet line; a million of them are most of a full table.
#[test]
fn entry_fits_in_64_octets() {
    assert!(
        std::mem::size_of::<Entry>() <= 64,
        "{}",
        std::mem::size_of::<Entry>()
    );
}
