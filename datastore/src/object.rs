//! What the datastore stores: the `Object` bound, lists and watch events,
//! and the JSON form shared by the etcd and file backends.

use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
use kube::core::ClusterResourceScope;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{DatastoreError, Result};

/// Any cluster-scoped resource type the datastore can hold: every
/// margay.io/v1 CRD type (`IPPool`, `BGPPeer`, ...) qualifies through the
/// blanket impl.
pub trait Object:
    Resource<DynamicType = (), Scope = ClusterResourceScope>
    + Serialize
    + DeserializeOwned
    + Clone
    + Debug
    + Send
    + Sync
    + 'static
{
}

impl<T> Object for T where
    T: Resource<DynamicType = (), Scope = ClusterResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug
        + Send
        + Sync
        + 'static
{
}

/// The result of `list`: the objects and the version of the whole list,
/// from which a watch sees every later change.
#[derive(Debug, Clone, PartialEq)]
pub struct List<K> {
    pub items: Vec<K>,
    pub resource_version: String,
    /// Stored objects of this kind that do not decode: left out of
    /// `items` (one bad object must not hide every good one), reported
    /// here so the caller can name, count and show them.
    pub invalid: Vec<InvalidObject>,
}

/// A stored object that does not decode into its type (written around
/// validation, e.g. raw into etcd or by `kubectl apply` past the CRD
/// schema, or a bad document of a file datastore). Defined with the
/// control protocol, which shows it (`margayctl node status`).
pub use margay_ctlproto::InvalidObject;

/// One change seen by a watch. Each object carries the revision of that
/// change in `metadata.resourceVersion` (for `Deleted`: the revision of the
/// deletion, with the last stored content), so a watch can resume from it.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent<K> {
    Added(K),
    Modified(K),
    Deleted(K),
}

/// An item of a watch as the informer reads it: a change, or a bookmark
/// (Kubernetes): no change, but the revision the watch has reached, so a
/// resumed watch starts there rather than at the last change, which the
/// apiserver may have forgotten (410 Gone, a full re-list).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Progress<K> {
    Event(WatchEvent<K>),
    Bookmark(String),
}

impl<K: Object> WatchEvent<K> {
    /// The object the event is about.
    pub fn object(&self) -> &K {
        match self {
            WatchEvent::Added(o)
            | WatchEvent::Modified(o)
            | WatchEvent::Deleted(o) => o,
        }
    }

    /// Consumes the event, returning its object.
    pub fn into_object(self) -> K {
        match self {
            WatchEvent::Added(o)
            | WatchEvent::Modified(o)
            | WatchEvent::Deleted(o) => o,
        }
    }

    /// The revision of this change: resume a watch from here.
    pub fn resource_version(&self) -> &str {
        self.object()
            .meta()
            .resource_version
            .as_deref()
            .unwrap_or_default()
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        self.object().meta().name.as_deref().unwrap_or_default()
    }
}

// ===== helper functions =====

/// The kind of `K`, e.g. "IPPool".
pub(crate) fn kind<K: Object>() -> String {
    K::kind(&()).into_owned()
}

/// The non-empty `metadata.name` of `obj`.
pub(crate) fn name_of<K: Object>(obj: &K) -> Result<String> {
    match obj.meta().name.as_deref() {
        Some(name) if !name.is_empty() => Ok(name.to_string()),
        _ => Err(DatastoreError::Invalid {
            what: kind::<K>(),
            message: "metadata.name is required".into(),
        }),
    }
}

/// `metadata.resourceVersion` of `obj`, if set and non-empty.
pub(crate) fn resource_version_of<K: Object>(obj: &K) -> Option<&str> {
    obj.meta()
        .resource_version
        .as_deref()
        .filter(|v| !v.is_empty())
}

/// Serializes `obj` to the JSON an apiserver would store: with apiVersion
/// and kind, without resourceVersion (the backend's revision is the truth).
pub(crate) fn to_stored_json<K: Object>(obj: &K) -> Result<Value> {
    let mut value =
        serde_json::to_value(obj).map_err(|e| DatastoreError::Invalid {
            what: kind::<K>(),
            message: format!("cannot serialize: {e}"),
        })?;
    let Some(map) = value.as_object_mut() else {
        return Err(DatastoreError::Invalid {
            what: kind::<K>(),
            message: "does not serialize to a JSON object".into(),
        });
    };
    map.insert("apiVersion".into(), K::api_version(&()).into());
    map.insert("kind".into(), K::kind(&()).into());
    if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        meta.remove("managedFields");
    }
    Ok(value)
}

/// Decodes stored JSON into `K`, setting its resourceVersion to `revision`.
pub(crate) fn from_stored_json<K: Object>(
    mut value: Value,
    name: &str,
    revision: &str,
) -> Result<K> {
    if let Some(map) = value.as_object_mut() {
        let meta = map
            .entry("metadata")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert("resourceVersion".into(), revision.into());
        }
    }
    decode_value(value, name)
}

/// Decodes `value` into `K`; a failure is `Decode`, naming the field.
pub(crate) fn decode_value<K: Object>(value: Value, name: &str) -> Result<K> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        DatastoreError::Decode {
            kind: kind::<K>(),
            name: name.to_string(),
            // serde_path_to_error says "." for the root.
            field: if path == "." { String::new() } else { path },
            source: e.into_inner(),
        }
    })
}

/// A watched delete whose last content does not decode is still a
/// delete: say which object is gone rather than report it bad once more.
pub(crate) fn deleted_undecodable(e: DatastoreError) -> DatastoreError {
    match e {
        DatastoreError::Decode { kind, name, .. } => {
            DatastoreError::DeletedUndecodable { kind, name }
        }
        other => other,
    }
}

/// Splits decode results into the good objects and the invalid ones;
/// any other error fails the whole list.
pub(crate) fn partition<K>(
    results: impl IntoIterator<Item = Result<K>>,
) -> Result<(Vec<K>, Vec<InvalidObject>)> {
    let mut items = Vec::new();
    let mut invalid = Vec::new();
    for r in results {
        sort_decoded(r, &|k| k, &mut items, &mut invalid)?;
    }
    Ok((items, invalid))
}

/// One decoded object of a list: `project(object)` into `items`, or into
/// `invalid` (logged) if it does not decode; other errors fail the list.
pub(crate) fn sort_decoded<K, V>(
    r: Result<K>,
    project: &(dyn Fn(K) -> V + Send + Sync),
    items: &mut Vec<V>,
    invalid: &mut Vec<InvalidObject>,
) -> Result<()> {
    match r {
        Ok(o) => items.push(project(o)),
        Err(e) => match e.invalid_object() {
            Some(bad) => {
                tracing::warn!(
                    kind = %bad.kind, name = %bad.name,
                    field = %bad.field, error = %bad.error,
                    "skipping an object that does not decode"
                );
                invalid.push(bad);
            }
            None => return Err(e),
        },
    }
    Ok(())
}

/// Sets what an apiserver sets on create: a fresh uid and the creation
/// time (both replace whatever the caller sent, as on Kubernetes).
pub(crate) fn set_create_metadata<K: Object>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.uid = Some(new_uid());
    meta.creation_timestamp = Some(now());
    meta.resource_version = None;
}

/// The current time, truncated to seconds as apiservers store it.
fn now() -> Time {
    let ts = k8s_openapi::jiff::Timestamp::now();
    Time(
        k8s_openapi::jiff::Timestamp::from_second(ts.as_second()).unwrap_or(ts),
    )
}

/// A random RFC 4122 version-4 UUID in its usual text form.
fn new_uid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // variant RFC 4122
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_is_version_4() {
        let a = new_uid();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
        assert_ne!(a, new_uid());
    }
}
