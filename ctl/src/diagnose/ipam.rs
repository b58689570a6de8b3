//! Hop 3: the pod's address in IPAM: allocated, to this pod's handle, in
//! a block affine to this node (or borrowed, which margay routes with a
//! /32 of its own).

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use margay_datastore::Datastore;
use margay_ipam::block::Allocation;
use margay_ipam::cni_handle;

use super::{DiagnoseError, Endpoint, Verdict};

/// What IPAM holds for the pod's address.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The block holding the address, and the node it is affine to.
    pub block: Option<(IpNetwork, Option<String>)>,
    /// The address's allocation in that block (`None`: free).
    pub allocation: Option<Allocation>,
}

/// Reads the IPAM snapshot (one datastore list per IPAM kind; diagnose
/// is a one-shot operator command) and keeps the block holding `ip`.
pub async fn facts(ds: &Datastore, ip: IpAddr) -> Result<Facts, DiagnoseError> {
    let snap = crate::ipam::driver(ds.clone()).snapshot().await?;
    let Some(block) = snap.blocks.iter().find(|b| b.cidr.contains(ip)) else {
        return Ok(Facts::default());
    };
    Ok(Facts {
        block: Some((block.cidr, block.host().map(str::to_string))),
        allocation: block.allocation(ip),
    })
}

/// Hop 3.
pub fn judge(ep: &Endpoint, node: &str, network: &str, f: &Facts) -> Verdict {
    let ip = ep.ip;
    let want = cni_handle(network, &ep.container_id);
    let Some((cidr, host)) = &f.block else {
        return Verdict::broken(
            format!("no IPAM block holds {ip}"),
            "the address is outside IPAM: IPAM may hand it out again; \
             delete the pod so it gets an address from IPAM",
        );
    };
    let Some(a) = &f.allocation else {
        return Verdict::broken(
            format!("{ip} is free in block {cidr}: it is allocated to nobody"),
            format!(
                "IPAM can give {ip} to another pod: delete this pod so the \
                 runtime re-runs ADD (or re-assign it to handle {want})"
            ),
        );
    };
    if a.handle_id.as_deref() != Some(want.as_str()) {
        return Verdict::broken(
            format!(
                "{ip} is allocated to handle {}, not to this pod ({want})",
                a.handle_id.as_deref().unwrap_or("(none)")
            ),
            "two pods claim one address: delete this pod so it gets its own",
        );
    }
    match host.as_deref() {
        Some(h) if h == node => {
            Verdict::ok(format!("{ip} -> {want}, block {cidr} host:{node}"))
        }
        Some(h) => Verdict::ok(format!(
            "{ip} -> {want}, borrowed from block {cidr} of host:{h} \
             (this node advertises the /32)"
        )),
        None => Verdict::ok(format!(
            "{ip} -> {want}, block {cidr} has no affinity (borrowed; \
             this node advertises the /32)"
        )),
    }
}
