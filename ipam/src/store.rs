//! Datastore access shared by the IPAM operations: reads that ignore
//! soft-deleted objects, and Calico's two-step delete of shared objects.
//!
//! Kubernetes has no compare-and-delete on content, so a shared object is
//! deleted by first writing `deleted=true` with a compare-and-swap (the
//! point that orders concurrent writers: whoever wrote the object since we
//! read it makes this fail with Conflict) and then deleting it with the
//! resourceVersion of that write as precondition.

use margay_datastore::{Datastore, DatastoreError, Object};

use crate::convert::{SoftDelete, rv};
use crate::error::{IpamError, Result};

/// Calico's bound on compare-and-swap retries (`datastoreRetries`).
pub const DATASTORE_RETRIES: u32 = 100;

/// Reads `name`; a soft-deleted object counts as absent.
pub async fn get_live<K: Object + SoftDelete>(
    ds: &Datastore,
    name: &str,
) -> Result<Option<K>> {
    Ok(ds.get::<K>(name).await?.filter(|o| !o.is_deleted()))
}

/// Lists every object of type `K` that is not soft-deleted.
pub async fn list_live<K: Object + SoftDelete>(
    ds: &Datastore,
) -> Result<Vec<K>> {
    Ok(ds
        .list::<K>()
        .await?
        .items
        .into_iter()
        .filter(|o| !o.is_deleted())
        .collect())
}

/// Outcome of a create that may find its name taken.
#[derive(Debug)]
pub enum Created<K> {
    /// Stored as given.
    New(K),
    /// A live object of that name exists; here it is.
    Exists(K),
}

/// Creates `obj`. If the name is taken by a soft-deleted leftover, finishes
/// that deletion and tries again; if it is taken by a live object, returns
/// that object.
pub async fn create_or_get<K: Object + SoftDelete>(
    ds: &Datastore,
    obj: &K,
) -> Result<Created<K>> {
    let name = obj.meta().name.clone().unwrap_or_default();
    for _ in 0..DATASTORE_RETRIES {
        match ds.create(obj).await {
            Ok(stored) => return Ok(Created::New(stored)),
            Err(e) if e.is_already_exists() => {}
            Err(e) => return Err(e.into()),
        }
        let Some(existing) = ds.get::<K>(&name).await? else {
            continue; // Deleted in between: create again.
        };
        if !existing.is_deleted() {
            return Ok(Created::Exists(existing));
        }
        hard_delete::<K>(ds, &name, rv(existing.meta())).await?;
    }
    Err(retries_exhausted::<K>("create", &name))
}

/// Soft-deletes `obj` (as read, with its resourceVersion) and then removes
/// it; returns the soft-deleted copy as stored (None when `obj` was
/// already gone), whose revision is the deletion's point. Returns `Conflict` (as `Err(DatastoreError)`) when `obj` changed
/// since it was read, so the caller can re-read and decide again.
pub async fn delete_shared<K: Object + SoftDelete>(
    ds: &Datastore,
    obj: &K,
) -> Result<Option<K>, DatastoreError> {
    let name = obj.meta().name.clone().unwrap_or_default();
    let mut marked = obj.clone();
    marked.mark_deleted();
    let stored = match ds.update(&marked).await {
        Ok(s) => s,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    match ds.delete::<K>(&name, rv(stored.meta())).await {
        // Someone else finished the deletion, or already removed the
        // soft-deleted object to re-create it: either way it is gone.
        Ok(()) => Ok(Some(stored)),
        Err(e) if e.is_not_found() || e.is_conflict() => Ok(Some(stored)),
        Err(e) => Err(e),
    }
}

/// Removes a soft-deleted leftover, tolerating a concurrent removal.
pub async fn hard_delete<K: Object>(
    ds: &Datastore,
    name: &str,
    rv: Option<&str>,
) -> Result<()> {
    match ds.delete::<K>(name, rv).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() || e.is_conflict() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The error for a CAS loop that lost every round.
pub fn retries_exhausted<K: Object>(op: &str, name: &str) -> IpamError {
    IpamError::CasRetriesExhausted {
        what: format!("{op} of {} {name}", K::kind(&())),
        attempts: DATASTORE_RETRIES,
    }
}
