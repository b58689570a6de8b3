//! Checks across a set of resources: duplicate names, overlapping
//! pools, BGPPeers naming absent BGPFilters.

use std::collections::{BTreeMap, BTreeSet};

use super::{Validate, immutable};
use crate::error::ValidationError;
use crate::{AnyResource, net::overlaps};

/// Validates every resource on its own and then the set as a whole.
pub fn validate_set(
    resources: &[AnyResource],
) -> Result<(), Vec<ValidationError>> {
    validate_against(resources, &[])
}

/// Validates `resources` as they would be stored next to `stored` (what
/// the datastore holds): each new one on its own, names unique among the
/// new ones, and the cross-resource rules against the union, where a new
/// object replaces the stored one of the same kind and name: pools must
/// not overlap, BGPPeer filters must name a BGPFilter, and a stored
/// IPPool's `cidr` and `blockSize` cannot change (Calico refuses both on
/// update; the CRD says so with `self == oldSelf`), nor may a new pool's
/// block size differ from that of stored IPAMBlocks inside it.
///
/// Stored objects are context only: their own problems are not reported
/// here, so one bad stored object never blocks an unrelated apply.
pub fn validate_against(
    resources: &[AnyResource],
    stored: &[AnyResource],
) -> Result<(), Vec<ValidationError>> {
    let mut errs = Vec::new();
    for r in resources {
        if let Err(mut e) = r.validate() {
            errs.append(&mut e);
        }
    }
    let mut seen: BTreeSet<(&str, &str)> = BTreeSet::new();
    for r in resources {
        if !seen.insert((r.kind(), r.name())) {
            errs.push(
                ValidationError::string(
                    r.kind(),
                    "metadata.name",
                    r.name(),
                    format!(
                        "another {} has the same name; names must be unique \
                         per kind",
                        r.kind()
                    ),
                )
                .named(r.name()),
            );
        }
    }
    let kept: Vec<&AnyResource> = stored
        .iter()
        .filter(|s| !seen.contains(&(s.kind(), s.name())))
        .collect();
    check_pool_overlaps(resources, &kept, &mut errs);
    check_filter_refs(resources, &kept, &mut errs);
    immutable::check_pools(resources, stored, &mut errs);
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

/// Pools must not share addresses (Calico marks such pools CIDROverlap
/// and allocates from neither). Pairs of stored pools are not checked.
fn check_pool_overlaps(
    resources: &[AnyResource],
    kept: &[&AnyResource],
    errs: &mut Vec<ValidationError>,
) {
    let new = pool_nets(resources.iter());
    let old = pool_nets(kept.iter().copied());
    for (i, (name, net)) in new.iter().enumerate() {
        for (other, other_net) in new[..i].iter().chain(&old) {
            if overlaps(net, other_net) {
                errs.push(
                    ValidationError::string(
                        "IPPool",
                        "spec.cidr",
                        &net.to_string(),
                        format!(
                            "overlaps IPPool {other:?} ({other_net}); pools \
                             must not overlap"
                        ),
                    )
                    .named(name),
                );
            }
        }
    }
}

/// The name and network of every IPPool with a valid CIDR.
fn pool_nets<'a>(
    rs: impl Iterator<Item = &'a AnyResource>,
) -> Vec<(&'a str, ipnetwork::IpNetwork)> {
    rs.filter_map(|r| match r {
        AnyResource::IPPool(p) => p.cidr_net().ok().map(|n| (r.name(), n)),
        _ => None,
    })
    .collect()
}

/// Every new BGPPeer's filter names must be BGPFilters, new or stored.
fn check_filter_refs(
    resources: &[AnyResource],
    kept: &[&AnyResource],
    errs: &mut Vec<ValidationError>,
) {
    let filters: BTreeSet<&str> = resources
        .iter()
        .chain(kept.iter().copied())
        .filter(|r| matches!(r, AnyResource::BGPFilter(_)))
        .map(AnyResource::name)
        .collect();
    let known = if filters.is_empty() {
        "none are defined".to_string()
    } else {
        format!(
            "defined: {}",
            filters.iter().copied().collect::<Vec<_>>().join(", ")
        )
    };
    let mut by_peer: BTreeMap<&str, Vec<(usize, &str)>> = BTreeMap::new();
    for r in resources {
        if let AnyResource::BGPPeer(p) = r {
            for (i, f) in p.spec.filters.iter().enumerate() {
                if !f.trim().is_empty() && !filters.contains(f.as_str()) {
                    by_peer.entry(r.name()).or_default().push((i, f));
                }
            }
        }
    }
    for (peer, missing) in by_peer {
        for (i, f) in missing {
            errs.push(
                ValidationError::string(
                    "BGPPeer",
                    format!("spec.filters[{i}]"),
                    f,
                    format!("no BGPFilter named {f:?}; {known}"),
                )
                .named(peer),
            );
        }
    }
}
