use std::net::Ipv4Addr;
use std::time::Duration;

use super::*;
use bgp_wire::iana::AS_TRANS;
use bgp_wire::{
    Capability, CeaseSubcode, ErrorCode, FsmSubcode, NotificationMsg, OpenMsg,
    OpenSubcode,
};

pub(crate) fn cfg(local_as: u32, remote_as: u32) -> FsmConfig {
    FsmConfig {
        local_as,
        remote_as,
        router_id: Ipv4Addr::new(10, 0, 0, 1),
        hold_time: 90,
        keepalive: 30,
        connect_retry: Duration::from_secs(5),
        idle_hold: Duration::from_secs(5),
        caps: vec![Capability::FourOctetAs(local_as)],
    }
}

pub(crate) fn open(asn: u32, hold: u16, id: [u8; 4]) -> OpenMsg {
    OpenMsg::new(
        asn,
        hold,
        Ipv4Addr::from(id),
        vec![Capability::FourOctetAs(asn)],
    )
}

fn notif(actions: &[Action]) -> Option<NotificationMsg> {
    actions.iter().find_map(|a| match a {
        Action::SendNotification(_, n) => Some(n.clone()),
        _ => None,
    })
}

/// Drive an FSM to OpenSent over an outgoing connection; returns the id.
fn to_opensent(f: &mut Fsm) -> ConnId {
    let out = f.handle(Event::ManualStart { passive: false });
    let Some(Action::Connect(c)) = out
        .iter()
        .find(|a| matches!(a, Action::Connect(_)))
        .cloned()
    else {
        panic!("no Connect in {out:?}");
    };
    assert_eq!(f.state(), State::Connect);
    let out = f.handle(Event::TcpConnected(c));
    assert!(out.iter().any(|a| matches!(a, Action::SendOpen(..))));
    assert!(out.contains(&Action::ArmTimer(Timer::Hold, LARGE_HOLD)));
    assert_eq!(f.state(), State::OpenSent);
    c
}

fn established(f: &mut Fsm, peer_hold: u16) -> Vec<Action> {
    to_opensent(f);
    let out =
        f.handle(Event::OpenReceived(open(65001, peer_hold, [10, 0, 0, 2])));
    assert_eq!(f.state(), State::OpenConfirm, "{out:?}");
    let mut all = out;
    all.extend(f.handle(Event::KeepaliveReceived));
    assert_eq!(f.state(), State::Established);
    all
}

#[test]
fn active_open_reaches_established_with_negotiated_hold() {
    let mut f = Fsm::new(cfg(65000, 65001), ConnIdSource::new());
    let out = established(&mut f, 30);
    // RFC 4271 4.2: min(90, 30) = 30; keepalive min(30, 30/3) = 10.
    assert!(
        out.contains(&Action::ArmTimer(Timer::Hold, Duration::from_secs(30)))
    );
    assert!(out.contains(&Action::ArmTimer(
        Timer::Keepalive,
        Duration::from_secs(10)
    )));
    let neg = out
        .iter()
        .find_map(|a| match a {
            Action::Established(n) => Some(n.clone()),
            _ => None,
        })
        .expect("Established action");
    assert_eq!(
        (neg.hold_time, neg.keepalive, neg.remote_as),
        (30, 10, 65001)
    );
    assert!(!neg.ibgp && neg.four_octet_as);
    // Keepalive timer: send and re-arm.
    let out = f.handle(Event::TimerExpired(Timer::Keepalive));
    assert!(matches!(out[0], Action::SendKeepalive(_)));
    assert_eq!(
        out[1],
        Action::ArmTimer(Timer::Keepalive, Duration::from_secs(10))
    );
    // UPDATE restarts the hold timer.
    let out = f.handle(Event::UpdateReceived);
    assert_eq!(
        out,
        vec![Action::ArmTimer(Timer::Hold, Duration::from_secs(30))]
    );
}

#[test]
fn zero_hold_time_disables_timers() {
    let mut f = Fsm::new(cfg(65000, 65001), ConnIdSource::new());
    let out = established(&mut f, 0);
    assert!(
        !out.iter()
            .any(|a| matches!(a, Action::ArmTimer(Timer::Keepalive, _)))
    );
    assert!(out.contains(&Action::StopTimer(Timer::Hold)));
}

/// An OPEN the decoder rejects (RFC 4271 6.2: version, a Hold Time of
/// one or two seconds; RFC 6286 2.2: a zero BGP Identifier) reaches the
/// FSM as the decode error's NOTIFICATION, as `Speaker::on_frame` feeds
/// it: sent, and Idle until the idle hold timer.
#[test]
fn open_rejected_by_the_decoder_is_sent_and_goes_idle() {
    let bad = |version: u8, hold: u16, id: [u8; 4]| {
        let mut o = bgp_wire::OpenMsg::new(65001, hold, id.into(), vec![]);
        o.version = version;
        let cxt = bgp_wire::DecodeCxt::default();
        let bytes = bgp_wire::Message::Open(o).to_bytes(&cxt).unwrap();
        NotificationMsg::from(
            bgp_wire::Message::decode(&bytes, &cxt).unwrap_err(),
        )
    };
    let cases = [
        (
            bad(3, 90, [1, 1, 1, 1]),
            OpenSubcode::UnsupportedVersionNumber,
            vec![0, 4],
        ),
        (
            bad(4, 1, [1, 1, 1, 1]),
            OpenSubcode::UnacceptableHoldTime,
            vec![],
        ),
        (
            bad(4, 2, [1, 1, 1, 1]),
            OpenSubcode::UnacceptableHoldTime,
            vec![],
        ),
        (
            bad(4, 90, [0, 0, 0, 0]),
            OpenSubcode::BadBgpIdentifier,
            vec![],
        ),
    ];
    for (err, sub, data) in cases {
        let mut f = Fsm::new(cfg(65000, 65001), ConnIdSource::new());
        to_opensent(&mut f);
        let out = f.handle(Event::MessageError(err));
        let n = notif(&out).expect("notification");
        assert_eq!(
            (n.code, n.subcode, n.data.clone()),
            (ErrorCode::Open as u8, sub as u8, data)
        );
        assert_eq!(f.state(), State::Idle);
        assert!(out.contains(&Action::ArmTimer(
            Timer::IdleHold,
            Duration::from_secs(5)
        )));
    }
}

#[test]
fn open_checks_version_as_and_identifier() {
    let check = |local: u32, remote: u32, o: OpenMsg| {
        let f = Fsm::new(cfg(local, remote), ConnIdSource::new());
        f.check_open(&o)
    };
    let n = check(65000, 65002, open(65001, 90, [1, 1, 1, 1])).unwrap_err();
    assert_eq!(n.subcode, OpenSubcode::BadPeerAs as u8);
    // iBGP with our own identifier (RFC 6286 2.2); eBGP may share it.
    let n = check(65000, 65000, open(65000, 90, [10, 0, 0, 1])).unwrap_err();
    assert_eq!(n.subcode, OpenSubcode::BadBgpIdentifier as u8);
    assert!(check(65000, 65001, open(65001, 90, [10, 0, 0, 1])).is_ok());
    // RFC 6793: a 4-octet AS arrives as AS_TRANS plus the capability.
    let o = open(4_200_000_001, 90, [1, 1, 1, 1]);
    assert_eq!(o.my_as, AS_TRANS);
    assert_eq!(
        check(65000, 4_200_000_001, o).unwrap().remote_as,
        4_200_000_001
    );
    // Without the capability the 2-octet field is the AS.
    let mut o = open(65001, 90, [1, 1, 1, 1]);
    o.capabilities.clear();
    let neg = check(65000, 65001, o).unwrap();
    assert!(!neg.four_octet_as);
}

#[test]
fn our_open_uses_as_trans_for_4_octet_as() {
    let f = Fsm::new(cfg(4_200_000_000, 65001), ConnIdSource::new());
    let p = f.open_msg();
    assert_eq!(p.my_as, AS_TRANS);
    assert_eq!(p.capabilities, [Capability::FourOctetAs(4_200_000_000)]);
    assert_eq!(p.asn(), 4_200_000_000);
    let f = Fsm::new(cfg(65000, 65001), ConnIdSource::new());
    assert_eq!(f.open_msg().my_as, 65000);
}

#[test]
fn passive_start_waits_and_never_connects() {
    let mut f = Fsm::new(cfg(65000, 65001), ConnIdSource::new());
    let out = f.handle(Event::ManualStart { passive: true });
    assert_eq!(f.state(), State::Active);
    assert!(!out.iter().any(|a| matches!(a, Action::Connect(_))));
    let out = f.handle(Event::TimerExpired(Timer::ConnectRetry));
    assert!(!out.iter().any(|a| matches!(a, Action::Connect(_))));
    assert_eq!(f.state(), State::Active);
    let out = f.handle(Event::TcpConnected(77));
    assert!(out.iter().any(|a| matches!(a, Action::SendOpen(77, _))));
    assert_eq!(f.state(), State::OpenSent);
    assert!(!f.outgoing());
}

#[test]
fn connect_failure_goes_active_then_retries() {
    let mut f = Fsm::new(cfg(65000, 65001), ConnIdSource::new());
    let out = f.handle(Event::ManualStart { passive: false });
    let c = f.conn().unwrap();
    assert!(out.contains(&Action::Connect(c)));
    let out = f.handle(Event::TcpFailed(c));
    assert_eq!(f.state(), State::Active);
    assert!(out.contains(&Action::ArmTimer(
        Timer::ConnectRetry,
        Duration::from_secs(5)
    )));
    let out = f.handle(Event::TimerExpired(Timer::ConnectRetry));
    assert_eq!(f.state(), State::Connect);
    let c2 = f.conn().unwrap();
    assert_ne!(c, c2);
    assert!(out.contains(&Action::Connect(c2)));
    // A failure report for the old attempt is ignored.
    assert!(f.handle(Event::TcpFailed(c)).is_empty());
}

#[test]
fn hold_expiry_sends_notification_and_restarts_after_idle_hold() {
    let mut f = Fsm::new(cfg(65000, 65001), ConnIdSource::new());
    established(&mut f, 90);
    let out = f.handle(Event::TimerExpired(Timer::Hold));
    let n = notif(&out).unwrap();
    assert_eq!((n.code, n.subcode), (ErrorCode::HoldTimerExpired as u8, 0));
    assert!(out.contains(&Action::Down {
        reason: DownReason::HoldTimerExpired,
        established: true
    }));
    assert_eq!(f.state(), State::Idle);
    let out = f.handle(Event::TimerExpired(Timer::IdleHold));
    assert_eq!(f.state(), State::Connect);
    assert!(out.iter().any(|a| matches!(a, Action::Connect(_))));
}

#[test]
fn manual_stop_sends_shutdown_communication_and_stays_idle() {
    let mut f = Fsm::new(cfg(65000, 65001), ConnIdSource::new());
    established(&mut f, 90);
    let out = f.handle(Event::ManualStop {
        message: Some("upgrade".into()),
        subcode: CeaseSubcode::AdminShutdown,
    });
    let n = notif(&out).unwrap();
    assert_eq!(
        n,
        NotificationMsg::shutdown(CeaseSubcode::AdminShutdown, "upgrade")
    );
    assert_eq!(n.shutdown_message(), Some("upgrade"));
    assert!(out.contains(&Action::Down {
        reason: DownReason::AdminStop,
        established: true
    }));
    assert!(
        !out.iter()
            .any(|a| matches!(a, Action::ArmTimer(Timer::IdleHold, _)))
    );
    assert!(f.handle(Event::TimerExpired(Timer::IdleHold)).is_empty());
}

/// RFC 9003: without a shutdown communication the Cease carries no data
/// (not a zero length octet).
#[test]
fn manual_stop_without_message_sends_a_bare_cease() {
    for message in [None, Some(String::new())] {
        let mut f = Fsm::new(cfg(65000, 65001), ConnIdSource::new());
        established(&mut f, 90);
        let out = f.handle(Event::ManualStop {
            message,
            subcode: CeaseSubcode::PeerDeconfigured,
        });
        let n = notif(&out).unwrap();
        assert_eq!(n, NotificationMsg::cease(CeaseSubcode::PeerDeconfigured));
        assert!(n.data.is_empty());
    }
}

#[test]
fn unexpected_messages_are_fsm_errors() {
    let mut f = Fsm::new(cfg(65000, 65001), ConnIdSource::new());
    to_opensent(&mut f);
    let out = f.handle(Event::KeepaliveReceived);
    let n = notif(&out).unwrap();
    assert_eq!(
        (n.code, n.subcode),
        (ErrorCode::Fsm as u8, FsmSubcode::UnexpectedInOpenSent as u8)
    );
    let mut f = Fsm::new(cfg(65000, 65001), ConnIdSource::new());
    established(&mut f, 90);
    let out = f.handle(Event::OpenReceived(open(65001, 90, [1, 1, 1, 1])));
    let n = notif(&out).unwrap();
    assert_eq!(n.subcode, FsmSubcode::UnexpectedInEstablished as u8);
    assert!(out.iter().any(|a| matches!(
        a,
        Action::Down {
            established: true,
            ..
        }
    )));
}

#[test]
fn tcp_failure_in_established_is_graceful_notification_is_not() {
    let mut f = Fsm::new(cfg(65000, 65001), ConnIdSource::new());
    established(&mut f, 90);
    let c = f.conn().unwrap();
    let out = f.handle(Event::TcpFailed(c));
    let down = out.iter().find_map(|a| match a {
        Action::Down { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert!(down.unwrap().is_graceful());
    let mut f = Fsm::new(cfg(65000, 65001), ConnIdSource::new());
    established(&mut f, 90);
    let out = f.handle(Event::NotificationReceived(NotificationMsg::cease(
        CeaseSubcode::AdminShutdown,
    )));
    let down = out.iter().find_map(|a| match a {
        Action::Down { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert!(!down.unwrap().is_graceful());
    assert!(notif(&out).is_none(), "never answer a NOTIFICATION");
}
