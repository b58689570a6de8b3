//! IPAMHandle bookkeeping: per handle, how many addresses it holds in
//! which block, so that releasing a handle touches only those blocks.
//!
//! Allocation increments the handle *before* writing the block, so a crash
//! in between leaves a handle that over-counts (harmless: release by handle
//! looks in one block too many) rather than an address nobody can find.

use ipnetwork::IpNetwork;
use margay_crds::{IPAMBlock, IPAMHandle, IPAMHandleSpec};
use margay_datastore::WriteBatch;

use crate::convert::{SoftDelete, handle_name, meta, rv};
use crate::error::{IpamError, Result};
use crate::ipam::Ipam;
use crate::store::{
    Created, DATASTORE_RETRIES, create_or_get, delete_shared, get_live,
    hard_delete, retries_exhausted,
};

/// Handles remembered as written before the memory starts over.
const HINT_CAPACITY: usize = 1024;

/// Canonical handle ID of a CNI attachment: `<network>.<containerID>`.
pub fn cni_handle(network: &str, container_id: &str) -> String {
    format!("{network}.{container_id}")
}

/// Takes `n` addresses of block `key` off a handle's count, dropping the
/// block's entry at zero.
pub(crate) fn take_from(h: &mut IPAMHandleSpec, key: &str, n: u32) {
    match h.block.get(key).map_or(0, |c| c.saturating_sub(n)) {
        0 => h.block.remove(key),
        left => h.block.insert(key.to_string(), left),
    };
}

impl Ipam {
    /// Commits an allocation in one transaction: `block` (changed, at the
    /// revision read) and `handle` counting `n` more addresses in it
    /// (created if new). Ok(false) when the block changed since it was
    /// read; a handle that is not as guessed is read and the commit
    /// retried. Atomic, so no crash leaves one write without the other.
    #[tracing::instrument(level = "debug", skip_all)]
    pub(crate) async fn commit_allocation(
        &self,
        handle: &str,
        cidr: IpNetwork,
        n: u32,
        block: &IPAMBlock,
    ) -> Result<bool> {
        let name = handle_name(handle)?;
        let block_name = block.metadata.name.clone().unwrap_or_default();
        let key = cidr.to_string();
        // A new attachment's handle does not exist yet: guess that unless
        // this instance wrote it.
        let mut current = self.handle_hint(&name);
        for _ in 0..DATASTORE_RETRIES {
            let creating = current.is_none();
            let mut h = current.clone().unwrap_or_else(|| IPAMHandle {
                metadata: meta(name.clone()),
                spec: IPAMHandleSpec {
                    handle_id: handle.to_string(),
                    block: Default::default(),
                    deleted: false,
                },
            });
            *h.spec.block.entry(key.clone()).or_default() += n;
            let mut batch = WriteBatch::new();
            if current.is_some() {
                batch.update(&h)?;
            } else {
                batch.create(&h)?;
            }
            batch.update(block)?;
            let err = match self.ds.commit(&batch).await {
                Ok(rev) => {
                    // The request's handle exists now: from here on an
                    // existing one is its own (e.g. its other family's).
                    self.assumed_new
                        .lock()
                        .expect("not poisoned")
                        .remove(&name);
                    self.block_written(block, &rev);
                    h.metadata.resource_version = Some(rev);
                    self.remember_handle(h);
                    return Ok(true);
                }
                Err(e) => e,
            };
            match err.subject() {
                Some(("IPAMBlock", b)) if b == block_name => {
                    self.forget_handle(&name);
                    self.block_unknown(&cidr);
                    return Ok(false);
                }
                Some(("IPAMHandle", _)) => {}
                _ => {
                    self.forget_handle(&name);
                    return Err(err.into());
                }
            }
            // The handle is not what we guessed: read it. A soft-deleted
            // leftover is removed first (as create_or_get does).
            current = self.ds.get::<IPAMHandle>(&name).await?;
            if let Some(old) = current.as_ref().filter(|h| h.is_deleted()) {
                hard_delete::<IPAMHandle>(&self.ds, &name, rv(&old.metadata))
                    .await?;
                current = None;
            }
            // A handle auto_assign did not read (taking it to be new)
            // holds addresses: a repeated request, answered with those.
            // The whole transaction failed, so this one took nothing.
            if creating
                && current.as_ref().is_some_and(|h| !h.spec.block.is_empty())
                && self
                    .assumed_new
                    .lock()
                    .expect("not poisoned")
                    .contains(&name)
            {
                self.forget_handle(&name);
                return Err(IpamError::HandleHolds { handle: name });
            }
        }
        self.forget_handle(&name);
        Err(retries_exhausted::<IPAMHandle>("update", &name))
    }

    /// The handle as this instance last wrote it, if it did.
    pub(crate) fn handle_hint(&self, name: &str) -> Option<IPAMHandle> {
        let hints = self.handle_hints.lock().expect("not poisoned");
        hints.get(name).cloned()
    }

    fn remember_handle(&self, h: IPAMHandle) {
        let mut hints = self.handle_hints.lock().expect("not poisoned");
        if hints.len() >= HINT_CAPACITY {
            hints.clear();
        }
        hints.insert(h.metadata.name.clone().unwrap_or_default(), h);
    }

    pub(crate) fn forget_handle(&self, name: &str) {
        self.handle_hints.lock().expect("not poisoned").remove(name);
    }

    /// Adds `n` addresses in `block` to `handle`, creating it if needed.
    #[tracing::instrument(level = "debug", skip_all)]
    pub(crate) async fn handle_add(
        &self,
        handle: &str,
        block: IpNetwork,
        n: u32,
    ) -> Result<()> {
        let name = handle_name(handle)?;
        let key = block.to_string();
        for _ in 0..DATASTORE_RETRIES {
            let obj = IPAMHandle {
                metadata: meta(name.clone()),
                spec: IPAMHandleSpec {
                    handle_id: handle.to_string(),
                    block: [(key.clone(), n)].into(),
                    deleted: false,
                },
            };
            let mut h = match create_or_get(&self.ds, &obj).await? {
                Created::New(_) => return Ok(()),
                Created::Exists(h) => h,
            };
            *h.spec.block.entry(key.clone()).or_default() += n;
            match self.ds.update(&h).await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_conflict() || e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(retries_exhausted::<IPAMHandle>("update", &name))
    }

    /// Removes `n` addresses in `block` from `handle`; deletes the handle
    /// when it holds nothing any more.
    pub(crate) async fn handle_remove(
        &self,
        handle: &str,
        block: IpNetwork,
        n: u32,
    ) -> Result<()> {
        let name = handle_name(handle)?;
        let key = block.to_string();
        for _ in 0..DATASTORE_RETRIES {
            let Some(mut h) = get_live::<IPAMHandle>(&self.ds, &name).await?
            else {
                return Ok(());
            };
            take_from(&mut h.spec, &key, n);
            let res = if h.spec.block.is_empty() {
                delete_shared(&self.ds, &h).await.map(drop)
            } else {
                self.ds.update(&h).await.map(|_| ())
            };
            match res {
                Ok(()) => return Ok(()),
                Err(e) if e.is_conflict() || e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(retries_exhausted::<IPAMHandle>("update", &name))
    }
}
