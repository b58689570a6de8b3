//! Framing and header errors (RFC 4271 6.1), OPEN errors (6.2), RFC 9072
//! decode, capability negotiation and UPDATE packing.

use bgp_wire::*;
use bytes::BytesMut;

fn header(len: u16, t: u8) -> Vec<u8> {
    let mut b = vec![0xff; 16];
    b.extend_from_slice(&len.to_be_bytes());
    b.push(t);
    b
}

fn notif(e: &DecodeError) -> (u8, u8, Vec<u8>) {
    let n = e.to_notification();
    (n.code, n.subcode, n.data)
}

#[test]
fn frame_len_finds_boundaries_and_checks_headers() {
    let ka = header(19, 4);
    assert_eq!(frame_len(&ka[..10], false), Ok(None));
    assert_eq!(frame_len(&ka, false), Ok(Some(19)));
    let mut two = ka.clone();
    two.extend_from_slice(&ka);
    assert_eq!(frame_len(&two, false), Ok(Some(19)));
    let mut bad = ka.clone();
    bad[3] = 0;
    assert_eq!(notif(&frame_len(&bad, false).unwrap_err()), (1, 1, vec![]));
    // Bad length: data is the length field.
    let e = frame_len(&header(20, 4), false).unwrap_err();
    assert_eq!(notif(&e), (1, 2, vec![0, 20]));
    let e = frame_len(&header(5000, 2), false).unwrap_err();
    assert_eq!(notif(&e), (1, 2, vec![0x13, 0x88]));
    // RFC 8654: 5000 is fine for UPDATE with extended messages, not OPEN.
    assert_eq!(frame_len(&header(5000, 2), true), Ok(None));
    assert!(frame_len(&header(5000, 1), true).is_err());
    let e = frame_len(&header(19, 9), false).unwrap_err();
    assert_eq!(notif(&e), (1, 3, vec![9]));
}

/// An OPEN with the given fixed fields and raw optional parameters.
fn open(version: u8, hold: u16, id: [u8; 4], params: &[u8]) -> Vec<u8> {
    let mut b = header((29 + params.len()) as u16, 1);
    b.push(version);
    b.extend_from_slice(&65001u16.to_be_bytes());
    b.extend_from_slice(&hold.to_be_bytes());
    b.extend_from_slice(&id);
    b.push(params.len() as u8);
    b.extend_from_slice(params);
    b
}

#[test]
fn open_errors_map_to_rfc4271_notifications() {
    let cxt = DecodeCxt::default();
    let d = |b: Vec<u8>| Message::decode(&b, &cxt).unwrap_err();
    assert_eq!(
        notif(&d(open(3, 90, [1, 1, 1, 1], &[]))),
        (2, 1, vec![0, 4])
    );
    assert_eq!(notif(&d(open(4, 2, [1, 1, 1, 1], &[]))).0, 2);
    assert_eq!(notif(&d(open(4, 1, [1, 1, 1, 1], &[]))).1, 6);
    assert_eq!(notif(&d(open(4, 90, [0, 0, 0, 0], &[]))).1, 3);
    assert_eq!(notif(&d(open(4, 90, [1, 1, 1, 1], &[1, 0]))).1, 4);
    assert_eq!(notif(&d(open(4, 90, [1, 1, 1, 1], &[2, 5, 1]))).1, 0);
}

#[test]
fn rfc9072_extended_parameters_decode() {
    // Non-Ext OP Len 255, type 255, ext length 9, param type 2 with a
    // 2-octet length 6: MP IPv6 unicast + route refresh.
    let mut b = header(0, 1);
    b.extend_from_slice(&[4, 0xfd, 0xe9, 0, 90, 1, 1, 1, 1, 255, 255, 0, 9]);
    b.extend_from_slice(&[2, 0, 6, 1, 4, 0, 2, 0, 1]);
    let len = b.len() as u16;
    b[16..18].copy_from_slice(&len.to_be_bytes());
    let Message::Open(o) = Message::decode(&b, &DecodeCxt::default()).unwrap()
    else {
        panic!()
    };
    assert_eq!(o.families(), vec![Family::IPV6_UNICAST]);
    // Too many capabilities for 255 octets: we encode in RFC 9072 form.
    let caps = (0..70u8)
        .map(|i| Capability::Unknown {
            code: 200,
            value: vec![i; 2],
        })
        .collect();
    let big = Message::Open(OpenMsg::new(
        65001,
        90,
        "1.1.1.1".parse().unwrap(),
        caps,
    ));
    let bytes = big.to_bytes(&DecodeCxt::default()).unwrap();
    assert_eq!(bytes[28], 255);
    assert_eq!(Message::decode(&bytes, &DecodeCxt::default()).unwrap(), big);
}

#[test]
fn negotiate_derives_both_directions() {
    let id = "1.1.1.1".parse().unwrap();
    let ap = |mode| {
        Capability::AddPath(vec![AddPathFamily {
            family: Family::IPV4_UNICAST,
            mode,
        }])
    };
    let local = OpenMsg::new(
        65001,
        90,
        id,
        vec![
            Capability::FourOctetAs(65001),
            ap(AddPathMode::Receive),
            Capability::ExtendedMessage,
        ],
    );
    let remote = OpenMsg::new(
        65002,
        90,
        id,
        vec![Capability::FourOctetAs(65002), ap(AddPathMode::Both)],
    );
    let (rx, tx) = negotiate(&local, &remote);
    assert!(rx.four_octet_as && tx.four_octet_as);
    assert!(rx.add_path.contains(Family::IPV4_UNICAST));
    assert!(!tx.add_path.contains(Family::IPV4_UNICAST));
    assert!(!rx.extended_msg, "needs both sides");
}

fn attrs() -> PathAttrs {
    PathAttrs {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::from_sequence(&[65001])),
        ..PathAttrs::default()
    }
}

/// Splits a buffer of back-to-back messages and decodes each.
fn split(mut b: &[u8], cxt: &DecodeCxt) -> Vec<UpdateMsg> {
    let mut v = Vec::new();
    while let Some(n) = frame_len(b, cxt.extended_msg).unwrap() {
        assert!(n <= cxt.max_len());
        let Message::Update(u) = Message::decode(&b[..n], cxt).unwrap() else {
            panic!()
        };
        v.push(u);
        b = &b[n..];
    }
    assert!(b.is_empty());
    v
}

#[test]
fn pack_reach_fills_messages() {
    let cxt = DecodeCxt::four_octet();
    let nlri: Vec<Nlri> = (0..5000u32)
        .map(|i| {
            Nlri::new(
                format!("10.{}.{}.0/24", i / 256, i % 256).parse().unwrap(),
            )
        })
        .collect();
    let mut out = BytesMut::new();
    let nh = NextHop::V4("192.0.2.1".parse().unwrap());
    let n =
        pack_reach(Family::IPV4_UNICAST, &attrs(), nh, &nlri, &cxt, &mut out)
            .unwrap();
    let msgs = split(&out, &cxt);
    assert_eq!(msgs.len(), n);
    // 4 octets per /24; 4096 - 23 - attrs(4 + 9 + 7 = 20) = 4053 -> 1013 per message.
    assert_eq!(n, 5000usize.div_ceil(1013));
    let got: Vec<Nlri> = msgs.iter().flat_map(|m| m.nlri.clone()).collect();
    assert_eq!(got, nlri);
    assert!(msgs.iter().all(|m| m.verdict() == Verdict::Accept));
    // Extended messages: far fewer messages.
    let ext = DecodeCxt {
        extended_msg: true,
        ..cxt
    };
    let mut out = BytesMut::new();
    let n2 =
        pack_reach(Family::IPV4_UNICAST, &attrs(), nh, &nlri, &ext, &mut out)
            .unwrap();
    assert_eq!(n2, 1);
    // IPv6 via MP_REACH.
    let v6: Vec<Nlri> = (0..3000u32)
        .map(|i| Nlri::new(format!("2001:db8:{i:x}::/48").parse().unwrap()))
        .collect();
    let nh6 = NextHop::V6 {
        global: "2001:db8::1".parse().unwrap(),
        link_local: None,
    };
    let mut out = BytesMut::new();
    pack_reach(Family::IPV6_UNICAST, &attrs(), nh6, &v6, &cxt, &mut out)
        .unwrap();
    let got: Vec<Nlri> = split(&out, &cxt)
        .into_iter()
        .flat_map(|m| m.mp_reach.unwrap().nlri)
        .collect();
    assert_eq!(got, v6);
}

#[test]
fn pack_unreach_round_trips() {
    let cxt = DecodeCxt::four_octet();
    let nlri: Vec<Nlri> = (0..3000u32)
        .map(|i| {
            Nlri::new(
                format!("10.{}.{}.0/24", i / 256, i % 256).parse().unwrap(),
            )
        })
        .collect();
    let mut out = BytesMut::new();
    pack_unreach(Family::IPV4_UNICAST, &nlri, &cxt, &mut out).unwrap();
    let got: Vec<Nlri> = split(&out, &cxt)
        .into_iter()
        .flat_map(|m| m.withdrawn)
        .collect();
    assert_eq!(got, nlri);
}
