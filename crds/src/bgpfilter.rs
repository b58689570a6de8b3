//! BGPFilter: ordered import/export rules per address family (Calico
//! `projectcalico.org/v3` BGPFilter, including the v3.32 operations).

use ipnetwork::IpNetwork;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ValidationError;

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
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.exportV4) || self.exportV4.all(r, !has(r.cidr) || !isCIDR(r.cidr) || cidr(r.cidr).ip().family() == 4)",
        "message": "exportV4 rules take IPv4 CIDRs"
    },
    {
        "rule": "!has(self.importV4) || self.importV4.all(r, !has(r.cidr) || !isCIDR(r.cidr) || cidr(r.cidr).ip().family() == 4)",
        "message": "importV4 rules take IPv4 CIDRs"
    },
    {
        "rule": "!has(self.exportV6) || self.exportV6.all(r, !has(r.cidr) || !isCIDR(r.cidr) || cidr(r.cidr).ip().family() == 6)",
        "message": "exportV6 rules take IPv6 CIDRs"
    },
    {
        "rule": "!has(self.importV6) || self.importV6.all(r, !has(r.cidr) || !isCIDR(r.cidr) || cidr(r.cidr).ip().family() == 6)",
        "message": "importV6 rules take IPv6 CIDRs"
    }
]))]
pub struct BGPFilterSpec {
    /// Rules for IPv4 routes sent to peers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub export_v4: Vec<BGPFilterRule>,
    /// Rules for IPv4 routes received from peers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub import_v4: Vec<BGPFilterRule>,
    /// Rules for IPv6 routes sent to peers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub export_v6: Vec<BGPFilterRule>,
    /// Rules for IPv6 routes received from peers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub import_v6: Vec<BGPFilterRule>,
}

/// One filter rule: match fields (all must match; unset ones match
/// anything), an action, and operations applied when accepting.
#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "(has(self.cidr) && size(self.cidr) > 0) == has(self.matchOperator)",
        "message": "cidr and matchOperator must both be set or both be empty"
    },
    {
        "rule": "!has(self.prefixLength) || (has(self.cidr) && size(self.cidr) > 0)",
        "message": "prefixLength is allowed only together with cidr"
    },
    {
        "rule": "!has(self.prefixLength) || !has(self.prefixLength.max) || !has(self.cidr) || !isCIDR(self.cidr) || self.prefixLength.max >= cidr(self.cidr).prefixLength()",
        "message": "prefixLength.max must be at least the cidr's length"
    },
    {
        "rule": "!has(self.prefixLength) || !has(self.cidr) || !isCIDR(self.cidr) || cidr(self.cidr).ip().family() == 6 || ((!has(self.prefixLength.min) || self.prefixLength.min <= 32) && (!has(self.prefixLength.max) || self.prefixLength.max <= 32))",
        "message": "prefixLength must be 0-32 for an IPv4 cidr"
    },
    {
        "rule": "!has(self.operations) || size(self.operations) == 0 || self.action == 'Accept'",
        "message": "operations may only be used with action Accept"
    },
    {
        "rule": "!has(self.interface) || size(self.interface) == 0",
        "message": "interface is not supported by margay: bgpd matches BGP routes only and felix-lite programs them with the default metric"
    },
    {
        "rule": "!has(self.priority)",
        "message": "priority is not supported by margay: bgpd matches BGP routes only and felix-lite programs them with the default metric"
    }
]))]
pub struct BGPFilterRule {
    /// Prefix the route is compared with, according to `matchOperator`.
    /// Must be set together with `matchOperator`.
    #[serde(
        deserialize_with = "crate::unset::empty_is_none",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(max = 43), extend("x-kubernetes-validations" = [{
        "rule": "size(self) == 0 || (isCIDR(self) && cidr(self) == cidr(self).masked())",
        "message": "cidr must be a network in CIDR notation with host bits zero, such as 10.0.0.0/8"
    }]))]
    pub cidr: Option<String>,
    /// Prefix-length range of matched routes, narrowed to the CIDR's own
    /// length and 32 or 128, as Calico writes BIRD's `cidr{min,max}`.
    /// With `Equal`/`NotEqual` the route is then compared with a prefix
    /// set, as in Calico's BIRD: `Equal` never matches, `NotEqual` always.
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
    #[serde(
        deserialize_with = "crate::unset::empty_is_none",
        default,
        skip_serializing_if = "Option::is_none"
    )]
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
        with = "crate::asn::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(schema_with = "crate::asn::list_schema")]
    pub as_path_prefix: Vec<u32>,
    /// Only routes with this priority (kernel metric), 1-2147483646.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// What to do with a matching route.
    pub action: FilterAction,
    /// Modifications applied to accepted routes, in order (only with
    /// `action: Accept`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub operations: Vec<FilterOperation>,
}

/// Bounds on the prefix length of matched routes.
#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.min) || !has(self.max) || self.min <= self.max",
    "message": "prefixLength.min must not exceed prefixLength.max"
}]))]
pub struct PrefixLengthRange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 128))]
    pub min: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 128))]
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
#[schemars(extend(
    "minProperties" = 1,
    "maxProperties" = 1,
    "x-kubernetes-validations" = [{
        "rule": "!has(self.setPriority)",
        "message": "setPriority is not supported by margay: felix-lite programs routes with the default metric"
    }]
))]
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
    #[serde(with = "crate::asn::list")]
    #[schemars(schema_with = "crate::asn::list_schema")]
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
    /// The rule's prefix match (`cidr`, `matchOperator`,
    /// `prefixLength`), or `None` when `cidr` is unset or empty (the rule
    /// then matches every prefix). Errors name the field: a CIDR that is
    /// not a network, or a CIDR without an operator (Calico refuses to
    /// render such a rule).
    pub fn prefix_match(&self) -> Result<Option<PrefixMatch>, ValidationError> {
        let Some(raw) = self.cidr.as_deref().filter(|c| !c.is_empty()) else {
            return Ok(None);
        };
        let cidr = crate::validate::parse_network("BGPFilter", "cidr", raw)?;
        let Some(op) = self.match_operator else {
            return Err(ValidationError::new(
                "BGPFilter",
                "matchOperator",
                "<unset>",
                format!(
                    "required with cidr {raw:?}; allowed Equal, NotEqual, \
                     In, NotIn"
                ),
            ));
        };
        let lengths = self.prefix_length.as_ref().map(|r| {
            // Calico narrows the user's bounds to [cidr length, family
            // maximum] before writing BIRD's `cidr{lo,hi}`.
            let family_max = if cidr.is_ipv4() { 32 } else { 128 };
            (
                r.min.map_or(cidr.prefix(), |m| m.max(cidr.prefix())),
                r.max.map_or(family_max, |m| m.min(family_max)),
            )
        });
        Ok(Some(PrefixMatch { cidr, op, lengths }))
    }

    /// Whether `route` satisfies this rule's prefix match; see
    /// [`PrefixMatch::matches`]. A rule without `cidr` matches every
    /// prefix, one whose prefix match is invalid matches none.
    pub fn matches_prefix(&self, route: &IpNetwork) -> bool {
        match self.prefix_match() {
            Ok(None) => true,
            Ok(Some(m)) => m.matches(route),
            Err(_) => false,
        }
    }
}

// ===== impl PrefixMatch =====

/// The prefix part of a BGPFilter rule, with the meaning BIRD gives the
/// condition Calico generates for it (calico confd `filterMatchCIDR`):
///
/// | rule | BIRD condition |
/// |---|---|
/// | `Equal` / `NotEqual` | `net = cidr` / `net != cidr` |
/// | `In` / `NotIn` | `net ~ cidr` / `net !~ cidr` |
/// | any, with `prefixLength` | the same operator against the prefix set `[ cidr{lo,hi} ]` |
///
/// With `prefixLength`, `lo` is the larger of `min` and the CIDR's length
/// and `hi` the smaller of `max` and 32/128. BIRD compares a prefix with a
/// prefix set by `=` as values of different types: never equal, so
/// `Equal` with `prefixLength` matches nothing and `NotEqual` everything.
/// The one matcher of margay: bgpd, validation and margayctl use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PrefixMatch {
    /// The rule's network (host bits are zero).
    pub cidr: IpNetwork,
    pub op: MatchOperator,
    /// The prefix-pattern length range `{lo, hi}`, when `prefixLength`
    /// is given.
    pub lengths: Option<(u8, u8)>,
}

impl PrefixMatch {
    /// Whether `route` matches. A route of the other address family
    /// matches under no operator (Calico's rule lists are per family).
    pub fn matches(&self, route: &IpNetwork) -> bool {
        if self.cidr.is_ipv4() != route.is_ipv4() {
            return false;
        }
        match (self.op, self.lengths) {
            (MatchOperator::Equal, None) => same_prefix(&self.cidr, route),
            (MatchOperator::NotEqual, None) => !same_prefix(&self.cidr, route),
            // A prefix never equals a prefix set in BIRD.
            (MatchOperator::Equal, Some(_)) => false,
            (MatchOperator::NotEqual, Some(_)) => true,
            (MatchOperator::In, _) => self.within(route),
            (MatchOperator::NotIn, _) => !self.within(route),
        }
    }

    /// BIRD's `~`: against a prefix, "is a subnet of" (`net_in_netX`);
    /// against the pattern `cidr{lo,hi}`, the first min(cidr length,
    /// route length) bits agree and the route's length is in [lo, hi].
    fn within(&self, route: &IpNetwork) -> bool {
        let len = route.prefix();
        match self.lengths {
            None => crate::net::contains(&self.cidr, route),
            Some((lo, hi)) => {
                (lo..=hi).contains(&len)
                    && leading_bits_equal(
                        &self.cidr,
                        route,
                        self.cidr.prefix().min(len),
                    )
            }
        }
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

    fn lengths(r: &mut BGPFilterRule, min: Option<u8>, max: Option<u8>) {
        r.prefix_length = Some(PrefixLengthRange { min, max });
    }

    /// Calico writes `[ 10.0.0.0/16{16,32} ]` for min 8: the CIDR's
    /// length is the floor, so a shorter route is not `In`.
    #[test]
    fn prefix_length_min_is_floored_at_the_cidr_length() {
        let mut r = rule("10.0.0.0/16", MatchOperator::In);
        lengths(&mut r, Some(8), None);
        assert!(!r.matches_prefix(&net("10.0.0.0/8")));
        assert!(!r.matches_prefix(&net("10.0.0.0/15")));
        assert!(r.matches_prefix(&net("10.0.0.0/16")));
        assert!(r.matches_prefix(&net("10.0.3.0/24")));
        r.match_operator = Some(MatchOperator::NotIn);
        assert!(r.matches_prefix(&net("10.0.0.0/8")));
        let mut r = rule("2001:db8::/32", MatchOperator::In);
        lengths(&mut r, Some(0), Some(200));
        assert_eq!(r.prefix_match().unwrap().unwrap().lengths, Some((32, 128)));
    }

    /// BIRD: `net = [ set ]` is false and `net != [ set ]` true.
    #[test]
    fn equal_with_prefix_length_compares_against_a_set() {
        let mut r = rule("10.0.0.0/16", MatchOperator::Equal);
        lengths(&mut r, None, None);
        assert!(!r.matches_prefix(&net("10.0.0.0/16")));
        r.match_operator = Some(MatchOperator::NotEqual);
        assert!(r.matches_prefix(&net("10.0.0.0/16")));
        assert!(r.matches_prefix(&net("11.0.0.0/16")));
        assert!(!r.matches_prefix(&net("2001:db8::/64")));
    }

    #[test]
    fn cidr_needs_an_operator_and_no_host_bits() {
        let mut r = rule("10.0.0.0/16", MatchOperator::In);
        r.match_operator = None;
        let e = r.prefix_match().unwrap_err();
        assert_eq!(e.field, "matchOperator");
        let r = rule("10.0.0.1/16", MatchOperator::In);
        let e = r.prefix_match().unwrap_err();
        assert!(e.allowed.contains("host bits"), "{e}");
        assert!(!r.matches_prefix(&net("10.0.0.0/16")));
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
