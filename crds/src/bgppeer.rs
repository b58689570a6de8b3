//! BGPPeer: an explicit BGP session for some or all nodes (Calico
//! `projectcalico.org/v3` BGPPeer), plus margay's BFD extension.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::duration_field;
use crate::error::ValidationError;
use crate::password::BGPPassword;

/// BIRD's (and so Calico's) default graceful-restart time.
pub const DEFAULT_MAX_RESTART_TIME: Duration = Duration::from_secs(120);
/// Default BFD transmit/receive interval (margay extension).
pub const DEFAULT_BFD_MIN_INTERVAL: Duration = Duration::from_millis(300);
/// Default BFD detection multiplier (margay extension).
pub const DEFAULT_BFD_MULTIPLIER: u8 = 3;
/// Largest BFD interval margay accepts (fits the 32-bit microsecond
/// fields of RFC 5880 section 4.1 with room to spare).
pub const MAX_BFD_INTERVAL: Duration = Duration::from_secs(3600);

/// A BGP peering. With neither `node` nor `nodeSelector` it applies to
/// every node; `peerIP` + `asNumber` name an external peer, while
/// `peerSelector` peers with other margay nodes instead.
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
    doc = "A BGP peering for some or all nodes (Calico BGPPeer).",
    kind = "BGPPeer",
    plural = "bgppeers",
    printcolumn = r#"{"name":"PeerIP","type":"string","jsonPath":".spec.peerIP"}"#,
    printcolumn = r#"{"name":"ASNumber","type":"integer","jsonPath":".spec.asNumber"}"#,
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".spec.node"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.node) || size(self.node) == 0 || !has(self.nodeSelector) || size(self.nodeSelector) == 0",
        "message": "node and nodeSelector cannot both be set"
    },
    {
        "rule": "!has(self.peerIP) || size(self.peerIP) == 0 || !has(self.peerSelector) || size(self.peerSelector) == 0",
        "message": "peerIP and peerSelector cannot both be set"
    },
    {
        "rule": "(has(self.peerIP) && size(self.peerIP) > 0) || (has(self.peerSelector) && size(self.peerSelector) > 0)",
        "message": "peerIP is required unless peerSelector is set"
    },
    {
        "rule": "!has(self.peerSelector) || size(self.peerSelector) == 0 || !has(self.asNumber) || string(self.asNumber) == '0'",
        "message": "asNumber must be empty when peerSelector is set (the selected nodes' AS numbers are used)"
    },
    {
        "rule": "!has(self.peerIP) || size(self.peerIP) == 0 || (has(self.asNumber) && string(self.asNumber) != '0')",
        "message": "asNumber is required with peerIP"
    },
    {
        "rule": "!has(self.reachableBy) || size(self.reachableBy) == 0 || (has(self.peerIP) && size(self.peerIP) > 0)",
        "message": "reachableBy must be empty when peerIP is empty"
    },
    {
        "rule": "!has(self.keepOriginalNextHop) || !self.keepOriginalNextHop || !has(self.nextHopMode)",
        "message": "keepOriginalNextHop and nextHopMode cannot both be set; keepOriginalNextHop is deprecated, use nextHopMode: Keep"
    }
]))]
pub struct BGPPeerSpec {
    /// Name of the one node this peering is for. Leave empty (and
    /// `nodeSelector` empty) to apply it to all nodes.
    #[serde(
        deserialize_with = "crate::unset::empty_is_none",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub node: Option<String>,
    /// Selects the nodes this peering is for; excludes `node`.
    #[serde(
        deserialize_with = "crate::unset::empty_is_none",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub node_selector: Option<String>,
    /// Selects other margay nodes to peer with (their Node BGP addresses
    /// and AS numbers); excludes `peerIP` and `asNumber`.
    #[serde(
        deserialize_with = "crate::unset::empty_is_none",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub peer_selector: Option<String>,
    /// Peer address with optional port: `192.0.2.1`, `192.0.2.1:1179`,
    /// `2001:db8::1` or `[2001:db8::1]:1179`.
    #[serde(
        deserialize_with = "crate::unset::empty_is_none",
        default,
        rename = "peerIP",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(max = 64))]
    pub peer_ip: Option<String>,
    /// The peer's AS number (0 means unset, as in Calico).
    #[serde(
        default,
        with = "crate::asn::peer",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "crate::asn::schema")]
    pub as_number: Option<u32>,
    /// The local AS number to use for this peering instead of the node's.
    #[serde(
        default,
        with = "crate::asn::local",
        rename = "localASNumber",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "crate::asn::schema")]
    pub local_as_number: Option<u32>,
    /// TCP MD5 password for the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<BGPPassword>,
    /// Source address of the session: `UseNodeIP` (default) or `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address: Option<SourceAddress>,
    /// Graceful-restart time advertised to the peer (default 120s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restart_time: Option<String>,
    /// Interval between KEEPALIVE messages (default: a third of the hold
    /// time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_time: Option<String>,
    /// GTSM (RFC 5082): accept packets only from peers at most this many
    /// hops away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_security: Option<u8>,
    /// Next-hop handling: `Auto` (default), `Self` or `Keep`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop_mode: Option<NextHopMode>,
    /// Deprecated: same as `nextHopMode: Keep`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_original_next_hop: bool,
    /// Accept routes whose AS path contains the local AS up to this many
    /// times (disables loop prevention; use with care).
    #[serde(
        default,
        rename = "numAllowedLocalASNumbers",
        skip_serializing_if = "Option::is_none"
    )]
    pub num_allowed_local_as_numbers: Option<u32>,
    /// Names of BGPFilter resources applied to this peering, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<String>,
    /// Gateway through which the peer is reachable; a static route to
    /// the peer is added through it.
    #[serde(
        deserialize_with = "crate::unset::empty_is_none",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(max = 64), extend("x-kubernetes-validations" = [{
        "rule": "size(self) == 0 || isIP(self)",
        "message": "reachableBy must be an IP address (the gateway to the peer)"
    }]))]
    pub reachable_by: Option<String>,
    /// `Auto` (default) creates the reverse peering for `peerSelector`
    /// peerings automatically; `Manual` expects it to be configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverse_peering: Option<ReversePeering>,
    /// margay extension (not in Calico): BFD liveness detection for this
    /// session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd: Option<BFDSettings>,
}

/// Which source address a session uses.
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
pub enum SourceAddress {
    /// Bind the session to the node's BGP address.
    #[default]
    UseNodeIP,
    /// Let the kernel pick the source address.
    None,
}

/// How the NEXT_HOP of routes sent to the peer is set.
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
pub enum NextHopMode {
    /// Self for eBGP, unchanged for iBGP (route reflection).
    #[default]
    Auto,
    /// Always set the next hop to this node.
    #[serde(rename = "Self")]
    SelfHop,
    /// Never change the next hop.
    Keep,
}

/// Whether the reverse of a node-to-node peering is created automatically.
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
pub enum ReversePeering {
    #[default]
    Auto,
    Manual,
}

/// margay extension: BFD (RFC 5880) for a BGP session.
#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BFDSettings {
    /// Run BFD on this session.
    #[serde(default)]
    pub enabled: bool,
    /// Desired transmit and required receive interval (default 300ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_interval: Option<String>,
    /// Detection multiplier (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<u8>,
}

// ===== impl BGPPeerSpec =====

impl BGPPeerSpec {
    /// Parses `peerIP` into an address and the optional port.
    pub fn peer_addr(&self) -> Result<(IpAddr, Option<u16>), ValidationError> {
        let raw = self.peer_ip.as_deref().unwrap_or("");
        parse_peer_ip(raw).map_err(|allowed| {
            ValidationError::string("BGPPeer", "spec.peerIP", raw, allowed)
        })
    }

    /// Graceful-restart time, default 120 s.
    pub fn max_restart_time(&self) -> Result<Duration, ValidationError> {
        duration_field(
            "BGPPeer",
            "spec.maxRestartTime",
            self.max_restart_time.as_deref(),
            DEFAULT_MAX_RESTART_TIME,
        )
    }

    /// Keepalive interval if set.
    pub fn keepalive_time(&self) -> Result<Option<Duration>, ValidationError> {
        match self.keepalive_time.as_deref() {
            None => Ok(None),
            Some(s) => duration_field(
                "BGPPeer",
                "spec.keepaliveTime",
                Some(s),
                Duration::ZERO,
            )
            .map(Some),
        }
    }

    /// Source address mode, default `UseNodeIP`.
    pub fn source_address(&self) -> SourceAddress {
        self.source_address.unwrap_or_default()
    }

    /// Next-hop mode; the deprecated `keepOriginalNextHop: true` means
    /// `Keep` when `nextHopMode` is unset.
    pub fn next_hop_mode(&self) -> NextHopMode {
        match self.next_hop_mode {
            Some(m) => m,
            None if self.keep_original_next_hop => NextHopMode::Keep,
            None => NextHopMode::Auto,
        }
    }

    /// Reverse-peering mode, default `Auto`.
    pub fn reverse_peering(&self) -> ReversePeering {
        self.reverse_peering.unwrap_or_default()
    }

    /// The node selector expression in effect when `node` is unset:
    /// `nodeSelector`, or `all()` when that is empty too. Returns ""
    /// when `node` is set (then the peering is for that node only; see
    /// [`Self::applies_to_node`]).
    pub fn effective_node_selector(&self) -> String {
        match (&self.node, &self.node_selector) {
            (Some(_), _) => String::new(),
            (None, Some(s)) if !s.trim().is_empty() => s.clone(),
            _ => "all()".to_string(),
        }
    }

    /// Whether this peering applies to the node `name` with `labels`:
    /// `node` names it, else `nodeSelector` matches (no `node` and no
    /// selector means every node).
    pub fn applies_to_node(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<bool, ValidationError> {
        if let Some(node) = &self.node {
            return Ok(node == name);
        }
        let raw = self.node_selector.as_deref().unwrap_or("");
        let sel = crate::validate::check_selector(
            "BGPPeer",
            "spec.nodeSelector",
            raw,
        )?;
        Ok(sel.matches(labels))
    }
}

// ===== impl BFDSettings =====

impl BFDSettings {
    /// BFD interval, default 300 ms.
    pub fn min_interval(&self) -> Result<Duration, ValidationError> {
        self.min_interval_of("BGPPeer", "spec.bfd")
    }

    /// BFD interval, default 300 ms; errors name `kind` and the field
    /// under `at` (e.g. `spec.nodeMeshBFD`).
    pub fn min_interval_of(
        &self,
        kind: &str,
        at: &str,
    ) -> Result<Duration, ValidationError> {
        duration_field(
            kind,
            &format!("{at}.minInterval"),
            self.min_interval.as_deref(),
            DEFAULT_BFD_MIN_INTERVAL,
        )
    }

    /// Detection multiplier, default 3.
    pub fn multiplier(&self) -> u8 {
        self.multiplier.unwrap_or(DEFAULT_BFD_MULTIPLIER)
    }

    /// Every problem of these settings, for resource `kind` with the
    /// settings at field path `at`.
    pub fn check(&self, kind: &str, at: &str) -> Vec<ValidationError> {
        let mut errs = Vec::new();
        match self.min_interval_of(kind, at) {
            Ok(d) if d.is_zero() || d > MAX_BFD_INTERVAL => {
                // RFC 5880 section 6.8.1: bfd.DesiredMinTxInterval MUST
                // be nonzero; the wire field is 32-bit microseconds.
                errs.push(ValidationError::string(
                    kind,
                    format!("{at}.minInterval"),
                    self.min_interval.as_deref().unwrap_or(""),
                    "allowed a non-zero interval of at most 1h (RFC 5880 \
                     section 6.8.1)",
                ));
            }
            Ok(_) => {}
            Err(e) => errs.push(e),
        }
        if self.multiplier() == 0 {
            // RFC 5880 section 6.8.6: a zero Detect Mult MUST be
            // discarded.
            errs.push(ValidationError::new(
                kind,
                format!("{at}.multiplier"),
                0,
                "allowed 1-255 (RFC 5880 section 6.8.6)",
            ));
        }
        errs
    }
}

// ===== impl BGPPeer =====

impl BGPPeer {
    /// See [`BGPPeerSpec::peer_addr`]; the error names this peer.
    pub fn peer_addr(&self) -> Result<(IpAddr, Option<u16>), ValidationError> {
        self.spec
            .peer_addr()
            .map_err(|e| e.named(crate::resource_name(&self.metadata)))
    }
}

// ===== helper functions =====

/// Parses `IP`, `IPv4:port` or `[IPv6]:port`; on failure returns the
/// "allowed" phrase.
pub(crate) fn parse_peer_ip(
    raw: &str,
) -> Result<(IpAddr, Option<u16>), String> {
    const FORMS: &str = "allowed an IP address with optional port: \
                         \"192.0.2.1\", \"192.0.2.1:179\", \"2001:db8::1\" \
                         or \"[2001:db8::1]:179\"";
    if let Ok(ip) = raw.parse::<IpAddr>() {
        return Ok((ip, None));
    }
    let sa: SocketAddr = raw.parse().map_err(|_| FORMS.to_string())?;
    if sa.port() == 0 {
        return Err("allowed port 1-65535 (port 0 is not usable)".into());
    }
    Ok((sa.ip(), Some(sa.port())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer_ip(s: &str) -> BGPPeerSpec {
        BGPPeerSpec {
            peer_ip: Some(s.into()),
            ..Default::default()
        }
    }

    #[test]
    fn peer_addr_forms() {
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(peer_ip("192.0.2.1").peer_addr(), Ok((v4, None)));
        assert_eq!(peer_ip("192.0.2.1:1179").peer_addr(), Ok((v4, Some(1179))));
        assert_eq!(peer_ip("2001:db8::1").peer_addr(), Ok((v6, None)));
        assert_eq!(
            peer_ip("[2001:db8::1]:179").peer_addr(),
            Ok((v6, Some(179)))
        );
        assert!(peer_ip("[2001:db8::1]").peer_addr().is_err());
        assert!(peer_ip("192.0.2.1:65536").peer_addr().is_err());
        assert!(peer_ip("").peer_addr().is_err());
    }

    #[test]
    fn next_hop_mode_honours_deprecated_flag() {
        let mut s = BGPPeerSpec::default();
        assert_eq!(s.next_hop_mode(), NextHopMode::Auto);
        s.keep_original_next_hop = true;
        assert_eq!(s.next_hop_mode(), NextHopMode::Keep);
        s.next_hop_mode = Some(NextHopMode::SelfHop);
        assert_eq!(s.next_hop_mode(), NextHopMode::SelfHop);
    }

    #[test]
    fn node_scoping() {
        let labels: BTreeMap<String, String> =
            [("rack".to_string(), "r1".to_string())].into();
        let mut s = BGPPeerSpec::default();
        assert_eq!(s.effective_node_selector(), "all()");
        assert_eq!(s.applies_to_node("n1", &labels), Ok(true));
        s.node_selector = Some("rack == 'r2'".into());
        assert_eq!(s.applies_to_node("n1", &labels), Ok(false));
        assert_eq!(s.effective_node_selector(), "rack == 'r2'");
        s.node = Some("n1".into());
        s.node_selector = None;
        assert_eq!(s.effective_node_selector(), "");
        assert_eq!(s.applies_to_node("n1", &labels), Ok(true));
        assert_eq!(s.applies_to_node("n2", &labels), Ok(false));
        s.node = None;
        s.node_selector = Some("rack ==".into());
        assert!(s.applies_to_node("n1", &labels).is_err());
    }

    #[test]
    fn timer_defaults() {
        let s = BGPPeerSpec::default();
        assert_eq!(s.max_restart_time(), Ok(Duration::from_secs(120)));
        assert_eq!(s.keepalive_time(), Ok(None));
        let bfd = BFDSettings::default();
        assert_eq!(bfd.min_interval(), Ok(Duration::from_millis(300)));
        assert_eq!(bfd.multiplier(), 3);
    }
}
