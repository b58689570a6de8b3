//! This node's confirmed blocks, from BlockAffinity objects.
//!
//! Only `confirmed` affinities become blackholes: a `pending` claim may
//! still lose its race (Calico #6867 blackholed and advertised pending
//! blocks), and `pendingDeletion` is on its way out. The datastore watch
//! feeds [`BlockEvent`]s; [`BlockTracker`] turns them into the set of block
//! CIDRs that the reconciler blackholes.

use std::collections::{BTreeSet, HashMap};

use futures::StreamExt;
use ipnetwork::IpNetwork;
use margay_crds::blockaffinity::{self as crd, BlockAffinity};
use margay_datastore::{Datastore, ListWatchEvent, WatchEvent};
use tokio::sync::mpsc;

/// Affinity states, as Calico names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AffinityState {
    Pending,
    Confirmed,
    PendingDeletion,
}

impl AffinityState {
    /// Parses the CRD's `state` string; `None` for anything else.
    pub fn parse(s: &str) -> Option<AffinityState> {
        match s {
            "pending" => Some(AffinityState::Pending),
            "confirmed" => Some(AffinityState::Confirmed),
            "pendingDeletion" => Some(AffinityState::PendingDeletion),
            _ => None,
        }
    }
}

/// The fields of a BlockAffinity felix-lite needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Affinity {
    /// Object name (the key deletes refer to).
    pub name: String,
    pub node: String,
    pub cidr: IpNetwork,
    pub state: AffinityState,
    /// Soft-deleted.
    pub deleted: bool,
}

/// A change in the BlockAffinity collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockEvent {
    /// The complete list (initial list or relist after a watch error).
    Snapshot(Vec<Affinity>),
    Upsert(Affinity),
    Delete {
        name: String,
    },
}

/// Confirmed, live affinities of one node.
#[derive(Debug)]
pub struct BlockTracker {
    node: String,
    mine: HashMap<String, IpNetwork>,
}

impl BlockTracker {
    pub fn new(node: impl Into<String>) -> BlockTracker {
        BlockTracker {
            node: node.into(),
            mine: HashMap::new(),
        }
    }

    /// Applies one event; returns the new block set when it changed (always
    /// after a snapshot, so the first snapshot marks the blocks as known).
    pub fn apply(&mut self, ev: BlockEvent) -> Option<BTreeSet<IpNetwork>> {
        let before = self.blocks();
        match ev {
            BlockEvent::Snapshot(all) => {
                self.mine.clear();
                for a in all {
                    self.upsert(a);
                }
                return Some(self.blocks());
            }
            BlockEvent::Upsert(a) => self.upsert(a),
            BlockEvent::Delete { name } => {
                self.mine.remove(&name);
            }
        }
        let after = self.blocks();
        (after != before).then_some(after)
    }

    fn upsert(&mut self, a: Affinity) {
        if a.node == self.node
            && a.state == AffinityState::Confirmed
            && !a.deleted
        {
            self.mine.insert(a.name, a.cidr);
        } else {
            self.mine.remove(&a.name);
        }
    }

    /// The current set of block CIDRs.
    pub fn blocks(&self) -> BTreeSet<IpNetwork> {
        self.mine.values().copied().collect()
    }
}

// ===== datastore adapter =====

/// Feeds BlockAffinity changes from the datastore into `tx` until the
/// receiver goes away. The informer retries transient errors itself;
/// objects that do not decode are logged and left out (a listed one is
/// absent from the snapshot, a changed one is forgotten).
pub async fn watch_affinities(ds: Datastore, tx: mpsc::Sender<BlockEvent>) {
    // The list is projected object by object as it is decoded: the
    // cluster's affinities (20,000 at 5000 nodes) are never held whole.
    let project = |o: BlockAffinity| from_crd(&o);
    let mut stream = ds.list_and_watch_with(std::sync::Arc::new(project));
    while let Some(item) = stream.next().await {
        let Some(ev) = to_event(item) else { continue };
        if tx.send(ev).await.is_err() {
            return;
        }
    }
}

/// One informer item as a tracker event; `None` for errors that say
/// nothing about an object (logged).
fn to_event(
    item: margay_datastore::Result<
        ListWatchEvent<BlockAffinity, Option<Affinity>>,
    >,
) -> Option<BlockEvent> {
    let ev = match item {
        Ok(ListWatchEvent::Listed(list)) => {
            BlockEvent::Snapshot(list.items.into_iter().flatten().collect())
        }
        Ok(ListWatchEvent::Event(WatchEvent::Deleted(obj))) => {
            BlockEvent::Delete {
                name: obj.metadata.name.clone().unwrap_or_default(),
            }
        }
        Ok(ListWatchEvent::Event(
            WatchEvent::Added(obj) | WatchEvent::Modified(obj),
        )) => match from_crd(&obj) {
            Some(a) => BlockEvent::Upsert(a),
            // Unusable now: forget whatever it said before.
            None => BlockEvent::Delete {
                name: obj.metadata.name.clone().unwrap_or_default(),
            },
        },
        // An affinity that no longer decodes: forget what it said
        // before (its block is no longer blackholed as ours).
        Err(e) => match e.invalid_object() {
            Some(bad) => {
                tracing::warn!(
                    name = %bad.name, field = %bad.field,
                    error = %bad.error,
                    "BlockAffinity that does not decode ignored"
                );
                BlockEvent::Delete { name: bad.name }
            }
            // Deleted while it did not decode: already forgotten.
            None => match e.deleted_undecodable() {
                Some(name) => BlockEvent::Delete { name: name.into() },
                None => {
                    tracing::warn!(error = %e, "BlockAffinity watch error");
                    return None;
                }
            },
        },
    };
    Some(ev)
}

/// The fields we need, or `None` (logged) for an unusable object.
fn from_crd(obj: &BlockAffinity) -> Option<Affinity> {
    let name = obj.metadata.name.clone().unwrap_or_default();
    let cidr = match obj.spec.cidr.parse::<IpNetwork>() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(
                %name, cidr = %obj.spec.cidr, error = %e,
                "BlockAffinity with an invalid cidr ignored"
            );
            return None;
        }
    };
    Some(Affinity {
        name,
        node: obj.spec.node.clone(),
        cidr,
        state: match obj.spec.state {
            crd::AffinityState::Pending => AffinityState::Pending,
            crd::AffinityState::Confirmed => AffinityState::Confirmed,
            crd::AffinityState::PendingDeletion => {
                AffinityState::PendingDeletion
            }
        },
        deleted: obj.spec.deleted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aff(
        name: &str,
        node: &str,
        cidr: &str,
        state: AffinityState,
    ) -> Affinity {
        Affinity {
            name: name.into(),
            node: node.into(),
            cidr: cidr.parse().unwrap(),
            state,
            deleted: false,
        }
    }

    #[test]
    fn only_confirmed_blocks_of_this_node_count() {
        use AffinityState::*;
        let mut t = BlockTracker::new("n1");
        let set = t
            .apply(BlockEvent::Snapshot(vec![
                aff("a", "n1", "10.4.0.0/26", Confirmed),
                aff("b", "n1", "10.4.0.64/26", Pending),
                aff("c", "n2", "10.4.0.128/26", Confirmed),
            ]))
            .unwrap();
        assert_eq!(set, ["10.4.0.0/26".parse().unwrap()].into());
        // Pending becomes confirmed: added.
        let set = t.apply(BlockEvent::Upsert(aff(
            "b",
            "n1",
            "10.4.0.64/26",
            Confirmed,
        )));
        assert_eq!(set.unwrap().len(), 2);
        // Unrelated change: nothing to do.
        assert_eq!(
            t.apply(BlockEvent::Upsert(aff(
                "c",
                "n2",
                "10.4.0.128/26",
                Pending
            ))),
            None
        );
        // Marked for deletion, then deleted.
        let set = t.apply(BlockEvent::Upsert(aff(
            "a",
            "n1",
            "10.4.0.0/26",
            PendingDeletion,
        )));
        assert_eq!(set.unwrap().len(), 1);
        let set = t.apply(BlockEvent::Delete { name: "b".into() });
        assert!(set.unwrap().is_empty());
    }

    #[test]
    fn states_parse_as_calico_spells_them() {
        assert_eq!(
            AffinityState::parse("pendingDeletion"),
            Some(AffinityState::PendingDeletion)
        );
        assert_eq!(AffinityState::parse("Confirmed"), None);
    }

    /// A watched affinity that stops decoding is forgotten, so a block it
    /// named is no longer ours; other errors change nothing.
    #[test]
    fn undecodable_affinity_is_forgotten() {
        let decode = margay_datastore::DatastoreError::Decode {
            kind: "BlockAffinity".into(),
            name: "n1-10-0-0-0-26".into(),
            field: "spec.cidr".into(),
            source: serde_json::from_str::<u8>("\"x\"").unwrap_err(),
        };
        assert!(matches!(
            to_event(Err(decode)),
            Some(BlockEvent::Delete { name }) if name == "n1-10-0-0-0-26"
        ));
        // Deleted while bad: forgotten too (nothing to undo).
        let gone = margay_datastore::DatastoreError::DeletedUndecodable {
            kind: "BlockAffinity".into(),
            name: "n1-10-0-0-0-26".into(),
        };
        assert!(matches!(
            to_event(Err(gone)),
            Some(BlockEvent::Delete { name }) if name == "n1-10-0-0-0-26"
        ));
        let outage = margay_datastore::DatastoreError::Other {
            backend: "etcd",
            message: "x".into(),
        };
        assert!(to_event(Err(outage)).is_none());
    }
}
