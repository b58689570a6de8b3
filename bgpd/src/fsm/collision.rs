//! How an FSM gives way to another connection of the same peer: the
//! loser of a connection collision (RFC 4271 section 6.8), a session
//! replaced by the restarting peer's new one (RFC 4724 section 4.2), and
//! the takeover by the winning FSM.

use super::{Action, DownReason, Fsm};
use bgp_wire::{CeaseSubcode, NotificationMsg};

impl Fsm {
    /// Close the connection because another one won a collision
    /// (RFC 4271 6.8, RFC 4486 subcode 7).
    pub fn lose_collision(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        let n = NotificationMsg::cease(CeaseSubcode::CollisionResolution);
        self.send_notification(n.clone(), &mut out);
        // The winner carries on, so this FSM does not restart by itself.
        self.started = false;
        self.go_idle(DownReason::NotificationSent(n), &mut out);
        out
    }

    /// Close an Established session because the peer reconnected: RFC 4724
    /// section 4.2 "the Receiving Speaker MUST close the TCP connection
    /// associated with the previous session" and keep its routes stale.
    pub fn close_for_restart(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        self.started = false;
        self.go_idle(DownReason::TcpFailure, &mut out);
        out
    }

    /// Adopt the state of `winner`, which took over this peer (used when the
    /// secondary FSM of a collision wins).
    pub fn replace_with(&mut self, winner: Fsm) {
        let started = self.started;
        let passive = self.passive;
        *self = winner;
        self.started = started;
        self.passive = passive;
    }

    /// Mark this FSM as started (for a collision FSM that inherits the
    /// peer's automatic restart).
    pub fn set_started(&mut self, passive: bool) {
        self.started = true;
        self.passive = passive;
    }
}
