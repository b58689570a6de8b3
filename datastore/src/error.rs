//! The one error type every backend maps its failures into.

use std::path::PathBuf;

use crate::object::InvalidObject;

/// A boxed error from a backend client library (etcd-client, kube, IO).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`DatastoreError`] as the default error.
pub type Result<T, E = DatastoreError> = std::result::Result<T, E>;

/// What went wrong talking to a datastore, independent of the backend.
///
/// The variants are the contract: a compare-and-swap failure is `Conflict`
/// on etcd (failed transaction) and on Kubernetes (HTTP 409) alike.
#[derive(Debug, thiserror::Error)]
pub enum DatastoreError {
    /// The object does not exist.
    #[error("{kind} {name:?} not found")]
    NotFound { kind: String, name: String },

    /// `create` of an object whose name is taken.
    #[error("{kind} {name:?} already exists")]
    AlreadyExists { kind: String, name: String },

    /// Compare-and-swap failed: the object changed since it was read.
    #[error(
        "{kind} {name:?} was modified concurrently (its resourceVersion \
         changed); read it again and retry"
    )]
    Conflict { kind: String, name: String },

    /// A write against the read-only file datastore.
    #[error(
        "the file datastore at {} is read-only; edit the file instead, or \
         use --datastore etcd:URL or --datastore kubernetes to write",
        path.display()
    )]
    ReadOnly { path: PathBuf },

    /// The backend could not be reached or timed out; try again later.
    #[error(
        "the {backend} datastore is unavailable (try again later): {source}"
    )]
    Unavailable {
        backend: &'static str,
        #[source]
        source: BoxError,
    },

    /// A watch cannot resume from `revision` because the backend no longer
    /// keeps that history; list again and watch from the list's version.
    #[error(
        "cannot watch {kind} from resourceVersion {revision}: that history \
         was compacted; list again"
    )]
    Compacted { kind: String, revision: String },

    /// Stored data that does not decode into the Rust type; `field` is
    /// the dotted path of the field at fault ("" for the whole object).
    #[error(
        "cannot decode {kind} {name:?} read from the datastore{}: {source}",
        if field.is_empty() { String::new() } else { format!(" (field {field})") }
    )]
    Decode {
        kind: String,
        name: String,
        field: String,
        #[source]
        source: serde_json::Error,
    },

    /// A watch saw the deletion of an object whose last stored content
    /// does not decode (it was reported as a `Decode` before): the object
    /// is gone, and whoever listed it as invalid must forget it.
    #[error("{kind} {name:?}, which did not decode, was deleted")]
    DeletedUndecodable { kind: String, name: String },

    /// Input rejected before or by the backend (validation failures of a
    /// file load, a missing name, a missing resourceVersion on update).
    #[error("invalid {what}: {message}")]
    Invalid { what: String, message: String },

    /// Anything else the backend reported.
    #[error("{backend} datastore error: {message}")]
    Other {
        backend: &'static str,
        message: String,
    },
}

impl DatastoreError {
    /// True when retrying the same request later may succeed (the backend
    /// was unreachable or overloaded), false for answers that will not
    /// change by themselves.
    pub fn is_transient(&self) -> bool {
        matches!(self, DatastoreError::Unavailable { .. })
    }

    /// True for `NotFound`.
    pub fn is_not_found(&self) -> bool {
        matches!(self, DatastoreError::NotFound { .. })
    }

    /// True for `Conflict` (a compare-and-swap lost a race).
    pub fn is_conflict(&self) -> bool {
        matches!(self, DatastoreError::Conflict { .. })
    }

    /// True for `AlreadyExists`.
    pub fn is_already_exists(&self) -> bool {
        matches!(self, DatastoreError::AlreadyExists { .. })
    }

    /// For `Decode`: the object that does not decode, as list and watch
    /// report it (skip it, keep serving the others).
    pub fn invalid_object(&self) -> Option<InvalidObject> {
        match self {
            DatastoreError::Decode {
                kind,
                name,
                field,
                source,
            } => Some(InvalidObject {
                kind: kind.clone(),
                name: name.clone(),
                field: field.clone(),
                error: source.to_string(),
            }),
            _ => None,
        }
    }

    /// For `DeletedUndecodable`: the name of the object that is gone.
    pub fn deleted_undecodable(&self) -> Option<&str> {
        match self {
            DatastoreError::DeletedUndecodable { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The object (kind, name) a `NotFound`, `AlreadyExists` or `Conflict`
    /// is about: which write of a batch failed.
    pub fn subject(&self) -> Option<(&str, &str)> {
        match self {
            DatastoreError::NotFound { kind, name }
            | DatastoreError::AlreadyExists { kind, name }
            | DatastoreError::Conflict { kind, name } => Some((kind, name)),
            _ => None,
        }
    }
}
