//! From Loc-RIB changes to outgoing UPDATEs and RIB-stream events.
//!
//! The RIB queues changed prefixes; [`Speaker::flush`] runs export
//! policy per update group of established peers (peers that would get
//! the same bytes share that work, `groups.rs`), queues announcements
//! and withdrawals, and packs every queue into as few UPDATEs as
//! possible: prefixes sharing one exported attribute set go into the
//! same messages.

mod groups;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use bgp_wire::{Message, Nlri, UpdateMsg};
use bytes::{Bytes, BytesMut};
use foldhash::fast::RandomState;
use ipnetwork::IpNetwork;
use margay_ctlproto::{RibEntry, RibEvent, RibPath};

use crate::decision::RouteCmp;
use crate::policy::{self, GlobalPolicy, Origin};
use crate::rib::{Attrs, Entry, LOCAL, Path, PeerId, Sources};
use crate::speaker::{Output, Peer, Session, Speaker};
use bgp_wire::Family;

/// Cache of exported attribute sets for one flush: (source set, peer,
/// which prefix-community rules matched) -> rewritten set.
type ExportCache =
    HashMap<(usize, PeerId, u64, usize), Arc<Attrs>, RandomState>;

/// Changed prefixes exported per [`Speaker::flush_some`] turn: bounds the
/// memory of one turn's queues (a million-prefix burst is exported in
/// slices, not all at once) and lets the IO layer send between turns.
pub const FLUSH_CHUNK: usize = 16384;

impl Speaker {
    /// Export every changed prefix: RIB-stream events and UPDATEs.
    pub fn flush(&mut self) {
        while self.flush_some(FLUSH_CHUNK) {}
    }

    /// Export up to `max` changed prefixes, oldest first, and pack the
    /// UPDATEs; true when more changes wait.
    pub fn flush_some(&mut self, max: usize) -> bool {
        // While selection is deferred every queue is held and packed on
        // its own later (`end_deferral`): no sharing then.
        let mut groups = groups::form(&self.peers, self.deferral.is_none());
        let mut cache = ExportCache::default();
        let Speaker {
            rib,
            peers,
            global,
            out,
            rib_stream,
            ..
        } = self;
        let n = rib.drain_changed(max, |prefix, entry, sources| {
            if *rib_stream {
                out.push(rib_event(prefix, entry));
            }
            for g in &mut groups {
                g.export(peers, global, sources, prefix, entry, &mut cache);
            }
        });
        self.pack_groups(groups);
        if n > 0 {
            self.rib.gc_interned();
        }
        self.rib.has_changes()
    }

    /// Encode each shared queue once and send the same bytes to every
    /// member, then pack each peer's own queue; in peer order, as
    /// without groups.
    fn pack_groups(&mut self, groups: Vec<groups::Group>) {
        let mut shared: BTreeMap<PeerId, (Bytes, usize)> = BTreeMap::new();
        for mut g in groups {
            for (id, d) in g.members.iter().zip(&g.advertised) {
                if let Some(p) = self.peers.get_mut(id) {
                    p.advertised = p.advertised.saturating_add_signed(*d);
                }
            }
            let lead = g.members[0];
            if g.pending.is_empty() {
                for id in g.members {
                    shared.insert(id, (Bytes::new(), 0));
                }
                continue;
            }
            let Some(p) = self.peers.get(&lead) else {
                continue;
            };
            let Some(s) = p.session.as_ref() else {
                continue;
            };
            let mut buf = BytesMut::new();
            let msgs = encode(&mut g.pending, s, &p.cfg.name, &mut buf);
            let bytes = buf.freeze();
            for id in g.members {
                shared.insert(id, (bytes.clone(), msgs));
            }
        }
        for (id, (bytes, msgs)) in shared {
            if !bytes.is_empty()
                && let Some(s) =
                    self.peers.get(&id).and_then(|p| p.session.as_ref())
            {
                self.counters.updates_out += msgs as u64;
                self.out.push(Output::Send {
                    peer: id,
                    conn: s.conn,
                    bytes,
                });
            }
            self.pack(id);
        }
    }

    /// Whether RIB-stream events are produced: the IO layer turns them
    /// off while nobody subscribes (a subscriber starts from
    /// [`Speaker::rib_snapshot`], so nothing is missed).
    pub fn set_rib_stream(&mut self, on: bool) {
        self.rib_stream = on;
    }

    /// Whether changes wait for [`Speaker::flush_some`].
    pub fn has_changes(&self) -> bool {
        self.rib.has_changes()
    }

    /// Every best route as stream events (a subscriber's snapshot).
    pub fn rib_snapshot(&self) -> Vec<RibEvent> {
        self.rib
            .iter()
            .filter_map(|(prefix, e)| match rib_event(prefix, e) {
                Output::Rib(ev @ RibEvent::Route { .. }) => Some(ev),
                _ => None,
            })
            .collect()
    }

    /// Re-run export of the whole table towards one peer (session up,
    /// policy change); withdraws what is no longer exported.
    pub(crate) fn reexport_peer(&mut self, id: PeerId) {
        self.reexport(id, |_| true, false);
    }

    /// Route refresh for one family (RFC 2918 4: "re-advertise ... the
    /// Adj-RIB-Out").
    pub(crate) fn reexport_family(&mut self, id: PeerId, f: Family) {
        self.reexport(id, |p| p.is_ipv4() == (f == Family::IPV4_UNICAST), true);
    }

    /// Export every prefix for which `pick` holds towards `id`, and pack;
    /// with `resend`, what was advertised goes out again (it is first
    /// forgotten, so export sees it as new).
    fn reexport(
        &mut self,
        id: PeerId,
        pick: impl Fn(&IpNetwork) -> bool,
        resend: bool,
    ) {
        let slot = id as usize;
        let mut cache = ExportCache::default();
        let Speaker {
            rib, peers, global, ..
        } = self;
        rib.for_each_mut(|prefix, e, sources| {
            if !pick(prefix) {
                return;
            }
            if resend
                && e.is_advertised(slot)
                && let Some(p) = peers.get_mut(&id)
            {
                e.set_advertised(slot, false);
                p.advertised = p.advertised.saturating_sub(1);
            }
            let ex = Exporter {
                peers: &*peers,
                global,
                sources,
            };
            let d = ex.decide(id, prefix, e, &mut cache, true);
            queue(peers, id, prefix, e, d);
        });
        self.pack(id);
    }

    pub(crate) fn reexport_all(&mut self) {
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            self.reexport_peer(id);
        }
    }

    /// Turn a peer's queue into UPDATE messages (withdrawals first), then
    /// End-of-RIB after the initial dump.
    pub(crate) fn pack(&mut self, id: PeerId) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        if self.deferral.is_some() {
            // RFC 4724 4.1: a restarting speaker defers its advertisements;
            // the queue waits for `end_deferral`, and by then may hold
            // several decisions for one prefix.
            p.pending_held |= !p.pending.is_empty();
            return;
        }
        if std::mem::take(&mut p.pending_held) {
            keep_last(&mut p.pending);
        }
        let Some(s) = p.session.as_mut() else {
            return;
        };
        if p.pending.is_empty() && !s.send_eor {
            return;
        }
        let mut out = BytesMut::new();
        let mut msgs = encode(&mut p.pending, s, &p.cfg.name, &mut out);
        if s.send_eor {
            // RFC 4724 4.1: End-of-RIB after the initial update.
            s.send_eor = false;
            for f in &s.neg.families {
                let eor = UpdateMsg::end_of_rib(*f);
                if Message::Update(eor).encode(&s.tx, &mut out).is_ok() {
                    msgs += 1;
                }
            }
        }
        self.counters.updates_out += msgs as u64;
        if !out.is_empty() {
            let conn = s.conn;
            self.out.push(Output::Send {
                peer: id,
                conn,
                bytes: out.freeze(),
            });
        }
    }

    /// The Loc-RIB with every path and the reason for the choice.
    pub fn rib_dump(&self) -> Vec<RibEntry> {
        let mut v: Vec<RibEntry> = self
            .rib
            .iter()
            .filter(|(_, e)| !e.paths().is_empty())
            .map(|(prefix, e)| {
                let mp = e.multipath().len();
                let paths = e
                    .paths()
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        let reason = if i == 0 {
                            match self.rib.runner_up(e).map(|r| {
                                crate::decision::compare(
                                    &self.rib.candidate_of(p),
                                    &self.rib.candidate_of(r),
                                )
                            }) {
                                None => "only path".to_string(),
                                Some(c) => reason_words("best", c),
                            }
                        } else {
                            let c = self
                                .rib
                                .compare_with_best(e, p)
                                .unwrap_or(RouteCmp::Equal);
                            reason_words("not best", c)
                        };
                        self.rib_path(p, i == 0, i < mp, reason)
                    })
                    .collect();
                RibEntry {
                    prefix: *prefix,
                    paths,
                }
            })
            .collect();
        v.sort_by_key(|e| {
            (e.prefix.is_ipv6(), e.prefix.network(), e.prefix.prefix())
        });
        v
    }

    fn rib_path(
        &self,
        p: &Path,
        best: bool,
        multipath: bool,
        reason: String,
    ) -> RibPath {
        let a = &p.attrs.path;
        RibPath {
            peer: (p.peer != LOCAL)
                .then(|| self.peers.get(&p.peer).map(|x| x.cfg.addr))
                .flatten(),
            next_hop: p.attrs.next_hop_addr(),
            as_path: a
                .as_path
                .as_ref()
                .map(|ap| {
                    ap.segments
                        .iter()
                        .flat_map(|s| s.asns.iter().copied())
                        .collect()
                })
                .unwrap_or_default(),
            origin: format!(
                "{:?}",
                a.origin.unwrap_or(bgp_wire::Origin::Incomplete)
            ),
            local_pref: a.local_pref,
            med: a.med,
            communities: a
                .communities
                .iter()
                .map(|c| c.to_string())
                .chain(a.rare.large_communities.iter().map(|l| {
                    format!(
                        "{}:{}:{}",
                        l.global_admin, l.local_data1, l.local_data2
                    )
                }))
                .collect(),
            best,
            multipath: multipath && !best,
            stale: p.stale,
            reason,
        }
    }
}

/// Pack `pending` (drained) into UPDATE messages for session `s`,
/// withdrawals first, prefixes sharing an attribute set together;
/// returns the number of messages. `name` is the peer's, for the log.
fn encode(
    pending: &mut Vec<(IpNetwork, Option<Arc<Attrs>>)>,
    s: &Session,
    name: &str,
    out: &mut BytesMut,
) -> usize {
    let mut withdraw: [Vec<Nlri>; 2] = Default::default();
    let mut groups: HashMap<usize, (Arc<Attrs>, Vec<Nlri>), RandomState> =
        HashMap::default();
    for (prefix, a) in pending.drain(..) {
        match a {
            None => {
                withdraw[usize::from(!prefix.is_ipv4())].push(Nlri::new(prefix))
            }
            Some(a) => {
                let k = Arc::as_ptr(&a) as usize * 2
                    + usize::from(!prefix.is_ipv4());
                groups
                    .entry(k)
                    .or_insert_with(|| (a, Vec::new()))
                    .1
                    .push(Nlri::new(prefix));
            }
        }
    }
    if pending.capacity() > 65536 {
        pending.shrink_to(1024);
    }
    let mut msgs = 0;
    for (i, w) in withdraw.iter().enumerate() {
        if !w.is_empty() {
            let f = if i == 0 {
                bgp_wire::Family::IPV4_UNICAST
            } else {
                bgp_wire::Family::IPV6_UNICAST
            };
            msgs += bgp_wire::pack_unreach(f, w, &s.tx, out).unwrap_or(0);
        }
    }
    for (_, (a, nlri)) in groups {
        let f = if nlri[0].prefix.is_ipv4() {
            bgp_wire::Family::IPV4_UNICAST
        } else {
            bgp_wire::Family::IPV6_UNICAST
        };
        let Some(nh) = a.next_hop else { continue };
        match bgp_wire::pack_reach(f, &a.path, nh, &nlri, &s.tx, out) {
            Ok(n) => msgs += n,
            Err(e) => {
                tracing::warn!(peer = %name, "cannot encode UPDATE: {e}")
            }
        }
    }
    msgs
}

/// What export decided for one prefix and peer.
enum Decision {
    /// The peer has no session or does not carry the family.
    Skip,
    /// Advertise these attributes.
    Announce(Arc<Attrs>),
    /// Not exported (any more).
    Withhold,
}

/// The state export policy reads, borrowed apart from the RIB entry
/// being exported.
struct Exporter<'a> {
    peers: &'a BTreeMap<PeerId, Peer>,
    global: &'a GlobalPolicy,
    sources: &'a Sources,
}

impl Exporter<'_> {
    /// The export decision for `prefix` (whose entry is `entry`) to `id`.
    /// `split_horizon`: never back to the peer the route came from; an
    /// update group led by `id` decides without it and applies it per
    /// member.
    fn decide(
        &self,
        id: PeerId,
        prefix: &IpNetwork,
        entry: &Entry,
        cache: &mut ExportCache,
        split_horizon: bool,
    ) -> Decision {
        let Some(s) = self.peers.get(&id).and_then(|p| p.session.as_ref())
        else {
            return Decision::Skip;
        };
        if !s.neg.has(family_of(prefix)) {
            return Decision::Skip;
        }
        entry
            .best()
            .filter(|b| !split_horizon || b.peer != id)
            .and_then(|b| self.attrs(id, s, prefix, b, cache))
            .map_or(Decision::Withhold, Decision::Announce)
    }

    /// Export policy and attribute rewriting for `best` towards `id`.
    fn attrs(
        &self,
        id: PeerId,
        s: &Session,
        prefix: &IpNetwork,
        best: &Path,
        cache: &mut ExportCache,
    ) -> Option<Arc<Attrs>> {
        let (origin, source_id) = if best.peer == LOCAL {
            (Origin::Local, None)
        } else {
            let src = self.sources.get(&best.peer)?;
            let client = self
                .peers
                .get(&best.peer)
                .is_some_and(|p| p.cfg.policy.rr_client);
            let o = if src.ebgp {
                Origin::Ebgp
            } else {
                Origin::Ibgp { client }
            };
            (o, Some(src.router_id))
        };
        let ops = policy::export_prefix(
            &s.policy,
            self.global,
            prefix,
            origin,
            &best.attrs.path,
        )?;
        let mut mask = 0u64;
        for (i, pc) in
            self.global.prefix_communities.iter().enumerate().take(64)
        {
            if margay_crds::net::contains(&pc.cidr, prefix) {
                mask |= 1 << i;
            }
        }
        // Rules with operations make the result depend on the matching
        // rule too; every empty operation list shares one key.
        let key = (
            Arc::as_ptr(&best.attrs) as usize,
            id,
            mask,
            ops.as_ptr() as usize,
        );
        if let Some(a) = cache.get(&key) {
            return Some(a.clone());
        }
        let a = policy::export_attrs(
            &s.policy,
            self.global,
            prefix,
            origin,
            source_id,
            &best.attrs,
            ops,
        );
        // A next hop of the other family goes out only as RFC 8950 allows:
        // an IPv6 next hop for IPv4 NLRI "only if the peer has advertised"
        // the Extended Next Hop capability for it (section 4; `neg` holds
        // it only when both sides did). IPv4 next hops for IPv6 NLRI
        // (RFC 4291 mapped addresses) are never sent.
        let nh_ok = match a.next_hop {
            Some(bgp_wire::NextHop::V4(_)) => prefix.is_ipv4(),
            Some(bgp_wire::NextHop::V6 { .. }) => {
                !prefix.is_ipv4() || s.neg.ipv4_over_ipv6_nh
            }
            None => false,
        };
        if !nh_ok {
            return None;
        }
        let a = Arc::new(a);
        cache.insert(key, a.clone());
        Some(a)
    }
}

fn family_of(prefix: &IpNetwork) -> Family {
    if prefix.is_ipv4() {
        Family::IPV4_UNICAST
    } else {
        Family::IPV6_UNICAST
    }
}

/// Put a decision in the peer's outgoing queue, keeping the entry's
/// advertised bit and the peer's count in step.
fn queue(
    peers: &mut BTreeMap<PeerId, Peer>,
    id: PeerId,
    prefix: &IpNetwork,
    entry: &mut Entry,
    d: Decision,
) {
    let Some(p) = peers.get_mut(&id) else {
        return;
    };
    let slot = id as usize;
    let advertised = entry.is_advertised(slot);
    match d {
        Decision::Skip => {}
        Decision::Announce(a) => {
            if !advertised {
                p.advertised += 1;
            }
            p.pending.push((*prefix, Some(a)));
            entry.set_advertised(slot, true);
        }
        Decision::Withhold if advertised => {
            p.advertised = p.advertised.saturating_sub(1);
            p.pending.push((*prefix, None));
            entry.set_advertised(slot, false);
        }
        Decision::Withhold => {}
    }
}

/// Drop every decision of a queue that a later one for the same prefix
/// overrides (only the last may go out: withdrawals are packed before
/// announcements, and announcements in no particular order).
fn keep_last(q: &mut Vec<(IpNetwork, Option<Arc<Attrs>>)>) {
    let mut seen: HashSet<IpNetwork, RandomState> = HashSet::default();
    let mut kept: Vec<_> =
        q.drain(..).rev().filter(|(p, _)| seen.insert(*p)).collect();
    kept.reverse();
    *q = kept;
}

/// The stream event for `prefix`: its ECMP next hops, or a withdraw when
/// it has none (gone, or locally originated: felix-lite owns the
/// blackholes of our own blocks).
fn rib_event(prefix: &IpNetwork, entry: &Entry) -> Output {
    let hops: Vec<IpAddr> = if entry.best().is_some_and(|b| b.peer != LOCAL) {
        entry
            .multipath()
            .iter()
            .filter_map(|p| p.attrs.next_hop_addr())
            .collect()
    } else {
        Vec::new()
    };
    if hops.is_empty() {
        Output::Rib(RibEvent::Withdraw { prefix: *prefix })
    } else {
        Output::Rib(RibEvent::Route {
            prefix: *prefix,
            next_hops: hops,
        })
    }
}

fn reason_words(prefix: &str, c: RouteCmp) -> String {
    match c.reason() {
        Some(r) => format!("{prefix}: {}", r.describe()),
        None => format!("{prefix}: equal"),
    }
}
