//! Between the stored objects (margay-crds) and the pure views: parsing
//! and checking block specs, object names, and the soft-delete marker every
//! shared IPAM object carries.

use std::collections::BTreeMap;

use ipnetwork::IpNetwork;
use kube::api::ObjectMeta;
use margay_crds::{
    AffinityState as CrdAffinityState, AllocationAttribute, BlockAffinity,
    IPAMBlock, IPAMBlockSpec, IPAMHandle,
};

use crate::addr;
use crate::block::{Attribute, Block};
use crate::error::IpamError;
use crate::model::{AffinityState, AffinityView, HandleView};

/// Objects that are soft-deleted (`deleted=true`) before being removed;
/// readers treat a soft-deleted object as absent.
pub trait SoftDelete {
    fn is_deleted(&self) -> bool;
    fn mark_deleted(&mut self);
}

impl SoftDelete for IPAMBlock {
    fn is_deleted(&self) -> bool {
        self.spec.deleted
    }
    fn mark_deleted(&mut self) {
        self.spec.deleted = true;
    }
}

impl SoftDelete for BlockAffinity {
    fn is_deleted(&self) -> bool {
        self.spec.deleted
    }
    fn mark_deleted(&mut self) {
        self.spec.deleted = true;
    }
}

impl SoftDelete for IPAMHandle {
    fn is_deleted(&self) -> bool {
        self.spec.deleted
    }
    fn mark_deleted(&mut self) {
        self.spec.deleted = true;
    }
}

// ===== names =====

/// Object name of the block at `cidr` (Calico: `10-42-117-0-26`).
pub fn block_name(cidr: &IpNetwork) -> String {
    margay_crds::names::block_name(cidr)
}

/// The CIDR an IPAMBlock name encodes (the inverse of [`block_name`]),
/// for a block whose content cannot be read: `10-42-117-0-26` ->
/// `10.42.117.0/26`, `fd00---122` -> `fd00::/122`.
pub fn block_cidr_of_name(name: &str) -> Option<IpNetwork> {
    let (addr, len) = name.rsplit_once('-')?;
    let len: u8 = len.parse().ok()?;
    let v4 = addr.replace('-', ".");
    let ip: std::net::IpAddr = match v4.parse::<std::net::Ipv4Addr>() {
        Ok(a) => a.into(),
        Err(_) => addr.replace('-', ":").parse().ok()?,
    };
    let net = IpNetwork::new(ip, len).ok()?;
    (block_name(&net) == name).then_some(net)
}

/// Object name of `node`'s affinity for `cidr`.
pub fn affinity_name(node: &str, cidr: &IpNetwork) -> String {
    margay_crds::names::affinity_name(node, cidr)
}

/// Object name of a handle: the handle ID itself, which must therefore be
/// a valid object name (lowercase letters, digits, '-' and '.').
pub fn handle_name(handle: &str) -> Result<String, IpamError> {
    let ok = !handle.is_empty()
        && handle.len() <= 253
        && handle.bytes().all(|b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || b == b'-'
                || b == b'.'
        })
        && handle
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && handle
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if !ok {
        return Err(IpamError::BadRequest(format!(
            "handle {handle:?} is not a valid object name (1-253 of a-z, 0-9, \
             '-', '.', starting and ending alphanumeric), expected \
             <network>.<containerID>"
        )));
    }
    Ok(handle.to_string())
}

/// Metadata with just a name.
pub fn meta(name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        ..ObjectMeta::default()
    }
}

/// The resourceVersion of a stored object.
pub fn rv(meta: &ObjectMeta) -> Option<&str> {
    meta.resource_version.as_deref()
}

// ===== blocks =====

/// The pure model of a stored block; rejects internally inconsistent data
/// rather than guessing.
pub fn block_from_spec(spec: &IPAMBlockSpec) -> Result<Block, IpamError> {
    let bad = |message: String| IpamError::Invalid {
        what: format!("IPAMBlock {}", spec.cidr),
        message,
    };
    let cidr: IpNetwork = spec
        .cidr
        .parse()
        .map_err(|e| bad(format!("spec.cidr: {e}")))?;
    let size = addr::size(&cidr);
    if spec.allocations.len() as u128 != size {
        return Err(bad(format!(
            "spec.allocations has {} entries, the block has {size} addresses",
            spec.allocations.len()
        )));
    }
    let n_attr = spec.attributes.len();
    if let Some(i) = spec.allocations.iter().flatten().find(|i| **i >= n_attr) {
        return Err(bad(format!(
            "spec.allocations refers to attribute {i}, only {n_attr} exist"
        )));
    }
    if let Some(o) = spec.unallocated.iter().find(|o| **o as u128 >= size) {
        return Err(bad(format!("spec.unallocated has ordinal {o} >= {size}")));
    }
    Ok(Block {
        cidr,
        affinity: spec.affinity.clone(),
        allocations: spec.allocations.clone(),
        unallocated: spec.unallocated.clone(),
        attributes: spec
            .attributes
            .iter()
            .map(|a| Attribute {
                handle_id: a.handle_id.clone(),
                secondary: a.secondary.clone(),
            })
            .collect(),
        sequence_number: spec.sequence_number,
        sequence_for_allocation: spec.sequence_number_for_allocation.clone(),
    })
}

/// Writes the model back into `spec`, keeping the fields the model does
/// not own (claim time, flags).
pub fn block_into_spec(b: &Block, spec: &mut IPAMBlockSpec) {
    spec.cidr = b.cidr.to_string();
    spec.affinity = b.affinity.clone();
    spec.allocations = b.allocations.clone();
    spec.unallocated = b.unallocated.clone();
    spec.attributes = b
        .attributes
        .iter()
        .map(|a| AllocationAttribute {
            handle_id: a.handle_id.clone(),
            secondary: a.secondary.clone(),
            ..AllocationAttribute::default()
        })
        .collect();
    spec.sequence_number = b.sequence_number;
    spec.sequence_number_for_allocation = b.sequence_for_allocation.clone();
}

/// A new block object for `b`, claimed at `claim_time` (RFC 3339).
pub fn new_block_object(b: &Block, claim_time: &str) -> IPAMBlock {
    let mut spec = IPAMBlockSpec {
        affinity_claim_time: b.affinity.as_ref().map(|_| claim_time.into()),
        ..IPAMBlockSpec::default()
    };
    block_into_spec(b, &mut spec);
    IPAMBlock {
        metadata: meta(block_name(&b.cidr)),
        spec,
    }
}

// ===== affinities and handles =====

/// The view of an affinity; None when its CIDR does not parse.
pub fn affinity_view(a: &BlockAffinity) -> Option<AffinityView> {
    Some(AffinityView {
        name: a.metadata.name.clone().unwrap_or_default(),
        node: a.spec.node.clone(),
        cidr: a.spec.cidr.parse().ok()?,
        state: state_from_crd(a.spec.state),
    })
}

/// Pure state from the stored one.
pub fn state_from_crd(s: CrdAffinityState) -> AffinityState {
    match s {
        CrdAffinityState::Pending => AffinityState::Pending,
        CrdAffinityState::Confirmed => AffinityState::Confirmed,
        CrdAffinityState::PendingDeletion => AffinityState::PendingDeletion,
    }
}

/// The view of a handle (unparseable block keys are dropped).
pub fn handle_view(h: &IPAMHandle) -> HandleView {
    HandleView {
        id: h.spec.handle_id.clone(),
        blocks: h
            .spec
            .block
            .iter()
            .filter_map(|(k, v)| Some((k.parse().ok()?, *v)))
            .collect::<BTreeMap<_, _>>(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_spec_round_trip_and_validation() {
        let mut b = Block::new("10.0.0.0/30".parse().unwrap(), Some("n1"), 5);
        b.allocate(1, "net.a", &BTreeMap::new(), &[]);
        let obj = new_block_object(&b, "2026-01-01T00:00:00Z");
        assert_eq!(obj.spec.affinity.as_deref(), Some("host:n1"));
        assert_eq!(block_from_spec(&obj.spec).unwrap(), b);

        let mut broken = obj.spec.clone();
        broken.allocations.pop();
        let err = block_from_spec(&broken).unwrap_err().to_string();
        assert!(err.contains("spec.allocations has 3 entries"), "{err}");
        let mut broken = obj.spec.clone();
        broken.allocations[1] = Some(9);
        assert!(block_from_spec(&broken).is_err());
    }

    #[test]
    fn handle_names_must_be_object_names() {
        assert!(handle_name("k8s-pod-network.0a1b2c").is_ok());
        for bad in ["", "Net.A", "net/a", ".net", "net."] {
            let err = handle_name(bad).unwrap_err().to_string();
            assert!(err.contains("not a valid object name"), "{err}");
        }
    }
}

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn block_cidr_of_name_inverts_block_name() {
        for c in ["10.42.117.0/26", "fd00::/122", "fd00:1::40/122"] {
            let net: IpNetwork = c.parse().unwrap();
            assert_eq!(block_cidr_of_name(&block_name(&net)), Some(net));
        }
        assert_eq!(block_cidr_of_name("junk"), None);
        assert_eq!(block_cidr_of_name("10-0-0-1-24"), None, "not canonical");
    }
}
