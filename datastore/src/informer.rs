//! `list_and_watch`: the informer pattern over any backend. Lists, then
//! watches from the list's version; resumes after transient errors from
//! the last event seen, and lists again when history was compacted.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, BoxStream, Stream, StreamExt};

use crate::datastore::Datastore;
use crate::error::{DatastoreError, Result};
use crate::object::{List, Object, Progress, WatchEvent, kind};

const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// An item of [`Datastore::list_and_watch`] (or, with the list's objects
/// already projected to `L`, of [`Datastore::list_and_watch_with`]).
#[derive(Debug, Clone, PartialEq)]
pub enum ListWatchEvent<K, L = K> {
    /// The full current content: first, and again after the watch could
    /// not resume (compaction). Replace your cache with it.
    Listed(List<L>),
    /// One change after the last `Listed`.
    Event(WatchEvent<K>),
}

/// What a reader keeps of each object of kind `K` (see
/// [`crate::Cache::projected`]).
pub type Projection<K, V> = Arc<dyn Fn(K) -> V + Send + Sync>;

impl Datastore {
    /// Lists objects of type `K`, then streams their changes forever.
    /// Transient errors (backend unreachable) are logged and retried with
    /// backoff, resuming from the last revision seen; a compacted history
    /// yields a fresh `Listed`. Other errors (an object that does not
    /// decode) are yielded as `Err` items and the stream goes on.
    pub fn list_and_watch<K: Object>(
        &self,
    ) -> impl Stream<Item = Result<ListWatchEvent<K>>> + Send + Unpin + 'static
    {
        self.list_and_watch_with(Arc::new(|k: K| k))
    }

    /// [`Datastore::list_and_watch`], with each listed object projected
    /// to what the reader keeps of it as it is decoded
    /// ([`Datastore::list_with`]): the whole kind is never held decoded
    /// at once (20,000 IPAMBlocks are some 40 MB decoded; what a node's
    /// bgpd keeps of them, a few). Events carry whole objects.
    pub fn list_and_watch_with<K: Object, V: Send + 'static>(
        &self,
        project: Projection<K, V>,
    ) -> impl Stream<Item = Result<ListWatchEvent<K, V>>> + Send + Unpin + 'static
    {
        let state = Informer::<K, V> {
            project,
            store: self.clone(),
            resource_version: None,
            watch: None,
            backoff: MIN_BACKOFF,
            failed: false,
        };
        stream::unfold(state, Informer::next).boxed()
    }
}

/// State of one informer stream.
struct Informer<K, V> {
    project: Projection<K, V>,
    store: Datastore,
    /// The revision delivered so far; `None` = list first.
    resource_version: Option<String>,
    watch: Option<BoxStream<'static, Result<Progress<K>>>>,
    backoff: Duration,
    /// The last watch item was an error: if the watch then ends, the
    /// error ended it (e.g. 403, RBAC lacks `watch`), so re-watch with
    /// backoff instead of at once, lest a misconfiguration flood the
    /// backend with requests and the caller with errors.
    failed: bool,
}

impl<K: Object, V: Send + 'static> Informer<K, V> {
    async fn next(mut self) -> Option<(Result<ListWatchEvent<K, V>>, Self)> {
        loop {
            let Some(rv) = self.resource_version.clone() else {
                match self.store.list_with::<K, V>(&*self.project).await {
                    Ok(list) => {
                        self.backoff = MIN_BACKOFF;
                        self.resource_version =
                            Some(list.resource_version.clone());
                        return Some((Ok(ListWatchEvent::Listed(list)), self));
                    }
                    Err(e) => {
                        let report = !e.is_transient();
                        self.retry_later(&e, "list").await;
                        if report {
                            return Some((Err(e), self));
                        }
                        continue;
                    }
                }
            };
            let watch = self
                .watch
                .get_or_insert_with(|| self.store.watch_progress::<K>(&rv));
            match watch.next().await {
                // Nothing changed up to `rv`: resume from there.
                Some(Ok(Progress::Bookmark(rv))) => {
                    self.resource_version = Some(rv);
                }
                Some(Ok(Progress::Event(ev))) => {
                    self.backoff = MIN_BACKOFF;
                    self.failed = false;
                    self.resource_version =
                        Some(ev.resource_version().to_string());
                    return Some((Ok(ListWatchEvent::Event(ev)), self));
                }
                Some(Err(DatastoreError::Compacted { revision, .. })) => {
                    tracing::info!(
                        kind = %kind::<K>(), %revision,
                        "watch history compacted; listing again"
                    );
                    self.watch = None;
                    self.resource_version = None;
                }
                Some(Err(e)) if e.is_transient() => {
                    self.watch = None;
                    self.retry_later(&e, "watch").await;
                }
                // A bad object: report it, the watch itself goes on.
                Some(Err(e)) => {
                    self.failed = true;
                    return Some((Err(e), self));
                }
                None => {
                    // The backend ended the watch (e.g. the apiserver's
                    // timeout): resume from the last revision.
                    self.watch = None;
                    if std::mem::take(&mut self.failed) {
                        self.back_off().await;
                    } else {
                        tokio::time::sleep(MIN_BACKOFF).await;
                    }
                }
            }
        }
    }

    /// Logs `e` and sleeps with exponential backoff.
    async fn retry_later(&mut self, e: &DatastoreError, what: &str) {
        tracing::warn!(
            kind = %kind::<K>(), error = %e, retry_in = ?self.backoff,
            "datastore {what} failed"
        );
        self.back_off().await;
    }

    /// Sleeps for the backoff, then doubles it (up to MAX_BACKOFF).
    async fn back_off(&mut self) {
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }
}
