//! `check`: find inconsistencies in a [`Snapshot`] without changing
//! anything (the `calicoctl ipam check` of margay). Pure: the driver reads,
//! this function judges.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::block::ATTR_NODE;
use crate::model::{AffinityState, Snapshot};

/// One inconsistency.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Issue {
    /// An allocation with no handle: nothing can ever release it by handle.
    AllocationWithoutHandle { ip: IpAddr, block: IpNetwork },
    /// An allocation naming a handle object that does not exist.
    AllocationHandleMissing { ip: IpAddr, handle: String },
    /// A handle object that owns no address in any block.
    HandleWithoutAllocations { handle: String },
    /// A handle's per-block count disagrees with the block.
    HandleCountMismatch {
        handle: String,
        block: IpNetwork,
        recorded: u32,
        actual: u32,
    },
    /// A confirmed affinity whose block does not exist.
    AffinityWithoutBlock { node: String, cidr: IpNetwork },
    /// A block affine to a node that has no confirmed affinity for it.
    BlockWithoutAffinity { cidr: IpNetwork, node: String },
    /// A block affine to a node that no longer exists.
    BlockAffineToMissingNode { cidr: IpNetwork, node: String },
    /// Several confirmed affinities for one CIDR (two nodes would
    /// advertise it).
    DuplicateAffinity { cidr: IpNetwork, nodes: Vec<String> },
    /// A block inside no pool (its pool was deleted).
    BlockOutsidePools { cidr: IpNetwork },
    /// An allocation whose handle is in scope but not live.
    LeakedIp { ip: IpAddr, handle: String },
    /// An allocation made by `node` whose attachment has no endpoint on
    /// that node (e.g. an ADD whose commit landed but whose reply was
    /// lost): nothing uses the address.
    NoEndpoint {
        ip: IpAddr,
        handle: String,
        node: String,
    },
    /// A handle in scope holding several addresses of one family, where
    /// an attachment gets at most one (e.g. a repeated ADD that took a
    /// second address).
    HandleHoldsSeveral { handle: String, ips: Vec<IpAddr> },
    /// A stored block breaking a block invariant: nothing is allocated
    /// from it or released in it until an operator repairs it.
    InvalidBlock {
        name: String,
        field: String,
        message: String,
    },
    /// A stored object that does not decode: left out of every IPAM
    /// operation (a block is never allocated from) until it is fixed.
    InvalidObject {
        kind: String,
        name: String,
        field: String,
        error: String,
    },
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Issue::AllocationWithoutHandle { ip, block } => {
                write!(f, "{ip} in block {block} has no handle")
            }
            Issue::AllocationHandleMissing { ip, handle } => {
                write!(f, "{ip} names handle {handle}, which does not exist")
            }
            Issue::HandleWithoutAllocations { handle } => {
                write!(f, "handle {handle} owns no address")
            }
            Issue::HandleCountMismatch {
                handle,
                block,
                recorded,
                actual,
            } => write!(
                f,
                "handle {handle} records {recorded} address(es) in block \
                 {block}, the block has {actual}"
            ),
            Issue::AffinityWithoutBlock { node, cidr } => {
                write!(
                    f,
                    "node {node} has a confirmed affinity for {cidr} but no block exists"
                )
            }
            Issue::BlockWithoutAffinity { cidr, node } => {
                write!(
                    f,
                    "block {cidr} is affine to {node} without a confirmed affinity"
                )
            }
            Issue::BlockAffineToMissingNode { cidr, node } => {
                write!(
                    f,
                    "block {cidr} is affine to node {node}, which does not exist"
                )
            }
            Issue::DuplicateAffinity { cidr, nodes } => write!(
                f,
                "block {cidr} has confirmed affinities for several nodes: {}",
                nodes.join(", ")
            ),
            Issue::BlockOutsidePools { cidr } => {
                write!(f, "block {cidr} lies outside every IP pool")
            }
            Issue::LeakedIp { ip, handle } => {
                write!(f, "{ip} is held by handle {handle}, which is not live")
            }
            Issue::NoEndpoint { ip, handle, node } => write!(
                f,
                "{ip} is held by handle {handle}, which has no endpoint on \
                 node {node}"
            ),
            Issue::HandleHoldsSeveral { handle, ips } => write!(
                f,
                "handle {handle} holds several addresses of one family, an \
                 attachment gets one: {}",
                ips.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Issue::InvalidBlock {
                name,
                field,
                message,
            } => write!(
                f,
                "block {name} is invalid and unused: {field}: {message}"
            ),
            Issue::InvalidObject {
                kind,
                name,
                field,
                error,
            } => {
                write!(f, "{kind} {name:?}")?;
                if !field.is_empty() {
                    write!(f, " field {field}")?;
                }
                write!(f, " does not decode and is left out: {error}")
            }
        }
    }
}

/// The result of a check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub issues: Vec<Issue>,
    /// Allocated addresses seen.
    pub allocations: usize,
    pub blocks: usize,
    pub handles: usize,
}

impl Report {
    /// True when nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.issues.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "checked {} allocation(s) in {} block(s), {} handle(s): {} issue(s)",
            self.allocations,
            self.blocks,
            self.handles,
            self.issues.len()
        )?;
        for i in &self.issues {
            writeln!(f, "  - {i}")?;
        }
        Ok(())
    }
}

/// Which handles count as live for leak detection: those starting with
/// `prefix` (e.g. "k8s-pod-network.") that are not in `live`.
#[derive(Debug, Clone, Copy)]
pub struct Liveness<'a> {
    pub prefix: &'a str,
    pub live: &'a BTreeSet<String>,
}

/// The endpoints one node has: with it, `check` judges only that node's
/// allocations (their `node` attribute) against its endpoint records.
#[derive(Debug, Clone, Copy)]
pub struct NodeEndpoints<'a> {
    pub node: &'a str,
    /// Handles (`<network>.<containerID>`) with an endpoint on the node.
    pub liveness: Liveness<'a>,
}

/// Checks `snap`; with `liveness`, also reports leaked addresses.
pub fn check(snap: &Snapshot, liveness: Option<Liveness<'_>>) -> Report {
    check_with(snap, liveness, None)
}

/// [`check`], also reporting `endpoints.node`'s allocations that have no
/// endpoint there.
pub fn check_with(
    snap: &Snapshot,
    liveness: Option<Liveness<'_>>,
    endpoints: Option<NodeEndpoints<'_>>,
) -> Report {
    let mut issues: Vec<Issue> = snap
        .invalid
        .iter()
        .map(|o| Issue::InvalidObject {
            kind: o.kind.clone(),
            name: o.name.clone(),
            field: o.field.clone(),
            error: o.error.clone(),
        })
        .collect();
    // A handle that exists but does not decode is reported above, not as
    // missing under every address it owns.
    let bad_handles: BTreeSet<&str> = snap
        .invalid
        .iter()
        .filter(|o| o.kind == "IPAMHandle")
        .map(|o| o.name.as_str())
        .collect();
    let mut allocations = 0;
    // handle -> block -> count, from the blocks.
    let mut actual: BTreeMap<String, BTreeMap<IpNetwork, u32>> =
        BTreeMap::new();
    let handles: BTreeMap<&str, _> = snap
        .handles
        .iter()
        .map(|h| (h.id.as_str(), &h.blocks))
        .collect();

    // In-scope handle -> its addresses.
    let mut held: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    for b in &snap.blocks {
        if !snap
            .pools
            .iter()
            .any(|p| margay_crds::net::contains(&p.cidr, &b.cidr))
        {
            issues.push(Issue::BlockOutsidePools { cidr: b.cidr });
        }
        for a in b.allocations() {
            allocations += 1;
            let Some(h) = a.handle_id else {
                issues.push(Issue::AllocationWithoutHandle {
                    ip: a.ip,
                    block: b.cidr,
                });
                continue;
            };
            if !handles.contains_key(h.as_str())
                && !bad_handles.contains(h.as_str())
            {
                issues.push(Issue::AllocationHandleMissing {
                    ip: a.ip,
                    handle: h.clone(),
                });
            }
            if let Some(l) = liveness
                && h.starts_with(l.prefix)
                && !l.live.contains(&h)
            {
                issues.push(Issue::LeakedIp {
                    ip: a.ip,
                    handle: h.clone(),
                });
            }
            if let Some(ep) = endpoints
                && a.secondary.get(ATTR_NODE).map(String::as_str)
                    == Some(ep.node)
                && h.starts_with(ep.liveness.prefix)
                && !ep.liveness.live.contains(&h)
            {
                issues.push(Issue::NoEndpoint {
                    ip: a.ip,
                    handle: h.clone(),
                    node: ep.node.to_string(),
                });
            }
            // CNI attachments (the endpoint check's scope) get at most
            // one address per family; library callers may take more.
            if endpoints.is_some_and(|e| h.starts_with(e.liveness.prefix)) {
                held.entry(h.clone()).or_default().push(a.ip);
            }
            *actual.entry(h).or_default().entry(b.cidr).or_default() += 1;
        }
    }

    // What a handle records in an invalid block cannot be judged (the
    // block is reported itself).
    let invalid: BTreeSet<&str> = snap
        .invalid_blocks
        .iter()
        .map(|b| b.name.as_str())
        .collect();
    let unjudged = |c: &IpNetwork| {
        invalid.contains(crate::convert::block_name(c).as_str())
    };
    for h in &snap.handles {
        let got = actual.get(&h.id);
        if got.is_none_or(BTreeMap::is_empty) {
            if !h.blocks.is_empty() && h.blocks.keys().all(unjudged) {
                continue;
            }
            issues.push(Issue::HandleWithoutAllocations {
                handle: h.id.clone(),
            });
            continue;
        }
        let got = got.expect("checked above");
        let cidrs: BTreeSet<&IpNetwork> =
            h.blocks.keys().chain(got.keys()).collect();
        for cidr in cidrs.into_iter().filter(|c| !unjudged(c)) {
            let recorded = h.blocks.get(cidr).copied().unwrap_or(0);
            let actual = got.get(cidr).copied().unwrap_or(0);
            if recorded != actual {
                issues.push(Issue::HandleCountMismatch {
                    handle: h.id.clone(),
                    block: *cidr,
                    recorded,
                    actual,
                });
            }
        }
    }

    for (handle, ips) in held {
        let v4 = ips.iter().filter(|ip| ip.is_ipv4()).count();
        if v4 > 1 || ips.len() - v4 > 1 {
            issues.push(Issue::HandleHoldsSeveral { handle, ips });
        }
    }
    check_affinities(snap, &mut issues);
    issues.extend(snap.invalid_blocks.iter().map(|b| Issue::InvalidBlock {
        name: b.name.clone(),
        field: b.field.to_string(),
        message: b.message.clone(),
    }));
    issues.sort();
    Report {
        issues,
        allocations,
        blocks: snap.blocks.len() + snap.invalid_blocks.len(),
        handles: snap.handles.len(),
    }
}

/// Affinity/block agreement, duplicate claims and missing nodes.
fn check_affinities(snap: &Snapshot, issues: &mut Vec<Issue>) {
    let mut confirmed: BTreeMap<IpNetwork, Vec<String>> = BTreeMap::new();
    for a in &snap.affinities {
        if a.state == AffinityState::Confirmed {
            confirmed.entry(a.cidr).or_default().push(a.node.clone());
        }
    }
    let blocks: BTreeMap<IpNetwork, Option<&str>> =
        snap.blocks.iter().map(|b| (b.cidr, b.host())).collect();
    for (cidr, nodes) in &confirmed {
        if nodes.len() > 1 {
            let mut nodes = nodes.clone();
            nodes.sort();
            issues.push(Issue::DuplicateAffinity { cidr: *cidr, nodes });
        }
        // An invalid block exists, and is reported as such.
        let invalid = snap
            .invalid_blocks
            .iter()
            .any(|b| b.name == crate::convert::block_name(cidr));
        for node in nodes {
            if !blocks.contains_key(cidr) && !invalid {
                issues.push(Issue::AffinityWithoutBlock {
                    node: node.clone(),
                    cidr: *cidr,
                });
            }
        }
    }
    for b in &snap.blocks {
        let Some(host) = b.host() else { continue };
        let claimed = confirmed
            .get(&b.cidr)
            .is_some_and(|n| n.iter().any(|n| n == host));
        if !claimed {
            issues.push(Issue::BlockWithoutAffinity {
                cidr: b.cidr,
                node: host.to_string(),
            });
        }
        if let Some(nodes) = &snap.nodes
            && !nodes.contains(host)
        {
            issues.push(Issue::BlockAffineToMissingNode {
                cidr: b.cidr,
                node: host.to_string(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::Block;
    use crate::model::{AffinityView, HandleView, PoolView};

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    fn consistent() -> Snapshot {
        let mut b = Block::new(net("10.0.0.0/26"), Some("n1"), 1);
        let attrs = [(ATTR_NODE.to_string(), "n1".to_string())].into();
        b.allocate(2, "net.a", &attrs, &[]);
        Snapshot {
            pools: vec![PoolView {
                name: "p".into(),
                cidr: net("10.0.0.0/16"),
                block_size: 26,
                disabled: false,
            }],
            blocks: vec![b],
            affinities: vec![AffinityView {
                name: "n1-10-0-0-0-26".into(),
                node: "n1".into(),
                cidr: net("10.0.0.0/26"),
                state: AffinityState::Confirmed,
            }],
            handles: vec![HandleView {
                id: "net.a".into(),
                blocks: [(net("10.0.0.0/26"), 2)].into(),
            }],
            nodes: Some(["n1".to_string()].into()),
            reserved: vec![],
            invalid_blocks: vec![],
            invalid: vec![],
        }
    }

    #[test]
    fn consistent_snapshot_is_clean() {
        let r = check(&consistent(), None);
        assert!(r.is_clean(), "{r}");
        assert_eq!(r.allocations, 2);
    }

    #[test]
    fn reports_each_kind_of_inconsistency() {
        let mut s = consistent();
        s.handles[0].blocks.insert(net("10.0.0.0/26"), 3);
        s.handles.push(HandleView {
            id: "net.ghost".into(),
            blocks: BTreeMap::new(),
        });
        s.affinities.push(AffinityView {
            name: "n2".into(),
            node: "n2".into(),
            cidr: net("10.0.0.0/26"),
            state: AffinityState::Confirmed,
        });
        s.affinities.push(AffinityView {
            name: "n1-b".into(),
            node: "n1".into(),
            cidr: net("10.0.1.0/26"),
            state: AffinityState::Confirmed,
        });
        s.nodes = Some(BTreeSet::new());
        let mut orphan = Block::new(net("10.9.0.0/26"), None, 1);
        orphan.allocate(1, "net.b", &BTreeMap::new(), &[]);
        s.pools[0].cidr = net("10.0.0.0/20");
        s.blocks.push(orphan);
        let live = BTreeSet::from(["net.a".to_string()]);
        let r = check(
            &s,
            Some(Liveness {
                prefix: "net.",
                live: &live,
            }),
        );
        let text = r.to_string();
        for want in [
            "handle net.a records 3 address(es) in block 10.0.0.0/26, the block has 2",
            "handle net.ghost owns no address",
            "confirmed affinities for several nodes: n1, n2",
            "node n1 has a confirmed affinity for 10.0.1.0/26 but no block",
            "block 10.0.0.0/26 is affine to node n1, which does not exist",
            "10.9.0.0 names handle net.b, which does not exist",
            "block 10.9.0.0/26 lies outside every IP pool",
            "10.9.0.0 is held by handle net.b, which is not live",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert_eq!(r.issues.len(), 8, "{text}");
    }

    #[test]
    fn pending_affinity_does_not_count_as_ownership() {
        let mut s = consistent();
        s.affinities[0].state = AffinityState::Pending;
        let r = check(&s, None);
        assert_eq!(
            r.issues,
            vec![Issue::BlockWithoutAffinity {
                cidr: net("10.0.0.0/26"),
                node: "n1".into()
            }]
        );
    }

    #[test]
    fn allocations_of_one_node_without_an_endpoint_are_orphans() {
        let mut s = consistent();
        let n2 = [(ATTR_NODE.to_string(), "n2".to_string())].into();
        // n2 borrowed one address of n1's block.
        s.blocks[0].allocate(1, "net.b", &n2, &[]);
        s.handles.push(HandleView {
            id: "net.b".into(),
            blocks: [(net("10.0.0.0/26"), 1)].into(),
        });
        let none = BTreeSet::new();
        let on = |node| NodeEndpoints {
            node,
            liveness: Liveness {
                prefix: "net.",
                live: &none,
            },
        };
        let r = check_with(&s, None, Some(on("n2")));
        let orphans: Vec<_> = r
            .issues
            .iter()
            .filter(|i| matches!(i, Issue::NoEndpoint { .. }))
            .collect();
        assert_eq!(
            orphans,
            [&Issue::NoEndpoint {
                ip: "10.0.0.2".parse().unwrap(),
                handle: "net.b".into(),
                node: "n2".into(),
            }]
        );
        let r = check_with(&s, None, Some(on("n3")));
        assert!(
            !r.issues
                .iter()
                .any(|i| matches!(i, Issue::NoEndpoint { .. })),
            "{r}"
        );
        // net.a (2 IPv4 addresses) is more than one attachment takes.
        assert!(r.issues.contains(&Issue::HandleHoldsSeveral {
            handle: "net.a".into(),
            ips: vec!["10.0.0.0".parse().unwrap(), "10.0.0.1".parse().unwrap()],
        }));
    }
}
