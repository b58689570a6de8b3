//! OPEN handling of the FSM: the OPEN we send, the checks of RFC 4271
//! section 6.2 on the peer's, and the hold time and keepalive negotiated
//! from the two (section 4.2).

use super::{
    AS_TRANS, Action, DownReason, Fsm, OpenParams, PeerOpen, State, Timer,
};
use crate::caps::Negotiated;
use crate::notification::{Notification, code, open_err};

impl Fsm {
    /// The OPEN we send.
    pub fn open_params(&self) -> OpenParams {
        // RFC 6793 section 4.1: a 4-octet AS goes in the capability and
        // AS_TRANS in "My Autonomous System".
        let my_as = u16::try_from(self.cfg.local_as).unwrap_or(AS_TRANS);
        OpenParams {
            my_as,
            hold_time: self.cfg.hold_time,
            bgp_id: self.cfg.router_id,
            caps: self.cfg.caps.clone(),
        }
    }

    pub(super) fn open_received(
        &mut self,
        open: PeerOpen,
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
        open: &PeerOpen,
    ) -> Result<Negotiated, Notification> {
        if open.version != 4 {
            // "the Data field is a 2-octet unsigned integer, which indicates
            // the largest, locally-supported version number".
            return Err(Notification::with_data(
                code::OPEN,
                open_err::UNSUPPORTED_VERSION,
                vec![0, 4],
            ));
        }
        // RFC 6793 section 4.1: the 4-octet AS capability carries the real
        // AS; "My Autonomous System" then is AS_TRANS if it doesn't fit.
        let peer_as = open.caps.four_octet_as.unwrap_or(u32::from(open.my_as));
        if peer_as != self.cfg.remote_as {
            return Err(Notification::new(code::OPEN, open_err::BAD_PEER_AS));
        }
        let ibgp = peer_as == self.cfg.local_as;
        // RFC 6286 section 2.2: zero, or equal to ours from an internal
        // peer, is a Bad BGP Identifier.
        if open.bgp_id.is_unspecified()
            || (ibgp && open.bgp_id == self.cfg.router_id)
        {
            return Err(Notification::new(code::OPEN, open_err::BAD_BGP_ID));
        }
        // RFC 4271 6.2: "An implementation MUST reject Hold Time values of
        // one or two seconds."
        if open.hold_time == 1 || open.hold_time == 2 {
            return Err(Notification::new(
                code::OPEN,
                open_err::UNACCEPTABLE_HOLD_TIME,
            ));
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
            &open.caps,
            peer_as,
            open.bgp_id,
            hold,
            keepalive,
            ibgp,
        ))
    }
}
