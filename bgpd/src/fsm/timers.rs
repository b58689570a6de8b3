//! The FSM's timers: what each expiry does per state (RFC 4271 sections
//! 8.2.2 and 10), and the Hold and Keepalive intervals a session runs on
//! once the OPENs negotiated them (section 4.2).

use std::time::Duration;

use super::{Action, DownReason, Fsm, State, Timer};
use bgp_wire::{ErrorCode, NotificationMsg};

impl Fsm {
    /// A timer of this FSM expired (RFC 4271 8.1.2 events 9-11, and the
    /// idle hold timer that drives AutomaticStart).
    pub(super) fn timer(&mut self, t: Timer, out: &mut Vec<Action>) {
        match (self.state, t) {
            (State::Idle, Timer::IdleHold) if self.started => {
                // RFC 4271 8.1.2 event 3/5: AutomaticStart after an error.
                self.start(self.passive, out);
            }
            (State::Connect, Timer::ConnectRetry) => {
                // RFC 4271 8.2.2 Connect: "drops the TCP connection, restarts
                // the ConnectRetryTimer, ... initiates a TCP connection".
                self.close(out);
                let id = self.next_conn.next();
                self.conn = Some(id);
                out.push(Action::ArmTimer(
                    Timer::ConnectRetry,
                    self.cfg.connect_retry,
                ));
                out.push(Action::Connect(id));
            }
            (State::Active, Timer::ConnectRetry) => {
                out.push(Action::ArmTimer(
                    Timer::ConnectRetry,
                    self.cfg.connect_retry,
                ));
                if !self.passive {
                    let id = self.next_conn.next();
                    self.conn = Some(id);
                    self.state = State::Connect;
                    out.push(Action::Connect(id));
                }
            }
            (
                State::OpenSent | State::OpenConfirm | State::Established,
                Timer::Hold,
            ) => {
                // RFC 4271 6.5: "If ... the Hold Timer expires, the local
                // system sends a NOTIFICATION message with the Error Code
                // Hold Timer Expired".
                let n = NotificationMsg::new(
                    ErrorCode::HoldTimerExpired,
                    0,
                    vec![],
                );
                self.send_notification(n, out);
                self.go_idle(DownReason::HoldTimerExpired, out);
            }
            (State::OpenConfirm | State::Established, Timer::Keepalive) => {
                if let Some(c) = self.conn {
                    out.push(Action::SendKeepalive(c));
                }
                if let Some(k) = self.keepalive_interval() {
                    out.push(Action::ArmTimer(Timer::Keepalive, k));
                }
            }
            _ => {}
        }
    }

    pub(super) fn restart_hold(&mut self, out: &mut Vec<Action>) {
        match self.negotiated.as_ref().map(|n| n.hold_time) {
            // RFC 4271 4.4: a zero hold time means no timers at all.
            Some(0) => out.push(Action::StopTimer(Timer::Hold)),
            Some(h) => out.push(Action::ArmTimer(
                Timer::Hold,
                Duration::from_secs(h.into()),
            )),
            None => {}
        }
    }

    pub(super) fn keepalive_interval(&self) -> Option<Duration> {
        match self.negotiated.as_ref().map(|n| n.keepalive) {
            Some(0) | None => None,
            Some(k) => Some(Duration::from_secs(k.into())),
        }
    }
}
