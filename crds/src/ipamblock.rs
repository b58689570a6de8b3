//! IPAMBlock: the allocation state of one block of a pool. JSON field
//! names are exactly Calico's (`crd.projectcalico.org/v1` IPAMBlock), so
//! the layout is familiar to anyone who has debugged Calico IPAM.

use std::collections::BTreeMap;

use ipnetwork::IpNetwork;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

/// One block. `allocations[i]` is the ordinal-`i` address of `cidr`:
/// `null` when free, else an index into `attributes`. `unallocated`
/// lists free ordinals in the order they are handed out (FIFO, so a
/// released address is reused as late as possible).
#[derive(
    CustomResource,
    Serialize,
    Deserialize,
    Clone,
    Debug,
    Default,
    PartialEq,
    JsonSchema,
)]
#[kube(
    group = "margay.io",
    version = "v1",
    derive = "PartialEq",
    doc = "Allocation state of one address block (Calico IPAMBlock).",
    kind = "IPAMBlock",
    plural = "ipamblocks",
    printcolumn = r#"{"name":"CIDR","type":"string","jsonPath":".spec.cidr"}"#,
    printcolumn = r#"{"name":"Affinity","type":"string","jsonPath":".spec.affinity"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IPAMBlockSpec {
    /// The block's network.
    pub cidr: String,
    /// Owner of the block: `host:<node>` (or `virtual:<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<String>,
    /// When the affinity was claimed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity_claim_time: Option<String>,
    /// Deprecated in Calico; kept for compatibility.
    #[serde(default)]
    pub strict_affinity: bool,
    /// Per-ordinal allocation: index into `attributes`, `null` = free.
    #[serde(default)]
    pub allocations: Vec<Option<usize>>,
    /// Free ordinals, in hand-out order.
    #[serde(default)]
    pub unallocated: Vec<usize>,
    /// Owners of allocations.
    #[serde(default)]
    pub attributes: Vec<AllocationAttribute>,
    /// Soft-delete marker set before the block is removed.
    #[serde(default)]
    pub deleted: bool,
    /// Incremented on every allocation change.
    #[serde(default)]
    pub sequence_number: u64,
    /// Sequence number at which each ordinal (as a string) was
    /// allocated; lets a release be conditional on the same allocation.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sequence_number_for_allocation: BTreeMap<String, u64>,
}

/// Who holds an allocation.
#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct AllocationAttribute {
    /// IPAMHandle that owns the address.
    #[serde(
        default,
        rename = "handle_id",
        skip_serializing_if = "Option::is_none"
    )]
    pub handle_id: Option<String>,
    /// Owner details such as namespace, pod and node.
    #[serde(
        default,
        rename = "secondary",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub secondary: BTreeMap<String, String>,
    /// Attributes of an alternate owner (Calico live migration).
    #[serde(
        default,
        rename = "alternateOwnerAttrs",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub alternate_owner_attrs: BTreeMap<String, String>,
    /// When the address was released (RFC 3339), for reuse cool-down.
    #[serde(
        default,
        rename = "releasedAt",
        skip_serializing_if = "Option::is_none"
    )]
    pub released_at: Option<String>,
}

/// Prefix of host affinities in `affinity`.
pub const HOST_AFFINITY_PREFIX: &str = "host:";

impl IPAMBlockSpec {
    /// Parses `cidr`.
    pub fn cidr_net(&self) -> Result<IpNetwork, ValidationError> {
        crate::validate::parse_network("IPAMBlock", "spec.cidr", &self.cidr)
    }

    /// The node this block is affine to, if any.
    pub fn affine_host(&self) -> Option<&str> {
        self.affinity.as_deref()?.strip_prefix(HOST_AFFINITY_PREFIX)
    }
}
