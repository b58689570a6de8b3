//! IPAMConfig: cluster-wide IPAM settings (Calico IPAMConfig; a singleton
//! named `default`).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Name of the singleton object.
pub const IPAM_CONFIG_NAME: &str = "default";
/// Block cap per node used when `maxBlocksPerHost` is 0 (Calico's code
/// default).
pub const DEFAULT_MAX_BLOCKS_PER_HOST: u32 = 20;

/// IPAM settings.
#[derive(
    CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema,
)]
#[kube(
    group = "margay.io",
    version = "v1",
    derive = "PartialEq",
    doc = "Cluster-wide IPAM settings; singleton named default (Calico IPAMConfig).",
    kind = "IPAMConfig",
    plural = "ipamconfigs",
    printcolumn = r#"{"name":"StrictAffinity","type":"boolean","jsonPath":".spec.strictAffinity"}"#,
    printcolumn = r#"{"name":"MaxBlocksPerHost","type":"integer","jsonPath":".spec.maxBlocksPerHost"}"#,
    printcolumn = r#"{"name":"AutoAllocateBlocks","type":"boolean","jsonPath":".spec.autoAllocateBlocks"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.maxBlocksPerHost) || self.maxBlocksPerHost == 0 || (has(self.strictAffinity) && self.strictAffinity)",
        "message": "maxBlocksPerHost requires strictAffinity: true (as in Calico)"
    },
    {
        "rule": "(has(self.strictAffinity) && self.strictAffinity) || !has(self.autoAllocateBlocks) || self.autoAllocateBlocks",
        "message": "strictAffinity and autoAllocateBlocks cannot both be false: a node could neither claim nor borrow addresses"
    }
]))]
pub struct IPAMConfigSpec {
    /// Never borrow addresses from blocks affine to other nodes.
    #[serde(default)]
    pub strict_affinity: bool,
    /// Most blocks one node may claim; 0 means the default of 20.
    #[serde(default)]
    pub max_blocks_per_host: u32,
    /// Claim new blocks automatically when a node's blocks are full
    /// (default true).
    #[serde(default = "default_true")]
    pub auto_allocate_blocks: bool,
}

impl Default for IPAMConfigSpec {
    fn default() -> Self {
        IPAMConfigSpec {
            strict_affinity: false,
            max_blocks_per_host: 0,
            auto_allocate_blocks: true,
        }
    }
}

impl IPAMConfigSpec {
    /// The effective per-node block cap.
    pub fn max_blocks_per_host(&self) -> u32 {
        match self.max_blocks_per_host {
            0 => DEFAULT_MAX_BLOCKS_PER_HOST,
            n => n,
        }
    }
}

fn default_true() -> bool {
    true
}
