//! Read-only file backend: a multi-document YAML of margay.io/v1 resources
//! (what a user would `kubectl apply`), validated on load, polled for
//! changes, with watch events for what each reload changed. A bad
//! document is left out and reported (`List::invalid`); the others load.

mod load;
mod state;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use futures::stream::{self, BoxStream, StreamExt};
use serde_json::Value;
use tokio::sync::watch;

pub use self::load::load_resources;
use self::state::{Change, FileState, LogEntry};
use crate::error::{DatastoreError, Result};
use crate::object::{
    self, InvalidObject, List, Object, WatchEvent, from_stored_json, kind,
};

/// How often the file is checked for changes.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Turns file content into validated JSON resources (each with `kind`
/// and `metadata.name`) plus the documents left out as invalid, or an
/// error text when the file as a whole cannot be used.
pub type Loader =
    fn(&str) -> std::result::Result<(Vec<Value>, Vec<InvalidObject>), String>;

/// A loaded file; cheap to clone. Reloading stops when the last clone
/// (and the last watch stream) is dropped.
#[derive(Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    loader: Loader,
    state: Mutex<FileState>,
    /// The documents of the last applied load that were left out.
    invalid: Mutex<Vec<InvalidObject>>,
    /// The bytes last looked at (good or bad), so unchanged content is
    /// neither re-parsed nor re-reported.
    last_content: Mutex<Option<Vec<u8>>>,
    last_error: Mutex<Option<String>>,
    /// Carries the revision; wakes watches after each changing reload.
    notify: watch::Sender<u64>,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl FileStore {
    /// Loads `path` with the margay-crds parser and validation and polls
    /// it every second. A file that does not load is an `Invalid` error.
    pub async fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, load_resources, DEFAULT_POLL_INTERVAL).await
    }

    /// Like [`FileStore::open`] with a custom loader and poll interval.
    pub async fn open_with(
        path: &Path,
        loader: Loader,
        poll_interval: Duration,
    ) -> Result<Self> {
        let (notify, _) = watch::channel(0);
        let store = FileStore {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                loader,
                state: Mutex::new(FileState::default()),
                invalid: Mutex::new(Vec::new()),
                last_content: Mutex::new(None),
                last_error: Mutex::new(None),
                notify,
            }),
        };
        store.reload().await?;
        tokio::spawn(poll(Arc::downgrade(&store.inner), poll_interval));
        Ok(store)
    }

    /// The file this store serves.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The error of the last reload if it failed (the previous content is
    /// still served), `None` once a reload succeeds.
    pub fn last_reload_error(&self) -> Option<String> {
        lock(&self.inner.last_error).clone()
    }

    /// Reads the file now; if its bytes changed, parses, validates and
    /// applies it. Returns how many objects changed. On error the previous
    /// content stays.
    pub async fn reload(&self) -> Result<usize> {
        let inner = &self.inner;
        let what = || format!("file datastore {}", inner.path.display());
        let bytes = match tokio::fs::read(&inner.path).await {
            Ok(bytes) => bytes,
            Err(e) => {
                // Forget the old bytes: when the file comes back, even
                // unchanged, it is applied again and clears this error.
                *lock(&inner.last_content) = None;
                let message = format!("cannot read the file: {e}");
                return Err(self.invalid(what(), message));
            }
        };
        {
            let mut last = lock(&inner.last_content);
            if last.as_deref() == Some(bytes.as_slice()) {
                return match lock(&inner.last_error).clone() {
                    Some(message) => Err(DatastoreError::Invalid {
                        what: what(),
                        message,
                    }),
                    None => Ok(0),
                };
            }
            *last = Some(bytes.clone());
        }
        let text = String::from_utf8(bytes)
            .map_err(|e| self.invalid(what(), format!("not UTF-8: {e}")))?;
        let (docs, invalid) = (inner.loader)(&text)
            .map_err(|message| self.invalid(what(), message))?;
        let (changed, revision) = {
            let mut state = lock(&inner.state);
            let changed = state
                .apply(docs)
                .map_err(|message| self.invalid(what(), message))?;
            (changed, state.revision())
        };
        for bad in &invalid {
            tracing::warn!(
                path = %inner.path.display(), kind = %bad.kind,
                name = %bad.name, field = %bad.field, error = %bad.error,
                "file datastore: document left out"
            );
        }
        *lock(&inner.invalid) = invalid;
        *lock(&inner.last_error) = None;
        if changed > 0 {
            tracing::info!(
                path = %inner.path.display(), changed, revision,
                "file datastore loaded"
            );
            inner.notify.send_replace(revision);
        }
        Ok(changed)
    }

    /// Records a load error (keeping the previous content) and returns it.
    fn invalid(&self, what: String, message: String) -> DatastoreError {
        *lock(&self.inner.last_error) = Some(message.clone());
        DatastoreError::Invalid { what, message }
    }

    /// Reads one object.
    pub fn get<K: Object>(&self, name: &str) -> Result<Option<K>> {
        let state = lock(&self.inner.state);
        state
            .get(&kind::<K>(), name)
            .map(|s| {
                from_stored_json(s.value.clone(), name, &s.revision.to_string())
            })
            .transpose()
    }

    /// Lists all objects of type `K`; the list's version is the revision
    /// of the last changing load. The documents of kind `K` that the last
    /// load left out are in `invalid`.
    pub fn list<K: Object>(&self) -> Result<List<K>> {
        let state = lock(&self.inner.state);
        let kind = kind::<K>();
        let (items, mut invalid) =
            object::partition(state.list(&kind).map(|(name, s)| {
                from_stored_json(s.value.clone(), name, &s.revision.to_string())
            }))?;
        invalid.extend(
            lock(&self.inner.invalid)
                .iter()
                .filter(|o| o.kind == kind)
                .cloned(),
        );
        Ok(List {
            items,
            resource_version: state.revision().to_string(),
            invalid,
        })
    }

    /// Every document the last load left out, of any kind (including
    /// those whose kind could not be read, reported as kind "document").
    pub fn invalid_documents(&self) -> Vec<InvalidObject> {
        lock(&self.inner.invalid).clone()
    }

    /// Every write is refused.
    pub fn read_only(&self) -> DatastoreError {
        DatastoreError::ReadOnly {
            path: self.inner.path.clone(),
        }
    }

    /// Streams the changes after revision `from` (empty: from now).
    pub fn watch<K: Object>(
        &self,
        from: &str,
    ) -> BoxStream<'static, Result<WatchEvent<K>>> {
        let start = if from.is_empty() {
            Ok(lock(&self.inner.state).revision())
        } else {
            from.parse::<u64>().map_err(|_| DatastoreError::Invalid {
                what: format!("watch of {}", kind::<K>()),
                message: format!(
                    "resourceVersion {from:?} is not a file datastore \
                     revision (a number)"
                ),
            })
        };
        let mut pending = VecDeque::new();
        let from = start.unwrap_or_else(|e| {
            pending.push_back(Err(e));
            0
        });
        let done = !pending.is_empty();
        let state = FileWatch::<K> {
            inner: self.inner.clone(),
            rx: self.inner.notify.subscribe(),
            from,
            done,
            pending,
        };
        stream::unfold(state, FileWatch::next).boxed()
    }
}

/// State of one file watch, driven by `stream::unfold`.
struct FileWatch<K> {
    inner: Arc<Inner>,
    rx: watch::Receiver<u64>,
    /// The revision delivered so far.
    from: u64,
    /// Set after a terminal error: end once `pending` is drained.
    done: bool,
    pending: VecDeque<Result<WatchEvent<K>>>,
}

impl<K: Object> FileWatch<K> {
    async fn next(mut self) -> Option<(Result<WatchEvent<K>>, Self)> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some((item, self));
            }
            if self.done {
                return None;
            }
            // Mark the current notification seen before scanning, so a
            // reload during the scan wakes the wait below.
            self.rx.borrow_and_update();
            let (changes, revision) = {
                let state = lock(&self.inner.state);
                let changes = state.changes_after(&kind::<K>(), self.from);
                (changes, state.revision())
            };
            match changes {
                Ok(changes) => {
                    self.pending.extend(changes.into_iter().map(to_event));
                    self.from = revision.max(self.from);
                }
                Err(()) => {
                    self.done = true;
                    self.pending.push_back(Err(DatastoreError::Compacted {
                        kind: kind::<K>(),
                        revision: self.from.to_string(),
                    }));
                }
            }
            if self.pending.is_empty() && self.rx.changed().await.is_err() {
                return None;
            }
        }
    }
}

/// A logged change as a typed watch event at its revision.
fn to_event<K: Object>(e: LogEntry) -> Result<WatchEvent<K>> {
    let obj = from_stored_json::<K>(e.value, &e.name, &e.revision.to_string())
        .map_err(|err| match e.change {
            Change::Deleted => crate::object::deleted_undecodable(err),
            _ => err,
        })?;
    Ok(match e.change {
        Change::Added => WatchEvent::Added(obj),
        Change::Modified => WatchEvent::Modified(obj),
        Change::Deleted => WatchEvent::Deleted(obj),
    })
}

/// Polls the file until the store is dropped. Errors are logged once per
/// distinct content (reload skips bytes it has already seen).
async fn poll(inner: Weak<Inner>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let store = FileStore { inner };
        let before = store.last_reload_error();
        if let Err(e) = store.reload().await
            && before.as_deref() != store.last_reload_error().as_deref()
        {
            tracing::warn!(
                error = %e,
                "file datastore: new content rejected, keeping the \
                 previous content"
            );
        }
    }
}

/// Locks a mutex, ignoring poisoning: the data is replaced wholesale on
/// each reload, so a panic elsewhere cannot leave it half-updated.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
