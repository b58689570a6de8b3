//! The routing information bases.
//!
//! One table holds, per prefix, every peer's accepted path (the
//! post-policy Adj-RIBs-In, RFC 4271 3.2) with the best path first and the
//! equal-cost multipath members right after it (the Loc-RIB), plus one bit
//! per outgoing peer slot saying whether the prefix is currently advertised
//! to it (enough of the Adj-RIB-Out to know when to withdraw).
//!
//! Attribute sets are interned: one UPDATE carries thousands of prefixes
//! with the same attributes, and every one of them points at the same
//! `Arc<Attrs>`, so a route costs a pointer and not a copy. The table
//! itself is a compact prefix map (see `rib_table.rs`).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use bgp_wire::{NextHop, PathAttrs};
use foldhash::fast::RandomState;
use ipnetwork::IpNetwork;
use smallvec::SmallVec;

use crate::decision::{self, Candidate, RouteCmp, Source};

#[path = "rib_table.rs"]
mod table;
use table::Table;

/// Index of a route source; [`LOCAL`] is this speaker.
pub type PeerId = u32;
/// The source id of locally originated routes.
pub const LOCAL: PeerId = 0;

/// The attributes of a path: the UPDATE's attribute set and its next hop
/// (which for IPv6 lives in MP_REACH_NLRI, outside `PathAttrs`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Attrs {
    pub path: PathAttrs,
    /// `None` for locally originated routes.
    pub next_hop: Option<NextHop>,
}

impl Attrs {
    /// The next hop as a plain address (the global one for IPv6).
    pub fn next_hop_addr(&self) -> Option<IpAddr> {
        match self.next_hop? {
            NextHop::V4(a) => Some(IpAddr::V4(a)),
            NextHop::V6 { global, .. } => Some(IpAddr::V6(global)),
        }
    }
}

/// One candidate path of a prefix.
#[derive(Debug, Clone)]
pub struct Path {
    pub attrs: Arc<Attrs>,
    pub peer: PeerId,
    /// Kept only while the peer restarts (RFC 4724 4.2).
    pub stale: bool,
}

/// What the decision process needs to know about a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceInfo {
    pub ebgp: bool,
    pub router_id: Ipv4Addr,
    pub addr: IpAddr,
}

/// Per-prefix state. Kept small (64 octets with its prefix): a full
/// table has a million of these.
#[derive(Debug)]
pub struct Entry {
    prefix: IpNetwork,
    /// Best first, then multipath members, then the rest.
    paths: SmallVec<[Path; 1]>,
    /// How many leading paths form the ECMP set (0 when empty).
    ecmp: u8,
    /// Outgoing peer slots 0 to 63 this prefix is advertised to.
    advertised: u64,
    /// Slots from 64 on, only with that many sessions.
    more: Option<Box<MoreSlots>>,
}

/// Advertised bits of slots 64 and up, 64 per word.
#[derive(Debug, Default)]
struct MoreSlots(Vec<u64>);

/// What a change did to a prefix's selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    /// Same best path, different ECMP set.
    Multipath,
    /// The best path changed (or appeared, or went away).
    Best,
}

/// The table.
#[derive(Debug, Default)]
pub struct Rib {
    table: Table<Entry>,
    sources: HashMap<PeerId, SourceInfo, RandomState>,
    interned: HashSet<Arc<Attrs>, RandomState>,
    /// Paths per source, for the peer table and max-prefix.
    counts: HashMap<PeerId, usize, RandomState>,
}

// ===== impl Entry =====

impl Entry {
    pub fn paths(&self) -> &[Path] {
        &self.paths
    }

    pub fn best(&self) -> Option<&Path> {
        self.paths.first()
    }

    /// The best path and its equal-cost companions.
    pub fn multipath(&self) -> &[Path] {
        &self.paths[..usize::from(self.ecmp).min(self.paths.len())]
    }

    pub fn is_advertised(&self, slot: usize) -> bool {
        let word = match slot / 64 {
            0 => self.advertised,
            w => self
                .more
                .as_ref()
                .and_then(|m| m.0.get(w - 1))
                .copied()
                .unwrap_or(0),
        };
        word & (1 << (slot % 64)) != 0
    }

    pub fn set_advertised(&mut self, slot: usize, on: bool) {
        let bit = 1u64 << (slot % 64);
        let word = match slot / 64 {
            0 => &mut self.advertised,
            w => {
                let more = match &mut self.more {
                    Some(m) => m,
                    None if !on => return,
                    None => self.more.insert(Box::default()),
                };
                if more.0.len() < w {
                    if !on {
                        return;
                    }
                    more.0.resize(w, 0);
                }
                &mut more.0[w - 1]
            }
        };
        if on {
            *word |= bit;
        } else {
            *word &= !bit;
            if self
                .more
                .as_ref()
                .is_some_and(|m| m.0.iter().all(|w| *w == 0))
            {
                self.more = None;
            }
        }
    }

    fn new(prefix: IpNetwork) -> Entry {
        Entry {
            prefix,
            paths: SmallVec::new(),
            ecmp: 0,
            advertised: 0,
            more: None,
        }
    }

    /// No paths and advertised nowhere: nothing left to remember.
    fn unused(&self) -> bool {
        self.paths.is_empty() && self.advertised == 0 && self.more.is_none()
    }
}

impl table::Keyed for Entry {
    fn key(&self) -> &IpNetwork {
        &self.prefix
    }
}

// ===== impl Rib =====

impl Rib {
    pub fn new() -> Rib {
        Rib::default()
    }

    /// Register (or update) a route source before adding its paths.
    pub fn set_source(&mut self, peer: PeerId, info: SourceInfo) {
        self.sources.insert(peer, info);
    }

    pub fn source(&self, peer: PeerId) -> Option<&SourceInfo> {
        self.sources.get(&peer)
    }

    /// Share one `Arc` among equal attribute sets.
    pub fn intern(&mut self, attrs: Attrs) -> Arc<Attrs> {
        if let Some(a) = self.interned.get(&attrs) {
            return a.clone();
        }
        let a = Arc::new(attrs);
        self.interned.insert(a.clone());
        a
    }

    /// Forget interned sets no route uses any more.
    pub fn gc_interned(&mut self) {
        self.interned.retain(|a| Arc::strong_count(a) > 1);
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn get(&self, prefix: &IpNetwork) -> Option<&Entry> {
        self.table.get(prefix)
    }

    pub fn get_mut(&mut self, prefix: &IpNetwork) -> Option<&mut Entry> {
        self.table.get_mut(prefix)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&IpNetwork, &Entry)> {
        self.table.iter()
    }

    /// Add or replace `peer`'s path for `prefix` (an implicit withdraw of
    /// the previous one, RFC 4271 3.1); this clears a stale mark.
    pub fn update(
        &mut self,
        peer: PeerId,
        prefix: IpNetwork,
        attrs: Arc<Attrs>,
    ) -> Change {
        let entry = self.table.get_or_insert_with(prefix, Entry::new);
        let snap = Snapshot::of(entry);
        let path = Path {
            attrs,
            peer,
            stale: false,
        };
        match entry.paths.iter_mut().find(|p| p.peer == peer) {
            Some(p) => {
                if Arc::ptr_eq(&p.attrs, &path.attrs) && !p.stale {
                    return Change::None;
                }
                *p = path;
            }
            None => {
                entry.paths.push(path);
                *self.counts.entry(peer).or_default() += 1;
            }
        }
        reselect(&self.sources, entry, snap)
    }

    /// Remove `peer`'s path for `prefix`.
    pub fn withdraw(&mut self, peer: PeerId, prefix: &IpNetwork) -> Change {
        let Some(entry) = self.table.get_mut(prefix) else {
            return Change::None;
        };
        let Some(i) = entry.paths.iter().position(|p| p.peer == peer) else {
            return Change::None;
        };
        let snap = Snapshot::of(entry);
        entry.paths.remove(i);
        if let Some(c) = self.counts.get_mut(&peer) {
            *c = c.saturating_sub(1);
        }
        let change = reselect(&self.sources, entry, snap);
        if entry.unused() {
            self.table.remove(prefix);
        }
        change
    }

    /// RFC 4724 4.2: mark every path of `peer` stale; returns how many.
    pub fn mark_stale(&mut self, peer: PeerId) -> usize {
        let mut n = 0;
        for e in self.table.values_mut() {
            for p in e.paths.iter_mut().filter(|p| p.peer == peer) {
                p.stale = true;
                n += 1;
            }
        }
        n
    }

    /// Remove `peer`'s paths (all, or only the stale ones), returning the
    /// prefixes whose selection changed.
    pub fn remove_peer(
        &mut self,
        peer: PeerId,
        only_stale: bool,
    ) -> Vec<(IpNetwork, Change)> {
        self.remove_peer_where(peer, only_stale, |_| true)
    }

    /// `remove_peer` limited to prefixes for which `pick` holds (one
    /// address family at End-of-RIB).
    pub fn remove_peer_where(
        &mut self,
        peer: PeerId,
        only_stale: bool,
        pick: impl Fn(&IpNetwork) -> bool,
    ) -> Vec<(IpNetwork, Change)> {
        let mut changed = Vec::new();
        let mut removed = 0;
        let sources = &self.sources;
        self.table.retain(|e| {
            let prefix = e.prefix;
            if !pick(&prefix) {
                return true;
            }
            let before = e.paths.len();
            let snap = Snapshot::of(e);
            e.paths
                .retain(|p| p.peer != peer || (only_stale && !p.stale));
            removed += before - e.paths.len();
            if e.paths.len() != before {
                let c = reselect(sources, e, snap);
                if c != Change::None {
                    changed.push((prefix, c));
                }
            }
            // Keep empty entries still advertised: the caller withdraws
            // them and then calls `forget_if_unused`.
            !e.unused()
        });
        if let Some(c) = self.counts.get_mut(&peer) {
            *c = c.saturating_sub(removed);
        }
        changed
    }

    /// Forget what was advertised to outgoing slot `slot` (its session
    /// went down); drops entries left with nothing.
    pub fn clear_advertised(&mut self, slot: usize) {
        self.table.retain(|e| {
            e.set_advertised(slot, false);
            !e.unused()
        });
    }

    /// Drop an entry that has no paths and is advertised nowhere.
    pub fn forget_if_unused(&mut self, prefix: &IpNetwork) {
        if self.table.get(prefix).is_some_and(Entry::unused) {
            self.table.remove(prefix);
        }
    }

    /// Whether any path of `peer` is still stale.
    pub fn has_stale(&self, peer: PeerId) -> bool {
        self.table
            .values()
            .any(|e| e.paths.iter().any(|p| p.peer == peer && p.stale))
    }

    /// How many paths `peer` has in the table.
    pub fn count_from(&self, peer: PeerId) -> usize {
        self.counts.get(&peer).copied().unwrap_or(0)
    }

    /// Compare a path with the best of its entry, for the control socket.
    pub fn compare_with_best(
        &self,
        entry: &Entry,
        path: &Path,
    ) -> Option<RouteCmp> {
        let best = entry.best()?;
        Some(decision::compare(
            &candidate(&self.sources, path),
            &candidate(&self.sources, best),
        ))
    }

    /// A path as the decision process sees it.
    pub fn candidate_of<'a>(&self, p: &'a Path) -> Candidate<'a> {
        candidate(&self.sources, p)
    }

    /// The second-best path, to explain why the best won.
    pub fn runner_up<'e>(&self, entry: &'e Entry) -> Option<&'e Path> {
        entry.paths.get(1)
    }
}

// ===== helper functions =====

fn candidate<'a>(
    sources: &HashMap<PeerId, SourceInfo, RandomState>,
    p: &'a Path,
) -> Candidate<'a> {
    let source = match sources.get(&p.peer) {
        Some(s) if p.peer != LOCAL => Source::Peer {
            ebgp: s.ebgp,
            router_id: s.router_id,
            addr: s.addr,
        },
        _ => Source::Local,
    };
    Candidate {
        attrs: &p.attrs.path,
        source,
    }
}

/// An entry's selection before a change.
struct Snapshot {
    best: Option<(PeerId, Arc<Attrs>)>,
    next_hops: SmallVec<[Option<IpAddr>; 2]>,
}

impl Snapshot {
    fn of(e: &Entry) -> Snapshot {
        Snapshot {
            best: e.paths.first().map(|p| (p.peer, p.attrs.clone())),
            next_hops: next_hops(e),
        }
    }
}

fn next_hops(e: &Entry) -> SmallVec<[Option<IpAddr>; 2]> {
    e.multipath()
        .iter()
        .map(|p| p.attrs.next_hop_addr())
        .collect()
}

/// Run the decision process over an entry: best first, then the ECMP
/// members (distinct next hops only); returns what changed since `old`.
fn reselect(
    sources: &HashMap<PeerId, SourceInfo, RandomState>,
    e: &mut Entry,
    old: Snapshot,
) -> Change {
    if e.paths.len() > 1 {
        let mut best = 0;
        for i in 1..e.paths.len() {
            let c = decision::compare(
                &candidate(sources, &e.paths[i]),
                &candidate(sources, &e.paths[best]),
            );
            if c.is_preferred() {
                best = i;
            }
        }
        e.paths.swap(0, best);
        let mut n = 1;
        for i in 1..e.paths.len() {
            let (head, tail) = e.paths.split_at_mut(i);
            let cand = &tail[0];
            let nh = cand.attrs.next_hop_addr();
            let distinct =
                head[..n].iter().all(|p| p.attrs.next_hop_addr() != nh);
            if distinct
                && decision::multipath_equal(
                    &candidate(sources, cand),
                    &candidate(sources, &head[0]),
                )
            {
                e.paths.swap(n, i);
                n += 1;
            }
        }
        e.ecmp = u8::try_from(n).unwrap_or(u8::MAX);
    } else {
        e.ecmp = u8::try_from(e.paths.len()).unwrap_or(0);
    }
    let same_best = match (&old.best, e.paths.first()) {
        (None, None) => true,
        (Some((pa, aa)), Some(b)) => *pa == b.peer && Arc::ptr_eq(aa, &b.attrs),
        _ => false,
    };
    if !same_best {
        Change::Best
    } else if next_hops(e) != old.next_hops {
        Change::Multipath
    } else {
        Change::None
    }
}

#[cfg(test)]
#[path = "rib_tests.rs"]
mod tests;
