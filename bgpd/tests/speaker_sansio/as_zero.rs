//! RFC 7607: a route whose AS_PATH or AS4_PATH holds AS 0 is malformed
//! (treat-as-withdraw): it never enters the RIB nor reaches another peer,
//! and it replaces (withdraws) what the peer had sent for the prefix.

use super::*;

/// An UPDATE for `prefix` with raw AS_PATH (and optional AS4_PATH) bytes.
fn raw_update(prefix: [u8; 3], as_path: &[u8], as4: Option<&[u8]>) -> Vec<u8> {
    let mut attrs = vec![0x40, 1, 1, 0];
    attrs.extend_from_slice(as_path);
    attrs.extend_from_slice(&[0x40, 3, 4, 10, 0, 0, 2]);
    if let Some(a) = as4 {
        attrs.extend_from_slice(a);
    }
    let nlri = [24, prefix[0], prefix[1], prefix[2]];
    let mut b = vec![0xff; 16];
    let len = 19 + 2 + 2 + attrs.len() + nlri.len();
    b.extend_from_slice(&(len as u16).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(&attrs);
    b.extend_from_slice(&nlri);
    b
}

fn advertised(outs: &[Output], to: (u32, u64), prefix: &str) -> bool {
    updates_to(outs, to)
        .iter()
        .any(|u| u.nlri.iter().any(|n| n.prefix.to_string() == prefix))
}

#[test]
fn as_zero_in_as_path_is_withdrawn_not_passed_on() {
    let mut s =
        speaker(vec![peer([10, 0, 0, 2], 65001), peer([10, 0, 0, 3], 65002)]);
    let inj = establish(&mut s, [10, 0, 0, 2], 65001);
    let mon = establish(&mut s, [10, 0, 0, 3], 65002);
    s.flush();
    s.take_outputs();
    // A good route first, then the same prefix with AS_PATH [65001, 0].
    s.on_frame(inj.0, inj.1, &announce("192.0.2.0/24"));
    s.flush();
    assert!(advertised(&s.take_outputs(), mon, "192.0.2.0/24"));
    let zero = [0x40, 2, 10, 2, 2, 0, 0, 0xfd, 0xe9, 0, 0, 0, 0];
    s.on_frame(inj.0, inj.1, &raw_update([192, 0, 2], &zero, None));
    s.flush();
    let outs = s.take_outputs();
    assert!(s.is_established(inj.0), "treat-as-withdraw, no reset");
    assert!(s.rib_dump().is_empty(), "{:?}", s.rib_dump());
    assert!(!advertised(&outs, mon, "192.0.2.0/24"));
    assert!(
        updates_to(&outs, mon).iter().any(|u| u
            .withdrawn
            .iter()
            .any(|n| n.prefix.to_string() == "192.0.2.0/24")),
        "the earlier route is withdrawn from the other peer"
    );
    // Logged and shown (RFC 7606 2: errors "MUST be logged").
    let err = s.peer_status()[0].last_error.clone().unwrap_or_default();
    assert!(err.contains("AsZero"), "{err}");
}

#[test]
fn as_zero_in_as4_path_on_a_2_octet_session_is_withdrawn() {
    let mut s =
        speaker(vec![peer([10, 0, 0, 2], 65001), peer([10, 0, 0, 3], 65002)]);
    // The first peer is an OLD speaker (no 4-octet AS capability).
    let (id, conn) = s
        .on_accept(
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        )
        .unwrap();
    let open = OpenMsg::new(
        65001,
        90,
        Ipv4Addr::new(10, 0, 0, 2),
        vec![Capability::MultiProtocol(bgp_wire::Family::IPV4_UNICAST)],
    );
    let cxt = DecodeCxt::default();
    s.on_frame(id, conn, &Message::Open(open).to_bytes(&cxt).unwrap());
    s.on_frame(id, conn, &Message::Keepalive.to_bytes(&cxt).unwrap());
    assert!(s.is_established(id));
    let mon = establish(&mut s, [10, 0, 0, 3], 65002);
    s.flush();
    s.take_outputs();
    // AS_PATH [65001, AS_TRANS, AS_TRANS] + AS4_PATH [4200000009, 0].
    let as_path = [0x40, 2, 8, 2, 3, 0xfd, 0xe9, 0x5b, 0xa0, 0x5b, 0xa0];
    let as4 = [0xc0, 17, 10, 2, 2, 0xfa, 0x56, 0xea, 0x09, 0, 0, 0, 0];
    s.on_frame(id, conn, &raw_update([192, 0, 2], &as_path, Some(&as4)));
    // The same without the zero is accepted and merged: the check is
    // about AS 0, not about AS4_PATH.
    let ok4 = [0xc0, 17, 10, 2, 2, 0xfa, 0x56, 0xea, 0x09, 0, 0, 0xfd, 0xea];
    s.on_frame(id, conn, &raw_update([198, 51, 100], &as_path, Some(&ok4)));
    s.flush();
    let outs = s.take_outputs();
    assert!(!advertised(&outs, mon, "192.0.2.0/24"));
    assert!(advertised(&outs, mon, "198.51.100.0/24"));
    let ups = updates_to(&outs, mon);
    let path = &ups[0].attrs.as_path.as_ref().unwrap().segments[0].asns;
    assert_eq!(path, &vec![65000, 65001, 4_200_000_009, 65002]);
    let dump = s.rib_dump();
    assert_eq!(dump.len(), 1, "{dump:?}");
}
