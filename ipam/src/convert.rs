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

/// A stored block that breaks one of a block's invariants: IPAM never
/// allocates from it (nor releases in it), `ipam check` names it, and
/// every other block keeps working.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid IPAMBlock {name}: {field}: {message}")]
pub struct InvalidBlock {
    /// The object's name (its key).
    pub name: String,
    /// The offending field, e.g. `spec.unallocated`.
    pub field: &'static str,
    pub message: String,
}

/// The pure model of a stored block, after checking every invariant the
/// allocator relies on; a block breaking one is refused rather than
/// guessed at (a free ordinal that is also allocated would be handed out
/// twice, a CIDR that disagrees with the name hands out addresses outside
/// the pool the name places it in).
pub fn block_from_obj(obj: &IPAMBlock) -> Result<Block, InvalidBlock> {
    let name = obj.metadata.name.clone().unwrap_or_default();
    block_from_spec(&name, &obj.spec)
}

/// [`block_from_obj`] for the block stored under `name`.
pub fn block_from_spec(
    name: &str,
    spec: &IPAMBlockSpec,
) -> Result<Block, InvalidBlock> {
    let bad = |field: &'static str, message: String| InvalidBlock {
        name: name.to_string(),
        field,
        message,
    };
    let cidr: IpNetwork = spec
        .cidr
        .parse()
        .map_err(|e| bad("spec.cidr", format!("{:?}: {e}", spec.cidr)))?;
    let canonical = addr::net_at(
        crate::addr::Family::of_net(&cidr),
        addr::base(&cidr),
        cidr.prefix(),
    );
    if canonical != cidr {
        return Err(bad(
            "spec.cidr",
            format!("{cidr} has host bits set (the network is {canonical})"),
        ));
    }
    if !name.is_empty() && block_name(&cidr) != name {
        return Err(bad(
            "spec.cidr",
            format!(
                "{cidr} does not match the object name, which is the block \
                 {name}"
            ),
        ));
    }
    let size = addr::size(&cidr);
    if spec.allocations.len() as u128 != size {
        return Err(bad(
            "spec.allocations",
            format!(
                "has {} entries, the block has {size} addresses",
                spec.allocations.len()
            ),
        ));
    }
    let n_attr = spec.attributes.len();
    if let Some((o, i)) = spec
        .allocations
        .iter()
        .enumerate()
        .find_map(|(o, i)| i.filter(|i| *i >= n_attr).map(|i| (o, i)))
    {
        return Err(bad(
            "spec.allocations",
            format!("ordinal {o} refers to attribute {i}, only {n_attr} exist"),
        ));
    }
    // Every ordinal is exactly one of: allocated, or once in unallocated.
    let mut free = vec![false; spec.allocations.len()];
    for &o in &spec.unallocated {
        let Some(seen) = free.get_mut(o) else {
            return Err(bad(
                "spec.unallocated",
                format!("has ordinal {o}, outside 0..{size}"),
            ));
        };
        if *seen {
            return Err(bad(
                "spec.unallocated",
                format!("lists ordinal {o} more than once"),
            ));
        }
        if spec.allocations[o].is_some() {
            return Err(bad(
                "spec.unallocated",
                format!(
                    "lists ordinal {o} ({}), which spec.allocations says is \
                     allocated",
                    ip_of(&cidr, o)
                ),
            ));
        }
        *seen = true;
    }
    if let Some(o) =
        (0..free.len()).find(|&o| !free[o] && spec.allocations[o].is_none())
    {
        return Err(bad(
            "spec.unallocated",
            format!(
                "lacks ordinal {o} ({}), which spec.allocations says is free",
                ip_of(&cidr, o)
            ),
        ));
    }
    for (key, seq) in &spec.sequence_number_for_allocation {
        let ok = key.parse::<usize>().is_ok_and(|o| (o as u128) < size);
        if !ok {
            return Err(bad(
                "spec.sequenceNumberForAllocation",
                format!("key {key:?} is not an ordinal in 0..{size}"),
            ));
        }
        if *seq > spec.sequence_number {
            return Err(bad(
                "spec.sequenceNumberForAllocation",
                format!(
                    "ordinal {key} has {seq}, above the block's \
                     sequenceNumber {}",
                    spec.sequence_number
                ),
            ));
        }
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

/// The valid blocks among `objs`, and why each other one is invalid
/// (logged: one bad block must not stop a reader of every block).
pub fn partition_blocks(objs: &[IPAMBlock]) -> (Vec<Block>, Vec<InvalidBlock>) {
    let mut good = Vec::with_capacity(objs.len());
    let mut bad = Vec::new();
    for o in objs {
        match block_from_obj(o) {
            Ok(b) => good.push(b),
            Err(e) => {
                tracing::warn!(error = %e, "skipping an invalid block");
                bad.push(e);
            }
        }
    }
    (good, bad)
}

/// The address at ordinal `o` of `cidr` (for messages).
fn ip_of(cidr: &IpNetwork, o: usize) -> std::net::IpAddr {
    addr::from_u128(
        crate::addr::Family::of_net(cidr),
        addr::base(cidr) + o as u128,
    )
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

    fn stored() -> IPAMBlock {
        let mut b = Block::new("10.0.0.0/30".parse().unwrap(), Some("n1"), 5);
        b.allocate(1, "net.a", &BTreeMap::new(), &[]);
        new_block_object(&b, "2026-01-01T00:00:00Z")
    }

    /// The error for `obj` changed by `f`, as text.
    fn refused(f: impl FnOnce(&mut IPAMBlock)) -> InvalidBlock {
        let mut obj = stored();
        f(&mut obj);
        block_from_obj(&obj).unwrap_err()
    }

    #[test]
    fn block_spec_round_trip() {
        let obj = stored();
        assert_eq!(obj.spec.affinity.as_deref(), Some("host:n1"));
        let b = block_from_obj(&obj).unwrap();
        let mut again = obj.spec.clone();
        block_into_spec(&b, &mut again);
        assert_eq!(again, obj.spec);
    }

    #[test]
    fn every_block_invariant_is_checked_and_named() {
        type Change = Box<dyn FnOnce(&mut IPAMBlock)>;
        let cases: Vec<(&str, Change, &str)> = vec![
            (
                "spec.allocations",
                Box::new(|o| {
                    o.spec.allocations.pop();
                }),
                "has 3 entries",
            ),
            (
                "spec.allocations",
                Box::new(|o| o.spec.allocations[0] = Some(9)),
                "refers to attribute 9",
            ),
            // The duplicate: ordinal 0 is allocated and free.
            (
                "spec.unallocated",
                Box::new(|o| o.spec.unallocated.insert(0, 0)),
                "lists ordinal 0 (10.0.0.0), which spec.allocations says is \
                 allocated",
            ),
            (
                "spec.unallocated",
                Box::new(|o| o.spec.unallocated.push(1)),
                "more than once",
            ),
            (
                "spec.unallocated",
                Box::new(|o| o.spec.unallocated.push(4)),
                "outside 0..4",
            ),
            (
                "spec.unallocated",
                Box::new(|o| {
                    o.spec.unallocated.pop();
                }),
                "lacks ordinal 3",
            ),
            // The stray block: hands out addresses of no pool.
            (
                "spec.cidr",
                Box::new(|o| o.spec.cidr = "10.99.0.0/30".into()),
                "does not match the object name",
            ),
            (
                "spec.cidr",
                Box::new(|o| o.spec.cidr = "10.0.0.1/30".into()),
                "host bits",
            ),
            (
                "spec.cidr",
                Box::new(|o| o.spec.cidr = "nonsense".into()),
                "nonsense",
            ),
            (
                "spec.sequenceNumberForAllocation",
                Box::new(|o| {
                    o.spec.sequence_number_for_allocation.insert("7".into(), 1);
                }),
                "not an ordinal",
            ),
            (
                "spec.sequenceNumberForAllocation",
                Box::new(|o| {
                    o.spec
                        .sequence_number_for_allocation
                        .insert("0".into(), 1000);
                }),
                "above the block's sequenceNumber",
            ),
        ];
        for (field, change, want) in cases {
            let e = refused(change);
            assert_eq!(e.field, field, "{e}");
            assert_eq!(e.name, "10-0-0-0-30", "{e}");
            assert!(e.to_string().contains(want), "{want:?} not in {e}");
        }
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
