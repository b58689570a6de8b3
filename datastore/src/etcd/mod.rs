//! etcd v3 backend.
//!
//! Objects live at `/margay/v1/<plural>/<name>` as the JSON an apiserver
//! would return, minus `metadata.resourceVersion`: that is the key's
//! `mod_revision`, set on every read. Writes are transactions comparing
//! `create_revision` (create) or `mod_revision` (update, conditional
//! delete), so a lost race is a failed compare, reported as `Conflict`.

mod batch;
mod meta_cache;
mod watch;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions,
    Identity, KeyValue, Txn, TxnOp, TxnOpResponse,
};

pub(crate) use self::batch::{DecodeKvs, decode_get, decode_list};
use self::meta_cache::{MetaCache, ServerMeta};
use crate::error::{DatastoreError, Result};
use crate::object::{
    self, List, Object, from_stored_json, kind, name_of, to_stored_json,
};
use crate::spec::{EtcdSpec, EtcdTls};

/// Root of every margay key.
pub const KEY_ROOT: &str = "/margay/v1";
/// Bound on establishing a connection to one endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Bound on every unary request, so a dead etcd answers `Unavailable`
/// instead of hanging (the client waits for a ready endpoint otherwise).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const BACKEND: &str = "etcd";

/// A handle on an etcd cluster; cheap to clone.
#[derive(Clone)]
pub struct EtcdStore {
    // Boxed behind an Arc: the client is several KB and `Datastore`
    // holds it by value next to much smaller variants.
    client: Arc<Client>,
    /// Server metadata of keys seen lately, so updates need no extra read.
    meta: Arc<MetaCache>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore").finish_non_exhaustive()
    }
}

/// The etcd key of object `name` of type `K`.
pub fn key<K: Object>(name: &str) -> String {
    format!("{}{name}", prefix::<K>())
}

/// Objects per Range request of a list: a page of large objects (an
/// IPAMBlock with every address allocated is a few KiB) stays well under
/// the client's 4 MiB default message limit.
const LIST_PAGE: i64 = 128;

/// The largest list page accepted: 128 objects of up to 256 KiB each
/// (etcd itself stores values of up to 1.5 MiB).
const LIST_MESSAGE_LIMIT: usize = 32 << 20;

/// The key prefix of all objects of type `K`, ending in '/'.
pub(crate) fn prefix<K: Object>() -> String {
    format!("{KEY_ROOT}/{}/", K::plural(&()))
}

impl EtcdStore {
    /// Creates a client for `spec.endpoints` (e.g. `http://127.0.0.1:2379`).
    /// Connections are made lazily; requests to an unreachable cluster
    /// fail with `Unavailable` after a few seconds.
    #[tracing::instrument(level = "debug", name = "etcd_connect", skip_all)]
    pub async fn connect(spec: &EtcdSpec) -> Result<Self> {
        let endpoints = &spec.endpoints;
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        if let Some(tls) = tls_options(&spec.tls)? {
            opts = opts.with_tls(tls);
        }
        let client = with_timeout(Client::connect(endpoints, Some(opts)))
            .await
            .map_err(|e| match e {
                // A malformed endpoint is a usage error, not an outage.
                etcd_client::Error::InvalidUri(_)
                | etcd_client::Error::InvalidArgs(_) => {
                    DatastoreError::Invalid {
                        what: format!("etcd endpoints {endpoints:?}"),
                        message: e.to_string(),
                    }
                }
                e => map_err(e),
            })?;
        Ok(EtcdStore {
            client: Arc::new(client),
            meta: Arc::default(),
        })
    }

    /// Reads one object.
    #[tracing::instrument(level = "debug", name = "etcd_get", skip_all,
        fields(key = %key::<K>(name)))]
    pub async fn get<K: Object>(&self, name: &str) -> Result<Option<K>> {
        let mut kv = self.client.kv_client();
        let resp = with_timeout(kv.get(key::<K>(name), None))
            .await
            .map_err(map_err)?;
        resp.kvs()
            .first()
            .map(|kv| self.decode::<K>(kv, name))
            .transpose()
    }

    /// Reads all objects of type `K` at one revision; those that do not
    /// decode are reported in `invalid`.
    #[tracing::instrument(level = "debug", name = "etcd_list", skip_all,
        fields(prefix = %prefix::<K>()))]
    pub async fn list<K: Object>(&self) -> Result<List<K>> {
        self.list_with(&|k| k).await
    }

    /// [`EtcdStore::list`], keeping `project(object)` of each object as
    /// it is decoded.
    pub async fn list_with<K: Object, V>(
        &self,
        project: &(dyn Fn(K) -> V + Send + Sync),
    ) -> Result<List<V>> {
        let mut kv = self
            .client
            .kv_client()
            .max_decoding_message_size(LIST_MESSAGE_LIMIT);
        let pfx = prefix::<K>();
        // The prefix ends in '/': the range ends just past it.
        let end = format!("{}0", pfx.trim_end_matches('/'));
        let mut from = pfx.clone().into_bytes();
        let mut revision = 0;
        let (mut items, mut invalid) = (Vec::new(), Vec::new());
        // In pages at the first page's revision: a whole kind in one
        // response passes the client's 4 MiB message limit (20,000
        // IPAMBlocks are 18 MB), and one page at a time, each object
        // projected as it is decoded, keeps the peak memory of a list
        // small.
        loop {
            let mut opts = GetOptions::new()
                .with_range(end.as_str())
                .with_limit(LIST_PAGE);
            if revision > 0 {
                opts = opts.with_revision(revision);
            }
            let resp = with_timeout(kv.get(from.clone(), Some(opts)))
                .await
                .map_err(map_err)?;
            if revision == 0 {
                revision = resp.header().map_or(0, |h| h.revision());
            }
            for kv in resp.kvs() {
                let key = String::from_utf8_lossy(kv.key());
                let name = key.strip_prefix(&pfx).unwrap_or(&key);
                let obj = self.decode::<K>(kv, name);
                object::sort_decoded(obj, project, &mut items, &mut invalid)?;
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    // The next key after the last one.
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => break,
            }
        }
        Ok(List {
            items,
            resource_version: revision.to_string(),
            invalid,
        })
    }

    /// Stores a new object; `AlreadyExists` if the name is taken.
    pub async fn create<K: Object>(&self, obj: &K) -> Result<K> {
        let name = name_of(obj)?;
        let mut obj = obj.clone();
        object::set_create_metadata(&mut obj);
        let key = key::<K>(&name);
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.as_str(), encode(&obj)?, None)]);
        let resp = self.txn(txn).await?;
        if !resp.succeeded() {
            return Err(DatastoreError::AlreadyExists {
                kind: kind::<K>(),
                name,
            });
        }
        let rev = header_revision(&resp);
        self.meta.record(&key, rev, obj.meta());
        obj.meta_mut().resource_version = Some(rev.to_string());
        Ok(obj)
    }

    /// Replaces an object if its revision is still `resourceVersion`.
    pub async fn update<K: Object>(&self, obj: &K, rv: &str) -> Result<K> {
        let name = name_of(obj)?;
        let rev = parse_revision::<K>(rv, &name)?;
        let key = key::<K>(&name);
        let server = self.server_meta::<K>(&key, &name, rev).await?;
        let mut obj = obj.clone();
        obj.meta_mut().uid = server.uid;
        obj.meta_mut().creation_timestamp = server.created;
        let txn = Txn::new()
            .when([Compare::mod_revision(key.as_str(), CompareOp::Equal, rev)])
            .and_then([TxnOp::put(key.as_str(), encode(&obj)?, None)])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let resp = self.txn(txn).await?;
        if !resp.succeeded() {
            return Err(failed_compare::<K>(&resp, &name));
        }
        let new_rev = header_revision(&resp);
        self.meta.record(&key, new_rev, obj.meta());
        obj.meta_mut().resource_version = Some(new_rev.to_string());
        Ok(obj)
    }

    /// uid and creationTimestamp of `key` as stored at `rev`. They belong
    /// to the server, so an update carries them over from the stored
    /// object; the update's compare on `rev` guarantees that object is
    /// the one described here. Cached from an earlier read or write of
    /// that very revision, else read (`Conflict` if the key has moved on).
    async fn server_meta<K: Object>(
        &self,
        key: &str,
        name: &str,
        rev: i64,
    ) -> Result<ServerMeta> {
        if let Some(m) = self.meta.at(key, rev) {
            return Ok(m);
        }
        let Some(current) = self.get::<K>(name).await? else {
            return Err(not_found::<K>(name));
        };
        if object::resource_version_of(&current) != Some(&rev.to_string()) {
            return Err(conflict::<K>(name));
        }
        Ok(ServerMeta {
            uid: current.meta().uid.clone(),
            created: current.meta().creation_timestamp.clone(),
        })
    }

    /// Decodes a key-value and remembers its server metadata.
    fn decode<K: Object>(&self, kv: &KeyValue, name: &str) -> Result<K> {
        let obj = decode::<K>(kv, name)?;
        let key = String::from_utf8_lossy(kv.key());
        self.meta.record(&key, kv.mod_revision(), obj.meta());
        Ok(obj)
    }

    /// Deletes an object, only if its revision is `precondition` when set.
    pub async fn delete<K: Object>(
        &self,
        name: &str,
        precondition: Option<&str>,
    ) -> Result<()> {
        let key = key::<K>(name);
        let mut txn = Txn::new();
        if let Some(rv) = precondition {
            let rev = parse_revision::<K>(rv, name)?;
            txn = txn.when([Compare::mod_revision(
                key.as_str(),
                CompareOp::Equal,
                rev,
            )]);
        }
        let txn = txn
            .and_then([TxnOp::delete(key.as_str(), None)])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let resp = self.txn(txn).await?;
        if !resp.succeeded() {
            return Err(failed_compare::<K>(&resp, name));
        }
        let deleted = resp.op_responses().iter().any(
            |op| matches!(op, TxnOpResponse::Delete(d) if d.deleted() > 0),
        );
        self.meta.forget(&key);
        if !deleted {
            return Err(not_found::<K>(name));
        }
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "etcd_txn", skip_all)]
    async fn txn(&self, txn: Txn) -> Result<etcd_client::TxnResponse> {
        let mut kv = self.client.kv_client();
        with_timeout(kv.txn(txn)).await.map_err(map_err)
    }
}

// ===== helper functions =====

/// Runs one etcd request with the request timeout.
async fn with_timeout<T>(
    fut: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, etcd_client::Error> {
    match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
        Ok(res) => res,
        Err(_) => Err(etcd_client::Error::IoError(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {REQUEST_TIMEOUT:?}"),
        ))),
    }
}

/// gRPC status codes (from the gRPC spec, doc/statuscodes.md) that mean
/// "the server could not serve this now": retrying later may succeed.
const TRANSIENT_GRPC_CODES: [i32; 6] = [
    1,  // CANCELLED
    2,  // UNKNOWN (connection reset mid-call)
    4,  // DEADLINE_EXCEEDED
    8,  // RESOURCE_EXHAUSTED
    10, // ABORTED
    14, // UNAVAILABLE
];

/// Maps a client error: anything about reaching the server is transient.
fn map_err(e: etcd_client::Error) -> DatastoreError {
    use etcd_client::Error as E;
    if let Some(why) = tls_refusal(&e) {
        // Still transient (a rotated certificate or CA fixes it without
        // a restart), but said plainly instead of "transport error".
        return unavailable(&format!("TLS with etcd failed: {why}"));
    }
    let transient = match &e {
        E::IoError(_) | E::TransportError(_) | E::EndpointError(_) => true,
        E::GRpcStatus(status) => {
            TRANSIENT_GRPC_CODES.contains(&(status.code() as i32))
        }
        _ => false,
    };
    if transient {
        DatastoreError::Unavailable {
            backend: BACKEND,
            source: Box::new(e),
        }
    } else {
        DatastoreError::Other {
            backend: BACKEND,
            message: e.to_string(),
        }
    }
}

/// The TLS client configuration of `tls` (None for plain http): the CA
/// as the only trust anchor and, for mutual TLS, the client identity.
/// The files are read now, so a missing or unreadable one is an error
/// naming it rather than a failed handshake later.
fn tls_options(tls: &EtcdTls) -> Result<Option<etcd_client::TlsOptions>> {
    let Some(ca) = &tls.ca_cert_file else {
        return Ok(None);
    };
    let read = |what: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| DatastoreError::Invalid {
            what: format!("etcd {what} {}", path.display()),
            message: format!("cannot read it: {e}"),
        })
    };
    let mut opts = etcd_client::TlsOptions::new()
        .ca_certificate(Certificate::from_pem(read("ca_cert_file", ca)?));
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        opts = opts.identity(Identity::from_pem(
            read("cert_file", cert)?,
            read("key_file", key)?,
        ));
    }
    Ok(Some(opts))
}

/// What went wrong in a TLS handshake, if `e` is one. tonic wraps the
/// rustls error in hyper and io errors whose `source()` chain skips it,
/// so this reads the rendered chain for rustls' own words.
fn tls_refusal(e: &etcd_client::Error) -> Option<String> {
    let text = format!("{e:?}");
    if let Some(i) = text.find("InvalidCertificate(") {
        let rest = &text[i + "InvalidCertificate(".len()..];
        let reason = rest.split(')').next().unwrap_or(rest);
        return Some(format!(
            "etcd's server certificate is not trusted ({reason}): is \
             ca_cert_file the CA that signed it?"
        ));
    }
    if let Some(i) = text.find("received fatal alert: ") {
        let rest = &text[i + "received fatal alert: ".len()..];
        let alert: String =
            rest.chars().take_while(|c| c.is_alphanumeric()).collect();
        return Some(format!(
            "etcd rejected the client certificate (TLS alert {alert}): \
             etcd with --client-cert-auth needs cert_file and key_file \
             signed by its --trusted-ca-file"
        ));
    }
    None
}

/// A transient error with a plain message.
fn unavailable(message: &str) -> DatastoreError {
    DatastoreError::Unavailable {
        backend: BACKEND,
        source: message.to_string().into(),
    }
}

/// The store revision after a transaction: the revision of its writes.
fn header_revision(resp: &etcd_client::TxnResponse) -> i64 {
    resp.header().map_or(0, |h| h.revision())
}

/// Explains a failed compare from the `or_else` get: gone or changed.
fn failed_compare<K: Object>(
    resp: &etcd_client::TxnResponse,
    name: &str,
) -> DatastoreError {
    let exists = resp
        .op_responses()
        .iter()
        .any(|op| matches!(op, TxnOpResponse::Get(g) if !g.kvs().is_empty()));
    if exists {
        conflict::<K>(name)
    } else {
        not_found::<K>(name)
    }
}

fn not_found<K: Object>(name: &str) -> DatastoreError {
    DatastoreError::NotFound {
        kind: kind::<K>(),
        name: name.to_string(),
    }
}

fn conflict<K: Object>(name: &str) -> DatastoreError {
    DatastoreError::Conflict {
        kind: kind::<K>(),
        name: name.to_string(),
    }
}

/// Parses a resourceVersion as an etcd revision.
fn parse_revision<K: Object>(rv: &str, name: &str) -> Result<i64> {
    rv.parse::<i64>().ok().filter(|r| *r >= 0).ok_or_else(|| {
        DatastoreError::Invalid {
            what: format!("resourceVersion of {} {name:?}", kind::<K>()),
            message: format!("{rv:?} is not an etcd revision (a number)"),
        }
    })
}

/// The stored bytes of `obj`.
fn encode<K: Object>(obj: &K) -> Result<Vec<u8>> {
    let value = to_stored_json(obj)?;
    serde_json::to_vec(&value).map_err(|e| DatastoreError::Invalid {
        what: kind::<K>(),
        message: format!("cannot serialize: {e}"),
    })
}

/// Decodes a key-value at its own mod revision.
fn decode<K: Object>(kv: &KeyValue, name: &str) -> Result<K> {
    decode_at(kv.value(), name, kv.mod_revision())
}

/// Decodes stored bytes, setting resourceVersion to `revision`.
fn decode_at<K: Object>(bytes: &[u8], name: &str, revision: i64) -> Result<K> {
    let value = serde_json::from_slice(bytes).map_err(|source| {
        DatastoreError::Decode {
            kind: kind::<K>(),
            name: name.to_string(),
            field: String::new(),
            source,
        }
    })?;
    from_stored_json(value, name, &revision.to_string())
}
