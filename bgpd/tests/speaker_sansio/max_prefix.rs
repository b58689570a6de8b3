//! Max-prefix back-off: after Cease / Maximum Number of Prefixes Reached
//! (RFC 4486) the session is held Idle, refusing the peer, until its
//! restart interval (`margay.io/max-prefixes-restart`) or a reset.

use margay_bgpd::speaker::TimerKind as Kind;

use super::*;

const PEER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
const LOCAL_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));

fn limited(restart: Option<Duration>) -> Speaker {
    let mut p = peer([10, 0, 0, 2], 65001);
    p.max_prefixes = Some(1);
    p.max_prefixes_restart = restart;
    speaker(vec![p])
}

/// Establish, then send two prefixes against a limit of one.
fn exceed(s: &mut Speaker) -> Vec<Output> {
    let c = establish(s, [10, 0, 0, 2], 65001);
    s.on_frame(c.0, c.1, &announce("192.0.2.0/24"));
    s.on_frame(c.0, c.1, &announce("198.51.100.0/24"));
    s.flush();
    let outs = s.take_outputs();
    let cease = Message::Notification(bgp_wire::NotificationMsg {
        code: 6,
        subcode: 1,
        data: vec![0, 1, 1, 0, 0, 0, 1],
    })
    .to_bytes(&DecodeCxt::default())
    .unwrap();
    assert!(
        outs.iter().any(|o| matches!(o, Output::Send { bytes, .. } if bytes[..] == cease[..])),
        "Cease / max prefixes sent: {outs:?}"
    );
    assert!(!s.is_established(c.0));
    assert!(s.rib_dump().is_empty(), "routes go with the session");
    outs
}

/// An accepted connection from the peer: whether we answered with OPEN.
fn accept_gets_open(s: &mut Speaker) -> bool {
    let (id, _) = s.on_accept(PEER_IP, LOCAL_IP).expect("configured");
    sent_open(&s.take_outputs(), id).is_some()
}

fn idle_hold_armed(outs: &[Output]) -> bool {
    outs.iter().any(|o| {
        matches!(o, Output::ArmTimer(k, _)
            if matches!(k.kind, Kind::Fsm(_, margay_bgpd::fsm::Timer::IdleHold)))
    })
}

#[test]
fn max_prefix_cease_holds_the_session_idle_until_reset() {
    let mut s = limited(None);
    let outs = exceed(&mut s);
    assert!(!idle_hold_armed(&outs), "no automatic restart: {outs:?}");
    assert!(!outs.iter().any(
        |o| matches!(o, Output::ArmTimer(k, _) if k.kind == Kind::HeldRestart)
    ));
    let st = &s.peer_status()[0];
    assert_eq!(st.state, "Idle");
    let held = st.held_idle.clone().expect("held Idle is shown");
    assert!(held.reason.contains("maximum prefixes"), "{held:?}");
    assert_eq!(held.restart_unix, None);
    assert_eq!(s.held_idle_count(), 1);
    assert_eq!(s.counters.max_prefix_ceases, 1);
    // The peer reconnects at once: refused, no OPEN (this was the loop).
    for _ in 0..3 {
        assert!(!accept_gets_open(&mut s));
    }
    // An unknown peer cannot be reset; the real one can, by address.
    assert!(s.reset_peer("10.9.9.9").is_err());
    let done = s.reset_peer("10.0.0.2").unwrap();
    assert!(done.contains("started"), "{done}");
    assert!(s.peer_status()[0].held_idle.is_none());
    assert_eq!(s.held_idle_count(), 0);
    assert!(accept_gets_open(&mut s));
}

#[test]
fn max_prefix_restart_interval_ends_the_hold() {
    let mut s = limited(Some(Duration::from_secs(30)));
    let outs = exceed(&mut s);
    let (key, d) = outs
        .iter()
        .find_map(|o| match o {
            Output::ArmTimer(k, d) if k.kind == Kind::HeldRestart => {
                Some((*k, *d))
            }
            _ => None,
        })
        .expect("restart timer armed");
    assert_eq!(d, Duration::from_secs(30), "{outs:?}");
    let held = s.peer_status()[0].held_idle.clone().unwrap();
    assert!(held.restart_unix.is_some());
    assert!(!accept_gets_open(&mut s), "still held");
    s.on_timer(key);
    assert!(s.peer_status()[0].held_idle.is_none());
    assert!(accept_gets_open(&mut s));
}

/// The core reads no clock: `since` and the held-Idle restart time are
/// the time of the latest `tick`, so a replayed event log gives the same
/// status.
#[test]
fn status_times_come_from_tick() {
    let t0 = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let mut s = limited(Some(Duration::from_secs(30)));
    s.tick(t0);
    exceed(&mut s);
    let st = &s.peer_status()[0];
    assert_eq!(st.since_unix, 1_000_000);
    let held = st.held_idle.clone().unwrap();
    assert_eq!(held.restart_unix, Some(1_000_030));
    s.tick(t0 + Duration::from_secs(30));
    assert!(s.reset_peer("10.0.0.2").unwrap().contains("started"));
    assert_eq!(s.peer_status()[0].since_unix, 1_000_030);
}

#[test]
fn reset_of_an_established_session_sends_admin_reset_and_reconnects() {
    let mut s = limited(None);
    let c = establish(&mut s, [10, 0, 0, 2], 65001);
    s.take_outputs();
    let done = s.reset_peer("Global_10.0.0.2").unwrap();
    assert!(done.contains("Administrative Reset"), "{done}");
    let outs = s.take_outputs();
    let reset = Message::Notification(bgp_wire::NotificationMsg {
        code: 6,
        subcode: 4,
        data: vec![],
    })
    .to_bytes(&DecodeCxt::default())
    .unwrap();
    assert!(outs.iter().any(
        |o| matches!(o, Output::Send { bytes, .. } if bytes[..] == reset[..])
    ));
    assert!(!s.is_established(c.0));
    assert!(s.peer_status()[0].held_idle.is_none());
    // Not held: the peer's next connection is answered.
    assert!(accept_gets_open(&mut s));
}
