//! Compiled BGPFilter rules: Calico's first-match semantics over prefix,
//! session type, route source, communities and AS-path prefix, and the
//! operations an accepting rule applies (add a community, prepend to the
//! AS path), the way Calico renders them into BIRD filters.

use bgp_wire::{AsPath, Community, LargeCommunity, PathAttrs, SegmentType};
use ipnetwork::IpNetwork;
use margay_crds as crds;
use margay_crds::{PrefixMatch, ValidationError};
use serde::Serialize;

/// A BGPFilter rule's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verdict {
    Accept,
    Reject,
}

/// Which kind of peer a rule applies to (BGPFilter `peerType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PeerKind {
    Ebgp,
    Ibgp,
}

/// A community value of either kind (RFC 1997 or RFC 8092).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AnyCommunity {
    Standard(#[serde(serialize_with = "standard")] Community),
    Large(#[serde(serialize_with = "large")] LargeCommunity),
}

fn standard<S: serde::Serializer>(
    c: &Community,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(c)
}

fn large<S: serde::Serializer>(
    c: &LargeCommunity,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!(
        "{}:{}:{}",
        c.global_admin, c.local_data1, c.local_data2
    ))
}

impl AnyCommunity {
    /// Whether the route carries this community.
    fn carried_by(&self, attrs: &PathAttrs) -> bool {
        match self {
            AnyCommunity::Standard(c) => attrs.communities.contains(c),
            AnyCommunity::Large(c) => attrs.rare.large_communities.contains(c),
        }
    }

    /// Adds this community unless the route already carries it.
    pub fn add_to(&self, attrs: &mut PathAttrs) {
        if self.carried_by(attrs) {
            return;
        }
        match self {
            AnyCommunity::Standard(c) => attrs.communities.push(*c),
            AnyCommunity::Large(c) => {
                attrs.rare_mut().large_communities.push(*c)
            }
        }
    }
}

/// An operation of an accepting rule (BGPFilter `operations`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Operation {
    AddCommunity(AnyCommunity),
    /// AS numbers prepended in the order written: `[a, b]` gives a path
    /// that starts `a b ...`.
    PrependAsPath(Vec<u32>),
}

impl Operation {
    /// Applies the operation to a route's attributes.
    pub fn apply(&self, attrs: &mut PathAttrs) {
        match self {
            Operation::AddCommunity(c) => c.add_to(attrs),
            Operation::PrependAsPath(asns) => {
                let path = attrs.as_path.get_or_insert_with(AsPath::default);
                for asn in asns.iter().rev() {
                    path.prepend(*asn);
                }
            }
        }
    }
}

/// What a rule may look at besides the prefix.
#[derive(Debug, Clone, Copy)]
pub struct RouteFacts<'a> {
    pub kind: PeerKind,
    /// Learned from a BGP peer rather than originated by this node
    /// (BGPFilter `source: RemotePeers`).
    pub from_peer: bool,
    pub attrs: &'a PathAttrs,
}

/// One compiled BGPFilter rule. An empty match accepts everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// `cidr`, `matchOperator` and `prefixLength`; `None` matches every
    /// prefix. The matcher is margay_crds' (BIRD's semantics).
    pub prefix: Option<PrefixMatch>,
    pub peer_kind: Option<PeerKind>,
    /// `source: RemotePeers`.
    pub remote_peers_only: bool,
    /// `communities.values[0]`.
    pub community: Option<AnyCommunity>,
    /// `asPathPrefix`: the path must start with these AS numbers.
    pub as_path_prefix: Vec<u32>,
    pub action: Verdict,
    pub operations: Vec<Operation>,
}

impl Rule {
    /// A rule matching every prefix.
    pub fn all(action: Verdict) -> Rule {
        Rule {
            prefix: None,
            peer_kind: None,
            remote_peers_only: false,
            community: None,
            as_path_prefix: Vec::new(),
            action,
            operations: Vec::new(),
        }
    }

    /// Whether this rule matches `prefix` with the route's `facts`.
    pub fn matches(&self, prefix: &IpNetwork, facts: &RouteFacts<'_>) -> bool {
        if self.peer_kind.is_some_and(|k| k != facts.kind) {
            return false;
        }
        if self.remote_peers_only && !facts.from_peer {
            return false;
        }
        if self.community.is_some_and(|c| !c.carried_by(facts.attrs)) {
            return false;
        }
        if !self.as_path_prefix.is_empty()
            && !path_starts_with(
                facts.attrs.as_path.as_ref(),
                &self.as_path_prefix,
            )
        {
            return false;
        }
        self.prefix.is_none_or(|m| m.matches(prefix))
    }
}

/// Whether the AS path begins with `asns`, read through its leading
/// AS_SEQUENCE segments (BIRD's `bgp_path ~ [= a b * =]`, which Calico
/// generates for `asPathPrefix`). An AS_SET ends the comparable part.
fn path_starts_with(path: Option<&AsPath>, asns: &[u32]) -> bool {
    let Some(path) = path else {
        return false;
    };
    let leading = path
        .segments
        .iter()
        .take_while(|s| s.kind == SegmentType::Sequence)
        .flat_map(|s| s.asns.iter().copied());
    let mut want = asns.iter().copied();
    for have in leading {
        match want.next() {
            None => return true,
            Some(w) if w != have => return false,
            Some(_) => {}
        }
    }
    want.next().is_none()
}

/// The rules of a peer's filters for one direction, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RuleSet {
    pub v4: Vec<Rule>,
    pub v6: Vec<Rule>,
}

impl RuleSet {
    /// Calico semantics: the first matching rule decides; `None` when no
    /// rule matched and the default applies.
    pub fn evaluate(
        &self,
        prefix: &IpNetwork,
        facts: &RouteFacts<'_>,
    ) -> Option<&Rule> {
        let rules = if prefix.is_ipv4() { &self.v4 } else { &self.v6 };
        rules.iter().find(|r| r.matches(prefix, facts))
    }
}

// ===== from the BGPFilter resource =====

/// Compiles one BGPFilter rule. Errors name the field and what is
/// allowed.
pub fn compile(r: &crds::BGPFilterRule) -> Result<Rule, ValidationError> {
    refuse_kernel_fields(r)?;
    let prefix = r.prefix_match().map_err(|e| e.under("rule"))?;
    Ok(Rule {
        prefix,
        peer_kind: r.peer_type.map(|t| match t {
            crds::PeerType::EBgp => PeerKind::Ebgp,
            crds::PeerType::IBgp => PeerKind::Ibgp,
        }),
        remote_peers_only: r.source == Some(crds::MatchSource::RemotePeers),
        community: match &r.communities {
            None => None,
            Some(m) => match m.values.as_slice() {
                [v] => Some(community(
                    "BGPFilter",
                    "rule.communities.values[0]",
                    v,
                )?),
                _ => {
                    return Err(unsupported(
                        "rule.communities.values",
                        &format!("{:?}", m.values),
                        "allowed exactly one community value",
                    ));
                }
            },
        },
        as_path_prefix: r.as_path_prefix.clone(),
        action: match r.action {
            crds::FilterAction::Accept => Verdict::Accept,
            crds::FilterAction::Reject => Verdict::Reject,
        },
        operations: r
            .operations
            .iter()
            .map(operation)
            .collect::<Result<_, _>>()?,
    })
}

/// Kernel-route matches and priorities have no meaning in a BGP speaker
/// that never reads the kernel table: refused rather than ignored, so a
/// filter never exports or accepts more than its author meant.
fn refuse_kernel_fields(
    r: &crds::BGPFilterRule,
) -> Result<(), ValidationError> {
    const WHY: &str = crds::KERNEL_UNSUPPORTED;
    if let Some(i) = &r.interface {
        return Err(unsupported("rule.interface", i, WHY));
    }
    if let Some(p) = r.priority {
        return Err(unsupported("rule.priority", &p.to_string(), WHY));
    }
    Ok(())
}

fn operation(op: &crds::FilterOperation) -> Result<Operation, ValidationError> {
    match (&op.add_community, &op.prepend_as_path, &op.set_priority) {
        (Some(c), None, None) => Ok(Operation::AddCommunity(community(
            "BGPFilter",
            "rule.operations.addCommunity.value",
            &c.value,
        )?)),
        (None, Some(p), None) if !p.prefix.is_empty() => {
            Ok(Operation::PrependAsPath(p.prefix.clone()))
        }
        (None, None, Some(p)) => Err(unsupported(
            "rule.operations.setPriority",
            &p.value.to_string(),
            crds::KERNEL_UNSUPPORTED,
        )),
        _ => Err(unsupported(
            "rule.operations",
            &format!("{op:?}"),
            "allowed exactly one of addCommunity, prependASPath (non-empty)",
        )),
    }
}

/// A community value (`aa:nn` or `aa:nn:mm`) of resource `kind`.
pub fn community(
    kind: &str,
    field: &str,
    v: &str,
) -> Result<AnyCommunity, ValidationError> {
    match crds::CommunityValue::parse(v) {
        Some(crds::CommunityValue::Standard(a, b)) => {
            Ok(AnyCommunity::Standard(bgp_wire::Community::new(a, b)))
        }
        Some(crds::CommunityValue::Large(a, b, c)) => {
            Ok(AnyCommunity::Large(bgp_wire::LargeCommunity {
                global_admin: a,
                local_data1: b,
                local_data2: c,
            }))
        }
        None => Err(ValidationError::string(
            kind,
            field,
            v,
            crds::COMMUNITY_ALLOWED,
        )),
    }
}

fn unsupported(field: &str, value: &str, allowed: &str) -> ValidationError {
    ValidationError::string("BGPFilter", field, value, allowed)
}

#[cfg(test)]
mod tests;
