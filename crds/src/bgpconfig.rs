//! BGPConfiguration: cluster-wide BGP settings (Calico
//! `projectcalico.org/v3` BGPConfiguration). The object named `default`
//! applies to all nodes; `node.<name>` objects override per node.

use std::time::Duration;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::bgppeer::{BFDSettings, DEFAULT_MAX_RESTART_TIME};
use crate::duration::duration_field;
use crate::error::ValidationError;
use crate::password::BGPPassword;

/// Calico's default AS number for nodes without one.
pub const DEFAULT_AS_NUMBER: u32 = 64512;
/// The standard BGP port (RFC 4271 section 8.2.1).
pub const DEFAULT_LISTEN_PORT: u16 = 179;

/// Cluster-wide BGP settings.
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
    doc = "Cluster-wide (\"default\") or per-node BGP settings (Calico BGPConfiguration).",
    kind = "BGPConfiguration",
    plural = "bgpconfigurations",
    printcolumn = r#"{"name":"ASNumber","type":"integer","jsonPath":".spec.asNumber"}"#,
    printcolumn = r#"{"name":"Mesh","type":"boolean","jsonPath":".spec.nodeToNodeMeshEnabled"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPConfigurationSpec {
    /// Log level of the BGP daemon: Trace, Debug, Info (default),
    /// Warning, Error or Fatal, in any case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^(?i)(Trace|Debug|Info|Warning|Error|Fatal)?$"
    ))]
    pub log_severity_screen: Option<String>,
    /// Peer every node with every other node (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_to_node_mesh_enabled: Option<bool>,
    /// AS number of nodes that set none themselves (default 64512).
    #[serde(
        default,
        with = "crate::asn",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "crate::asn::schema")]
    pub as_number: Option<u32>,
    /// TCP port the BGP daemon listens on (default 179).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub listen_port: Option<u16>,
    /// Password for node-to-node mesh sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_password: Option<BGPPassword>,
    /// Graceful-restart time of mesh sessions (default 120s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_max_restart_time: Option<String>,
    /// Named community values, usable in `prefixAdvertisements`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<Community>,
    /// margay extension (not in Calico): keepalive interval of mesh
    /// sessions; the proposed hold time is three times it (at least 3s,
    /// RFC 4271 section 4.2). Unset: hold 240s, keepalive 80s (BIRD's
    /// defaults, as in Calico).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_keepalive_time: Option<String>,
    /// margay extension (not in Calico): BFD liveness detection (RFC
    /// 5880, 5881) on every mesh session.
    #[serde(
        default,
        rename = "nodeMeshBFD",
        skip_serializing_if = "Option::is_none"
    )]
    pub node_mesh_bfd: Option<BFDSettings>,
    /// Communities to attach to advertised prefixes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefix_advertisements: Vec<PrefixAdvertisement>,
    /// `NodeIP` binds the listener to the node's BGP address only;
    /// `None` (default) listens on all addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_mode: Option<BindMode>,
    /// Service cluster IP ranges to advertise.
    #[serde(
        default,
        rename = "serviceClusterIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_cluster_ips: Vec<ServiceCidr>,
    /// Service external IP ranges that may be advertised.
    #[serde(
        default,
        rename = "serviceExternalIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_external_ips: Vec<ServiceCidr>,
    /// Service LoadBalancer IP ranges that may be advertised.
    #[serde(
        default,
        rename = "serviceLoadBalancerIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_load_balancer_ips: Vec<ServiceCidr>,
    /// `Enabled` (default) advertises LoadBalancer ranges aggregated;
    /// `Disabled` advertises one /32 (/128) per service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_load_balancer_aggregation: Option<Aggregation>,
    /// Interface names (globs allowed) whose routes are never exported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_interfaces: Vec<String>,
}

/// A named BGP community value.
#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Community {
    /// Name used to refer to the value.
    pub name: String,
    /// `aa:nn` (standard, RFC 1997) or `aa:nn:mm` (large, RFC 8092).
    pub value: String,
}

/// Communities to attach to routes within a CIDR.
#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrefixAdvertisement {
    /// Routes inside this CIDR get the communities.
    pub cidr: String,
    /// Community names from `communities`, or literal values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<String>,
}

/// A service address range.
#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceCidr {
    pub cidr: String,
}

/// Which addresses the BGP listener binds to.
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
pub enum BindMode {
    #[default]
    None,
    #[serde(rename = "NodeIP")]
    NodeIP,
}

/// Whether service LoadBalancer routes are aggregated.
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
pub enum Aggregation {
    #[default]
    Enabled,
    Disabled,
}

/// Smallest mesh keepalive: hold time 3 s (RFC 4271 section 4.2).
pub const MIN_KEEPALIVE: Duration = Duration::from_secs(1);
/// Largest mesh keepalive: hold time 65535 s (a 16-bit OPEN field).
pub const MAX_KEEPALIVE: Duration = Duration::from_secs(65535 / 3);

/// The log levels `logSeverityScreen` accepts.
/// Calico matches them case-insensitively (`info` is `Info`).
pub const LOG_SEVERITIES: [&str; 6] =
    ["Trace", "Debug", "Info", "Warning", "Error", "Fatal"];

// ===== impl BGPConfigurationSpec =====

impl BGPConfigurationSpec {
    /// Default AS number for nodes, 64512 when unset.
    pub fn as_number(&self) -> u32 {
        self.as_number.unwrap_or(DEFAULT_AS_NUMBER)
    }

    /// Whether the node-to-node mesh is on (default true).
    pub fn mesh_enabled(&self) -> bool {
        self.node_to_node_mesh_enabled.unwrap_or(true)
    }

    /// BGP listen port, 179 when unset.
    pub fn listen_port(&self) -> u16 {
        self.listen_port.unwrap_or(DEFAULT_LISTEN_PORT)
    }

    /// Log level as spelled in [`LOG_SEVERITIES`] (Calico reads it in
    /// any case), `Info` when unset or empty. An unknown value is
    /// returned as written (validation refuses it).
    pub fn log_severity_screen(&self) -> &str {
        match self
            .log_severity_screen
            .as_deref()
            .filter(|s| !s.is_empty())
        {
            None => "Info",
            Some(raw) => LOG_SEVERITIES
                .iter()
                .find(|l| l.eq_ignore_ascii_case(raw))
                .copied()
                .unwrap_or(raw),
        }
    }

    /// Bind mode, `None` when unset.
    pub fn bind_mode(&self) -> BindMode {
        self.bind_mode.unwrap_or_default()
    }

    /// Graceful-restart time for mesh sessions, default 120 s.
    pub fn node_mesh_max_restart_time(
        &self,
    ) -> Result<Duration, ValidationError> {
        duration_field(
            "BGPConfiguration",
            "spec.nodeMeshMaxRestartTime",
            self.node_mesh_max_restart_time.as_deref(),
            DEFAULT_MAX_RESTART_TIME,
        )
    }

    /// Keepalive interval of mesh sessions if set. RFC 4271 section 4.2:
    /// the hold time (three keepalives) MUST be zero or at least three
    /// seconds, so a keepalive below 1s is rejected, as is one whose hold
    /// time would not fit the OPEN's 16-bit field.
    pub fn node_mesh_keepalive_time(
        &self,
    ) -> Result<Option<Duration>, ValidationError> {
        let Some(raw) = self.node_mesh_keepalive_time.as_deref() else {
            return Ok(None);
        };
        let field = "spec.nodeMeshKeepaliveTime";
        let d = duration_field(
            "BGPConfiguration",
            field,
            Some(raw),
            Duration::ZERO,
        )?;
        if d < MIN_KEEPALIVE || d > MAX_KEEPALIVE {
            return Err(ValidationError::string(
                "BGPConfiguration",
                field,
                raw,
                "allowed 1s to 21845s: the hold time is three times the \
                 keepalive and must be 3-65535 seconds (RFC 4271 section \
                 4.2)",
            ));
        }
        Ok(Some(d))
    }

    /// Resolves a community name or literal used in a prefix
    /// advertisement to its value (`None` if it is neither).
    pub fn resolve_community<'a>(&'a self, c: &'a str) -> Option<&'a str> {
        if let Some(named) = self.communities.iter().find(|n| n.name == c) {
            return Some(&named.value);
        }
        crate::community::CommunityValue::parse(c).map(|_| c)
    }
}
