//! `Cache`: the objects of one kind as a [`list_and_watch`] stream says
//! they are, kept by applying each item (sans-IO: items in, state out).
//!
//! This is the reflector store of the informer pattern: a reader lists a
//! kind once and then applies each watch event to its copy, so that a
//! change to one object costs one event, never a re-list. The informer
//! lists again only when the watch cannot resume (compaction, 410), and
//! [`Cache::apply`] then replaces the whole content.
//!
//! A reader that needs only a few facts of each object keeps those
//! instead ([`Cache::projected`]): a node's bgpd needs, of each of the
//! cluster's blocks, only the addresses borrowed by that node. Such a
//! cache is fed by [`list_and_watch_with`] its [`Cache::projection`], so
//! that a list is projected object by object as it is decoded, never
//! held whole.
//!
//! Objects that do not decode are kept apart, per object ([`invalid`]):
//! one that becomes valid again, or is deleted, leaves that set, so a
//! reader can name and count exactly the bad objects that exist now.
//!
//! Consistency: after each applied item the cache equals the kind's
//! stored content at one revision ([`revision`]), the revision of the
//! last event, or of the last list. Different kinds are read by
//! different watches and so are at different revisions; a reader that
//! combines kinds sees each at a revision it really had, and converges
//! to the combination of the latest content once the events stop.
//!
//! [`list_and_watch`]: crate::Datastore::list_and_watch
//! [`list_and_watch_with`]: crate::Datastore::list_and_watch_with
//! [`invalid`]: Cache::invalid
//! [`revision`]: Cache::revision

use std::collections::BTreeMap;
use std::fmt::{self, Debug};
use std::sync::Arc;

use crate::error::Result;
use crate::informer::{ListWatchEvent, Projection};
use crate::object::{InvalidObject, Object, WatchEvent};

/// What [`Cache::projection`] makes of each listed object: its name and
/// what the cache keeps of it.
pub type Feed<K, V = K> = Projection<K, (String, V)>;

/// An item for [`Cache::apply`]: of
/// [`list_and_watch_with`](crate::Datastore::list_and_watch_with) the
/// cache's [`Feed`].
pub type CacheItem<K, V = K> = Result<ListWatchEvent<K, (String, V)>>;

/// What one applied item changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The whole content was replaced (first list, or a re-list after the
    /// watch could not resume): anything may have changed.
    Listed,
    /// The object of this name was added, changed, deleted, or became
    /// (or stopped being) invalid; [`Cache::get`] says what it is now.
    Object(String),
}

/// The objects of kind `K` (or what [`Cache::projected`] keeps of each,
/// `V`), by name, as last listed and watched.
pub struct Cache<K, V = K> {
    items: BTreeMap<String, V>,
    invalid: BTreeMap<String, InvalidObject>,
    /// The revision of the last list or event applied; `None` before the
    /// first list.
    revision: Option<String>,
    project: Projection<K, V>,
}

impl<K, V: Debug> Debug for Cache<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("items", &self.items)
            .field("invalid", &self.invalid)
            .field("revision", &self.revision)
            .finish_non_exhaustive()
    }
}

impl<K: Object> Default for Cache<K> {
    fn default() -> Self {
        Cache::projected(|k| k)
    }
}

impl<K: Object> Cache<K> {
    /// An empty cache of whole objects, not yet synced.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<K: Object, V> Cache<K, V> {
    /// An empty cache that keeps `project(object)` of each object.
    pub fn projected(project: impl Fn(K) -> V + Send + Sync + 'static) -> Self {
        Cache {
            items: BTreeMap::new(),
            invalid: BTreeMap::new(),
            revision: None,
            project: Arc::new(project),
        }
    }

    /// What the cache keeps of each object: give it to
    /// [`list_and_watch_with`](crate::Datastore::list_and_watch_with)
    /// to feed the cache.
    pub fn projection(&self) -> Feed<K, V>
    where
        K: 'static,
        V: 'static,
    {
        let project = self.project.clone();
        Arc::new(move |o: K| (name(&o).to_string(), project(o)))
    }

    /// Applies one item of a [`list_and_watch_with`](crate::Datastore::list_and_watch_with)
    /// stream of [`Cache::projection`] (of
    /// [`list_and_watch`](crate::Datastore::list_and_watch) for a cache
    /// of whole objects). `Ok(Some(change))` when the content changed, `Ok(None)`
    /// when it did not, and `Err` for an error that is about no object
    /// (the informer retries those itself; the caller logs them).
    pub fn apply(&mut self, item: CacheItem<K, V>) -> Result<Option<Change>> {
        match item {
            Ok(ListWatchEvent::Listed(list)) => {
                self.items = list.items.into_iter().collect();
                self.invalid = list
                    .invalid
                    .into_iter()
                    .map(|bad| (bad.name.clone(), bad))
                    .collect();
                self.revision = Some(list.resource_version);
                Ok(Some(Change::Listed))
            }
            Ok(ListWatchEvent::Event(ev)) => {
                self.revision = Some(ev.resource_version().to_string());
                let name = ev.name().to_string();
                self.invalid.remove(&name);
                match ev {
                    WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                        self.items.insert(name.clone(), (self.project)(o));
                    }
                    WatchEvent::Deleted(_) => {
                        self.items.remove(&name);
                    }
                }
                Ok(Some(Change::Object(name)))
            }
            Err(e) => {
                if let Some(bad) = e.invalid_object() {
                    // Its old content no longer holds: forget it, and keep
                    // it named as bad until it is fixed or deleted.
                    let name = bad.name.clone();
                    self.items.remove(&name);
                    if self.invalid.get(&name) == Some(&bad) {
                        return Ok(None);
                    }
                    self.invalid.insert(name.clone(), bad);
                    return Ok(Some(Change::Object(name)));
                }
                if let Some(name) = e.deleted_undecodable() {
                    let name = name.to_string();
                    let was = self.invalid.remove(&name).is_some()
                        | self.items.remove(&name).is_some();
                    return Ok(was.then_some(Change::Object(name)));
                }
                Err(e)
            }
        }
    }

    /// Whether the first list has been applied.
    pub fn synced(&self) -> bool {
        self.revision.is_some()
    }

    /// The revision the content is at (of the last list or event).
    pub fn revision(&self) -> Option<&str> {
        self.revision.as_deref()
    }

    /// The object `name`, if it exists and decodes.
    pub fn get(&self, name: &str) -> Option<&V> {
        self.items.get(name)
    }

    /// Every object that decodes, by name.
    pub fn items(&self) -> impl ExactSizeIterator<Item = &V> {
        self.items.values()
    }

    /// Every object that decodes, with its name, by name.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = (&str, &V)> {
        self.items.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// How many objects decode.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no object decodes.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The stored objects that do not decode, by name.
    pub fn invalid(&self) -> impl ExactSizeIterator<Item = &InvalidObject> {
        self.invalid.values()
    }

    /// The object `name` if it is stored but does not decode.
    pub fn invalid_object(&self, name: &str) -> Option<&InvalidObject> {
        self.invalid.get(name)
    }
}

/// The object's name (every stored object has one).
fn name<K: Object>(o: &K) -> &str {
    o.meta().name.as_deref().unwrap_or_default()
}

#[cfg(test)]
mod tests;
