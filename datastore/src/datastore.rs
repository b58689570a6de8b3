//! `Datastore`: one handle over whichever backend `--datastore` chose,
//! with the checks every backend shares done once here.

use futures::stream::{BoxStream, Stream, StreamExt};

use crate::batch::{self, ReadBatch, ReadResults, WriteBatch};
use crate::error::{DatastoreError, Result};
use crate::etcd::EtcdStore;
use crate::file::FileStore;
use crate::kubernetes::KubeStore;
use crate::object::{self, List, Object, Progress, WatchEvent, kind, name_of};
use crate::spec::DatastoreSpec;

/// A connected datastore; cheap to clone (clones share connections).
#[derive(Clone, Debug)]
pub enum Datastore {
    Etcd(EtcdStore),
    Kubernetes(KubeStore),
    File(FileStore),
}

impl Datastore {
    /// Connects to (or, for files, loads) the datastore `spec` names.
    /// etcd connects lazily: an unreachable cluster shows up as
    /// `Unavailable` on the first request.
    pub async fn connect(spec: &DatastoreSpec) -> Result<Self> {
        // kube and etcd-client speak TLS through rustls with ring; a build
        // that also links aws-lc-rs (test builds: kube-fake-client) has no
        // automatic process default, and the first TLS client would panic.
        // An error only says a provider is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(match spec {
            DatastoreSpec::Etcd(etcd) => {
                Datastore::Etcd(EtcdStore::connect(etcd).await?)
            }
            DatastoreSpec::Kubernetes { kubeconfig } => Datastore::Kubernetes(
                KubeStore::connect(kubeconfig.as_deref()).await?,
            ),
            DatastoreSpec::File { path } => {
                Datastore::File(FileStore::open(path).await?)
            }
        })
    }

    /// The backend's name: "etcd", "kubernetes" or "file".
    pub fn backend(&self) -> &'static str {
        match self {
            Datastore::Etcd(_) => "etcd",
            Datastore::Kubernetes(_) => "kubernetes",
            Datastore::File(_) => "file",
        }
    }

    /// Whether writes are refused (the file backend).
    pub fn is_read_only(&self) -> bool {
        matches!(self, Datastore::File(_))
    }

    /// Reads object `name`; `None` if absent.
    pub async fn get<K: Object>(&self, name: &str) -> Result<Option<K>> {
        check_name::<K>(name)?;
        match self {
            Datastore::Etcd(s) => s.get(name).await,
            Datastore::Kubernetes(s) => s.get(name).await,
            Datastore::File(s) => s.get(name),
        }
    }

    /// Reads every object of type `K` plus the list's resourceVersion.
    pub async fn list<K: Object>(&self) -> Result<List<K>> {
        match self {
            Datastore::Etcd(s) => s.list().await,
            Datastore::Kubernetes(s) => s.list().await,
            Datastore::File(s) => s.list(),
        }
    }

    /// [`Datastore::list`], keeping `project(object)` of each object as
    /// it is decoded, a page at a time (etcd, Kubernetes): the peak memory
    /// of a list is one page decoded plus what is kept, not the kind.
    pub async fn list_with<K: Object, V>(
        &self,
        project: &(dyn Fn(K) -> V + Send + Sync),
    ) -> Result<List<V>> {
        match self {
            Datastore::Etcd(s) => s.list_with(project).await,
            Datastore::Kubernetes(s) => s.list_with(project).await,
            Datastore::File(s) => {
                let l = s.list::<K>()?;
                Ok(List {
                    items: l.items.into_iter().map(project).collect(),
                    resource_version: l.resource_version,
                    invalid: l.invalid,
                })
            }
        }
    }

    /// Runs every read of `batch` in one round trip where the backend
    /// can (etcd: one transaction, so all at one revision), else
    /// concurrently.
    pub async fn read(&self, batch: &ReadBatch) -> Result<ReadResults> {
        match self {
            Datastore::Etcd(s) => s.read_batch(batch).await,
            _ => batch::read_each(self, batch).await,
        }
    }

    /// Whether [`Datastore::commit`] is available (etcd only: Kubernetes
    /// has no multi-object transaction, the file backend no writes).
    pub fn has_transactions(&self) -> bool {
        matches!(self, Datastore::Etcd(_))
    }

    /// Applies every write of `batch` atomically, or none of them; returns
    /// the resourceVersion the written objects now have. Fails like the
    /// single-object calls (`AlreadyExists`, `Conflict`, `NotFound`) for
    /// the first write whose condition does not hold.
    pub async fn commit(&self, batch: &WriteBatch) -> Result<String> {
        match self {
            Datastore::Etcd(s) => s.commit(batch).await.map(|r| r.to_string()),
            Datastore::Kubernetes(_) => Err(DatastoreError::Invalid {
                what: "write batch".into(),
                message: "the kubernetes datastore has no multi-object \
                          transactions (check has_transactions())"
                    .into(),
            }),
            Datastore::File(s) => Err(s.read_only()),
        }
    }

    /// Stores a new object (metadata.resourceVersion must be unset);
    /// returns it with resourceVersion, uid and creationTimestamp set.
    /// `AlreadyExists` if the name is taken.
    pub async fn create<K: Object>(&self, obj: &K) -> Result<K> {
        let name = name_of(obj)?;
        check_name::<K>(&name)?;
        if let Some(rv) = object::resource_version_of(obj) {
            return Err(DatastoreError::Invalid {
                what: format!("create of {} {name:?}", kind::<K>()),
                message: format!(
                    "metadata.resourceVersion must not be set (it is {rv:?})"
                ),
            });
        }
        match self {
            Datastore::Etcd(s) => s.create(obj).await,
            Datastore::Kubernetes(s) => s.create(obj).await,
            Datastore::File(s) => Err(s.read_only()),
        }
    }

    /// Compare-and-swap: replaces the object if its stored
    /// resourceVersion still equals `obj`'s (which is required).
    /// `Conflict` if it changed, `NotFound` if it is gone.
    pub async fn update<K: Object>(&self, obj: &K) -> Result<K> {
        let name = name_of(obj)?;
        check_name::<K>(&name)?;
        let Some(rv) = object::resource_version_of(obj) else {
            return Err(DatastoreError::Invalid {
                what: format!("update of {} {name:?}", kind::<K>()),
                message: "metadata.resourceVersion is required (read the \
                          object, change it, write it back)"
                    .into(),
            });
        };
        match self {
            Datastore::Etcd(s) => s.update(obj, rv).await,
            Datastore::Kubernetes(s) => s.update(obj).await,
            Datastore::File(s) => Err(s.read_only()),
        }
    }

    /// Deletes object `name`; with `precondition` only if its
    /// resourceVersion is still that. `NotFound` if absent, `Conflict` if
    /// the precondition fails.
    pub async fn delete<K: Object>(
        &self,
        name: &str,
        precondition: Option<&str>,
    ) -> Result<()> {
        check_name::<K>(name)?;
        match self {
            Datastore::Etcd(s) => s.delete::<K>(name, precondition).await,
            Datastore::Kubernetes(s) => s.delete::<K>(name, precondition).await,
            Datastore::File(s) => Err(s.read_only()),
        }
    }

    /// Streams the changes to objects of type `K` made after
    /// `from_resource_version` (a list's or an object's resourceVersion;
    /// empty = from now), in revision order. The stream ends after an
    /// error item; `Compacted` means "list again", transient errors
    /// (`is_transient`) mean "resume from the last event's version".
    pub fn watch<K: Object>(
        &self,
        from_resource_version: &str,
    ) -> impl Stream<Item = Result<WatchEvent<K>>> + Send + Unpin + 'static
    {
        match self {
            Datastore::Etcd(s) => s.watch(from_resource_version),
            Datastore::Kubernetes(s) => s.watch(from_resource_version),
            Datastore::File(s) => s.watch(from_resource_version),
        }
    }

    /// [`watch`](Self::watch) with the Kubernetes backend's bookmarks, for
    /// the informer.
    pub(crate) fn watch_progress<K: Object>(
        &self,
        from_resource_version: &str,
    ) -> BoxStream<'static, Result<Progress<K>>> {
        match self {
            Datastore::Kubernetes(s) => s.watch_progress(from_resource_version),
            other => other
                .watch(from_resource_version)
                .map(|item| item.map(Progress::Event))
                .boxed(),
        }
    }
}

/// Rejects an empty name before it reaches a backend (an empty etcd key
/// suffix would address the whole prefix).
fn check_name<K: Object>(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') {
        return Err(DatastoreError::Invalid {
            what: format!("{} name {name:?}", kind::<K>()),
            message: "a name must be non-empty and contain no '/'".into(),
        });
    }
    Ok(())
}
