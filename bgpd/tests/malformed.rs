//! A hand-driven peer sends raw UPDATEs: RFC 7606 errors must not reset
//! the session (treat-as-withdraw keeps it up and withdraws the route).

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

use bgp_wire::{Capability, DecodeCxt, Message, OpenMsg};
use common::{Lab, dut_yaml};
use margay_ctlproto::{Request, Response};
use margay_testkit::{require_root, wait_until};

/// An UPDATE for 10.244.9.0/24 from AS 65001 with the given ORIGIN value
/// (4-octet AS_PATH encoding).
fn update(origin: u8) -> Vec<u8> {
    let attrs: Vec<u8> = [
        &[0x40, 1, 1, origin][..],
        &[0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe9],
        &[0x40, 3, 4, 10, 0, 0, 2],
    ]
    .concat();
    let nlri = [24u8, 10, 244, 9];
    let len = 19 + 2 + 2 + attrs.len() + nlri.len();
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&(len as u16).to_be_bytes());
    m.push(2);
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    m.extend_from_slice(&attrs);
    m.extend_from_slice(&nlri);
    m
}

/// Connect from inside the peer namespace (setns on this thread only).
fn connect_from(ns_path: &std::path::Path) -> TcpStream {
    let f = File::open(ns_path).unwrap();
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    let mut last = None;
    for _ in 0..100 {
        match TcpStream::connect("10.0.0.1:179") {
            Ok(s) => return s,
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("cannot connect to bgpd: {last:?}");
}

fn read_msg(s: &mut TcpStream) -> Message {
    let mut hdr = [0u8; 19];
    s.read_exact(&mut hdr).unwrap();
    let len = usize::from(u16::from_be_bytes([hdr[16], hdr[17]]));
    let mut body = vec![0u8; len - 19];
    s.read_exact(&mut body).unwrap();
    let frame = [&hdr[..], &body].concat();
    Message::decode(&frame, &DecodeCxt::four_octet()).unwrap()
}

#[ignore = "needs root (network namespaces): scripts/test runs it as root"]
#[test]
fn malformed_origin_is_treat_as_withdraw_and_session_stays_up() {
    if !require_root(
        "malformed_origin_is_treat_as_withdraw_and_session_stays_up",
    ) {
        return;
    }
    let mut lab = Lab::new("bgz").unwrap();
    lab.start_bgpd(&dut_yaml("10.0.0.2", 65001, ""), &[])
        .unwrap();
    let ns = lab.peer.path();
    let peer = std::thread::spawn(move || {
        let mut s = connect_from(&ns);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let open = OpenMsg::new(
            65001,
            0,
            Ipv4Addr::new(10, 0, 0, 2),
            vec![
                Capability::MultiProtocol(bgp_wire::Family::IPV4_UNICAST),
                Capability::FourOctetAs(65001),
            ],
        );
        s.write_all(
            &Message::Open(open).to_bytes(&DecodeCxt::default()).unwrap(),
        )
        .unwrap();
        assert!(matches!(read_msg(&mut s), Message::Open(_)));
        assert!(matches!(read_msg(&mut s), Message::Keepalive));
        s.write_all(
            &Message::Keepalive.to_bytes(&DecodeCxt::default()).unwrap(),
        )
        .unwrap();
        s
    });
    let mut s = peer.join().unwrap();
    lab.wait_established("raw peer");
    s.write_all(&update(0)).unwrap();
    let ok = wait_until(Duration::from_secs(10), || {
        lab.rib_entry("10.244.9.0/24").is_some()
    });
    assert!(ok, "valid UPDATE not accepted: {}", lab.bgpd_log());
    // ORIGIN 5 is undefined: RFC 7606 7.1 treat-as-withdraw.
    s.write_all(&update(5)).unwrap();
    let ok = wait_until(Duration::from_secs(10), || {
        lab.rib_entry("10.244.9.0/24").is_none()
    });
    assert!(
        ok,
        "malformed UPDATE did not withdraw the route: {}",
        lab.bgpd_log()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        lab.peer_state().as_deref(),
        Some("Established"),
        "{}",
        lab.bgpd_log()
    );
    match lab.query(&Request::Peers) {
        Some(Response::Peers { peers }) => {
            let e = peers[0].last_error.clone().unwrap_or_default();
            assert!(e.contains("UPDATE error"), "{e}");
        }
        r => panic!("{r:?}"),
    }
    // And the session still carries routes.
    s.write_all(&update(0)).unwrap();
    assert!(wait_until(Duration::from_secs(10), || lab
        .rib_entry("10.244.9.0/24")
        .is_some()));
}
