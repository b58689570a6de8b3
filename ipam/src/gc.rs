//! Garbage-collection planning: which allocations are leaked.
//!
//! An allocation leaks when it was made by the node running the GC (its
//! `node` attribute, which every allocation records as Calico's do), its
//! handle is in scope (e.g. starts with "k8s-pod-network.") and the
//! caller's set of live attachments does not contain it. The live set is
//! what one node's runtime knows (CNI `GC` lists that node's attachments
//! only), so it says nothing about another node's allocations: those, and
//! allocations without a `node` attribute (whose maker is unknown), are
//! never candidates. Like Calico's kube-controllers GC, a leak is first recorded
//! as a candidate and only confirmed on a later pass once `grace` has
//! passed, so an ADD that has allocated but not yet been reported live is
//! not freed under its feet. Pure: the driver supplies the blocks and the
//! time, and releases the confirmed leaks conditioned on the sequence
//! numbers recorded here (so a re-allocated address is never freed).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use ipnetwork::IpNetwork;
use jiff::Timestamp;

use crate::block::{ATTR_NODE, Block};
use crate::check::Liveness;

/// One address of a leaked handle, with what the release must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeakedIp {
    pub block: IpNetwork,
    pub ip: IpAddr,
    pub sequence: Option<u64>,
}

/// A handle confirmed leaked: all of its addresses go together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    pub handle: String,
    pub ips: Vec<LeakedIp>,
}

/// Result of one planning pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcPlan {
    /// Leaks past their grace period: release these.
    pub confirmed: Vec<Leak>,
    /// Handles seen leaked but still inside their grace period.
    pub candidates: usize,
}

/// Remembers when each leaked handle was first seen, across passes.
#[derive(Debug, Clone, Default)]
pub struct GcTracker {
    first_seen: BTreeMap<String, Timestamp>,
}

impl GcTracker {
    /// A tracker with no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of handles currently tracked as candidates.
    pub fn tracked(&self) -> usize {
        self.first_seen.len()
    }

    /// One pass over `blocks`. Handles that became live again or lost
    /// their addresses are forgotten. A zero grace confirms at once (what a
    /// CNI `GC` call, which has no memory between calls, asks for).
    /// Only allocations made by `node` are considered.
    pub fn plan(
        &mut self,
        blocks: &[Block],
        node: &str,
        liveness: Liveness<'_>,
        now: Timestamp,
        grace: Duration,
    ) -> GcPlan {
        let mut leaked: BTreeMap<String, Vec<LeakedIp>> = BTreeMap::new();
        for b in blocks {
            for a in b.allocations() {
                if a.secondary.get(ATTR_NODE).map(String::as_str) != Some(node)
                {
                    continue;
                }
                let Some(h) = a.handle_id else { continue };
                if h.starts_with(liveness.prefix) && !liveness.live.contains(&h)
                {
                    leaked.entry(h).or_default().push(LeakedIp {
                        block: b.cidr,
                        ip: a.ip,
                        sequence: a.sequence,
                    });
                }
            }
        }
        let still: BTreeSet<&String> = leaked.keys().collect();
        self.first_seen.retain(|h, _| still.contains(h));

        let mut plan = GcPlan::default();
        for (handle, ips) in leaked {
            let first = *self.first_seen.entry(handle.clone()).or_insert(now);
            let age = now.duration_since(first).unsigned_abs();
            if age >= grace {
                self.first_seen.remove(&handle);
                plan.confirmed.push(Leak { handle, ips });
            } else {
                plan.candidates += 1;
            }
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks() -> Vec<Block> {
        let mut b = Block::new("10.0.0.0/28".parse().unwrap(), Some("n1"), 1);
        let attrs = [(ATTR_NODE.to_string(), "n1".to_string())].into();
        b.allocate(1, "net.live", &attrs, &[]);
        b.allocate(2, "net.dead", &attrs, &[]);
        b.allocate(1, "tunnel-n1", &attrs, &[]);
        vec![b]
    }

    fn at(s: u64) -> Timestamp {
        Timestamp::from_second(s as i64).unwrap()
    }

    #[test]
    fn leak_is_confirmed_only_after_the_grace_period() {
        let live = BTreeSet::from(["net.live".to_string()]);
        let lv = Liveness {
            prefix: "net.",
            live: &live,
        };
        let grace = Duration::from_secs(60);
        let mut t = GcTracker::new();
        let p1 = t.plan(&blocks(), "n1", lv, at(1000), grace);
        assert!(p1.confirmed.is_empty());
        assert_eq!(p1.candidates, 1);
        let p2 = t.plan(&blocks(), "n1", lv, at(1059), grace);
        assert!(p2.confirmed.is_empty());
        let p3 = t.plan(&blocks(), "n1", lv, at(1060), grace);
        assert_eq!(p3.confirmed.len(), 1);
        let leak = &p3.confirmed[0];
        assert_eq!(leak.handle, "net.dead");
        assert_eq!(leak.ips.len(), 2);
        assert!(leak.ips.iter().all(|i| i.sequence.is_some()));
        // The tunnel handle is out of scope and never a candidate.
        assert_eq!(t.tracked(), 0);
    }

    #[test]
    fn handle_that_becomes_live_is_forgotten() {
        let mut live = BTreeSet::new();
        let grace = Duration::from_secs(60);
        let mut t = GcTracker::new();
        let lv = Liveness {
            prefix: "net.",
            live: &live,
        };
        assert_eq!(t.plan(&blocks(), "n1", lv, at(0), grace).candidates, 2);
        live.insert("net.dead".to_string());
        live.insert("net.live".to_string());
        let lv = Liveness {
            prefix: "net.",
            live: &live,
        };
        let p = t.plan(&blocks(), "n1", lv, at(100), grace);
        assert!(p.confirmed.is_empty());
        assert_eq!(t.tracked(), 0);
    }

    #[test]
    fn zero_grace_confirms_immediately() {
        let live = BTreeSet::new();
        let lv = Liveness {
            prefix: "net.",
            live: &live,
        };
        let mut t = GcTracker::new();
        let p = t.plan(&blocks(), "n1", lv, at(0), Duration::ZERO);
        assert_eq!(p.confirmed.len(), 2);
    }

    #[test]
    fn only_this_nodes_allocations_are_candidates() {
        let mut b = Block::new("10.0.0.0/28".parse().unwrap(), Some("n1"), 1);
        let on = |n: &str| [(ATTR_NODE.to_string(), n.to_string())].into();
        b.allocate(1, "net.mine", &on("n1"), &[]);
        // n2 borrowed from n1's block; and an allocation of unknown maker.
        b.allocate(1, "net.borrowed", &on("n2"), &[]);
        b.allocate(1, "net.legacy", &BTreeMap::new(), &[]);
        let live = BTreeSet::new();
        let lv = Liveness {
            prefix: "net.",
            live: &live,
        };
        let mut t = GcTracker::new();
        let p = t.plan(&[b.clone()], "n1", lv, at(0), Duration::ZERO);
        let handles: Vec<_> = p.confirmed.iter().map(|l| &l.handle).collect();
        assert_eq!(handles, ["net.mine"]);
        let p = t.plan(&[b], "n2", lv, at(0), Duration::ZERO);
        let handles: Vec<_> = p.confirmed.iter().map(|l| &l.handle).collect();
        assert_eq!(handles, ["net.borrowed"]);
    }
}
