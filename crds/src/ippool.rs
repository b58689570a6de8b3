//! IPPool: a range of pod addresses carved into per-node blocks
//! (Calico `projectcalico.org/v3` IPPool).

use ipnetwork::IpNetwork;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

/// Default block size for IPv4 pools (Calico: 26, i.e. 64 addresses).
pub const DEFAULT_BLOCK_SIZE_V4: u8 = 26;
/// Default block size for IPv6 pools (Calico: 122, i.e. 64 addresses).
pub const DEFAULT_BLOCK_SIZE_V6: u8 = 122;

/// A pool of addresses for pods. Nodes claim blocks of `blockSize` out of
/// `cidr` and advertise each block as one route.
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
    doc = "A pool of pod addresses, split into per-node blocks (Calico IPPool).",
    kind = "IPPool",
    plural = "ippools",
    printcolumn = r#"{"name":"CIDR","type":"string","jsonPath":".spec.cidr"}"#,
    printcolumn = r#"{"name":"BlockSize","type":"integer","jsonPath":".spec.blockSize"}"#,
    printcolumn = r#"{"name":"Disabled","type":"boolean","jsonPath":".spec.disabled"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!isCIDR(self.cidr) || !has(self.blockSize) || self.blockSize == 0 || (cidr(self.cidr).ip().family() == 4 ? self.blockSize >= 20 && self.blockSize <= 32 : self.blockSize >= 116 && self.blockSize <= 128)",
        "message": "blockSize must be 20-32 for an IPv4 pool and 116-128 for an IPv6 pool"
    },
    {
        "rule": "!isCIDR(self.cidr) || cidr(self.cidr).prefixLength() <= (has(self.blockSize) && self.blockSize != 0 ? self.blockSize : (cidr(self.cidr).ip().family() == 4 ? 26 : 122))",
        "message": "blockSize must not be shorter than the pool's prefix: a block cannot be larger than its pool"
    }
]))]
pub struct IPPoolSpec {
    /// The pool's network in CIDR notation, e.g. `10.244.0.0/16`. Host
    /// bits must be zero.
    #[schemars(length(max = 48), extend("x-kubernetes-validations" = [
        {
            "rule": "isCIDR(self)",
            "message": "cidr must be a network in CIDR notation such as 10.244.0.0/16 or fd00:10:244::/48"
        },
        {
            "rule": "!isCIDR(self) || cidr(self) == cidr(self).masked()",
            "message": "cidr has host bits set; use the network address"
        },
        {
            "rule": "!isCIDR(self) || (!cidr('169.254.0.0/16').containsIP(cidr(self).ip()) && !cidr(self).containsIP('169.254.0.0'))",
            "message": "cidr overlaps the IPv4 link-local range 169.254.0.0/16"
        },
        {
            "rule": "!isCIDR(self) || (!cidr('fe80::/10').containsIP(cidr(self).ip()) && !cidr(self).containsIP('fe80::'))",
            "message": "cidr overlaps the IPv6 link-local range fe80::/10"
        },
        {
            "rule": "self == oldSelf",
            "message": "cidr cannot be changed (as in Calico); create a new pool and migrate"
        }
    ]))]
    pub cidr: String,
    /// VXLAN encapsulation. margay routes without encapsulation: `Never`
    /// (the default) and `CrossSubnet` (plain routing, with the fabric
    /// routing pod blocks between subnets) are accepted, `Always` is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self != 'Always'",
        "message": "Always is not supported: margay routes pod traffic without encapsulation; use Never or CrossSubnet"
    }]))]
    pub vxlan_mode: Option<EncapMode>,
    /// IP-in-IP encapsulation; the same rules as `vxlanMode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self != 'Always'",
        "message": "Always is not supported: margay routes pod traffic without encapsulation; use Never or CrossSubnet"
    }]))]
    pub ipip_mode: Option<EncapMode>,
    /// Masquerade traffic from pods in this pool to destinations outside
    /// all pools.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nat_outgoing: bool,
    /// A disabled pool hands out no new addresses; existing ones stay.
    // The schema's default lets the apiserver store `false`, so that
    // `kubectl get ippools` shows it in the Disabled column.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[schemars(extend("default" = false))]
    pub disabled: bool,
    /// Do not advertise this pool's blocks over BGP.
    #[serde(
        default,
        rename = "disableBGPExport",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub disable_bgp_export: bool,
    /// Prefix length of the per-node blocks: 20-32 for IPv4 (default 26),
    /// 116-128 for IPv6 (default 122). Immutable once in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 128), extend("x-kubernetes-validations" = [{
        "rule": "self == oldSelf",
        "message": "blockSize cannot be changed (as in Calico); create a new pool and migrate"
    }]))]
    pub block_size: Option<u8>,
    /// Selects the nodes that may allocate from this pool (default
    /// `all()`).
    #[serde(
        deserialize_with = "crate::unset::empty_is_none",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub node_selector: Option<String>,
    /// Selects the namespaces whose pods may allocate from this pool
    /// (default: all namespaces).
    #[serde(
        deserialize_with = "crate::unset::empty_is_none",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub namespace_selector: Option<String>,
    /// What addresses from this pool may be used for; empty means
    /// `[Workload, Tunnel]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3), extend("x-kubernetes-validations" = [{
        "rule": "!self.exists(u, u == 'LoadBalancer') || self.all(u, u == 'LoadBalancer')",
        "message": "LoadBalancer cannot be combined with other uses"
    }]))]
    pub allowed_uses: Vec<AllowedUse>,
    /// `Automatic` pools are used when a request names no pool; `Manual`
    /// pools only when named explicitly (default `Automatic`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment_mode: Option<AssignmentMode>,
}

/// Encapsulation mode (Calico `IPIPMode` / `VXLANMode`).
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema,
)]
pub enum EncapMode {
    Never,
    Always,
    CrossSubnet,
}

/// Calico's name for the IP-in-IP mode type.
pub type IPIPMode = EncapMode;
/// Calico's name for the VXLAN mode type.
pub type VXLANMode = EncapMode;

/// A use that addresses from a pool may be put to.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    JsonSchema,
)]
pub enum AllowedUse {
    /// Pod (workload) addresses.
    Workload,
    /// Tunnel device addresses.
    Tunnel,
    /// Service LoadBalancer addresses.
    LoadBalancer,
}

/// Whether a pool is used by default or only when named.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    JsonSchema,
)]
pub enum AssignmentMode {
    #[default]
    Automatic,
    Manual,
}

// ===== impl IPPoolSpec =====

impl IPPoolSpec {
    /// Parses `cidr` (host bits must be zero).
    pub fn cidr_net(&self) -> Result<IpNetwork, ValidationError> {
        crate::validate::parse_network("IPPool", "spec.cidr", &self.cidr)
    }

    /// The block prefix length, applying Calico's default (26 for IPv4,
    /// 122 for IPv6) when unset or 0 (Calico's `blockSize: 0` is
    /// "unset"). An unparseable `cidr` is treated as IPv4.
    pub fn block_size(&self) -> u8 {
        self.block_size.filter(|b| *b != 0).unwrap_or_else(|| {
            if self.cidr.contains(':') {
                DEFAULT_BLOCK_SIZE_V6
            } else {
                DEFAULT_BLOCK_SIZE_V4
            }
        })
    }

    /// The node selector, defaulting to `all()`.
    pub fn node_selector(&self) -> &str {
        match self.node_selector.as_deref() {
            Some(s) if !s.trim().is_empty() => s,
            _ => "all()",
        }
    }

    /// Whether a node with `labels` may allocate from this pool
    /// (`nodeSelector`, default `all()`).
    pub fn selects_node(
        &self,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Result<bool, ValidationError> {
        let sel = crate::validate::check_selector(
            "IPPool",
            "spec.nodeSelector",
            self.node_selector(),
        )?;
        Ok(sel.matches(labels))
    }

    /// The VXLAN mode, defaulting to `Never`.
    pub fn vxlan_mode(&self) -> EncapMode {
        self.vxlan_mode.unwrap_or(EncapMode::Never)
    }

    /// The IP-in-IP mode, defaulting to `Never`.
    pub fn ipip_mode(&self) -> EncapMode {
        self.ipip_mode.unwrap_or(EncapMode::Never)
    }

    /// Allowed uses with Calico's default `[Workload, Tunnel]` applied.
    pub fn allowed_uses(&self) -> Vec<AllowedUse> {
        if self.allowed_uses.is_empty() {
            vec![AllowedUse::Workload, AllowedUse::Tunnel]
        } else {
            self.allowed_uses.clone()
        }
    }

    /// Whether addresses from this pool may be used for `what`.
    pub fn allows(&self, what: AllowedUse) -> bool {
        self.allowed_uses().contains(&what)
    }

    /// The assignment mode, defaulting to `Automatic`.
    pub fn assignment_mode(&self) -> AssignmentMode {
        self.assignment_mode.unwrap_or_default()
    }
}

// ===== impl IPPool =====

impl IPPool {
    /// Parses `spec.cidr`; the error names this pool.
    pub fn cidr_net(&self) -> Result<IpNetwork, ValidationError> {
        self.spec
            .cidr_net()
            .map_err(|e| e.named(crate::resource_name(&self.metadata)))
    }

    /// See [`IPPoolSpec::block_size`].
    pub fn block_size(&self) -> u8 {
        self.spec.block_size()
    }
}
