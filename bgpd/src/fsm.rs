//! The RFC 4271 section 8 finite state machine of one BGP connection.
//!
//! Sans-IO: [`Fsm::handle`] takes an [`Event`] (already decoded messages,
//! TCP outcomes, timer expiries) and returns the [`Action`]s the IO layer
//! must perform. Connection collisions (two FSMs for one peer) are resolved
//! one level up, in `neighbor.rs`.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use bgp_wire::{
    Capability, CeaseSubcode, ErrorCode, FsmSubcode, NotificationMsg, OpenMsg,
};

use crate::caps::Negotiated;

mod collision;
mod open;
mod timers;

/// RFC 4271 section 8.2.2: "suggested value for the HoldTimer when
/// set to a large value is 4 minutes".
const LARGE_HOLD: Duration = Duration::from_secs(240);

/// The six states of RFC 4271 section 8.2.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl State {
    /// The RFC's name, as the control socket reports it.
    pub fn name(self) -> &'static str {
        match self {
            State::Idle => "Idle",
            State::Connect => "Connect",
            State::Active => "Active",
            State::OpenSent => "OpenSent",
            State::OpenConfirm => "OpenConfirm",
            State::Established => "Established",
        }
    }

    /// All states, for metrics.
    pub const ALL: [State; 6] = [
        State::Idle,
        State::Connect,
        State::Active,
        State::OpenSent,
        State::OpenConfirm,
        State::Established,
    ];
}

/// The FSM timers (RFC 4271 section 10), plus the idle hold timer that
/// drives the AutomaticStart event after an error (section 8.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Timer {
    ConnectRetry,
    Hold,
    Keepalive,
    IdleHold,
}

/// A TCP connection, numbered by the neighbor that owns it.
pub type ConnId = u64;

/// The inputs of the FSM (RFC 4271 section 8.1, by number where it has one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Event 1 (and 3 when `passive`, ManualStart_with_PassiveTcpEstablishment).
    ManualStart { passive: bool },
    /// Event 2; `message` is the RFC 9003 shutdown communication.
    ManualStop {
        message: Option<String>,
        subcode: CeaseSubcode,
    },
    /// Event 2 with our own NOTIFICATION: end the session with it and stay
    /// Idle, with no AutomaticStart (e.g. RFC 4486 maximum prefixes, which
    /// is restarted by an operator or a configured interval instead).
    StopWith(NotificationMsg),
    /// Events 16/17: our connect succeeded or we accepted one.
    TcpConnected(ConnId),
    /// Event 18.
    TcpFailed(ConnId),
    /// Event 19: the peer's OPEN as the codec decoded it (and so already
    /// checked for what needs nothing but the message: see `fsm/open.rs`).
    OpenReceived(OpenMsg),
    /// Event 26.
    KeepaliveReceived,
    /// Event 27.
    UpdateReceived,
    /// Events 24/25.
    NotificationReceived(NotificationMsg),
    /// Events 21/22/28: a message that must reset the session.
    MessageError(NotificationMsg),
    /// Events 9, 10, 11 and the idle hold timer.
    TimerExpired(Timer),
}

/// Why a session left Established (or failed to get there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum DownReason {
    AdminStop,
    /// The TCP connection closed or failed without a NOTIFICATION.
    TcpFailure,
    HoldTimerExpired,
    NotificationSent(NotificationMsg),
    NotificationReceived(NotificationMsg),
}

impl DownReason {
    /// RFC 4724 section 4.2: only a TCP termination (no NOTIFICATION)
    /// lets a helper keep the restarting peer's routes.
    pub fn is_graceful(&self) -> bool {
        matches!(self, DownReason::TcpFailure)
    }
}

impl std::fmt::Display for DownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DownReason::AdminStop => write!(f, "administratively stopped"),
            DownReason::TcpFailure => write!(f, "TCP connection closed"),
            DownReason::HoldTimerExpired => write!(f, "hold timer expired"),
            DownReason::NotificationSent(n) => write!(f, "sent {n}"),
            DownReason::NotificationReceived(n) => write!(f, "received {n}"),
        }
    }
}

/// The outputs of the FSM, performed by the IO layer in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a TCP connection to the peer, to be reported as `conn`.
    Connect(ConnId),
    SendOpen(ConnId, OpenMsg),
    SendKeepalive(ConnId),
    SendNotification(ConnId, NotificationMsg),
    ArmTimer(Timer, Duration),
    StopTimer(Timer),
    CloseConnection(ConnId),
    /// The session is up with these negotiated parameters.
    Established(Box<Negotiated>),
    /// The session failed; `established` says whether it had been
    /// Established (its routes must go, or turn stale under RFC 4724).
    Down {
        reason: DownReason,
        established: bool,
    },
}

/// Per-peer FSM configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsmConfig {
    pub local_as: u32,
    pub remote_as: u32,
    pub router_id: Ipv4Addr,
    /// Our proposed hold time (0 or >= 3 s, RFC 4271 section 4.2).
    pub hold_time: u16,
    /// Our keepalive interval; capped to a third of the negotiated hold.
    pub keepalive: u16,
    pub connect_retry: Duration,
    /// How long to stay Idle after an error before AutomaticStart.
    pub idle_hold: Duration,
    /// The capabilities of our OPEN, in the order they are sent.
    pub caps: Vec<Capability>,
}

/// One connection's state machine.
#[derive(Debug)]
pub struct Fsm {
    id: u64,
    cfg: FsmConfig,
    /// Whether the current connection is one we initiated (RFC 4271 6.8
    /// collision resolution keeps one direction).
    outgoing: bool,
    state: State,
    conn: Option<ConnId>,
    passive: bool,
    /// Set when a start happened and no ManualStop since: errors then
    /// lead to AutomaticStart after the idle hold time.
    started: bool,
    negotiated: Option<Negotiated>,
    next_conn: ConnIdSource,
}

/// Hands out connection numbers; shared with the owning neighbor.
#[derive(Debug, Clone)]
pub struct ConnIdSource(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl ConnIdSource {
    pub fn new() -> Self {
        ConnIdSource(std::sync::Arc::new(std::sync::atomic::AtomicU64::new(1)))
    }

    pub fn next(&self) -> ConnId {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
}

impl Default for ConnIdSource {
    fn default() -> Self {
        Self::new()
    }
}

// ===== impl Fsm =====

impl Fsm {
    /// A new FSM in Idle.
    pub fn new(cfg: FsmConfig, ids: ConnIdSource) -> Fsm {
        Fsm {
            id: ids.next(),
            outgoing: false,
            cfg,
            state: State::Idle,
            conn: None,
            passive: false,
            started: false,
            negotiated: None,
            next_conn: ids,
        }
    }

    /// This FSM instance's number (timers are keyed by it).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the current connection was initiated by us.
    pub fn outgoing(&self) -> bool {
        self.outgoing
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn conn(&self) -> Option<ConnId> {
        self.conn
    }

    pub fn config(&self) -> &FsmConfig {
        &self.cfg
    }

    /// The negotiated parameters once the peer's OPEN was accepted.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// Replace the capabilities we advertise (e.g. the GR restart flag),
    /// effective from the next OPEN.
    pub fn set_caps(&mut self, caps: Vec<Capability>) {
        self.cfg.caps = caps;
    }

    /// Feed one event; returns the actions to perform.
    pub fn handle(&mut self, ev: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match ev {
            Event::ManualStart { passive } => self.start(passive, &mut out),
            Event::ManualStop { message, subcode } => {
                self.started = false;
                if matches!(
                    self.state,
                    State::OpenSent | State::OpenConfirm | State::Established
                ) {
                    // RFC 4271 8.2.2: "sends the NOTIFICATION with a Cease";
                    // RFC 9003 adds the shutdown communication (none:
                    // no data at all, not an empty one).
                    let n = match message.as_deref().filter(|m| !m.is_empty()) {
                        Some(m) => NotificationMsg::shutdown(subcode, m),
                        None => NotificationMsg::cease(subcode),
                    };
                    self.send_notification(n, &mut out);
                }
                self.go_idle(DownReason::AdminStop, &mut out);
            }
            Event::StopWith(n) => {
                self.started = false;
                if matches!(
                    self.state,
                    State::OpenSent | State::OpenConfirm | State::Established
                ) {
                    self.send_notification(n.clone(), &mut out);
                }
                out.push(Action::StopTimer(Timer::IdleHold));
                self.go_idle(DownReason::NotificationSent(n), &mut out);
            }
            Event::TimerExpired(t) => self.timer(t, &mut out),
            Event::TcpConnected(conn) => self.tcp_connected(conn, &mut out),
            Event::TcpFailed(conn) => {
                if self.conn != Some(conn) {
                    return out;
                }
                match self.state {
                    State::Connect | State::OpenSent => {
                        // RFC 4271 8.2.2 Connect/OpenSent: TcpConnectionFails
                        // restarts the ConnectRetryTimer and moves to Active.
                        self.close(&mut out);
                        out.push(Action::StopTimer(Timer::Hold));
                        out.push(Action::ArmTimer(
                            Timer::ConnectRetry,
                            self.cfg.connect_retry,
                        ));
                        if self.state == State::OpenSent {
                            out.push(Action::Down {
                                reason: DownReason::TcpFailure,
                                established: false,
                            });
                        }
                        self.state = State::Active;
                    }
                    State::OpenConfirm | State::Established => {
                        self.go_idle(DownReason::TcpFailure, &mut out);
                    }
                    State::Idle | State::Active => {}
                }
            }
            Event::OpenReceived(open) => self.open_received(open, &mut out),
            Event::KeepaliveReceived => match self.state {
                State::OpenConfirm => {
                    self.restart_hold(&mut out);
                    self.state = State::Established;
                    let neg = self.negotiated.clone().expect("set in OpenSent");
                    out.push(Action::Established(Box::new(neg)));
                }
                State::Established => self.restart_hold(&mut out),
                _ => self.fsm_error(&mut out),
            },
            Event::UpdateReceived => match self.state {
                State::Established => self.restart_hold(&mut out),
                _ => self.fsm_error(&mut out),
            },
            Event::NotificationReceived(n) => {
                if self.state != State::Idle {
                    self.go_idle(DownReason::NotificationReceived(n), &mut out);
                }
            }
            Event::MessageError(n) => {
                if self.conn.is_some() {
                    self.send_notification(n.clone(), &mut out);
                    self.go_idle(DownReason::NotificationSent(n), &mut out);
                }
            }
        }
        out
    }

    /// ManualStart / AutomaticStart (RFC 4271 8.2.2, Idle state).
    fn start(&mut self, passive: bool, out: &mut Vec<Action>) {
        if self.state != State::Idle {
            return;
        }
        self.started = true;
        self.passive = passive;
        out.push(Action::StopTimer(Timer::IdleHold));
        out.push(Action::ArmTimer(
            Timer::ConnectRetry,
            self.cfg.connect_retry,
        ));
        if passive {
            self.state = State::Active;
        } else {
            let id = self.next_conn.next();
            self.conn = Some(id);
            self.state = State::Connect;
            out.push(Action::Connect(id));
        }
    }

    fn tcp_connected(&mut self, conn: ConnId, out: &mut Vec<Action>) {
        let ours = self.conn == Some(conn);
        let accept = match self.state {
            State::Connect => true,
            // A connection we accepted while listening.
            State::Active => true,
            _ => false,
        };
        if !accept {
            if !ours {
                out.push(Action::CloseConnection(conn));
            }
            return;
        }
        if !ours {
            // An accepted connection replaces a pending outgoing attempt.
            self.close(out);
            self.conn = Some(conn);
        }
        self.outgoing = ours;
        // RFC 4271 8.2.2: "stops the ConnectRetryTimer, ... sends an OPEN
        // message, sets the HoldTimer to a large value, changes to OpenSent".
        out.push(Action::StopTimer(Timer::ConnectRetry));
        out.push(Action::SendOpen(conn, self.open_msg()));
        out.push(Action::ArmTimer(Timer::Hold, LARGE_HOLD));
        self.state = State::OpenSent;
    }

    /// RFC 4271 6.6 and RFC 6608: an unexpected message for the state.
    fn fsm_error(&mut self, out: &mut Vec<Action>) {
        let sub = match self.state {
            State::OpenSent => FsmSubcode::UnexpectedInOpenSent,
            State::OpenConfirm => FsmSubcode::UnexpectedInOpenConfirm,
            State::Established => FsmSubcode::UnexpectedInEstablished,
            // No connection to complain on.
            _ => return,
        };
        let n = NotificationMsg::new(ErrorCode::Fsm, sub as u8, vec![]);
        self.send_notification(n.clone(), out);
        self.go_idle(DownReason::NotificationSent(n), out);
    }

    fn send_notification(&mut self, n: NotificationMsg, out: &mut Vec<Action>) {
        if let Some(c) = self.conn {
            out.push(Action::SendNotification(c, n));
        }
    }

    fn close(&mut self, out: &mut Vec<Action>) {
        if let Some(c) = self.conn.take() {
            out.push(Action::CloseConnection(c));
        }
    }

    /// Release everything and go to Idle (RFC 4271 8.2.2 "changes its
    /// state to Idle"), emitting Down if the session was Established.
    fn go_idle(&mut self, reason: DownReason, out: &mut Vec<Action>) {
        self.close(out);
        for t in [Timer::ConnectRetry, Timer::Hold, Timer::Keepalive] {
            out.push(Action::StopTimer(t));
        }
        let was = self.state;
        self.state = State::Idle;
        self.negotiated = None;
        if was != State::Idle {
            out.push(Action::Down {
                reason,
                established: was == State::Established,
            });
        }
        if self.started {
            out.push(Action::ArmTimer(Timer::IdleHold, self.cfg.idle_hold));
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
