//! The file datastore's in-memory content and change log, without IO:
//! each successful load goes in, the watch events it implies come out.

use std::collections::{BTreeMap, VecDeque};

use serde_json::Value;

/// How many changes are kept for resuming watches; a watch from before
/// the oldest kept change gets `Compacted`.
const MAX_LOG: usize = 10_000;

/// What happened to one object in one load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Added,
    Modified,
    Deleted,
}

/// One logged change, at the revision of the load that made it.
#[derive(Debug, Clone)]
pub(crate) struct LogEntry {
    pub revision: u64,
    pub kind: String,
    pub name: String,
    pub change: Change,
    /// The new content; for `Deleted` the last content.
    pub value: Value,
}

/// One stored object and the revision of its last change.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub value: Value,
    pub revision: u64,
}

/// All objects of the last good load, keyed by (kind, name).
#[derive(Debug, Default)]
pub(crate) struct FileState {
    revision: u64,
    objects: BTreeMap<(String, String), Stored>,
    log: VecDeque<LogEntry>,
    /// Watches must start at or after this revision.
    compacted: u64,
}

impl FileState {
    /// The revision of the last load that changed anything (0 before the
    /// first load).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Replaces the content with `docs` (each with `kind` and
    /// `metadata.name`). Bumps the revision and logs the changes if there
    /// are any; returns how many objects changed.
    pub fn apply(&mut self, docs: Vec<Value>) -> Result<usize, String> {
        let mut next: BTreeMap<(String, String), Value> = BTreeMap::new();
        for (i, mut doc) in docs.into_iter().enumerate() {
            let kind = str_at(&doc, &["kind"])
                .ok_or_else(|| format!("document {}: no kind", i + 1))?;
            let name =
                str_at(&doc, &["metadata", "name"]).ok_or_else(|| {
                    format!("document {} ({kind}): no metadata.name", i + 1)
                })?;
            if let Some(meta) =
                doc.get_mut("metadata").and_then(Value::as_object_mut)
            {
                meta.remove("resourceVersion");
            }
            if next.insert((kind.clone(), name.clone()), doc).is_some() {
                return Err(format!(
                    "document {}: {kind} {name:?} is defined twice",
                    i + 1
                ));
            }
        }
        let revision = self.revision + 1;
        let mut changes = Vec::new();
        for ((kind, name), old) in &self.objects {
            if !next.contains_key(&(kind.clone(), name.clone())) {
                changes.push(entry(revision, kind, name, Change::Deleted, old));
            }
        }
        for ((kind, name), value) in &next {
            let key = (kind.clone(), name.clone());
            let change = match self.objects.get(&key) {
                None => Change::Added,
                Some(old) if old.value != *value => Change::Modified,
                Some(_) => continue,
            };
            let stored = Stored {
                value: value.clone(),
                revision,
            };
            changes.push(entry(revision, kind, name, change, &stored));
        }
        if changes.is_empty() {
            return Ok(0);
        }
        self.revision = revision;
        for c in &changes {
            let key = (c.kind.clone(), c.name.clone());
            match c.change {
                Change::Deleted => {
                    self.objects.remove(&key);
                }
                Change::Added | Change::Modified => {
                    self.objects.insert(
                        key,
                        Stored {
                            value: c.value.clone(),
                            revision,
                        },
                    );
                }
            }
        }
        let n = changes.len();
        self.log.extend(changes);
        while self.log.len() > MAX_LOG {
            if let Some(old) = self.log.pop_front() {
                self.compacted = self.compacted.max(old.revision);
            }
        }
        Ok(n)
    }

    /// One object.
    pub fn get(&self, kind: &str, name: &str) -> Option<&Stored> {
        self.objects.get(&(kind.to_string(), name.to_string()))
    }

    /// All objects of `kind`, by name.
    pub fn list<'a>(
        &'a self,
        kind: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Stored)> + 'a {
        self.objects
            .iter()
            .filter(move |((k, _), _)| k == kind)
            .map(|((_, name), stored)| (name.as_str(), stored))
    }

    /// The changes to `kind` after revision `from`, oldest first; `Err`
    /// when the log no longer reaches back to `from`.
    pub fn changes_after(
        &self,
        kind: &str,
        from: u64,
    ) -> Result<Vec<LogEntry>, ()> {
        if from < self.compacted {
            return Err(());
        }
        Ok(self
            .log
            .iter()
            .filter(|e| e.revision > from && e.kind == kind)
            .cloned()
            .collect())
    }
}

fn entry(
    revision: u64,
    kind: &str,
    name: &str,
    change: Change,
    stored: &Stored,
) -> LogEntry {
    LogEntry {
        revision,
        kind: kind.to_string(),
        name: name.to_string(),
        change,
        value: stored.value.clone(),
    }
}

/// The string at a JSON path, if non-empty.
fn str_at(doc: &Value, path: &[&str]) -> Option<String> {
    let mut v = doc;
    for p in path {
        v = v.get(p)?;
    }
    v.as_str().filter(|s| !s.is_empty()).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pool(name: &str, cidr: &str) -> Value {
        json!({"kind": "IPPool", "metadata": {"name": name},
               "spec": {"cidr": cidr}})
    }

    #[test]
    fn reload_logs_added_modified_deleted_once() {
        let mut st = FileState::default();
        assert_eq!(st.apply(vec![pool("a", "10.0.0.0/16")]), Ok(1));
        assert_eq!(st.revision(), 1);
        // Same content: no new revision.
        assert_eq!(st.apply(vec![pool("a", "10.0.0.0/16")]), Ok(0));
        assert_eq!(st.revision(), 1);
        let docs = vec![pool("a", "10.1.0.0/16"), pool("b", "10.2.0.0/16")];
        assert_eq!(st.apply(docs), Ok(2));
        assert_eq!(st.apply(vec![pool("b", "10.2.0.0/16")]), Ok(1));
        assert_eq!(st.revision(), 3);
        let log: Vec<_> = st
            .changes_after("IPPool", 0)
            .unwrap()
            .into_iter()
            .map(|e| (e.revision, e.name, e.change))
            .collect();
        assert_eq!(
            log,
            vec![
                (1, "a".into(), Change::Added),
                (2, "a".into(), Change::Modified),
                (2, "b".into(), Change::Added),
                (3, "a".into(), Change::Deleted),
            ]
        );
        assert_eq!(st.get("IPPool", "b").unwrap().revision, 2);
        assert!(st.changes_after("BGPPeer", 0).unwrap().is_empty());
        assert_eq!(st.changes_after("IPPool", 2).unwrap().len(), 1);
    }

    #[test]
    fn duplicate_and_nameless_documents_are_rejected() {
        let mut st = FileState::default();
        let err = st.apply(vec![pool("a", "x"), pool("a", "y")]).unwrap_err();
        assert_eq!(err, "document 2: IPPool \"a\" is defined twice");
        let err = st.apply(vec![json!({"kind": "IPPool"})]).unwrap_err();
        assert_eq!(err, "document 1 (IPPool): no metadata.name");
        assert_eq!(st.revision(), 0);
    }

    #[test]
    fn old_history_is_compacted() {
        let mut st = FileState::default();
        for i in 0..(MAX_LOG + 5) {
            st.apply(vec![pool("a", &i.to_string())]).unwrap();
        }
        assert!(st.changes_after("IPPool", 1).is_err());
        let latest = st.revision();
        assert!(st.changes_after("IPPool", latest - 10).is_ok());
    }
}
