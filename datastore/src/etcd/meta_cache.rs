//! The server-owned metadata (uid, creationTimestamp) of recently read or
//! written keys, each valid at one mod revision.
//!
//! `update` must carry these over from the stored object, which used to
//! cost a read before every write. A key's content at a given mod revision
//! never changes, so when the update's compare-and-swap is on the very
//! revision cached here, the cached values are exactly the stored ones and
//! the read can be skipped; a miss falls back to reading.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

/// Entries kept before the cache starts over (a bound for long-running
/// processes that list many objects; a miss only costs one read).
const CAPACITY: usize = 4096;

/// uid and creationTimestamp of one key at one revision.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServerMeta {
    pub uid: Option<String>,
    pub created: Option<Time>,
}

/// key -> (mod revision, metadata at that revision).
#[derive(Debug, Default)]
pub(crate) struct MetaCache {
    entries: Mutex<HashMap<String, (i64, ServerMeta)>>,
}

impl MetaCache {
    /// Remembers `meta` as the metadata of `key` at `revision`.
    pub fn record(&self, key: &str, revision: i64, meta: &ObjectMeta) {
        let mut entries = self.entries.lock().expect("not poisoned");
        if entries.len() >= CAPACITY && !entries.contains_key(key) {
            entries.clear();
        }
        let server = ServerMeta {
            uid: meta.uid.clone(),
            created: meta.creation_timestamp.clone(),
        };
        entries.insert(key.to_string(), (revision, server));
    }

    /// The metadata of `key` if it is known at exactly `revision`.
    pub fn at(&self, key: &str, revision: i64) -> Option<ServerMeta> {
        let entries = self.entries.lock().expect("not poisoned");
        entries
            .get(key)
            .filter(|(rev, _)| *rev == revision)
            .map(|(_, m)| m.clone())
    }

    /// Forgets `key` (deleted).
    pub fn forget(&self, key: &str) {
        self.entries.lock().expect("not poisoned").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_only_at_the_recorded_revision() {
        let cache = MetaCache::default();
        let meta = ObjectMeta {
            uid: Some("u1".into()),
            ..ObjectMeta::default()
        };
        cache.record("/k", 7, &meta);
        assert_eq!(cache.at("/k", 7).unwrap().uid.as_deref(), Some("u1"));
        assert_eq!(cache.at("/k", 8), None);
        assert_eq!(cache.at("/other", 7), None);
        cache.forget("/k");
        assert_eq!(cache.at("/k", 7), None);
    }

    #[test]
    fn starts_over_when_full() {
        let cache = MetaCache::default();
        for i in 0..CAPACITY {
            cache.record(&format!("/k{i}"), 1, &ObjectMeta::default());
        }
        cache.record("/new", 1, &ObjectMeta::default());
        assert!(cache.at("/new", 1).is_some());
        assert!(cache.at("/k0", 1).is_none());
    }
}
