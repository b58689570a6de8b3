//! BlockAffinity: a node's claim on a block (Calico BlockAffinity). The
//! claim is two-phase: `pending` while the block is being created,
//! `confirmed` once it exists, `pendingDeletion` while being released.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Affinity of one block to one node.
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
    doc = "A node's claim on one block (Calico BlockAffinity).",
    kind = "BlockAffinity",
    plural = "blockaffinities",
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".spec.node"}"#,
    printcolumn = r#"{"name":"CIDR","type":"string","jsonPath":".spec.cidr"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".spec.state"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlockAffinitySpec {
    /// Claim state.
    pub state: AffinityState,
    /// The node holding the claim.
    pub node: String,
    /// Affinity type; `host` for nodes.
    #[serde(rename = "type", default = "default_type")]
    pub type_: String,
    /// The claimed block.
    pub cidr: String,
    /// Soft-delete marker.
    #[serde(default)]
    pub deleted: bool,
}

/// The claim states, serialised exactly as Calico does.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    JsonSchema,
)]
pub enum AffinityState {
    /// Claimed, block not yet known to exist: never advertised.
    #[default]
    #[serde(rename = "pending")]
    Pending,
    /// Claimed and the block exists.
    #[serde(rename = "confirmed")]
    Confirmed,
    /// Being released.
    #[serde(rename = "pendingDeletion")]
    PendingDeletion,
}

/// Affinity type of node claims.
pub const AFFINITY_TYPE_HOST: &str = "host";

fn default_type() -> String {
    AFFINITY_TYPE_HOST.to_string()
}
