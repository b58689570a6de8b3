//! Import and export policy: loop checks (RFC 4271 9.1.2, RFC 4456 8),
//! BGPFilter rules with Calico's first-match semantics, the pool-based
//! defaults, and the attribute rewriting of RFC 4271 5.1 / RFC 4456 8.

use std::net::{IpAddr, Ipv4Addr};

use bgp_wire::{Community, NextHop, PathAttrs};
use ipnetwork::IpNetwork;
use margay_crds::net::contains;
use serde::Serialize;

pub use crate::filter::{
    AnyCommunity, Operation, PeerKind, RouteFacts, Rule, RuleSet, Verdict,
};
use crate::rib::Attrs;

/// An IPPool as policy sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pool {
    pub cidr: IpNetwork,
    pub disabled: bool,
    pub disable_bgp_export: bool,
}

/// Communities added on export to routes inside `cidr`
/// (BGPConfiguration `prefixAdvertisements`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixCommunities {
    pub cidr: IpNetwork,
    pub communities: Vec<AnyCommunity>,
}

/// Speaker-wide policy inputs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GlobalPolicy {
    pub pools: Vec<Pool>,
    pub prefix_communities: Vec<PrefixCommunities>,
}

/// Why an imported route was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ImportReject {
    AsLoop,
    OriginatorIsUs,
    ClusterLoop,
    Filter,
    NotInPool,
}

impl std::fmt::Display for ImportReject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ImportReject::AsLoop => "AS loop: our AS is in the AS_PATH",
            ImportReject::OriginatorIsUs => {
                "ORIGINATOR_ID is our router ID (RFC 4456 8)"
            }
            ImportReject::ClusterLoop => {
                "CLUSTER_LIST holds our cluster ID (RFC 4456 8)"
            }
            ImportReject::Filter => "rejected by a BGPFilter import rule",
            ImportReject::NotInPool => {
                "outside every enabled IPPool (and no BGPFilter accepts it)"
            }
        })
    }
}

/// The per-session facts import and export need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionPolicy {
    pub local_as: u32,
    pub remote_as: u32,
    pub router_id: Ipv4Addr,
    /// RFC 4456 cluster ID when this speaker reflects routes.
    pub cluster_id: Option<Ipv4Addr>,
    /// This peer is our route-reflector client.
    pub rr_client: bool,
    pub import: RuleSet,
    pub export: RuleSet,
    /// BGPPeer `numAllowedLocalASNumbers`.
    pub allowed_local_as: u8,
    pub next_hop_mode: NextHopMode,
    /// Our address on this session (next hop self).
    pub local_addr: Option<IpAddr>,
    /// A second local address of the other family, for IPv6 next hops on
    /// an IPv4 session and the reverse.
    pub local_addr_other: Option<IpAddr>,
    /// RFC 8950 was negotiated on this session (filled in per session):
    /// IPv4 routes may go out with our IPv6 session address as next hop.
    pub ext_next_hop: bool,
}

/// BGPPeer `nextHopMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum NextHopMode {
    /// eBGP: self; iBGP: keep (self for our own routes).
    #[default]
    Auto,
    SelfAddr,
    Keep,
}

impl SessionPolicy {
    pub fn ibgp(&self) -> bool {
        self.local_as == self.remote_as
    }

    pub fn kind(&self) -> PeerKind {
        if self.ibgp() {
            PeerKind::Ibgp
        } else {
            PeerKind::Ebgp
        }
    }
}

// ===== import =====

/// Loop checks on the attribute set of an UPDATE; a failure means every
/// prefix of the UPDATE is rejected.
pub fn import_loop_check(
    sess: &SessionPolicy,
    attrs: &PathAttrs,
) -> Result<(), ImportReject> {
    // RFC 4271 9.1.2: a route whose AS_PATH contains our AS is a loop;
    // Calico's `numAllowedLocalASNumbers` (BIRD "allow local as") allows
    // that many occurrences.
    let count = attrs.as_path.as_ref().map_or(0, |p| p.count(sess.local_as));
    if count > usize::from(sess.allowed_local_as) {
        return Err(ImportReject::AsLoop);
    }
    if sess.ibgp() {
        // RFC 4456 8: "A router that recognizes the ORIGINATOR_ID attribute
        // SHOULD ignore a route received with its BGP Identifier as the
        // ORIGINATOR_ID."
        if attrs.rare.originator_id == Some(sess.router_id) {
            return Err(ImportReject::OriginatorIsUs);
        }
        // RFC 4456 8: "If the local CLUSTER_ID is found in the
        // CLUSTER_LIST, the advertisement received SHOULD be ignored."
        if let Some(c) = sess.cluster_id
            && attrs.rare.cluster_list.contains(&c)
        {
            return Err(ImportReject::ClusterLoop);
        }
    }
    Ok(())
}

/// Rewrite received attributes before they enter the RIB.
pub fn import_attrs(sess: &SessionPolicy, mut attrs: PathAttrs) -> PathAttrs {
    if !sess.ibgp() {
        // RFC 4271 5.1.5: LOCAL_PREF "received from an external peer ...
        // MUST be ignored by the receiving speaker".
        attrs.local_pref = None;
    }
    attrs
}

/// Per-prefix import decision: filters first, then the safe default of
/// accepting only prefixes inside enabled IPPools (RFC 8212 spirit). On
/// accept, the operations of the accepting rule (none by default), to be
/// applied to the route's attributes.
pub fn import_prefix<'a>(
    sess: &'a SessionPolicy,
    global: &GlobalPolicy,
    prefix: &IpNetwork,
    attrs: &PathAttrs,
) -> Result<&'a [Operation], ImportReject> {
    let facts = RouteFacts {
        kind: sess.kind(),
        from_peer: true,
        attrs,
    };
    match sess.import.evaluate(prefix, &facts) {
        Some(r) if r.action == Verdict::Accept => Ok(&r.operations),
        Some(_) => Err(ImportReject::Filter),
        None if in_enabled_pool(global, prefix) => Ok(&[]),
        None => Err(ImportReject::NotInPool),
    }
}

// ===== export =====

/// Where the best path came from, for the export rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Local,
    Ebgp,
    /// From an iBGP peer; `client` when that peer is our RR client.
    Ibgp {
        client: bool,
    },
}

/// Whether `prefix` (best path from `origin` with `attrs`) goes to the
/// peer of `sess`, and if so with which filter operations. Filters decide
/// first; by default our own routes and routes inside enabled pools go
/// out, never those of a pool with `disableBGPExport` (Calico's
/// `calico_export_to_bgp_peers`).
pub fn export_prefix<'a>(
    sess: &'a SessionPolicy,
    global: &GlobalPolicy,
    prefix: &IpNetwork,
    origin: Origin,
    attrs: &PathAttrs,
) -> Option<&'a [Operation]> {
    // RFC 1997: NO_ADVERTISE "MUST NOT be advertised to other BGP peers";
    // NO_EXPORT "MUST NOT be advertised outside a BGP confederation".
    if attrs.communities.contains(&Community::NO_ADVERTISE) {
        return None;
    }
    if !sess.ibgp() && attrs.communities.contains(&Community::NO_EXPORT) {
        return None;
    }
    if let Origin::Ibgp { client } = origin
        && sess.ibgp()
    {
        // RFC 4271 9.2: routes from internal peers are not sent to
        // internal peers, except by a route reflector (RFC 4456 6):
        // from a client to everyone, from a non-client to clients.
        let reflector = sess.cluster_id.is_some();
        if !(reflector && (client || sess.rr_client)) {
            return None;
        }
    }
    let facts = RouteFacts {
        kind: sess.kind(),
        from_peer: origin != Origin::Local,
        attrs,
    };
    match sess.export.evaluate(prefix, &facts) {
        Some(r) => (r.action == Verdict::Accept).then_some(&r.operations[..]),
        None => {
            let no_export = global
                .pools
                .iter()
                .any(|p| p.disable_bgp_export && contains(&p.cidr, prefix));
            let default = !no_export
                && (origin == Origin::Local || in_enabled_pool(global, prefix));
            default.then_some(&[][..])
        }
    }
}

/// Rewrite a best path's attributes for the peer of `sess` (RFC 4271
/// 5.1, RFC 4456 8). `source_id` is the BGP Identifier of the peer the
/// route came from (for ORIGINATOR_ID). The export filter's `ops` apply
/// first, as BIRD runs an export filter before its own BGP rewriting (so
/// our AS still goes in front of a filter's prepend towards eBGP peers).
pub fn export_attrs(
    sess: &SessionPolicy,
    global: &GlobalPolicy,
    prefix: &IpNetwork,
    origin: Origin,
    source_id: Option<Ipv4Addr>,
    attrs: &Attrs,
    ops: &[Operation],
) -> Attrs {
    let mut out = attrs.clone();
    let a = &mut out.path;
    for op in ops {
        op.apply(a);
    }
    if let Some(rare) = a.rare.get_mut() {
        rare.as4_path = None;
        rare.as4_aggregator = None;
    }
    let mut path = a.as_path.take().unwrap_or_default();
    let next_hop_self;
    if sess.ibgp() {
        // RFC 4271 5.1.5: "A BGP speaker MUST include this attribute in
        // UPDATE messages it sends to internal peers".
        a.local_pref =
            Some(a.local_pref.unwrap_or(crate::decision::DEFAULT_LOCAL_PREF));
        if let Origin::Ibgp { .. } = origin {
            // RFC 4456 8: the reflector sets ORIGINATOR_ID if absent and
            // prepends its CLUSTER_ID to the CLUSTER_LIST.
            if a.rare.originator_id.is_none() && source_id.is_some() {
                a.rare_mut().originator_id = source_id;
            }
            if let Some(c) = sess.cluster_id {
                a.rare_mut().cluster_list.insert(0, c);
            }
        }
        next_hop_self = match sess.next_hop_mode {
            NextHopMode::SelfAddr => true,
            NextHopMode::Keep => origin == Origin::Local,
            NextHopMode::Auto => origin == Origin::Local,
        };
    } else {
        // RFC 4271 5.1.2: prepend our AS when sending to an external peer.
        path.prepend(sess.local_as);
        // RFC 4271 5.1.5: no LOCAL_PREF to external peers; 5.1.4: a MED
        // received from a neighbouring AS is not passed to another.
        a.local_pref = None;
        if origin != Origin::Local {
            a.med = None;
        }
        // ORIGINATOR_ID and CLUSTER_LIST are non-transitive and internal.
        if let Some(rare) = a.rare.get_mut() {
            rare.originator_id = None;
            rare.cluster_list.clear();
        }
        next_hop_self =
            sess.next_hop_mode != NextHopMode::Keep || origin == Origin::Local;
    }
    // An empty box left by the clearing above would cost an allocation
    // per exported set.
    a.rare.shrink();
    a.as_path = Some(path);
    for pc in &global.prefix_communities {
        if pc.cidr.is_ipv4() == prefix.is_ipv4() && contains(&pc.cidr, prefix) {
            for c in &pc.communities {
                c.add_to(a);
            }
        }
    }
    // A kept next hop this session cannot carry (an IPv6 one for IPv4
    // without RFC 8950) is replaced by our own, as for next hop self.
    let sendable = match out.next_hop {
        Some(NextHop::V4(_)) => prefix.is_ipv4(),
        Some(NextHop::V6 { .. }) => !prefix.is_ipv4() || sess.ext_next_hop,
        None => false,
    };
    if next_hop_self || !sendable {
        out.next_hop = self_next_hop(sess, prefix);
    }
    out
}

/// Our own address of the prefix's family on this session; for IPv4 on
/// an IPv6 session that negotiated RFC 8950, the IPv6 session address
/// (as BIRD and FRR do: the peer reaches us over that address).
fn self_next_hop(sess: &SessionPolicy, prefix: &IpNetwork) -> Option<NextHop> {
    let want_v4 = prefix.is_ipv4()
        && !(sess.ext_next_hop && sess.local_addr.is_some_and(|a| a.is_ipv6()));
    let addr = [sess.local_addr, sess.local_addr_other]
        .into_iter()
        .flatten()
        .find(|a| a.is_ipv4() == want_v4)
        .or(sess.local_addr)?;
    Some(match addr {
        IpAddr::V4(a) => NextHop::V4(a),
        IpAddr::V6(a) => NextHop::V6 {
            global: a,
            link_local: None,
        },
    })
}

// ===== helper functions =====

/// Inside an IPPool that is not disabled.
pub fn in_enabled_pool(global: &GlobalPolicy, prefix: &IpNetwork) -> bool {
    global
        .pools
        .iter()
        .any(|p| !p.disabled && contains(&p.cidr, prefix))
}

#[cfg(test)]
mod tests;
