//! RFC 4724 4.1 restarting speaker: nothing is advertised until every
//! peer's End-of-RIB (or the Selection_Deferral_Timer); then the table,
//! each peer's followed by End-of-RIB.

use super::*;

fn restarting_speaker(peers: Vec<PeerCfg>) -> Speaker {
    let mut s = Speaker::new(SpeakerCfg {
        router_id: Ipv4Addr::new(10, 0, 0, 1),
        restarting: true,
        select_defer: Duration::from_secs(90),
        idle_hold: Duration::from_secs(5),
    });
    let outs = s.take_outputs();
    assert!(
        outs.contains(&Output::ArmTimer(DEFER_TIMER, Duration::from_secs(90))),
        "Selection_Deferral_Timer armed at start: {outs:?}"
    );
    s.set_peers(peers);
    s.take_outputs();
    s
}

const DEFER_TIMER: TimerKey = TimerKey {
    peer: 0,
    kind: TimerKind::SelectionDeferral,
};

fn eor_v4() -> Vec<u8> {
    Message::Update(bgp_wire::UpdateMsg::end_of_rib(
        bgp_wire::Family::IPV4_UNICAST,
    ))
    .to_bytes(&DecodeCxt::four_octet())
    .unwrap()
    .to_vec()
}

/// Whether any UPDATE (End-of-RIB included) went to `to`.
fn sent_updates(outs: &[Output], to: (u32, u64)) -> bool {
    !updates_to(outs, to).is_empty()
}

#[test]
fn restarting_speaker_waits_for_every_end_of_rib_then_sends_table_and_eor() {
    let mut s = restarting_speaker(vec![
        peer([10, 0, 0, 2], 65001),
        peer([10, 0, 0, 3], 65002),
    ]);
    let a = establish(&mut s, [10, 0, 0, 2], 65001);
    let outs = s.take_outputs();
    // RFC 4724 4.1: our OPEN says "restarted" and "forwarding preserved".
    let open = sent_open(&outs, a.0).expect("OPEN to A");
    let gr = open
        .capabilities
        .iter()
        .find_map(|c| match c {
            Capability::GracefulRestart(g) => Some(g.clone()),
            _ => None,
        })
        .expect("GR capability");
    assert!(gr.restart_state && gr.families[0].forwarding_preserved);
    s.on_frame(a.0, a.1, &announce("192.0.2.0/24"));
    s.on_frame(a.0, a.1, &eor_v4());
    let b = establish(&mut s, [10, 0, 0, 3], 65002);
    s.flush();
    let outs = s.take_outputs();
    // B has not sent its End-of-RIB: nothing is advertised to anyone, not
    // even our own End-of-RIB.
    assert!(s.deferring());
    assert!(
        !sent_updates(&outs, a) && !sent_updates(&outs, b),
        "{outs:?}"
    );
    // The route is selected internally all the same.
    assert_eq!(s.rib_dump().len(), 1);

    s.on_frame(b.0, b.1, &eor_v4());
    s.flush();
    let outs = s.take_outputs();
    assert!(!s.deferring());
    assert!(outs.contains(&Output::StopTimer(DEFER_TIMER)));
    // B gets the route, then End-of-RIB as the last UPDATE.
    let ups = updates_to(&outs, b);
    assert_eq!(ups.len(), 2, "{ups:?}");
    assert_eq!(ups[0].nlri[0].prefix.to_string(), "192.0.2.0/24");
    assert!(ups[1].end_of_rib_family().is_some());
    // A (the route's source) gets only End-of-RIB.
    let ups = updates_to(&outs, a);
    assert_eq!(ups.len(), 1, "{ups:?}");
    assert!(ups[0].end_of_rib_family().is_some());

    // The restart is over: a new session's OPEN has no Restart State bit.
    s.on_closed(b.0, b.1, "reset");
    s.take_outputs();
    let (id, _) = s
        .on_accept(
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3)),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        )
        .unwrap();
    let open = sent_open(&s.take_outputs(), id).expect("new OPEN");
    assert!(open.capabilities.iter().any(|c| matches!(
        c,
        Capability::GracefulRestart(g) if !g.restart_state
            && !g.families[0].forwarding_preserved
    )));
}

#[test]
fn selection_deferral_timer_ends_the_wait_for_silent_or_absent_peers() {
    let mut s = restarting_speaker(vec![
        peer([10, 0, 0, 2], 65001),
        // Configured, but never comes back.
        peer([10, 0, 0, 3], 65002),
    ]);
    s.set_local_routes(["10.65.0.0/26".parse().unwrap()].into());
    let a = establish(&mut s, [10, 0, 0, 2], 65001);
    // A sends its End-of-RIB; the absent peer keeps the wait going.
    s.on_frame(a.0, a.1, &eor_v4());
    s.flush();
    assert!(!sent_updates(&s.take_outputs(), a));
    assert!(s.deferring());

    s.on_timer(DEFER_TIMER);
    s.flush();
    let outs = s.take_outputs();
    assert!(!s.deferring());
    let ups = updates_to(&outs, a);
    assert_eq!(ups.len(), 2, "{ups:?}");
    assert_eq!(ups[0].nlri[0].prefix.to_string(), "10.65.0.0/26");
    assert!(ups[1].end_of_rib_family().is_some());
    // From now on changes go out at once.
    s.set_local_routes(Default::default());
    s.flush();
    let ups = updates_to(&s.take_outputs(), a);
    assert!(ups.iter().any(|u| !u.withdrawn.is_empty()), "{ups:?}");
}

#[test]
fn peers_without_gr_or_restarting_themselves_are_not_waited_for() {
    let mut s = restarting_speaker(vec![
        peer([10, 0, 0, 2], 65001),
        peer([10, 0, 0, 3], 65002),
    ]);
    s.set_local_routes(["10.65.0.0/26".parse().unwrap()].into());
    // No GR capability: RFC 4724 4.1 excludes it from the wait.
    let a = establish_gr(&mut s, [10, 0, 0, 2], 65001, None);
    s.flush();
    assert!(!sent_updates(&s.take_outputs(), a));
    assert!(s.deferring());
    // Restart State bit set: it restarts too and waits for us, excluded.
    let b = establish_gr(&mut s, [10, 0, 0, 3], 65002, Some(true));
    s.flush();
    let outs = s.take_outputs();
    assert!(!s.deferring());
    for to in [a, b] {
        let ups = updates_to(&outs, to);
        assert_eq!(ups.len(), 2, "{to:?}: {ups:?}");
        assert!(ups[1].end_of_rib_family().is_some());
    }
}

#[test]
fn removing_the_last_awaited_peer_ends_the_deferral() {
    let mut s = restarting_speaker(vec![
        peer([10, 0, 0, 2], 65001),
        peer([10, 0, 0, 3], 65002),
    ]);
    let a = establish(&mut s, [10, 0, 0, 2], 65001);
    s.on_frame(a.0, a.1, &eor_v4());
    s.flush();
    assert!(s.deferring(), "10.0.0.3 is still awaited");
    s.set_peers(vec![peer([10, 0, 0, 2], 65001)]);
    s.flush();
    assert!(!s.deferring());
    assert!(sent_updates(&s.take_outputs(), a));
}

#[test]
fn end_of_rib_follows_routes_learnt_just_before_the_deferral_ends() {
    let mut s = restarting_speaker(vec![
        peer([10, 0, 0, 2], 65001),
        peer([10, 0, 0, 3], 65002),
    ]);
    let b = establish(&mut s, [10, 0, 0, 3], 65002);
    s.on_frame(b.0, b.1, &eor_v4());
    let a = establish(&mut s, [10, 0, 0, 2], 65001);
    // A's route and End-of-RIB arrive in one batch: the deferral ends
    // before the route was exported; it must still precede B's EoR.
    s.on_frame(a.0, a.1, &announce("192.0.2.0/24"));
    s.on_frame(a.0, a.1, &eor_v4());
    s.flush();
    let outs = s.take_outputs();
    assert!(!s.deferring());
    let ups = updates_to(&outs, b);
    let eor = ups.iter().position(|u| u.end_of_rib_family().is_some());
    let route = ups.iter().position(|u| !u.nlri.is_empty());
    assert!(
        matches!((route, eor), (Some(r), Some(e)) if r < e),
        "route then End-of-RIB: {ups:?}"
    );
}
