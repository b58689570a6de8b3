//! Typed datastore over etcd v3, Kubernetes CRDs and read-only YAML files.
//!
//! Every margay binary takes `--datastore etcd:URL[,URL]`, `kubernetes`,
//! `kubernetes:KUBECONFIG` or `file:PATH` ([`DatastoreSpec`]), connects
//! with [`Datastore::connect`] and then uses the same typed calls on any
//! backend:
//!
//! ```no_run
//! # async fn demo<K: margay_datastore::Object>(
//! #     ds: margay_datastore::Datastore,
//! # ) -> margay_datastore::Result<()> {
//! let mut obj = ds.get::<K>("pool-a").await?.expect("exists");
//! // ... change obj ...
//! match ds.update(&obj).await {
//!     Ok(stored) => obj = stored,
//!     Err(e) if e.is_conflict() => { /* re-read and retry */ }
//!     Err(e) => return Err(e),
//! }
//! # Ok(()) }
//! ```
//!
//! The contract (shared by all backends, checked by the conformance tests
//! in `tests/`): `resourceVersion` is an opaque revision string; `update`
//! and conditional `delete` are compare-and-swap on it; `watch` from any
//! revision returned earlier yields the later changes in order, or
//! `Compacted` when that history is gone.

mod batch;
pub mod cache;
mod datastore;
mod error;
pub mod etcd;
pub mod file;
mod informer;
pub mod kubernetes;
mod object;
mod spec;

pub use crate::batch::{ReadBatch, ReadResults, Slot, WriteBatch};
pub use crate::cache::{Cache, CacheItem, Change, Feed};
pub use crate::datastore::Datastore;
pub use crate::error::{BoxError, DatastoreError, Result};
pub use crate::etcd::EtcdStore;
pub use crate::file::FileStore;
pub use crate::informer::{ListWatchEvent, Projection};
pub use crate::kubernetes::KubeStore;
pub use crate::object::{InvalidObject, List, Object, WatchEvent};
pub use crate::spec::{
    ALLOWED_FORMS, DatastoreSpec, DatastoreSpecError, EtcdField, EtcdSpec,
    EtcdSpecError, EtcdTls, KeyStyle,
};
