//! What an allocation request finds already done: a handle that holds
//! addresses (a repeated ADD of one attachment), and the undo of a failed
//! request, retried so that a datastore outage does not leave it behind.
//!
//! A repeated ADD for the same attachment (same handle,
//! `<network>.<containerID>`) gets the addresses the handle already holds
//! instead of new ones, as Calico's IPAM does for a handle limited to one
//! address per family (`MaxAllocPerIPVersion`): the CNI spec has the
//! runtime never ADD an attachment twice without a DEL in between, so a
//! second ADD is a retry whose first answer was lost, and taking a second
//! address would leak the first.

use std::net::IpAddr;
use std::time::Duration;

use ipnetwork::IpNetwork;
use margay_crds::{IPAMBlock, IPAMHandle};
use margay_datastore::ReadBatch;

use crate::addr::Family;
use crate::assign::{AssignArgs, Assigned, AssignedIp};
use crate::convert::{self, block_name, handle_name};
use crate::error::{IpamError, Result};
use crate::ipam::{Ctx, Ipam};
use crate::store::get_live;

/// Attempts of the undo of a failed allocation.
const UNDO_ATTEMPTS: u32 = 6;
/// First pause between undo attempts; doubled after each (so about 3 s
/// in all before the undo is left to DEL or GC).
const UNDO_BACKOFF: Duration = Duration::from_millis(100);

impl Ipam {
    /// The addresses `args.handle` already holds, when it holds any: the
    /// request's answer if they are what it asks for (per family), a
    /// `BadRequest` naming them if not. None when the handle holds
    /// nothing (a new attachment). Called under the host lock.
    pub(crate) async fn existing_assignment(
        &self,
        args: &AssignArgs,
        ctx: &Ctx,
    ) -> Result<Option<Assigned>> {
        let name = handle_name(&args.handle)?;
        let Some(h) = get_live::<IPAMHandle>(&self.ds, &name).await? else {
            return Ok(None);
        };
        let mut reads = ReadBatch::new();
        let slots: Vec<_> = h
            .spec
            .block
            .keys()
            .filter_map(|k| k.parse::<IpNetwork>().ok())
            .map(|c| (c, reads.get::<IPAMBlock>(&block_name(&c))))
            .collect();
        if slots.is_empty() {
            return Ok(None);
        }
        let mut got = self.ds.read(&reads).await?;
        let mut out = Assigned::default();
        for (cidr, slot) in slots {
            let Some(obj) = got.take(slot).filter(|b| !b.spec.deleted) else {
                continue;
            };
            let b = convert::block_from_obj(&obj)?;
            let pool = ctx
                .pools
                .iter()
                .find(|p| margay_crds::net::contains(&p.view.cidr, &cidr))
                .map(|p| p.view.name.clone())
                .unwrap_or_default();
            for ip in b.ips_of_handle(&args.handle) {
                let a = AssignedIp {
                    ip,
                    block: cidr,
                    pool: pool.clone(),
                };
                match Family::of(ip) {
                    Family::V4 => out.ipv4.push(a),
                    Family::V6 => out.ipv6.push(a),
                }
            }
        }
        if out.ipv4.is_empty() && out.ipv6.is_empty() {
            return Ok(None); // A handle left over-counting: allocate.
        }
        if out.ipv4.len() == args.num_v4 && out.ipv6.len() == args.num_v6 {
            tracing::info!(handle = %args.handle,
                "the handle already holds its addresses: returning them");
            return Ok(Some(out));
        }
        let held: Vec<IpAddr> =
            out.ipv4.iter().chain(&out.ipv6).map(|a| a.ip).collect();
        Err(IpamError::BadRequest(format!(
            "handle {} already holds {} (IPv4 {}, IPv6 {}), the request asks \
             for IPv4 {} and IPv6 {}: release it (CNI DEL) before assigning \
             again",
            args.handle,
            held.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            out.ipv4.len(),
            out.ipv6.len(),
            args.num_v4,
            args.num_v6,
        )))
    }

    /// Releases what a failed request of `handle` took, retrying with
    /// backoff while the datastore is unavailable: a commit that landed
    /// but whose reply was lost shows up as an outage, and its addresses
    /// must not stay allocated. After the last attempt the handle is left
    /// for CNI DEL (which the runtime sends after a failed ADD) or this
    /// node's GC (the allocation records this node); both free it.
    pub(crate) async fn undo_assignment(&self, handle: &str) {
        let mut pause = UNDO_BACKOFF;
        for attempt in 1..=UNDO_ATTEMPTS {
            match self.release_handle_locked(handle).await {
                Ok(freed) => {
                    if !freed.is_empty() {
                        tracing::info!(
                            handle,
                            ?freed,
                            attempt,
                            "undid a failed assignment"
                        );
                    }
                    return;
                }
                Err(e) if e.is_transient() && attempt < UNDO_ATTEMPTS => {
                    tracing::debug!(handle, error = %e, attempt,
                        "undoing a failed assignment: retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(e) => {
                    tracing::warn!(handle, error = %e, attempt,
                        "could not undo a failed assignment; CNI DEL or this \
                         node's GC will release it");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use margay_crds::{IPPool, IPPoolSpec};
    use margay_datastore::{Datastore, DatastoreSpec};
    use margay_testkit::EtcdServer;

    use super::*;
    use crate::IpamOptions;

    /// The undo of a failed request outlasts a short etcd outage (what a
    /// commit whose reply was lost runs into): the addresses are freed
    /// once etcd is back, not left allocated.
    #[tokio::test]
    async fn undo_retries_through_an_etcd_outage() {
        let mut etcd = match EtcdServer::start() {
            Ok(e) => e,
            Err(e) => {
                panic!("cannot start etcd ({e}): scripts/deps installs it");
            }
        };
        let spec = DatastoreSpec::etcd(vec![etcd.endpoint()]);
        let ds = Datastore::connect(&spec).await.unwrap();
        let pool = IPPool::new(
            "p",
            IPPoolSpec {
                cidr: "10.66.0.0/24".into(),
                block_size: Some(28),
                ..IPPoolSpec::default()
            },
        );
        ds.create(&pool).await.unwrap();
        let opts = IpamOptions {
            lock_path: None,
            ..IpamOptions::default()
        };
        let ipam = Ipam::new(ds, "n1", opts);
        let args = AssignArgs {
            handle: "net.lost".into(),
            num_v4: 1,
            ..AssignArgs::default()
        };
        ipam.auto_assign(&args).await.unwrap();

        etcd.stop();
        let restart = async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            etcd.restart().unwrap();
        };
        tokio::join!(ipam.undo_assignment("net.lost"), restart);
        let held = ipam.datastore().get::<IPAMHandle>("net.lost").await;
        assert!(held.unwrap().is_none(), "the handle outlived the undo");
        let snap = ipam.snapshot().await.unwrap();
        assert!(snap.blocks.iter().all(|b| b.is_empty()));
    }
}
