//! BGPFilter: ordered import/export rules per address family (Calico
//! `projectcalico.org/v3` BGPFilter, including the v3.32 operations).

use ipnetwork::IpNetwork;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Import and export rules. Rules are tried in order; the first whose
/// match fields all match decides (`action`). Routes no rule matches go
/// on to the default policy.
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
    doc = "Ordered BGP import/export rules, referenced by BGPPeer filters (Calico BGPFilter).",
    kind = "BGPFilter",
    plural = "bgpfilters",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPFilterSpec {
    /// Rules for IPv4 routes sent to peers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_v4: Vec<BGPFilterRule>,
    /// Rules for IPv4 routes received from peers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub import_v4: Vec<BGPFilterRule>,
    /// Rules for IPv6 routes sent to peers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_v6: Vec<BGPFilterRule>,
    /// Rules for IPv6 routes received from peers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub import_v6: Vec<BGPFilterRule>,
}

/// One filter rule: match fields (all must match; unset ones match
/// anything), an action, and operations applied when accepting.
#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPFilterRule {
    /// Prefix the route is compared with, according to `matchOperator`.
    /// Must be set together with `matchOperator`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    /// Prefix-length range for `In`/`NotIn` matches (default: from the
    /// CIDR's own length to 32 or 128).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_length: Option<PrefixLengthRange>,
    /// How the route's prefix is compared with `cidr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_operator: Option<MatchOperator>,
    /// `RemotePeers`: only routes learned from BGP peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<MatchSource>,
    /// Only routes whose outgoing interface matches this name (`*`
    /// wildcards allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Only sessions of this type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_type: Option<PeerType>,
    /// Only routes carrying this community.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub communities: Option<CommunityMatch>,
    /// Only routes whose AS path starts with these AS numbers.
    #[serde(
        default,
        rename = "asPathPrefix",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub as_path_prefix: Vec<u32>,
    /// Only routes with this priority (kernel metric), 1-2147483646.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// What to do with a matching route.
    pub action: FilterAction,
    /// Modifications applied to accepted routes, in order (only with
    /// `action: Accept`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<FilterOperation>,
}

/// Bounds on the prefix length of matched routes.
#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrefixLengthRange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u8>,
}

/// How a route's prefix is compared with a rule's CIDR.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema,
)]
pub enum MatchOperator {
    /// The route is exactly the CIDR.
    Equal,
    /// The route is not exactly the CIDR.
    NotEqual,
    /// The route lies within the CIDR (prefix-length bounds apply).
    In,
    /// The route does not lie within the CIDR.
    NotIn,
}

/// Where a route came from.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema,
)]
pub enum MatchSource {
    /// Learned from a BGP peer (not originated by this node).
    RemotePeers,
}

/// Session type.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema,
)]
pub enum PeerType {
    #[serde(rename = "eBGP")]
    EBgp,
    #[serde(rename = "iBGP")]
    IBgp,
}

/// A rule's verdict.
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
pub enum FilterAction {
    #[default]
    Accept,
    Reject,
}

/// Community match: currently exactly one value.
#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommunityMatch {
    /// Community values (`aa:nn` or `aa:nn:mm`); exactly one.
    pub values: Vec<String>,
}

/// One route modification; exactly one field must be set.
#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterOperation {
    /// Add a community to the route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_community: Option<AddCommunity>,
    /// Prepend AS numbers to the route's AS path.
    #[serde(
        default,
        rename = "prependASPath",
        skip_serializing_if = "Option::is_none"
    )]
    pub prepend_as_path: Option<PrependASPath>,
    /// Set the route's priority (kernel metric).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_priority: Option<SetPriority>,
}

/// Operation: add a community.
#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddCommunity {
    /// `aa:nn` or `aa:nn:mm`.
    pub value: String,
}

/// Operation: prepend to the AS path.
#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrependASPath {
    /// AS numbers to prepend, in order.
    pub prefix: Vec<u32>,
}

/// Operation: set the priority.
#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetPriority {
    /// New priority, 1-2147483646.
    pub value: u32,
}

/// Highest priority a rule may match or set (Calico's bound).
pub const MAX_PRIORITY: u32 = 2_147_483_646;

// ===== impl BGPFilterRule =====

impl BGPFilterRule {
    /// Whether `route` satisfies this rule's prefix match (`cidr`,
    /// `matchOperator`, `prefixLength`). A rule without `cidr` matches
    /// every prefix; a rule of the other address family (or with an
    /// unparseable `cidr`) matches none.
    ///
    /// `In` follows BIRD's prefix patterns (`cidr{min,max}`): the route
    /// agrees with `cidr` on the first min(cidr length, route length)
    /// bits and its length lies in [min, max], where min defaults to the
    /// CIDR's length and max to 32/128. `Equal` is an exact prefix
    /// comparison; `NotEqual`/`NotIn` negate within the family.
    pub fn matches_prefix(&self, route: &IpNetwork) -> bool {
        let Some(cidr) = self.cidr.as_deref().filter(|c| !c.is_empty()) else {
            return true;
        };
        let Ok(cidr) = cidr.parse::<IpNetwork>() else {
            return false;
        };
        if cidr.is_ipv4() != route.is_ipv4() {
            return false;
        }
        let op = self.match_operator.unwrap_or(MatchOperator::Equal);
        match op {
            MatchOperator::Equal => same_prefix(&cidr, route),
            MatchOperator::NotEqual => !same_prefix(&cidr, route),
            MatchOperator::In => self.within(&cidr, route),
            MatchOperator::NotIn => !self.within(&cidr, route),
        }
    }

    /// The effective prefix-length bounds of an `In` match on `cidr`.
    pub fn length_bounds(&self, cidr: &IpNetwork) -> (u8, u8) {
        let family_max = if cidr.is_ipv4() { 32 } else { 128 };
        let range = self.prefix_length.clone().unwrap_or_default();
        (
            range.min.unwrap_or(cidr.prefix()),
            range.max.unwrap_or(family_max),
        )
    }

    /// BIRD prefix-pattern containment, see [`Self::matches_prefix`].
    fn within(&self, cidr: &IpNetwork, route: &IpNetwork) -> bool {
        let (min, max) = self.length_bounds(cidr);
        let len = route.prefix();
        if len < min || len > max {
            return false;
        }
        let common = cidr.prefix().min(len);
        leading_bits_equal(cidr, route, common)
    }
}

// ===== helper functions =====

/// Same network address and prefix length (host bits ignored).
fn same_prefix(a: &IpNetwork, b: &IpNetwork) -> bool {
    a.prefix() == b.prefix() && leading_bits_equal(a, b, a.prefix())
}

/// Whether the first `bits` bits of both addresses agree.
fn leading_bits_equal(a: &IpNetwork, b: &IpNetwork, bits: u8) -> bool {
    let (x, y, width) = match (a, b) {
        (IpNetwork::V4(a), IpNetwork::V4(b)) => (
            u128::from(u32::from(a.ip())),
            u128::from(u32::from(b.ip())),
            32u32,
        ),
        (IpNetwork::V6(a), IpNetwork::V6(b)) => {
            (u128::from(a.ip()), u128::from(b.ip()), 128u32)
        }
        _ => return false,
    };
    let bits = u32::from(bits).min(width);
    if bits == 0 {
        return true;
    }
    let shift = width - bits;
    (x >> shift) == (y >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(cidr: &str, op: MatchOperator) -> BGPFilterRule {
        BGPFilterRule {
            cidr: Some(cidr.into()),
            match_operator: Some(op),
            ..Default::default()
        }
    }

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    #[test]
    fn empty_rule_matches_everything() {
        let r = BGPFilterRule::default();
        assert!(r.matches_prefix(&net("10.0.0.0/8")));
        assert!(r.matches_prefix(&net("2001:db8::/32")));
    }

    #[test]
    fn equal_is_exact() {
        let r = rule("10.1.0.0/16", MatchOperator::Equal);
        assert!(r.matches_prefix(&net("10.1.0.0/16")));
        assert!(!r.matches_prefix(&net("10.1.0.0/17")));
        assert!(!r.matches_prefix(&net("10.2.0.0/16")));
        let r = rule("10.1.0.0/16", MatchOperator::NotEqual);
        assert!(!r.matches_prefix(&net("10.1.0.0/16")));
        assert!(r.matches_prefix(&net("10.1.0.0/24")));
    }

    #[test]
    fn in_uses_subnets_and_length_bounds() {
        let mut r = rule("10.0.0.0/8", MatchOperator::In);
        assert!(r.matches_prefix(&net("10.0.0.0/8")));
        assert!(r.matches_prefix(&net("10.9.8.0/24")));
        assert!(r.matches_prefix(&net("10.9.8.7/32")));
        assert!(!r.matches_prefix(&net("11.0.0.0/24")));
        assert!(!r.matches_prefix(&net("0.0.0.0/0")));
        r.prefix_length = Some(PrefixLengthRange {
            min: Some(16),
            max: Some(24),
        });
        assert!(!r.matches_prefix(&net("10.0.0.0/8")));
        assert!(r.matches_prefix(&net("10.1.0.0/16")));
        assert!(r.matches_prefix(&net("10.1.2.0/24")));
        assert!(!r.matches_prefix(&net("10.1.2.0/25")));
        r.match_operator = Some(MatchOperator::NotIn);
        assert!(r.matches_prefix(&net("10.1.2.0/25")));
        assert!(r.matches_prefix(&net("192.168.0.0/16")));
        assert!(!r.matches_prefix(&net("10.1.0.0/16")));
    }

    #[test]
    fn families_never_cross() {
        let r = rule("10.0.0.0/8", MatchOperator::NotIn);
        assert!(!r.matches_prefix(&net("2001:db8::/64")));
        let r = rule("2001:db8::/32", MatchOperator::In);
        assert!(r.matches_prefix(&net("2001:db8:1::/48")));
        assert!(!r.matches_prefix(&net("2001:db9::/48")));
    }

    proptest::proptest! {
        /// With default bounds, `In` is exactly "route is a subnet of
        /// cidr" and `NotIn` its negation.
        #[test]
        fn in_is_subnet_of(
            a in proptest::prelude::any::<u32>(), alen in 0u8..=32,
            b in proptest::prelude::any::<u32>(), blen in 0u8..=32,
        ) {
            let mk = |ip: u32, len: u8| {
                let n = ipnetwork::Ipv4Network::new(ip.into(), len).unwrap();
                IpNetwork::V4(
                    ipnetwork::Ipv4Network::new(n.network(), len).unwrap(),
                )
            };
            let (cidr, route) = (mk(a, alen), mk(b, blen));
            let subnet = blen >= alen && cidr.contains(route.network());
            let r = rule(&cidr.to_string(), MatchOperator::In);
            proptest::prop_assert_eq!(r.matches_prefix(&route), subnet);
            let r = rule(&cidr.to_string(), MatchOperator::NotIn);
            proptest::prop_assert_eq!(r.matches_prefix(&route), !subnet);
            let r = rule(&cidr.to_string(), MatchOperator::Equal);
            proptest::prop_assert_eq!(r.matches_prefix(&route), cidr == route);
        }
    }
}
