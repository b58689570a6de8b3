//! From Loc-RIB changes to outgoing UPDATEs and RIB-stream events.
//!
//! Changed prefixes collect in `dirty`; [`Speaker::flush`] runs export
//! policy per established peer, queues announcements and withdrawals, and
//! packs every queue into as few UPDATEs as possible: prefixes sharing
//! one exported attribute set go into the same messages.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use bgp_wire::{Message, Nlri, UpdateMsg};
use bytes::BytesMut;
use foldhash::fast::RandomState;
use ipnetwork::IpNetwork;
use margay_ctlproto::{RibEntry, RibEvent, RibPath};

use crate::caps::Family;
use crate::decision::RouteCmp;
use crate::policy::{self, Origin};
use crate::rib::{Attrs, LOCAL, Path, PeerId};
use crate::speaker::{Output, Speaker};
use crate::wire;

/// Cache of exported attribute sets for one flush: (source set, peer,
/// which prefix-community rules matched) -> rewritten set.
type ExportCache =
    HashMap<(usize, PeerId, u64, usize), Arc<Attrs>, RandomState>;

impl Speaker {
    /// Process every changed prefix: RIB-stream events and UPDATEs.
    pub fn flush(&mut self) {
        let dirty: Vec<IpNetwork> = self.dirty.drain().collect();
        let peers: Vec<PeerId> = self
            .peers
            .values()
            .filter(|p| p.session.is_some())
            .map(|p| p.id)
            .collect();
        let mut cache = ExportCache::default();
        for prefix in &dirty {
            self.out.push(self.rib_event(prefix));
            for id in &peers {
                self.export_one(*id, prefix, &mut cache);
            }
            self.rib.forget_if_unused(prefix);
        }
        for id in peers {
            self.pack(id);
        }
        if !dirty.is_empty() {
            self.rib.gc_interned();
        }
        // A million-prefix burst must not pin its queue memory for good.
        if self.dirty.capacity() > 65536 {
            self.dirty.shrink_to(1024);
        }
    }

    /// The stream event for `prefix`: its ECMP next hops, or a withdraw
    /// when it has none (gone, or locally originated: felix-lite owns the
    /// blackholes of our own blocks).
    fn rib_event(&self, prefix: &IpNetwork) -> Output {
        let hops = self.next_hops(prefix);
        if hops.is_empty() {
            Output::Rib(RibEvent::Withdraw { prefix: *prefix })
        } else {
            Output::Rib(RibEvent::Route {
                prefix: *prefix,
                next_hops: hops,
            })
        }
    }

    fn next_hops(&self, prefix: &IpNetwork) -> Vec<IpAddr> {
        let Some(e) = self.rib.get(prefix) else {
            return Vec::new();
        };
        if e.best().is_none_or(|b| b.peer == LOCAL) {
            return Vec::new();
        }
        e.multipath()
            .iter()
            .filter_map(|p| p.attrs.next_hop_addr())
            .collect()
    }

    /// Every best route as stream events (a subscriber's snapshot).
    pub fn rib_snapshot(&self) -> Vec<RibEvent> {
        self.rib
            .iter()
            .filter_map(|(prefix, _)| match self.rib_event(prefix) {
                Output::Rib(ev @ RibEvent::Route { .. }) => Some(ev),
                _ => None,
            })
            .collect()
    }

    /// Queue the export decision for one prefix to one peer.
    fn export_one(
        &mut self,
        id: PeerId,
        prefix: &IpNetwork,
        cache: &mut ExportCache,
    ) {
        let Some(p) = self.peers.get(&id) else {
            return;
        };
        let Some(s) = p.session.as_ref() else {
            return;
        };
        let fam = if prefix.is_ipv4() {
            Family::Ipv4Unicast
        } else {
            Family::Ipv6Unicast
        };
        if !s.neg.has(fam) {
            return;
        }
        let entry = self.rib.get(prefix);
        let best = entry.and_then(|e| e.best());
        let out: Option<Arc<Attrs>> = best
            .filter(|b| b.peer != id)
            .and_then(|b| self.export_attrs(id, prefix, b, cache));
        let advertised = entry.is_some_and(|e| e.is_advertised(id as usize));
        let p = self.peers.get_mut(&id).expect("checked");
        match out {
            Some(a) => {
                if !advertised {
                    p.advertised += 1;
                }
                p.pending.insert(*prefix, Some(a));
                if let Some(e) = self.rib.get_mut(prefix) {
                    e.set_advertised(id as usize, true);
                }
            }
            None if advertised => {
                p.advertised = p.advertised.saturating_sub(1);
                p.pending.insert(*prefix, None);
                if let Some(e) = self.rib.get_mut(prefix) {
                    e.set_advertised(id as usize, false);
                }
            }
            None => {}
        }
    }

    /// Export policy and attribute rewriting for `best` towards `id`.
    fn export_attrs(
        &self,
        id: PeerId,
        prefix: &IpNetwork,
        best: &Path,
        cache: &mut ExportCache,
    ) -> Option<Arc<Attrs>> {
        let s = self.peers[&id].session.as_ref()?;
        let (origin, source_id) = if best.peer == LOCAL {
            (Origin::Local, None)
        } else {
            let src = self.rib.source(best.peer)?;
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
            &self.global,
            prefix,
            origin,
            &best.attrs.path,
        )?;
        let mut mask = 0u64;
        for (i, pc) in
            self.global.prefix_communities.iter().enumerate().take(64)
        {
            if policy::contains(&pc.cidr, prefix) {
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
            &self.global,
            prefix,
            origin,
            source_id,
            &best.attrs,
            ops,
        );
        // A next hop of the wrong family cannot be sent (no RFC 8950 here).
        let nh_ok = match a.next_hop {
            Some(bgp_wire::NextHop::V4(_)) => prefix.is_ipv4(),
            Some(bgp_wire::NextHop::V6 { .. }) => !prefix.is_ipv4(),
            None => false,
        };
        if !nh_ok {
            return None;
        }
        let a = Arc::new(a);
        cache.insert(key, a.clone());
        Some(a)
    }

    /// Re-run export of the whole table towards one peer (session up,
    /// policy change); withdraws what is no longer exported.
    pub(crate) fn reexport_peer(&mut self, id: PeerId) {
        let prefixes: Vec<IpNetwork> =
            self.rib.iter().map(|(p, _)| *p).collect();
        let mut cache = ExportCache::default();
        for prefix in &prefixes {
            self.export_one(id, prefix, &mut cache);
        }
        self.pack(id);
    }

    /// Route refresh for one family (RFC 2918 4: "re-advertise ... the
    /// Adj-RIB-Out").
    pub(crate) fn reexport_family(&mut self, id: PeerId, f: Family) {
        let prefixes: Vec<IpNetwork> = self
            .rib
            .iter()
            .filter(|(p, e)| {
                p.is_ipv4() == (f == Family::Ipv4Unicast)
                    && e.is_advertised(id as usize)
            })
            .map(|(p, _)| *p)
            .collect();
        let mut cache = ExportCache::default();
        for prefix in &prefixes {
            if let Some(e) = self.rib.get_mut(prefix) {
                // Force a resend.
                e.set_advertised(id as usize, false);
            }
            if let Some(p) = self.peers.get_mut(&id) {
                p.advertised = p.advertised.saturating_sub(1);
            }
            self.export_one(id, prefix, &mut cache);
        }
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
    fn pack(&mut self, id: PeerId) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(s) = p.session.as_mut() else {
            return;
        };
        if p.pending.is_empty() && !s.send_eor {
            return;
        }
        let mut withdraw: [Vec<Nlri>; 2] = Default::default();
        let mut groups: HashMap<usize, (Arc<Attrs>, Vec<Nlri>), RandomState> =
            HashMap::default();
        for (prefix, a) in p.pending.drain() {
            match a {
                None => withdraw[usize::from(!prefix.is_ipv4())]
                    .push(Nlri::new(prefix)),
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
        if p.pending.capacity() > 65536 {
            p.pending.shrink_to(1024);
        }
        let mut out = BytesMut::new();
        let mut msgs = 0;
        for (i, w) in withdraw.iter().enumerate() {
            if !w.is_empty() {
                let f = if i == 0 {
                    bgp_wire::Family::IPV4_UNICAST
                } else {
                    bgp_wire::Family::IPV6_UNICAST
                };
                msgs +=
                    bgp_wire::pack_unreach(f, w, &s.tx, &mut out).unwrap_or(0);
            }
        }
        for (_, (a, nlri)) in groups {
            let f = if nlri[0].prefix.is_ipv4() {
                bgp_wire::Family::IPV4_UNICAST
            } else {
                bgp_wire::Family::IPV6_UNICAST
            };
            let Some(nh) = a.next_hop else { continue };
            match bgp_wire::pack_reach(f, &a.path, nh, &nlri, &s.tx, &mut out) {
                Ok(n) => msgs += n,
                Err(e) => {
                    tracing::warn!(peer = %p.cfg.name, "cannot encode UPDATE: {e}")
                }
            }
        }
        if s.send_eor {
            // RFC 4724 4.1: End-of-RIB after the initial update.
            s.send_eor = false;
            for f in &s.neg.families {
                let eor = UpdateMsg::end_of_rib(wire::family_to_wire(*f));
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
                .chain(a.large_communities.iter().map(|l| {
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

fn reason_words(prefix: &str, c: RouteCmp) -> String {
    match c.reason() {
        Some(r) => format!("{prefix}: {}", r.describe()),
        None => format!("{prefix}: equal"),
    }
}
