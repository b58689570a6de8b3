//! OPEN handling of the FSM: the OPEN we send, the checks of RFC 4271
//! section 6.2 on the peer's that need our configuration, and the hold
//! time and keepalive negotiated from the two (section 4.2).
//!
//! The checks that need nothing but the message are bgp-wire's decoder's
//! (`OpenMsg::decode`), and such an OPEN never reaches the FSM: the
//! version (RFC 4271 6.2, Unsupported Version Number with our version as
//! data), a Hold Time of one or two seconds ("MUST reject") and a zero BGP
//! Identifier (RFC 6286 2.2). The decode error becomes the NOTIFICATION
//! once, in `Speaker::on_frame`.

use bgp_wire::{ErrorCode, NotificationMsg, OpenMsg, OpenSubcode};

use super::{Action, DownReason, Fsm, State, Timer};
use crate::caps::Negotiated;

impl Fsm {
    /// The OPEN we send. RFC 6793 section 4.1: a 4-octet AS goes in the
    /// capability (in `caps`) and AS_TRANS in "My Autonomous System".
    pub fn open_msg(&self) -> OpenMsg {
        OpenMsg::new(
            self.cfg.local_as,
            self.cfg.hold_time,
            self.cfg.router_id,
            self.cfg.caps.clone(),
        )
    }

    pub(super) fn open_received(
        &mut self,
        open: OpenMsg,
        out: &mut Vec<Action>,
    ) {
        if self.state != State::OpenSent {
            // RFC 4271 8.2.2 OpenConfirm/Established: an OPEN here is an FSM
            // error (collisions are detected before the event gets here).
            self.fsm_error(out);
            return;
        }
        match self.check_open(&open) {
            Err(n) => {
                self.send_notification(n.clone(), out);
                self.go_idle(DownReason::NotificationSent(n), out);
            }
            Ok(neg) => {
                let conn = self.conn.expect("OpenSent has a connection");
                out.push(Action::SendKeepalive(conn));
                self.negotiated = Some(neg);
                self.restart_hold(out);
                if let Some(k) = self.keepalive_interval() {
                    out.push(Action::ArmTimer(Timer::Keepalive, k));
                }
                self.state = State::OpenConfirm;
            }
        }
    }

    /// RFC 4271 section 6.2 OPEN message error handling.
    pub fn check_open(
        &self,
        open: &OpenMsg,
    ) -> Result<Negotiated, NotificationMsg> {
        let open_err = |s: OpenSubcode| {
            NotificationMsg::new(ErrorCode::Open, s as u8, vec![])
        };
        // RFC 6793 section 4.1: the 4-octet AS capability carries the real
        // AS; "My Autonomous System" then is AS_TRANS if it doesn't fit.
        let peer_as = open.asn();
        if peer_as != self.cfg.remote_as {
            return Err(open_err(OpenSubcode::BadPeerAs));
        }
        let ibgp = peer_as == self.cfg.local_as;
        // RFC 6286 section 2.2: equal to ours from an internal peer is a
        // Bad BGP Identifier (zero is the decoder's).
        if ibgp && open.bgp_id == self.cfg.router_id {
            return Err(open_err(OpenSubcode::BadBgpIdentifier));
        }
        // RFC 4271 4.2: the hold time is the smaller of the two.
        let hold = self.cfg.hold_time.min(open.hold_time);
        let keepalive = if hold == 0 {
            0
        } else {
            self.cfg.keepalive.min(hold / 3).max(1)
        };
        Ok(Negotiated::new(
            &self.cfg.caps,
            &open.capabilities,
            peer_as,
            open.bgp_id,
            hold,
            keepalive,
            ibgp,
        ))
    }
}
