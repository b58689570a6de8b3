//! Allocation of one specific address (Calico `AssignIP`): for tunnel
//! addresses and tests, where the caller, not the allocator, picks it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use margay_crds::IPAMBlock;

use crate::addr::{self, Family};
use crate::assign::AssignedIp;
use crate::block::{ATTR_NODE, ATTR_TIMESTAMP, BlockError};
use crate::convert::{self, block_name, handle_name};
use crate::error::{IpamError, Result};
use crate::hint::BlockHints;
use crate::ipam::Ipam;
use crate::model::PoolView;
use crate::store::{DATASTORE_RETRIES, get_live, retries_exhausted};

impl Ipam {
    /// Allocates the specific address `ip` to `handle` (claiming its block
    /// for this node when no block exists yet).
    pub async fn assign_ip(
        &self,
        ip: IpAddr,
        handle: &str,
        attrs: &BTreeMap<String, String>,
    ) -> Result<AssignedIp> {
        handle_name(handle)?;
        let _lock = self.host_lock().await?;
        let ctx = self.load_ctx(&BlockHints::default()).await?;
        let pools: Vec<PoolView> =
            ctx.pools.iter().map(|p| p.view.clone()).collect();
        let pool = pools
            .iter()
            .find(|p| {
                p.cidr.contains(ip) && Family::of_net(&p.cidr) == Family::of(ip)
            })
            .ok_or_else(|| {
                IpamError::BadRequest(format!("{ip} is not inside any IPPool"))
            })?
            .clone();
        if ctx.reserved.iter().any(|r| r.contains(ip)) {
            return Err(IpamError::BadRequest(format!(
                "{ip} is reserved by an IPReservation"
            )));
        }
        let cidr = IpNetwork::new(ip, pool.block_size)
            .map(|n| addr::net_at(Family::of(ip), addr::base(&n), n.prefix()))
            .map_err(|e| IpamError::BadRequest(e.to_string()))?;
        let mut attrs = attrs.clone();
        attrs.insert(ATTR_NODE.into(), self.node.clone());
        attrs.insert(ATTR_TIMESTAMP.into(), jiff::Timestamp::now().to_string());
        let name = block_name(&cidr);
        for _ in 0..DATASTORE_RETRIES {
            let Some(mut obj) = get_live::<IPAMBlock>(&self.ds, &name).await?
            else {
                self.claim_block(cidr).await?;
                continue;
            };
            let mut b = convert::block_from_obj(&obj)?;
            if let Err(e) = b.assign(ip, handle, &attrs, &ctx.reserved) {
                return Err(match e {
                    BlockError::AlreadyAllocated { ip, handle } => {
                        IpamError::AlreadyAllocated {
                            ip,
                            handle: handle.unwrap_or_default(),
                        }
                    }
                    other => other.into(),
                });
            }
            convert::block_into_spec(&b, &mut obj.spec);
            if self.write_allocation(handle, cidr, 1, &obj).await? {
                return Ok(AssignedIp {
                    ip,
                    block: cidr,
                    pool: pool.name,
                });
            }
        }
        Err(retries_exhausted::<IPAMBlock>("update", &name))
    }
}
