//! The speaker's `process_*` handlers: FSM actions, received frames,
//! UPDATEs (RFC 7606 verdicts, loop checks, import policy, max-prefix),
//! session up/down and graceful restart.

use std::time::{Duration, SystemTime};

use bgp_wire::{
    CeaseSubcode, DecodeCxt, Family, Message, NextHop, NotificationMsg,
    UpdateMsg, Verdict,
};
use bytes::Bytes;

use crate::caps;
use crate::fsm::{Action, ConnId, DownReason, Event, State};
use crate::neighbor::NbrAction;
use crate::policy;
use crate::rib::{Attrs, PeerId, SourceInfo};
use crate::speaker::{
    ConnectSpec, Counters, Output, Peer, Session, Speaker, TimerKey, TimerKind,
};

/// RFC 4271 4.4: a KEEPALIVE is just the header.
const KEEPALIVE: [u8; 19] = {
    let mut k = [0xff; 19];
    k[16] = 0;
    k[17] = 19;
    k[18] = 4;
    k
};

/// How many prefixes ahead of the one being processed the RIB is asked to
/// warm its cache: enough to overlap the memory latency of a few lookups.
const LOOKAHEAD: usize = 8;

/// What a handler of one peer may touch besides the [`Peer`]: the output
/// queue, the clock and the counters. Handlers that only change the peer
/// and emit outputs take `(&mut Peer, &mut Ctx)` rather than the whole
/// [`Speaker`] (as holo-bgp's handlers take the neighbor and a view of
/// the instance); those that reach the RIB or other peers stay on
/// `Speaker`.
pub(crate) struct Ctx<'a> {
    pub out: &'a mut Vec<Output>,
    pub now: SystemTime,
    pub counters: &'a mut Counters,
}

/// What an FSM action leaves to the speaker: a session coming up or
/// going down touches the RIB and the other peers.
enum SessionChange {
    Up(Box<caps::Negotiated>),
    Down(DownReason),
}

impl Speaker {
    /// Peer `id` with the context its handlers need.
    pub(crate) fn peer_ctx(
        &mut self,
        id: PeerId,
    ) -> Option<(&mut Peer, Ctx<'_>)> {
        let p = self.peers.get_mut(&id)?;
        let cx = Ctx {
            out: &mut self.out,
            now: self.now,
            counters: &mut self.counters,
        };
        Some((p, cx))
    }

    /// Perform FSM actions for peer `id`.
    pub(crate) fn apply(&mut self, id: PeerId, acts: Vec<NbrAction>) {
        for (fsm_id, act) in acts {
            let Some((p, mut cx)) = self.peer_ctx(id) else {
                continue;
            };
            match p.perform(fsm_id, act, &mut cx) {
                Some(SessionChange::Up(neg)) => {
                    self.process_session_up(id, *neg)
                }
                Some(SessionChange::Down(reason)) => {
                    self.process_session_down(id, &reason)
                }
                None => {}
            }
        }
        if let Some((p, mut cx)) = self.peer_ctx(id) {
            p.sync_state(&mut cx);
        }
    }
}

impl Peer {
    /// Perform one action of FSM instance `fsm_id`; a session change is
    /// left to the caller.
    fn perform(
        &mut self,
        fsm_id: u64,
        act: Action,
        cx: &mut Ctx<'_>,
    ) -> Option<SessionChange> {
        let id = self.id;
        let key = |t| TimerKey {
            peer: id,
            kind: TimerKind::Fsm(fsm_id, t),
        };
        let send = |cx: &mut Ctx<'_>, conn, bytes| {
            cx.out.push(Output::Send {
                peer: id,
                conn,
                bytes,
            })
        };
        match act {
            Action::Connect(conn) => {
                self.conns.insert(conn, Default::default());
                cx.out.push(Output::Connect {
                    peer: id,
                    conn,
                    spec: ConnectSpec {
                        remote: (self.cfg.addr, self.cfg.port).into(),
                        source: self.cfg.source_addr,
                        password: self.cfg.password.clone(),
                        ttl_security: self.cfg.ttl_security,
                    },
                });
            }
            Action::SendOpen(conn, open) => {
                let bytes = Message::Open(open.clone())
                    .to_bytes(&DecodeCxt::default())
                    .expect("our OPEN fits in 4096 octets");
                self.sent_open = Some(open);
                send(cx, conn, bytes.freeze());
            }
            Action::SendKeepalive(conn) => {
                send(cx, conn, Bytes::from_static(&KEEPALIVE))
            }
            Action::SendNotification(conn, n) => {
                tracing::warn!(peer = %self.cfg.name, "sending {n}");
                self.last_error = Some(format!("sent {n}"));
                let msg = Message::Notification(n);
                if let Ok(b) = msg.to_bytes(&DecodeCxt::default()) {
                    send(cx, conn, b.freeze());
                }
            }
            Action::ArmTimer(t, d) => cx.out.push(Output::ArmTimer(key(t), d)),
            Action::StopTimer(t) => cx.out.push(Output::StopTimer(key(t))),
            Action::CloseConnection(conn) => {
                self.conns.remove(&conn);
                cx.out.push(Output::Close { peer: id, conn });
            }
            Action::Established(neg) => return Some(SessionChange::Up(neg)),
            Action::Down {
                reason,
                established,
            } => {
                if !matches!(reason, DownReason::NotificationSent(_)) {
                    self.last_error = Some(reason.to_string());
                }
                if established {
                    return Some(SessionChange::Down(reason));
                }
            }
        }
        None
    }

    /// Record a state change (for `since` and metrics).
    fn sync_state(&mut self, cx: &mut Ctx<'_>) {
        let s = self.nbr.state();
        if s != self.state {
            tracing::info!(peer = %self.cfg.name, from = self.state.name(), to = s.name(), "state");
            self.state = s;
            self.since = cx.now;
            cx.counters.fsm_transitions += 1;
        }
    }
}

impl Speaker {
    /// One complete BGP message arrived on `conn`.
    pub fn on_frame(&mut self, id: PeerId, conn: ConnId, frame: &[u8]) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let cxt = match &p.session {
            Some(s) if s.conn == conn => s.rx,
            _ => DecodeCxt::default(),
        };
        let ev = match Message::decode(frame, &cxt) {
            Err(e) => {
                tracing::warn!(peer = %p.cfg.name, "bad message: {e}");
                p.last_error = Some(format!("bad message: {e}"));
                Event::MessageError(e.into())
            }
            Ok(Message::Open(o)) => {
                p.conns.entry(conn).or_default().open_rx = Some(o.clone());
                Event::OpenReceived(o)
            }
            Ok(Message::Keepalive) => Event::KeepaliveReceived,
            Ok(Message::Notification(n)) => {
                tracing::warn!(peer = %p.cfg.name, "received {n}");
                p.last_error = Some(format!("received {n}"));
                Event::NotificationReceived(n)
            }
            Ok(Message::RouteRefresh(r)) => {
                let ok = p.session.as_ref().is_some_and(|s| s.conn == conn);
                if ok && caps::ROUTED.contains(&r.family) {
                    self.reexport_family(id, r.family);
                }
                return;
            }
            Ok(Message::Update(u)) => {
                let acts = p.nbr.conn_event(conn, Event::UpdateReceived);
                let established =
                    p.session.as_ref().is_some_and(|s| s.conn == conn);
                self.apply(id, acts);
                if established {
                    self.process_update(id, conn, u);
                }
                return;
            }
        };
        let acts = p.nbr.conn_event(conn, ev);
        self.apply(id, acts);
    }

    /// RFC 4271 9: process one UPDATE from an established peer.
    fn process_update(&mut self, id: PeerId, conn: ConnId, mut u: UpdateMsg) {
        self.counters.updates_in += 1;
        let p = self.peers.get_mut(&id).expect("caller checked");
        let s = p.session.as_ref().expect("established");
        if let Some(f) = u.end_of_rib_family() {
            if caps::ROUTED.contains(&f) {
                tracing::debug!(peer = %p.cfg.name, ?f, "End-of-RIB");
                self.purge_stale(id, Some(f));
                self.deferral_eor(id, conn, f);
            }
            return;
        }
        tracing::debug!(
            peer = %p.cfg.name,
            nlri = u.nlri.len(),
            mp = u.mp_reach.as_ref().map_or(0, |m| m.nlri.len()),
            withdrawn = u.withdrawn.len(),
            "UPDATE"
        );
        let verdict = u.verdict();
        for e in &u.errors {
            // RFC 7606 2: errors handled without a reset "MUST be logged".
            tracing::warn!(peer = %p.cfg.name, "UPDATE error, {:?}: {e}", e.action);
            p.last_error = Some(format!("UPDATE error ({:?}): {e}", e.action));
        }
        {
            let mut ahead = u.withdrawn_all();
            ahead
                .by_ref()
                .take(LOOKAHEAD)
                .for_each(|n| self.rib.prefetch(&n.prefix));
            for n in u.withdrawn_all() {
                if let Some(a) = ahead.next() {
                    self.rib.prefetch(&a.prefix);
                }
                self.rib.withdraw(id, &n.prefix);
                if !p.rejected.is_empty() {
                    p.rejected.remove(&n.prefix);
                }
            }
        }
        if verdict == Verdict::TreatAsWithdraw {
            return;
        }
        let announced =
            u.nlri.len() + u.mp_reach.as_ref().map_or(0, |m| m.nlri.len());
        if announced == 0 {
            return;
        }
        // RFC 6793 4.2.3: rebuild the 4-octet path on a 2-octet session.
        if !s.neg.four_octet_as {
            u.attrs.merge_as4();
        }
        let loop_ok = policy::import_loop_check(&s.policy, &u.attrs);
        let mut attrs =
            policy::import_attrs(&s.policy, std::mem::take(&mut u.attrs));
        attrs.pass_on_unknown();
        let v4_nh = attrs.next_hop.take().map(NextHop::V4);
        let policy = s.policy.clone();
        let mut batches = Vec::new();
        if !u.nlri.is_empty() {
            batches.push((v4_nh, std::mem::take(&mut u.nlri)));
        }
        if let Some(mp) = u.mp_reach.take() {
            batches.push((Some(mp.next_hop), mp.nlri));
        }
        for (nh, nlri) in batches {
            let shared = self.rib.intern(Attrs {
                path: attrs.clone(),
                next_hop: nh,
            });
            nlri.iter()
                .take(LOOKAHEAD)
                .for_each(|n| self.rib.prefetch(&n.prefix));
            for (i, n) in nlri.iter().enumerate() {
                if let Some(a) = nlri.get(i + LOOKAHEAD) {
                    self.rib.prefetch(&a.prefix);
                }
                let verdict = loop_ok.and_then(|()| {
                    policy::import_prefix(
                        &policy,
                        &self.global,
                        &n.prefix,
                        &attrs,
                    )
                });
                if let Err(why) = verdict {
                    p.rejected.insert(n.prefix, why);
                } else if !p.rejected.is_empty() {
                    p.rejected.remove(&n.prefix);
                }
                match verdict {
                    Ok([]) => self.rib.update(id, n.prefix, shared.clone()),
                    Ok(ops) => {
                        // A filter rewrote this route: its own (interned)
                        // attribute set.
                        let mut path = attrs.clone();
                        ops.iter().for_each(|op| op.apply(&mut path));
                        let own = self.rib.intern(Attrs {
                            path,
                            next_hop: shared.next_hop,
                        });
                        self.rib.update(id, n.prefix, own)
                    }
                    // Rejected: an implicit withdraw of what we had.
                    Err(_) => self.rib.withdraw(id, &n.prefix),
                };
            }
        }
        self.check_max_prefix(id);
    }

    /// Margay's max-prefix limit: RFC 4486 Cease / Maximum Number of
    /// Prefixes Reached, then the routes go with the session, which stays
    /// Idle (see `Speaker::hold_idle`).
    fn check_max_prefix(&mut self, id: PeerId) {
        let count = self.rib.count_from(id);
        let p = self.peers.get_mut(&id).expect("caller checked");
        let Some(limit) = p.cfg.max_prefixes else {
            return;
        };
        if count as u64 <= u64::from(limit) {
            return;
        }
        tracing::warn!(peer = %p.cfg.name, count, limit, "maximum prefixes exceeded");
        let fam = p
            .cfg
            .families
            .first()
            .copied()
            .unwrap_or(Family::IPV4_UNICAST);
        let n = NotificationMsg::max_prefixes(
            fam.afi.into(),
            fam.safi.into(),
            limit,
        );
        self.counters.max_prefix_ceases += 1;
        let restart = p.cfg.max_prefixes_restart;
        let reason = format!("maximum prefixes exceeded ({count} > {limit})");
        self.hold_idle(id, n, reason, restart);
    }

    /// The FSM reached Established.
    fn process_session_up(&mut self, id: PeerId, neg: crate::caps::Negotiated) {
        let p = self.peers.get_mut(&id).expect("caller checked");
        let Some(conn) = p.nbr.established().and_then(|f| f.conn()) else {
            return;
        };
        let info = p.conns.get(&conn);
        let local = info.and_then(|i| i.local);
        let (rx, tx) =
            match (&p.sent_open, info.and_then(|i| i.open_rx.as_ref())) {
                (Some(ours), Some(theirs)) => bgp_wire::negotiate(ours, theirs),
                _ => (DecodeCxt::default(), DecodeCxt::default()),
            };
        let mut policy = p.cfg.policy.clone();
        policy.local_addr = local;
        policy.ext_next_hop = neg.ipv4_over_ipv6_nh;
        tracing::info!(peer = %p.cfg.name, families = ?neg.families, hold = neg.hold_time, cluster_id = ?policy.cluster_id, rr_client = policy.rr_client, "session established");
        self.rib.set_source(
            id,
            SourceInfo {
                ebgp: !neg.ibgp,
                router_id: neg.remote_id,
                addr: p.cfg.addr,
            },
        );
        let peer_gr = neg.peer_gr.clone();
        p.session = Some(Session {
            conn,
            neg,
            rx,
            tx,
            policy,
            send_eor: true,
        });
        p.advertised = 0;
        // What went wrong before (a refused connect, an earlier reset) is
        // history once the session is up; `node status` would otherwise
        // show "Established" next to a stale error.
        p.last_error = None;
        if p.gr_stale {
            match peer_gr {
                // RFC 4724 4.2: no GR capability in the new OPEN, or the
                // forwarding state was not kept: "MUST immediately remove
                // all the stale routes".
                None => self.purge_stale(id, None),
                Some(g) => {
                    let fams = self.peers[&id].cfg.families.clone();
                    for f in fams {
                        let kept = g
                            .families
                            .iter()
                            .any(|g| g.family == f && g.forwarding_preserved);
                        if !kept {
                            self.purge_stale(id, Some(f));
                        }
                    }
                }
            }
        }
        self.reexport_peer(id);
        // This peer may be one a restarting speaker need not wait for.
        self.check_deferral();
    }

    /// The session left Established: withdraw its routes, or keep them
    /// stale when the peer can restart gracefully (RFC 4724 4.2).
    fn process_session_down(&mut self, id: PeerId, reason: &DownReason) {
        let p = self.peers.get_mut(&id).expect("caller checked");
        let Some(s) = p.session.take() else {
            return;
        };
        p.pending.clear();
        p.rejected.clear();
        p.advertised = 0;
        self.rib.clear_advertised(id as usize);
        let gr = s.neg.peer_gr.as_ref().filter(|g| g.restart_time > 0);
        if let (true, Some(g)) = (reason.is_graceful(), gr) {
            let n = self.rib.mark_stale(id);
            p.gr_stale = true;
            tracing::info!(peer = %p.cfg.name, routes = n, restart_time = g.restart_time, "peer restarting: routes kept stale");
            // RFC 4724 4.2: "If the session does not get re-established
            // within the 'Restart Time' ... the Receiving Speaker MUST
            // delete all the stale routes".
            self.out.push(Output::ArmTimer(
                TimerKey {
                    peer: id,
                    kind: TimerKind::GrStale,
                },
                Duration::from_secs(g.restart_time.into()),
            ));
        } else {
            p.gr_stale = false;
            self.rib.remove_peer(id, false);
        }
    }

    /// Ask an established peer to resend everything (RFC 2918), or restart
    /// the session when it cannot.
    pub(crate) fn request_refresh(&mut self, id: PeerId) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(s) = p.session.as_ref() else {
            return;
        };
        if s.neg.route_refresh {
            let conn = s.conn;
            let mut out = bytes::BytesMut::new();
            for f in s.neg.families.clone() {
                let m = bgp_wire::RouteRefreshMsg::request(f);
                let _ = Message::RouteRefresh(m).encode(&s.tx, &mut out);
            }
            self.out.push(Output::Send {
                peer: id,
                conn,
                bytes: out.freeze(),
            });
        } else {
            let conn = s.conn;
            let n = NotificationMsg::cease(CeaseSubcode::OtherConfigChange);
            let acts = p.nbr.conn_event(conn, Event::MessageError(n));
            self.apply(id, acts);
        }
    }

    /// Whether peer `id` is established.
    pub fn is_established(&self, id: PeerId) -> bool {
        self.peers
            .get(&id)
            .is_some_and(|p| p.state == State::Established)
    }
}
