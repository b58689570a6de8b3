//! Which pools an allocation may use (Calico `prepareAffinityBlocksForHost`
//! and `pool_qualification.go`). Pure.
//!
//! Pools named in the CNI config (`ipam.ipv4_pools`, by name or CIDR) come
//! first and are the only ones tried when given; otherwise every pool of
//! the family is a candidate. Either way a pool is usable only when it is
//! enabled, its `nodeSelector` selects the node and its `allowedUses`
//! include Workload. When nothing is usable the error says, per pool, why.

use crate::addr::Family;
use crate::error::IpamError;
use crate::model::PoolView;

/// A pool with the facts that decide whether the node may use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolFacts {
    pub view: PoolView,
    /// The pool's nodeSelector selects this node.
    pub selects_node: bool,
    /// `allowedUses` includes Workload (empty means Tunnel + Workload).
    pub allows_workload: bool,
    /// `assignmentMode` is Automatic: the pool serves requests that name
    /// no pool (Manual pools only serve requests naming them).
    pub automatic: bool,
    /// The pool has a `namespaceSelector` other than `all()`. margay does
    /// not read namespace labels yet, so such a pool serves no pod rather
    /// than every pod (apply refuses the field).
    pub namespace_selector: bool,
}

/// The usable pools of family `fam` for `node`, in the order to try them.
pub fn select_pools(
    fam: Family,
    node: &str,
    requested: &[String],
    pools: &[PoolFacts],
) -> Result<Vec<PoolView>, IpamError> {
    let same_family: Vec<&PoolFacts> = pools
        .iter()
        .filter(|p| Family::of_net(&p.view.cidr) == fam)
        .collect();
    let candidates: Vec<&PoolFacts> = if requested.is_empty() {
        same_family
    } else {
        let mut picked = Vec::new();
        for r in requested {
            let found = same_family
                .iter()
                .find(|p| p.view.name == *r || p.view.cidr.to_string() == *r);
            match found {
                Some(p) => picked.push(*p),
                None => {
                    return Err(IpamError::BadRequest(format!(
                        "requested {fam} pool {r:?} does not exist (give an \
                         IPPool name or its exact CIDR)"
                    )));
                }
            }
        }
        picked
    };

    let mut usable = Vec::new();
    let mut reasons = Vec::new();
    for p in candidates {
        let why = if requested.is_empty() && !p.automatic {
            Some(" is assignmentMode Manual (used only when named)")
        } else if p.view.disabled {
            Some(" is disabled")
        } else if !p.selects_node {
            Some(": its nodeSelector does not select this node")
        } else if p.namespace_selector {
            Some(
                ": its namespaceSelector is not supported yet (margay does \
                 not read namespace labels), so it serves no pod",
            )
        } else if !p.allows_workload {
            Some(": its allowedUses do not include Workload")
        } else {
            None
        };
        match why {
            Some(why) => reasons
                .push(format!("pool {} ({}){why}", p.view.name, p.view.cidr)),
            None => usable.push(p.view.clone()),
        }
    }
    if usable.is_empty() {
        let reasons = if reasons.is_empty() {
            format!("no {fam} IPPool exists")
        } else {
            reasons.join("; ")
        };
        return Err(IpamError::NoUsablePool {
            family: fam,
            node: node.to_string(),
            reasons,
        });
    }
    Ok(usable)
}

/// "name (cidr), name (cidr)" for error messages.
pub fn describe(pools: &[PoolView]) -> String {
    pools
        .iter()
        .map(|p| format!("{} ({})", p.name, p.cidr))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(
        name: &str,
        cidr: &str,
        dis: bool,
        sel: bool,
        wl: bool,
    ) -> PoolFacts {
        PoolFacts {
            view: PoolView {
                name: name.into(),
                cidr: cidr.parse().unwrap(),
                block_size: 26,
                disabled: dis,
            },
            selects_node: sel,
            allows_workload: wl,
            automatic: true,
            namespace_selector: false,
        }
    }

    #[test]
    fn all_enabled_matching_pools_of_the_family() {
        let pools = vec![
            facts("a", "10.0.0.0/16", false, true, true),
            facts("b", "10.1.0.0/16", true, true, true),
            facts("v6", "fd00::/48", false, true, true),
        ];
        let got = select_pools(Family::V4, "n1", &[], &pools).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name, "a");
        let got = select_pools(Family::V6, "n1", &[], &pools).unwrap();
        assert_eq!(got[0].name, "v6");
    }

    #[test]
    fn a_namespace_selector_is_never_matched_silently() {
        let mut ns = facts("ns", "10.0.0.0/16", false, true, true);
        ns.namespace_selector = true;
        let pools = vec![ns.clone()];
        let err = select_pools(Family::V4, "n1", &[], &pools)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pool ns (10.0.0.0/16): its namespaceSelector is not supported yet"),
            "{err}"
        );
        // Named in the CNI config: still not used.
        assert!(
            select_pools(Family::V4, "n1", &["ns".into()], &pools).is_err()
        );
        // Other pools keep serving.
        let pools = vec![ns, facts("b", "10.1.0.0/16", false, true, true)];
        let got = select_pools(Family::V4, "n1", &[], &pools).unwrap();
        assert_eq!(got[0].name, "b");
    }

    #[test]
    fn manual_pools_only_when_named() {
        let mut manual = facts("m", "10.0.0.0/16", false, true, true);
        manual.automatic = false;
        let pools = vec![manual];
        let err = select_pools(Family::V4, "n1", &[], &pools)
            .unwrap_err()
            .to_string();
        assert!(err.contains("pool m (10.0.0.0/16) is assignmentMode Manual"));
        let got = select_pools(Family::V4, "n1", &["m".into()], &pools);
        assert_eq!(got.unwrap()[0].name, "m");
    }

    #[test]
    fn requested_pools_by_name_or_cidr_in_order() {
        let pools = vec![
            facts("a", "10.0.0.0/16", false, true, true),
            facts("b", "10.1.0.0/16", false, true, true),
        ];
        let req = vec!["10.1.0.0/16".to_string(), "a".to_string()];
        let got = select_pools(Family::V4, "n1", &req, &pools).unwrap();
        let names: Vec<_> = got.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["b", "a"]);
        let err = select_pools(Family::V4, "n1", &["zz".into()], &pools)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("requested IPv4 pool \"zz\" does not exist"),
            "{err}"
        );
    }

    #[test]
    fn no_usable_pool_says_why_for_each() {
        let pools = vec![
            facts("off", "10.0.0.0/16", true, true, true),
            facts("sel", "10.1.0.0/16", false, false, true),
            facts("tun", "10.2.0.0/16", false, true, false),
        ];
        let err = select_pools(Family::V4, "n1", &[], &pools)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no usable IPv4 IP pool for node n1"), "{err}");
        assert!(err.contains("pool off (10.0.0.0/16) is disabled"), "{err}");
        assert!(
            err.contains(
                "pool sel (10.1.0.0/16): its nodeSelector does not select"
            ),
            "{err}"
        );
        assert!(err.contains("pool tun (10.2.0.0/16): its allowedUses do not include Workload"), "{err}");
        let err = select_pools(Family::V6, "n1", &[], &pools)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no IPv6 IPPool exists"), "{err}");
    }
}
