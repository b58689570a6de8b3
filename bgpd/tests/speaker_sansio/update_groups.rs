//! Update groups: peers that export the same bytes share one export and
//! one encoding, and each still receives exactly what it would alone.

use std::net::Ipv4Addr;

use bgp_wire::{DecodeCxt, Family, Nlri};
use bytes::{Bytes, BytesMut};
use margay_bgpd::speaker::{Output, PeerCfg, Speaker};

use super::{announce, establish, peer, speaker, updates_to};

const INJ: [u8; 4] = [10, 0, 0, 2];
const MONS: [[u8; 4]; 3] = [[10, 0, 0, 3], [10, 0, 0, 4], [10, 0, 0, 5]];

fn withdraw(prefix: &str) -> Vec<u8> {
    let mut out = BytesMut::new();
    bgp_wire::pack_unreach(
        Family::IPV4_UNICAST,
        &[Nlri::new(prefix.parse().unwrap())],
        &DecodeCxt::four_octet(),
        &mut out,
    )
    .unwrap();
    out.to_vec()
}

/// The bytes sent to `to` among `outs` (one buffer at most expected).
fn sent(outs: &[Output], to: (u32, u64)) -> Vec<Bytes> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Send { peer, conn, bytes } if (*peer, *conn) == to => {
                Some(bytes.clone())
            }
            _ => None,
        })
        .collect()
}

/// Prefixes announced / withdrawn to `to` among `outs`.
fn nlri(outs: &[Output], to: (u32, u64)) -> (Vec<String>, Vec<String>) {
    let ups = updates_to(outs, to);
    let mut ann: Vec<String> = ups
        .iter()
        .flat_map(|u| u.nlri.iter().map(|n| n.prefix.to_string()))
        .collect();
    let mut wd: Vec<String> = ups
        .iter()
        .flat_map(|u| u.withdrawn.iter().map(|n| n.prefix.to_string()))
        .collect();
    ann.sort();
    wd.sort();
    (ann, wd)
}

fn transit(monitors: &[[u8; 4]]) -> Speaker {
    let mut cfgs = vec![peer(INJ, 65001)];
    cfgs.extend(monitors.iter().map(|a| peer(*a, 65002)));
    let mut s = speaker(cfgs);
    s.take_outputs();
    s
}

/// Three monitors with the same policy and AS: one UPDATE buffer, the
/// very same bytes (not a copy) sent to each. Fails with one export and
/// one encoding per peer.
#[test]
fn one_encoding_is_sent_to_every_member() {
    let mut s = transit(&MONS);
    let inj = establish(&mut s, INJ, 65001);
    let mons: Vec<_> =
        MONS.iter().map(|a| establish(&mut s, *a, 65002)).collect();
    s.flush();
    s.take_outputs();

    s.on_frame(inj.0, inj.1, &announce("192.0.2.0/24"));
    s.on_frame(inj.0, inj.1, &announce("198.51.100.0/24"));
    s.flush();
    let outs = s.take_outputs();
    let bufs: Vec<Bytes> = mons.iter().flat_map(|m| sent(&outs, *m)).collect();
    assert_eq!(bufs.len(), 3, "one buffer per monitor: {outs:?}");
    for b in &bufs[1..] {
        assert_eq!(b.as_ptr(), bufs[0].as_ptr(), "shared, not re-encoded");
    }
    for m in &mons {
        let (ann, wd) = nlri(&outs, *m);
        assert_eq!(ann, ["192.0.2.0/24", "198.51.100.0/24"]);
        assert!(wd.is_empty());
    }
    assert!(nlri(&outs, inj).0.is_empty(), "not sent back to its source");
    let st = s.peer_status();
    assert!(
        st.iter()
            .filter(|p| p.remote_as == 65002)
            .all(|p| p.prefixes_advertised == 2),
        "{st:?}"
    );
}

/// A monitor whose session comes up after the group has sent gets the
/// full table on its own, then shares the group's later UPDATEs; a
/// withdrawal it never saw announced is not sent to it (its Adj-RIB-Out
/// differs from the others' until then).
#[test]
fn late_joiner_gets_the_full_table_then_joins() {
    let mut s = transit(&MONS);
    let inj = establish(&mut s, INJ, 65001);
    let early: Vec<_> = MONS[..2]
        .iter()
        .map(|a| establish(&mut s, *a, 65002))
        .collect();
    s.on_frame(inj.0, inj.1, &announce("192.0.2.0/24"));
    s.on_frame(inj.0, inj.1, &announce("198.51.100.0/24"));
    s.flush();
    s.take_outputs();

    // Withdrawn while the last monitor comes up, before the next export.
    s.on_frame(inj.0, inj.1, &withdraw("198.51.100.0/24"));
    let late = establish(&mut s, MONS[2], 65002);
    let outs = s.take_outputs();
    let ups = updates_to(&outs, late);
    assert_eq!(nlri(&outs, late).0, ["192.0.2.0/24"], "full table: {ups:?}");
    assert!(ups.iter().any(|u| u.end_of_rib_family().is_some()));

    s.flush();
    let outs = s.take_outputs();
    for m in &early {
        assert_eq!(nlri(&outs, *m).1, ["198.51.100.0/24"]);
    }
    assert!(sent(&outs, late).is_empty(), "never saw it: {outs:?}");

    s.on_frame(inj.0, inj.1, &announce("203.0.113.0/24"));
    s.flush();
    let outs = s.take_outputs();
    let all: Vec<_> = early.iter().chain([&late]).collect();
    let first = sent(&outs, *all[0]);
    assert_eq!(first.len(), 1);
    for m in &all {
        assert_eq!(nlri(&outs, **m).0, ["203.0.113.0/24"]);
        assert_eq!(sent(&outs, **m)[0].as_ptr(), first[0].as_ptr());
    }
}

fn rr_client(addr: [u8; 4]) -> PeerCfg {
    let mut c = peer(addr, 65000);
    c.policy.rr_client = true;
    c.policy.cluster_id = Some(Ipv4Addr::new(10, 0, 0, 1));
    c
}

/// Route-reflector clients form one group; a route one of them sent is
/// reflected to the others and never back to it (split horizon is the
/// per-member part of a group's export).
#[test]
fn reflected_route_skips_its_source_within_the_group() {
    let mut s = speaker(MONS.iter().map(|a| rr_client(*a)).collect());
    s.take_outputs();
    let c: Vec<_> = MONS.iter().map(|a| establish(&mut s, *a, 65000)).collect();
    s.flush();
    s.take_outputs();

    s.on_frame(c[0].0, c[0].1, &announce("192.0.2.0/24"));
    s.flush();
    let outs = s.take_outputs();
    assert!(sent(&outs, c[0]).is_empty(), "not back to its source");
    for m in &c[1..] {
        assert_eq!(nlri(&outs, *m).0, ["192.0.2.0/24"]);
    }

    // The source withdraws: only those that had it get the withdrawal.
    s.on_frame(c[0].0, c[0].1, &withdraw("192.0.2.0/24"));
    s.flush();
    let outs = s.take_outputs();
    assert!(sent(&outs, c[0]).is_empty());
    for m in &c[1..] {
        assert_eq!(nlri(&outs, *m).1, ["192.0.2.0/24"]);
    }
}
