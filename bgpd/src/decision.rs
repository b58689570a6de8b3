//! The BGP decision process (RFC 4271 section 9.1.2.2 with the RFC 4456
//! section 9 route-reflection tie-breaks) as a pure comparator.

use std::cmp::Ordering;
use std::net::{IpAddr, Ipv4Addr};

use bgp_wire::{Origin, PathAttrs};
use serde::Serialize;

/// RFC 4271 5.1.5: the degree of preference a route gets when nothing set
/// LOCAL_PREF (eBGP routes, local routes); 100 like every common speaker.
pub const DEFAULT_LOCAL_PREF: u32 = 100;

/// Where a candidate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Originated by this speaker (blocks, borrowed IPs).
    Local,
    Peer {
        ebgp: bool,
        /// The peer's BGP Identifier.
        router_id: Ipv4Addr,
        addr: IpAddr,
    },
}

/// One candidate path as the decision process sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub attrs: &'a PathAttrs,
    pub source: Source,
}

/// The step that decided a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Reason {
    /// Not an RFC step: our own routes win over learned ones, as BIRD's
    /// static-over-BGP preference does.
    LocallyOriginated,
    LocalPref,
    AsPathLength,
    Origin,
    /// Only between routes from the same neighbouring AS.
    Med,
    EbgpOverIbgp,
    /// Lowest BGP Identifier (ORIGINATOR_ID when reflected).
    RouterId,
    ClusterListLength,
    PeerAddress,
}

impl Reason {
    /// Words for the control socket ("why this path won").
    pub fn describe(self) -> &'static str {
        match self {
            Reason::LocallyOriginated => "locally originated",
            Reason::LocalPref => "higher LOCAL_PREF",
            Reason::AsPathLength => "shorter AS_PATH",
            Reason::Origin => "lower ORIGIN",
            Reason::Med => "lower MED",
            Reason::EbgpOverIbgp => "eBGP over iBGP",
            Reason::RouterId => "lower router ID",
            Reason::ClusterListLength => "shorter CLUSTER_LIST",
            Reason::PeerAddress => "lower peer address",
        }
    }
}

/// The outcome of comparing `a` with `b`, from `a`'s point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteCmp {
    Preferred(Reason),
    LessPreferred(Reason),
    /// Identical on every step (same peer, or indistinguishable).
    Equal,
}

impl RouteCmp {
    pub fn is_preferred(self) -> bool {
        matches!(self, RouteCmp::Preferred(_))
    }

    pub fn reason(self) -> Option<Reason> {
        match self {
            RouteCmp::Preferred(r) | RouteCmp::LessPreferred(r) => Some(r),
            RouteCmp::Equal => None,
        }
    }
}

// ===== global functions =====

/// RFC 4271 9.1.2.2 between two candidates for the same prefix.
///
/// Step (e), the interior cost to the NEXT_HOP, is skipped: margay runs
/// no IGP and its next hops are directly connected node or peer addresses,
/// so every candidate has the same cost.
pub fn compare(a: &Candidate<'_>, b: &Candidate<'_>) -> RouteCmp {
    // Before the RFC steps: local routes first.
    let local = |c: &Candidate<'_>| matches!(c.source, Source::Local);
    if let Some(r) = step(local(a), local(b), Reason::LocallyOriginated) {
        return r;
    }
    if let Some(r) = up_to_router_id(a, b) {
        return r;
    }
    // RFC 4456 9: "If a route carries the ORIGINATOR_ID attribute, then in
    // Route Selection process the ORIGINATOR_ID SHOULD be treated as the
    // BGP Identifier of the BGP speaker that has advertised the route."
    let rid = |c: &Candidate<'_>| match c.source {
        Source::Local => 0,
        Source::Peer { router_id, .. } => {
            u32::from(c.attrs.rare.originator_id.unwrap_or(router_id))
        }
    };
    if let Some(r) = lower(rid(a), rid(b), Reason::RouterId) {
        return r;
    }
    // RFC 4456 9: "a BGP Speaker SHOULD prefer a route with the shorter
    // CLUSTER_LIST length", inserted between steps f) and g).
    let cl = |c: &Candidate<'_>| c.attrs.rare.cluster_list.len();
    if let Some(r) = lower(cl(a), cl(b), Reason::ClusterListLength) {
        return r;
    }
    // Step g): the lowest peer address.
    let addr = |c: &Candidate<'_>| match c.source {
        Source::Local => None,
        Source::Peer { addr, .. } => Some(addr),
    };
    lower(addr(a), addr(b), Reason::PeerAddress).unwrap_or(RouteCmp::Equal)
}

/// Whether `a` may be installed next to the best path `best` as an
/// equal-cost multipath member: equal on every step before the router-ID
/// tie-break. Neighbouring ASes may differ (like "multipath relax"), so
/// a node peering with two ToRs of different ASes gets both next hops.
pub fn multipath_equal(a: &Candidate<'_>, best: &Candidate<'_>) -> bool {
    let local = |c: &Candidate<'_>| matches!(c.source, Source::Local);
    !local(a) && !local(best) && up_to_router_id(a, best).is_none()
}

// ===== helper functions =====

/// Steps a) to d) (e skipped, see [`compare`]).
fn up_to_router_id(a: &Candidate<'_>, b: &Candidate<'_>) -> Option<RouteCmp> {
    // a) the highest degree of preference (LOCAL_PREF).
    let lp =
        |c: &Candidate<'_>| c.attrs.local_pref.unwrap_or(DEFAULT_LOCAL_PREF);
    if let Some(r) = step_ord(lp(a).cmp(&lp(b)), Reason::LocalPref) {
        return Some(r);
    }
    // b) the shortest AS_PATH (an AS_SET counts 1).
    let len = |c: &Candidate<'_>| {
        c.attrs.as_path.as_ref().map_or(0, |p| p.route_len())
    };
    if let Some(r) = lower(len(a), len(b), Reason::AsPathLength) {
        return Some(r);
    }
    // c) the lowest ORIGIN.
    let origin =
        |c: &Candidate<'_>| c.attrs.origin.unwrap_or(Origin::Incomplete);
    if let Some(r) = lower(origin(a), origin(b), Reason::Origin) {
        return Some(r);
    }
    // c) MED, "only comparable between routes learned from the same
    // neighboring AS"; a missing MED is the lowest value (RFC 4271
    // 9.1.2.2 c). Local routes have no neighbouring AS.
    let nbr_as =
        |c: &Candidate<'_>| c.attrs.as_path.as_ref().and_then(|p| p.first_as());
    if nbr_as(a).is_some() && nbr_as(a) == nbr_as(b) {
        let med = |c: &Candidate<'_>| c.attrs.med.unwrap_or(0);
        if let Some(r) = lower(med(a), med(b), Reason::Med) {
            return Some(r);
        }
    }
    // d) eBGP over iBGP.
    let ebgp =
        |c: &Candidate<'_>| matches!(c.source, Source::Peer { ebgp: true, .. });
    step(ebgp(a), ebgp(b), Reason::EbgpOverIbgp)
}

/// The candidate with `true` wins.
fn step(a: bool, b: bool, reason: Reason) -> Option<RouteCmp> {
    step_ord(a.cmp(&b), reason)
}

/// The lower value wins.
fn lower<T: Ord>(a: T, b: T, reason: Reason) -> Option<RouteCmp> {
    step_ord(b.cmp(&a), reason)
}

/// `Greater` means `a` wins.
fn step_ord(o: Ordering, reason: Reason) -> Option<RouteCmp> {
    match o {
        Ordering::Greater => Some(RouteCmp::Preferred(reason)),
        Ordering::Less => Some(RouteCmp::LessPreferred(reason)),
        Ordering::Equal => None,
    }
}

#[cfg(test)]
mod tests;
