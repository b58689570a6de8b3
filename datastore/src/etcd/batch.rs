//! [`ReadBatch`] and [`WriteBatch`] on etcd: one transaction each.

use etcd_client::{
    Compare, CompareOp, GetOptions, KeyValue, Txn, TxnOp, TxnOpResponse,
};

use super::{EtcdStore, ServerMeta, map_err, with_timeout};
use crate::batch::{
    Answer, ReadBatch, ReadResults, WriteBatch, WriteOp, WriteReq,
};
use crate::error::{DatastoreError, Result};
use crate::object::{InvalidObject, Object, partition};

/// Decodes the key-values of one read into its answer; a list puts the
/// objects that do not decode into the last argument.
pub(crate) type DecodeKvs = fn(
    &EtcdStore,
    &[KeyValue],
    &str,
    &mut Vec<InvalidObject>,
) -> Result<Answer>;

/// A get's answer: `Option<K>`.
pub(crate) fn decode_get<K: Object>(
    store: &EtcdStore,
    kvs: &[KeyValue],
    prefix: &str,
    _: &mut Vec<InvalidObject>,
) -> Result<Answer> {
    let obj: Option<K> = kvs
        .first()
        .map(|kv| store.decode::<K>(kv, &name_in(kv, prefix)))
        .transpose()?;
    Ok(Box::new(obj))
}

/// A list's answer: `Vec<K>` of the objects that decode.
pub(crate) fn decode_list<K: Object>(
    store: &EtcdStore,
    kvs: &[KeyValue],
    prefix: &str,
    invalid: &mut Vec<InvalidObject>,
) -> Result<Answer> {
    let (items, mut bad) = partition(
        kvs.iter()
            .map(|kv| store.decode::<K>(kv, &name_in(kv, prefix))),
    )?;
    invalid.append(&mut bad);
    Ok(Box::new(items))
}

fn name_in(kv: &KeyValue, prefix: &str) -> String {
    let key = String::from_utf8_lossy(kv.key());
    key.strip_prefix(prefix).unwrap_or(&key).to_string()
}

impl EtcdStore {
    /// Every read of `batch` in one transaction, so at one revision.
    #[tracing::instrument(level = "debug", name = "etcd_read_batch", skip_all,
        fields(reads = batch.reads.len()))]
    pub(crate) async fn read_batch(
        &self,
        batch: &ReadBatch,
    ) -> Result<ReadResults> {
        let ops: Vec<TxnOp> = batch
            .reads
            .iter()
            .map(|r| {
                let key = format!("{}{}", r.type_prefix, r.name);
                let opts = r.list.then(|| GetOptions::new().with_prefix());
                TxnOp::get(key, opts)
            })
            .collect();
        let resp = self.txn(Txn::new().and_then(ops)).await?;
        let mut answers = Vec::with_capacity(batch.reads.len());
        let mut invalid = Vec::new();
        for (r, op) in batch.reads.iter().zip(resp.op_responses()) {
            let TxnOpResponse::Get(got) = op else {
                return Err(unexpected("a read batch"));
            };
            answers.push((r.decode_etcd)(
                self,
                got.kvs(),
                &r.type_prefix,
                &mut invalid,
            )?);
        }
        let revision = resp.header().map(|h| h.revision().to_string());
        Ok(ReadResults::new(answers, revision, invalid))
    }

    /// Applies every write of `batch` or none; returns the revision of
    /// the writes. The first write whose condition failed names the error
    /// (`AlreadyExists`, `Conflict` or `NotFound`).
    #[tracing::instrument(level = "debug", name = "etcd_commit", skip_all,
        fields(writes = batch.writes.len()))]
    pub(crate) async fn commit(&self, batch: &WriteBatch) -> Result<i64> {
        let mut compares = Vec::new();
        let mut ops = Vec::new();
        let mut stored = Vec::new();
        for w in &batch.writes {
            let key = w.key.as_str();
            let (cmp, meta) = match w.op {
                WriteOp::Create => (
                    Compare::create_revision(key, CompareOp::Equal, 0),
                    Some(ServerMeta {
                        uid: w.meta.uid.clone(),
                        created: w.meta.creation_timestamp.clone(),
                    }),
                ),
                WriteOp::Update(rev) => (
                    Compare::mod_revision(key, CompareOp::Equal, rev),
                    Some(self.raw_server_meta(w, rev).await?),
                ),
                WriteOp::Delete(rev) => {
                    (Compare::mod_revision(key, CompareOp::Equal, rev), None)
                }
            };
            compares.push(cmp);
            match (&w.value, &meta) {
                (Some(value), Some(meta)) => {
                    let bytes = encode_with(value, meta)?;
                    ops.push(TxnOp::put(key, bytes, None));
                }
                _ => ops.push(TxnOp::delete(key, None)),
            }
            stored.push(meta);
        }
        let checks: Vec<TxnOp> = batch
            .writes
            .iter()
            .map(|w| TxnOp::get(w.key.as_str(), None))
            .collect();
        let txn = Txn::new().when(compares).and_then(ops).or_else(checks);
        let resp = self.txn(txn).await?;
        if !resp.succeeded() {
            return Err(first_failure(&batch.writes, &resp.op_responses()));
        }
        let rev = resp.header().map_or(0, |h| h.revision());
        for (w, meta) in batch.writes.iter().zip(stored) {
            match meta {
                Some(m) => {
                    let mut om = w.meta.clone();
                    om.uid = m.uid;
                    om.creation_timestamp = m.created;
                    self.meta.record(&w.key, rev, &om);
                }
                None => self.meta.forget(&w.key),
            }
        }
        Ok(rev)
    }

    /// [`EtcdStore::server_meta`] for a type-erased write.
    async fn raw_server_meta(
        &self,
        w: &WriteReq,
        rev: i64,
    ) -> Result<ServerMeta> {
        if let Some(m) = self.meta.at(&w.key, rev) {
            return Ok(m);
        }
        let mut kv = self.client.kv_client();
        let resp = with_timeout(kv.get(w.key.as_str(), None))
            .await
            .map_err(map_err)?;
        let Some(found) = resp.kvs().first() else {
            return Err(DatastoreError::NotFound {
                kind: w.kind.clone(),
                name: w.name.clone(),
            });
        };
        if found.mod_revision() != rev {
            return Err(DatastoreError::Conflict {
                kind: w.kind.clone(),
                name: w.name.clone(),
            });
        }
        let value: serde_json::Value = serde_json::from_slice(found.value())
            .map_err(|source| DatastoreError::Decode {
                kind: w.kind.clone(),
                name: w.name.clone(),
                field: String::new(),
                source,
            })?;
        let meta = &value["metadata"];
        Ok(ServerMeta {
            uid: meta["uid"].as_str().map(str::to_string),
            created: serde_json::from_value(meta["creationTimestamp"].clone())
                .ok(),
        })
    }
}

/// The stored bytes of `value` with the server's uid and
/// creationTimestamp.
fn encode_with(value: &serde_json::Value, m: &ServerMeta) -> Result<Vec<u8>> {
    let mut value = value.clone();
    if let Some(meta) = value
        .get_mut("metadata")
        .and_then(serde_json::Value::as_object_mut)
    {
        let set = |meta: &mut serde_json::Map<_, _>, k: &str, v| match v {
            Some(v) => {
                meta.insert(k.to_string(), v);
            }
            None => {
                meta.remove(k);
            }
        };
        set(meta, "uid", m.uid.clone().map(Into::into));
        set(
            meta,
            "creationTimestamp",
            m.created
                .as_ref()
                .and_then(|t| serde_json::to_value(t).ok()),
        );
    }
    serde_json::to_vec(&value).map_err(|e| DatastoreError::Invalid {
        what: "write batch".into(),
        message: format!("cannot serialize: {e}"),
    })
}

/// The error of the first write whose compare failed, from the `or_else`
/// gets (one per write, in order).
fn first_failure(
    writes: &[WriteReq],
    checks: &[TxnOpResponse],
) -> DatastoreError {
    for (w, check) in writes.iter().zip(checks) {
        let current = match check {
            TxnOpResponse::Get(g) => g.kvs().first(),
            _ => return unexpected("a write batch"),
        };
        let (kind, name) = (w.kind.clone(), w.name.clone());
        match (&w.op, current) {
            (WriteOp::Create, Some(_)) => {
                return DatastoreError::AlreadyExists { kind, name };
            }
            (WriteOp::Update(_) | WriteOp::Delete(_), None) => {
                return DatastoreError::NotFound { kind, name };
            }
            (WriteOp::Update(rev) | WriteOp::Delete(rev), Some(kv))
                if kv.mod_revision() != *rev =>
            {
                return DatastoreError::Conflict { kind, name };
            }
            _ => {}
        }
    }
    // Every condition holds again: the store moved on and back between
    // the transaction and its failure branch. Retrying is right.
    match writes.first() {
        Some(w) => DatastoreError::Conflict {
            kind: w.kind.clone(),
            name: w.name.clone(),
        },
        None => unexpected("an empty write batch"),
    }
}

fn unexpected(what: &str) -> DatastoreError {
    DatastoreError::Other {
        backend: super::BACKEND,
        message: format!("etcd answered {what} with an unexpected response"),
    }
}
