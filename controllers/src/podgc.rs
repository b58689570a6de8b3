//! Addresses whose pod no longer exists, sans-IO (Calico kube-controllers'
//! IPAM garbage collection): an allocation whose attributes name a pod
//! (`namespace` and `pod`, which the CNI plugin records from
//! K8S_POD_NAMESPACE / K8S_POD_NAME) is leaked when that pod has been
//! absent for the whole grace period. The release names the handle and
//! the sequence number read, so an address re-allocated meanwhile is
//! never freed. Allocations without both attributes (tunnel addresses,
//! other runtimes) are never candidates.
//!
//! Cost: a block event re-reads that block's allocations only; a pod
//! event touches that pod's handles only (indexes by handle and by pod);
//! `Tick` visits the candidates; only a (re)list of the pods visits all.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A pod, (namespace, name).
pub type PodKey = (String, String);

/// One allocation as a block records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub ip: IpAddr,
    pub handle: String,
    pub pod: PodKey,
    pub sequence: Option<u64>,
}

/// An input of [`PodGc::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    PodsListed(BTreeSet<PodKey>),
    PodAdded(PodKey),
    PodDeleted(PodKey),
    /// The pod-named allocations of one block (its name), now.
    Block(String, Vec<Allocation>),
    BlockDeleted(String),
    Leader(bool),
    Tick,
    ReleaseDone(String),
}

/// An output: release these addresses of `handle`, each only if it still
/// carries the sequence number given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub handle: String,
    pub ips: Vec<(IpAddr, Option<u64>)>,
}

/// The state of the pod address GC.
#[derive(Debug)]
pub struct PodGc {
    grace: Duration,
    pods: Option<BTreeSet<PodKey>>,
    blocks: BTreeMap<String, Vec<Allocation>>,
    /// Indexes over `blocks`, so an event costs what it touches: the
    /// blocks holding each handle, and the handles of each pod.
    handle_blocks: BTreeMap<String, BTreeSet<String>>,
    pod_handles: BTreeMap<PodKey, BTreeSet<String>>,
    /// Handles whose pod is absent, since when.
    missing_since: BTreeMap<String, Instant>,
    in_flight: BTreeSet<String>,
    leader: bool,
}

impl PodGc {
    pub fn new(grace: Duration) -> Self {
        PodGc {
            grace,
            pods: None,
            blocks: BTreeMap::new(),
            handle_blocks: BTreeMap::new(),
            pod_handles: BTreeMap::new(),
            missing_since: BTreeMap::new(),
            in_flight: BTreeSet::new(),
            leader: false,
        }
    }

    pub fn handle(&mut self, ev: Event, now: Instant) -> Vec<Release> {
        match ev {
            Event::PodsListed(all) => {
                self.pods = Some(all);
                let handles: Vec<String> =
                    self.handle_blocks.keys().cloned().collect();
                self.missing_since.clear();
                for h in handles {
                    self.reconsider(&h, now);
                }
            }
            Event::PodAdded(p) => {
                if let Some(pods) = &mut self.pods {
                    pods.insert(p.clone());
                    self.reconsider_pod(&p, now);
                }
            }
            Event::PodDeleted(p) => {
                if let Some(pods) = &mut self.pods {
                    pods.remove(&p);
                    self.reconsider_pod(&p, now);
                }
            }
            Event::Block(name, allocs) => {
                let old = self.unindex(&name);
                for a in &allocs {
                    self.handle_blocks
                        .entry(a.handle.clone())
                        .or_default()
                        .insert(name.clone());
                    self.pod_handles
                        .entry(a.pod.clone())
                        .or_default()
                        .insert(a.handle.clone());
                }
                let mut touched: BTreeSet<String> =
                    allocs.iter().map(|a| a.handle.clone()).collect();
                touched.extend(old.into_iter().map(|a| a.handle));
                self.blocks.insert(name, allocs);
                for h in touched {
                    self.reconsider(&h, now);
                }
            }
            Event::BlockDeleted(name) => {
                for a in self.unindex(&name) {
                    self.reconsider(&a.handle, now);
                }
            }
            Event::Leader(l) => self.leader = l,
            Event::Tick => {}
            Event::ReleaseDone(h) => {
                // Still there (the release failed or left an address
                // alone): a new grace period, then another try.
                self.in_flight.remove(&h);
                self.missing_since.remove(&h);
                self.reconsider(&h, now);
            }
        }
        self.due(now)
    }

    /// Takes block `name` out of `blocks` and the indexes; returns its
    /// allocations.
    fn unindex(&mut self, name: &str) -> Vec<Allocation> {
        let old = self.blocks.remove(name).unwrap_or_default();
        for a in &old {
            if let Some(bs) = self.handle_blocks.get_mut(&a.handle) {
                bs.remove(name);
                if bs.is_empty() {
                    self.handle_blocks.remove(&a.handle);
                    if let Some(hs) = self.pod_handles.get_mut(&a.pod) {
                        hs.remove(&a.handle);
                        if hs.is_empty() {
                            self.pod_handles.remove(&a.pod);
                        }
                    }
                }
            }
        }
        old
    }

    fn allocations_of<'a>(
        &'a self,
        handle: &'a str,
    ) -> impl Iterator<Item = &'a Allocation> + 'a {
        self.handle_blocks
            .get(handle)
            .into_iter()
            .flatten()
            .filter_map(|b| self.blocks.get(b))
            .flatten()
            .filter(move |a| a.handle == handle)
    }

    fn reconsider(&mut self, handle: &str, now: Instant) {
        let Some(pods) = &self.pods else { return };
        let leaked = self
            .allocations_of(handle)
            .next()
            .is_some_and(|a| !pods.contains(&a.pod));
        if leaked {
            self.missing_since.entry(handle.to_string()).or_insert(now);
        } else {
            self.missing_since.remove(handle);
        }
    }

    fn reconsider_pod(&mut self, pod: &PodKey, now: Instant) {
        let handles = self.pod_handles.get(pod).cloned().unwrap_or_default();
        for h in handles {
            self.reconsider(&h, now);
        }
    }

    fn due(&mut self, now: Instant) -> Vec<Release> {
        if !self.leader {
            return Vec::new();
        }
        let due: Vec<String> = self
            .missing_since
            .iter()
            .filter(|(h, since)| {
                now.duration_since(**since) >= self.grace
                    && !self.in_flight.contains(*h)
            })
            .map(|(h, _)| h.clone())
            .collect();
        due.into_iter()
            .map(|h| {
                self.in_flight.insert(h.clone());
                let ips = self
                    .allocations_of(&h)
                    .map(|a| (a.ip, a.sequence))
                    .collect();
                Release { handle: h, ips }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(n: &str) -> PodKey {
        ("default".into(), n.into())
    }

    fn alloc(ip: &str, h: &str, p: &str, seq: u64) -> Allocation {
        Allocation {
            ip: ip.parse().unwrap(),
            handle: h.into(),
            pod: pod(p),
            sequence: Some(seq),
        }
    }

    #[test]
    fn an_address_of_a_gone_pod_is_released_after_the_grace_period() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut g = PodGc::new(s(30));
        g.handle(Event::Leader(true), t0);
        let blk = vec![
            alloc("10.0.0.1", "h-live", "live", 1),
            alloc("10.0.0.2", "h-gone", "gone", 2),
        ];
        // Nothing before the pods are listed.
        assert!(g.handle(Event::Block("b".into(), blk), t0).is_empty());
        assert!(
            g.handle(Event::PodsListed([pod("live")].into()), t0)
                .is_empty()
        );
        assert!(g.handle(Event::Tick, t0 + s(29)).is_empty());
        let r = g.handle(Event::Tick, t0 + s(30));
        assert_eq!(
            r,
            [Release {
                handle: "h-gone".into(),
                ips: vec![("10.0.0.2".parse().unwrap(), Some(2))],
            }]
        );
        assert!(g.handle(Event::Tick, t0 + s(31)).is_empty());
        // The live pod goes: its own grace period starts.
        g.handle(Event::PodDeleted(pod("live")), t0 + s(40));
        assert!(g.handle(Event::Tick, t0 + s(69)).is_empty());
        assert_eq!(g.handle(Event::Tick, t0 + s(70)).len(), 1);
    }

    #[test]
    fn a_pod_that_appears_in_time_keeps_its_address() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut g = PodGc::new(s(30));
        g.handle(Event::Leader(true), t0);
        g.handle(Event::PodsListed(BTreeSet::new()), t0);
        let blk = vec![alloc("10.0.0.3", "h-new", "new", 1)];
        g.handle(Event::Block("b".into(), blk), t0);
        g.handle(Event::PodAdded(pod("new")), t0 + s(5));
        assert!(g.handle(Event::Tick, t0 + s(100)).is_empty());
    }

    #[test]
    fn a_block_rewrite_and_delete_keep_the_indexes_right() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut g = PodGc::new(s(10));
        g.handle(Event::Leader(true), t0);
        g.handle(Event::PodsListed(BTreeSet::new()), t0);
        // One handle in two blocks: both addresses go together.
        g.handle(
            Event::Block("b1".into(), vec![alloc("10.0.0.1", "h", "p", 1)]),
            t0,
        );
        g.handle(
            Event::Block("b2".into(), vec![alloc("10.0.1.1", "h", "p", 2)]),
            t0,
        );
        let r = g.handle(Event::Tick, t0 + s(10));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].ips.len(), 2);
        g.handle(Event::ReleaseDone("h".into()), t0 + s(11));
        // The release emptied b1; b2 is deleted: nothing is left to free.
        g.handle(Event::Block("b1".into(), Vec::new()), t0 + s(11));
        g.handle(Event::BlockDeleted("b2".into()), t0 + s(11));
        assert!(g.handle_blocks.is_empty() && g.pod_handles.is_empty());
        assert!(g.handle(Event::Tick, t0 + s(100)).is_empty());
    }
}
