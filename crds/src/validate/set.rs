//! Checks across a set of resources: duplicate names, overlapping
//! pools, BGPPeers naming absent BGPFilters.

use std::collections::{BTreeMap, BTreeSet};

use super::Validate;
use crate::error::ValidationError;
use crate::{AnyResource, validate::overlaps};

/// Validates every resource on its own and then the set as a whole.
pub fn validate_set(
    resources: &[AnyResource],
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
    check_pool_overlaps(resources, &mut errs);
    check_filter_refs(resources, &mut errs);
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

/// Pools must not share addresses (Calico marks such pools CIDROverlap
/// and allocates from neither).
fn check_pool_overlaps(
    resources: &[AnyResource],
    errs: &mut Vec<ValidationError>,
) {
    let pools: Vec<_> = resources
        .iter()
        .filter_map(|r| match r {
            AnyResource::IPPool(p) => p.cidr_net().ok().map(|n| (r.name(), n)),
            _ => None,
        })
        .collect();
    for (i, (name, net)) in pools.iter().enumerate() {
        for (other, other_net) in &pools[..i] {
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

/// Every BGPPeer filter name must be a BGPFilter in the set.
fn check_filter_refs(
    resources: &[AnyResource],
    errs: &mut Vec<ValidationError>,
) {
    let filters: BTreeSet<&str> = resources
        .iter()
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
