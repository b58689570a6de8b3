//! The routing information bases.
//!
//! One table holds, per prefix, every peer's accepted path (the
//! post-policy Adj-RIBs-In, RFC 4271 3.2) with the best path first and the
//! equal-cost multipath members right after it (the Loc-RIB), plus one bit
//! per outgoing peer slot saying whether the prefix is currently advertised
//! to it (enough of the Adj-RIB-Out to know when to withdraw).
//!
//! The table also remembers which prefixes changed since the last
//! [`Rib::drain_changed`] (the caller's export work list), in the order
//! they changed: a burst of new prefixes is then exported in the order it
//! was inserted, walking the table's memory front to back instead of
//! jumping around it. An entry left with no paths stays until that drain
//! has exported its withdrawal, and is dropped there.
//!
//! Attribute sets are interned: one UPDATE carries thousands of prefixes
//! with the same attributes, and every one of them points at the same
//! `Arc<Attrs>`, so a route costs a pointer and not a copy. The table
//! itself is a compact prefix map (see `rib/table.rs`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use bgp_wire::{NextHop, PathAttrs};
use foldhash::fast::RandomState;
use ipnetwork::IpNetwork;
use smallvec::SmallVec;

use crate::decision::{self, Candidate, RouteCmp, Source};

mod paths;
mod table;
use paths::Paths;
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
    /// The attributes of the routes we originate (our blocks): ORIGIN
    /// IGP, as BIRD announces Calico's blocks. One value for the RIB, so
    /// `margayctl routes` shows what the wire carries.
    pub fn local() -> Attrs {
        Attrs {
            path: bgp_wire::PathAttrs {
                origin: Some(bgp_wire::Origin::Igp),
                ..Default::default()
            },
            next_hop: None,
        }
    }

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
    paths: Paths,
    /// How many leading paths form the ECMP set (0 when empty).
    ecmp: u8,
    /// Outgoing peer slots 0 to 63 this prefix is advertised to.
    advertised: u64,
    /// Slots from 64 on, only with that many sessions.
    more: Option<Box<MoreSlots>>,
    /// Queued in `Rib::changed` (so it is queued once).
    changed: bool,
    /// No paths and advertised nowhere: invisible, and dropped at the next
    /// compaction. Removing one entry at a time moves another and fixes
    /// two index buckets (two cache misses); a withdrawn full table is
    /// cheaper dropped in one pass.
    dead: bool,
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
    sources: Sources,
    interned: HashSet<Arc<Attrs>, RandomState>,
    /// Paths per source, for the peer table and max-prefix.
    counts: HashMap<PeerId, usize, RandomState>,
    /// Positions of the entries whose selection changed, oldest first.
    /// Nothing is removed from the table while this is not empty.
    changed: VecDeque<u32>,
    /// How many entries are dead: found unused by a drain, kept in the
    /// table until `sweep` compacts it (see `Entry::dead`).
    dead: usize,
}

/// The route sources, as the decision process and export see them.
pub type Sources = HashMap<PeerId, SourceInfo, RandomState>;

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
            paths: Paths::None,
            ecmp: 0,
            advertised: 0,
            more: None,
            changed: false,
            dead: false,
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

    /// Prefixes in the table (dead entries do not count).
    pub fn len(&self) -> usize {
        self.table.len() - self.dead
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, prefix: &IpNetwork) -> Option<&Entry> {
        self.table.get(prefix).filter(|e| !e.dead)
    }

    pub fn get_mut(&mut self, prefix: &IpNetwork) -> Option<&mut Entry> {
        self.table.get_mut(prefix).filter(|e| !e.dead)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&IpNetwork, &Entry)> {
        self.table.iter().filter(|(_, e)| !e.dead)
    }

    /// Warm the cache for a coming `update` or `withdraw` of `prefix`
    /// (callers walking an UPDATE's NLRI hint a few prefixes ahead).
    pub fn prefetch(&self, prefix: &IpNetwork) {
        self.table.prefetch(prefix);
    }

    /// Add or replace `peer`'s path for `prefix` (an implicit withdraw of
    /// the previous one, RFC 4271 3.1); this clears a stale mark.
    pub fn update(
        &mut self,
        peer: PeerId,
        prefix: IpNetwork,
        attrs: Arc<Attrs>,
    ) -> Change {
        let pos = self.table.position_or_insert_with(prefix, Entry::new);
        let entry = self.table.at_mut(pos);
        if std::mem::take(&mut entry.dead) {
            self.dead -= 1;
        }
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
        let change = reselect(&self.sources, entry, snap);
        queue(&mut self.changed, entry, pos, change);
        change
    }

    /// Remove `peer`'s path for `prefix`.
    pub fn withdraw(&mut self, peer: PeerId, prefix: &IpNetwork) -> Change {
        let Some(pos) = self.table.position(prefix) else {
            return Change::None;
        };
        let entry = self.table.at_mut(pos);
        let Some(i) = entry.paths.iter().position(|p| p.peer == peer) else {
            return Change::None;
        };
        let snap = Snapshot::of(entry);
        entry.paths.remove(i);
        if let Some(c) = self.counts.get_mut(&peer) {
            *c = c.saturating_sub(1);
        }
        let change = reselect(&self.sources, entry, snap);
        // Losing its last path changes the best path, so an entry that is
        // now empty is queued, and `drain_changed` drops it.
        queue(&mut self.changed, entry, pos, change);
        change
    }

    /// Whether changes wait for [`Rib::drain_changed`].
    pub fn has_changes(&self) -> bool {
        !self.changed.is_empty()
    }

    /// Hand up to `max` changed prefixes, oldest first, to `f` with their
    /// entry and the sources; `f` may update the entry's advertised bits.
    /// Returns how many were handed out. Once the queue is empty, entries
    /// left without paths or advertisements are dropped.
    pub fn drain_changed(
        &mut self,
        max: usize,
        mut f: impl FnMut(&IpNetwork, &mut Entry, &Sources),
    ) -> usize {
        let mut n = 0;
        while n < max {
            let Some(pos) = self.changed.pop_front() else {
                break;
            };
            n += 1;
            let e = self.table.at_mut(pos as usize);
            e.changed = false;
            let prefix = e.prefix;
            f(&prefix, e, &self.sources);
            if e.unused() && !e.dead {
                e.dead = true;
                self.dead += 1;
            }
        }
        if self.changed.is_empty() {
            self.sweep();
        }
        n
    }

    /// Drop the dead entries once they are as many as the live ones (so
    /// the table is at most twice its live size, and each compaction is
    /// paid for by as many deaths). Only while nothing is queued: the
    /// queue holds positions, which compaction changes.
    fn sweep(&mut self) {
        if self.dead > 0 && self.dead * 2 >= self.table.len() {
            self.table.retain(|e| !e.dead);
            self.dead = 0;
        }
        // A million-prefix burst must not pin its queue memory for good.
        if self.changed.capacity() > 65536 {
            self.changed.shrink_to(1024);
        }
    }

    /// Visit every entry in table order with the sources (no lookups: a
    /// whole-table export walks memory front to back).
    pub fn for_each_mut(
        &mut self,
        mut f: impl FnMut(&IpNetwork, &mut Entry, &Sources),
    ) {
        for e in self.table.values_mut().filter(|e| !e.dead) {
            let prefix = e.prefix;
            f(&prefix, e, &self.sources);
        }
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

    /// Remove `peer`'s paths (all, or only the stale ones), queueing the
    /// prefixes whose selection changed; returns how many paths went.
    pub fn remove_peer(&mut self, peer: PeerId, only_stale: bool) -> usize {
        self.remove_peer_where(peer, only_stale, |_| true)
    }

    /// `remove_peer` limited to prefixes for which `pick` holds (one
    /// address family at End-of-RIB).
    pub fn remove_peer_where(
        &mut self,
        peer: PeerId,
        only_stale: bool,
        pick: impl Fn(&IpNetwork) -> bool,
    ) -> usize {
        let mut removed = 0;
        let Rib {
            table,
            sources,
            changed,
            ..
        } = self;
        for (pos, e) in table.values_mut().enumerate() {
            if !pick(&e.prefix) {
                continue;
            }
            let before = e.paths.len();
            let snap = Snapshot::of(e);
            e.paths
                .retain(|p| p.peer != peer || (only_stale && !p.stale));
            if e.paths.len() != before {
                removed += before - e.paths.len();
                let c = reselect(sources, e, snap);
                // Entries left empty wait in the queue: their withdrawal
                // is exported before `drain_changed` drops them.
                queue(changed, e, pos, c);
            }
        }
        if let Some(c) = self.counts.get_mut(&peer) {
            *c = c.saturating_sub(removed);
        }
        removed
    }

    /// Forget what was advertised to outgoing slot `slot` (its session
    /// went down); entries left with nothing die (queued ones when the
    /// drain reaches them).
    pub fn clear_advertised(&mut self, slot: usize) {
        for e in self.table.values_mut() {
            e.set_advertised(slot, false);
            if e.unused() && !e.changed && !e.dead {
                e.dead = true;
                self.dead += 1;
            }
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

/// Queue the entry at `pos` if its selection changed (once until
/// drained).
fn queue(changed: &mut VecDeque<u32>, e: &mut Entry, pos: usize, c: Change) {
    if c != Change::None && !e.changed {
        e.changed = true;
        changed.push_back(pos as u32);
    }
}

fn candidate<'a>(sources: &Sources, p: &'a Path) -> Candidate<'a> {
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
    /// The ECMP next hops, when there were several (with one, they are
    /// the best path's, which `best` already pins down).
    next_hops: Option<SmallVec<[Option<IpAddr>; 2]>>,
}

impl Snapshot {
    fn of(e: &Entry) -> Snapshot {
        Snapshot {
            best: e.paths.first().map(|p| (p.peer, p.attrs.clone())),
            next_hops: (e.multipath().len() > 1).then(|| next_hops(e)),
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
fn reselect(sources: &Sources, e: &mut Entry, old: Snapshot) -> Change {
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
        return Change::Best;
    }
    let multipath_changed = match old.next_hops {
        Some(hops) => next_hops(e) != hops,
        // Same best path: a set of one stays the same set of one.
        None => e.multipath().len() > 1,
    };
    if multipath_changed {
        Change::Multipath
    } else {
        Change::None
    }
}

#[cfg(test)]
mod tests;
