//! Releasing addresses: by handle (CNI DEL), by address, empty blocks, and
//! garbage collection of leaked allocations.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use ipnetwork::IpNetwork;
use margay_crds::{BlockAffinity, IPAMBlock, IPAMHandle, IPPool};
use margay_datastore::{ReadBatch, WriteBatch};

use crate::addr::{self, Family};
use crate::block::{BlockError, ReleaseCheck, Released};
use crate::check::Liveness;
use crate::claim::{AffinityRelease, ReleaseCond};
use crate::convert::{self, SoftDelete, block_name, handle_name};
use crate::error::{IpamError, Result};
use crate::gc::LeakedIp;
use crate::ipam::{Ipam, pool_view};
use crate::model::AffinityState;
use crate::store::{
    DATASTORE_RETRIES, delete_shared, get_live, list_live, retries_exhausted,
};

/// One address to release, with optional conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRequest {
    pub ip: IpAddr,
    /// Only if it belongs to this handle.
    pub handle: Option<String>,
    /// Only if it carries this sequence number (the ABA guard).
    pub sequence: Option<u64>,
}

/// Outcome per address of [`Ipam::release_ips`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseOutcome {
    pub ip: IpAddr,
    /// `Freed`/`AlreadyFree`, or why the block refused.
    pub result: Result<Released, BlockError>,
}

/// What one [`Ipam::gc`] pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcStats {
    /// Leaked handles still inside their grace period.
    pub candidates: usize,
    /// Handles whose addresses were freed.
    pub released_handles: usize,
    pub released_ips: usize,
    /// Addresses skipped because they changed since they were read.
    pub skipped: usize,
}

impl Ipam {
    /// Releases everything `handle` holds; an unknown handle is not an
    /// error (DEL is idempotent). Returns the freed addresses.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn release_by_handle(&self, handle: &str) -> Result<Vec<IpAddr>> {
        handle_name(handle)?;
        let _lock = self.host_lock().await?;
        self.release_handle_locked(handle).await
    }

    /// [`Ipam::release_by_handle`] for callers that hold the host lock.
    pub(crate) async fn release_handle_locked(
        &self,
        handle: &str,
    ) -> Result<Vec<IpAddr>> {
        let name = handle_name(handle)?;
        self.forget_handle(&name);
        if self.ds.has_transactions() {
            return self.release_handle_committed(handle, &name).await;
        }
        let mut freed = Vec::new();
        for _ in 0..DATASTORE_RETRIES {
            let Some(h) = get_live::<IPAMHandle>(&self.ds, &name).await? else {
                return Ok(freed);
            };
            for key in h.spec.block.keys() {
                let Ok(cidr) = key.parse::<IpNetwork>() else {
                    continue;
                };
                freed.extend(self.release_handle_in_block(handle, cidr).await?);
            }
            match delete_shared(&self.ds, &h).await {
                Ok(_) => return Ok(freed),
                // The handle gained a block meanwhile: go round again.
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(retries_exhausted::<IPAMHandle>("delete", &name))
    }

    /// [`Ipam::release_handle_locked`] in three round trips: the handle,
    /// its blocks (one batch read), then one transaction that frees the
    /// addresses in every block and deletes the handle, each conditioned
    /// on the revision read (any change: read again and retry).
    async fn release_handle_committed(
        &self,
        handle: &str,
        name: &str,
    ) -> Result<Vec<IpAddr>> {
        for _ in 0..DATASTORE_RETRIES {
            let Some(h) = get_live::<IPAMHandle>(&self.ds, name).await? else {
                return Ok(Vec::new());
            };
            let mut reads = ReadBatch::new();
            let slots: Vec<_> = h
                .spec
                .block
                .keys()
                .filter_map(|k| k.parse::<IpNetwork>().ok())
                .map(|cidr| reads.get::<IPAMBlock>(&block_name(&cidr)))
                .collect();
            let mut blocks = self.ds.read(&reads).await?;
            let mut writes = WriteBatch::new();
            let mut written = Vec::new();
            let mut deleted = Vec::new();
            let mut freed = Vec::new();
            for slot in slots {
                let Some(mut obj) =
                    blocks.take(slot).filter(|b| !b.is_deleted())
                else {
                    continue;
                };
                let mut b = convert::block_from_obj(&obj)?;
                let ips = b.release_handle(handle);
                if ips.is_empty() {
                    continue;
                }
                if b.is_orphaned_and_empty() {
                    writes.delete(&obj)?;
                    deleted.push(b.cidr);
                } else {
                    convert::block_into_spec(&b, &mut obj.spec);
                    writes.update(&obj)?;
                    written.push(obj);
                }
                freed.extend(ips);
            }
            writes.delete(&h)?;
            match self.ds.commit(&writes).await {
                Ok(rev) => {
                    for b in &written {
                        self.block_written(b, &rev);
                    }
                    for cidr in &deleted {
                        self.block_unknown(cidr);
                    }
                    return Ok(freed);
                }
                Err(e) if e.is_conflict() || e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(retries_exhausted::<IPAMHandle>("delete", name))
    }

    /// Frees `handle`'s addresses in one block (CAS loop).
    async fn release_handle_in_block(
        &self,
        handle: &str,
        cidr: IpNetwork,
    ) -> Result<Vec<IpAddr>> {
        let name = block_name(&cidr);
        for _ in 0..DATASTORE_RETRIES {
            let Some(mut obj) = get_live::<IPAMBlock>(&self.ds, &name).await?
            else {
                return Ok(Vec::new());
            };
            let mut b = convert::block_from_obj(&obj)?;
            let ips = b.release_handle(handle);
            if ips.is_empty() {
                return Ok(ips);
            }
            convert::block_into_spec(&b, &mut obj.spec);
            match self.write_released_block(&b, &obj).await {
                Ok(()) => return Ok(ips),
                Err(e) if e.is_conflict() || e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(retries_exhausted::<IPAMBlock>("update", &name))
    }

    /// Releases specific addresses, each only if its conditions hold.
    /// Handles are updated to match.
    pub async fn release_ips(
        &self,
        reqs: &[ReleaseRequest],
    ) -> Result<Vec<ReleaseOutcome>> {
        let _lock = self.host_lock().await?;
        let pools: Vec<_> = self
            .ds
            .list::<IPPool>()
            .await?
            .items
            .iter()
            .filter_map(pool_view)
            .collect();
        let mut by_block: BTreeMap<IpNetwork, Vec<&ReleaseRequest>> =
            BTreeMap::new();
        let mut out = Vec::new();
        for r in reqs {
            let fam = Family::of(r.ip);
            let pool = pools.iter().find(|p| {
                Family::of_net(&p.cidr) == fam && p.cidr.contains(r.ip)
            });
            let Some(pool) = pool else {
                return Err(IpamError::BadRequest(format!(
                    "{} is not inside any IPPool",
                    r.ip
                )));
            };
            let net = IpNetwork::new(r.ip, pool.block_size)
                .map_err(|e| IpamError::BadRequest(e.to_string()))?;
            let cidr = addr::net_at(fam, addr::base(&net), net.prefix());
            by_block.entry(cidr).or_default().push(r);
        }
        for (cidr, reqs) in by_block {
            out.extend(self.release_in_block(cidr, &reqs).await?);
        }
        Ok(out)
    }

    /// Releases `reqs` (all inside block `cidr`) in one CAS write, then
    /// fixes the handles.
    async fn release_in_block(
        &self,
        cidr: IpNetwork,
        reqs: &[&ReleaseRequest],
    ) -> Result<Vec<ReleaseOutcome>> {
        let name = block_name(&cidr);
        for _ in 0..DATASTORE_RETRIES {
            let Some(mut obj) = get_live::<IPAMBlock>(&self.ds, &name).await?
            else {
                return Ok(reqs
                    .iter()
                    .map(|r| ReleaseOutcome {
                        ip: r.ip,
                        result: Ok(Released::AlreadyFree),
                    })
                    .collect());
            };
            let mut b = convert::block_from_obj(&obj)?;
            let mut outcomes = Vec::new();
            let mut per_handle: BTreeMap<String, u32> = BTreeMap::new();
            for r in reqs {
                let check = ReleaseCheck {
                    handle: r.handle.as_deref(),
                    sequence: r.sequence,
                };
                let result = b.release(r.ip, &check);
                if let Ok(Released::Freed { handle: Some(h) }) = &result {
                    *per_handle.entry(h.clone()).or_default() += 1;
                }
                outcomes.push(ReleaseOutcome { ip: r.ip, result });
            }
            let changed = outcomes
                .iter()
                .any(|o| matches!(o.result, Ok(Released::Freed { .. })));
            if changed && self.ds.has_transactions() {
                convert::block_into_spec(&b, &mut obj.spec);
                let delete = b.is_orphaned_and_empty();
                match self.commit_release(&obj, delete, cidr, &per_handle).await
                {
                    Ok(()) => return Ok(outcomes),
                    Err(IpamError::Unavailable(e)) => {
                        return Err(IpamError::Unavailable(e));
                    }
                    Err(e) if is_stale(&e) => continue,
                    Err(e) => return Err(e),
                }
            }
            if changed {
                convert::block_into_spec(&b, &mut obj.spec);
                match self.write_released_block(&b, &obj).await {
                    Ok(()) => {}
                    Err(e) if e.is_conflict() || e.is_not_found() => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            for (h, n) in per_handle {
                if handle_name(&h).is_ok() {
                    self.handle_remove(&h, cidr, n).await?;
                }
            }
            return Ok(outcomes);
        }
        Err(retries_exhausted::<IPAMBlock>("update", &name))
    }

    /// Writes a block whose addresses were freed and the handles that
    /// held them (`per_handle`: how many each lost in `cidr`) in one
    /// transaction, each conditioned on the revision read, so no failure
    /// leaves a freed address still counted by its handle (or the
    /// reverse). A handle left with nothing is deleted; so is the block
    /// when `delete_block` (it is empty and affine to no node).
    async fn commit_release(
        &self,
        block: &IPAMBlock,
        delete_block: bool,
        cidr: IpNetwork,
        per_handle: &BTreeMap<String, u32>,
    ) -> Result<()> {
        let mut reads = ReadBatch::new();
        let slots: Vec<_> = per_handle
            .iter()
            .filter(|(h, _)| handle_name(h).is_ok())
            .map(|(h, n)| (reads.get::<IPAMHandle>(h), *n))
            .collect();
        let mut got = self.ds.read(&reads).await?;
        let mut writes = WriteBatch::new();
        if delete_block {
            writes.delete(block)?;
        } else {
            writes.update(block)?;
        }
        let key = cidr.to_string();
        for (slot, n) in slots {
            let Some(mut h) = got.take(slot).filter(|h| !h.is_deleted()) else {
                continue;
            };
            self.forget_handle(&h.spec.handle_id.clone());
            crate::handle::take_from(&mut h.spec, &key, n);
            if h.spec.block.is_empty() {
                writes.delete(&h)?;
            } else {
                writes.update(&h)?;
            }
        }
        let rev = self.ds.commit(&writes).await?;
        if delete_block {
            self.block_unknown(&cidr);
        } else {
            self.block_written(block, &rev);
        }
        Ok(())
    }

    /// Writes `obj` (holding `b`, read with its resourceVersion) after
    /// addresses were freed in it, by CAS: an update, or the block's
    /// deletion when the release left it empty and affine to no node.
    /// `Conflict`/`NotFound` mean it changed since it was read.
    async fn write_released_block(
        &self,
        b: &crate::block::Block,
        obj: &IPAMBlock,
    ) -> Result<(), margay_datastore::DatastoreError> {
        if b.is_orphaned_and_empty() {
            delete_shared(&self.ds, obj).await?;
            self.block_unknown(&b.cidr);
            tracing::info!(cidr = %b.cidr, "deleted an emptied block affine to no node");
            return Ok(());
        }
        self.ds.update(obj).await.map(|_| ())
    }

    /// Releases this node's blocks that have been empty for at least
    /// `min_age` (seen empty, unchanged, on passes at least `min_age`
    /// apart; zero releases at once). The node always keeps one block, as
    /// Calico's GC does. Returns the released block CIDRs.
    pub async fn release_empty_blocks(
        &self,
        min_age: Duration,
    ) -> Result<Vec<IpNetwork>> {
        let _lock = self.host_lock().await?;
        let now = jiff::Timestamp::now();
        let affs = list_live::<BlockAffinity>(&self.ds).await?;
        let mut mine: Vec<IpNetwork> = affs
            .iter()
            .filter(|a| a.spec.node == self.node)
            .filter(|a| {
                convert::state_from_crd(a.spec.state)
                    == AffinityState::Confirmed
            })
            .filter_map(|a| a.spec.cidr.parse().ok())
            .collect();
        mine.sort();
        let mut ripe = Vec::new();
        let mut seen_empty = BTreeSet::new();
        for cidr in &mine {
            let Some(obj) =
                get_live::<IPAMBlock>(&self.ds, &block_name(cidr)).await?
            else {
                continue;
            };
            let Ok(b) = convert::block_from_obj(&obj) else {
                continue; // Never released: `ipam check` names it.
            };
            if !b.is_empty() {
                continue;
            }
            seen_empty.insert(*cidr);
            let mut since = self.empty_since.lock().expect("not poisoned");
            let first = since.entry(*cidr).or_insert((now, b.sequence_number));
            if first.1 != b.sequence_number {
                // Used and emptied again since: the clock restarts.
                *first = (now, b.sequence_number);
            }
            if now.duration_since(first.0).unsigned_abs() >= min_age {
                ripe.push((*cidr, b.sequence_number));
            }
        }
        self.empty_since
            .lock()
            .expect("not poisoned")
            .retain(|c, _| seen_empty.contains(c));

        let mut released = Vec::new();
        let mut kept = mine.len();
        for (cidr, sequence) in ripe {
            if kept <= 1 {
                break;
            }
            let cond = ReleaseCond {
                require_empty: true,
                sequence: Some(sequence),
            };
            let done = self.release_affinity(&self.node, cidr, cond).await?;
            if done == AffinityRelease::BlockDeleted {
                kept -= 1;
                released.push(cidr);
                self.empty_since.lock().expect("not poisoned").remove(&cidr);
            }
        }
        Ok(released)
    }

    /// One garbage-collection pass over this node's allocations (those
    /// whose `node` attribute names this node, wherever their block is):
    /// frees addresses whose handle starts with `prefix` but is not in
    /// `live`, once they have been seen leaked for `grace` (zero: at
    /// once). `live` is this node's attachments, so another node's
    /// allocations are never touched. Each release is conditioned on the
    /// handle and the sequence number read, so an address re-allocated in
    /// the meantime is left alone; a datastore failure mid-pass returns
    /// the error with every release so far complete and the rest
    /// untouched (the next pass finds them again).
    pub async fn gc(
        &self,
        prefix: &str,
        live: &BTreeSet<String>,
        grace: Duration,
    ) -> Result<GcStats> {
        let (blocks, _) =
            convert::partition_blocks(&list_live::<IPAMBlock>(&self.ds).await?);
        let plan = self.gc_tracker.lock().expect("not poisoned").plan(
            &blocks,
            &self.node,
            Liveness { prefix, live },
            jiff::Timestamp::now(),
            grace,
        );
        let mut stats = GcStats {
            candidates: plan.candidates,
            ..GcStats::default()
        };
        for leak in plan.confirmed {
            let reqs: Vec<ReleaseRequest> = leak
                .ips
                .iter()
                .map(|LeakedIp { ip, sequence, .. }| ReleaseRequest {
                    ip: *ip,
                    handle: Some(leak.handle.clone()),
                    sequence: *sequence,
                })
                .collect();
            let mut freed = 0;
            let mut by_block: BTreeMap<IpNetwork, Vec<&ReleaseRequest>> =
                BTreeMap::new();
            for (l, r) in leak.ips.iter().zip(&reqs) {
                by_block.entry(l.block).or_default().push(r);
            }
            for (cidr, rs) in by_block {
                for o in self.release_in_block(cidr, &rs).await? {
                    match o.result {
                        Ok(Released::Freed { .. }) => freed += 1,
                        Ok(Released::AlreadyFree) => {}
                        Err(e) => {
                            tracing::info!(error = %e, "GC left an address alone");
                            stats.skipped += 1;
                        }
                    }
                }
            }
            if freed > 0 {
                tracing::info!(handle = %leak.handle, freed, "GC freed leaked addresses");
                stats.released_handles += 1;
                stats.released_ips += freed;
            }
        }
        Ok(stats)
    }
}

/// True for a commit that lost to a concurrent writer (read again).
fn is_stale(e: &IpamError) -> bool {
    matches!(e, IpamError::Datastore(d) if d.is_conflict() || d.is_not_found())
}
