//! IPAMHandle bookkeeping: per handle, how many addresses it holds in
//! which block, so that releasing a handle touches only those blocks.
//!
//! Allocation increments the handle *before* writing the block, so a crash
//! in between leaves a handle that over-counts (harmless: release by handle
//! looks in one block too many) rather than an address nobody can find.

use ipnetwork::IpNetwork;
use margay_crds::{IPAMHandle, IPAMHandleSpec};

use crate::convert::{handle_name, meta};
use crate::error::Result;
use crate::ipam::Ipam;
use crate::store::{
    Created, DATASTORE_RETRIES, create_or_get, delete_shared, get_live,
    retries_exhausted,
};

/// Canonical handle ID of a CNI attachment: `<network>.<containerID>`.
pub fn cni_handle(network: &str, container_id: &str) -> String {
    format!("{network}.{container_id}")
}

impl Ipam {
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
            let left =
                h.spec.block.get(&key).map_or(0, |c| c.saturating_sub(n));
            if left == 0 {
                h.spec.block.remove(&key);
            } else {
                h.spec.block.insert(key.clone(), left);
            }
            let res = if h.spec.block.is_empty() {
                delete_shared(&self.ds, &h).await
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
