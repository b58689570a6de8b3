//! The pure model of one IPAM block: which ordinals are allocated to which
//! handle, the FIFO free queue, and the sequence numbers that make a stale
//! release fail (Calico `ipam_block.go`, see calico.md section 2).
//!
//! Nothing here does IO. The driver reads an IPAMBlock, converts it to a
//! [`Block`], calls one of the mutating methods (each bumps the sequence
//! number once) and writes the result back with a compare-and-swap.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::addr::{self, Family};

/// Secondary attribute keys written on every allocation (Calico's names).
pub const ATTR_NODE: &str = "node";
pub const ATTR_NAMESPACE: &str = "namespace";
pub const ATTR_POD: &str = "pod";
pub const ATTR_TIMESTAMP: &str = "timestamp";

/// Prefix of a host affinity string (`host:<node>`).
pub const HOST_AFFINITY_PREFIX: &str = "host:";

/// Owner attributes of one or more allocations in a block.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attribute {
    /// The handle that owns the allocations; None only for legacy data.
    pub handle_id: Option<String>,
    /// Pod, namespace, node, timestamp, ...
    pub secondary: BTreeMap<String, String>,
}

/// Why a block operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("{ip} is not inside block {block}")]
    NotInBlock { ip: IpAddr, block: IpNetwork },
    #[error("{ip} is already allocated (handle {handle:?})")]
    AlreadyAllocated { ip: IpAddr, handle: Option<String> },
    #[error("{ip} is reserved by an IPReservation")]
    Reserved { ip: IpAddr },
    /// The ABA guard: the allocation was released and re-made since the
    /// caller read it.
    #[error(
        "stale release of {ip}: caller saw sequence number {expected}, the \
         allocation now has {actual:?}"
    )]
    BadSequenceNumber {
        ip: IpAddr,
        expected: u64,
        actual: Option<u64>,
    },
    #[error("{ip} belongs to handle {actual:?}, not {expected}")]
    HandleMismatch {
        ip: IpAddr,
        expected: String,
        actual: Option<String>,
    },
}

/// Conditions a release must meet (both optional).
#[derive(Debug, Clone, Default)]
pub struct ReleaseCheck<'a> {
    /// The allocation must belong to this handle.
    pub handle: Option<&'a str>,
    /// The allocation must carry this sequence number.
    pub sequence: Option<u64>,
}

/// Outcome of releasing one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Released {
    /// The address was allocated and is now free; carries its handle.
    Freed { handle: Option<String> },
    /// The address was already free: nothing changed.
    AlreadyFree,
}

/// One allocated address as seen by readers (check, GC, show).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub ip: IpAddr,
    pub ordinal: usize,
    pub handle_id: Option<String>,
    pub secondary: BTreeMap<String, String>,
    /// Sequence number recorded when the address was allocated.
    pub sequence: Option<u64>,
}

/// An IPAM block: a CIDR carved from a pool, owned (affine) by at most one
/// host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub cidr: IpNetwork,
    /// `host:<node>` or None for an unowned block.
    pub affinity: Option<String>,
    /// Per ordinal: index into `attributes`, None when free.
    pub allocations: Vec<Option<usize>>,
    /// Free ordinals, allocated from the head, released to the tail.
    pub unallocated: Vec<usize>,
    pub attributes: Vec<Attribute>,
    /// Bumped by every write.
    pub sequence_number: u64,
    /// Ordinal (decimal string, Calico's key form) -> sequence number at
    /// allocation time.
    pub sequence_for_allocation: BTreeMap<String, u64>,
}

// ===== impl Block =====

impl Block {
    /// A fresh block with every ordinal free, in address order.
    /// `seed_sequence` is the initial sequence number (Calico seeds it with
    /// the wall clock in nanoseconds so a re-created block never repeats an
    /// old sequence).
    pub fn new(
        cidr: IpNetwork,
        host: Option<&str>,
        seed_sequence: u64,
    ) -> Block {
        let n = usize::try_from(addr::size(&cidr))
            .expect("block sizes are bounded by validation (>= /20, >= /116)");
        Block {
            cidr: addr::net_at(
                Family::of_net(&cidr),
                addr::base(&cidr),
                cidr.prefix(),
            ),
            affinity: host.map(|h| format!("{HOST_AFFINITY_PREFIX}{h}")),
            allocations: vec![None; n],
            unallocated: (0..n).collect(),
            attributes: Vec::new(),
            sequence_number: seed_sequence,
            sequence_for_allocation: BTreeMap::new(),
        }
    }

    /// The node this block is affine to, if any.
    pub fn host(&self) -> Option<&str> {
        self.affinity.as_deref()?.strip_prefix(HOST_AFFINITY_PREFIX)
    }

    /// Number of addresses in the block.
    pub fn size(&self) -> usize {
        self.allocations.len()
    }

    /// Number of allocated addresses.
    pub fn allocated_count(&self) -> usize {
        self.allocations.iter().filter(|a| a.is_some()).count()
    }

    /// True when nothing is allocated.
    pub fn is_empty(&self) -> bool {
        self.allocations.iter().all(Option::is_none)
    }

    /// True for an empty block affine to no node: no one claims or
    /// releases it any more, so the release that emptied it deletes it
    /// (Calico's `releaseByHandle`/`releaseIPsFromBlock` do the same). A
    /// departed node's block that still held borrowed addresses ends so.
    pub fn is_orphaned_and_empty(&self) -> bool {
        self.affinity.is_none() && self.is_empty()
    }

    /// Free addresses that are not reserved.
    pub fn free_count(&self, reserved: &[IpNetwork]) -> usize {
        self.unallocated
            .iter()
            .filter(|&&o| !self.is_reserved(o, reserved))
            .count()
    }

    /// The address at `ordinal`.
    pub fn ip_at(&self, ordinal: usize) -> IpAddr {
        addr::from_u128(
            Family::of_net(&self.cidr),
            addr::base(&self.cidr) + ordinal as u128,
        )
    }

    /// The ordinal of `ip`, or None when outside the block.
    pub fn ordinal_of(&self, ip: IpAddr) -> Option<usize> {
        addr::ordinal(&self.cidr, ip).and_then(|o| usize::try_from(o).ok())
    }

    /// Allocates up to `num` addresses to `handle` from the head of the
    /// free queue, skipping reserved ordinals (they keep their place).
    /// Returns the addresses in allocation order; fewer than `num` when the
    /// block runs out.
    pub fn allocate(
        &mut self,
        num: usize,
        handle: &str,
        secondary: &BTreeMap<String, String>,
        reserved: &[IpNetwork],
    ) -> Vec<IpAddr> {
        let mut picked = Vec::new();
        let mut kept = Vec::with_capacity(self.unallocated.len());
        for &o in &self.unallocated {
            if picked.len() < num && !self.is_reserved(o, reserved) {
                picked.push(o);
            } else {
                kept.push(o);
            }
        }
        if picked.is_empty() {
            return Vec::new();
        }
        self.unallocated = kept;
        let attr = self.attribute_index(handle, secondary);
        for &o in &picked {
            self.allocations[o] = Some(attr);
            self.sequence_for_allocation
                .insert(o.to_string(), self.sequence_number);
        }
        self.sequence_number += 1;
        picked.into_iter().map(|o| self.ip_at(o)).collect()
    }

    /// Allocates the specific address `ip` to `handle`.
    pub fn assign(
        &mut self,
        ip: IpAddr,
        handle: &str,
        secondary: &BTreeMap<String, String>,
        reserved: &[IpNetwork],
    ) -> Result<(), BlockError> {
        let o = self.ordinal_of(ip).ok_or(BlockError::NotInBlock {
            ip,
            block: self.cidr,
        })?;
        if let Some(a) = self.allocations[o] {
            return Err(BlockError::AlreadyAllocated {
                ip,
                handle: self.attributes[a].handle_id.clone(),
            });
        }
        if self.is_reserved(o, reserved) {
            return Err(BlockError::Reserved { ip });
        }
        self.unallocated.retain(|&u| u != o);
        let attr = self.attribute_index(handle, secondary);
        self.allocations[o] = Some(attr);
        self.sequence_for_allocation
            .insert(o.to_string(), self.sequence_number);
        self.sequence_number += 1;
        Ok(())
    }

    /// Releases `ip` if `check` holds; the ordinal goes to the tail of the
    /// free queue so the longest-free address is reused first.
    pub fn release(
        &mut self,
        ip: IpAddr,
        check: &ReleaseCheck<'_>,
    ) -> Result<Released, BlockError> {
        let o = self.ordinal_of(ip).ok_or(BlockError::NotInBlock {
            ip,
            block: self.cidr,
        })?;
        let Some(a) = self.allocations[o] else {
            return Ok(Released::AlreadyFree);
        };
        let actual_handle = self.attributes[a].handle_id.clone();
        if let Some(want) = check.handle
            && actual_handle.as_deref() != Some(want)
        {
            return Err(BlockError::HandleMismatch {
                ip,
                expected: want.to_string(),
                actual: actual_handle,
            });
        }
        if let Some(expected) = check.sequence {
            let actual = self.sequence_of(o);
            if actual != Some(expected) {
                return Err(BlockError::BadSequenceNumber {
                    ip,
                    expected,
                    actual,
                });
            }
        }
        self.free_ordinal(o);
        self.compact_attributes();
        self.sequence_number += 1;
        Ok(Released::Freed {
            handle: actual_handle,
        })
    }

    /// Releases every address owned by `handle`; returns them.
    pub fn release_handle(&mut self, handle: &str) -> Vec<IpAddr> {
        let ords: Vec<usize> = (0..self.allocations.len())
            .filter(|&o| self.handle_at(o) == Some(handle))
            .collect();
        if ords.is_empty() {
            return Vec::new();
        }
        for &o in &ords {
            self.free_ordinal(o);
        }
        self.compact_attributes();
        self.sequence_number += 1;
        ords.into_iter().map(|o| self.ip_at(o)).collect()
    }

    /// Addresses owned by `handle`.
    pub fn ips_of_handle(&self, handle: &str) -> Vec<IpAddr> {
        (0..self.allocations.len())
            .filter(|&o| self.handle_at(o) == Some(handle))
            .map(|o| self.ip_at(o))
            .collect()
    }

    /// Every allocation, in ordinal order.
    pub fn allocations(&self) -> Vec<Allocation> {
        self.allocations
            .iter()
            .enumerate()
            .filter_map(|(o, a)| {
                let attr = &self.attributes[(*a)?];
                Some(Allocation {
                    ip: self.ip_at(o),
                    ordinal: o,
                    handle_id: attr.handle_id.clone(),
                    secondary: attr.secondary.clone(),
                    sequence: self.sequence_of(o),
                })
            })
            .collect()
    }

    /// The allocation at `ip`, if any.
    pub fn allocation(&self, ip: IpAddr) -> Option<Allocation> {
        let o = self.ordinal_of(ip)?;
        let attr = &self.attributes[self.allocations[o]?];
        Some(Allocation {
            ip,
            ordinal: o,
            handle_id: attr.handle_id.clone(),
            secondary: attr.secondary.clone(),
            sequence: self.sequence_of(o),
        })
    }

    /// Allocations made for a node other than the block's owner (borrowed
    /// addresses, which that node advertises as /32s).
    pub fn borrowed(&self) -> Vec<Allocation> {
        self.allocations()
            .into_iter()
            .filter(|a| match a.secondary.get(ATTR_NODE) {
                Some(node) => self.host() != Some(node.as_str()),
                None => false,
            })
            .collect()
    }

    // ===== helper functions =====

    fn handle_at(&self, o: usize) -> Option<&str> {
        let a = self.allocations[o]?;
        self.attributes[a].handle_id.as_deref()
    }

    fn sequence_of(&self, o: usize) -> Option<u64> {
        self.sequence_for_allocation.get(&o.to_string()).copied()
    }

    fn is_reserved(&self, o: usize, reserved: &[IpNetwork]) -> bool {
        let ip = self.ip_at(o);
        reserved.iter().any(|r| r.contains(ip))
    }

    /// Reuses an identical attribute entry (as Calico does) or appends one.
    fn attribute_index(
        &mut self,
        handle: &str,
        secondary: &BTreeMap<String, String>,
    ) -> usize {
        if let Some(i) = self.attributes.iter().position(|a| {
            a.handle_id.as_deref() == Some(handle) && &a.secondary == secondary
        }) {
            return i;
        }
        self.attributes.push(Attribute {
            handle_id: Some(handle.to_string()),
            secondary: secondary.clone(),
        });
        self.attributes.len() - 1
    }

    fn free_ordinal(&mut self, o: usize) {
        self.allocations[o] = None;
        self.sequence_for_allocation.remove(&o.to_string());
        self.unallocated.push(o);
    }

    /// Drops attribute entries no allocation refers to and renumbers the
    /// references, so attributes never grow without bound.
    fn compact_attributes(&mut self) {
        let mut used = vec![false; self.attributes.len()];
        for a in self.allocations.iter().flatten() {
            used[*a] = true;
        }
        let mut remap = vec![usize::MAX; self.attributes.len()];
        let mut next = 0;
        for (i, u) in used.iter().enumerate() {
            if *u {
                remap[i] = next;
                next += 1;
            }
        }
        let mut i = 0;
        self.attributes.retain(|_| {
            let keep = used[i];
            i += 1;
            keep
        });
        for a in self.allocations.iter_mut().flatten() {
            *a = remap[*a];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(node: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(ATTR_NODE.to_string(), node.to_string())])
    }

    fn blk() -> Block {
        Block::new("10.0.0.0/29".parse().unwrap(), Some("n1"), 1000)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn new_block_is_free_in_order() {
        let b = blk();
        assert_eq!(b.size(), 8);
        assert!(b.is_empty());
        assert_eq!(b.unallocated, (0..8).collect::<Vec<_>>());
        assert_eq!(b.host(), Some("n1"));
    }

    #[test]
    fn allocation_takes_the_head_and_release_goes_to_the_tail() {
        let mut b = blk();
        let got = b.allocate(2, "net.a", &attrs("n1"), &[]);
        assert_eq!(got, vec![ip("10.0.0.0"), ip("10.0.0.1")]);
        assert_eq!(b.allocated_count(), 2);
        b.release(ip("10.0.0.0"), &ReleaseCheck::default()).unwrap();
        // 2..8 are older free addresses than 0: 0 is handed out last.
        let rest = b.allocate(7, "net.b", &attrs("n1"), &[]);
        assert_eq!(rest.last(), Some(&ip("10.0.0.0")));
        assert_eq!(rest.len(), 7);
        assert_eq!(b.free_count(&[]), 0);
        assert!(b.allocate(1, "net.c", &attrs("n1"), &[]).is_empty());
    }

    #[test]
    fn reserved_ordinals_are_skipped_but_keep_their_place() {
        let mut b = blk();
        let res: Vec<IpNetwork> = vec!["10.0.0.0/31".parse().unwrap()];
        assert_eq!(b.free_count(&res), 6);
        let got = b.allocate(1, "net.a", &attrs("n1"), &res);
        assert_eq!(got, vec![ip("10.0.0.2")]);
        assert_eq!(b.unallocated[..2], [0, 1]);
        assert_eq!(
            b.assign(ip("10.0.0.1"), "net.b", &attrs("n1"), &res),
            Err(BlockError::Reserved { ip: ip("10.0.0.1") })
        );
    }

    #[test]
    fn every_write_bumps_the_sequence_and_stale_release_is_refused() {
        let mut b = blk();
        b.allocate(1, "net.a", &attrs("n1"), &[]);
        assert_eq!(b.sequence_number, 1001);
        let seen = b.allocation(ip("10.0.0.0")).unwrap().sequence.unwrap();
        assert_eq!(seen, 1000);
        // Freed and re-allocated behind the garbage collector's back.
        b.release(ip("10.0.0.0"), &ReleaseCheck::default()).unwrap();
        b.assign(ip("10.0.0.0"), "net.b", &attrs("n1"), &[])
            .unwrap();
        let stale = ReleaseCheck {
            handle: None,
            sequence: Some(seen),
        };
        assert_eq!(
            b.release(ip("10.0.0.0"), &stale),
            Err(BlockError::BadSequenceNumber {
                ip: ip("10.0.0.0"),
                expected: 1000,
                actual: Some(1002),
            })
        );
        assert_eq!(b.allocated_count(), 1);
    }

    #[test]
    fn release_checks_the_handle_and_is_idempotent() {
        let mut b = blk();
        b.allocate(1, "net.a", &attrs("n1"), &[]);
        let wrong = ReleaseCheck {
            handle: Some("net.b"),
            sequence: None,
        };
        assert!(matches!(
            b.release(ip("10.0.0.0"), &wrong),
            Err(BlockError::HandleMismatch { .. })
        ));
        let ok = ReleaseCheck {
            handle: Some("net.a"),
            sequence: None,
        };
        assert_eq!(
            b.release(ip("10.0.0.0"), &ok),
            Ok(Released::Freed {
                handle: Some("net.a".into())
            })
        );
        assert_eq!(b.release(ip("10.0.0.0"), &ok), Ok(Released::AlreadyFree));
        assert!(b.release(ip("10.0.1.0"), &ok).is_err());
    }

    #[test]
    fn release_by_handle_frees_only_that_handle_and_compacts() {
        let mut b = blk();
        b.allocate(2, "net.a", &attrs("n1"), &[]);
        b.allocate(1, "net.b", &attrs("n1"), &[]);
        assert_eq!(b.attributes.len(), 2);
        let freed = b.release_handle("net.a");
        assert_eq!(freed, vec![ip("10.0.0.0"), ip("10.0.0.1")]);
        assert_eq!(b.attributes.len(), 1);
        assert_eq!(b.ips_of_handle("net.b"), vec![ip("10.0.0.2")]);
        assert!(b.release_handle("net.a").is_empty());
    }

    #[test]
    fn borrowed_are_allocations_for_other_nodes() {
        let mut b = blk();
        b.allocate(1, "net.a", &attrs("n1"), &[]);
        b.allocate(1, "net.b", &attrs("n2"), &[]);
        let borrowed = b.borrowed();
        assert_eq!(borrowed.len(), 1);
        assert_eq!(borrowed[0].ip, ip("10.0.0.1"));
    }

    #[test]
    fn ipv6_block() {
        let mut b = Block::new("fd00::/122".parse().unwrap(), None, 7);
        assert_eq!(b.size(), 64);
        let got = b.allocate(1, "net.a", &attrs("n1"), &[]);
        assert_eq!(got, vec![ip("fd00::")]);
        assert_eq!(b.host(), None);
    }

    #[test]
    fn only_an_empty_affinity_less_block_is_orphaned() {
        let mut b = blk();
        let got = b.allocate(1, "net.a", &attrs("n3"), &[]);
        assert!(!b.is_orphaned_and_empty(), "affine and in use");
        b.affinity = None;
        assert!(!b.is_orphaned_and_empty(), "in use");
        b.release(got[0], &ReleaseCheck::default()).unwrap();
        assert!(b.is_orphaned_and_empty());
        assert!(!blk().is_orphaned_and_empty(), "empty but affine");
    }
}
