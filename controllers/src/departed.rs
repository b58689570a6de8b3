//! The departed-node decision, sans-IO: which margay Nodes have no
//! Kubernetes Node any more, for at least the grace period, and so must be
//! cleaned up (their IPAM released, then the Node deleted).
//!
//! A margay Node is departed when both sides have been listed and no
//! Kubernetes Node of its name exists. Comparing the two sets (rather
//! than reacting to a delete event only) also catches nodes deleted while
//! no controller ran. The grace period starts when the absence is first
//! seen and restarts if the Kubernetes Node comes back. Only the Lease
//! holder acts: a follower keeps the same state and emits nothing, so a
//! takeover acts at once on what is already due.
//!
//! Cost: each event touches one name; `Tick` visits only the departed
//! candidates; the full comparison runs on a (re)list only.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// An input of [`Departed::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The Kubernetes Nodes, all of them (first list, or a re-list).
    KubeListed(BTreeSet<String>),
    KubeAdded(String),
    KubeDeleted(String),
    /// The margay Nodes, all of them.
    MargayListed(BTreeSet<String>),
    MargayAdded(String),
    MargayDeleted(String),
    /// This instance became (true) or stopped being (false) the leader.
    Leader(bool),
    /// Time passed.
    Tick,
    /// A clean-up finished (the Node is deleted: `MargayDeleted` follows).
    CleanupDone(String),
    /// A clean-up failed: it is tried again on a later tick.
    CleanupFailed(String),
}

/// An output of [`Departed::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Release the node's IPAM, then delete its margay Node.
    Cleanup(String),
}

/// The state of the departed-node controller.
#[derive(Debug)]
pub struct Departed {
    grace: Duration,
    /// `None` until listed.
    kube: Option<BTreeSet<String>>,
    margay: Option<BTreeSet<String>>,
    /// Margay Nodes without a Kubernetes Node, since when.
    missing_since: BTreeMap<String, Instant>,
    in_flight: BTreeSet<String>,
    /// Cleaned up, the Node's delete event not seen yet: not again.
    done: BTreeSet<String>,
    leader: bool,
}

impl Departed {
    pub fn new(grace: Duration) -> Self {
        Departed {
            grace,
            kube: None,
            margay: None,
            missing_since: BTreeMap::new(),
            in_flight: BTreeSet::new(),
            done: BTreeSet::new(),
            leader: false,
        }
    }

    /// Names currently waiting out their grace period (or being cleaned).
    pub fn candidates(&self) -> impl Iterator<Item = &String> {
        self.missing_since.keys()
    }

    /// Feeds one event; returns what to do now.
    pub fn handle(&mut self, ev: Event, now: Instant) -> Vec<Action> {
        match ev {
            Event::KubeListed(all) => {
                self.kube = Some(all);
                self.reconsider_all(now);
            }
            Event::MargayListed(all) => {
                self.margay = Some(all);
                self.reconsider_all(now);
            }
            Event::KubeAdded(n) => {
                if let Some(k) = &mut self.kube {
                    k.insert(n.clone());
                }
                self.reconsider(&n, now);
            }
            Event::KubeDeleted(n) => {
                if let Some(k) = &mut self.kube {
                    k.remove(&n);
                }
                self.reconsider(&n, now);
            }
            Event::MargayAdded(n) => {
                if let Some(m) = &mut self.margay {
                    m.insert(n.clone());
                }
                // Written again after its clean-up (an agent came back):
                // a new absence, a new grace period.
                if self.done.remove(&n) {
                    self.missing_since.remove(&n);
                }
                self.reconsider(&n, now);
            }
            Event::MargayDeleted(n) => {
                if let Some(m) = &mut self.margay {
                    m.remove(&n);
                }
                self.reconsider(&n, now);
            }
            Event::Leader(l) => self.leader = l,
            Event::Tick => {}
            Event::CleanupDone(n) => {
                self.in_flight.remove(&n);
                self.done.insert(n);
            }
            Event::CleanupFailed(n) => {
                self.in_flight.remove(&n);
            }
        }
        self.due(now)
    }

    fn departed(&self, name: &str) -> bool {
        match (&self.kube, &self.margay) {
            (Some(k), Some(m)) => m.contains(name) && !k.contains(name),
            _ => false,
        }
    }

    fn reconsider(&mut self, name: &str, now: Instant) {
        if self.departed(name) {
            self.missing_since.entry(name.to_string()).or_insert(now);
        } else {
            self.missing_since.remove(name);
            self.done.remove(name);
        }
    }

    fn reconsider_all(&mut self, now: Instant) {
        let (Some(k), Some(m)) = (&self.kube, &self.margay) else {
            return;
        };
        let departed: Vec<String> = m.difference(k).cloned().collect();
        self.missing_since.retain(|n, _| departed.contains(n));
        self.done.retain(|n| departed.contains(n));
        for n in departed {
            self.missing_since.entry(n).or_insert(now);
        }
    }

    fn due(&mut self, now: Instant) -> Vec<Action> {
        if !self.leader {
            return Vec::new();
        }
        let due: Vec<String> = self
            .missing_since
            .iter()
            .filter(|(n, since)| {
                now.duration_since(**since) >= self.grace
                    && !self.in_flight.contains(*n)
                    && !self.done.contains(*n)
            })
            .map(|(n, _)| n.clone())
            .collect();
        due.into_iter()
            .map(|n| {
                self.in_flight.insert(n.clone());
                Action::Cleanup(n)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn synced(grace: u64, t0: Instant) -> Departed {
        let mut d = Departed::new(Duration::from_secs(grace));
        d.handle(Event::Leader(true), t0);
        d.handle(Event::KubeListed(set(&["a", "b"])), t0);
        d.handle(Event::MargayListed(set(&["a", "b"])), t0);
        d
    }

    #[test]
    fn cleanup_comes_after_the_grace_period_once() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut d = synced(60, t0);
        assert!(
            d.handle(Event::KubeDeleted("a".into()), t0 + s(1))
                .is_empty()
        );
        assert!(d.handle(Event::Tick, t0 + s(60)).is_empty());
        assert_eq!(
            d.handle(Event::Tick, t0 + s(61)),
            [Action::Cleanup("a".into())]
        );
        // In flight: not asked again; a failure retries on the next tick.
        assert!(d.handle(Event::Tick, t0 + s(62)).is_empty());
        assert_eq!(
            d.handle(Event::CleanupFailed("a".into()), t0 + s(63)),
            [Action::Cleanup("a".into())]
        );
        d.handle(Event::CleanupDone("a".into()), t0 + s(64));
        // Done, the delete event not here yet: not cleaned again.
        assert!(d.handle(Event::Tick, t0 + s(65)).is_empty());
        d.handle(Event::MargayDeleted("a".into()), t0 + s(66));
        assert!(d.handle(Event::Tick, t0 + s(999)).is_empty());
        assert_eq!(d.candidates().count(), 0);
    }

    #[test]
    fn a_node_that_comes_back_restarts_its_clock() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut d = synced(60, t0);
        d.handle(Event::KubeDeleted("a".into()), t0);
        d.handle(Event::KubeAdded("a".into()), t0 + s(30));
        assert!(d.handle(Event::Tick, t0 + s(120)).is_empty());
        d.handle(Event::KubeDeleted("a".into()), t0 + s(121));
        assert!(d.handle(Event::Tick, t0 + s(180)).is_empty());
        assert_eq!(d.handle(Event::Tick, t0 + s(181)).len(), 1);
    }

    #[test]
    fn nothing_before_both_lists_and_nothing_as_follower() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut d = Departed::new(Duration::ZERO);
        d.handle(Event::Leader(true), t0);
        // Only the margay side is known: a missing Kubernetes list is not
        // an empty cluster.
        assert!(d.handle(Event::MargayListed(set(&["a"])), t0).is_empty());
        let mut f = synced(10, t0);
        f.handle(Event::Leader(false), t0);
        f.handle(Event::KubeDeleted("b".into()), t0);
        assert!(f.handle(Event::Tick, t0 + s(100)).is_empty());
        // The takeover acts at once on what is due.
        assert_eq!(
            f.handle(Event::Leader(true), t0 + s(100)),
            [Action::Cleanup("b".into())]
        );
    }

    #[test]
    fn departed_while_no_controller_ran_is_found_by_the_lists() {
        let t0 = Instant::now();
        let mut d = Departed::new(Duration::ZERO);
        d.handle(Event::Leader(true), t0);
        d.handle(Event::KubeListed(set(&["a"])), t0);
        assert_eq!(
            d.handle(Event::MargayListed(set(&["a", "gone"])), t0),
            [Action::Cleanup("gone".into())]
        );
    }
}
