//! Update groups, as FRR's and IOS's update-groups: established peers
//! whose export would produce the same bytes share one group. Export
//! policy runs and each UPDATE is encoded once per group, and the same
//! bytes (one reference-counted buffer) go to every member, so fan-out
//! to M peers costs one export plus M socket writes instead of M exports.
//!
//! Two sessions export the same bytes when their session policy (export
//! rules, BGPFilter, communities, next-hop handling, our address on the
//! session, AS numbers, route-reflector client or not), their peer type
//! and what was negotiated for the sending direction (families, 4-octet
//! AS, ADD-PATH, extended next hop and message size) are equal. Routes a
//! member itself sent are the only per-member difference (split horizon:
//! never advertised back to the peer they came from); so is a member's
//! Adj-RIB-Out when it differs from the others' (a late joiner whose
//! full table was exported on its own). A prefix whose outcome differs
//! between members goes to each member's own queue instead of the
//! group's, so what every peer receives is what it would receive alone.
//!
//! Groups are formed afresh for each export turn, from the sessions up
//! at that moment: a session that comes up gets its full table from its
//! own export (`Speaker::reexport_peer`) and joins a group from the next
//! turn on. A slow member never holds the group back: every connection
//! has its own writer with its own queue of the shared buffers (its
//! position in the group's output), and the speaker never waits for it.

use std::collections::BTreeMap;
use std::sync::Arc;

use ipnetwork::IpNetwork;

use super::{Decision, ExportCache, Exporter, queue};
use crate::policy::GlobalPolicy;
use crate::rib::{Attrs, Entry, PeerId, Sources};
use crate::speaker::Peer;

/// One update group of an export turn.
#[derive(Debug)]
pub(super) struct Group {
    /// In id order; export runs with the first one's session.
    pub members: Vec<PeerId>,
    /// The decisions every member shares (groups of two or more; a
    /// single peer's go to its own queue, as without groups).
    pub pending: Vec<(IpNetwork, Option<Arc<Attrs>>)>,
    /// Per member (same order), the change of its advertised count by
    /// `pending`: counted here, not in each peer, to keep a prefix's
    /// cost per member to a bit in its RIB entry.
    pub advertised: Vec<i64>,
}

/// Whether `a` and `b` (both with a session) export the same UPDATE
/// bytes for every route neither of them sent.
fn same_export(a: &Peer, b: &Peer) -> bool {
    let (Some(x), Some(y)) = (&a.session, &b.session) else {
        return false;
    };
    a.cfg.peer_type == b.cfg.peer_type
        && x.policy == y.policy
        && x.tx == y.tx
        && x.neg.families == y.neg.families
        && x.neg.ipv4_over_ipv6_nh == y.neg.ipv4_over_ipv6_nh
}

/// Whether a peer can share a group's output this turn: nothing of its
/// own is queued (a deferred queue, an End-of-RIB still to send).
fn joinable(p: &Peer) -> bool {
    p.session.as_ref().is_some_and(|s| !s.send_eor)
        && p.pending.is_empty()
        && !p.pending_held
}

/// The update groups of the established peers; with `share` false (while
/// route selection is deferred, RFC 4724 4.1, every queue is held and
/// later packed on its own) each peer is a group of its own.
pub(super) fn form(peers: &BTreeMap<PeerId, Peer>, share: bool) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for p in peers.values().filter(|p| p.session.is_some()) {
        let found = (share && joinable(p))
            .then(|| {
                groups.iter_mut().find(|g| {
                    let lead = &peers[&g.members[0]];
                    joinable(lead) && same_export(lead, p)
                })
            })
            .flatten();
        match found {
            Some(g) => {
                g.members.push(p.id);
                g.advertised.push(0);
            }
            None => groups.push(Group {
                members: vec![p.id],
                pending: Vec::new(),
                advertised: vec![0],
            }),
        }
    }
    groups
}

/// What one member's queue gets for a prefix.
#[derive(PartialEq, Eq)]
enum Act {
    Nothing,
    Announce,
    Withdraw,
}

fn act(d: &Decision, advertised: bool) -> Act {
    match d {
        Decision::Announce(_) => Act::Announce,
        Decision::Withhold if advertised => Act::Withdraw,
        Decision::Skip | Decision::Withhold => Act::Nothing,
    }
}

impl Group {
    /// Export `prefix` to every member: once for the group, then either
    /// into the group's queue (every member does the same) or, where
    /// members differ, into each member's own queue.
    pub fn export(
        &mut self,
        peers: &mut BTreeMap<PeerId, Peer>,
        global: &GlobalPolicy,
        sources: &Sources,
        prefix: &IpNetwork,
        entry: &mut Entry,
        cache: &mut ExportCache,
    ) {
        let lead = self.members[0];
        let ex = Exporter {
            peers: &*peers,
            global,
            sources,
        };
        if self.members.len() == 1 {
            let d = ex.decide(lead, prefix, entry, cache, true);
            queue(peers, lead, prefix, entry, d);
            return;
        }
        let shared = ex.decide(lead, prefix, entry, cache, false);
        let from = entry.best().map(|b| b.peer);
        // Split horizon is the one per-member part of the decision.
        let announced = matches!(shared, Decision::Announce(_));
        let act_of = |m: PeerId| {
            if announced && from == Some(m) {
                act(&Decision::Withhold, entry.is_advertised(m as usize))
            } else {
                act(&shared, entry.is_advertised(m as usize))
            }
        };
        let first = act_of(lead);
        if !self.members[1..].iter().all(|m| act_of(*m) == first) {
            for m in &self.members {
                let d = match &shared {
                    Decision::Announce(_) if from == Some(*m) => {
                        Decision::Withhold
                    }
                    Decision::Announce(a) => Decision::Announce(a.clone()),
                    Decision::Withhold => Decision::Withhold,
                    Decision::Skip => Decision::Skip,
                };
                queue(peers, *m, prefix, entry, d);
            }
            return;
        }
        let item = match (&first, &shared) {
            (Act::Announce, Decision::Announce(a)) => Some(a.clone()),
            (Act::Withdraw, _) => None,
            _ => return,
        };
        for (m, delta) in self.members.iter().zip(&mut self.advertised) {
            let slot = *m as usize;
            match (&item, entry.is_advertised(slot)) {
                (Some(_), false) => *delta += 1,
                (None, true) => *delta -= 1,
                _ => {}
            }
            entry.set_advertised(slot, item.is_some());
        }
        self.pending.push((*prefix, item));
    }
}
