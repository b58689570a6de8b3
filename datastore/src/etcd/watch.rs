//! Watches on etcd: a prefix watch per type, turned into the
//! backend-neutral [`WatchEvent`] stream, ending after its first terminal
//! error (the caller re-lists and watches again).

use std::collections::VecDeque;
use std::sync::Arc;

use etcd_client::{Client, EventType, WatchOptions, WatchStream};
use futures::stream::{self, BoxStream, StreamExt};

use super::{
    BACKEND, EtcdStore, decode, decode_at, map_err, parse_revision, prefix,
    unavailable, with_timeout,
};
use crate::error::{DatastoreError, Result};
use crate::object::{self, Object, WatchEvent, kind};

impl EtcdStore {
    /// Streams every change to objects of type `K` after revision `from`
    /// (empty: from now on), in revision order.
    pub fn watch<K: Object>(
        &self,
        from: &str,
    ) -> BoxStream<'static, Result<WatchEvent<K>>> {
        let start = if from.is_empty() {
            Ok(0)
        } else {
            parse_revision::<K>(from, "").map(|rev| rev + 1)
        };
        let state = WatchState::<K> {
            client: self.client.clone(),
            from: from.to_string(),
            start,
            stream: None,
            pending: VecDeque::new(),
            done: false,
        };
        stream::unfold(state, WatchState::next).boxed()
    }
}

/// State of one watch stream, driven by `stream::unfold`.
struct WatchState<K> {
    client: Arc<Client>,
    from: String,
    start: Result<i64>,
    stream: Option<WatchStream>,
    pending: VecDeque<Result<WatchEvent<K>>>,
    done: bool,
}

impl<K: Object> WatchState<K> {
    /// Produces the next item: buffered events first, then the next
    /// response from etcd. The stream ends after its first terminal error.
    async fn next(mut self) -> Option<(Result<WatchEvent<K>>, Self)> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some((item, self));
            }
            if self.done {
                return None;
            }
            let Some(stream) = self.stream.as_mut() else {
                match self.open().await {
                    Ok(stream) => self.stream = Some(stream),
                    Err(e) => {
                        self.done = true;
                        return Some((Err(e), self));
                    }
                }
                continue;
            };
            match stream.message().await {
                Ok(Some(resp)) => self.process_response(&resp),
                Ok(None) => {
                    self.done = true;
                    self.pending.push_back(Err(unavailable(
                        "watch stream closed by the server",
                    )));
                }
                Err(e) => {
                    self.done = true;
                    self.pending.push_back(Err(map_err(e)));
                }
            }
        }
    }

    /// Opens the etcd watch on the prefix of `K`.
    async fn open(&mut self) -> Result<WatchStream> {
        let start = match &self.start {
            Ok(start) => *start,
            Err(e) => {
                return Err(DatastoreError::Invalid {
                    what: format!("watch of {}", kind::<K>()),
                    message: e.to_string(),
                });
            }
        };
        let mut opts = WatchOptions::new().with_prefix().with_prev_key();
        if start > 0 {
            opts = opts.with_start_revision(start);
        }
        let mut watch = self.client.watch_client();
        with_timeout(watch.watch(prefix::<K>(), Some(opts)))
            .await
            .map_err(map_err)
    }

    /// Queues the events (or the terminal error) of one watch response.
    fn process_response(&mut self, resp: &etcd_client::WatchResponse) {
        if resp.canceled() {
            self.done = true;
            let err = if resp.compact_revision() > 0 {
                DatastoreError::Compacted {
                    kind: kind::<K>(),
                    revision: self.from.clone(),
                }
            } else {
                DatastoreError::Other {
                    backend: BACKEND,
                    message: format!(
                        "watch canceled by the server: {}",
                        resp.cancel_reason()
                    ),
                }
            };
            self.pending.push_back(Err(err));
            return;
        }
        let pfx = prefix::<K>();
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let name = key.strip_prefix(&pfx).unwrap_or(&key);
            let item = match ev.event_type() {
                EventType::Put => decode::<K>(kv, name).map(|o| {
                    if kv.create_revision() == kv.mod_revision() {
                        WatchEvent::Added(o)
                    } else {
                        WatchEvent::Modified(o)
                    }
                }),
                EventType::Delete => match ev.prev_kv() {
                    // The last content, stamped with the deletion's
                    // revision so that resuming from it skips the delete.
                    Some(prev) => {
                        decode_at::<K>(prev.value(), name, kv.mod_revision())
                            .map(WatchEvent::Deleted)
                            .map_err(object::deleted_undecodable)
                    }
                    None => Err(DatastoreError::Other {
                        backend: BACKEND,
                        message: format!(
                            "delete of {name:?} at revision {} came \
                             without its previous value",
                            kv.mod_revision()
                        ),
                    }),
                },
            };
            self.pending.push_back(item);
        }
    }
}
