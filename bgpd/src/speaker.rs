//! The whole speaker as one sans-IO object: peers (each a [`Neighbor`]),
//! the RIB, policy and graceful restart. The IO layer feeds it TCP events,
//! frames and timer expiries and performs the [`Output`]s it returns.
//! Message handling is in `events.rs`, UPDATE generation in `export.rs`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bgp_wire::{
    Afi, Capability, CeaseSubcode, DecodeCxt, ExtNextHop, Family, GrFamily,
    GracefulRestartCap, NotificationMsg, OpenMsg,
};
use bytes::Bytes;
use foldhash::fast::RandomState;
use ipnetwork::IpNetwork;
use margay_ctlproto::{
    HeldIdle, PeerStatus, PeerType, RejectedRoute, RibEvent,
};
use serde::{Deserialize, Serialize};

use crate::bfd::client::BfdSessions;
use crate::caps::Negotiated;
use crate::events::Ctx;
use crate::fsm::{self, ConnId, FsmConfig, State};
use crate::neighbor::{NbrAction, Neighbor};
use crate::policy::{GlobalPolicy, ImportReject, SessionPolicy};
use crate::rib::{Attrs, LOCAL, PeerId, Rib};

/// Everything configured about one peer. Two equal configs mean the
/// session need not change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCfg {
    /// Calico-style name: `Mesh_<ip>`, `Global_<ip>`, `Node_<ip>[_port_<n>]`.
    pub name: String,
    pub peer_type: PeerType,
    pub addr: IpAddr,
    pub port: u16,
    pub local_as: u32,
    pub remote_as: u32,
    pub passive: bool,
    pub hold_time: u16,
    pub keepalive: u16,
    pub connect_retry: Duration,
    /// RFC 2385 TCP MD5 key (at most 80 octets).
    pub password: Option<String>,
    /// RFC 5082 GTSM: the peer is at most this many hops away.
    pub ttl_security: Option<u8>,
    /// Our source address for outgoing connections.
    pub source_addr: Option<IpAddr>,
    /// RFC 4724 restart time we advertise (`maxRestartTime`).
    pub restart_time: u16,
    pub max_prefixes: Option<u32>,
    /// After a max-prefix Cease the session stays Idle this long, then
    /// restarts; `None`: until an explicit reset (`margayctl node reset`).
    pub max_prefixes_restart: Option<Duration>,
    pub families: Vec<Family>,
    /// Import/export policy (`local_addr` is filled in per connection).
    pub policy: SessionPolicy,
}

impl PeerCfg {
    /// Whether `other` differs only in policy (which applies without a
    /// session restart).
    pub fn same_session(&self, other: &PeerCfg) -> bool {
        let strip = |c: &PeerCfg| {
            let mut c = c.clone();
            c.policy.import = Default::default();
            c.policy.export = Default::default();
            c.max_prefixes = None;
            c.max_prefixes_restart = None;
            c
        };
        strip(self) == strip(other)
    }
}

/// Speaker-wide settings.
#[derive(Debug, Clone)]
pub struct SpeakerCfg {
    pub router_id: Ipv4Addr,
    /// Started with graceful-restart recovery (BIRD's `-R`): until the
    /// selection deferral ends, OPENs set the Restart State bit and the
    /// forwarding state preserved flags (RFC 4724 4.1), since felix-lite
    /// kept the FIB, and no UPDATE goes out (see `restart.rs`).
    pub restarting: bool,
    /// RFC 4724 4.1 Selection_Deferral_Timer: the longest a restarting
    /// speaker waits for its peers' End-of-RIB.
    pub select_defer: Duration,
    /// Idle time after a session error before AutomaticStart.
    pub idle_hold: Duration,
}

/// A timer the IO layer runs for the speaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TimerKey {
    pub peer: PeerId,
    pub kind: TimerKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TimerKind {
    /// An FSM timer of FSM instance `.0`.
    Fsm(u64, fsm::Timer),
    /// RFC 4724 4.2 restart / stale-routes timer of a helper.
    GrStale,
    /// RFC 4724 4.1 Selection_Deferral_Timer (key's `peer` is `LOCAL`).
    SelectionDeferral,
    /// A timer of the BFD session with local discriminator `.0` (the
    /// key's `peer` is then `LOCAL`: BFD sessions outlive BGP peers).
    Bfd(u32, crate::bfd::session::Timer),
    /// The end of a held-Idle period (`max_prefixes_restart`).
    HeldRestart,
}

/// Why a session is held Idle (no automatic restart, connections from
/// the peer refused), and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Held {
    pub reason: String,
    /// When it restarts by itself; `None`: only on an explicit reset.
    pub until: Option<SystemTime>,
}

/// How to open a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectSpec {
    pub remote: SocketAddr,
    pub source: Option<IpAddr>,
    pub password: Option<String>,
    pub ttl_security: Option<u8>,
}

/// What the IO layer must do. Serializable for the replay logs
/// (`tests/replay`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Output {
    Connect {
        peer: PeerId,
        conn: ConnId,
        spec: ConnectSpec,
    },
    Send {
        peer: PeerId,
        conn: ConnId,
        #[serde(with = "crate::replay::hex")]
        bytes: Bytes,
    },
    Close {
        peer: PeerId,
        conn: ConnId,
    },
    ArmTimer(TimerKey, Duration),
    StopTimer(TimerKey),
    /// A best-route change for control-socket subscribers.
    Rib(RibEvent),
    /// The listener must accept (and MD5-sign) this peer, or not.
    ListenPeer {
        addr: IpAddr,
        password: Option<String>,
        ttl_security: Option<u8>,
        add: bool,
    },
    /// Open the UDP socket of BFD session `discr` (RFC 5881: source port
    /// 49152-65535, TTL 255).
    BfdOpen {
        discr: u32,
        local: Option<IpAddr>,
        remote: IpAddr,
    },
    /// Send a BFD Control packet on session `discr`'s socket.
    BfdSend {
        discr: u32,
        #[serde(with = "crate::replay::hex")]
        bytes: Bytes,
    },
    /// Close session `discr`'s socket (it was taken AdminDown).
    BfdClose {
        discr: u32,
    },
}

/// Counters for the metrics endpoint.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub updates_in: u64,
    pub updates_out: u64,
    pub fsm_transitions: u64,
    /// BFD sessions that went Down while the BGP session or its stale
    /// routes depended on them (RFC 5882: each one acted on).
    pub bfd_downs: u64,
    /// Sessions ended with Cease / Maximum Number of Prefixes Reached.
    pub max_prefix_ceases: u64,
}

/// Per-connection facts.
#[derive(Debug, Default)]
pub(crate) struct ConnInfo {
    pub local: Option<IpAddr>,
    pub open_rx: Option<OpenMsg>,
}

/// The established session's facts.
#[derive(Debug)]
pub(crate) struct Session {
    pub conn: ConnId,
    pub neg: Negotiated,
    pub rx: DecodeCxt,
    pub tx: DecodeCxt,
    pub policy: SessionPolicy,
    /// Initial table dump queued; End-of-RIB follows it (RFC 4724 2).
    pub send_eor: bool,
}

/// One configured peer.
#[derive(Debug)]
pub(crate) struct Peer {
    pub id: PeerId,
    pub cfg: PeerCfg,
    pub nbr: Neighbor,
    pub state: State,
    pub since: SystemTime,
    pub last_error: Option<String>,
    pub conns: HashMap<ConnId, ConnInfo>,
    pub sent_open: Option<OpenMsg>,
    pub session: Option<Session>,
    /// Helper side of RFC 4724: our copy of its routes is stale.
    pub gr_stale: bool,
    /// Held Idle after a max-prefix Cease (RFC 4486 subcode 1).
    pub held: Option<Held>,
    /// The prefixes of this session that import refused, and why: with
    /// the accepted ones in the RIB, what the peer announces now. Kept
    /// until the peer withdraws or re-announces the prefix, or the session
    /// ends; empty (and never touched) while import refuses nothing.
    pub rejected: HashMap<IpNetwork, ImportReject>,
    pub advertised: u64,
    /// Announce (Some) or withdraw (None), flushed by `export.rs`.
    pub pending: Vec<(IpNetwork, Option<Arc<Attrs>>)>,
    /// `pending` outlived a pack (selection deferral) and may hold more
    /// than one decision per prefix.
    pub pending_held: bool,
}

impl Peer {
    /// Hold the peer Idle after we ended its session with `n`: no
    /// automatic restart, its connections refused, until `restart_after`
    /// (if any) or an explicit [`Speaker::reset_peer`]. Operators expect
    /// this after a max-prefix Cease (FRR's `maximum-prefix N restart M`):
    /// reconnecting at once would take the full table again and again.
    /// Returns the FSM actions of the stop.
    fn hold_idle(
        &mut self,
        n: NotificationMsg,
        reason: String,
        restart_after: Option<Duration>,
        cx: &mut Ctx<'_>,
    ) -> Vec<NbrAction> {
        let acts = self.nbr.stop_with(n);
        let until = restart_after.map(|d| cx.now + d);
        tracing::warn!(peer = %self.cfg.name, ?restart_after, "{reason}: session held Idle");
        self.held = Some(Held { reason, until });
        if let Some(d) = restart_after {
            cx.out.push(Output::ArmTimer(
                TimerKey {
                    peer: self.id,
                    kind: TimerKind::HeldRestart,
                },
                d,
            ));
        }
        acts
    }

    /// End a held-Idle period; returns the FSM actions of the start, or
    /// `None` when the peer was not held.
    fn release_held(&mut self, cx: &mut Ctx<'_>) -> Option<Vec<NbrAction>> {
        self.held.take()?;
        tracing::info!(peer = %self.cfg.name, "held Idle period over: starting");
        cx.out.push(Output::StopTimer(TimerKey {
            peer: self.id,
            kind: TimerKind::HeldRestart,
        }));
        Some(self.nbr.start(self.cfg.passive))
    }
}

/// The speaker.
#[derive(Debug)]
pub struct Speaker {
    cfg: SpeakerCfg,
    pub(crate) global: GlobalPolicy,
    pub(crate) peers: BTreeMap<PeerId, Peer>,
    next_id: PeerId,
    pub(crate) rib: Rib,
    local_routes: HashSet<IpNetwork, RandomState>,
    local_attrs: Arc<Attrs>,
    /// Produce RIB-stream events (see `Speaker::set_rib_stream`).
    pub(crate) rib_stream: bool,
    pub(crate) out: Vec<Output>,
    pub(crate) bfd: BfdSessions,
    /// RFC 4724 4.1: selection deferred while restarting.
    pub(crate) deferral: Option<crate::restart::Deferral>,
    pub counters: Counters,
    /// The wall clock as of the latest input ([`Speaker::tick`]): the
    /// core never reads the clock itself, so a recorded event log
    /// replays to the same outputs.
    pub(crate) now: SystemTime,
}

// ===== impl Speaker =====

impl Speaker {
    pub fn new(cfg: SpeakerCfg) -> Speaker {
        let mut rib = Rib::new();
        let local_attrs = rib.intern(Attrs::local());
        let (deferral, out) = crate::restart::start(&cfg);
        Speaker {
            cfg,
            global: GlobalPolicy::default(),
            peers: BTreeMap::new(),
            next_id: LOCAL + 1,
            rib,
            local_routes: HashSet::default(),
            local_attrs,
            rib_stream: true,
            out,
            bfd: BfdSessions::default(),
            deferral,
            counters: Counters::default(),
            now: UNIX_EPOCH,
        }
    }

    /// The wall clock moved to `now`. The IO layer calls this before
    /// each input; `now` stamps state changes (`since`) and held-Idle
    /// restart times, nothing else.
    pub fn tick(&mut self, now: SystemTime) {
        self.now = now;
    }

    pub fn router_id(&self) -> Ipv4Addr {
        self.cfg.router_id
    }

    /// Take the outputs accumulated so far.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.out)
    }

    pub fn rib(&self) -> &Rib {
        &self.rib
    }

    /// Replace the speaker-wide policy (pools, communities); re-exports.
    pub fn set_global(&mut self, global: GlobalPolicy) {
        if global != self.global {
            self.global = global;
            self.reexport_all();
        }
    }

    /// Replace the set of originated prefixes (own blocks, borrowed IPs).
    pub fn set_local_routes(&mut self, routes: HashSet<IpNetwork>) {
        let gone: Vec<IpNetwork> = self
            .local_routes
            .iter()
            .filter(|p| !routes.contains(*p))
            .copied()
            .collect();
        for p in gone {
            self.local_routes.remove(&p);
            self.rib.withdraw(LOCAL, &p);
        }
        for p in routes {
            if self.local_routes.insert(p) {
                let a = self.local_attrs.clone();
                self.rib.update(LOCAL, p, a);
            }
        }
    }

    /// Apply a new peer set: removed peers stop (Cease / Peer
    /// De-configured), changed ones restart (Other Configuration Change),
    /// policy-only changes apply in place, new ones start.
    pub fn set_peers(&mut self, cfgs: Vec<PeerCfg>) {
        let mut wanted: HashMap<String, PeerCfg> =
            cfgs.into_iter().map(|c| (c.name.clone(), c)).collect();
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            let name = self.peers[&id].cfg.name.clone();
            match wanted.remove(&name) {
                None => self.remove_peer(id, CeaseSubcode::PeerDeconfigured),
                Some(c) if c == self.peers[&id].cfg => {}
                Some(c) if c.same_session(&self.peers[&id].cfg) => {
                    self.update_policy(id, c)
                }
                Some(c) => {
                    self.remove_peer(id, CeaseSubcode::OtherConfigChange);
                    self.add_peer(c);
                }
            }
        }
        let mut rest: Vec<PeerCfg> = wanted.into_values().collect();
        rest.sort_by(|a, b| a.name.cmp(&b.name));
        for c in rest {
            self.add_peer(c);
        }
        // A removed peer may have been the last one deferral waited for.
        self.check_deferral();
    }

    fn add_peer(&mut self, cfg: PeerCfg) {
        let id = self.next_id;
        self.next_id += 1;
        let fsm_cfg = FsmConfig {
            local_as: cfg.local_as,
            remote_as: cfg.remote_as,
            router_id: self.cfg.router_id,
            hold_time: cfg.hold_time,
            keepalive: cfg.keepalive,
            connect_retry: cfg.connect_retry,
            idle_hold: self.cfg.idle_hold,
            caps: self.our_caps(&cfg),
        };
        let mut nbr = Neighbor::new(fsm_cfg);
        let acts = nbr.start(cfg.passive);
        self.out.push(Output::ListenPeer {
            addr: cfg.addr,
            password: cfg.password.clone(),
            ttl_security: cfg.ttl_security,
            add: true,
        });
        tracing::info!(peer = %cfg.name, addr = %cfg.addr, "peer added");
        self.peers.insert(
            id,
            Peer {
                id,
                cfg,
                nbr,
                state: State::Idle,
                since: self.now,
                last_error: None,
                conns: HashMap::new(),
                sent_open: None,
                session: None,
                gr_stale: false,
                held: None,
                rejected: HashMap::new(),
                advertised: 0,
                pending: Vec::new(),
                pending_held: false,
            },
        );
        self.apply(id, acts);
    }

    /// The capabilities of our OPENs to the peer of `cfg`. While the
    /// restart is in progress (selection deferred) they carry the Restart
    /// State bit and "forwarding state preserved" for every family (RFC
    /// 4724 4.1), since felix-lite kept the FIB.
    /// In the order they are sent: MP per family, ROUTE-REFRESH, 4-octet
    /// AS, GR, extended next hop.
    pub(crate) fn our_caps(&self, cfg: &PeerCfg) -> Vec<Capability> {
        let restarting = self.deferral.is_some();
        let mut caps: Vec<Capability> = cfg
            .families
            .iter()
            .map(|f| Capability::MultiProtocol(*f))
            .collect();
        caps.push(Capability::RouteRefresh);
        caps.push(Capability::FourOctetAs(cfg.local_as));
        caps.push(Capability::GracefulRestart(GracefulRestartCap {
            restart_state: restarting,
            notification: false,
            // RFC 4724 3: a 12-bit field.
            restart_time: cfg.restart_time.min(4095),
            families: cfg
                .families
                .iter()
                .map(|f| GrFamily {
                    family: *f,
                    forwarding_preserved: restarting,
                })
                .collect(),
        }));
        let enh = ext_next_hop_families(cfg);
        if !enh.is_empty() {
            caps.push(Capability::ExtendedNextHop(
                enh.into_iter()
                    .map(|family| ExtNextHop {
                        family,
                        next_hop_afi: Afi::Ipv6,
                    })
                    .collect(),
            ));
        }
        caps
    }

    fn remove_peer(&mut self, id: PeerId, subcode: CeaseSubcode) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let acts = p.nbr.stop(subcode, None);
        self.apply(id, acts);
        let Some(p) = self.peers.remove(&id) else {
            return;
        };
        tracing::info!(peer = %p.cfg.name, "peer removed");
        self.out.push(Output::ListenPeer {
            addr: p.cfg.addr,
            password: None,
            ttl_security: None,
            add: false,
        });
        for kind in [TimerKind::GrStale, TimerKind::HeldRestart] {
            self.out
                .push(Output::StopTimer(TimerKey { peer: id, kind }));
        }
        self.rib.remove_peer(id, false);
        self.rib.clear_advertised(id as usize);
    }

    fn update_policy(&mut self, id: PeerId, cfg: PeerCfg) {
        let p = self.peers.get_mut(&id).expect("caller checked");
        let import_changed = p.cfg.policy.import != cfg.policy.import;
        let local = p.session.as_ref().and_then(|s| s.policy.local_addr);
        p.cfg = cfg;
        if let Some(s) = p.session.as_mut() {
            s.policy = p.cfg.policy.clone();
            s.policy.local_addr = local;
            s.policy.ext_next_hop = s.neg.ipv4_over_ipv6_nh;
        }
        if import_changed {
            // Routes rejected before may be accepted now: ask the peer to
            // resend (RFC 2918), which re-runs import on everything.
            self.request_refresh(id);
        }
        self.reexport_peer(id);
    }

    /// The peer table for the control socket.
    pub fn peer_status(&self) -> Vec<PeerStatus> {
        self.peers
            .values()
            .map(|p| (p, self.rib.count_from(p.id)))
            .map(|(p, accepted)| PeerStatus {
                name: p.cfg.name.clone(),
                peer_type: p.cfg.peer_type,
                address: p.cfg.addr,
                port: p.cfg.port,
                local_as: p.cfg.local_as,
                remote_as: p.cfg.remote_as,
                state: p.state.name().to_string(),
                since_unix: p
                    .since
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                prefixes_received: (accepted + p.rejected.len()) as u64,
                prefixes_accepted: accepted as u64,
                prefixes_advertised: p.advertised,
                last_error: p.last_error.clone(),
                bfd_state: self
                    .bfd_state(&p.cfg.name)
                    .map(|s| s.name().to_string()),
                held_idle: p.held.as_ref().map(|h| HeldIdle {
                    reason: h.reason.clone(),
                    restart_unix: h.until.map(|t| {
                        t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
                    }),
                }),
            })
            .collect()
    }

    /// The routes import refused, for the control socket: all of them, or
    /// those whose prefix holds `address`.
    pub fn rejected_routes(
        &self,
        address: Option<IpAddr>,
    ) -> Vec<RejectedRoute> {
        let mut routes: Vec<RejectedRoute> = self
            .peers
            .values()
            .flat_map(|p| {
                p.rejected
                    .iter()
                    .filter(move |(n, _)| address.is_none_or(|a| n.contains(a)))
                    .map(|(n, why)| RejectedRoute {
                        peer: p.cfg.name.clone(),
                        address: p.cfg.addr,
                        prefix: *n,
                        reason: why.to_string(),
                    })
            })
            .collect();
        routes.sort_by(|a, b| (a.prefix, &a.peer).cmp(&(b.prefix, &b.peer)));
        routes
    }

    /// Sessions per state, for metrics.
    pub fn states(&self) -> Vec<(State, usize)> {
        State::ALL
            .iter()
            .map(|s| {
                (*s, self.peers.values().filter(|p| p.state == *s).count())
            })
            .collect()
    }

    /// Sessions held Idle (see [`Speaker::hold_idle`]), for metrics.
    pub fn held_idle_count(&self) -> usize {
        self.peers.values().filter(|p| p.held.is_some()).count()
    }

    /// A timer fired.
    pub fn on_timer(&mut self, key: TimerKey) {
        match key.kind {
            TimerKind::Fsm(fsm_id, t) => {
                let Some(p) = self.peers.get_mut(&key.peer) else {
                    return;
                };
                let acts = p.nbr.timer(fsm_id, t);
                self.apply(key.peer, acts);
            }
            TimerKind::GrStale => self.purge_stale(key.peer, None),
            TimerKind::SelectionDeferral => {
                self.end_deferral("selection deferral timer expired")
            }
            TimerKind::Bfd(discr, t) => self.on_bfd_timer(discr, t),
            TimerKind::HeldRestart => self.release_held(key.peer),
        }
    }

    /// Hold peer `id` Idle after we ended its session with `n` (see
    /// [`Peer::hold_idle`]).
    pub(crate) fn hold_idle(
        &mut self,
        id: PeerId,
        n: NotificationMsg,
        reason: String,
        restart_after: Option<Duration>,
    ) {
        let Some((p, mut cx)) = self.peer_ctx(id) else {
            return;
        };
        let acts = p.hold_idle(n, reason, restart_after, &mut cx);
        self.apply(id, acts);
    }

    /// End a held-Idle period: start the session again.
    fn release_held(&mut self, id: PeerId) {
        let Some((p, mut cx)) = self.peer_ctx(id) else {
            return;
        };
        if let Some(acts) = p.release_held(&mut cx) {
            self.apply(id, acts);
        }
    }

    /// `margayctl node reset PEER` (by name or address): a held-Idle
    /// session starts again; any other is reset with Cease /
    /// Administrative Reset (RFC 4486) and reconnects by itself. Returns
    /// what was done, or why nothing was.
    pub fn reset_peer(&mut self, which: &str) -> Result<String, String> {
        let found: Vec<PeerId> = self
            .peers
            .values()
            .filter(|p| p.cfg.name == which || p.cfg.addr.to_string() == which)
            .map(|p| p.id)
            .collect();
        let id = match found[..] {
            [id] => id,
            [] => {
                return Err(format!(
                    "no peer named or at {which:?}; see `margayctl node status -o wide`"
                ));
            }
            _ => {
                return Err(format!(
                    "{which:?} is the address of {} peers; give the name",
                    found.len()
                ));
            }
        };
        let p = self.peers.get_mut(&id).expect("found");
        let name = p.cfg.name.clone();
        if p.held.is_some() {
            self.release_held(id);
            return Ok(format!("{name}: held Idle session started"));
        }
        p.last_error = None;
        match p.nbr.established().and_then(|f| f.conn()) {
            Some(conn) => {
                let n = NotificationMsg::cease(CeaseSubcode::AdminReset);
                let acts = p.nbr.conn_event(conn, fsm::Event::MessageError(n));
                self.apply(id, acts);
                Ok(format!(
                    "{name}: session reset (Cease / Administrative Reset)"
                ))
            }
            None => Ok(format!("{name}: not Established; nothing to reset")),
        }
    }

    /// RFC 4724 4.2: the restart time ran out or End-of-RIB arrived:
    /// delete the peer's routes that are still stale (one family or all).
    pub(crate) fn purge_stale(&mut self, id: PeerId, family: Option<Family>) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        if !p.gr_stale {
            return;
        }
        let removed = match family {
            None => self.rib.remove_peer(id, true),
            Some(f) => self.rib.remove_peer_where(id, true, |n| {
                n.is_ipv4() == (f == Family::IPV4_UNICAST)
            }),
        };
        tracing::info!(peer = %p.cfg.name, removed, "stale routes purged");
        // Done when nothing of this peer is stale any more (all families
        // had their End-of-RIB, or the timer fired).
        if family.is_none() || !self.rib.has_stale(id) {
            p.gr_stale = false;
            self.out.push(Output::StopTimer(TimerKey {
                peer: id,
                kind: TimerKind::GrStale,
            }));
        }
    }

    /// A TCP connection from `remote` was accepted; returns the peer and
    /// connection id to use, or `None` (the IO layer closes it).
    pub fn on_accept(
        &mut self,
        remote: IpAddr,
        local: IpAddr,
    ) -> Option<(PeerId, ConnId)> {
        let id = self
            .peers
            .values()
            .find(|p| p.cfg.addr == remote)
            .map(|p| p.id)?;
        let p = self.peers.get_mut(&id).expect("found");
        let conn = p.nbr.new_conn_id();
        p.conns.insert(
            conn,
            ConnInfo {
                local: Some(local),
                open_rx: None,
            },
        );
        let acts = p.nbr.incoming(conn);
        self.apply(id, acts);
        Some((id, conn))
    }

    /// bgpd stops for good (not a restart): every session ends with a
    /// Cease / Administrative Shutdown (RFC 4486) carrying `message` as its
    /// shutdown communication (RFC 9003, which obsoletes RFC 8203), so the
    /// peers withdraw our routes at once instead of keeping them stale
    /// for the restart time. RFC 4724 4.2: a NOTIFICATION ends the
    /// helper's retention. We never advertise the RFC 8538 N bit, so no
    /// peer treats a Cease as graceful and no Hard Reset is needed.
    pub fn shutdown(&mut self, message: &str) {
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            let Some(p) = self.peers.get_mut(&id) else {
                continue;
            };
            tracing::info!(peer = %p.cfg.name, "administrative shutdown");
            let acts = p.nbr.stop(CeaseSubcode::AdminShutdown, Some(message));
            self.apply(id, acts);
        }
    }

    /// A connection from `remote` was refused before reaching the FSM
    /// (e.g. RFC 5082 GTSM): shown as the peer's last error unless its
    /// session is up on another connection.
    pub fn note_refused(&mut self, remote: IpAddr, why: &str) {
        if let Some(p) = self.peers.values_mut().find(|p| p.cfg.addr == remote)
            && p.state != State::Established
        {
            p.last_error = Some(why.to_string());
        }
    }

    /// The outcome of a `Connect` output.
    pub fn on_connected(
        &mut self,
        peer: PeerId,
        conn: ConnId,
        result: Result<IpAddr, String>,
    ) {
        let Some(p) = self.peers.get_mut(&peer) else {
            self.out.push(Output::Close { peer, conn });
            return;
        };
        let acts = match result {
            Ok(local) => {
                p.conns.entry(conn).or_default().local = Some(local);
                p.nbr.connected(conn, true)
            }
            Err(e) => {
                // A late attempt may fail while the session is up on a
                // connection the peer started: not an error of the session.
                if p.state != State::Established {
                    p.last_error = Some(format!("connect: {e}"));
                }
                p.conns.remove(&conn);
                p.nbr.connected(conn, false)
            }
        };
        self.apply(peer, acts);
    }

    /// The connection closed or failed.
    pub fn on_closed(&mut self, peer: PeerId, conn: ConnId, why: &str) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.conns.remove(&conn).is_none() {
            return;
        }
        if p.state == State::Established {
            p.last_error = Some(format!("connection closed: {why}"));
        }
        let acts = p.nbr.conn_event(conn, fsm::Event::TcpFailed(conn));
        self.apply(peer, acts);
    }
}

/// RFC 8950 section 3: the NLRI families we offer with an IPv6 next hop.
/// An IPv6 session that carries IPv4 unicast offers it, since it has
/// no IPv4 address of its own to use as next hop.
fn ext_next_hop_families(cfg: &PeerCfg) -> Vec<Family> {
    if cfg.addr.is_ipv6() && cfg.families.contains(&Family::IPV4_UNICAST) {
        vec![Family::IPV4_UNICAST]
    } else {
        vec![]
    }
}
