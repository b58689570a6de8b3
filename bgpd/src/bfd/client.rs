//! BGP as a BFD client (RFC 5882): the speaker keeps one BFD session per
//! BFD-enabled peer, demultiplexes received packets to them (RFC 5880
//! section 6.3, RFC 5881 section 3) and tears the BGP session down when
//! its BFD session leaves Up.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use bgp_wire::{CeaseSubcode, NotificationMsg};

use super::packet::{ControlPacket, State};
use super::session::{self, Action, Event, Session, SessionCfg};
use crate::fsm;
use crate::rib::LOCAL;
use crate::speaker::{Output, Speaker, TimerKey, TimerKind};

/// The speaker's view of one BFD session.
#[derive(Debug)]
pub(crate) struct BfdPeer {
    pub remote: IpAddr,
    pub local: Option<IpAddr>,
    pub session: Session,
}

impl BfdPeer {
    /// Perform one action of the session of peer `name`. Returns the
    /// diagnostic when the session failed, which the speaker acts on.
    fn perform(
        &self,
        name: &str,
        a: Action,
        out: &mut Vec<Output>,
    ) -> Option<String> {
        let discr = self.session.local_discr();
        match a {
            Action::Send(p) => out.push(Output::BfdSend {
                discr,
                bytes: p.to_bytes(),
            }),
            Action::Arm(t, d) => {
                out.push(Output::ArmTimer(bfd_timer(discr, t), d))
            }
            Action::Stop(t) => out.push(Output::StopTimer(bfd_timer(discr, t))),
            Action::StateChanged { from, to, diag } => {
                tracing::info!(peer = %name, ?from, ?to, ?diag, "BFD state changed");
                // RFC 5882: a remote AdminDown "MUST NOT" be reported to
                // clients as a connectivity failure.
                let remote_admin_down =
                    self.session.remote_state() == State::AdminDown;
                if from == State::Up && to == State::Down && !remote_admin_down
                {
                    return Some(format!("{diag:?}"));
                }
            }
        }
        None
    }
}

/// Where the speaker's sessions live: by BGP peer name, plus the
/// discriminators in use.
#[derive(Debug, Default)]
pub(crate) struct BfdSessions {
    pub by_peer: BTreeMap<String, BfdPeer>,
    next_discr: u32,
}

impl BfdSessions {
    /// A nonzero discriminator no session uses (RFC 5880 6.8.1: "MUST be
    /// unique across all BFD sessions on this system"). The sequence
    /// starts at the seed the IO layer gave ([`Speaker::seed_bfd`]), or
    /// else at the clock's nanoseconds.
    fn allocate(&mut self, now: std::time::SystemTime) -> u32 {
        if self.next_discr == 0 {
            self.next_discr = now
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.subsec_nanos());
        }
        let used: HashSet<u32> = self
            .by_peer
            .values()
            .map(|p| p.session.local_discr())
            .collect();
        loop {
            self.next_discr = self.next_discr.wrapping_add(1);
            if self.next_discr != 0 && !used.contains(&self.next_discr) {
                return self.next_discr;
            }
        }
    }
}

// ===== impl Speaker =====

impl Speaker {
    /// Where local discriminators start. The daemon passes something
    /// unpredictable (clock and process id) so a restarted bgpd does not
    /// reuse the discriminators its peers still remember; a replay passes
    /// the recorded value. Takes effect before the first allocation only.
    pub fn seed_bfd(&mut self, seed: u32) {
        if self.bfd.next_discr == 0 {
            self.bfd.next_discr = seed;
        }
    }

    /// Run BFD with exactly the peers named in `cfgs` (by peer name),
    /// from the peer's address and configured source address. Sessions
    /// that go away are taken AdminDown first, so the remote does not
    /// report a failure (RFC 5882).
    pub fn set_bfd(&mut self, cfgs: BTreeMap<String, SessionCfg>) {
        let gone: Vec<String> = self
            .bfd
            .by_peer
            .keys()
            .filter(|n| !cfgs.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            self.remove_bfd(&name);
        }
        for (name, cfg) in cfgs {
            let Some(p) = self.peers.values().find(|p| p.cfg.name == name)
            else {
                continue;
            };
            let (remote, local) = (p.cfg.addr, p.cfg.source_addr);
            match self.bfd.by_peer.get_mut(&name) {
                Some(b) if b.remote == remote && b.local == local => {
                    let acts = b.session.handle(Event::Reconfigure(cfg));
                    self.apply_bfd(&name, acts);
                }
                Some(_) => {
                    self.remove_bfd(&name);
                    self.add_bfd(name, remote, local, cfg);
                }
                None => self.add_bfd(name, remote, local, cfg),
            }
        }
    }

    fn add_bfd(
        &mut self,
        name: String,
        remote: IpAddr,
        local: Option<IpAddr>,
        cfg: SessionCfg,
    ) {
        let discr = self.bfd.allocate(self.now);
        let mut session = Session::new(cfg, discr);
        tracing::info!(peer = %name, %remote, discr, "BFD session added");
        self.out.push(Output::BfdOpen {
            discr,
            local,
            remote,
        });
        let acts = session.start();
        self.bfd.by_peer.insert(
            name.clone(),
            BfdPeer {
                remote,
                local,
                session,
            },
        );
        self.apply_bfd(&name, acts);
    }

    fn remove_bfd(&mut self, name: &str) {
        let Some(b) = self.bfd.by_peer.get_mut(name) else {
            return;
        };
        let discr = b.session.local_discr();
        let acts = b.session.handle(Event::AdminDown);
        self.apply_bfd(name, acts);
        self.bfd.by_peer.remove(name);
        for t in [session::Timer::Tx, session::Timer::Detect] {
            self.out.push(Output::StopTimer(bfd_timer(discr, t)));
        }
        self.out.push(Output::BfdClose { discr });
        tracing::info!(peer = %name, discr, "BFD session removed");
    }

    /// A datagram arrived on port 3784 from `src` with IP TTL `ttl`.
    pub fn on_bfd_packet(&mut self, src: IpAddr, ttl: u8, payload: &[u8]) {
        let pkt = match ControlPacket::decode(payload) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(%src, "BFD packet discarded: {e}");
                return;
            }
        };
        // RFC 5880 6.8.6: "If the Your Discriminator field is nonzero, it
        // MUST be used to select the session"; otherwise (single hop,
        // RFC 5881 section 3) the source address selects it.
        let found = self.bfd.by_peer.iter().find(|(_, b)| {
            if pkt.your_discr != 0 {
                b.session.local_discr() == pkt.your_discr
            } else {
                b.remote == src
            }
        });
        let Some((name, b)) = found else {
            tracing::debug!(%src, your = pkt.your_discr, "BFD packet for no session");
            return;
        };
        // Single hop: the session is identified by the addresses too.
        if b.remote != src {
            tracing::debug!(%src, "BFD packet from the wrong address");
            return;
        }
        // RFC 5881 section 5: packets "MUST be discarded if the received
        // TTL or Hop Limit is not equal to 255".
        if ttl != super::TTL {
            tracing::debug!(%src, ttl, "BFD packet discarded: TTL is not 255");
            return;
        }
        let name = name.clone();
        let b = self.bfd.by_peer.get_mut(&name).expect("found");
        let acts = b.session.handle(Event::Rx(pkt));
        self.apply_bfd(&name, acts);
    }

    /// A BFD timer fired.
    pub(crate) fn on_bfd_timer(&mut self, discr: u32, t: session::Timer) {
        let Some((name, b)) = self
            .bfd
            .by_peer
            .iter_mut()
            .find(|(_, b)| b.session.local_discr() == discr)
        else {
            return;
        };
        let name = name.clone();
        let acts = b.session.handle(Event::Expired(t));
        self.apply_bfd(&name, acts);
    }

    /// BFD sessions per state, for metrics.
    pub fn bfd_states(&self) -> Vec<(State, usize)> {
        [State::AdminDown, State::Down, State::Init, State::Up]
            .into_iter()
            .map(|st| {
                let n = self
                    .bfd
                    .by_peer
                    .values()
                    .filter(|b| b.session.state() == st)
                    .count();
                (st, n)
            })
            .collect()
    }

    /// The BFD state of peer `name`, if it runs BFD.
    pub fn bfd_state(&self, name: &str) -> Option<State> {
        self.bfd.by_peer.get(name).map(|b| b.session.state())
    }

    fn apply_bfd(&mut self, name: &str, acts: Vec<Action>) {
        for a in acts {
            let Some(b) = self.bfd.by_peer.get(name) else {
                return;
            };
            if let Some(diag) = b.perform(name, a, &mut self.out) {
                self.bfd_down(name, &diag);
            }
        }
    }

    /// RFC 5882: the forwarding path to the peer failed, so
    /// the BGP session goes down now (Cease "BFD Down", RFC 9384) and,
    /// being ended by a NOTIFICATION, keeps no graceful-restart stale
    /// routes: the peer's routes leave the RIB at once. If the session
    /// was already down and its routes are kept stale for a restart
    /// (RFC 4724), they go too: our peers' BFD shares fate with their BGP
    /// (C bit clear), so BFD Down means the forwarding plane is gone as
    /// well, and RFC 5882 has the restart abandoned in that case.
    fn bfd_down(&mut self, name: &str, diag: &str) {
        let Some(p) = self.peers.values_mut().find(|p| p.cfg.name == name)
        else {
            return;
        };
        self.counters.bfd_downs += 1;
        let id = p.id;
        let established = p
            .nbr
            .established()
            .and_then(|f| f.conn())
            .filter(|_| p.state == fsm::State::Established);
        match established {
            Some(conn) => {
                p.last_error = Some(format!("BFD Down ({diag})"));
                tracing::warn!(peer = %name, diag, "BFD Down: tearing the BGP session down");
                let n = NotificationMsg::cease(CeaseSubcode::BfdDown);
                let acts = p.nbr.conn_event(conn, fsm::Event::MessageError(n));
                self.apply(id, acts);
            }
            None if p.gr_stale => {
                tracing::warn!(peer = %name, diag, "BFD Down while the peer restarts: stale routes flushed");
                self.purge_stale(id, None);
            }
            None => {}
        }
    }
}

/// The speaker timer key of BFD session `discr`.
fn bfd_timer(discr: u32, t: session::Timer) -> TimerKey {
    TimerKey {
        peer: LOCAL,
        kind: TimerKind::Bfd(discr, t),
    }
}
