//! Plain views of the IPAM objects that the pure parts (check, show, GC
//! planning) work on. The driver builds them from the datastore objects,
//! leaving out soft-deleted ones (readers ignore `deleted=true`).

use std::collections::{BTreeMap, BTreeSet};

use ipnetwork::IpNetwork;

use crate::block::Block;
use crate::convert::InvalidBlock;

/// BlockAffinity state. Only `Confirmed` means ownership; `Pending` is a
/// claim in progress and `PendingDeletion` a release in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AffinityState {
    Pending,
    Confirmed,
    PendingDeletion,
}

impl AffinityState {
    /// The datastore spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AffinityState::Pending => "pending",
            AffinityState::Confirmed => "confirmed",
            AffinityState::PendingDeletion => "pendingDeletion",
        }
    }

    /// Parses the datastore spelling; an empty state is Calico's legacy
    /// form of confirmed.
    pub fn parse(s: &str) -> Option<AffinityState> {
        match s {
            "pending" => Some(AffinityState::Pending),
            "confirmed" | "" => Some(AffinityState::Confirmed),
            "pendingDeletion" => Some(AffinityState::PendingDeletion),
            _ => None,
        }
    }
}

/// A node's claim on a block CIDR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffinityView {
    pub name: String,
    pub node: String,
    pub cidr: IpNetwork,
    pub state: AffinityState,
}

/// A handle: which blocks hold how many of its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandleView {
    pub id: String,
    /// Block CIDR -> number of addresses.
    pub blocks: BTreeMap<IpNetwork, u32>,
}

/// An IP pool as IPAM sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolView {
    pub name: String,
    pub cidr: IpNetwork,
    pub block_size: u8,
    pub disabled: bool,
}

/// Everything IPAM stores, read at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub pools: Vec<PoolView>,
    pub blocks: Vec<Block>,
    /// Stored blocks that break a block invariant (left out of `blocks`).
    pub invalid_blocks: Vec<InvalidBlock>,
    pub affinities: Vec<AffinityView>,
    pub handles: Vec<HandleView>,
    /// Names of the cluster's nodes, when the datastore has Node objects.
    pub nodes: Option<BTreeSet<String>>,
    pub reserved: Vec<IpNetwork>,
    /// Stored IPAM objects that do not decode: left out of the above,
    /// reported by `check`.
    pub invalid: Vec<margay_datastore::InvalidObject>,
}
