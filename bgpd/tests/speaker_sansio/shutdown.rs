//! bgpd stopping for good: every Established peer gets Cease /
//! Administrative Shutdown with a shutdown communication (RFC 4486,
//! RFC 9003), then its connection closes.

use super::*;

#[test]
fn shutdown_sends_cease_admin_shutdown_with_message_to_every_peer() {
    let mut s =
        speaker(vec![peer([10, 0, 0, 2], 65001), peer([10, 0, 0, 3], 65002)]);
    let a = establish(&mut s, [10, 0, 0, 2], 65001);
    let b = establish(&mut s, [10, 0, 0, 3], 65002);
    s.flush();
    s.take_outputs();
    s.shutdown("margay bgpd 10.0.0.1 shutting down");
    let outs = s.take_outputs();
    let msg = b"margay bgpd 10.0.0.1 shutting down";
    let mut data = vec![msg.len() as u8];
    data.extend_from_slice(msg);
    let cease = Message::Notification(bgp_wire::NotificationMsg {
        code: 6,
        subcode: 2,
        data,
    })
    .to_bytes(&DecodeCxt::default())
    .unwrap();
    for (peer, conn) in [a, b] {
        let sent = outs.iter().position(|o| {
            matches!(o, Output::Send { peer: p, conn: c, bytes }
                if (*p, *c) == (peer, conn) && bytes[..] == cease[..])
        });
        let closed = outs.iter().position(|o| {
            matches!(o, Output::Close { peer: p, conn: c }
                if (*p, *c) == (peer, conn))
        });
        let (Some(sent), Some(closed)) = (sent, closed) else {
            panic!("peer {peer}: no Cease then Close: {outs:?}");
        };
        assert!(sent < closed, "the Cease goes out before the close");
        assert!(!s.is_established(peer));
    }
}
