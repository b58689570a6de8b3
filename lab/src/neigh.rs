//! The kernel's neighbour (ARP and NDP) table limits, which a big lab
//! outgrows.
//!
//! The neighbour tables are shared by every network namespace on the
//! machine, and so are their garbage-collection thresholds (only the
//! initial namespace has the `gc_thresh*` sysctls). Every lab node talks to
//! every other node once the pods reach each other, so a 50-node lab needs
//! some 2,700 ARP entries, far above the default hard limit of 1024: the
//! kernel then logs "neighbour: arp_cache: neighbor table overflow!" and
//! drops packets to next hops it cannot resolve, which looks like a flaky
//! fabric. `lab up` raises the limits when the lab needs more than the
//! host allows, and `lab down` puts the old values back.

use std::path::Path;

use crate::LabError;
use crate::topology::Topology;

/// The thresholds raised per family: the hard limit (no new entries
/// beyond it) and the soft limit (above it the kernel collects entries
/// after 5 s), in the order they are raised: the soft limit never exceeds
/// the hard one on the way up, nor on the way down (restored in reverse).
const THRESHOLDS: [&str; 2] = ["gc_thresh3", "gc_thresh2"];

fn path(family: &str, threshold: &str) -> String {
    format!("/proc/sys/net/{family}/neigh/default/{threshold}")
}

/// Neighbour entries per family when every pod talks to every other: each
/// node resolves every other node, the ToR and its pods; the ToR every
/// node; each pod its gateway. Plus what the host itself holds.
pub(crate) fn needed_entries(topo: &Topology) -> u64 {
    let nodes = topo.nodes.len() as u64;
    let pods = topo.pods.len() as u64;
    nodes * (nodes + 1) + nodes + 2 * pods
}

/// The value `path` needs for `needed` entries: the soft limit must leave
/// room for them, the hard limit twice that.
fn wanted(path: &str, needed: u64) -> u64 {
    if path.ends_with("gc_thresh3") {
        2 * needed
    } else {
        needed
    }
}

fn read(path: &str) -> Result<u64, LabError> {
    let text = std::fs::read_to_string(path).map_err(|e| LabError::Io {
        what: format!("reading {path}"),
        source: e,
    })?;
    text.trim().parse().map_err(|e| {
        LabError::State(format!("{path} holds {:?}: {e}", text.trim()))
    })
}

fn write(path: &str, value: u64) -> Result<(), LabError> {
    std::fs::write(path, value.to_string()).map_err(|e| LabError::Io {
        what: format!("writing {value} to {path}"),
        source: e,
    })
}

/// Raises every threshold of the lab's families below what `needed`
/// entries want; returns the raised ones with their old values (to
/// restore), empty when the host already allows enough.
pub(crate) fn raise(
    topo: &Topology,
    needed: u64,
) -> Result<Vec<(String, u64)>, LabError> {
    let mut raised = Vec::new();
    for (family, used) in
        [("ipv4", topo.family.v4()), ("ipv6", topo.family.v6())]
    {
        for threshold in THRESHOLDS {
            let path = path(family, threshold);
            if !used || !Path::new(&path).exists() {
                continue;
            }
            let old = read(&path)?;
            let new = wanted(&path, needed);
            if old < new {
                write(&path, new)?;
                raised.push((path, old));
            }
        }
    }
    Ok(raised)
}

/// "PATH: 1024 -> 5400" for each raised threshold.
pub(crate) fn describe(raised: &[(String, u64)]) -> Vec<String> {
    raised
        .iter()
        .map(|(path, old)| {
            let now = read(path).map_or("?".into(), |v| v.to_string());
            format!("{path}: {old} -> {now}")
        })
        .collect()
}

/// Puts raised thresholds back, in the reverse order of raising; returns
/// what it restored, in words.
pub(crate) fn restore(raised: &[(String, u64)]) -> Vec<String> {
    raised
        .iter()
        .rev()
        .filter(|(path, old)| write(path, *old).is_ok())
        .map(|(path, old)| format!("sysctl {path} = {old}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{Family, PeeringMode};

    #[test]
    fn fifty_nodes_outgrow_the_default_hard_limit_and_three_do_not() {
        let big = Topology::new(50, 1, PeeringMode::RouteReflector, Family::V4);
        let n = needed_entries(&big);
        assert!(n > 1024, "{n}");
        assert_eq!(wanted(&path("ipv4", "gc_thresh3"), n), 2 * n);
        assert_eq!(wanted(&path("ipv6", "gc_thresh2"), n), n);
        // The default soft limit (512) leaves room for a small lab.
        let small = Topology::new(3, 2, PeeringMode::Mesh, Family::V4);
        let soft = wanted(&path("ipv4", "gc_thresh2"), needed_entries(&small));
        assert!(soft < 512, "{soft}");
    }
}
