//! One BFD session in Asynchronous mode (RFC 5880 section 6.8), sans-IO:
//! received packets, timer expiries and administrative commands go in,
//! packets to send, timers to arm and state changes come out. Demand
//! mode, the Echo function and authentication are not implemented: we
//! never set D, advertise a zero Required Min Echo RX Interval and reject
//! packets with the A bit (see `packet.rs`).

use std::time::Duration;

use crate::packet::{ControlPacket, Diag, State};

/// RFC 5880 6.8.3: "When bfd.SessionState is not Up, the system MUST set
/// bfd.DesiredMinTxInterval to a value of not less than one second".
pub const SLOW_TX_US: u32 = 1_000_000;

/// What a session is configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionCfg {
    /// bfd.DesiredMinTxInterval once Up and bfd.RequiredMinRxInterval.
    pub min_interval: Duration,
    /// bfd.DetectMult.
    pub multiplier: u8,
}

/// The session's two timers (serializable: the speaker's replay logs
/// name them).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
pub enum Timer {
    /// Periodic transmission (section 6.8.7).
    Tx,
    /// Detection Time (section 6.8.4).
    Detect,
}

/// Inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A packet that passed the codec's checks and was demultiplexed to
    /// this session (for single hop also the TTL check of RFC 5881 5).
    Rx(ControlPacket),
    Expired(Timer),
    /// Take the session administratively down (section 6.8.16).
    AdminDown,
    /// New interval or multiplier: a Poll Sequence (section 6.8.3).
    Reconfigure(SessionCfg),
}

/// Outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send(ControlPacket),
    /// (Re)arm a timer; an armed timer of the same kind is replaced.
    Arm(Timer, Duration),
    Stop(Timer),
    /// bfd.SessionState changed.
    StateChanged {
        from: State,
        to: State,
        diag: Diag,
    },
}

/// The state variables of section 6.8.1 that Asynchronous mode needs.
#[derive(Debug, Clone)]
pub struct Session {
    cfg: SessionCfg,
    state: State,
    remote_state: State,
    local_discr: u32,
    remote_discr: u32,
    local_diag: Diag,
    /// bfd.DesiredMinTxInterval in µs (slow while not Up).
    desired_min_tx: u32,
    /// bfd.RequiredMinRxInterval in µs.
    required_min_rx: u32,
    /// bfd.RemoteMinRxInterval; 1 µs until heard (section 6.8.1).
    remote_min_rx: u32,
    remote_desired_min_tx: u32,
    remote_mult: u8,
    /// Whether the remote has been heard since the last Detection Time.
    heard: bool,
    /// A Poll Sequence is running: the interval values in force before
    /// it, which bound the timers until the Final arrives (6.8.3).
    poll: Option<(u32, u32)>,
    /// The unjittered interval the transmit timer was last armed with.
    tx_armed: Option<Duration>,
    /// xorshift state for the transmit jitter.
    rng: u32,
}

// ===== impl Session =====

impl Session {
    /// A session in Down state; `local_discr` must be nonzero and unique
    /// on this system (section 6.8.1).
    pub fn new(cfg: SessionCfg, local_discr: u32) -> Session {
        assert_ne!(local_discr, 0, "RFC 5880 6.8.1: nonzero discriminator");
        Session {
            cfg,
            state: State::Down,
            remote_state: State::Down,
            local_discr,
            remote_discr: 0,
            local_diag: Diag::None,
            desired_min_tx: SLOW_TX_US,
            required_min_rx: micros(cfg.min_interval),
            remote_min_rx: 1,
            remote_desired_min_tx: 0,
            remote_mult: 0,
            heard: false,
            poll: None,
            tx_armed: None,
            rng: local_discr | 1,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn remote_state(&self) -> State {
        self.remote_state
    }

    pub fn local_discr(&self) -> u32 {
        self.local_discr
    }

    pub fn remote_discr(&self) -> u32 {
        self.remote_discr
    }

    pub fn local_diag(&self) -> Diag {
        self.local_diag
    }

    pub fn cfg(&self) -> SessionCfg {
        self.cfg
    }

    /// Begin transmitting (we always take the Active role, 6.1).
    pub fn start(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        self.send(false, &mut out);
        self.arm_tx(&mut out);
        out
    }

    /// Process one event.
    pub fn handle(&mut self, ev: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match ev {
            Event::Rx(p) => self.receive(p, &mut out),
            Event::Expired(Timer::Tx) => {
                self.send(false, &mut out);
                self.arm_tx(&mut out);
            }
            Event::Expired(Timer::Detect) => self.detection_expired(&mut out),
            Event::AdminDown => {
                if self.state != State::AdminDown {
                    // 6.8.16: AdminDown, with the reason in the diag.
                    self.set_state(State::AdminDown, Diag::AdminDown, &mut out);
                    out.push(Action::Stop(Timer::Detect));
                    self.send(false, &mut out);
                }
            }
            Event::Reconfigure(cfg) => self.reconfigure(cfg, &mut out),
        }
        out
    }

    /// The reception procedure of section 6.8.6, after the codec's
    /// checks and demultiplexing.
    fn receive(&mut self, p: ControlPacket, out: &mut Vec<Action>) {
        self.remote_discr = p.my_discr;
        self.remote_state = p.state;
        self.remote_min_rx = p.required_min_rx_us;
        self.remote_desired_min_tx = p.desired_min_tx_us;
        self.remote_mult = p.detect_mult;
        // "If a Poll Sequence is being transmitted by the local system
        // and the Final (F) bit in the received packet is set, the Poll
        // Sequence MUST be terminated."
        if p.final_ {
            self.poll = None;
        }
        // "If bfd.SessionState is AdminDown: Discard the packet".
        if self.state == State::AdminDown {
            return;
        }
        if p.state == State::AdminDown {
            // "If received state is AdminDown: If bfd.SessionState is not
            // Down: Set bfd.LocalDiag to 3 ... Set bfd.SessionState to
            // Down".
            if self.state != State::Down {
                self.set_state(State::Down, Diag::NeighborDown, out);
            }
        } else {
            match (self.state, p.state) {
                (State::Down, State::Down) => {
                    self.set_state(State::Init, Diag::None, out)
                }
                (State::Down, State::Init)
                | (State::Init, State::Init | State::Up) => {
                    self.set_state(State::Up, Diag::None, out)
                }
                (State::Up, State::Down) => {
                    self.set_state(State::Down, Diag::NeighborDown, out)
                }
                _ => {}
            }
        }
        // "If the Poll (P) bit is set, send a BFD Control packet to the
        // remote system with the Poll (P) bit clear, and the Final (F)
        // bit set" (section 6.8.7: without respect to the transmit timer).
        if p.poll {
            self.send(true, out);
        }
        // The packet counts for the Detection Time (section 6.8.4).
        self.heard = true;
        out.push(Action::Arm(Timer::Detect, self.detection_time()));
        // The remote's Required Min RX may have changed the interval.
        self.rearm_tx_if_changed(out);
    }

    /// Section 6.8.4: nothing heard for a Detection Time.
    fn detection_expired(&mut self, out: &mut Vec<Action>) {
        if !self.heard {
            return;
        }
        self.heard = false;
        // 6.8.1: bfd.RemoteDiscr "MUST be reset to zero if the Detection
        // Time passes without the receipt of a valid ... packet".
        self.remote_discr = 0;
        self.remote_min_rx = 1;
        if matches!(self.state, State::Init | State::Up) {
            self.set_state(State::Down, Diag::ControlDetectionExpired, out);
        }
        self.remote_state = State::Down;
        self.rearm_tx_if_changed(out);
    }

    /// New settings; once Up they take effect through a Poll Sequence.
    fn reconfigure(&mut self, cfg: SessionCfg, out: &mut Vec<Action>) {
        if cfg == self.cfg {
            return;
        }
        self.cfg = cfg;
        let old = (self.desired_min_tx, self.required_min_rx);
        self.required_min_rx = micros(cfg.min_interval);
        if self.state == State::Up {
            self.desired_min_tx = micros(cfg.min_interval);
            self.start_poll(old);
        }
        self.send(false, out);
        self.arm_tx(out);
    }

    fn set_state(&mut self, to: State, diag: Diag, out: &mut Vec<Action>) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        self.local_diag = diag;
        let old = (self.desired_min_tx, self.required_min_rx);
        if to == State::Up {
            // Leave the one-second rate of 6.8.3; the change of
            // DesiredMinTxInterval "MUST" start a Poll Sequence.
            self.desired_min_tx = micros(self.cfg.min_interval);
            self.start_poll(old);
        } else {
            self.desired_min_tx = SLOW_TX_US;
            self.poll = None;
        }
        out.push(Action::StateChanged { from, to, diag });
        self.rearm_tx_if_changed(out);
    }

    fn start_poll(&mut self, old: (u32, u32)) {
        if (self.desired_min_tx, self.required_min_rx) != old {
            // A Poll already running keeps the oldest bounds.
            self.poll.get_or_insert(old);
        }
    }

    /// Desired Min TX in force: 6.8.3 "If bfd.DesiredMinTxInterval is
    /// increased and bfd.SessionState is Up, the actual transmission
    /// interval used MUST NOT change until the Poll Sequence ... has
    /// terminated."
    fn effective_tx(&self) -> u32 {
        match self.poll {
            Some((tx, _)) => self.desired_min_tx.min(tx),
            None => self.desired_min_tx,
        }
    }

    /// Required Min RX in force: 6.8.3 "If bfd.RequiredMinRxInterval is
    /// reduced and bfd.SessionState is Up, the previous value ... MUST be
    /// used when calculating the Detection Time for the remote system
    /// until the Poll Sequence ... has terminated."
    fn effective_rx(&self) -> u32 {
        match self.poll {
            Some((_, rx)) => self.required_min_rx.max(rx),
            None => self.required_min_rx,
        }
    }

    /// Section 6.8.4: "the remote system's bfd.DetectMult multiplied by
    /// the agreed transmit interval of the remote system (the greater of
    /// bfd.RequiredMinRxInterval and the last received Desired Min TX
    /// Interval)".
    pub fn detection_time(&self) -> Duration {
        let interval = self.effective_rx().max(self.remote_desired_min_tx);
        Duration::from_micros(
            u64::from(self.remote_mult.max(1)) * u64::from(interval),
        )
    }

    /// The periodic interval before jitter (section 6.8.2): "the greater
    /// of bfd.DesiredMinTxInterval and bfd.RemoteMinRxInterval".
    pub fn tx_interval(&self) -> Duration {
        Duration::from_micros(u64::from(
            self.effective_tx().max(self.remote_min_rx),
        ))
    }

    /// Re-arm the transmit timer only when the interval changed, so
    /// that a faster remote does not keep pushing our next packet out.
    fn rearm_tx_if_changed(&mut self, out: &mut Vec<Action>) {
        let now = (self.remote_min_rx != 0).then(|| self.tx_interval());
        if now != self.tx_armed {
            self.arm_tx(out);
        }
    }

    /// Arm the transmit timer with the jitter of section 6.8.7.
    fn arm_tx(&mut self, out: &mut Vec<Action>) {
        // "A system MUST NOT periodically transmit BFD Control packets if
        // bfd.RemoteMinRxInterval is zero."
        if self.remote_min_rx == 0 {
            self.tx_armed = None;
            out.retain(|a| !matches!(a, Action::Arm(Timer::Tx, _)));
            out.push(Action::Stop(Timer::Tx));
            return;
        }
        // "The periodic transmission of BFD Control packets MUST be
        // jittered ... reduced by a random value of 0 to 25%" and, with
        // bfd.DetectMult 1, to "not more than 90%" of the interval.
        let max_pct = if self.cfg.multiplier == 1 { 90 } else { 100 };
        let pct = 75 + self.next_rand() % (max_pct - 75 + 1);
        let full = self.tx_interval();
        self.tx_armed = Some(full);
        let d = full * pct / 100;
        out.retain(|a| !matches!(a, Action::Arm(Timer::Tx, _)));
        out.push(Action::Arm(Timer::Tx, d));
    }

    /// Build a packet per section 6.8.7.
    fn send(&mut self, final_: bool, out: &mut Vec<Action>) {
        out.push(Action::Send(ControlPacket {
            diag: self.local_diag,
            state: self.state,
            // The Poll bit never goes out together with Final.
            poll: self.poll.is_some() && !final_,
            final_,
            // bgpd's BFD shares fate with its control plane: C clear.
            control_plane_independent: false,
            demand: false,
            detect_mult: self.cfg.multiplier,
            my_discr: self.local_discr,
            your_discr: self.remote_discr,
            desired_min_tx_us: self.desired_min_tx,
            required_min_rx_us: self.required_min_rx,
            // No Echo function.
            required_min_echo_rx_us: 0,
        }));
    }

    fn next_rand(&mut self) -> u32 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        x
    }
}

/// A duration in the protocol's 32-bit microseconds (saturating; config
/// validation keeps intervals at or below one hour).
fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX).max(1)
}

#[cfg(test)]
mod tests;
