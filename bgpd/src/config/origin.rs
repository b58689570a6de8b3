//! What this node originates (its confirmed blocks and borrowed
//! addresses) and the speaker-wide policy inputs (IPPools, prefix
//! communities).

use std::collections::HashSet;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use margay_crds as crds;
use margay_crds::AffinityState;

use margay_datastore::InvalidObject;

use super::{Resources, name, to_invalid};
use crate::policy::{GlobalPolicy, Pool, PrefixCommunities};

/// Pools and prefix communities. A pool whose CIDR does not parse, or a
/// prefix advertisement that does not, is left out and reported.
pub(super) fn global_policy(
    res: &Resources,
    cfg: &crds::BGPConfigurationSpec,
    invalid: &mut Vec<InvalidObject>,
) -> GlobalPolicy {
    let mut pools = Vec::new();
    for p in &res.pools {
        match p.spec.cidr_net() {
            Ok(cidr) => pools.push(Pool {
                cidr,
                disabled: p.spec.disabled,
                disable_bgp_export: p.spec.disable_bgp_export,
            }),
            Err(e) => invalid.push(to_invalid(
                "IPPool",
                name(&p.metadata),
                "spec.cidr",
                e.into(),
            )),
        }
    }
    let mut prefix_communities = Vec::new();
    for (i, pa) in cfg.prefix_advertisements.iter().enumerate() {
        match prefix_advertisement(cfg, i, pa) {
            Ok(pc) => prefix_communities.push(pc),
            // Calico's global config is "default" (derive reads no other).
            Err(e) => invalid.push(to_invalid(
                "BGPConfiguration",
                "default",
                "spec.prefixAdvertisements",
                e.into(),
            )),
        }
    }
    GlobalPolicy {
        pools,
        prefix_communities,
    }
}

/// One entry of `spec.prefixAdvertisements`.
fn prefix_advertisement(
    cfg: &crds::BGPConfigurationSpec,
    i: usize,
    pa: &crds::PrefixAdvertisement,
) -> Result<PrefixCommunities, crds::ValidationError> {
    let field = format!("spec.prefixAdvertisements[{i}]");
    let cidr: IpNetwork = pa.cidr.parse().map_err(|_| {
        crds::ValidationError::string(
            "BGPConfiguration",
            format!("{field}.cidr"),
            &pa.cidr,
            "allowed a CIDR such as \"10.0.0.0/16\"",
        )
    })?;
    let mut pc = PrefixCommunities {
        cidr,
        communities: vec![],
    };
    for c in &pa.communities {
        let v = cfg.resolve_community(c).unwrap_or(c);
        pc.communities.push(crate::filter::community(
            "BGPConfiguration",
            &format!("{field}.communities"),
            v,
        )?);
    }
    Ok(pc)
}

/// Confirmed blocks affine to `node` (pending never), and the /32s
/// (/128s) this node borrowed from other nodes' blocks.
/// A BlockAffinity or IPAMBlock whose CIDR does not parse is left out
/// and reported in `invalid`.
pub fn originated(
    res: &Resources,
    node: &str,
    invalid: &mut Vec<InvalidObject>,
) -> HashSet<IpNetwork> {
    let mut out = HashSet::new();
    for a in &res.affinities {
        if a.spec.node == node
            && a.spec.state == AffinityState::Confirmed
            && !a.spec.deleted
        {
            match a.spec.cidr.parse::<IpNetwork>() {
                Ok(cidr) => {
                    out.insert(cidr);
                }
                Err(_) => invalid.push(to_invalid(
                    "BlockAffinity",
                    name(&a.metadata),
                    "spec.cidr",
                    crds::ValidationError::string(
                        "BlockAffinity",
                        "spec.cidr",
                        &a.spec.cidr,
                        "allowed a CIDR",
                    )
                    .into(),
                )),
            }
        }
    }
    for b in &res.blocks {
        if b.spec.deleted || b.spec.affine_host() == Some(node) {
            continue;
        }
        let cidr = match b.spec.cidr_net() {
            Ok(c) => c,
            Err(e) => {
                invalid.push(to_invalid(
                    "IPAMBlock",
                    name(&b.metadata),
                    "spec.cidr",
                    e.into(),
                ));
                continue;
            }
        };
        for (ord, slot) in b.spec.allocations.iter().enumerate() {
            let Some(attr) = slot.and_then(|i| b.spec.attributes.get(i)) else {
                continue;
            };
            if attr.secondary.get("node").map(String::as_str) != Some(node) {
                continue;
            }
            if let Some(ip) = nth(&cidr, ord) {
                let len = if ip.is_ipv4() { 32 } else { 128 };
                out.insert(IpNetwork::new(ip, len).expect("host prefix"));
            }
        }
    }
    out
}

/// The `n`th address of `net`.
pub(super) fn nth(net: &IpNetwork, n: usize) -> Option<IpAddr> {
    match net {
        IpNetwork::V4(v) => {
            let base = u32::from(v.network());
            let a = base.checked_add(u32::try_from(n).ok()?)?;
            v.contains(a.into()).then(|| IpAddr::V4(a.into()))
        }
        IpNetwork::V6(v) => {
            let base = u128::from(v.network());
            let a = base.checked_add(n as u128)?;
            v.contains(a.into()).then(|| IpAddr::V6(a.into()))
        }
    }
}
