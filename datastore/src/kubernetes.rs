//! Kubernetes backend: the margay.io/v1 CRDs through the apiserver.
//!
//! The apiserver does the compare-and-swap itself (a `replace` carrying a
//! stale resourceVersion gets HTTP 409); this module only maps its status
//! codes onto [`DatastoreError`] so callers see the same errors as on etcd.

use std::path::Path;
use std::time::Duration;

use futures::stream::{self, BoxStream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, PostParams,
    Preconditions, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::error::{DatastoreError, Result};
use crate::object::{self, List, Object, Progress, WatchEvent, kind, name_of};

const BACKEND: &str = "kubernetes";
/// Bound on opening a TCP/TLS connection to the apiserver.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Server-side lifetime of one watch request; callers re-watch after it
/// (list_and_watch does so transparently).
const WATCH_TIMEOUT_SECS: u32 = 290;

/// A handle on an apiserver; cheap to clone.
#[derive(Clone)]
pub struct KubeStore {
    client: Client,
}

impl std::fmt::Debug for KubeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeStore").finish_non_exhaustive()
    }
}

/// Which request an apiserver error answers: a 409 means AlreadyExists on
/// create and Conflict everywhere else.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    Other,
}

/// Objects per page of a list (the apiserver's own default chunk size,
/// as kubectl and client-go's pager use).
const LIST_PAGE: u32 = 500;

impl KubeStore {
    /// Connects with the kubeconfig at `path`, or when `None` with the
    /// usual search (KUBECONFIG, ~/.kube/config, then in-cluster).
    pub async fn connect(kubeconfig: Option<&Path>) -> Result<Self> {
        let mut config = match kubeconfig {
            None => {
                Config::infer().await.map_err(|e| DatastoreError::Invalid {
                    what: "kubernetes client configuration".into(),
                    message: format!(
                        "{e} (set KUBECONFIG, create ~/.kube/config, or run \
                         in a pod)"
                    ),
                })?
            }
            Some(path) => {
                let invalid =
                    |e: &dyn std::fmt::Display| DatastoreError::Invalid {
                        what: format!("kubeconfig {}", path.display()),
                        message: e.to_string(),
                    };
                let kc =
                    Kubeconfig::read_from(path).map_err(|e| invalid(&e))?;
                Config::from_custom_kubeconfig(
                    kc,
                    &KubeConfigOptions::default(),
                )
                .await
                .map_err(|e| invalid(&e))?
            }
        };
        config.connect_timeout = Some(CONNECT_TIMEOUT);
        let client =
            Client::try_from(config).map_err(|e| DatastoreError::Invalid {
                what: "kubernetes client configuration".into(),
                message: e.to_string(),
            })?;
        Ok(KubeStore { client })
    }

    /// Wraps an existing client (e.g. kube-fake-client in tests).
    pub fn from_client(client: Client) -> Self {
        KubeStore { client }
    }

    /// The underlying client, e.g. to read Secrets for BGP passwords.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn api<K: Object>(&self) -> Api<K> {
        Api::all(self.client.clone())
    }

    /// Reads one object.
    pub async fn get<K: Object>(&self, name: &str) -> Result<Option<K>> {
        self.dyn_api::<K>()
            .get_opt(name)
            .await
            .map_err(|e| map_err::<K>(e, Op::Other, name))?
            .map(typed::<K>)
            .transpose()
    }

    /// The same resources untyped: what the apiserver holds may not
    /// decode into `K` (`kubectl apply` past a loose schema), and one
    /// such object must not fail a whole list or watch.
    fn dyn_api<K: Object>(&self) -> Api<DynamicObject> {
        Api::all_with(self.client.clone(), &ApiResource::erase::<K>(&()))
    }

    /// Lists all objects of type `K`; those that do not decode are
    /// reported in `invalid`.
    pub async fn list<K: Object>(&self) -> Result<List<K>> {
        self.list_with(&|k| k).await
    }

    /// [`KubeStore::list`] in pages of [`LIST_PAGE`] (the apiserver
    /// serves every page from the first one's snapshot, through the
    /// continue token), keeping `project(object)` of each object as it is
    /// decoded: a kind is never held whole, decoded.
    pub async fn list_with<K: Object, V>(
        &self,
        project: &(dyn Fn(K) -> V + Send + Sync),
    ) -> Result<List<V>> {
        let api = self.dyn_api::<K>();
        let (mut items, mut invalid) = (Vec::new(), Vec::new());
        let mut params = ListParams::default().limit(LIST_PAGE);
        loop {
            let page = api
                .list(&params)
                .await
                .map_err(|e| map_err::<K>(e, Op::Other, ""))?;
            for o in page.items {
                object::sort_decoded(
                    typed::<K>(o),
                    project,
                    &mut items,
                    &mut invalid,
                )?;
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => {
                    return Ok(List {
                        resource_version: page
                            .metadata
                            .resource_version
                            .unwrap_or_default(),
                        items,
                        invalid,
                    });
                }
            }
        }
    }

    /// Creates an object; the apiserver sets uid, creationTimestamp and
    /// resourceVersion.
    pub async fn create<K: Object>(&self, obj: &K) -> Result<K> {
        let name = name_of(obj)?;
        self.api::<K>()
            .create(&PostParams::default(), obj)
            .await
            .map_err(|e| map_err::<K>(e, Op::Create, &name))
    }

    /// Replaces an object; the apiserver rejects a stale resourceVersion.
    pub async fn update<K: Object>(&self, obj: &K) -> Result<K> {
        let name = name_of(obj)?;
        self.api::<K>()
            .replace(&name, &PostParams::default(), obj)
            .await
            .map_err(|e| map_err::<K>(e, Op::Other, &name))
    }

    /// Deletes an object, with a resourceVersion delete precondition when
    /// `precondition` is set.
    pub async fn delete<K: Object>(
        &self,
        name: &str,
        precondition: Option<&str>,
    ) -> Result<()> {
        let dp = DeleteParams {
            preconditions: precondition.map(|rv| Preconditions {
                resource_version: Some(rv.to_string()),
                uid: None,
            }),
            ..DeleteParams::default()
        };
        self.api::<K>()
            .delete(name, &dp)
            .await
            .map_err(|e| map_err::<K>(e, Op::Other, name))?;
        Ok(())
    }

    /// Reads key `key` of the Secret `name` in `namespace` (a `get` on one
    /// Secret: BGPPeer `password.secretKeyRef`); `None` when the Secret or
    /// the key does not exist.
    pub async fn secret_key(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret = api.get_opt(name).await.map_err(|e| {
            map_err_kind(
                e,
                Op::Other,
                "Secret".into(),
                format!("{namespace}/{name}"),
            )
        })?;
        Ok(secret
            .and_then(|s| s.data)
            .and_then(|mut d| d.remove(key))
            .map(|v| v.0))
    }

    /// Streams changes after resourceVersion `from` through the watch API.
    /// Ends when the apiserver closes the watch (after about five minutes).
    pub fn watch<K: Object>(
        &self,
        from: &str,
    ) -> BoxStream<'static, Result<WatchEvent<K>>> {
        self.watch_progress(from)
            .filter_map(|item| async move {
                match item {
                    Ok(Progress::Event(ev)) => Some(Ok(ev)),
                    Ok(Progress::Bookmark(_)) => None,
                    Err(e) => Some(Err(e)),
                }
            })
            .boxed()
    }

    /// [`watch`](Self::watch) with the bookmarks the apiserver sends
    /// (kube's WatchParams ask for them; the watch cache sends one 2 s
    /// before the watch's timeout and about every minute).
    pub(crate) fn watch_progress<K: Object>(
        &self,
        from: &str,
    ) -> BoxStream<'static, Result<Progress<K>>> {
        let api = self.dyn_api::<K>();
        let from = if from.is_empty() { "0" } else { from }.to_string();
        let wp = WatchParams::default().timeout(WATCH_TIMEOUT_SECS);
        let open =
            async move {
                match api.watch(&wp, &from).await {
                    Ok(events) => events
                        .filter_map(move |ev| {
                            let item = map_watch_event::<K>(ev, &from);
                            async move { item }
                        })
                        .boxed(),
                    Err(e) => stream::once(async move {
                        Err(map_err::<K>(e, Op::Other, ""))
                    })
                    .boxed(),
                }
            };
        stream::once(open).flatten().boxed()
    }
}

// ===== helper functions =====

/// Decodes an untyped object into `K`; `Decode` (naming the object and
/// the field) when it does not fit.
fn typed<K: Object>(mut o: DynamicObject) -> Result<K> {
    // managedFields is the apiserver's record of field ownership (server-
    // side apply): margay never reads it, an update that omits it keeps
    // the server's, and it is often larger than the spec: a watch cache of
    // 20,000 blocks would hold it 20,000 times.
    o.metadata.managed_fields = None;
    let name = o.metadata.name.clone().unwrap_or_default();
    let value =
        serde_json::to_value(&o).map_err(|source| DatastoreError::Decode {
            kind: kind::<K>(),
            name: name.clone(),
            field: String::new(),
            source,
        })?;
    object::decode_value(value, &name)
}

/// Maps one kube watch event; `None` for a bookmark without a version.
/// An object that does not decode is a `Decode` item: the watch goes on.
fn map_watch_event<K: Object>(
    ev: kube::Result<kube::core::WatchEvent<DynamicObject>>,
    from: &str,
) -> Option<Result<Progress<K>>> {
    use kube::core::WatchEvent as KubeEvent;
    match ev {
        Ok(KubeEvent::Added(o)) => {
            Some(typed(o).map(|o| Progress::Event(WatchEvent::Added(o))))
        }
        Ok(KubeEvent::Modified(o)) => {
            Some(typed(o).map(|o| Progress::Event(WatchEvent::Modified(o))))
        }
        Ok(KubeEvent::Deleted(o)) => Some(
            typed(o)
                .map(|o| Progress::Event(WatchEvent::Deleted(o)))
                .map_err(object::deleted_undecodable),
        ),
        Ok(KubeEvent::Bookmark(b)) => {
            let rv = b.metadata.resource_version;
            (!rv.is_empty()).then(|| Ok(Progress::Bookmark(rv)))
        }
        // 410 Gone: "too old resource version", the apiserver's compaction.
        Ok(KubeEvent::Error(status)) if status.code == 410 => {
            Some(Err(DatastoreError::Compacted {
                kind: kind::<K>(),
                revision: from.to_string(),
            }))
        }
        Ok(KubeEvent::Error(status)) => {
            Some(Err(map_err::<K>(kube::Error::Api(status), Op::Other, "")))
        }
        Err(e) => Some(Err(map_err::<K>(e, Op::Other, ""))),
    }
}

/// Maps a kube client error for an object `name` of type `K`.
fn map_err<K: Object>(e: kube::Error, op: Op, name: &str) -> DatastoreError {
    map_err_kind(e, op, kind::<K>(), name.to_string())
}

/// Maps a kube client error for an object `name` of kind `kind`.
fn map_err_kind(
    e: kube::Error,
    op: Op,
    kind: String,
    name: String,
) -> DatastoreError {
    match e {
        kube::Error::Api(status) => match status.code {
            404 => DatastoreError::NotFound { kind, name },
            409 if op == Op::Create => {
                DatastoreError::AlreadyExists { kind, name }
            }
            409 => DatastoreError::Conflict { kind, name },
            410 => DatastoreError::Compacted {
                kind,
                revision: String::new(),
            },
            400 | 422 => DatastoreError::Invalid {
                what: format!("{kind} {name:?}"),
                message: status.message.clone(),
            },
            429 | 500 | 502 | 503 | 504 => DatastoreError::Unavailable {
                backend: BACKEND,
                source: Box::new(kube::Error::Api(status)),
            },
            _ => DatastoreError::Other {
                backend: BACKEND,
                message: kube::Error::Api(status).to_string(),
            },
        },
        kube::Error::SerdeError(source) => DatastoreError::Decode {
            kind,
            name,
            field: String::new(),
            source,
        },
        e @ (kube::Error::HyperError(_)
        | kube::Error::Service(_)
        | kube::Error::ReadEvents(_)) => DatastoreError::Unavailable {
            backend: BACKEND,
            source: Box::new(e),
        },
        e => DatastoreError::Other {
            backend: BACKEND,
            message: e.to_string(),
        },
    }
}
