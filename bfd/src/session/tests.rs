//! The Asynchronous-mode state machine on its own: two sessions wired
//! back to back, timers fired by hand.

use super::*;

fn cfg(ms: u64, mult: u8) -> SessionCfg {
    SessionCfg {
        min_interval: Duration::from_millis(ms),
        multiplier: mult,
    }
}

fn sent(acts: &[Action]) -> Vec<ControlPacket> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Send(p) => Some(*p),
            _ => None,
        })
        .collect()
}

fn changes(acts: &[Action]) -> Vec<(State, State, Diag)> {
    acts.iter()
        .filter_map(|a| match a {
            Action::StateChanged { from, to, diag } => {
                Some((*from, *to, *diag))
            }
            _ => None,
        })
        .collect()
}

fn armed(acts: &[Action], t: Timer) -> Option<Duration> {
    acts.iter().rev().find_map(|a| match a {
        Action::Arm(k, d) if *k == t => Some(*d),
        _ => None,
    })
}

/// Deliver every packet in `acts` to `to`; returns its actions.
fn deliver(acts: &[Action], to: &mut Session) -> Vec<Action> {
    sent(acts)
        .into_iter()
        .flat_map(|p| to.handle(Event::Rx(p)))
        .collect()
}

/// Two sessions brought Up by the three-way handshake.
fn up_pair() -> (Session, Session) {
    let mut a = Session::new(cfg(300, 3), 11);
    let mut b = Session::new(cfg(100, 5), 22);
    let a0 = a.start();
    let _ = b.start();
    // A's Down reaches B: B goes Init.
    let b1 = deliver(&a0, &mut b);
    assert_eq!(changes(&b1), [(State::Down, State::Init, Diag::None)]);
    // B's next periodic packet (Init) reaches A: A goes Up.
    let b2 = b.handle(Event::Expired(Timer::Tx));
    assert_eq!(sent(&b2)[0].state, State::Init);
    assert_eq!(sent(&b2)[0].your_discr, 11);
    let a1 = deliver(&b2, &mut a);
    assert_eq!(changes(&a1), [(State::Down, State::Up, Diag::None)]);
    // A's Up (with Poll, since its interval dropped) reaches B: B goes
    // Up and answers the Poll with a Final at once.
    let a2 = a.handle(Event::Expired(Timer::Tx));
    let b3 = deliver(&a2, &mut b);
    assert_eq!(changes(&b3), [(State::Init, State::Up, Diag::None)]);
    let fin = sent(&b3);
    assert!(fin.iter().any(|p| p.final_ && !p.poll), "{fin:?}");
    let _ = deliver(&b3, &mut a);
    (a, b)
}

#[test]
fn three_way_handshake_brings_both_up() {
    let (a, b) = up_pair();
    assert_eq!((a.state(), b.state()), (State::Up, State::Up));
    assert_eq!((a.remote_discr(), b.remote_discr()), (22, 11));
}

#[test]
fn first_packets_are_slow_and_carry_no_remote_discriminator() {
    let mut a = Session::new(cfg(300, 3), 7);
    let acts = a.start();
    let p = sent(&acts)[0];
    assert_eq!((p.state, p.your_discr, p.my_discr), (State::Down, 0, 7));
    // 6.8.3: not Up means at least one second.
    assert_eq!(p.desired_min_tx_us, SLOW_TX_US);
    assert_eq!(p.required_min_rx_us, 300_000);
    let tx = armed(&acts, Timer::Tx).unwrap();
    assert!(tx >= Duration::from_millis(750) && tx <= Duration::from_secs(1));
}

#[test]
fn up_switches_to_the_fast_interval_through_a_poll_sequence() {
    let (mut a, _b) = up_pair();
    // A's Poll was answered; its packets are fast and Poll-free now.
    let acts = a.handle(Event::Expired(Timer::Tx));
    let p = sent(&acts)[0];
    assert!(!p.poll);
    assert_eq!(p.desired_min_tx_us, 300_000);
    // Interval = max(our 300 ms, B's required 100 ms), jittered 75-100%.
    assert_eq!(a.tx_interval(), Duration::from_millis(300));
    let d = armed(&acts, Timer::Tx).unwrap();
    assert!(d >= Duration::from_millis(225) && d <= Duration::from_millis(300));
    // Detection = B's multiplier 5 x max(our 300 ms, B's 100 ms).
    assert_eq!(a.detection_time(), Duration::from_millis(1500));
}

#[test]
fn poll_bit_stays_until_final_arrives() {
    let mut a = Session::new(cfg(300, 3), 11);
    let mut b = Session::new(cfg(300, 3), 22);
    let a0 = a.start();
    let b1 = deliver(&a0, &mut b);
    let _ = b1;
    let b2 = b.handle(Event::Expired(Timer::Tx));
    let _ = deliver(&b2, &mut a);
    assert_eq!(a.state(), State::Up);
    // No Final yet: every periodic packet polls.
    for _ in 0..3 {
        let p = sent(&a.handle(Event::Expired(Timer::Tx)))[0];
        assert!(p.poll && !p.final_);
    }
}

#[test]
fn detection_timeout_takes_the_session_down() {
    let (mut a, _b) = up_pair();
    let acts = a.handle(Event::Expired(Timer::Detect));
    assert_eq!(
        changes(&acts),
        [(State::Up, State::Down, Diag::ControlDetectionExpired)]
    );
    assert_eq!(a.remote_discr(), 0);
    // Back to the slow rate, diag reported in the next packet.
    let p = sent(&a.handle(Event::Expired(Timer::Tx)))[0];
    assert_eq!(
        (p.state, p.diag, p.your_discr, p.desired_min_tx_us),
        (State::Down, Diag::ControlDetectionExpired, 0, SLOW_TX_US)
    );
    // A second expiry with nothing heard changes nothing.
    assert!(changes(&a.handle(Event::Expired(Timer::Detect))).is_empty());
}

#[test]
fn remote_down_takes_the_local_session_down() {
    let (mut a, mut b) = up_pair();
    let b1 = b.handle(Event::Expired(Timer::Detect));
    assert_eq!(b.state(), State::Down);
    let b2 = b.handle(Event::Expired(Timer::Tx));
    let _ = b1;
    let a1 = deliver(&b2, &mut a);
    assert_eq!(changes(&a1), [(State::Up, State::Down, Diag::NeighborDown)]);
    assert_eq!(a.remote_state(), State::Down);
}

#[test]
fn admin_down_is_signalled_and_not_left_by_received_packets() {
    let (mut a, mut b) = up_pair();
    let acts = a.handle(Event::AdminDown);
    assert_eq!(
        changes(&acts),
        [(State::Up, State::AdminDown, Diag::AdminDown)]
    );
    assert!(acts.contains(&Action::Stop(Timer::Detect)));
    let p = sent(&acts)[0];
    assert_eq!((p.state, p.diag), (State::AdminDown, Diag::AdminDown));
    // The remote goes Down with diag 3 and knows it was administrative.
    let b1 = deliver(&acts, &mut b);
    assert_eq!(changes(&b1), [(State::Up, State::Down, Diag::NeighborDown)]);
    assert_eq!(b.remote_state(), State::AdminDown);
    // 6.8.6: packets received in AdminDown are discarded.
    let b2 = b.handle(Event::Expired(Timer::Tx));
    assert!(changes(&deliver(&b2, &mut a)).is_empty());
    assert_eq!(a.state(), State::AdminDown);
}

#[test]
fn a_faster_remote_does_not_postpone_our_transmissions() {
    let (mut a, mut b) = up_pair();
    // B sends every 100 ms; A's 300 ms timer must not be re-armed by
    // each of B's packets.
    for _ in 0..5 {
        let b1 = b.handle(Event::Expired(Timer::Tx));
        let a1 = deliver(&b1, &mut a);
        assert_eq!(armed(&a1, Timer::Tx), None, "{a1:?}");
        assert!(armed(&a1, Timer::Detect).is_some());
    }
}

#[test]
fn zero_remote_min_rx_stops_periodic_transmission() {
    let mut a = Session::new(cfg(300, 3), 11);
    let _ = a.start();
    let mut p = sent(&Session::new(cfg(300, 3), 22).start())[0];
    p.required_min_rx_us = 0;
    let acts = a.handle(Event::Rx(p));
    assert!(acts.contains(&Action::Stop(Timer::Tx)), "{acts:?}");
}

#[test]
fn reconfigure_while_up_polls_and_keeps_old_bounds_until_final() {
    let (mut a, mut b) = up_pair();
    // Slower: 300 ms -> 1 s. The actual interval may not grow before
    // the Final (6.8.3).
    let acts = a.handle(Event::Reconfigure(cfg(1000, 3)));
    let p = sent(&acts)[0];
    assert!(p.poll);
    assert_eq!(p.desired_min_tx_us, 1_000_000);
    assert_eq!(a.tx_interval(), Duration::from_millis(300));
    let b1 = deliver(&acts, &mut b);
    assert!(sent(&b1).iter().any(|p| p.final_));
    let _ = deliver(&b1, &mut a);
    assert_eq!(a.tx_interval(), Duration::from_secs(1));
    // Detection now uses our larger required interval.
    assert_eq!(a.detection_time(), Duration::from_secs(5));
}

#[test]
fn jitter_with_multiplier_one_stays_at_or_below_90_percent() {
    let mut a = Session::new(cfg(1000, 1), 5);
    for _ in 0..50 {
        let d = armed(&a.handle(Event::Expired(Timer::Tx)), Timer::Tx);
        let d = d.unwrap();
        assert!(
            d >= Duration::from_millis(750) && d <= Duration::from_millis(900),
            "{d:?}"
        );
    }
}
