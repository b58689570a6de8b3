use margay_crds::BlockAffinity;
use margay_crds::blockaffinity::{AffinityState, BlockAffinitySpec};

use super::*;
use crate::error::DatastoreError;
use crate::object::List;

fn aff(name: &str, node: &str, rv: &str) -> BlockAffinity {
    let mut a = BlockAffinity::new(
        name,
        BlockAffinitySpec {
            state: AffinityState::Confirmed,
            node: node.into(),
            type_: "host".into(),
            cidr: "10.0.0.0/26".into(),
            deleted: false,
        },
    );
    a.metadata.resource_version = Some(rv.into());
    a
}

fn bad(name: &str) -> InvalidObject {
    InvalidObject {
        kind: "BlockAffinity".into(),
        name: name.into(),
        field: "spec.cidr".into(),
        error: "invalid type".into(),
    }
}

fn decode_error(name: &str) -> DatastoreError {
    DatastoreError::Decode {
        kind: "BlockAffinity".into(),
        name: name.into(),
        field: "spec.cidr".into(),
        source: serde_json::from_str::<u8>("\"x\"").unwrap_err(),
    }
}

fn listed(
    items: Vec<BlockAffinity>,
    invalid: Vec<InvalidObject>,
    rv: &str,
) -> Result<ListWatchEvent<BlockAffinity, (String, BlockAffinity)>> {
    let project = Cache::<BlockAffinity>::new().projection();
    Ok(ListWatchEvent::Listed(List {
        items: items.into_iter().map(|a| project(a)).collect(),
        resource_version: rv.into(),
        invalid,
    }))
}

fn event(
    ev: WatchEvent<BlockAffinity>,
) -> Result<ListWatchEvent<BlockAffinity, (String, BlockAffinity)>> {
    Ok(ListWatchEvent::Event(ev))
}

fn names(c: &Cache<BlockAffinity>) -> Vec<String> {
    c.items()
        .map(|a| a.metadata.name.clone().unwrap())
        .collect()
}

fn invalid_names(c: &Cache<BlockAffinity>) -> Vec<String> {
    c.invalid().map(|o| o.name.clone()).collect()
}

#[test]
fn events_change_one_object_each() {
    let mut c = Cache::new();
    assert!(!c.synced());
    let ch = c.apply(listed(vec![aff("a", "n1", "5")], vec![], "7"));
    assert_eq!(ch.unwrap(), Some(Change::Listed));
    assert!(c.synced());
    assert_eq!(c.revision(), Some("7"));
    let ch = c.apply(event(WatchEvent::Added(aff("b", "n2", "8"))));
    assert_eq!(ch.unwrap(), Some(Change::Object("b".into())));
    let ch = c.apply(event(WatchEvent::Modified(aff("a", "n3", "9"))));
    assert_eq!(ch.unwrap(), Some(Change::Object("a".into())));
    assert_eq!(c.get("a").unwrap().spec.node, "n3");
    assert_eq!(c.revision(), Some("9"));
    let ch = c.apply(event(WatchEvent::Deleted(aff("b", "n2", "10"))));
    assert_eq!(ch.unwrap(), Some(Change::Object("b".into())));
    assert_eq!(names(&c), ["a"]);
    assert_eq!(c.revision(), Some("10"));
}

/// A re-list (after compaction) replaces everything: objects deleted
/// while the watch was gone disappear.
#[test]
fn relist_replaces_the_content() {
    let mut c = Cache::new();
    c.apply(listed(
        vec![aff("a", "n1", "1"), aff("b", "n1", "2")],
        vec![bad("x")],
        "3",
    ))
    .unwrap();
    c.apply(listed(vec![aff("c", "n1", "9")], vec![], "10"))
        .unwrap();
    assert_eq!(names(&c), ["c"]);
    assert!(invalid_names(&c).is_empty());
    assert_eq!(c.revision(), Some("10"));
}

/// Blast radius: a bad object is kept apart by name; fixed or deleted,
/// it leaves the invalid set.
#[test]
fn invalid_objects_are_tracked_per_object() {
    let mut c = Cache::new();
    c.apply(listed(vec![aff("a", "n1", "1")], vec![bad("x")], "2"))
        .unwrap();
    assert_eq!(invalid_names(&c), ["x"]);
    // "a" stops decoding: its old content is forgotten.
    let ch = c.apply(Err(decode_error("a")));
    assert_eq!(ch.unwrap(), Some(Change::Object("a".into())));
    assert!(c.get("a").is_none());
    assert_eq!(invalid_names(&c), ["a", "x"]);
    // The same error again changes nothing.
    assert_eq!(c.apply(Err(decode_error("a"))).unwrap(), None);
    // "a" is fixed: valid again, no longer invalid.
    c.apply(event(WatchEvent::Modified(aff("a", "n1", "4"))))
        .unwrap();
    assert_eq!(names(&c), ["a"]);
    assert_eq!(invalid_names(&c), ["x"]);
    // "x" is deleted while bad: gone from the invalid set.
    let gone = DatastoreError::DeletedUndecodable {
        kind: "BlockAffinity".into(),
        name: "x".into(),
    };
    assert_eq!(
        c.apply(Err(gone)).unwrap(),
        Some(Change::Object("x".into()))
    );
    assert!(invalid_names(&c).is_empty());
}

/// An error about no object leaves the cache as it was.
#[test]
fn other_errors_change_nothing() {
    let mut c = Cache::new();
    c.apply(listed(vec![aff("a", "n1", "1")], vec![], "2"))
        .unwrap();
    let outage = DatastoreError::Other {
        backend: "etcd",
        message: "x".into(),
    };
    assert!(c.apply(Err(outage)).is_err());
    assert_eq!(names(&c), ["a"]);
    assert_eq!(c.revision(), Some("2"));
}

/// A projected cache keeps only what the reader needs of each object.
#[test]
fn projection_keeps_the_facts_only() {
    let mut c: Cache<BlockAffinity, String> =
        Cache::projected(|a: BlockAffinity| a.spec.node);
    // The list arrives projected, as list_and_watch_with delivers it.
    let project = c.projection();
    let list = List {
        items: vec![project(aff("a", "n1", "1"))],
        resource_version: "2".into(),
        invalid: vec![],
    };
    c.apply(Ok(ListWatchEvent::Listed(list))).unwrap();
    c.apply(Ok(ListWatchEvent::Event(WatchEvent::Modified(aff(
        "a", "n2", "3",
    )))))
    .unwrap();
    assert_eq!(c.get("a").map(String::as_str), Some("n2"));
    assert_eq!(c.len(), 1);
}
