//! Node: a margay node's BGP identity (Calico's internal Node resource:
//! `spec.bgp`, `spec.addresses`; labels live in `metadata.labels`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

/// One node. Its labels are what `nodeSelector`/`peerSelector`
/// expressions match.
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
    doc = "A node's BGP identity; its labels are matched by selectors (Calico Node).",
    kind = "Node",
    plural = "nodes",
    printcolumn = r#"{"name":"IPv4","type":"string","jsonPath":".spec.bgp.ipv4Address"}"#,
    printcolumn = r#"{"name":"ASNumber","type":"integer","jsonPath":".spec.bgp.asNumber"}"#,
    printcolumn = r#"{"name":"IPv6","type":"string","jsonPath":".spec.bgp.ipv6Address"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    /// BGP settings; a node without them does not run BGP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<NodeBGPSpec>,
    /// Addresses of the node, informational.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<NodeAddress>,
}

/// A node's BGP identity.
#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeBGPSpec {
    /// The node's AS number (default: BGPConfiguration `asNumber`).
    #[serde(
        default,
        with = "crate::asn",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "crate::asn::schema")]
    pub as_number: Option<u32>,
    /// IPv4 address and subnet of the node, CIDR form `10.0.0.1/24`. It
    /// is the BGP router ID, the IPv4 session address and next hop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
    /// IPv6 address and subnet of the node, CIDR form `fd00::1/64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<String>,
    /// Makes this node a route reflector with this cluster ID (an IPv4
    /// address, RFC 4456).
    #[serde(
        default,
        rename = "routeReflectorClusterID",
        skip_serializing_if = "Option::is_none"
    )]
    pub route_reflector_cluster_id: Option<String>,
}

/// One address of a node.
#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeAddress {
    /// IP or CIDR, e.g. `10.0.0.1/24`.
    pub address: String,
    /// Kind of address.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<NodeAddressType>,
}

/// What kind of address a node address is.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema,
)]
pub enum NodeAddressType {
    #[serde(rename = "CalicoNodeIP")]
    CalicoNodeIP,
    #[serde(rename = "InternalIP")]
    InternalIP,
    #[serde(rename = "ExternalIP")]
    ExternalIP,
}

// ===== impl NodeBGPSpec =====

impl NodeBGPSpec {
    /// The IPv4 address and subnet (a bare address counts as /32).
    pub fn ipv4_net(&self) -> Result<Option<IpNetwork>, ValidationError> {
        addr_field("spec.bgp.ipv4Address", self.ipv4_address.as_deref(), true)
    }

    /// The IPv6 address and subnet (a bare address counts as /128).
    pub fn ipv6_net(&self) -> Result<Option<IpNetwork>, ValidationError> {
        addr_field("spec.bgp.ipv6Address", self.ipv6_address.as_deref(), false)
    }

    /// The node's IPv4 address (without the subnet).
    pub fn ipv4_addr(&self) -> Result<Option<Ipv4Addr>, ValidationError> {
        Ok(self.ipv4_net()?.and_then(|n| match n.ip() {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }))
    }

    /// The node's IPv6 address (without the subnet).
    pub fn ipv6_addr(&self) -> Result<Option<Ipv6Addr>, ValidationError> {
        Ok(self.ipv6_net()?.and_then(|n| match n.ip() {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => None,
        }))
    }

    /// The route-reflector cluster ID, if this node is a reflector.
    pub fn rr_cluster_id(&self) -> Result<Option<Ipv4Addr>, ValidationError> {
        match self.route_reflector_cluster_id.as_deref() {
            None | Some("") => Ok(None),
            Some(s) => s.parse::<Ipv4Addr>().map(Some).map_err(|_| {
                ValidationError::string(
                    "Node",
                    "spec.bgp.routeReflectorClusterID",
                    s,
                    "allowed an IPv4 address such as \"224.0.0.1\" (the \
                     RFC 4456 CLUSTER_ID is 4 octets)",
                )
            }),
        }
    }
}

// ===== impl Node =====

impl Node {
    /// The node's labels (empty when none).
    pub fn labels(&self) -> std::collections::BTreeMap<String, String> {
        self.metadata.labels.clone().unwrap_or_default()
    }
}

// ===== helper functions =====

/// Parses a Node address that may carry a subnet; `v4` selects the
/// family that is required.
fn addr_field(
    field: &str,
    raw: Option<&str>,
    v4: bool,
) -> Result<Option<IpNetwork>, ValidationError> {
    let Some(raw) = raw.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let example = if v4 {
        "\"10.0.0.1/24\""
    } else {
        "\"fd00::1/64\""
    };
    let family = if v4 { "IPv4" } else { "IPv6" };
    let err = || {
        ValidationError::string(
            "Node",
            field,
            raw,
            format!(
                "allowed an {family} address in CIDR form such as {example}"
            ),
        )
    };
    let net: IpNetwork = raw.parse().map_err(|_| err())?;
    if net.is_ipv4() != v4 {
        return Err(err());
    }
    Ok(Some(net))
}
