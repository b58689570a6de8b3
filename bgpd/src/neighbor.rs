//! One configured peer: its FSM plus, during a connection collision, a
//! second FSM for the other TCP connection (RFC 4271 section 6.8).

use crate::fsm::{
    Action, ConnId, ConnIdSource, Event, Fsm, FsmConfig, State, Timer,
};
use bgp_wire::{CeaseSubcode, NotificationMsg};

/// An action tagged with the FSM instance that produced it (timers are
/// keyed by that instance).
pub type NbrAction = (u64, Action);

/// A peer's connection state machines.
#[derive(Debug)]
pub struct Neighbor {
    primary: Fsm,
    /// The colliding connection while both are alive.
    secondary: Option<Fsm>,
    ids: ConnIdSource,
    passive: bool,
    enabled: bool,
}

// ===== impl Neighbor =====

impl Neighbor {
    pub fn new(cfg: FsmConfig) -> Neighbor {
        let ids = ConnIdSource::new();
        Neighbor {
            primary: Fsm::new(cfg, ids.clone()),
            secondary: None,
            ids,
            passive: false,
            enabled: false,
        }
    }

    /// The session state shown to users: the most advanced of the two.
    pub fn state(&self) -> State {
        let rank = |s: State| State::ALL.iter().position(|x| *x == s);
        match &self.secondary {
            Some(s) if rank(s.state()) > rank(self.primary.state()) => {
                s.state()
            }
            _ => self.primary.state(),
        }
    }

    /// The FSM whose session is Established, if any.
    pub fn established(&self) -> Option<&Fsm> {
        [Some(&self.primary), self.secondary.as_ref()]
            .into_iter()
            .flatten()
            .find(|f| f.state() == State::Established)
    }

    /// A fresh connection number (for an accepted connection).
    pub fn new_conn_id(&self) -> ConnId {
        self.ids.next()
    }

    pub fn primary(&self) -> &Fsm {
        &self.primary
    }

    /// Replace the capabilities advertised from the next OPEN on.
    pub fn set_caps(&mut self, caps: Vec<bgp_wire::Capability>) {
        self.primary.set_caps(caps);
    }

    /// ManualStart (passive: ManualStart_with_PassiveTcpEstablishment).
    pub fn start(&mut self, passive: bool) -> Vec<NbrAction> {
        self.passive = passive;
        self.enabled = true;
        let id = self.primary.id();
        tag(id, self.primary.handle(Event::ManualStart { passive }))
    }

    /// ManualStop on every connection, with an RFC 9003 message.
    pub fn stop(
        &mut self,
        subcode: CeaseSubcode,
        message: Option<&str>,
    ) -> Vec<NbrAction> {
        self.enabled = false;
        let ev = Event::ManualStop {
            message: message.map(str::to_owned),
            subcode,
        };
        let mut out = Vec::new();
        if let Some(mut s) = self.secondary.take() {
            out.extend(tag(s.id(), s.handle(ev.clone())));
        }
        out.extend(tag(self.primary.id(), self.primary.handle(ev)));
        out
    }

    /// End every connection with NOTIFICATION `n` and refuse the peer's
    /// connections until [`Neighbor::start`] (RFC 4486 max prefixes).
    pub fn stop_with(&mut self, n: NotificationMsg) -> Vec<NbrAction> {
        self.enabled = false;
        let ev = Event::StopWith(n);
        let mut out = Vec::new();
        if let Some(mut s) = self.secondary.take() {
            out.extend(tag(s.id(), s.handle(ev.clone())));
        }
        out.extend(tag(self.primary.id(), self.primary.handle(ev)));
        out
    }

    /// Whether the peer is started (not stopped or held Idle).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// A TCP connection from the peer was accepted.
    pub fn incoming(&mut self, conn: ConnId) -> Vec<NbrAction> {
        let pid = self.primary.id();
        match self.primary.state() {
            _ if !self.enabled => vec![(pid, Action::CloseConnection(conn))],
            State::Idle => {
                // Accept instead of refusing during the idle hold time, so a
                // passive side does not bounce the active side's retries.
                let mut out =
                    self.primary.handle(Event::ManualStart { passive: true });
                out.extend(self.primary.handle(Event::TcpConnected(conn)));
                self.primary.set_started(self.passive);
                tag(pid, out)
            }
            State::Connect | State::Active => {
                tag(pid, self.primary.handle(Event::TcpConnected(conn)))
            }
            State::OpenSent | State::OpenConfirm | State::Established => {
                if self.secondary.is_some() {
                    return vec![(pid, Action::CloseConnection(conn))];
                }
                // RFC 4271 6.8: keep both until the OPEN tells us whom to
                // keep.
                let mut s =
                    Fsm::new(self.primary.config().clone(), self.ids.clone());
                let mut out = s.handle(Event::ManualStart { passive: true });
                out.extend(s.handle(Event::TcpConnected(conn)));
                let sid = s.id();
                self.secondary = Some(s);
                tag(sid, out)
            }
        }
    }

    /// The outcome of one of our connect attempts.
    pub fn connected(&mut self, conn: ConnId, ok: bool) -> Vec<NbrAction> {
        let ev = if ok {
            Event::TcpConnected(conn)
        } else {
            Event::TcpFailed(conn)
        };
        if self.primary.conn() == Some(conn) {
            tag(self.primary.id(), self.primary.handle(ev))
        } else if ok {
            // A late attempt that lost to an accepted connection.
            vec![(self.primary.id(), Action::CloseConnection(conn))]
        } else {
            Vec::new()
        }
    }

    /// A timer of FSM `fsm` fired.
    pub fn timer(&mut self, fsm: u64, t: Timer) -> Vec<NbrAction> {
        self.with_fsm(fsm, Event::TimerExpired(t))
    }

    /// A message or TCP event on connection `conn`.
    pub fn conn_event(&mut self, conn: ConnId, ev: Event) -> Vec<NbrAction> {
        let on_secondary = self
            .secondary
            .as_ref()
            .is_some_and(|s| s.conn() == Some(conn));
        if !on_secondary && self.primary.conn() != Some(conn) {
            return Vec::new();
        }
        let is_open = matches!(ev, Event::OpenReceived(_));
        let mut out = if on_secondary {
            let s = self.secondary.as_mut().expect("checked");
            tag(s.id(), s.handle(ev))
        } else {
            tag(self.primary.id(), self.primary.handle(ev))
        };
        if is_open {
            out.extend(self.resolve_collision(on_secondary));
        }
        self.drop_dead_secondary();
        out
    }

    fn with_fsm(&mut self, fsm: u64, ev: Event) -> Vec<NbrAction> {
        let out = if self.primary.id() == fsm {
            tag(fsm, self.primary.handle(ev))
        } else if let Some(s) =
            self.secondary.as_mut().filter(|s| s.id() == fsm)
        {
            tag(fsm, s.handle(ev))
        } else {
            Vec::new()
        };
        self.drop_dead_secondary();
        out
    }

    /// After an OPEN on one connection, decide which connection stays.
    fn resolve_collision(&mut self, open_on_secondary: bool) -> Vec<NbrAction> {
        let Some(sec) = self.secondary.as_mut() else {
            return Vec::new();
        };
        let (new, old) = if open_on_secondary {
            (sec, &mut self.primary)
        } else {
            (&mut self.primary, sec)
        };
        if new.state() != State::OpenConfirm {
            return Vec::new();
        }
        let mut out = Vec::new();
        let keep_new = match old.state() {
            State::OpenConfirm => {
                // RFC 4271 6.8: "If the value of the local BGP Identifier is
                // less than the remote one, the local system closes the BGP
                // connection that already exists [...] initiated by the local
                // system"; otherwise the remote-initiated one goes.
                let local = old.config().router_id;
                let remote = new.negotiated().expect("OpenConfirm").remote_id;
                let keep_outgoing = u32::from(local) > u32::from(remote);
                new.outgoing() == keep_outgoing
            }
            State::Established => {
                if old.negotiated().is_some_and(|n| n.peer_gr.is_some()) {
                    // RFC 4724 4.2: a new OPEN from a GR peer means it
                    // restarted; drop the old session, keeping routes stale.
                    out.extend(tag(old.id(), old.close_for_restart()));
                    true
                } else {
                    // RFC 4271 6.8: a collision with an Established
                    // connection closes the new one.
                    false
                }
            }
            // The other connection has not seen an OPEN yet.
            _ => return Vec::new(),
        };
        if keep_new {
            out.extend(tag(old.id(), old.lose_collision_if_open()));
            if open_on_secondary {
                let winner = self.secondary.take().expect("present");
                self.primary.replace_with(winner);
                self.primary.set_started(self.passive);
            } else {
                self.secondary = None;
            }
        } else {
            out.extend(tag(new.id(), new.lose_collision()));
            if !open_on_secondary {
                let winner = self.secondary.take().expect("present");
                self.primary.replace_with(winner);
                self.primary.set_started(self.passive);
            } else {
                self.secondary = None;
            }
        }
        out
    }

    fn drop_dead_secondary(&mut self) {
        if self
            .secondary
            .as_ref()
            .is_some_and(|s| s.state() == State::Idle)
        {
            self.secondary = None;
        }
    }
}

impl Fsm {
    /// `lose_collision` for an FSM that still has a connection.
    fn lose_collision_if_open(&mut self) -> Vec<Action> {
        if self.state() == State::Idle {
            Vec::new()
        } else {
            self.lose_collision()
        }
    }
}

fn tag(id: u64, actions: Vec<Action>) -> Vec<NbrAction> {
    actions.into_iter().map(|a| (id, a)).collect()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::fsm::DownReason;
    use crate::fsm::tests::{cfg, open};
    use bgp_wire::{Capability, GracefulRestartCap};
    use bgp_wire::{CeaseSubcode, NotificationMsg};

    fn ceases(out: &[NbrAction]) -> Vec<(ConnId, NotificationMsg)> {
        out.iter()
            .filter_map(|(_, a)| match a {
                Action::SendNotification(c, n) => Some((*c, n.clone())),
                _ => None,
            })
            .collect()
    }

    /// Outgoing connection in OpenSent plus an incoming one in OpenSent.
    fn collide(router_id: [u8; 4]) -> (Neighbor, ConnId, ConnId) {
        let mut c = cfg(65000, 65001);
        c.router_id = Ipv4Addr::from(router_id);
        let mut n = Neighbor::new(c);
        let out = n.start(false);
        let out_conn = out
            .iter()
            .find_map(|(_, a)| match a {
                Action::Connect(c) => Some(*c),
                _ => None,
            })
            .unwrap();
        n.connected(out_conn, true);
        let in_conn = 1000;
        let out = n.incoming(in_conn);
        assert!(
            out.iter()
                .any(|(_, a)| matches!(a, Action::SendOpen(1000, _)))
        );
        assert_eq!(n.state(), State::OpenSent);
        (n, out_conn, in_conn)
    }

    #[test]
    fn collision_lower_local_id_keeps_remote_initiated() {
        let (mut n, out_conn, in_conn) = collide([10, 0, 0, 1]);
        let o = || Event::OpenReceived(open(65001, 90, [10, 0, 0, 2]));
        let a = n.conn_event(out_conn, o());
        assert!(ceases(&a).is_empty(), "other side has no OPEN yet");
        let a = n.conn_event(in_conn, o());
        let c = ceases(&a);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].0, out_conn);
        assert_eq!(c[0].1.subcode, CeaseSubcode::CollisionResolution as u8);
        assert_eq!(n.primary().conn(), Some(in_conn));
        n.conn_event(in_conn, Event::KeepaliveReceived);
        assert_eq!(n.state(), State::Established);
    }

    #[test]
    fn collision_higher_local_id_keeps_locally_initiated() {
        let (mut n, out_conn, in_conn) = collide([10, 0, 0, 9]);
        let o = || Event::OpenReceived(open(65001, 90, [10, 0, 0, 2]));
        n.conn_event(in_conn, o());
        let a = n.conn_event(out_conn, o());
        let c = ceases(&a);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].0, in_conn);
        assert_eq!(n.primary().conn(), Some(out_conn));
        // Messages on the closed connection are ignored.
        assert!(n.conn_event(in_conn, Event::KeepaliveReceived).is_empty());
    }

    /// RFC 4724 3 with the Restart State bit: the peer has restarted.
    fn restarting_gr() -> Capability {
        Capability::GracefulRestart(GracefulRestartCap {
            restart_state: true,
            restart_time: 120,
            ..Default::default()
        })
    }

    fn established_nbr(peer_gr: bool) -> (Neighbor, ConnId) {
        let mut n = Neighbor::new(cfg(65000, 65001));
        if peer_gr {
            let mut c = n.primary().config().caps.clone();
            c.push(Capability::GracefulRestart(GracefulRestartCap {
                restart_time: 120,
                ..Default::default()
            }));
            n.set_caps(c);
        }
        n.start(true);
        n.incoming(1);
        let mut o = open(65001, 90, [10, 0, 0, 2]);
        if peer_gr {
            o.capabilities.push(restarting_gr());
        }
        n.conn_event(1, Event::OpenReceived(o));
        n.conn_event(1, Event::KeepaliveReceived);
        assert_eq!(n.state(), State::Established);
        (n, 1)
    }

    #[test]
    fn collision_with_established_closes_new_connection() {
        let (mut n, old) = established_nbr(false);
        n.incoming(2);
        let a = n
            .conn_event(2, Event::OpenReceived(open(65001, 90, [10, 0, 0, 2])));
        let c = ceases(&a);
        assert_eq!(
            (c[0].0, c[0].1.subcode),
            (2, CeaseSubcode::CollisionResolution as u8)
        );
        assert_eq!(n.primary().conn(), Some(old));
        assert_eq!(n.state(), State::Established);
    }

    #[test]
    fn reconnect_of_restarting_gr_peer_replaces_old_session() {
        let (mut n, _old) = established_nbr(true);
        n.incoming(2);
        let mut o = open(65001, 90, [10, 0, 0, 2]);
        o.capabilities.push(restarting_gr());
        let a = n.conn_event(2, Event::OpenReceived(o));
        assert!(a.iter().any(|(_, a)| matches!(
            a,
            Action::Down {
                reason: DownReason::TcpFailure,
                established: true
            }
        )));
        assert!(ceases(&a).is_empty(), "the old TCP session is just closed");
        assert_eq!(n.primary().conn(), Some(2));
        n.conn_event(2, Event::KeepaliveReceived);
        assert_eq!(n.state(), State::Established);
    }

    #[test]
    fn disabled_neighbor_refuses_connections() {
        let mut n = Neighbor::new(cfg(65000, 65001));
        let a = n.incoming(5);
        assert!(matches!(a[..], [(_, Action::CloseConnection(5))]));
    }
}
