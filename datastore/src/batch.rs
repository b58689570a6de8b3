//! Several requests in one round trip: a [`ReadBatch`] of gets and
//! (name-prefix) lists answered at one revision, and a [`WriteBatch`] of
//! creates, compare-and-swap updates and conditional deletes applied all
//! or nothing.
//!
//! On etcd each batch is one transaction (reads: range requests without
//! compares; writes: every op's compare, then every op). Other backends
//! run a read batch's reads concurrently; they have no multi-object
//! transaction, so [`Datastore::commit`] refuses there and callers keep
//! their one-object-at-a-time protocol ([`Datastore::has_transactions`]).

use std::any::Any;
use std::marker::PhantomData;

use futures::future::{BoxFuture, FutureExt, try_join_all};
use serde_json::Value;

use crate::datastore::Datastore;
use crate::error::{DatastoreError, Result};
use crate::object::{self, InvalidObject, Object, kind, name_of};

/// A decoded answer, typed again by its [`Slot`].
pub(crate) type Answer = Box<dyn Any + Send>;

/// Runs one read on a backend without transactions: the answer and the
/// objects a list left out because they do not decode.
type Fetch = for<'a> fn(
    &'a Datastore,
    &'a ReadReq,
) -> BoxFuture<'a, Result<(Answer, Vec<InvalidObject>)>>;

/// One read of a [`ReadBatch`].
pub(crate) struct ReadReq {
    /// The object name (get) or name prefix (list; "" = all).
    pub name: String,
    pub list: bool,
    /// The etcd key prefix of the type ("/margay/v1/<plural>/").
    pub type_prefix: String,
    /// Decodes etcd key-values into the slot's type.
    pub decode_etcd: crate::etcd::DecodeKvs,
    pub fetch: Fetch,
}

/// Where the answer to one read will be; redeem it with
/// [`ReadResults::take`].
#[derive(Debug)]
pub struct Slot<T> {
    index: usize,
    _t: PhantomData<fn() -> T>,
}

/// Reads to run together.
#[derive(Default)]
pub struct ReadBatch {
    pub(crate) reads: Vec<ReadReq>,
}

impl std::fmt::Debug for ReadBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadBatch")
            .field("reads", &self.reads.len())
            .finish()
    }
}

impl ReadBatch {
    /// An empty batch.
    pub fn new() -> Self {
        ReadBatch::default()
    }

    /// Reads object `name` of type `K` (None if absent).
    pub fn get<K: Object>(&mut self, name: &str) -> Slot<Option<K>> {
        self.push::<K, Option<K>>(name, false, fetch_get::<K>)
    }

    /// Reads every object of type `K` whose name starts with
    /// `name_prefix` ("" = all of them). Those that do not decode are
    /// left out and reported by [`ReadResults::invalid`].
    pub fn list<K: Object>(&mut self, name_prefix: &str) -> Slot<Vec<K>> {
        self.push::<K, Vec<K>>(name_prefix, true, fetch_list::<K>)
    }

    fn push<K: Object, T>(
        &mut self,
        name: &str,
        list: bool,
        fetch: Fetch,
    ) -> Slot<T> {
        self.reads.push(ReadReq {
            name: name.to_string(),
            list,
            type_prefix: crate::etcd::prefix::<K>(),
            decode_etcd: if list {
                crate::etcd::decode_list::<K>
            } else {
                crate::etcd::decode_get::<K>
            },
            fetch,
        });
        Slot {
            index: self.reads.len() - 1,
            _t: PhantomData,
        }
    }
}

fn fetch_get<'a, K: Object>(
    ds: &'a Datastore,
    r: &'a ReadReq,
) -> BoxFuture<'a, Result<(Answer, Vec<InvalidObject>)>> {
    async move {
        Ok((Box::new(ds.get::<K>(&r.name).await?) as Answer, Vec::new()))
    }
    .boxed()
}

fn fetch_list<'a, K: Object>(
    ds: &'a Datastore,
    r: &'a ReadReq,
) -> BoxFuture<'a, Result<(Answer, Vec<InvalidObject>)>> {
    async move {
        let list = ds.list::<K>().await?;
        let items: Vec<K> = list
            .items
            .into_iter()
            .filter(|o| {
                o.meta()
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with(&r.name))
            })
            .collect();
        let invalid = list
            .invalid
            .into_iter()
            .filter(|o| o.name.starts_with(&r.name))
            .collect();
        Ok((Box::new(items) as Answer, invalid))
    }
    .boxed()
}

/// The answers of a [`ReadBatch`].
#[derive(Debug)]
pub struct ReadResults {
    answers: Vec<Option<Answer>>,
    revision: Option<String>,
    invalid: Vec<InvalidObject>,
}

impl ReadResults {
    /// `revision`: the one revision every answer was read at, if the
    /// backend read them together; `invalid`: what the lists left out.
    pub(crate) fn new(
        answers: Vec<Answer>,
        revision: Option<String>,
        invalid: Vec<InvalidObject>,
    ) -> Self {
        ReadResults {
            answers: answers.into_iter().map(Some).collect(),
            revision,
            invalid,
        }
    }

    /// The objects the batch's lists left out because they do not
    /// decode (every list of the batch, every kind).
    pub fn invalid(&self) -> &[InvalidObject] {
        &self.invalid
    }

    /// The resourceVersion of the datastore at which every read of the
    /// batch was answered (etcd); None when the backend answered them
    /// separately. A watch from it sees every later change.
    pub fn revision(&self) -> Option<&str> {
        self.revision.as_deref()
    }

    /// The answer for `slot` (each slot is redeemed once, by value).
    pub fn take<T: 'static>(&mut self, slot: Slot<T>) -> T {
        let answer = self
            .answers
            .get_mut(slot.index)
            .and_then(Option::take)
            .expect("a slot of this batch, redeemed once");
        *answer.downcast::<T>().expect("the slot's own type")
    }
}

/// Runs a read batch on a backend without transactions.
pub(crate) async fn read_each(
    ds: &Datastore,
    batch: &ReadBatch,
) -> Result<ReadResults> {
    let got =
        try_join_all(batch.reads.iter().map(|r| (r.fetch)(ds, r))).await?;
    let (answers, invalid): (Vec<_>, Vec<_>) = got.into_iter().unzip();
    Ok(ReadResults::new(answers, None, invalid.concat()))
}

// ===== writes =====

/// What one write does.
#[derive(Debug, Clone)]
pub(crate) enum WriteOp {
    /// Only if the name is free.
    Create,
    /// Only if the stored revision is still this.
    Update(i64),
    /// Only if the stored revision is still this.
    Delete(i64),
}

/// One write of a [`WriteBatch`].
#[derive(Debug, Clone)]
pub(crate) struct WriteReq {
    pub kind: String,
    pub name: String,
    /// The etcd key of the object.
    pub key: String,
    pub op: WriteOp,
    /// The object as it will be stored (create, update).
    pub value: Option<Value>,
    /// Its metadata (uid and creationTimestamp of a create).
    pub meta: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
}

/// Writes applied together, all or nothing.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    pub(crate) writes: Vec<WriteReq>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        WriteBatch::default()
    }

    /// Whether the batch holds no write.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Creates `obj` (fails the batch with `AlreadyExists` if the name is
    /// taken). uid and creationTimestamp are set as `create` does.
    pub fn create<K: Object>(&mut self, obj: &K) -> Result<()> {
        let mut obj = obj.clone();
        if let Some(rv) = object::resource_version_of(&obj) {
            return Err(invalid::<K>(
                "create",
                &obj,
                format!(
                    "metadata.resourceVersion must not be set (it is {rv:?})"
                ),
            ));
        }
        object::set_create_metadata(&mut obj);
        self.push(&obj, WriteOp::Create, true)
    }

    /// Replaces `obj` if its resourceVersion (required) is still the
    /// stored one (else the batch fails with `Conflict`/`NotFound`).
    pub fn update<K: Object>(&mut self, obj: &K) -> Result<()> {
        let rev = required_revision(obj, "update")?;
        self.push(obj, WriteOp::Update(rev), true)
    }

    /// Deletes `obj` if its resourceVersion (required) is still the stored
    /// one.
    pub fn delete<K: Object>(&mut self, obj: &K) -> Result<()> {
        let rev = required_revision(obj, "delete")?;
        self.push(obj, WriteOp::Delete(rev), false)
    }

    fn push<K: Object>(
        &mut self,
        obj: &K,
        op: WriteOp,
        store: bool,
    ) -> Result<()> {
        let name = name_of(obj)?;
        if name.contains('/') {
            return Err(invalid::<K>(
                "write",
                obj,
                "a name must contain no '/'".into(),
            ));
        }
        let value = if store {
            Some(object::to_stored_json(obj)?)
        } else {
            None
        };
        self.writes.push(WriteReq {
            kind: kind::<K>(),
            key: crate::etcd::key::<K>(&name),
            name,
            op,
            value,
            meta: obj.meta().clone(),
        });
        Ok(())
    }
}

fn required_revision<K: Object>(obj: &K, op: &str) -> Result<i64> {
    object::resource_version_of(obj)
        .and_then(|rv| rv.parse::<i64>().ok())
        .ok_or_else(|| {
            invalid::<K>(
                op,
                obj,
                "metadata.resourceVersion is required (read the object, \
                 change it, write it back)"
                    .into(),
            )
        })
}

fn invalid<K: Object>(op: &str, obj: &K, message: String) -> DatastoreError {
    DatastoreError::Invalid {
        what: format!(
            "{op} of {} {:?} in a write batch",
            kind::<K>(),
            obj.meta().name.as_deref().unwrap_or_default()
        ),
        message,
    }
}
